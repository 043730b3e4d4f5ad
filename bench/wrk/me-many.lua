-- GET /api/v1/user_roles/me cycling through many users' access tokens (one per line of
-- TOKENS_FILE), each thread from its own offset: every request presents a different token
-- and user, so the token and standing caches see a working set larger than one token. The
-- requests are formatted once, up front, so that the load generator (which shares the cores
-- with the service) spends no more per request than it does on the single-token scenario.
local requests = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
  if line ~= "" then
    table.insert(requests, wrk.format("GET", "/api/v1/user_roles/me", { ["Authorization"] = "Bearer " .. line }, nil))
  end
end
local i = 0

function init_thread(thread, id)
  thread:set("offset", (id - 1) * 4999)
end

function request()
  i = i + 1
  return requests[((offset or 0) + i) % #requests + 1]
end

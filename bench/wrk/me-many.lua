-- GET /api/v1/user_roles/me cycling through many users' access tokens (one per line of
-- TOKENS_FILE), each thread from its own offset: every request presents a different token
-- and user, so the token and standing caches see a working set larger than one token. The
-- requests are formatted once, up front, so that the load generator (which shares the cores
-- with the service) spends no more per request than it does on the single-token scenario.
-- They are formatted in `init`, once wrk knows the Host header: formatted when the script is
-- loaded they went out without one, which an HTTP/1.1 server must refuse (RFC 9112 §3.2).
local requests = {}
local i = 0

function init(args)
  for line in io.lines(os.getenv("TOKENS_FILE")) do
    if line ~= "" then
      table.insert(requests, wrk.format("GET", "/api/v1/user_roles/me", { ["Authorization"] = "Bearer " .. line }, nil))
    end
  end
end

function init_thread(thread, id)
  thread:set("offset", (id - 1) * 4999)
end

function request()
  i = i + 1
  return requests[((offset or 0) + i) % #requests + 1]
end

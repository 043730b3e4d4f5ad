-- GET /api/v1/user_roles/me cycling through many users' access tokens (one per line of
-- TOKENS_FILE), each thread from its own offset: every request presents a different token
-- and user, so the token and standing caches see a working set larger than one token.
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
  if line ~= "" then table.insert(tokens, "Bearer " .. line) end
end
local i = 0

function init_thread(thread, id)
  thread:set("offset", (id - 1) * 4999)
end

function request()
  i = i + 1
  local n = ((offset or 0) + i) % #tokens + 1
  return wrk.format("GET", "/api/v1/user_roles/me", { ["Authorization"] = tokens[n] }, nil)
end

-- POST /api/v1/auth/refresh as a chain: each thread (one connection per thread) starts from its
-- own session's refresh token (REFRESH_TOKENS, comma-separated) and always presents the token
-- the previous answer rotated to.
local tokens = {}
for t in string.gmatch(os.getenv("REFRESH_TOKENS"), "[^,]+") do table.insert(tokens, t) end
local current = nil

function init_thread(thread, id)
  thread:set("token", tokens[((id - 1) % #tokens) + 1])
end

function request()
  current = current or token
  return wrk.format("POST", "/api/v1/auth/refresh", { ["Cookie"] = "refresh_token=" .. current }, nil)
end

function on_response(status, headers)
  local cookie = headers["set-cookie"] or headers["Set-Cookie"]
  if status == 200 and cookie then
    local value = string.match(cookie, "refresh_token=([^;]+)")
    if value and value ~= "" then current = value end
  end
end

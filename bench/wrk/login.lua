-- POST /api/v1/auth/login-json, cycling through USERS seeded users (bench_user_1..N).
local users = tonumber(os.getenv("USERS"))
local password = os.getenv("PASSWORD")
local n = 0

-- Runs in the main state; `offset` becomes a global of that thread's state.
function init_thread(thread, id)
  thread:set("offset", id * 7)
end

function request()
  n = n + 1
  local i = ((offset + n) % users) + 1
  local body = string.format('{"username":"bench_user_%d","password":"%s"}', i, password)
  return wrk.format("POST", "/api/v1/auth/login-json", { ["Content-Type"] = "application/json" }, body)
end

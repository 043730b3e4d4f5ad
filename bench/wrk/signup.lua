-- POST /api/v1/users/signup with a new unique user every time.
local run = os.getenv("RUN") .. os.getenv("PHASE")
local n = 0

function init_thread(thread, id)
  thread:set("tid", id)
end

function request()
  n = n + 1
  local name = string.format("s%s_%d_%d_%d", run, tid, n, math.random(1000000000))
  local body = string.format('{"username":"%s","email":"%s@bench.example","password":"bench password %d"}', name, name, n)
  return wrk.format("POST", "/api/v1/users/signup", { ["Content-Type"] = "application/json" }, body)
end

-- POST /api/v1/auth/mfa: the second step of a sign-in, each request another pre-made pending
-- step (an mfa_token, single use) and one of its user's unused recovery codes.
-- STEPS_FILE.<PHASE> holds "<mfa_token> <code>" per line; thread `id` of THREADS takes every
-- THREADS-th one.
local steps = {}
local next_step = 1

function init(args)
  local threads = tonumber(os.getenv("THREADS"))
  local n = 0
  for line in io.lines(os.getenv("STEPS_FILE") .. "." .. os.getenv("PHASE")) do
    if n % threads == id - 1 then table.insert(steps, line) end
    n = n + 1
  end
  wrk.method = "POST"
  wrk.path = "/api/v1/auth/mfa"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  -- Past the last step, the same step again: a used token, which counts as an error.
  local line = steps[next_step] or steps[#steps]
  next_step = next_step + 1
  local token, code = line:match("^(%S+) (%S+)$")
  return wrk.format(nil, nil, nil,
    '{"mfa_token":"' .. token .. '","method":"recovery_code","code":"' .. code .. '"}')
end

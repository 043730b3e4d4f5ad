-- POST /oauth2/token with grant_type=authorization_code, each request another pre-made code
-- (single-use): CODES_FILE.<PHASE> holds one code per line, thread `id` of THREADS takes every
-- THREADS-th one. The client authenticates by HTTP Basic (BASIC); REDIRECT_URI and VERIFIER
-- are the ones every code was made with.
local codes = {}
local next_code = 1

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function init(args)
  local threads = tonumber(os.getenv("THREADS"))
  local n = 0
  for line in io.lines(os.getenv("CODES_FILE") .. "." .. os.getenv("PHASE")) do
    if n % threads == id - 1 then table.insert(codes, line) end
    n = n + 1
  end
  wrk.method = "POST"
  wrk.path = "/oauth2/token"
  wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

local tail = "&redirect_uri=" .. urlencode(os.getenv("REDIRECT_URI")) .. "&code_verifier=" .. os.getenv("VERIFIER")

function request()
  -- Past the last code, the same code again: a replay, which counts as an error.
  local code = codes[next_code] or codes[#codes]
  next_code = next_code + 1
  return wrk.format(nil, nil, nil, "grant_type=authorization_code&code=" .. code .. tail)
end

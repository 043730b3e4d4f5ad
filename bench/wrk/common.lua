-- Shared by every scenario: counts non-2xx answers per thread and prints one BENCH line of
-- JSON at the end. A scenario may define init_thread(thread, id), on_response(status, headers)
-- and request().
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
  table.insert(threads, thread)
  if init_thread then init_thread(thread, next_id) end
end

errors = 0

function response(status, headers, body)
  if status < 200 or status > 299 then errors = errors + 1 end
  if on_response then on_response(status, headers) end
end

function done(summary, latency, requests)
  local errs = 0
  for _, t in ipairs(threads) do errs = errs + (t:get("errors") or 0) end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"errors":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errs,
    e.connect + e.read + e.write + e.timeout + e.status))
end

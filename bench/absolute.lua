-- wrk script for credproxy's benchmark (bench/run.py).
--   wrk ... -s bench/absolute.lua http://PROXY_ADDR/ -- REQUEST_TARGET HOST
-- REQUEST_TARGET is what goes on the request line: an absolute-form URL
-- (`http://localhost:8443/small`, as HTTP_PROXY clients send it) or a plain path when wrk talks
-- to the upstream directly. HOST is the Host header. The request is static (no `request`
-- function), so wrk builds it once and the client costs as little as possible.
-- `done` prints one machine-readable line: BENCHJSON {...} (latencies in microseconds).

function init(args)
  if args[1] then wrk.path = args[1] end
  if args[2] then wrk.headers["Host"] = args[2] end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end

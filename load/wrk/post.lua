-- POST a small chat request and print the results as one JSON line for load/bench.py.
-- BENCH_MODEL (default "bench") and BENCH_STREAM=1 (adds "stream":true) pick the request;
-- BENCH_KEY is the bearer credential (a real virtual key for the gateway); BENCH_BODY_FILE replaces the body;
-- BENCH_HEADERS adds headers, one "Name: value" a line (e.g. "anthropic-version: 2023-06-01").
local model = os.getenv("BENCH_MODEL") or "bench"
local stream = os.getenv("BENCH_STREAM") == "1"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "x")
for name, value in (os.getenv("BENCH_HEADERS") or ""):gmatch("([^:\n]+):%s*([^\n]*)") do
    wrk.headers[name] = value
end
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"hello"}]'
    .. (stream and ',"stream":true}' or '}')
-- BENCH_BODY_FILE: the whole body from a file instead (load/loadgen.py writes the realistic request there)
local body_file = os.getenv("BENCH_BODY_FILE")
if body_file and body_file ~= "" then
    local f = assert(io.open(body_file, "rb"))
    wrk.body = f:read("*a")
    f:close()
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
            .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
            .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end

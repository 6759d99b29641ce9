-- wrk script for the benchmark's closed-loop runs (benchmarks/targets.py, run_wrk):
--
--   wrk -t1 -c32 -d15s --timeout 30s -s benchmarks/wrk_bodies.lua URL -- BODIES FIRST 32 1
--
-- (after `--`: the bodies file, the first line to send, wrk's -c and -t).
-- POSTs the request bodies in BODIES (one JSON body a line), Content-Type application/json,
-- cycling through them from line FIRST (0-based; a measured run starts where its warm-up run
-- stopped, so inputs meant to be new are not sent twice), thread k of T taking every T-th line.
-- Counts answers by status in response() (per thread, merged in done()) and prints one JSON
-- line with the keys benchmarks/loadgen.py prints, plus wrk's own: sent, in_flight (requests
-- sent that had no answer when wrk stopped: the server may still answer and record them),
-- next_body (where a following run should start), timeouts.
--
-- Latency percentiles are wrk's, from its histogram, which wrk corrects for coordinated
-- omission before done() runs (samples filled in below each answer slower than twice the
-- mean interval), and cover every answer, not only 2xx.

local threads = {}

-- setup() and done() run in the main Lua state; the rest in each thread's own.
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_no", #threads)
end

local requests = {}
local count = 0
local step = 1
connections = 0 -- wrk's -c, for the summary
index = 0 -- the next body (read by done() through thread:get)
sent = 0 -- request() calls
statuses = {}

function init(args)
  local path = args[1]
  if path == nil then
    error("usage: wrk ... -s wrk_bodies.lua URL -- BODIES [FIRST] [CONNECTIONS]")
  end
  local first = tonumber(args[2] or "0")
  local file = assert(io.open(path, "rb"))
  local headers = { ["Host"] = wrk.headers["Host"], ["Content-Type"] = "application/json" }
  for line in file:lines() do
    local body = line:match("^%s*(.-)%s*$")
    if body ~= "" then
      count = count + 1
      requests[count] = wrk.format("POST", nil, headers, body)
    end
  end
  file:close()
  if count == 0 then
    error(path .. ": no request bodies")
  end
  connections = tonumber(args[3] or "0")
  step = tonumber(args[4] or "1") -- wrk's -t: thread k sends lines FIRST + k - 1 + n * T
  index = first + (thread_no - 1)
end

function request()
  local r = requests[index % count + 1]
  index = index + step
  sent = sent + 1
  return r
end

function response(status)
  statuses[status] = (statuses[status] or 0) + 1
end

local function encode(value)
  local kind = type(value)
  if kind == "table" then
    local parts = {}
    for k, v in pairs(value) do
      parts[#parts + 1] = string.format("%q:%s", tostring(k), encode(v))
    end
    table.sort(parts)
    return "{" .. table.concat(parts, ",") .. "}"
  elseif kind == "number" then
    if value ~= value then
      return "NaN"
    elseif value == math.floor(value) and math.abs(value) < 2 ^ 53 then
      return string.format("%d", value)
    end
    return string.format("%.6f", value)
  elseif kind == "string" then
    return string.format("%q", value)
  end
  return tostring(value)
end

function done(summary, latency, _)
  local merged, ok, other, sent_total, next_body = {}, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + n
    end
    sent_total = sent_total + thread:get("sent")
    next_body = math.max(next_body, thread:get("index"))
  end
  -- wrk calls the first thread's request() once before the run, to check the request parses.
  sent_total = sent_total - 1
  for status, n in pairs(merged) do
    if status >= 200 and status < 300 then
      ok = ok + n
    else
      other = other + n
    end
  end
  local e = summary.errors
  local errors = {}
  for _, kind in ipairs({ "connect", "read", "write" }) do
    if e[kind] > 0 then
      errors[kind] = e[kind]
    end
  end
  local seconds = summary.duration / 1e6
  local cpu = os.clock() -- this process, every thread, start-up included
  local function ms(us)
    return summary.requests > 0 and us / 1000 or 0 / 0
  end
  local out = {
    url = string.format("%s://%s:%s%s", wrk.scheme, wrk.host, wrk.port, wrk.path),
    mode = "closed",
    loadgen = "wrk",
    concurrency = threads[1]:get("connections"),
    warmup_s = 0,
    duration_s = seconds,
    elapsed_s = seconds,
    ok_total = ok,
    non_2xx_total = other,
    errors_total = e.connect + e.read + e.write,
    statuses = merged,
    errors = errors,
    window_ok = ok,
    rps = seconds > 0 and ok / seconds or 0,
    latency_samples = summary.requests,
    p50_ms = ms(latency:percentile(50)),
    p90_ms = ms(latency:percentile(90)),
    p99_ms = ms(latency:percentile(99)),
    max_ms = ms(latency.max),
    cpu_s = cpu,
    cpu_pct = seconds > 0 and 100 * cpu / seconds or 0,
    sent = sent_total,
    in_flight = math.max(0, sent_total - summary.requests),
    next_body = next_body,
    timeouts = e.timeout, -- answers slower than --timeout (still counted above)
  }
  io.write(encode(out), "\n")
end

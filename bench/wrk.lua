-- wrk script for bench/load.py and bench/asset_sync_rate.py: POST signed notifications read from a file.
--
-- BENCH_REQUESTS  a file, one request per line: path \t X-Cld-Signature \t X-Cld-Timestamp \t JSON body
-- BENCH_TOTAL     answers to wait for, across threads; each thread stops after its share
-- BENCH_THREADS   wrk's -t (each thread takes every BENCH_THREADS-th line, starting at its own)
-- BENCH_CYCLE     1: go round the lines again when they run out; 0: each line once: once they are all sent,
--                 a connection whose turn comes sends a GET to the same path (405 from the wrapper, not
--                 counted), so that the thread stops when every notification was answered, none in flight
--
-- BENCH_MARKERS   a folder: a thread that has its share writes a file there, so that bench/load.py can end
--                 the run (SIGINT) instead of waiting out wrk's -d, which wrk always sleeps through
--
-- done() prints one JSON line: wrk's own counts and latency percentiles (microseconds), and the time from the
-- first request sent to the last answer counted (CLOCK_MONOTONIC, through LuaJIT's ffi), since wrk's own
-- duration is its whole -d.

local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock, bench_timespec *now);
]]
local now_struct = ffi.new("bench_timespec")

local function now_us()
  ffi.C.clock_gettime(1, now_struct)  -- CLOCK_MONOTONIC
  return tonumber(now_struct.tv_sec) * 1000000 + math.floor(tonumber(now_struct.tv_nsec) / 1000)
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

local requests = {}
local share = 0
local answered = 0
local non_200 = 0
local next_index = 0
local started_us = nil
local cycle = true
local filler = nil
local primed = false

function init(args)
  local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  local total = tonumber(os.getenv("BENCH_TOTAL") or "1000")
  cycle = os.getenv("BENCH_CYCLE") ~= "0"
  local lines = {}
  for line in io.lines(os.getenv("BENCH_REQUESTS")) do
    table.insert(lines, line)
  end
  local mine = {}
  for index = id, #lines, nthreads do
    table.insert(mine, lines[index])
  end
  if cycle then
    -- every thread goes round all the lines, from its own starting point
    mine = {}
    for offset = 0, #lines - 1 do
      table.insert(mine, lines[(id - 1 + offset) % #lines + 1])
    end
  end
  share = math.floor(total / nthreads)
  if id <= total % nthreads then
    share = share + 1
  end
  if not cycle and share > #mine then
    share = #mine
  end
  for _, line in ipairs(mine) do
    local path, signature, timestamp, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    filler = filler or wrk.format("GET", path, {["User-Agent"] = "Cloudinary (wrk)"})
    table.insert(requests, wrk.format("POST", path, {
      ["Content-Type"] = "application/json",
      ["X-Cld-Signature"] = signature,
      ["X-Cld-Timestamp"] = timestamp,
      ["User-Agent"] = "Cloudinary (wrk)",
    }, body))
  end
end

function request()
  if not primed then
    -- wrk (4.1) calls request() once per thread before it connects, and sends nothing of that request
    primed = true
    return requests[1]
  end
  if started_us == nil then
    started_us = now_us()
  end
  next_index = next_index + 1
  if not cycle and next_index > #requests then
    return filler
  end
  return requests[(next_index - 1) % #requests + 1]
end

function response(status, headers, body)
  if not cycle and status == 405 then
    return  -- a filler's answer
  end
  answered = answered + 1
  if status ~= 200 then
    non_200 = non_200 + 1
  end
  if answered == share then
    wrk.thread:set("non_200", non_200)
    wrk.thread:set("answered", answered)
    wrk.thread:set("started_us", started_us)
    wrk.thread:set("ended_us", now_us())
    local marker = io.open(os.getenv("BENCH_MARKERS") .. "/thread-" .. id, "w")
    marker:write("done\n")
    marker:close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local non, answered, first, last = 0, 0, nil, nil
  for _, thread in ipairs(threads) do
    non = non + (tonumber(thread:get("non_200")) or 0)
    answered = answered + (tonumber(thread:get("answered")) or 0)
    local started, ended = tonumber(thread:get("started_us")), tonumber(thread:get("ended_us"))
    if started and (first == nil or started < first) then first = started end
    if ended and (last == nil or ended > last) then last = ended end
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "answered": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f, "non_200": %d, "socket_errors": %d, "status_errors": %d}\n',
    summary.requests, answered, (last or 0) - (first or 0), latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, non,
    errors.connect + errors.read + errors.write + errors.timeout, errors.status))
end

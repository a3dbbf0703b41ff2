-- wrk script for scripts/bench-ingest: sends pre-signed, distinct QuickBooks
-- webhooks from a pool written by scripts/bench/gen-webhooks.py.
--
--   wrk ... -s scripts/bench/ingest.lua URL -- POOL_FILE THREADS
--
-- The pool holds fixed-size complete HTTP requests. Thread t (0-based) of
-- THREADS loads only its own contiguous slice of the pool in init() and sends
-- its records in order, so no two requests of a run carry the same event as
-- long as no thread runs past the end of its slice. If one does, it starts
-- over (counted as "repeats": harmless for nginx, a sizing error for the
-- gateway, whose dedupe would then acknowledge without storing).
--
-- done() prints one machine-readable line:
--   BENCH requests=.. duration_us=.. rps=.. status_2xx=.. status_non2xx=..
--         err_connect=.. err_read=.. err_write=.. err_timeout=.. repeats=..
--         lat_mean_us=.. lat_p50_us=.. lat_p90_us=.. lat_p99_us=.. lat_p999_us=.. lat_max_us=..

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local blob, reclen, per, idx, sent = nil, 0, 0, 0, 0
n2xx, nother, repeats = 0, 0, 0

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  assert(path and nthreads and nthreads >= 1, "usage: -- POOL_FILE THREADS")
  local f = assert(io.open(path, "rb"))
  local header = f:read("*l")
  local rl, count = header:match("^GWPOOL (%d+) (%d+)")
  assert(rl, "not a GWPOOL file: " .. path)
  reclen, count = tonumber(rl), tonumber(count)
  per = math.floor(count / nthreads)
  assert(per >= 1, "pool smaller than the number of threads")
  f:seek("set", 64 + tid * per * reclen)
  blob = f:read(per * reclen)
  f:close()
  assert(blob and #blob == per * reclen, "short read from " .. path)
end

function request()
  local off = idx * reclen
  idx = idx + 1
  if idx == per then idx = 0 end
  sent = sent + 1
  if sent > per then repeats = repeats + 1 end
  return blob:sub(off + 1, off + reclen)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    n2xx = n2xx + 1
  else
    nother = nother + 1
  end
end

function done(summary, latency, requests)
  local ok, bad, rep = 0, 0, 0
  for _, t in ipairs(threads) do
    ok = ok + (t:get("n2xx") or 0)
    bad = bad + (t:get("nother") or 0)
    rep = rep + (t:get("repeats") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f status_2xx=%d status_non2xx=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_timeout=%d repeats=%d " ..
    "lat_mean_us=%.0f lat_p50_us=%d lat_p90_us=%d lat_p99_us=%d lat_p999_us=%d lat_max_us=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6), ok, bad,
    e.connect, e.read, e.write, e.timeout, rep,
    latency.mean, latency:percentile(50.0), latency:percentile(90.0),
    latency:percentile(99.0), latency:percentile(99.9), latency.max))
end

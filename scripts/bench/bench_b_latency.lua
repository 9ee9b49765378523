-- bench_b_latency.lua -- (b) round trip of one trivial task.
-- Pairs with shared/bench/dask/bench_b_latency.py: N (200) sequential
-- client:submit(inc, i):result() after 20 warm-up calls; latency.median /
-- p90 / p99 / min / mean in microseconds; then the same with a 25 ms idle
-- gap before each submit (latency.spaced_*), as Dask's script does.
--   build/dlua scripts/bench/bench_b_latency.lua        (env N, default 200)
local dlua = require "dlua"
local now = dlua.time
local N = tonumber(os.getenv("N")) or 200
local WARMUP, GAP = 20, 0.025

local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit = lib.emit
local function percentile(xs, p)
  local s = {table.unpack(xs)}; table.sort(s)
  local k = (#s - 1) * p / 100
  local lo = math.floor(k)
  local hi = math.min(lo + 1, #s - 1)
  return s[lo + 1] + (s[hi + 1] - s[lo + 1]) * (k - lo)
end
-- An idle gap: dlua.sleep (a futex wait; the client's spin is not used).
local function sleep(_, s) dlua.sleep(s) end

local function inc(x) return x + 1 end

print("# dlua " .. dlua.version)
local client = dlua.Client{n_workers = 2}
for i = 1, WARMUP do assert(client:submit(inc, i):result() == i + 1) end
local lat = {}
for i = 1, N do
  local t0 = now()
  local r = client:submit(inc, i):result()
  lat[i] = (now() - t0) * 1e6
  assert(r == i + 1)
end
local sum = 0
for _, x in ipairs(lat) do sum = sum + x end
emit("latency.n", N, "tasks")
emit("latency.median", percentile(lat, 50), "us")
emit("latency.p90", percentile(lat, 90), "us")
emit("latency.p99", percentile(lat, 99), "us")
emit("latency.min", percentile(lat, 0), "us")
emit("latency.mean", sum / N, "us")

local lat2 = {}
for i = 1, N do
  sleep(client, GAP)
  local t0 = now()
  local r = client:submit(inc, i):result()
  lat2[i] = (now() - t0) * 1e6
  assert(r == i + 1)
end
emit("latency.spaced_gap", GAP * 1e3, "ms")
emit("latency.spaced_median", percentile(lat2, 50), "us")
emit("latency.spaced_p99", percentile(lat2, 99), "us")
client:close()

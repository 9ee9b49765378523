-- bench_profile.lua -- what the tasks' profiler costs (issue 19: off by
-- default if it costs more than 2 % of throughput).  Two workloads on a
-- 2-worker cluster, each run with the profiler at its default (a sample
-- every 10 ms of a running task) and off (DLUA_PROFILE_INTERVAL=0), REPS
-- times interleaved, each run in a fresh process (workers read the
-- variable when they start):
--   cpu:   M tasks of about 5 ms of Lua each (the profiler samples them)
--   tiny:  client:map of N trivial tasks + gather (the per-task cost)
-- Prints the median rates and the cost in % (positive: slower with it on).
--   build/dlua scripts/bench/bench_profile.lua        (env M, N, REPS)
-- With the argument "tiny" it runs only the trivial tasks, once (a
-- cluster's start, N tasks, its close), for perf stat at real-time
-- priority, where the machine's other load cannot get between:
--   chrt -f 10 perf stat -r 20 build/dlua scripts/bench/bench_profile.lua tiny
--   DLUA_PROFILE=1 chrt -f 10 perf stat -r 20 build/dlua ... tiny
local dlua = require "dlua"
local lib = dofile((debug.getinfo(1, "S").source:sub(2):match("^(.*)/")
                    or ".") .. "/lib.lua")

local M = tonumber(os.getenv("M")) or 400
local N = tonumber(os.getenv("N")) or 20000
local REPS = tonumber(os.getenv("REPS")) or 5

if arg[1] == "tiny" then
  local client = dlua.Client{n_workers = 2, dashboard_address = false}
  local seq = {}
  for i = 1, N do seq[i] = i end
  local fs = client:map(function(x) return x + 1 end, seq)
  assert(client:gather(fs)[N] == N + 1)
  client:close()
  return
end

if arg[1] == "child" then
  local client = dlua.Client{n_workers = 2, dashboard_address = false}
  function spin(n)
    local s = 0
    for i = 1, n do s = s + i % 7 end
    return s
  end
  local function inc(x) return x + 1 end
  -- About 5 ms of Lua per task on this machine's cores.
  local per = 150000
  local xs, seq = {}, {}
  for i = 1, M do xs[i] = per end
  for i = 1, N do seq[i] = i end
  client:gather(client:map(spin, {per, per}))
  local t0 = dlua.time()
  local fs = client:map(spin, xs)
  client:gather(fs)
  local cpu = M / (dlua.time() - t0)
  for _, f in ipairs(fs) do f:release() end
  t0 = dlua.time()
  fs = client:map(inc, seq)
  client:gather(fs)
  local tiny = N / (dlua.time() - t0)
  print(("%.6g %.6g"):format(cpu, tiny))
  client:close()
  return
end

local self = debug.getinfo(1, "S").source:sub(2)
local exe = arg[-1] or "dlua"
local rates = {on = {cpu = {}, tiny = {}}, off = {cpu = {}, tiny = {}}}
for _ = 1, REPS do
  for _, mode in ipairs{"on", "off"} do
    local env = mode == "off" and "DLUA_PROFILE_INTERVAL=0 " or ""
    local p = assert(io.popen(env .. exe .. " " .. self .. " child"))
    local out = p:read("a")
    p:close()
    local cpu, tiny = out:match("^(%S+) (%S+)")
    assert(cpu, "the child printed: " .. out)
    table.insert(rates[mode].cpu, tonumber(cpu))
    table.insert(rates[mode].tiny, tonumber(tiny))
  end
end
for _, w in ipairs{"cpu", "tiny"} do
  local on, off = lib.median(rates.on[w]), lib.median(rates.off[w])
  lib.emit("profile." .. w .. ".on.rate", on, "tasks/s")
  lib.emit("profile." .. w .. ".off.rate", off, "tasks/s")
  lib.emit("profile." .. w .. ".cost", 100 * (1 - on / off), "%")
end

-- bench_d_throughput_delayed.lua -- (d) delayed graph: N incs + tree sum.
-- Pairs with shared/bench/dask/bench_d_throughput_delayed.py: N (10,000)
-- independent dlua.delayed(inc)(i) + a tree sum of fan-in 8, computed on a
-- 2-worker cluster after a 200-task warm-up.  throughput_delayed.n<N>.
-- total_tasks / build_time / compute_wall / rate / rate_incl_build.
-- (No chain in this graph, so dlua's chain fusion does not reduce the
-- number of tasks: every inc and every sum is its own task.)
--   build/dlua scripts/bench/bench_d_throughput_delayed.lua   (env N, FANIN)
local dlua = require "dlua"
local now = dlua.time
local N = tonumber(os.getenv("N")) or 10000
local FANIN = tonumber(os.getenv("FANIN")) or 8

local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit = lib.emit

local function inc(x) return x + 1 end
local sum = lib.sum

local function build(n)
  local dinc, dsum = dlua.delayed(inc), dlua.delayed(sum)
  local parts = {}
  for i = 1, n do parts[i] = dinc(i - 1) end
  local nred = 0
  while #parts > 1 do
    local up = {}
    for i = 1, #parts, FANIN do
      up[#up + 1] = dsum(table.unpack(parts, i, math.min(i + FANIN - 1, #parts)))
    end
    nred = nred + #up
    parts = up
  end
  return parts[1], n + nred
end

print("# dlua " .. dlua.version)
local client = dlua.Client{n_workers = 2}
-- No pcall: a failure ends the script with an error and a non-zero exit,
-- which run-all reports as FAILED and the table as **no**.
do
  local r = build(200)
  assert(r:compute() == 200 * 201 // 2)
  collectgarbage()
  local t0 = now()
  local root, ntasks = build(N)
  local t1 = now()
  local res = root:compute()
  local t2 = now()
  assert(res == N * (N + 1) // 2, "wrong sum " .. tostring(res))
  print(("# N=%d fanin=%d total tasks=%d"):format(N, FANIN, ntasks))
  local tag = ("throughput_delayed.n%d."):format(N)
  emit(tag .. "total_tasks", ntasks, "tasks")
  emit(tag .. "build_time", t1 - t0, "s")
  emit(tag .. "compute_wall", t2 - t1, "s")
  emit(tag .. "rate", ntasks / (t2 - t1), "tasks/s")
  emit(tag .. "rate_incl_build", ntasks / (t2 - t0), "tasks/s")
end
client:close()

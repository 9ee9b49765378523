-- bench_f_cpu_parallel.lua -- (f) CPU-bound Monte Carlo pi.
-- Pairs with shared/bench/dask/bench_f_cpu_parallel.py: TASKS (8) tasks of
-- ITERS (2,000,000) iterations, each seeded by its index, run serially in
-- the client and then as 8 tasks on the 2-worker cluster; best of REPS (5; Dask: 2).
-- cpu_parallel.serial_wall / cluster_wall (s), .speedup (x), per_task_serial.
-- The hit counts must agree (same seeds, same generator: Lua 5.4's
-- xoshiro256** via math.randomseed(seed)).  Lua's loop is much faster than
-- CPython's, so tasks are shorter (~0.1 s instead of ~1 s): the speedup is
-- the figure to compare, not the wall times.
--   build/dlua scripts/bench/bench_f_cpu_parallel.lua    (env TASKS ITERS REPS)
local dlua = require "dlua"
local now = dlua.time
local TASKS = tonumber(os.getenv("TASKS")) or 8
local ITERS = tonumber(os.getenv("ITERS")) or 2000000
local REPS = tonumber(os.getenv("REPS")) or 5

local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit = lib.emit

local function mc_pi(seed, iters)
  math.randomseed(seed)
  local r = math.random
  local hits = 0
  for _ = 1, iters do
    local x, y = r(), r()
    if x * x + y * y <= 1.0 then hits = hits + 1 end
  end
  return hits
end

print("# dlua " .. dlua.version)
local serial, hits_s = {}, 0
for i = 1, REPS do
  local t0 = now()
  hits_s = 0
  for s = 0, TASKS - 1 do hits_s = hits_s + mc_pi(s, ITERS) end
  serial[i] = now() - t0
end

local client = dlua.Client{n_workers = 2}
assert(client:submit(mc_pi, 999, 1000):result() > 0)   -- warm-up
local par, hits_p = {}, 0
local seeds, iters = {}, {}
for s = 1, TASKS do seeds[s], iters[s] = s - 1, ITERS end
for i = 1, REPS do
  local t0 = now()
  local futs = client:map(mc_pi, seeds, iters)
  hits_p = 0
  for _, h in ipairs(client:gather(futs)) do hits_p = hits_p + h end
  par[i] = now() - t0
end
client:close()
assert(hits_p == hits_s, ("hits differ: %d vs %d"):format(hits_p, hits_s))
local n = TASKS * ITERS
print(("# %d tasks x %d iters; pi~%.5f (serial) %.5f (cluster)"):format(
  TASKS, ITERS, 4 * hits_s / n, 4 * hits_p / n))
local function fmtl(t) local o = {} for i, x in ipairs(t) do o[i] = ("%.3f"):format(x) end return table.concat(o, ", ") end
print("# serial runs [" .. fmtl(serial) .. "] cluster runs [" .. fmtl(par) .. "]")
local ms, mp = math.min(table.unpack(serial)), math.min(table.unpack(par))
emit("cpu_parallel.serial_wall", ms, "s")
emit("cpu_parallel.cluster_wall", mp, "s")
emit("cpu_parallel.speedup", ms / mp, "x")
emit("cpu_parallel.per_task_serial", ms / TASKS, "s")

-- bench_k_array.lua -- (k) chunked arrays: dlua.array on the 2-worker
-- cluster.  Pairs with shared/bench/dask/bench_k_array.py (same sizes, same
-- environment variables):
--   k1 Monte Carlo pi: N uniform pairs in chunks of CHUNK, ((x*x + y*y) < 1)
--      counted (one fused pass per block: the random numbers are drawn tile
--      by tile inside the kernel);
--   k2 (x + x.T):mean{axis = 1}:sum() of an NN x NN uniform matrix in NB x
--      NB blocks (the transpose moves data between blocks);
--   k3 (x @ x.T):sum() of an MM x MM uniform matrix in MB x MB blocks
--      (OpenBLAS dgemm per block pair, one BLAS thread per worker);
--   k4 larger than memory: a persisted uniform vector of 3x the cluster's
--      memory limit (2 workers of LIMIT bytes each, in 8 MiB blocks:
--      most of it spilled to disk) summed, against the same on a cluster
--      whose limit holds it all (dlua only: the issue asks for the wall
--      against the in-memory case).
-- Best of REPS (2) each.  Metrics: array.mc_pi.dlua_wall,
-- array.transpose_mean.dlua_wall, array.matmul.dlua_wall (s),
-- array.matmul.dlua_gflops, array.mc_pi.dlua_samples_per_s,
-- array.spilled_sum.dlua_wall, array.spilled_sum.in_memory_wall (s),
-- array.spilled_sum.spilled_bytes.
--   build/dlua scripts/bench/bench_k_array.lua   (env N CHUNK NN NB MM MB
--                                                 LIMIT REPS)
local dlua = require "dlua"
local da = require "dlua.array"
local now = dlua.time

local function env(k, d) return math.tointeger(tonumber(os.getenv(k))) or d end
local N, CH = env("N", 200000000), env("CHUNK", 10000000)
local NN, NB = env("NN", 10000), env("NB", 1000)
local MM, MB = env("MM", 4000), env("MB", 1000)
local LIMIT = env("LIMIT", 256 * 1048576)
local REPS = env("REPS", 2)

local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit = lib.emit

local function best(f)
  local tb, v = math.huge
  for _ = 1, REPS do
    local t0 = now()
    v = f()
    tb = math.min(tb, now() - t0)
  end
  return tb, v
end

print("# dlua " .. dlua.version)
print(("# k1 N=%d chunk=%d; k2 %dx%d blocks %d; k3 %dx%d blocks %d"):format(
  N, CH, NN, NN, NB, MM, MM, MB))
local client = dlua.Client{n_workers = 2}
local opts = {client = client}

local seed = 0
local function pi()
  seed = seed + 2
  local x = da.random.uniform{shape = {N}, chunks = {CH}, seed = seed}
  local y = da.random.uniform{shape = {N}, chunks = {CH}, seed = seed + 1}
  return 4.0 * (x * x + y * y):lt(1.0):sum():compute(opts) / N
end
local function k2()
  seed = seed + 1
  local x = da.random.uniform{shape = {NN, NN}, chunks = {NB, NB}, seed = seed}
  return (x + x.T):mean{axis = 1}:sum():compute(opts)
end
local function k3()
  seed = seed + 1
  local x = da.random.uniform{shape = {MM, MM}, chunks = {MB, MB}, seed = seed}
  return x:matmul(x.T):sum():compute(opts)
end

pi() -- warm-up: workers started, code cached
local t1, v1 = best(pi)
local t2, v2 = best(k2)
local t3, v3 = best(k3)
client:close()

-- k4: persist 3x the cluster's memory, then sum it; the same with room.
local function spilled_sum(limit)
  local c = dlua.Client{n_workers = 2, memory_limit = limit,
                        dashboard_address = false}
  local n = 3 * 2 * LIMIT // 8
  local x = da.random.uniform{shape = {n}, chunks = {1048576}, seed = 7}
  local p = x:persist{client = c}
  local t0 = now()
  local v = p:sum():compute{client = c}
  local t = now() - t0
  local spilled = 0
  for _, w in ipairs(c:scheduler_info().workers) do
    spilled = spilled + w.spilled
  end
  p = nil
  collectgarbage()
  c:close()
  return t, v, spilled
end
local t4, v4, sp4 = spilled_sum(LIMIT)
local t4m, v4m = spilled_sum(16 * LIMIT)
if v4 ~= v4m then error(("k4: sums differ: %.17g and %.17g"):format(v4, v4m)) end
print(("# k4 %d MiB on 2 x %d MiB: sum %.6g, %d MiB spilled"):format(
  3 * 2 * LIMIT >> 20, LIMIT >> 20, v4, sp4 >> 20))
print(("# pi %.5f; k2 %.6g; k3 %.6g"):format(v1, v2, v3))
emit("array.spilled_sum.dlua_wall", t4, "s")
emit("array.spilled_sum.in_memory_wall", t4m, "s")
emit("array.spilled_sum.spilled_bytes", sp4, "B")
emit("array.mc_pi.dlua_wall", t1, "s")
emit("array.mc_pi.dlua_samples_per_s", N / t1, "1/s")
emit("array.transpose_mean.dlua_wall", t2, "s")
emit("array.matmul.dlua_wall", t3, "s")
emit("array.matmul.dlua_gflops", 2.0 * MM * MM * MM / t3 / 1e9, "GFLOP/s")

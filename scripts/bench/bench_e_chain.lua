-- bench_e_chain.lua -- (e) linear dependency chain of N (2,000) incs.
-- Pairs with shared/bench/dask/bench_e_chain.py:
--   chain.delayed.n<N>.*   delayed chain computed with optimize=false, so
--                          every link is a real task on the cluster (Dask
--                          runs every link as a task too); this is the
--                          figure paired with Dask's chain.delayed.
--   chain.delayed_fused.n<N>.*  the same with dlua's default chain fusion
--                          (the whole chain becomes one task) -- reference.
--   chain.futures.n<N>.*   client:submit(inc, previous_future), all submitted
--                          up front, then the last result.
-- per_task = wall / N in microseconds.
--   build/dlua scripts/bench/bench_e_chain.lua        (env N, default 2000)
local dlua = require "dlua"
local now = dlua.time
local N = tonumber(os.getenv("N")) or 2000

local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit = lib.emit

local function inc(x) return x + 1 end

local function wait_empty(client) return lib.wait_empty(client, 30) end

print("# dlua " .. dlua.version)
local client = dlua.Client{n_workers = 2}

-- No pcall: a failure ends the script with an error and a non-zero exit,
-- which run-all reports as FAILED and the table as **no**.
do
  local dinc = dlua.delayed(inc)
  local x = 0
  for _ = 1, 50 do x = dinc(x) end
  assert(x:compute{optimize = false} == 50)
  for _, variant in ipairs{{"delayed", false}, {"delayed_fused", true}} do
    wait_empty(client)
    local t0 = now()
    x = 0
    for _ = 1, N do x = dinc(x) end
    local t1 = now()
    local res = x:compute{optimize = variant[2]}
    local t2 = now()
    assert(res == N, res)
    local tag = ("chain.%s.n%d."):format(variant[1], N)
    emit(tag .. "build_time", t1 - t0, "s")
    emit(tag .. "compute_wall", t2 - t1, "s")
    emit(tag .. "per_task", (t2 - t1) / N * 1e6, "us")
  end
end

wait_empty(client)
do -- warm-up
  local f = client:submit(inc, 0)
  for _ = 1, 49 do f = client:submit(inc, f) end
  assert(f:result() == 50)
end
wait_empty(client)
local t0 = now()
local f = client:submit(inc, 0)
for _ = 1, N - 1 do f = client:submit(inc, f) end
local t1 = now()
local res = f:result()
local t2 = now()
assert(res == N, res)
local tag = ("chain.futures.n%d."):format(N)
emit(tag .. "submit_time", t1 - t0, "s")
emit(tag .. "wall", t2 - t0, "s")
emit(tag .. "per_task", (t2 - t0) / N * 1e6, "us")
client:close()

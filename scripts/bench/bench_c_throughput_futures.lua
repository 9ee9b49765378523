-- bench_c_throughput_futures.lua -- (c) many tiny independent tasks.
-- Pairs with shared/bench/dask/bench_c_throughput_futures.py:
-- client:map(inc, {1..N}) + client:gather, N = 10,000 and 50,000 (env SIZES),
-- after a 500-task warm-up, each size REPS times (env, default 5):
-- throughput_futures.n<N>.submit_time / wall (s) and .rate (tasks/s, wall
-- from the first submit to the last value) are the medians of the reps,
-- .rate_first the first rep alone.  The first 10,000 tasks after a start
-- write memory for the first time, which on a VM costs whatever the host
-- takes to back it (from 360k to 700k tasks/s between runs of one build
-- here); the median is the figure for the bar, the first is shown too.
-- Between sizes the futures are released and we wait until the scheduler
-- holds no task (as Dask's wait_scheduler_empty).
--   build/dlua scripts/bench/bench_c_throughput_futures.lua
local dlua = require "dlua"
local now = dlua.time
local SIZES = {}
for s in (os.getenv("SIZES") or "10000,50000"):gmatch("%d+") do
  SIZES[#SIZES + 1] = tonumber(s)
end

local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit = lib.emit

local REPS = tonumber(os.getenv("REPS")) or 5

local function inc(x) return x + 1 end

local function wait_empty(client, timeout)
  local t0 = now()
  while now() - t0 < (timeout or 30) do
    collectgarbage()
    local c = client:scheduler_info().tasks
    local n = 0
    for _, v in pairs(c) do n = n + v end
    if n == 0 then return true end
    client:_pump(0.01)
  end
  print("# scheduler still holds tasks after the wait")
  return false
end

local function run(client, n)
  local seq = {}
  for i = 1, n do seq[i] = i - 1 end
  local t0 = now()
  local futs = client:map(inc, seq)
  local t1 = now()
  local res = client:gather(futs)
  local t2 = now()
  assert(#res == n and res[1] == 1 and res[n] == n, "wrong results")
  for _, f in ipairs(futs) do f:release() end
  futs, res = nil, nil
  wait_empty(client)
  return t1 - t0, t2 - t0
end

print("# dlua " .. dlua.version)
local client = dlua.Client{n_workers = 2}
run(client, 500)
for _, n in ipairs(SIZES) do
  local subs, tots = {}, {}
  for r = 1, REPS do
    subs[r], tots[r] = run(client, n)
    print(("# n=%d rep %d: %.0f tasks/s"):format(n, r, n / tots[r]))
  end
  emit(("throughput_futures.n%d.rate_first"):format(n), n / tots[1], "tasks/s")
  local tot = lib.median(tots)
  emit(("throughput_futures.n%d.submit_time"):format(n), lib.median(subs), "s")
  emit(("throughput_futures.n%d.wall"):format(n), tot, "s")
  emit(("throughput_futures.n%d.rate"):format(n), n / tot, "tasks/s")
end
client:close()

-- bench_n_coord.lua -- (n) tasks that launch tasks, and shared state
-- (issue 18).  Pairs with bench_n_coord.py beside it (Dask, run with
-- /usr/bin/python3).
--   coord.fib.n<N>.wall / .tasks / .per_task   recursive fib(N) by tasks
--       (each task submits two and gathers them) on 2 one-slot workers.
--   coord.queue_rtt.median / .p90   a value put on a Queue by a task on
--       worker A, taken by a task on worker B, which puts it back on a
--       second Queue for A: the round trip, measured in A (M times).
--   coord.sem.acq_per_s   4 tasks contend 1,000 times in all for a
--       Semaphore of 2 leases; .max_holders is the most holders seen at
--       once (from the holders' own clock readings: must be <= 2).
--   build/dlua scripts/bench/bench_n_coord.lua   (env N, default 20; M 2000)
local dlua = require "dlua"
local now = dlua.time
local N = tonumber(os.getenv("N")) or 20
local M = tonumber(os.getenv("M")) or 2000

local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit = lib.emit

print("# dlua " .. dlua.version)
local client = dlua.Client{n_workers = 2, dashboard_address = false}
client:wait_for_workers(2, 30)

local function fib(n)
  if n < 2 then return n end
  local c = require("dlua").get_client()
  local r = c:gather{c:submit(fib, n - 1), c:submit(fib, n - 2)}
  return r[1] + r[2]
end

local function fib_tasks(n) -- tasks a fib(n) run makes
  local a, b = 1, 1 -- tasks(0), tasks(1)
  for _ = 2, n do a, b = b, a + b + 1 end
  return n == 0 and 1 or b
end

do
  assert(client:submit(fib, 10):result(60) == 55) -- warm the workers
  lib.wait_empty(client, 30)
  local t0 = now()
  local v = client:submit(fib, N):result(600)
  local wall = now() - t0
  local a, b = 0, 1
  for _ = 1, N do a, b = b, a + b end
  assert(v == a, v)
  local tasks = fib_tasks(N)
  emit(("coord.fib.n%d.wall"):format(N), wall, "s")
  emit(("coord.fib.n%d.tasks"):format(N), tasks, "tasks")
  emit(("coord.fib.n%d.per_task"):format(N), wall / tasks * 1e6, "us")
end

do
  local ids = {}
  for _, w in ipairs(client.handle:workers()) do ids[#ids + 1] = w.id end
  table.sort(ids)
  local ping, pong = dlua.Queue("bench-ping"), dlua.Queue("bench-pong")
  local function echo(a, b, m)
    for _ = 1, m + 1 do b:put(a:get()) end
    return true
  end
  local function pinger(a, b, m)
    local t = require("dlua").time
    local rtts = {}
    a:put(0)
    b:get() -- the first round trip meets the echo task starting
    for i = 1, m do
      local t0 = t()
      a:put(i)
      assert(b:get() == i)
      rtts[i] = t() - t0
    end
    return rtts
  end
  local e = client:submit(echo, ping, pong, M,
                          dlua.opts{workers = {ids[2]}})
  local p = client:submit(pinger, ping, pong, M,
                          dlua.opts{workers = {ids[1]}})
  local rtts = p:result(600)
  assert(e:result(60))
  table.sort(rtts)
  emit("coord.queue_rtt.median", lib.median(rtts) * 1e6, "us")
  emit("coord.queue_rtt.p90", rtts[math.ceil(#rtts * 0.9)] * 1e6, "us")
end

do
  local sem = dlua.Semaphore("bench-sem", {max_leases = 2})
  local function contend(s, n)
    local t = require("dlua").time
    local spans = {}
    for i = 1, n do
      assert(s:acquire())
      local a = t()
      local b = t()
      s:release()
      spans[i] = {a, b}
    end
    return spans
  end
  local t0 = now()
  local futs = client:map(contend, {sem, sem, sem, sem},
                          {250, 250, 250, 250})
  local all = client:gather(futs, 600)
  local wall = now() - t0
  local ev = {}
  for _, spans in ipairs(all) do
    for _, s in ipairs(spans) do
      ev[#ev + 1] = {s[1], 1}
      ev[#ev + 1] = {s[2], -1}
    end
  end
  table.sort(ev, function(x, y)
    if x[1] ~= y[1] then return x[1] < y[1] end
    return x[2] < y[2] -- a release at the same instant goes first
  end)
  local cur, most = 0, 0
  for _, x in ipairs(ev) do
    cur = cur + x[2]
    if cur > most then most = cur end
  end
  assert(most <= 2, "semaphore overbooked: " .. most .. " holders")
  emit("coord.sem.acq_per_s", 1000 / wall, "acq/s")
  emit("coord.sem.max_holders", most, "holders")
end

client:close()

-- bench_o_tcp.lua -- (o) a cluster past one machine, on this host: the
-- round trip of one trivial task and map + gather throughput through a
-- `dlua scheduler` process and 2 `dlua worker` processes over
-- authenticated TCP (loopback), beside the same on a local cluster
-- (Unix sockets, the scheduler a thread of the client).  Pairs with
-- scripts/bench/bench_o_tcp.py (Dask: dask scheduler + dask worker over
-- TCP).  Not in run-all's default list.
--   build/dlua scripts/bench/bench_o_tcp.lua      (env N = 200, M = 10000)
local dlua = require "dlua"
local now = dlua.time
local N = tonumber(os.getenv("N")) or 200
local M = tonumber(os.getenv("M")) or 10000
local WARMUP = 20

local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit, median = lib.emit, lib.median

local function inc(x) return x + 1 end

local function measure(client, tag)
  client:wait_for_workers(2, 60)
  for i = 1, WARMUP do assert(client:submit(inc, i):result() == i + 1) end
  local lat = {}
  for i = 1, N do
    local t0 = now()
    assert(client:submit(inc, i):result() == i + 1)
    lat[i] = (now() - t0) * 1e6
  end
  emit(tag .. ".latency.median", median(lat), "us")
  local xs = {}
  for i = 1, M do xs[i] = i end
  local best = 0
  for _ = 1, 3 do
    local t0 = now()
    local r = client:gather(client:map(inc, xs))
    local dt = now() - t0
    assert(r[M] == M + 1)
    best = math.max(best, M / dt)
    lib.wait_empty(client, 5)
  end
  emit(tag .. ".map_gather", best, "tasks/s")
end

print("# dlua " .. dlua.version)
do
  local client = dlua.Client{n_workers = 2, dashboard_address = false}
  measure(client, "unix")
  client:close()
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -m 700 " .. dir))
local f = assert(io.open(dir .. "/token", "w"))
f:write(("%08x"):rep(4):format(math.random(0, 0x7fffffff),
        math.random(0, 0x7fffffff), math.random(0, 0x7fffffff),
        math.random(0, 0x7fffffff)), "\n")
f:close()
assert(os.execute("chmod 600 " .. dir .. "/token"))
local exe = arg[-1]
assert(os.execute(("%s scheduler --host 127.0.0.1 --port 0 "
  .. "--dashboard-address none --scheduler-file %s/sf --token-file %s/token "
  .. ">%s/sched.log 2>&1 &"):format(exe, dir, dir, dir)))
assert(os.execute(("%s worker --scheduler-file %s/sf --token-file %s/token "
  .. "--nworkers 2 >%s/workers.log 2>&1 &"):format(exe, dir, dir, dir)))
local client
local t0 = now()
while not client and now() - t0 < 30 do
  local ok, c = pcall(dlua.Client, {scheduler_file = dir .. "/sf",
                                    token_file = dir .. "/token"})
  if ok then client = c else dlua.sleep(0.05) end
end
assert(client, "no scheduler: see " .. dir .. "/sched.log")
measure(client, "tcp")
client:shutdown()
os.execute("sleep 0.5; rm -rf " .. dir)

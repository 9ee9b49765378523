-- bench_p_netns.lua -- (p) a cluster past one machine, simulated honestly:
-- a `dlua scheduler` and two `dlua worker`s (one process each) in three
-- network namespaces joined by veth pairs (scripts/bench/netns3), over TCP
-- with the token's authentication, without and then with mutual TLS.  The
-- client runs in the scheduler's namespace.  Measures the round trip of
-- one trivial task (median of N), map + gather of M trivial tasks (best
-- of 3) and a MB-megabyte value made on one worker and used on the other
-- (best of REPS; the value crosses the veths worker to worker).  Pairs
-- with bench_p_netns.py (Dask, same topology).  Needs root and `ip netns`:
-- otherwise it says so and exits 0.
--   build/dlua scripts/bench/bench_p_netns.lua   (env N=200 M=10000 MB=100 REPS=3)
local dlua = require "dlua"
local now = dlua.time
local N = tonumber(os.getenv("N")) or 200
local M = tonumber(os.getenv("M")) or 10000
local MB = tonumber(os.getenv("MB")) or 100
local REPS = tonumber(os.getenv("REPS")) or 3
local here = arg[0]:match("^(.*/)") or "./"
local lib = dofile(here .. "lib.lua")
local emit, median = lib.emit, lib.median

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function inc(x) return x + 1 end

-- Inside namespace S: join the scheduler at sf and measure (tag: tcp|tls).
local function measure(sf, token, tag)
  local c
  local t0 = now()
  while not c and now() - t0 < 60 do
    local ok, cc = pcall(dlua.Client, {scheduler_file = sf,
                                       token_file = token})
    if ok then c = cc else dlua.sleep(0.05) end
  end
  assert(c, "no scheduler at " .. sf)
  c:wait_for_workers(2, 60)
  for i = 1, 20 do assert(c:submit(inc, i):result() == i + 1) end
  local lat = {}
  for i = 1, N do
    local s = now()
    assert(c:submit(inc, i):result() == i + 1)
    lat[i] = (now() - s) * 1e6
  end
  emit(("netns.%s.latency.median"):format(tag), median(lat), "us")
  local xs = {}
  for i = 1, M do xs[i] = i end
  local best = 0
  for _ = 1, 3 do
    local s = now()
    local r = c:gather(c:map(inc, xs))
    local dt = now() - s
    assert(r[M] == M + 1)
    best = math.max(best, M / dt)
    lib.wait_empty(c, 5)
  end
  emit(("netns.%s.map_gather"):format(tag), best, "tasks/s")
  local ws = c.cluster:workers()
  table.sort(ws, function(x, y) return x.id < y.id end)
  local size = MB * 1000000
  best = 0
  for r = 1, REPS do
    local big = c:submit(function(n, k) return string.rep("x", n - 8)
                           .. ("%08d"):format(k) end, size, r,
                         dlua.opts{workers = {ws[1].id}, pure = false})
    dlua.wait(big)
    local s = now()
    local n = c:submit(function(v) return #v end, big,
                       dlua.opts{workers = {ws[2].id}, pure = false}):result()
    local dt = now() - s
    assert(n == size)
    best = math.max(best, size / dt / 1e9)
    big:release()
    lib.wait_empty(c, 10)
  end
  emit(("netns.%s.transfer_mb%d"):format(tag, MB), best, "GB/s")
  c:shutdown()
end

if arg[1] == "--inner" then
  measure(arg[2], arg[3], arg[4])
  os.exit(0)
end

-- Outside: make the namespaces, run a scheduler and 2 workers in them,
-- and this script again inside S as the client; without TLS, then with.
local function ok_root()
  local f = io.open("/proc/self/status")
  local st = f and f:read("a") or ""
  if f then f:close() end
  return st:match("\nUid:%s+0%s") and os.execute("ip netns list >/dev/null 2>&1")
end
print("# dlua " .. dlua.version)
if not ok_root() then
  print("# bench p skipped: it needs root and `ip netns` (network namespaces)")
  os.exit(0)
end
local exe = arg[-1]
local tag = ("%d"):format(math.random(100000, 999999))
local netns3 = here .. "netns3"
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -m 700 " .. q(dir)))
local token = dir .. "/token"
local f = assert(io.open(token, "w"))
f:write(("%08x"):rep(4):format(math.random(0, 0x7fffffff),
        math.random(0, 0x7fffffff), math.random(0, 0x7fffffff),
        math.random(0, 0x7fffffff)), "\n")
f:close()
assert(os.execute("chmod 600 " .. q(token)))
local failed
local ok, err = pcall(function()
  assert(os.execute(q(netns3) .. " up " .. tag), "netns3 up failed")
  assert(os.execute(q(exe) .. " tls-gen " .. q(dir .. "/tls") .. " 2>/dev/null"))
  for _, mode in ipairs{"tcp", "tls"} do
    local sf = dir .. "/sf-" .. mode
    local tls = mode == "tls" and " --tls-dir " .. q(dir .. "/tls") or ""
    assert(os.execute(("ip netns exec dlpS%s %s scheduler --host 10.79.0.1 "
      .. "--port 0 --dashboard-address none --scheduler-file %s "
      .. "--token-file %s%s >>%s/log 2>&1 &"):format(tag, q(exe), q(sf),
        q(token), tls, q(dir))))
    for _, w in ipairs{"A", "B"} do
      assert(os.execute(("ip netns exec dlp%s%s %s worker --scheduler-file "
        .. "%s --token-file %s >>%s/log 2>&1 &"):format(w, tag, q(exe), q(sf),
          q(token), q(dir))))
    end
    if not os.execute(("ip netns exec dlpS%s %s %s --inner %s %s %s")
                      :format(tag, q(exe), q(arg[0]), q(sf), q(token), mode))
    then
      failed = mode
      break
    end
    -- the scheduler and workers stop on the client's shutdown
    local t0 = now()
    while now() - t0 < 20 do
      local p = io.popen("ip netns pids dlpS" .. tag .. "; ip netns pids dlpA"
                         .. tag .. "; ip netns pids dlpB" .. tag)
      local any = p:read("l")
      p:close()
      if not any then break end
      dlua.sleep(0.05)
    end
  end
end)
os.execute(q(netns3) .. " down " .. tag)
if failed or not ok then
  io.stderr:write("bench p failed (", tostring(failed or err), "); log:\n",
                  lib.slurp and lib.slurp(dir .. "/log") or "", "\n")
end
os.execute("rm -rf " .. q(dir))
if failed or not ok then os.exit(1) end

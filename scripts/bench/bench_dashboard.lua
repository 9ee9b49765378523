-- bench_dashboard.lua -- what watching costs: task throughput (client:map
-- of N = 20,000 trivial tasks + gather, tasks/s) on a 2-worker cluster
-- with no dashboard clients, with 200 clients polling /json/status every
-- 500 ms (200 open dashboards), and with 200 clients asking again as soon
-- as each answer arrives (build/http_load; a stress test).  REPS runs of
-- each, interleaved; the median is reported with the slowdown against no
-- clients.  Target: <= 10 % with 200 dashboards.
--   build/dlua scripts/bench/bench_dashboard.lua      (env N, REPS)
local dlua = require "dlua"
local now = dlua.time

local N = tonumber(os.getenv("N")) or 20000
local REPS = tonumber(os.getenv("REPS")) or 5
local src = debug.getinfo(1, "S").source:sub(2)
local root = src:match("^(.*)/scripts/bench/[^/]*$") or "."
local LOAD = (os.getenv("DLUA_BUILD") or (root .. "/build")) .. "/http_load"

local function emit(name, v, unit)
  print(("%s %.6g %s"):format(name, v, unit))
  io.stdout:flush()
end

local function inc(x) return x + 1 end

local client = dlua.Client{n_workers = 2, dashboard_address = "127.0.0.1:0"}
local addr = client.cluster.dashboard_address
print("# dlua " .. dlua.version .. ", dashboard " .. client.cluster.dashboard_link)

local seq = {}
for i = 1, N do seq[i] = i end

local function run()
  local t0 = now()
  local futs = client:map(inc, seq)
  local res = client:gather(futs)
  local t = now() - t0
  assert(#res == N and res[N] == N + 1)
  for _, f in ipairs(futs) do f:release() end
  return N / t
end

-- Start http_load in the background; returns a function that stops it
-- and returns its summary line.
local function load(interval_ms)
  local pidf, outf = os.tmpname(), os.tmpname()
  os.execute(("sh -c 'echo $$ > %s; exec %s -c 200 -d 3600 -i %d %s' > %s 2>&1 &")
    :format(pidf, LOAD, interval_ms, addr, outf))
  local pid
  repeat
    local f = io.open(pidf)
    pid = f and tonumber(f:read("a"))
    if f then f:close() end
  until pid
  os.execute("sleep 0.5") -- let the 200 connections open
  return function()
    os.execute("kill -INT " .. pid .. " 2>/dev/null; sleep 0.2")
    local f = io.open(outf)
    local s = f and f:read("a") or ""
    if f then f:close() end
    os.remove(pidf)
    os.remove(outf)
    return s
  end
end

local modes = {
  {name = "none"},
  {name = "poll500ms", interval = 500},
  {name = "tight", interval = 0},
}
local rates = {}
for _, m in ipairs(modes) do rates[m.name] = {} end
run()
for _ = 1, REPS do
  for _, m in ipairs(modes) do
    local stop = m.interval and load(m.interval)
    local r = run()
    if stop then stop() end
    table.insert(rates[m.name], r)
  end
end

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end
local base = median(rates.none)
for _, m in ipairs(modes) do
  local r = median(rates[m.name])
  emit(("dashboard.%s.rate"):format(m.name), r, "tasks/s")
  if m.name ~= "none" then
    emit(("dashboard.%s.slowdown"):format(m.name), 100 * (1 - r / base), "%")
  end
end
client:close()

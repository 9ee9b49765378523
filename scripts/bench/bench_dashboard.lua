-- bench_dashboard.lua -- what watching costs (issue 19: 200 viewers must
-- not slow the cluster measurably): task throughput (client:map of N =
-- 20,000 trivial tasks + gather, tasks/s) on a 2-worker cluster, and the
-- latency of the viewers' requests, with
--   none:      no dashboard clients;
--   viewers:   200 open status pages: each polls /json/status and
--              /json/workers in turn every 500 ms (build/http_load);
--   stream:    200 status pages on a busy cluster: /json/status and
--              /json/stream?since=0 (up to 5,000 task events a poll, the
--              most one can get) in turn every 500 ms;
--   tight:     200 clients asking /json/status again as soon as each
--              answer arrives (a stress test, not a use).
-- REPS runs of each, interleaved; the medians are reported, with the
-- slowdown against no clients and the requests' p50 / p99 / max latency
-- (ms, over all runs of that mode).  Target: <= 10 % with 200 viewers.
--   build/dlua scripts/bench/bench_dashboard.lua      (env N, REPS,
--   MODES: a comma-separated subset, e.g. MODES=none,stream)
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
local function load(interval_ms, paths)
  local pidf, outf = os.tmpname(), os.tmpname()
  local ps = {}
  for _, p in ipairs(paths) do ps[#ps + 1] = "-p '" .. p .. "'" end
  os.execute(("sh -c 'echo $$ > %s; exec %s -c 200 -d 3600 -i %d %s %s' > %s 2>&1 &")
    :format(pidf, LOAD, interval_ms, table.concat(ps, " "):gsub("'", "'\\''"),
            addr, outf))
  local pid
  repeat
    local f = io.open(pidf)
    pid = f and tonumber(f:read("a"))
    if f then f:close() end
  until pid
  os.execute("sleep 0.5") -- let the 200 connections open
  return function()
    os.execute("kill -INT " .. pid .. " 2>/dev/null")
    local s = ""
    for _ = 1, 100 do -- it prints its line as it stops
      local f = io.open(outf)
      s = f and f:read("a") or ""
      if f then f:close() end
      if s:find("max_ms=") then break end
      os.execute("sleep 0.05")
    end
    os.remove(pidf)
    os.remove(outf)
    return s
  end
end

local modes = {
  {name = "none"},
  {name = "viewers", interval = 500, paths = {"/json/status", "/json/workers"}},
  {name = "stream", interval = 500, paths = {"/json/status", "/json/stream?since=0"}},
  {name = "tight", interval = 0, paths = {"/json/status"}},
}
if os.getenv("MODES") then
  local want, kept = {}, {}
  for m in os.getenv("MODES"):gmatch("[^,]+") do want[m] = true end
  assert(want.none, "MODES must include none (the baseline)")
  for _, m in ipairs(modes) do
    if want[m.name] then kept[#kept + 1] = m end
  end
  modes = kept
end
local rates, lat = {}, {}
for _, m in ipairs(modes) do rates[m.name], lat[m.name] = {}, {} end
run()
for _ = 1, REPS do
  for _, m in ipairs(modes) do
    local stop = m.interval and load(m.interval, m.paths)
    local r = run()
    if stop then
      local line = stop()
      local p50, p99, mx = line:match("p50_ms=(%S+) p90_ms=%S+ p99_ms=(%S+) max_ms=(%S+)")
      assert(p50, "http_load said: " .. line)
      table.insert(lat[m.name], {tonumber(p50), tonumber(p99), tonumber(mx)})
    end
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
    local p50, p99, mx = {}, {}, 0
    for _, x in ipairs(lat[m.name]) do
      p50[#p50 + 1], p99[#p99 + 1], mx = x[1], x[2], math.max(mx, x[3])
    end
    emit(("dashboard.%s.latency_p50"):format(m.name), median(p50), "ms")
    emit(("dashboard.%s.latency_p99"):format(m.name), median(p99), "ms")
    emit(("dashboard.%s.latency_max"):format(m.name), mx, "ms")
  end
end
client:close()

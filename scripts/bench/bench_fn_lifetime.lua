-- bench_fn_lifetime.lua -- memory after many distinct functions.
-- Submits N (env N, default 50000) distinct generated functions in batches
-- of 1000, gathers and releases every future, and reports the client's and
-- the workers' process memory at the end (and after the first batch):
-- bytecode that no live task or future needs should not pile up.
--   build/dlua scripts/bench/bench_fn_lifetime.lua
local dlua = require "dlua"
local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit = lib.emit
local N = tonumber(os.getenv("N")) or 50000
local BATCH = 1000
local PAD = ("v"):rep(1000)

local function rss_mb(pid)
  local f = io.open("/proc/" .. (pid or "self") .. "/statm")
  if not f then return 0 end
  local _, res = f:read("n", "n")
  f:close()
  return res * 4096 / 1e6
end

local c = dlua.Client{n_workers = 2, dashboard_address = false}
local function report(tag)
  collectgarbage()
  collectgarbage()
  local ws = c.cluster:workers()
  local wmax = 0
  for _, w in ipairs(ws) do
    local r = rss_mb(w.pid)
    if r > wmax then wmax = r end
  end
  emit("fn_lifetime." .. tag .. "_client_rss", rss_mb(), "MB")
  emit("fn_lifetime." .. tag .. "_worker_rss_max", wmax, "MB")
end

local t0 = dlua.time()
for b = 0, N // BATCH - 1 do
  local futs = {}
  for i = 1, BATCH do
    local k = b * BATCH + i
    -- ~1.2 KB of bytecode each: a constant string and a little code
    local f = load(("return function(x) local s = %q "
                    .. "return x + %d + #s - #s end"):format(PAD .. k, k))()
    futs[i] = c:submit(f, 1)
  end
  local got = c:gather(futs, 120)
  assert(got[BATCH] == b * BATCH + BATCH + 1, "wrong result")
  futs, got = nil, nil
  if b == 0 then report("first_batch") end
end
emit("fn_lifetime.seconds", dlua.time() - t0, "s")
report("end")
c:close()

-- soak.lua -- random work under random faults, for a long time (issue 21).
-- Run through scripts/bench/soak, which gives it a small tmpfs as TMPDIR,
-- SIGKILLs, SIGSTOPs and SIGCONTs its workers at random from outside, fills
-- the disk in the middle, and checks afterwards that nothing is left.
-- This script runs rounds of random work (maps of small tasks, chains on
-- 1 MiB intermediates that must be recomputed when their holder dies,
-- values big enough to spill) and checks every result; the memory of the
-- client and of the largest worker is sampled after every round.
--   SECONDS_TOTAL (600)  SEED (os.time())  WORKERS (3)
local dlua = require "dlua"
local now = dlua.time
local DURATION = tonumber(os.getenv("SECONDS_TOTAL")) or 600
local SEED = tonumber(os.getenv("SEED")) or os.time()
local NW = tonumber(os.getenv("WORKERS")) or 3
assert(os.getenv("DLUA_SOAK"), "run through scripts/bench/soak")

local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit = lib.emit
math.randomseed(SEED)

local function rss_kb()
  local f = io.open("/proc/self/status")
  for line in f:lines() do
    local v = line:match("^VmRSS:%s*(%d+)")
    if v then f:close(); return tonumber(v) end
  end
  f:close()
end

-- Task functions.  Results depend only on their arguments, so the client
-- can check every one of them.
local function inc(x) return x + 1 end
local function blob(i, n)  -- n bytes that depend on i
  local unit = string.char(65 + i % 26, 97 + i % 23, 48 + i % 10)
  return string.rep(unit, n // 3 + 1):sub(1, n)
end
local function digest(s)  -- position-weighted byte sum of every byte
  local h = #s
  for k = 1, #s, 4096 do
    local a, b, c, d = s:byte(k, k + 3)
    h = (h * 31 + a + 3 * (b or 0) + 7 * (c or 0) + 11 * (d or 0)) % 1000000007
  end
  return h
end
local function grow(s, i) return s .. string.char(65 + i % 26) end

local rounds, checked, wrong, errors = 0, 0, 0, {}
local function expect(got, want, what)
  checked = checked + 1
  if got ~= want then
    wrong = wrong + 1
    io.stderr:write(("soak: WRONG %s: got %s, want %s\n"):format(
      what, tostring(got), tostring(want)))
  end
end

local kinds = {}
function kinds.map(client)
  local n = math.random(50, 2000)
  local xs = {}
  for i = 1, n do xs[i] = i end
  local ys = client:gather(client:map(inc, xs), 120)
  for i = 1, n do expect(ys[i], i + 1, "map") end
end
function kinds.chain(client)
  -- a 1 MiB value, then a chain on it: a kill of its holder forces a
  -- recompute from lineage (the scheduler keeps only small values).
  local i = math.random(1, 1e6)
  local f = client:submit(blob, i, 1 << 20)
  for k = 1, 4 do f = client:submit(grow, f, k) end
  local d = client:submit(digest, f)
  local want = blob(i, 1 << 20)
  for k = 1, 4 do want = grow(want, k) end
  expect(d:result(120), digest(want), "chain")
end
function kinds.spill(client)
  -- values that together pass the workers' spill threshold
  local n = math.random(8, 24)
  local fs, ds = {}, {}
  for k = 1, n do
    fs[k] = client:submit(blob, k, (3 << 20) + k)
    ds[k] = client:submit(digest, fs[k])
  end
  local got = client:gather(ds, 120)
  for k = 1, n do expect(got[k], digest(blob(k, (3 << 20) + k)), "spill") end
  -- and read one big value back on the client, byte for byte
  local k = math.random(1, n)
  expect(fs[k]:result(120), blob(k, (3 << 20) + k), "spill read-back")
end
local kind_names = {"map", "chain", "spill"}

local client = dlua.Client{n_workers = NW, memory_limit = "160MB",
                           allowed_failures = 1000,
                           dashboard_address = false}
local cluster = client.cluster
local t0 = now()
local samples = {}
while now() - t0 < DURATION do
  local kind = kind_names[math.random(#kind_names)]
  local ok, err = pcall(kinds[kind], client)
  rounds = rounds + 1
  if not ok then
    errors[#errors + 1] = kind .. ": " .. tostring(err)
    io.stderr:write("soak: ERROR " .. errors[#errors] .. "\n")
  end
  collectgarbage()
  local w = 0
  for _, x in ipairs(cluster:workers()) do w = math.max(w, x.rss or 0) end
  samples[#samples + 1] = {t = now() - t0, client = rss_kb(), worker = w}
end

-- Memory: compare the first sample after warm-up (a fifth of the run)
-- with the last fifth's median, for the client and the largest worker.
local function med(from, to, field)
  local xs = {}
  for _, s in ipairs(samples) do
    if s.t >= from and s.t <= to then xs[#xs + 1] = s[field] end
  end
  return #xs > 0 and lib.median(xs) or 0
end
local warm, last = DURATION / 5, DURATION * 4 / 5
emit("soak.seconds", now() - t0, "s")
emit("soak.seed", SEED, "")
emit("soak.rounds", rounds, "rounds")
emit("soak.values_checked", checked, "values")
emit("soak.values_wrong", wrong, "values")
emit("soak.errors", #errors, "rounds")
emit("soak.client_rss_after_warmup", med(warm, warm + DURATION / 10, "client") / 1024, "MiB")
emit("soak.client_rss_last_fifth", med(last, DURATION, "client") / 1024, "MiB")
emit("soak.worker_rss_after_warmup", med(warm, warm + DURATION / 10, "worker") / 1048576, "MiB")
emit("soak.worker_rss_last_fifth", med(last, DURATION, "worker") / 1048576, "MiB")
client:close()
os.exit((wrong == 0 and #errors == 0) and 0 or 1)

-- bench_a_cluster_start.lua -- (a) cluster start/close.
-- Pairs with shared/bench/dask/bench_a_cluster_start.py: a 2-worker
-- LocalCluster + Client is started (workers ready: Client returns only when
-- both worker processes have connected), checked (2 workers), closed.
-- Prints: cluster_start.start_first/start_median/start_min/close_median (s),
-- plus the whole process (`dlua -e` one-liners: one that starts and closes a
-- cluster, one that also runs one task, as a new user's first script
-- does) and the bare interpreter start (dlua's "import" cost).
--   build/dlua scripts/bench/bench_a_cluster_start.lua     (env REPS, default 7)
local dlua = require "dlua"
local now = dlua.time
local REPS = tonumber(os.getenv("REPS")) or 7

local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit, median = lib.emit, lib.median
local function min(xs) local m = math.huge for _, x in ipairs(xs) do if x < m then m = x end end return m end

-- the interpreter running this script (lua.c convention: arg[-1])
local exe = os.getenv("DLUA") or (arg and arg[-1]) or "build/dlua"
print("# dlua " .. dlua.version .. " (" .. exe .. ")")

local function proc(cmd)
  local t0 = now()
  local ok = os.execute(cmd)
  local dt = now() - t0
  if not ok then print("# command failed: " .. cmd) end
  return dt
end

local imp = {}
for _ = 1, REPS do imp[#imp + 1] = proc(exe .. " -e 'require \"dlua\"'") end
emit("cluster_start.import_dlua_process_median", median(imp), "s")

local starts, closes = {}, {}
for i = 1, REPS do
  local t0 = now()
  local c = dlua.Client{n_workers = 2}
  local t1 = now()
  local n = #c.cluster:workers()
  assert(n == 2, n)
  c:close()
  local t2 = now()
  starts[i], closes[i] = t1 - t0, t2 - t1
  print(("# rep %d: start %.4fs close %.4fs"):format(i, t1 - t0, t2 - t1))
end
emit("cluster_start.start_first", starts[1], "s")
emit("cluster_start.start_median", median(starts), "s")
emit("cluster_start.start_min", min(starts), "s")
emit("cluster_start.close_median", median(closes), "s")

-- start + one round trip + close, to show the workers really are usable
local rt = {}
for i = 1, REPS do
  local t0 = now()
  local c = dlua.Client{n_workers = 2}
  assert(c:submit(function(x) return x + 1 end, 1):result() == 2)
  c:close()
  rt[i] = now() - t0
end
emit("cluster_start.start_roundtrip_close_median", median(rt), "s")

-- the whole process, REPS times: its median and min under tag
local function whole_process(cmd, label, tag)
  local ts = {}
  for i = 1, REPS do
    ts[i] = proc(cmd)
    print(("# rep %d: %s %.4fs"):format(i, label, ts[i]))
  end
  emit("cluster_start." .. tag .. "_median", median(ts), "s")
  emit("cluster_start." .. tag .. "_min", min(ts), "s")
end
whole_process(exe .. [[ -e 'local d = require "dlua"; local c = d.Client{n_workers=2}; c:close()']],
              "whole-process", "whole_process_oneliner")
-- the whole process again, with one task between start and close
whole_process(exe .. [[ -e 'local d = require "dlua"; local c = d.Client{n_workers=2}; ]]
  .. [[assert(c:submit(function(x) return x + 1 end, 1):result() == 2); c:close()']],
              "whole-process with one task", "whole_process_one_task")

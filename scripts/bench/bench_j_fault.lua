-- bench_j_fault.lua -- (j) a worker SIGKILLed midway.
-- Pairs with shared/bench/dask/bench_j_fault.py: NTASKS (20) tasks that
-- sleep SLEEP (0.5) s and return {i, worker pid}; first a baseline without
-- fault, then the same with one worker (pid from client.cluster:workers())
-- killed with `kill -9` KILL_AT (2.0) s after submission.  All 20 results
-- must still arrive.  fault.baseline_wall / wall_with_kill / time_after_kill
-- (s), finished_before_kill, results_from_victim_pid, workers_after,
-- death_detected_after_kill (ms), replacement_worker_after_kill (s),
-- recovered (bool).  The sleep is os.execute("sleep 0.5") in the worker
-- (Lua has no sleep; Dask's task sleeps in time.sleep, also off-CPU).
--   build/dlua scripts/bench/bench_j_fault.lua
local dlua = require "dlua"
local now = dlua.time
local NTASKS = tonumber(os.getenv("NTASKS")) or 20
local SLEEP = tonumber(os.getenv("SLEEP")) or 0.5
local KILL_AT = tonumber(os.getenv("KILL_AT")) or 2.0
local TIMEOUT = tonumber(os.getenv("TIMEOUT")) or 120

local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit = lib.emit

local function slow(i, s)
  if s > 0 then os.execute(("sleep %.3f"):format(s)) end
  local f = io.open("/proc/self/stat")
  local pid = f:read("n")
  f:close()
  return {i, pid}
end

local function seqs()
  local ids, ss = {}, {}
  for i = 1, NTASKS do ids[i], ss[i] = i - 1, SLEEP end
  return ids, ss
end

local function check(res)
  local seen = {}
  for _, r in ipairs(res) do seen[r[1]] = true end
  for i = 0, NTASKS - 1 do if not seen[i] then return false end end
  return #res == NTASKS
end

print("# dlua " .. dlua.version)
local client = dlua.Client{n_workers = 2}
local recovered = false
local ok, err = pcall(function()
  client:submit(slow, -1, 0):result()
  local t0 = now()
  local base = client:gather(client:map(slow, seqs()))
  emit("fault.baseline_wall", now() - t0, "s")
  assert(check(base), "baseline results incomplete")

  local ws = client.cluster:workers()
  table.sort(ws, function(a, b) return a.id < b.id end)
  local victim_id, victim_pid = ws[1].id, ws[1].pid
  t0 = now()
  local futs = client:map(slow, seqs())
  -- wait KILL_AT seconds, keeping the client's message loop running
  while now() - t0 < KILL_AT do client:_pump(KILL_AT - (now() - t0)) end
  local done_before = 0
  for _, f in ipairs(futs) do if f:status() == "finished" then done_before = done_before + 1 end end
  os.execute("kill -9 " .. victim_pid)
  local tk = now()
  print(("# killed worker %d pid %d at t=%.2fs, %d/%d finished before kill"):format(
    victim_id, victim_pid, tk - t0, done_before, NTASKS))
  local t_removed, t_back, t_done
  while now() - tk < TIMEOUT do
    local cur = client.cluster:workers()
    local present = false
    for _, w in ipairs(cur) do if w.id == victim_id or w.pid == victim_pid then present = true end end
    if not t_removed and not present then t_removed = now() end
    if t_removed and not t_back and #cur >= 2 then t_back = now() end
    if not t_done then
      local all = true
      for _, f in ipairs(futs) do if not f:done() then all = false; break end end
      if all then t_done = now() end
    end
    if t_back and t_done then break end
    if t_done and now() - tk > 5 then break end   -- no replacement coming
    client:_pump(0.02)
  end
  local res = client:gather(futs, TIMEOUT)
  local t1 = t_done or now()
  recovered = check(res)
  local by_victim = 0
  for _, r in ipairs(res) do if r[2] == victim_pid then by_victim = by_victim + 1 end end
  emit("fault.wall_with_kill", t1 - t0, "s")
  emit("fault.time_after_kill", t1 - tk, "s")
  emit("fault.finished_before_kill", done_before, "tasks")
  emit("fault.results_from_victim_pid", by_victim, "tasks")
  emit("fault.workers_after", #client.cluster:workers(), "workers")
  if t_removed then emit("fault.death_detected_after_kill", (t_removed - tk) * 1e3, "ms") end
  if t_back then emit("fault.replacement_worker_after_kill", t_back - tk, "s") end
  local spawned, died = client.handle:stats()
  print(("# workers spawned %s, died %s; ideal no-fault wall = %.2fs"):format(
    tostring(spawned), tostring(died), NTASKS * SLEEP / 2))
end)
if not ok then print("# FAILED: " .. tostring(err)) end
emit("fault.recovered", recovered and 1 or 0, "bool")
client:close()

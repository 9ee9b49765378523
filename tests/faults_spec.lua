-- Faults a real cluster meets: a stopped worker, a full spill disk, tasks
-- pinned to workers that are gone.  Real processes, real signals, a real
-- tmpfs; every wait is bounded, so a runtime bug fails a spec instead of
-- hanging busted.
local BUSTED_ENV = _ENV
local describe, it, assert = describe, it, assert
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"

-- Task bodies live here (not in a module): they travel by value.

--- spin until the file at path exists (at most 30 s), then return v
local function after_go(path, v)
  local d = require("dlua")
  local t = d.time()
  while d.time() - t < 30 do
    local fh = io.open(path, "r")
    if fh then fh:close(); return v end
  end
  error("the go file never appeared")
end

--- the worker running this task
local function worker_pid()
  local f = io.open("/proc/self/stat")
  local s = f:read("l")
  f:close()
  return tonumber(s:match("^(%d+)"))
end

local function find(list, id)
  for _, w in ipairs(list) do if w.id == id then return w end end
end

describe("a stopped worker", function()
  it("is declared dead after heartbeat_timeout, killed and replaced; the "
     .. "tasks it held are recomputed elsewhere", function()
    local cluster = dlua.LocalCluster{n_workers = 2, heartbeat_timeout = 2,
                                      dashboard_address = "127.0.0.1:0"}
    finally(function() cluster:close() end)
    local c = dlua.Client(cluster)
    local go = os.tmpname()
    os.remove(go)
    finally(function() os.remove(go) end)
    local futs = {}
    for i = 1, 8 do futs[i] = c:submit(after_go, go, i * 10) end
    -- Both workers are running one task and hold more.
    assert.is_true(H.poll(function()
      c:_pump(0)
      local busy = 0
      for _, w in ipairs(cluster:workers()) do
        if w.executing > 0 and w.processing >= 2 then busy = busy + 1 end
      end
      return busy == 2
    end, 10), "tasks never reached both workers")
    local victim = cluster:workers()[1]
    assert.is_true(H.kill(victim.pid, "STOP"))
    finally(function() H.kill(victim.pid, "CONT") end)
    -- Silent first, as seen by scheduler_info ...
    assert.is_true(H.poll(function()
      local w = find(c:scheduler_info().workers, victim.id)
      return w == nil or w.status == "silent"
    end, 5), "the stopped worker never showed as silent")
    -- ... then dead, with the reason, and its process killed.
    assert.is_true(H.poll(function()
      return find(c:scheduler_info().dead_workers, victim.id) ~= nil
    end, 10), "the stopped worker was never declared dead")
    local dead = find(c:scheduler_info().dead_workers, victim.id)
    assert.equal("dead", dead.status)
    assert.matches("no heartbeat", dead.reason)
    assert.is_nil(find(cluster:workers(), victim.id))
    assert.is_true(H.all_gone({victim.pid}, 10))
    -- The dashboard's JSON says so too.
    local p = io.popen("curl -s --max-time 5 http://"
                       .. cluster.dashboard_address .. "/json/workers")
    local body = p:read("a")
    p:close()
    assert.matches('"dead":%[{"id":' .. victim.id .. ',"pid":' .. victim.pid
                   .. ',"status":"dead","reason":"no heartbeat for', body)
    -- Every result arrives, right.
    io.open(go, "w"):close()
    local got = c:gather(futs, 30)
    for i = 1, 8 do assert.equal(i * 10, got[i]) end
    -- A replacement took its place and works.
    assert.is_true(H.poll(function() return #cluster:workers() == 2 end, 10))
    assert.is_number(c:submit(worker_pid):result(10))
  end)

  it("rejects a bad heartbeat_timeout at the caller's line", function()
    local ok, err = pcall(function()
      local cl = dlua.LocalCluster{n_workers = 1, heartbeat_timeout = -1}
      return cl
    end)
    assert.is_false(ok)
    assert.matches("faults_spec.lua:%d+: LocalCluster: heartbeat_timeout", err)
    ok, err = pcall(dlua.LocalCluster, {n_workers = 1,
                                        heartbeat_timeout = "5"})
    assert.is_false(ok)
    assert.matches("heartbeat_timeout must be a number", err)
  end)
end)

describe("a full spill disk", function()
  -- A 40 MB tmpfs, filled, as TMPDIR of a child dlua running
  -- fixtures/faults/full_disk.lua in the given mode.
  local function run_full(mode)
    local mnt = os.tmpname()
    os.remove(mnt)
    assert(os.execute("mkdir " .. H.q(mnt)))
    local mounted = os.execute(("mount -t tmpfs -o size=40m tmpfs %s "
                                .. "2>/dev/null"):format(H.q(mnt)))
    if not mounted then
      os.execute("rmdir " .. H.q(mnt))
      error("cannot mount a tmpfs (this spec needs root): the full-disk "
            .. "cases are NOT tested", 0)
    end
    finally(function()
      os.execute("umount " .. H.q(mnt) .. " && rmdir " .. H.q(mnt))
    end)
    local fill = mnt .. "/fill"
    os.execute(("dd if=/dev/zero of=%s bs=1M 2>/dev/null"):format(H.q(fill)))
    local code, out = H.sh(("TMPDIR=%s timeout -k 5 150 %s %s %s %s"):format(
      H.q(mnt), H.q(H.DLUA), H.q(H.FIX:gsub("cluster$", "faults")
                                 .. "/full_disk.lua"), mode, H.q(fill)))
    return code, out
  end

  it("still computes what fits in memory, and says why spilling failed",
     function()
    local code, out = run_full("fits")
    assert.equal(0, code, out)
    assert.matches("results:\t16\tof\t16\tspill errors:\t[12]\tNo space left "
                   .. "on device", out)
  end)

  it("spills again once space is freed", function()
    local code, out = run_full("frees")
    assert.equal(0, code, out)
    assert.matches("spilled while full:\t0\n", out)
    assert.matches("spills again:\ttrue", out)
  end)

  it("fails the waits within seconds when no worker can make progress",
     function()
    local code, out = run_full("stuck")
    assert.equal(0, code, out)
    local secs, msg = out:match("stuck:\tfalse\t(%d+)\t([^\n]*)")
    assert.is_not_nil(secs, out)
    -- Bounded: computing what fits, then heartbeat_timeout (3 s) stuck.
    local bound = os.getenv("DLUA_SANITIZE") and 90 or 30
    assert.is_true(tonumber(secs) < bound, out)
    assert.matches("no worker can make progress: worker %d+ paused %(memory "
                   .. "%d+%% of %d00 MB, spill disk full: No space left on "
                   .. "device%); worker %d+ paused", msg)
  end)
end)

describe("a task pinned to workers", function()
  it("fails, naming them, when they are all gone; allow_other_workers "
     .. "lets another run it", function()
    local cluster = dlua.LocalCluster{n_workers = 2,
                                      dashboard_address = false}
    finally(function() cluster:close() end)
    local c = dlua.Client(cluster)
    local ws = cluster:workers()
    local victim = ws[1]
    local go = os.tmpname()
    os.remove(go)
    finally(function() os.remove(go) end)
    -- One running there, one waiting for an input, both pinned to it.
    local running = c:submit(after_go, go, 1,
                             dlua.opts{workers = {victim.id}})
    local input = c:submit(after_go, go, 2,
                           dlua.opts{workers = {ws[2].id}})
    local waiting = c:submit(function(x) return x + 1 end, input,
                             dlua.opts{workers = {victim.id}})
    local loose = c:submit(function(x) return x + 2 end, input,
                           dlua.opts{workers = {victim.id},
                                     allow_other_workers = true})
    assert.is_true(H.wait_executing(c, 10))
    H.kill(victim.pid, "KILL")
    assert.is_true(H.all_gone({victim.pid}, 10))
    local ok, err = pcall(running.result, running, 20)
    assert.is_false(ok)
    assert.matches("pinned to worker " .. victim.id .. ", which is gone; "
                   .. "allow_other_workers = true lets other workers run it",
                   err)
    io.open(go, "w"):close()
    ok, err = pcall(waiting.result, waiting, 20)
    assert.is_false(ok)
    assert.matches("pinned to worker " .. victim.id .. ", which is gone", err)
    assert.equal(4, loose:result(20))
    -- Pinned to a worker that never existed: the same, at once.
    ok, err = pcall(function()
      return c:submit(worker_pid, dlua.opts{workers = {999}}):result(20)
    end)
    assert.is_false(ok)
    assert.matches("pinned to worker 999, which is gone", err)
  end)
end)

describe("function bytecode", function()
  it("is dropped when no task needs it, and sent again when one does",
     function()
    local c = dlua.Client{n_workers = 2, dashboard_address = false}
    finally(function() c:close() end)
    local function inc(x) return x + 1 end
    for round = 1, 6 do
      local futs = c:map(inc, {round, 10, 20, 30})
      assert.same({round + 1, 11, 21, 31}, c:gather(futs, 20))
      futs = nil
      collectgarbage()
      collectgarbage()
      -- The releases go out; the scheduler's "no task needs it" comes
      -- back and is answered: the next round sends the bytecode again.
      for _ = 1, 5 do c:_pump(0.02) end
    end
  end)
end)

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
                                      dashboard_address = false}
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

-- Recompute from lineage, end to end: a result too big for the scheduler
-- to keep a copy of (so only its worker holds it) is lost with that
-- worker while a dependent still waits, and must be run again from its
-- task, not failed.  Small results would not do: the scheduler keeps
-- those inline and stores them again without running anything.
local dlua = require "dlua"
local H = require "helpers.cluster"

-- Task functions travel with their _ENV; busted's own cannot.
local describe, it, assert = describe, it, assert
local _ENV = _G

-- 2 MiB whose every 4-byte word differs from its neighbours.
local function build(n)
  local t = {}
  for i = 1, 1024 do t[i] = string.pack("<I4", (i * 2654435761) % 4294967296) end
  return table.concat(t):rep(n // 4096)
end

local function note(path, line)
  local f = assert(io.open(path, "a"))
  f:write(line, "\n")
  f:close()
end

local function my_pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("a"):match("^(%d+)")
  f:close()
  return pid
end

local function lines(path)
  local t = {}
  local f = io.open(path)
  if not f then return t end
  for l in f:lines() do t[#t + 1] = l end
  f:close()
  return t
end

describe("lineage", function()
  it("recomputes a 2 MiB intermediate lost with its only holder while a "
     .. "dependent waits", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert.is_true(os.execute("mkdir -m 700 " .. H.q(dir)))
    local log, gate = dir .. "/runs", dir .. "/gate"
    local n = 2 * 1048576
    local client = dlua.Client{n_workers = 2, memory_limit = "256MiB"}

    local function make(size, path)
      note(path, "make " .. my_pid())
      return build(size)
    end
    -- Holds the dependent back until the test opens the gate (bounded).
    local function wait_gate(path)
      local deadline = require("dlua").time() + 60
      while not io.open(path) do
        if require("dlua").time() > deadline then error("gate never opened") end
        os.execute("sleep 0.01")
      end
      return "!"
    end
    local function use(v, g, path)
      note(path, "use " .. my_pid())
      return v .. g
    end

    local a = client:submit(make, n, log,
      dlua.opts{workers = {1}, allow_other_workers = true})
    local g = client:submit(wait_gate, gate,
      dlua.opts{workers = {2}, allow_other_workers = true})
    local b = client:submit(use, a, g, log)
    assert.equal(1, #dlua.wait({a}, {timeout = 30}))
    assert.equal("pending", b:status())
    local runs = lines(log)
    assert.equal(1, #runs, table.concat(runs, "\n"))
    local victim = tonumber(runs[1]:match("^make (%d+)$"))
    assert.is_not_nil(victim, runs[1])

    assert.is_truthy(H.kill(victim))
    assert.is_true(H.all_gone({victim}, 10, true), "the holder lives on")
    -- The scheduler has seen the death before the dependent may start.
    assert.is_true(H.poll(function()
      for _, w in ipairs(client:scheduler_info().workers) do
        if w.pid == victim then return false end
      end
      return true
    end, 20), "the scheduler still lists the killed worker")
    assert.equal("pending", b:status())
    H.spit(gate, "open")

    assert.equal(build(n) .. "!", b:result(60))
    runs = lines(log)
    local makes, uses = {}, 0
    for _, l in ipairs(runs) do
      local pid = l:match("^make (%d+)$")
      if pid then makes[#makes + 1] = tonumber(pid) end
      if l:match("^use ") then uses = uses + 1 end
    end
    assert.equal(2, #makes, table.concat(runs, "\n"))
    assert.are_not.equal(victim, makes[2])
    assert.equal(1, uses, table.concat(runs, "\n"))
    client:close()
    os.remove(log)
    os.remove(gate)
    os.remove(dir)
  end)
end)

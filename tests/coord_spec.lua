-- Tasks that launch tasks (issue 18): dlua.get_client() inside a task,
-- over the worker's own link; a task that waits gives its slot back (it
-- runs in a coroutine that yields to the worker), so recursion on workers
-- with one slot each cannot deadlock; a wait that closes a cycle is an
-- error.  Real worker processes; every wait is bounded.
local BUSTED_ENV = _ENV
local describe, it, setup, teardown, assert =
  describe, it, setup, teardown, assert
local _ENV = _G

local dlua = require "dlua"

-- pcall(f, ...) that must fail; returns the message as a string.
local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "no error raised")
  return tostring(e), e
end

local function fib(n)
  if n < 2 then return n end
  local c = require("dlua").get_client()
  local a, b = c:submit(fib, n - 1), c:submit(fib, n - 2)
  local r = c:gather({a, b})
  return r[1] + r[2]
end

describe("get_client in tasks", function()
  local cluster, c

  setup(function()
    cluster = dlua.LocalCluster{n_workers = 2, dashboard_address = false}
    c = dlua.Client(cluster)
  end)

  teardown(function()
    c:close()
    cluster:close()
  end)

  it("runs recursive fib(15) by tasks on 2 workers with 1 slot each",
     function()
    for _, w in ipairs(c.handle:workers()) do
      assert.equal(1, w.nthreads)
    end
    assert.equal(610, c:submit(fib, 15):result(120))
  end)

  it("makes every client call work inside a task", function()
    local function job(n)
      local dl = require("dlua")
      local cl = dl.get_client()
      local out = {}
      local futs = cl:map(function(x) return x * 2 end, {1, 2, 3})
      out.map = cl:gather(futs)
      out.result = cl:submit(function(a, b) return a + b end, 1, n):result(30)
      local data = cl:scatter({10, 20})
      out.scatter = cl:submit(function(t) return t[1] + t[2] end, data)
        :result(30)
      local done = dl.wait(futs, {timeout = 30})
      out.wait = #done
      local seen = 0
      for _ in dl.as_completed(cl:map(function(x) return x end, {1, 2}))
      do seen = seen + 1 end
      out.as_completed = seen
      local d = dl.delayed(function(a, b) return a * b end)(6, 7)
      out.delayed = d:compute()
      out.same = dl.get_client() == cl and dl.default_client() == cl
      dl.sleep(0.01)
      return out
    end
    local r = c:submit(job, 5):result(60)
    assert.same({2, 4, 6}, r.map)
    assert.equal(6, r.result)
    assert.equal(30, r.scatter)
    assert.equal(3, r.wait)
    assert.equal(2, r.as_completed)
    assert.equal(42, r.delayed)
    assert.is_true(r.same)
  end)

  it("raises a task's error in the task that waits for it", function()
    local function parent()
      local cl = require("dlua").get_client()
      return cl:submit(function() error("child broke") end):result(30)
    end
    local msg = err_of(function() return c:submit(parent):result(30) end)
    assert.matches("child broke", msg)
  end)

  it("refuses a task that waits for its own result (a cycle)", function()
    local function self_wait()
      local dl = require("dlua")
      local cl = dl.get_client()
      return cl:submit(function() return 1 end,
                       dl.opts{key = "coord-self-wait"}):result(30)
    end
    local msg = err_of(function()
      return c:submit(self_wait, dlua.opts{key = "coord-self-wait"})
        :result(30)
    end)
    assert.matches("deadlock", msg)
    assert.matches("coord%-self%-wait", msg)
    -- The workers are still usable.
    assert.equal(3, c:submit(function() return 3 end):result(30))
  end)

  it("refuses a wait on a descendant that waits on its parent", function()
    local function child()
      local dl = require("dlua")
      return dl.get_client():submit(function() return 0 end,
                                    dl.opts{key = "coord-parent"})
        :result(30)
    end
    local function parent()
      local dl = require("dlua")
      return dl.get_client():submit(child, dl.opts{key = "coord-child"})
        :result(30)
    end
    local msg = err_of(function()
      return c:submit(parent, dlua.opts{key = "coord-parent"}):result(30)
    end)
    assert.matches("deadlock", msg)
  end)

  it("gives the slot back while a task sleeps or waits", function()
    -- One slot per worker: 4 sleepers on 2 workers end in about one sleep
    -- only if each gives its slot back.  Checked by state, not time: all
    -- four are sleeping at once (each writes a file as it starts).
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local function sleeper(i, d)
      local f = assert(io.open(d .. "/" .. i, "w"))
      f:close()
      local dl = require("dlua")
      -- Wait until all four have started: impossible unless the slots of
      -- those sleeping are given back.
      local deadline = os.time() + 30
      while true do
        local n = 0
        for j = 1, 4 do
          local g = io.open(d .. "/" .. j)
          if g then n = n + 1; g:close() end
        end
        if n == 4 then return i end
        if os.time() > deadline then error("not all sleepers ran at once") end
        dl.sleep(0.01)
      end
    end
    local futs = c:map(sleeper, {1, 2, 3, 4}, {dir, dir, dir, dir})
    assert.same({1, 2, 3, 4}, c:gather(futs, 60))
    os.execute("rm -rf " .. dir)
  end)

  it("stops a waiting task that is cancelled", function()
    local function parent()
      local dl = require("dlua")
      return dl.get_client():submit(function()
        require("dlua").sleep(30)
      end):result(60)
    end
    local f = c:submit(parent)
    -- Wait until the parent runs and waits (its child exists).
    local deadline = os.time() + 30
    repeat
      local counts = c.handle:counts()
      local n = (counts.processing or 0)
      if n >= 2 then break end
      dlua.sleep(0.01)
    until os.time() > deadline
    f:cancel()
    local ok = pcall(f.result, f, 30)
    assert.is_false(ok)
    assert.equal("cancelled", f:status())
    assert.equal(7, c:submit(function() return 7 end):result(30))
  end)
end)

describe("get_client outside a task", function()
  it("with no client is a clear error", function()
    local exe = os.getenv("DLUA") or "build/dlua"
    local p = io.popen(exe .. " -e 'require(\"dlua\").get_client()' 2>&1")
    local out = p:read("a")
    p:close()
    assert.matches("get_client: no client", out)
    assert.matches("dlua%.Client%(%)", out)
  end)
end)

return BUSTED_ENV

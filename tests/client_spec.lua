-- The client's futures: small userdata whose state has one owner, the C
-- table of futures (runtime/client/dl_client.h).  Handles of one key share
-- its state; a released handle is refused while the others go on; the
-- scheduler keeps a task while any handle of it lives.  Real worker
-- processes; every wait is bounded.
local BUSTED_ENV = _ENV
local describe, it, setup, teardown, assert =
  describe, it, setup, teardown, assert
local _ENV = _G

local dlua = require "dlua"

local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "no error raised")
  return tostring(e)
end

-- Poll fn until it returns true or secs pass.
local function poll(fn, secs)
  local deadline = dlua.time() + secs
  repeat
    if fn() then return true end
    dlua.sleep(0.01)
  until dlua.time() > deadline
  return fn()
end

describe("client futures", function()
  local cluster, c

  setup(function()
    cluster = dlua.LocalCluster{n_workers = 1, dashboard_address = false}
    c = dlua.Client(cluster)
  end)

  teardown(function()
    c:close()
    cluster:close()
  end)

  it("are userdata with key and client, and methods", function()
    local f = c:submit(function() return 41 end, dlua.opts{key = "k-41"})
    assert.equal("userdata", type(f))
    assert.is_true(dlua.is_future(f))
    assert.equal("k-41", f.key)
    assert.equal(c, f.client)
    assert.equal(41, f:result(20))
    assert.equal("finished", f:status())
    assert.matches("<Future: finished, key: k%-41>", tostring(f))
  end)

  -- A submit without a key gets keys.fresh's key, made in C from the
  -- prefix's stem and the next counter (no key string per task in Lua).
  it("of plain submits have fresh keys of the function's name", function()
    local function add1(x) return x + 1 end
    local a, b = c:submit(add1, 1), c:submit(add1, 2)
    local m = c:map(add1, {3})
    local named = c:submit(add1, 4, dlua.opts{name = "other"})
    assert.matches("^add1%-%x+$", a.key)
    assert.equal(#"add1-" + 16, #a.key)
    assert.equal(a.key:sub(1, -9), b.key:sub(1, -9))
    assert.is_true(tonumber(b.key:sub(-8), 16) > tonumber(a.key:sub(-8), 16))
    assert.is_true(tonumber(m[1].key:sub(-8), 16) >
                   tonumber(b.key:sub(-8), 16))
    assert.matches("^other%-%x+$", named.key)
    assert.equal(c, a.client)
    assert.same({2, 3, 5}, c:gather({a, b, named}, 20))
  end)

  it("of one key share their state; a released one is refused", function()
    local a = c:submit(function() return {1, 2} end, dlua.opts{key = "k-two"})
    local b = c:submit(function() return {1, 2} end, dlua.opts{key = "k-two"})
    assert.same({1, 2}, b:result(20))
    assert.equal("finished", a:status())
    a:release()
    assert.matches("future 'k%-two' was released", err_of(a.status, a))
    assert.same({1, 2}, b:result(20)) -- the other handle goes on
    assert.same({{1, 2}}, c:gather({b}, 20))
  end)

  it("keep their task while any handle lives, and free it with the last",
     function()
    -- This test's tasks, counted by their groups (key prefixes): earlier
    -- tests' futures, collected meanwhile, must not move the count.
    local function stored()
      local n = 0
      for _, g in ipairs(c.handle:groups()) do
        if g.name == "held" or g.name == "twice" then n = n + g.memory end
      end
      return n
    end
    local futs = c:map(function(x) return x * 2 end, {1, 2, 3},
                       dlua.opts{name = "held"})
    local again = c:map(function(x) return x * 2 end, {4}, dlua.opts{
      key = nil, name = "twice"})
    assert.same({2, 4, 6}, c:gather(futs, 20))
    assert.same({8}, c:gather(again, 20))
    assert.is_true(poll(function() return stored() == 4 end, 10))
    futs[1]:release()
    futs, again = nil, nil
    collectgarbage()
    collectgarbage()
    -- the releases ride with the next message; poll sends them
    assert.is_true(poll(function() return stored() == 0 end, 10),
                   "tasks still held: " .. stored())
  end)

  -- client:submit's garbage is per task: at a million tasks in flight
  -- it was ~800 bytes a call (a payload table, an options table, a spec
  -- table, a `{}` for fn's metatable), ~100 B per future at bench h's
  -- peak.  Bytes counted with the collector stopped, so exact.
  it("make little garbage per submit, and keep no argument alive", function()
    local function add(...)
      local s = 0
      for i = 1, select("#", ...) do s = s + select(i, ...) end
      return s
    end
    local ins = c:map(function(x) return x end, {1, 2, 3, 4, 5, 6, 7, 8})
    local p1, p2, p3, p4, p5, p6, p7, p8 = table.unpack(ins)
    local keep, n = {}, 500
    for i = 1, 20 do keep[i] = c:submit(add, p1, p2, p3, p4, p5, p6, p7, p8) end
    collectgarbage()
    collectgarbage()
    collectgarbage("stop")
    local ok, err = pcall(function()
      local k0 = collectgarbage("count")
      for i = 21, 20 + n do
        keep[i] = c:submit(add, p1, p2, p3, p4, p5, p6, p7, p8)
      end
      local made = (collectgarbage("count") - k0) * 1024 / n
      collectgarbage("restart")
      collectgarbage()
      collectgarbage()
      local kept = (collectgarbage("count") - k0) * 1024 / n
      -- what stays is the future and its key (~110 B); what goes, at most
      -- 200 B more (it was ~690)
      assert.is_true(made - kept < 200, ("garbage per submit: %.0f B (kept %.0f B)")
                     :format(made - kept, kept))
    end)
    collectgarbage("restart")
    assert(ok, err)
    for _, v in ipairs(c:gather(keep, 60)) do assert.equal(36, v) end
    -- the reused payload table holds no argument once the task is sent
    local arg = {7}
    local probe = setmetatable({arg}, {__mode = "v"})
    local f = c:submit(function(t) return t[1] end, arg)
    arg = nil
    assert.equal(7, f:result(20))
    collectgarbage()
    collectgarbage()
    assert.is_nil(probe[1], "the task's argument is still referenced")
  end)

  -- future:result() of an inline value makes no table and no closure: a
  -- submit(...):result() round trip left ~480 B (a closure, a state table,
  -- {f} and the result table), and each ~160 rounds the client's collection
  -- made a slow round and a burst of releases (bench b's p99).  Bytes
  -- counted with the collector stopped, so exact.
  it("make little garbage per submit(...):result()", function()
    local function inc(x) return x + 1 end
    for i = 1, 10 do assert.equal(i + 1, c:submit(inc, i):result(20)) end
    collectgarbage()
    collectgarbage()
    collectgarbage("stop")
    local n = 200
    local ok, err = pcall(function()
      local k0 = collectgarbage("count")
      for i = 1, n do
        if c:submit(inc, i):result(20) ~= i + 1 then error("wrong result") end
      end
      local made = (collectgarbage("count") - k0) * 1024 / n
      -- the future and its key (~95 B) and what polling leaves: was ~480
      assert.is_true(made < 200, ("garbage per round trip: %.0f B"):format(made))
    end)
    collectgarbage("restart")
    assert(ok, err)
    -- nil and a value fetched from the worker still come back
    assert.is_nil(c:submit(function() return nil end):result(20))
    local big = c:submit(function() return string.rep("x", 1 << 20) end)
    assert.equal(1 << 20, #big:result(20))
  end)

  -- A future holds its client through the cluster module's anchor table
  -- (no user value of its own): the client lives while any of its futures
  -- does, and only then.
  it("keep their own client alive, and only while they live", function()
    local cl2 = dlua.Client(cluster)
    local c3 = dlua.Client(cluster) -- the default client now, not cl2
    local probe = setmetatable({cl2}, {__mode = "v"})
    local f2 = cl2:submit(function() return 2 end)
    local f1 = c:submit(function() return 1 end)
    local g2 = cl2:submit(function() return 3 end)
    cl2 = nil
    collectgarbage()
    collectgarbage()
    assert.is_not_nil(probe[1], "the futures' client was collected")
    assert.equal(probe[1], f2.client)
    assert.equal(probe[1], g2.client)
    assert.equal(c, f1.client)
    assert.equal(2, f2:result(20))
    f2 = nil
    collectgarbage()
    collectgarbage()
    assert.is_not_nil(probe[1], "collected while a future of it lives")
    assert.equal(3, g2:result(20))
    g2 = nil
    collectgarbage()
    collectgarbage()
    assert.is_nil(probe[1], "the client outlives its futures")
    assert.equal(1, f1:result(20))
    c3:close()
  end)

  -- A record names the client of its first future (a 40-byte future of
  -- that client carries no id); a future of another client of the same
  -- cluster carries its own, and stays right when the first ones go.
  it("of one key and two clients each know their own client", function()
    local Future = require("dlua.future")
    local cl2 = dlua.Client(cluster)
    local c3 = dlua.Client(cluster) -- the default client now, not cl2
    local probe = setmetatable({cl2}, {__mode = "v"})
    local a = cl2:submit(function() return 7 end, dlua.opts{key = "k-two-cl"})
    local b = Future.new(c, "k-two-cl")
    local a2 = Future.new(cl2, "k-two-cl")
    assert.equal(cl2, a.client)
    assert.equal(c, b.client)
    assert.equal(cl2, a2.client)
    assert.equal(7, b:result(20))
    cl2, a, a2 = nil, nil, nil
    collectgarbage()
    collectgarbage()
    assert.is_nil(probe[1], "the first client outlives its futures")
    assert.equal(c, b.client)
    assert.equal(7, b:result(20))
    -- the record lives on: a new future of c's is c's, not the gone one's
    local b2 = Future.new(c, "k-two-cl")
    assert.equal(c, b2.client)
    assert.equal(7, b2:result(20))
    b:release()
    assert.equal("finished", b2:status())
    assert.equal(c, b2.client)
    c3:close()
  end)

  -- A future in a task's arguments travels as its position among the
  -- task's inputs (wire 4), which the worker maps to their keys.
  it("reach a task as their values, whatever the order and nesting", function()
    local a = c:submit(function() return "a" end)
    local b = c:submit(function() return "b" end)
    local a2 = require("dlua.future").new(c, a.key) -- another handle
    local function f(x, t, y, z)
      return table.concat({x, t[1], t.k, t[2][1], y, z}, ",")
    end
    local r = c:submit(f, b, {a, k = b, {a2}}, a, "d")
    assert.equal("b,a,b,a,a,d", r:result(20))
    -- inputs of a map's rows, and a function that captures a future
    local rows = c:map(function(x, t) return x .. t[1] end, {a, b}, {{b}, {a}})
    assert.same({"ab", "ba"}, c:gather(rows, 20))
    local cap = c:submit(function() return a end)
    assert.equal("a", cap:result(20))
  end)

  it("say the client is closed once it is", function()
    local cl2 = dlua.Client(cluster)
    local f = cl2:submit(function() return 1 end)
    assert.equal(1, f:result(20))
    cl2:close()
    assert.matches("client is closed", err_of(f.status, f))
    assert.matches("result: client is closed", err_of(f.result, f))
  end)
end)

-- Globals travel with task functions, as cloudpickle sends a script's
-- globals: real worker processes, real sockets.
-- busted runs this file in its own environment table, which cannot travel;
-- the code below runs in the real globals, as a script's does.
local describe, it, setup, teardown, assert, after_each =
  describe, it, setup, teardown, assert, after_each
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"

-- Globals this file sets, removed after each spec.
local SET = {}
local function global(name, v)
  SET[name] = true
  _G[name] = v
end

describe("globals on a cluster", function()
  local cluster, c

  setup(function()
    cluster = dlua.LocalCluster{n_workers = 1, memory_limit = "512MB"}
    c = dlua.Client(cluster)
  end)

  teardown(function()
    if c then c:close() end
    if cluster then cluster:close() end
  end)

  after_each(function()
    for k in pairs(SET) do _G[k] = nil end
    SET = {}
  end)

  it("sends a number global (issue 12)", function()
    global("N", 5)
    assert.equal(5, c:submit(function() return N end):result(10))
  end)

  it("sends a top-level helper function and its globals", function()
    global("RADIUS", 1)
    global("in_circle", function(x, y) return x * x + y * y <= RADIUS * RADIUS end)
    global("N_SAMPLES", 200)
    local fs = c:map(function(seed)
      local n, s = 0, seed
      for _ = 1, N_SAMPLES do
        s = (s * 1103515245 + 12345) % 2147483648
        local x = s / 2147483648
        s = (s * 1103515245 + 12345) % 2147483648
        if in_circle(x, s / 2147483648) then n = n + 1 end
      end
      return n
    end, {1, 2, 3, 4})
    local r = c:gather(fs, 10)
    for i = 1, 4 do
      assert.is_true(r[i] > 100 and r[i] < 200, tostring(r[i]))
    end
  end)

  it("keeps a table shared by two globals shared, and a cycle", function()
    local t = {n = 1}
    t.self = t
    global("SHARED_A", t)
    global("SHARED_B", t)
    local r = c:submit(function()
      return {same = SHARED_A == SHARED_B, cyc = SHARED_A.self == SHARED_A,
              n = SHARED_B.n}
    end):result(10)
    assert.same({same = true, cyc = true, n = 1}, r)
  end)

  it("captures a map's globals once, when it is called", function()
    global("M", 1)
    local fs = c:map(function(x) return x * M end, {1, 2, 3})
    global("M", 100)
    assert.same({1, 2, 3}, c:gather(fs, 10))
    assert.same({100}, c:gather(c:map(function(x) return x * M end, {1}), 10))
  end)

  it("keeps a task's assignments to globals out of the worker's", function()
    local f = c:submit(function() LEAKED = 1; return rawget(_G, "LEAKED") end)
    assert.is_nil(f:result(10))
    assert.is_nil(c:submit(function() return LEAKED end):result(10))
    assert.is_nil(rawget(_G, "LEAKED"))
  end)

  it("sends the globals of delayed functions", function()
    global("OFFSET", 10)
    global("twice", function(x) return 2 * x end)
    local inc = dlua.delayed(function(x) return twice(x) + OFFSET end)
    local add = dlua.delayed(function(a, b) return a + b + OFFSET end)
    assert.equal(12 + 14 + 10, add(inc(1), inc(2)):compute())
  end)

  it("names a global that cannot be sent", function()
    local fh = io.tmpfile()
    global("FH", fh)
    local ok, err = pcall(c.submit, c, function() return FH:read("a") end)
    fh:close()
    assert.is_false(ok)
    assert.matches("cannot send userdata %(FILE%*%) at global 'FH' of function <.*globals_spec.lua:%d+>", err)
  end)
end)

describe("globals in the REPL", function()
  it("sends what the REPL defines (everything is global)", function()
    local input = table.concat({
      'dlua = require "dlua"',
      'c = dlua.Client{n_workers = 1, memory_limit = "256MB"}',
      'K = 3',
      'function sq(x) return x * x * K end',
      'lookup = {10, 20}',
      'r = c:gather(c:map(function(i) return sq(i) + lookup[i] end, {1, 2}), 10)',
      'print("result", r[1], r[2])',
      'c:close()',
    }, "\n") .. "\n"
    local tmp = os.tmpname()
    H.spit(tmp, input)
    local p = assert(io.popen(H.DLUA .. " -i < " .. H.q(tmp) .. " 2>&1"))
    local out = p:read("a")
    local ok = p:close()
    os.remove(tmp)
    assert.matches("result\t13\t32", out)
    assert.is_true(ok, out)
  end)
end)

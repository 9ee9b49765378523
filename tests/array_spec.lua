-- Specs for dlua.array: chunked arrays, in this process (scheduler =
-- "sync") and on a real cluster.
local describe, it, setup, teardown, assert =
  describe, it, setup, teardown, assert
local _ENV = _G -- task functions carry their _ENV (README, codec)
local da = require "dlua.array"
local nd = require "dlua.ndarray"

local SYNC = {scheduler = "sync"}

local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok)
  return tostring(e)
end

local function close(a, b, tol)
  tol = tol or 1e-9
  if type(a) == "number" then
    assert.is_true(math.abs(a - b) <= tol * math.max(1, math.abs(b)),
      tostring(a) .. " vs " .. tostring(b))
    return
  end
  assert.same(b.shape, a.shape)
  local d = (a - b):abs():max()
  assert.is_true(d <= tol, "max difference " .. tostring(d))
end

describe("dlua.array creation", function()
  it("chunks shapes as Dask does, and says when they do not fit", function()
    local x = da.zeros({10, 7}, {chunks = {4, 3}})
    assert.same({{4, 4, 2}, {3, 3, 1}}, x.chunks)
    assert.same({3, 3}, x.numblocks)
    assert.equal("float64", x.dtype)
    assert.same({{5, 5}}, da.ones({10}, {chunks = {{5, 5}}}).chunks)
    assert.matches("chunks {4, 5} of axis 1 add up to 9, not the axis length "
      .. "10", err_of(da.ones, {10}, {chunks = {{4, 5}}}))
    assert.matches("chunks .* do not fit shape %(10, 3%)",
      err_of(da.ones, {10, 3}, {chunks = {4}}))
    assert.matches("option 'seed' %(an integer%) is required",
      err_of(da.random.uniform, {shape = {3}}))
  end)

  it("computes creation functions to the in-memory arrays", function()
    assert.same(nd.arange(1, 10):totable(),
      da.arange(1, 10, {chunks = 3}):compute(SYNC):totable())
    assert.same(nd.full({3, 2}, 7):totable(),
      da.full({3, 2}, 7, {chunks = 2}):compute(SYNC):totable())
    local a = nd.arange(1, 20):reshape(4, 5)
    local x = da.from_ndarray(a, {chunks = {3, 2}})
    assert.same(a:totable(), x:compute(SYNC):totable())
  end)

  it("draws random numbers that do not depend on the chunks", function()
    local N = 10000000
    local a = da.random.uniform{shape = {N}, chunks = {1000000}, seed = 42}
    local b = da.random.uniform{shape = {N}, chunks = {N}, seed = 42}
    -- bit-identical: the sums of both are equal as floats, and so are
    -- the arrays themselves (compared in one pass, as a count)
    local av, bv = a:compute(SYNC), b:compute(SYNC)
    assert.equal(N, av:eq(bv):sum())
    local m1 = da.random.normal{shape = {300, 200}, chunks = {70, 30}, seed = 1}
    local m2 = da.random.normal{shape = {300, 200}, chunks = {300, 200}, seed = 1}
    assert.equal(60000, m1:compute(SYNC):eq(m2:compute(SYNC)):sum())
    assert.equal(nd.random.uniform{shape = {300, 200}, seed = 3}:sum(),
      da.random.uniform{shape = {300, 200}, chunks = {64, 64}, seed = 3}
        :compute(SYNC):sum())
  end)
end)

describe("dlua.array operations", function()
  local x = da.random.uniform{shape = {50, 40}, chunks = {20, 15}, seed = 7}
  local xv = x:compute(SYNC)

  it("prints shape, chunks, dtype, bytes and tasks", function()
    local s = tostring(x + 1)
    assert.matches("^dlua.array<add, shape=%(50, 40%), dtype=float64, "
      .. "chunksize=%(20, 15%), chunktype=ndarray>", s)
    assert.matches("15.62 kiB %(array%), 2.34 kiB %(chunk%); 9 chunks; 9 "
      .. "tasks", s)
  end)

  it("runs elementwise chains with broadcasting, fused or not", function()
    close((x * 2 + 1):compute(SYNC), xv * 2 + 1)
    close((x - x.T.T):compute(SYNC), nd.zeros{50, 40})
    close(((x + 1):sqrt() / (x + 2)):compute(SYNC), (xv + 1):sqrt() / (xv + 2))
    close((x:gt(0.5)):compute(SYNC):astype("float64"),
      xv:gt(0.5):astype("float64"))
    assert.equal("bool", x:gt(0.5):compute(SYNC).dtype)
    local row = da.from_ndarray(nd.arange(1, 40):astype("float64"),
      {chunks = {15}})
    close((x + row):compute(SYNC), xv + nd.arange(1, 40))
    local ints = da.arange(1, 10, {chunks = 4})
    assert.same({1, 2, 0, 1, 2, 0, 1, 2, 0, 1}, (ints % 3):compute(SYNC):totable())
    close(da.where(x:gt(0.5), x, 0):compute(SYNC), nd.where(xv:gt(0.5), xv, 0))
    assert.matches("shapes %(50, 40%) and %(3,%) cannot be broadcast",
      err_of(function() return x + da.ones({3}) end))
    assert.matches("chunks differ on axis 1",
      err_of(function() return x + da.ones({50, 40}, {chunks = 10}) end))
  end)

  it("reduces in trees, with or without an axis", function()
    close(x:sum():compute(SYNC), xv:sum())
    close(x:sum{split_every = 2}:compute(SYNC), xv:sum())
    close(x:mean{axis = 1}:compute(SYNC), xv:mean{axis = 1})
    close(x:mean{axis = 2}:compute(SYNC), xv:mean{axis = 2})
    close(x:std():compute(SYNC), xv:std())
    close(x:var{axis = 1, ddof = 1}:compute(SYNC), xv:var{axis = 1, ddof = 1})
    close(x:max{axis = 2}:compute(SYNC), xv:max{axis = 2})
    assert.equal(xv:min(), x:min():compute(SYNC))
    assert.equal(xv:gt(0.5):sum(), x:gt(0.5):sum():compute(SYNC))
    assert.equal("integer", math.type(x:gt(0.5):sum():compute(SYNC)))
    assert.is_true(x:ge(0):all():compute(SYNC))
    close((x + x.T.T):mean{axis = 1}:sum():compute(SYNC),
      (xv + xv):mean{axis = 1}:sum())
    assert.matches("axis 3 is out of range for shape %(50, 40%)",
      err_of(x.sum, x, {axis = 3}))
  end)

  it("transposes and multiplies blockwise", function()
    local y = da.random.uniform{shape = {40, 40}, chunks = {15, 15}, seed = 2}
    local yv = y:compute(SYNC)
    close(y.T:compute(SYNC), yv.T)
    close((y + y.T):compute(SYNC), yv + yv.T)
    close(y:matmul(y.T):compute(SYNC), yv:matmul(yv.T), 1e-9)
    close(x:matmul(y):compute(SYNC), xv:matmul(yv), 1e-9)
    assert.matches("shapes %(50, 40%) and %(50, 40%) do not align",
      err_of(x.matmul, x, x))
  end)

  it("gives the graph and a Graphviz picture", function()
    local g = (x + 1):sum():graph()
    local n = 0
    for _ in pairs(g) do n = n + 1 end
    assert.is_true(n >= 9 + 1)
    assert.matches("^digraph", (x + 1):sum():visualize())
  end)
end)

describe("dlua.array on a cluster", function()
  local dlua = require "dlua"
  local client
  setup(function() client = dlua.Client{n_workers = 2} end)
  teardown(function() if client then client:close() end end)

  it("computes on the workers, blocks travelling as ndarrays", function()
    local o = {client = client}
    local x = da.random.uniform{shape = {400, 300}, chunks = {100, 100}, seed = 1}
    local xv = x:compute(SYNC)
    close(x:compute(o), xv)
    close((x * x + 1):sum():compute(o), (xv * xv + 1):sum())
    close((x + 1):mean{axis = 1}:compute(o), (xv + 1):mean{axis = 1})
    local y = da.random.uniform{shape = {300, 300}, chunks = {100, 100}, seed = 2}
    local yv = y:compute(o)
    close(y:matmul(y.T):compute(o), yv:matmul(yv.T), 1e-9)
    -- a future carries an ndarray both ways
    local f = client:submit(function(a) return a * 2 end, nd.arange(1, 4))
    assert.same({2, 4, 6, 8}, f:result():totable())
  end)

  it("uses one BLAS thread in each worker", function()
    local f = client:submit(function()
      return require("dlua.ndarray").blas_threads()
    end)
    assert.equal(1, f:result())
  end)

  it("raises a task's error with the block's message", function()
    local bad = da.arange(1, 10, {chunks = 5}) // 0
    assert.matches("integer division or modulo by zero",
      err_of(bad.compute, bad, {client = client}))
  end)
end)

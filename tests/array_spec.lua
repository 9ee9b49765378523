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
    assert.matches("option 'seed' must be an integer, got float",
      err_of(da.random.uniform, {shape = {3}, seed = 1.5}))
  end)

  it("draws a seed when none is given, kept in the graph, and takes Dask's "
     .. "random.random(shape, {chunks =})", function()
    local x = da.random.uniform{shape = {50}, chunks = {10}}
    local a, b = x:compute(SYNC), x:compute(SYNC)
    assert.same(a:totable(), b:totable())
    local y = da.random.uniform{shape = {50}, chunks = {10}}
    assert.are_not.same(a:totable(), y:compute(SYNC):totable())
    local r = da.random.random({20, 30}, {chunks = {10, 10}, seed = 4})
    assert.same({{10, 10}, {10, 10, 10}}, r.chunks)
    assert.same(da.random.uniform{shape = {20, 30}, chunks = {10, 10},
      seed = 4}:compute(SYNC):totable(), r:compute(SYNC):totable())
    assert.matches("options must be a table",
      err_of(da.random.random, {3}, 5))
  end)

  it("takes a reduction's axis alone, and reports errors at the caller's "
     .. "line through the module's tail calls", function()
    local x = da.ones({4, 6}, {chunks = {2, 3}})
    assert.same(x:sum{axis = 1}:compute(SYNC):totable(),
      x:sum(1):compute(SYNC):totable())
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, e = pcall(function() local r = x:mean(0) return r end)
    assert.is_false(ok)
    assert.matches("array_spec.lua:" .. line .. ": dlua.array: mean: axis 0 "
      .. "is out of range .*Dask's axis=0 is axis 1", e)
    line = debug.getinfo(1, "l").currentline + 1
    ok, e = pcall(function() local r = x:mean("a") return r end)
    assert.matches("array_spec.lua:" .. line .. ": dlua.array: mean: "
      .. "options must be a table", e)
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
    -- y @ y.T: tasks for the blocks on and above the diagonal only (6 of
    -- 9), the others are their transposes
    local yy = y:matmul(y.T)
    local n = 0
    for k in pairs(yy:graph()) do
      if k:sub(1, #yy.name + 1) == yy.name .. "-" then n = n + 1 end
    end
    assert.equal(6, n)
    local yyv = yv:matmul(yv.T)
    close(yy:compute(SYNC), yyv, 1e-9)
    close(yy:sum():compute(SYNC), yyv:sum(), 1e-12)
    close(yy:sum{axis = 1}:compute(SYNC), yyv:sum{axis = 1}, 1e-9)
    close(yy:slice({10, 35}, {2, 40, 3}):compute(SYNC),
      yyv:slice({10, 35}, {2, 40, 3}), 1e-9)
    close((yy - yy.T):abs():max():compute(SYNC), 0, 0)
    close(y.T:matmul(y.T.T):compute(SYNC), yv.T:matmul(yv), 1e-9)
    assert.matches("shapes %(50, 40%) and %(50, 40%) do not align",
      err_of(x.matmul, x, x))
  end)

  it("draws generated inputs inside big-block products", function()
    -- blocks of 256 and more: no task per random block, each product task
    -- draws its own; the same bits as with the blocks made first (y + 0)
    local y = da.random.uniform{shape = {600, 512}, chunks = {300, 256},
                                seed = 5}
    local w = da.random.normal{shape = {512, 300}, chunks = {256, 300},
                               seed = 6}
    local function tasks_named(a, prefix)
      local n = 0
      for k in pairs(a:graph()) do
        if k:sub(1, #prefix) == prefix then n = n + 1 end
      end
      return n
    end
    local yy, yw = y:matmul(y.T), y:matmul(w)
    assert.equal(0, tasks_named(yy, "uniform"))
    assert.equal(3, tasks_named(yy, yy.name .. "-"))
    assert.equal(0, tasks_named(yw, "uniform") + tasks_named(yw, "normal"))
    local z, v = y + 0, w + 0
    close(yy:compute(SYNC), z:matmul(z.T):compute(SYNC), 0)
    close(yw:compute(SYNC), z:matmul(v):compute(SYNC), 0)
    -- small blocks: the random blocks stay tasks, made once
    local s = da.random.uniform{shape = {40, 40}, chunks = {20, 20}, seed = 2}
    assert.equal(4, tasks_named(s:matmul(s.T), "uniform"))
    -- a long inner dimension: a task would hold 160 MB drawn at once
    local l = da.random.uniform{shape = {256, 40000}, chunks = {256, 1000},
                                seed = 2}
    assert.equal(40, tasks_named(l:matmul(l.T), "uniform"))
  end)

  it("gives the graph and a Graphviz picture", function()
    local g = (x + 1):sum():graph()
    local n = 0
    for _ in pairs(g) do n = n + 1 end
    assert.is_true(n >= 9 + 1)
    assert.matches("^digraph", (x + 1):sum():visualize())
  end)
end)

describe("dlua.array slicing, rechunk, joining, map_blocks", function()
  local a = nd.arange(1, 110):reshape(10, 11)
  local x = da.from_ndarray(a, {chunks = {3, 4}})

  local function ntasks(arr)
    local n = 0
    for _, t in pairs(arr:graph()) do
      if type(t) == "table" and t.fn then n = n + 1 end
    end
    return n
  end

  it("slices across block boundaries with steps and negative indices",
     function()
    local cases = {
      {{2, 9, 3}, {-1, 1, -2}}, {{}, 5}, {3}, {{-4, -2}, {2, 10, 4}},
      {{20, 30}}, {{nil, nil, -1}, {}}, {{9, 2, -3}, {-3}},
    }
    for _, c in ipairs(cases) do
      local want = a:slice(table.unpack(c))
      local got = x:slice(table.unpack(c)):compute(SYNC)
      assert.same(want.shape, got.shape)
      assert.same(want:totable(), got:totable())
    end
    assert.same(a:slice({}, 5):totable(), x[{{}, 5}]:compute(SYNC):totable())
    assert.same(a[3]:totable(), x[3]:compute(SYNC):totable())
    assert.equal(a:get(4, 5), x[{4, 5}]:compute(SYNC))
    assert.same({{1, 1, 1}, {2, 2, 2}}, x:slice({2, 9, 3}, {-1, 1, -2}).chunks)
  end)

  it("makes tasks of the touched blocks only", function()
    local r = da.random.uniform{shape = {100, 100}, chunks = {10, 10},
                                seed = 5}
    local rv = r:compute(SYNC)
    local s = r:slice({15, 18}, {-3, -1})
    assert.equal(1, ntasks(s))
    close(s:compute(SYNC), rv:slice({15, 18}, {-3, -1}))
    assert.equal(4, ntasks(r:slice({5, 15}, {5, 15})))
    assert.equal(20, ntasks(r:slice({}, {45, 55})))
    close(r:slice({}, {45, 55}):sum():compute(SYNC),
      rv:slice({}, {45, 55}):sum())
  end)

  it("says which slice is wrong, at the caller's line", function()
    assert.matches("array_spec.lua:%d+: dlua.array: slice: index 11 is out "
      .. "of bounds for axis 1 with size 10", err_of(function()
        local v = x[{11}]
        return v
      end))
    assert.matches("array_spec.lua:%d+: dlua.array: slice: 3 specs for an "
      .. "array of 2 axes", err_of(function()
        local v = x:slice(1, 2, 3)
        return v
      end))
    assert.matches("step of axis 2 must not be zero",
      err_of(x.slice, x, {}, {1, 2, 0}))
  end)

  it("rechunks, cutting blocks where they lie", function()
    for _, c in ipairs{{5, 2}, {{1, 9}, -1}, {10, 11}, {1, 1}, {4, 3}} do
      local y = x:rechunk(c)
      assert.same(a:totable(), y:compute(SYNC):totable())
    end
    assert.same({{5, 5}, {2, 2, 2, 2, 2, 1}}, x:rechunk{5, 2}.chunks)
    assert.equal(x, x:rechunk{3, 4})
    close(x:rechunk{5, 2}:slice({2, 8}, {3, -2, 2}):compute(SYNC) * 2,
      a:slice({2, 8}, {3, -2, 2}) * 2)
    assert.matches("add up to 9, not the axis length 10",
      err_of(x.rechunk, x, {{4, 5}, 11}))
  end)

  it("concatenates and stacks, unifying chunks and dtypes", function()
    local y = x:rechunk{2, 2}
    assert.same(nd.concatenate({a, a}, {axis = 2}):totable(),
      da.concatenate({x, y}, {axis = 2}):compute(SYNC):totable())
    assert.same(nd.concatenate({a, a, a}):totable(),
      da.concatenate{x, y, x}:compute(SYNC):totable())
    local z = da.stack({x, x + 1.5}, {axis = 2})
    assert.equal("float64", z.dtype)
    assert.same({10, 2, 11}, z.shape)
    close(z:compute(SYNC), nd.stack({a, a + 1.5}, {axis = 2}))
    close(da.stack{x, y, x}:compute(SYNC), nd.stack{a, a, a})
    assert.matches("shapes %(10, 11%) and %(11, 10%) differ off axis 1",
      err_of(da.concatenate, {x, x.T}))
    assert.matches("shapes %(10, 11%) and %(11, 10%) differ",
      err_of(da.stack, {x, x.T}))
    assert.matches("axis 4 is out of range %(axes 1..3%)",
      err_of(da.stack, {x, x}, {axis = 4}))
  end)

  it("maps a function over blocks, as Dask's map_blocks and blockwise",
     function()
    close(x:map_blocks(function(b, k) return b * k end, 3):compute(SYNC),
      a * 3)
    local firsts = x:map_blocks(function(b) return b:slice({1, 1}) end,
      {chunks = {1, {4, 4, 3}}, dtype = "int64"})
    assert.same({4, 11}, firsts.shape)
    assert.same(a:slice({1, -1, 3}):totable(),
      firsts:compute(SYNC):totable())
    assert.matches("block %(1,1%): the function returned shape %(1, 4%), "
      .. "expected %(3, 4%); give chunks =", err_of(function()
        return x:map_blocks(function(b) return b:slice({1, 1}) end)
          :compute(SYNC)
      end))
    assert.matches("unknown option 'dtyp'", err_of(x.map_blocks, x,
      function(b) return b end, {dtyp = "int64"}))
    -- drop_axis: each block gets the whole dropped axis, joined
    local rows = x:map_blocks(function(b) return b:sum{axis = 1} end,
      {drop_axis = 1})
    assert.same({11}, rows.shape)
    close(rows:compute(SYNC), a:sum{axis = 1})
    -- new_axis: a size-1 axis in front
    local lifted = x:map_blocks(function(b)
      return b:reshape(1, b.shape[1], b.shape[2])
    end, {new_axis = 1})
    assert.same({1, 10, 11}, lifted.shape)
    close(lifted:compute(SYNC)[1], a)
    -- block_info: where each block lies, as Dask's
    local where_ = x:map_blocks(function(b, info)
      local o = info.output
      assert(o.chunk_shape[1] == b.shape[1] and o.dtype == "int64")
      assert(info[1].num_chunks[2] == 3 and info[1].shape[1] == 10)
      return nd.full(b.shape, o.chunk_location[2] * 100 +
                              info[1].array_location[2][1])
    end, {block_info = true})
    assert.same({101, 101, 101, 101, 205, 205, 205, 205, 309, 309, 309},
      where_:compute(SYNC)[7]:totable())
    assert.matches("drop_axis: axis 3 is out of range for 2 axes",
      err_of(x.map_blocks, x, function(b) return b end, {drop_axis = 3}))
    assert.matches("new_axis: axis 1 given twice", err_of(x.map_blocks, x,
      function(b) return b end, {new_axis = {1, 1}}))
    -- blockwise: a contraction, as lists and concatenated
    local xt = x.T:rechunk{4, 3}
    local mm = da.blockwise(function(p, q)
      return p:matmul(q)
    end, "ik", x, "ij", xt, "jk", {concatenate = true, dtype = "float64"})
    close(mm:compute(SYNC), a:matmul(a.T))
    local ml = da.blockwise(function(p, q)
      local acc
      for i = 1, #p do
        local m = p[i]:matmul(q[i])
        acc = acc and acc + m or m
      end
      return acc
    end, "ik", x, "ij", xt, "jk")
    close(ml:compute(SYNC), a:matmul(a.T))
    assert.matches("index 'j' has chunks", err_of(da.blockwise,
      function(p) return p end, "ij", x, "ij", x, "ji"))
  end)

  it("carries float32 through creation, arithmetic and reductions",
     function()
    local f = da.random.uniform{shape = {100, 50}, chunks = {30, 20},
                                seed = 3, dtype = "float32"}
    local g = da.random.uniform{shape = {100, 50}, chunks = {30, 20},
                                seed = 3}
    local fv = f:compute(SYNC)
    assert.equal("float32", fv.dtype)
    assert.equal(100 * 50 * 4, f.nbytes)
    -- the same draws as float64, rounded
    assert.same(g:compute(SYNC):astype("float32"):totable(), fv:totable())
    assert.equal("float32", (f * 2 + 1).dtype)
    assert.equal("float32", (f * 2 + 1):compute(SYNC).dtype)
    assert.equal("float64", (f + g).dtype)
    assert.equal("float64", (f + g):compute(SYNC).dtype)
    assert.equal("float32", da.zeros({4}, {dtype = "float32", chunks = 2})
      :compute(SYNC).dtype)
    local m = f:mean{axis = 1}
    assert.equal("float32", m.dtype)
    close(m:compute(SYNC):astype("float64"),
      fv:mean{axis = 1}:astype("float64"), 1e-6)
    close(f:sum():compute(SYNC), fv:sum(), 1e-6)
    assert.equal("float64", da.concatenate{f, g}.dtype)
    assert.matches("unknown dtype 'float16'", err_of(da.random.uniform,
      {shape = {2}, seed = 1, dtype = "float16"}))
  end)

  it("factors a tall-skinny array with tsqr", function()
    local t = da.random.uniform{shape = {100, 5}, chunks = {30, 5}, seed = 2}
    local q, r = da.linalg.tsqr(t)
    local qv, rv, tv = q:compute(SYNC), r:compute(SYNC), t:compute(SYNC)
    assert.same({100, 5}, qv.shape)
    close(qv:matmul(rv), tv, 1e-12)
    close(qv.T:matmul(qv), nd.eye(5), 1e-12)
    assert.equal(0, rv:get(5, 4)) -- upper triangular
    assert.matches("one block of columns %(chunks {2, 2, 1}%)",
      err_of(da.linalg.tsqr, t:rechunk{30, 2}))
    assert.matches("block 1 has 4 rows, fewer than the 5 columns",
      err_of(da.linalg.tsqr, t:rechunk{4, 5}))
  end)

  it("solves a chunked square system by block LU, as LAPACK on the whole "
     .. "matrix", function()
    local n = 50
    -- diagonally heavy, so that no diagonal block is near singular
    local av = nd.random.uniform{shape = {n, n}, seed = 7} + nd.eye(n) * 4
    local bv = nd.random.uniform{shape = {n}, seed = 8}
    local b2 = nd.random.uniform{shape = {n, 3}, seed = 9}
    local A = da.from_ndarray(av, {chunks = 15})   -- blocks 15, 15, 15, 5
    local x = da.linalg.solve(A, da.from_ndarray(bv, {chunks = 15}))
    assert.same({{15, 15, 15, 5}}, x.chunks)
    close(x:compute(SYNC), nd.linalg.solve(av, bv), 1e-12)
    -- b as an ndarray, with columns; chunked otherwise than a: rechunked
    close(da.linalg.solve(A, b2):compute(SYNC), nd.linalg.solve(av, b2),
      1e-12)
    close(da.linalg.solve(A, da.from_ndarray(b2, {chunks = {20, 1}}))
      :compute(SYNC), nd.linalg.solve(av, b2), 1e-12)
    -- singular: a block row of zeros
    local sv = av:copy()
    sv:slice({31, 45}):assign(0)
    assert.matches("the matrix is singular %(no nonzero pivot left in block "
      .. "column 3%)",
      err_of(function()
        return da.linalg.solve(da.from_ndarray(sv, {chunks = 15}), bv)
          :compute(SYNC)
      end))
    assert.matches("a must be a square 2%-d array",
      err_of(da.linalg.solve, da.from_ndarray(b2), bv))
    assert.matches("row and column chunks differ %({15, 15, 15, 5} and "
      .. "{25, 25}%)", err_of(da.linalg.solve, A:rechunk{15, 25}, bv))
    assert.matches("b must be a 1%-d or 2%-d array of 50 rows",
      err_of(da.linalg.solve, A, nd.zeros{49}))
  end)

  it("solves with pivoting across blocks: a singular leading block",
     function()
    local n = 40
    -- rows swapped in pairs across blocks: every diagonal block of pv is
    -- zero, and pivots must come from other block rows
    local rv = nd.random.uniform{shape = {n, n}, seed = 11} + nd.eye(n) * 4
    local pv = nd.zeros{n, n}
    for i = 1, n do
      local src = i <= n / 2 and i + n / 2 or i - n / 2
      pv:slice(i):assign(rv:slice(src))
    end
    pv:slice({1, 10}, {1, 10}):assign(0)
    local bv = nd.random.uniform{shape = {n, 2}, seed = 12}
    local ok = pcall(nd.linalg.solve, pv:slice({1, 10}, {1, 10}),
                     bv:slice({1, 10}))
    assert.is_false(ok) -- the leading block alone is singular
    for _, c in ipairs{10, 13, 40} do
      local x = da.linalg.solve(da.from_ndarray(pv, {chunks = c}), bv)
      close(x:compute(SYNC), nd.linalg.solve(pv, bv), 1e-10)
      close(pv:matmul(x:compute(SYNC)), bv, 1e-10)
    end
    -- the ill-conditioned case without pivoting: a tiny leading pivot
    local tv = nd.eye(4)
    tv:set(1, 1, 1e-18); tv:set(1, 3, 1); tv:set(3, 1, 1)
    local tb = nd.from_table{1, 2, 3, 4}
    close(da.linalg.solve(da.from_ndarray(tv, {chunks = 2}), tb)
      :compute(SYNC), nd.linalg.solve(tv, tb), 1e-12)
  end)

  it("solves least squares through tsqr, as LAPACK's dgelsd on the whole "
     .. "matrix", function()
    local av = nd.random.uniform{shape = {120, 5}, seed = 31}
    local bv = nd.random.uniform{shape = {120}, seed = 32}
    local b2 = nd.random.uniform{shape = {120, 3}, seed = 33}
    local A = da.from_ndarray(av, {chunks = {30, 5}})
    for _, b in ipairs{bv, b2} do
      local x, res, rank, s = da.linalg.lstsq(A, b)
      local ex, eres, erank, es = nd.linalg.lstsq(av, b)
      assert.same(ex.shape, x.shape)
      close(x:compute(SYNC), ex, 1e-12)
      close(res:compute(SYNC), eres, 1e-10)
      assert.equal(erank, rank:compute(SYNC))
      assert.equal(5, erank)
      close(s:compute(SYNC), es, 1e-12)
    end
    -- b chunked otherwise (rechunked), and a rank-deficient a: column 5
    -- repeats column 1, so the minimum-norm x of dgelsd
    local dv = av:copy()
    dv:slice({1, 120}, 5):assign(dv:slice({1, 120}, 1))
    local x, _, rank, s = da.linalg.lstsq(da.from_ndarray(dv, {chunks =
      {40, 5}}), da.from_ndarray(bv, {chunks = 7}))
    local ex, eres, erank, es = nd.linalg.lstsq(dv, bv)
    assert.equal(4, erank)
    assert.equal(0, eres.size)       -- NumPy gives none when rank-deficient
    assert.equal(4, rank:compute(SYNC))
    close(x:compute(SYNC), ex, 1e-10)
    close(s:compute(SYNC), es, 1e-10)
    assert.matches("a must have one block of columns",
      err_of(da.linalg.lstsq, da.from_ndarray(av, {chunks = {30, 2}}), bv))
    assert.matches("block 2 of a has 3 rows, fewer than its 5 columns",
      err_of(da.linalg.lstsq, da.from_ndarray(av, {chunks = {{117, 3}, {5}}}),
        bv))
    assert.matches("b must be a 1%-d or 2%-d array of 120 rows",
      err_of(da.linalg.lstsq, A, nd.zeros{119}))
    assert.matches("option 'rcond' must be a number, got string",
      err_of(da.linalg.lstsq, A, bv, {rcond = "x"}))
  end)

  it("persists in this process with the sync scheduler", function()
    local p = (x * 2):persist(SYNC)
    assert.equal(0, ntasks(p))
    assert.equal((a * 2):sum(), p:sum():compute(SYNC))
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

  it("draws a big-block product's random inputs on the workers", function()
    local o = {client = client}
    local y = da.random.uniform{shape = {512, 512}, chunks = {256, 256},
                                seed = 3}
    local z = y + 0
    -- the diagonal blocks by dsyrk on the workers, as in this process
    close(y:matmul(y.T):compute(o), z:matmul(z.T):compute(SYNC), 0)
  end)

  it("uses one BLAS thread in each worker", function()
    local f = client:submit(function()
      return require("dlua.ndarray").blas_threads()
    end)
    assert.equal(1, f:result())
  end)

  it("slices, rechunks and persists with blocks on the workers", function()
    local o = {client = client}
    local r = da.random.uniform{shape = {300, 200}, chunks = {100, 100},
                                seed = 9}
    local rv = r:compute(SYNC)
    close(r:slice({-250, 290, 7}, {-1, 1, -3}):compute(o),
      rv:slice({-250, 290, 7}, {-1, 1, -3}))
    close(r:rechunk{60, 70}:sum{axis = 2}:compute(o), rv:sum{axis = 2})
    close(da.concatenate({r, r:rechunk{30, 50}}, {axis = 2}):compute(o),
      nd.concatenate({rv, rv}, {axis = 2}))
    local p = (r * 3):persist(o)
    local nfut = 0
    for _, v in pairs(p:graph()) do
      assert.equal("dlua.Future", getmetatable(v).__name)
      nfut = nfut + 1
    end
    assert.equal(6, nfut)
    close(p:compute(o), rv * 3)
    close((p + 1):compute(o), rv * 3 + 1)
    close(p:sum():compute(o), (rv * 3):sum())
    close(p:map_blocks(function(b) return b:sqrt() end):compute(o),
      (rv * 3):sqrt())
    local f = r:astype("float32")
    assert.equal("float32", f:compute(o).dtype)
    close((f * 2):sum():compute(o), (rv:astype("float32") * 2):sum(), 1e-6)
  end)

  it("raises a task's error with the block's message", function()
    local bad = da.arange(1, 10, {chunks = 5}) // 0
    assert.matches("integer division or modulo by zero",
      err_of(bad.compute, bad, {client = client}))
  end)

  it("solves with pivoting across blocks on the workers", function()
    local n = 60
    local av = nd.random.uniform{shape = {n, n}, seed = 21}
    av:slice({1, 20}, {1, 20}):assign(0) -- singular leading block
    local bv = nd.random.uniform{shape = {n}, seed = 22}
    local x = da.linalg.solve(da.from_ndarray(av, {chunks = 20}), bv)
    close(x:compute{client = client}, nd.linalg.solve(av, bv), 1e-9)
  end)

  it("solves least squares on the workers", function()
    local av = nd.random.uniform{shape = {400, 6}, seed = 41}
    local bv = nd.random.uniform{shape = {400, 2}, seed = 42}
    local x, res, rank, s = da.linalg.lstsq(
      da.from_ndarray(av, {chunks = {100, 6}}), bv)
    local ex, eres, erank, es = nd.linalg.lstsq(av, bv)
    local o = {client = client}
    close(x:compute(o), ex, 1e-12)
    close(res:compute(o), eres, 1e-10)
    assert.equal(erank, rank:compute(o))
    close(s:compute(o), es, 1e-12)
  end)

  it("reads big stored blocks in place: a task's input is read-only",
     function()
    -- 256 KiB blocks, decoded as views of the worker's stored bytes
    local x = da.random.uniform{shape = {512, 128}, chunks = {256, 128},
                                seed = 4}:persist{client = client}
    local xv = x:compute(SYNC)
    close(x:compute{client = client}, xv)
    close(x:matmul(x.T):compute{client = client}, xv:matmul(xv.T), 1e-9)
    local e = err_of(function()
      return x:map_blocks(function(b) b:set(1, 1, 0); return b end)
        :compute{client = client}
    end)
    assert.matches("set: the array is read%-only %(a task's input", e)
    e = err_of(function()
      return x:map_blocks(function(b) b:slice({1, 2}):assign(0); return b end)
        :compute{client = client}
    end)
    assert.matches("assign: the array is read%-only", e)
    -- a copy is the task's own; the stored block is unchanged
    local y = x:map_blocks(function(b)
      local c = b:copy(); c:set(1, 1, -1); return c
    end):compute{client = client}
    assert.equal(-1, y:get(1, 1))
    assert.equal(-1, y:get(257, 1))
    close(x:compute{client = client}, xv)
  end)
end)

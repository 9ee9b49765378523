-- Specs for dlua.ndarray: the in-memory n-d array (no cluster).
local nd = require "dlua.ndarray"
local codec = require "dlua.codec"

local A = nd.from_table

local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok)
  return tostring(e)
end

-- Elementwise closeness of two arrays (or tables).
local function close(a, b, tol)
  tol = tol or 1e-9
  a, b = A(a), A(b)
  assert.same(a.shape, b.shape)
  local d = (a - b):abs():max()
  assert.is_true(d <= tol, "max difference " .. tostring(d))
end

describe("dlua.ndarray creation", function()
  it("takes nested tables, infers dtype and shape", function()
    local a = A{{1, 2, 3}, {4, 5, 6}}
    assert.equal("int64", a.dtype)
    assert.same({2, 3}, a.shape)
    assert.equal(2, a.ndim)
    assert.equal(6, a.size)
    assert.equal(2, #a)
    assert.equal("float64", A{1, 2.5}.dtype)
    assert.equal("bool", A{true, false}.dtype)
    assert.equal("float64", A({1, 2}, {dtype = "float64"}).dtype)
    assert.same({{1, 2, 3}, {4, 5, 6}}, a:totable())
    assert.equal(2.5, A(2.5):item())
  end)

  it("makes zeros, ones, full, arange (inclusive), linspace, eye", function()
    assert.same({0, 0, 0}, nd.zeros{3}:totable())
    assert.equal("float64", nd.ones{2, 2}.dtype)
    assert.same({{7, 7}}, nd.full({1, 2}, 7):totable())
    assert.same({1, 2, 3, 4, 5}, nd.arange(1, 5):totable())
    assert.same({1, 3, 5}, nd.arange(1, 6, 2):totable())
    assert.same({0, 0.5, 1}, nd.linspace(0, 1, 3):totable())
    assert.same({{1, 0}, {0, 1}}, nd.eye(2):totable())
    assert.same({}, nd.arange(5, 1):totable())
  end)

  it("refuses bad tables, naming the element", function()
    assert.matches("element %[2%]%[2%] is a string",
      err_of(A, {{1, 2}, {3, "x"}}))
    assert.matches("ragged nesting: element %[2%] is a table of 1 elements, "
      .. "expected a table of 2", err_of(A, {{1, 2}, {3}}))
    assert.matches("unknown dtype 'float16'", err_of(nd.zeros, {2}, "float16"))
    assert.matches("shape%[1%] must be a non%-negative integer",
      err_of(nd.zeros, {-1}))
  end)

  it("reports errors at the caller's line", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local e = err_of(function() return A{1, 2} + A{1, 2, 3} end)
    assert.matches("array_ndarray_spec.lua:" .. line .. ":", e, 1, true)
  end)
end)

describe("dlua.ndarray indexing and views", function()
  it("indexes 1-based, negative from the end", function()
    local a = A{{1, 2, 3}, {4, 5, 6}}
    assert.equal(6, a:get(2, 3))
    assert.equal(6, a:get(-1, -1))
    assert.same({4, 5, 6}, a[2]:totable())
    assert.equal(5, a[2][2])
    local v = nd.arange(1, 3)
    v[2] = 20
    assert.same({1, 20, 3}, v:totable())
    a:set(1, 1, 100)
    assert.equal(100, a:get(1, 1))
    assert.matches("index 3 is out of bounds for axis 1 with size 2",
      err_of(a.get, a, 3, 1))
    assert.matches("index 0 is out of bounds", err_of(a.get, a, 0, 1))
  end)

  it("slices inclusively with steps, as views", function()
    local a = nd.arange(1, 12):reshape(3, 4)
    assert.same({{2, 3}, {6, 7}}, a:slice({1, 2}, {2, 3}):totable())
    assert.same({{1, 3}, {9, 11}}, a:slice({1, -1, 2}, {1, -1, 2}):totable())
    assert.same({4, 3, 2, 1}, a:slice(1, {-1, 1, -1}):totable())
    assert.same({5, 6, 7, 8}, a:slice(2):totable())
    local v = a:slice({}, 2)
    v:assign(0) -- writes through the view
    assert.same({0, 0, 0}, a:slice({}, 2):totable())
    assert.same({}, a:slice({3, 2}, 1):totable())
  end)

  it("transposes and reshapes", function()
    local a = nd.arange(1, 6):reshape(2, 3)
    assert.same({{1, 4}, {2, 5}, {3, 6}}, a.T:totable())
    assert.same({3, 2}, a:transpose(2, 1).shape)
    assert.same({{1, 2}, {3, 4}, {5, 6}}, a:reshape(3, -1):totable())
    assert.same({1, 4, 2, 5, 3, 6}, a.T:flatten():totable()) -- a copy
    assert.matches("cannot reshape array of shape %(2, 3%) %(6 elements%) "
      .. "into shape %(4, 2%)", err_of(a.reshape, a, 4, 2))
  end)

  it("concatenates and stacks, naming mismatched shapes", function()
    local a, b = A{{1, 2}}, A{{3, 4}}
    assert.same({{1, 2}, {3, 4}}, nd.concatenate{a, b}:totable())
    assert.same({{1, 2, 3, 4}}, nd.concatenate({a, b}, {axis = 2}):totable())
    assert.same({2, 1, 2}, nd.stack{a, b}.shape)
    assert.same({1, 2, 2}, nd.stack({a, b}, {axis = 2}).shape)
    assert.matches("%(1, 2%) and %(1, 3%)",
      err_of(nd.concatenate, {a, A{{1, 2, 3}}}))
  end)
end)

describe("dlua.ndarray arithmetic", function()
  it("broadcasts like NumPy", function()
    local a = A{{1, 2, 3}, {4, 5, 6}}
    assert.same({{11, 22, 33}, {14, 25, 36}}, (a + A{10, 20, 30}):totable())
    assert.same({{2, 3, 4}, {6, 7, 8}}, (a + A{{1}, {2}}):totable())
    assert.same({{0.5, 1, 1.5}, {2, 2.5, 3}}, (a / 2):totable())
    assert.same({{-1, -2, -3}, {-4, -5, -6}}, (-a):totable())
    assert.same({2, 0, 1}, (A{-7, 6, 7} % 3):totable())     -- floored
    assert.same({-3, 2, 2}, (A{-7, 6, 7} // 3):totable())
    assert.same({1, 4, 9}, (A{1, 2, 3} ^ 2):totable())
    assert.same({9, 6, 3}, (10 - A{1, 4, 7}):totable())
    assert.matches("shapes %(2, 3%) and %(2,%)", err_of(function()
      return a + A{1, 2} end))
  end)

  it("compares with methods and combines bool arrays", function()
    local a = A{1, 5, 3}
    assert.same({false, true, false}, a:gt(3):totable())
    assert.same({true, false, true}, a:le(3):totable())
    assert.same({false, false, true}, a:eq(3):totable())
    assert.same({true, true, false}, a:ne(3):totable())
    assert.same({false, true, true}, (a:gt(1) & a:lt(6)):totable())
    assert.same({true, true, true}, (a:gt(1) | a:lt(2)):totable())
    assert.same({true, false, true}, (~a:gt(3)):totable())
    assert.same({0, 5, 0}, nd.where(a:gt(3), a, 0):totable())
    assert.matches("operation not defined", err_of(function()
      return A{1.5} & A{true} end))
  end)

  it("refuses integer division by zero and NaN to int64", function()
    assert.matches("integer division or modulo by zero",
      err_of(function() return A{1, 2} // 0 end))
    assert.matches("cannot convert NaN or infinity to int64",
      err_of(function() return A{0 / 0}:astype("int64") end))
    assert.matches("cannot store", err_of(function()
      local v = nd.zeros({1}, "int64"); v[1] = 0 / 0 end))
  end)

  it("has math functions", function()
    close(A{1, 4, 9}:sqrt(), {1, 2, 3})
    close(nd.exp(A{0, 1}), {1, math.exp(1)})
    close(A{-1.5, 2.5}:abs(), {1.5, 2.5})
    close(A{-1.5, 2.5}:floor(), {-2, 2})
    assert.same({false, true}, A{1, 0 / 0}:isnan():totable())
    close(nd.maximum(A{1, 5}, A{3, 2}), {3, 5})
  end)
end)

describe("dlua.ndarray reductions", function()
  local a = A{{1, 2, 3}, {4, 5, 6}}
  it("reduce everything to a Lua value", function()
    assert.equal(21, a:sum())
    assert.equal(720, a:prod())
    assert.equal(1, a:min())
    assert.equal(6, a:max())
    assert.equal(3.5, a:mean())
    assert.near(17.5 / 6, a:var(), 1e-12)
    assert.near(math.sqrt(17.5 / 5), a:std{ddof = 1}, 1e-12)
    assert.equal(6, a:argmax())   -- flat, 1-based
    assert.equal(1, a:argmin())
    assert.is_true(a:gt(0):all())
    assert.is_false(a:gt(5):all())
    assert.is_true(a:gt(5):any())
    assert.equal(3, a:gt(3):sum())
  end)

  it("reduce over an axis (1-based)", function()
    assert.same({5, 7, 9}, a:sum{axis = 1}:totable())
    assert.same({6, 15}, a:sum{axis = 2}:totable())
    assert.same({6, 15}, a:sum{axis = -1}:totable())
    assert.same({2.5, 3.5, 4.5}, a:mean{axis = 1}:totable())
    assert.same({3, 6}, a:max{axis = 2}:totable())
    assert.same({2, 2, 2}, a:argmax{axis = 1}:totable())
    assert.same({{1, 2, 3}, {5, 7, 9}}, a:cumsum{axis = 1}:totable())
    assert.same({1, 3, 6, 10, 15, 21}, a:cumsum():totable())
    assert.matches("axis 3 is out of range for an array of shape %(2, 3%)",
      err_of(a.sum, a, {axis = 3}))
    assert.matches("zero%-size array", err_of(nd.zeros{0}.max, nd.zeros{0}))
  end)
end)

describe("dlua.ndarray linear algebra", function()
  local M = A{{4.0, 2, 0}, {2, 5, 1}, {0, 1, 3}}
  it("multiplies matrices through BLAS", function()
    close(A{{1, 2}, {3, 4}}:matmul(A{{5, 6}, {7, 8}}), {{19, 22}, {43, 50}})
    close(A{{1, 2}, {3, 4}}:matmul(A{1, 1}), {3, 7})
    assert.same({7, 10}, A{1, 2}:matmul(A{{1, 2}, {3, 4}}):totable())
    assert.matches("shapes %(2, 2%) and %(3,%) do not align",
      err_of(nd.matmul, A{{1, 2}, {3, 4}}, A{1, 2, 3}))
  end)

  it("multiplies a matrix by its own transpose (dsyrk, mirrored)", function()
    local b = nd.arange(1, 63):reshape(7, 9) / 7 - 3
    -- contiguous, a transposed view, a view of every other row, a view of
    -- some columns: each a @ a.T against the same product of a copy
    for _, a in ipairs{b, b.T, b:slice({1, 7, 2}), b:slice({}, {2, 6})} do
      local r = a:matmul(a.T)
      close(r, a:matmul(a.T:copy()), 1e-12)
      assert.same(r.T:totable(), r:totable()) -- exactly symmetric
    end
    close(b:reshape(7, 9, 1):slice({}, {}, 1):matmul(
      b:reshape(7, 9, 1):slice({}, {}, 1).T), b:matmul(b.T), 1e-12)
    assert.same({{0, 0}, {0, 0}}, nd.zeros{2, 0}:matmul(nd.zeros{2, 0}.T)
      :totable())
    assert.same({0, 0}, nd.zeros{0, 3}:matmul(nd.zeros{0, 3}.T).shape)
    local f = b:astype("float32")
    assert.equal("float32", f:matmul(f.T).dtype)
    close(f:matmul(f.T):astype("float64"), b:matmul(b.T), 1e-3)
  end)

  it("solves, inverts, factors", function()
    local b = A{1.0, 2, 3}
    close(M:matmul(nd.linalg.solve(M, b)), b)
    close(M:matmul(nd.linalg.inv(M)), nd.eye(3))
    local q, r = nd.linalg.qr(M)
    close(q:matmul(r), M)
    close(q.T:matmul(q), nd.eye(3))
    local u, s, vt = nd.linalg.svd(M)
    close(u:matmul(nd.eye(3) * s):matmul(vt), M)
    local l = nd.linalg.cholesky(M)
    close(l:matmul(l.T), M)
    assert.equal(0, l:get(1, 2))
  end)

  it("factors by LU with partial pivoting and solves triangular systems",
     function()
    local P = A{{0.0, 2, 1}, {1, 1, 1}, {4, 2, 0}, {2, 0, 3}} -- 4 x 3
    local lu, piv = nd.linalg.lu_factor(P)
    assert.same({3, 3, 4}, piv:totable())         -- LAPACK's interchanges
    assert.equal("int64", piv.dtype)
    -- rebuild P from L and U with the interchanges undone
    local L, U = nd.zeros{4, 3}, nd.zeros{3, 3}
    for i = 1, 4 do
      for j = 1, 3 do
        if i > j then L:set(i, j, lu:get(i, j))
        elseif i == j then L:set(i, j, 1) end
        if i <= j then U:set(i, j, lu:get(i, j)) end
      end
    end
    local R = L:matmul(U)
    for i = 3, 1, -1 do
      local r = piv:get(i)
      local t = R:slice(i):copy()
      R:slice(i):assign(R:slice(r)); R:slice(r):assign(t)
    end
    close(R, P)
    close(nd.linalg.solve_triangular(U, A{1.0, 2, 3}),
      nd.linalg.solve(U, A{1.0, 2, 3}))
    close(nd.linalg.solve_triangular(L:slice({1, 3}), A{{1.0}, {2}, {3}},
      {lower = true, unit_diagonal = true}),
      nd.linalg.solve(L:slice({1, 3}), A{{1.0}, {2}, {3}}))
    assert.matches("linalg.lu_factor: singular matrix",
      err_of(nd.linalg.lu_factor, A{{1, 2}, {2, 4}}))
    assert.matches("linalg.solve_triangular: singular matrix",
      err_of(nd.linalg.solve_triangular, A{{1, 2}, {0, 0}}, A{1, 2}))
    assert.matches("solve_triangular: shapes do not fit",
      err_of(nd.linalg.solve_triangular, A{{1, 2}, {0, 1}}, A{1, 2, 3}))
  end)

  it("solves least squares as NumPy's lstsq (LAPACK dgelsd)", function()
    -- y = 1 + 2 t fitted to four points exactly on it, then one off it
    local T = A{{1.0, 0}, {1, 1}, {1, 2}, {1, 3}}
    local x, res, rank, s = nd.linalg.lstsq(T, A{1.0, 3, 5, 7})
    close(x, {1, 2}, 1e-12)
    close(res, {0}, 1e-20)
    assert.equal(2, rank)
    local _, es = nd.linalg.svd(T)
    close(s, es, 1e-12)
    x, res = nd.linalg.lstsq(T, A{1.0, 3, 5, 8})
    close(x, {0.8, 2.3}, 1e-12)                    -- NumPy's figures
    close(res, {0.3}, 1e-12)
    -- rank-deficient: the minimum-norm solution, no residuals
    x, res, rank = nd.linalg.lstsq(A{{1.0, 2}, {2, 4}, {3, 6}}, A{1.0, 2, 3})
    close(x, {0.2, 0.4}, 1e-12)
    assert.equal(1, rank)
    assert.same({0}, res.shape)
    assert.matches("linalg.lstsq: shapes do not fit",
      err_of(nd.linalg.lstsq, T, A{1, 2}))
    assert.matches("option 'rcond' must be a number",
      err_of(nd.linalg.lstsq, T, A{1, 2, 3, 4}, {rcond = "x"}))
  end)

  it("names singular and non-positive-definite matrices", function()
    assert.matches("linalg.solve: singular matrix", err_of(nd.linalg.solve,
      A{{1, 2}, {2, 4}}, A{1, 2}))
    assert.matches("not positive definite", err_of(nd.linalg.cholesky,
      A{{1, 2}, {2, 1}}))
    assert.matches("shapes do not fit", err_of(nd.linalg.inv, A{{1, 2, 3}}))
  end)
end)

describe("dlua.ndarray printing", function()
  it("prints like NumPy", function()
    assert.equal("array([[1, 2],\n       [3, 4]])", tostring(A{{1, 2}, {3, 4}}))
    assert.equal("array([1. , 2.5])", tostring(A{1, 2.5}))
    assert.equal("array([1., 2.])", tostring(A{1.0, 2.0}))
    assert.equal("array([ true, false])", tostring(A{true, false}))
    assert.equal("array(3)", tostring(A(3)))
    assert.equal("array([1.e-07, 1.e+00])", tostring(A{1e-7, 1}))
    assert.equal("array([], shape=(0,), dtype=float64)", tostring(nd.zeros{0}))
    assert.equal("array([   1,    2,    3, ..., 1998, 1999, 2000])",
      tostring(nd.arange(1, 2000)))
  end)
end)

describe("dlua.ndarray random numbers", function()
  it("depend only on seed and index", function()
    local a = nd.random.uniform{shape = {1000}, seed = 5}
    local b = nd.random.uniform{shape = {1000}, seed = 5}
    assert.is_true(a:eq(b):all())
    assert.is_false(a:eq(nd.random.uniform{shape = {1000}, seed = 6}):all())
    assert.is_true(a:ge(0):all() and a:lt(1):all())
    assert.near(0.5, a:mean(), 0.05)
    local n = nd.random.normal{shape = {20000}, seed = 1, mean = 2, sd = 3}
    assert.near(2, n:mean(), 0.1)
    assert.near(3, n:std(), 0.1)
    local k = nd.random.integers{shape = {1000}, seed = 1, low = 1, high = 6}
    assert.equal(1, k:min())
    assert.equal(6, k:max())
    -- a block of a bigger array holds the same values as the whole
    local whole = nd.random.uniform{shape = {6, 8}, seed = 9}
    local block = nd._random_block("uniform", 9, {6, 8}, {3, 5}, {2, 3}, 0, 1)
    assert.is_true(whole:slice({3, 4}, {5, 7}):eq(block):all())
  end)
end)

describe("dlua.ndarray fused programs", function()
  it("run a chain in one pass, with random inputs drawn in tiles", function()
    local x = nd.random.uniform{shape = {5000}, seed = 1}
    local y = nd.random.uniform{shape = {5000}, seed = 2}
    -- x * x + y * y < 1
    local prog = {0, 0, 0, 0, 2, 2, 0, 1, 0, 1, 2, 2, 2, 0, 1, 0, 2, 7}
    local want = (x * x + y * y):lt(1):sum()
    assert.equal(want, nd._fused(prog, {1.0}, "sum", x, y))
    local gx = {"uniform", 1, {5000}, {1}, {5000}, 0, 1}
    local gy = {"uniform", 2, {5000}, {1}, {5000}, 0, 1}
    assert.equal(want, nd._fused(prog, {1.0}, "sum", gx, gy))
    local arr = nd._fused(prog, {1.0}, nil, x, y)
    assert.equal(want, arr:sum())
    assert.matches("inputs of shapes", err_of(nd._fused, prog, {1.0}, "sum",
      x, nd.zeros{3}))
  end)
end)

describe("dlua.ndarray through the codec", function()
  it("travels as raw bytes, views included", function()
    local a = nd.arange(1, 12):reshape(3, 4)
    local s = codec.encode(a.T)
    local b = codec.decode(s)
    assert.same(a.T:totable(), b:totable())
    assert.is_true(#s < 12 * 8 + 64) -- bytes, not a table of numbers
    local f = codec.decode(codec.encode(A{{1.5, 2}, {3, 4}}))
    assert.equal("float64", f.dtype)
    assert.same({true, false}, codec.decode(codec.encode(A{true, false})):totable())
    assert.matches("not an encoded ndarray", err_of(nd.frombytes, "xyz"))
    -- truncated bytes never crash
    local t = nd.tobytes(a)
    for cut = 0, #t - 1, 7 do
      assert.is_false(pcall(nd.frombytes, t:sub(1, cut)))
    end
  end)
end)

describe("dlua.ndarray float32", function()
  local a = nd.arange(1, 6, {dtype = "float32"}) / 3

  it("is made, stored and read as 4-byte floats", function()
    assert.equal("float32", a.dtype)
    assert.equal("float32", nd.zeros({2}, "float32").dtype)
    assert.equal("float32", nd.ones({2}, {dtype = "float32"}).dtype)
    assert.equal("float32", nd.full({2}, 1.5, "float32").dtype)
    assert.equal("float32", nd.eye(2, {dtype = "float32"}).dtype)
    assert.equal("float32",
      nd.random.uniform{shape = {3}, seed = 1, dtype = "float32"}.dtype)
    -- values are rounded to float32: 1/3 is not the float64 1/3
    assert.is_true(a:get(1) ~= 1 / 3)
    assert.is_true(math.abs(a:get(1) - 1 / 3) < 1e-7)
    assert.equal(2.5, nd.from_table({2.5}, "float32"):item())
    assert.equal("array([0.5, 1.5], dtype=float32)",
      tostring(nd.from_table({0.5, 1.5}, "float32")))
    assert.matches("unknown dtype 'float16' %(float64, float32, int64 or "
      .. "bool%)", err_of(nd.zeros, {2}, "float16"))
  end)

  it("keeps float32 with float32, bools and numbers; widens with arrays "
     .. "of int64 or float64", function()
    assert.equal("float32", (a + 1).dtype)
    assert.equal("float32", (a * 2.5 - a).dtype)
    assert.equal("float32", (a + a:gt(1)).dtype)
    assert.equal("float32", a:sqrt().dtype)
    assert.equal("bool", a:lt(1).dtype)
    assert.equal("float64", (a + nd.ones{6}).dtype)
    assert.equal("float64", (a + nd.arange(1, 6)).dtype)
    assert.equal("float32", nd.where(a:gt(1), a, 0).dtype)
    assert.equal("float32", nd.concatenate({a, a}).dtype)
    assert.equal("float64", nd.concatenate({a, nd.arange(1, 2)}).dtype)
    assert.equal("float32", a:reshape(6, 1):matmul(a:reshape(1, 6)).dtype)
    -- arithmetic is float64 arithmetic rounded once to float32
    local x = nd.from_table({0.1, 0.7}, "float32")
    local want = nd.from_table({x:get(1) * x:get(2)}, "float32"):item()
    assert.equal(want, (x:slice({1, 1}) * x:slice({2, 2})):item())
  end)

  it("reduces to float32 values", function()
    assert.equal(7.0, a:sum())
    assert.equal("float32", a:mean{axis = 1}.dtype)
    assert.equal("float32", a:cumsum().dtype)
    assert.equal("int64", a:argmax{axis = 1}.dtype)
    assert.is_true(math.abs(a:std() - (a:astype("float64")):std()) < 1e-6)
    assert.matches("cannot convert NaN or infinity to int64",
      err_of(function()
        return nd.full({2}, 0 / 0, "float32"):astype("int64")
      end))
  end)

  it("travels through the codec as 4-byte floats", function()
    local s = codec.encode(a.T)
    assert.equal(#codec.encode(a:astype("float64").T) - 6 * 4, #s)
    local b = codec.decode(s)
    assert.equal("float32", b.dtype)
    assert.same(a:totable(), b:totable())
  end)
end)

describe("dlua.ndarray .npy files", function()
  local tmp
  before_each(function() tmp = os.tmpname() end)
  after_each(function() os.remove(tmp) end)

  it("saves and loads every dtype, views included", function()
    local a = nd.arange(1, 12):reshape(3, 4)
    for _, v in ipairs{a, a.T, a / 3, a:gt(5), nd.zeros{0},
                       (a / 3):astype("float32").T} do
      assert.is_true(nd.save(tmp, v))
      local b = nd.load(tmp)
      assert.equal(v.dtype, b.dtype)
      assert.same(v:totable(), b:totable())
    end
    local ok, msg = nd.load(tmp .. ".missing")
    assert.is_nil(ok)
    assert.matches("No such file", msg)
  end)

  it("names a bad dtype, a truncated body and a file that is not .npy",
     function()
    local a = nd.arange(1, 6)
    nd.save(tmp, a)
    local f = io.open(tmp, "rb"); local s = f:read("a"); f:close()
    f = io.open(tmp, "wb"); f:write(s:sub(1, -5)); f:close()
    assert.matches("truncated body: shape %(6,%) needs 48 bytes, the file "
      .. "holds 44", err_of(nd.load, tmp))
    f = io.open(tmp, "wb"); f:write((s:gsub("<i8", "<f2"))); f:close()
    assert.matches("unsupported dtype '<f2'", err_of(nd.load, tmp))
    f = io.open(tmp, "wb"); f:write("hello"); f:close()
    assert.matches("not a .npy file", err_of(nd.load, tmp))
  end)

  local py = "/usr/bin/python3"
  local has_numpy = os.execute(py .. " -c 'import numpy' 2>/dev/null")
  local numpy_it = has_numpy and it or pending
  numpy_it("moves arrays to and from NumPy (python3-numpy; else skipped: "
    .. "scripts/install-deps)", function()
    local a = nd.arange(1, 12):reshape(3, 4) / 4
    nd.save(tmp, a.T)
    local p = io.popen(py .. " -c \"import numpy as np; x = np.load('" .. tmp
      .. "'); print(x.shape, x.dtype, x.sum(), x[3, 0])\"")
    local out = p:read("a")
    p:close()
    assert.equal("(4, 3) float64 19.5 1.0\n", out)
    local npy = tmp .. ".npy" -- np.save adds the suffix otherwise
    assert.is_true(os.execute(py .. " -c \"import numpy as np; np.save('"
      .. npy .. "', np.asfortranarray(np.arange(6).reshape(2, 3)))\""))
    local b = nd.load(npy)
    os.remove(npy)
    assert.same({{0, 1, 2}, {3, 4, 5}}, b:totable())
    assert.equal("int64", b.dtype)
    -- float32 both ways
    nd.save(tmp, (a / 3):astype("float32"))
    p = io.popen(py .. " -c \"import numpy as np; x = np.load('" .. tmp
      .. "'); print(x.dtype, x[1, 2] == np.float32(7 / 12))\"")
    out = p:read("a")
    p:close()
    assert.equal("float32 True\n", out)
    assert.is_true(os.execute(py .. " -c \"import numpy as np; np.save('"
      .. npy .. "', np.arange(4, dtype=np.float32) / 3)\""))
    b = nd.load(npy)
    os.remove(npy)
    assert.equal("float32", b.dtype)
    assert.equal(nd.from_table({1 / 3}, "float32"):item(), b:get(2))
  end)
end)

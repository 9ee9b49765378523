-- Specs for dlua.dataframe: read_csv in blocks read by the workers, the
-- group-by tree against the in-memory frame, head, filter, to_csv, and
-- the errors of bad files.
local dlua = require "dlua"
local frame = require "dlua.frame"
local dd = require "dlua.dataframe"

local SYNC = {scheduler = "sync"}

local F = require "helpers.files"
local tmpdir, spit = F.tmpdir, F.spit

local function make_files(dir, nfiles, nrows)
  math.randomseed(11)
  for f = 1, nfiles do
    local t = {"id,key,x,y\n"}
    for i = 1, nrows do
      t[#t + 1] = string.format("%d,k%d,%.6f,%d\n", i, math.random(1, 20),
        math.random(), math.random(1, 100))
    end
    spit(dir .. "/p" .. f .. ".csv", table.concat(t))
  end
end

local SPEC = {x = {"mean", "std", "count", "min"},
  y = {"sum", "max", "var", "first", "last"}}

local function same_frames(a, b)
  local ta, tb = a:totable(), b:totable()
  assert.equal(#tb, #ta)
  for i = 1, #tb do
    for k, v in pairs(tb[i]) do
      if type(v) == "number" then
        assert.near(v, ta[i][k], 1e-9 * math.max(1, math.abs(v)))
      else
        assert.equal(v, ta[i][k])
      end
    end
  end
end

describe("dlua.dataframe", function ()
  local dir
  setup(function ()
    dir = tmpdir()
    make_files(dir, 3, 1500)
  end)
  teardown(function () os.execute("rm -rf '" .. dir .. "'") end)

  local function whole()
    local fs = {}
    for f = 1, 3 do fs[f] = frame.read_csv(dir .. "/p" .. f .. ".csv") end
    return frame.concat(fs)
  end

  it("makes a dataframe of a bag's records or arrays (from_bag)", function ()
    local bag = require "dlua.bag"
    local recs, sums = {}, {}
    for i = 1, 500 do
      local k = "g" .. (i * 7919 % 13)
      local x = i % 10 == 0 and nil or i * 0.5
      recs[i] = {key = k, x = x, i = i}
      if x then sums[k] = (sums[k] or 0) + x end
    end
    local b = bag.from_sequence(recs, {npartitions = 6})
    local ddf = dd.from_bag(b, {"i", "key", "x"})
    assert.equal(6, ddf.npartitions)
    local all = ddf:compute(SYNC)
    assert.same({"i", "key", "x"}, all:columns())
    assert.equal(500, #all)
    for i, r in ipairs(all:totable()) do
      assert.same(recs[i], r)
    end
    local g = ddf:groupby("key"):agg{x = "sum"}:compute(SYNC):totable()
    assert.equal(13, #g)
    for _, r in ipairs(g) do assert.near(sums[r.key], r.x, 1e-9) end
    -- arrays: values in the order of the columns
    local arr = bag.from_sequence({{1, "a"}, {2, "b"}, {3}}, {npartitions = 2})
    assert.same({{n = 1, s = "a"}, {n = 2, s = "b"}, {n = 3}},
      dd.from_bag(arr, {"n", "s"}):compute(SYNC):totable())
    local ok, err = pcall(function () local r = dd.from_bag(b) return r end)
    assert.is_false(ok)
    assert.truthy(err:find("from_bag: needs the column names", 1, true))
    assert.truthy(err:find("dataframe_spec", 1, true))
    ok, err = pcall(dd.from_bag, {}, {"a"})
    assert.truthy(err:find("from_bag: expects a dlua.bag, got table", 1, true))
    ok, err = pcall(dd.from_bag, b, {"a", "a"})
    assert.truthy(err:find("duplicate column name 'a'", 1, true))
    ok, err = pcall(function ()
      return dd.from_bag(bag.from_sequence({1, 2}), {"a"}):compute(SYNC)
    end)
    assert.is_false(ok)
    assert.truthy(err:find("element 1 of a partition is a number", 1, true))
  end)

  it("draws its task graph (visualize)", function ()
    local ddf = dd.read_csv(dir .. "/*.csv", {blocksize = 20000})
    local agg = ddf:groupby("key"):agg({x = "sum"}, {split_every = 2})
    local text = agg:visualize()
    assert.truthy(text:find("^digraph"))
    local nodes, edges = 0, 0
    for _ in text:gmatch("shape=") do nodes = nodes + 1 end
    for _ in text:gmatch(" %-> ") do edges = edges + 1 end
    -- read blocks, one partial each, a combine tree, and the finish
    local np = ddf.npartitions
    assert.is_true(np >= 4)
    assert.is_true(nodes >= 2 * np + 1)
    assert.is_true(edges >= 2 * np)
    assert.truthy(text:find('"' .. agg.name .. '-1" [style=bold]', 1, true))
    local path = dir .. "/g.dot"
    assert.equal(path, agg:visualize(path))
    local f = assert(io.open(path))
    assert.equal(text, f:read("a"))
    f:close()
    local ok, err = pcall(agg.visualize, agg, dir .. "/g.txt")
    assert.is_false(ok)
    assert.truthy(err:find("unknown file type", 1, true))
  end)

  it("splits files into blocks at line boundaries", function ()
    local ddf = dd.read_csv(dir .. "/*.csv", {blocksize = 10000})
    assert.is_true(ddf.npartitions > 3)
    assert.equal(4500, ddf:count(SYNC))
    same_frames(ddf:compute(SYNC), whole())
  end)

  it("aggregates by group as a tree, equal to the in-memory frame",
    function ()
    local ddf = dd.read_csv(dir .. "/*.csv", {blocksize = 8000})
    local r = ddf:groupby("key"):agg(SPEC, {split_every = 2}):compute(SYNC)
    same_frames(r, whole():groupby("key"):agg(SPEC))
  end)

  it("filters per partition and reads only the first block for head",
    function ()
    local ddf = dd.read_csv(dir .. "/*.csv", {blocksize = 8000})
    local all = whole()
    assert.equal(#all:filter(all.x:gt(0.5)),
      ddf:filter(function (df) return df.x:gt(0.5) end):count(SYNC))
    assert.same(all:head(3):totable(), ddf:head(3, SYNC):totable())
    local f = dd.from_frame(all, 4)
    assert.equal(4, f.npartitions)
    assert.equal(4500, f:count(SYNC))
    assert.equal(4500, #f) -- computed, as Dask's len(ddf); was 0
  end)

  it("assigns columns per partition, counts values and describes, as the "
      .. "in-memory frame does", function ()
    local ddf = dd.read_csv(dir .. "/*.csv", {blocksize = 8000})
    local all = whole()
    assert.is_true(ddf.npartitions > 2)
    -- assign: functions of the partition, and numbers
    local k = 3
    local a = ddf:assign{z = function (df) return df.x * k end, one = 1}
    local want = all:assign{z = all.x * k, one = 1}
    assert.same(want:columns(), a.names)
    assert.same(want:totable(), a:compute(SYNC):totable())
    -- the in-memory frame takes functions too (pandas' callables)
    assert.same(want:totable(),
      all:assign{z = function (df) return df.x * k end, one = 1}:totable())
    -- value_counts: partial counts summed, same order
    assert.same(all:value_counts("key"):totable(),
      ddf:value_counts("key", SYNC):totable())
    -- describe: one summary per partition, combined
    local d1, d2 = all:describe(), ddf:describe(SYNC)
    assert.same(d1:columns(), d2:columns())
    for _, n in ipairs(d1:columns()) do
      if n ~= "stat" then
        for i = 1, 5 do
          local u, v = d1:col(n):get(i), d2:col(n):get(i)
          assert.is_true(math.abs(u - v) <= 1e-9 * math.max(1, math.abs(u)),
            ("%s %d: %.17g vs %.17g"):format(n, i, u, v))
        end
      end
    end
    -- bad arguments, at the caller's line
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, e = pcall(function () local r = ddf:assign{z = "x"}; return r end)
    assert.is_false(ok)
    assert.matches("dataframe_spec.lua:" .. line .. ": .*assign: column 'z' "
      .. "must be a function", e)
    -- ddf.x (a lazy Series in Dask) says what to use instead of nil
    line = debug.getinfo(1, "l").currentline + 1
    ok, e = pcall(function () local r = ddf.x; return r end)
    assert.is_false(ok)
    assert.matches("dataframe_spec.lua:" .. line .. ": .*ddf%.x: a "
      .. "partitioned frame has no column objects; use ddf:select", e)
    assert.is_nil(ddf.no_such_field)
    line = debug.getinfo(1, "l").currentline + 1
    ok, e = pcall(function () local r = ddf:value_counts("nope"); return r end)
    assert.is_false(ok)
    assert.matches("dataframe_spec.lua:" .. line .. ": .*value_counts: no "
      .. "column 'nope' %(columns: ", e)
  end)

  it("gives map_partitions the columns its function makes", function ()
    local ddf = dd.read_csv(dir .. "/*.csv", {blocksize = 8000})
    -- inferred: f runs on an empty frame of the input's columns
    local m = ddf:map_partitions(function (df)
      return df:assign{z = df.x * 2}:select{"key", "z"}
    end)
    assert.same({"key", "z"}, m.names)
    assert.truthy(tostring(m):find("columns: key, z;", 1, true))
    local ok, err = pcall(m.select, m, {"x"}) -- dropped by f
    assert.is_false(ok)
    assert.truthy(err:find("no column 'x' (columns: 'key', 'z')", 1, true))
    local z = m:select{"z"}:compute(SYNC)
    local all = whole()
    assert.equal(#all, #z)
    assert.near(all.x:sum() * 2, z.z:sum(), 1e-9)
    assert.same({"key", "z"}, m:groupby("key"):agg{z = "sum"}
      :compute(SYNC):columns())
    -- meta = names or a frame; a function that fails on an empty frame
    -- leaves the columns unknown until computed
    local f = function (df) return df:select{"id"} end
    assert.same({"id"}, ddf:map_partitions(f, {meta = {"id"}}).names)
    assert.same({"id"}, ddf:map_partitions(f,
      {meta = frame.from_table({id = {1}}, {"id"})}).names)
    local picky = ddf:map_partitions(function (df)
      assert(#df > 0, "needs rows")
      return df:select{"id"}
    end)
    assert.is_nil(picky.names)
    assert.equal(4500, picky:count(SYNC))
    ok, err = pcall(function ()
      local r = ddf:map_partitions(f, {meta = 3})
      return r
    end)
    assert.is_false(ok)
    assert.truthy(err:find("meta must be a frame or an array of column "
      .. "names", 1, true))
    assert.truthy(err:find("dataframe_spec.lua", 1, true))
  end)

  it("keeps int64 aggregations int64 and exact through the tree",
    function ()
    local p = dir .. "/big.ints"
    local t, B = {"k,v\n"}, 1 << 53
    for i = 1, 3000 do t[#t + 1] = ("g%d,%d\n"):format(i % 3, B + i) end
    spit(p, table.concat(t))
    local ddf = dd.read_csv(p, {blocksize = 9000})
    assert.is_true(ddf.npartitions > 4)
    local r = ddf:groupby("k"):agg({v = {"sum", "min", "max", "first",
      "last"}}, {split_every = 2}):compute(SYNC)
    local e = frame.read_csv(p):groupby("k"):agg{v = {"sum", "min", "max",
      "first", "last"}}
    assert.same(e:totable(), r:totable())
    assert.equal("int64", r:dtypes().v_sum)
    local row = r:totable()[1] -- g0: i = 3, 6, ..., 3000
    assert.equal(1000 * B + 3 * 1000 * 1001 // 2, row.v_sum)
    assert.equal(B + 3, row.v_min)
    assert.equal(B + 3000, row.v_max)
    os.remove(p)
  end)

  it("names the file's own line for a mismatch in a later block", function ()
    local p = dir .. "/bad.csv"
    local t = {"a,b\n"}
    for i = 1, 2000 do t[#t + 1] = i .. "," .. i .. "\n" end
    t[#t + 1] = "2001,oops\n"
    spit(p, table.concat(t))
    local ddf = dd.read_csv(p, {blocksize = 4000})
    local ok, err = pcall(ddf.compute, ddf, SYNC)
    assert.is_false(ok)
    assert.truthy(err:find(p .. ":2002:2: expected int64, got \"oops\"", 1,
      true), err)
    os.remove(p)
  end)

  it("rejects bad input clearly", function ()
    local ok, err = pcall(function () local d = dd.read_csv(dir .. "/none*.csv"); return d end)
    assert.truthy(err:find("no files match", 1, true))
    assert.truthy(err:find("dataframe_spec.lua", 1, true))
    spit(dir .. "/empty.csv.x", "")
    ok, err = pcall(dd.read_csv, dir .. "/empty.csv.x")
    assert.truthy(err:find("empty file", 1, true))
    os.remove(dir .. "/empty.csv.x")
    local ddf = dd.read_csv(dir .. "/*.csv")
    ok, err = pcall(ddf.groupby, ddf, "nope")
    assert.truthy(err:find("no column 'nope' (columns: 'id', 'key', 'x', 'y')",
      1, true))
    ok, err = pcall(function () local g = ddf:groupby("key"); return g:agg{x = "median"} end)
    assert.truthy(err:find("'median' is not supported on a partitioned frame", 1, true))
    ok, err = pcall(dd.read_csv, dir .. "/*.csv", {blocksze = 1})
    assert.truthy(err:find("unknown option 'blocksze'", 1, true))
  end)
end)

-- Rows as sorted strings: frames equal up to row order.
local function canon(df)
  local names, rows = df:columns(), {}
  for i, r in ipairs(df:totable()) do
    local p = {}
    for j, n in ipairs(names) do
      local v = r[n]
      p[j] = math.type(v) == "float" and ("%.12g"):format(v) or tostring(v)
    end
    rows[i] = table.concat(p, "|")
  end
  table.sort(rows)
  return rows
end

local function left_right()
  math.randomseed(9)
  local a = {id = {}, key = {}, x = {}}
  for i = 1, 2000 do
    a.id[i] = i
    a.key[i] = "k" .. math.random(1, 60)
    a.x[i] = math.random(1, 1000) / 8
  end
  local b = {key = {}, w = {}}
  for i = 1, 50 do b.key[i] = "k" .. (i + 20) b.w[i] = i end
  return frame.from_table(a, {"id", "key", "x"}),
    frame.from_table(b, {"key", "w"})
end

local function check_sorted(r, e, col)
  assert.same(canon(e), canon(r))
  local a, b = r:column_table(col), e:column_table(col)
  assert.same(b, a) -- the key column in exactly the frame's order
end

local function shuffles(o)
  local A, B = left_right()
  local ddl = dd.from_frame(A, 5)
  for _, how in ipairs{"inner", "left", "outer"} do
    local e = A:merge(B, {on = "key", how = how})
    -- hash-partitioned on both sides
    local r = ddl:merge(dd.from_frame(B, 3), {on = "key", how = how})
    assert.equal(5, r.npartitions)
    assert.same(canon(e), canon(r:compute(o)))
    -- an in-memory right side (broadcast, or hashed for outer)
    assert.same(canon(e), canon(ddl:merge(B, {on = "key", how = how})
      :compute(o)))
  end
  local s = ddl:sort_values("x", {client = o.client, scheduler = o.scheduler})
  check_sorted(s:compute(o), A:sort_values{by = "x"}, "x")
  s = ddl:sort_values("key", {ascending = false, npartitions = 3,
    client = o.client, scheduler = o.scheduler})
  check_sorted(s:compute(o), A:sort_values{by = "key", ascending = false},
    "key")
  local si = ddl:set_index("x", {client = o.client, scheduler = o.scheduler})
  assert.equal("x", si.index)
  assert.equal(si.npartitions + 1, #si.divisions)
  assert.equal(A.x:min(), si.divisions[1])
  assert.equal(A.x:max(), si.divisions[#si.divisions])
  local parts = {}
  for j = 1, si.npartitions do
    local lo, hi = si.divisions[j], si.divisions[j + 1]
    local p = si:loc(lo, lo):compute(o) -- one partition holds lo
    assert.is_true(#p > 0)
    parts[j] = {lo, hi}
  end
  local l = si:loc(40, 60)
  assert.is_true(l.npartitions < si.npartitions)
  assert.same(canon(A:filter(A.x:ge(40) & A.x:le(60))), canon(l:compute(o)))
  return parts
end

describe("dlua.dataframe shuffles", function ()
  it("merges, sorts and sets an index equal to the in-memory frame",
    function ()
    shuffles(SYNC)
  end)

  it("puts every division's rows in its partition", function ()
    local A = left_right()
    local si = dd.from_frame(A, 4):set_index("id", SYNC)
    local dv = si.divisions
    for j = 1, si.npartitions do
      local part = si:loc(dv[j], dv[j + 1]):compute(SYNC)
      for _, v in ipairs(part:column_table("id")) do
        assert.is_true(v >= dv[j] and v <= dv[j + 1])
      end
    end
    assert.equal(2000, si:count(SYNC))
  end)

  it("rejects bad merge and sort arguments clearly", function ()
    local A, B = left_right()
    local ddl = dd.from_frame(A, 2)
    local ok, err = pcall(function ()
      local r = ddl:merge(B, {on = "nope"}) -- not a tail call: keeps the line
      return r
    end)
    assert.is_false(ok)
    assert.truthy(err:find("no column 'nope'", 1, true), err)
    assert.truthy(err:find("dataframe_spec.lua", 1, true))
    ok, err = pcall(ddl.merge, ddl, B, {on = "key", how = "cross"})
    assert.truthy(err:find("how must be", 1, true))
    ok, err = pcall(ddl.merge, ddl, B, {on = "key", hw = "left"})
    assert.truthy(err:find("unknown option 'hw'", 1, true))
    ok, err = pcall(ddl.sort_values, ddl, {"x", "id"})
    assert.truthy(err:find("one sort key", 1, true), err)
    ok, err = pcall(ddl.loc, ddl, 1, 2)
    assert.truthy(err:find("set_index", 1, true))
    local num = frame.from_table({key = {1, 2}, w = {1, 2}}, {"key", "w"})
    ok, err = pcall(function ()
      return ddl:merge(num, {on = "key"}):compute(SYNC)
    end)
    assert.is_false(ok)
    assert.truthy(err:find("is string on the left and int64 on the right", 1,
      true), err)
  end)
end)

-- x: floats with missing; k: strings with missing; n: int64 (1..12)
local function gaps()
  return frame.from_table({
    x = {1.0, nil, 3.0, 3.0, nil, 0.5, 7.0, 3.0, nil, 1.0, 2.0, 0.5, n = 12},
    k = {"a", false, "b", "a", false, "c", "a", "b", "d", false, "c", "a"},
    n = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}}, {"x", "k", "n"})
end

-- The same rows in the same order (missing values as nil).
local function same_table(a, b)
  assert.same(b:columns(), a:columns())
  assert.same(b:totable(), a:totable())
end

-- pandas' methods on a partitioned frame against the in-memory frame's
local function pandas_methods(o)
  local df = gaps()
  for _, np in ipairs{1, 3, 5} do
    local ddf = dd.from_frame(df, np)
    same_table(ddf:drop{"x"}:compute(o), df:drop{"x"})
    same_table(ddf:rename{x = "y"}:compute(o), df:rename{x = "y"})
    same_table(ddf:rename(function (n) return n .. "_1" end):compute(o),
      df:rename(function (n) return n .. "_1" end))
    same_table(ddf:fillna{x = 0, k = "z"}:compute(o), df:fillna{x = 0, k = "z"})
    same_table(ddf:dropna{subset = "k"}:compute(o), df:dropna{subset = "k"})
    same_table(ddf:isin{k = {"a", "c"}, x = {3}}:compute(o),
      df:isin{k = {"a", "c"}, x = {3}})
    for _, keep in ipairs{"first", "last", false} do
      for _, sub in ipairs{"k", "x", {"k", "x"}} do
        for _, every in ipairs{2, 8} do
          same_table(ddf:drop_duplicates{subset = sub, keep = keep,
            split_every = every}:compute(o),
            df:drop_duplicates{subset = sub, keep = keep})
        end
      end
    end
    same_table(ddf:drop_duplicates():compute(o), df:drop_duplicates())
    for _, n in ipairs{0, 1, 3, 9, 20} do
      same_table(ddf:nlargest(n, "x"):compute(o), df:nlargest(n, "x"))
      same_table(ddf:nsmallest(n, {"x", "n"}, {split_every = 2}):compute(o),
        df:nsmallest(n, {"x", "n"}))
    end
  end
end

describe("dlua.dataframe's pandas methods", function ()
  it("drop, rename, fillna, dropna, isin per partition; drop_duplicates, "
     .. "nlargest, nsmallest reduce to one partition as the frame's",
     function ()
    pandas_methods(SYNC)
    local ddf = dd.from_frame(gaps(), 4)
    assert.same({"k", "n"}, ddf:drop("x").names)
    assert.same({"y", "k", "n"}, ddf:rename{x = "y", zz = "q"}.names)
    assert.equal(1, ddf:drop_duplicates("k").npartitions)
    assert.equal(1, ddf:nlargest(2, "n").npartitions)
    assert.same({"x", "k", "n"}, ddf:nlargest(2, "n").names)
    -- columns unknown (after an aggregation): checked once computed
    local g = ddf:groupby("k"):agg{n = "sum", x = "max"}
    same_table(g:drop_duplicates("x"):compute(SYNC),
      g:compute(SYNC):drop_duplicates("x"))
    same_table(g:nsmallest(2, "n"):compute(SYNC),
      g:compute(SYNC):nsmallest(2, "n"))
    local ok, err = pcall(function ()
      return g:nlargest(1, "zz"):compute(SYNC)
    end)
    assert.is_false(ok)
    assert.truthy(err:find("no column 'zz'", 1, true), err)
  end)

  it("checks the arguments at the caller's line", function ()
    local ddf = dd.from_frame(gaps(), 2)
    -- (not tail calls: a tail call leaves no line of the caller's)
    local cases = {
      {function () local r = ddf:drop("zz") return r end,
        "dlua.dataframe: no column 'zz'"},
      {function () local r = ddf:drop{1} return r end,
        "drop: cols[1] is a number"},
      {function () local r = ddf:rename(3) return r end,
        "rename: expects a table"},
      {function () local r = ddf:rename({x = "y"}, {errors = "x"}) return r end,
        "errors must be \"raise\" or \"ignore\""},
      {function () local r = ddf:fillna(true) return r end,
        "fillna: expects a number"},
      {function () local r = ddf:fillna{x = {}} return r end,
        "the value for 'x' must be a number"},
      {function () local r = ddf:dropna{how = "x"} return r end,
        "dropna: how must be"},
      {function () local r = ddf:isin(1) return r end,
        "isin: expects an array"},
      {function () local r = ddf:drop_duplicates{keep = "x"} return r end,
        "keep must be \"first\""},
      {function () local r = ddf:drop_duplicates{split_every = 1} return r end,
        "split_every must be an integer of at least 2"},
      {function () local r = ddf:drop_duplicates{subset = "zz"} return r end,
        "no column 'zz'"},
      {function () local r = ddf:nlargest(1.5, "x") return r end,
        "nlargest: n must be an integer, got 1.5"},
      {function () local r = ddf:nsmallest(1, "x", {bogus = 1}) return r end,
        "nsmallest: unknown option 'bogus'"},
    }
    for i, c in ipairs(cases) do
      local line = debug.getinfo(c[1], "S").linedefined
      local ok, err = pcall(c[1])
      assert.is_false(ok, "case " .. i)
      assert.truthy(err:find("dataframe_spec.lua:" .. line
        .. ": dlua.dataframe: ", 1, true), err)
      assert.truthy(err:find(c[2], 1, true), err)
    end
  end)
end)

describe("dlua.dataframe on a cluster", function ()
  local client, dir
  setup(function ()
    client = dlua.Client{n_workers = 2}
    dir = tmpdir()
    make_files(dir, 2, 2000)
  end)
  teardown(function ()
    if client then client:close() end
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("reads blocks and aggregates on the workers", function ()
    local ddf = dd.read_csv(dir .. "/*.csv", {blocksize = 10000})
    local o = {client = client}
    local r = ddf:groupby("key"):agg(SPEC):compute(o)
    local e = frame.concat{frame.read_csv(dir .. "/p1.csv"),
      frame.read_csv(dir .. "/p2.csv")}:groupby("key"):agg(SPEC)
    same_frames(r, e)
    -- nunique's distinct rows and the string dicts travel between workers
    local by2 = dd.read_csv(dir .. "/*.csv", {blocksize = 10000})
    local U = {y = {"nunique", "sum"}, x = "count"}
    same_frames(by2:groupby("y"):agg{key = {"nunique", "min", "max"}}
      :compute(o), frame.concat{frame.read_csv(dir .. "/p1.csv"),
      frame.read_csv(dir .. "/p2.csv")}:groupby("y"):agg{key = {"nunique",
      "min", "max"}})
    same_frames(by2:groupby("key"):agg(U):compute(o), frame.concat{
      frame.read_csv(dir .. "/p1.csv"), frame.read_csv(dir .. "/p2.csv")}
      :groupby("key"):agg(U))
    local B = 1 << 53
    local big = dd.from_frame(frame.from_table({k = {"a", "b", "a", "b"},
      v = {B + 1, B + 2, B + 3, B + 5}}, {"k", "v"}), 2)
    local s = big:groupby("k"):agg{v = {"sum", "max"}}:compute(o):totable()
    assert.same({{k = "a", v_sum = 2 * B + 4, v_max = B + 3},
      {k = "b", v_sum = 2 * B + 7, v_max = B + 5}}, s)
    assert.equal("integer", math.type(s[1].v_sum))
    -- persist: the partitions stay on the workers; the files can go
    local pdir = tmpdir()
    make_files(pdir, 2, 800)
    local src = dd.read_csv(pdir .. "/*.csv", {blocksize = 8000})
    local want = src:groupby("key"):agg(SPEC):compute(o)
    local held = src:filter(function (df) return df.x:ge(0) end):persist(o)
    assert.equal(src.npartitions, held.npartitions)
    -- persist returns at once, as Dask's does: wait for the partitions to
    -- be read before the files go
    local futs = {}
    for _, layer in pairs(held.layers) do
      for _, t in pairs(layer) do futs[#futs + 1] = t end
    end
    assert.equal(#futs, #dlua.wait(futs, {timeout = 120}))
    os.execute("rm -rf '" .. pdir .. "'")
    same_frames(held:groupby("key"):agg(SPEC):compute(o), want)
    assert.equal(1600, held:count(o))
    local n = 0
    for _, layer in pairs(held.layers) do
      for _, t in pairs(layer) do
        assert.is_true(dlua.is_future(t)) -- no task left to read the files
        n = n + 1
      end
    end
    assert.equal(held.npartitions, n)
    shuffles(o) -- merge, sort_values, set_index through the workers
    pandas_methods(o) -- drop_duplicates, nlargest, ... on the workers
    local paths = ddf:to_csv(dir .. "/out/part-*.csv", o)
    assert.equal(ddf.npartitions, #paths)
    local back = dd.read_csv(dir .. "/out/part-*.csv")
    assert.equal(4000, back:count(o))
  end)
end)

describe("dlua.dataframe as a Dask user types it", function()
  it("prints its structure without computing, and groupby():sum() and the "
     .. "other names aggregate every other column", function()
    local dir = tmpdir()
    spit(dir .. "/t.csv", "a,b,c\n1,x,2.5\n2,y,3.5\n3,x,4.5\n")
    local ddf = dd.read_csv(dir .. "/t.csv")
    assert.matches("^dlua%.dataframe<read_csv%-[%x]+, npartitions=1, "
      .. "columns: a, b, c; 1 graph layer>$", tostring(ddf))
    local s = ddf:groupby("b"):sum():compute(SYNC):totable()
    assert.same({{b = "x", a = 4, c = 7.0}, {b = "y", a = 2, c = 3.5}}, s)
    local m = ddf:groupby("b"):mean():compute(SYNC):totable()
    assert.same({{b = "x", a = 2.0, c = 3.5}, {b = "y", a = 2.0, c = 3.5}}, m)
    local g = ddf:groupby("b"):agg{c = "sum"}
    assert.matches("columns: %(known once computed%)", tostring(g))
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, e = pcall(function() local r = g:groupby("b"):sum() return r end)
    assert.is_false(ok)
    assert.matches("dataframe_spec.lua:" .. line .. ": dlua.dataframe: "
      .. "groupby%(%):sum: this dataframe's columns are not known", e)
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)

-- Specs for dlua.frame: the in-memory data frame (columns, missing values,
-- select/filter/assign, group-by, merge, concat, sort, printing), the C CSV
-- reader's types and errors, and CSV round trips.
local frame = require "dlua.frame"

local function spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function sample()
  return frame.from_table{
    {key = "a", x = 1.5, n = 1}, {key = "b", x = 2.5, n = 2},
    {key = "a", x = 3.0, n = 3}, {key = "c", n = 4}}
end

describe("dlua.frame", function ()
  it("builds from rows and columns, with missing values as nil", function ()
    local df = sample()
    assert.equal(4, #df)
    assert.equal(4, df:count())
    assert.same({"key", "n", "x"}, df:columns())
    assert.same({key = "string", n = "int64", x = "float64"}, df:dtypes())
    local rows = df:totable()
    assert.same({key = "c", n = 4}, rows[4])
    assert.is_nil(rows[4].x)
    local c = frame.from_table({k = {"p", "q"}, v = {1, 2}}, {"k", "v"})
    assert.same({{k = "p", v = 1}, {k = "q", v = 2}}, c:totable())
    assert.equal(2.5, df.x:get(2))
    assert.equal("a", df["key"][1])
  end)

  it("selects, filters by a bool column and assigns", function ()
    local df = sample()
    local f = df:filter(df.n:gt(1))
    assert.same({2, 3, 4}, f:column_table("n"))
    local a = df:assign{z = df.n * 2}
    assert.same({2, 4, 6, 8}, a:column_table("z"))
    assert.same({"n"}, df:select{"n"}:columns())
    assert.same({1, 2}, df:head(2):column_table("n"))
    assert.same({3, 4}, df:tail(2):column_table("n"))
  end)

  it("aggregates by group like pandas", function ()
    local df = sample()
    local r = df:groupby("key"):agg{x = "mean", n = {"sum", "max", "count",
      "std", "nunique", "first", "last", "var", "min"}}
    local t = r:totable()
    assert.equal(3, #t)
    assert.same({"a", "b", "c"}, r:column_table("key"))
    assert.equal(2.25, t[1].x)
    assert.is_nil(t[3].x) -- all missing: NaN
    assert.equal(4, t[1].n_sum)
    assert.equal(2, t[1].n_count)
    assert.near(math.sqrt(2), t[1].n_std, 1e-12)
    assert.equal(2, t[1].n_var)
    assert.equal(2, t[1].n_nunique)
    assert.equal(1, t[1].n_first)
    assert.equal(3, t[1].n_last)
    assert.is_nil(t[2].n_std) -- one value: NaN, as pandas
    local two = df:groupby{"key", "n"}:agg{x = "count"}
    assert.equal(4, #two)
  end)

  it("keeps int64 sums, minima and maxima int64, exact past 2^53",
    function ()
    local B = 1 << 53
    local df = frame.from_table({k = {"a", "a", "b", "b", "b"},
      v = {B + 1, B + 3, -B - 1, 7, B + 5}, t = {true, true, false, true,
      false}}, {"k", "v", "t"})
    local r = df:groupby("k"):agg{v = {"sum", "min", "max", "first", "last",
      "nunique"}, t = "sum"}
    local row = r:totable()
    assert.equal("int64", r:dtypes().v_sum)
    assert.equal(2 * B + 4, row[1].v_sum)
    assert.equal("integer", math.type(row[1].v_sum))
    assert.equal(B + 1, row[1].v_min)
    assert.equal(B + 3, row[1].v_max)
    assert.equal(11, row[2].v_sum)
    assert.equal(-B - 1, row[2].v_min)
    assert.equal(B + 5, row[2].v_max)
    assert.equal(-B - 1, row[2].v_first)
    assert.equal(B + 5, row[2].v_last)
    assert.equal("int64", r:dtypes().v_nunique)
    assert.equal("int64", r:dtypes().t)
    assert.equal(2, row[1].t)
    assert.equal(1, row[2].t)
    -- the CSV reader keeps them exact too
    local p = os.tmpname()
    spit(p, "k,v\na,9007199254740993\na,9007199254740995\n")
    local s = frame.read_csv(p):groupby("k"):sum():totable()
    assert.equal(18014398509481988, s[1].v)
    os.remove(p)
  end)

  it("counts values, sorts and describes", function ()
    local df = sample()
    local vc = df:value_counts("key")
    assert.same({"a", "b", "c"}, vc:column_table("key"))
    assert.same({2, 1, 1}, vc:column_table("count"))
    local s = df:sort_values{by = "x", ascending = false}
    assert.same({3, 2, 1, 4}, s:column_table("n")) -- missing last
    local d = df:describe():totable()
    assert.equal(4, d[1].n)
    assert.equal(2.5, d[2].n)
  end)

  it("merges inner, left and outer, and concatenates", function ()
    local df = sample()
    local o = frame.from_table({key = {"a", "c", "d"}, w = {10, 20, 30}},
      {"key", "w"})
    assert.equal(3, #df:merge(o, {on = "key"}))
    assert.equal(4, #df:merge(o, {on = "key", how = "left"}))
    local out = df:merge(o, {on = "key", how = "outer"})
    assert.equal(5, #out)
    assert.same({key = "d", w = 30}, out:totable()[5])
    assert.equal(8, #frame.concat{df, df})
    local num = frame.from_table({key = {1, 2}}, {"key"})
    assert.has_error(function () df:merge(num, {on = "key"}) end,
      "dlua.frame: merge: column 'key' is string on the left and int64 on "
      .. "the right")
  end)

  it("merges like a nested-loop join, on mixed int64/float64 and two keys",
    function ()
    math.randomseed(5)
    local a, b = {id = {}, k = {}, v = {}}, {id = {}, k = {}, w = {}}
    for i = 1, 300 do
      a.id[i] = math.random(1, 40)
      a.k[i] = math.random(1, 6) == 1 and false or "s" .. math.random(1, 3)
      a.v[i] = i
    end
    for i = 1, 80 do
      b.id[i] = math.random(1, 60) + 0.0 -- float64 keys meet int64 ones
      b.k[i] = "s" .. math.random(1, 3)
      b.w[i] = -i
    end
    a.k.n = 300
    local A = frame.from_table(a, {"id", "k", "v"})
    local B = frame.from_table(b, {"id", "k", "w"})
    for _, how in ipairs{"inner", "left", "outer"} do
      local want, hitb = {}, {}
      for i = 1, 300 do
        local any = false
        for j = 1, 80 do
          if a.k[i] and a.id[i] == b.id[j] and a.k[i] == b.k[j] then
            want[#want + 1] = ("%d|%d"):format(a.v[i], b.w[j])
            any, hitb[j] = true, true
          end
        end
        if not any and how ~= "inner" then
          want[#want + 1] = ("%d|nil"):format(a.v[i])
        end
      end
      if how == "outer" then
        for j = 1, 80 do
          if not hitb[j] then want[#want + 1] = ("nil|%d"):format(b.w[j]) end
        end
      end
      local got = {}
      local m = A:merge(B, {on = {"id", "k"}, how = how})
      for i, r in ipairs(m:totable()) do
        got[i] = ("%s|%s"):format(r.v and ("%d"):format(r.v) or "nil",
          r.w and ("%d"):format(r.w) or "nil")
      end
      assert.same(want, got) -- left rows in order, matches in right order
    end
    local o = A:merge(B, {on = "id", how = "outer"})
    for _, r in ipairs(o:totable()) do assert.is_not_nil(r.id) end
  end)

  it("sorts a numeric column in C: stable, descending, missing last",
    function ()
    local df = frame.from_table({x = {3, 0/0, 1, 3, 2, 0/0, 1},
      i = {1, 2, 3, 4, 5, 6, 7}}, {"x", "i"})
    assert.same({3, 7, 5, 1, 4, 2, 6},
      df:sort_values{by = "x"}:column_table("i"))
    assert.same({1, 4, 5, 3, 7, 2, 6},
      df:sort_values{by = "x", ascending = false}:column_table("i"))
    local B = 1 << 53
    local big = frame.from_table({v = {B + 3, B + 1, B + 2}}, {"v"})
    assert.same({B + 1, B + 2, B + 3}, big:sort_values("v"):column_table("v"))
  end)

  it("prints an aligned table, elided in the middle when long", function ()
    local s = tostring(sample())
    assert.truthy(s:find("   key  n    x\n0    a  1  1.5", 1, true))
    assert.truthy(s:find("[4 rows x 3 columns]", 1, true))
    local vals = {}
    for i = 0, 99 do vals[#vals + 1] = i end
    local big = frame.from_table({v = vals}, {"v"})
    local b = tostring(big)
    assert.truthy(b:find("...", 1, true))
    assert.truthy(b:find("\n99%s+99\n"))
    assert.falsy(b:find("\n50%s"))
  end)

  it("reads and writes CSV: BOM, CRLF, quoted newline, no final newline",
    function ()
    local p = os.tmpname()
    spit(p, "\xEF\xBB\xBFid,key,x,s\r\n1,a,1.5,\"he,\nllo\"\r\n2,b,,x\r\n3,a,"
      .. "2.5,y")
    local df = frame.read_csv(p)
    assert.same({id = "int64", key = "string", x = "float64", s = "string"},
      df:dtypes())
    assert.equal("he,\nllo", df.s[1])
    assert.is_nil(df:totable()[2].x)
    df:to_csv(p)
    local back = frame.read_csv(p)
    assert.same(df:totable(), back:totable())
    os.remove(p)
  end)

  it("names file:line:column and the type of a mismatch", function ()
    local p = os.tmpname()
    spit(p, "id,v\n1,2\n2,x\n")
    local ok, err = pcall(function()
      local df = frame.read_csv(p, {types = {v = "int64"}}) -- the caller
      return df
    end)
    assert.is_false(ok)
    assert.truthy(err:find(p .. ":3:2: expected int64, got \"x\"", 1, true))
    assert.truthy(err:find("frame_spec.lua", 1, true)) -- the caller's line
    local df = frame.read_csv(p, {types = {v = "int64"}, on_error = "null"})
    assert.equal(1, df:nerrors())
    assert.is_nil(df:totable()[2].v)
    -- the file's line, past a blank line and a quoted newline
    spit(p, "id,s,v\n\n1,\"a\nb\",2\n2,c,x\n")
    ok, err = pcall(frame.read_csv, p, {types = {v = "int64"}})
    assert.truthy(err:find(p .. ":5:3: expected int64, got \"x\"", 1, true))
    spit(p, "a,b\n1,2\n3\n")
    assert.has_error(function () frame.read_csv(p) end)
    ok, err = pcall(frame.read_csv, p)
    assert.truthy(err:find("expected 2 fields, got 1", 1, true))
    spit(p, "")
    ok, err = pcall(frame.read_csv, p)
    assert.truthy(err:find("empty file", 1, true))
    spit(p, "a,a\n1,2\n")
    ok, err = pcall(frame.read_csv, p)
    assert.truthy(err:find("duplicate column name \"a\"", 1, true))
    spit(p, "a,b\n1,\"2\n")
    ok, err = pcall(frame.read_csv, p)
    assert.truthy(err:find("unterminated", 1, true))
    os.remove(p)
  end)

  it("reads a big file on several threads as on one", function ()
    -- ~5 MB: cut into chunks of 1 MiB or more at LFs; blank lines, CRLF,
    -- missing values, strings and on_error = "null" in every chunk
    local p = os.tmpname()
    local rows, n = {"id,key,x,b,s"}, 60000
    for i = 1, n do
      local x = i % 97 == 0 and "" or ("%.17g"):format(i / 7)
      local v = i % 1013 == 0 and "oops" or tostring(i)
      rows[#rows + 1] = ("%s,k%d,%s,%s,%s%s"):format(v, i % 37, x,
        i % 3 == 0 and "true" or "false", ("s"):rep(i % 40),
        i % 5 == 0 and "\r" or "")
      if i % 4999 == 0 then rows[#rows + 1] = "" end
    end
    spit(p, table.concat(rows, "\n") .. "\n")
    local o = {types = {id = "int64"}, on_error = "null"}
    local function read(threads)
      o.threads = threads
      return frame.read_csv(p, o)
    end
    local one, four = read(1), read(4)
    assert.equal(n, #one)
    assert.equal(n // 1013, one:nerrors())
    assert.equal(one:nerrors(), four:nerrors())
    assert.same(one:dtypes(), four:dtypes())
    assert.same(one:totable(), four:totable())
    assert.equal(4, four.id:get(4))
    assert.is_nil(four:totable()[1013].id)
    -- an error past the first chunk names the line a single pass names
    -- (the file's line: blank lines count)
    rows[50000] = "x,y"
    spit(p, table.concat(rows, "\n") .. "\n")
    local ok1, e1 = pcall(read, 1)
    local ok4, e4 = pcall(read, 4)
    assert.is_false(ok1)
    assert.is_false(ok4)
    assert.equal(e1:gsub("^.-:%d+: ", ""), e4:gsub("^.-:%d+: ", ""))
    assert.truthy(e4:find(":50000: expected 5 fields, got 2", 1, true))
    local ok, err = pcall(function()
      local df = frame.read_csv(p, {threads = 0}) -- the line named
      return df
    end)
    assert.is_false(ok)
    assert.matches("^[^:]*frame_spec%.lua:%d+: dlua%.frame: read_csv: "
      .. "threads must be a positive integer", err)
    os.remove(p)
  end)

  it("reports bad arguments clearly", function ()
    local df = sample()
    local ok, err = pcall(df.groupby, df, "nope")
    assert.is_false(ok)
    assert.truthy(err:find("no column 'nope' (columns: 'key', 'n', 'x')", 1,
      true))
    ok, err = pcall(function () local g = df:groupby("key"); g:agg{x = "median"} end)
    assert.truthy(err:find("unknown aggregation 'median'", 1, true))
    ok, err = pcall(function () local r = df:filter(df.n); return r end)
    assert.truthy(err:find("expects a bool column", 1, true))
    ok, err = pcall(function () local r = frame.concat{df, df:select{"n"}}; return r end)
    assert.truthy(err:find("concat: frame 2 has columns", 1, true))
  end)

  -- x: floats with missing; k: strings with missing; n, i: int64
  local function gaps()
    return frame.from_table({x = {1.0, nil, 3.0, 3.0, nil, 0.5, n = 6},
      k = {"a", false, "b", "a", false, "c"}, n = {1, 2, 3, 4, 5, 6},
      i = {5, 5, 1, 1, 2, 2}}, {"x", "k", "n", "i"})
  end
  local function col(df, name) return df:column_table(name) end
  local function ns(df) return col(df, "n") end

  it("drops and renames columns as pandas (drop raises on an unknown name, "
     .. "rename ignores it)", function ()
    local df = gaps()
    assert.same({"k", "i"}, df:drop{"x", "n"}:columns())
    assert.same({"x", "k", "i"}, df:drop("n"):columns())
    assert.same({"x", "k", "n", "i"}, df:drop("zz", {errors = "ignore"})
      :columns())
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function () local r = df:drop{"x", "zz"} return r end)
    assert.is_false(ok)
    assert.matches("frame_spec.lua:" .. line .. ": dlua.frame: no column 'zz'",
      err)
    local r = df:rename{x = "y", zz = "q"}
    assert.same({"y", "k", "n", "i"}, r:columns())
    assert.same(col(df, "x"), col(r, "y"))
    assert.same({"X", "K", "N", "I"}, df:rename(string.upper):columns())
    ok, err = pcall(df.rename, df, {zz = "q"}, {errors = "raise"})
    assert.truthy(err:find("no column 'zz'", 1, true), err)
    ok, err = pcall(df.rename, df, {x = "k"})
    assert.truthy(err:find("two columns would be named 'k'", 1, true), err)
    ok, err = pcall(df.rename, df, {x = 3})
    assert.truthy(err:find("new name of 'x' must be a string", 1, true), err)
  end)

  it("fills missing values by type, or per column", function ()
    local df = gaps()
    local f = df:fillna(0)
    assert.same({1.0, 0.0, 3.0, 3.0, 0.0, 0.5}, col(f, "x"))
    -- a number fills no string column
    assert.same({"a", nil, "b", "a", nil, "c"}, col(f, "k"))
    assert.equal("float64", f:dtypes().x)
    f = df:fillna("z")
    assert.same({"a", "z", "b", "a", "z", "c"}, col(f, "k"))
    assert.same({1.0, nil, 3.0, 3.0, nil, 0.5}, col(f, "x"))
    assert.same({"a", false, "b", "a", false, "c"}, {df.k[1], df.k[2],
      df.k[3], df.k[4], df.k[5], df.k[6]}) -- the original's dict untouched
    f = df:fillna{x = 9, k = "a", zz = 1}
    assert.same({1.0, 9.0, 3.0, 3.0, 9.0, 0.5}, col(f, "x"))
    assert.same({"a", "a", "b", "a", "a", "c"}, col(f, "k"))
    assert.equal(#df.k.dict, #f.k.dict) -- "a" was already there
    local ok, err = pcall(df.fillna, df, {k = 1})
    assert.truthy(err:find("column 'k' is string, its fill value cannot be "
      .. "a number", 1, true), err)
    ok, err = pcall(df.fillna, df, true)
    assert.truthy(err:find("fillna: expects a number, a string or a table",
      1, true), err)
  end)

  it("drops rows with missing values (any, all, thresh, subset)", function ()
    local df = gaps()
    assert.same({1, 3, 4, 6}, ns(df:dropna()))
    assert.same({1, 3, 4, 6}, ns(df:dropna{how = "all", subset = {"x", "k"}}))
    assert.same({1, 2, 3, 4, 5, 6}, ns(df:dropna{how = "all"}))
    assert.same({1, 3, 4, 6}, ns(df:dropna{thresh = 4}))
    assert.same({1, 2, 3, 4, 5, 6}, ns(df:dropna{thresh = 2}))
    assert.same({1, 3, 4, 6}, ns(df:dropna{subset = "k"}))
    local ok, err = pcall(df.dropna, df, {how = "all", thresh = 1})
    assert.truthy(err:find("give how or thresh, not both", 1, true), err)
    ok, err = pcall(df.dropna, df, {how = "some"})
    assert.truthy(err:find("how must be \"any\" or \"all\"", 1, true), err)
    ok, err = pcall(df.dropna, df, {subset = {"x", "zz"}})
    assert.truthy(err:find("no column 'zz'", 1, true), err)
    ok, err = pcall(df.dropna, df, {sub = "x"})
    assert.truthy(err:find("unknown option 'sub'", 1, true), err)
  end)

  it("tells which values are among a list (isin), for masks", function ()
    local df = gaps()
    local m = df:isin{0/0, "a", 3}
    assert.same({"x", "k", "n", "i"}, m:columns())
    assert.same({false, true, true, true, true, false}, col(m, "x"))
    assert.same({true, false, false, true, false, false}, col(m, "k"))
    assert.same({false, false, true, false, false, false}, col(m, "n"))
    m = df:isin{k = {"a", "c"}, n = {2.0, 6}, zz = {1}}
    assert.same({true, false, false, true, false, true}, col(m, "k"))
    assert.same({false, true, false, false, false, true}, col(m, "n"))
    assert.same({false, false, false, false, false, false}, col(m, "x"))
    assert.same({1, 4, 6}, ns(df:filter(df:isin{k = {"a", "c"}}.k)))
    local b = frame.from_table{b = {true, false, true}}
    assert.same({true, false, true}, col(b:isin{1}, "b")) -- as pandas
    assert.same({true, true, false, false, false, false},
      col(df:isin{i = df.i:slice({1, 2})}, "i")) -- values from a column
    local ok, err = pcall(df.isin, df, "a")
    assert.truthy(err:find("isin: expects an array of values", 1, true), err)
    ok, err = pcall(df.isin, df, {k = "a"})
    assert.truthy(err:find("values must be an array", 1, true), err)
  end)

  it("drops duplicate rows, keeping the first, the last or none", function ()
    local df = gaps()
    assert.same({1, 2, 3, 6}, ns(df:drop_duplicates{subset = "k"}))
    assert.same({1, 2, 3, 6}, ns(df:drop_duplicates("k")))
    assert.same({1, 4, 5, 6}, ns(df:drop_duplicates{subset = {"x"},
      keep = "last"}))
    assert.same({1, 6}, ns(df:drop_duplicates{subset = "x", keep = false}))
    assert.same({1, 2, 3, 4, 6}, ns(df:drop_duplicates{"x", "k"}))
    assert.same({1, 2, 3, 4, 5, 6}, ns(df:drop_duplicates()))
    local d = frame.from_table({a = {1, 1, 2, 1}, b = {"p", "p", "p", "q"}},
      {"a", "b"})
    assert.same({{a = 1, b = "p"}, {a = 2, b = "p"}, {a = 1, b = "q"}},
      d:drop_duplicates():totable())
    assert.same({{a = 2, b = "p"}, {a = 1, b = "q"}},
      d:drop_duplicates{keep = false}:totable())
    assert.equal(0, #d:head(0):drop_duplicates())
    local ok, err = pcall(df.drop_duplicates, df, {keep = true})
    assert.truthy(err:find("keep must be \"first\", \"last\" or false", 1,
      true), err)
  end)

  it("takes the n largest and smallest rows as pandas (ties in row order, "
     .. "missing last)", function ()
    local df = gaps()
    assert.same({3, 4, 1}, ns(df:nlargest(3, "x")))
    assert.same({3, 4, 1, 6, 2}, ns(df:nlargest(5, "x")))
    assert.same({6, 1, 3, 4, 2}, ns(df:nsmallest(5, "x")))
    assert.same({1, 2, 5}, ns(df:nlargest(3, "i")))
    assert.same({3, 4, 5}, ns(df:nsmallest(3, "i")))
    assert.same({2, 1, 6}, ns(df:nlargest(3, {"i", "n"})))
    assert.same({}, ns(df:nlargest(-1, "x")))
    assert.same({6, 1, 3, 4, 2, 5}, ns(df:nsmallest(10, "x")))
    -- many ties on the first column: only the tied rows are sorted by the
    -- next ones, which must give what sorting every row gives
    math.randomseed(5)
    local a, b, id = {}, {}, {}
    for r = 1, 400 do
      a[r] = math.random(1, 6)
      b[r] = math.random(1, 9) == 1 and 0/0 or math.random(1, 30) + 0.0
      id[r] = r
    end
    local t = frame.from_table({a = a, b = b, id = id}, {"a", "b", "id"})
    for _, n in ipairs{1, 7, 60, 67, 200, 399} do
      assert.same(col(t:sort_values{by = {"a", "b"}, ascending = false}
        :head(n), "id"), col(t:nlargest(n, {"a", "b"}), "id"))
      assert.same(col(t:sort_values{by = {"b", "a"}}:head(n), "id"),
        col(t:nsmallest(n, {"b", "a"}), "id"))
    end
    local ok, err = pcall(df.nlargest, df, 2, "k")
    assert.truthy(err:find("nlargest: column 'k' is string; nlargest takes "
      .. "numeric columns", 1, true), err)
    ok, err = pcall(df.nsmallest, df, 2.5, "x")
    assert.truthy(err:find("nsmallest: n must be an integer, got 2.5", 1,
      true), err)
  end)
end)

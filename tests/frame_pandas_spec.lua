-- Specs for dlua.frame and dlua.dataframe checked against pandas' own
-- answers on the same CSV files (through /usr/bin/python3): dictionary-
-- encoded string columns in group-by, value_counts, sort_values and merge,
-- missing keys and values, quoted strings, and the partitioned tree.
-- Where pandas is not installed these specs are pending.
local frame = require "dlua.frame"
local dd = require "dlua.dataframe"

local PY = "/usr/bin/python3"
local have_pandas = os.execute(PY .. " -c 'import pandas' 2>/dev/null") == true
local SYNC = {scheduler = "sync"}

local F = require "helpers.files"
local tmpdir, spit = F.tmpdir, F.spit

-- id (unique), key (60 values, some missing, some quoted with a comma),
-- s (another string column, some missing), x (float, some missing), n (int)
local function make_csv(path, rows, seed)
  math.randomseed(seed)
  local t = {"id,key,s,x,n\n"}
  for i = 1, rows do
    local k = math.random(0, 59)
    local key = k % 17 == 0 and "" or k % 7 == 0 and ('"k,%d"'):format(k)
      or ("k%02d"):format(k)
    local s = math.random(1, 9) == 1 and "" or ("s%d"):format(math.random(1, 25))
    local x = math.random(1, 12) == 1 and "" or ("%.17g"):format(math.random() * 100 - 50)
    t[#t + 1] = ("%d,%s,%s,%s,%d\n"):format(seed * 100000 + i, key, s, x,
      math.random(-1000, 1000))
  end
  spit(path, table.concat(t))
end

-- pandas runs `code` with pd, d (the folder), read(name) (a CSV as pandas
-- reads it, strings kept as strings) and out(name, df) (a CSV back).
local function pandas(dir, code)
  spit(dir .. "/run.py", ([[
import sys, pandas as pd
d = sys.argv[1]
def read(name):
    return pd.read_csv(d + "/" + name, dtype={"key": str, "s": str})
def out(name, df):
    df.to_csv(d + "/" + name, index=False, float_format="%%.17g")
%s
]]):format(code))
  assert(os.execute(PY .. " '" .. dir .. "/run.py' '" .. dir .. "'") == true,
    "pandas failed")
end

local TYPES = {id = "int64", key = "string", s = "string", x = "float64",
  n = "int64"}

local function read(path, types)
  return frame.read_csv(path, {types = types or TYPES})
end

-- Rows of a and b equal: the same columns, numbers to 1e-9 (relative),
-- missing values as nil on both sides.
local function same_rows(a, b, cols)
  assert(#b > 0, "pandas gave no rows")
  assert.equal(#b, #a)
  for i = 1, #b do
    for _, c in ipairs(cols) do
      local x, y = a[i][c], b[i][c]
      if type(y) == "number" and type(x) == "number" then
        assert(math.abs(x - y) <= 1e-9 * math.max(1, math.abs(y)),
          ("row %d column %s: %s vs pandas %s"):format(i, c, x, y))
      else
        assert(x == y, ("row %d column %s: %s vs pandas %s"):format(i, c,
          tostring(x), tostring(y)))
      end
    end
  end
end

local function sorted_rows(rows, cols)
  table.sort(rows, function (p, q)
    for _, c in ipairs(cols) do
      local x, y = p[c], q[c]
      if x ~= y then
        if x == nil then return false end
        if y == nil then return true end
        return x < y
      end
    end
    return false
  end)
  return rows
end

describe("dlua.frame against pandas", function ()
  local dir
  setup(function ()
    dir = tmpdir()
    make_csv(dir .. "/a.csv", 3000, 1)
    make_csv(dir .. "/b.csv", 2000, 2)
    spit(dir .. "/small.csv", 'key,w\nk01,1.5\nk02,2.5\n"k,7",3.5\nk01,4.5\nnope,5.5\n')
    if have_pandas then -- pandas' answers, all in one run
      pandas(dir, [=[
out("r_read.csv", pd.concat([read("a.csv"), read("b.csv")]))
df = pd.concat([read("a.csv"), read("b.csv")])
g = df.groupby("key")
r = g.agg(x_sum=("x", "sum"), x_mean=("x", "mean"), x_count=("x", "count"),
          x_min=("x", "min"), x_max=("x", "max"), x_std=("x", "std"),
          x_var=("x", "var"), x_first=("x", "first"), x_last=("x", "last"),
          x_nunique=("x", "nunique"), n_sum=("n", "sum"),
          s_count=("s", "count"), s_first=("s", "first"), s_last=("s", "last"),
          s_nunique=("s", "nunique")).reset_index()
out("r_group.csv", r)
r2 = df.groupby(["key", "s"]).agg(n=("n", "sum")).reset_index()
out("r_group2.csv", r2)
df = read("a.csv")
out("r_vc.csv", df["key"].value_counts().rename_axis("key").reset_index(name="count"))
df = read("a.csv")
out("r_sort1.csv", df.sort_values("key", kind="stable")[["id"]])
out("r_sort2.csv", df.sort_values("s", ascending=False, kind="stable")[["id"]])
out("r_sort3.csv", df.sort_values(["s", "key", "id"], ascending=[True, False, True])[["id"]])
a, s = read("a.csv"), pd.read_csv(d + "/small.csv", dtype={"key": str})
for how in ("inner", "left", "outer"):
    out("r_merge_%s.csv" % how, a.merge(s, on="key", how=how))
ab = pd.concat([read("a.csv"), read("b.csv")], ignore_index=True)
for name, keep in (("first", "first"), ("last", "last"), ("none", False)):
    ks = ab.drop_duplicates(subset=["key", "s"], keep=keep)
    out("r_dd_key_%s.csv" % name,
        ab.drop_duplicates(subset=["key"], keep=keep)[["id"]])
    out("r_dd_ks_%s.csv" % name, ks[["id"]])
out("r_dd_x.csv", ab.drop_duplicates(subset=["x"])[["id"]])
out("r_nl_x.csv", ab.nlargest(60, "x")[["id"]])
out("r_ns_x.csv", ab.nsmallest(60, "x")[["id"]])
out("r_nl_n.csv", ab.nlargest(70, "n")[["id"]])
out("r_ns_n.csv", ab.nsmallest(70, "n")[["id"]])
out("r_nl_all.csv", a.nsmallest(len(a) + 5, "x")[["id"]])
out("r_fillna.csv", a.fillna({"x": -1000.0, "s": "zz"}))
out("r_dropna1.csv", a.dropna(subset=["key", "x"])[["id"]])
out("r_dropna2.csv", a.dropna(how="all", subset=["s", "x"])[["id"]])
out("r_dropna3.csv", a.dropna(thresh=4)[["id"]])
out("r_dropna4.csv", a.dropna()[["id"]])
out("r_isin.csv", a[a["key"].isin(["k01", "k,7", "k02", "nope"])][["id"]])
out("r_isin2.csv", a.drop(columns=["id"]).rename(columns={"n": "m"})
    .isin(["s3", 7, -8, "k05"]).astype(int))
]=])
    end
  end)
  teardown(function () os.execute("rm -rf '" .. dir .. "'") end)

  local function check(name, it_fn) -- pending without pandas
    if have_pandas then it(name, it_fn) else pending(name .. " (no pandas)") end
  end

  check("reads string columns dictionary-encoded, as pandas reads them", function ()
    local df = frame.concat{read(dir .. "/a.csv"), read(dir .. "/b.csv")}
    assert.is_true(frame.is_strings(df.key))
    assert.is_true(#df.key.dict <= 61) -- one entry per distinct value
    same_rows(df:totable(), read(dir .. "/r_read.csv"):totable(),
      {"id", "key", "s", "x", "n"})
  end)

  check("groups by a string key like pandas", function ()
    local df = frame.concat{read(dir .. "/a.csv"), read(dir .. "/b.csv")}
    local g = df:groupby("key"):agg{x = {"sum", "mean", "count", "min",
      "max", "std", "var", "first", "last", "nunique"}, n = {"sum"},
      s = {"count", "first", "last", "nunique"}}
    local want = read(dir .. "/r_group.csv", {key = "string",
      s_first = "string", s_last = "string"}):totable()
    same_rows(g:totable(), want, {"key", "x_sum", "x_mean", "x_count",
      "x_min", "x_max", "x_std", "x_var", "x_first", "x_last", "x_nunique",
      "n_sum", "s_count", "s_first", "s_last", "s_nunique"})
    local g2 = df:groupby{"key", "s"}:agg{n = "sum"}:totable()
    same_rows(g2, read(dir .. "/r_group2.csv", {key = "string", s = "string"})
      :totable(), {"key", "s", "n"})
  end)

  check("takes the min and max of a string column per group", function ()
    local df = frame.concat{read(dir .. "/a.csv"), read(dir .. "/b.csv")}
    local lo, hi = {}, {}
    for _, r in ipairs(df:totable()) do
      if r.key and r.s then
        if lo[r.key] == nil or r.s < lo[r.key] then lo[r.key] = r.s end
        if hi[r.key] == nil or r.s > hi[r.key] then hi[r.key] = r.s end
      end
    end
    for _, r in ipairs(df:groupby("key"):agg{s = {"min", "max"}}:totable()) do
      assert.equal(lo[r.key], r.s_min)
      assert.equal(hi[r.key], r.s_max)
    end
  end)

  check("counts values like pandas", function ()
    local got = read(dir .. "/a.csv"):value_counts("key"):totable()
    local want = read(dir .. "/r_vc.csv", {key = "string"}):totable()
    for i = 2, #got do -- most frequent first, ties by key
      assert(got[i - 1].count > got[i].count or (got[i - 1].count == got[i].count
        and got[i - 1].key < got[i].key))
    end
    same_rows(sorted_rows(got, {"key"}), sorted_rows(want, {"key"}),
      {"key", "count"})
  end)

  check("sorts by a string key like pandas (stable, missing last)", function ()
    local df = read(dir .. "/a.csv")
    local function ids(f) return f:select{"id"}:totable() end
    same_rows(ids(df:sort_values{by = "key"}),
      read(dir .. "/r_sort1.csv"):totable(), {"id"})
    same_rows(ids(df:sort_values{by = "s", ascending = false}),
      read(dir .. "/r_sort2.csv"):totable(), {"id"})
    same_rows(ids(df:sort_values{by = {"s", "key", "id"},
      ascending = {true, false, true}}), read(dir .. "/r_sort3.csv"):totable(),
      {"id"})
  end)

  check("merges on a string key like pandas (inner, left, outer)", function ()
    local a = read(dir .. "/a.csv")
    local s = frame.read_csv(dir .. "/small.csv", {types = {key = "string"}})
    for _, how in ipairs{"inner", "left", "outer"} do
      local cols = {"id", "key", "s", "x", "n", "w"}
      local got = a:merge(s, {on = "key", how = how}):totable()
      local want = read(dir .. "/r_merge_" .. how .. ".csv",
        {id = "float64", key = "string", s = "string"}):totable()
      same_rows(sorted_rows(got, {"id", "w", "key"}),
        sorted_rows(want, {"id", "w", "key"}), cols)
    end
  end)

  local function ids_of(f) return f:select{"id"}:totable() end
  local function want_ids(name)
    return read(dir .. "/" .. name, {id = "int64"}):totable()
  end

  check("drops duplicates, largest and smallest rows like pandas", function ()
    local ab = frame.concat{read(dir .. "/a.csv"), read(dir .. "/b.csv")}
    for name, keep in pairs{first = "first", last = "last", none = false} do
      local got = ids_of(ab:drop_duplicates{subset = "key", keep = keep})
      local want = want_ids("r_dd_key_" .. name .. ".csv")
      if keep == false then -- every key repeats: no row, as pandas
        assert.equal(0, #want)
        assert.equal(0, #got)
      else same_rows(got, want, {"id"}) end
      same_rows(ids_of(ab:drop_duplicates{subset = {"key", "s"}, keep = keep}),
        want_ids("r_dd_ks_" .. name .. ".csv"), {"id"})
    end
    same_rows(ids_of(ab:drop_duplicates{subset = "x"}),
      want_ids("r_dd_x.csv"), {"id"})
    same_rows(ids_of(ab:nlargest(60, "x")), want_ids("r_nl_x.csv"), {"id"})
    same_rows(ids_of(ab:nsmallest(60, "x")), want_ids("r_ns_x.csv"), {"id"})
    same_rows(ids_of(ab:nlargest(70, "n")), want_ids("r_nl_n.csv"), {"id"})
    same_rows(ids_of(ab:nsmallest(70, "n")), want_ids("r_ns_n.csv"), {"id"})
    local a = read(dir .. "/a.csv")
    same_rows(ids_of(a:nsmallest(#a + 5, "x")), want_ids("r_nl_all.csv"),
      {"id"})
    -- through the partitioned tree, as Dask's reductions
    local ddf = dd.read_csv({dir .. "/a.csv", dir .. "/b.csv"},
      {blocksize = 20000, types = TYPES})
    assert.is_true(ddf.npartitions > 4)
    for name, keep in pairs{first = "first", last = "last", none = false} do
      same_rows(ids_of(ddf:drop_duplicates{subset = {"key", "s"}, keep = keep,
        split_every = 3}:compute(SYNC)), want_ids("r_dd_ks_" .. name .. ".csv"),
        {"id"})
    end
    same_rows(ids_of(ddf:nlargest(60, "x"):compute(SYNC)),
      want_ids("r_nl_x.csv"), {"id"})
    same_rows(ids_of(ddf:nsmallest(70, "n", {split_every = 2}):compute(SYNC)),
      want_ids("r_ns_n.csv"), {"id"})
  end)

  check("fills, drops missing values and tests membership like pandas",
    function ()
    local a = read(dir .. "/a.csv")
    same_rows(a:fillna{x = -1000, s = "zz"}:totable(),
      read(dir .. "/r_fillna.csv"):totable(), {"id", "key", "s", "x", "n"})
    same_rows(ids_of(a:dropna{subset = {"key", "x"}}),
      want_ids("r_dropna1.csv"), {"id"})
    same_rows(ids_of(a:dropna{how = "all", subset = {"s", "x"}}),
      want_ids("r_dropna2.csv"), {"id"})
    same_rows(ids_of(a:dropna{thresh = 4}), want_ids("r_dropna3.csv"), {"id"})
    same_rows(ids_of(a:dropna()), want_ids("r_dropna4.csv"), {"id"})
    same_rows(ids_of(a:filter(a:isin{key = {"k01", "k,7", "k02", "nope"}}.key)),
      want_ids("r_isin.csv"), {"id"})
    local m = a:drop("id"):rename{n = "m"}:isin{"s3", 7, -8, "k05"}
    local want = read(dir .. "/r_isin2.csv", {key = "int64", s = "int64",
      x = "int64", m = "int64"}):totable()
    local got = m:totable()
    assert.equal(#want, #got)
    local hits = 0
    for i, w in ipairs(want) do
      for _, c in ipairs{"key", "s", "x", "m"} do
        assert.equal(w[c] == 1, got[i][c], ("row %d column %s"):format(i, c))
        if got[i][c] then hits = hits + 1 end
      end
    end
    assert.is_true(hits > 10)
  end)

  check("aggregates string columns through the partitioned tree", function ()
    local ddf = dd.read_csv({dir .. "/a.csv", dir .. "/b.csv"},
      {blocksize = 20000, types = TYPES})
    assert.is_true(ddf.npartitions > 4)
    local spec = {x = {"sum", "mean", "std"}, s = {"count", "first", "last",
      "min", "max"}, n = "max"}
    local got = ddf:groupby("key"):agg(spec):compute(SYNC):totable()
    local want = frame.concat{read(dir .. "/a.csv"), read(dir .. "/b.csv")}
      :groupby("key"):agg(spec):totable()
    same_rows(got, want, {"key", "x_sum", "x_mean", "x_std", "s_count",
      "s_first", "s_last", "s_min", "s_max", "n"})
  end)
end)

describe("dlua.dataframe nunique through the tree", function ()
  local dir
  setup(function ()
    dir = tmpdir()
    make_csv(dir .. "/a.csv", 3000, 3)
    make_csv(dir .. "/b.csv", 2500, 4)
  end)
  teardown(function () os.execute("rm -rf '" .. dir .. "'") end)

  it("equals the in-memory nunique, for every split_every and partitioning",
    function ()
    local spec = {x = {"nunique", "sum"}, s = "nunique", n = {"nunique"}}
    local whole = frame.concat{read(dir .. "/a.csv"), read(dir .. "/b.csv")}
    local want = whole:groupby("key"):agg(spec):totable()
    local want2 = whole:groupby{"s", "key"}:agg{n = "nunique"}:totable()
    assert.is_true(#want > 40)
    for _, bs in ipairs{1e9, 30000, 7000} do
      for _, every in ipairs{2, 8} do
        local ddf = dd.read_csv({dir .. "/a.csv", dir .. "/b.csv"},
          {blocksize = bs, types = TYPES})
        local got = ddf:groupby("key"):agg(spec, {split_every = every})
          :compute(SYNC):totable()
        same_rows(got, want, {"key", "x_nunique", "x_sum", "s", "n_nunique"})
        local got2 = ddf:groupby{"s", "key"}:agg({n = "nunique"},
          {split_every = every}):compute(SYNC):totable()
        same_rows(got2, want2, {"s", "key", "n"})
        assert.equal("integer", math.type(got2[1].n))
      end
    end
  end)
end)

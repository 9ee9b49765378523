-- Specs for dlua.frame values in the codec: a frame of every column type
-- (missing values, dictionary strings) round-trips byte for byte, bad
-- bytes fail cleanly, and frames travel as task arguments, results and
-- upvalues on a real cluster (submit, delayed, map_partitions).
local frame = require "dlua.frame"
local nd = require "dlua.ndarray"
local codec = require "dlua.codec"
local H = require "helpers.cluster"

-- A frame with every column kind, missing values and odd strings.
local function every_kind(n)
  local f, i, b, s, r = {}, {}, {}, {}, {}
  for k = 1, n do
    f[k] = k % 7 == 0 and 0/0 or (k % 5 == 0 and -0.0 or k / 3)
    i[k] = k % 2 == 0 and math.maxinteger - k or math.mininteger + k
    b[k] = k % 3 == 0
    s[k] = k % 4 ~= 0 and ("s" .. k % 6) or false
    r[k] = k % 11 == 0 and "\0z\255" or (k % 13 == 0 and "" or "é" .. k % 3)
  end
  if n > 0 then f[1] = math.huge end
  return frame.from_table{f = f, i = nd.from_table(i, "int64"),
    b = nd.from_table(b, "bool"),
    h = nd.from_table(f, "float32"), s = s, r = r}
end

-- Every column's bytes (ndarrays and codes by their codec form).
local function col_bytes(df)
  local t = {}
  for _, name in ipairs(df:columns()) do
    local c = df[name]
    if frame.is_strings(c) then
      t[name] = {codes = nd.tobytes(c.codes), dict = c.dict}
    else
      t[name] = nd.tobytes(c)
    end
  end
  return t
end

local function same_bytes(a, b)
  assert.is_true(frame.is_frame(b))
  assert.same(a:columns(), b:columns())
  assert.equal(#a, #b)
  assert.same(col_bytes(a), col_bytes(b))
  assert.equal(codec.encode(a), codec.encode(b))
end

describe("dlua.frame in the codec", function ()
  it("round-trips every column type byte for byte", function ()
    for _, n in ipairs{0, 1, 40} do
      local df = every_kind(n)
      local s = codec.encode(df)
      local back = codec.decode(s)
      same_bytes(df, back)
      assert.equal(s, codec.encode(back))
      -- methods and string columns work on what came back
      assert.same(df:totable(), back:totable())
      if n > 0 then
        assert.same(df:value_counts("s"):totable(),
          back:value_counts("s"):totable())
      end
    end
  end)

  it("carries frames without columns, views and strided columns", function ()
    local empty = frame.from_table({}, {})
    same_bytes(empty, codec.decode(codec.encode(empty)))
    local df = every_kind(30)
    local part = df:filter(df.b):select{"s", "f"}
    same_bytes(part, codec.decode(codec.encode(part)))
    local strided = frame.from_table{x = nd.arange(1, 20):slice{1, 20, 3}}
    local back = codec.decode(codec.encode(strided))
    assert.same(strided.x:totable(), back.x:totable())
  end)

  it("carries nunique's distinct rows of a partial aggregation", function ()
    local df = frame.from_table{k = {"a", "b", "a", "a"}, v = {1, 2, 1, 3}}
    local p = frame._partial_agg(df, {"k"}, {}, {"v"})
    assert.is_table(p._distinct)
    local back = codec.decode(codec.encode(p))
    assert.same(col_bytes(p._distinct.v), col_bytes(back._distinct.v))
    assert.equal(codec.encode(p), codec.encode(back))
  end)

  it("carries what read_csv noted: errors turned missing, types", function ()
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write("a,b,s\n1,2.5,x\noops,3.5,y\n4,,z\n")
    f:close()
    local df = frame.read_csv(path, {types = {a = "int64"}, on_error = "null"})
    os.remove(path)
    assert.equal(1, df:nerrors())
    local back = codec.decode(codec.encode(df))
    same_bytes(df, back)
    assert.equal(1, back:nerrors())
    assert.same(rawget(df, "_read_types"), rawget(back, "_read_types"))
  end)

  it("fails cleanly on damaged bytes", function ()
    local s = codec.encode(every_kind(12))
    for _, cut in ipairs{1, 10, #s // 2, #s - 1} do
      local ok, err = pcall(codec.decode, s:sub(1, #s - cut))
      assert.is_false(ok)
      assert.is_string(err)
    end
    -- a code past the dictionary: find the frame's first code and bump it
    local df = frame.from_table{s = {"a", "b"}}
    local enc = codec.encode(df)
    local at = enc:find("\2\0\0\0\0\0\0\0", 1, true) -- code 2 of row 2
    assert.is_number(at)
    local bad = enc:sub(1, at - 1) .. "\3" .. enc:sub(at + 1)
    local ok, err = pcall(codec.decode, bad)
    assert.is_false(ok)
    assert.matches("dlua.frame", err)
  end)

  it("refuses a frame with fields it would lose", function ()
    local df = frame.from_table{x = {1, 2}}
    rawset(df, "extra", 1)
    local ok, err = pcall(codec.encode, df)
    assert.is_false(ok)
    assert.matches("dlua.frame", err)
  end)
end)

describe("dlua.frame on a cluster", function ()
  local env, c = H.local_cluster{n_workers = 2}, nil
  setup(function () env.start(); c = env.c end)
  teardown(env.stop)

  it("travels to and from tasks by submit", function ()
    local df = every_kind(50)
    local same = c:submit(function (d) return d end, df):result(60)
    same_bytes(df, same)
    local counts = c:submit(function (d)
      return d:groupby("s"):agg{f = {"count", "max"}, i = "min"}
    end, df):result(60)
    assert.same(df:groupby("s"):agg{f = {"count", "max"}, i = "min"}
      :totable(), counts:totable())
    -- read on the worker, with its notes
    local path = os.tmpname()
    local fh = assert(io.open(path, "wb"))
    fh:write("a,k\n1,p\nbad,q\n")
    fh:close()
    local read = c:submit(function (p)
      return frame.read_csv(p, {types = {a = "int64"}, on_error = "null"})
    end, path):result(60)
    os.remove(path)
    assert.equal(1, read:nerrors())
    assert.same({{a = 1, k = "p"}, {k = "q"}}, read:totable())
    -- made on the worker
    local made = c:submit(function ()
      return frame.from_table{k = {"p", false, "q"},
        v = {1.5, 2.5, 0/0}}
    end):result(60)
    assert.same({{k = "p", v = 1.5}, {v = 2.5}, {k = "q"}}, made:totable())
  end)

  it("travels through delayed", function ()
    local delayed = require("dlua.delayed").delayed
    local df = every_kind(20)
    local d = delayed(function (a, b) return frame.concat{a, b} end)(df, df)
    local r = d:compute{client = c}
    assert.equal(40, #r)
    assert.same(frame.concat{df, df}:totable(), r:totable())
  end)

  it("travels as an upvalue of map_partitions", function ()
    local dd = require "dlua.dataframe"
    local lookup = frame.from_table{s = {"s1", "s2", "s3"},
      w = {10, 20, 30}}
    local df = every_kind(60)
    local ddf = dd.from_frame(df:select{"s", "i"}, 3)
    local out = ddf:map_partitions(function (part)
      return part:merge(lookup, {on = "s"})
    end):compute{client = c}
    local want = df:select{"s", "i"}:merge(lookup, {on = "s"})
    assert.equal(#want, #out)
    assert.same(want:sort_values{by = "i"}:totable(),
      out:sort_values{by = "i"}:totable())
  end)
end)

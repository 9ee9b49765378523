-- Specs for dlua.csv (the LPeg grammar) and dlua.bag.read_csv.
local dlua = require "dlua"
local csv = require "dlua.csv"
local bag = require "dlua.bag"
local lpeg = require "lpeg"

local SYNC = {scheduler = "sync"}

local F = require "helpers.files"
local tmpdir, spit = F.tmpdir, F.spit

describe("dlua.csv", function ()
  it("parses RFC 4180: quotes, embedded separators and newlines, CRLF",
     function ()
    local text = 'id,name,note\r\n1,"Smith, J.","say ""hi"""\r\n'
      .. '2,plain,"two\r\nlines"\r\n'
    local rows, header = csv.parse(text)
    assert.same({"id", "name", "note"}, header)
    assert.same({id = "1", name = "Smith, J.", note = 'say "hi"'}, rows[1])
    assert.same({id = "2", name = "plain", note = "two\r\nlines"}, rows[2])
  end)

  it("accepts LF and CR endings, a last line without one, blank lines",
     function ()
    assert.same({{"a", "b"}, {"c", "d"}, {"e", ""}},
      csv.records("a,b\n\nc,d\re,"))
    assert.same({}, csv.records(""))
    assert.same({{""}}, csv.records('""\n'))
  end)

  it("converts declared types, empty fields to nil", function ()
    local rows = csv.parse("i,x,b,s\n1,2.5,true,007\n,,,\n", {types = {
      i = "integer", x = "number", b = "boolean", s = "string"}})
    assert.same({i = 1, x = 2.5, b = true, s = "007"}, rows[1])
    assert.same({s = ""}, rows[2])
    assert.equal("integer", math.type(rows[1].i))
    local auto = csv.parse("a,b\n1,x\n", {types = "auto"})
    assert.same({a = 1, b = "x"}, auto[1])
  end)

  it("reads without a header, with other separators and quotes", function ()
    local rows = csv.parse("1;'a;b'\n2;c\n", {header = false, sep = ";",
      quote = "'", types = {"integer"}})
    assert.same({{1, "a;b"}, {2, "c"}}, rows)
  end)

  it("reports the line and field of bad rows, or skips and counts them",
     function ()
    local text = "a,b\n1,2\n3\n4,x\n5,6\n"
    local ok, err = pcall(csv.parse, text, {name = "f.csv"})
    assert.is_false(ok)
    assert.matches("f.csv:3: expected 2 fields, got 1", err)
    ok, err = pcall(csv.parse, "a,b\n1,2\n4,x\n", {name = "f.csv",
      types = {b = "number"}})
    assert.matches("f.csv:3: column 'b' %(field 2%): expected number, got "
      .. '"x"', err)
    local rows, _, skipped = csv.parse(text, {types = {b = "number"},
      on_error = "skip"})
    assert.equal(2, #rows)
    assert.equal(2, skipped)
    -- line numbers count newlines inside quoted fields
    ok, err = pcall(csv.parse, 'a,b\n"x\ny",1\n2\n', {name = "g.csv"})
    assert.matches("g.csv:4: expected 2 fields", err)
  end)

  it("reports malformed quoting with line and column", function ()
    local ok, err = pcall(csv.records, 'a,b\nc,"d\n', {name = "q.csv"})
    assert.is_false(ok)
    assert.matches("q.csv:2:3: malformed CSV: a quoted field without its "
      .. "closing quote", err)
    ok, err = pcall(csv.records, 'a,b"c\n')
    assert.matches("csv:1:4: malformed CSV: a quote inside an unquoted "
      .. "field", err)
    ok, err = pcall(csv.records, '"a"b\n')
    assert.matches("csv:1:4: malformed CSV: bytes after a closing quote", err)
  end)

  it("rejects bad options at the caller's line", function ()
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function () local r = csv.parse("", {sep = ";;"})
      return r end)
    assert.is_false(ok)
    assert.matches("csv_spec.lua:" .. line .. ": dlua.csv: sep must be one "
      .. "character", err)
    assert.has_error(function () csv.parse("", {types = {a = "float"}}) end)
    assert.has_error(function () csv.parse("", {on_eror = "skip"}) end)
    assert.has_error(function () csv.grammar(",", ",") end)
  end)

  it("round-trips format and records on random records", function ()
    local alphabet = {"a", "b", ",", '"', "\n", "\r", " ", "\255", ";", ""}
    local seed = 12345
    local function rand(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n + 1
    end
    for _ = 1, 300 do
      local recs, lines = {}, {}
      for r = 1, rand(4) do
        local rec = {}
        for f = 1, rand(4) do
          local s = {}
          for c = 1, rand(6) - 1 do s[c] = alphabet[rand(#alphabet)] end
          rec[f] = table.concat(s)
        end
        recs[r] = rec
        lines[r] = csv.format(rec)
      end
      local eol = ({"\n", "\r\n", "\r"})[rand(3)]
      assert.same(recs, csv.records(table.concat(lines, eol) .. eol))
    end
  end)

  it("exposes the record grammar for users' own patterns", function ()
    local rec = csv.grammar(";")
    local line = lpeg.P"row:" * rec
    assert.same({"a", "b;c"}, line:match('row:a;"b;c"'))
  end)
end)

describe("dlua.bag.read_csv", function ()
  local dir
  setup(function () dir = tmpdir() end)
  teardown(function () os.execute("rm -rf '" .. dir .. "'") end)

  it("reads files into rows, one partition each, typed", function ()
    spit(dir .. "/p1.csv", "k,v\r\na,1\r\nb,2\r\n")
    spit(dir .. "/p2.csv", 'k,v\n"a",3\n"c\nd",4\n')
    local b = bag.read_csv(dir .. "/p*.csv", {types = {v = "integer"}})
    assert.equal(2, b.npartitions)
    local sums = {}
    local add = function (x, y) return x + y end
    for _, kv in ipairs(b:foldby("k", function (a, r) return a + r.v end, 0,
      add, 0):compute(SYNC)) do
      sums[kv[1]] = kv[2]
    end
    assert.same({a = 4, b = 2, ["c\nd"] = 4}, sums)
  end)

  it("reports a bad row with its file and line from the worker", function ()
    spit(dir .. "/bad.csv", "k,v\na,1\nb,x\n")
    local client = dlua.Client{n_workers = 1}
    local b = bag.read_csv(dir .. "/bad.csv", {types = {v = "number"}})
    local ok, err = pcall(b.compute, b)
    local skipped = bag.read_csv(dir .. "/bad.csv", {types = {v = "number"},
      on_error = "skip"}):count():compute()
    client:close()
    assert.is_false(ok)
    assert.matches("bad.csv:3: column 'v' %(field 2%): expected number",
      tostring(err))
    assert.equal(1, skipped)
  end)

  it("checks its options at the caller's line", function ()
    spit(dir .. "/ok.csv", "a\n1\n")
    local ok, err = pcall(bag.read_csv, dir .. "/ok.csv", {sep = 1})
    assert.is_false(ok)
    assert.matches("option 'sep' must be a string", err)
    ok, err = pcall(bag.read_csv, dir .. "/ok.csv", {types = {a = "x"}})
    assert.matches("type of column 'a'", err)
    ok, err = pcall(bag.read_csv, dir .. "/none-*.csv")
    assert.matches("no files match", err)
  end)
end)

--[[ dlua.frame: an in-memory data frame of named, typed columns.

  local frame = require "dlua.frame"
  local df = frame.read_csv("data.csv")
  print(df:groupby("key"):agg{x = "mean", y = {"sum", "max"}})

Numeric and bool columns are dlua.ndarray vectors (a missing float64 is
NaN; an int64 or bool column with a missing value is read as float64, as
pandas does); string columns are dictionary-encoded: {codes = int64
ndarray (0: missing, else an index into dict), dict = {unique strings},
n = rows}, whose metatable makes col[i] the string (false when missing).
README.md, section "Data frames", documents the API. ]]

local nd = require "dlua.ndarray"
local C = require "dlua.framec"

local error, ipairs, pairs, type, tostring, select, setmetatable, getmetatable =
  error, ipairs, pairs, type, tostring, select, setmetatable, getmetatable
local sformat, srep, tconcat, tsort, mhuge = string.format, string.rep,
  table.concat, table.sort, math.huge
local tunpack, next = table.unpack, next

local M = {}
local Frame = C.framemt -- registry["dlua.frame"]: frames travel by the codec
local methods = {}
local NDMT = getmetatable(nd.zeros{0})

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error

local function is_nd(v) return getmetatable(v) == NDMT end
local function is_frame(v) return getmetatable(v) == Frame end
M.is_frame = is_frame
local STRMT = C.strmt
local function is_strings(v) return getmetatable(v) == STRMT end
M.is_strings = is_strings

-- A string column of codes (int64 ndarray) into dict.
local function strcol(codes, dict)
  return setmetatable({codes = codes, dict = dict, n = #codes}, STRMT)
end

-- A string column from a Lua array t of n strings (false/nil: missing),
-- factorized in C.
local function strings_of(t, n)
  local a = {n = n}
  for i = 1, n do a[i] = t[i] or false end
  local codes, k, first = C.factorize(a)
  local dict, f = {}, first:totable()
  for j = 1, k do dict[j] = a[f[j]] end
  return strcol(codes, dict)
end

-- The string columns in list (each with its own dict) over one dict:
-- returns the dict and the list of codes ndarrays, recoded into it.
local function unify(list, lazy)
  local dict = list[1].dict
  local out, maps = {list[1].codes}, {}
  local index
  for i = 2, #list do
    local c = list[i]
    if c.dict == dict then out[i] = c.codes
    else
      if not index then
        local d2 = {}
        index = {}
        for j, v in ipairs(dict) do d2[j] = v index[v] = j end
        dict = d2
      end
      local map = {0}
      for j, v in ipairs(c.dict) do
        local code = index[v]
        if not code then
          code = #dict + 1
          dict[code] = v
          index[v] = code
        end
        map[j + 1] = code
      end
      map = nd.from_table(map, "int64")
      if lazy then out[i], maps[i] = c.codes, map -- recoded by the caller
      else out[i] = C.recode(c.codes, map) end
    end
  end
  return dict, out, maps
end
M._unify = unify

-- Per row, the rank of its string among the column's dict entries
-- (float64; NaN where missing): sorting by it sorts by the strings.
local function str_ranks(c)
  local k = #c.dict
  local order = {}
  for j = 1, k do order[j] = j end
  local d = c.dict
  tsort(order, function (a, b) return d[a] < d[b] end)
  local map = {0/0}
  for r, j in ipairs(order) do map[j + 1] = r end
  return C.recode(c.codes, nd.from_table(map, "float64")), order
end

local function fail(level, fmt, ...)
  error("dlua.frame: " .. sformat(fmt, ...), level + 1)
end

local function col_len(c) return is_nd(c) and #c or c.n or #c end

local function col_type(c)
  if is_nd(c) then return c.dtype end
  return "string"
end

local function nd_of_ints(t, n)
  if n == 0 then return nd.zeros({0}, "int64") end
  return nd.from_table(t, "int64")
end

-- A column from a Lua array (n values; nil/false missing).
local function make_col(t, n, level)
  local kind
  for i = 1, n do
    local v = t[i]
    if v ~= nil and v ~= false or (v == false and kind == "bool") then
      local k = math.type(v) == "integer" and "int64" or type(v) == "number"
        and "float64" or type(v) == "boolean" and "bool" or type(v) == "string"
        and "string" or nil
      if not k then
        fail(level + 1, "value %d: expected a number, boolean or string, "
          .. "got %s", i, type(v))
      end
      if kind == nil then kind = k
      elseif kind ~= k then
        if (kind == "int64" and k == "float64") or (kind == "float64"
          and k == "int64") then kind = "float64"
        else fail(level + 1, "value %d: %s in a %s column", i, k, kind) end
      end
    end
  end
  kind = kind or "float64"
  if kind == "string" then return strings_of(t, n) end
  local missing = false
  for i = 1, n do if t[i] == nil then missing = true break end end
  if missing or kind == "float64" then
    local o = {}
    for i = 1, n do
      local v = t[i]
      o[i] = v == nil and 0/0 or (v == true and 1) or (v == false and 0) or v
    end
    if kind == "bool" and not missing then return nd.from_table(o, "bool") end
    return n == 0 and nd.zeros({0}) or nd.from_table(o, "float64")
  end
  if n == 0 then return nd.zeros({0}, kind) end
  return nd.from_table(t, kind)
end

local function new(names, cols, level)
  local n
  local seen = {}
  for _, name in ipairs(names) do
    if seen[name] then fail(level + 1, "duplicate column name '%s'", name) end
    seen[name] = true
    local c = cols[name]
    if type(c) == "table" and not is_nd(c) and not is_strings(c) then
      if rawget(c, "dict") ~= nil then setmetatable(c, STRMT) -- off the wire
      else cols[name] = strings_of(c, c.n or #c) end
    end
    local len = col_len(cols[name])
    if n == nil then n = len
    elseif len ~= n then
      fail(level + 1, "column '%s' has %d rows, expected %d", name, len, n)
    end
  end
  return setmetatable({_names = names, _cols = cols, _n = n or 0}, Frame)
end

local function col_value(c, i)
  if is_nd(c) then
    local v = c:get(i)
    if v ~= v then return nil end
    return v
  end
  return c[i] or nil
end

local function take(c, idx)
  if is_nd(c) then return C.take(c, idx) end
  return strcol(C.take(c.codes, idx), c.dict)
end

local function colnames_list(df)
  return "'" .. tconcat(df._names, "', '") .. "'"
end

local function check_col(df, name, level)
  if df._cols[name] == nil then
    fail(level + 1, "no column '%s' (columns: %s)", tostring(name),
      colnames_list(df))
  end
  return df._cols[name]
end

function Frame.__index(df, k)
  local m = methods[k]
  if m then return m end
  local c = rawget(df, "_cols")[k]
  if c ~= nil then return c end
  return nil
end

function Frame.__len(df) return df._n end

--- frame.new{names..., cols} / frame.from_table(rows or columns [, names])
function M.from_table(t, names)
  if type(t) ~= "table" then
    fail(2, "from_table: expects a table of rows or of columns, got %s",
      type(t))
  end
  local cols = {}
  if t[1] ~= nil and type(t[1]) == "table" then -- rows
    if not names then
      names = {}
      local seen = {}
      for _, row in ipairs(t) do
        for k in pairs(row) do
          if not seen[k] then seen[k] = true names[#names + 1] = k end
        end
      end
      tsort(names)
    end
    for _, name in ipairs(names) do
      local v = {}
      for i, row in ipairs(t) do v[i] = row[name] end
      cols[name] = make_col(v, #t, 2)
    end
  else -- columns
    if not names then
      names = {}
      for k in pairs(t) do names[#names + 1] = k end
      tsort(names)
    end
    for _, name in ipairs(names) do
      local v = t[name]
      if v == nil then fail(2, "from_table: no column '%s'", tostring(name)) end
      if is_nd(v) or is_strings(v) then cols[name] = v
      elseif type(v) == "table" then cols[name] = make_col(v, v.n or #v, 2)
      else fail(2, "from_table: column '%s' must be a table or ndarray",
        tostring(name)) end
    end
  end
  return new(names, cols, 2)
end
M.new = M.from_table

--- frame.read_csv(path, {types=, sep=, header=, on_error=, names=})
function M.read_csv(path, o)
  o = o or {}
  if type(path) ~= "string" then
    fail(2, "read_csv: expects a path, got %s", type(path))
  end
  local f, err = io.open(path, "rb")
  if not f then fail(2, "read_csv: %s", err) end
  f:close()
  -- Not a tail call: level 3 names the caller of read_csv.
  local df = M._from_csv_bytes({path, 0, -1}, o, path, 1, 3) -- read in C
  return df
end

-- bytes: a string, or {path, start, stop}: the block read in C.
function M._from_csv_bytes(bytes, o, file, line0, level)
  local opts = {sep = o.sep, header = o.header, on_error = o.on_error,
    types = o.types, names = o.names, file = file, line0 = line0,
    threads = o.threads}
  if o.on_error ~= nil and o.on_error ~= "null" and o.on_error ~= "raise" then
    fail(level, "read_csv: on_error must be \"raise\" or \"null\"")
  end
  if o.threads ~= nil and (math.type(o.threads) ~= "integer"
      or o.threads < 1) then
    fail(level, "read_csv: threads must be a positive integer, got %s",
      tostring(o.threads))
  end
  local ok, r = pcall(C.read_csv, bytes, opts)
  if not ok then error(r, level) end
  if r.empty then -- a block with no bytes: no frame (no header either)
    if o.header == false then return nil end
    error(sformat("dlua.frame: %s: empty file: no header", file), level)
  end
  local df = new(r.names, r.cols, level)
  df._nerrors = r.nerrors
  df._read_types = r.types
  return df
end

function methods:columns() return {table.unpack(self._names)} end
function methods:dtypes()
  local t = {}
  for _, n in ipairs(self._names) do t[n] = col_type(self._cols[n]) end
  return t
end
function methods:count() return self._n end
function methods:nerrors() return self._nerrors or 0 end
function methods:col(name) return check_col(self, name, 2) end

function methods:select(list)
  if type(list) == "string" then list = {list} end
  if type(list) ~= "table" then
    fail(2, "select: expects a column name or a list of names, got %s",
      type(list))
  end
  local cols = {}
  for _, n in ipairs(list) do cols[n] = check_col(self, n, 2) end
  return new(list, cols, 2)
end

local function take_rows(df, idx)
  local cols = {}
  for _, n in ipairs(df._names) do cols[n] = take(df._cols[n], idx) end
  return new(df._names, cols, 3)
end

function methods:filter(mask)
  if not is_nd(mask) or mask.dtype ~= "bool" then
    fail(2, "filter: expects a bool column (e.g. df.x:gt(0)), got %s",
      is_nd(mask) and mask.dtype or type(mask))
  end
  if #mask ~= self._n then
    fail(2, "filter: mask has %d rows, the frame %d", #mask, self._n)
  end
  return take_rows(self, C.which(mask))
end

function methods:assign(t)
  if type(t) ~= "table" then
    fail(2, "assign: expects a table {name = column, ...}, got %s", type(t))
  end
  local names, cols = {table.unpack(self._names)}, {}
  for k, v in pairs(self._cols) do cols[k] = v end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  tsort(keys)
  for _, k in ipairs(keys) do
    local v = t[k]
    -- a function is called with the frame (pandas' callables in assign)
    if type(v) == "function" then v = v(self) end
    if type(v) == "number" then v = nd.full({self._n}, v) end
    if not is_nd(v) and not is_strings(v) and type(v) == "table" then
      v = make_col(v, v.n or #v, 2)
    end
    if not is_nd(v) and type(v) ~= "table" then
      fail(2, "assign: column '%s' must be an ndarray, table or number",
        tostring(k))
    end
    if col_len(v) ~= self._n then
      fail(2, "assign: column '%s' has %d rows, the frame %d", tostring(k),
        col_len(v), self._n)
    end
    if cols[k] == nil then names[#names + 1] = k end
    cols[k] = v
  end
  return new(names, cols, 2)
end

-- head/tail's n: an integer; a negative n counts from the other end, as
-- in pandas (head(-2) is every row but the last two).
local function rows_arg(self, n, who)
  if n == nil then n = 5 end
  if math.type(n) ~= "integer" then
    fail(3, "%s: n must be an integer, got %s", who,
      type(n) == "number" and tostring(n) or type(n))
  end
  if n < 0 then n = math.max(self._n + n, 0) end
  return math.min(n, self._n)
end

function methods:head(n)
  n = rows_arg(self, n, "head")
  local idx = {}
  for i = 1, n do idx[i] = i end
  local r = take_rows(self, nd_of_ints(idx, n))
  return r
end

function methods:tail(n)
  n = rows_arg(self, n, "tail")
  local idx = {}
  for i = 1, n do idx[i] = self._n - n + i end
  local r = take_rows(self, nd_of_ints(idx, n))
  return r
end

function methods:totable()
  local rows = {}
  for i = 1, self._n do
    local r = {}
    for _, n in ipairs(self._names) do r[n] = col_value(self._cols[n], i) end
    rows[i] = r
  end
  return rows
end

function methods:column_table(name)
  local c = check_col(self, name, 2)
  local t = {}
  for i = 1, self._n do t[i] = col_value(c, i) end
  return t
end

-- Sort keys: values comparable with <, per column (strings by rank).
local function cmp_values(c)
  if is_nd(c) then
    local t = c:totable()
    if c.dtype == "bool" then
      for i = 1, #t do t[i] = t[i] and 1 or 0 end
    end
    return t, true
  end
  return (str_ranks(c)):totable(), true
end

function methods:sort_values(o)
  if type(o) == "string" then o = {by = o} end
  if type(o) ~= "table" or o.by == nil then
    fail(2, "sort_values: expects {by = column(s) [, ascending = bool]}")
  end
  local by = type(o.by) == "string" and {o.by} or o.by
  local asc = o.ascending
  if type(asc) ~= "table" then
    local a = asc == nil and true or asc
    asc = {}
    for i = 1, #by do asc[i] = a end
  end
  if #by == 1 then -- in C (strings by the rank of their dict entry)
    local c = check_col(self, by[1], 2)
    if is_strings(c) then c = str_ranks(c) end
    return take_rows(self, C.argsort(c, asc[1] ~= false))
  end
  local keys = {}
  for i, n in ipairs(by) do keys[i] = cmp_values(check_col(self, n, 2)) end
  local idx = {}
  for i = 1, self._n do idx[i] = i end
  tsort(idx, function (a, b)
    for k = 1, #keys do
      local x, y = keys[k][a], keys[k][b]
      local xm = x == false or x ~= x
      local ym = y == false or y ~= y
      if xm or ym then -- missing values last, as pandas
        if xm ~= ym then return ym end
      elseif x ~= y then
        if asc[k] then return x < y end
        return x > y
      end
    end
    return a < b -- stable
  end)
  return take_rows(self, nd_of_ints(idx, #idx))
end

-- Codes of one key column: codes ndarray, k, first rows ndarray.
-- Codes of one key column (ndarray or strings, both in C): codes
-- ndarray, k, first rows ndarray.
local function factorize(c) return C.factorize(c) end

local function group_codes(df, keys, level)
  local codes, k, first
  for i, name in ipairs(keys) do
    local c = check_col(df, name, level + 1)
    local c2, k2, f2 = factorize(c)
    if i == 1 then codes, k, first = c2, k2, f2
    else codes, k, first = C.combine(codes, k2, c2) end
  end
  return codes, k, first
end

local AGGS = {sum = true, mean = true, count = true, min = true, max = true,
  std = true, var = true, first = true, last = true, nunique = true}

local function agg_one(codes, k, c, how)
  if how == "nunique" then
    local vc, vk = factorize(c)
    local pc, pk, pf = C.combine(codes, vk, vc)
    -- each pair's group: the group code at its first row
    local gc = C.take(codes, pf)
    local ones = nd.ones({pk})
    return C.reduce("sum", gc, k, ones):astype("int64")
  end
  if not is_nd(c) then -- strings: on their codes, in C
    if how == "count" then
      return C.reduce("sum", codes, k, c.codes:gt(0))
    elseif how == "first" or how == "last" or how == "min" or how == "max" then
      local v, order
      if how == "min" or how == "max" then v, order = str_ranks(c)
      else v = nd.where(c.codes:eq(0), 0/0, c.codes:astype("float64")) end
      local r = C.reduce(how, codes, k, v) -- NaN for a group of missing
      r = nd.where(nd.isnan(r), 0, r):astype("int64")
      if order then -- ranks back to codes
        local back = {0}
        for rk, j in ipairs(order) do back[rk + 1] = j end
        r = C.recode(r, nd.from_table(back, "int64"))
      end
      return strcol(r, c.dict)
    end
    error(sformat("dlua.frame: agg: '%s' of a string column", how), 0)
  end
  if how == "sum" or how == "count" or how == "min" or how == "max"
    or how == "first" or how == "last" then
    local r = C.reduce(how, codes, k, c)
    if how == "count" then return r:astype("int64") end
    return r
  end
  local s = C.reduce("sum", codes, k, c)
  local n = C.reduce("count", codes, k, c)
  local mean = s / n
  if how == "mean" then return mean end
  local m2 = C.reduce("m2", codes, k, c, mean)
  local var = m2 / (n - 1)
  if how == "var" then return var end
  return nd.sqrt(var)
end

local GroupBy = {__name = "dlua.frame.groupby"}
GroupBy.__index = GroupBy

function methods:groupby(keys)
  if type(keys) == "string" then keys = {keys} end
  if type(keys) ~= "table" or #keys == 0 then
    fail(2, "groupby: expects a column name or an array of them")
  end
  for _, n in ipairs(keys) do check_col(self, n, 2) end
  return setmetatable({df = self, keys = keys}, GroupBy)
end

function GroupBy:agg(spec)
  local df, keys = self.df, self.keys
  if type(spec) ~= "table" then
    fail(2, "agg: expects {column = \"op\" | {\"op\", ...}}")
  end
  local cols_list = {}
  for name, hows in pairs(spec) do
    check_col(df, name, 2)
    if type(hows) == "string" then hows = {hows} end
    for _, h in ipairs(hows) do
      if not AGGS[h] then
        fail(2, "agg: unknown aggregation '%s' (sum mean count min max std "
          .. "var first last nunique)", tostring(h))
      end
    end
    cols_list[#cols_list + 1] = {name, hows}
  end
  tsort(cols_list, function (a, b) return a[1] < b[1] end)
  local codes, k, first = group_codes(df, keys, 2)
  local names, cols = {}, {}
  for _, key in ipairs(keys) do
    names[#names + 1] = key
    cols[key] = take(df._cols[key], first)
  end
  for _, e in ipairs(cols_list) do
    local name, hows = e[1], e[2]
    for _, h in ipairs(hows) do
      local out = #hows == 1 and type(spec[name]) == "string" and name
        or name .. "_" .. h
      local ok, r = pcall(agg_one, codes, k, df._cols[name], h)
      if not ok then error(r, 2) end
      names[#names + 1] = out
      cols[out] = r
    end
  end
  return new(names, cols, 2):sort_values{by = keys}
end

for _, h in ipairs{"sum", "mean", "count", "min", "max", "std", "var",
  "first", "last", "nunique"} do
  GroupBy[h] = function (self)
    local spec = {}
    local iskey = {}
    for _, k in ipairs(self.keys) do iskey[k] = true end
    for _, n in ipairs(self.df._names) do
      if not iskey[n] then spec[n] = h end
    end
    return self:agg(spec)
  end
end

function methods:value_counts(name)
  local c = check_col(self, name, 2)
  local codes, k, first = factorize(c)
  local cnt = C.reduce("count", codes, k, nd.ones({#codes}))
  return new({name, "count"}, {[name] = take(c, first),
    count = cnt:astype("int64")}, 2):sort_values{by = {"count", name},
    ascending = {false, true}}
end

function methods:describe()
  local stats = {"count", "mean", "std", "min", "max"}
  local names, cols = {"stat"}, {stat = {n = #stats, table.unpack(stats)}}
  for _, n in ipairs(self._names) do
    local c = self._cols[n]
    if is_nd(c) and c.dtype ~= "bool" then
      local codes = nd.ones({self._n}, "int64")
      local v = {}
      for i, s in ipairs(stats) do
        local r = agg_one(codes, 1, c, s)
        v[i] = self._n > 0 and r:astype("float64"):get(1) or 0/0
      end
      names[#names + 1] = n
      cols[n] = nd.from_table(v)
    end
  end
  return new(names, cols, 2)
end

----------------------------------------------------------------------------
-- drop, rename, fillna, dropna, isin, drop_duplicates, nlargest,
-- nsmallest: pandas' names and defaults (README, "Data frames")
----------------------------------------------------------------------------

-- An options table o (nil: {}) whose keys are all in known.
local function opts_arg(o, who, known, level)
  if o == nil then return {} end
  if type(o) ~= "table" then
    fail(level + 1, "%s: options must be a table, got %s", who, type(o))
  end
  for k in pairs(o) do
    if not known[k] then
      local list = {}
      for n in pairs(known) do list[#list + 1] = n end
      tsort(list)
      fail(level + 1, "%s: unknown option '%s' (%s)", who, tostring(k),
        tconcat(list, ", "))
    end
  end
  return o
end

-- A column name or a non-empty array of them (strings), as a new array.
local function names_arg(v, who, what, level)
  if type(v) == "string" then return {v} end
  if type(v) ~= "table" or getmetatable(v) ~= nil or #v == 0 then
    local got = type(v)
    if got == "table" and getmetatable(v) == nil then got = "an empty table" end
    fail(level + 1, "%s: %s must be a column name or a non-empty array of "
      .. "names, got %s", who, what, got)
  end
  local list = {}
  for i, n in ipairs(v) do
    if type(n) ~= "string" then
      fail(level + 1, "%s: %s[%d] is a %s, not a column name", who, what, i,
        type(n))
    end
    list[i] = n
  end
  return list
end

-- errors = "raise" (the default) or "ignore", as pandas' drop and rename.
local function errors_arg(o, dflt, who, level)
  local e = o.errors
  if e == nil then return dflt end
  if e ~= "raise" and e ~= "ignore" then
    fail(level + 1, "%s: errors must be \"raise\" or \"ignore\", got %s",
      who, tostring(e))
  end
  return e
end

--- df:drop(cols [, {errors = "raise"|"ignore"}]): without those columns
--- (pandas' df.drop(columns=...); an unknown name is an error unless
--- errors = "ignore").
function methods:drop(cols, o)
  local list = names_arg(cols, "drop", "cols", 2)
  o = opts_arg(o, "drop", {errors = true}, 2)
  local raise = errors_arg(o, "raise", "drop", 2) == "raise"
  local gone = {}
  for _, n in ipairs(list) do
    if raise then check_col(self, n, 2) end
    gone[n] = true
  end
  local names, cols2 = {}, {}
  for _, n in ipairs(self._names) do
    if not gone[n] then
      names[#names + 1] = n
      cols2[n] = self._cols[n]
    end
  end
  return new(names, cols2, 2)
end

-- The new name of column n by mapper (a table or a function), checked.
local function renamed(mapper, n, level)
  local to
  if type(mapper) == "function" then to = mapper(n) else to = mapper[n] end
  if to == nil then return n end
  if type(to) ~= "string" then
    fail(level + 1, "rename: the new name of '%s' must be a string, got %s",
      n, type(to))
  end
  return to
end

--- df:rename{old = "new", ...} or df:rename(function (name) ... end
--- [, {errors = "ignore"|"raise"}]): the columns renamed (pandas'
--- df.rename(columns=...)); names not in the frame are ignored, as
--- pandas' default, unless errors = "raise".
function methods:rename(mapper, o)
  if type(mapper) ~= "function" and (type(mapper) ~= "table"
      or getmetatable(mapper) ~= nil) then
    fail(2, "rename: expects a table {old = \"new\", ...} or a function "
      .. "(name) -> new name, got %s", type(mapper))
  end
  o = opts_arg(o, "rename", {errors = true}, 2)
  if errors_arg(o, "ignore", "rename", 2) == "raise"
      and type(mapper) == "table" then
    local keys = {}
    for k in pairs(mapper) do keys[#keys + 1] = tostring(k) end
    tsort(keys)
    for _, k in ipairs(keys) do check_col(self, k, 2) end
  end
  local names, cols = {}, {}
  for i, n in ipairs(self._names) do
    local to = renamed(mapper, n, 2)
    names[i] = to
    if cols[to] ~= nil then
      fail(2, "rename: two columns would be named '%s'", to)
    end
    cols[to] = self._cols[n]
  end
  return new(names, cols, 2)
end

-- Whether fill value v suits column c: a number for a numeric column, a
-- string for a string column, a boolean for a bool one.
local function fill_fits(c, v)
  if is_strings(c) then return type(v) == "string" end
  if c.dtype == "bool" then return type(v) == "boolean" end
  return type(v) == "number"
end

-- Column c with its missing values (NaN, or code 0) set to v.
local function fill_col(c, v)
  if is_strings(c) then
    local miss = c.codes:eq(0)
    if not miss:any() then return c end
    local dict, code = c.dict, nil
    for j, s in ipairs(dict) do if s == v then code = j break end end
    if not code then -- a new entry, in a copy: dicts are shared
      local d2 = {}
      for j, s in ipairs(dict) do d2[j] = s end
      code = #d2 + 1
      d2[code] = v
      dict = d2
    end
    return strcol(nd.where(miss, code, c.codes), dict)
  end
  if c.dtype ~= "float64" and c.dtype ~= "float32" then return c end
  local miss = nd.isnan(c)
  if not miss:any() then return c end
  return nd.where(miss, v, c)
end

--- df:fillna(value | {col = value, ...}): missing values filled.  A
--- number fills the numeric columns and a string the string columns (a
--- column has one type: pandas would make an object column of the
--- others); a table fills each named column, whose type the value must
--- suit.  Names not in the frame are ignored, as in pandas.
-- fillna's argument, checked before anything is filled (the partitioned
-- frame's fillna checks it too, raising with its own fail); returns its
-- type.
function M._check_fillna(value, fail)
  local t = type(value)
  if t ~= "number" and t ~= "string" and (t ~= "table"
      or getmetatable(value) ~= nil) then
    fail(2, "fillna: expects a number, a string or a table {column = "
      .. "value}, got %s", t)
  end
  if t == "table" then
    for k, v in pairs(value) do
      if type(k) ~= "string" then
        fail(2, "fillna: column names must be strings, got %s", type(k))
      end
      local vt = type(v)
      if vt ~= "number" and vt ~= "string" and vt ~= "boolean" then
        fail(2, "fillna: the value for '%s' must be a number, string or "
          .. "boolean, got %s", k, vt)
      end
    end
  end
  return t
end

function methods:fillna(value)
  local t = M._check_fillna(value, fail)
  local cols = {}
  for _, n in ipairs(self._names) do
    local c, v = self._cols[n], value
    if t == "table" then
      v = value[n]
      if v ~= nil and not fill_fits(c, v) then
        fail(2, "fillna: column '%s' is %s, its fill value cannot be a %s",
          n, col_type(c), type(v))
      end
    elseif not fill_fits(c, v) then v = nil end
    cols[n] = v == nil and c or fill_col(c, v)
  end
  return new({tunpack(self._names)}, cols, 2)
end

-- Per row, true where column c's value is missing.
local function missing_of(c)
  if is_strings(c) then return c.codes:eq(0) end
  if c.dtype == "float64" or c.dtype == "float32" then return nd.isnan(c) end
  return nd.zeros({#c}, "bool")
end

--- df:dropna([{subset = col | {...}, how = "any"|"all", thresh = n}]):
--- without the rows missing a value in any (how = "any", the default) or
--- all of the subset's columns (default: every column), or, with thresh,
--- those with fewer than thresh values present.
function methods:dropna(o)
  o = opts_arg(o, "dropna", {subset = true, how = true, thresh = true}, 2)
  local subset = o.subset == nil and self._names
    or names_arg(o.subset, "dropna", "subset", 2)
  for _, n in ipairs(subset) do check_col(self, n, 2) end
  local how, thresh = o.how, o.thresh
  if how ~= nil and thresh ~= nil then
    fail(2, "dropna: give how or thresh, not both (as pandas)")
  end
  if how ~= nil and how ~= "any" and how ~= "all" then
    fail(2, "dropna: how must be \"any\" or \"all\", got %s", tostring(how))
  end
  if thresh ~= nil and math.type(thresh) ~= "integer" then
    fail(2, "dropna: thresh must be an integer, got %s",
      type(thresh) == "number" and tostring(thresh) or type(thresh))
  end
  if #subset == 0 then return self:head(self._n) end
  local nmiss = missing_of(self._cols[subset[1]]):astype("int64")
  for i = 2, #subset do
    nmiss = nmiss + missing_of(self._cols[subset[i]]):astype("int64")
  end
  local keep
  if thresh ~= nil then keep = nmiss:le(#subset - thresh)
  elseif how == "all" then keep = nmiss:lt(#subset)
  else keep = nmiss:eq(0) end
  return take_rows(self, C.which(keep))
end

-- A list of values (a Lua array, an ndarray or a string column) as a set
-- (numbers by value, 1 meeting true and 0 false as in pandas) and
-- whether it holds NaN.
local function value_set(v, who, level)
  local list
  if is_nd(v) then list = v:totable()
  elseif is_strings(v) then
    list = {}
    for i = 1, #v do list[#list + 1] = v[i] or nil end
  elseif type(v) == "table" and getmetatable(v) == nil then list = v
  else
    fail(level + 1, "%s: values must be an array (a list of values), got %s",
      who, type(v))
  end
  local set, nan = {}, false
  for i, x in ipairs(list) do
    local t = type(x)
    if x ~= x then nan = true
    elseif t == "number" or t == "string" then set[x] = true
    elseif t == "boolean" then set[x] = true set[x and 1 or 0] = true
    else
      fail(level + 1, "%s: value %d is a %s (numbers, strings, booleans)",
        who, i, t)
    end
    if x == 1 then set[true] = true elseif x == 0 then set[false] = true end
  end
  return set, nan
end

-- Per row, whether column c's value is in the set: each distinct value
-- looked up once, then mapped over the rows in C.
local function isin_col(c, set, nan)
  if is_strings(c) then
    local map = {false}
    for j, s in ipairs(c.dict) do map[j + 1] = set[s] == true end
    return C.recode(c.codes, nd.from_table(map, "bool"))
  end
  if #c == 0 then return nd.zeros({0}, "bool") end
  if c.dtype == "float64" or c.dtype == "int64" then
    -- a few numbers: one comparison over the rows each, in C
    local nums = {}
    for x in pairs(set) do
      if type(x) == "number" then
        nums[#nums + 1] = x
        if #nums > 8 then nums = nil break end
      end
    end
    if nums then
      local m = nan and c.dtype == "float64" and nd.isnan(c)
        or nd.zeros({#c}, "bool")
      for _, x in ipairs(nums) do m = m | c:eq(x) end
      return m
    end
  end
  local codes, k, first = factorize(c)
  local map = {nan}
  local u = k > 0 and C.take(c, first):totable() or {}
  for j = 1, k do map[j + 1] = set[u[j]] == true end
  return C.recode(codes, nd.from_table(map, "bool"))
end

--- df:isin(values | {col = values, ...}): a frame of bool columns, true
--- where the value is among values (an array; NaN matches NaN, a
--- missing string nothing), as pandas' DataFrame.isin; with a table, each
--- named column against its own values and the others all false.
--- df:isin{key = {"a", "b"}}.key is a mask for filter.
function methods:isin(values)
  if type(values) ~= "table" then
    fail(2, "isin: expects an array of values or a table {column = "
      .. "values}, got %s", type(values))
  end
  local per = getmetatable(values) == nil and values[1] == nil
    and next(values) ~= nil
  local cols, all, allnan = {}, nil, false
  if per then
    for k, v in pairs(values) do
      if type(k) ~= "string" then
        fail(2, "isin: column names must be strings, got %s", type(k))
      end
      value_set(v, "isin: column '" .. k .. "'", 2)
    end
  else
    all, allnan = value_set(values, "isin", 2)
  end
  for _, n in ipairs(self._names) do
    local c = self._cols[n]
    local set, nan = all, allnan
    if per then
      local v = values[n]
      if v ~= nil then set, nan = value_set(v, "isin", 2) end
    end
    cols[n] = set and isin_col(c, set, nan) or nd.zeros({self._n}, "bool")
  end
  return new({tunpack(self._names)}, cols, 2)
end

-- Codes per row for the rows' values in names, a missing value counting
-- as one more value (pandas' duplicated treats NaN as equal to NaN):
-- codes (1..k), k.
local function row_codes(df, names)
  local codes, k
  for i, n in ipairs(names) do
    local c2, k2 = factorize(df._cols[n])
    local miss = c2:eq(0)
    if miss:any() then
      k2 = k2 + 1
      c2 = nd.where(miss, k2, c2)
    end
    if i == 1 then codes, k = c2, k2
    else codes, k = C.combine(codes, k2, c2) end
  end
  return codes, k
end

local function keep_arg(o, who, level)
  local keep = o.keep
  if keep == nil then return "first" end
  if keep ~= "first" and keep ~= "last" and keep ~= false then
    fail(level + 1, "%s: keep must be \"first\", \"last\" or false, got %s",
      who, tostring(keep))
  end
  return keep
end

-- The rows (1-based, ascending, int64) that drop_duplicates keeps, and
-- the rows' codes: each row whose number is its code's lowest ("first")
-- or highest ("last"), or whose code has one row (false): O(rows) in C.
local function dedup_rows(df, subset, keep)
  local n = df._n
  if n == 0 or #subset == 0 then return nd_of_ints({}, 0) end
  local codes, k = row_codes(df, subset)
  if keep == false then
    local cnt = C.reduce("count", codes, k, nd.ones({n}))
    return C.which(C.take(cnt, codes):eq(1)), codes
  end
  local rows = nd.arange(1, n) -- 1..n (int64; arange includes its end)
  local at = C.reduce(keep == "first" and "min" or "max", codes, k, rows)
  return C.which(C.take(at, codes):eq(rows)), codes, k
end

-- drop_duplicates' subset and keep from its argument: nil, a column name
-- or array of them (the subset), or {subset =, keep =}.
local function dedup_args(df_names, o, who, level)
  if type(o) == "string" or (type(o) == "table" and o[1] ~= nil) then
    o = {subset = o}
  end
  o = opts_arg(o, who, {subset = true, keep = true}, level + 1)
  local subset = o.subset == nil and df_names
    or names_arg(o.subset, who, "subset", level + 1)
  return subset, keep_arg(o, who, level + 1)
end

--- df:drop_duplicates([subset | {subset = col | {...}, keep = "first" |
--- "last" | false}]): without the rows whose values in subset (default:
--- every column) repeat an earlier row's (keep = "first"), a later row's
--- ("last"), or any other row's (false: no copy kept).  Missing values
--- equal each other, as in pandas.  Rows keep their order.
function methods:drop_duplicates(o)
  local subset, keep = dedup_args(self._names, o, "drop_duplicates", 2)
  for _, n in ipairs(subset) do check_col(self, n, 2) end
  if #subset == 0 then return self:head(self._n) end
  local rows = dedup_rows(self, subset, keep)
  return take_rows(self, rows)
end

-- For dlua.dataframe's drop_duplicates with keep = false: the first row
-- of each distinct subset, with column cname the number of rows that
-- share it (the sum of cname where df has it: a combine step).
function M._dedup_counted(df, subset, cname)
  local w = df._cols[cname]
  if df._n == 0 then
    return df:assign{[cname] = w or nd.zeros({0}, "int64")}
  end
  local rows, codes, k = dedup_rows(df, subset, "first")
  local cnt = C.reduce("sum", codes, k, w or nd.ones({df._n}, "int64"))
  return take_rows(df, rows):assign{[cname] = C.take(cnt,
    C.take(codes, rows))}
end

-- nlargest / nsmallest: n and the column(s), checked (numeric columns
-- only, as pandas refuses object and bool dtypes).
local function top_args(self, n, cols, who, level)
  if math.type(n) ~= "integer" then
    fail(level + 1, "%s: n must be an integer, got %s", who,
      type(n) == "number" and tostring(n) or type(n))
  end
  local list = names_arg(cols, who, "columns", level + 1)
  for _, c in ipairs(list) do
    local col = check_col(self, c, level + 1)
    if is_strings(col) or col.dtype == "bool" then
      fail(level + 1, "%s: column '%s' is %s; %s takes numeric columns", who,
        c, col_type(col), who)
    end
  end
  return n < 0 and 0 or n, list
end

-- The n rows with the largest (asc false) or smallest values: the first
-- n of a stable sort (missing values last), as pandas' keep="first",
-- picked in C without sorting the rest.  With more columns only the rows
-- that tie with the n-th on the first can still move: the rows up to
-- the last of those are sorted by all the columns.
local function top_rows(self, n, list, asc)
  local c = self._cols[list[1]]
  local idx = C.topk(c, n, asc)
  if #list == 1 or #idx == 0 then return take_rows(self, idx) end
  local v = c:get(idx:get(#idx))
  if v ~= v then -- the cut reaches the missing values: every row may move
    return self:sort_values{by = list, ascending = asc}:head(n)
  end
  local cand = C.which(asc and c:le(v) or c:ge(v)) -- in row order: stable
  return take_rows(self, cand):sort_values{by = list, ascending = asc}:head(n)
end

--- df:nlargest(n, col | {...}): the n rows with the largest values of col
--- (ties by the next columns, then in row order; missing values last), as
--- pandas' nlargest with keep = "first".
function methods:nlargest(n, cols)
  local k, list = top_args(self, n, cols, "nlargest", 2)
  return top_rows(self, k, list, false)
end

--- df:nsmallest(n, col | {...}): the n rows with the smallest values.
function methods:nsmallest(n, cols)
  local k, list = top_args(self, n, cols, "nsmallest", 2)
  return top_rows(self, k, list, true)
end

-- merge(other, {on=, how=})
function methods:merge(other, o)
  if not is_frame(other) then fail(2, "merge: expects a frame, got %s", type(other)) end
  o = o or {}
  local on = type(o.on) == "string" and {o.on} or o.on
  if type(on) ~= "table" or #on == 0 then fail(2, "merge: needs {on = column(s)}") end
  local how = o.how or "inner"
  if how ~= "inner" and how ~= "left" and how ~= "outer" then
    fail(2, "merge: how must be \"inner\", \"left\" or \"outer\", got %s",
      tostring(how))
  end
  for _, n in ipairs(on) do
    local a, b = check_col(self, n, 2), check_col(other, n, 2)
    local ta, tb = col_type(a), col_type(b)
    local num = {int64 = true, float64 = true}
    if ta ~= tb and not (num[ta] and num[tb]) then
      fail(2, "merge: column '%s' is %s on the left and %s on the right", n,
        ta, tb)
    end
  end
  local lc, rc, k = M._joint_codes(self, other, on)
  local li, ri = C.join(lc, rc, k, how)
  local isOn = {}
  for _, n in ipairs(on) do isOn[n] = true end
  local names, cols = {}, {}
  local function gather(df, idx, n)
    local c = df._cols[n]
    if is_nd(c) then return C.take_missing(c, idx) end
    return strcol(C.take0(c.codes, idx), c.dict)
  end
  for _, n in ipairs(self._names) do
    local out = n
    if not isOn[n] and other._cols[n] ~= nil then out = n .. "_x" end
    names[#names + 1] = out
    local c = gather(self, li, n)
    if isOn[n] and how == "outer" then -- the key from the right side
      local r = gather(other, ri, n)
      if is_nd(c) then
        local miss = li:eq(0)
        if miss:any() then c = nd.where(miss, r:astype(c.dtype), c) end
      else
        local dict, cs = unify{c, r}
        c = strcol(nd.where(cs[1]:eq(0), cs[2], cs[1]), dict)
      end
    end
    cols[out] = c
  end
  for _, n in ipairs(other._names) do
    if not isOn[n] then
      local out = self._cols[n] ~= nil and n .. "_y" or n
      names[#names + 1] = out
      cols[out] = gather(other, ri, n)
    end
  end
  return new(names, cols, 2)
end

-- The codes of the `on` key columns over both frames together: codes
-- of a's rows, of b's rows (0: a missing key), and their count.
function M._joint_codes(a, b, on)
  local codes, k
  for i, n in ipairs(on) do
    local ca, cb = a._cols[n], b._cols[n]
    local both
    if is_nd(ca) and is_nd(cb) then
      if ca.dtype ~= cb.dtype then
        ca, cb = ca:astype("float64"), cb:astype("float64")
      end
      both = nd.concatenate{ca, cb}
    else
      local dict, cs = unify{ca, cb}
      both = strcol(nd.concatenate(cs), dict)
    end
    local c2, k2 = factorize(both)
    if i == 1 then codes, k = c2, k2
    else codes, k = C.combine(codes, k2, c2) end
  end
  return codes:slice({1, a._n}), codes:slice({a._n + 1, a._n + b._n}), k
end

--- frame.concat{df1, df2, ...}
function M.concat(list)
  if type(list) ~= "table" or #list == 0 then
    fail(2, "concat: expects a non-empty array of frames")
  end
  local first = list[1]
  for i, df in ipairs(list) do
    if not is_frame(df) then fail(2, "concat: item %d is not a frame", i) end
    if tconcat(df._names, ",") ~= tconcat(first._names, ",") then
      fail(2, "concat: frame %d has columns %s, frame 1 has %s", i,
        colnames_list(df), colnames_list(first))
    end
  end
  local cols = {}
  for _, n in ipairs(first._names) do
    local c = first._cols[n]
    local strings = false -- a string column anywhere: all-missing float64
    for _, df in ipairs(list) do -- parts (no value to type) become strings
      if is_strings(df._cols[n]) then strings = true break end
    end
    if strings then
      for _, df in ipairs(list) do
        local p = df._cols[n]
        if is_nd(p) and p.dtype == "float64" and (#p == 0 or nd.isnan(p):all())
          then c = strcol(nd.zeros({#p}, "int64"), {}) break end
      end
      if is_nd(c) then c = nil end
      for _, df in ipairs(list) do
        if c == nil and is_strings(df._cols[n]) then c = df._cols[n] end
      end
    end
    if is_nd(c) then
      local parts, ty = {}, c.dtype
      for i, df in ipairs(list) do
        local p = df._cols[n]
        if not is_nd(p) then fail(2, "concat: column '%s' differs in type", n) end
        if p.dtype ~= ty then ty = "float64" end
        parts[i] = p
      end
      for i, p in ipairs(parts) do
        if p.dtype ~= ty then parts[i] = p:astype(ty) end
      end
      cols[n] = C.concat(parts) or nd.concatenate(parts)
    else
      local parts = {}
      for i, df in ipairs(list) do
        local p = df._cols[n]
        if is_nd(p) and p.dtype == "float64" and (#p == 0 or nd.isnan(p):all())
        then
          p = strcol(nd.zeros({#p}, "int64"), {}) -- no value: all missing
        elseif is_nd(p) then
          fail(2, "concat: column '%s' is string in one frame and %s in "
            .. "frame %d", n, p.dtype, i)
        end
        parts[i] = p
      end
      local dict, cs, maps = unify(parts, true)
      if #cs > 1 then
        local all = C.concat(cs, maps)
        if not all then
          local _, recoded = unify(parts)
          all = nd.concatenate(recoded)
        end
        cs = {all}
      end
      cols[n] = strcol(cs[1], dict)
    end
  end
  return new({table.unpack(first._names)}, cols, 2)
end

local function fmt_value(v)
  if v == nil then return "NaN" end
  if math.type(v) == "float" then
    if v == math.floor(v) and v > -1e15 and v < 1e15 then
      return sformat("%.1f", v)
    end
    return sformat("%.6g", v)
  end
  return tostring(v)
end

local function csv_field(v, sep)
  if v == nil then return "" end
  local s = math.type(v) == "float" and sformat("%.17g", v) or tostring(v)
  if s:find('[' .. sep .. '"\r\n]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end

function methods:to_csv_string(o)
  o = o or {}
  if type(o) ~= "table" then
    fail(2, "to_csv_string: options must be a table, got %s", type(o))
  end
  local sep = o.sep or ","
  local lines = {tconcat(self._names, sep)}
  for i = 1, self._n do
    local p = {}
    for j, n in ipairs(self._names) do
      p[j] = csv_field(col_value(self._cols[n], i), sep)
    end
    lines[#lines + 1] = tconcat(p, sep)
  end
  return tconcat(lines, "\n") .. "\n"
end

function methods:to_csv(path, o)
  if type(path) ~= "string" then fail(2, "to_csv: expects a path") end
  local f, err = io.open(path, "wb")
  if not f then fail(2, "to_csv: %s", err) end
  f:write(self:to_csv_string(o))
  f:close()
  return path
end

--[[ print(df): aligned like pandas, the middle elided past 60 rows. ]]
function Frame.__tostring(df)
  local rows = {}
  local n = df._n
  local show = {}
  if n > 60 then
    for i = 1, 5 do show[#show + 1] = i end
    show[#show + 1] = false
    for i = n - 4, n do show[#show + 1] = i end
  else
    for i = 1, n do show[i] = i end
  end
  local header = {""}
  for _, name in ipairs(df._names) do header[#header + 1] = name end
  rows[1] = header
  for _, i in ipairs(show) do
    local r = {i and tostring(i - 1) or "..."}
    for _, name in ipairs(df._names) do
      r[#r + 1] = i and fmt_value(col_value(df._cols[name], i)) or "..."
    end
    rows[#rows + 1] = r
  end
  local width = {}
  for _, r in ipairs(rows) do
    for j, s in ipairs(r) do
      if (width[j] or 0) < #s then width[j] = #s end
    end
  end
  local out = {}
  for ri, r in ipairs(rows) do
    local p = {}
    for j, s in ipairs(r) do
      p[j] = j == 1 and s .. srep(" ", width[j] - #s)
        or srep(" ", width[j] - #s) .. s
    end
    out[ri] = tconcat(p, "  ")
  end
  out[#out + 1] = sformat("\n[%d rows x %d columns]", n, #df._names)
  return tconcat(out, "\n")
end


----------------------------------------------------------------------------
-- Partial aggregations (for dlua.dataframe's tree of group-bys)
----------------------------------------------------------------------------

--- frame.wrap(t): give a frame sent over the wire its methods back (and
-- its string columns theirs).
function M.wrap(t)
  if t._distinct then
    for _, d in pairs(t._distinct) do M.wrap(d) end
  end
  for _, c in pairs(t._cols) do
    if type(c) == "table" and not is_nd(c) and rawget(c, "dict") ~= nil then
      setmetatable(c, STRMT)
    end
  end
  return setmetatable(t, Frame)
end

--- frame._strip(df): a frame as plain tables for the wire (no metatables
-- on it or its string columns).
function M._strip(df)
  local cols = {}
  for k, c in pairs(df._cols) do
    if is_strings(c) then c = {codes = c.codes, dict = c.dict, n = c.n} end
    cols[k] = c
  end
  local dist
  if df._distinct then -- nunique's distinct rows, of a partial aggregation
    dist = {}
    for k, d in pairs(df._distinct) do dist[k] = M._strip(d) end
  end
  return {_names = df._names, _cols = cols, _n = df._n, _distinct = dist}
end

function methods:_take(idx)
  return take_rows(self, nd_of_ints(idx, #idx))
end
-- Rows by an int64 ndarray of 1-based rows.
function methods:_take_nd(idx) return take_rows(self, idx) end

local TREE_AGGS = {sum = true, mean = true, count = true, min = true,
  max = true, std = true, var = true, first = true, last = true,
  nunique = true}

-- The columns an agg spec needs, checked: {name, ...} sorted, and those
-- that want nunique (their distinct values travel up the tree).
function M._agg_columns(spec)
  if type(spec) ~= "table" then
    error("dlua.dataframe: agg: expects {column = \"op\" | {\"op\", ...}}", 0)
  end
  local cols, ucols, useen = {}, {}, {}
  for name, hows in pairs(spec) do
    if type(hows) == "string" then hows = {hows} end
    for _, h in ipairs(hows) do
      if not TREE_AGGS[h] then
        error(sformat("dlua.dataframe: agg: '%s' is not supported on a "
          .. "partitioned frame (sum mean count min max std var first last "
          .. "nunique)", tostring(h)), 0)
      end
      if h == "nunique" and not useen[name] then
        useen[name] = true
        ucols[#ucols + 1] = name
      end
    end
    cols[#cols + 1] = name
  end
  tsort(cols)
  tsort(ucols)
  return cols, ucols
end

-- The distinct (keys..., col) rows of df with col present: what nunique
-- needs of a partition.
local function distinct(df, keys, col)
  local all = {}
  for i, k in ipairs(keys) do all[i] = k end
  local iskey = false
  for _, k in ipairs(keys) do if k == col then iskey = true end end
  if not iskey then all[#all + 1] = col end
  local _, _, first = group_codes(df, all, 2)
  local cols = {}
  for _, n in ipairs(all) do cols[n] = take(check_col(df, n, 2), first) end
  return new(all, cols, 2)
end

-- Rows per group of df, as a frame of keys + __n (int64).
local function grouped_count(df, keys)
  local codes, k, first = group_codes(df, keys, 2)
  local names, cols = {}, {}
  for _, key in ipairs(keys) do
    names[#names + 1] = key
    cols[key] = take(df._cols[key], first)
  end
  names[#names + 1] = "__n"
  cols.__n = C.reduce("count", codes, k, nd.ones({#codes})):astype("int64")
  return new(names, cols, 2)
end

local function grouped(df, keys, level)
  local codes, k, first = group_codes(df, keys, level + 1)
  local names, cols = {}, {}
  for _, key in ipairs(keys) do
    names[#names + 1] = key
    cols[key] = take(df._cols[key], first)
  end
  return codes, k, names, cols
end

-- Per partition: keys + name__count, __sum, __min, __max, __first, __last,
-- __m2 (squared deviations from the partition's group mean).
function M._partial_agg(df, keys, vcols, ucols)
  local codes, k, names, cols = grouped(df, keys, 2)
  for _, name in ipairs(vcols) do
    local c = check_col(df, name, 2)
    local stats = is_nd(c) and {"count", "sum", "min", "max", "first", "last"}
      or {"count", "min", "max", "first", "last"}
    for _, h in ipairs(stats) do
      local r = agg_one(codes, k, c, h)
      if h == "count" and is_nd(r) then r = r:astype("float64") end
      names[#names + 1] = name .. "__" .. h
      cols[name .. "__" .. h] = r
    end
    if is_nd(c) then
      local mean = cols[name .. "__sum"] / cols[name .. "__count"]
      names[#names + 1] = name .. "__m2"
      cols[name .. "__m2"] = C.reduce("m2", codes, k, c, mean)
    end
  end
  local r = new(names, cols, 2)
  if ucols and #ucols > 0 then
    r._distinct = {}
    for _, u in ipairs(ucols) do r._distinct[u] = distinct(df, keys, u) end
  end
  return r
end

-- Combine partials (concatenated) into one partial.
function M._combine_agg(df, keys, vcols)
  local codes, k, names, cols = grouped(df, keys, 2)
  for _, name in ipairs(vcols) do
    local function col(h) return df._cols[name .. "__" .. h] end
    local cnt = C.reduce("sum", codes, k, col("count"))
    names[#names + 1] = name .. "__count"
    cols[name .. "__count"] = cnt
    for _, h in ipairs{"sum", "min", "max", "first", "last"} do
      local c = col(h)
      if c ~= nil then
        names[#names + 1] = name .. "__" .. h
        cols[name .. "__" .. h] = agg_one(codes, k, c,
          h == "sum" and "sum" or h)
      end
    end
    if col("m2") ~= nil then
      -- Chan et al.: M2 = sum m2_i + sum n_i (mean_i - mean)^2
      local gmean = cols[name .. "__sum"] / cnt
      local d = col("sum") / col("count") - C.take(gmean, codes)
      local w = col("count") * d * d
      w = nd.where(nd.isnan(w), 0, w)
      names[#names + 1] = name .. "__m2"
      cols[name .. "__m2"] = C.reduce("sum", codes, k, col("m2")) +
        C.reduce("sum", codes, k, w)
    end
  end
  return new(names, cols, 2)
end

-- The distinct rows of the partials in list, for each column of ucols,
-- merged into the combined partial r.
function M._combine_distinct(r, list, keys, ucols)
  if not ucols or #ucols == 0 then return r end
  r._distinct = {}
  for _, u in ipairs(ucols) do
    local ds = {}
    for i, p in ipairs(list) do ds[i] = p._distinct[u] end
    r._distinct[u] = distinct(M.concat(ds), keys, u)
  end
  return r
end

-- nunique of col for each row (group) of the combined partial df: its
-- distinct rows counted per group, aligned to df's rows (0 for a group
-- with no value).
local function nunique_of(df, keys, col)
  local d = df._distinct and df._distinct[col]
  if d == nil then error("dlua.dataframe: agg: no distinct values for '"
    .. col .. "'", 0) end
  local cnt = distinct(d, keys, col)
  cnt = grouped_count(cnt, keys)
  local lc, rc, k = M._joint_codes(df, cnt, keys)
  local _, ri = C.join(lc, rc, k, "left")
  local c = C.take_missing(cnt._cols.__n, ri)
  return nd.where(nd.isnan(c), 0, c):astype("int64")
end

-- The requested results from a combined partial, sorted by the keys.
function M._finish_agg(df, keys, spec)
  local names, cols = {}, {}
  for _, key in ipairs(keys) do
    names[#names + 1] = key
    cols[key] = df._cols[key]
  end
  local list = {}
  for name, hows in pairs(spec) do list[#list + 1] = name end
  tsort(list)
  for _, name in ipairs(list) do
    local hows = spec[name]
    local single = type(hows) == "string"
    if single then hows = {hows} end
    for _, h in ipairs(hows) do
      local function col(x) return df._cols[name .. "__" .. x] end
      local r
      if h == "nunique" then r = nunique_of(df, keys, name)
      elseif h == "count" then r = col("count"):astype("int64")
      elseif h == "mean" then r = col("sum") / col("count")
      elseif h == "var" or h == "std" then
        r = col("m2") / (col("count") - 1)
        if h == "std" then r = nd.sqrt(r) end
      else r = col(h) end
      if r == nil then
        error(sformat("dlua.dataframe: agg: '%s' of string column '%s'", h,
          name), 0)
      end
      local out = single and name or name .. "_" .. h
      names[#names + 1] = out
      cols[out] = r
    end
  end
  return new(names, cols, 2):sort_values{by = keys}
end

return M

--[[ dlua.dataframe: a partitioned data frame over the cluster, in Dask's
  model: a lazy graph whose partitions are dlua.frame frames.

  local dd = require "dlua.dataframe"
  local ddf = dd.read_csv("data/*.csv", {blocksize = "64MiB"})
  print(ddf:groupby("key"):agg{x = "mean", y = "sum"}:compute())

Partitions travel as plain tables {_names, _cols, _n} (ndarrays and
dictionary-encoded string columns as plain tables); frame.wrap gives them their methods back.  README.md,
section "Data frames", documents the API. ]]

local frame = require "dlua.frame"
local nd = require "dlua.ndarray"

local error, ipairs, pairs, type, tostring, setmetatable, getmetatable =
  error, ipairs, pairs, type, tostring, setmetatable, getmetatable
local sformat, tconcat, tunpack = string.format, table.concat, table.unpack

local M = {}
local DF = {__name = "dlua.dataframe"}
-- Methods; a column's name (Dask's ddf.x, a lazy Series, which dlua does
-- not have) is an error that says what to use, not a silent nil.
function DF.__index(self, k)
  local m = DF[k]
  if m ~= nil or type(k) ~= "string" then return m end
  local names = rawget(self, "names")
  if names then
    for _, n in ipairs(names) do
      if n == k then
        error(("dlua.dataframe: ddf.%s: a partitioned frame has no column "
          .. "objects; use ddf:select{\"%s\"}, or a function of each "
          .. "partition (ddf:filter(function (df) return df.%s:gt(0) end), "
          .. "ddf:assign{...}, ddf:map_partitions(...))"):format(k, k, k), 2)
      end
    end
  end
  return nil
end
-- #ddf: the number of rows, computed (as Dask's len(ddf)); the same as
-- ddf:count() on the default client.
function DF.__len(self)
  local n = self:count()
  return n
end

local counter = 0
local base = math.random(0, 0xffffff)
-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error

local function fresh(prefix)
  counter = counter + 1
  return sformat("%s-%06x%d", prefix, base, counter)
end

local function fail(level, fmt, ...)
  error("dlua.dataframe: " .. sformat(fmt, ...), level + 1)
end

local function pkey(name, i) return name .. "-" .. i end

--- tostring(ddf): "dlua.dataframe<read_csv-..., npartitions=4, columns:
-- a, b, c; 1 graph layer>", lazy like Dask's structure view: nothing runs.
function DF.__tostring(d)
  local nl = 0
  for _ in pairs(d.layers) do nl = nl + 1 end
  return sformat("dlua.dataframe<%s, npartitions=%d, columns: %s; %d graph "
    .. "layer%s>", d.name, d.npartitions,
    d.names and tconcat(d.names, ", ") or "(known once computed)", nl,
    nl == 1 and "" or "s")
end

local function new(prefix, n, layers, names, name)
  return setmetatable({name = name or fresh(prefix), npartitions = n,
    layers = layers, names = names}, DF)
end

local strip = frame._strip -- a frame as plain tables for the wire
M._strip = strip

local function wrap(t) return frame.wrap(t) end

local function with_layer(d, prefix, mk, names)
  local name = fresh(prefix)
  local layer = {}
  for i = 1, d.npartitions do
    local dep = pkey(d.name, i)
    layer[pkey(name, i)] = mk(i, dep)
  end
  local layers = {}
  for k, v in pairs(d.layers) do layers[k] = v end
  layers[name] = layer
  if names == false then names = nil -- unknown until computed
  elseif names == nil then names = d.names end
  return new(prefix, d.npartitions, layers, names, name)
end

----------------------------------------------------------------------------
-- Sources
----------------------------------------------------------------------------

local function parse_size(v, level)
  if v == nil then return nil end
  if type(v) == "number" then return v end
  local num, unit = tostring(v):match("^%s*([%d%.]+)%s*(%a*)%s*$")
  local mult = {[""] = 1, B = 1, KB = 1e3, MB = 1e6, GB = 1e9, KiB = 1024,
    MiB = 1024 ^ 2, GiB = 1024 ^ 3}
  if not num or not mult[unit] then
    fail(level + 1, "read_csv: blocksize must be a number or a size like "
      .. "\"64MiB\", got %s", tostring(v))
  end
  return math.floor(tonumber(num) * mult[unit])
end

local function expand(spec, level)
  local list = type(spec) == "string" and {spec} or spec
  if type(list) ~= "table" or #list == 0 then
    fail(level + 1, "read_csv: expects a glob or a non-empty array of paths")
  end
  local bagio = require "dlua.bagio"
  local out = {}
  for _, p in ipairs(list) do
    if type(p) ~= "string" then fail(level + 1, "read_csv: paths must be strings") end
    if p:find("[*?[]") then
      local m, err = bagio.glob(p)
      if not m then fail(level + 1, "read_csv: %s", err) end
      if #m == 0 then fail(level + 1, "read_csv: no files match '%s'", p) end
      for _, f in ipairs(m) do out[#out + 1] = f end
    else
      out[#out + 1] = p
    end
  end
  return out
end

-- Count the newlines in the first `stop` bytes of path.
local function lines_before(path, stop)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n, left = 0, stop
  while left > 0 do
    local s = f:read(left < 1048576 and left or 1048576)
    if not s then break end
    local _, c = s:gsub("\n", "")
    n, left = n + c, left - #s
  end
  f:close()
  return n
end

--[[ Task: read block {path, start, stop} with spec {names, types, sep,
  on_error, header}.  The block holds the lines that start in
  [start, stop); the first block of a file has the header. ]]
function M._read_block(spec, blk)
  local path, start, stop = blk[1], blk[2], blk[3]
  local first = start == 0
  local o = {types = spec.types, sep = spec.sep, on_error = spec.on_error,
    header = first, names = (not first) and spec.names or nil}
  -- the block is read and parsed in C: no Lua string of its bytes
  local ok, r = pcall(frame._from_csv_bytes, {path, start, stop}, o, path, 1,
    1)
  if ok and r == nil then -- an empty block: no rows, the columns' types
    local empty = frame._from_csv_bytes(tconcat(spec.names, spec.sep or ",")
      .. "\n", {types = spec.types, sep = spec.sep}, path, 1, 1)
    return strip(empty)
  end
  if not ok then
    -- name the file's own line: add the lines before this block
    local msg = tostring(r)
    local at = msg:find(path .. ":", 1, true)
    if not first and at then
      local lnum = msg:match("^(%d+)", at + #path + 1)
      if lnum then
        local extra = lines_before(path, start)
        msg = msg:sub(1, at + #path) .. (tonumber(lnum) + extra)
          .. msg:sub(at + #path + 1 + #lnum)
      end
    end
    error(msg:gsub("^.-dlua%.frame: ", "dlua.frame: "), 0)
  end
  if first then
    local names = r:columns()
    if tconcat(names, "\0") ~= tconcat(spec.names, "\0") then
      error(sformat("dlua.dataframe: %s: header '%s' differs from '%s'", path,
        tconcat(names, ","), tconcat(spec.names, ",")), 0)
    end
  end
  return strip(r)
end

--- dataframe.read_csv(glob, {blocksize=, types=, sep=, on_error=})
function M.read_csv(spec, o)
  o = o or {}
  if type(o) ~= "table" then fail(2, "read_csv: options must be a table") end
  local known = {blocksize = true, types = true, sep = true, on_error = true}
  for k in pairs(o) do
    if not known[k] then
      fail(2, "read_csv: unknown option '%s' (blocksize, types, sep, "
        .. "on_error)", tostring(k))
    end
  end
  local paths = expand(spec, 2)
  local bs = parse_size(o.blocksize, 2)
  -- the header and the types from a sample of the first file
  local f, err = io.open(paths[1], "rb")
  if not f then fail(2, "read_csv: %s", err) end
  local sample = f:read(65536) or ""
  f:close()
  if sample == "" then fail(2, "read_csv: %s: empty file: no header", paths[1]) end
  local cut = #sample
  if #sample == 65536 then cut = (sample:find("\n[^\n]*$") or #sample) end
  local ok, s = pcall(frame._from_csv_bytes, sample:sub(1, cut), {types = o.types,
    sep = o.sep, on_error = "null"}, paths[1], 1, 1)
  if not ok then error(s, 2) end
  local types = s._read_types
  for k, v in pairs(o.types or {}) do types[k] = v end
  local blocks = {}
  for _, p in ipairs(paths) do
    local fh, ferr = io.open(p, "rb")
    if not fh then fail(2, "read_csv: %s", ferr) end
    local size = fh:seek("end")
    fh:close()
    if size == 0 then fail(2, "read_csv: %s: empty file: no header", p) end
    if not bs or size <= bs then
      blocks[#blocks + 1] = {p, 0, size}
    else
      for st = 0, size - 1, bs do
        blocks[#blocks + 1] = {p, st, st + bs < size and st + bs or size}
      end
    end
  end
  local rspec = {names = s:columns(), types = types, sep = o.sep,
    on_error = o.on_error}
  local name = fresh("read_csv")
  local layer = {}
  for i, b in ipairs(blocks) do
    layer[pkey(name, i)] = {fn = M._read_block, args = {rspec, b, n = 2},
      deps = {}}
  end
  return new("read_csv", #blocks, {[name] = layer}, rspec.names, name)
end

--- dataframe.from_frame(df, npartitions)
function M.from_frame(df, np)
  if not frame.is_frame(df) then fail(2, "from_frame: expects a dlua.frame") end
  np = np or 1
  if math.type(np) ~= "integer" or np < 1 then
    fail(2, "from_frame: npartitions must be a positive integer")
  end
  local n = #df
  local name = fresh("from_frame")
  local layer = {}
  for i = 1, np do
    local a, b = (i - 1) * n // np + 1, i * n // np
    local idx = {}
    for r = a, b do idx[#idx + 1] = r end
    layer[pkey(name, i)] = strip(df:_take(idx))
  end
  return new("from_frame", np, {[name] = layer}, df:columns(), name)
end

----------------------------------------------------------------------------
-- Per-partition operations
----------------------------------------------------------------------------

function M._map(f, part) return strip(f(wrap(part))) end
function M._filter(f, part)
  local df = wrap(part)
  return strip(df:filter(f(df)))
end
function M._select(cols, part) return strip(wrap(part):select(cols)) end

-- The columns f's result has (map_partitions' metadata): meta's (a frame
-- or an array of names), else those of f run here on an empty frame with
-- d's columns (float64), as Dask infers it; false when f fails there or
-- returns no frame (the columns are then known once computed).
local function map_meta(d, f, meta, level)
  if meta ~= nil then
    if frame.is_frame(meta) then return meta:columns() end
    if type(meta) ~= "table" or #meta == 0 then
      fail(level + 1, "map_partitions: meta must be a frame or an array of "
        .. "column names, got %s", type(meta))
    end
    for i, n in ipairs(meta) do
      if type(n) ~= "string" then
        fail(level + 1, "map_partitions: meta[%d] is a %s, not a column name",
          i, type(n))
      end
    end
    return {table.unpack(meta)}
  end
  if not d.names then return false end
  local cols = {}
  for _, n in ipairs(d.names) do cols[n] = {} end
  local ok, r = pcall(f, frame.from_table(cols, d.names))
  if ok and frame.is_frame(r) then return r:columns() end
  return false
end

--- ddf:map_partitions(f [, {meta = frame | {names}}]): f(frame) -> frame,
--- per partition.
function DF:map_partitions(f, o)
  if type(f) ~= "function" then fail(2, "map_partitions: expects a function") end
  if o ~= nil and type(o) ~= "table" then
    fail(2, "map_partitions: options must be a table, got %s", type(o))
  end
  local names = map_meta(self, f, o and o.meta, 2)
  return with_layer(self, "map_partitions", function (_, dep)
    return {fn = M._map, args = {f, dep, n = 2}, deps = {dep}}
  end, names)
end

function M._assign(t, part) return strip(wrap(part):assign(t)) end

--- ddf:assign{z = function(df) return df.x * 2 end, one = 1}: new or
--- replaced columns, per partition.  A value is a function of the
--- partition's frame returning a column, or a number (every row).
function DF:assign(t)
  if type(t) ~= "table" then
    fail(2, "assign: expects a table {name = function(df) ... end | "
      .. "number}, got %s", type(t))
  end
  local added = {}
  for k, v in pairs(t) do
    if type(k) ~= "string" then
      fail(2, "assign: column names must be strings, got %s", type(k))
    end
    if type(v) ~= "function" and type(v) ~= "number" then
      fail(2, "assign: column '%s' must be a function(df) returning a "
        .. "column, or a number, got %s", k, type(v))
    end
    added[#added + 1] = k
  end
  table.sort(added)
  local names = false
  if self.names then
    names = {table.unpack(self.names)}
    local have = {}
    for _, n in ipairs(names) do have[n] = true end
    for _, k in ipairs(added) do
      if not have[k] then names[#names + 1] = k end
    end
  end
  return with_layer(self, "assign", function (_, dep)
    return {fn = M._assign, args = {t, dep, n = 2}, deps = {dep}}
  end, names)
end

--- ddf:filter(f): f(frame) -> bool column; keeps those rows.
function DF:filter(f)
  if type(f) ~= "function" then
    fail(2, "filter: expects a function(df) returning a bool column")
  end
  return with_layer(self, "filter", function (_, dep)
    return {fn = M._filter, args = {f, dep, n = 2}, deps = {dep}}
  end)
end

function DF:select(cols)
  if type(cols) == "string" then cols = {cols} end
  if type(cols) ~= "table" then
    error("dlua.dataframe: select: expects a column name or a list of "
      .. "names, got " .. type(cols), 2)
  end
  if self.names then
    local have = {}
    for _, n in ipairs(self.names) do have[n] = true end
    for _, c in ipairs(cols) do
      if not have[c] then
        fail(2, "select: no column '%s' (columns: '%s')", tostring(c),
          tconcat(self.names, "', '"))
      end
    end
  end
  return with_layer(self, "select", function (_, dep)
    return {fn = M._select, args = {cols, dep, n = 2}, deps = {dep}}
  end, cols)
end

----------------------------------------------------------------------------
-- Running
----------------------------------------------------------------------------

local function run(layers, keys, o, level)
  local D = require "dlua.delayed"
  local g = {}
  for _, layer in pairs(layers) do for k, t in pairs(layer) do g[k] = t end end
  local ok, r = pcall(D.compute_graph, g, keys, o or {})
  if not ok then error(r, level + 1) end
  return r
end

function M._concat(...)
  local parts = {...}
  local fs = {}
  for i, p in ipairs(parts) do fs[i] = wrap(p) end
  return strip(frame.concat(fs))
end

--- ddf:compute([opts]) -> dlua.frame
function DF:compute(o)
  local keys = {}
  for i = 1, self.npartitions do keys[i] = pkey(self.name, i) end
  local parts = run(self.layers, keys, o, 2)
  local fs = {}
  for i, p in ipairs(parts) do fs[i] = wrap(p) end
  return frame.concat(fs)
end

function M._head(n, part) return strip(wrap(part):head(n)) end

--- ddf:head(n): the first n rows, reading the first partition only.
function DF:head(n, o)
  n = n or 5
  if math.type(n) ~= "integer" then
    error("dlua.dataframe: head: n must be an integer, got "
      .. (type(n) == "number" and tostring(n) or type(n)), 2)
  end
  local name = fresh("head")
  local dep = pkey(self.name, 1)
  local layers = {}
  for k, v in pairs(self.layers) do layers[k] = v end
  layers[name] = {[name] = {fn = M._head, args = {n, dep, n = 2}, deps = {dep}}}
  return wrap(run(layers, name, o, 2))
end

function M._count(part) return part._n end
function M._sum(...)
  local s = 0
  for _, v in ipairs{...} do s = s + v end
  return s
end

--- ddf:count() -> number of rows (computed).
function DF:count(o)
  local name = fresh("count")
  local layers = {}
  for k, v in pairs(self.layers) do layers[k] = v end
  local layer, keys = {}, {}
  for i = 1, self.npartitions do
    local dep = pkey(self.name, i)
    layer[pkey(name, i)] = {fn = M._count, args = {dep, n = 1}, deps = {dep}}
    keys[i] = pkey(name, i)
  end
  local tot = name .. "-total"
  keys.n = #keys
  layer[tot] = {fn = M._sum, args = keys, deps = {tunpack(keys)}}
  layers[name] = layer
  return run(layers, tot, o, 2)
end

-- A reduction: task f(args..., partition) per partition, then
-- combine(args..., partials...) on their results; computed.
local function reduce_parts(self, prefix, f, combine, args, o)
  local name = fresh(prefix)
  local layers = {}
  for k, v in pairs(self.layers) do layers[k] = v end
  local layer, keys = {}, {}
  local na = #args
  for i = 1, self.npartitions do
    local dep = pkey(self.name, i)
    local a = {table.unpack(args, 1, na)}
    a[na + 1] = dep
    a.n = na + 1
    layer[pkey(name, i)] = {fn = f, args = a, deps = {dep}}
    keys[i] = pkey(name, i)
  end
  local tot = name .. "-total"
  local a = {table.unpack(args, 1, na)}
  for i, k in ipairs(keys) do a[na + i] = k end
  a.n = na + #keys
  layer[tot] = {fn = combine, args = a, deps = {tunpack(keys)}}
  layers[name] = layer
  local r = run(layers, tot, o, 3)
  return r
end

function M._value_counts(col, part)
  return strip(wrap(part):value_counts(col))
end
function M._value_counts_total(col, ...)
  local fs = {}
  for i, p in ipairs{...} do fs[i] = wrap(p) end
  local all = frame.concat(fs):groupby(col):agg{count = "sum"}
  return strip(all:sort_values{by = {"count", col}, ascending = {false, true}})
end

--- ddf:value_counts(col [, opts]) -> a dlua.frame {col, count}, most
--- frequent first (computed: counts per partition, then summed).
function DF:value_counts(col, o)
  if type(col) ~= "string" then
    fail(2, "value_counts: expects a column name, got %s", type(col))
  end
  if self.names then
    local ok = false
    for _, n in ipairs(self.names) do ok = ok or n == col end
    if not ok then
      fail(2, "value_counts: no column '%s' (columns: %s)", col,
        table.concat(self.names, ", "))
    end
  end
  local r = reduce_parts(self, "value_counts", M._value_counts,
    M._value_counts_total, {col}, o)
  return wrap(r)
end

function M._describe(part) return strip(wrap(part):describe()) end
-- Each partition's count, mean, std (n - 1), min and max per column,
-- combined exactly as one pass would (Chan et al.'s pairwise update of
-- the sum of squared deviations).
function M._describe_total(...)
  local parts, names = {...}, nil
  local acc = {}
  for _, p in ipairs(parts) do
    local d = wrap(p)
    if not names then
      names = {}
      for i, n in ipairs(d:columns()) do if i > 1 then names[#names + 1] = n end end
      for _, n in ipairs(names) do
        acc[n] = {n = 0, mean = 0, m2 = 0, min = math.huge, max = -math.huge}
      end
    end
    for _, n in ipairs(names) do
      local c, a = d._cols[n], acc[n]
      local cnt = c:get(1)
      if cnt > 0 then
        local mean, sd = c:get(2), c:get(3)
        local m2 = cnt > 1 and sd * sd * (cnt - 1) or 0
        local tot = a.n + cnt
        local delta = mean - a.mean
        a.mean = a.mean + delta * cnt / tot
        a.m2 = a.m2 + m2 + delta * delta * a.n * cnt / tot
        a.n = tot
        a.min = math.min(a.min, c:get(4))
        a.max = math.max(a.max, c:get(5))
      end
    end
  end
  local cols = {stat = {"count", "mean", "std", "min", "max"}}
  local order = {"stat"}
  for _, n in ipairs(names or {}) do
    local a = acc[n]
    local nan = 0 / 0
    cols[n] = {n = 5, a.n, a.n > 0 and a.mean or nan,
      a.n > 1 and math.sqrt(a.m2 / (a.n - 1)) or nan,
      a.n > 0 and a.min or nan, a.n > 0 and a.max or nan}
    order[#order + 1] = n
  end
  return strip(frame.from_table(cols, order))
end

--- ddf:describe([opts]) -> a dlua.frame as frame:describe() gives (count,
--- mean, std, min, max of the numeric columns), computed from one
--- summary per partition.
function DF:describe(o)
  local r = reduce_parts(self, "describe", M._describe, M._describe_total,
    {}, o)
  return wrap(r)
end

function M._to_csv(path, part)
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then
    local ok, err = require("dlua.bagio").mkdirs(dir)
    if not ok then error(tostring(err), 0) end
  end
  wrap(part):to_csv(path)
  return path
end

--- ddf:to_csv("out/part-*.csv"): one file per partition, by the workers.
function DF:to_csv(pat, o)
  if type(pat) ~= "string" or not pat:find("*", 1, true) then
    fail(2, "to_csv: expects a path with a '*' (replaced by the partition "
      .. "number)")
  end
  local name = fresh("to_csv")
  local layers = {}
  for k, v in pairs(self.layers) do layers[k] = v end
  local layer, keys = {}, {}
  for i = 1, self.npartitions do
    local dep = pkey(self.name, i)
    local path = pat:gsub("%*", tostring(i - 1))
    layer[pkey(name, i)] = {fn = M._to_csv, args = {path, dep, n = 2},
      deps = {dep}}
    keys[i] = pkey(name, i)
  end
  layers[name] = layer
  return run(layers, keys, o, 2)
end

----------------------------------------------------------------------------
-- groupby:agg as a tree of partial aggregations
----------------------------------------------------------------------------

local GB = {}
GB.__index = GB

function DF:groupby(keys)
  if type(keys) == "string" then keys = {keys} end
  if type(keys) ~= "table" or #keys == 0 then
    fail(2, "groupby: expects a column name or an array of them")
  end
  if self.names then
    local have = {}
    for _, n in ipairs(self.names) do have[n] = true end
    for _, k in ipairs(keys) do
      if not have[k] then
        fail(2, "groupby: no column '%s' (columns: '%s')", tostring(k),
          tconcat(self.names, "', '"))
      end
    end
  end
  return setmetatable({d = self, keys = keys}, GB)
end

function M._partial(keys, cols, ucols, part)
  return strip(frame._partial_agg(wrap(part), keys, cols, ucols))
end
function M._combine(keys, cols, ucols, ...)
  local fs = {}
  for i, p in ipairs{...} do fs[i] = wrap(p) end
  return strip(frame._combine_distinct(frame._combine_agg(frame.concat(fs),
    keys, cols), fs, keys, ucols))
end
function M._finish(keys, spec, part)
  return strip(frame._finish_agg(wrap(part), keys, spec))
end

--- gb:agg{x = "mean", y = {"sum", "max"}} -> dataframe of one partition
function GB:agg(spec, o)
  o = o or {}
  local every = o.split_every or 8
  local ok, cols, ucols = pcall(frame._agg_columns, spec)
  if not ok then error(cols, 2) end
  local d, keys = self.d, self.keys
  local name = fresh("groupby-agg")
  local layer = {}
  local level = {}
  for i = 1, d.npartitions do
    local k = pkey(name .. "-p", i)
    layer[k] = {fn = M._partial, args = {keys, cols, ucols, pkey(d.name, i),
      n = 4},
      deps = {pkey(d.name, i)}}
    level[i] = k
  end
  local depth = 0
  while #level > 1 do
    depth = depth + 1
    local nxt = {}
    for s = 1, #level, every do
      local args, deps = {keys, cols, ucols}, {}
      for j = s, math.min(s + every - 1, #level) do
        args[#args + 1] = level[j]
        deps[#deps + 1] = level[j]
      end
      args.n = #args
      local k = sformat("%s-c%d-%d", name, depth, #nxt + 1)
      layer[k] = {fn = M._combine, args = args, deps = deps}
      nxt[#nxt + 1] = k
    end
    level = nxt
  end
  layer[pkey(name, 1)] = {fn = M._finish, args = {keys, spec, level[1], n = 3},
    deps = {level[1]}}
  local layers = {}
  for k, v in pairs(d.layers) do layers[k] = v end
  layers[name] = layer
  return new("groupby-agg", 1, layers, false, name)
end

-- gb:sum(), gb:mean(), ... -> agg of every column that is not a key, as
-- dlua.frame's groupby (and Dask's) have them.
for _, h in ipairs{"sum", "mean", "count", "min", "max", "std", "var",
  "first", "last", "nunique"} do
  GB[h] = function (self, o)
    local names = self.d.names
    if not names then
      fail(2, "groupby():%s: this dataframe's columns are not known before "
        .. "it is computed; name them with agg{col = \"%s\", ...}", h, h)
    end
    local spec, iskey = {}, {}
    for _, k in ipairs(self.keys) do iskey[k] = true end
    for _, n in ipairs(names) do
      if not iskey[n] then spec[n] = h end
    end
    local r = self:agg(spec, o)
    return r
  end
end

----------------------------------------------------------------------------
-- Shuffles: merge (hash partitioning), sort_values and set_index (range
-- partitioning).  Each input partition is split into nout pieces by one
-- task; a getter task per (input, output) pair picks one piece on the
-- worker that holds the split, so only that piece moves; each output
-- partition concatenates its pieces (Dask's task-based shuffle).
----------------------------------------------------------------------------

local C = require "dlua.framec"

function M._get(t, j) return t[j] end

local function split_by(df, codes, nout)
  local out = {}
  for j, idx in ipairs(C.split(codes, nout)) do
    out[j] = strip(df:_take_nd(idx))
  end
  return out
end

function M._hash_split(on, nout, part)
  local df = wrap(part)
  local cols = {}
  for i, n in ipairs(on) do
    cols[i] = df._cols[n]
    if cols[i] == nil then
      error(sformat("dlua.dataframe: merge: no column '%s' (columns: '%s')",
        n, tconcat(df._names, "', '")), 0)
    end
  end
  return split_by(df, C.hash_bucket(nout, cols), nout)
end

-- Bucket of each row by sorted bounds (0-based): numbers in C, strings
-- here; missing values last; descending order reverses the buckets.
local function range_codes(c, bounds, asc)
  local nb = bounds.n
  if frame.is_strings(c) then -- each dict entry's bucket, then per row in C
    local map = {nb}
    for j, v in ipairs(c.dict) do
      local lo, hi = 1, nb + 1
      while lo < hi do
        local mid = (lo + hi) // 2
        if bounds[mid] <= v then lo = mid + 1 else hi = mid end
      end
      map[j + 1] = asc and lo - 1 or nb - (lo - 1)
    end
    return C.recode(c.codes, nd.from_table(map, "int64"))
  end
  local bn = nb > 0 and nd.from_table({tunpack(bounds, 1, nb)}, c.dtype)
    or nd.zeros({0}, c.dtype)
  local codes = C.range_bucket(c, bn)
  if not asc then
    local miss = c.dtype == "float64" and nd.isnan(c) or nil
    codes = nb - codes
    if miss and miss:any() then codes = nd.where(miss, nb, codes) end
  end
  return codes
end

function M._range_split(by, bounds, asc, part)
  local df = wrap(part)
  return split_by(df, range_codes(df._cols[by], bounds, asc), bounds.n + 1)
end

function M._merge_parts(on, how, a, b)
  return strip(wrap(a):merge(wrap(b), {on = on, how = how}))
end

function M._sort_part(by, asc, ...)
  local fs = {}
  for i, p in ipairs{...} do fs[i] = wrap(p) end
  return strip(frame.concat(fs):sort_values{by = by, ascending = asc})
end

-- Up to `want` values at even steps through the sorted non-missing
-- values of column `by`, with the partition's min and max.
function M._sample(by, want, part)
  local df = wrap(part)
  local c = df._cols[by]
  if c == nil then
    error(sformat("dlua.dataframe: no column '%s' (columns: '%s')", by,
      tconcat(df._names, "', '")), 0)
  end
  local vals = {}
  if frame.is_strings(c) then
    local sorted = frame.wrap(strip(frame.from_table({v = c}):sort_values("v")))
    local sc = sorted._cols.v
    for i = 1, #sc do
      local v = sc[i]
      if not v then break end
      vals[i] = v
    end
  else
    if c.dtype == "bool" then
      error("dlua.dataframe: sort_values: a bool column cannot be a sort key "
        .. "of a partitioned frame", 0)
    end
    local sorted = C.take(c, C.argsort(c, true))
    for i, v in ipairs(sorted:totable()) do
      if v ~= v then break end
      vals[i] = v
    end
  end
  local n, out = #vals, {}
  if n == 0 then return {n = 0} end
  local step = math.max(1, n / want)
  local x = 1
  while x <= n do out[#out + 1] = vals[math.floor(x)] x = x + step end
  return {n = n, vals = out, min = vals[1], max = vals[n],
    dtype = frame.is_strings(c) and "string"
      or c.dtype}
end

-- A new dataframe of nout partitions: the split tasks of d by
-- split(args..., part), getters, then finish(fargs..., pieces...).
local function shuffle(layers, d, name, nout, split, sargs)
  local layer = layers[name] or {}
  layers[name] = layer
  local getters = {}
  for i = 1, d.npartitions do
    local dep = pkey(d.name, i)
    local sk = pkey(name .. "-split-" .. d.name, i)
    local args = {tunpack(sargs)}
    args[#args + 1] = dep
    args.n = #args
    layer[sk] = {fn = split, args = args, deps = {dep}}
    for j = 1, nout do
      local gk = sformat("%s-get-%s-%d-%d", name, d.name, i, j)
      layer[gk] = {fn = M._get, args = {sk, j, n = 2}, deps = {sk}}
      getters[j] = getters[j] or {}
      getters[j][i] = gk
    end
  end
  return getters -- getters[j] = the piece keys of output j
end

local function copy_layers(...)
  local layers = {}
  for _, d in ipairs{...} do
    for k, v in pairs(d.layers) do layers[k] = v end
  end
  return layers
end

local function check_names(d, list, who, level)
  if not d.names then return end
  local have = {}
  for _, n in ipairs(d.names) do have[n] = true end
  for _, c in ipairs(list) do
    if not have[c] then
      fail(level + 1, "%s: no column '%s' (columns: '%s')", who, tostring(c),
        tconcat(d.names, "', '"))
    end
  end
end

--[[ ddf:merge(other, {on =, how = "inner"|"left"|"outer", npartitions =,
  shuffle = true}) -> dataframe.  other: a dataframe or an in-memory
  frame.  An in-memory frame or a one-partition dataframe joins each
  partition directly (a broadcast join, for "inner" and "left"); else both
  sides are hash-partitioned on the `on` columns through the workers and
  bucket j of the left merges with bucket j of the right. ]]
function DF:merge(other, o)
  o = o or {}
  if type(o) ~= "table" then fail(2, "merge: options must be a table") end
  local known = {on = true, how = true, npartitions = true, shuffle = true}
  for k in pairs(o) do
    if not known[k] then
      fail(2, "merge: unknown option '%s' (on, how, npartitions, shuffle)",
        tostring(k))
    end
  end
  local on = type(o.on) == "string" and {o.on} or o.on
  if type(on) ~= "table" or #on == 0 then
    fail(2, "merge: needs {on = column(s)}")
  end
  local how = o.how or "inner"
  if how ~= "inner" and how ~= "left" and how ~= "outer" then
    fail(2, "merge: how must be \"inner\", \"left\" or \"outer\", got %s",
      tostring(how))
  end
  if frame.is_frame(other) then
    for _, n in ipairs(on) do
      if other._cols[n] == nil then
        fail(2, "merge: no column '%s' on the right (columns: %s)", n,
          "'" .. tconcat(other:columns(), "', '") .. "'")
      end
    end
    other = M.from_frame(other, 1)
  elseif not M.is_dataframe(other) then
    fail(2, "merge: expects a dataframe or a frame, got %s", type(other))
  end
  check_names(self, on, "merge", 2)
  check_names(other, on, "merge", 2)
  local names = false
  local name = fresh("merge")
  local layers = copy_layers(self, other)
  local layer = {}
  layers[name] = layer
  if other.npartitions == 1 and how ~= "outer" and o.shuffle ~= true then
    local rk = pkey(other.name, 1)
    for i = 1, self.npartitions do
      local dep = pkey(self.name, i)
      layer[pkey(name, i)] = {fn = M._merge_parts, args = {on, how, dep, rk,
        n = 4}, deps = {dep, rk}}
    end
    return new("merge", self.npartitions, layers, names, name)
  end
  local nout = o.npartitions or math.max(self.npartitions, other.npartitions)
  if math.type(nout) ~= "integer" or nout < 1 then
    fail(2, "merge: npartitions must be a positive integer")
  end
  local gl = shuffle(layers, self, name, nout, M._hash_split, {on, nout})
  local gr = shuffle(layers, other, name, nout, M._hash_split, {on, nout})
  for j = 1, nout do
    local lk, rk = pkey(name .. "-left", j), pkey(name .. "-right", j)
    local la, ra = {n = #gl[j]}, {n = #gr[j]}
    for i, k in ipairs(gl[j]) do la[i] = k end
    for i, k in ipairs(gr[j]) do ra[i] = k end
    layer[lk] = {fn = M._concat, args = la, deps = {tunpack(gl[j])}}
    layer[rk] = {fn = M._concat, args = ra, deps = {tunpack(gr[j])}}
    layer[pkey(name, j)] = {fn = M._merge_parts, args = {on, how, lk, rk,
      n = 4}, deps = {lk, rk}}
  end
  return new("merge", nout, layers, names, name)
end

local function sort_spec(by, o, who, level)
  if type(by) == "table" and o == nil then by, o = by.by, by end
  o = o or {}
  if type(by) ~= "string" then
    fail(level + 1, "%s: expects a column name (one sort key on a "
      .. "partitioned frame)", who)
  end
  local asc = o.ascending
  if asc == nil then asc = true end
  if type(asc) ~= "boolean" then
    fail(level + 1, "%s: ascending must be a boolean", who)
  end
  local np = o.npartitions
  if np ~= nil and (math.type(np) ~= "integer" or np < 1) then
    fail(level + 1, "%s: npartitions must be a positive integer", who)
  end
  return by, asc, np, o
end

-- Sample, choose bounds (on the client), then range-partition and sort
-- each partition.  Returns the dataframe and its divisions.
local function range_sort(d, by, asc, nout, o, level)
  check_names(d, {by}, "sort_values", level + 1)
  local name = fresh("sample")
  local layers = copy_layers(d)
  local layer, keys = {}, {}
  local want = 20 * nout
  for i = 1, d.npartitions do
    local dep = pkey(d.name, i)
    keys[i] = pkey(name, i)
    layer[keys[i]] = {fn = M._sample, args = {by, want, dep, n = 3},
      deps = {dep}}
  end
  layers[name] = layer
  local samples = run(layers, keys, {client = o.client,
    scheduler = o.scheduler}, level + 1)
  local all, lo, hi = {}, nil, nil
  for _, s in ipairs(samples) do
    if s.n > 0 then
      for _, v in ipairs(s.vals) do all[#all + 1] = v end
      if lo == nil or s.min < lo then lo = s.min end
      if hi == nil or s.max > hi then hi = s.max end
    end
  end
  table.sort(all)
  local bounds = {n = 0}
  for j = 1, nout - 1 do
    local v = all[math.floor(j * #all / nout) + 1]
    if v ~= nil and v > lo and (bounds.n == 0 or v > bounds[bounds.n]) then
      bounds.n = bounds.n + 1
      bounds[bounds.n] = v
    end
  end
  local np = bounds.n + 1
  local sname = fresh("sort_values")
  layers = copy_layers(d)
  local g = shuffle(layers, d, sname, np, M._range_split, {by, bounds, asc})
  for j = 1, np do
    local args = {by, asc}
    for _, k in ipairs(g[j]) do args[#args + 1] = k end
    args.n = #args
    layers[sname][pkey(sname, j)] = {fn = M._sort_part, args = args,
      deps = {tunpack(g[j])}}
  end
  local divisions = false
  if lo ~= nil then
    divisions = {lo}
    for j = 1, bounds.n do divisions[#divisions + 1] = bounds[j] end
    divisions[#divisions + 1] = hi
  end
  return new("sort_values", np, layers, d.names, sname), divisions
end

--[[ ddf:sort_values(col [, {ascending = true, npartitions =, client =,
  scheduler =}]) (client and scheduler: for the sampling run): a sample
  of the column from every partition gives npartitions - 1 bounds (this
  runs the graph up to here once, as Dask does); rows are then range-
  partitioned through the workers and each partition sorted (missing
  values last).  Partition j holds the rows in [bound j-1, bound j). ]]
function DF:sort_values(by, o)
  local col, asc, np, opts = sort_spec(by, o, "sort_values", 2)
  local r = range_sort(self, col, asc, np or self.npartitions, opts, 2)
  return r
end

--[[ ddf:set_index(col [, {npartitions =, client =, scheduler =}]): sorted by col, with known
  divisions: ddf.index = col and ddf.divisions = {d1, ..., dn+1} (the
  lowest value, the bounds, the highest), so that partition j holds the
  index values in [d_j, d_j+1) (the last one up to dn+1 inclusive;
  missing values in the last). ]]
function DF:set_index(col, o)
  local by, _, np, opts = sort_spec(col, o, "set_index", 2)
  local r, divisions = range_sort(self, by, true, np or self.npartitions,
    opts, 2)
  r.index = by
  r.divisions = divisions
  return r
end

function M._loc(by, lo, hi, part)
  local df = wrap(part)
  local c = df._cols[by]
  local mask
  if frame.is_strings(c) then -- each dict entry once, then per row in C
    local map = {false}
    for j, v in ipairs(c.dict) do
      map[j + 1] = (lo == nil or v >= lo) and (hi == nil or v <= hi)
    end
    mask = C.recode(c.codes, nd.from_table(map, "bool"))
  else
    mask = nd.ones({#c}, "bool")
    if lo ~= nil then mask = mask & c:ge(lo) end
    if hi ~= nil then mask = mask & c:le(hi) end
  end
  return strip(df:filter(mask))
end

--[[ ddf:loc(lo, hi): the rows whose index (set_index) lies in [lo, hi]
  (nil: unbounded), reading only the partitions the divisions allow. ]]
function DF:loc(lo, hi)
  if not self.index then
    fail(2, "loc: needs an index with known divisions (use set_index)")
  end
  local dv = self.divisions
  local keep = {}
  for j = 1, self.npartitions do
    local a, b = dv and dv[j], dv and dv[j + 1]
    local last = j == self.npartitions
    local ok = not dv or ((hi == nil or a <= hi) and
      (lo == nil or (last and lo <= b) or lo < b))
    if ok then keep[#keep + 1] = j end
  end
  local name = fresh("loc")
  local layers = copy_layers(self)
  local layer = {}
  layers[name] = layer
  for i, j in ipairs(keep) do
    local dep = pkey(self.name, j)
    layer[pkey(name, i)] = {fn = M._loc, args = {self.index, lo, hi, dep,
      n = 4}, deps = {dep}}
  end
  if #keep == 0 then -- an empty frame of the right columns
    local dep = pkey(self.name, 1)
    layer[pkey(name, 1)] = {fn = M._head, args = {0, dep, n = 2},
      deps = {dep}}
    keep[1] = 1
  end
  local r = new("loc", #keep, layers, self.names, name)
  r.index = self.index
  if dv then
    r.divisions = {}
    for _, j in ipairs(keep) do r.divisions[#r.divisions + 1] = dv[j] end
    r.divisions[#r.divisions + 1] = dv[keep[#keep] + 1]
  end
  return r
end

----------------------------------------------------------------------------
-- drop, rename, fillna, dropna, isin (per partition), drop_duplicates,
-- nlargest and nsmallest (reductions to one partition), as dask.dataframe
----------------------------------------------------------------------------

-- The strings among v (a name, or an array's strings): the columns an
-- argument mentions, for checking it when d's columns are not known.
local function mentioned(v)
  if type(v) == "string" then return {v} end
  local out = {}
  if type(v) == "table" and getmetatable(v) == nil then
    for _, n in ipairs(v) do
      if type(n) == "string" then out[#out + 1] = n end
    end
  end
  return out
end

-- Runs frame method m on an empty frame of d's columns (those mentioned
-- when d's are not known), as Dask computes meta: the frame's checks of
-- the arguments become the dataframe's (raised at the caller's line), and
-- the result's columns are the dataframe's (false when d's are unknown).
local function meta_run(d, m, mention, level, ...)
  local names = d.names or mention
  local cols, seen, list = {}, {}, {}
  for _, n in ipairs(names) do
    if not seen[n] then
      seen[n] = true
      list[#list + 1] = n
      cols[n] = {}
    end
  end
  local empty = frame.from_table(cols, list)
  local ok, r = pcall(empty[m], empty, ...)
  if not ok then
    error((tostring(r):gsub("^dlua%.frame: ", "dlua.dataframe: ")), level + 1)
  end
  return d.names and r:columns() or false
end

function M._method(m, argv, part)
  local df = wrap(part)
  return strip(df[m](df, tunpack(argv, 1, argv.n)))
end

-- A per-partition layer of frame method m with arguments ..., whose
-- result has columns names.
local function per_part(d, m, names, ...)
  local argv = table.pack(...)
  return with_layer(d, m, function (_, dep)
    return {fn = M._method, args = {m, argv, dep, n = 3}, deps = {dep}}
  end, names)
end

--- ddf:drop(cols [, {errors =}]): per partition, as frame:drop.
function DF:drop(cols, o)
  local names = meta_run(self, "drop", mentioned(cols), 2, cols, o)
  return per_part(self, "drop", names, cols, o)
end

--- ddf:rename(mapper [, {errors =}]): per partition, as frame:rename.
function DF:rename(mapper, o)
  local mention = {}
  if type(mapper) == "table" and getmetatable(mapper) == nil then
    for k in pairs(mapper) do
      if type(k) == "string" then mention[#mention + 1] = k end
    end
    table.sort(mention)
  end
  local names = meta_run(self, "rename", mention, 2, mapper, o)
  return per_part(self, "rename", names, mapper, o)
end

--- ddf:fillna(value | {col = value}): per partition, as frame:fillna (the
--- types of the columns are checked by the tasks: a dataframe knows its
--- columns' names, not their types).
function DF:fillna(value)
  frame._check_fillna(value, fail)
  return per_part(self, "fillna", self.names or false, value)
end

--- ddf:dropna([{subset =, how =, thresh =}]): per partition.
function DF:dropna(o)
  meta_run(self, "dropna", mentioned(type(o) == "table" and o.subset), 2, o)
  return per_part(self, "dropna", self.names or false, o)
end

--- ddf:isin(values | {col = values}): per partition, a dataframe of bool
--- columns.
function DF:isin(values)
  meta_run(self, "isin", {}, 2, values)
  return per_part(self, "isin", self.names or false, values)
end

-- A lazy one-partition reduction (Dask's reduction, split_out = 1):
-- fn(args..., part) on each partition, then fn(args..., parts...) on up to
-- `every` results at a time until one is left; finish(args..., it) last
-- (when given).
local function tree_reduce(d, prefix, fn, finish, args, every, names)
  local name = fresh(prefix)
  local layer, level = {}, {}
  local na = #args
  local function task(f, deps)
    local a = {tunpack(args, 1, na)}
    for i, k in ipairs(deps) do a[na + i] = k end
    a.n = na + #deps
    return {fn = f, args = a, deps = deps}
  end
  for i = 1, d.npartitions do
    level[i] = pkey(name .. "-p", i)
    layer[level[i]] = task(fn, {pkey(d.name, i)})
  end
  local depth = 0
  while #level > 1 do
    depth = depth + 1
    local nxt = {}
    for s = 1, #level, every do
      local deps = {}
      for j = s, math.min(s + every - 1, #level) do deps[#deps + 1] = level[j] end
      nxt[#nxt + 1] = sformat("%s-c%d-%d", name, depth, #nxt + 1)
      layer[nxt[#nxt]] = task(fn, deps)
    end
    level = nxt
  end
  if finish then layer[pkey(name, 1)] = task(finish, {level[1]})
  else -- the root is the partition
    layer[pkey(name, 1)], layer[level[1]] = layer[level[1]], nil
  end
  local layers = copy_layers(d)
  layers[name] = layer
  return new(prefix, 1, layers, names, name)
end

local function split_every_arg(o, who, level)
  local e = o and o.split_every
  if e == nil then return 8 end
  if math.type(e) ~= "integer" or e < 2 then
    fail(level + 1, "%s: split_every must be an integer of at least 2, got %s",
      who, tostring(e))
  end
  return e
end

local function concat_parts(...)
  local parts = table.pack(...)
  if parts.n == 1 then return wrap(parts[1]) end
  local fs = {}
  for i = 1, parts.n do fs[i] = wrap(parts[i]) end
  return frame.concat(fs)
end

-- The column that carries the copies of a row up the tree for keep = false.
local DUPN = "__dlua_dup_n"

function M._dedup(subset, keep, ...)
  local df = concat_parts(...)
  if subset == false then -- every column (but the count)
    subset = {}
    for _, n in ipairs(df._names) do
      if n ~= DUPN then subset[#subset + 1] = n end
    end
  end
  if keep == false then return strip(frame._dedup_counted(df, subset, DUPN)) end
  return strip(df:drop_duplicates{subset = subset, keep = keep})
end

function M._dedup_finish(_, _, part)
  local df = wrap(part)
  return strip(df:filter(df._cols[DUPN]:eq(1)):drop(DUPN))
end

--[[ ddf:drop_duplicates([subset | {subset =, keep = "first"|"last"|false,
  split_every = 8}]) -> a dataframe of one partition, as Dask's (split_out
  = 1): each partition drops its own duplicates, then the results are
  concatenated `split_every` at a time and dropped again; rows in order.
  keep = false sends each kept row with its number of copies, and the
  last step keeps those with one. ]]
function DF:drop_duplicates(o)
  if type(o) == "string" or (type(o) == "table" and o[1] ~= nil) then
    o = {subset = o}
  end
  local fo, every = o, 8
  if type(o) == "table" then -- frame:drop_duplicates' options, checked there
    fo = {}
    for k, v in pairs(o) do if k ~= "split_every" then fo[k] = v end end
    every = split_every_arg(o, "drop_duplicates", 2)
  end
  meta_run(self, "drop_duplicates", mentioned(type(fo) == "table"
    and fo.subset), 2, fo)
  local subset = fo and fo.subset
  subset = type(subset) == "string" and {subset} or subset
    or self.names or false -- false: every column, known once computed
  local keep = fo and fo.keep
  if keep == nil then keep = "first" end
  return tree_reduce(self, "drop_duplicates", M._dedup,
    keep == false and M._dedup_finish or nil, {subset, keep}, every,
    self.names or false)
end

function M._top(how, n, cols, ...)
  local df = concat_parts(...)
  return strip(df[how](df, n, cols))
end

local function top(self, how, n, cols, o)
  if o ~= nil and type(o) ~= "table" then
    fail(3, "%s: options must be a table, got %s", how, type(o))
  end
  for k in pairs(o or {}) do
    if k ~= "split_every" then
      fail(3, "%s: unknown option '%s' (split_every)", how, tostring(k))
    end
  end
  local every = split_every_arg(o, how, 3)
  meta_run(self, how, mentioned(cols), 3, n, cols)
  return tree_reduce(self, how, M._top, nil, {how, n, cols}, every,
    self.names or false)
end

--- ddf:nlargest(n, col | {...} [, {split_every = 8}]) -> a dataframe of
--- one partition: each partition's n largest, then the n largest of
--- those (Dask's reduction); ties and order as frame:nlargest.
function DF:nlargest(n, cols, o)
  local r = top(self, "nlargest", n, cols, o)
  return r
end

--- ddf:nsmallest(n, col | {...} [, {split_every = 8}]): the same, smallest.
function DF:nsmallest(n, cols, o)
  local r = top(self, "nsmallest", n, cols, o)
  return r
end

----------------------------------------------------------------------------
-- persist, visualize, from_bag
----------------------------------------------------------------------------

local function graph_of(d)
  local g = {}
  for _, layer in pairs(d.layers) do for k, t in pairs(layer) do g[k] = t end end
  return g
end

--[[ ddf:persist([opts]) -> the same dataframe with its partitions computed
  and held on the workers (in this process with scheduler = "sync"); its
  graph is then only their futures, so later graphs start from them. ]]
function DF:persist(o)
  local keys = {}
  for i = 1, self.npartitions do keys[i] = pkey(self.name, i) end
  local D = require "dlua.delayed"
  local ok, vals = pcall(D.persist_graph, graph_of(self), keys, o or {})
  if not ok then error(vals, 2) end
  local name = fresh("persist")
  local layer = {}
  for i = 1, #keys do layer[pkey(name, i)] = vals[i] end
  local r = new("persist", self.npartitions, {[name] = layer}, self.names,
    name)
  r.index, r.divisions = self.index, self.divisions
  return r
end

local function dot_id(s) return '"' .. tostring(s):gsub('["\\]', "\\%0") .. '"' end

--[[ ddf:visualize([filename]) -> the task graph as Graphviz DOT text; with
  a filename, written there (.dot/.gv as text, .svg/.png/.pdf through
  Graphviz's dot) and the filename returned.  Partition keys are bold. ]]
function DF:visualize(filename)
  local g = graph_of(self)
  local names = {}
  for k in pairs(g) do names[#names + 1] = k end
  table.sort(names)
  local out = {"digraph dlua_dataframe {", "  graph [rankdir=BT];"}
  for _, k in ipairs(names) do
    local t = g[k]
    local task = type(t) == "table" and getmetatable(t) == nil and t.fn ~= nil
    out[#out + 1] = sformat("  %s [label=%s, shape=%s];", dot_id(k),
      dot_id((k:gsub("%-[%x]+%-", "-", 1))), task and "box" or "ellipse")
    if task then
      for _, dk in ipairs(t.deps or {}) do
        out[#out + 1] = sformat("  %s -> %s;", dot_id(dk), dot_id(k))
      end
    end
  end
  for i = 1, self.npartitions do
    out[#out + 1] = sformat("  %s [style=bold];", dot_id(pkey(self.name, i)))
  end
  out[#out + 1] = "}"
  local text = tconcat(out, "\n") .. "\n"
  if filename == nil then return text end
  if type(filename) ~= "string" then
    fail(2, "visualize: filename must be a string, got %s", type(filename))
  end
  local ext = (filename:match("%.(%w+)$") or ""):lower()
  if ext == "dot" or ext == "gv" then
    local f, err = io.open(filename, "w")
    if not f then fail(2, "visualize: %s", err) end
    f:write(text)
    f:close()
    return filename
  end
  if ext ~= "svg" and ext ~= "png" and ext ~= "pdf" then
    fail(2, "visualize: unknown file type '%s' (use .dot, .svg, .png or .pdf)",
      filename)
  end
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  local ok = os.execute(sformat("dot -T%s -o '%s' '%s' 2>/dev/null", ext,
    filename:gsub("'", "'\\''"), tmp))
  os.remove(tmp)
  if not ok then
    fail(2, "visualize: could not write '%s' (needs Graphviz's dot; .dot "
      .. "files need nothing)", filename)
  end
  return filename
end

function M._from_rows(names, part)
  local rows = {}
  for i, e in ipairs(part) do
    if type(e) ~= "table" then
      error(sformat("dlua.dataframe: from_bag: element %d of a partition is "
        .. "a %s, expected a record or an array", i, type(e)), 0)
    end
    if e[1] ~= nil then -- an array: values in the order of names
      local r = {}
      for j, n in ipairs(names) do r[n] = e[j] end
      e = r
    end
    rows[i] = e
  end
  local cols = {}
  for _, n in ipairs(names) do
    local v = {}
    for i, r in ipairs(rows) do v[i] = r[n] end
    v.n = #rows
    cols[n] = v
  end
  return strip(frame.from_table(cols, names))
end

--[[ dataframe.from_bag(bag, columns) -> a dataframe of the bag's
  partitions, one frame each: elements are records (tables keyed by column
  name) or arrays (values in the order of columns); a missing value is nil.
  Columns' types are inferred per partition (int64 meeting float64 becomes
  float64 when partitions meet). ]]
function M.from_bag(b, columns)
  local bag = require "dlua.bag"
  if getmetatable(b) ~= bag.Bag then
    fail(2, "from_bag: expects a dlua.bag, got %s", type(b))
  end
  if type(columns) ~= "table" or #columns == 0 then
    fail(2, "from_bag: needs the column names, e.g. from_bag(b, {\"key\", "
      .. "\"x\"})")
  end
  local seen = {}
  for _, c in ipairs(columns) do
    if type(c) ~= "string" then fail(2, "from_bag: column names must be strings") end
    if seen[c] then fail(2, "from_bag: duplicate column name '%s'", c) end
    seen[c] = true
  end
  local m = bag._materialize(b)
  local name = fresh("from_bag")
  local layers = {}
  for k, v in pairs(m.layers) do layers[k] = v end
  local layer = {}
  for i = 1, m.npartitions do
    local dep = pkey(m.name, i)
    layer[pkey(name, i)] = {fn = M._from_rows, args = {columns, dep, n = 2},
      deps = {dep}}
  end
  layers[name] = layer
  return new("from_bag", m.npartitions, layers, {tunpack(columns)}, name)
end

M.is_dataframe = function (v) return getmetatable(v) == DF end
return M

--[==[
dlua.bag -- parallel collections of Lua values (Dask's bag).

  local bag = require("dlua").bag
  local b = bag.from_sequence({1, 2, 3, 4, 5, 6}, {npartitions = 3})
  print(b:map(function (x) return x * x end):filter(function (x)
    return x % 2 == 0 end):compute())                 --> {4, 16, 36}
  print(b:sum():compute())                            --> 21
  local top = bag.read_text("logs/*.txt")
    .str:split():flatten():frequencies():topk(10, function (kv)
      return kv[2] end):compute()

A bag is npartitions partitions, each a Lua array, made by tasks of the
graph it holds.  Per-element steps (map, filter, flatten, pluck, starmap,
remove, the .str methods) are not tasks of their own: a chain of them is
fused into the task that makes the partition, or into the first step of
a reduction, so each element goes through the whole chain in one pass
and no intermediate partition is built.  Reductions are trees: partials
per partition, combined split_every (default 8) at a time.  See README.md,
section "Bags", for every function.

Tasks run the functions in this module's table (they travel by name) and
the users' functions (they travel as closures).
]==]

local error, type, tostring, tonumber, pairs, ipairs, select, next =
  error, type, tostring, tonumber, pairs, ipairs, select, next
local setmetatable, getmetatable, pcall, xpcall, require, rawequal, rawset =
  setmetatable, getmetatable, pcall, xpcall, require, rawequal, rawset
local sformat, sfind, ssub, sbyte, sgsub, slower, supper, smatch, sgmatch =
  string.format, string.find, string.sub, string.byte, string.gsub,
  string.lower, string.upper, string.match, string.gmatch
local tconcat, tsort, tunpack, tpack, tmove = table.concat, table.sort,
  table.unpack, table.pack, table.move
local floor, sqrt, huge, mtype, tointeger = math.floor, math.sqrt,
  math.huge, math.type, math.tointeger
local io_open, os_time, os_clock = io.open, os.time, os.clock
local traceback = debug.traceback

local M = {}

----------------------------------------------------------------------------
-- Keys
----------------------------------------------------------------------------

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error

local function mix(x)
  x = x + 0x9e3779b97f4a7c15
  x = (x ~ (x >> 30)) * 0xbf58476d1ce4e5b9
  x = (x ~ (x >> 27)) * 0x94d049bb133111eb
  return x ~ (x >> 31)
end

local salt = mix(tonumber(sgsub(tostring({}), "%X", ""), 16) or 0)
  ~ mix(os_time()) ~ mix(floor(os_clock() * 1e6))
local counter = 0

-- A fresh layer name "prefix-<16 hex>"; partition i is name .. "-" .. i.
local function fresh(prefix)
  counter = counter + 1
  return sformat("%s-%016x", prefix, mix(salt ~ counter))
end

----------------------------------------------------------------------------
-- Objects
----------------------------------------------------------------------------

local Bag = {__name = "dlua.Bag"}
local Item = {__name = "dlua.Item"}
local methods, imethods = {}, {}
local StrAccessor = {__name = "dlua.Bag.str"}
StrAccessor.__index = StrAccessor

local function is_bag(v) return getmetatable(v) == Bag end
local function is_item(v) return getmetatable(v) == Item end
M.is_bag, M.is_item = is_bag, is_item

local function tname(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and type(mt.__name) == "string" and mt.__name
    or type(v)
end

--[[ A bag: {name=, npartitions=, layers = {[layer name] = {key = task}},
     chain = nil | {src = source, ops = {op, ...}}, prefix = "map"}.
  A bag with a chain has no tasks of its own until something needs its
  partitions as values (materialize).  A source is
    {kind = "part", name = layer}      partition i is the key name-i
    {kind = "zip", names = {...}}      element j = {a[j], b[j], ...}
    {kind = "text", blocks = {...}}    read by the workers
    {kind = "csv", files = {...}, opts = {...}}
    {kind = "range", bounds = {...}}
  A task is {fn=, args={n=, ...}, deps={keys}} as dlua.compute_graph takes. ]]

local function new_bag(prefix, n, layers, chain, name)
  return setmetatable({name = name or fresh(prefix), npartitions = n,
    layers = layers, chain = chain, prefix = prefix}, Bag)
end

local function merge_layers(...)
  local out = {}
  for i = 1, select("#", ...) do
    local ls = select(i, ...)
    if ls then for k, v in next, ls do out[k] = v end end
  end
  return out
end

local function pkey(name, i) return name .. "-" .. i end

-- The keys of b's partitions, in order (b without a chain).
local function part_keys(b)
  local keys = {}
  for i = 1, b.npartitions do keys[i] = pkey(b.name, i) end
  return keys
end

-- Keys each source reads for partition i (deps), and its argument.
local function source_inputs(src, i)
  local k = src.kind
  if k == "part" then
    local key = pkey(src.name, i)
    return {key}, key
  elseif k == "zip" then
    local keys = {}
    for j, nm in ipairs(src.names) do keys[j] = pkey(nm, i) end
    return keys, keys
  elseif k == "text" then
    return {}, src.blocks[i]
  elseif k == "csv" then
    return {}, src.files[i]
  elseif k == "range" then
    return {}, src.bounds[i]
  end
  error("dlua.bag: unknown source " .. tostring(k))
end

-- The task that runs bag b's chain over partition i into `sink`.
local function pipe_task(b, i, sink)
  local ch = b.chain
  local src, ops
  if ch then
    src, ops = ch.src, ch.ops
  else
    src, ops = {kind = "part", name = b.name}, {}
  end
  local deps, arg = source_inputs(src, i)
  local spec = {src = src.kind, ops = ops, sink = sink}
  if src.kind == "csv" then spec.csv = src.opts end
  if src.kind == "zip" then
    local args = {spec, i, false, n = 3 + #deps}
    for j = 1, #deps do args[3 + j] = deps[j] end
    return {fn = M._pipe, args = args, deps = deps}
  end
  if src.kind == "part" then
    return {fn = M._pipe, args = {spec, i, false, arg, n = 4}, deps = deps}
  end
  return {fn = M._pipe, args = {spec, i, arg, n = 3}, deps = deps}
end

-- b with its partitions as tasks (bags without a chain are returned).
local function materialize(b)
  if not b.chain then return b end
  if b._mat then return b._mat end
  local layer = {}
  for i = 1, b.npartitions do
    layer[pkey(b.name, i)] = pipe_task(b, i, {kind = "list"})
  end
  local m = new_bag(b.prefix, b.npartitions,
    merge_layers(b.layers, {[b.name] = layer}), nil, b.name)
  rawset(b, "_mat", m)
  return m
end

-- zip_sources(who, bags, level) -> names, layers: the materialized
-- partition names and merged graph layers of bags zipped partition by
-- partition; bags of different npartitions are an error `level` up.
local function zip_sources(who, bags, level)
  local names, layers, n = {}, {}, bags[1].npartitions
  for q, x in ipairs(bags) do
    if x.npartitions ~= n then
      error(sformat("dlua.bag: %s: bags must have the same npartitions "
        .. "(%d and %d)", who, n, x.npartitions), level)
    end
    local m = materialize(x)
    names[q] = m.name
    layers = merge_layers(layers, m.layers)
  end
  return names, layers
end

-- zip_bags(level, b1, b2, ...): M.zip with errors reported `level` levels up.
local function zip_bags(level, ...)
  local n = select("#", ...)
  if n < 1 then error("dlua.bag: zip: expects at least one bag", level) end
  local all = {...}
  for j = 1, n do
    if not is_bag(all[j]) then
      error(sformat("dlua.bag: zip: argument #%d must be a bag, got %s", j,
        tname(all[j])), level)
    end
  end
  local names, layers = zip_sources("zip", all, level + 1)
  return new_bag("zip", all[1].npartitions, layers, {src = {kind = "zip",
    names = names}, ops = {}})
end

-- A new bag: b's chain with one more per-element op.
local function with_op(b, prefix, op)
  local src, ops
  if b.chain then
    src = b.chain.src
    ops = tmove(b.chain.ops, 1, #b.chain.ops, 1, {})
  else
    src, ops = {kind = "part", name = b.name}, {}
  end
  ops[#ops + 1] = op
  return new_bag(prefix, b.npartitions, b.layers, {src = src, ops = ops})
end

-- A bag whose partitions are the tasks in layer (key name-i).
local function from_layer(prefix, name, n, layer, ...)
  return new_bag(prefix, n, merge_layers({[name] = layer}, ...), nil, name)
end

----------------------------------------------------------------------------
-- Argument checks
----------------------------------------------------------------------------

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and mt.__call ~= nil
end

local function check_fn(f, who, pos, level)
  if not callable(f) then
    error(sformat("dlua.bag: %s: argument #%d must be a function, got %s",
      who, pos, tname(f)), level + 1)
  end
end

local function check_self(b, who, level)
  if not is_bag(b) then
    error(sformat("dlua.bag: %s must be called on a bag (use b:%s(...)), "
      .. "got %s", who, who, tname(b)), level + 1)
  end
end

local did_you_mean = require("dlua.options")._did_you_mean

-- Check an options table against known = {name = type}.
local function check_opts(o, known, who, level)
  if o == nil then return {} end
  if type(o) ~= "table" or getmetatable(o) ~= nil then
    error(sformat("dlua.bag: %s: options must be a table, got %s", who,
      tname(o)), level + 1)
  end
  for k, v in pairs(o) do
    local want = known[k]
    if not want then
      error(sformat("dlua.bag: %s: unknown option '%s'%s", who, tostring(k),
        did_you_mean(k, known)), level + 1)
    end
    if want ~= "any" and not sfind(want, type(v), 1, true) then
      error(sformat("dlua.bag: %s: option '%s' must be a %s, got %s", who,
        k, want, type(v)), level + 1)
    end
  end
  return o
end

local function check_count(v, what, who, level, min)
  if mtype(v) ~= "integer" or v < (min or 1) then
    error(sformat("dlua.bag: %s: %s must be an integer >= %d, got %s", who,
      what, min or 1, tostring(v)), level + 1)
  end
  return v
end

local function parse_size(v, who, level, what)
  if mtype(v) == "integer" and v > 0 then return v end
  local ok, dl = pcall(require, "dlua")
  local r
  if ok and dl.parse_bytes and type(v) == "string" then
    ok, r = pcall(dl.parse_bytes, v)
  end
  if not ok or mtype(r) ~= "integer" or r <= 0 then
    error(sformat("dlua.bag: %s: %s must be a positive number of "
      .. "bytes or a size like \"16MiB\", got %s", who, what or "blocksize",
      tostring(v)), level + 1)
  end
  return r
end

----------------------------------------------------------------------------
-- Constructors
----------------------------------------------------------------------------

function M._id(x) return x end

--- bag.from_sequence(seq [, {npartitions=, partition_size=}]) -> Bag
function M.from_sequence(seq, o)
  if type(seq) ~= "table" then
    error("dlua.bag: from_sequence: expects an array, got " .. tname(seq), 2)
  end
  o = check_opts(o, {npartitions = "number", partition_size = "number"},
    "from_sequence", 2)
  local n = #seq
  local size
  if o.npartitions and o.partition_size then
    error("dlua.bag: from_sequence: give npartitions or partition_size, "
      .. "not both", 2)
  elseif o.partition_size then
    size = check_count(o.partition_size, "partition_size", "from_sequence",
      2)
  else
    local np = o.npartitions and check_count(o.npartitions, "npartitions",
      "from_sequence", 2) or (n < 100 and n or 100)
    size = np > 0 and (n + np - 1) // np or 1
  end
  if size < 1 then size = 1 end
  local name = fresh("from_sequence")
  local layer, np = {}, 0
  for s = 1, n, size do
    np = np + 1
    layer[pkey(name, np)] = {fn = M._id, args = {tmove(seq, s,
      s + size - 1 <= n and s + size - 1 or n, 1, {}), n = 1}, deps = {}}
  end
  if np == 0 then
    np = 1
    layer[pkey(name, 1)] = {fn = M._id, args = {{}, n = 1}, deps = {}}
  end
  return from_layer("from_sequence", name, np, layer)
end

--- bag.range(n [, {npartitions=}]) -> Bag of 0 .. n-1 (made on workers)
function M.range(n, o)
  check_count(n, "n", "range", 2, 0)
  o = check_opts(o, {npartitions = "number"}, "range", 2)
  local np = o.npartitions and check_count(o.npartitions, "npartitions",
    "range", 2) or (n < 100 and (n > 0 and n or 1) or 100)
  local bounds, size = {}, (n + np - 1) // np
  if size < 1 then size = 1 end
  for i = 1, np do
    local lo = (i - 1) * size
    local hi = lo + size < n and lo + size or n
    bounds[i] = {lo < n and lo or n, hi}
  end
  return new_bag("range", np, {}, {src = {kind = "range", bounds = bounds},
    ops = {}})
end

--- bag.from_delayed(list) -> Bag, one partition per Delayed (each must
-- compute to an array).
function M.from_delayed(list)
  local D = require "dlua.delayed"
  if D.is_delayed(list) then list = {list} end
  if type(list) ~= "table" or #list == 0 then
    error("dlua.bag: from_delayed: expects a non-empty array of Delayed "
      .. "objects, got " .. tname(list), 2)
  end
  local name = fresh("from_delayed")
  local layers, layer = {}, {}
  for i, d in ipairs(list) do
    if not D.is_delayed(d) then
      error(sformat("dlua.bag: from_delayed: element %d is not a Delayed "
        .. "(got %s)", i, tname(d)), 2)
    end
    local g = d:graph()
    layers["delayed-" .. d.key] = g
    layer[pkey(name, i)] = {fn = M._id, args = {d.key, n = 1},
                            deps = {d.key}}
  end
  layers[name] = layer
  return from_layer("from_delayed", name, #list, layer, layers)
end

local bagio
local function glob(pat)
  bagio = bagio or require "dlua.bagio"
  return bagio.glob(pat)
end

-- Expand a glob or a list of paths/globs into a list of existing files.
local function expand_paths(spec, who, level)
  local list = type(spec) == "string" and {spec} or spec
  if type(list) ~= "table" or #list == 0 then
    error(sformat("dlua.bag: %s: expects a glob or a non-empty array of "
      .. "paths, got %s", who, tname(spec)), level + 1)
  end
  local out = {}
  for i, p in ipairs(list) do
    if type(p) ~= "string" then
      error(sformat("dlua.bag: %s: path %d must be a string, got %s", who, i,
        tname(p)), level + 1)
    end
    if sfind(p, "[*?[]") then
      local m, err = glob(p)
      if not m then error("dlua.bag: " .. who .. ": " .. err, level + 1) end
      if #m == 0 then
        error(sformat("dlua.bag: %s: no files match '%s'", who, p), level + 1)
      end
      for _, f in ipairs(m) do out[#out + 1] = f end
    else
      out[#out + 1] = p
    end
  end
  return out
end

local function file_size(path, who, level)
  local f, err = io_open(path, "rb")
  if not f then error(sformat("dlua.bag: %s: %s", who, err), level + 1) end
  local size, serr = f:seek("end")
  f:close()
  if not size then
    error(sformat("dlua.bag: %s: %s: %s", who, path, tostring(serr)),
      level + 1)
  end
  return size
end

-- The longest line read_text accepts unless told (its max_line option).
M.MAX_LINE = 256 * 1024 * 1024

--[[ bag.read_text(glob_or_list [, {blocksize=, compression=,
  include_path=, max_line=}]) -> Bag of lines (each with its "\n", as in
  Dask).  The client only looks at file sizes; the workers read the
  blocks.  A line longer than max_line bytes (default 256 MiB) is an error
  naming the file, found without reading the line into memory. ]]
function M.read_text(spec, o)
  o = check_opts(o, {blocksize = "number string", compression = "string",
    include_path = "boolean", max_line = "number string"}, "read_text", 2)
  local max_line = o.max_line and parse_size(o.max_line, "read_text", 2,
    "max_line") or M.MAX_LINE
  local paths = expand_paths(spec, "read_text", 2)
  local comp = o.compression
  if comp == "infer" then comp = nil end
  if comp ~= nil and comp ~= "gzip" then
    error("dlua.bag: read_text: compression must be \"gzip\" or nil, got "
      .. sformat("%q", comp), 2)
  end
  local bs = o.blocksize and parse_size(o.blocksize, "read_text", 2)
  local blocks = {}
  for _, p in ipairs(paths) do
    local size = file_size(p, "read_text", 2)
    local gz = comp == "gzip" or (o.compression == nil
      and sfind(p, "%.gz$") ~= nil)
    if gz or not bs or size <= bs then
      blocks[#blocks + 1] = {p, 0, size, gz, o.include_path or false,
        max_line}
    else
      for s = 0, size - 1, bs do
        blocks[#blocks + 1] = {p, s, s + bs < size and s + bs or size, false,
          o.include_path or false, max_line}
      end
    end
  end
  return new_bag("read_text", #blocks, {}, {src = {kind = "text",
    blocks = blocks}, ops = {}})
end

--[[ bag.read_csv(glob_or_list [, {header=, sep=, quote=, types=,
  on_error=}]) -> Bag of rows (tables keyed by the header's names), one
  partition per file, parsed on the workers by dlua.csv. ]]
function M.read_csv(spec, o)
  o = check_opts(o, {header = "boolean", sep = "string", quote = "string",
    types = "table string", on_error = "string"}, "read_csv", 2)
  local csv = require "dlua.csv"
  -- validate the options here, at the caller's line
  local ok, err = pcall(csv.parse, "", o)
  if not ok then error(err, 2) end
  local paths = expand_paths(spec, "read_csv", 2)
  for _, p in ipairs(paths) do file_size(p, "read_csv", 2) end
  return new_bag("read_csv", #paths, {}, {src = {kind = "csv",
    files = paths, opts = o}, ops = {}})
end

----------------------------------------------------------------------------
-- Running a partition (on the workers): sources, ops, sinks
----------------------------------------------------------------------------

local STOP = setmetatable({}, {__tostring = function () return "stop" end})

local function word_split(s)
  local t, n = {}, 0
  for w in sgmatch(s, "%S+") do n = n + 1; t[n] = w end
  return t
end

local function plain_split(s, sep, max)
  local t, n, i = {}, 0, 1
  while true do
    local a, b = sfind(s, sep, i, true)
    if not a or (max and n >= max) then break end
    n = n + 1; t[n] = ssub(s, i, a - 1)
    i = b + 1
  end
  t[n + 1] = ssub(s, i)
  return t
end

local STR = {
  split = function (s, sep, max)
    if sep == nil then return word_split(s) end
    return plain_split(s, sep, max)
  end,
  strip = function (s, chars)
    if chars == nil then return smatch(s, "^%s*(.-)%s*$") end
    local set = "[" .. sgsub(chars, "[%]%%%^%-]", "%%%0") .. "]"
    return smatch(s, "^" .. set .. "*(.-)" .. set .. "*$")
  end,
  lstrip = function (s) return (sgsub(s, "^%s+", "")) end,
  rstrip = function (s) return (sgsub(s, "%s+$", "")) end,
  lower = slower, upper = supper,
  len = function (s) return #s end,
  match = function (s, pat) return (smatch(s, pat)) end,
  gsub = function (s, pat, repl) return (sgsub(s, pat, repl)) end,
  startswith = function (s, p) return ssub(s, 1, #p) == p end,
  endswith = function (s, p) return p == "" or ssub(s, -#p) == p end,
}

-- Wrap push (the next stage) in op; returns the new first stage.
local function stage(op, push)
  local k, f = op[1], op[2]
  if k == "map" then
    local na = op.nargs
    if not na or na == 0 then
      return function (x) return push((f(x))) end
    end
    local extra = op.extra
    return function (x) return push((f(x, tunpack(extra, 1, na)))) end
  elseif k == "starmap" then
    return function (x) return push((f(tunpack(x, 1, x.n or #x)))) end
  elseif k == "filter" then
    return function (x) if f(x) then return push(x) end end
  elseif k == "remove" then
    return function (x) if not f(x) then return push(x) end end
  elseif k == "flatten" then
    return function (x)
      for j = 1, #x do push(x[j]) end
    end
  elseif k == "pluck" then
    local key, default, has = f, op[3], op[4]
    if type(key) == "table" then
      return function (x)
        local t = {}
        for j = 1, #key do
          local v = x[key[j]]
          if v == nil then v = default end
          t[j] = v
        end
        return push(t)
      end
    end
    return function (x)
      local v = x[key]
      if v == nil then
        if not has then
          error(sformat("pluck: element has no field %s", tostring(key)), 0)
        end
        v = default
      end
      return push(v)
    end
  elseif k == "str" then
    local fn, a, b = STR[f], op[3], op[4]
    if f == "split" and a == nil then
      -- split + flatten: words go straight on
      if op.flat then
        return function (x)
          for w in sgmatch(x, "%S+") do push(w) end
        end
      end
      return function (x) return push(word_split(x)) end
    end
    return function (x) return push(fn(x, a, b)) end
  end
  error("dlua.bag: unknown op " .. tostring(k))
end

-- Reducers: {init = function () -> acc, step = function (acc, x) -> acc,
-- combine = function (partials, n) -> partial, finish = function (p) -> v}
local R = {}

R.count = {
  init = function () return 0 end,
  step = function (a) return a + 1 end,
  combine = function (ps, n)
    local s = 0
    for i = 1, n do s = s + ps[i] end
    return s
  end,
}
R.sum = {
  init = function () return 0 end,
  step = function (a, x) return a + x end,
  combine = R.count.combine,
}
local function minmax(less, what)
  return {
    init = function () return nil end,
    step = function (a, x)
      if a == nil or less(x, a) then return x end
      return a
    end,
    combine = function (ps, n)
      local a
      for i = 1, n do
        local x = ps[i]
        if x ~= nil and (a == nil or less(x, a)) then a = x end
      end
      return a
    end,
    finish = function (a)
      if a == nil then error(what .. " of an empty bag", 0) end
      return a
    end,
  }
end
R.min = minmax(function (a, b) return a < b end, "min")
R.max = minmax(function (a, b) return a > b end, "max")
R.any = {
  init = function () return false end,
  step = function (a, x) return a or (x and true or false) end,
  combine = function (ps, n)
    for i = 1, n do if ps[i] then return true end end
    return false
  end,
}
R.all = {
  init = function () return true end,
  step = function (a, x) return a and (x and true or false) end,
  combine = function (ps, n)
    for i = 1, n do if not ps[i] then return false end end
    return true
  end,
}
-- moments: {n, mean, m2} merged by Chan et al.'s formula
R.moments = {
  init = function () return {0, 0.0, 0.0} end,
  step = function (a, x)
    local n = a[1] + 1
    local d = x - a[2]
    local mean = a[2] + d / n
    a[1], a[2], a[3] = n, mean, a[3] + d * (x - mean)
    return a
  end,
  combine = function (ps, n)
    local cn, cm, c2 = 0, 0.0, 0.0
    for i = 1, n do
      local p = ps[i]
      if p[1] > 0 then
        local tn = cn + p[1]
        local d = p[2] - cm
        cm = cm + d * p[1] / tn
        c2 = c2 + p[3] + d * d * cn * p[1] / tn
        cn = tn
      end
    end
    return {cn, cm, c2}
  end,
}
R.frequencies = {
  init = function () return {} end,
  step = function (a, x) a[x] = (a[x] or 0) + 1; return a end,
  combine = function (ps, n)
    bagio = bagio or require "dlua.bagio"
    local out, merge = ps[1], bagio.merge_counts
    for i = 2, n do merge(out, ps[i]) end
    return out
  end,
  finish = function (p, rspec) return M._freq_pairs(p, rspec.sort) end,
}
R.distinct = {
  init = function () return {set = {}, list = {}} end,
  combine = function (ps, n)
    local out = ps[1]
    local set, list = out.set, out.list
    for i = 2, n do
      local l = ps[i].list
      for j = 1, #l do
        local x = l[j]
        if not set[x] then set[x] = true; list[#list + 1] = x end
      end
    end
    return out
  end,
  finish = function (p) return p.list end,
}

-- The sink of a pipeline: push function and a function giving the result.
local function make_sink(sink)
  local k = sink.kind
  if k == "list" then
    local out, n = {}, 0
    return function (x) n = n + 1; out[n] = x end,
      function () return out end
  elseif k == "take" then
    local out, n, want = {}, 0, sink.n
    return function (x)
      n = n + 1; out[n] = x
      if n >= want then error(STOP, 0) end
    end, function () return out end
  elseif k == "reduce" then
    local r = sink.r and R[sink.r] or sink
    local step = r.step
    local acc = r.init()
    if sink.r == "frequencies" then
      local c = acc
      return function (x) c[x] = (c[x] or 0) + 1 end,
        function () return c end
    elseif sink.r == "distinct" then
      local set, list, n, key = acc.set, acc.list, 0, sink.key
      return function (x)
        local kx = key and key(x) or x
        if not set[kx] then set[kx] = true; n = n + 1; list[n] = x end
      end, function () return acc end
    end
    return function (x) acc = step(acc, x) end, function () return acc end
  elseif k == "fold" then
    local binop, has, acc = sink.binop, sink.has_initial, sink.initial
    return function (x)
      if has then acc = binop(acc, x) else acc, has = x, true end
    end, function () return {has, acc} end
  elseif k == "foldby" then
    local key, binop, has, init = sink.key, sink.binop, sink.has_initial,
      sink.initial
    local acc, seen = {}, {}
    local order = {}
    return function (x)
      local kx = key(x)
      if kx == nil then error("foldby: key is nil", 0) end
      if seen[kx] then
        acc[kx] = binop(acc[kx], x)
      else
        seen[kx] = true
        order[#order + 1] = kx
        if has then acc[kx] = binop(init, x) else acc[kx] = x end
      end
    end, function () return {order, acc} end
  elseif k == "topk" then
    local kk, key = sink.k, sink.key
    local buf, keys, n, cut = {}, {}, 0, nil
    local cap = 4 * kk + 256
    return function (x)
      local kx = x
      if key then kx = key(x) end
      if cut ~= nil and kx < cut then return end
      n = n + 1; buf[n] = x; keys[n] = kx
      if n >= cap then n, cut = M._topk_trim(buf, n, kk, keys) end
    end, function ()
      M._topk_trim(buf, n, kk, keys)
      return buf
    end
  elseif k == "split" then
    local nout, key = sink.nout, sink.key
    local buckets = {}
    for j = 1, nout do buckets[j] = {} end
    return function (x)
      local b = buckets[M._hash(key(x), nout)]
      b[#b + 1] = x
    end, function () return buckets end
  elseif k == "write" then
    local path, gz = sink.path, sink.gz
    local dir = smatch(path, "^(.*)/[^/]*$")
    if dir and dir ~= "" then
      bagio = bagio or require "dlua.bagio"
      local ok, derr = bagio.mkdirs(dir)
      if not ok then error(derr, 0) end
    end
    local f, err = io_open(path, "wb")
    if not f then error(err, 0) end
    local z, parts
    if gz then
      z = require("zlib").deflate(6, 31)
      parts = {}
    end
    return function (x)
      local s = tostring(x)
      if ssub(s, -1) ~= "\n" then s = s .. "\n" end
      if z then
        parts[#parts + 1] = s
        if #parts >= 4096 then f:write((z(tconcat(parts)))); parts = {} end
      else
        f:write(s)
      end
    end, function ()
      if z then f:write((z(tconcat(parts), "finish"))) end
      local ok, cerr = f:close()
      if not ok then error(cerr, 0) end
      return path
    end
  end
  error("dlua.bag: unknown sink " .. tostring(k))
end

--[[ Sort buf[1..n] by keys[j] (the elements themselves when keys is
  nil) descending, ties in arrival order, and keep the first k of both;
  returns how many are kept and the smallest kept key. ]]
function M._topk_trim(buf, n, k, keys)
  keys = keys or buf
  local idx = {}
  for j = 1, n do idx[j] = j end
  tsort(idx, function (a, b)
    local ka, kb = keys[a], keys[b]
    if ka ~= kb then return ka > kb end
    return a < b
  end)
  local m = n < k and n or k
  local nb, nk = {}, {}
  for j = 1, m do nb[j] = buf[idx[j]]; nk[j] = keys[idx[j]] end
  for j = 1, m do buf[j] = nb[j]; keys[j] = nk[j] end
  for j = #buf, m + 1, -1 do buf[j] = nil end
  if keys ~= buf then for j = #keys, m + 1, -1 do keys[j] = nil end end
  return m, nk[m]
end

-- A stable hash of a key into 1..n (the same in every process).
function M._hash(k, n)
  local t = type(k)
  if t == "number" then
    local i = tointeger(k)
    if i then return i % n + 1 end
    k, t = sformat("%.17g", k), "string"
  end
  if t == "string" then
    local h, len = 5381, #k
    local step = len > 64 and len // 32 or 1
    for j = 1, len, step do h = (h * 33 + sbyte(k, j)) & 0x7fffffff end
    return (h ~ len) % n + 1
  elseif t == "boolean" then
    return (k and 1 or 0) % n + 1
  end
  error(sformat("groupby: key must be a string, number or boolean, got %s",
    t), 0)
end

--[[ The text of the lines that start in [start, stop) of the open file f
  (which it closes): a line starts at 0 or after a "\n"; the last line
  is read to its end, past stop. ]]
function M._block_text(f, start, stop)
  local pos = start
  if start > 0 then
    f:seek("set", start - 1)
    if f:read(1) ~= "\n" then
      local skip = f:read("L")
      if not skip then f:close(); return "" end
      pos = start + #skip
    end
  end
  if pos >= stop then f:close(); return "" end
  local data = f:read(stop - pos) or ""
  if #data > 0 and sbyte(data, -1) ~= 10 then
    local tail = f:read("L")
    if tail then data = data .. tail end
  end
  f:close()
  return data
end

-- A reader of block {path, start, stop, gz, include_path, max_line}
-- (dlua.bagio's, over runtime/collections/dl_textread.c).
local function open_block(blk)
  bagio = bagio or require "dlua.bagio"
  local r, err = bagio.open_text(blk[1], blk[2], blk[3], blk[4],
    blk[6] or M.MAX_LINE)
  if not r then error(err, 0) end
  return r
end

-- Read the lines of a block into push: C reads (and inflates) the file
-- and splits the lines, a piece of about 1 MiB at a time.
local function read_block(blk, push, st)
  local path = blk[1]
  local r <close> = open_block(blk)
  local emit = push
  if blk[5] then emit = function (line) return push({line, path}) end end
  local idx = st.idx
  while true do
    local lines, err = r:lines()
    if not lines then
      if err then st.idx = 0; error(err, 0) end
      return
    end
    for j = 1, #lines do
      idx = idx + 1
      st.idx = idx
      emit(lines[j])
    end
  end
end

local function run_source(kind, spec, arg, st, push, ...)
  if kind == "part" then
    local part = ...
    for j = 1, #part do st.idx = j; push(part[j]) end
  elseif kind == "zip" then
    local parts = tpack(...)
    local n = #parts[1]
    for j = 2, parts.n do
      if #parts[j] ~= n then
        error(sformat("zip: partitions of different lengths (%d and %d)",
          n, #parts[j]), 0)
      end
    end
    for j = 1, n do
      st.idx = j
      local t = {n = parts.n}
      for q = 1, parts.n do t[q] = parts[q][j] end
      push(t)
    end
  elseif kind == "range" then
    local j = 0
    for v = arg[1], arg[2] - 1 do j = j + 1; st.idx = j; push(v) end
  elseif kind == "text" then
    st.file = arg[1]
    read_block(arg, push, st)
  elseif kind == "csv" then
    st.file = arg
    local f, err = io_open(arg, "rb")
    if not f then error(err, 0) end
    local text = f:read("a")
    f:close()
    local csv = require "dlua.csv"
    local o = {name = arg}
    for k, v in next, spec.csv do o[k] = v end
    local rows, _, skipped = csv.parse(text, o)
    if skipped > 0 then
      -- on_error = "skip": say how many, where the worker's output goes
      io.stderr:write(sformat("dlua.bag.read_csv: %s: skipped %d bad "
        .. "row%s\n", arg, skipped, skipped == 1 and "" or "s"))
    end
    for j = 1, #rows do st.idx = j; push(rows[j]) end
  end
end

--[[ M._pipe(spec, i, srcarg, inputs...) -> the sink's result for
  partition i: the source's elements through spec.ops into spec.sink.  An
  error names the partition and the index of the element (in the
  partition's source) being processed. ]]
function M._pipe(spec, i, srcarg, ...)
  local ops, sink = spec.ops, spec.sink
  if spec.src == "text" and #ops == 1 and ops[1].flat and sink.kind ==
     "reduce" and sink.r == "frequencies" and not srcarg[5] then
    -- read_text(...).str:split():flatten():frequencies(): read, inflated
    -- and counted in C
    local ok, r = pcall(open_block, srcarg)
    local counts, err
    if ok then
      counts, err = r:count_words()
      r:close()
    else
      err = r
    end
    if not counts then
      error(sformat("bag partition %d, reading %s: %s", i, srcarg[1], err), 0)
    end
    return counts
  end
  local push, result = make_sink(spec.sink)
  local ops = spec.ops
  for s = #ops, 1, -1 do push = stage(ops[s], push) end
  local st = {idx = 0}
  local ok, err = xpcall(run_source, function (e)
    if rawequal(e, STOP) then return e end
    return {msg = tostring(e), tb = traceback(tostring(e), 2)}
  end, spec.src, spec, srcarg, st, push, ...)
  if not ok and not rawequal(err, STOP) then
    local where
    if st.idx > 0 then
      where = sformat("element %d", st.idx)
      if st.file then where = where .. " of " .. st.file end
    else
      where = "reading " .. (st.file or "its input")
    end
    error(sformat("bag partition %d, %s: %s", i, where, err.msg), 0)
  end
  return result()
end

----------------------------------------------------------------------------
-- Transformations
----------------------------------------------------------------------------

--- b:map(f, ...) -> Bag of f(x, ...); bags among the extra arguments are
-- zipped with b (same npartitions), other values passed to every call.
function methods.map(b, f, ...)
  check_self(b, "map", 2)
  check_fn(f, "map", 1, 2)
  local n = select("#", ...)
  local extra, bags = {...}, {}
  for j = 1, n do
    local v = extra[j]
    if is_bag(v) then bags[#bags + 1] = j end
    if is_item(v) then
      error(sformat("dlua.bag: map: argument #%d is an Item; compute it "
        .. "first or use map_partitions", j + 1), 2)
    end
  end
  if #bags == 0 then
    return with_op(b, "map", {"map", f, extra = extra, nargs = n})
  end
  -- zip b with the bags among the arguments, then call with the values
  local all = {b}
  for _, j in ipairs(bags) do all[#all + 1] = extra[j] end
  local names, layers = zip_sources("map", all, 3)
  local pos = {}
  for q, j in ipairs(bags) do pos[j] = q + 1 end
  local function call(t)
    local args = {t[1]}
    for j = 1, n do
      if pos[j] then args[j + 1] = t[pos[j]] else args[j + 1] = extra[j] end
    end
    return f(tunpack(args, 1, n + 1))
  end
  return new_bag("map", b.npartitions, layers, {src = {kind = "zip",
    names = names}, ops = {{"map", call}}})
end

function methods.filter(b, p)
  check_self(b, "filter", 2)
  check_fn(p, "filter", 1, 2)
  return with_op(b, "filter", {"filter", p})
end

function methods.remove(b, p)
  check_self(b, "remove", 2)
  check_fn(p, "remove", 1, 2)
  return with_op(b, "remove", {"remove", p})
end

function methods.starmap(b, f)
  check_self(b, "starmap", 2)
  check_fn(f, "starmap", 1, 2)
  return with_op(b, "starmap", {"starmap", f})
end

function methods.flatten(b)
  check_self(b, "flatten", 2)
  local ops = b.chain and b.chain.ops
  local last = ops and ops[#ops]
  if last and last[1] == "str" and last[2] == "split" and last[3] == nil
     and not last.flat then
    -- .str:split():flatten(): words go straight to the next step
    local nb = with_op(b, "flatten", {"flatten"})
    local nops = nb.chain.ops
    nops[#nops] = nil
    nops[#nops] = {"str", "split", flat = true}
    return nb
  end
  return with_op(b, "flatten", {"flatten"})
end

--- b:pluck(key [, default]) -> Bag of x[key]; key may be an array of
-- keys (then elements are arrays).  Without default a missing key is an
-- error.
function methods.pluck(b, key, ...)
  check_self(b, "pluck", 2)
  if key == nil then error("dlua.bag: pluck: key must not be nil", 2) end
  local has = select("#", ...) > 0
  return with_op(b, "pluck", {"pluck", key, (...), has})
end

StrAccessor.__tostring = function (s)
  return "<str methods of " .. tostring(s.bag) .. ">"
end
for name in pairs(STR) do
  StrAccessor[name] = function (s, a, c)
    if getmetatable(s) ~= StrAccessor then
      error(sformat("dlua.bag: use b.str:%s(...), not b.str.%s(...)", name,
        name), 2)
    end
    if name == "split" and a ~= nil and (type(a) ~= "string" or a == "")
    then
      error("dlua.bag: str:split: separator must be a non-empty string", 2)
    end
    return with_op(s.bag, "str_" .. name, {"str", name, a, c})
  end
end

--- b:map_partitions(f, ...) -> Bag of f(partition, ...); bags among the
-- arguments give their partition, other values pass through.
function methods.map_partitions(b, f, ...)
  check_self(b, "map_partitions", 2)
  check_fn(f, "map_partitions", 1, 2)
  local n = select("#", ...)
  local extra = {...}
  local mb = materialize(b)
  local layers = mb.layers
  local name = fresh("map_partitions")
  local bagpos = {}
  for j = 1, n do
    local v = extra[j]
    if is_bag(v) then
      if v.npartitions ~= b.npartitions then
        error(sformat("dlua.bag: map_partitions: bags must have the same "
          .. "npartitions (%d and %d)", b.npartitions, v.npartitions), 2)
      end
      local m = materialize(v)
      layers = merge_layers(layers, m.layers)
      bagpos[j] = m.name
    elseif is_item(v) then
      layers = merge_layers(layers, v.layers)
      bagpos[j] = v
    end
  end
  local layer = {}
  for i = 1, b.npartitions do
    local args, deps = {f, pkey(mb.name, i), n = n + 2}, {pkey(mb.name, i)}
    for j = 1, n do
      local bp = bagpos[j]
      if type(bp) == "string" then
        args[j + 2] = pkey(bp, i); deps[#deps + 1] = pkey(bp, i)
      elseif bp then
        args[j + 2] = bp.key; deps[#deps + 1] = bp.key
      else
        args[j + 2] = extra[j]
      end
    end
    layer[pkey(name, i)] = {fn = M._map_partitions, args = args, deps = deps}
  end
  return from_layer("map_partitions", name, b.npartitions, layer, layers)
end

function M._map_partitions(f, part, ...)
  local r = f(part, ...)
  if r == nil then return {} end
  if type(r) ~= "table" then
    error("map_partitions: the function must return a table (the new "
      .. "partition), got " .. type(r), 0)
  end
  return r
end

function M._concat(...)
  local out, n = {}, 0
  for j = 1, select("#", ...) do
    local p = select(j, ...)
    tmove(p, 1, #p, n + 1, out)
    n = n + #p
  end
  return out
end

function M._chunks(part, k)
  local n = #part
  local out = {}
  for j = 1, k do
    local lo = (j - 1) * n // k + 1
    local hi = j * n // k
    out[j] = tmove(part, lo, hi, 1, {})
  end
  return out
end

function M._get(t, j) return t[j] end

--- b:repartition(n) -> Bag with n partitions (neighbours concatenated, or
-- each partition cut in near-equal pieces).
function methods.repartition(b, n)
  check_self(b, "repartition", 2)
  check_count(n, "npartitions", "repartition", 2)
  local mb = materialize(b)
  local old = b.npartitions
  local name = fresh("repartition")
  local layer = {}
  if n <= old then
    for j = 1, n do
      local lo, hi = (j - 1) * old // n + 1, j * old // n
      local args, deps = {n = hi - lo + 1}, {}
      for i = lo, hi do
        args[i - lo + 1] = pkey(mb.name, i); deps[#deps + 1] = pkey(mb.name, i)
      end
      layer[pkey(name, j)] = {fn = M._concat, args = args, deps = deps}
    end
  else
    local out = 0
    for i = 1, old do
      local k = n // old + (i <= n % old and 1 or 0)
      local ck = pkey(name .. "-split", i)
      layer[ck] = {fn = M._chunks, args = {pkey(mb.name, i), k, n = 2},
                   deps = {pkey(mb.name, i)}}
      for j = 1, k do
        out = out + 1
        layer[pkey(name, out)] = {fn = M._get, args = {ck, j, n = 2},
                                  deps = {ck}}
      end
    end
  end
  return from_layer("repartition", name, n, layer, mb.layers)
end

function M._accumulate(binop, prev, part, has_initial, initial)
  local out, n = {}, 0
  local has, acc
  if prev then
    has, acc = prev[2], prev[3]
  else
    has, acc = has_initial, initial
    if has then n = 1; out[1] = acc end
  end
  for j = 1, #part do
    if has then acc = binop(acc, part[j]) else acc, has = part[j], true end
    n = n + 1; out[n] = acc
  end
  return {out, has, acc}
end

--- b:accumulate(binop [, initial]) -> Bag of the running results
-- (initial first when given), partition by partition in order.
function methods.accumulate(b, binop, ...)
  check_self(b, "accumulate", 2)
  check_fn(binop, "accumulate", 1, 2)
  local has = select("#", ...) > 0
  local initial = (...)
  local mb = materialize(b)
  local name = fresh("accumulate")
  local layer = {}
  for i = 1, b.npartitions do
    local sk = pkey(name .. "-state", i)
    local prev = i > 1 and pkey(name .. "-state", i - 1) or false
    local deps = {pkey(mb.name, i)}
    if prev then deps[2] = prev end
    layer[sk] = {fn = M._accumulate, args = {binop, prev, pkey(mb.name, i),
      has, initial, n = 5}, deps = deps}
    layer[pkey(name, i)] = {fn = M._get, args = {sk, 1, n = 2}, deps = {sk}}
  end
  return from_layer("accumulate", name, b.npartitions, layer, mb.layers)
end

function M._product(a, c)
  local out, n = {}, 0
  for i = 1, #a do
    for j = 1, #c do n = n + 1; out[n] = {a[i], c[j]} end
  end
  return out
end

--- b:product(other) -> Bag of {x, y} for every pair (b's npartitions
-- times other's partitions).
function methods.product(b, other)
  check_self(b, "product", 2)
  if not is_bag(other) then
    error("dlua.bag: product: argument #1 must be a bag, got "
      .. tname(other), 2)
  end
  local ma, mc = materialize(b), materialize(other)
  local name = fresh("product")
  local layer, k = {}, 0
  for i = 1, b.npartitions do
    for j = 1, other.npartitions do
      k = k + 1
      local x, y = pkey(ma.name, i), pkey(mc.name, j)
      layer[pkey(name, k)] = {fn = M._product, args = {x, y, n = 2},
                              deps = {x, y}}
    end
  end
  return from_layer("product", name, k, layer, ma.layers, mc.layers)
end

--- bag.zip(b1, b2, ...) -> Bag of {x1, x2, ...}; the bags must have the
-- same npartitions and partition lengths.
function M.zip(...)
  local r = zip_bags(3, ...)
  return r
end

function methods.zip(b, ...)
  check_self(b, "zip", 2)
  local r = zip_bags(3, b, ...)
  return r
end

----------------------------------------------------------------------------
-- Reductions
----------------------------------------------------------------------------

-- Combine partials: rspec names a reducer in R or carries combine.
function M._combine(rspec, ...)
  local ps = tpack(...)
  local r = rspec.r and R[rspec.r] or rspec
  return r.combine(ps, ps.n, rspec)
end

function M._finish(rspec, p)
  local r = rspec.r and R[rspec.r] or rspec
  if r.finish then return r.finish(p, rspec) end
  return p
end

local REDUCE_OPTS = {split_every = "number"}

-- finish(combine(partials)) and finish(partial of one partition) in one
-- task: the root of a tree is not a task of its own.
function M._combine_finish(rspec, ...)
  return M._finish(rspec, M._combine(rspec, ...))
end

function M._pipe_finish(rspec, spec, i, srcarg, ...)
  return M._finish(rspec, M._pipe(spec, i, srcarg, ...))
end

-- Combine `keys` level by level in `layer`: each task of level L
-- (name-aggL-i) calls fn(head, k1, ..., kn) on up to `every` keys of the
-- level below (default 8, at least 2), until one key is left, after at
-- least min_levels levels.  The last level's one task is last_key and
-- calls last_fn when they are given.  Returns that key.
local function combine_levels(layer, keys, name, every, fn, head, min_levels,
                              last_fn, last_key)
  every = math.max(every or 8, 2)
  local level = 0
  while #keys > 1 or level < min_levels do
    level = level + 1
    local last = #keys <= every and level >= min_levels
    local nk = {}
    for s = 1, #keys, every do
      local args, deps = {head, n = 1}, {}
      for j = s, math.min(s + every - 1, #keys) do
        args.n = args.n + 1; args[args.n] = keys[j]; deps[#deps + 1] = keys[j]
      end
      local k = last and last_key or pkey(name .. "-agg" .. level, #nk + 1)
      layer[k] = {fn = last and last_fn or fn, args = args, deps = deps}
      nk[#nk + 1] = k
    end
    keys = nk
  end
  return keys[1]
end

-- Build the tree: partials by sink (per partition, fused with b's chain),
-- combined split_every at a time by rspec, the last combine finishing;
-- returns layers and the root's key (root, or a fresh one).
local function tree(b, prefix, sink, rspec, split_every, root)
  local name = fresh(prefix)
  local layer = {}
  root = root or pkey(name, 1)
  if b.npartitions == 1 then
    local t = pipe_task(b, 1, sink)
    local a = t.args
    local args = {rspec, n = a.n + 1}
    for j = 1, a.n do args[j + 1] = a[j] end
    layer[root] = {fn = M._pipe_finish, args = args, deps = t.deps}
  else
    local keys = {}
    for i = 1, b.npartitions do
      local k = pkey(name .. "-part", i)
      layer[k] = pipe_task(b, i, sink)
      keys[i] = k
    end
    combine_levels(layer, keys, name, split_every, M._combine, rspec, 0,
                   M._combine_finish, root)
  end
  return merge_layers(b.layers, {[name] = layer}), root, name
end

local function new_item(prefix, layers, key)
  return setmetatable({key = key, layers = layers, prefix = prefix}, Item)
end

local function reduction_item(b, who, rname, o, level)
  check_self(b, who, level + 1)
  o = check_opts(o, REDUCE_OPTS, who, level + 1)
  if o.split_every then
    check_count(o.split_every, "split_every", who, level + 1, 2)
  end
  local layers, root = tree(b, who, {kind = "reduce", r = rname},
    {r = rname}, o.split_every)
  return new_item(who, layers, root)
end

function methods.count(b, o) return reduction_item(b, "count", "count", o, 2) end
function methods.sum(b, o) return reduction_item(b, "sum", "sum", o, 2) end
function methods.min(b, o) return reduction_item(b, "min", "min", o, 2) end
function methods.max(b, o) return reduction_item(b, "max", "max", o, 2) end
function methods.any(b, o) return reduction_item(b, "any", "any", o, 2) end
function methods.all(b, o) return reduction_item(b, "all", "all", o, 2) end

function M._mean(m)
  if m[1] == 0 then error("mean of an empty bag", 0) end
  return m[2]
end
function M._var(m, ddof)
  if m[1] - ddof <= 0 then
    error(sformat("var of a bag of %d elements with ddof=%d", m[1], ddof), 0)
  end
  return m[3] / (m[1] - ddof)
end
function M._std(m, ddof) return sqrt(M._var(m, ddof)) end

local function moment_item(b, who, o, level)
  check_self(b, who, level + 1)
  o = check_opts(o, {split_every = "number", ddof = "number"}, who,
    level + 1)
  local ddof = o.ddof or 0
  local layers, root = tree(b, who, {kind = "reduce", r = "moments"},
    {r = "moments"}, o.split_every)
  local key = root .. "-" .. who
  layers = merge_layers(layers, {[key] = {[key] = {fn = M["_" .. who],
    args = {root, ddof, n = 2}, deps = {root}}}})
  return new_item(who, layers, key)
end

function methods.mean(b, o) return moment_item(b, "mean", o, 2) end
function methods.var(b, o) return moment_item(b, "var", o, 2) end
function methods.std(b, o) return moment_item(b, "std", o, 2) end

-- A one-partition bag whose partition is the root of a tree over b.
local function tree_bag(prefix, b, sink, rspec, split_every)
  local name = fresh(prefix)
  local layers = tree(b, prefix, sink, rspec, split_every, pkey(name, 1))
  return new_bag(prefix, 1, layers, nil, name)
end

function M._freq_pairs(counts, sort)
  bagio = bagio or require "dlua.bagio"
  local out = bagio.count_pairs(counts)
  if sort then
    tsort(out, function (a, b)
      if a[2] ~= b[2] then return a[2] > b[2] end
      local ta, tb = type(a[1]), type(b[1])
      if ta ~= tb then return ta < tb end
      if ta == "string" or ta == "number" then return a[1] < b[1] end
      return false
    end)
  end
  return out
end

--- b:frequencies([{sort=, split_every=}]) -> Bag of {value, count} pairs
function methods.frequencies(b, o)
  check_self(b, "frequencies", 2)
  o = check_opts(o, {split_every = "number", sort = "boolean"},
    "frequencies", 2)
  return tree_bag("frequencies", b, {kind = "reduce", r = "frequencies"},
    {r = "frequencies", sort = o.sort or false}, o.split_every)
end

R.topk = {
  combine = function (ps, n, rspec)
    local buf, keys, key = {}, {}, rspec.key
    for i = 1, n do tmove(ps[i], 1, #ps[i], #buf + 1, buf) end
    if key then
      for j = 1, #buf do keys[j] = key(buf[j]) end
    else
      keys = nil
    end
    M._topk_trim(buf, #buf, rspec.k, keys)
    return buf
  end,
}

--- b:topk(k [, key] [, {split_every=}]) -> Bag of the k largest elements
-- (by key(x) when key is given), largest first.
function methods.topk(b, k, key, o)
  check_self(b, "topk", 2)
  check_count(k, "k", "topk", 2)
  if type(key) == "table" and o == nil and not callable(key) then
    o, key = key, nil
  end
  if key ~= nil then check_fn(key, "topk", 2, 2) end
  o = check_opts(o, REDUCE_OPTS, "topk", 2)
  local rspec = {r = "topk", k = k, key = key}
  return tree_bag("topk", b, {kind = "topk", k = k, key = key}, rspec,
    o.split_every)
end

--- b:distinct([key] [, {split_every=}]) -> Bag of the distinct elements
-- (first of each key(x) when key is given), in order of first appearance.
function methods.distinct(b, key, o)
  check_self(b, "distinct", 2)
  if type(key) == "table" and o == nil and not callable(key) then
    o, key = key, nil
  end
  if key ~= nil then check_fn(key, "distinct", 1, 2) end
  o = check_opts(o, REDUCE_OPTS, "distinct", 2)
  local rspec = {r = "distinct"}
  if key then
    rspec = {r = false, key = key,
      combine = function (ps, n, rs)
        local out = ps[1]
        local set, list = out.set, out.list
        for i = 2, n do
          local l = ps[i].list
          for j = 1, #l do
            local x = l[j]
            local kx = rs.key(x)
            if not set[kx] then set[kx] = true; list[#list + 1] = x end
          end
        end
        return out
      end,
      finish = function (p) return p.list end}
  end
  return tree_bag("distinct", b, {kind = "reduce", r = "distinct",
    key = key}, rspec, o.split_every)
end

R.fold = {
  combine = function (ps, n, rs)
    local has, acc = rs.has_cinit, rs.cinit
    local comb = rs.combine_fn
    for i = 1, n do
      local p = ps[i]
      if p[1] then
        if has then acc = comb(acc, p[2]) else acc, has = p[2], true end
      end
    end
    return {has, acc}
  end,
  finish = function (p)
    if not p[1] then error("fold of an empty bag without an initial value",
      0) end
    return p[2]
  end,
}

--- b:fold(binop [, combine [, initial]] [, {split_every=}]) -> Item
function methods.fold(b, binop, combine, ...)
  check_self(b, "fold", 2)
  check_fn(binop, "fold", 1, 2)
  local nx = select("#", ...)
  local initial, o = ...
  if nx >= 2 then o = check_opts(o, REDUCE_OPTS, "fold", 2) else o = {} end
  if combine == nil then combine = binop end
  check_fn(combine, "fold", 2, 2)
  local has = nx >= 1 and initial ~= nil
  local rspec = {r = "fold", combine_fn = combine, has_cinit = false}
  local layers, root = tree(b, "fold", {kind = "fold", binop = binop,
    has_initial = has, initial = initial}, rspec, o.split_every)
  return new_item("fold", layers, root)
end

R.foldby = {
  combine = function (ps, n, rs)
    local order, acc, seen = {}, {}, {}
    local comb, has, cinit = rs.combine_fn, rs.has_cinit, rs.cinit
    for i = 1, n do
      local po, pa = ps[i][1], ps[i][2]
      for j = 1, #po do
        local k = po[j]
        local v = pa[k]
        if seen[k] then
          acc[k] = comb(acc[k], v)
        else
          seen[k] = true
          order[#order + 1] = k
          if has then acc[k] = comb(cinit, v) else acc[k] = v end
        end
      end
    end
    return {order, acc}
  end,
  finish = function (p)
    local order, acc, out = p[1], p[2], {}
    for j = 1, #order do out[j] = {order[j], acc[order[j]]} end
    return out
  end,
}

local function key_fn(key, who, level)
  if type(key) == "string" or mtype(key) == "integer" then
    local field = key
    return function (x) return x[field] end
  end
  check_fn(key, who, 1, level + 1)
  return key
end

--[=[ b:foldby(key, binop [, initial [, combine [, combine_initial]]]
  [, {split_every=}]) -> Bag of {key, value} pairs: elements grouped by
  key(x) (or x[key] for a string or integer key), each group folded with
  binop per partition, the partitions' results folded with combine. ]=]
function methods.foldby(b, key, binop, ...)
  check_self(b, "foldby", 2)
  local kf = key_fn(key, "foldby", 2)
  check_fn(binop, "foldby", 2, 2)
  local nx = select("#", ...)
  local initial, combine, cinit, o = ...
  if nx >= 4 then o = check_opts(o, REDUCE_OPTS, "foldby", 2) else o = {} end
  if combine == nil then combine = binop end
  check_fn(combine, "foldby", 4, 2)
  local rspec = {r = "foldby", combine_fn = combine,
    has_cinit = cinit ~= nil, cinit = cinit}
  return tree_bag("foldby", b, {kind = "foldby", key = kf, binop = binop,
    has_initial = initial ~= nil, initial = initial}, rspec, o.split_every)
end

--- b:reduction(perpartition, aggregate [, {split_every=}]) -> Item:
-- perpartition(partition) per partition, aggregate(array of results) at
-- each level of the tree.
function methods.reduction(b, perpart, aggregate, o)
  check_self(b, "reduction", 2)
  check_fn(perpart, "reduction", 1, 2)
  check_fn(aggregate, "reduction", 2, 2)
  o = check_opts(o, REDUCE_OPTS, "reduction", 2)
  local mb = materialize(b)
  local name = fresh("reduction")
  local layer, keys = {}, {}
  for i = 1, b.npartitions do
    local k = pkey(name .. "-part", i)
    layer[k] = {fn = M._call, args = {perpart, pkey(mb.name, i), n = 2},
                deps = {pkey(mb.name, i)}}
    keys[i] = k
  end
  local top = combine_levels(layer, keys, name, o.split_every, M._aggregate,
                             aggregate, 1)
  return new_item("reduction", merge_layers(mb.layers, {[name] = layer}), top)
end

function M._call(f, ...) return f(...) end
function M._aggregate(f, ...) return f({...}) end

----------------------------------------------------------------------------
-- groupby: a shuffle through the workers
----------------------------------------------------------------------------

function M._group(...)
  local order, groups = {}, {}
  for j = 1, select("#", ...) do
    local part = select(j, ...)
    for q = 1, #part do
      local kv = part[q]
      local k, v = kv[1], kv[2]
      local g = groups[k]
      if not g then
        g = {}; groups[k] = g; order[#order + 1] = k
      end
      g[#g + 1] = v
    end
  end
  local out = {}
  for j = 1, #order do out[j] = {order[j], groups[order[j]]} end
  return out
end

function M._keyed(key, x) return {key(x), x} end

--[[ b:groupby(key [, {npartitions=}]) -> Bag of {key, {elements}}: every
  element goes to the output partition of its key's hash, through the
  workers (each input partition is split into npartitions buckets; each
  output partition gathers its bucket from every input).  foldby is much
  cheaper when the groups are only reduced. ]]
function methods.groupby(b, key, o)
  check_self(b, "groupby", 2)
  local kf = key_fn(key, "groupby", 2)
  o = check_opts(o, {npartitions = "number"}, "groupby", 2)
  local nout = o.npartitions and check_count(o.npartitions, "npartitions",
    "groupby", 2) or b.npartitions
  local name = fresh("groupby")
  local layer = {}
  local keyed = function (x) return {kf(x), x} end
  local kb = with_op(b, "groupby", {"map", keyed})
  for i = 1, b.npartitions do
    layer[pkey(name .. "-split", i)] = pipe_task(kb, i, {kind = "split",
      nout = nout, key = function (kv) return kv[1] end})
  end
  for j = 1, nout do
    local args, deps = {n = b.npartitions}, {}
    for i = 1, b.npartitions do
      local sk = pkey(name .. "-split", i)
      local gk = pkey(name .. "-bucket-" .. i, j)
      layer[gk] = {fn = M._get, args = {sk, j, n = 2}, deps = {sk}}
      args[i] = gk
      deps[i] = gk
    end
    layer[pkey(name, j)] = {fn = M._group, args = args, deps = deps}
  end
  return from_layer("groupby", name, nout, layer, kb.layers)
end

----------------------------------------------------------------------------
-- Running and output
----------------------------------------------------------------------------

local COMPUTE_OPTS = {scheduler = "string", client = "table",
  optimize = "boolean", progress = "boolean table"}

local function graph_of(layers)
  local g = {}
  for _, layer in next, layers do
    for k, t in next, layer do g[k] = t end
  end
  return g
end

local function run(layers, keys, o, who, level)
  o = check_opts(o, COMPUTE_OPTS, who, level + 1)
  local D = require "dlua.delayed"
  local opts = {}
  for k, v in next, o do opts[k] = v end
  local ok, r = pcall(D.compute_graph, graph_of(layers), keys, opts)
  if not ok then error(r, level + 1) end
  return r
end

--- b:compute([opts]) -> array of all elements, partitions in order.
-- opts: scheduler = "sync" | "cluster", client =, optimize =, progress =.
function methods.compute(b, o)
  check_self(b, "compute", 2)
  local m = materialize(b)
  local keys = part_keys(m)
  local parts = run(m.layers, keys, o, "compute", 2)
  return M._concat(tunpack(parts, 1, #keys))
end

-- Delayeds for the given keys of the graph in layers: each task becomes
-- a Delayed call of its function, its dependencies the Delayeds of theirs.
local function to_delayeds(layers, keys)
  local D = require "dlua.delayed"
  local g = graph_of(layers)
  local memo = {}
  local function conv(k)
    local d = memo[k]
    if d then return d end
    local t = g[k]
    local depset = {}
    for _, dk in ipairs(t.deps or {}) do depset[dk] = true end
    local args = {}
    local a = t.args
    for j = 1, a.n or #a do
      local v = a[j]
      if type(v) == "string" and depset[v] then v = conv(v) end
      args[j] = v
    end
    d = D.delayed(t.fn, {name = smatch(k, "^(%a[%w_]*)") or "bag"})(
      tunpack(args, 1, a.n or #a))
    memo[k] = d
    return d
  end
  local out = {}
  for i, k in ipairs(keys) do
    local t = g[k]
    if type(t) == "table" and getmetatable(t) == nil and t.fn then
      out[i] = conv(k)
    else
      out[i] = D.delayed(t)
    end
  end
  return out
end

--- b:persist([opts]) -> Bag whose partitions are held on the cluster.
function methods.persist(b, o)
  check_self(b, "persist", 2)
  o = check_opts(o, COMPUTE_OPTS, "persist", 2)
  local m = materialize(b)
  local D = require "dlua.delayed"
  local ds = to_delayeds(m.layers, part_keys(m))
  if next(o) then
    local po = {}
    for k, v in next, o do po[k] = v end
    ds[#ds + 1] = po
  end
  return M.from_delayed({D.persist(tunpack(ds, 1, #ds))})
end

--- b:to_delayed() -> array of Delayeds, one per partition.
function methods.to_delayed(b)
  check_self(b, "to_delayed", 2)
  local m = materialize(b)
  return to_delayeds(m.layers, part_keys(m))
end

--- b:take(n [, {npartitions=}]) -> array of the first n elements, computing
-- only the partitions needed (npartitions = -1: as many as needed; the
-- default 1, as in Dask, looks at the first partition only).
function methods.take(b, n, o)
  check_self(b, "take", 2)
  check_count(n, "n", "take", 2)
  local co = {}
  if o ~= nil then
    if type(o) ~= "table" then
      error("dlua.bag: take: options must be a table, got " .. tname(o), 2)
    end
    for k, v in next, o do if k ~= "npartitions" then co[k] = v end end
  end
  local np = o and o.npartitions or 1
  if mtype(np) ~= "integer" or (np < 1 and np ~= -1) then
    error("dlua.bag: take: npartitions must be a positive integer or -1", 2)
  end
  if np == -1 or np > b.npartitions then np = b.npartitions end
  local out = {}
  for i = 1, np do
    local k = fresh("take")
    local layers = merge_layers(b.layers, {[k] = {[k] = pipe_task(b, i,
      {kind = "take", n = n - #out})}})
    local part = run(layers, k, co, "take", 2)
    tmove(part, 1, #part, #out + 1, out)
    if #out >= n then break end
  end
  return out
end

--- b:to_textfiles(pattern [, opts]) -> array of the paths written; "*" in
-- pattern is replaced by the partition number (from 0), a ".gz" name is
-- gzip-compressed; the workers write the files.
function methods.to_textfiles(b, pattern, o)
  check_self(b, "to_textfiles", 2)
  if type(pattern) ~= "string" or not sfind(pattern, "*", 1, true) then
    error("dlua.bag: to_textfiles: pattern must be a string with a '*' for "
      .. "the partition number, got " .. (type(pattern) == "string"
      and sformat("%q", pattern) or tname(pattern)), 2)
  end
  local name = fresh("to_textfiles")
  local layer, keys = {}, {}
  local width = #tostring(b.npartitions - 1)
  for i = 1, b.npartitions do
    local path = sgsub(pattern, "%*", sformat("%0" .. width .. "d", i - 1), 1)
    keys[i] = pkey(name, i)
    layer[keys[i]] = pipe_task(b, i, {kind = "write", path = path,
      gz = sfind(path, "%.gz$") ~= nil})
  end
  return run(merge_layers(b.layers, {[name] = layer}), keys, o,
    "to_textfiles", 2)
end

local function count_tasks(layers)
  local n = 0
  for _, layer in next, layers do for _ in next, layer do n = n + 1 end end
  return n
end

local function dot(layers, out_keys)
  local g = graph_of(layers)
  local lines = {"digraph dlua_bag {", "  graph [rankdir=BT];"}
  local keys = {}
  for k in next, g do keys[#keys + 1] = k end
  tsort(keys)
  local function q(s) return '"' .. sgsub(s, '["\\]', "\\%0") .. '"' end
  for _, k in ipairs(keys) do
    local t = g[k]
    lines[#lines + 1] = sformat("  %s [label=%s, shape=box];", q(k),
      q(smatch(k, "^(.-)%-%x+%-") or k))
    for _, d in ipairs(type(t) == "table" and t.deps or {}) do
      lines[#lines + 1] = sformat("  %s -> %s;", q(d), q(k))
    end
  end
  for _, k in ipairs(out_keys or {}) do
    lines[#lines + 1] = sformat("  %s [style=bold];", q(k))
  end
  lines[#lines + 1] = "}"
  return tconcat(lines, "\n") .. "\n"
end

local function write_dot(text, filename, level)
  if filename == nil then return text end
  if type(filename) ~= "string" then
    error("dlua.bag: visualize: filename must be a string", level + 1)
  end
  local ext = slower(smatch(filename, "%.(%w+)$") or "")
  if ext ~= "dot" and ext ~= "gv" then
    local tmp = os.tmpname()
    local f = assert(io_open(tmp, "w"))
    f:write(text)
    f:close()
    local ok = os.execute(sformat("dot -T%s -o '%s' '%s' 2>/dev/null", ext,
      sgsub(filename, "'", "'\\''"), tmp))
    os.remove(tmp)
    if not ok then
      error(sformat("dlua.bag: visualize: could not write '%s' (needs "
        .. "Graphviz's dot; .dot files need nothing)", filename), level + 1)
    end
    return filename
  end
  local f, err = io_open(filename, "w")
  if not f then error("dlua.bag: visualize: " .. err, level + 1) end
  f:write(text)
  f:close()
  return filename
end

--- b:visualize([filename]) -> DOT text, or filename once written
function methods.visualize(b, filename)
  check_self(b, "visualize", 2)
  local m = materialize(b)
  return write_dot(dot(m.layers, part_keys(m)), filename, 2)
end

Bag.__index = function (b, k)
  local m = methods[k]
  if m then return m end
  if k == "str" then return setmetatable({bag = b}, StrAccessor) end
  if type(k) == "string" and ssub(k, 1, 1) ~= "_" and k ~= "chain" then
    error(sformat("dlua.bag: a bag has no method '%s'%s", k,
      did_you_mean(k, methods)), 2)
  end
  return nil
end

Bag.__newindex = function (_, k)
  error(sformat("dlua.bag: cannot set field '%s': bags are immutable",
    tostring(k)), 2)
end

Bag.__tostring = function (b)
  local nt = count_tasks(b.layers)
  if b.chain then nt = nt + b.npartitions end
  return sformat("dlua.bag<%s, npartitions=%d, tasks=%d>", b.prefix,
    b.npartitions, nt)
end

-- Items: one value (a reduction's result)
Item.__index = imethods

function imethods.compute(it, o)
  if not is_item(it) then
    error("dlua.bag: use item:compute(), not item.compute()", 2)
  end
  return run(it.layers, it.key, o, "compute", 2)
end

function imethods.visualize(it, filename)
  return write_dot(dot(it.layers, {it.key}), filename, 2)
end

function imethods.to_delayed(it)
  return to_delayeds(it.layers, {it.key})[1]
end

Item.__tostring = function (it)
  return sformat("dlua.Item<%s, tasks=%d>", it.prefix,
    count_tasks(it.layers))
end

M.Bag, M.Item = Bag, Item
-- For dlua.dataframe.from_bag: b with its partitions as tasks ({name=,
-- npartitions=, layers=}; partition i is the key name .. "-" .. i).
M._materialize = materialize
return M

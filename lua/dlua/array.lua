--[==[
dlua.array -- chunked n-d arrays over the cluster (Dask's dask.array).

  local da = require "dlua.array"
  local x = da.random.uniform{shape = {4000, 4000}, chunks = {1000, 1000},
                              seed = 1}
  local y = (x + x.T):mean{axis = 1}      -- nothing runs yet
  print(y)                                -- shape, chunks, dtype, tasks
  print(y:compute())                      -- an ndarray (dlua.ndarray)
  print(x:sum():compute())                -- a Lua number

An array is a grid of blocks (ndarrays); every operation builds, per
output block, a description of how to make it from the input blocks.
Elementwise operations, transposes and random or constant creation are
not tasks of their own: they are folded into the block descriptions, so a
chain `(x * x + y * y):lt(1):sum()` is one task per block, which makes
its random inputs, runs the arithmetic as one fused pass over cache-sized
tiles (no temporaries for float64 chains) and returns a partial sum;
partial results are combined in a tree (`split_every` at a time).  Matrix
products, and compute(), make tasks of the blocks ("materialize").

The graph is the same plain task graph as dlua.delayed's and runs through
dlua.compute_graph (on the default client, or `{client = c}`, or
`{scheduler = "sync"}` in this process).  README.md, "Arrays", has the
whole API.
]==]

local nd = require "dlua.ndarray"

-- Every argument error is raised at the user's line, however many helpers
-- and tail calls of this module lie between (see dlua.options).
local error = require("dlua.options")._user_error
local ipairs, pairs, select, setmetatable, getmetatable, tostring,
  type, require, math_type, tointeger =
  ipairs, pairs, select, setmetatable, getmetatable, tostring,
  type, require, math.type, math.tointeger
local sformat, tconcat, floor, huge, mmin, mmax =
  string.format, table.concat, math.floor, math.huge, math.min, math.max

local M = {random = {}}
local Array = {__name = "dlua.Array"}
local methods = {}

-- ----------------------------------------------------------------- names

local counter = 0
local base = math.random(0, 0xffffff) -- Lua 5.4 seeds it randomly
local function fresh(prefix)
  counter = counter + 1
  return sformat("%s-%06x%x", prefix, base, counter)
end

local NDMT = getmetatable(nd.zeros{0})

local function key_of(name, idx) return name .. "-" .. tconcat(idx, ",") end

local function is_array(v) return getmetatable(v) == Array end

local function fmt_tuple(t)
  if #t == 1 then return "(" .. t[1] .. ",)" end
  return "(" .. tconcat(t, ", ") .. ")"
end

-- ---------------------------------------------------------------- chunks

-- Normalise chunks for shape: an integer (every axis), a list of integers
-- (one per axis) or a list of lists (the block sizes of each axis).
local function norm_chunks(shape, chunks, level)
  level = (level or 1) + 1
  local out = {}
  if chunks == nil then
    for d = 1, #shape do out[d] = {shape[d]} end
    return out
  end
  if type(chunks) == "number" and tointeger(chunks) then
    chunks = tointeger(chunks)
    local c = {}
    for d = 1, #shape do c[d] = chunks end
    chunks = c
  end
  if type(chunks) ~= "table" or #chunks ~= #shape then
    error(sformat("dlua.array: chunks %s do not fit shape %s (one entry "
      .. "per axis needed)", type(chunks) == "table" and
      "{" .. #chunks .. " entries}" or tostring(chunks), fmt_tuple(shape)),
      level)
  end
  for d = 1, #shape do
    local c = chunks[d]
    if type(c) == "number" and tointeger(c) then
      c = tointeger(c)
      if c < 1 and shape[d] > 0 then
        error(sformat("dlua.array: chunk size %d on axis %d must be "
          .. "positive", c, d), level)
      end
      local t, left = {}, shape[d]
      while left > 0 do t[#t + 1] = mmin(c, left); left = left - c end
      if #t == 0 then t[1] = 0 end
      out[d] = t
    elseif type(c) == "table" then
      local s = 0
      for i = 1, #c do
        if math_type(c[i]) ~= "integer" or c[i] < 0 then
          error(sformat("dlua.array: chunks of axis %d must be "
            .. "non-negative integers", d), level)
        end
        s = s + c[i]
      end
      if s ~= shape[d] then
        error(sformat("dlua.array: chunks {%s} of axis %d add up to %d, "
          .. "not the axis length %d", tconcat(c, ", "), d, s, shape[d]),
          level)
      end
      out[d] = {table.unpack(c)}
    else
      error(sformat("dlua.array: chunks of axis %d must be an integer or "
        .. "a list, got %s", d, type(c)), level)
    end
  end
  return out
end

local function check_shape(shape, level)
  if math_type(shape) == "integer" then shape = {shape} end
  if type(shape) ~= "table" then
    error("dlua.array: shape must be a table of integers, got "
      .. type(shape), level + 1)
  end
  local s = {}
  for i = 1, #shape do
    local v = type(shape[i]) == "number" and tointeger(shape[i])
    if not v or v < 0 then
      error(sformat("dlua.array: shape[%d] must be a non-negative integer, "
        .. "got %s", i, tostring(shape[i])), level + 1)
    end
    s[i] = v
  end
  return s
end

-- Offsets (1-based) of the blocks of each axis.
local function offsets(chunks)
  local out = {}
  for d = 1, #chunks do
    local o, at = {}, 1
    for i = 1, #chunks[d] do o[i] = at; at = at + chunks[d][i] end
    out[d] = o
  end
  return out
end

-- Every block index of a chunk grid, in C order.
local function each_block(chunks)
  local list, nd_ = {}, #chunks
  local idx = {}
  for d = 1, nd_ do
    if #chunks[d] == 0 then return list end
    idx[d] = 1
  end
  while true do
    list[#list + 1] = {table.unpack(idx, 1, nd_)}
    local d = nd_
    while d >= 1 do
      idx[d] = idx[d] + 1
      if idx[d] <= #chunks[d] then break end
      idx[d] = 1
      d = d - 1
    end
    if d < 1 then return list end
  end
end

-- ----------------------------------------------------- block evaluation

--[[ A block reference ("ref") says how a block is made on a worker:
     "key"                            the result of the task `key`
     {"gen", fn, args...}             fn(args...) (creation)
     {"T", ref}                       ref transposed
     {"ew", prog, consts, refs...}    a fused elementwise program
     {"op", opname, n, a1, a2, ...}   nd[opname](a1, ...) where ai are refs
                                      or plain values (n arguments)
   Refs built for one array are cached, so a block used twice in one task
   is one table and is made once (memo in ev). ]]

-- Elementwise operators on ndarrays or numbers, by name (task side).
local function t_binop(name, a, b)
  local ndm = require "dlua.ndarray"
  if type(a) ~= "userdata" then a = ndm.from_table(a) end
  if name == "add" then return a + b end
  if name == "sub" then return a - b end
  if name == "mul" then return a * b end
  if name == "div" then return a / b end
  if name == "idiv" then return a // b end
  if name == "mod" then return a % b end
  if name == "pow" then return a ^ b end
  if name == "band" then return a & b end
  if name == "bor" then return a | b end
  if name == "bxor" then return a ~ b end
  if name == "atan2" then return ndm.atan2(a, b) end
  return a[name](a, b) -- lt le gt ge eq ne maximum minimum
end

local function t_unop(name, a)
  if name == "unm" then return -a end
  if name == "not" then return ~a end
  return a[name](a)
end

local ev

-- Concatenate a nested list of blocks along axes[level], axes[level+1]...
local function cat_nested(list, axes, level)
  if level > #axes then return list end
  local parts = {}
  for i = 1, #list do parts[i] = cat_nested(list[i], axes, level + 1) end
  return require("dlua.ndarray").concatenate(parts, {axis = axes[level]})
end

-- A fused program's input: random blocks are drawn tile by tile inside
-- the kernel (no block-sized temporary); anything else is made.
local function fz_input(r, memo)
  if type(r) == "table" and getmetatable(r) == nil and r[1] == "gen" and
     r[3] ~= "integers" and r.n == 9 then
    return {r[3], r[4], r[5], r[6], r[7], r[8], r[9]}
  end
  return ev(r, memo)
end

function ev(r, memo)
  if type(r) ~= "table" or getmetatable(r) ~= nil then return r end
  local m = memo[r]
  if m ~= nil then return m end
  local t, v = r[1]
  local ndm = require "dlua.ndarray"
  if t == "gen" then
    v = r[2](table.unpack(r, 3, r.n or #r))
  elseif t == "T" then
    v = ev(r[2], memo):transpose()
  elseif t == "ew" then
    local ins = {}
    for i = 4, #r do ins[#ins + 1] = fz_input(r[i], memo) end
    v = ndm._fused(r[2], r[3], nil, table.unpack(ins))
    if r.bool then v = v:astype("bool") end
  elseif t == "op" then
    local args = {}
    for i = 1, r[3] do args[i] = ev(r[3 + i], memo) end
    if r[2] == "where" then v = ndm.where(args[1], args[2], args[3])
    elseif r[3] == 1 then v = t_unop(r[2], args[1])
    else v = t_binop(r[2], args[1], args[2]) end
  elseif t == "sl" then -- {"sl", ref, spec...}: a slice copy
    v = ev(r[2], memo):slice(table.unpack(r, 3, r.n or #r)):copy()
  elseif t == "rs" then -- {"rs", ref, shape}: reshaped
    v = ev(r[2], memo):reshape(table.unpack(r[3]))
  elseif t == "k" then -- {"k", value}: a constant, not a ref
    v = r[2]
  elseif t == "list" then -- {"list", ref...}: a Lua list of blocks
    v = {}
    for i = 2, #r do v[i - 1] = ev(r[i], memo) end
  elseif t == "cat" then -- {"cat", {axis...}, nested list}: concatenated
    v = cat_nested(ev(r[3], memo), r[2], 1)
  elseif t == "asm" then -- {"asm", shape, dtype, {outspec...}, ref...}
    v = ndm.zeros(r[2], r[3])
    for i = 5, #r do
      v:slice(table.unpack(r[4][i - 4])):assign(ev(r[i], memo))
    end
  else
    error("dlua.array: bad block reference " .. tostring(t))
  end
  memo[r] = v
  return v
end

-- Task: make one block from its reference.
local function t_block(r) return ev(r, {}) end

-- Where the refs of a ref start ("ew", "op": 4).
local REF_FIRST = {list = 2, asm = 5}

-- Keys of tasks a ref depends on, into out/set.
local function ref_deps(r, out, set)
  if type(r) == "string" then
    if not set[r] then set[r] = true; out[#out + 1] = r end
  elseif type(r) == "table" and getmetatable(r) == nil then
    local t = r[1]
    if t == "gen" or t == "k" then return end
    if t == "T" or t == "sl" or t == "rs" or t == "cat" then
      return ref_deps(r[t == "cat" and 3 or 2], out, set)
    end
    for i = REF_FIRST[t] or 4, #r do ref_deps(r[i], out, set) end
  end
end

-- -------------------------------------------------------------- arrays

--[[ Fields: shape, chunks (list per axis), dtype, name, layers (name ->
     {[key] = task}, every task graph this array needs), and
     ref(self, idx) -> block reference.  kind is "keys" for arrays whose
     blocks are tasks (ref = the key). ]]
local function new_array(t)
  t.offsets = offsets(t.chunks)
  t.refs = {}
  return setmetatable(t, Array)
end

local function block_ref(a, idx)
  local k = tconcat(idx, ",")
  local r = a.refs[k]
  if r == nil then
    r = a.mkref(a, idx)
    a.refs[k] = r
  end
  return r
end

local function merge_layers(...)
  local out = {}
  for i = 1, select("#", ...) do
    local a = select(i, ...)
    if is_array(a) then
      for n, l in pairs(a.layers) do out[n] = l end
    end
  end
  return out
end

local function block_shape(a, idx)
  local s = {}
  for d = 1, #idx do s[d] = a.chunks[d][idx[d]] end
  return s
end

local function nbytes_of(dtype)
  return dtype == "bool" and 1 or dtype == "float32" and 4 or 8
end

-- Array whose blocks come from fn(block index, block shape, offset) ->
-- ref.  (Creation: no tasks until something needs the blocks.)
local function gen_array(name, shape, chunks, dtype, mk)
  return new_array{name = fresh(name), shape = shape, chunks = chunks,
    dtype = dtype, layers = {}, kind = "gen",
    mkref = function(a, idx)
      local off = {}
      for d = 1, #idx do off[d] = a.offsets[d][idx[d]] end
      return mk(idx, block_shape(a, idx), off)
    end}
end

-- Make tasks of a's blocks (a no-op for arrays that already are tasks).
local function materialize(a)
  if a.kind == "keys" then return a end
  if a.materialized then return a.materialized end
  local layer, name = {}, fresh(a.name:match("^(.-)%-") or "block")
  -- blocks that already are tasks keep their keys
  local b = new_array{name = name, shape = a.shape, chunks = a.chunks,
    dtype = a.dtype, kind = "keys", layers = merge_layers(a),
    mkref = function(_, idx)
      local r = block_ref(a, idx)
      return type(r) == "string" and r or key_of(name, idx)
    end}
  for _, idx in ipairs(each_block(a.chunks)) do
    local r = block_ref(a, idx)
    if type(r) ~= "string" then
      local deps = {}
      ref_deps(r, deps, {})
      layer[key_of(name, idx)] = {fn = t_block, args = {n = 1, r},
                                  deps = deps}
    end
  end
  b.layers[name] = layer
  a.materialized = b
  return b
end

-- ------------------------------------------------------------ creation

local function creation_opts(opts, level)
  if opts ~= nil and type(opts) ~= "table" then
    error("dlua.array: options must be a table, got " .. type(opts),
      level + 1)
  end
  return opts or {}
end

local function t_full(shape, v, dtype)
  return require("dlua.ndarray").full(shape, v, dtype)
end

local function const_array(name, shape, v, opts, level)
  opts = creation_opts(opts, level + 1)
  shape = check_shape(shape, level + 1)
  local chunks = norm_chunks(shape, opts.chunks, level + 1)
  local dtype = opts.dtype or (name ~= "full" and "float64")
    or (type(v) == "boolean" and "bool")
    or (math_type(v) == "integer" and "int64") or "float64"
  nd.zeros({0}, dtype) -- validates dtype
  return gen_array(name, shape, chunks, dtype, function(_, bs)
    return {"gen", t_full, bs, v, dtype, n = 5}
  end)
end

--- da.zeros(shape [, {chunks =, dtype =}])
function M.zeros(shape, opts) return const_array("zeros", shape, 0, opts, 2) end
--- da.ones(shape [, {chunks =, dtype =}])
function M.ones(shape, opts) return const_array("ones", shape, 1, opts, 2) end
--- da.full(shape, v [, {chunks =, dtype =}])
function M.full(shape, v, opts)
  if type(v) ~= "number" and type(v) ~= "boolean" then
    error("dlua.array.full: fill value must be a number or boolean, got "
      .. type(v), 2)
  end
  return const_array("full", shape, v, opts, 2)
end

local function t_arange(f, l, st, dtype)
  return require("dlua.ndarray").arange(f, l, st, {dtype = dtype})
end

--- da.arange(first, last [, step] [, {chunks =}]) -- inclusive, like a
-- numeric for.
function M.arange(first, last, step, opts)
  if type(step) == "table" then step, opts = nil, step end
  step = step or 1
  if type(first) ~= "number" or type(last) ~= "number" or
     type(step) ~= "number" then
    error("dlua.array.arange: first, last and step must be numbers", 2)
  end
  if step == 0 then error("dlua.array.arange: step must not be zero", 2) end
  opts = creation_opts(opts, 2)
  local n = mmax(0, floor((last - first) / step + 1e-9) + 1)
  local allint = math_type(first) == "integer" and
    math_type(last) == "integer" and math_type(step) == "integer"
  local dtype = allint and "int64" or "float64"
  local shape = {n}
  local chunks = norm_chunks(shape, opts.chunks, 2)
  return gen_array("arange", shape, chunks, dtype, function(_, bs, off)
    local f = first + (off[1] - 1) * step
    return {"gen", t_arange, f, f + (bs[1] - 1) * step, step, dtype, n = 6}
  end)
end

local function t_random(kind, seed, gshape, off, bs, p1, p2, dtype)
  local b = require("dlua.ndarray")._random_block(kind, seed, gshape, off, bs,
    p1, p2)
  if dtype then b = b:astype(dtype) end
  return b
end

local RANK_OK = {bool = true, int64 = true, float32 = true, float64 = true}

local function random_array(kind, o, p1k, p1d, p2k, p2d)
  if type(o) ~= "table" then
    error("dlua.array.random." .. kind .. ": takes one options table "
      .. "{shape =, chunks =, seed =, ...}", 3)
  end
  if o.seed ~= nil and math_type(o.seed) ~= "integer" then
    error("dlua.array.random." .. kind .. ": option 'seed' must be an "
      .. "integer, got " .. (math_type(o.seed) or type(o.seed)), 3)
  end
  local shape = check_shape(o.shape, 3)
  local chunks = norm_chunks(shape, o.chunks, 3)
  local p1, p2 = o[p1k] or p1d, o[p2k] or p2d
  if type(p1) ~= "number" or type(p2) ~= "number" then
    error(sformat("dlua.array.random.%s: '%s' and '%s' must be numbers",
      kind, p1k, p2k), 3)
  end
  if kind == "integers" and (math_type(p1) ~= "integer" or
     math_type(p2) ~= "integer" or p2 < p1) then
    error("dlua.array.random.integers: needs integers low <= high "
      .. "(inclusive)", 3)
  end
  -- Without a seed, one is drawn now (as Dask draws from NumPy's global
  -- state): the graph still holds it, so recomputing gives the same numbers.
  local seed = o.seed or math.random(0, math.maxinteger)
  local dflt = kind == "integers" and "int64" or "float64"
  local dtype = o.dtype or dflt
  if not RANK_OK[dtype] then
    error(sformat("dlua.array.random.%s: unknown dtype '%s'", kind,
      tostring(dtype)), 3)
  end
  -- drawn as float64 (int64), converted when another dtype is asked for;
  -- n = 9 marks the float64 draws the fused kernel makes tile by tile
  local conv = dtype ~= dflt and dtype or nil
  return gen_array(kind, shape, chunks, dtype, function(_, bs, off)
      return {"gen", t_random, kind, seed, shape, off, bs, p1, p2, conv,
              n = conv and 10 or 9}
    end)
end

--- da.random.uniform{shape =, chunks =, seed =, low = 0, high = 1}
function M.random.uniform(o)
  return random_array("uniform", o, "low", 0, "high", 1)
end
--- da.random.normal{shape =, chunks =, seed =, mean = 0, sd = 1}
function M.random.normal(o)
  return random_array("normal", o, "mean", 0, "sd", 1)
end
--- da.random.random(shape [, {chunks =, seed =, dtype =}]): uniform on
-- [0, 1), in Dask's positional form (da.random.random((n, n), chunks=...)).
function M.random.random(shape, o)
  if o ~= nil and type(o) ~= "table" then
    error("dlua.array.random.random: options must be a table "
      .. "{chunks =, seed =, dtype =}, got " .. type(o), 2)
  end
  local t = {}
  for k, v in pairs(o or {}) do t[k] = v end
  t.shape = shape
  local r = random_array("uniform", t, "low", 0, "high", 1)
  return r
end
--- da.random.integers{shape =, chunks =, seed =, low =, high =}
-- (inclusive bounds)
function M.random.integers(o)
  return random_array("integers", o, "low", 0, "high", 1)
end

--- da.from_ndarray(a [, {chunks =}]): blocks of an in-memory ndarray
-- (each block becomes a data value of the graph).
function M.from_ndarray(a, opts)
  if getmetatable(a) ~= NDMT then
    error("dlua.array.from_ndarray: expected an ndarray, got " .. type(a), 2)
  end
  opts = creation_opts(opts, 2)
  local shape = a.shape
  local chunks = norm_chunks(shape, opts.chunks, 2)
  local name = fresh("array")
  local layer = {}
  local arr = new_array{name = name, shape = shape, chunks = chunks,
    dtype = a.dtype, kind = "keys", layers = {[name] = layer},
    mkref = function(_, idx) return key_of(name, idx) end}
  for _, idx in ipairs(each_block(chunks)) do
    local spec = {}
    for d = 1, #idx do
      local o = arr.offsets[d][idx[d]]
      spec[d] = {o, o + chunks[d][idx[d]] - 1}
    end
    layer[key_of(name, idx)] = a:slice(table.unpack(spec)):copy()
  end
  return arr
end

--- da.from_delayed(d, shape [, {dtype =}]): one block made by a Delayed.
function M.from_delayed(d, shape, opts)
  local delayed = require "dlua.delayed"
  if not delayed.is_delayed(d) then
    error("dlua.array.from_delayed: expected a Delayed", 2)
  end
  opts = creation_opts(opts, 2)
  shape = check_shape(shape, 2)
  local g = d:graph()
  local name = fresh("from-delayed")
  local chunks = norm_chunks(shape, nil, 2)
  return new_array{name = name, shape = shape, chunks = chunks,
    dtype = opts.dtype or "float64", kind = "keys", layers = {[name] = g},
    mkref = function() return d.key end}
end

-- ---------------------------------------------------------- elementwise

-- dtype of a op b (mirrors dl_nd_binop).
local CMP = {lt = true, le = true, gt = true, ge = true, eq = true,
             ne = true}
-- float32 stays float32 with float32, bool and numbers (sa, sb: scalar
-- operands), as dl_nd_binop does; with int64 or float64 arrays it widens.
local function result_dtype(op, ta, tb, sa, sb)
  if CMP[op] then return "bool" end
  if (ta == "float32" or tb == "float32") and
     not (op == "band" or op == "bor" or op == "bxor") then
    local function keeps(t, sc) return t == "float32" or t == "bool" or sc end
    return (keeps(ta, sa) and keeps(tb, sb)) and "float32" or "float64"
  end
  if op == "div" or op == "atan2" then return "float64" end
  if op == "band" or op == "bor" or op == "bxor" then
    return (ta == "bool" and tb == "bool") and "bool" or "int64"
  end
  if ta == "float64" or tb == "float64" then return "float64" end
  return "int64"
end

local function dtype_of(v)
  if is_array(v) then return v.dtype end
  if type(v) == "boolean" then return "bool" end
  if math_type(v) == "integer" then return "int64" end
  if type(v) == "number" then return "float64" end
  return v.dtype
end

-- Fused program op codes (dl_nd.h).
local FZ_IN, FZ_K, FZ_BIN, FZ_UN = 0, 1, 2, 3
local BIN = {add = 0, sub = 1, mul = 2, div = 3, idiv = 4, mod = 5,
             pow = 6, lt = 7, le = 8, gt = 9, ge = 10, eq = 11, ne = 12,
             band = 13, bor = 14, bxor = 15, minimum = 16, maximum = 17,
             atan2 = 18}
local UN = {unm = 0, abs = 1, sign = 2, ["not"] = 3, floor = 4, ceil = 5,
            round = 6, sqrt = 7, exp = 8, log = 9, log10 = 10, log2 = 11,
            sin = 12, cos = 13, tan = 14, arcsin = 15, arccos = 16,
            arctan = 17, sinh = 18, cosh = 19, tanh = 20, expm1 = 21,
            log1p = 22}
-- Binary ops the fused float64 machine runs (dl_nd_fused).
local FUSABLE_BIN = {add = true, sub = true, mul = true, div = true,
  lt = true, le = true, gt = true, ge = true, eq = true, ne = true,
  idiv = true, mod = true, pow = true, minimum = true, maximum = true,
  atan2 = true}

-- The expression of an elementwise array for fusion: {kind = "in",
-- array} leaves, {kind = "k", value}, {kind = "bin"/"un", op, args}.
local function leaf_expr(v)
  if is_array(v) then return v.expr or {kind = "in", arr = v} end
  return {kind = "k", value = v}
end

-- Append the program of expression e to prog; inputs are numbered in
-- ins (array -> index), constants in consts.
local function compile(e, prog, consts, ins, inlist)
  if e.kind == "in" then
    local i = ins[e.arr]
    if not i then
      inlist[#inlist + 1] = e.arr
      i = #inlist - 1
      ins[e.arr] = i
    end
    prog[#prog + 1] = FZ_IN; prog[#prog + 1] = i
  elseif e.kind == "k" then
    consts[#consts + 1] = e.value + 0.0
    prog[#prog + 1] = FZ_K; prog[#prog + 1] = #consts - 1
  elseif e.kind == "bin" then
    compile(e.a, prog, consts, ins, inlist)
    compile(e.b, prog, consts, ins, inlist)
    prog[#prog + 1] = FZ_BIN; prog[#prog + 1] = BIN[e.op]
  else
    compile(e.a, prog, consts, ins, inlist)
    prog[#prog + 1] = FZ_UN; prog[#prog + 1] = UN[e.op]
  end
end

-- Can e run on the fused float64 machine?  Every input float64 (or a
-- number), every op supported, at most 16 deep.
local function fusable(e, depth)
  depth = depth or 1
  if depth > 12 then return false end
  if e.kind == "in" then return e.arr.dtype == "float64" end
  if e.kind == "k" then return type(e.value) == "number" end
  if e.kind == "bin" then
    return FUSABLE_BIN[e.op] and fusable(e.a, depth + 1) and
      fusable(e.b, depth + 2)
  end
  return UN[e.op] ~= nil and e.op ~= "not" and fusable(e.a, depth + 1)
end

-- Broadcast shapes of a and b; error naming both.
local function bshape(sa, sb, what, level)
  local n = mmax(#sa, #sb)
  local out = {}
  for i = 1, n do
    local x = sa[#sa - n + i] or 1
    local y = sb[#sb - n + i] or 1
    if x == y or y == 1 then out[i] = x
    elseif x == 1 then out[i] = y
    else
      error(sformat("dlua.array: %s: shapes %s and %s cannot be broadcast "
        .. "together", what, fmt_tuple(sa), fmt_tuple(sb)), level + 1)
    end
  end
  return out
end

-- Block ref of operand v (array or scalar) for output block idx of an
-- output with out_nd axes; broadcast axes (length 1) take block 1.
local function operand_ref(v, idx)
  if not is_array(v) then return v end
  local n, sub = #v.shape, {}
  for d = 1, n do
    local od = #idx - n + d
    sub[d] = (v.shape[d] == 1) and 1 or idx[od]
  end
  return block_ref(v, sub)
end

local function out_chunks(a, b, shape, what, level)
  local chunks = {}
  for d = 1, #shape do
    local ca, cb
    if is_array(a) then
      local ad = #a.shape - #shape + d
      if ad >= 1 and a.shape[ad] == shape[d] then ca = a.chunks[ad] end
    end
    if is_array(b) then
      local bd = #b.shape - #shape + d
      if bd >= 1 and b.shape[bd] == shape[d] then cb = b.chunks[bd] end
    end
    if ca and cb and tconcat(ca, ",") ~= tconcat(cb, ",") then
      error(sformat("dlua.array: %s: chunks differ on axis %d ({%s} and "
        .. "{%s}); rechunk one operand first", what, d, tconcat(ca, ", "),
        tconcat(cb, ", ")), level + 1)
    end
    chunks[d] = ca or cb or {shape[d]}
  end
  return chunks
end

local function elemwise(op, a, b, level)
  level = level + 1
  if getmetatable(a) == NDMT then a = M.from_ndarray(a) end
  if getmetatable(b) == NDMT then b = M.from_ndarray(b) end
  for i = 1, 2 do
    local v = i == 1 and a or b
    if not is_array(v) and type(v) ~= "number" and type(v) ~= "boolean" then
      error(sformat("dlua.array: %s: cannot combine an array with a %s",
        op, type(v)), level)
    end
  end
  if not is_array(a) and not is_array(b) then
    error(sformat("dlua.array: %s: expects at least one dlua.array, got %s "
      .. "and %s", op, type(a), type(b)), level)
  end
  local sa = is_array(a) and a.shape or {}
  local sb = is_array(b) and b.shape or {}
  local shape = bshape(sa, sb, op, level)
  local chunks = out_chunks(a, b, shape, op, level)
  -- a single-block broadcast operand must really be one block
  for _, v in ipairs{a, b} do
    if is_array(v) then
      for d = 1, #v.shape do
        if v.shape[d] == 1 and #v.chunks[d] ~= 1 then
          error("dlua.array: bad chunks", level)
        end
      end
    end
  end
  local expr = {kind = "bin", op = op, a = leaf_expr(a), b = leaf_expr(b)}
  local dtype = result_dtype(op, dtype_of(a), dtype_of(b), not is_array(a),
    not is_array(b))
  local same = true -- no broadcasting: fusion possible
  for _, v in ipairs{a, b} do
    if is_array(v) and #v.shape ~= #shape then same = false end
    if is_array(v) then
      for d = 1, #v.shape do
        if v.shape[d] ~= shape[d] then same = false end
      end
    end
  end
  return M._ew(expr, shape, chunks, dtype, same, op, a, b)
end

-- An elementwise array from expression expr.  When every input has the
-- output's shape and the expression is fusable, block refs are "ew"
-- programs over the leaf blocks; else one "op" per operator.
function M._ew(expr, shape, chunks, dtype, same, op, a, b)
  local fuse = same and fusable(expr) and dtype ~= "int64"
  local arr = new_array{name = fresh(op), shape = shape, chunks = chunks,
    dtype = dtype, kind = "ew", layers = merge_layers(a, b),
    expr = same and expr or nil}
  if fuse then
    local prog, consts, ins, inlist = {}, {}, {}, {}
    compile(expr, prog, consts, ins, inlist)
    for _, v in ipairs(inlist) do
      for n, l in pairs(v.layers) do arr.layers[n] = l end
    end
    local isbool = dtype == "bool"
    arr.mkref = function(_, idx)
      local r = {"ew", prog, consts, bool = isbool or nil}
      for i, v in ipairs(inlist) do r[3 + i] = block_ref(v, idx) end
      return r
    end
  else
    arr.expr = nil
    arr.mkref = function(_, idx)
      if b == nil then
        return {"op", op, 1, operand_ref(a, idx)}
      end
      return {"op", op, 2, operand_ref(a, idx),
              operand_ref(b, idx)}
    end
  end
  return arr
end

local function unary(op, a, level)
  if getmetatable(a) == NDMT then a = M.from_ndarray(a) end
  if not is_array(a) then
    error(sformat("dlua.array.%s: expects a dlua.array, got %s", op,
      type(a)), level + 1)
  end
  local expr = {kind = "un", op = op, a = leaf_expr(a)}
  local dtype = (op == "unm" or op == "abs" or op == "sign" or
    op == "floor" or op == "ceil" or op == "round" or op == "not")
    and a.dtype or (a.dtype == "float32" and "float32" or "float64")
  if op == "isnan" or op == "isinf" or op == "isfinite" then
    dtype = "bool"
  end
  if op == "not" and a.dtype == "float64" then
    error("dlua.array: ~ needs a bool or int64 array", level + 1)
  end
  return M._ew(expr, a.shape, a.chunks, dtype, true, op, a, nil)
end

for _, op in ipairs{"add", "sub", "mul", "div", "idiv", "mod", "pow",
                    "band", "bor", "bxor"} do
  Array["__" .. op] = function(a, b) return elemwise(op, a, b, 2) end
end
Array.__unm = function(a) return unary("unm", a, 2) end
Array.__bnot = function(a) return unary("not", a, 2) end
for op in pairs(CMP) do
  methods[op] = function(a, b) return elemwise(op, a, b, 2) end
end
for _, op in ipairs{"maximum", "minimum", "atan2"} do
  methods[op] = function(a, b) return elemwise(op, a, b, 2) end
  M[op] = methods[op]
end
for op in pairs(UN) do
  if op ~= "not" and op ~= "unm" then
    methods[op] = function(a) return unary(op, a, 2) end
    M[op] = methods[op]
  end
end
for _, op in ipairs{"isnan", "isinf", "isfinite"} do
  methods[op] = function(a) return unary(op, a, 2) end
  M[op] = methods[op]
end

--- da.where(cond, a, b)
function M.where(c, a, b)
  if getmetatable(c) == NDMT then c = M.from_ndarray(c) end
  if getmetatable(a) == NDMT then a = M.from_ndarray(a) end
  if getmetatable(b) == NDMT then b = M.from_ndarray(b) end
  if not is_array(c) then
    error("dlua.array.where: the condition must be a dlua.array, got "
      .. type(c), 2)
  end
  for i = 1, 2 do
    local v = i == 1 and a or b
    if not is_array(v) and type(v) ~= "number" and type(v) ~= "boolean" then
      error(sformat("dlua.array.where: argument #%d must be a dlua.array, a "
        .. "number or a boolean, got %s", i + 1, type(v)), 2)
    end
  end
  local shape = bshape(bshape(c.shape, is_array(a) and a.shape or {}, "where",
    2), is_array(b) and b.shape or {}, "where", 2)
  local chunks = out_chunks(c, is_array(a) and a or b, shape, "where", 2)
  local dt = result_dtype("add", dtype_of(a), dtype_of(b), not is_array(a),
    not is_array(b))
  if dtype_of(a) == "bool" and dtype_of(b) == "bool" then dt = "bool" end
  return new_array{name = fresh("where"), shape = shape, chunks = chunks,
    dtype = dt, kind = "ew", layers = merge_layers(c, a, b),
    mkref = function(_, idx)
      return {"op", "where", 3, operand_ref(c, idx), operand_ref(a, idx),
              operand_ref(b, idx)}
    end}
end

-- ------------------------------------------------------------ transpose

--- x:transpose() / x.T: axes reversed (2-d and n-d).
function methods.transpose(a)
  local n = #a.shape
  local shape, chunks = {}, {}
  for d = 1, n do shape[d] = a.shape[n + 1 - d]; chunks[d] = a.chunks[n + 1 - d] end
  return new_array{name = fresh("transpose"), shape = shape, chunks = chunks,
    dtype = a.dtype, kind = "T", layers = merge_layers(a), tsrc = a,
    mkref = function(_, idx)
      local src = {}
      for d = 1, n do src[d] = idx[n + 1 - d] end
      return {"T", block_ref(a, src)}
    end}
end

-- ------------------------------------------------------------ reductions

-- Partial results: full reductions give Lua values, axis reductions
-- ndarrays.  mean: {sum, count}; var/std: {n, mean, M2} (Chan et al.).
local function t_partial(op, axis, r, fused)
  local ndm = require "dlua.ndarray"
  local b
  if fused and op == "sum" and axis == nil then
    local ins, memo = {}, {}
    for i = 4, #r do ins[#ins + 1] = fz_input(r[i], memo) end
    return ndm._fused(r[2], r[3], "sum", table.unpack(ins))
  end
  b = ev(r, {})
  if type(b) ~= "userdata" then b = ndm.from_table(b) end
  local o = axis and {axis = axis} or nil
  if op == "mean" then
    return {b:sum(o), axis and b.shape[axis] or b.size}
  elseif op == "var" or op == "std" then
    local n = axis and b.shape[axis] or b.size
    local m = b:mean(o)
    return {n, m, b:var(o) * n}
  end
  return b[op](b, o)
end

local function combine2(op, x, y)
  local ndm = require "dlua.ndarray"
  if op == "sum" then return x + y end
  if op == "prod" then return x * y end
  if op == "min" then
    if type(x) == "number" then return mmin(x, y) end
    return ndm.minimum(x, y)
  end
  if op == "max" then
    if type(x) == "number" then return mmax(x, y) end
    return ndm.maximum(x, y)
  end
  if op == "any" then
    if type(x) == "boolean" then return x or y end
    return x | y
  end
  if op == "all" then
    if type(x) == "boolean" then return x and y end
    return x & y
  end
  if op == "mean" then return {x[1] + y[1], x[2] + y[2]} end
  -- var/std
  local na, ma, m2a, nb, mb, m2b = x[1], x[2], x[3], y[1], y[2], y[3]
  local n = na + nb
  if n == 0 then return x end
  local delta = mb - ma
  return {n, ma + delta * (nb / n), m2a + m2b + delta * delta * (na * nb / n)}
end

local function t_combine(op, parts)
  local acc = parts[1]
  for i = 2, #parts do acc = combine2(op, acc, parts[i]) end
  return acc
end

local function t_finish(op, ddof, p)
  if op == "mean" then return p[1] / p[2] end
  if op == "var" or op == "std" then
    local v = p[3] / (p[1] - ddof)
    if op == "std" then
      if type(v) == "number" then return math.sqrt(v) end
      return v:sqrt()
    end
    return v
  end
  return p
end

local RED = {sum = true, prod = true, min = true, max = true, mean = true,
             var = true, std = true, any = true, all = true}

local function reduction(a, op, o, level)
  level = level + 1
  if math_type(o) == "integer" then o = {axis = o} end -- x:sum(1), as axis=
  if o ~= nil and type(o) ~= "table" then
    error(sformat("dlua.array: %s: options must be a table {axis =, "
      .. "split_every =}, got %s", op, type(o)), level)
  end
  o = o or {}
  local axis = o.axis
  local n = #a.shape
  if axis ~= nil then
    if math_type(axis) ~= "integer" or axis == 0 or axis > n or axis < -n then
      error(sformat("dlua.array: %s: axis %s is out of range for shape %s "
        .. "(axes 1..%d%s)", op, tostring(axis), fmt_tuple(a.shape), n,
        axis == 0 and "; axes count from 1, as Lua's indices: Dask's axis=0 "
          .. "is axis 1" or ""), level)
    end
    if axis < 0 then axis = axis + n + 1 end
  end
  local se = o.split_every or 8
  if math_type(se) ~= "integer" or se < 2 then
    error("dlua.array: split_every must be an integer >= 2", level)
  end
  local ddof = o.ddof or 0
  local name = fresh(op)
  local layer = {}
  local fused = a.kind == "ew" and a.dtype ~= "int64" and axis == nil and
    op == "sum"
  -- partial per block
  local groups, order = {}, {}
  for _, idx in ipairs(each_block(a.chunks)) do
    local r = block_ref(a, idx)
    local deps = {}
    ref_deps(r, deps, {})
    local k = key_of(name .. "-p", idx)
    local isfz = fused and type(r) == "table" and r[1] == "ew"
    layer[k] = {fn = t_partial, args = {n = 4, op, axis, r, isfz},
                deps = deps}
    local gidx = {}
    for d = 1, n do if axis and d ~= axis then gidx[#gidx + 1] = idx[d] end end
    local gk = tconcat(gidx, ",")
    if not groups[gk] then groups[gk] = {}; order[#order + 1] = {gk, gidx} end
    local g = groups[gk]
    g[#g + 1] = k
  end
  -- combine trees
  local level_no = 0
  local finals = {}
  for _, go in ipairs(order) do
    local keys = groups[go[1]]
    while #keys > 1 do
      level_no = level_no + 1
      local nxt = {}
      for i = 1, #keys, se do
        local part = {}
        for j = i, mmin(i + se - 1, #keys) do part[#part + 1] = keys[j] end
        local k = sformat("%s-c%d.%d", name, level_no, #nxt + 1) .. "," ..
          go[1]
        layer[k] = {fn = t_combine, args = {n = 2, op, part}, deps = part}
        nxt[#nxt + 1] = k
      end
      keys = nxt
    end
    local fk = key_of(name, #go[2] > 0 and go[2] or {0})
    layer[fk] = {fn = t_finish, args = {n = 3, op, ddof, keys[1]},
                 deps = {keys[1]}}
    finals[go[1]] = fk
  end
  local shape, chunks = {}, {}
  for d = 1, n do
    if axis and d ~= axis then
      shape[#shape + 1] = a.shape[d]
      chunks[#chunks + 1] = a.chunks[d]
    end
  end
  local dtype = a.dtype
  if op == "mean" or op == "var" or op == "std" then
    dtype = dtype == "float32" and "float32" or "float64"
  elseif op == "any" or op == "all" then dtype = "bool"
  elseif (op == "sum" or op == "prod") and dtype == "bool" then
    dtype = "int64"
  end
  local layers = merge_layers(a)
  layers[name] = layer
  return new_array{name = name, shape = shape, chunks = axis and chunks or {},
    dtype = dtype, kind = "keys", layers = layers, scalar = axis == nil,
    mkref = function(_, idx)
      return finals[tconcat(idx, ",")] or finals[""]
    end}
end

for op in pairs(RED) do
  methods[op] = function(a, o) return reduction(a, op, o, 2) end
end

-- --------------------------------------------------------------- matmul

-- One output block: the sum of its products, accumulated by dgemm in
-- one array.  One memo for all the refs: a generated block that is both
-- an a and (transposed) a b block, as on x @ x.T's diagonal, is drawn
-- once, and the b side stays its transpose view (dsyrk).
local function t_matmul(arefs, brefs)
  local as, bs, memo = {}, {}, {}
  for i = 1, #arefs do
    as[i], bs[i] = ev(arefs[i], memo), ev(brefs[i], memo)
  end
  return require("dlua.ndarray")._matmul_sum(as, bs)
end

-- Output blocks of at least this many rows and columns draw their
-- generated inputs themselves (see matmul), when what one task draws (a
-- row of a's blocks and a column of b's, all alive until its products are
-- summed) fits in GEN_INLINE_BYTES.
local GEN_INLINE_MIN = 256
local GEN_INLINE_BYTES = 128 * 1048576

local function min_chunk(c)
  local m = math.huge
  for i = 1, #c do m = math.min(m, c[i]) end
  return m
end

local function max_chunk(c)
  local m = 0
  for i = 1, #c do m = math.max(m, c[i]) end
  return m
end

--- x:matmul(y) / da.matmul(x, y): blockwise matrix product of 2-d arrays
-- (inner chunks must agree).
function methods.matmul(a, b)
  if not is_array(a) or not is_array(b) or #a.shape ~= 2 or #b.shape ~= 2 then
    error("dlua.array.matmul: needs two 2-d arrays", 2)
  end
  if a.shape[2] ~= b.shape[1] then
    error(sformat("dlua.array.matmul: shapes %s and %s do not align",
      fmt_tuple(a.shape), fmt_tuple(b.shape)), 2)
  end
  if tconcat(a.chunks[2], ",") ~= tconcat(b.chunks[1], ",") then
    error(sformat("dlua.array.matmul: inner chunks differ ({%s} and {%s}); "
      .. "rechunk first", tconcat(a.chunks[2], ", "),
      tconcat(b.chunks[1], ", ")), 2)
  end
  -- Inputs used by many output blocks become tasks once (a transpose of
  -- tasks stays a cheap ref) -- except generated ones (random, zeros,
  -- arange) where the output blocks are big: those are drawn again inside
  -- each product task.  Drawing a 1000 x 1000 uniform block takes under
  -- 1 ms, a 40th of the dgemm it feeds (2n flops per element drawn, n the
  -- other side's block size); as a task its 8 MB are encoded, stored and
  -- copied to each other worker that multiplies with it.
  local inline = min_chunk(a.chunks[1]) >= GEN_INLINE_MIN and
    min_chunk(b.chunks[2]) >= GEN_INLINE_MIN and
    (max_chunk(a.chunks[1]) + max_chunk(b.chunks[2])) * a.shape[2] * 8
      <= GEN_INLINE_BYTES
  local function mat(x)
    if inline and (x.kind == "gen" or x.kind == "T" and x.tsrc.kind == "gen")
    then
      return x
    end
    if x.kind == "T" then return methods.transpose(materialize(x.tsrc)) end
    return materialize(x)
  end
  local ma, mb = mat(a), mat(b)
  local name = fresh("matmul")
  local layer = {}
  local chunks = {a.chunks[1], b.chunks[2]}
  -- x @ x.T is symmetric: only the blocks on and above the diagonal are
  -- tasks (the diagonal ones by dsyrk, in C), those below are their
  -- transposes -- half the flops, as NumPy's matmul does for a @ a.T.
  local sym = b.kind == "T" and b.tsrc == a
  for _, idx in ipairs(each_block(chunks)) do
    if sym and idx[1] > idx[2] then goto continue end
    local ar, br, deps, set = {}, {}, {}, {}
    for l = 1, #a.chunks[2] do
      ar[l] = block_ref(ma, {idx[1], l})
      br[l] = block_ref(mb, {l, idx[2]})
      ref_deps(ar[l], deps, set)
      ref_deps(br[l], deps, set)
    end
    layer[key_of(name, idx)] = {fn = t_matmul, args = {n = 2, ar, br},
                                deps = deps}
    ::continue::
  end
  local layers = merge_layers(ma, mb)
  layers[name] = layer
  return new_array{name = name, shape = {a.shape[1], b.shape[2]},
    chunks = chunks, dtype = "float64", kind = sym and "sym" or "keys",
    layers = layers,
    mkref = function(_, idx)
      if sym and idx[1] > idx[2] then
        return {"T", key_of(name, {idx[2], idx[1]})}
      end
      return key_of(name, idx)
    end}
end
M.matmul = methods.matmul
methods.dot = methods.matmul

-- -------------------------------------------------------------- running

local function graph_of(a)
  local m = a.scalar and a or materialize(a)
  local g = {}
  for _, l in pairs(m.layers) do
    for k, t in pairs(l) do g[k] = t end
  end
  return g, m
end

--- x:compute([opts]) -> ndarray (a Lua number for a full reduction).
-- opts go to dlua.compute_graph (client =, scheduler =, ...).
function methods.compute(a, opts)
  if not is_array(a) then error("dlua.array: use x:compute()", 2) end
  local g, m = graph_of(a)
  local cg = require("dlua.delayed").compute_graph
  if a.scalar then
    local k = block_ref(m, {})
    local v = cg(g, k, opts)
    if type(v) == "userdata" and v.size == 1 then v = v:item() end
    if a.dtype == "int64" and type(v) == "number" then
      v = tointeger(v) or v
    end
    return v
  end
  local blocks = each_block(m.chunks)
  local keys = {}
  for i, idx in ipairs(blocks) do keys[i] = block_ref(m, idx) end
  local vals = #keys > 0 and cg(g, keys, opts) or {}
  if #blocks == 1 then
    return vals[1]
  end
  local out = nd.zeros(a.shape, a.dtype)
  for i, idx in ipairs(blocks) do
    local spec = {}
    for d = 1, #idx do
      local o = m.offsets[d][idx[d]]
      spec[d] = {o, o + m.chunks[d][idx[d]] - 1}
    end
    out:slice(table.unpack(spec)):assign(vals[i])
  end
  return out
end

-- ------------------------------------------------------------- slicing

local function int_or_nil(v) return v == nil or math_type(v) == "integer" end

-- One axis of a slice against length n: {int = i} (the axis is dropped)
-- or {first =, step =, count =}, bounds clamped as NumPy's (and
-- ndarray's) slices are.
local function norm_axis_spec(s, n, d, level)
  if type(s) == "number" then
    local i = tointeger(s)
    if not i then
      error(sformat("dlua.array: slice: index %s of axis %d is not an "
        .. "integer", tostring(s), d), level)
    end
    local j = i < 0 and n + 1 + i or i
    if j < 1 or j > n then
      error(sformat("dlua.array: slice: index %d is out of bounds for axis "
        .. "%d with size %d", i, d, n), level)
    end
    return {int = j}
  end
  if s == nil then s = {} end
  if type(s) ~= "table" or getmetatable(s) ~= nil then
    error(sformat("dlua.array: slice: axis %d takes an index or {first, "
      .. "last, step}, got %s", d, type(s)), level)
  end
  local f, l, st = s[1], s[2], s[3] or 1
  if not (int_or_nil(f) and int_or_nil(l) and math_type(st) == "integer")
  then
    error(sformat("dlua.array: slice: {first, last, step} of axis %d must "
      .. "be integers (or nil)", d), level)
  end
  if st == 0 then
    error(sformat("dlua.array: slice: step of axis %d must not be zero", d),
      level)
  end
  if f and f < 0 then f = n + 1 + f end
  if l and l < 0 then l = n + 1 + l end
  if st > 0 then
    f, l = mmax(f or 1, 1), mmin(l or n, n)
  else
    f, l = mmin(f or n, n), mmax(l or 1, 1)
  end
  local count = 0
  if (st > 0 and l >= f) or (st < 0 and l <= f) then
    count = (l - f) // st + 1
  end
  return {first = f, step = st, count = count}
end

-- The pieces of one axis of a slice: per output block, the input block
-- and the local {first, last, step} in it, in the order the slice visits
-- them (so only touched blocks appear).
local function axis_plan(sp, sizes, offs)
  if sp.int then
    for b = 1, #sizes do
      if sp.int < offs[b] + sizes[b] then
        return {{blk = b, idx = sp.int - offs[b] + 1}}
      end
    end
  end
  local out = {}
  if sp.count == 0 then return out end
  local f, st, cnt = sp.first, sp.step, sp.count
  local b0, b1, bs = 1, #sizes, 1
  if st < 0 then b0, b1, bs = #sizes, 1, -1 end
  for b = b0, b1, bs do
    local lo, hi = offs[b], offs[b] + sizes[b] - 1
    local k0, k1
    if st > 0 then
      k0, k1 = mmax(0, -((f - lo) // st)), mmin(cnt - 1, (hi - f) // st)
    else
      local m = -st
      k0, k1 = mmax(0, -((hi - f) // m)), mmin(cnt - 1, (f - lo) // m)
    end
    if k1 >= k0 then
      out[#out + 1] = {blk = b, lf = f + k0 * st - lo + 1,
                       ll = f + k1 * st - lo + 1, st = st, cnt = k1 - k0 + 1}
    end
  end
  return out
end

local function do_slice(a, specs, nspec, level)
  level = level + 1
  local n = #a.shape
  if nspec > n then
    error(sformat("dlua.array: slice: %d specs for an array of %d axes",
      nspec, n), level)
  end
  local plans, isint, shape, chunks = {}, {}, {}, {}
  for d = 1, n do
    local sp = norm_axis_spec(specs[d], a.shape[d], d, level + 1)
    plans[d] = axis_plan(sp, a.chunks[d], a.offsets[d])
    isint[d] = sp.int ~= nil
    if not sp.int then
      shape[#shape + 1] = sp.count
      local c = {}
      for j, p in ipairs(plans[d]) do c[j] = p.cnt end
      chunks[#chunks + 1] = c
    end
  end
  local arr = new_array{name = fresh("getitem"), shape = shape,
    chunks = chunks, dtype = a.dtype, kind = "sl", layers = merge_layers(a),
    mkref = function(_, idx)
      local src, spec, full, o = {}, {}, true, 0
      for d = 1, n do
        local p
        if isint[d] then
          p = plans[d][1]
          spec[d], full = p.idx, false
        else
          o = o + 1
          p = plans[d][idx[o]]
          spec[d] = {p.lf, p.ll, p.st}
          if p.st ~= 1 or p.lf ~= 1 or p.ll ~= a.chunks[d][p.blk] then
            full = false
          end
        end
        src[d] = p.blk
      end
      local r = block_ref(a, src)
      if full then return r end
      local sl = {"sl", r, n = n + 2}
      for d = 1, n do sl[d + 2] = spec[d] end
      return sl
    end}
  if #shape == 0 then -- one element: computes to a Lua value
    local m = materialize(arr)
    m.scalar = true
    return m
  end
  return arr
end

--- x:slice(s1, s2, ...) / x[{s1, s2, ...}]: as ndarray's slice (an index
-- drops the axis; {first, last, step} is inclusive, negative counts from
-- the end); only the blocks the slice touches are computed.
function methods.slice(a, ...)
  if not is_array(a) then error("dlua.array: use x:slice(...)", 2) end
  local r = do_slice(a, {...}, select("#", ...), 2)
  return r -- not a tail call: errors point at the caller's line
end

-- ------------------------------------------------------------- rechunk

-- Per new block of one axis: the pieces of old blocks it is made of,
-- {blk, lf, ll (in the old block), of, ol (in the new block)}.
local function axis_overlaps(old, new)
  local oo, at = {}, 0
  for b = 1, #old do oo[b] = at; at = at + old[b] end
  local out, ob, g = {}, 1, 0
  for j = 1, #new do
    local lo, hi = g, g + new[j] - 1
    while ob <= #old and oo[ob] + old[ob] - 1 < lo do ob = ob + 1 end
    local ps, b = {}, ob
    while b <= #old and oo[b] <= hi do
      local s, e = mmax(lo, oo[b]), mmin(hi, oo[b] + old[b] - 1)
      if e >= s then
        ps[#ps + 1] = {blk = b, lf = s - oo[b] + 1, ll = e - oo[b] + 1,
                       of = s - lo + 1, ol = e - lo + 1}
      end
      b = b + 1
    end
    out[j] = ps
    g = hi + 1
  end
  return out
end

local function same_chunks(x, y)
  for d = 1, #x do
    if tconcat(x[d], ",") ~= tconcat(y[d], ",") then return false end
  end
  return true
end

-- Every combination of one entry per list (lists[d] is a list), C order.
local function cross(lists)
  local out = {{}}
  for d = 1, #lists do
    local nxt = {}
    for _, pre in ipairs(out) do
      for _, v in ipairs(lists[d]) do
        local t = {table.unpack(pre)}
        t[d] = v
        nxt[#nxt + 1] = t
      end
    end
    out = nxt
  end
  return out
end

local function rechunk(a, chunks, level)
  level = level + 1
  if type(chunks) == "table" then -- -1: the whole axis, as Dask's
    local c = {}
    for d = 1, #chunks do
      c[d] = chunks[d] == -1 and mmax(a.shape[d], 1) or chunks[d]
    end
    chunks = c
  end
  local new = norm_chunks(a.shape, chunks, level)
  if same_chunks(new, a.chunks) then return a end
  local name = fresh("rechunk")
  local layer, n = {}, #a.shape
  local ov = {}
  for d = 1, n do ov[d] = axis_overlaps(a.chunks[d], new[d]) end
  local src -- the input as tasks, made once (pieces come from many)
  local function piece_ref(p)
    src = src or materialize(a)
    local inidx, spec, whole = {}, {}, true
    for d = 1, n do
      local q = p[d]
      inidx[d] = q.blk
      spec[d] = {q.lf, q.ll}
      if q.lf ~= 1 or q.ll ~= a.chunks[d][q.blk] then whole = false end
    end
    local r = block_ref(src, inidx)
    if whole then return r end
    -- cut on the worker that holds the block: only the piece travels
    local sl = {"sl", r, n = n + 2}
    for d = 1, n do sl[d + 2] = spec[d] end
    local k = name .. "-split-" .. tconcat(inidx, ",") .. "_" ..
      tconcat(spec[1], ".") .. (n > 1 and ("_" .. tostring(p.j)) or "")
    local deps = {}
    ref_deps(sl, deps, {})
    layer[k] = {fn = t_block, args = {n = 1, sl}, deps = deps}
    return k
  end
  local arr = new_array{name = name, shape = a.shape, chunks = new,
    dtype = a.dtype, kind = "rechunk", layers = {},
    mkref = function(self, idx)
      local lists = {}
      for d = 1, n do lists[d] = ov[d][idx[d]] end
      local pieces = cross(lists)
      if #pieces == 1 then
        local p = pieces[1]
        p.j = tconcat(idx, ",")
        return piece_ref(p)
      end
      local r = {"asm", block_shape(self, idx), a.dtype, {}}
      for i, p in ipairs(pieces) do
        p.j = tconcat(idx, ",")
        local outspec = {}
        for d = 1, n do outspec[d] = {p[d].of, p[d].ol} end
        r[4][i] = outspec
        r[4 + i] = piece_ref(p)
      end
      return r
    end}
  -- make every ref now, so the split tasks are in the layer
  for _, idx in ipairs(each_block(new)) do block_ref(arr, idx) end
  arr.layers = merge_layers(src or a)
  arr.layers[name] = layer
  return arr
end

--- x:rechunk(chunks) / da.rechunk(x, chunks): the same array in other
-- blocks (chunks as in creation; -1 is the whole axis).
function methods.rechunk(a, chunks)
  if not is_array(a) then error("dlua.array: use x:rechunk(chunks)", 2) end
  local r = rechunk(a, chunks, 2)
  return r
end
M.rechunk = methods.rechunk

-- ------------------------------------------------ concatenate and stack

local RANK = {bool = 1, int64 = 2, float32 = 3, float64 = 4}

-- The dtype that holds both (float32 with int64 is float64, as NumPy).
local function promote(a, b)
  if a == b then return a end
  if a == "float64" or b == "float64" then return "float64" end
  if a == "float32" or b == "float32" then
    return (a == "int64" or b == "int64") and "float64" or "float32"
  end
  return RANK[a] > RANK[b] and a or b
end

local function join_args(who, list, opts, level)
  level = level + 1
  if type(list) ~= "table" or is_array(list) or #list == 0 then
    error(sformat("dlua.array.%s: expects a non-empty list of arrays",
      who), level)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(sformat("dlua.array.%s: options must be a table {axis =}", who),
      level)
  end
  local arrs, dtype = {}, nil
  for i, v in ipairs(list) do
    if getmetatable(v) == NDMT then v = M.from_ndarray(v) end
    if not is_array(v) then
      error(sformat("dlua.array.%s: element %d is a %s, not an array", who,
        i, type(v)), level)
    end
    arrs[i] = v
    dtype = dtype and promote(dtype, v.dtype) or v.dtype
  end
  return arrs, dtype, (opts or {}).axis
end

local function check_axis(who, axis, n, level)
  axis = axis or 1
  if math_type(axis) ~= "integer" or axis == 0 or axis > n or axis < -n then
    error(sformat("dlua.array.%s: axis %s is out of range (axes 1..%d)",
      who, tostring(axis), n), level + 1)
  end
  return axis < 0 and axis + n + 1 or axis
end

-- ref of block idx of v, converted to dtype.
local function ref_as(v, idx, dtype)
  local r = block_ref(v, idx)
  if v.dtype == dtype then return r end
  return {"op", "astype", 2, r, {"k", dtype}}
end

--- x:astype(dtype): the array converted blockwise.
function methods.astype(a, dtype)
  if not is_array(a) then error("dlua.array: use x:astype(dtype)", 2) end
  if not RANK[dtype] then
    error(sformat("dlua.array.astype: unknown dtype '%s' (float64, float32, "
      .. "int64 or bool)", tostring(dtype)), 2)
  end
  if dtype == a.dtype then return a end
  return new_array{name = fresh("astype"), shape = a.shape,
    chunks = a.chunks, dtype = dtype, kind = "ew", layers = merge_layers(a),
    mkref = function(_, idx) return ref_as(a, idx, dtype) end}
end

--- da.concatenate(list [, {axis = 1}]): arrays joined along an axis
-- (other axes equal; their chunks follow the first array's).
function M.concatenate(list, opts)
  local arrs, dtype, axis = join_args("concatenate", list, opts, 2)
  local first = arrs[1]
  local n = #first.shape
  axis = check_axis("concatenate", axis, n, 2)
  local shape, cax, which = {table.unpack(first.shape)}, {}, {}
  shape[axis] = 0
  for i, v in ipairs(arrs) do
    local ok = #v.shape == n
    for d = 1, n do
      if ok and d ~= axis and v.shape[d] ~= first.shape[d] then ok = false end
    end
    if not ok then
      error(sformat("dlua.array.concatenate: shapes %s and %s differ off "
        .. "axis %d", fmt_tuple(first.shape), fmt_tuple(v.shape), axis), 2)
    end
    local want = {}
    for d = 1, n do want[d] = d == axis and v.chunks[d] or first.chunks[d] end
    v = rechunk(v, want, 2)
    arrs[i] = v
    shape[axis] = shape[axis] + v.shape[axis]
    for j, c in ipairs(v.chunks[axis]) do
      cax[#cax + 1] = c
      which[#cax] = {i, j}
    end
  end
  local chunks = {}
  for d = 1, n do chunks[d] = d == axis and cax or first.chunks[d] end
  return new_array{name = fresh("concatenate"), shape = shape,
    chunks = chunks, dtype = dtype, kind = "cat",
    layers = merge_layers(table.unpack(arrs)),
    mkref = function(_, idx)
      local w = which[idx[axis]]
      local sub = {table.unpack(idx)}
      sub[axis] = w[2]
      return ref_as(arrs[w[1]], sub, dtype)
    end}
end

--- da.stack(list [, {axis = 1}]): arrays of one shape stacked along a new
-- axis (one block per array on it).
function M.stack(list, opts)
  local arrs, dtype, axis = join_args("stack", list, opts, 2)
  local first = arrs[1]
  local n = #first.shape
  axis = check_axis("stack", axis, n + 1, 2)
  for i, v in ipairs(arrs) do
    if fmt_tuple(v.shape) ~= fmt_tuple(first.shape) then
      error(sformat("dlua.array.stack: shapes %s and %s differ (stack "
        .. "needs equal shapes)", fmt_tuple(first.shape), fmt_tuple(v.shape)),
        2)
    end
    arrs[i] = rechunk(v, first.chunks, 2)
  end
  local shape, chunks, ones = {}, {}, {}
  for i = 1, #arrs do ones[i] = 1 end
  for d = 1, n + 1 do
    if d < axis then shape[d], chunks[d] = first.shape[d], first.chunks[d]
    elseif d == axis then shape[d], chunks[d] = #arrs, ones
    else shape[d], chunks[d] = first.shape[d - 1], first.chunks[d - 1] end
  end
  return new_array{name = fresh("stack"), shape = shape, chunks = chunks,
    dtype = dtype, kind = "stack", layers = merge_layers(table.unpack(arrs)),
    mkref = function(self, idx)
      local sub = {}
      for d = 1, n + 1 do if d ~= axis then sub[#sub + 1] = idx[d] end end
      return {"rs", ref_as(arrs[idx[axis]], sub, dtype),
              block_shape(self, idx)}
    end}
end

-- -------------------------------------------------- map_blocks, blockwise

-- Task: fn applied to evaluated arguments; the result must be an ndarray
-- of the block's shape (chunks = says otherwise).
local function t_call(fn, who, bid, expect, nargs, ...)
  local args, memo = {...}, {}
  for i = 1, nargs do args[i] = ev(args[i], memo) end
  local v = fn(table.unpack(args, 1, nargs))
  local ndm = require "dlua.ndarray"
  if getmetatable(v) ~= getmetatable(ndm.zeros{0}) then
    error(sformat("dlua.array.%s: block (%s): the function returned a %s, "
      .. "not an ndarray", who, bid, type(v)), 0)
  end
  local s = v.shape
  local ok = #s == #expect
  for d = 1, #expect do ok = ok and s[d] == expect[d] end
  if not ok then
    error(sformat("dlua.array.%s: block (%s): the function returned shape "
      .. "(%s), expected (%s); give chunks = for blocks of another shape",
      who, bid, tconcat(s, ", "), tconcat(expect, ", ")), 0)
  end
  return v
end

-- Split (..., opts) where opts is a trailing plain table.
local function trailing_opts(who, allowed, level, ...)
  local n = select("#", ...)
  local args = {...}
  local last = args[n]
  local opts = {}
  if n > 0 and type(last) == "table" and getmetatable(last) == nil then
    opts, n = last, n - 1
    for k in pairs(opts) do
      if not allowed[k] then
        error(sformat("dlua.array.%s: unknown option '%s'", who,
          tostring(k)), level + 1)
      end
    end
  end
  return args, n, opts
end

-- Output chunks: opts.chunks (a size per axis, or lists), else dflt.
local function out_chunks_opt(who, c, dflt, level)
  if c == nil then return dflt end
  if type(c) ~= "table" or #c ~= #dflt then
    error(sformat("dlua.array.%s: chunks must list one entry per axis "
      .. "(%d)", who, #dflt), level + 1)
  end
  local out = {}
  for d = 1, #dflt do
    local e = c[d]
    if math_type(e) == "integer" and e >= 0 then
      out[d] = {}
      for j = 1, #dflt[d] do out[d][j] = e end
    elseif type(e) == "table" and #e == #dflt[d] then
      out[d] = {}
      for j = 1, #e do
        if math_type(e[j]) ~= "integer" or e[j] < 0 then
          error(sformat("dlua.array.%s: chunks of axis %d must be "
            .. "non-negative integers", who, d), level + 1)
        end
        out[d][j] = e[j]
      end
    else
      error(sformat("dlua.array.%s: chunks of axis %d must be a size or a "
        .. "list of %d sizes (one per block)", who, d, #dflt[d]), level + 1)
    end
  end
  return out
end

local function check_dtype(who, dt, level)
  if dt ~= nil and not RANK[dt] then
    error(sformat("dlua.array.%s: unknown dtype '%s'", who, tostring(dt)),
      level + 1)
  end
  return dt
end

-- An array of tasks: block idx is t_call(fn, args_of(idx)...).
local function call_array(who, fn, chunks, dtype, srcs, args_of)
  local name = fresh(who)
  local layer = {}
  local shape = {}
  for d = 1, #chunks do
    local s = 0
    for _, c in ipairs(chunks[d]) do s = s + c end
    shape[d] = s
  end
  local arr = new_array{name = name, shape = shape, chunks = chunks,
    dtype = dtype, kind = "keys", layers = merge_layers(table.unpack(srcs)),
    mkref = function(_, idx) return key_of(name, idx) end}
  for _, idx in ipairs(each_block(chunks)) do
    local args = args_of(idx)
    local deps, set = {}, {}
    for i = 1, #args do ref_deps(args[i], deps, set) end
    layer[key_of(name, idx)] = {fn = t_call, deps = deps, args = {n = 5 +
      #args, fn, who, tconcat(idx, ","), block_shape(arr, idx), #args,
      table.unpack(args)}}
  end
  arr.layers[name] = layer
  return arr
end

local function wrap_const(v)
  if getmetatable(v) == NDMT then return v end
  return {"k", v}
end

local MAP_OPTS = {dtype = true, chunks = true, drop_axis = true,
                  new_axis = true, block_info = true}

-- Axes option v (an axis or a list; 1-based, negative from the end) of an
-- array of ndim axes, as a sorted list without repeats.
local function axes_opt(who, name, v, ndim, level)
  if v == nil then return {} end
  local list = type(v) == "table" and v or {v}
  local out, seen = {}, {}
  for _, ax in ipairs(list) do
    if math_type(ax) ~= "integer" or ax == 0 or ax > ndim or ax < -ndim then
      error(sformat("dlua.array.%s: %s: axis %s is out of range for %d "
        .. "axes", who, name, tostring(ax), ndim), level + 1)
    end
    if ax < 0 then ax = ndim + 1 + ax end
    if seen[ax] then
      error(sformat("dlua.array.%s: %s: axis %d given twice", who, name,
        ax), level + 1)
    end
    seen[ax] = true
    out[#out + 1] = ax
  end
  table.sort(out)
  return out
end

-- Where block idx of an array lies: {{first, last}, ...} per axis,
-- 1-based and inclusive (empty blocks: last = first - 1).
local function block_location(a, idx)
  local loc = {}
  for d = 1, #idx do
    local first = a.offsets[d][idx[d]] -- 1-based already
    loc[d] = {first, first + a.chunks[d][idx[d]] - 1}
  end
  return loc
end

--- da.map_blocks(fn, x, ... [, {dtype =, chunks =, drop_axis =, new_axis
-- =, block_info =}]): fn(block of x, ...) per block (arrays among the
-- arguments give their matching blocks, other values pass as they are).
-- drop_axis: axes of the arrays that fn removes (each block gets the
-- whole extent of those axes, joined); new_axis: axes of the output that
-- fn adds (one block each, of size 1 unless chunks says).  block_info =
-- true passes a last argument describing the block (Dask's block_info).
-- x:map_blocks(fn, ...) is the same.
function M.map_blocks(fn, ...)
  if type(fn) ~= "function" then
    error("dlua.array.map_blocks: expects a function first, got "
      .. type(fn), 2)
  end
  local args, n, opts = trailing_opts("map_blocks", MAP_OPTS, 2, ...)
  local first
  for i = 1, n do
    local v = args[i]
    if is_array(v) then
      if not first then first = v
      elseif not same_chunks(v.chunks, first.chunks) or
             #v.chunks ~= #first.chunks then
        error(sformat("dlua.array.map_blocks: argument %d has chunks %s, "
          .. "the first array %s; rechunk it first", i + 1,
          fmt_tuple(v.numblocks), fmt_tuple(first.numblocks)), 2)
      end
    end
  end
  if not first then
    error("dlua.array.map_blocks: needs at least one array argument", 2)
  end
  local ndim = #first.shape
  local drop = axes_opt("map_blocks", "drop_axis", opts.drop_axis, ndim, 2)
  local isdrop = {}
  for _, d in ipairs(drop) do isdrop[d] = true end
  local kept = {} -- input axes that stay, in order
  for d = 1, ndim do if not isdrop[d] then kept[#kept + 1] = d end end
  local newax = axes_opt("map_blocks", "new_axis", opts.new_axis,
    #kept + (type(opts.new_axis) == "table" and #opts.new_axis or
             opts.new_axis and 1 or 0), 2)
  local isnew = {}
  for _, d in ipairs(newax) do isnew[d] = true end
  -- output axis -> input axis (nil for a new one)
  local from, dflt, k = {}, {}, 0
  for d = 1, #kept + #newax do
    if isnew[d] then dflt[d] = {1}
    else
      k = k + 1
      from[d] = kept[k]
      dflt[d] = first.chunks[kept[k]]
    end
  end
  local chunks = out_chunks_opt("map_blocks", opts.chunks, dflt, 2)
  local dtype = check_dtype("map_blocks", opts.dtype, 2) or first.dtype
  local srcs = {}
  for i = 1, n do if is_array(args[i]) then srcs[#srcs + 1] = args[i] end end
  local arr
  local function in_ref(v, idx)
    local sub = {}
    for d = 1, #idx do if from[d] then sub[from[d]] = idx[d] end end
    local joined = {}
    for _, d in ipairs(drop) do
      if #v.chunks[d] > 1 then joined[#joined + 1] = d else sub[d] = 1 end
    end
    local function build(level, s)
      if level > #joined then return block_ref(v, s) end
      local d, list = joined[level], {"list"}
      for b = 1, #v.chunks[d] do
        local s2 = {table.unpack(s, 1, ndim)}
        s2[d] = b
        list[#list + 1] = build(level + 1, s2)
      end
      return list
    end
    for _, d in ipairs(joined) do sub[d] = 1 end
    local r = build(1, sub)
    if #joined > 0 then r = {"cat", joined, r} end
    return r
  end
  arr = call_array("map_blocks", fn, chunks, dtype, srcs, function(idx)
    local out = {}
    for i = 1, n do
      local v = args[i]
      out[i] = is_array(v) and in_ref(v, idx) or wrap_const(v)
    end
    return out
  end)
  if opts.block_info then
    -- Dask's block_info: per array argument (by its position among the
    -- arrays) and for the output
    for _, task in pairs(arr.layers[arr.name]) do
      local idx = {}
      for x in task.args[3]:gmatch("%d+") do idx[#idx + 1] = tonumber(x) end
      local info, ai = {}, 0
      for i = 1, n do
        local v = args[i]
        if is_array(v) then
          ai = ai + 1
          local sub = {}
          for d = 1, #idx do if from[d] then sub[from[d]] = idx[d] end end
          local cl = {}
          for d = 1, ndim do cl[d] = sub[d] or 1 end
          local loc = block_location(v, cl)
          for _, d in ipairs(drop) do loc[d] = {1, v.shape[d]} end
          info[ai] = {shape = v.shape, num_chunks = v.numblocks,
            chunk_location = cl, array_location = loc}
        end
      end
      info.output = {shape = arr.shape, num_chunks = arr.numblocks,
        chunk_location = idx, array_location = block_location(arr, idx),
        chunk_shape = block_shape(arr, idx), dtype = dtype}
      local a2 = task.args
      a2[5] = a2[5] + 1 -- one argument more: the info, a constant
      a2.n = a2.n + 1
      a2[a2.n] = {"k", info}
    end
  end
  return arr
end
function methods.map_blocks(a, fn, ...) return M.map_blocks(fn, a, ...) end

local BW_OPTS = {dtype = true, chunks = true, concatenate = true}

--- da.blockwise(fn, out_ind, x, "ij", y, "jk", ... [, {dtype =, chunks =,
-- concatenate =}]): Dask's blockwise with index strings.  An index in
-- the inputs but not in out_ind is contracted: fn gets the list of those
-- blocks (nested, one level per contracted index), or with concatenate =
-- true the blocks joined along those axes.  A value with ind false is
-- passed as it is.
function M.blockwise(fn, out_ind, ...)
  if type(fn) ~= "function" or type(out_ind) ~= "string" then
    error("dlua.array.blockwise: expects (fn, out_ind, array, ind, ...)", 2)
  end
  local args, n, opts = trailing_opts("blockwise", BW_OPTS, 2, ...)
  if n % 2 ~= 0 then
    error("dlua.array.blockwise: arguments come in pairs (array, index "
      .. "string); give false as the index of a plain value", 2)
  end
  local lchunks, first, srcs = {}, nil, {}
  for i = 1, n, 2 do
    local v, ind = args[i], args[i + 1]
    if getmetatable(v) == NDMT and ind then
      v = M.from_ndarray(v)
      args[i] = v
    end
    if ind then
      if not is_array(v) or type(ind) ~= "string" or #ind ~= #v.shape then
        error(sformat("dlua.array.blockwise: argument %d: an array needs an "
          .. "index string of one letter per axis", (i + 1) // 2), 2)
      end
      first = first or v
      srcs[#srcs + 1] = v
      for d = 1, #ind do
        local l = ind:sub(d, d)
        local c = lchunks[l]
        if c and tconcat(c, ",") ~= tconcat(v.chunks[d], ",") then
          error(sformat("dlua.array.blockwise: index '%s' has chunks {%s} "
            .. "and {%s}; rechunk first", l, tconcat(c, ", "),
            tconcat(v.chunks[d], ", ")), 2)
        end
        lchunks[l] = v.chunks[d]
      end
    end
  end
  if not first then
    error("dlua.array.blockwise: needs at least one array argument", 2)
  end
  local chunks = {}
  for d = 1, #out_ind do
    local l = out_ind:sub(d, d)
    if not lchunks[l] then
      error(sformat("dlua.array.blockwise: output index '%s' is in no "
        .. "input", l), 2)
    end
    chunks[d] = lchunks[l]
  end
  chunks = out_chunks_opt("blockwise", opts.chunks, chunks, 2)
  local dtype = check_dtype("blockwise", opts.dtype, 2) or first.dtype
  local cat = opts.concatenate
  return call_array("blockwise", fn, chunks, dtype, srcs, function(idx)
    local at = {}
    for d = 1, #out_ind do at[out_ind:sub(d, d)] = idx[d] end
    local out = {}
    for i = 1, n, 2 do
      local v, ind = args[i], args[i + 1]
      if not ind then
        out[#out + 1] = wrap_const(v)
      else
        local free, axes = {}, {}
        for d = 1, #ind do
          local l = ind:sub(d, d)
          if at[l] == nil then free[#free + 1] = d; axes[#axes + 1] = d end
        end
        -- nested lists over the contracted axes
        local function build(level, sub)
          if level > #free then return block_ref(v, sub) end
          local d = free[level]
          local list = {"list"}
          for b = 1, #v.chunks[d] do
            local s = {table.unpack(sub)}
            s[d] = b
            list[#list + 1] = build(level + 1, s)
          end
          return list
        end
        local sub = {}
        for d = 1, #ind do sub[d] = at[ind:sub(d, d)] or 1 end
        local r = build(1, sub)
        if cat and #free > 0 then r = {"cat", axes, r} end
        out[#out + 1] = r
      end
    end
    return out
  end)
end

-- ------------------------------------------------------------- persist

--- x:persist([opts]) -> the same array with its blocks computed and held
-- on the workers (in this process with scheduler = "sync"); its graph is
-- then only their keys.
function methods.persist(a, opts)
  if not is_array(a) then error("dlua.array: use x:persist()", 2) end
  local g, m = graph_of(a)
  local blocks = a.scalar and {{}} or each_block(m.chunks)
  local keys = {}
  for i, idx in ipairs(blocks) do keys[i] = block_ref(m, idx) end
  local vals = #keys > 0 and
    require("dlua.delayed").persist_graph(g, keys, opts) or {}
  local layer, byidx = {}, {}
  for i, idx in ipairs(blocks) do
    layer[keys[i]] = vals[i]
    byidx[tconcat(idx, ",")] = keys[i]
  end
  local name = fresh("persist")
  return new_array{name = name, shape = a.shape, chunks = m.chunks,
    dtype = a.dtype, kind = "keys", layers = {[name] = layer},
    scalar = a.scalar,
    mkref = function(_, idx) return byidx[tconcat(idx, ",")] end}
end
M.persist = function(a, opts) return methods.persist(a, opts) end

-- -------------------------------------------------------------- linalg

M.linalg = {}

local function t_qr1(b) -- a block's QR, as {q, r}
  local q, r = require("dlua.ndarray").linalg.qr(ev(b, {}))
  return {q, r}
end

local function t_qr2(parts) -- QR of the stacked r factors: {Q2, R}
  local ndm = require "dlua.ndarray"
  local rs = {}
  for i = 1, #parts do rs[i] = parts[i][2] end
  local q, r = ndm.linalg.qr(ndm.concatenate(rs, {axis = 1}))
  return {q, r}
end

local function t_qr_q(part, top, i, n) -- block i of Q: q_i @ Q2[rows of i]
  return part[1]:matmul(top[1]:slice({(i - 1) * n + 1, i * n}))
end

local function t_qr_r(top) return top[2] end

--- da.linalg.tsqr(x) -> q, r: the reduced QR of a tall-skinny 2-d array
-- chunked along its rows only (one block of columns; every block at least
-- as tall as the array is wide): a QR per block, then one of the stacked
-- r factors (Benson, Gleich and Demmel's direct TSQR).
function M.linalg.tsqr(a)
  if not is_array(a) or #a.shape ~= 2 then
    error("dlua.array.linalg.tsqr: needs a 2-d array", 2)
  end
  local n = a.shape[2]
  if #a.chunks[2] ~= 1 then
    error(sformat("dlua.array.linalg.tsqr: the array must have one block "
      .. "of columns (chunks {%s}): rechunk{c, -1} first",
      tconcat(a.chunks[2], ", ")), 2)
  end
  for i, c in ipairs(a.chunks[1]) do
    if c < n then
      error(sformat("dlua.array.linalg.tsqr: block %d has %d rows, fewer "
        .. "than the %d columns (tall-skinny blocks needed)", i, c, n), 2)
    end
  end
  local name = fresh("tsqr")
  local layer, parts = {}, {}
  for i = 1, #a.chunks[1] do
    local r = block_ref(a, {i, 1})
    local deps = {}
    ref_deps(r, deps, {})
    parts[i] = name .. "-qr-" .. i
    layer[parts[i]] = {fn = t_qr1, args = {n = 1, r}, deps = deps}
  end
  local top = name .. "-top"
  layer[top] = {fn = t_qr2, args = {n = 1, parts}, deps = parts}
  local qname, rname = name .. "-q", name .. "-r"
  for i = 1, #a.chunks[1] do
    layer[key_of(qname, {i, 1})] = {fn = t_qr_q, deps = {parts[i], top},
      args = {n = 4, parts[i], top, i, n}}
  end
  layer[key_of(rname, {1, 1})] = {fn = t_qr_r, args = {n = 1, top},
                                  deps = {top}}
  local layers = merge_layers(a)
  layers[name] = layer
  local q = new_array{name = qname, shape = a.shape, chunks = a.chunks,
    dtype = "float64", kind = "keys", layers = layers,
    mkref = function(_, idx) return key_of(qname, idx) end}
  local r = new_array{name = rname, shape = {n, n}, chunks = {{n}, {n}},
    dtype = "float64", kind = "keys", layers = layers,
    mkref = function(_, idx) return key_of(rname, idx) end}
  return q, r
end

-- Tasks of lstsq (tsqr's own keys arrive as values; refs through ev).
local function t_ls_qtb(q, b) -- q_i^T b_i
  return q.T:matmul(ev(b, {}))
end
local function t_ls_solve(r, parts, rcond) -- {x, rank, s} from r, Q^T b
  local ndm = require "dlua.ndarray"
  local qtb = parts[1]
  for i = 2, #parts do qtb = qtb + parts[i] end
  -- r = u diag(s) vt; x = vt^T diag(1/s) u^T Q^T b over s > cutoff: the
  -- minimum-norm solution dgelsd gives, rank deficient or not
  local u, sv, vt = ndm.linalg.svd(r)
  local n = sv.shape[1]
  local cut = n > 0 and rcond * sv:get(1) or 0
  local inv, rank = ndm.zeros{n}, 0
  for i = 1, n do
    if sv:get(i) > cut then inv:set(i, 1 / sv:get(i)); rank = rank + 1 end
  end
  local y = u.T:matmul(qtb)
  y = #y.shape == 2 and y * inv:reshape(n, 1) or y * inv
  return {vt.T:matmul(y), rank, sv}
end
local function t_ls_pick(sol, i) return sol[i] end
local function t_ls_res(a, b, sol) -- squared residuals of block i
  local ndm = require "dlua.ndarray"
  local d = ev(b, {}) - ev(a, {}):matmul(sol[1])
  local r = (d * d):sum{axis = 1}
  if type(r) == "number" then return ndm.from_table{r} end
  if r.ndim == 0 then return ndm.from_table{r:item()} end
  return r
end
local function t_ls_ressum(parts)
  local r = parts[1]
  for i = 2, #parts do r = r + parts[i] end
  return r
end

--- da.linalg.lstsq(a, b [, {rcond =}]) -> x, residuals, rank, s: least
-- squares for a tall-skinny a chunked along its rows only, through tsqr
-- (as Dask's): x minimises |a x - b| (minimum norm when a is rank
-- deficient), residuals the sum of squares per column of b (always, as
-- Dask gives them), rank (a scalar array) and s the singular values of a.
function M.linalg.lstsq(a, b, o)
  if not is_array(a) or #a.shape ~= 2 then
    error("dlua.array.linalg.lstsq: a must be a 2-d array", 2)
  end
  if o ~= nil and type(o) ~= "table" then
    error("dlua.array.linalg.lstsq: options must be a table", 2)
  end
  local m, n = a.shape[1], a.shape[2]
  local rcond = o and o.rcond
  if rcond ~= nil and type(rcond) ~= "number" then
    error(sformat("dlua.array.linalg.lstsq: option 'rcond' must be a "
      .. "number, got %s", type(rcond)), 2)
  end
  rcond = rcond or 2.220446049250313e-16 * math.max(m, n)
  if #a.chunks[2] ~= 1 then
    error(sformat("dlua.array.linalg.lstsq: a must have one block of "
      .. "columns (chunks {%s}): rechunk{c, -1} first",
      tconcat(a.chunks[2], ", ")), 2)
  end
  for i, c in ipairs(a.chunks[1]) do
    if c < n then
      error(sformat("dlua.array.linalg.lstsq: block %d of a has %d rows, "
        .. "fewer than its %d columns (tall-skinny blocks needed)", i, c, n),
        2)
    end
  end
  if getmetatable(b) == NDMT then b = M.from_ndarray(b) end
  if not is_array(b) or #b.shape < 1 or #b.shape > 2 or b.shape[1] ~= m then
    error(sformat("dlua.array.linalg.lstsq: b must be a 1-d or 2-d array "
      .. "of %d rows", m), 2)
  end
  if tconcat(b.chunks[1], ",") ~= tconcat(a.chunks[1], ",") or
     (#b.shape == 2 and #b.chunks[2] ~= 1) then
    b = rechunk(b, #b.shape == 1 and {a.chunks[1]} or {a.chunks[1], -1}, 2)
  end
  local q, r = M.linalg.tsqr(a)
  local two = #b.shape == 2
  local name = fresh("lstsq")
  local layer, qtb, res = {}, {}, {}
  local rkey = block_ref(r, {1, 1})
  for i = 1, #a.chunks[1] do
    local qk = block_ref(q, {i, 1})
    local br = block_ref(b, two and {i, 1} or {i})
    local deps = {qk}
    ref_deps(br, deps, {[qk] = true})
    qtb[i] = sformat("%s-qtb-%d", name, i)
    layer[qtb[i]] = {fn = t_ls_qtb, args = {n = 2, qk, br}, deps = deps}
  end
  local sol = name .. "-sol"
  local sdeps = {rkey}
  for i = 1, #qtb do sdeps[#sdeps + 1] = qtb[i] end
  layer[sol] = {fn = t_ls_solve, args = {n = 3, rkey, qtb, rcond},
                deps = sdeps}
  for i = 1, #a.chunks[1] do
    local ar = block_ref(a, {i, 1})
    local br = block_ref(b, two and {i, 1} or {i})
    local deps, set = {sol}, {[sol] = true}
    ref_deps(ar, deps, set)
    ref_deps(br, deps, set)
    res[i] = sformat("%s-res-%d", name, i)
    layer[res[i]] = {fn = t_ls_res, args = {n = 3, ar, br, sol}, deps = deps}
  end
  local xk = key_of(name .. "-x", two and {1, 1} or {1})
  local rk = name .. "-rank"
  local sk = key_of(name .. "-s", {1})
  local resk = key_of(name .. "-residuals", {1})
  layer[xk] = {fn = t_ls_pick, args = {n = 2, sol, 1}, deps = {sol}}
  layer[rk] = {fn = t_ls_pick, args = {n = 2, sol, 2}, deps = {sol}}
  layer[sk] = {fn = t_ls_pick, args = {n = 2, sol, 3}, deps = {sol}}
  layer[resk] = {fn = t_ls_ressum, args = {n = 1, res}, deps = res}
  local layers = merge_layers(q, r, a, b)
  layers[name] = layer
  local function one(key, shape, chunks, dtype, scalar)
    return new_array{name = name, shape = shape, chunks = chunks,
      dtype = dtype, kind = "keys", layers = layers, scalar = scalar,
      mkref = function() return key end}
  end
  local k = two and b.shape[2] or 1
  return one(xk, two and {n, k} or {n}, two and {{n}, {k}} or {{n}},
      "float64"),
    one(resk, {k}, {{k}}, "float64"),
    one(rk, {}, {}, "int64", true),
    one(sk, {n}, {{n}}, "float64")
end

-- Tasks of the blocked LU solve with partial pivoting (ev: block refs of
-- the inputs; keys of the solve's own tasks arrive as values).  A column
-- is the rows of one block column that are not yet eliminated: at step 1
-- the list of its blocks (skip 0), later the previous step's column of
-- which the first skip rows are done.
local function lu_column(col, skip)
  if skip == 0 then
    local parts = {}
    for i = 1, #col do parts[i] = ev(col[i], {}) end
    if #parts == 1 then return parts[1] end
    return require("dlua.ndarray").concatenate(parts, {axis = 1})
  end
  return col:slice({skip + 1, col.shape[1]})
end
local function t_lu_panel(col, skip, k) -- {lu, piv} of block column k
  local ok, lu, piv = pcall(require("dlua.ndarray").linalg.lu_factor,
    lu_column(col, skip))
  if not ok then
    if tostring(lu):find("singular", 1, true) then
      error(sformat("dlua.array.linalg.solve: the matrix is singular (no "
        .. "nonzero pivot left in block column %d)", k), 0)
    end
    error(lu, 0)
  end
  return {lu, piv}
end
local function t_lu_apply(panel, col, skip) -- the column after a step
  return require("dlua.ndarray").linalg._lu_apply(panel[1], panel[2],
    lu_column(col, skip))
end
local function t_lu_back(panel, ycol, ucols, xs, n) -- x_k
  local ndm = require "dlua.ndarray"
  local r = ycol:slice({1, n})
  for i = 1, #xs do r = r - ucols[i]:slice({1, n}):matmul(xs[i]) end
  return ndm.linalg.solve_triangular(panel[1]:slice({1, n}), r)
end

--- da.linalg.solve(a, b) -> x with a x = b, for a square 2-d array a
-- chunked in square diagonal blocks and b (1-d, or 2-d with one block of
-- columns) chunked as a's rows: blocked LU with partial pivoting (for each
-- block column, LAPACK's dgetrf on all its rows not yet eliminated, the
-- panel; its row interchanges and elimination applied to the columns to
-- its right and to b, one task per column), then block back
-- substitution.  x has b's chunks.
function M.linalg.solve(a, b)
  if not is_array(a) or #a.shape ~= 2 or a.shape[1] ~= a.shape[2] then
    error("dlua.array.linalg.solve: a must be a square 2-d array", 2)
  end
  if tconcat(a.chunks[1], ",") ~= tconcat(a.chunks[2], ",") then
    error(sformat("dlua.array.linalg.solve: a's row and column chunks "
      .. "differ ({%s} and {%s}): diagonal blocks must be square; rechunk "
      .. "first", tconcat(a.chunks[1], ", "), tconcat(a.chunks[2], ", ")), 2)
  end
  if getmetatable(b) == NDMT then b = M.from_ndarray(b) end
  if not is_array(b) or #b.shape < 1 or #b.shape > 2 or
     b.shape[1] ~= a.shape[1] then
    error(sformat("dlua.array.linalg.solve: b must be a 1-d or 2-d array "
      .. "of %d rows", a.shape[1]), 2)
  end
  if tconcat(b.chunks[1], ",") ~= tconcat(a.chunks[1], ",") or
     (#b.shape == 2 and #b.chunks[2] ~= 1) then
    b = rechunk(b, #b.shape == 1 and {a.chunks[1]} or {a.chunks[1], -1}, 2)
  end
  local ma, mb = materialize(a), materialize(b)
  local p, two = #a.chunks[1], #b.shape == 2
  local sizes = a.chunks[2]
  local name = fresh("solve")
  local layer = {}
  -- a task of refs (and numbers); args lists[i] is a list of refs
  local function add(key, fn, args, lists)
    local deps, set = {}, {}
    for i = 1, args.n do
      if lists and lists[i] then
        for _, r in ipairs(args[i]) do ref_deps(r, deps, set) end
      else
        ref_deps(args[i], deps, set)
      end
    end
    layer[key] = {fn = fn, args = args, deps = deps}
    return key
  end
  -- C[j]: column j (j = p + 1: b) as the next step takes it
  local C = {}
  for j = 1, p + 1 do
    local list = {}
    for i = 1, p do
      list[i] = j <= p and block_ref(ma, {i, j}) or
        block_ref(mb, two and {i, 1} or {i})
    end
    C[j] = list
  end
  local skip, P, U = 0, {}, {}
  for k = 1, p do
    local lists = skip == 0 and {[1] = true} or nil
    P[k] = add(sformat("%s-P-%d", name, k), t_lu_panel,
      {n = 3, C[k], skip, k}, lists)
    U[k] = {}
    for j = k + 1, p + 1 do
      U[k][j] = add(sformat("%s-C-%d-%d", name, k, j), t_lu_apply,
        {n = 3, P[k], C[j], skip}, skip == 0 and {[2] = true} or nil)
      C[j] = U[k][j]
    end
    skip = sizes[k]
  end
  local X = {}
  for k = p, 1, -1 do
    local ucols, xs = {}, {}
    for j = k + 1, p do ucols[#ucols + 1] = U[k][j]; xs[#xs + 1] = X[j] end
    X[k] = add(key_of(name, two and {k, 1} or {k}), t_lu_back,
      {n = 5, P[k], U[k][p + 1], ucols, xs, sizes[k]},
      {[3] = true, [4] = true})
  end
  local layers = merge_layers(ma, mb)
  layers[name] = layer
  return new_array{name = name, shape = b.shape, chunks = b.chunks,
    dtype = "float64", kind = "keys", layers = layers,
    mkref = function(_, idx) return key_of(name, idx) end}
end

-- ---------------------------------------------------------------- zarr

local function read_all(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

-- Task: block of shape bs from the chunk file name of the store at path
-- (a chunk file holds a whole chunk: edge blocks are cut from it).
local function t_zarr_read(path, name, meta, bs, dtype)
  local ndm = require "dlua.ndarray"
  for d = 1, #bs do
    if bs[d] == 0 then return ndm.zeros(bs, dtype) end
  end
  local file = path .. "/" .. name
  local s = read_all(file)
  if not s then
    local m = ndm._zarr_meta(meta)
    if m.fill_value == nil then
      error(sformat("dlua.array.from_zarr: chunk file %s is missing (and "
        .. "the store's fill_value is null)", file), 0)
    end
    return ndm.full(bs, m.fill_value, dtype)
  end
  local ok, c = pcall(ndm._zarr_decode, s, meta)
  if not ok then
    error(sformat("dlua.array.from_zarr: chunk file %s: %s", file,
      (tostring(c):gsub("^.-dlua%.ndarray: zarr: ", ""))), 0)
  end
  local spec, cut = {}, false
  for d = 1, #bs do
    spec[d] = {1, bs[d]}
    if bs[d] ~= c.shape[d] then cut = true end
  end
  if cut then c = c:slice(table.unpack(spec)):copy() end
  return c
end

-- Task: write block b as chunk file name (via a temporary name, so a
-- reader never sees half a chunk); returns the bytes written.
local function t_zarr_write(b, path, name, meta)
  local ndm = require "dlua.ndarray"
  b = ev(b, {})
  local bytes = ndm._zarr_encode(b, meta)
  local file = path .. "/" .. name
  local f = assert(io.open(file .. ".part", "wb"))
  assert(f:write(bytes))
  assert(f:close())
  assert(os.rename(file .. ".part", file))
  return #bytes
end

local function chunk_name(idx)
  if #idx == 0 then return "0" end
  local t = {}
  for d = 1, #idx do t[d] = idx[d] - 1 end
  return tconcat(t, ".")
end

--- da.from_zarr(path [, {chunks =}]): the array of a Zarr v2 directory
-- store (each block read by the task that needs it).
function M.from_zarr(path, opts)
  if type(path) ~= "string" then
    error("dlua.array.from_zarr: expects the store's directory", 2)
  end
  opts = creation_opts(opts, 2)
  local meta, err = read_all(path .. "/.zarray")
  if not meta then error("dlua.array.from_zarr: " .. err, 2) end
  local m, merr = nd._zarr_meta(meta)
  if not m then
    error(sformat("dlua.array.from_zarr: %s/.zarray: %s", path, merr), 2)
  end
  if m.compressor == "blosc" and nd._zarr_blosc() then
    error(sformat("dlua.array.from_zarr: %s/.zarray: Blosc: %s", path,
      nd._zarr_blosc()), 2)
  end
  local attrs = {}
  local at = read_all(path .. "/.zattrs")
  if at then
    local t, aerr = nd._zarr_attrs(at)
    if not t then
      error(sformat("dlua.array.from_zarr: %s/.zattrs: %s", path, aerr), 2)
    end
    attrs = t
  end
  local chunks = norm_chunks(m.shape, m.chunks, 2)
  local dtype = m.dtype
  local arr = gen_array("zarr", m.shape, chunks, dtype,
    function(idx, bs)
      return {"gen", t_zarr_read, path, chunk_name(idx), meta, bs, dtype,
              n = 7}
    end)
  if opts.chunks then arr = rechunk(arr, opts.chunks, 2) end
  arr.attrs = attrs
  return arr
end

local ZARR_OPTS = {compressor = true, level = true, fill_value = true,
                   cname = true, shuffle = true, attrs = true}
local BLOSC_CNAMES = {blosclz = true, lz4 = true, lz4hc = true, zlib = true,
                      zstd = true, snappy = true}

--- x:to_zarr(path [, {compressor = "zlib" | "blosc" | false, level =,
-- cname = "lz4", shuffle = 1, fill_value = 0, attrs =, client =,
-- scheduler =}]) / da.to_zarr(x, path, ...): write the array as a Zarr v2
-- directory store, each block by its own task; returns the bytes of chunk
-- files written.
function methods.to_zarr(a, path, opts)
  if not is_array(a) or type(path) ~= "string" then
    error("dlua.array.to_zarr: expects (array, directory [, options])", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("dlua.array.to_zarr: options must be a table", 2)
  end
  local zo, co = {}, {}
  for k, v in pairs(opts or {}) do
    if ZARR_OPTS[k] then zo[k] = v else co[k] = v end
  end
  if zo.compressor ~= nil and zo.compressor ~= false and
     zo.compressor ~= "zlib" and zo.compressor ~= "blosc" then
    error(sformat("dlua.array.to_zarr: unsupported compressor '%s' (\"zlib\", "
      .. "\"blosc\" or false)", tostring(zo.compressor)), 2)
  end
  if zo.cname ~= nil and not BLOSC_CNAMES[zo.cname] then
    error(sformat("dlua.array.to_zarr: unsupported Blosc cname '%s' "
      .. "(blosclz, lz4, lz4hc, zlib, zstd, snappy)", tostring(zo.cname)), 2)
  end
  if zo.shuffle ~= nil and (math_type(zo.shuffle) ~= "integer" or
     zo.shuffle < -1 or zo.shuffle > 2) then
    error("dlua.array.to_zarr: shuffle must be -1 (auto), 0 (none), 1 "
      .. "(bytes) or 2 (bits)", 2)
  end
  if (zo.cname ~= nil or zo.shuffle ~= nil) and zo.compressor ~= "blosc" then
    error("dlua.array.to_zarr: cname and shuffle are options of compressor "
      .. "= \"blosc\"", 2)
  end
  local attrs_json
  if zo.attrs ~= nil then
    if type(zo.attrs) ~= "table" then
      error("dlua.array.to_zarr: attrs must be a table", 2)
    end
    local aerr
    attrs_json, aerr = nd._zarr_attrs_json(zo.attrs)
    if not attrs_json then error("dlua.array.to_zarr: " .. aerr, 2) end
  end
  if zo.level ~= nil and (math_type(zo.level) ~= "integer" or zo.level < 0
     or zo.level > 9) then
    error("dlua.array.to_zarr: level must be an integer 0..9", 2)
  end
  local csize = {}
  for d = 1, #a.shape do
    local c = a.chunks[d]
    for i = 1, #c - 1 do
      if c[i] ~= c[1] or c[#c] > c[1] then
        error(sformat("dlua.array.to_zarr: Zarr needs regular chunks; axis "
          .. "%d has {%s}: rechunk first", d, tconcat(c, ", ")), 2)
      end
    end
    csize[d] = mmax(c[1] or 1, 1)
  end
  local fill = zo.fill_value
  if fill == nil then fill = a.dtype == "bool" and false or 0 end
  local comp = zo.compressor == nil and "zlib" or zo.compressor or nil
  local meta = nd._zarr_meta_json{shape = a.shape, chunks = csize,
    dtype = a.dtype, compressor = comp,
    level = zo.level or (comp == "blosc" and 5 or 1), cname = zo.cname,
    shuffle = zo.shuffle, fill_value = fill}
  if comp == "blosc" and nd._zarr_blosc() then
    error("dlua.array.to_zarr: Blosc: " .. nd._zarr_blosc(), 2)
  end
  local ok, err = require("dlua.bagio").mkdirs(path)
  if not ok then error("dlua.array.to_zarr: " .. tostring(err), 2) end
  local f, ferr = io.open(path .. "/.zarray", "wb")
  if not f then error("dlua.array.to_zarr: " .. ferr, 2) end
  f:write(meta)
  f:close()
  if attrs_json then
    f, ferr = io.open(path .. "/.zattrs", "wb")
    if not f then error("dlua.array.to_zarr: " .. ferr, 2) end
    f:write(attrs_json)
    f:close()
  end
  local name = fresh("to-zarr")
  local layer, keys = {}, {}
  for _, idx in ipairs(each_block(a.chunks)) do
    local r = block_ref(a, idx)
    local deps = {}
    ref_deps(r, deps, {})
    local k = key_of(name, idx)
    layer[k] = {fn = t_zarr_write, deps = deps,
                args = {n = 4, r, path, chunk_name(idx), meta}}
    keys[#keys + 1] = k
  end
  local g = {}
  for _, l in pairs(merge_layers(a)) do for k, t in pairs(l) do g[k] = t end end
  for k, t in pairs(layer) do g[k] = t end
  local total = 0
  if #keys > 0 then
    for _, v in ipairs(require("dlua.delayed").compute_graph(g, keys, co)) do
      total = total + v
    end
  end
  return total
end
M.to_zarr = methods.to_zarr

--- x:graph() -> the plain task graph (as dlua.delayed's d:graph()).
function methods.graph(a)
  return (graph_of(a))
end

--- x:visualize([file]) -> Graphviz text of the task graph.
function methods.visualize(a, file)
  if file ~= nil and type(file) ~= "string" then
    error("dlua.array: visualize: file must be a string, got " .. type(file),
      2)
  end
  local g = graph_of(a)
  local lines = {"digraph dlua_array {", "  rankdir=BT;"}
  for k, t in pairs(g) do
    lines[#lines + 1] = sformat("  %q [shape=%s];", k,
      type(t) == "table" and t.fn and "ellipse" or "box")
    if type(t) == "table" and t.deps then
      for _, d in ipairs(t.deps) do
        lines[#lines + 1] = sformat("  %q -> %q;", d, k)
      end
    end
  end
  lines[#lines + 1] = "}"
  local s = tconcat(lines, "\n") .. "\n"
  if file then
    local f, err = io.open(file, "w")
    if not f then error("dlua.array: visualize: " .. err, 2) end
    f:write(s)
    f:close()
  end
  return s
end

-- ------------------------------------------------------------ printing

local function fmt_bytes(n)
  local units = {"B", "kiB", "MiB", "GiB", "TiB"}
  local u = 1
  while n >= 1024 and u < #units do n = n / 1024; u = u + 1 end
  return u == 1 and sformat("%d B", n) or sformat("%.2f %s", n, units[u])
end

local function ntasks(a)
  local n = 0
  for _, l in pairs(a.layers) do for _ in pairs(l) do n = n + 1 end end
  if a.kind ~= "keys" then -- materialize's tasks: blocks not yet tasks
    for _, idx in ipairs(each_block(a.chunks)) do
      if type(block_ref(a, idx)) ~= "string" then n = n + 1 end
    end
  end
  return n
end

function Array.__tostring(a)
  local size, csize, nblocks = 1, 1, 1
  local cs = {}
  for d = 1, #a.shape do
    size = size * a.shape[d]
    local m = 0
    for _, c in ipairs(a.chunks[d]) do m = mmax(m, c) end
    cs[d] = m
    csize = csize * m
    nblocks = nblocks * #a.chunks[d]
  end
  local nl = 0
  for _ in pairs(a.layers) do nl = nl + 1 end
  local isz = nbytes_of(a.dtype)
  return sformat("dlua.array<%s, shape=%s, dtype=%s, chunksize=%s, "
    .. "chunktype=ndarray>\n  bytes: %s (array), %s (chunk); %d chunks; "
    .. "%d tasks in %d graph layers", a.name:match("^(.-)%-") or a.name,
    fmt_tuple(a.shape), a.dtype, fmt_tuple(cs), fmt_bytes(size * isz),
    fmt_bytes(csize * isz), nblocks, ntasks(a), nl + (a.kind ~= "keys" and 1 or 0))
end

function Array.__index(a, k)
  if type(k) == "table" then -- x[{s1, s2, ...}]
    local n = 0
    for i in pairs(k) do
      if math_type(i) == "integer" and i > n then n = i end
    end
    local r = do_slice(a, k, n, 2)
    return r
  end
  if math_type(k) == "integer" then
    local r = do_slice(a, {k}, 1, 2)
    return r
  end
  if k == "T" then return methods.transpose(a) end
  if k == "ndim" then return #a.shape end
  if k == "size" then
    local n = 1
    for d = 1, #a.shape do n = n * a.shape[d] end
    return n
  end
  if k == "nbytes" then
    local n = nbytes_of(a.dtype)
    for d = 1, #a.shape do n = n * a.shape[d] end
    return n
  end
  if k == "numblocks" then
    local t = {}
    for d = 1, #a.chunks do t[d] = #a.chunks[d] end
    return t
  end
  return methods[k]
end

function Array.__len(a) return a.shape[1] end

M.Array = Array
M.is_array = is_array
M.compute = function(a, opts) return methods.compute(a, opts) end

-- Private helpers the tasks reach by upvalue; exported for tests.
M._ev = ev
M._t_unop = t_unop
M._t_binop = t_binop

return M

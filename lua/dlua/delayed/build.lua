--[[ dlua.delayed.build -- Delayed objects and the node records behind them:
  delayed(), calls, getattr, the lazy operators, and their keys (from
  dlua.keys).  The node record's slots and metatables are shared with the
  other parts of dlua.delayed (compile, run, visualize) through the table
  this module returns. ]]

local keys = require "dlua.keys"

local error, pcall, require = error, pcall, require
local getmetatable, setmetatable, rawequal = getmetatable, setmetatable,
  rawequal
local next, pairs, select = next, pairs, select
local tostring, type, math_type = tostring, type, math.type
local sformat, sgsub = string.format, string.gsub
local tpack, tunpack = table.pack, table.unpack

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error
local _ENV = nil -- luacheck: ignore  (every global is captured above)

-- Private slots of Delayed objects (tables used as keys cannot clash with
-- the string and number keys that users index a Delayed with).
local NODE = {}                 -- d[NODE]: the node record, see below
local NIL = {}                  -- stands for nil among results

--[[ A node record is a small array (a million of them must stay cheap):
     {fn, args, n, deps, deep, spec}          a task
     {[SPEC] = spec, data = true, value = v}  a value
     {[SPEC] = spec, future = f}              a persisted result
   args holds the arguments as given, with refs (Delayed objects, or Ref
   objects for raw graphs: both have a raw `key` field and a [NODE] slot)
   where dependencies go.  deps is false when the dependencies are exactly
   the refs among the top-level args (the usual case); otherwise it is the
   list of unique refs, and deep is true when some are nested in tables.
   spec = {name = key prefix, fname = function name, pure =, nout =}. ]]
local FN, ARGS, NARGS, DEPS, DEEP, SPEC = 1, 2, 3, 4, 5, 6

local Delayed = {__name = "dlua.Delayed"}
local Ref = {__name = "dlua.Ref"}
local methods = {}

local function isref(v)
  local mt = getmetatable(v)
  return mt == Delayed or mt == Ref
end

local function is_delayed(v)
  return getmetatable(v) == Delayed
end

-- Replace refs by marker strings so that hashing never walks into the
-- graph behind a Delayed (which could be a million tasks deep).
-- map_refs(v, f, seen): v with every ref in it replaced by f(ref), plain
-- tables copied (values only; seen keeps sharing and cycles).
local function map_refs(v, f, seen)
  if isref(v) then return f(v) end
  if type(v) ~= "table" or getmetatable(v) ~= nil then return v end
  if seen[v] then return seen[v] end
  local c = {}
  seen[v] = c
  for k, x in next, v do c[k] = map_refs(x, f, seen) end
  return c
end

local function ref_marker(r) return "\0dlua-ref:" .. r.key end
local function hashable(v, seen) return map_refs(v, ref_marker, seen) end

local function pure_key(prefix, fn, args, n)
  local seen, hargs = {}, {n = n}
  for i = 1, n do hargs[i] = hashable(args[i], seen) end
  return keys.pure(prefix, {fn, hargs})
end
----------------------------------------------------------------------------
-- Building Delayed objects
----------------------------------------------------------------------------

local function new_delayed(key, node)
  return setmetatable({key = key, [NODE] = node}, Delayed)
end

-- Collect the refs inside a plain table (values only), uniquely.
local function scan(t, deps, depset, seen)
  if seen[t] then return false end
  seen[t] = true
  local found = false
  for _, v in next, t do
    local mt = getmetatable(v)
    if mt == Delayed or mt == Ref then
      found = true
      local k = v.key
      if not depset[k] then depset[k] = true; deps[#deps + 1] = v end
    elseif mt == nil and type(v) == "table" then
      if scan(v, deps, depset, seen) then found = true end
    end
  end
  return found
end

-- The dependencies of an argument list: (deps, deep) as in a node record.
local function find_deps(args, n)
  local tables = false
  for i = 1, n do
    local a = args[i]
    if type(a) == "table" and getmetatable(a) == nil then
      tables = true
      break
    end
  end
  if not tables then return false, false end
  local deps, depset, seen, deep = {}, {}, {}, false
  for i = 1, n do
    local a = args[i]
    local mt = getmetatable(a)
    if mt == Delayed or mt == Ref then
      local k = a.key
      if not depset[k] then depset[k] = true; deps[#deps + 1] = a end
    elseif mt == nil and type(a) == "table" then
      if scan(a, deps, depset, seen) then deep = true end
    end
  end
  if not deep then return false, false end
  return deps, true
end

-- The list to scan for a task node's dependency refs, and its length: the
-- deps list, or the arguments (where refs may repeat, e.g. d + d).
local function dep_refs(node)
  local deps = node[DEPS]
  if deps then return deps, #deps end
  return node[ARGS], node[NARGS]
end

-- Build a call task; spec = {name=, fname=, pure=, nout=}.
local function make_call(fn, spec, args, n)
  local deps, deep = find_deps(args, n)
  local prefix = spec.name
  local key = spec.pure and pure_key(prefix, fn, args, n) or keys.fresh(prefix)
  local nout = spec.nout
  if not nout then
    return new_delayed(key, {fn, args, n, deps, deep, spec})
  end
  local f = fn
  local call = new_delayed(key, {function (...) return tpack(f(...)) end,
    args, n, deps, deep, spec})
  local outs = {}
  local ospec = {name = prefix, fname = "getitem"}
  for i = 1, nout do
    local okey = spec.pure
      and keys.hashed(prefix, key .. "#" .. i)
      or keys.fresh(prefix)
    outs[i] = new_delayed(okey, {function (t, j) return t[j] end,
      {call, i}, 2, false, false, ospec})
  end
  return tunpack(outs, 1, nout)
end

local OPTION = {pure = true, name = true, nout = true}

-- " (did you mean 'x'?)" for a misspelled option name (from dlua itself,
-- which is loaded first; "" without it).
local function hint(k, known)
  local ok, dl = pcall(require, "dlua")
  if ok and type(dl) == "table" and dl._did_you_mean then
    return dl._did_you_mean(k, known)
  end
  return ""
end

local function check_spec(opts, fn, level)
  local spec = {}
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("dlua.delayed: options must be a table, got " .. type(opts), 3)
    end
    for k in pairs(opts) do
      if not OPTION[k] then
        error(sformat("dlua.delayed: unknown option '%s'%s", tostring(k),
          hint(k, OPTION)), 3)
      end
    end
    spec.pure = opts.pure and true or false
    if opts.name ~= nil then
      if type(opts.name) ~= "string" or opts.name == "" then
        error("dlua.delayed: option 'name' must be a non-empty string", 3)
      end
      spec.name = opts.name
    end
    if opts.nout ~= nil then
      local nout = opts.nout
      if math_type(nout) ~= "integer" or nout < 1 then
        error("dlua.delayed: option 'nout' must be a positive integer", 3)
      end
      spec.nout = nout
    end
  end
  local fname = type(fn) == "function" and keys.name(fn, level + 1)
    or type(fn)
  spec.name = spec.name or fname
  spec.fname = fname
  return spec
end

local function identity(v) return v end

--[[ delayed(fn_or_value [, opts]) -> Delayed.
  A function (or a callable value) becomes a leaf whose calls build tasks;
  any other value becomes a data leaf, or, when it holds Delayeds, a task
  that rebuilds it with their values. ]]
local function delayed(obj, opts)
  if is_delayed(obj) then return obj end
  local spec = check_spec(opts, obj, 2)
  spec.leaf = true
  local node
  if type(obj) == "table" and getmetatable(obj) == nil then
    local deps = {}
    if scan(obj, deps, {}, {}) then
      node = {identity, {obj}, 1, deps, true,
              {name = spec.name, fname = "identity"}}
    end
  end
  node = node or {[SPEC] = spec, data = true, value = obj}
  local key = spec.pure and pure_key(spec.name, identity, {obj}, 1)
    or keys.fresh(spec.name)
  return new_delayed(key, node)
end

-- Lazy operators.  Each op function has no upvalues, so it can travel to a
-- worker as plain bytecode.
local function op_getattr(o, k) return o[k] end
local function op_method(o, k, ...) return o[k](o, ...) end
local function op_call(f, ...) return f(...) end

local getattr_spec = {name = "getattr", fname = "getattr"}
local getitem_spec = {name = "getitem", fname = "getitem"}
local call_spec = {name = "call", fname = "call"}
local method_specs = setmetatable({}, {__mode = "v"})

--[[ getattr(d, k) -> Delayed for d[k]; use it for the reserved names.
  Keys are content hashes of (d.key, k), so d.x built twice is one task. ]]
local function getattr(d, k)
  local tk = type(k)
  local spec = tk == "string" and getattr_spec or getitem_spec
  local key
  if tk == "string" or tk == "number" or tk == "boolean" then
    key = keys.hashed(spec.name, d.key .. "\0" .. tk .. ":" .. tostring(k))
  else
    key = keys.fresh(spec.name)
  end
  local args = {d, k}
  local deps, deep = find_deps(args, 2)
  local node = {op_getattr, args, 2, deps, deep, spec}
  node.attr_of, node.attr = d, k
  return new_delayed(key, node)
end

Delayed.__index = function (d, k)
  local m = methods[k]
  if m then return m end
  return getattr(d, k)
end

Delayed.__newindex = function (d, k)
  error(sformat("dlua.delayed: cannot set field '%s' of %s: Delayed "
    .. "objects are immutable", tostring(k), d.key), 2)
end

Delayed.__tostring = function (d)
  return sformat("Delayed('%s')", d.key)
end

Delayed.__call = function (d, ...)
  local node = d[NODE]
  local n = select("#", ...)
  if node.data and node[SPEC].leaf then
    return make_call(node.value, node[SPEC], {...}, n)
  end
  local attr = node.attr
  if n >= 1 and type(attr) == "string" and rawequal((...), node.attr_of) then
    -- d:method(...) is d.method(d, ...): one task, no function shipped.
    local args = {...}
    args = {args[1], attr, tunpack(args, 2, n)}
    local spec = method_specs[attr]
    if not spec then
      local name = sgsub(attr, "[^%w_.]", "_")
      spec = {name = name, fname = name}
      method_specs[attr] = spec
    end
    return make_call(op_method, spec, args, n + 1)
  end
  return make_call(op_call, call_spec, {d, ...}, n + 1)
end

--[[ Operator tasks are keyed by what they compute, as Dask tokenizes
  them: the operator and its operands (a Delayed by its key, a number,
  string or boolean by value, anything else by its encoded content), so
  e + e built twice is one task.  An operand that dlua.codec cannot
  encode (a userdata, say) gets a fresh key. ]]
local function op_token(v)
  if isref(v) then return "D" .. v.key end
  local t = type(v)
  if t == "number" then
    return (math_type(v) == "integer" and "i" or "f") .. sformat("%.17g", v)
  elseif t == "string" then
    return "s" .. #v .. ":" .. v
  elseif t == "boolean" or t == "nil" then
    return tostring(v)
  end
  local bytes = keys.content(hashable(v, {}))
  return bytes and "e" .. bytes or nil
end

local function op_call_node(fn, spec, args, n)
  local deps, deep = find_deps(args, n)
  local ta = op_token(args[1])
  local tb = n == 2 and op_token(args[2]) or ""
  local key
  if ta and tb then
    key = keys.hashed(spec.name, spec.name .. "\0" .. ta .. "\0" .. tb)
  else
    key = keys.fresh(spec.name)
  end
  return new_delayed(key, {fn, args, n, deps, deep, spec})
end

local function binop(name, fn)
  local spec = {name = name, fname = name}
  return function (a, b) return op_call_node(fn, spec, {a, b}, 2) end
end

local function unop(name, fn)
  local spec = {name = name, fname = name}
  return function (a) return op_call_node(fn, spec, {a}, 1) end
end

Delayed.__add = binop("add", function (a, b) return a + b end)
Delayed.__sub = binop("sub", function (a, b) return a - b end)
Delayed.__mul = binop("mul", function (a, b) return a * b end)
Delayed.__div = binop("div", function (a, b) return a / b end)
Delayed.__idiv = binop("idiv", function (a, b) return a // b end)
Delayed.__mod = binop("mod", function (a, b) return a % b end)
Delayed.__pow = binop("pow", function (a, b) return a ^ b end)
Delayed.__concat = binop("concat", function (a, b) return a .. b end)
Delayed.__band = binop("band", function (a, b) return a & b end)
Delayed.__bor = binop("bor", function (a, b) return a | b end)
Delayed.__bxor = binop("bxor", function (a, b) return a ~ b end)
Delayed.__shl = binop("shl", function (a, b) return a << b end)
Delayed.__shr = binop("shr", function (a, b) return a >> b end)
Delayed.__unm = unop("neg", function (a) return -a end)
Delayed.__bnot = unop("bnot", function (a) return ~a end)
Delayed.__len = unop("len", function (a) return #a end)

return {
  NODE = NODE, NIL = NIL, FN = FN, ARGS = ARGS, NARGS = NARGS, DEPS = DEPS,
  DEEP = DEEP, SPEC = SPEC,
  Delayed = Delayed, Ref = Ref, methods = methods,
  isref = isref, is_delayed = is_delayed, new_delayed = new_delayed,
  scan = scan, dep_refs = dep_refs, identity = identity, hint = hint,
  map_refs = map_refs,
  delayed = delayed, getattr = getattr,
}

--[==[
dlua.delayed -- lazy pipelines compiled into task graphs (Dask's `delayed`).

  local dlua = require "dlua"            -- re-exports delayed, compute, ...
  local delayed = dlua.delayed

  local inc = delayed(function (x) return x + 1 end, {name = "inc"})
  local add = delayed(function (a, b) return a + b end, {name = "add"})
  local z = add(inc(1), inc(2))          -- nothing runs yet; z is a Delayed
  print(z.key)                           --> add-5f0c...
  print(z:compute())                     --> 5
  print(dlua.compute(z, inc(z)))         --> 5  6   (shared parts run once)

Building
  delayed(fn [, opts])   wrap a function: calling the result builds a task.
  delayed(value [, opts]) wrap a value; Delayeds nested in it become inputs.
  opts (a plain table or dlua.opts{...}):
    pure = true   key is a content hash of function and arguments, so equal
                  calls share one task (uses dlua.codec, else a local hash);
    name = "s"    key prefix (default: the function's name when it can be
                  found in the caller's locals, upvalues or globals, else
                  "delayed");
    nout = n      the function returns n values; a call returns n Delayeds.
  Delayeds anywhere in the arguments -- also nested in plain tables (tables
  without a metatable, values only, not keys) -- become dependencies and
  are replaced by their values when the task runs.

  A Delayed proxies what you do to it, lazily:
    d.field  d[i]  d:method(...)  d(...)  -d  #d  d .. x  x .. d
    d + x  d - x  d * x  d / x  d // x  d % x  d ^ x  and & | ~ << >> ~x
  Comparisons (== < <=) cannot be lazy in Lua and are not proxied.

  Reserved names -- these do not proxy, they are the Delayed's own API:
    d.key                  the task key, "prefix-<16 hex digits>"
    d:compute([opts])      run and return the value
    d:persist([opts])      run, keep the result on the cluster
    d:graph([opts])        the plain task table, see below
    d:visualize([file [, opts]])  Graphviz picture of the graph
  To reach a field with one of these names, use getattr(d, "key") from this
  module.  Assigning to a Delayed's fields is an error.

Running
  compute(d1, d2, ... [, opts]) -> v1, v2, ...   (non-Delayeds pass through;
                                                 plain tables are searched
                                                 and copied with Delayeds
                                                 replaced by their values)
  persist(d1, d2, ... [, opts]) -> p1, p2, ...   Delayeds backed by results
                                                 kept on the cluster
  compute_graph(graph, keys [, opts])            run a raw graph (see below);
                                                 keys: one key -> one value,
                                                 a list -> a list of values
  A trailing options table is recognised when it is made by dlua.opts{...}
  or is a plain table whose keys are all option names (or so close to one
  that they are reported as a typo, "did you mean 'optimize'?"):
    scheduler = "sync"     run in this lua_State, in priority order, one task
                           at a time (for debugging: a failing task raises
                           at once with its key, message and traceback);
    scheduler = "cluster"  (the default) submit to client, or to
                           require("dlua").default_client(), or start one
                           with require("dlua").Client() -- as Dask does.
                           A build without the cluster module falls back to
                           "sync".
    client = c             the client to use;
    optimize = false       do not fuse linear chains (cluster path only);
    progress = true        draw a progress bar until the graph is done
                           (cluster path only; see dlua.progress).

Graphs
  d:graph([{optimize = true}]) returns {[key] = entry} where an entry is
    a task    {fn = f, args = {n = N, ...}, deps = {key, ...}, priority = p}
              (arguments that are dependencies appear as their key strings);
    a value   anything else (data leaves, and futures for persisted parts).
  compute_graph accepts the same form, and Dask-style tuples {f, arg, ...}.
  A task's deps may be left out: string arguments equal to a key of the
  graph are then taken as dependencies.  Cycles, missing dependencies and
  unknown keys are errors that name the keys.

Compilation: the graph is flattened iteratively (no recursion over the
graph: a 1,000,000-task chain is fine), culled to what the requested keys
need, ordered depth-first (priority 1 runs first; a subtree is finished
before its siblings start, which keeps few results alive; on the cluster
this number is sent as the task's order, leaving the user-level
`priority`, where higher runs first, at its default), and on the
cluster path chains of tasks with one dependency and one dependent are
fused into a single closure, so a chain costs one round trip.
]==]

local debug = debug
local getinfo, getlocal, getupvalue = debug.getinfo, debug.getlocal,
  debug.getupvalue
local traceback = debug.traceback
local error, pcall, xpcall, require = error, pcall, xpcall, require
local getmetatable, setmetatable = getmetatable, setmetatable
local rawequal, rawget = rawequal, rawget
local next, pairs, ipairs, select = next, pairs, ipairs, select
local tostring, type, math_type = tostring, type, math.type
local sformat, sbyte, ssub, sgsub = string.format, string.byte, string.sub,
  string.gsub
local tconcat, tpack, tunpack, tsort = table.concat, table.pack,
  table.unpack, table.sort
local io_open, os_execute, os_remove, os_tmpname, os_time, os_clock =
  io.open, os.execute, os.remove, os.tmpname, os.time, os.clock
local G = _G
local loaded = package.loaded

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

----------------------------------------------------------------------------
-- Keys and hashing
----------------------------------------------------------------------------

-- 64-bit FNV-1a over a string, on Lua 5.4 wrapping integers.
local function fnv1a(s, h)
  h = h or 0xcbf29ce484222325
  local len = #s
  for i = 1, len, 64 do
    local j = i + 63
    if j > len then j = len end
    local bytes = {sbyte(s, i, j)}
    for k = 1, #bytes do
      h = (h ~ bytes[k]) * 0x100000001b3
    end
  end
  return h
end

-- splitmix64 finaliser: turns a counter into well spread bits.
local function mix(x)
  x = x + 0x9e3779b97f4a7c15
  x = (x ~ (x >> 30)) * 0xbf58476d1ce4e5b9
  x = (x ~ (x >> 27)) * 0x94d049bb133111eb
  return x ~ (x >> 31)
end

-- Keys of impure tasks are a session salt mixed with a counter, so two
-- sessions talking to one cluster do not collide (Dask uses uuid4).
local salt = fnv1a(tostring({}) .. tostring(os_time()) .. tostring(os_clock()))
local counter = 0

local function fresh_key(prefix)
  counter = counter + 1
  return sformat("%s-%016x", prefix, mix(salt ~ counter))
end

local function hash_key(prefix, h)
  return sformat("%s-%016x", prefix, h)
end

-- Local, in-process tokenizer used when dlua.codec cannot encode a value:
-- functions, userdata and threads hash by identity, tables by content.
local function tokenize(v, out, seen)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = "s" .. #v .. ":" .. v
  elseif t == "number" then
    out[#out + 1] = (math_type(v) == "integer" and "i" or "f")
      .. sformat("%.17g", v)
  elseif t == "boolean" or t == "nil" then
    out[#out + 1] = tostring(v)
  elseif isref(v) then
    out[#out + 1] = "D" .. v.key
  elseif t == "table" then
    if seen[v] then error("cyclic table") end
    seen[v] = true
    local items = {}
    for k, x in next, v do
      local o = {}
      tokenize(k, o, seen); o[#o + 1] = "="; tokenize(x, o, seen)
      items[#items + 1] = tconcat(o)
    end
    tsort(items)
    out[#out + 1] = "{" .. tconcat(items, ",") .. "}"
    seen[v] = nil
  else
    out[#out + 1] = t .. ":" .. tostring(v)
  end
end

local codec_encode      -- false once dlua.codec proved unusable

local function encode(v)
  if codec_encode == nil then
    local ok, codec = pcall(require, "dlua.codec")
    codec_encode = ok and type(codec) == "table"
      and type(codec.encode) == "function" and codec.encode or false
  end
  if codec_encode then
    local ok, bytes = pcall(codec_encode, v)
    if ok and type(bytes) == "string" then return "c" .. bytes end
  end
  local out = {}
  local ok = pcall(tokenize, v, out, {})
  if ok then return "t" .. tconcat(out) end
  return nil
end

-- Replace refs by marker strings so that hashing never walks into the
-- graph behind a Delayed (which could be a million tasks deep).
local function hashable(v, seen)
  if isref(v) then return "\0dlua-ref:" .. v.key end
  if type(v) ~= "table" or getmetatable(v) ~= nil then return v end
  if seen[v] then return seen[v] end
  local c = {}
  seen[v] = c
  for k, x in next, v do c[k] = hashable(x, seen) end
  return c
end

local function pure_key(prefix, fn, args, n)
  local seen, hargs = {}, {n = n}
  for i = 1, n do hargs[i] = hashable(args[i], seen) end
  local bytes = encode({fn, hargs})
  if not bytes then return fresh_key(prefix) end
  return hash_key(prefix, fnv1a(bytes))
end

----------------------------------------------------------------------------
-- Names
----------------------------------------------------------------------------

local fnames = setmetatable({}, {__mode = "k"})   -- function -> name

--[[ The label of an anonymous function: "lambda@<file>:<line>" where it
  was defined (the file's base name, characters other than letters,
  digits, '_' and '.' replaced by '_'), e.g. lambda@job.lua:12; plain
  "lambda" for a C function. ]]
local function lambda_label(fn)
  local info = type(fn) == "function" and getinfo(fn, "S")
  if not info or info.what == "C" then return "lambda" end
  local file = sgsub(info.short_src, "^.*/", "")
  file = sgsub(ssub(file, 1, 40), "[^%w_.]", "_")
  return sformat("lambda@%s:%d", file, info.linedefined)
end

local LIBS = {"string", "table", "math", "os", "io", "utf8", "coroutine",
              "debug"}

-- Find a readable name for fn: the caller's locals and upvalues, globals,
-- standard libraries.  `level` is the caller's stack level.
local function find_name(fn, level)
  local name = fnames[fn]
  if name then return name end
  local info = getinfo(level + 1, "f")
  if info then
    for i = 1, 250 do
      local n, v = getlocal(level + 1, i)
      if not n then break end
      if rawequal(v, fn) and ssub(n, 1, 1) ~= "(" then name = n break end
    end
  end
  if not name then
    if info and info.func then
      for i = 1, 255 do
        local n, v = getupvalue(info.func, i)
        if not n then break end
        if rawequal(v, fn) and n ~= "" then name = n break end
      end
    end
  end
  if not name then
    for k, v in next, G do
      if rawequal(v, fn) and type(k) == "string" then name = k break end
    end
  end
  if not name then
    for _, lib in ipairs(LIBS) do
      local t = G[lib]
      if type(t) == "table" then
        for k, v in next, t do
          if rawequal(v, fn) then name = lib .. "." .. k break end
        end
      end
      if name then break end
    end
  end
  name = name and sgsub(name, "[^%w_.]", "_") or lambda_label(fn)
  fnames[fn] = name
  return name
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
  local key = spec.pure and pure_key(prefix, fn, args, n) or fresh_key(prefix)
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
      and hash_key(prefix, fnv1a(key .. "#" .. i))
      or fresh_key(prefix)
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
  local fname = type(fn) == "function" and find_name(fn, level + 1)
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
    or fresh_key(spec.name)
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
    key = hash_key(spec.name, fnv1a(tk .. ":" .. tostring(k), fnv1a(d.key)))
  else
    key = fresh_key(spec.name)
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
  e + e built twice is one task.  An operand that cannot be hashed (a
  cyclic table without the codec, say) gets a fresh key. ]]
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
  local bytes = encode(hashable(v, {}))
  return bytes and "e" .. bytes or nil
end

local function op_call_node(fn, spec, args, n)
  local deps, deep = find_deps(args, n)
  local ta = op_token(args[1])
  local tb = n == 2 and op_token(args[2]) or ""
  local key
  if ta and tb then
    key = hash_key(spec.name, fnv1a(spec.name .. "\0" .. ta .. "\0" .. tb))
  else
    key = fresh_key(spec.name)
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

----------------------------------------------------------------------------
-- Compiling: order (with cull and cycle check), fuse
----------------------------------------------------------------------------

--[[ Depth-first post-order from the roots (refs), iteratively.  Returns
  order (list of refs; position = priority) and ndeps (key -> number of
  references from dependents inside the culled graph).  Raises on a cycle,
  naming its keys. ]]
local function toposort(roots)
  local state, order, ndeps = {}, {}, {}
  local sref, sidx, sp = {}, {}, 0
  for r = 1, #roots do
    local root = roots[r]
    if not state[root.key] then
      sp = 1; sref[1] = root; sidx[1] = 0; state[root.key] = 1
      while sp > 0 do
        local ref = sref[sp]
        local node = ref[NODE]
        local src, cnt = node[DEPS], nil
        if src then cnt = #src else src, cnt = node[ARGS], node[NARGS] end
        local i = sidx[sp] + 1
        local dep
        while cnt and i <= cnt do
          local a = src[i]
          local mt = getmetatable(a)
          if mt == Delayed or mt == Ref then dep = a break end
          i = i + 1
        end
        if dep then
          sidx[sp] = i
          local k = dep.key
          local st = state[k]
          ndeps[k] = (ndeps[k] or 0) + 1
          if st == nil then
            sp = sp + 1; sref[sp] = dep; sidx[sp] = 0; state[k] = 1
          elseif st == 1 then
            local path = {}
            for j = 1, sp do
              if path[1] or sref[j].key == k then
                path[#path + 1] = sref[j].key
              end
            end
            path[#path + 1] = k
            error("dlua.delayed: cycle in task graph: "
              .. tconcat(path, " -> "), 0)
          end
        else
          state[ref.key] = 2
          order[#order + 1] = ref
          sref[sp] = nil
          sp = sp - 1
        end
      end
    end
  end
  return order, ndeps
end

-- The closure a fused chain runs as: head(args...), then each stage with
-- the previous result put into its holes.  Upvalues are functions and
-- constant arguments only, so the closure can be sent to a worker.
local function make_fused(head, fns, consts, holes, ns)
  local nstages = #fns
  return function (...)
    local r = head(...)
    for s = 1, nstages do
      local c, n = consts[s], ns[s]
      local call = {tunpack(c, 1, n)}
      local h = holes[s]
      for j = 1, #h do call[h[j]] = r end
      r = fns[s](tunpack(call, 1, n))
    end
    return r
  end
end

-- The single dependency of a task whose refs are all top-level and all
-- the same key: (ref, number of references), else nil.
local function single_dep(node)
  if node[DEPS] then return nil end
  local args, one, count = node[ARGS], nil, 0
  for j = 1, node[NARGS] do
    local a = args[j]
    if isref(a) then
      if one and one.key ~= a.key then return nil end
      one, count = a, count + 1
    end
  end
  return one, count
end

--[[ Fuse linear chains: task B whose only dependency A is a task with B as
  its only dependent, A not requested, A referenced only at the top level
  of B's arguments.  Returns a new order (refs to fused nodes). ]]
local function fuse(order, ndeps, wanted)
  local chains, gone = {}, {}   -- key -> chain; keys fused into a chain
  for i = 1, #order do
    local ref = order[i]
    local node = ref[NODE]
    if node[FN] then
      local a, count = single_dep(node)
      local ak = a and a.key
      local an = a and a[NODE]
      if a and an[FN] and ndeps[ak] == count and not wanted[ak] then
        local ch = chains[ak] or {head = an, fns = {}, consts = {},
          holes = {}, ns = {}, names = {an[SPEC].fname}}
        chains[ak] = nil
        gone[ak] = true
        local c, h, n = {}, {}, node[NARGS]
        for j = 1, n do
          local v = node[ARGS][j]
          if isref(v) then h[#h + 1] = j else c[j] = v end
        end
        local s = #ch.fns + 1
        ch.fns[s], ch.consts[s], ch.holes[s], ch.ns[s] = node[FN], c, h, n
        ch.names[#ch.names + 1] = node[SPEC].fname
        chains[ref.key] = ch
      end
    end
  end
  local norder = {}
  for i = 1, #order do
    local ref = order[i]
    local k = ref.key
    if not gone[k] then
      local ch = chains[k]
      if ch then
        local h = ch.head
        local spec = {name = ref[NODE][SPEC].name,
                      fname = tconcat(ch.names, "-")}
        ref = setmetatable({key = k, [NODE] = {
          make_fused(h[FN], ch.fns, ch.consts, ch.holes, ch.ns),
          h[ARGS], h[NARGS], h[DEPS], h[DEEP], spec}}, Ref)
      end
      norder[#norder + 1] = ref
    end
  end
  return norder
end

-- Copy plain table t with every ref replaced by get(ref); t itself when
-- nothing inside is a ref.
local function subst(t, get, seen)
  if seen[t] then return seen[t] end
  local copy
  for k, v in next, t do
    local nv = v
    if isref(v) then
      nv = get(v)
    elseif type(v) == "table" and getmetatable(v) == nil then
      nv = subst(v, get, seen)
    end
    if not rawequal(nv, v) then
      if not copy then
        copy = {}
        for k2, v2 in next, t do copy[k2] = v2 end
        seen[t] = copy
      end
      copy[k] = nv
    end
  end
  if not copy then seen[t] = t end
  return copy or t
end

-- The actual argument list of a task, refs replaced by get(ref).
local function resolve_args(node, get)
  local args, n, deep = node[ARGS], node[NARGS], node[DEEP]
  local call, seen = {}, nil
  for j = 1, n do
    local a = args[j]
    local mt = getmetatable(a)
    if mt == Delayed or mt == Ref then
      a = get(a)
    elseif deep and mt == nil and type(a) == "table" then
      seen = seen or {}
      a = subst(a, get, seen)
    end
    call[j] = a
  end
  return call, n
end

----------------------------------------------------------------------------
-- Running
----------------------------------------------------------------------------

local function on_error(e)
  return {err = e, tb = traceback(tostring(e), 2)}
end

local function task_failed(key, r)
  error(sformat("dlua.delayed: task '%s' failed: %s\n%s", key,
    tostring(r.err), r.tb), 0)
end

--[[ Run the graph here, in order; returns key -> value (NIL for nil) for
  the wanted keys.  A result is dropped as soon as its last dependent has
  run.  Tasks of one or two plain arguments take a path without tables. ]]
local function run_sync(order, ndeps, wanted)
  local results = {}
  local function get(ref)
    local v = results[ref.key]
    if v == NIL then return nil end
    return v
  end
  for i = 1, #order do
    local ref = order[i]
    local k = ref.key
    local node = ref[NODE]
    local fn = node[FN]
    local ok, v
    if fn == nil then
      ok, v = true, node.value
      if node.future then v = node.future:result() end
    else
      local n, args = node[NARGS], node[ARGS]
      if n <= 2 and not node[DEEP] then
        local a1, a2 = args[1], args[2]
        local mt = getmetatable(a1)
        if mt == Delayed or mt == Ref then
          a1 = results[a1.key]
          if a1 == NIL then a1 = nil end
        end
        if n == 1 then
          ok, v = xpcall(fn, on_error, a1)
        else
          mt = getmetatable(a2)
          if mt == Delayed or mt == Ref then
            a2 = results[a2.key]
            if a2 == NIL then a2 = nil end
          end
          ok, v = xpcall(fn, on_error, a1, a2)
        end
      else
        local call
        call, n = resolve_args(node, get)
        ok, v = xpcall(fn, on_error, tunpack(call, 1, n))
      end
      if not ok then task_failed(k, v) end
      local src, cnt = node[DEPS], nil
      if src then cnt = #src else src, cnt = args, node[NARGS] end
      for j = 1, cnt do
        local a = src[j]
        local mt = getmetatable(a)
        if mt == Delayed or mt == Ref then
          local dk = a.key
          local c = ndeps[dk] - 1
          ndeps[dk] = c
          if c == 0 and not wanted[dk] then results[dk] = nil end
        end
      end
    end
    if v == nil then v = NIL end
    results[k] = v
  end
  return results
end

local function cluster_api()
  local ok, dl = pcall(require, "dlua")
  if ok and type(dl) == "table" and dl.Client and dl.opts then return dl end
  return nil
end

local function get_client(opts, dl)
  if opts.client then return opts.client end
  local c = dl.default_client and dl.default_client()
  if c then return c end
  return dl.Client()
end

--[[ Submit the graph in priority order (the client batches the submits and
  flushes them as one message).  Returns key -> future for task keys. ]]
local function submit_graph(client, dl, order)
  local futs = {}
  local function get(ref)
    local k = ref.key
    local f = futs[k]
    if f ~= nil then return f end
    local node = ref[NODE]
    if node.future then return node.future end
    if node.data then return node.value end
    error("dlua.delayed: no future for dependency '" .. k .. "'", 0)
  end
  for i = 1, #order do
    local ref = order[i]
    local k = ref.key
    local node = ref[NODE]
    if node.future then
      futs[k] = node.future
    elseif not node.data then
      local call, n = resolve_args(node, get)
      -- The client's internal entry: the options are known good here, so
      -- the per-call checks of client:submit are skipped.
      futs[k] = client:_submit({key = k, order = i}, node[FN], n,
                               tunpack(call, 1, n))
    end
  end
  return futs
end

local SCHED = {sync = "sync", synchronous = "sync",
  ["single-threaded"] = "sync", cluster = "cluster",
  distributed = "cluster"}
local COMPUTE_OPTION = {scheduler = true, client = true, optimize = true,
  progress = true}

local function check_opts(opts, who)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(sformat("dlua.%s: options must be a table, got %s", who,
      type(opts)), 3)
  end
  for k in pairs(opts) do
    if not COMPUTE_OPTION[k] then
      error(sformat("dlua.%s: unknown option '%s'%s", who, tostring(k),
        hint(k, COMPUTE_OPTION)), 3)
    end
  end
  if opts.scheduler ~= nil and not SCHED[opts.scheduler] then
    error(sformat("dlua.%s: unknown scheduler '%s' (use \"sync\" or "
      .. "\"cluster\")", who, tostring(opts.scheduler)), 3)
  end
  return opts
end

-- Is the trailing argument of compute/persist an options table?
local function is_opts(t)
  if type(t) ~= "table" or isref(t) then return false end
  local mt = getmetatable(t)
  if mt ~= nil then
    local ok, dl = pcall(require, "dlua")
    if ok and type(dl) == "table" and type(dl.is_opts) == "function" then
      return dl.is_opts(t) and true or false
    end
    return type(mt) == "table" and rawget(mt, "__name") == "dlua.opts"
  end
  if next(t) == nil then return false end
  -- option names, or names close to one (a typo, reported by check_opts)
  for k, v in next, t do
    if not COMPUTE_OPTION[k] and (isref(v) or hint(k, COMPUTE_OPTION) == "")
    then
      return false
    end
  end
  return true
end

--[[ Run the graph behind roots (list of refs).  mode "compute" returns a
  list of values, "persist" a list of Delayeds. ]]
local function execute(roots, opts, mode)
  local order, ndeps = toposort(roots)
  local wanted = {}
  for i = 1, #roots do wanted[roots[i].key] = true end
  local sched = SCHED[opts.scheduler or "cluster"]
  local dl = sched == "cluster" and cluster_api()
  local out = {}
  if not dl then
    local results = run_sync(order, ndeps, wanted)
    for i = 1, #roots do
      local r = roots[i]
      local v = results[r.key]
      if v == NIL then v = nil end
      if mode == "compute" then
        out[i] = v
      else
        local spec = r[NODE][SPEC]
        out[i] = new_delayed(r.key, {[SPEC] = {name = spec.name,
          fname = spec.fname}, data = true, value = v})
      end
    end
    return out
  end
  local client = get_client(opts, dl)
  if opts.optimize ~= false then order = fuse(order, ndeps, wanted) end
  local futs = submit_graph(client, dl, order)
  if opts.progress then         -- a live bar until done (lua/dlua/progress.lua)
    local list = {}
    for i = 1, #order do list[#list + 1] = futs[order[i].key] end
    require("dlua.progress")._graph(list, opts.progress)
  end
  if mode == "persist" then
    for i = 1, #roots do
      local r = roots[i]
      local f = futs[r.key]
      out[i] = f and new_delayed(r.key, {[SPEC] = r[NODE][SPEC], future = f})
        or r
    end
    return out
  end
  local flist, fidx = {}, {}
  for i = 1, #roots do
    local r = roots[i]
    local f = futs[r.key]
    if f then
      flist[#flist + 1] = f; fidx[#flist] = i
    else
      out[i] = r[NODE].value
    end
  end
  if #flist > 0 then
    local vals = client:gather(flist)
    for j = 1, #flist do out[fidx[j]] = vals[j] end
  end
  return out
end

-- Split (d1, d2, ..., [opts]) and run; Delayed objects are computed, other
-- values pass through.
local function run_many(mode, who, ...)
  local n = select("#", ...)
  local args = {...}
  local opts
  if n > 0 and is_opts(args[n]) then
    opts = args[n]
    args[n] = nil
    n = n - 1
  end
  opts = check_opts(opts, who)
  -- Delayeds given directly, and those inside plain tables (Dask's
  -- compute looks into lists and dicts): one graph for all.
  local roots, pos, inroot, nested = {}, {}, {}, nil
  for i = 1, n do
    local a = args[i]
    if is_delayed(a) then
      roots[#roots + 1] = a; pos[#roots] = i
    elseif type(a) == "table" and getmetatable(a) == nil then
      local deps = {}
      if scan(a, deps, {}, {}) then
        nested = nested or {}
        nested[#nested + 1] = i
        for j = 1, #deps do
          local d = deps[j]
          if not inroot[d.key] then
            inroot[d.key] = true
            roots[#roots + 1] = d
          end
        end
      end
    end
  end
  if #roots > 0 then
    local vals = execute(roots, opts, mode)
    local byk = {}
    for j = 1, #roots do
      byk[roots[j].key] = vals[j] == nil and NIL or vals[j]
      if pos[j] then args[pos[j]] = vals[j] end
    end
    if nested then
      local seen = {}
      local function get(ref)
        local v = byk[ref.key]
        if v == NIL then return nil end
        return v
      end
      for j = 1, #nested do
        local i = nested[j]
        args[i] = subst(args[i], get, seen)
      end
    end
  end
  return tunpack(args, 1, n)
end

--[[ to_futures(client, x, opts, level) -> x with every Delayed (x itself,
  or anywhere inside the plain table x) replaced by the future of its
  result, the graph submitted to client (client:compute). ]]
local function to_futures(client, x, opts, level)
  if opts ~= nil and type(opts) ~= "table" then
    error("compute: options must be a table, got " .. type(opts), level + 1)
  end
  local o = {}
  for k, v in next, opts or {} do
    if k ~= "optimize" then
      error(sformat("compute: unknown option '%s'%s", tostring(k),
        hint(k, {optimize = true})), level + 1)
    end
    o[k] = v
  end
  o.client, o.scheduler = client, "cluster"
  local roots
  if is_delayed(x) then
    roots = {x}
  elseif type(x) == "table" and getmetatable(x) == nil then
    roots = {}
    scan(x, roots, {}, {})
  else
    error("compute: expects a Delayed or a table holding Delayeds, got "
      .. (getmetatable(x) and getmetatable(x).__name or type(x)), level + 1)
  end
  local futs = {}
  if #roots > 0 then
    local ps = execute(roots, o, "persist")
    for i = 1, #roots do
      local node = ps[i][NODE]
      local f = node.future
      if not f then -- a plain value: a task that returns it
        f = client:_submit({key = roots[i].key}, identity, 1, node.value)
      end
      futs[roots[i].key] = f
    end
  end
  local function get(ref) return futs[ref.key] end
  if is_delayed(x) then return futs[x.key] end
  return subst(x, get, {})
end

--[[ compute(d1, d2, ... [, opts]) -> v1, v2, ...  One graph for all, so
  shared parts run once. ]]
local function compute(...)
  return run_many("compute", "compute", ...)
end

--[[ persist(d1, d2, ... [, opts]) -> p1, p2, ...  Delayeds whose values are
  held on the cluster (futures), or in this process with "sync". ]]
local function persist(...)
  return run_many("persist", "persist", ...)
end

----------------------------------------------------------------------------
-- Raw graphs
----------------------------------------------------------------------------

-- Strings in v (top level and nested in plain tables) that are graph keys.
local function infer_deps(v, graph, out, set, seen)
  if type(v) == "string" then
    if graph[v] ~= nil and not set[v] then set[v] = true; out[#out + 1] = v end
  elseif type(v) == "table" and getmetatable(v) == nil and not seen[v] then
    seen[v] = true
    for _, x in next, v do infer_deps(x, graph, out, set, seen) end
  end
end

-- Copy plain-table v with strings in depset replaced by refs[s].
local function refs_in(v, depset, refs, seen)
  if type(v) == "string" and depset[v] then return refs[v], true end
  if type(v) ~= "table" or getmetatable(v) ~= nil then return v, false end
  if seen[v] then return seen[v], false end
  local c, any = {}, false
  seen[v] = c
  for k, x in next, v do
    local nx, f = refs_in(x, depset, refs, seen)
    c[k] = nx
    any = any or f
  end
  return c, any
end

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and rawget(mt, "__call") ~= nil
end

local function key_prefix(k)
  return k:match("^(.*)%-[^-]*$") or k
end

-- Turn a raw graph into refs (one per key) pointing at node records.
local function import_graph(graph)
  if type(graph) ~= "table" then
    error("dlua.compute_graph: graph must be a table, got " .. type(graph), 3)
  end
  local refs, raw = {}, {}
  for k, e in next, graph do
    if type(k) ~= "string" then
      error("dlua.compute_graph: graph keys must be strings, got "
        .. type(k), 3)
    end
    refs[k] = setmetatable({key = k}, Ref)
    local plain = type(e) == "table" and getmetatable(e) == nil
    local prefix = key_prefix(k)
    local spec = {name = prefix, fname = prefix}
    if plain and e.fn ~= nil then
      if not callable(e.fn) then
        error(sformat("dlua.compute_graph: task '%s': fn is not callable", k),
          3)
      end
      local args = e.args or {}
      spec.fname = fnames[e.fn] or prefix
      raw[k] = {fn = e.fn, args = args, n = args.n or #args, deps = e.deps,
                spec = spec}
    elseif plain and callable(e[1]) then
      spec.fname = fnames[e[1]] or prefix
      raw[k] = {fn = e[1], args = {tunpack(e, 2, #e)}, n = #e - 1,
                spec = spec}
    else
      refs[k][NODE] = {[SPEC] = spec, data = true, value = e}
    end
  end
  for k, r in next, raw do
    local dkeys = r.deps
    if dkeys == nil then
      dkeys = {}
      local set, seen = {}, {}
      for i = 1, r.n do infer_deps(r.args[i], graph, dkeys, set, seen) end
    elseif type(dkeys) ~= "table" then
      error(sformat("dlua.compute_graph: task '%s': deps must be a list", k),
        3)
    end
    local deps, depset = {}, {}
    for i = 1, #dkeys do
      local dk = dkeys[i]
      if refs[dk] == nil then
        error(sformat("dlua.compute_graph: task '%s' depends on missing "
          .. "key '%s'", k, tostring(dk)), 3)
      end
      if not depset[dk] then depset[dk] = true; deps[#deps + 1] = refs[dk] end
    end
    local args, deep, seen = {}, false, {}
    for i = 1, r.n do
      local a = r.args[i]
      if type(a) == "string" and depset[a] then
        args[i] = refs[a]
      else
        local c, any = refs_in(a, depset, refs, seen)
        args[i] = c
        deep = deep or any
      end
    end
    refs[k][NODE] = {r.fn, args, r.n, deep and deps or false, deep, r.spec}
  end
  return refs
end

--[[ compute_graph(graph, keys [, opts]) -> value, or list of values when
  keys is a list.  Only what the keys need runs. ]]
local function compute_graph(graph, keys, opts)
  opts = check_opts(opts, "compute_graph")
  local refs = import_graph(graph)
  local single = type(keys) == "string"
  local klist = single and {keys} or keys
  if type(klist) ~= "table" then
    error("dlua.compute_graph: keys must be a key or a list of keys", 2)
  end
  local roots = {}
  for i = 1, #klist do
    local r = refs[klist[i]]
    if not r then
      error(sformat("dlua.compute_graph: key '%s' is not in the graph",
        tostring(klist[i])), 2)
    end
    roots[i] = r
  end
  local vals = execute(roots, opts, "compute")
  if single then return vals[1] end
  return vals
end

----------------------------------------------------------------------------
-- Inspecting: graph, visualize
----------------------------------------------------------------------------

local function export_arg(v, seen)
  if isref(v) then return v.key end
  if type(v) ~= "table" or getmetatable(v) ~= nil then return v end
  if seen[v] then return seen[v] end
  local c = {}
  seen[v] = c
  for k, x in next, v do c[k] = export_arg(x, seen) end
  return c
end

-- Unique dependency keys of a task node.
local function dep_keys(node)
  local src, cnt = dep_refs(node)
  local keys, set = {}, {}
  for j = 1, cnt do
    local a = src[j]
    if isref(a) and not set[a.key] then
      set[a.key] = true
      keys[#keys + 1] = a.key
    end
  end
  return keys
end

local GRAPH_OPTION = {optimize = true}

local function compiled(roots, opts, who)
  if opts ~= nil then
    if type(opts) ~= "table" then
      error(sformat("dlua.delayed: %s options must be a table", who), 3)
    end
    for k in pairs(opts) do
      if not GRAPH_OPTION[k] then
        error(sformat("dlua.delayed: unknown %s option '%s'%s", who,
          tostring(k), hint(k, GRAPH_OPTION)), 3)
      end
    end
  end
  local order, ndeps = toposort(roots)
  if opts and opts.optimize then
    local wanted = {}
    for i = 1, #roots do wanted[roots[i].key] = true end
    order = fuse(order, ndeps, wanted)
  end
  return order
end

--[[ d:graph([{optimize = true}]) -> {[key] = task or value}; tasks are
  {fn=, args={n=, ...}, deps={keys}, priority=} (1 runs first). ]]
function methods.graph(d, opts)
  local order = compiled({d}, opts, "graph")
  local out = {}
  for i = 1, #order do
    local ref = order[i]
    local node = ref[NODE]
    if node.future then
      out[ref.key] = node.future
    elseif node.data then
      local v = node.value
      if type(v) == "table" and getmetatable(v) == nil and
         (v.fn ~= nil or callable(v[1])) then
        v = {fn = identity, args = {v, n = 1}, deps = {}, priority = i}
      end
      out[ref.key] = v
    else
      local args, seen, a = {n = node[NARGS]}, {}, node[ARGS]
      for j = 1, node[NARGS] do args[j] = export_arg(a[j], seen) end
      out[ref.key] = {fn = node[FN], args = args, deps = dep_keys(node),
                      priority = i}
    end
  end
  return out
end

local function dot_id(s)
  return '"' .. sgsub(s, '["\\]', "\\%0") .. '"'
end

local function to_dot(order)
  local out = {"digraph dlua {", "  graph [rankdir=BT];"}
  for i = 1, #order do
    local ref = order[i]
    local k = ref.key
    local node = ref[NODE]
    local id = dot_id(k)
    out[#out + 1] = sformat("  %s [label=%s, shape=box, tooltip=%s];", id,
      dot_id(key_prefix(k)), id)
    if node[FN] then
      local fid = dot_id(k .. " (fn)")
      out[#out + 1] = sformat("  %s [label=%s, shape=circle, tooltip=%s];",
        fid, dot_id(node[SPEC].fname or node[SPEC].name), id)
      out[#out + 1] = sformat("  %s -> %s;", fid, id)
      local keys = dep_keys(node)
      for j = 1, #keys do
        out[#out + 1] = sformat("  %s -> %s;", dot_id(keys[j]), fid)
      end
    end
  end
  out[#out + 1] = "}"
  return tconcat(out, "\n") .. "\n"
end

local function shell_quote(s)
  return "'" .. sgsub(s, "'", "'\\''") .. "'"
end

local FORMATS = {svg = true, png = true, pdf = true, jpg = true,
  jpeg = true, gif = true}

--[=[ visualize(list, [filename [, {optimize=}]]).  Without a filename,
  returns the DOT text.  "x.dot"/"x.gv" writes DOT; "x.svg", "x.png",
  "x.pdf" run Graphviz `dot`.  Returns filename; raises when the file
  cannot be written or Graphviz is not installed. ]=]
local function visualize(roots, filename, opts)
  local text = to_dot(compiled(roots, opts, "visualize"))
  if filename == nil then
    -- In a notebook (dlua kernel): a dlua.Graph, drawn inline as SVG.
    local disp = loaded["dlua.display"]
    if disp and disp._kernel then return disp.graph(text) end
    return text
  end
  if type(filename) ~= "string" then
    error("dlua.delayed: visualize filename must be a string", 3)
  end
  local ext = (filename:match("%.([%w]+)$") or ""):lower()
  if ext == "dot" or ext == "gv" then
    local f, err = io_open(filename, "w")
    if not f then error("dlua.delayed: visualize: " .. err, 3) end
    f:write(text)
    f:close()
    return filename
  end
  if not FORMATS[ext] then
    error(sformat("dlua.delayed: visualize: unknown file type '%s' "
      .. "(use .dot, .svg, .png or .pdf)", filename), 3)
  end
  if not os_execute("command -v dot >/dev/null 2>&1") then
    error(sformat("dlua.delayed: visualize: writing '%s' needs Graphviz's "
      .. "'dot' command, which is not installed (apt-get install graphviz; "
      .. "or write .dot text, which needs nothing)", filename), 3)
  end
  local tmp = os_tmpname()
  local f, err = io_open(tmp, "w")
  if not f then error("dlua.delayed: visualize: " .. err, 3) end
  f:write(text)
  f:close()
  local ok = os_execute(sformat("dot -T%s -o %s %s", ext,
    shell_quote(filename), shell_quote(tmp)))
  os_remove(tmp)
  if not ok then
    error("dlua.delayed: visualize: graphviz 'dot' failed to write "
      .. filename, 3)
  end
  return filename
end

function methods.visualize(d, filename, opts)
  local r = visualize({d}, filename, opts) -- not a tail call: error levels
  return r
end

function methods.compute(d, opts)
  if not is_delayed(d) then
    error("dlua.delayed: use d:compute(), not d.compute()", 2)
  end
  return execute({d}, check_opts(opts, "compute"), "compute")[1]
end

function methods.persist(d, opts)
  if not is_delayed(d) then
    error("dlua.delayed: use d:persist(), not d.persist()", 2)
  end
  return execute({d}, check_opts(opts, "persist"), "persist")[1]
end

return {
  delayed = delayed,
  compute = compute,
  persist = persist,
  compute_graph = compute_graph,
  is_delayed = is_delayed,
  getattr = getattr,
  to_futures = to_futures,
  visualize = function (list, filename, opts)
    local r = visualize(list, filename, opts)
    return r
  end,
  Delayed = Delayed,
}

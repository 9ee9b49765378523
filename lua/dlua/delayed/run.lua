--[[ dlua.delayed.run -- running a compiled graph: here, in order
  (scheduler "sync"), or on the cluster through a dlua.Client; compute,
  persist, compute_graph and client:compute's to_futures. ]]

local B = require "dlua.delayed.build"
local NODE, FN, ARGS, NARGS, DEPS, DEEP, SPEC = B.NODE, B.FN, B.ARGS,
  B.NARGS, B.DEPS, B.DEEP, B.SPEC
local NIL, Delayed, Ref, methods = B.NIL, B.Delayed, B.Ref, B.methods
local isref, is_delayed, new_delayed, scan, identity, hint = B.isref,
  B.is_delayed, B.new_delayed, B.scan, B.identity, B.hint
local C = require "dlua.delayed.compile"
local toposort, fuse, subst, resolve_args, import_graph = C.toposort, C.fuse,
  C.subst, C.resolve_args, C.import_graph

local traceback = debug.traceback
local error, pcall, xpcall, require = error, pcall, xpcall, require
local getmetatable, rawget = getmetatable, rawget
local next, pairs, select, tostring, type = next, pairs, select, tostring,
  type
local sformat, tunpack = string.format, table.unpack

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error
local _ENV = nil -- luacheck: ignore  (every global is captured above)

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

-- A function ref -> results[ref.key], with NIL read as nil.
local function getter(results)
  return function(ref)
    local v = results[ref.key]
    if v == NIL then return nil end
    return v
  end
end

--[[ Run the graph here, in order; returns key -> value (NIL for nil) for
  the wanted keys.  A result is dropped as soon as its last dependent has
  run.  Tasks of one or two plain arguments take a path without tables. ]]
local function run_sync(order, ndeps, wanted)
  local results = {}
  local get = getter(results)
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

--[[ Submit the graph in priority order (the client sends the tasks in
  batches, the last one before this returns).  Returns key -> future for
  task keys.  With ndeps and wanted (a client that queues graphs in one
  call), the futures of tasks that are not wanted are released once their
  dependents are queued: they are in the table, released. ]]
local function submit_graph(client, dl, order, ndeps, wanted)
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
  if client._queue_graph then -- the whole graph in one call, in C
    client:_queue_graph(order, futs, get,
      function (node) return resolve_args(node, get) end, NODE, Delayed, Ref,
      ndeps, wanted)
    return futs
  end
  -- The client's internal entry: the options are known good here, so the
  -- per-call checks of client:submit are skipped, and the tasks go to the
  -- scheduler in batches rather than one hand-over each.
  local spec = {}
  for i = 1, #order do
    local ref = order[i]
    local k = ref.key
    local node = ref[NODE]
    if node.future then
      futs[k] = node.future
    elseif not node.data then
      local call, n = resolve_args(node, get)
      spec.key, spec.order = k, i -- read at once by _queue
      futs[k] = client:_queue(spec, node[FN], tunpack(call, 1, n))
    end
  end
  client:_send_queued()
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
  -- The progress bar watches every task's future: none released then.
  local futs = submit_graph(client, dl, order,
    not opts.progress and ndeps or nil, wanted)
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
      local seen, get = {}, getter(byk)
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

--[[ persist_graph(graph, keys [, opts]) -> list of futures (values with
  scheduler = "sync"), one per key of the list keys: the results stay on
  the cluster, and a graph that holds the futures as values depends on
  them (dlua.array's persist). ]]
local function persist_graph(graph, keys, opts)
  opts = check_opts(opts, "persist_graph")
  local refs = import_graph(graph)
  local roots = {}
  for i = 1, #keys do
    roots[i] = refs[keys[i]] or error(sformat("dlua.persist_graph: key "
      .. "'%s' is not in the graph", tostring(keys[i])), 2)
  end
  local ps = execute(roots, opts, "persist")
  local out = {}
  for i = 1, #ps do
    local node = ps[i][NODE]
    out[i] = node.future or node.value
  end
  return out
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
  compute = compute, persist = persist, compute_graph = compute_graph,
  persist_graph = persist_graph, to_futures = to_futures,
}

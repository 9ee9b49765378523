--[[ dlua.delayed.compile -- from Delayed objects (or a raw graph) to an
  ordered task list: toposort (with cull and cycle check), fusion of linear
  chains, argument substitution, raw-graph import, and d:graph(). ]]

local keys = require "dlua.keys"
local B = require "dlua.delayed.build"
local NODE, FN, ARGS, NARGS, DEPS, DEEP, SPEC = B.NODE, B.FN, B.ARGS,
  B.NARGS, B.DEPS, B.DEEP, B.SPEC
local Delayed, Ref, methods = B.Delayed, B.Ref, B.methods
local isref, dep_refs, identity, hint = B.isref, B.dep_refs, B.identity,
  B.hint
local map_refs = B.map_refs
local known_name = keys.known_name

local error = error
local getmetatable, setmetatable, rawequal, rawget = getmetatable,
  setmetatable, rawequal, rawget
local next, pairs, tostring, type = next, pairs, tostring, type
local sformat, tconcat, tunpack = string.format, table.concat, table.unpack

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error
local _ENV = nil -- luacheck: ignore  (every global is captured above)

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
    local mt = getmetatable(a) -- isref, inline: this runs for every arg
    if mt == Delayed or mt == Ref then
      if one and one.key ~= a.key then return nil end
      one, count = a, count + 1
    end
  end
  return one, count
end

--[[ Fuse linear chains: task B whose only dependency A is a task with B as
  its only dependent, A not requested, A referenced only at the top level
  of B's arguments.  Returns a new order (refs to fused nodes), or order
  itself when no chain was found (a graph of fan-ins and fan-outs only,
  such as a tree reduction: no copy of the order). ]]
local function fuse(order, ndeps, wanted)
  local chains, gone = {}, {}   -- key -> chain; keys fused into a chain
  local found = false
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
        found = true
      end
    end
  end
  if not found then return order end
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
      spec.fname = known_name(e.fn) or prefix
      raw[k] = {fn = e.fn, args = args, n = args.n or #args, deps = e.deps,
                spec = spec}
    elseif plain and callable(e[1]) then
      spec.fname = known_name(e[1]) or prefix
      raw[k] = {fn = e[1], args = {tunpack(e, 2, #e)}, n = #e - 1,
                spec = spec}
    elseif getmetatable(e) and getmetatable(e).__name == "dlua.Future" then
      refs[k][NODE] = {[SPEC] = spec, future = e} -- a persisted result
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
----------------------------------------------------------------------------
-- Inspecting: graph, visualize
----------------------------------------------------------------------------

local function ref_key(r) return r.key end
local function export_arg(v, seen) return map_refs(v, ref_key, seen) end

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

return {
  toposort = toposort, fuse = fuse, subst = subst,
  resolve_args = resolve_args, import_graph = import_graph,
  compiled = compiled, dep_keys = dep_keys, key_prefix = key_prefix,
}

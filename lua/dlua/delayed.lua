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
                  calls share one task (dlua.keys: a hash of the encoding);
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
The parts, under lua/dlua/delayed/: build (Delayed objects, node records,
keys), compile (order, cull, fuse, raw graphs, d:graph), run (sync and
cluster execution, compute, persist) and visualize (DOT, Graphviz).
]==]

local B = require "dlua.delayed.build"
local R = require "dlua.delayed.run"
local V = require "dlua.delayed.visualize"

local visualize = V.visualize

return {
  delayed = B.delayed,
  compute = R.compute,
  persist = R.persist,
  compute_graph = R.compute_graph,
  persist_graph = R.persist_graph,
  is_delayed = B.is_delayed,
  getattr = B.getattr,
  to_futures = R.to_futures,
  visualize = function (list, filename, opts)
    local r = visualize(list, filename, opts) -- not a tail call: error levels
    return r
  end,
  Delayed = B.Delayed,
}

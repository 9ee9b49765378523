--[[
dlua -- Dask for Lua.

  local dlua = require "dlua"
  local client = dlua.Client()               -- a LocalCluster, one worker per core
  local fut = client:submit(function(x) return x + 1 end, 41)
  print(fut:result())                        --> 42
  local futs = client:map(function(x) return x * x end, {1, 2, 3})
  print(table.concat(client:gather(futs), " "))  --> 1 4 9
  client:close()

Options.  Calls that run tasks (submit, map, compute, persist) take their
options as a trailing `dlua.opts{...}` table, so a plain table argument is
never mistaken for options:

  client:submit(fn, a, b, dlua.opts{key = "job-1", retries = 2})

A plain table where options were meant is refused, naming dlua.opts:
map's arguments must be sequences of one length, and submit's trailing
table must not consist of option names only (end the call with
dlua.opts{} to pass such a table as an argument).

  key       string    the task's key (default: <fn name>-<unique hex>)
  pure      boolean   key from a hash of function and arguments, so equal
                      calls share one task (default false)
  priority  integer   higher runs first among ready tasks (default 0)
  retries   integer   re-run a task that raises, with back-off (default 0)
  timeout   number    seconds a task may run before it is interrupted
  workers   {ids}     run only on these worker ids
  allow_other_workers boolean  treat `workers` as a preference only

Everything here is documented in README.md, section "Lua API".
]]

-- The parts (README, "Architecture"): each module owns one concept and
-- this one re-exports their public names as the `dlua` table.
--   dlua.options       dlua.opts, option checks, sizes, timeouts
--   dlua.keys          task keys: format, hash, function names
--   dlua.localcluster  dlua.LocalCluster
--   dlua.future        futures, TaskError, TimeoutError
--   dlua.client        dlua.Client, dlua.sleep, the pump
--   dlua.wait          dlua.wait, dlua.as_completed
--   dlua.delayed       delayed pipelines (dlua/delayed/*.lua)

local core = require "dlua.core"
local cluster_c = require "dlua.cluster"
local codec = require "dlua.codec"

local M = {}
M.time = core.time
M.version = core.version
M.codec = codec

local function export(mod, names)
  for _, k in ipairs(names) do
    local v = mod[k]
    if v == nil then error("dlua: no '" .. k .. "' to export") end
    M[k] = v
  end
end

export(require "dlua.options", {"opts", "is_opts", "parse_bytes",
  "format_bytes", "_did_you_mean", "_check_keys"})
export(require "dlua.localcluster", {"LocalCluster", "MIN_MEMORY_LIMIT",
  "LocalCluster_class"})
export(require "dlua.future", {"Future", "is_future", "TaskError",
  "is_task_error", "TimeoutError"})
export(require "dlua.client", {"Client", "Client_class", "sleep",
  "_at_prompt", "default_client"})
export(require "dlua.wait", {"wait", "as_completed", "is_as_completed",
  "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"})

--- dlua.progress(futures_or_delayeds [, opts]): a live progress bar
-- (lua/dlua/progress.lua).
function M.progress(...)
  return require("dlua.progress").progress(...)
end

--- dlua.in_worker() -> true when running inside a task on a worker
M.in_worker = cluster_c.in_worker

-- Delayed pipelines (lua/dlua/delayed.lua); it requires "dlua" itself
-- (for the client), so this module is registered first.
package.loaded["dlua"] = M
local delayed = require "dlua.delayed"
M.delayed = delayed.delayed
M.compute = delayed.compute
M.persist = delayed.persist
M.compute_graph = delayed.compute_graph
M.is_delayed = delayed.is_delayed

return M

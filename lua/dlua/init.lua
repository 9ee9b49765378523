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
--   dlua.client        dlua.Client, dlua.get_client, dlua.sleep, the pump
--   dlua.coord         Variable, Queue, Event, Lock, Semaphore
--   dlua.display       rich output in a notebook (loaded on first use)
--   dlua.report        dlua.performance_report (loaded on first use)
--   dlua.wait          dlua.wait, dlua.as_completed
--   dlua.delayed       delayed pipelines (dlua/delayed/*.lua)

local core = require "dlua.core"
local cluster_c = require "dlua.cluster"
local codec = require "dlua.codec"

local M = {}
M.time = core.time
M.version = core.version
M.codec = codec

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error

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
  "_at_prompt", "default_client", "get_client"})
export(require "dlua.wait", {"wait", "as_completed", "is_as_completed",
  "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"})

--- dlua.progress(futures_or_delayeds [, opts]): a live progress bar
-- (lua/dlua/progress.lua).
function M.progress(...)
  return require("dlua.progress").progress(...)
end

-- Variable, Queue, Event, Lock, Semaphore (lua/dlua/coord.lua).
export(require "dlua.coord", {"Variable", "Queue", "Event", "Lock",
  "Semaphore"})

--- dlua.display(v [, opts]): rich output in a Jupyter notebook, pretty
-- text elsewhere (lua/dlua/display.lua, loaded on first use; a tail call,
-- so its errors still point at the caller's line).
function M.display(v, opts)
  return require("dlua.display").display(v, opts)
end

--- dlua.performance_report(filename [, fn] [, opts]): a self-contained
-- HTML record of the work done in fn, or until the returned object closes
-- (lua/dlua/report.lua).
function M.performance_report(filename, fn, opts)
  return require("dlua.report").performance_report(filename, fn, opts, M)
end

--- dlua.SSHCluster{hosts = {...}, ...}: a scheduler and workers started
-- on other hosts through ssh (lua/dlua/ssh.lua, loaded on first use; a
-- tail call, so its errors point at the caller's line).
function M.SSHCluster(o)
  return require("dlua.ssh").SSHCluster(o)
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

-- Collections, loaded on first use (dlua.ndarray, dlua.array, dlua.bag,
-- dlua.csv): a script that never touches them does not pay for loading them.
local lazy = {ndarray = "dlua.ndarray", array = "dlua.array", bag = "dlua.bag",
              csv = "dlua.csv", frame = "dlua.frame",
              dataframe = "dlua.dataframe"}
setmetatable(M, {__index = function (t, k)
  local name = lazy[k]
  if not name then return nil end
  local mod = require(name)
  rawset(t, k, mod)
  return mod
end})

return M

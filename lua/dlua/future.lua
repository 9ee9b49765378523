--[[
dlua.future -- futures (the "dlua.Future" metatable of the C module
dlua.cluster), their methods, and the errors a wait raises (TaskError,
TimeoutError).  A future is a small userdata (f.key, f.client); its state
(status, inline result, error record) has one owner, the C table of
futures of its cluster handle (runtime/client/dl_client.h), read here
through cluster.fstatus, fvalue, ferror.  Re-exported by dlua.
]]

local core = require "dlua.core"
local cluster_c = require "dlua.cluster"
local options = require "dlua.options"

local error, pairs, setmetatable, getmetatable, type, rawget =
  error, pairs, setmetatable, getmetatable, type, rawget
local fmt = string.format
local clock = core.time
local check_timeout = options.check_timeout

local M = {}

-- -------------------------------------------------------------- errors

local TaskError = {__name = "dlua.TaskError"}
TaskError.__index = TaskError
TaskError.__tostring = function(e)
  local s = e.message or "task failed"
  if e.key then s = fmt("task '%s' failed: %s", e.key, s) end
  if e.where then s = e.where .. ": " .. s end
  if e.worker then s = s .. " (on " .. e.worker .. ")" end
  if e.traceback then s = s .. "\nremote " .. e.traceback end
  return s
end
M.TaskError = TaskError

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error

local function is_task_error(v) return getmetatable(v) == TaskError end
M.is_task_error = is_task_error

-- ------------------------------------------------------------- futures

local Future = cluster_c.Future   -- registered metatable "dlua.Future"
local FutureMethods = cluster_c.FutureMethods -- its __index falls back here
local fstatus, fvalue, ferror = cluster_c.fstatus, cluster_c.fvalue,
  cluster_c.ferror

-- A new future of key for client (its record counted in C).
local function new_future(client, key)
  return client.handle:future(key, client)
end

-- local f <close> = client:submit(...) releases f at the end of its scope.
Future.__close = function(f) FutureMethods.release(f) end

Future.__tostring = function(f)
  if not f.client.handle:closed() then f.client:_pump(0) end
  return fmt("<Future: %s, key: %s>", fstatus(f) or "released", f.key)
end

-- The status of f, raising (at level 3) for a non-future, a released
-- future or a closed client.
local function status_of(f, lv)
  lv = lv or 3
  if getmetatable(f) ~= Future then
    error(fmt("expects a future (call it as future:method()), got %s",
              getmetatable(f) and getmetatable(f).__name or type(f)), lv)
  end
  local s, why = fstatus(f)
  if not s then
    if why == "closed" or f.client.closed then
      error("client is closed", lv)
    end
    error("future '" .. f.key .. "' was released", lv)
  end
  return s
end

-- The state of f as a table (for errors and wait): {status=, kind=,
-- message=, traceback=, worker=, errvalue=, has_value=, value=}.
local function state(f)
  local st = {status = status_of(f, 4)}
  if st.status == "finished" then
    st.has_value, st.value = fvalue(f)
  elseif st.status ~= "pending" then
    st.kind, st.message, st.traceback, st.worker, st.errvalue = ferror(f)
  end
  return st
end

-- Wait until pred(arg) is true or the deadline passes; returns pred(arg).
-- hint (a key, or a gather's request id): what pred waits for, so that a
-- task waiting on the tasks' client is woken by that news only.  arg lets
-- a caller on a hot path pass a function made once instead of a closure
-- made per call (see result).
local function pump_until(client, pred, deadline, hint, arg)
  while not pred(arg) do
    local left = deadline and (deadline - clock()) or -1
    if deadline and left <= 0 then return false end
    client:_pump(left, hint)
  end
  return true
end

--- future:done() -> true when finished, erred or cancelled
function FutureMethods:done()
  status_of(self)
  if not self.client.closed then self.client:_pump(0) end
  return status_of(self) ~= "pending"
end

--- future:status() -> "pending" | "finished" | "error" | "cancelled" | "lost"
function FutureMethods:status()
  status_of(self)
  if not self.client.closed then self.client:_pump(0) end
  return status_of(self)
end


local TimeoutError = {__name = "dlua.TimeoutError"}
TimeoutError.__tostring = function(e) return e.message end
M.TimeoutError = TimeoutError

local function timeout_error(msg)
  return setmetatable({message = msg, kind = "timeout"}, TimeoutError)
end

-- Is future f done?  Made once: result() runs per call, and what a round
-- trip leaves behind sets how often the client's collector runs (each
-- run a slow round; see result).
local function is_done(f) return (fstatus(f) or "gone") ~= "pending" end

-- Wait until f is done; its state table (see state) unless nostate.
local function wait_done(f, timeout, what, nostate)
  check_timeout(timeout, what, 3)
  status_of(f)
  if not pump_until(f.client, is_done, timeout and clock() + timeout, f.key,
                    f) then
    error(timeout_error(fmt("%s: future '%s' not done after %gs", what,
                            f.key, timeout)), 3)
  end
  if not nostate then return state(f) end
end

-- The TaskError of a failed task.  When the task raised a table, the
-- table (a copy made on the worker) is `value`, and its fields that do not
-- clash with a TaskError's own are copied in, so err.code reads as it
-- would on the table.
local function make_error(key, st)
  local e = {
    key = key, kind = st.kind, message = st.message,
    traceback = st.traceback, worker = st.worker, value = st.errvalue,
  }
  if type(st.errvalue) == "table" then
    for k, v in pairs(st.errvalue) do
      if e[k] == nil and k ~= "where" then e[k] = v end
    end
  end
  return setmetatable(e, TaskError)
end

-- The first frame from `level` up (as for error(), counted from the
-- caller) that is user code, not dlua's own modules: "file:line".
local function user_where(level)
  level = level + 1
  while true do
    local info = debug.getinfo(level, "Sl")
    if not info then return nil end
    if info.what ~= "C" and info.currentline > 0
       and not info.short_src:find("^%[dlua%]") then
      return info.short_src .. ":" .. info.currentline
    end
    level = level + 1
  end
end

-- Raise the TaskError e at level (as for error(), counted from the
-- caller), marked with the user's line that waited for it, so that an
-- error ending a script shows that line, then the remote traceback.
local function raise_task_error(e, level)
  if rawget(e, "where") == nil then e.where = user_where(level + 1) end
  error(e, level + 1)
end

--- future:exception([timeout]) -> the error (a dlua.TaskError) or nil
function FutureMethods:exception(timeout)
  local st = wait_done(self, timeout, "exception")
  if st.status == "finished" then return nil end
  return make_error(self.key, st)
end

--- future:traceback([timeout]) -> the remote traceback string or nil
function FutureMethods:traceback(timeout)
  local st = wait_done(self, timeout, "traceback")
  return st.traceback
end

--- future:result([timeout]) -> value; raises the task's error
function FutureMethods:result(timeout)
  if getmetatable(self) ~= Future then
    error("result: expects a future (call it as future:result()), got "
          .. type(self), 2)
  end
  if self.client.closed then error("result: client is closed", 2) end
  wait_done(self, timeout, "result", true)
  -- A value that came inline is returned as it is, without the tables of
  -- _gather_values: a submit(...):result() round trip then leaves about
  -- 90 bytes of garbage instead of 480 (the future and its key), so the
  -- client's collection (a slow round, 100+ us, and a burst of releases
  -- in the round after it) comes about a fifth as often.
  if fstatus(self) == "finished" then
    local has, v = fvalue(self)
    if has then return v end
  end
  return self.client:_gather_values({self}, timeout, "result")[1]
end

--- future:cancel(): stop the task (interrupting it if it is running).
-- As in Dask, a finished future is cancelled too: its value is dropped
-- here and result() raises; the tasks that depend on a cancelled one are
-- cancelled with it (the scheduler tells us).  Done callbacks run at the
-- next client call that waits.
function FutureMethods:cancel()
  local s = status_of(self)
  if s == "cancelled" then return end
  local c = self.client
  if s == "pending" or s == "finished" then
    c.handle:cancel(self.key)
    c.handle:flush()
  end
  cluster_c.fcancel(self)
end

--- future:add_done_callback(fn): fn(future) runs when the future is done
-- (during a later call that waits, or at once if it is done already).
function FutureMethods:add_done_callback(fn)
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    error("add_done_callback expects a function, got " .. type(fn), 2)
  end
  if status_of(self) ~= "pending" then
    fn(self)
  else
    local cbs = self.client._cbs
    local list = cbs[self.key]
    if not list then list = {}; cbs[self.key] = list end
    list[#list + 1] = {fn, self}
    cluster_c.fcallbacks(self)
  end
end

--- future:release(): drop this future now (otherwise garbage collection does)
function FutureMethods:release()
  cluster_c.frelease(self)
end

M.Future = Future
local function is_future(v) return getmetatable(v) == Future end
M.is_future = is_future

-- For the client and dlua.wait.
M.methods, M.new, M.state, M.pump_until = FutureMethods, new_future, state,
  pump_until
M.status_of = status_of
M.make_error, M.raise_task_error, M.timeout_error = make_error,
  raise_task_error, timeout_error

return M

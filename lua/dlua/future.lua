--[[
dlua.future -- futures (the "dlua.Future" metatable of the C module
dlua.cluster), their methods, and the errors a wait raises (TaskError,
TimeoutError).  A future's state record lives in its client's _keys table,
under the future's key.  Re-exported by dlua.
]]

local core = require "dlua.core"
local cluster_c = require "dlua.cluster"
local options = require "dlua.options"

local error, pairs, setmetatable, getmetatable, type, rawget, rawset =
  error, pairs, setmetatable, getmetatable, type, rawget, rawset
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

local function is_task_error(v) return getmetatable(v) == TaskError end
M.is_task_error = is_task_error

-- ------------------------------------------------------------- futures

local Future = cluster_c.Future   -- registered metatable "dlua.Future"
Future.__name = "dlua.Future"
local FutureMethods = {}
Future.__index = FutureMethods


local function new_future(client, key)
  local f = setmetatable({key = key, client = client}, Future)
  local st = client._keys[key]
  if not st then
    st = {status = "pending", nfut = 0, callbacks = nil}
    client._keys[key] = st
  end
  st.nfut = st.nfut + 1
  return f
end

Future.__gc = function(f)
  local c = rawget(f, "client")
  if c and not rawget(f, "released") and not c.closed then
    local st = c._keys[f.key]
    if st then
      st.nfut = st.nfut - 1
      if st.nfut <= 0 then c._keys[f.key] = nil end
    end
    if not c.handle:closed() then c.handle:release(f.key) end
  end
end

-- local f <close> = client:submit(...) releases f at the end of its scope.
Future.__close = function(f) FutureMethods.release(f) end

Future.__tostring = function(f)
  if not f.client.handle:closed() then f.client:_pump(0) end
  local st = f.client._keys[f.key]
  return fmt("<Future: %s, key: %s>", st and st.status or "released", f.key)
end

local function state(f)
  if getmetatable(f) ~= Future then
    error(fmt("expects a future (call it as future:method()), got %s",
              getmetatable(f) and getmetatable(f).__name or type(f)), 3)
  end
  local st = f.client._keys[f.key]
  if not st then
    if f.client.closed then error("client is closed", 3) end
    error("future '" .. f.key .. "' was released", 3)
  end
  return st
end

-- Wait until pred() is true or the deadline passes; returns pred().
-- hint (a key, or a gather's request id): what pred waits for, so that a
-- task waiting on the tasks' client is woken by that news only.
local function pump_until(client, pred, deadline, hint)
  while not pred() do
    local left = deadline and (deadline - clock()) or -1
    if deadline and left <= 0 then return false end
    client:_pump(left, hint)
  end
  return true
end

--- future:done() -> true when finished, erred or cancelled
function FutureMethods:done()
  local st = state(self)
  if not self.client.closed then self.client:_pump(0) end
  return st.status ~= "pending"
end

--- future:status() -> "pending" | "finished" | "error" | "cancelled" | "lost"
function FutureMethods:status()
  local st = state(self)
  if not self.client.closed then self.client:_pump(0) end
  return st.status
end


local TimeoutError = {__name = "dlua.TimeoutError"}
TimeoutError.__tostring = function(e) return e.message end
M.TimeoutError = TimeoutError

local function timeout_error(msg)
  return setmetatable({message = msg, kind = "timeout"}, TimeoutError)
end

local function wait_done(f, timeout, what)
  check_timeout(timeout, what, 3)
  local st = state(f)
  local deadline = timeout and clock() + timeout
  if not pump_until(f.client, function() return st.status ~= "pending" end,
                    deadline, f.key) then
    error(timeout_error(fmt("%s: future '%s' not done after %gs", what,
                            f.key, timeout)), 3)
  end
  return st
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
  wait_done(self, timeout, "result")
  return self.client:_gather_values({self}, timeout, "result")[1]
end

--- future:cancel(): stop the task (interrupting it if it is running).
-- As in Dask, a finished future is cancelled too: its value is dropped
-- here and result() raises; the tasks that depend on a cancelled one are
-- cancelled with it (the scheduler tells us).  Done callbacks run at the
-- next client call that waits.
function FutureMethods:cancel()
  local st = state(self)
  if st.status == "cancelled" then return end
  local c = self.client
  if st.status == "pending" or st.status == "finished" then
    c.handle:cancel(self.key)
    c.handle:flush()
  end
  st.status, st.kind, st.message = "cancelled", "cancelled", "cancelled"
  st.has_value, st.value, st.traceback, st.errvalue = nil, nil, nil, nil
  if st.callbacks then c._fired[#c._fired + 1] = st end
end

--- future:add_done_callback(fn): fn(future) runs when the future is done
-- (during a later call that waits, or at once if it is done already).
function FutureMethods:add_done_callback(fn)
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    error("add_done_callback expects a function, got " .. type(fn), 2)
  end
  local st = state(self)
  if st.status ~= "pending" then
    fn(self)
  else
    st.callbacks = st.callbacks or {}
    st.callbacks[#st.callbacks + 1] = {fn, self}
  end
end

--- future:release(): drop this future now (otherwise garbage collection does)
function FutureMethods:release()
  if rawget(self, "released") then return end
  Future.__gc(self)
  rawset(self, "released", true)
end

M.Future = Future
local function is_future(v) return getmetatable(v) == Future end
M.is_future = is_future

-- For the client and dlua.wait.
M.methods, M.new, M.state, M.pump_until = FutureMethods, new_future, state,
  pump_until
M.make_error, M.raise_task_error, M.timeout_error = make_error,
  raise_task_error, timeout_error

return M

--[[
dlua.wait -- dlua.wait (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION)
and dlua.as_completed.  Re-exported by dlua.
]]

local core = require "dlua.core"
local options = require "dlua.options"
local future = require "dlua.future"

local fmt = string.format
local clock = core.time
local check_keys, check_timeout = options._check_keys, options.check_timeout
local status_of = future.status_of
local is_future, state, make_error = future.is_future, future.state,
  future.make_error
local pump_until, timeout_error = future.pump_until, future.timeout_error
local FutureMethods = future.methods

local M = {}

-- ------------------------------------------------------ wait, completed

M.ALL_COMPLETED = "ALL_COMPLETED"
M.FIRST_COMPLETED = "FIRST_COMPLETED"
M.FIRST_EXCEPTION = "FIRST_EXCEPTION"

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error

--- dlua.wait(futures [, {timeout=, return_when=}]) -> done, not_done
-- Both results are arrays of futures.  Raises a dlua.TimeoutError if the
-- condition is not met in time.
function M.wait(futs, o)
  if is_future(futs) then futs = {futs} end
  if type(futs) ~= "table" then
    error("wait expects a future or an array of futures", 2)
  end
  if o ~= nil and type(o) ~= "table" then
    error("wait: options must be a table {timeout=, return_when=}, got "
          .. type(o), 2)
  end
  o = o or {}
  check_keys(o, {timeout = true, return_when = true}, "wait", 2)
  check_timeout(o.timeout, "wait")
  local when = o.return_when or M.ALL_COMPLETED
  if when ~= M.ALL_COMPLETED and when ~= M.FIRST_COMPLETED
     and when ~= M.FIRST_EXCEPTION then
    error("wait: return_when must be ALL_COMPLETED, FIRST_COMPLETED or "
          .. "FIRST_EXCEPTION, got " .. tostring(when), 2)
  end
  if #futs == 0 then return {}, {} end
  local client = futs[1].client
  local function split()
    local done, pending, erred = {}, {}, false
    for _, f in ipairs(futs) do
      local s = status_of(f)
      if s == "pending" then pending[#pending + 1] = f
      else
        done[#done + 1] = f
        if s ~= "finished" then erred = true end
      end
    end
    return done, pending, erred
  end
  local deadline = o.timeout and clock() + o.timeout
  local ok = pump_until(client, function()
    local done, pending, erred = split()
    if #pending == 0 then return true end
    if when == M.FIRST_COMPLETED then return #done > 0 end
    if when == M.FIRST_EXCEPTION then return erred end
    return false
  end, deadline)
  if not ok then
    error(timeout_error(fmt("wait: not done after %gs", o.timeout)), 2)
  end
  local done, pending = split()
  return done, pending
end

-- ------------------------------------------------------- as_completed

local AsCompleted = {__name = "dlua.as_completed"}
AsCompleted.__index = AsCompleted

local ac_opts = {timeout = true, with_results = true}

-- A future is done: queue it (each one once, however often it is added).
local function ac_ready(self, f)
  local t = self._tail + 1
  self._q[t] = f
  self._tail = t
  self._npending = self._npending - 1
end

--- ac:add(future): yield this future too when it is done.
function AsCompleted:add(f)
  if not is_future(f) then
    error("as_completed: add expects a future, got " ..
          (getmetatable(f) and getmetatable(f).__name or type(f)), 2)
  end
  local c = f.client
  if self._client and c ~= self._client then
    error("as_completed: the futures must belong to one client", 2)
  end
  self._client = c
  self._npending = self._npending + 1
  self._all[#self._all + 1] = f
  local me = self
  status_of(f) -- raises if released
  FutureMethods.add_done_callback(f, function(g) ac_ready(me, g) end)
end

--- ac:update(futures): add each future of an array.
function AsCompleted:update(futs)
  if type(futs) ~= "table" then
    error("as_completed: update expects an array of futures, got "
          .. type(futs), 2)
  end
  for i, f in ipairs(futs) do
    if not is_future(f) then
      error(fmt("as_completed: element %d is not a future", i), 2)
    end
    self:add(f)
  end
end

--- ac:count() -> futures added and not yet yielded
function AsCompleted:count()
  return self._npending + (self._tail - self._head + 1)
end

--- ac:is_empty() -> true when every future added was yielded
function AsCompleted:is_empty() return self:count() == 0 end

--- ac:has_ready() -> true when a done future waits to be yielded
function AsCompleted:has_ready()
  local c = self._client
  if c and not c.closed then c:_pump(0) end
  return self._tail >= self._head
end

-- Wait until a done future is queued (true) or none is pending (false).
local function ac_wait(self, level)
  local c = self._client
  while self._tail < self._head do
    if self._npending <= 0 then return false end
    if c.handle:nfired() > 0 then
      c:_pump(0) -- run callbacks queued locally (e.g. by cancel)
    else
      local left = self._deadline and self._deadline - clock() or -1
      if self._deadline and left <= 0 then
        error(timeout_error(fmt("as_completed: %d futures not done after %gs",
                                self._npending, self._timeout)), level + 1)
      end
      c:_pump(left)
    end
  end
  return true
end

local function ac_pop(self)
  local h = self._head
  local f = self._q[h]
  self._q[h] = nil
  self._head = h + 1
  return f
end

-- for f, value, err in ac do ... end
AsCompleted.__call = function(self)
  if not ac_wait(self, 2) then return nil end
  local f = ac_pop(self)
  local st = state(f)
  if st.status ~= "finished" then return f, nil, make_error(f.key, st) end
  if not self._with_results then return f end
  if st.has_value then return f, st.value end -- it came with the news
  local ok, v = pcall(f.result, f)
  if ok then return f, v end
  return f, nil, v
end

--- ac:next_batch([block]) -> array of the done futures queued now
-- (waiting for one if block is not false; {} if none).
function AsCompleted:next_batch(block)
  local out = {}
  if block ~= false then
    if not ac_wait(self, 2) then return out end
  elseif self._client then
    self._client:_pump(0)
  end
  while self._tail >= self._head do out[#out + 1] = ac_pop(self) end
  return out
end

--- for batch in ac:batches() do ... end: arrays of done futures, each
-- holding all that were done at that moment.
function AsCompleted:batches()
  return function()
    local b = self:next_batch(true)
    if #b > 0 then return b end
    return nil
  end
end

AsCompleted.__tostring = function(self)
  return fmt("<as_completed: %d waiting>", self:count())
end

--- dlua.as_completed(futures [, {timeout=, with_results=}]) -> iterator
--   for future, value, err in dlua.as_completed(futures) do ... end
-- Yields futures in the order they finish, with the value (or nil and the
-- error for a failed task); with_results = false yields the futures only.
-- The object also has :add(f), :update(fs), :batches(), :next_batch(),
-- :count(), :is_empty() and :has_ready(), and dlua.progress accepts it.
-- Each future costs O(1): it is queued by a done callback.
function M.as_completed(futs, o)
  if futs ~= nil and type(futs) ~= "table" then
    error("as_completed expects an array of futures, got " .. type(futs), 2)
  end
  if o ~= nil and type(o) ~= "table" then
    error("as_completed: options must be a table, got " .. type(o), 2)
  end
  o = o or {}
  check_keys(o, ac_opts, "as_completed", 2)
  check_timeout(o.timeout, "as_completed")
  local self = setmetatable({
    _q = {}, _head = 1, _tail = 0, _npending = 0, _all = {},
    _timeout = o.timeout, _deadline = o.timeout and clock() + o.timeout,
    _with_results = o.with_results ~= false,
  }, AsCompleted)
  for i, f in ipairs(futs or {}) do
    if not is_future(f) then
      error(fmt("as_completed: element %d is not a future", i), 2)
    end
    if self._client and f.client ~= self._client then
      error("as_completed: the futures must belong to one client", 2)
    end
    self:add(f)
  end
  return self
end

--- dlua.is_as_completed(v) -> true for an object made by dlua.as_completed
function M.is_as_completed(v) return getmetatable(v) == AsCompleted end


return M

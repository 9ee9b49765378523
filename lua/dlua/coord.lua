-- dlua.coord: named coordination primitives living on the scheduler --
-- Variable, Queue, Event, Lock, Semaphore (runtime/sched/dl_coord.c).
-- Usable from the client and from tasks; shared by name (as in Dask: two
-- objects of the same kind and name are the same primitive).  Every wait
-- takes a timeout; inside a task, a wait gives the task's slot back.
-- The objects are plain tables with registered metatables, so they travel
-- to tasks as arguments or upvalues (by name).
local codec = require "dlua.codec"
local future = require "dlua.future"
local cluster_c = require "dlua.cluster"

local error, getmetatable, setmetatable, tostring, type, next, pcall, ipairs,
  rawget =
  error, getmetatable, setmetatable, tostring, type, next, pcall, ipairs,
  rawget
local fmt, unpack_bytes = string.format, string.unpack
local math_type, huge = math.type, math.huge

-- Operations (dl_coord.h).
local VAR_SET, VAR_GET, VAR_DEL = 1, 2, 3
local Q_PUT, Q_GET, Q_GET_ALL, Q_SIZE = 4, 5, 6, 7
local EV_SET, EV_CLEAR, EV_WAIT, EV_IS_SET = 8, 9, 10, 11
local SEM_ACQ, SEM_REL = 12, 13
local Q_PUSH, WITHDRAW = 15, 16
local OK, TIMEOUT, ERROR, FUTURE, FLIST = 0, 1, 2, 3, 4
local FUTURE_KEY = 1 -- the lease field of a set or put: bytes is a key
local LIST_FUTURE = 0x80000000 -- a list item's length flag: a key

-- Lease ids, unique in this process (a worker's tasks share its link).
local next_lease = 0

-- The client each object was made with, if one was given (kept out of
-- the object, so that the object travels by name).
local clients = setmetatable({}, {__mode = "k"})

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error

local function client_of(obj)
  local c = clients[obj]
  if c and not c.closed then return c end
  return require("dlua").get_client()
end

-- The items of a list answer (4-byte lengths, then bytes; a length with
-- its top bit set is a future's key): fn(bytes, is_key) for each.
local function each_item(bytes, fn)
  local pos = 1
  while pos <= #bytes do
    local n = unpack_bytes("<I4", bytes, pos)
    local fut = n >= LIST_FUTURE
    if fut then n = n - LIST_FUTURE end
    fn(bytes:sub(pos + 4, pos + 3 + n), fut)
    pos = pos + 4 + n
  end
end

-- An answer as it comes (client.lua's on_data; must not poll): a future's
-- key becomes a future at once, so that the news of its key that follows
-- the answer finds it.  Returns the bytes, a future, or (a list with
-- futures) a table of bytes and futures.
local function convert(c, status, bytes)
  if status == FUTURE then return future.new(c, bytes) end
  if status == FLIST then
    local out = {}
    each_item(bytes, function(b, fut)
      out[#out + 1] = fut and future.new(c, b) or b
    end)
    return out
  end
  return bytes
end

-- An answer whose request was given up (an interrupted wait): the futures
-- it gave this client are released.
local function orphan(c, status, bytes)
  -- A handle made and released at once sends the one release the
  -- scheduler counted for this answer (a handle per release, as ever).
  if status == FUTURE then
    future.new(c, bytes):release()
  elseif status == FLIST then
    each_item(bytes, function(b, fut)
      if fut then future.new(c, b):release() end
    end)
  end
end

-- A request in flight, closed when its wait ends: a wait that ends
-- without its answer (Ctrl-C, the task's timeout, or its cancel, which
-- closes the task's coroutine) withdraws the request, so that the
-- scheduler does not serve a waiter that is gone (a put swallowed, a
-- lease granted to nobody).
local Pending = {}
Pending.__close = function(req)
  local c = req.c
  if c._reqs[req.id] == req then c._reqs[req.id] = nil end
  if req.n > 0 and not c.closed and not c.handle:closed() then
    c.handle:coord(req.id, WITHDRAW, req.name, 0, req.op, req.lease)
  end
end

-- Send one request and wait for its answer (the scheduler answers every
-- request, at the latest when its timeout passes).  Returns status, bytes
-- (or what convert made of them).
local function request(obj, op, timeout, n, lease, bytes)
  local c = client_of(obj)
  c._nextreq = c._nextreq + 1
  local reqid = c._nextreq
  local tmo = 0 -- no limit; else 1 + milliseconds
  if timeout and timeout ~= huge then
    tmo = 1 + math.floor(timeout * 1000 + 0.5)
  end
  local mt = getmetatable(obj)
  local name = (mt.prefix or "") .. obj.name
  local req <close> = setmetatable({coord = convert, n = 1, c = c,
                                    id = reqid, name = name, op = op,
                                    lease = lease or 0}, Pending)
  c._reqs[reqid] = req
  c.handle:coord(reqid, op, name, tmo, n or 0, lease or 0, bytes)
  while req.n > 0 do c:_pump(-1, reqid) end
  if req.status == ERROR then
    error(fmt("%s '%s': %s", mt.__name, obj.name, tostring(req.value)), 3)
  end
  return req.status, req.value
end

-- Send one request that is never answered (Q_PUSH).
local function send(obj, op, n, bytes)
  local c = client_of(obj)
  c.handle:coord(0, op, obj.name, 0, n or 0, 0, bytes)
  return c
end

local function check_name(name, what)
  if type(name) ~= "string" or name == "" then
    error(fmt("%s: expects a name (a non-empty string), got %s", what,
              type(name) == "string" and "an empty string" or type(name)), 3)
  end
end

-- Options: a table with only the keys known; returns it (or {}).
local function check_opts(o, known, what, level)
  if o == nil then return {} end
  if type(o) ~= "table" then
    error(fmt("%s: options must be a table, got %s", what, type(o)),
          level + 1)
  end
  for k in next, o do
    if not known[k] then
      error(fmt("%s: unknown option '%s'", what, tostring(k)), level + 1)
    end
  end
  return o
end

-- An integer option o[k] >= min (or absent): returns it, or dflt.
local function int_opt(o, k, min, dflt, what, level)
  local v = o[k]
  if v == nil then return dflt end
  if math_type(v) ~= "integer" or v < min then
    error(fmt("%s: %s must be a %s integer, got %s", what, k,
              min > 0 and "positive" or "non-negative", tostring(v)),
          level + 1)
  end
  return v
end

local function check_timeout(t, what, level)
  if t ~= nil and (type(t) ~= "number" or not (t >= 0)) then
    error(fmt("%s: timeout must be a non-negative number of seconds, got %s",
              what, type(t) == "number" and tostring(t) or type(t)),
          level + 1)
  end
  return t
end

local function timeout_error(msg)
  local dlua = require "dlua"
  return setmetatable({message = msg, kind = "timeout"}, dlua.TimeoutError)
end

-- Does table v hold a future (in a key or value, at any depth)?
local function has_future(v, seen)
  if seen[v] then return false end
  seen[v] = true
  for k, x in next, v do
    -- (futures are userdata: is_future first, then tables inside)
    if future.is_future(k) or type(k) == "table" and has_future(k, seen)
       or future.is_future(x) or type(x) == "table" and has_future(x, seen)
    then
      return true
    end
  end
  return false
end

-- A future to put: its key, after checks (same client, not released).
local function future_key(obj, f, what, level)
  local c = client_of(obj)
  if f.client ~= c then
    error(fmt("%s: the future belongs to another client than '%s'", what,
              obj.name), level + 1)
  end
  if cluster_c.freleased(f) then
    error(fmt("%s: the future was released", what), level + 1)
  end
  return f.key
end

local function encode(v, what, level)
  if type(v) == "table" and getmetatable(v) == nil and has_future(v, {}) then
    error(fmt("%s: a future inside a table cannot be shared (put the "
              .. "future itself)", what), level + 1)
  end
  local ok, bytes = pcall(codec.encode, v)
  if not ok then
    error(fmt("%s: the value cannot be sent: %s", what, tostring(bytes)),
          level + 1)
  end
  return bytes
end

-- A list answer (see convert): its values.
local function decode_list(x)
  local out = {}
  if type(x) == "table" then
    for i, b in ipairs(x) do
      out[i] = type(b) == "string" and codec.decode(b) or b
    end
  else
    each_item(x, function(b) out[#out + 1] = codec.decode(b) end)
  end
  return out
end

-- A single answer (see convert): its value.
local function decode_one(x)
  if type(x) == "string" then return codec.decode(x) end
  return x
end

-- Register a primitive's metatable, so that its objects travel by name.
local function kind(name)
  local mt = {__name = name}
  mt.__index = mt
  debug.getregistry()[name] = mt
  return mt
end

local function make(mt, name, client)
  local o = setmetatable({name = name}, mt)
  if client ~= nil then
    if getmetatable(client) ~= require("dlua").Client_class then
      error(fmt("%s: client must be a dlua.Client, got %s", mt.__name,
                type(client)), 3)
    end
    clients[o] = client
  end
  return o
end

local M = {_orphan = orphan}

-- ------------------------------------------------------------ Variable

local Variable = kind "dlua.Variable"
M.Variable_class = Variable

--- dlua.Variable(name [, client]) -> variable
function M.Variable(name, client)
  check_name(name, "Variable")
  return make(Variable, name, client)
end

--- variable:set(value): every reader sees value from now on.  A future
-- keeps its result alive while the variable holds it; get gives a future.
function Variable:set(v)
  if future.is_future(v) then
    request(self, VAR_SET, nil, 0, FUTURE_KEY,
            future_key(self, v, "Variable:set", 2))
  else
    request(self, VAR_SET, nil, 0, 0, encode(v, "Variable:set", 2))
  end
end

--- variable:get{timeout=} -> value; waits until the variable is set;
-- raises a dlua.TimeoutError after timeout seconds.
function Variable:get(o)
  o = check_opts(o, {timeout = true}, "Variable:get", 2)
  local t = check_timeout(o.timeout, "Variable:get", 2)
  local st, bytes = request(self, VAR_GET, t)
  if st == TIMEOUT then
    error(timeout_error(fmt("Variable:get: '%s' not set after %gs",
                            self.name, t)), 2)
  end
  return decode_one(bytes)
end

--- variable:delete(): unset it (get waits again).
function Variable:delete()
  request(self, VAR_DEL)
end

-- ------------------------------------------------------------- Queue

local Queue = kind "dlua.Queue"
M.Queue_class = Queue

--- dlua.Queue(name [, {maxsize=, client=}]) -> queue
-- maxsize (0: unbounded) is taken by the queue when its first item is
-- put; a put on a full queue waits.
function M.Queue(name, o)
  check_name(name, "Queue")
  o = check_opts(o, {maxsize = true, client = true}, "Queue", 2)
  local maxsize = int_opt(o, "maxsize", 0, 0, "Queue", 2)
  local q = make(Queue, name, o.client)
  q.maxsize = maxsize
  return q
end

--- queue:put(value [, {timeout=}]): append; waits while the queue is
-- full.  A value that cannot be sent is refused here, queue unchanged.
function Queue:put(v, o)
  o = check_opts(o, {timeout = true}, "Queue:put", 2)
  local t = check_timeout(o.timeout, "Queue:put", 2)
  local fut = future.is_future(v)
  local bytes = fut and future_key(self, v, "Queue:put", 2)
                or encode(v, "Queue:put", 2)
  local c = client_of(self)
  local unbounded = c._qunbounded
  if unbounded and unbounded[self.name] and not fut then
    -- The queue can never be full: no need to wait for the scheduler,
    -- which keeps this client's requests in order.
    send(self, Q_PUSH, self.maxsize, bytes)
    return
  end
  local st, r = request(self, Q_PUT, t, self.maxsize, fut and FUTURE_KEY
                        or 0, bytes)
  if st == TIMEOUT then
    error(timeout_error(fmt("Queue:put: '%s' still full after %gs",
                            self.name, t)), 2)
  end
  if r == "\0" then -- unbounded, for good (its first put decided)
    if not unbounded then unbounded = {}; c._qunbounded = unbounded end
    unbounded[self.name] = true
  end
end

--- queue:get{timeout=, batch=} -> value (or a table of values with
-- batch): waits for an item; batch = n waits for n items, batch = true
-- takes every item there is now (maybe none).  timeout = 0 on an empty
-- queue raises a dlua.TimeoutError at once.
function Queue:get(o)
  o = check_opts(o, {timeout = true, batch = true}, "Queue:get", 2)
  local t = check_timeout(o.timeout, "Queue:get", 2)
  local b = o.batch
  if b ~= nil and b ~= true and b ~= false and
     (math_type(b) ~= "integer" or b < 1) then
    error("Queue:get: batch must be true or a positive integer, got "
          .. tostring(b), 2)
  end
  if b == true then
    local _, bytes = request(self, Q_GET_ALL)
    return decode_list(bytes)
  end
  local n = b and b or 0
  local st, bytes = request(self, Q_GET, t, n)
  if st == TIMEOUT then
    error(timeout_error(fmt("Queue:get: '%s' empty after %gs", self.name,
                            t)), 2)
  end
  if n > 0 then return decode_list(bytes) end
  return decode_one(bytes)
end

--- queue:qsize() -> the number of items in the queue now
function Queue:qsize()
  local _, bytes = request(self, Q_SIZE)
  return (unpack_bytes("<i8", bytes))
end

-- ------------------------------------------------------------- Event

local Event = kind "dlua.Event"
M.Event_class = Event

--- dlua.Event(name [, client]) -> event
function M.Event(name, client)
  check_name(name, "Event")
  return make(Event, name, client)
end

--- event:set() / event:clear()
function Event:set() request(self, EV_SET) end
function Event:clear() request(self, EV_CLEAR) end

--- event:wait{timeout=} -> true once set, false after timeout seconds
function Event:wait(o)
  o = check_opts(o, {timeout = true}, "Event:wait", 2)
  local t = check_timeout(o.timeout, "Event:wait", 2)
  return (request(self, EV_WAIT, t)) == OK
end

--- event:is_set() -> boolean
function Event:is_set()
  local _, bytes = request(self, EV_IS_SET)
  return bytes == "\1"
end

-- ------------------------------------------------- Semaphore and Lock

local Semaphore = kind "dlua.Semaphore"
M.Semaphore_class = Semaphore
local Lock = kind "dlua.Lock"
Lock.prefix = "lock\0" -- a Lock and a Semaphore of one name are not one
M.Lock_class = Lock

-- The leases an object holds (by object, in this process).
local held = setmetatable({}, {__mode = "k"})

local function acquire(self, o, what)
  o = check_opts(o, {timeout = true}, what, 3)
  local t = check_timeout(o.timeout, what, 3)
  next_lease = next_lease + 1
  local id = next_lease
  local st = request(self, SEM_ACQ, t, self.max_leases or 1, id)
  if st == TIMEOUT then return false end
  local h = held[self]
  if not h then h = {}; held[self] = h end
  h[#h + 1] = id
  return true
end

local function release(self, what)
  local h = held[self]
  if not h or #h == 0 then
    error(fmt("%s: '%s' released more times than acquired", what,
              self.name), 3)
  end
  local id = h[#h]
  h[#h] = nil
  request(self, SEM_REL, nil, 0, id)
end

-- A Lock is a Semaphore of one lease under its own names: one set of
-- lease methods serves both kinds.
for mt, what in next, {[Semaphore] = "Semaphore", [Lock] = "Lock"} do
  --- semaphore:acquire{timeout=} / lock:acquire{timeout=} -> true, or
  -- false after timeout seconds
  mt.acquire = function(self, o) return acquire(self, o, what .. ":acquire")
  end
  --- semaphore:release() / lock:release(): give back the last lease this
  -- object took; an error if it holds none
  mt.release = function(self) release(self, what .. ":release") end
  --- local s <close> = semaphore (or lock): its leases are released at
  -- scope end
  mt.__close = function(self)
    local h = held[self]
    while h and #h > 0 do release(self, "close") end
  end
end

--- dlua.Semaphore(name [, {max_leases=, client=}]) -> semaphore
-- At most max_leases (default 1) holders at once; the first use sets it.
function M.Semaphore(name, o)
  check_name(name, "Semaphore")
  o = check_opts(o, {max_leases = true, client = true}, "Semaphore", 2)
  local max = int_opt(o, "max_leases", 1, 1, "Semaphore", 2)
  local s = make(Semaphore, name, o.client)
  s.max_leases = max
  return s
end

--- dlua.Lock(name [, client]) -> lock (one holder at a time)
function M.Lock(name, client)
  check_name(name, "Lock")
  return make(Lock, name, client)
end

--- lock:locked() -> true while this object holds the lock
function Lock:locked() return held[self] ~= nil and #held[self] > 0 end

return M

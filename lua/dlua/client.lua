--[[
dlua.client -- dlua.Client: submit, map, gather, scatter, cancel, compute,
and the pump that takes in what the scheduler thread sent.  Re-exported
by dlua.
]]

local core = require "dlua.core"
local cluster_c = require "dlua.cluster"
local options = require "dlua.options"
local keys = require "dlua.keys"
local future = require "dlua.future"
local localcluster = require "dlua.localcluster"

local error, ipairs, pairs, select, setmetatable, getmetatable, tostring, type,
  next, rawget =
  error, ipairs, pairs, select, setmetatable, getmetatable, tostring, type,
  next, rawget
local fmt, unpack, huge = string.format, table.unpack, math.huge
local clock = core.time
local check_keys, check_timeout = options._check_keys, options.check_timeout
local is_opts, looks_like_opts = options.is_opts, options.looks_like_opts
local opts_text, split_opts = options.opts_text, options.split_opts
local fn_name = keys.name

-- The stem of a prefix's fresh keys (keys.stem): the last one is kept,
-- so a loop of submits of one function makes it once (a cache of every
-- prefix would grow with names made per task).
local last_prefix, last_stem
local function stem_of(prefix)
  if prefix ~= last_prefix then
    last_prefix, last_stem = prefix, keys.stem(prefix)
  end
  return last_stem
end
local Future, is_future, new_future = future.Future, future.is_future,
  future.new
local TaskError, make_error = future.TaskError, future.make_error
local raise_task_error, timeout_error = future.raise_task_error,
  future.timeout_error
local pump_until = future.pump_until
local fstatus, fvalue, fstate = cluster_c.fstatus, cluster_c.fvalue,
  future.state
local LocalCluster = localcluster.LocalCluster_class
local remote = require "dlua.remote"
local new_cluster, cluster_text = localcluster.new_cluster,
  localcluster.cluster_text

local M = {}

local Client = {__name = "dlua.Client"}
Client.__index = Client

local default_client
local make_client
-- Clients not closed yet, for dlua.sleep and the REPL's prompt.
local open_clients = setmetatable({}, {__mode = "k"})

-- Key prefixes: a function's name where one can be found.
-- -------------------------------------------------------------- client

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error

--- dlua.Client([cluster | options]) -> client
-- With no argument (or a table of LocalCluster options) starts a
-- LocalCluster that the client owns and closes; with a cluster, attaches.
-- With a dlua.SSHCluster, joins its scheduler.
-- With no argument and DLUA_SCHEDULER_FILE set (as `dlua run` sets it),
-- joins the scheduler that file names (token from DLUA_TOKEN_FILE).
function M.Client(arg)
  local cl, owns
  if getmetatable(arg) == LocalCluster then
    cl = arg
  elseif remote.is_remote(arg) then -- a `dlua scheduler` elsewhere
    cl, owns = remote.connect(arg, 3), true
  elseif getmetatable(arg) and getmetatable(arg).__name == "dlua.SSHCluster"
  then -- its scheduler; the cluster stays until cluster:close()
    cl, owns = remote.connect({address = arg.address,
                               token_file = arg.token_file,
                               tls_dir = arg.tls_dir}, 3), true
  elseif arg == nil and os.getenv("DLUA_SCHEDULER_FILE") then -- dlua run
    cl, owns = remote.connect({
      scheduler_file = os.getenv("DLUA_SCHEDULER_FILE"),
      token_file = os.getenv("DLUA_TOKEN_FILE")}, 3), true
  elseif arg == nil or type(arg) == "table" then
    cl, owns = new_cluster(arg, 3), true
  else
    error("Client expects a LocalCluster, a \"tcp://host:port\" address or "
          .. "a table of options, got " .. type(arg), 2)
  end
  local c = make_client(cl, cl.handle, owns)
  default_client = c
  open_clients[c] = true
  return c
end

-- A client over handle (a cluster's, or the tasks' client of a worker).
function make_client(cl, handle, owns)
  local c = setmetatable({
    cluster = cl, handle = handle, owns_cluster = owns,
    dashboard_link = cl and cl.dashboard_link,
    _cbs = {}, _reqs = {}, _nextreq = 0,
  }, Client)
  local function on_data(reqid, key, found, value)
    local req = c._reqs[reqid]
    if req and req.coord then -- a Variable, Queue... answer (coord.lua)
      req.status, req.value, req.n = found, req.coord(c, found, value), 0
    elseif key == nil and found then -- an answer nobody waits for now
      require("dlua.coord")._orphan(c, found, value)
    elseif req then
      req.n = req.n - 1
      if found then
        req.values[key] = value
      else
        req.missing[#req.missing + 1] = key
        if value then req.errors[key] = value end
      end
    end
  end
  c._on_data = on_data
  return c
end

-- The tasks' client of this worker, made by the first get_client.
local task_client

--- dlua.get_client() -> client
-- Inside a task: a client of the task's own scheduler, over the worker's
-- link (one for all the worker's tasks; closing it does nothing).  A task
-- that waits on it (result, gather, wait...) gives its worker slot back
-- until the values come.  Elsewhere: the default client.
function M.get_client()
  local link = cluster_c.task_link()
  if link then
    if not task_client then
      task_client = make_client(nil, link, false)
      task_client._task = true
    end
    return task_client
  end
  local c = M.default_client()
  if not c then
    error("get_client: no client: start one with dlua.Client() (inside a "
          .. "task, get_client returns a client of the task's scheduler)", 2)
  end
  return c
end

-- Take in what every open client's scheduler has sent, and run due
-- done-callbacks.  [-0, +0]
local function pump_all()
  for c in pairs(open_clients) do
    if c.handle:closed() then open_clients[c] = nil else c:_pump(0) end
  end
end

--- dlua.sleep(seconds): sleep without spinning; results that come
-- meanwhile are taken in and done-callbacks run as they become due.
-- Ctrl-C interrupts it ("interrupted!").
function M.sleep(s)
  if type(s) ~= "number" or s < 0 or s ~= s then
    error(fmt("sleep: expects a non-negative number of seconds, got %s",
              type(s) == "number" and tostring(s) or type(s)), 2)
  end
  local link = cluster_c.task_link()
  if link and link:park_sleep(s) then return end -- the slot is given back
  local deadline = clock() + s
  -- In a task, wake every 50 ms so that a cancel or timeout (a Lua hook
  -- set by the worker) can stop the task.
  local slice = cluster_c.in_worker() and 0.05 or huge
  repeat
    local seq = cluster_c.wake_seq()
    pump_all()
    local left = deadline - clock()
    if left <= 0 then break end
    local ok, err = cluster_c.idle(seq, math.min(left, slice))
    if ok == nil then error(err, 0) end
  until false
end

-- The REPL calls this before each prompt (runtime/dl_repl.c): hand over
-- releases, take in results, run due done-callbacks.
function M._at_prompt()
  pump_all()
end

--- dlua.default_client() -> the most recent open client, or nil
function M.default_client()
  if default_client and default_client.handle:closed() then
    default_client = nil
  end
  if not default_client and cluster_c.task_link() then
    return M.get_client()
  end
  return default_client
end

-- Take the scheduler's messages, waiting up to timeout seconds (negative:
-- until at least one batch comes), then run fired done-callbacks.  The
-- scheduler's thread has put them in the cluster's inbox as they came
-- (background progress); a finished or failed task sets its record in the
-- handle's C table of futures, which lists it as fired if callbacks wait.
-- Ctrl-C ends the wait with the error "interrupted!" (no message is lost).
function Client:_pump(timeout, hint)
  local n, err, why = self.handle:poll(timeout or -1, self._on_data, hint)
  if not n then
    if why == "interrupted" then error(err, 0) end
    error("dlua: " .. err, 3)
  end
  local fired = self.handle:fired()
  if fired then
    local all = self._cbs
    for _, key in ipairs(fired) do
      local cbs = all[key]
      all[key] = nil
      for _, cb in ipairs(cbs or {}) do cb[1](cb[2]) end
    end
  end
  return n
end

-- Whether mt (a metatable or nil) makes its value callable.  (No
-- `(mt or {}).__call`: submit runs this per task, and that makes a table.)
local function callable_mt(mt)
  return type(mt) == "table" and mt.__call ~= nil
end

local function check_fn(fn, what)
  if type(fn) ~= "function" and not callable_mt(getmetatable(fn)) then
    error(fmt("%s: first argument must be a function, got %s", what,
              type(fn)), 3)
  end
end

-- The scheduler's view of an options table, made once per options table
-- (map submits thousands of tasks with one).
local spec_cache = setmetatable({}, {__mode = "k"})
local plain_spec = {}
local function spec_for(opts)
  if not opts then return plain_spec end
  local spec = spec_cache[opts]
  if not spec then
    local per_task = opts.key or opts.order -- e.g. from delayed: no reuse
    spec = {
      priority = opts.priority and math.floor(opts.priority),
      order = opts.order and math.floor(opts.order),
      retries = opts.retries and math.floor(opts.retries),
      timeout_ms = opts.timeout and math.floor(opts.timeout * 1000),
      workers = opts.workers,
      allow_other = opts.allow_other_workers,
    }
    if not per_task then spec_cache[opts] = spec end
  end
  return spec
end

-- Queue one task; returns its future.  name: the key prefix when opts
-- has none (nil: fn's name).
function Client:_submit(opts, fn, n, ...)
  return self:_submit_named(nil, opts, fn, n, ...)
end

-- As _submit; submit passes the name it found, so that a call without
-- options makes no table (client:submit's garbage is per task).
function Client:_submit_named(name, opts, fn, n, ...)
  local key = opts and opts.key
  local spec = spec_for(opts)
  if not key then
    local prefix = (opts and opts.name) or name or fn_name(fn)
    if not (opts and opts.pure) then -- keys.fresh's key, made in C
      return self.handle:submit_fresh(spec, self, stem_of(prefix),
                                      keys.reserve(1), fn, ...)
    end
    key = keys.pure(prefix, {fn, n, ...})
  end
  spec.key = key -- read at once by submit; the spec is reused
  self.handle:submit(spec, fn, ...)
  return new_future(self, key)
end

-- Queue one task of a graph without sending it yet (dlua.delayed): spec
-- is {key =, order =}, read at once, so the caller may reuse it.  The
-- tasks leave in batches, and the last one at _send_queued.  Returns the
-- task's future.
function Client:_queue(spec, fn, ...)
  local h = self.handle
  h:queue(spec, fn, ...)
  return h:future(spec.key, self)
end

-- Queue and send a compiled delayed graph in one call (dlua.delayed's
-- submit_graph: see h:queue_graph in runtime/lua/dl_cluster_lua.c); futs
-- gets key -> future.  With ndeps and wanted, the futures of the tasks
-- not wanted are released as soon as their last dependent is queued.
function Client:_queue_graph(order, futs, get, resolve, NODE, Delayed, Ref,
                             ndeps, wanted)
  self.handle:queue_graph(order, self, futs, get, resolve, NODE, Delayed,
    Ref, ndeps, wanted)
end

-- Send what _queue queued (the caller does not wait yet).
function Client:_send_queued()
  self.handle:send_queued()
end

-- Raise "client is closed" (at the caller of the method that calls this).
local function check_open(self, what)
  if getmetatable(self) ~= Client then
    error(fmt("%s: call it as client:%s(...), not client.%s(...)", what,
              what, what), 3)
  end
  if self.closed or self.handle:closed() then
    error(what .. ": client is closed", 3)
  end
  if self.cluster and self.cluster.remote and self.handle:ended() then
    error(what .. ": " .. (self.handle:lost() or "the cluster has stopped"), 3)
  end
end

--- client:submit(fn, ... [, dlua.opts{...}]) -> future
-- A trailing plain table whose keys are all option names (with values of
-- the options' types), e.g. {retries = 2}, is refused: it is almost
-- always options written in Dask's keyword style and would silently become
-- an argument.  Pass options as dlua.opts{...}; to pass such a table as an
-- argument, end the call with dlua.opts{}.
function Client:submit(fn, ...)
  check_open(self, "submit")
  check_fn(fn, "submit")
  local opts, n = split_opts(select("#", ...), ...)
  if not opts and n > 0 and looks_like_opts(select(n, ...)) then
    local t = select(n, ...)
    error(fmt("submit: the last argument %s looks like options; pass "
              .. "options as dlua.opts%s (or end the call with dlua.opts{} "
              .. "to pass this table as an argument)", opts_text(t),
              opts_text(t)), 2)
  end
  local name = fn_name(fn, 2)
  if opts then
    local o = {name = name}
    for k, v in pairs(opts) do o[k] = v end
    return self:_submit(o, fn, n, unpack({...}, 1, n))
  end
  return self:_submit_named(name, nil, fn, n, ...)
end

--- client:map(fn, seq1 [, seq2, ...] [, dlua.opts{...}]) -> {futures}
-- Several sequences are zipped: fn(seq1[i], seq2[i], ...).
-- Every sequence must be a table whose keys are exactly 1..#t (a table
-- with other keys, such as options written {retries = 2}, is refused, naming
-- dlua.opts), and all must have the same length (Dask, like Python's zip,
-- stops at the shortest; dlua refuses, since a lost tail is rarely meant).
function Client:map(fn, ...)
  check_open(self, "map")
  check_fn(fn, "map")
  local opts, nseq = split_opts(select("#", ...), ...)
  local seqs = {...}
  if nseq == 0 then error("map: expects at least one sequence", 2) end
  local len
  for i = 1, nseq do
    local t = seqs[i]
    local mt = getmetatable(t)
    local mtname = type(mt) == "table" and rawget(mt, "__name")
    if type(t) ~= "table" or (type(mtname) == "string"
                              and mtname:find("^dlua%.")) then
      error(fmt("map: argument #%d must be a sequence (a table), got %s",
                i + 1, mtname or type(t)), 2)
    end
    -- A table with a metatable is a sequence through its __len and
    -- __index; a plain one must hold exactly the keys 1..#t.
    local l, count = #t, 0
    if mt == nil then
      for _ in next, t do count = count + 1 end
    else
      count = l
    end
    if count < l then
      local hole = 1
      while t[hole] ~= nil do hole = hole + 1 end
      error(fmt("map: argument #%d is not a sequence: it has a hole (nil) "
                .. "at index %d", i + 1, hole), 2)
    end
    if count ~= l then
      if looks_like_opts(t) then
        error(fmt("map: argument #%d %s is not a sequence: it looks like "
                  .. "options; pass them as dlua.opts%s", i + 1, opts_text(t),
                  opts_text(t)), 2)
      end
      local bad
      for k in next, t do
        if math.type(k) ~= "integer" or k < 1 or k > l then bad = k; break end
      end
      error(fmt("map: argument #%d is not a sequence (it has the key %s); "
                .. "options go in dlua.opts{...}", i + 1,
                type(bad) == "string" and fmt("'%s'", bad) or tostring(bad)),
            2)
    end
    if len and l ~= len then
      error(fmt("map: the sequences have different lengths (%d and %d); "
                .. "dlua does not truncate to the shortest", len, l), 2)
    end
    len = l
  end
  if opts and opts.key then
    error("map: option 'key' is per task; use 'name' for a key prefix", 2)
  end
  local prefix = (opts and opts.name) or fn_name(fn, 2)
  local ks, first = keys.stem(prefix), nil -- keys.fresh's keys, made in C
  if opts and opts.pure then
    ks = {}
    local args = {}
    for i = 1, len do
      for j = 1, nseq do args[j] = seqs[j][i] end
      ks[i] = keys.pure(prefix, {fn, nseq, unpack(args, 1, nseq)})
    end
  else
    first = keys.reserve(len)
  end
  -- One C call queues every task and makes the futures (dl_cluster_lua.c).
  return self.handle:map(spec_for(opts), fn, seqs, nseq, len, ks, first or 1,
                         self)
end

-- Fetch the values of done futures; raises the first task error.  Values
-- that came inline with the done message are taken as they are; only the
-- others are asked for, each key once.
function Client:_gather_values(futs, timeout, what)
  local out, n = {}, #futs
  local keys, seen, values, fetch
  for i = 1, n do
    local f = futs[i]
    local key = f.key
    local s = fstatus(f)
    if not s then error("future '" .. key .. "' was released", 2) end
    if s == "error" or s == "cancelled" then
      raise_task_error(make_error(key, fstate(f)), 3)
    end
    local has, v = fvalue(f)
    if has then
      out[i] = v
    else
      if not keys then keys, seen, values, fetch = {}, {}, {}, {} end
      fetch[#fetch + 1] = i
      if not seen[key] then
        seen[key] = f
        keys[#keys + 1] = key
      end
    end
  end
  if not keys then return out end
  local deadline = timeout and clock() + timeout
  while #keys > 0 do
    self._nextreq = self._nextreq + 1
    local reqid = self._nextreq
    local req = {n = #keys, values = values, missing = {}, errors = {}}
    self._reqs[reqid] = req
    self.handle:gather(reqid, keys)
    local ok = pump_until(self, function() return req.n <= 0 end, deadline,
                          reqid)
    self._reqs[reqid] = nil
    if not ok then
      error(timeout_error(fmt("%s: no answer after %gs", what, timeout)), 3)
    end
    for k, msg in pairs(req.errors) do
      raise_task_error(setmetatable({key = k, kind = "error", message = msg},
                                    TaskError), 3)
    end
    -- Values lost meanwhile (a worker died) are recomputed: wait again.
    keys = req.missing
    for _, k in ipairs(keys) do
      local f = seen[k]
      if fstatus(f) == "finished" then cluster_c.frepend(f) end
    end
    for _, k in ipairs(keys) do
      local f = seen[k]
      if fstatus(f) then
        if not pump_until(self, function()
                            return (fstatus(f) or "gone") ~= "pending"
                          end, deadline, k) then
          error(timeout_error(fmt("%s: no answer after %gs", what, timeout)),
                3)
        end
        if fstatus(f) ~= "finished" then
          raise_task_error(make_error(k, fstate(f)), 3)
        end
      end
    end
  end
  for _, i in ipairs(fetch) do out[i] = values[futs[i].key] end
  return out
end

-- Collect the futures found anywhere in v (tables walked, cycles safe).
local function collect_futures(v, out, seen)
  if is_future(v) then
    out[#out + 1] = v
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in next, v do
      if type(k) == "table" or is_future(k) then
        collect_futures(k, out, seen)
      end
      if getmetatable(x) == Future then out[#out + 1] = x
      elseif type(x) == "table" then collect_futures(x, out, seen) end
    end
  end
  return out
end

local function replace_futures(v, values, copies)
  if is_future(v) then return values[v] end
  if type(v) ~= "table" then return v end
  if copies[v] then return copies[v] end
  local t = {}
  copies[v] = t
  for k, x in next, v do
    t[replace_futures(k, values, copies)] = replace_futures(x, values, copies)
  end
  return setmetatable(t, getmetatable(v))
end

-- If no key of v is a table and no value a table other than a future
-- (an array of futures, say), return the futures of v, where they sit,
-- and whether v holds nothing else.
local function flat_futures(v)
  local futs, at, n, others = {}, {}, 0, false
  for k, x in next, v do
    if type(k) == "table" or is_future(k) then return nil end
    if getmetatable(x) == Future then
      n = n + 1
      futs[n], at[n] = x, k
    elseif type(x) == "table" then
      return nil
    else
      others = true
    end
  end
  return futs, at, not others
end

-- gather's fast path for a plain array of futures whose values all come
-- inline: wait for them and return the values, or nil where it does not
-- apply (h:values says when).
-- One turn of gather's wait: pump until the deadline, or raise a
-- TimeoutError at the given level (counted from the caller).
local function gather_turn(self, deadline, timeout, level, hint)
  local left = deadline and deadline - clock() or -1
  if deadline and left <= 0 then
    error(timeout_error(fmt("gather: not done after %gs", timeout)),
          level + 1)
  end
  self:_pump(left, hint)
end

function Client:_gather_array(v, deadline, timeout)
  local out, i = nil, 1
  while true do
    i, out = self.handle:values(v, out, i)
    if i == true then return out end
    if not i then return nil end
    gather_turn(self, deadline, timeout, 3, v[i].key)
  end
end

--- client:gather(futures [, timeout]) -> the same structure with every
-- future replaced by its value; raises the first task error.
function Client:gather(v, timeout)
  check_open(self, "gather")
  check_timeout(timeout, "gather")
  local deadline = timeout and clock() + timeout
  local futs, at, only
  if type(v) == "table" and not is_future(v) then
    local out = self:_gather_array(v, deadline, timeout)
    if out then return out end
    futs, at, only = flat_futures(v)
  end
  if not futs then futs = collect_futures(v, {}, {}) end
  local i, n = 1, #futs
  while i <= n do
    local f = futs[i]
    local s = fstatus(f)
    if not s then error("future '" .. f.key .. "' was released", 2) end
    if s ~= "pending" then
      i = i + 1
    else
      gather_turn(self, deadline, timeout, 2, f.key)
    end
  end
  local vals = self:_gather_values(futs, deadline and math.max(0,
                                   deadline - clock()), "gather")
  if is_future(v) then return vals[1] end
  if at then
    -- One level: copy v with each future replaced by its value.
    local t, mt = {}, getmetatable(v)
    if only and mt == nil then
      local same = true -- an array of futures only: vals is the copy
      for j = 1, n do if at[j] ~= j then same = false; break end end
      if same then return vals end
    end
    for k, x in next, v do
      if getmetatable(x) ~= Future then t[k] = x end
    end
    for j = 1, n do t[at[j]] = vals[j] end
    return setmetatable(t, mt)
  end
  local byf = {}
  for j, f in ipairs(futs) do byf[f] = vals[j] end
  return replace_futures(v, byf, {})
end

--- client:run(fn, ... [, dlua.opts{workers=}]) -> {[worker id] = result}
-- Runs fn(...) once on every worker (or on the ones named), each as a task
-- pinned to its worker, and returns the results by worker id; raises the
-- first error.  The scheduler runs no Lua, so there is no
-- run_on_scheduler.  Each call waits its turn in its worker's queue.
function Client:run(fn, ...)
  check_open(self, "run")
  check_fn(fn, "run")
  local opts, n = split_opts(select("#", ...), ...)
  local ids = opts and opts.workers
  if not ids then
    ids = {}
    for _, w in ipairs(self.handle:workers()) do ids[#ids + 1] = w.id end
    table.sort(ids)
  end
  local known = {}
  for _, w in ipairs(self.handle:workers()) do known[w.id] = true end
  local name = (opts and opts.name) or ("run-" .. fn_name(fn, 2))
  local futs = {}
  for i, id in ipairs(ids) do
    if not known[id] then
      error(fmt("run: no worker %s (workers: %d)", tostring(id),
                #self.handle:workers()), 2)
    end
    local o = {name = name, workers = {id}, allow_other_workers = false}
    if opts then
      o.timeout, o.retries, o.priority = opts.timeout, opts.retries,
                                         opts.priority
    end
    futs[i] = self:_submit(o, fn, n, unpack({...}, 1, n))
  end
  local vals = self:gather(futs)
  local out = {}
  for i, id in ipairs(ids) do out[id] = vals[i] end
  return out
end

--- client:scatter(value [, dlua.opts{workers=}]) -> future
-- Sends data to a worker once, so many tasks can use it without
-- re-sending it.
-- As in Dask, it returns once the value is stored: the future is finished.
function Client:scatter(value, opts)
  check_open(self, "scatter")
  if opts ~= nil and not is_opts(opts) then
    error("scatter: options must be made with dlua.opts{...}, got "
          .. type(opts), 2)
  end
  local key = (opts and opts.key) or keys.fresh("scatter")
  self.handle:scatter(key, value, opts and opts.workers)
  local f = new_future(self, key)
  pump_until(self, function() return fstatus(f) ~= "pending" end)
  if fstatus(f) ~= "finished" then
    raise_task_error(make_error(key, fstate(f)), 2)
  end
  return f
end

--- client:cancel(futures): cancel one future or an array of them.
function Client:cancel(futs)
  check_open(self, "cancel")
  if is_future(futs) then futs = {futs} end
  if type(futs) ~= "table" or getmetatable(futs) ~= nil then
    error("cancel: expects a future or an array of futures, got "
          .. (getmetatable(futs) and getmetatable(futs).__name
              or type(futs)), 2)
  end
  for i, f in ipairs(futs) do
    if not is_future(f) then
      error(fmt("cancel: element %d is not a future (got %s)", i, type(f)), 2)
    end
  end
  for _, f in ipairs(futs) do f:cancel() end
end

--- client:wait_for_workers(n [, timeout]): block until at least n workers
-- are running; raises a dlua.TimeoutError after timeout seconds.
function Client:wait_for_workers(n, timeout)
  check_open(self, "wait_for_workers")
  if math.type(n) ~= "integer" or n < 0 then
    error("wait_for_workers: n must be a non-negative integer, got "
          .. (type(n) == "number" and tostring(n) or type(n)), 2)
  end
  check_timeout(timeout, "wait_for_workers")
  local deadline = timeout and clock() + timeout
  while #self.handle:workers() < n do
    local left = deadline and deadline - clock() or 0.05
    if left <= 0 then
      error(timeout_error(fmt("wait_for_workers: %d of %d workers after %gs",
                              #self.handle:workers(), n, timeout)), 2)
    end
    self:_pump(math.min(left, 0.05)) -- sleeps on the scheduler link
  end
end

--- client:compute(x [, opts]) -> futures: x (a Delayed, or a table holding
-- Delayeds anywhere) with each Delayed replaced by the future of its
-- result; the graph starts at once (Dask's client.compute).
function Client:compute(x, opts)
  check_open(self, "compute")
  local d = require "dlua.delayed"
  return d.to_futures(self, x, opts, 2)
end

--- client:scheduler_info() -> {address=, workers={...}, tasks={counts}}
function Client:scheduler_info()
  return {
    address = self.cluster.address,
    workers = self.handle:workers(),
    dead_workers = self.handle:departed(),
    tasks = self.handle:counts(),
  }
end

--- client:ncores() -> {worker id = threads}
function Client:ncores()
  local t = {}
  for _, w in ipairs(self.handle:workers()) do t[w.id] = w.nthreads end
  return t
end

--- client:close(): close the client (and its cluster if it started it).
-- Its futures are released (tasks nobody else wants stop); afterwards
-- submit, map, gather, scatter, compute and result raise "client is
-- closed".
function Client:close()
  if self.closed or self._task then return end
  self.closed = true
  open_clients[self] = nil
  if not self.handle:closed() then
    -- A client that does not own its cluster (a remote scheduler, the
    -- tasks' client) tells it that each of its futures is released.
    self.handle:close_client((not self.owns_cluster or self.cluster.remote)
      and not self._stopped and not self.handle:ended())
  end
  self._cbs = {}
  if self.owns_cluster then self.cluster:close() end
  if default_client == self then default_client = nil end
end
Client.__close = Client.close

--- client:shutdown(): stop the cluster -- its scheduler and every worker,
-- also those of a `dlua scheduler` in another process -- and close the
-- client.  (client:close() of a remote client only disconnects.)
function Client:shutdown()
  if self.closed or self._task then return end
  local cl = self.cluster
  if cl and cl.remote then
    if not cl.handle:closed() and not cl.handle:ended() then
      local ok, err = cl.handle:shutdown()
      if not ok then error("shutdown: " .. err, 2) end
    end
    self.owns_cluster = true
  elseif cl then
    self.owns_cluster = true -- a local cluster stops with it
  end
  self._stopped = true -- its scheduler is going: no releases to send
  self:close()
end

Client.__tostring = function(c)
  if c.handle:closed() then return "<Client: closed>" end
  local ws = c.handle:workers()
  local threads, mem = localcluster.totals(ws)
  return fmt("<Client: scheduler '%s' processes=%d threads=%d, memory=%s>\n%s",
             c.cluster.address, #ws, threads, options.format_bytes(mem),
             cluster_text(c.cluster))
end


M.Client_class = Client

return M

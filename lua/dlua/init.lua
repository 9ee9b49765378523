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

local core = require "dlua.core"
local cluster_c = require "dlua.cluster"
local codec = require "dlua.codec"

local assert, error, ipairs, pairs, select, setmetatable, getmetatable,
  tostring, type, next, rawget, rawset, pcall =
  assert, error, ipairs, pairs, select, setmetatable, getmetatable,
  tostring, type, next, rawget, rawset, pcall
local fmt, concat, unpack = string.format, table.concat, table.unpack
local huge = math.huge
local clock = core.time

local M = {}
M.time = core.time
M.version = core.version
M.codec = codec

-- ------------------------------------------------------------- options

local Opts = {__name = "dlua.Options"}
Opts.__index = Opts

-- Edit distance between two short strings (Levenshtein, a swap of two
-- neighbours counting as one edit), for the "did you mean" hint of a
-- misspelled option.
local function distance(a, b)
  local d = {}
  for i = 0, #a do d[i] = {[0] = i} end
  for j = 1, #b do d[0][j] = j end
  for i = 1, #a do
    local ca = a:byte(i)
    for j = 1, #b do
      local cb = b:byte(j)
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1,
                         d[i - 1][j - 1] + (ca == cb and 0 or 1))
      if i > 1 and j > 1 and ca == b:byte(j - 1) and a:byte(i - 1) == cb then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[#a][#b]
end

--- dlua._did_you_mean(name, known) -> " (did you mean 'x'?)" or "": the
-- closest key of the set `known` when it is close enough to be a typo.
local function did_you_mean(name, known)
  if type(name) ~= "string" then return "" end
  local lname = name:lower()
  local best, bestd
  for k in pairs(known) do
    if type(k) == "string" then
      local d = distance(lname, k)
      -- a shared start of 4 letters (retry, retries), or a name that is
      -- the start of the other (sched, scheduler), counts as close
      local p = 0
      while p < #lname and p < #k and lname:byte(p + 1) == k:byte(p + 1) do
        p = p + 1
      end
      if p >= 4 or (p >= 3 and p == math.min(#lname, #k)) then d = 1 end
      if not bestd or d < bestd or (d == bestd and k < best) then
        best, bestd = k, d
      end
    end
  end
  if best and bestd <= math.max(1, math.min(3, #name // 3)) then
    return fmt(" (did you mean '%s'?)", best)
  end
  return ""
end
M._did_you_mean = did_you_mean

-- Raise "<who>: unknown option 'x' (did you mean 'y'?)" for the first key
-- of t that is not in known; level as for error(), counted from the caller.
local function check_keys(t, known, who, level)
  for k in pairs(t) do
    if known[k] == nil then
      local shown = type(k) == "string" and fmt("'%s'", k)
        or fmt("%s key %s", type(k), tostring(k))
      error(fmt("%s: unknown option %s%s", who, shown, did_you_mean(k, known)),
            level + 1)
    end
  end
end
M._check_keys = check_keys

local known_opts = {
  key = "string", pure = "boolean", priority = "number", retries = "number",
  timeout = "number", workers = "table", allow_other_workers = "boolean",
  order = "number", name = "string", scheduler = "string",
  progress = "boolean",
}

--- dlua.opts{...} -> an options object for submit/map/compute/persist.
function M.opts(t)
  if t ~= nil and type(t) ~= "table" then
    error("dlua.opts expects a table, got " .. type(t), 2)
  end
  t = t or {}
  if getmetatable(t) == Opts then return t end
  check_keys(t, known_opts, "dlua.opts", 2)
  for k, v in pairs(t) do
    local want = known_opts[k]
    if type(v) ~= want then
      error(fmt("dlua.opts: option '%s' must be a %s, got %s", k, want,
                type(v)), 2)
    end
  end
  for _, k in ipairs{"key", "name"} do
    if t[k] == "" then
      error(fmt("dlua.opts: option '%s' must be a non-empty string", k), 2)
    end
  end
  local r = t.retries
  if r and (math.type(r) ~= "integer" or r < 0) then
    error("dlua.opts: option 'retries' must be a non-negative integer, got "
          .. tostring(r), 2)
  end
  local to = t.timeout
  if to and not (to >= 0 and to < huge) then
    error("dlua.opts: option 'timeout' must be a non-negative number of "
          .. "seconds, got " .. tostring(to), 2)
  end
  if t.workers then
    for i, w in pairs(t.workers) do
      if math.type(i) ~= "integer" or math.type(w) ~= "integer" then
        error("dlua.opts: option 'workers' must be an array of worker ids "
              .. "(integers)", 2)
      end
    end
  end
  return setmetatable(t, Opts)
end

local function is_opts(v) return getmetatable(v) == Opts end
M.is_opts = is_opts

-- Does v look like options written as a plain table (the Dask habit of
-- keyword arguments): a non-empty table without a metatable whose keys are
-- all option names, each holding a value of the option's type?
local function looks_like_opts(v)
  if type(v) ~= "table" or getmetatable(v) ~= nil or next(v) == nil then
    return false
  end
  for k, x in next, v do
    local want = known_opts[k]
    if not want or type(x) ~= want then return false end
  end
  return true
end

-- "{retries = 2}" rendered back for an error message.
local function opts_text(v)
  local parts = {}
  for k, x in pairs(v) do
    parts[#parts + 1] = fmt("%s = %s", k,
                            type(x) == "string" and fmt("%q", x) or tostring(x))
  end
  table.sort(parts)
  return "{" .. concat(parts, ", ") .. "}"
end

-- Split a trailing options object off an argument list.
local function split_opts(n, ...)
  if n > 0 then
    local last = select(n, ...)
    if is_opts(last) then return last, n - 1 end
  end
  return nil, n
end

-- --------------------------------------------------------------- sizes

local units = {
  b = 1, kb = 1e3, mb = 1e6, gb = 1e9, tb = 1e12,
  kib = 1024, mib = 1024 ^ 2, gib = 1024 ^ 3, tib = 1024 ^ 4,
  k = 1e3, m = 1e6, g = 1e9, t = 1e12,
}

-- The largest size dlua accepts: 1 EiB, far beyond any machine, well
-- inside a 64-bit integer.
local MAX_BYTES = 1 << 60

--- dlua.parse_bytes("512MB") -> 512000000.  Strict: raises on anything else
-- than a number with an optional unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB).
function M.parse_bytes(s)
  if math.type(s) == "integer" then
    if s <= 0 then error("memory size must be positive, got " .. s, 2) end
    return s
  end
  if type(s) == "number" then
    if not (s >= 1) then
      error("memory size must be a positive number of bytes, got "
            .. tostring(s), 2)
    end
    local n = math.tointeger(math.floor(s))
    if not n or n > MAX_BYTES then
      error(fmt("memory size %s is too large (at most %s)", tostring(s),
                "1 EiB"), 2)
    end
    return n
  end
  if type(s) ~= "string" then
    error("memory size must be a number or a string like '512MB', got "
          .. type(s), 2)
  end
  local num, unit = s:match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
  local mult = num and units[unit:lower()] or (num and unit == "" and 1)
  if not mult then
    error(fmt("malformed memory size '%s' (expected e.g. '512MB', '2GiB' "
              .. "or a number of bytes)", s), 2)
  end
  local x = tonumber(num) * mult
  if x < 1 then error(fmt("memory size '%s' must be positive", s), 2) end
  if x > MAX_BYTES then
    error(fmt("memory size '%s' is too large (at most %s)", s,
              "1 EiB"), 2)
  end
  return math.tointeger(math.floor(x))
end

--- dlua.format_bytes(n) -> "1.50 GiB"
function M.format_bytes(n)
  local u = {"B", "KiB", "MiB", "GiB", "TiB"}
  local i = 1
  while n >= 1024 and i < #u do n = n / 1024; i = i + 1 end
  if i == 1 then return fmt("%d B", n) end
  return fmt("%.2f %s", n, u[i])
end

-- ------------------------------------------------------------ clusters

local LocalCluster = {__name = "dlua.LocalCluster"}
LocalCluster.__index = LocalCluster

--- dlua.MIN_MEMORY_LIMIT: the smallest memory_limit a worker accepts.
M.MIN_MEMORY_LIMIT = 16 * 1024 * 1024

local cluster_keys = {
  n_workers = true, memory_limit = true, worker_exe = true,
  allowed_failures = true, start_timeout = true, dashboard_address = true,
  threads_per_worker = true, processes = true,
  memory_target = true, memory_spill = true, memory_pause = true,
  memory_terminate = true, heartbeat_timeout = true,
  listen = true, token_file = true,
}

--- dlua.LocalCluster{n_workers=, memory_limit=, ...} -> cluster
-- Starts the scheduler (a thread of this process) and n_workers worker
-- processes.  memory_limit is per worker: bytes or a size string.
local function new_cluster(o, lv)
  if o ~= nil and type(o) ~= "table" then
    error("LocalCluster expects a table of options, got " .. type(o), lv)
  end
  o = o or {}
  check_keys(o, cluster_keys, "LocalCluster", lv)
  local defaults = debug.getregistry()["dlua.defaults"] or {}
  local cores, total = cluster_c.machine()
  local listen = o.listen
  if listen ~= nil and (type(listen) ~= "string"
                        or not listen:match("^tcp://%[?[%x%.:]+%]?:%d+$")) then
    error("LocalCluster: listen must be \"tcp://IP:PORT\" (a numeric "
          .. "address), got " .. tostring(listen), lv)
  end
  if o.token_file ~= nil and type(o.token_file) ~= "string" then
    error("LocalCluster: token_file must be a string, got "
          .. type(o.token_file), lv)
  end
  if listen and o.n_workers ~= nil and o.n_workers ~= 0 then
    error("LocalCluster: a cluster that listens on TCP starts no local "
          .. "workers (n_workers must be 0): start them with `dlua worker "
          .. listen .. "`", lv)
  end
  local n = listen and 0 or o.n_workers or defaults.n_workers or cores
  if not listen and (math.type(n) ~= "integer" or n < 1) then
    error("LocalCluster: n_workers must be a positive integer, got "
          .. (type(n) == "number" and tostring(n) or type(n)), lv)
  end
  if o.threads_per_worker ~= nil and o.threads_per_worker ~= 1 then
    error("LocalCluster: threads_per_worker must be 1 (a worker runs one "
          .. "Lua state; use more workers)", lv)
  end
  if o.processes == false then
    error("LocalCluster: processes=false is not supported: dlua workers are "
          .. "always processes", lv)
  end
  local mem = o.memory_limit or defaults.memory_limit
  local ok, limit = pcall(M.parse_bytes,
                          mem or math.floor(total / math.max(n, 1)))
  if not ok then error("LocalCluster: memory_limit: " .. limit, lv) end
  if limit < M.MIN_MEMORY_LIMIT then
    error(fmt("LocalCluster: memory_limit must be at least %s per worker "
              .. "(a worker's Lua state and buffers need that much), got %s",
              M.format_bytes(M.MIN_MEMORY_LIMIT), tostring(mem)), lv)
  end
  local fr = {}
  for i, k in ipairs{"memory_target", "memory_spill", "memory_pause",
                     "memory_terminate"} do
    local v = o[k]
    if v ~= nil and (type(v) ~= "number" or not (v > 0 and v <= 1)) then
      error(fmt("LocalCluster: %s must be a fraction in (0, 1], got %s", k,
                type(v) == "number" and tostring(v) or type(v)), lv)
    end
    fr[i] = v
  end
  local hb = o.heartbeat_timeout
  if hb ~= nil and (type(hb) ~= "number" or not (hb > 0 and hb <= 86400)) then
    error("LocalCluster: heartbeat_timeout must be a number of seconds in "
          .. "(0, 86400], got "
          .. (type(hb) == "number" and tostring(hb) or type(hb)), lv)
  end
  local af, st, exe = o.allowed_failures, o.start_timeout, o.worker_exe
  if af ~= nil and (math.type(af) ~= "integer" or af < 0) then
    error("LocalCluster: allowed_failures must be a non-negative integer, got "
          .. (type(af) == "number" and tostring(af) or type(af)), lv)
  end
  if st ~= nil and (type(st) ~= "number" or not (st > 0 and st < huge)) then
    error("LocalCluster: start_timeout must be a positive number of seconds,"
          .. " got " .. (type(st) == "number" and tostring(st) or type(st)), lv)
  end
  if exe ~= nil and type(exe) ~= "string" then
    error("LocalCluster: worker_exe must be a string, got " .. type(exe), lv)
  end
  local dash = o.dashboard_address
  local dash_default = dash == nil
  if dash_default then dash = "127.0.0.1:8787" end
  if dash ~= false and (type(dash) ~= "string"
                        or not dash:match("^%[?[%w%.:]+%]?:%d+$")) then
    error("LocalCluster: dashboard_address must be \"host:port\" or false, "
          .. "got " .. tostring(dash), lv)
  end
  local h, err = cluster_c.start{
    n_workers = n, memory_limit = limit,
    dashboard_address = dash or nil, dashboard_fallback = dash_default,
    worker_exe = o.worker_exe or defaults.worker_exe,
    allowed_failures = o.allowed_failures,
    start_timeout = o.start_timeout,
    memory_target = fr[1], memory_spill = fr[2], memory_pause = fr[3],
    memory_terminate = fr[4], heartbeat_timeout = hb,
    listen = listen, token_file = o.token_file,
  }
  if not h then error("LocalCluster: " .. err, lv) end
  local bound = h:dashboard()
  if bound and dash_default and bound ~= dash then
    io.stderr:write(fmt("dlua: port %s is in use; the dashboard is at "
                        .. "http://%s/status instead\n",
                        dash:match(":(%d+)$"), bound))
  end
  return setmetatable({
    handle = h, n_workers = n, memory_limit = limit,
    address = h:listen_address() or ("local://" .. h:dir()),
    dashboard_address = bound,
    dashboard_link = bound and ("http://" .. bound .. "/status") or nil,
  }, LocalCluster)
end

function M.LocalCluster(o)
  local c = new_cluster(o, 3)
  return c
end

--- cluster:workers() -> array of per-worker tables (id, pid, nthreads,
-- memory_limit, managed, spilled, rss, executing, processing, stored, uptime)
function LocalCluster:workers()
  return self.handle:workers()
end

--- cluster:scale(n): start or retire workers until there are n.
function LocalCluster:scale(n)
  if math.type(n) ~= "integer" or n < 0 then
    error("scale: n must be a non-negative integer, got "
          .. (type(n) == "number" and tostring(n) or type(n)), 2)
  end
  self.handle:scale(n)
  self.n_workers = n
end

--- cluster:close(): stop the scheduler and every worker process.
function LocalCluster:close()
  if not self.handle:closed() then self.handle:close() end
end
LocalCluster.__close = LocalCluster.close

local function cluster_text(c)
  if c.handle:closed() then return "<LocalCluster: closed>" end
  local ws = c.handle:workers()
  local threads, mem = 0, 0
  for _, w in ipairs(ws) do
    threads = threads + w.nthreads
    mem = mem + w.memory_limit
  end
  local lines = {
    fmt("LocalCluster"),
    fmt("  Scheduler:      %s", c.address),
    fmt("  Dashboard:      %s", c.dashboard_link or "(off)"),
    fmt("  Workers:        %d", #ws),
    fmt("  Processes:      yes"),
    fmt("  Total threads:  %d", threads),
    fmt("  Total memory:   %s", M.format_bytes(mem)),
  }
  table.sort(ws, function(a, b) return a.id < b.id end)
  for _, w in ipairs(ws) do
    lines[#lines + 1] = fmt(
      "  Worker %d:  pid %d, %d thread%s, memory %s / limit %s, "
      .. "managed %s, spilled %s, stored %d result%s",
      w.id, w.pid, w.nthreads, w.nthreads == 1 and "" or "s",
      M.format_bytes(w.rss), M.format_bytes(w.memory_limit),
      M.format_bytes(w.managed), M.format_bytes(w.spilled),
      w.stored, w.stored == 1 and "" or "s")
  end
  return concat(lines, "\n")
end
LocalCluster.__tostring = cluster_text

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

local Client = {__name = "dlua.Client"}
Client.__index = Client

local default_client
local make_client
-- Clients not closed yet, for dlua.sleep and the REPL's prompt.
local open_clients = setmetatable({}, {__mode = "k"})

-- Key prefixes: a function's name where one can be found.
local names = setmetatable({}, {__mode = "k"})
local function fn_name(fn, level)
  local n = names[fn]
  if n then return n end
  if type(fn) ~= "function" then
    n = type(fn)
  else
    for k, v in pairs(_G) do
      if v == fn and type(k) == "string" then n = k; break end
    end
    if not n then
      local i = 1
      while level and debug.getinfo(level + 1, "l") do
        local ln, lv = debug.getlocal(level + 1, i)
        if not ln then break end
        if lv == fn and ln:match("^[%a_][%w_]*$") then n = ln; break end
        i = i + 1
      end
    end
    if not n then -- lambda@<file>:<line>, as dlua.delayed labels them
      local info = debug.getinfo(fn, "S")
      if info.what == "C" then
        n = "lambda"
      else
        local file = info.short_src:gsub("^.*/", ""):sub(1, 40)
        n = fmt("lambda@%s:%d", file:gsub("[^%w_.]", "_"), info.linedefined)
      end
    end
  end
  names[fn] = n
  return n
end

-- Unique to this process: the client and every worker's tasks (get_client)
-- make keys, which must not collide even where the random generators of
-- processes started together were seeded alike.
local token = fmt("%08x", ((cluster_c.pid() * 2654435761)
                           ~ math.random(0, 0x7fffffff)) & 0xffffffff)
local counter = 0
local function new_key(prefix)
  counter = counter + 1
  return fmt("%s-%s%x", prefix, token, counter)
end

-- FNV-1a over a string, two lanes, for pure keys.
local function hash_hex(s)
  local h1, h2 = 0xcbf29ce484222325, 0x84222325cbf29ce4
  for i = 1, #s, 4 do
    local a, b, c, d = s:byte(i, i + 3)
    h1 = (h1 ~ a) * 0x100000001b3
    h2 = (h2 ~ (b or 0) ~ ((c or 0) << 8) ~ ((d or 0) << 16)) * 0x100000001b3
  end
  return fmt("%016x%08x", h1, h2 & 0xffffffff)
end
M._hash_hex = hash_hex

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

-- level: as for error(), counted from check_timeout's caller (default 2:
-- the caller's caller).
local function check_timeout(t, what, level)
  if t ~= nil and (type(t) ~= "number" or not (t >= 0)) then
    error(fmt("%s: timeout must be a non-negative number of seconds, got %s",
              what, type(t) == "number" and tostring(t) or type(t)),
          (level or 2) + 1)
  end
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

-- -------------------------------------------------------------- client

--- dlua.Client([cluster | options]) -> client
-- With no argument (or a table of LocalCluster options) starts a
-- LocalCluster that the client owns and closes; with a cluster, attaches.
function M.Client(arg)
  local cl, owns
  if getmetatable(arg) == LocalCluster then
    cl = arg
  elseif arg == nil or type(arg) == "table" then
    cl, owns = new_cluster(arg, 3), true
  else
    error("Client expects a LocalCluster or a table of options, got "
          .. type(arg), 2)
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
    _keys = {}, _reqs = {}, _nextreq = 0, _fired = {},
  }, Client)
  local function on_err(key, kind, message, traceback, worker, value)
    local st = c._keys[key]
    if st then
      st.status = kind == "cancelled" and "cancelled" or "error"
      st.kind, st.message, st.traceback, st.worker, st.errvalue =
        kind, message, traceback, worker, value
      if st.callbacks then c._fired[#c._fired + 1] = st end
    end
  end
  local function on_data(reqid, key, found, value)
    local req = c._reqs[reqid]
    if req and req.coord then -- a Variable, Queue... answer (coord.lua)
      req.status, req.value, req.n = found, value, 0
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
  c._on_err, c._on_data = on_err, on_data
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
-- (background progress); a finished task sets its state in _keys (status,
-- nbytes, has_value, value) in C, and lands in _fired if it has callbacks.
-- Ctrl-C ends the wait with the error "interrupted!" (no message is lost).
function Client:_pump(timeout, hint)
  local n, err, why = self.handle:poll(timeout or -1, self._keys, self._fired,
                                       self._on_err, self._on_data, hint)
  if not n then
    if why == "interrupted" then error(err, 0) end
    error("dlua: " .. err, 3)
  end
  if #self._fired > 0 then
    local fired = self._fired
    self._fired = {}
    for _, st in ipairs(fired) do
      local cbs = st.callbacks
      st.callbacks = nil
      for _, cb in ipairs(cbs or {}) do cb[1](cb[2]) end
    end
  end
  return n
end

local function check_fn(fn, what)
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
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

-- Queue one task; returns its future.
function Client:_submit(opts, fn, n, ...)
  local key = opts and opts.key
  if not key then
    local prefix = (opts and opts.name) or fn_name(fn)
    if opts and opts.pure then
      local ok, bytes = pcall(codec.encode, {fn, n, ...})
      key = prefix .. "-" .. (ok and hash_hex(bytes) or new_key(""))
    else
      key = new_key(prefix)
    end
  end
  local spec = spec_for(opts)
  spec.key = key -- read at once by submit; the spec is reused
  self.handle:submit(spec, fn, ...)
  return new_future(self, key)
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
  local o = {name = fn_name(fn, 2)}
  if opts then for k, v in pairs(opts) do o[k] = v end end
  if opts then return self:_submit(o, fn, n, unpack({...}, 1, n)) end
  return self:_submit(o, fn, n, ...)
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
  local keys = prefix .. "-" .. token -- new_key's keys, made in C
  if opts and opts.pure then
    keys = {}
    local args = {}
    for i = 1, len do
      for j = 1, nseq do args[j] = seqs[j][i] end
      local ok, bytes = pcall(codec.encode, {fn, nseq, unpack(args, 1, nseq)})
      keys[i] = prefix .. "-" .. (ok and hash_hex(bytes) or new_key(""))
    end
  end
  local first = counter + 1
  if type(keys) == "string" then counter = counter + len end
  -- One C call queues every task and makes the futures (dl_cluster_lua.c).
  return self.handle:map(spec_for(opts), fn, seqs, nseq, len, keys, first,
                         self._keys, self)
end

-- Fetch the values of done futures; raises the first task error.  Values
-- that came inline with the done message are taken as they are; only the
-- others are asked for, each key once.
function Client:_gather_values(futs, timeout, what)
  local states, out, n = self._keys, {}, #futs
  local keys, seen, values, fetch
  for i = 1, n do
    local key = futs[i].key
    local st = states[key]
    if not st then error("future '" .. key .. "' was released", 2) end
    local s = st.status
    if s == "error" or s == "cancelled" then
      raise_task_error(make_error(key, st), 3)
    end
    if st.has_value then
      out[i] = st.value
    else
      if not keys then keys, seen, values, fetch = {}, {}, {}, {} end
      fetch[#fetch + 1] = i
      if not seen[key] then
        seen[key] = true
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
      local st = self._keys[k]
      if st and st.status == "finished" then
        st.status, st.has_value, st.value = "pending", nil, nil
      end
    end
    for _, k in ipairs(keys) do
      local st = self._keys[k]
      if st then
        if not pump_until(self, function() return st.status ~= "pending" end,
                          deadline, k) then
          error(timeout_error(fmt("%s: no answer after %gs", what, timeout)),
                3)
        end
        if st.status ~= "finished" then raise_task_error(make_error(k, st), 3) end
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
      if type(k) == "table" then collect_futures(k, out, seen) end
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
    if type(k) == "table" then return nil end
    if type(x) == "table" then
      if getmetatable(x) ~= Future then return nil end
      n = n + 1
      futs[n], at[n] = x, k
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
  local out, i, states = nil, 1, self._keys
  while true do
    i, out = self.handle:values(v, states, out, i)
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
  local states = self._keys
  local i, n = 1, #futs
  while i <= n do
    local key = futs[i].key
    local st = states[key]
    if not st then error("future '" .. key .. "' was released", 2) end
    if st.status ~= "pending" then
      i = i + 1
    else
      gather_turn(self, deadline, timeout, 2, key)
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
  local key = (opts and opts.key) or new_key("scatter")
  self.handle:scatter(key, value, opts and opts.workers)
  local f = new_future(self, key)
  local st = self._keys[key]
  pump_until(self, function() return st.status ~= "pending" end)
  if st.status ~= "finished" then raise_task_error(make_error(key, st), 2) end
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
  if not self.owns_cluster and not self.handle:closed() then
    for key, st in pairs(self._keys) do
      for _ = 1, st.nfut do self.handle:release(key) end
    end
    self.handle:flush()
  end
  self._keys = {}
  if self.owns_cluster then self.cluster:close() end
  if default_client == self then default_client = nil end
end
Client.__close = Client.close

Client.__tostring = function(c)
  if c.handle:closed() then return "<Client: closed>" end
  local ws = c.handle:workers()
  local threads, mem = 0, 0
  for _, w in ipairs(ws) do
    threads = threads + w.nthreads
    mem = mem + w.memory_limit
  end
  return fmt("<Client: scheduler '%s' processes=%d threads=%d, memory=%s>\n%s",
             c.cluster.address, #ws, threads, M.format_bytes(mem),
             cluster_text(c.cluster))
end

-- ------------------------------------------------------ wait, completed

M.ALL_COMPLETED = "ALL_COMPLETED"
M.FIRST_COMPLETED = "FIRST_COMPLETED"
M.FIRST_EXCEPTION = "FIRST_EXCEPTION"

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
      local s = state(f).status
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
  state(f) -- raises if released
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
    if #c._fired > 0 then
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

--- dlua.progress(futures_or_delayeds [, opts]): a live progress bar
-- (lua/dlua/progress.lua).
function M.progress(...)
  return require("dlua.progress").progress(...)
end

-- Variable, Queue, Event, Lock, Semaphore (lua/dlua/coord.lua).
do
  local coord = require "dlua.coord"
  M.Variable, M.Queue, M.Event = coord.Variable, coord.Queue, coord.Event
  M.Lock, M.Semaphore = coord.Lock, coord.Semaphore
end

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

--- dlua.in_worker() -> true when running inside a task on a worker
M.in_worker = cluster_c.in_worker

M.Client_class = Client
M.LocalCluster_class = LocalCluster

-- Delayed pipelines (lua/dlua/delayed.lua), when present; it may require
-- "dlua" itself, so this module is registered first.
package.loaded["dlua"] = M
local ok_delayed, delayed = pcall(require, "dlua.delayed")
if ok_delayed and type(delayed) == "table" then
  M.delayed = delayed.delayed
  M.compute = delayed.compute
  M.persist = delayed.persist
  M.compute_graph = delayed.compute_graph
  M.is_delayed = delayed.is_delayed
end

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

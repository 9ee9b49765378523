--[[
dlua.localcluster -- dlua.LocalCluster: the scheduler thread of this
process and its worker processes (started by the C module dlua.cluster),
with the checks of their options.  Re-exported by dlua.
]]

local cluster_c = require "dlua.cluster"
local options = require "dlua.options"

local fmt, concat, huge = string.format, table.concat, math.huge

local M = {}
local check_keys = options._check_keys
local format_bytes = options.format_bytes

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
  listen = true, token_file = true, tls_dir = true,
}

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error

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
  if o.tls_dir ~= nil and (type(o.tls_dir) ~= "string" or not listen) then
    error(type(o.tls_dir) ~= "string"
          and "LocalCluster: tls_dir must be a string, got " .. type(o.tls_dir)
          or "LocalCluster: tls_dir needs listen (TLS is for TCP)", lv)
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
  local ok, limit = pcall(options.parse_bytes,
                          mem or math.floor(total / math.max(n, 1)))
  if not ok then error("LocalCluster: memory_limit: " .. limit, lv) end
  if limit < M.MIN_MEMORY_LIMIT then
    error(fmt("LocalCluster: memory_limit must be at least %s per worker "
              .. "(a worker's Lua state and buffers need that much), got %s",
              format_bytes(M.MIN_MEMORY_LIMIT), tostring(mem)), lv)
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
    listen = listen, token_file = o.token_file, tls_dir = o.tls_dir,
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

-- The threads and memory limits of the workers ws, summed.
local function totals(ws)
  local threads, mem = 0, 0
  for _, w in ipairs(ws) do
    threads = threads + w.nthreads
    mem = mem + w.memory_limit
  end
  return threads, mem
end

local function cluster_text(c)
  if c.handle:closed() then return "<LocalCluster: closed>" end
  local ws = c.handle:workers()
  local threads, mem = totals(ws)
  local lines = {
    c.title or "LocalCluster",
    fmt("  Scheduler:      %s", c.address),
    fmt("  Dashboard:      %s", c.dashboard_link or "(off)"),
    fmt("  Workers:        %d", #ws),
    fmt("  Processes:      yes"),
    fmt("  Total threads:  %d", threads),
    fmt("  Total memory:   %s", format_bytes(mem)),
  }
  table.sort(ws, function(a, b) return a.id < b.id end)
  for _, w in ipairs(ws) do
    lines[#lines + 1] = fmt(
      "  Worker %d:  pid %d, %d thread%s, memory %s / limit %s, "
      .. "managed %s, spilled %s, stored %d result%s",
      w.id, w.pid, w.nthreads, w.nthreads == 1 and "" or "s",
      format_bytes(w.rss), format_bytes(w.memory_limit),
      format_bytes(w.managed), format_bytes(w.spilled),
      w.stored, w.stored == 1 and "" or "s")
  end
  return concat(lines, "\n")
end
LocalCluster.__tostring = cluster_text
M.new_cluster = new_cluster
M.cluster_text, M.totals = cluster_text, totals
M.LocalCluster_class = LocalCluster

return M

--[[
dlua.remote -- a cluster in other processes: the link of a client to a
`dlua scheduler` (dlua.Client("tcp://host:port"), Client{address=},
Client{scheduler_file=}), and the scheduler file's reading and writing.
Used by dlua.client; see README, "Past one machine".
]]

local cluster_c = require "dlua.cluster"
local localcluster = require "dlua.localcluster"
local options = require "dlua.options"
local core = require "dlua.core"

local fmt = string.format

local M = {}

local RemoteCluster = {__name = "dlua.RemoteCluster"}
RemoteCluster.__index = RemoteCluster

local connect_keys = {
  address = true, scheduler_file = true, token_file = true, timeout = true,
  tls_dir = true,
}

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error

--- remote.read_scheduler_file(path) -> {address=, dashboard=, id=}
-- Raises a clear error for a missing, unreadable or malformed file.
function M.read_scheduler_file(path, lv)
  local t, err = cluster_c.read_scheduler_file(path)
  if not t then error(err, lv and lv + 1 or 2) end
  return t
end

-- Seconds a client waits for its scheduler by default: the scheduler
-- file to appear, then the connection (DL_TCP_CONNECT_MS).
local CONNECT_S = 10

-- Whether a file is at path (a file there that cannot be read counts).
local function there(path)
  local f, _, code = io.open(path, "r")
  if f then f:close() return true end
  return code ~= 2 -- ENOENT
end

-- The scheduler file at path, waiting up to timeout seconds for it to
-- appear, as Dask's Client(scheduler_file=) does: scripts, workers and
-- the scheduler of a job are often started together.  The scheduler
-- writes the file whole and renames it into place, so a read that fails
-- is final once the file was there before the read began.  Ctrl-C ends
-- the wait.
local function scheduler_file_when_there(path, timeout)
  local deadline = core.time() + timeout
  repeat
    local was_there = there(path)
    local t, err = cluster_c.read_scheduler_file(path)
    if t then return t end
    if was_there then error("Client: " .. err, 2) end
    local left = deadline - core.time()
    if left <= 0 then
      error(fmt("Client: no scheduler file %s after %g s; is its scheduler "
                .. "running (dlua scheduler --scheduler-file %s)?  Give "
                .. "Client{timeout=} to wait longer", path, timeout, path),
            2)
    end
    local ok, ierr = cluster_c.idle(cluster_c.wake_seq(), math.min(left, 0.02))
    if ok == nil then error(ierr, 0) end
  until false
end

-- Is o a table of connection options (not LocalCluster options)?
function M.is_remote(arg)
  if type(arg) == "string" then return true end
  return type(arg) == "table" and getmetatable(arg) == nil
    and (arg.address ~= nil or arg.scheduler_file ~= nil)
end

--- remote.connect("tcp://host:port" | {address=, scheduler_file=,
--  token_file=, timeout=} [, lv]) -> cluster
function M.connect(arg, lv)
  local o = type(arg) == "string" and {address = arg} or arg
  options._check_keys(o, connect_keys, "Client", lv)
  local addr, tls_dir = o.address, o.tls_dir
  if tls_dir ~= nil and type(tls_dir) ~= "string" then
    error("Client: tls_dir must be a string, got " .. type(tls_dir), lv)
  end
  local to = o.timeout
  if to ~= nil and (type(to) ~= "number" or not (to > 0 and to <= 3600)) then
    error("Client: timeout must be a number of seconds in (0, 3600], got "
          .. tostring(to), lv)
  end
  if o.scheduler_file ~= nil then
    if type(o.scheduler_file) ~= "string" then
      error("Client: scheduler_file must be a string, got "
            .. type(o.scheduler_file), lv)
    end
    if addr ~= nil then
      error("Client: give address or scheduler_file, not both", lv)
    end
    local t = scheduler_file_when_there(o.scheduler_file, to or CONNECT_S)
    addr = t.address
    if tls_dir == nil then tls_dir = t.tls_dir end -- the scheduler's TLS
  end
  if type(addr) ~= "string" or not addr:match("^tcp://.+:%d+$") then
    error("Client: the address must be \"tcp://host:port\", got "
          .. (type(addr) == "string" and fmt("%q", addr) or type(addr)), lv)
  end
  if o.token_file ~= nil and type(o.token_file) ~= "string" then
    error("Client: token_file must be a string, got " .. type(o.token_file),
          lv)
  end
  local h, err = cluster_c.connect{address = addr, token_file = o.token_file,
                                   tls_dir = tls_dir, timeout = to}
  if not h then error("Client: " .. err, lv) end
  local dash = h:dashboard()
  if dash then -- a dashboard on every interface: reach it as the scheduler
    local host = addr:match("^tcp://(.+):%d+$")
    dash = dash:gsub("^0%.0%.0%.0:", host .. ":"):gsub("^%[::%]:", host .. ":")
  end
  return setmetatable({
    handle = h, address = h:listen_address() or addr, remote = true,
    title = "RemoteCluster",
    dashboard_address = dash,
    dashboard_link = dash and ("http://" .. dash .. "/status") or nil,
  }, RemoteCluster)
end

--- cluster:workers() -> the scheduler's latest figures of its workers
function RemoteCluster:workers()
  return self.handle:workers()
end

--- cluster:close(): disconnect; the scheduler and workers keep running.
function RemoteCluster:close()
  if not self.handle:closed() then self.handle:close() end
end
RemoteCluster.__close = RemoteCluster.close

--- cluster:shutdown(): stop the scheduler and its workers, then disconnect.
function RemoteCluster:shutdown()
  if self.handle:closed() then return end
  local ok, err = self.handle:shutdown()
  self.handle:close()
  if not ok then error("shutdown: " .. err, 2) end
end

RemoteCluster.__tostring = localcluster.cluster_text
M.RemoteCluster_class = RemoteCluster

return M

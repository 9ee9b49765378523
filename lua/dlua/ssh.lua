--[[
dlua.ssh -- dlua.SSHCluster: a scheduler and workers on other hosts,
started through the system's `ssh` (README, "SSH: dlua.SSHCluster").

The first host runs `dlua scheduler`, every other entry of `hosts` runs
`dlua worker` joined to it.  Each remote process is the child of one
local `ssh`, whose standard input stays open: the first line it reads is
the cluster's token (so it is never on a command line), and when the
input ends (cluster:close(), or this process dies) the remote side stops
its process.  Nothing is left running on the hosts.
]]

local options = require "dlua.options"

local fmt = string.format

local M = {}

local SSHCluster = {__name = "dlua.SSHCluster"}
SSHCluster.__index = SSHCluster
M.SSHCluster_class = SSHCluster

local known = {
  hosts = true, connect_options = true, worker_options = true,
  scheduler_options = true, remote_dlua = true, timeout = true,
  tls_dir = true,
}
local known_worker = {nworkers = true, memory_limit = true}
local known_sched = {host = true, port = true, dashboard_address = true}

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The remote side: read the token, start cmd in the background, stop it
-- when our end of the connection goes (the watcher's cat sees the end of
-- its input), and end the session with cmd's status when cmd ends first.
local function remote_line(cmd)
  -- (An asynchronous list's input is /dev/null: the watcher reads fd 3.)
  return "read -r DLUA_TOKEN && export DLUA_TOKEN && exec 3<&0 && { " .. cmd
    .. " 3<&- & p=$!; { cat <&3; kill $p; } >/dev/null 2>&1 & exec 3<&-; "
    .. "wait $p; }"
end

-- Start `ssh [connect_options] host remote` with its output in a local
-- log file; returns {host=, pipe=, log=}.
local function start(self, host, cmd)
  local log = os.tmpname()
  local args = {"ssh", "-o", "BatchMode=yes"}
  for _, a in ipairs(self.connect_options) do args[#args + 1] = q(a) end
  args[#args + 1] = q(host)
  args[#args + 1] = q(remote_line(cmd))
  -- The exit line tells a failed ssh from a slow one.
  local line = fmt("{ %s; echo \"dlua-ssh: exited with status $?\"; } "
                   .. ">%s 2>&1", table.concat(args, " "), q(log))
  local pipe = assert(io.popen(line, "w"))
  pipe:setvbuf("no")
  pipe:write(self._token, "\n")
  local p = {host = host, pipe = pipe, log = log}
  self._procs[#self._procs + 1] = p
  return p
end

local function stop(p)
  if p.pipe then
    pcall(p.pipe.close, p.pipe) -- ends the remote process, waits for ssh
    p.pipe = nil
  end
end

local function new_token()
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(32)
  f:close()
  return (b:gsub(".", function(c) return fmt("%02x", c:byte()) end))
end

local function check_table(v, what, keys, lv)
  if v == nil then return {} end
  if type(v) ~= "table" then
    error(fmt("SSHCluster: %s must be a table, got %s", what, type(v)), lv)
  end
  if keys then options._check_keys(v, keys, "SSHCluster: " .. what, lv) end
  return v
end

-- An address the scheduler can listen on for host: a literal IP as is,
-- every interface for a name (it then names its first one).
local function listen_host(host)
  local h = host:gsub("^.*@", "")
  if h:match("^%d+%.%d+%.%d+%.%d+$") or h:find(":", 1, true) then return h end
  return "0.0.0.0"
end

--- dlua.SSHCluster{hosts = {sched_host, worker_host, ...}, ...} -> cluster
function M.SSHCluster(o)
  local lv = 2
  if type(o) ~= "table" then
    error("SSHCluster expects a table of options, got " .. type(o), lv)
  end
  options._check_keys(o, known, "SSHCluster", lv)
  local hosts = o.hosts
  if type(hosts) ~= "table" or #hosts < 2 then
    error("SSHCluster: hosts must list at least 2 hosts (the scheduler's, "
          .. "then one per worker host; a host may repeat), got "
          .. (type(hosts) == "table" and #hosts .. "" or type(hosts)), lv)
  end
  for i, h in ipairs(hosts) do
    if type(h) ~= "string" or h == "" or h:match("^%-") then
      error(fmt("SSHCluster: hosts[%d] must be a host name, got %s", i,
                type(h) == "string" and fmt("%q", h) or type(h)), lv)
    end
  end
  local copts = check_table(o.connect_options, "connect_options", nil, lv + 1)
  for i, a in ipairs(copts) do
    if type(a) ~= "string" then
      error(fmt("SSHCluster: connect_options[%d] must be a string (one ssh "
                .. "argument), got %s", i, type(a)), lv)
    end
  end
  local wo = check_table(o.worker_options, "worker_options", known_worker,
                         lv + 1)
  local so = check_table(o.scheduler_options, "scheduler_options",
                         known_sched, lv + 1)
  if wo.nworkers ~= nil and (math.type(wo.nworkers) ~= "integer"
                             or wo.nworkers < 1) then
    error("SSHCluster: worker_options.nworkers must be a positive integer, "
          .. "got " .. tostring(wo.nworkers), lv)
  end
  if wo.memory_limit ~= nil then
    local ok = pcall(options.parse_bytes, wo.memory_limit)
    if not ok then
      error("SSHCluster: worker_options.memory_limit must be a size (e.g. "
            .. "\"4GB\"), got " .. tostring(wo.memory_limit), lv)
    end
  end
  local dlua_cmd = o.remote_dlua or "dlua"
  if type(dlua_cmd) ~= "string" or dlua_cmd == "" then
    error("SSHCluster: remote_dlua must be a command name or path, got "
          .. tostring(dlua_cmd), lv)
  end
  local tls_dir = o.tls_dir
  if tls_dir ~= nil then
    if type(tls_dir) ~= "string" or tls_dir == "" then
      error("SSHCluster: tls_dir must be a directory's path, got "
            .. (type(tls_dir) == "string" and '""' or type(tls_dir)), lv)
    end
    -- This process's clients use it too: it must be here as well.
    local f = io.open(tls_dir .. "/ca.pem")
    if not f then
      error(fmt("SSHCluster: tls_dir %s has no ca.pem (make the directory "
                .. "with `dlua tls-gen DIR`, at the same path on every "
                .. "host)", tls_dir), lv)
    end
    f:close()
  end
  local timeout = o.timeout or 30
  if type(timeout) ~= "number" or not (timeout > 0) then
    error("SSHCluster: timeout must be a number of seconds > 0, got "
          .. tostring(timeout), lv)
  end

  local self = setmetatable({
    hosts = hosts, connect_options = copts, _procs = {},
    _token = new_token(), tls_dir = tls_dir,
  }, SSHCluster)
  -- The token, for this process's clients: a file only we can read.
  self.token_file = os.tmpname() -- made with mode 0600
  local tf = assert(io.open(self.token_file, "w"))
  tf:write(self._token, "\n")
  tf:close()

  local ok, err = pcall(function()
    local sched = start(self, hosts[1], table.concat({
      q(dlua_cmd), "scheduler",
      "--host", q(so.host or listen_host(hosts[1])),
      "--port", q(tostring(so.port or 0)),
      "--dashboard-address", q(so.dashboard_address or ":0"),
      tls_dir and "--tls-dir " .. q(tls_dir) or "",
    }, " "))
    local sleep = require("dlua.client").sleep
    local deadline = require("dlua.core").time() + timeout
    local text
    while true do
      text = slurp(sched.log) or ""
      self.address = text:match("listening at (tcp://%S+)")
      if self.address then break end
      if text:find("dlua-ssh: exited", 1, true)
         or require("dlua.core").time() > deadline then
        local why = text:gsub("dlua%-ssh: exited with status (%d+)",
                              "(ssh exited with status %1)")
        error(fmt("SSHCluster: the scheduler on %s did not start%s: %s",
                  hosts[1], text:find("dlua-ssh: exited", 1, true) and ""
                  or fmt(" within %g s", timeout),
                  why:gsub("%s+$", ""):gsub("\n", "; ")), 0)
      end
      sleep(0.02)
    end
    self.dashboard_link = text:match("dashboard at (http://%S+)")
    local wcmd = {q(dlua_cmd), "worker", q(self.address)}
    if wo.nworkers then
      wcmd[#wcmd + 1] = "--nworkers " .. math.tointeger(wo.nworkers)
    end
    if wo.memory_limit then
      wcmd[#wcmd + 1] = "--memory-limit " .. q(tostring(wo.memory_limit))
    end
    if tls_dir then wcmd[#wcmd + 1] = "--tls-dir " .. q(tls_dir) end
    for i = 2, #hosts do start(self, hosts[i], table.concat(wcmd, " ")) end
  end)
  if not ok then
    self:close()
    error(err, lv)
  end
  return self
end

--- cluster:logs() -> {{host=, text=}, ...}: what each remote process
-- (and its ssh) said so far, the scheduler's first.
function SSHCluster:logs()
  local t = {}
  for _, p in ipairs(self._procs) do
    t[#t + 1] = {host = p.host, text = slurp(p.log) or ""}
  end
  return t
end

--- cluster:close(): stop the workers, then the scheduler, on every host.
function SSHCluster:close()
  if self.closed then return end
  self.closed = true
  for i = #self._procs, 1, -1 do stop(self._procs[i]) end
  for _, p in ipairs(self._procs) do os.remove(p.log) end
  if self.token_file then os.remove(self.token_file) end
end
SSHCluster.__close = SSHCluster.close
SSHCluster.__gc = SSHCluster.close

function SSHCluster:__tostring()
  return fmt("SSHCluster(scheduler at %s on %s, %d worker host%s%s%s)",
             self.address or "?", self.hosts[1], #self.hosts - 1,
             #self.hosts == 2 and "" or "s", self.tls_dir and ", TLS" or "",
             self.closed and ", closed" or "")
end

return M

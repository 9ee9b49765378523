-- Helpers for tests/cluster_spec.lua: process checks through /proc, bounded
-- polling, shell runs of the dlua binary, and small task bodies; and for
-- the specs that share a cluster per describe block.
local H = {}

H.DLUA = assert(os.getenv("DLUA"), "DLUA must name the dlua binary")

local function script_dir()
  local src = debug.getinfo(1, "S").source:sub(2)
  local dir = src:match("^(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then
    local p = io.popen("pwd")
    dir = p:read("l") .. "/" .. dir
    p:close()
  end
  return dir
end

-- tests/helpers/.. -> tests
H.TESTS = script_dir():gsub("/helpers$", "")
H.FIX = H.TESTS .. "/fixtures/cluster"

local F = require "helpers.files"
H.q, H.slurp, H.spit, H.rmdir = F.q, F.slurp, F.spit, F.rmdir

-- Short pause between polls (a child process: no busy CPU on 2 cores).
function H.nap(s)
  os.execute(("sleep %g"):format(s or 0.01))
end

local now = require("dlua").time

--- H.poll(pred, timeout) -> true as soon as pred() is true, false after
-- timeout seconds (default 10).
function H.poll(pred, timeout)
  local deadline = now() + (timeout or 10)
  local pause = 0.002
  while true do
    if pred() then return true end
    if now() >= deadline then return pred() end
    H.nap(pause)
    if pause < 0.05 then pause = pause * 2 end
  end
end

-- The state letter of /proc/<pid>/stat, or nil when there is no such pid.
function H.proc_state(pid)
  local s = H.slurp("/proc/" .. math.tointeger(pid) .. "/stat")
  if not s then return nil end
  return s:match("^%d+ %b() (%a)")
end

--- H.exists(pid): /proc/<pid> is there (a zombie counts as existing).
function H.exists(pid)
  return H.proc_state(pid) ~= nil
end

--- H.running(pid): there and not a zombie.
function H.running(pid)
  local st = H.proc_state(pid)
  return st ~= nil and st ~= "Z"
end

function H.self_pid()
  return tonumber(H.slurp("/proc/self/stat"):match("^(%d+)"))
end

function H.kill(pid, sig)
  return os.execute(("kill -%s %d 2>/dev/null"):format(sig or "KILL",
                                                       math.tointeger(pid)))
end

--- H.pids(cluster) -> sorted array of worker pids
function H.pids(cluster)
  local t = {}
  for _, w in ipairs(cluster:workers()) do t[#t + 1] = w.pid end
  table.sort(t)
  return t
end

--- H.by_id(cluster) -> {worker id = pid}
function H.by_id(cluster)
  local t = {}
  for _, w in ipairs(cluster:workers()) do t[w.id] = w.pid end
  return t
end

--- H.all_gone(pids, timeout): poll until no pid is left in /proc.
-- Returns true, or false and the pids still there.
function H.all_gone(pids, timeout, allow_zombie)
  local check = allow_zombie and H.running or H.exists
  local ok = H.poll(function()
    for _, p in ipairs(pids) do if check(p) then return false end end
    return true
  end, timeout)
  if ok then return true end
  local left = {}
  for _, p in ipairs(pids) do
    if check(p) then left[#left + 1] = p .. "(" .. H.proc_state(p) .. ")" end
  end
  return false, table.concat(left, " ")
end

--- H.sh(cmdline) -> exit status, stdout+stderr
function H.sh(cmdline)
  local out = os.tmpname()
  local full = ("DLUA=%s; export DLUA; (%s) >%s 2>&1; echo $?"):format(
    H.q(H.DLUA), cmdline, H.q(out))
  local p = assert(io.popen(full))
  local code = tonumber(p:read("a"):match("%d+"))
  p:close()
  local o = H.slurp(out)
  os.remove(out)
  return code, o
end

--- test side: pump a client until some worker executes a task (bounded)
function H.wait_executing(client, timeout)
  return H.poll(function()
    client:_pump(0)
    for _, w in ipairs(client.cluster:workers()) do
      if (w.executing or 0) > 0 then return true end
    end
    return false
  end, timeout or 5)
end

-- For the specs past one machine (net_spec, net_scheduler_spec).

--- A new private directory (mode 0700) with a token file (mode 0600)
-- holding token.
function H.token_dir(token)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -m 700 " .. H.q(dir)))
  H.spit(dir .. "/token", token .. "\n")
  assert(os.execute("chmod 600 " .. H.q(dir .. "/token")))
  return dir
end


--- Run the shell command cmd in the background, its output to file out.
function H.spawn(cmd, out)
  assert(os.execute(("(%s) >%s 2>&1 </dev/null &"):format(cmd, H.q(out))))
end

--- Whether this process may make network namespaces (root, with ip).
function H.can_netns()
  return os.execute("ip netns list >/dev/null 2>&1")
     and H.slurp("/proc/self/status"):match("\nUid:%s+0%s") ~= nil
end

-- For the specs that share one in-process cluster per describe block
-- (coord_spec, and any other that wants it).

--- H.local_cluster(opts) -> env, for setup(env.start) and
-- teardown(env.stop): start makes a dlua.LocalCluster of opts (its
-- dashboard off unless opts ask for one) and a Client of it, as
-- env.cluster and env.c; stop closes both, whatever a failed test or a
-- failed start left.
function H.local_cluster(opts)
  local dlua = require "dlua"
  local o = {dashboard_address = false}
  for k, v in pairs(opts or {}) do o[k] = v end
  local env = {}
  function env.start()
    env.cluster = dlua.LocalCluster(o)
    env.c = dlua.Client(env.cluster)
  end
  function env.stop()
    local c, cl = env.c, env.cluster
    env.c, env.cluster = nil, nil
    local ok, err = true, nil
    if c then ok, err = pcall(c.close, c) end
    if cl then cl:close() end
    assert(ok, err)
  end
  return env
end

--- H.stored(c) -> the results stored on c's workers now.  Garbage is
-- collected first: futures dropped but not yet collected hold theirs.
function H.stored(c)
  collectgarbage()
  collectgarbage()
  local n = 0
  for _, w in ipairs(c:scheduler_info().workers) do n = n + w.stored end
  return n
end

--- H.wait_for(what, pred [, timeout]): poll pred (the client's messages
-- are read between polls) until it holds; an error "timed out waiting for
-- <what>" after timeout seconds (default 20).
function H.wait_for(what, pred, timeout)
  local dlua = require "dlua"
  local deadline = now() + (timeout or 20)
  while not pred() do
    if now() >= deadline then
      error("timed out waiting for " .. what, 2)
    end
    dlua.sleep(0.02)
  end
end

return H

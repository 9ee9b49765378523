-- Helpers for the specs of the job launchers (mpi_spec, slurm_spec,
-- ssh_spec): a mark that every process a test starts carries in its
-- environment, and the end of all of them in `finally`.
local H = require "helpers.cluster"

local L = {}

--- L.tag() -> a new mark "dlua-spec-<pid>-<n>" for one test's processes.
function L.tag()
  return ("dlua-spec-%d-%d"):format(H.self_pid(), math.random(1, 1 << 30))
end

--- L.marked(tag) -> pids of live processes whose environment holds
-- DLUA_SPEC_TAG=tag (zombies left out).
function L.marked(tag)
  local want = "DLUA_SPEC_TAG=" .. tag
  local pids, me = {}, H.self_pid()
  local p = io.popen("ls /proc")
  for name in p:lines() do
    local pid = tonumber(name)
    if pid and pid ~= me then
      local env = H.slurp("/proc/" .. pid .. "/environ")
      if env and ("\0" .. env):find("\0" .. want .. "\0", 1, true)
         and H.running(pid) then
        pids[#pids + 1] = pid
      end
    end
  end
  p:close()
  return pids
end

--- L.stop_marked(tag [, timeout]): SIGTERM every marked process, then
-- SIGKILL what is left after timeout seconds (default 5); true when none
-- was left to kill.
function L.stop_marked(tag, timeout)
  local clean = true
  for _, pid in ipairs(L.marked(tag)) do H.kill(pid, "TERM") end
  if not H.poll(function() return #L.marked(tag) == 0 end, timeout or 5) then
    clean = false
    for _ = 1, 3 do
      for _, pid in ipairs(L.marked(tag)) do H.kill(pid, "KILL") end
      if H.poll(function() return #L.marked(tag) == 0 end, 2) then break end
    end
  end
  return clean
end

--- L.have(cmd): the command is on PATH.
function L.have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

--- L.free_port() -> a TCP port on 127.0.0.1 nothing listens on now.
function L.free_port()
  for _ = 1, 50 do
    local port = math.random(20000, 39999)
    local p = io.popen("ss -Htln 'sport = :" .. port .. "'")
    local busy = p:read("a")
    p:close()
    if busy == "" then return port end
  end
  error("no free port found")
end

--- L.sshd(dir, tag) -> {port=, connect_options=, pid=}: an sshd on
-- 127.0.0.1 for this test alone: its own host key, an authorised key made
-- for the test, a known_hosts naming that host key (so the client checks
-- it), and sessions that carry tag (and the suite's mark) in their
-- environment so that everything they start can be found and stopped.
-- Stop it with L.stop_sshd(s) (and its sessions' with L.stop_marked).
function L.sshd(dir, tag)
  local function run(cmd)
    local code, out = H.sh(cmd)
    assert(code == 0, cmd .. ": " .. out)
  end
  run(("ssh-keygen -q -t ed25519 -N '' -f %s"):format(H.q(dir .. "/hostkey")))
  run(("ssh-keygen -q -t ed25519 -N '' -f %s"):format(H.q(dir .. "/id")))
  run(("cp %s %s && chmod 600 %s"):format(H.q(dir .. "/id.pub"),
      H.q(dir .. "/authorized_keys"), H.q(dir .. "/authorized_keys")))
  run("mkdir -p /run/sshd && chmod 755 /run/sshd") -- privilege separation
  local port = L.free_port()
  local env = {"DLUA_SPEC_TAG=" .. tag}
  for _, k in ipairs{"DLUA_TEST_RUN", "ASAN_OPTIONS", "UBSAN_OPTIONS",
                     "LSAN_OPTIONS"} do
    local v = os.getenv(k)
    if v then env[#env + 1] = k .. "=" .. v end
  end
  H.spit(dir .. "/sshd_config", table.concat({
    "ListenAddress 127.0.0.1",
    "Port " .. port,
    "HostKey " .. dir .. "/hostkey",
    "AuthorizedKeysFile " .. dir .. "/authorized_keys",
    "PidFile " .. dir .. "/sshd.pid",
    "PermitRootLogin prohibit-password",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    "StrictModes no", -- its files lie under /tmp
    "SetEnv " .. table.concat(env, " "),
    "",
  }, "\n"))
  local pub = H.slurp(dir .. "/hostkey.pub"):match("^(%S+ %S+)")
  H.spit(dir .. "/known_hosts", ("[127.0.0.1]:%d %s\n"):format(port, pub))
  H.spawn(("DLUA_SPEC_TAG=%s %s -D -e -f %s"):format(tag,
          H.q("/usr/sbin/sshd"), H.q(dir .. "/sshd_config")),
          dir .. "/sshd.log")
  local s = {port = port, dir = dir, tag = tag, connect_options = {
    "-p", tostring(port), "-i", dir .. "/id", "-o", "IdentitiesOnly=yes",
    "-o", "UserKnownHostsFile=" .. dir .. "/known_hosts",
    "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR",
  }}
  -- sshd drops its environment: it is found by its pid file, not its mark.
  local up = H.poll(function()
    s.pid = tonumber(H.slurp(dir .. "/sshd.pid") or "")
    local p = io.popen("ss -Htln 'sport = :" .. port .. "'")
    local l = p:read("a")
    p:close()
    return s.pid ~= nil and l ~= ""
  end, 20)
  assert(up, "sshd did not start: " .. (H.slurp(dir .. "/sshd.log") or ""))
  return s
end

--- L.stop_sshd(s): stop the sshd of L.sshd (TERM, then KILL), if it
-- started; its sessions' processes go with L.stop_marked.
function L.stop_sshd(s)
  local pid = s and s.pid or tonumber(H.slurp(s.dir .. "/sshd.pid") or "")
  if not pid or not H.running(pid) then return end
  H.kill(pid, "TERM")
  if not H.poll(function() return not H.running(pid) end, 5) then
    H.kill(pid, "KILL")
    H.poll(function() return not H.running(pid) end, 5)
  end
end

return L

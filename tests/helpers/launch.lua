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

return L

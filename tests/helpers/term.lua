-- A real pseudo-terminal for specs: a private tmux server (tmux -L
-- dlua-test-<pid>-<n>) running a command in a 120x40 pane.  Specs type
-- into it with send-keys and poll capture-pane until the text they expect
-- shows up or a deadline passes.  Kill the server at the end of every case.
local now = require("dlua").time
local F = require "helpers.files"
local q, slurp = F.q, F.slurp

local T = {}
T.TIMEOUT = 15 -- seconds to wait for any one piece of output


local function exec(cmd)
  local ok, _, code = os.execute(cmd .. " >/dev/null 2>&1")
  return ok == true and code == 0
end


local PID = io.popen("echo $PPID"):read("l")
local serial = 0

local Term = {}
Term.__index = Term

--- T.start(cmdline) -> term: runs the shell line cmdline in a new pane;
-- its exit status is recorded for Term:wait_exit.
function T.start(cmdline)
  serial = serial + 1
  local self = setmetatable({}, Term)
  self.sock = ("dlua-test-%s-%d"):format(PID, serial)
  self.status = os.tmpname()
  os.remove(self.status)
  local inner = ("%s; echo \"exit=$?\" > %s"):format(cmdline, q(self.status))
  self.tmux = "tmux -f /dev/null -L " .. q(self.sock)
  assert(exec(self.tmux .. " new-session -d -x 120 -y 40 " .. q(inner)),
    "tmux did not start")
  local p = io.popen(self.tmux .. " display-message -p '#{socket_path}'")
  self.socket = p:read("l")
  p:close()
  return self
end

function Term:kill()
  exec(self.tmux .. " kill-server")
  os.remove(self.status)
  if self.socket and self.socket ~= "" then os.remove(self.socket) end
end

function Term:screen()
  local p = io.popen(self.tmux .. " capture-pane -p 2>/dev/null")
  local s = p:read("a")
  p:close()
  return s
end

--- term:wait(pred, what) -> screen once pred(screen) is true; raises with
-- the last screen after T.TIMEOUT seconds.
function Term:wait(pred, what)
  local deadline = now() + T.TIMEOUT
  local s
  repeat
    s = self:screen()
    if pred(s) then return s end
    os.execute("sleep 0.05")
  until now() > deadline
  error(("timed out waiting for %s; screen:\n%s"):format(what, s), 2)
end

--- term:wait_text(text [, n]): text on the screen at least n times.
function Term:wait_text(text, n)
  n = n or 1
  return self:wait(function(s)
    local count, init = 0, 1
    while true do
      local i, j = s:find(text, init, true)
      if not i then break end
      count, init = count + 1, j + 1
    end
    return count >= n
  end, ("%q x%d"):format(text, n))
end

--- term:wait_line(line): a line of the screen equals line (trailing
-- blanks ignored).
function Term:wait_line(line)
  return self:wait(function(s)
    for l in (s .. "\n"):gmatch("([^\n]*)\n") do
      if l:gsub("%s+$", "") == line then return true end
    end
    return false
  end, ("the line %q"):format(line))
end

--- term:type(text): type text literally, no Enter.
function Term:type(text)
  assert(exec(self.tmux .. " send-keys -l " .. q(text)))
end

--- term:line(text): type text, then Enter.
function Term:line(text)
  assert(exec(self.tmux .. " send-keys -l " .. q(text)))
  assert(exec(self.tmux .. " send-keys Enter"))
end

--- term:quiet_line(text): type a line that prints nothing, then wait for
-- the next prompt, so the keys of the next line cannot arrive while this
-- one still runs.
function Term:quiet_line(text)
  self:line(text)
  self:wait_text("> " .. text .. "\n>")
end

function Term:key(name)
  assert(exec(self.tmux .. " send-keys " .. name))
end

--- term:wait_exit() -> the command's exit status, once it has ended.
function Term:wait_exit()
  local deadline = now() + T.TIMEOUT
  repeat
    if not exec(self.tmux .. " has-session") then
      local s = slurp(self.status)
      return s and tonumber(s:match("exit=(%d+)"))
    end
    os.execute("sleep 0.05")
  until now() > deadline
  error("the command did not exit; screen:\n" .. self:screen(), 2)
end

T.q, T.exec, T.slurp = q, exec, slurp
return T

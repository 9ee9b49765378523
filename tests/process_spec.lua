-- Process hygiene: what tasks' children inherit, what they may leave
-- behind, signals to the dlua command, a killed client, descriptors that
-- run out, and long TMPDIRs.  Real processes and signals throughout; every
-- wait polls with a deadline.
local BUSTED_ENV = _ENV
local describe, it, assert = describe, it, assert
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"
-- Under AddressSanitizer a process needs several times the memory for the
-- same data, so memory limits and sizes scale together (as in memory_spec).
local SCALE = os.getenv("DLUA_SANITIZE") and 3 or 1

math.randomseed(os.time(), H.self_pid())

--- A sleep duration no other process on this machine uses, so pgrep finds
-- only the process a test started.
local function unique_sleep()
  return ("%d.%06d"):format(300 + math.random(600), math.random(999999))
end

--- pids of the processes running exactly "sleep <dur>"
local function sleepers(dur)
  local p = io.popen("pgrep -x -f " .. H.q("sleep " .. dur))
  local t = {}
  for l in p:lines() do t[#t + 1] = tonumber(l) end
  p:close()
  return t
end

--- {"3 -> socket:[123]", ...}: the descriptors >= 3 of process pid (or of
-- the shell that runs the listing when pid is nil), as a set.
local function fds(pid)
  local p = io.popen("ls -l /proc/" .. (pid and math.tointeger(pid) or "$$")
                     .. "/fd 2>/dev/null")
  local t = {}
  for l in p:lines() do
    local n, target = l:match(" (%d+) %-> (.*)$")
    if n and tonumber(n) >= 3 then t[n .. " -> " .. target] = true end
  end
  p:close()
  return t
end

--- entries of set a that are not in set b, as one string
local function extra(a, b)
  local out = {}
  for k in pairs(a) do if not b[k] then out[#out + 1] = k end end
  table.sort(out)
  return table.concat(out, ", ")
end

--- a fresh empty directory
local function tempdir()
  local p = io.popen("mktemp -d")
  local d = p:read("l")
  p:close()
  return d
end

local function listing(dir)
  local p = io.popen("ls -A " .. H.q(dir) .. " 2>/dev/null")
  local s = p:read("a")
  p:close()
  return s
end

--- The task side: the descriptors a process started by a task inherits.
local function child_fds()
  local p = io.popen("ls -l /proc/$$/fd")
  local s = p:read("a")
  p:close()
  return s
end

local function parse_fds(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do
    local n, target = l:match(" (%d+) %-> (.*)$")
    if n and tonumber(n) >= 3 then t[n .. " -> " .. target] = true end
  end
  return t
end

--- Start `dlua script` in the background with env (a shell prefix); returns
-- the file collecting its output, which ends with "exit <status>".
local function start_script(src, env)
  local script, out = os.tmpname(), os.tmpname()
  H.spit(script, src)
  -- The subshell's own descriptors go nowhere: one left holding busted's
  -- stdout would keep the suite's output pipe open after a failed test.
  os.execute(("(%s %s %s > %s 2>&1; echo \"exit $?\" >> %s) "
              .. "</dev/null >/dev/null 2>&1 &"):format(
    env or "", H.q(H.DLUA), H.q(script), H.q(out), H.q(out)))
  return out, script
end

--- A script that starts a cluster in TMPDIR, leaves a task's child
-- running, reports "pid <client> <dir> <worker pids...>" and waits.
local function waiting_script(dur, opts)
  return ([[
    local dlua = require "dlua"
    local c = dlua.Client{n_workers = 2, dashboard_address = false,
                          memory_limit = "%d MiB"}
    %s
    c:submit(function() os.execute("sleep %s &") end):result()
    local pids = {}
    for _, w in ipairs(c.cluster:workers()) do pids[#pids + 1] = w.pid end
    local me = io.open("/proc/self/stat"):read("l"):match("^%%d+")
    print("pid " .. me .. " " .. c.cluster.address:match("^local://(.*)$")
          .. " " .. table.concat(pids, " "))
    io.stdout:flush()
    while true do os.execute("sleep 0.05") end
  ]]):format(64 * SCALE, opts or "", dur)
end

--- Kill whatever a started script may have left: the client (found by
-- its script's unique path), its workers and the sleeper its task started.
local function stop_all(script, workers, dur)
  os.execute("pkill -KILL -f " .. H.q(script) .. " 2>/dev/null")
  for _, p in ipairs(workers or {}) do H.kill(p, "KILL") end
  for _, p in ipairs(sleepers(dur)) do H.kill(p, "KILL") end
end

--- Wait for the "pid ..." line; returns client pid, dir, worker pids.
local function read_pids(out)
  local line
  assert.is_true(H.poll(function()
    line = (H.slurp(out) or ""):match("pid ([^\n]+)\n")
    return line ~= nil
  end, 60), H.slurp(out))
  local words = {}
  for w in line:gmatch("%S+") do words[#words + 1] = w end
  local client, dir = tonumber(words[1]), words[2]
  local workers = {}
  for i = 3, #words do workers[#workers + 1] = tonumber(words[i]) end
  return client, dir, workers
end

describe("processes", function()
  it("tasks' children inherit stdin, stdout and stderr only", function()
    local before = fds()
    local c = dlua.Client{n_workers = 1, dashboard_address = "127.0.0.1:0"}
    finally(function() c:close() end)
    -- A big value makes a shared block on both sides.
    local big = c:scatter(("b"):rep(6 * 1048576))
    assert.are.equal(6 * 1048576, #c:submit(function(s) return s end, big)
                                    :result(30))
    local seen = parse_fds(c:submit(child_fds):result(30))
    assert.are.equal("", extra(seen, before))
    -- The client's own children do not get its cluster's descriptors.
    assert.are.equal("", extra(fds(), before))
  end)

  it("close() ends what tasks left running, and returns at once", function()
    local bg, fg = unique_sleep(), unique_sleep()
    local code, out = H.sh(("timeout -k 1 30 %s -e %s"):format(H.q(H.DLUA),
      H.q(([[
        local dlua = require "dlua"
        local c = dlua.Client{n_workers = 2, dashboard_address = false}
        c:submit(function() os.execute("sleep %s &") end):result()
        c:submit(function() os.execute("sleep %s") end) -- runs on
        local t = dlua.time()
        repeat
          local p = io.popen("pgrep -x -f 'sleep %s'")
          local found = p:read("l")
          p:close()
        until found or dlua.time() - t > 20
        local pids = {}
        for _, w in ipairs(c.cluster:workers()) do pids[#pids+1] = w.pid end
        print("workers " .. table.concat(pids, " "))
        c:close()
        print("closed")
      ]]):format(bg, fg, fg))))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("closed", 1, true), out)
    local left = sleepers(bg)
    for _, p in ipairs(sleepers(fg)) do left[#left + 1] = p end
    for p in out:match("workers ([%d ]+)"):gmatch("%d+") do
      left[#left + 1] = tonumber(p)
    end
    assert.is_true(H.all_gone(left, 10, true))
    assert.are.same({}, sleepers(bg))
    assert.are.same({}, sleepers(fg))
  end)

  it("leaves a detached child running, with none of its descriptors",
     function()
    local dur = unique_sleep()
    local before = fds()
    local code, out = H.sh(("timeout -k 1 30 %s -e %s"):format(H.q(H.DLUA),
      H.q(([[
        local dlua = require "dlua"
        local c = dlua.Client{n_workers = 1, dashboard_address = false}
        c:submit(function() os.execute("setsid sleep %s &") end):result()
        local t, found = dlua.time()
        repeat -- until it runs in a session of its own
          local p = io.popen("pgrep -x -f 'sleep %s'")
          found = p:read("l")
          p:close()
          local st = found and io.open("/proc/" .. found .. "/stat")
          local sid = st and st:read("l"):match("^%%d+ %%b() %%a %%d+ %%d+ (%%d+)")
          if st then st:close() end
          if sid ~= found then found = nil end
        until found or dlua.time() - t > 20
        c:close()
        print("closed")
      ]]):format(dur, dur))))
    local left = sleepers(dur)
    finally(function() for _, p in ipairs(left) do H.kill(p) end end)
    assert.are.equal(0, code, out)
    assert.truthy(out:find("closed", 1, true), out)
    assert.are.equal(1, #left)
    assert.is_true(H.running(left[1]))
    assert.are.equal("", extra(fds(left[1]), before))
  end)

  it("a SIGKILLed client's workers remove its directory and spill files",
     function()
    local tmp, dur = tempdir(), unique_sleep()
    local out, script = start_script(waiting_script(dur, ([[
      -- 24 x 4 MiB on 2 x 64 MiB (times SCALE): some of it is spilled.
      local n, s = 24 * %d, 4 * 1048576
      local is, ss = {}, {}
      for i = 1, n do is[i], ss[i] = i, s end
      local fs = c:map(function(i, n) return ("x"):rep(n) .. i end, is, ss)
      dlua.wait(fs, {timeout = 60})
      local t = dlua.time()
      repeat
        local sp = 0
        for _, w in ipairs(c:scheduler_info().workers) do
          sp = sp + w.spilled
        end
      until sp > 0 or dlua.time() - t > 20
    ]]):format(SCALE)), "TMPDIR=" .. H.q(tmp))
    local client, dir, workers
    finally(function()
      -- A failed assertion must not leave the client waiting forever.
      stop_all(script, workers, dur)
      os.remove(out)
      os.remove(script)
      os.execute("rm -rf " .. H.q(tmp))
    end)
    client, dir, workers = read_pids(out)
    assert.truthy(listing(dir):find("spill", 1, true), listing(dir))
    assert.are.equal(1, #sleepers(dur), H.slurp(out))
    H.kill(client, "KILL")
    local all = {client}
    for _, p in ipairs(workers) do all[#all + 1] = p end
    for _, p in ipairs(sleepers(dur)) do all[#all + 1] = p end
    assert.is_true(H.all_gone(all, 15, true))
    assert.is_true(H.poll(function() return listing(tmp) == "" end, 10),
                   "left in TMPDIR: " .. listing(tmp))
  end)

  for _, sig in ipairs{{"TERM", 15}, {"HUP", 1}} do
    it("SIG" .. sig[1] .. " to dlua closes its clusters and kills it",
       function()
      local tmp, dur = tempdir(), unique_sleep()
      local out, script = start_script(waiting_script(dur),
                                       "TMPDIR=" .. H.q(tmp))
      local workers
      finally(function()
        stop_all(script, workers, dur)
        os.remove(out)
        os.remove(script)
        os.execute("rm -rf " .. H.q(tmp))
      end)
      local client, _
      client, _, workers = read_pids(out)
      H.kill(client, sig[1])
      assert.is_true(H.poll(function()
        return (H.slurp(out) or ""):find("exit %d+")
      end, 15), H.slurp(out))
      assert.are.equal(128 + sig[2],
                       tonumber(H.slurp(out):match("exit (%d+)")))
      local all = {}
      for _, p in ipairs(workers) do all[#all + 1] = p end
      for _, p in ipairs(sleepers(dur)) do all[#all + 1] = p end
      assert.is_true(H.all_gone(all, 10, true))
      assert.are.same({}, sleepers(dur))
      assert.are.equal("", listing(tmp))
    end)
  end

  it("a cluster started without free descriptors fails with an error",
     function()
    local code, out = H.sh(("ulimit -n 200; timeout -k 1 120 %s -e %s")
      :format(H.q(H.DLUA), H.q([[
        local dlua = require "dlua"
        local hs = {}
        local function fill()
          while true do
            local f = io.open("/dev/null")
            if not f then return end
            hs[#hs + 1] = f
          end
        end
        fill()
        local total = #hs
        for free = 0, 24 do
          fill()
          for _ = 1, free do table.remove(hs):close() end
          local ok, c = pcall(dlua.LocalCluster, {n_workers = 1})
          if ok then c:close() else print(free, c) end
        end
        for _, f in ipairs(hs) do f:close() end
        hs = {}
        fill()
        print("total " .. total .. " " .. #hs)
      ]])))
    assert.are.equal(0, code, out)
    local n = 0
    for l in out:gmatch("[^\n]+") do
      if l:match("^%d+\t") then
        n = n + 1
        assert.truthy(l:find("too many open files", 1, true), l)
      end
    end
    assert.truthy(n > 0, out)
    -- Nothing leaked by the failed starts.
    local a, b = out:match("total (%d+) (%d+)")
    assert.are.equal(a, b, out)
  end)

  it("replaces a dead worker once descriptors are free again", function()
    local code, out = H.sh(("ulimit -n 200; timeout -k 1 60 %s -e %s")
      :format(H.q(H.DLUA), H.q([[
        local dlua = require "dlua"
        local c = dlua.LocalCluster{n_workers = 1, dashboard_address = false}
        local pid = c:workers()[1].pid
        local function wait_for(n)
          local t = dlua.time()
          while #c:workers() ~= n and dlua.time() - t < 20 do
            os.execute("sleep 0.02")
          end
          return #c:workers()
        end
        local hs = {}
        while true do
          local f = io.open("/dev/null")
          if not f then break end
          hs[#hs + 1] = f
        end
        os.execute("kill -9 " .. pid)
        print("gone " .. wait_for(0))
        for _, f in ipairs(hs) do f:close() end
        print("replaced " .. wait_for(1))
        print("new pid " .. tostring(c:workers()[1].pid ~= pid))
        c:close()
      ]])))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("gone 0\nreplaced 1\nnew pid true", 1, true), out)
    assert.truthy(out:find("cannot start a worker (too many open files)", 1,
                           true), out)
  end)

  -- Workers are forked by the client process's zygote (dl_zygote.h).
  local zygote_script = [[
    local dlua = require "dlua"
    local function ppid(pid)
      local f = io.open("/proc/" .. math.tointeger(pid) .. "/stat")
      if not f then return nil end
      local p = f:read("l"):match("^%d+ %b() %a (%d+)")
      f:close()
      return tonumber(p)
    end
    local function cmd(pid)
      local f = io.open("/proc/" .. math.tointeger(pid) .. "/cmdline")
      local s = f and f:read("a"):gsub("%z", " ") or ""
      if f then f:close() end
      return s
    end
    local me = tonumber(io.open("/proc/self/stat"):read("l"):match("^%d+"))
    local function parents(c)
      local t = {}
      for _, w in ipairs(c.cluster:workers()) do t[#t + 1] = ppid(w.pid) end
      return t
    end
    local function report(tag, c)
      local ps = parents(c)
      local z = ps[1]
      print(tag, #ps, ps[1] == ps[#ps] and "same" or "differ",
            z == me and "client" or ppid(z) == me and
              (cmd(z):find("--zygote", 1, true) and "zygote" or "other")
              or "?", z)
      return z
    end
    local c = dlua.Client{n_workers = 2, dashboard_address = false}
    local z1 = report("first", c)
    print("env", c:submit(function()
      return tostring(os.getenv("ZYG_MARK")) .. " "
             .. tostring(os.getenv("DLUA_WORKER")) .. " "
             .. io.popen("pwd"):read("l")
    end):result())
    c:close()
    c = dlua.Client{n_workers = 2, dashboard_address = false}
    local z2 = report("second", c)
    print("reused", z1 == z2)
    if arg[1] == "kill" then
      os.execute("kill -9 " .. math.tointeger(z2))
      local t = dlua.time()
      local ok
      repeat
        local ws = c.cluster:workers()
        ok = #ws == 2
        for _, w in ipairs(ws) do -- forked by a new zygote of ours (the
          -- old workers, orphaned, may be listed until their links end)
          local p = ppid(w.pid)
          ok = ok and p ~= nil and p ~= z2 and ppid(p) == me
        end
        if not ok then dlua.sleep(0.02) end
      until ok or dlua.time() - t > 30
      report("replaced", c)
      print("sum", c:submit(function(a, b) return a + b end, 2, 3):result())
    end
    c:close()
    print("zygote " .. math.tointeger(z2))
  ]]

  it("forks workers from one zygote per client process, which leaves with "
     .. "it", function()
    local script = os.tmpname()
    H.spit(script, zygote_script)
    finally(function() os.remove(script) end)
    local code, out = H.sh(("cd /tmp && ZYG_MARK=seen timeout -k 1 60 %s %s")
                           :format(H.q(H.DLUA), H.q(script)))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("first\t2\tsame\tzygote\t", 1, true), out)
    assert.truthy(out:find("second\t2\tsame\tzygote\t", 1, true), out)
    assert.truthy(out:find("reused\ttrue", 1, true), out)
    -- The client's environment and directory, and the worker's mark.
    assert.truthy(out:find("env\tseen 1 /tmp\n", 1, true), out)
    -- It ended with its client (and its spare workers with it).
    local z = tonumber(out:match("zygote (%d+)"))
    assert.is_true(H.all_gone({z}, 10, true))
    -- Turned off, each worker is the client's own child.
    code, out = H.sh(("DLUA_ZYGOTE=0 timeout -k 1 60 %s %s")
                     :format(H.q(H.DLUA), H.q(script)))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("first\t2\tsame\tclient\t", 1, true), out)
  end)

  it("a zygote's worker leads a process group in the client's session, "
     .. "and its autogroup", function()
    -- pid, process group and session of process pid ("self" for this
    -- one), from /proc/PID/stat (the fields after the command's parens).
    local function ids(pid)
      local f = assert(io.open("/proc/" .. pid .. "/stat"))
      local l = f:read("l")
      f:close()
      local me, pgrp, sid = l:match("^(%d+) %b() %a %d+ (%d+) (%d+)")
      return tonumber(me), tonumber(pgrp), tonumber(sid)
    end
    -- The CPU group the kernel shares time by: the autogroup, and the
    -- cgroups. /proc/self/autogroup is absent on a kernel without
    -- autogroups and empty for a process whose cgroup has the cpu
    -- controller (the cgroup then decides, and is what we compare).
    local function slurp(path)
      local f = io.open(path)
      if f == nil then return "" end
      local s = f:read("a") or ""
      f:close()
      return s
    end
    local function autogroup()
      local g = slurp("/proc/self/autogroup"):match("^(%S+)") or "none"
      return g .. "\n" .. slurp("/proc/self/cgroup")
    end
    local c = dlua.Client{n_workers = 1, dashboard_address = false}
    finally(function() c:close() end)
    local w = c:submit(function()
      local me, pgrp, sid = ids("self")
      return {me = me, pgrp = pgrp, sid = sid, ag = autogroup()}
    end):result(30)
    local _, mypgrp, mysid = ids("self")
    -- Its own group (what its tasks start is ended with it), not ours.
    assert.are.equal(w.me, w.pgrp)
    assert.are_not.equal(mypgrp, w.pgrp)
    -- Our session: the cluster's threads share one autogroup, so a
    -- thread that yields its CPU can give it to another process's.
    assert.are.equal(mysid, w.sid)
    assert.are.equal(autogroup(), w.ag)
  end)

  it("replaces the workers of a killed zygote from a new one", function()
    local script = os.tmpname()
    H.spit(script, zygote_script)
    finally(function() os.remove(script) end)
    local code, out = H.sh(("timeout -k 1 60 %s %s kill")
                           :format(H.q(H.DLUA), H.q(script)))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("replaced\t2\tsame\tzygote\t", 1, true), out)
    assert.truthy(out:find("sum\t5", 1, true), out)
    local old = tonumber(out:match("second\t2\tsame\tzygote\t(%d+)"))
    local new = tonumber(out:match("replaced\t2\tsame\tzygote\t(%d+)"))
    assert.are_not.equal(old, new)
  end)

  it("close() takes a worker's closed link as its exit: it does not wait "
     .. "for the zygote to reap it, which still does", function()
    -- The zygote is stopped across close(): close() must return without
    -- its word, and once it runs again it reaps the workers (the guard of
    -- run-tests would also see one left behind).
    local code, out = H.sh(("timeout -k 1 30 %s -e %s"):format(H.q(H.DLUA),
      H.q([[
        local dlua = require "dlua"
        local c = dlua.Client{n_workers = 2, dashboard_address = false}
        assert(c:submit(function(x) return x + 1 end, 1):result() == 2)
        local pids = {}
        for _, w in ipairs(c.cluster:workers()) do
          pids[#pids + 1] = math.tointeger(w.pid)
        end
        local st = io.open("/proc/" .. pids[1] .. "/stat"):read("l")
        local z = st:match("^%d+ %b() %a (%d+)")
        print("zygote " .. z)
        io.stdout:flush()
        os.execute("kill -STOP " .. z)
        c:close()
        print("closed")
        os.execute("kill -CONT " .. z)
        print("workers " .. table.concat(pids, " "))
      ]])))
    finally(function() -- should close() hang, let the zygote leave
      local z = out:match("zygote (%d+)")
      if z then os.execute("kill -CONT " .. z .. " 2>/dev/null") end
    end)
    assert.are.equal(0, code, out)
    assert.truthy(out:find("closed", 1, true), out)
    local left = {}
    for p in out:match("workers ([%d ]+)"):gmatch("%d+") do
      left[#left + 1] = tonumber(p)
    end
    assert.are.equal(2, #left, out)
    -- Gone, not even zombies: reaped.
    assert.is_true(H.all_gone(left, 10))
  end)

  it("close() ends what a task left running, also in a process that "
     .. "exits right after", function()
    -- close() takes a worker's closed link as its exit, and this process
    -- may end before its zygote has reaped the worker and ended its
    -- process group; the zygote then leaves too.  Made certain here: the
    -- zygote is stopped across close() and the exit, and runs again only
    -- after.  Before close() ended the group itself, the task's child
    -- outlived the cluster every time.
    local dur = unique_sleep()
    local code, out = H.sh(("timeout -k 1 60 %s -e %s"):format(
      H.q(H.DLUA), H.q(([[
        local dlua = require "dlua"
        local c = dlua.Client{n_workers = 1, dashboard_address = false}
        c:submit(function() os.execute("sleep %s &") end):result()
        local pid = math.tointeger(c.cluster:workers()[1].pid)
        local st = io.open("/proc/" .. pid .. "/stat"):read("l")
        local z = st:match("^%%d+ %%b() %%a (%%d+)")
        print("zygote " .. z)
        io.stdout:flush()
        os.execute("kill -STOP " .. z)
        c:close()
      ]]):format(dur))))
    local z = out:match("zygote (%d+)")
    finally(function()
      if z then os.execute("kill -CONT " .. z .. " 2>/dev/null") end
      for _, p in ipairs(sleepers(dur)) do H.kill(p, "KILL") end
    end)
    assert.are.equal(0, code, out)
    assert.truthy(z, out)
    os.execute("kill -CONT " .. z)
    -- The zygote wakes, finds its client gone and leaves: by then, no
    -- child of a task may be left.
    assert.is_true(H.all_gone({tonumber(z)}, 10))
    assert.are.same({}, sleepers(dur))
  end)

  it("refuses a TMPDIR too long for socket paths, takes one that fits",
     function()
    local base = tempdir()
    finally(function() os.execute("rm -rf " .. H.q(base)) end)
    local function dir_of(len)
      local d = base .. "/" .. ("d"):rep(len - #base - 1)
      os.execute("mkdir -p " .. H.q(d))
      return d
    end
    local long, fits = dir_of(100), dir_of(78)
    local src = [[
      local dlua = require "dlua"
      local ok, c = pcall(dlua.LocalCluster, {n_workers = 1,
                          dashboard_address = false})
      if not ok then print("error: " .. tostring(c)) return end
      local cl = dlua.Client(c)
      print("sum " .. cl:submit(function(a, b) return a + b end, 2, 3):result())
      cl:close()
      c:close()
    ]]
    local code, out = H.sh(("TMPDIR=%s timeout -k 1 60 %s -e %s"):format(
      H.q(long), H.q(H.DLUA), H.q(src)))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("error: .*TMPDIR is too long"), out)
    assert.are.equal("", listing(long))
    code, out = H.sh(("TMPDIR=%s timeout -k 1 60 %s -e %s"):format(
      H.q(fits), H.q(H.DLUA), H.q(src)))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("sum 5", 1, true), out)
    assert.are.equal("", listing(fits))
  end)
end)

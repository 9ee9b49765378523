-- `dlua scheduler` and clients in other processes: the scheduler in one
-- network namespace, a worker in each of two others, and the client in a
-- fourth, joined by veth pairs on a bridge, so nothing but TCP is between
-- them; client:close() leaves the cluster running, client:shutdown() stops
-- it.  The faults (a killed scheduler, a wrong token, a second client, a
-- malformed scheduler file, two schedulers on one file) run on the
-- loopback.  Every wait polls with a deadline; every namespace and process
-- is removed at the end of its test.
local BUSTED_ENV = _ENV
local describe, it, assert, pending = describe, it, assert, pending
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"

math.randomseed(os.time(), H.self_pid())

local TOKEN = "net-scheduler-spec-token-0123456789"

local function workdir() return H.token_dir(TOKEN) end
local rmdir, spawn, can_netns = H.rmdir, H.spawn, H.can_netns

local function ns_empty(ns)
  local p = io.popen("ip netns pids " .. ns .. " 2>/dev/null")
  local any = p:read("l")
  p:close()
  return any == nil
end

-- The scheduler file's fields, once it is there.
local function sched_file(path, timeout)
  local t
  H.poll(function()
    t = require("dlua.cluster").read_scheduler_file(path)
    return t ~= nil
  end, timeout)
  return t
end

-- A `dlua scheduler` on the loopback for the workdir dir (its file
-- dir/sf, its output dir/sched.out): the scheduler file's fields.
local function loopback_scheduler(dir)
  spawn(("%s scheduler --host 127.0.0.1 --port 0 --dashboard-address none "
         .. "--scheduler-file %s --token-file %s"):format(
          H.q(H.DLUA), H.q(dir .. "/sf"), H.q(dir .. "/token")),
        dir .. "/sched.out")
  return assert(sched_file(dir .. "/sf", 30), "no scheduler file")
end

-- A client script: joins with the scheduler file, runs body (Lua text,
-- the client is c) and writes what it returns to out.
local function client_script(dir, name, body)
  local path = dir .. "/" .. name .. ".lua"
  H.spit(path, ([[
local dlua = require "dlua"
local c = dlua.Client{scheduler_file = %q, token_file = %q}
local result = (function(c) %s end)(c)
local f = assert(io.open(%q, "w")); f:write(result); f:close()
os.rename(%q, %q)
]]):format(dir .. "/sf", dir .. "/token", body, dir .. "/" .. name .. ".tmp",
           dir .. "/" .. name .. ".tmp", dir .. "/" .. name .. ".res"))
  return path
end

local function wait_result(dir, name, timeout)
  local ok = H.poll(function()
    return H.slurp(dir .. "/" .. name .. ".res") ~= nil
  end, timeout)
  assert(ok, name .. ": no result; it said: "
         .. (H.slurp(dir .. "/" .. name .. ".out") or "")
         .. "; the scheduler said: " .. (H.slurp(dir .. "/sched.out") or ""))
  return H.slurp(dir .. "/" .. name .. ".res")
end

describe("dlua scheduler", function()
  it("serves a client in another namespace; close leaves it running, "
     .. "shutdown stops it and its workers", function()
    if not can_netns() then
      pending("needs root and ip netns")
      return
    end
    local tag = ("%d%03d"):format(H.self_pid() % 100000, math.random(999))
    local S, A, B, C = "dsS" .. tag, "dsA" .. tag, "dsB" .. tag, "dsC" .. tag
    local dir = workdir()
    local made = {}
    finally(function()
      for _, ns in ipairs(made) do
        os.execute("ip netns pids " .. ns .. " 2>/dev/null | xargs -r kill -9")
      end
      for _, ns in ipairs(made) do
        H.poll(function() return ns_empty(ns) end, 10)
        os.execute("ip netns del " .. ns .. " 2>/dev/null")
      end
      rmdir(dir)
    end)
    local function ip(cmd)
      assert(os.execute("ip " .. cmd .. " >/dev/null"), "ip " .. cmd)
    end
    for _, ns in ipairs{S, A, B, C} do
      ip("netns add " .. ns)
      made[#made + 1] = ns
      ip("-n " .. ns .. " link set lo up")
    end
    ip("-n " .. S .. " link add br0 type bridge")
    for i, ns in ipairs{A, B, C} do
      local outer, inner = "v" .. ns .. "s", "v" .. ns
      ip("link add " .. inner .. " type veth peer name " .. outer)
      ip("link set " .. inner .. " netns " .. ns)
      ip("link set " .. outer .. " netns " .. S)
      ip("-n " .. S .. " link set " .. outer .. " master br0")
      ip("-n " .. S .. " link set " .. outer .. " up")
      ip("-n " .. ns .. " addr add 10.78.0." .. (i + 1) .. "/24 dev " .. inner)
      ip("-n " .. ns .. " link set " .. inner .. " up")
    end
    ip("-n " .. S .. " addr add 10.78.0.1/24 dev br0")
    ip("-n " .. S .. " link set br0 up")

    spawn(("ip netns exec %s %s scheduler --host 10.78.0.1 --port 0 "
           .. "--dashboard-address 10.78.0.1:0 --scheduler-file %s "
           .. "--token-file %s"):format(S, H.q(H.DLUA), H.q(dir .. "/sf"),
                                        H.q(dir .. "/token")),
          dir .. "/sched.out")
    -- Workers may start before the file exists: they wait for it.
    for _, ns in ipairs{A, B} do
      spawn(("ip netns exec %s %s worker --scheduler-file %s --token-file %s")
            :format(ns, H.q(H.DLUA), H.q(dir .. "/sf"), H.q(dir .. "/token")),
            dir .. "/" .. ns .. ".out")
    end
    local sf = sched_file(dir .. "/sf", 30)
    assert(sf, "no scheduler file; it said: " .. (H.slurp(dir .. "/sched.out")
                                                  or ""))
    assert.matches("^tcp://10%.78%.0%.1:%d+$", sf.address)
    assert.matches("^http://10%.78%.0%.1:%d+/status$", sf.dashboard)
    assert.matches("^Scheduler%-%x+$", sf.id)
    -- Mode 0600: only its owner reads it.
    local p = io.popen("stat -c %a " .. H.q(dir .. "/sf"))
    assert.equals("600", p:read("l"))
    p:close()

    local first = client_script(dir, "first", [[
      c:wait_for_workers(2, 60)
      local inc = function(x) return x + 1 end
      local one = c:submit(inc, 41):result()
      local sq = c:gather(c:map(function(x) return x * x end,
                                {1, 2, 3, 4, 5}))
      local d = dlua.delayed(function(a, b) return a + b end)
      local total = d(d(1, 2), 3):compute()
      local info = c:scheduler_info()
      local big = c:submit(function() return string.rep("b", 2000000) end)
      local len = c:submit(function(s) return #s end, big):result()
      local text = tostring(c)
      local pids = {}
      for _, w in ipairs(info.workers) do pids[#pids + 1] = w.pid end
      c:close() -- only disconnects
      return ("one=%d sq=%s total=%d workers=%d len=%d dash=%s addr=%s "
              .. "remote=%s mypid=%d wpids=%s"):format(
        one, table.concat(sq, ","), total, #info.workers, len,
        c.dashboard_link, info.address,
        tostring(text:match("RemoteCluster") ~= nil),
        require("dlua.cluster").pid(), table.concat(pids, ","))
    ]])
    spawn(("ip netns exec %s %s %s"):format(C, H.q(H.DLUA), H.q(first)),
          dir .. "/first.out")
    local res = wait_result(dir, "first", 90)
    assert.matches("one=42 sq=1,4,9,16,25 total=6 workers=2 len=2000000", res,
                   1, true)
    assert.matches("dash=" .. sf.dashboard, res, 1, true)
    assert.matches("addr=" .. sf.address, res, 1, true)
    assert.matches("remote=true", res, 1, true)
    -- The client is not the scheduler's process.
    assert.not_equals(tostring(sf.pid), res:match("mypid=(%d+)"))
    -- close() left the scheduler and both workers running.
    assert(not ns_empty(S) and not ns_empty(A) and not ns_empty(B))
    assert(H.slurp(dir .. "/sf"), "the scheduler file went with the client")

    -- A second client joins the same cluster, then shuts it down.
    local second = client_script(dir, "second", [[
      c:wait_for_workers(2, 60)
      local v = c:submit(function() return "again" end):result()
      c:shutdown()
      return v
    ]])
    spawn(("ip netns exec %s %s %s"):format(C, H.q(H.DLUA), H.q(second)),
          dir .. "/second.out")
    assert.equals("again", wait_result(dir, "second", 60))
    local gone = H.poll(function()
      return ns_empty(S) and ns_empty(A) and ns_empty(B)
    end, 20)
    assert(gone, "shutdown left processes: scheduler said "
           .. (H.slurp(dir .. "/sched.out") or ""))
    assert.is_nil(H.slurp(dir .. "/sf"), "the scheduler file is left")
    assert.matches("the client asked the cluster to shut down",
                   H.slurp(dir .. "/sched.out"), 1, true)
  end)

  it("a killed scheduler: the client gets a clear error, workers exit",
     function()
    local dir = workdir()
    finally(function()
      local t = require("dlua.cluster").read_scheduler_file(dir .. "/sf")
      if t and t.pid > 0 then os.execute("kill -9 " .. t.pid .. " 2>/dev/null") end
      rmdir(dir)
    end)
    local sf = loopback_scheduler(dir)
    spawn(("%s worker --scheduler-file %s --token-file %s --nworkers 2")
          :format(H.q(H.DLUA), H.q(dir .. "/sf"), H.q(dir .. "/token")),
          dir .. "/w.out")
    local c <close> = dlua.Client{scheduler_file = dir .. "/sf",
                                  token_file = dir .. "/token"}
    c:wait_for_workers(2, 30)
    local wpids = {}
    for _, w in ipairs(c:scheduler_info().workers) do
      wpids[#wpids + 1] = w.pid
    end
    assert.equals(2, #wpids)
    assert.equals(3, c:submit(function(x) return x + 1 end, 2):result())

    -- A second client is served while the first stays (net_clients_spec
    -- has the rest).
    do
      local c2 <close> = dlua.Client{address = sf.address,
                                     token_file = dir .. "/token"}
      assert.equals(5, c2:submit(function(x) return x + 1 end, 4):result())
    end
    local ok, err
    -- A client with the wrong token: refused, one line in the log.
    H.spit(dir .. "/bad", "a-wrong-token-for-this-cluster-xyz\n")
    assert(os.execute("chmod 600 " .. H.q(dir .. "/bad")))
    ok, err = pcall(dlua.Client, {address = sf.address,
                                  token_file = dir .. "/bad"})
    assert.is_false(ok)
    assert.matches("wrong token", err, 1, true)
    assert(H.poll(function()
      return (H.slurp(dir .. "/sched.out") or ""):find("wrong token", 1, true)
    end, 10), "no log line for the wrong token")
    -- A second scheduler on the same file is refused.
    local code, out = H.sh(("$DLUA scheduler --host 127.0.0.1 --port 0 "
                            .. "--dashboard-address none --scheduler-file %s "
                            .. "--token-file %s"):format(
                             H.q(dir .. "/sf"), H.q(dir .. "/token")))
    assert.not_equals(0, code)
    assert.matches("names a running scheduler", out, 1, true)

    -- The scheduler dies: the next call fails with why, within a deadline.
    local slow = c:submit(function()
      local t = os.clock() + 30
      while os.clock() < t do end
    end)
    assert(H.kill(sf.pid, "KILL"))
    ok, err = pcall(function() return slow:result(20) end)
    assert.is_false(ok)
    assert.matches("lost the connection to the scheduler at " .. sf.address,
                   tostring(err), 1, true)
    ok, err = pcall(c.submit, c, function() return 1 end)
    assert.is_false(ok)
    assert.matches("submit: lost the connection", err, 1, true)
    -- Its workers leave too.
    assert(H.all_gone(wpids, 20, true), "workers outlived their scheduler")
  end)

  it("a remote client's scheduler_info() lists the workers that died, "
     .. "and why", function()
    local dir = workdir()
    local wpids = {}
    finally(function()
      local t = require("dlua.cluster").read_scheduler_file(dir .. "/sf")
      if t and t.pid > 0 then os.execute("kill -9 " .. t.pid .. " 2>/dev/null") end
      for _, p in ipairs(wpids) do H.kill(p, "KILL") end
      rmdir(dir)
    end)
    loopback_scheduler(dir)
    spawn(("%s worker --scheduler-file %s --token-file %s --nworkers 2")
          :format(H.q(H.DLUA), H.q(dir .. "/sf"), H.q(dir .. "/token")),
          dir .. "/w.out")
    local c <close> = dlua.Client{scheduler_file = dir .. "/sf",
                                  token_file = dir .. "/token"}
    c:wait_for_workers(2, 30)
    local ws = c:scheduler_info().workers
    for _, w in ipairs(ws) do wpids[#wpids + 1] = w.pid end
    assert.same({}, c:scheduler_info().dead_workers)
    -- The fields a local cluster's workers have, with the same meaning:
    -- ages on this process's clock, io counted since each worker started.
    local big = c:submit(function() return ("v"):rep(2000000) end,
                         dlua.opts{workers = {ws[1].id}})
    assert.equals(2000000, c:submit(function(v) return #v end, big,
                                    dlua.opts{workers = {ws[2].id}}):result())
    local moved
    assert(H.poll(function() -- CINFO comes twice a second
      moved = 0
      for _, w in ipairs(c:scheduler_info().workers) do
        moved = moved + w.io.xfer_in
      end
      return moved >= 2000000
    end, 10), "no bytes moved between the workers: " .. moved)
    for _, w in ipairs(c:scheduler_info().workers) do
      assert.is_true(w.uptime >= 0 and w.uptime < 60, tostring(w.uptime))
      assert.is_true(w.last_seen >= 0 and w.last_seen < 10,
                     tostring(w.last_seen))
      assert.equals("integer", math.type(w.processing))
      assert.equals(0, w.io.spill_out)
      assert.is_nil(w.spill_error)
    end
    assert(H.kill(ws[1].pid, "KILL"))
    local dead
    assert(H.poll(function()
      dead = c:scheduler_info().dead_workers
      return #dead == 1
    end, 20), "the dead worker is not listed")
    assert.equals(ws[1].id, dead[1].id)
    assert.equals(ws[1].pid, dead[1].pid)
    assert.equals("dead", dead[1].status)
    assert.matches("%S", dead[1].reason)
    assert.equals(1, #c:scheduler_info().workers)
    c:shutdown()
  end)

  it("workers rejoin a scheduler restarted at the same address, and exit "
     .. "when it never comes back (--reconnect-timeout)", function()
    local dir = workdir()
    local spid
    finally(function()
      if spid then H.kill(spid, "KILL") end
      rmdir(dir)
    end)
    local function start(listen, name)
      spawn(("%s scheduler --listen %s --dashboard-address none "
             .. "--scheduler-file %s --token-file %s"):format(
              H.q(H.DLUA), listen, H.q(dir .. "/" .. name),
              H.q(dir .. "/token")), dir .. "/" .. name .. ".out")
      local t = sched_file(dir .. "/" .. name, 30)
      assert(t, "no scheduler file: " .. (H.slurp(dir .. "/" .. name
                                                   .. ".out") or ""))
      spid = t.pid
      return t
    end
    local function gone(pid)
      return H.poll(function()
        local st = H.slurp("/proc/" .. pid .. "/stat")
        return st == nil or st:match("^%d+ %b() [ZX]") ~= nil
      end, 20)
    end
    local first = start("tcp://127.0.0.1:0", "sf1")
    spawn(("%s worker %s --token-file %s --nworkers 2 --reconnect-timeout 3")
          :format(H.q(H.DLUA), first.address, H.q(dir .. "/token")),
          dir .. "/w.out")
    local function two_workers(addr)
      local c <close> = dlua.Client{address = addr, timeout = 20,
                                    token_file = dir .. "/token"}
      c:wait_for_workers(2, 30)
      return c:submit(function() return "up" end):result()
    end
    assert.equals("up", two_workers(first.address))
    H.kill(first.pid, "KILL")
    assert(gone(first.pid))
    -- The same address again: the workers join it within their backoff.
    local second = start(first.address, "sf2")
    assert.equals(first.address, second.address)
    assert.equals("up", two_workers(second.address))
    assert.matches("lost the scheduler at " .. first.address,
                   H.slurp(dir .. "/w.out"), 1, true)
    -- Gone for good: the workers give up after 3 s.
    H.kill(second.pid, "KILL")
    assert(gone(second.pid))
    assert(H.poll(function()
      return (H.slurp(dir .. "/w.out") or ""):find("did not come back", 1,
                                                   true)
    end, 20), "the workers did not give up: " .. (H.slurp(dir .. "/w.out")
                                                  or ""))
    local p = io.popen("pgrep -f " .. H.q("[w]orker " .. first.address))
    local left = p:read("a")
    p:close()
    assert(H.poll(function()
      local q = io.popen("pgrep -f " .. H.q("[w]orker " .. first.address))
      local l = q:read("a")
      q:close()
      return l == ""
    end, 10), "workers left: " .. left)
  end)

  it("SIGTERM stops the scheduler and its workers and removes its file",
     function()
    local dir = workdir()
    finally(function() rmdir(dir) end)
    -- A token file that does not exist yet is made, mode 0600.
    os.remove(dir .. "/token")
    spawn(("%s scheduler --host 127.0.0.1 --port 0 --dashboard-address none "
           .. "--scheduler-file %s --token-file %s; echo status $? >%s")
          :format(H.q(H.DLUA), H.q(dir .. "/sf"), H.q(dir .. "/token"),
                  H.q(dir .. "/status")), dir .. "/sched.out")
    local sf = sched_file(dir .. "/sf", 30)
    assert(sf, "no scheduler file")
    assert.matches("^%x+\n$", H.slurp(dir .. "/token"))
    assert.equals(65, #H.slurp(dir .. "/token"))
    local p = io.popen("stat -c %a " .. H.q(dir .. "/token"))
    assert.equals("600", p:read("l"))
    p:close()
    assert.matches("created the token file", H.slurp(dir .. "/sched.out"), 1,
                   true)
    spawn(("%s worker --scheduler-file %s --token-file %s")
          :format(H.q(H.DLUA), H.q(dir .. "/sf"), H.q(dir .. "/token")),
          dir .. "/w.out")
    local wpid
    do
      local c <close> = dlua.Client{scheduler_file = dir .. "/sf",
                                    token_file = dir .. "/token"}
      c:wait_for_workers(1, 30)
      wpid = c:scheduler_info().workers[1].pid
    end
    assert(H.kill(sf.pid, "TERM"))
    assert(H.poll(function() return H.slurp(dir .. "/status") end, 20),
           "the scheduler did not stop")
    assert.equals("status 0\n", H.slurp(dir .. "/status"))
    assert.is_nil(H.slurp(dir .. "/sf"))
    assert.matches("dlua scheduler: stopping", H.slurp(dir .. "/sched.out"),
                   1, true)
    assert(H.all_gone({wpid}, 20, true), "the worker outlived its scheduler")
  end)

  it("a worker and a client started before their scheduler wait for its "
     .. "file, then join", function()
    local dir = workdir()
    local spid
    finally(function()
      if spid then os.execute("kill -9 " .. spid .. " 2>/dev/null") end
      rmdir(dir)
    end)
    local function start(cmd, out)
      local p = io.popen(("%s >%s 2>&1 </dev/null & echo $!")
                         :format(cmd, H.q(out)))
      local pid = math.tointeger(tonumber(p:read("l")))
      p:close()
      return pid
    end
    -- Whether the main thread is blocked in one of the calls named
    -- (/proc/PID/syscall gives the number, which depends on the machine).
    local _, machine = H.sh("uname -m")
    local arm = (machine or ""):match("aarch64")
    local NR = arm and {nanosleep = 101, clock_nanosleep = 115, futex = 98}
      or {nanosleep = 35, clock_nanosleep = 230, futex = 202}
    local function blocked_in(pid, names)
      local sc = H.slurp("/proc/" .. pid .. "/syscall") or ""
      local nr = tonumber(sc:match("^%d+"))
      for _, name in ipairs(names) do
        if nr == NR[name] then return true end
      end
      return false
    end
    local wpid = start(("%s worker --scheduler-file %s --token-file %s")
                       :format(H.q(H.DLUA), H.q(dir .. "/sf"),
                               H.q(dir .. "/token")), dir .. "/w.out")
    H.spit(dir .. "/client.lua", ([[
      local dlua = require "dlua"
      local c = dlua.Client{scheduler_file = %q, token_file = %q,
                            timeout = 60}
      c:wait_for_workers(1, 60)
      print("sum " .. c:submit(function(a, b) return a + b end, 2, 3)
                       :result(60))
      c:close()
    ]]):format(dir .. "/sf", dir .. "/token"))
    local cpid = start(H.q(H.DLUA) .. " " .. H.q(dir .. "/client.lua"),
                       dir .. "/c.out")
    -- The worker asleep between two looks for the file (nanosleep or
    -- clock_nanosleep), the client's Lua thread waiting on its wake-up
    -- (futex): both have found no file and wait for one.
    local asleep = {"nanosleep", "clock_nanosleep"}
    assert(H.poll(function() return blocked_in(wpid, asleep) end, 20),
           "the worker never waited for the file: "
           .. (H.slurp(dir .. "/w.out") or ""))
    assert(H.poll(function() return blocked_in(cpid, {"futex"}) end, 20),
           "the client never waited for the file: "
           .. (H.slurp(dir .. "/c.out") or ""))
    assert.is_nil(H.slurp(dir .. "/sf"))
    local sf = loopback_scheduler(dir)
    spid = math.tointeger(sf.pid)
    do
      local c <close> = dlua.Client{scheduler_file = dir .. "/sf",
                                    token_file = dir .. "/token"}
      c:wait_for_workers(1, 30)
      assert.equals(wpid, c:scheduler_info().workers[1].pid)
      assert.equals(7, c:submit(function(x) return x + 1 end, 6):result(30))
      assert(H.poll(function()
        return (H.slurp(dir .. "/c.out") or ""):find("sum 5", 1, true)
      end, 60), "the early client: " .. (H.slurp(dir .. "/c.out") or ""))
      assert(H.all_gone({cpid}, 20, true), "the early client did not exit")
      c:shutdown()
    end
    assert(H.all_gone({wpid, spid}, 20, true),
           "the worker or the scheduler outlived the shutdown")
    assert.is_nil((H.slurp(dir .. "/w.out") or ""):find("cannot read", 1,
                                                        true))
  end)

  it("refuses a malformed scheduler file and bad options clearly", function()
    local dir = workdir()
    finally(function() rmdir(dir) end)
    H.spit(dir .. "/sf", "{not json")
    local ok, err = pcall(function()
      local c = dlua.Client{scheduler_file = dir .. "/sf",
                            token_file = dir .. "/token"}
      return c -- not a tail call: the error names this line
    end)
    assert.is_false(ok)
    assert.matches("is not a JSON object", err, 1, true)
    assert.matches("net_scheduler_spec.lua:%d+:", err) -- the caller's line
    H.spit(dir .. "/sf", '{"address": 12}')
    ok, err = pcall(dlua.Client, {scheduler_file = dir .. "/sf"})
    assert.is_false(ok)
    assert.matches('has no "address"', err, 1, true)
    -- A file that never comes: the wait ends at the timeout, clearly.
    ok, err = pcall(dlua.Client, {scheduler_file = dir .. "/none",
                                  timeout = 0.2})
    assert.is_false(ok)
    assert.matches("no scheduler file " .. dir .. "/none after 0.2 s", err,
                   1, true)
    assert.matches("Client{timeout=}", err, 1, true)
    ok, err = pcall(dlua.Client, "10.0.0.1:8786")
    assert.matches('must be "tcp://host:port"', err, 1, true)
    ok, err = pcall(dlua.Client, {address = "tcp://127.0.0.1:1",
                                  token_file = dir .. "/token", bogus = 1})
    assert.is_false(ok)
    assert.matches("bogus", err, 1, true)
    local code, out = H.sh("$DLUA scheduler --frobnicate 1")
    assert.equals(2, code)
    assert.matches("unknown option '--frobnicate'", out, 1, true)
    code, out = H.sh(("$DLUA worker tcp://127.0.0.1:1 --scheduler-file %s")
                     :format(H.q(dir .. "/sf")))
    assert.equals(2, code)
    assert.matches("not both", out, 1, true)
  end)
end)

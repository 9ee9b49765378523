-- A cluster past one machine: workers that join over authenticated TCP
-- (`dlua worker ADDRESS`).  The main test puts the client (with its
-- scheduler) and two workers in three network namespaces joined by veth
-- pairs on a bridge, so each is a host of its own with nothing but TCP
-- between them, and checks on the links' byte counters that a value went
-- from one worker to the other directly.  The faults (a wrong token, a
-- token file others can read, an unreachable scheduler, a port in use,
-- bad options) run on the loopback.  Every wait polls with a deadline;
-- every namespace and process is removed at the end of its test.
local BUSTED_ENV = _ENV
local describe, it, assert, pending = describe, it, assert, pending
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"

math.randomseed(os.time(), H.self_pid())

local TOKEN = "net-spec-token-0123456789abcdef"

local function workdir() return H.token_dir(TOKEN) end
local rmdir, spawn, can_netns = H.rmdir, H.spawn, H.can_netns

--- The client script: it listens on addr, writes the address it got to
-- dir/addr, waits for nworkers workers and runs body(client) (a chunk of
-- Lua text) whose return value it writes to dir/result.
local function client_script(dir, addr, nworkers, body, tls_dir)
  local path = dir .. "/client.lua"
  H.spit(path, ([[
local dlua = require "dlua"
local c = dlua.Client{listen = %q, token_file = %q, tls_dir = %s,
                      dashboard_address = false}
local f = assert(io.open(%q, "w")); f:write(c.cluster.address); f:close()
c:wait_for_workers(%d, 60)
local result = (function(c) %s end)(c)
f = assert(io.open(%q .. ".tmp", "w")); f:write(result); f:close()
os.rename(%q .. ".tmp", %q)
c:close()
]]):format(addr, dir .. "/token",
           tls_dir and ("%q"):format(tls_dir) or "nil", dir .. "/addr",
           nworkers, body,
           dir .. "/result", dir .. "/result", dir .. "/result"))
  return path
end

local function wait_file(path, timeout, why)
  local ok = H.poll(function() return H.slurp(path) ~= nil
                                   and #H.slurp(path) > 0 end, timeout)
  assert(ok, why .. " (no " .. path .. " within " .. timeout .. " s)")
  return H.slurp(path)
end

describe("TCP cluster", function()
  -- tls: with mutual TLS (a directory from `dlua tls-gen`) on every link.
  local function across_namespaces(tls)
    if not can_netns() then
      pending("needs root and ip netns")
      return
    end
    local tag = ("%d%03d"):format(H.self_pid() % 100000, math.random(999))
    local S, A, B = "dlS" .. tag, "dlA" .. tag, "dlB" .. tag
    local dir = workdir()
    local made = {}
    finally(function()
      for _, ns in ipairs(made) do
        os.execute("ip netns pids " .. ns .. " 2>/dev/null | xargs -r kill -9")
      end
      for _, ns in ipairs(made) do
        H.poll(function()
          local p = io.popen("ip netns pids " .. ns .. " 2>/dev/null")
          local any = p:read("l")
          p:close()
          return any == nil
        end, 10)
        os.execute("ip netns del " .. ns .. " 2>/dev/null")
      end
      rmdir(dir)
    end)
    local tls_dir, tls_opt = nil, ""
    if tls then
      tls_dir = dir .. "/tls"
      local code, out = H.sh("$DLUA tls-gen " .. H.q(tls_dir))
      assert.equal(0, code, out)
      tls_opt = " --tls-dir " .. H.q(tls_dir)
    end
    local function ip(cmd)
      assert(os.execute("ip " .. cmd .. " >/dev/null"), "ip " .. cmd)
    end
    for _, ns in ipairs{S, A, B} do
      ip("netns add " .. ns)
      made[#made + 1] = ns
      ip("-n " .. ns .. " link set lo up")
    end
    -- S holds a bridge; A and B each reach it through a veth pair.
    ip("-n " .. S .. " link add br0 type bridge")
    for i, ns in ipairs{A, B} do
      local outer, inner = "v" .. ns .. "s", "v" .. ns
      ip("link add " .. inner .. " type veth peer name " .. outer)
      ip("link set " .. inner .. " netns " .. ns)
      ip("link set " .. outer .. " netns " .. S)
      ip("-n " .. S .. " link set " .. outer .. " master br0")
      ip("-n " .. S .. " link set " .. outer .. " up")
      ip("-n " .. ns .. " addr add 10.77.0." .. (i + 1) .. "/24 dev "
         .. inner)
      ip("-n " .. ns .. " link set " .. inner .. " up")
    end
    ip("-n " .. S .. " addr add 10.77.0.1/24 dev br0")
    ip("-n " .. S .. " link set br0 up")
    -- The client's script reads S's link counters around a transfer of a
    -- 3 MB value made on one worker and measured on the other.
    local script = client_script(dir, "tcp://10.77.0.1:0", 2, ([[
      local function bytes(dev, dir)
        local f = assert(io.open("/sys/class/net/" .. dev .. "/statistics/"
                                 .. dir .. "_bytes"))
        local n = f:read("n"); f:close(); return n
      end
      local ws = c.cluster:workers()
      table.sort(ws, function(x, y) return x.id < y.id end)
      local squares = c:gather(c:map(function(x) return x * x end,
                                     (function() local t = {}
                                        for i = 1, 200 do t[i] = i end
                                        return t end)()))
      local sum = 0
      for _, v in ipairs(squares) do sum = sum + v end
      local devs = {"br0", "v%ss", "v%ss"}
      local before = {}
      for _, d in ipairs(devs) do
        before[d] = {rx = bytes(d, "rx"), tx = bytes(d, "tx")}
      end
      local big = c:submit(function() return string.rep("v", 3000000) end,
                           dlua.opts{workers = {ws[1].id}})
      local n = c:submit(function(s) return #s end, big,
                         dlua.opts{workers = {ws[2].id}}):result()
      local d = {}
      for _, dv in ipairs(devs) do
        d[#d + 1] = ("%%s %%d %%d"):format(dv, bytes(dv, "rx") - before[dv].rx,
                                         bytes(dv, "tx") - before[dv].tx)
      end
      return ("sum=%%d len=%%d\n%%s\n"):format(sum, n, table.concat(d, "\n"))
    ]]):format(A, B), tls_dir)
    spawn(("ip netns exec %s %s %s"):format(S, H.q(H.DLUA), H.q(script)),
          dir .. "/client.out")
    local addr = wait_file(dir .. "/addr", 30, "the client did not start")
    assert.matches("^tcp://10%.77%.0%.1:%d+$", addr)
    for _, ns in ipairs{A, B} do
      spawn(("ip netns exec %s %s worker %s --token-file %s%s"):format(
              ns, H.q(H.DLUA), addr, H.q(dir .. "/token"), tls_opt),
            dir .. "/" .. ns .. ".out")
    end
    local ok = H.poll(function() return H.slurp(dir .. "/result") end, 90)
    assert(ok, "no result; client said: " .. (H.slurp(dir .. "/client.out")
             or "") .. "; workers said: " .. (H.slurp(dir .. "/" .. A ..
             ".out") or "") .. (H.slurp(dir .. "/" .. B .. ".out") or ""))
    local res = H.slurp(dir .. "/result")
    io.stderr:write("# ", res:gsub("\n", "\n# "), "\n")
    assert.matches("sum=2686700 len=3000000", res, 1, true)
    local c = {}
    for dev, rx, tx in res:gmatch("(%S+) (%-?%d+) (%-?%d+)") do
      c[dev] = {rx = tonumber(rx), tx = tonumber(tx)}
    end
    local va, vb = c["v" .. A .. "s"], c["v" .. B .. "s"]
    -- The 3 MB went from one worker's link into the bridge and out of the
    -- other's (which way depends on which worker got the lower id) ...
    local ab = va.rx >= 3e6 and vb.tx >= 3e6
    local ba = vb.rx >= 3e6 and va.tx >= 3e6
    assert(ab or ba, "the value did not cross between the workers' links: "
           .. res)
    -- ... and not through the scheduler's host.
    assert(c.br0.rx < 1e6, "the value went through the scheduler: " .. res)
    -- The workers leave when their scheduler does.
    ok = H.poll(function()
      for _, ns in ipairs{A, B} do
        local p = io.popen("ip netns pids " .. ns)
        local any = p:read("l")
        p:close()
        if any then return false end
      end
      return true
    end, 20)
    assert(ok, "workers outlived their scheduler")
  end

  it("moves values between workers in other network namespaces over TCP",
     function() across_namespaces(false) end)

  it("moves values between workers in other network namespaces over "
     .. "mutual TLS on every link", function() across_namespaces(true) end)

  it("declares a stopped TCP worker dead, recomputes its work elsewhere, "
     .. "and the worker leaves when it wakes", function()
    local dir = workdir()
    finally(function() rmdir(dir) end)
    local c = dlua.Client{listen = "tcp://127.0.0.1:0", heartbeat_timeout = 2,
                          token_file = dir .. "/token",
                          dashboard_address = false}
    finally(function() c:close() end)
    spawn(("%s worker %s --nworkers 2 --token-file %s"):format(
            H.q(H.DLUA), c.cluster.address, H.q(dir .. "/token")),
          dir .. "/workers.out")
    c:wait_for_workers(2, 30)
    local go = dir .. "/go"
    local futs = {}
    for i = 1, 8 do
      futs[i] = c:submit(function(path, v)
        local d = require("dlua")
        local t = d.time()
        while d.time() - t < 30 do
          local fh = io.open(path, "r")
          if fh then fh:close(); return v end
        end
        error("the go file never appeared")
      end, go, i * 10)
    end
    assert.is_true(H.poll(function()
      c:_pump(0)
      local busy = 0
      for _, w in ipairs(c.cluster:workers()) do
        if w.executing > 0 then busy = busy + 1 end
      end
      return busy == 2
    end, 10), "tasks never reached both workers")
    local victim = c.cluster:workers()[1]
    assert.is_true(H.kill(victim.pid, "STOP"))
    finally(function() H.kill(victim.pid, "KILL") end)
    assert.is_true(H.poll(function()
      for _, w in ipairs(c:scheduler_info().dead_workers) do
        if w.id == victim.id then return true end
      end
      return false
    end, 10), "the stopped worker was never declared dead")
    H.spit(go, "")
    local got = c:gather(futs, 30)
    for i = 1, 8 do assert.equal(i * 10, got[i]) end
    -- Woken, it finds its link closed and leaves (dropping its state).
    assert.is_true(H.kill(victim.pid, "CONT"))
    assert.is_true(H.all_gone({victim.pid}, 10))
    assert.equal(1, #c.cluster:workers())
  end)

  describe("refuses", function()
    it("a worker with the wrong token, with one line in the scheduler's log",
       function()
      local dir = workdir()
      finally(function() rmdir(dir) end)
      local script = client_script(dir, "tcp://127.0.0.1:0", 1,
                                   "return 'unused'")
      spawn(("%s %s"):format(H.q(H.DLUA), H.q(script)), dir .. "/client.out")
      local addr = wait_file(dir .. "/addr", 30, "the client did not start")
      H.spit(dir .. "/bad", "some-other-token-abcdefghij\n")
      assert(os.execute("chmod 600 " .. H.q(dir .. "/bad")))
      local code, out = H.sh(("$DLUA worker %s --token-file %s"):format(
        addr, H.q(dir .. "/bad")))
      assert.equal(4, code, out) -- refused: not worth trying again
      assert.matches("the server refused the token (wrong token)", out, 1,
                     true)
      -- Nor does --reconnect-timeout try again: it exits at once (within
      -- the command's limit, far below the reconnect timeout).
      code, out = H.sh(("timeout 60 $DLUA worker %s --token-file %s "
        .. "--reconnect-timeout 600"):format(addr, H.q(dir .. "/bad")))
      assert.equal(1, code, out)
      local _, n = out:gsub("refused the token", "")
      assert.equal(1, n, out)
      assert(H.poll(function()
        return (H.slurp(dir .. "/client.out") or ""):find(
          "refused connection from 127.0.0.1:%d+: wrong token") ~= nil
      end, 10), "no log line: " .. (H.slurp(dir .. "/client.out") or ""))
      -- A worker with the right token still joins and the script ends.
      code, out = H.sh(("$DLUA worker %s --token-file %s"):format(
        addr, H.q(dir .. "/token")))
      assert.equal(0, code, out)
      assert.equal("unused", wait_file(dir .. "/result", 30, "no result"))
      local log = H.slurp(dir .. "/client.out")
      local _, lines = log:gsub("refused connection", "")
      assert.equal(2, lines, log) -- one line a try: two tries
    end)

    it("a token file that others may read", function()
      local dir = workdir()
      finally(function() rmdir(dir) end)
      assert(os.execute("chmod 644 " .. H.q(dir .. "/token")))
      local code, out = H.sh(("$DLUA worker tcp://127.0.0.1:1 --token-file %s")
                             :format(H.q(dir .. "/token")))
      assert.equal(2, code)
      assert.matches("has mode 644: others may read it (chmod 600", out, 1,
                     true)
      local ok, err = pcall(dlua.Client, {listen = "tcp://127.0.0.1:0",
                                          token_file = dir .. "/token",
                                          dashboard_address = false})
      assert.is_false(ok)
      assert.matches("has mode 644", err, 1, true)
    end)

    it("an unreachable scheduler with a clear error, not a hang", function()
      -- A port nobody listens on: refused at once, with the address.
      local code, out = H.sh("DLUA_TOKEN=" .. TOKEN
                             .. " $DLUA worker tcp://127.0.0.1:1")
      assert.equal(1, code)
      assert.matches("dlua worker: cannot reach tcp://127.0.0.1:1: "
                     .. "connection refused", out, 1, true)
      code, out = H.sh("DLUA_TOKEN=" .. TOKEN .. " $DLUA worker nowhere:1")
      assert.equal(2, code)
      assert.matches("the address must be tcp://HOST:PORT", out, 1, true)
      code, out = H.sh("env -u DLUA_TOKEN $DLUA worker tcp://127.0.0.1:1")
      assert.equal(2, code)
      assert.matches("no token: give a token file (mode 0600) or set "
                     .. "DLUA_TOKEN", out, 1, true)
    end)

    it("a port in use, and bad options, at the caller's line", function()
      local dir = workdir()
      finally(function() rmdir(dir) end)
      local c1 = dlua.Client{listen = "tcp://127.0.0.1:0",
                             token_file = dir .. "/token",
                             dashboard_address = false}
      finally(function() c1:close() end)
      local port = c1.cluster.address:match(":(%d+)$")
      local ok, err = pcall(dlua.Client, {
        listen = "tcp://127.0.0.1:" .. port, token_file = dir .. "/token",
        dashboard_address = false})
      assert.is_false(ok)
      assert.matches("port " .. port .. " on 127.0.0.1 is in use", err, 1,
                     true)
      local line = debug.getinfo(1, "l").currentline
      ok, err = pcall(function()
        local c = dlua.Client{listen = "localhost:80"}
        return c
      end)
      assert.is_false(ok)
      assert.matches("net_spec.lua:" .. (line + 2) .. ":", err, 1, true)
      assert.matches("listen must be \"tcp://IP:PORT\"", err, 1, true)
      ok, err = pcall(dlua.Client, {listen = "tcp://127.0.0.1:0",
                                    n_workers = 2,
                                    token_file = dir .. "/token"})
      assert.is_false(ok)
      assert.matches("starts no local workers (n_workers must be 0)", err, 1,
                     true)
    end)
  end)
end)

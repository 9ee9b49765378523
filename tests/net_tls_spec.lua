-- Mutual TLS for a cluster past one machine: `dlua tls-gen DIR`, and a
-- `dlua scheduler --tls-dir` that workers and clients join over TLS (the
-- scheduler file carries the directory), on the loopback.  TLS on one
-- side only, a certificate from another CA, a missing directory and
-- garbage sent to the port are each refused with one clear line, and the
-- scheduler goes on serving the good ones.  (The namespace test with TLS
-- on every link, worker to worker included, is in net_spec.)  Every
-- process started is killed in `finally`; every wait polls with a deadline.
local BUSTED_ENV = _ENV
local describe, it, assert = describe, it, assert
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"

local TOKEN = "net-tls-spec-token-0123456789abcdef"

local function sched_file(path, timeout)
  local t
  H.poll(function()
    t = require("dlua.cluster").read_scheduler_file(path)
    return t ~= nil
  end, timeout)
  return t
end

-- A `dlua scheduler` with TLS directory tls, its files in dir; its
-- scheduler file's contents.
local function start_scheduler(dir, tls)
  H.spawn(("%s scheduler --host 127.0.0.1 --port 0 --dashboard-address none "
           .. "--scheduler-file %s --token-file %s --tls-dir %s"):format(
            H.q(H.DLUA), H.q(dir .. "/sf"), H.q(dir .. "/token"), H.q(tls)),
          dir .. "/sched.out")
  local sf = sched_file(dir .. "/sf", 30)
  assert(sf, "no scheduler file; it said: " .. (H.slurp(dir .. "/sched.out")
         or ""))
  return sf
end

local function log_has(path, pat)
  return H.poll(function()
    return (H.slurp(path) or ""):find(pat) ~= nil
  end, 15)
end

describe("TLS", function()
  it("tls-gen makes a CA, a certificate and a private key, and never "
     .. "overwrites them", function()
    local dir = H.token_dir(TOKEN)
    finally(function() H.rmdir(dir) end)
    local code, out = H.sh("$DLUA tls-gen " .. H.q(dir .. "/tls"))
    assert.equal(0, code, out)
    for _, f in ipairs{"ca.pem", "cert.pem", "key.pem"} do
      assert.truthy(H.slurp(dir .. "/tls/" .. f), f)
    end
    assert.matches("BEGIN CERTIFICATE", H.slurp(dir .. "/tls/ca.pem"))
    assert.matches("BEGIN PRIVATE KEY", H.slurp(dir .. "/tls/key.pem"))
    local p = io.popen("stat -c %a " .. H.q(dir .. "/tls/key.pem"))
    assert.equal("600", p:read("l"))
    p:close()
    local ca = H.slurp(dir .. "/tls/ca.pem")
    code, out = H.sh("$DLUA tls-gen " .. H.q(dir .. "/tls"))
    assert.equal(1, code)
    assert.matches("ca.pem already exists (tls-gen never overwrites", out, 1,
                   true)
    assert.equal(ca, H.slurp(dir .. "/tls/ca.pem"))
    code, out = H.sh("$DLUA tls-gen")
    assert.equal(2, code)
    assert.matches("no directory given", out, 1, true)
  end)

  it("a scheduler with --tls-dir: workers and clients join over TLS, the "
     .. "mismatched and the garbage are refused with one line each",
     function()
    local dir = H.token_dir(TOKEN)
    local spid
    finally(function()
      -- Its workers leave when it goes (no --reconnect-timeout).
      if spid then H.kill(spid, "KILL") end
      H.rmdir(dir)
    end)
    local tls, other = dir .. "/tls", dir .. "/other"
    assert.equal(0, (H.sh("$DLUA tls-gen " .. H.q(tls))))
    assert.equal(0, (H.sh("$DLUA tls-gen " .. H.q(other))))
    local sf = start_scheduler(dir, tls)
    spid = sf.pid
    -- The file names the TLS directory (absolute), for clients and workers.
    assert.matches("/tls$", sf.tls_dir)
    assert.equal("/", sf.tls_dir:sub(1, 1))
    -- Two workers find TLS through the scheduler file.
    H.spawn(("%s worker --scheduler-file %s --token-file %s --nworkers 2")
            :format(H.q(H.DLUA), H.q(dir .. "/sf"), H.q(dir .. "/token")),
            dir .. "/workers.out")
    local c = dlua.Client{scheduler_file = dir .. "/sf",
                          token_file = dir .. "/token"}
    finally(function() c:close() end)
    c:wait_for_workers(2, 30)
    local ws = c.cluster:workers()
    local squares = c:gather(c:map(function(x) return x * x end,
                                   {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}))
    assert.same({1, 4, 9, 16, 25, 36, 49, 64, 81, 100}, squares)
    -- A value from one worker to the other (worker to worker over TLS).
    local big = c:submit(function() return string.rep("t", 2000000) end,
                         dlua.opts{workers = {ws[1].id}})
    assert.equal(2000000, c:submit(function(s) return #s end, big,
                                   dlua.opts{workers = {ws[2].id}}):result())

    -- A worker without TLS: refused at once, both sides say why.
    local code, out = H.sh(("$DLUA worker %s --token-file %s"):format(
      sf.address, H.q(dir .. "/token")))
    assert.equal(1, code)
    assert.matches("the scheduler uses TLS: give this side the cluster's TLS "
                   .. "directory", out, 1, true)
    assert(log_has(dir .. "/sched.out", "closed before its TLS handshake"),
           H.slurp(dir .. "/sched.out"))
    -- A worker whose certificate comes from another CA.
    code, out = H.sh(("$DLUA worker %s --token-file %s --tls-dir %s"):format(
      sf.address, H.q(dir .. "/token"), H.q(other)))
    assert.equal(1, code)
    assert.matches("certificate", out, 1, true)
    assert(log_has(dir .. "/sched.out", "refused connection from 127%.0%.0%.1:"
                   .. "%d+: TLS: "), H.slurp(dir .. "/sched.out"))
    -- A client with TLS at a wrong place: a clear error at the caller's line.
    local ok, err = pcall(dlua.Client, {address = sf.address,
                                        token_file = dir .. "/token",
                                        tls_dir = dir .. "/nowhere"})
    assert.is_false(ok)
    assert.matches("TLS directory .*/nowhere: .*dlua tls%-gen", err)
    ok, err = pcall(dlua.Client, {address = sf.address,
                                  token_file = dir .. "/token", tls_dir = 42})
    assert.is_false(ok)
    assert.matches("tls_dir must be a string, got number", err, 1, true)
    -- A client without TLS.
    ok, err = pcall(dlua.Client, {address = sf.address,
                                  token_file = dir .. "/token", timeout = 5})
    assert.is_false(ok)
    assert.matches("the scheduler uses TLS", err, 1, true)
    -- Garbage at the port: the TLS hello, then closed; one line.
    local host, port = sf.address:match("^tcp://(.+):(%d+)$")
    local before = select(2, (H.slurp(dir .. "/sched.out") or "")
                               :gsub("refused connection", ""))
    code = H.sh(("bash -c 'exec 3<>/dev/tcp/%s/%s; printf \"GET / "
                 .. "HTTP/1.1\\r\\n\\r\\n\" >&3; cat <&3 >/dev/null'")
                :format(host, port))
    assert.equal(0, code)
    assert(H.poll(function()
      local n = select(2, (H.slurp(dir .. "/sched.out") or "")
                            :gsub("refused connection", ""))
      return n == before + 1
    end, 15), H.slurp(dir .. "/sched.out"))
    -- Through all that, the cluster still computes.
    assert.equal(42, c:submit(function() return 42 end):result())
    local lines = H.slurp(dir .. "/sched.out")
    for line in lines:gmatch("[^\n]+") do
      assert.is_nil(line:find("malformed"), line)
    end
    c:shutdown()
    assert(H.all_gone({spid}, 20, true), "the scheduler did not stop")
    spid = nil
  end)

  it("every worker joins over TLS, however the descriptors fall",
     function()
    -- A worker joining over TLS once moved its link onto fd 3, which by
    -- then could be one of the (since removed) TLS thread's descriptors: one
    -- worker in ten left at once, silently.  Twelve joins.
    local dir = H.token_dir(TOKEN)
    local spid
    local function none_left() -- of the processes started with this directory
      -- ("[/]tmp/..." so that the shell running pgrep is not one of them)
      local p = io.popen("pgrep -f " .. H.q("[" .. dir:sub(1, 1) .. "]"
                                            .. dir:sub(2)))
      local n = #p:read("a")
      p:close()
      return n == 0
    end
    finally(function()
      if spid then H.kill(spid, "KILL") end -- its workers leave with it
      H.poll(none_left, 30)
      H.rmdir(dir)
    end)
    local tls = dir .. "/tls"
    assert.equal(0, (H.sh("$DLUA tls-gen " .. H.q(tls))))
    local sf = start_scheduler(dir, tls)
    spid = sf.pid
    local c = dlua.Client{scheduler_file = dir .. "/sf",
                          token_file = dir .. "/token"}
    finally(function() c:close() end)
    for round = 1, 3 do
      H.spawn(("%s worker --scheduler-file %s --token-file %s --nworkers 4")
              :format(H.q(H.DLUA), H.q(dir .. "/sf"), H.q(dir .. "/token")),
              dir .. "/workers" .. round .. ".out")
      local ok, err = pcall(c.wait_for_workers, c, 4 * round, 60)
      assert(ok, tostring(err) .. "\n" .. (H.slurp(dir .. "/sched.out") or "")
             .. (H.slurp(dir .. "/workers" .. round .. ".out") or ""))
    end
    assert.equal(12, #c.cluster:workers())
    c:shutdown() -- scheduler and workers
    assert.is_true(H.poll(none_left, 30), "processes left after shutdown")
  end)

  it("a missing TLS directory stops scheduler and worker with one line",
     function()
    local dir = H.token_dir(TOKEN)
    finally(function() H.rmdir(dir) end)
    local code, out = H.sh(("$DLUA scheduler --host 127.0.0.1 --port 0 "
      .. "--dashboard-address none --token-file %s --tls-dir %s"):format(
        H.q(dir .. "/token"), H.q(dir .. "/none")))
    assert.equal(1, code)
    assert.matches("dlua scheduler: TLS directory " .. dir .. "/none: ", out,
                   1, true)
    assert.matches("dlua tls-gen DIR", out, 1, true)
    code, out = H.sh(("$DLUA worker tcp://127.0.0.1:1 --token-file %s "
      .. "--tls-dir %s"):format(H.q(dir .. "/token"), H.q(dir .. "/none")))
    assert.equal(2, code)
    assert.matches("dlua worker: TLS directory " .. dir .. "/none: ", out,
                   1, true)
  end)

  it("LocalCluster's tls_dir needs listen", function()
    local ok, err = pcall(dlua.LocalCluster, {tls_dir = "/x", n_workers = 1})
    assert.is_false(ok)
    assert.matches("tls_dir needs listen", err, 1, true)
  end)
end)

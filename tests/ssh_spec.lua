-- dlua.SSHCluster through the system's ssh, against an sshd the test
-- starts on 127.0.0.1 (its own host key, checked through a known_hosts
-- file; an authorised key made for the test).  The scheduler and workers
-- are the sshd's sessions' children; cluster:close() must leave none, and
-- `finally` stops sshd and anything left even when an assertion fails.
local BUSTED_ENV = _ENV
local describe, it, assert, pending = describe, it, assert, pending
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"
local L = require "helpers.launch"

math.randomseed(os.time(), H.self_pid())

local function can_ssh()
  return H.slurp("/proc/self/status"):match("\nUid:%s+0%s") ~= nil
     and L.have("ssh") and L.have("ssh-keygen")
     and io.open("/usr/sbin/sshd") ~= nil
end

-- The live processes of the sshd's sessions (sshd's SetEnv marks them;
-- the listener itself drops its environment).
local function sessions(tag)
  return L.marked(tag)
end

describe("dlua.SSHCluster", function()
  it("starts the scheduler and workers through ssh; close leaves nothing",
     function()
    if not can_ssh() then pending("needs root, openssh-client and "
                                  .. "openssh-server") return end
    local dir = H.token_dir("unused")
    assert(os.execute("chmod 755 " .. H.q(dir))) -- sshd reads in it
    local tag = L.tag()
    local cluster, c, s
    local script_tag = tag .. "-script"
    finally(function()
      if c then pcall(c.close, c) end
      if cluster then pcall(cluster.close, cluster) end
      L.stop_marked(script_tag)
      L.stop_marked(tag)
      L.stop_sshd(s or {dir = dir})
      H.rmdir(dir)
    end)
    s = L.sshd(dir, tag)
    cluster = dlua.SSHCluster{
      hosts = {"127.0.0.1", "127.0.0.1", "127.0.0.1"},
      connect_options = s.connect_options,
      worker_options = {nworkers = 1, memory_limit = "1GB", name = "ssh"},
      remote_dlua = H.DLUA,
    }
    assert.matches("^tcp://127%.0%.0%.1:%d+$", cluster.address)
    assert.matches("^http://.+/status$", cluster.dashboard_link)
    assert.matches("SSHCluster%(scheduler at tcp://127.0.0.1:%d+ on "
                   .. "127.0.0.1, 2 worker hosts%)", tostring(cluster))
    c = dlua.Client(cluster)
    c:wait_for_workers(2, 60)
    assert.same({1, 4, 9}, c:gather(c:map(function(x) return x * x end,
                                          {1, 2, 3})))
    -- The workers are ssh sessions' processes (sshd set SSH_CONNECTION),
    -- with the memory limit asked for.
    for _, w in ipairs(c:scheduler_info().workers) do
      local env = H.slurp("/proc/" .. w.pid .. "/environ") or ""
      assert.truthy(env:find("SSH_CONNECTION=127.0.0.1", 1, true))
      assert.equals(1000000000, w.memory_limit)
    end
    -- One name per worker host, in the order of hosts.
    local names = {}
    for _, w in ipairs(c:scheduler_info().workers) do
      names[#names + 1] = w.name
    end
    table.sort(names)
    assert.same({"ssh-0", "ssh-1"}, names)
    -- The scheduler's and workers' sessions are marked (so the checks
    -- below that none is left are not empty).
    assert.is_true(#sessions(tag) >= 3)
    -- The token reached them on ssh's input, never on a command line.
    for _, pid in ipairs(sessions(tag)) do
      local cmd = H.slurp("/proc/" .. pid .. "/cmdline") or ""
      assert.falsy(cmd:find(H.slurp(cluster.token_file):sub(1, 64), 1, true))
    end
    c:close()
    c = nil
    local token_file = cluster.token_file
    cluster:close()
    assert(H.poll(function() return #sessions(tag) == 0 end, 20),
           "left on the host: " .. table.concat(sessions(tag), " "))
    assert.is_nil(io.open(token_file), "the local token file is left")
    assert.matches(", closed%)$", tostring(cluster))
    cluster:close() -- again: nothing to do

    -- A script that dies without closing its cluster: its ssh input ends,
    -- and so does every remote process, and its ssh too.
    local lit = {}
    for i, a in ipairs(s.connect_options) do lit[i] = ("%q"):format(a) end
    H.spit(dir .. "/die.lua", ([[
local dlua = require "dlua"
local cl = dlua.SSHCluster{hosts = {"127.0.0.1", "127.0.0.1"},
                           connect_options = {%s}, remote_dlua = %q}
local c = dlua.Client(cl)
c:wait_for_workers(1, 60)
local f = io.open(%q, "w") f:write("up") f:close()
while true do dlua.sleep(1) end
]]):format(table.concat(lit, ", "), H.DLUA, dir .. "/up"))
    H.spawn(("DLUA_SPEC_TAG=%s %s %s"):format(script_tag, H.q(H.DLUA),
            H.q(dir .. "/die.lua")), dir .. "/die.out")
    assert(H.poll(function() return H.slurp(dir .. "/up") ~= nil end, 60),
           "the script's cluster did not start: "
           .. (H.slurp(dir .. "/die.out") or ""))
    assert.is_true(#sessions(tag) >= 2)
    for _, pid in ipairs(L.marked(script_tag)) do
      local cmd = H.slurp("/proc/" .. pid .. "/cmdline") or ""
      if cmd:find("die.lua", 1, true) then H.kill(pid, "KILL") end
    end
    assert(H.poll(function() return #sessions(tag) == 0 end, 20),
           "left on the host after the script died: "
           .. table.concat(sessions(tag), " "))
    assert(H.poll(function() return #L.marked(script_tag) == 0 end, 20),
           "the script's ssh outlived it")
  end)

  it("an ssh that fails is an error with ssh's words, at the caller's "
     .. "line; bad options too", function()
    if not can_ssh() then pending("needs root, openssh-client and "
                                  .. "openssh-server") return end
    local dir = H.token_dir("unused")
    assert(os.execute("chmod 755 " .. H.q(dir)))
    local tag = L.tag()
    local s
    finally(function()
      L.stop_marked(tag)
      L.stop_sshd(s or {dir = dir})
      H.rmdir(dir)
    end)
    s = L.sshd(dir, tag)
    -- A key the host does not know.
    assert(H.sh(("ssh-keygen -q -t ed25519 -N '' -f %s")
                :format(H.q(dir .. "/other"))) == 0)
    local opts = {}
    for i, a in ipairs(s.connect_options) do
      opts[i] = a == dir .. "/id" and dir .. "/other" or a
    end
    local ok, err = pcall(function()
      local cl = dlua.SSHCluster{hosts = {"127.0.0.1", "127.0.0.1"},
                                 connect_options = opts, remote_dlua = H.DLUA}
      return cl -- not a tail call: the error names this line
    end)
    assert.is_false(ok)
    assert.matches("ssh_spec.lua:%d+: SSHCluster: the scheduler on 127.0.0.1 "
                   .. "did not start: .*Permission denied.*ssh exited with "
                   .. "status 255", err)
    assert.same({}, sessions(tag))
    -- A remote dlua that is not there.
    ok, err = pcall(function()
      local cl = dlua.SSHCluster{hosts = {"127.0.0.1", "127.0.0.1"},
                                 connect_options = s.connect_options,
                                 remote_dlua = "/nonexistent/dlua"}
      return cl
    end)
    assert.is_false(ok)
    assert.matches("did not start: .*/nonexistent/dlua", err)
    assert(H.poll(function() return #sessions(tag) == 0 end, 10))

    local function bad(o, want)
      local ok2, e = pcall(function()
        local cl = dlua.SSHCluster(o)
        return cl
      end)
      assert.is_false(ok2)
      assert.matches("ssh_spec.lua:%d+: SSHCluster: " .. want, e)
    end
    bad({hosts = {"a"}}, "hosts must list at least 2 hosts")
    bad({hosts = {"a", "b"}, hots = 1},
        "unknown option 'hots' %(did you mean 'hosts'%?%)")
    bad({hosts = {"a", "-oProxyCommand=x"}}, "hosts%[2%] must be a host name")
    bad({hosts = {"a", "b"}, worker_options = {nworker = 2}},
        "worker_options: unknown option 'nworker'")
    bad({hosts = {"a", "b"}, worker_options = {nworkers = 0}},
        "worker_options.nworkers must be a positive integer")
    bad({hosts = {"a", "b"}, worker_options = {name = ""}},
        "worker_options.name must be 1 to 50 printable characters")
    bad({hosts = {"a", "b"}, connect_options = {"-p", 22}},
        "connect_options%[2%] must be a string")
    bad({hosts = {"a", "b"}, tls_dir = 7},
        "tls_dir must be a directory's path, got number")
    bad({hosts = {"a", "b"}, tls_dir = dir .. "/none"},
        "tls_dir .*/none has no ca.pem %(make the directory with `dlua "
        .. "tls%-gen DIR`")
  end)

  it("tls_dir puts the scheduler, the workers and the client in mutual TLS",
     function()
    if not can_ssh() then pending("needs root, openssh-client and "
                                  .. "openssh-server") return end
    local dir = H.token_dir("unused")
    assert(os.execute("chmod 755 " .. H.q(dir)))
    local tag = L.tag()
    local cluster, c, s
    finally(function()
      if c then pcall(c.close, c) end
      if cluster then pcall(cluster.close, cluster) end
      L.stop_marked(tag)
      L.stop_sshd(s or {dir = dir})
      H.rmdir(dir)
    end)
    s = L.sshd(dir, tag)
    assert.equal(0, (H.sh("$DLUA tls-gen " .. H.q(dir .. "/tls"))))
    cluster = dlua.SSHCluster{
      hosts = {"127.0.0.1", "127.0.0.1", "127.0.0.1"},
      connect_options = s.connect_options, remote_dlua = H.DLUA,
      tls_dir = dir .. "/tls",
    }
    assert.matches("2 worker hosts, TLS%)", tostring(cluster))
    -- The workers joined (a worker without TLS is refused), and so does
    -- this client, with the cluster's directory.
    c = dlua.Client(cluster)
    local joined, why = pcall(c.wait_for_workers, c, 2, 60)
    if not joined then -- say what the remote processes said
      local logs = {}
      for _, l in ipairs(cluster:logs()) do
        logs[#logs + 1] = "--- " .. l.host .. ":\n" .. l.text
      end
      error(tostring(why) .. "\n" .. table.concat(logs, "\n"), 0)
    end
    local ws = c.cluster:workers()
    local big = c:submit(function() return string.rep("s", 3000000) end,
                         dlua.opts{workers = {ws[1].id}})
    assert.equal(3000000, c:submit(function(v) return #v end, big,
                                   dlua.opts{workers = {ws[2].id}}):result())
    -- The scheduler speaks only TLS: a client without the directory is
    -- refused, and says why.
    local ok, err = pcall(dlua.Client, {address = cluster.address,
                                        token_file = cluster.token_file})
    assert.is_false(ok)
    assert.matches("the scheduler uses TLS", tostring(err))
  end)
end)

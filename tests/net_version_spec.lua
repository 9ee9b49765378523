-- The versioned handshake with real processes: a `dlua scheduler` of this
-- build, and a worker and a client that play an older and a newer dlua
-- (DLUA_TEST_WIRE makes a process announce another wire version).  Each
-- mismatch is one line on each side naming both versions, the scheduler
-- keeps serving, and nothing else happens.  Every wait polls with a
-- deadline; every process is stopped in finally.
local BUSTED_ENV = _ENV
local describe, it, assert = describe, it, assert
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"

local TOKEN = "net-version-spec-token-0123456789abcdef"

describe("wire versions", function()
  it("an older worker and a newer client are refused, both versions named "
     .. "on both sides", function()
    local dir = H.token_dir(TOKEN)
    finally(function()
      local t = require("dlua.cluster").read_scheduler_file(dir .. "/sf")
      if t and t.pid > 0 then H.kill(t.pid, "KILL") end
      H.rmdir(dir)
    end)
    H.spawn(("%s scheduler --host 127.0.0.1 --port 0 --dashboard-address "
             .. "none --scheduler-file %s --token-file %s"):format(
              H.q(H.DLUA), H.q(dir .. "/sf"), H.q(dir .. "/token")),
            dir .. "/sched.out")
    local sf
    assert(H.poll(function()
      sf = require("dlua.cluster").read_scheduler_file(dir .. "/sf")
      return sf ~= nil
    end, 30), "no scheduler file")
    local version = dlua.version or sf.version
    local function log_has(text)
      return H.poll(function()
        return (H.slurp(dir .. "/sched.out") or ""):find(text, 1, true)
               ~= nil
      end, 10)
    end
    local ours = 4 -- DL_AUTH_WIRE of this build (dl_auth.h): bump together

    -- An older worker (ours - 1): it exits 4 (refused: not retried by
    -- --reconnect-timeout) with one line, the scheduler logs one line;
    -- both name both versions.
    local rc, out = H.sh(("DLUA_TEST_WIRE=%d timeout 60 %s worker %s "
      .. "--token-file %s --reconnect-timeout 600"):format(ours - 1,
      H.q(H.DLUA), H.q(sf.address), H.q(dir .. "/token")))
    assert.equals(1, rc, out) -- the supervisor of --reconnect-timeout: 1
    local _, tries = out:gsub("the server speaks wire version", "")
    assert.equals(1, tries, out)
    rc, out = H.sh(("DLUA_TEST_WIRE=%d %s worker %s --token-file %s")
      :format(ours - 1, H.q(H.DLUA), H.q(sf.address), H.q(dir .. "/token")))
    assert.equals(4, rc, out)
    assert.matches(("dlua worker: %s: the server speaks wire version %d "
                    .. "(dlua %s), this dlua %s speaks wire version %d")
                   :format(sf.address, ours, version, version, ours - 1),
                   out, 1, true)
    assert(log_has(("the peer speaks wire version %d (dlua %s), this dlua "
                    .. "%s speaks wire version %d"):format(
                     ours - 1, version, version, ours)),
           "no log line for the older worker: "
           .. (H.slurp(dir .. "/sched.out") or ""))

    -- A newer client (ours + 1), in a process of its own.
    H.spit(dir .. "/client.lua", ([[
local ok, err = pcall(require("dlua").Client,
                      {address = %q, token_file = %q})
io.write(tostring(ok), " ", tostring(err))
]]):format(sf.address, dir .. "/token"))
    rc, out = H.sh(("DLUA_TEST_WIRE=%d %s %s"):format(
      ours + 1, H.q(H.DLUA), H.q(dir .. "/client.lua")))
    assert.equals(0, rc)
    assert.matches(("false Client: %s: the server speaks wire version %d "
                    .. "(dlua %s), this dlua %s speaks wire version %d")
                   :format(sf.address, ours, version, version, ours + 1),
                   out, 1, true)
    assert(log_has(("the peer speaks wire version %d (dlua %s), this dlua "
                    .. "%s speaks wire version %d"):format(
                     ours + 1, version, version, ours)),
           "no log line for the newer client")

    -- The scheduler still serves a worker and a client of its own version.
    H.spawn(("%s worker %s --token-file %s"):format(
              H.q(H.DLUA), H.q(sf.address), H.q(dir .. "/token")),
            dir .. "/w.out")
    local c <close> = dlua.Client{address = sf.address,
                                  token_file = dir .. "/token"}
    c:wait_for_workers(1, 30)
    assert.equals(42, c:submit(function(x) return x + 1 end, 41):result())
    c:shutdown()
  end)
end)

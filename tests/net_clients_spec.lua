-- Several clients of one `dlua scheduler`: two scripts in their own
-- processes share its workers, each with its own futures.  A key both
-- submit is computed once and reaches both; when one client closes (or
-- its process is killed, saying nothing), only what it alone held is
-- released, and the other's futures, results and functions go on.
-- Every process a test starts is stopped in `finally`.
local BUSTED_ENV = _ENV
local describe, it, assert = describe, it, assert
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"
local L = require "helpers.launch"

math.randomseed(os.time(), H.self_pid())

local TOKEN = "net-clients-spec-token-0123456789abc"

-- A scheduler and two workers on the loopback, all marked with tag.
local function cluster(dir, tag)
  H.spawn(("DLUA_SPEC_TAG=%s %s scheduler --host 127.0.0.1 --port 0 "
           .. "--dashboard-address none --scheduler-file %s --token-file %s")
          :format(tag, H.q(H.DLUA), H.q(dir .. "/sf"), H.q(dir .. "/token")),
          dir .. "/sched.out")
  H.spawn(("DLUA_SPEC_TAG=%s %s worker --scheduler-file %s --token-file %s "
           .. "--nworkers 2"):format(tag, H.q(H.DLUA), H.q(dir .. "/sf"),
                                     H.q(dir .. "/token")),
          dir .. "/w.out")
  local sf
  H.poll(function()
    sf = require("dlua.cluster").read_scheduler_file(dir .. "/sf")
    return sf ~= nil
  end, 30)
  assert(sf, "no scheduler file: " .. (H.slurp(dir .. "/sched.out") or ""))
  return sf
end

-- The other client: a script in its own process.  It submits its own
-- keys and the shared one, reports, then waits for the file `go` before
-- it ends as `how` says ("close", or "hang" to be killed).
local function other_client(dir, tag, how)
  H.spit(dir .. "/b.lua", ([[
local dlua = require "dlua"
local c = dlua.Client{scheduler_file = %q, token_file = %q}
c:wait_for_workers(2, 60)
local sq = function(x) return x * x end
local own = c:map(function(x) return ("b"):rep(x) end, {1, 2, 3})
local shared = c:submit(sq, 12, dlua.opts{key = "shared-square"})
local vals = c:gather(own)
local f = io.open(%q, "w")
f:write(("b=%%s,%%s,%%s shared=%%d"):format(vals[1], vals[2], vals[3],
                                           shared:result()))
f:close()
os.rename(%q, %q)
while not io.open(%q) do dlua.sleep(0.02) end
if %q == "close" then c:close() else while true do dlua.sleep(1) end end
]]):format(dir .. "/sf", dir .. "/token", dir .. "/b.tmp", dir .. "/b.tmp",
           dir .. "/b.res", dir .. "/go", how))
  H.spawn(("DLUA_SPEC_TAG=%s %s %s"):format(tag, H.q(H.DLUA),
                                            H.q(dir .. "/b.lua")),
          dir .. "/b.out")
  local ok = H.poll(function() return H.slurp(dir .. "/b.res") ~= nil end, 60)
  assert(ok, "the other client did not report: "
         .. (H.slurp(dir .. "/b.out") or "") .. "; the scheduler said: "
         .. (H.slurp(dir .. "/sched.out") or ""))
  return H.slurp(dir .. "/b.res")
end

local function memory(c)
  return c:scheduler_info().tasks.memory
end

for _, how in ipairs{"close", "hang"} do
  it(("two clients share a scheduler; when one %s, only its own keys "
      .. "go"):format(how == "close" and "closes" or "is killed"), function()
    local dir = H.token_dir(TOKEN)
    local tag = L.tag()
    local c
    finally(function()
      if c then pcall(c.close, c) end
      L.stop_marked(tag)
      H.rmdir(dir)
    end)
    cluster(dir, tag)
    c = dlua.Client{scheduler_file = dir .. "/sf", token_file = dir .. "/token"}
    c:wait_for_workers(2, 60)
    local inc = function(x) return x + 1 end
    local mine = c:map(inc, {1, 2})
    assert.same({2, 3}, c:gather(mine))
    -- The second client joins while this one stays (no refusal).
    local res = other_client(dir, tag, how)
    assert.equals("b=b,bb,bbb shared=144", res)
    -- The shared key, submitted here too, is the one already computed.
    local shared = c:submit(function(x) return x * x end, 12,
                            dlua.opts{key = "shared-square"})
    assert.equals(144, shared:result())
    -- Held now: mine (2), b's own (3), the shared one (1).
    assert(H.poll(function() return memory(c) == 6 end, 10),
           "tasks in memory: " .. tostring(memory(c)))
    assert.matches("a client joined from 127.0.0.1:%d+ %(2 joined%)",
                   H.slurp(dir .. "/sched.out"))

    -- The other client ends.
    H.spit(dir .. "/go", "")
    if how == "hang" then
      local pids = L.marked(tag)
      for _, pid in ipairs(pids) do
        local cmd = H.slurp("/proc/" .. pid .. "/cmdline") or ""
        if cmd:find("b.lua", 1, true) then H.kill(pid, "KILL") end
      end
    end
    assert(H.poll(function()
      return (H.slurp(dir .. "/sched.out") or ""):find("left (1 still joined)",
                                                       1, true) ~= nil
    end, 20), "the scheduler did not see it go: "
       .. (H.slurp(dir .. "/sched.out") or ""))
    -- Its own three keys are released; the shared one and mine stay.
    assert(H.poll(function() return memory(c) == 3 end, 10),
           "tasks in memory after it left: " .. tostring(memory(c)))
    assert.same({2, 3}, c:gather(mine))
    assert.equals(144, shared:result())
    -- Functions both sent still run here (the scheduler did not drop
    -- what this client may name by hash only).
    assert.same({5, 6}, c:gather(c:map(inc, {4, 5})))
    assert.equals(49, c:submit(function(x) return x * x end, 7):result())
    c:close()
    c = nil
  end)
end

-- 1,000 connections opened at once on a real `dlua scheduler`, none of
-- which ever starts its handshake (a slow-loris crowd): the scheduler
-- keeps serving a worker and a client meanwhile, drops every one of them
-- after the handshake's time limit with one log line each, and nothing of
-- theirs reaches the frame decoder.  (tests/c/wire/test_tcp.c has 1,000
-- connections that all authenticate, at the transport's level.)  Every
-- wait polls with a deadline; every process is stopped in finally.
local BUSTED_ENV = _ENV
local describe, it, assert = describe, it, assert
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"

local TOKEN = "net-loris-spec-token-0123456789abcdef"
local N = 1000

describe("a crowd of silent connections", function()
  it("1,000 at once are all dropped after the handshake limit while the "
     .. "scheduler keeps serving", function()
    local dir = H.token_dir(TOKEN)
    finally(function()
      local pid = tonumber(H.slurp(dir .. "/crowd.pid") or "")
      if pid then H.kill(pid, "KILL") end
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
    local port = assert(tonumber(sf.address:match(":(%d+)$")))
    H.spawn(("%s worker %s --token-file %s"):format(
              H.q(H.DLUA), H.q(sf.address), H.q(dir .. "/token")),
            dir .. "/w.out")

    -- The crowd: one bash opens N connections and says so, then reads
    -- each to its end (the scheduler's hello, then its close) with its
    -- builtin read and says that too.  It never sends a byte.
    H.spit(dir .. "/crowd.sh", ([[
echo $$ > %s
fds=()
for i in $(seq %d); do
  exec {fd}<>/dev/tcp/127.0.0.1/%d || exit 1
  fds+=($fd)
done
echo opened > %s
for fd in "${fds[@]}"; do
  while IFS= read -r -d '' -u $fd x; do :; done
done
echo closed > %s
]]):format(H.q(dir .. "/crowd.pid"), N, port, H.q(dir .. "/opened"),
           H.q(dir .. "/closed")))
    H.spawn("bash " .. H.q(dir .. "/crowd.sh"), dir .. "/crowd.out")
    assert(H.poll(function() return H.slurp(dir .. "/opened") ~= nil end,
                  60), "the crowd could not connect: "
                       .. (H.slurp(dir .. "/crowd.out") or ""))

    -- While they hang on, a client joins and a task runs.
    local c <close> = dlua.Client{address = sf.address,
                                  token_file = dir .. "/token"}
    c:wait_for_workers(1, 30)
    assert.equals(42, c:submit(function(x) return x + 1 end, 41):result(30))

    -- Each is dropped after the limit (5 s), with one line each.
    assert(H.poll(function() return H.slurp(dir .. "/closed") ~= nil end,
                  60), "the scheduler did not drop every silent connection")
    local log = H.slurp(dir .. "/sched.out") or ""
    local n = select(2, log:gsub("no handshake within %d+ ms", ""))
    assert.equals(N, n)
    -- And it still serves.
    assert.equals(43, c:submit(function(x) return x + 1 end, 42):result(30))
    c:shutdown()
  end)
end)

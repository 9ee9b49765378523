-- Every public function and method, called with wrong arguments from a
-- user's line, either works or fails with an error that names that line
-- (or no line at all, as Lua's own functions do when called from C).  An
-- error positioned inside dlua ("[dlua]/dlua.frame.lua:354: attempt to
-- compare number with string") or at another line is a failure: it is
-- what a tail call or a missing type check leaves behind.  The names come
-- from dlua's own sources, so a function added later is swept too.  The
-- sweep runs in its own process, in a scratch folder (given "x" or 42 as
-- a path, some functions write there).
local BUSTED_ENV = _ENV
local describe, it, assert = describe, it, assert
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local H = require "helpers.cluster"

describe("errors name the caller's line", function()
  it("for every module function and method, given wrong arguments",
      function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. H.q(dir)))
    finally(function() os.execute("rm -rf " .. H.q(dir)) end)
    local root = H.TESTS .. "/.."
    -- Quiet, the sweep takes under a second (a few under the sanitizers):
    -- past five minutes it hangs, and the call in flight is named.
    local code, out = H.sh(("cd %s && timeout -k 5 300 \"$DLUA\" %s %s")
      :format(H.q(dir), H.q(H.TESTS .. "/fixtures/errors/errors_sweep.lua"),
              H.q(root)))
    if code == 124 or code == 137 then
      local f = io.open(dir .. "/progress")
      local at = f and f:read("a") or "(no progress file)"
      if f then f:close() end
      error("the sweep hung in " .. at .. "\n" .. out:sub(-4000))
    end
    assert.are.equal(0, code, out)
    local swept = tonumber(out:match("swept (%d+)"))
    assert.is_truthy(swept, out)
    assert.is_true(swept > 300, "only " .. tostring(swept) .. " swept")
    local fails = {}
    for line in out:gmatch("[^\n]+") do
      if line:match("^FAIL ") then fails[#fails + 1] = line end
    end
    assert.are.same({}, fails)
  end)
end)

-- The dlua command's C heap, which holds every Lua object, is on
-- transparent huge pages (runtime/base/dl_mem.c, dl_mem_heap_init): in the
-- client process and in its workers, off with DLUA_HUGE_HEAP=0.  Under the
-- sanitizers the heap is their malloc, so there is nothing to check.
local BUSTED_ENV = _ENV
local describe, it, assert = describe, it, assert
local function finally(fn) return BUSTED_ENV.finally(fn) end
local pending = pending
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"

local DLUA = os.getenv("DLUA") or "build/dlua"

local function thp_on()
  local f = io.open("/sys/kernel/mm/transparent_hugepage/enabled")
  if not f then return false end
  local s = f:read("a")
  f:close()
  return not s:find("[never]", 1, true)
end

-- What a process reads of its own huge pages after making 40 MB of small
-- tables: the growth of AnonHugePages, in KiB.  Sent to workers as is.
local PROBE = [[
local function huge()
  local f = io.open("/proc/self/smaps_rollup")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("AnonHugePages:%s+(%d+)"))
end
local before, t = huge(), {}
for i = 1, 400000 do t[i] = {i, i} end
return huge() - before
]]

local function growth_in_command(env)
  local p = io.popen(("%s %s -e %s"):format(env, H.q(DLUA),
                     H.q("io.write((function() " .. PROBE .. " end)())")))
  local out = p:read("a")
  p:close()
  return assert(tonumber(out), "no number from the probe: " .. out)
end

-- Does the dlua binary link mimalloc (make HEAP_LIBS=-lmimalloc)?
local function linked()
  local p = io.popen("ldd " .. H.q(H.DLUA) .. " 2>/dev/null")
  local out = p:read("a")
  p:close()
  return out:find("libmimalloc", 1, true) ~= nil
end

describe("the Lua heap", function()
  it("is on huge pages in the dlua command, and not with DLUA_HUGE_HEAP=0",
     function()
    if not linked() then
      -- the default build: glibc's heap, on 4 KiB pages
      assert.is_true(growth_in_command("") < 4 * 1024)
      return
    end
    if os.getenv("DLUA_SANITIZE") or not thp_on() then
      pending("sanitizers' malloc, or no transparent huge pages here")
      return
    end
    assert.is_true(growth_in_command("") >= 16 * 1024)
    assert.is_true(growth_in_command("DLUA_HUGE_HEAP=0") < 4 * 1024)
  end)

  it("is on huge pages in a worker (with mimalloc linked)", function()
    if not linked() then
      local client = dlua.Client{n_workers = 1}
      finally(function() client:close() end)
      local probe = assert(load(PROBE))
      -- glibc's heap in a worker: the probe runs (whether its pages are
      -- huge is the kernel's THP policy, not dlua's)
      assert.is_number(client:submit(probe):result(60))
      return
    end
    if os.getenv("DLUA_SANITIZE") or not thp_on() then
      pending("sanitizers' malloc, or no transparent huge pages here")
      return
    end
    local client = dlua.Client{n_workers = 1}
    finally(function() client:close() end)
    local probe = assert(load(PROBE))
    assert.is_true(client:submit(probe):result(60) >= 16 * 1024)
  end)
end)

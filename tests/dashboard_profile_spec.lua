-- /json/profile's time window (?seconds=N, the /profile page's "Time"
-- menu): only the samples that came in the last N seconds, from the log
-- the scheduler keeps.  Its own cluster: the profile here holds only the
-- work of this file.
local BUSTED_ENV = _ENV
local describe, it, setup, teardown, assert =
  describe, it, setup, teardown, assert
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"
local HTTP = require "helpers.http"
local json_decode, http = HTTP.json_decode, HTTP.get

function dwin_spin(n)
  local s = 0
  for i = 1, n do s = s + i % 7 end
  return s
end
function dwin_early(x) return dwin_spin(1000000) + x end
function dwin_late(x) return dwin_spin(1000000) + x end

describe("dashboard profile window", function()
  local dash = HTTP.dashboard(2)
  local client, base
  setup(function() dash.start(); client, base = dash.client, dash.base end)
  teardown(dash.stop)

  local function profile(q) return dash.json("/json/profile" .. (q or "")) end

  -- Samples under each task group (the root's children).
  local function groups(p)
    local sub, out = {}, {}
    for i = #p.nodes, 2, -1 do
      local x = p.nodes[i]
      sub[i] = (sub[i] or 0) + x[3]
      if x[1] == 0 then
        out[x[2]] = sub[i]
      else
        sub[x[1] + 1] = (sub[x[1] + 1] or 0) + sub[i]
      end
    end
    return out
  end

  -- Run tasks with map (new keys each time) until the whole-run profile
  -- has at least 10 samples of group; returns them.  (map names the group
  -- by the function's name where it is called.)
  local function work(map, group)
    local n, fs = 0, {}
    assert.truthy(H.poll(function()
      local more = map({n + 1, n + 2, n + 3, n + 4})
      n = n + 4
      dlua.wait(more)
      for _, f in ipairs(more) do fs[#fs + 1] = f end
      return (groups(profile())[group] or 0) >= 10
    end, 60), group .. " gets no samples")
    for _, f in ipairs(fs) do f:release() end
    return groups(profile())[group]
  end

  it("counts only the samples of the last N seconds", function()
    local early = work(function(xs) return client:map(dwin_early, xs) end,
                       "dwin_early")
    -- Once the early work's last samples are over a second old, a
    -- one-second window has none of them; the whole profile keeps them.
    assert.truthy(H.poll(function()
      return groups(profile("?seconds=1")).dwin_early == nil
    end, 30))
    local p = profile("?seconds=1")
    assert.are.equal(1, p.seconds)
    assert.is_true(p.complete)
    local late = work(function(xs) return client:map(dwin_late, xs) end,
                      "dwin_late")
    local all = groups(profile())
    assert.truthy(all.dwin_early >= early and all.dwin_late >= late)
    -- A window wide enough holds both, with every sample (the log covers
    -- it all), and its counts add up as the whole profile's do.
    p = profile("?seconds=3600")
    assert.is_true(p.complete)
    local g = groups(p)
    assert.are.equal(all.dwin_early, g.dwin_early)
    assert.truthy(g.dwin_late >= all.dwin_late)
    local sum = 0
    for _, x in ipairs(p.nodes) do sum = sum + x[3] end
    assert.are.equal(p.samples, sum)
    assert.are.equal("dwin_spin", p.top[1].name:match("^(%S+)"))
    -- Per worker, the same window.
    local per = 0
    for _, id in ipairs{1, 2} do
      local w = profile("?worker=" .. id .. "&seconds=3600")
      assert.are.equal(id, w.worker)
      per = per + (groups(w).dwin_early or 0)
    end
    assert.are.equal(all.dwin_early, per)
  end)

  it("refuses a window that is not a whole number of seconds", function()
    for _, q in ipairs{"seconds=0", "seconds=-5", "seconds=x", "seconds=",
                       "seconds=86401", "seconds=1.5"} do
      local code, body = http(base .. "/json/profile?" .. q)
      assert.are.equal(400, code, q)
      assert.truthy(json_decode(body).error:match("^seconds must be"), body)
    end
    assert.are.equal(404, (http(base .. "/json/profile?worker=9&seconds=5")))
  end)
end)

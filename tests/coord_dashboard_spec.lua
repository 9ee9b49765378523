-- The dashboard's coordination view (issue 18): /coord, linked from the
-- nav, and /json/coord, read over HTTP while a task waits on a Queue, the
-- client holds a Lock and a task holds another: waiters and holders are
-- named by their task's key and worker.
local describe, it, setup, teardown, assert =
  describe, it, setup, teardown, assert
local _ENV = _G

local dlua = require "dlua"
local HTTP = require "helpers.http"
local json_decode, http = HTTP.json_decode, HTTP.get

describe("dashboard coordination view", function()
  local dash = HTTP.dashboard(1)
  local client, base
  setup(function() dash.start(); client, base = dash.client, dash.base end)
  teardown(dash.stop)

  -- /json/coord's entry for kind and name, polled until pred holds.
  local function entry_until(kind, name, pred)
    local deadline = dlua.time() + 20
    while true do
      local code, body = http(base .. "/json/coord")
      assert.equal(200, code)
      for _, p in ipairs(json_decode(body).primitives) do
        if p.kind == kind and p.name == name and pred(p) then return p end
      end
      assert(dlua.time() < deadline, "timed out waiting for " .. name)
      dlua.sleep(0.05)
    end
  end

  it("shows waiters, lease holders and queue lengths", function()
    local q = dlua.Queue("dash-q")
    local lock = dlua.Lock("dash-lock")
    assert.is_true(lock:acquire{timeout = 5})
    local wid = client.handle:workers()[1].id
    local f = client:submit(function(queue) return queue:get() end, q,
                            dlua.opts{key = "dash-getter"})
    local p = entry_until("queue", "dash-q",
                          function(e) return e.waiters == 1 end)
    assert.same({{from = wid, lease = 0, op = "get", task = "dash-getter"}},
                p.who)
    p = entry_until("lock", "dash-lock", function(e) return e.count == 1 end)
    assert.equal(-1, p.who[1].from)
    assert.equal("holds", p.who[1].op)
    assert.is_nil(p.who[1].task) -- the client: no task
    q:put("a")
    assert.equal("a", f:result(30))
    q:put("b")
    q:put("c")
    p = entry_until("queue", "dash-q", function(e) return e.count == 2 end)
    assert.equal(0, p.waiters)
    lock:release()
    entry_until("lock", "dash-lock", function(e) return e.count == 0 end)
    -- A task that holds a lease is named by its key, while it holds it
    -- and waits (for an Event) with its slot given back.
    local go = dlua.Event("dash-go")
    local h = client:submit(function(l, ev)
      assert(l:acquire{timeout = 10})
      ev:wait{timeout = 30}
      l:release()
      return true
    end, dlua.Lock("dash-lock2"), go, dlua.opts{key = "dash-holder"})
    p = entry_until("lock", "dash-lock2",
                    function(e) return e.count == 1 end)
    assert.equal(wid, p.who[1].from)
    assert.equal("holds", p.who[1].op)
    assert.equal("dash-holder", p.who[1].task)
    p = entry_until("event", "dash-go", function(e) return e.waiters == 1 end)
    assert.same({{from = wid, lease = 0, op = "wait", task = "dash-holder"}},
                p.who)
    go:set()
    assert.is_true(h:result(30))
    entry_until("lock", "dash-lock2", function(e) return e.count == 0 end)
    -- The page is served and linked from the other pages' nav.
    local code, page = http(base .. "/coord")
    assert.equal(200, code)
    assert.matches("/static/coord.js", page, 1, true)
    local _, status = http(base .. "/status")
    assert.matches('href="/coord"', status, 1, true)
    assert.equal(200, (http(base .. "/static/coord.js")))
  end)
end)

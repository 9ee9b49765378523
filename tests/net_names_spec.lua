-- Worker names (`dlua worker --name N`, Dask's `--name`): real `dlua
-- scheduler` and `dlua worker` processes on the loopback.  A name shows in
-- scheduler_info(), print(client), the dashboard's worker table and the
-- errors of tasks that ran on it; a second worker of a taken name is
-- refused with one clear line on both sides and the first stays.  Every
-- wait polls with a deadline; every process is stopped in finally.
local BUSTED_ENV = _ENV
local describe, it, assert = describe, it, assert
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"
local http = require "helpers.http"

local TOKEN = "net-names-spec-token-0123456789abcdef"

local function by_name(ws)
  local t = {}
  for _, w in ipairs(ws) do
    if w.name then t[w.name] = w end
  end
  return t
end

describe("worker names", function()
  it("are shown everywhere, and a taken name is refused", function()
    local dir = H.token_dir(TOKEN)
    local wpids = {}
    finally(function()
      local t = require("dlua.cluster").read_scheduler_file(dir .. "/sf")
      for _, p in ipairs(wpids) do H.kill(p, "KILL") end
      if t and t.pid > 0 then H.kill(t.pid, "KILL") end
      H.rmdir(dir)
    end)
    H.spawn(("%s scheduler --host 127.0.0.1 --port 0 "
             .. "--dashboard-address 127.0.0.1:0 --scheduler-file %s "
             .. "--token-file %s"):format(H.q(H.DLUA), H.q(dir .. "/sf"),
                                          H.q(dir .. "/token")),
            dir .. "/sched.out")
    local sf
    assert(H.poll(function()
      sf = require("dlua.cluster").read_scheduler_file(dir .. "/sf")
      return sf ~= nil
    end, 30), "no scheduler file")
    local function worker(args, out)
      H.spawn(("%s worker %s --token-file %s %s"):format(
                H.q(H.DLUA), H.q(sf.address), H.q(dir .. "/token"), args),
              dir .. "/" .. out)
    end
    worker("--name alpha --nworkers 2", "alpha.out")
    worker("--name beta", "beta.out")
    local c <close> = dlua.Client{scheduler_file = dir .. "/sf",
                                  token_file = dir .. "/token"}
    c:wait_for_workers(3, 30)
    local ws = c:scheduler_info().workers
    for _, w in ipairs(ws) do wpids[#wpids + 1] = w.pid end
    local named = by_name(ws)
    assert.truthy(named["alpha-0"], "no alpha-0")
    assert.truthy(named["alpha-1"], "no alpha-1")
    assert.truthy(named.beta, "no beta")
    local beta = named.beta

    -- print(client) names each worker after its id.
    local text = tostring(c)
    assert.matches(("Worker %d (beta):"):format(beta.id), text, 1, true)
    assert.matches(("Worker %d (alpha-0):"):format(named["alpha-0"].id),
                   text, 1, true)

    -- The dashboard's worker table and worker page.
    local code, body = http.get(sf.dashboard:gsub("/status$", "")
                                .. "/json/workers")
    assert.equals(200, code)
    local found
    for _, w in ipairs(http.json_decode(body).workers) do
      if w.id == beta.id then found = w.name end
    end
    assert.equals("beta", found)
    code, body = http.get(sf.dashboard:gsub("/status$", "")
                          .. "/json/worker?id=" .. beta.id)
    assert.equals(200, code)
    assert.equals("beta", http.json_decode(body).name)

    -- A task's error says which worker ran it, by name.
    local f = c:submit(function() error("boom") end,
                       dlua.opts{workers = {beta.id},
                                 allow_other_workers = false})
    local ok, err = pcall(f.result, f)
    assert.is_false(ok)
    assert.matches(("(on worker %d (beta))"):format(beta.id), tostring(err),
                   1, true)

    -- A second worker named beta: refused, with one line on each side;
    -- it exits (status 4, not rejoined) and the first beta stays.
    local rc, out = H.sh(("%s worker %s --token-file %s --name beta")
      :format(H.q(H.DLUA), H.q(sf.address), H.q(dir .. "/token")))
    assert.equals(4, rc)
    assert.matches(("refused this worker: the name 'beta' is taken by "
                    .. "worker %d (pid %d"):format(beta.id, beta.pid),
                   out, 1, true)
    assert(H.poll(function()
      return (H.slurp(dir .. "/sched.out") or "")
        :find("refused a worker", 1, true) ~= nil
    end, 10), "no refusal in the scheduler's log")
    assert.matches("the name 'beta' is taken", H.slurp(dir .. "/sched.out"),
                   1, true)
    assert.equals(3, #c:scheduler_info().workers)
    assert.equals(beta.id, by_name(c:scheduler_info().workers).beta.id)

    -- A bad name is refused by the command before anything starts.
    rc, out = H.sh(("%s worker %s --name ''"):format(H.q(H.DLUA),
                                                     H.q(sf.address)))
    assert.equals(2, rc)
    assert.matches("--name must be 1 to 56 printable characters", out, 1,
                   true)

    -- A named worker that dies is listed with its name.
    assert(H.kill(beta.pid, "KILL"))
    local dead
    assert(H.poll(function()
      dead = c:scheduler_info().dead_workers
      return #dead == 1
    end, 20), "the dead worker is not listed")
    assert.equals(beta.id, dead[1].id)
    assert.equals("beta", dead[1].name)

    -- The name is free again: a new beta joins.
    worker("--name beta", "beta2.out")
    assert(H.poll(function()
      local b = by_name(c:scheduler_info().workers).beta
      if b then wpids[#wpids + 1] = b.pid end
      return b ~= nil and b.id ~= beta.id
    end, 30), "a new beta did not join")
    c:shutdown()
  end)
end)

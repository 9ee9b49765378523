-- The dashboard: the HTTP server on the scheduler's loop, its JSON and
-- Prometheus endpoints, error statuses, many clients at once, and the
-- pages in a real browser (tests/browser/dashboard.test.js).  HTTP is
-- spoken by curl and by the small C client build/http_load.
local BUSTED_ENV = _ENV
local describe, it, setup, teardown, assert, pending =
  describe, it, setup, teardown, assert, pending
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"

local BUILD = os.getenv("DLUA_BUILD") or "build"

function dash_inc(x) return x + 1 end  -- global: its name names the task group
function dash_bad(x)
  if x % 3 == 0 then error("bad input " .. x .. "\nsecond line", 0) end
  return string.rep("x", 1000 * x)
end
function dash_big(x) return string.rep("y", 100000 + x) end
-- A known hot spot for the profiler: dash_work spends nearly all its time
-- in dash_hot's loop, and almost none in dash_cold.
function dash_hot(n)
  local s = 0
  for i = 1, n do s = s + i % 7 end
  return s
end
function dash_cold(x) return x + 1 end
function dash_work(x)
  local y = dash_cold(x)
  local s = dash_hot(2000000)
  return s + y
end

local HTTP = require "helpers.http"
local json_decode, http = HTTP.json_decode, HTTP.get

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

describe("dashboard", function()
  local client, base, inc_futures

  setup(function()
    client = dlua.Client{n_workers = 2, memory_limit = "256 MiB",
                         dashboard_address = "127.0.0.1:0"}
    base = "http://" .. client.cluster.dashboard_address
    -- Held for the whole file: a group goes with its last task.
    inc_futures = client:map(dash_inc, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
    assert.are.same({2, 3, 4, 5, 6, 7, 8, 9, 10, 11},
                    client:gather(inc_futures))
  end)

  teardown(function()
    if client then client:close() end
  end)

  it("reports its address in the link and in print(client)", function()
    local addr = client.cluster.dashboard_address
    assert.truthy(addr:match("^127%.0%.0%.1:%d+$"))
    assert.are.equal(addr, client.cluster.handle:dashboard())
    assert.are.equal("http://" .. addr .. "/status",
                     client.cluster.dashboard_link)
    assert.truthy(tostring(client):find("Dashboard:      http://" .. addr
                                          .. "/status", 1, true))
  end)

  it("serves the pages and redirects / to /status", function()
    local code, body, hdr = http(base .. "/")
    assert.are.equal(302, code)
    assert.truthy(hdr:find("Location: /status", 1, true))
    for _, p in ipairs{"/status", "/workers", "/info", "/graph", "/system",
                       "/profile"} do
      code, body, hdr = http(base .. p)
      assert.are.equal(200, code)
      assert.truthy(hdr:find("Content-Type: text/html", 1, true))
      assert.truthy(body:find("/static/dashboard.js", 1, true))
    end
    code, body = http(base .. "/static/dashboard.js")
    assert.are.equal(200, code)
    assert.truthy(body:find("json/status", 1, true))
    assert.are.equal(200, (http(base .. "/static/style.css")))
  end)

  it("/json/status has task groups and worker memory", function()
    local code, body, hdr = http(base .. "/json/status")
    assert.are.equal(200, code)
    assert.truthy(hdr:find("Content-Type: application/json", 1, true))
    local st = json_decode(body)
    local g
    for _, x in ipairs(st.groups) do if x.name == "dash_inc" then g = x end end
    assert.truthy(g, body)
    assert.are.equal(10, g.total)
    assert.are.equal(10, g.done)
    assert.are.equal(10, g.memory)
    for _, k in ipairs{"waiting", "processing", "erred", "failed"} do
      assert.are.equal(0, g[k])
    end
    assert.are.equal(10, st.counts.memory)
    assert.are.equal(2, #st.workers)
    for _, w in ipairs(st.workers) do
      assert.are.equal(256 * 1024 * 1024, w.limit)
      -- Nothing big stored, nothing spilled; the figures themselves are
      -- compared with scheduler_info() on a spilling cluster in
      -- memory_spec.lua.
      assert.are.equal(0, w.spilled)
      assert.truthy(w.managed >= 0 and w.managed < 1048576, w.managed)
      assert.truthy(w.rss > 1048576 and w.rss < w.limit, w.rss)
    end
  end)

  it("/json/workers and /json/info describe the cluster", function()
    local code, body = http(base .. "/json/workers")
    assert.are.equal(200, code)
    local ws = json_decode(body).workers
    assert.are.equal(2, #ws)
    for _, w in ipairs(ws) do
      assert.truthy(w.address:match("/w%d+%.sock$"))
      assert.truthy(H.running(w.pid))
      assert.are.equal(1, w.cores)
      assert.are.equal(256 * 1024 * 1024, w.memory.limit)
      assert.is_number(w.tasks.running)
      assert.is_number(w.tasks.stored)
      assert.truthy(w.uptime >= 0)
    end
    code, body = http(base .. "/json/info")
    assert.are.equal(200, code)
    local info = json_decode(body)
    assert.is_true(info.processes)
    assert.are.equal(2, info.workers)
    assert.are.equal(2 * 256 * 1024 * 1024, info.memory_total)
    assert.are.equal(2, #info.memory_per_worker)
    assert.are.equal(dlua.version, info.versions.dlua)
    assert.truthy(info.versions.lua:match("^Lua 5%.4"))
    assert.truthy(info.versions.libuv:match("^%d+%.%d+"))
    assert.are.equal(client.cluster.address, info.scheduler)
  end)

  it("/json/stream returns task events since a number", function()
    local code, body = http(base .. "/json/stream?since=0")
    assert.are.equal(200, code)
    local s = json_decode(body)
    assert.are.equal(10, #s.events)
    assert.are.equal(10, s.next)
    for _, e in ipairs(s.events) do
      assert.are.equal("dash_inc", e.group)
      assert.is_true(e.ok)
      assert.truthy(e.stop >= e.start and e.start > 0)
      assert.truthy(e.worker == 1 or e.worker == 2)
    end
    s = json_decode(select(2, http(base .. "/json/stream?since=10")))
    assert.are.equal(0, #s.events)
    assert.are.equal(10, s.next)
  end)

  it("/json/stream events name the task, its bytes and its error", function()
    local s0 = json_decode(select(2, http(base .. "/json/stream?since=0"))).next
    local fs = client:map(dash_bad, {1, 2, 3, 4, 5, 6})
    dlua.wait(fs)
    local evs = {}
    assert.truthy(H.poll(function()
      local s = json_decode(select(2, http(base .. "/json/stream?since=" .. s0)))
      for _, e in ipairs(s.events) do evs[e.key] = e end
      s0 = s.next
      local n = 0
      for _ in pairs(evs) do n = n + 1 end
      return n == 6
    end, 10))
    for _, f in ipairs(fs) do
      local e = assert(evs[f.key], f.key)
      assert.are.equal("dash_bad", e.group)
      local x = tonumber(f.key:match("%-(%d+)$")) or 0
      if f:status() == "error" then
        assert.is_false(e.ok)
        assert.truthy(e.error:match("^bad input %d+$"), e.error)
      else
        assert.is_true(e.ok)
        assert.is_nil(e.error)
        assert.truthy(e.bytes >= 1000, e.bytes)
      end
      assert.is_number(x)
    end
    -- The group's figures add up: a failure is not counted as done.
    local g
    assert.truthy(H.poll(function()
      local st = json_decode(select(2, http(base .. "/json/status")))
      for _, x in ipairs(st.groups) do if x.name == "dash_bad" then g = x end end
      return g and g.memory + g.erred == 6
    end, 10))
    assert.are.equal(6, g.total)
    assert.are.equal(4, g.done)
    assert.are.equal(2, g.failed)
    assert.are.equal(2, g.erred)
    assert.are.equal(g.total, g.done + g.erred + g.processing + g.waiting
                              + g.ready)
    assert.are.equal(g.done, g.memory + g.released)
    for _, f in ipairs(fs) do f:release() end
  end)

  it("forgets a task group when its last task goes", function()
    local fs = client:map(dash_big, {1, 2, 3})
    client:gather(fs)
    local function group()
      local st = json_decode(select(2, http(base .. "/json/status")))
      for _, x in ipairs(st.groups) do
        if x.name == "dash_big" then return x end
      end
    end
    -- (/json/status is a snapshot up to 100 ms old.)
    assert.truthy(H.poll(function()
      local g = group()
      return g and g.total == 3 and g.memory == 3
    end, 10))
    for _, f in ipairs(fs) do f:release() end
    client.handle:flush()
    assert.truthy(H.poll(function() return group() == nil end, 10),
                  "the group stayed after its tasks were released")
  end)

  it("scheduler_info() shows stored results right after wait", function()
    local fs = client:map(dash_big, {11, 12, 13, 14, 15, 16, 17, 18})
    dlua.wait(fs)
    local stored, managed = 0, 0
    for _, w in ipairs(client:scheduler_info().workers) do
      stored = stored + w.stored
      managed = managed + w.managed
    end
    -- Heartbeats come every 0.5 s; the scheduler must not wait for one.
    assert.truthy(stored >= 8, "stored " .. stored)
    assert.truthy(managed >= 8 * 100000, "managed " .. managed)
    assert.truthy(tostring(client):match("managed [^,]+, spilled [^,]+, "
                                         .. "stored %d+ results?"),
                  tostring(client))
    for _, f in ipairs(fs) do f:release() end
    client.handle:flush()
    assert.truthy(H.poll(function()
      local n = 0
      for _, w in ipairs(client:scheduler_info().workers) do
        n = n + w.stored
      end
      return n < stored
    end, 10))
  end)

  it("/json/graph has the tasks, their states and dependencies", function()
    local d = dlua.delayed
    local a = d(dash_inc)(1)
    local b = d(dash_inc)(a)
    local fb, f = table.unpack(client:compute({b, d(dash_bad)(b)})) -- 3: fails
    dlua.wait({fb, f})
    local g
    assert.truthy(H.poll(function()
      g = json_decode(select(2, http(base .. "/json/graph")))
      for _, n in ipairs(g.nodes) do
        if n.k == f.key and n.s == 4 then return true end
      end
    end, 10))
    assert.are.equal("tasks", g.mode)
    local idx = {}
    for i, n in ipairs(g.nodes) do idx[n.k] = i - 1 end
    local fi = idx[f.key]
    local from
    for _, e in ipairs(g.edges) do
      if e[2] == fi then from = g.nodes[e[1] + 1] end
    end
    assert.truthy(from, "no edge into the failed task")
    assert.are.equal("dash_inc", from.g)
    -- The held dash_inc results of setup are in memory on a worker.
    local held = 0
    for _, n in ipairs(g.nodes) do
      if n.g == "dash_inc" and n.s == 3 and n.w >= 1 then held = held + 1 end
    end
    assert.truthy(held >= 10, held)
    f:release()
    fb:release()
  end)

  it("/json/graph shows groups past 2000 tasks", function()
    local xs = {}
    for i = 1, 2500 do xs[i] = i end
    local fs = client:map(dash_inc, xs)
    local sums = client:map(function(x) return x end, fs)
    dlua.wait(sums)
    local g
    assert.truthy(H.poll(function()
      g = json_decode(select(2, http(base .. "/json/graph")))
      return g.mode == "groups" and g.tasks >= 5000
    end, 10))
    local names = {}
    for _, n in ipairs(g.nodes) do names[n.g] = n end
    assert.truthy(names.dash_inc and names.dash_inc.n >= 2500)
    assert.truthy(#g.nodes < 20, #g.nodes)
    assert.truthy(#g.edges >= 1)
    for _, f in ipairs(fs) do f:release() end
    for _, f in ipairs(sums) do f:release() end
    client.handle:flush()
    assert.truthy(H.poll(function()  -- back to the 10 of setup
      local st = json_decode(select(2, http(base .. "/json/status")))
      return st.counts.memory == 10
    end, 10))
  end)

  it("/json/worker?id=N describes one worker; /json/system the processes",
     function()
    local w
    assert.truthy(H.poll(function()
      w = json_decode(select(2, http(base .. "/json/worker?id=1")))
      return #w.history >= 2
    end, 10))
    assert.are.equal(1, w.id)
    assert.truthy(H.running(w.pid))
    assert.is_number(w.assigned.count)
    local n = 0
    for _, k in ipairs(inc_futures) do
      for _, x in ipairs(w.stored.largest) do if x.key == k.key then n = n + 1 end end
    end
    assert.are.equal(w.stored.count, n) -- only setup's results are held
    for i = 2, #w.history do
      assert.truthy(w.history[i][1] >= w.history[i - 1][1] + 0.9)
    end
    assert.are.equal(404, (http(base .. "/json/worker?id=77")))
    assert.are.equal(400, (http(base .. "/json/worker?id=x")))
    assert.are.equal(400, (http(base .. "/json/worker")))
    assert.are.equal(200, (http(base .. "/worker?id=1")))
    local sys
    assert.truthy(H.poll(function()
      sys = json_decode(select(2, http(base .. "/json/system")))
      return #sys.samples >= 2
    end, 10))
    local last = sys.samples[#sys.samples]
    assert.are.equal(3, #last.procs) -- the scheduler and 2 workers
    assert.are.equal(0, last.procs[1][1])
    for _, p in ipairs(last.procs) do
      assert.truthy(p[3] >= 0 and p[4] > 0 and p[5] > 2, table.concat(p, " "))
    end
  end)

  it("/json/profile finds the hot function on top of the profile", function()
    local fs = client:map(dash_work, {1, 2, 3, 4, 5, 6, 7, 8})
    dlua.wait(fs)
    -- Samples come with the heartbeats (every 0.5 s); the scheduler's
    -- profile is rebuilt once a second at most.
    -- A quiet, fast machine runs the work in fewer samples than the test
    -- needs: then more work is given, until the samples are there.
    local p
    assert.truthy(H.poll(function()
      p = json_decode(select(2, http(base .. "/json/profile")))
      local n = 0
      for _, x in ipairs(p.nodes) do
        if x[2]:match("^dash_hot ") then n = n + x[3] end
      end
      if n >= 10 then return true end
      local b = #fs -- new arguments: new keys, so the work runs again
      local more = client:map(dash_work, {b + 1, b + 2, b + 3, b + 4})
      dlua.wait(more)
      for _, f in ipairs(more) do fs[#fs + 1] = f end
      return false
    end, 60), p and ("samples " .. p.samples))
    assert.are.equal(0, p.worker)
    -- The functions with the most samples of their own: dash_hot first,
    -- named by where it is defined.
    assert.truthy(p.top[1].name:match("^dash_hot %(.*dashboard_spec%.lua:%d+%)$"),
                  p.top[1].name)
    assert.truthy(p.top[1].self >= 10)
    for _, f in ipairs(p.top) do
      assert.truthy(f.self <= p.top[1].self)
    end
    -- The tree: root, then the group, then the task's function, then
    -- dash_hot under it; each node after its parent, counts that add up.
    local sum, path = 0, nil
    for i, x in ipairs(p.nodes) do
      sum = sum + x[3]
      assert.truthy(x[1] < i - 1, "node " .. i .. " comes before its parent")
      if x[2]:match("^dash_hot ") then
        local parent = p.nodes[x[1] + 1]
        local group = p.nodes[parent[1] + 1]
        path = group[2] .. " > " .. parent[2] .. " > dash_hot"
      end
    end
    assert.are.equal(p.samples, sum)
    assert.truthy(path and path:match("^dash_work > task %(.*:%d+%) > dash_hot$"),
                  path)
    -- Per worker: the workers' samples add up to the cluster's (none left).
    local per = 0
    for _, id in ipairs{1, 2} do
      local code, body = http(base .. "/json/profile?worker=" .. id)
      assert.are.equal(200, code)
      local w = json_decode(body)
      assert.are.equal(id, w.worker)
      per = per + w.samples
    end
    assert.truthy(per > 0)
    assert.are.equal(404, (http(base .. "/json/profile?worker=77")))
    assert.are.equal(400, (http(base .. "/json/profile?worker=x")))
    assert.are.equal(400, (http(base .. "/json/profile?worker=-1")))
    local code, body = http(base .. "/profile")
    assert.are.equal(200, code)
    assert.truthy(body:find('id="profile"', 1, true))
    for _, f in ipairs(fs) do f:release() end
    client.handle:flush()
    assert.truthy(H.poll(function()  -- back to the 10 of setup
      local st = json_decode(select(2, http(base .. "/json/status")))
      return st.counts.memory == 10
    end, 10))
  end)

  it("/json/worker shows a worker's spilling, transfers and log lines",
     function()
    -- Under AddressSanitizer a process needs several times the memory for
    -- the same data: the limit and the values scale together.
    local SCALE = os.getenv("DLUA_SANITIZE") and 3 or 1
    local c = dlua.Client{n_workers = 2, memory_limit = 64 * SCALE * 1048576,
                          dashboard_address = "127.0.0.1:0"}
    local b = "http://" .. c.cluster.dashboard_address
    local MiB = 1048576 * SCALE -- 4 MiB values, scaled
    local on1 = dlua.opts{workers = {1}, allow_other_workers = false}
    local on2 = dlua.opts{workers = {2}, allow_other_workers = false}
    -- 12 values of 4 MiB on worker 1, past its target (60 % of 64 MiB):
    -- it spills the oldest.  Each writes a line to stdout and to stderr.
    local vals = {}
    for i = 1, 12 do
      vals[i] = c:submit(function(k, n)
        print("dash made value " .. k)
        io.stderr:write("dash note " .. k .. "\n")
        return ("v"):rep(n) .. k
      end, i, 4 * MiB, on1)
    end
    dlua.wait(vals)
    -- Worker 2 takes the first six: they cross from worker 1, some read
    -- back from its disk first.
    local total = c:submit(function(...)
      local n = 0
      for i = 1, select("#", ...) do n = n + #select(i, ...) end
      return n
    end, vals[1], vals[2], vals[3], vals[4], vals[5], vals[6], on2)
    assert.are.equal(6 * 4 * MiB + 6, total:result(60))
    local w1, w2
    assert.truthy(H.poll(function() -- the figures come with heartbeats
      w1 = json_decode(select(2, http(b .. "/json/worker?id=1")))
      w2 = json_decode(select(2, http(b .. "/json/worker?id=2")))
      return w1.io.spill_out > 0 and w1.io.spill_in > 0 and
             w1.io.xfer_out >= 6 * 4 * MiB and w2.io.xfer_in >= 6 * 4 * MiB
             and #w1.logs >= 24
    end, 30), w1 and ("worker 1 io " .. w1.io.spill_out .. " "
                      .. w1.io.spill_in .. " " .. w1.io.xfer_out .. ", "
                      .. #w1.logs .. " lines"))
    assert.are.equal(0, w2.io.xfer_out)
    assert.are.equal(0, w1.io.xfer_in)
    -- The history has the same figures over time (columns 7 to 10).
    local last = w1.history[#w1.history]
    assert.truthy(#last == 10 and last[7] <= w1.io.spill_out, #last)
    -- Its lines, oldest first, each with its stream; none of worker 2's.
    local out, err = {}, {}
    for _, l in ipairs(w1.logs) do
      assert.is_number(l[1])
      local k = l[3]:match("^dash made value (%d+)$")
      if k then assert.are.equal(1, l[2]) out[#out + 1] = tonumber(k) end
      k = l[3]:match("^dash note (%d+)$")
      if k then assert.are.equal(2, l[2]) err[#err + 1] = tonumber(k) end
    end
    table.sort(out)
    table.sort(err)
    assert.are.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, out)
    assert.are.same(out, err)
    for i = 2, #w1.logs do assert.truthy(w1.logs[i][1] >= w1.logs[i - 1][1]) end
    for _, l in ipairs(w2.logs) do
      assert.falsy(l[3]:match("^dash "), l[3])
    end
    c:close()
  end)

  it("the profiler can be turned off, and refuses a bad interval", function()
    local script = os.tmpname()
    H.spit(script, [[
      local dlua = require "dlua"
      local c = dlua.Client{n_workers = 1, dashboard_address = "127.0.0.1:0"}
      function spin(n) local s = 0 for i = 1, n do s = s + i end return s end
      c:gather(c:map(spin, {3000000, 3000000, 3000000}))
      -- Heartbeats every 0.5 s would have brought samples by now.
      local t = dlua.time() + 1.5
      while dlua.time() < t do c:scheduler_info() os.execute("sleep 0.1") end
      local f = io.popen("curl -s http://" .. c.cluster.dashboard_address
                         .. "/json/profile")
      print(f:read("a"))
      f:close()
      c:close()
    ]])
    local code, out = H.sh("DLUA_PROFILE_INTERVAL=0 " .. H.q(H.DLUA) .. " "
                           .. H.q(script))
    assert.are.equal(0, code, out)
    assert.truthy(out:find('"samples":0,', 1, true), out)
    code, out = H.sh("DLUA_PROFILE_INTERVAL=fast " .. H.q(H.DLUA) .. " "
                     .. H.q(script))
    os.remove(script)
    assert.are_not.equal(0, code)
    assert.truthy(out:find("DLUA_PROFILE_INTERVAL must be a number of "
                           .. "milliseconds from 0 (off) to 60000, got 'fast'",
                           1, true), out)
  end)

  it("/metrics speaks the Prometheus text format", function()
    local code, body, hdr = http(base .. "/metrics")
    assert.are.equal(200, code)
    assert.truthy(hdr:find("Content-Type: text/plain; version=0.0.4", 1, true))
    assert.truthy(body:find('\ndlua_tasks{state="memory"} 10\n', 1, true),
                  body)
    assert.truthy(body:find("# TYPE dlua_tasks gauge", 1, true))
    assert.truthy(body:find("\ndlua_workers 2\n", 1, true))
    assert.truthy(body:match('dlua_worker_memory_bytes{worker="1",'
                             .. 'kind="managed"} %d+\n'))
    assert.truthy(body:find('dlua_worker_memory_bytes{worker="2",'
                            .. 'kind="limit"} 268435456\n', 1, true))
    -- A counter: the 10 of setup and those of the tests before.
    local done = body:match('\ndlua_group_tasks_done_total{group="dash_inc"} (%d+)\n')
    assert.truthy(tonumber(done) and tonumber(done) >= 10, body)
    -- The three per-group counters, each with its help, type and a sample
    -- per group that adds up with the others.
    local v = {}
    for _, name in ipairs{"dlua_group_tasks_total", "dlua_group_tasks_done_total",
                          "dlua_group_tasks_erred_total"} do
      assert.truthy(body:find("\n# HELP " .. name .. " Tasks ", 1, true), body)
      assert.truthy(body:find("\n# TYPE " .. name .. " counter\n", 1, true), body)
      v[name] = tonumber(body:match("\n" .. name .. '{group="dash_inc"} (%d+)\n'))
    end
    assert.are.equal(v.dlua_group_tasks_total, v.dlua_group_tasks_done_total
                                               + v.dlua_group_tasks_erred_total)
    for line in body:gmatch("[^\n]+") do
      assert.truthy(line:match("^# ") or line:match("^[%w_]+{?.-}? %-?%d+$"),
                    line)
    end
  end)

  it("answers 404, 405, 400, 431 and HEAD", function()
    assert.are.equal(404, (http(base .. "/nope")))
    assert.are.equal(404, (http(base .. "/json/nope")))
    assert.are.equal(404, (http(base .. "/static/status.html")))
    assert.are.equal(405, (http(base .. "/json/status", "-X", "POST",
                                "-d", "x=1")))
    assert.are.equal(405, (http(base .. "/status", "-X", "DELETE")))
    assert.are.equal(400, (http(base .. "/status", "-X", "G@T")))
    assert.are.equal(431, (http(base .. "/status", "-H",
                                "X-Big: " .. ("a"):rep(20000))))
    local code, body, hdr = http(base .. "/json/status", "-I")
    assert.are.equal(200, code)
    assert.truthy(hdr:match("Content%-Length: [1-9]%d*"))
    assert.falsy(body:find("{", 1, true)) -- headers only
    assert.falsy(hdr:find("{", 1, true))
    -- Still serving after all that.
    assert.are.equal(200, (http(base .. "/json/info")))
  end)

  it("answers only requests that name it in Host (DNS rebinding)",
     function()
    local port = client.cluster.dashboard_address:match(":(%d+)$")
    for _, h in ipairs{"127.0.0.1:" .. port, "localhost:" .. port,
                       "LOCALHOST:" .. port} do
      assert.are.equal(200, (http(base .. "/json/info", "-H", "Host: " .. h)),
                       h)
    end
    for _, h in ipairs{"evil.example:" .. port, "evil.example",
                       "127.0.0.1", "127.0.0.1:1", "127.0.0.2:" .. port,
                       "[::1]:" .. port, "127.0.0.1:" .. port .. "x",
                       "127.0.0.1:" .. port .. ".evil.example"} do
      local code, body = http(base .. "/json/workers", "-H", "Host: " .. h)
      assert.are.equal(403, code, h)
      assert.falsy(body:find("pid", 1, true))
    end
  end)

  it("answers 400 to a bad since", function()
    for _, q in ipairs{"-1", "abc", "1x", "", "18446744073709551616",
                       "99999999999999999999999"} do
      local code, body = http(base .. "/json/stream?since=" .. q)
      assert.are.equal(400, code, q)
      assert.truthy(json_decode(body).error, body)
    end
    local code, body = http(base .. "/json/stream?since=18446744073709551615")
    assert.are.equal(200, code)
    assert.are.equal(0, #json_decode(body).events)
    assert.are.equal(200, (http(base .. "/json/stream?x=1&since=3")))
  end)

  it("drops a request head that trickles in", function()
    local port = client.cluster.dashboard_address:match(":(%d+)$")
    -- A header line a second keeps the connection busy; the server must
    -- still close it within its head timeout (5 s), not wait forever.
    local code, out = H.sh(("bash -c %s"):format(H.q(([[
      exec 3<>/dev/tcp/127.0.0.1/%s
      printf 'GET /json/info HTTP/1.1
Host: 127.0.0.1
' >&3
      ( while printf 'X-Slow: 1
' >&3; do sleep 1; done ) 2>/dev/null &
      w=$!
      timeout 30 cat <&3 >/dev/null
      echo "cat=$?"
      kill $w 2>/dev/null
    ]]):format(port))))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("cat=0", 1, true), out)
    assert.are.equal(200, (http(base .. "/json/info")))
  end)

  it("caps the connections from one peer", function()
    local addr = client.cluster.dashboard_address
    local out = os.tmpname()
    os.execute(("%s/http_load -c 300 -d 2 -i 500 -p /json/info %s > %s 2>&1")
      :format(H.q(BUILD), addr, H.q(out)))
    local res = H.slurp(out)
    os.remove(out)
    local answered = tonumber(res:match("answered=(%d+)"))
    assert.truthy(answered and answered <= 256, res)
    assert.truthy(answered >= 100, res)
    assert.are.equal(200, (http(base .. "/json/info")))
  end)

  it("answers 200 concurrent clients while tasks run", function()
    local addr = client.cluster.dashboard_address
    local out = os.tmpname()
    os.execute(("%s/http_load -c 200 -d 3 -p /json/status %s > %s 2>&1 &")
      :format(H.q(BUILD), addr, H.q(out)))
    local xs = {}
    for i = 1, 2000 do xs[i] = i end
    local function load_done()
      return (H.slurp(out) or ""):find("conns=") ~= nil
    end
    -- Rounds of tasks until the load is over (it prints its line then);
    -- count the rounds that finished while it was still on.
    local during = 0
    assert.truthy(H.poll(function()
      local r = client:gather(client:map(dash_inc, xs))
      for i = 1, 2000 do assert.are.equal(i + 1, r[i]) end
      if load_done() then return true end
      during = during + 1
      return false
    end, 60), "http_load never finished")
    local res = H.slurp(out)
    os.remove(out)
    assert.truthy(res:find("errors=0 answered=200 conns=200", 1, true), res)
    assert.truthy(during >= 1, "no round of tasks finished under the load")
  end)

  it("closes its port with the cluster", function()
    local c = dlua.Client{n_workers = 1, dashboard_address = "127.0.0.1:0"}
    local url = "http://" .. c.cluster.dashboard_address .. "/json/info"
    assert.are.equal(200, (http(url)))
    c:close()
    assert.are.equal(0, (http(url)))
  end)

  it("can be turned off, and refuses bad addresses", function()
    local c = dlua.Client{n_workers = 1, dashboard_address = false}
    assert.is_nil(c.cluster.dashboard_link)
    assert.is_nil(c.cluster.handle:dashboard())
    assert.truthy(tostring(c):find("Dashboard:      (off)", 1, true))
    c:close()
    assert.has_error(function()
      dlua.LocalCluster{n_workers = 1, dashboard_address = "nowhere"}
    end)
    assert.has_error(function()
      dlua.LocalCluster{n_workers = 1, dashboard_address = 8787}
    end)
    local ok, err = pcall(dlua.LocalCluster, {n_workers = 1,
                          dashboard_address = "256.1.1.1:80"})
    assert.is_false(ok)
    assert.truthy(tostring(err):find("dashboard address", 1, true), err)
  end)

  it("an address asked for by name is not replaced", function()
    local taken = client.cluster.dashboard_address
    local ok, err = pcall(dlua.LocalCluster, {n_workers = 1,
                          dashboard_address = taken})
    assert.is_false(ok)
    assert.truthy(tostring(err):find("in use", 1, true), err)
  end)

  it("moves off a default port in use, with one note on stderr", function()
    local script = os.tmpname()
    H.spit(script, [[
      local dlua = require "dlua"
      local a = dlua.LocalCluster{n_workers = 1}
      local b = dlua.LocalCluster{n_workers = 1}
      print("A " .. a.dashboard_link)
      print("B " .. b.dashboard_link)
      b:close()
      a:close()
    ]])
    local code, out = H.sh(H.q(H.DLUA) .. " " .. H.q(script))
    os.remove(script)
    assert.are.equal(0, code, out)
    local a = out:match("A http://([%d.:]+)/status")
    local b = out:match("B http://([%d.:]+)/status")
    assert.truthy(a and b, out)
    assert.are_not.equal(a, b)
    local notes = select(2, out:gsub("is in use; the dashboard is at", ""))
    -- Each cluster that is not on 8787 says so once (another program may
    -- hold 8787 for a while, so either of them can be the one moved).
    local moved = 0
    for _, addr in ipairs({a, b}) do
      if addr ~= "127.0.0.1:8787" then
        moved = moved + 1
        assert.truthy(out:find("http://" .. addr .. "/status instead", 1,
                               true), out)
      end
    end
    assert.truthy(moved >= 1, out)
    assert.are.equal(moved, notes, out)
  end)

  it("works in a real browser (headless Chromium)", function()
    local chromium = os.getenv("CHROMIUM") or "/usr/bin/chromium"
    if not have("node") or not have(chromium)
       or not H.slurp("tests/browser/node_modules/playwright-core/package.json")
    then
      pending("node, " .. chromium .. " or tests/browser/node_modules missing "
              .. "(scripts/install-deps)")
      return
    end
    local code, out = H.sh("node tests/browser/dashboard.test.js")
    assert.are.equal(0, code, out)
    assert.truthy(out:find("dashboard browser test passed", 1, true), out)
  end)
end)

describe("dlua.performance_report", function()
  local client, dir

  setup(function()
    client = dlua.Client{n_workers = 2, memory_limit = "256 MiB",
                         dashboard_address = false}
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. H.q(dir)))
  end)

  teardown(function()
    if client then client:close() end
    os.execute("rm -rf " .. H.q(dir))
  end)

  local function data_of(html)
    -- The data is one JSON value on the line that sets DLUA_REPORT.
    local j = html:match("window%.DLUA_REPORT = (.-);\n")
    return j and json_decode((j:gsub("<\\/", "</")))
  end

  it("writes one self-contained file with every task of the period",
     function()
    client:gather(client:map(dash_inc, {100, 101})) -- before: not reported
    local file = dir .. "/r.html"
    local a, b = dlua.performance_report(file, function()
      local fs = client:map(dash_bad, {1, 2, 3, 4, 5, 6, 7})
      dlua.wait(fs)
      return 7, "x"
    end)
    assert.are.equal(7, a)
    assert.are.equal("x", b)
    local html = H.slurp(file)
    assert.truthy(html:match("^<!doctype html>"))
    -- Nothing to fetch: no src= or href= and no stylesheet link.
    assert.falsy(html:find("src=", 1, true))
    assert.falsy(html:find("<link", 1, true))
    assert.falsy(html:find("href=\"http", 1, true))
    assert.truthy(html:find("function drawReport", 1, true))
    local d = assert(data_of(html))
    local ok, failed = 0, 0
    for _, e in ipairs(d.events) do
      assert.are.equal("dash_bad", e.group)
      if e.ok then ok = ok + 1 else failed = failed + 1 end
    end
    assert.are.equal(5, ok)
    assert.are.equal(2, failed)
    assert.are.equal(2, #d.workers.workers)
    assert.is_table(d.history["1"])
    assert.truthy(d.stop >= d.start)
    assert.are.equal(file, d.title)
  end)

  it("writes when a <close> variable goes, and after an error", function()
    local file = dir .. "/c.html"
    do
      local r <close> = dlua.performance_report(file, {title = "t</script>"})
      client:gather(client:map(dash_inc, {1, 2, 3}))
      assert.is_nil(H.slurp(file))
    end
    local d = assert(data_of(H.slurp(file)))
    assert.are.equal(3, #d.events)
    assert.are.equal("t</script>", d.title) -- escaped in the page
    assert.falsy(H.slurp(file):find("t</script>", 1, true))
    local file2 = dir .. "/e.html"
    local ok, err = pcall(dlua.performance_report, file2, function()
      error("inner failure", 0)
    end)
    assert.is_false(ok)
    assert.are.equal("inner failure", err)
    assert.truthy(data_of(H.slurp(file2)))
  end)

  it("refuses bad arguments at the caller's line", function()
    local function line_of(f)
      local ok, err = pcall(f)
      assert.is_false(ok)
      return err
    end
    local here = "dashboard_spec.lua:%d+: performance_report: "
    assert.truthy(line_of(function() dlua.performance_report(42) end)
                  :match(here .. "filename must be"))
    assert.truthy(line_of(function() dlua.performance_report("") end)
                  :match(here .. "filename must be"))
    assert.truthy(line_of(function() dlua.performance_report("x", 5) end)
                  :match(here .. "second argument"))
    assert.truthy(line_of(function()
      dlua.performance_report("x", {colour = 1})
    end):match(here .. "unknown option 'colour'"))
    assert.truthy(line_of(function()
      dlua.performance_report(dir .. "/no/such/dir/r.html", function() end)
    end):match("performance_report: .*No such file"))
    local c2 = dlua.Client{n_workers = 1, dashboard_address = false}
    local r = dlua.performance_report(dir .. "/z.html", {client = c2})
    c2:close()
    assert.truthy(line_of(function() r:close() end)
                  :match(here .. "the client was closed"))
  end)
end)

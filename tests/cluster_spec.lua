-- The local process cluster, the scheduler and futures, with real worker
-- processes (no mocks).  Every wait has a timeout, so a runtime bug fails a
-- spec instead of hanging busted.
-- busted runs this file in its own environment table, which cannot travel
-- to workers; task functions below must see the real globals instead.
local BUSTED_ENV = _ENV
local describe, it, setup, teardown, assert =
  describe, it, setup, teardown, assert
-- finally exists only while an `it` runs
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"

-- Task bodies.  They are defined here, not in helpers.cluster: a function
-- found in a required module travels by module name, and workers do not
-- see busted's --lpath.

--- the pid of the process running the task
local function task_pid()
  local f = io.open("/proc/self/stat")
  local s = f:read("l")
  f:close()
  return tonumber(s:match("^(%d+)"))
end

--- spin for s seconds on dlua.time(), then return v
local function busy(s, v)
  local d = require("dlua")
  local t = d.time()
  while d.time() - t < s do end
  return v
end

--- loop forever
local function forever()
  while true do end
end

local DLUA, FIX, q = H.DLUA, H.FIX, H.q

local function is_timeout_error(e)
  return getmetatable(e) == dlua.TimeoutError
end

local function is_task_error(e)
  return getmetatable(e) == dlua.TaskError
end

-- Cancel futures and wait (bounded) until none is pending any more.
local function settle(futs)
  for _, f in ipairs(futs) do pcall(f.cancel, f) end
  H.poll(function()
    for _, f in ipairs(futs) do
      local ok, s = pcall(f.status, f)
      if ok and s == "pending" then return false end
    end
    return true
  end, 10)
end

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

local function sorted(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  return c
end

local function line_here() return debug.getinfo(2, "l").currentline end

-- ===================================================================
describe("dlua.parse_bytes", function()
  it("parses sizes exactly", function()
    assert.equal(512000000, dlua.parse_bytes("512MB"))
    assert.equal(2147483648, dlua.parse_bytes("2GiB"))
    assert.equal(1000000000, dlua.parse_bytes(1e9))
    assert.equal(123456789, dlua.parse_bytes(123456789))
    assert.equal(1500, dlua.parse_bytes("1.5kB"))
    assert.equal(4096, dlua.parse_bytes("4 KiB"))
    assert.equal(77, dlua.parse_bytes("77"))
    assert.equal("integer", math.type(dlua.parse_bytes(1e9)))
  end)

  it("rejects malformed sizes with a clear error", function()
    for _, bad in ipairs({"12 parsecs", "-1GB", "", "MB", "1.2.3GB"}) do
      local ok, err = pcall(dlua.parse_bytes, bad)
      assert.is_false(ok, "accepted " .. bad)
      assert.matches("malformed memory size '" .. bad:gsub("%p", "%%%0")
                     .. "'", err)
    end
    local ok, err = pcall(dlua.parse_bytes, {})
    assert.is_false(ok)
    assert.matches("memory size must be a number or a string", err)
    for _, bad in ipairs({0, -5, -1.5, 0/0, 0.5}) do
      ok, err = pcall(dlua.parse_bytes, bad)
      assert.is_false(ok, "accepted " .. tostring(bad))
      assert.matches("must be .*positive", err)
    end
    for _, bad in ipairs({math.huge, 1e300, "2000000 TiB"}) do
      ok, err = pcall(dlua.parse_bytes, bad)
      assert.is_false(ok, "accepted " .. tostring(bad))
      assert.matches("too large %(at most 1 EiB%)", err)
    end
  end)
end)

-- ===================================================================
describe("LocalCluster", function()
  it("prints address, workers, processes, threads and memory", function()
    local cluster = dlua.LocalCluster{n_workers = 2, memory_limit = "512MB"}
    finally(function() cluster:close() end)
    local s = tostring(cluster)
    assert.matches("Scheduler:%s+" .. cluster.address:gsub("%p", "%%%0"), s)
    assert.matches("^local://", cluster.address)
    assert.matches("Workers:%s+2\n", s)
    assert.matches("Processes:%s+yes", s)
    assert.matches("Total threads:%s+2\n", s)
    -- 2 x 512 MB = 1024000000 B = 976.56 MiB; 512 MB = 488.28 MiB
    assert.matches("Total memory:%s+976%.56 MiB", s)
    local n = 0
    for _ in s:gmatch("Worker %d+:%s+pid %d+, 1 thread, memory [^\n]* / "
                      .. "limit 488%.28 MiB") do
      n = n + 1
    end
    assert.equal(2, n)
    assert.equal(512000000, cluster.memory_limit)
    for _, w in ipairs(cluster:workers()) do
      assert.equal(512000000, w.memory_limit)
      assert.equal(1, w.nthreads)
      assert.is_true(H.running(w.pid))
    end
    -- each worker's real memory is shown (its figures come with its hello
    -- and every heartbeat), not "memory 0 B"
    assert.is_true(H.poll(function ()
      return not tostring(cluster):find("memory 0 B", 1, true)
    end, 10), tostring(cluster))
  end)

  it("parses memory_limit strings and numbers exactly", function()
    for _, case in ipairs({{"2GiB", 2147483648}, {1e9, 1000000000},
                           {300000000, 300000000}, {"512MB", 512000000}}) do
      local cluster = dlua.LocalCluster{n_workers = 1,
                                        memory_limit = case[1]}
      local ws = cluster:workers()
      cluster:close()
      assert.equal(case[2], cluster.memory_limit)
      assert.equal(1, #ws)
      assert.equal(case[2], ws[1].memory_limit)
    end
  end)

  it("rejects malformed memory_limit values with a clear error", function()
    for _, bad in ipairs({"12 parsecs", "-1GB", ""}) do
      local ok, err = pcall(dlua.LocalCluster,
                            {n_workers = 1, memory_limit = bad})
      assert.is_false(ok, "accepted " .. bad)
      assert.matches("^[^\n]*LocalCluster: memory_limit: malformed memory size '"
                     .. bad:gsub("%p", "%%%0") .. "'", err)
    end
    local ok, err = pcall(dlua.LocalCluster, {n_workers = 1, memory_limit = {}})
    assert.is_false(ok)
    assert.matches("LocalCluster: memory_limit: memory size must be a number "
                   .. "or a string", err)
  end)

  it("rejects unknown and bad options", function()
    local ok, err = pcall(dlua.LocalCluster, {n_worker = 2})
    assert.is_false(ok)
    assert.matches("unknown option 'n_worker'", err)
    ok, err = pcall(dlua.LocalCluster, {n_workers = 0})
    assert.is_false(ok)
    assert.matches("n_workers must be a positive integer", err)
    ok, err = pcall(dlua.LocalCluster, {n_workers = 1.5})
    assert.is_false(ok)
    assert.matches("n_workers must be a positive integer", err)
    ok, err = pcall(dlua.LocalCluster, "big")
    assert.is_false(ok)
    assert.matches("expects a table of options", err)
    ok, err = pcall(dlua.opts, {retry = 1})
    assert.is_false(ok)
    assert.matches("unknown option 'retry'", err)
    ok, err = pcall(dlua.opts, {retries = "2"})
    assert.is_false(ok)
    assert.matches("option 'retries' must be a number", err)
    ok, err = pcall(dlua.Client, 42)
    assert.is_false(ok)
    assert.matches("Client expects a LocalCluster", err)
  end)

  it("Client() with no arguments starts a cluster it owns", function()
    local client = dlua.Client()
    local pids = H.pids(client.cluster)
    local ok, gone
    finally(function() if not gone then client:close() end end)
    local p = io.popen("nproc")
    local cores = tonumber(p:read("l"))
    p:close()
    assert.equal(cores, #pids)
    assert.matches("Workers:%s+" .. cores, tostring(client))
    assert.equal(42, client:submit(function(x) return x + 1 end, 41):result(10))
    client:close()
    gone = true
    assert.equal("<LocalCluster: closed>", tostring(client.cluster))
    local left
    ok, left = H.all_gone(pids, 10)
    assert.is_true(ok, "workers left after client:close(): " .. tostring(left))
  end)

  it("Client(cluster) attaches; client:close() leaves the cluster running",
     function()
    local cluster = dlua.LocalCluster{n_workers = 2}
    finally(function() cluster:close() end)
    local client = dlua.Client(cluster)
    assert.equal(cluster, client.cluster)
    assert.equal(6, client:submit(function() return 6 end):result(10))
    client:close()
    local pids = H.pids(cluster)
    assert.equal(2, #pids)
    for _, p in ipairs(pids) do assert.is_true(H.running(p)) end
    local again = dlua.Client(cluster)
    assert.equal(7, again:submit(function() return 7 end):result(10))
    again:close()
  end)

  it("cluster:close() leaves no worker process behind", function()
    local cluster = dlua.LocalCluster{n_workers = 2}
    local client = dlua.Client(cluster)
    assert.equal(1, client:submit(function() return 1 end):result(10))
    local pids = H.pids(cluster)
    assert.equal(2, #pids)
    client:close()
    cluster:close()
    local ok, left = H.all_gone(pids, 10)
    assert.is_true(ok, "workers left after cluster:close(): " .. tostring(left))
    -- nothing of ours is left as a child either
    local p = io.popen("pgrep -P " .. H.self_pid())
    local kids = p:read("a")
    p:close()
    for _, pid in ipairs(pids) do
      assert.is_nil(kids:match("%f[%d]" .. pid .. "%f[%D]"))
    end
    cluster:close()   -- closing twice is harmless
  end)

  it("cluster:scale(3) then scale(1) changes the workers", function()
    local cluster = dlua.LocalCluster{n_workers = 2}
    finally(function() cluster:close() end)
    local client = dlua.Client(cluster)
    cluster:scale(3)
    assert.is_true(H.poll(function() return #cluster:workers() == 3 end, 10),
                   "scale(3): " .. #cluster:workers() .. " workers")
    local three = H.pids(cluster)
    local futs = client:map(function(x) return x + 1 end, range(30))
    assert.same(range(31), {1, table.unpack(client:gather(futs, 20))})
    cluster:scale(1)
    assert.is_true(H.poll(function() return #cluster:workers() == 1 end, 10),
                   "scale(1): " .. #cluster:workers() .. " workers")
    local keep = cluster:workers()[1].pid
    local retired = {}
    for _, p in ipairs(three) do
      if p ~= keep then retired[#retired + 1] = p end
    end
    assert.equal(2, #retired)
    local ok, left = H.all_gone(retired, 10)
    assert.is_true(ok, "retired workers still there: " .. tostring(left))
    assert.equal(9, client:submit(function() return 9 end):result(10))
    client:close()
  end)
end)

-- ===================================================================
describe("a client process that dies", function()
  it("killed with SIGKILL leaves no workers", function()
    local out = os.tmpname()
    local started = {}
    finally(function()
      os.remove(out)
      for _, p in ipairs(started) do H.kill(p, "KILL") end
    end)
    os.execute(("%s %s 30 >%s 2>&1 &"):format(q(DLUA),
               q(FIX .. "/orphan.lua"), q(out)))
    assert.is_true(H.poll(function()
      return (H.slurp(out) or ""):find("ready\n", 1, true) ~= nil
    end, 10), "fixture did not get ready: " .. tostring(H.slurp(out)))
    local text = H.slurp(out)
    local client = tonumber(text:match("client (%d+)"))
    local workers = {}
    for p in text:gmatch("worker (%d+)") do workers[#workers + 1] = tonumber(p) end
    assert.is_number(client)
    started[1] = client
    for _, p in ipairs(workers) do started[#started + 1] = p end
    assert.equal(2, #workers)
    for _, p in ipairs(workers) do assert.is_true(H.running(p)) end
    H.kill(client, "KILL")
    -- orphans are re-parented; a zombie nobody reaps counts as gone
    local ok, left = H.all_gone(workers, 10, true)
    assert.is_true(ok, "workers outlived their killed client: "
                   .. tostring(left))
  end)

  it("that exits without closing its cluster leaves no workers", function()
    local code, out = H.sh(q(DLUA) .. " " .. q(FIX .. "/unclosed.lua"))
    assert.equal(0, code, out)
    local workers = {}
    for p in out:gmatch("worker (%d+)") do workers[#workers + 1] = tonumber(p) end
    assert.equal(2, #workers, out)
    local ok, left = H.all_gone(workers, 10, true)
    assert.is_true(ok, "workers outlived their client: " .. tostring(left))
  end)
end)

-- ===================================================================
describe("cluster lifetime", function()
  it("30 start/submit/close cycles in one process exit cleanly", function()
    for _ = 1, 3 do
      local code, out = H.sh(q(DLUA) .. " " .. q(FIX .. "/cycles.lua") .. " 30")
      assert.equal(0, code, "exit status " .. tostring(code)
                   .. (code == 141 and " (SIGPIPE)" or "") .. ": " .. out)
      assert.matches("cycles done\n", out)
    end
  end)

  it("starts workers after its own binary was replaced on disk", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert.is_true(os.execute("mkdir " .. q(dir)))
    finally(function() os.execute("rm -rf " .. q(dir)) end)
    local exe = dir .. "/dlua"
    assert.is_true(os.execute(("cp %s %s"):format(q(DLUA), q(exe))))
    local code, out = H.sh(q(exe) .. " " .. q(FIX .. "/replaced_binary.lua"))
    assert.equal(0, code, out)
    assert.matches("result 42\n", out)
  end)
end)

-- ===================================================================
describe("a worker's garbage", function()
  it("small tasks leave their worker little garbage", function()
    -- Each task runs in a coroutine; a new one per task (about 1 KB) was
    -- most of what a small task left, so the worker's collector ran
    -- every ~120 tasks, inside one.  Ended tasks' coroutines are reused.
    local c = dlua.Client{n_workers = 1}
    finally(function() c:close() end)
    local function count() return collectgarbage("count") end
    local last, growth = nil, {}
    for _ = 1, 200 do
      local kb = c:submit(count):result(10)
      if last and kb >= last then growth[#growth + 1] = kb - last end
      last = kb
    end
    table.sort(growth)
    assert.is_true(#growth > 100)
    local median = growth[#growth // 2]
    assert.is_true(median < 0.4, ("%.3f KB a task"):format(median))
  end)
end)

describe("futures", function()
  local cluster, c

  setup(function()
    cluster = dlua.LocalCluster{n_workers = 2, memory_limit = "512MB"}
    c = dlua.Client(cluster)
  end)

  teardown(function()
    if c then c:close() end
    if cluster then cluster:close() end
  end)

  it("submit then result", function()
    local f = c:submit(function(a, b) return a + b end, 40, 2)
    assert.is_true(dlua.is_future(f))
    assert.equal(42, f:result(10))
    local g = c:submit(function(t) return {sum = t[1] + t[2], s = t.s:upper()} end,
                       {3, 4, s = "abc"})
    assert.same({sum = 7, s = "ABC"}, g:result(10))
    local up = 10
    local h = c:submit(function(x) return x * up end, 5)
    assert.equal(50, h:result(10))
  end)

  it("map over one sequence", function()
    local futs = c:map(function(x) return x * x end, range(50))
    assert.equal(50, #futs)
    local want = {}
    for i = 1, 50 do want[i] = i * i end
    assert.same(want, c:gather(futs, 20))
  end)

  it("map zips several sequences of one length", function()
    local futs = c:map(function(a, b, s) return a .. b .. s end,
                       {1, 2, 3}, {"a", "b", "c"}, {"x", "y", "z"})
    assert.equal(3, #futs)
    assert.same({"1ax", "2by", "3cz"}, c:gather(futs, 20))
    assert.same({}, c:map(function(a, b) return a + b end, {}, {}))
  end)

  it("map takes any argument: plain, tables, futures, proxies", function()
    local k = {mult = 3}
    local a = c:submit(function() return 10 end)
    local mixed = {1, {2}, "s", true, 2.5, a, {v = a}}
    local futs = c:map(function(x)
      if type(x) == "table" then return x.v and x.v + 1 or x[1] * k.mult end
      if type(x) == "number" then return x * k.mult end
      return type(x)
    end, mixed)
    assert.same({3, 6, "string", "boolean", 7.5, 30, 11}, c:gather(futs, 20))
    -- nil arguments arrive as nil; a sequence's __index and __len count
    local proxy = setmetatable({}, {
      __index = function(_, i) if i ~= 2 then return i * 10 end end,
      __len = function() return 3 end})
    futs = c:map(function(x, y) return tostring(x) .. "/" .. tostring(y) end,
                 proxy, {"a", "b", "c"})
    assert.same({"10/a", "nil/b", "30/c"}, c:gather(futs, 20))
    -- an __index that changes what the function sees, task by task
    local seen = 0
    local counting = setmetatable({}, {
      __index = function(_, i) seen = i; return i end,
      __len = function() return 3 end})
    futs = c:map(function(x) return x * 100 + seen end, counting)
    assert.same({101, 202, 303}, c:gather(futs, 20))
  end)

  it("map names the argument that cannot be sent", function()
    local co = coroutine.create(function() end)
    local ok, err = pcall(c.map, c, function(x) return x end, {1, co})
    assert.is_false(ok)
    assert.matches("cannot send coroutine at argument 1", err)
    ok, err = pcall(c.map, c, function(x) return co, x end, {1})
    assert.is_false(ok)
    assert.matches("upvalue 'co' of function", err)
    assert.matches("the task function", err)
  end)

  it("futures as arguments and inside tables are dependencies", function()
    local a = c:submit(function() return 10 end)
    local b = c:submit(function() return {x = "deep"} end)
    local g = c:submit(function(x, t)
      return {tx = type(x), x = x, ty = type(t.y[1]), y = t.y[1],
              tz = type(t.z), z = t.z and t.z.x, mt = getmetatable(t.y[1])}
    end, a, {y = {a}, z = b})
    assert.same({tx = "number", x = 10, ty = "number", y = 10,
                 tz = "table", z = "deep"}, g:result(10))
    local chain = a
    for _ = 1, 5 do chain = c:submit(function(v) return v + 1 end, chain) end
    assert.equal(15, chain:result(10))
  end)

  it("a function that uses require runs again with futures as arguments",
     function()
    local fn = function(x, y) local d = require("dlua"); return x + y end
    local a = c:submit(function(x) return x end, 1)
    assert.equal(3, c:submit(fn, a, 2):result(10))
    assert.equal(3, c:submit(fn, 1, 2):result(10))
    assert.equal(3, c:submit(fn, a, 2):result(10))
  end)

  it("gather keeps nesting", function()
    local f1 = c:submit(function() return 1 end)
    local f2 = c:submit(function() return 2 end)
    local f3 = c:submit(function() return "three" end)
    local got = c:gather({f1, {f2, {c = f3, plain = "p"}}, "s", 5}, 10)
    assert.same({1, {2, {c = "three", plain = "p"}}, "s", 5}, got)
    assert.equal(2, c:gather(f2, 10))
  end)

  it("gather of one level keeps other keys, holes and the metatable",
     function()
    local f1 = c:submit(function() return 1 end)
    local f2 = c:submit(function() return nil end)
    local f3 = c:submit(function() return "three" end)
    assert.same({1, 1, "three"}, c:gather({f1, f1, f3}, 10))
    local got = c:gather({f1, f3, x = 5, [10] = f1}, 10)
    assert.same({1, "three", x = 5, [10] = 1}, got)
    got = c:gather({f1, f2, f3}, 10)
    assert.equal(1, got[1])
    assert.is_nil(got[2])
    assert.equal("three", got[3])
    local mt = {__index = function() return "dflt" end}
    got = c:gather(setmetatable({a = f1, b = "b"}, mt), 10)
    assert.equal(mt, getmetatable(got))
    assert.equal(1, got.a)
    assert.equal("b", got.b)
    assert.equal("dflt", got.zzz)
    assert.same({}, c:gather({}, 10))
  end)

  it("gather of an array: big results, failures, released futures",
     function()
    local small = c:submit(function() return 7 end)
    local big = c:submit(function() return ("x"):rep(5000) end) -- fetched
    local got = c:gather({small, big, small}, 10)
    assert.equal(7, got[1])
    assert.equal(("x"):rep(5000), got[2])
    assert.equal(7, got[3])
    local bad = c:submit(function() error("array boom") end)
    local ok, err = pcall(c.gather, c, {small, bad, big}, 10)
    assert.is_false(ok)
    assert.is_true(is_task_error(err))
    assert.matches("array boom", tostring(err))
    local gone = c:submit(function() return 1 end)
    gone:result(10)
    gone:release()
    ok, err = pcall(c.gather, c, {small, gone}, 10)
    assert.is_false(ok)
    assert.matches("was released", tostring(err))
  end)

  it("scatter then use in tasks", function()
    local data = {}
    for i = 1, 1000 do data[i] = i end
    local s = c:scatter(data)
    assert.is_true(dlua.is_future(s))
    local futs = {}
    for i = 1, 10 do
      futs[i] = c:submit(function(t, k) return t[k * 100] + #t end, s, i)
    end
    local want = {}
    for i = 1, 10 do want[i] = i * 100 + 1000 end
    assert.same(want, c:gather(futs, 20))
    assert.same(data, s:result(10))
  end)

  it("done() and status() follow the task", function()
    local f = c:submit(busy, 0.3, "slow")
    assert.is_false(f:done())
    assert.equal("pending", f:status())
    assert.equal("slow", f:result(10))
    assert.is_true(f:done())
    assert.equal("finished", f:status())
    local e = c:submit(function() error("nope") end)
    assert.is_true(H.poll(function() return e:done() end, 10))
    assert.equal("error", e:status())
  end)

  it("exception() returns nil or the TaskError", function()
    local good = c:submit(function() return 1 end)
    assert.is_nil(good:exception(10))
    local bad = c:submit(function() error("exceptional") end)
    local e = bad:exception(10)
    assert.is_true(is_task_error(e))
    assert.equal(bad.key, e.key)
    assert.matches("exceptional", e.message)
    assert.matches("exceptional", tostring(e))
  end)

  it("traceback() names the task's source file and line", function()
    local line = line_here() + 1
    local bad = c:submit(function() local x = nil; return x.field end)
    local tb = bad:traceback(10)
    assert.is_string(tb)
    assert.matches("cluster_spec%.lua:" .. line, tb)
    assert.is_nil(c:submit(function() return 1 end):traceback(10))
  end)

  it("add_done_callback runs once, when done or at once", function()
    local got = {}
    local f = c:submit(busy, 0.05, 5)
    f:add_done_callback(function(x) got[#got + 1] = x end)
    assert.equal(5, f:result(10))
    assert.is_true(H.poll(function() c:_pump(0); return #got > 0 end, 5))
    c:_pump(0)
    assert.equal(1, #got)
    assert.equal(f, got[1])
    local now = 0
    f:add_done_callback(function() now = now + 1 end)
    assert.equal(1, now)
    local erred = false
    local e = c:submit(function() error("x") end)
    e:add_done_callback(function(x) erred = x:status() end)
    assert.is_true(H.poll(function() c:_pump(0); return erred ~= false end, 5))
    assert.equal("error", erred)
    assert.has_error(function() f:add_done_callback(42) end)
  end)

  it("cancel() of a queued task", function()
    local block = {c:submit(forever), c:submit(forever)}
    finally(function() settle(block) end)
    assert.is_true(H.poll(function()
      c:_pump(0)
      local n = 0
      for _, w in ipairs(cluster:workers()) do n = n + (w.executing or 0) end
      return n == 2
    end, 5), "both workers should be busy")
    local marker = os.tmpname()
    os.remove(marker)
    local queued = c:submit(function(p)
      local fh = io.open(p, "w"); fh:write("ran"); fh:close(); return 1
    end, marker)
    queued:cancel()
    assert.is_true(H.poll(function() return queued:status() == "cancelled" end, 5),
                   "status: " .. queued:status())
    local ok, err = pcall(queued.result, queued, 5)
    assert.is_false(ok)
    assert.matches("cancelled", tostring(err))
    settle(block)
    assert.equal(3, c:submit(function() return 3 end):result(10))
    assert.is_nil(H.slurp(marker), "the cancelled task ran")
  end)

  it("cancel() of a RUNNING task interrupts it; the worker lives on",
     function()
    local before = H.pids(cluster)
    local f = c:submit(forever)
    finally(function() settle({f}) end)
    assert.is_true(H.wait_executing(c, 5), "task never started")
    f:cancel()
    assert.is_true(H.poll(function() return f:status() == "cancelled" end, 5),
                   "status: " .. f:status())
    assert.has_error(function() f:result(5) end)
    -- the interrupted worker is free again: two quick tasks on both workers
    local futs = c:map(function(x) return x * 3 end, range(20))
    local want = {}
    for i = 1, 20 do want[i] = i * 3 end
    assert.same(want, c:gather(futs, 10))
    assert.is_true(H.poll(function()
      c:_pump(0)
      for _, w in ipairs(cluster:workers()) do
        if (w.executing or 0) > 0 then return false end
      end
      return true
    end, 5), "a worker still executes the cancelled task")
    assert.same(before, H.pids(cluster))
  end)

  it("future:cancel() then status() is 'cancelled' at once", function()
    local f = c:submit(forever)
    finally(function() settle({f}) end)
    assert.is_true(H.wait_executing(c, 5), "task never started")
    f:cancel()
    assert.equal("cancelled", f:status())
  end)

  it("wait ALL_COMPLETED", function()
    local futs = c:map(function(x) return busy(0.01, x) end, range(8))
    local done, not_done = dlua.wait(futs, {timeout = 10,
                                            return_when = dlua.ALL_COMPLETED})
    assert.equal(8, #done)
    assert.equal(0, #not_done)
    for _, f in ipairs(futs) do assert.equal("finished", f:status()) end
    local d2 = dlua.wait(futs[1], {timeout = 1})
    assert.equal(1, #d2)
  end)

  -- The endless task is pinned to one worker and the others to the other
  -- worker, so these do not depend on placement (see the spec on idle
  -- workers below).
  local function two_ids()
    local ids = {}
    for id in pairs(H.by_id(cluster)) do ids[#ids + 1] = id end
    table.sort(ids)
    return dlua.opts{workers = {ids[1]}}, dlua.opts{workers = {ids[2]}}
  end

  it("wait FIRST_COMPLETED", function()
    local on1, on2 = two_ids()
    local slow = c:submit(forever, on1)
    finally(function() settle({slow}) end)
    local fast = c:submit(function() return 1 end, on2)
    local done, not_done = dlua.wait({slow, fast},
      {timeout = 10, return_when = dlua.FIRST_COMPLETED})
    assert.same({fast}, done)
    assert.same({slow}, not_done)
  end)

  it("wait FIRST_EXCEPTION", function()
    local on1, on2 = two_ids()
    local slow = c:submit(forever, on1)
    finally(function() settle({slow}) end)
    local ok1 = c:submit(function() return 1 end, on2)
    local bad = c:submit(function() return busy(0.05) + nil end, on2)
    local done, not_done = dlua.wait({slow, ok1, bad},
      {timeout = 10, return_when = dlua.FIRST_EXCEPTION})
    assert.equal(1, #not_done)
    assert.equal(slow, not_done[1])
    assert.equal(2, #done)
    assert.equal("error", bad:status())
  end)

  it("quick tasks submitted with an endless one run on the idle worker",
     function()
    local slow = c:submit(forever)
    finally(function() settle({slow}) end)
    local quick = {}
    for i = 1, 4 do quick[i] = c:submit(function() return i end) end
    -- The endless task never ends: quick ones done at all ran elsewhere
    -- (a generous deadline, for a loaded machine).
    local ok, vals = pcall(c.gather, c, quick, 30)
    assert.is_true(ok, "quick tasks stuck behind an endless one: "
                   .. tostring(vals))
    assert.same({1, 2, 3, 4}, vals)
    assert.equal("pending", slow:status())
  end)

  it("quick tasks submitted while an endless one runs go to the idle worker",
     function()
    local slow = c:submit(forever)
    finally(function() settle({slow}) end)
    assert.is_true(H.wait_executing(c, 5), "task never started")
    local quick = {}
    for i = 1, 4 do quick[i] = c:submit(function() return i end) end
    -- The endless task never ends: quick ones done at all ran elsewhere
    -- (a generous deadline, for a loaded machine).
    local ok, vals = pcall(c.gather, c, quick, 30)
    assert.is_true(ok, "quick tasks stuck behind an endless one: "
                   .. tostring(vals))
    assert.same({1, 2, 3, 4}, vals)
    assert.equal("pending", slow:status())
  end)

  it("wait with a timeout raises dlua.TimeoutError", function()
    local slow = c:submit(forever)
    finally(function() settle({slow}) end)
    local t0 = dlua.time()
    local ok, err = pcall(dlua.wait, {slow}, {timeout = 0.2})
    assert.is_false(ok)
    assert.is_true(is_timeout_error(err), tostring(err))
    assert.matches("not done after 0%.2", tostring(err))
    assert.is_true(dlua.time() - t0 < 3)
    assert.has_error(function() dlua.wait({slow}, {return_when = "SOMETIME",
                                                    timeout = 1}) end)
  end)

  it("as_completed yields every future, with values and errors", function()
    local futs = c:map(function(x) return busy(0.002 * (x % 5), x * 10) end,
                       range(12))
    local bad = c:submit(function() error("bad one") end)
    futs[#futs + 1] = bad
    local vals, errs, seen = {}, {}, {}
    for f, v, err in dlua.as_completed(futs, {timeout = 20}) do
      assert.is_nil(seen[f])
      seen[f] = true
      if err then errs[#errs + 1] = err else vals[#vals + 1] = v end
    end
    local want = {}
    for i = 1, 12 do want[i] = i * 10 end
    assert.same(want, sorted(vals))
    assert.equal(1, #errs)
    assert.is_true(is_task_error(errs[1]))
    assert.matches("bad one", tostring(errs[1]))
  end)

  it("as_completed with a timeout raises dlua.TimeoutError", function()
    local slow = c:submit(forever)
    finally(function() settle({slow}) end)
    local fast = c:submit(function() return "f" end)
    local got = {}
    local ok, err = pcall(function()
      for f, v in dlua.as_completed({slow, fast}, {timeout = 0.3}) do
        got[#got + 1] = v
      end
    end)
    assert.is_false(ok)
    assert.is_true(is_timeout_error(err), tostring(err))
    assert.same({"f"}, got)
  end)

  it("result(timeout) raises dlua.TimeoutError", function()
    local slow = c:submit(forever)
    finally(function() settle({slow}) end)
    local t0 = dlua.time()
    local ok, err = pcall(slow.result, slow, 0.1)
    assert.is_false(ok)
    assert.is_true(is_timeout_error(err), tostring(err))
    assert.is_true(dlua.time() - t0 < 3)
    ok, err = pcall(c.gather, c, {slow}, 0.1)
    assert.is_false(ok)
    assert.is_true(is_timeout_error(err), tostring(err))
    assert.has_error(function() slow:result(-1) end)
  end)

  it("10,000 futures via map then gather are all correct", function()
    local n = 10000
    local futs = c:map(function(x) return x * 2 + 1 end, range(n))
    assert.equal(n, #futs)
    local vals = c:gather(futs, 60)
    assert.equal(n, #vals)
    local bad = 0
    for i = 1, n do if vals[i] ~= i * 2 + 1 then bad = bad + 1 end end
    assert.equal(0, bad)
  end)
end)

-- ===================================================================
describe("task options", function()
  local cluster, c

  setup(function()
    cluster = dlua.LocalCluster{n_workers = 2}
    c = dlua.Client(cluster)
  end)

  teardown(function()
    if c then c:close() end
    if cluster then cluster:close() end
  end)

  it("key names the task", function()
    local f = c:submit(function(x) return x end, 5, dlua.opts{key = "my-key-1"})
    assert.equal("my-key-1", f.key)
    assert.equal(5, f:result(10))
    local function double(x) return 2 * x end
    assert.matches("^double%-", c:submit(double, 1).key)
    local futs = c:map(double, {1, 2}, dlua.opts{name = "dbl"})
    assert.matches("^dbl%-", futs[1].key)
    assert.are_not.equal(futs[1].key, futs[2].key)
    assert.has_error(function() c:map(double, {1}, dlua.opts{key = "k"}) end)
  end)

  it("a trailing plain table is an argument, unless it looks like options",
     function()
    local f = c:submit(function(t) return t.data end, {data = "x"})
    assert.equal("x", f:result(10))
    -- all keys option names: refused, naming dlua.opts; dlua.opts{} at the
    -- end passes it as an argument after all
    local ok, err = pcall(c.submit, c, function(t) return t.key end,
                          {key = "data"})
    assert.is_false(ok)
    assert.matches("looks like options; pass options as dlua.opts", err)
    f = c:submit(function(t) return t.key end, {key = "data"}, dlua.opts{})
    assert.equal("data", f:result(10))
  end)

  it("pure gives equal calls the same key", function()
    local function add(a, b) return a + b end
    local p = dlua.opts{pure = true}
    local a = c:submit(add, 1, 2, p)
    local b = c:submit(add, 1, 2, p)
    local d = c:submit(add, 1, 3, p)
    assert.equal(a.key, b.key)
    assert.are_not.equal(a.key, d.key)
    assert.are_not.equal(c:submit(add, 1, 2).key, c:submit(add, 1, 2).key)
    assert.equal(3, a:result(10))
    assert.equal(3, b:result(10))
    assert.equal(4, d:result(10))
    local futs = c:map(add, {1, 1, 5}, {2, 3, 5}, p)
    assert.equal(a.key, futs[1].key)
    assert.equal(d.key, futs[2].key)
    assert.same({3, 4, 10}, c:gather(futs, 10))
    a:release()
    assert.equal(3, b:result(10)) -- one future of the key is still held
  end)

  it("priority: a high-priority task runs before queued ones", function()
    -- everything on one worker, so the order is that worker's order
    local id = cluster:workers()[1].id
    local on = {workers = {id}}
    local log = os.tmpname()
    finally(function() os.remove(log) end)
    -- The blocker says it started, then waits for the go file.
    local started, go = os.tmpname(), os.tmpname()
    os.remove(started)
    os.remove(go)
    finally(function() os.remove(started); os.remove(go) end)
    local block = c:submit(function(started_path, go_path)
      io.open(started_path, "w"):close()
      local t = os.clock()
      while os.clock() - t < 30 do
        local fh = io.open(go_path, "r")
        if fh then fh:close(); return true end
      end
    end, started, go, dlua.opts(on))
    c.handle:flush()
    assert.is_true(H.poll(function()
      local fh = io.open(started, "r")
      if fh then fh:close() end
      return fh ~= nil
    end, 10), "blocker never started")
    local stamp = function(path, name)
      local fh = io.open(path, "a")
      fh:write(name, "\n")
      fh:close()
      return name
    end
    local low = {}
    for i = 1, 6 do low[i] = c:submit(stamp, log, "low" .. i, dlua.opts(on)) end
    local high = c:submit(stamp, log, "high", dlua.opts{workers = {id},
                                                        priority = 10})
    c.handle:flush()
    -- Release the blocker only once all seven are queued on the worker:
    -- submissions travel in the background, so "sent" is not "arrived".
    -- The scheduler sends a worker about 5 ms of work ahead, judged by a
    -- moving mean of the run times so far, and the first tasks of a
    -- cluster (slow under ASan) can keep that under eight tasks; so
    -- while they have not all arrived, quick tasks on the other worker
    -- bring the mean down until the window takes them all.
    local other, round = cluster:workers()[2].id, 0
    local quick = function(x) return x end
    assert.is_true(H.poll(function()
      for _, w in ipairs(cluster:workers()) do
        if w.id == id and w.processing >= 8 then return true end
      end
      round = round + 1
      local xs = {}
      for i = 1, 20 do xs[i] = round * 100 + i end
      c:gather(c:map(quick, xs, dlua.opts{workers = {other}}), 10)
    end, 20), "the tasks never reached the worker")
    io.open(go, "w"):close()
    c:gather({block, high, low}, 20)
    local order = {}
    for line in io.lines(log) do order[#order + 1] = line end
    assert.equal(7, #order)
    assert.equal("high", order[1], "order: " .. table.concat(order, " "))
  end)

  it("retries re-run a failing task", function()
    local path = os.tmpname()
    finally(function() os.remove(path) end)
    local flaky = function(p)
      local fh = io.open(p)
      local n = tonumber(fh:read("a")) or 0
      fh:close()
      n = n + 1
      fh = io.open(p, "w"); fh:write(n); fh:close()
      if n <= 2 then error("flaky " .. n) end
      return n
    end
    assert.equal(3, c:submit(flaky, path, dlua.opts{retries = 2}):result(20))
    H.spit(path, "")
    local once = c:submit(flaky, path, dlua.opts{retries = 1})
    local ok, err = pcall(once.result, once, 20)
    assert.is_false(ok)
    assert.matches("flaky 2", tostring(err))
  end)

  it("workers restricts a task to the named worker", function()
    local ids = H.by_id(cluster)
    local n = 0
    for id, pid in pairs(ids) do
      n = n + 1
      local futs = {}
      for i = 1, 6 do
        futs[i] = c:submit(task_pid, dlua.opts{workers = {id}})
      end
      for i, got in ipairs(c:gather(futs, 20)) do
        assert.equal(pid, got, "task " .. i .. " for worker " .. id)
      end
    end
    assert.equal(2, n)
  end)

  it("timeout interrupts a task that runs too long", function()
    local before = H.pids(cluster)
    local t0 = dlua.time()
    local f = c:submit(forever, dlua.opts{timeout = 0.2})
    local e = f:exception(10)
    assert.is_true(dlua.time() - t0 < 5)
    assert.is_true(is_task_error(e))
    assert.equal("error", f:status())
    assert.matches("timed out", tostring(e))
    assert.equal(1, c:submit(function() return 1 end):result(10))
    assert.same(before, H.pids(cluster))
  end)
end)

-- ===================================================================
describe("task errors", function()
  local cluster, c

  setup(function()
    cluster = dlua.LocalCluster{n_workers = 2}
    c = dlua.Client(cluster)
  end)

  teardown(function()
    if c then c:close() end
    if cluster then cluster:close() end
  end)

  it("result() raises a TaskError with file:line and remote traceback",
     function()
    local line = line_here() + 1
    local bad = c:submit(function(x) error("went wrong with " .. x) end, 7)
    local others = c:map(function(x) return x + 100 end, range(20))
    local ok, err = pcall(bad.result, bad, 10)
    assert.is_false(ok)
    assert.is_true(is_task_error(err), tostring(err))
    local s = tostring(err)
    assert.matches("cluster_spec%.lua:" .. line .. ": went wrong with 7", s)
    assert.matches("\nremote stack traceback:", s)
    assert.matches("cluster_spec%.lua:" .. line .. ": in ", s)
    assert.matches(bad.key:gsub("%p", "%%%0"), s)
    -- other tasks go on
    local want = {}
    for i = 1, 20 do want[i] = i + 100 end
    assert.same(want, c:gather(others, 10))
    -- gather of a list with the failed one raises too
    assert.has_error(function() c:gather({others[1], bad}, 10) end)
  end)

  it("errors with non-string values are reported", function()
    local f = c:submit(function() error({code = 42}) end)
    local e = f:exception(10)
    assert.is_true(is_task_error(e))
    -- The table itself does not travel (yet): the error says what it was.
    assert.equal("error", e.kind)
    assert.equal("(error object is a table value)", e.message)
    assert.equal(f.key, e.key)
    assert.matches("^worker %d+$", e.worker)
    assert.equal(("task '%s' failed: (error object is a table value) (on %s)")
                 :format(f.key, e.worker), tostring(e):match("^[^\n]*"))
  end)

  it("a failed dependency fails its dependents", function()
    local bad = c:submit(function() error("root cause") end)
    local dep = c:submit(function(x) return x end, bad)
    local ok, err = pcall(dep.result, dep, 10)
    assert.is_false(ok)
    assert.is_true(is_task_error(err), tostring(err))
    assert.equal("error", dep:status())
  end)
end)

-- ===================================================================
describe("faults", function()
  -- A graph of W x L tasks: layer 1 holds 1..W, each later task adds two
  -- tasks of the layer before, plus one.  Returns futures and expected
  -- values, both as arrays of layers.
  local function layered_graph(c, step, W, L)
    local futs, want = {}, {}
    local layer, wl = {}, {}
    for j = 1, W do
      layer[j] = c:submit(function(x) return x end, j)
      wl[j] = j
    end
    futs[1], want[1] = layer, wl
    for l = 2, L do
      local nl, nw = {}, {}
      for j = 1, W do
        local k = j % W + 1
        nl[j] = c:submit(step, layer[j], layer[k])
        nw[j] = wl[j] + wl[k] + 1
      end
      futs[l], want[l], layer, wl = nl, nw, nl, nw
    end
    return futs, want
  end

  local function kill_mid_graph(step)
    local cluster = dlua.LocalCluster{n_workers = 2}
    finally(function() cluster:close() end)
    local c = dlua.Client(cluster)
    local futs, want = layered_graph(c, step, 10, 20)
    local before = H.pids(cluster)
    dlua.wait(futs[4], {timeout = 20})
    local victim = before[1]
    H.kill(victim, "KILL")
    local got = c:gather(futs, 60)
    assert.same(want, got)
    assert.is_true(H.poll(function()
      local ps = H.pids(cluster)
      return #ps == 2 and ps[1] ~= victim and ps[2] ~= victim
    end, 10), "no replacement worker: " .. table.concat(H.pids(cluster), " "))
    assert.is_true(H.all_gone({victim}, 5))
    assert.equal(5, c:submit(function() return 5 end):result(10))
    c:close()
  end

  it("kill -9 of a worker mid-graph: every future still right", function()
    kill_mid_graph(function(a, b)
      local t = os.clock()
      while os.clock() - t < 0.003 do end
      return a + b + 1
    end)
  end)

  it("kill -9 mid-graph, tasks spinning on require('dlua').time()",
     function()
    kill_mid_graph(function(a, b)
      local d = require("dlua")
      local t = d.time()
      while d.time() - t < 0.003 do end
      return a + b + 1
    end)
  end)

  it("a worker busy with a long task still hands its results to a peer",
     function()
    local cluster = dlua.LocalCluster{n_workers = 2}
    finally(function() cluster:close() end)
    local c = dlua.Client(cluster)
    local ws = cluster:workers()
    local a, b = ws[1].id, ws[2].id
    local x = c:submit(function() return ("v"):rep(1000) end,
                       dlua.opts{workers = {a}})
    assert.equal(1000, #x:result(10))
    -- A long task on the same worker, held until the go file appears.
    local go = os.tmpname()
    os.remove(go)
    finally(function() os.remove(go) end)
    local long = c:submit(function(path)
      local t = os.clock()
      while os.clock() - t < 20 do
        local fh = io.open(path, "r")
        if fh then fh:close(); return "released" end
      end
      return "gave up"
    end, go, dlua.opts{workers = {a}})
    assert.is_true(H.wait_executing(c, 10), "the long task never started")
    -- The consumer on the other worker gets x from the busy one while the
    -- long task is still running there.
    local n = c:submit(function(v) return #v end, x,
                       dlua.opts{workers = {b}}):result(10)
    assert.equal(1000, n)
    assert.equal("pending", long:status())
    io.open(go, "w"):close()
    assert.equal("released", long:result(20))
  end)

  it("a big value moves to the other worker without a socket, and "
     .. "outlives the worker that made it", function()
    local cluster = dlua.LocalCluster{n_workers = 2}
    finally(function() cluster:close() end)
    local c = dlua.Client(cluster)
    local ws = cluster:workers()
    table.sort(ws, function(p, q) return p.id < q.id end)
    local a, b = ws[1], ws[2]
    local function gen(seed)
      local parts = {}
      for i = 1, 2500 do parts[i] = ("%08d"):format(seed * 10000 + i) end
      return table.concat(parts):rep(1000) -- 20 MB
    end
    local runs = os.tmpname()
    finally(function() os.remove(runs) end)
    local function make(seed, path) -- counts its runs in the file at path
      local fh = io.open(path, "a")
      fh:write("run\n")
      fh:close()
      return gen(seed)
    end
    -- A digest the client can compute too: length, both ends, samples.
    local function digest(v)
      local s = 0
      for i = 1, #v, 9973 do s = (s * 31 + v:byte(i)) % 1000000007 end
      return ("%d:%s:%s:%d"):format(#v, v:sub(1, 12), v:sub(-12), s)
    end
    local x = c:submit(make, 7, runs, dlua.opts{workers = {a.id}})
    dlua.wait(x, {timeout = 20})
    local want = digest(gen(7))
    assert.equal(want, c:submit(digest, x,
                                dlua.opts{workers = {b.id}}):result(20))
    -- The consumer copied the producer's block out of it: its copy is its
    -- own, no read-only mapping of a memfd of A's shows in its maps.
    local maps = H.slurp("/proc/" .. math.tointeger(b.pid) .. "/maps")
    assert.is_nil(maps:find(" r%-%-s [^\n]*/memfd:dlua"),
                  "a mapping of A's block on B:\n" .. maps)
    -- With the producer gone, B's copy still holds the right bytes: it is
    -- used as it is, not made again.
    H.kill(a.pid, "KILL")
    assert.is_true(H.all_gone({a.pid}, 10))
    assert.equal(want, c:submit(digest, x,
                                dlua.opts{workers = {b.id}}):result(20))
    assert.equal("run\n", H.slurp(runs))
    c:close()
  end)

  it("big results reach the client whole, by result() and by gather",
     function()
    local cluster = dlua.LocalCluster{n_workers = 2}
    finally(function() cluster:close() end)
    local c = dlua.Client(cluster)
    local function make(i)
      local head = ("[%03d]"):format(i)
      return head .. string.char(97 + i):rep(6 * 1048576) .. head:reverse()
    end
    local futs = c:map(make, {1, 2, 3, 4})
    local got = c:gather(futs, 30)
    for i = 1, 4 do assert.is_true(got[i] == make(i), "result " .. i) end
    assert.is_true(futs[2]:result(10) == make(2))
    -- The blocks were only lent: the workers still serve their values.
    local n = c:submit(function(v) return #v end, futs[3]):result(10)
    assert.equal(#make(3), n)
    c:close()
  end)

  it("with DLUA_SHARE_MEMORY=0 big values still arrive whole, as bytes "
     .. "asked for at once", function()
    local code, out = H.sh("DLUA_SHARE_MEMORY=0 " .. q(DLUA) .. " "
                           .. q(FIX .. "/big_values.lua"))
    assert.equal(0, code, out)
    assert.truthy(out:find("ok\n", 1, true), out)
    -- No worker read or mapped another's block: each got bytes.
    assert.truthy(out:find("B read bytes\n", 1, true), out)
    assert.is_nil(out:find("maps r--s memfd", 1, true), out)
    -- Nor was a block asked for as a file first (GETS, then GETF, then
    -- bytes): no worker made a memfd copy that nobody would map.
    assert.is_nil(out:find("made a memfd copy", 1, true), out)
    -- By default B copies A's block out of A: no socket, no mapping, and
    -- no copy of it made in A.
    local code2, out2 = H.sh(q(DLUA) .. " " .. q(FIX .. "/big_values.lua"))
    assert.equal(0, code2, out2)
    assert.truthy(out2:find("B read no bytes\n", 1, true), out2)
    assert.is_nil(out2:find("maps r--s memfd", 1, true), out2)
    assert.is_nil(out2:find("made a memfd copy", 1, true), out2)
  end)

  it("where reading a peer is refused, a big value comes as a memfd to map",
     function()
    -- DLUA_SHARE_MEMORY=map refuses reads by address (EPERM), as Yama's
    -- ptrace_scope does between sibling processes: B asks A for a file,
    -- which A makes for it.
    local code, out = H.sh("DLUA_SHARE_MEMORY=map " .. q(DLUA) .. " "
                           .. q(FIX .. "/big_values.lua"))
    assert.equal(0, code, out)
    assert.truthy(out:find("ok\n", 1, true), out)
    assert.truthy(out:find("B read no bytes\n", 1, true), out)
    assert.truthy(out:find("maps r--s memfd", 1, true), out)
    assert.truthy(out:find("made a memfd copy", 1, true), out)
  end)

  it("a task that kills its worker fails with KilledWorker after 3 deaths",
     function()
    local cluster = dlua.LocalCluster{n_workers = 2}
    finally(function() cluster:close() end)
    local c = dlua.Client(cluster)
    local t0 = dlua.time()
    local f = c:submit(function() os.exit(3) end)
    local e = f:exception(30)
    assert.is_true(is_task_error(e), tostring(e))
    assert.matches("KilledWorker", tostring(e))
    assert.matches("3 workers", tostring(e))
    assert.equal("error", f:status())
    assert.is_true(dlua.time() - t0 < 20)
    assert.has_error(function() f:result(5) end)
    -- the cluster still works, with its two workers
    local futs = c:map(function(x) return -x end, range(10))
    local want = {}
    for i = 1, 10 do want[i] = -i end
    assert.same(want, c:gather(futs, 20))
    assert.is_true(H.poll(function() return #cluster:workers() == 2 end, 10))
    c:close()
  end)
end)

-- ===================================================================
describe("task output", function()
  it("print and io.write in tasks reach the client as [worker N] lines",
     function()
    local code, out = H.sh(q(DLUA) .. " " .. q(FIX .. "/output.lua"))
    assert.equal(0, code, out)
    out = "\n" .. out
    assert.matches("client says hi\n", out)
    assert.matches("gathered 1,2,3,4\n", out)
    assert.matches("closed\n", out)
    for k = 1, 4 do
      assert.matches("\n%[worker %d+%] print from task " .. k .. "\n",
                     out)
      assert.matches("\n%[worker %d+%] write from task " .. k .. "\n",
                     out)
    end
    -- no unprefixed task output
    assert.is_nil(out:match("\nprint from task"), out)
  end)
end)

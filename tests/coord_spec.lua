-- Tasks that launch tasks (issue 18): dlua.get_client() inside a task,
-- over the worker's own link; a task that waits gives its slot back (it
-- runs in a coroutine that yields to the worker), so recursion on workers
-- with one slot each cannot deadlock; a wait that closes a cycle is an
-- error.  Real worker processes; every wait is bounded.
local BUSTED_ENV = _ENV
local describe, it, setup, teardown, assert =
  describe, it, setup, teardown, assert
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"
local stored, wait_for = H.stored, H.wait_for

-- pcall(f, ...) that must fail; returns the message as a string.
local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "no error raised")
  return tostring(e), e
end

local function fib(n)
  if n < 2 then return n end
  local c = require("dlua").get_client()
  local a, b = c:submit(fib, n - 1), c:submit(fib, n - 2)
  local r = c:gather({a, b})
  return r[1] + r[2]
end

describe("get_client in tasks", function()
  local env, c = H.local_cluster{n_workers = 2}, nil
  setup(function() env.start(); c = env.c end)
  teardown(env.stop)

  -- A lone task's result goes to the scheduler from its executor thread
  -- (the write gate), a burst's from the worker's I/O thread: either way
  -- what the task sent before returning (an unbounded Queue's put does
  -- not wait for an answer) is applied before its result is known.
  it("a task's own messages reach the scheduler before its result",
     function()
    local q = dlua.Queue("order-before-done")
    local function put_then_return(x)
      require("dlua").Queue("order-before-done"):put(x)
      return x
    end
    for i = 1, 40 do -- lone tasks
      assert.equal(i, c:submit(put_then_return, i):result(30))
      assert.same({i}, q:get{batch = true})
    end
    local xs = {} -- a burst
    for i = 1, 200 do xs[i] = i end
    local futs = c:map(put_then_return, xs)
    local first = futs[1]:result(60)
    assert.equal(1, first)
    c:gather(futs)
    local got = q:get{batch = true}
    table.sort(got)
    assert.same(xs, got)
  end)

  it("runs recursive fib(15) by tasks on 2 workers with 1 slot each",
     function()
    for _, w in ipairs(c.handle:workers()) do
      assert.equal(1, w.nthreads)
    end
    assert.equal(610, c:submit(fib, 15):result(120))
  end)

  it("releases a task's futures when it ends: the cluster empties",
     function()
    -- Dask drops a task's futures as its references go; here the worker
    -- collects its Lua garbage soon after such a task ends, so nothing
    -- stays held until a collection that an idle worker never runs.
    local function held() -- (this client's own garbage collected first)
      collectgarbage()
      local n = 0
      for _, v in pairs(c:scheduler_info().tasks) do n = n + v end
      return n
    end
    local f = c:submit(fib, 6)
    assert.equal(8, f:result(60))
    f:release()
    wait_for("the scheduler to hold no keys after fib(6), and the "
             .. "workers to store nothing",
             function() return held() == 0 and stored(c) == 0 end, 5)
  end)

  it("makes every client call work inside a task", function()
    local function job(n)
      local dl = require("dlua")
      local cl = dl.get_client()
      local out = {}
      local futs = cl:map(function(x) return x * 2 end, {1, 2, 3})
      out.map = cl:gather(futs)
      out.result = cl:submit(function(a, b) return a + b end, 1, n):result(30)
      local data = cl:scatter({10, 20})
      out.scatter = cl:submit(function(t) return t[1] + t[2] end, data)
        :result(30)
      local done = dl.wait(futs, {timeout = 30})
      out.wait = #done
      local seen = 0
      for _ in dl.as_completed(cl:map(function(x) return x end, {1, 2}))
      do seen = seen + 1 end
      out.as_completed = seen
      local d = dl.delayed(function(a, b) return a * b end)(6, 7)
      out.delayed = d:compute()
      out.same = dl.get_client() == cl and dl.default_client() == cl
      dl.sleep(0.01)
      return out
    end
    local r = c:submit(job, 5):result(60)
    assert.same({2, 4, 6}, r.map)
    assert.equal(6, r.result)
    assert.equal(30, r.scatter)
    assert.equal(3, r.wait)
    assert.equal(2, r.as_completed)
    assert.equal(42, r.delayed)
    assert.is_true(r.same)
  end)

  it("starts a task's children while it keeps running", function()
    -- The parent never waits: what it submitted must still go out.
    local path = os.tmpname()
    os.remove(path)
    local function parent(p)
      local cl = require("dlua").get_client()
      local futs = {}
      for i = 1, 3 do
        futs[i] = cl:submit(function(q, j)
          if j == 3 then
            local f = assert(io.open(q, "w"))
            f:close()
          end
          return j
        end, p, i)
      end
      local t0 = os.time()
      while os.time() - t0 < 30 do
        local f = io.open(p)
        if f then
          f:close()
          return true
        end
      end
      return false
    end
    assert.is_true(c:submit(parent, path):result(60))
    os.remove(path)
  end)

  it("raises a task's error in the task that waits for it", function()
    local function parent()
      local cl = require("dlua").get_client()
      return cl:submit(function() error("child broke") end):result(30)
    end
    local msg = err_of(function() return c:submit(parent):result(30) end)
    assert.matches("child broke", msg)
  end)

  it("refuses a task that waits for its own result (a cycle)", function()
    local function self_wait()
      local dl = require("dlua")
      local cl = dl.get_client()
      return cl:submit(function() return 1 end,
                       dl.opts{key = "coord-self-wait"}):result(30)
    end
    local msg = err_of(function()
      return c:submit(self_wait, dlua.opts{key = "coord-self-wait"})
        :result(30)
    end)
    assert.matches("deadlock", msg)
    assert.matches("coord%-self%-wait", msg)
    -- The workers are still usable.
    assert.equal(3, c:submit(function() return 3 end):result(30))
  end)

  it("refuses a wait on a descendant that waits on its parent", function()
    local function child()
      local dl = require("dlua")
      return dl.get_client():submit(function() return 0 end,
                                    dl.opts{key = "coord-parent"})
        :result(30)
    end
    local function parent()
      local dl = require("dlua")
      return dl.get_client():submit(child, dl.opts{key = "coord-child"})
        :result(30)
    end
    local msg = err_of(function()
      return c:submit(parent, dlua.opts{key = "coord-parent"}):result(30)
    end)
    assert.matches("deadlock", msg)
  end)

  it("gives the slot back while a task sleeps or waits", function()
    -- One slot per worker: 4 sleepers on 2 workers end in about one sleep
    -- only if each gives its slot back.  Checked by state, not time: all
    -- four are sleeping at once (each writes a file as it starts).
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local function sleeper(i, d)
      local f = assert(io.open(d .. "/" .. i, "w"))
      f:close()
      local dl = require("dlua")
      -- Wait until all four have started: impossible unless the slots of
      -- those sleeping are given back.
      local deadline = os.time() + 30
      while true do
        local n = 0
        for j = 1, 4 do
          local g = io.open(d .. "/" .. j)
          if g then n = n + 1; g:close() end
        end
        if n == 4 then return i end
        if os.time() > deadline then error("not all sleepers ran at once") end
        dl.sleep(0.01)
      end
    end
    local futs = c:map(sleeper, {1, 2, 3, 4}, {dir, dir, dir, dir})
    assert.same({1, 2, 3, 4}, c:gather(futs, 60))
    os.execute("rm -rf " .. dir)
  end)

  it("client:run runs once on every worker, or on the ones named",
     function()
    local function pid(x)
      local f = assert(io.open("/proc/self/stat"))
      local p = f:read("n")
      f:close()
      return {pid = p, x = x}
    end
    local r = c:run(pid, 5)
    local ids, pids = {}, {}
    for id, v in pairs(r) do
      ids[#ids + 1] = id
      pids[v.pid] = true
      assert.equal(5, v.x)
    end
    assert.equal(2, #ids)
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.equal(2, n) -- two processes
    table.sort(ids)
    local one = c:run(pid, 6, dlua.opts{workers = {ids[2]}})
    assert.same({ids[2]}, (function()
      local k = {}
      for id in pairs(one) do k[#k + 1] = id end
      return k
    end)())
    assert.equal(r[ids[2]].pid, one[ids[2]].pid)
    assert.matches("run: no worker 99",
                   err_of(c.run, c, pid, dlua.opts{workers = {99}}))
    assert.matches("boom", err_of(c.run, c, function() error("boom") end))
  end)

  it("gives the tasks of each worker keys of their own", function()
    -- Workers start together: keys made in their tasks must not collide
    -- even if their random generators were seeded alike.
    local keys = c:run(function()
      local cl = require("dlua").get_client()
      local f = cl:submit(function() return 1 end)
      f:result(30)
      return f.key
    end)
    local seen = {}
    for _, k in pairs(keys) do
      assert.is_nil(seen[k], "two workers made the key " .. k)
      seen[k] = true
    end
  end)

  it("stops a waiting task that is cancelled", function()
    local function parent()
      local dl = require("dlua")
      return dl.get_client():submit(function()
        require("dlua").sleep(30)
      end):result(60)
    end
    local f = c:submit(parent)
    -- Wait until the parent runs and waits (its child exists).
    wait_for("the parent and its child running", function()
      return (c.handle:counts().processing or 0) >= 2
    end, 30)
    f:cancel()
    local ok = pcall(f.result, f, 30)
    assert.is_false(ok)
    assert.equal("cancelled", f:status())
    assert.equal(7, c:submit(function() return 7 end):result(30))
  end)

  it("ends a waiting task whose timeout passes, as it ends a running one",
     function()
    -- The child sleeps 30 s: before the timeout counted while the parent
    -- waited, the parent ran on until the child ended.
    local function parent()
      local dl = require("dlua")
      return dl.get_client():submit(function()
        require("dlua").sleep(30)
      end):result(60)
    end
    local f = c:submit(parent, dlua.opts{timeout = 0.5})
    local e = f:exception(20)
    assert.is_not_nil(e)
    assert.matches("timed out", tostring(e))
    assert.equal("error", f:status())
    assert.equal(8, c:submit(function() return 8 end):result(30))
    -- A wait that ends in time: the task goes on and returns.
    local g = c:submit(function()
      return require("dlua").get_client():submit(function() return 4 end)
        :result(30) + 1
    end, dlua.opts{timeout = 30})
    assert.equal(5, g:result(30))
    -- A task that sleeps (parked, its slot given back) past its timeout.
    local s = c:submit(function() require("dlua").sleep(30) end,
                       dlua.opts{timeout = 0.3})
    assert.matches("timed out", tostring(s:exception(20)))
  end)
end)

describe("coordination primitives", function()
  local env, c = H.local_cluster{n_workers = 2, heartbeat_timeout = 1}, nil
  setup(function() env.start(); c = env.c end)
  teardown(env.stop)

  it("Variable: set, get, delete, timeouts, shared by name", function()
    local v = dlua.Variable("coord-v")
    local _, e = err_of(v.get, v, {timeout = 0})
    assert.equal("timeout", e.kind)
    v:set({n = 1})
    assert.same({n = 1}, dlua.Variable("coord-v"):get())
    assert.equal(1, c:submit(function(x) return x:get().n end, v):result(30))
    v:delete()
    assert.matches("not set after", err_of(v.get, v, {timeout = 0.05}))
    assert.matches("expects a name", err_of(dlua.Variable, 3))
    assert.matches("unknown option 'timout'",
                   err_of(v.get, v, {timout = 1}))
  end)

  it("Queue: two tasks on two workers pass items back and forth in order",
     function()
    -- Each wait parks its task; its worker's executor then sleeps on the
    -- link itself (dl_worker_exec.c, sleep_on_link): every item must wake
    -- it, in order, and a wait with a timeout must still end.
    local ids = {}
    for _, w in ipairs(c.handle:workers()) do ids[#ids + 1] = w.id end
    table.sort(ids)
    local ping, pong = dlua.Queue("coord-ping"), dlua.Queue("coord-pong")
    local function echo(a, b, m)
      for _ = 1, m do b:put(a:get() * 2) end
      local ok, e = pcall(a.get, a, {timeout = 0.05})
      return not ok and e.kind
    end
    local function pinger(a, b, m)
      local got = {}
      for i = 1, m do
        a:put(i)
        got[i] = b:get()
      end
      return got
    end
    local e = c:submit(echo, ping, pong, 300, dlua.opts{workers = {ids[2]}})
    local p = c:submit(pinger, ping, pong, 300,
                       dlua.opts{workers = {ids[1]}})
    local got = p:result(60)
    for i = 1, 300 do assert.equal(2 * i, got[i]) end
    assert.equal("timeout", e:result(60))
    assert.equal(0, ping:qsize())
    assert.equal(0, pong:qsize())
  end)

  it("Queue: put, get, batch, qsize, maxsize, bad items", function()
    local q = dlua.Queue("coord-q")
    local _, e = err_of(q.get, q, {timeout = 0})
    assert.equal("timeout", e.kind)
    for i = 1, 5 do q:put(i) end
    assert.equal(5, q:qsize())
    assert.equal(1, q:get())
    assert.same({2, 3}, q:get{batch = 2})
    assert.same({4, 5}, q:get{batch = true})
    assert.same({}, q:get{batch = true})
    -- An item that cannot be sent: an error at put, queue unchanged.
    q:put("kept")
    local msg = err_of(q.put, q, coroutine.create(print))
    assert.matches("Queue:put: the value cannot be sent", msg)
    assert.equal(1, q:qsize())
    assert.equal("kept", q:get())
    local small = dlua.Queue("coord-small", {maxsize = 1})
    small:put(1)
    assert.matches("still full", err_of(small.put, small, 2, {timeout = 0}))
    assert.equal(1, small:get())
    assert.matches("batch must be", err_of(q.get, q, {batch = 0}))
  end)

  it("Queue: its first put fixes maxsize for good; puts keep order",
     function()
    -- Unbounded from its first put, even once empty again: a later
    -- object that asks for a bound does not get one (puts that need no
    -- answer rely on this).
    local q = dlua.Queue("coord-fixed")
    q:put(1)
    assert.equal(1, q:get())
    local later = dlua.Queue("coord-fixed", {maxsize = 1})
    later:put(1)
    later:put(2, {timeout = 0})
    assert.equal(2, q:qsize())
    assert.same({1, 2}, q:get{batch = true})
    -- Bounded from its first put: stays bounded once empty.
    local b = dlua.Queue("coord-bound", {maxsize = 1})
    b:put(1)
    assert.equal(1, b:get())
    b:put(2)
    assert.matches("still full", err_of(b.put, b, 3, {timeout = 0}))
    assert.equal(2, b:get())
    -- Many puts in a row, from the client and from a task, arrive in
    -- order and are all counted by the next request.
    for i = 1, 200 do q:put(i) end
    assert.equal(200, q:qsize())
    local got = q:get{batch = 200}
    for i = 1, 200 do assert.equal(i, got[i]) end
    assert.equal(200, c:submit(function(queue)
      for i = 1, 200 do queue:put(i) end
      return queue:qsize()
    end, q):result(30))
    got = q:get{batch = 200}
    for i = 1, 200 do assert.equal(i, got[i]) end
  end)


  it("Variable and Queue hold futures: results live while held", function()
    wait_for("no stored results", function() return stored(c) == 0 end)
    local v = dlua.Variable("coord-fv")
    local f = c:submit(function(x) return x * 2 end, 21)
    v:set(f)
    f:release() -- the variable is the only holder now
    local g = v:get()
    assert.is_true(dlua.is_future(g))
    assert.equal(42, g:result(10))
    -- A task gets a usable future from the variable.
    assert.equal(43, c:submit(function(var)
      local ff <close> = var:get() -- released at the end of the task
      return ff:result() + 1
    end, v):result(30))
    g:release()
    v:delete() -- nobody holds it now: freed
    wait_for("the result freed", function() return stored(c) == 0 end)
    -- A queue passes the future on; a task puts futures of its own.
    local q = dlua.Queue("coord-fq")
    q:put(c:submit(function() return "hi" end))
    assert.equal("hi!", c:submit(function(queue)
      local ff <close> = queue:get()
      return ff:result() .. "!"
    end, q):result(30))
    assert.is_true(c:submit(function(queue)
      local cl = require("dlua").get_client()
      local a <close> = cl:submit(function() return 7 end)
      local b <close> = cl:submit(function() return 9 end)
      queue:put(a)
      queue:put(8)
      queue:put(b)
      return true
    end, q):result(30))
    local l = q:get{batch = 3}
    assert.equal(7, l[1]:result(10))
    assert.equal(8, l[2])
    assert.equal(9, l[3]:result(10))
    -- Bad input: a future inside a table, a released future.
    local h = c:submit(function() return 1 end)
    assert.matches("a future inside a table cannot be shared",
                   err_of(q.put, q, {h}))
    h:release()
    assert.matches("the future was released", err_of(v.set, v, h))
    l = nil
    collectgarbage()
    collectgarbage()
    wait_for("every result freed", function() return stored(c) == 0 end)
  end)

  it("a cancelled wait leaves no request behind on the scheduler",
     function()
    -- A task waits on a Queue and on a Lock; both are cancelled.  A later
    -- put must reach the client, and the lock must be free: a dead
    -- waiter must not swallow the item or be granted the lease.
    local q = dlua.Queue("coord-wq")
    local lock = dlua.Lock("coord-wl")
    assert.is_true(lock:acquire{timeout = 5})
    local ev1, ev2 = dlua.Event("coord-we1"), dlua.Event("coord-we2")
    local on1 = dlua.opts{workers = {c.handle:workers()[1].id}}
    -- Each task tells it is about to wait (its wait goes out right after
    -- the event's answer, before a cancel can come back to it).
    local waits = c:submit(function(queue, ev)
      ev:set()
      return queue:get()
    end, q, ev1, on1)
    local locks = c:submit(function(l, ev)
      ev:set()
      l:acquire()
      return "got it"
    end, lock, ev2, on1)
    assert.is_true(ev1:wait{timeout = 30})
    assert.is_true(ev2:wait{timeout = 30})
    waits:cancel()
    locks:cancel()
    assert.is_false(pcall(waits.result, waits, 30))
    assert.is_false(pcall(locks.result, locks, 30))
    -- The scheduler knows of the cancels at once, the worker a little
    -- later: a task run after them on that worker ends after they did.
    assert.equal(1, c:submit(function() return 1 end, on1):result(30))
    lock:release()
    q:put("for the client")
    assert.equal("for the client", q:get{timeout = 10})
    assert.is_true(lock:acquire{timeout = 10})
    lock:release()
  end)

  it("Queue: a waiting consumer gives its slot to its producer", function()
    -- Two workers, one slot each: three consumers wait before the producer
    -- is even submitted; the producer can run only on a slot given back.
    local q = dlua.Queue("coord-pc")
    local function consume(queue) return queue:get{timeout = 60} * 2 end
    local futs = c:map(consume, {q, q, q})
    local producer = c:submit(function(queue)
      for i = 1, 3 do queue:put(i) end
      return true
    end, q)
    assert.is_true(producer:result(60))
    local got = c:gather(futs, 60)
    table.sort(got)
    assert.same({2, 4, 6}, got)
  end)

  it("Event: set, clear, wait with timeout, across tasks", function()
    local ev = dlua.Event("coord-ev")
    assert.is_false(ev:is_set())
    assert.is_false(ev:wait{timeout = 0.05})
    local f = c:submit(function(e) return e:wait{timeout = 60} end, ev)
    ev:set()
    assert.is_true(f:result(60))
    assert.is_true(ev:is_set())
    ev:clear()
    assert.is_false(ev:is_set())
  end)

  it("Semaphore: 2 leases under 4 contending tasks, never overbooked",
     function()
    local sem = dlua.Semaphore("coord-sem", {max_leases = 2})
    local inside = dlua.Queue("coord-inside")
    local function worker_fn(s, log, n)
      for _ = 1, n do
        assert(s:acquire{timeout = 60})
        log:put(1)
        log:put(-1)
        s:release()
      end
      return true
    end
    local futs = c:map(worker_fn, {sem, sem, sem, sem},
                       {inside, inside, inside, inside}, {20, 20, 20, 20})
    c:gather(futs, 120)
    assert.equal(160, inside:qsize())
    -- The scheduler's own count: a third lease at once is refused.
    assert.is_true(sem:acquire{timeout = 5})
    assert.is_true(sem:acquire{timeout = 5})
    assert.is_false(sem:acquire{timeout = 0})
    sem:release()
    sem:release()
    assert.matches("released more times than acquired",
                   err_of(sem.release, sem))
  end)

  it("Lock: <close> releases; one holder at a time", function()
    local l = dlua.Lock("coord-lock")
    do
      local held <close> = l
      assert.is_true(held:acquire())
      assert.is_true(l:locked())
      assert.is_false(dlua.Lock("coord-lock"):acquire{timeout = 0})
    end
    assert.is_false(l:locked())
    local other = dlua.Lock("coord-lock")
    assert.is_true(other:acquire{timeout = 5})
    other:release()
    assert.matches("Lock:release: 'coord%-lock' released more times",
                   err_of(other.release, other))
  end)

  it("Lock: a SIGKILLed holder's lease is released; a live one's is not",
     function()
    local done = dlua.Event("coord-kill-done")
    local pidv = dlua.Variable("coord-kill-pid")
    local function holder(lock, pv, ev)
      if ev:is_set() then return "retried" end
      assert(lock:acquire{timeout = 30})
      local f = assert(io.open("/proc/self/stat"))
      pv:set(f:read("n"))
      f:close()
      -- A long busy task: its lease must not be lost while it runs
      -- (more than the 1 s heartbeat timeout).
      local t0 = os.clock()
      while os.clock() - t0 < 2 do end
      require("dlua").sleep(60)
    end
    local lock = dlua.Lock("coord-kill")
    local f = c:submit(holder, lock, pidv, done)
    local pid = pidv:get{timeout = 60}
    -- Alive and busy: the lock stays taken.
    assert.is_false(dlua.Lock("coord-kill"):acquire{timeout = 1.5})
    done:set()
    os.execute("kill -9 " .. math.tointeger(pid))
    local mine = dlua.Lock("coord-kill")
    assert.is_true(mine:acquire{timeout = 10})
    mine:release()
    f:cancel()
  end)
end)

describe("get_client outside a task", function()
  it("with no client is a clear error", function()
    local exe = os.getenv("DLUA") or "build/dlua"
    local p = io.popen(exe .. " -e 'require(\"dlua\").get_client()' 2>&1")
    local out = p:read("a")
    p:close()
    assert.matches("get_client: no client", out)
    assert.matches("dlua%.Client%(%)", out)
  end)
end)


describe("futures handed out by Variables and Queues", function()
  local env, c = H.local_cluster{n_workers = 1}, nil
  setup(function() env.start(); c = env.c end)
  teardown(env.stop)

  it("a future of a key its client holds already: one release per handle",
     function()
    -- The scheduler counts every future it hands out (a submit, a get
    -- from a Variable or Queue); each one released, collected or closed
    -- gives one back.  Two futures of one key in one client are two.
    local v, q = dlua.Variable("coord-rv", c), dlua.Queue("coord-rq")
    -- Released one by one: the result lives while either is out.
    local f = c:submit(function() return 1 end)
    v:set(f)
    local g = v:get()
    assert.equal(f.key, g.key)
    v:delete()
    f:release()
    assert.equal(1, g:result(10))
    assert.equal(1, stored(c))
    g:release()
    wait_for("both released: freed", function() return stored(c) == 0 end)
    -- Collected, both.
    f = c:submit(function() return 2 end)
    q:put(f)
    g = q:get()
    assert.equal(2, g:result(10))
    f, g = nil, nil
    wait_for("both collected: freed", function() return stored(c) == 0 end)
    -- In a task: the same, on the worker's client.
    assert.equal(4, c:submit(function(var)
      local cl = require("dlua").get_client()
      local a = cl:submit(function() return 4 end)
      var:set(a)
      local b = var:get()
      var:delete()
      a:release()
      local r = b:result()
      b:release()
      return r
    end, v):result(30))
    wait_for("a task's two released: freed",
             function() return stored(c) == 0 end)
    -- Held by a client that closes: its close gives both back.
    local c2 = dlua.Client(env.cluster)
    local ok, err = pcall(function()
      local q2 = dlua.Queue("coord-rq2", {client = c2})
      f = c2:submit(function() return 3 end)
      q2:put(f)
      g = q2:get{timeout = 10}
      assert.equal(f.key, g.key)
      assert.equal(3, g:result(10))
    end)
    c2:close()
    assert(ok, err)
    f, g = nil, nil
    wait_for("its client closed: freed", function() return stored(c) == 0 end)
  end)
end)

return BUSTED_ENV

-- The Lua API keeps Dask's promises: options that cannot be mistaken for
-- arguments, errors reported at the caller's line with "did you mean",
-- Dask's semantics for table errors, cancellation, scatter and compute,
-- as_completed, a closed client, validated sizes.  Real worker processes;
-- every wait is bounded.
local BUSTED_ENV = _ENV
local describe, it, setup, teardown, assert =
  describe, it, setup, teardown, assert
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"

local function line_here() return debug.getinfo(2, "l").currentline end

-- pcall(f, ...) that must fail; returns the message as a string.
local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "no error raised")
  return tostring(e), e
end

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

local function inc(x) return x + 1 end

-- ===================================================================
describe("options", function()
  local cluster, c

  setup(function()
    cluster = dlua.LocalCluster{n_workers = 2, dashboard_address = false}
    c = dlua.Client(cluster)
  end)

  teardown(function()
    if c then c:close() end
    if cluster then cluster:close() end
  end)

  it("map refuses options given as a plain table, naming dlua.opts", function()
    local line = line_here() + 1
    local msg = err_of(function() c:map(inc, {1, 2, 3}, {retries = 2}) end)
    assert.matches("api_spec%.lua:" .. line .. ": map: argument #3 "
                   .. "{retries = 2} is not a sequence: it looks like "
                   .. "options; pass them as dlua.opts{retries = 2}", msg)
    -- the same call with dlua.opts runs its three tasks
    local futs = c:map(inc, {1, 2, 3}, dlua.opts{retries = 2})
    assert.same({2, 3, 4}, c:gather(futs, 20))
  end)

  it("map refuses non-sequences and holes", function()
    local msg = err_of(function() c:map(inc, {1, 2, x = 3}) end)
    assert.matches("map: argument #2 is not a sequence %(it has the key "
                   .. "'x'%); options go in dlua.opts", msg)
    msg = err_of(function() c:map(inc, {x = 1}) end)
    assert.matches("it has the key 'x'", msg)
    msg = err_of(function() c:map(inc, {1, nil, 3}) end)
    assert.matches("argument #2 is not a sequence: it has a hole %(nil%) "
                   .. "at index 2", msg)
    msg = err_of(function() c:map(inc, "abc") end)
    assert.matches("map: argument #2 must be a sequence %(a table%), got "
                   .. "string", msg)
    local f = c:submit(inc, 1)
    msg = err_of(function() c:map(inc, f) end)
    assert.matches("got dlua.Future", msg)
    assert.same({}, c:map(inc, {}))
  end)

  it("map refuses sequences of different lengths instead of truncating",
     function()
    local line = line_here() + 1
    local msg = err_of(function() c:map(function(a, b) return a + b end,
                                        {1, 2, 3}, {1, 2}) end)
    assert.matches("api_spec%.lua:" .. line .. ": map: the sequences have "
                   .. "different lengths %(3 and 2%)", msg)
  end)

  it("submit refuses a trailing table of option names; dlua.opts{} passes it",
     function()
    local line = line_here() + 1
    local msg = err_of(function() c:submit(inc, 1, {retries = 2}) end)
    assert.matches("api_spec%.lua:" .. line .. ": submit: the last argument "
                   .. "{retries = 2} looks like options; pass options as "
                   .. "dlua.opts{retries = 2}", msg)
    -- a table with another key, or a value of another type, is data
    assert.equal(7, c:submit(function(t) return t.retries + t.n end,
                             {retries = 2, n = 5}):result(10))
    assert.equal("x", c:submit(function(t) return t.retries end,
                               {retries = "x"}):result(10))
    assert.equal(2, c:submit(function(t) return t.retries end,
                             {retries = 2}, dlua.opts{}):result(10))
  end)

  it("dlua.opts checks names and types, with 'did you mean'", function()
    local line = line_here() + 1
    local msg = err_of(function() dlua.opts{retry = 2} end)
    assert.matches("api_spec%.lua:" .. line .. ": dlua.opts: unknown option "
                   .. "'retry' %(did you mean 'retries'%?%)", msg)
    msg = err_of(function() dlua.opts{priorty = 1} end)
    assert.matches("did you mean 'priority'", msg)
    msg = err_of(function() dlua.opts{retries = "2"} end)
    assert.matches("option 'retries' must be a number, got string", msg)
    msg = err_of(function() dlua.opts{retries = 1.5} end)
    assert.matches("'retries' must be a non%-negative integer, got 1.5", msg)
    msg = err_of(function() dlua.opts{timeout = -1} end)
    assert.matches("'timeout' must be a non%-negative number", msg)
    msg = err_of(function() dlua.opts{zzz = 1} end)
    assert.matches("unknown option 'zzz'$", msg)
  end)
end)

-- ===================================================================
describe("errors at the caller's line", function()
  local cluster, c

  setup(function()
    cluster = dlua.LocalCluster{n_workers = 2, dashboard_address = false}
    c = dlua.Client(cluster)
  end)

  teardown(function()
    if c then c:close() end
    if cluster then cluster:close() end
  end)

  it("misspelled cluster options get 'did you mean'", function()
    local line = line_here() + 1
    local msg = err_of(function() dlua.LocalCluster{n_worker = 2} end)
    assert.matches("api_spec%.lua:" .. line .. ": LocalCluster: unknown "
                   .. "option 'n_worker' %(did you mean 'n_workers'%?%)", msg)
    line = line_here() + 1
    msg = err_of(function() dlua.Client{memory_limt = "1GB"} end)
    assert.matches("api_spec%.lua:" .. line .. ": LocalCluster: unknown "
                   .. "option 'memory_limt' %(did you mean 'memory_limit'%?%)",
                   msg)
  end)

  it("other option tables get 'did you mean' too", function()
    local f = c:submit(inc, 1)
    assert.matches("wait: unknown option 'timout' %(did you mean 'timeout'%?%)",
                   err_of(function() dlua.wait({f}, {timout = 1}) end))
    assert.matches("as_completed: unknown option 'timeuot' %(did you mean "
                   .. "'timeout'%?%)",
                   err_of(function() dlua.as_completed({f}, {timeuot = 1}) end))
    assert.matches("dlua.progress: unknown option 'widht' %(did you mean "
                   .. "'width'%?%)",
                   err_of(function() dlua.progress({f}, {widht = 40}) end))
    local d = dlua.delayed(inc)(1)
    assert.matches("dlua.compute: unknown option 'optimise' %(did you mean "
                   .. "'optimize'%?%)",
                   err_of(function() dlua.compute(d, {optimise = false,
                                                      client = c}) end))
  end)

  it("types are named as Lua names them", function()
    local f = c:submit(inc, 1)
    local line = line_here() + 1
    local msg = err_of(function() local v = f:result("5"); return v end)
    assert.matches("api_spec%.lua:" .. line .. ": result: timeout must be a "
                   .. "non%-negative number of seconds, got string", msg)
    msg = err_of(function() dlua.LocalCluster{n_workers = "2"} end)
    assert.matches("n_workers must be a positive integer, got string", msg)
    -- a method called with '.' instead of ':'
    line = line_here() + 1
    msg = err_of(function() local v = f.result(); return v end)
    assert.matches("api_spec%.lua:" .. line .. ": result: expects a future "
                   .. "%(call it as future:result%(%)%), got nil", msg)
    line = line_here() + 1
    msg = err_of(function() local v = f.status(5); return v end)
    assert.matches("api_spec%.lua:" .. line .. ": expects a future", msg)
    assert.matches("scale: n must be a non%-negative integer, got string",
                   err_of(cluster.scale, cluster, "2"))
  end)

  it("client:cancel(42) is a clear error", function()
    local line = line_here() + 1
    local msg = err_of(function() c:cancel(42) end)
    assert.matches("api_spec%.lua:" .. line .. ": cancel: expects a future "
                   .. "or an array of futures, got number", msg)
    msg = err_of(function() c:cancel({c:submit(inc, 1), 42}) end)
    assert.matches("cancel: element 2 is not a future", msg)
  end)

  it("a task error that ends a script shows the script's line, then the "
     .. "remote traceback", function()
    local script = os.tmpname() .. ".lua"
    finally(function() os.remove(script) end)
    H.spit(script, table.concat({
      'local dlua = require "dlua"',
      'local c = dlua.Client{n_workers = 1, dashboard_address = false}',
      'local f = c:submit(function() error("boom") end)',
      'local function get() local v = f:result(20); return v end',
      'print(get())',
    }, "\n"))
    local code, out = H.sh(H.q(H.DLUA) .. " " .. H.q(script))
    assert.equal(1, code)
    local base = script:match("[^/]+$"):gsub("%p", "%%%0")
    -- the local line (4: the call of result) first, then the task's
    assert.matches(base .. ":4: task 'lambda@" .. base .. ":3%-%x+' failed: "
                   .. "[^\n]*" .. base .. ":3: boom", out)
    assert.matches("remote stack traceback:\n[^\n]*\n%s*[^\n]*" .. base
                   .. ":3:", out)
  end)
end)

-- ===================================================================
describe("Dask's semantics", function()
  local cluster, c

  setup(function()
    cluster = dlua.LocalCluster{n_workers = 2, dashboard_address = false}
    c = dlua.Client(cluster)
  end)

  teardown(function()
    if c then c:close() end
    if cluster then cluster:close() end
  end)

  it("a table raised by a task reaches the client as that table", function()
    local f = c:submit(function()
      error({msg = "disk full", code = 28, cause = {path = "/x", n = {1, 2}}})
    end)
    local ok, e = pcall(f.result, f, 20)
    assert.is_false(ok)
    assert.equal(dlua.TaskError, getmetatable(e))
    assert.same({msg = "disk full", code = 28,
                 cause = {path = "/x", n = {1, 2}}}, e.value)
    -- its fields read as on the table; the message is its msg
    assert.equal(28, e.code)
    assert.same({path = "/x", n = {1, 2}}, e.cause)
    assert.equal("disk full", e.message)
    assert.matches("disk full", tostring(e))
    assert.same(e.value, f:exception(5).value)
    -- a table that is not data (a function inside) still reports
    local g = c:submit(function() error({message = "m", fn = print}) end)
    local eg = g:exception(20)
    assert.equal("m", eg.message)
    assert.is_nil(eg.value)
  end)

  it("cancelling a future cancels its dependents", function()
    -- The task runs until it is cancelled, or at most until this test
    -- ends (the stop file), so a missed interrupt cannot hold a worker
    -- into the next test.
    local stop = os.tmpname()
    os.remove(stop)
    finally(function()
      io.open(stop, "w"):close()
      H.poll(function()
        for _, w in ipairs(cluster:workers()) do
          if w.executing ~= 0 then return false end
        end
        return true
      end, 10)
      os.remove(stop)
    end)
    local ev = c:submit(function(path)
      local t = require("dlua").time()
      while require("dlua").time() - t < 30 do
        local fh = io.open(path)
        if fh then fh:close(); return end
      end
    end, stop)
    local dep = c:submit(function(x) return x end, ev)
    local dep2 = c:submit(function(x) return x end, dep)
    ev:cancel()
    assert.equal("cancelled", ev:status())
    assert.is_true(H.poll(function()
      return dep:status() ~= "pending" and dep2:status() ~= "pending"
    end, 10))
    assert.equal("cancelled", dep:status())
    assert.equal("cancelled", dep2:status())
    -- a task submitted later on the cancelled one is cancelled too
    local late = c:submit(function(x) return x end, ev)
    assert.is_true(H.poll(function() return late:status() ~= "pending" end, 10))
    assert.equal("cancelled", late:status())
  end)

  it("cancelling a finished future makes it cancelled", function()
    local f = c:submit(inc, 1)
    assert.equal(2, f:result(20))
    f:cancel()
    assert.equal("cancelled", f:status())
    assert.is_true(f:done())
    local msg = err_of(function() return f:result(5) end)
    assert.matches("cancelled", msg)
  end)

  it("scatter returns a finished future", function()
    local f = c:scatter({1, 2, 3})
    assert.equal("finished", f:status())
    assert.same({1, 2, 3}, f:result(10))
  end)

  it("compute looks inside tables and returns the same structure", function()
    local d1 = dlua.delayed(inc)(1)
    local d2 = dlua.delayed(inc)(10)
    local r = dlua.compute({a = d1, b = {1, 2, d2}, c = "x"}, {client = c})
    assert.same({a = 2, b = {1, 2, 11}, c = "x"}, r)
    -- several arguments, Delayeds shared between them run once
    local x, y = dlua.compute({d1, d1}, d2, {client = c})
    assert.same({2, 2}, x)
    assert.equal(11, y)
    -- synchronously too
    assert.same({k = {2}}, dlua.compute({k = {d1}}, {scheduler = "sync"}))
  end)

  it("identical operator expressions get the same key", function()
    local e = dlua.delayed(inc)(1)
    assert.equal((e + e).key, (e + e).key)
    assert.equal((e * 2).key, (e * 2).key)
    assert.equal((-e).key, (-e).key)
    assert.equal((e .. "s").key, (e .. "s").key)
    assert.are_not.equal((e + 1).key, (e + 2).key)
    assert.are_not.equal((e + 1).key, (e - 1).key)
    assert.are_not.equal((e + 1).key, (e + 1.0).key)
    assert.equal((e + {1, 2}).key, (e + {1, 2}).key)
    assert.equal(8, dlua.compute((e + e) * 2, {client = c}))
  end)
end)

-- ===================================================================
describe("client extras", function()
  local cluster, c

  setup(function()
    cluster = dlua.LocalCluster{n_workers = 1}
    c = dlua.Client(cluster)
  end)

  teardown(function()
    if c then c:close() end
    if cluster then cluster:close() end
  end)

  it("anonymous functions are labelled lambda@file:line", function()
    local line = line_here() + 1
    local f = c:submit(function(x) return x end, 1)
    assert.matches("^lambda@api_spec%.lua:" .. line .. "%-%x+$", f.key)
    line = line_here() + 1
    local futs = c:map(function(x) return x end, {1, 2})
    assert.matches("^lambda@api_spec%.lua:" .. line .. "%-%x+$", futs[1].key)
    assert.same({1, 2}, c:gather(futs, 20))
  end)

  it("dashboard_link", function()
    assert.is_string(c.dashboard_link)
    assert.equal(cluster.dashboard_link, c.dashboard_link)
    assert.matches("^http://[%d.]+:%d+/status$", c.dashboard_link)
  end)

  it("wait_for_workers waits for scale-up, with a timeout", function()
    c:wait_for_workers(1, 10)
    cluster:scale(2)
    c:wait_for_workers(2, 20)
    assert.equal(2, #cluster:workers())
    local ok, e = pcall(c.wait_for_workers, c, 5, 0.2)
    assert.is_false(ok)
    assert.equal(dlua.TimeoutError, getmetatable(e))
    assert.matches("wait_for_workers: 2 of 5 workers after 0.2s", tostring(e))
    assert.matches("n must be a non%-negative integer, got string",
                   err_of(c.wait_for_workers, c, "2"))
    cluster:scale(1)
  end)

  it("client:compute returns futures, in the same structure", function()
    local d = dlua.delayed(inc)(1)
    local f = c:compute(d)
    assert.is_true(dlua.is_future(f))
    assert.equal(2, f:result(20))
    local t = c:compute({a = d, b = {d + 1, 5}})
    assert.is_true(dlua.is_future(t.a))
    assert.is_true(dlua.is_future(t.b[1]))
    assert.equal(5, t.b[2])
    assert.same({a = 2, b = {3, 5}}, c:gather(t, 20))
    assert.equal(7, c:compute(dlua.delayed(7)):result(20))
    assert.matches("compute: expects a Delayed or a table holding Delayeds, "
                   .. "got number", err_of(c.compute, c, 5))
  end)

  it("as_completed takes new futures and gives batches", function()
    local ac = dlua.as_completed({c:submit(inc, 1)})
    ac:add(c:submit(inc, 2))
    ac:update(c:map(inc, {3, 4}))
    assert.equal(4, ac:count())
    local got = {}
    for f, v, err in ac do
      assert.is_nil(err)
      got[#got + 1] = v
      if v == 2 then ac:add(c:submit(inc, 100)) end -- added while iterating
    end
    table.sort(got)
    assert.same({2, 3, 4, 5, 101}, got)
    assert.is_true(ac:is_empty())
    ac = dlua.as_completed(c:map(inc, range(20)))
    local n, batches = 0, 0
    for batch in ac:batches() do
      batches = batches + 1
      for _, f in ipairs(batch) do
        assert.is_true(f:done())
        n = n + 1
      end
    end
    assert.equal(20, n)
    assert.is_true(batches >= 1 and batches <= 20)
    -- failures and cancellations are yielded too
    local bad = c:submit(function() error("no") end)
    ac = dlua.as_completed({bad})
    local f, v, err = ac()
    assert.equal(bad, f)
    assert.is_nil(v)
    assert.equal(dlua.TaskError, getmetatable(err))
    assert.is_nil(ac())
  end)

  it("as_completed yields a cancelled finished future", function()
    local f = c:submit(inc, 1)
    f:result(20)
    local ac = dlua.as_completed()
    local g = c:submit(function()
      local t = require("dlua").time()
      while require("dlua").time() - t < 30 do end
    end)
    ac:add(g)
    g:cancel()
    local got, _, err = ac()
    assert.equal(g, got)
    assert.equal("cancelled", err.kind)
  end)

  it("dlua.progress accepts an as_completed", function()
    local ac = dlua.as_completed(c:map(inc, range(10)))
    local out = os.tmpname()
    finally(function() os.remove(out) end)
    local fh = assert(io.open(out, "w"))
    assert.equal(ac, dlua.progress(ac, {file = fh, tty = false}))
    fh:close()
    assert.matches("progress: 10/10 done", H.slurp(out))
    local n = 0
    for _ in ac do n = n + 1 end
    assert.equal(10, n)
  end)
end)

-- ===================================================================
describe("a closed client", function()
  it("attached to a cluster refuses work with 'client is closed'", function()
    local cluster = dlua.LocalCluster{n_workers = 1,
                                      dashboard_address = false}
    finally(function() cluster:close() end)
    local c = dlua.Client(cluster)
    local f = c:submit(inc, 1)
    assert.equal(2, f:result(20))
    c:close()
    local line = line_here() + 1
    local msg = err_of(function() c:submit(inc, 1) end)
    assert.matches("api_spec%.lua:" .. line .. ": submit: client is closed",
                   msg)
    assert.matches("map: client is closed",
                   err_of(function() c:map(inc, {1}) end))
    assert.matches("gather: client is closed",
                   err_of(function() c:gather({f}) end))
    assert.matches("scatter: client is closed",
                   err_of(function() c:scatter(1) end))
    assert.matches("result: client is closed",
                   err_of(function() return f:result() end))
    c:close() -- twice is fine
    -- the cluster still serves another client
    local c2 = dlua.Client(cluster)
    assert.equal(3, c2:submit(inc, 2):result(20))
    c2:close()
  end)
end)

-- ===================================================================
describe("sizes", function()
  it("memory_limit is checked, naming the option and the minimum", function()
    local line = line_here() + 1
    local msg = err_of(function() dlua.LocalCluster{memory_limit = 1} end)
    assert.matches("api_spec%.lua:" .. line .. ": LocalCluster: memory_limit "
                   .. "must be at least 16%.00 MiB per worker", msg)
    assert.equal(16 * 1024 * 1024, dlua.MIN_MEMORY_LIMIT)
    msg = err_of(function() dlua.LocalCluster{memory_limit = 0.5} end)
    assert.matches("LocalCluster: memory_limit: memory size must be a "
                   .. "positive number of bytes, got 0.5", msg)
    msg = err_of(function() dlua.LocalCluster{memory_limit = 1e300} end)
    assert.matches("LocalCluster: memory_limit: memory size 1e%+300 is too "
                   .. "large %(at most 1 EiB%)", msg)
    msg = err_of(function() dlua.LocalCluster{memory_limit = "1kB"} end)
    assert.matches("memory_limit must be at least", msg)
  end)
end)

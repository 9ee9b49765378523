-- Background progress, Ctrl-C and dlua.sleep (issue 12, items 1 and 3).
-- Submitted work must start and finish while the client's Lua code does
-- something else; Ctrl-C must end any wait at once, in a script (exit 130,
-- cluster closed) and in the REPL (a real terminal: tmux), with the
-- futures left as they were.  Every wait here is bounded by a deadline and
-- polls for the state it checks; tasks are released through files.
-- busted's environment cannot travel to workers with the task functions.
local BUSTED_ENV = _ENV
local describe, it, setup, teardown, assert =
  describe, it, setup, teardown, assert
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"
local T = require "helpers.term"

local DLUA, q = H.DLUA, H.q

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

--- write path, then wait (sleeping, at most 60 s) until stop exists;
-- returns v
local function hold(path, stop, v)
  local d = require "dlua"
  local f = assert(io.open(path, "w"))
  f:write("running")
  f:close()
  local t = d.time() + 60
  while d.time() < t do
    local g = io.open(stop)
    if g then g:close(); return v end
    d.sleep(0.01)
  end
  return v
end

local function tmp()
  local p = os.tmpname()
  os.remove(p)
  return p
end

describe("background progress", function()
  local client
  setup(function()
    client = dlua.Client{n_workers = 2, dashboard_address = false}
  end)
  teardown(function()
    if client then client:close() end
  end)

  it("starts a submitted task while the client runs its own code", function()
    local run, stop = tmp(), tmp()
    finally(function() os.remove(run); os.remove(stop) end)
    local f = client:submit(hold, run, stop, 5)
    -- No client call from here on until the task has run.
    assert.is_true(H.poll(function() return exists(run) end, 10))
    H.spit(stop, "")
    assert.is_true(H.poll(function() return f:done() end, 10))
    assert.equal("finished", f:status())
    assert.equal(5, f:result())
  end)

  it("starts every task of a map while the client runs its own code",
     function()
    local runs, stop = {}, tmp()
    for i = 1, 3 do runs[i] = tmp() end
    finally(function()
      for i = 1, 3 do os.remove(runs[i]) end
      os.remove(stop)
    end)
    H.spit(stop, "") -- each task returns as soon as it has started
    local futs = client:map(hold, runs, {stop, stop, stop}, {1, 2, 3})
    assert.is_true(H.poll(function()
      for i = 1, 3 do if not exists(runs[i]) then return false end end
      return true
    end, 10))
    assert.same({1, 2, 3}, client:gather(futs, 10))
  end)

  it("starts every task of a persisted delayed graph while the client "
     .. "runs its own code", function()
    -- Its tasks are queued in batches (dlua.delayed's submit path): the
    -- last, short batch must leave when persist returns, not at a wait.
    local runs, stop = {}, tmp()
    for i = 1, 3 do runs[i] = tmp() end
    finally(function()
      for i = 1, 3 do os.remove(runs[i]) end
      os.remove(stop)
    end)
    H.spit(stop, "")
    local dhold = dlua.delayed(hold)
    local parts = {}
    for i = 1, 3 do parts[i] = dhold(runs[i], stop, i) end
    local p = dlua.delayed(function(a, b, c) return a + b + c end)(
      parts[1], parts[2], parts[3])
    local d = dlua.persist(p, {client = client})
    assert.is_true(H.poll(function()
      for i = 1, 3 do if not exists(runs[i]) then return false end end
      return true
    end, 10))
    assert.equal(6, d:compute{client = client})
  end)

  it("shows a finished future as finished in tostring", function()
    local f = client:submit(function() return 1 end)
    assert.is_true(H.poll(function()
      return tostring(f):find("finished", 1, true) ~= nil
    end, 10))
  end)

  it("runs a done callback at the next client call, not before", function()
    local run, stop = tmp(), tmp()
    finally(function() os.remove(run); os.remove(stop) end)
    H.spit(stop, "")
    local f = client:submit(hold, run, stop, 9)
    local seen
    f:add_done_callback(function(g) seen = g:result() end)
    -- Finished on the worker (its file is there); no client call yet.
    assert.is_true(H.poll(function() return exists(run) end, 10))
    assert.is_nil(seen)
    assert.is_true(H.poll(function() return f:done() end, 10))
    assert.equal(9, seen)
  end)

  it("dlua.sleep runs due callbacks while it sleeps, without spinning",
     function()
    local t_cb
    local f = client:submit(function() return 3 end)
    f:add_done_callback(function() t_cb = dlua.time() end)
    local c0 = os.clock()
    dlua.sleep(0.3)
    local t_end, cpu = dlua.time(), os.clock() - c0
    assert.is_number(t_cb)
    assert.is_true(t_cb < t_end)
    -- CPU time, not wall time: a spinning sleep would use all 0.3 s.
    assert.is_true(cpu < 0.15, "dlua.sleep used " .. cpu .. " s of CPU")
  end)

  it("dlua.sleep in a task ends at the task's timeout", function()
    local f = client:submit(function()
      require("dlua").sleep(60)
      return "slept"
    end, dlua.opts{timeout = 0.2})
    local ok, err = pcall(f.result, f, 20)
    assert.is_false(ok)
    assert.equal("timeout", err.kind)
  end)

  it("dlua.sleep refuses a bad duration at the caller's line", function()
    local ok, err = pcall(dlua.sleep, "1")
    assert.is_false(ok)
    assert.matches("sleep: expects a non%-negative number of seconds, got "
                   .. "string", err)
    local line = debug.getinfo(1, "l").currentline + 1
    ok, err = pcall(function() dlua.sleep(-1) end)
    assert.matches("background_spec.lua:" .. line .. ": sleep: .* got %-1",
                   err)
  end)
end)

-- Scripts that wait on a task that runs until the spec says so; the spec
-- sends SIGINT once the task runs.
local WAITS = {
  result = "f:result()",
  gather = "c:gather({f})",
  wait = "dlua.wait({f})",
  as_completed = "for _ in dlua.as_completed({f}) do end",
  sleep = "dlua.sleep(60)",
}

local SCRIPT = [[
local dlua = require "dlua"
local run, stop, pids = ...
local c = dlua.Client{n_workers = 2, dashboard_address = false}
local function hold(path, stop)
  local d = require "dlua"
  local f = io.open(path, "w"); f:write("x"); f:close()
  local t = d.time() + 60
  while d.time() < t do
    local g = io.open(stop)
    if g then g:close(); return 1 end
    d.sleep(0.01)
  end
end
local f = c:submit(hold, run, stop)
local out = io.open(pids, "w")
for _, w in ipairs(c.cluster:workers()) do out:write(w.pid, "\n") end
out:close()
local function waits()
  %s
end
waits()
print("not reached")
]]

describe("Ctrl-C in a script", function()
  for _, name in ipairs{"result", "gather", "wait", "as_completed", "sleep"}
  do
    it("interrupts " .. name .. ", closes the cluster and exits 130",
       function()
      local script, run, stop, pids = tmp(), tmp(), tmp(), tmp()
      finally(function()
        for _, p in ipairs{script, run, stop, pids} do os.remove(p) end
      end)
      H.spit(script, SCRIPT:format(WAITS[name]))
      -- The shell waits (bounded) for the task to run and for the pids,
      -- then sends SIGINT and reports dlua's exit status.
      local code, out = H.sh(([[
        "$DLUA" %s %s %s %s & p=$!
        n=0
        while { [ ! -e %s ] || [ ! -s %s ]; } && [ $n -lt 1000 ]; do
          sleep 0.01; n=$((n+1))
        done
        sleep 0.1
        kill -INT $p
        wait $p
        echo "rc=$?"
      ]]):format(q(script), q(run), q(stop), q(pids), q(run), q(pids)))
      assert.equal(0, code, out)
      assert.matches("rc=130", out)
      assert.is_nil(out:find("not reached", 1, true))
      assert.is_nil(out:find("[dlua]", 1, true), out)
      assert.is_nil(out:find("[C]", 1, true), out)
      local msg = out:match("dlua: [^\n]*\n[^\n]*\n[^\n]*")
      assert.equal("dlua: interrupted!\n\t" .. script .. ":19: in local "
                   .. "'waits'\n\t" .. script .. ":21: in main chunk", msg)
      local list = {}
      for p in H.slurp(pids):gmatch("%d+") do list[#list + 1] = tonumber(p) end
      assert.equal(2, #list)
      assert.is_true(H.all_gone(list, 10))
    end)
  end
end)

describe("Ctrl-C caught by the script", function()
  it("is one error: a later wait is not interrupted again", function()
    local script, ready = tmp(), tmp()
    finally(function() os.remove(script); os.remove(ready) end)
    H.spit(script, [[
local dlua = require "dlua"
local ready = ...
local c = dlua.Client{n_workers = 1, dashboard_address = false}
print(pcall(function()
  local f = io.open(ready, "w"); f:write("x"); f:close()
  while true do end
end))
print("value", c:submit(function() return 5 end):result())
c:close()
]])
    local code, out = H.sh(([[
      "$DLUA" %s %s & p=$!
      n=0
      while [ ! -s %s ] && [ $n -lt 1000 ]; do sleep 0.01; n=$((n+1)); done
      kill -INT $p
      wait $p
      echo "rc=$?"
    ]]):format(q(script), q(ready), q(ready)))
    assert.equal(0, code, out)
    assert.matches("false\tinterrupted!\nvalue\t5\nrc=0", out)
  end)
end)

describe("Ctrl-C in the REPL", function()
  it("ends a wait, keeps the futures, and survives a second Ctrl-C",
     function()
    local run, stop, hist = tmp(), tmp(), tmp()
    local t = T.start(("env DLUA_HISTORY=%s %s"):format(q(hist), q(DLUA)))
    finally(function()
      t:kill()
      for _, p in ipairs{run, stop, hist} do os.remove(p) end
    end)
    t:wait_text("Dask for Lua")
    t:line('dlua = require "dlua"; c = dlua.Client{n_workers = 2, '
           .. 'dashboard_address = false}')
    t:wait_text("dashboard_address = false}\n>")
    -- A task that holds until the stop file exists.
    t:line(("function hold() local d = require 'dlua'; "
            .. "io.open(%q, 'w'):close(); "
            .. "while not io.open(%q) do d.sleep(0.01) end return 42 end")
           :format(run, stop))
    t:line("f = c:submit(hold)")
    assert.is_true(H.poll(function() return exists(run) end, 10))
    t:line("f:result()")
    t:wait_text("> f:result()")
    -- Ctrl-C until the wait reports it (a Ctrl-C that lands before the
    -- entry runs only clears the prompt line).
    t:wait(function(s)
      if s:find("interrupted!", 1, true) then return true end
      t:key("C-c")
      os.execute("sleep 0.1")
      return false
    end, "'interrupted!'")
    t:line("f:status()")
    t:wait_text('"pending"')
    -- A second wait, a second Ctrl-C: the REPL stays.
    t:line("c:gather({f})")
    t:wait_text("> c:gather({f})")
    t:wait(function(s)
      local _, n = s:gsub("interrupted!", "")
      if n >= 2 then return true end
      t:key("C-c")
      os.execute("sleep 0.1")
      return false
    end, "a second 'interrupted!'")
    t:key("C-c") -- at the prompt: clears the line only
    -- The task went on; once released it finishes and its callback runs
    -- at a prompt.
    t:line("f:add_done_callback(function(g) print('CB ' .. g:result()) end)")
    H.spit(stop, "")
    t:wait(function(s)
      if s:find("CB 42", 1, true) then return true end
      t:key("Enter")
      os.execute("sleep 0.1")
      return false
    end, "the callback's output")
    t:line("f:result() + 1")
    t:wait_text("43")
    t:line("os.exit(0)")
    assert.equal(0, t:wait_exit())
  end)

  it("shows a submitted future finished without any wait", function()
    local hist = tmp()
    local t = T.start(("env DLUA_HISTORY=%s %s"):format(q(hist), q(DLUA)))
    finally(function() t:kill(); os.remove(hist) end)
    t:wait_text("Dask for Lua")
    t:line('dlua = require "dlua"; c = dlua.Client{n_workers = 1, '
           .. 'dashboard_address = false}')
    t:line("f = c:submit(function() return 1 end)")
    t:wait(function(s)
      if s:find("<Future: finished", 1, true) then return true end
      t:line("f")
      os.execute("sleep 0.1")
      return false
    end, "a finished future")
  end)
end)

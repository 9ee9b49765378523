-- dlua.progress: the summary line off a terminal, the live bar on one
-- (a real terminal: tmux), and compute{progress = true}.  A real cluster,
-- no mocks; every wait is bounded.
-- busted's environment cannot travel to workers with the task functions.
local BUSTED_ENV = _ENV
local describe, it, setup, teardown, assert =
  describe, it, setup, teardown, assert
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"

local DLUA, q = H.DLUA, H.q
local FIX = H.TESTS .. "/fixtures/progress"

--- spin for s seconds, then return v
local function spin(s, v)
  local d = require("dlua")
  local t = d.time() + s
  while d.time() < t do end
  return v
end

--- raise
local function boom(x)
  error("boom " .. tostring(x))
end

-- Run dlua.progress with its output going to a temp file; returns the
-- result, the text written and the seconds the call took.
local function progress_to_file(x, o)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  o = o or {}
  o.file = f
  local t0 = dlua.time()
  local r = dlua.progress(x, o)
  local took = dlua.time() - t0
  f:close()
  local text = H.slurp(path)
  os.remove(path)
  return r, text, took
end

describe("dlua.progress off a terminal", function()
  local client
  setup(function() client = dlua.Client{n_workers = 2} end)
  teardown(function() client:close() end)

  it("prints one exact summary line, counting failures, and returns the "
     .. "futures", function()
    local xs = {}
    for i = 1, 10 do xs[i] = 0.03 end
    local futs = client:map(spin, xs, xs, dlua.opts{name = "spin"})
    local bad = client:map(boom, {1, 2}, dlua.opts{name = "boom"})
    local input = {futs, bad}
    local r, text, took = progress_to_file(input)
    assert.equal(input, r)
    local line, rest = text:match("^([^\n]*)\n(.*)$")
    assert.equal("", rest)
    assert.is_nil(line:find("\27", 1, true))
    local head, el, tail = line:match("^(progress: 10/12 done, 2 failed, "
      .. "elapsed )(%d+%.%d%d)s, ([%d.]+ tasks/s; spin 10/10, "
      .. "boom 0/2 %(2 failed%))$")
    assert.is_truthy(head, line)
    el = tonumber(el)
    -- The call's own time (printed to 0.01 s), never more than the call
    -- took: no bound that a loaded machine could break.
    assert.is_true(el >= 0 and el <= took + 0.005, line)
    -- The rate is 12 tasks over that elapsed time, to the printed digits.
    local rtext = tail:match("^[%d.]+")
    local rate = tonumber(rtext)
    local half = rtext:find(".", 1, true) and 0.05 or 0.5
    assert.is_true(rate >= 12 / (el + 0.005) - half - 1e-9, line)
    if el > 0.005 then
      assert.is_true(rate <= 12 / (el - 0.005) + half + 1e-9, line)
    end
    -- every future is done; nothing raised
    for _, f in ipairs(futs) do assert.equal("finished", f:status()) end
    for _, f in ipairs(bad) do assert.equal("error", f:status()) end
  end)

  it("takes a single future and gives it back", function()
    local f = client:submit(spin, 0.01, 42)
    local r, text = progress_to_file(f)
    assert.equal(f, r)
    assert.equal(42, f:result())
    assert.is_truthy(text:match("^progress: 1/1 done, 0 failed, elapsed "
                                .. "%d+%.%d%ds, [%d.]+ tasks/s\n$"), text)
  end)

  it("persists Delayeds and tracks every task of the graph", function()
    local inc = dlua.delayed(function(x) return x + 1 end, {name = "inc"})
    local add = dlua.delayed(function(a, b) return a + b end, {name = "add"})
    local d = add(inc(1), inc(2))
    local e = inc(10)
    local f0 = client:submit(spin, 0, "plain",
                              dlua.opts{name = "spin"})
    local r, text = progress_to_file({d = d, nested = {e, f0}})
    assert.is_true(dlua.is_future(r.d))
    assert.is_true(dlua.is_future(r.nested[1]))
    assert.equal(f0, r.nested[2])
    assert.equal(5, r.d:result())
    assert.equal(11, r.nested[1]:result())
    local done, total = text:match("^progress: (%d+)/(%d+) done, 0 failed")
    assert.equal("5", done, text)       -- inc x3, add, spin
    assert.equal("5", total, text)
    assert.is_truthy(text:find("inc 3/3", 1, true), text)
    assert.is_truthy(text:find("add 1/1", 1, true), text)
    assert.is_truthy(text:find("spin 1/1", 1, true), text)
  end)

  it("rejects what it cannot track and unknown options", function()
    assert.has_error(function() dlua.progress(42) end,
      "dlua.progress: expects futures, Delayeds or a table of them, got number")
    assert.has_error(function() dlua.progress({}, {colour = true}) end,
      "dlua.progress: unknown option 'colour'")
  end)

  it("draws frames into any file with tty = true", function()
    local futs = client:map(spin, {0.05, 0.05, 0.05, 0.05},
                            {1, 2, 3, 4})
    local _, text = progress_to_file(futs, {tty = true, width = 60,
                                            interval = 0.02})
    local frames = 0
    for _ in text:gmatch("\27%[2K") do frames = frames + 1 end
    assert.is_true(frames >= 2, text)           -- first frame and last
    assert.is_truthy(text:find("\r\27[1A", 1, true), text)
    local last = text:match("([^\n]*)\n$")
    assert.is_truthy(last:find("4/4  100%", 1, true), last)
    for l in text:gmatch("[^\n]+") do
      local plain = l:gsub("\27%[[%d;]*[A-Za-z]", ""):gsub("\r", "")
      assert.is_true(#plain <= 59, plain)
    end
  end)
end)

describe("compute{progress = true}", function()
  it("prints the summary while computing and returns the values", function()
    local err = os.tmpname()
    finally(function() os.remove(err) end)
    local code, out = H.sh(("%s %s 2>%s"):format(q(DLUA),
                            q(FIX .. "/compute.lua"), q(err)))
    assert.equal(0, code, out)
    assert.equal("value=44\nagain=4\n", out)
    local e = H.slurp(err)
    -- (stderr may carry other notices, e.g. about the dashboard's port)
    local lines = {}
    for l in e:gmatch("[^\n]+") do
      if l:find("^progress:") then lines[#lines + 1] = l end
    end
    assert.equal(2, #lines, e)
    local l1, l2 = lines[1], lines[2]
    -- 8 inc + 7 add; the second graph is one fused task named after add
    assert.is_truthy(l1:match("^progress: 15/15 done, 0 failed, elapsed "
      .. "%d+%.%d%ds, [%d.]+ tasks/s; inc 8/8, add 7/7$"), l1)
    assert.is_truthy(l2:match("^progress: 1/1 done, 0 failed"), l2)
  end)
end)

describe("dlua.progress on a terminal (tmux)", function()
  local has_tmux = os.execute("command -v tmux >/dev/null 2>&1")
  local sock = "dlua-prog-" .. H.self_pid()
  local function tmux(args)
    local p = io.popen(("tmux -L %s %s 2>&1"):format(q(sock), args))
    local s = p:read("a")
    p:close()
    return s
  end

  it("draws the bar in place, one line per group, up to 100%", function()
    assert.is_truthy(has_tmux, "tmux is needed for this spec")
    local go = os.tmpname()
    os.remove(go)
    finally(function()
      tmux("kill-server")
      os.remove(go)
    end)
    tmux(("-f /dev/null new-session -d -x 100 -y 30 %s"):format(q(
      ("COLUMNS=100 %s %s %s; echo exit=$?; exec sleep 300"):format(
        q(DLUA), q(FIX .. "/bar.lua"), q(go)))))
    -- Before the gate opens: the bar at 0%, with the group lines.
    local screen
    assert.is_true(H.poll(function()
      screen = tmux("capture-pane -p")
      return screen:find("0/33    0%", 1, true) ~= nil
    end, 30), screen)
    assert.is_truthy(screen:match("\n  spin %[%-+%]   0/30\n"), screen)
    assert.is_truthy(screen:match("\n  boom %[%-+%]    0/3\n"), screen)
    H.spit(go, "go")
    assert.is_true(H.poll(function()
      screen = tmux("capture-pane -p -e -S -")
      return screen:find("exit=", 1, true) ~= nil
    end, 60), screen)
    assert.is_truthy(screen:find("exit=0", 1, true), screen)
    assert.is_truthy(screen:find("returned=true spin=30", 1, true), screen)
    -- redrawn in place: one total line in the whole history, at 100%
    local plain = screen:gsub("\27%[[%d;]*m", "")
    local totals = 0
    for l in plain:gmatch("[^\n]*") do
      if l:find("^ total %[") then totals = totals + 1 end
      assert.is_true(#l <= 99, l)
    end
    assert.equal(1, totals, plain)
    assert.is_truthy(plain:find(" total %[[#x]+%]  33/33  100%%.*"
                                .. "ETA 0%.0s  2 failed\n"), plain)
    assert.is_truthy(plain:find("\n  spin %[#+%]  30/30\n"), plain)
    assert.is_truthy(plain:find("\n  boom %[#+x+%]    3/3  2 failed\n"),
                     plain)
    -- failures in red
    assert.is_truthy(screen:find("\27[31mxx", 1, true), screen)
    assert.is_truthy(screen:find("\27[31m  2 failed", 1, true), screen)
  end)
end)

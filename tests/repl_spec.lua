-- The dlua REPL on a real pseudo-terminal.  Each case starts a private
-- tmux server (tmux -L dlua-test-<pid>-<n>) running $DLUA in a 120x40
-- pane, types into it with send-keys, and polls capture-pane until the
-- expected text shows up or a deadline passes.  The server is killed at
-- the end of every case, pass or fail.

local DLUA = assert(os.getenv("DLUA"), "DLUA must name the dlua binary")
local TIMEOUT = 15 -- seconds to wait for any one piece of output

local T = require "helpers.term"
T.TIMEOUT = TIMEOUT
local q = T.q

local exec, slurp = T.exec, T.slurp

-- Start dlua in a new tmux server; env is a string of VAR=value words.
local function start(env)
  return T.start(("env %s %s"):format(env or "", q(DLUA)))
end

-- Run body(term) on a fresh terminal and kill it afterwards.
local function with_term(env, body)
  local history = os.tmpname()
  local t = start(("DLUA_HISTORY=%s %s"):format(q(history), env or ""))
  local ok, err = pcall(function()
    t:wait_text("Dask for Lua")
    t:wait_line(">")
    body(t, history)
  end)
  t:kill()
  os.remove(history)
  if not ok then error(err, 0) end
end

describe("dlua REPL on a terminal", function()
  it("greets on one line and shows the '> ' prompt", function()
    with_term(nil, function(t)
      local s = t:screen()
      local first = s:match("^[^\n]*")
      assert.matches("^dlua 0%.1%.0 %(Lua 5%.4%.%d+%) %-%- Dask for Lua", first)
      assert.matches("\n> *\n", s)
    end)
  end)

  it("continues a multi-line function with '>> ' and then calls it",
    function()
      with_term(nil, function(t)
        t:line("function twice(x)")
        t:wait_line(">>")
        t:line("  return x * 2")
        t:wait_line(">>   return x * 2")
        t:line("end")
        t:wait_line(">> end")
        t:line("twice(21)")
        local s = t:wait_line("42")
        assert.matches("> function twice%(x%)\n>>   return x %* 2\n>> end\n"
          .. "> twice%(21%)\n42\n", s)
      end)
    end)

  it("prints an expression's value without '=' or 'return'", function()
    with_term(nil, function(t)
      t:line("1 + 2")
      t:wait_line("3")
      t:line("'hi' .. 'there', 7")
      -- The terminal shows the tab between results as spaces.
      local s = t:wait(function(scr)
        return scr:find('\n"hithere" +7\n') ~= nil
      end, "two results")
      assert.matches('> 1 %+ 2\n3\n', s)
    end)
  end)

  it("pretty-prints tables with sorted keys", function()
    with_term(nil, function(t)
      t:line("{ zeta = 1, alpha = { 1, 2 }, 'first', [10] = true }")
      local s = t:wait_line('{ "first", [10] = true, alpha = { 1, 2 }, '
        .. 'zeta = 1 }')
      assert.is_nil(s:find("table: 0x", 1, true))
    end)
  end)

  it("prints nothing for statements and marks cycles in tables", function()
    with_term(nil, function(t)
      t:quiet_line("local z = 5")
      t:quiet_line("c = {}; c.self = c")
      t:line("'after'")
      local s = t:wait_line('"after"')
      assert.matches("> local z = 5\n> c = {}; c.self = c\n> 'after'\n",
        s, 1, true)
      t:line("c")
      t:wait_text("{ self = <cycle table: 0x")
    end)
  end)

  it("Ctrl-C interrupts a running loop and the REPL goes on", function()
    with_term(nil, function(t)
      t:line("while true do end")
      t:wait_line("> while true do end")
      -- The loop is running once the line has been read and echoed; a
      -- Ctrl-C before the chunk starts would only clear an empty line,
      -- so repeat it until the interruption is reported.
      t:wait(function(s)
        if s:find("interrupted!", 1, true) then return true end
        t:key("C-c")
        return false
      end, "'interrupted!'")
      t:line("6 * 7")
      local s = t:wait_line("42")
      assert.truthy(s:find("interrupted!", 1, true))
    end)
  end)

  it("Ctrl-C at the prompt drops the line being typed", function()
    with_term(nil, function(t)
      t:type("partial_garbage")
      t:wait_text("> partial_garbage")
      t:key("C-c")
      t:wait_line(">")
      t:line("1 + 1")
      local s = t:wait_line("2")
      assert.is_nil(s:find("stdin:1:", 1, true))
    end)
  end)

  it("Ctrl-C at a '>> ' prompt drops the unfinished entry", function()
    with_term(nil, function(t)
      t:line("function unfinished(")
      t:wait_line(">>")
      t:key("C-c")
      t:wait_line(">")
      t:line("3 + 4")
      local s = t:wait_line("7")
      assert.is_nil(s:find("stdin:", 1, true))
    end)
  end)

  it("works when the history file cannot be written", function()
    local t = start("DLUA_HISTORY=/nonexistent-dir-dlua/history")
    local ok, err = pcall(function()
      t:wait_line(">")
      t:line("5 * 5")
      t:wait_line("25")
      t:line("5 * 6")
      local s = t:wait_line("30")
      assert.is_nil(s:lower():find("history", 1, true))
      t:key("C-d")
      assert.equal(0, t:wait_exit())
    end)
    t:kill()
    if not ok then error(err, 0) end
  end)

  it("reports an error on stderr and continues", function()
    with_term(nil, function(t)
      t:line("error('kaboom')")
      t:wait_text("stdin:1: kaboom")
      t:line("40 + 2")
      local s = t:wait_line("42")
      assert.truthy(s:find("stack traceback:", 1, true))
    end)
  end)

  it("names the entry's line for an error a dlua function raises at its "
      .. "caller's line", function()
    -- the entry is an expression: compiled as a tail call, its own frame
    -- would be gone and the error would have no line at all
    with_term(nil, function(t)
      t:line("require('dlua.frame').from_table{x = {1, 2}}:head(1.5)")
      t:wait_text("stdin:1: dlua.frame: head: n must be an integer")
      t:line("40 + 2")
      t:wait_line("42")
    end)
  end)

  it("writes the history file and reads it back in the next session",
    function()
      local history
      with_term(nil, function(t, h)
        history = h
        t:line("hist_marker_1234 = 99")
        t:wait_line("> hist_marker_1234 = 99")
        t:key("C-d")
        assert.equal(0, t:wait_exit())
        local saved = slurp(h)
        assert.truthy(saved and saved:find("hist_marker_1234", 1, true),
          "history file lacks the entry")
        -- A second session on the same history file recalls the entry.
        local t2 = start("DLUA_HISTORY=" .. q(h))
        local ok, err = pcall(function()
          t2:wait_line(">")
          t2:key("Up")
          t2:wait_text("> hist_marker_1234 = 99")
        end)
        t2:kill()
        if not ok then error(err, 0) end
      end)
      assert.is_string(history)
    end)

  it("shows _PROMPT and _PROMPT2 when they are set", function()
    with_term(nil, function(t)
      t:line("_PROMPT, _PROMPT2 = 'lua> ', '...> '")
      t:wait_line("lua>")
      t:line("if true then")
      t:wait_line("...>")
      t:line("end")
      t:wait_line("...> end")
      t:wait(function(s) return s:find("\nlua> *\n") ~= nil end,
        "the next 'lua> ' prompt")
    end)
  end)

  it("Ctrl-D at an empty prompt exits with status 0", function()
    with_term(nil, function(t)
      t:line("x = 1")
      t:wait_line("> x = 1")
      t:key("C-d")
      assert.equal(0, t:wait_exit())
      assert.is_false(exec(t.tmux .. " has-session"))
    end)
  end)
end)

describe("dlua REPL tab completion", function()
  -- Type text, press Tab, and wait for the prompt line to read want.
  local function complete(t, text, want)
    t:type(text)
    t:key("Tab")
    return t:wait_line("> " .. want)
  end

  it("completes globals and keywords, a function with '('", function()
    with_term(nil, function(t)
      t:quiet_line("my_counter = 0")
      complete(t, "my_co", "my_counter")
      t:line(" + 1")
      t:wait_line("1")
      complete(t, "setmet", "setmetatable(")
      t:key("C-u")
      complete(t, "loc", "local")
    end)
  end)

  it("completes fields of tables: string.fo<TAB>", function()
    with_term(nil, function(t)
      complete(t, "string.fo", "string.format(")
      t:line([["%03d", 7)]])
      t:wait_line('"007"')
      t:quiet_line("cfg = { inner = { depth = 3 } }")
      complete(t, "cfg.inn", "cfg.inner")
      t:type(".")
      complete(t, "de", "cfg.inner.depth")
      t:key("Enter")
      t:wait_line("3")
    end)
  end)

  it("lists the choices on a second Tab", function()
    with_term(nil, function(t)
      t:type("string.re")
      t:key("Tab")
      t:key("Tab")
      t:wait(function(s)
        return s:find("string.rep +string.reverse") ~= nil
      end, "the list of string.re*")
    end)
  end)

  it("completes methods through the metatable's __index, functions only",
    function()
      with_term(nil, function(t)
        t:quiet_line("obj = setmetatable({}, { __index = { submit = print, "
          .. "subtotal = 1, _subhidden = print } })")
        complete(t, "obj:sub", "obj:submit(")
        t:key("C-u")
        -- after '.', fields of any type; "_" names only when asked for
        t:type("obj.sub")
        t:key("Tab")
        t:key("Tab")
        local s = t:wait(function(scr)
          return scr:find("obj.submit +obj.subtotal") ~= nil
        end, "the list of obj.sub*")
        assert.matches("\nobj%.submit +obj%.subtotal *\n", s)
        t:key("C-u")
        complete(t, "obj._s", "obj._subhidden(")
      end)
    end)

  it("never runs an __index function while completing", function()
    with_term(nil, function(t)
      t:quiet_line("calls = 0")
      t:quiet_line("lazy = setmetatable({}, { __index = function(_, k) "
        .. "calls = calls + 1 end })")
      t:type("lazy.x.y")
      t:key("Tab")
      t:key("C-u")
      t:line("calls")
      t:wait_line("0")
    end)
  end)

  it("completes a dlua Client's methods: client:sub<TAB>", function()
    with_term(nil, function(t)
      t:quiet_line("dlua = require 'dlua'")
      -- no dashboard: its port may be taken, and the note would break the
      -- wait for the prompt
      t:quiet_line("client = dlua.Client{ n_workers = 1, "
        .. "dashboard_address = false }")
      complete(t, "client:sub", "client:submit(")
      t:line("function(x) return x + 1 end, 41):result()")
      t:wait_line("42")
      t:quiet_line("client:close()")
    end)
  end)
end)

describe("dlua.pretty", function()
  local pretty = require "dlua.pretty"

  it("quotes and escapes strings", function()
    assert.equal('"a\\nb\\"c\\\\"', pretty.format('a\nb"c\\'))
    assert.equal('"\\0\\1"', pretty.format("\0\1"))
    assert.equal('"1"', pretty.format("1"))
    assert.equal("1", pretty.format(1))
    assert.equal("1.0", pretty.format(1.0))
  end)

  it("writes the array part first, then sorted keys", function()
    assert.equal('{ 1, 2, [1.5] = 0, b = 1, ["not id"] = 2, z = 3, '
      .. '[true] = 4 }',
      pretty.format({ 1, 2, z = 3, b = 1, ["not id"] = 2, [true] = 4,
                      [1.5] = 0 }))
    assert.equal('{ ["end"] = 1 }', pretty.format({ ["end"] = 1 }))
    assert.equal("{}", pretty.format({}))
  end)

  it("breaks tables wider than opts.width over lines", function()
    local s = pretty.format({ alpha = { 1, 2 }, beta = "b" }, { width = 10 })
    assert.equal('{\n  alpha = { 1, 2 },\n  beta = "b"\n}', s)
  end)

  it("stops at opts.depth and after opts.max_items", function()
    assert.equal("{ { {...} } }", pretty.format({ { { { 1 } } } },
      { depth = 2 }))
    assert.equal("{ 1, 2, ... }", pretty.format({ 1, 2, 3, 4 },
      { max_items = 2 }))
  end)

  it("marks cycles but repeats shared tables", function()
    local t = {}
    t.me = t
    assert.matches("^{ me = <cycle table: 0x%x+> }$", pretty.format(t))
    local shared = { 1 }
    assert.equal("{ { 1 }, { 1 } }", pretty.format({ shared, shared }))
  end)

  it("uses __tostring and survives one that fails", function()
    local obj = setmetatable({}, { __tostring = function() return "Obj" end })
    assert.equal("{ Obj }", pretty.format({ obj }))
    local bad = setmetatable({}, { __tostring = function() error("no") end })
    assert.equal("<table (__tostring failed)>", pretty.format(bad))
  end)

  it("print writes tab-separated values and a newline", function()
    local tmp = os.tmpname()
    local f = assert(io.open(tmp, "w"))
    local old = io.output()
    local stdout = io.stdout
    -- pretty.print writes to io.stdout: swap it for a file briefly.
    io.stdout = f
    local ok, err = pcall(pretty.print, 1, nil, "x", { 2 })
    io.stdout = stdout
    io.output(old)
    f:close()
    local out = slurp(tmp)
    os.remove(tmp)
    assert.is_true(ok, err)
    assert.equal('1\tnil\t"x"\t{ 2 }\n', out)
  end)
end)

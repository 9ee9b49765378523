-- The dlua command as a Lua-compatible interpreter: flags, the arg table,
-- exit codes and error messages.  Every case runs the binary under test
-- ($DLUA) in a shell and checks its exit status, stdout and stderr.

local DLUA = assert(os.getenv("DLUA"), "DLUA must name the dlua binary")

local function script_dir()
  local src = debug.getinfo(1, "S").source:sub(2)
  local dir = src:match("^(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then
    local pwd = io.popen("pwd"):read("l")
    dir = pwd .. "/" .. dir
  end
  return dir
end

local FIX = script_dir() .. "/fixtures/cli"

local F = require "helpers.files"
local q, slurp = F.q, F.slurp

-- Run a shell command line with "$DLUA" available, optionally feeding
-- stdin; returns exit status, stdout, stderr.
local function sh(cmdline, stdin)
  local out, err, inp = os.tmpname(), os.tmpname(), os.tmpname()
  local f = assert(io.open(inp, "wb"))
  f:write(stdin or "")
  f:close()
  local full = ("DLUA=%s; export DLUA; (%s) <%s >%s 2>%s; echo $?"):format(
    q(DLUA), cmdline, q(inp), q(out), q(err))
  local p = assert(io.popen(full))
  local code = tonumber(p:read("a"):match("%d+"))
  p:close()
  local o, e = slurp(out), slurp(err)
  os.remove(out); os.remove(err); os.remove(inp)
  return code, o, e
end

-- Run dlua with the given arguments (already quoted where needed), found
-- on PATH as users run it: messages start with argv[0], here "dlua: ".
local function dlua(args, stdin, env)
  return sh((env or "") .. ' PATH="$(dirname "$DLUA")":"$PATH" dlua '
            .. args, stdin)
end

describe("dlua command", function()
  describe("version and help", function()
    it("-v prints 'dlua <version> -- ' and lua -v's line, exits 0", function()
      local code, out, err = dlua("-v")
      assert.equal(0, code)
      assert.matches("^dlua 0%.1%.0 %-%- Lua 5%.4%.%d+  Copyright %(C%) "
        .. "1994%-%d+ Lua%.org, PUC%-Rio\n$", out)
      assert.equal("", err)
    end)

    it("--version prints the same line as -v", function()
      local _, v = dlua("-v")
      local code, out = dlua("--version")
      assert.equal(0, code)
      assert.equal(v, out)
    end)

    it("-v with -e prints the version, then runs the chunk", function()
      local code, out = dlua("-v -e 'print(42)'")
      assert.equal(0, code)
      assert.matches("^dlua 0%.1%.0 [^\n]*\n42\n$", out)
    end)

    it("--help documents every flag and the REPL", function()
      local code, out, err = dlua("--help")
      assert.equal(0, code)
      assert.equal("", err)
      assert.matches("^usage: dlua %[options%] %[script %[args%]%]", out)
      for _, flag in ipairs({ "-e stat", "-i", "-l mod", "-l g=mod", "-v",
                              "-E", "-W", "--help", "--version", "--",
                              "REPL", "DLUA_HISTORY", "LUA_INIT" }) do
        assert.truthy(out:find(flag, 1, true), "help lacks " .. flag)
      end
      assert.truthy(out:find("\n  -  ", 1, true), "help lacks '-'")
    end)

    it("-h is --help", function()
      local _, help = dlua("--help")
      local code, out = dlua("-h")
      assert.equal(0, code)
      assert.equal(help, out)
    end)
  end)

  describe("running scripts", function()
    it("passes arguments as arg[1..n] and as ...", function()
      local code, out, err = sh('"$DLUA" ' .. q(FIX .. "/args.lua")
        .. " a 'b c' d")
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal("arg0=" .. FIX .. "/args.lua\nargn=3\ndots=a,b c,d\n"
        .. "neg1=" .. DLUA .. "\n", out)
    end)

    it("puts options at negative indices of arg", function()
      local code, out = dlua("-e 'x=1' " .. q(FIX .. "/args.lua"))
      assert.equal(0, code)
      assert.matches("neg1=x=1\n", out, 1, true)
    end)

    it("skips a #! first line", function()
      local code, out, err = dlua(q(FIX .. "/shebang.lua") .. " 1 2")
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal("shebang ok\t1\t2\n", out)
    end)

    it("runs a #! script directly through the dlua on PATH", function()
      local dir = DLUA:match("^(.*)/[^/]*$")
      local tmp = os.tmpname()
      local f = assert(io.open(tmp, "wb"))
      f:write(slurp(FIX .. "/shebang.lua"))
      f:close()
      local code, out = sh(("chmod +x %s && PATH=%s:$PATH %s x"):format(
        q(tmp), q(dir), q(tmp)))
      os.remove(tmp)
      assert.equal(0, code)
      assert.equal("shebang ok\tx\n", out)
    end)

    it("reads the script from stdin with -", function()
      local code, out = dlua("- p q", "print('from stdin', ...)\n")
      assert.equal(0, code)
      assert.equal("from stdin\tp\tq\n", out)
    end)

    it("reads stdin as a script when it is not a terminal", function()
      local code, out = dlua("", "print(1 + 1)\n")
      assert.equal(0, code)
      assert.equal("2\n", out)
    end)

    it("treats the word after -- as the script, even '-x'", function()
      local code, out = sh("cd " .. q(FIX) .. " && cp args.lua ./-x.lua && "
        .. '"$DLUA" -- -x.lua z; rc=$?; rm -f ./-x.lua; exit $rc')
      assert.equal(0, code)
      assert.matches("dots=z\n", out, 1, true)
    end)

    it("exits with the status given to os.exit", function()
      local code, out = dlua(q(FIX .. "/exit_code.lua") .. " 3")
      assert.equal(3, code)
      assert.equal("before exit\n", out)
      code = dlua(q(FIX .. "/exit_code.lua") .. " 0")
      assert.equal(0, code)
    end)

    it("finds require 'dlua' from another directory; time increases",
      function()
        local code, out, err = sh("cd / && \"$DLUA\" "
          .. q(FIX .. "/dlua_time.lua"))
        assert.equal(0, code)
        assert.equal("", err)
        assert.equal("float\tfloat\ttrue\t0.1.0\n", out)
      end)
  end)

  describe("options", function()
    it("-e runs chunks in order", function()
      local code, out = dlua("-e 'x = 20' -e 'print(x + 1)' -e'print(x*2)'")
      assert.equal(0, code)
      assert.equal("21\n40\n", out)
    end)

    it("-e runs before the script, which sees its globals", function()
      local code, out = dlua("-e 'print(\"first\")' "
        .. q(FIX .. "/shebang.lua"))
      assert.equal(0, code)
      assert.equal("first\nshebang ok\n", out)
    end)

    it("-l mod sets global mod; -l g=mod sets global g", function()
      local code, out, err = sh("LUA_PATH=" .. q(FIX .. "/?.lua")
        .. " \"$DLUA\" -l greet -l g=greet -e 'print(greet.hello, g == greet)'")
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal("hello from greet\ttrue\n", out)
    end)

    it("-l of a missing module fails with status 1", function()
      local code, out, err = dlua("-l no_such_module_xyz -e 'print(1)'")
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("^dlua: module 'no_such_module_xyz' not found", err)
    end)

    it("-E ignores LUA_PATH and LUA_INIT", function()
      local env = "LUA_PATH=" .. q(FIX .. "/?.lua")
        .. " LUA_INIT='print(\"init ran\")' "
      local code, out = sh(env .. "\"$DLUA\" -e 'print(require\"greet\".hello)'")
      assert.equal(0, code)
      assert.equal("init ran\nhello from greet\n", out)
      local code2, out2, err2 = sh(env .. "\"$DLUA\" -E -e 'require\"greet\"'")
      assert.equal(1, code2)
      assert.equal("", out2)
      assert.matches("module 'greet' not found", err2, 1, true)
    end)

    it("LUA_INIT=@file runs that file first", function()
      local code, out = sh("LUA_INIT=@" .. q(FIX .. "/shebang.lua")
        .. " \"$DLUA\" -e 'print(2)'")
      assert.equal(0, code)
      assert.equal("shebang ok\n2\n", out)
    end)

    it("LUA_INIT_5_4 wins over LUA_INIT", function()
      local code, out = sh("LUA_INIT='print(1)' LUA_INIT_5_4='print(54)' "
        .. "\"$DLUA\" -e ''")
      assert.equal(0, code)
      assert.equal("54\n", out)
    end)

    it("an error in LUA_INIT stops the command with status 1", function()
      local code, out, err = sh("LUA_INIT='error(\"bad init\")' "
        .. "\"$DLUA\" -e 'print(1)'")
      assert.equal(1, code)
      assert.equal("", out)
      -- run by its path, messages start with that path, as lua's do
      assert.equal(DLUA .. ": LUA_INIT:1: bad init", err:match("^[^\n]*"))
    end)

    it("warnings are off by default and on with -W", function()
      local code, _, err = dlua("-e 'warn(\"careful\")'")
      assert.equal(0, code)
      assert.equal("", err)
      code, _, err = dlua("-W -e 'warn(\"careful\")'")
      assert.equal(0, code)
      assert.equal("Lua warning: careful\n", err)
    end)

    it("-i runs the script, then reads entries from stdin", function()
      local code, out, err = dlua("-i " .. q(FIX .. "/shebang.lua"),
        "1 + 1\n'x', nil\n")
      assert.equal(0, code)
      assert.equal("", err)
      assert.matches("^shebang ok\n", out)
      -- each line read is echoed after its prompt, as by lua5.4 (readline)
      local tail = "\n> 1 + 1\n2\n> 'x', nil\nx\tnil\n> \n"
      assert.equal(tail, out:sub(-#tail))
    end)
  end)

  describe("-i with stdin not a terminal (as lua5.4 -i)", function()
    it("uses _PROMPT and _PROMPT2, strings or values with __tostring",
      function()
        local code, out = dlua([[-e "_PROMPT='P1 ' _PROMPT2='P2 '" -i]],
          "x = {\n1 }\n")
        assert.equal(0, code)
        assert.matches("\nP1 x = {\nP2 1 }\nP1 \n$", out)
        code, out = dlua([[-e "local n = 0 _PROMPT = setmetatable({},
          {__tostring = function() n = n + 1 return n .. ':' end})" -i]],
          "a = 1\n")
        assert.equal(0, code)
        assert.matches("\n1:a = 1\n2:\n$", out)
      end)

    it("a _PROMPT that cannot be converted gives '> ' and an error line",
      function()
        local code, out, err = dlua([[-e "_PROMPT = setmetatable({},
          {__tostring = function() error('bad prompt', 0) end})" -i]], "1\n")
        assert.equal(0, code)
        assert.matches("\n> 1\n1\n> \n$", out)
        assert.equal("error in _PROMPT (bad prompt)\n"
          .. "error in _PROMPT (bad prompt)\n", err)
      end)

    it("reads a last line that has no newline", function()
      local code, out = dlua("-i", "a = 1\na")
      assert.equal(0, code)
      assert.matches("\n> a = 1\n> a\n1\n> \n$", out)
    end)

    it("takes '=' at the start of an entry for 'return'", function()
      local code, out, err = dlua("-i", "=1 + 2, 'x'\n")
      assert.equal(0, code)
      assert.equal("", err)
      assert.matches("\n3\tx\n", out)
    end)

    it("prints results with the global print, and says when it fails",
      function()
        local code, out, err = dlua([[-e "print = function(...)
          io.write('<', select('#', ...), '>') end" -i]], "1, 2\n")
        assert.equal(0, code)
        assert.equal("", err)
        assert.matches("\n> 1, 2\n<2>> \n$", out)
        code, _, err = dlua([[-e "print=nil" -i]], "10\n")
        assert.equal(0, code)
        assert.equal("error calling 'print' (attempt to call a nil value)\n",
          err)
      end)
  end)

  describe("-i on a terminal (libedit, opened on first use)", function()
    it("a script's process does not load libedit", function()
      local code, out = dlua([[-e "io.write(io.open('/proc/self/maps'):read('a'))"]])
      assert.equal(0, code)
      assert.matches("liblua5.4", out, 1, true) -- the maps were read
      assert.is_nil(out:find("libedit", 1, true))
    end)

    it("edits lines: Tab completes a name, entries go to the history file",
      function()
        if not os.execute("command -v script >/dev/null 2>&1") then
          pending("no script(1) here to give dlua a terminal")
          return
        end
        local hist = os.tmpname()
        finally(function() os.remove(hist) end)
        -- script(1) runs dlua on a pseudo-terminal fed from our stdin
        local code, out, err = sh(("DLUA_HISTORY=%s script -qfec %s /dev/null")
          :format(q(hist), q(q(DLUA))), "string.up\t'ok')\nx = 42\n")
        assert.equal(0, code, err)
        assert.matches('"OK"', out, 1, true)
        local h = slurp(hist)
        assert.matches("string.upper('ok')", h:gsub("\\040", " "), 1, true)
        assert.matches("x = 42", h:gsub("\\040", " "), 1, true)
      end)
  end)

  describe("require", function()
    it("a missing module's message is plain Lua's, with no dlua line",
      function()
        local code, out, err = dlua([[-e 'package.path = "?.lua;?/?"
          package.cpath = "?.so;?/init"
          local _, msg = pcall(require, "XXX") io.write(msg)']])
        assert.equal(0, code)
        assert.equal("", err)
        assert.equal("module 'XXX' not found:\n"
          .. "\tno field package.preload['XXX']\n"
          .. "\tno file 'XXX.lua'\n\tno file 'XXX/XXX'\n"
          .. "\tno file 'XXX.so'\n\tno file 'XXX/init'", out)
      end)

    it("a missing dlua.* module says that none is embedded", function()
      local code, out = dlua([[-e 'local _, msg = pcall(require, "dlua.nope")
        io.write(msg)']])
      assert.equal(0, code)
      assert.matches("\n\tno embedded dlua module 'dlua.nope'\n", out, 1, true)
      local _, out2 = dlua([[-e 'local _, m = pcall(require, "dluax")
        io.write(m)']])
      assert.not_matches("embedded", out2, 1, true)
    end)

    it("finds the embedded dlua and dlua.pretty from anywhere", function()
      local code, out = sh([[cd / && "$DLUA" -e 'io.write(type(require "dlua"),
        " ", type(require "dlua.pretty".format))']])
      assert.equal(0, code)
      assert.equal("table function", out)
    end)
  end)

  describe("errors", function()
    it("an unknown flag gives one line and status 1", function()
      local code, out, err = dlua("-x")
      assert.equal(1, code)
      assert.equal("", out)
      assert.equal("dlua: unrecognized option '-x' (try 'dlua --help')\n", err)
    end)

    it("an unknown long flag and a flag with extra letters fail too", function()
      local code, _, err = dlua("--frobnicate")
      assert.equal(1, code)
      assert.matches("^dlua: unrecognized option '%-%-frobnicate'", err)
      code, _, err = dlua("-vx")
      assert.equal(1, code)
      assert.matches("^dlua: unrecognized option '%-vx'", err)
    end)

    it("-e and -l without an argument fail with one line", function()
      local code, _, err = dlua("-e")
      assert.equal(1, code)
      assert.equal("dlua: '-e' needs argument (try 'dlua --help')\n", err)
      code, _, err = dlua("-l")
      assert.equal(1, code)
      assert.equal("dlua: '-l' needs argument (try 'dlua --help')\n", err)
    end)

    it("a missing script file gives one line and status 1", function()
      local code, out, err = dlua("no/such/file.lua")
      assert.equal(1, code)
      assert.equal("", out)
      assert.equal("dlua: cannot open no/such/file.lua: "
        .. "No such file or directory\n", err)
    end)

    it("a syntax error names file:line on one line", function()
      local path = FIX .. "/syntax_error.lua"
      local code, out, err = dlua(q(path))
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("^dlua: " .. path:gsub("%p", "%%%0")
        .. ":4: unexpected symbol near '='\n$", err)
    end)

    it("a syntax error in -e names the command line", function()
      local code, _, err = dlua("-e 'x = = 1'")
      assert.equal(1, code)
      assert.matches("^dlua: %(command line%):1: [^\n]*\n$", err)
    end)

    it("a run-time error prints message and traceback, status 1", function()
      local path = FIX .. "/runtime_error.lua"
      local code, out, err = dlua(q(path))
      assert.equal(1, code)
      assert.equal("", out)
      local first = err:match("^[^\n]*")
      assert.equal("dlua: " .. path .. ":3: boom from inner", first)
      assert.matches("\nstack traceback:\n", err, 1, true)
      assert.matches("runtime_error.lua:3: in upvalue 'inner'", err, 1, true)
      assert.matches("in main chunk", err, 1, true)
    end)

    it("a traceback shows the user's frames, not dlua's own "
       .. "(DLUA_TRACEBACK=full shows them)", function()
      local chunk = q("local dlua = require 'dlua'\n"
        .. "local function go() return dlua.format_bytes(true) + 1 end\n"
        .. "go()")
      local code, _, err = dlua("-e " .. chunk)
      assert.equal(1, code)
      assert.matches("^dlua: %(command line%):2: dlua.format_bytes: expects "
                     .. "a number of bytes, got boolean\n", err)
      assert.equal("stack traceback:\n"
        .. "\t(command line):2: in local 'go'\n"
        .. "\t(command line):3: in main chunk\n"
        .. "\t[C]: in ?\n", err:match("\n(stack traceback:.*)$"))
      code, _, err = dlua("-e " .. chunk, nil, "DLUA_TRACEBACK=full")
      assert.equal(1, code)
      assert.matches("[dlua]/dlua.", err, 1, true)
      assert.matches("[C]: in function 'error'", err, 1, true)
    end)

    it("an error object that is not a string is described", function()
      local code, _, err = dlua("-e 'error({})'")
      assert.equal(1, code)
      assert.matches("^dlua: %(error object is a table value%)", err)
    end)

    it("an error object with __tostring is printed with it", function()
      local code, _, err = dlua("-e 'error(setmetatable({}, "
        .. "{__tostring = function() return \"custom err\" end}))'")
      assert.equal(1, code)
      assert.equal("dlua: custom err\n", err)
    end)

    it("SIGINT stops a running script with 'interrupted!'", function()
      local ready = os.tmpname()
      os.remove(ready)
      local code, _, err = sh(('"$DLUA" %s %s & pid=$!; '
        .. 'i=0; while [ ! -s %s ] && [ $i -lt 200 ]; do sleep 0.05; '
        .. 'i=$((i+1)); done; kill -INT $pid; wait $pid'):format(
        q(FIX .. "/loop.lua"), q(ready), q(ready)))
      os.remove(ready)
      -- 130, as a shell reports a command that SIGINT ended; one line,
      -- then the script's own frames.
      assert.equal(130, code)
      local want = DLUA .. ": interrupted!\n\t"
      assert.equal(want, err:sub(1, #want))
      assert.matches("\t[^\n]*loop%.lua:5: in main chunk\n$", err)
    end)
  end)
end)

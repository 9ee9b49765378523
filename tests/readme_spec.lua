-- The README's code that users copy: the C embedding snippet (section
-- "C API (embedding)") is taken out of README.md, compiled with warnings as
-- errors against the build tree, and run; its task must print 42.

local BUILD = assert(os.getenv("DLUA_BUILD"), "DLUA_BUILD must name the build")

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Run a shell command line; returns exit status and its stdout+stderr.
local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\""))
  local out = p:read("a")
  p:close()
  local body, rc = out:match("^(.-)rc=(%d+)%s*$")
  return tonumber(rc), body
end

local function readme()
  local f = assert(io.open(BUILD .. "/../README.md", "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- The first ```c block after the heading line `heading`.
local function c_block(text, heading)
  local at = assert(text:find("\n" .. heading .. "\n", 1, true),
    "README has no heading " .. heading)
  local code = text:match("\n```c\n(.-)\n```\n", at)
  return assert(code, "no ```c block under " .. heading)
end

-- Sanitized builds need the sanitizer runtime in the host as well.
local XCFLAGS = os.getenv("DLUA_SANITIZE") and
  "-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" or "-O2 -g"

describe("README", function()
  it("the C embedding snippet compiles as is and prints 42", function()
    local tmp = io.popen("mktemp -d"):read("l")
    local ok, err = pcall(function()
      local f = assert(io.open(tmp .. "/host.c", "wb"))
      f:write(c_block(readme(), "## C API (embedding)"), "\n")
      f:close()
      local _, luac = sh("pkg-config --cflags lua5.4")
      local _, libs = sh("pkg-config --libs lua5.4 libuv libcjson zlib")
      local rc, out = sh(("cc -std=c99 -Wall -Wextra -Werror %s -I%s %s "
        .. "-o %s %s %s %s -lhttp_parser -lcjson -lz -lpthread -lm"):format(
        XCFLAGS, q(BUILD .. "/../runtime"), luac:gsub("%s+$", ""),
        q(tmp .. "/host"), q(tmp .. "/host.c"), q(BUILD .. "/libdlua.a"),
        libs:gsub("%s+$", "")))
      assert.equals(0, rc, out)
      -- stdout only: the dashboard may say on stderr that its port is taken
      rc, out = sh(q(tmp .. "/host") .. " 2>" .. q(tmp .. "/err"))
      local _, err = sh("cat " .. q(tmp .. "/err"))
      assert.equals(0, rc, err)
      assert.equals("42\n", out, err)
    end)
    sh("rm -rf " .. q(tmp))
    if not ok then error(err, 0) end
  end)

  it("the Bags example runs as is and prints what its comments say",
     function()
    local text = readme()
    local at = assert(text:find("\n### Bags\n", 1, true), "no Bags section")
    local code = assert(text:match("\n```lua\n(.-)\n```\n", at))
    local want = {}
    for line in code:gmatch("[^\n]+") do
      local out = line:match("%-%->%s*(.-)%s*$")
      if out then want[#want + 1] = out end
    end
    local tmp = os.tmpname()
    local f = assert(io.open(tmp, "wb"))
    f:write(code, "\n")
    f:close()
    local rc, out = sh(q(BUILD .. "/dlua") .. " " .. q(tmp))
    os.remove(tmp)
    assert.equals(0, rc, out)
    local got = {}
    for line in out:gmatch("[^\n]+") do
      got[#got + 1] = line:gsub("%s+$", "")
    end
    assert.same(want, got)
  end)
end)

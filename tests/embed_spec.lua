-- Embedding libdlua: examples/embed/host.c, a C host whose own C kernels
-- run as tasks on 2 workers (the host re-executed), built against the build
-- tree and against a `make install` through pkg-config (shared and static).

local BUILD = assert(os.getenv("DLUA_BUILD"), "DLUA_BUILD must name the build")
local DLUA = assert(os.getenv("DLUA"), "DLUA must name the dlua binary")

local H = require "helpers.cluster"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Run a shell command line; returns exit status and its stdout+stderr.
local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\""))
  local out = p:read("a")
  p:close()
  local body, rc = out:match("^(.-)rc=(%d+)%s*$")
  return tonumber(rc), body
end

-- Sanitized builds need the sanitizer runtime in the host as well.
local XCFLAGS = os.getenv("DLUA_SANITIZE") and
  "-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" or "-O2 -g"

local function check_host_output(out)
  assert.matches("distinct worker processes that ran tasks: 2", out, 1, true)
  assert.matches("monte carlo: tasks %d+, serial %d+: match", out)
  assert.matches("dot products: tasks [%d.]+, serial [%d.]+: match", out)
  assert.matches("pi ~= 3%.1", out)
end

local function no_children_left(tmp)
  -- workers die with their host; nothing named host may be left running
  -- (they may take a moment to notice: poll, with a deadline)
  local out
  local gone = H.poll(function()
    out = select(2, sh("pgrep -a -f " .. q("^" .. tmp .. "/") .. " || true"))
    return out == ""
  end, 10)
  assert.is_true(gone, "left running: " .. out)
end

describe("embedding", function()
  local tmp
  before_each(function()
    local p = io.popen("mktemp -d")
    tmp = p:read("l")
    p:close()
  end)
  after_each(function() sh("rm -rf " .. q(tmp)) end)

  it("builds the example against the build tree and runs it", function()
    local _, luac = sh("pkg-config --cflags lua5.4")
    local _, libs = sh("pkg-config --libs lua5.4 libuv libcjson zlib")
    local flags = ("DLUA_CFLAGS=%s DLUA_LIBS=%s CFLAGS=%s O=%s"):format(
      q("-I" .. BUILD .. "/../runtime " .. luac:gsub("%s+$", "")),
      q(BUILD .. "/libdlua.a " .. libs:gsub("%s+$", "") ..
        " -lhttp_parser -lcjson -lz -lpthread -lm"),
      q(XCFLAGS), q(tmp))
    local rc, out = sh("make -s -C examples/embed " .. flags)
    assert.equals(0, rc, out)
    rc, out = sh(q(tmp .. "/host"))
    assert.equals(0, rc, out)
    check_host_output(out)
    -- a task needing the host's C function on a plain dlua worker fails,
    -- naming the function
    rc, out = sh(q(tmp .. "/host") .. " --worker-exe " .. q(DLUA))
    assert.equals(1, rc, out)
    assert.matches("cannot resolve '_G.mc_hits'", out, 1, true)
    no_children_left(tmp)
  end)

  it("installs with make install and builds through pkg-config", function()
    local prefix = tmp .. "/prefix"
    local rc, out = sh(("make -s -o all install B=%s PREFIX=%s"):format(
      q(BUILD), q(prefix)))
    assert.equals(0, rc, out)
    for _, f in ipairs{"include/dlua.h", "lib/libdlua.a", "lib/libdlua.so",
                       "lib/pkgconfig/dlua.pc", "bin/dlua",
                       "share/lua/5.4/dlua/init.lua"} do
      assert.is_true(os.rename(prefix .. "/" .. f, prefix .. "/" .. f) ~= nil,
                     f .. " installed")
    end
    local pcp = "PKG_CONFIG_PATH=" .. q(prefix .. "/lib/pkgconfig")
    rc, out = sh(pcp .. " pkg-config --modversion dlua")
    assert.equals(0, rc, out)
    assert.equals("0.1.0\n", out)
    rc, out = sh(pcp .. " pkg-config --cflags dlua")
    assert.matches("-I" .. prefix:gsub("%p", "%%%0") .. "/include", out)
    for _, static in ipairs{"0", "1"} do
      local o = tmp .. "/out" .. static
      rc, out = sh(("mkdir -p %s && make -s -C examples/embed %s STATIC=%s "
                    .. "CFLAGS=%s O=%s"):format(q(o), pcp, static,
                                                q(XCFLAGS), q(o)))
      assert.equals(0, rc, out)
      rc, out = sh(q(o .. "/host"))
      assert.equals(0, rc, out)
      check_host_output(out)
      local _, ldd = sh("ldd " .. q(o .. "/host"))
      if static == "0" then
        assert.matches(prefix .. "/lib/libdlua.so", ldd, 1, true)
      else
        assert.is_nil(ldd:find("libdlua.so", 1, true))
      end
    end
    no_children_left(tmp)
  end)
end)

-- `dlua kernel`: the Jupyter kernel, driven by Debian's jupyter_client
-- (python3-jupyter-client) as a notebook drives it.  Each scenario of
-- tests/helpers/kernel_drive.py starts a real kernel process from the
-- kernelspec that `dlua kernel install --prefix` wrote, talks to it over
-- ZeroMQ, and checks the answers; this spec checks that each scenario
-- passed, and the command's own errors.

local DLUA = assert(os.getenv("DLUA"), "DLUA must name the dlua binary")
local PY = "/usr/bin/python3" -- Debian's, where python3-jupyter-client is

local F = require "helpers.files"
local q, slurp, tmpdir = F.q, F.slurp, F.tmpdir

-- Run a shell command line; returns exit status, stdout, stderr.
local function sh(cmdline)
  local out, err = os.tmpname(), os.tmpname()
  local p = assert(io.popen(("(%s) </dev/null >%s 2>%s; echo $?"):format(
    cmdline, q(out), q(err))))
  local code = tonumber(p:read("a"):match("%d+"))
  p:close()
  local o, e = slurp(out), slurp(err)
  os.remove(out); os.remove(err)
  return code, o, e
end

local PREFIX = tmpdir()
local SPEC_DIR = PREFIX .. "/share/jupyter/kernels/dlua"

describe("dlua kernel", function()
  teardown(function() sh("rm -rf " .. q(PREFIX)) end)

  it("install --prefix writes kernel.json and the logos", function()
    local code, out, err = sh(q(DLUA) .. " kernel install --prefix "
      .. q(PREFIX))
    assert.equal(0, code, err)
    assert.matches("wrote " .. SPEC_DIR:gsub("%p", "%%%0"), out)
    local spec = slurp(SPEC_DIR .. "/kernel.json")
    assert.truthy(spec)
    assert.matches('"display_name":%s*"dlua %(Lua 5%.4%)"', spec)
    assert.matches('"kernel",%s*"%-f",%s*"{connection_file}"', spec)
    assert.matches('"interrupt_mode":%s*"message"', spec)
    assert.equal("\137PNG", slurp(SPEC_DIR .. "/logo-64x64.png"):sub(1, 4))
    assert.equal("\137PNG", slurp(SPEC_DIR .. "/logo-32x32.png"):sub(1, 4))
    assert.matches("<svg", slurp(SPEC_DIR .. "/logo-svg.svg"))
  end)

  it("install --user writes under $JUPYTER_DATA_DIR", function()
    local d = tmpdir()
    local code, _, err = sh("JUPYTER_DATA_DIR=" .. q(d) .. " " .. q(DLUA)
      .. " kernel install --user")
    assert.equal(0, code, err)
    assert.truthy(slurp(d .. "/kernels/dlua/kernel.json"))
    sh("rm -rf " .. q(d))
  end)

  it("install rejects bad arguments with a usage line", function()
    local code, _, err = sh(q(DLUA) .. " kernel install --bogus")
    assert.equal(1, code)
    assert.matches("unknown argument '%-%-bogus'", err)
    assert.matches("usage: dlua kernel install", err)
    code, _, err = sh(q(DLUA) .. " kernel install --prefix")
    assert.equal(1, code)
    assert.matches("missing directory after '%-%-prefix'", err)
    code, _, err = sh(q(DLUA) .. " kernel install --user --prefix /x")
    assert.equal(1, code)
    assert.matches("exclude each other", err)
  end)

  it("without a connection file says how it is run", function()
    local code, _, err = sh(q(DLUA) .. " kernel")
    assert.equal(1, code)
    assert.matches("no connection file", err)
    code, _, err = sh(q(DLUA) .. " kernel -f " .. q(PREFIX .. "/none.json"))
    assert.equal(1, code)
    assert.matches("cannot open connection file '.*none%.json': No such "
      .. "file", err)
  end)

  it("rejects a malformed connection file", function()
    local path = PREFIX .. "/bad.json"
    local cases = {
      ["{"] = "not a JSON object",
      ['{"ip":"127.0.0.1"}'] = "'shell_port' missing",
      ['{"ip":"127.0.0.1","shell_port":1,"iopub_port":2,"stdin_port":3,'
        .. '"control_port":4,"hb_port":99999}'] = "'hb_port' missing or not",
      ['{"ip":"127.0.0.1","shell_port":1,"iopub_port":2,"stdin_port":3,'
        .. '"control_port":4,"hb_port":5,"key":"k",'
        .. '"signature_scheme":"hmac-md5"}'] = "unknown signature_scheme",
      ['{"transport":"udp","ip":"x"}'] = "unknown transport",
    }
    for text, want in pairs(cases) do
      local f = assert(io.open(path, "w"))
      f:write(text)
      f:close()
      local code, _, err = sh(q(DLUA) .. " kernel -f " .. q(path))
      assert.equal(1, code, text)
      assert.matches("bad connection file", err, 1, true)
      assert.matches(want, err, 1, true)
    end
  end)

  it("reports a port in use and exits 1", function()
    -- Hold a port with a listening socket, then ask the kernel for it.
    local path = PREFIX .. "/busy.json"
    local code, out, err = sh(PY .. [==[ -c '
import json, socket, subprocess, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
free = []
for _ in range(4):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); free.append(t)
ports = [s.getsockname()[1]] + [t.getsockname()[1] for t in free]
for t in free: t.close()
names = ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"]
conf = dict(zip(names, ports), ip="127.0.0.1", transport="tcp", key="k",
            signature_scheme="hmac-sha256")
json.dump(conf, open(sys.argv[1], "w"))
r = subprocess.run([sys.argv[2], "kernel", "-f", sys.argv[1]],
                   capture_output=True, text=True, timeout=30)
print(r.returncode); print(r.stderr, end="")
' ]==] .. q(path) .. " " .. q(DLUA))
    assert.equal(0, code, err)
    assert.matches("^1\n", out)
    assert.matches("cannot bind tcp://127%.0%.0%.1:%d+: Address already in "
      .. "use", out)
  end)

  it("ends when the process that started it is gone", function()
    -- A shell starts the kernel in the background and exits at once: the
    -- kernel must not stay behind serving nobody.
    local path = PREFIX .. "/orphan.json"
    local f = assert(io.open(path, "w"))
    f:write('{"ip":"127.0.0.1","transport":"tcp","key":"k",'
      .. '"signature_scheme":"hmac-sha256","shell_port":0,"iopub_port":0,'
      .. '"stdin_port":0,"control_port":0,"hb_port":0}')
    f:close()
    -- Free ports, picked by Python, written into the file.
    local code, _, err = sh(PY .. [==[ -c '
import json, socket, sys
c = json.load(open(sys.argv[1]))
socks = []
for k in ["shell_port", "iopub_port", "stdin_port", "control_port",
          "hb_port"]:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
    c[k] = s.getsockname()[1]
for s in socks: s.close()
json.dump(c, open(sys.argv[1], "w"))
' ]==] .. q(path))
    assert.equal(0, code, err)
    local pidfile = PREFIX .. "/orphan.pid"
    -- (JPY_PARENT_PID names the parent, as jupyter_client does.)
    code, _, err = sh("sh -c " .. q("JPY_PARENT_PID=$$ " .. q(DLUA)
      .. " kernel -f " .. q(path)
      .. " >/dev/null 2>&1 & echo $! > " .. q(pidfile)))
    assert.equal(0, code, err)
    local pid = assert(tonumber(slurp(pidfile)))
    local gone = false
    for _ = 1, 300 do -- up to 30 s
      -- Gone: no such process, or a zombie nobody has reaped yet.
      local state = slurp("/proc/" .. pid .. "/stat")
      if not state or state:match("^%d+ %b() (%a)") == "Z" then
        gone = true
        break
      end
      sh("sleep 0.1")
    end
    if not gone then sh("kill " .. pid) end
    assert.is_true(gone, "the kernel outlived its parent")
  end)

  -- The scenarios of tests/helpers/kernel_drive.py, one kernel each.
  local scenarios = {
    {"basic", "kernel_info; execute shows values as the REPL; print and "
      .. "stderr stream; an error is an error reply with a traceback and "
      .. "the kernel lives on; silent runs are not counted"},
    {"complete", "complete (globals, fields, methods), inspect (signature "
      .. "and doc comment), is_complete (the REPL's rule)"},
    {"stdin", "io.read asks the notebook through the stdin channel; "
      .. "refused when allow_stdin is false"},
    {"interrupt", "interrupt_request stops an endless loop; the kernel "
      .. "lives on"},
    {"queue", "execute requests sent together run in order, output in "
      .. "order"},
    {"signature", "badly signed and malformed messages are dropped and "
      .. "logged, never executed"},
    {"display", "__html/__svg/__png, display ids updated in place, "
      .. "visualize() as SVG, errors at the caller's line"},
    {"cluster", "a cluster in the kernel: task output in the cell, client "
      .. "and future as HTML; shutdown leaves no worker"},
    {"killed", "a killed kernel leaves no worker"},
  }
  for _, s in ipairs(scenarios) do
    it(s[1] .. ": " .. s[2], function()
      local log = os.tmpname()
      local code, out, err = sh("JUPYTER_PATH=" .. q(PREFIX
        .. "/share/jupyter") .. " KERNEL_LOG=" .. q(log) .. " timeout 180 "
        .. PY .. " tests/helpers/kernel_drive.py " .. s[1])
      local klog = slurp(log) or ""
      os.remove(log)
      assert.equal(0, code, (err or "") .. "\nkernel log:\n" .. klog)
      assert.equal("ok " .. s[1] .. "\n", out)
    end)
  end
end)

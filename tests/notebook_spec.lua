-- examples/dask-lecture.ipynb, run headless by Debian's nbclient on the
-- dlua kernel (installed from this build into a temporary prefix); each
-- code cell's outputs are checked by tests/helpers/run_notebook.py: the
-- client and cluster as HTML tables with the dashboard link, the graph as
-- SVG, a future's status, the Monte Carlo estimate of pi with its progress
-- bar, and results larger than the cluster's memory spilled to disk.

local DLUA = assert(os.getenv("DLUA"), "DLUA must name the dlua binary")

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\""))
  local out = p:read("a")
  p:close()
  local body, rc = out:match("^(.-)rc=(%d+)%s*$")
  return tonumber(rc), body
end

describe("examples/dask-lecture.ipynb", function()
  it("runs headless with nbclient, every cell's output as expected",
     function()
    local p = assert(io.popen("mktemp -d"))
    local prefix = p:read("l")
    p:close() -- not left open: later clusters' workers would inherit it
    local rc, out = sh(q(DLUA) .. " kernel install --prefix " .. q(prefix))
    assert.equal(0, rc, out)
    rc, out = sh("JUPYTER_PATH=" .. q(prefix .. "/share/jupyter")
      .. " timeout 300 /usr/bin/python3 tests/helpers/run_notebook.py "
      .. "examples/dask-lecture.ipynb")
    sh("rm -rf " .. q(prefix))
    assert.equal(0, rc, out)
    assert.matches("ok 13 cells\n$", out)
  end)
end)

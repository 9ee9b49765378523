-- `dlua run script.lua` under a real `mpirun -n N` (Debian's OpenMPI; no
-- MPI library is linked: the rank comes from OMPI_COMM_WORLD_RANK): rank
-- 0 is the scheduler, rank 1 the script, the rest workers, the address
-- handed over through a scheduler file.  Every process a test starts
-- carries a mark in its environment and is stopped in `finally`.
local BUSTED_ENV = _ENV
local describe, it, assert, pending = describe, it, assert, pending
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local H = require "helpers.cluster"
local L = require "helpers.launch"

math.randomseed(os.time(), H.self_pid())

local function can_mpirun()
  return L.have("mpirun")
end

-- mpirun as root, more ranks than cores; bounded by `timeout` (a hang is
-- a failure, not a stuck suite).
local function mpirun(tag, dir, n, args)
  return H.sh(("cd %s && DLUA_SPEC_TAG=%s timeout -k 5 120 mpirun "
               .. "--allow-run-as-root --oversubscribe -n %d %s run %s")
              :format(H.q(dir), tag, n, H.q(H.DLUA), args))
end

local function script(dir, body)
  H.spit(dir .. "/s.lua", body)
  return "s.lua"
end

describe("dlua run under mpirun", function()
  it("rank 0 schedules, rank 1 runs the script, the rest work; all exit",
     function()
    if not can_mpirun() then pending("needs mpirun (openmpi-bin)") return end
    local dir = H.token_dir("unused")
    local tag = L.tag()
    finally(function()
      L.stop_marked(tag)
      H.rmdir(dir)
    end)
    script(dir, [[
      local dlua = require "dlua"
      local c = dlua.Client()             -- the job's scheduler
      c:wait_for_workers(2, 60)
      local sq = c:gather(c:map(function(x) return x * x end, {1, 2, 3, 4}))
      local info = c:scheduler_info()
      local pids = {}
      for _, w in ipairs(info.workers) do pids[#pids + 1] = w.pid end
      local where = c:gather(c:map(function() return require("dlua.cluster")
                                   .pid() end, {1, 2, 3, 4, 5, 6}))
      local on = {}
      for _, p in ipairs(pids) do on[p] = true end
      local all_on_workers = true
      for _, p in ipairs(where) do all_on_workers = all_on_workers and on[p] end
      -- The 4 ranks share this host: each worker's limit is a quarter of
      -- its memory, not the whole of it.
      local f = assert(io.open("/proc/meminfo"))
      local host = tonumber(f:read("a"):match("MemTotal:%s*(%d+) kB")) * 1024
      f:close()
      local share = true
      for _, w in ipairs(info.workers) do
        share = share and math.abs(w.memory_limit - host / 4) < host / 100
      end
      print(("sq=%s workers=%d remote=%s args=%s,%s on_workers=%s share=%s")
        :format(table.concat(sq, ","), #info.workers,
        tostring(tostring(c):match("RemoteCluster") ~= nil), arg[1], arg[2],
        tostring(all_on_workers), tostring(share)))
      io.stdout:flush()
    ]])
    local code, out = mpirun(tag, dir, 4, "s.lua one two")
    assert.equals(0, code, out)
    assert.matches("sq=1,4,9,16 workers=2 remote=true args=one,two "
                   .. "on_workers=true share=true", out, 1, true)
    assert.matches("listening at tcp://", out, 1, true)
    -- Every rank exited with the script: nothing of the job is left, and
    -- the job's scheduler file and token went with it.
    assert.same({}, L.marked(tag))
    local p = io.popen("ls " .. H.q(dir))
    local left = p:read("a")
    p:close()
    assert.is_nil(left:match("dlua%-run%-"), "left in the directory: " .. left)
  end)

  it("--nworkers and --scheduler-file; a failing script fails the job "
     .. "and still stops the cluster", function()
    if not can_mpirun() then pending("needs mpirun (openmpi-bin)") return end
    local dir = H.token_dir("unused")
    local tag = L.tag()
    finally(function()
      L.stop_marked(tag)
      H.rmdir(dir)
    end)
    script(dir, [[
      local dlua = require "dlua"
      local c = dlua.Client()
      c:wait_for_workers(2, 60)             -- two processes on one rank
      print("workers=" .. #c:scheduler_info().workers)
      io.stdout:flush()
      error("the script's own failure")
    ]])
    local code, out = mpirun(tag, dir, 3, "--nworkers 2 --scheduler-file "
                             .. H.q(dir .. "/job.json") .. " s.lua")
    assert.not_equals(0, code, out)
    assert.matches("workers=2", out, 1, true)
    assert.matches("the script's own failure", out, 1, true)
    assert.matches("the client asked the cluster to shut down", out, 1, true)
    assert.same({}, L.marked(tag))
    assert.is_nil(H.slurp(dir .. "/job.json"), "the scheduler file is left")
    assert.is_nil(H.slurp(dir .. "/job.json.token"), "the token is left")
  end)

  it("--tls-dir: rank 0 makes the job's CA, every rank speaks TLS, and "
     .. "the CA goes with the job", function()
    if not can_mpirun() then pending("needs mpirun (openmpi-bin)") return end
    local dir = H.token_dir("unused")
    local tag = L.tag()
    finally(function()
      L.stop_marked(tag)
      H.rmdir(dir)
    end)
    script(dir, [[
      local dlua = require "dlua"
      local c = dlua.Client()             -- TLS, from the scheduler file
      c:wait_for_workers(1, 60)
      local sq = c:gather(c:map(function(x) return x * x end, {1, 2, 3}))
      local sf = require("dlua.cluster").read_scheduler_file(
        os.getenv("DLUA_SCHEDULER_FILE"))
      -- The scheduler speaks only TLS: a client without it is refused.
      local ok, err = pcall(dlua.Client, {address = sf.address,
        token_file = os.getenv("DLUA_TOKEN_FILE")})
      print(("sq=%s tls_dir=%s plain=%s"):format(table.concat(sq, ","),
        tostring(sf.tls_dir):match("[^/]*$"),
        ok and "joined" or tostring(err):match("the scheduler uses TLS")))
      io.stdout:flush()
    ]])
    local code, out = mpirun(tag, dir, 3, "--tls-dir job-tls s.lua")
    assert.equals(0, code, out)
    assert.matches("sq=1,4,9 tls_dir=job-tls plain=the scheduler uses TLS",
                   out, 1, true)
    assert.same({}, L.marked(tag))
    assert.is_nil(H.slurp(dir .. "/job-tls/ca.pem"), "the job's CA is left")
    -- A directory of one's own stays.
    assert.equals(0, (H.sh("$DLUA tls-gen " .. H.q(dir .. "/mine"))))
    code, out = mpirun(tag, dir, 3, "--tls-dir mine s.lua")
    assert.equals(0, code, out)
    assert.matches("tls_dir=mine plain=the scheduler uses TLS", out, 1, true)
    assert.truthy(H.slurp(dir .. "/mine/ca.pem"))
  end)

  it("refuses to run without a launcher, with too few ranks, without a "
     .. "script", function()
    local code, out = H.sh("env -u OMPI_COMM_WORLD_RANK -u PMI_RANK "
                           .. "-u SLURM_PROCID $DLUA run s.lua")
    assert.equals(2, code)
    assert.matches("dlua run: no rank in the environment", out, 1, true)
    code, out = H.sh("OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 "
                     .. "$DLUA run --scheduler-file x.json s.lua")
    assert.equals(2, code)
    assert.matches("the job has 2 ranks; it needs at least 3", out, 1, true)
    code, out = H.sh("$DLUA run --scheduler-file x.json")
    assert.equals(2, code)
    assert.matches("dlua run: no script to run", out, 1, true)
    code, out = H.sh("PMI_RANK=2 PMI_SIZE=4 $DLUA run s.lua")
    assert.equals(2, code)
    assert.matches("give --scheduler-file", out, 1, true)
    code, out = H.sh("$DLUA run --bogus 1 s.lua")
    assert.equals(2, code)
    assert.matches("unknown option '--bogus'", out, 1, true)
  end)
end)

-- `dlua run script.lua` under a real one-node Slurm: scripts/slurm-local
-- starts munged, slurmctld and slurmd in a private directory, the test
-- runs `srun -n 4 dlua run` and a batch script through `sbatch`, and
-- `finally` stops every job process and every daemon, even when an
-- assertion fails.
local BUSTED_ENV = _ENV
local describe, it, assert, pending = describe, it, assert, pending
local function finally(fn) return BUSTED_ENV.finally(fn) end
local _ENV = _G

local H = require "helpers.cluster"
local L = require "helpers.launch"

math.randomseed(os.time(), H.self_pid())

local SLURM_LOCAL = H.TESTS .. "/../scripts/slurm-local"

local function can_slurm()
  return H.slurp("/proc/self/status"):match("\nUid:%s+0%s") ~= nil
     and L.have("slurmctld") and L.have("slurmd") and L.have("srun")
     and L.have("munged")
end

describe("dlua run under Slurm", function()
  it("srun -n 4 and an sbatch script: scheduler, script and workers; "
     .. "every rank exits", function()
    if not can_slurm() then
      pending("needs root, slurmctld, slurmd, slurm-client and munge")
      return
    end
    local dir = H.token_dir("unused")
    local sl = dir .. "/slurm"
    local tag = L.tag()
    finally(function()
      L.stop_marked(tag)
      os.execute(H.q(SLURM_LOCAL) .. " stop " .. H.q(sl))
      H.rmdir(dir)
    end)
    -- munged runs as `munge`: it must reach its directory inside.
    assert(os.execute("chmod 755 " .. H.q(dir)))
    local code, out = H.sh(H.q(SLURM_LOCAL) .. " start " .. H.q(sl))
    assert.equals(0, code, out)
    local env = ("cd %s && export SLURM_CONF=%s DLUA_SPEC_TAG=%s && ")
      :format(H.q(dir), H.q(sl .. "/slurm.conf"), tag)
    H.spit(dir .. "/s.lua", [[
      local dlua = require "dlua"
      local c = dlua.Client()
      c:wait_for_workers(2, 60)
      local sq = c:gather(c:map(function(x) return x * x end, {1, 2, 3, 4}))
      -- The 4 ranks share this node: a worker's limit is a quarter of it.
      local f = assert(io.open("/proc/meminfo"))
      local host = tonumber(f:read("a"):match("MemTotal:%s*(%d+) kB")) * 1024
      f:close()
      local share = true
      for _, w in ipairs(c:scheduler_info().workers) do
        share = share and math.abs(w.memory_limit - host / 4) < host / 100
      end
      print(("sq=%s workers=%d job=%s procid=%s share=%s"):format(
        table.concat(sq, ","), #c:scheduler_info().workers,
        os.getenv("SLURM_JOB_ID"), os.getenv("SLURM_PROCID"),
        tostring(share)))
      io.stdout:flush()
    ]])
    code, out = H.sh(env .. "timeout -k 5 120 srun -n 4 " .. H.q(H.DLUA)
                     .. " run s.lua")
    assert.equals(0, code, out)
    assert.matches("sq=1,4,9,16 workers=2 job=%d+ procid=1 share=true", out)
    assert.same({}, L.marked(tag))
    assert.is_nil(io.open(dir .. "/dlua-run-1.0.json"), "scheduler file left")

    -- The README's kind of batch script, through sbatch: --wait returns
    -- when the job has ended, with its status.
    H.spit(dir .. "/job.sh", ([[
#!/bin/sh
#SBATCH --ntasks=4
#SBATCH --output=%s
srun %s run s.lua
]]):format(dir .. "/job.out", H.DLUA))
    code, out = H.sh(env .. "timeout -k 5 120 sbatch --wait job.sh")
    assert.equals(0, code, out)
    local jout = H.slurp(dir .. "/job.out") or ""
    assert.matches("sq=1,4,9,16 workers=2 job=%d+ procid=1 share=true", jout)
    assert.same({}, L.marked(tag))
  end)
end)

-- Benchmark dlua.delayed: graph building, compiling and running.
--   build/dlua scripts/bench/bench_delayed.lua [N]
-- Prints "metric value unit" lines:
--   * N (default 100,000) delayed x+1 calls summed by a tree of fan-in 8:
--     build time, compute time (sync scheduler; also the cluster when
--     require("dlua").Client exists), tasks per second;
--   * a 2,000-task linear chain: per-task overhead, sync and cluster
--     (on the cluster the chain is fused into one task unless optimize is
--     off; both are reported).
local D = require "dlua.delayed"
local delayed, compute = D.delayed, D.compute
local ok_core, core = pcall(require, "dlua.core")
local clock = ok_core and core.time or os.clock

local N = tonumber(arg and arg[1]) or 100000
local CHAIN = 2000
local FANIN = 8

local function metric(name, value, unit)
  print(string.format("%s %.6g %s", name, value, unit))
end

local function inc(x) return x + 1 end
local function sum(...)
  local s = 0
  for i = 1, select("#", ...) do s = s + select(i, ...) end
  return s
end

local function build_tree()
  local dinc, dsum = delayed(inc), delayed(sum)
  local level = {}
  for i = 1, N do level[i] = dinc(i) end
  local ntasks = N
  while #level > 1 do
    local up = {}
    for i = 1, #level, FANIN do
      up[#up + 1] = dsum(table.unpack(level, i, math.min(i + FANIN - 1,
        #level)))
    end
    ntasks = ntasks + #up
    level = up
  end
  return level[1], ntasks
end

local expect = N * (N + 1) // 2 + N

local function tree_run(label, opts)
  collectgarbage()
  local t0 = clock()
  local root, ntasks = build_tree()
  local t1 = clock()
  local v = root:compute(opts)
  local t2 = clock()
  assert(v == expect, "wrong tree sum: " .. tostring(v))
  metric("delayed_tree_tasks", ntasks, "tasks")
  metric("delayed_tree_build_" .. label, t1 - t0, "s")
  metric("delayed_tree_compute_" .. label, t2 - t1, "s")
  metric("delayed_tree_rate_" .. label, ntasks / (t2 - t1), "tasks/s")
end

local function chain_run(label, opts)
  local d = delayed(0)
  for _ = 1, CHAIN do d = d + 1 end
  d:compute(opts)                   -- warm up (and start a cluster)
  d = delayed(0)
  for _ = 1, CHAIN do d = d + 1 end
  local t0 = clock()
  local v = d:compute(opts)
  local t1 = clock()
  assert(v == CHAIN, "wrong chain result")
  metric("delayed_chain_" .. label, (t1 - t0) / CHAIN * 1e6, "us/task")
end

tree_run("sync", {scheduler = "sync"})
chain_run("sync", {scheduler = "sync"})

local ok, dlua = pcall(require, "dlua")
if ok and dlua.Client and dlua.opts then
  tree_run("cluster", {scheduler = "cluster"})
  chain_run("cluster_fused", {scheduler = "cluster"})
  chain_run("cluster", {scheduler = "cluster", optimize = false})
else
  print("# no cluster in this build: cluster metrics skipped")
end

local client = ok and dlua.default_client and dlua.default_client()
if client then client:close() end

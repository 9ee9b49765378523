-- The "Delayed" part of the Dask lecture, in dlua.
--   build/dlua examples/delayed_lecture.lua
-- Uses the cluster when this build has one (require("dlua").Client), else
-- runs the graphs here with the sync scheduler.
local D = require "dlua.delayed"
local delayed, compute = D.delayed, D.compute

local ok, dlua = pcall(require, "dlua")
local opts
if ok and dlua.Client then
  opts = {scheduler = "cluster"}
  print("scheduler: cluster")
else
  opts = {scheduler = "sync"}
  print("scheduler: sync (no cluster in this build)")
end

-- Two slow-looking functions, as in the lecture.
local function inc(x) return x + 1 end
local function add(x, y) return x + y end

-- Wrapping the calls builds a task graph instead of running them.
local x = delayed(inc)(1)
local y = delayed(inc)(2)
local z = delayed(add)(x, y)
print("z is " .. tostring(z))
print("add(inc(1), inc(2)) = " .. z:compute(opts))

-- A loop of delayed calls, summed by one more delayed call.
local results = {}
for i = 0, 7 do results[#results + 1] = delayed(inc)(i) end
local function sum(t)
  local s = 0
  for _, v in ipairs(t) do s = s + v end
  return s
end
local total = delayed(sum)(results)
print("sum of inc(0..7) = " .. total:compute(opts))

-- dlua.compute runs several outputs in one graph; shared parts run once.
local data = {1, 2, 3, 4, 5, 6, 7, 8}
local incs = {}
for i, v in ipairs(data) do incs[i] = delayed(inc)(v) end
incs[#incs + 1] = opts
print("data = " .. table.concat({compute(table.unpack(incs))}, " "))

-- The graph, as Graphviz DOT (render with: dot -Tsvg lecture-graph.dot).
local file = "lecture-graph.dot"
local tmp = os.getenv("TMPDIR") or "/tmp"
local path = tmp .. "/" .. file
assert(z:visualize(path))
print("wrote " .. file .. " (in " .. tmp .. ")")
local g, n = z:graph(), 0
for _ in pairs(g) do n = n + 1 end
print("z's graph has " .. n .. " tasks")

-- compute() started a client when there was none; close it (and its
-- cluster) so the script ends.
local client = opts.scheduler == "cluster" and dlua.default_client()
if client then client:close() end

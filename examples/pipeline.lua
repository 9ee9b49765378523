-- The main demo: a local cluster, futures and a delayed pipeline.
--   build/dlua examples/pipeline.lua      (or: make demo)
local dlua = require "dlua"

-- A cluster of worker processes on this machine, one per core.
local client = dlua.Client()
print(client)
print()

-- Futures: submit work, results stay on the workers until asked for.
local function slow_square(x)
  local t = dlua.time() + 0.05          -- pretend this is real work
  while dlua.time() < t do end
  return x * x
end
local t0 = dlua.time()
local squares = client:map(slow_square, {1, 2, 3, 4, 5, 6, 7, 8})
-- A future as an argument is a dependency: the value moves worker to worker.
local total = client:submit(function(xs)
  local s = 0
  for _, v in ipairs(xs) do s = s + v end
  return s
end, squares)
print(("sum of squares 1..8 = %d  (%.2f s for 8 x 50 ms of work)"):format(
  total:result(), dlua.time() - t0))

-- Delayed: build a lazy task graph, then compute it on the cluster.
local delayed = dlua.delayed
local inc = delayed(function(x) return x + 1 end, {name = "inc"})
local add = delayed(function(a, b) return a + b end, {name = "add"})
local parts = {}
for i = 1, 10 do parts[i] = inc(i) end
local tree = parts
while #tree > 1 do                      -- a pairwise reduction tree
  local nxt = {}
  for i = 1, #tree, 2 do
    nxt[#nxt + 1] = tree[i + 1] and add(tree[i], tree[i + 1]) or tree[i]
  end
  tree = nxt
end
print(("delayed tree sum of inc(1..10) = %d"):format(tree[1]:compute()))

-- Errors come back with the remote traceback, and nothing else is lost.
local bad = client:submit(function() error("something went wrong") end)
local ok, err = pcall(bad.result, bad)
print("a failing task raises on the client:", ok,
      (tostring(err):match("[^\n]*")))

for _, w in ipairs(client:scheduler_info().workers) do
  print(("worker %d: pid %d, %s stored, %s memory"):format(
    w.id, w.pid, dlua.format_bytes(w.managed), dlua.format_bytes(w.rss)))
end
client:close()

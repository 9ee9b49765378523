-- A live progress bar: ~200 tasks of 10-30 ms each, then a second group
-- that sums them in pairs (and one that fails, shown in red).
--   build/dlua examples/progress.lua
-- Off a terminal (build/dlua examples/progress.lua 2>log) it prints one
-- summary line instead.
local dlua = require "dlua"
local client = dlua.Client()

local function work(i)                  -- 10-30 ms of pretend work
  local t = dlua.time() + 0.010 + (i * 7919 % 21) / 1000
  while dlua.time() < t do end
  return i * i
end

local function pair_sum(a, b)
  if a == 40 * 40 then error("unlucky pair") end
  return a + b
end

local items = {}
for i = 1, 200 do items[i] = i end
local squares = client:map(work, items)
-- Futures as arguments are dependencies: pair_sum runs as squares finish.
local odd, even = {}, {}
for i = 1, #squares, 2 do
  odd[#odd + 1], even[#even + 1] = squares[i], squares[i + 1]
end
local sums = client:map(pair_sum, even, odd)

dlua.progress({squares, sums})          -- blocks; failures do not raise

local total, failed = 0, 0
for _, f in ipairs(sums) do
  if f:status() == "finished" then total = total + f:result()
  else failed = failed + 1 end
end
print(("sum of squares (without the failed pair): %d, %d failed"):format(
  total, failed))

-- Delayed pipelines take the option directly.
local inc = dlua.delayed(function(x) return work(x) + 1 end, {name = "inc"})
local add = dlua.delayed(function(a, b) return a + b end, {name = "add"})
print("compute:", add(inc(1), inc(2)):compute{progress = true})
client:close()

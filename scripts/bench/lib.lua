-- Helpers shared by the dlua benchmarks (loaded with dofile next to them).
local lib = {}

--- Print one machine-readable line: `metric value unit` (as Dask's side).
function lib.emit(name, v, unit)
  if math.type(v) == "integer" then print(("%s %d %s"):format(name, v, unit))
  else print(("%s %.6g %s"):format(name, v, unit)) end
  io.stdout:flush()
end

--- The median of an array of numbers.
function lib.median(xs)
  local s = {table.unpack(xs)}
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

--- Sum of the arguments (the tree-sum task of the graph workloads).
function lib.sum(...)
  local s = 0
  for i = 1, select("#", ...) do s = s + select(i, ...) end
  return s
end

--- Wait (at most limit seconds) until the scheduler holds no task, so
-- one measurement does not pay for the clean-up of the one before.
function lib.wait_empty(client, limit)
  local now = require("dlua").time
  local t0 = now()
  while now() - t0 < limit do
    collectgarbage()
    local n = 0
    for _, v in pairs(client:scheduler_info().tasks) do n = n + v end
    if n == 0 then return end
    client:_pump(0.01)
  end
end

return lib

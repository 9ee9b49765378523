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

return lib

-- bench_g_transfer.lua -- (g) a 100 MB result consumed on the other worker.
-- Pairs with shared/bench/dask/bench_g_transfer.py: a task pinned to worker
-- A (dlua.opts{workers={a}}) makes a MB (100) MB string of random bytes;
-- once it is done, a task pinned to worker B returns its length.  The time
-- of that dependent task is dominated by the A -> B transfer.
--   transfer.tiny_dep_roundtrip_median (ms): the same with a 10-byte string
--   transfer.bytes_<MB>MB.time_median / time_min (s), .rate_median (MB/s)
-- (Dask also measures a numpy array; dlua has no array type: bytes only.)
-- On one machine worker B copies the producer's block straight out of
-- worker A (process_vm_readv, onto its own huge pages; a memfd that A
-- writes and B maps where that is refused), not over a socket: the rate
-- is of that copy, plus the task making its Lua string from the bytes.
-- After the first timed rep (untimed), a checksum over every byte taken
-- on B must equal the one taken on A: the value arrived whole.
--   build/dlua scripts/bench/bench_g_transfer.lua        (env MB, REPS)
local dlua = require "dlua"
local now = dlua.time
local MB = tonumber(os.getenv("MB")) or 100
local REPS = tonumber(os.getenv("REPS")) or 5

local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit, median = lib.emit, lib.median

-- nbytes of pseudo-random bytes (incompressible), 64 KiB pieces joined.
local function make_bytes(nbytes, seed)
  math.randomseed(seed)
  local r, pack = math.random, string.pack
  local piece = {}
  local chunk = 65536
  local parts = {}
  local left = nbytes
  while left > 0 do
    local n = math.min(chunk, left)
    for i = 1, (n + 7) // 8 do piece[i] = pack("<i8", r(0)) end
    for i = (n + 7) // 8 + 1, #piece do piece[i] = nil end
    parts[#parts + 1] = table.concat(piece):sub(1, n)
    left = left - n
  end
  return table.concat(parts)
end
local function size_of(x) return #x end
-- The length plus the sum of every 8-byte word (wrapping), 64 bytes a step.
local function digest(x)
  local n, p, s = #x, 1, #x
  local unpack = string.unpack
  while p + 63 <= n do
    local a, b, c, d, e, f, g, h = unpack("<i8i8i8i8i8i8i8i8", x, p)
    s = s + a + b + c + d + e + f + g + h
    p = p + 64
  end
  for q = p, n do s = s + x:byte(q) end
  return s
end

print("# dlua " .. dlua.version)
local client = dlua.Client{n_workers = 2}
local ws = client.cluster:workers()
table.sort(ws, function(p, q) return p.id < q.id end)
local a, b = ws[1].id, ws[2].id
local onA, onB = dlua.opts{workers = {a}}, dlua.opts{workers = {b}}

local function stored(id)
  for _, w in ipairs(client.cluster:workers()) do
    if w.id == id then return w.stored end
  end
end

do -- warm-up
  local small = client:submit(make_bytes, 10, 0, onA)
  dlua.wait(small)
  client:submit(size_of, small, onB):result()
end
local base = {}
for i = 1, REPS do
  local small = client:submit(make_bytes, 10, i, onA)
  dlua.wait(small)
  local t0 = now()
  assert(client:submit(size_of, small, onB):result() == 10)
  base[i] = now() - t0
  small:release()
end
emit("transfer.tiny_dep_roundtrip_median", median(base) * 1e3, "ms")

local nbytes = MB * 1000000
local ts = {}
for i = 1, REPS do
  local x = client:submit(make_bytes, nbytes, i, onA)
  dlua.wait(x)
  local b_before = stored(b)
  local t0 = now()
  local n = client:submit(size_of, x, onB):result()
  ts[i] = now() - t0
  assert(n == nbytes, n)
  if i == 1 then
    local on_b = client:submit(digest, x, onB):result()
    local on_a = client:submit(digest, x, onA):result()
    assert(on_b == on_a, ("value differs on B: checksum %d, on A %d")
                         :format(on_b, on_a))
  end
  print(("# rep %d: %.4fs; worker B stored %s -> %s keys"):format(
    i, ts[i], tostring(b_before), tostring(stored(b))))
  x:release()
  collectgarbage()
end
local med = median(ts)
emit(("transfer.bytes_%dMB.time_median"):format(MB), med, "s")
emit(("transfer.bytes_%dMB.time_min"):format(MB), math.min(table.unpack(ts)), "s")
emit(("transfer.bytes_%dMB.rate_median"):format(MB), MB / med, "MB/s")
client:close()

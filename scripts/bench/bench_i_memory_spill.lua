-- (i) memory_spill: results larger than the cluster's memory.
-- Pairs with Dask's bench_i_memory_spill.py: 2 workers with
-- memory_limit=300MB, 40 tasks each returning a ~20 MB incompressible
-- string, all held as futures (~800 MB > 600 MB of worker memory); then the
-- lengths are summed where each string lives.  Also, in the same run, the
-- baseline the issue compares against: writing the same bytes to a file on
-- the same disk and reading them back.
-- Then the README's example, 3 GB on 2 x 512 MiB workers (env EXAMPLE_MB;
-- 0 skips it), against the same bytes written and read back.
--   build/dlua scripts/bench/bench_i_memory_spill.lua
local dlua = require "dlua"
local now = dlua.time

local NOBJ = tonumber(os.getenv("NOBJ")) or 40
local OBJ_MB = tonumber(os.getenv("OBJ_MB")) or 20
local MEMLIM = os.getenv("MEMLIM") or "300MB"

local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit = lib.emit

-- nbytes made from 64 KB of random bytes from a seed, repeated: making
-- them costs about a memory copy, as Dask's randbytes does in C, so the
-- run measures moving bytes rather than a Lua random number loop.
local function make_blob(seed, nbytes)
  math.randomseed(seed)
  local r, pack = math.random, string.pack
  local piece = {}
  for i = 1, 1000 do piece[i] = pack("<i8", r(0)) end
  local chunk = table.concat(piece) -- 8000 bytes
  return chunk:rep(nbytes // #chunk) .. chunk:sub(1, nbytes % #chunk)
end
local function size_of(x) return #x end

print("# dlua " .. dlua.version)
local client = dlua.Client{n_workers = 2, memory_limit = MEMLIM}
local nbytes = OBJ_MB * 1000 * 1000
local seeds, sizes = {}, {}
for i = 1, NOBJ do seeds[i], sizes[i] = i, nbytes end

local t0 = now()
local blobs = client:map(make_blob, seeds, sizes)
dlua.wait(blobs, {timeout = 240})
local t1 = now()
local lens = client:gather(client:map(size_of, blobs), 240)
local t2 = now()
local total = 0
for _, n in ipairs(lens) do total = total + n end
local spilled, peak = 0, 0
for _, w in ipairs(client:scheduler_info().workers) do
  spilled = spilled + w.spilled
  if w.rss > peak then peak = w.rss end
end
local spawned, died = client.handle:stats()
emit("memory_spill.produce_wall", t1 - t0, "s")
emit("memory_spill.sum_lengths_wall", t2 - t1, "s")
emit("memory_spill.total_wall", t2 - t0, "s")
emit("memory_spill.spilled_bytes_at_end", spilled, "B")
emit("memory_spill.worker_peak_rss_max", peak, "B")
emit("memory_spill.worker_restarted", died > 0 and 1 or 0, "bool")
emit("memory_spill.completed", total == NOBJ * nbytes and 1 or 0, "bool")
client:close()

-- Baseline: the same bytes written to a file and read back, one object
-- at a time, in the same temporary directory the workers spill to.
local dir = os.getenv("TMPDIR") or "/tmp"
local path = dir .. "/dlua-bench-i-" .. tostring(os.time())
local blob = make_blob(1, nbytes)
local b0 = now()
local f = assert(io.open(path, "wb"))
for _ = 1, NOBJ do f:write(blob) end
f:close()
local b1 = now()
f = assert(io.open(path, "rb"))
local got = 0
while true do
  local s = f:read(nbytes)
  if not s then break end
  got = got + #s
end
f:close()
local b2 = now()
os.remove(path)
emit("memory_spill.disk_write_read_wall", b2 - b0, "s")
emit("memory_spill.ratio_to_disk", (t2 - t0) / (b2 - b0), "x")
assert(got == NOBJ * nbytes)

-- The README's example (examples/larger_than_memory.lua: EXAMPLE_MB of
-- results on 2 x 512 MiB workers) against writing and reading as many
-- bytes in blocks of the same size.
local EXAMPLE_MB = tonumber(os.getenv("EXAMPLE_MB")) or 3000
if EXAMPLE_MB > 0 then
  local root = (arg[0]:match("^(.*/)") or "./") .. "../../"
  local p = assert(io.popen(("%q %q %d 512 2>&1"):format(arg[-1],
    root .. "examples/larger_than_memory.lua", EXAMPLE_MB)))
  local out = p:read("a")
  p:close()
  local mb, secs = out:match("(%d+) MB of results on 2 x 512 MB workers: "
                             .. "all correct in ([%d.]+) s")
  assert(mb, "the example failed:\n" .. out)
  local block = make_blob(2, 20 * 1048576)
  local n = math.tointeger(mb) // 20
  local e0 = now()
  f = assert(io.open(path, "wb"))
  for _ = 1, n do f:write(block) end
  f:close()
  f = assert(io.open(path, "rb"))
  while f:read(#block) do end
  f:close()
  local disk = now() - e0
  os.remove(path)
  emit("memory_spill.example_wall", tonumber(secs), "s")
  emit("memory_spill.example_disk_write_read_wall", disk, "s")
  emit("memory_spill.example_ratio_to_disk", tonumber(secs) / disk, "x")
end

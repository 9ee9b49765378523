-- Larger than memory: a pipeline whose results add up to several times the
-- cluster's memory limit completes, because workers spill the least
-- recently used results to disk and read them back when needed.
--
--   build/dlua examples/larger_than_memory.lua [total_MB] [worker_MB]
--
-- Defaults: 3000 MB of results on 2 workers limited to 512 MB each.
local dlua = require "dlua"

local total_mb = tonumber(arg and arg[1]) or 3000
local worker_mb = tonumber(arg and arg[2]) or 512
-- Blocks are about 1/25 of a worker's limit (20 MB for 512 MB workers).
local chunk_mb = math.max(1, worker_mb // 25)
local nchunks = total_mb // chunk_mb

local client = dlua.Client{n_workers = 2, memory_limit = worker_mb .. "MiB"}
print(client)

-- Each task makes a block of bytes that depend on its index.
local function make_block(i, mb)
  local piece = string.char(i % 256):rep(1024)
  return piece:rep(mb * 1024)
end

-- A checksum over every byte of a block: its length plus the sum of its
-- 8-byte words (wrapping), read 64 bytes at a time.
local function checksum(block)
  local n, p, s = #block, 1, #block
  local unpack = string.unpack
  while p + 63 <= n do
    local a, b, c, d, e, f, g, h = unpack("<i8i8i8i8i8i8i8i8", block, p)
    s = s + a + b + c + d + e + f + g + h
    p = p + 64
  end
  for q = p, n do s = s + block:byte(q) end
  return s
end

local t0 = dlua.time()
local blocks = client:map(make_block, (function()
  local t = {}
  for i = 1, nchunks do t[i] = i end
  return t
end)(), (function()
  local t = {}
  for i = 1, nchunks do t[i] = chunk_mb end
  return t
end)())
-- Keep every block alive (as futures) while checksums are computed.
local sums = client:map(checksum, blocks)
local got = client:gather(sums)
local elapsed = dlua.time() - t0

local ok = true
for i = 1, nchunks do
  -- every 8-byte word of block i is the byte i % 256 eight times
  local want = chunk_mb * 1048576
               + chunk_mb * 131072 * ((i % 256) * 0x0101010101010101)
  if got[i] ~= want then ok = false end
end
local spilled = 0
for _, w in ipairs(client:scheduler_info().workers) do
  spilled = spilled + w.spilled
end
print(string.format("%d MB of results on %d x %d MB workers: %s in %.2f s "
                    .. "(%d MB spilled now)", nchunks * chunk_mb, 2, worker_mb,
                    ok and "all correct" or "WRONG", elapsed,
                    spilled // 1048576))
client:close()
if not ok then os.exit(1) end

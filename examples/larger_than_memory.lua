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

-- Check every byte of a block: each 64 KiB must be the block's byte 65536
-- times (plain string.find at that place: a memcmp, no copy).  Its length
-- if right, else -1.
local function check(block, i, mb)
  local piece = string.char(i % 256):rep(65536)
  if #block ~= mb * 1048576 then return -1 end
  for p = 1, #block, 65536 do
    if block:find(piece, p, true) ~= p then return -1 end
  end
  return #block
end

local idx, mbs = {}, {}
for i = 1, nchunks do idx[i], mbs[i] = i, chunk_mb end

local t0 = dlua.time()
local blocks = client:map(make_block, idx, mbs)
-- Keep every block alive (as futures) while they are checked.
local sums = client:map(check, blocks, idx, mbs)
local got = client:gather(sums)
local elapsed = dlua.time() - t0

local ok = true
for i = 1, nchunks do
  if got[i] ~= chunk_mb * 1048576 then ok = false end
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

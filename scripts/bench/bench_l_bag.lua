-- bench_l_bag.lua -- (l) bag: word frequencies + top 10 over FILES (8)
-- generated text files (~70 MB at MB=100), the same files as Dask's
-- shared/bench/dask/bench_l_bag.py: they are made by that script's own
-- make_files (NumPy, seed 42), so both sides count the same words.
--   bag.wordfreq.wall         read_text -> .str:split() -> flatten ->
--                             frequencies -> topk(10), best of 2, on the
--                             2-worker cluster (Dask: bag.wordfreq.dask_wall)
--   bag.wordfreq.foldby_wall  the same count through foldby (reference)
--   bag.wordfreq.serial_lua_wall  a plain gmatch loop in this process
--   bag.wordfreq.input_MB, bag.wordfreq.MB_per_s
--   build/dlua scripts/bench/bench_l_bag.lua   (env FILES, MB; QUICK=1 in
--                                              run-all sets MB=10)
local dlua = require "dlua"
local bag = require "dlua.bag"
local now = dlua.time

local here = arg[0]:match("^(.*/)") or "./"
local lib = dofile(here .. "lib.lua")
local emit = lib.emit

local FILES = tonumber(os.getenv("FILES")) or 8
local MB = tonumber(os.getenv("MB")) or 100
local PY = os.getenv("PYTHON") or "/usr/bin/python3"
local DASK_DIR = os.getenv("DLUA_DASK_BENCH") or (here .. "../../../shared/bench/dask")

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Make the files with Dask's own generator (NumPy, fixed seed).
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. q(dir)))
-- Without Python, NumPy or Dask's scripts (a CI machine without --bench):
-- the same shape of files from Lua (Zipf over 50,000 words, 12 a line,
-- seed 42), not the same words: no Dask figure to compare with then.
local function lua_files()
  local vocab, cum, total = {}, {}, 0
  for i = 1, 50000 do
    vocab[i] = "w" .. (i - 1)
    total = total + 1 / i
    cum[i] = total
  end
  math.randomseed(42)
  local per = MB * 1024 * 1024 // FILES
  local nwords = per // 7 // 12 * 12
  for fi = 0, FILES - 1 do
    local f = assert(io.open(("%s/text-%02d.txt"):format(dir, fi), "wb"))
    local line = {}
    for k = 1, nwords do
      local u = math.random() * total
      local lo, hi = 1, 50000
      while lo < hi do
        local mid = (lo + hi) // 2
        if cum[mid] < u then lo = mid + 1 else hi = mid end
      end
      line[#line + 1] = vocab[lo]
      if k % 12 == 0 then
        f:write(table.concat(line, " "), "\n")
        line = {}
      end
    end
    f:close()
  end
end

local t0 = now()
local cmd = ("cd %s 2>/dev/null && FILES=%d MB=%d %s -c %s 2>/dev/null"):format(
  q(DASK_DIR), FILES, MB, PY,
  q(("import bench_l_bag as b; b.make_files(%q)"):format(dir)))
local generator = "Dask's make_files"
if not os.execute(cmd) then
  generator = "the Lua stand-in (no Python/NumPy or Dask's scripts: "
    .. "not Dask's words)"
  lua_files()
end
local paths = require("dlua.bagio").glob(dir .. "/text-*.txt")
assert(#paths == FILES, "expected " .. FILES .. " files")
local size = 0
for _, p in ipairs(paths) do
  local f = assert(io.open(p, "rb"))
  size = size + f:seek("end")
  f:close()
end
print(("# dlua %s; made %d files, %.0f MB, in %.1f s, with %s"):format(
  dlua.version, FILES, size / 1e6, now() - t0, generator))

-- Serial reference: one process, a gmatch loop.
t0 = now()
local counts = {}
for _, p in ipairs(paths) do
  local f = assert(io.open(p, "rb"))
  for line in f:lines() do
    for w in line:gmatch("%S+") do counts[w] = (counts[w] or 0) + 1 end
  end
  f:close()
end
local t_serial = now() - t0

local function second(kv) return kv[2] end
local client = dlua.Client{n_workers = 2}
local best, top = math.huge, nil
for _ = 1, 2 do
  t0 = now()
  top = bag.read_text(dir .. "/text-*.txt", {blocksize = "16MiB"})
    .str:split():flatten():frequencies():topk(10, second):compute()
  local t = now() - t0
  if t < best then best = t end
end
-- same top 10 as the serial loop
assert(#top == 10)
for _, kv in ipairs(top) do
  assert(counts[kv[1]] == kv[2], "count of " .. kv[1] .. " differs")
end
local t_fold = math.huge
do
  local function add(a, b) return a + b end
  local function inc(a) return a + 1 end
  local function id(w) return w end
  t0 = now()
  local ft = bag.read_text(dir .. "/text-*.txt", {blocksize = "16MiB"})
    .str:split():flatten():foldby(id, inc, 0, add, 0):topk(10, second)
    :compute()
  t_fold = now() - t0
  for i, kv in ipairs(ft) do assert(kv[2] == top[i][2]) end
end
client:close()
os.execute("rm -rf " .. q(dir))

emit("bag.wordfreq.wall", best, "s")
emit("bag.wordfreq.foldby_wall", t_fold, "s")
emit("bag.wordfreq.serial_lua_wall", t_serial, "s")
emit("bag.wordfreq.input_MB", size / 1e6, "MB")
emit("bag.wordfreq.MB_per_s", size / 1e6 / best, "MB/s")

-- bench_m_dataframe.lua -- (m) dataframe: FILES (8) CSV files of ROWS
-- (4 M) rows in all, columns id:int, key:string of 1,000 values "k0".."k999",
-- x:float in [0, 1), y:float (normal), the shape of Dask's
-- shared/bench/dask/bench_m_dataframe.py; read_csv -> groupby(key) ->
-- mean of x, sum of y.
--   dataframe.groupby.wall         dlua.dataframe on the 2-worker cluster,
--                                  blocks of BLOCK (64MiB), best of 2
--                                  (Dask: dataframe.groupby.dask_wall)
--   dataframe.groupby.frame_wall   dlua.frame in this process (as pandas:
--                                  dataframe.groupby.pandas_wall)
--   dataframe.groupby.MB_per_s, dataframe.read.MB_per_s_per_worker
--   dataframe.groupby.maxdiff      cluster vs in-process results (<= 1e-9)
--   dataframe.merge.wall           the files merged on key with a 1,000-row
--                                  frame (key, w), rows counted, best of 2
--   dataframe.sort.wall            sort_values("x") through the workers,
--                                  rows counted, best of 2
--   (Dask's side of merge and sort: scripts/bench/bench_m_shuffle.py)
--   build/dlua scripts/bench/bench_m_dataframe.lua  (env FILES, ROWS, BLOCK;
--                                                    QUICK=1 sets ROWS=400000)
local dlua = require "dlua"
local frame = require "dlua.frame"
local dd = require "dlua.dataframe"
local now = dlua.time

local here = arg[0]:match("^(.*/)") or "./"
local lib = dofile(here .. "lib.lua")
local emit = lib.emit

local FILES = tonumber(os.getenv("FILES")) or 8
local ROWS = tonumber(os.getenv("ROWS")) or 4000000
local BLOCK = os.getenv("BLOCK") or "64MiB"

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p '" .. dir .. "'"))

local t0 = now()
math.randomseed(7)
local per = ROWS // FILES
local size = 0
for f = 0, FILES - 1 do
  local h = assert(io.open(("%s/part-%02d.csv"):format(dir, f), "wb"))
  h:write("id,key,x,y\n")
  local buf = {}
  for i = 0, per - 1 do
    -- y: a sum of uniforms, near-normal; %.17g as pandas writes floats
    local y = math.random() + math.random() + math.random() - 1.5
    buf[#buf + 1] = ("%d,k%d,%.17g,%.17g\n"):format(f * per + i,
      math.random(0, 999), math.random(), y)
    if #buf == 4096 then h:write(table.concat(buf)); buf = {} end
  end
  h:write(table.concat(buf))
  size = size + h:seek("end")
  h:close()
end
io.stderr:write(("# made %d files, %d rows, %.0f MB in %.1f s\n"):format(FILES,
  ROWS, size / 1e6, now() - t0))

local spec = {x = "mean", y = "sum"}

t0 = now()
local parts = {}
for f = 0, FILES - 1 do
  parts[#parts + 1] = frame.read_csv(("%s/part-%02d.csv"):format(dir, f),
    {types = {id = "int64", key = "string", x = "float64", y = "float64"}})
end
local r_frame = frame.concat(parts):groupby("key"):agg(spec)
local t_frame = now() - t0
parts = nil
collectgarbage()

local client = dlua.Client{n_workers = 2}
local best, r_dd = math.huge, nil
for _ = 1, 2 do
  t0 = now()
  r_dd = dd.read_csv(dir .. "/part-*.csv", {blocksize = BLOCK})
    :groupby("key"):agg(spec):compute{client = client}
  best = math.min(best, now() - t0)
end

-- merge with a small table (a broadcast join), and a sort (a shuffle)
local small = frame.from_table({key = {}, w = {}}, {"key", "w"})
do
  local ks, ws = {}, {}
  for i = 0, 999 do ks[i + 1] = "k" .. i ws[i + 1] = i * 0.5 end
  small = frame.from_table({key = ks, w = ws}, {"key", "w"})
end
local t_merge, t_sort = math.huge, math.huge
local o = {client = client}
for _ = 1, 2 do
  t0 = now()
  local n = dd.read_csv(dir .. "/part-*.csv", {blocksize = BLOCK})
    :merge(small, {on = "key"}):count(o)
  t_merge = math.min(t_merge, now() - t0)
  assert(n == per * FILES, "merge lost rows")
  t0 = now()
  local sorted = dd.read_csv(dir .. "/part-*.csv", {blocksize = BLOCK})
    :sort_values("x", o)
  n = sorted:count(o)
  t_sort = math.min(t_sort, now() - t0)
  assert(n == per * FILES, "sort lost rows")
end
client:close()

local a, b = r_dd:totable(), r_frame:totable()
assert(#a == #b, "group counts differ")
local maxd = 0
for i = 1, #a do
  assert(a[i].key == b[i].key)
  for _, k in ipairs{"x", "y"} do
    local d = math.abs(a[i][k] - b[i][k]) / math.max(1, math.abs(b[i][k]))
    if d > maxd then maxd = d end
  end
end
os.execute("rm -rf '" .. dir .. "'")

emit("dataframe.groupby.wall", best, "s")
emit("dataframe.groupby.frame_wall", t_frame, "s")
emit("dataframe.groupby.MB_per_s", size / 1e6 / best, "MB/s")
emit("dataframe.read.MB_per_s_per_worker", size / 1e6 / best / 2, "MB/s")
emit("dataframe.groupby.input_MB", size / 1e6, "MB")
emit("dataframe.groupby.maxdiff", maxd, "rel")
emit("dataframe.merge.wall", t_merge, "s")
emit("dataframe.sort.wall", t_sort, "s")
assert(maxd <= 1e-9, "cluster and in-process results differ")

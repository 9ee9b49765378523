-- Specs for dlua.array's Zarr v2 stores (to_zarr / from_zarr), checked
-- against Debian's python3-zarr where it is installed.
local describe, it, pending, before_each, after_each, assert =
  describe, it, pending, before_each, after_each, assert
local _ENV = _G -- task functions carry their _ENV (README, codec)
local da = require "dlua.array"
local nd = require "dlua.ndarray"

local SYNC = {scheduler = "sync"}

local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok)
  return tostring(e)
end

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

describe("dlua.array Zarr v2 stores", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
  end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("writes and reads back every dtype, zlib or uncompressed, edge "
     .. "chunks padded", function()
    local x = da.random.uniform{shape = {10, 7}, chunks = {4, 3}, seed = 1}
    local xv = x:compute(SYNC)
    for i, v in ipairs{x, x:astype("float32"), (x * 100):astype("int64"),
                       x:gt(0.5)} do
      local d = dir .. "-" .. i
      local bytes = v:to_zarr(d, {compressor = i % 2 == 0 and false or nil,
                                  scheduler = "sync"})
      assert.is_true(bytes > 0)
      local y = da.from_zarr(d)
      assert.equal(v.dtype, y.dtype)
      assert.same({{4, 4, 2}, {3, 3, 1}}, y.chunks)
      assert.same(v:compute(SYNC):totable(), y:compute(SYNC):totable())
      os.execute("rm -rf '" .. d .. "'")
    end
    -- an uncompressed float64 chunk file is the whole chunk, padded
    x:to_zarr(dir, {compressor = false, scheduler = "sync"})
    local f = io.open(dir .. "/2.2", "rb")
    assert.equal(4 * 3 * 8, #f:read("a"))
    f:close()
    assert.same(xv:slice({3, 9, 2}):totable(),
      da.from_zarr(dir, {chunks = 5}):slice({3, 9, 2}):compute(SYNC)
        :totable())
  end)

  it("fills missing chunks with fill_value, and names a missing chunk when "
     .. "there is none", function()
    local x = da.arange(1, 10, {chunks = 4})
    x:to_zarr(dir, SYNC)
    os.remove(dir .. "/1")
    assert.same({1, 2, 3, 4, 0, 0, 0, 0, 9, 10},
      da.from_zarr(dir):compute(SYNC):totable())
    local f = io.open(dir .. "/.zarray", "rb")
    local meta = f:read("a"):gsub('"fill_value": 0', '"fill_value": null')
    f:close()
    f = io.open(dir .. "/.zarray", "wb"); f:write(meta); f:close()
    assert.matches("chunk file .*/1 is missing %(and the store's fill_value "
      .. "is null%)", err_of(function()
        return da.from_zarr(dir):compute(SYNC)
      end))
  end)

  it("says what is wrong with a store, a chunk or the arguments", function()
    assert.matches("array_zarr_spec.lua:%d+: dlua.array.from_zarr: .*"
      .. "%.zarray: No such file", err_of(function()
        local y = da.from_zarr(dir)
        return y
      end))
    local x = da.arange(1, 10, {chunks = 4})
    x:to_zarr(dir, SYNC)
    local f = io.open(dir .. "/.zarray", "wb")
    f:write('{"zarr_format": 2, "shape": [10], "chunks": [4], '
      .. '"dtype": "<f2", "compressor": null}')
    f:close()
    assert.matches("%.zarray: unsupported dtype '<f2'",
      err_of(da.from_zarr, dir))
    x:to_zarr(dir, SYNC)
    f = io.open(dir .. "/0", "wb"); f:write("not zlib"); f:close()
    assert.matches("chunk file .*/0: chunk is not zlib data of 32 bytes",
      err_of(function() return da.from_zarr(dir):compute(SYNC) end))
    assert.matches("Zarr needs regular chunks; axis 1 has {2, 4, 4}",
      err_of(x.to_zarr, x:rechunk{{2, 4, 4}}, dir))
    assert.matches("unsupported compressor 'lzma'",
      err_of(x.to_zarr, x, dir, {compressor = "lzma"}))
    assert.matches("array_zarr_spec.lua:%d+: .*unsupported Blosc cname 'lzo'",
      err_of(function()
        local n = x:to_zarr(dir, {compressor = "blosc", cname = "lzo"})
        return n
      end))
    assert.matches("cname and shuffle are options of compressor = \"blosc\"",
      err_of(x.to_zarr, x, dir, {cname = "lz4"}))
    assert.matches("attrs.f is a function", err_of(x.to_zarr, x, dir,
      {attrs = {f = print}}))
    assert.matches("attrs.v%[2%] is nan", err_of(x.to_zarr, x, dir,
      {attrs = {v = {1, 0 / 0 > 0 and 1 or math.huge - math.huge}}}):lower()
      :gsub("%-nan", "nan"))
    x:to_zarr(dir, SYNC)
    f = io.open(dir .. "/.zattrs", "wb"); f:write("[1, 2]"); f:close()
    assert.matches("%.zattrs: not a JSON object", err_of(da.from_zarr, dir))
  end)

  it("writes Blosc chunks and .zattrs, and reads them back", function()
    local x = da.random.uniform{shape = {10, 7}, chunks = {4, 3}, seed = 1}
    local attrs = {units = "m", scale = {1, 2.5}, meta = {ok = true}}
    for _, o in ipairs{{compressor = "blosc"},
                       {compressor = "blosc", cname = "zstd", level = 3,
                        shuffle = 2}} do
      os.execute("rm -rf '" .. dir .. "'")
      o.attrs, o.scheduler = attrs, "sync"
      assert.is_true(x:to_zarr(dir, o) > 0)
      local y = da.from_zarr(dir)
      assert.same(attrs, y.attrs)
      assert.same(x:compute(SYNC):totable(), y:compute(SYNC):totable())
    end
    local f = io.open(dir .. "/.zarray", "rb")
    local meta = f:read("a")
    f:close()
    assert.matches('"cname": "zstd", "clevel": 3, "shuffle": 2', meta)
    assert.same(attrs, da.from_zarr(dir, {chunks = 5}).attrs)
  end)

  it("writes and reads on the cluster's workers", function()
    local dlua = require "dlua"
    local client = dlua.Client{n_workers = 2}
    local ok, e = pcall(function()
      local x = da.random.normal{shape = {300, 200}, chunks = {100, 80},
                                 seed = 4}
      x:to_zarr(dir, {client = client})
      local y = da.from_zarr(dir)
      assert.equal(x:sum():compute(SYNC), y:sum():compute{client = client})
    end)
    client:close()
    assert(ok, e)
  end)

  local py = "/usr/bin/python3"
  local has_zarr = os.execute(py .. " -c 'import zarr' 2>/dev/null")
  local zarr_it = has_zarr and it or pending
  zarr_it("moves stores to and from Python's zarr (python3-zarr; else "
    .. "skipped: scripts/install-deps)", function()
    local x = da.random.uniform{shape = {10, 7}, chunks = {4, 3}, seed = 1}
    x:to_zarr(dir, SYNC)
    local ok, out = sh(py .. " -c \"import zarr, numpy as np; z = zarr.open('"
      .. dir .. "', 'r'); print(z.shape, z.chunks, z.dtype, z.compressor, "
      .. "repr(z[9, 6]))\"")
    assert(ok, out)
    local head, v = out:match("^(.*) (%S+)\n$")
    assert.equal("(10, 7) (4, 3) float64 Zlib(level=1)", head)
    assert.equal(x:compute(SYNC):get(10, 7), tonumber(v))
    for _, c in ipairs{"zarr.Zlib(level=5)", "None"} do
      local d = dir .. "-py"
      ok, out = sh(py .. " -c \"import zarr, numpy as np; z = zarr.open('" .. d
        .. "', 'w', shape=(9, 5), chunks=(4, 2), dtype='<f4', compressor="
        .. c .. ", fill_value=-1); z[:8, :] = np.arange(40, dtype='<f4')"
        .. ".reshape(8, 5) / 3\"")
      assert(ok, out)
      local y = da.from_zarr(d):compute(SYNC)
      os.execute("rm -rf '" .. d .. "'")
      assert.equal("float32", y.dtype)
      assert.same((nd.arange(0, 39, {dtype = "float32"}) / 3):reshape(8, 5)
        :totable(), y:slice({1, 8}):totable())
      assert.same({-1, -1, -1, -1, -1}, y[9]:totable())
    end
  end)

  zarr_it("reads Python's Blosc stores and .zattrs, a removed chunk as "
    .. "fill_value, and writes Blosc that Python reads", function()
    local d = dir .. "-py"
    -- zarr's default compressor is Blosc (lz4, byte shuffle)
    local ok, out = sh(py .. " -c \"import zarr, numpy as np; z = zarr.open('"
      .. d .. "', 'w', shape=(6, 5), chunks=(4, 2), dtype='<i8', "
      .. "fill_value=-7); z[:] = np.arange(30).reshape(6, 5); "
      .. "z.attrs['units'] = 'K'; z.attrs['axes'] = ['t', 'x']; "
      .. "print(z.compressor)\"")
    assert(ok, out)
    assert.matches("^Blosc%(cname='lz4'", out)
    local y = da.from_zarr(d)
    assert.same({units = "K", axes = {"t", "x"}}, y.attrs)
    assert.same(nd.arange(0, 29):reshape(6, 5):totable(),
      y:compute(SYNC):totable())
    assert(os.remove(d .. "/1.1"))  -- rows 5..6, columns 3..4
    local t = da.from_zarr(d):compute(SYNC):totable()
    os.execute("rm -rf '" .. d .. "'")
    assert.same({25, 26, -7, -7, 29}, t[6])
    assert.same({20, 21, -7, -7, 24}, t[5])
    assert.same({15, 16, 17, 18, 19}, t[4])
    local x = da.random.uniform{shape = {10, 7}, chunks = {4, 3}, seed = 1}
    x:to_zarr(dir, {compressor = "blosc", cname = "zstd", attrs = {n = 3},
                    scheduler = "sync"})
    ok, out = sh(py .. " -c \"import zarr; z = zarr.open('" .. dir
      .. "', 'r'); print(z.compressor.cname, dict(z.attrs), repr(z[9, 6]))\"")
    assert(ok, out)
    local head, v = out:match("^(.*) (%S+)\n$")
    assert.equal("zstd {'n': 3}", head)
    assert.equal(x:compute(SYNC):get(10, 7), tonumber(v))
  end)
end)

-- Specs for dlua.bag: constructors, fused per-element chains, tree
-- reductions, the groupby shuffle, read_text (blocks, gzip) read by the
-- workers, output, and the errors users get for bad input.
local dlua = require "dlua"
local bag = require "dlua.bag"

local SYNC = {scheduler = "sync"}

local F = require "helpers.files"
local tmpdir, rmdir, spit, slurp = F.tmpdir, F.rmdir, F.spit, F.slurp

-- The line number of the caller's next line, for "reported at the
-- caller's line" checks.
local function next_line() return debug.getinfo(2, "l").currentline + 1 end

local function sorted(t)
  local c = table.move(t, 1, #t, 1, {})
  table.sort(c)
  return c
end

local function pairs_to_map(list)
  local m = {}
  for _, kv in ipairs(list) do m[kv[1]] = kv[2] end
  return m
end

describe("dlua.bag constructors", function ()
  it("splits sequences into partitions", function ()
    local b = bag.from_sequence({1, 2, 3, 4, 5, 6, 7}, {npartitions = 3})
    assert.equal(3, b.npartitions)
    assert.same({1, 2, 3, 4, 5, 6, 7}, b:compute(SYNC))
    local c = bag.from_sequence({1, 2, 3, 4, 5}, {partition_size = 2})
    assert.equal(3, c.npartitions)
    assert.same({1, 2, 3, 4, 5}, c:compute(SYNC))
    assert.same({}, bag.from_sequence({}):compute(SYNC))
  end)

  it("makes ranges on the workers' side of the graph", function ()
    local b = bag.range(10, {npartitions = 4})
    assert.equal(4, b.npartitions)
    assert.same({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, b:compute(SYNC))
    assert.same({}, bag.range(0):compute(SYNC))
  end)

  it("wraps Delayeds, one partition each", function ()
    local d = dlua.delayed(function (n)
      local t = {}
      for i = 1, n do t[i] = i end
      return t
    end)
    local b = bag.from_delayed({d(2), d(3)})
    assert.equal(2, b.npartitions)
    assert.same({1, 2, 1, 2, 3}, b:compute(SYNC))
  end)

  it("prints like Dask's repr: kind, partitions, graph size", function ()
    local b = bag.from_sequence({1, 2, 3}, {npartitions = 3})
    assert.equal("dlua.bag<from_sequence, npartitions=3, tasks=3>",
      tostring(b))
    assert.equal("dlua.bag<map, npartitions=3, tasks=6>",
      tostring(b:map(tostring)))
    assert.matches("^dlua.Item<sum, tasks=%d+>$", tostring(b:sum()))
  end)
end)

describe("dlua.bag transformations", function ()
  local b = bag.from_sequence({1, 2, 3, 4, 5, 6}, {npartitions = 3})

  it("maps, filters and removes", function ()
    assert.same({1, 4, 9, 16, 25, 36},
      b:map(function (x) return x * x end):compute(SYNC))
    assert.same({11, 12, 13, 14, 15, 16},
      b:map(function (x, y) return x + y end, 10):compute(SYNC))
    assert.same({2, 4, 6},
      b:filter(function (x) return x % 2 == 0 end):compute(SYNC))
    assert.same({1, 3, 5},
      b:remove(function (x) return x % 2 == 0 end):compute(SYNC))
  end)

  it("fuses a chain of element steps into one task per partition",
     function ()
    local c = b:map(function (x) return x + 1 end)
      :filter(function (x) return x > 2 end)
      :map(function (x) return {x, x} end):flatten()
    -- 3 source tasks + 3 fused ones, whatever the chain's length
    assert.equal("dlua.bag<flatten, npartitions=3, tasks=6>", tostring(c))
    assert.same({3, 3, 4, 4, 5, 5, 6, 6, 7, 7}, c:compute(SYNC))
  end)

  it("zips bags in map, zip and map_partitions", function ()
    local c = b:map(function (x) return x * 10 end)
    assert.same({11, 22, 33, 44, 55, 66},
      b:map(function (x, y) return x + y end, c):compute(SYNC))
    local z = bag.zip(b, c):compute(SYNC)
    assert.same({1, 10, n = 2}, z[1])
    assert.same({4, 4, 4}, b:map_partitions(function (p, q)
      return {#p + #q} end, c):compute(SYNC))
  end)

  it("plucks, starmaps and flattens", function ()
    local r = bag.from_sequence({{a = 1, b = 2}, {a = 3, b = 4}})
    assert.same({1, 3}, r:pluck("a"):compute(SYNC))
    assert.same({{1, 2}, {3, 4}}, r:pluck({"a", "b"}):compute(SYNC))
    assert.same({0, 0}, r:pluck("c", 0):compute(SYNC))
    assert.same({2, 12}, bag.from_sequence({{1, 2}, {3, 4}})
      :starmap(function (x, y) return x * y end):compute(SYNC))
    assert.same({1, 2, 3}, bag.from_sequence({{1}, {}, {2, 3}})
      :flatten():compute(SYNC))
  end)

  it("has Dask's .str methods", function ()
    local s = bag.from_sequence({" Ab c\n", "d,e"}, {npartitions = 2})
    assert.same({"Ab", "c", "d,e"}, s.str:split():flatten():compute(SYNC))
    assert.same({{" Ab c\n"}, {"d", "e"}}, s.str:split(","):compute(SYNC))
    assert.same({"Ab c", "d,e"}, s.str:strip():compute(SYNC))
    assert.same({" ab c\n", "d,e"}, s.str:lower():compute(SYNC))
  end)

  it("repartitions down and up, keeping order", function ()
    local r = bag.range(10, {npartitions = 3})
    local down = r:repartition(2)
    assert.equal(2, down.npartitions)
    assert.same(r:compute(SYNC), down:compute(SYNC))
    local up = r:repartition(7)
    assert.equal(7, up.npartitions)
    assert.same(r:compute(SYNC), up:compute(SYNC))
  end)

  it("accumulates across partitions in order", function ()
    local r = bag.range(6, {npartitions = 3})
    local add = function (a, x) return a + x end
    assert.same({0, 1, 3, 6, 10, 15}, r:accumulate(add):compute(SYNC))
    assert.same({100, 100, 101, 103, 106, 110, 115},
      r:accumulate(add, 100):compute(SYNC))
  end)

  it("makes products and distinct elements", function ()
    local p = bag.range(2, {npartitions = 2})
      :product(bag.range(3, {npartitions = 2}))
    assert.equal(4, p.npartitions)
    assert.equal(6, #p:compute(SYNC))
    assert.same({0, 1, 2}, sorted(bag.range(30, {npartitions = 4})
      :map(function (x) return x % 3 end):distinct():compute(SYNC)))
  end)
end)

describe("dlua.bag reductions", function ()
  local b = bag.range(100, {npartitions = 10})

  it("computes the basic statistics as trees", function ()
    assert.equal(4950, b:sum():compute(SYNC))
    assert.equal(100, b:count():compute(SYNC))
    assert.equal(0, b:min():compute(SYNC))
    assert.equal(99, b:max():compute(SYNC))
    assert.equal(49.5, b:mean():compute(SYNC))
    assert.near(833.25, b:var():compute(SYNC), 1e-9)
    assert.near(math.sqrt(833.25 * 100 / 99), b:std{ddof = 1}:compute(SYNC),
      1e-9)
    assert.is_true(b:any():compute(SYNC))
    assert.is_true(b:map(function (x) return x >= 0 end):all():compute(SYNC))
    -- split_every = 2 over 10 partitions: 4 levels of combine tasks, the
    -- last one finishing too (the root is not a task of its own)
    local g = b:sum{split_every = 2}
    local n, total = 0, 0
    for _, layer in pairs(g.layers) do
      for k in pairs(layer) do
        total = total + 1
        if k:find("%-agg") then n = n + 1 end
      end
    end
    assert.equal(5 + 3 + 2, n)
    assert.equal(10 + 5 + 3 + 2 + 1, total)
    assert.equal(4950, g:compute(SYNC))
  end)

  it("counts frequencies, top k, folds and folds by key", function ()
    local w = bag.from_sequence({"a", "b", "a", "c", "a", "b"},
      {npartitions = 3})
    assert.same({a = 3, b = 2, c = 1},
      pairs_to_map(w:frequencies():compute(SYNC)))
    assert.same({{"a", 3}, {"b", 2}, {"c", 1}},
      w:frequencies{sort = true}:compute(SYNC))
    assert.same({99, 98, 97}, b:topk(3):compute(SYNC))
    assert.same({0, 1}, b:topk(2, function (x) return -x end):compute(SYNC))
    local add = function (a, x) return a + x end
    assert.equal(4950, b:fold(add):compute(SYNC))
    assert.equal(4950, b:fold(add, add, 0):compute(SYNC))
    assert.same({[0] = 2450, [1] = 2500}, pairs_to_map(b:foldby(
      function (x) return x % 2 end, add, 0, add, 0):compute(SYNC)))
    assert.equal(100, b:reduction(function (p) return #p end,
      function (l) local s = 0 for _, v in ipairs(l) do s = s + v end
        return s end):compute(SYNC))
  end)

  it("reports empty-bag reductions clearly", function ()
    local e = bag.from_sequence({})
    assert.equal(0, e:count():compute(SYNC))
    assert.equal(0, e:sum():compute(SYNC))
    assert.has_error(function () e:max():compute(SYNC) end)
    local ok, err = pcall(function () return e:mean():compute(SYNC) end)
    assert.is_false(ok)
    assert.matches("mean of an empty bag", err)
  end)

  it("groups by key", function ()
    local g = bag.range(20, {npartitions = 4})
      :groupby(function (x) return x % 3 end, {npartitions = 2})
    assert.equal(2, g.npartitions)
    local m = pairs_to_map(g:compute(SYNC))
    assert.same({0, 3, 6, 9, 12, 15, 18}, sorted(m[0]))
    assert.same({1, 4, 7, 10, 13, 16, 19}, sorted(m[1]))
    assert.same({2, 5, 8, 11, 14, 17}, sorted(m[2]))
  end)

  it("takes only what it needs", function ()
    -- partition 2 raises: take(3) must never run it
    local raise = error
    local b2 = bag.range(10, {npartitions = 2}):map(function (x)
      if x >= 5 then raise("partition 2 was computed") end
      return x
    end)
    assert.same({0, 1, 2}, b2:take(3, SYNC))
    assert.same({0, 1, 2, 3, 4, 5, 6}, bag.range(10, {npartitions = 5})
      :take(7, {npartitions = -1, scheduler = "sync"}))
  end)
end)

describe("dlua.bag on a cluster", function ()
  local client, dir
  setup(function ()
    client = dlua.Client{n_workers = 2}
    dir = tmpdir()
  end)
  teardown(function ()
    if client then client:close() end
    rmdir(dir)
  end)

  it("runs chains, reductions and the groupby shuffle on workers",
     function ()
    local b = bag.range(1000, {npartitions = 8})
    assert.equal(499500, b:sum():compute())
    local g = b:groupby(function (x) return x % 7 end)
    local m = pairs_to_map(g:compute())
    local total = 0
    for k = 0, 6 do
      for _, x in ipairs(m[k]) do
        assert.equal(k, x % 7)
        total = total + 1
      end
    end
    assert.equal(1000, total)           -- nothing lost, nothing doubled
    assert.equal(1000, g:map(function (kv) return #kv[2] end):sum()
      :compute())
  end)

  it("reads text in blocks split at line boundaries", function ()
    local lines = {}
    for i = 1, 500 do
      lines[i] = string.rep(string.char(97 + i % 26), i % 37) .. i
    end
    local text = table.concat(lines, "\n") .. "\n"
    spit(dir .. "/a.txt", text)
    spit(dir .. "/b.txt", "no newline at the end")
    for _, bs in ipairs({1, 7, 100, 4096, "1MiB"}) do
      local b = bag.read_text({dir .. "/a.txt", dir .. "/b.txt"},
        {blocksize = bs})
      local got = b:compute()
      assert.equal(501, #got)
      assert.equal(text .. "no newline at the end", table.concat(got))
    end
  end)

  it("reads gzip files, several members too, and writes them", function ()
    local zlib = require "zlib"
    local gz = zlib.deflate(6, 31)("one\ntwo\n", "finish")
      .. zlib.deflate(6, 31)("three\n", "finish")
    spit(dir .. "/c.txt.gz", gz)
    assert.same({"one\n", "two\n", "three\n"},
      bag.read_text(dir .. "/*.gz"):compute())
    local paths = bag.range(4, {npartitions = 2})
      :to_textfiles(dir .. "/out/part-*.txt.gz")
    assert.same({dir .. "/out/part-0.txt.gz", dir .. "/out/part-1.txt.gz"},
      paths)
    assert.same({"0\n", "1\n", "2\n", "3\n"},
      bag.read_text(dir .. "/out/part-*.txt.gz"):compute())
  end)

  it("names the file and offset of a corrupt gzip stream", function ()
    local zlib = require "zlib"
    local good = zlib.deflate(6, 31)(string.rep("line\n", 1000), "finish")
    local bad = good:sub(1, 20) .. string.rep("x", 30) .. good:sub(51)
    spit(dir .. "/good.gz", good)
    spit(dir .. "/bad.gz", bad)
    local b = bag.read_text({dir .. "/good.gz", dir .. "/bad.gz"})
    local ok, err = pcall(b.compute, b)
    assert.is_false(ok)
    assert.matches("bad.gz: corrupt gzip stream near compressed byte %d+",
      tostring(err))
    -- the other partition is unaffected
    assert.equal(1000, bag.read_text(dir .. "/good.gz"):count():compute())
  end)

  it("refuses a 2 GB line, naming the file and the limit", function ()
    -- sparse: 2 GiB of zero bytes and no newline take no disk space
    local path = dir .. "/one-line.txt"
    local f = assert(io.open(path, "wb"))
    assert(f:seek("set", (1 << 31) + 5))
    f:write("x")
    f:close()
    local want = "one%-line%.txt: a line longer than max_line %(268435456 "
      .. "bytes%) starts at byte 0"
    -- one block (no blocksize): read up to the limit, not the whole line
    local b = bag.read_text(path)
    local ok, err = pcall(b.count, b)
    assert.is_true(ok)
    ok, err = pcall(err.compute, err)
    assert.is_false(ok)
    assert.matches(want, tostring(err))
    -- in blocks (a smaller file, to keep the suite quick): a block where no
    -- line starts reads only its own bytes; the word-count kernel gives
    -- the same error
    local small = dir .. "/one-line-8m.txt"
    spit(small, string.rep("y", 8 << 20))
    b = bag.read_text(small, {blocksize = "1MiB", max_line = "4MiB"})
    assert.equal(8, b.npartitions)
    ok, err = pcall(function ()
      return b.str:split():flatten():frequencies():compute()
    end)
    assert.is_false(ok)
    assert.matches("one%-line%-8m%.txt: a line longer than max_line "
      .. "%(4194304 bytes%) starts at byte 0", tostring(err))
    os.remove(small)
    os.remove(path)
    -- the workers are still there
    assert.equal(45, bag.range(10):sum():compute())
  end)

  it("bounds lines by max_line, in plain and gzip files", function ()
    local zlib = require "zlib"
    spit(dir .. "/ml.txt", "aaaa\nbbbbbbbbbbbb\ncc\n")
    local b = bag.read_text(dir .. "/ml.txt", {max_line = 8})
    local ok, err = pcall(b.compute, b)
    assert.is_false(ok)
    assert.matches("ml%.txt: a line longer than max_line %(8 bytes%) starts "
      .. "at byte 5", tostring(err))
    assert.same({"aaaa\n", "bbbbbbbbbbbb\n", "cc\n"},
      bag.read_text(dir .. "/ml.txt", {max_line = 13}):compute())
    -- a gzip bomb of one 8 MiB line: refused after 1 MiB of it
    local big = string.rep("z", 8 << 20)
    spit(dir .. "/bomb.gz", zlib.deflate(9, 31)(big, "finish"))
    b = bag.read_text(dir .. "/bomb.gz", {max_line = "1MiB"})
    ok, err = pcall(b.count(b).compute, b:count())
    assert.is_false(ok)
    assert.matches("bomb%.gz: a line longer than max_line %(1048576 bytes%) "
      .. "starts at byte 0 of the decompressed text", tostring(err))
    assert.equal(1, bag.read_text(dir .. "/bomb.gz"):count():compute())
  end)

  it("names the file of a truncated gzip stream", function ()
    local zlib = require "zlib"
    local good = zlib.deflate(6, 31)(string.rep("some words here\n", 5000),
      "finish")
    spit(dir .. "/cut.gz", good:sub(1, #good - 10))
    for _, b in ipairs({bag.read_text(dir .. "/cut.gz"),
                        bag.read_text(dir .. "/cut.gz").str:split():flatten()
                          :frequencies()}) do
      local ok, err = pcall(b.compute, b)
      assert.is_false(ok)
      assert.matches("cut%.gz: truncated gzip stream %(%d+ compressed "
        .. "bytes%)", tostring(err))
    end
  end)

  it("counts the words of gzip files in C as Lua would", function ()
    local zlib = require "zlib"
    local words = {}
    for i = 1, 20000 do
      words[i] = ("w%d"):format(i * 7919 % 613)
        .. (i % 50 == 0 and "-a-word-longer-than-sixteen\n" or " ")
    end
    local text = table.concat(words)
    -- several members, 1 MiB pieces cut between them
    spit(dir .. "/wc.txt.gz", zlib.deflate(6, 31)(text:sub(1, 70001),
      "finish") .. zlib.deflate(6, 31)(text:sub(70002), "finish"))
    local want = {}
    for w in text:gmatch("%S+") do want[w] = (want[w] or 0) + 1 end
    local b = bag.read_text(dir .. "/wc.txt.gz")
    assert.same(want, pairs_to_map(b.str:split():flatten():frequencies()
      :compute()))
    -- the same through the Lua path (a map in the chain)
    assert.same(want, pairs_to_map(b:map(function (l) return l end)
      .str:split():flatten():frequencies():compute()))
  end)

  it("writes text files on the workers", function ()
    local paths = bag.from_sequence({"a", "b\n", 3}, {npartitions = 2})
      :to_textfiles(dir .. "/w-*.txt")
    assert.equal(2, #paths)
    assert.equal("a\nb\n", slurp(paths[1]))
    assert.equal("3\n", slurp(paths[2]))
  end)

  it("names the partition and element of a failing function", function ()
    local raise = error
    local b = bag.range(10, {npartitions = 2}):map(function (x)
      if x == 7 then raise("boom at seven") end
      return x
    end)
    local ok, err = pcall(b.compute, b)
    assert.is_false(ok)
    assert.matches("bag partition 2, element 3: .*boom at seven",
      tostring(err))
  end)

  it("counts words through the C kernel as Lua would", function ()
    local words = {}
    for i = 1, 3000 do words[i] = "w" .. (i * 7919 % 101) end
    local text = table.concat(words, " \t") .. "\r\n\n  x y x\n"
    spit(dir .. "/words.txt", text)
    local want = {}
    for w in text:gmatch("%S+") do want[w] = (want[w] or 0) + 1 end
    local b = bag.read_text(dir .. "/words.txt", {blocksize = 1000})
    assert.same(want, pairs_to_map(b.str:split():flatten():frequencies()
      :compute()))
    -- the same chain through Lua (a map in between defeats the kernel)
    assert.same(want, pairs_to_map(b:map(function (s) return s end)
      .str:split():flatten():frequencies():compute()))
  end)

  it("persists partitions on the cluster", function ()
    local p = bag.range(10, {npartitions = 2})
      :map(function (x) return x + 1 end):persist()
    assert.equal(55, p:sum():compute())
  end)
end)

describe("dlua.bag bad input", function ()
  it("reports a glob that matches nothing, naming it", function ()
    local line = next_line()
    local ok, err = pcall(bag.read_text, "/nonexistent-dir-x/*.txt")
    assert.is_false(ok)
    assert.matches("no files match '/nonexistent%-dir%-x/%*%.txt'", err)
    ok, err = pcall(function () local r = bag.read_text("/nonexistent.txt")
      return r end)
    assert.is_false(ok)
    assert.matches("bag_spec.lua:" .. line + 3 .. ":.*nonexistent.txt", err)
  end)

  it("reports bad arguments at the caller's line", function ()
    local b = bag.range(3)
    local line = next_line()
    local ok, err = pcall(function () local r = b:map(5) return r end)
    assert.matches("bag_spec.lua:" .. line .. ": dlua.bag: map: argument #1 "
      .. "must be a function, got number", err)
    ok, err = pcall(function () local r = b:topk(0) return r end)
    assert.matches("bag_spec.lua:%d+: dlua.bag: topk: k must be", err)
    ok, err = pcall(function ()
      return bag.from_sequence({1}, {npartitons = 2}) end)
    assert.matches("unknown option 'npartitons' %(did you mean "
      .. "'npartitions'%?%)", err)
    ok, err = pcall(function ()
      return bag.read_text("x", {blocksize = "lots"}) end)
    assert.matches("blocksize must be", err)
    ok, err = pcall(function () return b.map(5, tostring) end)
    assert.matches("use b:map", err)
    ok, err = pcall(function () return b:map(tostring, bag.range(5,
      {npartitions = 2})) end)
    assert.matches("same npartitions", err)
    ok, err = pcall(function () return b:compute{schedular = "sync"} end)
    assert.matches("unknown option 'schedular'", err)
    assert.is_false(ok)
    -- zip as a method and as a function, and map over zipped bags
    local other = bag.range(5, {npartitions = 2})
    line = next_line()
    ok, err = pcall(function () local r = b:zip(other) return r end)
    assert.matches("bag_spec.lua:" .. line .. ": dlua.bag: zip: bags must "
      .. "have the same npartitions", err)
    line = next_line()
    ok, err = pcall(function () local r = b:zip(5) return r end)
    assert.matches("bag_spec.lua:" .. line .. ": dlua.bag: zip: argument "
      .. "#2 must be a bag, got number", err)
    line = next_line()
    ok, err = pcall(function () local r = bag.zip(b, other) return r end)
    assert.matches("bag_spec.lua:" .. line .. ": dlua.bag: zip: bags must", err)
    line = next_line()
    ok, err = pcall(function () local r = b:map(tostring, other) return r end)
    assert.matches("bag_spec.lua:" .. line .. ": dlua.bag: map: bags must", err)
  end)

  it("refuses a bad max_line at the caller's line", function ()
    for _, v in ipairs({0, -3, "lots", 1.5}) do
      local line = next_line() + 1
      local ok, err = pcall(function ()
        local b = bag.read_text("/no/*.txt", {max_line = v}); return b end)
      assert.is_false(ok)
      assert.matches(":" .. line .. ": dlua.bag: read_text: max_line must "
        .. "be a positive number of bytes", err)
    end
  end)

  it("names unknown methods, with a hint", function ()
    local b = bag.range(3)
    local line = next_line()
    local ok, err = pcall(function () local r = b:fliter(print) return r end)
    assert.is_false(ok)
    assert.matches("bag_spec.lua:" .. line .. ": dlua.bag: a bag has no "
      .. "method 'fliter' %(did you mean 'filter'%?%)", err)
  end)

  it("refuses keys that cannot be hashed for the shuffle", function ()
    local g = bag.from_sequence({{1}, {2}}):groupby(function (x) return x end)
    local ok, err = pcall(g.compute, g, SYNC)
    assert.is_false(ok)
    assert.matches("key must be a string, number or boolean", err)
  end)

  it("names a file that vanished before the workers read it", function ()
    local d = tmpdir()
    spit(d .. "/gone.txt", "a\n")
    local b = bag.read_text(d .. "/gone.txt")
    os.remove(d .. "/gone.txt")
    local ok, err = pcall(b.compute, b, SYNC)
    rmdir(d)
    assert.is_false(ok)
    assert.matches("bag partition 1, reading .*gone.txt: .*gone.txt: No such "
      .. "file", err)
  end)

  it("passes non-UTF-8 bytes through", function ()
    local d = tmpdir()
    spit(d .. "/bin.txt", "\255\254 x\n\0\1\n")
    assert.same({"\255\254 x\n", "\0\1\n"},
      bag.read_text(d .. "/bin.txt"):compute(SYNC))
    rmdir(d)
  end)
end)

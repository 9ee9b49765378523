-- bench_codec.lua -- codec round trips (encode + decode), side by side with
-- lua-cjson where it applies.  Run: build/dlua scripts/bench/bench_codec.lua
-- Prints lines "metric value unit"; ratios are dlua over cjson.  Both
-- sides get the same number of rounds and the best of each is compared.
-- QUICK=1: 100,000 floats and a 10 MB string (a smoke test).
local codec = require "dlua.codec"
local now = require("dlua.core").time
local ok, cjson = pcall(require, "cjson")
if not ok then cjson = nil end

local encode, decode = codec.encode, codec.decode

-- Best time per call of f over reps calls, repeated rounds times.
local function best(f, reps, rounds)
  local b = math.huge
  for _ = 1, rounds or 5 do
    collectgarbage()
    local t0 = now()
    for _ = 1, reps do f() end
    local dt = (now() - t0) / reps
    if dt < b then b = dt end
  end
  return b
end

local function report(metric, value, unit)
  print(("%s %.4g %s"):format(metric, value, unit))
end

local QUICK = os.getenv("QUICK") == "1"
local ROUNDS = 5        -- per measurement, dlua and cjson alike

-- 1,000,000 floats.
local N = QUICK and 100000 or 1000000
local floats = {}
for i = 1, N do floats[i] = i * 0.37 + 1 / i end
do
  local s = encode(floats)
  local r = decode(s)
  assert(#r == N and r[N] == floats[N] and r[1] == floats[1])
  local t = best(function() decode(encode(floats)) end, 1, ROUNDS)
  local enc_t = best(function() encode(floats) end, 1, ROUNDS)
  local dec_t = best(function() decode(s) end, 1, ROUNDS)
  report("floats_roundtrip", N / t / 1e6, "Mvalues/s")
  report("floats_encode", N / enc_t / 1e6, "Mvalues/s")
  report("floats_decode", N / dec_t / 1e6, "Mvalues/s")
  report("floats_bytes", #s / N, "bytes/value")
  if cjson then
    local cr = cjson.decode(cjson.encode(floats))
    assert(#cr == N) -- (cjson keeps 14 digits: values differ in the last)
    local ct = best(function() cjson.decode(cjson.encode(floats)) end, 1,
                    ROUNDS)
    report("floats_roundtrip_cjson", N / ct / 1e6, "Mvalues/s")
    report("floats_ratio_vs_cjson", ct / t, "x")
  end
end
floats = nil -- luacheck: ignore
collectgarbage()

-- A 100 MB string.
do
  local MB = QUICK and 10 or 100
  local big = string.rep("0123456789abcdef", MB * 65536)
  local t = best(function() decode(encode(big)) end, 1, 3)
  assert(decode(encode(big)) == big)
  report("string100mb_roundtrip", #big / t / 1e9, "GB/s")
  if cjson then
    assert(cjson.decode(cjson.encode(big)) == big)
    local ct = best(function() cjson.decode(cjson.encode(big)) end, 1, 3)
    report("string100mb_roundtrip_cjson", #big / ct / 1e9, "GB/s")
    report("string100mb_ratio_vs_cjson", ct / t, "x")
  end
end
collectgarbage()

-- A closure with 3 upvalues (one of them a table, one a stdlib function).
do
  local a, b, c = 3, {k = 1}, math.floor
  local function f(x) return c(x * a) + b.k end
  local g = decode(encode(f))
  assert(g(2.5) == f(2.5))
  local reps = QUICK and 20000 or 200000
  local t = best(function() decode(encode(f)) end, reps, 5)
  report("closure3_roundtrip", t * 1e6, "us")
  report("closure3_bytes", #encode(f), "bytes")
end

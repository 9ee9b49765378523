-- Specs for dlua.codec: what travels, how, and what is refused.
local codec = require "dlua.codec"
local lpeg = require "lpeg"

local encode, decode = codec.encode, codec.decode

local function rt(v, o) return decode(encode(v, o), o) end

local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok)
  return tostring(e)
end

local DLUA = os.getenv("DLUA") or "build/dlua"

describe("codec scalars", function()
  it("carries nil and booleans", function()
    assert.is_nil(rt(nil))
    assert.is_true(rt(true))
    assert.is_false(rt(false))
  end)

  it("carries integers exactly, extremes included", function()
    for _, v in ipairs({0, 1, -1, 127, 128, -65, 2^31 | 0, math.maxinteger,
                        math.mininteger, math.mininteger + 1}) do
      local r = rt(v)
      assert.equal(v, r)
      assert.equal("integer", math.type(r))
    end
  end)

  it("keeps floats that look like integers floats", function()
    assert.equal("float", math.type(rt(3.0)))
    assert.equal(3.0, rt(3.0))
  end)

  it("carries -0.0, inf and nan", function()
    assert.equal(-math.huge, 1 / rt(-0.0))
    assert.equal(math.huge, 1 / rt(0.0))
    assert.equal(math.huge, rt(math.huge))
    assert.equal(-math.huge, rt(-math.huge))
    local n = rt(0 / 0)
    assert.is_true(n ~= n)
    assert.equal(0.1, rt(0.1))
    assert.equal(5e-324, rt(5e-324))
  end)

  it("carries strings of any bytes and length", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    assert.equal(all, rt(all))
    assert.equal("", rt(""))
    local big = string.rep("x\0y", 100000)
    assert.equal(big, rt(big))
  end)
end)

describe("codec large strings", function()
  it("carries strings above the out-of-band size anywhere in a value", function()
    local a = string.rep("a", 70000) .. "\0end"
    local b = string.rep("\255b", 100000)
    local r = rt({a, "small", {b, a}, k = b, [a] = 1})
    assert.equal(a, r[1])
    assert.equal("small", r[2])
    assert.equal(b, r[3][1])
    assert.equal(a, r[3][2])
    assert.equal(b, r.k)
    assert.equal(1, r[a])
    local s = encode(a)
    assert.equal(#a + 9 + 1 + 3, #s)
    assert.equal(a, decode(s))
  end)
end)

describe("codec tables", function()
  it("carries nested tables with any keys", function()
    local k = {}
    local t = {1, 2, "three", {4, {5}}, x = {y = {z = "deep"}},
               [true] = "t", [1.5] = "f", [-7] = "neg", [k] = "tablekey"}
    local r = rt(t)
    assert.equal(1, r[1])
    assert.equal("three", r[3])
    assert.equal(5, r[4][2][1])
    assert.equal("deep", r.x.y.z)
    assert.equal("t", r[true])
    assert.equal("f", r[1.5])
    assert.equal("neg", r[-7])
    local found
    for key, v in pairs(r) do
      if type(key) == "table" then found = v end
    end
    assert.equal("tablekey", found)
  end)

  it("keeps arrays with holes", function()
    local r = rt({1, nil, 3, nil, 5})
    assert.equal(1, r[1])
    assert.is_nil(r[2])
    assert.equal(3, r[3])
    assert.equal(5, r[5])
  end)

  it("keeps shared references shared", function()
    local s = {v = 1}
    local r = rt({a = s, b = s, c = {s}})
    assert.equal(r.a, r.b)
    assert.equal(r.a, r.c[1])
    r.a.v = 2
    assert.equal(2, r.b.v)
  end)

  it("keeps many shared values shared, in closures too", function()
    local ring = {}
    for i = 1, 30 do ring[i] = {i = i} end
    for i = 1, 30 do ring[i].next = ring[i % 30 + 1] end
    local get = function() return ring end
    local r = rt({ring = ring, f = get, g = get, mid = ring[17]})
    assert.equal(r.f, r.g)
    assert.equal(r.ring[17], r.mid)
    for i = 1, 30 do
      assert.equal(i, r.ring[i].i)
      assert.equal(r.ring[i % 30 + 1], r.ring[i].next)
    end
    assert.equal(r.ring, r.f())
  end)

  it("keeps cycles cyclic", function()
    local t = {}
    t.self = t
    t.list = {t}
    local r = rt(t)
    assert.equal(r, r.self)
    assert.equal(r, r.list[1])
    assert.are_not.equal(t, r)
  end)

  it("keeps a table used as its own key", function()
    local t = {}
    t[t] = t
    local r = rt(t)
    assert.equal(r, r[r])
  end)
end)

describe("codec metatables", function()
  it("sends a registered metatable by name", function()
    local mt = {__name = "spec.Point"}
    mt.__index = {norm = function(p) return p.x * p.x + p.y * p.y end}
    debug.getregistry()["spec.Point"] = mt
    local r = rt(setmetatable({x = 3, y = 4}, mt))
    assert.equal(mt, getmetatable(r))
    assert.equal(25, r:norm())
  end)

  it("sends a metatable reachable in package.loaded by name", function()
    local Circle = {}
    Circle.__index = Circle
    function Circle.area(c) return 3 * c.r * c.r end
    package.loaded["spec_shapes"] = {Circle = Circle}
    local r = rt(setmetatable({r = 2}, Circle))
    assert.equal(Circle, getmetatable(r))
    assert.equal(12, r:area())
    package.loaded["spec_shapes"] = nil
  end)

  it("sends any other metatable by value", function()
    local mt = {__index = function(_, k) return k .. "!" end}
    local r = rt(setmetatable({}, mt))
    assert.are_not.equal(mt, getmetatable(r))
    assert.equal("hi!", r.hi)
  end)

  it("shares one by-value metatable between instances", function()
    local mt = {kind = "v"}
    local r = rt({setmetatable({}, mt), setmetatable({}, mt)})
    assert.equal(getmetatable(r[1]), getmetatable(r[2]))
    assert.equal("v", getmetatable(r[1]).kind)
  end)
end)

describe("codec functions", function()
  it("carries a closure with its upvalues", function()
    local a, b = 10, {n = 5}
    local function f(x) return a + b.n + x end
    local g = rt(f)
    assert.are_not.equal(f, g)
    assert.equal(18, g(3))
  end)

  it("keeps file:line for tracebacks (bytecode not stripped)", function()
    local raise = error -- busted's spec environment cannot travel
    local function boom() raise("bang") end
    local ok, e = pcall(rt(boom))
    assert.is_false(ok)
    assert.matches("codec_spec.lua:%d+: bang", e)
    assert.matches("codec_spec", debug.getinfo(rt(boom), "S").source)
  end)

  it("keeps upvalues shared between closures shared", function()
    local n = 0
    local function inc() n = n + 1; return n end
    local function get() return n end
    local r = rt({inc, get})
    assert.equal(debug.upvalueid(r[1], 1), debug.upvalueid(r[2], 1))
    assert.are_not.equal(debug.upvalueid(inc, 1), debug.upvalueid(r[1], 1))
    r[1](); r[1]()
    assert.equal(2, r[2]())
    assert.equal(0, n)
  end)

  it("keeps a shared upvalue that holds one of the closures", function()
    local v
    v = function() return v end
    local function g() return v end
    local r = rt({g, v})
    assert.equal(r[2], r[1]())
    assert.equal(r[2], r[2]())
  end)

  it("runs recursive local functions", function()
    local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
    local f = rt(fib)
    assert.equal(6765, f(20))
    local _, up = debug.getupvalue(f, 1)
    assert.equal(f, up)
  end)

  it("gives a function its own globals, falling back to the receiver's", function()
    -- busted runs specs in its own environment; make one in the real one.
    local G = debug.getregistry()[2]
    local f = load("return function() return tostring(1) .. type(_G) end",
                   "=globals", "t", G)()
    local g = rt(f)
    assert.equal("1table", g())
    local name, env = debug.getupvalue(g, 1)
    assert.equal("_ENV", name)
    assert.are_not.equal(G, env)
    assert.equal(G, getmetatable(env).__index)
    assert.is_true(#encode(f) < 300)
  end)

  it("references a function seen twice instead of re-sending it", function()
    local function f() return 1 end
    local r = rt({f, f, {f}})
    assert.equal(r[1], r[2])
    assert.equal(r[1], r[3][1])
  end)

  it("sends the bytecode of one prototype once per message", function()
    local function mk(i) return function() return i end end
    local one = #encode(mk(1))
    local many = {}
    for i = 1, 10 do many[i] = mk(i) end
    assert.is_true(#encode(many) < one * 2)
    local r = rt(many)
    for i = 1, 10 do assert.equal(i, r[i]()) end
  end)
end)

describe("codec globals", function()
  -- busted runs specs in its own environment: the functions here are
  -- loaded in the real globals, as a script's or the REPL's are.
  local G = debug.getregistry()[2]
  local set = {}
  local function global(name, v) set[name] = true; G[name] = v end
  local function fn(src) return assert(load("return " .. src, "=g", "t", G))() end
  after_each(function()
    for k in pairs(set) do G[k] = nil end
    set = {}
  end)

  it("sends the value a global has when the function is encoded", function()
    global("SPEC_N", 5)
    local e = encode(fn("function() return SPEC_N end"))
    global("SPEC_N", 99)
    assert.equal(5, decode(e)())
  end)

  it("sends global functions with their own globals", function()
    global("SPEC_R", 2)
    global("spec_in_circle", fn("function(x, y) return x * x + y * y <= SPEC_R * SPEC_R end"))
    local e = encode(fn([[function(x) return spec_in_circle(x, 1), math.type(x) end]]))
    global("SPEC_R", 0)
    global("spec_in_circle", nil)
    local f = decode(e)
    assert.same({true, "integer"}, {f(1)})
    assert.is_false(f(2))
    local _, env = debug.getupvalue(f, 1)
    assert.is_function(rawget(env, "spec_in_circle"))
    assert.equal(2, rawget(env, "SPEC_R"))
    assert.is_nil(rawget(env, "math")) -- standard names are the receiver's
  end)

  it("finds globals read by nested functions", function()
    global("SPEC_DEEP", "deep")
    local f = rt(fn("function() return (function() return function() return SPEC_DEEP end end)()() end"))
    global("SPEC_DEEP", nil)
    assert.equal("deep", f())
  end)

  it("keeps tables shared between globals shared, and cycles", function()
    local t = {1}
    t.self = t
    global("SPEC_A", t)
    global("SPEC_B", t)
    local f = rt(fn("function() return SPEC_A, SPEC_B end"))
    local a, b = f()
    assert.are_not.equal(t, a)
    assert.equal(a, b)
    assert.equal(a, a.self)
  end)

  it("keeps recursion through a global function", function()
    global("spec_fact", fn("function(n) if n <= 1 then return 1 end return n * spec_fact(n - 1) end"))
    local f = rt(G.spec_fact)
    global("spec_fact", nil)
    assert.equal(120, f(5))
    local _, env = debug.getupvalue(f, 1)
    assert.equal(f, rawget(env, "spec_fact"))
  end)

  it("gives the functions of one message one globals table", function()
    global("spec_setup", fn("function() SPEC_CACHE = {k = 'v'} end"))
    global("spec_use", fn("function(k) return SPEC_CACHE[k] end"))
    local f = rt(fn("function(k) spec_setup() return spec_use(k) end"))
    assert.equal("v", f("k"))
    assert.is_nil(rawget(G, "SPEC_CACHE")) -- the receiver's globals untouched
    set.SPEC_CACHE = true
  end)

  it("sends a global holding a library value by name", function()
    global("SPEC_LP", lpeg)
    global("spec_out", io.stdout)
    local f = rt(fn("function() return SPEC_LP, spec_out end"))
    local a, b = f()
    assert.equal(lpeg, a)
    assert.equal(io.stdout, b)
    assert.is_true(#encode(fn("function() return print, string, _G end")) < 300)
  end)

  it("names a global that cannot be sent", function()
    local co = coroutine.create(print)
    global("spec_co", co)
    local e = err_of(encode, fn("function() return spec_co end"), {root = "task"})
    assert.matches("cannot send coroutine at global 'spec_co' of function <g:1> %(task%)", e)
    global("spec_tbl", {x = {co}})
    e = err_of(encode, fn("function() return spec_tbl end"))
    assert.matches("at x%[1%] of global 'spec_tbl' of function <g:1>", e)
  end)

  it("keeps assignments in the function's own globals", function()
    local f = rt(fn("function() SPEC_SET = (SPEC_SET or 0) + 1 return SPEC_SET end"))
    assert.equal(1, f())
    assert.equal(2, f())
    assert.is_nil(rawget(G, "SPEC_SET"))
    set.SPEC_SET = true
  end)

  it("still reuses a function that reads no user globals", function()
    local e = encode(fn("function(x) return math.abs(x) end"))
    local f = decode(e)
    assert.equal(f, decode(e))
    assert.equal(3, f(-3))
    global("SPEC_K", 1)
    local e2 = encode(fn("function(x) return SPEC_K + x end"))
    assert.are_not.equal(decode(e2), decode(e2))
  end)
end)

describe("codec sandbox _ENV", function()
  -- A function whose _ENV is a table of its own (a sandbox) carries only
  -- the globals it reads from that table, with its metatable, as a
  -- function of the real globals carries the globals it reads.
  local G = debug.getregistry()[2]
  local function big_box()
    local big = {}
    for i = 1, 20000 do big["k" .. i] = i end
    return setmetatable({x = 5, big = big, unused = big}, {__index = G})
  end
  local function fn(src, env) return assert(load("return " .. src, "=sb", "t", env))() end

  it("sends only the globals read from it, with its metatable", function()
    local box = big_box()
    local f = fn("function(a) return x + a + #big.k1, math.floor(1.5) end",
                 setmetatable({x = 5, big = {k1 = "ab"}, __pad = box},
                              {__index = G}))
    -- (the table above reads x and big; box is reached only through __pad)
    assert.is_true(#encode(f) < 400, #encode(f))
    local g = rt(f)
    assert.same({8, 1}, {g(1)})
    local _, env = debug.getupvalue(g, 1)
    assert.is_nil(rawget(env, "__pad"))
    f = fn("function() return x, print end", box)
    assert.is_true(#encode(f) < 400, #encode(f))
    g = rt(f)
    local a, b = g()
    assert.equal(5, a)
    assert.equal(print, b) -- through the metatable's __index (_G by name)
    _, env = debug.getupvalue(g, 1)
    assert.is_nil(rawget(env, "big"))
    assert.equal(G, getmetatable(env).__index)
  end)

  it("keeps assignments in the copy, and one table for its functions",
     function()
    local box = big_box()
    local t = fn("{function() return x end, function(v) x = v end, "
                 .. "function() n = (n or 0) + 1 return n end}", box)
    local r = rt(t)
    assert.equal(5, r[1]())
    r[2](7)
    assert.equal(7, r[1]())
    assert.equal(1, r[3]())
    assert.equal(2, r[3]())
    assert.equal(5, box.x) -- the sender's sandbox is untouched
    assert.is_nil(rawget(box, "n"))
    assert.is_true(#encode(t) < 800, #encode(t))
  end)

  it("sends the whole table when the function uses _ENV as a value",
     function()
    local box = big_box()
    local f = fn("function(k) return _ENV[k] end", box)
    assert.is_true(#encode(f) > 100000)
    assert.equal(20000, rt(f)("big").k20000)
    f = fn("function() return function() return next(_ENV) ~= nil end end",
           box)
    assert.is_true(rt(f)()())
  end)

  it("refuses an unsendable global it reads, naming it", function()
    local co = coroutine.create(print)
    local f = fn("function() return c end", {c = co, other = 1})
    assert.matches("cannot send coroutine at global 'c' of function <sb:1>",
                   err_of(encode, f))
    -- one it does not read does not matter
    f = fn("function() return other end", {c = co, other = 1})
    assert.equal(1, rt(f)())
  end)

  it("refuses a globals section into a table that is no globals table",
     function()
    -- A forged message: a function's upvalue is a plain table, and a
    -- global is sent into it.  Only a message's own _ENV tables take them.
    local f = fn("function() return x end", {x = 1})
    local s = encode(f)
    -- its end: upvalue _ENV as T_SENV (16) without metatable, then the
    -- globals section: upvalue 1, "x", the integer 1, end
    local tail = "\16\0\1\1x\3\2\0"
    assert.equal(tail, s:sub(-#tail))
    assert.equal(1, decode(s)())
    local forged = s:sub(1, -#tail - 1) .. "\6" .. ("\0"):rep(9)
                   .. tail:sub(3)
    assert.matches("no globals table", err_of(decode, forged))
  end)
end)

describe("codec names", function()
  it("sends standard library values by name", function()
    assert.equal(math.sqrt, rt(math.sqrt))
    assert.equal(print, rt(print))
    assert.equal(string, rt(string))
    assert.equal(io.stdout, rt(io.stdout))
    assert.is_true(#encode(string) < 32)
    local r = rt({f = string.format, m = math})
    assert.equal(string.format, r.f)
    assert.equal(math, r.m)
  end)

  it("sends a require'd module by name", function()
    assert.equal(lpeg, rt(lpeg))
    assert.equal(lpeg.match, rt(lpeg.match))
    local function m(s) return lpeg.match(lpeg.P "a" ^ 1, s) end
    local g = rt(m)
    local _, up = debug.getupvalue(g, 1)
    assert.equal(lpeg, up)
    assert.equal(4, g("aaab"))
  end)

  it("notices modules loaded after the first encode", function()
    assert.is_table(rt({}))
    local mod = {f = function() return "late" end}
    package.loaded["spec_late_mod"] = mod
    assert.equal(mod.f, rt(mod.f))
    assert.equal(mod, rt(mod))
    package.loaded["spec_late_mod"] = nil
  end)

  it("does not send user globals by name", function()
    rawset(_G, "spec_global_tbl", {1, 2})
    local r = rt(spec_global_tbl) -- luacheck: ignore
    assert.are_not.equal(rawget(_G, "spec_global_tbl"), r)
    assert.equal(2, r[2])
    rawset(_G, "spec_global_tbl", nil)
  end)

  it("requires a module on the receiver when it is not loaded", function()
    local dir = os.tmpname()
    os.remove(dir)
    local fh = assert(io.open(dir .. ".bin", "wb"))
    local re = lpeg
    fh:write(encode(function(s) return re.match(re.C(re.P "b" ^ 1), s) end))
    fh:close()
    local script = assert(io.open(dir .. ".lua", "w"))
    script:write(([[
      assert(package.loaded.lpeg == nil, "lpeg preloaded")
      local codec = require "dlua.codec"
      local fh = assert(io.open(%q, "rb"))
      local f = codec.decode(fh:read("a"))
      fh:close()
      io.write(f("bbbc"), " ", tostring(package.loaded.lpeg ~= nil))
    ]]):format(dir .. ".bin"))
    script:close()
    local p = assert(io.popen(DLUA .. " " .. dir .. ".lua 2>&1"))
    local out = p:read("a")
    p:close()
    os.remove(dir .. ".bin")
    os.remove(dir .. ".lua")
    assert.equal("bbb true", out)
  end)
end)

describe("codec registered codecs", function()
  local src = setmetatable({}, {__mode = "k"})
  local function P(s)
    local p = lpeg.P(s)
    src[p] = s
    return p
  end

  it("refuses a userdata without a codec, naming its type", function()
    assert.equal("cannot send userdata (lpeg-pattern) at value",
                 err_of(encode, P "abc"))
  end)

  it("uses a codec registered from Lua", function()
    codec.register("lpeg-pattern", function(p) return src[p] end,
                   function(s) return P(s) end)
    local p = P "abc"
    local r = rt({p, p, k = p})
    assert.equal("userdata", type(r[1]))
    assert.are_not.equal(p, r[1])
    assert.equal(r[1], r[2])
    assert.equal(r[1], r.k)
    assert.equal(4, r[1]:match("abcd"))
    assert.is_nil(r[1]:match("xbc"))
  end)

  it("gives a registered codec precedence over names", function()
    codec.register("FILE*", function() return "out" end,
                   function(s) return s end)
    assert.equal("out", rt(io.stdout))
    codec.register("FILE*")
    assert.equal(io.stdout, rt(io.stdout))
  end)

  it("works for tables with a registered metatable", function()
    local mt = {__name = "spec.Vec"}
    debug.getregistry()["spec.Vec"] = mt
    codec.register("spec.Vec", function(v) return v[1] .. "," .. v[2] end,
                   function(s)
                     local a, b = s:match("(%d+),(%d+)")
                     return setmetatable({tonumber(a), tonumber(b), decoded = true}, mt)
                   end)
    local r = rt(setmetatable({3, 4}, mt))
    assert.is_true(r.decoded)
    assert.equal(4, r[2])
    assert.equal(mt, getmetatable(r))
  end)

  -- A custom value of the same type as the one before it does not repeat
  -- its type's name; values of two types, interleaved, each come back as
  -- their own.
  it("writes a type's name once for a run of its values", function()
    local A, B = {__name = "spec.TypeA"}, {__name = "spec.TypeB"}
    local reg = debug.getregistry()
    reg["spec.TypeA"], reg["spec.TypeB"] = A, B
    codec.register("spec.TypeA", function(v) return "a" .. v[1] end,
                   function(s) return setmetatable({s}, A) end)
    codec.register("spec.TypeB", function(v) return "b" .. v[1] end,
                   function(s) return setmetatable({s}, B) end)
    local function a(x) return setmetatable({x}, A) end
    local function b(x) return setmetatable({x}, B) end
    local v = {a(1), a(2), b(3), b(4), a(5), {a(6)}, b(7)}
    local r = rt(v)
    local want = {{"a1", A}, {"a2", A}, {"b3", B}, {"b4", B}, {"a5", A}}
    for i, w in ipairs(want) do
      assert.equal(w[1], r[i][1])
      assert.equal(w[2], getmetatable(r[i]))
    end
    assert.equal("a6", r[6][1][1])
    assert.equal(A, getmetatable(r[6][1]))
    assert.equal("b7", r[7][1])
    assert.equal(B, getmetatable(r[7]))
    local one, many = #encode({a(1)}), #encode({a(1), a(2), a(3)})
    assert.is_true(many - one < 2 * 8, ("%d bytes for 2 more"):format(many - one))
    codec.register("spec.TypeA")
    codec.register("spec.TypeB")
  end)

  it("reports an encoder that does not return a string", function()
    local mt = {__name = "spec.Bad"}
    debug.getregistry()["spec.Bad"] = mt
    codec.register("spec.Bad", function() return nil end, function() end)
    assert.matches("cannot send spec.Bad at field 'b' of value",
                   err_of(encode, {b = setmetatable({}, mt)}), 1, true)
  end)
end)

describe("codec refusals", function()
  it("names a coroutine's upvalue and function", function()
    local co = coroutine.create(print)
    local function job() return co end
    local line = debug.getinfo(job, "S").linedefined
    assert.equal(("cannot send coroutine at upvalue 'co' of function " ..
                  "<tests/codec_spec.lua:%d> (argument 2)"):format(line),
                 err_of(encode, job, {root = "argument 2"}))
  end)

  it("names the field of an open file", function()
    local fh = io.tmpfile()
    assert.equal("cannot send userdata (FILE*) at field 'fh' of argument 1",
                 err_of(encode, {fh = fh}, {root = "argument 1"}))
    assert.equal("cannot send userdata (FILE*) at [3].x of argument 1",
                 err_of(encode, {1, 2, {x = fh}}, {root = "argument 1"}))
    assert.equal('cannot send userdata (FILE*) at a["b c"][2] of value',
                 err_of(encode, {a = {["b c"] = {1, fh}}}))
    fh:close()
  end)

  it("defaults the root name to 'value'", function()
    assert.equal("cannot send coroutine at value",
                 err_of(encode, coroutine.create(print)))
  end)

  it("refuses light userdata", function()
    local function f() end
    local id = debug.upvalueid(function() return f end, 1)
    assert.equal("cannot send light userdata at field 'id' of value",
                 err_of(encode, {id = id}))
  end)

  it("refuses C functions with upvalues not reachable by name", function()
    local w = coroutine.wrap(function() end)
    assert.equal("cannot send C function with upvalues at field 'w' of value" ..
                 " (not reachable by name)", err_of(encode, {w = w}))
  end)

  it("refuses C functions not reachable by name", function()
    local seek = getmetatable(io.stdout).__index.seek
    assert.equal("cannot send C function at [1] of value (not reachable by name)",
                 err_of(encode, {seek}))
  end)

  it("names a refused key", function()
    assert.matches("cannot send coroutine at %[thread%]%(key%) of value",
                   err_of(encode, {[coroutine.create(print)] = 1}))
  end)

  it("names nested upvalues", function()
    local co = coroutine.create(print)
    local function inner() return co end
    local function outer() return inner end
    local e = err_of(encode, {job = outer}, {root = "argument 1"})
    assert.matches("^cannot send coroutine at upvalue 'co' of function " ..
                   "<tests/codec_spec.lua:%d+> %(upvalue 'inner' of function " ..
                   "<tests/codec_spec.lua:%d+> %(field 'job' of argument 1%)%)$", e)
  end)

  it("bounds nesting depth on encode", function()
    local t = {}
    for _ = 1, 250 do t = {t} end
    assert.matches("nesting deeper than 200 levels", err_of(encode, t))
    local ok = {}
    for _ = 1, 150 do ok = {ok} end
    assert.is_table(rt(ok))
  end)
end)

describe("codec data_only", function()
  it("refuses functions when encoding", function()
    assert.equal("cannot send function at field 'f' of value (data-only)",
                 err_of(encode, {f = function() end}, {data_only = true}))
  end)

  it("refuses function bytecode when decoding", function()
    local s = encode({f = function() end})
    assert.matches("function in data%-only input", err_of(decode, s, {data_only = true}))
    assert.is_function(decode(s).f)
  end)

  it("refuses by-name functions when decoding", function()
    assert.matches("function in data%-only input",
                   err_of(decode, encode(os.execute), {data_only = true}))
  end)

  it("still carries plain data", function()
    local r = rt({1, "x", {y = true}}, {data_only = true})
    assert.equal("x", r[2])
    assert.is_true(r[3].y)
  end)
end)

describe("codec decode safety", function()
  -- Layout of an encoded function without upvalues: 9 header bytes, tag,
  -- prototype kind, the 16-byte hash (bytes 12 to 27), then the bytecode.
  it("refuses a flipped bit in a function's bytecode (issue 21)", function()
    local script = os.tmpname()
    local fh = assert(io.open(script, "w"))
    fh:write([[
      local codec = require "dlua.codec"
      local e = codec.encode(function(x) return string.format("%d", x) end)
      local ok, err = pcall(codec.decode,
        e:sub(1, 60) .. string.char(e:byte(61) ~ 1) .. e:sub(62))
      io.write(tostring(ok), " ", tostring(err))
    ]])
    fh:close()
    local p = assert(io.popen(DLUA .. " " .. script .. " 2>&1; echo \" $?\""))
    local out = p:read("a")
    p:close()
    os.remove(script)
    assert.matches("^false codec: function bytecode does not match its hash", out)
    assert.matches(" 0\n$", out)
  end)

  it("refuses every flipped bit of a function's hash or bytecode", function()
    local up = {1}
    local e = encode(function(x) return up[1] + x end)
    local start, stop = 12, #e - 8
    for i = start, stop do
      for bit = 0, 7 do
        local s = e:sub(1, i - 1) .. string.char(e:byte(i) ~ (1 << bit)) ..
                  e:sub(i + 1)
        local ok, err = pcall(decode, s)
        assert.is_false(ok)
        assert.is_string(err)
      end
    end
    assert.equal(3, decode(e)(2))
  end)

  it("keys the closure cache by the hash of what was loaded", function()
    local function f() return "f" end
    local function g() return "g" end
    local ef, eg = encode(f), encode(g)
    assert.equal(ef:sub(1, 11), eg:sub(1, 11))
    -- f's hash in front of g's bytecode
    local poisoned = eg:sub(1, 11) .. ef:sub(12, 27) .. eg:sub(28)
    assert.matches("does not match its hash", err_of(decode, poisoned))
    assert.equal("f", decode(ef)())
    assert.equal("g", decode(eg)())
  end)
end)

describe("codec bad input", function()
  local sample = encode({1, -2.5, "str", {x = {true, false}}, k = {n = 1}})
  local fsample
  do
    local u = {7}
    fsample = encode({function() return u end, u})
  end

  it("fails cleanly on every prefix of an encoding", function()
    for _, s in ipairs({sample, fsample}) do
      for i = 0, #s - 1 do
        local ok, e = pcall(decode, s:sub(1, i))
        assert.is_false(ok)
        assert.matches("^codec: .+ at byte %d+$", e)
      end
      assert.is_table(decode(s))
    end
  end)

  it("rejects trailing bytes", function()
    assert.matches("trailing bytes", err_of(decode, sample .. "\0"))
  end)

  it("survives corrupt bytes in data-only mode", function()
    for i = 1, #sample do
      for _, b in ipairs({0, 1, 0x7f, 0x80, 0xff}) do
        local s = sample:sub(1, i - 1) .. string.char(b) .. sample:sub(i + 1)
        local ok, v = pcall(decode, s, {data_only = true})
        if s == sample then
          assert.is_true(ok, v)
        elseif i <= 9 then -- the header: magic, versions, number format
          assert.is_false(ok, ("byte %d = %d accepted"):format(i, b))
        end
        if ok then
          -- Other bytes may still make valid data: then it is data that
          -- travels again unchanged.
          assert.same(v, decode(encode(v, {data_only = true}),
                                {data_only = true}))
        else
          -- A clear error that says where, never a crash or a stray one.
          assert.is_string(v)
          local at = v:match("^codec: [%w ()%-]+ at byte (%d+)$")
          assert.is_truthy(at, v)
          assert.is_true(tonumber(at) <= #s, v)
        end
      end
    end
  end)

  it("rejects huge lengths without allocating them", function()
    local h = sample:sub(1, 9)
    assert.matches("truncated or corrupt",
                   err_of(decode, h .. "\5\255\255\255\255\15"))
    assert.matches("table size exceeds input",
                   err_of(decode, h .. "\6\255\255\255\127\0\0\0\0"))
  end)

  it("rejects another format version", function()
    local s = sample:sub(1, 3) .. "\9" .. sample:sub(5)
    assert.matches("unsupported format version 9 %(expected 2%)", err_of(decode, s))
  end)

  it("rejects another Lua version", function()
    local s = sample:sub(1, 4) .. "\247\1" .. sample:sub(7)
    assert.matches("another Lua version", err_of(decode, s))
  end)

  it("rejects bytes that are not a codec message", function()
    assert.matches("not a dlua codec message", err_of(decode, "hello world"))
    assert.matches("not a dlua codec message", err_of(decode, ""))
  end)

  it("bounds nesting depth on decode", function()
    local h = sample:sub(1, 9)
    local level = "\6\1\0\0\0\0\0\0\0"
    local s = h .. level:rep(300) .. "\0" .. ("\0"):rep(300)
    assert.matches("nesting deeper than 200 levels", err_of(decode, s))
    local ok = h .. level:rep(100) .. "\0" .. ("\0"):rep(100)
    assert.is_table(decode(ok))
  end)

  it("rejects bad references", function()
    local h = sample:sub(1, 9)
    assert.matches("bad reference", err_of(decode, h .. "\7\5"))
    assert.matches("unknown value tag", err_of(decode, h .. "\99"))
  end)
end)

describe("codec tokens (the bytes behind pure keys)", function()
  it("equal content gives equal tokens, other content other tokens", function()
    assert.equal(codec.token({1, "a", {x = 2}}), codec.token({1, "a", {x = 2}}))
    assert.are_not.equal(codec.token({1, "a", {x = 2}}),
                         codec.token({1, "a", {x = 3}}))
    -- what can be sent tokens as it encodes
    assert.equal(encode({1, "a"}), codec.token({1, "a"}))
  end)

  it("counts what cannot be sent by identity, where encode refuses", function()
    local co1, co2 = coroutine.create(print), coroutine.create(print)
    assert.matches("cannot send coroutine", err_of(encode, {co1}))
    assert.equal(codec.token({co1, 1}), codec.token({co1, 1}))
    assert.are_not.equal(codec.token({co1, 1}), codec.token({co2, 1}))
    local f = io.tmpfile()
    assert.equal(codec.token({f}), codec.token({f}))
    f:close()
  end)

  it("gives bytes that do not decode", function()
    assert.matches("unknown value tag",
                   err_of(decode, codec.token(coroutine.create(print))))
  end)
end)

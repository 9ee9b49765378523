--[[
dlua.keys -- the one owner of task keys: their format, the hash behind
pure keys, and the namer that gives a function its key prefix.  Used by
the client (submit, map, scatter) and by dlua.delayed.

  "<prefix>-<16 hex digits>"

  fresh(prefix)       a key no other call of this session makes: an 8-digit
                      session token and an 8-digit counter (keys of one
                      map call are made in C, runtime/lua/dl_cluster_lua.c,
                      from stem(prefix) and reserve(n), in the same format)
  hashed(prefix, s)   a key from the content s (dlua.core.hash, in C)
  pure(prefix, v)     a key from the content of v (dlua.codec.token: its
                      encoding, values that cannot be sent by identity)
  content(v)          the bytes pure() hashes, or nil
  name(fn, level)     a readable prefix for fn: a local or upvalue of the
                      caller at `level` (as for error()), a global, a
                      standard library function ("string.upper"), else
                      "lambda@<file>:<line>" ("lambda" for a C function)
]]

local core = require "dlua.core"
local codec = require "dlua.codec"

local getinfo, getlocal, getupvalue = debug.getinfo, debug.getlocal,
  debug.getupvalue
local pcall, next, ipairs, type, tostring, rawequal, setmetatable =
  pcall, next, ipairs, type, tostring, rawequal, setmetatable
local sformat, ssub, sgsub = string.format, string.sub, string.gsub
local hash, content_of = core.hash, codec.token
local pid = require("dlua.cluster").pid
local G = _G

local K = {}

-- A session token, so that two sessions talking to one cluster do not
-- make the same keys (Dask uses uuid4); not from math.random, which a
-- script may have seeded.
-- The pid makes it unique to this process: the client and every worker's
-- tasks (dlua.get_client) make keys, and processes started together may
-- see the same time and addresses.
local token = sformat("%08x", hash(tostring(pid()) .. ":" .. tostring({})
  .. tostring(os.time()) .. tostring(os.clock())) & 0xffffffff)
local counter = 0

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error

--- keys.fresh(prefix) -> "prefix-<token><counter>"
function K.fresh(prefix)
  counter = counter + 1
  return sformat("%s-%s%08x", prefix, token, counter)
end

--- keys.stem(prefix) -> "prefix-<token>": fresh keys are the stem and a
-- counter in 8 (or more) lower-case hex digits.
function K.stem(prefix) return prefix .. "-" .. token end

--- keys.reserve(n) -> first: counters first .. first + n - 1 are taken.
function K.reserve(n)
  local first = counter + 1
  counter = counter + n
  return first
end

--- keys.hashed(prefix, s) -> "prefix-<hash of s>"
function K.hashed(prefix, s)
  return sformat("%s-%016x", prefix, hash(s))
end

--- keys.content(v) -> the bytes that stand for v's content (dlua.codec's
-- token: its encoding, with what cannot be sent, a coroutine or a
-- userdata, by identity), or nil (nested too deep, say)
function K.content(v)
  local ok, bytes = pcall(content_of, v)
  if ok then return bytes end
  return nil
end

--- keys.pure(prefix, v) -> a key from v's content (fresh when v has
-- none, see content)
function K.pure(prefix, v)
  local ok, bytes = pcall(content_of, v)
  if ok then return sformat("%s-%016x", prefix, hash(bytes)) end
  return K.fresh(prefix)
end

-- Names -------------------------------------------------------------

local names = setmetatable({}, {__mode = "k"})   -- function -> name

local LIBS = {"string", "table", "math", "os", "io", "utf8", "coroutine",
              "debug"}

--- keys.lambda_label(fn) -> "lambda@<file>:<line>" where fn was defined
-- (the file's base name, characters other than letters, digits, '_' and
-- '.' replaced by '_'); "lambda" for a C function.
function K.lambda_label(fn)
  local info = type(fn) == "function" and getinfo(fn, "S")
  if not info or info.what == "C" then return "lambda" end
  local file = sgsub(info.short_src, "^.*/", "")
  file = sgsub(ssub(file, 1, 40), "[^%w_.]", "_")
  return sformat("lambda@%s:%d", file, info.linedefined)
end

--- keys.name(fn [, level]) -> a key prefix for fn (cached per function).
-- level: the stack level, counted from name's caller, whose locals and
-- upvalues are searched first (none when nil).  A callable value that is
-- not a function is named by its type.
function K.name(fn, level)
  local name = names[fn]
  if name then return name end
  if type(fn) ~= "function" then return type(fn) end
  local info = level and getinfo(level + 1, "f")
  if info then
    for i = 1, 250 do
      local n, v = getlocal(level + 1, i)
      if not n then break end
      if rawequal(v, fn) and ssub(n, 1, 1) ~= "(" then name = n break end
    end
    if not name and info.func then
      for i = 1, 255 do
        local n, v = getupvalue(info.func, i)
        if not n then break end
        if rawequal(v, fn) and n ~= "" then name = n break end
      end
    end
  end
  if not name then
    for k, v in next, G do
      if rawequal(v, fn) and type(k) == "string" then name = k break end
    end
  end
  if not name then
    for _, lib in ipairs(LIBS) do
      local t = G[lib]
      if type(t) == "table" then
        for k, v in next, t do
          if rawequal(v, fn) then name = lib .. "." .. k break end
        end
      end
      if name then break end
    end
  end
  name = name and sgsub(name, "[^%w_.]", "_") or K.lambda_label(fn)
  names[fn] = name
  return name
end

--- keys.known_name(fn) -> the name given to fn before, or nil
function K.known_name(fn) return names[fn] end

return K

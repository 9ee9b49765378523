--[[
dlua.pretty -- turn Lua values into readable text, for the REPL and for
people debugging task results.

  local pretty = require "dlua.pretty"
  pretty.format({1, 2, x = {y = "z"}})   --> { 1, 2, x = { y = "z" } }
  pretty.print(1, "a", nil)              -- writes: 1	"a"	nil

pretty.format(v [, opts]) returns a string; it never raises for any value.
  * Strings are quoted and escaped, so "1" and 1 look different.
  * Tables show their array part first, then the other keys sorted
    (numbers, then strings, then booleans, then anything else by its
    tostring); identifier keys are written `name = v`, others `[k] = v`.
  * A table that fits in opts.width columns is written on one line,
    otherwise one entry per line, indented by opts.indent.
  * Nesting deeper than opts.depth is written `{...}`; a table met again
    while it is being written (a cycle) is written `<cycle table: 0x...>`.
  * A value whose metatable has __tostring (dlua's Client, Future,
    Delayed...) is written with tostring; metatables are otherwise ignored
    (no __pairs, no __index), so formatting has no side effects.
  * At most opts.max_items entries of one table are written, then `...`.

opts (all optional):
  depth      nesting limit                     (default 5)
  width      line width for one-line tables    (default 80)
  indent     indentation of one level          (default "  ")
  max_items  entries shown per table           (default 200)

pretty.print(...) writes its arguments formatted, separated by tabs and
followed by a newline, to io.stdout.
]]

local type, tostring, next, select, ipairs = type, tostring, next, select, ipairs
local getmetatable, rawget, rawlen, pcall = getmetatable, rawget, rawlen, pcall
local sort, concat = table.sort, table.concat
local format, find, gsub, rep = string.format, string.find, string.gsub,
  string.rep
local mtype = math.type
local io = io

local DEFAULTS = { depth = 5, width = 80, indent = "  ", max_items = 200 }

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in
  local nil not or repeat return then true until while]]):gmatch("%a+") do
  KEYWORDS[w] = true
end

local ESCAPES = {
  ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t", ["\v"] = "\\v", ["\\"] = "\\\\",
  ['"'] = '\\"',
}

-- A Lua string literal that reads back as s.
local function quote(s)
  s = gsub(s, '[%c\\"\128-\255]', function(c)
    local e = ESCAPES[c]
    if e then return e end
    local b = c:byte()
    if b >= 128 then return c end   -- keep UTF-8 readable
    return format("\\%d", b)
  end)
  return '"' .. s .. '"'
end

-- tostring through __tostring, never raising.
local function safe_tostring(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return "<" .. type(v) .. " (__tostring failed)>"
end

local function has_tostring(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__tostring") ~= nil
end

local function scalar(v)
  local t = type(v)
  if t == "string" then return quote(v) end
  if t == "number" then
    if mtype(v) == "float" then
      if v ~= v then return "0/0" end
      if v == 1 / 0 then return "math.huge" end
      if v == -1 / 0 then return "-math.huge" end
    end
    return tostring(v)
  end
  if has_tostring(v) then return safe_tostring(v) end
  if t == "table" then return nil end
  return safe_tostring(v)
end

-- Sort order of keys that are not part of the array: numbers, strings,
-- booleans, then the rest.
local RANK = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  local ra, rb = RANK[ta] or 4, RANK[tb] or 4
  if ra ~= rb then return ra < rb end
  if ta == "number" or ta == "string" then return a < b end
  if ta == "boolean" then return (not a) and b end
  return safe_tostring(a) < safe_tostring(b)
end

local function key_text(k)
  if type(k) == "string" and find(k, "^[%a_][%w_]*$") and not KEYWORDS[k] then
    return k
  end
  return "[" .. (scalar(k) or safe_tostring(k)) .. "]"
end

local fmt

-- The entries of table t as a list of strings, each formatted at level.
local function entries(t, o, level, seen)
  local out, n = {}, rawlen(t)
  local shown = 0
  for i = 1, n do
    if shown >= o.max_items then
      out[#out + 1] = "..."
      return out
    end
    out[#out + 1] = fmt(rawget(t, i), o, level, seen)
    shown = shown + 1
  end
  local keys = {}
  for k in next, t do
    if not (mtype(k) == "integer" and k >= 1 and k <= n) then
      keys[#keys + 1] = k
    end
  end
  sort(keys, key_less)
  for _, k in ipairs(keys) do
    if shown >= o.max_items then
      out[#out + 1] = "..."
      break
    end
    out[#out + 1] = key_text(k) .. " = " .. fmt(rawget(t, k), o, level, seen)
    shown = shown + 1
  end
  return out
end

fmt = function(v, o, level, seen)
  local s = scalar(v)
  if s then return s end
  -- v is a table without __tostring.
  if seen[v] then return "<cycle " .. safe_tostring(v) .. ">" end
  if next(v) == nil then return "{}" end
  if level >= o.depth then return "{...}" end
  seen[v] = true
  local items = entries(v, o, level + 1, seen)
  seen[v] = nil
  local one = "{ " .. concat(items, ", ") .. " }"
  if #one + #o.indent * level <= o.width and not find(one, "\n", 1, true) then
    return one
  end
  local pad = rep(o.indent, level + 1)
  return "{\n" .. pad .. concat(items, ",\n" .. pad) .. "\n"
    .. rep(o.indent, level) .. "}"
end

-- The options in opts completed with the defaults.
local function options(opts)
  if opts == nil then return DEFAULTS end
  local o = {}
  for k, d in next, DEFAULTS do
    local v = opts[k]
    if v == nil then v = d end
    o[k] = v
  end
  return o
end

--- Format one value as text (see the top of this file).
local function format_value(v, opts)
  return fmt(v, options(opts), 0, {})
end

--- Write the arguments formatted, tab-separated, with a newline.
local function print_values(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do
    parts[i] = fmt((select(i, ...)), DEFAULTS, 0, {})
  end
  io.stdout:write(concat(parts, "\t"), "\n")
end

return {
  format = format_value,
  print = print_values,
  quote = quote,
}

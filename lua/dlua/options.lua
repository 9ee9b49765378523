--[[
dlua.options -- options objects (dlua.opts), the checks of option tables
("did you mean"), sizes (dlua.parse_bytes, dlua.format_bytes) and the
timeout check shared by every call that waits.  Re-exported by dlua.
]]

local fmt, concat, huge = string.format, table.concat, math.huge

local M = {}

-- ------------------------------------------------------------- options

local Opts = {__name = "dlua.Options"}
Opts.__index = Opts

-- Edit distance between two short strings (Levenshtein, a swap of two
-- neighbours counting as one edit), for the "did you mean" hint of a
-- misspelled option.
local function distance(a, b)
  local d = {}
  for i = 0, #a do d[i] = {[0] = i} end
  for j = 1, #b do d[0][j] = j end
  for i = 1, #a do
    local ca = a:byte(i)
    for j = 1, #b do
      local cb = b:byte(j)
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1,
                         d[i - 1][j - 1] + (ca == cb and 0 or 1))
      if i > 1 and j > 1 and ca == b:byte(j - 1) and a:byte(i - 1) == cb then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[#a][#b]
end

--- dlua._did_you_mean(name, known) -> " (did you mean 'x'?)" or "": the
-- closest key of the set `known` when it is close enough to be a typo.
local function did_you_mean(name, known)
  if type(name) ~= "string" then return "" end
  local lname = name:lower()
  local best, bestd
  for k in pairs(known) do
    if type(k) == "string" then
      local d = distance(lname, k)
      -- a shared start of 4 letters (retry, retries), or a name that is
      -- the start of the other (sched, scheduler), counts as close
      local p = 0
      while p < #lname and p < #k and lname:byte(p + 1) == k:byte(p + 1) do
        p = p + 1
      end
      if p >= 4 or (p >= 3 and p == math.min(#lname, #k)) then d = 1 end
      if not bestd or d < bestd or (d == bestd and k < best) then
        best, bestd = k, d
      end
    end
  end
  if best and bestd <= math.max(1, math.min(3, #name // 3)) then
    return fmt(" (did you mean '%s'?)", best)
  end
  return ""
end
M._did_you_mean = did_you_mean

-- Raise "<who>: unknown option 'x' (did you mean 'y'?)" for the first key
-- of t that is not in known; level as for error(), counted from the caller.
local function check_keys(t, known, who, level)
  for k in pairs(t) do
    if known[k] == nil then
      local shown = type(k) == "string" and fmt("'%s'", k)
        or fmt("%s key %s", type(k), tostring(k))
      error(fmt("%s: unknown option %s%s", who, shown, did_you_mean(k, known)),
            level + 1)
    end
  end
end
M._check_keys = check_keys

-- error(msg, level), but raised at the first frame outside dlua's own Lua
-- modules (sources "@[dlua]/..."): the user's line, even when the module
-- reached the check through tail calls or helpers of its own (where a
-- fixed level would name a dlua file, or no line at all).  Every module
-- binds its local `error` to this, so the level a module passes does not
-- need to be right, only non-zero.  A C function met on the way up ends
-- the walk with no position, as Lua's own luaL_argerror does for a
-- function called from C (so `pcall(f, bad)` gives no line, and a module
-- that catches and re-raises with a level adds the user's line once).
-- With level 0, or when the stack has no frame outside dlua (a coroutine
-- of dlua's own), it is plain error(msg, level).
local function user_error(msg, level)
  if level ~= 0 then
    local k = 2
    while true do
      local info = debug.getinfo(k, "S")
      if not info then break end
      if info.what == "C" or info.source:sub(1, 8) ~= "@[dlua]/" then
        error(msg, k)
      end
      k = k + 1
    end
  end
  error(msg, level and level ~= 0 and level + 1 or level)
end
M._user_error = user_error

local known_opts = {
  key = "string", pure = "boolean", priority = "number", retries = "number",
  timeout = "number", workers = "table", allow_other_workers = "boolean",
  order = "number", name = "string", scheduler = "string",
  progress = "boolean",
}

--- dlua.opts{...} -> an options object for submit/map/compute/persist.
function M.opts(t)
  if t ~= nil and type(t) ~= "table" then
    error("dlua.opts expects a table, got " .. type(t), 2)
  end
  t = t or {}
  if getmetatable(t) == Opts then return t end
  check_keys(t, known_opts, "dlua.opts", 2)
  for k, v in pairs(t) do
    local want = known_opts[k]
    if type(v) ~= want then
      error(fmt("dlua.opts: option '%s' must be a %s, got %s", k, want,
                type(v)), 2)
    end
  end
  for _, k in ipairs{"key", "name"} do
    if t[k] == "" then
      error(fmt("dlua.opts: option '%s' must be a non-empty string", k), 2)
    end
  end
  local r = t.retries
  if r and (math.type(r) ~= "integer" or r < 0) then
    error("dlua.opts: option 'retries' must be a non-negative integer, got "
          .. tostring(r), 2)
  end
  local to = t.timeout
  if to and not (to >= 0 and to < huge) then
    error("dlua.opts: option 'timeout' must be a non-negative number of "
          .. "seconds, got " .. tostring(to), 2)
  end
  if t.workers then
    for i, w in pairs(t.workers) do
      if math.type(i) ~= "integer" or math.type(w) ~= "integer" then
        error("dlua.opts: option 'workers' must be an array of worker ids "
              .. "(integers)", 2)
      end
    end
  end
  return setmetatable(t, Opts)
end

local function is_opts(v) return getmetatable(v) == Opts end
M.is_opts = is_opts

-- Does v look like options written as a plain table (the Dask habit of
-- keyword arguments): a non-empty table without a metatable whose keys are
-- all option names, each holding a value of the option's type?
local function looks_like_opts(v)
  if type(v) ~= "table" or getmetatable(v) ~= nil or next(v) == nil then
    return false
  end
  for k, x in next, v do
    local want = known_opts[k]
    if not want or type(x) ~= want then return false end
  end
  return true
end

-- "{retries = 2}" rendered back for an error message.
local function opts_text(v)
  local parts = {}
  for k, x in pairs(v) do
    parts[#parts + 1] = fmt("%s = %s", k,
                            type(x) == "string" and fmt("%q", x) or tostring(x))
  end
  table.sort(parts)
  return "{" .. concat(parts, ", ") .. "}"
end

-- Split a trailing options object off an argument list.
local function split_opts(n, ...)
  if n > 0 then
    local last = select(n, ...)
    if is_opts(last) then return last, n - 1 end
  end
  return nil, n
end

-- --------------------------------------------------------------- sizes

local units = {
  b = 1, kb = 1e3, mb = 1e6, gb = 1e9, tb = 1e12,
  kib = 1024, mib = 1024 ^ 2, gib = 1024 ^ 3, tib = 1024 ^ 4,
  k = 1e3, m = 1e6, g = 1e9, t = 1e12,
}

-- The largest size dlua accepts: 1 EiB, far beyond any machine, well
-- inside a 64-bit integer.
local MAX_BYTES = 1 << 60

--- dlua.parse_bytes("512MB") -> 512000000.  Strict: raises on anything else
-- than a number with an optional unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB).
function M.parse_bytes(s)
  if math.type(s) == "integer" then
    if s <= 0 then error("memory size must be positive, got " .. s, 2) end
    return s
  end
  if type(s) == "number" then
    if not (s >= 1) then
      error("memory size must be a positive number of bytes, got "
            .. tostring(s), 2)
    end
    local n = math.tointeger(math.floor(s))
    if not n or n > MAX_BYTES then
      error(fmt("memory size %s is too large (at most %s)", tostring(s),
                "1 EiB"), 2)
    end
    return n
  end
  if type(s) ~= "string" then
    error("memory size must be a number or a string like '512MB', got "
          .. type(s), 2)
  end
  local num, unit = s:match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
  local mult = num and units[unit:lower()] or (num and unit == "" and 1)
  if not mult then
    error(fmt("malformed memory size '%s' (expected e.g. '512MB', '2GiB' "
              .. "or a number of bytes)", s), 2)
  end
  local x = tonumber(num) * mult
  if x < 1 then error(fmt("memory size '%s' must be positive", s), 2) end
  if x > MAX_BYTES then
    error(fmt("memory size '%s' is too large (at most %s)", s,
              "1 EiB"), 2)
  end
  return math.tointeger(math.floor(x))
end

--- dlua.format_bytes(n) -> "1.50 GiB"
function M.format_bytes(n)
  if type(n) ~= "number" then
    user_error("dlua.format_bytes: expects a number of bytes, got " .. type(n),
      2)
  end
  local u = {"B", "KiB", "MiB", "GiB", "TiB"}
  local i = 1
  while n >= 1024 and i < #u do n = n / 1024; i = i + 1 end
  if i == 1 then return fmt("%d B", n) end
  return fmt("%.2f %s", n, u[i])
end

-- level: as for error(), counted from check_timeout's caller (default 2:
-- the caller's caller).
local function check_timeout(t, what, level)
  if t ~= nil and (type(t) ~= "number" or not (t >= 0)) then
    error(fmt("%s: timeout must be a non-negative number of seconds, got %s",
              what, type(t) == "number" and tostring(t) or type(t)),
          (level or 2) + 1)
  end
end
-- For the client.
M.check_timeout, M.looks_like_opts = check_timeout, looks_like_opts
M.opts_text, M.split_opts = opts_text, split_opts

return M

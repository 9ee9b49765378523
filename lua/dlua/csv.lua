--[==[
dlua.csv -- CSV parsing with an LPeg grammar (RFC 4180), for dlua.bag's
read_csv and for users' own parsing.

  local csv = require "dlua.csv"
  local rows = csv.parse('id,name\n1,"Smith, J."\n', {types = {id = "integer"}})
  print(rows[1].id, rows[1].name)            --> 1   Smith, J.
  for _, r in ipairs(csv.records('a;"b\nc"\r\n', {sep = ";"})) do
    print(r[1], r[2])                        --> a   b<newline>c
  end
  print(csv.format({"x", 'say "hi"', "1,2"}))  --> x,"say ""hi""","1,2"

Grammar: a record is fields separated by `sep`; a field is either quoted
(`quote`, any bytes including separators and newlines, a doubled quote
standing for one) or unquoted (no separator, quote, CR or LF).  Records
end with CRLF, LF or CR; the last may end the text without one.  Blank
lines are skipped.  Bytes are bytes: non-UTF-8 text passes through as Lua
strings.

  csv.grammar([sep [, quote]]) -> an LPeg pattern matching one record and
      capturing a table of its fields (for use inside users' grammars).
  csv.records(text [, opts]) -> array of records (arrays of strings);
      raises "name:line:col: ..." at the first malformed field.
  csv.parse(text [, opts]) -> rows, header, nskipped
      opts: sep = ",", quote = '"', header = true (rows are tables keyed by
      the first record's names; false: rows are arrays), types = {name =
      "string" | "number" | "integer" | "boolean"} (by name, or by position
      without a header) or "auto" (fields that read as numbers become
      numbers), on_error = "raise" (default) | "skip" (rows with the wrong
      number of fields or a value not of its type are skipped and counted
      in nskipped), name = "file.csv" (used in messages).  An empty field of
      a typed column is nil.
  csv.format(record [, opts]) -> one line (without its newline), fields
      quoted where needed, so records(format(r)) == {r}.
]==]

local lpeg = require "lpeg"

local P, S, C, Cs, Ct, Cp = lpeg.P, lpeg.S, lpeg.C, lpeg.Cs, lpeg.Ct,
  lpeg.Cp
local error, type, tostring, tonumber, pairs =
  error, type, tostring, tonumber, pairs
local sfind, sformat, ssub, sgsub, slower = string.find, string.format,
  string.sub, string.gsub, string.lower
local tointeger, tconcat = math.tointeger, table.concat

local M = {}

local grammars = {}             -- sep .. "\0" .. quote -> {record, file}

-- errors name the user's line, whatever the call path (see options.lua);
-- the CSV fuzzer loads this module alone, with plain error
local has_options, options = pcall(require, "dlua.options")
local error = has_options and options._user_error or error

local function check_char(v, what, default, level)
  if v == nil then return default end
  if type(v) ~= "string" or #v ~= 1 or v == "\r" or v == "\n" then
    error(sformat("dlua.csv: %s must be one character (not CR or LF), "
      .. "got %s", what, type(v) == "string" and sformat("%q", v)
      or type(v)), level + 1)
  end
  return v
end

local function build(sep, quote)
  local id = sep .. "\0" .. quote
  local g = grammars[id]
  if g then return g end
  local Q, SEP = P(quote), P(sep)
  local nl = P"\r\n" + P"\n" + P"\r"
  local quoted = Q * Cs(((1 - Q) + (Q * Q) / quote)^0) * Q
  local unquoted = C((1 - (SEP + Q + S"\r\n"))^0)
  local field = quoted + unquoted
  local record = Ct(field * (SEP * field)^0)
  -- {start, record, stop, start, record, stop, ...} then the position where
  -- matching stopped (the text's length + 1 when all of it parsed)
  local one = Cp() * record * Cp()
  local file = Ct((one * nl)^0 * one^-1) * Cp()
  g = {record = record, file = file}
  grammars[id] = g
  return g
end

--- csv.grammar([sep [, quote]]) -> LPeg pattern capturing one record.
function M.grammar(sep, quote)
  sep = check_char(sep, "sep", ",", 2)
  quote = check_char(quote, "quote", '"', 2)
  if sep == quote then error("dlua.csv: sep and quote must differ", 2) end
  return build(sep, quote).record
end

local OPTS = {sep = true, quote = true, header = true, types = true,
              on_error = true, name = true}
local TYPES = {string = true, number = true, integer = true,
               boolean = true}

local function check_opts(opts, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error("dlua.csv: options must be a table, got " .. type(opts), level + 1)
  end
  for k in pairs(opts) do
    if not OPTS[k] then
      error(sformat("dlua.csv: unknown option '%s'", tostring(k)), level + 1)
    end
  end
  local t = opts.types
  if t ~= nil and t ~= "auto" then
    if type(t) ~= "table" then
      error("dlua.csv: types must be a table {column = type} or \"auto\"",
        level + 1)
    end
    for k, v in pairs(t) do
      if not TYPES[v] then
        error(sformat("dlua.csv: type of column '%s' must be \"string\", "
          .. "\"number\", \"integer\" or \"boolean\", got %s", tostring(k),
          tostring(v)), level + 1)
      end
    end
  end
  local oe = opts.on_error
  if oe ~= nil and oe ~= "raise" and oe ~= "skip" then
    error("dlua.csv: on_error must be \"raise\" or \"skip\", got "
      .. tostring(oe), level + 1)
  end
  if opts.name ~= nil and type(opts.name) ~= "string" then
    error("dlua.csv: name must be a string", level + 1)
  end
  return opts
end

-- Line and column (1-based) of byte position pos, counting from a cached
-- (pos0, line0) pair that only moves forward.
local function locator(text)
  local lpos, line = 1, 1
  return function(pos)
    if pos < lpos then lpos, line = 1, 1 end
    while true do
      local nl = sfind(text, "\n", lpos, true)
      if not nl or nl >= pos then break end
      line, lpos = line + 1, nl + 1
    end
    -- a lone CR also ends a line
    local s = lpos
    while true do
      local cr = sfind(text, "\r", s, true)
      if not cr or cr >= pos - 1 then break end
      if ssub(text, cr + 1, cr + 1) ~= "\n" then
        line, lpos = line + 1, cr + 1
      end
      s = cr + 1
    end
    return line, pos - lpos + 1
  end
end

-- Parse text into the flat {start, record, stop, ...} list; raises at the
-- first malformed field.
local function scan(text, sep, quote, name, level)
  if type(text) ~= "string" then
    error("dlua.csv: text must be a string, got " .. type(text), level + 1)
  end
  local g = build(sep, quote)
  local list, stop = g.file:match(text)
  if stop <= #text then
    local line, col = locator(text)(stop)
    local prev = ssub(text, stop - 1, stop - 1)
    local near
    if ssub(text, stop, stop) ~= quote then
      near = "bytes after a closing quote"
    elseif stop == 1 or prev == sep or prev == "\n" or prev == "\r" then
      near = "a quoted field without its closing quote"
    else
      near = "a quote inside an unquoted field"
    end
    error(sformat("%s:%d:%d: malformed CSV: %s", name or "csv", line, col,
      near), level + 1)
  end
  return list
end

--- csv.records(text [, opts]) -> array of records (arrays of strings).
function M.records(text, opts)
  opts = check_opts(opts, 2)
  local sep = check_char(opts.sep, "sep", ",", 2)
  local quote = check_char(opts.quote, "quote", '"', 2)
  local list = scan(text, sep, quote, opts.name, 2)
  local out, n = {}, 0
  for i = 1, #list, 3 do
    if list[i] ~= list[i + 2] then n = n + 1; out[n] = list[i + 1] end
  end
  return out
end

local BOOL = {["true"] = true, ["false"] = false, ["1"] = true,
              ["0"] = false, t = true, f = false, yes = true, no = false}

-- Convert field s to type ty: value, or nil and false when it does not fit.
local function convert(s, ty)
  if ty == "string" then return s, true end
  if s == "" then return nil, true end
  if ty == "number" then
    local v = tonumber(s)
    return v, v ~= nil
  elseif ty == "integer" then
    local v = tonumber(s)
    v = v and tointeger(v)
    return v, v ~= nil
  elseif ty == "boolean" then
    local v = BOOL[slower(s)]
    return v, v ~= nil
  end
  -- auto
  local v = tonumber(s)
  if v ~= nil and sfind(s, "^%s*[-+]?[%d.]") then return v, true end
  return s, true
end

--- csv.parse(text [, opts]) -> rows, header, nskipped
function M.parse(text, opts)
  opts = check_opts(opts, 2)
  local sep = check_char(opts.sep, "sep", ",", 2)
  local quote = check_char(opts.quote, "quote", '"', 2)
  local name = opts.name or "csv"
  local skip = opts.on_error == "skip"
  local types = opts.types
  local list = scan(text, sep, quote, name, 2)
  local where = locator(text)
  local header, first = nil, 1
  if opts.header ~= false then
    while first <= #list and list[first] == list[first + 2] do
      first = first + 3
    end
    header = list[first + 1]
    first = first + 3
    if not header then return {}, nil, 0 end
  end
  local ncol = header and #header
  -- per column: key in the row and type
  local keys, tys = {}, {}
  if header then
    for j = 1, ncol do
      keys[j] = header[j]
      tys[j] = types == "auto" and "auto" or (types and types[header[j]])
        or "string"
    end
  end
  local rows, nrows, nskipped = {}, 0, 0
  local function bad(pos, msg, ...)
    if skip then nskipped = nskipped + 1; return end
    local line = where(pos)
    error(sformat("%s:%d: " .. msg, name, line, ...), 3)
  end
  for i = first, #list, 3 do
    local start, rec = list[i], list[i + 1]
    if start ~= list[i + 2] then
      local n = #rec
      if not ncol then
        -- no header: the first record fixes the number of fields
        ncol = n
        for j = 1, n do
          keys[j] = j
          tys[j] = types == "auto" and "auto" or (types and types[j])
            or "string"
        end
      end
      if n ~= ncol then
        bad(start, "expected %d fields, got %d", ncol, n)
      else
        local row, ok = {}, true
        for j = 1, n do
          local v, fits = convert(rec[j], tys[j])
          if not fits then
            ok = false
            bad(start, "column %s (field %d): expected %s, got %q",
              header and sformat("'%s'", keys[j]) or tostring(j), j, tys[j],
              rec[j])
            break
          end
          row[keys[j]] = v
        end
        if ok then nrows = nrows + 1; rows[nrows] = row end
      end
    end
  end
  return rows, header, nskipped
end

--- csv.format(record [, opts]) -> line with fields quoted where needed.
function M.format(rec, opts)
  opts = check_opts(opts, 2)
  local sep = check_char(opts.sep, "sep", ",", 2)
  local quote = check_char(opts.quote, "quote", '"', 2)
  if type(rec) ~= "table" then
    error("dlua.csv: format expects a table of fields, got " .. type(rec), 2)
  end
  local n = #rec
  local out = {}
  local qpat, qq = sgsub(quote, "%p", "%%%0"), sgsub(quote .. quote, "%%", "%%%%")
  for j = 1, n do
    local s = rec[j]
    if s == nil then s = "" end
    s = tostring(s)
    if sfind(s, sep, 1, true) or sfind(s, quote, 1, true)
       or sfind(s, "[\r\n]") then
      s = quote .. sgsub(s, qpat, qq) .. quote
    end
    out[j] = s
  end
  -- one empty field alone would read as a blank line: quote it
  if n == 1 and out[1] == "" then out[1] = quote .. quote end
  return tconcat(out, sep)
end

M.TYPES = TYPES
return M

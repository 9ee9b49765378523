--[==[
dlua.display -- rich output for Jupyter notebooks (`dlua kernel`), plain
text everywhere else.

  local dlua = require "dlua"
  dlua.display(client)                 -- the cluster as an HTML table
  dlua.display(fut)                    -- key and status, coloured
  local id = dlua.display("0%", {display_id = true})
  dlua.display("100%", {display_id = id, update = true})  -- same output

  dlua.display(v [, opts]) -> display id or nil
    Shows v as a cell output: in the kernel a display_data message with
    the MIME bundle of v (see bundle below); elsewhere v formatted by
    dlua.pretty on stdout, as print would.  opts (a plain table):
      display_id  true: make a new id; a string: use that id.  An output
                  with an id can be replaced later with update = true.
      update      replace the output that has display_id (in place)
                  instead of adding one.
    Returns the display id (in the kernel, when one was asked for).

  display.bundle(v) -> {["text/plain"] = ..., ["text/html"] = ..., ...}
    The MIME bundle of v: text/plain is dlua.pretty.format(v), and a value
    whose metatable has one of these metamethods also gets that type:
      __html(v)      -> HTML text       (text/html)
      __svg(v)       -> SVG text        (image/svg+xml)
      __png(v)       -> PNG bytes       (image/png, base64-encoded here)
      __markdown(v)  -> Markdown text   (text/markdown)
    dlua's Client, LocalCluster and Future have HTML built in; a Graph
    (what d:visualize() returns in the kernel) has SVG, drawn by Graphviz.

  display.graph(dot_text) -> a dlua.Graph: tostring(g) and g.dot are the DOT
    text; in a notebook it shows as SVG (Graphviz's `dot` must be
    installed).

  display.is_kernel() -> whether this process is a dlua Jupyter kernel.
]==]

local type, tostring, pcall, error, select, rawget, getmetatable,
  setmetatable, ipairs, require = type, tostring, pcall, error,
  select, rawget, getmetatable, setmetatable, ipairs, require
local fmt, gsub, byte, sub, rep = string.format, string.gsub,
  string.byte, string.sub, string.rep
local concat, sort = table.concat, table.sort
local io_open, io_popen, io_stdout = io.open, io.popen, io.stdout
local os_tmpname, os_remove, os_time, os_clock = os.tmpname, os.remove,
  os.time, os.clock
local getinfo, getlocal = debug.getinfo, debug.getlocal
local random = math.random
local G = _G

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error
local _ENV = nil -- luacheck: ignore  (every global is captured above)

local M = {
  _kernel = nil, -- {publish=, clear_output=}: set by `dlua kernel`
  _cells = {},   -- the source of each executed cell, by chunk name
}

-- ------------------------------------------------------------- helpers

local HTML_ESC = {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                  ['"'] = "&quot;", ["'"] = "&#39;"}

--- HTML-escape tostring(s).
local function esc(s)
  return (gsub(tostring(s), "[&<>\"']", HTML_ESC))
end
M.escape = esc

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = n // 262144 % 64 + 1
    local c2 = n // 4096 % 64 + 1
    local c3 = n // 64 % 64 + 1
    local c4 = n % 64 + 1
    out[#out + 1] = sub(B64, c1, c1) .. sub(B64, c2, c2)
      .. (b and sub(B64, c3, c3) or "=") .. (c and sub(B64, c4, c4) or "=")
  end
  return concat(out)
end
M._base64 = base64

local function pretty() return require "dlua.pretty" end
local function dl() return require "dlua" end

local function fmt_bytes(n) return dl().format_bytes(n or 0) end

-- ------------------------------------------------- built-in HTML views

local STYLE = "border-collapse:collapse;text-align:left;font-size:90%"
local CELL = "padding:2px 10px 2px 0"

local function kv_table(rows)
  local out = {fmt('<table style="%s">', STYLE)}
  for _, r in ipairs(rows) do
    out[#out + 1] = fmt('<tr><th style="%s">%s</th><td style="%s">%s</td>'
      .. "</tr>", CELL, esc(r[1]), CELL, r[2])
  end
  out[#out + 1] = "</table>"
  return concat(out)
end

local function link(url)
  if not url then return "(off)" end
  return fmt('<a href="%s" target="_blank">%s</a>', esc(url), esc(url))
end

-- The cluster part of the Client and LocalCluster views.
local function cluster_html(cluster, title, extra)
  if cluster.handle:closed() then
    return fmt("<div><strong>%s</strong>: closed</div>", esc(title))
  end
  local ws = cluster.handle:workers()
  sort(ws, function(a, b) return a.id < b.id end)
  local threads, mem = 0, 0
  for _, w in ipairs(ws) do
    threads = threads + w.nthreads
    mem = mem + w.memory_limit
  end
  local rows = extra or {}
  rows[#rows + 1] = {"Scheduler", esc(cluster.address)}
  rows[#rows + 1] = {"Dashboard", link(cluster.dashboard_link)}
  rows[#rows + 1] = {"Workers", tostring(#ws)}
  rows[#rows + 1] = {"Total threads", tostring(threads)}
  rows[#rows + 1] = {"Total memory", esc(fmt_bytes(mem))}
  local out = {fmt('<div class="dlua-cluster"><h3 style="margin:4px 0">%s'
    .. "</h3>", esc(title)), kv_table(rows)}
  out[#out + 1] = fmt('<details><summary>Workers (%d)</summary>'
    .. '<table style="%s"><tr>', #ws, STYLE)
  for _, h in ipairs{"Worker", "PID", "Threads", "Memory", "Limit",
                     "Stored", "Spilled"} do
    out[#out + 1] = fmt('<th style="%s">%s</th>', CELL, h)
  end
  out[#out + 1] = "</tr>"
  for _, w in ipairs(ws) do
    out[#out + 1] = fmt("<tr>" .. rep('<td style="' .. CELL .. '">%s</td>', 7)
      .. "</tr>", w.id, w.pid, w.nthreads, esc(fmt_bytes(w.rss)),
      esc(fmt_bytes(w.memory_limit)), esc(fmt_bytes(w.managed)),
      esc(fmt_bytes(w.spilled)))
  end
  out[#out + 1] = "</table></details></div>"
  return concat(out)
end

local STATUS_COLOUR = {
  finished = "#2e7d32", error = "#c62828", lost = "#c62828",
  cancelled = "#ef6c00", pending = "#757575", processing = "#1565c0",
  released = "#757575",
}

local builtin = {
  ["dlua.Client"] = function(c)
    if c.handle:closed() then return "<div><strong>Client</strong>: closed"
      .. "</div>" end
    return cluster_html(c.cluster, "Client",
      {{"Connection", "LocalCluster"}})
  end,
  ["dlua.LocalCluster"] = function(c)
    return cluster_html(c, "LocalCluster")
  end,
  ["dlua.Future"] = function(f)
    if not f.client.handle:closed() then f.client:_pump(0) end
    local status = require("dlua.cluster").fstatus(f) or "released"
    return fmt('<div class="dlua-future"><strong>Future:</strong> %s '
      .. '<span style="color:%s;font-weight:bold">status: %s</span></div>',
      esc(f.key), STATUS_COLOUR[status] or "#000000", esc(status))
  end,
}

-- ------------------------------------------------------------ bundles

local MIME = {
  {"__html", "text/html"},
  {"__svg", "image/svg+xml"},
  {"__png", "image/png"},
  {"__markdown", "text/markdown"},
}

--- display.bundle(v) -> MIME bundle of v; raises when a metamethod does.
function M.bundle(v)
  local b = {["text/plain"] = pretty().format(v)}
  local mt = getmetatable(v)
  if type(mt) ~= "table" then return b end
  for _, m in ipairs(MIME) do
    local f = rawget(mt, m[1])
    if f ~= nil then
      local r = f(v)
      if type(r) ~= "string" then
        error(fmt("dlua.display: %s returned %s, not a string", m[1],
          type(r)), 2)
      end
      b[m[2]] = m[2] == "image/png" and base64(r) or r
    end
  end
  local name = rawget(mt, "__name")
  if b["text/html"] == nil and builtin[name] then
    b["text/html"] = builtin[name](v)
  end
  return b
end

--- The bundle of a cell's values (execute_result).  One value: its
-- bundle, with a failing metamethod reported and plain text kept; several:
-- their texts, tab-separated, as the REPL prints them.
function M.result(...)
  local n = select("#", ...)
  if n == 1 then
    local v = ...
    local ok, b = pcall(M.bundle, v)
    if ok then return b end
    io_stdout:write("dlua.display: ", tostring(b), "\n")
    return {["text/plain"] = pretty().format(v)}
  end
  local parts = {}
  for i = 1, n do parts[i] = pretty().format((select(i, ...))) end
  return {["text/plain"] = concat(parts, "\t")}
end

local function new_id()
  return fmt("dlua-%x-%x-%06x", os_time(), (os_clock() * 1e6) // 1,
    random(0, 0xffffff))
end

--- dlua.display(v [, opts]) -> display id or nil; see the top.
function M.display(v, opts)
  if opts ~= nil and (type(opts) ~= "table" or getmetatable(opts) ~= nil) then
    error("dlua.display: opts must be a plain table, got " .. type(opts), 2)
  end
  local id = opts and opts.display_id
  if id ~= nil and id ~= true and type(id) ~= "string" then
    error("dlua.display: display_id must be true or a string", 2)
  end
  if opts and opts.update and type(id) ~= "string" then
    error("dlua.display: update needs the display_id (a string) of the "
      .. "output to replace", 2)
  end
  if id == true then id = new_id() end
  local k = M._kernel
  if not k then
    io_stdout:write(pretty().format(v), "\n")
    return id
  end
  local ok, b = pcall(M.bundle, v)
  if not ok then error(b, 2) end
  k.publish(b, id, opts and opts.update or false)
  return id
end

function M.is_kernel() return M._kernel ~= nil end

-- ------------------------------------------------------------- graphs

local Graph = {__name = "dlua.Graph"}
Graph.__index = Graph
Graph.__tostring = function(g) return g.dot end

Graph.__svg = function(g)
  local tmp = os_tmpname()
  local f = io_open(tmp, "w")
  if not f then error("dlua.display: cannot write a temporary file", 2) end
  f:write(g.dot)
  f:close()
  local p = io_popen("dot -Tsvg " .. tmp .. " 2>/dev/null")
  local svg = p and p:read("a") or ""
  if p then p:close() end
  os_remove(tmp)
  if svg == "" then
    error("dlua.display: drawing the graph needs Graphviz's 'dot' "
      .. "(apt-get install graphviz)", 2)
  end
  return (gsub(svg, "^.-(<svg)", "%1")) -- no XML prolog inside HTML
end

--- display.graph(dot) -> a dlua.Graph shown as SVG in a notebook.
function M.graph(dot)
  if type(dot) ~= "string" then
    error("dlua.display.graph: expects DOT text, got " .. type(dot), 2)
  end
  return setmetatable({dot = dot}, Graph)
end

-- ------------------------------------------------------------ inspect

-- t[k] as completion sees it: raw fields, then __index tables; no code
-- runs.  Strings index the string library.
local function field(t, k)
  for _ = 1, 20 do
    if type(t) == "string" then t = G.string end
    if type(t) ~= "table" then return nil end
    local v = rawget(t, k)
    if v ~= nil then return v end
    local mt = getmetatable(t)
    t = type(mt) == "table" and rawget(mt, "__index") or nil
  end
end

-- The comment lines right above line n of text, or nil.
local function doc_above(text, n)
  local lines, i = {}, 0
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do
    i = i + 1
    lines[i] = l
  end
  local doc = {}
  for j = n - 1, 1, -1 do
    local c = lines[j] and lines[j]:match("^%s*%-%-+%s?(.*)$")
    if not c then break end
    doc[#doc + 1] = c
  end
  if #doc == 0 then return nil end
  local r = {}
  for j = #doc, 1, -1 do r[#r + 1] = doc[j] end
  return concat(r, "\n")
end

local function source_text(src)
  if sub(src, 1, 1) == "@" then
    local f = io_open(sub(src, 2), "r")
    if not f then return nil end
    local t = f:read("a")
    f:close()
    return t
  end
  if sub(src, 1, 1) == "=" then return M._cells[sub(src, 2)] end
  return src
end

--- display.inspect(name) -> text about the value that name (a.b:c) has,
-- or nil when it has none: a function's signature, where it is defined
-- and the comment above it; other values' type and pretty text.
function M.inspect(name)
  if type(name) ~= "string" then return nil end
  local v = G
  for part in name:gmatch("[^.:]+") do
    v = field(v, part)
    if v == nil then return nil end
  end
  if v == G then return nil end
  if type(v) ~= "function" then
    return fmt("%s: %s\n%s", name, type(v),
      pretty().format(v, {depth = 2, max_items = 20}))
  end
  local info = getinfo(v, "Su")
  if info.what == "C" then
    return fmt("%s(...)\nA built-in (C) function.", name)
  end
  local params = {}
  for i = 1, info.nparams do params[i] = getlocal(v, i) end
  if info.isvararg then params[#params + 1] = "..." end
  local out = {fmt("%s(%s)", name, concat(params, ", ")),
               fmt("Defined at %s:%d", info.short_src, info.linedefined)}
  local text = source_text(info.source)
  local doc = text and doc_above(text, info.linedefined)
  if doc then out[#out + 1] = doc end
  return concat(out, "\n")
end

return M

--[[ dlua.delayed.visualize -- a graph as Graphviz DOT text, or a picture
  made by Graphviz's `dot`: d:visualize() and dlua.delayed.visualize. ]]

local B = require "dlua.delayed.build"
local NODE, FN, SPEC, methods = B.NODE, B.FN, B.SPEC, B.methods
local C = require "dlua.delayed.compile"
local compiled, dep_keys, key_prefix = C.compiled, C.dep_keys, C.key_prefix

local error, type = error, type
local sformat, sgsub, tconcat = string.format, string.gsub, table.concat
local io_open, os_execute, os_remove, os_tmpname =
  io.open, os.execute, os.remove, os.tmpname

local loaded = package.loaded

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error
local _ENV = nil -- luacheck: ignore  (every global is captured above)

local function dot_id(s)
  return '"' .. sgsub(s, '["\\]', "\\%0") .. '"'
end

local function to_dot(order)
  local out = {"digraph dlua {", "  graph [rankdir=BT];"}
  for i = 1, #order do
    local ref = order[i]
    local k = ref.key
    local node = ref[NODE]
    local id = dot_id(k)
    out[#out + 1] = sformat("  %s [label=%s, shape=box, tooltip=%s];", id,
      dot_id(key_prefix(k)), id)
    if node[FN] then
      local fid = dot_id(k .. " (fn)")
      out[#out + 1] = sformat("  %s [label=%s, shape=circle, tooltip=%s];",
        fid, dot_id(node[SPEC].fname or node[SPEC].name), id)
      out[#out + 1] = sformat("  %s -> %s;", fid, id)
      local keys = dep_keys(node)
      for j = 1, #keys do
        out[#out + 1] = sformat("  %s -> %s;", dot_id(keys[j]), fid)
      end
    end
  end
  out[#out + 1] = "}"
  return tconcat(out, "\n") .. "\n"
end

local function shell_quote(s)
  return "'" .. sgsub(s, "'", "'\\''") .. "'"
end

local FORMATS = {svg = true, png = true, pdf = true, jpg = true,
  jpeg = true, gif = true}

--[=[ visualize(list, [filename [, {optimize=}]]).  Without a filename,
  returns the DOT text.  "x.dot"/"x.gv" writes DOT; "x.svg", "x.png",
  "x.pdf" run Graphviz `dot`.  Returns filename; raises when the file
  cannot be written or Graphviz is not installed. ]=]
local function visualize(roots, filename, opts)
  local text = to_dot(compiled(roots, opts, "visualize"))
  if filename == nil then
    -- In a notebook (dlua kernel): a dlua.Graph, drawn inline as SVG.
    local disp = loaded["dlua.display"]
    if disp and disp._kernel then return disp.graph(text) end
    return text
  end
  if type(filename) ~= "string" then
    error("dlua.delayed: visualize filename must be a string", 3)
  end
  local ext = (filename:match("%.([%w]+)$") or ""):lower()
  if ext == "dot" or ext == "gv" then
    local f, err = io_open(filename, "w")
    if not f then error("dlua.delayed: visualize: " .. err, 3) end
    f:write(text)
    f:close()
    return filename
  end
  if not FORMATS[ext] then
    error(sformat("dlua.delayed: visualize: unknown file type '%s' "
      .. "(use .dot, .svg, .png or .pdf)", filename), 3)
  end
  if not os_execute("command -v dot >/dev/null 2>&1") then
    error(sformat("dlua.delayed: visualize: writing '%s' needs Graphviz's "
      .. "'dot' command, which is not installed (apt-get install graphviz; "
      .. "or write .dot text, which needs nothing)", filename), 3)
  end
  local tmp = os_tmpname()
  local f, err = io_open(tmp, "w")
  if not f then error("dlua.delayed: visualize: " .. err, 3) end
  f:write(text)
  f:close()
  local ok = os_execute(sformat("dot -T%s -o %s %s", ext,
    shell_quote(filename), shell_quote(tmp)))
  os_remove(tmp)
  if not ok then
    error("dlua.delayed: visualize: graphviz 'dot' failed to write "
      .. filename, 3)
  end
  return filename
end

function methods.visualize(d, filename, opts)
  local r = visualize({d}, filename, opts) -- not a tail call: error levels
  return r
end

return {visualize = visualize}

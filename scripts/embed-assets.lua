-- Generate a C file holding the dashboard's pages, scripts and styles
-- (runtime/dashboard/assets/*), so the scheduler serves them with no files
-- installed.  Each file becomes one dl_asset (see runtime/dashboard/dl_dashboard.h).
-- usage: lua5.4 scripts/embed-assets.lua OUT.c runtime/dashboard/assets/x.html ...
local out = assert(arg[1], "usage: embed-assets.lua OUT.c FILE...")

local types = {
  html = "text/html; charset=utf-8",
  js = "text/javascript; charset=utf-8",
  css = "text/css; charset=utf-8",
  svg = "image/svg+xml",
  png = "image/png",
}

local parts = { '#include <stddef.h>\n#include "dl_dashboard.h"\n' }
local entries = {}
local names = {}
for i = 2, #arg do names[#names + 1] = arg[i] end
table.sort(names)
for i, path in ipairs(names) do
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  local name = path:match("([^/]+)$")
  local ext = name:match("%.(%w+)$")
  local ctype = assert(types[ext], "embed-assets: unknown file type: " .. path)
  local bytes = {}
  for j = 1, #data do bytes[#bytes + 1] = string.byte(data, j) end
  local lines = {}
  for j = 1, #bytes, 20 do
    lines[#lines + 1] = table.concat(bytes, ",", j, math.min(j + 19, #bytes))
  end
  local id = "asset_" .. i
  parts[#parts + 1] = ("static const char %s[] = {\n%s%s0};\n"):format(
    id, table.concat(lines, ",\n"), #bytes > 0 and ",\n" or "")
  entries[#entries + 1] = ('  {"%s", "%s", %s, %d},\n'):format(
    name, ctype, id, #data)
end
parts[#parts + 1] = "const dl_asset dl_assets[] = {\n"
  .. table.concat(entries) .. "  {NULL, NULL, NULL, 0}\n};\n"
local f = assert(io.open(out, "wb"))
f:write(table.concat(parts))
f:close()

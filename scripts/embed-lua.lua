-- Generate a C file holding dlua's Lua modules, so require "dlua" works
-- from any directory and in embedding hosts with no files installed.
-- usage: lua5.4 scripts/embed-lua.lua OUT.c lua/dlua/init.lua lua/dlua/x.lua ...
local out = assert(arg[1], "usage: embed-lua.lua OUT.c FILE...")
local parts = { '#include <stddef.h>\n#include "dl_runtime.h"\n' }
local entries = {}
for i = 2, #arg do
  local path = arg[i]
  local f = assert(io.open(path, "rb"))
  local src = f:read("a")
  f:close()
  local name = path:match("lua/(.-)%.lua$"):gsub("/", ".")
  name = name:gsub("%.init$", "")
  local bytes = {}
  for j = 1, #src do bytes[#bytes + 1] = string.byte(src, j) end
  local id = "src_" .. (i - 1)
  parts[#parts + 1] = ("static const char %s[] = {%s, 0};\n"):format(
    id, table.concat(bytes, ","))
  entries[#entries + 1] = ('  {"%s", %s, %d},\n'):format(name, id, #src)
end
parts[#parts + 1] = "const dl_luasrc dl_luasrcs[] = {\n"
  .. table.concat(entries) .. "  {NULL, NULL, 0}\n};\n"
local f = assert(io.open(out, "wb"))
f:write(table.concat(parts))
f:close()

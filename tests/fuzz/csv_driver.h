/*
** csv_driver.h -- runs dlua.csv's LPeg grammar on fuzzed bytes, for the
** fuzzer (fuzz_csv.c) and the C test that replays its findings
** (tests/c/lua/test_csv.c).
**
** The first byte of an input picks the separator and the quote; the rest
** is the text.  csv.records must either give records or fail with a
** "malformed CSV" message (never another error, never a crash); records
** written back with csv.format must read as the same records; csv.parse
** with a header, automatic types and on_error = "skip" must not raise.
** The module is loaded from lua/dlua/csv.lua (run from the repository
** root) and LPeg from Lua's C path.
*/
#ifndef csv_driver_h
#define csv_driver_h

#include <stddef.h>
#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static const char csvdrv_check[] =
    "local csv = ...\n"
    "local SEPS, QUOTES = {',', ';', '\\t', '|', ' '}, {'\"', \"'\", '#'}\n"
    "local function same(a, b)\n"
    "  if #a ~= #b then return false end\n"
    "  for i = 1, #a do\n"
    "    if #a[i] ~= #b[i] then return false end\n"
    "    for j = 1, #a[i] do if a[i][j] ~= b[i][j] then return false end end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "return function (s)\n"
    "  local b = s:byte(1) or 0\n"
    "  local o = {sep = SEPS[b % #SEPS + 1],\n"
    "             quote = QUOTES[(b // #SEPS) % #QUOTES + 1]}\n"
    "  local text = s:sub(2)\n"
    "  local ok, recs = pcall(csv.records, text, o)\n"
    "  if not ok then\n"
    "    if type(recs) ~= 'string' or not recs:find('malformed CSV', 1, true)\n"
    "    then error('unexpected error: ' .. tostring(recs), 0) end\n"
    "    return\n"
    "  end\n"
    "  local lines = {}\n"
    "  for i, r in ipairs(recs) do lines[i] = csv.format(r, o) end\n"
    "  for _, eol in ipairs{'\\n', '\\r\\n'} do\n"
    "    local again = csv.records(table.concat(lines, eol), o)\n"
    "    if not same(recs, again) then error('round trip differs', 0) end\n"
    "  end\n"
    "  o.types, o.on_error = 'auto', 'skip'\n"
    "  csv.parse(text, o)\n"
    "  o.header = false\n"
    "  csv.parse(text, o)\n"
    "end\n";

/* A state holding the check function in its registry slot 'csvdrv';
   NULL (with a message on stderr) when csv.lua or LPeg cannot load. */
static lua_State *csvdrv_state(void) {
  lua_State *L = luaL_newstate();
  if (L == NULL) return NULL;
  luaL_openlibs(L);
  if (luaL_loadfile(L, "lua/dlua/csv.lua") != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK ||
      luaL_loadstring(L, csvdrv_check) != LUA_OK) {
    fprintf(stderr, "csv driver: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "csv driver: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  lua_setfield(L, LUA_REGISTRYINDEX, "csvdrv");
  return L;
}

/* Run the check on one input: 0 when it holds, -1 with the message on
   stderr when it does not. */
static int csvdrv_one(lua_State *L, const unsigned char *data, size_t size) {
  int rc;
  lua_getfield(L, LUA_REGISTRYINDEX, "csvdrv");
  lua_pushlstring(L, (const char *)data, size);
  rc = lua_pcall(L, 1, 0, 0);
  if (rc != LUA_OK) {
    fprintf(stderr, "csv driver: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}

#endif

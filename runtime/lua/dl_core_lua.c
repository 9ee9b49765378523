/*
** dl_core_lua.c -- the "dlua.core" module: small C services for the Lua
** side (clock, the key hash).
*/
#include <time.h>

#include <lauxlib.h>

#include "dl_map.h"
#include "dl_runtime.h"
#include "dlua.h"

double dlua_time(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* dlua.time() -> seconds on a monotonic clock (float). */
static int core_time(lua_State *L) {
  lua_pushnumber(L, dlua_time());
  return 1;
}

/* dlua.core.hash(s) -> integer: the 64-bit dl_hash of the bytes of s, the
   one hash behind task keys (lua/dlua/keys.lua). */
static int core_hash(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_pushinteger(L, (lua_Integer)dl_hash(s, n));
  return 1;
}

static const luaL_Reg core_funcs[] = {
  {"time", core_time},
  {"hash", core_hash},
  {NULL, NULL}
};

int luaopen_dlua_core(lua_State *L) {
  luaL_newlib(L, core_funcs);
  lua_pushliteral(L, DLUA_VERSION_STRING);
  lua_setfield(L, -2, "version");
  return 1;
}

/*
** dl_core_lua.c -- the "dlua.core" module: small C services for the Lua
** side (clock, sizes).
*/
#include <time.h>

#include <lauxlib.h>

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

static const luaL_Reg core_funcs[] = {
  {"time", core_time},
  {NULL, NULL}
};

int luaopen_dlua_core(lua_State *L) {
  luaL_newlib(L, core_funcs);
  lua_pushliteral(L, DLUA_VERSION_STRING);
  lua_setfield(L, -2, "version");
  return 1;
}

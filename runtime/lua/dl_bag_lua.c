/*
** dl_bag_lua.c -- the "dlua.bagio" module: the file-system services that
** dlua.bag needs and Lua's io library lacks (glob).
*/
#include <glob.h>
#include <string.h>

#include <lauxlib.h>

#include "dl_runtime.h"

/* Push an array of the paths of the glob_t at index 1.  [-0, +1, m] */
static int copy_paths(lua_State *L) {
  glob_t *g = (glob_t *)lua_touserdata(L, 1);
  size_t i;
  lua_createtable(L, (int)g->gl_pathc, 0);
  for (i = 0; i < g->gl_pathc; i++) {
    lua_pushstring(L, g->gl_pathv[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/*
** bagio.glob(pattern) -> sorted array of the paths matching pattern (POSIX
** glob(3), no brace or tilde expansion); an empty array when nothing
** matches; nil and a message when the directory cannot be read.
** [-0, +1|2, m]
*/
static int bagio_glob(lua_State *L) {
  const char *pat = luaL_checkstring(L, 1);
  glob_t g;
  int rc;
  memset(&g, 0, sizeof g);
  rc = glob(pat, GLOB_ERR, NULL, &g);
  if (rc == GLOB_NOMATCH) {
    globfree(&g);
    lua_newtable(L);
    return 1;
  }
  if (rc != 0) {
    globfree(&g);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", pat,
                    rc == GLOB_NOSPACE ? "out of memory" : "cannot read a "
                                                           "directory");
    return 2;
  }
  /* The copy may raise (memory): run it protected, so glob's memory is
     freed on every path before an error propagates. */
  lua_pushcfunction(L, copy_paths);
  lua_pushlightuserdata(L, &g);
  rc = lua_pcall(L, 1, 1, 0);
  globfree(&g);
  if (rc != LUA_OK) return lua_error(L);
  return 1;
}

static const luaL_Reg bagio_funcs[] = {
  {"glob", bagio_glob},
  {NULL, NULL}
};

int luaopen_dlua_bagio(lua_State *L) {
  luaL_newlib(L, bagio_funcs);
  return 1;
}

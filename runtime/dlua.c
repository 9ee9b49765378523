#include <stdio.h>
#include <lauxlib.h>
#include "dlua.h"
int main(int argc, char **argv) {
  int rc = dlua_worker_main(argc, argv);
  lua_State *L;
  if (rc >= 0) return rc;
  L = luaL_newstate();
  dlua_openlibs(L);
  if (argc > 1 && luaL_dofile(L, argv[1])) { fprintf(stderr, "%s\n", lua_tostring(L, -1)); return 1; }
  lua_close(L);
  return 0;
}

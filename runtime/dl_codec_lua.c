/* placeholder */
#include "dl_runtime.h"
int luaopen_dlua_codec(lua_State *L) { lua_newtable(L); return 1; }

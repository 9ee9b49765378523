/*
** dl_nolua.h -- forced into every source of the layers that must not know
** Lua (see the Makefile's LUA_LAYERS).  Their include path has no Lua
** headers, and Lua's central names are poisoned here, so that neither an
** include nor a stray use of the API compiles.
*/
#ifndef dl_nolua_h
#define dl_nolua_h
#pragma GCC poison lua_State lua_CFunction luaL_Buffer
#endif

/*
** dl_runtime.h -- internal runtime services shared by the binding files:
** the process-wide registry of host modules, embedded Lua sources, and the
** open functions of dlua's C submodules.
*/
#ifndef dl_runtime_h
#define dl_runtime_h

#include <lua.h>

/* One Lua module compiled into the library (generated file). */
typedef struct dl_luasrc {
  const char *name; /* module name, e.g. "dlua.delayed" */
  const char *src;
  size_t len;
} dl_luasrc;
extern const dl_luasrc dl_luasrcs[];

/* Apply the host's dlua_preload/dlua_register entries to L.  [-0, +0, e] */
void dl_runtime_apply_host(lua_State *L);

/* C submodules, each returning its table.  [-0, +1, e] */
int luaopen_dlua_core(lua_State *L);
int luaopen_dlua_codec(lua_State *L);
int luaopen_dlua_cluster(lua_State *L);
int luaopen_dlua_ndarray(lua_State *L);
int luaopen_dlua_bagio(lua_State *L);
int luaopen_dlua_framec(lua_State *L);

/* Register the ndarray codec in L (dl_ndarray_lua.c).  [-0, +0, m] */
void dl_ndarray_register(lua_State *L);
/* Register the data frame codec in L (dl_frame_lua.c).  [-0, +0, m] */
void dl_frame_register(lua_State *L);

#endif

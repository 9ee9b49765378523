/*
** dl_codec_names.c -- the by-name registry: the index of values reachable
** by name (standard library, loaded modules, registered metatables), and the
** custom codecs registered for userdata.
*/
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "dl_codec_int.h"

const char dl_codec_keys[7] = {'n', 'c', 'd', 's', 'l', 'g', 'e'};


/* Push registry[key] (a table), creating it (optionally weak-keyed). */
void dlc_reg_table(lua_State *L, const void *key, int weak) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    if (weak) {
      lua_createtable(L, 0, 1);
      lua_pushliteral(L, "k");
      lua_setfield(L, -2, "__mode");
      lua_setmetatable(L, -2);
    }
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  }
}

/* Index v under name unless it has one; v at -1, name at -2 (kept). */
static void index_one(lua_State *L, int idx, int vi, int ni) {
  int t = lua_type(L, vi);
  if (t != LUA_TTABLE && t != LUA_TFUNCTION && t != LUA_TUSERDATA) return;
  lua_pushvalue(L, vi);
  if (lua_rawget(L, idx) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, vi);
  lua_pushvalue(L, ni);
  lua_rawset(L, idx);
}

/*
** Build the reverse index value -> name over package.loaded: each module by
** its name first, then the string-keyed fields of module tables as
** "mod\0field".  Of _G only C functions are indexed (the standard library;
** user globals are data).  Pushes the index.
*/
static void build_names(lua_State *L, int loaded) {
  int idx, pass;
  lua_newtable(L);
  idx = lua_gettop(L);
  for (pass = 0; pass < 2; pass++) {
    lua_pushnil(L);
    while (lua_next(L, loaded)) {
      int mod = lua_gettop(L);
      if (lua_type(L, mod - 1) != LUA_TSTRING) {
        lua_pop(L, 1);
        continue;
      }
      if (pass == 0) {
        index_one(L, idx, mod, mod - 1);
      } else if (lua_type(L, mod) == LUA_TTABLE) {
        int isg = strcmp(lua_tostring(L, mod - 1), "_G") == 0;
        lua_pushnil(L);
        while (lua_next(L, mod)) {
          if (lua_type(L, -2) == LUA_TSTRING &&
              (!isg || lua_iscfunction(L, -1))) {
            lua_pushvalue(L, mod - 1);
            lua_pushlstring(L, "\0", 1);
            lua_pushvalue(L, -4);
            lua_concat(L, 3);
            index_one(L, idx, lua_gettop(L) - 1, lua_gettop(L));
            lua_pop(L, 1);
          }
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
    }
  }
}

/* __newindex of package.loaded: store, then drop the name index. */
static int loaded_newindex(lua_State *L) {
  lua_settop(L, 3);
  lua_rawset(L, 1);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_KEY) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_rawseti(L, -2, 2);
  }
  return 0;
}

/*
** Push the name index, rebuilt when package.loaded gains modules.  The
** cache is {count, index, hook}: when package.loaded has no metatable we
** give it one whose __newindex drops the index (require stores new modules
** with a plain assignment); under a foreign metatable we count entries.
*/
void dlc_get_names(lua_State *L) {
  lua_Integer n = -1;
  int loaded, cache;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  loaded = lua_gettop(L);
  dlc_reg_table(L, &NAMES_KEY, 0);
  cache = loaded + 1;
  if (lua_type(L, loaded) == LUA_TTABLE) {
    if (!lua_getmetatable(L, loaded)) {
      lua_createtable(L, 0, 1);
      lua_pushcfunction(L, loaded_newindex);
      lua_setfield(L, -2, "__newindex");
      lua_pushvalue(L, -1);
      lua_rawseti(L, cache, 3);
      lua_pushvalue(L, -1);
      lua_setmetatable(L, loaded);
      lua_pushnil(L);
      lua_rawseti(L, cache, 2);
    }
    lua_rawgeti(L, cache, 3);
    if (!lua_rawequal(L, -1, -2)) {
      n = 0;
      lua_pushnil(L);
      while (lua_next(L, loaded)) {
        n++;
        lua_pop(L, 1);
      }
    }
    lua_settop(L, cache);
  }
  if (lua_rawgeti(L, cache, 2) == LUA_TTABLE &&
      (n < 0 || (lua_rawgeti(L, cache, 1), lua_tointeger(L, -1) == n))) {
    lua_settop(L, cache + 1);
  } else {
    lua_settop(L, cache);
    if (lua_type(L, loaded) == LUA_TTABLE)
      build_names(L, loaded);
    else
      lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawseti(L, cache, 2);
    lua_pushinteger(L, n);
    lua_rawseti(L, cache, 1);
  }
  lua_replace(L, loaded);
  lua_settop(L, loaded);
}

/* ------------------------------------------------------------ register */

/* Register (or with both NULL remove) a C codec for tname.  [-0, +0, m] */
void dl_codec_register(lua_State *L, const char *tname, dl_ud_encoder enc,
                       dl_ud_decoder dec) {
  ccodec *c;
  dlc_reg_table(L, &CODECS_KEY, 0);
  if (enc == NULL && dec == NULL) {
    lua_pushnil(L);
    lua_setfield(L, -2, tname);
    lua_pop(L, 1);
    return;
  }
  c = (ccodec *)lua_newuserdatauv(L, sizeof *c, 0);
  c->enc = enc;
  c->dec = dec;
  lua_setfield(L, -2, tname);
  lua_pop(L, 1);
}

/*
** Register Lua functions enc (at stack index ei) and dec (di) as the codec
** for tname.  [-0, +0, m]
*/
void dl_codec_register_lua(lua_State *L, const char *tname, int ei, int di) {
  ei = lua_absindex(L, ei);
  di = lua_absindex(L, di);
  dlc_reg_table(L, &CODECS_KEY, 0);
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, ei);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, di);
  lua_rawseti(L, -2, 2);
  lua_setfield(L, -2, tname);
  lua_pop(L, 1);
}


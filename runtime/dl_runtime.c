/*
** dl_runtime.c -- libdlua's public entry points: opening states with dlua's
** libraries, the embedded-module searcher, host registrations, and the
** dlua_Runtime object for embedding hosts.
*/
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "dl_buf.h"
#include "dl_runtime.h"
#include "dlua.h"

struct dlua_Runtime {
  lua_State *L;
  char err[1024];
};

/* Host registrations: modules (is_module) or global functions. */
typedef struct hostreg {
  char *name;
  lua_CFunction f;
  int is_module;
} hostreg;

static hostreg *hostregs;
static int nhostregs;

const char *dlua_version(void) { return DLUA_VERSION_STRING; }

static int add_hostreg(const char *name, lua_CFunction f, int is_module) {
  hostreg *n;
  size_t len;
  if (name == NULL || *name == '\0' || f == NULL) return DLUA_ERRARG;
  n = dl_realloc(hostregs, sizeof(*n) * (size_t)(nhostregs + 1));
  if (n == NULL) return DLUA_ERRMEM;
  hostregs = n;
  len = strlen(name) + 1;
  n[nhostregs].name = dl_realloc(NULL, len);
  if (n[nhostregs].name == NULL) return DLUA_ERRMEM;
  memcpy(n[nhostregs].name, name, len);
  n[nhostregs].f = f;
  n[nhostregs].is_module = is_module;
  nhostregs++;
  return DLUA_OK;
}

int dlua_preload(const char *name, lua_CFunction luaopen) {
  return add_hostreg(name, luaopen, 1);
}

int dlua_register(const char *name, lua_CFunction f) {
  return add_hostreg(name, f, 0);
}

void dl_runtime_apply_host(lua_State *L) {
  int i;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (i = 0; i < nhostregs; i++) {
    if (hostregs[i].is_module) {
      lua_pushcfunction(L, hostregs[i].f);
      lua_setfield(L, -2, hostregs[i].name);
    } else {
      lua_pushcfunction(L, hostregs[i].f);
      lua_setglobal(L, hostregs[i].name);
    }
  }
  lua_pop(L, 1);
}

const char *dl_runtime_self_exe(void) {
  static char path[PATH_MAX];
  if (path[0] == '\0') {
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
    if (n <= 0) return NULL;
    path[n] = '\0';
  }
  return path;
}

/* Loader for an embedded module: upvalue 1 is the index into dl_luasrcs. */
static int embedded_loader(lua_State *L) {
  const dl_luasrc *m = &dl_luasrcs[lua_tointeger(L, lua_upvalueindex(1))];
  char chunkname[128];
  snprintf(chunkname, sizeof chunkname, "@[dlua]/%s.lua", m->name);
  if (luaL_loadbuffer(L, m->src, m->len, chunkname) != LUA_OK)
    return lua_error(L);
  lua_pushstring(L, m->name);
  lua_call(L, 1, 1);
  return 1;
}

/* package.searchers entry: finds modules compiled into the library. */
static int embedded_searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int i;
  for (i = 0; dl_luasrcs[i].name != NULL; i++) {
    if (strcmp(dl_luasrcs[i].name, name) == 0) {
      lua_pushinteger(L, i);
      lua_pushcclosure(L, embedded_loader, 1);
      lua_pushfstring(L, "[dlua]/%s.lua", name);
      return 2;
    }
  }
  lua_pushfstring(L, "no embedded dlua module '%s'", name);
  return 1;
}

void dlua_openlibs(lua_State *L) {
  luaL_openlibs(L);
  /* C submodules are preloaded; the Lua ones come from the searcher. */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_dlua_core);
  lua_setfield(L, -2, "dlua.core");
  lua_pushcfunction(L, luaopen_dlua_codec);
  lua_setfield(L, -2, "dlua.codec");
  lua_pushcfunction(L, luaopen_dlua_cluster);
  lua_setfield(L, -2, "dlua.cluster");
  lua_pop(L, 1);
  /* Insert the embedded searcher right after the preload searcher. */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");
  {
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1), i;
    for (i = n; i >= 2; i--) {
      lua_rawgeti(L, -1, i);
      lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, embedded_searcher);
    lua_rawseti(L, -2, 2);
  }
  lua_pop(L, 2);
  dl_runtime_apply_host(L);
}

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  return dl_realloc(ptr, nsize);
}

/* Keep the message on top of the stack, with a traceback, as rt->err. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static int finish(dlua_Runtime *rt, int status) {
  lua_State *L = rt->L;
  if (status == LUA_OK) {
    rt->err[0] = '\0';
    return DLUA_OK;
  }
  snprintf(rt->err, sizeof rt->err, "%s",
           lua_isstring(L, -1) ? lua_tostring(L, -1) : "(error object)");
  lua_pop(L, 1);
  switch (status) {
    case LUA_ERRSYNTAX: return DLUA_ERRSYNTAX;
    case LUA_ERRMEM: return DLUA_ERRMEM;
    case LUA_ERRFILE: return DLUA_ERRFILE;
    default: return DLUA_ERRRUN;
  }
}

static int protected_openlibs(lua_State *L) {
  const dlua_Options *opt = lua_touserdata(L, 1);
  dlua_openlibs(L);
  if (opt != NULL) {
    /* Default options for LocalCluster / Client() in this runtime. */
    lua_newtable(L);
    if (opt->n_workers > 0) {
      lua_pushinteger(L, opt->n_workers);
      lua_setfield(L, -2, "n_workers");
    }
    if (opt->memory_limit > 0) {
      lua_pushinteger(L, (lua_Integer)opt->memory_limit);
      lua_setfield(L, -2, "memory_limit");
    }
    if (opt->worker_exe != NULL) {
      lua_pushstring(L, opt->worker_exe);
      lua_setfield(L, -2, "worker_exe");
    }
    lua_setfield(L, LUA_REGISTRYINDEX, "dlua.defaults");
    if (opt->start_cluster) {
      lua_getglobal(L, "require");
      lua_pushliteral(L, "dlua");
      lua_call(L, 1, 1);
      lua_getfield(L, -1, "Client");
      lua_call(L, 0, 0);
      lua_pop(L, 1);
    }
  }
  return 0;
}

dlua_Runtime *dlua_open(const dlua_Options *opt, char *err, size_t errlen) {
  dlua_Runtime *rt = dl_realloc(NULL, sizeof *rt);
  int status;
  if (rt == NULL) {
    if (err && errlen) snprintf(err, errlen, "dlua_open: out of memory");
    return NULL;
  }
  rt->err[0] = '\0';
  rt->L = lua_newstate(l_alloc, NULL);
  if (rt->L == NULL) {
    dl_free(rt);
    if (err && errlen) snprintf(err, errlen, "dlua_open: out of memory");
    return NULL;
  }
  lua_pushcfunction(rt->L, msghandler);
  lua_pushcfunction(rt->L, protected_openlibs);
  lua_pushlightuserdata(rt->L, (void *)opt);
  status = lua_pcall(rt->L, 1, 0, -3);
  if (status != LUA_OK) {
    if (err && errlen)
      snprintf(err, errlen, "dlua_open: %s", lua_tostring(rt->L, -1));
    lua_close(rt->L);
    dl_free(rt);
    return NULL;
  }
  lua_pop(rt->L, 1);
  return rt;
}

lua_State *dlua_state(dlua_Runtime *rt) { return rt ? rt->L : NULL; }

static int docall(dlua_Runtime *rt, int status) {
  lua_State *L = rt->L;
  int base;
  if (status != LUA_OK) return finish(rt, status);
  base = lua_gettop(L);
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  status = lua_pcall(L, 0, 0, base);
  lua_remove(L, base);
  return finish(rt, status);
}

int dlua_dostring(dlua_Runtime *rt, const char *chunk, const char *chunkname) {
  if (rt == NULL) return DLUA_ERRARG;
  if (chunk == NULL) {
    snprintf(rt->err, sizeof rt->err, "dlua_dostring: chunk is NULL");
    return DLUA_ERRARG;
  }
  return docall(rt, luaL_loadbuffer(rt->L, chunk, strlen(chunk),
                                    chunkname ? chunkname : "=dlua"));
}

int dlua_dofile(dlua_Runtime *rt, const char *path) {
  if (rt == NULL) return DLUA_ERRARG;
  if (path == NULL) {
    snprintf(rt->err, sizeof rt->err, "dlua_dofile: path is NULL");
    return DLUA_ERRARG;
  }
  return docall(rt, luaL_loadfile(rt->L, path));
}

const char *dlua_errmsg(dlua_Runtime *rt) { return rt ? rt->err : ""; }

void dlua_close(dlua_Runtime *rt) {
  if (rt == NULL) return;
  lua_close(rt->L); /* __gc of clients/clusters shuts their processes down */
  dl_free(rt);
}

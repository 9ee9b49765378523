/*
** dl_runtime.c -- libdlua's public entry points: opening states with dlua's
** libraries, the embedded-module searcher, host registrations, and the
** dlua_Runtime object for embedding hosts.
*/
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "dl_buf.h"
#include "dl_codec.h"
#include "dl_runtime.h"
#include "dl_server.h"
#include "dlua.h"

struct dlua_Runtime {
  lua_State *L;
  char *err; /* owned (dl_realloc); NULL means no error */
};

/* Host registrations, applied to every state dlua_openlibs opens. */
enum { REG_GLOBAL, REG_MODULE, REG_CODEC };
typedef struct hostreg {
  char *name; /* owned */
  lua_CFunction f, g; /* the function, module opener, or codec enc / dec */
  int kind;
} hostreg;

static hostreg *hostregs;
static int nhostregs;

const char *dlua_version(void) { return DLUA_VERSION_STRING; }

void dlua_interrupt(int on) { dl_server_interrupt(on); }

int dlua_stop_clusters(void) { return dl_server_stop_all(); }

/* Add or replace the registration of name of this kind. */
static int add_hostreg(const char *name, lua_CFunction f, lua_CFunction g,
                       int kind) {
  hostreg *n;
  size_t len;
  int i;
  if (name == NULL || *name == '\0' || f == NULL) return DLUA_ERRARG;
  for (i = 0; i < nhostregs; i++) {
    if (hostregs[i].kind == kind && strcmp(hostregs[i].name, name) == 0) {
      hostregs[i].f = f;
      hostregs[i].g = g;
      return DLUA_OK;
    }
  }
  len = strlen(name) + 1;
  n = dl_realloc(hostregs, sizeof(*n) * (size_t)(nhostregs + 1));
  if (n == NULL) return DLUA_ERRMEM;
  hostregs = n;
  n[nhostregs].name = dl_realloc(NULL, len);
  if (n[nhostregs].name == NULL) return DLUA_ERRMEM;
  memcpy(n[nhostregs].name, name, len);
  n[nhostregs].f = f;
  n[nhostregs].g = g;
  n[nhostregs].kind = kind;
  nhostregs++;
  return DLUA_OK;
}

int dlua_preload(const char *name, lua_CFunction luaopen) {
  return add_hostreg(name, luaopen, NULL, REG_MODULE);
}

int dlua_register(const char *name, lua_CFunction f) {
  return add_hostreg(name, f, NULL, REG_GLOBAL);
}

int dlua_register_codec(const char *tname, lua_CFunction enc,
                        lua_CFunction dec) {
  if (enc == NULL || dec == NULL) return DLUA_ERRARG;
  return add_hostreg(tname, enc, dec, REG_CODEC);
}

void dl_runtime_apply_host(lua_State *L) {
  int i;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (i = 0; i < nhostregs; i++) {
    const hostreg *r = &hostregs[i];
    switch (r->kind) {
      case REG_MODULE:
        lua_pushcfunction(L, r->f);
        lua_setfield(L, -2, r->name);
        break;
      case REG_GLOBAL:
        lua_pushcfunction(L, r->f);
        lua_setglobal(L, r->name);
        break;
      default:
        lua_pushcfunction(L, r->f);
        lua_pushcfunction(L, r->g);
        dl_codec_register_lua(L, r->name, -2, -1);
        lua_pop(L, 2);
        break;
    }
  }
  lua_pop(L, 1);
}

int dl_luasrc_load(lua_State *L, const dl_luasrc *m) {
  char chunkname[128];
  snprintf(chunkname, sizeof chunkname, DL_LUASRC_CHUNKNAME, m->name);
  /* Another release of liblua (a library updated under a built dlua, or a
     host's own Lua) may read the same format differently: its bytecode is
     not tried.  lundump then checks the format itself (version, sizes,
     number layout), so a mismatch there fails before anything runs. */
  if (m->bc != NULL && m->ident != NULL && strcmp(m->ident, lua_ident) == 0) {
    if (luaL_loadbufferx(L, m->bc, m->bclen, chunkname, "b") == LUA_OK)
      return LUA_OK;
    lua_pop(L, 1);
  }
  return luaL_loadbufferx(L, m->src, m->len, chunkname, "t");
}

/* Loader for an embedded module: upvalue 1 is the index into dl_luasrcs. */
static int embedded_loader(lua_State *L) {
  const dl_luasrc *m = &dl_luasrcs[lua_tointeger(L, lua_upvalueindex(1))];
  if (dl_luasrc_load(L, m) != LUA_OK) return lua_error(L);
  lua_pushstring(L, m->name);
  lua_call(L, 1, 1);
  return 1;
}

/*
** package.searchers entry: finds modules compiled into the library.  Only
** "dlua" and "dlua.*" can be embedded, so for any other name it returns
** nothing and adds no line to require's "module not found" message, which
** then reads as in plain Lua.
*/
static int embedded_searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int i;
  if (strncmp(name, "dlua", 4) != 0 || (name[4] != '\0' && name[4] != '.'))
    return 0;
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
  lua_pushcfunction(L, luaopen_dlua_ndarray);
  lua_setfield(L, -2, "dlua.ndarray");
  lua_pushcfunction(L, luaopen_dlua_bagio);
  lua_setfield(L, -2, "dlua.bagio");
  lua_pushcfunction(L, luaopen_dlua_framec);
  lua_setfield(L, -2, "dlua.framec");
  lua_pop(L, 1);
  dl_ndarray_register(L); /* ndarrays decode before dlua.ndarray loads */
  dl_frame_register(L);   /* frames too (dlua.frame is required then) */
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
  dl_server_preinit(); /* a cluster started when descriptors run out later
                          fails with an error, not an abort in libuv */
}

void *dlua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  return dl_realloc(ptr, nsize);
}

#define l_alloc dlua_alloc

static const char oom_msg[] = "not enough memory";

/*
** SIGPIPE guard.  A worker may go away while the cluster writes to it; the
** write must fail with EPIPE, not kill the host (whose SIGPIPE disposition
** is not ours to change).  While a dlua_* call runs, SIGPIPE is blocked in
** the calling thread, so threads the cluster starts meanwhile inherit the
** blocked mask; a SIGPIPE raised in the calling thread itself is consumed
** before the host's mask comes back (as libcurl does).
*/
typedef struct sigguard {
  sigset_t old;
  int was_pending;
} sigguard;

static void guard_begin(sigguard *g) {
  sigset_t set, pend;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  g->was_pending = sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void guard_end(sigguard *g) {
  sigset_t set, pend;
  struct timespec zero = {0, 0};
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  if (!g->was_pending && sigpending(&pend) == 0 &&
      sigismember(&pend, SIGPIPE)) {
    while (sigtimedwait(&set, NULL, &zero) == -1 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* Replace rt's message with a copy of the len bytes at msg (NULL: none). */
static void set_err(dlua_Runtime *rt, const char *msg, size_t len) {
  if (rt->err != NULL && rt->err != oom_msg) dl_free(rt->err);
  rt->err = NULL;
  if (msg == NULL) return;
  rt->err = dl_realloc(NULL, len + 1);
  if (rt->err == NULL) {
    rt->err = (char *)oom_msg;
    return;
  }
  memcpy(rt->err, msg, len);
  rt->err[len] = '\0';
}

static void set_errf(dlua_Runtime *rt, const char *fmt, const char *arg) {
  char m[256];
  snprintf(m, sizeof m, fmt, arg);
  set_err(rt, m, strlen(m));
}

/* A frame of dlua's own: code of an embedded module. */
static int own_frame(lua_State *L1, int level) {
  lua_Debug ar;
  if (!lua_getstack(L1, level, &ar) || !lua_getinfo(L1, "S", &ar)) return 0;
  return strncmp(ar.short_src, "[dlua]", 6) == 0;
}

/* A frame to show: not dlua's own, nor a C function dlua's code called
   (the `error` that raised, a pcall). */
static int user_frame(lua_State *L1, int level, lua_Debug *ar) {
  lua_getinfo(L1, "S", ar);
  if (strncmp(ar->short_src, "[dlua]", 6) == 0) return 0;
  return !(*ar->what == 'C' && own_frame(L1, level + 1));
}

static void add_frame(luaL_Buffer *b, lua_State *L1, int level) {
  lua_Debug ar;
  lua_getstack(L1, level, &ar);
  lua_getinfo(L1, "Slnt", &ar);
  if (ar.currentline > 0)
    lua_pushfstring(b->L, "\n\t%s:%d: in ", ar.short_src, ar.currentline);
  else
    lua_pushfstring(b->L, "\n\t%s: in ", ar.short_src);
  luaL_addvalue(b);
  if (*ar.what == 'm')
    luaL_addstring(b, "main chunk");
  else if (*ar.namewhat != '\0')
    lua_pushfstring(b->L, "%s '%s'",
                    strcmp(ar.namewhat, "global") == 0 ? "function"
                                                       : ar.namewhat,
                    ar.name),
        luaL_addvalue(b);
  else if (*ar.what == 'C')
    luaL_addstring(b, "?");
  else
    lua_pushfstring(b->L, "function <%s:%d>", ar.short_src, ar.linedefined),
        luaL_addvalue(b);
  if (ar.istailcall) luaL_addstring(b, "\n\t(...tail calls...)");
}

void dlua_traceback(lua_State *L, lua_State *L1, const char *msg,
                    int level) {
  /* a long one: its first and last frames, as luaL_traceback shows */
  enum { FIRST = 10, LAST = 11 };
  int head[FIRST], tail[LAST], n = 0, i;
  const char *full = getenv("DLUA_TRACEBACK");
  lua_Debug ar;
  luaL_Buffer b;
  if (full && strcmp(full, "full") == 0) {
    luaL_traceback(L, L1, msg, level);
    return;
  }
  for (; lua_getstack(L1, level, &ar); level++) {
    if (!user_frame(L1, level, &ar)) continue;
    if (n < FIRST) head[n] = level;
    tail[n % LAST] = level;
    n++;
  }
  luaL_buffinit(L, &b);
  if (msg) {
    luaL_addstring(&b, msg);
    luaL_addchar(&b, '\n');
  }
  luaL_addstring(&b, "stack traceback:");
  for (i = 0; i < n && i < FIRST; i++) add_frame(&b, L1, head[i]);
  if (n > FIRST + LAST) {
    lua_pushfstring(L, "\n\t...\t(skipping %d levels)", n - FIRST - LAST);
    luaL_addvalue(&b);
  }
  for (i = n - LAST > FIRST ? n - LAST : FIRST; i < n; i++)
    add_frame(&b, L1, tail[i % LAST]);
  luaL_pushresult(&b);
}

/* Message handler: the message with a traceback; an error object with
** __tostring (e.g. a dlua.TaskError, which carries its remote traceback)
** as its string. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  dlua_traceback(L, L, msg, 1);
  return 1;
}

/* Turn a Lua status with its message on top into a DLUA_* code. */
static int finish(dlua_Runtime *rt, int status) {
  lua_State *L = rt->L;
  size_t len;
  const char *msg;
  if (status == LUA_OK) {
    set_err(rt, NULL, 0);
    return DLUA_OK;
  }
  msg = lua_tolstring(L, -1, &len);
  if (msg == NULL) {
    msg = "(error object is not a string)";
    len = strlen(msg);
  }
  set_err(rt, msg, len);
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
      /* The client becomes dlua's default client (dlua.default_client());
         it lives until the state is closed or Lua closes it. */
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

/* Check opt before anything is acquired; 0 or -1 with a message in err. */
static int check_options(const dlua_Options *opt, char *err, size_t errlen) {
  if (opt == NULL) return 0;
  if (opt->n_workers < 0 || opt->n_workers > 1024) {
    snprintf(err, errlen,
             "dlua_open: n_workers must be between 1 and 1024, or 0 for "
             "one per core (got %d)", opt->n_workers);
    return -1;
  }
  if (opt->memory_limit < 0) {
    snprintf(err, errlen,
             "dlua_open: memory_limit must be a positive number of bytes, "
             "or 0 for the default (got %lld)", opt->memory_limit);
    return -1;
  }
  if (opt->worker_exe != NULL && access(opt->worker_exe, X_OK) != 0) {
    snprintf(err, errlen, "dlua_open: worker_exe '%s' is not an executable "
             "file", opt->worker_exe);
    return -1;
  }
  return 0;
}

dlua_Runtime *dlua_open(const dlua_Options *opt, char *err, size_t errlen) {
  dlua_Runtime *rt;
  char scratch[512];
  sigguard g;
  int status;
  if (err == NULL || errlen == 0) {
    err = scratch;
    errlen = sizeof scratch;
  }
  err[0] = '\0';
  if (check_options(opt, err, errlen)) return NULL;
  rt = dl_realloc(NULL, sizeof *rt);
  if (rt == NULL) {
    snprintf(err, errlen, "dlua_open: %s", oom_msg);
    return NULL;
  }
  rt->err = NULL;
  rt->L = lua_newstate(l_alloc, NULL);
  if (rt->L == NULL) {
    dl_free(rt);
    snprintf(err, errlen, "dlua_open: %s", oom_msg);
    return NULL;
  }
  lua_pushcfunction(rt->L, msghandler);
  lua_pushcfunction(rt->L, protected_openlibs);
  lua_pushlightuserdata(rt->L, (void *)opt);
  guard_begin(&g);
  status = lua_pcall(rt->L, 1, 0, -3);
  guard_end(&g);
  if (status != LUA_OK) {
    const char *m = lua_tostring(rt->L, -1);
    snprintf(err, errlen, "dlua_open: %s", m ? m : "(error object)");
    guard_begin(&g);
    lua_close(rt->L);
    guard_end(&g);
    dl_free(rt);
    return NULL;
  }
  lua_pop(rt->L, 1);
  return rt;
}

lua_State *dlua_state(dlua_Runtime *rt) { return rt ? rt->L : NULL; }

/* What to load: a file (path) or a string (chunk, len, name). */
typedef struct loadreq {
  const char *chunk, *name, *path;
  size_t len;
} loadreq;

/* Load the chunk of req (upvalue-free: arg 1); returns the load status
** and the function or the message, so that even a memory error while
** loading cannot escape to the host. */
static int pload(lua_State *L) {
  const loadreq *q = lua_touserdata(L, 1);
  int st = q->path ? luaL_loadfile(L, q->path)
                   : luaL_loadbuffer(L, q->chunk, q->len, q->name);
  lua_pushinteger(L, st);
  lua_insert(L, -2);
  return 2;
}

/* Load and run q in rt with a traceback; a DLUA_* code. */
static int run(dlua_Runtime *rt, const loadreq *q, const char *what) {
  lua_State *L = rt->L;
  sigguard g;
  int h, st;
  if (!lua_checkstack(L, 4)) {
    set_errf(rt, "%s: Lua stack overflow", what);
    return DLUA_ERRMEM;
  }
  lua_pushcfunction(L, msghandler);
  h = lua_gettop(L);
  lua_pushcfunction(L, pload);
  lua_pushlightuserdata(L, (void *)q);
  guard_begin(&g);
  st = lua_pcall(L, 1, 2, 0);
  if (st == LUA_OK) {
    st = (int)lua_tointeger(L, -2);
    lua_remove(L, -2);
    if (st == LUA_OK) st = lua_pcall(L, 0, 0, h);
  }
  guard_end(&g);
  lua_remove(L, h);
  return finish(rt, st);
}

int dlua_dostring(dlua_Runtime *rt, const char *chunk, const char *chunkname) {
  loadreq q;
  if (rt == NULL) return DLUA_ERRARG;
  if (chunk == NULL) {
    set_errf(rt, "dlua_dostring: %s is NULL", "chunk");
    return DLUA_ERRARG;
  }
  q.chunk = chunk;
  q.len = strlen(chunk);
  q.name = chunkname ? chunkname : "=dlua";
  q.path = NULL;
  return run(rt, &q, "dlua_dostring");
}

int dlua_dofile(dlua_Runtime *rt, const char *path) {
  loadreq q;
  if (rt == NULL) return DLUA_ERRARG;
  if (path == NULL) {
    set_errf(rt, "dlua_dofile: %s is NULL", "path");
    return DLUA_ERRARG;
  }
  memset(&q, 0, sizeof q);
  q.path = path;
  return run(rt, &q, "dlua_dofile");
}

const char *dlua_errmsg(dlua_Runtime *rt) {
  return rt && rt->err ? rt->err : "";
}

void dlua_close(dlua_Runtime *rt) {
  sigguard g;
  if (rt == NULL) return;
  guard_begin(&g);
  lua_close(rt->L); /* __gc of clients/clusters shuts their processes down */
  dl_server_end_zygote(); /* and their zygote, once no cluster is left */
  guard_end(&g);
  set_err(rt, NULL, 0);
  dl_free(rt);
}

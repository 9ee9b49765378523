/*
** dl_cluster_lua.c -- the "dlua.cluster" module: the Lua face of a local
** cluster (dl_server) for lua/dlua/init.lua, which builds Client, Future
** and LocalCluster on top of it.
**
** A handle owns one running cluster and one pure-C client (dl_client.h),
** which owns the protocol: the batch of messages, the functions already
** sent, the futures' records and the reading of the answers.  This file
** only converts between Lua values and the client's calls, and gives the
** client its transport: the scheduler's thread in this process or another
** (dl_server_send), or a worker's link (dl_worker_link_send).  The
** messages that one call makes (a submit, a whole map or graph) are handed
** over in one batch before the call returns, so work starts at once and a
** map of 10,000 tasks still costs one hand-over.  Releases of futures ride
** with the next batch.  The scheduler's thread puts its answers in the
** cluster's inbox as they come (dl_server.h); poll only takes them, so
** status and done show the truth without waiting.
*/
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <uv.h>

#include "dl_client.h"
#include "dl_codec.h"
#include "dl_dashboard.h"
#include "dl_map.h"
#include "dl_wire.h"
#include "dl_runtime.h"
#include "dl_schedfile.h"
#include "dl_server.h"
#include "dl_tls.h"
#include "dl_worker.h"
#include "dlua.h"

#define HANDLE_MT "dlua.ClusterHandle"

typedef struct handle {
  dl_server *srv;
  dl_buf in;      /* messages received, being dispatched */
  int unread;     /* in holds messages not dispatched yet (drain_news) */
  dl_buf payload; /* scratch for encoding one task */
  dl_buf shape;   /* scratch (map): the payload {f = fn, n = nargs} */
  dl_buf gshape;  /* the same for h:queue_graph's rows */
  dl_buf ids;     /* scratch: worker ids (uint64_t) of one call */
  dl_client cl;   /* the protocol, and the futures of this handle's clients */
  int nworkers;
  int polling;
  int link; /* the tasks' client on a worker: messages go over the
               worker's link to its scheduler (srv is NULL) */
  int remote; /* srv is the link to a scheduler in another process */
} handle;

static handle *check_handle(lua_State *L, int idx) {
  handle *h = luaL_checkudata(L, idx, HANDLE_MT);
  if (h->srv == NULL && !h->link) luaL_error(L, "the cluster is closed");
  return h;
}

/* A handle with a cluster in this process (not the tasks' client). */
static handle *check_local(lua_State *L, int idx) {
  handle *h = check_handle(L, idx);
  if (h->srv == NULL)
    luaL_error(L, "not available inside a task (the cluster lives in the "
               "client's process)");
  return h;
}

/* ------------------------------------------------------------ futures */

/*
** A Lua future is a small userdata: a pointer to its record in the
** handle's future table (dl_client.h), whose key and state it reads there,
** with a bit that says the future was released, and the id of its client
** (a Lua table) in the anchor table.  The record is the only copy of the
** future's state; the key is stored once, in the record.  A future keeps
** its client alive through the anchor, not a user value of its own: a
** userdata with no user value is 32 bytes smaller (48 bytes with malloc's
** rounding, 80 with one user value), 36 MB at a million futures.  The
** record's owner is the client id of its first future, and a future of
** that client is only the tagged pointer (40 bytes, not 48: 9 MB at a
** million futures); a future of another client (Client(cluster) twice)
** carries its own id after the pointer (fut_cid tells them apart by
** their sizes).
*/
typedef struct fut {
  uintptr_t fr;  /* its record (held: dl_client_drop in __gc), or 0, with
                    FUT_RELEASED when its live count was given back */
  uint32_t cid;  /* only in a long future: its client's id in the anchor
                    table; 0 while none */
} fut;

#define FUT_RELEASED ((uintptr_t)1) /* records are 8-byte aligned */
#define FUT_SHORT sizeof(uintptr_t)  /* the size of a future of the owner */

static dl_cfut *fut_rec(const fut *u) {
  return (dl_cfut *)(u->fr & ~FUT_RELEASED);
}

static int fut_released(const fut *u) { return (u->fr & FUT_RELEASED) != 0; }

/* The client id of the future u at idx (0 while it has none). */
static uint32_t fut_cid(lua_State *L, int idx, const fut *u) {
  if (lua_rawlen(L, idx) > FUT_SHORT) return u->cid;
  return fut_rec(u) ? fut_rec(u)->owner : 0;
}

/*
** The anchor table, at registry[&anchor_key]: for each client that has
** live futures, [client] = id, [id] = client and [-id] = the number of its
** futures not yet collected.  The registry holds the client while that
** number is above zero, as each future's user value did; the last
** future's __gc drops the entry.  [0] is the last id given.
*/
static const char anchor_key = 'a';

/* Push the anchor table, made the first time.  [-0, +1, m] */
static void push_anchor(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &anchor_key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &anchor_key);
}

/* One more future of the client at ci: its id, the entry made if it had
   none.  [-0, +0, m] */
static uint32_t anchor_client(lua_State *L, int ci) {
  lua_Integer id;
  ci = lua_absindex(L, ci);
  push_anchor(L);
  lua_pushvalue(L, ci);
  if (lua_rawget(L, -2) == LUA_TNUMBER) {
    id = lua_tointeger(L, -1);
    lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
    lua_rawgeti(L, -1, 0);
    id = lua_tointeger(L, -1) + 1;
    if (id > (lua_Integer)UINT32_MAX) id = 1; /* ids of gone clients */
    lua_pop(L, 1);
    lua_pushinteger(L, id);
    lua_rawseti(L, -2, 0);
    lua_pushvalue(L, ci);
    lua_pushinteger(L, id);
    lua_rawset(L, -3);
    lua_pushvalue(L, ci);
    lua_rawseti(L, -2, id);
  }
  lua_rawgeti(L, -1, -id);
  lua_pushinteger(L, lua_tointeger(L, -1) + 1);
  lua_rawseti(L, -3, -id);
  lua_pop(L, 2);
  return (uint32_t)id;
}

/* A future of client id is gone: the last one drops its entry.  Never
   raises (the table's keys exist: no allocation).  [-0, +0, -] */
static void unanchor_client(lua_State *L, uint32_t id) {
  lua_Integer n;
  push_anchor(L);
  lua_rawgeti(L, -1, -(lua_Integer)id);
  n = lua_tointeger(L, -1) - 1;
  lua_pop(L, 1);
  if (n > 0) {
    lua_pushinteger(L, n);
    lua_rawseti(L, -2, -(lua_Integer)id);
  } else {
    lua_pushnil(L);
    lua_rawseti(L, -2, -(lua_Integer)id);
    lua_rawgeti(L, -1, id);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pushnil(L);
    lua_rawseti(L, -2, id);
  }
  lua_pop(L, 1);
}

/*
** Between submits: read the task news that came meanwhile into the future
** table, up to the first news for Lua (a gather or coord answer), which
** stays in h->in for the next poll.  A client that submits a big graph
** would otherwise let the news of the tasks done meanwhile pile up in its
** inbox until it waits (39 MB for a million small results), next to the
** futures they are about.  Only after a future's record is made (the news
** of a key with no record is dropped), never while the news are being
** dispatched (h->in is in use) nor on a task's client.
*/
static void drain_news(handle *h) {
  dl_rd r;
  int count = 0;
  size_t left;
  if (h->srv == NULL || h->polling || h->unread) return;
  h->in.len = 0;
  if (!dl_server_take(h->srv, &h->in)) return;
  dl_rd_init(&r, h->in.p, h->in.len);
  dl_client_next_tasks(&h->cl, &r, &count); /* out of memory: left too */
  left = (size_t)(r.end - r.p);
  if (left) memmove(h->in.p, r.p, left);
  h->in.len = left;
  h->unread = left > 0;
}

/* The id of the client at ci in the anchor table, or 0 when it has none.
   [-0, +0, -] */
static uint32_t anchor_peek(lua_State *L, int ci) {
  lua_Integer id;
  ci = lua_absindex(L, ci);
  push_anchor(L);
  lua_pushvalue(L, ci);
  lua_rawget(L, -2);
  id = lua_tointeger(L, -1);
  lua_pop(L, 2);
  return (uint32_t)id;
}

/*
** Push a new future of key for client (at stack index ci).  Raises when
** out of memory.  It is short (the record's owner is its client) when
** the key has no record yet, or one whose owner is the client.  Lua may
** collect garbage between that check and the reference: if the record
** then went, a new one is made (owned here); if the client's anchor
** went, none of its futures is left, so none reads the owner that this
** future then sets.  [-0, +1, m]
*/
static void push_future(lua_State *L, handle *h, const char *key,
                        size_t klen, int ci) {
  fut *u;
  dl_cfut *f = dl_client_get(&h->cl, key, klen);
  uint32_t id;
  int isshort;
  ci = lua_absindex(L, ci);
  id = anchor_peek(L, ci);
  isshort = f == NULL || (id != 0 && f->owner == id);
  u = lua_newuserdatauv(L, isshort ? FUT_SHORT : sizeof *u, 0);
  u->fr = FUT_RELEASED;
  if (!isshort) u->cid = 0;
  luaL_setmetatable(L, DL_FUTURE_MT);
  id = anchor_client(L, ci);
  if (!isshort) u->cid = id;
  f = dl_client_ref(&h->cl, key, klen);
  if (f == NULL) {
    if (isshort) unanchor_client(L, id); /* no record keeps the id */
    luaL_error(L, "not enough memory");
  }
  if (isshort || f->holds == 1) f->owner = id;
  u->fr = (uintptr_t)f;
  drain_news(h);
}

static fut *to_fut(lua_State *L, int idx) {
  return luaL_testudata(L, idx, DL_FUTURE_MT);
}

static fut *check_fut(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, DL_FUTURE_MT);
}

/* Give back u's live count: the last of its key queues a RELEASE, sent
   with the next batch (at once by a task's client). */
static void fut_unref(fut *u) {
  if (fut_released(u) || fut_rec(u) == NULL) return;
  u->fr |= FUT_RELEASED;
  dl_client_unref(fut_rec(u));
}

static int fut_gc(lua_State *L) {
  fut *u = check_fut(L, 1);
  uint32_t cid = fut_cid(L, 1, u); /* before the record may go */
  fut_unref(u);
  if (fut_rec(u)) dl_client_drop(fut_rec(u));
  u->fr = FUT_RELEASED;
  if (lua_rawlen(L, 1) > FUT_SHORT) u->cid = 0;
  if (cid) unanchor_client(L, cid);
  return 0;
}

/* f.key, f.client, then the methods (upvalue 1). */
static int fut_index(lua_State *L) {
  fut *u = check_fut(L, 1);
  size_t n;
  const char *k = lua_tolstring(L, 2, &n);
  if (k && n == 3 && memcmp(k, "key", 3) == 0 && fut_rec(u)) {
    char buf[DL_CFUT_KEYBUF];
    const char *key = dl_cfut_key(fut_rec(u), buf, &n);
    lua_pushlstring(L, key, n);
    return 1;
  }
  if (k && n == 6 && memcmp(k, "client", 6) == 0) {
    uint32_t cid = fut_cid(L, 1, u);
    push_anchor(L);
    lua_rawgeti(L, -1, cid); /* nil for no id: [0] is a number */
    if (cid == 0) lua_pushnil(L);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

/* Raise: f's result cannot be decoded (why: err).  [-0, +0, v] */
static int decode_error(lua_State *L, const dl_cfut *f, const char *err) {
  char buf[DL_CFUT_KEYBUF];
  size_t klen;
  return luaL_error(L, "cannot decode the result of '%s': %s",
                    dl_cfut_key(f, buf, &klen), err);
}

static const char *const status_names[] = {"pending", "finished", "error",
                                           "cancelled"};

/* The live record of the future at idx, or NULL after pushing nil and why
   ("released" or "closed").  [-0, +(0|2), -] */
static dl_cfut *live(lua_State *L, int idx) {
  fut *u = check_fut(L, idx);
  dl_cfut *f = fut_rec(u);
  if (fut_released(u) || f == NULL || f->client == 0) {
    lua_pushnil(L);
    if (f && f->client == 0 && !fut_released(u)) lua_pushliteral(L, "closed");
    else lua_pushliteral(L, "released");
    return NULL;
  }
  return f;
}

/* cluster.fstatus(f) -> "pending" | "finished" | "error" | "cancelled",
   or nil, "released" | "closed" */
static int cl_fstatus(lua_State *L) {
  dl_cfut *f = live(L, 1);
  if (f == NULL) return 2;
  lua_pushstring(L, status_names[f->status & 3]);
  return 1;
}

/* cluster.fvalue(f) -> true, value when the result came inline; false
   otherwise (not finished, released, or to be fetched). */
static int cl_fvalue(lua_State *L) {
  fut *u = check_fut(L, 1);
  dl_cfut *f = fut_rec(u);
  char err[600], buf[DL_CFUT_BUF];
  dl_dec_opts dopt = {0, NULL, NULL};
  if (fut_released(u) || f == NULL || f->status != DL_FUT_FINISHED ||
      !(f->flags & DL_FUT_VALUE)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushboolean(L, 1);
  if (dl_codec_decode(L, dl_cfut_data(f, buf), dl_cfut_len(f), &dopt, err,
                      sizeof err))
    return decode_error(L, f, err);
  return 2;
}

static int push_errrec(lua_State *L, const char *p, size_t n);
static const char *const kind_names[7];

/* cluster.ferror(f) -> kind, message, traceback, worker, value: the error
   of a failed or cancelled future (nothing otherwise). */
static int cl_ferror(lua_State *L) {
  fut *u = check_fut(L, 1);
  dl_cfut *f = fut_rec(u);
  char buf[DL_CFUT_BUF];
  if (f == NULL || (f->status != DL_FUT_ERROR &&
                    f->status != DL_FUT_CANCELLED))
    return 0;
  lua_pushstring(L, f->kind < 7 ? kind_names[f->kind] : "error");
  if (dl_cfut_data(f, buf) == NULL) { /* cancelled here */
    lua_pushliteral(L, "cancelled");
    return 2;
  }
  if (push_errrec(L, dl_cfut_data(f, buf), dl_cfut_len(f))) {
    lua_pushliteral(L, "malformed error record");
    return 2;
  }
  return 5;
}

/* cluster.fcancel(f): mark the future cancelled here (its value dropped;
   due callbacks fire at the next poll).  The caller tells the scheduler. */
static int cl_fcancel(lua_State *L) {
  dl_cfut *f = live(L, 1);
  if (f) dl_client_cancel(f);
  return 0;
}

/* cluster.fcallbacks(f): done-callbacks wait on f (fired when done). */
static int cl_fcallbacks(lua_State *L) {
  dl_cfut *f = live(L, 1);
  if (f) f->flags |= DL_FUT_CALLBACKS;
  return 0;
}

/* cluster.frepend(f): its fetched value was lost: pending again. */
static int cl_frepend(lua_State *L) {
  dl_cfut *f = live(L, 1);
  if (f) dl_client_repend(f);
  return 0;
}

/* cluster.frelease(f): drop this future now; true if it was live. */
static int cl_frelease(lua_State *L) {
  fut *u = check_fut(L, 1);
  lua_pushboolean(L, !fut_released(u));
  fut_unref(u);
  return 1;
}

/* cluster.freleased(f) -> true once f was released */
static int cl_freleased(lua_State *L) {
  fut *u = check_fut(L, 1);
  lua_pushboolean(L, fut_released(u));
  return 1;
}

/* ----------------------------------------------------------- encoding */

/* Functions of a task go to the scheduler once, then by hash, which the
   task's payload names by its position among the task's functions (the
   scheduler keeps the hashes, and hands them to the worker with the
   task: 16 bytes a task less in the payload it keeps). */
static int fn_put(void *ud, const unsigned char hash[16], const char *code,
                  size_t len, uint64_t *at) {
  handle *h = ud;
  return dl_client_task_fn_at(&h->cl, hash, code, len, at);
}

/*
** A future in a task's arguments is a dependency of the task, and travels
** as its position in the task's dependencies (a varint), which the
** scheduler keeps as pointers and hands to the worker as keys with the
** task (dl_w_future_decode): its key is not in the payload twice.
*/
static int future_encode(lua_State *L, int idx, dl_buf *out, void *ctx) {
  handle *h = ctx;
  fut *u = to_fut(L, idx);
  char buf[DL_CFUT_KEYBUF];
  size_t klen;
  const char *key;
  if (h == NULL || u == NULL || fut_rec(u) == NULL)
    return -1; /* futures only travel inside tasks */
  key = dl_cfut_key(fut_rec(u), buf, &klen);
  dl_buf_uv(out, h->cl.ndeps);
  dl_client_task_dep(&h->cl, key, klen);
  return 0;
}

/* The client's transport: the scheduler's thread (in this process or
   another), or the worker's link of a task's client. */
static int handle_send(void *ud, const char *p, size_t n, int urgent) {
  handle *h = ud;
  if (h->link) {
    dl_worker_link_send(p, n);
    return 0;
  }
  if (h->srv == NULL) return DL_EINVAL;
  return dl_server_send(h->srv, p, n, urgent);
}

/* A new handle on the stack, its client sending through handle_send.
   [-0, +1, m] */
static handle *new_handle(lua_State *L, int link, int remote) {
  handle *h = lua_newuserdatauv(L, sizeof *h, 0);
  memset(h, 0, sizeof *h);
  h->link = link;
  h->remote = remote;
  dl_client_init(&h->cl);
  dl_client_transport(&h->cl, handle_send, h,
                      link ? DL_CLIENT_EAGER
                           : remote ? 0u : DL_CLIENT_SHARED);
  luaL_setmetatable(L, HANDLE_MT);
  if (h->cl.num == 0) /* records name their client in 14 bits */
    luaL_error(L, "too many clients open in this process (%d at most): "
               "close some first", (int)DL_CLIENT_MAX);
  return h;
}

/* The TLS context the table at idx names in its field tls_dir (NULL when
   it has none); 0, or -1 with one line in err. */
static int opt_tls(lua_State *L, int idx, const dl_tls_ctx **tls, char *err,
                   size_t errlen) {
  const char *dir;
  lua_getfield(L, idx, "tls_dir");
  dir = luaL_optstring(L, -1, NULL);
  lua_pop(L, 1);
  *tls = NULL;
  if (dir == NULL) return 0;
  *tls = dl_tls_ctx_shared(dir, err, errlen);
  return *tls ? 0 : -1;
}

/* cluster.start{n_workers=, memory_limit=, worker_exe=, allowed_failures=,
   start_timeout=, dashboard_address=, dashboard_fallback=, listen=,
   token_file=, tls_dir=} -> handle, or nil, message */
static int cl_start(lua_State *L) {
  dl_server_opts o;
  dl_token token;
  dl_service dash;
  const char *dash_addr;
  int dash_fallback;
  char err[600];
  handle *h;
  memset(&o, 0, sizeof o);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "n_workers");
  o.n_workers = (int)luaL_checkinteger(L, -1);
  lua_getfield(L, 1, "memory_limit");
  o.memory_limit = (int64_t)luaL_checkinteger(L, -1);
  lua_getfield(L, 1, "worker_exe");
  /* By default workers run this very program, through /proc/self/exe so
     that a rebuilt or deleted binary on disk does not matter. */
  o.worker_exe = luaL_optstring(L, -1, "/proc/self/exe");
  lua_getfield(L, 1, "allowed_failures");
  o.allowed_failures = (int)luaL_optinteger(L, -1, 3);
  lua_getfield(L, 1, "start_timeout");
  o.start_timeout = luaL_optnumber(L, -1, 20);
  lua_getfield(L, 1, "memory_target");
  o.memory_target = luaL_optnumber(L, -1, 0);
  lua_getfield(L, 1, "memory_spill");
  o.memory_spill = luaL_optnumber(L, -1, 0);
  lua_getfield(L, 1, "memory_pause");
  o.memory_pause = luaL_optnumber(L, -1, 0);
  lua_getfield(L, 1, "memory_terminate");
  o.memory_terminate = luaL_optnumber(L, -1, 0);
  lua_getfield(L, 1, "dashboard_address");
  dash_addr = luaL_optstring(L, -1, NULL);
  lua_getfield(L, 1, "dashboard_fallback");
  dash_fallback = lua_toboolean(L, -1);
  lua_getfield(L, 1, "heartbeat_timeout");
  o.heartbeat_timeout = luaL_optnumber(L, -1, 0);
  o.dlua_version = DLUA_VERSION_STRING;
  o.lua_version = LUA_RELEASE;
  lua_getfield(L, 1, "listen");
  o.listen_address = luaL_optstring(L, -1, NULL);
  if (o.listen_address) {
    const char *tf;
    lua_getfield(L, 1, "token_file");
    tf = luaL_optstring(L, -1, NULL);
    if (dl_token_load(&token, tf, err, sizeof err) != 0) {
      lua_pushnil(L);
      lua_pushstring(L, err);
      return 2;
    }
    o.token = &token;
    if (opt_tls(L, 1, &o.tls, err, sizeof err)) {
      memset(&token, 0, sizeof token);
      lua_pushnil(L);
      lua_pushstring(L, err);
      return 2;
    }
  }
  if (o.listen_address ? o.n_workers != 0
                       : (o.n_workers < 1 || o.n_workers > 1024))
    return luaL_error(L, "n_workers must be between 1 and 1024 (got %d)",
                      o.n_workers);
  h = new_handle(L, 0, 0);
  if (dash_addr) { /* the server owns it from dl_server_start on */
    int rc = dl_dashboard_service(&dash, dash_addr, dash_fallback);
    if (rc) {
      lua_pushnil(L);
      lua_pushstring(L, rc == DL_EINVAL ? "dashboard address too long"
                                        : "out of memory");
      return 2;
    }
    o.service = &dash;
  }
  h->srv = dl_server_start(&o, err, sizeof err);
  if (o.token) memset(&token, 0, sizeof token);
  if (h->srv == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  h->nworkers = o.n_workers;
  return 1;
}

static void handle_close(handle *h) {
  if (h->srv) {
    dl_client_flush(&h->cl, 1);
    dl_server_stop(h->srv);
    h->srv = NULL;
  }
  dl_client_free(&h->cl);
  dl_buf_free(&h->in);
  dl_buf_free(&h->payload);
  dl_buf_free(&h->shape);
  dl_buf_free(&h->gshape);
  dl_buf_free(&h->ids);
}

/* h:close(): stop the cluster; no worker process survives it. */
static int h_close(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, HANDLE_MT);
  handle_close(h);
  return 0;
}

/* h:dashboard() -> "host:port" the dashboard listens on, or nil. */
static int h_dashboard(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, HANDLE_MT);
  const char *a = h->srv ? dl_server_service_address(h->srv) : NULL;
  if (a) lua_pushstring(L, a);
  else lua_pushnil(L);
  return 1;
}

static int h_closed(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, HANDLE_MT);
  lua_pushboolean(L, h->srv == NULL && !h->link);
  return 1;
}

static void put_str_field(lua_State *L, int idx, const char *name,
                          const char **s, size_t *n) {
  lua_getfield(L, idx, name);
  *s = lua_tolstring(L, -1, n);
  lua_pop(L, 1);
}

static lua_Integer opt_int_field(lua_State *L, int idx, const char *name,
                                 lua_Integer def) {
  lua_Integer v;
  lua_getfield(L, idx, name);
  v = luaL_optinteger(L, -1, def);
  lua_pop(L, 1);
  return v;
}

/* Hand the queued messages over; urgent when the client is about to wait
   for the answer (see dl_server_send). */
static int flush_now(handle *h, int urgent) {
  return dl_client_flush(&h->cl, urgent);
}

/*
** The worker ids of the sequence at idx (if a table) into h->ids; returns
** how many.  Raises when out of memory.  [-0, +0, e]
*/
static size_t get_ids(lua_State *L, handle *h, int idx) {
  lua_Integer n, j;
  h->ids.len = 0;
  if (!lua_istable(L, idx)) return 0;
  n = luaL_len(L, idx);
  for (j = 1; j <= n; j++) {
    uint64_t id;
    lua_rawgeti(L, idx, j);
    id = (uint64_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (dl_buf_put(&h->ids, &id, sizeof id))
      luaL_error(L, "not enough memory");
  }
  return (size_t)n;
}

/*
** The options of spec for the tasks that follow (dl_client_task_opts).
** They are all read before anything is queued, so a bad option leaves no
** partial message behind.  [-0, +0, e]
*/
static void put_spec(lua_State *L, handle *h, int spec) {
  dl_task_opts o;
  o.priority = opt_int_field(L, spec, "priority", 0);
  o.order = opt_int_field(L, spec, "order", 0);
  o.retries = (uint64_t)opt_int_field(L, spec, "retries", 0);
  o.timeout_ms = (uint64_t)opt_int_field(L, spec, "timeout_ms", 0);
  lua_getfield(L, spec, "workers");
  o.nworkers = get_ids(L, h, -1);
  o.workers = (const uint64_t *)(void *)h->ids.p;
  lua_pop(L, 1);
  lua_getfield(L, spec, "allow_other");
  o.allow_other = lua_toboolean(L, -1);
  lua_pop(L, 1);
  dl_client_task_opts(&h->cl, &o);
}

static void reset_task(handle *h) {
  h->payload.len = 0;
  dl_client_task_reset(&h->cl);
}

/* Encoder options that collect a task's functions and dependencies. */
static void task_opts(handle *h, dl_enc_opts *eo, dl_fnsink *sink) {
  sink->put = NULL;
  sink->put_at = fn_put;
  sink->ud = h;
  eo->data_only = 0;
  eo->fns = sink;
  eo->ctx = h;
  eo->root = "task";
}

/*
** Encode the task fn(args) into h->payload as {f = fn, n = nargs, ...},
** with its function hashes and dependency keys given to the client; fn is
** at stack index fi, the nargs arguments from a0 on.  Raises with the
** codec's message, which names the argument that cannot be sent.
** [-0, +0, e]
*/
static char PAYLOAD_KEY; /* registry: the spare payload table, or nil */

static void encode_task(lua_State *L, handle *h, int fi, int a0, int nargs) {
  int i, rc, payload_idx, spare;
  char err[600];
  dl_enc_opts eo;
  dl_fnsink sink;
  /* The payload table is reused from task to task: a fresh one was about
     250 bytes of garbage per submit.  It is taken out of the registry
     while in use, so an encode that submits (a codec hook) makes its own;
     it is emptied before it goes back, so it holds no argument alive. */
  spare = lua_rawgetp(L, LUA_REGISTRYINDEX, &PAYLOAD_KEY) == LUA_TTABLE;
  if (spare) {
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &PAYLOAD_KEY);
  } else {
    lua_pop(L, 1);
    lua_createtable(L, nargs, 2);
  }
  payload_idx = lua_gettop(L);
  lua_pushvalue(L, fi);
  lua_setfield(L, payload_idx, "f");
  lua_pushinteger(L, nargs);
  lua_setfield(L, payload_idx, "n");
  for (i = 1; i <= nargs; i++) {
    lua_pushvalue(L, a0 + i - 1);
    lua_rawseti(L, payload_idx, i);
  }
  reset_task(h);
  task_opts(h, &eo, &sink);
  rc = dl_codec_encode(L, payload_idx, &h->payload, &eo, err, sizeof err);
  /* Empty it (its array part stays: the next task's arguments fit) and
     keep it for the next task. */
  lua_pushnil(L);
  lua_setfield(L, payload_idx, "f");
  for (i = 1; i <= nargs; i++) {
    lua_pushnil(L);
    lua_rawseti(L, payload_idx, i);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &PAYLOAD_KEY);
  if (rc) {
    /* Say which argument could not be sent. */
    char root[32];
    for (i = 0; i <= nargs; i++) {
      dl_buf tmp;
      dl_buf_init(&tmp);
      if (i == 0) snprintf(root, sizeof root, "the task function");
      else snprintf(root, sizeof root, "argument %d", i);
      eo.fns = NULL;
      eo.root = root;
      rc = dl_codec_encode(L, i == 0 ? fi : a0 + i - 1, &tmp, &eo, err,
                           sizeof err);
      dl_buf_free(&tmp);
      if (rc) break;
    }
    dl_client_task_reset(&h->cl);
    luaL_error(L, "%s", err);
  }
}

/* Queue the submit message of the task encoded by encode_task. */
static void put_submit(handle *h, const char *key, size_t klen) {
  dl_client_task_submit(&h->cl, key, klen, h->payload.p, h->payload.len);
}

/*
** h:submit(spec, fn, ...): queue one task.  spec = {key=, priority=,
** order=, retries=, timeout_ms=, workers={ids}, allow_other=}.  Raises
** with the codec's message if a value cannot be sent.
*/
static int submit_task(lua_State *L, int flush) {
  handle *h = check_handle(L, 1);
  int nargs = lua_gettop(L) - 3;
  const char *key;
  size_t klen;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checkany(L, 3);
  put_str_field(L, 2, "key", &key, &klen);
  if (key == NULL) return luaL_error(L, "submit: spec.key must be a string");
  put_spec(L, h, 2);
  encode_task(L, h, 3, 4, nargs);
  put_submit(h, key, klen);
  if (flush) flush_now(h, 0); /* the task starts now, whatever the caller
                                 does next */
  return 0;
}

static int h_submit(lua_State *L) { return submit_task(L, 1); }

/*
** h:submit_fresh(spec, client, stem, n, fn, ...) -> future: as h:submit
** for the key stem followed by n in lower-case hex, 8 digits at least
** (keys.fresh's format: lua/dlua/keys.lua), made here, and the future of
** client for it.  A submit loop then makes no key string per task (a
** million of them were 7 MB of garbage at bench h's peak).
*/
static int h_submit_fresh(lua_State *L) {
  handle *h = check_handle(L, 1);
  int nargs = lua_gettop(L) - 6;
  size_t stemlen, klen;
  const char *stem, *key;
  lua_Integer n;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  stem = luaL_checklstring(L, 4, &stemlen);
  n = luaL_checkinteger(L, 5);
  luaL_checkany(L, 6);
  luaL_argcheck(L, n >= 0, 5, "negative key number");
  put_spec(L, h, 2);
  encode_task(L, h, 6, 7, nargs);
  if (dl_client_key_stem(&h->cl, stem, stemlen) ||
      (key = dl_client_key(&h->cl, (uint64_t)n, &klen)) == NULL) {
    dl_client_task_reset(&h->cl);
    return luaL_error(L, "not enough memory");
  }
  put_submit(h, key, klen);
  flush_now(h, 0); /* the task starts now, whatever the caller does next */
  push_future(L, h, key, klen, 3); /* key: valid until the next key made */
  return 1;
}

/*
** h:queue(spec, fn, ...): as h:submit, but the task waits in the client's
** batch (sent once it holds DL_CLIENT_FLUSH_AT bytes, or at the next
** h:send_queued, flush or wait).  For a caller that submits many tasks in
** a row (a delayed graph): one hand-over to the scheduler's thread per
** batch instead of one per task.
*/
static int h_queue(lua_State *L) { return submit_task(L, 0); }

/* h:send_queued(): hand the queued tasks to the scheduler now, without
   asking it to hurry (the caller is not waiting yet). */
static int h_send_queued(lua_State *L) {
  handle *h = check_handle(L, 1);
  lua_pushboolean(L, flush_now(h, 0) == 0);
  return 1;
}

/*
** Encode the payload shape {f = fn, n = nargs} into out (fn at stack index
** fi), the task's functions and dependencies going to the client as for
** a task.  Returns 0, or non-zero if fn cannot be sent (out is then
** empty: the caller encodes the task whole, which raises with the right
** message).  [-0, +0, m]
*/
static int encode_shape_in(lua_State *L, handle *h, int fi, int nargs,
                           dl_buf *out) {
  char err[600];
  dl_enc_opts eo;
  dl_fnsink sink;
  int rc;
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, fi);
  lua_setfield(L, -2, "f");
  lua_pushinteger(L, nargs);
  lua_setfield(L, -2, "n");
  reset_task(h);
  task_opts(h, &eo, &sink);
  out->len = 0;
  rc = dl_codec_encode(L, -1, out, &eo, err, sizeof err);
  lua_pop(L, 1);
  if (rc) out->len = 0;
  return rc;
}

/*
** Encode the payload shape of a map call into h->shape, and have the
** client keep what follows the payload in each message of a row task
** (options, function hashes, dependencies of fn's upvalues:
** dl_client_task_share).  Returns as encode_shape_in.  [-0, +0, m]
*/
static int encode_shape(lua_State *L, handle *h, int fi, int nargs) {
  int rc = encode_shape_in(L, h, fi, nargs, &h->shape);
  if (rc == 0) dl_client_task_share(&h->cl);
  return rc;
}

/* h:queue_graph's stack: its arguments, then "key" and the function of
   the row shape in h->gshape. */
enum { QG_ORDER = 2, QG_CLIENT, QG_FUTS, QG_GET, QG_RESOLVE, QG_NODE,
       QG_DELAYED, QG_REF, QG_NDEPS, QG_WANTED, QG_KEY, QG_SHAPEFN,
       QG_TOP = QG_SHAPEFN };

/* What the n values from a0 on are: 2 when all are nil, booleans, numbers
   or strings (a row: dl_codec_encode_row), 1 when futures are among them
   too (encoding them runs no Lua code), else 0. */
static int plain_args(lua_State *L, int a0, int n) {
  int j, kind = 2;
  for (j = a0; j < a0 + n; j++) {
    switch (lua_type(L, j)) {
      case LUA_TNIL: case LUA_TBOOLEAN: case LUA_TNUMBER: case LUA_TSTRING:
        break;
      case LUA_TUSERDATA:
        if (to_fut(L, j) == NULL) return 0;
        kind = 1;
        break;
      default:
        return 0;
    }
  }
  return kind;
}

/*
** Push the arguments of the task node at index node: its args table with
** each ref (a table whose metatable is at QG_DELAYED or QG_REF) replaced
** by futs[ref.key], or by get(ref) when futs lacks it (then *ran is set:
** Lua code ran).  Returns their count.  [-0, +n, e]
*/
static int push_task_args(lua_State *L, int node, int *ran) {
  int j, n, args;
  lua_rawgeti(L, node, 3);
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (n < 0) n = 0;
  luaL_checkstack(L, n + 8, "too many task arguments");
  lua_rawgeti(L, node, 2);
  args = lua_gettop(L);
  for (j = 1; j <= n; j++) {
    int isref = 0;
    lua_rawgeti(L, args, j);
    if (lua_getmetatable(L, -1)) {
      isref = lua_rawequal(L, -1, QG_DELAYED) ||
              lua_rawequal(L, -1, QG_REF);
      lua_pop(L, 1);
    }
    if (!isref) continue;
    lua_pushvalue(L, QG_KEY);
    lua_rawget(L, -2);
    if (lua_rawget(L, QG_FUTS) == LUA_TNIL) { /* a value, or persisted */
      lua_pop(L, 1);
      lua_pushvalue(L, QG_GET);
      lua_insert(L, -2);
      lua_call(L, 1, 1);
      *ran = 1;
    } else {
      lua_remove(L, -2);
    }
  }
  lua_remove(L, args);
  return n;
}

/*
** The dependency ref at the top was used by one more queued task: count
** it down in ndeps, and at 0 release the future of a task key that is not
** wanted (Dask's graph: only the keys asked for are held; an input stays
** on the cluster while a task that needs it is pending).  Pops the ref.
** [-1, +0, -]
*/
static void release_input(lua_State *L) {
  int ref = lua_gettop(L), key = ref + 1;
  lua_Integer left;
  fut *u = NULL;
  lua_pushvalue(L, QG_KEY);
  lua_rawget(L, ref);
  lua_pushvalue(L, key);
  lua_rawget(L, QG_NDEPS);
  left = lua_tointeger(L, -1) - 1;
  lua_pop(L, 1);
  lua_pushvalue(L, key);
  lua_pushinteger(L, left);
  lua_rawset(L, QG_NDEPS);
  if (left == 0) {
    lua_pushvalue(L, key);
    if (lua_rawget(L, QG_WANTED) == LUA_TNIL) {
      /* only a task's future, made here: not a persisted part's */
      lua_pushvalue(L, QG_NODE);
      if (lua_rawget(L, ref) == LUA_TTABLE &&
          lua_rawgeti(L, -1, 1) != LUA_TNIL) {
        lua_pushvalue(L, key);
        lua_rawget(L, QG_FUTS);
        u = to_fut(L, -1);
      }
    }
  }
  if (u) fut_unref(u);
  lua_settop(L, ref - 1);
}

/* After a task of node was queued: release_input for each reference to a
   dependency (each ref among the arguments, or each of deps), when there
   are two or more.  The input of a task of one input keeps its future
   (the garbage collector releases it, as before): in a chain computed
   unfused, freeing each link as the next one finished put a FREE in the
   chain's path (bench e, optimize = false: about 20 -> 30 us a link). */
static void release_inputs(lua_State *L, int node) {
  int j, n, list, nrefs = 0;
  if (lua_rawgeti(L, node, 4) == LUA_TTABLE) { /* deps: nested refs */
    n = (int)lua_rawlen(L, -1);
  } else {
    lua_pop(L, 1);
    lua_rawgeti(L, node, 3);
    n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, node, 2);
  }
  list = lua_gettop(L);
  for (j = 1; j <= n; j++) { /* the refs, on the stack */
    int isref = 0;
    lua_rawgeti(L, list, j);
    if (lua_getmetatable(L, -1)) {
      isref = lua_rawequal(L, -1, QG_DELAYED) ||
              lua_rawequal(L, -1, QG_REF);
      lua_pop(L, 1);
    }
    if (isref) {
      nrefs++;
      luaL_checkstack(L, 4, "too many task arguments");
    } else {
      lua_pop(L, 1);
    }
  }
  for (j = 0; j < nrefs; j++) {
    if (nrefs >= 2) release_input(L); /* pops the top ref */
    else lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/*
** h:queue_graph(order, client, futs, get, resolve, NODE, Delayed, Ref
**               [, ndeps, wanted]):
** queue the tasks of a compiled delayed graph (lua/dlua/delayed/run.lua)
** and send them.  order is the list of refs in priority order (the
** position is each task's order); ref[NODE] is the node record of
** lua/dlua/delayed/build.lua: {fn, args, n, deps, deep, spec}, or one
** with a future (kept: futs[key] = it) or data (skipped).  futs[key]
** becomes each task's future.  A node whose refs are nested in tables
** (deep) gets its arguments from resolve(node) -> (call, n); a ref that
** futs lacks is get(ref).  One call for the graph, with no table per task
** (the Lua loop made a call table and went through three calls a task).
** Tasks of one function whose arguments are plain values (nil, booleans,
** numbers, strings) encode fn once, as h:map's rows do, until Lua code
** may have run (get, resolve, a codec's hook) or another such function
** comes; not on a worker's client (DL_CLIENT_EAGER: each task carries
** its functions).
** With ndeps (key -> references from the graph's tasks, as toposort
** counts them, and counted down here) and wanted (key -> true), the
** future of a task that is not wanted is released once its last
** dependent is queued: the scheduler then keeps its result only while a
** dependent needs it, and does not tell this client when it is done (as
** Dask holds only the keys that compute asked for).
** Raises like h:submit; the tasks before the one that failed stay queued.
*/
static int h_queue_graph(lua_State *L) {
  handle *h = check_handle(L, 1);
  lua_Integer i, len;
  dl_task_opts o;
  int shape_n = -1; /* arguments of the row shape in h->gshape; -1: none */
  int eager = (h->cl.flags & DL_CLIENT_EAGER) != 0, release;
  luaL_checktype(L, QG_ORDER, LUA_TTABLE);
  luaL_checkany(L, QG_CLIENT);
  luaL_checktype(L, QG_FUTS, LUA_TTABLE);
  luaL_checkany(L, QG_REF);
  release = lua_istable(L, QG_NDEPS);
  if (release) luaL_checktype(L, QG_WANTED, LUA_TTABLE);
  lua_settop(L, QG_WANTED);
  lua_pushliteral(L, "key");
  lua_pushnil(L); /* the function of the current row shape */
  memset(&o, 0, sizeof o);
  len = (lua_Integer)lua_rawlen(L, QG_ORDER);
  for (i = 1; i <= len; i++) {
    int ref = QG_TOP + 1, kidx = ref + 1, node = ref + 2, fi = ref + 3, n;
    int ran = 0, kind, rc;
    const char *key;
    size_t klen;
    lua_settop(L, QG_TOP);
    lua_rawgeti(L, QG_ORDER, i);
    lua_pushvalue(L, QG_KEY);
    lua_rawget(L, ref);
    if (lua_type(L, kidx) != LUA_TSTRING)
      return luaL_error(L, "queue_graph: order[%I] has no string key", i);
    key = lua_tolstring(L, kidx, &klen);
    lua_pushvalue(L, QG_NODE);
    if (lua_rawget(L, ref) != LUA_TTABLE)
      return luaL_error(L, "queue_graph: order[%I] has no node", i);
    if (lua_getfield(L, node, "future") != LUA_TNIL) { /* persisted */
      lua_pushvalue(L, kidx);
      lua_insert(L, -2);
      lua_rawset(L, QG_FUTS);
      continue;
    }
    lua_pop(L, 1);
    lua_getfield(L, node, "data");
    if (lua_toboolean(L, -1)) continue;
    lua_pop(L, 1);
    lua_rawgeti(L, node, 1); /* fn, at fi */
    lua_rawgeti(L, node, 5);
    if (lua_toboolean(L, -1)) { /* refs nested in tables: resolve them */
      int j, call;
      lua_pop(L, 1);
      lua_pushvalue(L, QG_RESOLVE);
      lua_pushvalue(L, node);
      lua_call(L, 1, 2);
      ran = 1;
      n = (int)lua_tointeger(L, -1);
      lua_pop(L, 1);
      if (n < 0 || !lua_istable(L, -1))
        return luaL_error(L, "queue_graph: resolve gave no argument list");
      call = lua_gettop(L);
      luaL_checkstack(L, n + 8, "too many task arguments");
      for (j = 1; j <= n; j++) lua_rawgeti(L, call, j);
      lua_remove(L, call);
    } else {
      lua_pop(L, 1);
      n = push_task_args(L, node, &ran);
    }
    o.order = (int64_t)i;
    dl_client_task_opts(&h->cl, &o);
    if (ran) shape_n = -1; /* Lua code ran: fn may capture other values */
    kind = plain_args(L, fi + 1, n);
    if (kind == 2 && !eager &&
        !(shape_n == n && lua_rawequal(L, fi, QG_SHAPEFN))) {
      /* A new shape; fn's functions go first, as for a task. */
      shape_n = -1;
      if (encode_shape_in(L, h, fi, n, &h->gshape) == 0) {
        dl_client_task_share_tail(&h->cl);
        lua_pushvalue(L, fi);
        lua_replace(L, QG_SHAPEFN);
        shape_n = n;
      }
    }
    rc = 1;
    if (kind == 2 && shape_n == n && lua_rawequal(L, fi, QG_SHAPEFN)) {
      h->payload.len = 0;
      rc = dl_codec_encode_row(L, h->gshape.p, h->gshape.len, fi + 1, n,
                               &h->payload);
      if (rc < 0) return luaL_error(L, "queue_graph: cannot encode a task");
    }
    if (rc == 0) {
      dl_client_submit_tail(&h->cl, key, klen, h->payload.p,
                            h->payload.len);
    } else {
      encode_task(L, h, fi, fi + 1, n);
      put_submit(h, key, klen);
      /* A table or other value may run a codec's Lua code. */
      if (kind == 0) shape_n = -1;
    }
    push_future(L, h, key, klen, QG_CLIENT);
    lua_pushvalue(L, kidx);
    lua_insert(L, -2);
    lua_rawset(L, QG_FUTS);
    if (release) release_inputs(L, node);
  }
  lua_settop(L, QG_TOP);
  lua_pushboolean(L, flush_now(h, 0) == 0);
  return 1;
}

/*
** h:map(spec, fn, seqs, nargs, len, keys, first, client) -> {futures}
** Queue len tasks fn(seqs[1][i], ..., seqs[nargs][i]) with the options of
** spec (as h:submit, less its key) and return their futures.  The key of
** task i is keys[i] when keys is a table, else the string keys followed by
** first + i - 1 in lower-case hex, 8 digits at least (the format of
** lua/dlua/keys.lua).  Future i is a "dlua.Future" of client whose record
** (made pending, or counted once more) is in the handle's table.  A
** task whose arguments are all nil, booleans, numbers or strings reuses
** the encoding of fn made for the first task of the call, unless a
** sequence has a metatable (no Lua code can run between tasks otherwise).
** Raises like h:submit; the tasks before the one that failed stay queued.
*/
static int h_map(lua_State *L) {
  handle *h = check_handle(L, 1);
  lua_Integer nargs, len, first, i;
  int keyed, seq0, mt, futs, shaped = 0, j;
  size_t stemlen = 0;
  const char *stem = NULL;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checkany(L, 3);
  luaL_checktype(L, 4, LUA_TTABLE);
  nargs = luaL_checkinteger(L, 5);
  len = luaL_checkinteger(L, 6);
  keyed = lua_istable(L, 7);
  if (!keyed) stem = luaL_checklstring(L, 7, &stemlen);
  first = luaL_checkinteger(L, 8);
  luaL_checkany(L, 9);
  luaL_argcheck(L, nargs >= 1 && nargs < INT_MAX / 2, 5, "bad sequence count");
  luaL_argcheck(L, len >= 0 && len < INT_MAX, 6, "bad length");
  lua_settop(L, 9);
  luaL_checkstack(L, (int)nargs + 16, "too many sequences");
  put_spec(L, h, 2);
  if (!keyed && dl_client_key_stem(&h->cl, stem, stemlen))
    return luaL_error(L, "not enough memory");
  seq0 = lua_gettop(L) + 1;
  for (j = 0; j < (int)nargs; j++) {
    lua_rawgeti(L, 4, j + 1);
    /* An __index could change what fn captures between two tasks: then
       every task encodes fn afresh, as submit would. */
    if (lua_getmetatable(L, -1)) {
      lua_pop(L, 1);
      shaped = 1;
    }
  }
  /* shaped: the shape of this call is made, or ruled out (len 0). */
  if (shaped) h->shape.len = 0;
  luaL_getmetatable(L, DL_FUTURE_MT);
  mt = lua_gettop(L);
  lua_createtable(L, (int)len, 0);
  dl_client_reserve(&h->cl, (size_t)len); /* one rehash, not many */
  futs = mt + 1;
  for (i = 1; i <= len; i++) {
    int kidx = futs + 1, a0 = futs + 2, rc = 1;
    const char *key;
    size_t klen;
    if (keyed) {
      lua_rawgeti(L, 7, i);
      if (lua_type(L, kidx) != LUA_TSTRING)
        return luaL_error(L, "map: keys[%I] must be a string", i);
      key = lua_tolstring(L, kidx, &klen);
    } else {
      key = dl_client_key(&h->cl, (uint64_t)(first + i - 1), &klen);
      if (key == NULL) return luaL_error(L, "not enough memory");
      lua_pushnil(L); /* keeps the arguments at a0 */
    }
    for (j = 0; j < (int)nargs; j++) lua_geti(L, seq0 + j, i);
    if (!shaped) {
      shaped = 1;
      encode_shape(L, h, 3, (int)nargs);
    }
    if (h->shape.len) {
      h->payload.len = 0;
      rc = dl_codec_encode_row(L, h->shape.p, h->shape.len, a0, (int)nargs,
                               &h->payload);
      if (rc < 0) return luaL_error(L, "map: cannot encode a task");
    }
    if (rc == 0) {
      dl_client_submit_row(&h->cl, key, klen, h->payload.p, h->payload.len);
    } else {
      encode_task(L, h, 3, a0, (int)nargs);
      put_submit(h, key, klen);
    }
    push_future(L, h, key, klen, 9);
    lua_rawseti(L, futs, i);
    lua_settop(L, futs);
  }
  flush_now(h, 0);
  return 1;
}

/* h:cancel(key): sent at once. */
static int h_cancel(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, HANDLE_MT);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  if (h->srv == NULL && !h->link) return 0; /* closed: nothing to cancel */
  dl_client_cancel_key(&h->cl, key, klen);
  return 0;
}

/* h:gather(reqid, {keys}) */
static int h_gather(lua_State *L) {
  handle *h = check_handle(L, 1);
  lua_Integer reqid = luaL_checkinteger(L, 2), n, i;
  luaL_checktype(L, 3, LUA_TTABLE);
  n = luaL_len(L, 3);
  for (i = 1; i <= n; i++) { /* checked before anything is queued */
    lua_rawgeti(L, 3, i);
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "gather: keys must be strings");
    lua_pop(L, 1);
  }
  dl_client_gather(&h->cl, (uint64_t)reqid, (uint64_t)n);
  for (i = 1; i <= n; i++) {
    size_t klen;
    const char *k;
    lua_rawgeti(L, 3, i);
    k = lua_tolstring(L, -1, &klen);
    dl_client_gather_key(&h->cl, k, klen);
    lua_pop(L, 1);
  }
  flush_now(h, 1);
  return 0;
}

/* h:scatter(key, value [, {worker ids}]) */
static int h_scatter(lua_State *L) {
  handle *h = check_handle(L, 1);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  char err[600];
  dl_enc_opts eo = {0, NULL, NULL, "scattered value"};
  size_t n;
  luaL_checkany(L, 3);
  h->payload.len = 0;
  if (dl_codec_encode(L, 3, &h->payload, &eo, err, sizeof err))
    return luaL_error(L, "%s", err);
  n = get_ids(L, h, 4);
  dl_client_scatter(&h->cl, key, klen, h->payload.p, h->payload.len,
                    (const uint64_t *)(void *)h->ids.p, n);
  flush_now(h, 0);
  return 0;
}

/* h:coord(reqid, op, name, timeout_ms, n, lease, bytes): a Variable,
   Queue, Event or Semaphore request (dl_coord.h), sent at once; the
   answer comes to poll's on_data as (reqid, nil, status, bytes). */
static int h_coord(lua_State *L) {
  handle *h = check_handle(L, 1);
  lua_Integer reqid = luaL_checkinteger(L, 2), op = luaL_checkinteger(L, 3);
  size_t nlen, blen;
  const char *name = luaL_checklstring(L, 4, &nlen);
  lua_Integer tmo = luaL_checkinteger(L, 5), n = luaL_checkinteger(L, 6);
  lua_Integer lease = luaL_checkinteger(L, 7);
  const char *bytes = luaL_optlstring(L, 8, "", &blen);
  dl_msg_coord m;
  m.reqid = (uint64_t)reqid;
  m.op = (unsigned)op;
  m.name = name;
  m.nlen = nlen;
  m.timeout_ms = (uint64_t)tmo;
  m.n = (uint64_t)n;
  m.lease = (uint64_t)lease;
  m.bytes = bytes;
  m.blen = blen;
  m.task = NULL; /* the dashboard names the task that waits or holds */
  m.tlen = 0;
  if (h->link) m.task = dl_worker_task_key(&m.tlen);
  dl_client_coord(&h->cl, &m);
  return 0;
}

/* h:flush(): hand queued messages to the scheduler now. */
static int h_flush(lua_State *L) {
  handle *h = check_handle(L, 1);
  lua_pushboolean(L, flush_now(h, 1) == 0);
  return 1;
}

/* Push an error record as message, traceback, worker, value (the table
   the task raised, decoded as data, or nil).  [-0, +4, m] */
static int push_errrec(lua_State *L, const char *p, size_t n) {
  dl_err_rec e;
  const char *s[4];
  size_t len[4];
  int i;
  if (dl_get_err_rec(p, n, &e)) return -1;
  s[0] = e.msg, len[0] = e.mlen;
  s[1] = e.tb, len[1] = e.tblen;
  s[2] = e.worker, len[2] = e.wlen;
  s[3] = e.value, len[3] = e.vlen;
  for (i = 0; i < 3; i++) {
    if (len[i]) lua_pushlstring(L, s[i], len[i]);
    else lua_pushnil(L);
  }
  if (len[3]) {
    char err[200];
    dl_dec_opts dopt = {1, NULL, NULL};
    if (dl_codec_decode(L, s[3], len[3], &dopt, err, sizeof err))
      lua_pushnil(L);
  } else {
    lua_pushnil(L);
  }
  return 0;
}

static const char *const kind_names[7] = {
  "", "error", "cancelled", "timeout", "killed", "dependency", "lost"
};

/*
** h:poll(timeout, on_data [, hint]) -> count | nil, message [, "interrupted"]
** Flushes, waits up to timeout seconds (negative: forever) for scheduler
** messages and handles each one: a done or failed task updates its record
** in the handle's future table (small results come inline; see
** dl_client_done), and the others call
**   on_data(reqid, key, found, value_or_errmsg)
** A wait that Ctrl-C (dlua_interrupt) stops returns nil, "interrupted!",
** "interrupted" and takes no message: nothing is lost.
*/
static int dispatch_in(lua_State *L, handle *h);
static int link_poll(lua_State *L, handle *h);

/* Why the cluster of h no longer answers. */
static const char *stopped_why(handle *h) {
  const char *lost = h->srv ? dl_server_lost(h->srv) : NULL;
  return lost ? lost : "the cluster has stopped";
}

static int h_poll(lua_State *L) {
  handle *h = check_handle(L, 1);
  double timeout = luaL_optnumber(L, 2, -1);
  int rc;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 4);
  if (h->link) return link_poll(L, h);
  if (flush_now(h, 1)) {
    lua_pushnil(L);
    lua_pushstring(L, stopped_why(h));
    return 2;
  }
  if (h->unread) { /* drain_news left news for Lua: dispatch them now */
    h->unread = 0;
    timeout = 0;
  } else {
    h->in.len = 0;
  }
  rc = dl_server_recv(h->srv, &h->in, timeout);
  if (rc == 0 && h->in.len) rc = 1;
  if (rc == DL_EINTR) {
    lua_pushnil(L);
    lua_pushliteral(L, "interrupted!");
    lua_pushliteral(L, "interrupted");
    return 3;
  }
  if (rc < 0) {
    lua_pushnil(L);
    lua_pushstring(L, stopped_why(h));
    return 2;
  }
  return dispatch_in(L, h);
}

/* After a parked wait: raise the error the wait must raise (a cycle), or
   take the news and handle it. */
static int link_poll_k(lua_State *L, int status, lua_KContext ctx) {
  handle *h = luaL_checkudata(L, 1, HANDLE_MT);
  const char *e = dl_worker_park_error();
  (void)status;
  (void)ctx;
  if (e) return luaL_error(L, "%s", e);
  h->in.len = 0;
  dl_worker_link_take(&h->in);
  return dispatch_in(L, h);
}

/*
** poll on the tasks' client: take the news that came; with none and a
** timeout, wait: a task's own coroutine yields to the worker's executor
** (which runs other tasks meanwhile) until news of what it waits for
** comes (argument 4, the hint: the key of a future, or a gather's request
** id), or the timeout passes; other waits (inside a coroutine of the
** task's, or across a C call) block the executor.
*/
static int link_poll(lua_State *L, handle *h) {
  double timeout = luaL_optnumber(L, 2, -1);
  flush_now(h, 1);
  h->in.len = 0;
  if (!dl_worker_link_take(&h->in) && timeout != 0) {
    if (dl_worker_can_park(L)) {
      size_t klen = 0;
      const char *key = NULL;
      if (lua_type(L, 4) == LUA_TSTRING) {
        key = lua_tolstring(L, 4, &klen);
        dl_worker_park(DL_PARK_KEY, timeout, key, klen, 0);
      } else if (lua_isinteger(L, 4)) {
        dl_worker_park(DL_PARK_REQ, timeout, NULL, 0,
                       (uint64_t)lua_tointeger(L, 4));
      } else {
        dl_worker_park(DL_PARK_ANY, timeout, NULL, 0, 0);
      }
      return lua_yieldk(L, 0, 0, link_poll_k);
    }
    if (dl_worker_link_block(timeout)) dl_worker_link_take(&h->in);
  }
  return dispatch_in(L, h);
}

static int link_sleep_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  lua_pushboolean(L, 1);
  return 1;
}

/* h:park_sleep(seconds) -> true after sleeping with the task parked (its
   slot given back), or false where the caller cannot park: it then
   sleeps its own way. */
static int h_park_sleep(lua_State *L) {
  handle *h = check_handle(L, 1);
  double s = luaL_checknumber(L, 2);
  if (!h->link || !dl_worker_can_park(L)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  flush_now(h, 1);
  dl_worker_park(DL_PARK_SLEEP, s, NULL, 0, 0);
  return lua_yieldk(L, 0, 0, link_sleep_k);
}

/* Handle the messages in h->in (see h_poll); on_data is at 3.  Returns
   count.  [-0, +1, e] */
static int dispatch_in(lua_State *L, handle *h) {
  int count = 0, rc;
  dl_rd r;
  dl_cnews nw;
  /* The bytes stay in h->in (owned by the handle) while callbacks run, so
     an error raised by one leaks nothing; callbacks must not poll. */
  h->polling = 1;
  dl_rd_init(&r, h->in.p, h->in.len);
  while ((rc = dl_client_next(&h->cl, &r, &nw, &count)) == 1) {
    lua_pushvalue(L, 3);
    lua_pushinteger(L, (lua_Integer)nw.reqid);
    if (nw.type == DL_CNEWS_COORD) {
      lua_pushnil(L);
      lua_pushinteger(L, (lua_Integer)nw.status);
      lua_pushlstring(L, nw.bytes, nw.blen);
    } else {
      char err[600];
      dl_dec_opts dopt = {0, NULL, NULL};
      int bad;
      lua_pushlstring(L, nw.key, nw.klen);
      bad = nw.bad != NULL ||
            (nw.found &&
             dl_codec_decode(L, nw.bytes, nw.blen, &dopt, err, sizeof err));
      dl_free(nw.mapped); /* the decoded value has its own bytes */
      if (nw.bad != NULL) snprintf(err, sizeof err, "%s", nw.bad);
      if (!nw.found) {
        lua_pushboolean(L, 0);
        lua_pushnil(L);
      } else if (bad) {
        lua_pushboolean(L, 0);
        lua_pushfstring(L, "cannot decode the result of '%s': %s",
                        lua_tostring(L, -2), err);
      } else {
        lua_pushboolean(L, 1);
        lua_insert(L, -2);
      }
    }
    lua_call(L, 4, 0);
  }
  h->polling = 0;
  if (rc < 0) return luaL_error(L, "not enough memory");
  lua_pushinteger(L, count);
  return 1;
}

/*
** h:values(futs, out, i) -> true | k | false, out
** gather's fast path for an array of futures.  futs must be a table
** without metatable holding only futures, at the keys 1 .. n (checked when
** i is 1, where out may be nil: a table for n values is made).  For k from
** i on, stores in out[k] the value that came inline with the done message
** of future k, and returns k if that future is still pending, true once out
** is complete.  Returns false where the fast path does not apply (futs is
** not such an array, or future k was released, failed, was cancelled or
** has no inline value): gather then takes its general path.
*/
static int h_values(lua_State *L) {
  lua_Integer n, k, count = 0;
  int top;
  char err[600], buf[DL_CFUT_BUF];
  dl_dec_opts dopt = {0, NULL, NULL};
  luaL_checktype(L, 2, LUA_TTABLE);
  k = luaL_checkinteger(L, 4);
  lua_settop(L, 4);
  n = (lua_Integer)lua_rawlen(L, 2);
  if (lua_isnil(L, 3)) {
    lua_createtable(L, n < INT_MAX ? (int)n : 0, 0);
    lua_replace(L, 3);
  }
  luaL_checktype(L, 3, LUA_TTABLE);
  top = lua_gettop(L);
  if (k == 1) {
    if (lua_getmetatable(L, 2)) goto no;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      lua_Integer i;
      int isint;
      i = lua_tointegerx(L, -2, &isint);
      if (!isint || lua_type(L, -2) != LUA_TNUMBER || i < 1 || i > n ||
          to_fut(L, -1) == NULL)
        goto no;
      count++;
      lua_pop(L, 1);
    }
    if (count != n) goto no;
  }
  for (; k <= n; k++) {
    fut *u;
    dl_cfut *f;
    lua_rawgeti(L, 2, k);
    u = to_fut(L, -1);
    if (u == NULL || fut_released(u) || (f = fut_rec(u)) == NULL ||
        f->client == 0)
      goto no;
    if (f->status == DL_FUT_PENDING) {
      lua_pushinteger(L, k);
      lua_pushvalue(L, 3);
      return 2;
    }
    if (f->status != DL_FUT_FINISHED || !(f->flags & DL_FUT_VALUE)) goto no;
    if (dl_codec_decode(L, dl_cfut_data(f, buf), dl_cfut_len(f), &dopt, err,
                        sizeof err))
      return decode_error(L, f, err);
    lua_rawseti(L, 3, k);
    lua_settop(L, top);
  }
  lua_pushboolean(L, 1);
  lua_pushvalue(L, 3);
  return 2;
no:
  lua_pushboolean(L, 0);
  lua_pushvalue(L, 3);
  return 2;
}

/* h:future(key, client) -> a new future of key for client (a pending
   record is made if the handle holds none of key). */
static int h_future(lua_State *L) {
  handle *h = check_handle(L, 1);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  luaL_checkany(L, 3);
  push_future(L, h, key, klen, 3);
  return 1;
}

/* h:close_client(send): forget every future (they then say the client is
   closed); with send, the scheduler is told that each was released. */
static int h_close_client(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, HANDLE_MT);
  int send = lua_toboolean(L, 2) && (h->srv || h->link);
  dl_client_close(&h->cl, send);
  return 0;
}

/* h:fired() -> {keys} of the futures done since the last call whose
   done-callbacks wait, or nil when there are none. */
static int h_fired(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, HANDLE_MT);
  size_t n, i;
  dl_cfut **list;
  if (h->cl.nfired == 0) return 0;
  lua_createtable(L, (int)h->cl.nfired, 0); /* before the take: may raise */
  list = dl_client_take_fired(&h->cl, &n);
  for (i = 0; i < n; i++) {
    char buf[DL_CFUT_KEYBUF];
    size_t klen;
    const char *key = dl_cfut_key(list[i], buf, &klen);
    lua_pushlstring(L, key, klen);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
    dl_client_drop(list[i]);
  }
  dl_free(list);
  return 1;
}

/* t[k] = v, t on the top of the stack */
static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* h:workers() -> {{id=, pid=, nthreads=, memory_limit=, managed=, ...,
   name= (only for a worker started with a name), io={spill_out=,
   spill_in=, xfer_in=, xfer_out=}}} */
static int h_workers(lua_State *L) {
  handle *h = check_local(L, 1);
  dl_sched_winfo info[256];
  int n = dl_server_workers(h->srv, info, 256), i;
  double now = (double)uv_hrtime() * 1e-9;
  if (n > 256) n = 256;
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    lua_createtable(L, 0, 12);
    set_int(L, "id", info[i].id);
    set_int(L, "pid", info[i].pid);
    set_int(L, "nthreads", info[i].nthreads);
    set_int(L, "memory_limit", info[i].memory_limit);
    set_int(L, "managed", info[i].managed);
    set_int(L, "spilled", info[i].spilled);
    set_int(L, "rss", info[i].rss);
    set_int(L, "executing", info[i].executing);
    set_int(L, "processing", info[i].inflight);
    set_int(L, "stored", info[i].stored);
    lua_pushnumber(L, now - info[i].started);
    lua_setfield(L, -2, "uptime");
    lua_pushstring(L, dl_sched_status_name(info[i].status));
    lua_setfield(L, -2, "status");
    lua_pushnumber(L, now - info[i].last_seen);
    lua_setfield(L, -2, "last_seen");
    if (info[i].spill_err[0]) {
      lua_pushstring(L, info[i].spill_err);
      lua_setfield(L, -2, "spill_error");
    }
    if (info[i].name[0]) {
      lua_pushstring(L, info[i].name);
      lua_setfield(L, -2, "name");
    }
    /* Bytes since it started: a spill that came and went shows here. */
    lua_createtable(L, 0, 4);
    set_int(L, "spill_out", info[i].spill_out);
    set_int(L, "spill_in", info[i].spill_in);
    set_int(L, "xfer_in", info[i].xfer_in);
    set_int(L, "xfer_out", info[i].xfer_out);
    lua_setfield(L, -2, "io");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* h:departed() -> {{id=, pid=, status="dead", reason=, name=}, ...}: the
   last workers that left (name only for a named worker) */
static int h_departed(lua_State *L) {
  handle *h = check_local(L, 1);
  dl_sched_winfo info[DL_SCHED_DEPARTED];
  int n = dl_server_departed(h->srv, info, DL_SCHED_DEPARTED), i;
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, info[i].id);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, (lua_Integer)info[i].pid);
    lua_setfield(L, -2, "pid");
    lua_pushstring(L, "dead");
    lua_setfield(L, -2, "status");
    lua_pushstring(L, info[i].reason);
    lua_setfield(L, -2, "reason");
    if (info[i].name[0]) {
      lua_pushstring(L, info[i].name);
      lua_setfield(L, -2, "name");
    }
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static const char *const state_names[6] = {"waiting", "ready", "processing",
                                           "memory", "erred", "released"};

/* h:counts() -> {waiting=, ready=, processing=, memory=, erred=,
   released=} */
static int h_counts(lua_State *L) {
  handle *h = check_local(L, 1);
  const char *const *names = state_names;
  int64_t c[6];
  int i;
  dl_server_counts(h->srv, c);
  lua_createtable(L, 0, 6);
  for (i = 0; i < 6; i++) {
    lua_pushinteger(L, (lua_Integer)c[i]);
    lua_setfield(L, -2, names[i]);
  }
  return 1;
}

/* h:groups() -> {{name=, total=, done=, erred=, waiting=, ready=,
   processing=, memory=, released=}, ...}: task groups by key prefix */
static int h_groups(lua_State *L) {
  handle *h = check_local(L, 1);
  dl_sched_group g[512];
  int n = dl_server_groups(h->srv, g, 512), i, k;
  if (n > 512) n = 512;
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    lua_createtable(L, 0, 10);
    lua_pushstring(L, g[i].name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, (lua_Integer)g[i].total);
    lua_setfield(L, -2, "total");
    lua_pushinteger(L, (lua_Integer)g[i].done);
    lua_setfield(L, -2, "done");
    lua_pushinteger(L, (lua_Integer)g[i].erred);
    lua_setfield(L, -2, "failed");
    for (k = 0; k < 6; k++) {
      lua_pushinteger(L, (lua_Integer)g[i].counts[k]);
      lua_setfield(L, -2, state_names[k]);
    }
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* h:events([since]) -> {{group=, worker=, start=, stop=, ok=}, ...}, next
   : tasks finished since event number since (the task stream) */
static int h_events(lua_State *L) {
  handle *h = check_local(L, 1);
  uint64_t since = (uint64_t)luaL_optinteger(L, 2, 0), next;
  dl_sched_event ev[100]; /* 26 KiB of stack; callers page with next */
  int n = dl_server_events(h->srv, since, ev, 100, &next), i;
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    lua_createtable(L, 0, 5);
    lua_pushstring(L, ev[i].group);
    lua_setfield(L, -2, "group");
    lua_pushinteger(L, ev[i].worker);
    lua_setfield(L, -2, "worker");
    lua_pushnumber(L, ev[i].start);
    lua_setfield(L, -2, "start");
    lua_pushnumber(L, ev[i].stop);
    lua_setfield(L, -2, "stop");
    lua_pushboolean(L, ev[i].ok);
    lua_setfield(L, -2, "ok");
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushinteger(L, (lua_Integer)next);
  return 2;
}

/* h:report(t0, title) -> the HTML of a performance report of the work
   since t0 (dlua.time() seconds); see dl_dashboard_report. */
static int h_report(lua_State *L) {
  handle *h = check_handle(L, 1);
  double t0 = luaL_checknumber(L, 2);
  const char *title = luaL_optstring(L, 3, "");
  dl_buf *b = &h->payload; /* the handle's scratch: freed with it if the
                              push below raises */
  int rc;
  b->len = 0;
  rc = dl_dashboard_report(h->srv, t0, title, b);
  if (rc == 0) lua_pushlstring(L, b->p, b->len);
  dl_buf_free(b); /* a report is big and rare: do not keep the room */
  if (rc) return luaL_error(L, "performance report: out of memory");
  return 1;
}

/* h:scale(n) */
static int h_scale(lua_State *L) {
  handle *h = check_local(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0 && n <= 1024, 2, "worker count out of range");
  dl_server_scale(h->srv, (int)n);
  h->nworkers = (int)n;
  return 0;
}

/* h:listen_address() -> "tcp://host:port" where workers join, or nil */
static int h_listen_address(lua_State *L) {
  handle *h = check_handle(L, 1);
  const char *a = h->srv ? dl_server_listen_address(h->srv) : NULL;
  if (a) lua_pushstring(L, a);
  else lua_pushnil(L);
  return 1;
}

/* cluster.connect{address=, token_file=, tls_dir=, timeout=} -> handle, or nil,
   message: the client's link to a `dlua scheduler` in another process. */
static int cl_connect(lua_State *L) {
  dl_token token;
  const dl_tls_ctx *tls;
  const char *addr, *tf;
  double timeout;
  char err[600];
  handle *h;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "address");
  addr = luaL_checkstring(L, -1);
  lua_getfield(L, 1, "token_file");
  tf = luaL_optstring(L, -1, NULL);
  lua_getfield(L, 1, "timeout");
  timeout = luaL_optnumber(L, -1, 0);
  if (dl_token_load(&token, tf, err, sizeof err) != 0 ||
      opt_tls(L, 1, &tls, err, sizeof err) != 0) {
    memset(&token, 0, sizeof token);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  h = new_handle(L, 0, 1);
  h->srv = dl_server_connect(addr, &token, tls, DLUA_VERSION_STRING, timeout,
                             err, sizeof err);
  memset(&token, 0, sizeof token);
  if (h->srv == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

/* h:shutdown() -> true, or nil, message: stop the remote scheduler and its
   workers (the messages queued before go first). */
static int h_shutdown(lua_State *L) {
  handle *h = check_handle(L, 1);
  if (!h->remote) return luaL_error(L, "shutdown: not a remote cluster");
  if (flush_now(h, 1) || dl_server_shutdown(h->srv)) {
    lua_pushnil(L);
    lua_pushstring(L, stopped_why(h));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* h:ended() -> true once the cluster's thread has stopped (a remote
   scheduler gone, or a shutdown asked by a remote client) */
static int h_ended(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, HANDLE_MT);
  lua_pushboolean(L, h->srv == NULL || dl_server_ended(h->srv));
  return 1;
}

/* cluster.read_scheduler_file(path) -> {address=, dashboard=, id=, pid=},
   or nil, message */
static int cl_read_schedfile(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  dl_schedfile f;
  char err[600];
  if (dl_schedfile_read(path, &f, err, sizeof err)) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_createtable(L, 0, 4);
  lua_pushstring(L, f.address);
  lua_setfield(L, -2, "address");
  lua_pushstring(L, f.dashboard);
  lua_setfield(L, -2, "dashboard");
  lua_pushstring(L, f.id);
  lua_setfield(L, -2, "id");
  lua_pushinteger(L, (lua_Integer)f.pid);
  lua_setfield(L, -2, "pid");
  if (f.tls_dir[0]) {
    lua_pushstring(L, f.tls_dir);
    lua_setfield(L, -2, "tls_dir");
  }
  return 1;
}

/* cluster.write_scheduler_file(path, {address=, dashboard=, id=, pid=})
   -> true, or nil, message (written atomically, mode 0600) */
static int cl_write_schedfile(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  dl_schedfile f;
  const char *v;
  char err[600];
  memset(&f, 0, sizeof f);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "address");
  snprintf(f.address, sizeof f.address, "%s", luaL_checkstring(L, -1));
  lua_getfield(L, 2, "dashboard");
  v = luaL_optstring(L, -1, "");
  snprintf(f.dashboard, sizeof f.dashboard, "%s", v);
  lua_getfield(L, 2, "id");
  snprintf(f.id, sizeof f.id, "%s", luaL_optstring(L, -1, ""));
  lua_getfield(L, 2, "pid");
  f.pid = (long long)luaL_optinteger(L, -1, 0);
  lua_getfield(L, 2, "tls_dir");
  v = luaL_optstring(L, -1, "");
  if (strlen(v) >= sizeof f.tls_dir)
    return luaL_error(L, "tls_dir too long (%d bytes at most)",
                      (int)sizeof f.tls_dir - 1);
  snprintf(f.tls_dir, sizeof f.tls_dir, "%s", v);
  if (dl_schedfile_write(path, &f, DLUA_VERSION_STRING, err, sizeof err)) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* h:lost() -> why the link to a remote scheduler ended, or nil */
static int h_lost(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, HANDLE_MT);
  const char *why = h->srv ? dl_server_lost(h->srv) : NULL;
  if (why) lua_pushstring(L, why);
  else lua_pushnil(L);
  return 1;
}

/* h:dir() -> the cluster's private directory (its "address") */
static int h_dir(lua_State *L) {
  handle *h = check_local(L, 1);
  lua_pushstring(L, dl_server_dir(h->srv));
  return 1;
}

/* h:stats() -> spawned, died */
static int h_stats(lua_State *L) {
  handle *h = check_local(L, 1);
  int spawned, died;
  dl_server_stats(h->srv, &spawned, &died);
  lua_pushinteger(L, spawned);
  lua_pushinteger(L, died);
  return 2;
}

/* cluster.wake_seq() -> a number that changes whenever some cluster of
   this process has messages for its client (see cluster.idle). */
static int cl_wake_seq(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)dl_server_wake_seq());
  return 1;
}

/*
** cluster.idle(seq, timeout) -> true | false | nil, "interrupted!"
** Sleep (no spinning) until the wake_seq is no longer seq (true), timeout
** seconds pass (false), or Ctrl-C (dlua_interrupt) asks waits to stop.
*/
static int cl_idle(lua_State *L) {
  unsigned seq = (unsigned)luaL_checkinteger(L, 1);
  double timeout = luaL_checknumber(L, 2);
  int rc = dl_server_idle(seq, timeout);
  if (rc == DL_EINTR) {
    lua_pushnil(L);
    lua_pushliteral(L, "interrupted!");
    return 2;
  }
  lua_pushboolean(L, rc == 1);
  return 1;
}

/* cluster.machine() -> cores, total memory in bytes */
static int cl_machine(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_available_parallelism());
  lua_pushinteger(L, (lua_Integer)uv_get_total_memory());
  return 2;
}

static const char link_key = 'l'; /* registry: the tasks' client */

/* cluster.task_link() -> the handle of the tasks' client on this worker
   (one per worker: every task's get_client shares it), or nil outside a
   worker. */
static int cl_task_link(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "dlua.in_worker");
  if (!lua_toboolean(L, -1)) {
    lua_pushnil(L);
    return 1;
  }
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &link_key) != LUA_TNIL) return 1;
  new_handle(L, 1, 0);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &link_key);
  return 1;
}

/* cluster.pid() -> this process's id (keys made here must differ from
   those another process of the cluster makes). */
static int cl_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_os_getpid());
  return 1;
}

/* cluster.in_worker() -> true inside a worker process */
static int cl_in_worker(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "dlua.in_worker");
  lua_pushboolean(L, lua_toboolean(L, -1));
  return 1;
}

/* h:nfired() -> how many futures wait for their done-callbacks to run */
static int h_nfired(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, HANDLE_MT);
  lua_pushinteger(L, (lua_Integer)h->cl.nfired);
  return 1;
}

static const luaL_Reg handle_methods[] = {
  {"nfired", h_nfired},
  {"submit", h_submit},
  {"submit_fresh", h_submit_fresh},
  {"queue", h_queue},
  {"send_queued", h_send_queued},
  {"queue_graph", h_queue_graph},
  {"map", h_map},
  {"cancel", h_cancel},
  {"gather", h_gather},
  {"values", h_values},
  {"future", h_future},
  {"close_client", h_close_client},
  {"fired", h_fired},
  {"scatter", h_scatter},
  {"flush", h_flush},
  {"poll", h_poll},
  {"coord", h_coord},
  {"park_sleep", h_park_sleep},
  {"workers", h_workers},
  {"departed", h_departed},
  {"counts", h_counts},
  {"groups", h_groups},
  {"events", h_events},
  {"report", h_report},
  {"scale", h_scale},
  {"dir", h_dir},
  {"listen_address", h_listen_address},
  {"stats", h_stats},
  {"close", h_close},
  {"closed", h_closed},
  {"dashboard", h_dashboard},
  {"shutdown", h_shutdown},
  {"ended", h_ended},
  {"lost", h_lost},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"start", cl_start},
  {"connect", cl_connect},
  {"read_scheduler_file", cl_read_schedfile},
  {"write_scheduler_file", cl_write_schedfile},
  {"machine", cl_machine},
  {"in_worker", cl_in_worker},
  {"task_link", cl_task_link},
  {"pid", cl_pid},
  {"wake_seq", cl_wake_seq},
  {"idle", cl_idle},
  {"fstatus", cl_fstatus},
  {"fvalue", cl_fvalue},
  {"ferror", cl_ferror},
  {"fcancel", cl_fcancel},
  {"fcallbacks", cl_fcallbacks},
  {"frepend", cl_frepend},
  {"frelease", cl_frelease},
  {"freleased", cl_freleased},
  {NULL, NULL}
};

int luaopen_dlua_cluster(lua_State *L) {
  luaL_newmetatable(L, HANDLE_MT);
  luaL_newlib(L, handle_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, h_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, h_close);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  /* Futures: a userdata metatable; the Lua side fills the methods table
     (cluster.FutureMethods) and adds __tostring, __close. */
  luaL_newmetatable(L, DL_FUTURE_MT); /* a worker made it already */
  lua_pushcfunction(L, fut_gc);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, fut_index, 1);
  lua_setfield(L, -3, "__index");
  lua_insert(L, -2); /* methods, mt */
  /* Inside a worker, futures decode as their values (dl_worker.c), and
     the tasks' client sends them as keys. */
  lua_getfield(L, LUA_REGISTRYINDEX, "dlua.in_worker");
  dl_codec_register(L, DL_FUTURE_MT, future_encode,
                    lua_toboolean(L, -1) ? dl_worker_future_decode : NULL);
  lua_pop(L, 1);
  luaL_newlib(L, funcs); /* methods, mt, lib */
  lua_insert(L, -3);      /* lib, methods, mt */
  lua_setfield(L, -3, "Future");
  lua_setfield(L, -2, "FutureMethods");
  return 1;
}

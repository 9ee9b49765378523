/*
** dl_worker_exec.c -- the executor thread: owns the lua_State, decodes
** a task, runs it, and stores or reports its result.
*/
#include "dl_worker_int.h"

/* Set when a task made or used megabytes: collect garbage after it. */
static int big_garbage;

/* =========================================================== executor */

static const char cache_key = 'c'; /* registry: key -> decoded value */

/* The running task's key (under W.lock), for cancel requests. */
char dl_w_running_key[512];
size_t dl_w_running_klen;

/* Record that t failed (kind, msg, traceback tb or NULL, and the encoded
   error value val of vlen bytes when the task raised a table, else NULL). */
static void complete_err_value(wtask *t, int kind, const char *msg,
                               const char *tb, const char *val, size_t vlen) {
  char wname[32];
  t->type = DL_M_ERR;
  t->kind = kind;
  snprintf(wname, sizeof wname, "worker %d", W.id);
  dl_buf_free(&t->rec);
  dl_put_err_rec(&t->rec, kind, msg, tb, wname, val, vlen);
}

static void complete_err(wtask *t, int kind, const char *msg,
                         const char *tb) {
  complete_err_value(t, kind, msg, tb, NULL, 0);
}

/*
** Whether decoding the value at idx again would cost more than keeping it:
** tables, functions and userdata (which also keep their identity for the
** next reader), and strings longer than a key.  [-0, +0, -]
*/
static int worth_caching(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
    case LUA_TTABLE:
    case LUA_TFUNCTION:
    case LUA_TUSERDATA: return 1;
    case LUA_TSTRING: return lua_rawlen(L, idx) > 64;
    default: return 0;
  }
}

/* Mark the stored value of key as cached by the executor, so that its
   removal is reported (frees); 0 if the store does not hold key. */
static int store_mark_cached(const char *key, size_t klen) {
  blob *b;
  uv_mutex_lock(&W.lock);
  b = dl_map_get(&W.store, key, klen);
  if (b) b->cached = 1;
  uv_mutex_unlock(&W.lock);
  return b != NULL;
}

/* The entry dl_w_fn_get found last (executor's). */
static fnent *fn_last;

/* The bytecode with the given hash, for the executor's decoder.  Entries
   are freed only by the executor between tasks (dl_w_fns_reap), so the last one
   found is remembered. */
int dl_w_fn_get(void *ud, const unsigned char hash[16], const char **code,
                size_t *len) {
  fnent *f = fn_last;
  (void)ud;
  if (f == NULL || memcmp(f->hash, hash, 16) != 0) {
    uv_mutex_lock(&W.lock);
    f = dl_map_get(&W.fns, (const char *)hash, 16);
    uv_mutex_unlock(&W.lock);
    if (f) fn_last = f;
  }
  if (f == NULL) return -1;
  *code = f->code;
  *len = f->len;
  return 0;
}

static const dl_fnsource fnsource = {dl_w_fn_get, NULL};

/* On the executor, between tasks: free the bytecode no task needs. */
void dl_w_fns_reap(void) {
  fnent *f;
  uv_mutex_lock(&W.lock);
  f = W.fns_dead;
  W.fns_dead = NULL;
  uv_mutex_unlock(&W.lock);
  while (f) {
    fnent *next = f->next;
    if (f == fn_last) fn_last = NULL;
    dl_free(f);
    f = next;
  }
}

/* Futures in a task's arguments decode as their values. */
int dl_w_future_decode(lua_State *L, const char *p, size_t n, void *ctx) {
  blob *b;
  char err[256];
  int rc;
  (void)ctx;
  if (!lua_checkstack(L, 4)) return -1;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &cache_key);
  lua_pushlstring(L, p, n);
  if (lua_rawget(L, -2) != LUA_TNIL) {
    lua_remove(L, -2);
    return 0;
  }
  lua_pop(L, 1);
  b = dl_w_store_get(p, n);
  if (b == NULL) {
    fprintf(stderr, "dlua worker %d: input '%.*s' is not here\n", W.id,
            (int)(n > 100 ? 100 : n), p);
    lua_pop(L, 1);
    return -1;
  }
  {
    dl_dec_opts o = {0, &fnsource, NULL};
    rc = dl_codec_decode(L, b->data, b->len, &o, err, sizeof err);
  }
  if (b->len > (size_t)1 << 20) big_garbage = 1;
  if (rc == 0 && b->len <= CACHE_MAX && worth_caching(L, -1) &&
      store_mark_cached(p, n)) {
    lua_pushlstring(L, p, n);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  dl_w_blob_unref(b);
  if (rc) {
    fprintf(stderr, "dlua worker %d: input '%.*s' does not decode: %s\n",
            W.id, (int)(n > 100 ? 100 : n), p, err);
    lua_pop(L, 1);
    return -1;
  }
  lua_remove(L, -2);
  return 0;
}

/* The executor's buffer for an error value (static, so that a memory
   error raised while it is full leaks nothing for good). */
static dl_buf errval_out;

/*
** The executor's message handler: {message, traceback [, value]}.  A table
** raised by the task travels as value (encoded as data: functions and
** other values that cannot be data make it travel as its message only);
** its message is its __tostring, else its string field message or msg.
*/
static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  int val = 0;
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else if (lua_istable(L, 1) &&
             (lua_getfield(L, 1, "message") == LUA_TSTRING ||
              (lua_pop(L, 1), lua_getfield(L, 1, "msg") == LUA_TSTRING)))
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
    if (lua_istable(L, 1)) {
      char err[256];
      dl_enc_opts eo = {1, NULL, NULL, "error value"};
      errval_out.len = 0;
      val = dl_codec_encode(L, 1, &errval_out, &eo, err, sizeof err) == 0;
    }
  }
  lua_createtable(L, 0, 3);
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  luaL_traceback(L, L, NULL, 1);
  lua_setfield(L, -2, "traceback");
  if (val) {
    lua_pushlstring(L, errval_out.p, errval_out.len);
    lua_setfield(L, -2, "value");
  }
  dl_buf_free(&errval_out); /* errors are rare: keep no buffer */
  return 1;
}

void dl_w_interrupt_hook(lua_State *L, lua_Debug *ar) {
  int kind;
  (void)ar;
  uv_mutex_lock(&W.lock);
  kind = W.cancel_kind;
  uv_mutex_unlock(&W.lock);
  lua_sethook(L, NULL, 0, 0);
  if (kind == DL_ERR_TIMEOUT) luaL_error(L, "task timed out");
  else if (kind) luaL_error(L, "cancelled");
}

/* The executor's buffer for encoding results (reused). */
static dl_buf exec_out;

/* cache[key] = the value at idx, or nil if idx is 0.  [-0, +0, m] */
static void cache_set(lua_State *L, const char *key, size_t klen, int idx) {
  if (idx < 0) idx = lua_absindex(L, idx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &cache_key);
  lua_pushlstring(L, key, klen);
  if (idx) lua_pushvalue(L, idx);
  else lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/*
** Store the result in exec_out under t's key: a small one is copied into
** its record (exec_out stays for the next task), a bigger one takes
** exec_out's bytes.  A result small enough to ride along with the news
** (saving the scheduler a round trip) is also referenced from t->res.
** cached says whether the executor's cache holds its decoded copy;
** *old_cached is set if it may hold one of the value replaced.
*/
static int store_result(wtask *t, int cached, int *old_cached) {
  size_t n = exec_out.len;
  blob *b;
  if (n <= SMALL_MAX) {
    b = dl_w_blob_new(t->key, t->klen, n);
    if (b == NULL) return DL_ENOMEM;
    memcpy(b->data, exec_out.p, n);
  } else {
    b = dl_w_blob_new(t->key, t->klen, 0);
    if (b == NULL) return DL_ENOMEM;
    b->inl = 0;
    b->data = dl_buf_take(&exec_out, &b->len);
  }
  b->cached = cached;
  if (n <= INLINE_MAX) atomic_fetch_add(&b->refs, 1); /* for t->res */
  if (dl_w_store_insert(b, old_cached)) {
    if (n <= INLINE_MAX) dl_w_blob_unref(b);
    return DL_ENOMEM;
  }
  if (n <= INLINE_MAX) t->res = b;
  return 0;
}

static void run_task(lua_State *L, wtask *t) {
  char err[512];
  int base = lua_gettop(L), rc, n, i;
  uint64_t start, stop;
  dl_dec_opts dopt = {0, &fnsource, NULL};
  lua_pushcfunction(L, msgh);
  rc = dl_codec_decode(L, t->payload, t->plen, &dopt, err, sizeof err);
  if (rc || !lua_istable(L, -1)) {
    char msg[700];
    snprintf(msg, sizeof msg, "cannot load task '%s': %s", t->key,
             rc ? err : "payload is not a task");
    complete_err(t, DL_ERR_RAISED, msg, NULL);
    lua_settop(L, base);
    return;
  }
  lua_getfield(L, -1, "n");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (n < 0 || n > 250 || !lua_checkstack(L, n + 2)) {
    complete_err(t, DL_ERR_RAISED, "task has too many arguments", NULL);
    lua_settop(L, base);
    return;
  }
  lua_getfield(L, -1, "f");
  for (i = 1; i <= n; i++) lua_rawgeti(L, base + 2, i);
  start = uv_hrtime() / 1000;
  rc = lua_pcall(L, n, 1, base + 1);
  stop = uv_hrtime() / 1000;
  if (rc != LUA_OK) {
    int kind;
    const char *msg = "error", *tb = NULL, *val = NULL;
    size_t vlen = 0;
    uv_mutex_lock(&W.lock);
    kind = W.cancel_kind ? W.cancel_kind : DL_ERR_RAISED;
    uv_mutex_unlock(&W.lock);
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "message");
      lua_getfield(L, -2, "traceback");
      lua_getfield(L, -3, "value");
      msg = lua_tostring(L, -3);
      tb = lua_tostring(L, -2);
      val = lua_tolstring(L, -1, &vlen);
      if (msg == NULL) msg = "error";
    } else if (lua_isstring(L, -1)) {
      msg = lua_tostring(L, -1);
    }
    complete_err_value(t, kind, msg, tb, val, vlen);
  } else {
    dl_enc_opts eo = {0, NULL, NULL, "result"};
    exec_out.len = 0;
    if (dl_codec_encode(L, -1, &exec_out, &eo, err, sizeof err)) {
      char msg[700];
      snprintf(msg, sizeof msg, "cannot send the result of task '%s': %s",
               t->key, err);
      complete_err(t, DL_ERR_RAISED, msg, NULL);
    } else {
      int cache = exec_out.len <= CACHE_MAX && worth_caching(L, -1);
      int old_cached = 0;
      if (exec_out.len > (size_t)1 << 20) big_garbage = 1;
      if (cache) cache_set(L, t->key, t->klen, -1);
      t->type = DL_M_DONE;
      t->nbytes = exec_out.len;
      t->start_us = start;
      t->stop_us = stop;
      if (store_result(t, cache, &old_cached)) {
        complete_err(t, DL_ERR_RAISED, "out of memory storing the result",
                     NULL);
        if (cache) cache_set(L, t->key, t->klen, 0);
      } else if (old_cached && !cache) {
        cache_set(L, t->key, t->klen, 0); /* an older value's copy */
      }
    }
    if (exec_out.cap > 2 * CACHE_MAX) dl_buf_free(&exec_out);
  }
  lua_settop(L, base);
}

/* A new task record holding copies of key and payload, or NULL. */
wtask *dl_w_task_new(const char *key, size_t klen, const char *payload,
                     size_t plen) {
  wtask *t = dl_realloc(NULL, sizeof *t + klen + 1 + plen);
  if (t == NULL) return NULL;
  memset(t, 0, sizeof *t);
  t->key = t->mem;
  t->klen = klen;
  memcpy(t->key, key, klen);
  t->key[klen] = '\0';
  t->payload = t->mem + klen + 1;
  t->plen = plen;
  memcpy(t->payload, payload, plen);
  return t;
}

void dl_w_task_free(wtask *t) {
  dl_w_blob_unref(t->res);
  dl_buf_free(&t->rec);
  dl_free(t);
}

/*
** Between tasks: keep managed memory under the target fraction of the
** limit by spilling, spill more when the process is past the spill
** fraction, and pause (run nothing) while it is past the pause fraction.
*/
static void relieve_memory(lua_State *L) {
  double limit = (double)W.memory_limit;
  int64_t rss, managed;
  if (limit <= 0) return;
  if (big_garbage) { /* big strings die young: free them now */
    big_garbage = 0;
    lua_gc(L, LUA_GCCOLLECT);
  }
  uv_mutex_lock(&W.lock);
  managed = W.managed;
  rss = W.rss;
  uv_mutex_unlock(&W.lock);
  if (managed > (int64_t)(W.frac_target * limit)) {
    dl_w_spill_until((int64_t)(W.frac_target * limit));
    uv_mutex_lock(&W.lock);
    rss = W.rss;
    uv_mutex_unlock(&W.lock);
  }
  if (rss <= W.frac_spill * limit && rss <= W.frac_pause * limit)
    return; /* the common case: nothing to relieve */
  if (rss > W.frac_spill * limit) {
    /* Drop the decoded copies and collect, then spill what it takes. */
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &cache_key);
    lua_gc(L, LUA_GCCOLLECT);
    malloc_trim(0);
    dl_mem_trim();
    dl_w_spill_until((int64_t)(W.frac_target * limit) -
                (int64_t)(rss - W.frac_spill * limit));
    rss = dl_w_rss_bytes();
    uv_mutex_lock(&W.lock);
    W.rss = rss;
    uv_mutex_unlock(&W.lock);
  }
  uv_mutex_lock(&W.lock);
  while (W.rss > W.frac_pause * limit && !W.stop) {
    if (!W.paused)
      fprintf(stderr, "dlua worker %d: paused: process memory %lld bytes is "
              "past %.0f%% of its limit\n", W.id, (long long)W.rss,
              W.frac_pause * 100);
    W.paused = 1;
    uv_cond_timedwait(&W.cond, &W.lock, 50 * 1000 * 1000);
    uv_mutex_unlock(&W.lock);
    dl_w_spill_until(0);
    lua_gc(L, LUA_GCCOLLECT);
    malloc_trim(0);
    dl_mem_trim();
    rss = dl_w_rss_bytes();
    uv_mutex_lock(&W.lock);
    W.rss = rss;
  }
  W.paused = 0;
  uv_mutex_unlock(&W.lock);
}

void dl_w_exec_main(void *arg) {
  lua_State *L = arg;
  for (;;) {
    wtask *t;
    char **frees;
    int nfrees, i;
    uv_mutex_lock(&W.lock);
    while (W.qhead == NULL && !W.stop && !W.relieve)
      uv_cond_wait(&W.cond, &W.lock);
    if (W.stop) {
      uv_mutex_unlock(&W.lock);
      break;
    }
    W.relieve = 0;
    if (W.qhead == NULL) { /* woken to spill, with nothing to run */
      uv_mutex_unlock(&W.lock);
      relieve_memory(L);
      continue;
    }
    t = W.qhead;
    W.qhead = t->next;
    if (W.qhead == NULL) W.qtail = NULL;
    frees = W.frees;
    nfrees = W.nfrees;
    W.frees = NULL;
    W.nfrees = W.capfrees = 0;
    W.running_seq = t->seq;
    W.cancel_kind = 0;
    dl_w_running_klen = t->klen < sizeof dl_w_running_key ? t->klen : 0;
    memcpy(dl_w_running_key, t->key, dl_w_running_klen);
    W.deadline = t->timeout_ms ? now_s() + t->timeout_ms / 1000.0 : 0;
    uv_mutex_unlock(&W.lock);
    if (nfrees) {
      lua_rawgetp(L, LUA_REGISTRYINDEX, &cache_key);
      for (i = 0; i < nfrees; i++) {
        lua_pushnil(L);
        lua_setfield(L, -2, frees[i]);
        dl_free(frees[i]);
      }
      lua_pop(L, 1);
    }
    dl_free(frees);
    dl_w_fns_reap();
    run_task(L, t);
    /* Hand t back to the I/O thread, to report and free. */
    uv_mutex_lock(&W.lock);
    W.running_seq = 0;
    W.deadline = 0;
    t->next = NULL;
    if (W.done_tail) W.done_tail->next = t;
    else W.done_head = t;
    W.done_tail = t;
    uv_mutex_unlock(&W.lock);
    uv_async_send(&W.done_async);
    lua_sethook(L, NULL, 0, 0);
    relieve_memory(L);
  }
}

/*
** Queue t for the executor, behind every task of its priority or higher
** (as the scheduler orders ready tasks): tasks reach a worker as they are
** submitted, so a high-priority task may arrive after lower ones.  Equal
** priorities, the common case, append in O(1).
*/
void dl_w_enqueue(wtask *t) {
  wtask **pp;
  uv_mutex_lock(&W.lock);
  if (W.qtail == NULL || W.qtail->prio >= t->prio) {
    t->next = NULL;
    if (W.qtail) W.qtail->next = t;
    else W.qhead = t;
    W.qtail = t;
  } else {
    for (pp = &W.qhead; (*pp)->prio >= t->prio; pp = &(*pp)->next) {}
    t->next = *pp;
    *pp = t;
  }
  uv_cond_signal(&W.cond);
  uv_mutex_unlock(&W.lock);
}

/* Prepare the executor's Lua state (run protected). */
int dl_w_setup_state(lua_State *L) {
  dlua_openlibs(L);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &cache_key);
  luaL_newmetatable(L, DL_FUTURE_MT);
  lua_pop(L, 1);
  dl_codec_register(L, DL_FUTURE_MT, NULL, dl_w_future_decode);
  lua_pushboolean(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "dlua.in_worker");
  return 0;
}

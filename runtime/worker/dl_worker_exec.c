/*
** dl_worker_exec.c -- the executor thread: owns the lua_State, decodes
** a task, runs it, and stores or reports its result.
*/
#include "dl_worker_int.h"
#include "dl_os.h"
#include <poll.h>

/* Set when a task made or used megabytes: collect garbage after it. */
static int big_garbage;
/* The largest result of recent tasks, halved with every smaller one: the
   room the next task is likely to need (its value and its encoding). */
static int64_t recent_out;

/* =========================================================== executor */

static const char cache_key = 'c'; /* registry: key -> decoded value */

/* The running task's key (under W.lock), for cancel requests. */
char dl_w_running_key[512];
size_t dl_w_running_klen;

/* Record that t failed (kind, msg, traceback tb or NULL, and the encoded
   error value val of vlen bytes when the task raised a table, else NULL). */
static void complete_err_value(wtask *t, int kind, const char *msg,
                               const char *tb, const char *val, size_t vlen) {
  t->type = DL_M_ERR;
  t->kind = kind;
  dl_buf_free(&t->rec);
  dl_put_err_rec(&t->rec, kind, msg, tb, W.wname, val, vlen);
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

/* The functions of the task whose payload run_task decodes (its
   COMPUTE's hashes), or none. */
static const char *infns;
static uint64_t ninfns;

/* The function at position at of that task's, for the decoder. */
static int fn_get_at(void *ud, uint64_t at, const unsigned char **hash,
                     const char **code, size_t *len) {
  if (at >= ninfns) return -1;
  *hash = (const unsigned char *)infns + 16 * at;
  return dl_w_fn_get(ud, *hash, code, len);
}

static const dl_fnsource fnsource = {dl_w_fn_get, NULL, fn_get_at};

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

/* A stored value lent to the decoder (a big ndarray becomes a view of its
   bytes, which the blob's reference keeps). */
static void blob_hold(void *b) { atomic_fetch_add(&((blob *)b)->refs, 1); }
static void blob_drop(void *b) { dl_w_blob_unref(b); }

/*
** The inputs of the task whose payload run_task decodes: keys borrowed
** from its COMPUTE (wtask.deps), in its order; none (n 0) otherwise.  Up
** to INDEPS of them in static arrays, more in arrays made for the task
** (unindex_deps frees them).
*/
#define INDEPS 64
static const char *indeps_k[INDEPS];
static size_t indeps_kl[INDEPS];
static struct {
  const char **k;
  size_t *kl;
  uint64_t n;
} indeps;

/* Index t's inputs into indeps.  0, or -1 when out of memory. */
static int index_deps(const wtask *t) {
  dl_rd r;
  uint64_t i, j, nwho, id;
  indeps.n = 0;
  indeps.k = indeps_k;
  indeps.kl = indeps_kl;
  if (t->ndeps > INDEPS) {
    indeps.k = dl_realloc(NULL, sizeof *indeps.k * t->ndeps);
    indeps.kl = dl_realloc(NULL, sizeof *indeps.kl * t->ndeps);
    if (indeps.k == NULL || indeps.kl == NULL) return -1;
  }
  dl_rd_init(&r, t->deps, t->dlen);
  for (i = 0; i < t->ndeps; i++) {
    /* checked when the COMPUTE came (dl_get_compute) */
    if (dl_get_compute_dep(&r, &indeps.k[i], &indeps.kl[i], &nwho)) break;
    for (j = 0; j < nwho; j++)
      if (dl_get_id(&r, &id)) break;
  }
  indeps.n = i;
  return 0;
}

/* The task's payload is decoded: forget its inputs. */
static void unindex_deps(void) {
  if (indeps.k != indeps_k) dl_free((void *)indeps.k);
  if (indeps.kl != indeps_kl) dl_free(indeps.kl);
  indeps.k = indeps_k;
  indeps.kl = indeps_kl;
  indeps.n = 0;
}

/*
** Futures in a task's arguments decode as their values.  A future
** travels as the position of its input in the task's list (a varint: the
** client's future_encode), not as its key: a sum of 8 futures was 385
** bytes of payload, kept by the scheduler for the task's life, 336 of
** them its inputs' keys, which the task's list of inputs names anyway.
*/
int dl_w_future_decode(lua_State *L, const char *ip, size_t in, void *ctx) {
  blob *b;
  char err[256];
  int rc;
  dl_rd ir;
  uint64_t i;
  const char *p;
  size_t n;
  (void)ctx;
  dl_rd_init(&ir, ip, in);
  if (dl_rd_uv(&ir, &i) || ir.p != ir.end || i >= indeps.n) {
    fprintf(stderr, "dlua worker %d: a future names an input the task "
            "does not have\n", W.id);
    return -1;
  }
  p = indeps.k[i];
  n = indeps.kl[i];
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
    dl_codec_lender ln = {b->data, b->len, blob_hold, blob_drop, b};
    dl_dec_opts o = {0, &fnsource, &ln};
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
  lua_State *co = lua_tothread(L, 2); /* the task's, when it has ended */
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
  if (co) luaL_traceback(L, co, NULL, 0);
  else luaL_traceback(L, L, NULL, 1);
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

/*
** Set by the watchdog when the process is past its terminate fraction
** while a task runs: before the worker is restarted, a full collection of
** the tasks' state (the running task's garbage, which the incremental
** collector may not have reached: a task that keeps 36 MB and makes 1 MB
** strings in a loop peaks near twice that) and its freed blocks given
** back; the watchdog restarts the worker only if that did not bring the
** memory under the fraction.  An interrupt set meanwhile goes first.
*/
void dl_w_gc_hook(lua_State *L, lua_Debug *ar) {
  int64_t after;
  uv_mutex_lock(&W.lock);
  if (W.cancel_kind) {
    uv_mutex_unlock(&W.lock);
    dl_w_interrupt_hook(L, ar);
    return;
  }
  lua_sethook(L, NULL, 0, 0);
  uv_mutex_unlock(&W.lock);
  lua_gc(L, LUA_GCCOLLECT);
  dl_mem_trim();
  after = dl_w_mem_bytes(NULL);
  uv_mutex_lock(&W.lock);
  W.gc_after = after;
  uv_mutex_unlock(&W.lock);
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

/* ================================================== tasks that wait */

/*
** Every task runs in its own coroutine.  A task that waits for its
** client (dlua.get_client: futures, gathers) yields from inside the wait
** (dl_worker_park) and is parked here; the executor runs other tasks
** meanwhile and resumes it when a message it may be waiting for comes, or
** its deadline passes.  The scheduler is told (DL_M_SECEDE), so the slot
** is given back.  All of this is the executor thread's alone.
*/
enum {
  PK_ANY = DL_PARK_ANY,
  PK_KEY = DL_PARK_KEY,
  PK_REQ = DL_PARK_REQ,
  PK_SLEEP = DL_PARK_SLEEP
};

typedef struct parked parked;
struct parked {
  wtask *t;
  lua_State *co;  /* the task's coroutine, anchored at ref */
  int ref;
  int kind;       /* PK_*: what wakes it (besides its deadline) */
  char *hkey;     /* PK_KEY: the key waited for (owned) */
  size_t hklen;
  uint64_t hreq;  /* PK_REQ: the gather request waited for */
  double deadline;     /* of this wait; < 0: none */
  double task_deadline; /* of the task (its timeout); 0: none */
  int parked;     /* waiting now */
  int ready;      /* in the ready queue */
  int seceded;    /* the scheduler was told it waits */
  int told_key;   /* ... and for a key (what it waits on now may not be) */
  int used_link;  /* sent through the tasks' client: may leave futures */
  char *err;      /* raise this when resumed (a cycle), owned */
  uint64_t start_us;
  parked *next, *prev; /* in P.all while parked */
  parked *hnext;       /* in its key's chain (P.bykey) */
  parked *rnext;       /* in the ready queue */
};

static struct {
  parked *all;              /* parked tasks */
  parked *ready, *ready_tail; /* woken: resumed before new tasks start */
  dl_map bykey;             /* waited key -> chain of parked (hnext) */
  int ntimed;               /* parked with a deadline, or a timeout */
  int nscan;                /* parked PK_ANY or PK_REQ (woken by a scan) */
  int unsent;               /* the running task queued messages */
  parked *cur;              /* the task running now */
  double resumed_at;        /* when a waiting task was last resumed */
  double worked_at;         /* when a task last started, resumed or ended */
  int litter;               /* ended tasks that used the client since the
                               last collection (see collect_futures) */
  int collecting;           /* in collect_futures: releases wait for it */
  dl_buf lin;               /* messages for the tasks' client, not read */
  /* Set by dl_worker_park during a resume. */
  int park, pkind;
  double pdeadline;
  const char *pkey;
  size_t pklen;
  uint64_t preq;
} P;

static void ready_push(parked *pk) {
  if (pk->ready) return;
  pk->ready = 1;
  pk->rnext = NULL;
  if (P.ready_tail) P.ready_tail->rnext = pk;
  else P.ready = pk;
  P.ready_tail = pk;
}

/* Take pk out of the parked structures (it stays on the ready queue). */
static void unpark(parked *pk) {
  if (!pk->parked) return;
  pk->parked = 0;
  if (pk->prev) pk->prev->next = pk->next;
  else P.all = pk->next;
  if (pk->next) pk->next->prev = pk->prev;
  if (pk->deadline >= 0 || pk->task_deadline > 0) P.ntimed--;
  if (pk->kind == PK_ANY || pk->kind == PK_REQ) P.nscan--;
  if (pk->kind == PK_KEY) {
    parked *h = dl_map_get(&P.bykey, pk->hkey, pk->hklen), **pp;
    if (h == pk) {
      dl_map_del(&P.bykey, pk->hkey, pk->hklen);
      if (pk->hnext) dl_map_put(&P.bykey, pk->hnext->hkey, pk->hklen,
                                pk->hnext);
    } else {
      for (pp = &h; *pp && *pp != pk; pp = &(*pp)->hnext) {}
      if (*pp) *pp = pk->hnext;
    }
    dl_free(pk->hkey);
    pk->hkey = NULL;
  }
}

static void wake(parked *pk) {
  unpark(pk);
  ready_push(pk);
}

/* Wake what the news in the n bytes at p may concern. */
static void peek_news(const char *p, size_t n) {
  dl_rd r;
  parked *pk, *next;
  dl_rd_init(&r, p, n);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    const char *key = "";
    size_t klen = 0;
    uint64_t reqid = 0;
    int bykey;
    dl_wire_type(&r, &type);
    if (type == DL_M_GATHER_REPLY) {
      dl_msg_data m;
      if (dl_get_data(&r, &m)) break;
      reqid = m.reqid;
      bykey = 0;
    } else if (type == DL_M_COORD_REPLY) {
      dl_msg_coord_reply m;
      if (dl_get_coord_reply(&r, &m)) break;
      reqid = m.reqid;
      bykey = 0;
    } else if (type == DL_M_KEY_DONE) {
      dl_msg_key_done m;
      if (dl_get_key_done(&r, &m)) break;
      key = m.key;
      klen = m.klen;
      bykey = 1;
    } else {
      dl_msg_err m;
      if (dl_get_err_msg(&r, &m)) break;
      key = m.key;
      klen = m.klen;
      bykey = 1;
    }
    for (pk = P.nscan ? P.all : NULL; pk; pk = next) {
      next = pk->next; /* generic waits, and gathers */
      if (pk->kind == PK_ANY || (!bykey && pk->kind == PK_REQ &&
                                 pk->hreq == reqid))
        wake(pk);
    }
    if (bykey)
      while ((pk = dl_map_get(&P.bykey, key, klen)) != NULL) wake(pk);
  }
}

/* Move the news received for the tasks' client into P.lin, waking the
   tasks it may concern. */
static void take_news(void) {
  size_t had = P.lin.len;
  uv_mutex_lock(&W.lock);
  if (W.cin.len) {
    if (P.lin.len == 0) {
      dl_buf t = P.lin;
      P.lin = W.cin;
      W.cin = t;
    } else {
      dl_buf_put(&P.lin, W.cin.p, W.cin.len);
    }
    W.cin.len = 0;
  }
  uv_mutex_unlock(&W.lock);
  if (P.lin.len > had) peek_news(P.lin.p + had, P.lin.len - had);
}

/* The executor's frame, taken from W.lout while it writes it. */
static dl_buf xout;

/*
** Send what the tasks' client queued (W.lout).  The executor writes it to
** the scheduler link itself when the I/O thread has nothing on its way
** there (W.gate, dl_conn.h): a waiting task's request then costs no
** wake-up of the I/O thread.  Else the I/O thread is woken to send it,
** behind its own.  Only the executor adds to W.lout.
*/
static void link_send(void) {
  int rc;
  uv_mutex_lock(&W.lock);
  if (W.lout.len == 0) {
    uv_mutex_unlock(&W.lock);
    return;
  }
  uv_mutex_lock(&W.gate.lock);
  if (W.gate.fd < 0 || W.gate.queued) {
    uv_mutex_unlock(&W.gate.lock);
    uv_mutex_unlock(&W.lock);
    uv_async_send(&W.done_async);
    return;
  }
  {
    dl_buf x = xout;
    xout = W.lout;
    W.lout = x;
  }
  uv_mutex_unlock(&W.lock);
  rc = dl_wgate_write(&W.gate, xout.p, xout.len);
  uv_mutex_unlock(&W.gate.lock);
  if (rc == UV_EAGAIN) { /* the socket is full: nothing went */
    uv_mutex_lock(&W.lock);
    dl_buf_put(&xout, W.lout.p, W.lout.len);
    {
      dl_buf x = xout;
      xout = W.lout;
      W.lout = x;
    }
    uv_mutex_unlock(&W.lock);
    uv_async_send(&W.done_async);
  }
  xout.len = 0; /* written, or lost with a link that failed */
  if (xout.cap > (1u << 20)) dl_buf_free(&xout);
}

/* Send what the running task queued in its burst. */
static void link_flush(void) {
  if (!P.unsent) return;
  P.unsent = 0;
  link_send();
}

/* A running task's messages go at once when it has sent none for a
   while; within a burst they wait for the task to yield or end, or for
   the I/O thread's next watchdog tick (10 ms), whichever comes first:
   a wake-up per burst, not per message.  A task just resumed from a wait
   is in a burst too: it usually answers and waits again (a Queue's
   consumer that puts what it got), and both requests go in one frame. */
#define LINK_BURST 100e-6

void dl_worker_link_send(const char *p, size_t n) {
  static double last;
  double t = now_s();
  uv_mutex_lock(&W.lock);
  dl_buf_put(&W.lout, p, n);
  uv_mutex_unlock(&W.lock);
  if (P.cur) P.cur->used_link = 1;
  if (P.collecting) return; /* sent in one frame after the collection */
  if (P.cur && (t - last < LINK_BURST || t - P.resumed_at < LINK_BURST)) {
    P.unsent = 1;
    return;
  }
  last = t;
  link_send();
}

int dl_worker_link_take(dl_buf *out) {
  take_news();
  if (P.lin.len == 0) return 0;
  dl_buf_put(out, P.lin.p, P.lin.len);
  P.lin.len = 0;
  return 1;
}

int dl_worker_link_block(double timeout) {
  double until = timeout < 0 ? -1 : now_s() + timeout;
  int got;
  link_flush();
  uv_mutex_lock(&W.lock);
  while (W.cin.len == 0 && !W.stop) {
    double left = until < 0 ? 0.05 : until - now_s();
    if (until >= 0 && left <= 0) break;
    if (left > 0.05) left = 0.05;
    uv_cond_timedwait(&W.cond, &W.lock, (uint64_t)(left * 1e9) + 1);
  }
  got = W.cin.len > 0;
  uv_mutex_unlock(&W.lock);
  return got;
}

int dl_worker_can_park(lua_State *L) {
  return P.cur != NULL && P.cur->co == L && lua_isyieldable(L);
}

void dl_worker_park(int kind, double timeout, const char *key, size_t klen,
                    uint64_t reqid) {
  P.park = 1;
  P.pkind = kind;
  P.pdeadline = timeout < 0 ? -1 : now_s() + timeout;
  P.pkey = key;
  P.pklen = klen;
  P.preq = reqid;
}

const char *dl_worker_park_error(void) {
  return P.cur ? P.cur->err : NULL;
}

const char *dl_worker_task_key(size_t *klen) {
  if (P.cur == NULL) return NULL;
  *klen = P.cur->t->klen;
  return P.cur->t->key;
}

/* The task of pk yielded in dl_worker_park: park it. */
static void park(parked *pk) {
  pk->kind = P.pkind;
  pk->deadline = P.pdeadline;
  pk->hreq = P.preq;
  pk->hnext = NULL;
  if (pk->kind == PK_KEY) {
    pk->hkey = dupb(P.pkey, P.pklen);
    pk->hklen = P.pklen;
    if (pk->hkey == NULL) pk->kind = PK_ANY;
  }
  if (pk->kind == PK_KEY) {
    parked *h = dl_map_get(&P.bykey, pk->hkey, pk->hklen);
    if (h) {
      pk->hnext = h->hnext;
      h->hnext = pk;
    } else if (dl_map_put(&P.bykey, pk->hkey, pk->hklen, pk)) {
      dl_free(pk->hkey);
      pk->hkey = NULL;
      pk->kind = PK_ANY;
    }
  }
  pk->parked = 1;
  pk->prev = NULL;
  pk->next = P.all;
  if (P.all) P.all->prev = pk;
  P.all = pk;
  if (pk->deadline >= 0 || pk->task_deadline > 0) P.ntimed++;
  if (pk->kind == PK_ANY || pk->kind == PK_REQ) P.nscan++;
  /* Tell the scheduler that it waits, and for what: once, and again only
     when the key it waits on changes (cycle detection follows it); a
     task that waits again and again on a Queue sends nothing more. */
  if (!pk->seceded || pk->kind == PK_KEY || pk->told_key) {
    dl_buf b;
    dl_msg_two m;
    m.a = pk->t->key;
    m.alen = pk->t->klen;
    m.b = pk->kind == PK_KEY ? pk->hkey : "";
    m.blen = pk->kind == PK_KEY ? pk->hklen : 0;
    dl_buf_init(&b);
    dl_put_two_msg(&b, DL_M_SECEDE, &m);
    dl_worker_link_send(b.p, b.len);
    dl_buf_free(&b);
    pk->seceded = 1;
    pk->told_key = pk->kind == PK_KEY;
  }
}

static void end_parked(lua_State *L, parked *pk, int kind, const char *msg);

/* Wake the parked tasks whose wait is over, and end those whose task ran
   out of time (its timeout counts while it waits, as while it runs);
   returns the seconds to the next deadline, or -1 if none. */
static double wake_due(lua_State *L) {
  parked *pk, *next;
  double now, next_in = -1;
  if (P.ntimed == 0) return -1;
  now = now_s();
  for (pk = P.all; pk; pk = next) {
    double at = pk->deadline;
    next = pk->next;
    if (pk->task_deadline > 0 && (at < 0 || pk->task_deadline < at))
      at = pk->task_deadline;
    if (at < 0) continue;
    if (pk->task_deadline > 0 && pk->task_deadline <= now)
      end_parked(L, pk, DL_ERR_TIMEOUT, "task timed out");
    else if (at <= now) wake(pk);
    else if (next_in < 0 || at - now < next_in)
      next_in = at - now;
  }
  return next_in;
}

/* Record t's outcome from the error value on top of L (the task raised
   in its coroutine co) and pop it. */
static void task_failed(lua_State *L, lua_State *co, wtask *t) {
  int kind, top = lua_gettop(L);
  const char *msg = "error", *tb = NULL, *val = NULL;
  size_t vlen = 0;
  uv_mutex_lock(&W.lock);
  kind = W.cancel_kind ? W.cancel_kind : DL_ERR_RAISED;
  uv_mutex_unlock(&W.lock);
  lua_pushcfunction(L, msgh);
  lua_insert(L, -2);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  if (lua_pcall(L, 2, 1, 0) == LUA_OK && lua_istable(L, -1)) {
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
  lua_settop(L, top - 1);
}

/* Record t's result, on top of L, and pop it. */
static void task_succeeded(lua_State *L, wtask *t, uint64_t start,
                           uint64_t stop) {
  char err[512];
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
    if ((int64_t)exec_out.len >= recent_out) recent_out = (int64_t)exec_out.len;
    else recent_out /= 2;
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
  lua_pop(L, 1);
}

/*
** Report t's outcome.  When nothing else is on its way to the scheduler
** (no task queued behind t, no outcome waiting for the I/O thread, no
** bytes held by libuv: W.gate) the executor writes the DONE or ERR itself,
** behind what the tasks' client queued, and frees t: the round trip of a
** lone task then wakes the I/O thread once (for its COMPUTE), not twice.
** Otherwise t goes back to the I/O thread, which sends the outcomes of a
** burst of tasks in one frame.
*/
static void task_report(wtask *t) {
  uv_mutex_lock(&W.lock);
  if (W.qhead == NULL && W.done_head == NULL && P.ready == NULL) {
    uv_mutex_lock(&W.gate.lock);
    if (W.gate.fd >= 0 && !W.gate.queued) {
      size_t had = W.lout.len;
      int rc;
      dl_buf x = xout; /* the tasks' client messages go first */
      xout = W.lout;
      W.lout = x;
      dl_w_beat_if_spilled(&xout); /* new spill figures before the end */
      uv_mutex_unlock(&W.lock);
      dl_w_put_outcome(&xout, t);
      rc = dl_wgate_write(&W.gate, xout.p, xout.len);
      uv_mutex_unlock(&W.gate.lock);
      if (rc != UV_EAGAIN) { /* written, or lost with a link that failed */
        xout.len = 0;
        if (xout.cap > (1u << 20)) dl_buf_free(&xout);
        dl_w_task_free(t);
        return;
      }
      /* Nothing went: the I/O thread sends them, in the same order. */
      uv_mutex_lock(&W.lock);
      xout.len = had;
      dl_buf_put(&xout, W.lout.p, W.lout.len);
      x = xout;
      xout = W.lout;
      W.lout = x;
      xout.len = 0;
    } else {
      uv_mutex_unlock(&W.gate.lock);
    }
  }
  t->next = NULL;
  if (W.done_tail) W.done_tail->next = t;
  else W.done_head = t;
  W.done_tail = t;
  uv_mutex_unlock(&W.lock);
  uv_async_send(&W.done_async);
}

/*
** Coroutines of tasks that ended, reset, for the next tasks: a new one
** for each task (its state and its stack, about 1 KB) was most of what a
** small task left to the collector, whose cycles then came every ~120
** tasks, each inside a task.  One that ended in an error is not kept.
*/
#define CO_POOL 16
static struct {
  lua_State *co;
  int ref; /* in the registry, which keeps it */
} co_pool[CO_POOL];
static int nco_pool;

/* Push a coroutine for a new task: one from the pool (*ref its reference)
   or a new one (*ref LUA_NOREF).  [-0, +1, m] */
static lua_State *co_take(lua_State *L, int *ref) {
  if (nco_pool == 0) {
    *ref = LUA_NOREF;
    return lua_newthread(L);
  }
  nco_pool--;
  *ref = co_pool[nco_pool].ref;
  lua_rawgeti(L, LUA_REGISTRYINDEX, *ref);
  return co_pool[nco_pool].co;
}

static void parked_free(lua_State *L, parked *pk) {
  unpark(pk);
  if (lua_resetthread(pk->co) == LUA_OK && nco_pool < CO_POOL) {
    co_pool[nco_pool].co = pk->co;
    co_pool[nco_pool++].ref = pk->ref;
  } else {
    luaL_unref(L, LUA_REGISTRYINDEX, pk->ref);
  }
  dl_free(pk->hkey);
  dl_free(pk->err);
  dl_free(pk);
}

/* Whether the list of keys p[0..n) (dl_buf_str each) names key. */
static int key_listed(const char *p, size_t n, const char *key,
                      size_t klen) {
  dl_rd r;
  dl_rd_init(&r, p, n);
  while (dl_rd_left(&r)) {
    const char *k;
    size_t kl;
    if (dl_rd_str(&r, &k, &kl)) break;
    if (kl == klen && memcmp(k, key, klen) == 0) return 1;
  }
  return 0;
}

/*
** Run pk's coroutine (nargs values on its stack) until it ends or parks.
** An ended task is reported and pk freed.
*/
static void step(lua_State *L, parked *pk, int nargs) {
  int rc, nres = 0;
  uint64_t stop;
  wtask *t = pk->t;
  uv_mutex_lock(&W.lock);
  W.running_seq = t->seq;
  W.cancel_kind = 0;
  dl_w_running_klen = t->klen < sizeof dl_w_running_key ? t->klen : 0;
  memcpy(dl_w_running_key, t->key, dl_w_running_klen);
  W.deadline = pk->task_deadline;
  W.L = pk->co;
  /* A cancel that came after the task left the queue and before it was
     marked running here found it in neither place (on_cancel listed it
     for the parked): it takes effect now, at its first instruction. */
  if (W.pcancel.len && key_listed(W.pcancel.p, W.pcancel.len, t->key,
                                  t->klen))
    dl_w_interrupt_running(DL_ERR_CANCELLED);
  uv_mutex_unlock(&W.lock);
  P.cur = pk;
  P.park = 0;
  rc = lua_resume(pk->co, L, nargs, &nres);
  stop = uv_hrtime() / 1000;
  P.cur = NULL;
  link_flush();
  uv_mutex_lock(&W.lock);
  W.L = L;
  W.running_seq = 0;
  W.deadline = 0;
  if (W.gc_after < 0) W.gc_asked = 0; /* it ended first: ask anew */
  uv_mutex_unlock(&W.lock);
  lua_sethook(pk->co, NULL, 0, 0);
  dl_free(pk->err);
  pk->err = NULL;
  if (rc == LUA_YIELD && P.park) {
    lua_pop(pk->co, nres);
    park(pk);
    return;
  }
  if (rc == LUA_YIELD) {
    lua_pop(pk->co, nres);
    complete_err(t, DL_ERR_RAISED, "attempt to yield from outside a "
                 "coroutine (coroutine.yield at the top level of a task)",
                 NULL);
  } else if (rc == LUA_OK) {
    if (nres == 0) lua_pushnil(pk->co);
    else if (nres > 1) lua_pop(pk->co, nres - 1);
    lua_xmove(pk->co, L, 1);
    task_succeeded(L, t, pk->start_us, stop);
  } else {
    lua_xmove(pk->co, L, 1);
    task_failed(L, pk->co, t);
  }
  if (pk->used_link) P.litter++;
  pk->t = NULL;
  parked_free(L, pk);
  task_report(t);
}

/* Start t: decode it into a new coroutine and run it (see step). */
static void run_task(lua_State *L, wtask *t) {
  char err[512];
  int base = lua_gettop(L), rc, n, i;
  dl_dec_opts dopt = {0, &fnsource, NULL};
  parked *pk;
  lua_State *co;
  int ref;
  if (index_deps(t)) {
    rc = -1;
    snprintf(err, sizeof err, "out of memory");
  } else {
    infns = t->fns;
    ninfns = t->nfns;
    rc = dl_codec_decode(L, t->payload, t->plen, &dopt, err, sizeof err);
    ninfns = 0;
  }
  unindex_deps();
  if (rc || !lua_istable(L, -1)) {
    char msg[700];
    snprintf(msg, sizeof msg, "cannot load task '%s': %s", t->key,
             rc ? err : "payload is not a task");
    complete_err(t, DL_ERR_RAISED, msg, NULL);
    lua_settop(L, base);
    task_report(t);
    return;
  }
  lua_getfield(L, -1, "n");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  pk = dl_realloc(NULL, sizeof *pk);
  if (n < 0 || n > 250 || !lua_checkstack(L, n + 2) || pk == NULL) {
    complete_err(t, DL_ERR_RAISED, pk ? "task has too many arguments"
                 : "out of memory", NULL);
    dl_free(pk);
    lua_settop(L, base);
    task_report(t);
    return;
  }
  memset(pk, 0, sizeof *pk);
  co = co_take(L, &ref);
  if (!lua_checkstack(co, n + 2)) {
    if (ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, ref);
    dl_free(pk);
    complete_err(t, DL_ERR_RAISED, "task has too many arguments", NULL);
    lua_settop(L, base);
    task_report(t);
    return;
  }
  lua_getfield(L, -2, "f");
  for (i = 1; i <= n; i++) lua_rawgeti(L, base + 1, i);
  lua_xmove(L, co, n + 1);
  pk->co = co;
  if (ref == LUA_NOREF) ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops co */
  else lua_pop(L, 1);
  pk->ref = ref;
  pk->t = t;
  pk->deadline = -1;
  pk->start_us = uv_hrtime() / 1000;
  pk->task_deadline = t->timeout_ms ? now_s() + t->timeout_ms / 1000.0 : 0;
  lua_settop(L, base);
  step(L, pk, n);
}

/* Stop the parked tasks named by the keys in the n bytes at p (cancelled
   by the scheduler). */
static void cancel_parked(lua_State *L, const char *p, size_t n) {
  dl_rd r;
  dl_rd_init(&r, p, n);
  while (dl_rd_left(&r)) {
    const char *key;
    size_t klen;
    parked *pk;
    if (dl_rd_str(&r, &key, &klen)) break;
    for (pk = P.all; pk; pk = pk->next)
      if (pk->t->klen == klen && memcmp(pk->t->key, key, klen) == 0) break;
    if (pk == NULL)
      for (pk = P.ready; pk; pk = pk->rnext)
        if (pk->t->klen == klen && memcmp(pk->t->key, key, klen) == 0) break;
    if (pk == NULL) continue;
    if (pk->ready) { /* take it off the ready queue */
      parked **pp;
      for (pp = &P.ready; *pp != pk; pp = &(*pp)->rnext) {}
      *pp = pk->rnext;
      if (P.ready_tail == pk) {
        parked *x = P.ready;
        while (x && x->rnext) x = x->rnext;
        P.ready_tail = x;
      }
    }
    end_parked(L, pk, DL_ERR_CANCELLED, "cancelled");
  }
}

/* End pk, parked or woken and not yet resumed, with an error of kind. */
static void end_parked(lua_State *L, parked *pk, int kind, const char *msg) {
  complete_err(pk->t, kind, msg, NULL);
  task_report(pk->t);
  if (pk->used_link) P.litter++;
  pk->t = NULL;
  parked_free(L, pk);
}

/* Raise, in the parked tasks named, the cycle errors in the n bytes at p
   ({key, message} pairs): they are woken and raise from their wait. */
static void cycle_parked(const char *p, size_t n) {
  dl_rd r;
  dl_rd_init(&r, p, n);
  while (dl_rd_left(&r)) {
    const char *key, *msg;
    size_t klen, mlen;
    parked *pk;
    if (dl_rd_str(&r, &key, &klen) || dl_rd_str(&r, &msg, &mlen)) break;
    for (pk = P.all; pk; pk = pk->next)
      if (pk->t->klen == klen && memcmp(pk->t->key, key, klen) == 0) break;
    if (pk == NULL) continue;
    dl_free(pk->err);
    pk->err = dupb(msg, mlen);
    wake(pk);
  }
}

/* A new task record holding copies of key and payload, or NULL. */
wtask *dl_w_task_new(const char *key, size_t klen, const char *payload,
                     size_t plen, const char *fns, uint64_t nfns,
                     const dl_rd *deps, uint64_t ndeps) {
  size_t dlen = (size_t)(deps->end - deps->p);
  wtask *t = dl_realloc(NULL, sizeof *t + klen + 1 + plen + 16 * nfns +
                                  dlen);
  if (t == NULL) return NULL;
  memset(t, 0, sizeof *t);
  t->key = t->mem;
  t->klen = klen;
  memcpy(t->key, key, klen);
  t->key[klen] = '\0';
  t->payload = t->mem + klen + 1;
  t->plen = plen;
  memcpy(t->payload, payload, plen);
  t->fns = t->payload + plen;
  t->nfns = nfns;
  if (nfns) memcpy(t->fns, fns, 16 * nfns);
  t->deps = t->fns + 16 * nfns;
  t->dlen = dlen;
  t->ndeps = ndeps;
  if (dlen) memcpy(t->deps, deps->p, dlen);
  return t;
}

void dl_w_task_free(wtask *t) {
  dl_w_blob_unref(t->res);
  dl_buf_free(&t->rec);
  dl_free(t);
}

/*
** Futures that tasks made through their client (dlua.get_client) hold
** their keys on the scheduler until they are collected, and an idle
** worker allocates nothing, so its collector would never run: the
** results of a burst of nested tasks would stay stored for good.  Dask
** drops a task's futures as its references go; here a full collection
** runs once the executor has had nothing to do for COLLECT_IDLE seconds
** after such tasks ended (not within a burst), or after every
** COLLECT_EVERY of them (a long burst), and the releases that the
** futures' finalizers queue are sent at once.
*/
#define COLLECT_IDLE 10e-3
#define COLLECT_EVERY 4096

static void collect_futures(lua_State *L, int idle) {
  if (P.litter == 0) return;
  if (idle ? now_s() - P.worked_at < COLLECT_IDLE
           : P.litter < COLLECT_EVERY)
    return;
  P.litter = 0;
  P.collecting = 1;
  lua_gc(L, LUA_GCCOLLECT);
  P.collecting = 0;
  link_send();
}

/* Seconds until collect_futures is due on an idle executor, or due when
   that is sooner (either < 0: none). */
static double collect_due(double due) {
  double left;
  if (P.litter == 0) return due;
  left = P.worked_at + COLLECT_IDLE - now_s();
  if (left < 0) left = 0;
  return due < 0 || left < due ? left : due;
}

/*
** Between tasks: keep managed memory under the target fraction of the
** limit by spilling, spill more when the process is past the spill
** fraction, and pause (run nothing) while it is past the pause fraction.
*/
static void relieve_memory(lua_State *L) {
  double limit = (double)W.memory_limit;
  int64_t rss, mem, managed, room, target;
  if (limit <= 0) return;
  /* Leave room for the next task's value and its encoded copy, or a
     worker whose blocks are large next to its limit runs past it while
     the task runs, where nothing can be spilled. */
  room = 2 * recent_out;
  target = (int64_t)(W.frac_target * limit) - room;
  if (target < 0) target = 0;
  if (big_garbage) { /* big strings die young: free them now */
    big_garbage = 0;
    lua_gc(L, LUA_GCCOLLECT);
  }
  uv_mutex_lock(&W.lock);
  managed = W.managed;
  mem = W.mem;
  uv_mutex_unlock(&W.lock);
  if (managed > target) {
    dl_w_spill_until(target);
    uv_mutex_lock(&W.lock);
    mem = W.mem;
    uv_mutex_unlock(&W.lock);
  }
  if (mem + room <= W.frac_spill * limit && mem <= W.frac_pause * limit)
    return; /* the common case: nothing to relieve */
  if (mem + room > W.frac_spill * limit) {
    /* Drop the decoded copies and collect, then spill what it takes. */
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &cache_key);
    lua_gc(L, LUA_GCCOLLECT);
    malloc_trim(0);
    dl_mem_trim();
    dl_w_spill_until(target - (int64_t)(mem + room - W.frac_spill * limit));
    mem = dl_w_mem_bytes(&rss);
    uv_mutex_lock(&W.lock);
    W.rss = rss;
    W.mem = mem;
    uv_mutex_unlock(&W.lock);
  }
  uv_mutex_lock(&W.lock);
  while (W.mem > W.frac_pause * limit && !W.stop) {
    if (!W.paused)
      fprintf(stderr, "dlua worker %d: paused: process memory %lld bytes is "
              "past %.0f%% of its limit\n", W.id, (long long)W.mem,
              W.frac_pause * 100);
    W.paused = 1;
    uv_cond_timedwait(&W.cond, &W.lock, 50 * 1000 * 1000);
    uv_mutex_unlock(&W.lock);
    dl_w_spill_until(0);
    lua_gc(L, LUA_GCCOLLECT);
    malloc_trim(0);
    dl_mem_trim();
    mem = dl_w_mem_bytes(&rss);
    uv_mutex_lock(&W.lock);
    W.rss = rss;
    W.mem = mem;
  }
  W.paused = 0;
  uv_mutex_unlock(&W.lock);
}

/*
** A small task's round trip wakes this thread for its task: the signal of
** W.cond costs the I/O thread a system call and this one the wake-up of a
** sleeping CPU, a large part of the whole trip.  So after a task, with
** none queued, the executor watches for the next one for up to
** task_spin seconds before it sleeps (dl_os_relax between looks: the
** threads that bring the task may need this CPU).  The watch adapts:
** halved when no task came within it, back to its longest when one came
** within that, cut to its least when a step lost the CPU (a busy
** machine), so an idle worker soon sleeps at once.  The watch takes a
** frame of news for a parked task too (dl_w_exec_take) and ends then.
** enq_seq counts the tasks queued (dl_w_enqueue) and the frames of news
** that came (dl_w_work_came).
*/
#define TASK_SPIN_MAX 50e-6
#define TASK_SPIN_MIN 2e-6
static atomic_uint enq_seq;
static double task_spin = TASK_SPIN_MAX;

/* Did a task (or news) come since *seen?  The next task may be on the
   link already: taken here, it needs no wake-up of the I/O thread, nor of
   this one by it. */
static int task_ready(void *ud) {
  unsigned seen = *(const unsigned *)ud;
  if (atomic_load(&enq_seq) != seen) return 1;
  if (dl_rgate_read(&W.rgate, dl_w_exec_take, NULL))
    uv_async_send(&W.done_async); /* the I/O thread handles the rest */
  return atomic_load(&enq_seq) != seen;
}

static double await_task(void) {
  unsigned seen = atomic_load(&enq_seq);
  double start = now_s();
  int empty;
  uv_mutex_lock(&W.lock);
  empty = W.qhead == NULL && P.ready == NULL && W.cin.len == 0;
  uv_mutex_unlock(&W.lock);
  if (!empty) return 0;
  if (dl_os_spin(task_spin, task_ready, &seen) < 0)
    task_spin = 2 * TASK_SPIN_MIN; /* the machine is busy: sleep */
  if (atomic_load(&enq_seq) == seen && task_spin > TASK_SPIN_MIN)
    task_spin /= 2;
  return start;
}

void dl_w_work_came(void) { atomic_fetch_add(&enq_seq, 1); }

/* A task was taken after the executor went idle at since: when the
   longest watch would have taken it, watch that long from now on.  A task
   that came while the watch was shorter reached this thread through the
   I/O thread, later than it reached the link by two wake-ups (hence the
   slack, TASK_LATE): without it, one watch that ended short would keep
   the watch short for good. */
#define TASK_LATE 50e-6
static void task_came(double since) {
  if (since > 0 && now_s() - since <= TASK_SPIN_MAX + TASK_LATE)
    task_spin = TASK_SPIN_MAX;
}

/*
** With tasks parked, the news that wakes them comes on the scheduler
** link: sleeping on the link itself (and on W.efd, which dl_w_wake_exec
** writes while this thread sleeps here) lets the news wake this thread
** alone, which takes it through the read gate, instead of the I/O thread
** first, then this one by a signal: one wake-up, not two in a row, on
** each answer a waiting task gets (a Queue's item).  Called and returns
** with W.lock held, for at most due seconds (< 0: no limit).  Returns 1
** when the link had bytes that the gate did not let this thread read
** (the I/O thread reads them and signals): the caller waits on W.cond.
*/
#define LINK_MISS_NS (1000 * 1000) /* a missed signal costs at most 1 ms */
static int sleep_on_link(double due) {
  struct pollfd fds[2];
  int ms = due < 0 ? -1 : (int)(due * 1e3) + 1, missed = 0;
  uint64_t x;
  atomic_store(&W.exec_polling, 1);
  uv_mutex_unlock(&W.lock);
  fds[0].fd = W.efd;
  fds[0].events = POLLIN;
  fds[1].fd = W.rgate.fd; /* -1 once the link closes: poll ignores it */
  fds[1].events = POLLIN;
  if (poll(fds, 2, ms) > 0) {
    if (fds[0].revents & POLLIN) {
      ssize_t k = read(W.efd, &x, sizeof x);
      (void)k;
    }
    if (fds[1].revents) {
      unsigned seen = atomic_load(&enq_seq);
      if (dl_rgate_read(&W.rgate, dl_w_exec_take, NULL))
        uv_async_send(&W.done_async); /* the I/O thread handles the rest */
      else if (atomic_load(&enq_seq) == seen)
        missed = 1;
    }
  }
  uv_mutex_lock(&W.lock);
  atomic_store(&W.exec_polling, 0);
  return missed;
}

void dl_w_wake_exec(void) {
  uv_cond_signal(&W.cond);
  if (atomic_load(&W.exec_polling)) {
    uint64_t one = 1;
    ssize_t k = write(W.efd, &one, sizeof one);
    (void)k;
  }
}

void dl_w_exec_main(void *arg) {
  lua_State *L = arg;
  dl_buf cyc, pcancel;
  int just_ran = 0, link_missed = 0;
  dl_buf_init(&cyc);
  dl_buf_init(&pcancel);
  dl_map_init(&P.bykey);
  /* Tasks' big values (Lua strings, arrays, encoded results) live on huge
     pages: on a VM a fresh 4 KiB page costs tens of microseconds, and
     only a result a local peer maps needs a memfd (dl_mem.h). */
  dl_mem_private(1);
  for (;;) {
    wtask *t = NULL;
    parked *pk = NULL;
    char **frees;
    int nfrees, i;
    double due, idle_since = 0;
    if (just_ran) idle_since = await_task();
    just_ran = 0;
    due = collect_due(wake_due(L));
    uv_mutex_lock(&W.lock);
    while (W.qhead == NULL && !W.stop && !W.relieve && P.ready == NULL &&
           W.cin.len == 0 && W.cyc.len == 0 && W.pcancel.len == 0) {
      if (P.all && link_missed == 0 && W.efd > 0) {
        link_missed = sleep_on_link(due);
        if (due >= 0) break;
      } else if (link_missed) { /* the I/O thread has it: it signals */
        link_missed = 0;
        uv_cond_timedwait(&W.cond, &W.lock, LINK_MISS_NS);
        break;
      } else if (due < 0) {
        uv_cond_wait(&W.cond, &W.lock);
      } else {
        uv_cond_timedwait(&W.cond, &W.lock, (uint64_t)(due * 1e9) + 1);
        break;
      }
    }
    if (W.stop) {
      uv_mutex_unlock(&W.lock);
      break;
    }
    if (W.cyc.len || W.pcancel.len) {
      dl_buf x = cyc;
      cyc = W.cyc;
      W.cyc = x;
      x = pcancel;
      pcancel = W.pcancel;
      W.pcancel = x;
    }
    uv_mutex_unlock(&W.lock);
    take_news();
    if (cyc.len) cycle_parked(cyc.p, cyc.len);
    if (pcancel.len) cancel_parked(L, pcancel.p, pcancel.len);
    cyc.len = pcancel.len = 0;
    wake_due(L);
    uv_mutex_lock(&W.lock);
    W.relieve = 0;
    if (P.ready) { /* waiting tasks whose news came go first */
      pk = P.ready;
      P.ready = pk->rnext;
      if (P.ready == NULL) P.ready_tail = NULL;
      pk->ready = 0;
    } else if (W.qhead) {
      t = W.qhead;
      W.qhead = t->next;
      if (W.qhead == NULL) W.qtail = NULL;
    }
    frees = W.frees;
    nfrees = W.nfrees;
    W.frees = NULL;
    W.nfrees = W.capfrees = 0;
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
    if (pk == NULL && t == NULL) { /* woken to spill, news, or idle */
      collect_futures(L, 1);
      relieve_memory(L);
      continue;
    }
    dl_w_fns_reap();
    if (t) task_came(idle_since);
    if (pk) {
      P.resumed_at = now_s();
      step(L, pk, 0);
    } else {
      run_task(L, t);
    }
    P.worked_at = now_s();
    just_ran = 1;
    collect_futures(L, 0);
    relieve_memory(L);
  }
  dl_buf_free(&cyc);
  dl_buf_free(&pcancel);
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
  atomic_fetch_add(&enq_seq, 1); /* a spinning executor sees it now */
  dl_w_wake_exec();
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
  /* Queues, Locks... travel to tasks by name: their metatables must be
     known before a task is decoded. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "dlua.coord");
  lua_call(L, 1, 0);
  return 0;
}

int dl_worker_future_decode(lua_State *L, const char *p, size_t n,
                            void *ctx) {
  return dl_w_future_decode(L, p, n, ctx);
}

/*
** dl_worker.c -- a worker process.  See dl_worker.h and DESIGN.md.
**
** The I/O thread runs a libuv loop: it receives tasks from the scheduler
** (fd 3, a socketpair made by the cluster), fetches missing inputs from
** peers over Unix sockets in the cluster's private directory, serves its
** stored results to peers, and forwards completions.  The executor thread
** owns the lua_State and runs one task at a time.  Stored results are kept
** encoded, so the I/O thread can hand them to a peer while a task runs.
*/
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

#include "dl_codec.h"
#include "dl_map.h"
#include "dl_mem.h"
#include "dl_proto.h"
#include "dl_sched.h"
#include "dl_worker.h"
#include "dlua.h"

/* Results smaller than this stay decoded in the executor's cache too. */
#define CACHE_MAX ((size_t)64 * 1024)
/* Set when a task made or used megabytes: collect garbage after it. */
static int big_garbage;

/* Results up to this size are sent to the scheduler with DONE. */
#define INLINE_MAX ((size_t)1024)

/*
** A stored result.  data is NULL while the bytes are spilled to the file
** numbered fid in the cluster's private directory.  A blob is only spilled
** when the store holds the only reference (refs == 1), so readers never
** see its data vanish.
*/
typedef struct blob {
  atomic_int refs;
  size_t len;
  char *key; /* the store's map key; lies in this block (mem) */
  size_t klen;
  char *data;
  char *base;   /* what to free for data when it lies inside a bigger
                   buffer (a received frame), else NULL */
  uint64_t fid; /* spill file number, 0 if never spilled */
  uint64_t lru; /* last use, for least-recently-used spilling */
  int inl;      /* data lies in this block, after the key */
  int cached;   /* the executor's cache may hold a decoded copy of the
                   value under key (W.lock) */
  char mem[];   /* the key and its NUL, then an inline value's bytes */
} blob;

/* Values up to this size are stored in the same block as their record, so
   a small result costs one allocation. */
#define SMALL_MAX ((size_t)1024)

typedef struct fnent {
  unsigned char hash[16];
  size_t len;
  struct fnent *next; /* in W.fns_dead, once out of W.fns */
  char code[];
} fnent;

/*
** A task, from its COMPUTE to its completion, in one block: the record,
** then the key and its NUL, then the payload.  The I/O thread makes and
** frees it; the executor runs it, writes the outcome into it and hands it
** back through W.done_head, so memory never moves between threads.
*/
typedef struct wtask wtask;
struct wtask {
  char *key;
  size_t klen;
  char *payload;
  size_t plen;
  uint32_t timeout_ms;
  int64_t prio; /* higher runs first; equal ones in arrival order */
  int missing; /* inputs still being fetched */
  int refs;    /* I/O side: the task itself + each fetch waiting with it */
  int dead;    /* cancelled or failed while waiting */
  uint64_t seq;
  wtask *next;
  /* The outcome, set by the executor. */
  int type; /* DL_M_DONE or DL_M_ERR */
  int kind; /* DL_M_ERR: the error kind */
  uint64_t nbytes, start_us, stop_us;
  blob *res;  /* DL_M_DONE: a reference to a small result, sent along */
  dl_buf rec; /* DL_M_ERR: the error record */
  char mem[];
};

typedef struct fetch fetch;
struct fetch {
  char *key;
  size_t klen;
  int *who;
  int nwho, tried;
  int peer; /* the worker asked now */
  int active; /* counted in W.nactive (a GET is or was out) */
  int plain;  /* the peer's shared block could not be mapped: ask for bytes */
  wtask **waiters;
  int nwaiters;
  fetch *qnext; /* in W.fetchq while waiting for a turn */
};

/* At most this many inputs are fetched at once, so a burst of big
   transfers cannot blow through the memory limit. */
#define MAX_FETCHES 4

typedef struct peer {
  int id;
  char addr[256];
  dl_conn *conn;
} peer;

typedef struct worker {
  int id;
  int64_t memory_limit;
  char dir[256];
  char addr[300];
  uv_loop_t loop;
  dl_flusher fl;
  dl_conn *sched;
  uv_pipe_t listener;
  uv_async_t done_async;
  uv_timer_t beat;
  uv_timer_t watchdog;
  peer *peers;
  int npeers;
  dl_map fetches; /* key -> fetch (I/O thread) */
  dl_map waiting; /* key -> wtask waiting for inputs (I/O thread) */
  int nactive;    /* fetches with a GET out */
  fetch *fetchq, *fetchq_tail; /* fetches waiting for a turn */
  uint64_t nextseq;
  /* shared with the executor, under lock */
  uv_mutex_t lock;
  uv_cond_t cond;
  dl_map store;   /* key -> blob */
  dl_map fns;     /* hash -> fnent */
  fnent *fns_dead; /* out of fns (DL_M_FUNC_FREE); the executor frees them
                      between tasks, as it may be decoding one */
  int64_t managed; /* bytes of stored values in memory */
  int64_t spilled; /* bytes of stored values on disk */
  int64_t rss;     /* process memory, updated by the watchdog */
  uint64_t lru_clock, next_fid;
  /* The last spill failed (disk full): why, and when to try again. */
  char spill_err[64]; /* "" while spilling works */
  double spill_retry; /* now_s() before which no spill is tried */
  int spilling;     /* spill files being written now */
  int leaving;      /* the worker is removing its files: spill no more */
  int paused;
  int relieve; /* values stored while idle passed the target: spill */
  double frac_target, frac_spill, frac_pause, frac_terminate;
  wtask *qhead, *qtail;
  char **frees; /* keys to drop from the executor's cache */
  int nfrees, capfrees;
  wtask *done_head, *done_tail; /* run, for done_cb to report */
  uint64_t running_seq;
  double deadline; /* of the running task, 0 if none */
  int cancel_kind; /* why the running task is being interrupted */
  int stop;
  lua_State *L; /* executor's; the I/O thread only sets hooks on it */
  uv_thread_t exec;
} worker;

static worker W;

static int64_t rss_bytes(void);

static double now_s(void) { return (double)uv_hrtime() * 1e-9; }

static char *dupb(const char *p, size_t n) {
  char *d = dl_realloc(NULL, n + 1);
  if (d == NULL) return NULL;
  memcpy(d, p, n);
  d[n] = '\0';
  return d;
}

static void spill_path(char *out, size_t n, uint64_t fid) {
  snprintf(out, n, "%s/w%d-spill-%llu", W.dir, W.id, (unsigned long long)fid);
}

/* A blob record for key with room for an inline value of n bytes (data
   points there), holding one reference; NULL if out of memory. */
static blob *blob_new(const char *key, size_t klen, size_t n) {
  blob *b = dl_realloc(NULL, sizeof *b + klen + 1 + n);
  if (b == NULL) return NULL;
  memset(b, 0, sizeof *b);
  atomic_init(&b->refs, 1);
  b->key = b->mem;
  b->klen = klen;
  if (klen) memcpy(b->mem, key, klen);
  b->mem[klen] = '\0';
  b->data = b->mem + klen + 1;
  b->len = n;
  b->inl = 1;
  return b;
}

static void blob_unref(blob *b) {
  if (b && atomic_fetch_sub(&b->refs, 1) == 1) {
    if (b->fid) {
      char path[400];
      spill_path(path, sizeof path, b->fid);
      unlink(path);
    }
    if (!b->inl) dl_free(b->base ? b->base : b->data);
    dl_free(b);
  }
}

/* Forget the bytes of old (removed from the store; W.lock held). */
static void store_account_drop(blob *old) {
  if (old->data) W.managed -= (int64_t)old->len;
  else W.spilled -= (int64_t)old->len;
}

/* Queue key for removal from the executor's cache (W.lock held). */
static void frees_push(const char *key, size_t klen) {
  if (W.nfrees == W.capfrees) {
    int nc = W.capfrees ? W.capfrees * 2 : 16;
    char **nf = dl_realloc(W.frees, sizeof *nf * (size_t)nc);
    if (nf == NULL) return;
    W.frees = nf;
    W.capfrees = nc;
  }
  W.frees[W.nfrees] = dupb(key, klen);
  if (W.frees[W.nfrees]) W.nfrees++;
}

/*
** Put b in the store under its key, replacing an older copy, and forget
** the older one's bytes.  Takes ownership of b's reference.  If the older
** copy may have a decoded twin in the executor's cache, *old_cached is set
** to 1, or, with old_cached NULL, the key is queued for the executor to
** drop from its cache.  Returns 0, or DL_ENOMEM (then b is freed).
*/
static int store_insert(blob *b, int *old_cached) {
  blob *old;
  int err = 0;
  uv_mutex_lock(&W.lock);
  b->lru = ++W.lru_clock;
  old = dl_map_swap(&W.store, b->key, b->klen, b, &err);
  if (err) {
    uv_mutex_unlock(&W.lock);
    blob_unref(b);
    return err;
  }
  if (old) {
    store_account_drop(old);
    if (old->cached && old_cached) *old_cached = 1;
    else if (old->cached) frees_push(b->key, b->klen);
  }
  W.managed += (int64_t)b->len;
  /* A copy fetched or stored while the executor is idle: wake it to spill
     (a running task relieves memory when it ends anyway). */
  if (W.memory_limit > 0 && W.running_seq == 0 && !W.relieve &&
      (double)W.managed > W.frac_target * (double)W.memory_limit) {
    W.relieve = 1;
    uv_cond_signal(&W.cond);
  }
  uv_mutex_unlock(&W.lock);
  blob_unref(old);
  return 0;
}

/*
** Store the n bytes at data under key.  Takes ownership of base, the
** allocation data lies in (NULL: data itself); it is freed on failure too.
*/
static int store_take(const char *key, size_t klen, char *base, char *data,
                      size_t n) {
  blob *b = blob_new(key, klen, 0);
  char *owned = base ? base : data;
  if (b == NULL || owned == NULL) {
    dl_free(owned);
    dl_free(b);
    return DL_ENOMEM;
  }
  b->inl = 0;
  b->len = n;
  b->data = data;
  b->base = base;
  return store_insert(b, NULL);
}

/* Store a copy of the n bytes at p under key. */
static int store_put(const char *key, size_t klen, const char *p, size_t n) {
  blob *b;
  char *d;
  if (n <= SMALL_MAX) {
    b = blob_new(key, klen, n);
    if (b == NULL) return DL_ENOMEM;
    memcpy(b->data, p, n);
    return store_insert(b, NULL);
  }
  d = dl_realloc(NULL, n);
  if (d == NULL) return DL_ENOMEM;
  memcpy(d, p, n);
  return store_take(key, klen, NULL, d, n);
}

/* Read a spilled value back: a private blob (not in the store), or NULL if
   the file cannot be read whole (then the value counts as lost).  A big
   value is mapped from the file, not copied. */
static blob *unspill(uint64_t fid, size_t len) {
  char path[400];
  blob *b;
  int fd;
  struct stat st;
  spill_path(path, sizeof path, fid);
  b = dl_realloc(NULL, sizeof *b);
  if (b == NULL) return NULL;
  memset(b, 0, sizeof *b);
  atomic_init(&b->refs, 1);
  b->len = len;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0 && (fstat(fd, &st) != 0 || (uint64_t)st.st_size < len)) {
    close(fd);
    fd = -1;
  }
  if (fd >= 0 && len >= DL_MEM_BIG) {
    b->data = (char *)dl_mem_map_fd(fd, len); /* closes fd on failure */
    if (b->data) return b;
  } else if (fd >= 0) {
    size_t got = 0;
    ssize_t r = 1;
    b->data = dl_realloc(NULL, len ? len : 1);
    while (b->data && got < len &&
           ((r = read(fd, b->data + got, len - got)) > 0 ||
            (r < 0 && errno == EINTR)))
      if (r > 0) got += (size_t)r;
    close(fd);
    if (b->data && got == len) return b;
    dl_free(b->data);
  }
  fprintf(stderr, "dlua worker %d: cannot read spilled value back from "
          "%s; it will be recomputed\n", W.id, path);
  dl_free(b);
  return NULL;
}

/* A reference to the stored bytes of key (read back from disk if spilled),
   or NULL. */
static blob *store_get(const char *key, size_t klen) {
  blob *b;
  uint64_t fid = 0;
  size_t len = 0;
  uv_mutex_lock(&W.lock);
  b = dl_map_get(&W.store, key, klen);
  if (b) {
    b->lru = ++W.lru_clock;
    if (b->data) {
      atomic_fetch_add(&b->refs, 1);
    } else {
      fid = b->fid;
      len = b->len;
      b = NULL;
    }
  }
  uv_mutex_unlock(&W.lock);
  if (fid) b = unspill(fid, len);
  return b;
}

/*
** Spill least-recently-used values to disk until managed memory is at most
** goal bytes.  Runs on the executor thread between tasks; file I/O happens
** outside the lock.  A full disk leaves the value in memory, unharmed.
*/
static void spill_until(int64_t goal) {
  for (;;) {
    blob *victim = NULL, *b, *stub = NULL;
    size_t i = 0;
    char path[400];
    FILE *f;
    int ok, done = 0, err;
    uint64_t fid;
    uv_mutex_lock(&W.lock);
    if (W.managed <= goal || W.leaving ||
        (W.spill_err[0] && now_s() < W.spill_retry)) {
      uv_mutex_unlock(&W.lock);
      return;
    }
    while ((b = dl_map_next(&W.store, &i)) != NULL)
      if (b->data && atomic_load(&b->refs) == 1 &&
          (victim == NULL || b->lru < victim->lru))
        victim = b;
    if (victim == NULL) {
      uv_mutex_unlock(&W.lock);
      return;
    }
    atomic_fetch_add(&victim->refs, 1); /* pinned: nobody frees it */
    fid = ++W.next_fid;
    W.spilling++;
    uv_mutex_unlock(&W.lock);
    spill_path(path, sizeof path, fid);
    errno = 0;
    f = fopen(path, "wbe"); /* e: close-on-exec, tasks' children never
                               see it */
    ok = f != NULL && fwrite(victim->data, 1, victim->len, f) == victim->len;
    err = errno;
    if (f && fclose(f) != 0 && ok) {
      ok = 0;
      err = errno;
    }
    /* An inline value cannot be freed on its own: a record without it
       takes the victim's place. */
    if (ok && victim->inl) {
      stub = blob_new(victim->key, victim->klen, 0);
      if (stub == NULL) done = 1; /* no memory now: try after a task */
    }
    uv_mutex_lock(&W.lock);
    if (!ok) {
      /* Keep the values in memory and try again a second later: space
         may be freed meanwhile. */
      if (!W.spill_err[0])
        fprintf(stderr, "dlua worker %d: cannot spill to %s (%s); keeping "
                "values in memory, retrying every second\n", W.id, path,
                strerror(err ? err : EIO));
      snprintf(W.spill_err, sizeof W.spill_err, "%s",
               strerror(err ? err : EIO));
      W.spill_retry = now_s() + 1.0;
      unlink(path);
      done = 1;
    } else if (dl_map_get(&W.store, victim->key, victim->klen) == victim &&
               atomic_load(&victim->refs) == 2 && !done) {
      if (stub) {
        stub->inl = 0;
        stub->data = NULL;
        stub->len = victim->len;
        stub->lru = victim->lru;
        stub->cached = victim->cached;
        stub->fid = fid;
        dl_map_put(&W.store, stub->key, stub->klen, stub);
        atomic_fetch_sub(&victim->refs, 1); /* the store's reference */
        stub = NULL;
      } else {
        dl_free(victim->base ? victim->base : victim->data);
        victim->data = victim->base = NULL;
        victim->fid = fid;
      }
      W.managed -= (int64_t)victim->len;
      W.spilled += (int64_t)victim->len;
      if (W.spill_err[0])
        fprintf(stderr, "dlua worker %d: spilling works again\n", W.id);
      W.spill_err[0] = '\0';
    } else { /* freed or read meanwhile: keep it as it is */
      unlink(path);
    }
    if (--W.spilling == 0 && W.leaving) uv_cond_broadcast(&W.cond);
    uv_mutex_unlock(&W.lock);
    dl_free(stub);
    blob_unref(victim);
    if (done) return;
  }
}

/*
** On the I/O thread, after storing a value that came from elsewhere: past
** the spill fraction the executor may not get to it in time (a burst of
** big values in one frame would restart the worker), so spill here, down
** to the target.
*/
static void io_relieve(void) {
  int64_t managed;
  uv_mutex_lock(&W.lock);
  managed = W.managed;
  uv_mutex_unlock(&W.lock);
  if (W.memory_limit > 0 &&
      (double)managed > W.frac_spill * (double)W.memory_limit)
    spill_until((int64_t)(W.frac_target * (double)W.memory_limit));
}

static int store_has(const char *key, size_t klen) {
  int has;
  uv_mutex_lock(&W.lock);
  has = dl_map_get(&W.store, key, klen) != NULL;
  uv_mutex_unlock(&W.lock);
  return has;
}

/* =========================================================== executor */

static const char cache_key = 'c'; /* registry: key -> decoded value */

/* The running task's key (under W.lock), for cancel requests. */
static char running_key[512];
static size_t running_klen;

/* Record that t failed (kind, msg, traceback tb or NULL, and the encoded
   error value val of vlen bytes when the task raised a table, else NULL). */
static void complete_err_value(wtask *t, int kind, const char *msg,
                               const char *tb, const char *val, size_t vlen) {
  char wname[32];
  t->type = DL_M_ERR;
  t->kind = kind;
  snprintf(wname, sizeof wname, "worker %d", W.id);
  dl_buf_free(&t->rec);
  dl_err_encode(&t->rec, kind, msg, tb, wname);
  if (val) dl_buf_str(&t->rec, val, vlen);
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

/* The entry fn_get found last (executor's). */
static fnent *fn_last;

/* The bytecode with the given hash, for the executor's decoder.  Entries
   are freed only by the executor between tasks (fns_reap), so the last one
   found is remembered. */
static int fn_get(void *ud, const unsigned char hash[16], const char **code,
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

static const dl_fnsource fnsource = {fn_get, NULL};

/* On the executor, between tasks: free the bytecode no task needs. */
static void fns_reap(void) {
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
static int future_decode(lua_State *L, const char *p, size_t n, void *ctx) {
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
  b = store_get(p, n);
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
  blob_unref(b);
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

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
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
    b = blob_new(t->key, t->klen, n);
    if (b == NULL) return DL_ENOMEM;
    memcpy(b->data, exec_out.p, n);
  } else {
    b = blob_new(t->key, t->klen, 0);
    if (b == NULL) return DL_ENOMEM;
    b->inl = 0;
    b->data = dl_buf_take(&exec_out, &b->len);
  }
  b->cached = cached;
  if (n <= INLINE_MAX) atomic_fetch_add(&b->refs, 1); /* for t->res */
  if (store_insert(b, old_cached)) {
    if (n <= INLINE_MAX) blob_unref(b);
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
static wtask *task_new(const char *key, size_t klen, const char *payload,
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

static void task_free(wtask *t) {
  blob_unref(t->res);
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
    spill_until((int64_t)(W.frac_target * limit));
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
    spill_until((int64_t)(W.frac_target * limit) -
                (int64_t)(rss - W.frac_spill * limit));
    rss = rss_bytes();
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
    spill_until(0);
    lua_gc(L, LUA_GCCOLLECT);
    malloc_trim(0);
    dl_mem_trim();
    rss = rss_bytes();
    uv_mutex_lock(&W.lock);
    W.rss = rss;
  }
  W.paused = 0;
  uv_mutex_unlock(&W.lock);
}

static void exec_main(void *arg) {
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
    running_klen = t->klen < sizeof running_key ? t->klen : 0;
    memcpy(running_key, t->key, running_klen);
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
    fns_reap();
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
static void enqueue(wtask *t) {
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

/* ============================================================ I/O side */

static void send_err_now(const char *key, size_t klen, int kind,
                         const char *msg) {
  dl_buf rec, *b;
  char wname[32];
  if (W.sched == NULL) return;
  dl_buf_init(&rec);
  snprintf(wname, sizeof wname, "worker %d", W.id);
  dl_err_encode(&rec, kind, msg, NULL, wname);
  b = dl_conn_msg(W.sched);
  dl_buf_u8(b, DL_M_ERR);
  dl_buf_str(b, key, klen);
  dl_buf_uv(b, (uint64_t)kind);
  dl_buf_str(b, rec.p, rec.len);
  dl_buf_free(&rec);
}

static void done_cb(uv_async_t *h) {
  wtask *t;
  (void)h;
  uv_mutex_lock(&W.lock);
  t = W.done_head;
  W.done_head = W.done_tail = NULL;
  uv_mutex_unlock(&W.lock);
  while (t) {
    wtask *next = t->next;
    if (W.sched) {
      dl_buf *b = dl_conn_msg(W.sched);
      dl_buf_u8(b, (unsigned)t->type);
      dl_buf_str(b, t->key, t->klen);
      if (t->type == DL_M_DONE) {
        dl_buf_uv(b, t->nbytes);
        dl_buf_uv(b, t->start_us);
        dl_buf_uv(b, t->stop_us);
        /* Small results ride along with the news. */
        dl_buf_str(b, t->res ? t->res->data : "", t->res ? t->res->len : 0);
      } else {
        dl_buf_uv(b, (uint64_t)t->kind);
        dl_buf_str(b, t->rec.p, t->rec.len);
      }
    }
    task_free(t);
    t = next;
  }
}

static void wtask_unref(wtask *t) {
  if (--t->refs == 0) task_free(t);
}

static peer *find_peer(int id) {
  int i;
  for (i = 0; i < W.npeers; i++)
    if (W.peers[i].id == id) return &W.peers[i];
  return NULL;
}

static void on_peer_frame(dl_conn *c, const char *p, size_t n);
static void on_peer_close(dl_conn *c);
static void fetch_next(fetch *f);

/* A connection to peer id (made on first use), or NULL. */
static dl_conn *peer_conn(int id) {
  peer *pr = find_peer(id);
  if (pr == NULL || pr->addr[0] == '\0') return NULL;
  if (pr->conn == NULL) {
    pr->conn = dl_conn_new(&W.loop, &W.fl, on_peer_frame, on_peer_close,
                           (void *)(intptr_t)id);
    if (pr->conn == NULL) return NULL;
    if (dl_conn_connect(pr->conn, pr->addr)) {
      dl_conn_close(pr->conn);
      pr->conn = NULL;
      return NULL;
    }
  }
  return pr->conn;
}

static void fetch_free(fetch *f) {
  dl_map_del(&W.fetches, f->key, f->klen);
  if (f->active) W.nactive--;
  dl_free(f->key);
  dl_free(f->who);
  dl_free(f->waiters);
  dl_free(f);
  /* Give the next waiting fetch its turn. */
  while (W.nactive < MAX_FETCHES && W.fetchq) {
    fetch *n = W.fetchq;
    W.fetchq = n->qnext;
    if (W.fetchq == NULL) W.fetchq_tail = NULL;
    n->active = 1;
    W.nactive++;
    fetch_next(n);
  }
}

/* Start f now if few fetches are out, else queue it. */
static void fetch_start(fetch *f) {
  if (W.nactive < MAX_FETCHES) {
    f->active = 1;
    W.nactive++;
    fetch_next(f);
    return;
  }
  f->qnext = NULL;
  if (W.fetchq_tail) W.fetchq_tail->qnext = f;
  else W.fetchq = f;
  W.fetchq_tail = f;
}

/* The input of f arrived (or is already local): release its waiters. */
static void fetch_done(fetch *f) {
  int i;
  for (i = 0; i < f->nwaiters; i++) {
    wtask *t = f->waiters[i];
    if (!t->dead && --t->missing == 0) {
      /* No other fetch holds t now: the waiting map's reference passes to
         the executor, which frees t when it is done; ours is dropped
         first, since t may be freed on the executor at any moment after
         enqueue. */
      dl_map_del(&W.waiting, t->key, t->klen);
      t->refs--;
      enqueue(t);
      continue;
    }
    wtask_unref(t);
  }
  fetch_free(f);
}

/* Nobody has the input of f: its waiters go back to the scheduler. */
static void fetch_failed(fetch *f) {
  int i;
  for (i = 0; i < f->nwaiters; i++) {
    wtask *t = f->waiters[i];
    if (!t->dead) {
      dl_buf *b;
      t->dead = 1;
      if (W.sched) {
        b = dl_conn_msg(W.sched);
        dl_buf_u8(b, DL_M_MISSING);
        dl_buf_str(b, t->key, t->klen);
        dl_buf_str(b, f->key, f->klen);
      }
      /* A fetch that fails inside on_compute, before t is put in the
         waiting map, leaves the task's own reference to on_compute. */
      if (dl_map_get(&W.waiting, t->key, t->klen) == t) {
        dl_map_del(&W.waiting, t->key, t->klen);
        wtask_unref(t); /* the waiting map's reference */
      }
    }
    wtask_unref(t);
  }
  fetch_free(f);
}

static void fetch_next(fetch *f) {
  while (f->tried < f->nwho) {
    int id = f->who[f->tried++];
    dl_conn *c = peer_conn(id);
    if (c) {
      dl_buf *b = dl_conn_msg(c);
      f->peer = id;
      dl_buf_u8(b, f->plain ? DL_M_GET : DL_M_GETS);
      dl_buf_uv(b, 0);
      dl_buf_str(b, f->key, f->klen);
      return;
    }
  }
  fetch_failed(f);
}

/* Tell the scheduler this worker now holds a copy of key too, so the copy
   is freed with the original and can serve other peers. */
static void announce_copy(const char *key, size_t klen, size_t nbytes) {
  dl_buf *b;
  if (W.sched == NULL) return;
  b = dl_conn_msg(W.sched);
  dl_buf_u8(b, DL_M_DONE);
  dl_buf_str(b, key, klen);
  dl_buf_uv(b, nbytes);
  dl_buf_uv(b, 0);
  dl_buf_uv(b, 0);
  dl_buf_str(b, "", 0);
}

/* Map a peer's block and store the value in it (no bytes copied): 0, or
   -1 if it cannot be mapped. */
static int take_shared(const dl_shared_at *sa, const char *key, size_t klen) {
  const char *m = dl_shared_at_map(sa);
  if (m == NULL) return -1;
  if (store_take(key, klen, (char *)m, (char *)m + sa->off, (size_t)sa->len))
    return -1; /* the mapping was freed with the failure */
  announce_copy(key, klen, (size_t)sa->len);
  return 0;
}

static void on_peer_frame(dl_conn *c, const char *p, size_t n) {
  dl_rd r;
  dl_rd_init(&r, p, n);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    uint64_t reqid, found;
    const char *key, *bytes;
    size_t klen, blen;
    fetch *f;
    if (dl_rd_u8(&r, &type) || type != DL_M_DATA || dl_rd_uv(&r, &reqid) ||
        dl_rd_str(&r, &key, &klen) || dl_rd_uv(&r, &found))
      return;
    if (dl_rd_str(&r, &bytes, &blen)) return;
    f = dl_map_get(&W.fetches, key, klen);
    if (f == NULL) continue;
    if (found == 2) {
      dl_shared_at sa;
      if (dl_shared_at_read(bytes, blen, &sa) == 0 &&
          take_shared(&sa, key, klen) == 0) {
        fetch_done(f);
        io_relieve();
      } else { /* ask the same peer again, for the bytes */
        f->plain = 1;
        f->tried--;
        fetch_next(f);
      }
    } else if (found) {
      char *base = dl_rd_left(&r) == 0 ? dl_conn_take_input(c, p) : NULL;
      int rc = base ? store_take(key, klen, base, (char *)bytes, blen)
                    : store_put(key, klen, bytes, blen);
      if (rc == 0) {
        announce_copy(key, klen, blen);
        fetch_done(f);
        io_relieve(); /* may free p when base took it: it is not read again */
        if (base) return; /* p is ours now, and fully read */
      } else {
        fetch_next(f);
      }
    } else {
      fetch_next(f);
    }
  }
}

static void on_peer_close(dl_conn *c) {
  int id = (int)(intptr_t)c->data;
  peer *pr = find_peer(id);
  size_t i = 0;
  fetch *f;
  fetch **retry = NULL;
  size_t nretry = 0;
  if (pr && pr->conn == c) pr->conn = NULL;
  /* Fetches that were waiting on it try the next holder. */
  while ((f = dl_map_next(&W.fetches, &i)) != NULL)
    if (f->peer == id) {
      fetch **nr = dl_realloc(retry, sizeof *nr * (nretry + 1));
      if (nr == NULL) break;
      retry = nr;
      retry[nretry++] = f;
    }
  for (i = 0; i < nretry; i++) {
    retry[i]->peer = -1;
    fetch_next(retry[i]);
  }
  dl_free(retry);
}

static void blob_done(void *ud) { blob_unref(ud); }

/*
** Answer a GET on c (from a peer or from the scheduler).  With shared_ok
** (a local peer's GETS) a big value is answered with where its block is,
** for the peer to map; else a big value goes in a frame of its own,
** written straight from the store, which the reader can take whole.
*/
static int serve_get(dl_conn *c, dl_rd *r, int shared_ok) {
  uint64_t reqid;
  const char *key;
  size_t klen;
  blob *bl;
  dl_buf *b;
  dl_mem_ref ref;
  const char *start;
  if (dl_rd_uv(r, &reqid) || dl_rd_str(r, &key, &klen)) return DL_EPROTO;
  bl = store_get(key, klen);
  start = bl ? (bl->base ? bl->base : bl->data) : NULL;
  if (bl && shared_ok && bl->len >= DL_MEM_BIG &&
      dl_mem_share(start, (size_t)(bl->data - start) + bl->len, &ref) == 0) {
    dl_shared_at sa;
    sa.pid = (uint64_t)getpid();
    sa.ref = ref;
    sa.off = (uint64_t)(bl->data - start);
    sa.len = bl->len;
    b = dl_conn_msg(c);
    dl_buf_u8(b, DL_M_DATA);
    dl_buf_uv(b, reqid);
    dl_buf_str(b, key, klen);
    dl_buf_uv(b, 2);
    dl_shared_at_write(b, &sa);
    blob_unref(bl); /* the peer checks the inode: no need to hold it */
    return 0;
  }
  if (bl && bl->len > ((size_t)64 << 10)) {
    dl_buf hdr;
    dl_buf_init(&hdr);
    dl_buf_u8(&hdr, DL_M_DATA);
    dl_buf_uv(&hdr, reqid);
    dl_buf_str(&hdr, key, klen);
    dl_buf_uv(&hdr, 1);
    dl_buf_uv(&hdr, bl->len);
    dl_conn_send_ref(c, hdr.p, hdr.len, bl->data, bl->len, blob_done, bl);
    dl_buf_free(&hdr);
    return 0;
  }
  b = dl_conn_msg(c);
  dl_buf_u8(b, DL_M_DATA);
  dl_buf_uv(b, reqid);
  dl_buf_str(b, key, klen);
  dl_buf_uv(b, bl ? 1 : 0);
  dl_buf_str(b, bl ? bl->data : "", bl ? bl->len : 0);
  blob_unref(bl);
  return 0;
}

static void on_client_frame(dl_conn *c, const char *p, size_t n) {
  dl_rd r;
  dl_rd_init(&r, p, n);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    if (dl_rd_u8(&r, &type) || (type != DL_M_GET && type != DL_M_GETS) ||
        serve_get(c, &r, type == DL_M_GETS)) {
      dl_conn_close(c);
      return;
    }
  }
}

static void on_connection(uv_stream_t *server, int status) {
  dl_conn *c;
  if (status < 0) return;
  c = dl_conn_new(&W.loop, &W.fl, on_client_frame, NULL, NULL);
  if (c == NULL) return;
  if (uv_accept(server, (uv_stream_t *)&c->pipe) || dl_conn_start(c))
    dl_conn_close(c);
}

static int on_compute(dl_rd *r) {
  const char *key, *payload;
  size_t klen, plen;
  int64_t prio;
  uint64_t timeout, ndeps, i, j;
  wtask *t;
  int rc = DL_EPROTO;
  if (dl_rd_str(r, &key, &klen) || dl_rd_sv(r, &prio) ||
      dl_rd_uv(r, &timeout) || dl_rd_str(r, &payload, &plen) ||
      dl_rd_uv(r, &ndeps))
    return DL_EPROTO;
  t = task_new(key, klen, payload, plen);
  if (t == NULL) return DL_ENOMEM;
  t->timeout_ms = (uint32_t)timeout;
  t->prio = prio;
  t->seq = ++W.nextseq;
  t->refs = 1;
  for (i = 0; i < ndeps; i++) {
    const char *dk;
    size_t dkl;
    uint64_t nwho, id;
    fetch *f;
    if (dl_rd_str(r, &dk, &dkl) || dl_rd_uv(r, &nwho) ||
        nwho > dl_rd_left(r))
      goto fail;
    if (store_has(dk, dkl)) {
      for (j = 0; j < nwho; j++)
        if (dl_rd_uv(r, &id)) goto fail;
      continue;
    }
    f = dl_map_get(&W.fetches, dk, dkl);
    if (f == NULL) {
      f = dl_realloc(NULL, sizeof *f);
      memset(f, 0, sizeof *f);
      f->key = dupb(dk, dkl);
      f->klen = dkl;
      f->peer = -1;
      f->who = dl_realloc(NULL, sizeof(int) * (nwho + 1));
      for (j = 0; j < nwho; j++) {
        if (dl_rd_uv(r, &id)) {
          dl_free(f->key);
          dl_free(f->who);
          dl_free(f);
          goto fail;
        }
        if ((int)id != W.id) f->who[f->nwho++] = (int)id;
      }
      dl_map_put(&W.fetches, f->key, f->klen, f);
      f->waiters = dl_realloc(NULL, sizeof(wtask *));
      f->waiters[f->nwaiters++] = t;
      t->refs++;
      t->missing++;
      fetch_start(f); /* may fail at once: then t is dead */
    } else {
      wtask **nw;
      for (j = 0; j < nwho; j++)
        if (dl_rd_uv(r, &id)) goto fail;
      nw = dl_realloc(f->waiters, sizeof *nw * (size_t)(f->nwaiters + 1));
      if (nw == NULL) {
        rc = DL_ENOMEM;
        goto fail;
      }
      f->waiters = nw;
      f->waiters[f->nwaiters++] = t;
      t->refs++;
      t->missing++;
    }
  }
  if (t->dead) {
    wtask_unref(t);
    return 0;
  }
  if (t->missing == 0) {
    enqueue(t); /* the executor owns it now */
  } else {
    /* A task of the same key still waiting is superseded: it dies, and
       the map's reference passes to t (put first: the map still points
       at the old key). */
    wtask *old = dl_map_get(&W.waiting, t->key, t->klen);
    dl_map_put(&W.waiting, t->key, t->klen, t); /* keeps its reference */
    if (old) {
      old->dead = 1;
      wtask_unref(old);
    }
  }
  return 0;
fail:
  /* Fetches already started for t hold it too: it dies, and the last of
     them frees it. */
  t->dead = 1;
  wtask_unref(t);
  return rc;
}

/* Take the task named key out of the executor's queue, if it is there. */
static wtask *queue_remove(const char *key, size_t klen) {
  wtask **pp, *t = NULL, *prev = NULL;
  uv_mutex_lock(&W.lock);
  for (pp = &W.qhead; *pp; prev = *pp, pp = &(*pp)->next)
    if ((*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0) {
      t = *pp;
      *pp = t->next;
      if (W.qtail == t) W.qtail = prev;
      break;
    }
  uv_mutex_unlock(&W.lock);
  return t;
}

static void on_cancel(const char *key, size_t klen) {
  wtask *t = queue_remove(key, klen);
  if (t) {
    send_err_now(key, klen, DL_ERR_CANCELLED, "cancelled");
    task_free(t);
    return;
  }
  t = dl_map_get(&W.waiting, key, klen);
  if (t) {
    t->dead = 1;
    dl_map_del(&W.waiting, key, klen);
    send_err_now(key, klen, DL_ERR_CANCELLED, "cancelled");
    wtask_unref(t);
  }
  /* A running task is interrupted by the caller (on_sched_frame). */
}

static int told_to_stop; /* the scheduler sent SHUTDOWN */

/* Make the running task raise at its next instruction (W.lock held). */
static void interrupt_running(int kind) {
  W.cancel_kind = kind;
  lua_sethook(W.L, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT,
              1);
}

static void on_sched_frame(dl_conn *c, const char *p, size_t n) {
  dl_rd r;
  (void)c;
  dl_rd_init(&r, p, n);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    const char *key, *bytes;
    size_t klen, blen;
    int rc = 0;
    dl_rd_u8(&r, &type);
    switch (type) {
      case DL_M_COMPUTE: rc = on_compute(&r); break;
      case DL_M_FUNC: {
        const char *h;
        fnent *f;
        if (dl_rd_bytes(&r, 16, &h) || dl_rd_str(&r, &bytes, &blen)) {
          rc = DL_EPROTO;
          break;
        }
        f = dl_realloc(NULL, sizeof *f + blen);
        if (f == NULL) {
          rc = DL_ENOMEM;
          break;
        }
        memcpy(f->hash, h, 16);
        f->len = blen;
        memcpy(f->code, bytes, blen);
        uv_mutex_lock(&W.lock);
        if (dl_map_get(&W.fns, h, 16)) dl_free(f);
        else dl_map_put(&W.fns, (const char *)f->hash, 16, f);
        uv_mutex_unlock(&W.lock);
        break;
      }
      case DL_M_FUNC_FREE: {
        const char *h;
        fnent *f;
        if (dl_rd_bytes(&r, 16, &h)) {
          rc = DL_EPROTO;
          break;
        }
        uv_mutex_lock(&W.lock);
        f = dl_map_del(&W.fns, h, 16);
        if (f) {
          f->next = W.fns_dead;
          W.fns_dead = f;
        }
        uv_mutex_unlock(&W.lock);
        break;
      }
      case DL_M_FREE: {
        blob *b;
        if (dl_rd_str(&r, &key, &klen)) {
          rc = DL_EPROTO;
          break;
        }
        uv_mutex_lock(&W.lock);
        b = dl_map_del(&W.store, key, klen);
        if (b) {
          store_account_drop(b);
          if (b->cached) frees_push(key, klen);
        }
        uv_mutex_unlock(&W.lock);
        blob_unref(b);
        break;
      }
      case DL_M_STEAL: {
        dl_buf *b;
        wtask *t;
        int ok;
        if (dl_rd_str(&r, &key, &klen)) {
          rc = DL_EPROTO;
          break;
        }
        t = queue_remove(key, klen);
        ok = t != NULL;
        if (t) task_free(t);
        b = dl_conn_msg(W.sched);
        dl_buf_u8(b, DL_M_STOLEN);
        dl_buf_str(b, key, klen);
        dl_buf_uv(b, (uint64_t)ok);
        break;
      }
      case DL_M_CANCEL:
        if (dl_rd_str(&r, &key, &klen)) {
          rc = DL_EPROTO;
          break;
        }
        on_cancel(key, klen);
        uv_mutex_lock(&W.lock);
        if (W.running_seq && running_klen == klen &&
            memcmp(running_key, key, klen) == 0)
          interrupt_running(DL_ERR_CANCELLED);
        uv_mutex_unlock(&W.lock);
        break;
      case DL_M_STORE: {
        dl_buf *b;
        if (dl_rd_str(&r, &key, &klen) || dl_rd_str(&r, &bytes, &blen)) {
          rc = DL_EPROTO;
          break;
        }
        b = dl_conn_msg(W.sched);
        if (store_put(key, klen, bytes, blen)) {
          send_err_now(key, klen, DL_ERR_RAISED, "out of memory");
          break;
        }
        dl_buf_u8(b, DL_M_DONE);
        dl_buf_str(b, key, klen);
        dl_buf_uv(b, blen);
        dl_buf_uv(b, 0);
        dl_buf_uv(b, 0);
        dl_buf_str(b, "", 0);
        io_relieve();
        break;
      }
      case DL_M_PEER: {
        uint64_t id;
        peer *pr;
        if (dl_rd_uv(&r, &id) || dl_rd_str(&r, &bytes, &blen) ||
            blen >= sizeof pr->addr) {
          rc = DL_EPROTO;
          break;
        }
        pr = find_peer((int)id);
        if (pr == NULL) {
          peer *np = dl_realloc(W.peers, sizeof *np * (size_t)(W.npeers + 1));
          if (np == NULL) break;
          W.peers = np;
          pr = &W.peers[W.npeers++];
          memset(pr, 0, sizeof *pr);
          pr->id = (int)id;
        }
        memcpy(pr->addr, bytes, blen);
        pr->addr[blen] = '\0';
        if (blen == 0 && pr->conn) dl_conn_close(pr->conn);
        break;
      }
      case DL_M_GET: rc = serve_get(c, &r, 0); break;
      case DL_M_GETS: rc = serve_get(c, &r, 1); break;
      case DL_M_SHUTDOWN:
        told_to_stop = 1;
        uv_stop(&W.loop);
        return;
      default: rc = DL_EPROTO;
    }
    if (rc) {
      fprintf(stderr, "dlua worker %d: malformed message from the "
              "scheduler (type %u); exiting\n", W.id, type);
      uv_stop(&W.loop);
      return;
    }
  }
}

/* Set when the worker goes because its cluster is gone (the link closed
   unasked, or SIGTERM), not because it was told to shut down. */
static int lost_link;
static uv_pid_t parent_pid; /* the client that started us */
static uv_signal_t term_sig;

static void on_sched_close(dl_conn *c) {
  (void)c;
  W.sched = NULL;
  if (!told_to_stop) lost_link = 1;
  uv_stop(&W.loop); /* the scheduler is gone: so are we */
}

/* SIGTERM (sent by the kernel when the client dies, see PR_SET_PDEATHSIG,
   or by anyone): leave as if the link were lost. */
static void term_cb(uv_signal_t *h, int sig) {
  (void)h;
  (void)sig;
  lost_link = 1;
  uv_stop(&W.loop);
}

/*
** The cluster is gone without shutting us down (its client was killed):
** remove this worker's spill files, and the private directory itself once
** the client is gone for good and every worker has removed its files, so
** that a killed client leaves nothing behind.  A cluster that is alive
** removes the directory itself.
*/
static void leave_files(void) {
  uv_fs_t req;
  uv_dirent_t ent;
  char prefix[48], path[600];
  int plen, i;
  double until = now_s() + 2.0;
  uv_mutex_lock(&W.lock);
  W.leaving = 1; /* no new spill file; wait for those being written */
  while (W.spilling > 0 && now_s() < until)
    uv_cond_timedwait(&W.cond, &W.lock, 20 * 1000 * 1000);
  uv_mutex_unlock(&W.lock);
  plen = snprintf(prefix, sizeof prefix, "w%d-spill-", W.id);
  if (uv_fs_scandir(NULL, &req, W.dir, 0, NULL) >= 0) {
    while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
      if (strncmp(ent.name, prefix, (size_t)plen) != 0) continue;
      snprintf(path, sizeof path, "%s/%s", W.dir, ent.name);
      unlink(path);
    }
  }
  uv_fs_req_cleanup(&req);
  /* The link closes before the kernel hands us to a new parent: give it a
     moment, then remove the directory if the client is gone (rmdir fails
     while other workers' files are still there; the last one succeeds). */
  for (i = 0; i < 100 && getppid() == parent_pid; i++) uv_sleep(10);
  if (getppid() != parent_pid) rmdir(W.dir);
}

static int64_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "re");
  long pages = 0, res = 0;
  if (f == NULL) return 0;
  if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
  fclose(f);
  return (int64_t)res * sysconf(_SC_PAGESIZE);
}

static void beat_cb(uv_timer_t *t) {
  dl_buf *b;
  int64_t managed, spilled;
  int executing, stored, paused;
  char spill_err[sizeof W.spill_err];
  (void)t;
  if (W.sched == NULL) return;
  uv_mutex_lock(&W.lock);
  managed = W.managed;
  spilled = W.spilled;
  executing = W.running_seq != 0;
  stored = (int)W.store.count;
  paused = W.paused;
  memcpy(spill_err, W.spill_err, sizeof spill_err);
  uv_mutex_unlock(&W.lock);
  b = dl_conn_msg(W.sched);
  dl_buf_u8(b, DL_M_HEARTBEAT);
  dl_buf_uv(b, (uint64_t)managed);
  dl_buf_uv(b, (uint64_t)spilled);
  dl_buf_uv(b, (uint64_t)(W.rss ? W.rss : rss_bytes()));
  dl_buf_uv(b, (uint64_t)executing);
  dl_buf_uv(b, (uint64_t)stored);
  dl_buf_uv(b, (uint64_t)paused);
  dl_buf_str(b, spill_err, strlen(spill_err));
}

static void watchdog_cb(uv_timer_t *t) {
  static int ticks;
  (void)t;
  if (++ticks % 5 == 0 && W.memory_limit > 0) {
    int64_t rss = rss_bytes();
    if (rss > W.frac_spill * (double)W.memory_limit && dl_mem_cached()) {
      dl_mem_trim(); /* freed blocks kept for reuse go first */
      rss = rss_bytes();
    }
    uv_mutex_lock(&W.lock);
    W.rss = rss;
    if (W.paused && rss < W.frac_pause * (double)W.memory_limit)
      uv_cond_signal(&W.cond);
    /* Spilling failed and values wait in memory: when its retry is due,
       wake the executor to try again (space may have been freed). */
    if (W.spill_err[0] && now_s() >= W.spill_retry && !W.relieve &&
        W.managed > W.frac_target * (double)W.memory_limit) {
      W.relieve = 1;
      uv_cond_signal(&W.cond);
    }
    uv_mutex_unlock(&W.lock);
    if (rss > W.frac_terminate * (double)W.memory_limit) {
      fprintf(stderr, "dlua worker %d: process memory %lld bytes is past "
              "%.0f%% of its limit %lld; restarting the worker (its tasks "
              "are recomputed elsewhere)\n", W.id, (long long)rss,
              W.frac_terminate * 100, (long long)W.memory_limit);
      fflush(stderr);
      _exit(3);
    }
  }
  uv_mutex_lock(&W.lock);
  if (W.running_seq && W.deadline > 0 && now_s() > W.deadline &&
      W.cancel_kind == 0)
    interrupt_running(DL_ERR_TIMEOUT);
  uv_mutex_unlock(&W.lock);
}

static int parse_args(int argc, char **argv) {
  int i;
  W.id = 0;
  W.frac_target = 0.6;
  W.frac_spill = 0.7;
  W.frac_pause = 0.8;
  W.frac_terminate = 0.95;
  for (i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--id") == 0) W.id = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--dir") == 0)
      snprintf(W.dir, sizeof W.dir, "%s", argv[i + 1]);
    else if (strcmp(argv[i], "--memory-limit") == 0)
      W.memory_limit = strtoll(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--memory-fractions") == 0) {
      if (sscanf(argv[i + 1], "%lf,%lf,%lf,%lf", &W.frac_target,
                 &W.frac_spill, &W.frac_pause, &W.frac_terminate) != 4)
        return -1;
    }
    else return -1;
  }
  return W.id > 0 && W.dir[0] ? 0 : -1;
}

/* The lock, condition and maps of W (the fuzz harness shares this). */
static void state_init(void) {
  uv_mutex_init(&W.lock);
  uv_cond_init(&W.cond);
  dl_map_init(&W.store);
  dl_map_init(&W.fns);
  dl_map_init(&W.fetches);
  dl_map_init(&W.waiting);
}

static int setup_state(lua_State *L) {
  dlua_openlibs(L);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &cache_key);
  luaL_newmetatable(L, DL_FUTURE_MT);
  lua_pop(L, 1);
  dl_codec_register(L, DL_FUTURE_MT, NULL, future_decode);
  lua_pushboolean(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "dlua.in_worker");
  return 0;
}

int dlua_worker_main(int argc, char **argv) {
  dl_buf *b;
  lua_State *L;
  if (argc < 2 || strcmp(argv[1], "--dlua-worker") != 0) return -1;
  if (parse_args(argc, argv)) {
    fprintf(stderr, "dlua: worker mode takes --id N --dir DIR "
            "[--memory-limit BYTES]\n");
    return 2;
  }
  /* Leave with the process that started us, even if it is SIGKILLed:
     SIGTERM lets us remove our files first (term_cb). */
  parent_pid = getppid();
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() == 1 || getppid() != parent_pid) return 1;
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, SIG_IGN); /* Ctrl-C is the client's to handle */
  setenv("DLUA_WORKER", "1", 1); /* dlua.ndarray: one BLAS thread */
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* Big values get their own mappings, so freeing one returns it to the
     system at once and process memory tracks live data. */
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  { /* Big blocks hold descriptors (dl_mem.c): take all we may have. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  /* Freed big blocks kept for reuse fit between the target and spill
     fractions, so keeping them never makes the worker spill. */
  if (W.memory_limit > 0) {
    double room = (W.frac_spill - W.frac_target) * (double)W.memory_limit;
    if (room < (double)(256u << 20))
      dl_mem_set_cache_max(room > 0 ? (size_t)room : 0);
  }
  state_init();
  L = lua_newstate(dlua_alloc, NULL);
  if (L == NULL) return 1;
  lua_pushcfunction(L, setup_state);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    fprintf(stderr, "dlua worker: %s\n", lua_tostring(L, -1));
    return 1;
  }
  W.L = L;
  {
    int rc = uv_loop_init(&W.loop);
    if (rc == 0) rc = dl_flusher_init(&W.fl, &W.loop);
    if (rc == 0) rc = uv_async_init(&W.loop, &W.done_async, done_cb);
    if (rc) {
      fprintf(stderr, "dlua worker %d: cannot create its event loop: %s\n",
              W.id, uv_strerror(rc));
      return 1;
    }
  }
  uv_timer_init(&W.loop, &W.beat);
  uv_timer_start(&W.beat, beat_cb, 0, 500);
  uv_timer_init(&W.loop, &W.watchdog);
  uv_timer_start(&W.watchdog, watchdog_cb, 10, 10);
  snprintf(W.addr, sizeof W.addr, "%s/w%d.sock", W.dir, W.id);
  uv_pipe_init(&W.loop, &W.listener, 0);
  {
    int rc = uv_pipe_bind(&W.listener, W.addr);
    if (rc == 0)
      rc = uv_listen((uv_stream_t *)&W.listener, 128, on_connection);
    if (rc) {
      fprintf(stderr, "dlua worker %d: cannot listen on %s: %s\n", W.id,
              W.addr, uv_strerror(rc));
      return 1;
    }
  }
  uv_signal_init(&W.loop, &term_sig);
  uv_signal_start(&term_sig, term_cb, SIGTERM);
  /* Tasks' children inherit stdin, stdout and stderr only: the link is
     close-on-exec like every descriptor the worker opens itself. */
  fcntl(3, F_SETFD, FD_CLOEXEC);
  W.sched = dl_conn_new(&W.loop, &W.fl, on_sched_frame, on_sched_close, NULL);
  if (W.sched == NULL || dl_conn_open_fd(W.sched, 3)) {
    fprintf(stderr, "dlua worker %d: no scheduler link on fd 3\n", W.id);
    return 1;
  }
  b = dl_conn_msg(W.sched);
  dl_buf_u8(b, DL_M_HELLO);
  dl_buf_uv(b, (uint64_t)W.id);
  dl_buf_uv(b, (uint64_t)getpid());
  dl_buf_uv(b, 1);
  dl_buf_uv(b, (uint64_t)W.memory_limit);
  dl_buf_str(b, W.addr, strlen(W.addr));
  beat_cb(NULL); /* memory figures arrive with the hello */
  if (uv_thread_create(&W.exec, exec_main, L)) return 1;
  uv_run(&W.loop, UV_RUN_DEFAULT);
  unlink(W.addr);
  if (lost_link) leave_files();
  fflush(stdout);
  fflush(stderr);
  /* Nobody is left to end what our tasks started (processes in our group,
     the session we lead): end it with us. */
  if (lost_link && getpgrp() == getpid()) kill(0, SIGKILL);
  /* A task may still be running on the executor: leave without waiting. */
  _exit(0);
}

/*
** dl_coord.c -- named Variables, Queues, Events and Semaphores on the
** scheduler.  See dl_coord.h.
*/
#include <string.h>

#include "dl_coord.h"
#include "dl_map.h"
#include "dl_wire.h"

/* A request that waits, first come first served. */
typedef struct waiter waiter;
struct waiter {
  int from;
  char *task;  /* the key of the task that asks (owned), or NULL */
  size_t tlen;
  uint64_t reqid;
  int op;
  double deadline; /* < 0: none */
  uint64_t n, lease;
  char *bytes; /* DL_CO_Q_PUT: the item (owned) */
  size_t blen;
  int fut;     /* bytes is a future's key, held (dl_coord_keys) */
  waiter *next;
};

typedef struct item {
  char *p; /* owned */
  size_t n;
  int fut; /* p is a future's key, held */
} item;

typedef struct lease {
  int from;
  uint64_t id;
  char *task; /* the key of the task that holds it (owned), or NULL */
  size_t tlen;
} lease;

enum { K_VAR = 'v', K_QUEUE = 'q', K_EVENT = 'e', K_SEM = 's' };

typedef struct prim {
  char *key; /* kind byte, then the name (owned; the map's key) */
  size_t klen;
  int kind;
  char *val; /* variable: its value (owned), when has */
  size_t vlen;
  int has;
  int vfut; /* val is a future's key, held */
  item *items; /* queue: items[head .. head+len) */
  size_t head, len, cap;
  uint64_t maxsize;
  int sized;    /* queue: its first put has fixed maxsize */
  int set;      /* event */
  uint64_t max; /* semaphore: leases at most */
  lease *leases;
  int nleases, capleases;
  waiter *wh, *wt;
  int nwait;
} prim;

struct dl_coord {
  dl_map prims;
  dl_coord_out out;
  void *ud;
  dl_coord_keys keys;
  int has_keys;
};

void dl_coord_set_keys(dl_coord *c, const dl_coord_keys *keys) {
  c->keys = *keys;
  c->has_keys = 1;
}

static int key_hold(dl_coord *c, const char *k, size_t n) {
  return c->has_keys ? c->keys.hold(c->ud, k, n) : -1;
}

static void key_drop(dl_coord *c, const char *k, size_t n) {
  if (c->has_keys) c->keys.drop(c->ud, k, n);
}

static void key_give(dl_coord *c, const char *k, size_t n, int to) {
  if (c->has_keys) c->keys.give(c->ud, k, n, to);
}

static char *dup_bytes(const char *p, size_t n) {
  char *d = dl_realloc(NULL, n + 1);
  if (d == NULL) return NULL;
  memcpy(d, p, n);
  d[n] = '\0';
  return d;
}

dl_coord *dl_coord_new(dl_coord_out out, void *ud) {
  dl_coord *c = dl_realloc(NULL, sizeof *c);
  if (c == NULL) return NULL;
  dl_map_init(&c->prims);
  c->out = out;
  c->ud = ud;
  c->has_keys = 0;
  return c;
}

static void prim_free(prim *p) {
  waiter *w = p->wh;
  size_t i;
  int k;
  while (w) {
    waiter *next = w->next;
    dl_free(w->bytes);
    dl_free(w->task);
    dl_free(w);
    w = next;
  }
  for (i = 0; i < p->len; i++) dl_free(p->items[p->head + i].p);
  dl_free(p->items);
  for (k = 0; k < p->nleases; k++) dl_free(p->leases[k].task);
  dl_free(p->leases);
  dl_free(p->val);
  dl_free(p->key);
  dl_free(p);
}

void dl_coord_free(dl_coord *c) {
  size_t i = 0;
  prim *p;
  if (c == NULL) return;
  while ((p = dl_map_next(&c->prims, &i)) != NULL) prim_free(p);
  dl_map_free(&c->prims);
  dl_free(c);
}

static void reply(dl_coord *c, int to, uint64_t reqid, int status,
                  const char *p, size_t n) {
  dl_buf *b = c->out(c->ud, to);
  dl_msg_coord_reply m;
  if (b == NULL) return;
  m.reqid = reqid;
  m.status = (uint64_t)status;
  m.bytes = p;
  m.blen = n;
  dl_put_coord_reply(b, &m);
}

static void reply_err(dl_coord *c, int to, uint64_t reqid, const char *msg) {
  reply(c, to, reqid, DL_CO_ERROR, msg, strlen(msg));
}

static void put_le32(dl_buf *b, size_t n) {
  unsigned char x[4];
  x[0] = (unsigned char)n;
  x[1] = (unsigned char)(n >> 8);
  x[2] = (unsigned char)(n >> 16);
  x[3] = (unsigned char)(n >> 24);
  dl_buf_put(b, x, 4);
}

/* Append an item to queue p, taking ownership of bytes (and of the hold
   on its key, if fut); 0 or DL_ENOMEM. */
static int q_push(prim *p, char *bytes, size_t n, int fut) {
  if (p->head + p->len == p->cap) {
    if (p->head > 0) { /* slide down first */
      memmove(p->items, p->items + p->head, p->len * sizeof *p->items);
      p->head = 0;
    }
    if (p->len == p->cap) {
      size_t nc = p->cap ? p->cap * 2 : 16;
      item *ni = dl_realloc(p->items, nc * sizeof *ni);
      if (ni == NULL) return DL_ENOMEM;
      p->items = ni;
      p->cap = nc;
    }
  }
  p->items[p->head + p->len].p = bytes;
  p->items[p->head + p->len].n = n;
  p->items[p->head + p->len].fut = fut;
  p->len++;
  return 0;
}

/* Pop k items into a list reply (k == 0: one item, bare).  A future's
   hold passes from the queue to the requester. */
static void q_pop_reply(dl_coord *c, prim *p, int to, uint64_t reqid,
                        uint64_t k) {
  if (k == 0) {
    item it = p->items[p->head++];
    p->len--;
    reply(c, to, reqid, it.fut ? DL_CO_FUTURE : DL_CO_OK, it.p, it.n);
    if (it.fut) {
      key_give(c, it.p, it.n, to);
      key_drop(c, it.p, it.n);
    }
    dl_free(it.p);
  } else {
    dl_buf b;
    uint64_t i;
    int futs = 0;
    item *its = p->items + p->head;
    dl_buf_init(&b);
    for (i = 0; i < k; i++) {
      put_le32(&b, its[i].n | (its[i].fut ? DL_CO_LIST_FUTURE : 0));
      dl_buf_put(&b, its[i].p, its[i].n);
      futs |= its[i].fut;
    }
    reply(c, to, reqid, futs ? DL_CO_FLIST : DL_CO_OK, b.p, b.len);
    dl_buf_free(&b);
    for (i = 0; i < k; i++) { /* after the reply, as give asks */
      if (its[i].fut) {
        key_give(c, its[i].p, its[i].n, to);
        key_drop(c, its[i].p, its[i].n);
      }
      dl_free(its[i].p);
    }
    p->head += k;
    p->len -= k;
  }
  if (p->len == 0) p->head = 0;
}

static int sem_held(const prim *p, int from, uint64_t id) {
  int i;
  for (i = 0; i < p->nleases; i++)
    if (p->leases[i].from == from && p->leases[i].id == id) return i;
  return -1;
}

/* Take lease i out of semaphore p. */
static void sem_drop(prim *p, int i) {
  dl_free(p->leases[i].task);
  p->leases[i] = p->leases[--p->nleases];
}

/* Try to meet waiter w now: 1 if it was answered (and may be freed). */
static int try_serve(dl_coord *c, prim *p, waiter *w) {
  switch (w->op) {
    case DL_CO_VAR_GET:
      if (!p->has) return 0;
      reply(c, w->from, w->reqid, p->vfut ? DL_CO_FUTURE : DL_CO_OK, p->val,
            p->vlen);
      if (p->vfut) key_give(c, p->val, p->vlen, w->from);
      return 1;
    case DL_CO_Q_GET:
      if (p->len < (w->n ? w->n : 1)) return 0;
      q_pop_reply(c, p, w->from, w->reqid, w->n);
      return 1;
    case DL_CO_Q_PUT:
    case DL_CO_Q_PUSH:
      if (p->maxsize && p->len >= p->maxsize) return 0;
      if (q_push(p, w->bytes, w->blen, w->fut)) return 0;
      w->bytes = NULL;
      if (w->op == DL_CO_Q_PUT)
        reply(c, w->from, w->reqid, DL_CO_OK, p->maxsize ? "\1" : "\0", 1);
      return 1;
    case DL_CO_EV_WAIT:
      if (!p->set) return 0;
      reply(c, w->from, w->reqid, DL_CO_OK, "", 0);
      return 1;
    case DL_CO_SEM_ACQ:
      if ((uint64_t)p->nleases >= p->max) return 0;
      if (p->nleases == p->capleases) {
        int nc = p->capleases ? p->capleases * 2 : 4;
        lease *nl = dl_realloc(p->leases, (size_t)nc * sizeof *nl);
        if (nl == NULL) return 0;
        p->leases = nl;
        p->capleases = nc;
      }
      p->leases[p->nleases].from = w->from;
      p->leases[p->nleases].id = w->lease;
      p->leases[p->nleases].task = w->task; /* the holder now */
      p->leases[p->nleases].tlen = w->tlen;
      w->task = NULL;
      p->nleases++;
      reply(c, w->from, w->reqid, DL_CO_OK, "", 0);
      return 1;
    default: return 1;
  }
}

static void unlink_waiter(dl_coord *c, prim *p, waiter *prev, waiter *w) {
  if (prev) prev->next = w->next;
  else p->wh = w->next;
  if (p->wt == w) p->wt = prev;
  p->nwait--;
  if (w->fut && w->bytes) key_drop(c, w->bytes, w->blen); /* not put */
  dl_free(w->bytes);
  dl_free(w->task);
  dl_free(w);
}

/* Answer every waiter of p that can be met now, in order, until none
   more can (a put may let a get through, and the other way round). */
static void serve(dl_coord *c, prim *p) {
  int progress = 1;
  while (progress) {
    waiter *w = p->wh, *prev = NULL;
    progress = 0;
    while (w) {
      waiter *next = w->next;
      if (try_serve(c, p, w)) {
        unlink_waiter(c, p, prev, w);
        progress = 1;
      } else {
        prev = w;
      }
      w = next;
    }
  }
}

static prim *get_prim(dl_coord *c, int kind, const char *name, size_t nlen,
                      int create) {
  char kb[256];
  char *key = kb;
  prim *p;
  if (nlen + 1 > sizeof kb) {
    key = dl_realloc(NULL, nlen + 1);
    if (key == NULL) return NULL;
  }
  key[0] = (char)kind;
  memcpy(key + 1, name, nlen);
  p = dl_map_get(&c->prims, key, nlen + 1);
  if (p == NULL && create) {
    p = dl_realloc(NULL, sizeof *p);
    if (p) {
      memset(p, 0, sizeof *p);
      p->kind = kind;
      p->klen = nlen + 1;
      p->key = dup_bytes(key, nlen + 1);
      if (p->key == NULL || dl_map_put(&c->prims, p->key, p->klen, p)) {
        dl_free(p->key);
        dl_free(p);
        p = NULL;
      }
    }
  }
  if (key != kb) dl_free(key);
  return p;
}

static int kind_of(int op) {
  switch (op) {
    case DL_CO_VAR_SET:
    case DL_CO_VAR_GET:
    case DL_CO_VAR_DEL: return K_VAR;
    case DL_CO_Q_PUT:
    case DL_CO_Q_PUSH:
    case DL_CO_Q_GET:
    case DL_CO_Q_GET_ALL:
    case DL_CO_Q_SIZE: return K_QUEUE;
    case DL_CO_EV_SET:
    case DL_CO_EV_CLEAR:
    case DL_CO_EV_WAIT:
    case DL_CO_EV_IS_SET: return K_EVENT;
    case DL_CO_SEM_ACQ:
    case DL_CO_SEM_REL: return K_SEM;
    default: return 0;
  }
}

/* DL_CO_WITHDRAW: requester `from` gave up its request reqid (of op, on
   the primitive named, with lease lid). */
static void withdraw(dl_coord *c, int from, uint64_t reqid, int op,
                     const char *name, size_t nlen, uint64_t lid) {
  prim *p;
  waiter *w, *prev = NULL;
  int i;
  if (kind_of(op) == 0) return;
  p = get_prim(c, kind_of(op), name, nlen, 0);
  if (p == NULL) return;
  for (w = p->wh; w; prev = w, w = w->next)
    if (w->from == from && w->reqid == reqid) {
      unlink_waiter(c, p, prev, w);
      serve(c, p); /* a put withdrawn may let another through */
      return;
    }
  /* Met already: the answer is on its way to nobody. */
  if (op == DL_CO_SEM_ACQ && (i = sem_held(p, from, lid)) >= 0) {
    sem_drop(p, i);
    serve(c, p);
  }
}

int dl_coord_request(dl_coord *c, int from, dl_rd *r, double now) {
  dl_msg_coord m;
  uint64_t reqid, lid;
  unsigned op;
  prim *p;
  waiter *w;
  if (dl_get_coord(r, &m)) return DL_EPROTO;
  reqid = m.reqid;
  op = m.op;
  lid = m.lease;
  if (op == DL_CO_WITHDRAW) {
    withdraw(c, from, reqid, (int)m.n, m.name, m.nlen, lid);
    return 0;
  }
  if (kind_of((int)op) == 0) {
    reply_err(c, from, reqid, "unknown coordination request");
    return 0;
  }
  p = get_prim(c, kind_of((int)op), m.name, m.nlen, 1);
  if (p == NULL) {
    reply_err(c, from, reqid, "out of memory on the scheduler");
    return 0;
  }
  switch (op) {
    case DL_CO_VAR_SET: {
      int fut = (lid & DL_CO_FUTURE_KEY) != 0;
      char *v = dup_bytes(m.bytes, m.blen);
      if (v == NULL) {
        reply_err(c, from, reqid, "out of memory on the scheduler");
        return 0;
      }
      if (fut && key_hold(c, m.bytes, m.blen)) {
        dl_free(v);
        reply_err(c, from, reqid, "the future's result is gone (released "
                  "or forgotten by the scheduler)");
        return 0;
      }
      if (p->vfut) key_drop(c, p->val, p->vlen);
      dl_free(p->val);
      p->val = v;
      p->vlen = m.blen;
      p->has = 1;
      p->vfut = fut;
      reply(c, from, reqid, DL_CO_OK, "", 0);
      serve(c, p);
      return 0;
    }
    case DL_CO_VAR_DEL:
      if (p->vfut) key_drop(c, p->val, p->vlen);
      p->vfut = 0;
      dl_free(p->val);
      p->val = NULL;
      p->vlen = 0;
      p->has = 0;
      reply(c, from, reqid, DL_CO_OK, "", 0);
      return 0;
    case DL_CO_Q_GET_ALL:
      if (p->len) q_pop_reply(c, p, from, reqid, p->len);
      else reply(c, from, reqid, DL_CO_OK, "", 0);
      serve(c, p); /* room for waiting puts */
      return 0;
    case DL_CO_Q_SIZE: {
      unsigned char x[8];
      int i;
      for (i = 0; i < 8; i++)
        x[i] = (unsigned char)((uint64_t)p->len >> (8 * i));
      reply(c, from, reqid, DL_CO_OK, (const char *)x, 8);
      return 0;
    }
    case DL_CO_EV_SET:
      p->set = 1;
      reply(c, from, reqid, DL_CO_OK, "", 0);
      serve(c, p);
      return 0;
    case DL_CO_EV_CLEAR:
      p->set = 0;
      reply(c, from, reqid, DL_CO_OK, "", 0);
      return 0;
    case DL_CO_EV_IS_SET:
      reply(c, from, reqid, DL_CO_OK, p->set ? "\1" : "\0", 1);
      return 0;
    case DL_CO_SEM_REL: {
      int i = sem_held(p, from, lid);
      if (i < 0) {
        reply_err(c, from, reqid, "released more times than acquired "
                  "(this lease is not held)");
        return 0;
      }
      sem_drop(p, i);
      reply(c, from, reqid, DL_CO_OK, "", 0);
      serve(c, p);
      return 0;
    }
    default: break;
  }
  /* A request that may wait: VAR_GET, Q_PUT, Q_PUSH, Q_GET, EV_WAIT,
     SEM_ACQ. */
  if ((op == DL_CO_Q_PUT || op == DL_CO_Q_PUSH) && !p->sized) {
    p->maxsize = m.n; /* a queue takes its maxsize from its first put, */
    p->sized = 1;   /* for good: a PUSH relies on it */
  }
  if (op == DL_CO_SEM_ACQ) {
    if (p->max == 0) p->max = m.n ? m.n : 1;
    if (sem_held(p, from, lid) >= 0) {
      reply_err(c, from, reqid, "this lease is held already");
      return 0;
    }
  }
  w = dl_realloc(NULL, sizeof *w);
  if (w == NULL) {
    reply_err(c, from, reqid, "out of memory on the scheduler");
    return 0;
  }
  memset(w, 0, sizeof *w);
  w->from = from;
  if (m.tlen) { /* without it (out of memory) the dashboard names none */
    w->task = dup_bytes(m.task, m.tlen);
    w->tlen = w->task ? m.tlen : 0;
  }
  w->reqid = reqid;
  w->op = (int)op;
  w->n = m.n;
  w->lease = lid;
  w->deadline = m.timeout_ms ? now + (double)(m.timeout_ms - 1) * 1e-3
                             : -1;
  if (op == DL_CO_Q_PUT || op == DL_CO_Q_PUSH) {
    w->bytes = dup_bytes(m.bytes, m.blen);
    w->blen = m.blen;
    if (w->bytes == NULL) {
      dl_free(w->task);
      dl_free(w);
      reply_err(c, from, reqid, "out of memory on the scheduler");
      return 0;
    }
    if ((lid & DL_CO_FUTURE_KEY) && key_hold(c, m.bytes, m.blen)) {
      dl_free(w->bytes);
      dl_free(w->task);
      dl_free(w);
      reply_err(c, from, reqid, "the future's result is gone (released "
                "or forgotten by the scheduler)");
      return 0;
    }
    w->fut = (lid & DL_CO_FUTURE_KEY) != 0;
  }
  if (p->wt) p->wt->next = w;
  else p->wh = w;
  p->wt = w;
  p->nwait++;
  serve(c, p);
  if (m.timeout_ms == 1) dl_coord_tick(c, now); /* timeout 0: answer now */
  return 0;
}

/* Drop the waiters of p for which drop(w) holds, answering them with
   TIMEOUT when answer is set. */
static void drop_waiters(dl_coord *c, prim *p, double now, int from,
                         int answer) {
  waiter *w = p->wh, *prev = NULL;
  while (w) {
    waiter *next = w->next;
    int due = answer ? (w->deadline >= 0 && w->deadline <= now)
                     : w->from == from;
    if (due) {
      if (answer) reply(c, w->from, w->reqid, DL_CO_TIMEOUT, "", 0);
      unlink_waiter(c, p, prev, w);
    } else {
      prev = w;
    }
    w = next;
  }
}

void dl_coord_tick(dl_coord *c, double now) {
  size_t i = 0;
  prim *p;
  while ((p = dl_map_next(&c->prims, &i)) != NULL)
    if (p->nwait) drop_waiters(c, p, now, 0, 1);
}

void dl_coord_gone(dl_coord *c, int from, double now) {
  size_t i = 0;
  prim *p;
  (void)now;
  while ((p = dl_map_next(&c->prims, &i)) != NULL) {
    int k, freed = 0;
    if (p->nwait) drop_waiters(c, p, now, from, 0);
    for (k = 0; k < p->nleases;)
      if (p->leases[k].from == from) {
        sem_drop(p, k);
        freed = 1;
      } else {
        k++;
      }
    if (freed) serve(c, p);
  }
}

static void info_of(const prim *p, dl_coord_info *o) {
  size_t n = strlen(p->key + 1);
  o->kind = p->kind == K_VAR ? "variable" : p->kind == K_QUEUE ? "queue"
            : p->kind == K_EVENT ? "event" : "semaphore";
  o->name = p->key + 1;
  if (p->kind == K_SEM && n + 1 < p->klen - 1) { /* "lock\0name" */
    o->kind = "lock";
    o->name = p->key + 2 + n;
  }
  o->holders = p->kind == K_SEM ? p->nleases
               : p->kind == K_QUEUE ? (int)p->len
               : p->kind == K_EVENT ? p->set : p->has;
  o->waiters = p->nwait;
}

void dl_coord_walk(dl_coord *c, dl_coord_walk_fn fn, void *ud) {
  size_t i = 0;
  prim *p;
  while ((p = dl_map_next(&c->prims, &i)) != NULL) {
    dl_coord_info o;
    int n = p->nwait + p->nleases, k = 0, j;
    dl_coord_party *who = n ? dl_realloc(NULL, sizeof *who * (size_t)n)
                            : NULL;
    const waiter *w;
    info_of(p, &o);
    if (who) {
      for (w = p->wh; w; w = w->next, k++) {
        who[k].from = w->from;
        who[k].holds = 0;
        who[k].op = w->op;
        who[k].lease = w->lease;
        who[k].task = w->task ? w->task : "";
        who[k].tlen = w->tlen;
      }
      for (j = 0; j < p->nleases; j++, k++) {
        who[k].from = p->leases[j].from;
        who[k].holds = 1;
        who[k].op = DL_CO_SEM_ACQ;
        who[k].lease = p->leases[j].id;
        who[k].task = p->leases[j].task ? p->leases[j].task : "";
        who[k].tlen = p->leases[j].tlen;
      }
    }
    fn(ud, &o, who, who ? n : 0);
    dl_free(who);
  }
}

int dl_coord_list(dl_coord *c, dl_coord_info *out, int max) {
  size_t i = 0;
  prim *p;
  int n = 0;
  while ((p = dl_map_next(&c->prims, &i)) != NULL) {
    if (n < max) {
      dl_coord_info *o = &out[n];
      o->kind = p->kind == K_VAR ? "variable" : p->kind == K_QUEUE ? "queue"
                : p->kind == K_EVENT ? "event" : "semaphore";
      o->name = p->key + 1;
      o->holders = p->kind == K_SEM ? p->nleases
                   : p->kind == K_QUEUE ? (int)p->len
                   : p->kind == K_EVENT ? p->set : p->has;
      o->waiters = p->nwait;
    }
    n++;
  }
  return n;
}

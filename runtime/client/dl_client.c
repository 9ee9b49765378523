/*
** dl_client.c -- the client's table of futures (see dl_client.h).
*/
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include <pthread.h>

#include "dl_client.h"
#include "dl_slab.h"
#include "dl_wire.h"

/*
** Records of every client of the process come from one slab (dl_slab.h:
** huge pages, no malloc header; a map of 10,000 futures faulted in 200
** fresh 4 KiB pages for its records).  A record may outlive its client
** (detached), so the slab is the process's, behind a lock that only the
** client threads take, once per record made or freed.
*/
static dl_slab recs;
static pthread_mutex_t recs_mu = PTHREAD_MUTEX_INITIALIZER;

/* The counter of a key made from a stem (DL_FUT_STEM): 4 bytes. */
#define CTR_LEN sizeof(uint32_t)

/* The bytes of f's record: the key and a NUL, or the counter. */
static size_t rec_size(const dl_cfut *f) {
  return offsetof(dl_cfut, key) +
         (f->flags & DL_FUT_STEM ? CTR_LEN : f->klen + 1);
}

static dl_cfut *rec_alloc(size_t n) {
  dl_cfut *f;
  pthread_mutex_lock(&recs_mu);
  f = dl_slab_alloc(&recs, n);
  pthread_mutex_unlock(&recs_mu);
  return f;
}

static void rec_free(dl_cfut *f) {
  pthread_mutex_lock(&recs_mu);
  dl_slab_free(&recs, f, rec_size(f));
  pthread_mutex_unlock(&recs_mu);
}

/*
** The stems of the keys that records keep as a counter (DL_FUT_STEM): the
** process's, as records outlive their client, each kept for the process's
** life (a session makes one per function that names its keys).  Stem i
** is stems[i / STEM_CHUNK][i % STEM_CHUNK]; chunks are made under recs_mu
** and never move, and a stem is written before its number is handed out,
** so readers take no lock.  stem_ids finds a stem's number + 1.
*/
#define STEM_CHUNK 256
typedef struct stem {
  char *p;
  size_t len;
} stem;
static stem *stems[DL_CLIENT_STEMS / STEM_CHUNK];
static uint32_t nstems;  /* under recs_mu */
static dl_map stem_ids;  /* under recs_mu */

/* The number + 1 of the stem of len bytes at p, made if new; 0 when it
   cannot be kept (too long, too many, out of memory). */
static uint32_t stem_intern(const char *p, size_t len) {
  uint32_t id = 0;
  stem *chunk, *e;
  if (len == 0 || len > DL_CLIENT_STEM_MAX) return 0;
  pthread_mutex_lock(&recs_mu);
  id = (uint32_t)(uintptr_t)dl_map_get(&stem_ids, p, len);
  if (id || nstems == DL_CLIENT_STEMS) goto out;
  chunk = stems[nstems / STEM_CHUNK];
  if (chunk == NULL) {
    chunk = dl_realloc(NULL, STEM_CHUNK * sizeof *chunk);
    if (chunk == NULL) goto out;
    stems[nstems / STEM_CHUNK] = chunk;
  }
  e = &chunk[nstems % STEM_CHUNK];
  if ((e->p = dl_realloc(NULL, dl_stem_size(len))) == NULL)
    goto out;
  memcpy(e->p, p, len);
  e->p[len] = '\0';
  e->len = len;
  if (dl_map_put(&stem_ids, e->p, len, (void *)(uintptr_t)(nstems + 1))) {
    dl_free(e->p);
    goto out;
  }
  id = ++nstems;
out:
  pthread_mutex_unlock(&recs_mu);
  return id;
}

const char *dl_cfut_key(const dl_cfut *f, char buf[DL_CFUT_KEYBUF],
                        size_t *len) {
  const stem *e;
  if (!(f->flags & DL_FUT_STEM)) {
    *len = f->klen;
    return f->key;
  }
  e = &stems[f->klen / STEM_CHUNK][f->klen % STEM_CHUNK];
  *len = dl_stemkey(buf, e->p, e->len, f->key);
  return buf;
}

/* The map's reader of a record's key. */
static const char *rec_key(const void *ud, const void *val,
                           char buf[DL_IMAP_KEYBUF], size_t *len) {
  (void)ud;
  return dl_cfut_key(val, buf, len);
}

/* The map's compare: a stem's key without writing it out. */
static int rec_eq(const void *ud, const void *val, const char *key,
                  size_t klen) {
  const dl_cfut *f = val;
  const stem *e;
  (void)ud;
  if (!(f->flags & DL_FUT_STEM))
    return f->klen == klen && memcmp(f->key, key, klen) == 0;
  e = &stems[f->klen / STEM_CHUNK][f->klen % STEM_CHUNK];
  return dl_stemkey_eq(key, klen, e->p, e->len, f->key);
}

_Static_assert(DL_CFUT_KEYBUF <= DL_IMAP_KEYBUF &&
                   DL_CLIENT_STEM_MAX + DL_STEM_DIGITS < DL_CFUT_KEYBUF,
               "a record's key fits the readers' buffers");

/* The counter of key when it is c's stem and 8 lower-case hex digits (so
   that dl_cfut_key gives back the same bytes): 1 and *n, else 0. */
static int stem_counter(const dl_client *c, const char *key, size_t klen,
                        uint32_t *n) {
  size_t at = c->key.len;
  if (c->stem == 0 || klen != at + DL_STEM_DIGITS ||
      memcmp(key, c->key.p, at) != 0)
    return 0;
  return dl_unhex8(key + at, n);
}

/*
** The process's clients by number: a record names its client with 14
** bits (dl_cfut.client), not a pointer.  Numbers are given under recs_mu
** and taken back by dl_client_free, once no record names the client (it
** detached them all); an entry is written before any record names it, so
** readers take no lock.  [0] stays NULL: a detached record.
*/
static dl_client *clients[DL_CLIENT_MAX + 1];
static uint32_t client_hint = 1;

/* A number for c (0 when every one is taken). */
static uint32_t client_num(dl_client *c) {
  uint32_t i, n = 0;
  pthread_mutex_lock(&recs_mu);
  for (i = 0; i < DL_CLIENT_MAX && n == 0; i++) {
    uint32_t k = (client_hint - 1 + i) % DL_CLIENT_MAX + 1;
    if (clients[k] == NULL) n = k;
  }
  if (n) {
    clients[n] = c;
    client_hint = n % DL_CLIENT_MAX + 1;
  }
  pthread_mutex_unlock(&recs_mu);
  return n;
}

static void client_num_free(dl_client *c) {
  if (c->num == 0) return;
  pthread_mutex_lock(&recs_mu);
  clients[c->num] = NULL;
  pthread_mutex_unlock(&recs_mu);
  c->num = 0;
}

dl_client *dl_cfut_client(const dl_cfut *f) { return clients[f->client]; }

static void futs_init(dl_client *c) {
  dl_imap_init(&c->futs, offsetof(dl_cfut, key), offsetof(dl_cfut, klen));
  dl_imap_set_keyfn(&c->futs, rec_key, rec_eq, NULL);
}

void dl_client_init(dl_client *c) {
  memset(c, 0, sizeof *c);
  futs_init(c);
  dl_map_init(&c->fns_sent);
  c->num = client_num(c);
}

void dl_client_transport(dl_client *c, dl_client_send_fn send, void *ud,
                         unsigned flags) {
  c->send = send;
  c->ud = ud;
  c->flags = flags;
}

int dl_client_flush(dl_client *c, int urgent) {
  int rc = 0;
  if (c->out.len && c->send) rc = c->send(c->ud, c->out.p, c->out.len, urgent);
  c->out.len = 0;
  return rc;
}

/* A submit was queued: hand a full batch over. */
static void flush_if_full(dl_client *c) {
  if (c->out.len >= DL_CLIENT_FLUSH_AT) dl_client_flush(c, 0);
}

/*
** The head of small values: the first DL_CFUT_HEAD bytes of the first
** value of that length or more that a record of the process kept (the
** codec's header, the same in every value).  A value that starts with it
** and has at most 8 bytes more keeps only those in its record
** (DL_FUT_HEAD): an integer's encoding is 11 to 13 bytes.  Set once, under
** recs_mu; head_set says it is (records outlive their client: the head
** is the process's).
*/
static char head[DL_CFUT_HEAD];
static atomic_int head_set;

/* Does the value of n bytes at p start with the head (set now if none)? */
static int has_head(const char *p, size_t n) {
  if (n < DL_CFUT_HEAD) return 0;
  if (!atomic_load(&head_set)) {
    pthread_mutex_lock(&recs_mu);
    if (!atomic_load(&head_set)) {
      memcpy(head, p, DL_CFUT_HEAD);
      atomic_store(&head_set, 1);
    }
    pthread_mutex_unlock(&recs_mu);
  }
  return memcmp(p, head, DL_CFUT_HEAD) == 0;
}

/* A value kept in an allocation of its own: its length, then its bytes
   (the record has room for a small one's length only). */
#define BIG_AT sizeof(uint32_t)

const char *dl_cfut_data(const dl_cfut *f, char buf[DL_CFUT_BUF]) {
  if (!(f->flags & DL_FUT_SMALL)) return f->data.p ? f->data.p + BIG_AT : NULL;
  if (!(f->flags & DL_FUT_HEAD)) return f->data.small;
  memcpy(buf, head, DL_CFUT_HEAD);
  memcpy(buf + DL_CFUT_HEAD, f->data.small, f->slen - DL_CFUT_HEAD);
  return buf;
}

size_t dl_cfut_len(const dl_cfut *f) {
  uint32_t n;
  if (f->flags & DL_FUT_SMALL) return f->slen;
  if (f->data.p == NULL) return 0;
  memcpy(&n, f->data.p, sizeof n);
  return n;
}

/* Drop f's bytes. */
static void clear_data(dl_cfut *f) {
  if (!(f->flags & DL_FUT_SMALL)) dl_free(f->data.p);
  f->flags &= (uint8_t) ~(DL_FUT_SMALL | DL_FUT_HEAD);
  f->data.p = NULL;
  f->slen = 0;
}

/* f's bytes become a copy of the n at p: in the record when they fit (a
   million small results then cost no allocation each).  0, or DL_ENOMEM
   with f unchanged. */
static int set_data(dl_cfut *f, const char *p, size_t n) {
  char *d = NULL;
  int headed = 0;
  if (n > UINT32_MAX - BIG_AT) return DL_ENOMEM;
  if (n > sizeof f->data.small) {
    headed = n - DL_CFUT_HEAD <= sizeof f->data.small && has_head(p, n);
    if (!headed) {
      uint32_t n32 = (uint32_t)n;
      d = dl_realloc(NULL, BIG_AT + n);
      if (d == NULL) return DL_ENOMEM;
      memcpy(d, &n32, sizeof n32);
      memcpy(d + BIG_AT, p, n);
    }
  }
  clear_data(f);
  if (d) {
    f->data.p = d;
  } else if (headed) {
    memcpy(f->data.small, p + DL_CFUT_HEAD, n - DL_CFUT_HEAD);
    f->flags |= DL_FUT_SMALL | DL_FUT_HEAD;
    f->slen = (uint8_t)n;
  } else {
    if (n) memcpy(f->data.small, p, n);
    f->flags |= DL_FUT_SMALL;
    f->slen = (uint8_t)n;
  }
  return 0;
}

/* Free f if no handle points at it and no list holds it. */
static void maybe_free(dl_cfut *f) {
  if (f->holds == 0) {
    clear_data(f);
    rec_free(f);
  }
}

/* Detach every record; free what no handle holds. */
static void detach_all(dl_client *c, int send) {
  size_t i = 0, k;
  dl_cfut *f;
  while ((f = dl_imap_next(&c->futs, &i)) != NULL) {
    uint32_t r;
    if (send) {
      char buf[DL_CFUT_KEYBUF];
      size_t klen;
      const char *key = dl_cfut_key(f, buf, &klen);
      for (r = 0; r < f->refs; r++)
        dl_put_key_msg(&c->out, DL_M_RELEASE, key, klen);
    }
    f->client = 0;
    maybe_free(f);
  }
  dl_imap_free(&c->futs);
  futs_init(c);
  for (k = 0; k < c->nfired; k++) dl_client_drop(c->fired[k]);
  dl_free(c->fired);
  c->fired = NULL;
  c->nfired = c->capfired = 0;
}

int dl_client_close(dl_client *c, int send) {
  int rc = 0;
  send = send && c->send != NULL;
  detach_all(c, send);
  if (send) rc = dl_client_flush(c, 1);
  return rc;
}

void dl_client_free(dl_client *c) {
  size_t i = 0;
  void *k;
  detach_all(c, 0);
  while ((k = dl_map_next(&c->fns_sent, &i)) != NULL) dl_free(k);
  dl_map_free(&c->fns_sent);
  dl_map_init(&c->fns_sent);
  dl_buf_free(&c->out);
  dl_buf_free(&c->opts);
  dl_buf_free(&c->place);
  dl_buf_free(&c->fns);
  dl_buf_free(&c->deps);
  dl_buf_free(&c->spec);
  dl_buf_free(&c->tail);
  dl_buf_free(&c->key);
  c->stem = 0;
  client_num_free(c);
  c->nfns = c->ndeps = 0;
}

dl_cfut *dl_client_ref(dl_client *c, const char *key, size_t klen) {
  dl_cfut *f = dl_imap_get(&c->futs, key, klen);
  uint32_t n;
  if (f) {
    f->refs++;
    f->holds++;
    return f;
  }
  if (klen > UINT32_MAX || c->num == 0) return NULL;
  if (stem_counter(c, key, klen, &n)) {
    f = rec_alloc(offsetof(dl_cfut, key) + CTR_LEN);
    if (f == NULL) return NULL;
    memset(f, 0, offsetof(dl_cfut, key));
    memcpy(f->key, &n, sizeof n);
    f->klen = c->stem - 1;
    f->flags = DL_FUT_STEM;
  } else {
    f = rec_alloc(offsetof(dl_cfut, key) + klen + 1);
    if (f == NULL) return NULL;
    memset(f, 0, offsetof(dl_cfut, key));
    memcpy(f->key, key, klen);
    f->key[klen] = '\0';
    f->klen = (uint32_t)klen;
  }
  f->client = c->num;
  f->refs = f->holds = 1;
  if (dl_imap_put_key(&c->futs, f, key, klen)) {
    rec_free(f);
    return NULL;
  }
  return f;
}

int dl_client_reserve(dl_client *c, size_t n) {
  return dl_imap_reserve(&c->futs, n);
}

void dl_client_ref_again(dl_cfut *f) {
  f->refs++;
  f->holds++;
}

dl_cfut *dl_client_get(dl_client *c, const char *key, size_t klen) {
  return dl_imap_get(&c->futs, key, klen);
}

void dl_client_unref(dl_cfut *f) {
  dl_client *c = dl_cfut_client(f);
  char buf[DL_CFUT_KEYBUF];
  const char *key;
  size_t klen;
  if (f->refs == 0) return;
  f->refs--;
  if (c == NULL) return;
  key = dl_cfut_key(f, buf, &klen);
  if (f->refs == 0) { /* the last handle takes the record out */
    dl_imap_del(&c->futs, key, klen);
    f->client = 0;
  }
  /* One RELEASE per handle, as the scheduler counted one per handle. */
  if (c->send == NULL) return;
  dl_put_key_msg(&c->out, DL_M_RELEASE, key, klen);
  if (c->flags & DL_CLIENT_EAGER) dl_client_flush(c, 0);
}

void dl_client_drop(dl_cfut *f) {
  if (f->holds > 0) f->holds--;
  maybe_free(f);
}

/* f is done: if callbacks wait, put it (with a hold) in the fired list. */
static int fire(dl_client *c, dl_cfut *f) {
  if (!(f->flags & DL_FUT_CALLBACKS)) return 0;
  if (c->nfired == c->capfired) {
    size_t nc = c->capfired ? 2 * c->capfired : 16;
    dl_cfut **n = dl_realloc(c->fired, nc * sizeof *n);
    if (n == NULL) return DL_ENOMEM;
    c->fired = n;
    c->capfired = nc;
  }
  f->flags &= (uint8_t)~DL_FUT_CALLBACKS;
  f->holds++;
  c->fired[c->nfired++] = f;
  return 0;
}

/* The record of key that news may change, or NULL. */
static dl_cfut *newsworthy(dl_client *c, const char *key, size_t klen) {
  dl_cfut *f = dl_imap_get(&c->futs, key, klen);
  if (f == NULL || f->status == DL_FUT_FINISHED ||
      f->status == DL_FUT_CANCELLED)
    return NULL;
  return f;
}

int dl_client_done(dl_client *c, const char *key, size_t klen,
                   const char *bytes, size_t blen) {
  dl_cfut *f = newsworthy(c, key, klen);
  if (f == NULL) return 0;
  if (blen) {
    if (set_data(f, bytes, blen)) return DL_ENOMEM;
  } else {
    clear_data(f);
  }
  f->status = DL_FUT_FINISHED;
  f->flags = (uint8_t)((f->flags & ~DL_FUT_VALUE) | (blen ? DL_FUT_VALUE : 0));
  return fire(c, f);
}

int dl_client_err(dl_client *c, const char *key, size_t klen, int kind,
                  const char *rec, size_t rlen) {
  dl_cfut *f = newsworthy(c, key, klen);
  if (f == NULL) return 0;
  if (set_data(f, rec, rlen)) return DL_ENOMEM;
  f->status = kind == DL_ERR_CANCELLED ? DL_FUT_CANCELLED : DL_FUT_ERROR;
  f->kind = (uint8_t)kind;
  f->flags &= (uint8_t)~DL_FUT_VALUE;
  return fire(c, f);
}

void dl_client_cancel(dl_cfut *f) {
  clear_data(f);
  f->status = DL_FUT_CANCELLED;
  f->kind = DL_ERR_CANCELLED;
  f->flags &= (uint8_t)~DL_FUT_VALUE;
  if (f->client) fire(dl_cfut_client(f), f);
}

void dl_client_repend(dl_cfut *f) {
  if (f->status != DL_FUT_FINISHED) return;
  clear_data(f);
  f->status = DL_FUT_PENDING;
  f->flags &= (uint8_t)~DL_FUT_VALUE;
}

dl_cfut **dl_client_take_fired(dl_client *c, size_t *n) {
  dl_cfut **list = c->fired;
  *n = c->nfired;
  if (c->nfired == 0) return NULL;
  c->fired = NULL;
  c->nfired = c->capfired = 0;
  return list;
}

/* ------------------------------------------------------ outgoing work */

void dl_client_task_opts(dl_client *c, const dl_task_opts *o) {
  size_t i;
  c->opts.len = c->place.len = 0;
  dl_put_submit_opts(&c->opts, o->priority, o->order, o->retries,
                     o->timeout_ms);
  dl_put_submit_place(&c->place, (uint64_t)o->nworkers);
  for (i = 0; i < o->nworkers; i++) dl_put_id(&c->place, o->workers[i]);
  dl_put_submit_allow(&c->place, o->allow_other);
}

void dl_client_task_reset(dl_client *c) {
  c->fns.len = c->deps.len = 0;
  c->nfns = c->ndeps = 0;
}

int dl_client_task_fn(dl_client *c, const unsigned char hash[16],
                      const char *code, size_t len) {
  uint64_t at;
  return dl_client_task_fn_at(c, hash, code, len, &at);
}

int dl_client_task_fn_at(dl_client *c, const unsigned char hash[16],
                         const char *code, size_t len, uint64_t *at) {
  uint64_t i;
  char *k;
  for (i = 0; i < c->nfns; i++)
    if (memcmp(c->fns.p + 16 * i, hash, 16) == 0) {
      *at = i;
      return 1;
    }
  if (dl_buf_put(&c->fns, hash, 16)) return 0;
  *at = c->nfns++;
  if (c->flags & DL_CLIENT_EAGER) { /* the scheduler may have dropped it */
    dl_put_func_msg(&c->out, DL_M_CFUNC, hash, code, len);
    return 1;
  }
  if (dl_map_get(&c->fns_sent, (const char *)hash, 16)) return 1;
  k = dl_realloc(NULL, 16);
  if (k == NULL) return 0;
  memcpy(k, hash, 16);
  if (dl_map_put(&c->fns_sent, k, 16, k)) {
    dl_free(k);
    return 0;
  }
  dl_put_func_msg(&c->out, DL_M_CFUNC, hash, code, len);
  return 1;
}

void dl_client_task_dep(dl_client *c, const char *key, size_t klen) {
  dl_put_key(&c->deps, key, klen);
  c->ndeps++;
}

void dl_client_task_submit(dl_client *c, const char *key, size_t klen,
                           const char *payload, size_t plen) {
  dl_put_submit(&c->out, key, klen, payload, plen, NULL, 0);
  dl_put_submit_spec(&c->out, &c->opts, c->nfns, &c->fns, c->ndeps, &c->deps,
                     &c->place);
  flush_if_full(c);
}

void dl_client_task_share(dl_client *c) {
  c->spec.len = 0;
  dl_put_submit_spec(&c->spec, &c->opts, c->nfns, &c->fns, c->ndeps,
                     &c->deps, &c->place);
}

void dl_client_submit_row(dl_client *c, const char *key, size_t klen,
                          const char *payload, size_t plen) {
  dl_put_submit(&c->out, key, klen, payload, plen, c->spec.p, c->spec.len);
  flush_if_full(c);
}

void dl_client_task_share_tail(dl_client *c) {
  dl_buf empty;
  dl_buf_init(&empty);
  c->tail.len = 0;
  dl_put_submit_spec(&c->tail, &empty, c->nfns, &c->fns, c->ndeps, &c->deps,
                     &c->place);
}

void dl_client_submit_tail(dl_client *c, const char *key, size_t klen,
                           const char *payload, size_t plen) {
  dl_put_submit(&c->out, key, klen, payload, plen, c->opts.p, c->opts.len);
  dl_buf_put(&c->out, c->tail.p, c->tail.len);
  flush_if_full(c);
}

int dl_client_key_stem(dl_client *c, const char *stem, size_t len) {
  if (c->stem && len == c->key.len && memcmp(c->key.p, stem, len) == 0)
    return 0; /* the same stem again (a submit's) */
  c->key.len = 0;
  c->stem = 0;
  if (dl_buf_put(&c->key, stem, len)) return DL_ENOMEM;
  c->stem = stem_intern(stem, len);
  return 0;
}

const char *dl_client_key(dl_client *c, uint64_t n, size_t *klen) {
  static const char digits[] = "0123456789abcdef";
  char hex[2 * sizeof n];
  size_t stem = c->key.len;
  int i = (int)sizeof hex;
  do {
    hex[--i] = digits[n & 15];
    n >>= 4;
  } while (n || i > (int)sizeof hex - 8); /* 8 digits at least */
  if (dl_buf_put(&c->key, hex + i, sizeof hex - (size_t)i)) return NULL;
  c->key.len = stem; /* the bytes stay after the stem until the next key */
  *klen = stem + sizeof hex - (size_t)i;
  return c->key.p;
}

void dl_client_cancel_key(dl_client *c, const char *key, size_t klen) {
  dl_put_key_msg(&c->out, DL_M_CCANCEL, key, klen);
  dl_client_flush(c, 1);
}

void dl_client_gather(dl_client *c, uint64_t reqid, uint64_t nkeys) {
  /* With DLUA_SHARE_MEMORY=0 nothing of a worker's can be read: bytes at
     once, and no memfd made for us; where reading a worker was refused,
     memfds at once. */
  int how = !(c->flags & DL_CLIENT_SHARED) || !dl_mem_sharing() ? 0
            : c->read_refused ? 2 : 1;
  dl_put_gather(&c->out, how, reqid, nkeys);
}

void dl_client_gather_key(dl_client *c, const char *key, size_t klen) {
  dl_put_key(&c->out, key, klen);
}

void dl_client_scatter(dl_client *c, const char *key, size_t klen,
                       const char *bytes, size_t blen,
                       const uint64_t *workers, size_t nworkers) {
  size_t i;
  dl_put_scatter(&c->out, key, klen, bytes, blen, (uint64_t)nworkers);
  for (i = 0; i < nworkers; i++) dl_put_id(&c->out, workers[i]);
}

void dl_client_coord(dl_client *c, const dl_msg_coord *m) {
  dl_put_coord(&c->out, m);
  dl_client_flush(c, 1);
}

/* ---------------------------------------------------------- the news */

/* A DATA answer: fill news, mapping or copying a shared block; 1 if news
   is ready, 0 if the block was asked for again (no news yet): as a memfd
   where it could not be read by its address, else as bytes. */
static int data_news(dl_client *c, const dl_msg_data *m, dl_cnews *news) {
  memset(news, 0, sizeof *news);
  news->type = DL_CNEWS_DATA;
  news->reqid = m->reqid;
  news->key = m->key;
  news->klen = m->klen;
  news->found = m->found != 0;
  news->bytes = m->bytes;
  news->blen = m->found ? m->blen : 0;
  if (m->found == 2 && (!(c->flags & DL_CLIENT_SHARED) || !dl_mem_sharing())) {
    /* A block by reference that was never asked for (a remote client's
       scheduler, or sharing turned off): the answer is malformed, and
       mapping a pid named by another machine would read a stranger's
       memory. */
    news->bad = "the scheduler answered with a shared block that was not "
                "asked for";
    return 1;
  }
  if (m->found == 2) { /* a worker's block: map it, or ask again */
    dl_shared_at sa;
    const char *mapped = NULL;
    int by_addr = 0;
    if (dl_shared_at_read(m->bytes, m->blen, &sa) == 0) {
      errno = 0;
      mapped = dl_shared_at_map(&sa);
      by_addr = sa.ref.fd == DL_MEM_NOFD;
      if (mapped == NULL && by_addr && errno == EPERM) c->read_refused = 1;
    }
    if (mapped == NULL) {
      /* A GATHERF's answer names a memfd: this cannot loop. */
      dl_put_gather(&c->out, by_addr ? 2 : 0, m->reqid, 1);
      dl_put_key(&c->out, m->key, m->klen);
      return 0;
    }
    news->mapped = (char *)mapped;
    news->bytes = mapped + sa.off;
    news->blen = (size_t)sa.len;
  }
  return 1;
}

int dl_client_next_tasks(dl_client *c, dl_rd *r, int *count) {
  while (dl_rd_left(r)) {
    const char *at = r->p;
    unsigned type = 0;
    if (dl_wire_type(r, &type)) goto stop;
    if (type == DL_M_KEY_DONE) {
      dl_msg_key_done m;
      if (dl_get_key_done(r, &m)) goto stop;
      if (dl_client_done(c, m.key, m.klen, m.inl, m.ilen)) {
        r->p = at;
        return DL_ENOMEM;
      }
    } else if (type == DL_M_KEY_ERR) {
      dl_msg_err m;
      if (dl_get_err_msg(r, &m)) goto stop;
      if (dl_client_err(c, m.key, m.klen, (int)m.kind, m.rec, m.rlen)) {
        r->p = at;
        return DL_ENOMEM;
      }
    } else if (type == DL_M_FN_GONE) {
      dl_msg_hash m;
      if (dl_get_hash_msg(r, &m)) goto stop;
      dl_free(dl_map_del(&c->fns_sent, m.hash, 16));
      dl_put_hash_msg(&c->out, DL_M_FN_FORGET, m.hash);
      continue;
    } else {
      goto stop;
    }
    (*count)++;
    continue;
  stop: /* news for the caller, or a bad message: left for dl_client_next */
    r->p = at;
    return 0;
  }
  return 0;
}

int dl_client_next(dl_client *c, dl_rd *r, dl_cnews *news, int *count) {
  while (dl_rd_left(r)) {
    unsigned type = 0;
    if (dl_wire_type(r, &type)) break;
    if (type == DL_M_KEY_DONE) {
      dl_msg_key_done m;
      if (dl_get_key_done(r, &m)) break;
      if (dl_client_done(c, m.key, m.klen, m.inl, m.ilen)) return DL_ENOMEM;
      (*count)++;
    } else if (type == DL_M_KEY_ERR) {
      dl_msg_err m;
      if (dl_get_err_msg(r, &m)) break;
      if (dl_client_err(c, m.key, m.klen, (int)m.kind, m.rec, m.rlen))
        return DL_ENOMEM;
      (*count)++;
    } else if (type == DL_M_GATHER_REPLY) {
      dl_msg_data m;
      if (dl_get_data(r, &m)) break;
      if (data_news(c, &m, news)) {
        (*count)++;
        return 1;
      }
    } else if (type == DL_M_COORD_REPLY) {
      dl_msg_coord_reply m;
      if (dl_get_coord_reply(r, &m)) break;
      memset(news, 0, sizeof *news);
      news->type = DL_CNEWS_COORD;
      news->reqid = m.reqid;
      news->status = m.status;
      news->bytes = m.bytes;
      news->blen = m.blen;
      (*count)++;
      return 1;
    } else if (type == DL_M_FN_GONE) { /* no task needs it: forget it */
      dl_msg_hash m;
      if (dl_get_hash_msg(r, &m)) break;
      dl_free(dl_map_del(&c->fns_sent, m.hash, 16));
      dl_put_hash_msg(&c->out, DL_M_FN_FORGET, m.hash);
    } else {
      break;
    }
  }
  r->p = r->end; /* what follows a bad message is dropped */
  return 0;
}

/*
** dl_wire.h -- the protocol: every message's layout and its put/get pair.
**
** This header is the specification of what the client, the scheduler, the
** workers and their peers say to each other.  Nothing outside runtime/wire/
** writes or parses a message by hand: writers call dl_put_<msg>, readers
** call dl_wire_type and then dl_get_<msg>.  Pure C: no Lua, no libuv.
**
** Frames.  A frame is a 4-byte little-endian length, then that many bytes
** of messages back to back (dl_conn.h moves frames).  A connection collects
** the messages of one loop iteration and sends them as one frame.
**
** Messages.  A type byte (DL_M_*), then the fields below in order.  Field
** kinds: uv = unsigned LEB128 varint; sv = signed (zigzag) varint; str =
** uv length then that many bytes; h16 = 16 raw bytes (a function's hash);
** n{...} = uv count, then that many items.
**
** Speed.  The put/get functions are static inline and copy nothing but the
** bytes they write: a get borrows its strings from the frame (valid while
** the frame is), lists come back as a reader over their items (dl_rd) for
** the caller to walk with dl_get_key / dl_get_id, after the whole message
** was checked.  No allocation per message.
**
** Out of memory.  Puts return nothing: dl_buf's writers abort on
** allocation failure (see dl_buf.h).  Gets return 0 or DL_EPROTO (a
** malformed or truncated message; the reader's position is then
** unspecified and the rest of the frame must be dropped).
**
** Adding a message: give it the next free number in its direction's block,
** write its fields and its who/when in the comment, add a struct, a put and
** a get below, and a case in tests/c/wire/test_wire.c.
*/
#ifndef dl_wire_h
#define dl_wire_h

#include <stdint.h>
#include <string.h>

#include "dl_buf.h"
#include "dl_mem.h"

/* Largest frame accepted from a peer (bytes). */
#define DL_MAX_FRAME ((size_t)0xFFFFFFF0u)

/* Message types, by direction; the fields are in the put/get pairs. */
enum {
  /* worker -> scheduler (the worker's link on fd 3) */
  DL_M_HELLO = 1, /* first message of a worker: who it is */
  DL_M_DONE = 2,  /* a task finished, a STORE was kept, or a copy fetched */
  DL_M_ERR = 3,   /* a task failed */
  DL_M_MISSING = 4, /* a task's input could be fetched from no holder */
  DL_M_HEARTBEAT = 5, /* every second: memory and load figures */
  DL_M_STOLEN = 7,    /* the answer to STEAL */
  DL_M_SECEDE = 8,    /* a running task waits: its slot is given back */
  DL_M_PROFILE = 9,   /* samples of the Lua stacks of running tasks */
  /* scheduler -> worker */
  DL_M_COMPUTE = 20, /* run a task */
  DL_M_FUNC = 21,    /* a function's bytecode, before the first task that
                        names it on this worker */
  DL_M_FREE = 22,    /* drop a stored value */
  DL_M_CANCEL = 23,  /* stop a task (queued or running) */
  DL_M_STORE = 24,   /* keep these bytes (scatter, restore of a value) */
  DL_M_PEER = 25,    /* where another worker listens ("" = it is gone) */
  DL_M_SHUTDOWN = 26, /* exit now (no fields) */
  DL_M_STEAL = 27,   /* give a queued task back if it has not started */
  DL_M_FUNC_FREE = 28, /* no task needs this bytecode any more */
  DL_M_WELCOME = 29, /* the id of a worker that joined over TCP */
  DL_M_CYCLE = 30,   /* a waiting task's wait closes a cycle: raise */
  DL_M_WREFUSE = 31, /* not served (a name taken), and why: exit */
  /* peer <-> peer, and the scheduler fetching for its client */
  DL_M_GET = 40,     /* send me a value */
  DL_M_DATA = 41,    /* the answer to GET / GETS */
  DL_M_GETS = 42,    /* a GET that takes a found = 2 (shared block) answer */
  DL_M_GETF = 43,    /* a GETS whose answer names a file (memfd) to map */
  /* client -> scheduler */
  DL_M_SUBMIT = 60,  /* a task, or one more future of a known key */
  DL_M_CFUNC = 61,   /* a function's bytecode, before the first task that
                        names it */
  DL_M_RELEASE = 62, /* the client dropped one future of key */
  DL_M_GATHER = 63,  /* send me these values */
  DL_M_SCATTER = 64, /* keep this value on a worker */
  DL_M_CCANCEL = 65, /* cancel a task */
  DL_M_GATHERS = 69, /* as GATHER; big values may come as found = 2 */
  DL_M_FN_FORGET = 70, /* the answer to FN_GONE: the client forgot it */
  DL_M_COORD = 71,   /* a Variable / Queue / Event / Semaphore request */
  DL_M_GATHERF = 72, /* as GATHERS; found = 2 answers name memfds (GETF) */
  /* A worker's tasks send client messages too (dlua.get_client in a
     task): SUBMIT, CFUNC, RELEASE, GATHER, SCATTER, CCANCEL, COORD on the
     worker's link; the answers (KEY_DONE, KEY_ERR, GATHER_REPLY,
     COORD_REPLY) come back on it. */
  /* scheduler -> client */
  DL_M_KEY_DONE = 80, /* a task the client holds is in memory */
  DL_M_KEY_ERR = 81,  /* a task the client holds failed */
  DL_M_GATHER_REPLY = 82, /* one value of a GATHER */
  DL_M_FN_GONE = 85,  /* no task needs this bytecode: send it again with
                         the next task that does, and answer FN_FORGET */
  DL_M_COORD_REPLY = 86, /* the answer to COORD */
  /* a client in another process (`dlua.Client("tcp://...")`) */
  DL_M_CHELLO = 90,   /* client -> scheduler: first message, "a client" */
  DL_M_CINFO = 91,    /* scheduler -> client: the cluster (own frame) */
  DL_M_CREFUSE = 92,  /* scheduler -> client: not served, and why */
  DL_M_CSHUTDOWN = 93 /* client -> scheduler: stop (own frame) */
};

/* Error kinds carried by ERR / KEY_ERR and the error record. */
enum {
  DL_ERR_RAISED = 1, /* the task raised */
  DL_ERR_CANCELLED,  /* cancelled by the client */
  DL_ERR_TIMEOUT,    /* exceeded its per-task timeout */
  DL_ERR_KILLED,     /* killed too many workers */
  DL_ERR_DEP,        /* a dependency failed */
  DL_ERR_LOST        /* could not be computed (no worker can run it) */
};

/* ------------------------------------------------------------- fields */

/* The type byte of the next message: 0, or DL_EPROTO at the frame's end. */
static inline int dl_wire_type(dl_rd *r, unsigned *type) {
  return dl_rd_u8(r, type);
}

/* An item of a key list (str). */
static inline void dl_put_key(dl_buf *b, const char *k, size_t kl) {
  dl_buf_str(b, k, kl);
}
static inline int dl_get_key(dl_rd *r, const char **k, size_t *kl) {
  return dl_rd_str(r, k, kl);
}
/* An item of a worker id list (uv). */
static inline void dl_put_id(dl_buf *b, uint64_t id) { dl_buf_uv(b, id); }
static inline int dl_get_id(dl_rd *r, uint64_t *id) { return dl_rd_uv(r, id); }

/* Check n items of a key list (ids: 0) or id list (ids: 1) at r and hand
   them back as a reader of their own; r moves past them. */
static inline int dl_wire_list(dl_rd *r, uint64_t n, int ids, dl_rd *items) {
  const char *start = r->p, *s;
  size_t l;
  uint64_t i, v;
  if (n > dl_rd_left(r)) return DL_EPROTO; /* each item is >= 1 byte */
  for (i = 0; i < n; i++)
    if (ids ? dl_rd_uv(r, &v) : dl_rd_str(r, &s, &l)) return DL_EPROTO;
  items->p = start;
  items->end = r->p;
  return 0;
}

/*
** Layouts that several messages share, written once; each message's own
** put/get pair below is a one-line use of its layout.
**   str2: str a, str b          (SECEDE, CYCLE, MISSING, STORE)
**   suvs: str a, uv n, str b    (ERR, KEY_ERR, KEY_DONE)
**   uvs:  uv n, str a           (PEER, GET, GETS)
*/
static inline void dl_put_str2(dl_buf *b, unsigned type, const char *a,
                               size_t alen, const char *c, size_t clen) {
  dl_buf_u8(b, type);
  dl_buf_str(b, a, alen);
  dl_buf_str(b, c, clen);
}
static inline int dl_get_str2(dl_rd *r, const char **a, size_t *alen,
                              const char **c, size_t *clen) {
  if (dl_rd_str(r, a, alen)) return DL_EPROTO;
  return dl_rd_str(r, c, clen);
}
static inline void dl_put_suvs(dl_buf *b, unsigned type, const char *a,
                               size_t alen, uint64_t n, const char *c,
                               size_t clen) {
  dl_buf_u8(b, type);
  dl_buf_str(b, a, alen);
  dl_buf_uv(b, n);
  dl_buf_str(b, c, clen);
}
static inline int dl_get_suvs(dl_rd *r, const char **a, size_t *alen,
                              uint64_t *n, const char **c, size_t *clen) {
  if (dl_rd_str(r, a, alen) || dl_rd_uv(r, n)) return DL_EPROTO;
  return dl_rd_str(r, c, clen);
}
static inline void dl_put_uvs(dl_buf *b, unsigned type, uint64_t n,
                              const char *a, size_t alen) {
  dl_buf_u8(b, type);
  dl_buf_uv(b, n);
  dl_buf_str(b, a, alen);
}
static inline int dl_get_uvs(dl_rd *r, uint64_t *n, const char **a,
                             size_t *alen) {
  if (dl_rd_uv(r, n)) return DL_EPROTO;
  return dl_rd_str(r, a, alen);
}

/* Messages that carry only a key: FREE, CANCEL, STEAL, RELEASE, CCANCEL. */
typedef struct dl_msg_key {
  const char *key;
  size_t klen;
} dl_msg_key;

static inline void dl_put_key_msg(dl_buf *b, unsigned type, const char *key,
                                  size_t klen) {
  dl_buf_u8(b, type);
  dl_buf_str(b, key, klen);
}
static inline int dl_get_key_msg(dl_rd *r, dl_msg_key *m) {
  return dl_rd_str(r, &m->key, &m->klen);
}

/* Messages that carry only a function's hash: FUNC_FREE, FN_GONE,
   FN_FORGET.  hash points at 16 bytes. */
typedef struct dl_msg_hash {
  const char *hash;
} dl_msg_hash;

static inline void dl_put_hash_msg(dl_buf *b, unsigned type,
                                   const void *hash) {
  dl_buf_u8(b, type);
  dl_buf_put(b, hash, 16);
}
static inline int dl_get_hash_msg(dl_rd *r, dl_msg_hash *m) {
  return dl_rd_bytes(r, 16, &m->hash);
}

/* Messages that carry a function: FUNC (scheduler -> worker) and CFUNC
   (client -> scheduler).  h16 hash, str bytecode. */
typedef struct dl_msg_func {
  const char *hash; /* 16 bytes */
  const char *code;
  size_t len;
} dl_msg_func;

static inline void dl_put_func_msg(dl_buf *b, unsigned type, const void *hash,
                                   const char *code, size_t len) {
  dl_buf_u8(b, type);
  dl_buf_put(b, hash, 16);
  dl_buf_str(b, code, len);
}
static inline int dl_get_func_msg(dl_rd *r, dl_msg_func *m) {
  if (dl_rd_bytes(r, 16, &m->hash)) return DL_EPROTO;
  return dl_rd_str(r, &m->code, &m->len);
}

/*
** Messages of two strings: SECEDE (worker -> scheduler: str key of the
** running task, str the key it waits for, "" if it waits for something
** else) and CYCLE (scheduler -> worker: str key of the waiting task, str
** the message it must raise).
*/
typedef struct dl_msg_two {
  const char *a;
  size_t alen;
  const char *b;
  size_t blen;
} dl_msg_two;

static inline void dl_put_two_msg(dl_buf *b, unsigned type,
                                  const dl_msg_two *m) {
  dl_put_str2(b, type, m->a, m->alen, m->b, m->blen);
}
static inline int dl_get_two_msg(dl_rd *r, dl_msg_two *m) {
  return dl_get_str2(r, &m->a, &m->alen, &m->b, &m->blen);
}

/*
** COORD (client or worker -> scheduler): uv reqid, u8 op (DL_CO_* of
** dl_coord.h), str name, uv timeout_ms (0: no limit, else 1 + ms), uv n
** (maxsize, batch or max_leases), uv lease (a lease id), str bytes (a
** value), str task (the key of the task that asks, for the dashboard;
** empty from the client).  COORD_REPLY (scheduler -> the requester): uv reqid, uv status
** (DL_CO_OK, DL_CO_TIMEOUT, DL_CO_ERROR), str bytes (the value(s), or the
** error message).
*/
typedef struct dl_msg_coord {
  uint64_t reqid;
  unsigned op;
  const char *name;
  size_t nlen;
  uint64_t timeout_ms, n, lease;
  const char *bytes;
  size_t blen;
  const char *task; /* the key of the task that asks ("": the client) */
  size_t tlen;
} dl_msg_coord;

static inline void dl_put_coord(dl_buf *b, const dl_msg_coord *m) {
  dl_buf_u8(b, DL_M_COORD);
  dl_buf_uv(b, m->reqid);
  dl_buf_u8(b, m->op);
  dl_buf_str(b, m->name, m->nlen);
  dl_buf_uv(b, m->timeout_ms);
  dl_buf_uv(b, m->n);
  dl_buf_uv(b, m->lease);
  dl_buf_str(b, m->bytes, m->blen);
  dl_buf_str(b, m->task ? m->task : "", m->tlen);
}
static inline int dl_get_coord(dl_rd *r, dl_msg_coord *m) {
  if (dl_rd_uv(r, &m->reqid) || dl_rd_u8(r, &m->op) ||
      dl_rd_str(r, &m->name, &m->nlen) || dl_rd_uv(r, &m->timeout_ms) ||
      dl_rd_uv(r, &m->n) || dl_rd_uv(r, &m->lease) ||
      dl_rd_str(r, &m->bytes, &m->blen))
    return DL_EPROTO;
  return dl_rd_str(r, &m->task, &m->tlen);
}

typedef struct dl_msg_coord_reply {
  uint64_t reqid, status;
  const char *bytes;
  size_t blen;
} dl_msg_coord_reply;

static inline void dl_put_coord_reply(dl_buf *b,
                                      const dl_msg_coord_reply *m) {
  dl_buf_u8(b, DL_M_COORD_REPLY);
  dl_buf_uv(b, m->reqid);
  dl_buf_uv(b, m->status);
  dl_buf_str(b, m->bytes, m->blen);
}
static inline int dl_get_coord_reply(dl_rd *r, dl_msg_coord_reply *m) {
  if (dl_rd_uv(r, &m->reqid) || dl_rd_uv(r, &m->status)) return DL_EPROTO;
  return dl_rd_str(r, &m->bytes, &m->blen);
}

/* ------------------------------------------------ worker -> scheduler */

/*
** HELLO: uv id, uv pid, uv nthreads, uv memory_limit (bytes, 0 = none),
** str addr (where the worker serves peers), str name (`dlua worker --name`,
** "" = none; at most DL_WORKER_NAME_MAX bytes).  The worker's first
** message; the scheduler drops a link whose first message is not a HELLO,
** and answers a name another worker holds with WREFUSE.
*/
#define DL_WORKER_NAME_MAX 63
typedef struct dl_msg_hello {
  uint64_t id, pid, nthreads, memory_limit;
  const char *addr, *name;
  size_t alen, nlen;
} dl_msg_hello;

static inline void dl_put_hello(dl_buf *b, const dl_msg_hello *m) {
  dl_buf_u8(b, DL_M_HELLO);
  dl_buf_uv(b, m->id);
  dl_buf_uv(b, m->pid);
  dl_buf_uv(b, m->nthreads);
  dl_buf_uv(b, m->memory_limit);
  dl_buf_str(b, m->addr, m->alen);
  dl_buf_str(b, m->name, m->nlen);
}
static inline int dl_get_hello(dl_rd *r, dl_msg_hello *m) {
  if (dl_rd_uv(r, &m->id) || dl_rd_uv(r, &m->pid) ||
      dl_rd_uv(r, &m->nthreads) || dl_rd_uv(r, &m->memory_limit) ||
      dl_rd_str(r, &m->addr, &m->alen) || dl_rd_str(r, &m->name, &m->nlen) ||
      m->nlen > DL_WORKER_NAME_MAX)
    return DL_EPROTO;
  return 0;
}

/*
** DONE: str key, uv nbytes (the value's size), uv start_us, uv stop_us
** (wall clock of the run; 0, 0 for a store or a fetched copy), str inl
** (the value itself when small, else "").  Sent when a task finished, a
** STORE was kept, or a value fetched from a peer was kept (a copy).
*/
typedef struct dl_msg_done {
  const char *key;
  size_t klen;
  uint64_t nbytes, start_us, stop_us;
  const char *inl;
  size_t ilen;
} dl_msg_done;

static inline void dl_put_done(dl_buf *b, const dl_msg_done *m) {
  dl_buf_u8(b, DL_M_DONE);
  dl_buf_str(b, m->key, m->klen);
  dl_buf_uv(b, m->nbytes);
  dl_buf_uv(b, m->start_us);
  dl_buf_uv(b, m->stop_us);
  dl_buf_str(b, m->inl, m->ilen);
}
static inline int dl_get_done(dl_rd *r, dl_msg_done *m) {
  if (dl_rd_str(r, &m->key, &m->klen) || dl_rd_uv(r, &m->nbytes) ||
      dl_rd_uv(r, &m->start_us) || dl_rd_uv(r, &m->stop_us))
    return DL_EPROTO;
  return dl_rd_str(r, &m->inl, &m->ilen);
}

/*
** ERR (worker -> scheduler) and KEY_ERR (scheduler -> client): str key,
** uv kind (DL_ERR_*), str rec (an error record, dl_put_err_rec).
*/
typedef struct dl_msg_err {
  const char *key;
  size_t klen;
  uint64_t kind;
  const char *rec;
  size_t rlen;
} dl_msg_err;

static inline void dl_put_err_msg(dl_buf *b, unsigned type,
                                  const dl_msg_err *m) {
  dl_put_suvs(b, type, m->key, m->klen, m->kind, m->rec, m->rlen);
}
static inline int dl_get_err_msg(dl_rd *r, dl_msg_err *m) {
  return dl_get_suvs(r, &m->key, &m->klen, &m->kind, &m->rec, &m->rlen);
}

/* MISSING: str key, str dep.  Task key's input dep could be fetched from
   none of its holders: the task goes back to the scheduler. */
typedef struct dl_msg_missing {
  const char *key, *dep;
  size_t klen, dlen;
} dl_msg_missing;

static inline void dl_put_missing(dl_buf *b, const dl_msg_missing *m) {
  dl_put_str2(b, DL_M_MISSING, m->key, m->klen, m->dep, m->dlen);
}
static inline int dl_get_missing(dl_rd *r, dl_msg_missing *m) {
  return dl_get_str2(r, &m->key, &m->klen, &m->dep, &m->dlen);
}

/*
** HEARTBEAT: uv managed, uv spilled, uv rss (bytes), uv executing (0/1),
** uv stored (values), uv paused (0/1), str spill_err ("" while spilling
** works), uv spill_out, uv spill_in (bytes written to spill files and
** read back), uv xfer_in, uv xfer_out (bytes of values received from and
** sent to peers); the last four count since the worker started.  Every
** 0.5 s, and right after HELLO.
*/
typedef struct dl_msg_heartbeat {
  uint64_t managed, spilled, rss, executing, stored, paused;
  const char *spill_err;
  size_t selen;
  uint64_t spill_out, spill_in, xfer_in, xfer_out;
} dl_msg_heartbeat;

static inline void dl_put_heartbeat(dl_buf *b, const dl_msg_heartbeat *m) {
  dl_buf_u8(b, DL_M_HEARTBEAT);
  dl_buf_uv(b, m->managed);
  dl_buf_uv(b, m->spilled);
  dl_buf_uv(b, m->rss);
  dl_buf_uv(b, m->executing);
  dl_buf_uv(b, m->stored);
  dl_buf_uv(b, m->paused);
  dl_buf_str(b, m->spill_err, m->selen);
  dl_buf_uv(b, m->spill_out);
  dl_buf_uv(b, m->spill_in);
  dl_buf_uv(b, m->xfer_in);
  dl_buf_uv(b, m->xfer_out);
}
static inline int dl_get_heartbeat(dl_rd *r, dl_msg_heartbeat *m) {
  if (dl_rd_uv(r, &m->managed) || dl_rd_uv(r, &m->spilled) ||
      dl_rd_uv(r, &m->rss) || dl_rd_uv(r, &m->executing) ||
      dl_rd_uv(r, &m->stored) || dl_rd_uv(r, &m->paused) ||
      dl_rd_str(r, &m->spill_err, &m->selen) || dl_rd_uv(r, &m->spill_out) ||
      dl_rd_uv(r, &m->spill_in) || dl_rd_uv(r, &m->xfer_in))
    return DL_EPROTO;
  return dl_rd_uv(r, &m->xfer_out);
}

/*
** PROFILE: n{uv parent, str frame, uv count}.  Samples of the running
** tasks' Lua stacks taken since the last PROFILE, as a call tree: item i
** (1-based) is the frame named frame called from item parent (0: the
** root), and count samples stopped in it.  An item comes after its parent.
** With the heartbeat, when there were samples (see dl_prof.h).
**
** Put: dl_put_profile, then n dl_put_profile_item.  Get: dl_get_profile
** checks the whole message (parents included); walk m.items with
** dl_get_profile_item.
*/
typedef struct dl_msg_profile {
  uint64_t n;
  dl_rd items;
} dl_msg_profile;

static inline void dl_put_profile(dl_buf *b, uint64_t n) {
  dl_buf_u8(b, DL_M_PROFILE);
  dl_buf_uv(b, n);
}
static inline void dl_put_profile_item(dl_buf *b, uint64_t parent,
                                       const char *frame, size_t flen,
                                       uint64_t count) {
  dl_buf_uv(b, parent);
  dl_buf_str(b, frame, flen);
  dl_buf_uv(b, count);
}
static inline int dl_get_profile_item(dl_rd *r, uint64_t *parent,
                                      const char **frame, size_t *flen,
                                      uint64_t *count) {
  if (dl_rd_uv(r, parent) || dl_rd_str(r, frame, flen)) return DL_EPROTO;
  return dl_rd_uv(r, count);
}
static inline int dl_get_profile(dl_rd *r, dl_msg_profile *m) {
  uint64_t i, parent, count;
  const char *f;
  size_t fl;
  if (dl_rd_uv(r, &m->n) || m->n > dl_rd_left(r)) return DL_EPROTO;
  m->items.p = r->p;
  for (i = 0; i < m->n; i++)
    if (dl_get_profile_item(r, &parent, &f, &fl, &count) || parent > i)
      return DL_EPROTO;
  m->items.end = r->p;
  return 0;
}

/* STOLEN: str key, uv ok (1: the task was queued and is handed back; 0:
   it started or is unknown).  The answer to STEAL. */
typedef struct dl_msg_stolen {
  const char *key;
  size_t klen;
  uint64_t ok;
} dl_msg_stolen;

static inline void dl_put_stolen(dl_buf *b, const dl_msg_stolen *m) {
  dl_buf_u8(b, DL_M_STOLEN);
  dl_buf_str(b, m->key, m->klen);
  dl_buf_uv(b, m->ok);
}
static inline int dl_get_stolen(dl_rd *r, dl_msg_stolen *m) {
  if (dl_rd_str(r, &m->key, &m->klen)) return DL_EPROTO;
  return dl_rd_uv(r, &m->ok);
}

/* ------------------------------------------------ scheduler -> worker */

/*
** COMPUTE: str key, sv prio, uv timeout_ms (0 = none), str payload (the
** codec's bytes of the task), nfns{h16 hash} (the functions the payload
** names by their position here), ndeps{str depkey, nwho{uv worker id}}
** (each input and the workers holding it; the payload's futures are
** positions here).  Any FUNC the payload names comes before it in the
** same connection.
**
** Put: dl_put_compute, then for each input dl_put_compute_dep and nwho
** dl_put_id.  Get: dl_get_compute checks the whole message; walk m.deps
** with dl_get_compute_dep, then nwho dl_get_id.
*/
typedef struct dl_msg_compute {
  const char *key, *payload;
  const char *fns; /* nfns hashes, 16 bytes each */
  const char *head; /* put only: hlen bytes that come before payload's */
  const char *tail; /* and tlen that come after them (the sender kept
                       the payload without them) */
  size_t klen, plen, hlen, tlen;
  int64_t prio;
  uint64_t timeout_ms, nfns, ndeps;
  dl_rd deps;
} dl_msg_compute;

static inline void dl_put_compute(dl_buf *b, const dl_msg_compute *m) {
  dl_buf_u8(b, DL_M_COMPUTE);
  dl_buf_str(b, m->key, m->klen);
  dl_buf_sv(b, m->prio);
  dl_buf_uv(b, m->timeout_ms);
  dl_buf_uv(b, m->hlen + m->plen + m->tlen);
  dl_buf_put(b, m->head, m->hlen);
  dl_buf_put(b, m->payload, m->plen);
  dl_buf_put(b, m->tail, m->tlen);
  dl_buf_uv(b, m->nfns);
  dl_buf_put(b, m->fns, 16 * (size_t)m->nfns);
  dl_buf_uv(b, m->ndeps);
}
static inline void dl_put_compute_dep(dl_buf *b, const char *k, size_t kl,
                                      uint64_t nwho) {
  dl_buf_str(b, k, kl);
  dl_buf_uv(b, nwho);
}
static inline int dl_get_compute_dep(dl_rd *r, const char **k, size_t *kl,
                                     uint64_t *nwho) {
  if (dl_rd_str(r, k, kl) || dl_rd_uv(r, nwho) || *nwho > dl_rd_left(r))
    return DL_EPROTO;
  return 0;
}
static inline int dl_get_compute(dl_rd *r, dl_msg_compute *m) {
  uint64_t i, j, nwho, id;
  const char *k;
  size_t kl;
  if (dl_rd_str(r, &m->key, &m->klen) || dl_rd_sv(r, &m->prio) ||
      dl_rd_uv(r, &m->timeout_ms) || dl_rd_str(r, &m->payload, &m->plen) ||
      dl_rd_uv(r, &m->nfns) || m->nfns > dl_rd_left(r) / 16 ||
      dl_rd_bytes(r, 16 * (size_t)m->nfns, &m->fns) ||
      dl_rd_uv(r, &m->ndeps) || m->ndeps > dl_rd_left(r))
    return DL_EPROTO;
  m->deps.p = r->p;
  for (i = 0; i < m->ndeps; i++) {
    if (dl_get_compute_dep(r, &k, &kl, &nwho)) return DL_EPROTO;
    for (j = 0; j < nwho; j++)
      if (dl_rd_uv(r, &id)) return DL_EPROTO;
  }
  m->deps.end = r->p;
  return 0;
}

/* FUNC: h16 hash, str bytecode (dl_put_func_msg / dl_get_func_msg).
   FREE, CANCEL, STEAL: str key (dl_put_key_msg / dl_get_key_msg).
   FUNC_FREE: h16 hash (dl_put_hash_msg / dl_get_hash_msg).
   SHUTDOWN: no fields (dl_put_shutdown). */
static inline void dl_put_shutdown(dl_buf *b) { dl_buf_u8(b, DL_M_SHUTDOWN); }

/* WELCOME: uv id.  The first message to a worker that joined over TCP
   (`dlua worker ADDRESS`): the id the scheduler gave it; the worker
   answers with its HELLO.  Spawned workers get theirs on the command line
   and never see this message. */
static inline void dl_put_welcome(dl_buf *b, uint64_t id) {
  dl_buf_u8(b, DL_M_WELCOME);
  dl_buf_uv(b, id);
}
static inline int dl_get_welcome(dl_rd *r, uint64_t *id) {
  return dl_rd_uv(r, id);
}

/* WREFUSE: str reason.  Instead of taking a worker's HELLO (its name is
   another worker's): the worker says why and exits without rejoining. */
static inline void dl_put_wrefuse(dl_buf *b, const char *why, size_t len) {
  dl_buf_u8(b, DL_M_WREFUSE);
  dl_buf_str(b, why, len);
}
static inline int dl_get_wrefuse(dl_rd *r, const char **why, size_t *len) {
  return dl_rd_str(r, why, len);
}

/* STORE: str key, str bytes (a codec value to keep under key; answered
   with DONE, or ERR when it cannot be kept). */
typedef struct dl_msg_store {
  const char *key, *bytes;
  size_t klen, blen;
} dl_msg_store;

static inline void dl_put_store(dl_buf *b, const dl_msg_store *m) {
  dl_put_str2(b, DL_M_STORE, m->key, m->klen, m->bytes, m->blen);
}
static inline int dl_get_store(dl_rd *r, dl_msg_store *m) {
  return dl_get_str2(r, &m->key, &m->klen, &m->bytes, &m->blen);
}

/* PEER: uv id, str addr (where worker id serves; "" when it is gone).
   Sent to every worker when one says HELLO or dies, and to a new worker
   for each one already there. */
typedef struct dl_msg_peer {
  uint64_t id;
  const char *addr;
  size_t alen;
} dl_msg_peer;

static inline void dl_put_peer(dl_buf *b, const dl_msg_peer *m) {
  dl_put_uvs(b, DL_M_PEER, m->id, m->addr, m->alen);
}
static inline int dl_get_peer(dl_rd *r, dl_msg_peer *m) {
  return dl_get_uvs(r, &m->id, &m->addr, &m->alen);
}

/* ---------------------------------------------------- peer <-> peer */

/*
** GET, GETS, GETF: uv reqid, str key.  A worker fetching a task's input
** from a peer (reqid 0), or the scheduler fetching for a client's GATHER.
** GETS accepts a found = 2 answer (the asker is a local process that can
** read the holder's block: by its address, or by mapping its memfd); GETF
** too, but the answer must name a memfd (the asker may not read the
** holder's memory directly: a ptrace policy refused it).
*/
typedef struct dl_msg_get {
  uint64_t reqid;
  const char *key;
  size_t klen;
} dl_msg_get;

/* shared_ok: 0 GET, 1 GETS, 2 GETF. */
static inline void dl_put_get(dl_buf *b, int shared_ok, uint64_t reqid,
                              const char *key, size_t klen) {
  dl_put_uvs(b, shared_ok == 2 ? DL_M_GETF : shared_ok ? DL_M_GETS : DL_M_GET,
             reqid, key, klen);
}
static inline int dl_get_get(dl_rd *r, dl_msg_get *m) {
  return dl_get_uvs(r, &m->reqid, &m->key, &m->klen);
}

/*
** DATA (worker -> asker) and GATHER_REPLY (scheduler -> client, one per
** key asked; the scheduler passes a worker's DATA on as it came): uv reqid,
** str key, uv found, str bytes.  found 0: the holder does not have it
** (bytes ""); 1: bytes is the value; 2: bytes is a dl_shared_at saying
** where the value lies in a block of the holder's to map.
**
** A big value is sent without copying it into the frame: dl_put_data_head
** writes everything up to the bytes' length, and the bytes follow it
** (dl_conn_send_ref).
*/
typedef struct dl_msg_data {
  uint64_t reqid;
  const char *key;
  size_t klen;
  uint64_t found;
  const char *bytes;
  size_t blen;
} dl_msg_data;

static inline void dl_put_data_head(dl_buf *b, unsigned type, uint64_t reqid,
                                    const char *key, size_t klen,
                                    uint64_t found, size_t blen) {
  dl_buf_u8(b, type);
  dl_buf_uv(b, reqid);
  dl_buf_str(b, key, klen);
  dl_buf_uv(b, found);
  dl_buf_uv(b, blen);
}
/* type: DL_M_DATA or DL_M_GATHER_REPLY. */
static inline void dl_put_data(dl_buf *b, unsigned type,
                               const dl_msg_data *m) {
  dl_put_data_head(b, type, m->reqid, m->key, m->klen, m->found, m->blen);
  dl_buf_put(b, m->bytes, m->blen);
}
static inline int dl_get_data(dl_rd *r, dl_msg_data *m) {
  if (dl_rd_uv(r, &m->reqid) || dl_rd_str(r, &m->key, &m->klen) ||
      dl_rd_uv(r, &m->found))
    return DL_EPROTO;
  return dl_rd_str(r, &m->bytes, &m->blen);
}

/*
** Where a value lies in another local process's block: the bytes of a
** found = 2 answer: uv pid, uv fd, uv inode, uv size, uv off, uv len, uv
** addr, uv seal, uv cookie (the rest of the dl_mem_ref), all inside one
** str.  fd is DL_MEM_NOFD when the block is to be read at addr.
*/
typedef struct dl_shared_at {
  uint64_t pid;   /* the process holding the block */
  dl_mem_ref ref; /* the block, as dl_mem_share described it */
  uint64_t off;   /* where the value starts in the block */
  uint64_t len;   /* its length */
} dl_shared_at;

/* The bytes field of a found = 2 answer (one str). */
void dl_put_shared_at(dl_buf *b, const dl_shared_at *sa);
/* A DATA / GATHER_REPLY with found = 2 pointing at sa. */
void dl_put_data_shared(dl_buf *b, unsigned type, uint64_t reqid,
                        const char *key, size_t klen, const dl_shared_at *sa);

/* Read sa from the n bytes of a found = 2 answer; 0, or DL_EPROTO if they
   are malformed or describe an impossible span. */
int dl_shared_at_read(const char *p, size_t n, dl_shared_at *sa);

/* Map the block sa names (dl_mem_map): its start, to free with dl_free;
   the value is at start + sa->off.  NULL if it cannot be mapped (errno
   EPERM where reading the holder's memory was refused). */
const char *dl_shared_at_map(const dl_shared_at *sa);

/* ------------------------------------------------ client -> scheduler */

/*
** SUBMIT: str key, str payload, then the task's spec: sv prio, sv order,
** uv retries, uv timeout_ms, nfn{h16 hash}, ndeps{str key},
** nworkers{uv id}, uv allow_other.  A SUBMIT of a key the scheduler knows
** counts one more future of it (the rest is read and ignored).  CFUNC
** messages for the hashes come before it.
**
** A client encodes the spec once for many tasks: dl_put_submit_opts and
** dl_put_submit_place each write their part into a buffer of their own,
** hashes and dependency keys are collected with dl_buf_put / dl_put_key,
** dl_put_submit_spec joins the parts, and dl_put_submit writes the message
** from key, payload and a joined spec.
*/
typedef struct dl_msg_submit {
  const char *key, *payload;
  size_t klen, plen;
  int64_t prio, order;
  uint64_t retries, timeout_ms;
  uint64_t nfns;
  const char *fns; /* nfns * 16 bytes */
  uint64_t ndeps, nworkers, allow_other;
  dl_rd deps;    /* ndeps keys: dl_get_key */
  dl_rd workers; /* nworkers ids: dl_get_id */
} dl_msg_submit;

static inline void dl_put_submit_opts(dl_buf *b, int64_t prio, int64_t order,
                                      uint64_t retries, uint64_t timeout_ms) {
  dl_buf_sv(b, prio);
  dl_buf_sv(b, order);
  dl_buf_uv(b, retries);
  dl_buf_uv(b, timeout_ms);
}
/* The placement part: nworkers, then nworkers dl_put_id, then
   dl_put_submit_allow. */
static inline void dl_put_submit_place(dl_buf *b, uint64_t nworkers) {
  dl_buf_uv(b, nworkers);
}
static inline void dl_put_submit_allow(dl_buf *b, int allow_other) {
  dl_buf_uv(b, allow_other ? 1 : 0);
}
static inline void dl_put_submit_spec(dl_buf *b, const dl_buf *opts,
                                      uint64_t nfns, const dl_buf *fns,
                                      uint64_t ndeps, const dl_buf *deps,
                                      const dl_buf *place) {
  dl_buf_put(b, opts->p, opts->len);
  dl_buf_uv(b, nfns);
  dl_buf_put(b, fns->p, fns->len);
  dl_buf_uv(b, ndeps);
  dl_buf_put(b, deps->p, deps->len);
  dl_buf_put(b, place->p, place->len);
}
static inline void dl_put_submit(dl_buf *b, const char *key, size_t klen,
                                 const char *payload, size_t plen,
                                 const char *spec, size_t slen) {
  dl_buf_u8(b, DL_M_SUBMIT);
  dl_buf_str(b, key, klen);
  dl_buf_str(b, payload, plen);
  dl_buf_put(b, spec, slen);
}
static inline int dl_get_submit(dl_rd *r, dl_msg_submit *m) {
  if (dl_rd_str(r, &m->key, &m->klen) ||
      dl_rd_str(r, &m->payload, &m->plen) || dl_rd_sv(r, &m->prio) ||
      dl_rd_sv(r, &m->order) || dl_rd_uv(r, &m->retries) ||
      dl_rd_uv(r, &m->timeout_ms) || dl_rd_uv(r, &m->nfns) ||
      m->nfns > dl_rd_left(r) / 16 || dl_rd_bytes(r, m->nfns * 16, &m->fns) ||
      dl_rd_uv(r, &m->ndeps) || dl_wire_list(r, m->ndeps, 0, &m->deps) ||
      dl_rd_uv(r, &m->nworkers) ||
      dl_wire_list(r, m->nworkers, 1, &m->workers))
    return DL_EPROTO;
  return dl_rd_uv(r, &m->allow_other);
}

/* CFUNC: as FUNC.  RELEASE, CCANCEL: str key.  FN_FORGET: h16 hash. */

/*
** GATHER, GATHERS, GATHERF: uv reqid, nkeys{str key}.  Answered with one
** GATHER_REPLY per key; GATHERS lets big values come as found = 2, and
** GATHERF too but as memfds to map (the scheduler asks with GETF: the
** client could not read the worker's memory).
** Put: dl_put_gather (shared_ok: 0 GATHER, 1 GATHERS, 2 GATHERF), then
** nkeys dl_put_key.
*/
typedef struct dl_msg_gather {
  uint64_t reqid, nkeys;
  dl_rd keys; /* dl_get_key */
} dl_msg_gather;

static inline void dl_put_gather(dl_buf *b, int shared_ok, uint64_t reqid,
                                 uint64_t nkeys) {
  dl_buf_u8(b, shared_ok == 2 ? DL_M_GATHERF
                : shared_ok ? DL_M_GATHERS : DL_M_GATHER);
  dl_buf_uv(b, reqid);
  dl_buf_uv(b, nkeys);
}
static inline int dl_get_gather(dl_rd *r, dl_msg_gather *m) {
  if (dl_rd_uv(r, &m->reqid) || dl_rd_uv(r, &m->nkeys)) return DL_EPROTO;
  return dl_wire_list(r, m->nkeys, 0, &m->keys);
}

/*
** SCATTER: str key, str bytes (a codec value), nworkers{uv id} (where to
** keep it; none = the worker with the least data).  Answered like a
** SUBMIT, with KEY_DONE or KEY_ERR.
** Put: dl_put_scatter, then nworkers dl_put_id.
*/
typedef struct dl_msg_scatter {
  const char *key, *bytes;
  size_t klen, blen;
  uint64_t nworkers;
  dl_rd workers; /* dl_get_id */
} dl_msg_scatter;

static inline void dl_put_scatter(dl_buf *b, const char *key, size_t klen,
                                  const char *bytes, size_t blen,
                                  uint64_t nworkers) {
  dl_buf_u8(b, DL_M_SCATTER);
  dl_buf_str(b, key, klen);
  dl_buf_str(b, bytes, blen);
  dl_buf_uv(b, nworkers);
}
static inline int dl_get_scatter(dl_rd *r, dl_msg_scatter *m) {
  if (dl_rd_str(r, &m->key, &m->klen) || dl_rd_str(r, &m->bytes, &m->blen) ||
      dl_rd_uv(r, &m->nworkers))
    return DL_EPROTO;
  return dl_wire_list(r, m->nworkers, 1, &m->workers);
}

/* ------------------------------------------------ scheduler -> client */

/* KEY_DONE: str key, uv nbytes, str inl (the value when small, else "").
   Sent when a task the client holds a future of is in memory. */
typedef struct dl_msg_key_done {
  const char *key, *inl;
  size_t klen, ilen;
  uint64_t nbytes;
} dl_msg_key_done;

static inline void dl_put_key_done(dl_buf *b, const dl_msg_key_done *m) {
  dl_put_suvs(b, DL_M_KEY_DONE, m->key, m->klen, m->nbytes, m->inl, m->ilen);
}
static inline int dl_get_key_done(dl_rd *r, dl_msg_key_done *m) {
  return dl_get_suvs(r, &m->key, &m->klen, &m->nbytes, &m->inl, &m->ilen);
}

/* KEY_ERR: as ERR (dl_put_err_msg / dl_get_err_msg).
   GATHER_REPLY: as DATA, one key each (dl_put_data / dl_get_data).
   FN_GONE: h16 hash (dl_put_hash_msg / dl_get_hash_msg). */

/* ------------------------------------------------------ remote client */

/* CHELLO, CSHUTDOWN: no fields.  CREFUSE: str reason.
   CINFO: str dashboard ("host:port" or ""), 6 uv task counts (see
   dl_sched_counts), uv n, then n workers, each: uv id, uv pid, uv
   nthreads, uv memory_limit, uv managed, uv spilled, uv rss, uv executing,
   uv stored, uv status, uv processing (tasks sent to it), uv uptime_ms,
   uv silent_ms (since its last message), uv spill_out, uv spill_in, uv
   xfer_in, uv xfer_out (bytes since it started), str name, str spill_err
   ("" while spilling works); then uv d, and the d workers that left
   last (oldest first), each: uv id, uv pid, str reason, str name.  Names
   are at most DL_WORKER_NAME_MAX bytes.  A remote client's
   scheduler sends it when the client joins and then twice a second, alone
   in its frame, so the client can take it without reading the other
   messages. */
static inline void dl_put_chello(dl_buf *b) { dl_buf_u8(b, DL_M_CHELLO); }
static inline void dl_put_cshutdown(dl_buf *b) {
  dl_buf_u8(b, DL_M_CSHUTDOWN);
}
static inline void dl_put_crefuse(dl_buf *b, const char *why, size_t len) {
  dl_buf_u8(b, DL_M_CREFUSE);
  dl_buf_str(b, why, len);
}
static inline int dl_get_crefuse(dl_rd *r, const char **why, size_t *len) {
  return dl_rd_str(r, why, len);
}
/* The numbers first, in the wire's order (put and get walk them). */
#define DL_CWORKER_NUMS 17
typedef struct dl_msg_cworker {
  uint64_t id, pid, nthreads, memory_limit, managed, spilled, rss;
  uint64_t executing, stored, status, processing, uptime_ms, silent_ms;
  uint64_t spill_out, spill_in, xfer_in, xfer_out;
  const char *name, *spill_err;
  size_t nlen, selen;
} dl_msg_cworker;

static inline void dl_put_cinfo_head(dl_buf *b, const char *dash,
                                     const int64_t counts[6], uint64_t n) {
  int i;
  dl_buf_u8(b, DL_M_CINFO);
  dl_buf_str(b, dash, strlen(dash));
  for (i = 0; i < 6; i++) dl_buf_uv(b, (uint64_t)counts[i]);
  dl_buf_uv(b, n);
}
static inline void dl_put_cworker(dl_buf *b, const dl_msg_cworker *w) {
  const uint64_t *f = &w->id;
  int i;
  for (i = 0; i < DL_CWORKER_NUMS; i++) dl_buf_uv(b, f[i]);
  dl_buf_str(b, w->name, w->nlen);
  dl_buf_str(b, w->spill_err, w->selen);
}
static inline int dl_get_cinfo_head(dl_rd *r, const char **dash,
                                    size_t *dlen, int64_t counts[6],
                                    uint64_t *n) {
  int i;
  uint64_t v;
  if (dl_rd_str(r, dash, dlen)) return DL_EPROTO;
  for (i = 0; i < 6; i++) {
    if (dl_rd_uv(r, &v)) return DL_EPROTO;
    counts[i] = (int64_t)v;
  }
  return dl_rd_uv(r, n);
}
static inline int dl_get_cworker(dl_rd *r, dl_msg_cworker *w) {
  uint64_t *f = &w->id;
  int i;
  for (i = 0; i < DL_CWORKER_NUMS; i++)
    if (dl_rd_uv(r, &f[i])) return DL_EPROTO;
  if (dl_rd_str(r, &w->name, &w->nlen) || w->nlen > DL_WORKER_NAME_MAX ||
      dl_rd_str(r, &w->spill_err, &w->selen))
    return DL_EPROTO;
  return 0;
}
/* A worker that left, in CINFO's tail (after dl_buf_uv of their count). */
typedef struct dl_msg_cdead {
  uint64_t id, pid;
  const char *reason, *name;
  size_t rlen, nlen;
} dl_msg_cdead;
static inline void dl_put_cdead(dl_buf *b, const dl_msg_cdead *d) {
  dl_buf_uv(b, d->id);
  dl_buf_uv(b, d->pid);
  dl_buf_str(b, d->reason, d->rlen);
  dl_buf_str(b, d->name, d->nlen);
}
static inline int dl_get_cdead(dl_rd *r, dl_msg_cdead *d) {
  if (dl_rd_uv(r, &d->id) || dl_rd_uv(r, &d->pid) ||
      dl_rd_str(r, &d->reason, &d->rlen) ||
      dl_rd_str(r, &d->name, &d->nlen) || d->nlen > DL_WORKER_NAME_MAX)
    return DL_EPROTO;
  return 0;
}

/* ------------------------------------------------------ error record */

/*
** The error record carried by ERR / KEY_ERR: uv kind, str message, str
** traceback ("" = none), str worker (who ran it, "" = the scheduler), and
** optionally one more str: the error value itself when the task raised a
** table, encoded by dl_codec in data_only mode.  Readers that do not know
** a field stop before it.
*/
typedef struct dl_err_rec {
  uint64_t kind;
  const char *msg, *tb, *worker, *value;
  size_t mlen, tblen, wlen, vlen; /* vlen 0: no value */
} dl_err_rec;

/* Append a record to b; tb, worker may be NULL, value NULL (no value). */
void dl_put_err_rec(dl_buf *b, int kind, const char *msg, const char *tb,
                    const char *worker, const char *value, size_t vlen);
/* Read a record from the n bytes at p: 0 or DL_EPROTO. */
int dl_get_err_rec(const char *p, size_t n, dl_err_rec *e);

#endif

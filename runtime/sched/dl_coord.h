/*
** dl_coord.h -- coordination state on the scheduler: named Variables,
** Queues, Events and Semaphores (a Lock is a Semaphore of one lease),
** shared by the client and every task (dlua.Variable, dlua.Queue, ...).
** Pure C: values are opaque bytes (the codec's), time is the caller's.
**
** Requests come as DL_M_COORD messages from a requester (the client, -1,
** or a worker id for its tasks) and are answered with DL_M_COORD_REPLY on
** that requester's buffer, at once or when the request can be met or its
** timeout passes (dl_coord_tick).  A lease belongs to its requester: when
** a worker is gone (its process died, or it was silent past the heartbeat
** timeout and killed), dl_coord_gone releases its leases and drops its
** waiters; a live worker's lease is never taken back.
*/
#ifndef dl_coord_h
#define dl_coord_h

#include "dl_buf.h"

typedef struct dl_coord dl_coord;

/* The buffer for requester `to` (-1: the client), or NULL if it is gone. */
typedef dl_buf *(*dl_coord_out)(void *ud, int to);

/* Operations (the op byte of DL_M_COORD). */
enum {
  DL_CO_VAR_SET = 1, /* bytes: the value */
  DL_CO_VAR_GET,     /* waits until set; reply: the value */
  DL_CO_VAR_DEL,
  DL_CO_Q_PUT,       /* n: maxsize (0: none), taken by the queue's first
                        put; bytes: the item; waits while full; reply:
                        1 byte, 1 if the queue is bounded, 0 if not */
  DL_CO_Q_GET,       /* n: 0 one item (reply: it), k > 0 exactly k items
                        (reply: a list); waits until there are enough */
  DL_CO_Q_GET_ALL,   /* every item now (reply: a list, maybe empty) */
  DL_CO_Q_SIZE,      /* reply: the count, 8 bytes little-endian */
  DL_CO_EV_SET,
  DL_CO_EV_CLEAR,
  DL_CO_EV_WAIT,     /* waits until set */
  DL_CO_EV_IS_SET,   /* reply: 1 byte, 1 or 0 */
  DL_CO_SEM_ACQ,     /* n: max_leases on first use; lease: the lease id;
                        waits while all leases are held */
  DL_CO_SEM_REL,     /* lease: the lease id to release */
  DL_CO_DELETE,      /* forget the primitive named (Queue, Event, ...) */
  DL_CO_Q_PUSH,      /* as Q_PUT, never answered: for a queue that a Q_PUT
                        reply said is unbounded (its bound never changes),
                        so the putter need not wait; the scheduler keeps
                        each requester's messages in order */
  DL_CO_WITHDRAW     /* give up a wait (interrupted, timed out, cancelled):
                        reqid: the waiting request's; n: its op; lease: its
                        lease.  A wait not met yet is dropped; an ACQ met
                        already releases its lease.  Never answered. */
};

/*
** Futures: VAR_SET, Q_PUT and Q_PUSH with lease 1 carry a future's key
** (bytes) instead of a value.  The primitive then holds the key's result
** (dl_coord_keys.hold) while it keeps it; whoever gets it is given a
** future of the key by the scheduler (give) before the primitive lets go
** (drop), so the result is never without a holder in between.
*/
#define DL_CO_FUTURE_KEY 1

/* Reply status (DL_M_COORD_REPLY). */
enum {
  DL_CO_OK = 0,
  DL_CO_TIMEOUT = 1,
  DL_CO_ERROR = 2,
  DL_CO_FUTURE = 3, /* OK, and bytes is the key of a future now held by
                       the requester */
  DL_CO_FLIST = 4   /* OK, a list in which some items are such keys */
};

/* A list reply: each item as a 4-byte little-endian length, then bytes;
   a length with its top bit set is a future's key (DL_CO_FLIST). */
#define DL_CO_LIST_FUTURE 0x80000000u

/* What the scheduler does with the keys of futures put in primitives. */
typedef struct dl_coord_keys {
  /* The primitive holds key's result from now on: 0, or -1 if there is no
     such key (it was released). */
  int (*hold)(void *ud, const char *key, size_t klen);
  /* ... holds it no longer. */
  void (*drop)(void *ud, const char *key, size_t klen);
  /* Requester `to` holds a future of key (called after the reply that
     names it, so that news of the key follows the reply). */
  void (*give)(void *ud, const char *key, size_t klen, int to);
} dl_coord_keys;

dl_coord *dl_coord_new(dl_coord_out out, void *ud);
void dl_coord_free(dl_coord *c);

/* Let futures be put in primitives (without it, a key is refused); keys
   is copied. */
void dl_coord_set_keys(dl_coord *c, const dl_coord_keys *keys);

/*
** Handle one DL_M_COORD message (dl_wire.h) from requester `from`, its
** type byte read.  0, or DL_EPROTO (malformed).
*/
int dl_coord_request(dl_coord *c, int from, dl_rd *r, double now);

/* Answer the waits whose timeout has passed at now. */
void dl_coord_tick(dl_coord *c, double now);

/* Requester `from` is gone: its leases are released, its waits dropped. */
void dl_coord_gone(dl_coord *c, int from, double now);

/* For the dashboard: one primitive in use. */
typedef struct dl_coord_info {
  const char *kind; /* "variable", "queue", "event", "semaphore" */
  const char *name; /* borrowed: valid until the next request */
  int holders;      /* leases held (semaphore), items (queue), set (0/1) */
  int waiters;
} dl_coord_info;

/* Fill at most max entries; returns how many primitives there are. */
int dl_coord_list(dl_coord *c, dl_coord_info *out, int max);

/* For the dashboard: one requester that waits on a primitive, or holds
   one of its leases. */
typedef struct dl_coord_party {
  int from;      /* -1: the client; else a worker id (one of its tasks) */
  int holds;     /* 1: holds lease; 0: waits, for op */
  int op;        /* DL_CO_*: what it waits to do */
  uint64_t lease;
  const char *task; /* the key of the task that waits or holds ("" for
                       the client) */
  size_t tlen;
} dl_coord_party;

/* fn(ud, info, parties, n) for each primitive, waiters first (in order),
   then holders; everything passed is borrowed for the call only. */
typedef void (*dl_coord_walk_fn)(void *ud, const dl_coord_info *info,
                                 const dl_coord_party *who, int n);
void dl_coord_walk(dl_coord *c, dl_coord_walk_fn fn, void *ud);

#endif

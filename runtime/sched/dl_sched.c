/*
** dl_sched.c -- the scheduler's task state machine.  See dl_sched.h.
*/
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>

#include "dl_map.h"
#include "dl_sched.h"
#include "dl_slab.h"
#include "dl_coord.h"
#include "dl_prof.h"
#include "dl_wire.h"

enum { T_WAITING, T_READY, T_PROCESSING, T_MEMORY, T_ERRED, T_RELEASED };

/* Tasks whose keys share a prefix ("inc-3f2a" -> "inc").  A task names
   its group by its index in the scheduler's table (gidx): 4 bytes, not a
   pointer's 8. */
typedef struct tgroup {
  char *name;
  size_t nlen;
  int64_t counts[6];
  int64_t total, done, erred;
  int colour;
  uint32_t idx; /* its index in dl_sched.gtab, plus 1 */
} tgroup;

/*
** Kept results (task.inl): most are small values whose encodings start
** with the same bytes (the codec's header: 9 of an integer's 11 to 13).
** The scheduler keeps the first IN_HEAD bytes of the first kept result
** (dl_sched.ihead), and a result that starts with them and has at most
** IN_TAIL bytes after them is kept in the record itself (insmall): no
** 16-byte block of the slab for it, 18 MB at a million tasks.  Results
** come inline up to 1 KiB (the worker's INLINE_MAX); none longer than
** IN_MAX is kept (inlen has 16 bits).
*/
#define IN_HEAD 9
#define IN_TAIL 8
#define IN_MAX 0xffff

typedef struct task task;
struct fnentry;

/*
** A reference payload: the first and last (up to) PREF_LEN bytes of a
** payload the scheduler saw.  The tasks of a map have payloads that
** differ only in their arguments, in the middle (an inc's 34 bytes: the
** codec's header, the table's, then the argument, then 14 bytes that
** name the function and the count): a task keeps the bytes between its
** payload's common start (pfx) and common end (sfx) with its reference
** (task.pref), 1 to 3 bytes for an inc instead of 34.  A payload that
** shares less than half of itself with the newest reference becomes the
** next one (at most PREF_MAX, each kept for the scheduler's life).
*/
/* The longest stem of keys kept as a counter (see sstem). */
#define DL_SCHED_STEM_MAX 200

#define PREF_LEN 127
#define PREF_MAX 256
struct pref {
  char head[PREF_LEN], tail[PREF_LEN];
  uint8_t nhead, ntail;
  uint8_t hasfn;              /* its task had one function, of fnhash */
  unsigned char fnhash[16];
  struct fnentry *fn; /* fnhash's entry while nfn > 0 (each of those
                         tasks counts in its refs: it stays) */
  size_t nfn;         /* live tasks with fnpref of this reference */
};
/*
** A task is one allocation (task_new): the record, then its key (and a
** NUL), its payload and (at a multiple of 8) pointers to its functions'
** entries, which live as long as it does, then pointers to its inputs,
** which never change (tkey, tpay, tfns and tdeps compute where; a
** function's pointer is 8 bytes where the hash was 16; the inputs in the
** block save the record a pointer, 8 bytes, and a sum of 8 inputs a
** block of its own).  At a million tasks in flight three small
** allocations less per task is about 100 bytes each.  The record, its
** dependents array (a single dependent is kept in the record itself) and
** its inline-result copy (unless it is small enough for the record:
** IN_HEAD) are blocks of the scheduler's slab (dl_slab.h: huge pages, no
** malloc header); each is freed with the size it was made with
** (task_size, tdcap, inlen + 1).
*/
struct task {
  /* Pointers and 8-byte fields first, then the 4-byte, then the
     bit-fields in 8 bytes: no padding (104 bytes; 112 before seq had 32
     bits and nfns and nwho 16 each, 120 before the group
     was an index and nbytes had 32 bits, 128 before qidx and
     pidx shared their 4 bytes and inlen, state, errkind and dcap became
     bit-fields, 136 before the inputs moved into the task's block, 144
     before prio and order had 32
     bits and the flags one bit each; it was 320, then 288 before plen,
     hidx and ridx had 32 bits, 272 before task_x, 176 before the
     processing lists were arrays, 152 before who and capdependents
     shrank). */
  union {
    task **many; /* dcap > 1: a block of the slab */
    task *one;   /* dcap 1: the one dependent, here (most tasks
                    have one: no 8-byte block for it) */
  } dependents;  /* read it through tdependents */
  struct task_x *x; /* what few tasks use (task_x), or NULL */
  union {
    int two[2]; /* nwho 1 or 2: the holders, here (a result fetched by a
                   peer has two: a quarter of bench h's tasks, whose
                   8-byte blocks were 2 MB of the heap at 1M tasks) */
    int *many;  /* nwho 3 or more: a block of the heap */
  } who;        /* the workers holding the result: read it through twho */
  union {
    char *p;              /* a block of the slab: inlen + 1 bytes */
    char tail[IN_TAIL];   /* insmall: the bytes after the shared head */
  } inl; /* a copy of its small result, as it came inline (tinl) */
  uint32_t seq;  /* its submission's number, the last tie-break between
                    ready tasks (seq_before: it wraps) */
  int32_t prio;  /* its priority and order (tprio, torder): in task_x */
  int32_t order; /* when either does not fit in 32 bits (wide) */
  uint32_t nbytes; /* its result's size (tnbytes): in task_x when it does
                      not fit in 32 bits (bignb) */
  uint32_t gidx;   /* its group (tgroup.idx, tgrp), or 0 */
  uint32_t klen;
  uint32_t plen; /* payloads of 4 GiB or more are refused (task_new) */
  union { /* a task is never READY and PROCESSING at once: set_state
             takes it out of the ready queue and its worker's array as
             it leaves either state, so each is 0 in every other */
    uint32_t qidx; /* READY, in the ready queue: position + 1 in the
                      heap, or in the run if inrun; 0 when in neither */
    uint32_t pidx; /* PROCESSING: position + 1 in its worker's proc, or
                      0 */
  };
  int ndeps;
  int ndependents;
  int waiting;  /* inputs not in memory */
  int npending; /* dependents WAITING/READY/PROCESSING */
  int want;     /* futures held: the client's and tasks' (cwant, wwho) */
  int cwant;    /* of want: the client's; the rest are task_x's kwant and
                   wwho's counts */
  int processing_on; /* worker id or -1 */
  uint16_t nfns; /* tasks of more functions are refused (task_new) */
  uint16_t nwho; /* a result has at most that many holders (who_add) */
  uint64_t inlen : 16;  /* of the kept copy (tinl); 0: none kept */
  uint64_t insmall : 1; /* the kept copy is in inl.tail */
  uint64_t state : 3;   /* T_* */
  uint64_t errkind : 3; /* DL_ERR_* */
  uint64_t dcap : 5; /* room in dependents: 0, or 1 << (dcap - 1) (tdcap) */
  uint64_t seceded : 1;  /* PROCESSING: its task waits (DL_M_SECEDE), so
                            it is not counted in its worker's inflight */
  uint64_t restoring : 1;    /* PROCESSING: a worker stores inl (no run) */
  uint64_t steal_denied : 1; /* PROCESSING: its worker refused to hand it
                                back */
  uint64_t scattered : 1;    /* it has no payload (tpay gives NULL) */
  uint64_t inrun : 1;        /* qidx is a position in the run, not the
                                heap */
  uint64_t wide : 1;         /* prio and order are task_x's */
  uint64_t bignb : 1;        /* nbytes is task_x's */
  /* Its payload is pref[pref].head's first pfx bytes, then the plen
     bytes stored (tpay), then pref[pref].tail's last sfx bytes (see
     pref). */
  uint64_t pfx : 7;
  uint64_t sfx : 7;
  uint64_t pref : 8;
  uint64_t fnpref : 1; /* its one function is its reference's (fnhash):
                          no pointer kept (tfn) */
  uint64_t stemmed : 1; /* its key is a stem's and a counter (sstem): klen
                           is the stem's number, the counter's 4 bytes
                           follow the record (tk) */
};

/* The key (NUL-terminated, or a stem's counter), the payload and the
   nfns function hashes (16 bytes each) follow the record in its block
   (task_new): computed, not pointed at, 24 bytes a task less. */
static inline char *tkeyat(const task *t) { return (char *)(t + 1); }
_Static_assert(sizeof(void *) != 8 || sizeof(task) == 104,
               "the task record's size, as measured");
/* The counter of a stemmed key: 4 bytes; its digits in the key. */
#define CTR_LEN sizeof(uint32_t)
/* The bytes the key takes in a block of klen (or a stem's number) */
static inline size_t tkbytes(size_t klen, int stemmed) {
  return stemmed ? CTR_LEN : klen + 1;
}
static inline const char *tpay(const task *t) {
  return t->scattered ? NULL : tkeyat(t) + tkbytes(t->klen, t->stemmed);
}
/* The room a reader gives tk. */
#define TKEYBUF DL_IMAP_KEYBUF
/* t's key, NUL-terminated, and its length: in the block, or (stemmed)
   written into buf. */
static const char *tk(const dl_sched *s, const task *t, char buf[TKEYBUF],
                      size_t *len);
/* As tk, but not always NUL-terminated: the key of the message being
   handled when that message is about t (dl_sched.hand). */
static const char *tkl(const dl_sched *s, const task *t, char buf[TKEYBUF],
                       size_t *len);
/* Put a message of type that names t's key into b. */
static void put_tkey_msg(const dl_sched *s, dl_buf *b, unsigned type,
                         const task *t);
/* Room in t's dependents: 0, 1 (in the record), or a power of two. */
static inline int tdcap(const task *t) {
  return t->dcap ? 1 << (t->dcap - 1) : 0;
}

/* t's dependents (ndependents of them). */
static inline task **tdependents(task *t) {
  return t->dcap == 1 ? &t->dependents.one : t->dependents.many;
}

/* The workers holding t's result (nwho of them). */
static inline int *twho(task *t) {
  return t->nwho > 2 ? t->who.many : t->who.two;
}

/* The length of t's kept result (0: none). */
static inline size_t tinlen(const task *t) { return t->inlen; }

/* t's kept result (tinlen bytes), or NULL: borrowed, valid until t
   changes, or (when small) put together in buf, valid while buf is. */
static const char *tinl(const dl_sched *s, const task *t,
                        char buf[IN_HEAD + IN_TAIL]);

/* Where t's function entries start in its block: after its payload, at
   a multiple of 8. */
static inline size_t tfns_at(size_t kbytes, size_t plen) {
  return (sizeof(task) + kbytes + plen + 7) & ~(size_t)7;
}

/* t's functions (nfns): pointers to their entries, each counting t in its
   refs (NULL for a hash the scheduler did not know at submit); none
   when fnpref (tfn). */
static inline struct fnentry **tfns(const task *t) {
  return (struct fnentry **)((char *)t +
                             tfns_at(tkbytes(t->klen, t->stemmed), t->plen));
}

/* t's i-th function's entry, or NULL. */
static struct fnentry *tfn(const dl_sched *s, const task *t, int i);

/* t's inputs (ndeps): after its function entries, in its block. */
static inline task **tdeps(const task *t) {
  return (task **)(tfns(t) + (t->fnpref ? 0 : t->nfns));
}

/*
** The fields few tasks use: set at submit only for a task with
** restrictions, retries or a timeout; later only when it fails, is
** retried, stolen, waits (secedes) or is held by tasks' futures or
** Variables.  A block of the slab, made by task_xw the first time one of
** them is set, freed with the task.  At a million tasks in flight this
** keeps 72 bytes per task out of the record.
*/
typedef struct task_x {
  int64_t prio, order; /* when the task is wide (see task.prio) */
  uint64_t nbytes;     /* when the task's bignb is set */
  int *restrict_w;  /* worker ids, or NULL */
  int *wwho;        /* of want: {worker id, count} pairs, tasks' futures */
  char *waits_on;   /* seceded: the key its task waits for (owned), or NULL */
  char *err;        /* error record (dl_put_err_rec), owned */
  double not_before;
  task *next_delayed;
  int nrestrict;
  int nwwho;        /* pairs in wwho */
  uint32_t errlen;
  int retries;
  int tries;        /* workers it was running on when they died */
  uint32_t timeout_ms;
  int steal_to;     /* worker id asking for it, 0 if none */
  int kwant;        /* of want: held by Variables and Queues (dl_coord.h) */
} task_x;

/* Read t's rare fields: all zero when it has none. */
static const task_x tx_none;
static inline const task_x *tx(const task *t) {
  return t->x ? t->x : &tx_none;
}

/* t's result's size. */
static inline uint64_t tnbytes(const task *t) {
  return t->bignb ? t->x->nbytes : t->nbytes;
}

/* t's priority and order. */
static inline int64_t tprio(const task *t) {
  return t->wide ? t->x->prio : t->prio;
}
static inline int64_t torder(const task *t) {
  return t->wide ? t->x->order : t->order;
}

typedef struct sworker {
  dl_sched_winfo info;
  dl_map fns_sent; /* hash -> the scheduler's fn entry */
  int alive;
  int steals; /* steal requests made for this worker, not yet answered */
  /* Tasks PROCESSING here, in the order they were assigned, at
     [phead, nproc): an array and an index in each task (pidx), not a list
     through the tasks.  A task that leaves leaves NULL behind (as in the
     run), until phead passes it or plink packs the array. */
  task **proc;
  uint32_t phead, nproc, capproc, plive;
  char reason[96]; /* why it is being removed, "" for "its link closed" */
  dl_sched_sample hist[DL_SCHED_HISTORY]; /* ring, see dl_sched_history */
  uint64_t nhist; /* samples ever taken */
  dl_prof *prof;  /* its tasks' profile (DL_M_PROFILE), or NULL */
} sworker;

/* A GET sent to a worker for the client or a task, not yet answered. */
typedef struct pget {
  uint64_t reqid;
  char *key;
  size_t klen;
  int wid;
  int to; /* who asked: -1 the client, else the worker whose task did */
} pget;

/*
** A function's bytecode, kept while a task needs it.  refs counts the
** tasks that name it.  senders are the clients that sent it and may name
** its hash without the bytecode (each with the DL_M_FN_GONE messages it has
** not answered yet).  At zero refs every sender not told yet is told
** (DL_M_FN_GONE); a sender leaves the list when it has answered every one
** (DL_M_FN_FORGET), or when it is gone.  The entry is dropped here and on
** every worker when refs is zero and no sender is left: until then, what a
** client submitted before its answer may still name the hash.
*/
typedef struct fnsender {
  int rid;     /* -1 the client, or a client id (DL_SCHED_CLIENT_BASE..) */
  int pending; /* DL_M_FN_GONE sent, not answered yet */
} fnsender;

typedef struct fnentry {
  unsigned char hash[16];
  char *code;
  size_t len;
  int64_t refs;
  fnsender *senders;
  int nsenders;
} fnentry;

struct dl_sched {
  dl_sched_io io;
  dl_prof *prof; /* every worker's profile, the departed ones' too */
  dl_imap tasks; /* key -> task (the key follows the record: tkey) */
  dl_map fns;
  sworker **workers;
  int nworkers;
  task **heap;
  size_t nheap, capheap;
  /* Ready tasks that came in order, oldest first (see rq_push); removed
     ones leave NULL behind until the head passes them. */
  task **run;
  size_t rhead, rlen, rcap, rlive;
  /* of the task queued last in the run: */
  int64_t last_prio, last_order;
  int last_inputs;
  uint32_t last_seq;
  task *delayed;
  uint64_t seq;
  double avg_duration; /* EWMA of task run time, seconds; < 0 unknown */
  int allowed_failures;
  int64_t counts[6];
  pget *pgets;
  size_t npgets, cappgets;
  dl_map groups; /* prefix -> tgroup (kept for the scheduler's life) */
  tgroup **gtab; /* by index (task.gidx - 1); NULL where free */
  uint32_t ngtab, capgtab;
  uint32_t *gfree; /* free indexes of gtab */
  uint32_t nfree, capfree;
  dl_slab slab;  /* task records and their small arrays (see task) */
  dl_buf fnbuf;  /* send_compute's scratch: the task's function hashes */
  dl_sched_event *events; /* ring of the last DL_SCHED_EVENTS completions */
  uint64_t nevents;       /* events ever recorded */
  /* scratch stack for the iterative graph walks */
  task **stack;
  size_t nstack, capstack;
  size_t kept; /* bytes of small results kept (task.inl) */
  char ihead[IN_HEAD]; /* the head of the kept results (task.inl) */
  int nihead;          /* 0 until the first kept result sets ihead */
  /* Reference payloads (see pref_cut): a task keeps only what its
     payload does not share with one of them at its start and end. */
  struct pref *prefs;
  int nprefs;
  /* Key stems (sstem): stem_ids finds a stem's number + 1; free ones are
     linked through their len from sfree (number + 1, 0: none). */
  struct sstem *stems;
  uint32_t nstems, capstems, sfree;
  dl_map stem_ids;
  char cand[DL_SCHED_STEM_MAX]; /* the stem of the last key not stemmed */
  size_t ncand;
  uint32_t last_stem; /* the number + 1 of the stem stem_of gave last */
  /* The task of the message being handled (on_done, on_release) and that
     message's key: tkl reads it there, not writing the key out again.
     NULL outside those handlers, and once the task is freed. */
  const task *hand;
  const char *hand_key;
  size_t hand_klen;
  double hb_timeout;  /* seconds; 0: workers are never timed out */
  double last_check;  /* of dl_sched_silent, to notice our own stops */
  double stall_since; /* every worker paused with work pending since; 0 */
  dl_sched_winfo departed[DL_SCHED_DEPARTED]; /* ring of the last gone */
  uint64_t ndeparted; /* workers ever gone */
  int freeing; /* dl_sched_free runs: tell nobody anything */
  dl_coord *coord; /* Variables, Queues, Events, Semaphores */
  double now;      /* of the frame being handled */
  int from; /* whose client messages are being handled: -1 the client's,
               else the worker id whose tasks sent them (get_client) */
};

/* Small results that came inline are kept, up to this many bytes in all:
   a value lost with its worker is then stored again from the copy instead
   of being recomputed (the client already holds that very value). */
#define KEEP_MAX ((size_t)64 << 20)

/* ---------------------------------------------------------------- utils */

#define RD(x)                \
  do {                       \
    if (x) return DL_EPROTO; \
  } while (0)

static void *xalloc(size_t n) { return dl_realloc(NULL, n ? n : 1); }

/* t's rare fields, to write: made (zeroed) the first time; NULL when out
   of memory. */
static task_x *task_xw(dl_sched *s, task *t) {
  if (t->x == NULL) {
    t->x = dl_slab_alloc(&s->slab, sizeof(task_x));
    if (t->x) memset(t->x, 0, sizeof *t->x);
  }
  return t->x;
}

/* t's result has n bytes: in the record, or in task_x past 32 bits (out
   of memory there: the most the record holds). */
static void set_nbytes(dl_sched *s, task *t, uint64_t n) {
  task_x *x;
  t->bignb = 0;
  if (n <= UINT32_MAX) {
    t->nbytes = (uint32_t)n;
  } else if ((x = task_xw(s, t)) != NULL) {
    x->nbytes = n;
    t->bignb = 1;
  } else {
    t->nbytes = UINT32_MAX;
  }
}

/* t's group, or NULL. */
static inline tgroup *tgrp(const dl_sched *s, const task *t) {
  return t->gidx ? s->gtab[t->gidx - 1] : NULL;
}

/* Give g an index in the group table: 0 or DL_ENOMEM. */
static int gtab_add(dl_sched *s, tgroup *g) {
  uint32_t i;
  if (s->nfree > 0) {
    i = s->gfree[--s->nfree];
  } else {
    if (s->ngtab == s->capgtab) {
      uint32_t nc = s->capgtab ? s->capgtab * 2 : 16;
      tgroup **n = nc > s->capgtab ? dl_realloc(s->gtab, sizeof *n * nc)
                                   : NULL;
      if (n == NULL) return DL_ENOMEM;
      s->gtab = n;
      s->capgtab = nc;
    }
    i = s->ngtab++;
  }
  s->gtab[i] = g;
  g->idx = i + 1;
  return 0;
}

/* g leaves the group table (its index is free for the next group); out
   of memory, the index is lost, not reused. */
static void gtab_del(dl_sched *s, tgroup *g) {
  s->gtab[g->idx - 1] = NULL;
  if (s->nfree == s->capfree) {
    uint32_t nc = s->capfree ? s->capfree * 2 : 16;
    uint32_t *n = nc > s->capfree ? dl_realloc(s->gfree, sizeof *n * nc)
                                  : NULL;
    if (n == NULL) return;
    s->gfree = n;
    s->capfree = nc;
  }
  s->gfree[s->nfree++] = g->idx - 1;
}

static char *dupbytes(const char *p, size_t n) {
  char *d = xalloc(n + 1);
  if (d == NULL) return NULL;
  if (n) memcpy(d, p, n);
  d[n] = '\0';
  return d;
}

static sworker *find_worker(dl_sched *s, int wid);

/* Pack w's PROCESSING tasks at the start of its array, in order. */
static void ppack(struct sworker *w) {
  uint32_t i, n = 0;
  for (i = w->phead; i < w->nproc; i++)
    if (w->proc[i]) {
      task *t = w->proc[i];
      w->proc[n++] = t;
      t->pidx = n;
    }
  w->phead = 0;
  w->nproc = n;
}

/* The per-worker array of PROCESSING tasks (for stealing), in the order
   they were assigned.  Out of memory, t is left out: it is then never
   stolen. */
static void plink(struct sworker *w, task *t) {
  if (w->nproc == w->capproc) {
    if (w->capproc && w->plive <= w->capproc / 2) { /* half holes: pack */
      ppack(w);
    } else {
      uint32_t nc = w->capproc ? w->capproc * 2 : 64;
      task **n = nc > w->capproc ? dl_realloc(w->proc, sizeof *n * nc)
                                 : NULL;
      if (n == NULL) return;
      w->proc = n;
      w->capproc = nc;
    }
  }
  w->proc[w->nproc++] = t;
  w->plive++;
  t->pidx = w->nproc;
}

static int in_proc(const sworker *w, const task *t) {
  return t->pidx > w->phead && t->pidx <= w->nproc &&
         w->proc[t->pidx - 1] == t;
}

/* Take t out of its worker's array: the worker it runs on, or (when its
   processing_on was already changed) the one whose array holds it. */
static void punlink(dl_sched *s, task *t) {
  sworker *w;
  int k;
  if (t->pidx == 0) return;
  w = find_worker(s, t->processing_on);
  for (k = 0; (w == NULL || !in_proc(w, t)) && k < s->nworkers; k++)
    w = s->workers[k];
  if (w == NULL || !in_proc(w, t)) {
    t->pidx = 0;
    return;
  }
  w->proc[t->pidx - 1] = NULL;
  t->pidx = 0;
  if (--w->plive == 0) {
    w->phead = w->nproc = 0;
    return;
  }
  while (w->proc[w->phead] == NULL) w->phead++;
  while (w->proc[w->nproc - 1] == NULL) w->nproc--;
}

static void rq_remove(dl_sched *s, task *t);

/* t moves to state st; it leaves the ready queue as it leaves READY, and
   its worker's array as it leaves PROCESSING (qidx and pidx share their
   bytes: see task). */
static void set_state(dl_sched *s, task *t, int st) {
  if (t->state == T_READY && st != T_READY) rq_remove(s, t);
  if (t->state == T_PROCESSING && st != T_PROCESSING) punlink(s, t);
  s->counts[t->state]--;
  s->counts[st]++;
  if (t->gidx) {
    tgroup *g = tgrp(s, t);
    g->counts[t->state]--;
    g->counts[st]++;
    if (st == T_MEMORY && t->state == T_PROCESSING) g->done++;
    if (st == T_ERRED) g->erred++;
  }
  t->state = st;
}

/*
** A colour for a new group named by the n bytes at name: the slot its
** name hashes to, or the next one no live group has, so that groups shown
** together look different and a group keeps its colour while it lives.
*/
static int pick_colour(dl_sched *s, const char *name, size_t n) {
  unsigned used = 0, h = 2166136261u;
  size_t i = 0, k;
  tgroup *g;
  int c;
  for (k = 0; k < n; k++) h = (h ^ (unsigned char)name[k]) * 16777619u;
  while ((g = dl_map_next(&s->groups, &i)) != NULL) used |= 1u << g->colour;
  c = (int)(h % DL_SCHED_COLOURS);
  for (k = 0; k < DL_SCHED_COLOURS && (used >> c & 1); k++)
    c = (c + 1) % DL_SCHED_COLOURS;
  return c;
}

/* Count a new task (in state t->state) in the totals and its group; k:
   its key (kl bytes, from the message that made it). */
static void count_new(dl_sched *s, task *t, const char *k, size_t kl) {
  size_t n;
  tgroup *g;
  n = kl;
  while (n > 0 && k[n - 1] != '-') n--;
  n = n > 1 ? n - 1 : kl; /* "inc-3f2a" -> "inc"; no dash: all */
  s->counts[t->state]++;
  g = dl_map_get(&s->groups, k, n);
  if (g == NULL) {
    g = xalloc(sizeof *g);
    if (g == NULL) return;
    memset(g, 0, sizeof *g);
    g->name = dupbytes(k, n);
    g->nlen = n;
    g->colour = pick_colour(s, k, n);
    if (g->name == NULL || gtab_add(s, g)) {
      dl_free(g->name);
      dl_free(g);
      return;
    }
    if (dl_map_put(&s->groups, g->name, n, g)) {
      gtab_del(s, g);
      dl_free(g->name);
      dl_free(g);
      return;
    }
  }
  t->gidx = g->idx;
  g->total++;
  g->counts[t->state]++;
}

/* Copy n bytes at p into the array d of size dn, cut to fit. */
static void copy_cut(char *d, size_t dn, const char *p, size_t n) {
  if (n >= dn) n = dn - 1;
  memcpy(d, p, n);
  d[n] = '\0';
}

/* Forget a task's place in the counts; a group left without tasks goes. */
static void count_gone(dl_sched *s, task *t) {
  tgroup *g = tgrp(s, t);
  int k;
  s->counts[t->state]--;
  if (g == NULL) return;
  g->counts[t->state]--;
  t->gidx = 0;
  for (k = 0; k < 6; k++)
    if (g->counts[k] > 0) return;
  if (s->freeing) return; /* dl_sched_free frees every group */
  dl_map_del(&s->groups, g->name, g->nlen);
  gtab_del(s, g);
  dl_free(g->name);
  dl_free(g);
}

/*
** The event ring's memory: whole 2 MiB pages where the system gives them
** (MADV_HUGEPAGE).  Its 2.3 MiB are first written during the first 10,000
** tasks after a start, and one fault per 4 KiB page cost those tasks
** about 580 faults, at 10-50 us each on a virtual machine.  Only the
** whole 2 MiB pages the ring fills are marked: its last 0.2 MiB stays on
** 4 KiB pages (about 50 faults), not in a huge page that would be 1.8 MiB
** of untouched memory counted resident.  Its first EVENTS_HEAD bytes are
** on 4 KiB pages too, below the first huge page: a cluster's first task
** (a script's only one; bench a) then faults one 4 KiB page, not a 2 MiB
** page the kernel must clear first (0.2-0.3 ms on that task's way back).
*/
#define EVENTS_HUGE ((size_t)2 << 20)
#define EVENTS_HEAD ((size_t)128 << 10)
#define EVENTS_BYTES (sizeof(dl_sched_event) * DL_SCHED_EVENTS)
#define EVENTS_SPAN (((EVENTS_BYTES) + 4095) & ~(size_t)4095)

static dl_sched_event *events_alloc(void) {
  size_t map = EVENTS_SPAN + EVENTS_HUGE;
  char *r = mmap(NULL, map, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *a, *base;
  if (r == MAP_FAILED) return NULL;
  /* a: the first 2 MiB boundary with room for the head below it */
  a = (char *)(((uintptr_t)r + EVENTS_HEAD + EVENTS_HUGE - 1) &
               ~(uintptr_t)(EVENTS_HUGE - 1));
  base = a - EVENTS_HEAD;
  if (base > r) munmap(r, (size_t)(base - r));
  if (base + EVENTS_SPAN < r + map)
    munmap(base + EVENTS_SPAN, (size_t)(r + map - (base + EVENTS_SPAN)));
#ifdef MADV_HUGEPAGE
  madvise(a, (EVENTS_BYTES - EVENTS_HEAD) & ~(EVENTS_HUGE - 1),
          MADV_HUGEPAGE);
#endif
  return (dl_sched_event *)base;
}

static void events_free(dl_sched_event *e) {
  if (e) munmap(e, EVENTS_SPAN);
}

/* Record a run of t on worker wid for the task stream; rec (rlen bytes,
   NULL when ok) is the error record of a failure. */
static void record_event(dl_sched *s, task *t, int wid, double start,
                         double stop, int ok, const char *rec, size_t rlen) {
  dl_sched_event *e;
  char kb[TKEYBUF];
  size_t kl;
  const char *k;
  if (s->events == NULL) {
    s->events = events_alloc();
    if (s->events == NULL) return;
  }
  e = &s->events[s->nevents % DL_SCHED_EVENTS];
  k = tkl(s, t, kb, &kl);
  copy_cut(e->key, sizeof e->key, k, kl);
  if (t->gidx) copy_cut(e->group, sizeof e->group, tgrp(s, t)->name,
                        tgrp(s, t)->nlen);
  else e->group[0] = '\0';
  e->err[0] = '\0';
  if (!ok && rec) { /* kind, message, ...: keep the message's first line */
    dl_rd r;
    uint64_t kind;
    const char *msg;
    size_t mlen;
    dl_rd_init(&r, rec, rlen);
    if (dl_rd_uv(&r, &kind) == 0 && dl_rd_str(&r, &msg, &mlen) == 0) {
      const char *nl = memchr(msg, '\n', mlen);
      copy_cut(e->err, sizeof e->err, msg, nl ? (size_t)(nl - msg) : mlen);
    }
  }
  e->worker = wid;
  e->start = start;
  e->stop = stop;
  e->nbytes = ok ? tnbytes(t) : 0;
  e->ok = ok;
  s->nevents++;
}

/* Append t to the growable array *a (length *n, capacity *cap). */
static int push_task(task ***a, size_t *n, size_t *cap, task *t) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    task **na = dl_realloc(*a, nc * sizeof *na);
    if (na == NULL) return DL_ENOMEM;
    *a = na;
    *cap = nc;
  }
  (*a)[(*n)++] = t;
  return 0;
}

static int push_stack(dl_sched *s, task *t) {
  return push_task(&s->stack, &s->nstack, &s->capstack, t);
}

static sworker *find_worker(dl_sched *s, int wid) {
  int i;
  for (i = 0; i < s->nworkers; i++)
    if (s->workers[i]->info.id == wid) return s->workers[i];
  return NULL;
}

static dl_buf *wout(dl_sched *s, int wid) {
  return s->io.worker_out(s->io.ud, wid);
}

static dl_buf *cout(dl_sched *s) { return s->io.client_out(s->io.ud); }

static int coord_hold(void *ud, const char *key, size_t klen);
static void coord_drop(void *ud, const char *key, size_t klen);
static void coord_give(void *ud, const char *key, size_t klen, int to);

static dl_buf *coord_out(void *ud, int to) {
  dl_sched *s = ud;
  return to < 0 ? cout(s) : wout(s, to);
}

/* The buffer of whoever sent the client message being handled. */
static dl_buf *rout(dl_sched *s) {
  return s->from < 0 ? cout(s) : wout(s, s->from);
}

/* The requester of the message being handled holds one more future of t. */
static void want_add(dl_sched *s, task *t) {
  int i, *n;
  task_x *x;
  t->want++;
  if (s->from < 0) {
    t->cwant++;
    return;
  }
  /* counted in want only when out of memory: never told, never lost */
  if ((x = task_xw(s, t)) == NULL) return;
  for (i = 0; i < x->nwwho; i++)
    if (x->wwho[2 * i] == s->from) {
      x->wwho[2 * i + 1]++;
      return;
    }
  n = dl_realloc(x->wwho, sizeof(int) * 2 * (size_t)(x->nwwho + 1));
  if (n == NULL) return;
  x->wwho = n;
  x->wwho[2 * x->nwwho] = s->from;
  x->wwho[2 * x->nwwho + 1] = 1;
  x->nwwho++;
}

/* The requester dropped one future of t: 0, or -1 if it held none. */
static int want_drop(dl_sched *s, task *t) {
  int i;
  if (t->want <= 0) return -1;
  if (s->from < 0) {
    if (t->cwant <= 0) return -1;
    t->cwant--;
    t->want--;
    return 0;
  }
  for (i = 0; t->x && i < t->x->nwwho; i++) {
    task_x *x = t->x;
    if (x->wwho[2 * i] == s->from) {
      if (--x->wwho[2 * i + 1] == 0) {
        x->wwho[2 * i] = x->wwho[2 * (x->nwwho - 1)];
        x->wwho[2 * i + 1] = x->wwho[2 * (x->nwwho - 1) + 1];
        x->nwwho--;
      }
      t->want--;
      return 0;
    }
  }
  return t->want > t->cwant + tx(t)->kwant ? (t->want--, 0) : -1;
}

/* An error record of the scheduler's own (no traceback, no worker). */
static void err_rec(dl_buf *b, int kind, const char *msg) {
  dl_put_err_rec(b, kind, msg, NULL, NULL, NULL, 0);
}

/* ----------------------------------------------------------------- heap */

/*
** Does a task of prio, order, seq (and inputs: has some) run before b?
** Higher prio first, then lower order, then a task with inputs before one
** without, then FIFO.  A task with inputs consumes values already made
** (in memory now, or soon spilled): running it before the next producer
** streams a map of producers followed by a map of their consumers (make
** a block, check it, make the next), where FIFO would make every block
** first and spill all but the last few to read them back.  Dask's
** scheduler does the same: tasks with no inputs wait in its queue until a
** worker has a free thread, while the others go to their workers at once.
*/
/* Was seq a submitted before seq b?  Numbers wrap at 2^32: this holds
   while the ready tasks' were given within 2^31 submissions of each
   other (a task left ready while two billion more came would merely run
   out of FIFO order). */
static int seq_before(uint32_t a, uint32_t b) { return (int32_t)(a - b) < 0; }

static int before_v(int64_t prio, int64_t order, int inputs, uint32_t seq,
                    const task *b) {
  int64_t bp = tprio(b), bo;
  if (prio != bp) return prio > bp;
  bo = torder(b);
  if (order != bo) return order < bo;
  if (inputs != (b->ndeps > 0)) return inputs;
  return seq_before(seq, b->seq);
}

/* Does a run before b? */
static int before(const task *a, const task *b) {
  return before_v(tprio(a), torder(a), a->ndeps > 0, a->seq, b);
}

static void heap_set(dl_sched *s, size_t i, task *t) {
  s->heap[i] = t;
  t->qidx = (uint32_t)(i + 1);
  t->inrun = 0;
}

static void heap_up(dl_sched *s, size_t i) {
  task *t = s->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!before(t, s->heap[p])) break;
    heap_set(s, i, s->heap[p]);
    i = p;
  }
  heap_set(s, i, t);
}

static void heap_down(dl_sched *s, size_t i) {
  task *t = s->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    task *best = t;
    if (l < s->nheap && before(s->heap[l], best)) m = l, best = s->heap[l];
    if (r < s->nheap && before(s->heap[r], best)) m = r, best = s->heap[r];
    if (m == i) break;
    heap_set(s, i, s->heap[m]);
    i = m;
  }
  heap_set(s, i, t);
}

static int heap_push(dl_sched *s, task *t) {
  if (s->nheap == s->capheap) {
    size_t nc = s->capheap ? s->capheap * 2 : 256;
    task **n = dl_realloc(s->heap, nc * sizeof *n);
    if (n == NULL) return DL_ENOMEM;
    s->heap = n;
    s->capheap = nc;
  }
  heap_set(s, s->nheap++, t);
  heap_up(s, s->nheap - 1);
  return 0;
}

static void heap_remove(dl_sched *s, task *t) {
  size_t i;
  if (t->qidx == 0 || t->inrun) return;
  i = t->qidx - 1;
  t->qidx = 0;
  s->nheap--;
  if (i == s->nheap) return;
  {
    task *m = s->heap[s->nheap];
    heap_set(s, i, m);
    heap_up(s, i);
    heap_down(s, m->qidx - 1);
  }
}

/*
** The ready queue: the heap above, and beside it the run, a FIFO of tasks
** that were each queued after (in before() order) the one queued in the
** run before them, as the tasks of one map or submit loop are.  Those cost
** O(1) to queue and to take, and touch no other task; the next task is
** the better of the run's head and the heap's top.
*/
static int rq_push(dl_sched *s, task *t) {
  if (s->rlive == 0) s->rhead = s->rlen = 0;
  if (s->rlive > 0 &&
      !before_v(s->last_prio, s->last_order, s->last_inputs, s->last_seq, t))
    return heap_push(s, t);
  if (s->rlen == s->rcap) {
    if (s->rhead > 0) { /* slide the live part down */
      size_t i, n = s->rlen - s->rhead;
      memmove(s->run, s->run + s->rhead, n * sizeof *s->run);
      s->rhead = 0;
      s->rlen = n;
      for (i = 0; i < n; i++)
        if (s->run[i]) s->run[i]->qidx = (uint32_t)(i + 1);
    }
    if (s->rlen == s->rcap) {
      size_t nc = s->rcap ? s->rcap * 2 : 256;
      task **n = dl_realloc(s->run, nc * sizeof *n);
      if (n == NULL) return heap_push(s, t);
      s->run = n;
      s->rcap = nc;
    }
  }
  if (s->rlen >= UINT32_MAX) return heap_push(s, t); /* qidx is 32 bits */
  s->run[s->rlen++] = t;
  t->qidx = (uint32_t)s->rlen;
  t->inrun = 1;
  s->rlive++;
  s->last_prio = tprio(t);
  s->last_order = torder(t);
  s->last_inputs = t->ndeps > 0;
  s->last_seq = t->seq;
  return 0;
}

static size_t rq_len(const dl_sched *s) { return s->nheap + s->rlive; }

/* The ready task to run next, or NULL. */
static task *rq_peek(dl_sched *s) {
  task *h = s->nheap ? s->heap[0] : NULL, *r;
  if (s->rlive == 0) return h;
  while (s->run[s->rhead] == NULL) s->rhead++;
  r = s->run[s->rhead];
  return h && before(h, r) ? h : r;
}

static void rq_remove(dl_sched *s, task *t) {
  if (t->state != T_READY) return; /* qidx is pidx or 0 */
  if (t->qidx && !t->inrun) {
    heap_remove(s, t);
  } else if (t->qidx) {
    s->run[t->qidx - 1] = NULL;
    t->qidx = 0;
    t->inrun = 0;
    if (--s->rlive == 0) s->rhead = s->rlen = 0;
  }
}

/* -------------------------------------------------------- client output */

/* Tell the client t is done; inl/ilen: the value itself when small. */
static void notify_done_inline(dl_sched *s, task *t, const char *inl,
                               size_t ilen) {
  dl_buf *b;
  int i;
  if (t->want <= 0) return;
  for (i = -1; i < tx(t)->nwwho; i++) {
    dl_msg_key_done m;
    char kb[TKEYBUF];
    if (i < 0 && t->cwant <= 0) continue;
    b = i < 0 ? cout(s) : wout(s, t->x->wwho[2 * i]);
    if (b == NULL) continue;
    m.key = tkl(s, t, kb, &m.klen);
    m.nbytes = tnbytes(t);
    m.inl = inl;
    m.ilen = ilen;
    dl_put_key_done(b, &m);
  }
}

static void notify_done(dl_sched *s, task *t) {
  notify_done_inline(s, t, "", 0);
}

static void notify_err(dl_sched *s, task *t) {
  dl_buf *b;
  int i;
  if (t->want <= 0) return;
  for (i = -1; i < tx(t)->nwwho; i++) {
    dl_msg_err m;
    char kb[TKEYBUF];
    if (i < 0 && t->cwant <= 0) continue;
    b = i < 0 ? cout(s) : wout(s, t->x->wwho[2 * i]);
    if (b == NULL) continue;
    m.key = tk(s, t, kb, &m.klen);
    m.kind = (uint64_t)t->errkind;
    m.rec = tx(t)->err;
    m.rlen = tx(t)->errlen;
    dl_put_err_msg(b, DL_M_KEY_ERR, &m);
  }
}

/* t leaves PROCESSING on w: w has one task less in flight, unless t had
   seceded (its task waited, and stopped counting then). */
static void unload(sworker *w, task *t) {
  if (w && !t->seceded) w->info.inflight--;
  t->seceded = 0;
  if (t->x) {
    dl_free(t->x->waits_on);
    t->x->waits_on = NULL;
  }
}

/* ----------------------------------------------------------- transitions */

/*
** A worker's stored count and managed bytes, kept current between its
** heartbeats (which bring the true figures): delta is +1 when wid reports
** t's result stored, -1 when it is told to free it.  So scheduler_info()
** right after a wait already shows what the workers hold.
*/
static void held(dl_sched *s, int wid, const task *t, int delta) {
  sworker *w = find_worker(s, wid);
  if (w == NULL) return;
  w->info.stored += delta;
  w->info.managed += delta * (int64_t)tnbytes(t);
  if (w->info.stored < 0) w->info.stored = 0;
  if (w->info.managed < 0) w->info.managed = 0;
}

/* No worker holds t's result any more (as far as the record goes). */
static void who_clear(task *t) {
  if (t->nwho > 2) dl_free(t->who.many);
  t->nwho = 0;
}

/* The k-th holder of t's result is gone: the last takes its place. */
static void who_del(task *t, int k) {
  int *w = twho(t);
  w[k] = w[t->nwho - 1];
  if (t->nwho == 3) { /* back in the record */
    int two[2];
    two[0] = w[0];
    two[1] = w[1];
    dl_free(t->who.many);
    t->who.two[0] = two[0];
    t->who.two[1] = two[1];
  }
  t->nwho--;
}

static void free_data(dl_sched *s, task *t) {
  int i;
  for (i = 0; i < t->nwho; i++) {
    int wid = twho(t)[i];
    dl_buf *b = wout(s, wid);
    held(s, wid, t, -1);
    if (b) put_tkey_msg(s, b, DL_M_FREE, t);
  }
  who_clear(t);
}

static fnentry *tfn(const dl_sched *s, const task *t, int i) {
  return t->fnpref ? s->prefs[t->pref].fn : tfns(t)[i];
}

/* Tasks naming a function: one more, or one less (see fnentry). */
static void fns_ref(const dl_sched *s, const task *t) {
  int i;
  for (i = 0; i < t->nfns; i++) {
    fnentry *f = tfn(s, t, i);
    if (f) f->refs++;
  }
}

static int is_client(int rid) {
  return rid < 0 || rid >= DL_SCHED_CLIENT_BASE;
}

/* f is needed by no task and known to no client: drop it here and on
   the workers it was sent to. */
static void fn_drop(dl_sched *s, fnentry *f) {
  int k;
  for (k = 0; k < s->nworkers; k++) {
    sworker *w = s->workers[k];
    if (dl_map_del(&w->fns_sent, (const char *)f->hash, 16)) {
      dl_buf *b = wout(s, w->info.id);
      if (b) dl_put_hash_msg(b, DL_M_FUNC_FREE, f->hash);
    }
  }
  dl_map_del(&s->fns, (const char *)f->hash, 16);
  dl_free(f->senders);
  dl_free(f->code);
  dl_free(f);
}

/* Tell every sender of f not told yet that no task needs it. */
static void fn_gone(dl_sched *s, fnentry *f) {
  int i;
  for (i = 0; i < f->nsenders; i++) {
    fnsender *x = &f->senders[i];
    dl_buf *b;
    if (x->pending > 0) continue; /* its answer is on the way */
    b = x->rid < 0 ? cout(s) : wout(s, x->rid);
    if (b == NULL) continue;
    dl_put_hash_msg(b, DL_M_FN_GONE, f->hash);
    x->pending++;
  }
}

/* Sender rid forgot f (or is gone): it leaves the list. */
static void fn_sender_drop(fnentry *f, int i) {
  f->senders[i] = f->senders[--f->nsenders];
}

static void fns_unref(dl_sched *s, const task *t) {
  int i;
  if (s->freeing) return;
  for (i = 0; i < t->nfns; i++) {
    fnentry *f = tfn(s, t, i);
    if (f == NULL || f->refs <= 0 || --f->refs > 0) continue;
    if (f->nsenders == 0) fn_drop(s, f); /* only tasks' clients sent it */
    else fn_gone(s, f);
  }
}

/* A client forgot it sent f: it leaves the senders once it has answered
   every DL_M_FN_GONE; f goes when no task and no sender is left. */
static int on_fn_forget(dl_sched *s, dl_rd *r) {
  dl_msg_hash m;
  fnentry *f;
  int i;
  RD(dl_get_hash_msg(r, &m));
  f = dl_map_get(&s->fns, m.hash, 16);
  if (f == NULL) return 0;
  for (i = 0; i < f->nsenders; i++)
    if (f->senders[i].rid == s->from) {
      if (--f->senders[i].pending <= 0) fn_sender_drop(f, i);
      break;
    }
  if (f->refs == 0 && f->nsenders == 0) fn_drop(s, f);
  return 0;
}

/* The bytes the n at p share with r at their start (*pfx) and then at
   their end (*sfx). */
static void pref_match(const struct pref *r, const char *p, size_t n,
                       size_t *pfx, size_t *sfx) {
  size_t a = 0, b = 0;
  while (a < n && a < r->nhead && p[a] == r->head[a]) a++;
  while (b < n - a && b < r->ntail &&
         p[n - 1 - b] == r->tail[r->ntail - 1 - b])
    b++;
  *pfx = a;
  *sfx = b;
}

/* The reference for a payload of n bytes at p (of a task of nfns
   functions at fns), and what it shares with it at its start and end; a
   new reference of it when the newest shares less than half of it (and
   there is room: else the newest, or none when out of memory). */
static int pref_cut(dl_sched *s, const char *p, size_t n, const char *fns,
                    size_t nfns, size_t *pfx, size_t *sfx) {
  struct pref *r;
  *pfx = *sfx = 0;
  if (n == 0) return 0;
  if (s->nprefs > 0) {
    pref_match(&s->prefs[s->nprefs - 1], p, n, pfx, sfx);
    if (2 * (*pfx + *sfx) >= n || s->nprefs == PREF_MAX)
      return s->nprefs - 1;
  }
  if (s->nprefs == 0) {
    s->prefs = xalloc(sizeof *s->prefs * PREF_MAX);
    if (s->prefs == NULL) return *pfx = *sfx = 0;
  }
  r = &s->prefs[s->nprefs++];
  r->nhead = (uint8_t)(n < PREF_LEN ? n : PREF_LEN);
  r->ntail = r->nhead;
  memcpy(r->head, p, r->nhead);
  memcpy(r->tail, p + n - r->ntail, r->ntail);
  r->hasfn = nfns == 1;
  if (r->hasfn) memcpy(r->fnhash, fns, 16);
  r->fn = NULL;
  r->nfn = 0;
  pref_match(r, p, n, pfx, sfx);
  return s->nprefs - 1;
}

/*
** Key stems: a key that is a stem and 8 lower-case hex digits (a
** client's keys of one map or submit loop: "inc-<session><counter>") is
** kept as its counter, 4 bytes, and the stem's number (klen), not as its
** 20 bytes and a NUL: 16 bytes less per task.  A stem is kept once two
** keys in a row have it (so that keys that are hashes, whose last 8
** digits end a stem of their own, make none), and goes with its last
** task.  Keys are written out when sent (tk); the task map reads them
** through task_key.
*/
/* A stem's bytes are a block of dl_stem_size(len) (dl_map.h). */
struct sstem {
  char *p;      /* NULL: free */
  uint32_t len; /* free: the next free number + 1 */
  uint32_t refs;
};

static const char *tk(const dl_sched *s, const task *t, char buf[TKEYBUF],
                      size_t *len) {
  const struct sstem *e;
  if (!t->stemmed) {
    *len = t->klen;
    return tkeyat(t);
  }
  e = &s->stems[t->klen];
  *len = dl_stemkey(buf, e->p, e->len, tkeyat(t));
  return buf;
}

/* Put a message of type that names t's key into b. */
static void put_tkey_msg(const dl_sched *s, dl_buf *b, unsigned type,
                         const task *t) {
  char kb[TKEYBUF];
  size_t kl;
  const char *k = tkl(s, t, kb, &kl);
  dl_put_key_msg(b, type, k, kl);
}

static const char *tkl(const dl_sched *s, const task *t, char buf[TKEYBUF],
                       size_t *len) {
  if (t == s->hand) {
    *len = s->hand_klen;
    return s->hand_key;
  }
  return tk(s, t, buf, len);
}

static const char *task_key(const void *ud, const void *val,
                            char buf[DL_IMAP_KEYBUF], size_t *len) {
  return tk(ud, val, buf, len);
}

/* The task map's compare: a stem's key without writing it out. */
static int task_eq(const void *ud, const void *val, const char *key,
                   size_t klen) {
  const dl_sched *s = ud;
  const task *t = val;
  const struct sstem *e;
  if (!t->stemmed)
    return t->klen == klen && memcmp(tkeyat(t), key, klen) == 0;
  e = &s->stems[t->klen];
  return dl_stemkey_eq(key, klen, e->p, e->len, tkeyat(t));
}

_Static_assert(DL_SCHED_STEM_MAX + DL_STEM_DIGITS < TKEYBUF,
               "a stemmed key fits its readers' buffers");

/* The stem's number + 1 for key, made if this is its second key in a
   row, and *ctr its counter; 0 when the key is kept whole. */
static uint32_t stem_of(dl_sched *s, const char *key, size_t klen,
                        uint32_t *ctr) {
  size_t at;
  uint32_t v = 0, id;
  struct sstem *e;
  if (klen <= DL_STEM_DIGITS || klen - DL_STEM_DIGITS > DL_SCHED_STEM_MAX) return 0;
  at = klen - DL_STEM_DIGITS;
  if (!dl_unhex8(key + at, &v)) return 0;
  *ctr = v;
  id = s->last_stem; /* most keys have the stem of the one before */
  if (id && s->stems[id - 1].p && s->stems[id - 1].len == at &&
      memcmp(s->stems[id - 1].p, key, at) == 0)
    return id;
  id = (uint32_t)(uintptr_t)dl_map_get(&s->stem_ids, key, at);
  if (id) return s->last_stem = id;
  if (s->ncand != at || memcmp(s->cand, key, at) != 0) {
    memcpy(s->cand, key, at); /* the first of its keys: kept whole */
    s->ncand = at;
    return 0;
  }
  if (s->sfree) {
    id = s->sfree;
    s->sfree = s->stems[id - 1].len;
  } else {
    if (s->nstems == s->capstems) {
      uint32_t nc = s->capstems ? 2 * s->capstems : 8;
      struct sstem *n = dl_realloc(s->stems, nc * sizeof *n);
      if (n == NULL) return 0;
      s->stems = n;
      s->capstems = nc;
    }
    id = ++s->nstems;
    s->stems[id - 1].p = NULL;
  }
  e = &s->stems[id - 1];
  e->p = xalloc(dl_stem_size(at));
  if (e->p) {
    memcpy(e->p, key, at);
    e->p[at] = '\0';
  }
  e->len = (uint32_t)at;
  e->refs = 0;
  if (e->p == NULL ||
      dl_map_put(&s->stem_ids, e->p, at, (void *)(uintptr_t)id)) {
    dl_free(e->p);
    e->p = NULL;
    e->len = s->sfree;
    s->sfree = id;
    return 0;
  }
  return s->last_stem = id;
}

/* A task of stem id (its number + 1) more or less; the last one frees it. */
static void stem_unref(dl_sched *s, uint32_t id) {
  struct sstem *e = &s->stems[id - 1];
  if (e->refs-- > 1) return;
  dl_map_del(&s->stem_ids, e->p, e->len);
  dl_free(e->p);
  e->p = NULL;
  e->len = s->sfree;
  s->sfree = id;
}

/*
** A new task record, zeroed, with a copy of key and (if payload is not
** NULL) of payload, the entries of the nfns function hashes at fns (not
** counted yet: fns_ref) and the ndeps inputs at deps (not linked yet),
** all in one allocation.  NULL when out of memory.
*/
static task *task_new(dl_sched *s, const char *key, size_t klen,
                      const char *payload, size_t plen, const char *fns,
                      size_t nfns, task *const *deps, size_t ndeps) {
  size_t n, i;
  task *t;
  char *p;
  size_t pfx = 0, sfx = 0;
  int ref = 0, fnpref = 0;
  uint32_t sid, ctr = 0;
  if (klen > UINT32_MAX || (payload && plen > UINT32_MAX) ||
      ndeps > INT_MAX || nfns > UINT16_MAX)
    return NULL;
  if (payload) {
    ref = pref_cut(s, payload, plen, fns, nfns, &pfx, &sfx);
    payload += pfx;
    plen -= pfx + sfx;
    /* The one function of a map's tasks is their reference's: found by
       its hash when needed (the task's count keeps the entry), not
       pointed at, 8 bytes a task less.  Only for an entry that exists
       now: the count must be the task's. */
    if (nfns == 1 && s->nprefs > ref && s->prefs[ref].hasfn &&
        memcmp(s->prefs[ref].fnhash, fns, 16) == 0) {
      struct pref *r = &s->prefs[ref];
      if (r->nfn == 0) r->fn = dl_map_get(&s->fns, fns, 16);
      fnpref = r->fn != NULL;
    }
  }
  sid = stem_of(s, key, klen, &ctr);
  n = tfns_at(tkbytes(klen, sid != 0), payload ? plen : 0) +
      (fnpref ? 0 : nfns * sizeof(fnentry *)) + ndeps * sizeof(task *);
  t = dl_slab_alloc(&s->slab, n);
  if (t == NULL) {
    if (sid && s->stems[sid - 1].refs == 0) {
      s->stems[sid - 1].refs = 1;
      stem_unref(s, sid);
    }
    return NULL;
  }
  memset(t, 0, sizeof *t);
  p = tkeyat(t);
  if (sid) {
    memcpy(p, &ctr, sizeof ctr);
    t->klen = sid - 1;
    t->stemmed = 1;
    s->stems[sid - 1].refs++;
    p += CTR_LEN;
  } else {
    memcpy(p, key, klen);
    p[klen] = '\0';
    t->klen = (uint32_t)klen;
    p += klen + 1;
  }
  if (payload) {
    memcpy(p, payload, plen);
    t->plen = (uint32_t)plen;
    t->pfx = (unsigned)pfx;
    t->sfx = (unsigned)sfx;
    t->pref = (unsigned)ref;
    p += plen;
  } else {
    t->scattered = 1;
  }
  t->nfns = (uint16_t)nfns;
  t->fnpref = (unsigned)fnpref;
  if (fnpref) s->prefs[ref].nfn++;
  for (i = 0; !fnpref && i < nfns; i++)
    tfns(t)[i] = dl_map_get(&s->fns, fns + 16 * i, 16);
  t->ndeps = (int)ndeps;
  if (ndeps) memcpy(tdeps(t), deps, ndeps * sizeof *deps);
  return t;
}

/* The bytes of t's own block, as task_new made it. */
static size_t task_size(const task *t) {
  return tfns_at(tkbytes(t->klen, t->stemmed), t->plen) +
         (t->fnpref ? 0 : (size_t)t->nfns * sizeof(fnentry *)) +
         (size_t)t->ndeps * sizeof(task *);
}

static void task_free(dl_sched *s, task *t) {
  fns_unref(s, t);
  if (t->fnpref) s->prefs[t->pref].nfn--;
  s->kept -= tinlen(t);
  if (t->inlen && !t->insmall)
    dl_slab_free(&s->slab, t->inl.p, (size_t)t->inlen + 1);
  if (t->dcap > 1)
    dl_slab_free(&s->slab, t->dependents.many,
                 sizeof(task *) * (size_t)tdcap(t));
  who_clear(t);
  if (t->x) {
    dl_free(t->x->restrict_w);
    dl_free(t->x->err);
    dl_free(t->x->wwho);
    dl_free(t->x->waits_on);
    dl_slab_free(&s->slab, t->x, sizeof(task_x));
  }
  if (t->stemmed) stem_unref(s, t->klen + 1);
  if (s->hand == t) s->hand = NULL;
  dl_slab_free(&s->slab, t, task_size(t));
}

static int counts_pending(const task *t) {
  return t->state == T_WAITING || t->state == T_READY ||
         t->state == T_PROCESSING;
}

/*
** Drop tasks nobody needs: start from t and walk to its inputs.  A task
** with no client reference and no pending dependent loses its data; one
** with no dependents at all is forgotten.  An input is walked to when its
** last dependent is forgotten, so once: a task that names one input twice
** (x.T @ x) pushed it twice, and once nothing held the input (a client
** that holds only the keys it asked for) the second pop read it freed.
** (Its data needs no visit before: with no reference and no pending
** dependent it was dropped when the last of those went.)
*/
static void collect(dl_sched *s, task *t) {
  size_t base = s->nstack;
  push_stack(s, t);
  while (s->nstack > base) {
    task *x = s->stack[--s->nstack];
    int i;
    if (x->want > 0 || x->npending > 0 || counts_pending(x)) continue;
    if (x->state == T_MEMORY) {
      free_data(s, x);
      set_state(s, x, T_RELEASED);
    }
    if (x->ndependents > 0) continue;
    /* forget x */
    for (i = 0; i < x->ndeps; i++) {
      task *d = tdeps(x)[i];
      int j;
      task **dd = tdependents(d);
      for (j = 0; j < d->ndependents; j++)
        if (dd[j] == x) {
          dd[j] = dd[--d->ndependents];
          break;
        }
      if (d->ndependents == 0) push_stack(s, d);
    }
    {
      char kb[TKEYBUF];
      size_t kl;
      const char *k = tkl(s, x, kb, &kl);
      dl_imap_del(&s->tasks, k, kl);
    }
    count_gone(s, x);
    task_free(s, x);
  }
}

static void make_ready(dl_sched *s, task *t) {
  set_state(s, t, T_READY);
  rq_push(s, t);
}

/* t leaves the pending states: its inputs have one pending dependent less. */
static void unpend_inputs(dl_sched *s, task *t) {
  int i;
  for (i = 0; i < t->ndeps; i++) {
    task *d = tdeps(t)[i];
    if (--d->npending == 0 && d->want == 0) collect(s, d);
  }
}

static void set_err(dl_sched *s, task *t, int kind, const char *rec,
                    size_t len) {
  task_x *x = task_xw(s, t);
  char *e = x ? dupbytes(rec, len) : NULL;
  if (e == NULL) return;
  dl_free(x->err);
  x->err = e;
  x->errlen = len;
  t->errkind = kind;
}

/* The failure kind of a task whose input d erred: cancelled with it, or
   failed because of it. */
static int dep_kind(const task *d) {
  return d->errkind == DL_ERR_CANCELLED ? DL_ERR_CANCELLED : DL_ERR_DEP;
}

/* t failed: it and every task that depends on it (transitively) err.  The
   dependents of a cancelled task are cancelled (as in Dask), those of a
   failed one fail with DL_ERR_DEP. */
static void fail(dl_sched *s, task *t, int kind, const char *rec, size_t len) {
  int depkind = kind == DL_ERR_CANCELLED ? DL_ERR_CANCELLED : DL_ERR_DEP;
  size_t base = s->nstack;
  rq_remove(s, t);
  set_err(s, t, kind, rec, len);
  push_stack(s, t);
  while (s->nstack > base) {
    task *x = s->stack[--s->nstack];
    int i, was_pending = counts_pending(x);
    if (x->state == T_ERRED) continue;
    rq_remove(s, x);
    if (x != t) set_err(s, x, depkind, tx(t)->err, tx(t)->errlen);
    if (x->state == T_PROCESSING) {
      unload(find_worker(s, x->processing_on), x);
      x->processing_on = -1;
    }
    set_state(s, x, T_ERRED);
    notify_err(s, x);
    for (i = 0; i < x->ndependents; i++) {
      task *y = tdependents(x)[i];
      if (counts_pending(y)) push_stack(s, y);
    }
    if (was_pending) unpend_inputs(s, x);
  }
}

/*
** Make sure t ends up in memory: a RELEASED task (and, recursively, the
** released inputs it needs) goes back to WAITING or READY.
*/
/*
** Store x's kept copy on the live worker holding the least, as a scatter
** does: x is PROCESSING there until the worker's DONE.  1 if sent, 0 if
** no worker is alive (then x is recomputed as usual).
*/
static int restore(dl_sched *s, task *x) {
  sworker *w = NULL;
  dl_buf *b;
  int k;
  for (k = 0; k < s->nworkers; k++)
    if (s->workers[k]->alive &&
        (w == NULL || s->workers[k]->info.stored < w->info.stored))
      w = s->workers[k];
  if (w == NULL || (b = wout(s, w->info.id)) == NULL) return 0;
  {
    dl_msg_store m;
    char buf[IN_HEAD + IN_TAIL], kb[TKEYBUF];
    m.key = tk(s, x, kb, &m.klen);
    m.bytes = tinl(s, x, buf);
    m.blen = tinlen(x);
    dl_put_store(b, &m);
  }
  set_state(s, x, T_PROCESSING);
  x->processing_on = w->info.id;
  x->restoring = 1;
  w->info.inflight++;
  return 1;
}

static void need(dl_sched *s, task *t) {
  size_t base = s->nstack;
  push_stack(s, t);
  while (s->nstack > base) {
    task *x = s->stack[--s->nstack];
    int i, failed = 0;
    if (x->state != T_RELEASED) continue;
    if (x->inlen && restore(s, x)) continue;
    if (tpay(x) == NULL) { /* scattered data cannot be recomputed */
      dl_buf e;
      dl_buf_init(&e);
      err_rec(&e, DL_ERR_LOST, "scattered data was lost with its worker and has no "
                    "lineage to recompute it");
      set_state(s, x, T_WAITING); /* so fail() counts it as pending */
      fail(s, x, DL_ERR_LOST, e.p, e.len);
      dl_buf_free(&e);
      continue;
    }
    x->waiting = 0;
    for (i = 0; i < x->ndeps; i++) {
      task *d = tdeps(x)[i];
      d->npending++;
      if (d->state == T_ERRED) failed = 1;
      if (d->state != T_MEMORY) {
        x->waiting++;
        if (d->state == T_RELEASED) push_stack(s, d);
      }
    }
    set_state(s, x, T_WAITING);
    if (failed) {
      for (i = 0; i < x->ndeps; i++)
        if (tdeps(x)[i]->state == T_ERRED) {
          task *d = tdeps(x)[i];
          fail(s, x, dep_kind(d), tx(d)->err, tx(d)->errlen);
          break;
        }
    } else if (x->waiting == 0) {
      make_ready(s, x);
    }
  }
}

/* Worker wid holds t's result too.  The first holder is kept in the
   record: most results never have a second.  0 or DL_ENOMEM. */
static int who_add(task *t, int wid) {
  int *n;
  if (t->nwho == UINT16_MAX) return DL_ENOMEM; /* 65535 holders are plenty */
  if (t->nwho < 2) {
    t->who.two[t->nwho++] = wid;
    return 0;
  }
  if (t->nwho == 2) {
    n = xalloc(3 * sizeof(int));
    if (n) {
      n[0] = t->who.two[0];
      n[1] = t->who.two[1];
    }
  } else {
    n = dl_realloc(t->who.many, sizeof(int) * (size_t)(t->nwho + 1));
  }
  if (n == NULL) return DL_ENOMEM;
  t->who.many = n;
  n[t->nwho++] = wid;
  return 0;
}

static const char *tinl(const dl_sched *s, const task *t,
                        char buf[IN_HEAD + IN_TAIL]) {
  size_t n = tinlen(t);
  if (n == 0) return NULL;
  if (!t->insmall) return t->inl.p;
  memcpy(buf, s->ihead, IN_HEAD);
  memcpy(buf + IN_HEAD, t->inl.tail, n - IN_HEAD);
  return buf;
}

/* Keep a copy of t's result (ilen bytes at inl, 0 < ilen), in the record
   when it is small (see IN_HEAD); nothing is kept when out of memory. */
static void keep(dl_sched *s, task *t, const char *inl, size_t ilen) {
  if (ilen > IN_MAX) return;
  if (s->nihead == 0 && ilen >= IN_HEAD) {
    memcpy(s->ihead, inl, IN_HEAD);
    s->nihead = IN_HEAD;
  }
  if (s->nihead && ilen >= IN_HEAD && ilen - IN_HEAD <= IN_TAIL &&
      memcmp(inl, s->ihead, IN_HEAD) == 0) {
    memcpy(t->inl.tail, inl + IN_HEAD, ilen - IN_HEAD);
    t->inlen = ilen;
    t->insmall = 1;
  } else {
    t->inl.p = dl_slab_alloc(&s->slab, ilen + 1);
    if (t->inl.p == NULL) return;
    memcpy(t->inl.p, inl, ilen);
    t->inl.p[ilen] = '\0';
    t->inlen = ilen;
    t->insmall = 0;
  }
  s->kept += ilen;
}

/* The result of t is in memory on worker wid. */
static void finished(dl_sched *s, task *t, int wid, uint64_t nbytes,
                     const char *inl, size_t ilen) {
  int i;
  rq_remove(s, t);
  if (who_add(t, wid)) return;
  set_nbytes(s, t, nbytes);
  t->processing_on = -1;
  set_state(s, t, T_MEMORY);
  if (ilen && t->inlen == 0 && s->kept + ilen <= KEEP_MAX)
    keep(s, t, inl, ilen);
  if (ilen == 0 && t->inlen) {
    char buf[IN_HEAD + IN_TAIL];
    notify_done_inline(s, t, tinl(s, t, buf), tinlen(t));
  } else {
    notify_done_inline(s, t, inl, ilen);
  }
  for (i = 0; i < t->ndependents; i++) {
    task *y = tdependents(t)[i];
    if (y->state == T_WAITING && --y->waiting == 0) make_ready(s, y);
  }
  if (t->restoring) t->restoring = 0; /* need() counted no inputs */
  else unpend_inputs(s, t);
  if (t->want == 0 && t->npending == 0) collect(s, t);
}

/* ------------------------------------------------------------- dispatch */

static int window(const dl_sched *s, const sworker *w) {
  double d = s->avg_duration;
  int n;
  if (d < 0) return 2 * w->info.nthreads;
  if (d < 1e-6) d = 1e-6;
  n = (int)ceil(0.005 / d); /* keep ~5 ms of work queued per worker */
  if (n < 2) n = 2;
  if (n > 1000) n = 1000;
  return n * w->info.nthreads;
}

static int allowed(const task *t, int wid) {
  const task_x *x = tx(t);
  int i;
  if (x->restrict_w == NULL) return 1;
  for (i = 0; i < x->nrestrict; i++)
    if (x->restrict_w[i] == wid) return 1;
  return 0;
}

/* Input bytes a transfer is taken to move per second, to weigh moving a
   task's inputs against waiting for the worker that holds them (Dask's
   estimate before it measures: distributed.scheduler.bandwidth). */
#define XFER_BPS 100e6

/*
** The best worker for t with room in its window, or NULL.  The one that
** holds the most of its input bytes is best; when that one has no room,
** *wait is set (and NULL returned) if its queue is likely to drain before
** the bytes could move to a busy worker with room: a block moved is a copy
** more to keep, and to spill where memory is short.  An idle worker takes
** the task anyway, so no worker idles while others hold all the inputs.
*/
static sworker *choose(dl_sched *s, task *t, int *wait) {
  sworker *best = NULL, *holder = NULL;
  uint64_t best_bytes = 0, holder_bytes = 0;
  int i;
  *wait = 0;
  for (i = 0; i < s->nworkers; i++) {
    sworker *w = s->workers[i];
    uint64_t bytes = 0;
    int j, k;
    if (!w->alive || w->info.status == DL_WS_PAUSED) continue;
    if (t->ndeps == 0 && w->info.inflight >= window(s, w)) continue;
    if (!allowed(t, w->info.id)) continue;
    for (j = 0; j < t->ndeps; j++) {
      task *d = tdeps(t)[j];
      for (k = 0; k < d->nwho; k++)
        if (twho(d)[k] == w->info.id) bytes += tnbytes(d) + 1;
    }
    if (bytes > holder_bytes) {
      holder = w;
      holder_bytes = bytes;
    }
    if (w->info.inflight >= window(s, w)) continue;
    if (best == NULL || bytes > best_bytes ||
        (bytes == best_bytes && w->info.inflight < best->info.inflight)) {
      best = w;
      best_bytes = bytes;
    }
  }
  if (best && holder_bytes > best_bytes && best->info.inflight > 0) {
    double d = s->avg_duration > 0 ? s->avg_duration : 0;
    double drain = d * holder->info.inflight / holder->info.nthreads;
    if (drain < (double)(holder_bytes - best_bytes) / XFER_BPS) {
      *wait = 1;
      return NULL;
    }
  }
  return best;
}

static void send_compute(dl_sched *s, task *t, sworker *w) {
  dl_buf *b = wout(s, w->info.id);
  int i, j;
  if (b == NULL) return;
  s->fnbuf.len = 0;
  for (i = 0; i < t->nfns; i++) {
    fnentry *f = tfn(s, t, i);
    static const unsigned char none[16]; /* the worker reports it unknown */
    dl_buf_put(&s->fnbuf, f ? f->hash : none, 16);
    if (f == NULL || dl_map_get(&w->fns_sent, (const char *)f->hash, 16))
      continue;
    dl_put_func_msg(b, DL_M_FUNC, f->hash, f->code, f->len);
    dl_map_put(&w->fns_sent, (const char *)f->hash, 16, f);
  }
  {
    dl_msg_compute m;
    char kb[TKEYBUF];
    m.key = tk(s, t, kb, &m.klen);
    m.prio = tprio(t);
    m.timeout_ms = tx(t)->timeout_ms;
    if (t->pfx || t->sfx) {
      const struct pref *r = &s->prefs[t->pref];
      m.head = r->head;
      m.hlen = t->pfx;
      m.tail = r->tail + r->ntail - t->sfx;
      m.tlen = t->sfx;
    } else {
      m.head = m.tail = NULL;
      m.hlen = m.tlen = 0;
    }
    m.payload = tpay(t);
    m.plen = t->plen;
    m.fns = s->fnbuf.p;
    m.nfns = (uint64_t)t->nfns;
    m.ndeps = (uint64_t)t->ndeps;
    dl_put_compute(b, &m);
  }
  for (i = 0; i < t->ndeps; i++) {
    task *d = tdeps(t)[i];
    char kb[TKEYBUF];
    size_t kl;
    const char *k = tk(s, d, kb, &kl);
    dl_put_compute_dep(b, k, kl, (uint64_t)d->nwho);
    for (j = 0; j < d->nwho; j++) dl_put_id(b, (uint64_t)twho(d)[j]);
  }
  set_state(s, t, T_PROCESSING);
  t->processing_on = w->info.id;
  t->steal_denied = 0;
  t->seceded = 0;
  plink(w, t);
  w->info.inflight++;
}

/*
** Work stealing: an idle worker asks the busiest one for half of the
** tasks queued there (the last assigned, least likely started), and a
** worker with room asks a paused one for all of its queue.  The victim
** hands back only tasks that have not started (DL_M_STOLEN).
*/
static void steal(dl_sched *s, int queue_empty) {
  int i;
  for (i = 0; i < s->nworkers; i++) {
    sworker *thief = s->workers[i], *victim = NULL;
    task *t;
    dl_buf *b;
    uint32_t k;
    int j, n;
    if (!thief->alive || thief->info.status == DL_WS_PAUSED ||
        thief->steals > 0 || thief->info.inflight >= window(s, thief))
      continue;
    for (j = 0; j < s->nworkers; j++) { /* a paused worker first */
      sworker *w = s->workers[j];
      if (w->alive && w != thief && w->info.status == DL_WS_PAUSED &&
          w->info.inflight > 0 &&
          (victim == NULL || w->info.inflight > victim->info.inflight))
        victim = w;
    }
    if (victim) {
      n = victim->info.inflight;
    } else {
      if (!queue_empty || thief->info.inflight > 0) continue;
      for (j = 0; j < s->nworkers; j++) {
        sworker *w = s->workers[j];
        if (w->alive && w->info.inflight >= 2 &&
            (victim == NULL || w->info.inflight > victim->info.inflight))
          victim = w;
      }
      if (victim == NULL) continue;
      n = victim->info.inflight / 2;
    }
    b = wout(s, victim->info.id);
    /* The last assigned are the least likely to have started. */
    for (k = victim->nproc; b && k-- > victim->phead && n > 0;) {
      if ((t = victim->proc[k]) == NULL) continue;
      if (tx(t)->steal_to || t->steal_denied || tpay(t) == NULL ||
          !allowed(t, thief->info.id) || task_xw(s, t) == NULL)
        continue;
      t->x->steal_to = thief->info.id;
      thief->steals++;
      n--;
      put_tkey_msg(s, b, DL_M_STEAL, t);
    }
  }
}

static int on_stolen(dl_sched *s, sworker *w, dl_rd *r) {
  dl_msg_stolen m;
  task *t;
  sworker *thief;
  RD(dl_get_stolen(r, &m));
  t = dl_imap_get(&s->tasks, m.key, m.klen);
  if (t == NULL || tx(t)->steal_to == 0) return 0;
  thief = find_worker(s, t->x->steal_to);
  t->x->steal_to = 0;
  if (thief) thief->steals--;
  if (!m.ok || t->state != T_PROCESSING || t->processing_on != w->info.id) {
    if (t->state == T_PROCESSING) t->steal_denied = 1; /* started there */
    return 0;
  }
  w->info.inflight--;
  t->processing_on = -1;
  if (thief && thief->alive) {
    set_state(s, t, T_READY); /* send_compute moves it on */
    send_compute(s, t, thief);
  } else {
    make_ready(s, t);
  }
  return 0;
}

/* Is one of the workers t is pinned to alive? */
static int pin_alive(dl_sched *s, const task *t) {
  const task_x *x = tx(t);
  int i;
  for (i = 0; i < x->nrestrict; i++) {
    sworker *w = find_worker(s, x->restrict_w[i]);
    if (w && w->alive) return 1;
  }
  return 0;
}

/* t is pinned to workers that are all gone (worker ids are never reused,
   so none of them comes back): it fails, naming them. */
static void fail_pinned(dl_sched *s, task *t) {
  const task_x *x = tx(t);
  char msg[512], kb[TKEYBUF];
  size_t n, kl;
  int i;
  dl_buf e;
  n = (size_t)snprintf(msg, sizeof msg, "task '%.200s' is pinned to worker%s ",
                       tk(s, t, kb, &kl), x->nrestrict > 1 ? "s" : "");
  for (i = 0; i < x->nrestrict && n < sizeof msg - 120; i++)
    n += (size_t)snprintf(msg + n, sizeof msg - n, "%s%d", i ? ", " : "",
                          x->restrict_w[i]);
  if (i < x->nrestrict) n += (size_t)snprintf(msg + n, sizeof msg - n, ", ...");
  snprintf(msg + n, sizeof msg - n, ", %s gone; allow_other_workers = true "
           "lets other workers run it", x->nrestrict > 1 ? "all" : "which is");
  dl_buf_init(&e);
  err_rec(&e, DL_ERR_LOST, msg);
  fail(s, t, DL_ERR_LOST, e.p, e.len);
  dl_buf_free(&e);
}

/* At most this many ready tasks wait for the worker holding their inputs
   in one dispatch (choose): the tasks behind them are looked at in the
   meantime, but a long queue of them is not scanned at every dispatch. */
#define WAIT_ASIDE 16

/* Hand READY tasks to workers with room, best priority first. */
static void dispatch(dl_sched *s) {
  task *stalled = NULL, **tail = &stalled;
  task *aside[WAIT_ASIDE];
  int have_room = 1, naside = 0, i;
  while (rq_len(s) > 0 && have_room) {
    task *t = rq_peek(s);
    sworker *w;
    int wait;
    if (tx(t)->restrict_w && !pin_alive(s, t)) {
      fail_pinned(s, t);
      continue;
    }
    w = choose(s, t, &wait);
    if (w == NULL && wait) {
      if (naside == WAIT_ASIDE) break;
      rq_remove(s, t);
      aside[naside++] = t;
      continue;
    }
    if (w == NULL) {
      have_room = 0;
      if (tx(t)->restrict_w == NULL) break;
      /* A restricted task must not block others: set it aside. */
      for (i = 0; i < s->nworkers; i++)
        if (s->workers[i]->alive &&
            s->workers[i]->info.inflight < window(s, s->workers[i]))
          have_room = 1;
      rq_remove(s, t); /* restricted: it has its task_x */
      t->x->next_delayed = NULL;
      *tail = t;
      tail = &t->x->next_delayed;
      continue;
    }
    rq_remove(s, t);
    send_compute(s, t, w);
  }
  while (stalled) {
    task *t = stalled;
    stalled = t->x->next_delayed;
    rq_push(s, t);
  }
  for (i = 0; i < naside; i++) rq_push(s, aside[i]);
  if (s->nworkers > 1) steal(s, rq_len(s) == 0);
}

/* ----------------------------------------------------------- life cycle */

dl_sched *dl_sched_new(const dl_sched_io *io) {
  dl_sched *s = xalloc(sizeof *s);
  if (s == NULL) return NULL;
  memset(s, 0, sizeof *s);
  s->io = *io;
  dl_imap_init(&s->tasks, sizeof(task), offsetof(task, klen));
  dl_imap_set_keyfn(&s->tasks, task_key, task_eq, s);
  dl_map_init(&s->fns);
  dl_map_init(&s->groups);
  s->avg_duration = -1;
  s->from = -1;
  s->coord = dl_coord_new(coord_out, s);
  s->prof = dl_prof_new(DL_SCHED_PROF_NODES);
  if (s->coord == NULL || s->prof == NULL ||
      dl_prof_keep_log(s->prof, DL_SCHED_PROF_LOG)) {
    dl_sched_free(s);
    return NULL;
  }
  {
    dl_coord_keys k = {coord_hold, coord_drop, coord_give};
    dl_coord_set_keys(s->coord, &k);
  }
  s->allowed_failures = 3;
  return s;
}

void dl_sched_coord_walk(dl_sched *s, dl_coord_walk_fn fn, void *ud) {
  dl_coord_walk(s->coord, fn, ud);
}

void dl_sched_set_allowed_failures(dl_sched *s, int n) {
  s->allowed_failures = n < 1 ? 1 : n;
}

void dl_sched_free(dl_sched *s) {
  size_t i = 0;
  void *v;
  int k;
  if (s == NULL) return;
  s->freeing = 1;
  dl_coord_free(s->coord);
  while ((v = dl_imap_next(&s->tasks, &i)) != NULL) task_free(s, v);
  i = 0;
  while ((v = dl_map_next(&s->fns, &i)) != NULL) {
    dl_free(((fnentry *)v)->senders);
    dl_free(((fnentry *)v)->code);
    dl_free(v);
  }
  for (k = 0; k < s->nworkers; k++) {
    dl_map_free(&s->workers[k]->fns_sent);
    dl_free(s->workers[k]->proc);
    dl_prof_free(s->workers[k]->prof);
    dl_free(s->workers[k]);
  }
  dl_prof_free(s->prof);
  dl_free(s->workers);
  dl_imap_free(&s->tasks);
  dl_map_free(&s->fns);
  i = 0;
  while ((v = dl_map_next(&s->groups, &i)) != NULL) {
    dl_free(((tgroup *)v)->name);
    dl_free(v);
  }
  dl_map_free(&s->groups);
  dl_free(s->gtab);
  dl_free(s->gfree);
  events_free(s->events);
  for (i = 0; i < s->npgets; i++) dl_free(s->pgets[i].key);
  dl_free(s->pgets);
  dl_free(s->heap);
  dl_free(s->run);
  dl_free(s->stack);
  dl_free(s->prefs);
  for (i = 0; i < s->nstems; i++) dl_free(s->stems[i].p);
  dl_free(s->stems);
  dl_map_free(&s->stem_ids);
  dl_buf_free(&s->fnbuf);
  dl_slab_destroy(&s->slab);
  dl_free(s);
}

void dl_sched_set_heartbeat_timeout(dl_sched *s, double seconds) {
  s->hb_timeout = seconds > 0 ? seconds : 0;
}

/* Workers send a heartbeat this often (seconds; dl_worker.c). */
#define BEAT 0.5

int dl_sched_silent(dl_sched *s, double now, int *out, int max) {
  int i, n = 0;
  double gap = s->last_check > 0 ? now - s->last_check : 0;
  s->last_check = now;
  for (i = 0; i < s->nworkers; i++) {
    sworker *w = s->workers[i];
    double quiet;
    /* We were stopped ourselves (SIGSTOP, a suspended laptop): what the
       workers said meanwhile waits unread; do not hold that against them. */
    if (gap > 2 * BEAT) w->info.last_seen += gap;
    quiet = now - w->info.last_seen;
    if (!w->alive || w->reason[0]) continue;
    if (quiet > 2.5 * BEAT && w->info.status != DL_WS_PAUSED)
      w->info.status = DL_WS_SILENT;
    if (s->hb_timeout > 0 && quiet > s->hb_timeout && n < max) {
      snprintf(w->reason, sizeof w->reason, "no heartbeat for %.1f s "
               "(heartbeat_timeout = %g s): killed", quiet, s->hb_timeout);
      out[n++] = w->info.id;
    }
  }
  return n;
}

const char *dl_sched_status_name(int status) {
  static const char *const names[] = {"running", "paused", "silent", "dead"};
  return status >= 0 && status <= DL_WS_DEAD ? names[status] : "?";
}

int dl_sched_departed(dl_sched *s, dl_sched_winfo *out, int max) {
  uint64_t first = s->ndeparted > DL_SCHED_DEPARTED
                       ? s->ndeparted - DL_SCHED_DEPARTED : 0, k;
  int n = 0;
  for (k = first; k < s->ndeparted && n < max; k++)
    out[n++] = s->departed[k % DL_SCHED_DEPARTED];
  return n;
}

/*
** Nothing can run while every worker is paused (memory past memory_pause
** that it cannot spill, as when the disk is full).  Past the heartbeat
** timeout in that state, the pending tasks fail with an error that says
** why, instead of leaving the client waiting for ever.
*/
static void check_stall(dl_sched *s, double now) {
  int i, pending;
  char msg[1024];
  size_t n, k, ntasks = 0, cap = 0;
  task **all = NULL, *t;
  dl_buf e;
  pending = s->counts[T_WAITING] + s->counts[T_READY] +
            s->counts[T_PROCESSING] > 0;
  for (i = 0; i < s->nworkers && pending; i++)
    if (s->workers[i]->alive && s->workers[i]->info.status != DL_WS_PAUSED)
      pending = 0;
  if (!pending || s->nworkers == 0 || s->hb_timeout <= 0) {
    s->stall_since = 0;
    return;
  }
  if (s->stall_since == 0) s->stall_since = now;
  if (now - s->stall_since < s->hb_timeout) return;
  s->stall_since = 0;
  n = (size_t)snprintf(msg, sizeof msg, "no worker can make progress:");
  for (i = 0; i < s->nworkers && n < sizeof msg - 200; i++) {
    const dl_sched_winfo *w = &s->workers[i]->info;
    n += (size_t)snprintf(msg + n, sizeof msg - n,
                          "%s worker %d%s%s%s paused (memory %.0f%% of "
                          "%.0f MB", i ? ";" : "", w->id,
                          w->name[0] ? " (" : "", w->name,
                          w->name[0] ? ")" : "",
                          w->memory_limit > 0
                              ? 100.0 * (double)w->rss / (double)w->memory_limit
                              : 0.0,
                          (double)w->memory_limit / 1e6);
    if (w->spill_err[0])
      n += (size_t)snprintf(msg + n, sizeof msg - n, ", spill disk full: %s",
                            w->spill_err);
    n += (size_t)snprintf(msg + n, sizeof msg - n, ")");
  }
  if (n < sizeof msg)
    snprintf(msg + n, sizeof msg - n, "; free memory (release futures) or "
             "disk space, or give workers more memory_limit");
  /* fail() frees no task (see collect), so the list stays valid. */
  k = 0;
  while ((t = dl_imap_next(&s->tasks, &k)) != NULL)
    if (counts_pending(t) && push_task(&all, &ntasks, &cap, t)) break;
  dl_buf_init(&e);
  err_rec(&e, DL_ERR_LOST, msg);
  for (k = 0; k < ntasks; k++) {
    t = all[k];
    if (!counts_pending(t)) continue;
    if (t->state == T_PROCESSING) {
      dl_buf *b = wout(s, t->processing_on);
      if (b) put_tkey_msg(s, b, DL_M_CANCEL, t);
    }
    fail(s, t, DL_ERR_LOST, e.p, e.len);
  }
  dl_buf_free(&e);
  dl_free(all);
}

int dl_sched_add_worker(dl_sched *s, int wid, int64_t pid, int nthreads,
                        int64_t memory_limit, double now) {
  sworker *w = xalloc(sizeof *w), **nw;
  if (w == NULL) return DL_ENOMEM;
  nw = dl_realloc(s->workers, sizeof *nw * (size_t)(s->nworkers + 1));
  if (nw == NULL) {
    dl_free(w);
    return DL_ENOMEM;
  }
  memset(w, 0, sizeof *w);
  s->workers = nw;
  w->info.id = wid;
  w->info.pid = pid;
  w->info.nthreads = nthreads > 0 ? nthreads : 1;
  w->info.memory_limit = memory_limit;
  w->info.started = now;
  w->info.last_seen = now;
  w->info.status = DL_WS_RUNNING;
  w->alive = 1;
  dl_map_init(&w->fns_sent);
  s->workers[s->nworkers++] = w;
  dispatch(s);
  return 0;
}

void dl_sched_name_worker(dl_sched *s, int wid, const char *name) {
  sworker *w = find_worker(s, wid);
  if (w) snprintf(w->info.name, sizeof w->info.name, "%s", name);
}

static void unwanted(dl_sched *s, task *t);

/* dl_coord_keys: futures put in Variables and Queues (dl_coord.h). */
static int coord_hold(void *ud, const char *key, size_t klen) {
  dl_sched *s = ud;
  task *t = dl_imap_get(&s->tasks, key, klen);
  if (t == NULL || t->want <= 0 || task_xw(s, t) == NULL) return -1;
  t->want++;
  t->x->kwant++;
  return 0;
}

static void coord_drop(void *ud, const char *key, size_t klen) {
  dl_sched *s = ud;
  task *t = dl_imap_get(&s->tasks, key, klen);
  if (t == NULL || tx(t)->kwant <= 0) return;
  t->x->kwant--;
  if (--t->want == 0) unwanted(s, t);
}

static void coord_give(void *ud, const char *key, size_t klen, int to) {
  dl_sched *s = ud;
  task *t = dl_imap_get(&s->tasks, key, klen);
  int from = s->from;
  if (t == NULL) return;
  s->from = to;
  want_add(s, t);
  if (t->state == T_MEMORY) notify_done(s, t);
  else if (t->state == T_ERRED) notify_err(s, t);
  s->from = from;
}

/* The futures that the tasks of worker wid held are dropped with it.
   Keys are copied first: dropping one may free others (collect). */
static void release_held(dl_sched *s, int wid) {
  char **keys = NULL;
  size_t nkeys = 0, cap = 0, i = 0;
  task *t;
  while ((t = dl_imap_next(&s->tasks, &i)) != NULL) {
    task_x *x = t->x;
    int k;
    for (k = 0; x && k < x->nwwho; k++)
      if (x->wwho[2 * k] == wid) {
        t->want -= x->wwho[2 * k + 1];
        x->wwho[2 * k] = x->wwho[2 * (x->nwwho - 1)];
        x->wwho[2 * k + 1] = x->wwho[2 * (x->nwwho - 1) + 1];
        x->nwwho--;
        if (t->want <= 0) {
          t->want = 0;
          if (nkeys == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **nk = dl_realloc(keys, nc * sizeof *nk);
            if (nk == NULL) break;
            keys = nk;
            cap = nc;
          }
          {
            char kb[TKEYBUF];
            size_t kl;
            const char *k = tk(s, t, kb, &kl);
            keys[nkeys] = dupbytes(k, kl);
          }
          if (keys[nkeys]) nkeys++;
        }
        break;
      }
  }
  for (i = 0; i < nkeys; i++) {
    t = dl_imap_get(&s->tasks, keys[i], strlen(keys[i]));
    if (t && t->want == 0) unwanted(s, t);
    dl_free(keys[i]);
  }
  dl_free(keys);
}

void dl_sched_remove_worker(dl_sched *s, int wid) {
  sworker *w = find_worker(s, wid);
  size_t i = 0;
  task *t;
  task **lost = NULL;
  size_t nlost = 0, caplost = 0;
  int k;
  if (w == NULL) return;
  w->alive = 0;
  {
    dl_sched_winfo *d = &s->departed[s->ndeparted++ % DL_SCHED_DEPARTED];
    *d = w->info;
    d->status = DL_WS_DEAD;
    snprintf(d->reason, sizeof d->reason, "%s",
             w->reason[0] ? w->reason : "its process ended or its link "
             "closed");
  }
  /* Gathers it will never answer: the client waits for a recompute. */
  for (i = 0; i < s->npgets;) {
    pget *g = &s->pgets[i];
    if (g->wid == wid) {
      dl_buf *b = g->to < 0 ? cout(s) : wout(s, g->to);
      if (b)
        dl_put_data_head(b, DL_M_GATHER_REPLY, g->reqid, g->key, g->klen, 0,
                         0);
      dl_free(g->key);
      *g = s->pgets[--s->npgets];
    } else {
      i++;
    }
  }
  release_held(s, wid);
  dl_coord_gone(s->coord, wid, s->now);
  i = 0;
  while ((t = dl_imap_next(&s->tasks, &i)) != NULL) {
    if (t->x && t->x->steal_to == wid) t->x->steal_to = 0;
    for (k = 0; k < t->nwho; k++)
      if (twho(t)[k] == wid) {
        who_del(t, k);
        break;
      }
    if (((t->state == T_MEMORY && t->nwho == 0) ||
         (t->state == T_PROCESSING && t->processing_on == wid)) &&
        push_task(&lost, &nlost, &caplost, t))
      break;
  }
  for (i = 0; i < nlost; i++) {
    t = lost[i];
    if (t->state == T_PROCESSING) {
      t->processing_on = -1;
      if (t->restoring) { /* its dependents already wait for it */
        t->restoring = 0;
        set_state(s, t, T_RELEASED);
        continue;
      }
      if (tpay(t) == NULL) { /* scatter in flight: the data is gone */
        dl_buf e;
        dl_buf_init(&e);
        err_rec(&e, DL_ERR_LOST, "worker died while storing scattered "
                      "data");
        fail(s, t, DL_ERR_LOST, e.p, e.len);
        dl_buf_free(&e);
        continue;
      }
      if (task_xw(s, t) == NULL || ++t->x->tries >= s->allowed_failures) {
        char msg[512], kb[TKEYBUF];
        size_t kl;
        dl_buf e;
        dl_buf_init(&e);
        snprintf(msg, sizeof msg,
                 "KilledWorker: task '%s' was running on %d workers that "
                 "died (allowed_failures=%d)", tk(s, t, kb, &kl),
                 tx(t)->tries,
                 s->allowed_failures);
        err_rec(&e, DL_ERR_KILLED, msg);
        fail(s, t, DL_ERR_KILLED, e.p, e.len);
        dl_buf_free(&e);
        continue;
      }
      /* Back to WAITING; inputs it lost are recomputed below. */
      set_state(s, t, T_WAITING);
      t->waiting = 0;
      for (k = 0; k < t->ndeps; k++)
        if (tdeps(t)[k]->state != T_MEMORY) t->waiting++;
      if (t->waiting == 0) make_ready(s, t);
    } else { /* MEMORY with no holder left */
      set_state(s, t, T_RELEASED);
      for (k = 0; k < t->ndependents; k++) {
        task *y = tdependents(t)[k];
        if (y->state == T_WAITING) y->waiting++;
        else if (y->state == T_READY) {
          rq_remove(s, y);
          set_state(s, y, T_WAITING);
          y->waiting = 1;
        }
      }
      /* Its pending dependents counted it done; they are pending again, and
         need() will count them on its inputs. */
    }
  }
  for (i = 0; i < nlost; i++) {
    t = lost[i];
    if (t->state == T_RELEASED && (t->want > 0 || t->npending > 0)) {
      need(s, t);
    } else if (t->state == T_RELEASED) {
      collect(s, t);
    }
  }
  /* WAITING tasks whose inputs are RELEASED need those inputs back. */
  for (i = 0; i < nlost; i++) {
    t = lost[i];
    if (t->state == T_WAITING)
      for (k = 0; k < t->ndeps; k++)
        if (tdeps(t)[k]->state == T_RELEASED) need(s, tdeps(t)[k]);
  }
  dl_free(lost);
  for (k = 0; k < s->nworkers; k++)
    if (s->workers[k] == w) {
      s->workers[k] = s->workers[--s->nworkers];
      break;
    }
  for (i = w->phead; i < w->nproc; i++) /* none is left, normally */
    if (w->proc[i] && w->proc[i]->state == T_PROCESSING &&
        in_proc(w, w->proc[i]))
      w->proc[i]->pidx = 0;
  dl_free(w->proc);
  dl_map_free(&w->fns_sent);
  dl_prof_free(w->prof);
  dl_free(w);
  dispatch(s);
}

/* ------------------------------------------------------- client frames */


static int on_submit(dl_sched *s, dl_rd *r) {
  dl_msg_submit m;
  uint64_t i;
  task *t;
  size_t base = s->nstack; /* the inputs found, on the stack meanwhile */
  const char *missing = NULL;
  size_t missinglen = 0;
  RD(dl_get_submit(r, &m));
  t = dl_imap_get(&s->tasks, m.key, m.klen);
  if (t != NULL) { /* same key: the client holds one more future of it */
    want_add(s, t);
    if (t->state == T_MEMORY) notify_done(s, t);
    else if (t->state == T_ERRED) notify_err(s, t);
    else if (t->state == T_RELEASED) need(s, t);
    return 0;
  }
  /* The inputs first: the task's block holds them (task_new). */
  for (i = 0; i < m.ndeps; i++) {
    const char *dk;
    size_t dkl;
    task *d;
    if (dl_get_key(&m.deps, &dk, &dkl)) {
      s->nstack = base;
      return DL_EPROTO;
    }
    d = dl_imap_get(&s->tasks, dk, dkl);
    if (d == NULL) {
      missing = dk;
      missinglen = dkl;
    } else if (push_stack(s, d)) {
      s->nstack = base;
      return DL_ENOMEM;
    }
  }
  t = task_new(s, m.key, m.klen, m.payload ? m.payload : "", m.plen, m.fns,
               (size_t)m.nfns, s->nstack > base ? s->stack + base : NULL,
               s->nstack - base);
  s->nstack = base;
  if (t == NULL) return DL_ENOMEM;
  t->prio = (int32_t)m.prio;
  t->order = (int32_t)m.order;
  t->wide = t->prio != m.prio || t->order != m.order;
  t->seq = (uint32_t)s->seq++;
  if ((t->wide || m.retries || m.timeout_ms ||
       (m.nworkers && !m.allow_other)) &&
      task_xw(s, t) == NULL) {
    if (t->fnpref) s->prefs[t->pref].nfn--;
    if (t->stemmed) stem_unref(s, t->klen + 1);
    dl_slab_free(&s->slab, t, task_size(t)); /* nothing else is made yet */
    return DL_ENOMEM;
  }
  if (t->x) {
    t->x->retries = (int)(m.retries > 1000 ? 1000 : m.retries);
    t->x->timeout_ms = (uint32_t)m.timeout_ms;
    t->x->prio = m.prio;
    t->x->order = m.order;
  }
  t->processing_on = -1;
  want_add(s, t);
  t->state = T_WAITING;
  count_new(s, t, m.key, m.klen);
  if (t->nfns) fns_ref(s, t);
  {
    dl_buf e;
    if (m.nworkers && !m.allow_other) { /* allow_other: a preference,
                                           not a rule */
      task_x *x = t->x;
      x->restrict_w = xalloc(sizeof(int) * m.nworkers);
      if (x->restrict_w == NULL) goto bad;
      for (i = 0; i < m.nworkers; i++) {
        uint64_t id;
        if (dl_get_id(&m.workers, &id)) goto bad;
        x->restrict_w[i] = (int)id;
      }
      x->nrestrict = (int)m.nworkers;
    }
    if (dl_imap_put_key(&s->tasks, t, m.key, m.klen)) goto bad;
    /* Link to inputs. */
    for (i = 0; i < (uint64_t)t->ndeps; i++) {
      task *d = tdeps(t)[i];
      if (d->dcap == 0) {
        d->dcap = 1; /* most tasks have one: in the record */
      } else if (d->ndependents == tdcap(d)) { /* then double */
        size_t nc = (size_t)tdcap(d) * 2;
        task **n;
        if (nc == 2) {
          n = dl_slab_alloc(&s->slab, sizeof *n * 2);
          if (n) n[0] = d->dependents.one;
        } else if (d->dcap < 30) { /* ndependents is an int */
          n = dl_slab_realloc(&s->slab, d->dependents.many,
                              sizeof *n * (size_t)tdcap(d), sizeof *n * nc);
        } else {
          n = NULL;
        }
        if (n == NULL) continue;
        d->dependents.many = n;
        d->dcap++;
      }
      tdependents(d)[d->ndependents++] = t;
      d->npending++;
      if (d->state != T_MEMORY) t->waiting++;
    }
    if (missing) {
      char msg[600], kb[TKEYBUF];
      size_t kl;
      dl_buf_init(&e);
      snprintf(msg, sizeof msg,
               "missing dependency: task '%s' needs key '%.*s', which the "
               "scheduler does not know (was its future released?)",
               tk(s, t, kb, &kl), (int)(missinglen > 200 ? 200 : missinglen), missing);
      err_rec(&e, DL_ERR_LOST, msg);
      fail(s, t, DL_ERR_LOST, e.p, e.len);
      dl_buf_free(&e);
      return 0;
    }
    for (i = 0; i < (uint64_t)t->ndeps; i++) {
      task *d = tdeps(t)[i];
      if (d->state == T_ERRED) {
        fail(s, t, dep_kind(d), tx(d)->err, tx(d)->errlen);
        return 0;
      }
    }
    for (i = 0; i < (uint64_t)t->ndeps; i++)
      if (tdeps(t)[i]->state == T_RELEASED) need(s, tdeps(t)[i]);
    if (t->waiting == 0) make_ready(s, t);
  }
  return 0;
bad:
  count_gone(s, t);
  {
    char kb[TKEYBUF];
    size_t kl;
    const char *k = tk(s, t, kb, &kl);
    if (dl_imap_get(&s->tasks, k, kl) == t) dl_imap_del(&s->tasks, k, kl);
  }
  task_free(s, t);
  return DL_EPROTO;
}

static void cancel_task(dl_sched *s, task *t) {
  dl_buf e;
  if (t->state == T_PROCESSING) {
    dl_buf *b = wout(s, t->processing_on);
    if (b) put_tkey_msg(s, b, DL_M_CANCEL, t);
  }
  if (!counts_pending(t)) return;
  dl_buf_init(&e);
  err_rec(&e, DL_ERR_CANCELLED, "cancelled");
  fail(s, t, DL_ERR_CANCELLED, e.p, e.len);
  dl_buf_free(&e);
}

static int on_release(dl_sched *s, dl_rd *r) {
  dl_msg_key m;
  task *t;
  RD(dl_get_key_msg(r, &m));
  t = dl_imap_get(&s->tasks, m.key, m.klen);
  if (t == NULL || want_drop(s, t) || t->want > 0) return 0;
  s->hand = t;
  s->hand_key = m.key;
  s->hand_klen = m.klen;
  unwanted(s, t);
  s->hand = NULL;
  return 0;
}

/* Nobody holds a future of t any more (want is 0). */
static void unwanted(dl_sched *s, task *t) {
  if (counts_pending(t) && t->npending == 0) {
    /* Nobody needs it any more: stop it. */
    if (t->state == T_PROCESSING) {
      dl_buf *b = wout(s, t->processing_on);
      sworker *w = find_worker(s, t->processing_on);
      if (b) put_tkey_msg(s, b, DL_M_CANCEL, t);
      unload(w, t);
      t->processing_on = -1;
    }
    rq_remove(s, t);
    set_state(s, t, T_RELEASED);
    unpend_inputs(s, t);
  }
  collect(s, t);
}

/* Record that client s->from may name f by its hash alone from now on. */
static void fn_sender_add(dl_sched *s, fnentry *f) {
  fnsender *n;
  int i;
  if (!is_client(s->from)) return; /* tasks' clients always send it */
  for (i = 0; i < f->nsenders; i++)
    if (f->senders[i].rid == s->from) return;
  n = dl_realloc(f->senders, sizeof *n * (size_t)(f->nsenders + 1));
  if (n == NULL) return; /* not told at eviction: it sends the code again
                            only if the worker reports it unknown */
  f->senders = n;
  f->senders[f->nsenders].rid = s->from;
  f->senders[f->nsenders].pending = 0;
  f->nsenders++;
}

static int on_cfunc(dl_sched *s, dl_rd *r) {
  dl_msg_func m;
  fnentry *f;
  int rc;
  RD(dl_get_func_msg(r, &m));
  if ((f = dl_map_get(&s->fns, m.hash, 16)) != NULL) {
    fn_sender_add(s, f);
    return 0;
  }
  f = xalloc(sizeof *f);
  if (f == NULL) return DL_ENOMEM;
  memset(f, 0, sizeof *f);
  memcpy(f->hash, m.hash, 16);
  f->code = dupbytes(m.code, m.len);
  f->len = m.len;
  if ((rc = dl_map_put(&s->fns, (const char *)f->hash, 16, f)) != 0) {
    dl_free(f->code);
    dl_free(f);
    return rc;
  }
  fn_sender_add(s, f);
  return 0;
}

static int on_scatter(dl_sched *s, dl_rd *r) {
  dl_msg_scatter m;
  const char *key;
  size_t klen;
  uint64_t i, id, pick = 0;
  sworker *w = NULL;
  task *t;
  RD(dl_get_scatter(r, &m));
  key = m.key;
  klen = m.klen;
  for (i = 0; i < m.nworkers; i++) {
    RD(dl_get_id(&m.workers, &id));
    if (w == NULL) w = find_worker(s, (int)id);
  }
  if (w == NULL) { /* the worker with the least managed memory */
    int k;
    for (k = 0; k < s->nworkers; k++)
      if (s->workers[k]->alive &&
          (w == NULL || s->workers[k]->info.stored < w->info.stored))
        w = s->workers[k], pick = (uint64_t)k;
  }
  (void)pick;
  t = dl_imap_get(&s->tasks, key, klen);
  if (t != NULL) {
    want_add(s, t);
    if (t->state == T_MEMORY) notify_done(s, t);
    return 0;
  }
  t = task_new(s, key, klen, NULL, 0, NULL, 0, NULL, 0);
  if (t == NULL) return DL_ENOMEM;
  want_add(s, t);
  t->seq = (uint32_t)s->seq++;
  t->processing_on = -1;
  t->state = T_PROCESSING;
  count_new(s, t, key, klen);
  dl_imap_put_key(&s->tasks, t, key, klen);
  if (w == NULL) {
    dl_buf e;
    dl_buf_init(&e);
    err_rec(&e, DL_ERR_LOST, "scatter: no worker is running");
    fail(s, t, DL_ERR_LOST, e.p, e.len);
    dl_buf_free(&e);
    return 0;
  }
  {
    dl_msg_store st;
    st.key = key;
    st.klen = klen;
    st.bytes = m.bytes;
    st.blen = m.blen;
    dl_put_store(wout(s, w->info.id), &st);
  }
  t->processing_on = w->info.id;
  w->info.inflight++;
  return 0;
}

static int on_gather(dl_sched *s, dl_rd *r, int shared_ok) {
  dl_msg_gather m;
  uint64_t i;
  RD(dl_get_gather(r, &m));
  for (i = 0; i < m.nkeys; i++) {
    const char *key;
    size_t klen;
    task *t;
    dl_buf *b = NULL;
    RD(dl_get_key(&m.keys, &key, &klen));
    t = dl_imap_get(&s->tasks, key, klen);
    if (t && t->state == T_MEMORY && t->nwho > 0)
      b = wout(s, twho(t)[0]);
    if (b) {
      dl_put_get(b, shared_ok, m.reqid, key, klen);
      if (s->npgets == s->cappgets) {
        size_t nc = s->cappgets ? s->cappgets * 2 : 16;
        pget *np = dl_realloc(s->pgets, nc * sizeof *np);
        if (np == NULL) return DL_ENOMEM;
        s->pgets = np;
        s->cappgets = nc;
      }
      s->pgets[s->npgets].reqid = m.reqid;
      s->pgets[s->npgets].key = dupbytes(key, klen);
      s->pgets[s->npgets].klen = klen;
      s->pgets[s->npgets].wid = twho(t)[0];
      s->pgets[s->npgets].to = s->from;
      s->npgets++;
    } else { /* not in memory (any more): the client waits again */
      b = rout(s);
      if (b)
        dl_put_data_head(b, DL_M_GATHER_REPLY, m.reqid, key, klen, 0, 0);
    }
  }
  return 0;
}

/*
** Lookahead over a frame.  A frame carries hundreds of messages about as
** many tasks, and the task map of a big graph does not fit in the caches:
** each lookup would wait for memory.  While the frame is handled message
** by message, the key of the message AHEAD places further on gets its slot
** loaded, and AHEAD / 2 places on, the task in it.  Messages are skipped
** over by their layout; at a type whose layout is not known here the
** lookahead stops for the rest of the frame.
*/
#define AHEAD 16

typedef struct ahead {
  dl_rd r;           /* the next message to look at */
  int on;            /* 0 once a message of unknown layout was met */
  unsigned n;        /* messages looked at */
  uint64_t h[AHEAD]; /* the key hash of message i, at i % AHEAD */
} ahead;

/* Look at one more message: hash its key and load its slot. */
static void ahead_one(dl_sched *s, ahead *a, int from_worker) {
  unsigned type = 0;
  const char *key = NULL;
  size_t klen = 0;
  int bad = 1;
  if (a->on && dl_rd_left(&a->r) > 0 && dl_wire_type(&a->r, &type) == 0) {
    if (from_worker) {
      dl_msg_done m;
      bad = type != DL_M_DONE || dl_get_done(&a->r, &m);
      key = m.key, klen = m.klen;
    } else if (type == DL_M_SUBMIT) {
      dl_msg_submit m;
      bad = dl_get_submit(&a->r, &m);
      key = m.key, klen = m.klen;
    } else if (type == DL_M_RELEASE || type == DL_M_CCANCEL) {
      dl_msg_key m;
      bad = dl_get_key_msg(&a->r, &m);
      key = m.key, klen = m.klen;
    }
  }
  if (bad) {
    a->on = 0;
    return;
  }
  a->h[a->n % AHEAD] = dl_hash(key, klen);
  dl_imap_prefetch(&s->tasks, a->h[a->n % AHEAD]);
  a->n++;
}

static void ahead_start(dl_sched *s, ahead *a, const char *p, size_t n,
                        int from_worker) {
  unsigned i;
  dl_rd_init(&a->r, p, n);
  a->on = 1;
  a->n = 0;
  for (i = 0; i < AHEAD; i++) ahead_one(s, a, from_worker);
}

/* Message i is being handled: look further on. */
static void ahead_next(dl_sched *s, ahead *a, unsigned i, int from_worker) {
  if (i + AHEAD / 2 < a->n)
    dl_imap_prefetch_val(&s->tasks, a->h[(i + AHEAD / 2) % AHEAD]);
  ahead_one(s, a, from_worker);
}

static int client_msg(dl_sched *s, unsigned type, dl_rd *r);

int dl_sched_client_frame(dl_sched *s, const char *p, size_t n, double now) {
  dl_rd r;
  int rc = 0;
  unsigned i = 0;
  ahead a;
  s->now = now;
  dl_rd_init(&r, p, n);
  ahead_start(s, &a, p, n, 0);
  while (dl_rd_left(&r) > 0 && rc == 0) {
    unsigned type = 0;
    ahead_next(s, &a, i++, 0);
    dl_wire_type(&r, &type);
    rc = client_msg(s, type, &r);
  }
  dispatch(s);
  return rc;
}

int dl_sched_requester_frame(dl_sched *s, int rid, const char *p, size_t n,
                             double now) {
  int rc, from = s->from;
  s->from = rid;
  rc = dl_sched_client_frame(s, p, n, now);
  s->from = from;
  return rc;
}

void dl_sched_requester_gone(dl_sched *s, int rid) {
  unsigned char (*hs)[16] = NULL;
  size_t i = 0, nh = 0, cap = 0;
  fnentry *f;
  /* Gathers it waits for: their answers have nowhere to go. */
  for (i = 0; i < s->npgets;) {
    if (s->pgets[i].to == rid) {
      dl_free(s->pgets[i].key);
      s->pgets[i] = s->pgets[--s->npgets];
    } else {
      i++;
    }
  }
  release_held(s, rid);
  dl_coord_gone(s->coord, rid, s->now);
  /* Functions it alone kept: hashes first, dropping edits the map. */
  i = 0;
  while ((f = dl_map_next(&s->fns, &i)) != NULL) {
    int k;
    for (k = 0; k < f->nsenders; k++)
      if (f->senders[k].rid == rid) {
        fn_sender_drop(f, k);
        if (f->refs == 0 && f->nsenders == 0) {
          if (nh == cap) {
            size_t nc = cap ? cap * 2 : 16;
            void *nb = dl_realloc(hs, nc * sizeof *hs);
            if (nb == NULL) break;
            hs = nb;
            cap = nc;
          }
          memcpy(hs[nh++], f->hash, 16);
        }
        break;
      }
  }
  for (i = 0; i < nh; i++)
    if ((f = dl_map_get(&s->fns, (const char *)hs[i], 16)) != NULL)
      fn_drop(s, f);
  dl_free(hs);
  dispatch(s);
}

/*
** One client message of the given type (its type byte read), from the
** client or, with s->from set, from the tasks of a worker (get_client);
** DL_EPROTO for a type that is not a client message.
*/
static int client_msg(dl_sched *s, unsigned type, dl_rd *r) {
  switch (type) {
    case DL_M_SUBMIT: return on_submit(s, r);
    case DL_M_CFUNC: return on_cfunc(s, r);
    case DL_M_FN_FORGET: return on_fn_forget(s, r);
    case DL_M_RELEASE: return on_release(s, r);
    case DL_M_GATHER: return on_gather(s, r, 0);
    case DL_M_GATHERS: return on_gather(s, r, 1);
    case DL_M_GATHERF: return on_gather(s, r, 2);
    case DL_M_SCATTER: return on_scatter(s, r);
    case DL_M_COORD: return dl_coord_request(s->coord, s->from, r, s->now);
    case DL_M_CCANCEL: {
      dl_msg_key m;
      task *t;
      if (dl_get_key_msg(r, &m)) return DL_EPROTO;
      t = dl_imap_get(&s->tasks, m.key, m.klen);
      if (t) cancel_task(s, t);
      return 0;
    }
    default: return DL_EPROTO;
  }
}

/* ------------------------------------------------------- worker frames */

/* t has retries left, so it has its task_x. */
static void schedule_retry(dl_sched *s, task *t, double now) {
  task_x *x = t->x;
  int attempt = x->tries + 1;
  x->not_before = now + 0.05 * (double)(1 << (attempt > 8 ? 8 : attempt));
  set_state(s, t, T_WAITING);
  t->waiting = 0; /* it waits for the timer only */
  x->next_delayed = s->delayed;
  s->delayed = t;
  x->tries++;
}

double dl_sched_tick(dl_sched *s, double now) {
  task **pp = &s->delayed;
  double next = -1;
  while (*pp) {
    task *t = *pp;
    if (t->state != T_WAITING) { /* failed or released meanwhile */
      *pp = t->x->next_delayed;
      continue;
    }
    if (t->x->not_before <= now) {
      int k;
      *pp = t->x->next_delayed;
      for (k = 0; k < t->ndeps; k++)
        if (tdeps(t)[k]->state != T_MEMORY) t->waiting++;
      if (t->waiting == 0) make_ready(s, t);
      else
        for (k = 0; k < t->ndeps; k++)
          if (tdeps(t)[k]->state == T_RELEASED) need(s, tdeps(t)[k]);
      continue;
    }
    if (next < 0 || t->x->not_before - now < next)
      next = t->x->not_before - now;
    pp = &t->x->next_delayed;
  }
  check_stall(s, now);
  dl_coord_tick(s->coord, now);
  dispatch(s);
  return next;
}

static int on_done(dl_sched *s, sworker *w, dl_rd *r, double now) {
  dl_msg_done m;
  const char *key;
  size_t klen;
  uint64_t start, stop;
  task *t;
  RD(dl_get_done(r, &m));
  key = m.key;
  klen = m.klen;
  start = m.start_us;
  stop = m.stop_us;
  (void)now;
  t = dl_imap_get(&s->tasks, key, klen);
  if (t && t->state == T_PROCESSING && t->processing_on == w->info.id) {
    double d = (double)(stop - start) * 1e-6;
    s->hand = t;
    s->hand_key = key;
    s->hand_klen = klen;
    unload(w, t);
    if (tpay(t) && !t->restoring) { /* a run, not a store */
      set_nbytes(s, t, m.nbytes);
      record_event(s, t, w->info.id, (double)start * 1e-6,
                   (double)stop * 1e-6, 1, NULL, 0);
      s->avg_duration =
          s->avg_duration < 0 ? d : 0.8 * s->avg_duration + 0.2 * d;
    }
    finished(s, t, w->info.id, m.nbytes, m.inl, m.ilen);
    held(s, w->info.id, t, 1);
    s->hand = NULL;
  } else if (t && t->state == T_MEMORY) { /* a second copy: keep it */
    int k, have = 0;
    for (k = 0; k < t->nwho; k++) have |= twho(t)[k] == w->info.id;
    if (!have && who_add(t, w->info.id) == 0) held(s, w->info.id, t, 1);
  } else { /* stale: nobody wants this result any more */
    dl_buf *b = wout(s, w->info.id);
    if (b) dl_put_key_msg(b, DL_M_FREE, key, klen);
  }
  return 0;
}

static int on_err(dl_sched *s, sworker *w, dl_rd *r, double now) {
  dl_msg_err m;
  task *t;
  RD(dl_get_err_msg(r, &m));
  t = dl_imap_get(&s->tasks, m.key, m.klen);
  if (t == NULL || t->state != T_PROCESSING ||
      t->processing_on != w->info.id)
    return 0;
  unload(w, t);
  t->processing_on = -1;
  record_event(s, t, w->info.id, now, now, 0, m.rec, m.rlen);
  if (m.kind == DL_ERR_RAISED && tx(t)->retries > 0) {
    t->x->retries--;
    schedule_retry(s, t, now);
    return 0;
  }
  fail(s, t, (int)m.kind, m.rec, m.rlen);
  return 0;
}

/*
** A task running on w waits for the task of key wkey (or for something
** else, wkey ""): it stops counting in w's inflight, so w gets more work.
** A wait that closes a cycle (the task waits on itself, or on a task that
** waits, directly or not, on it) can never end: w is told (DL_M_CYCLE) and
** the waiting task raises.
*/
static int on_secede(dl_sched *s, sworker *w, dl_rd *r) {
  dl_msg_two m;
  const char *key, *wkey;
  size_t klen, wklen;
  task *t, *x;
  int hops;
  RD(dl_get_two_msg(r, &m));
  key = m.a;
  klen = m.alen;
  wkey = m.b;
  wklen = m.blen;
  t = dl_imap_get(&s->tasks, key, klen);
  if (t == NULL || t->state != T_PROCESSING ||
      t->processing_on != w->info.id)
    return 0;
  if (!t->seceded) {
    t->seceded = 1;
    w->info.inflight--;
  }
  if (t->x) {
    dl_free(t->x->waits_on);
    t->x->waits_on = NULL;
  }
  if (wklen && task_xw(s, t)) t->x->waits_on = dupbytes(wkey, wklen);
  /* Follow the waits from wkey: reaching t again is a cycle. */
  x = wklen ? dl_imap_get(&s->tasks, wkey, wklen) : NULL;
  for (hops = 0; x && hops < 100000; hops++) {
    if (x == t) {
      dl_buf *b = wout(s, w->info.id);
      char msg[800], kb[TKEYBUF];
      size_t kl;
      const char *k;
      if (b == NULL) break;
      k = tk(s, t, kb, &kl);
      if (hops == 0)
        snprintf(msg, sizeof msg, "deadlock: task '%.200s' waits for its "
                 "own result", k);
      else
        snprintf(msg, sizeof msg, "deadlock: task '%.200s' waits for "
                 "'%.*s', which waits (directly or not) for '%.200s'",
                 k, (int)(wklen > 150 ? 150 : wklen), wkey, k);
      {
        dl_msg_two c = {k, kl, msg, strlen(msg)};
        dl_put_two_msg(b, DL_M_CYCLE, &c);
      }
      if (t->x) {
        dl_free(t->x->waits_on);
        t->x->waits_on = NULL;
      }
      break;
    }
    if (x->state != T_PROCESSING || !x->seceded || tx(x)->waits_on == NULL)
      break;
    x = dl_imap_get(&s->tasks, x->x->waits_on, strlen(x->x->waits_on));
  }
  return 0;
}

static int on_missing(dl_sched *s, sworker *w, dl_rd *r) {
  dl_msg_missing m;
  task *t, *d;
  int k;
  RD(dl_get_missing(r, &m));
  t = dl_imap_get(&s->tasks, m.key, m.klen);
  d = dl_imap_get(&s->tasks, m.dep, m.dlen);
  if (t == NULL || t->state != T_PROCESSING ||
      t->processing_on != w->info.id)
    return 0;
  unload(w, t);
  t->processing_on = -1;
  if (d && d->state == T_MEMORY) { /* its holders do not have it: lost */
    free_data(s, d);
    set_state(s, d, T_RELEASED);
  }
  set_state(s, t, T_WAITING);
  t->waiting = 0;
  for (k = 0; k < t->ndeps; k++)
    if (tdeps(t)[k]->state != T_MEMORY) t->waiting++;
  for (k = 0; k < t->ndeps; k++)
    if (tdeps(t)[k]->state == T_RELEASED) need(s, tdeps(t)[k]);
  if (t->state == T_WAITING && t->waiting == 0) make_ready(s, t);
  return 0;
}

int dl_sched_worker_frame(dl_sched *s, int wid, const char *p, size_t n,
                          double now) {
  sworker *w = find_worker(s, wid);
  dl_rd r;
  int rc = 0;
  unsigned i = 0;
  ahead a;
  if (w == NULL) return 0;
  w->info.last_seen = now;
  if (w->info.status == DL_WS_SILENT) w->info.status = DL_WS_RUNNING;
  dl_rd_init(&r, p, n);
  ahead_start(s, &a, p, n, 1);
  while (dl_rd_left(&r) > 0 && rc == 0) {
    unsigned type = 0;
    ahead_next(s, &a, i++, 1);
    dl_wire_type(&r, &type);
    switch (type) {
      case DL_M_DONE: rc = on_done(s, w, &r, now); break;
      case DL_M_ERR: rc = on_err(s, w, &r, now); break;
      case DL_M_MISSING: rc = on_missing(s, w, &r); break;
      case DL_M_STOLEN: rc = on_stolen(s, w, &r); break;
      case DL_M_SECEDE: rc = on_secede(s, w, &r); break;
      case DL_M_SUBMIT:
      case DL_M_CFUNC:
      case DL_M_RELEASE:
      case DL_M_GATHER:
      case DL_M_SCATTER:
      case DL_M_CCANCEL:
      case DL_M_COORD:
        s->now = now;
        s->from = wid; /* a task's client (get_client) */
        rc = client_msg(s, type, &r);
        s->from = -1;
        break;
      case DL_M_HEARTBEAT: {
        dl_msg_heartbeat m;
        size_t selen;
        if (dl_get_heartbeat(&r, &m)) return DL_EPROTO;
        w->info.status = m.paused ? DL_WS_PAUSED : DL_WS_RUNNING;
        if (!m.paused) s->stall_since = 0; /* progress is possible again */
        if (m.paused) { /* ask again for what was still being fetched */
          uint32_t k;
          for (k = w->phead; k < w->nproc; k++)
            if (w->proc[k]) w->proc[k]->steal_denied = 0;
        }
        selen = m.selen;
        if (selen >= sizeof w->info.spill_err)
          selen = sizeof w->info.spill_err - 1;
        memcpy(w->info.spill_err, m.spill_err, selen);
        w->info.spill_err[selen] = '\0';
        w->info.managed = (int64_t)m.managed;
        w->info.spilled = (int64_t)m.spilled;
        w->info.rss = (int64_t)m.rss;
        w->info.executing = (int)m.executing;
        w->info.stored = (int)m.stored;
        w->info.spill_out = (int64_t)m.spill_out;
        w->info.spill_in = (int64_t)m.spill_in;
        w->info.xfer_in = (int64_t)m.xfer_in;
        w->info.xfer_out = (int64_t)m.xfer_out;
        if (w->nhist == 0 ||
            now - w->hist[(w->nhist - 1) % DL_SCHED_HISTORY].t >= 1.0) {
          dl_sched_sample *h = &w->hist[w->nhist++ % DL_SCHED_HISTORY];
          h->t = now;
          h->managed = w->info.managed;
          h->spilled = w->info.spilled;
          h->rss = w->info.rss;
          h->executing = w->info.executing;
          h->stored = w->info.stored;
          h->spill_out = w->info.spill_out;
          h->spill_in = w->info.spill_in;
          h->xfer_in = w->info.xfer_in;
          h->xfer_out = w->info.xfer_out;
        }
        break;
      }
      case DL_M_PROFILE: {
        dl_msg_profile m;
        if (dl_get_profile(&r, &m)) return DL_EPROTO;
        if (w->prof == NULL &&
            (w->prof = dl_prof_new(DL_SCHED_PROF_WORKER)) != NULL &&
            dl_prof_keep_log(w->prof, DL_SCHED_PROF_WORKER_LOG)) {
          dl_prof_free(w->prof);
          w->prof = NULL;
        }
        if (w->prof) {
          dl_prof_at(w->prof, now);
          dl_prof_merge_msg(w->prof, &m);
        }
        dl_prof_at(s->prof, now);
        dl_prof_merge_msg(s->prof, &m);
        break;
      }
      case DL_M_DATA: { /* a gather reply: pass it on to the client */
        dl_msg_data m;
        dl_buf *b;
        size_t k;
        int to = -1;
        if (dl_get_data(&r, &m)) return DL_EPROTO;
        for (k = 0; k < s->npgets; k++) {
          pget *g = &s->pgets[k];
          if (g->wid == wid && g->reqid == m.reqid && g->klen == m.klen &&
              memcmp(g->key, m.key, m.klen) == 0) {
            to = g->to;
            dl_free(g->key);
            *g = s->pgets[--s->npgets];
            break;
          }
        }
        b = to < 0 ? cout(s) : wout(s, to);
        if (b) dl_put_data(b, DL_M_GATHER_REPLY, &m);
        break;
      }
      default: rc = DL_EPROTO;
    }
  }
  dispatch(s);
  return rc;
}

int dl_sched_workers(dl_sched *s, dl_sched_winfo *out, int max) {
  int i;
  for (i = 0; i < s->nworkers && i < max; i++) out[i] = s->workers[i]->info;
  return s->nworkers;
}

void dl_sched_counts(dl_sched *s, int64_t out[6]) {
  memcpy(out, s->counts, sizeof s->counts);
}

int dl_sched_groups(dl_sched *s, dl_sched_group *out, int max) {
  size_t i = 0;
  tgroup *g;
  int n = 0;
  while ((g = dl_map_next(&s->groups, &i)) != NULL) {
    if (n < max) {
      copy_cut(out[n].name, sizeof out[n].name, g->name, g->nlen);
      memcpy(out[n].counts, g->counts, sizeof g->counts);
      out[n].total = g->total;
      out[n].done = g->done;
      out[n].erred = g->erred;
      out[n].colour = g->colour;
    }
    n++;
  }
  return n;
}

int dl_sched_events(dl_sched *s, uint64_t since, dl_sched_event *out,
                    int max, uint64_t *next) {
  uint64_t first = s->nevents > DL_SCHED_EVENTS
                       ? s->nevents - DL_SCHED_EVENTS : 0;
  int n = 0;
  if (since < first) since = first;
  while (since < s->nevents && n < max) {
    out[n++] = s->events[since % DL_SCHED_EVENTS];
    since++;
  }
  *next = since;
  return n;
}

static const char *dep_group(const dl_sched_tinfo *ti, int i) {
  const task *d = ti->deps[i];
  const tgroup *g = tgrp(ti->sched, d);
  return g ? g->name : "";
}

int64_t dl_sched_each_task(dl_sched *s,
                           void (*fn)(void *ud, const dl_sched_tinfo *t),
                           void *ud) {
  size_t i = 0;
  int64_t n = 0;
  task *t;
  while ((t = dl_imap_next(&s->tasks, &i)) != NULL) {
    dl_sched_tinfo ti;
    char kb[TKEYBUF];
    size_t kl;
    ti.id = t;
    ti.key = tk(s, t, kb, &kl);
    ti.group = t->gidx ? tgrp(s, t)->name : "";
    ti.state = t->state;
    ti.worker = t->state == T_PROCESSING ? t->processing_on : -1;
    ti.who = twho(t);
    ti.nwho = t->state == T_MEMORY ? t->nwho : 0;
    ti.nbytes = tnbytes(t);
    ti.deps = (const void *const *)tdeps(t);
    ti.ndeps = t->ndeps;
    ti.dep_group = dep_group;
    ti.sched = s;
    fn(ud, &ti);
    n++;
  }
  return n;
}

int dl_sched_history(dl_sched *s, int wid, dl_sched_sample *out, int max) {
  sworker *w = find_worker(s, wid);
  uint64_t i, first;
  int n = 0;
  if (w == NULL) return -1;
  first = w->nhist > DL_SCHED_HISTORY ? w->nhist - DL_SCHED_HISTORY : 0;
  for (i = first; i < w->nhist && n < max; i++)
    out[n++] = w->hist[i % DL_SCHED_HISTORY];
  return n;
}

int dl_sched_profile(dl_sched *s, int wid, double since, dl_prof *into) {
  sworker *w;
  dl_prof *from = s->prof;
  if (wid != 0) {
    if ((w = find_worker(s, wid)) == NULL) return -1;
    if ((from = w->prof) == NULL) return 0;
  }
  if (since < 0) {
    dl_prof_merge(into, from);
    return 0;
  }
  return dl_prof_merge_since(into, from, since);
}

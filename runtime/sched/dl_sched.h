/*
** dl_sched.h -- the scheduler: a pure-C task state machine.
**
** It receives client messages (graphs, releases, cancels) and worker
** messages (done, erred, missing), keeps every task's state and lineage,
** decides which worker runs what, and writes its decisions as messages into
** buffers the host gives it (dl_sched_io).  It never touches a lua_State,
** a socket or a clock of its own, so it can be driven and tested alone.
**
** Task states: WAITING (inputs not all in memory), READY (queued by
** priority), PROCESSING (sent to a worker), MEMORY (held by >= 1 worker),
** ERRED, RELEASED (spec kept for lineage, no data).  A lost result that is
** still needed is recomputed from its lineage.
*/
#ifndef dl_sched_h
#define dl_sched_h

#include <stdint.h>

#include "dl_buf.h"
#include "dl_coord.h"

typedef struct dl_sched dl_sched;

/* How the scheduler reaches the outside world; all borrowed. */
typedef struct dl_sched_io {
  /* The buffer of messages for worker wid (NULL if it is gone). */
  dl_buf *(*worker_out)(void *ud, int wid);
  /* The buffer of messages for the client. */
  dl_buf *(*client_out)(void *ud);
  void *ud;
} dl_sched_io;

/* What the scheduler knows of a worker's health (dl_sched_winfo.status). */
enum {
  DL_WS_RUNNING, /* heard from lately, running tasks */
  DL_WS_PAUSED,  /* past its memory_pause fraction: starts no task */
  DL_WS_SILENT,  /* no message for more than two heartbeats */
  DL_WS_DEAD     /* gone; reason says why (dl_sched_departed only) */
};

/* Per-worker figures, as last reported. */
typedef struct dl_sched_winfo {
  int id;
  int64_t pid;
  int nthreads;
  int64_t memory_limit;
  int64_t managed, spilled, rss;
  int executing, inflight, stored;
  double started;
  int status;       /* DL_WS_* */
  double last_seen; /* when its last message came (the callers' clock) */
  char spill_err[64]; /* why its last spill failed, "" if it did not */
  /* Bytes since it started: written to spill files, read back from them,
     received from peers, sent to peers. */
  int64_t spill_out, spill_in, xfer_in, xfer_out;
  char reason[96];  /* DL_WS_DEAD: why it is gone */
  char name[64];    /* `dlua worker --name`, "" when it has none */
} dl_sched_winfo;

/* Create a scheduler; returns NULL on out of memory. */
dl_sched *dl_sched_new(const dl_sched_io *io);
/* Free the scheduler and every task it holds. */
void dl_sched_free(dl_sched *s);

/* Tries a task gets before "killed worker" (default 3). */
void dl_sched_set_allowed_failures(dl_sched *s, int n);

/*
** Seconds a worker may stay silent (workers send a heartbeat every 0.5 s)
** before dl_sched_silent names it dead; also how long every worker may stay
** paused with work pending before that work fails ("no worker can make
** progress").  0 turns both off (the default).
*/
void dl_sched_set_heartbeat_timeout(dl_sched *s, double seconds);

/*
** Workers silent past the heartbeat timeout at now: their ids go into out
** (at most max) and the count is returned.  The caller kills each one and
** calls dl_sched_remove_worker; they are recorded as dead "no heartbeat".
** A gap in the caller's own calls (its process was stopped) is not held
** against the workers.
*/
int dl_sched_silent(dl_sched *s, double now, int *out, int max);

/* A worker joined, ready for tasks; 0 or DL_ENOMEM. */
int dl_sched_add_worker(dl_sched *s, int wid, int64_t pid, int nthreads,
                        int64_t memory_limit, double now);
/* Give worker wid a name (copied; cut at 63 bytes), shown with its
   figures and in the scheduler's messages about it.  No-op for an
   unknown wid. */
void dl_sched_name_worker(dl_sched *s, int wid, const char *name);
/*
** A worker is gone (died or closed): its running tasks are retried
** elsewhere (or fail after too many deaths) and the results it alone held
** are recomputed if still needed.
*/
void dl_sched_remove_worker(dl_sched *s, int wid);

/*
** Handle one frame of messages from the client / from worker wid.
** Returns 0, or DL_EPROTO for a malformed frame (the rest is skipped).
*/
int dl_sched_client_frame(dl_sched *s, const char *p, size_t n, double now);
int dl_sched_worker_frame(dl_sched *s, int wid, const char *p, size_t n,
                          double now);

/*
** More than one client: a `dlua scheduler` gives each client that joins
** it a requester id from DL_SCHED_CLIENT_BASE up; what the scheduler
** says to that client goes into worker_out(ud, id).  Its keys, waits and
** leases are its own: when it goes, dl_sched_requester_gone releases
** them, and what another client holds is left alone.  Returns as
** dl_sched_client_frame.
*/
#define DL_SCHED_CLIENT_BASE 0x40000000
int dl_sched_requester_frame(dl_sched *s, int rid, const char *p, size_t n,
                             double now);
void dl_sched_requester_gone(dl_sched *s, int rid);

/* Run timers (retry back-off) due at now; returns seconds to the next, or
** a negative number when none is pending. */
double dl_sched_tick(dl_sched *s, double now);

/* Figures for the dashboard and cluster info; returns the worker count and
** fills at most max entries. */
int dl_sched_workers(dl_sched *s, dl_sched_winfo *out, int max);

/* "running", "paused", "silent" or "dead" for a DL_WS_* status. */
const char *dl_sched_status_name(int status);

/* The last workers that left (at most DL_SCHED_DEPARTED are kept), with
   status DL_WS_DEAD and the reason; returns how many fill out. */
#define DL_SCHED_DEPARTED 16
int dl_sched_departed(dl_sched *s, dl_sched_winfo *out, int max);

/* A worker's figures at one heartbeat (time: the callers' clock). */
typedef struct dl_sched_sample {
  double t;
  int64_t managed, spilled, rss;
  int executing, stored;
  int64_t spill_out, spill_in, xfer_in, xfer_out; /* see dl_sched_winfo */
} dl_sched_sample;

/* Each worker keeps its last DL_SCHED_HISTORY samples, one a second at
   most (5 minutes; about 12 KiB a worker). */
#define DL_SCHED_HISTORY 300

/* Copy worker wid's samples, oldest first, into out (at most max); returns
   how many, or -1 when there is no such worker. */
int dl_sched_history(dl_sched *s, int wid, dl_sched_sample *out, int max);

/* Task counts by state: out[0..5] = waiting, ready, processing, memory,
** erred, released. */
void dl_sched_counts(dl_sched *s, int64_t out[6]);

/* A task group: the tasks whose keys share a prefix ("inc-..." -> "inc").
   A group lives while the scheduler knows one of its tasks: when its last
   task is forgotten, it goes, so groups are bounded by the tasks held. */
#define DL_SCHED_NAMELEN 48
typedef struct dl_sched_group {
  char name[DL_SCHED_NAMELEN]; /* cut to fit */
  int64_t counts[6]; /* now, by state (see dl_sched_counts) */
  int64_t total;     /* tasks ever submitted */
  int64_t done;      /* computed */
  int64_t erred;
  int colour; /* 0 .. DL_SCHED_COLOURS - 1, unlike every other live group's
                 while there are at most that many (see count_new) */
} dl_sched_group;

/* The size of the dashboard's palette of group colours. */
#define DL_SCHED_COLOURS 12

/* Fill at most max groups; returns how many there are. */
int dl_sched_groups(dl_sched *s, dl_sched_group *out, int max);

/* The coordination primitives in use (dl_coord_walk). */
void dl_sched_coord_walk(dl_sched *s, dl_coord_walk_fn fn, void *ud);

/* One finished or failed task run, for the task stream (times: monotonic
   seconds).  Strings are copies, cut to fit and NUL-terminated. */
#define DL_SCHED_KEYLEN 80
#define DL_SCHED_ERRLEN 96
typedef struct dl_sched_event {
  char key[DL_SCHED_KEYLEN];
  char group[DL_SCHED_NAMELEN];
  char err[DL_SCHED_ERRLEN]; /* a failure: its message's first line */
  int worker;
  double start, stop;
  uint64_t nbytes; /* the result's size (0 for a failure) */
  int ok;
} dl_sched_event;

/* Runs are kept in a ring of this many (about 2.3 MiB, allocated at the
   first event). */
#define DL_SCHED_EVENTS 10000

/*
** Copy at most max events recorded since event number since (0: the
** oldest kept) into out; *next is the number to pass next time.
*/
int dl_sched_events(dl_sched *s, uint64_t since, dl_sched_event *out,
                    int max, uint64_t *next);

/* One task as dl_sched_each_task shows it.  Everything is borrowed and
   valid only during the call; id and deps are opaque identities (equal
   for the same task within one walk), never to be dereferenced. */
typedef struct dl_sched_tinfo {
  const void *id;
  const char *key; /* NUL-terminated */
  const char *group; /* "" when it has none */
  int state;         /* index as in dl_sched_counts */
  int worker;        /* PROCESSING: the worker running it, else -1 */
  const int *who;    /* MEMORY: the workers holding it */
  int nwho;
  uint64_t nbytes;   /* its result's size, once known */
  const void *const *deps;
  int ndeps;
  /* The group name of dependency i (0 <= i < ndeps); "" when none. */
  const char *(*dep_group)(const struct dl_sched_tinfo *t, int i);
  const void *sched; /* dep_group's: the scheduler walked */
} dl_sched_tinfo;

/* Call fn for every task the scheduler holds, in no particular order;
   returns how many there were.  fn must not call into the scheduler. */
int64_t dl_sched_each_task(dl_sched *s,
                           void (*fn)(void *ud, const dl_sched_tinfo *t),
                           void *ud);

/*
** The tasks' profile (dl_prof.h) that workers send with their heartbeats:
** the cluster's since the scheduler started (wid 0; departed workers'
** samples included), or worker wid's, is added to into; with since >= 0
** only the samples that arrived at since or later (the time of the frame,
** as passed to dl_sched_worker_frame).  0; 1 when the window reaches past
** the log kept for it (then into has its newest part only); -1 when there
** is no such worker.  Trees are bounded: DL_SCHED_PROF_NODES nodes for the
** cluster, DL_SCHED_PROF_WORKER for each worker (about 100 bytes a node);
** so are their logs for the window: the last DL_SCHED_PROF_LOG counts for
** the cluster and DL_SCHED_PROF_WORKER_LOG per worker (16 bytes each; a
** count is one function path's samples in one heartbeat, so a worker
** sends at most 100 a second and usually a few).
*/
#define DL_SCHED_PROF_NODES 20000
#define DL_SCHED_PROF_WORKER 5000
#define DL_SCHED_PROF_LOG 100000
#define DL_SCHED_PROF_WORKER_LOG 20000
struct dl_prof;
int dl_sched_profile(dl_sched *s, int wid, double since,
                     struct dl_prof *into);

#endif

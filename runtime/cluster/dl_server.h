/*
** dl_server.h -- a local cluster: the scheduler's thread and loop, the
** worker processes it spawns, watches and replaces, and the in-process
** link to the client.  Pure C on libuv: no Lua.
**
** The client talks to the scheduler with the same message format as the
** workers do (dl_wire.h, dl_conn.h), through dl_server_send / dl_server_recv.
*/
#ifndef dl_server_h
#define dl_server_h

#include <stdint.h>

#include "dl_auth.h"
#include "dl_buf.h"
#include "dl_sched.h"

typedef struct dl_server dl_server;

typedef struct dl_server_opts {
  int n_workers;        /* > 0 */
  int64_t memory_limit; /* bytes per worker, > 0 */
  const char *worker_exe; /* program run with --dlua-worker */
  int allowed_failures; /* 0: default (3) */
  double start_timeout; /* seconds to wait for the workers (0: 20 s) */
  /* Fractions of memory_limit (0: defaults 0.6, 0.7, 0.8, 0.95): spill
     stored values past memory_target (managed) or memory_spill (process),
     pause new tasks past memory_pause, restart the worker past
     memory_terminate. */
  double memory_target, memory_spill, memory_pause, memory_terminate;
  /* A service to run on the scheduler's loop (the dashboard), or NULL.
     The struct is copied; its ud is the server's from the call of
     dl_server_start on, whether the start succeeds or not. */
  const struct dl_service *service;
  /* Seconds a worker may stay silent before it is killed and replaced
     (see dl_sched_set_heartbeat_timeout); 0: the default, 5 s. */
  double heartbeat_timeout;
  /* Version strings the dashboard reports ("0.1.0", "Lua 5.4.4"); NULL:
     "unknown".  Copied. */
  const char *dlua_version, *lua_version;
  /* Accept workers over TCP (`dlua worker ADDRESS`) on this "host:port"
     (a numeric address; port 0: a free one; see dl_server_listen_address),
     each authenticated with token (copied) before any of its bytes is
     decoded; NULL: none.  Such a cluster starts no local workers: n_workers
     must be 0, and the start does not wait for any. */
  const char *listen_address;
  const dl_token *token;
  /* With listen_address: TLS for every connection (dl_tls.h), or NULL.
     Borrowed for the process's life (dl_tls_ctx_shared). */
  const struct dl_tls_ctx *tls;
} dl_server_opts;

/*
** A service run on the scheduler's loop beside the workers.  The cluster
** layer knows nothing more of it: the dashboard is one, built by the Lua
** binding (dl_dashboard_service) and handed in through dl_server_opts, so
** cluster/ does not depend on dashboard/.
*/
struct uv_loop_s;

typedef struct dl_service {
  void *ud; /* the service's state */
  /* On the loop's thread, before the workers start: 0, or -1 with a
     message in err (the cluster's start then fails with it). */
  int (*start)(void *ud, struct uv_loop_s *loop, struct dl_server *srv,
               char *err, size_t errlen);
  /* The address it serves ("host:port"), or NULL; called after start. */
  const char *(*address)(void *ud);
  /* On the loop's thread, when the cluster stops: close its handles. */
  void (*stop)(void *ud);
  /* Free ud, once, after the loop ended or when the start failed. */
  void (*free)(void *ud);
} dl_service;

/*
** Start the scheduler thread and the workers, and wait until all workers
** are ready.  Returns NULL with a message in err on failure (nothing is
** left running).
*/
dl_server *dl_server_start(const dl_server_opts *o, char *err, size_t errlen);

/*
** Make libuv's process-wide state now, while descriptors are free (libuv
** aborts if its first loop cannot get a pipe).  dlua_openlibs calls it;
** dl_server_start calls it again and fails with its error.  0 or a libuv
** error.  Thread-safe.
*/
int dl_server_preinit(void);

/*
** Stop every cluster of this process and wait (at most 3 s) for their
** workers to be gone; the clusters stay allocated but dead.  For a process
** about to die of a signal.  Returns how many there were.
*/
int dl_server_stop_all(void);

/*
** The client's side of a scheduler in another process (`dlua scheduler`):
** dial address ("tcp://host:port"), authenticate with token (borrowed for
** the call) presenting version, and join as its client, all within timeout
** seconds (0: 10 s).  The result is used as a local cluster's is:
** dl_server_send / dl_server_recv carry the client's messages over the
** link; workers and counts are the scheduler's latest figures (sent twice
** a second); groups, events, history and scale are not available (0 /
** DL_EINVAL).  When the link ends, waits and sends fail (DL_EPROTO) and
** dl_server_lost says why.  NULL with one line in err on failure (a wrong
** token, an unreachable address, a scheduler that serves another client).
*/
dl_server *dl_server_connect(const char *address, const dl_token *token,
                             const struct dl_tls_ctx *tls,
                             const char *version, double timeout, char *err,
                             size_t errlen);

/* Ask the remote scheduler of s (dl_server_connect) to stop with all its
   workers; the messages sent before go first.  0, DL_EINVAL for a local
   cluster, or DL_EPROTO when the link is gone. */
int dl_server_shutdown(dl_server *s);

/* Non-zero once the cluster's thread has ended (stopped, or its remote
   scheduler gone).  Thread-safe. */
int dl_server_ended(dl_server *s);

/* Why the link to a remote scheduler ended, or NULL while it is up (and
   for a local cluster); valid until dl_server_stop. */
const char *dl_server_lost(dl_server *s);

/*
** End this process's workers' zygote (see runtime/cluster/dl_zygote.h) if
** no cluster of the process runs, so the process has no child left; the
** next cluster starts a new one.  Returns 1 if it ended one.
*/
int dl_server_end_zygote(void);

/* Stop everything: every worker process is ended and reaped, the thread
** joined, the private directory removed.  s may be NULL. */
void dl_server_stop(dl_server *s);

/*
** Hand client messages (n bytes at p) to the scheduler's thread.  With
** urgent set, or when the last hand-over is DL_SERVER_BURST seconds old,
** the thread is woken now; otherwise the messages ride with the current
** burst and are taken within a millisecond at most, so a loop of submits
** costs a wake-up per burst, not per task; dl_server_recv wakes the
** thread at once for such messages.  Right after the thread handed news
** to a waiting client, with no task in flight, it watches for the
** client's next messages for some microseconds: those need no wake-up at
** all.  Call from one client thread.
*/
#define DL_SERVER_BURST 100e-6
int dl_server_send(dl_server *s, const char *p, size_t n, int urgent);

/* Seconds a waiting client spins at most (and at least, once the spin
   has stopped paying) before it sleeps on the futex; it yields the CPU
   between looks. */
#ifndef DL_SERVER_SPIN
#define DL_SERVER_SPIN 80e-6
#endif
#define DL_SERVER_SPIN_MIN 5e-6

/*
** Wait up to timeout seconds (< 0: forever) for messages from the
** scheduler and append them to out.  Messages arrive in the background:
** the scheduler's thread puts them in the handle's inbox as soon as they
** are made, and this only takes them.  Returns 1 if messages arrived, 0 on
** timeout, DL_EPROTO if the scheduler is gone, or DL_EINTR if
** dl_server_interrupt asked waits to stop (the request is then taken).
** The caller's thread spins for up to DL_SERVER_SPIN seconds (less while
** spinning does not pay), then sleeps.
*/
int dl_server_recv(dl_server *s, dl_buf *out, double timeout);

/*
** Take the messages that came, if any, without waiting, and append them
** to out: 1 if there were, else 0.  Unlike dl_server_recv it wakes
** nothing and is cheap when none came (an atomic load): a client calls it
** between submits, to read news as they come instead of letting them pile
** up in the inbox until its next wait.
*/
int dl_server_take(dl_server *s, dl_buf *out);

/*
** Ask the client waits of this process to stop (on non-zero; they return
** DL_EINTR, and the first to see the request takes it), or withdraw a
** request no wait has taken (on == 0).  Async-signal-safe: an atomic store
** and a futex wake-up.
*/
void dl_server_interrupt(int on);

/*
** Wait without a cluster: until some scheduler of this process has put
** messages in its client's inbox since dl_server_wake_seq returned seen,
** or timeout seconds (< 0: forever).  Returns 1 (messages), 0 (timeout),
** or DL_EINTR (see dl_server_interrupt).  Sleeps; never spins.
*/
unsigned dl_server_wake_seq(void);
int dl_server_idle(unsigned seen, double timeout);

/* Change the number of workers (new ones are started, extra ones retired). */
int dl_server_scale(dl_server *s, int n);

/* Snapshot of the workers (see dl_sched_workers) and task counts. */
int dl_server_workers(dl_server *s, dl_sched_winfo *out, int max);
void dl_server_counts(dl_server *s, int64_t out[6]);

/* The last workers that left, and why (see dl_sched_departed). */
int dl_server_departed(dl_server *s, dl_sched_winfo *out, int max);

/* Task groups and recent completions (see dl_sched.h); the names stay
   valid until dl_server_stop. */
int dl_server_groups(dl_server *s, dl_sched_group *out, int max);

/* The coordination primitives in use (dl_coord_walk), under the lock: fn
   must not call back into the server. */
void dl_server_coord_walk(dl_server *s, dl_coord_walk_fn fn, void *ud);
int dl_server_events(dl_server *s, uint64_t since, dl_sched_event *out,
                     int max, uint64_t *next);

/* The address the service listens on, "host:port", or NULL when there
   is none; borrowed, valid until dl_server_stop. */
const char *dl_server_service_address(dl_server *s);

/* "tcp://host:port" where workers join over TCP, or NULL when the cluster
   does not listen; borrowed, valid until dl_server_stop. */
const char *dl_server_listen_address(dl_server *s);

/* The version strings given in dl_server_opts; borrowed. */
void dl_server_versions(dl_server *s, const char **dlua, const char **lua);

/* Every task, under the scheduler's lock (see dl_sched_each_task): fn
   must be quick and must not call dl_server. */
int64_t dl_server_each_task(dl_server *s,
                            void (*fn)(void *ud, const dl_sched_tinfo *t),
                            void *ud);

/* Worker wid's recent figures (see dl_sched_history). */
int dl_server_history(dl_server *s, int wid, dl_sched_sample *out, int max);

/* The tasks' profile, the cluster's (wid 0) or a worker's, from time
   since on (monotonic seconds, as dlua_time; -1: all) added to into (see
   dl_sched_profile); 0, 1 when the window reaches past what is kept, or
   -1 when there is no such worker. */
int dl_server_profile(dl_server *s, int wid, double since,
                      struct dl_prof *into);

/* The memory fractions in effect (target, spill, pause, terminate; see
   dl_server_opts), for drawing the workers' memory. */
void dl_server_memory_fractions(dl_server *s, double out[4]);

/*
** The last DL_SERVER_LOG_LINES lines the workers wrote to their stdout and
** stderr (the ones relayed to ours, with "[worker N]" in front), kept with
** the worker's id, also after it left (about 220 KiB, allocated at the
** first line).  A line is cut to fit.  Workers joined over TCP write to
** their own terminals: none of theirs.
*/
#define DL_SERVER_LOG_LINES 1000
typedef struct dl_server_log {
  double t; /* when it came (monotonic seconds) */
  int wid;
  int fd;   /* 1: stdout, 2: stderr */
  char text[200];
} dl_server_log;

/* Copy worker wid's kept lines (wid 0: every worker's), the newest first,
   into out (at most max); returns how many. */
int dl_server_logs(dl_server *s, int wid, dl_server_log *out, int max);

/* The private directory holding the workers' sockets; borrowed. */
const char *dl_server_dir(dl_server *s);

/* Workers started since the beginning, and those that died unasked. */
void dl_server_stats(dl_server *s, int *spawned, int *died);

#endif

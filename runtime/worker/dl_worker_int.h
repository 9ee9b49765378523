/*
** dl_worker_int.h -- the worker's private header: its one state (W), the
** records it keeps, and what each part of the worker offers the others.
**
** A worker process has two threads: the I/O thread runs a libuv loop
** (the scheduler link, fetches from peers, serving peers) and the
** executor thread owns the lua_State and runs one task at a time.  The
** parts, one file each:
**   dl_worker_store.c  stored results, kept encoded; spilling to disk
**   dl_worker_exec.c   the executor thread: decode, run, encode a task
**   dl_worker_fetch.c  fetching a task's inputs from the peers holding them
**   dl_worker_serve.c  answering peers' (and the scheduler's) GETs
**   dl_worker_link.c   the scheduler link: COMPUTE in, DONE / ERR out,
**                      cancel, steal, heartbeats
**   dl_worker.c        dlua_worker_main: setup, signals, the watchdog
**   dl_worker_zygote.c the zygote: forks ready workers on request
** Fields of W under "shared with the executor" are read and written
** under W.lock; the rest belong to the I/O thread.
*/
#ifndef dl_worker_int_h
#define dl_worker_int_h

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
#include "dl_conn.h"
#include "dl_map.h"
#include "dl_mem.h"
#include "dl_tcp.h"
#include "dl_wire.h"
#include "dl_worker.h"
#include "dlua.h"

/* Results smaller than this stay decoded in the executor's cache too. */
#define CACHE_MAX ((size_t)64 * 1024)

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
  char *fns; /* its functions' hashes (nfns, 16 bytes each): the payload
                names them by position (fn_get_at) */
  uint64_t nfns;
  /* Its inputs as COMPUTE listed them (the part of the message after
     ndeps, checked by dl_get_compute): a future in the payload names its
     input by its position here (dl_w_future_decode). */
  char *deps;
  size_t dlen;
  uint64_t ndeps;
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
  int filed;  /* the peer's block could not be read by its address (a ptrace
                 policy, say): ask for it as a memfd to map */
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
  int id; /* 0 until the scheduler gives one (a worker joining over TCP) */
  /* Joined over TCP (`dlua worker ADDRESS`): peers are reached over
     authenticated TCP, values travel as bytes (no shared pages across
     hosts), and the files are in a directory of its own. */
  int remote;
  char connect_to[300];  /* the scheduler's "tcp://host:port" */
  char name[64];         /* --name (DL_WORKER_NAME_MAX bytes), "" none */
  char wname[96];        /* "worker ID" or "worker ID (NAME)", for errors */
  char listen_host[128]; /* where peers reach it ("": the address its
                            scheduler link leaves from) */
  const char *token_file;
  const char *tls_dir;       /* --tls-dir, or NULL */
  struct sockaddr_storage via; /* the local end of its scheduler link */
  dl_token token;
  dl_tcp_opts topts;
  dl_tcp_server *tcpl;
  int64_t memory_limit;
  char dir[256];
  char addr[300];
  uv_loop_t loop;
  dl_flusher fl;
  dl_conn *sched;
  dl_wgate gate;  /* the executor's own writes on sched (dl_conn.h) */
  dl_rgate rgate; /* and its own reads of tasks (dl_w_exec_take) */
  int efd;        /* an eventfd that wakes the executor sleeping on the
                     link (dl_w_wake_exec); 0: none */
  atomic_int exec_polling; /* the executor sleeps on the link */
  dl_listener listener;
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
  int64_t rss;     /* resident memory, updated by the watchdog */
  int64_t mem;     /* what the limit counts: rss less file pages */
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
  /* Past the terminate fraction while a task runs, the watchdog first has
     the task's state collected (dl_w_gc_hook): asked, and the memory
     measured once it was done (-1 until then). */
  int gc_asked, gc_checks;
  int64_t gc_after;
  int stop;
  lua_State *L; /* the running task's thread (the executor's state
                   between tasks); the I/O thread only sets hooks on it */
  uv_thread_t exec;
  /* Tasks as clients (dlua.get_client), under lock: */
  dl_buf cin;   /* scheduler messages for the tasks' client */
  dl_buf lout;  /* the tasks' client messages, for the I/O thread to send */
  dl_buf cyc;   /* DL_M_CYCLE: {key, message} of waits that cannot end */
  dl_buf pcancel; /* keys cancelled that may be waiting (parked) tasks */
  int told_to_stop; /* the scheduler sent SHUTDOWN */
  int refused;      /* the scheduler sent WREFUSE: exit 4, never rejoin */
  /* Bytes since the start (any thread): written to spill files, read
     back, received from peers, sent to peers; sent with the heartbeats. */
  atomic_uint_least64_t spill_out, spill_in, xfer_in, xfer_out;
  /* (lock) spilled and spill_out as the last heartbeat said them */
  int64_t beat_spilled;
  uint64_t beat_spill_out;
  struct dl_prof *prof; /* the tasks' profile, or NULL when off
                           (dl_worker_prof.c) */
  /* (io) Reading a peer's block by its address was refused once (errno
     EPERM from map_shared: a ptrace policy, which refuses every sibling
     alike): fetches ask for memfds (GETF) from then on, instead of paying
     one refused read and one more round trip per value. */
  int read_refused;
  /* Seams that tests and fuzzers replace: connect to a peer's address,
     and map a peer's shared block (errno EPERM where the read was
     refused, as dl_mem_map). */
  int (*connect)(dl_conn *c, const char *addr);
  const char *(*map_shared)(const dl_shared_at *sa);
} worker;


/* The worker's state: one per process. */
extern worker dl_worker_state;
#define W dl_worker_state

static inline double now_s(void) { return (double)uv_hrtime() * 1e-9; }

static inline char *dupb(const char *p, size_t n) {
  char *d = dl_realloc(NULL, n + 1);
  if (d == NULL) return NULL;
  memcpy(d, p, n);
  d[n] = '\0';
  return d;
}

/* dl_worker_store.c: the store of results (memory, spill files) */
blob *dl_w_blob_new(const char *key, size_t klen, size_t n);
void dl_w_blob_unref(blob *b);
void dl_w_store_account_drop(blob *old);
void dl_w_frees_push(const char *key, size_t klen);
int dl_w_store_insert(blob *b, int *old_cached);
int dl_w_store_take(const char *key, size_t klen, char *base, char *data,
                    size_t n);
int dl_w_store_put(const char *key, size_t klen, const char *p, size_t n);
blob *dl_w_store_get(const char *key, size_t klen);
void dl_w_spill_until(int64_t goal);
void dl_w_io_relieve(void);
int dl_w_store_has(const char *key, size_t klen);

/* dl_worker_exec.c: the executor thread (runs tasks) */
extern char dl_w_running_key[512];
extern size_t dl_w_running_klen;
int dl_w_fn_get(void *ud, const unsigned char hash[16], const char **code,
                size_t *len);
void dl_w_fns_reap(void);
int dl_w_future_decode(lua_State *L, const char *p, size_t n, void *ctx);
void dl_w_interrupt_hook(lua_State *L, lua_Debug *ar);
void dl_w_gc_hook(lua_State *L, lua_Debug *ar);
wtask *dl_w_task_new(const char *key, size_t klen, const char *payload,
                     size_t plen, const char *fns, uint64_t nfns,
                     const dl_rd *deps, uint64_t ndeps);
void dl_w_task_free(wtask *t);
void dl_w_exec_main(void *arg);
int dl_w_setup_state(lua_State *L);
void dl_w_enqueue(wtask *t);
/* News for the tasks' client came (W.cin): a watching executor stops
   watching (any thread). */
void dl_w_work_came(void);
/* Wake the executor, whether it waits on W.cond or sleeps on the link
   (dl_w_exec_main): instead of uv_cond_signal(&W.cond). */
void dl_w_wake_exec(void);

/* dl_worker_fetch.c: fetching inputs from peers */
void dl_w_wtask_unref(wtask *t);
peer *dl_w_find_peer(int id);
void dl_w_fetch_start(fetch *f);
void dl_w_on_peer_frame(dl_conn *c, const char *p, size_t n);

/* dl_worker_serve.c: serving stored values to peers */
int dl_w_serve_get(dl_conn *c, dl_rd *r, int shared_ok);
void dl_w_on_client_frame(dl_conn *c, const char *p, size_t n);
void dl_w_on_connection(dl_listener *l);

/* dl_worker_link.c: the scheduler link (tasks in, results out, heartbeats) */
void dl_w_done_cb(uv_async_t *h);
/* Append t's outcome (DL_M_DONE or DL_M_ERR) to b (any thread). */
void dl_w_put_outcome(dl_buf *b, const wtask *t);
int dl_w_on_compute(dl_rd *r);
int dl_w_exec_take(void *ud, const char *p, size_t n);
void dl_w_interrupt_running(int kind);
void dl_w_on_sched_frame(dl_conn *c, const char *p, size_t n);
void dl_w_beat_cb(uv_timer_t *t);
/* With W.lock held: when the worker spilled or read back since its last
   heartbeat, append one to b (any thread), so that outcomes sent after it
   in the same frame reach the scheduler behind the new figures. */
void dl_w_beat_if_spilled(dl_buf *b);

/* dl_worker_prof.c: the tasks' profile.  init reads DLUA_PROFILE_INTERVAL
   (-1 with a message when it is bad); tick (I/O thread, W.lock held) takes
   a sample of the running task when one is due; put writes the samples
   news for the scheduler to out (I/O thread). */
int dl_w_prof_init(void);
void dl_w_prof_tick(void);
void dl_w_prof_put(dl_buf *out);

/* dl_worker.c: start, signals, watchdog */
void dl_w_on_sched_close(dl_conn *c);
/* Tell the scheduler who we are; the first heartbeat follows (2 ms). */
void dl_w_send_hello(void);
/* Set W.wname from W.id and W.name (before the hello). */
void dl_w_set_wname(void);
int64_t dl_w_mem_bytes(int64_t *rss);
void dl_w_state_init(void);
/* A worker's Lua state, set up (libraries, dlua.coord); NULL with a
   message on stderr on failure. */
lua_State *dl_w_new_state(void);
/* A worker forked by the zygote, its descriptors, session, environment
   and directory in place: parse argv as dlua_worker_main does and run
   with the state L made before the fork.  Does not return. */
void dl_w_forked_main(int argc, char **argv, lua_State *L);
/* Make the worker's loop (W.loop, its flusher and wake-up) ahead of
   time, as a zygote's spare does; 0 or a libuv error. */
int dl_w_loop_init(void);
/* Start the executor thread ahead of time, as a zygote's spare does: it
   waits, its stack and malloc arena made, until run_worker has set the
   worker up, and then runs dl_w_exec_main(W.L).  0 or a libuv error. */
int dl_w_exec_premake(void);

/* dl_worker_zygote.c: the zygote (see runtime/cluster/dl_zygote.h):
   serve the clusters of process ppid (a decimal string) on the abstract
   socket name, forking workers, until that process ends.  Returns the
   exit status when it cannot start; its children never return. */
int dl_w_zygote_main(const char *name, const char *ppid);
/* The zygote's client process (set in the zygote, so its children know
   it), 0 in a worker started otherwise. */
extern pid_t dl_w_client_pid;

#endif

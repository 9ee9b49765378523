/*
** dl_server.c -- the local cluster: scheduler thread, worker processes,
** client link.  See dl_server.h.
*/
#define _GNU_SOURCE /* pipe2, accept4, SO_PEERCRED, POSIX_SPAWN_SETSID */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "dl_conn.h"
#include "dl_wire.h"
#include "dl_os.h"
#include "dl_server.h"
#include "dl_cinfo.h"
#include "dl_tcp.h"
#include "dl_zyg.h"
#include "dl_zygote.h"

typedef struct wproc wproc;
typedef struct rclient rclient;

/* A client in another process (scheduler side): requester rid of the
   scheduler (DL_SCHED_CLIENT_BASE up), so its futures are its own. */
struct rclient {
  dl_server *srv;
  dl_conn *conn;
  int rid;
  double info_at;    /* when it was last sent CINFO */
  int info_nworkers; /* the worker count then */
  char addr[256];
  rclient *next;
};
struct wproc {
  dl_server *srv;
  int id;
  int64_t pid;
  int pgid; /* the process group it leads (its spawned pid), 0: none */
  uv_process_t proc;
  uv_pipe_t out, err;
  dl_buf outline, errline; /* partial lines of its stdout/stderr */
  dl_conn *conn;
  int handles; /* open libuv handles; freed at zero */
  int exited, gone, ready, retiring;
  int remote; /* joined over TCP: no process of ours to watch */
  int zyg;    /* forked by the zygote: it reaps it and tells us (zpoll) */
  char addr[256]; /* where its peers reach it, from its hello */
  char name[64];  /* its --name, from its hello; "" for none */
  char label[96]; /* "worker ID" or "worker ID (NAME)", for log lines */
  wproc *next;
};

struct dl_server {
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t wake;
  uv_timer_t tick;
  uv_timer_t killer;
  uv_timer_t pickup; /* takes messages queued without a wake-up */
  uv_prepare_t prep;
  dl_flusher fl;
  uv_mutex_t lock; /* guards the fields marked (L) and sched */
  uv_cond_t cond;
  dl_buf outbox;  /* (L) client -> scheduler */
  dl_buf inbox;   /* (L) scheduler -> client */
  atomic_int inbox_ready; /* inbox.len > 0, readable without the lock */
  int dead;       /* (L) the loop has ended */
  atomic_int ended; /* dead, readable without the lock */
  atomic_int outbox_ready; /* outbox.len > 0 (set and cleared under lock) */
  atomic_int polling;  /* the loop's thread watches outbox_ready: a send
                          needs no wake-up (see poll_client) */
  atomic_int cwaiting; /* the client's thread is in dl_server_recv */
  double pspin;        /* loop only: seconds poll_client watches */
  double lspin;        /* loop only: seconds poll_links watches */
  double watched_at;   /* loop only: when poll_client last began to watch
                          (0: it took a request since) */
  double sent_at;      /* (L) when the client last put a request in outbox */
  double spin;      /* client thread only: seconds dl_server_recv spins */
  double last_wake; /* client thread only: when it last woke the loop */
  int deferred;     /* client thread only: sent without a wake-up since */
  int stop_asked; /* (L) */
  int target;     /* (L) wanted worker count */
  int nready;     /* (L) workers that said hello */
  int start_failed; /* (L) */
  char starterr[512]; /* (L) */
  dl_buf cpending; /* loop only: messages for the client this iteration */
  char *pipebuf;   /* loop only: workers' output lands here (pipe_alloc) */
  dl_sched *sched;
  wproc *workers;
  int nextid;
  int stopping;
  int spawned, died, early_deaths;
  double retry_at; /* when to try starting workers again, 0: no need */
  int64_t memory_limit;
  double fractions[4]; /* target, spill, pause, terminate */
  char exe[4096];
  char dir[256];
  dl_service svc;       /* the service on the loop (svc.start NULL: none) */
  int svc_started;      /* loop only: svc.start succeeded, not stopped yet */
  char svc_addr[128];   /* its address; set before the workers start */
  char dlua_version[32], lua_version[32]; /* for the dashboard */
  dl_tcp_server *tcp;    /* loop only: where workers join over TCP */
  dl_token token;        /* theirs to prove they hold */
  const dl_tls_ctx *tls; /* TLS on the listener, or NULL (borrowed) */
  char listen_req[128];  /* "host:port" asked for; "" for none */
  char listen_addr[300]; /* "tcp://host:port"; set before start returns */
  dl_server_log *logs;  /* (L) ring of DL_SERVER_LOG_LINES, or NULL */
  uint64_t nlogs;       /* (L) lines ever kept */
  /* Clients in other processes (scheduler side), any number. */
  rclient *rclients;     /* loop only */
  int next_rid;          /* loop only: the next one's requester id */
  /* The client's side of a remote scheduler (dl_server_connect): sched is
     NULL, sconn is the link, and the cluster's figures are the last CINFO. */
  dl_conn *sconn;         /* loop only */
  int remote_sched;       /* set before the thread starts */
  /* sconn's write gate: the client's thread writes its frames on the
     socket itself (dl_server_send), one thread hand-off less per request.
     Taken after lock, never before it. */
  dl_wgate gate;
  int gate_ok;            /* gate is initialised (set before the thread) */
  int rjoined;            /* (L) the first CINFO came */
  int shutdown_asked;     /* (L) send CSHUTDOWN */
  dl_sched_winfo *rworkers; /* (L) */
  int nrworkers;          /* (L) */
  dl_sched_winfo rdead[DL_SCHED_DEPARTED]; /* (L) the workers that left */
  int nrdead;             /* (L) */
  int64_t rcounts[6];     /* (L) */
  char lost[400];         /* (L) why the link ended, "" while it is up */
  dl_server *next_live; /* in the list of live clusters (live_lock) */
  int loop_ok, lock_ok, cond_ok; /* what init_loop made, for close_loop */
  /* The link to this process's zygote (dl_zygote.h), loop only: zfd -1
     while there is none; zyg_off once workers are spawned directly. */
  int zfd, zyg_off;
  uv_poll_t *zpoll; /* watches zfd; freed by its close callback */
};

/* Every started cluster, for dl_server_stop_all. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static dl_server *live;

static double now_s(void) { return (double)uv_hrtime() * 1e-9; }

/*
** The client's wake-up word, one for the process: every scheduler thread
** bumps it when it has put messages in its inbox, and dl_server_interrupt
** bumps it too (from a signal handler), so a client waits on one futex for
** either.  A wake-up meant for another cluster of the process only makes
** a waiter look once more.  The futex is woken only when someone sleeps on
** it (nsleepers), so a client that spins or does not wait costs nothing.
*/
static atomic_uint wake_seq;
static atomic_int nsleepers;
static atomic_int interrupt_asked;

static void wake_bump(void) {
  atomic_fetch_add(&wake_seq, 1);
  if (atomic_load(&nsleepers) > 0)
    syscall(SYS_futex, &wake_seq, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL,
            0);
}

/* Sleep until wake_seq is no longer seen, at most timeout s (< 0: no
   limit).  Returns at once if it has changed already; a signal ends it
   early too (EINTR). */
static void wake_wait(unsigned seen, double timeout) {
  struct timespec ts, *tp = NULL;
  if (timeout >= 0) {
    ts.tv_sec = (time_t)timeout;
    ts.tv_nsec = (long)((timeout - (double)ts.tv_sec) * 1e9);
    tp = &ts;
  }
  atomic_fetch_add(&nsleepers, 1);
  syscall(SYS_futex, &wake_seq, FUTEX_WAIT_PRIVATE, seen, tp, NULL, 0);
  atomic_fetch_sub(&nsleepers, 1);
}

/* Take back an interrupt request; 1 if there was one. */
static int interrupt_taken(void) {
  return atomic_load_explicit(&interrupt_asked, memory_order_relaxed) &&
         atomic_exchange(&interrupt_asked, 0);
}

void dl_server_interrupt(int on) {
  if (!on) {
    atomic_store(&interrupt_asked, 0);
    return;
  }
  atomic_store(&interrupt_asked, 1);
  wake_bump();
}

unsigned dl_server_wake_seq(void) { return atomic_load(&wake_seq); }

int dl_server_idle(unsigned seen, double timeout) {
  double deadline = timeout >= 0 ? now_s() + timeout : 0;
  for (;;) {
    double left = -1;
    if (interrupt_taken()) return DL_EINTR;
    if (atomic_load(&wake_seq) != seen) return 1;
    if (timeout >= 0) {
      left = deadline - now_s();
      if (left <= 0) return 0;
    }
    wake_wait(seen, left);
  }
}

/* The name workers are started under when they re-run this program. */
static const char *dl_self_name;

/* -------------------------------------------------------- sched hooks */

static dl_buf *worker_out(void *ud, int wid) {
  dl_server *s = ud;
  wproc *w;
  if (wid >= DL_SCHED_CLIENT_BASE) { /* a remote client's */
    rclient *c;
    for (c = s->rclients; c; c = c->next)
      if (c->rid == wid) return dl_conn_msg(c->conn);
    return NULL;
  }
  for (w = s->workers; w; w = w->next)
    if (w->id == wid && w->ready && !w->gone && w->conn)
      return dl_conn_msg(w->conn);
  return NULL;
}

static dl_buf *client_out(void *ud) { return &((dl_server *)ud)->cpending; }

/* Move this iteration's client messages to the inbox and wake the client
   (the one in this process; remote clients' go through worker_out).
   Returns whether the client's thread was waiting for them. */
static int deliver(dl_server *s) {
  int waiting;
  uv_mutex_lock(&s->lock);
  if (s->inbox.len == 0) {
    dl_buf t = s->inbox;
    s->inbox = s->cpending;
    s->cpending = t;
  } else {
    dl_buf_put(&s->inbox, s->cpending.p, s->cpending.len);
    s->cpending.len = 0;
  }
  atomic_store(&s->inbox_ready, 1);
  waiting = atomic_load(&s->cwaiting);
  uv_mutex_unlock(&s->lock);
  wake_bump();
  return waiting;
}

static int drain_client(dl_server *s);

/*
** The client's next request usually follows its answer closely (a loop
** of submit(...):result()): waking this thread for it through uv_async
** costs a system call on the client's side and the wake-up of a sleeping
** CPU on this one, more than the rest of a small task's round trip.  So
** after it gave a waiting client the news it waited for, with no task in
** flight (nothing else to do), this thread watches the client's outbox
** for up to pspin seconds; a send then only sets outbox_ready
** (dl_server_send), and the request goes to its worker at once.  The
** client's thread is busy meanwhile (it runs the caller's Lua code), so
** only one thread spins at a time.  The watch adapts as the client's spin
** does: halved when no request came within it (a client that thinks
** between calls, a map's gather), doubled when one did, cut to its least
** when a step lost the CPU (a busy machine), and back to its longest when
** the request came within that, watched or not (poll_learn).  Returns 1
** if it took a request.
*/
#define POLL_MAX 60e-6
#define POLL_MIN 2e-6
static int outbox_ready(void *ud) {
  return atomic_load(&((dl_server *)ud)->outbox_ready);
}

static int poll_client(dl_server *s) {
  int got;
  if (s->stopping) return 0;
  if (s->sched) {
    int64_t c[6];
    uv_mutex_lock(&s->lock);
    dl_sched_counts(s->sched, c);
    uv_mutex_unlock(&s->lock);
    if (c[0] + c[1] + c[2] > 0) return 0; /* waiting, ready, processing */
  }
  if (s->pspin <= 0) s->pspin = POLL_MAX;
  s->watched_at = now_s();
  atomic_store(&s->polling, 1);
  if (dl_os_spin(s->pspin, outbox_ready, s) < 0)
    s->pspin = 2 * POLL_MIN; /* the machine is busy */
  atomic_store(&s->polling, 0);
  /* Read after polling is cleared: a send that saw polling set is seen
     here (both are sequentially consistent). */
  got = atomic_load(&s->outbox_ready);
  if (got) {
    if (s->pspin < POLL_MAX) s->pspin *= 2;
    return drain_client(s);
  }
  if (s->pspin > POLL_MIN) s->pspin /= 2;
  return 0;
}

/*
** Where the peers are other processes over TCP (a `dlua scheduler`'s
** workers and clients, or a client's remote scheduler), a small task's
** round trip finds this thread asleep in epoll when its answer comes: the
** worker's on the scheduler, the scheduler's on the client.  On a quiet
** machine each is the wake-up of an idle virtual CPU, tens of
** microseconds here (bench p's round trip: about 50 us while other work
** kept the CPUs busy, 100-150 us when they were idle).  So while an answer
** is due soon (the scheduler: tasks processing, no more of them than
** workers, and nothing queued; the client: its caller waits in
** dl_server_recv), this thread watches the loop's descriptor before it
** sleeps (a poll without a timeout: the events stay for the loop) for up
** to lspin seconds, yielding between looks.  The watch is back to its
** longest when something came within it, halved when nothing did, and
** cut to its least when a look lost the CPU (a busy machine, where the
** wake-ups are cheap and the CPU is wanted).
*/
#define LINK_SPIN_MAX 200e-6
#define LINK_SPIN_MIN 20e-6
static int fd_readable(void *ud) {
  struct pollfd pf;
  pf.fd = *(int *)ud;
  pf.events = POLLIN;
  return poll(&pf, 1, 0) > 0;
}

static void poll_links(dl_server *s) {
  int fd, got;
  if (s->stopping) return;
  if (s->remote_sched) {
    if (!atomic_load(&s->cwaiting)) return;
  } else if (s->tcp && s->sched) {
    int64_t c[6];
    int nw;
    uv_mutex_lock(&s->lock);
    dl_sched_counts(s->sched, c);
    nw = s->nready;
    uv_mutex_unlock(&s->lock);
    if (c[2] == 0 || c[2] > nw || c[0] + c[1] > 0) return;
  } else {
    return;
  }
  dl_flusher_flush(&s->fl); /* what this iteration sends goes first */
  if (uv_backend_timeout(&s->loop) == 0) return; /* work is pending */
  if (s->lspin <= 0) s->lspin = LINK_SPIN_MAX;
  fd = uv_backend_fd(&s->loop);
  got = dl_os_spin(s->lspin, fd_readable, &fd);
  if (got < 0) s->lspin = LINK_SPIN_MIN; /* the machine is busy */
  else if (got) s->lspin = LINK_SPIN_MAX;
  else if (s->lspin > LINK_SPIN_MIN) s->lspin /= 2;
}

/*
** The client's request sent at sent came in (drain_client): when it came
** within the longest watch after the last one began, watched or not, watch
** that long from now on.  Without this, a watch cut short (a machine busy
** for a moment) stays short for good: the client's spin is cut too, so it
** sleeps through each answer and its next request comes after the short
** watch, on every round, each round paying the wake-up of this thread and
** of the client's (a stable round trip of about 90 us on a 2-CPU VM, 20
** us with the watches at their longest).
*/
static void poll_learn(dl_server *s, double sent) {
  if (s->watched_at > 0 && sent >= s->watched_at &&
      sent - s->watched_at <= POLL_MAX)
    s->pspin = POLL_MAX;
  s->watched_at = 0;
}

static void prep_cb(uv_prepare_t *h) {
  dl_server *s = h->data;
  while (s->cpending.len) {
    if (!deliver(s) || !poll_client(s)) break;
    /* The request is in: send its messages now (the flusher has run for
       this iteration) and hand over any answer it had at once. */
    dl_flusher_flush(&s->fl);
  }
  poll_links(s);
}

/* ------------------------------------------------------------ workers */

static int spawn_worker(dl_server *s);
static void remove_worker_files(dl_server *s, int id);
static void drain_close(wproc *w, uv_pipe_t *p, dl_buf *line, int fd);

/* One of w's handles (or, for a zygote's worker, its process) is done
   with it: w is freed with the last. */
static void wproc_unref(wproc *w) {
  if (--w->handles == 0) {
    dl_server *s = w->srv;
    wproc **pp = &s->workers;
    while (*pp && *pp != w) pp = &(*pp)->next;
    if (*pp) *pp = w->next;
    dl_buf_free(&w->outline);
    dl_buf_free(&w->errline);
    dl_free(w);
  }
}

static void handle_closed(uv_handle_t *h) { wproc_unref(h->data); }

/* SIGKILL worker w's process (a zygote's worker by asking the zygote,
   which alone knows whether the pid is still w's). */
static void kill_worker(wproc *w) {
  if (w->exited || w->remote) return;
  if (w->zyg) {
    dl_server *s = w->srv;
    if (s->zfd >= 0) {
      dl_buf b;
      dl_buf_init(&b);
      dl_zyg_put(&b, 'K', (uint32_t)w->id, 0);
      dl_zyg_send(s->zfd, &b, NULL, 0);
      dl_buf_free(&b);
    }
    return;
  }
  uv_process_kill(&w->proc, SIGKILL);
}

static void close_handle(uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, handle_closed);
}

static int live_workers(dl_server *s) {
  int n = 0;
  wproc *w;
  for (w = s->workers; w; w = w->next)
    if (!w->gone && !w->retiring && !w->remote) n++;
  return n;
}

/* Start workers until want are alive.  One that cannot be started (no
   descriptors left, say) is tried again a second later (tick_cb), so a
   dead worker is replaced once the cause is gone. */
static void top_up(dl_server *s, int want) {
  int rc;
  while (live_workers(s) < want) {
    if ((rc = spawn_worker(s)) != 0) {
      if (s->retry_at == 0)
        fprintf(stderr, "dlua: cannot start a worker (%s); trying again "
                "every second\n", uv_strerror(rc));
      s->retry_at = now_s() + 1.0;
      return;
    }
  }
  s->retry_at = 0;
}

static void maybe_finish_stop(dl_server *s);

/* The worker is gone (exit, EOF, or retired): idempotent. */
static void worker_gone(wproc *w) {
  dl_server *s = w->srv;
  wproc *o;
  if (w->gone) return;
  w->gone = 1;
  if (w->conn) {
    dl_conn *c = w->conn;
    w->conn = NULL;
    c->data = NULL;
    dl_conn_close(c);
  }
  kill_worker(w);
  if (w->ready) {
    uv_mutex_lock(&s->lock);
    s->nready--;
    dl_sched_remove_worker(s->sched, w->id);
    uv_mutex_unlock(&s->lock);
    for (o = s->workers; o; o = o->next)
      if (o != w && o->ready && !o->gone && o->conn) {
        dl_msg_peer m;
        m.id = (uint64_t)w->id;
        m.addr = ""; /* gone */
        m.alen = 0;
        dl_put_peer(dl_conn_msg(o->conn), &m);
      }
  }
  if (s->stopping) {
    maybe_finish_stop(s);
    return;
  }
  if (w->remote) {
    fprintf(stderr, "dlua: %s at %s left\n", w->label, w->addr);
    return; /* not ours to replace */
  }
  if (!w->retiring) {
    s->died++;
    if (!w->ready) s->early_deaths++;
    if (s->early_deaths >= 5) {
      uv_mutex_lock(&s->lock);
      if (s->nready == 0 && !s->start_failed) {
        s->start_failed = 1;
        snprintf(s->starterr, sizeof s->starterr,
                 "workers exit before they start (%.200s); see their output "
                 "above", s->exe);
        uv_cond_broadcast(&s->cond);
      }
      uv_mutex_unlock(&s->lock);
      return;
    }
  }
  uv_mutex_lock(&s->lock);
  {
    int want = s->target;
    uv_mutex_unlock(&s->lock);
    top_up(s, want);
  }
}

/* Worker w's process ended (its process group was killed already). */
static void worker_exited(wproc *w) {
  w->exited = 1;
  /* Its files go with it. */
  remove_worker_files(w->srv, w->id);
  drain_close(w, &w->out, &w->outline, 1);
  drain_close(w, &w->err, &w->errline, 2);
  worker_gone(w);
}

static void exit_cb(uv_process_t *p, int64_t status, int sig) {
  wproc *w = p->data;
  dl_server *s = w->srv;
  (void)status;
  (void)sig;
  /* What its tasks left running goes with it. */
  if (w->pgid > 0) kill(-w->pgid, SIGKILL);
  worker_exited(w);
  close_handle((uv_handle_t *)&w->proc);
  if (s->stopping) maybe_finish_stop(s);
}

static void zworker_end(wproc *w);

static void on_worker_close(dl_conn *c) {
  wproc *w = c->data;
  if (w == NULL) return;
  w->conn = NULL;
  worker_gone(w); /* a zygote's worker: the zygote is asked to kill it */
  /* Told to shut down, a zygote's worker leaves its link to the kernel,
     which closes it after the process's memory and its stdout and stderr
     (lower descriptors) are gone: take that as its exit instead of
     waiting for the zygote to reap it and say so (a wake-up of another
     process, 0.1-2 ms on a loaded machine, on every close()).  The zygote
     reaps it; what its tasks left in its process group is ended here,
     as exit_cb does for a spawned worker: close() may return, and this
     process exit, before the zygote wakes (it then leaves at once), and
     a task's child would outlive the cluster.  The group's id is still
     held: by the worker, exiting or a zombie, or by what is left in it. */
  if (w->srv->stopping && w->zyg && !w->exited) {
    if (w->pgid > 0) kill(-w->pgid, SIGKILL);
    zworker_end(w);
  }
}

static void on_hello(wproc *w, dl_rd *r) {
  dl_server *s = w->srv;
  dl_msg_hello h;
  dl_msg_peer m;
  wproc *o;
  if (dl_get_hello(r, &h)) {
    worker_gone(w);
    return;
  }
  /* Names are unique among the workers joined (as Dask's): a second
     worker of the same name is told why and leaves; the first stays. */
  for (o = s->workers; o && h.nlen > 0; o = o->next) {
    char why[300];
    int n;
    if (o == w || !o->ready || o->gone || strlen(o->name) != h.nlen ||
        memcmp(o->name, h.name, h.nlen) != 0)
      continue;
    n = snprintf(why, sizeof why, "the name '%s' is taken by worker %d "
                 "(pid %lld at %s); give each worker its own --name",
                 o->name, o->id, (long long)o->pid, o->addr);
    fprintf(stderr, "dlua: refused a worker (pid %llu) from %s: %s\n",
            (unsigned long long)h.pid, w->addr, why);
    dl_put_wrefuse(dl_conn_msg(w->conn), why,
                   n < (int)sizeof why ? (size_t)n : sizeof why - 1);
    worker_gone(w); /* its connection closes after the refusal */
    return;
  }
  w->ready = 1;
  w->pid = (int64_t)h.pid;
  snprintf(w->addr, sizeof w->addr, "%.*s", (int)h.alen, h.addr);
  snprintf(w->name, sizeof w->name, "%.*s", (int)h.nlen, h.name);
  if (w->name[0])
    snprintf(w->label, sizeof w->label, "worker %d (%s)", w->id, w->name);
  if (w->remote)
    fprintf(stderr, "dlua: %s joined from %s\n", w->label, w->addr);
  s->early_deaths = 0;
  /* Introduce it to its peers and its peers to it. */
  m.id = (uint64_t)w->id;
  m.addr = h.addr;
  m.alen = h.alen;
  for (o = s->workers; o; o = o->next) {
    if (o == w || !o->ready || o->gone || !o->conn) continue;
    dl_put_peer(dl_conn_msg(o->conn), &m);
  }
  {
    dl_buf *b = dl_conn_msg(w->conn);
    for (o = s->workers; o; o = o->next) {
      if (o == w || !o->ready || o->gone) continue;
      m.id = (uint64_t)o->id;
      m.addr = o->addr;
      m.alen = strlen(o->addr);
      dl_put_peer(b, &m);
    }
  }
  uv_mutex_lock(&s->lock);
  s->nready++;
  dl_sched_add_worker(s->sched, w->id, (int64_t)h.pid, (int)h.nthreads,
                      (int64_t)h.memory_limit, now_s());
  dl_sched_name_worker(s->sched, w->id, w->name);
  uv_cond_broadcast(&s->cond);
  uv_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------ remote client */

static void begin_stop(dl_server *s);

/* Whole milliseconds from t to now (0 when t is later). */
static uint64_t ms_since(double now, double t) {
  return now > t ? (uint64_t)((now - t) * 1e3) : 0;
}

/* Send remote client rc the cluster's figures, alone in a frame. */
static void send_cinfo(dl_server *s, rclient *rc) {
  dl_sched_winfo ws[256], dead[DL_SCHED_DEPARTED];
  int64_t counts[6];
  int n, i, nd;
  double now = now_s();
  dl_buf *b;
  uv_mutex_lock(&s->lock);
  n = dl_sched_workers(s->sched, ws, 256);
  nd = dl_sched_departed(s->sched, dead, DL_SCHED_DEPARTED);
  dl_sched_counts(s->sched, counts);
  uv_mutex_unlock(&s->lock);
  if (n > 256) n = 256;
  dl_conn_flush(rc->conn);
  b = dl_conn_msg(rc->conn);
  dl_put_cinfo_head(b, s->svc_addr, counts, (uint64_t)n);
  for (i = 0; i < n; i++) {
    dl_msg_cworker w;
    w.id = (uint64_t)ws[i].id;
    w.pid = (uint64_t)ws[i].pid;
    w.nthreads = (uint64_t)ws[i].nthreads;
    w.memory_limit = (uint64_t)ws[i].memory_limit;
    w.managed = (uint64_t)ws[i].managed;
    w.spilled = (uint64_t)ws[i].spilled;
    w.rss = (uint64_t)ws[i].rss;
    w.executing = (uint64_t)ws[i].executing;
    w.stored = (uint64_t)ws[i].stored;
    w.status = (uint64_t)ws[i].status;
    w.processing = (uint64_t)ws[i].inflight;
    w.uptime_ms = ms_since(now, ws[i].started);
    w.silent_ms = ms_since(now, ws[i].last_seen);
    w.spill_out = (uint64_t)ws[i].spill_out;
    w.spill_in = (uint64_t)ws[i].spill_in;
    w.xfer_in = (uint64_t)ws[i].xfer_in;
    w.xfer_out = (uint64_t)ws[i].xfer_out;
    w.name = ws[i].name;
    w.nlen = strlen(ws[i].name);
    w.spill_err = ws[i].spill_err;
    w.selen = strlen(ws[i].spill_err);
    dl_put_cworker(b, &w);
  }
  dl_buf_uv(b, (uint64_t)nd);
  for (i = 0; i < nd; i++) {
    dl_msg_cdead d;
    d.id = (uint64_t)dead[i].id;
    d.pid = (uint64_t)dead[i].pid;
    d.reason = dead[i].reason;
    d.rlen = strlen(dead[i].reason);
    d.name = dead[i].name;
    d.nlen = strlen(dead[i].name);
    dl_put_cdead(b, &d);
  }
  dl_conn_flush(rc->conn);
  rc->info_at = now_s();
  rc->info_nworkers = n;
}

static int nclients(dl_server *s) {
  rclient *c;
  int n = 0;
  for (c = s->rclients; c; c = c->next) n++;
  return n;
}

/* Client rc is gone (it closed, or said something malformed): what it
   held, waited for or leased is released; other clients' futures stay. */
static void client_drop(rclient *rc) {
  dl_server *s = rc->srv;
  rclient **pp;
  for (pp = &s->rclients; *pp; pp = &(*pp)->next)
    if (*pp == rc) {
      *pp = rc->next;
      break;
    }
  rc->conn->data = NULL;
  if (!s->stopping) {
    uv_mutex_lock(&s->lock);
    dl_sched_requester_gone(s->sched, rc->rid);
    uv_mutex_unlock(&s->lock);
  }
  free(rc);
}

static void on_client_frame(dl_conn *c, const char *p, size_t n) {
  rclient *cl = c->data;
  dl_server *s;
  dl_rd r;
  unsigned type = 0;
  int rc;
  if (cl == NULL) return;
  s = cl->srv;
  dl_rd_init(&r, p, n);
  if (dl_wire_type(&r, &type) == 0 && type == DL_M_CSHUTDOWN) {
    fprintf(stderr, "dlua: the client asked the cluster to shut down\n");
    uv_mutex_lock(&s->lock);
    s->stop_asked = 1;
    uv_mutex_unlock(&s->lock);
    begin_stop(s);
    return;
  }
  uv_mutex_lock(&s->lock);
  rc = dl_sched_requester_frame(s->sched, cl->rid, p, n, now_s());
  uv_mutex_unlock(&s->lock);
  if (rc) {
    fprintf(stderr, "dlua: malformed message from the client at %s; "
            "closing its connection\n", cl->addr);
    client_drop(cl);
    dl_conn_close(c);
  }
}

static void on_client_close(dl_conn *c) {
  rclient *cl = c->data;
  dl_server *s;
  if (cl == NULL) return;
  s = cl->srv;
  if (!s->stopping)
    fprintf(stderr, "dlua: the client from %s left (%d still joined)\n",
            cl->addr, nclients(s) - 1);
  client_drop(cl);
}

/* The connection of w said CHELLO: it is a client, not a worker.  Any
   number may join; each is a requester of its own to the scheduler. */
static void become_client(wproc *w) {
  dl_server *s = w->srv;
  dl_conn *c = w->conn;
  rclient *cl = calloc(1, sizeof *cl);
  w->conn = NULL;
  w->gone = 1; /* the record goes with the next reap_remote */
  if (cl == NULL || s->next_rid >= INT32_MAX - DL_SCHED_CLIENT_BASE) {
    static const char why[] = "the scheduler is out of memory";
    free(cl);
    dl_put_crefuse(dl_conn_msg(c), why, sizeof why - 1);
    c->data = NULL;
    dl_conn_close(c);
    return;
  }
  cl->srv = s;
  cl->conn = c;
  cl->rid = DL_SCHED_CLIENT_BASE + s->next_rid++;
  snprintf(cl->addr, sizeof cl->addr, "%s", w->addr);
  cl->next = s->rclients;
  s->rclients = cl;
  fprintf(stderr, "dlua: a client joined from %s (%d joined)\n", w->addr,
          nclients(s));
  c->on_frame = on_client_frame;
  c->on_close = on_client_close;
  c->data = cl;
  send_cinfo(s, cl);
}

static void on_worker_frame(dl_conn *c, const char *p, size_t n) {
  wproc *w = c->data;
  dl_server *s;
  int rc;
  if (w == NULL) return;
  s = w->srv;
  if (!w->ready) {
    dl_rd r;
    unsigned type = 0;
    dl_rd_init(&r, p, n);
    if (dl_wire_type(&r, &type) == 0 && type == DL_M_CHELLO && w->remote) {
      become_client(w);
      return;
    }
    if (type != DL_M_HELLO) {
      worker_gone(w);
      return;
    }
    on_hello(w, &r);
    if (!w->ready || dl_rd_left(&r) == 0) return;
    p = r.p; /* the rest of the frame: its first heartbeat */
    n = dl_rd_left(&r);
  }
  uv_mutex_lock(&s->lock);
  rc = dl_sched_worker_frame(s->sched, w->id, p, n, now_s());
  uv_mutex_unlock(&s->lock);
  if (rc) {
    fprintf(stderr, "dlua: malformed message from %s; restarting it\n",
            w->label);
    worker_gone(w);
  }
}

/* Copy complete lines of a worker's output to ours, prefixed. */
/* Keep a worker's line (n bytes at a, then m at b; no newline) in the
   ring of recent lines. */
static void keep_line(wproc *w, int fd, const char *a, size_t n,
                      const char *b, size_t m) {
  dl_server *s = w->srv;
  dl_server_log *l;
  uv_mutex_lock(&s->lock);
  if (s->logs == NULL &&
      (s->logs = dl_realloc(NULL, sizeof *s->logs * DL_SERVER_LOG_LINES)) ==
          NULL) {
    uv_mutex_unlock(&s->lock);
    return;
  }
  l = &s->logs[s->nlogs++ % DL_SERVER_LOG_LINES];
  l->t = now_s();
  l->wid = w->id;
  l->fd = fd;
  if (n > sizeof l->text - 1) n = sizeof l->text - 1;
  if (m > sizeof l->text - 1 - n) m = sizeof l->text - 1 - n;
  if (n) memcpy(l->text, a, n);
  if (m) memcpy(l->text + n, b, m);
  l->text[n + m] = '\0';
  uv_mutex_unlock(&s->lock);
}

int dl_server_logs(dl_server *s, int wid, dl_server_log *out, int max) {
  uint64_t i, first;
  int n = 0;
  uv_mutex_lock(&s->lock);
  first = s->nlogs > DL_SERVER_LOG_LINES ? s->nlogs - DL_SERVER_LOG_LINES : 0;
  for (i = s->nlogs; i > first && n < max; i--) { /* the newest first */
    const dl_server_log *l = &s->logs[(i - 1) % DL_SERVER_LOG_LINES];
    if (wid == 0 || l->wid == wid) out[n++] = *l;
  }
  uv_mutex_unlock(&s->lock);
  return n;
}

static void relay(wproc *w, dl_buf *line, const char *p, size_t n, int fd) {
  char prefix[32];
  int plen = snprintf(prefix, sizeof prefix, "[worker %d] ", w->id);
  size_t i, start = 0;
  for (i = 0; i < n; i++) {
    if (p[i] != '\n') continue;
    {
      dl_buf out;
      ssize_t wr;
      dl_buf_init(&out);
      dl_buf_put(&out, prefix, (size_t)plen);
      dl_buf_put(&out, line->p, line->len);
      dl_buf_put(&out, p + start, i + 1 - start);
      keep_line(w, fd, line->p, line->len, p + start, i - start);
      wr = write(fd, out.p, out.len);
      (void)wr;
      dl_buf_free(&out);
      line->len = 0;
      start = i + 1;
    }
  }
  dl_buf_put(line, p + start, n - start);
}

/* The workers' output is read into one buffer of the loop's, made on the
   first read: not a __thread array, whose 64 KiB every thread of the
   process (every worker's too) would get and zero when it starts.
   Without one, libuv reports UV_ENOBUFS and pipe_read closes the pipe. */
#define PIPEBUF 65536

static void pipe_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  dl_server *s = ((wproc *)h->data)->srv;
  (void)hint;
  if (s->pipebuf == NULL) s->pipebuf = dl_realloc(NULL, PIPEBUF);
  buf->base = s->pipebuf;
  buf->len = s->pipebuf ? PIPEBUF : 0;
}

static void pipe_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  wproc *w = st->data;
  int is_err = st == (uv_stream_t *)&w->err;
  dl_buf *line = is_err ? &w->errline : &w->outline;
  if (nread < 0) {
    if (line->len) { /* last line without newline */
      relay(w, line, "\n", 1, is_err ? 2 : 1);
    }
    close_handle((uv_handle_t *)st);
    return;
  }
  relay(w, line, buf->base, (size_t)nread, is_err ? 2 : 1);
}

/* Record why the workers cannot start (the first reason is kept) and wake
   dl_server_start. */
static void start_fail(dl_server *s, const char *what, int rc) {
  uv_mutex_lock(&s->lock);
  if (!s->start_failed) {
    s->start_failed = 1;
    snprintf(s->starterr, sizeof s->starterr, "%s: %s", what,
             uv_strerror(rc));
  }
  uv_cond_broadcast(&s->cond);
  uv_mutex_unlock(&s->lock);
}

/* Remove what worker id left in the private directory: its socket and its
   spill files (w<id>.sock, w<id>-spill-<n>).  Once it has exited, nothing
   else writes them. */
static void remove_worker_files(dl_server *s, int id) {
  uv_fs_t req;
  uv_dirent_t ent;
  char sock[48], spill[48], path[600];
  size_t slen;
  snprintf(sock, sizeof sock, "w%d.sock", id);
  slen = (size_t)snprintf(spill, sizeof spill, "w%d-spill-", id);
  if (uv_fs_scandir(NULL, &req, s->dir, 0, NULL) >= 0) {
    while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
      if (strcmp(ent.name, sock) != 0 && strncmp(ent.name, spill, slen) != 0)
        continue;
      snprintf(path, sizeof path, "%s/%s", s->dir, ent.name);
      unlink(path);
    }
  }
  uv_fs_req_cleanup(&req);
}

/*
** After a worker exited: relay what is left in its output pipes and close
** them.  A process its tasks started and detached (setsid) may still hold
** them open; we do not wait for it.
*/
static void drain_close(wproc *w, uv_pipe_t *p, dl_buf *line, int fd) {
  uv_os_fd_t f;
  char buf[4096];
  ssize_t n;
  int rounds = 0;
  if (uv_is_closing((uv_handle_t *)p)) return;
  if (uv_fileno((uv_handle_t *)p, &f) == 0) /* non-blocking: up to EAGAIN */
    while (rounds++ < 256 && (n = read(f, buf, sizeof buf)) > 0)
      relay(w, line, buf, (size_t)n, fd);
  if (line->len) relay(w, line, "\n", 1, fd);
  close_handle((uv_handle_t *)p);
}

/* ------------------------------------------------------------ zygote */

/* Worker w's process, forked by the zygote, has ended or is lost with
   the zygote (which then ends it: see dl_worker_zygote.c). */
static void zworker_end(wproc *w) {
  dl_server *s = w->srv;
  if (w->exited) return;
  worker_exited(w);
  if (s->stopping) maybe_finish_stop(s);
  wproc_unref(w); /* its process's reference */
}

static void zpoll_closed(uv_handle_t *h) { dl_free(h); }

/* Close the link to the zygote; its workers count as ended. */
static void zyg_close(dl_server *s) {
  wproc *w;
  if (s->zfd < 0 || s->zpoll == NULL) return;
  uv_close((uv_handle_t *)s->zpoll, zpoll_closed);
  s->zpoll = NULL;
  close(s->zfd);
  s->zfd = -1;
  for (w = s->workers; w; w = w->next)
    if (w->zyg && !w->exited) zworker_end(w);
}

static wproc *zworker(dl_server *s, uint32_t id) {
  wproc *w;
  for (w = s->workers; w; w = w->next)
    if (w->zyg && (uint32_t)w->id == id) return w;
  return NULL;
}

/* News from the zygote: a worker forked, not forked, or ended. */
static void zpoll_cb(uv_poll_t *h, int status, int events) {
  dl_server *s = h->data;
  (void)events;
  while (s->zfd >= 0) {
    char buf[64];
    int fds[3], nfd;
    dl_zyg_msg m;
    wproc *w;
    long n = status < 0 ? -EPIPE
                        : dl_zyg_recv(s->zfd, buf, sizeof buf, fds, &nfd);
    if (n == 0) return;
    while (n > 0 && nfd > 0) close(fds[--nfd]);
    if (n < 0 || dl_zyg_decode(buf, (size_t)n, &m) != 0) {
      fprintf(stderr, "dlua: lost the link to the workers' zygote (%s); "
              "its workers are replaced\n",
              n < 0 ? strerror((int)-n) : "a malformed message");
      zyg_close(s);
      return;
    }
    if ((w = zworker(s, m.wid)) == NULL) continue;
    if (m.type == 'P') {
      w->pgid = m.val;
      if (w->pid == 0) w->pid = m.val;
    } else if (m.type == 'F') {
      start_fail(s, "cannot start a worker", -m.val);
      zworker_end(w);
    } else if (m.type == 'X') {
      zworker_end(w);
    }
  }
}

/* The link to this process's zygote, made now if need be: 1 when workers
   are forked by it, 0 when they are spawned directly, or a libuv error. */
static int zyg_ready(dl_server *s, const char *argv0) {
  int fd, rc;
  uv_poll_t *p;
  if (s->zyg_off) return 0;
  if (s->zfd >= 0) return 1;
  rc = dl_zygote_connect(s->exe, argv0, &fd);
  if (rc == 1) s->zyg_off = 1;
  if (rc) return rc == 1 ? 0 : rc;
  if ((p = dl_realloc(NULL, sizeof *p)) == NULL) {
    close(fd);
    return UV_ENOMEM;
  }
  if ((rc = uv_poll_init(&s->loop, p, fd)) != 0) {
    dl_free(p);
    close(fd);
    return rc;
  }
  p->data = s;
  uv_poll_start(p, UV_READABLE | UV_DISCONNECT, zpoll_cb);
  s->zpoll = p;
  s->zfd = fd;
  return 1;
}

/* Ask the zygote for worker w with args; its link is sv (sv[1] goes to
   it).  0 with w's pipes open, or an error (nothing of w's changed but
   sv, which stays the caller's). */
static int zspawn(dl_server *s, wproc *w, char **args, int sv[2]) {
  extern char **environ;
  int op[2] = {-1, -1}, ep[2] = {-1, -1}, fds[3], rc;
  char cwd[4096];
  dl_buf b;
  if (pipe2(op, O_CLOEXEC) || pipe2(ep, O_CLOEXEC)) {
    rc = uv_translate_sys_error(errno);
    goto fail;
  }
  if (getcwd(cwd, sizeof cwd) == NULL) cwd[0] = '\0';
  dl_buf_init(&b);
  dl_zyg_put_spawn(&b, (uint32_t)w->id, args, environ, cwd);
  fds[0] = sv[1];
  fds[1] = op[1];
  fds[2] = ep[1];
  rc = dl_zyg_send(s->zfd, &b, fds, 3);
  dl_buf_free(&b);
  if (rc) goto fail;
  close(op[1]);
  close(ep[1]);
  uv_pipe_open(&w->out, op[0]);
  uv_pipe_open(&w->err, ep[0]);
  return 0;
fail:
  if (op[0] >= 0) close(op[0]), close(op[1]);
  if (ep[0] >= 0) close(ep[0]), close(ep[1]);
  return rc;
}

/* The argv[0] a worker of exe is started with (dl_self_name is set by
   server_start, on the thread that starts clusters). */
static const char *worker_argv0(const char *exe) {
  if (strcmp(exe, "/proc/self/exe") != 0) return exe;
  return dl_self_name ? dl_self_name : "dlua";
}

static int spawn_worker(dl_server *s) {
  wproc *w;
  int sv[2], rc, zy;
  char idbuf[32], membuf[32], fracbuf[80];
  char *args[12];
  uv_process_options_t po;
  uv_stdio_container_t stdio[4];
  const char *argv0 = worker_argv0(s->exe);
  if ((zy = zyg_ready(s, argv0)) < 0) {
    start_fail(s, "cannot start a worker", zy);
    return zy;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
    rc = uv_translate_sys_error(errno);
    start_fail(s, "cannot connect a worker", rc);
    return rc;
  }
  w = dl_realloc(NULL, sizeof *w);
  if (w == NULL) {
    close(sv[0]);
    close(sv[1]);
    start_fail(s, "cannot start a worker", UV_ENOMEM);
    return UV_ENOMEM;
  }
  memset(w, 0, sizeof *w);
  w->srv = s;
  w->id = ++s->nextid;
  snprintf(w->label, sizeof w->label, "worker %d", w->id);
  uv_pipe_init(&s->loop, &w->out, 0);
  uv_pipe_init(&s->loop, &w->err, 0);
  w->out.data = w->err.data = w->proc.data = w;
  snprintf(idbuf, sizeof idbuf, "%d", w->id);
  snprintf(membuf, sizeof membuf, "%lld", (long long)s->memory_limit);
  args[0] = (char *)argv0;
  args[1] = "--dlua-worker";
  args[2] = "--id";
  args[3] = idbuf;
  args[4] = "--dir";
  args[5] = s->dir;
  args[6] = "--memory-limit";
  args[7] = membuf;
  snprintf(fracbuf, sizeof fracbuf, "%g,%g,%g,%g", s->fractions[0],
           s->fractions[1], s->fractions[2], s->fractions[3]);
  args[8] = "--memory-fractions";
  args[9] = fracbuf;
  args[10] = NULL;
  w->next = s->workers;
  s->workers = w;
  w->handles = 2;
  rc = zy ? zspawn(s, w, args, sv) : UV_EPIPE;
  if (rc == 0) {
    /* Its process is the zygote's child: the zygote's 'X' ends it. */
    close(sv[1]);
    w->zyg = 1;
    goto started;
  }
  if (zy && rc != UV_EPIPE && rc != UV_ENOTCONN && rc != UV_ECONNRESET)
    goto failed; /* out of descriptors, say: so would a spawn be */
  if (zy) {
    /* The zygote is gone (killed, say) and its end of the link not yet
       noticed: a new one forks this worker, as it will the next ones;
       only when none starts is this one spawned directly. */
    zyg_close(s);
    if (zyg_ready(s, argv0) == 1 && zspawn(s, w, args, sv) == 0) {
      close(sv[1]);
      w->zyg = 1;
      goto started;
    }
    if (s->zfd >= 0) zyg_close(s);
  }
  memset(&po, 0, sizeof po);
  po.file = s->exe;
  po.args = args;
  po.exit_cb = exit_cb;
  /* Each worker leads a process group of its own, so what its tasks start
     is ended with it (exit_cb) unless they detach it.  libuv makes one
     only with a session of its own, so a worker spawned here (without the
     zygote) is in an autogroup of its own, which a zygote's worker is not
     (see dl_worker_zygote.c). */
  po.flags = UV_PROCESS_DETACHED;
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&w->out;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&w->err;
  stdio[3].flags = UV_INHERIT_FD;
  stdio[3].data.fd = sv[1];
  po.stdio = stdio;
  po.stdio_count = 4;
  rc = uv_spawn(&s->loop, &w->proc, &po);
  if (rc) {
failed:
    close(sv[1]);
    close(sv[0]);
    w->gone = w->exited = 1;
    uv_close((uv_handle_t *)&w->out, handle_closed);
    uv_close((uv_handle_t *)&w->err, handle_closed);
    {
      char what[200];
      snprintf(what, sizeof what, "cannot start worker %.150s", s->exe);
      start_fail(s, what, rc);
    }
    return rc;
  }
  close(sv[1]);
  w->pgid = w->proc.pid;
started:
  w->handles = 3;
  s->spawned++;
  uv_read_start((uv_stream_t *)&w->out, pipe_alloc, pipe_read);
  uv_read_start((uv_stream_t *)&w->err, pipe_alloc, pipe_read);
  w->conn = dl_conn_new(&s->loop, &s->fl, on_worker_frame, on_worker_close, w);
  if (w->conn == NULL || (rc = dl_conn_open_fd(w->conn, sv[0])) != 0) {
    if (w->conn == NULL) close(sv[0]);
    start_fail(s, "cannot connect a worker", w->conn ? rc : UV_ENOMEM);
    worker_gone(w);
    return w->conn ? rc : UV_ENOMEM;
  }
  return 0;
}

/* Retire workers beyond the target, newest first. */
static void retire_extra(dl_server *s) {
  int extra;
  wproc *w;
  uv_mutex_lock(&s->lock);
  extra = live_workers(s) - s->target;
  uv_mutex_unlock(&s->lock);
  for (w = s->workers; w && extra > 0; w = w->next) {
    if (w->gone || w->retiring) continue;
    w->retiring = 1;
    extra--;
    if (w->conn) {
      dl_put_shutdown(dl_conn_msg(w->conn));
      dl_conn_flush(w->conn);
    }
    worker_gone(w); /* its results are recomputed elsewhere if needed */
  }
}

/* ------------------------------------------------------------- stopping */

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void maybe_finish_stop(dl_server *s) {
  wproc *w;
  for (w = s->workers; w; w = w->next)
    if (!w->exited) return;
  /* Every worker has exited: close what is left; the loop then ends.
     Worker handles close through their own callbacks. */
  if (s->tcp) {
    dl_tcp_server_close(s->tcp);
    s->tcp = NULL;
  }
  zyg_close(s);
  if (!uv_is_closing((uv_handle_t *)&s->wake)) {
    uv_close((uv_handle_t *)&s->wake, NULL);
    uv_close((uv_handle_t *)&s->tick, NULL);
    uv_close((uv_handle_t *)&s->killer, NULL);
    uv_close((uv_handle_t *)&s->pickup, NULL);
    uv_close((uv_handle_t *)&s->prep, NULL);
    dl_flusher_close(&s->fl);
  }
}

static void killer_cb(uv_timer_t *t) {
  dl_server *s = t->data;
  wproc *w;
  for (w = s->workers; w; w = w->next)
    kill_worker(w);
}

static void begin_stop(dl_server *s) {
  wproc *w;
  if (s->stopping) return;
  s->stopping = 1;
  if (s->svc_started) s->svc.stop(s->svc.ud);
  s->svc_started = 0;
  while (s->rclients) { /* pending messages go first */
    dl_conn *c = s->rclients->conn;
    client_drop(s->rclients);
    dl_conn_close(c);
  }
  if (s->sconn) {
    dl_conn *c = s->sconn;
    s->sconn = NULL;
    c->data = NULL;
    dl_conn_close(c);
  }
  for (w = s->workers; w; w = w->next) {
    if (w->conn) {
      dl_put_shutdown(dl_conn_msg(w->conn));
      dl_conn_flush(w->conn);
    }
    if (w->remote) worker_gone(w); /* closes its link once flushed */
  }
  uv_timer_start(&s->killer, killer_cb, 1000, 0);
  maybe_finish_stop(s);
}

/* -------------------------------------------------------------- loop */

/* Hand the client's queued messages to the scheduler; 1 if there were. */
static int drain_client(dl_server *s) {
  dl_buf msgs;
  double sent;
  int rc;
  uv_mutex_lock(&s->lock);
  msgs = s->outbox;
  dl_buf_init(&s->outbox);
  atomic_store(&s->outbox_ready, 0);
  sent = s->sent_at;
  uv_mutex_unlock(&s->lock);
  if (msgs.len) poll_learn(s, sent);
  if (msgs.len == 0) {
    dl_buf_free(&msgs);
    return 0;
  }
  if (s->remote_sched) { /* the scheduler is in another process */
    /* Handed to the link under the lock: dl_server_send writes on the
       socket itself only when the outbox is empty and nothing of it is
       on its way outside libuv, so frames keep their order. */
    uv_mutex_lock(&s->lock);
    dl_buf_put(&s->outbox, msgs.p, msgs.len); /* before what came since */
    dl_buf_free(&msgs);
    if (s->sconn && s->outbox.len) {
      dl_buf_put(dl_conn_msg(s->sconn), s->outbox.p, s->outbox.len);
      dl_conn_flush(s->sconn);
    }
    s->outbox.len = 0;
    atomic_store(&s->outbox_ready, 0);
    uv_mutex_unlock(&s->lock);
    return 1;
  }
  uv_mutex_lock(&s->lock);
  rc = dl_sched_client_frame(s->sched, msgs.p, msgs.len, now_s());
  uv_mutex_unlock(&s->lock);
  if (rc) fprintf(stderr, "dlua: malformed client message (%d)\n", rc);
  dl_buf_free(&msgs);
  return 1;
}

/* Messages the client queued without a wake-up (dl_server_send) are
   taken here, within a millisecond; the timer stops once none come. */
static void pickup_cb(uv_timer_t *t) {
  dl_server *s = t->data;
  if (!drain_client(s)) uv_timer_stop(t);
}

static void wake_cb(uv_async_t *h) {
  dl_server *s = h->data;
  int stop, target, shut;
  uv_mutex_lock(&s->lock);
  stop = s->stop_asked;
  target = s->target;
  shut = s->shutdown_asked;
  s->shutdown_asked = 0;
  uv_mutex_unlock(&s->lock);
  drain_client(s);
  if (shut && s->sconn) { /* after the messages before it, in its frame */
    dl_conn_flush(s->sconn);
    dl_put_cshutdown(dl_conn_msg(s->sconn));
    dl_conn_flush(s->sconn);
  }
  if (!s->stopping) uv_timer_start(&s->pickup, pickup_cb, 1, 1);
  if (stop) {
    begin_stop(s);
    return;
  }
  if (!s->stopping) {
    top_up(s, target);
    retire_extra(s);
  }
}

/* Free the records of workers that joined over TCP and are gone (all of
   them with every set). */
static void reap_remote(dl_server *s, int every) {
  wproc **pp = &s->workers;
  while (*pp) {
    wproc *w = *pp;
    if (w->remote && (w->gone || every)) {
      if (w->conn) {
        w->conn->data = NULL;
        dl_conn_close(w->conn);
      }
      *pp = w->next;
      dl_free(w);
    } else {
      pp = &w->next;
    }
  }
}

/* Workers that joined over TCP and are still here. */
static int live_remote(dl_server *s) {
  int n = 0;
  wproc *w;
  for (w = s->workers; w; w = w->next)
    if (w->remote && w->ready && !w->gone) n++;
  return n;
}

static void tick_cb(uv_timer_t *t) {
  dl_server *s = t->data;
  int silent[16], n, i, target;
  wproc *w;
  if (s->remote_sched) return;
  if (!s->stopping) {
    rclient *c;
    int nlive = live_remote(s);
    for (c = s->rclients; c; c = c->next)
      if (now_s() - c->info_at >= 0.5 || nlive != c->info_nworkers)
        send_cinfo(s, c);
  }
  uv_mutex_lock(&s->lock);
  dl_sched_tick(s->sched, now_s());
  n = s->stopping ? 0 : dl_sched_silent(s->sched, now_s(), silent, 16);
  target = s->target;
  uv_mutex_unlock(&s->lock);
  /* A worker that stopped answering (SIGSTOP, a hung I/O thread) is dead
     to us: killed and replaced as if it had died. */
  for (i = 0; i < n; i++)
    for (w = s->workers; w; w = w->next)
      if (w->id == silent[i] && !w->gone) {
        fprintf(stderr, "dlua: %s (pid %lld) sent nothing for too "
                "long; killing and replacing it\n", w->label,
                (long long)w->pid);
        worker_gone(w);
        break;
      }
  if (s->retry_at > 0 && !s->stopping && now_s() >= s->retry_at)
    top_up(s, target);
  reap_remote(s, 0);
}

/* Start the service (the dashboard) on the loop; on failure the start of
   the whole cluster fails with its message. */
static int start_service(dl_server *s) {
  char err[300];
  const char *addr;
  err[0] = '\0';
  s->svc_started = s->svc.start(s->svc.ud, &s->loop, s, err, sizeof err) == 0;
  addr = s->svc_started && s->svc.address ? s->svc.address(s->svc.ud) : NULL;
  uv_mutex_lock(&s->lock);
  if (s->svc_started) {
    snprintf(s->svc_addr, sizeof s->svc_addr, "%s", addr ? addr : "");
  } else {
    s->start_failed = 1;
    snprintf(s->starterr, sizeof s->starterr, "%s", err);
    uv_cond_broadcast(&s->cond);
  }
  uv_mutex_unlock(&s->lock);
  return s->svc_started ? 0 : -1;
}

/* A worker that joined over TCP and proved it holds the token. */
static void on_remote_worker(dl_tcp_server *ts, int fd, const char *peer,
                             void *data) {
  dl_server *s = data;
  wproc *w;
  (void)ts;
  if (s->stopping || (w = dl_realloc(NULL, sizeof *w)) == NULL) {
    close(fd);
    return;
  }
  memset(w, 0, sizeof *w);
  w->srv = s;
  w->remote = 1;
  w->exited = 1; /* no process of ours */
  w->id = ++s->nextid;
  snprintf(w->label, sizeof w->label, "worker %d", w->id);
  snprintf(w->addr, sizeof w->addr, "%s", peer);
  w->conn = dl_conn_new(&s->loop, &s->fl, on_worker_frame, on_worker_close, w);
  if (w->conn == NULL || dl_conn_open_fd(w->conn, fd) != 0) {
    if (w->conn) dl_conn_close(w->conn);
    else close(fd);
    dl_free(w);
    return;
  }
  w->next = s->workers;
  s->workers = w;
  dl_put_welcome(dl_conn_msg(w->conn), (uint64_t)w->id);
}

/* Listen for workers over TCP; on failure the start fails with why. */
static int start_listener(dl_server *s) {
  char host[256], err[300];
  int port, rc;
  dl_tcp_opts o;
  memset(&o, 0, sizeof o);
  o.token = &s->token;
  o.tls = s->tls;
  o.version = s->dlua_version;
  rc = dl_tcp_parse(s->listen_req, host, sizeof host, &port, err, sizeof err);
  if (rc == 0)
    rc = dl_tcp_listen(&s->tcp, &s->loop, host, port, &o, on_remote_worker, s,
                       err, sizeof err);
  uv_mutex_lock(&s->lock);
  if (rc == 0) {
    snprintf(s->listen_addr, sizeof s->listen_addr,
             strchr(host, ':') ? "tcp://[%s]:%d" : "tcp://%s:%d", host,
             dl_tcp_server_port(s->tcp));
  } else {
    s->start_failed = 1;
    snprintf(s->starterr, sizeof s->starterr, "%s", err);
  }
  uv_cond_broadcast(&s->cond);
  uv_mutex_unlock(&s->lock);
  return rc;
}

static void thread_main(void *arg) {
  dl_server *s = arg;
  int i, n;
  sigset_t pipe_set;
  /* A write to a worker that just died must not kill the host process. */
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  /* Ctrl-C is for the client's thread, whose waits it interrupts. */
  sigaddset(&pipe_set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
  uv_mutex_lock(&s->lock);
  n = s->target;
  uv_mutex_unlock(&s->lock);
  if (s->svc.start && start_service(s)) n = 0;
  if (s->listen_req[0] && start_listener(s)) n = 0;
  for (i = 0; i < n; i++)
    if (spawn_worker(s)) break;
  uv_run(&s->loop, UV_RUN_DEFAULT);
  zyg_close(s);
  reap_remote(s, 1);
  uv_walk(&s->loop, close_walk, NULL);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uv_mutex_lock(&s->lock);
  s->dead = 1;
  atomic_store(&s->ended, 1);
  uv_cond_broadcast(&s->cond);
  uv_mutex_unlock(&s->lock);
  wake_bump();
}

static void remove_dir(const char *dir) {
  uv_fs_t req;
  uv_dirent_t ent;
  char path[600];
  if (uv_fs_scandir(NULL, &req, dir, 0, NULL) >= 0) {
    while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
      snprintf(path, sizeof path, "%s/%s", dir, ent.name);
      unlink(path);
    }
  }
  uv_fs_req_cleanup(&req);
  rmdir(dir);
}

/* Whether libuv's process-wide state exists (see dl_server_preinit). */
static atomic_int uv_ready;

int dl_server_preinit(void) {
  uv_loop_t probe;
  int fds[2], rc;
  if (atomic_load(&uv_ready)) return 0;
  /* libuv aborts when the pipe of its first loop cannot be made: make
     sure one can be first. */
  if (pipe(fds)) return uv_translate_sys_error(errno);
  close(fds[0]);
  close(fds[1]);
  rc = uv_loop_init(&probe);
  if (rc) return rc;
  uv_loop_close(&probe);
  atomic_store(&uv_ready, 1);
  return 0;
}

/* Raise the soft limit on open descriptors to the hard one, as workers
   do: big blocks, dashboard connections and workers' links all use them. */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* The longest private directory whose sockets fit in sun_path: room for
   "/w<id>.sock" with any int id and the NUL. */
#define DIR_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 18)

/* Initialise the loop, lock and handles of s; 0 or a libuv error with
   *what naming the step.  On failure the caller closes what was opened
   (close_loop). */
static int init_loop(dl_server *s, const char **what) {
  int rc, fds[4];
  *what = "cannot create the scheduler's event loop";
  /* A uv_loop_init that fails half-way leaks its epoll descriptor
     (libuv 1.44): check first that the four it needs are free. */
  if (pipe(fds)) return uv_translate_sys_error(errno);
  rc = pipe(fds + 2) ? uv_translate_sys_error(errno) : 0;
  close(fds[0]);
  close(fds[1]);
  if (rc) return rc;
  close(fds[2]);
  close(fds[3]);
  if ((rc = uv_loop_init(&s->loop)) != 0) return rc;
  s->loop_ok = 1;
  *what = "cannot create the scheduler's lock";
  if ((rc = uv_mutex_init(&s->lock)) != 0) return rc;
  s->lock_ok = 1;
  if ((rc = uv_cond_init(&s->cond)) != 0) return rc;
  s->cond_ok = 1;
  *what = "cannot create the scheduler's event loop";
  if ((rc = uv_async_init(&s->loop, &s->wake, wake_cb)) != 0) return rc;
  s->wake.data = s;
  if ((rc = uv_timer_init(&s->loop, &s->tick)) != 0) return rc;
  s->tick.data = s;
  if ((rc = uv_timer_start(&s->tick, tick_cb, 20, 20)) != 0) return rc;
  if ((rc = uv_timer_init(&s->loop, &s->killer)) != 0) return rc;
  s->killer.data = s;
  if ((rc = uv_timer_init(&s->loop, &s->pickup)) != 0) return rc;
  s->pickup.data = s;
  if ((rc = uv_prepare_init(&s->loop, &s->prep)) != 0) return rc;
  s->prep.data = s;
  if ((rc = uv_prepare_start(&s->prep, prep_cb)) != 0) return rc;
  return dl_flusher_init(&s->fl, &s->loop);
}

/* Undo init_loop after a failed start (the thread never ran). */
static void close_loop(dl_server *s) {
  if (s->loop_ok) {
    uv_walk(&s->loop, close_walk, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
  }
  if (s->cond_ok) uv_cond_destroy(&s->cond);
  if (s->lock_ok) uv_mutex_destroy(&s->lock);
  if (s->gate_ok) uv_mutex_destroy(&s->gate.lock); /* its conn is closed */
  s->gate_ok = 0;
}

static dl_server *server_start(const dl_server_opts *o, int *owned, char *err,
                               size_t errlen) {
  dl_server *s;
  dl_sched_io io;
  const char *tmp = getenv("TMPDIR"), *what;
  double deadline;
  int ok = 0, rc;
  if ((o->listen_address ? o->n_workers != 0 : o->n_workers <= 0) ||
      o->memory_limit <= 0 || o->worker_exe == NULL ||
      (o->listen_address && o->token == NULL)) {
    snprintf(err, errlen, "bad cluster options");
    return NULL;
  }
  if (tmp == NULL || *tmp == '\0') tmp = "/tmp";
  if (strlen(tmp) + sizeof "/dlua-XXXXXX" - 1 > DIR_MAX) {
    snprintf(err, errlen, "TMPDIR is too long for the workers' socket "
             "paths (%zu bytes, at most %zu): set TMPDIR to a shorter "
             "directory", strlen(tmp), DIR_MAX - (sizeof "/dlua-XXXXXX" - 1));
    return NULL;
  }
  raise_nofile();
  if (dl_self_name == NULL) dl_self_name = dl_os_self_exe();
  /* The zygote starts loading now (after raise_nofile: it and its workers
     inherit the limit), while the scheduler is made below. */
  if (o->n_workers > 0)
    dl_zygote_prestart(o->worker_exe, worker_argv0(o->worker_exe));
  if ((rc = dl_server_preinit()) != 0) {
    snprintf(err, errlen, "cannot create the scheduler's event loop: %s",
             uv_strerror(rc));
    return NULL;
  }
  s = dl_realloc(NULL, sizeof *s);
  if (s == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  memset(s, 0, sizeof *s);
  s->zfd = -1;
  snprintf(s->exe, sizeof s->exe, "%s", o->worker_exe);
  snprintf(s->dir, sizeof s->dir, "%s/dlua-XXXXXX", tmp);
  if (mkdtemp(s->dir) == NULL) { /* mode 0700: no other user reaches it */
    snprintf(err, errlen, "cannot create a private directory in %s: %s",
             tmp, strerror(errno));
    dl_free(s);
    return NULL;
  }
  s->memory_limit = o->memory_limit;
  s->fractions[0] = o->memory_target > 0 ? o->memory_target : 0.6;
  s->fractions[1] = o->memory_spill > 0 ? o->memory_spill : 0.7;
  s->fractions[2] = o->memory_pause > 0 ? o->memory_pause : 0.8;
  s->fractions[3] = o->memory_terminate > 0 ? o->memory_terminate : 0.95;
  s->target = o->n_workers;
  snprintf(s->dlua_version, sizeof s->dlua_version, "%s",
           o->dlua_version ? o->dlua_version : "unknown");
  snprintf(s->lua_version, sizeof s->lua_version, "%s",
           o->lua_version ? o->lua_version : "unknown");
  if (o->listen_address) {
    if (strlen(o->listen_address) >= sizeof s->listen_req) {
      snprintf(err, errlen, "listen address too long");
      rmdir(s->dir);
      dl_free(s);
      return NULL;
    }
    snprintf(s->listen_req, sizeof s->listen_req, "%s", o->listen_address);
    s->token = *o->token;
    s->tls = o->tls;
  }
  io.worker_out = worker_out;
  io.client_out = client_out;
  io.ud = s;
  s->sched = dl_sched_new(&io);
  if (s->sched == NULL) {
    snprintf(err, errlen, "out of memory");
    rmdir(s->dir);
    dl_free(s);
    return NULL;
  }
  if (o->allowed_failures > 0)
    dl_sched_set_allowed_failures(s->sched, o->allowed_failures);
  dl_sched_set_heartbeat_timeout(s->sched, o->heartbeat_timeout > 0
                                               ? o->heartbeat_timeout : 5.0);
  if (o->service) s->svc = *o->service; /* before the thread reads it */
  rc = init_loop(s, &what);
  if (rc == 0) {
    rc = uv_thread_create(&s->thread, thread_main, s);
    what = "cannot start the scheduler thread";
  }
  if (rc) {
    snprintf(err, errlen, "%s: %s", what, uv_strerror(rc));
    close_loop(s);
    dl_sched_free(s->sched);
    rmdir(s->dir);
    dl_free(s);
    return NULL;
  }
  *owned = 1; /* the service is s's from here on: dl_server_stop frees it */
  pthread_mutex_lock(&live_lock);
  s->next_live = live;
  live = s;
  pthread_mutex_unlock(&live_lock);
  deadline = now_s() + (o->start_timeout > 0 ? o->start_timeout : 20.0);
  uv_mutex_lock(&s->lock);
  while ((s->nready < s->target ||
          (s->listen_req[0] && !s->listen_addr[0])) &&
         !s->start_failed && !s->dead) {
    double left = deadline - now_s();
    if (left <= 0) break;
    uv_cond_timedwait(&s->cond, &s->lock, (uint64_t)(left * 1e9));
  }
  if (s->start_failed) snprintf(err, errlen, "%s", s->starterr);
  else if (s->nready >= s->target && (!s->listen_req[0] || s->listen_addr[0]))
    ok = 1;
  else if (!ok) snprintf(err, errlen, "workers did not start within %.0f s",
                o->start_timeout > 0 ? o->start_timeout : 20.0);
  uv_mutex_unlock(&s->lock);
  if (!ok) {
    dl_server_stop(s);
    return NULL;
  }
  return s;
}

dl_server *dl_server_start(const dl_server_opts *o, char *err, size_t errlen) {
  int owned = 0;
  dl_server *s = server_start(o, &owned, err, errlen);
  if (!owned && o->service && o->service->free)
    o->service->free(o->service->ud);
  return s;
}

/* ------------------------------------------- the client of a remote one */

/* The link to the remote scheduler ended: the loop stops, and waits and
   sends fail with s->lost. */
static void on_sched_close(dl_conn *c) {
  dl_server *s = c->data;
  if (s == NULL) return;
  s->sconn = NULL;
  uv_mutex_lock(&s->lock);
  if (!s->lost[0])
    snprintf(s->lost, sizeof s->lost, "lost the connection to the scheduler "
             "at %s (it stopped, or the network failed)", s->listen_addr);
  if (!s->rjoined && !s->start_failed) {
    s->start_failed = 1;
    snprintf(s->starterr, sizeof s->starterr, "the scheduler at %s closed "
             "the connection before it served this client", s->listen_addr);
  }
  uv_cond_broadcast(&s->cond);
  uv_mutex_unlock(&s->lock);
  begin_stop(s);
}

/* Take a CINFO (r is past its type byte); 0, DL_EPROTO or DL_ENOMEM. */
static int take_cinfo(dl_server *s, dl_rd *r) {
  dl_cinfo ci;
  int rc = dl_cinfo_read(r, &ci, now_s());
  if (rc) return rc;
  uv_mutex_lock(&s->lock);
  dl_free(s->rworkers);
  s->rworkers = ci.ws;
  s->nrworkers = ci.nws;
  memcpy(s->rdead, ci.dead, sizeof ci.dead);
  s->nrdead = ci.ndead;
  memcpy(s->rcounts, ci.counts, sizeof ci.counts);
  snprintf(s->svc_addr, sizeof s->svc_addr, "%s", ci.dash);
  if (!s->rjoined) {
    s->rjoined = 1;
    uv_cond_broadcast(&s->cond);
  }
  uv_mutex_unlock(&s->lock);
  return 0;
}

/* A frame from the remote scheduler: its figures, a refusal, or messages
   for the client (they go to the inbox as a local scheduler's do). */
static void on_sched_frame(dl_conn *c, const char *p, size_t n) {
  dl_server *s = c->data;
  dl_rd r;
  unsigned type = 0;
  if (s == NULL) return;
  dl_rd_init(&r, p, n);
  if (dl_wire_type(&r, &type) == 0 && type == DL_M_WELCOME) {
    uint64_t id;
    if (dl_get_welcome(&r, &id)) goto bad;
    if (dl_rd_left(&r) == 0) return;
    p = r.p;
    n = dl_rd_left(&r);
    dl_rd_init(&r, p, n);
    type = 0;
    dl_wire_type(&r, &type);
  }
  if (type == DL_M_CINFO) {
    if (take_cinfo(s, &r)) goto bad;
    return;
  }
  if (type == DL_M_CREFUSE) {
    const char *why;
    size_t wl;
    if (dl_get_crefuse(&r, &why, &wl)) goto bad;
    uv_mutex_lock(&s->lock);
    s->start_failed = 1;
    snprintf(s->starterr, sizeof s->starterr, "the scheduler at %s refused "
             "this client: %.*s", s->listen_addr, (int)wl, why);
    snprintf(s->lost, sizeof s->lost, "%.390s", s->starterr);
    uv_cond_broadcast(&s->cond);
    uv_mutex_unlock(&s->lock);
    begin_stop(s);
    return;
  }
  dl_buf_put(&s->cpending, p, n);
  return;
bad:
  uv_mutex_lock(&s->lock);
  snprintf(s->lost, sizeof s->lost, "malformed message from the scheduler "
           "at %s; disconnected", s->listen_addr);
  uv_mutex_unlock(&s->lock);
  begin_stop(s);
}

dl_server *dl_server_connect(const char *address, const dl_token *token,
                             const dl_tls_ctx *tls,
                             const char *version, double timeout, char *err,
                             size_t errlen) {
  dl_server *s;
  dl_tcp_opts o;
  char host[256];
  const char *what;
  int port, fd = -1, rc, ok = 0;
  double deadline;
  if (timeout <= 0) timeout = DL_TCP_CONNECT_MS / 1000.0;
  if (dl_tcp_parse(address, host, sizeof host, &port, err, errlen)) return NULL;
  if ((rc = dl_server_preinit()) != 0) {
    snprintf(err, errlen, "cannot create the client's event loop: %s",
             uv_strerror(rc));
    return NULL;
  }
  memset(&o, 0, sizeof o);
  o.token = token;
  o.version = version;
  o.tls = tls;
  if (dl_tcp_dial_sync(host, port, &o, (unsigned)(timeout * 1000), &fd, err,
                       errlen))
    return NULL;
  s = dl_realloc(NULL, sizeof *s);
  if (s == NULL) {
    close(fd);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  memset(s, 0, sizeof *s);
  s->zfd = -1; /* no zygote: its workers are the remote scheduler's */
  s->remote_sched = 1;
  snprintf(s->listen_addr, sizeof s->listen_addr,
           strchr(host, ':') ? "tcp://[%s]:%d" : "tcp://%s:%d", host, port);
  snprintf(s->dlua_version, sizeof s->dlua_version, "%s", version);
  snprintf(s->lua_version, sizeof s->lua_version, "unknown");
  rc = init_loop(s, &what);
  if (rc == 0) {
    what = "cannot open the connection";
    s->sconn = dl_conn_new(&s->loop, &s->fl, on_sched_frame, on_sched_close,
                           s);
    rc = s->sconn == NULL ? DL_ENOMEM : dl_conn_open_fd(s->sconn, fd);
    if (rc == 0) {
      fd = -1;
      if (dl_wgate_init(&s->gate) == 0) {
        s->gate_ok = 1;
        dl_conn_set_gate(s->sconn, &s->gate);
      }
      dl_put_chello(dl_conn_msg(s->sconn));
      what = "cannot start the client's thread";
      rc = uv_thread_create(&s->thread, thread_main, s);
    }
  }
  if (rc) {
    snprintf(err, errlen, "%s: %s", what, rc == DL_ENOMEM ? "out of memory"
                                                          : uv_strerror(rc));
    if (fd >= 0) close(fd);
    close_loop(s);
    dl_free(s);
    return NULL;
  }
  pthread_mutex_lock(&live_lock);
  s->next_live = live;
  live = s;
  pthread_mutex_unlock(&live_lock);
  deadline = now_s() + timeout;
  uv_mutex_lock(&s->lock);
  while (!s->rjoined && !s->start_failed && !s->dead) {
    double left = deadline - now_s();
    if (left <= 0) break;
    uv_cond_timedwait(&s->cond, &s->lock, (uint64_t)(left * 1e9));
  }
  if (s->start_failed) snprintf(err, errlen, "%s", s->starterr);
  else if (s->rjoined) ok = 1;
  else snprintf(err, errlen, "the scheduler at %s did not answer within "
                "%g s", s->listen_addr, timeout);
  uv_mutex_unlock(&s->lock);
  if (!ok) {
    dl_server_stop(s);
    return NULL;
  }
  return s;
}

int dl_server_shutdown(dl_server *s) {
  int dead;
  if (!s->remote_sched) return DL_EINVAL;
  uv_mutex_lock(&s->lock);
  s->shutdown_asked = 1;
  dead = s->dead;
  uv_mutex_unlock(&s->lock);
  if (dead) return DL_EPROTO;
  uv_async_send(&s->wake);
  return 0;
}

int dl_server_ended(dl_server *s) { return atomic_load(&s->ended); }

const char *dl_server_lost(dl_server *s) {
  const char *r;
  uv_mutex_lock(&s->lock);
  r = s->lost[0] ? s->lost : NULL;
  uv_mutex_unlock(&s->lock);
  return r;
}

/* Ask the loop of s to stop (once). */
static void ask_stop(dl_server *s) {
  int dead;
  uv_mutex_lock(&s->lock);
  s->stop_asked = 1;
  dead = s->dead;
  uv_mutex_unlock(&s->lock);
  if (!dead) uv_async_send(&s->wake);
}

int dl_server_end_zygote(void) {
  int had = 0;
  pthread_mutex_lock(&live_lock);
  if (live == NULL && (had = dl_zygote_pid() != 0) != 0) dl_zygote_stop();
  pthread_mutex_unlock(&live_lock);
  return had;
}

void dl_server_stop(dl_server *s) {
  dl_server **pp;
  if (s == NULL) return;
  pthread_mutex_lock(&live_lock); /* waits for a dl_server_stop_all */
  for (pp = &live; *pp; pp = &(*pp)->next_live)
    if (*pp == s) {
      *pp = s->next_live;
      break;
    }
  pthread_mutex_unlock(&live_lock);
  ask_stop(s);
  uv_thread_join(&s->thread);
  uv_loop_close(&s->loop);
  if (s->dir[0]) remove_dir(s->dir);
  if (s->sched) dl_sched_free(s->sched);
  if (s->svc.free) s->svc.free(s->svc.ud);
  dl_free(s->rworkers);
  uv_mutex_destroy(&s->lock);
  uv_cond_destroy(&s->cond);
  dl_buf_free(&s->outbox);
  dl_buf_free(&s->inbox);
  dl_buf_free(&s->cpending);
  dl_free(s->logs);
  dl_free(s->pipebuf);
  dl_free(s);
}

/*
** Stop every cluster of this process and wait (a bounded time) for their
** workers to be gone; the clusters stay allocated (their owners still
** hold them) but are dead.  For a process about to die of a signal.
*/
int dl_server_stop_all(void) {
  dl_server *s;
  int n = 0;
  double deadline = now_s() + 3.0;
  pthread_mutex_lock(&live_lock);
  for (s = live; s; s = s->next_live) {
    ask_stop(s);
    n++;
  }
  for (s = live; s; s = s->next_live) {
    uv_mutex_lock(&s->lock);
    while (!s->dead && now_s() < deadline)
      uv_cond_timedwait(&s->cond, &s->lock, 20 * 1000 * 1000);
    uv_mutex_unlock(&s->lock);
    if (s->dir[0]) remove_dir(s->dir);
  }
  pthread_mutex_unlock(&live_lock);
  return n;
}

int dl_server_send(dl_server *s, const char *p, size_t n, int urgent) {
  int rc;
  uv_mutex_lock(&s->lock);
  if (s->gate_ok && !s->dead && s->outbox.len == 0) {
    /* A remote scheduler: the frame goes on its socket from this thread
       when nothing queued before it is still on its way. */
    uv_mutex_lock(&s->gate.lock);
    rc = dl_wgate_write(&s->gate, p, n);
    uv_mutex_unlock(&s->gate.lock);
    if (rc == 0) {
      uv_mutex_unlock(&s->lock);
      s->deferred = 0;
      return 0;
    }
  }
  rc = s->dead ? DL_EPROTO : dl_buf_put(&s->outbox, p, n);
  if (rc == 0) {
    s->sent_at = now_s();
    atomic_store(&s->outbox_ready, 1);
  }
  uv_mutex_unlock(&s->lock);
  if (rc == 0 && atomic_load(&s->polling)) {
    s->deferred = 0; /* the loop's thread takes it now (poll_client) */
    return 0;
  }
  if (rc == 0) {
    double t = now_s();
    /* Within DL_SERVER_BURST of the last wake-up the scheduler's thread
       is awake or its pickup timer is armed (wake_cb arms it for 1 ms
       later): it takes these messages with the next ones. */
    if (urgent || t - s->last_wake >= DL_SERVER_BURST) {
      s->last_wake = t;
      s->deferred = 0;
      uv_async_send(&s->wake);
    } else {
      s->deferred = 1;
    }
  }
  return rc;
}

/* Move the inbox to out; 1 if there was anything.  Takes the lock. */
static int take_inbox(dl_server *s, dl_buf *out) {
  int got = 0;
  uv_mutex_lock(&s->lock);
  if (s->inbox.len) {
    if (out->len == 0) {
      dl_buf t = *out;
      *out = s->inbox;
      s->inbox = t;
    } else {
      dl_buf_put(out, s->inbox.p, s->inbox.len);
      s->inbox.len = 0;
    }
    atomic_store(&s->inbox_ready, 0);
    got = 1;
  } else if (s->dead) {
    got = DL_EPROTO;
  }
  uv_mutex_unlock(&s->lock);
  return got;
}

static int recv_wait(dl_server *s, dl_buf *out, double timeout);

int dl_server_take(dl_server *s, dl_buf *out) {
  if (!atomic_load(&s->inbox_ready)) return 0;
  return take_inbox(s, out) == 1;
}

int dl_server_recv(dl_server *s, dl_buf *out, double timeout) {
  int rc;
  /* Seen by the loop's thread when it hands over news (poll_client). */
  atomic_store(&s->cwaiting, 1);
  rc = recv_wait(s, out, timeout);
  atomic_store(&s->cwaiting, 0);
  return rc;
}

/* Has the wake-up word moved on from *seen? */
static int woken(void *ud) {
  return atomic_load(&wake_seq) != *(const unsigned *)ud;
}

static int recv_wait(dl_server *s, dl_buf *out, double timeout) {
  double start = now_s(), deadline = start + timeout;
  int spun = 0;
  /* The answer is awaited: no pickup delay for messages still queued. */
  if (s->deferred) {
    s->deferred = 0;
    if (atomic_load(&s->outbox_ready)) {
      s->last_wake = start;
      uv_async_send(&s->wake);
    }
  }
  for (;;) {
    unsigned seen = atomic_load(&wake_seq);
    if (atomic_load(&s->inbox_ready) || atomic_load(&s->ended)) {
      int got = take_inbox(s, out);
      if (got) {
        /* Answers come within the longest spin (even when this one
           stopped short): spin as long as allowed from now on. */
        if ((spun == 1 || spun == 2) && now_s() - start <= DL_SERVER_SPIN)
          s->spin = DL_SERVER_SPIN;
        return got;
      }
    }
    if (interrupt_taken()) return DL_EINTR;
    if (timeout == 0) return 0;
    if (!spun) {
      /* Spin briefly first: waking a sleeping thread costs more here than
         the answer to a small task takes.  The scheduler's thread does
         not spin meanwhile (it watches only while the client runs, see
         poll_client), and each step lets a thread that is ready run on
         this CPU (dl_os_relax): on a busy machine it may be the one that
         brings the answer.  The spin adapts: it is halved each time the
         answer did not come within it (long tasks), back to its longest
         once an answer comes within that, and cut to its least when a
         step lost the CPU for DL_SPIN_LOST (a busy machine, where a
         thread woken from sleep gets the CPU sooner than one that
         yields), so a spin that does not pay does not take CPU time from
         the threads that work. */
      double limit;
      spun = 1;
      if (s->spin <= 0) s->spin = DL_SERVER_SPIN;
      limit = s->spin;
      if (timeout > 0 && deadline - start < limit) limit = deadline - start;
      if (dl_os_spin(limit, woken, &seen) < 0) { /* others want this CPU */
        spun = 3;
        s->spin = DL_SERVER_SPIN_MIN;
      }
      if (atomic_load(&wake_seq) == seen && spun == 1) {
        spun = 2;
        if (s->spin > DL_SERVER_SPIN_MIN) s->spin /= 2;
      }
      continue;
    }
    if (timeout > 0) {
      double left = deadline - now_s();
      if (left <= 0) return 0;
      wake_wait(seen, left);
    } else {
      wake_wait(seen, -1);
    }
  }
}

int dl_server_scale(dl_server *s, int n) {
  if (n < 0 || s->remote_sched) return DL_EINVAL;
  uv_mutex_lock(&s->lock);
  s->target = n;
  uv_mutex_unlock(&s->lock);
  uv_async_send(&s->wake);
  return 0;
}

int dl_server_workers(dl_server *s, dl_sched_winfo *out, int max) {
  int n;
  uv_mutex_lock(&s->lock);
  if (s->sched == NULL) {
    n = s->nrworkers;
    memcpy(out, s->rworkers, (size_t)(n < max ? n : max) * sizeof *out);
    uv_mutex_unlock(&s->lock);
    return n;
  }
  n = dl_sched_workers(s->sched, out, max);
  uv_mutex_unlock(&s->lock);
  return n;
}

void dl_server_counts(dl_server *s, int64_t out[6]) {
  uv_mutex_lock(&s->lock);
  if (s->sched == NULL) {
    memcpy(out, s->rcounts, sizeof s->rcounts);
    uv_mutex_unlock(&s->lock);
    return;
  }
  dl_sched_counts(s->sched, out);
  uv_mutex_unlock(&s->lock);
}

int dl_server_groups(dl_server *s, dl_sched_group *out, int max) {
  int n;
  if (s->sched == NULL) return 0; /* a remote cluster's */
  uv_mutex_lock(&s->lock);
  n = dl_sched_groups(s->sched, out, max);
  uv_mutex_unlock(&s->lock);
  return n;
}

void dl_server_coord_walk(dl_server *s, dl_coord_walk_fn fn, void *ud) {
  uv_mutex_lock(&s->lock);
  dl_sched_coord_walk(s->sched, fn, ud);
  uv_mutex_unlock(&s->lock);
}

int dl_server_departed(dl_server *s, dl_sched_winfo *out, int max) {
  int n;
  if (s->sched == NULL) { /* a remote cluster's, from its last CINFO */
    uv_mutex_lock(&s->lock);
    n = s->nrdead < max ? s->nrdead : max;
    memcpy(out, s->rdead, (size_t)n * sizeof *out);
    uv_mutex_unlock(&s->lock);
    return n;
  }
  uv_mutex_lock(&s->lock);
  n = dl_sched_departed(s->sched, out, max);
  uv_mutex_unlock(&s->lock);
  return n;
}

int dl_server_events(dl_server *s, uint64_t since, dl_sched_event *out,
                     int max, uint64_t *next) {
  int n;
  if (s->sched == NULL) return 0;
  uv_mutex_lock(&s->lock);
  n = dl_sched_events(s->sched, since, out, max, next);
  uv_mutex_unlock(&s->lock);
  return n;
}

int64_t dl_server_each_task(dl_server *s,
                            void (*fn)(void *ud, const dl_sched_tinfo *t),
                            void *ud) {
  int64_t n;
  if (s->sched == NULL) return 0;
  uv_mutex_lock(&s->lock);
  n = dl_sched_each_task(s->sched, fn, ud);
  uv_mutex_unlock(&s->lock);
  return n;
}

int dl_server_history(dl_server *s, int wid, dl_sched_sample *out, int max) {
  int n;
  if (s->sched == NULL) return 0; /* a remote cluster's */
  uv_mutex_lock(&s->lock);
  n = dl_sched_history(s->sched, wid, out, max);
  uv_mutex_unlock(&s->lock);
  return n;
}

int dl_server_profile(dl_server *s, int wid, double since,
                      struct dl_prof *into) {
  int rc;
  uv_mutex_lock(&s->lock);
  rc = dl_sched_profile(s->sched, wid, since, into);
  uv_mutex_unlock(&s->lock);
  return rc;
}

const char *dl_server_dir(dl_server *s) { return s->dir; }

void dl_server_memory_fractions(dl_server *s, double out[4]) {
  memcpy(out, s->fractions, sizeof s->fractions);
}

void dl_server_versions(dl_server *s, const char **dlua, const char **lua) {
  *dlua = s->dlua_version;
  *lua = s->lua_version;
}

const char *dl_server_service_address(dl_server *s) {
  return s->svc_addr[0] ? s->svc_addr : NULL;
}

void dl_server_stats(dl_server *s, int *spawned, int *died) {
  uv_mutex_lock(&s->lock);
  *spawned = s->spawned;
  *died = s->died;
  uv_mutex_unlock(&s->lock);
}

const char *dl_server_listen_address(dl_server *s) {
  return s->listen_addr[0] ? s->listen_addr : NULL;
}

/*
** worker_driver.h -- drives the worker's I/O side (runtime/worker/dl_worker.c)
** from a byte string, for the fuzzer (fuzz_worker.c) and the C test that
** replays its findings (tests/c/worker/test_worker.c).
**
** The worker's parts share one state, W, declared with their functions
** in the worker's private header (runtime/worker/dl_worker_int.h); this
** driver sets up just enough of W: the maps, the lock, a libuv loop and a
** scheduler link on one end of a socketpair.  No executor thread runs:
** queued tasks stay queued, and are freed between inputs.  The worker's
** two seams are replaced: W.connect opens a socketpair instead of
** connecting to the path a PEER message names (the fuzzer must not reach
** real sockets), and W.map_shared maps a block of this process when the
** pid is WDRV_PID (one on a memfd for a ref that names a file, a private
** one read by its address for a ref that names none) and fails for any
** other pid, so found = 2 answers can succeed; a ref by address naming
** WDRV_REFUSE_PID fails as a read that a ptrace policy refuses (EPERM),
** so the worker's memory of a refusal is driven too.
**
** The input is a sequence of records: one byte saying what happens, two
** bytes of length, then that many bytes.  The byte modulo 5 is
**   0: the bytes are a frame from the scheduler (dl_w_on_sched_frame);
**   1: a frame from a peer this worker has connected to (dl_w_on_peer_frame),
**      the peer being the one numbered byte / 5 among those connected;
**   2: a frame from a peer that connected to this worker (dl_w_on_client_frame);
**   3: that peer's connection (as in 1) closes;
**   4: the loop turns once (writes go out, closed handles are freed).
** A frame is handed over as read_cb would: alone in the connection's input
** buffer, so dl_conn_take_input can take it.  A frame from the scheduler
** that makes the worker stop (malformed, or SHUTDOWN) ends the input, as
** the worker process would end.  Whatever the bytes, the worker must
** neither crash nor leak.
*/
#ifndef worker_driver_h
#define worker_driver_h

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dl_conn.h"
#include "dl_wire.h"

/* The pid that found = 2 answers name to be mapped from this process. */
#define WDRV_PID 4242
/* The pid whose memory may not be read (refs by address fail, EPERM). */
#define WDRV_REFUSE_PID 4343

#include "dl_worker_int.h"

/* Far ends of the socketpairs: drained by the driver, closed in reset. */
#define WDRV_MAXFD 64
static int wdrv_fds[WDRV_MAXFD];
static int wdrv_nfds;
static int wdrv_sched_fd = -1;
static dl_conn *wdrv_client; /* a peer connected to us, or NULL */
static dl_mem_ref wdrv_ref;  /* the block WDRV_PID answers lie in */
static int wdrv_have_ref;
static dl_mem_ref wdrv_aref; /* the same, for answers by address */
static int wdrv_have_aref;

/* Open c on one end of a new socketpair; 0 or a libuv-style error. */
static int wdrv_pair(dl_conn *c, int *far) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return -1;
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  if (dl_conn_open_fd(c, sv[0])) {
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  *far = sv[1];
  return 0;
}

/* Connect c to a new socketpair.  Past WDRV_MAXFD the far end is closed
   at once: the connection then fails later, as a refused connect does. */
static int wdrv_connect(dl_conn *c, const char *path) {
  int far;
  (void)path;
  if (wdrv_pair(c, &far)) return UV_ENOMEM;
  if (wdrv_nfds < WDRV_MAXFD) wdrv_fds[wdrv_nfds++] = far;
  else close(far);
  return 0;
}

static void wdrv_client_close(dl_conn *c) {
  if (wdrv_client == c) wdrv_client = NULL;
}

static const char *wdrv_shared_at_map(const dl_shared_at *sa) {
  dl_mem_ref ref;
  if (sa->ref.fd == DL_MEM_NOFD) { /* a block to read by its address */
    if (sa->pid == WDRV_REFUSE_PID) {
      errno = EPERM;
      return NULL;
    }
    if (!wdrv_have_aref || sa->pid != WDRV_PID ||
        sa->ref.size > wdrv_aref.size)
      return NULL;
    ref = wdrv_aref;
    ref.size = sa->ref.size; /* read no more than the block has */
    return dl_mem_map(getpid(), &ref);
  }
  if (!wdrv_have_ref || sa->pid != WDRV_PID || sa->ref.fd || sa->ref.ino)
    return NULL;
  ref = wdrv_ref;
  ref.size = sa->ref.size; /* dl_mem_map refuses more than the file has */
  return dl_mem_map(getpid(), &ref);
}

static void wdrv_drain(int fd) {
  char buf[65536];
  while (read(fd, buf, sizeof buf) > 0) {
  }
}

/* Turn the loop once and discard what the worker wrote. */
static void wdrv_turn(void) {
  int i;
  uv_run(&W.loop, UV_RUN_NOWAIT);
  wdrv_drain(wdrv_sched_fd);
  for (i = 0; i < wdrv_nfds; i++) wdrv_drain(wdrv_fds[i]);
}

/* Set up W once per process: what dlua_worker_main does, less the
   executor, the Lua state, the listener and the timers. */
static void wdrv_init(void) {
  static int done;
  char *blk;
  if (done) return;
  done = 1;
  signal(SIGPIPE, SIG_IGN);
  W.id = 1;
  snprintf(W.dir, sizeof W.dir, "/nonexistent");
  W.frac_target = 0.6;
  W.frac_spill = 0.7;
  W.frac_pause = 0.8;
  W.frac_terminate = 0.95;
  dl_w_state_init();
  W.connect = wdrv_connect;
  W.map_shared = wdrv_shared_at_map;
  uv_loop_init(&W.loop);
  dl_flusher_init(&W.fl, &W.loop);
  W.sched = dl_conn_new(&W.loop, &W.fl, dl_w_on_sched_frame, dl_w_on_sched_close, NULL);
  if (W.sched == NULL || wdrv_pair(W.sched, &wdrv_sched_fd)) abort();
  /* A big block of this process, filled with a pattern, that found = 2
     answers naming WDRV_PID are mapped from (kept for good). */
  blk = dl_realloc(NULL, DL_MEM_BIG);
  if (blk) {
    size_t i;
    for (i = 0; i < DL_MEM_BIG; i++) blk[i] = (char)(i * 7);
    wdrv_have_ref = dl_mem_share(blk, DL_MEM_BIG, &wdrv_ref) == 0;
  }
  /* The same pattern in a private block, shared by its address. */
  dl_mem_private(1);
  blk = dl_realloc(NULL, DL_MEM_BIG);
  dl_mem_private(0);
  if (blk) {
    size_t i;
    for (i = 0; i < DL_MEM_BIG; i++) blk[i] = (char)(i * 7);
    wdrv_have_aref = dl_mem_share(blk, DL_MEM_BIG, &wdrv_aref) == 0 &&
                     wdrv_aref.fd == DL_MEM_NOFD;
  }
}

/* Hand c one frame of n bytes, as read_cb would. */
static void wdrv_deliver(dl_conn *c, const char *p, size_t n) {
  dl_buf *in = &c->in;
  in->len = 0;
  if (dl_buf_u32(in, (uint32_t)n) || dl_buf_put(in, p, n)) return;
  c->on_frame(c, in->p + 4, n);
  if (c->stolen) c->stolen = 0; /* the worker owns those bytes now */
  else in->len = 0;
}

/* The peer numbered sel among those with a connection, or NULL. */
static peer *wdrv_peer(unsigned sel) {
  int i, n = 0;
  for (i = 0; i < W.npeers; i++)
    if (W.peers[i].conn) n++;
  if (n == 0) return NULL;
  sel %= (unsigned)n;
  for (i = 0; i < W.npeers; i++)
    if (W.peers[i].conn && sel-- == 0) return &W.peers[i];
  return NULL;
}

/* Free whatever the input left behind, as if the process had ended, and
   make W ready for the next input. */
static void wdrv_reset(void) {
  size_t i = 0;
  int k;
  void *v;
  wtask **ts = NULL, *t;
  size_t nts = 0;
  fetch *f;
  blob *b;
  /* Tasks waiting for inputs hold one reference in W.waiting, and one for
     each fetch they wait on. */
  while ((t = dl_map_next(&W.waiting, &i)) != NULL) {
    wtask **nt = realloc(ts, sizeof *nt * (nts + 1));
    if (nt == NULL) abort();
    ts = nt;
    ts[nts++] = t;
  }
  dl_map_free(&W.waiting);
  dl_map_init(&W.waiting);
  for (i = 0; i < nts; i++) dl_w_wtask_unref(ts[i]);
  nts = 0;
  i = 0;
  while ((f = dl_map_next(&W.fetches, &i)) != NULL) {
    for (k = 0; k < f->nwaiters; k++) dl_w_wtask_unref(f->waiters[k]);
    dl_free(f->key);
    dl_free(f->who);
    dl_free(f->waiters);
    dl_free(f);
  }
  free(ts);
  dl_map_free(&W.fetches);
  dl_map_init(&W.fetches);
  W.fetchq = W.fetchq_tail = NULL;
  W.nactive = 0;
  while ((t = W.qhead) != NULL) {
    W.qhead = t->next;
    dl_w_task_free(t);
  }
  W.qtail = NULL;
  i = 0;
  while ((b = dl_map_next(&W.store, &i)) != NULL) dl_w_blob_unref(b);
  dl_map_free(&W.store);
  dl_map_init(&W.store);
  W.managed = W.spilled = 0;
  i = 0;
  while ((v = dl_map_next(&W.fns, &i)) != NULL) dl_free(v);
  dl_map_free(&W.fns);
  dl_map_init(&W.fns);
  dl_w_fns_reap(); /* bytecode dropped by DL_M_FUNC_FREE */
  for (k = 0; k < W.nfrees; k++) dl_free(W.frees[k]);
  dl_free(W.frees);
  W.frees = NULL;
  W.nfrees = W.capfrees = 0;
  while (W.done_head) { /* tasks run but not reported */
    t = W.done_head;
    W.done_head = t->next;
    dl_w_task_free(t);
  }
  W.done_tail = NULL;
  for (k = 0; k < W.npeers; k++)
    if (W.peers[k].conn) dl_conn_close(W.peers[k].conn);
  dl_free(W.peers);
  W.peers = NULL;
  W.npeers = 0;
  if (wdrv_client) dl_conn_close(wdrv_client);
  wdrv_client = NULL;
  /* Closed handles are freed, and big writes finish, as the loop turns. */
  for (k = 0; k < 10000; k++) {
    wdrv_turn();
    if (k >= 2 && dl_conn_write_queue(W.sched) == 0) break;
  }
  for (k = 0; k < wdrv_nfds; k++) close(wdrv_fds[k]);
  wdrv_nfds = 0;
  uv_run(&W.loop, UV_RUN_NOWAIT);
  W.sched->out.len = 0;
  W.nextseq = 0;
  W.read_refused = 0;
}

/* Run the records in data[0..n) against the worker. */
static void wdrv_run(const unsigned char *data, size_t n) {
  size_t i = 0;
  wdrv_init();
  while (i + 3 <= n) {
    unsigned kind = data[i];
    size_t len = (size_t)data[i + 1] | (size_t)data[i + 2] << 8;
    const char *p = (const char *)data + i + 3;
    peer *pr;
    i += 3;
    if (len > n - i) len = n - i;
    i += len;
    switch (kind % 5) {
      case 0:
        wdrv_deliver(W.sched, p, len);
        break;
      case 1:
        if ((pr = wdrv_peer(kind / 5)) != NULL) wdrv_deliver(pr->conn, p, len);
        break;
      case 2:
        if (wdrv_client == NULL) { /* a new peer connects */
          wdrv_client = dl_conn_new(&W.loop, &W.fl, dl_w_on_client_frame,
                                    wdrv_client_close, NULL);
          if (wdrv_client && wdrv_connect(wdrv_client, NULL))
            dl_conn_close(wdrv_client);
        }
        if (wdrv_client) wdrv_deliver(wdrv_client, p, len);
        break;
      case 3:
        if ((pr = wdrv_peer(kind / 5)) != NULL) dl_conn_close(pr->conn);
        break;
      default:
        wdrv_turn();
    }
    if (W.loop.stop_flag) break; /* the worker process would end here */
  }
  wdrv_reset();
  W.loop.stop_flag = 0;
}

#endif

/*
** test_wgate.c -- C tests of a connection's gates (dl_conn.h).  The read
** gate: another thread reads the socket while the loop's thread does,
** takes some frames and leaves the rest, and every frame is handled once,
** in the order sent.  The write gate (dl_wgate): a second thread writes frames on a connection's socket
** while the loop's thread writes its own, big ones among them, on a
** socket with a small buffer (so that libuv queues and the gate must wait
** or refuse).  Some of the loop's frames are values of a few MB sent by
** reference (dl_conn_send_ref), which go out a chunk at a time through the
** bounce buffer with other frames queued behind them.  The reader at the other end finds every frame whole, each
** writer's frames in order, and nothing lost; a closed connection closes
** its gate.
*/
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <uv.h>

#include "dl_conn.h"
#include "tap.h"

#define NGATE 3000 /* frames the other thread writes through the gate */
#define NLOOP 300  /* frames the loop's thread writes */
#define MAXF 3000000 /* the biggest frame's bytes */

static uv_loop_t loop;
static dl_flusher fl;
static dl_conn *conn;
static dl_wgate gate;
static int loop_sent;
static uv_idle_t idle;

/* Frame bodies: a tag ('g' gate, 'l' loop), a 4-byte sequence number, and
   filler bytes that depend on both (checked by the reader). */
static size_t body(char *p, char tag, uint32_t seq) {
  size_t n, i;
  /* The loop's frames are big now and then (libuv then queues them). */
  n = tag == 'l' ? (seq % 7 == 0 ? 300000 : 40 + seq % 900)
                 : 5 + seq % 200;
  if (tag == 'l' && seq % 21 == 0) n = MAXF - seq; /* sent by reference */
  p[0] = tag;
  memcpy(p + 1, &seq, 4);
  for (i = 5; i < n; i++) p[i] = (char)(tag + seq + i);
  return n;
}

/* The length of the body at p (of at most n bytes), if its bytes are
   right, else 0. */
static size_t body_ok(const char *p, size_t n, char *tag, uint32_t *seq) {
  size_t i, len;
  static char want[MAXF];
  if (n < 5) return 0;
  *tag = p[0];
  memcpy(seq, p + 1, 4);
  if (*tag != 'g' && *tag != 'l') return 0;
  len = body(want, *tag, *seq);
  if (len > n) return 0;
  for (i = 5; i < len; i++)
    if (p[i] != want[i]) return 0;
  return len;
}

/* The reading end: reads frames until it has every one of both writers,
   checking each; the first fault found fails the test at once (the
   writers would wait for a reader forever). */
typedef struct reader {
  int fd;
  const char *bad;
} reader;

static int read_full(int fd, char *p, size_t n) {
  while (n) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static void reader_fail(reader *rd, const char *why) {
  rd->bad = why;
  fprintf(stderr, "# %s\n", why);
  exit(1);
}

static void reader_main(void *arg) {
  reader *rd = arg;
  uint32_t next_g = 0, next_l = 0;
  static char buf[MAXF];
  while (next_g < NGATE || next_l < NLOOP) {
    unsigned char hdr[4];
    size_t n, off, len;
    char tag;
    uint32_t seq;
    if (read_full(rd->fd, (char *)hdr, 4))
      reader_fail(rd, "the socket ended or stalled early");
    n = hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 |
        (size_t)hdr[3] << 24;
    if (n > sizeof buf || read_full(rd->fd, buf, n))
      reader_fail(rd, "a frame's length is wrong (frames interleaved)");
    for (off = 0; off < n; off += len) { /* its bodies, one or more */
      len = body_ok(buf + off, n - off, &tag, &seq);
      if (len == 0)
        reader_fail(rd, "a frame's bytes are wrong (frames interleaved)");
      if (off > 0 && tag == 'g')
        reader_fail(rd, "the gate's frames hold one body each");
      if (tag == 'g' ? seq != next_g++ : seq != next_l++)
        reader_fail(rd, "a writer's frames came out of order, or one was "
                    "lost");
    }
  }
}

/* The other thread: writes its frames through the gate, counting the
   times the gate said the loop's thread had bytes on their way. */
static int gate_ok, gate_busy;

static void gate_main(void *arg) {
  static char buf[300000];
  uint32_t seq;
  (void)arg;
  for (seq = 0; seq < NGATE; seq++) {
    size_t n = body(buf, 'g', seq);
    for (;;) {
      int rc;
      uv_mutex_lock(&gate.lock);
      rc = dl_wgate_write(&gate, buf, n);
      uv_mutex_unlock(&gate.lock);
      if (rc == 0) break;
      CHECK(rc == UV_EAGAIN);
      gate_busy++;
      usleep(50);
    }
    gate_ok++;
  }
}

static int refs_sent, refs_done;

static void ref_done(void *ud) {
  free(ud);
  refs_done++;
}

/* The loop's thread: a frame (or a few) per iteration until all are out. */
static void idle_cb(uv_idle_t *h) {
  int i;
  for (i = 0; i < 3 && loop_sent < NLOOP; i++, loop_sent++) {
    static char buf[MAXF];
    size_t n = body(buf, 'l', (uint32_t)loop_sent);
    if (n > 300000) { /* head copied, the rest borrowed until done */
      char *data = malloc(n - 5);
      CHECK(data != NULL);
      memcpy(data, buf + 5, n - 5);
      refs_sent++;
      CHECK(dl_conn_send_ref(conn, buf, 5, data, n - 5, ref_done, data) ==
            0);
      continue;
    }
    dl_buf_put(dl_conn_msg(conn), buf, n);
    dl_conn_flush(conn); /* one frame each, or several in one while a
                            frame sent by reference is going out */
  }
  if (loop_sent == NLOOP && dl_conn_write_queue(conn) == 0) {
    uv_idle_stop(h);
    uv_stop(&loop);
  }
}

static void on_frame(dl_conn *c, const char *p, size_t n) {
  (void)c;
  (void)p;
  (void)n;
}

static void test_frames_of_two_threads_never_interleave(void) {
  int sv[2], small = 4096;
  uv_thread_t rt, gt;
  reader rd;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
  CHECK(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
  { /* a reader lost in a broken stream stops, and says so */
    struct timeval tv = {5, 0};
    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  }
  CHECK(uv_loop_init(&loop) == 0);
  CHECK(dl_flusher_init(&fl, &loop) == 0);
  CHECK(dl_wgate_init(&gate) == 0);
  {
    char b[1] = {0};
    CHECK(dl_wgate_write(&gate, b, 1) == UV_EAGAIN); /* not open yet */
  }
  conn = dl_conn_new(&loop, &fl, on_frame, NULL, NULL);
  CHECK(conn != NULL && dl_conn_open_fd(conn, sv[0]) == 0);
  dl_conn_set_gate(conn, &gate);
  rd.fd = sv[1];
  rd.bad = NULL;
  CHECK(uv_thread_create(&rt, reader_main, &rd) == 0);
  CHECK(uv_thread_create(&gt, gate_main, NULL) == 0);
  CHECK(uv_idle_init(&loop, &idle) == 0);
  CHECK(uv_idle_start(&idle, idle_cb) == 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* until the loop's frames are out */
  CHECK(uv_thread_join(&rt) == 0);
  if (rd.bad) fprintf(stderr, "# %s\n", rd.bad);
  CHECK(rd.bad == NULL);
  CHECK(uv_thread_join(&gt) == 0);
  CHECK(gate_ok == NGATE);
  CHECK(refs_sent > 10 && refs_done == refs_sent);
  /* Both ways were taken: straight writes, and refusals while libuv held
     the loop's big frames. */
  fprintf(stderr, "# gate refused %d times\n", gate_busy);
  CHECK(gate_busy > 0);
  /* Closing the connection closes the gate before its descriptor. */
  dl_conn_close(conn);
  uv_close((uv_handle_t *)&idle, NULL);
  dl_flusher_close(&fl);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_mutex_lock(&gate.lock);
  CHECK(gate.fd == -1);
  {
    char b[1] = {0};
    CHECK(dl_wgate_write(&gate, b, 1) == UV_EAGAIN);
  }
  uv_mutex_unlock(&gate.lock);
  CHECK(uv_loop_close(&loop) == 0);
  close(sv[1]);
}

/* A socket whose peer is gone fails the write, and closes the gate. */
static void test_a_dead_peer_closes_the_gate(void) {
  int sv[2];
  dl_wgate g;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(dl_wgate_init(&g) == 0);
  g.fd = sv[0];
  close(sv[1]);
  uv_mutex_lock(&g.lock);
  CHECK(dl_wgate_write(&g, "x", 1) == UV_EPIPE); /* no SIGPIPE either */
  CHECK(g.fd == -1);
  uv_mutex_unlock(&g.lock);
  close(sv[0]);
}

/* Frames sent by reference to a peer that never reads: closing the
   connection hands each one back (done runs once each), the one being
   written and the one queued behind it. */
static void test_closing_hands_back_queued_frames(void) {
  int sv[2];
  char *a = calloc(1, 8u << 20), *b = calloc(1, 4u << 20);
  CHECK(a && b);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(uv_loop_init(&loop) == 0);
  CHECK(dl_flusher_init(&fl, &loop) == 0);
  conn = dl_conn_new(&loop, &fl, on_frame, NULL, NULL);
  CHECK(conn != NULL && dl_conn_open_fd(conn, sv[0]) == 0);
  refs_done = 0;
  CHECK(dl_conn_send_ref(conn, "A", 1, a, 8u << 20, ref_done, a) == 0);
  dl_put_key_msg(dl_conn_msg(conn), DL_M_RELEASE, "k", 1);
  CHECK(dl_conn_send_ref(conn, "B", 1, b, 4u << 20, ref_done, b) == 0);
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(refs_done == 0 && dl_conn_write_queue(conn) > (4u << 20));
  dl_conn_close(conn);
  dl_flusher_close(&fl);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(refs_done == 2);
  CHECK(uv_loop_close(&loop) == 0);
  close(sv[1]);
}

/* ------------------------------------------------------- read gate */

#define NREAD 20000 /* frames the writer sends */
static dl_rgate rgate;
static uv_async_t rwake;
static atomic_uint handled; /* frames handled, by either thread (gate lock) */
static int by_loop, by_other, out_of_order, rdone;

/* Body of frame seq: its number, then filler; every 97th is bigger than
   the other thread's read buffer, so frames are split across reads. */
static size_t rbody(char *p, uint32_t seq) {
  size_t n = seq % 97 == 0 ? 40000 + seq % 1000 : 4 + seq % 300, i;
  memcpy(p, &seq, 4);
  for (i = 4; i < n; i++) p[i] = (char)(seq + i);
  return n;
}

/* Count a frame as handled; both threads call it under the gate's lock. */
static void handle(const char *p, size_t n) {
  static char want[41000];
  uint32_t seq;
  CHECK(n >= 4);
  memcpy(&seq, p, 4);
  if (seq != handled || rbody(want, seq) != n || memcmp(want, p, n) != 0)
    out_of_order++;
  handled++;
}

static void rframe(dl_conn *c, const char *p, size_t n) {
  (void)c;
  handle(p, n);
  by_loop++;
  if (handled == NREAD) uv_stop(&loop); /* the last is never taken */
}

/* The other thread takes every third frame it finds (and small ones
   only), leaving the rest and all after it to the loop's thread. */
static int take(void *ud, const char *p, size_t n) {
  uint32_t seq;
  (void)ud;
  memcpy(&seq, p, 4);
  if (seq % 3 != 0 || n > 1000) return 0;
  handle(p, n);
  by_other++;
  return 1;
}

static void other_main(void *arg) {
  (void)arg;
  while (!rdone) {
    if (dl_rgate_read(&rgate, take, NULL)) uv_async_send(&rwake);
  }
}

static void writer_main(void *arg) {
  int fd = *(int *)arg;
  static char buf[41004];
  uint32_t seq;
  for (seq = 0; seq < NREAD; seq++) {
    size_t n = rbody(buf + 4, seq), off = 0;
    if (seq % 501 == 0) { /* a lone small frame on a quiet link: the
                             other thread, watching, usually has it first */
      uint64_t until = uv_hrtime() + 5000000000u;
      while (atomic_load(&handled) < seq && uv_hrtime() < until)
        sched_yield();
    }
    buf[0] = (char)(n & 0xff);
    buf[1] = (char)((n >> 8) & 0xff);
    buf[2] = (char)((n >> 16) & 0xff);
    buf[3] = 0;
    n += 4;
    while (off < n) { /* in two writes now and then: partial frames */
      size_t k = seq % 5 == 0 && off == 0 ? n / 2 + 1 : n - off;
      ssize_t w = write(fd, buf + off, k);
      CHECK(w > 0);
      off += (size_t)w;
    }
    if (seq % 16 == 0) usleep(50); /* a pause: the other thread's turn */
  }
}

static void rwake_cb(uv_async_t *h) {
  (void)h;
  if (conn) dl_conn_rgate_drain(conn);
}

static void rclosed(dl_conn *c) {
  (void)c;
  conn = NULL;
}

static void test_a_read_gate_keeps_frames_in_order(void) {
  int sv[2];
  uv_thread_t wt, ot;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(uv_loop_init(&loop) == 0);
  CHECK(dl_flusher_init(&fl, &loop) == 0);
  CHECK(dl_rgate_init(&rgate) == 0);
  CHECK(dl_rgate_read(&rgate, take, NULL) == 0); /* not open yet */
  CHECK(uv_async_init(&loop, &rwake, rwake_cb) == 0);
  conn = dl_conn_new(&loop, &fl, rframe, rclosed, NULL);
  CHECK(conn != NULL && dl_conn_open_fd(conn, sv[0]) == 0);
  dl_conn_set_rgate(conn, &rgate);
  CHECK(uv_thread_create(&wt, writer_main, &sv[1]) == 0);
  CHECK(uv_thread_create(&ot, other_main, NULL) == 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* until every frame is handled */
  rdone = 1;
  dl_conn_close(conn);
  uv_close((uv_handle_t *)&rwake, NULL);
  CHECK(uv_thread_join(&ot) == 0);
  CHECK(uv_thread_join(&wt) == 0);
  fprintf(stderr, "# loop's thread %d frames, the other %d\n", by_loop,
          by_other);
  CHECK(handled == NREAD);
  CHECK(out_of_order == 0);
  CHECK(by_loop > 0 && by_other > 0); /* both ways were taken */
  /* The connection closed its gate before its descriptor. */
  CHECK(rgate.fd == -1);
  CHECK(dl_rgate_read(&rgate, take, NULL) == 0);
  dl_flusher_close(&fl);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  dl_rgate_free(&rgate);
  close(sv[1]);
}

int main(void) {
  tap_run("a read gate keeps frames in order",
          test_a_read_gate_keeps_frames_in_order, 60);
  tap_run("closing hands back queued frames",
          test_closing_hands_back_queued_frames, 30);
  tap_run("frames of two threads never interleave",
          test_frames_of_two_threads_never_interleave, 60);
  RUN(test_a_dead_peer_closes_the_gate);
  return TAP_END();
}

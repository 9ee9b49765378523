/*
** test_tls.c -- C tests of TLS on authenticated TCP (runtime/wire/dl_tls.c
** and dl_tcp.c's TLS path, dl_conn.c's records) over real sockets on the
** loopback, with certificates made by dl_tlsgen: frames cross both ways
** between connections that took their sessions with their sockets (a 6 MB
** frame too, which fills the socket buffers, and a frame another thread
** writes through the write gate), and a relay
** in between sees neither those bytes nor the token's handshake in the
** clear; TLS on one side only, a certificate from another CA, a wrong
** token inside TLS and garbage sent to a TLS port are each refused with
** one log line on the server and a clear error on the dialler, and never
** reach the owner; a missing or unsafe TLS directory says which file.
** The records dlua seals and opens itself after the handshake are
** TLS 1.3's (either end may keep OpenSSL's), and one altered, lost or
** not a record at all ends the session with a clear error; the records'
** fuzzer's saved inputs are replayed.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dl_tlsgen.h"
#include "dl_conn.h"
#include "tcp_harness.h"
#include "tlsrec_driver.h"

static char dir_a[256], dir_b[256];
static const dl_tls_ctx *tls_a, *tls_b;

/* Two TLS directories with CAs of their own, made once per test. */
static void make_dirs(void) {
  char err[600];
  const char *tmp = getenv("TMPDIR");
  char base[200];
  snprintf(base, sizeof base, "%s/dlua-tls-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  CHECK(mkdtemp(base) != NULL);
  snprintf(dir_a, sizeof dir_a, "%s/a", base);
  snprintf(dir_b, sizeof dir_b, "%s/b", base);
  CHECK(dl_tlsgen(dir_a, err, sizeof err) == 0);
  CHECK(dl_tlsgen(dir_b, err, sizeof err) == 0);
  tls_a = dl_tls_ctx_shared(dir_a, err, sizeof err);
  tls_b = dl_tls_ctx_shared(dir_b, err, sizeof err);
  CHECK(tls_a && tls_b && tls_a != tls_b);
}

static void remove_dirs(void) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf \"$(dirname '%s')\"", dir_a);
  CHECK(system(cmd) == 0);
}

static int listen_any(int *port) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(listen(fd, 4) == 0);
  CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
  *port = ntohs(a.sin_port);
  return fd;
}

static size_t read_to_eof(int fd) {
  char buf[512];
  size_t total = 0;
  ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0) total += (size_t)r;
  return total;
}

/* A relay between the dialler and the server that keeps every byte it
   passes (both ways), to look at what the wire carries. */
typedef struct relay {
  int lfd, to_port;
  char *seen;
  size_t nseen, cap;
} relay;

static void *relay_main(void *arg) {
  relay *r = arg;
  int a = accept(r->lfd, NULL, NULL);
  int b = raw_connect("127.0.0.1", r->to_port);
  struct pollfd p[2];
  char buf[65536];
  int open = 2;
  CHECK(a >= 0);
  p[0].fd = a;
  p[1].fd = b;
  p[0].events = p[1].events = POLLIN;
  while (open == 2 && poll(p, 2, 20000) > 0) {
    int i;
    for (i = 0; i < 2; i++) {
      ssize_t n;
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      n = read(p[i].fd, buf, sizeof buf);
      if (n <= 0) {
        open = 1;
        break;
      }
      if (r->nseen + (size_t)n > r->cap) {
        r->cap = (r->nseen + (size_t)n) * 2;
        r->seen = realloc(r->seen, r->cap);
        CHECK(r->seen != NULL);
      }
      memcpy(r->seen + r->nseen, buf, (size_t)n);
      r->nseen += (size_t)n;
      CHECK(write(p[1 - i].fd, buf, (size_t)n) == n);
    }
  }
  close(a);
  close(b);
  return NULL;
}

static int contains(const char *hay, size_t n, const char *needle) {
  size_t k = strlen(needle), i;
  for (i = 0; i + k <= n; i++)
    if (memcmp(hay + i, needle, k) == 0) return 1;
  return 0;
}

/* What a connection's owner saw: its frames, in order, and its end. */
typedef struct seen {
  int frames, closed;
  char *last; /* the last frame's bytes */
  size_t nlast;
  char order[16]; /* each frame's first byte */
} seen;

static void on_frame(dl_conn *cn, const char *p, size_t n) {
  seen *w = cn->data;
  if (w->frames < (int)sizeof w->order - 1) w->order[w->frames] = n ? p[0] : '?';
  w->frames++;
  free(w->last);
  w->last = malloc(n ? n : 1);
  CHECK(w->last != NULL);
  memcpy(w->last, p, n);
  w->nlast = n;
}

static void on_conn_close(dl_conn *cn) { ((seen *)cn->data)->closed++; }

static void big_done(void *ud) { (*(int *)ud)++; }

static void say(dl_conn *cn, const char *s) {
  dl_buf_put(dl_conn_msg(cn), s, strlen(s));
}

/* Another thread writes a frame through a TLS connection's write gate. */
static void *gate_main(void *arg) {
  dl_wgate *g = arg;
  uv_mutex_lock(&g->lock);
  CHECK(dl_wgate_write(g, "g-gated", 7) == 0);
  uv_mutex_unlock(&g->lock);
  return NULL;
}

static void test_bytes_cross_encrypted(void) {
  ctx c;
  dl_tcp_opts o;
  relay r;
  pthread_t th;
  seen sw, cw;
  dl_conn *sc, *cc;
  size_t big = 6u << 20, i;
  int sent = 0;
  char *blob = malloc(big);
  make_dirs();
  setup(&c, "127.0.0.1", tls_a, 0, 1);
  memset(&r, 0, sizeof r);
  memset(&sw, 0, sizeof sw);
  memset(&cw, 0, sizeof cw);
  r.to_port = dl_tcp_server_port(c.srv);
  {
    int rport;
    r.lfd = listen_any(&rport);
  }
  {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    CHECK(getsockname(r.lfd, (struct sockaddr *)&a, &len) == 0);
    o = opts_for(&c, &tok_a, tls_a);
    CHECK(pthread_create(&th, NULL, relay_main, &r) == 0);
    CHECK(dl_tcp_dial(&c.loop, "127.0.0.1", ntohs(a.sin_port), &o, 5000,
                      on_dial, &c) == 0);
  }
  run_until(&c, &c.accepted, 1, &c.dialled, 1, 20000);
  CHECK(c.nlog == 0 && c.failed == 0);
  /* Both sessions wait for the connections that adopt their sockets. */
  CHECK(dl_tls_waiting() == 2);
  sc = dl_conn_new(&c.loop, NULL, on_frame, on_conn_close, &sw);
  cc = dl_conn_new(&c.loop, NULL, on_frame, on_conn_close, &cw);
  CHECK(sc && cc);
  CHECK(dl_conn_open_fd(sc, c.sfd) == 0 && dl_conn_open_fd(cc, c.cfd) == 0);
  c.sfd = c.cfd = -1; /* the connections' now */
  CHECK(dl_tls_waiting() == 0 && sc->tls && cc->tls);
  say(cc, "secret-hello");
  dl_conn_flush(cc);
  run_until(&c, &sw.frames, 1, &sw.frames, 1, 20000);
  CHECK(sw.nlast == 12 && memcmp(sw.last, "secret-hello", 12) == 0);
  say(sc, "secret-world");
  dl_conn_flush(sc);
  run_until(&c, &cw.frames, 1, &cw.frames, 1, 20000);
  CHECK(cw.nlast == 12 && memcmp(cw.last, "secret-world", 12) == 0);
  /* 6 MB in one frame, encrypted straight from the value in chunks,
     between two small frames: the one queued after it waits for it, and
     every byte arrives, in order. */
  for (i = 0; i < big; i++) blob[i] = (char)('a' + i % 23);
  say(cc, "1-before");
  CHECK(dl_conn_send_ref(cc, "B", 1, blob, big, big_done, &sent) == 0);
  say(cc, "2-after");
  dl_conn_flush(cc);
  run_until(&c, &sw.frames, 4, &sent, 1, 20000);
  CHECK(memcmp(sw.order, "s1B2", 4) == 0);
  CHECK(sw.nlast == 7 && memcmp(sw.last, "2-after", 7) == 0);
  /* A frame another thread encrypts and writes through the write gate
     (the session shared under the gate's lock), then one of the loop's:
     both arrive, in that order. */
  {
    dl_wgate g;
    pthread_t gt;
    CHECK(dl_wgate_init(&g) == 0);
    dl_conn_set_gate(cc, &g);
    CHECK(g.fd >= 0 && g.tls != NULL);
    CHECK(pthread_create(&gt, NULL, gate_main, &g) == 0);
    pthread_join(gt, NULL);
    say(cc, "3-loop");
    dl_conn_flush(cc);
    run_until(&c, &sw.frames, 6, &sw.frames, 6, 20000);
    CHECK(memcmp(sw.order, "s1B2g3", 6) == 0);
    /* The owner closes: the peer sees the end of the stream. */
    dl_conn_close(cc);
    run_until(&c, &sw.closed, 1, &cw.closed, 1, 20000); /* both freed */
    CHECK(g.fd == -1 && g.tls == NULL); /* closed before the session went */
    uv_mutex_destroy(&g.lock);
  }
  pthread_join(th, NULL);
  /* The wire carried the TLS hello in the clear, then nothing readable:
     not the owners' bytes, not the dlua handshake's magic. */
  CHECK(r.nseen > big);
  CHECK(memcmp(r.seen, DL_AUTH_TLS_HELLO, DL_AUTH_TLS_HELLO_LEN) == 0);
  CHECK(!contains(r.seen, r.nseen, "secret-hello"));
  CHECK(!contains(r.seen, r.nseen, "secret-world"));
  CHECK(!contains(r.seen, r.nseen, "DLUAAUTH"));
  CHECK(!contains(r.seen, r.nseen, "abcdefghijklmnopqrstuvw"));
  close(r.lfd);
  free(r.seen);
  free(sw.last);
  free(cw.last);
  teardown(&c);
  free(blob);
  remove_dirs();
}

static dl_conn *greeter; /* the server's side of the next test */
static seen greeted;

/* The owner of an accepted socket writes at once, as a scheduler welcomes
   a worker: its first records may reach the dialler with the handshake's
   last bytes, inside the session already. */
static void on_accept_greet(dl_tcp_server *s, int fd, const char *peer,
                            void *d) {
  ctx *c = d;
  (void)s;
  (void)peer;
  c->accepted++;
  greeter = dl_conn_new(&c->loop, NULL, on_frame, on_conn_close, &greeted);
  CHECK(greeter != NULL && dl_conn_open_fd(greeter, fd) == 0);
  say(greeter, "welcome");
  dl_conn_flush(greeter);
}

static void test_a_frame_right_behind_the_handshake(void) {
  ctx c;
  dl_tcp_opts o;
  seen cw;
  dl_conn *cc;
  char err[256];
  int round;
  make_dirs();
  for (round = 0; round < 20; round++) {
    memset(&cw, 0, sizeof cw);
    memset(&greeted, 0, sizeof greeted);
    memset(&c, 0, sizeof c);
    c.sfd = c.cfd = -1;
    c.keep = 1;
    CHECK(uv_loop_init(&c.loop) == 0);
    uv_timer_init(&c.loop, &c.tick);
    uv_timer_start(&c.tick, tick_cb, 10, 10);
    CHECK(dl_token_set(&tok_a, "token-aaaaaaaaaaaaaaaaaaaa", 26) == 0);
    o = opts_for(&c, &tok_a, tls_a);
    CHECK(dl_tcp_listen(&c.srv, &c.loop, "127.0.0.1", 0, &o, on_accept_greet,
                        &c, err, sizeof err) == 0);
    CHECK(dl_tcp_dial(&c.loop, "127.0.0.1", dl_tcp_server_port(c.srv), &o,
                      5000, on_dial, &c) == 0);
    run_until(&c, &c.accepted, 1, &c.dialled, 1, 20000);
    cc = dl_conn_new(&c.loop, NULL, on_frame, on_conn_close, &cw);
    CHECK(cc != NULL && dl_conn_open_fd(cc, c.cfd) == 0);
    c.cfd = -1;
    run_until(&c, &cw.frames, 1, &cw.frames, 1, 20000);
    CHECK(cw.nlast == 7 && memcmp(cw.last, "welcome", 7) == 0);
    dl_conn_close(cc);
    run_until(&c, &greeted.closed, 1, &cw.closed, 1, 20000);
    free(cw.last);
    teardown(&c);
  }
  remove_dirs();
}

/* A session waits for its socket's owner; a socket closed before that,
   whose number a new socket takes, does not inherit it. */
static void test_a_session_goes_with_its_socket_only(void) {
  dl_tls t;
  dl_tls *got;
  char err[300];
  int fd, fd2;
  make_dirs();
  CHECK(dl_tls_waiting() == 0);
  fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0 && dl_tls_begin(&t, tls_a, 0, err, sizeof err) == 0);
  CHECK(dl_tls_hand(fd, &t, err, sizeof err) == 0 && t.ssl == NULL);
  CHECK(dl_tls_waiting() == 1);
  CHECK(dl_tls_claim(fd + 1000) == NULL); /* not that socket's */
  got = dl_tls_claim(fd);
  CHECK(got != NULL && got->ssl != NULL);
  CHECK(dl_tls_claim(fd) == NULL && dl_tls_waiting() == 0); /* taken once */
  dl_tls_free(got);
  /* handed, then the socket closed unclaimed and its number reused */
  CHECK(dl_tls_begin(&t, tls_a, 1, err, sizeof err) == 0);
  CHECK(dl_tls_hand(fd, &t, err, sizeof err) == 0);
  close(fd);
  fd2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(fd2 == fd); /* the lowest free number */
  CHECK(dl_tls_claim(fd2) == NULL);
  CHECK(dl_tls_waiting() == 0);
  close(fd2);
  remove_dirs();
}

static void test_tls_client_plain_server(void) {
  ctx c;
  dl_tcp_opts o;
  make_dirs();
  setup(&c, "127.0.0.1", NULL, 0, 1);
  o = opts_for(&c, &tok_a, tls_a);
  CHECK(dl_tcp_dial(&c.loop, "127.0.0.1", dl_tcp_server_port(c.srv), &o, 5000,
                    on_dial, &c) == 0);
  run_until(&c, &c.failed, 1, &c.nlog, 1, 20000);
  CHECK(c.accepted == 0 && c.dialled == 0);
  CHECK(strstr(c.last_err, "does not use TLS"));
  CHECK(strstr(c.log[0], "closed before authenticating"));
  teardown(&c);
  remove_dirs();
}

static void test_plain_client_tls_server(void) {
  ctx c;
  dl_tcp_opts o;
  make_dirs();
  setup(&c, "127.0.0.1", tls_a, 0, 1);
  o = opts_for(&c, &tok_a, NULL);
  CHECK(dl_tcp_dial(&c.loop, "127.0.0.1", dl_tcp_server_port(c.srv), &o, 5000,
                    on_dial, &c) == 0);
  run_until(&c, &c.failed, 1, &c.nlog, 1, 20000);
  CHECK(c.accepted == 0 && c.dialled == 0);
  CHECK(strstr(c.last_err, "the scheduler uses TLS"));
  CHECK(strstr(c.log[0], "closed before its TLS handshake"));
  teardown(&c);
  remove_dirs();
}

static void test_certificate_of_another_ca(void) {
  ctx c;
  dl_tcp_opts o;
  make_dirs();
  setup(&c, "127.0.0.1", tls_a, 0, 1);
  o = opts_for(&c, &tok_a, tls_b);
  CHECK(dl_tcp_dial(&c.loop, "127.0.0.1", dl_tcp_server_port(c.srv), &o, 5000,
                    on_dial, &c) == 0);
  run_until(&c, &c.failed, 1, &c.nlog, 1, 20000);
  CHECK(c.accepted == 0 && c.dialled == 0 && c.nlog == 1);
  /* Each side refuses the other's certificate and says why. */
  CHECK(strstr(c.last_err, "certificate"));
  CHECK(strstr(c.log[0], "refused connection from 127.0.0.1:") ||
        strstr(c.log[0], "closed during its TLS handshake"));
  teardown(&c);
  remove_dirs();
}

static void test_wrong_token_inside_tls(void) {
  ctx c;
  dl_tcp_opts o;
  make_dirs();
  setup(&c, "127.0.0.1", tls_a, 0, 1);
  o = opts_for(&c, &tok_b, tls_a);
  CHECK(dl_tcp_dial(&c.loop, "127.0.0.1", dl_tcp_server_port(c.srv), &o, 5000,
                    on_dial, &c) == 0);
  run_until(&c, &c.failed, 1, &c.nlog, 1, 20000);
  CHECK(c.accepted == 0 && c.dialled == 0 && c.nlog == 1);
  CHECK(strstr(c.log[0], "wrong token"));
  CHECK(c.last_code == UV_EACCES && strstr(c.last_err, "wrong"));
  teardown(&c);
  remove_dirs();
}

static void test_garbage_to_a_tls_port(void) {
  ctx c;
  int fd;
  static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  make_dirs();
  setup(&c, "127.0.0.1", tls_a, 0, 1);
  fd = raw_connect("127.0.0.1", dl_tcp_server_port(c.srv));
  CHECK(write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1));
  run_until(&c, &c.nlog, 1, &c.nlog, 1, 20000);
  CHECK(strstr(c.log[0], "refused connection from 127.0.0.1:"));
  CHECK(strstr(c.log[0], "TLS"));
  CHECK(read_to_eof(fd) >= DL_AUTH_TLS_HELLO_LEN); /* the hello, an alert */
  close(fd);
  CHECK(c.accepted == 0 && c.nlog == 1 && dl_tcp_server_pending(c.srv) == 0);
  teardown(&c);
  remove_dirs();
}

static void test_slow_tls_handshake_is_dropped(void) {
  ctx c;
  int fd;
  make_dirs();
  setup(&c, "127.0.0.1", tls_a, 300, 1);
  fd = raw_connect("127.0.0.1", dl_tcp_server_port(c.srv));
  CHECK(write(fd, "\x16\x03\x01", 3) == 3); /* a TLS record begun, no more */
  run_until(&c, &c.nlog, 1, &c.nlog, 1, 20000);
  CHECK(strstr(c.log[0], "no handshake within 300 ms"));
  read_to_eof(fd);
  close(fd);
  CHECK(c.accepted == 0 && dl_tcp_server_pending(c.srv) == 0);
  teardown(&c);
  remove_dirs();
}

static void test_bad_tls_dirs_say_which_file(void) {
  dl_tls_ctx *x = NULL;
  char err[600], path[400];
  make_dirs();
  CHECK(dl_tls_ctx_load(&x, "/nonexistent/dlua-tls", err, sizeof err) != 0);
  CHECK(x == NULL && strstr(err, "/nonexistent/dlua-tls") &&
        strstr(err, "tls-gen"));
  snprintf(path, sizeof path, "%s/key.pem", dir_a);
  CHECK(chmod(path, 0644) == 0);
  CHECK(dl_tls_ctx_load(&x, dir_a, err, sizeof err) != 0);
  CHECK(strstr(err, "key.pem") && strstr(err, "chmod 600"));
  CHECK(chmod(path, 0600) == 0);
  snprintf(path, sizeof path, "%s/cert.pem", dir_a);
  CHECK(unlink(path) == 0);
  CHECK(dl_tls_ctx_load(&x, dir_a, err, sizeof err) != 0);
  CHECK(strstr(err, "cert.pem"));
  /* a key that is not the certificate's */
  {
    char cmd[900];
    snprintf(cmd, sizeof cmd, "cp '%s/cert.pem' '%s/cert.pem'", dir_b, dir_a);
    CHECK(system(cmd) == 0);
  }
  CHECK(dl_tls_ctx_load(&x, dir_a, err, sizeof err) != 0);
  fprintf(stderr, "# %s\n", err);
  CHECK(strstr(err, "key.pem is not the key of cert.pem") || strstr(err, "bad key.pem"));
  /* tls-gen never overwrites */
  CHECK(dl_tlsgen(dir_b, err, sizeof err) != 0 && strstr(err, "already exists"));
  remove_dirs();
}

/* Two sessions joined in memory, no socket: what one has for the peer
   goes to the other. */
static void pump(dl_tls *from, dl_tls *to) {
  dl_buf b;
  dl_buf_init(&b);
  CHECK(dl_tls_pull(from, &b) == 0);
  if (b.len) CHECK(dl_tls_push(to, b.p, b.len) == 0);
  dl_buf_free(&b);
}

/* Begin a client (own_c: with records of dlua's own) and a server
   (own_s) on tls_a and run their handshakes to the end. */
static void shake(dl_tls *c, int own_c, dl_tls *s, int own_s) {
  char err[300];
  int i, dc = 0, ds = 0;
  dl_tls_records_own = own_c;
  CHECK(dl_tls_begin(c, tls_a, 0, err, sizeof err) == 0);
  dl_tls_records_own = own_s;
  CHECK(dl_tls_begin(s, tls_a, 1, err, sizeof err) == 0);
  dl_tls_records_own = 1;
  for (i = 0; i < 20 && !(dc && ds); i++) {
    int rc = dc ? DL_TLS_DONE : dl_tls_handshake(c, err, sizeof err);
    CHECK(rc != DL_TLS_FAIL);
    dc = rc == DL_TLS_DONE;
    pump(c, s);
    rc = ds ? DL_TLS_DONE : dl_tls_handshake(s, err, sizeof err);
    CHECK(rc != DL_TLS_FAIL);
    ds = rc == DL_TLS_DONE;
    pump(s, c);
  }
  CHECK(dc && ds);
  CHECK(dl_tls_own(c) == own_c && dl_tls_own(s) == own_s);
}

/* Send the n bytes at p from one session to the other, its records lent
   step bytes at a time (so that records straddle the loans) and read
   with room bytes at a time; they must arrive whole, in order. */
static void cross(dl_tls *from, dl_tls *to, const char *p, size_t n,
                  size_t step, size_t room) {
  dl_buf rec;
  char err[300], *got = malloc(n + room);
  size_t off = 0, k = 0;
  CHECK(got != NULL);
  dl_buf_init(&rec);
  CHECK(dl_tls_write(from, p, n) == 0 && dl_tls_pull(from, &rec) == 0);
  CHECK(rec.len > n); /* sealed: a header and a tag more per record */
  CHECK(!contains(rec.p, rec.len, "abcdefghijklmnopqrstuvw"));
  while (off < rec.len) {
    size_t w = rec.len - off < step ? rec.len - off : step;
    long r;
    dl_tls_lend(to, rec.p + off, w);
    while ((r = dl_tls_read(to, got + k, room, err, sizeof err)) > 0)
      k += (size_t)r;
    CHECK(r == 0);
    CHECK(dl_tls_unlend(to) == 0);
    off += w;
  }
  CHECK(k == n && memcmp(got, p, n) == 0);
  dl_buf_free(&rec);
  free(got);
}

/* Records dlua seals and opens itself (after the handshake) are TLS 1.3's:
   either end may keep OpenSSL's record layer, and bytes cross both ways,
   whatever the loans' and the reads' sizes. */
static void test_records_of_our_own_are_tls(void) {
  size_t n = 100000, i;
  char *p = malloc(n);
  int own_c, own_s;
  CHECK(p != NULL);
  for (i = 0; i < n; i++) p[i] = (char)('a' + i % 23);
  make_dirs();
  for (own_c = 0; own_c < 2; own_c++)
    for (own_s = 0; own_s < 2; own_s++) {
      dl_tls c, s;
      shake(&c, own_c, &s, own_s);
      cross(&c, &s, p, n, 65536, 1u << 20); /* big loans, big reads */
      cross(&s, &c, p, n, 1000, 100);        /* records split, small reads */
      cross(&c, &s, p, 1, 1, 1);             /* one byte at a time */
      cross(&s, &c, p, n, 16406, 16385);     /* a record a loan */
      dl_tls_end(&c);
      dl_tls_end(&s);
    }
  remove_dirs();
  free(p);
}

/* A record altered on the way, or bytes that are not records, end the
   session with a clear error, on every read from then on. */
static void test_an_altered_record_is_refused(void) {
  dl_tls c, s;
  dl_buf rec;
  char err[300], buf[64];
  make_dirs();
  shake(&c, 1, &s, 1);
  dl_buf_init(&rec);
  CHECK(dl_tls_write(&c, "secret-hello", 12) == 0);
  CHECK(dl_tls_pull(&c, &rec) == 0 && rec.len == 5 + 12 + 1 + 16);
  rec.p[10] ^= 1;
  CHECK(dl_tls_push(&s, rec.p, rec.len) == 0);
  err[0] = '\0';
  CHECK(dl_tls_read(&s, buf, sizeof buf, err, sizeof err) == -1);
  CHECK(strstr(err, "does not authenticate") != NULL);
  err[0] = '\0';
  CHECK(dl_tls_read(&s, buf, sizeof buf, err, sizeof err) == -1);
  CHECK(strstr(err, "does not authenticate") != NULL);
  dl_tls_end(&s);
  dl_tls_end(&c);
  /* A record lost on the way: the next one is out of order. */
  shake(&c, 1, &s, 1);
  rec.len = 0;
  CHECK(dl_tls_write(&c, "one", 3) == 0 && dl_tls_write(&c, "two", 3) == 0);
  CHECK(dl_tls_pull(&c, &rec) == 0 && rec.len == 2 * (5 + 3 + 1 + 16));
  CHECK(dl_tls_push(&s, rec.p + rec.len / 2, rec.len / 2) == 0);
  CHECK(dl_tls_read(&s, buf, sizeof buf, err, sizeof err) == -1);
  CHECK(strstr(err, "does not authenticate") != NULL);
  dl_tls_end(&s);
  dl_tls_end(&c);
  /* Plain text where records should be. */
  shake(&c, 1, &s, 1);
  CHECK(dl_tls_push(&s, "GET / HTTP/1.1\r\n\r\n", 18) == 0);
  CHECK(dl_tls_read(&s, buf, sizeof buf, err, sizeof err) == -1);
  CHECK(strstr(err, "not TLS 1.3") != NULL);
  dl_tls_end(&s);
  dl_tls_end(&c);
  dl_buf_free(&rec);
  remove_dirs();
}

static void tlsrec_one(const unsigned char *p, size_t n, void *ud) {
  (void)ud;
  tlsrec_drive(p, n);
}

/* Every input the records' fuzzer saved (tests/fuzz/regressions-tlsrec)
   runs as it did there (tlsrec_driver.h says what is checked). */
static void test_replay_fuzz_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-tlsrec", tlsrec_one, NULL) > 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  RUN(test_bytes_cross_encrypted);
  RUN(test_a_session_goes_with_its_socket_only);
  RUN(test_a_frame_right_behind_the_handshake);
  RUN(test_tls_client_plain_server);
  RUN(test_plain_client_tls_server);
  RUN(test_certificate_of_another_ca);
  RUN(test_wrong_token_inside_tls);
  RUN(test_garbage_to_a_tls_port);
  RUN(test_slow_tls_handshake_is_dropped);
  RUN(test_bad_tls_dirs_say_which_file);
  RUN(test_records_of_our_own_are_tls);
  RUN(test_an_altered_record_is_refused);
  RUN(test_replay_fuzz_regressions);
  return TAP_END();
}

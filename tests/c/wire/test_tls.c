/*
** test_tls.c -- C tests of TLS on authenticated TCP (runtime/wire/dl_tls.c
** and dl_tcp.c's TLS path) over real sockets on the loopback, with
** certificates made by dl_tlsgen: bytes cross both ways through the TLS
** thread (a 6 MB burst too, which fills the socket buffers), and a relay
** in between sees neither those bytes nor the token's handshake in the
** clear; TLS on one side only, a certificate from another CA, a wrong
** token inside TLS and garbage sent to a TLS port are each refused with
** one log line on the server and a clear error on the dialler, and never
** reach the owner; a missing or unsafe TLS directory says which file.
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
#include "tcp_harness.h"

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

static void test_bytes_cross_encrypted(void) {
  ctx c;
  dl_tcp_opts o;
  relay r;
  pthread_t th;
  char buf[64];
  size_t big = 6u << 20, got = 0;
  char *blob = malloc(big), *back = malloc(big);
  make_dirs();
  setup(&c, "127.0.0.1", tls_a, 0, 1);
  memset(&r, 0, sizeof r);
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
  CHECK(dl_tls_live() == 2); /* both ends, carried by this process's thread */
  blocking(c.sfd);
  blocking(c.cfd);
  CHECK(write(c.cfd, "secret-hello", 12) == 12);
  CHECK(read(c.sfd, buf, sizeof buf) == 12 && memcmp(buf, "secret-hello", 12) == 0);
  CHECK(write(c.sfd, "secret-world", 12) == 12);
  CHECK(read(c.cfd, buf, sizeof buf) == 12 && memcmp(buf, "secret-world", 12) == 0);
  /* 6 MB one way while nobody reads yet: the TLS thread's queues fill
     and it stops reading until they drain; every byte arrives, in order. */
  {
    size_t i;
    for (i = 0; i < big; i++) blob[i] = (char)('a' + i % 23);
  }
  {
    size_t off = 0;
    while (off < big || got < big) {
      struct pollfd p[2] = {{c.cfd, off < big ? POLLOUT : 0, 0},
                            {c.sfd, POLLIN, 0}};
      CHECK(poll(p, 2, 20000) > 0);
      if (p[0].revents & POLLOUT) {
        ssize_t n = write(c.cfd, blob + off, big - off > 65536 ? 65536
                                                               : big - off);
        CHECK(n > 0);
        off += (size_t)n;
      }
      if (p[1].revents & POLLIN) {
        ssize_t n = read(c.sfd, back + got, big - got);
        CHECK(n > 0);
        got += (size_t)n;
      }
    }
  }
  CHECK(memcmp(blob, back, big) == 0);
  /* The owner closes: the peer sees the end of the stream. */
  close(c.cfd);
  c.cfd = -1;
  CHECK(read(c.sfd, buf, sizeof buf) == 0);
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
  free(blob);
  free(back);
  teardown(&c);
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

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  RUN(test_bytes_cross_encrypted);
  RUN(test_tls_client_plain_server);
  RUN(test_plain_client_tls_server);
  RUN(test_certificate_of_another_ca);
  RUN(test_wrong_token_inside_tls);
  RUN(test_garbage_to_a_tls_port);
  RUN(test_slow_tls_handshake_is_dropped);
  RUN(test_bad_tls_dirs_say_which_file);
  return TAP_END();
}

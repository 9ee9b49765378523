/*
** test_tcp.c -- C tests of authenticated TCP (runtime/wire/dl_tcp.c) over
** real sockets on the loopback: bytes cross an authenticated connection
** (IPv4 and IPv6), a wrong token, another wire version, garbage and a
** slow-loris peer are refused with one log line and never reach the
** owner, an unreachable or silent server gives a clear error within the
** dial's time limit, a port in use says so, and 1,000 connections opened
** at once all authenticate.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tcp_harness.h"

/* Read from a raw socket until EOF; returns the bytes read. */
static size_t read_to_eof(int fd) {
  char buf[512];
  size_t total = 0;
  ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0) total += (size_t)r;
  CHECK(r == 0);
  return total;
}

static void bytes_cross(const char *host) {
  ctx c;
  dl_tcp_opts o;
  char buf[16];
  setup(&c, host, NULL, 0, 0);
  c.keep = 1;
  o = opts_for(&c, &tok_a, NULL);
  CHECK(dl_tcp_dial(&c.loop, host, dl_tcp_server_port(c.srv), &o, 5000,
                    on_dial, &c) == 0);
  run_until(&c, &c.accepted, 1, &c.dialled, 1, 20000);
  CHECK(c.nlog == 0 && c.failed == 0);
  CHECK(dl_tcp_server_pending(c.srv) == 0);
  blocking(c.sfd);
  blocking(c.cfd);
  /* The first bytes after the handshake are the owner's, both ways. */
  CHECK(write(c.cfd, "hello", 5) == 5);
  CHECK(read(c.sfd, buf, sizeof buf) == 5 && memcmp(buf, "hello", 5) == 0);
  CHECK(write(c.sfd, "world!", 6) == 6);
  CHECK(read(c.cfd, buf, sizeof buf) == 6 && memcmp(buf, "world!", 6) == 0);
  teardown(&c);
}

static void test_bytes_cross_ipv4(void) { bytes_cross("127.0.0.1"); }

static void test_bytes_cross_ipv6(void) {
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof a);
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    printf("# no IPv6 loopback here; skipped\n");
    if (fd >= 0) close(fd);
    return;
  }
  close(fd);
  bytes_cross("::1");
}

static void test_wrong_token_is_refused_and_logged(void) {
  ctx c;
  dl_tcp_opts o;
  setup(&c, "127.0.0.1", NULL, 0, 0);
  o = opts_for(&c, &tok_b, NULL);
  CHECK(dl_tcp_dial(&c.loop, "127.0.0.1", dl_tcp_server_port(c.srv), &o, 5000,
                    on_dial, &c) == 0);
  run_until(&c, &c.failed, 1, &c.nlog, 1, 20000);
  CHECK(c.accepted == 0 && c.dialled == 0 && c.nlog == 1);
  CHECK(strstr(c.log[0], "refused connection from 127.0.0.1:"));
  CHECK(strstr(c.log[0], ": wrong token"));
  CHECK(c.last_code == UV_EACCES);
  CHECK(strstr(c.last_err, "tcp://127.0.0.1:") && strstr(c.last_err, "wrong"));
  teardown(&c);
}

static void test_other_version_is_refused_naming_both(void) {
  ctx c;
  dl_tcp_opts o;
  setup(&c, "127.0.0.1", NULL, 0, 0);
  o = opts_for(&c, &tok_a, NULL);
  o.wire = DL_AUTH_WIRE + 1;
  o.version = "9.9.9";
  CHECK(dl_tcp_dial(&c.loop, "127.0.0.1", dl_tcp_server_port(c.srv), &o, 5000,
                    on_dial, &c) == 0);
  run_until(&c, &c.failed, 1, &c.nlog, 1, 20000);
  CHECK(c.accepted == 0 && c.nlog == 1);
  CHECK(strstr(c.log[0], "dlua 9.9.9") && strstr(c.log[0], "0.1.0"));
  CHECK(c.last_code == UV_EPROTONOSUPPORT);
  CHECK(strstr(c.last_err, "dlua 0.1.0") && strstr(c.last_err, "9.9.9"));
  teardown(&c);
}

static void test_garbage_is_closed_and_logged(void) {
  ctx c;
  int fd;
  static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  setup(&c, "127.0.0.1", NULL, 0, 0);
  fd = raw_connect("127.0.0.1", dl_tcp_server_port(c.srv));
  CHECK(write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1));
  run_until(&c, &c.nlog, 1, &c.nlog, 1, 20000);
  CHECK(strstr(c.log[0], "garbage"));
  /* The server's hello, then the door closes; nothing else answers. */
  CHECK(read_to_eof(fd) == DL_AUTH_S1_LEN);
  close(fd);
  CHECK(c.accepted == 0 && c.nlog == 1);
  CHECK(dl_tcp_server_pending(c.srv) == 0);
  teardown(&c);
}

/* Run c's loop until n bytes wait to be read on the raw socket fd (peeked,
   not taken), or fail after ms. */
static void run_until_readable(ctx *c, int fd, size_t n, unsigned ms) {
  char buf[512];
  uint64_t end;
  CHECK(n <= sizeof buf);
  uv_update_time(&c->loop);
  end = uv_now(&c->loop) + ms;
  while (recv(fd, buf, n, MSG_PEEK | MSG_DONTWAIT) != (ssize_t)n) {
    uv_run(&c->loop, UV_RUN_ONCE); /* the 10 ms tick bounds each run */
    if (uv_now(&c->loop) > end) {
      fprintf(stderr, "# timed out waiting for %zu bytes\n", n);
      CHECK(0);
    }
  }
}

static void test_slow_loris_is_dropped_after_the_limit(void) {
  ctx c;
  int fd;
  char hello[DL_AUTH_S1_LEN], rest[64];
  ssize_t r;
  setup(&c, "127.0.0.1", NULL, 300, 0);
  fd = raw_connect("127.0.0.1", dl_tcp_server_port(c.srv));
  /* The server's hello first: it has taken the connection and its
     handshake clock runs. */
  run_until_readable(&c, fd, sizeof hello, 20000);
  CHECK(read(fd, hello, sizeof hello) == (ssize_t)sizeof hello);
  /* A correct start of a hello, and then nothing. */
  CHECK(write(fd, "DLUAAUTH\x01", 9) == 9);
  run_until(&c, &c.nlog, 1, &c.nlog, 1, 20000);
  CHECK(strstr(c.log[0], "no handshake within 300 ms"));
  /* Then the door closes and nothing more comes: an end of stream, or a
     reset when a loaded server's limit passed before it read our bytes
     (a socket closed with unread input resets). */
  while ((r = read(fd, rest, sizeof rest)) < 0 && errno == EINTR) {}
  CHECK(r == 0 || (r < 0 && errno == ECONNRESET));
  close(fd);
  CHECK(c.accepted == 0);
  CHECK(dl_tcp_server_pending(c.srv) == 0);
  teardown(&c);
}

static int closed_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int port, fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
  port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static void test_refused_port_is_a_clear_error(void) {
  dl_tcp_opts o;
  char err[512], want[128];
  int fd, port = closed_port();
  CHECK(dl_token_set(&tok_a, "token-aaaaaaaaaaaaaaaaaaaa", 26) == 0);
  memset(&o, 0, sizeof o);
  o.token = &tok_a;
  o.version = "0.1.0";
  CHECK(dl_tcp_dial_sync("127.0.0.1", port, &o, 5000, &fd, err, sizeof err) ==
        UV_ECONNREFUSED);
  fprintf(stderr, "# %s\n", err);
  snprintf(want, sizeof want, "cannot reach tcp://127.0.0.1:%d: ", port);
  CHECK(strstr(err, want) && strstr(err, "refused"));
  CHECK(fd == -1);
  CHECK(dl_tcp_dial_sync("no-such-host.invalid", port, &o, 5000, &fd, err,
                         sizeof err) < 0);
  fprintf(stderr, "# %s\n", err);
  CHECK(strstr(err, "no-such-host.invalid"));
}

/* A server that takes the connection but never speaks: the dial ends
   with a clear error when its time is up, not a hang. */
static void test_silent_server_times_out(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  dl_tcp_opts o;
  char err[512];
  int fd, lfd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(bind(lfd, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(listen(lfd, 4) == 0);
  CHECK(getsockname(lfd, (struct sockaddr *)&a, &len) == 0);
  CHECK(dl_token_set(&tok_a, "token-aaaaaaaaaaaaaaaaaaaa", 26) == 0);
  memset(&o, 0, sizeof o);
  o.token = &tok_a;
  o.version = "0.1.0";
  CHECK(dl_tcp_dial_sync("127.0.0.1", ntohs(a.sin_port), &o, 300, &fd, err,
                         sizeof err) == UV_ETIMEDOUT);
  fprintf(stderr, "# %s\n", err);
  CHECK(strstr(err, "handshake not finished within 300 ms"));
  close(lfd);
}

static void test_port_in_use_says_so(void) {
  ctx c;
  dl_tcp_opts o;
  dl_tcp_server *s2;
  char err[256];
  setup(&c, "127.0.0.1", NULL, 0, 0);
  o = opts_for(&c, &tok_a, NULL);
  CHECK(dl_tcp_listen(&s2, &c.loop, "127.0.0.1", dl_tcp_server_port(c.srv),
                      &o, on_accept, &c, err, sizeof err) == UV_EADDRINUSE);
  fprintf(stderr, "# %s\n", err);
  CHECK(s2 == NULL && strstr(err, "is in use"));
  CHECK(dl_tcp_listen(&s2, &c.loop, "example.org", 0, &o, on_accept, &c, err,
                      sizeof err) == UV_EINVAL);
  CHECK(strstr(err, "not a numeric"));
  teardown(&c);
}

static void test_thousand_connections_at_once(void) {
  ctx c;
  dl_tcp_opts o;
  int i;
  setup(&c, "127.0.0.1", NULL, 0, 0);
  o = opts_for(&c, &tok_a, NULL);
  for (i = 0; i < 1000; i++)
    CHECK(dl_tcp_dial(&c.loop, "127.0.0.1", dl_tcp_server_port(c.srv), &o,
                      60000, on_dial, &c) == 0);
  run_until(&c, &c.accepted, 1000, &c.dialled, 1000, 120000);
  CHECK(c.failed == 0 && c.nlog == 0);
  CHECK(dl_tcp_server_pending(c.srv) == 0);
  teardown(&c);
}

static void test_closing_the_server_drops_handshakes(void) {
  ctx c;
  int fd;
  setup(&c, "127.0.0.1", NULL, 0, 0);
  fd = raw_connect("127.0.0.1", dl_tcp_server_port(c.srv));
  while (dl_tcp_server_pending(c.srv) == 0) uv_run(&c.loop, UV_RUN_ONCE);
  teardown(&c); /* returns only once every handle is closed */
  CHECK(read_to_eof(fd) == DL_AUTH_S1_LEN);
  close(fd);
}

static void test_parse_addresses(void) {
  char host[64], err[256];
  int port;
  CHECK(dl_tcp_parse("tcp://10.0.0.1:8786", host, sizeof host, &port, err,
                     sizeof err) == 0);
  CHECK(strcmp(host, "10.0.0.1") == 0 && port == 8786);
  CHECK(dl_tcp_parse("node7:0", host, sizeof host, &port, err, sizeof err) ==
        0);
  CHECK(strcmp(host, "node7") == 0 && port == 0);
  CHECK(dl_tcp_parse("tcp://[fd00::2]:99", host, sizeof host, &port, err,
                     sizeof err) == 0);
  CHECK(strcmp(host, "fd00::2") == 0 && port == 99);
  {
    static const char *bad[] = {"tcp://h", "tcp://:1", "h:", "h:65536",
                                "h:-1", "h:1x", "fd00::2:99", "[::1:5",
                                "tcp://[::1]", "h: 1"};
    size_t i;
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
      CHECK(dl_tcp_parse(bad[i], host, sizeof host, &port, err, sizeof err) ==
            DL_EINVAL);
      CHECK(strstr(err, "bad address") && strstr(err, "tcp://HOST:PORT"));
    }
  }
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  RUN(test_bytes_cross_ipv4);
  RUN(test_bytes_cross_ipv6);
  RUN(test_wrong_token_is_refused_and_logged);
  RUN(test_other_version_is_refused_naming_both);
  RUN(test_garbage_is_closed_and_logged);
  RUN(test_slow_loris_is_dropped_after_the_limit);
  RUN(test_refused_port_is_a_clear_error);
  RUN(test_silent_server_times_out);
  RUN(test_port_in_use_says_so);
  RUN(test_thousand_connections_at_once);
  RUN(test_closing_the_server_drops_handshakes);
  RUN(test_parse_addresses);
  return TAP_END();
}

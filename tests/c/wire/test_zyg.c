/*
** test_zyg.c -- C tests of the zygote link (runtime/wire/dl_zyg.c): messages
** encode and decode back, malformed ones are refused, packets carry their
** descriptors (close-on-exec on arrival), the end of the link is -EPIPE;
** every input the fuzzer saved (tests/fuzz/regressions-zyg) is replayed.
*/
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dl_zyg.h"
#include "tap.h"
#include "zyg_driver.h"

static void test_round_trip(void) {
  char *argv[] = {"dlua", "--dlua-worker", "--id", "3", NULL};
  char *env[] = {"A=1", "B=", NULL};
  dl_buf b;
  dl_zyg_msg m;
  dl_buf_init(&b);
  CHECK(dl_zyg_put_spawn(&b, 3, argv, env, "/tmp") == 0);
  CHECK(dl_zyg_decode(b.p, b.len, &m) == 0);
  CHECK(m.type == 'S' && m.wid == 3 && m.nargs == 4 && m.nenv == 2);
  CHECK(strcmp(m.argv[3], "3") == 0 && m.argv[4] == NULL);
  CHECK(strcmp(m.env[1], "B=") == 0 && m.env[2] == NULL);
  CHECK(strcmp(m.cwd, "/tmp") == 0);
  dl_zyg_msg_free(&m);
  CHECK(zyg_drive((const unsigned char *)b.p, b.len) == 0);
  b.len = 0;
  dl_zyg_put(&b, 'X', 9, 0x100);
  CHECK(dl_zyg_decode(b.p, b.len, &m) == 0);
  CHECK(m.type == 'X' && m.wid == 9 && m.val == 0x100);
  dl_buf_free(&b);
}

static void test_malformed(void) {
  dl_zyg_msg m;
  static const char none[] = "S\1\0\0\0\0\0\0\0\0\0\0\0/\0"; /* no argv */
  static const char lie[] = "S\1\0\0\0\xff\xff\xff\0\0\0\0\0a\0/\0";
  static const char open_[] = "S\1\0\0\0\1\0\0\0\0\0\0\0a\0/"; /* no NUL */
  CHECK(dl_zyg_decode(none, sizeof none - 1, &m) == DL_EPROTO);
  CHECK(dl_zyg_decode(lie, sizeof lie - 1, &m) == DL_EPROTO);
  CHECK(dl_zyg_decode(open_, sizeof open_ - 1, &m) == DL_EPROTO);
  CHECK(dl_zyg_decode("K\1\0\0", 4, &m) == DL_EPROTO);
  CHECK(dl_zyg_decode("Q\1\0\0\0", 5, &m) == DL_EPROTO);
  CHECK(dl_zyg_decode("", 0, &m) == DL_EPROTO);
}

static void test_descriptors(void) {
  int sv[2], p[2], fds[3], nfd = -1;
  char buf[64];
  dl_buf b;
  long n;
  CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
  CHECK(pipe(p) == 0);
  dl_buf_init(&b);
  dl_zyg_put(&b, 'K', 5, 0);
  CHECK(dl_zyg_recv(sv[1], buf, sizeof buf, fds, &nfd) == 0); /* none */
  CHECK(dl_zyg_send(sv[0], &b, p, 2) == 0);
  n = dl_zyg_recv(sv[1], buf, sizeof buf, fds, &nfd);
  CHECK(n == 5 && nfd == 2 && memcmp(buf, b.p, 5) == 0);
  CHECK(nfd == 2 && (fcntl(fds[0], F_GETFD) & FD_CLOEXEC));
  /* They are the pipe: written at one end, read at the other. */
  CHECK(write(p[1], "z", 1) == 1 && read(fds[0], buf, 1) == 1 &&
        buf[0] == 'z');
  close(fds[0]);
  close(fds[1]);
  close(sv[0]);
  CHECK(dl_zyg_recv(sv[1], buf, sizeof buf, fds, &nfd) == -EPIPE);
  CHECK(dl_zyg_send(sv[1], &b, NULL, 0) == -EPIPE);
  close(sv[1]);
  close(p[0]);
  close(p[1]);
  dl_buf_free(&b);
}

static void one(const unsigned char *p, size_t n, void *ud) {
  (void)ud;
  zyg_drive(p, n);
}

static void test_replay_fuzz_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-zyg", one, NULL) > 0);
}

int main(void) {
  RUN(test_round_trip);
  RUN(test_malformed);
  RUN(test_descriptors);
  RUN(test_replay_fuzz_regressions);
  return TAP_END();
}

/*
** test_buf.c -- C tests of dl_buf's out-of-memory policy (dl_buf.h): the
** writers never fail, a buffer that cannot grow aborts the process with a
** message, and a size from outside (dl_buf_try_grow) fails softly.
*/
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dl_buf.h"
#include "tap.h"

/* Writers return 0 and the bytes read back. */
static void test_writers_append(void) {
  dl_buf b;
  dl_rd r;
  uint64_t v;
  const char *s;
  size_t n;
  int i;
  dl_buf_init(&b);
  for (i = 0; i < 10000; i++) CHECK(dl_buf_uv(&b, (uint64_t)i << 20) == 0);
  CHECK(dl_buf_str(&b, "end", 3) == 0);
  dl_rd_init(&r, b.p, b.len);
  for (i = 0; i < 10000; i++)
    CHECK(dl_rd_uv(&r, &v) == 0 && v == (uint64_t)i << 20);
  CHECK(dl_rd_str(&r, &s, &n) == 0 && n == 3 && memcmp(s, "end", 3) == 0);
  dl_buf_free(&b);
}

/* A size from outside that cannot be had: DL_ENOMEM, b unchanged. */
static void test_try_grow_fails_softly(void) {
  dl_buf b;
  dl_buf_init(&b);
  CHECK(dl_buf_put(&b, "abc", 3) == 0);
  CHECK(dl_buf_try_grow(&b, SIZE_MAX - 1) == DL_ENOMEM); /* overflows */
  CHECK(dl_buf_try_grow(&b, SIZE_MAX / 2) == DL_ENOMEM); /* no such heap */
  CHECK(b.len == 3 && memcmp(b.p, "abc", 3) == 0);
  dl_buf_free(&b);
}

/* The runtime's own buffer that cannot grow: the process aborts, saying
   why on stderr. */
static void test_grow_aborts_with_a_message(void) {
  int fds[2], st;
  char msg[256];
  ssize_t n;
  pid_t pid;
  CHECK(pipe(fds) == 0);
  pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    dl_buf b;
    dup2(fds[1], 2);
    signal(SIGABRT, SIG_DFL);
    dl_buf_init(&b);
    dl_buf_put(&b, "x", 1);
    dl_buf_grow(&b, SIZE_MAX / 2);
    _exit(0); /* not reached */
  }
  close(fds[1]);
  n = read(fds[0], msg, sizeof msg - 1);
  CHECK(n > 0);
  msg[n] = '\0';
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
  CHECK(strstr(msg, "dlua: out of memory growing a buffer") != NULL);
}

int main(void) {
  RUN(test_writers_append);
  RUN(test_try_grow_fails_softly);
  RUN(test_grow_aborts_with_a_message);
  return TAP_END();
}

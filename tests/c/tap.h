/*
** tap.h -- a tiny TAP harness for dlua's C tests.  Each test is a function;
** RUN(t) runs it in a child process with a time limit, so a crash or a hang
** fails that test alone (libuv's runner does the same).
*/
#ifndef tap_h
#define tap_h

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int tap_n, tap_failed;

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf(stderr, "# %s:%d: check failed: %s\n", __FILE__, __LINE__, \
              #cond);                                                   \
      exit(1);                                                          \
    }                                                                   \
  } while (0)

static void tap_run(const char *name, void (*fn)(void), unsigned timeout_s) {
  pid_t pid;
  int st = 0;
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    alarm(timeout_s);
    fn();
    exit(0);
  }
  waitpid(pid, &st, 0);
  tap_n++;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
    printf("ok %d - %s\n", tap_n, name);
  } else {
    tap_failed++;
    if (WIFSIGNALED(st))
      printf("not ok %d - %s (signal %d%s)\n", tap_n, name, WTERMSIG(st),
             WTERMSIG(st) == SIGALRM ? ", timed out" : "");
    else
      printf("not ok %d - %s (exit %d)\n", tap_n, name, WEXITSTATUS(st));
  }
}

#define RUN(fn) tap_run(#fn, fn, 60)
#define TAP_END() (printf("1..%d\n", tap_n), tap_failed ? 1 : 0)

#endif

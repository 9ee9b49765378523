/*
** tap.h -- a tiny TAP harness for dlua's C tests.  Each test is a function;
** RUN(t) runs it in a child process with a time limit, so a crash or a hang
** fails that test alone (libuv's runner does the same).
*/
#ifndef tap_h
#define tap_h

#include <dirent.h>
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

/* Run fn on the bytes of each file in dir (the fuzzers' saved inputs);
   returns how many.  The saved inputs are part of the tree: a replay that
   finds none (a missing or empty dir, a wrong working directory) fails
   rather than pass having checked nothing. */
static inline int tap_replay(const char *dir,
                             void (*fn)(const unsigned char *, size_t,
                                        void *),
                             void *ud) {
  DIR *dp = opendir(dir);
  struct dirent *e;
  int n = 0;
  static unsigned char buf[1 << 20];
  if (dp == NULL)
    fprintf(stderr, "# replay: cannot open %s (run from the repository "
            "root)\n", dir);
  CHECK(dp != NULL);
  while ((e = readdir(dp)) != NULL) {
    char path[1024];
    FILE *f;
    size_t len;
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    f = fopen(path, "rb");
    CHECK(f != NULL);
    len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    fn(buf, len, ud);
    n++;
  }
  closedir(dp);
  printf("# replayed %d inputs from %s\n", n, dir);
  CHECK(n > 0);
  return n;
}

#define RUN(fn) tap_run(#fn, fn, 60)
#define TAP_END() (printf("1..%d\n", tap_n), tap_failed ? 1 : 0)

#endif

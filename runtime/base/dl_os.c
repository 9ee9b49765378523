/*
** dl_os.c -- operating-system helpers (see dl_os.h).
*/
#include <limits.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dl_os.h"

const char *dl_os_self_exe(void) {
  static char path[PATH_MAX];
  static const char deleted[] = " (deleted)";
  ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  size_t dl = sizeof deleted - 1;
  if (n <= 0) return NULL;
  path[n] = '\0';
  /* readlink names a replaced binary "... (deleted)"; /proc/self/exe
     still opens the one we run, in any process forked from this one. */
  if ((size_t)n > dl && strcmp(path + n - dl, deleted) == 0)
    return "/proc/self/exe";
  return path;
}

void dl_os_relax(void) { sched_yield(); }

static double mono_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int dl_os_spin(double limit, int (*ready)(void *), void *ud) {
  double start = mono_s(), prev = start;
  for (;;) {
    double t;
    if (ready(ud)) return 1;
    t = mono_s();
    if (t - start > limit) return 0;
    if (t - prev > DL_SPIN_LOST) return -1;
    prev = t;
    dl_os_relax();
  }
}

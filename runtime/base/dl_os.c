/*
** dl_os.c -- operating-system helpers (see dl_os.h).
*/
#include <limits.h>
#include <sched.h>
#include <string.h>
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

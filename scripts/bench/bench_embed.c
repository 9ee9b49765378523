/*
** bench_embed.c -- start and close an embedded dlua runtime with a local
** cluster of 2 workers (this program re-executed), 20 times; prints
**   embed_start_close_ms <median> ms
** Target: < 50 ms.  Build (the lead's Makefile rule):
**   $(B)/bench_embed: scripts/bench/bench_embed.c $(B)/libdlua.a
**     $(CC) $(CFLAGS_ALL) -o $@ $< $(B)/libdlua.a $(LDLIBS_ALL)
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlua.h"

#define RUNS 20

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  dlua_Options o;
  double t[RUNS];
  char err[256];
  int i, rc = dlua_worker_main(argc, argv);
  if (rc >= 0) return rc;
  memset(&o, 0, sizeof o);
  o.n_workers = 2;
  o.start_cluster = 1;
  for (i = 0; i < RUNS; i++) {
    double t0 = dlua_time();
    dlua_Runtime *rt = dlua_open(&o, err, sizeof err);
    if (rt == NULL) {
      fprintf(stderr, "bench_embed: %s\n", err);
      return 1;
    }
    dlua_close(rt);
    t[i] = dlua_time() - t0;
  }
  qsort(t, RUNS, sizeof t[0], cmp);
  printf("embed_start_close_ms %.2f ms\n", 1e3 * (t[RUNS / 2 - 1] +
                                                  t[RUNS / 2]) / 2);
  printf("# min %.2f ms, max %.2f ms over %d runs\n", 1e3 * t[0],
         1e3 * t[RUNS - 1], RUNS);
  return 0;
}

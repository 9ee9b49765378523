/*
** seed_save.h -- for a fuzz target built with -DDL_FUZZ_SEEDGEN: write one
** seed input, bytes p[0..n), to dir/name (a seed that cannot be written is
** skipped: the corpus is only smaller).
*/
#ifndef DL_FUZZ_SEED_SAVE_H
#define DL_FUZZ_SEED_SAVE_H

#include <stdio.h>

static void seed_save(const char *dir, const char *name,
                      const unsigned char *p, size_t n) {
  char path[512];
  FILE *fp;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  fp = fopen(path, "wb");
  if (fp == NULL) return;
  fwrite(p, 1, n, fp);
  fclose(fp);
}

#endif

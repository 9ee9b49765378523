/*
** seed_save.h -- for a fuzz target built with -DDL_FUZZ_SEEDGEN: write one
** seed input to dir/name: nhead bytes of head (a target's selector byte,
** say; none when nhead is 0), then the bytes p[0..n).  Returns 0, or -1
** when the file could not be written whole (most targets skip that seed:
** the corpus is only smaller).
*/
#ifndef DL_FUZZ_SEED_SAVE_H
#define DL_FUZZ_SEED_SAVE_H

#include <stdio.h>

static int seed_save_head(const char *dir, const char *name,
                          const unsigned char *head, size_t nhead,
                          const void *p, size_t n) {
  char path[1024];
  FILE *fp;
  int bad;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  fp = fopen(path, "wb");
  if (fp == NULL) return -1;
  bad = (nhead > 0 && fwrite(head, 1, nhead, fp) != nhead) ||
        (n > 0 && fwrite(p, 1, n, fp) != n);
  return fclose(fp) != 0 || bad ? -1 : 0;
}

static int seed_save(const char *dir, const char *name, const void *p,
                     size_t n) {
  return seed_save_head(dir, name, NULL, 0, p, n);
}

#endif

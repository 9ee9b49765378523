/*
** dl_buf.c -- growable byte buffers (their allocator is in dl_mem.c).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "dl_buf.h"

void dl_buf_free(dl_buf *b) {
  dl_free(b->p);
  dl_buf_init(b);
}

int dl_buf_try_grow(dl_buf *b, size_t n) {
  size_t need = b->len + n, cap = b->cap ? b->cap : 64;
  char *np;
  if (need < b->len) return DL_ENOMEM; /* overflow */
  if (need > ((size_t)1 << 20) && cap < need)
    cap = need + need / 16; /* big buffers: no doubling, little waste */
  while (cap < need) {
    if (cap > SIZE_MAX / 2) {
      cap = need;
      break;
    }
    cap *= 2;
  }
  np = dl_realloc(b->p, cap);
  if (np == NULL) return DL_ENOMEM;
  b->p = np;
  b->cap = cap;
  return 0;
}

int dl_buf_grow(dl_buf *b, size_t n) {
  if (dl_buf_try_grow(b, n)) {
    fprintf(stderr, "dlua: out of memory growing a buffer to %zu bytes%s\n",
            b->len + n, b->len + n < b->len ? " (overflow)" : "");
    abort();
  }
  return 0;
}

char *dl_buf_take(dl_buf *b, size_t *len) {
  char *p = b->p;
  if (len) *len = b->len;
  dl_buf_init(b);
  return p;
}

/*
** dl_buf.c -- growable byte buffers; the runtime's one allocator.
*/
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "dl_buf.h"

/* Blocks at least this big are backed by huge pages where the system
   allows it: moving big values then costs far fewer page faults. */
#define HUGE_FROM ((size_t)4 << 20)
#define HUGE_PAGE ((uintptr_t)2 << 20)

/* The allocator every part of the runtime uses (Lua states and libuv too). */
void *dl_realloc(void *p, size_t n) {
  void *r;
  if (n == 0) {
    free(p);
    return NULL;
  }
  r = realloc(p, n);
#ifdef MADV_HUGEPAGE
  if (r != NULL && n >= HUGE_FROM) {
    uintptr_t a = ((uintptr_t)r + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    uintptr_t e = ((uintptr_t)r + n) & ~(HUGE_PAGE - 1);
    if (e > a) madvise((void *)a, e - a, MADV_HUGEPAGE);
  }
#endif
  return r;
}

void dl_free(void *p) { free(p); }

void dl_buf_free(dl_buf *b) {
  dl_free(b->p);
  dl_buf_init(b);
}

int dl_buf_grow(dl_buf *b, size_t n) {
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

char *dl_buf_take(dl_buf *b, size_t *len) {
  char *p = b->p;
  if (len) *len = b->len;
  dl_buf_init(b);
  return p;
}

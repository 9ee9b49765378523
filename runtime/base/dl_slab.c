/*
** dl_slab.c -- size-class block allocator on huge-page chunks.  See
** dl_slab.h.
*/
#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "dl_buf.h"
#include "dl_slab.h"

/* A chunk's first bytes link it to the chunk made before it and hold its
   size. */
#define HEAD ((size_t)16)
/* The first chunk is small and on ordinary pages: a huge page costs 0.7
   to 2 ms to clear at its first touch, too much for a cluster that runs
   one task (the start-one-task-close time is a benchmark of its own). */
#define FIRST ((size_t)64 << 10)

static size_t class_of(size_t n) { return (n + 7) / 8 - 1; }

void dl_slab_init(dl_slab *s) { memset(s, 0, sizeof *s); }

/* A fresh chunk, DL_SLAB_CHUNK-aligned (so that a huge page can back it
   whole), or NULL. */
static char *new_chunk(size_t size) {
  size_t span = DL_SLAB_CHUNK * 2;
  char *r, *a;
  if (size < DL_SLAB_CHUNK) {
    r = mmap(NULL, size, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return r == MAP_FAILED ? NULL : r;
  }
  r = mmap(NULL, span, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) return NULL;
  a = (char *)(((uintptr_t)r + DL_SLAB_CHUNK - 1) &
               ~(uintptr_t)(DL_SLAB_CHUNK - 1));
  if (a > r) munmap(r, (size_t)(a - r));
  if (a + DL_SLAB_CHUNK < r + span)
    munmap(a + DL_SLAB_CHUNK, (size_t)(r + span - (a + DL_SLAB_CHUNK)));
#ifdef MADV_HUGEPAGE
  madvise(a, DL_SLAB_CHUNK, MADV_HUGEPAGE);
#endif
  return a;
}

void *dl_slab_alloc(dl_slab *s, size_t n) {
  size_t c, size;
  void *p;
  if (n == 0) n = 1;
  if (n > DL_SLAB_MAX) return dl_realloc(NULL, n);
  c = class_of(n);
  if (DL_SLAB_PASSTHROUGH) {
    p = dl_realloc(NULL, n);
    if (p) s->live += (c + 1) * 8;
    return p;
  }
  size = (c + 1) * 8;
  p = s->free[c];
  if (p) {
    memcpy(&s->free[c], p, sizeof p); /* the next free block */
  } else {
    if ((size_t)(s->end - s->bump) < size) {
      size_t csize = s->nchunks ? DL_SLAB_CHUNK : FIRST;
      char *k = new_chunk(csize);
      if (k == NULL) return NULL;
      /* The old tail (under DL_SLAB_MAX bytes) goes to waste. */
      memcpy(k, &s->chunks, sizeof s->chunks);
      memcpy(k + sizeof s->chunks, &csize, sizeof csize);
      s->chunks = k;
      s->nchunks++;
      s->bump = k + HEAD;
      s->end = k + csize;
    }
    p = s->bump;
    s->bump += size;
  }
  s->live += size;
  return p;
}

void dl_slab_free(dl_slab *s, void *p, size_t n) {
  size_t c;
  if (p == NULL) return;
  if (n == 0) n = 1;
  if (n > DL_SLAB_MAX) {
    dl_free(p);
    return;
  }
  c = class_of(n);
  s->live -= (c + 1) * 8;
  if (DL_SLAB_PASSTHROUGH) {
    dl_free(p);
    return;
  }
  memcpy(p, &s->free[c], sizeof p);
  s->free[c] = p;
}

void *dl_slab_realloc(dl_slab *s, void *p, size_t n, size_t m) {
  void *q;
  if (p == NULL) return dl_slab_alloc(s, m);
  if (n == 0) n = 1;
  if (m == 0) m = 1;
  if (n > DL_SLAB_MAX && m > DL_SLAB_MAX) return dl_realloc(p, m);
  if (DL_SLAB_PASSTHROUGH) { /* every block is dl_realloc's */
    q = dl_realloc(p, m);
    if (q == NULL) return NULL;
    if (n <= DL_SLAB_MAX) s->live -= (class_of(n) + 1) * 8;
    if (m <= DL_SLAB_MAX) s->live += (class_of(m) + 1) * 8;
    return q;
  }
  if (n <= DL_SLAB_MAX && m <= DL_SLAB_MAX && class_of(n) == class_of(m))
    return p;
  q = dl_slab_alloc(s, m);
  if (q == NULL) return NULL;
  memcpy(q, p, n < m ? n : m);
  dl_slab_free(s, p, n);
  return q;
}

void dl_slab_destroy(dl_slab *s) {
  void *k = s->chunks;
  while (k) {
    void *next;
    size_t csize;
    memcpy(&next, k, sizeof next);
    memcpy(&csize, (char *)k + sizeof next, sizeof csize);
    munmap(k, csize);
    k = next;
  }
  dl_slab_init(s);
}

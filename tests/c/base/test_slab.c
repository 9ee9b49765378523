/*
** test_slab.c -- C tests of the block allocator (dl_slab.c): every size
** class, reuse of freed blocks, growth past one chunk, blocks too big for
** a class, realloc across classes, and a chunk that cannot be had.
** Under ASan the slab hands every block to dl_realloc (DL_SLAB_PASSTHROUGH):
** the checks of chunks and free lists are then skipped (CHUNKY).
*/
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "dl_buf.h"
#include "dl_slab.h"
#include "tap.h"

#define CHUNKY (!DL_SLAB_PASSTHROUGH)

static void test_blocks_are_aligned_distinct_and_reused(void) {
  dl_slab s;
  char *p[DL_SLAB_MAX + 1];
  size_t n;
  dl_slab_init(&s);
  for (n = 1; n <= DL_SLAB_MAX; n++) {
    p[n] = dl_slab_alloc(&s, n);
    CHECK(p[n] != NULL);
    CHECK(((uintptr_t)p[n] & 7) == 0);
    memset(p[n], (int)(n & 0xff), n);
  }
  /* No block overlaps another: each still holds its own bytes. */
  for (n = 1; n <= DL_SLAB_MAX; n++) {
    size_t i;
    for (i = 0; i < n; i++) CHECK(p[n][i] == (char)(n & 0xff));
  }
  /* 0.5 MB in all: the first chunk (64 KiB) and one of 2 MiB, which
     starts on a 2 MiB boundary (a huge page can back it whole). */
  CHECK(s.nchunks == (CHUNKY ? 2 : 0));
  if (CHUNKY) CHECK(((uintptr_t)s.chunks & (DL_SLAB_CHUNK - 1)) == 0);
  CHECK(s.live > 0);
  /* A freed block is the next one of its class (LIFO), and a block of
     another size in the same class takes it too. */
  if (CHUNKY) {
    dl_slab_free(&s, p[100], 100);
    CHECK(dl_slab_alloc(&s, 97) == p[100]);
    dl_slab_free(&s, p[100], 97);
    CHECK(dl_slab_alloc(&s, 104) == p[100]);
  }
  for (n = 1; n <= DL_SLAB_MAX; n++) dl_slab_free(&s, p[n], n);
  CHECK(s.live == 0);
  dl_slab_free(&s, NULL, 10); /* nothing */
  dl_slab_destroy(&s);
  CHECK(s.chunks == NULL && s.nchunks == 0);
}

static void test_growth_past_many_chunks(void) {
  dl_slab s;
  enum { N = 60000 };
  static char *p[N];
  size_t i;
  dl_slab_init(&s);
  /* 60,000 records of 344 bytes: about 10 chunks of 2 MiB. */
  for (i = 0; i < N; i++) {
    p[i] = dl_slab_alloc(&s, 344);
    CHECK(p[i] != NULL);
    memcpy(p[i], &i, sizeof i);
    p[i][343] = (char)i;
  }
  CHECK(CHUNKY ? s.nchunks >= 10 : s.nchunks == 0);
  CHECK(s.live == (size_t)N * 344);
  for (i = 0; i < N; i++) {
    size_t j;
    memcpy(&j, p[i], sizeof j);
    CHECK(j == i && p[i][343] == (char)i);
  }
  /* Freeing half then allocating as many makes no new chunk. */
  {
    size_t chunks = s.nchunks;
    for (i = 0; i < N; i += 2) dl_slab_free(&s, p[i], 344);
    for (i = 0; i < N; i += 2) CHECK((p[i] = dl_slab_alloc(&s, 340)) != NULL);
    CHECK(s.nchunks == chunks);
  }
  dl_slab_destroy(&s);
}

static void test_big_blocks_and_realloc(void) {
  dl_slab s;
  char *p, *q;
  size_t i;
  dl_slab_init(&s);
  /* Past DL_SLAB_MAX: dl_realloc's, not counted here. */
  p = dl_slab_alloc(&s, DL_SLAB_MAX + 1);
  CHECK(p != NULL && s.live == 0 && s.nchunks == 0);
  dl_slab_free(&s, p, DL_SLAB_MAX + 1);
  /* Doubling an array from 8 bytes to 64 KiB keeps its bytes at every
     step, across the classes and out of them. */
  p = dl_slab_realloc(&s, NULL, 0, 8);
  CHECK(p != NULL);
  memset(p, 1, 8);
  for (i = 8; i < 65536; i *= 2) {
    size_t k;
    q = dl_slab_realloc(&s, p, i, i * 2);
    CHECK(q != NULL);
    for (k = 0; k < i; k++) CHECK(q[k] == (char)(k < 8 ? 1 : k & 0x7f));
    for (k = i; k < i * 2; k++) q[k] = (char)(k & 0x7f);
    p = q;
  }
  /* Same class: the same block. */
  q = dl_slab_alloc(&s, 20);
  {
    char *r = dl_slab_realloc(&s, q, 20, 24);
    CHECK(r != NULL && (r == q || !CHUNKY));
    q = r;
  }
  dl_slab_free(&s, q, 24);
  /* And back down into a class. */
  p = dl_slab_realloc(&s, p, 65536, 16);
  CHECK(p != NULL && p[0] == 1 && p[15] == 15);
  dl_slab_free(&s, p, 16);
  CHECK(s.live == 0);
  dl_slab_destroy(&s);
}

static void test_no_chunk_is_a_clean_null(void) {
  dl_slab s;
  struct rlimit rl;
  FILE *f;
  unsigned long pages = 0;
  char *p;
  if (!CHUNKY) return; /* malloc's failures are not the slab's */
  dl_slab_init(&s);
  p = dl_slab_alloc(&s, 64);
  CHECK(p != NULL);
  /* No room for another 2 MiB chunk (it maps 4 MiB to align it). */
  f = fopen("/proc/self/statm", "r");
  CHECK(f != NULL && fscanf(f, "%lu", &pages) == 1);
  fclose(f);
  CHECK(getrlimit(RLIMIT_AS, &rl) == 0);
  rl.rlim_cur = pages * 4096 + (1u << 20);
  CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
  /* Fill the first chunk, then the next block fails. */
  while (s.end - s.bump >= 1024) CHECK(dl_slab_alloc(&s, 1024) != NULL);
  CHECK(dl_slab_alloc(&s, 1024) == NULL);
  CHECK(s.nchunks == 1);
  /* A freed block is still handed out, and realloc failing keeps p. */
  dl_slab_free(&s, p, 64);
  CHECK(dl_slab_alloc(&s, 60) == p);
  CHECK(dl_slab_realloc(&s, p, 60, 1000) == NULL);
  dl_slab_destroy(&s);
}

int main(void) {
  RUN(test_blocks_are_aligned_distinct_and_reused);
  RUN(test_growth_past_many_chunks);
  RUN(test_big_blocks_and_realloc);
  RUN(test_no_chunk_is_a_clean_null);
  return TAP_END();
}

/*
** shared_at_check.h -- the checks of fuzz_shared_at.c on one input, shared
** with the C test that replays its saved inputs (tests/c/worker/).
** Whatever dl_shared_at_read accepts must name a span inside the block
** and a plausible pid, and must read back the same after
** dl_put_shared_at; anything else aborts.
*/
#ifndef shared_at_check_h
#define shared_at_check_h

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_wire.h"

static int shared_at_check(const unsigned char *data, size_t n) {
  dl_shared_at sa, back;
  dl_buf b;
  dl_rd r;
  const char *p;
  size_t len;
  if (dl_shared_at_read((const char *)data, n, &sa)) return 0;
  if (sa.pid == 0 || sa.pid > INT32_MAX || sa.off > sa.ref.size ||
      sa.off + sa.len > sa.ref.size || sa.off + sa.len < sa.off) {
    fprintf(stderr, "accepted an impossible span\n");
    abort();
  }
  dl_buf_init(&b);
  dl_put_shared_at(&b, &sa);
  dl_rd_init(&r, b.p, b.len);
  if (dl_rd_str(&r, &p, &len) || dl_rd_left(&r) ||
      dl_shared_at_read(p, len, &back) || memcmp(&sa, &back, sizeof sa)) {
    fprintf(stderr, "does not read back the same\n");
    abort();
  }
  dl_buf_free(&b);
  return 0;
}

#endif

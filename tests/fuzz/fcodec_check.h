/*
** fcodec_check.h -- the checks of fuzz_fcodec.c on one input
** (fcodec_fuzz_one), shared with the C test that replays its saved inputs
** (tests/c/frame/test_fcodec.c).
*/
#ifndef fcodec_check_h
#define fcodec_check_h

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_buf.h"
#include "dl_fcodec.h"

static void fc_check(int ok) {
  if (!ok) abort();
}

/* What every decoded frame promises its users. */
static void fc_check_frame(const dl_fcframe *f) {
  size_t i;
  int64_t r;
  fc_check(f->nrows >= 0);
  for (i = 0; i < f->ncol; i++) {
    const dl_fccol *c = &f->cols[i];
    if (c->kind == DL_FC_STR) {
      for (r = 0; r < f->nrows; r++) {
        int64_t k;
        memcpy(&k, c->data + (size_t)r * 8, 8);
        fc_check(k >= 0 && k <= c->ndict);
      }
    } else {
      fc_check(dl_fc_itemsize(c->kind) > 0);
      if (c->kind == DL_FC_BOOL)
        for (r = 0; r < f->nrows; r++)
          fc_check((unsigned char)c->data[r] <= 1);
    }
  }
  for (i = 0; i < f->ndist; i++) {
    fc_check(f->dist[i].frame->ndist == 0);
    fc_check_frame(f->dist[i].frame);
  }
}

/* Run one input; 0 when accepted (then its bytes encode back the same). */
static int fcodec_fuzz_one(const unsigned char *data, size_t size) {
  dl_fcframe f;
  dl_buf out;
  int rc = dl_fc_decode(&f, (const char *)data, size);
  if (rc) {
    fc_check(rc == DL_EPROTO || rc == DL_ENOMEM);
    return rc;
  }
  fc_check_frame(&f);
  dl_buf_init(&out);
  fc_check(dl_fc_encode(&out, &f) == 0);
  fc_check(out.len == size && memcmp(out.p, data, size) == 0);
  dl_buf_free(&out);
  dl_fc_free(&f);
  return 0;
}

#endif

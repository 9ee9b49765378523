/*
** ndarray_check.h -- the checks of fuzz_ndarray.c on one input (nd_fuzz_one), shared
** with the C test that replays its saved inputs (tests/c/array/).
*/
#ifndef ndarray_check_h
#define ndarray_check_h

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_buf.h"
#include "dl_nd.h"

static void check(int ok) {
  if (!ok) abort();
}

/* Run one input; 0 when accepted. */
static int nd_fuzz_one(const unsigned char *data, size_t size) {
  dl_nd a, b;
  dl_buf out;
  char err[300];
  int rc;
  if (size < 1) return -1;
  dl_buf_init(&out);
  if (data[0] == 0) {
    rc = dl_nd_decode(&a, (const char *)data + 1, size - 1);
    if (rc) return rc;
    check(dl_nd_encode(&out, &a) == 0);
    check(out.len == size - 1 && memcmp(out.p, data + 1, out.len) == 0);
  } else {
    rc = dl_nd_npy_read(&a, (const char *)data + 1, size - 1, err,
                        sizeof err);
    if (rc) {
      check(err[0] != '\0' || rc == DL_ND_ENOMEM);
      return rc;
    }
    check(dl_nd_npy_write(&out, &a) == 0);
    check(dl_nd_npy_read(&b, out.p, out.len, err, sizeof err) == 0);
    check(b.dtype == a.dtype && b.ndim == a.ndim &&
          memcmp(b.shape, a.shape, sizeof(int64_t) * (size_t)a.ndim) == 0);
    dl_nd_release(&b);
  }
  dl_buf_free(&out);
  dl_nd_release(&a);
  return 0;
}

#endif

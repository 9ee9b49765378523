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

static void nd_hold(void *p) { ++*(int *)p; }
static void nd_drop(void *p) { --*(int *)p; }

/* Run one input (first byte 0: codec form, 2: the same borrowed, else
   .npy); 0 when accepted. */
static int nd_fuzz_one(const unsigned char *data, size_t size) {
  dl_nd a, b;
  dl_buf out;
  char err[300];
  int rc;
  if (size < 1) return -1;
  dl_buf_init(&out);
  if (data[0] == 0 || data[0] == 2) {
    /* the codec's form; 2: decoded as the worker does, borrowing the
       bytes when it can: every hold is dropped with the last view */
    int held = 0;
    size_t bytes;
    /* an aligned copy, as the worker's stored values are */
    char *in = malloc(size);
    check(in != NULL);
    memcpy(in, data + 1, size - 1);
    rc = data[0] == 2 ? dl_nd_decode_borrow(&a, in, size - 1, nd_hold,
                                            nd_drop, &held)
                      : dl_nd_decode(&a, in, size - 1);
    if (rc) {
      check(held == 0);
      free(in);
      return rc;
    }
    check(held <= 1 && (held == 0 || (a.data >= in &&
                                       a.data < in + size - 1)));
    if (data[0] == 2)
      check(dl_nd_readonly(&a) && dl_nd_assign(&a, &a) == DL_ND_EREADONLY);
    bytes = (size_t)dl_nd_size(&a) * dl_nd_itemsize(a.dtype);
    /* the same array encodes to the same bytes, up to the padding */
    check(dl_nd_encode(&out, &a) == 0);
    check(dl_nd_decode(&b, out.p, out.len) == 0);
    check(b.dtype == a.dtype && b.ndim == a.ndim &&
          memcmp(b.shape, a.shape, sizeof(int64_t) * (size_t)a.ndim) == 0 &&
          (bytes == 0 || memcmp(b.data, a.data, bytes) == 0));
    check(out.len <= size - 1 + 9 && out.len + 9 >= size - 1);
    dl_nd_release(&b);
    dl_buf_free(&out);
    dl_nd_release(&a);
    check(held == 0);
    free(in);
    return 0;
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

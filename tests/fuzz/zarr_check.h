/*
** zarr_check.h -- the checks of fuzz_zarr.c on one input (zarr_fuzz_one),
** shared with the C test that replays its saved inputs (tests/c/array/).
**
** Input: byte 0 is the mode.  Mode 0: the rest is a `.zarray` text; what
** parses must write back to a text that parses to the same metadata.
** Mode 1: byte 1 is n, then n bytes of `.zarray` text, then the bytes of
** one chunk file (raw, zlib or Blosc, as the text says); a chunk that
** decodes must encode and decode back to the same elements.  Mode 2:
** the rest is a `.zattrs` text; the check must accept or explain it.
*/
#ifndef zarr_check_h
#define zarr_check_h

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_buf.h"
#include "dl_nd.h"
#include "dl_zarr.h"

static void zcheck(int ok) {
  if (!ok) abort();
}

static int same_meta(const dl_zarr_meta *a, const dl_zarr_meta *b) {
  return a->ndim == b->ndim && a->dtype == b->dtype &&
         a->codec == b->codec && a->level == b->level &&
         strcmp(a->cname, b->cname) == 0 && a->shuffle == b->shuffle &&
         a->blocksize == b->blocksize &&
         a->has_fill == b->has_fill &&
         (a->fill == b->fill || (a->fill != a->fill && b->fill != b->fill)) &&
         memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0 &&
         memcmp(a->chunks, b->chunks, sizeof(int64_t) * (size_t)a->ndim) == 0;
}

/* Run one input; 0 when accepted. */
static int zarr_fuzz_one(const unsigned char *data, size_t size) {
  dl_zarr_meta m, m2;
  char err[256];
  dl_buf out;
  size_t n;
  int rc;
  if (size < 1) return -1;
  dl_buf_init(&out);
  if (data[0] == 0) {
    rc = dl_zarr_meta_parse(&m, (const char *)data + 1, size - 1, err,
                            sizeof err);
    if (rc) {
      zcheck(err[0] != '\0');
      return rc;
    }
    if (m.codec == DL_ZARR_ZLIB && m.level < 0) m.level = 1; /* as written */
    if (m.codec == DL_ZARR_BLOSC && m.level < 0) m.level = 5;
    zcheck(dl_zarr_meta_write(&out, &m) == 0);
    zcheck(dl_zarr_meta_parse(&m2, out.p, out.len, err, sizeof err) == 0);
    zcheck(same_meta(&m, &m2));
    dl_buf_free(&out);
    return 0;
  }
  if (data[0] == 2) {
    rc = dl_zarr_attrs_check((const char *)data + 1, size - 1, err,
                             sizeof err);
    zcheck(rc == 0 || err[0] != '\0');
    return rc;
  }
  if (size < 2 || (n = data[1]) > size - 2) return -1;
  rc = dl_zarr_meta_parse(&m, (const char *)data + 2, n, err, sizeof err);
  if (rc) return rc;
  {
    dl_nd a, b;
    size_t bytes = dl_nd_itemsize(m.dtype);
    int k;
    for (k = 0; k < m.ndim; k++) {
      if ((uint64_t)m.chunks[k] > (1u << 20) / bytes) return -1; /* small */
      bytes *= (size_t)m.chunks[k];
    }
    rc = dl_zarr_chunk_decode(&a, &m, (const char *)data + 2 + n,
                              size - 2 - n, err, sizeof err);
    if (rc) {
      zcheck(err[0] != '\0');
      return rc;
    }
    zcheck(dl_zarr_chunk_encode(&out, &m, &a) == 0);
    zcheck(dl_zarr_chunk_decode(&b, &m, out.p, out.len, err, sizeof err) == 0);
    zcheck(memcmp(a.data, b.data, bytes) == 0);
    dl_nd_release(&a);
    dl_nd_release(&b);
  }
  dl_buf_free(&out);
  return 0;
}

#endif

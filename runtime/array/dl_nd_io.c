/*
** dl_nd_io.c -- arrays to bytes and back: the codec's compact form and
** NumPy's .npy format (version 1.0 and 2.0 headers; '<f8', '<f4', '<i8',
** '|b1';
** C or Fortran order).  The readers take bytes from outside: they check
** every length and never read past the end (fuzzed by
** tests/fuzz/fuzz_ndarray.c).
*/
#include "dl_nd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_buf.h"

/* a's elements in C order, appended to out (a view is copied first). */
static int put_elems(dl_buf *out, const dl_nd *a) {
  size_t bytes = (size_t)dl_nd_size(a) * dl_nd_itemsize(a->dtype);
  dl_nd c;
  int rc;
  if (dl_nd_contiguous(a))
    return dl_buf_put(out, a->data, bytes) ? DL_ND_ENOMEM : 0;
  if ((rc = dl_nd_astype(&c, a, a->dtype)) != 0) return rc;
  rc = dl_buf_put(out, c.data, bytes) ? DL_ND_ENOMEM : 0;
  dl_nd_release(&c);
  return rc;
}

int dl_nd_encode(dl_buf *out, const dl_nd *a) {
  int k;
  size_t bytes = (size_t)dl_nd_size(a) * dl_nd_itemsize(a->dtype);
  if (bytes >= DL_ND_BORROW_MIN) { /* elements at a multiple of 8 */
    unsigned pad = (unsigned)((8 - (out->len + 3 + 8 * (size_t)a->ndim) % 8)
                              % 8);
    if (dl_buf_u8(out, (unsigned)a->dtype | 0x80) || dl_buf_u8(out, pad))
      return DL_ND_ENOMEM;
    for (k = 0; k < (int)pad; k++)
      if (dl_buf_u8(out, 0)) return DL_ND_ENOMEM;
  } else if (dl_buf_u8(out, (unsigned)a->dtype)) {
    return DL_ND_ENOMEM;
  }
  if (dl_buf_u8(out, (unsigned)a->ndim)) return DL_ND_ENOMEM;
  for (k = 0; k < a->ndim; k++)
    if (dl_buf_u64(out, (uint64_t)a->shape[k])) return DL_ND_ENOMEM;
  return put_elems(out, a);
}

/* bytes = itemsize * product of shape, or (size_t)-1 when that is more
   than n (or a dimension is negative). */
static size_t body_size(dl_dtype t, int ndim, const int64_t *shape,
                        size_t n) {
  size_t bytes = dl_nd_itemsize(t);
  int k;
  for (k = 0; k < ndim; k++)
    if (shape[k] < 0) return (size_t)-1;
  for (k = 0; k < ndim; k++)
    if (shape[k] == 0) return 0;
  for (k = 0; k < ndim; k++) {
    if ((uint64_t)shape[k] > n / bytes) return (size_t)-1;
    bytes *= (size_t)shape[k];
  }
  return bytes > n ? (size_t)-1 : bytes;
}

static int decode(dl_nd *out, const char *p, size_t n, void (*hold)(void *),
                  void (*drop)(void *), void *owner) {
  dl_rd r;
  unsigned dt, nd, pad = 0;
  int64_t shape[DL_ND_MAXDIM];
  const char *body;
  size_t bytes;
  int k, rc;
  dl_rd_init(&r, p, n);
  if (dl_rd_u8(&r, &dt)) return DL_ND_ESHAPE;
  if (dt & 0x80) { /* padded: u8 pad, pad bytes */
    dt &= 0x7f;
    if (dl_rd_u8(&r, &pad) || pad > 7 || dl_rd_bytes(&r, pad, &body))
      return DL_ND_ESHAPE;
  }
  if (dl_rd_u8(&r, &nd) || dt >= DL_NDTYPES || nd > DL_ND_MAXDIM)
    return DL_ND_ESHAPE;
  for (k = 0; k < (int)nd; k++) {
    uint64_t v;
    if (dl_rd_u64(&r, &v) || v > (uint64_t)INT64_MAX) return DL_ND_ESHAPE;
    shape[k] = (int64_t)v;
  }
  bytes = body_size((dl_dtype)dt, (int)nd, shape, n);
  if (bytes == (size_t)-1 || dl_rd_left(&r) != bytes ||
      dl_rd_bytes(&r, bytes, &body))
    return DL_ND_ESHAPE;
  if (drop && bytes >= DL_ND_BORROW_MIN && ((uintptr_t)body & 7) == 0)
    return dl_nd_borrow(out, (dl_dtype)dt, (int)nd, shape, body, hold, drop,
                        owner);
  if ((rc = dl_nd_alloc_uninit(out, (dl_dtype)dt, (int)nd, shape)) != 0)
    return rc;
  if (bytes) memcpy(out->data, body, bytes);
  out->buf->ro = drop != NULL;
  return 0;
}

int dl_nd_decode(dl_nd *out, const char *p, size_t n) {
  return decode(out, p, n, NULL, NULL, NULL);
}

int dl_nd_decode_borrow(dl_nd *out, const char *p, size_t n,
                        void (*hold)(void *), void (*drop)(void *),
                        void *owner) {
  return decode(out, p, n, hold, drop, owner);
}

/* ------------------------------------------------------------------ npy */

static const char *npy_descr(dl_dtype t) {
  return t == DL_F64 ? "<f8" : t == DL_I64 ? "<i8" : t == DL_F32 ? "<f4"
                                                                : "|b1";
}

int dl_nd_npy_write(dl_buf *out, const dl_nd *a) {
  char hdr[512];
  int len = 0, k, total;
  len = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, "
                 "'shape': (", npy_descr(a->dtype));
  for (k = 0; k < a->ndim && len < 400; k++)
    len += snprintf(hdr + len, sizeof hdr - (size_t)len, "%lld,%s",
                    (long long)a->shape[k], k + 1 < a->ndim ? " " : "");
  len += snprintf(hdr + len, sizeof hdr - (size_t)len, "), }");
  /* pad with spaces to a multiple of 64 bytes, newline last */
  total = 10 + len + 1;
  while (total % 64) total++, hdr[len++] = ' ';
  hdr[len++] = '\n';
  if (dl_buf_put(out, "\x93NUMPY\x01\x00", 8) ||
      dl_buf_u8(out, (unsigned)len & 0xff) ||
      dl_buf_u8(out, (unsigned)len >> 8) || dl_buf_put(out, hdr, (size_t)len))
    return DL_ND_ENOMEM;
  return put_elems(out, a);
}

/* Find 'key': in the header dictionary h (n bytes); returns the value's
   start or NULL. */
static const char *dict_get(const char *h, size_t n, const char *key) {
  size_t kl = strlen(key), i;
  for (i = 0; i + kl + 3 <= n; i++) {
    if ((h[i] == '\'' || h[i] == '"') && memcmp(h + i + 1, key, kl) == 0 &&
        h[i + 1 + kl] == h[i]) {
      const char *p = h + i + kl + 2, *end = h + n;
      while (p < end && (*p == ' ' || *p == ':')) p++;
      return p < end ? p : NULL;
    }
  }
  return NULL;
}

int dl_nd_npy_read(dl_nd *out, const char *p, size_t n, char *err,
                   size_t errlen) {
  const char *h, *v, *end;
  size_t hl, off, bytes;
  int64_t shape[DL_ND_MAXDIM];
  int ndim = 0, fortran = 0, k, rc;
  dl_dtype t;
  err[0] = '\0';
  if (n < 10 || memcmp(p, "\x93NUMPY", 6) != 0) {
    snprintf(err, errlen, "not a .npy file (no \\x93NUMPY magic)");
    return DL_ND_ESHAPE;
  }
  if (p[6] == 1) {
    hl = (unsigned char)p[8] | ((size_t)(unsigned char)p[9] << 8);
    off = 10;
  } else if ((p[6] == 2 || p[6] == 3) && n >= 12) {
    hl = (unsigned char)p[8] | ((size_t)(unsigned char)p[9] << 8) |
         ((size_t)(unsigned char)p[10] << 16) |
         ((size_t)(unsigned char)p[11] << 24);
    off = 12;
  } else {
    snprintf(err, errlen, "unsupported .npy version %d", (int)p[6]);
    return DL_ND_ESHAPE;
  }
  if (hl > n - off) {
    snprintf(err, errlen, "truncated header (%zu bytes announced, %zu "
             "present)", hl, n - off);
    return DL_ND_ESHAPE;
  }
  h = p + off;
  end = h + hl;
  /* descr */
  v = dict_get(h, hl, "descr");
  if (v == NULL || v + 5 > end || (*v != '\'' && *v != '"')) {
    snprintf(err, errlen, "header has no 'descr'");
    return DL_ND_ESHAPE;
  }
  if (memcmp(v + 1, "<f8", 3) == 0 && v[4] == v[0]) t = DL_F64;
  else if (memcmp(v + 1, "<i8", 3) == 0 && v[4] == v[0]) t = DL_I64;
  else if (memcmp(v + 1, "<f4", 3) == 0 && v[4] == v[0]) t = DL_F32;
  else if ((memcmp(v + 1, "|b1", 3) == 0 || memcmp(v + 1, "?", 1) == 0) &&
           (v[4] == v[0] || v[2] == v[0]))
    t = DL_BOOL;
  else {
    const char *q = v + 1;
    while (q < end && q - v < 24 && *q != v[0]) q++;
    snprintf(err, errlen, "unsupported dtype '%.*s' (float64 '<f8', "
             "float32 '<f4', int64 '<i8' and bool '|b1' are)",
             (int)(q - v - 1), v + 1);
    return DL_ND_EDTYPE;
  }
  v = dict_get(h, hl, "fortran_order");
  if (v && v + 4 <= end && memcmp(v, "True", 4) == 0) fortran = 1;
  v = dict_get(h, hl, "shape");
  if (v == NULL || *v != '(') {
    snprintf(err, errlen, "header has no 'shape' tuple");
    return DL_ND_ESHAPE;
  }
  v++;
  for (;;) {
    int64_t x = 0;
    int digits = 0;
    while (v < end && (*v == ' ' || *v == ',')) v++;
    if (v < end && *v == ')') break;
    while (v < end && *v >= '0' && *v <= '9' && digits < 18) {
      x = x * 10 + (*v++ - '0');
      digits++;
    }
    while (v < end && *v == 'L') v++; /* Python 2 longs */
    if (digits == 0 || (v < end && *v >= '0' && *v <= '9') ||
        ndim >= DL_ND_MAXDIM) {
      snprintf(err, errlen, "bad 'shape' in the header");
      return DL_ND_ESHAPE;
    }
    shape[ndim++] = x;
  }
  if (fortran) /* read with the axes reversed, then transpose */
    for (k = 0; k < ndim / 2; k++) {
      int64_t s = shape[k];
      shape[k] = shape[ndim - 1 - k];
      shape[ndim - 1 - k] = s;
    }
  bytes = body_size(t, ndim, shape, n);
  if (bytes == (size_t)-1 || bytes != n - off - hl) {
    char s[160];
    dl_nd_shape_str(ndim, shape, s, sizeof s);
    if (bytes == (size_t)-1)
      snprintf(err, errlen, "truncated body: shape %s needs more bytes "
               "than the file holds (%zu)", s, n - off - hl);
    else if (bytes > n - off - hl)
      snprintf(err, errlen, "truncated body: shape %s needs %zu bytes, the "
               "file holds %zu", s, bytes, n - off - hl);
    else
      snprintf(err, errlen, "body of %zu bytes does not match shape %s "
               "(%zu bytes)", n - off - hl, s, bytes);
    return DL_ND_ESHAPE;
  }
  if ((rc = dl_nd_alloc_uninit(out, t, ndim, shape)) != 0) return rc;
  if (bytes) memcpy(out->data, h + hl, bytes);
  if (t == DL_BOOL) { /* only 0 and 1 are booleans */
    size_t i;
    for (i = 0; i < bytes; i++) out->data[i] = out->data[i] != 0;
  }
  if (fortran) {
    int64_t ss[DL_ND_MAXDIM], st[DL_ND_MAXDIM];
    for (k = 0; k < ndim; k++) {
      ss[k] = out->shape[ndim - 1 - k];
      st[k] = out->strides[ndim - 1 - k];
    }
    memcpy(out->shape, ss, sizeof(int64_t) * (size_t)ndim);
    memcpy(out->strides, st, sizeof(int64_t) * (size_t)ndim);
  }
  return 0;
}

/*
** fuzz_ndarray.c -- libFuzzer target for the array readers of outside
** bytes: dl_nd_decode (the codec's ndarray form, first byte 0) and
** dl_nd_npy_read (.npy files, first byte 1).
**
** Whatever they accept must be an array whose bytes encode back to what
** was read (decode) or that survives a write and read (npy).
**
** Built with -DDL_FUZZ_SEEDGEN it writes a few valid inputs into the
** directory argv[1].
*/
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

#ifdef DL_FUZZ_SEEDGEN
static void save(const char *dir, const char *name, int kind,
                 const dl_nd *a) {
  dl_buf b;
  char path[512];
  FILE *f;
  dl_buf_init(&b);
  dl_buf_u8(&b, (unsigned)kind);
  if (kind == 0) dl_nd_encode(&b, a);
  else dl_nd_npy_write(&b, a);
  snprintf(path, sizeof path, "%s/%s", dir, name);
  f = fopen(path, "wb");
  if (f) {
    fwrite(b.p, 1, b.len, f);
    fclose(f);
  }
  dl_buf_free(&b);
}

int main(int argc, char **argv) {
  int64_t s1[1] = {5}, s2[2] = {2, 3}, s0[1] = {0};
  dl_nd a, b, c, d;
  if (argc < 2) return 2;
  dl_nd_alloc(&a, DL_F64, 1, s1);
  dl_nd_alloc(&b, DL_I64, 2, s2);
  dl_nd_alloc(&c, DL_BOOL, 2, s2);
  dl_nd_alloc(&d, DL_F64, 1, s0);
  ((double *)a.data)[2] = 2.5;
  ((int64_t *)b.data)[4] = -7;
  ((uint8_t *)c.data)[1] = 1;
  save(argv[1], "seed-codec-f64", 0, &a);
  save(argv[1], "seed-codec-i64", 0, &b);
  save(argv[1], "seed-codec-bool", 0, &c);
  save(argv[1], "seed-codec-empty", 0, &d);
  save(argv[1], "seed-npy-f64", 1, &a);
  save(argv[1], "seed-npy-i64", 1, &b);
  save(argv[1], "seed-npy-bool", 1, &c);
  save(argv[1], "seed-npy-empty", 1, &d);
  dl_nd_release(&a);
  dl_nd_release(&b);
  dl_nd_release(&c);
  dl_nd_release(&d);
  return 0;
}
#elif !defined(DL_FUZZ_NO_MAIN)
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  nd_fuzz_one(data, size);
  return 0;
}
#endif

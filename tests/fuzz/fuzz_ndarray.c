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

#include "ndarray_check.h"

#ifdef DL_FUZZ_SEEDGEN
#include "seed_save.h"

static void save(const char *dir, const char *name, int kind,
                 const dl_nd *a) {
  dl_buf b;
  dl_buf_init(&b);
  dl_buf_u8(&b, (unsigned)kind);
  if (kind == 0) dl_nd_encode(&b, a);
  else dl_nd_npy_write(&b, a);
  seed_save(dir, name, b.p, b.len);
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
#else
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  nd_fuzz_one(data, size);
  return 0;
}
#endif

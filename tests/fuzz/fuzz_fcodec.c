/*
** fuzz_fcodec.c -- libFuzzer target for a data frame's bytes in the codec
** (dl_fc_decode): whatever it accepts must keep its promises (codes in
** the dictionary, bools 0 or 1) and encode back to the same bytes.
**
** Built with -DDL_FUZZ_SEEDGEN it writes a few valid inputs into the
** directory argv[1].
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_buf.h"
#include "dl_fcodec.h"

#include "fcodec_check.h"

#ifdef DL_FUZZ_SEEDGEN
#include "seed_save.h"

static void save(const char *dir, const char *name, const dl_fcframe *f) {
  dl_buf b;
  dl_buf_init(&b);
  dl_fc_encode(&b, f);
  seed_save(dir, name, b.p, b.len);
  dl_buf_free(&b);
}

int main(int argc, char **argv) {
  double x[3] = {1.5, -0.0, 0.0 / 0.0};
  int64_t codes[3] = {1, 0, 2}, n[3] = {-1, 0, 1};
  unsigned char b[3] = {1, 0, 1};
  float h[3] = {1.0f, 2.5f, -3.0f};
  const char *dict[2] = {"a", "bc"};
  size_t dlen[2] = {1, 2};
  dl_fccol cols[5] = {
    {"x", 1, DL_FC_F64, (const char *)x, 0, NULL, NULL},
    {"k", 1, DL_FC_STR, (const char *)codes, 2, dict, dlen},
    {"n", 1, DL_FC_I64, (const char *)n, 0, NULL, NULL},
    {"b", 1, DL_FC_BOOL, (const char *)b, 0, NULL, NULL},
    {"h", 1, DL_FC_F32, (const char *)h, 0, NULL, NULL}};
  dl_fcframe sub = {3, 2, cols, 0, NULL, 0, 0, 0, 0, NULL};
  dl_fcdist dist[1] = {{"x", 1, &sub}};
  dl_fcframe all = {3, 5, cols, 0, NULL, 0, 0, 0, 0, NULL};
  dl_fcframe empty = {0, 0, NULL, 0, NULL, 0, 0, 0, 0, NULL};
  dl_fcframe withd = {3, 1, cols + 2, 1, dist, 0, 0, 0, 0, NULL};
  dl_fcpair types[2] = {{"x", 1, "float64", 7}, {"k", 1, "string", 6}};
  if (argc < 2) return 2;
  all.has_nerrors = 1;
  all.nerrors = 2;
  all.has_types = 1;
  all.ntypes = 2;
  all.types = types;
  save(argv[1], "seed-all-kinds", &all);
  save(argv[1], "seed-empty", &empty);
  save(argv[1], "seed-distinct", &withd);
  return 0;
}
#else
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  fcodec_fuzz_one(data, size);
  return 0;
}
#endif

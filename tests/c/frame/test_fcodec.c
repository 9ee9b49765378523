/*
** test_fcodec.c -- C tests of a data frame's bytes in the codec
** (runtime/frame/dl_fcodec): replay of fuzz_fcodec's saved inputs, a
** round trip of every column kind, and the inputs the decoder refuses.
** Run from the repository root.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_fcodec.h"
#include "tap.h"

#include "fcodec_check.h"

static void replay_one(const unsigned char *p, size_t n, void *ud) {
  (void)ud;
  fcodec_fuzz_one(p, n);
}

static void test_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-fcodec", replay_one, NULL) > 0);
}

static double x[3] = {1.5, -0.0, 0.0};
static int64_t codes[3] = {1, 0, 2}, n[3] = {-1, 0, 1};
static unsigned char b[3] = {1, 0, 1};
static const char *dict[2] = {"a", "b\0c"};
static size_t dlen[2] = {1, 3};

/* A frame of every kind, encoded into out. */
static void encode_sample(dl_buf *out, const char *second_name) {
  dl_fccol cols[4] = {
    {"x", 1, DL_FC_F64, (const char *)x, 0, NULL, NULL},
    {"k", 1, DL_FC_STR, (const char *)codes, 2, dict, dlen},
    {"n", 1, DL_FC_I64, (const char *)n, 0, NULL, NULL},
    {"b", 1, DL_FC_BOOL, (const char *)b, 0, NULL, NULL}};
  dl_fcframe sub = {3, 1, cols + 2, 0, NULL, 0, 0, 0, 0, NULL};
  dl_fcdist dist[2] = {{"z", 1, &sub}, {"a", 1, &sub}};
  dl_fcpair types[2] = {{"x", 1, "float64", 7}, {"k", 1, "string", 6}};
  dl_fcframe f = {3, 4, cols, 2, dist, 1, 5, 1, 2, types};
  cols[1].name = second_name;
  cols[1].namelen = strlen(second_name);
  dl_buf_init(out);
  CHECK(dl_fc_encode(out, &f) == 0);
}

static void test_round_trip(void) {
  dl_buf out, again;
  dl_fcframe f;
  x[2] = 0.0 / 0.0;
  encode_sample(&out, "k");
  CHECK(dl_fc_decode(&f, out.p, out.len) == 0);
  CHECK(f.nrows == 3 && f.ncol == 4 && f.ndist == 2);
  CHECK(f.cols[1].kind == DL_FC_STR && f.cols[1].ndict == 2);
  CHECK(f.cols[1].dictlen[1] == 3 && memcmp(f.cols[1].dict[1], "b\0c", 3) == 0);
  CHECK(memcmp(f.cols[0].data, x, sizeof x) == 0); /* NaN and -0 bits */
  /* distinct entries come back in name order */
  CHECK(f.dist[0].name[0] == 'a' && f.dist[1].name[0] == 'z');
  CHECK(f.dist[0].frame->ncol == 1 && f.dist[0].frame->nrows == 3);
  /* read_csv's notes, types in name order */
  CHECK(f.has_nerrors && f.nerrors == 5 && f.has_types && f.ntypes == 2);
  CHECK(f.types[0].name[0] == 'k' && f.types[0].vallen == 6);
  dl_buf_init(&again);
  CHECK(dl_fc_encode(&again, &f) == 0);
  CHECK(again.len == out.len && memcmp(again.p, out.p, out.len) == 0);
  dl_fc_free(&f);
  dl_buf_free(&again);
  dl_buf_free(&out);
}

static int decodes(const char *p, size_t len) {
  dl_fcframe f;
  int rc = dl_fc_decode(&f, p, len);
  if (rc == 0) dl_fc_free(&f);
  return rc;
}

static void test_refused(void) {
  dl_buf out;
  size_t i, at;
  encode_sample(&out, "k");
  for (i = 0; i < out.len; i++) /* every truncation */
    CHECK(decodes(out.p, i) == DL_EPROTO);
  CHECK(decodes(out.p, out.len) == 0);
  /* a trailing byte, another version */
  dl_buf_u8(&out, 0);
  CHECK(decodes(out.p, out.len) == DL_EPROTO);
  out.len--;
  out.p[0] = 2;
  CHECK(decodes(out.p, out.len) == DL_EPROTO);
  out.p[0] = 1;
  /* a code past the dictionary: the k column's last code (2) becomes 3 */
  at = 1 + 8 + 4 + (4 + 1 + 1 + 24) + (4 + 1 + 1) + 8 + (4 + 1) + (4 + 3) + 16;
  CHECK(out.p[at] == 2);
  out.p[at] = 3;
  CHECK(decodes(out.p, out.len) == DL_EPROTO);
  out.p[at] = 2;
  /* a bool that is not 0 or 1 */
  at = 1 + 8 + 4 + 30 + 6 + 8 + 5 + 7 + 24 + (4 + 1 + 1 + 24) + (4 + 1 + 1);
  CHECK(out.p[at] == 1);
  out.p[at] = 2;
  CHECK(decodes(out.p, out.len) == DL_EPROTO);
  dl_buf_free(&out);
  /* two columns of one name */
  encode_sample(&out, "x");
  CHECK(decodes(out.p, out.len) == DL_EPROTO);
  dl_buf_free(&out);
  /* a huge row count with no data behind it */
  {
    const char big[] = "\1\377\377\377\377\377\377\377\17\1\0\0\0\1\0\0\0x\0";
    CHECK(decodes(big, sizeof big - 1) == DL_EPROTO);
  }
}

int main(void) {
  RUN(test_regressions);
  RUN(test_round_trip);
  RUN(test_refused);
  return TAP_END();
}

/*
** test_zarr.c -- C tests of the Zarr v2 metadata and chunk bytes
** (runtime/array/dl_zarr.c): replay of the fuzzer's saved inputs, the
** errors that name a field, chunks through zlib and Blosc and back.  Run from the
** repository root.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dl_buf.h"
#include "dl_nd.h"
#include "dl_zarr.h"
#include "tap.h"

#include "zarr_check.h"

static void replay_one(const unsigned char *p, size_t n, void *ud) {
  (void)ud;
  zarr_fuzz_one(p, n);
}

static void test_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-zarr", replay_one, NULL) > 0);
}

static int parse(dl_zarr_meta *m, const char *s, char *err) {
  return dl_zarr_meta_parse(m, s, strlen(s), err, 256);
}

static void test_meta(void) {
  dl_zarr_meta m;
  char err[256];
  CHECK(parse(&m, "{\"zarr_format\": 2, \"shape\": [10, 7], \"chunks\": "
              "[4, 3], \"dtype\": \"<f4\", \"compressor\": {\"id\": "
              "\"zlib\", \"level\": 5}, \"fill_value\": \"NaN\", "
              "\"order\": \"C\", \"filters\": null}", err) == 0);
  CHECK(m.ndim == 2 && m.shape[1] == 7 && m.chunks[0] == 4);
  CHECK(m.dtype == DL_F32 && m.codec == DL_ZARR_ZLIB && m.level == 5 && m.has_fill &&
        isnan(m.fill));
  CHECK(parse(&m, "{\"zarr_format\": 2, \"shape\": [3], \"chunks\": [3], "
              "\"dtype\": \">f8\", \"compressor\": null}", err) != 0);
  CHECK(strstr(err, "unsupported dtype '>f8'") != NULL);
  CHECK(parse(&m, "{\"zarr_format\": 2, \"shape\": [3], \"chunks\": [3], "
              "\"dtype\": \"<f8\", \"compressor\": {\"id\": \"lzma\"}}",
              err) != 0);
  CHECK(strstr(err, "unsupported compressor 'lzma'") != NULL);
  CHECK(parse(&m, "{\"zarr_format\": 2, \"shape\": [3], \"chunks\": [3], "
              "\"dtype\": \"<f8\", \"compressor\": {\"id\": \"blosc\", "
              "\"cname\": \"zstd\", \"clevel\": 3, \"shuffle\": 2}}", err) == 0);
  CHECK(m.codec == DL_ZARR_BLOSC && strcmp(m.cname, "zstd") == 0 &&
        m.level == 3 && m.shuffle == 2 && m.blocksize == 0);
  CHECK(parse(&m, "{\"zarr_format\": 2, \"shape\": [3], \"chunks\": [3], "
              "\"dtype\": \"<f8\", \"compressor\": {\"id\": \"blosc\", "
              "\"cname\": \"lzo\"}}", err) != 0);
  CHECK(strstr(err, "unsupported Blosc cname 'lzo'") != NULL);
  CHECK(parse(&m, "{\"zarr_format\": 2, \"shape\": [3, 2], \"chunks\": "
              "[3], \"dtype\": \"<f8\"}", err) != 0);
  CHECK(strstr(err, "'chunks' has 1 entries, 'shape' 2") != NULL);
  CHECK(parse(&m, "{\"zarr_format\": 2, \"shape\": [3], \"chunks\": [0], "
              "\"dtype\": \"<f8\"}", err) != 0);
  CHECK(strstr(err, "'chunks'[0] must be an integer >= 1") != NULL);
  CHECK(parse(&m, "{\"zarr_format\": 3}", err) != 0);
  CHECK(strstr(err, "'zarr_format' must be 2") != NULL);
  CHECK(parse(&m, "[1, 2", err) != 0);
  CHECK(strstr(err, "not a JSON object") != NULL);
  CHECK(parse(&m, "{\"zarr_format\": 2, \"shape\": [3], \"chunks\": "
              "[4294967296], \"dtype\": \"<f8\"}", err) != 0);
  CHECK(strstr(err, "a chunk of more than") != NULL);
}

static void test_chunks(void) {
  dl_zarr_meta m;
  char err[256];
  int64_t s[2] = {2, 3};
  dl_nd a, c;
  dl_buf b;
  int i, z;
  CHECK(dl_nd_alloc(&a, DL_I64, 2, s) == 0);
  for (i = 0; i < 6; i++) ((int64_t *)a.data)[i] = i + 1;
  static const char *const comp[3] = {
    "null", "{\"id\": \"zlib\"}",
    "{\"id\": \"blosc\", \"cname\": \"zstd\", \"shuffle\": 1}"};
  static const char *const why[3] = {
    "holds 95 bytes, expected 96", "not zlib data of 96 bytes",
    "not Blosc data of 96 bytes"};
  for (z = 0; z < 3; z++) {
    char text[300];
    snprintf(text, sizeof text, "{\"zarr_format\": 2, \"shape\": [5, 3], "
             "\"chunks\": [4, 3], \"dtype\": \"<i8\", \"compressor\": %s, "
             "\"fill_value\": -1}", comp[z]);
    CHECK(parse(&m, text, err) == 0);
    CHECK(m.codec == z);
    dl_buf_init(&b);
    CHECK(dl_zarr_chunk_encode(&b, &m, &a) == 0); /* an edge: 2 of 4 rows */
    CHECK(z || b.len == 4 * 3 * 8);
    CHECK(dl_zarr_chunk_decode(&c, &m, b.p, b.len, err, sizeof err) == 0);
    CHECK(c.shape[0] == 4 && ((int64_t *)c.data)[5] == 6);
    CHECK(((int64_t *)c.data)[6] == -1); /* padding: the fill value */
    dl_nd_release(&c);
    CHECK(dl_zarr_chunk_decode(&c, &m, b.p, b.len - 1, err, sizeof err) != 0);
    CHECK(strstr(err, why[z]) != NULL);
    dl_buf_free(&b);
  }
  dl_nd_release(&a);
}

int main(void) {
  RUN(test_regressions);
  RUN(test_meta);
  RUN(test_chunks);
  return TAP_END();
}

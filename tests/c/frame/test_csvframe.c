/*
** test_csvframe.c -- C tests of the data-frame layer (runtime/frame):
** replay of the CSV reader fuzzer's saved inputs, typed reading and its
** errors, the group-by kernels.  Run from the repository root.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_csvframe.h"
#include "dl_fgroup.h"
#include "tap.h"

#include "csvframe_check.h"

static void replay_one(const unsigned char *p, size_t n, void *ud) {
  (void)ud;
  csvframe_fuzz_one(p, n);
}

static int read_s(const char *s, int on_null, dl_ftable *t, char *err) {
  dl_csvopts o;
  memset(&o, 0, sizeof o);
  o.sep = ',';
  o.header = 1;
  o.on_error_null = on_null;
  o.file = "t.csv";
  o.line0 = 1;
  o.ninfer = 1;
  return dl_csv_frame(s, strlen(s), &o, t, err, 512);
}

static void test_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-csvframe", replay_one, NULL) > 0);
}

static void test_typed(void) {
  dl_ftable t;
  char err[512];
  /* BOM, CRLF, a quoted newline, no final newline */
  CHECK(read_s("\xEF\xBB\xBFi,x,s\r\n1,0.5,\"a\nb\"\r\n2,,c", 0, &t, err) == 0);
  CHECK(t.ncol == 3 && t.nrows == 2);
  CHECK(strcmp(t.cols[0].name, "i") == 0 && t.cols[0].type == DL_FT_I64);
  CHECK(((int64_t *)t.cols[0].vals)[1] == 2);
  CHECK(t.cols[1].type == DL_FT_F64 && t.cols[1].valid[1] == 0);
  CHECK(t.cols[2].type == DL_FT_STR && t.cols[2].offs[1] == 3);
  CHECK(t.cols[2].ndict == 2 && ((int64_t *)t.cols[2].vals)[1] == 2);
  CHECK(memcmp(t.cols[2].bytes, "a\nbc", 4) == 0);
  dl_ftable_free(&t);
  /* inferred int64 from row 1; row 3 does not fit */
  CHECK(read_s("i\n1\n2\nx\n", 0, &t, err) == -1);
  CHECK(strstr(err, "t.csv:4:1: expected int64") != NULL);
  CHECK(read_s("i\n1\n2\nx\n", 1, &t, err) == 0);
  CHECK(t.nrows == 3 && t.nerrors == 1 && t.cols[0].valid[2] == 0);
  dl_ftable_free(&t);
  CHECK(read_s("a,b\n1,2\n3\n", 0, &t, err) == -1);
  CHECK(strstr(err, "t.csv:3: expected 2 fields, got 1") != NULL);
  CHECK(read_s("a,b\n1,\"2\n", 0, &t, err) == -1);
  CHECK(strstr(err, "unterminated") != NULL);
  CHECK(read_s("", 0, &t, err) == -1);
  CHECK(strstr(err, "empty file") != NULL);
  CHECK(read_s("a,a\n1,2\n", 0, &t, err) == -1);
  CHECK(strstr(err, "duplicate column name") != NULL);
}

static void test_group(void) {
  int64_t keys[6] = {5, 7, 5, 9, 7, 5}, codes[6], first[6];
  double v[6] = {1, 2, 3, NAN, 4, 5}, out[3], mean[3];
  CHECK(dl_factorize_i64(keys, NULL, 6, codes, first) == 3);
  CHECK(codes[0] == 1 && codes[1] == 2 && codes[3] == 3 && codes[5] == 1);
  CHECK(first[2] == 3);
  dl_group_reduce(DL_G_SUM, codes, 6, v, 3, NULL, out);
  CHECK(out[0] == 9 && out[1] == 6 && out[2] == 0);
  dl_group_reduce(DL_G_COUNT, codes, 6, v, 3, NULL, out);
  CHECK(out[0] == 3 && out[2] == 0);
  dl_group_reduce(DL_G_MAX, codes, 6, v, 3, NULL, out);
  CHECK(out[0] == 5 && isnan(out[2]));
  mean[0] = 3;
  mean[1] = 3;
  mean[2] = 0;
  dl_group_reduce(DL_G_M2, codes, 6, v, 3, mean, out);
  CHECK(out[0] == 8 && out[1] == 2);
}

/* int64 reductions are exact past 2^53 and mark empty groups. */
static void test_group_i64(void) {
  const int64_t B = (int64_t)1 << 53;
  int64_t codes[5] = {1, 2, 1, 0, 1}, v[5], out[3];
  uint8_t seen[3];
  v[0] = B + 1;
  v[1] = -B - 1;
  v[2] = B + 3;
  v[3] = 42;
  v[4] = 1;
  CHECK(dl_group_reduce_i64(DL_G_SUM, codes, 5, v, 3, out, seen) == 1);
  CHECK(out[0] == 2 * B + 5 && out[1] == -B - 1 && out[2] == 0);
  CHECK(seen[0] && seen[1] && !seen[2]);
  CHECK(dl_group_reduce_i64(DL_G_MIN, codes, 5, v, 3, out, NULL) == 1);
  CHECK(out[0] == 1 && out[1] == -B - 1);
  CHECK(dl_group_reduce_i64(DL_G_MAX, codes, 5, v, 3, out, NULL) == 1);
  CHECK(out[0] == B + 3);
  CHECK(dl_group_reduce_i64(DL_G_FIRST, codes, 5, v, 3, out, NULL) == 1);
  CHECK(out[0] == B + 1);
  CHECK(dl_group_reduce_i64(DL_G_LAST, codes, 5, v, 3, out, NULL) == 1);
  CHECK(out[0] == 1);
  v[0] = INT64_MAX; /* wraps like NumPy, no undefined behaviour */
  v[2] = 1;
  v[4] = 0;
  dl_group_reduce_i64(DL_G_SUM, codes, 5, v, 3, out, NULL);
  CHECK(out[0] == INT64_MIN);
}

/* The shuffle and join kernels: buckets, joins, argsort, ranges. */
static void test_shuffle_kernels(void) {
  int64_t codes[6] = {2, 0, 2, 1, 0, 2}, rows[6], start[4], *li, *ri, m;
  int64_t lc[4] = {1, 2, 0, 3}, rc[4] = {2, 1, 2, 4}, idx[5], out[5];
  double v[5] = {3, NAN, 1, 3, -0.5}, b[2] = {1, 3};
  int64_t iv[3] = {(int64_t)1 << 60, -5, ((int64_t)1 << 60) - 1};
  uint64_t h1[2] = {0, 0}, h2[2] = {0, 0};
  double fv[2] = {7, -0.0};
  int64_t ii[2] = {7, 0};
  CHECK(dl_bucket_rows(codes, 6, 3, rows, start) == 0);
  CHECK(start[0] == 0 && start[1] == 2 && start[2] == 3 && start[3] == 6);
  CHECK(rows[0] == 1 && rows[1] == 4 && rows[2] == 3 && rows[3] == 0 &&
        rows[5] == 5);
  codes[1] = 3;
  CHECK(dl_bucket_rows(codes, 6, 3, rows, start) == -1);
  CHECK(dl_join_rows(lc, 4, rc, 4, 4, 0, &li, &ri, &m) == 0);
  CHECK(m == 3 && li[0] == 1 && ri[0] == 2 && li[1] == 2 && ri[1] == 1 &&
        li[2] == 2 && ri[2] == 3);
  free(li);
  free(ri);
  CHECK(dl_join_rows(lc, 4, rc, 4, 4, 2, &li, &ri, &m) == 0);
  CHECK(m == 6 && li[3] == 3 && ri[3] == 0 && li[4] == 4 && ri[4] == 0 &&
        li[5] == 0 && ri[5] == 4);
  free(li);
  free(ri);
  CHECK(dl_argsort_f64(v, 5, 1, idx) == 0);
  CHECK(idx[0] == 4 && idx[1] == 2 && idx[2] == 0 && idx[3] == 3 &&
        idx[4] == 1);
  CHECK(dl_argsort_f64(v, 5, 0, idx) == 0);
  CHECK(idx[0] == 0 && idx[1] == 3 && idx[2] == 2 && idx[4] == 1);
  CHECK(dl_argsort_i64(iv, 3, 1, idx) == 0);
  CHECK(idx[0] == 1 && idx[1] == 2 && idx[2] == 0);
  /* topk: argsort's first k, ties in row order, NaN last */
  dl_topk_f64(v, 5, 2, 0, idx);
  CHECK(idx[0] == 0 && idx[1] == 3);
  dl_topk_f64(v, 5, 9, 1, idx);
  CHECK(idx[0] == 4 && idx[1] == 2 && idx[2] == 0 && idx[3] == 3 &&
        idx[4] == 1);
  dl_topk_i64(iv, 3, 1, 0, idx);
  CHECK(idx[0] == 0);
  {
    double t[40];
    int64_t want[40], got[40], i, k;
    for (i = 0; i < 40; i++) t[i] = i % 7 == 0 ? NAN : (double)((i * 13) % 5);
    for (k = 0; k <= 40; k += 3) {
      int asc;
      for (asc = 0; asc < 2; asc++) {
        CHECK(dl_argsort_f64(t, 40, asc, want) == 0);
        dl_topk_f64(t, 40, k, asc, got);
        for (i = 0; i < k; i++) CHECK(got[i] == want[i]);
      }
    }
  }
  dl_range_f64(v, 5, b, 2, out);
  CHECK(out[0] == 2 && out[1] == 2 && out[2] == 1 && out[4] == 0);
  dl_hash_f64(fv, 2, h1);
  dl_hash_i64(ii, 2, h2);
  CHECK(h1[0] == h2[0] && h1[1] == h2[1]); /* 7 meets 7.0, -0 meets 0 */
}

/* The in-place float parser gives strtod's bits on what CSV writers
   print: %.17g (pandas, bench m), %.15g, %.6f, plain digit strings with
   exponents, and edge cases; and refuses what strtod would not take. */
static void test_parse_f64(void) {
  static const char *const odd[] = {"0", "-0", "+1.5", ".5", "5.", "1e22",
    "1e23", "9007199254740993", "18446744073709551615", "1e-400", "1e400",
    "inf", "-nan", "0x1p3", "123456789012345678901234567890",
    "0.000000000000000000000000000001", "2.2250738585072011e-308",
    "4.9e-324", "1.7976931348623157e308", "9999999999999999999e-27", NULL};
  static const char *const bad[] = {"", ".", "-", "1e", "1e+", "1x", " 1",
    "1 ", "e5", "--1", "1..2", NULL};
  static const char *const other[] = {" 1.5", "2.5 ", "inf", "NaN", "NA",
    "0x1p3", "-0", "1e400", "+7", NULL};
  uint64_t x = 88172645463325252ULL;
  char buf[64];
  int i, j, mism = 0, rows = 300000;
  double a, b, *want = malloc((size_t)rows * sizeof *want);
  size_t at = 2, cap = (size_t)rows * 64;
  char *csv = malloc(cap), err[512];
  CHECK(want != NULL && csv != NULL);
  memcpy(csv, "v\n", 2);
  for (i = 0; odd[i]; i++) {
    CHECK(dl_csv_parse_f64(odd[i], strlen(odd[i]), &a) == 1);
    b = strtod(odd[i], NULL);
    CHECK(memcmp(&a, &b, sizeof a) == 0 || (isnan(a) && isnan(b)));
  }
  for (i = 0; bad[i]; i++)
    CHECK(dl_csv_parse_f64(bad[i], strlen(bad[i]), &a) == 0);
  for (i = 0; i < 300000; i++) {
    uint64_t bits;
    double d;
    int n;
    x ^= x << 13; /* xorshift64 */
    x ^= x >> 7;
    x ^= x << 17;
    switch (i % 5) {
    case 4: /* leading zeros after the point: eight at a time, then digits */
      n = snprintf(buf, sizeof buf, "0.%.*s%llu", (int)(x % 17),
                   "0000000000000000", (unsigned long long)(x >> (x & 31)));
      break;
    case 0: /* a random double in [0, 1), as %.17g */
      d = (double)(x >> 11) / 9007199254740992.0;
      n = snprintf(buf, sizeof buf, "%.17g", d);
      break;
    case 1: /* any finite double */
      bits = x & 0x7fefffffffffffffULL;
      memcpy(&d, &bits, sizeof d);
      n = snprintf(buf, sizeof buf, "%.17g", (i & 8) ? -d : d);
      break;
    case 2: /* up to 19 digits, a point somewhere */
      n = snprintf(buf, sizeof buf, "%llu", (unsigned long long)(x >> (x & 31)));
      if (n > 1) {
        int at = (int)((x >> 40) % (unsigned)n);
        memmove(buf + at + 1, buf + at, (size_t)(n - at + 1));
        buf[at] = '.';
        n++;
      }
      break;
    default: /* digits and an exponent */
      n = snprintf(buf, sizeof buf, "%llue%d",
                   (unsigned long long)(x >> (x & 15)),
                   (int)((x >> 50) % 80) - 40);
    }
    if (dl_csv_parse_f64(buf, (size_t)n, &a) != 1) {
      mism++;
      continue;
    }
    b = strtod(buf, NULL);
    mism += memcmp(&a, &b, sizeof a) != 0;
    if (i % 97 == 0) { /* a field the reader's general path takes */
      const char *o = other[(i / 97) % 9];
      n = (int)strlen(o);
      memcpy(buf, o, (size_t)n + 1);
      b = o[0] == 'N' ? NAN : strtod(o, NULL);
    }
    want[i] = b;
    memcpy(csv + at, buf, (size_t)n);
    at += (size_t)n;
    csv[at++] = '\n';
  }
  CHECK(mism == 0);
  /* the same numbers read as a float64 column (fast path and general
     path), on one thread and on three: each bit for bit as strtod */
  for (j = 1; j <= 3; j += 2) {
    dl_csvopts o;
    static const char *const tn[] = {"v"};
    static const int tv[] = {DL_FT_F64};
    dl_ftable t;
    memset(&o, 0, sizeof o);
    o.sep = ',';
    o.header = 1;
    o.file = "f.csv";
    o.line0 = 1;
    o.ntypes = 1;
    o.type_names = tn;
    o.type_vals = tv;
    o.threads = j;
    CHECK(dl_csv_frame(csv, at, &o, &t, err, sizeof err) == 0);
    CHECK(t.nrows == rows);
    for (i = 0, mism = 0; i < rows && t.nrows == rows; i++) {
      a = ((double *)t.cols[0].vals)[i];
      mism += memcmp(&a, &want[i], sizeof a) != 0 &&
              !(isnan(a) && isnan(want[i]));
    }
    CHECK(mism == 0);
    dl_ftable_free(&t);
  }
  free(want);
  free(csv);
}

/* Strings factorized by their bytes (missing ones code 0), and a dict
   column's codes renumbered in order of first appearance. */
static void test_factorize_strings(void) {
  const char *bytes = "bakeyabakeyab";
  /* "b", "akey", "a", "", "bakey", "ab" -> rows "b","akey","b","", ... */
  int64_t offs[7] = {0, 1, 5, 6, 6, 11, 13};
  uint8_t valid[6] = {1, 1, 1, 0, 1, 1};
  int64_t codes[6], first[6], dc[5] = {3, 0, 3, 1, 2}, c2[5], f2[5];
  int64_t bad[2] = {1, 4};
  CHECK(dl_factorize_bytes(bytes, offs, valid, 6, codes, first) == 5);
  CHECK(codes[0] == 1 && codes[1] == 2 && codes[2] == 3 && codes[3] == 0 &&
        codes[4] == 4 && codes[5] == 5);
  CHECK(first[0] == 0 && first[1] == 1 && first[4] == 5);
  {
    int64_t o2[4] = {0, 1, 5, 9}; /* "b", "akey", "akey" */
    CHECK(dl_factorize_bytes("bakeyakey", o2, NULL, 3, codes, first) == 2);
  }
  CHECK(codes[0] == 1 && codes[1] == 2 && codes[2] == 2);
  CHECK(dl_factorize_codes(dc, 5, 3, c2, f2) == 3);
  CHECK(c2[0] == 1 && c2[1] == 0 && c2[2] == 1 && c2[3] == 2 && c2[4] == 3);
  CHECK(f2[0] == 0 && f2[1] == 3 && f2[2] == 4);
  CHECK(dl_factorize_codes(bad, 2, 3, c2, f2) == -2);
}

/* dl_csv_map_block cuts blocks as dl_csv_read_block does, for every
   start and stop around the lines of a file longer than a page. */
static void test_map_block(void) {
  char path[] = "/tmp/dlua-mapblock-XXXXXX", err[256];
  int fd = mkstemp(path);
  FILE *f;
  int64_t size = 0, start, stop;
  int line, bad = 0;
  CHECK(fd >= 0);
  f = fdopen(fd, "wb");
  for (line = 0; line < 700; line++)
    size += fprintf(f, "%d,k%d,%.3f\n", line, line % 7, line * 0.5);
  fprintf(f, "tail,no,newline");
  size += 15;
  fclose(f);
  for (start = 0; start <= size + 2 && !bad; start += start < 4200 && start > 4000 ? 1 : 37) {
    for (stop = start - 1; stop <= size + 2 && !bad; stop += 53) {
      char *o = NULL;
      size_t n = 0;
      dl_csvblock b;
      CHECK(dl_csv_read_block(path, start, stop, &o, &n, err, sizeof err) == 0);
      CHECK(dl_csv_map_block(path, start, stop, &b, err, sizeof err) == 0);
      if (b.n != n || (n && memcmp(b.p, o, n) != 0)) bad = 1;
      dl_csv_block_free(&b);
      free(o);
    }
  }
  CHECK(!bad);
  {
    dl_csvblock b;
    CHECK(dl_csv_map_block(path, 0, -1, &b, err, sizeof err) == 0);
    CHECK((int64_t)b.n == size && b.map != NULL);
    dl_csv_block_free(&b);
  }
  remove(path);
  CHECK(dl_csv_map_block(path, 0, -1, &(dl_csvblock){0}, err, sizeof err) == -1);
  CHECK(strstr(err, "No such file") != NULL);
}

int main(void) {
  RUN(test_regressions);
  RUN(test_typed);
  RUN(test_group);
  RUN(test_factorize_strings);
  RUN(test_group_i64);
  RUN(test_shuffle_kernels);
  RUN(test_parse_f64);
  RUN(test_map_block);
  return TAP_END();
}

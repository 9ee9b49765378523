/*
** test_ndarray.c -- C tests of the array core (runtime/array): replay of
** the ndarray fuzzer's saved inputs, broadcasting, reductions, the byte
** forms, random blocks.  Run from the repository root.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dl_buf.h"
#include "dl_nd.h"
#include "tap.h"

#include "ndarray_check.h"

#include <Random123/philox.h>

static void replay_one(const unsigned char *p, size_t n, void *ud) {
  (void)ud;
  nd_fuzz_one(p, n);
}

static void test_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-ndarray", replay_one, NULL) > 0);
}

static void test_broadcast(void) {
  int64_t sa[2] = {2, 3}, sb[1] = {3}, sc[1] = {4}, out[DL_ND_MAXDIM];
  dl_nd a, b, c, r;
  int n, i;
  CHECK(dl_nd_broadcast_shape(2, sa, 1, sb, &n, out) == 0);
  CHECK(n == 2 && out[0] == 2 && out[1] == 3);
  CHECK(dl_nd_broadcast_shape(2, sa, 1, sc, &n, out) == DL_ND_EBCAST);
  CHECK(dl_nd_alloc(&a, DL_I64, 2, sa) == 0);
  CHECK(dl_nd_alloc(&b, DL_F64, 1, sb) == 0);
  CHECK(dl_nd_alloc(&c, DL_F64, 1, sc) == 0);
  for (i = 0; i < 6; i++) ((int64_t *)a.data)[i] = i;
  for (i = 0; i < 3; i++) ((double *)b.data)[i] = 0.5 * i;
  CHECK(dl_nd_binop(&r, DL_OP_ADD, &a, &b) == 0);
  CHECK(r.dtype == DL_F64 && r.ndim == 2);
  CHECK(((double *)r.data)[5] == 5 + 1.0);
  dl_nd_release(&r);
  CHECK(dl_nd_binop(&r, DL_OP_ADD, &a, &c) == DL_ND_EBCAST);
  CHECK(dl_nd_reduce(&r, DL_RED_SUM, &a, 0, 0) == 0);
  CHECK(r.ndim == 1 && ((int64_t *)r.data)[2] == 2 + 5);
  dl_nd_release(&r);
  dl_nd_release(&a);
  dl_nd_release(&b);
  dl_nd_release(&c);
}

static void test_bytes(void) {
  int64_t s[2] = {3, 2};
  dl_nd a, t, r;
  dl_buf b;
  char err[300];
  int i;
  CHECK(dl_nd_alloc(&a, DL_F64, 2, s) == 0);
  for (i = 0; i < 6; i++) ((double *)a.data)[i] = i;
  /* a transposed view encodes in C order of the view */
  dl_nd_view(&t, &a);
  t.shape[0] = 2; t.shape[1] = 3;
  t.strides[0] = 1; t.strides[1] = 2;
  dl_buf_init(&b);
  CHECK(dl_nd_encode(&b, &t) == 0);
  CHECK(dl_nd_decode(&r, b.p, b.len) == 0);
  CHECK(((double *)r.data)[1] == 2 && ((double *)r.data)[3] == 1);
  dl_nd_release(&r);
  CHECK(dl_nd_decode(&r, b.p, b.len - 1) == DL_ND_ESHAPE);
  b.len = 0;
  CHECK(dl_nd_npy_write(&b, &t) == 0);
  CHECK(b.len % 64 == 48); /* header of 64 bytes, then 48 of body */
  CHECK(dl_nd_npy_read(&r, b.p, b.len, err, sizeof err) == 0);
  CHECK(r.shape[0] == 2 && ((double *)r.data)[1] == 2);
  dl_nd_release(&r);
  CHECK(dl_nd_npy_read(&r, b.p, b.len - 8, err, sizeof err) != 0);
  CHECK(strstr(err, "truncated body") != NULL);
  dl_buf_free(&b);
  dl_nd_release(&t);
  dl_nd_release(&a);
}

static void test_random_blocks(void) {
  int64_t g[2] = {5, 7}, o0[2] = {0, 0}, o1[2] = {2, 3}, s1[2] = {3, 4};
  dl_nd whole, part;
  dl_nd_gen gen;
  double tile[12];
  int i, j;
  CHECK(dl_nd_random(&whole, DL_RND_UNIFORM, 9, 2, g, o0, g, 0, 1) == 0);
  CHECK(dl_nd_random(&part, DL_RND_UNIFORM, 9, 2, g, o1, s1, 0, 1) == 0);
  for (i = 0; i < 3; i++)
    for (j = 0; j < 4; j++)
      CHECK(((double *)part.data)[i * 4 + j] ==
            ((double *)whole.data)[(i + 2) * 7 + j + 3]);
  memset(&gen, 0, sizeof gen);
  gen.kind = DL_RND_UNIFORM;
  gen.ndim = 2;
  gen.seed = 9;
  gen.p2 = 1;
  memcpy(gen.gshape, g, sizeof g);
  memcpy(gen.off, o1, sizeof o1);
  memcpy(gen.shape, s1, sizeof s1);
  dl_nd_random_range(tile, &gen, 5, 7); /* from the middle of a row */
  for (i = 0; i < 7; i++) CHECK(tile[i] == ((double *)part.data)[5 + i]);
  dl_nd_release(&whole);
  dl_nd_release(&part);
}

/* Element (i, j) of a 2-d float64 view. */
static double at2(const dl_nd *a, int64_t i, int64_t j) {
  return ((const double *)a->data)[i * a->strides[0] + j * a->strides[1]];
}

/* matmul of every kind of view dgemm reads in place (rows and columns of a
   bigger matrix, transposed views, one-row views) equals the product by
   loops. */
static void test_matmul_views(void) {
  int64_t s[2] = {7, 9};
  dl_nd big, a, b, r;
  int i, j, l, kase;
  CHECK(dl_nd_alloc(&big, DL_F64, 2, s) == 0);
  for (i = 0; i < 63; i++) ((double *)big.data)[i] = (i * 37 % 11) - 5.5;
  for (kase = 0; kase < 5; kase++) {
    double want, d = 0;
    dl_nd_view(&a, &big);
    dl_nd_view(&b, &big);
    if (kase == 0) { /* a: rows 2..4, cols 3..7 (ld 9); b: b.T rows 1..5 */
      a.data += (2 * 9 + 3) * 8; a.shape[0] = 3; a.shape[1] = 5;
      b.shape[0] = 5; b.shape[1] = 7; b.strides[0] = 1; b.strides[1] = 9;
    } else if (kase == 1) { /* a: big.T (9 x 7); b: big */
      a.shape[0] = 9; a.shape[1] = 7; a.strides[0] = 1; a.strides[1] = 9;
    } else if (kase == 2) { /* a: one row; b: a transposed block */
      a.data += 4 * 9 * 8; a.shape[0] = 1; a.strides[0] = 0;
      b.data += 2 * 8; b.shape[0] = 9; b.shape[1] = 4;
      b.strides[0] = 1; b.strides[1] = 9;
    } else if (kase == 3) { /* a: big; b: big.T sliced to (9 x 2) */
      b.data += 5 * 9 * 8; b.shape[0] = 9; b.shape[1] = 2;
      b.strides[0] = 1; b.strides[1] = 9;
    } else { /* a: every other column (strided: copied); b: a block */
      a.shape[1] = 5; a.strides[1] = 2;
      b.shape[0] = 5; b.shape[1] = 3;
    }
    CHECK(dl_nd_matmul(&r, &a, &b) == 0);
    CHECK(r.ndim == 2 && r.shape[0] == a.shape[0] &&
          r.shape[1] == b.shape[1]);
    for (i = 0; i < a.shape[0]; i++)
      for (j = 0; j < b.shape[1]; j++) {
        want = 0;
        for (l = 0; l < a.shape[1]; l++) want += at2(&a, i, l) * at2(&b, l, j);
        d = fmax(d, fabs(want - ((double *)r.data)[i * r.shape[1] + j]));
      }
    CHECK(d < 1e-9);
    dl_nd_release(&r);
    dl_nd_release(&a);
    dl_nd_release(&b);
  }
  dl_nd_release(&big);
}

/* The draws as dl_nd_random.c documents them, one Philox4x32-10 call per
   value, straight from Random123. */
static philox4x32_ctr_t ref_call(uint64_t seed, uint64_t c, uint32_t stream) {
  philox4x32_ctr_t ctr = {{(uint32_t)c, (uint32_t)(c >> 32), stream, 0}};
  philox4x32_key_t key = {{(uint32_t)seed, (uint32_t)(seed >> 32)}};
  return philox4x32(ctr, key);
}
static double ref_u(uint32_t hi, uint32_t lo) {
  uint64_t x = (uint64_t)hi << 32 | lo;
  return (double)(x >> 11) * 0x1p-53;
}
static double ref_uniform(uint64_t seed, uint64_t g) {
  uint64_t q = g / 32, r = g % 32;
  philox4x32_ctr_t v = ref_call(seed, q * 16 + r % 16, 0);
  return r < 16 ? ref_u(v.v[0], v.v[1]) : ref_u(v.v[2], v.v[3]);
}
static double ref_normal(uint64_t seed, uint64_t g) {
  philox4x32_ctr_t v = ref_call(seed, g, 1);
  double u1 = 1.0 - ref_u(v.v[0], v.v[1]), u2 = ref_u(v.v[2], v.v[3]);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
static int64_t ref_integer(uint64_t seed, uint64_t g, int64_t lo,
                           int64_t hi) {
  philox4x32_ctr_t v = ref_call(seed, g / 2, 2);
  int h = (int)(g % 2) * 2;
  uint64_t x = (uint64_t)v.v[h] << 32 | v.v[h + 1];
  uint64_t range = (uint64_t)(hi - lo) + 1;
  return lo + (int64_t)(uint64_t)(((unsigned __int128)x * range) >> 64);
}

/* The best instruction set is the one the kernel reports as usable (it
   drops a flag the system does not save the state of). */
static void test_simd_probe(void) {
#if defined(__x86_64__) && defined(__linux__)
  char line[8192];
  int want = DL_ND_SIMD_NONE, seen = 0;
  FILE *f = fopen("/proc/cpuinfo", "r");
  CHECK(f != NULL);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "flags", 5) == 0) {
      seen = 1;
      if (strstr(line, " avx512f ") || strstr(line, " avx512f\n"))
        want = DL_ND_SIMD_AVX512;
      else if (strstr(line, " avx2 ") || strstr(line, " avx2\n"))
        want = DL_ND_SIMD_AVX2;
      break;
    }
  fclose(f);
  CHECK(seen);
  CHECK(dl_nd_simd(-1) == want);
#endif
}

/* Every instruction set gives the documented values: blocks that start
   and end inside a 32-value group, runs long enough for the 4-block
   kernels, a seed over 32 bits, a counter whose low word wraps. */
static void test_random_reference(void) {
  static const struct { uint64_t seed; int64_t g, off, n; } cases[] = {
    {9, 1000, 0, 1000}, {9, 1000, 37, 700}, {0x123456789abULL, 5000, 3, 4097},
    {5, 2, 1, 1}, {77, (int64_t)1 << 38, ((int64_t)1 << 37) - 45, 300}};
  int level, c, best = dl_nd_simd(-1);
  for (level = best; level >= 0; level--) {
    dl_nd_simd(level);
    CHECK(dl_nd_simd_now() == level);
    for (c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
      int64_t gs = cases[c].g, off = cases[c].off, n = cases[c].n, i;
      dl_nd u, nr, in;
      CHECK(dl_nd_random(&u, DL_RND_UNIFORM, cases[c].seed, 1, &gs, &off,
                         &n, 0, 1) == 0);
      for (i = 0; i < n; i++)
        CHECK(((double *)u.data)[i] ==
              ref_uniform(cases[c].seed, (uint64_t)(off + i)));
      dl_nd_release(&u);
      CHECK(dl_nd_random(&u, DL_RND_UNIFORM, cases[c].seed, 1, &gs, &off,
                         &n, -2, 3) == 0);
      for (i = 0; i < n; i++)
        CHECK(((double *)u.data)[i] ==
              -2 + 5 * ref_uniform(cases[c].seed, (uint64_t)(off + i)));
      dl_nd_release(&u);
      if (n > 5000) continue;
      CHECK(dl_nd_random(&nr, DL_RND_NORMAL, cases[c].seed, 1, &gs, &off,
                         &n, 0, 1) == 0);
      CHECK(dl_nd_random(&in, DL_RND_INTEGERS, cases[c].seed, 1, &gs, &off,
                         &n, -3, 9) == 0);
      for (i = 0; i < n; i++) {
        CHECK(((double *)nr.data)[i] ==
              ref_normal(cases[c].seed, (uint64_t)(off + i)));
        CHECK(((int64_t *)in.data)[i] ==
              ref_integer(cases[c].seed, (uint64_t)(off + i), -3, 9));
      }
      dl_nd_release(&nr);
      dl_nd_release(&in);
    }
  }
  dl_nd_simd(best);
}

/* A fused program gives, at every instruction set, exactly what the
   operators one by one give: tiles of every length (n not a multiple of
   8 or of the tile), random inputs read twice, constants, operators the
   vector loops have and the ones they call out to. */
static void test_fused_levels(void) {
  enum { N = 5003 };
  /* sqrt(x * x + y / 3) - max(x, y) ^ 2 >= x * 0.25 , and its sum */
  static const dl_fz_ins prog[] = {
    {DL_FZ_IN, 0}, {DL_FZ_IN, 0}, {DL_FZ_BIN, DL_OP_MUL}, {DL_FZ_IN, 1},
    {DL_FZ_K, 0}, {DL_FZ_BIN, DL_OP_DIV}, {DL_FZ_BIN, DL_OP_ADD},
    {DL_FZ_UN, DL_UN_SQRT}, {DL_FZ_IN, 0}, {DL_FZ_IN, 1},
    {DL_FZ_BIN, DL_OP_MAX}, {DL_FZ_K, 1}, {DL_FZ_BIN, DL_OP_POW},
    {DL_FZ_BIN, DL_OP_SUB}};
  static const dl_fz_ins cmp[] = {
    {DL_FZ_IN, 0}, {DL_FZ_IN, 0}, {DL_FZ_BIN, DL_OP_MUL}, {DL_FZ_IN, 1},
    {DL_FZ_IN, 1}, {DL_FZ_BIN, DL_OP_MUL}, {DL_FZ_BIN, DL_OP_ADD},
    {DL_FZ_K, 2}, {DL_FZ_BIN, DL_OP_LT}};
  static const double consts[] = {3, 2, 1};
  static double want[N], got[N], xs[N];
  int64_t gs = N, off = 0, n = N, i;
  int level, best = dl_nd_simd(-1), hits = 0;
  volatile double two = 2; /* pow as the kernel calls it, not x * x */
  dl_nd x, y;
  dl_nd_gen gen;
  dl_fz_src ins[2];
  CHECK(dl_nd_random(&x, DL_RND_UNIFORM, 1, 1, &gs, &off, &n, 0, 1) == 0);
  CHECK(dl_nd_random(&y, DL_RND_UNIFORM, 2, 1, &gs, &off, &n, 0, 1) == 0);
  memset(&gen, 0, sizeof gen);
  gen.kind = DL_RND_UNIFORM;
  gen.seed = 1;
  gen.ndim = 1;
  gen.gshape[0] = gen.shape[0] = N;
  gen.p2 = 1;
  for (i = 0; i < N; i++) {
    double a = ((double *)x.data)[i], b = ((double *)y.data)[i];
    want[i] = sqrt(a * a + b / 3) - pow(fmax(a, b), two);
    hits += a * a + b * b < 1;
  }
  for (level = best; level >= 0; level--) {
    double s;
    dl_nd_simd(level);
    ins[0].p = (const double *)x.data; ins[0].gen = NULL;
    ins[1].p = (const double *)y.data; ins[1].gen = NULL;
    CHECK(dl_nd_fused(got, N, prog, 14, ins, consts) == 0);
    CHECK(memcmp(got, want, sizeof want) == 0);
    ins[0].p = NULL; ins[0].gen = &gen; /* x drawn tile by tile */
    CHECK(dl_nd_fused(got, N, prog, 14, ins, consts) == 0);
    CHECK(memcmp(got, want, sizeof want) == 0);
    CHECK(dl_nd_fused_sum(&s, N, cmp, 9, ins, consts) == 0);
    CHECK(s == hits);
    CHECK(dl_nd_fused(xs, N, cmp, 9, ins, consts) == 0);
    for (i = 0; i < N; i++) CHECK(xs[i] == 0.0 || xs[i] == 1.0);
    CHECK(dl_nd_fused(got, N, cmp, 8, ins, consts) == DL_ND_ESHAPE);
  }
  dl_nd_simd(best);
  dl_nd_release(&x);
  dl_nd_release(&y);
}

int main(void) {
  RUN(test_regressions);
  RUN(test_broadcast);
  RUN(test_bytes);
  RUN(test_random_blocks);
  RUN(test_simd_probe);
  RUN(test_random_reference);
  RUN(test_fused_levels);
  RUN(test_matmul_views);
  return TAP_END();
}

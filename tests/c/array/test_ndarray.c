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

int main(void) {
  RUN(test_regressions);
  RUN(test_broadcast);
  RUN(test_bytes);
  RUN(test_random_blocks);
  RUN(test_matmul_views);
  return TAP_END();
}

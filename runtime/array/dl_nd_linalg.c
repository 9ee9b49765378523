/*
** dl_nd_linalg.c -- matrix product (cblas) and dense linear algebra
** (LAPACKE) on dl_nd arrays.  Inputs of any dtype are converted to
** contiguous float64 copies first; LAPACK overwrites those copies.
**
** OpenBLAS and LAPACKE are loaded with dlopen on first use, not linked:
** loading OpenBLAS starts its threads and costs a process start well over
** 100 ms here, which every worker and every `dlua` run would pay.  In a
** worker (DLUA_WORKER set) OpenBLAS is told to use one thread before it
** loads: the cluster's parallelism is its processes.
*/
#include <limits.h>
#include "dl_nd.h"

#include <cblas.h>
#include <dlfcn.h>
#include <lapacke.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef void (*dgemm_fn)(CBLAS_LAYOUT, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE,
                         blasint, blasint, blasint, double, const double *,
                         blasint, const double *, blasint, double, double *,
                         blasint);
typedef lapack_int (*gesv_fn)(int, lapack_int, lapack_int, double *,
                              lapack_int, lapack_int *, double *,
                              lapack_int);
typedef lapack_int (*geqrf_fn)(int, lapack_int, lapack_int, double *,
                               lapack_int, double *);
typedef lapack_int (*orgqr_fn)(int, lapack_int, lapack_int, lapack_int,
                               double *, lapack_int, const double *);
typedef lapack_int (*gesdd_fn)(int, char, lapack_int, lapack_int, double *,
                               lapack_int, double *, double *, lapack_int,
                               double *, lapack_int);
typedef lapack_int (*potrf_fn)(int, char, lapack_int, double *, lapack_int);
typedef lapack_int (*getrf_fn)(int, lapack_int, lapack_int, double *,
                               lapack_int, lapack_int *);
typedef lapack_int (*gelsd_fn)(int, lapack_int, lapack_int, lapack_int,
                               double *, lapack_int, double *, lapack_int,
                               double *, double, lapack_int *);
typedef void (*dsyrk_fn)(CBLAS_LAYOUT, CBLAS_UPLO, CBLAS_TRANSPOSE, blasint,
                         blasint, double, const double *, blasint, double,
                         double *, blasint);
typedef void (*dtrsm_fn)(CBLAS_LAYOUT, CBLAS_SIDE, CBLAS_UPLO,
                         CBLAS_TRANSPOSE, CBLAS_DIAG, blasint, blasint,
                         double, const double *, blasint, double *, blasint);

static struct {
  int state; /* 0 not tried, 1 loaded, -1 failed */
  dgemm_fn dgemm;
  dsyrk_fn dsyrk;
  void (*set_threads)(int);
  int (*get_threads)(void);
  gesv_fn gesv;
  geqrf_fn geqrf;
  orgqr_fn orgqr;
  gesdd_fn gesdd;
  potrf_fn potrf;
  getrf_fn getrf;
  dtrsm_fn dtrsm;
  gelsd_fn gelsd;
} lib;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_load(void) {
  void *blas, *lapacke;
  const char *w = getenv("DLUA_WORKER");
  if (w && *w && getenv("OPENBLAS_NUM_THREADS") == NULL)
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
  blas = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_GLOBAL);
  lapacke = dlopen("liblapacke.so.3", RTLD_NOW | RTLD_GLOBAL);
  lib.state = -1;
  if (blas == NULL || lapacke == NULL) return;
  *(void **)&lib.dgemm = dlsym(blas, "cblas_dgemm");
  *(void **)&lib.dsyrk = dlsym(blas, "cblas_dsyrk");
  *(void **)&lib.set_threads = dlsym(blas, "openblas_set_num_threads");
  *(void **)&lib.get_threads = dlsym(blas, "openblas_get_num_threads");
  *(void **)&lib.gesv = dlsym(lapacke, "LAPACKE_dgesv");
  *(void **)&lib.geqrf = dlsym(lapacke, "LAPACKE_dgeqrf");
  *(void **)&lib.orgqr = dlsym(lapacke, "LAPACKE_dorgqr");
  *(void **)&lib.gesdd = dlsym(lapacke, "LAPACKE_dgesdd");
  *(void **)&lib.potrf = dlsym(lapacke, "LAPACKE_dpotrf");
  *(void **)&lib.getrf = dlsym(lapacke, "LAPACKE_dgetrf");
  *(void **)&lib.dtrsm = dlsym(blas, "cblas_dtrsm");
  *(void **)&lib.gelsd = dlsym(lapacke, "LAPACKE_dgelsd");
  if (lib.dgemm && lib.dsyrk && lib.set_threads && lib.get_threads && lib.gesv &&
      lib.geqrf && lib.orgqr && lib.gesdd && lib.potrf && lib.getrf &&
      lib.dtrsm && lib.gelsd) {
    if (w && *w) lib.set_threads(1);
    lib.state = 1;
  }
}

/* 0 when the libraries are there, else DL_ND_ENOBLAS. */
static int lib_ready(void) {
  pthread_once(&lib_once, lib_load);
  return lib.state == 1 ? 0 : DL_ND_ENOBLAS;
}

int dl_nd_blas_threads(int n) {
  int old;
  if (lib_ready()) return 0;
  old = lib.get_threads();
  if (n > 0) lib.set_threads(n);
  return old;
}

/* A contiguous float64 copy of a (always a copy: LAPACK writes to it). */
static int fcopy(dl_nd *out, const dl_nd *a) {
  return dl_nd_astype(out, a, DL_F64);
}

/* A contiguous float64 view or copy of a (read only). */
static int fview(dl_nd *out, const dl_nd *a) {
  if (a->dtype == DL_F64 && dl_nd_contiguous(a)) {
    dl_nd_view(out, a);
    return 0;
  }
  return dl_nd_astype(out, a, DL_F64);
}

/* How dgemm reads the 2-d float64 matrix a in place: row-major with
   leading dimension *ld (a slice of rows and columns of a C array), or
   column-major (*trans set: a transposed view, as x.T's blocks are).
   Returns 0 where neither fits (a copy is needed). */
static int blas_layout(const dl_nd *a, int *trans, int64_t *ld) {
  int64_t r = a->shape[0], c = a->shape[1];
  if (a->dtype != DL_F64 || a->ndim != 2 || r == 0 || c == 0) return 0;
  if ((c == 1 || a->strides[1] == 1) && a->strides[0] >= c &&
      a->strides[0] <= INT_MAX) {
    *trans = 0;
    *ld = r == 1 ? c : a->strides[0];
    return 1;
  }
  if ((r == 1 || a->strides[0] == 1) && a->strides[1] >= r &&
      a->strides[1] <= INT_MAX) {
    *trans = 1;
    *ld = c == 1 ? r : a->strides[1];
    return 1;
  }
  return 0;
}

/* The operand x of dgemm: x itself where blas_layout reads it in place
   (a view into *v), else a contiguous copy in *v. */
static int operand(dl_nd *v, const dl_nd *x, int *trans, int64_t *ld) {
  int rc;
  if (blas_layout(x, trans, ld)) {
    dl_nd_view(v, x);
    return 0;
  }
  if ((rc = fview(v, x)) != 0) return rc;
  *trans = 0;
  *ld = x->ndim == 2 ? x->shape[1] : x->shape[0];
  if (*ld < 1) *ld = 1;
  return 0;
}

/* r (+)= a b by dgemm: beta 0 writes r, beta 1 adds to it.  r is a
   C-contiguous float64 array of the product's shape. */
static int gemm(dl_nd *r, const dl_nd *a, const dl_nd *b, double beta) {
  int64_t m, k, n, lda, ldb;
  dl_nd ca, cb;
  int rc, ta, tb;
  m = a->ndim == 2 ? a->shape[0] : 1;
  k = a->shape[a->ndim - 1];
  n = b->ndim == 2 ? b->shape[1] : 1;
  /* a 1-d a is a row (1 x k), a 1-d b a column (k x 1) */
  if ((rc = operand(&ca, a, &ta, &lda)) != 0) return rc;
  if (a->ndim == 1) lda = k > 0 ? k : 1;
  if ((rc = operand(&cb, b, &tb, &ldb)) != 0) goto fail_a;
  if (b->ndim == 1) ldb = 1;
  if (m > 0 && n > 0 && k > 0)
    lib.dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
              tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, 1.0,
              (const double *)ca.data, (int)lda, (const double *)cb.data,
              (int)ldb, beta, (double *)r->data, (int)n);
  dl_nd_release(&cb);
fail_a:
  dl_nd_release(&ca);
  return rc;
}

/* Whether b is the transpose view of a (the same elements, axes swapped:
   a @ a.T), with a float64 matrix dgemm/dsyrk read in place. */
static int is_own_transpose(const dl_nd *a, const dl_nd *b) {
  int t;
  int64_t ld;
  return a->ndim == 2 && b->ndim == 2 && a->data == b->data &&
         a->shape[0] == b->shape[1] && a->shape[1] == b->shape[0] &&
         a->strides[0] == b->strides[1] && a->strides[1] == b->strides[0] &&
         blas_layout(a, &t, &ld);
}

/* r (+)= a a^T by dsyrk into r's upper triangle (r: C-contiguous n x n
   float64; the lower triangle is left to mirror()).  Half of gemm's flops:
   NumPy's matmul does the same for a @ a.T. */
static void syrk(dl_nd *r, const dl_nd *a, double beta) {
  int64_t n = a->shape[0], k = a->shape[1], ld;
  int t;
  blas_layout(a, &t, &ld);
  if (n > 0 && k > 0)
    lib.dsyrk(CblasRowMajor, CblasUpper, t ? CblasTrans : CblasNoTrans,
              (int)n, (int)k, 1.0, (const double *)a->data, (int)ld, beta,
              (double *)r->data, (int)n);
}

/* Copy the upper triangle of the n x n C-contiguous r onto its lower one,
   in tiles (both sides stay in cache). */
static void mirror(dl_nd *r) {
  int64_t n = r->shape[0], i0, j0, i, j;
  double *c = (double *)r->data;
  enum { T = 64 };
  for (i0 = 0; i0 < n; i0 += T)
    for (j0 = 0; j0 <= i0; j0 += T)
      for (i = i0; i < n && i < i0 + T; i++)
        for (j = j0; j < i && j < j0 + T; j++) c[i * n + j] = c[j * n + i];
}

/* Shape of the product a b into shape (*nd axes); ESHAPE when they do not
   align. */
static int product_shape(const dl_nd *a, const dl_nd *b, int *nd,
                         int64_t *shape) {
  if (a->ndim < 1 || a->ndim > 2 || b->ndim < 1 || b->ndim > 2 ||
      a->shape[a->ndim - 1] != b->shape[0])
    return DL_ND_ESHAPE;
  *nd = 0;
  if (a->ndim == 2) shape[(*nd)++] = a->shape[0];
  if (b->ndim == 2) shape[(*nd)++] = b->shape[1];
  return 0;
}

int dl_nd_matmul_sum(dl_nd *out, int n, const dl_nd *const *a,
                     const dl_nd *const *b) {
  int64_t shape[2], s2[2];
  dl_nd r;
  int rc, nd, nd2, i, f32 = 1;
  if (n < 1) return DL_ND_ESHAPE;
  if ((rc = product_shape(a[0], b[0], &nd, shape)) != 0) return rc;
  for (i = 1; i < n; i++) {
    if ((rc = product_shape(a[i], b[i], &nd2, s2)) != 0) return rc;
    if (nd2 != nd || memcmp(s2, shape, sizeof(int64_t) * (size_t)nd))
      return DL_ND_ESHAPE;
  }
  if ((rc = lib_ready()) != 0) return rc;
  /* the first dgemm (beta 0) writes every element; zero-filled when it
     is not called (an empty inner dimension) */
  if ((rc = (a[0]->shape[a[0]->ndim - 1] > 0 ? dl_nd_alloc_uninit
                                             : dl_nd_alloc)(
           &r, DL_F64, nd, shape)) != 0)
    return rc;
  for (i = 0; i < n && is_own_transpose(a[i], b[i]); i++) {}
  if (i == n && a[0]->shape[1] > 0) { /* every pair is x, x.T */
    for (i = 0; i < n; i++) syrk(&r, a[i], i ? 1.0 : 0.0);
    mirror(&r);
    *out = r;
    return 0;
  }
  for (i = 0; i < n; i++) {
    if ((rc = gemm(&r, a[i], b[i], i ? 1.0 : 0.0)) != 0) {
      dl_nd_release(&r);
      return rc;
    }
    f32 = f32 && a[i]->dtype == DL_F32 && b[i]->dtype == DL_F32;
  }
  *out = r;
  if (f32) { /* float32 in, out */
    dl_nd n32;
    rc = dl_nd_astype(&n32, &r, DL_F32);
    dl_nd_release(&r);
    if (rc == 0) *out = n32;
  }
  return rc;
}

int dl_nd_matmul(dl_nd *out, const dl_nd *a, const dl_nd *b) {
  return dl_nd_matmul_sum(out, 1, &a, &b);
}

static int square(const dl_nd *a) {
  return a->ndim == 2 && a->shape[0] == a->shape[1];
}

int dl_nd_solve(dl_nd *out, const dl_nd *a, const dl_nd *b) {
  dl_nd ca, cb;
  lapack_int *piv, n, nrhs, info;
  int rc;
  if (!square(a) || b->ndim < 1 || b->ndim > 2 || b->shape[0] != a->shape[0])
    return DL_ND_ESHAPE;
  if ((rc = lib_ready()) != 0) return rc;
  n = (lapack_int)a->shape[0];
  nrhs = b->ndim == 2 ? (lapack_int)b->shape[1] : 1;
  if ((rc = fcopy(&ca, a)) != 0) return rc;
  if ((rc = fcopy(&cb, b)) != 0) goto fail_a;
  {
    dl_nd pv;
    int64_t pn = n > 0 ? n : 1;
    if ((rc = dl_nd_alloc(&pv, DL_I64, 1, &pn)) != 0) goto fail_b;
    piv = (lapack_int *)pv.data;
    info = n > 0 ? lib.gesv(LAPACK_ROW_MAJOR, n, nrhs,
                                 (double *)ca.data, n, piv,
                                 (double *)cb.data, nrhs)
                 : 0;
    dl_nd_release(&pv);
  }
  if (info > 0) rc = DL_ND_ESINGULAR;
  else if (info < 0) rc = DL_ND_ELAPACK;
  else {
    *out = cb;
    dl_nd_release(&ca);
    return 0;
  }
fail_b:
  dl_nd_release(&cb);
fail_a:
  dl_nd_release(&ca);
  return rc;
}

int dl_nd_inv(dl_nd *out, const dl_nd *a) {
  dl_nd eye;
  int64_t i, n;
  int rc;
  if (!square(a)) return DL_ND_ESHAPE;
  n = a->shape[0];
  if ((rc = dl_nd_alloc(&eye, DL_F64, 2, a->shape)) != 0) return rc;
  for (i = 0; i < n; i++) ((double *)eye.data)[i * n + i] = 1.0;
  rc = dl_nd_solve(out, a, &eye);
  dl_nd_release(&eye);
  return rc;
}

int dl_nd_qr(dl_nd *q, dl_nd *r, const dl_nd *a) {
  dl_nd ca, tau, rr;
  lapack_int m, n, k, info;
  int64_t shape[2], i, j;
  int rc;
  if (a->ndim != 2) return DL_ND_ESHAPE;
  if ((rc = lib_ready()) != 0) return rc;
  m = (lapack_int)a->shape[0];
  n = (lapack_int)a->shape[1];
  k = m < n ? m : n;
  if ((rc = fcopy(&ca, a)) != 0) return rc;
  shape[0] = k > 0 ? k : 1;
  if ((rc = dl_nd_alloc(&tau, DL_F64, 1, shape)) != 0) goto fail_a;
  shape[0] = k;
  shape[1] = n;
  if ((rc = dl_nd_alloc(&rr, DL_F64, 2, shape)) != 0) goto fail_t;
  if (k > 0) {
    info = lib.geqrf(LAPACK_ROW_MAJOR, m, n, (double *)ca.data, n,
                          (double *)tau.data);
    if (info != 0) { rc = DL_ND_ELAPACK; goto fail_r; }
    for (i = 0; i < k; i++)
      for (j = i; j < n; j++)
        ((double *)rr.data)[i * n + j] = ((double *)ca.data)[i * n + j];
    info = lib.orgqr(LAPACK_ROW_MAJOR, m, k, k, (double *)ca.data, n,
                          (const double *)tau.data);
    if (info != 0) { rc = DL_ND_ELAPACK; goto fail_r; }
  }
  /* Q is the first k columns of ca (m x n, row stride n): a view. */
  ca.shape[1] = k;
  *q = ca;
  *r = rr;
  dl_nd_release(&tau);
  return 0;
fail_r:
  dl_nd_release(&rr);
fail_t:
  dl_nd_release(&tau);
fail_a:
  dl_nd_release(&ca);
  return rc;
}

int dl_nd_svd(dl_nd *u, dl_nd *s, dl_nd *vt, const dl_nd *a) {
  dl_nd ca, cu, cs, cv;
  lapack_int m, n, k, info;
  int64_t shape[2];
  int rc;
  if (a->ndim != 2) return DL_ND_ESHAPE;
  if ((rc = lib_ready()) != 0) return rc;
  m = (lapack_int)a->shape[0];
  n = (lapack_int)a->shape[1];
  k = m < n ? m : n;
  if ((rc = fcopy(&ca, a)) != 0) return rc;
  shape[0] = m;
  shape[1] = k;
  if ((rc = dl_nd_alloc(&cu, DL_F64, 2, shape)) != 0) goto fail_a;
  shape[0] = k;
  if ((rc = dl_nd_alloc(&cs, DL_F64, 1, shape)) != 0) goto fail_u;
  shape[1] = n;
  if ((rc = dl_nd_alloc(&cv, DL_F64, 2, shape)) != 0) goto fail_s;
  if (k > 0) {
    info = lib.gesdd(LAPACK_ROW_MAJOR, 'S', m, n, (double *)ca.data, n,
                          (double *)cs.data, (double *)cu.data, k,
                          (double *)cv.data, n);
    if (info != 0) { rc = DL_ND_ELAPACK; goto fail_v; }
  }
  *u = cu;
  *s = cs;
  *vt = cv;
  dl_nd_release(&ca);
  return 0;
fail_v:
  dl_nd_release(&cv);
fail_s:
  dl_nd_release(&cs);
fail_u:
  dl_nd_release(&cu);
fail_a:
  dl_nd_release(&ca);
  return rc;
}

int dl_nd_cholesky(dl_nd *out, const dl_nd *a) {
  dl_nd ca;
  lapack_int n, info;
  int64_t i, j;
  int rc;
  if (!square(a)) return DL_ND_ESHAPE;
  if ((rc = lib_ready()) != 0) return rc;
  n = (lapack_int)a->shape[0];
  if ((rc = fcopy(&ca, a)) != 0) return rc;
  info = n > 0 ? lib.potrf(LAPACK_ROW_MAJOR, 'L', n, (double *)ca.data,
                                n)
               : 0;
  if (info != 0) {
    dl_nd_release(&ca);
    return info > 0 ? DL_ND_ENOTPD : DL_ND_ELAPACK;
  }
  for (i = 0; i < n; i++)
    for (j = i + 1; j < n; j++) ((double *)ca.data)[i * n + j] = 0.0;
  *out = ca;
  return 0;
}

/* ------------------------------------------------------------------ LU */

int dl_nd_lu_factor(dl_nd *lu, dl_nd *piv, const dl_nd *a) {
  dl_nd ca, pv;
  lapack_int m, n, k, info, *ip;
  int64_t pk, i;
  int rc;
  if (a->ndim != 2) return DL_ND_ESHAPE;
  if ((rc = lib_ready()) != 0) return rc;
  m = (lapack_int)a->shape[0];
  n = (lapack_int)a->shape[1];
  k = m < n ? m : n;
  if ((rc = fcopy(&ca, a)) != 0) return rc;
  pk = k;
  if ((rc = dl_nd_alloc(&pv, DL_I64, 1, &pk)) != 0) goto fail_a;
  ip = (lapack_int *)malloc(sizeof *ip * (size_t)(k > 0 ? k : 1));
  if (ip == NULL) { rc = DL_ND_ENOMEM; goto fail_p; }
  info = k > 0 ? lib.getrf(LAPACK_ROW_MAJOR, m, n, (double *)ca.data,
                           n > 0 ? n : 1, ip)
               : 0;
  for (i = 0; i < k; i++) ((int64_t *)pv.data)[i] = ip[i];
  free(ip);
  if (info > 0) { rc = DL_ND_ESINGULAR; goto fail_p; }
  if (info < 0) { rc = DL_ND_ELAPACK; goto fail_p; }
  *lu = ca;
  *piv = pv;
  return 0;
fail_p:
  dl_nd_release(&pv);
fail_a:
  dl_nd_release(&ca);
  return rc;
}

int dl_nd_lu_apply(dl_nd *out, const dl_nd *lu, const dl_nd *piv,
                   const dl_nd *c) {
  dl_nd cl, cc;
  int64_t m, n, w, i, j;
  double *d;
  const int64_t *pv;
  int rc;
  if (lu->ndim != 2 || piv->ndim != 1 || piv->dtype != DL_I64 ||
      c->ndim < 1 || c->ndim > 2)
    return DL_ND_ESHAPE;
  m = lu->shape[0];
  n = lu->shape[1];
  w = c->ndim == 2 ? c->shape[1] : 1;
  if (m < n || piv->shape[0] != n || c->shape[0] != m) return DL_ND_ESHAPE;
  if ((rc = lib_ready()) != 0) return rc;
  if ((rc = fview(&cl, lu)) != 0) return rc;
  if ((rc = fcopy(&cc, c)) != 0) { dl_nd_release(&cl); return rc; }
  d = (double *)cc.data;
  for (i = 0; i < n; i++) { /* LAPACK's row interchanges, in order */
    int64_t r;
    pv = (const int64_t *)dl_nd_at(piv, &i);
    r = *pv - 1;
    if (r < i || r >= m) { rc = DL_ND_ESHAPE; goto done; }
    if (r != i)
      for (j = 0; j < w; j++) {
        double t = d[i * w + j];
        d[i * w + j] = d[r * w + j];
        d[r * w + j] = t;
      }
  }
  if (n > 0 && w > 0) {
    const double *l = (const double *)cl.data;
    /* top: U = L11^-1 top; bottom -= L21 U */
    lib.dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans,
              CblasUnit, (int)n, (int)w, 1.0, l, (int)n, d, (int)w);
    if (m > n)
      lib.dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(m - n),
                (int)w, (int)n, -1.0, l + n * n, (int)n, d, (int)w, 1.0,
                d + n * w, (int)w);
  }
done:
  dl_nd_release(&cl);
  if (rc) {
    dl_nd_release(&cc);
    return rc;
  }
  *out = cc;
  return 0;
}

int dl_nd_solve_triangular(dl_nd *out, const dl_nd *a, const dl_nd *b,
                           int lower, int unit) {
  dl_nd ca, cb;
  int64_t n, w, i;
  int rc;
  if (!square(a) || b->ndim < 1 || b->ndim > 2 || b->shape[0] != a->shape[0])
    return DL_ND_ESHAPE;
  if ((rc = lib_ready()) != 0) return rc;
  n = a->shape[0];
  w = b->ndim == 2 ? b->shape[1] : 1;
  if ((rc = fview(&ca, a)) != 0) return rc;
  if (!unit)
    for (i = 0; i < n; i++)
      if (((const double *)ca.data)[i * n + i] == 0.0) {
        dl_nd_release(&ca);
        return DL_ND_ESINGULAR;
      }
  if ((rc = fcopy(&cb, b)) != 0) { dl_nd_release(&ca); return rc; }
  if (n > 0 && w > 0)
    lib.dtrsm(CblasRowMajor, CblasLeft, lower ? CblasLower : CblasUpper,
              CblasNoTrans, unit ? CblasUnit : CblasNonUnit, (int)n, (int)w,
              1.0, (const double *)ca.data, (int)n, (double *)cb.data,
              (int)w);
  dl_nd_release(&ca);
  *out = cb;
  return 0;
}

/* ---------------------------------------------------------- least squares */

int dl_nd_lstsq(dl_nd *x, dl_nd *res, dl_nd *s, int64_t *rank,
                const dl_nd *a, const dl_nd *b, double rcond) {
  dl_nd ca, cb, cs, cx;
  lapack_int m, n, k, nrhs, ldb, info, rk = 0;
  int64_t shape[2], i, j;
  int rc;
  if (a->ndim != 2 || b->ndim < 1 || b->ndim > 2 || b->shape[0] != a->shape[0])
    return DL_ND_ESHAPE;
  if ((rc = lib_ready()) != 0) return rc;
  m = (lapack_int)a->shape[0];
  n = (lapack_int)a->shape[1];
  k = m < n ? m : n;
  nrhs = b->ndim == 2 ? (lapack_int)b->shape[1] : 1;
  ldb = nrhs > 0 ? nrhs : 1;
  if ((rc = fcopy(&ca, a)) != 0) return rc;
  /* b padded to max(m, n) rows: dgelsd writes x into its first n */
  shape[0] = m > n ? m : n;
  shape[1] = nrhs;
  if ((rc = dl_nd_alloc(&cb, DL_F64, 2, shape)) != 0) goto fail_a;
  {
    dl_nd bv = *b, dst = cb;
    int64_t bs[2];
    bv.ndim = 2;
    bs[0] = b->shape[0];
    bs[1] = nrhs;
    if (b->ndim == 1) { bv.strides[1] = 0; bv.shape[1] = 1; }
    dst.shape[0] = bs[0];
    dst.buf = NULL; /* a borrowed view: no reference */
    if ((rc = dl_nd_assign(&dst, &bv)) != 0) goto fail_b;
  }
  shape[0] = k;
  if ((rc = dl_nd_alloc(&cs, DL_F64, 1, shape)) != 0) goto fail_b;
  if (k > 0 && nrhs > 0) {
    info = lib.gelsd(LAPACK_ROW_MAJOR, m, n, nrhs, (double *)ca.data,
                     n > 0 ? n : 1, (double *)cb.data, ldb,
                     (double *)cs.data, rcond, &rk);
    if (info != 0) { rc = DL_ND_ELAPACK; goto fail_s; }
  } else if (k > 0) { /* no right-hand side: the singular values alone */
    dl_nd u, vt, s2;
    if ((rc = dl_nd_svd(&u, &s2, &vt, a)) != 0) goto fail_s;
    memcpy(cs.data, s2.data, sizeof(double) * (size_t)k);
    for (i = 0; i < k; i++)
      if (((double *)cs.data)[i] >
          (rcond < 0 ? 2.220446049250313e-16 : rcond) *
              ((double *)cs.data)[0])
        rk++;
    dl_nd_release(&u);
    dl_nd_release(&vt);
    dl_nd_release(&s2);
  }
  shape[0] = n;
  shape[1] = nrhs;
  if ((rc = dl_nd_alloc(&cx, DL_F64, b->ndim, shape)) != 0) goto fail_s;
  for (i = 0; i < n; i++)
    for (j = 0; j < nrhs; j++)
      ((double *)cx.data)[i * nrhs + j] = ((double *)cb.data)[i * nrhs + j];
  /* residuals as NumPy gives them: per column, when a has full column
     rank and more rows than columns; else none */
  shape[0] = (rk == n && m > n) ? (b->ndim == 2 ? nrhs : 1) : 0;
  if ((rc = dl_nd_alloc(res, DL_F64, 1, shape)) != 0) {
    dl_nd_release(&cx);
    goto fail_s;
  }
  if (shape[0] > 0) {
    dl_nd ax, bb;
    if ((rc = dl_nd_matmul(&ax, a, &cx)) != 0 ||
        ((rc = fview(&bb, b)) != 0 && (dl_nd_release(&ax), 1))) {
      dl_nd_release(res);
      dl_nd_release(&cx);
      goto fail_s;
    }
    for (i = 0; i < m; i++)
      for (j = 0; j < nrhs; j++) {
        double d = ((double *)bb.data)[i * nrhs + j] -
                   ((double *)ax.data)[i * nrhs + j];
        ((double *)res->data)[j] += d * d;
      }
    dl_nd_release(&ax);
    dl_nd_release(&bb);
  }
  *x = cx;
  *s = cs;
  *rank = rk;
  dl_nd_release(&cb);
  dl_nd_release(&ca);
  return 0;
fail_s:
  dl_nd_release(&cs);
fail_b:
  dl_nd_release(&cb);
fail_a:
  dl_nd_release(&ca);
  return rc;
}

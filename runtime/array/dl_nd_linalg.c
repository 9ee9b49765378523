/*
** dl_nd_linalg.c -- matrix product (cblas) and dense linear algebra
** (LAPACKE) on dl_nd arrays.  Inputs of any dtype are converted to
** contiguous float64 copies first; LAPACK overwrites those copies.
*/
#include "dl_nd.h"

#include <cblas.h>
#include <lapacke.h>
#include <string.h>

/* OpenBLAS's own controls (declared in its cblas.h, but not in every
   cblas.h). */
void openblas_set_num_threads(int n);
int openblas_get_num_threads(void);

int dl_nd_blas_threads(int n) {
  int old = openblas_get_num_threads();
  if (n > 0) openblas_set_num_threads(n);
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

int dl_nd_matmul(dl_nd *out, const dl_nd *a, const dl_nd *b) {
  int64_t m, k, k2, n, shape[2];
  dl_nd ca, cb, r;
  int rc, nd;
  if (a->ndim < 1 || a->ndim > 2 || b->ndim < 1 || b->ndim > 2)
    return DL_ND_ESHAPE;
  m = a->ndim == 2 ? a->shape[0] : 1;
  k = a->shape[a->ndim - 1];
  k2 = b->shape[0];
  n = b->ndim == 2 ? b->shape[1] : 1;
  if (k != k2) return DL_ND_ESHAPE;
  nd = 0;
  if (a->ndim == 2) shape[nd++] = m;
  if (b->ndim == 2) shape[nd++] = n;
  if ((rc = fview(&ca, a)) != 0) return rc;
  if ((rc = fview(&cb, b)) != 0) goto fail_a;
  if ((rc = (m > 0 && n > 0 && k > 0 ? dl_nd_alloc_uninit : dl_nd_alloc)(
         &r, DL_F64, nd, shape)) != 0)
    goto fail_b;
  if (m > 0 && n > 0 && k > 0)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n,
                (int)k, 1.0, (const double *)ca.data, (int)k,
                (const double *)cb.data, (int)n, 0.0, (double *)r.data,
                (int)n);
  *out = r;
fail_b:
  dl_nd_release(&cb);
fail_a:
  dl_nd_release(&ca);
  return rc;
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
  n = (lapack_int)a->shape[0];
  nrhs = b->ndim == 2 ? (lapack_int)b->shape[1] : 1;
  if ((rc = fcopy(&ca, a)) != 0) return rc;
  if ((rc = fcopy(&cb, b)) != 0) goto fail_a;
  {
    dl_nd pv;
    int64_t pn = n > 0 ? n : 1;
    if ((rc = dl_nd_alloc(&pv, DL_I64, 1, &pn)) != 0) goto fail_b;
    piv = (lapack_int *)pv.data;
    info = n > 0 ? LAPACKE_dgesv(LAPACK_ROW_MAJOR, n, nrhs,
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
    info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, m, n, (double *)ca.data, n,
                          (double *)tau.data);
    if (info != 0) { rc = DL_ND_ELAPACK; goto fail_r; }
    for (i = 0; i < k; i++)
      for (j = i; j < n; j++)
        ((double *)rr.data)[i * n + j] = ((double *)ca.data)[i * n + j];
    info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, m, k, k, (double *)ca.data, n,
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
    info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', m, n, (double *)ca.data, n,
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
  n = (lapack_int)a->shape[0];
  if ((rc = fcopy(&ca, a)) != 0) return rc;
  info = n > 0 ? LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, (double *)ca.data,
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

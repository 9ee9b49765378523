/*
** dl_nd.c -- n-dimensional arrays: allocation, views, broadcasting
** iteration, elementwise kernels, reductions.  See dl_nd.h.
*/
#include "dl_nd.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "dl_buf.h"
#include "dl_mem.h"

size_t dl_nd_itemsize(dl_dtype t) {
  return t == DL_BOOL ? 1 : t == DL_F32 ? 4 : 8;
}

const char *dl_nd_dtype_name(dl_dtype t) {
  switch (t) {
  case DL_F64: return "float64";
  case DL_I64: return "int64";
  case DL_F32: return "float32";
  default: return "bool";
  }
}

int64_t dl_nd_size(const dl_nd *a) {
  uint64_t n = 1; /* unsigned: a zero-size array may have huge axes */
  int i;
  for (i = 0; i < a->ndim; i++) n *= (uint64_t)a->shape[i];
  return (int64_t)n;
}

int dl_nd_contiguous(const dl_nd *a) {
  int64_t s = 1;
  int i;
  if (dl_nd_size(a) == 0) return 1;
  for (i = a->ndim - 1; i >= 0; i--) {
    if (a->shape[i] != 1 && a->strides[i] != s) return 0;
    s *= a->shape[i];
  }
  return 1;
}

const char *dl_nd_strerror(int code) {
  switch (code) {
  case DL_ND_ENOMEM: return "not enough memory";
  case DL_ND_EBCAST: return "shapes cannot be broadcast together";
  case DL_ND_ESHAPE: return "shapes do not fit";
  case DL_ND_ENAN: return "cannot convert NaN or infinity to int64";
  case DL_ND_ESINGULAR: return "singular matrix";
  case DL_ND_ENOTPD: return "matrix is not positive definite";
  case DL_ND_ELAPACK: return "LAPACK failed";
  case DL_ND_EDTYPE: return "operation not defined for this dtype";
  case DL_ND_EZERODIV: return "integer division or modulo by zero";
  case DL_ND_EDOMAIN: return "integers to negative integer powers are not "
                             "allowed";
  case DL_ND_EEMPTY: return "zero-size array has no minimum or maximum";
  case DL_ND_ENOBLAS: return "cannot load OpenBLAS and LAPACKE "
                             "(libopenblas0, liblapacke)";
  case DL_ND_EREADONLY: return "the array is read-only (a task's input, "
                               "shared with other tasks: copy() it to "
                               "change it)";
  default: return "error";
  }
}

void dl_nd_shape_str(int ndim, const int64_t *shape, char *out, size_t n) {
  size_t len = 0;
  int i;
  if (n == 0) return;
  out[0] = '\0';
  len += (size_t)snprintf(out, n, "(");
  for (i = 0; i < ndim && len < n; i++)
    len += (size_t)snprintf(out + len, n - len, "%s%lld", i ? ", " : "",
                            (long long)shape[i]);
  if (len < n)
    snprintf(out + len, n - len, ndim == 1 ? ",)" : ")");
}

/* Released buffers kept for reuse (see dl_nd_trim), most recent last. */
#define CACHE_SLOTS 32
#define CACHE_MIN ((size_t)64 << 10)
#define CACHE_MAX ((size_t)256 << 20)
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static dl_ndbuf *cache[CACHE_SLOTS];
static int ncache;
static size_t cache_bytes;
static size_t allocated; /* bytes handed out since dl_nd_allocated */

/* A buffer of at least bytes: a cached one (at most twice as big) or a
   new one. */
static dl_ndbuf *buf_get(size_t bytes) {
  dl_ndbuf *b = NULL;
  int i;
  pthread_mutex_lock(&cache_mu);
  allocated += bytes;
  if (bytes >= CACHE_MIN)
    for (i = ncache - 1; i >= 0; i--)
      if (cache[i]->cap >= bytes && cache[i]->cap / 2 <= bytes) {
        b = cache[i];
        cache_bytes -= b->cap;
        cache[i] = cache[--ncache];
        break;
      }
  pthread_mutex_unlock(&cache_mu);
  if (b == NULL) {
    b = (dl_ndbuf *)dl_realloc(NULL, sizeof *b + bytes + 8);
    if (b == NULL) return NULL;
    b->cap = bytes;
  }
  b->refs = 1;
  b->drop = NULL;
  b->owner = NULL;
  b->ro = 0;
  return b;
}

static pthread_once_t hook_once = PTHREAD_ONCE_INIT;
static void add_trim_hook(void) { dl_mem_on_trim(dl_nd_trim); }

/* Keep b for reuse, within dl_mem's bound on freed memory kept (a worker
   sets it from its memory limit, and empties both caches with
   dl_mem_trim when its memory runs short), or free it. */
static void buf_put(dl_ndbuf *b) {
  size_t max;
  if (b->drop) { /* borrowed: give the bytes back, never reuse */
    b->drop(b->owner);
    dl_free(b);
    return;
  }
  pthread_once(&hook_once, add_trim_hook);
  max = dl_mem_cache_max();
  if (max > CACHE_MAX) max = CACHE_MAX;
  pthread_mutex_lock(&cache_mu);
  if (b->cap >= CACHE_MIN && b->cap <= max / 4) {
    while (ncache > 0 && (ncache == CACHE_SLOTS ||
                          cache_bytes + b->cap > max)) {
      dl_ndbuf *old = cache[0];
      cache_bytes -= old->cap;
      memmove(cache, cache + 1, sizeof cache[0] * (size_t)--ncache);
      dl_free(old);
    }
    cache[ncache++] = b;
    cache_bytes += b->cap;
    b = NULL;
  }
  pthread_mutex_unlock(&cache_mu);
  if (b) dl_free(b);
}

void dl_nd_trim(void) {
  pthread_mutex_lock(&cache_mu);
  while (ncache > 0) dl_free(cache[--ncache]);
  cache_bytes = 0;
  pthread_mutex_unlock(&cache_mu);
}

size_t dl_nd_allocated(void) {
  size_t n;
  pthread_mutex_lock(&cache_mu);
  n = allocated;
  allocated = 0;
  pthread_mutex_unlock(&cache_mu);
  return n;
}

int dl_nd_alloc_uninit(dl_nd *a, dl_dtype t, int ndim,
                       const int64_t *shape) {
  int64_t n = 1, s;
  size_t bytes;
  dl_ndbuf *b;
  int i;
  if (ndim < 0 || ndim > DL_ND_MAXDIM) return DL_ND_ESHAPE;
  for (i = 0; i < ndim; i++) {
    if (shape[i] < 0) return DL_ND_ESHAPE;
    if (shape[i] && n > INT64_MAX / 16 / shape[i]) return DL_ND_ENOMEM;
    n *= shape[i];
  }
  bytes = (size_t)n * dl_nd_itemsize(t);
  if ((b = buf_get(bytes)) == NULL) return DL_ND_ENOMEM;
  a->dtype = t;
  a->ndim = ndim;
  s = 1;
  for (i = ndim - 1; i >= 0; i--) { /* zero-size arrays: strides 0 */
    a->shape[i] = shape[i];
    a->strides[i] = n ? s : 0;
    if (n) s *= shape[i];
  }
  a->buf = b;
  a->data = (char *)b->data;
  return 0;
}

int dl_nd_alloc(dl_nd *a, dl_dtype t, int ndim, const int64_t *shape) {
  int rc = dl_nd_alloc_uninit(a, t, ndim, shape);
  if (rc == 0) memset(a->data, 0, (size_t)dl_nd_size(a) * dl_nd_itemsize(t));
  return rc;
}

void dl_nd_release(dl_nd *a) {
  if (a->buf != NULL && --a->buf->refs == 0) buf_put(a->buf);
  a->buf = NULL;
  a->data = NULL;
}

int dl_nd_readonly(const dl_nd *a) {
  return a->buf != NULL && a->buf->ro;
}

int dl_nd_borrow(dl_nd *a, dl_dtype t, int ndim, const int64_t *shape,
                 const char *p, void (*hold)(void *), void (*drop)(void *),
                 void *owner) {
  int64_t s = 1;
  int i;
  dl_ndbuf *b = (dl_ndbuf *)dl_realloc(NULL, sizeof *b);
  if (b == NULL) return DL_ND_ENOMEM;
  b->refs = 1;
  b->cap = 0;
  b->drop = drop;
  b->owner = owner;
  b->ro = 1;
  hold(owner);
  a->dtype = t;
  a->ndim = ndim;
  for (i = ndim - 1; i >= 0; i--) {
    a->shape[i] = shape[i];
    a->strides[i] = s;
    s *= shape[i];
  }
  a->buf = b;
  a->data = (char *)p;
  return 0;
}

void dl_nd_view(dl_nd *dst, const dl_nd *src) {
  *dst = *src;
  if (dst->buf) dst->buf->refs++;
}

char *dl_nd_at(const dl_nd *a, const int64_t *idx) {
  int64_t off = 0;
  int i;
  for (i = 0; i < a->ndim; i++) off += idx[i] * a->strides[i];
  return a->data + off * (int64_t)dl_nd_itemsize(a->dtype);
}

int dl_nd_broadcast_shape(int na, const int64_t *sa, int nb,
                          const int64_t *sb, int *nout, int64_t *out) {
  int n = na > nb ? na : nb, i;
  for (i = 0; i < n; i++) {
    int ia = na - n + i, ib = nb - n + i;
    int64_t x = ia >= 0 ? sa[ia] : 1, y = ib >= 0 ? sb[ib] : 1;
    if (x == y || y == 1) out[i] = x;
    else if (x == 1) out[i] = y;
    else return DL_ND_EBCAST;
  }
  *nout = n;
  return 0;
}

/* ------------------------------------------------------------ iteration */

/* Byte strides of a broadcast to ndim/shape (0 along stretched axes). */
static void bstrides(const dl_nd *a, int ndim, const int64_t *shape,
                     int64_t *bs) {
  int64_t isz = (int64_t)dl_nd_itemsize(a->dtype);
  int i;
  for (i = 0; i < ndim; i++) {
    int j = a->ndim - ndim + i;
    bs[i] = (j < 0 || (a->shape[j] == 1 && shape[i] != 1))
              ? 0 : a->strides[j] * isz;
  }
}

/* An inner loop over n elements of up to three inputs and one output. */
typedef void (*kern)(int64_t n, char *o, int64_t so, const char *a,
                     int64_t sa, const char *b, int64_t sb, const char *c,
                     int64_t sc);

/* Run k over every element of shape[ndim]: the last axis is the inner
   loop, the others are counted like an odometer. */
static void iterate(int ndim, const int64_t *shape, kern k, char *o,
                    const int64_t *so, const char *a, const int64_t *sa,
                    const char *b, const int64_t *sb, const char *c,
                    const int64_t *sc) {
  int64_t idx[DL_ND_MAXDIM] = {0};
  int64_t n;
  int i;
  if (ndim == 0) {
    k(1, o, 0, a, 0, b, 0, c, 0);
    return;
  }
  for (i = 0; i < ndim; i++)
    if (shape[i] == 0) return;
  n = shape[ndim - 1];
  for (;;) {
    k(n, o, so[ndim - 1], a, sa ? sa[ndim - 1] : 0, b, sb ? sb[ndim - 1] : 0,
      c, sc ? sc[ndim - 1] : 0);
    for (i = ndim - 2; i >= 0; i--) {
      idx[i]++;
      o += so[i];
      if (a) a += sa[i];
      if (b) b += sb[i];
      if (c) c += sc[i];
      if (idx[i] < shape[i]) break;
      o -= so[i] * shape[i];
      if (a) a -= sa[i] * shape[i];
      if (b) b -= sb[i] * shape[i];
      if (c) c -= sc[i] * shape[i];
      idx[i] = 0;
    }
    if (i < 0) return;
  }
}

/* ------------------------------------------------------------- casting */

#define CAST_K(name, TI, TO, expr)                                        \
  static void name(int64_t n, char *o, int64_t so, const char *a,         \
                   int64_t sa, const char *b, int64_t sb, const char *c,  \
                   int64_t sc) {                                          \
    int64_t i;                                                            \
    (void)b; (void)sb; (void)c; (void)sc;                                 \
    for (i = 0; i < n; i++) {                                             \
      TI x = *(const TI *)(a + i * sa);                                   \
      *(TO *)(o + i * so) = (expr);                                       \
    }                                                                     \
  }
CAST_K(cp_f_f, double, double, x)
CAST_K(cp_f_i, double, int64_t, (int64_t)x)
CAST_K(cp_f_b, double, uint8_t, x != 0)
CAST_K(cp_f_s, double, float, (float)x)
CAST_K(cp_i_f, int64_t, double, (double)x)
CAST_K(cp_i_i, int64_t, int64_t, x)
CAST_K(cp_i_b, int64_t, uint8_t, x != 0)
CAST_K(cp_i_s, int64_t, float, (float)x)
CAST_K(cp_b_f, uint8_t, double, (double)x)
CAST_K(cp_b_i, uint8_t, int64_t, (int64_t)x)
CAST_K(cp_b_b, uint8_t, uint8_t, x)
CAST_K(cp_b_s, uint8_t, float, (float)x)
CAST_K(cp_s_f, float, double, (double)x)
CAST_K(cp_s_i, float, int64_t, (int64_t)x)
CAST_K(cp_s_b, float, uint8_t, x != 0)
CAST_K(cp_s_s, float, float, x)
static const kern cast_k[DL_NDTYPES][DL_NDTYPES] = {
  {cp_f_f, cp_f_i, cp_f_b, cp_f_s}, {cp_i_f, cp_i_i, cp_i_b, cp_i_s},
  {cp_b_f, cp_b_i, cp_b_b, cp_b_s}, {cp_s_f, cp_s_i, cp_s_b, cp_s_s}};

/* Non-zero when a float64 or float32 array holds NaN, an infinity or a
   value outside int64's range (converting those is undefined in C). */
static int has_nonfinite(const dl_nd *a) {
  int64_t idx[DL_ND_MAXDIM] = {0}, n = dl_nd_size(a), k;
  int i;
  for (k = 0; k < n; k++) {
    const char *p = dl_nd_at(a, idx);
    double x = a->dtype == DL_F32 ? (double)*(const float *)p
                                  : *(const double *)p;
    if (!isfinite(x) || x >= 9.2233720368547758e18 ||
        x < -9.2233720368547758e18)
      return 1;
    for (i = a->ndim - 1; i >= 0; i--) {
      if (++idx[i] < a->shape[i]) break;
      idx[i] = 0;
    }
  }
  return 0;
}

int dl_nd_assign(dl_nd *dst, const dl_nd *src) {
  int64_t so[DL_ND_MAXDIM], sa[DL_ND_MAXDIM], tmp[DL_ND_MAXDIM];
  int n;
  if (dl_nd_readonly(dst)) return DL_ND_EREADONLY;
  if (dl_nd_broadcast_shape(dst->ndim, dst->shape, src->ndim, src->shape,
                            &n, tmp) ||
      n != dst->ndim || memcmp(tmp, dst->shape, sizeof(int64_t) * n) != 0)
    return DL_ND_EBCAST;
  if ((src->dtype == DL_F64 || src->dtype == DL_F32) &&
      dst->dtype == DL_I64 && has_nonfinite(src))
    return DL_ND_ENAN;
  bstrides(dst, n, dst->shape, so);
  bstrides(src, n, dst->shape, sa);
  iterate(n, dst->shape, cast_k[src->dtype][dst->dtype], dst->data, so,
          src->data, sa, NULL, NULL, NULL, NULL);
  return 0;
}

int dl_nd_astype(dl_nd *out, const dl_nd *a, dl_dtype t) {
  dl_nd r;
  int rc = dl_nd_alloc_uninit(&r, t, a->ndim, a->shape);
  if (rc) return rc;
  if ((rc = dl_nd_assign(&r, a)) != 0) {
    dl_nd_release(&r);
    return rc;
  }
  *out = r;
  return 0;
}

/* A view of a as dtype t: a itself when it already is, else a copy. */
static int as_dtype(dl_nd *out, const dl_nd *a, dl_dtype t) {
  if (a->dtype == t) {
    dl_nd_view(out, a);
    return 0;
  }
  return dl_nd_astype(out, a, t);
}

/* ------------------------------------------------------------- float32 */

/* *w: a widened to float64 when it is float32, else a view of a. */
static int widen(dl_nd *w, const dl_nd *a) {
  if (a->dtype == DL_F32) return dl_nd_astype(w, a, DL_F64);
  dl_nd_view(w, a);
  return 0;
}

/* Does b keep the float32 of the other operand (float32, bool, 0-d)? */
static int keeps_f32(const dl_nd *b) {
  return b->dtype == DL_F32 || b->dtype == DL_BOOL || b->ndim == 0;
}

/* Replace the float64 result *r by its float32 copy (other dtypes stay);
   on failure *r is released. */
static int narrow(dl_nd *r) {
  dl_nd n;
  int rc;
  if (r->dtype != DL_F64) return 0;
  rc = dl_nd_astype(&n, r, DL_F32);
  dl_nd_release(r);
  if (rc == 0) *r = n;
  return rc;
}

/* The float32 form of a binary operation: see dl_nd.h. */
static int f32_binop(dl_nd *out, int op, const dl_nd *a, const dl_nd *b) {
  dl_nd wa, wb;
  int rc, f32 = (a->dtype == DL_F32 || keeps_f32(a)) &&
                (b->dtype == DL_F32 || keeps_f32(b));
  if ((rc = widen(&wa, a)) != 0) return rc;
  if ((rc = widen(&wb, b)) != 0) {
    dl_nd_release(&wa);
    return rc;
  }
  rc = dl_nd_binop(out, op, &wa, &wb);
  dl_nd_release(&wa);
  dl_nd_release(&wb);
  return rc == 0 && f32 ? narrow(out) : rc;
}

/* ------------------------------------------------------ binary kernels */

static double fl_mod(double x, double y) {
  double r = fmod(x, y);
  if (r != 0 && ((r < 0) != (y < 0))) r += y;
  return r;
}
static int64_t in_fdiv(int64_t x, int64_t y) {
  int64_t q = x / y;
  if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
  return q;
}
static int64_t in_mod(int64_t x, int64_t y) {
  int64_t r = x % y;
  if (r != 0 && ((r < 0) != (y < 0))) r += y;
  return r;
}
static int64_t in_pow(int64_t x, int64_t y) {
  uint64_t r = 1, b = (uint64_t)x;
  while (y > 0) {
    if (y & 1) r *= b;
    b *= b;
    y >>= 1;
  }
  return (int64_t)r;
}
static double fmin_nan(double x, double y) {
  return (x != x || y != y) ? NAN : (x < y ? x : y);
}
static double fmax_nan(double x, double y) {
  return (x != x || y != y) ? NAN : (x > y ? x : y);
}

/* A binary kernel with a contiguous fast path and a scalar-b fast path. */
#define BIN_K(name, TA, TO, expr)                                          \
  static void name(int64_t n, char *o, int64_t so, const char *a,          \
                   int64_t sa, const char *b, int64_t sb, const char *c,   \
                   int64_t sc) {                                           \
    int64_t i;                                                             \
    (void)c; (void)sc;                                                     \
    if (so == sizeof(TO) && sa == sizeof(TA) && sb == sizeof(TA)) {       \
      TO *po = (TO *)o;                                                    \
      const TA *pa = (const TA *)a, *pb = (const TA *)b;                   \
      for (i = 0; i < n; i++) {                                            \
        TA x = pa[i], y = pb[i];                                           \
        po[i] = (expr);                                                    \
      }                                                                    \
    } else if (so == sizeof(TO) && sa == sizeof(TA) && sb == 0) {          \
      TO *po = (TO *)o;                                                    \
      const TA *pa = (const TA *)a;                                        \
      TA y = *(const TA *)b;                                               \
      for (i = 0; i < n; i++) {                                            \
        TA x = pa[i];                                                      \
        po[i] = (expr);                                                    \
      }                                                                    \
    } else {                                                               \
      for (i = 0; i < n; i++) {                                            \
        TA x = *(const TA *)(a + i * sa), y = *(const TA *)(b + i * sb);   \
        *(TO *)(o + i * so) = (expr);                                      \
      }                                                                    \
    }                                                                      \
  }

BIN_K(f_add, double, double, x + y)
BIN_K(f_sub, double, double, x - y)
BIN_K(f_mul, double, double, x * y)
BIN_K(f_div, double, double, x / y)
BIN_K(f_fdiv, double, double, floor(x / y))
BIN_K(f_mod, double, double, fl_mod(x, y))
BIN_K(f_pow, double, double, pow(x, y))
BIN_K(f_lt, double, uint8_t, x < y)
BIN_K(f_le, double, uint8_t, x <= y)
BIN_K(f_gt, double, uint8_t, x > y)
BIN_K(f_ge, double, uint8_t, x >= y)
BIN_K(f_eq, double, uint8_t, x == y)
BIN_K(f_ne, double, uint8_t, x != y)
BIN_K(f_min, double, double, fmin_nan(x, y))
BIN_K(f_max, double, double, fmax_nan(x, y))
BIN_K(f_atan2, double, double, atan2(x, y))
BIN_K(i_add, int64_t, int64_t, (int64_t)((uint64_t)x + (uint64_t)y))
BIN_K(i_sub, int64_t, int64_t, (int64_t)((uint64_t)x - (uint64_t)y))
BIN_K(i_mul, int64_t, int64_t, (int64_t)((uint64_t)x * (uint64_t)y))
BIN_K(i_fdiv, int64_t, int64_t, in_fdiv(x, y))
BIN_K(i_mod, int64_t, int64_t, in_mod(x, y))
BIN_K(i_pow, int64_t, int64_t, in_pow(x, y))
BIN_K(i_lt, int64_t, uint8_t, x < y)
BIN_K(i_le, int64_t, uint8_t, x <= y)
BIN_K(i_gt, int64_t, uint8_t, x > y)
BIN_K(i_ge, int64_t, uint8_t, x >= y)
BIN_K(i_eq, int64_t, uint8_t, x == y)
BIN_K(i_ne, int64_t, uint8_t, x != y)
BIN_K(i_and, int64_t, int64_t, x & y)
BIN_K(i_or, int64_t, int64_t, x | y)
BIN_K(i_xor, int64_t, int64_t, x ^ y)
BIN_K(i_min, int64_t, int64_t, x < y ? x : y)
BIN_K(i_max, int64_t, int64_t, x > y ? x : y)
BIN_K(b_and, uint8_t, uint8_t, x & y)
BIN_K(b_or, uint8_t, uint8_t, x | y)
BIN_K(b_xor, uint8_t, uint8_t, x ^ y)
BIN_K(b_eq, uint8_t, uint8_t, x == y)
BIN_K(b_ne, uint8_t, uint8_t, x != y)

static const kern f_bin[DL_OP_NBIN] = {
  f_add, f_sub, f_mul, f_div, f_fdiv, f_mod, f_pow, f_lt, f_le, f_gt, f_ge,
  f_eq, f_ne, NULL, NULL, NULL, f_min, f_max, f_atan2};
static const kern i_bin[DL_OP_NBIN] = {
  i_add, i_sub, i_mul, NULL, i_fdiv, i_mod, i_pow, i_lt, i_le, i_gt, i_ge,
  i_eq, i_ne, i_and, i_or, i_xor, i_min, i_max, NULL};

static int is_cmp(int op) { return op >= DL_OP_LT && op <= DL_OP_NE; }
static int is_logic(int op) { return op >= DL_OP_AND && op <= DL_OP_XOR; }

/* Non-zero when the int64 array holds a value v with v == 0 (zero) or
   v < 0 (neg). */
static int i_has(const dl_nd *a, int neg) {
  int64_t idx[DL_ND_MAXDIM] = {0}, n = dl_nd_size(a), k;
  int i;
  for (k = 0; k < n; k++) {
    int64_t v = *(const int64_t *)dl_nd_at(a, idx);
    if (neg ? v < 0 : v == 0) return 1;
    for (i = a->ndim - 1; i >= 0; i--) {
      if (++idx[i] < a->shape[i]) break;
      idx[i] = 0;
    }
  }
  return 0;
}

int dl_nd_binop(dl_nd *out, int op, const dl_nd *a, const dl_nd *b) {
  int64_t shape[DL_ND_MAXDIM], so[DL_ND_MAXDIM], sa[DL_ND_MAXDIM],
    sb[DL_ND_MAXDIM];
  dl_nd ca, cb, r;
  dl_dtype wt, ot;
  kern k;
  int n, rc;
  if (op < 0 || op >= DL_OP_NBIN) return DL_ND_EDTYPE;
  if (a->dtype == DL_F32 || b->dtype == DL_F32)
    return f32_binop(out, op, a, b);
  if ((rc = dl_nd_broadcast_shape(a->ndim, a->shape, b->ndim, b->shape, &n,
                                  shape)) != 0)
    return rc;
  if (is_logic(op)) {
    if (a->dtype == DL_F64 || b->dtype == DL_F64) return DL_ND_EDTYPE;
    wt = (a->dtype == DL_BOOL && b->dtype == DL_BOOL) ? DL_BOOL : DL_I64;
  } else if (op == DL_OP_DIV || op == DL_OP_ATAN2) {
    wt = DL_F64;
  } else {
    wt = (a->dtype == DL_F64 || b->dtype == DL_F64) ? DL_F64 : DL_I64;
    if (is_cmp(op) && a->dtype == DL_BOOL && b->dtype == DL_BOOL &&
        (op == DL_OP_EQ || op == DL_OP_NE))
      wt = DL_BOOL;
  }
  ot = is_cmp(op) ? DL_BOOL : wt;
  if (wt == DL_BOOL)
    k = op == DL_OP_AND ? b_and : op == DL_OP_OR ? b_or
      : op == DL_OP_XOR ? b_xor : op == DL_OP_EQ ? b_eq : b_ne;
  else
    k = wt == DL_F64 ? f_bin[op] : i_bin[op];
  if (k == NULL) return DL_ND_EDTYPE;
  if ((rc = as_dtype(&ca, a, wt)) != 0) return rc;
  if ((rc = as_dtype(&cb, b, wt)) != 0) {
    dl_nd_release(&ca);
    return rc;
  }
  if (wt == DL_I64 && (op == DL_OP_FDIV || op == DL_OP_MOD) && i_has(&cb, 0))
    rc = DL_ND_EZERODIV;
  else if (wt == DL_I64 && op == DL_OP_POW && i_has(&cb, 1))
    rc = DL_ND_EDOMAIN;
  else
    rc = dl_nd_alloc_uninit(&r, ot, n, shape);
  if (rc == 0) {
    bstrides(&r, n, shape, so);
    bstrides(&ca, n, shape, sa);
    bstrides(&cb, n, shape, sb);
    iterate(n, shape, k, r.data, so, ca.data, sa, cb.data, sb, NULL, NULL);
    *out = r;
  }
  dl_nd_release(&ca);
  dl_nd_release(&cb);
  return rc;
}

/* ------------------------------------------------------- unary kernels */

#define UN_K(name, TA, TO, expr)                                           \
  static void name(int64_t n, char *o, int64_t so, const char *a,          \
                   int64_t sa, const char *b, int64_t sb, const char *c,   \
                   int64_t sc) {                                           \
    int64_t i;                                                             \
    (void)b; (void)sb; (void)c; (void)sc;                                  \
    if (so == sizeof(TO) && sa == sizeof(TA)) {                            \
      TO *po = (TO *)o;                                                    \
      const TA *pa = (const TA *)a;                                        \
      for (i = 0; i < n; i++) {                                            \
        TA x = pa[i];                                                      \
        po[i] = (expr);                                                    \
      }                                                                    \
    } else {                                                               \
      for (i = 0; i < n; i++) {                                            \
        TA x = *(const TA *)(a + i * sa);                                  \
        *(TO *)(o + i * so) = (expr);                                      \
      }                                                                    \
    }                                                                      \
  }

static double f_sign(double x) {
  return x > 0 ? 1.0 : x < 0 ? -1.0 : x;
}
UN_K(uf_neg, double, double, -x)
UN_K(uf_abs, double, double, fabs(x))
UN_K(uf_sign, double, double, f_sign(x))
UN_K(uf_floor, double, double, floor(x))
UN_K(uf_ceil, double, double, ceil(x))
UN_K(uf_round, double, double, nearbyint(x))
UN_K(uf_sqrt, double, double, sqrt(x))
UN_K(uf_exp, double, double, exp(x))
UN_K(uf_log, double, double, log(x))
UN_K(uf_log10, double, double, log10(x))
UN_K(uf_log2, double, double, log2(x))
UN_K(uf_sin, double, double, sin(x))
UN_K(uf_cos, double, double, cos(x))
UN_K(uf_tan, double, double, tan(x))
UN_K(uf_asin, double, double, asin(x))
UN_K(uf_acos, double, double, acos(x))
UN_K(uf_atan, double, double, atan(x))
UN_K(uf_sinh, double, double, sinh(x))
UN_K(uf_cosh, double, double, cosh(x))
UN_K(uf_tanh, double, double, tanh(x))
UN_K(uf_expm1, double, double, expm1(x))
UN_K(uf_log1p, double, double, log1p(x))
UN_K(uf_isnan, double, uint8_t, isnan(x) != 0)
UN_K(uf_isinf, double, uint8_t, isinf(x) != 0)
UN_K(uf_isfinite, double, uint8_t, isfinite(x) != 0)
UN_K(ui_neg, int64_t, int64_t, (int64_t)(0 - (uint64_t)x))
UN_K(ui_abs, int64_t, int64_t, x < 0 ? (int64_t)(0 - (uint64_t)x) : x)
UN_K(ui_sign, int64_t, int64_t, (x > 0) - (x < 0))
UN_K(ui_bnot, int64_t, int64_t, ~x)
UN_K(ui_same, int64_t, int64_t, x)
UN_K(ui_false, int64_t, uint8_t, x != x)
UN_K(ui_true, int64_t, uint8_t, x == x)
UN_K(ub_not, uint8_t, uint8_t, !x)

static const kern f_un[DL_UN_N] = {
  uf_neg, uf_abs, uf_sign, NULL, uf_floor, uf_ceil, uf_round, uf_sqrt,
  uf_exp, uf_log, uf_log10, uf_log2, uf_sin, uf_cos, uf_tan, uf_asin,
  uf_acos, uf_atan, uf_sinh, uf_cosh, uf_tanh, uf_expm1, uf_log1p,
  uf_isnan, uf_isinf, uf_isfinite};

int dl_nd_unop(dl_nd *out, int op, const dl_nd *a) {
  int64_t so[DL_ND_MAXDIM], sa[DL_ND_MAXDIM];
  dl_nd ca, r;
  dl_dtype wt, ot;
  kern k = NULL;
  int rc;
  if (op < 0 || op >= DL_UN_N) return DL_ND_EDTYPE;
  if (a->dtype == DL_F32) { /* in float64, float results as float32 */
    if ((rc = widen(&ca, a)) != 0) return rc;
    rc = dl_nd_unop(out, op, &ca);
    dl_nd_release(&ca);
    return rc == 0 ? narrow(out) : rc;
  }
  if (op == DL_UN_NOT) {
    if (a->dtype == DL_F64) return DL_ND_EDTYPE;
    wt = ot = a->dtype;
    k = wt == DL_BOOL ? ub_not : ui_bnot;
  } else if (a->dtype != DL_F64 && op <= DL_UN_ROUND) {
    wt = ot = DL_I64;
    k = op == DL_UN_NEG ? ui_neg : op == DL_UN_ABS ? ui_abs
      : op == DL_UN_SIGN ? ui_sign : ui_same;
  } else if (a->dtype != DL_F64 && op >= DL_UN_ISNAN) {
    wt = DL_I64;
    ot = DL_BOOL;
    k = op == DL_UN_ISFINITE ? ui_true : ui_false;
  } else {
    wt = DL_F64;
    ot = op >= DL_UN_ISNAN ? DL_BOOL : DL_F64;
    k = f_un[op];
  }
  if ((rc = as_dtype(&ca, a, wt)) != 0) return rc;
  if ((rc = dl_nd_alloc_uninit(&r, ot, a->ndim, a->shape)) == 0) {
    bstrides(&r, a->ndim, a->shape, so);
    bstrides(&ca, a->ndim, a->shape, sa);
    iterate(a->ndim, a->shape, k, r.data, so, ca.data, sa, NULL, NULL, NULL,
            NULL);
    *out = r;
  }
  dl_nd_release(&ca);
  return rc;
}

/* ---------------------------------------------------------------- where */

#define WHERE_K(name, T)                                                   \
  static void name(int64_t n, char *o, int64_t so, const char *a,          \
                   int64_t sa, const char *b, int64_t sb, const char *c,   \
                   int64_t sc) {                                           \
    int64_t i;                                                             \
    for (i = 0; i < n; i++)                                                \
      *(T *)(o + i * so) = *(const uint8_t *)(a + i * sa)                  \
                             ? *(const T *)(b + i * sb)                    \
                             : *(const T *)(c + i * sc);                   \
  }
WHERE_K(w_f, double)
WHERE_K(w_i, int64_t)
WHERE_K(w_b, uint8_t)
WHERE_K(w_s, float)

int dl_nd_where(dl_nd *out, const dl_nd *cond, const dl_nd *a,
                const dl_nd *b) {
  int64_t s1[DL_ND_MAXDIM], shape[DL_ND_MAXDIM], so[DL_ND_MAXDIM],
    sc[DL_ND_MAXDIM], sa[DL_ND_MAXDIM], sb[DL_ND_MAXDIM];
  dl_nd cc, ca, cb, r;
  dl_dtype t;
  int n1, n, rc;
  if ((rc = dl_nd_broadcast_shape(cond->ndim, cond->shape, a->ndim,
                                  a->shape, &n1, s1)) != 0 ||
      (rc = dl_nd_broadcast_shape(n1, s1, b->ndim, b->shape, &n, shape)) != 0)
    return rc;
  t = (a->dtype == DL_F64 || b->dtype == DL_F64) ? DL_F64
    : (a->dtype == DL_I64 || b->dtype == DL_I64) ? DL_I64 : DL_BOOL;
  if ((a->dtype == DL_F32 || b->dtype == DL_F32))
    t = keeps_f32(a) && keeps_f32(b) ? DL_F32 : DL_F64;
  if ((rc = as_dtype(&cc, cond, DL_BOOL)) != 0) return rc;
  if ((rc = as_dtype(&ca, a, t)) != 0) goto fail_c;
  if ((rc = as_dtype(&cb, b, t)) != 0) goto fail_a;
  if ((rc = dl_nd_alloc_uninit(&r, t, n, shape)) == 0) {
    bstrides(&r, n, shape, so);
    bstrides(&cc, n, shape, sc);
    bstrides(&ca, n, shape, sa);
    bstrides(&cb, n, shape, sb);
    iterate(n, shape, t == DL_F64 ? w_f : t == DL_I64 ? w_i
                      : t == DL_F32 ? w_s : w_b, r.data,
            so, cc.data, sc, ca.data, sa, cb.data, sb);
    *out = r;
  }
  dl_nd_release(&cb);
fail_a:
  dl_nd_release(&ca);
fail_c:
  dl_nd_release(&cc);
  return rc;
}

/* ----------------------------------------------------------- reductions */

/* Reduce n float64 values at p (byte stride s). */
static double red_f(int op, const char *p, int64_t n, int64_t s, int ddof,
                    int64_t *arg) {
  double acc, m;
  int64_t i, best = 0;
  switch (op) {
  case DL_RED_SUM:
  case DL_RED_MEAN: {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    i = 0;
    if (s == 8) {
      const double *d = (const double *)p;
      for (; i + 4 <= n; i += 4) {
        a0 += d[i];
        a1 += d[i + 1];
        a2 += d[i + 2];
        a3 += d[i + 3];
      }
    }
    for (; i < n; i++) a0 += *(const double *)(p + i * s);
    acc = (a0 + a1) + (a2 + a3);
    return op == DL_RED_SUM ? acc : acc / (double)n;
  }
  case DL_RED_PROD:
    for (acc = 1, i = 0; i < n; i++) acc *= *(const double *)(p + i * s);
    return acc;
  case DL_RED_MIN:
  case DL_RED_MAX:
  case DL_RED_ARGMIN:
  case DL_RED_ARGMAX:
    acc = *(const double *)p;
    for (i = 1; i < n && acc == acc; i++) {
      double x = *(const double *)(p + i * s);
      if (x != x ||
          ((op == DL_RED_MIN || op == DL_RED_ARGMIN) ? x < acc : x > acc)) {
        acc = x;
        best = i;
      }
    }
    if (arg) *arg = best;
    return acc;
  case DL_RED_VAR:
  case DL_RED_STD:
    m = red_f(DL_RED_MEAN, p, n, s, 0, NULL);
    for (acc = 0, i = 0; i < n; i++) {
      double d = *(const double *)(p + i * s) - m;
      acc += d * d;
    }
    acc = n - ddof > 0 ? acc / (double)(n - ddof) : NAN;
    return op == DL_RED_STD ? sqrt(acc) : acc;
  case DL_RED_ANY:
    for (i = 0; i < n; i++)
      if (*(const double *)(p + i * s) != 0) return 1;
    return 0;
  default: /* ALL */
    for (i = 0; i < n; i++)
      if (*(const double *)(p + i * s) == 0) return 0;
    return 1;
  }
}

/* Reduce n int64 values (sum, prod, min, max, arg*, any, all). */
static int64_t red_i(int op, const char *p, int64_t n, int64_t s,
                     int64_t *arg) {
  uint64_t acc;
  int64_t i, best = 0, v;
  switch (op) {
  case DL_RED_SUM:
    for (acc = 0, i = 0; i < n; i++) acc += *(const uint64_t *)(p + i * s);
    return (int64_t)acc;
  case DL_RED_PROD:
    for (acc = 1, i = 0; i < n; i++) acc *= *(const uint64_t *)(p + i * s);
    return (int64_t)acc;
  case DL_RED_ANY:
    for (i = 0; i < n; i++)
      if (*(const int64_t *)(p + i * s)) return 1;
    return 0;
  case DL_RED_ALL:
    for (i = 0; i < n; i++)
      if (!*(const int64_t *)(p + i * s)) return 0;
    return 1;
  default:
    v = *(const int64_t *)p;
    for (i = 1; i < n; i++) {
      int64_t x = *(const int64_t *)(p + i * s);
      if ((op == DL_RED_MIN || op == DL_RED_ARGMIN) ? x < v : x > v) {
        v = x;
        best = i;
      }
    }
    if (arg) *arg = best;
    return v;
  }
}

int dl_nd_reduce(dl_nd *out, int op, const dl_nd *a, int axis, int ddof) {
  int64_t oshape[DL_ND_MAXDIM], idx[DL_ND_MAXDIM] = {0}, n, len, k, st;
  dl_nd src, r;
  dl_dtype wt, ot;
  int on, i, rc, arg = op == DL_RED_ARGMIN || op == DL_RED_ARGMAX;
  if (op < 0 || op >= DL_RED_N || axis >= a->ndim) return DL_ND_ESHAPE;
  if (a->dtype == DL_F32) { /* in float64, float results as float32 */
    if ((rc = widen(&src, a)) != 0) return rc;
    rc = dl_nd_reduce(out, op, &src, axis, ddof);
    dl_nd_release(&src);
    return rc == 0 ? narrow(out) : rc;
  }
  if (a->dtype == DL_F64 || op == DL_RED_MEAN || op == DL_RED_VAR ||
      op == DL_RED_STD)
    wt = DL_F64;
  else
    wt = DL_I64;
  ot = arg ? DL_I64 : (op == DL_RED_ANY || op == DL_RED_ALL) ? DL_BOOL : wt;
  if (axis < 0) { /* flatten: a contiguous copy when needed */
    if (a->dtype == wt && dl_nd_contiguous(a)) dl_nd_view(&src, a);
    else if ((rc = dl_nd_astype(&src, a, wt)) != 0) return rc;
    len = dl_nd_size(a);
    st = (int64_t)dl_nd_itemsize(wt);
    on = 0;
    n = 1;
  } else {
    if ((rc = as_dtype(&src, a, wt)) != 0) return rc;
    len = a->shape[axis];
    st = src.strides[axis] * (int64_t)dl_nd_itemsize(wt);
    for (on = 0, i = 0; i < a->ndim; i++)
      if (i != axis) oshape[on++] = a->shape[i];
    n = 1;
    for (i = 0; i < on; i++) n *= oshape[i];
  }
  if (len == 0 && (op == DL_RED_MIN || op == DL_RED_MAX || arg) && n > 0) {
    dl_nd_release(&src);
    return DL_ND_EEMPTY;
  }
  if ((rc = dl_nd_alloc(&r, ot, on, oshape)) != 0) {
    dl_nd_release(&src);
    return rc;
  }
  /* Sum and mean along a leading axis of a contiguous array: add rows,
     so memory is read in order. */
  if (axis >= 0 && wt == DL_F64 && ot == DL_F64 &&
      (op == DL_RED_SUM || op == DL_RED_MEAN) && dl_nd_contiguous(&src) &&
      axis < a->ndim - 1) {
    int64_t outer = 1, inner = n, j, q;
    for (i = 0; i < axis; i++) outer *= a->shape[i];
    inner = n / (outer ? outer : 1);
    for (q = 0; q < outer; q++) {
      double *o = (double *)r.data + q * inner;
      const double *s0 = (const double *)src.data + q * inner * len;
      for (k = 0; k < len; k++) {
        const double *row = s0 + k * inner;
        for (j = 0; j < inner; j++) o[j] += row[j];
      }
      if (op == DL_RED_MEAN)
        for (j = 0; j < inner; j++) o[j] /= (double)len;
    }
    goto done;
  }
  for (k = 0; k < n; k++) {
    const char *p = src.data;
    int64_t am = 0;
    int d = 0;
    for (i = 0; i < a->ndim && axis >= 0; i++) {
      if (i == axis) continue;
      p += idx[d++] * src.strides[i] * (int64_t)dl_nd_itemsize(wt);
    }
    if (wt == DL_F64) {
      double v = len == 0 ? (op == DL_RED_PROD || op == DL_RED_ALL ? 1
                             : op == DL_RED_MEAN ? NAN : 0)
                          : red_f(op, p, len, st, ddof, &am);
      if (arg) ((int64_t *)r.data)[k] = am;
      else if (ot == DL_BOOL) ((uint8_t *)r.data)[k] = v != 0;
      else ((double *)r.data)[k] = v;
    } else {
      int64_t v = len == 0 ? (op == DL_RED_PROD || op == DL_RED_ALL)
                           : red_i(op, p, len, st, &am);
      if (arg) ((int64_t *)r.data)[k] = am;
      else if (ot == DL_BOOL) ((uint8_t *)r.data)[k] = v != 0;
      else ((int64_t *)r.data)[k] = v;
    }
    for (i = on - 1; i >= 0; i--) {
      if (++idx[i] < oshape[i]) break;
      idx[i] = 0;
    }
  }
done:
  dl_nd_release(&src);
  *out = r;
  return 0;
}

int dl_nd_cumsum(dl_nd *out, const dl_nd *a, int axis) {
  dl_nd src, r;
  dl_dtype t = a->dtype == DL_F64 ? DL_F64 : DL_I64;
  int64_t n, len, k, j, st, outer = 1, inner = 1;
  int i, rc;
  if (a->dtype == DL_F32) {
    if ((rc = widen(&src, a)) != 0) return rc;
    rc = dl_nd_cumsum(out, &src, axis);
    dl_nd_release(&src);
    return rc == 0 ? narrow(out) : rc;
  }
  if (axis >= a->ndim) return DL_ND_ESHAPE;
  if ((rc = dl_nd_astype(&src, a, t)) != 0) return rc; /* contiguous */
  if (axis < 0) {
    src.ndim = 1;
    src.shape[0] = dl_nd_size(a);
    src.strides[0] = 1;
    axis = 0;
  }
  len = src.shape[axis];
  for (i = 0; i < axis; i++) outer *= src.shape[i];
  for (i = axis + 1; i < src.ndim; i++) inner *= src.shape[i];
  n = outer * inner;
  (void)n;
  st = inner;
  for (k = 0; k < outer; k++)
    for (j = 0; j < inner; j++) {
      int64_t base = k * len * inner + j, q;
      if (t == DL_F64) {
        double *d = (double *)src.data, acc = 0;
        for (q = 0; q < len; q++) d[base + q * st] = (acc += d[base + q * st]);
      } else {
        int64_t *d = (int64_t *)src.data;
        uint64_t acc = 0;
        for (q = 0; q < len; q++)
          d[base + q * st] = (int64_t)(acc += (uint64_t)d[base + q * st]);
      }
    }
  r = src;
  *out = r;
  return 0;
}

int dl_nd_concat(dl_nd *out, int n, const dl_nd *const *arrs, int axis) {
  int64_t shape[DL_ND_MAXDIM], at = 0;
  dl_dtype t = DL_BOOL;
  dl_nd r;
  int i, d, rc, f32 = 0;
  if (n < 1) return DL_ND_ESHAPE;
  if (axis < 0 || axis >= arrs[0]->ndim) return DL_ND_ESHAPE;
  memcpy(shape, arrs[0]->shape, sizeof shape);
  shape[axis] = 0;
  for (i = 0; i < n; i++) {
    if (arrs[i]->ndim != arrs[0]->ndim) return DL_ND_ESHAPE;
    for (d = 0; d < arrs[0]->ndim; d++)
      if (d != axis && arrs[i]->shape[d] != arrs[0]->shape[d])
        return DL_ND_ESHAPE;
    shape[axis] += arrs[i]->shape[axis];
    if (arrs[i]->dtype == DL_F64) t = DL_F64;
    else if (arrs[i]->dtype == DL_I64 && t == DL_BOOL) t = DL_I64;
    else if (arrs[i]->dtype == DL_F32) f32 = 1;
  }
  if (f32) /* float32 with bools stays float32; with int64 is float64 */
    t = t == DL_BOOL || t == DL_F32 ? DL_F32 : DL_F64;
  if ((rc = dl_nd_alloc_uninit(&r, t, arrs[0]->ndim, shape)) != 0)
    return rc;
  for (i = 0; i < n; i++) {
    dl_nd v = r;
    v.shape[axis] = arrs[i]->shape[axis];
    v.data = r.data + at * r.strides[axis] * (int64_t)dl_nd_itemsize(t);
    at += arrs[i]->shape[axis];
    dl_nd_assign(&v, arrs[i]); /* same shape, widening: cannot fail */
  }
  *out = r;
  return 0;
}

/* ------------------------------------------------------- fused programs */

/*
** The machine runs the program over tiles of FZ_TILE elements.  A stack
** slot points at a tile: an input's (a contiguous input is read where it
** lies; a random one is drawn into its own tile once per tile, however
** often the program reads it), a constant's (filled once per call) or a
** scratch tile.  An operator writes into a scratch operand, or into a free
** scratch tile when both operands are read-only, so a program needs as
** many scratch tiles as its stack is deep.
**
** The loops work on 8 doubles at a time (GNU C vectors, compiled once per
** instruction set below) over the tile rounded up to 8: a last, shorter
** tile has its inputs copied and padded with zeros, and the padding never
** reaches a result.  Each element is computed by the same operations in
** every version, so results do not depend on the instruction set.
*/
#define FZ_TILE 1024
#define FZ_DEPTH 16
#define FZ_NIN 32
#define FZ_NK 64

typedef double fz_v8 __attribute__((vector_size(64), aligned(8)));
typedef int64_t fz_i8 __attribute__((vector_size(64), aligned(8)));

/* What one call needs, set up once. */
typedef struct fz_run {
  const dl_fz_ins *prog;
  int nprog;
  const dl_fz_src *ins;
  int64_t n;
  double *scratch[FZ_DEPTH]; /* depth tiles */
  double *intile[FZ_NIN];    /* random inputs; padded copies at the end */
  const double *ktile[FZ_NK]; /* constants used, filled (NULL: unused) */
} fz_run;

/* A check of the program before any tile: stack depth, operand ranges,
   operators the machine has.  Sets *depth to the deepest stack. */
static int fz_check(const dl_fz_ins *prog, int nprog, int *depth) {
  int sp = 0, pc, max = 0;
  for (pc = 0; pc < nprog; pc++) {
    int a = prog[pc].arg;
    switch (prog[pc].code) {
    case DL_FZ_IN:
      if (a < 0 || a >= FZ_NIN) return DL_ND_ESHAPE;
      sp++;
      break;
    case DL_FZ_K:
      if (a < 0 || a >= FZ_NK) return DL_ND_ESHAPE;
      sp++;
      break;
    case DL_FZ_BIN:
      if (sp < 2) return DL_ND_ESHAPE;
      if (a < 0 || a >= DL_OP_NBIN || !f_bin[a]) return DL_ND_EDTYPE;
      sp--;
      break;
    case DL_FZ_UN:
      if (sp < 1) return DL_ND_ESHAPE;
      if (a < 0 || a >= DL_UN_ISNAN || !f_un[a]) return DL_ND_EDTYPE;
      break;
    default:
      return DL_ND_EDTYPE;
    }
    if (sp > FZ_DEPTH) return DL_ND_ESHAPE;
    if (sp > max) max = sp;
  }
  if (sp != 1) return DL_ND_ESHAPE;
  *depth = max;
  return 0;
}

#define FZ_LOOP(expr)                                                      \
  for (j = 0; j < mv; j += 8) {                                            \
    fz_v8 x = *(const fz_v8 *)(a + j), y = *(const fz_v8 *)(b + j);       \
    *(fz_v8 *)(d + j) = (expr);                                            \
  }
#define FZ_CMP(cmp)                                                        \
  for (j = 0; j < mv; j += 8) {                                            \
    fz_v8 x = *(const fz_v8 *)(a + j), y = *(const fz_v8 *)(b + j);       \
    *(fz_v8 *)(d + j) = (fz_v8)((fz_i8)(x cmp y) & one);                   \
  }

/* Run the program over elements [at, at + m) (m <= FZ_TILE); the result
   is left in the tile *res points at (mv = m rounded up to 8 elements are
   valid).  always_inline: compiled into each instruction set's copy. */
static inline __attribute__((always_inline)) void
fz_tile_body(fz_run *z, int64_t at, int m, const double **res) {
  const double *st[FZ_DEPTH];
  int own[FZ_DEPTH]; /* scratch index of a slot, or -1 (read-only) */
  int freel[FZ_DEPTH], nfree = 0, sp = 0, pc, i, mv = (m + 7) & ~7, j;
  int drawn[FZ_NIN] = {0};
  const fz_i8 one = (fz_i8)(fz_v8){1, 1, 1, 1, 1, 1, 1, 1};
  for (i = FZ_DEPTH - 1; i >= 0; i--)
    if (z->scratch[i]) freel[nfree++] = i;
  for (pc = 0; pc < z->nprog; pc++) {
    const dl_fz_ins *in = &z->prog[pc];
    int op = in->arg, dst;
    const double *a, *b;
    double *d;
    switch (in->code) {
    case DL_FZ_IN: {
      const dl_fz_src *src = &z->ins[op];
      if (src->p && at + mv <= z->n) {
        st[sp] = src->p + at;
      } else {
        double *t = z->intile[op];
        if (!drawn[op]) {
          if (src->p) memcpy(t, src->p + at, sizeof(double) * (size_t)m);
          else dl_nd_random_range(t, src->gen, at, m);
          for (j = m; j < mv; j++) t[j] = 0;
          drawn[op] = 1;
        }
        st[sp] = t;
      }
      own[sp++] = -1;
      break;
    }
    case DL_FZ_K:
      st[sp] = z->ktile[op];
      own[sp++] = -1;
      break;
    case DL_FZ_BIN:
      a = st[sp - 2];
      b = st[sp - 1];
      if (own[sp - 2] >= 0) {
        dst = own[sp - 2];
        if (own[sp - 1] >= 0) freel[nfree++] = own[sp - 1];
      } else if (own[sp - 1] >= 0) {
        dst = own[sp - 1];
      } else {
        dst = freel[--nfree];
      }
      d = z->scratch[dst];
      switch (op) {
      case DL_OP_ADD: FZ_LOOP(x + y) break;
      case DL_OP_SUB: FZ_LOOP(x - y) break;
      case DL_OP_MUL: FZ_LOOP(x * y) break;
      case DL_OP_DIV: FZ_LOOP(x / y) break;
      case DL_OP_LT: FZ_CMP(<) break;
      case DL_OP_LE: FZ_CMP(<=) break;
      case DL_OP_GT: FZ_CMP(>) break;
      case DL_OP_GE: FZ_CMP(>=) break;
      case DL_OP_EQ: FZ_CMP(==) break;
      case DL_OP_NE: FZ_CMP(!=) break;
      default:
        f_bin[op](mv, (char *)d, 8, (const char *)a, 8, (const char *)b, 8,
                  NULL, 0);
      }
      sp--;
      st[sp - 1] = d;
      own[sp - 1] = dst;
      break;
    default: /* DL_FZ_UN */
      a = st[sp - 1];
      dst = own[sp - 1] >= 0 ? own[sp - 1] : freel[--nfree];
      d = z->scratch[dst];
      f_un[op](mv, (char *)d, 8, (const char *)a, 8, NULL, 0, NULL, 0);
      st[sp - 1] = d;
      own[sp - 1] = dst;
    }
  }
  *res = st[0];
}

/* Sum of v[0..m): 8 running sums over the whole multiples of 8, added in
   a fixed order, then the rest. */
static inline __attribute__((always_inline)) void
fz_sum_body(fz_v8 *acc, double *tail, const double *v, int m) {
  int j, m8 = m & ~7;
  for (j = 0; j < m8; j += 8) *acc += *(const fz_v8 *)(v + j);
  for (; j < m; j++) *tail += v[j];
}

/* Every tile: into out (sum NULL) or summed into *sum. */
static inline __attribute__((always_inline)) void
fz_all_body(fz_run *z, double *out, double *sum) {
  fz_v8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
  double tail = 0;
  int64_t at;
  int j;
  for (at = 0; at < z->n; at += FZ_TILE) {
    int m = z->n - at < FZ_TILE ? (int)(z->n - at) : FZ_TILE;
    const double *r;
    fz_tile_body(z, at, m, &r);
    if (sum) fz_sum_body(&acc, &tail, r, m);
    else memcpy(out + at, r, sizeof(double) * (size_t)m);
  }
  if (sum) {
    double s = 0;
    for (j = 0; j < 8; j++) s += acc[j];
    *sum = s + tail;
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static void
fz_all_avx512(fz_run *z, double *out, double *sum) {
  fz_all_body(z, out, sum);
}
__attribute__((target("avx2"))) static void
fz_all_avx2(fz_run *z, double *out, double *sum) {
  fz_all_body(z, out, sum);
}
#endif
static void fz_all_base(fz_run *z, double *out, double *sum) {
  fz_all_body(z, out, sum);
}

static int fz_go(double *out, double *sum, int64_t n, const dl_fz_ins *prog,
                 int nprog, const dl_fz_src *ins, const double *consts) {
  fz_run z;
  int depth, rc, nin = 0, nk = 0, ntile, i, k, level;
  char *mem;
  double *t;
  if ((rc = fz_check(prog, nprog, &depth)) != 0) return rc;
  for (i = 0; i < nprog; i++) {
    if (prog[i].code == DL_FZ_IN && prog[i].arg >= nin) nin = prog[i].arg + 1;
    if (prog[i].code == DL_FZ_K && prog[i].arg >= nk) nk = prog[i].arg + 1;
  }
  ntile = depth + nin + nk;
  mem = (char *)dl_realloc(NULL, sizeof(double) * FZ_TILE * (size_t)ntile +
                                     64);
  if (mem == NULL) return DL_ND_ENOMEM;
  t = (double *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
  memset(&z, 0, sizeof z);
  z.prog = prog;
  z.nprog = nprog;
  z.ins = ins;
  z.n = n;
  for (i = 0; i < depth; i++, t += FZ_TILE) z.scratch[i] = t;
  for (i = 0; i < nin; i++, t += FZ_TILE) z.intile[i] = t;
  for (i = 0; i < nk; i++, t += FZ_TILE) {
    for (k = 0; k < FZ_TILE; k++) t[k] = consts[i];
    z.ktile[i] = t;
  }
  level = dl_nd_simd_now();
#if defined(__x86_64__) && defined(__GNUC__)
  if (level >= DL_ND_SIMD_AVX512) fz_all_avx512(&z, out, sum);
  else if (level >= DL_ND_SIMD_AVX2) fz_all_avx2(&z, out, sum);
  else
#endif
    fz_all_base(&z, out, sum);
  (void)level;
  dl_free(mem);
  return 0;
}

int dl_nd_fused(double *out, int64_t n, const dl_fz_ins *prog, int nprog,
                const dl_fz_src *ins, const double *consts) {
  return fz_go(out, NULL, n, prog, nprog, ins, consts);
}

int dl_nd_fused_sum(double *sum, int64_t n, const dl_fz_ins *prog,
                    int nprog, const dl_fz_src *ins, const double *consts) {
  return fz_go(NULL, sum, n, prog, nprog, ins, consts);
}

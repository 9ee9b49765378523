/*
** dl_nd_random.c -- counter-based random arrays (Philox4x32-10, Random123).
**
** Element g of a global array (g its flat 0-based index) is a pure function
** of (seed, g): one Philox call with counter (g / 2, 0, stream, 0) and key
** (seed low, seed high) gives 128 bits; a uniform draw takes the 64 bits of
** half g % 2, so one call serves two neighbours.  Normal draws use Box-
** Muller on the two uniforms of counter (g, 0, 1, 0); integer draws scale
** the 64 bits of (g / 2, 0, 2, 0) by the range (a bias below 2^-40 for
** ranges under 2^24).
*/
#include "dl_nd.h"

#include <math.h>
#include <Random123/philox.h>

static philox4x32_ctr_t draw(uint64_t seed, uint64_t c, uint32_t stream) {
  philox4x32_ctr_t ctr = {{(uint32_t)c, (uint32_t)(c >> 32), stream, 0}};
  philox4x32_key_t key = {{(uint32_t)seed, (uint32_t)(seed >> 32)}};
  return philox4x32(ctr, key);
}

static double u53(uint32_t hi, uint32_t lo) {
  return (double)((((uint64_t)hi << 32) | lo) >> 11) * 0x1p-53;
}

/* Fill n values of global indices g0, g0 + 1, ... into o. */
static void fill_run(int kind, uint64_t seed, uint64_t g0, int64_t n,
                     char *o, double p1, double p2) {
  int64_t j = 0;
  uint64_t g = g0;
  if (kind == DL_RND_UNIFORM) {
    double *d = (double *)o, w = p2 - p1;
    while (j < n) {
      philox4x32_ctr_t r = draw(seed, g >> 1, 0);
      if ((g & 1) == 0) {
        d[j++] = p1 + w * u53(r.v[0], r.v[1]);
        g++;
        if (j == n) break;
      }
      d[j++] = p1 + w * u53(r.v[2], r.v[3]);
      g++;
    }
  } else if (kind == DL_RND_NORMAL) {
    double *d = (double *)o;
    for (; j < n; j++, g++) {
      philox4x32_ctr_t r = draw(seed, g, 1);
      double u1 = 1.0 - u53(r.v[0], r.v[1]), u2 = u53(r.v[2], r.v[3]);
      d[j] = p1 + p2 * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    }
  } else {
    int64_t *d = (int64_t *)o;
    uint64_t range = (uint64_t)((int64_t)p2 - (int64_t)p1) + 1;
    while (j < n) {
      philox4x32_ctr_t r = draw(seed, g >> 1, 2);
      uint64_t x = (g & 1) ? (((uint64_t)r.v[2] << 32) | r.v[3])
                           : (((uint64_t)r.v[0] << 32) | r.v[1]);
      d[j++] = (int64_t)p1 +
        (int64_t)(range ? (uint64_t)(((unsigned __int128)x * range) >> 64)
                        : x);
      g++;
    }
  }
}

int dl_nd_random(dl_nd *out, int kind, uint64_t seed, int ndim,
                 const int64_t *gshape, const int64_t *off,
                 const int64_t *shape, double p1, double p2) {
  int64_t gstr[DL_ND_MAXDIM], idx[DL_ND_MAXDIM] = {0}, n, rows, k, s = 1;
  size_t isz;
  dl_nd r;
  int i, rc;
  for (i = ndim - 1; i >= 0; i--) {
    if (off[i] < 0 || shape[i] < 0 || off[i] + shape[i] > gshape[i])
      return DL_ND_ESHAPE;
    gstr[i] = s;
    s *= gshape[i];
  }
  rc = dl_nd_alloc(&r, kind == DL_RND_INTEGERS ? DL_I64 : DL_F64, ndim,
                   shape);
  if (rc) return rc;
  isz = dl_nd_itemsize(r.dtype);
  n = ndim ? shape[ndim - 1] : 1;
  rows = n ? dl_nd_size(&r) / n : 0;
  for (k = 0; k < rows; k++) {
    uint64_t g = 0;
    for (i = 0; i < ndim; i++) g += (uint64_t)((off[i] + idx[i]) * gstr[i]);
    fill_run(kind, seed, g, n, r.data + (size_t)(k * n) * isz, p1, p2);
    for (i = ndim - 2; i >= 0; i--) {
      if (++idx[i] < shape[i]) break;
      idx[i] = 0;
    }
  }
  *out = r;
  return 0;
}

/*
** dl_nd_random.c -- counter-based random arrays (Philox2x64-10, Random123).
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

static philox2x64_ctr_t draw(uint64_t seed, uint64_t c, uint64_t stream) {
  philox2x64_ctr_t ctr = {{c, stream}};
  philox2x64_key_t key = {{seed}};
  return philox2x64(ctr, key);
}

static double u53(uint64_t x) { return (double)(x >> 11) * 0x1p-53; }

/* Fill n values of global indices g0, g0 + 1, ... into o. */
static void fill_run(int kind, uint64_t seed, uint64_t g0, int64_t n,
                     char *o, double p1, double p2) {
  int64_t j = 0;
  uint64_t g = g0;
  if (kind == DL_RND_UNIFORM) {
    double *d = (double *)o, w = p2 - p1;
    while (j < n) {
      philox2x64_ctr_t r = draw(seed, g >> 1, 0);
      if ((g & 1) == 0) {
        d[j++] = p1 + w * u53(r.v[0]);
        g++;
        if (j == n) break;
      }
      d[j++] = p1 + w * u53(r.v[1]);
      g++;
    }
  } else if (kind == DL_RND_NORMAL) {
    double *d = (double *)o;
    for (; j < n; j++, g++) {
      philox2x64_ctr_t r = draw(seed, g, 1);
      double u1 = 1.0 - u53(r.v[0]), u2 = u53(r.v[1]);
      d[j] = p1 + p2 * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    }
  } else {
    int64_t *d = (int64_t *)o;
    uint64_t range = (uint64_t)((int64_t)p2 - (int64_t)p1) + 1;
    while (j < n) {
      philox2x64_ctr_t r = draw(seed, g >> 1, 2);
      uint64_t x = r.v[g & 1];
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
  rc = dl_nd_alloc_uninit(&r, kind == DL_RND_INTEGERS ? DL_I64 : DL_F64,
                          ndim, shape);
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

void dl_nd_random_range(double *out, const dl_nd_gen *g, int64_t at,
                        int64_t m) {
  int64_t idx[DL_ND_MAXDIM], gstr[DL_ND_MAXDIM], s = 1, rest = at, inner;
  int i;
  for (i = g->ndim - 1; i >= 0; i--) {
    gstr[i] = s;
    s *= g->gshape[i];
    idx[i] = g->shape[i] ? rest % g->shape[i] : 0;
    rest = g->shape[i] ? rest / g->shape[i] : 0;
  }
  inner = g->ndim ? g->shape[g->ndim - 1] : 1;
  while (m > 0) {
    uint64_t gi = 0;
    int64_t run = g->ndim ? inner - idx[g->ndim - 1] : 1;
    if (run > m) run = m;
    for (i = 0; i < g->ndim; i++)
      gi += (uint64_t)((g->off[i] + idx[i]) * gstr[i]);
    fill_run(g->kind, g->seed, gi, run, (char *)out, g->p1, g->p2);
    out += run;
    m -= run;
    if (g->ndim == 0) break;
    idx[g->ndim - 1] += run;
    for (i = g->ndim - 1; i > 0 && idx[i] >= g->shape[i]; i--) {
      idx[i] = 0;
      idx[i - 1]++;
    }
  }
}

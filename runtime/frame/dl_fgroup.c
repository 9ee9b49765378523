/*
** dl_fgroup.c -- hash group-by kernels; see dl_fgroup.h.  Open
** addressing over a power-of-two table of (key, code) slots.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dl_fgroup.h"

static uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

typedef struct slot { uint64_t key; int64_t code; } slot;

/* Factorize n 64-bit keys; skip[i] != 0 marks a missing key. */
static int64_t factorize(const uint64_t *keys, const uint8_t *present,
                         int64_t n, int64_t *codes, int64_t *first) {
  size_t cap = 16, mask, used = 0;
  slot *tab;
  int64_t i, k = 0;
  tab = calloc(cap, sizeof *tab);
  if (!tab) return -1;
  mask = cap - 1;
  for (i = 0; i < n; i++) {
    uint64_t key = keys[i];
    size_t h;
    if (present && !present[i]) {
      codes[i] = 0;
      continue;
    }
    if ((used + 1) * 2 > cap) { /* grow and rehash */
      size_t ncap = cap * 2, j;
      slot *nt = calloc(ncap, sizeof *nt);
      if (!nt) {
        free(tab);
        return -1;
      }
      for (j = 0; j < cap; j++)
        if (tab[j].code) {
          size_t g = mix64(tab[j].key) & (ncap - 1);
          while (nt[g].code) g = (g + 1) & (ncap - 1);
          nt[g] = tab[j];
        }
      free(tab);
      tab = nt;
      cap = ncap;
      mask = cap - 1;
    }
    h = mix64(key) & mask;
    while (tab[h].code && tab[h].key != key) h = (h + 1) & mask;
    if (!tab[h].code) {
      tab[h].key = key;
      tab[h].code = ++k;
      first[k - 1] = i;
      used++;
    }
    codes[i] = tab[h].code;
  }
  free(tab);
  return k;
}

int64_t dl_factorize_i64(const int64_t *v, const uint8_t *valid, int64_t n,
                         int64_t *codes, int64_t *first) {
  return factorize((const uint64_t *)v, valid, n, codes, first);
}

int64_t dl_factorize_f64(const double *v, int64_t n, int64_t *codes,
                         int64_t *first) {
  uint64_t *keys = malloc((size_t)(n ? n : 1) * sizeof *keys);
  uint8_t *present = malloc((size_t)(n ? n : 1));
  int64_t i, k;
  if (!keys || !present) {
    free(keys);
    free(present);
    return -1;
  }
  for (i = 0; i < n; i++) {
    double d = v[i] == 0 ? 0.0 : v[i];
    memcpy(&keys[i], &d, sizeof d);
    present[i] = !isnan(d);
  }
  k = factorize(keys, present, n, codes, first);
  free(keys);
  free(present);
  return k;
}

void dl_group_reduce(int op, const int64_t *codes, int64_t n, const double *v,
                     int64_t k, const double *mean, double *out) {
  int64_t i;
  double init = (op == DL_G_SUM || op == DL_G_COUNT || op == DL_G_M2)
                    ? 0.0 : NAN;
  for (i = 0; i < k; i++) out[i] = init;
  for (i = 0; i < n; i++) {
    int64_t c = codes[i];
    double x = v[i], *o;
    if (c <= 0 || c > k || isnan(x)) continue;
    o = &out[c - 1];
    switch (op) {
    case DL_G_SUM: *o += x; break;
    case DL_G_COUNT: *o += 1; break;
    case DL_G_MIN: if (isnan(*o) || x < *o) *o = x; break;
    case DL_G_MAX: if (isnan(*o) || x > *o) *o = x; break;
    case DL_G_FIRST: if (isnan(*o)) *o = x; break;
    case DL_G_LAST: *o = x; break;
    case DL_G_M2: *o += (x - mean[c - 1]) * (x - mean[c - 1]); break;
    default: break;
    }
  }
}

int64_t dl_group_reduce_i64(int op, const int64_t *codes, int64_t n,
                            const int64_t *v, int64_t k, int64_t *out,
                            uint8_t *seen) {
  uint8_t *own = NULL;
  int64_t i, empty = 0;
  if (!seen) {
    own = calloc((size_t)(k ? k : 1), 1);
    if (!own) return -1;
    seen = own;
  } else {
    memset(seen, 0, (size_t)k);
  }
  for (i = 0; i < k; i++) out[i] = 0;
  for (i = 0; i < n; i++) {
    int64_t c = codes[i], x = v[i], *o;
    if (c <= 0 || c > k) continue;
    o = &out[c - 1];
    switch (op) {
    case DL_G_SUM: /* wraps like NumPy, without signed-overflow UB */
      *o = (int64_t)((uint64_t)*o + (uint64_t)x);
      break;
    case DL_G_MIN: if (!seen[c - 1] || x < *o) *o = x; break;
    case DL_G_MAX: if (!seen[c - 1] || x > *o) *o = x; break;
    case DL_G_FIRST: if (!seen[c - 1]) *o = x; break;
    case DL_G_LAST: *o = x; break;
    default: break;
    }
    seen[c - 1] = 1;
  }
  for (i = 0; i < k; i++) empty += !seen[i];
  free(own);
  return empty;
}

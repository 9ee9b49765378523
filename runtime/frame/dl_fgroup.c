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

void dl_hash_mix(uint64_t *h, uint64_t x) {
  *h = mix64(*h ^ (x + 0x9e3779b97f4a7c15ULL + (*h << 6) + (*h >> 2)));
}

static uint64_t hash_double(double d) {
  uint64_t u;
  if (d == 0) d = 0.0;
  if (isnan(d)) return 0x7ff8dead7ff8deadULL;
  memcpy(&u, &d, sizeof u);
  return u;
}

void dl_hash_f64(const double *v, int64_t n, uint64_t *h) {
  int64_t i;
  for (i = 0; i < n; i++) dl_hash_mix(&h[i], hash_double(v[i]));
}

void dl_hash_i64(const int64_t *v, int64_t n, uint64_t *h) {
  int64_t i;
  for (i = 0; i < n; i++) dl_hash_mix(&h[i], hash_double((double)v[i]));
}

int64_t dl_factorize_bytes(const char *bytes, const int64_t *offs,
                           const uint8_t *valid, int64_t n, int64_t *codes,
                           int64_t *first) {
  size_t cap = 64, mask, used = 0;
  slot *tab; /* key: the bytes' hash; code: 1..k (0 free) */
  int64_t i, k = 0;
  tab = calloc(cap, sizeof *tab);
  if (!tab) return -1;
  mask = cap - 1;
  for (i = 0; i < n; i++) {
    const char *p = bytes + offs[i];
    size_t len = (size_t)(offs[i + 1] - offs[i]), h;
    uint64_t key;
    if (valid && !valid[i]) {
      codes[i] = 0;
      continue;
    }
    if ((used + 1) * 2 > cap) {
      size_t ncap = cap * 2, j;
      slot *nt = calloc(ncap, sizeof *nt);
      if (!nt) {
        free(tab);
        return -1;
      }
      for (j = 0; j < cap; j++)
        if (tab[j].code) {
          size_t g = tab[j].key & (ncap - 1);
          while (nt[g].code) g = (g + 1) & (ncap - 1);
          nt[g] = tab[j];
        }
      free(tab);
      tab = nt;
      cap = ncap;
      mask = cap - 1;
    }
    key = dl_hash_bytes(p, len);
    h = key & mask;
    for (; tab[h].code; h = (h + 1) & mask) {
      int64_t r = first[tab[h].code - 1];
      if (tab[h].key == key && (size_t)(offs[r + 1] - offs[r]) == len &&
          memcmp(bytes + offs[r], p, len) == 0)
        break;
    }
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

int64_t dl_factorize_codes(const int64_t *c, int64_t n, int64_t kdict,
                           int64_t *codes, int64_t *first) {
  int64_t *map, i, k = 0;
  if (kdict < 0) return -2;
  map = calloc((size_t)kdict + 1, sizeof *map);
  if (!map) return -1;
  for (i = 0; i < n; i++) {
    int64_t x = c[i];
    if (x < 0 || x > kdict) {
      free(map);
      return -2;
    }
    if (x == 0) {
      codes[i] = 0;
      continue;
    }
    if (!map[x]) {
      map[x] = ++k;
      first[k - 1] = i;
    }
    codes[i] = map[x];
  }
  free(map);
  return k;
}

uint64_t dl_hash_bytes(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, then mixed */
  size_t i;
  for (i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 0x100000001b3ULL;
  }
  return mix64(h ^ n);
}

int dl_bucket_rows(const int64_t *codes, int64_t n, int64_t k,
                   int64_t *rows, int64_t *start) {
  int64_t i;
  for (i = 0; i <= k; i++) start[i] = 0;
  for (i = 0; i < n; i++) {
    if (codes[i] < 0 || codes[i] >= k) return -1;
    start[codes[i] + 1]++;
  }
  for (i = 0; i < k; i++) start[i + 1] += start[i];
  for (i = 0; i < n; i++) rows[start[codes[i]]++] = i;
  for (i = k; i > 0; i--) start[i] = start[i - 1]; /* undo the advance */
  start[0] = 0;
  return 0;
}

int dl_join_rows(const int64_t *lc, int64_t nl, const int64_t *rc,
                 int64_t nr, int64_t k, int how, int64_t **li, int64_t **ri,
                 int64_t *m) {
  int64_t *start = NULL, *rows = NULL, *codes = NULL, *a = NULL, *b = NULL;
  uint8_t *matched = NULL;
  int64_t i, j, total = 0, at = 0;
  *li = *ri = NULL;
  *m = 0;
  start = malloc((size_t)(k + 2) * sizeof *start);
  rows = malloc((size_t)(nr ? nr : 1) * sizeof *rows);
  codes = malloc((size_t)(nr ? nr : 1) * sizeof *codes);
  matched = calloc((size_t)(nr ? nr : 1), 1);
  if (!start || !rows || !codes || !matched) goto fail;
  /* right rows by code; code 0 (missing) is bucket 0, never matched */
  for (i = 0; i < nr; i++) codes[i] = rc[i] >= 0 && rc[i] <= k ? rc[i] : 0;
  dl_bucket_rows(codes, nr, k + 1, rows, start);
  for (i = 0; i < nl; i++) {
    int64_t c = lc[i] > 0 && lc[i] <= k ? lc[i] : 0;
    int64_t cnt = c ? start[c + 1] - start[c] : 0;
    total += cnt ? cnt : (how != 0);
  }
  /* outer: count the right rows no left row matches */
  if (how == 2) {
    uint8_t *hit = calloc((size_t)(k + 1), 1);
    if (!hit) goto fail;
    for (i = 0; i < nl; i++)
      if (lc[i] > 0 && lc[i] <= k) hit[lc[i]] = 1;
    for (i = 0; i < nr; i++) {
      matched[i] = codes[i] != 0 && hit[codes[i]];
      total += !matched[i];
    }
    free(hit);
  }
  a = malloc((size_t)(total ? total : 1) * sizeof *a);
  b = malloc((size_t)(total ? total : 1) * sizeof *b);
  if (!a || !b) goto fail;
  for (i = 0; i < nl; i++) {
    int64_t c = lc[i] > 0 && lc[i] <= k ? lc[i] : 0;
    int64_t s = c ? start[c] : 0, e = c ? start[c + 1] : 0;
    if (s == e) {
      if (how != 0) {
        a[at] = i + 1;
        b[at++] = 0;
      }
      continue;
    }
    for (j = s; j < e; j++) {
      a[at] = i + 1;
      b[at++] = rows[j] + 1;
    }
  }
  if (how == 2)
    for (i = 0; i < nr; i++)
      if (!matched[i]) {
        a[at] = 0;
        b[at++] = i + 1;
      }
  free(start);
  free(rows);
  free(codes);
  free(matched);
  *li = a;
  *ri = b;
  *m = total;
  return 0;
fail:
  free(start);
  free(rows);
  free(codes);
  free(matched);
  free(a);
  free(b);
  return -1;
}

/* Stable merge sort of idx by key order; cmp < 0 when row x sorts
   before row y (ties keep the row order). */
#define DEF_ARGSORT(NAME, T, ISNAN)                                          \
  static int NAME##_before(const T *v, int asc, int64_t x, int64_t y) {      \
    T a = v[x], b = v[y];                                                    \
    int an = ISNAN(a), bn = ISNAN(b);                                        \
    if (an || bn) return !an && bn;                                          \
    return asc ? a < b : a > b;                                              \
  }                                                                          \
  int NAME(const T *v, int64_t n, int asc, int64_t *idx) {                   \
    int64_t *tmp, w, i;                                                      \
    for (i = 0; i < n; i++) idx[i] = i;                                      \
    if (n < 2) return 0;                                                     \
    tmp = malloc((size_t)n * sizeof *tmp);                                   \
    if (!tmp) return -1;                                                     \
    for (w = 1; w < n; w *= 2) {                                             \
      int64_t lo;                                                            \
      for (lo = 0; lo < n; lo += 2 * w) {                                    \
        int64_t mid = lo + w < n ? lo + w : n;                               \
        int64_t hi = lo + 2 * w < n ? lo + 2 * w : n, p = lo, q = mid,       \
                o = lo;                                                      \
        while (p < mid && q < hi)                                            \
          tmp[o++] = NAME##_before(v, asc, idx[q], idx[p]) ? idx[q++]        \
                                                           : idx[p++];       \
        while (p < mid) tmp[o++] = idx[p++];                                 \
        while (q < hi) tmp[o++] = idx[q++];                                  \
      }                                                                      \
      memcpy(idx, tmp, (size_t)n * sizeof *idx);                             \
    }                                                                        \
    free(tmp);                                                               \
    return 0;                                                                \
  }

#define NOT_NAN(x) 0
DEF_ARGSORT(dl_argsort_f64, double, isnan)
DEF_ARGSORT(dl_argsort_i64, int64_t, NOT_NAN)

/* The k first rows of the stable sort above, by a heap of k rows whose
   root is the one that sorts last: a row enters only if it sorts before
   the root, so most rows cost one comparison.  The order is total (value,
   then row; NaN after every number), so ties keep the row order. */
#define DEF_TOPK(NAME, T, ISNAN)                                             \
  static int NAME##_before(const T *v, int asc, int64_t x, int64_t y) {      \
    T a = v[x], b = v[y];                                                    \
    int an = ISNAN(a), bn = ISNAN(b);                                        \
    if (an || bn) return an == bn ? x < y : bn;                              \
    if (a != b) return asc ? a < b : a > b;                                  \
    return x < y;                                                            \
  }                                                                          \
  static void NAME##_down(const T *v, int asc, int64_t *h, int64_t m,        \
                          int64_t at) {                                      \
    for (;;) {                                                               \
      int64_t l = 2 * at + 1, r = l + 1, w = at, t;                          \
      if (l < m && NAME##_before(v, asc, h[w], h[l])) w = l;                 \
      if (r < m && NAME##_before(v, asc, h[w], h[r])) w = r;                 \
      if (w == at) return;                                                   \
      t = h[at];                                                             \
      h[at] = h[w];                                                          \
      h[w] = t;                                                              \
      at = w;                                                                \
    }                                                                        \
  }                                                                          \
  void NAME(const T *v, int64_t n, int64_t k, int asc, int64_t *idx) {       \
    int64_t m = 0, i;                                                        \
    if (k > n) k = n;                                                        \
    if (k <= 0) return;                                                      \
    for (i = 0; i < n; i++) {                                                \
      if (m < k) { /* sift up */                                             \
        int64_t at = m++;                                                    \
        idx[at] = i;                                                         \
        while (at > 0 &&                                                     \
               NAME##_before(v, asc, idx[(at - 1) / 2], idx[at])) {          \
          int64_t p = (at - 1) / 2, t = idx[p];                              \
          idx[p] = idx[at];                                                  \
          idx[at] = t;                                                       \
          at = p;                                                            \
        }                                                                    \
      } else if (NAME##_before(v, asc, i, idx[0])) {                         \
        idx[0] = i;                                                          \
        NAME##_down(v, asc, idx, m, 0);                                      \
      }                                                                      \
    }                                                                        \
    while (m > 1) { /* the last in sort order to the end, each in turn */    \
      int64_t t = idx[0];                                                    \
      idx[0] = idx[--m];                                                     \
      idx[m] = t;                                                            \
      NAME##_down(v, asc, idx, m, 0);                                        \
    }                                                                        \
  }

DEF_TOPK(dl_topk_f64, double, isnan)
DEF_TOPK(dl_topk_i64, int64_t, NOT_NAN)

void dl_range_f64(const double *v, int64_t n, const double *b, int64_t nb,
                  int64_t *out) {
  int64_t i;
  for (i = 0; i < n; i++) {
    int64_t lo = 0, hi = nb;
    if (isnan(v[i])) {
      out[i] = nb;
      continue;
    }
    while (lo < hi) { /* first bound > v */
      int64_t mid = lo + (hi - lo) / 2;
      if (b[mid] <= v[i]) lo = mid + 1;
      else hi = mid;
    }
    out[i] = lo;
  }
}

void dl_range_i64(const int64_t *v, int64_t n, const int64_t *b, int64_t nb,
                  int64_t *out) {
  int64_t i;
  for (i = 0; i < n; i++) {
    int64_t lo = 0, hi = nb;
    while (lo < hi) {
      int64_t mid = lo + (hi - lo) / 2;
      if (b[mid] <= v[i]) lo = mid + 1;
      else hi = mid;
    }
    out[i] = lo;
  }
}

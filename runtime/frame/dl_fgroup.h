/*
** dl_fgroup.h -- hash group-by kernels for data frames (pure C).
** Keys are factorized into codes 1..k (0: a missing key, left out of
** every group, as pandas does); reductions then run per code.
*/
#ifndef DL_FGROUP_H
#define DL_FGROUP_H

#include <stdint.h>

enum { DL_G_SUM, DL_G_COUNT, DL_G_MIN, DL_G_MAX, DL_G_FIRST, DL_G_LAST,
       DL_G_M2, DL_G_N };

/* Codes for n int64 keys (valid may be NULL: all present).  codes gets
   1..k in order of first appearance; first[j] (0-based row) for code
   j+1 (first must hold n).  Returns k, or -1 when out of memory. */
int64_t dl_factorize_i64(const int64_t *v, const uint8_t *valid, int64_t n,
                         int64_t *codes, int64_t *first);
/* The same for float64 keys (NaN is missing; -0 equals 0). */
int64_t dl_factorize_f64(const double *v, int64_t n, int64_t *codes,
                         int64_t *first);
/* The same for n strings, row i being bytes[offs[i], offs[i+1]) (valid
   may be NULL: all present), compared by their bytes. */
int64_t dl_factorize_bytes(const char *bytes, const int64_t *offs,
                           const uint8_t *valid, int64_t n, int64_t *codes,
                           int64_t *first);
/* Codes of a dictionary-encoded column (c[i] in 0..kdict, 0 missing)
   renumbered 1..k in order of first appearance, as above.  Returns k, -1
   when out of memory, -2 when a code is out of range. */
int64_t dl_factorize_codes(const int64_t *c, int64_t n, int64_t kdict,
                           int64_t *codes, int64_t *first);
/* Reduce v (NaN skipped) by codes (0 skipped) into out[k].  DL_G_M2 needs
   the group means in mean[k]: out = sum of (v - mean)^2.  MIN/MAX/FIRST/
   LAST of an empty group are NaN. */
void dl_group_reduce(int op, const int64_t *codes, int64_t n, const double *v,
                     int64_t k, const double *mean, double *out);
/* The same for int64 values, exact: SUM, MIN, MAX, FIRST or LAST into
   out[k] (a sum wraps around on overflow, as NumPy's does).  seen[k]
   (may be NULL) gets 1 for a group with a row, 0 for an empty one (out
   is 0 there).  Returns the number of empty groups, or -1 when out of
   memory. */
int64_t dl_group_reduce_i64(int op, const int64_t *codes, int64_t n,
                            const int64_t *v, int64_t k, int64_t *out,
                            uint8_t *seen);

/* Row hashes for hash partitioning, mixed into h[n] (start from 0s).
   Numbers hash by their float64 value (an int64 key meets an equal
   float64 key; -0 is 0; NaN one value), strings by their bytes. */
void dl_hash_f64(const double *v, int64_t n, uint64_t *h);
void dl_hash_i64(const int64_t *v, int64_t n, uint64_t *h);
uint64_t dl_hash_bytes(const char *p, size_t n);
void dl_hash_mix(uint64_t *h, uint64_t x);

/* Rows grouped by code: codes in 0..k-1 (n of them); rows gets the
   0-based rows in code order, stable, and start[k + 1] where each code's
   run begins.  0, or -1 when a code is out of range. */
int dl_bucket_rows(const int64_t *codes, int64_t n, int64_t k,
                   int64_t *rows, int64_t *start);

/* The row pairs of a join on codes 1..k (0: a missing key, never
   matched): *li / *ri get malloc'd arrays of *m 1-based rows, 0 for the
   side without a row (left and outer joins).  how: 0 inner, 1 left,
   2 outer.  Left rows in order, each with its matches in right order;
   outer's unmatched right rows last.  0, or -1 when out of memory. */
int dl_join_rows(const int64_t *lc, int64_t nl, const int64_t *rc,
                 int64_t nr, int64_t k, int how, int64_t **li, int64_t **ri,
                 int64_t *m);

/* A stable argsort: idx[n] gets the 0-based rows in ascending (asc != 0)
   or descending order; NaN last either way.  0, or -1 when out of
   memory. */
int dl_argsort_f64(const double *v, int64_t n, int asc, int64_t *idx);
int dl_argsort_i64(const int64_t *v, int64_t n, int asc, int64_t *idx);

/* The first min(k, n) entries of that argsort, without sorting the rest
   (pandas' nlargest / nsmallest): idx[min(k, n)] gets their 0-based rows
   in order, ties in row order, NaN last.  O(n log k), no allocation. */
void dl_topk_f64(const double *v, int64_t n, int64_t k, int asc,
                 int64_t *idx);
void dl_topk_i64(const int64_t *v, int64_t n, int64_t k, int asc,
                 int64_t *idx);

/* Range partitioning by nb sorted bounds: out[i] = the number of bounds
   <= v[i] (0..nb), so partition j holds [bound j-1, bound j); NaN goes
   to nb (last, as sorting puts it). */
void dl_range_f64(const double *v, int64_t n, const double *b, int64_t nb,
                  int64_t *out);
void dl_range_i64(const int64_t *v, int64_t n, const int64_t *b, int64_t nb,
                  int64_t *out);

#endif

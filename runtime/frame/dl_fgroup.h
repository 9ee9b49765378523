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

#endif

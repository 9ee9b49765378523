/*
** csvframe_check.h -- the checks of fuzz_csvframe.c on one input (csvframe_fuzz_one),
** shared with the C test that replays its saved inputs (tests/c/frame/).
*/
#ifndef csvframe_check_h
#define csvframe_check_h

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_csvframe.h"

static void check(int ok) {
  if (!ok) abort();
}

/* Run one input; 0 when accepted. */
static int csvframe_fuzz_one(const unsigned char *data, size_t size) {
  static const char *const tnames[] = {"a", "b", "c", "d"};
  static const int tvals[] = {DL_FT_F64, DL_FT_I64, DL_FT_BOOL, DL_FT_STR};
  static const char *const names[] = {"a", "b", "c"};
  dl_csvopts o;
  dl_ftable t;
  char err[512];
  int rc, i;
  int64_t r;
  if (size < 1) return -1;
  if (size < 100) { /* the float parser against strtod, on the same bytes */
    char buf[101], *e;
    double a = 0, b;
    int ok;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    ok = dl_csv_parse_f64(buf, size - 1, &a);
    b = strtod(buf, &e);
    if (size > 1 && e == buf + size - 1 && !isspace((unsigned char)buf[0]))
      check(ok && (memcmp(&a, &b, sizeof a) == 0 || (a != a && b != b)));
    else
      check(!ok);
  }
  memset(&o, 0, sizeof o);
  o.sep = (data[0] & 1) ? ';' : ',';
  o.header = !(data[0] & 2);
  o.on_error_null = (data[0] & 4) != 0;
  o.file = "fuzz.csv";
  o.line0 = 1;
  if (data[0] & 8) {
    o.ntypes = 4;
    o.type_names = tnames;
    o.type_vals = tvals;
  }
  o.nnames = 3;
  o.names = names;
  o.ninfer = 1 + (data[0] >> 4);
  rc = dl_csv_frame((const char *)data + 1, size - 1, &o, &t, err,
                    sizeof err);
  if (rc) {
    check(err[0] != '\0');
    return rc;
  }
  check(t.ncol > 0);
  for (i = 0; i < t.ncol; i++) {
    const dl_fcol *c = &t.cols[i];
    check(c->n == t.nrows && c->type != DL_FT_AUTO);
    check(c->name != NULL);
    if (c->type == DL_FT_STR) { /* codes in the dictionary, which is */
      const int64_t *k = (const int64_t *)c->vals; /* every code used */
      int64_t seen = 0;
      for (r = 0; r < c->n; r++) {
        check(k[r] >= 0 && k[r] <= c->ndict && (k[r] == 0) == !c->valid[r]);
        check(k[r] <= seen + 1); /* in order of first appearance */
        if (k[r] > seen) seen = k[r];
      }
      check(seen == c->ndict);
      if (c->ndict > 0) {
        check(c->offs[0] == 0);
        for (r = 0; r < c->ndict; r++) check(c->offs[r] < c->offs[r + 1]);
        check((size_t)c->offs[c->ndict] == c->blen);
      }
    }
  }
  dl_ftable_free(&t);
  return 0;
}

#endif

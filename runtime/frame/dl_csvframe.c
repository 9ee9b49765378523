/*
** dl_csvframe.c -- typed CSV blocks into columns; see dl_csvframe.h.
** libcsv (LGPL-2.1+, Debian's libcsv-dev) tokenizes: quotes, CRLF,
** quoted newlines, a last record without a newline.  Numbers are parsed
** with strtod/strtoll in the "C" locale the runtime never changes.
*/
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <csv.h>

#include "dl_csvframe.h"

const char *dl_ft_name(int type) {
  switch (type) {
  case DL_FT_F64: return "float64";
  case DL_FT_I64: return "int64";
  case DL_FT_BOOL: return "bool";
  case DL_FT_STR: return "string";
  default: return "auto";
  }
}

typedef struct rd {
  const dl_csvopts *o;
  dl_ftable *t;
  int phase;       /* 0: header, 1: infer, 2: read */
  int field;       /* index in the current record */
  int64_t rec;     /* records seen (header included) */
  int64_t sampled, limit; /* rows seen / to see in phase 1 */
  int *infer;      /* per column during phase 1: narrowest type so far */
  int failed;
  char *err;
  size_t errn;
  int nhdr;
  char **hdr;
} rd;

static void fail(rd *r, const char *fmt, ...) {
  va_list ap;
  if (r->failed) return;
  r->failed = 1;
  va_start(ap, fmt);
  vsnprintf(r->err, r->errn, fmt, ap);
  va_end(ap);
}

static int64_t line_of(const rd *r) { return r->o->line0 + r->rec; }

static int is_na(const char *s, size_t n) {
  return n == 0 || (n == 2 && memcmp(s, "NA", 2) == 0) ||
         (n == 3 && (memcmp(s, "NaN", 3) == 0 || memcmp(s, "N/A", 3) == 0)) ||
         (n == 4 && (memcmp(s, "null", 4) == 0 || memcmp(s, "NULL", 4) == 0));
}

static int parse_i64(const char *s, int64_t *v) {
  char *e;
  long long x;
  if (*s == 0 || *s == ' ') return 0;
  errno = 0;
  x = strtoll(s, &e, 10);
  if (*e != 0 || errno) return 0;
  *v = (int64_t)x;
  return 1;
}

static int parse_f64(const char *s, double *v) {
  char *e;
  if (*s == 0 || *s == ' ') return 0;
  *v = strtod(s, &e);
  return *e == 0;
}

static int parse_bool(const char *s, size_t n, uint8_t *v) {
  if ((n == 4 && (!memcmp(s, "true", 4) || !memcmp(s, "True", 4) ||
                  !memcmp(s, "TRUE", 4))) || (n == 1 && *s == '1')) {
    *v = 1;
    return 1;
  }
  if ((n == 5 && (!memcmp(s, "false", 5) || !memcmp(s, "False", 5) ||
                  !memcmp(s, "FALSE", 5))) || (n == 1 && *s == '0')) {
    *v = 0;
    return 1;
  }
  return 0;
}

static int grow(rd *r, dl_fcol *c) {
  int64_t cap;
  size_t w;
  void *v;
  uint8_t *m;
  if (c->n < c->cap) return 0;
  cap = c->cap ? c->cap * 2 : 1024;
  w = c->type == DL_FT_BOOL ? 1 : 8;
  if (c->type == DL_FT_STR) {
    int64_t *o = realloc(c->offs, (size_t)(cap + 1) * sizeof *o);
    if (!o) goto nomem;
    if (c->cap == 0) o[0] = 0;
    c->offs = o;
  } else {
    v = realloc(c->vals, (size_t)cap * w);
    if (!v) goto nomem;
    c->vals = v;
  }
  m = realloc(c->valid, (size_t)cap);
  if (!m) goto nomem;
  c->valid = m;
  c->cap = cap;
  return 0;
nomem:
  fail(r, "out of memory");
  return -1;
}

static void put(rd *r, dl_fcol *c, const char *s, size_t n) {
  int ok = 1, missing = is_na(s, n);
  if (grow(r, c)) return;
  switch (c->type) {
  case DL_FT_F64: {
    double v = 0;
    if (missing) v = 0.0 / 0.0;
    else ok = parse_f64(s, &v);
    ((double *)c->vals)[c->n] = ok ? v : 0.0 / 0.0;
    break;
  }
  case DL_FT_I64: {
    int64_t v = 0;
    if (!missing) ok = parse_i64(s, &v);
    ((int64_t *)c->vals)[c->n] = ok ? v : 0;
    break;
  }
  case DL_FT_BOOL: {
    uint8_t v = 0;
    if (!missing) ok = parse_bool(s, n, &v);
    ((uint8_t *)c->vals)[c->n] = ok ? v : 0;
    break;
  }
  default: {
    missing = n == 0;
    if (c->blen + n > c->bcap) {
      size_t cap = c->bcap ? c->bcap : 4096;
      char *b;
      while (cap < c->blen + n) cap *= 2;
      b = realloc(c->bytes, cap);
      if (!b) {
        fail(r, "out of memory");
        return;
      }
      c->bytes = b;
      c->bcap = cap;
    }
    if (n) memcpy(c->bytes + c->blen, s, n);
    c->blen += n;
    c->offs[c->n + 1] = (int64_t)c->blen;
  }
  }
  if (!ok) {
    if (!r->o->on_error_null) {
      fail(r, "%s:%lld:%d: expected %s, got \"%.*s\"",
           r->o->file ? r->o->file : "csv", (long long)line_of(r),
           r->field + 1, dl_ft_name(c->type), (int)(n > 40 ? 40 : n), s);
      return;
    }
    r->t->nerrors++;
    missing = 1;
  }
  c->valid[c->n] = (uint8_t)!missing;
  c->nmissing += missing;
  c->n++;
}

static int narrow(int cur, const char *s, size_t n) {
  int64_t i;
  double d;
  uint8_t b;
  if (is_na(s, n)) return cur;
  if (cur == DL_FT_AUTO || cur == DL_FT_I64) {
    if (parse_i64(s, &i)) return DL_FT_I64;
    if (parse_f64(s, &d)) return DL_FT_F64;
    if (cur == DL_FT_AUTO && parse_bool(s, n, &b)) return DL_FT_BOOL;
    return DL_FT_STR;
  }
  if (cur == DL_FT_F64) return parse_f64(s, &d) ? DL_FT_F64 : DL_FT_STR;
  if (cur == DL_FT_BOOL) return parse_bool(s, n, &b) ? DL_FT_BOOL : DL_FT_STR;
  return DL_FT_STR;
}

static void on_field(void *f, size_t n, void *ud) {
  rd *r = ud;
  const char *s = f ? (const char *)f : "";
  if (r->failed) return;
  if (r->phase == 0) {
    char **h = realloc(r->hdr, (size_t)(r->nhdr + 1) * sizeof *h);
    if (!h || !(h[r->nhdr] = malloc(n + 1))) {
      if (h) r->hdr = h;
      fail(r, "out of memory");
      return;
    }
    r->hdr = h;
    memcpy(h[r->nhdr], s, n);
    h[r->nhdr][n] = 0;
    r->nhdr++;
  } else if (r->field < r->t->ncol) {
    if (r->phase == 1) {
      if (r->sampled < r->limit && r->infer[r->field] != -1)
        /* -1: typed by the caller */
        r->infer[r->field] = narrow(r->infer[r->field], s, n);
    } else {
      put(r, &r->t->cols[r->field], s, n);
    }
  }
  r->field++;
}

static void on_record(int c, void *ud) {
  rd *r = ud;
  (void)c;
  if (r->failed) return;
  if (r->phase == 0) {
    r->phase = 1;
  } else if (r->field != r->t->ncol) {
    fail(r, "%s:%lld: expected %d fields, got %d",
         r->o->file ? r->o->file : "csv", (long long)line_of(r),
         r->t->ncol, r->field);
    return;
  } else if (r->phase == 1) {
    r->sampled++;
  } else {
    r->t->nrows++;
  }
  r->field = 0;
  r->rec++;
}

/* One libcsv pass over p; phase 1 stops after ninfer records. */
static int pass(rd *r, const char *p, size_t n, int stop_after) {
  struct csv_parser cp;
  size_t at = 0, step = stop_after ? 65536 : n;
  if (csv_init(&cp, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL)) {
    fail(r, "out of memory");
    return -1;
  }
  csv_set_delim(&cp, (unsigned char)r->o->sep);
  while (at < n && !r->failed) {
    size_t k = n - at < step ? n - at : step;
    if (csv_parse(&cp, p + at, k, on_field, on_record, r) != k) {
      fail(r, "%s:%lld: %s", r->o->file ? r->o->file : "csv",
           (long long)line_of(r), csv_strerror(csv_error(&cp)));
      break;
    }
    at += k;
    if (stop_after && r->sampled >= stop_after) break;
  }
  if (!r->failed && at >= n &&
      csv_fini(&cp, on_field, on_record, r) != 0)
    fail(r, "%s:%lld: unterminated quoted field",
         r->o->file ? r->o->file : "csv", (long long)line_of(r));
  csv_free(&cp);
  return r->failed ? -1 : 0;
}

void dl_ftable_free(dl_ftable *t) {
  int i;
  for (i = 0; t->cols && i < t->ncol; i++) {
    dl_fcol *c = &t->cols[i];
    free(c->name);
    free(c->vals);
    free(c->valid);
    free(c->offs);
    free(c->bytes);
  }
  free(t->cols);
  memset(t, 0, sizeof *t);
}

int dl_csv_frame(const char *p, size_t n, const dl_csvopts *o, dl_ftable *t,
                 char *err, size_t errn) {
  rd r;
  int i, j, rc = -1;
  memset(t, 0, sizeof *t);
  memset(&r, 0, sizeof r);
  r.o = o;
  r.t = t;
  r.err = err;
  r.errn = errn;
  if (err && errn) err[0] = 0;
  if (n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
    p += 3;
    n -= 3;
  }
  if (o->header) {
    /* the header alone: parse records until the first ends */
    struct csv_parser cp;
    size_t at = 0;
    if (csv_init(&cp, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL))
      goto out;
    csv_set_delim(&cp, (unsigned char)o->sep);
    while (at < n && r.phase == 0 && !r.failed) {
      /* byte by byte is fine: headers are short */
      if (csv_parse(&cp, p + at, 1, on_field, on_record, &r) != 1) {
        fail(&r, "%s:%lld: %s", o->file ? o->file : "csv",
             (long long)o->line0, csv_strerror(csv_error(&cp)));
        break;
      }
      at++;
    }
    if (!r.failed && r.phase == 0)
      csv_fini(&cp, on_field, on_record, &r);
    csv_free(&cp);
    if (r.failed) goto out;
    if (r.nhdr == 0) {
      fail(&r, "%s: empty file: no header", o->file ? o->file : "csv");
      goto out;
    }
    p += at;
    n -= at;
    t->ncol = r.nhdr;
  } else {
    t->ncol = o->nnames;
    if (t->ncol <= 0) {
      fail(&r, "no column names and no header");
      goto out;
    }
    r.rec = 0;
  }
  for (i = 0; i < t->ncol; i++)
    for (j = 0; j < i; j++)
      if (r.hdr && strcmp(r.hdr[i], r.hdr[j]) == 0) {
        fail(&r, "%s: duplicate column name \"%s\"",
             o->file ? o->file : "csv", r.hdr[i]);
        goto out;
      }
  t->cols = calloc((size_t)(unsigned)t->ncol, sizeof *t->cols);
  r.infer = malloc((size_t)(unsigned)t->ncol * sizeof *r.infer);
  if (!t->cols || !r.infer) {
    fail(&r, "out of memory");
    goto out;
  }
  for (i = 0; i < t->ncol; i++) {
    const char *nm = r.hdr ? r.hdr[i] : o->names[i];
    t->cols[i].name = strdup(nm);
    if (!t->cols[i].name) {
      fail(&r, "out of memory");
      goto out;
    }
    t->cols[i].type = DL_FT_AUTO;
    r.infer[i] = DL_FT_AUTO;
    for (j = 0; j < o->ntypes; j++)
      if (strcmp(o->type_names[j], nm) == 0) {
        t->cols[i].type = o->type_vals[j];
        r.infer[i] = -1;
      }
  }
  {
    int64_t rec0 = r.rec;
    r.phase = 1;
    r.field = 0;
    r.limit = o->ninfer > 0 ? o->ninfer : 1000;
    if (pass(&r, p, n, (int)r.limit)) goto out;
    for (i = 0; i < t->ncol; i++)
      if (r.infer[i] != -1)
        t->cols[i].type = r.infer[i] == DL_FT_AUTO ? DL_FT_F64 : r.infer[i];
    r.phase = 2;
    r.rec = rec0;
    r.field = 0;
    if (pass(&r, p, n, 0)) goto out;
  }
  rc = 0;
out:
  for (i = 0; i < r.nhdr; i++) free(r.hdr[i]);
  free(r.hdr);
  free(r.infer);
  if (rc) dl_ftable_free(t);
  return rc;
}

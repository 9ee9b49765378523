/*
** dl_csvframe.c -- typed CSV blocks into columns; see dl_csvframe.h.
** The tokenizer reads the block in place: an unquoted field is a pointer
** and a length into the caller's bytes, only a quoted field with "" in it
** is copied (unescaped) into a scratch buffer.  It replaced libcsv, which
** copies every byte of every field through its own buffer (the profile of
** bench m put ~27 % of the read there).  Numbers are parsed in place too:
** see dl_csv_parse_f64 for the exact fast path before strtod.
*/
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_buf.h"
#include "dl_csvframe.h"

void dl_fprefault(void *p, size_t n) {
#ifdef MADV_POPULATE_WRITE
  long pg = sysconf(_SC_PAGESIZE);
  uintptr_t a, b;
  if (n < ((size_t)1 << 20) || pg <= 0) return;
  a = ((uintptr_t)p + (uintptr_t)pg - 1) / (uintptr_t)pg * (uintptr_t)pg;
  b = ((uintptr_t)p + n) / (uintptr_t)pg * (uintptr_t)pg;
  if (b > a) (void)madvise((void *)a, b - a, MADV_POPULATE_WRITE);
#else
  (void)p;
  (void)n;
#endif
}

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
  int64_t lines;   /* LFs not ending a record: blank lines, quoted LFs */
  int64_t sampled, limit; /* rows seen / to see in phase 1 */
  int *infer;      /* per column during phase 1: narrowest type so far */
  int failed;
  char *err;
  size_t errn;
  int nhdr;
  char **hdr;
  int64_t hint;    /* rows expected (from the sample): first capacity */
  char *scratch;   /* a quoted field with "" unescaped */
  size_t scap;
  unsigned char ends[256]; /* 1 for the bytes that end a field: sep, LF, CR */
} rd;

static void fail(rd *r, const char *fmt, ...) {
  va_list ap;
  if (r->failed) return;
  r->failed = 1;
  va_start(ap, fmt);
  vsnprintf(r->err, r->errn, fmt, ap);
  va_end(ap);
}

/* The file's line where the current record starts. */
static int64_t line_of(const rd *r) {
  return r->o->line0 + r->rec + r->lines;
}

static int is_na(const char *s, size_t n) {
  return n == 0 || (n == 2 && memcmp(s, "NA", 2) == 0) ||
         (n == 3 && (memcmp(s, "NaN", 3) == 0 || memcmp(s, "N/A", 3) == 0)) ||
         (n == 4 && (memcmp(s, "null", 4) == 0 || memcmp(s, "NULL", 4) == 0));
}

static int parse_i64(const char *s, size_t n, int64_t *v) {
  uint64_t x = 0;
  size_t i = 0;
  int neg = 0;
  if (n == 0) return 0;
  if (s[0] == '+' || s[0] == '-') {
    neg = s[0] == '-';
    i = 1;
  }
  if (i == n) return 0;
  for (; i < n; i++) {
    unsigned d = (unsigned char)s[i] - '0';
    if (d > 9 || x > (UINT64_MAX - d) / 10) return 0;
    x = x * 10 + d;
  }
  if (neg) {
    if (x > (uint64_t)INT64_MAX + 1) return 0;
    *v = x == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)x;
  } else {
    if (x > (uint64_t)INT64_MAX) return 0;
    *v = (int64_t)x;
  }
  return 1;
}

static const double p10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8,
  1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
  1e21, 1e22};

/* strtod on a copy with a terminating NUL: the whole field must parse. */
static int slow_f64(const char *s, size_t n, double *v) {
  char buf[128], *c = n < sizeof buf ? buf : malloc(n + 1), *e;
  int ok;
  if (!c) return 0;
  memcpy(c, s, n);
  c[n] = 0;
  *v = strtod(c, &e);
  ok = e == c + n && n > 0 && !isspace((unsigned char)c[0]);
  if (c != buf) free(c);
  return ok;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* Eight ASCII digits at s as a number, in three steps of lanes (SWAR):
   bytes hold digits, then pairs in 16-bit lanes, then fours in 32-bit
   lanes.  0 when one of the eight bytes is not a digit. */
static int digits8(const char *s, uint64_t *out) {
  uint64_t v;
  memcpy(&v, s, 8);
  if ((v & 0xF0F0F0F0F0F0F0F0ULL) != 0x3030303030303030ULL ||
      ((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) !=
          0x3030303030303030ULL)
    return 0;
  v -= 0x3030303030303030ULL;              /* byte j: digit j (first low) */
  v = (v * 10 + (v >> 8)) & 0x00FF00FF00FF00FFULL;    /* 16-bit: 2 digits */
  v = (v * 100 + (v >> 16)) & 0x0000FFFF0000FFFFULL;  /* 32-bit: 4 digits */
  *out = (v & 0xFFFFFFFFULL) * 10000 + (v >> 32);
  return 1;
}
static const uint64_t p10u[9] = {1, 10, 100, 1000, 10000, 100000,
                                  1000000, 10000000, 100000000};
/* The decimal digits of 0 < x < 10^8, from its bit length. */
static int ndigits8(uint64_t x) {
  int t = ((64 - __builtin_clzll(x)) * 1233) >> 12;
  return t + 1 - (x < p10u[t]);
}
#define DL_DIGITS8 1
#endif

/* The number at the start of s[0, n) in the fast grammar ([sign] digits
   [. digits] [e [sign] digits], at most 19 significant digits) into *v,
   correctly rounded: the bytes it took, or 0 when strtod must decide. */
static size_t f64_prefix(const char *s, size_t n, double *v) {
  uint64_t m = 0;
  size_t i = 0;
  int neg = 0, nd = 0, any = 0, e10 = 0;
  if (n == 0) return 0;
  if (s[0] == '+' || s[0] == '-') {
    neg = s[0] == '-';
    i = 1;
  }
  /* [sign] digits [. digits] [e [sign] digits]: m * 10^e10 */
  for (; i < n && (unsigned)((unsigned char)s[i] - '0') <= 9; i++, any = 1) {
    if (nd >= 19) return 0;
    m = m * 10 + (unsigned)(s[i] - '0');
    nd += m != 0;
  }
  if (i < n && s[i] == '.') {
#ifdef DL_DIGITS8
    uint64_t c8;
    /* eight digits at a time while m stays below 10^19 */
    for (i++; nd <= 11 && i + 8 <= n && digits8(s + i, &c8); i += 8) {
      if (m) nd += 8;
      else nd = c8 ? ndigits8(c8) : 0;
      m = m * 100000000u + c8;
      e10 -= 8;
      any = 1;
    }
    i--;
#endif
    for (i++; i < n && (unsigned)((unsigned char)s[i] - '0') <= 9;
         i++, any = 1) {
      if (nd >= 19) return 0;
      m = m * 10 + (unsigned)(s[i] - '0');
      nd += m != 0;
      e10--;
    }
  }
  if (!any) return 0; /* inf, nan, hex, junk */
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    int eneg = 0, ex = 0, ed = 0;
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
    for (; i < n && (unsigned)((unsigned char)s[i] - '0') <= 9; i++, ed++)
      if (ex < 10000) ex = ex * 10 + (s[i] - '0');
    if (!ed) return 0;
    e10 += eneg ? -ex : ex;
  }
  if (m == 0) {
    *v = neg ? -0.0 : 0.0;
    return i;
  }
  /* Clinger's fast path: m and 10^|e10| exact doubles, one rounding */
  if (m <= ((uint64_t)1 << 53) && e10 >= -22 && e10 <= 22) {
    double d = (double)m;
    d = e10 < 0 ? d / p10[-e10] : d * p10[e10];
    *v = neg ? -d : d;
    return i;
  }
#if LDBL_MANT_DIG == 64 && (defined(__x86_64__) || defined(__i386__))
  /* m < 2^64 and 10^|e10| <= 10^27 are exact in the x87 format; its one
     rounding to 64 bits is then rounded to 53.  That double rounding can
     only go wrong when the 11 dropped bits are within one unit of the
     half-way pattern: those few go to strtod. */
  if (e10 >= -27 && e10 <= 27) {
    /* 10^k for k <= 27 is exact in 64 bits (5^27 < 2^64) */
    static const long double lp10[28] = {
      1e0L, 1e1L, 1e2L, 1e3L, 1e4L, 1e5L, 1e6L, 1e7L, 1e8L, 1e9L, 1e10L,
      1e11L, 1e12L, 1e13L, 1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L,
      1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};
    long double q = (long double)m;
    uint64_t sig;
    unsigned low;
    q = e10 < 0 ? q / lp10[-e10] : q * lp10[e10];
    memcpy(&sig, &q, sizeof sig);
    low = (unsigned)(sig & 0x7ff);
    if (low < 0x3ff || low > 0x401) {
      double d = (double)q;
      *v = neg ? -d : d;
      return i;
    }
  }
#endif
  return 0;
}

int dl_csv_parse_f64(const char *s, size_t n, double *v) {
  if (n > 0 && f64_prefix(s, n, v) == n) return 1;
  return slow_f64(s, n, v); /* inf, nan, hex, junk, long or hard cases */
}

static int parse_f64(const char *s, size_t n, double *v) {
  return dl_csv_parse_f64(s, n, v);
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

/* Room for cap rows in c (never shrinks).  0, or -1 out of memory. */
static int reserve(dl_fcol *c, int64_t cap) {
  size_t w = c->type == DL_FT_BOOL ? 1 : 8;
  uint8_t *m;
  dl_nd nn;
  if (cap <= c->cap) return 0;
  if (dl_nd_alloc_uninit(&nn, c->type == DL_FT_F64 ? DL_F64
                              : c->type == DL_FT_BOOL ? DL_BOOL : DL_I64,
                         1, &cap))
    return -1;
  dl_fprefault(nn.data, (size_t)cap * w);
  if (c->n) memcpy(nn.data, c->vals, (size_t)c->n * w);
  dl_nd_release(&c->nd);
  c->nd = nn;
  c->vals = nn.data;
  m = dl_realloc(c->valid, (size_t)cap);
  if (!m) return -1;
  c->valid = m;
  c->cap = cap;
  return 0;
}

/* Room for n more string bytes in c.  0, or -1 out of memory. */
static int reserve_bytes(dl_fcol *c, size_t n) {
  size_t cap = c->bcap ? c->bcap : 4096;
  char *b;
  if (c->blen + n <= c->bcap) return 0;
  while (cap < c->blen + n) cap *= 2;
  b = dl_realloc(c->bytes, cap);
  if (!b) return -1;
  c->bytes = b;
  c->bcap = cap;
  return 0;
}

/* A slot of a string column's hash table: a code (0: empty) and the
   hash of its string. */
struct dl_fslot {
  uint64_t h;
  int64_t code;
};

/* A hash of n bytes: short strings (the usual keys) in one multiply. */
static uint64_t str_hash(const char *s, size_t n) {
  uint64_t v = 0;
  size_t i;
  if (n > 8) {
    v = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (i = 0; i < n; i++) v = (v ^ (unsigned char)s[i]) * 0x100000001b3ULL;
  } else {
    memcpy(&v, s, n);
  }
  v = (v ^ (uint64_t)n << 56) * 0x9E3779B97F4A7C15ULL;
  return v ^ (v >> 29);
}

/* Twice the slots (64 at first), every code placed again. */
static int dict_rehash(dl_fcol *c) {
  size_t cap = c->hcap ? c->hcap * 2 : 64, i, j;
  struct dl_fslot *t = dl_realloc(NULL, cap * sizeof *t);
  if (!t) return -1;
  memset(t, 0, cap * sizeof *t);
  for (i = 0; i < c->hcap; i++)
    if (c->slots[i].code) {
      for (j = c->slots[i].h & (cap - 1); t[j].code; j = (j + 1) & (cap - 1)) {}
      t[j] = c->slots[i];
    }
  dl_free(c->slots);
  c->slots = t;
  c->hcap = cap;
  return 0;
}

/* The code of the string s[0, n) in c's dictionary, added when new: 1..,
   or -1 out of memory. */
static int64_t dict_code(dl_fcol *c, const char *s, size_t n) {
  uint64_t h = str_hash(s, n);
  size_t i, mask;
  if ((size_t)(c->ndict + 1) * 2 > c->hcap && dict_rehash(c)) return -1;
  mask = c->hcap - 1;
  for (i = h & mask; c->slots[i].code; i = (i + 1) & mask)
    if (c->slots[i].h == h) {
      int64_t k = c->slots[i].code;
      if ((size_t)(c->offs[k] - c->offs[k - 1]) == n &&
          memcmp(c->bytes + c->offs[k - 1], s, n) == 0)
        return k;
    }
  if (c->ndict + 1 >= c->dcap) {
    int64_t cap = c->dcap ? c->dcap * 2 : 64;
    int64_t *o = dl_realloc(c->offs, (size_t)cap * sizeof *o);
    if (!o) return -1;
    if (c->dcap == 0) o[0] = 0;
    c->offs = o;
    c->dcap = cap;
  }
  if (reserve_bytes(c, n)) return -1;
  if (n) memcpy(c->bytes + c->blen, s, n);
  c->blen += n;
  c->offs[++c->ndict] = (int64_t)c->blen;
  c->slots[i].h = h;
  c->slots[i].code = c->ndict;
  return c->ndict;
}

static int grow(rd *r, dl_fcol *c) {
  if (c->n < c->cap) return 0;
  if (reserve(c, c->cap ? c->cap * 2 : (r->hint > 1024 ? r->hint : 1024))) {
    fail(r, "out of memory");
    return -1;
  }
  return 0;
}

static void put(rd *r, dl_fcol *c, const char *s, size_t n) {
  int ok = 1, missing = is_na(s, n);
  if (grow(r, c)) return;
  switch (c->type) {
  case DL_FT_F64: {
    double v = 0;
    if (missing) v = 0.0 / 0.0;
    else ok = parse_f64(s, n, &v);
    ((double *)c->vals)[c->n] = ok ? v : 0.0 / 0.0;
    break;
  }
  case DL_FT_I64: {
    int64_t v = 0;
    if (!missing) ok = parse_i64(s, n, &v);
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
    int64_t k = 0;
    missing = n == 0;
    if (!missing && (k = dict_code(c, s, n)) < 0) {
      fail(r, "out of memory");
      return;
    }
    ((int64_t *)c->vals)[c->n] = k;
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
    if (parse_i64(s, n, &i)) return DL_FT_I64;
    if (parse_f64(s, n, &d)) return DL_FT_F64;
    if (cur == DL_FT_AUTO && parse_bool(s, n, &b)) return DL_FT_BOOL;
    return DL_FT_STR;
  }
  if (cur == DL_FT_F64) return parse_f64(s, n, &d) ? DL_FT_F64 : DL_FT_STR;
  if (cur == DL_FT_BOOL) return parse_bool(s, n, &b) ? DL_FT_BOOL : DL_FT_STR;
  return DL_FT_STR;
}

static void on_field(rd *r, const char *s, size_t n) {
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

static void on_record(rd *r) {
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

static int is_blank(char c, char sep) {
  return (c == ' ' || c == '\t') && c != sep;
}

/* An int64 of at most 18 digits at the start of s[0, n) (n > 0) into *v:
   the bytes it took, or 0 (parse_i64 decides). */
static size_t i64_prefix(const char *s, size_t n, int64_t *v) {
  uint64_t x = 0;
  size_t i = s[0] == '+' || s[0] == '-', d0 = i;
  for (; i < n; i++) {
    unsigned d = (unsigned)((unsigned char)s[i] - '0');
    if (d > 9) break;
    if (i - d0 >= 18) return 0;
    x = x * 10 + d;
  }
  if (i == d0) return 0;
  *v = s[0] == '-' ? -(int64_t)x : (int64_t)x;
  return i;
}

/* Phase 2's common field, read straight into its column: a number the
   fast grammar takes up to the field's end, or a string with no quote
   and no blank to trim.  The index after the field, or 0 for any other
   field (record's general path then takes it). */
static size_t fast_field(rd *r, const char *p, size_t n, size_t i) {
  dl_fcol *c = &r->t->cols[r->field];
  size_t k;
  if (grow(r, c)) return 0;
  switch (c->type) {
  case DL_FT_F64: {
    double v;
    k = i + f64_prefix(p + i, n - i, &v);
    if (k == i || (k < n && !r->ends[(unsigned char)p[k]])) return 0;
    ((double *)c->vals)[c->n] = v;
    break;
  }
  case DL_FT_I64: {
    int64_t v;
    k = i + i64_prefix(p + i, n - i, &v);
    if (k == i || (k < n && !r->ends[(unsigned char)p[k]])) return 0;
    ((int64_t *)c->vals)[c->n] = v;
    break;
  }
  case DL_FT_STR: {
    int64_t code;
    for (k = i; k < n && !r->ends[(unsigned char)p[k]]; k++) {}
    if (k == i || p[i] == '"' || is_blank(p[i], r->o->sep) ||
        is_blank(p[k - 1], r->o->sep) ||
        (code = dict_code(c, p + i, k - i)) < 0)
      return 0;
    ((int64_t *)c->vals)[c->n] = code;
    break;
  }
  default:
    return 0;
  }
  c->valid[c->n++] = 1;
  return k;
}

/* One record from p[*at, n): on_field for each field, then on_record.
   Blank lines are skipped; a record ends at LF, CRLF, CR or the end.
   Fields are trimmed of spaces and tabs outside quotes; in a quoted
   field "" is a quote and anything else (newlines too) is literal; after
   the closing quote only blanks may come before the separator.  Returns
   1 for a record, 0 at the end, -1 on an error (r->failed). */
static int record(rd *r, const char *p, size_t n, size_t *at) {
  size_t i = *at;
  int64_t qlf = 0; /* LFs inside quoted fields: counted once it ends */
  const char sep = r->o->sep;
  for (; i < n && (p[i] == '\n' || p[i] == '\r'); i++)
    r->lines += p[i] == '\n';
  if (i >= n) {
    *at = n;
    return 0;
  }
  for (;;) {
    size_t j = i, k;
    if (r->phase == 2 && r->field < r->t->ncol && i < n &&
        (k = fast_field(r, p, n, i)) != 0) {
      r->field++;
      i = k;
      if (i < n && p[i] == sep) {
        i++;
        continue;
      }
      if (i < n && p[i] == '\r') i++;
      if (i < n && p[i] == '\n') i++;
      break;
    }
    while (j < n && is_blank(p[j], sep)) j++;
    if (j < n && p[j] == '"') {
      size_t w = 0;
      int esc = 0;
      for (k = j + 1; k < n; k++)
        if (p[k] == '\n') {
          qlf++;
        } else if (p[k] == '"') {
          if (k + 1 < n && p[k + 1] == '"') {
            esc = 1;
            k++;
          } else {
            break;
          }
        }
      if (k >= n) {
        fail(r, "%s:%lld: unterminated quoted field",
             r->o->file ? r->o->file : "csv", (long long)line_of(r));
        return -1;
      }
      if (esc) {
        size_t q;
        if (k - j > r->scap) {
          char *b = realloc(r->scratch, k - j);
          if (!b) {
            fail(r, "out of memory");
            return -1;
          }
          r->scratch = b;
          r->scap = k - j;
        }
        for (q = j + 1; q < k; q++) {
          r->scratch[w++] = p[q];
          if (p[q] == '"') q++;
        }
        on_field(r, r->scratch, w);
      } else {
        on_field(r, p + j + 1, k - j - 1);
      }
      k++;
      while (k < n && is_blank(p[k], sep)) k++;
      if (k < n && p[k] != sep && p[k] != '\n' && p[k] != '\r') {
        fail(r, "%s:%lld: unexpected '%c' after a closing quote (field %d)",
             r->o->file ? r->o->file : "csv", (long long)line_of(r), p[k],
             r->field + 1);
        return -1;
      }
    } else {
      size_t e;
      k = j;
      while (k < n && !r->ends[(unsigned char)p[k]]) k++;
      e = k;
      while (e > j && is_blank(p[e - 1], sep)) e--;
      on_field(r, p + j, e - j);
    }
    i = k;
    if (r->failed) return -1;
    if (i < n && p[i] == sep) {
      i++;
      continue;
    }
    if (i < n && p[i] == '\r') i++;
    if (i < n && p[i] == '\n') i++;
    break;
  }
  *at = i;
  on_record(r);
  r->lines += qlf;
  return r->failed ? -1 : 1;
}

/* One pass over p; with stop_after, only that many data records. */
static int pass(rd *r, const char *p, size_t n, int64_t stop_after,
                size_t *used) {
  size_t at = 0;
  int rc;
  while ((rc = record(r, p, n, &at)) == 1)
    if (stop_after && r->sampled >= stop_after) break;
  if (used) *used = at;
  return rc < 0 ? -1 : 0;
}

/*
** Reading rows on several threads.  A block without quotes (so every LF
** ends a record) is cut at LFs into one chunk per thread; chunk 0 is read
** into the caller's table, sized for the whole block from the sample, the
** others into tables of their own, appended to it in order after.  When
** a chunk fails, the block is read again on one thread, so an error is
** the one (and its line number) a single pass gives.
*/
#define CHUNK_MIN ((size_t)1 << 20) /* bytes per thread, at least */
#define THREADS_MAX 16

typedef struct chunk {
  rd r;
  dl_ftable t;
  const char *p;
  size_t n;
  char err[256];
} chunk;

static void *chunk_main(void *a) {
  chunk *k = (chunk *)a;
  pass(&k->r, k->p, k->n, 0, NULL);
  return NULL;
}

/* Append b's rows to a (the same type).  0, or -1 out of memory. */
static int append_col(dl_fcol *a, const dl_fcol *b) {
  if (b->n == 0) return 0;
  if (reserve(a, a->n + b->n)) return -1;
  if (a->type == DL_FT_STR) { /* b's codes through a's dictionary */
    int64_t i, *map = malloc((size_t)(b->ndict + 1) * sizeof *map);
    const int64_t *bc = (const int64_t *)b->vals;
    int64_t *ac = (int64_t *)a->vals + a->n;
    if (!map) return -1;
    map[0] = 0;
    for (i = 1; i <= b->ndict; i++)
      if ((map[i] = dict_code(a, b->bytes + b->offs[i - 1],
                              (size_t)(b->offs[i] - b->offs[i - 1]))) < 0) {
        free(map);
        return -1;
      }
    for (i = 0; i < b->n; i++) ac[i] = map[bc[i]];
    free(map);
  } else {
    size_t w = a->type == DL_FT_BOOL ? 1 : 8;
    memcpy((char *)a->vals + (size_t)a->n * w, b->vals, (size_t)b->n * w);
  }
  memcpy(a->valid + a->n, b->valid, (size_t)b->n);
  a->n += b->n;
  a->nmissing += b->nmissing;
  return 0;
}

/* Phase 2 over p[0, n) into r->t on up to nt threads; rec0 and lines0:
   r->rec and r->lines at the first data record.  0, or -1 (r->failed). */
static int read_rows(rd *r, const char *p, size_t n, int nt, int64_t rec0,
                     int64_t lines0) {
  chunk *ks;
  pthread_t th[THREADS_MAX];
  int started[THREADS_MAX] = {0};
  int i, j, bad = 0;
  size_t at = 0;
  if (nt > THREADS_MAX) nt = THREADS_MAX;
  if (nt > 1 && n / (size_t)nt < CHUNK_MIN) nt = (int)(n / CHUNK_MIN);
  if (nt <= 1 || memchr(p, '"', n) != NULL) return pass(r, p, n, 0, NULL);
  ks = calloc((size_t)nt, sizeof *ks);
  if (!ks) return pass(r, p, n, 0, NULL);
  for (i = 0; i < nt; i++) { /* chunk i: [at, the LF after n*(i+1)/nt] */
    size_t end = n / (size_t)nt * (size_t)(i + 1);
    const char *nl;
    if (i == nt - 1 || end <= at) end = i == nt - 1 ? n : at;
    else end = (nl = memchr(p + end, '\n', n - end)) ? (size_t)(nl - p) + 1
                                                    : n;
    ks[i].p = p + at;
    ks[i].n = end - at;
    at = end;
  }
  for (i = 1; i < nt; i++) {
    chunk *k = &ks[i];
    k->r = *r;
    k->r.t = &k->t;
    k->r.err = k->err;
    k->r.errn = sizeof k->err;
    k->r.scratch = NULL;
    k->r.scap = 0;
    k->r.rec = k->r.lines = 0;
    k->r.hint = (int64_t)((double)r->hint * (double)k->n / (double)n) + 16;
    k->t.ncol = r->t->ncol;
    k->t.cols = calloc((size_t)(unsigned)k->t.ncol, sizeof *k->t.cols);
    if (!k->t.cols) {
      bad = 1;
      break;
    }
    for (j = 0; j < k->t.ncol; j++) k->t.cols[j].type = r->t->cols[j].type;
  }
  for (i = 1; i < nt && !bad; i++)
    started[i] = pthread_create(&th[i], NULL, chunk_main, &ks[i]) == 0;
  if (!bad) pass(r, ks[0].p, ks[0].n, 0, NULL);
  for (i = 1; i < nt && !bad; i++) {
    if (started[i]) pthread_join(th[i], NULL);
    else chunk_main(&ks[i]);
  }
  for (i = 1; i < nt && !bad && !r->failed; i++) {
    if (ks[i].r.failed) {
      bad = 1;
      break;
    }
    for (j = 0; j < r->t->ncol; j++)
      if (append_col(&r->t->cols[j], &ks[i].t.cols[j])) bad = 1;
    r->t->nrows += ks[i].t.nrows;
    r->t->nerrors += ks[i].t.nerrors;
  }
  for (i = 1; i < nt; i++) dl_ftable_free(&ks[i].t);
  free(ks);
  if (bad || r->failed) { /* again on one thread: the first error */
    for (j = 0; j < r->t->ncol; j++) {
      dl_fcol *c = &r->t->cols[j];
      c->n = c->nmissing = c->ndict = 0;
      c->blen = 0;
      if (c->slots) memset(c->slots, 0, c->hcap * sizeof *c->slots);
    }
    r->t->nrows = r->t->nerrors = 0;
    r->failed = 0;
    r->rec = rec0;
    r->lines = lines0;
    r->field = 0;
    if (r->err && r->errn) r->err[0] = 0;
    return pass(r, p, n, 0, NULL);
  }
  return 0;
}

void dl_ftable_free(dl_ftable *t) {
  int i;
  for (i = 0; t->cols && i < t->ncol; i++) {
    dl_fcol *c = &t->cols[i];
    free(c->name);
    dl_nd_release(&c->nd);
    dl_free(c->valid);
    dl_free(c->offs);
    dl_free(c->bytes);
    dl_free(c->slots);
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
  r.ends[(unsigned char)o->sep] = r.ends['\n'] = r.ends['\r'] = 1;
  if (err && errn) err[0] = 0;
  if (n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
    p += 3;
    n -= 3;
  }
  if (o->header) {
    /* the header alone: the first record */
    size_t at = 0;
    record(&r, p, n, &at);
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
    int64_t rec0 = r.rec, lines0 = r.lines;
    r.phase = 1;
    r.field = 0;
    r.limit = o->ninfer > 0 ? o->ninfer : 1000;
    size_t used = 0;
    if (pass(&r, p, n, r.limit, &used)) goto out;
    if (used > 0 && r.sampled > 0) /* the sample's bytes per row, +1/8 */
      r.hint = (int64_t)((double)n / (double)used * (double)r.sampled *
                         1.125) + 16;
    if (r.hint > (int64_t)n + 16) r.hint = (int64_t)n + 16;
    for (i = 0; i < t->ncol; i++)
      if (r.infer[i] != -1)
        t->cols[i].type = r.infer[i] == DL_FT_AUTO ? DL_FT_F64 : r.infer[i];
    r.phase = 2;
    r.rec = rec0;
    r.lines = lines0;
    r.field = 0;
    if (read_rows(&r, p, n, o->threads, rec0, lines0)) goto out;
  }
  rc = 0;
out:
  for (i = 0; i < r.nhdr; i++) free(r.hdr[i]);
  free(r.hdr);
  free(r.scratch);
  free(r.infer);
  if (rc) dl_ftable_free(t);
  return rc;
}

/* pread all of [off, off + n) into b; bytes read (short at the end of
   the file), or -1. */
static ssize_t read_at(int fd, char *b, size_t n, off_t off) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = pread(fd, b + got, n - got, off + (off_t)got);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return -1;
    if (k == 0) break;
    got += (size_t)k;
  }
  return (ssize_t)got;
}

int dl_csv_read_block(const char *path, int64_t start, int64_t stop,
                      char **out, size_t *outn, char *err, size_t errn) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  char *b = NULL;
  size_t cap, n = 0;
  int64_t pos = start;
  *out = NULL;
  *outn = 0;
  if (fd < 0 || fstat(fd, &st) != 0) goto syserr;
  if (stop < 0 || stop > (int64_t)st.st_size) stop = (int64_t)st.st_size;
  if (start < 0) start = pos = 0;
  if (start > 0) { /* the block starts after the line that holds start-1 */
    char c[4096];
    int found = 0;
    pos = start - 1;
    while (!found) {
      ssize_t k = read_at(fd, c, sizeof c, (off_t)pos), i;
      if (k < 0) goto syserr;
      if (k == 0) break;
      for (i = 0; i < k; i++)
        if (c[i] == '\n') {
          found = 1;
          pos += i + 1;
          break;
        }
      if (!found) pos += k;
    }
    if (!found) pos = (int64_t)st.st_size;
  }
  cap = pos < stop ? (size_t)(stop - pos) + 4096 : 1;
  b = malloc(cap);
  if (!b) goto nomem;
  if (pos < stop) {
    ssize_t k = read_at(fd, b, (size_t)(stop - pos), (off_t)pos);
    if (k < 0) goto syserr;
    n = (size_t)k;
    /* finish the last line past stop */
    while (n > 0 && b[n - 1] != '\n') {
      ssize_t i;
      if (cap - n < 4096) {
        char *nb = realloc(b, cap * 2);
        if (!nb) goto nomem;
        b = nb;
        cap *= 2;
      }
      k = read_at(fd, b + n, 4096, (off_t)(pos + (int64_t)n));
      if (k < 0) goto syserr;
      if (k == 0) break;
      for (i = 0; i < k; i++)
        if (b[n + (size_t)i] == '\n') break;
      n += (size_t)(i < k ? i + 1 : k);
    }
  }
  close(fd);
  *out = b;
  *outn = n;
  return 0;
syserr:
  snprintf(err, errn, "%s: %s", path, strerror(errno));
  goto fail;
nomem:
  snprintf(err, errn, "%s: out of memory", path);
fail:
  if (fd >= 0) close(fd);
  free(b);
  return -1;
}

int dl_csv_map_block(const char *path, int64_t start, int64_t stop,
                     dl_csvblock *b, char *err, size_t errn) {
  int fd;
  struct stat st;
  int64_t size, pos, end, off;
  long pg = sysconf(_SC_PAGESIZE);
  const char *m, *nl;
  memset(b, 0, sizeof *b);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(err, errn, "%s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  size = (int64_t)st.st_size;
  if (!S_ISREG(st.st_mode) || size == 0 || pg <= 0) {
    close(fd);
    if (S_ISREG(st.st_mode) && size == 0) return 0; /* nothing to read */
    goto copy;
  }
  if (start < 0) start = 0;
  if (start > size) start = size;
  if (stop < 0 || stop > size) stop = size;
  off = start > 0 ? (start - 1) / pg * pg : 0;
  b->maplen = (size_t)(size - off);
  b->map = mmap(NULL, b->maplen, PROT_READ, MAP_PRIVATE, fd, (off_t)off);
  close(fd);
  if (b->map == MAP_FAILED) {
    b->map = NULL;
    goto copy;
  }
  m = (const char *)b->map - off; /* m[x] is the file's byte x */
  pos = start;
  if (start > 0) { /* after the line that holds start - 1 */
    nl = memchr(m + start - 1, '\n', (size_t)(size - start + 1));
    pos = nl ? (int64_t)(nl - m) + 1 : size;
  }
  end = stop;
  if (end > pos && m[end - 1] != '\n') { /* finish the last line */
    nl = memchr(m + end, '\n', (size_t)(size - end));
    end = nl ? (int64_t)(nl - m) + 1 : size;
  }
  if (end < pos) end = pos;
  b->p = m + pos;
  b->n = (size_t)(end - pos);
  if (b->n > 0) { /* map the pages now, in one go, not one fault each */
    char *a = (char *)b->map + ((pos - off) / pg * pg);
    size_t l = (size_t)(end - off) - (size_t)(a - (char *)b->map);
#ifdef MADV_POPULATE_READ
    if (madvise(a, l, MADV_POPULATE_READ) != 0)
#endif
      madvise(a, l, MADV_WILLNEED);
  }
  return 0;
copy:
  if (dl_csv_read_block(path, start, stop, &b->owned, &b->n, err, errn))
    return -1;
  b->p = b->owned;
  return 0;
}

void dl_csv_block_free(dl_csvblock *b) {
  if (b->map) munmap(b->map, b->maplen);
  free(b->owned);
  memset(b, 0, sizeof *b);
}

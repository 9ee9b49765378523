/*
** dl_frame_lua.c -- the "dlua.framec" module: the C kernels of data
** frames (runtime/frame/) for lua/dlua/frame.lua.  Numeric columns are
** dlua.ndarray userdata (frame.lua loads dlua.ndarray first, which makes
** the metatable used here); string columns are dictionary-encoded:
** {codes = int64 ndarray (0: missing, else 1..#dict), dict = {strings},
** n = rows}, whose metatable STR_MT makes col[i] the string (false when
** missing).  README.md, "Data frames".
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "dl_codec.h"
#include "dl_csvframe.h"
#include "dl_fcodec.h"
#include "dl_fgroup.h"
#include "dl_nd.h"
#include "dl_runtime.h"

#define ND_MT "dlua.ndarray"
#define STR_MT "dlua.frame.strings"
#define FRAME_MT "dlua.frame"

/* A contiguous 1-d view of the ndarray at i (copied if strided). */
static const dl_nd *check_vec(lua_State *L, int i) {
  dl_nd *a = (dl_nd *)luaL_testudata(L, i, ND_MT);
  if (a == NULL || a->buf == NULL) luaL_typeerror(L, i, "ndarray");
  if (a->ndim != 1)
    luaL_argerror(L, i, "expected a 1-d ndarray (a column)");
  if (!dl_nd_contiguous(a)) luaL_argerror(L, i, "expected a contiguous ndarray");
  return a;
}

/* Push a new 1-d ndarray of n elements of type t.  [-0, +1, m] */
static dl_nd *push_vec(lua_State *L, dl_dtype t, int64_t n) {
  dl_nd *a = (dl_nd *)lua_newuserdatauv(L, sizeof *a, 0);
  memset(a, 0, sizeof *a);
  if (luaL_getmetatable(L, ND_MT) != LUA_TTABLE)
    luaL_error(L, "dlua.frame: dlua.ndarray is not loaded");
  lua_setmetatable(L, -2);
  if (dl_nd_alloc_uninit(a, t, 1, &n)) luaL_error(L, "not enough memory");
  dl_fprefault(a->data, (size_t)n * dl_nd_itemsize(t));
  return a;
}

/* The codes of the dictionary-encoded string column at i (a table with
   an int64 ndarray in .codes), or NULL when i is something else. */
static const dl_nd *str_codes(lua_State *L, int i) {
  dl_nd *a;
  if (lua_type(L, i) != LUA_TTABLE) return NULL;
  i = lua_absindex(L, i);
  lua_pushliteral(L, "codes");
  lua_rawget(L, i);
  a = (dl_nd *)luaL_testudata(L, -1, ND_MT);
  lua_pop(L, 1); /* the column keeps it alive */
  if (a == NULL) return NULL;
  if (a->buf == NULL || a->ndim != 1 || a->dtype != DL_I64 ||
      !dl_nd_contiguous(a))
    luaL_argerror(L, i, "string column: codes must be a 1-d int64 ndarray");
  return a;
}

/* #dict of the string column at i. */
static int64_t str_ndict(lua_State *L, int i) {
  int64_t k;
  i = lua_absindex(L, i);
  lua_pushliteral(L, "dict");
  lua_rawget(L, i);
  if (!lua_istable(L, -1)) luaL_argerror(L, i, "string column without a dict");
  k = (int64_t)lua_rawlen(L, -1);
  lua_pop(L, 1);
  return k;
}

/* col[i] of a string column: its string, false when missing, nil past
   the end (and for keys that are not integers). */
static int str_index(lua_State *L) {
  const dl_nd *c = str_codes(L, 1);
  lua_Integer i;
  int64_t code;
  if (c == NULL || !lua_isinteger(L, 2)) return 0;
  i = lua_tointeger(L, 2);
  if (i < 1 || i > c->shape[0]) return 0;
  code = ((const int64_t *)c->data)[i - 1];
  if (code == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushliteral(L, "dict");
  if (lua_rawget(L, 1) != LUA_TTABLE) return 0;
  lua_rawgeti(L, -1, (lua_Integer)code);
  return 1;
}

static int str_len(lua_State *L) {
  const dl_nd *c = str_codes(L, 1);
  lua_pushinteger(L, c ? (lua_Integer)c->shape[0] : 0);
  return 1;
}

static int str_newindex(lua_State *L) {
  return luaL_error(L, "dlua.frame: string columns are read-only (make a "
                    "new one and assign it)");
}

/* Push a string column {codes = codes (at the top, popped), dict = the
   table at dict, n = rows} with its metatable.  [-1, +1, m] */
static void push_strcol(lua_State *L, int dict, int64_t n) {
  dict = lua_absindex(L, dict);
  lua_createtable(L, 0, 3);
  lua_insert(L, -2);
  lua_setfield(L, -2, "codes");
  lua_pushvalue(L, dict);
  lua_setfield(L, -2, "dict");
  lua_pushinteger(L, (lua_Integer)n);
  lua_setfield(L, -2, "n");
  luaL_setmetatable(L, STR_MT);
}

/* recode(codes, map) -> map[codes[i]] per row (map 0-based by code: an
   ndarray of any dtype with at least max(code) + 1 elements). */
static int l_recode(lua_State *L) {
  const dl_nd *c = check_vec(L, 1), *m = check_vec(L, 2);
  int64_t n = c->shape[0], i, mk = m->shape[0];
  size_t w = dl_nd_itemsize(m->dtype);
  const int64_t *p = (const int64_t *)c->data;
  dl_nd *o;
  if (c->dtype != DL_I64) luaL_argerror(L, 1, "expected int64 codes");
  o = push_vec(L, m->dtype, n);
  for (i = 0; i < n; i++) {
    if (p[i] < 0 || p[i] >= mk)
      return luaL_error(L, "dlua.frame: code %I out of range 0..%I",
                        (lua_Integer)p[i], (lua_Integer)mk - 1);
    memcpy(o->data + (size_t)i * w, m->data + (size_t)p[i] * w, w);
  }
  return 1;
}

/* take0(codes, idx) -> codes[idx], 0 where idx is 0 (a row a join did
   not find: a missing string). */
static int l_take0(lua_State *L) {
  const dl_nd *a = check_vec(L, 1), *ix = check_vec(L, 2);
  int64_t n = ix->shape[0], i, m = a->shape[0];
  const int64_t *p = (const int64_t *)ix->data, *v = (const int64_t *)a->data;
  int64_t *q;
  if (a->dtype != DL_I64 || ix->dtype != DL_I64)
    luaL_argerror(L, 2, "expected int64 codes and rows");
  q = (int64_t *)push_vec(L, DL_I64, n)->data;
  for (i = 0; i < n; i++) {
    if (p[i] < 0 || p[i] > m)
      return luaL_error(L, "dlua.frame: row %I out of range 1..%I",
                        (lua_Integer)p[i], (lua_Integer)m);
    q[i] = p[i] ? v[p[i] - 1] : 0;
  }
  return 1;
}

/* A float64 copy of a numeric column at i (pushed on the stack). */
static const double *as_f64(lua_State *L, int i, int64_t *n) {
  const dl_nd *a = check_vec(L, i);
  *n = a->shape[0];
  if (a->dtype == DL_F64) {
    lua_pushvalue(L, i);
    return (const double *)a->data;
  } else {
    dl_nd *o = push_vec(L, DL_F64, *n);
    int64_t j;
    for (j = 0; j < *n; j++)
      ((double *)o->data)[j] = a->dtype == DL_I64
          ? (double)((const int64_t *)a->data)[j]
          : (double)((const uint8_t *)a->data)[j];
    return (const double *)o->data;
  }
}

/* take(col, idx) -> col[idx]: idx an int64 ndarray of 1-based rows. */
static int l_take(lua_State *L) {
  const dl_nd *a = check_vec(L, 1), *ix = check_vec(L, 2);
  int64_t n = ix->shape[0], i, m = a->shape[0];
  size_t w = dl_nd_itemsize(a->dtype);
  const int64_t *p = (const int64_t *)ix->data;
  dl_nd *o;
  if (ix->dtype != DL_I64) luaL_argerror(L, 2, "expected an int64 ndarray");
  o = push_vec(L, a->dtype, n);
  for (i = 0; i < n; i++) {
    if (p[i] < 1 || p[i] > m)
      return luaL_error(L, "dlua.frame: row %I out of range 1..%I",
                        (lua_Integer)p[i], (lua_Integer)m);
    memcpy(o->data + (size_t)i * w, a->data + (size_t)(p[i] - 1) * w, w);
  }
  return 1;
}

/* which(mask) -> int64 ndarray of the 1-based rows where mask is true. */
static int l_which(lua_State *L) {
  const dl_nd *a = check_vec(L, 1);
  int64_t n = a->shape[0], i, k = 0;
  const uint8_t *m = (const uint8_t *)a->data;
  dl_nd *o;
  if (a->dtype != DL_BOOL) luaL_argerror(L, 1, "expected a bool ndarray");
  for (i = 0; i < n; i++) k += m[i] != 0;
  o = push_vec(L, DL_I64, k);
  for (i = 0, k = 0; i < n; i++)
    if (m[i]) ((int64_t *)o->data)[k++] = i + 1;
  return 1;
}

/* factorize of a string column: a Lua array of n strings (false: a
   missing value, code 0).  Strings are keyed by their bytes' hash and
   compared by bytes; the table keeps them alive during the call. */
static int factorize_str(lua_State *L, int64_t n) {
  typedef struct sslot { const char *p; size_t len; int64_t code; } sslot;
  size_t cap = 64, mask, used = 0, h;
  sslot *tab;
  int64_t i, k = 0, *codes, *first;
  dl_nd *co = push_vec(L, DL_I64, n), *fo;
  codes = (int64_t *)co->data;
  first = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *first, 0);
  tab = lua_newuserdatauv(L, cap * sizeof *tab, 0); /* stack top */
  memset(tab, 0, cap * sizeof *tab);
  mask = cap - 1;
  for (i = 0; i < n; i++) {
    size_t len;
    const char *p;
    lua_rawgeti(L, 1, (lua_Integer)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      if (lua_toboolean(L, -1))
        return luaL_error(L, "dlua.frame: string column: row %I is a %s",
                          (lua_Integer)i + 1, luaL_typename(L, -1));
      lua_pop(L, 1);
      codes[i] = 0;
      continue;
    }
    p = lua_tolstring(L, -1, &len);
    lua_pop(L, 1); /* still referenced by the column */
    if ((used + 1) * 2 > cap) {
      size_t ncap = cap * 2, j;
      sslot *nt = lua_newuserdatauv(L, ncap * sizeof *nt, 0);
      memset(nt, 0, ncap * sizeof *nt);
      for (j = 0; j < cap; j++)
        if (tab[j].code) {
          size_t g = dl_hash_bytes(tab[j].p, tab[j].len) & (ncap - 1);
          while (nt[g].code) g = (g + 1) & (ncap - 1);
          nt[g] = tab[j];
        }
      lua_replace(L, -2); /* the old table goes to the collector */
      tab = nt;
      cap = ncap;
      mask = cap - 1;
    }
    h = dl_hash_bytes(p, len) & mask;
    while (tab[h].code &&
           (tab[h].len != len || memcmp(tab[h].p, p, len) != 0))
      h = (h + 1) & mask;
    if (!tab[h].code) {
      tab[h].p = p;
      tab[h].len = len;
      tab[h].code = ++k;
      first[k - 1] = i;
      used++;
    }
    codes[i] = tab[h].code;
  }
  lua_pop(L, 1); /* tab; first stays on the stack while it is read */
  lua_pushinteger(L, (lua_Integer)k);
  fo = push_vec(L, DL_I64, k);
  for (i = 0; i < k; i++) ((int64_t *)fo->data)[i] = first[i] + 1;
  lua_remove(L, -3); /* first: codes, k, first rows remain */
  return 3;
}

/* factorize(col) -> codes (int64, 1..k, 0 missing), k, first (int64,
   1-based row of each code's first row).  col: an ndarray or a string
   column (a Lua array, with its length in .n or #). */
static int l_factorize(lua_State *L) {
  const dl_nd *a;
  int64_t n, k, *first;
  dl_nd *codes;
  if ((a = str_codes(L, 1)) != NULL) { /* dictionary-encoded: by code */
    int64_t kd = str_ndict(L, 1);
    n = a->shape[0];
    codes = push_vec(L, DL_I64, n);
    first = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *first, 0);
    k = dl_factorize_codes((const int64_t *)a->data, n, kd,
                           (int64_t *)codes->data, first);
    if (k == -2) return luaL_argerror(L, 1, "a code out of range of the dict");
    if (k < 0) return luaL_error(L, "not enough memory");
    lua_pushinteger(L, (lua_Integer)k);
    {
      dl_nd *f = push_vec(L, DL_I64, k);
      int64_t i;
      for (i = 0; i < k; i++) ((int64_t *)f->data)[i] = first[i] + 1;
    }
    lua_remove(L, -3); /* first */
    return 3;
  }
  if (lua_type(L, 1) == LUA_TTABLE && luaL_testudata(L, 1, ND_MT) == NULL) {
    lua_getfield(L, 1, "n");
    n = lua_isinteger(L, -1) ? (int64_t)lua_tointeger(L, -1)
                             : (int64_t)lua_rawlen(L, 1);
    lua_pop(L, 1);
    return factorize_str(L, n);
  }
  a = check_vec(L, 1);
  n = a->shape[0];
  codes = push_vec(L, DL_I64, n);
  first = malloc((size_t)(n ? n : 1) * sizeof *first);
  if (!first) return luaL_error(L, "not enough memory");
  if (a->dtype == DL_F64) {
    k = dl_factorize_f64((const double *)a->data, n,
                         (int64_t *)codes->data, first);
  } else if (a->dtype == DL_I64) {
    k = dl_factorize_i64((const int64_t *)a->data, NULL, n,
                         (int64_t *)codes->data, first);
  } else {
    int64_t *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp), i;
    if (!tmp) {
      free(first);
      return luaL_error(L, "not enough memory");
    }
    for (i = 0; i < n; i++) tmp[i] = ((const uint8_t *)a->data)[i];
    k = dl_factorize_i64(tmp, NULL, n, (int64_t *)codes->data, first);
    free(tmp);
  }
  if (k < 0) {
    free(first);
    return luaL_error(L, "not enough memory");
  }
  lua_pushinteger(L, (lua_Integer)k);
  {
    dl_nd *f = push_vec(L, DL_I64, k);
    int64_t i;
    for (i = 0; i < k; i++) ((int64_t *)f->data)[i] = first[i] + 1;
  }
  free(first);
  return 3;
}

/* combine(codes_a, ka, codes_b) -> codes, k, first: the codes of the
   pairs (a, b); 0 where either is 0. */
static int l_combine(lua_State *L) {
  const dl_nd *a = check_vec(L, 1), *b = check_vec(L, 3);
  lua_Integer kb = luaL_checkinteger(L, 2);
  int64_t n = a->shape[0], i, k, *keys, *first;
  uint8_t *valid;
  dl_nd *codes;
  if (b->shape[0] != n) luaL_argerror(L, 3, "columns of different lengths");
  keys = malloc((size_t)(n ? n : 1) * sizeof *keys);
  first = malloc((size_t)(n ? n : 1) * sizeof *first);
  valid = malloc((size_t)(n ? n : 1));
  if (!keys || !first || !valid) {
    free(keys);
    free(first);
    free(valid);
    return luaL_error(L, "not enough memory");
  }
  for (i = 0; i < n; i++) {
    int64_t x = ((const int64_t *)a->data)[i], y = ((const int64_t *)b->data)[i];
    keys[i] = x * ((int64_t)kb + 1) + y;
    valid[i] = x != 0 && y != 0;
  }
  codes = push_vec(L, DL_I64, n);
  k = dl_factorize_i64(keys, valid, n, (int64_t *)codes->data, first);
  free(keys);
  free(valid);
  if (k < 0) {
    free(first);
    return luaL_error(L, "not enough memory");
  }
  lua_pushinteger(L, (lua_Integer)k);
  {
    dl_nd *f = push_vec(L, DL_I64, k);
    for (i = 0; i < k; i++) ((int64_t *)f->data)[i] = first[i] + 1;
  }
  free(first);
  return 3;
}

/* The exact int64 reduction of reduce(): int64 values (bool for a sum,
   counting the trues), op SUM, MIN, MAX, FIRST or LAST.  Empty groups
   make MIN/MAX/FIRST/LAST float64 with NaN there, as pandas does.
   [-0, +1, m] */
static int reduce_i64(lua_State *L, int op, const dl_nd *c, int64_t k,
                      const dl_nd *a) {
  int64_t n = a->shape[0], i, empty, *tmp = NULL;
  const int64_t *v = (const int64_t *)a->data;
  dl_nd *o, *seen;
  if (c->shape[0] != n) luaL_argerror(L, 4, "columns of different lengths");
  if (a->dtype == DL_BOOL) {
    dl_nd *t = push_vec(L, DL_I64, n);
    tmp = (int64_t *)t->data;
    for (i = 0; i < n; i++) tmp[i] = ((const uint8_t *)a->data)[i] != 0;
    v = tmp;
  }
  seen = push_vec(L, DL_BOOL, k);
  o = push_vec(L, DL_I64, k);
  empty = dl_group_reduce_i64(op, (const int64_t *)c->data, n, v, k,
                              (int64_t *)o->data, (uint8_t *)seen->data);
  if (empty < 0) return luaL_error(L, "not enough memory");
  if (empty > 0 && op != DL_G_SUM) {
    dl_nd *f = push_vec(L, DL_F64, k);
    for (i = 0; i < k; i++)
      ((double *)f->data)[i] = ((uint8_t *)seen->data)[i]
          ? (double)((int64_t *)o->data)[i] : NAN;
  }
  return 1;
}

/* reduce(op, codes, k, values [, means]) -> ndarray of k: float64, but
   int64 for the sum, min, max, first and last of an int64 column (exact
   past 2^53) and for the sum of a bool column. */
static int l_reduce(lua_State *L) {
  static const char *const ops[] = {"sum", "count", "min", "max", "first",
                                    "last", "m2", NULL};
  int op = luaL_checkoption(L, 1, NULL, ops);
  const dl_nd *c = check_vec(L, 2);
  lua_Integer k = luaL_checkinteger(L, 3);
  int64_t n;
  const double *v, *mean = NULL;
  const dl_nd *a = check_vec(L, 4);
  dl_nd *o;
  if (c->dtype != DL_I64) luaL_argerror(L, 2, "expected int64 codes");
  if (k < 0) luaL_argerror(L, 3, "expected a group count >= 0");
  if ((a->dtype == DL_I64 && op != DL_G_COUNT && op != DL_G_M2) ||
      (a->dtype == DL_BOOL && op == DL_G_SUM))
    return reduce_i64(L, op, c, (int64_t)k, a);
  v = as_f64(L, 4, &n);
  if (c->shape[0] != n) luaL_argerror(L, 4, "columns of different lengths");
  if (op == DL_G_M2) {
    const dl_nd *m = check_vec(L, 5);
    if (m->dtype != DL_F64 || m->shape[0] != k)
      luaL_argerror(L, 5, "expected k float64 means");
    mean = (const double *)m->data;
  }
  o = push_vec(L, DL_F64, (int64_t)k);
  dl_group_reduce(op, (const int64_t *)c->data, n, v, (int64_t)k, mean,
                  (double *)o->data);
  return 1;
}

/* take_missing(col, idx) -> col[idx] where idx may hold 0 (a missing
   row, from a join): float64 with NaN there, whatever the column's type
   (as pandas widens an int64 or bool column), unless idx has no 0. */
static int l_take_missing(lua_State *L) {
  const dl_nd *a = check_vec(L, 1), *ix = check_vec(L, 2);
  int64_t n = ix->shape[0], i, m = a->shape[0], zeros = 0;
  const int64_t *p = (const int64_t *)ix->data;
  dl_nd *o;
  if (ix->dtype != DL_I64) luaL_argerror(L, 2, "expected an int64 ndarray");
  for (i = 0; i < n; i++) {
    if (p[i] < 0 || p[i] > m)
      return luaL_error(L, "dlua.frame: row %I out of range 1..%I",
                        (lua_Integer)p[i], (lua_Integer)m);
    zeros += p[i] == 0;
  }
  if (!zeros) {
    size_t w = dl_nd_itemsize(a->dtype);
    o = push_vec(L, a->dtype, n);
    for (i = 0; i < n; i++)
      memcpy(o->data + (size_t)i * w, a->data + (size_t)(p[i] - 1) * w, w);
    return 1;
  }
  o = push_vec(L, DL_F64, n);
  for (i = 0; i < n; i++) {
    double d = NAN;
    if (p[i]) {
      int64_t r = p[i] - 1;
      d = a->dtype == DL_F64 ? ((const double *)a->data)[r]
        : a->dtype == DL_I64 ? (double)((const int64_t *)a->data)[r]
        : (double)((const uint8_t *)a->data)[r];
    }
    ((double *)o->data)[i] = d;
  }
  return 1;
}

/* hash_bucket(nout, {col, ...}) -> int64 ndarray of buckets 0..nout-1:
   the rows' key hash modulo nout (string columns: Lua arrays, false
   missing). */
static int l_hash_bucket(lua_State *L) {
  lua_Integer nout = luaL_checkinteger(L, 1);
  int ncol, c;
  int64_t n = -1, i;
  uint64_t *h;
  dl_nd *o;
  if (nout < 1) luaL_argerror(L, 1, "expected a bucket count >= 1");
  luaL_checktype(L, 2, LUA_TTABLE);
  ncol = (int)lua_rawlen(L, 2);
  if (ncol < 1) luaL_argerror(L, 2, "expected at least one key column");
  for (c = 1; c <= ncol; c++) { /* lengths first: nothing to free */
    int64_t len;
    lua_rawgeti(L, 2, c);
    if (str_codes(L, -1)) {
      len = str_codes(L, -1)->shape[0];
    } else if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "n");
      len = lua_isinteger(L, -1) ? (int64_t)lua_tointeger(L, -1)
                                 : (int64_t)lua_rawlen(L, -2);
      lua_pop(L, 1);
    } else {
      len = check_vec(L, -1)->shape[0];
    }
    if (n >= 0 && len != n)
      luaL_argerror(L, 2, "key columns of different lengths");
    n = len;
    lua_pop(L, 1);
  }
  if (n < 0) n = 0;
  /* the hashes live in a userdata, so an error cannot leak them */
  h = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *h, 0);
  memset(h, 0, (size_t)(n ? n : 1) * sizeof *h);
  for (c = 1; c <= ncol; c++) {
    lua_rawgeti(L, 2, c);
    if (str_codes(L, -1)) { /* each dict entry hashed once */
      const dl_nd *sc = str_codes(L, -1);
      const int64_t *cd = (const int64_t *)sc->data;
      int64_t kd = str_ndict(L, -1), j;
      uint64_t *dh = lua_newuserdatauv(L, (size_t)(kd + 1) * sizeof *dh, 0);
      lua_getfield(L, -2, "dict");
      dh[0] = 0x5eed;
      for (j = 1; j <= kd; j++) {
        size_t len;
        const char *str;
        lua_rawgeti(L, -1, (lua_Integer)j);
        str = lua_tolstring(L, -1, &len);
        if (str == NULL || lua_type(L, -1) != LUA_TSTRING)
          return luaL_argerror(L, 2, "string column: dict holds a non-string");
        dh[j] = dl_hash_bytes(str, len);
        lua_pop(L, 1);
      }
      for (i = 0; i < n; i++) {
        if (cd[i] < 0 || cd[i] > kd)
          return luaL_argerror(L, 2, "string column: code out of range");
        dl_hash_mix(&h[i], dh[cd[i]]);
      }
      lua_pop(L, 2);
    } else if (lua_istable(L, -1)) {
      for (i = 0; i < n; i++) {
        size_t len;
        const char *str;
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        str = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len)
                                             : NULL;
        dl_hash_mix(&h[i], str ? dl_hash_bytes(str, len) : 0x5eed);
        lua_pop(L, 1);
      }
    } else {
      const dl_nd *a = check_vec(L, -1);
      if (a->dtype == DL_F64) dl_hash_f64((const double *)a->data, n, h);
      else if (a->dtype == DL_I64) dl_hash_i64((const int64_t *)a->data, n, h);
      else
        for (i = 0; i < n; i++)
          dl_hash_mix(&h[i], ((const uint8_t *)a->data)[i] ? 0x3ff0000000000000ULL
                                                           : 0);
    }
    lua_pop(L, 1);
  }
  o = push_vec(L, DL_I64, n);
  for (i = 0; i < n; i++)
    ((int64_t *)o->data)[i] = (int64_t)(h[i] % (uint64_t)nout);
  return 1;
}

/* split(codes, k) -> {rows_1, ..., rows_k}: for each code 0..k-1, an
   int64 ndarray of the 1-based rows holding it, in row order. */
static int l_split(lua_State *L) {
  const dl_nd *c = check_vec(L, 1);
  lua_Integer k = luaL_checkinteger(L, 2);
  int64_t n = c->shape[0], *rows, *start, j;
  if (c->dtype != DL_I64) luaL_argerror(L, 1, "expected int64 codes");
  if (k < 1 || k > (1 << 24)) luaL_argerror(L, 2, "expected 1..2^24 buckets");
  rows = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *rows, 0);
  start = lua_newuserdatauv(L, (size_t)(k + 1) * sizeof *start, 0);
  if (dl_bucket_rows((const int64_t *)c->data, n, (int64_t)k, rows, start))
    return luaL_argerror(L, 1, "a code out of range 0..k-1");
  lua_createtable(L, (int)k, 0);
  for (j = 0; j < k; j++) {
    int64_t m = start[j + 1] - start[j], i;
    dl_nd *o = push_vec(L, DL_I64, m);
    for (i = 0; i < m; i++) ((int64_t *)o->data)[i] = rows[start[j] + i] + 1;
    lua_rawseti(L, -2, (lua_Integer)j + 1);
  }
  return 1;
}

/* join(lcodes, rcodes, k, how) -> li, ri: the row pairs of a join on
   codes 1..k (0 never matches); 0 in li / ri where a side has no row. */
static int l_join(lua_State *L) {
  static const char *const hows[] = {"inner", "left", "outer", NULL};
  const dl_nd *a = check_vec(L, 1), *b = check_vec(L, 2);
  lua_Integer k = luaL_checkinteger(L, 3);
  int how = luaL_checkoption(L, 4, NULL, hows);
  int64_t *li, *ri, m;
  dl_nd *x, *y;
  if (a->dtype != DL_I64 || b->dtype != DL_I64)
    luaL_argerror(L, 1, "expected int64 codes");
  /* from here until li and ri are freed, only memory errors can raise */
  if (dl_join_rows((const int64_t *)a->data, a->shape[0],
                   (const int64_t *)b->data, b->shape[0], (int64_t)k, how,
                   &li, &ri, &m))
    return luaL_error(L, "not enough memory");
  x = (dl_nd *)lua_newuserdatauv(L, sizeof *x, 0);
  memset(x, 0, sizeof *x);
  luaL_setmetatable(L, ND_MT);
  y = (dl_nd *)lua_newuserdatauv(L, sizeof *y, 0);
  memset(y, 0, sizeof *y);
  luaL_setmetatable(L, ND_MT);
  if (dl_nd_alloc_uninit(x, DL_I64, 1, &m) ||
      dl_nd_alloc_uninit(y, DL_I64, 1, &m)) {
    free(li);
    free(ri);
    return luaL_error(L, "not enough memory");
  }
  if (m) {
    memcpy(x->data, li, (size_t)m * sizeof *li);
    memcpy(y->data, ri, (size_t)m * sizeof *ri);
  }
  free(li);
  free(ri);
  return 2;
}

/* argsort(col [, ascending]) -> int64 ndarray of 1-based rows, stable,
   NaN last. */
static int l_argsort(lua_State *L) {
  const dl_nd *a = check_vec(L, 1);
  int asc = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
  int64_t n = a->shape[0], i, rc;
  dl_nd *o = push_vec(L, DL_I64, n);
  int64_t *idx = (int64_t *)o->data;
  if (a->dtype == DL_F64)
    rc = dl_argsort_f64((const double *)a->data, n, asc, idx);
  else if (a->dtype == DL_I64)
    rc = dl_argsort_i64((const int64_t *)a->data, n, asc, idx);
  else {
    dl_nd *t = push_vec(L, DL_I64, n);
    for (i = 0; i < n; i++)
      ((int64_t *)t->data)[i] = ((const uint8_t *)a->data)[i] != 0;
    rc = dl_argsort_i64((const int64_t *)t->data, n, asc, idx);
    lua_pop(L, 1);
  }
  if (rc) return luaL_error(L, "not enough memory");
  for (i = 0; i < n; i++) idx[i]++;
  return 1;
}

/* topk(col, k [, asc]) -> int64 ndarray of the 1-based rows that
   argsort(col, asc) puts first, min(k, #col) of them (float64 or int64). */
static int l_topk(lua_State *L) {
  const dl_nd *a = check_vec(L, 1);
  lua_Integer k = luaL_checkinteger(L, 2);
  int asc = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
  int64_t n = a->shape[0], m, i, *idx;
  dl_nd *o;
  if (a->dtype != DL_F64 && a->dtype != DL_I64)
    return luaL_argerror(L, 1, "expected a float64 or int64 column");
  m = k < 0 ? 0 : (int64_t)k < n ? (int64_t)k : n;
  o = push_vec(L, DL_I64, m);
  idx = (int64_t *)o->data;
  if (a->dtype == DL_F64)
    dl_topk_f64((const double *)a->data, n, m, asc, idx);
  else
    dl_topk_i64((const int64_t *)a->data, n, m, asc, idx);
  for (i = 0; i < m; i++) idx[i]++;
  return 1;
}

/* range_bucket(col, bounds) -> int64 ndarray: per row, the number of
   bounds <= its value (bounds sorted, of the column's dtype; NaN last). */
static int l_range_bucket(lua_State *L) {
  const dl_nd *a = check_vec(L, 1), *b = check_vec(L, 2);
  int64_t n = a->shape[0];
  dl_nd *o;
  if (a->dtype != b->dtype || a->dtype == DL_BOOL)
    luaL_argerror(L, 2, "expected bounds of the column's dtype");
  o = push_vec(L, DL_I64, n);
  if (a->dtype == DL_F64)
    dl_range_f64((const double *)a->data, n, (const double *)b->data,
                 b->shape[0], (int64_t *)o->data);
  else
    dl_range_i64((const int64_t *)a->data, n, (const int64_t *)b->data,
                 b->shape[0], (int64_t *)o->data);
  return 1;
}

static int type_of(lua_State *L, const char *s) {
  if (!strcmp(s, "float64") || !strcmp(s, "number")) return DL_FT_F64;
  if (!strcmp(s, "int64") || !strcmp(s, "integer")) return DL_FT_I64;
  if (!strcmp(s, "bool") || !strcmp(s, "boolean")) return DL_FT_BOOL;
  if (!strcmp(s, "string")) return DL_FT_STR;
  return luaL_error(L, "dlua.frame: unknown column type \"%s\" (float64, "
                    "int64, bool or string)", s);
}

/* Push the reader's buffer of column c as a 1-d ndarray of its c->n
   values, without a copy: the ndarray owns it from now on. */
static void adopt_buffer(lua_State *L, dl_fcol *c) {
  dl_nd *o = (dl_nd *)lua_newuserdatauv(L, sizeof *o, 0);
  *o = c->nd;
  o->shape[0] = c->n;
  o->strides[0] = c->n ? 1 : 0;
  memset(&c->nd, 0, sizeof c->nd);
  c->vals = NULL;
  luaL_setmetatable(L, ND_MT);
}

/* Push column c: an ndarray, or an array of strings (false: missing).
   int64 and bool columns with missing values become float64 with NaN. */
static void push_col(lua_State *L, dl_fcol *c) {
  int64_t i;
  if (c->type == DL_FT_STR) { /* the reader's codes and dictionary */
    lua_createtable(L, (int)c->ndict, 0);
    for (i = 1; i <= c->ndict; i++) {
      lua_pushlstring(L, c->bytes + c->offs[i - 1],
                      (size_t)(c->offs[i] - c->offs[i - 1]));
      lua_rawseti(L, -2, (lua_Integer)i);
    }
    if (c->nd.buf != NULL) { /* the codes' buffer becomes the column's */
      adopt_buffer(L, c);
    } else {
      push_vec(L, DL_I64, 0);
    }
    push_strcol(L, -2, c->n);
    lua_remove(L, -2); /* dict */
  } else if (c->nd.buf != NULL &&
             (c->type == DL_FT_F64 || c->nmissing == 0)) {
    /* the reader's buffer becomes the column: no copy (vals hold NaN for
       a missing float64) */
    adopt_buffer(L, c);
  } else if (c->type == DL_FT_F64 || c->nmissing) {
    dl_nd *o = push_vec(L, DL_F64, c->n);
    double *d = (double *)o->data;
    for (i = 0; i < c->n; i++) {
      if (!c->valid[i]) d[i] = NAN;
      else if (c->type == DL_FT_F64) d[i] = ((const double *)c->vals)[i];
      else if (c->type == DL_FT_I64)
        d[i] = (double)((const int64_t *)c->vals)[i];
      else d[i] = ((const uint8_t *)c->vals)[i];
    }
  } else {
    dl_nd *o = push_vec(L, c->type == DL_FT_I64 ? DL_I64 : DL_BOOL, c->n);
    if (c->n)
      memcpy(o->data, c->vals, (size_t)c->n * (c->type == DL_FT_I64 ? 8 : 1));
  }
}

/* concat(parts [, maps]) -> one ndarray with the parts' elements in
   order, or nil when a part is not a contiguous 1-d ndarray of the first
   part's dtype (the caller then uses nd.concatenate).  maps[i], when
   given, is an int64 ndarray that part i's int64 codes go through (as
   recode does), in the same pass as the copy. */
static int l_concat(lua_State *L) {
  lua_Integer m, i;
  int64_t n = 0, at = 0, j;
  dl_dtype t = DL_F64;
  dl_nd *o;
  size_t w;
  luaL_checktype(L, 1, LUA_TTABLE);
  m = luaL_len(L, 1);
  for (i = 1; i <= m; i++) {
    const dl_nd *a;
    lua_rawgeti(L, 1, i);
    a = (const dl_nd *)luaL_testudata(L, -1, ND_MT);
    lua_pop(L, 1); /* the list keeps it alive */
    if (a == NULL || a->buf == NULL || a->ndim != 1 ||
        !dl_nd_contiguous(a) || (i > 1 && a->dtype != t))
      return 0;
    t = a->dtype;
    n += a->shape[0];
  }
  if (m == 0) return 0;
  w = dl_nd_itemsize(t);
  o = push_vec(L, t, n);
  for (i = 1; i <= m; i++) {
    const dl_nd *a, *map = NULL;
    int64_t an;
    lua_rawgeti(L, 1, i);
    a = (const dl_nd *)lua_touserdata(L, -1);
    an = a->shape[0];
    if (lua_istable(L, 2) && lua_rawgeti(L, 2, i) != LUA_TNIL) {
      map = check_vec(L, -1);
      if (map->dtype != DL_I64 || t != DL_I64)
        return luaL_argerror(L, 2, "maps: int64 codes through int64 maps");
      for (j = 0; j < an; j++) {
        int64_t c = ((const int64_t *)a->data)[j];
        if (c < 0 || c >= map->shape[0])
          return luaL_error(L, "dlua.frame: code %I out of range 0..%I",
                            (lua_Integer)c, (lua_Integer)map->shape[0] - 1);
        ((int64_t *)o->data)[at + j] = ((const int64_t *)map->data)[c];
      }
    } else if (an > 0) {
      memcpy(o->data + (size_t)at * w, a->data, (size_t)an * w);
    }
    lua_pop(L, lua_istable(L, 2) ? 2 : 1);
    at += an;
  }
  return 1;
}

/* Threads read_csv uses when not told: one per online core (at most 8),
   but one in a worker process, whose cores the cluster shares out. */
static int default_threads(void) {
  long c = sysconf(_SC_NPROCESSORS_ONLN);
  if (getenv("DLUA_WORKER") != NULL || c < 1) return 1;
  return c > 8 ? 8 : (int)c;
}

/* read_csv(bytes | {path, start, stop}, {file=, line0=, sep=, header=,
   on_error=, types=, names=, threads=}) -> {names = {...}, cols = {name = col},
   nrows =, nerrors =, empty = bool}.  A {path, start, stop} block is read
   here, in C (dl_csv_read_block: the lines that start in [start, stop);
   stop -1: to the end); empty tells that it held no bytes. */
static int l_read_csv(lua_State *L) {
  size_t n = 0;
  const char *p = NULL, *path = NULL;
  dl_csvblock blk = {NULL, 0, NULL, 0, NULL};
  lua_Integer start = 0, stop = -1;
  dl_csvopts o;
  dl_ftable t;
  char err[512];
  const char **tn = NULL, **names = NULL;
  int *tv = NULL, rc, i;
  memset(&o, 0, sizeof o);
  if (lua_istable(L, 1)) {
    lua_rawgeti(L, 1, 1);
    path = lua_tostring(L, -1); /* stays on the stack */
    if (!path) luaL_argerror(L, 1, "expected {path, start, stop}");
    lua_rawgeti(L, 1, 2);
    lua_rawgeti(L, 1, 3);
    start = luaL_optinteger(L, -2, 0);
    stop = luaL_optinteger(L, -1, -1);
    lua_pop(L, 2);
  } else {
    p = luaL_checklstring(L, 1, &n);
  }
  luaL_checktype(L, 2, LUA_TTABLE);
  o.sep = ',';
  o.header = 1;
  o.line0 = 1;
  lua_getfield(L, 2, "sep");
  if (lua_isstring(L, -1)) o.sep = lua_tostring(L, -1)[0];
  lua_getfield(L, 2, "header");
  if (lua_isboolean(L, -1)) o.header = lua_toboolean(L, -1);
  lua_getfield(L, 2, "on_error");
  o.on_error_null = lua_isstring(L, -1) && !strcmp(lua_tostring(L, -1), "null");
  lua_getfield(L, 2, "file");
  o.file = lua_tostring(L, -1);
  lua_getfield(L, 2, "line0");
  if (lua_isinteger(L, -1)) o.line0 = lua_tointeger(L, -1);
  lua_getfield(L, 2, "threads");
  if (lua_isinteger(L, -1)) o.threads = (int)lua_tointeger(L, -1);
  else o.threads = default_threads();
  lua_pop(L, 5); /* keep file on the stack */
  lua_getfield(L, 2, "types"); /* name -> type string */
  if (lua_istable(L, -1)) {
    int k = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) { k++; lua_pop(L, 1); }
    tn = lua_newuserdatauv(L, (size_t)(k ? k : 1) * sizeof *tn, 0);
    tv = lua_newuserdatauv(L, (size_t)(k ? k : 1) * sizeof *tv, 0);
    lua_pushnil(L);
    while (lua_next(L, -4)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
        tn[o.ntypes] = lua_tostring(L, -2);
        tv[o.ntypes++] = type_of(L, lua_tostring(L, -1));
      }
      lua_pop(L, 1);
    }
    o.type_names = tn;
    o.type_vals = tv;
  }
  lua_getfield(L, 2, "names");
  if (lua_istable(L, -1)) {
    int k = (int)lua_rawlen(L, -1);
    names = lua_newuserdatauv(L, (size_t)(k ? k : 1) * sizeof *names, 0);
    for (i = 0; i < k; i++) {
      lua_rawgeti(L, -2, i + 1);
      names[i] = lua_tostring(L, -1);
      lua_pop(L, 1); /* the string stays alive in the names table */
      if (!names[i]) return luaL_error(L, "dlua.frame: names must be strings");
    }
    o.nnames = k;
    o.names = names;
  }
  if (path) {
    if (dl_csv_map_block(path, (int64_t)start, (int64_t)stop, &blk, err,
                         sizeof err))
      return luaL_error(L, "dlua.frame: %s", err);
    p = blk.p;
    n = blk.n;
    if (n == 0) { /* nothing to parse: the caller makes an empty frame */
      dl_csv_block_free(&blk);
      lua_createtable(L, 0, 1);
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "empty");
      return 1;
    }
  }
  rc = dl_csv_frame(p, n, &o, &t, err, sizeof err);
  dl_csv_block_free(&blk);
  if (rc) return luaL_error(L, "dlua.frame: %s", err);
  lua_createtable(L, 0, 5);
  lua_createtable(L, 0, t.ncol); /* types as read (before NaN widening) */
  for (i = 0; i < t.ncol; i++) {
    lua_pushstring(L, dl_ft_name(t.cols[i].type));
    lua_setfield(L, -2, t.cols[i].name);
  }
  lua_setfield(L, -2, "types");
  lua_createtable(L, t.ncol, 0);
  lua_createtable(L, 0, t.ncol);
  for (i = 0; i < t.ncol; i++) {
    lua_pushstring(L, t.cols[i].name);
    lua_rawseti(L, -3, i + 1);
    push_col(L, &t.cols[i]);
    lua_setfield(L, -2, t.cols[i].name);
  }
  lua_setfield(L, -3, "cols");
  lua_setfield(L, -2, "names");
  lua_pushinteger(L, (lua_Integer)t.nrows);
  lua_setfield(L, -2, "nrows");
  lua_pushinteger(L, (lua_Integer)t.nerrors);
  lua_setfield(L, -2, "nerrors");
  dl_ftable_free(&t);
  return 1;
}

/* ---------------------------------------------------------------- codec */

/*
** A frame travels as the codec's CUSTOM value "dlua.frame" in the bytes of
** dl_fcodec.h.  The view of a frame borrows its columns' memory (kept
** alive by the frame while the codec runs); what it allocates is listed
** in an fcenc and freed after, also when a Lua call fails.
*/
typedef struct fcenc {
  void **own;      /* malloc'ed blocks */
  size_t nown, cap;
  dl_nd *tmp;      /* contiguous copies of strided columns */
  size_t ntmp, tcap;
} fcenc;

static void *enc_alloc(fcenc *e, size_t n) {
  void *p;
  if (e->nown == e->cap) {
    size_t c = e->cap ? 2 * e->cap : 16;
    void **o = (void **)realloc(e->own, c * sizeof *o);
    if (o == NULL) return NULL;
    e->own = o;
    e->cap = c;
  }
  p = calloc(n ? n : 1, 1);
  if (p != NULL) e->own[e->nown++] = p;
  return p;
}

static void enc_free(fcenc *e) {
  size_t i;
  for (i = 0; i < e->nown; i++) free(e->own[i]);
  for (i = 0; i < e->ntmp; i++) dl_nd_release(&e->tmp[i]);
  free(e->own);
  free(e->tmp);
}

/* The elements of the 1-d ndarray a, contiguous (a copy when strided). */
static const char *enc_data(fcenc *e, const dl_nd *a) {
  if (dl_nd_contiguous(a)) return a->data;
  if (e->ntmp == e->tcap) {
    size_t c = e->tcap ? 2 * e->tcap : 4;
    dl_nd *t = (dl_nd *)realloc(e->tmp, c * sizeof *t);
    if (t == NULL) return NULL;
    e->tmp = t;
    e->tcap = c;
  }
  if (dl_nd_astype(&e->tmp[e->ntmp], a, a->dtype)) return NULL;
  return e->tmp[e->ntmp++].data;
}

/* The 1-d ndarray of n rows at the top of the stack, or NULL. */
static const dl_nd *enc_vec(lua_State *L, int64_t n) {
  const dl_nd *a = (const dl_nd *)luaL_testudata(L, -1, ND_MT);
  if (a == NULL || a->buf == NULL || a->ndim != 1 || a->shape[0] != n ||
      (int)a->dtype < 0 || (int)a->dtype > DL_FC_F32)
    return NULL;
  return a;
}

/* The string column at the top of the stack into c; 0 or -1. */
static int enc_strcol(lua_State *L, fcenc *e, dl_fccol *c, int64_t n) {
  int col = lua_gettop(L);
  const dl_nd *codes;
  lua_Integer j, k;
  int64_t i;
  c->kind = DL_FC_STR;
  lua_pushliteral(L, "codes");
  lua_rawget(L, col);
  codes = enc_vec(L, n);
  if (codes == NULL || codes->dtype != DL_I64) return -1;
  if ((c->data = enc_data(e, codes)) == NULL) return -1;
  lua_pushliteral(L, "dict");
  if (lua_rawget(L, col) != LUA_TTABLE) return -1;
  k = (lua_Integer)lua_rawlen(L, -1);
  c->ndict = (int64_t)k;
  c->dict = (const char **)enc_alloc(e, (size_t)k * sizeof *c->dict);
  c->dictlen = (size_t *)enc_alloc(e, (size_t)k * sizeof *c->dictlen);
  if (c->dict == NULL || c->dictlen == NULL) return -1;
  for (j = 1; j <= k; j++) {
    if (lua_rawgeti(L, -1, j) != LUA_TSTRING) return -1;
    c->dict[j - 1] = lua_tolstring(L, -1, &c->dictlen[j - 1]);
    lua_pop(L, 1); /* the dict keeps it */
  }
  for (i = 0; i < n; i++) {
    int64_t v;
    memcpy(&v, c->data + (size_t)i * 8, 8);
    if (v < 0 || v > (int64_t)k) return -1;
  }
  lua_settop(L, col);
  return 0;
}

/* The frame at idx (a table {_names, _cols, _n [, _distinct]}) into f;
   0, or -1 when it is not a frame the codec can carry. */
static int enc_frame(lua_State *L, fcenc *e, int idx, dl_fcframe *f,
                     int top) {
  int names, cols, base = lua_gettop(L);
  lua_Integer i, ncol;
  size_t nkeys = 0;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE || !lua_checkstack(L, 8)) return -1;
  lua_pushnil(L);
  while (lua_next(L, idx)) { /* nothing but the frame's fields */
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                   : "";
    lua_pop(L, 1);
    if (strcmp(k, "_names") && strcmp(k, "_cols") && strcmp(k, "_n") &&
        ((strcmp(k, "_distinct") && strcmp(k, "_nerrors") &&
          strcmp(k, "_read_types")) || !top)) {
      lua_settop(L, base);
      return -1;
    }
  }
  lua_getfield(L, idx, "_n");
  if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0) return -1;
  f->nrows = (int64_t)lua_tointeger(L, -1);
  lua_pushliteral(L, "_names");
  names = lua_rawget(L, idx) == LUA_TTABLE ? lua_gettop(L) : 0;
  lua_pushliteral(L, "_cols");
  cols = lua_rawget(L, idx) == LUA_TTABLE ? lua_gettop(L) : 0;
  if (!names || !cols) return -1;
  ncol = (lua_Integer)lua_rawlen(L, names);
  lua_pushnil(L);
  while (lua_next(L, cols)) {
    lua_pop(L, 1);
    nkeys++;
  }
  if (nkeys != (size_t)ncol) return -1;
  f->ncol = (size_t)ncol;
  f->cols = (dl_fccol *)enc_alloc(e, (size_t)ncol * sizeof *f->cols);
  if (f->cols == NULL) return -1;
  for (i = 1; i <= ncol; i++) {
    dl_fccol *c = &f->cols[i - 1];
    const dl_nd *a;
    if (lua_rawgeti(L, names, i) != LUA_TSTRING) return -1;
    c->name = lua_tolstring(L, -1, &c->namelen);
    lua_rawget(L, cols); /* names keeps the name */
    if ((a = enc_vec(L, f->nrows)) != NULL) {
      c->kind = (int)a->dtype;
      if ((c->data = enc_data(e, a)) == NULL) return -1;
      if (c->kind == DL_FC_BOOL) {
        int64_t r;
        for (r = 0; r < f->nrows; r++)
          if ((unsigned char)c->data[r] > 1) return -1;
      }
    } else if (lua_type(L, -1) != LUA_TTABLE ||
               enc_strcol(L, e, c, f->nrows)) {
      return -1;
    }
    lua_pop(L, 1);
  }
  if (top) { /* what read_csv noted */
    lua_pushliteral(L, "_nerrors");
    if (lua_rawget(L, idx) != LUA_TNIL) {
      if (!lua_isinteger(L, -1)) return -1;
      f->has_nerrors = 1;
      f->nerrors = (int64_t)lua_tointeger(L, -1);
    }
    lua_pushliteral(L, "_read_types");
    if (lua_rawget(L, idx) != LUA_TNIL) {
      int t = lua_gettop(L);
      size_t nt = 0;
      if (lua_type(L, t) != LUA_TTABLE) return -1;
      lua_pushnil(L);
      while (lua_next(L, t)) {
        lua_pop(L, 1);
        nt++;
      }
      f->has_types = 1;
      f->types = (dl_fcpair *)enc_alloc(e, nt * sizeof *f->types);
      if (f->types == NULL) return -1;
      lua_pushnil(L);
      while (lua_next(L, t)) {
        dl_fcpair *x = &f->types[f->ntypes];
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
          return -1;
        x->name = lua_tolstring(L, -2, &x->namelen);
        x->val = lua_tolstring(L, -1, &x->vallen);
        f->ntypes++;
        lua_pop(L, 1);
      }
    }
  }
  lua_pushliteral(L, "_distinct");
  if (top && lua_rawget(L, idx) == LUA_TTABLE) {
    int d = lua_gettop(L);
    size_t nd = 0;
    lua_pushnil(L);
    while (lua_next(L, d)) {
      lua_pop(L, 1);
      nd++;
    }
    f->dist = (dl_fcdist *)enc_alloc(e, nd * sizeof *f->dist);
    if (f->dist == NULL) return -1;
    lua_pushnil(L);
    while (lua_next(L, d)) {
      dl_fcdist *x = &f->dist[f->ndist];
      if (lua_type(L, -2) != LUA_TSTRING) return -1;
      x->name = lua_tolstring(L, -2, &x->namelen);
      x->frame = (dl_fcframe *)enc_alloc(e, sizeof *x->frame);
      if (x->frame == NULL || enc_frame(L, e, -1, x->frame, 0)) return -1;
      f->ndist++;
      lua_pop(L, 1);
    }
  }
  lua_settop(L, base);
  return 0;
}

/* Under pcall: (frame, fcenc*, dl_buf*) -> true when encoded. */
static int fc_encode_p(lua_State *L) {
  fcenc *e = (fcenc *)lua_touserdata(L, 2);
  dl_buf *out = (dl_buf *)lua_touserdata(L, 3);
  dl_fcframe f;
  memset(&f, 0, sizeof f);
  lua_pushboolean(L, enc_frame(L, e, 1, &f, 1) == 0 &&
                         dl_fc_encode(out, &f) == 0);
  return 1;
}

static int fc_encode(lua_State *L, int idx, dl_buf *out, void *ctx) {
  fcenc e;
  size_t len0 = out->len;
  int ok;
  (void)ctx;
  memset(&e, 0, sizeof e);
  lua_pushcfunction(L, fc_encode_p);
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, &e);
  lua_pushlightuserdata(L, out);
  ok = lua_pcall(L, 3, 1, 0) == LUA_OK && lua_toboolean(L, -1);
  lua_pop(L, 1);
  enc_free(&e);
  if (!ok) out->len = len0;
  return ok ? 0 : -1;
}

/* Push the frame f (its metatable and dlua.ndarray's are loaded).
   [-0, +1, m] */
static void push_frame(lua_State *L, const dl_fcframe *f) {
  size_t i;
  lua_createtable(L, 0, 4);
  lua_createtable(L, (int)f->ncol, 0);
  lua_createtable(L, 0, (int)f->ncol);
  for (i = 0; i < f->ncol; i++) {
    const dl_fccol *c = &f->cols[i];
    lua_pushlstring(L, c->name, c->namelen);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -4, (lua_Integer)i + 1);
    if (c->kind == DL_FC_STR) {
      int64_t j;
      dl_nd *codes;
      lua_createtable(L, (int)c->ndict, 0);
      for (j = 0; j < c->ndict; j++) {
        lua_pushlstring(L, c->dict[j], c->dictlen[j]);
        lua_rawseti(L, -2, (lua_Integer)j + 1);
      }
      codes = push_vec(L, DL_I64, f->nrows);
      memcpy(codes->data, c->data, (size_t)f->nrows * 8);
      push_strcol(L, -2, f->nrows);
      lua_remove(L, -2); /* the dict */
    } else {
      dl_nd *a = push_vec(L, (dl_dtype)c->kind, f->nrows);
      memcpy(a->data, c->data, (size_t)f->nrows * dl_fc_itemsize(c->kind));
    }
    lua_rawset(L, -3);
  }
  lua_setfield(L, -3, "_cols");
  lua_setfield(L, -2, "_names");
  lua_pushinteger(L, (lua_Integer)f->nrows);
  lua_setfield(L, -2, "_n");
  if (f->ndist) {
    lua_createtable(L, 0, (int)f->ndist);
    for (i = 0; i < f->ndist; i++) {
      lua_pushlstring(L, f->dist[i].name, f->dist[i].namelen);
      push_frame(L, f->dist[i].frame);
      lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "_distinct");
  }
  if (f->has_nerrors) {
    lua_pushinteger(L, (lua_Integer)f->nerrors);
    lua_setfield(L, -2, "_nerrors");
  }
  if (f->has_types) {
    lua_createtable(L, 0, (int)f->ntypes);
    for (i = 0; i < f->ntypes; i++) {
      lua_pushlstring(L, f->types[i].name, f->types[i].namelen);
      lua_pushlstring(L, f->types[i].val, f->types[i].vallen);
      lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "_read_types");
  }
  luaL_setmetatable(L, FRAME_MT);
}

/* Under pcall: (dl_fcframe*) -> the frame. */
static int fc_push_p(lua_State *L) {
  push_frame(L, (const dl_fcframe *)lua_touserdata(L, 1));
  return 1;
}

static int fc_decode(lua_State *L, const char *p, size_t n, void *ctx) {
  dl_fcframe f;
  int st;
  (void)ctx;
  /* The frame's methods live in dlua.frame (which loads dlua.ndarray). */
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "dlua.frame") == LUA_TNIL) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "dlua.frame");
    lua_call(L, 1, 0);
  }
  lua_pop(L, 2);
  if ((st = dl_fc_decode(&f, p, n)) != 0)
    return luaL_error(L, "dlua.frame: %s in a frame's bytes",
                      st == DL_ENOMEM ? "not enough memory"
                                      : "damaged or truncated data");
  lua_pushcfunction(L, fc_push_p);
  lua_pushlightuserdata(L, &f);
  st = lua_pcall(L, 1, 1, 0);
  dl_fc_free(&f);
  if (st != LUA_OK) return lua_error(L);
  return 0;
}

/*
** Register the frame codec in L, so frames travel between client and
** workers as task arguments and results.  [-0, +0, m]
*/
void dl_frame_register(lua_State *L) {
  dl_codec_register(L, FRAME_MT, fc_encode, fc_decode);
}

static const luaL_Reg funcs[] = {
  {"take", l_take}, {"which", l_which}, {"factorize", l_factorize},
  {"combine", l_combine}, {"reduce", l_reduce}, {"read_csv", l_read_csv},
  {"take_missing", l_take_missing}, {"hash_bucket", l_hash_bucket},
  {"split", l_split}, {"join", l_join}, {"argsort", l_argsort},
  {"topk", l_topk},
  {"range_bucket", l_range_bucket}, {"recode", l_recode}, {"take0", l_take0},
  {"concat", l_concat},
  {NULL, NULL}};

int luaopen_dlua_framec(lua_State *L) {
  luaL_newlib(L, funcs);
  if (luaL_newmetatable(L, STR_MT)) {
    lua_pushcfunction(L, str_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, str_len);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, str_newindex);
    lua_setfield(L, -2, "__newindex");
  }
  lua_setfield(L, -2, "strmt");
  luaL_newmetatable(L, FRAME_MT); /* filled in by frame.lua */
  lua_setfield(L, -2, "framemt");
  return 1;
}

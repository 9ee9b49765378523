/*
** dl_ndarray_lua.c -- the "dlua.ndarray" module: n-d arrays for Lua over
** the pure-C core in runtime/array/dl_nd.h.  Everything here is 1-based:
** indices, axes, slice bounds (inclusive) and argmin/argmax results.
** README.md, section "Arrays", documents the Lua API.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "dl_buf.h"
#include "dl_codec.h"
#include "dl_mem.h"
#include "dl_nd.h"
#include "dl_runtime.h"
#include "dl_zarr.h"

#include <cjson/cJSON.h>

#define MT "dlua.ndarray"

static int meta_key; /* registry slot: the methods table */

/* ------------------------------------------------------------- basics */

static void push_meta(lua_State *L);

/* Array bytes not yet told to the collector, and made since the last
   full collection nd_new forced: per thread, as a Lua state is run by one
   thread at a time. */
static __thread size_t pending, since_full;

/* Push a new ndarray userdata with no buffer yet.  [-0, +1, m] */
static dl_nd *nd_new(lua_State *L) {
  dl_nd *a;
  size_t fresh = dl_nd_allocated(), every;
  /* The collector does not see array buffers: tell it what they took,
     so garbage arrays are freed in time.  Arrays under a MiB each count
     too (they were dropped, and a task's columns often are such).  A
     step of a generational collector (the client's; a worker's is
     incremental) is a minor collection, which frees only young arrays:
     one that lived across two of them is old, and its buffer stays until
     a major one, which only the collector's own small heap doubling
     brings; an incremental cycle also paces itself by that small heap.
     So after
     as many array bytes as dl_mem may keep freed (a worker's room between
     its target and spill fractions; at most 64 MiB), collect fully. */
  pending += fresh;
  if (pending >= (1 << 20)) {
    fresh = pending;
    pending = 0;
    since_full += fresh;
    every = dl_mem_cache_max();
    if (every > ((size_t)64 << 20)) every = (size_t)64 << 20;
    if (every < ((size_t)1 << 20)) every = (size_t)1 << 20;
    if (since_full >= every) {
      since_full = 0;
      lua_gc(L, LUA_GCCOLLECT);
    } else {
      lua_gc(L, LUA_GCSTEP, (int)(fresh >> 10));
    }
  }
  a = (dl_nd *)lua_newuserdatauv(L, sizeof *a, 0);
  memset(a, 0, sizeof *a);
  push_meta(L);
  lua_setmetatable(L, -2);
  return a;
}

static dl_nd *nd_test(lua_State *L, int i) {
  dl_nd *a = (dl_nd *)luaL_testudata(L, i, MT);
  return (a && a->buf) ? a : NULL;
}

static dl_nd *nd_check(lua_State *L, int i) {
  dl_nd *a = nd_test(L, i);
  if (a == NULL) luaL_typeerror(L, i, "ndarray");
  return a;
}

static int nd_gc(lua_State *L) {
  dl_nd *a = (dl_nd *)luaL_checkudata(L, 1, MT);
  dl_nd_release(a);
  return 0;
}

/* Raise "dlua.ndarray: msg" at the caller's line.  [-0, +0, v] */
static int nd_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  lua_Debug ar;
  int level = 1;
  /* Skip C frames, so the position is the Lua line that called us. */
  while (lua_getstack(L, level, &ar)) {
    lua_getinfo(L, "Sl", &ar);
    if (ar.currentline > 0) break;
    level++;
  }
  luaL_where(L, level);
  lua_pushliteral(L, "dlua.ndarray: ");
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 3);
  return lua_error(L);
}

static const char *shape_s(const dl_nd *a, char *buf, size_t n) {
  dl_nd_shape_str(a->ndim, a->shape, buf, n);
  return buf;
}

/* Raise the message of core code rc for an operation on a (and b). */
static int nd_fail(lua_State *L, int rc, const char *what, const dl_nd *a,
                   const dl_nd *b) {
  char sa[160], sb[160];
  if (rc == DL_ND_ENOMEM) return luaL_error(L, "not enough memory");
  if (b)
    return nd_error(L, "%s: %s (shapes %s and %s, dtypes %s and %s)", what,
                    dl_nd_strerror(rc), shape_s(a, sa, sizeof sa),
                    shape_s(b, sb, sizeof sb), dl_nd_dtype_name(a->dtype),
                    dl_nd_dtype_name(b->dtype));
  if (a)
    return nd_error(L, "%s: %s (shape %s, dtype %s)", what,
                    dl_nd_strerror(rc), shape_s(a, sa, sizeof sa),
                    dl_nd_dtype_name(a->dtype));
  return nd_error(L, "%s: %s", what, dl_nd_strerror(rc));
}

static int parse_dtype(lua_State *L, const char *s, int arg) {
  if (strcmp(s, "float64") == 0 || strcmp(s, "float") == 0) return DL_F64;
  if (strcmp(s, "int64") == 0 || strcmp(s, "int") == 0) return DL_I64;
  if (strcmp(s, "bool") == 0) return DL_BOOL;
  if (strcmp(s, "float32") == 0) return DL_F32;
  return luaL_argerror(L, arg, lua_pushfstring(L, "unknown dtype '%s' "
                       "(float64, float32, int64 or bool)", s));
}

/* dtype from a string or an options table {dtype = ...} at i; def when
   absent. */
static int opt_dtype(lua_State *L, int i, int def) {
  int t = lua_type(L, i);
  if (t == LUA_TSTRING) return parse_dtype(L, lua_tostring(L, i), i);
  if (t == LUA_TTABLE) {
    lua_getfield(L, i, "dtype");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_argerror(L, i, "dtype must be a string");
      def = parse_dtype(L, lua_tostring(L, -1), i);
    }
    lua_pop(L, 1);
    return def;
  }
  if (t != LUA_TNONE && t != LUA_TNIL)
    luaL_typeerror(L, i, "options table or dtype string");
  return def;
}

/* Integer field k of the options table at i (def when absent). */
static lua_Integer opt_int(lua_State *L, int i, const char *k,
                           lua_Integer def, int *present) {
  lua_Integer v = def;
  if (present) *present = 0;
  if (lua_type(L, i) != LUA_TTABLE) return def;
  lua_getfield(L, i, k);
  if (!lua_isnil(L, -1)) {
    int ok;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok)
      luaL_argerror(L, i, lua_pushfstring(L, "option '%s' must be an "
                    "integer", k));
    if (present) *present = 1;
  }
  lua_pop(L, 1);
  return v;
}

/* A shape from a table of non-negative integers or a single integer.
   Returns ndim. */
static int get_shape(lua_State *L, int i, int64_t *shape) {
  int n, k;
  if (lua_isinteger(L, i)) {
    shape[0] = lua_tointeger(L, i);
    if (shape[0] < 0) luaL_argerror(L, i, "negative dimension");
    return 1;
  }
  if (lua_type(L, i) != LUA_TTABLE)
    luaL_typeerror(L, i, "shape (a table of integers)");
  n = (int)lua_rawlen(L, i);
  if (n > DL_ND_MAXDIM) luaL_argerror(L, i, "too many dimensions");
  for (k = 0; k < n; k++) {
    int ok;
    lua_rawgeti(L, i, k + 1);
    shape[k] = lua_tointegerx(L, -1, &ok);
    if (!ok || shape[k] < 0)
      luaL_argerror(L, i, lua_pushfstring(L, "shape[%d] must be a "
                    "non-negative integer, got %s", k + 1,
                    luaL_tolstring(L, -1, NULL)));
    lua_pop(L, 1);
  }
  return n;
}

/* Push a new array of the given dtype and shape.  [-0, +1, m] */
static dl_nd *nd_alloc(lua_State *L, int dtype, int ndim,
                       const int64_t *shape) {
  dl_nd *a = nd_new(L);
  int rc = dl_nd_alloc(a, (dl_dtype)dtype, ndim, shape);
  if (rc) nd_fail(L, rc, "alloc", NULL, NULL);
  return a;
}

/* Store Lua value at idx in element p of dtype t (with checks). */
static void put_elem(lua_State *L, int idx, int t, char *p, int arg) {
  if (t == DL_BOOL) {
    if (lua_type(L, idx) == LUA_TBOOLEAN)
      *(uint8_t *)p = (uint8_t)lua_toboolean(L, idx);
    else if (lua_type(L, idx) == LUA_TNUMBER)
      *(uint8_t *)p = lua_tonumber(L, idx) != 0;
    else
      luaL_typeerror(L, arg, "number or boolean");
  } else if (t == DL_I64) {
    if (lua_isinteger(L, idx)) *(int64_t *)p = lua_tointeger(L, idx);
    else if (lua_type(L, idx) == LUA_TNUMBER) {
      double d = lua_tonumber(L, idx);
      if (!isfinite(d) || d >= 9.2233720368547758e18 || d < -9.2233720368547758e18)
        nd_error(L, "cannot store %f in an int64 array", d);
      *(int64_t *)p = (int64_t)d;
    } else if (lua_type(L, idx) == LUA_TBOOLEAN)
      *(int64_t *)p = lua_toboolean(L, idx);
    else
      luaL_typeerror(L, arg, "number");
  } else {
    double v = 0;
    if (lua_type(L, idx) == LUA_TNUMBER) v = lua_tonumber(L, idx);
    else if (lua_type(L, idx) == LUA_TBOOLEAN) v = lua_toboolean(L, idx);
    else
      luaL_typeerror(L, arg, "number");
    if (t == DL_F32) *(float *)p = (float)v;
    else *(double *)p = v;
  }
}

/* Push element p of dtype t as a Lua value.  [-0, +1, -] */
static void push_elem(lua_State *L, int t, const char *p) {
  if (t == DL_F64) lua_pushnumber(L, *(const double *)p);
  else if (t == DL_F32) lua_pushnumber(L, (double)*(const float *)p);
  else if (t == DL_I64) lua_pushinteger(L, *(const int64_t *)p);
  else lua_pushboolean(L, *(const uint8_t *)p);
}

/* ---------------------------------------------------------- from_table */

/* Walk the nested table at idx: find the shape from first elements and
   the dtype from every leaf (all booleans -> bool, all integers -> int64,
   else float64). */
static void ft_shape(lua_State *L, int idx, int *ndim, int64_t *shape) {
  int n = 0;
  lua_pushvalue(L, idx);
  while (lua_type(L, -1) == LUA_TTABLE) {
    if (n >= DL_ND_MAXDIM) nd_error(L, "from_table: too many dimensions");
    shape[n++] = (int64_t)lua_rawlen(L, -1);
    if (shape[n - 1] == 0) break;
    lua_rawgeti(L, -1, 1);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
  *ndim = n;
}

/* Check the nested tables against the shape and find the dtype.  path
   holds the 1-based index so far, for messages. */
static void ft_scan(lua_State *L, int d, int ndim, const int64_t *shape,
                    int64_t *path, int *kind) {
  int64_t i;
  int t = lua_type(L, -1);
  if (d == ndim) {
    if (t == LUA_TNUMBER) {
      if (!lua_isinteger(L, -1)) *kind |= 4;
      else *kind |= 2;
    } else if (t == LUA_TBOOLEAN) *kind |= 1;
    else {
      char where[256];
      int k, len = 0;
      for (k = 0; k < d && len < 200; k++)
        len += snprintf(where + len, sizeof where - (size_t)len, "[%lld]",
                        (long long)path[k]);
      if (d == 0) snprintf(where, sizeof where, "(the value)");
      nd_error(L, "from_table: element %s is a %s, not a number or "
               "boolean", where, luaL_typename(L, -1));
    }
    return;
  }
  if (t != LUA_TTABLE || (int64_t)lua_rawlen(L, -1) != shape[d]) {
    char where[256];
    int k, len = 0;
    where[0] = '\0';
    for (k = 0; k < d && len < 200; k++)
      len += snprintf(where + len, sizeof where - (size_t)len, "[%lld]",
                      (long long)path[k]);
    nd_error(L, "from_table: ragged nesting: %s%s is %s%s, expected a "
             "table of %I elements", d ? "element " : "the table",
             where, t == LUA_TTABLE ? "a table of " : "a ",
             t == LUA_TTABLE
               ? lua_pushfstring(L, "%d elements", (int)lua_rawlen(L, -1))
               : luaL_typename(L, -1),
             (lua_Integer)shape[d]);
  }
  for (i = 0; i < shape[d]; i++) {
    path[d] = i + 1;
    lua_rawgeti(L, -1, (lua_Integer)(i + 1));
    ft_scan(L, d + 1, ndim, shape, path, kind);
    lua_pop(L, 1);
  }
}

static void ft_fill(lua_State *L, int d, int ndim, const int64_t *shape,
                    dl_nd *a, char **p) {
  int64_t i;
  if (d == ndim) {
    put_elem(L, -1, a->dtype, *p, 1);
    *p += dl_nd_itemsize(a->dtype);
    return;
  }
  for (i = 0; i < shape[d]; i++) {
    lua_rawgeti(L, -1, (lua_Integer)(i + 1));
    ft_fill(L, d + 1, ndim, shape, a, p);
    lua_pop(L, 1);
  }
}

/* nd.from_table(t [, dtype | {dtype = }]) -> ndarray */
static int l_from_table(lua_State *L) {
  int64_t shape[DL_ND_MAXDIM], path[DL_ND_MAXDIM];
  int ndim, kind = 0, dt;
  dl_nd *a;
  char *p;
  if (nd_test(L, 1)) { /* an ndarray: a copy, maybe converted */
    dl_nd *src = nd_test(L, 1), *r;
    int rc;
    dt = opt_dtype(L, 2, src->dtype);
    r = nd_new(L);
    if ((rc = dl_nd_astype(r, src, (dl_dtype)dt)) != 0)
      nd_fail(L, rc, "array", src, NULL);
    return 1;
  }
  luaL_checkany(L, 1);
  ft_shape(L, 1, &ndim, shape);
  lua_pushvalue(L, 1);
  ft_scan(L, 0, ndim, shape, path, &kind);
  lua_pop(L, 1);
  dt = (kind & 4) ? DL_F64 : (kind & 2) ? DL_I64 : kind ? DL_BOOL : DL_F64;
  if ((kind & 1) && (kind & 6)) dt = (kind & 4) ? DL_F64 : DL_I64;
  dt = opt_dtype(L, 2, dt);
  a = nd_alloc(L, dt, ndim, shape);
  p = a->data;
  lua_pushvalue(L, 1);
  ft_fill(L, 0, ndim, shape, a, &p);
  lua_pop(L, 1);
  return 1;
}

/* Convert the value at i to an ndarray on the stack (an ndarray is
   returned as is; numbers and booleans become 0-d arrays; tables go
   through from_table).  [-0, +(0|1), m] */
static dl_nd *to_nd(lua_State *L, int i) {
  dl_nd *a = nd_test(L, i);
  int t = lua_type(L, i);
  if (a) return a;
  i = lua_absindex(L, i);
  if (t == LUA_TNUMBER || t == LUA_TBOOLEAN) {
    int dt = t == LUA_TBOOLEAN ? DL_BOOL
           : lua_isinteger(L, i) ? DL_I64 : DL_F64;
    a = nd_alloc(L, dt, 0, NULL);
    put_elem(L, i, dt, a->data, i);
    return a;
  }
  if (t == LUA_TTABLE) {
    lua_pushcfunction(L, l_from_table);
    lua_pushvalue(L, i);
    lua_call(L, 1, 1);
    return nd_check(L, -1);
  }
  luaL_typeerror(L, i, "ndarray, number, boolean or table");
  return NULL;
}

/* ------------------------------------------------------------ creation */

static int fill_const(lua_State *L, int dt, double v) {
  int64_t shape[DL_ND_MAXDIM], n, k;
  int ndim = get_shape(L, 1, shape);
  dl_nd *a = nd_alloc(L, dt, ndim, shape);
  n = dl_nd_size(a);
  for (k = 0; k < n; k++) {
    if (dt == DL_F64) ((double *)a->data)[k] = v;
    else if (dt == DL_F32) ((float *)a->data)[k] = (float)v;
    else if (dt == DL_I64) ((int64_t *)a->data)[k] = (int64_t)v;
    else ((uint8_t *)a->data)[k] = v != 0;
  }
  return 1;
}

static int l_zeros(lua_State *L) {
  return fill_const(L, opt_dtype(L, 2, DL_F64), 0);
}
static int l_ones(lua_State *L) {
  return fill_const(L, opt_dtype(L, 2, DL_F64), 1);
}

/* nd.full(shape, v [, opts]) -- dtype from v unless given. */
static int l_full(lua_State *L) {
  int64_t shape[DL_ND_MAXDIM], n, k;
  int ndim = get_shape(L, 1, shape), dt;
  size_t isz;
  dl_nd *a;
  luaL_checkany(L, 2);
  dt = lua_type(L, 2) == LUA_TBOOLEAN ? DL_BOOL
     : lua_isinteger(L, 2) ? DL_I64 : DL_F64;
  dt = opt_dtype(L, 3, dt);
  a = nd_alloc(L, dt, ndim, shape);
  n = dl_nd_size(a);
  isz = dl_nd_itemsize(a->dtype);
  if (n > 0) put_elem(L, 2, dt, a->data, 2);
  for (k = 1; k < n; k++) memcpy(a->data + k * isz, a->data, isz);
  return 1;
}

/* nd.arange(first, last [, step] [, opts]): first, first+step, ... up to
   last inclusive, like a numeric for. */
static int l_arange(lua_State *L) {
  int allint = lua_isinteger(L, 1) && lua_isinteger(L, 2) &&
               (lua_isnoneornil(L, 3) || lua_type(L, 3) == LUA_TTABLE ||
                lua_isinteger(L, 3));
  int oi = lua_type(L, 3) == LUA_TTABLE ? 3 : 4, dt;
  int64_t n, k;
  dl_nd *a;
  double f = luaL_checknumber(L, 1), l = luaL_checknumber(L, 2);
  double st = lua_type(L, 3) == LUA_TNUMBER ? lua_tonumber(L, 3) : 1;
  if (st == 0 || st != st) luaL_argerror(L, 3, "step must not be zero");
  if (!isfinite(f) || !isfinite(l)) luaL_argerror(L, 1, "bounds must be finite");
  n = (int64_t)floor((l - f) / st + 1e-9) + 1;
  if (n < 0) n = 0;
  dt = opt_dtype(L, oi, allint ? DL_I64 : DL_F64);
  a = nd_alloc(L, dt, 1, &n);
  for (k = 0; k < n; k++) {
    if (dt == DL_I64)
      ((int64_t *)a->data)[k] = lua_tointeger(L, 1) +
        k * (int64_t)(lua_isinteger(L, 3) ? lua_tointeger(L, 3) : 1);
    else if (dt == DL_F64) ((double *)a->data)[k] = f + (double)k * st;
    else if (dt == DL_F32) ((float *)a->data)[k] = (float)(f + (double)k * st);
    else ((uint8_t *)a->data)[k] = f + (double)k * st != 0;
  }
  return 1;
}

/* nd.linspace(a, b, n): n evenly spaced float64 values from a to b. */
static int l_linspace(lua_State *L) {
  double f = luaL_checknumber(L, 1), l = luaL_checknumber(L, 2);
  lua_Integer n = luaL_checkinteger(L, 3), k;
  int64_t sh;
  dl_nd *a;
  luaL_argcheck(L, n >= 0, 3, "count must be non-negative");
  sh = n;
  a = nd_alloc(L, DL_F64, 1, &sh);
  for (k = 0; k < n; k++)
    ((double *)a->data)[k] = n == 1 ? f : f + (l - f) * (double)k / (double)(n - 1);
  if (n > 1) ((double *)a->data)[n - 1] = l;
  return 1;
}

/* nd.eye(n [, m] [, opts]) */
static int l_eye(lua_State *L) {
  int64_t sh[2], k;
  dl_nd *a;
  int dt;
  sh[0] = luaL_checkinteger(L, 1);
  sh[1] = lua_isinteger(L, 2) ? lua_tointeger(L, 2) : sh[0];
  luaL_argcheck(L, sh[0] >= 0 && sh[1] >= 0, 1, "size must be non-negative");
  dt = opt_dtype(L, lua_isinteger(L, 2) ? 3 : 2, DL_F64);
  a = nd_alloc(L, dt, 2, sh);
  for (k = 0; k < sh[0] && k < sh[1]; k++) {
    char *p = a->data + (k * sh[1] + k) * (int64_t)dl_nd_itemsize(a->dtype);
    if (dt == DL_F64) *(double *)p = 1;
    else if (dt == DL_F32) *(float *)p = 1;
    else if (dt == DL_I64) *(int64_t *)p = 1;
    else *(uint8_t *)p = 1;
  }
  return 1;
}

/* ------------------------------------------------------------- indexing */

/* 0-based index from the 1-based (negative: from the end) Lua index. */
static int64_t norm_index(lua_State *L, lua_Integer i, int64_t size, int axis) {
  int64_t j = i < 0 ? size + i : i - 1;
  if (i == 0 || j < 0 || j >= size)
    nd_error(L, "index %I is out of bounds for axis %d with size %I",
             (lua_Integer)i, axis + 1, (lua_Integer)size);
  return j;
}

/* a:get(i, j, ...) -> element, or a view when fewer indices than axes. */
static int m_get(lua_State *L) {
  dl_nd *a = nd_check(L, 1), *v;
  int n = lua_gettop(L) - 1, k;
  int64_t off = 0;
  if (n > a->ndim)
    return nd_error(L, "get: %d indices for a %d-d array", n, a->ndim);
  for (k = 0; k < n; k++)
    off += norm_index(L, luaL_checkinteger(L, k + 2), a->shape[k], k) *
           a->strides[k];
  if (n == a->ndim) {
    push_elem(L, a->dtype, a->data + off * (int64_t)dl_nd_itemsize(a->dtype));
    return 1;
  }
  v = nd_new(L);
  dl_nd_view(v, a);
  v->data += off * (int64_t)dl_nd_itemsize(a->dtype);
  v->ndim = a->ndim - n;
  memmove(v->shape, a->shape + n, sizeof(int64_t) * (size_t)v->ndim);
  memmove(v->strides, a->strides + n, sizeof(int64_t) * (size_t)v->ndim);
  return 1;
}

/* a:set(i, j, ..., v): store v (a value or an array broadcast into the
   selected part). */
static int m_set(lua_State *L) {
  dl_nd *a = nd_check(L, 1), *v;
  int n = lua_gettop(L) - 2, k, rc;
  int64_t off = 0;
  if (n < 0) return luaL_error(L, "set needs a value");
  if (n > a->ndim)
    return nd_error(L, "set: %d indices for a %d-d array", n, a->ndim);
  if (dl_nd_readonly(a)) return nd_fail(L, DL_ND_EREADONLY, "set", a, NULL);
  for (k = 0; k < n; k++)
    off += norm_index(L, luaL_checkinteger(L, k + 2), a->shape[k], k) *
           a->strides[k];
  if (n == a->ndim && !nd_test(L, n + 2)) {
    put_elem(L, n + 2, a->dtype,
             a->data + off * (int64_t)dl_nd_itemsize(a->dtype), n + 2);
    return 0;
  }
  {
    dl_nd view = *a, *src = to_nd(L, n + 2);
    view.data += off * (int64_t)dl_nd_itemsize(a->dtype);
    view.ndim = a->ndim - n;
    memmove(view.shape, a->shape + n, sizeof(int64_t) * (size_t)view.ndim);
    memmove(view.strides, a->strides + n,
            sizeof(int64_t) * (size_t)view.ndim);
    if ((rc = dl_nd_assign(&view, src)) != 0)
      nd_fail(L, rc, "set", &view, src);
  }
  (void)v;
  return 0;
}

/* a:slice(s1, s2, ...): each s an index (the axis is dropped), or a table
   {first, last, step} (1-based, inclusive, negative counts from the end;
   any may be nil), or {} / true for the whole axis.  Missing trailing
   specs take whole axes.  A view. */
static int m_slice(lua_State *L) {
  dl_nd *a = nd_check(L, 1), *v;
  int n = lua_gettop(L) - 1, k, nd = 0;
  int64_t shape[DL_ND_MAXDIM], strides[DL_ND_MAXDIM], off = 0;
  if (n > a->ndim)
    return nd_error(L, "slice: %d specs for a %d-d array", n, a->ndim);
  for (k = 0; k < a->ndim; k++) {
    int arg = k + 2, t = k < n ? lua_type(L, arg) : LUA_TNIL;
    int64_t size = a->shape[k], f, l, st = 1, cnt;
    if (t == LUA_TNUMBER) {
      off += norm_index(L, luaL_checkinteger(L, arg), size, k) * a->strides[k];
      continue;
    }
    if (t == LUA_TTABLE) {
      int ok, hf, hl;
      lua_rawgeti(L, arg, 3);
      if (!lua_isnil(L, -1)) {
        st = lua_tointegerx(L, -1, &ok);
        if (!ok || st == 0)
          nd_error(L, "slice: step of axis %d must be a non-zero integer",
                   k + 1);
      }
      lua_rawgeti(L, arg, 1);
      hf = !lua_isnil(L, -1);
      f = lua_tointegerx(L, -1, &ok);
      if (hf && !ok) nd_error(L, "slice: first of axis %d must be an integer", k + 1);
      lua_rawgeti(L, arg, 2);
      hl = !lua_isnil(L, -1);
      l = lua_tointegerx(L, -1, &ok);
      if (hl && !ok) nd_error(L, "slice: last of axis %d must be an integer", k + 1);
      lua_pop(L, 3);
      /* to 0-based, inclusive */
      f = !hf ? (st > 0 ? 0 : size - 1) : f < 0 ? size + f : f - 1;
      l = !hl ? (st > 0 ? size - 1 : 0) : l < 0 ? size + l : l - 1;
    } else if (t == LUA_TNIL || t == LUA_TNONE || t == LUA_TBOOLEAN) {
      f = 0;
      l = size - 1;
    } else {
      return luaL_typeerror(L, arg, "index, {first, last, step} or {}");
    }
    if (st > 0) {
      if (f < 0) f = 0;
      if (l > size - 1) l = size - 1;
      cnt = l >= f ? (l - f) / st + 1 : 0;
    } else {
      if (f > size - 1) f = size - 1;
      if (l < 0) l = 0;
      cnt = f >= l ? (f - l) / -st + 1 : 0;
    }
    if (cnt > 0) off += f * a->strides[k];
    shape[nd] = cnt;
    strides[nd] = a->strides[k] * st;
    nd++;
  }
  v = nd_new(L);
  dl_nd_view(v, a);
  v->data += off * (int64_t)dl_nd_itemsize(a->dtype);
  v->ndim = nd;
  memcpy(v->shape, shape, sizeof(int64_t) * (size_t)nd);
  memcpy(v->strides, strides, sizeof(int64_t) * (size_t)nd);
  return 1;
}

/* a:transpose([perm...]) -- perm 1-based, as arguments or one table;
   default reverses the axes.  A view. */
static int m_transpose(lua_State *L) {
  dl_nd *a = nd_check(L, 1), *v;
  int perm[DL_ND_MAXDIM], seen[DL_ND_MAXDIM] = {0}, k, n;
  int tbl = lua_type(L, 2) == LUA_TTABLE;
  n = tbl ? (int)lua_rawlen(L, 2) : lua_gettop(L) - 1;
  if (n == 0) {
    for (k = 0; k < a->ndim; k++) perm[k] = a->ndim - 1 - k;
  } else {
    if (n != a->ndim)
      return nd_error(L, "transpose: %d axes given for a %d-d array", n,
                      a->ndim);
    for (k = 0; k < n; k++) {
      lua_Integer p;
      if (tbl) {
        lua_rawgeti(L, 2, k + 1);
        p = luaL_checkinteger(L, -1);
        lua_pop(L, 1);
      } else p = luaL_checkinteger(L, k + 2);
      if (p < 0) p += a->ndim + 1;
      if (p < 1 || p > a->ndim || seen[p - 1])
        return nd_error(L, "transpose: bad axis %I in the permutation",
                        (lua_Integer)p);
      seen[p - 1] = 1;
      perm[k] = (int)p - 1;
    }
  }
  v = nd_new(L);
  dl_nd_view(v, a);
  for (k = 0; k < a->ndim; k++) {
    v->shape[k] = a->shape[perm[k]];
    v->strides[k] = a->strides[perm[k]];
  }
  return 1;
}

/* a:reshape(shape) or a:reshape(d1, d2, ...); one dimension may be -1.
   A view when a is contiguous, else a copy. */
static int m_reshape(lua_State *L) {
  dl_nd *a = nd_check(L, 1), *v;
  int64_t shape[DL_ND_MAXDIM], n = 1;
  int nd = 0, k, neg = -1;
  char s1[160], s2[160];
  if (lua_type(L, 2) == LUA_TTABLE) {
    nd = (int)lua_rawlen(L, 2);
    if (nd > DL_ND_MAXDIM) return nd_error(L, "reshape: too many dimensions");
    for (k = 0; k < nd; k++) {
      lua_rawgeti(L, 2, k + 1);
      shape[k] = luaL_checkinteger(L, -1);
      lua_pop(L, 1);
    }
  } else {
    nd = lua_gettop(L) - 1;
    if (nd > DL_ND_MAXDIM) return nd_error(L, "reshape: too many dimensions");
    for (k = 0; k < nd; k++) shape[k] = luaL_checkinteger(L, k + 2);
  }
  for (k = 0; k < nd; k++) {
    if (shape[k] == -1 && neg < 0) neg = k;
    else if (shape[k] < 0 || (shape[k] > 0 && n > INT64_MAX / shape[k]))
      return nd_error(L, "reshape: bad dimension %I", (lua_Integer)shape[k]);
    else n *= shape[k];
  }
  if (neg >= 0 && n > 0 && dl_nd_size(a) % n == 0)
    shape[neg] = dl_nd_size(a) / n, n *= shape[neg];
  if (n != dl_nd_size(a) || (neg >= 0 && shape[neg] < 0)) {
    if (neg >= 0) shape[neg] = -1;
    dl_nd_shape_str(nd, shape, s2, sizeof s2);
    return nd_error(L, "reshape: cannot reshape array of shape %s (%I "
                    "elements) into shape %s", shape_s(a, s1, sizeof s1),
                    (lua_Integer)dl_nd_size(a), s2);
  }
  v = nd_new(L);
  if (dl_nd_contiguous(a)) dl_nd_view(v, a);
  else {
    int rc = dl_nd_astype(v, a, a->dtype);
    if (rc) nd_fail(L, rc, "reshape", a, NULL);
  }
  v->ndim = nd;
  {
    int64_t s = 1;
    for (k = nd - 1; k >= 0; k--) {
      v->shape[k] = shape[k];
      v->strides[k] = n ? s : 0;
      if (n) s *= shape[k];
    }
  }
  return 1;
}

/* a:assign(b): copy b (an array or value, broadcast, converted) into a,
   which is usually a view: a:slice({1, 2}):assign(0).  Returns a. */
static int m_assign(lua_State *L) {
  dl_nd *a = nd_check(L, 1), *b;
  int rc;
  luaL_checkany(L, 2);
  b = to_nd(L, 2);
  if ((rc = dl_nd_assign(a, b)) != 0) nd_fail(L, rc, "assign", a, b);
  lua_settop(L, 1);
  return 1;
}

static int m_copy(lua_State *L) {
  dl_nd *a = nd_check(L, 1), *r;
  int rc, dt = opt_dtype(L, 2, a->dtype);
  r = nd_new(L);
  if ((rc = dl_nd_astype(r, a, (dl_dtype)dt)) != 0) nd_fail(L, rc, "copy", a, NULL);
  return 1;
}

static int m_astype(lua_State *L) {
  dl_nd *a = nd_check(L, 1), *r;
  int rc, dt = parse_dtype(L, luaL_checkstring(L, 2), 2);
  r = nd_new(L);
  if ((rc = dl_nd_astype(r, a, (dl_dtype)dt)) != 0)
    nd_fail(L, rc, "astype", a, NULL);
  return 1;
}

static int m_flatten(lua_State *L) {
  dl_nd *a = nd_check(L, 1);
  lua_settop(L, 1);
  lua_pushcfunction(L, m_reshape);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, (lua_Integer)dl_nd_size(a));
  lua_call(L, 2, 1);
  return 1;
}

/* Push nested tables of a's elements.  [-0, +1, m] */
static void push_table(lua_State *L, const dl_nd *a, int d, const char *p) {
  int64_t i;
  size_t isz = dl_nd_itemsize(a->dtype);
  if (d == a->ndim) {
    push_elem(L, a->dtype, p);
    return;
  }
  luaL_checkstack(L, 4, "nesting");
  lua_createtable(L, a->shape[d] < 1 << 20 ? (int)a->shape[d] : 0, 0);
  for (i = 0; i < a->shape[d]; i++) {
    push_table(L, a, d + 1, p + i * a->strides[d] * (int64_t)isz);
    lua_rawseti(L, -2, (lua_Integer)(i + 1));
  }
}

static int m_totable(lua_State *L) {
  dl_nd *a = nd_check(L, 1);
  push_table(L, a, 0, a->data);
  return 1;
}

/* a:item() -> the one element of a size-1 array. */
static int m_item(lua_State *L) {
  dl_nd *a = nd_check(L, 1);
  int64_t idx[DL_ND_MAXDIM] = {0};
  char s[160];
  if (dl_nd_size(a) != 1)
    return nd_error(L, "item: array of shape %s has %I elements, not 1",
                    shape_s(a, s, sizeof s), (lua_Integer)dl_nd_size(a));
  push_elem(L, a->dtype, dl_nd_at(a, idx));
  return 1;
}

/* ------------------------------------------------------- elementwise */

static int binop(lua_State *L, int op, const char *what) {
  dl_nd *a, *b, *r;
  int rc, top = lua_gettop(L);
  if (top < 2) lua_settop(L, 2);
  a = to_nd(L, 1);
  b = to_nd(L, 2);
  r = nd_new(L);
  if ((rc = dl_nd_binop(r, op, a, b)) != 0) nd_fail(L, rc, what, a, b);
  return 1;
}

#define BINF(name, op, what) \
  static int name(lua_State *L) { return binop(L, op, what); }
BINF(l_add, DL_OP_ADD, "add")
BINF(l_sub, DL_OP_SUB, "sub")
BINF(l_mul, DL_OP_MUL, "mul")
BINF(l_div, DL_OP_DIV, "div")
BINF(l_idiv, DL_OP_FDIV, "floor division")
BINF(l_mod, DL_OP_MOD, "mod")
BINF(l_pow, DL_OP_POW, "pow")
BINF(l_lt, DL_OP_LT, "lt")
BINF(l_le, DL_OP_LE, "le")
BINF(l_gt, DL_OP_GT, "gt")
BINF(l_ge, DL_OP_GE, "ge")
BINF(l_eq, DL_OP_EQ, "eq")
BINF(l_ne, DL_OP_NE, "ne")
BINF(l_band, DL_OP_AND, "&")
BINF(l_bor, DL_OP_OR, "|")
BINF(l_bxor, DL_OP_XOR, "~")
BINF(l_minimum, DL_OP_MIN, "minimum")
BINF(l_maximum, DL_OP_MAX, "maximum")
BINF(l_atan2, DL_OP_ATAN2, "atan2")

static int unop(lua_State *L, int op) {
  static const char *const names[DL_UN_N] = {
    "unm", "abs", "sign", "not", "floor", "ceil", "round", "sqrt", "exp",
    "log", "log10", "log2", "sin", "cos", "tan", "arcsin", "arccos",
    "arctan", "sinh", "cosh", "tanh", "expm1", "log1p", "isnan", "isinf",
    "isfinite"};
  dl_nd *a = to_nd(L, 1), *r = nd_new(L);
  int rc;
  if ((rc = dl_nd_unop(r, op, a)) != 0) nd_fail(L, rc, names[op], a, NULL);
  return 1;
}

#define UNF(name, op) \
  static int name(lua_State *L) { return unop(L, op); }
UNF(l_unm, DL_UN_NEG)
UNF(l_abs, DL_UN_ABS)
UNF(l_sign, DL_UN_SIGN)
UNF(l_bnot, DL_UN_NOT)
UNF(nd_floor, DL_UN_FLOOR)
UNF(l_ceil, DL_UN_CEIL)
UNF(l_round, DL_UN_ROUND)
UNF(l_sqrt, DL_UN_SQRT)
UNF(l_exp, DL_UN_EXP)
UNF(l_log, DL_UN_LOG)
UNF(l_log10, DL_UN_LOG10)
UNF(l_log2, DL_UN_LOG2)
UNF(l_sin, DL_UN_SIN)
UNF(l_cos, DL_UN_COS)
UNF(l_tan, DL_UN_TAN)
UNF(l_asin, DL_UN_ASIN)
UNF(l_acos, DL_UN_ACOS)
UNF(l_atan, DL_UN_ATAN)
UNF(l_sinh, DL_UN_SINH)
UNF(l_cosh, DL_UN_COSH)
UNF(l_tanh, DL_UN_TANH)
UNF(l_expm1, DL_UN_EXPM1)
UNF(l_log1p, DL_UN_LOG1P)
UNF(l_isnan, DL_UN_ISNAN)
UNF(l_isinf, DL_UN_ISINF)
UNF(l_isfinite, DL_UN_ISFINITE)

/* nd.where(cond, a, b) */
static int l_where(lua_State *L) {
  dl_nd *c, *a, *b, *r;
  int rc;
  lua_settop(L, 3);
  c = to_nd(L, 1);
  a = to_nd(L, 2);
  b = to_nd(L, 3);
  r = nd_new(L);
  if ((rc = dl_nd_where(r, c, a, b)) != 0) {
    char s1[160], s2[160], s3[160];
    return nd_error(L, "where: %s (shapes %s, %s and %s)", dl_nd_strerror(rc),
                    shape_s(c, s1, sizeof s1), shape_s(a, s2, sizeof s2),
                    shape_s(b, s3, sizeof s3));
  }
  return 1;
}

/* ----------------------------------------------------------- reductions */

/* The axis option of the table at i: 0-based, or -1 for none. */
static int get_axis(lua_State *L, int i, const dl_nd *a, const char *what) {
  int has;
  lua_Integer ax = opt_int(L, i, "axis", 0, &has);
  if (!has) return -1;
  if (ax < 0) ax += a->ndim + 1;
  if (ax < 1 || ax > a->ndim) {
    char s[160];
    nd_error(L, "%s: axis %I is out of range for an array of shape %s "
             "(axes 1..%d)", what, opt_int(L, i, "axis", 0, NULL),
             shape_s(a, s, sizeof s), a->ndim);
  }
  return (int)ax - 1;
}

static int reduce(lua_State *L, int op, const char *what) {
  dl_nd *a = to_nd(L, 1), *r;
  int ax, rc, ddof;
  if (lua_type(L, 2) != LUA_TNONE && lua_type(L, 2) != LUA_TNIL &&
      lua_type(L, 2) != LUA_TTABLE)
    luaL_typeerror(L, 2, "options table {axis = , ddof = }");
  ax = get_axis(L, 2, a, what);
  ddof = (int)opt_int(L, 2, "ddof", 0, NULL);
  r = nd_new(L);
  if ((rc = dl_nd_reduce(r, op, a, ax, ddof)) != 0) nd_fail(L, rc, what, a, NULL);
  if (op == DL_RED_ARGMIN || op == DL_RED_ARGMAX) { /* to 1-based */
    int64_t k, n = dl_nd_size(r);
    for (k = 0; k < n; k++) ((int64_t *)r->data)[k] += 1;
  }
  if (ax < 0) push_elem(L, r->dtype, r->data);
  return 1;
}

#define REDF(name, op, what) \
  static int name(lua_State *L) { return reduce(L, op, what); }
REDF(m_sum, DL_RED_SUM, "sum")
REDF(m_prod, DL_RED_PROD, "prod")
REDF(m_min, DL_RED_MIN, "min")
REDF(m_max, DL_RED_MAX, "max")
REDF(m_mean, DL_RED_MEAN, "mean")
REDF(m_var, DL_RED_VAR, "var")
REDF(m_std, DL_RED_STD, "std")
REDF(m_argmin, DL_RED_ARGMIN, "argmin")
REDF(m_argmax, DL_RED_ARGMAX, "argmax")
REDF(m_any, DL_RED_ANY, "any")
REDF(m_all, DL_RED_ALL, "all")

static int m_cumsum(lua_State *L) {
  dl_nd *a = to_nd(L, 1), *r;
  int ax = get_axis(L, 2, a, "cumsum"), rc;
  r = nd_new(L);
  if ((rc = dl_nd_cumsum(r, a, ax)) != 0) nd_fail(L, rc, "cumsum", a, NULL);
  return 1;
}

/* ------------------------------------------------- joining, matmul, linalg */

/* The list of arrays at i into arrs (converted values stay on the stack). */
static int get_list(lua_State *L, int i, const dl_nd **arrs, int max) {
  int n, k;
  luaL_checktype(L, i, LUA_TTABLE);
  n = (int)lua_rawlen(L, i);
  if (n < 1) nd_error(L, "need at least one array to join");
  if (n > max) nd_error(L, "too many arrays to join (%d, at most %d)", n, max);
  luaL_checkstack(L, n + 4, "arrays");
  for (k = 0; k < n; k++) {
    lua_rawgeti(L, i, k + 1);
    arrs[k] = to_nd(L, -1);
  }
  return n;
}

#define MAXJOIN 4096

static int join(lua_State *L, int stack) {
  const dl_nd **arrs;
  dl_nd *views, *r;
  int n, k, ax, rc, has;
  lua_Integer a;
  arrs = (const dl_nd **)lua_newuserdatauv(L, sizeof(dl_nd *) * MAXJOIN, 0);
  views = (dl_nd *)lua_newuserdatauv(L, sizeof(dl_nd) * 1, 0);
  (void)views;
  n = get_list(L, 1, arrs, MAXJOIN);
  a = opt_int(L, 2, "axis", 1, &has);
  (void)has;
  if (stack) {
    /* every array gains an axis of length 1 at position a */
    int nd = arrs[0]->ndim + 1;
    const dl_nd *a0 = arrs[0];
    if (a < 0) a += nd + 1;
    if (a < 1 || a > nd)
      return nd_error(L, "stack: axis %I is out of range (1..%d)", a, nd);
    for (k = 0; k < n; k++) {
      dl_nd *v = nd_new(L);
      int d;
      if (arrs[k]->ndim != a0->ndim ||
          memcmp(arrs[k]->shape, a0->shape,
                 sizeof(int64_t) * (size_t)a0->ndim)) {
        char s1[160], s2[160];
        return nd_error(L, "stack: arrays must have one shape: %s and %s",
                        shape_s(a0, s1, sizeof s1),
                        shape_s(arrs[k], s2, sizeof s2));
      }
      dl_nd_view(v, arrs[k]);
      for (d = nd - 1; d > a - 1; d--) {
        v->shape[d] = v->shape[d - 1];
        v->strides[d] = v->strides[d - 1];
      }
      v->shape[a - 1] = 1;
      v->strides[a - 1] = 0;
      v->ndim = nd;
      arrs[k] = v;
    }
  } else {
    if (a < 0) a += arrs[0]->ndim + 1;
    if (a < 1 || a > arrs[0]->ndim)
      return nd_error(L, "concatenate: axis %I is out of range (1..%d)", a,
                      arrs[0]->ndim);
  }
  ax = (int)a - 1;
  r = nd_new(L);
  if ((rc = dl_nd_concat(r, n, arrs, ax)) != 0) {
    for (k = 1; k < n; k++)
      if (arrs[k]->ndim != arrs[0]->ndim ||
          memcmp(arrs[k]->shape, arrs[0]->shape, sizeof(int64_t) * (size_t)ax) ||
          memcmp(arrs[k]->shape + ax + 1, arrs[0]->shape + ax + 1,
                 sizeof(int64_t) * (size_t)(arrs[0]->ndim - ax - 1)))
        break;
    return nd_fail(L, rc, stack ? "stack" : "concatenate", arrs[0],
                   arrs[k < n ? k : 0]);
  }
  return 1;
}

static int l_concatenate(lua_State *L) { return join(L, 0); }
static int l_stack(lua_State *L) { return join(L, 1); }

static int l_matmul(lua_State *L) {
  dl_nd *a, *b, *r;
  int rc;
  lua_settop(L, 2);
  a = to_nd(L, 1);
  b = to_nd(L, 2);
  r = nd_new(L);
  if ((rc = dl_nd_matmul(r, a, b)) != 0) {
    char s1[160], s2[160];
    return nd_error(L, "matmul: shapes %s and %s do not align (need 1-d or "
                    "2-d operands with a's last dimension equal to b's "
                    "first)", shape_s(a, s1, sizeof s1),
                    shape_s(b, s2, sizeof s2));
  }
  return 1;
}

/* nd._matmul_sum(as, bs): as[1] @ bs[1] + as[2] @ bs[2] + ..., summed by
   dgemm into one array (the chunked matmul's block task). */
static int l_matmul_sum(lua_State *L) {
  const dl_nd **as, **bs;
  dl_nd *r;
  int n, i, rc;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  n = (int)lua_rawlen(L, 1);
  if (n < 1 || (int)lua_rawlen(L, 2) != n)
    return nd_error(L, "matmul: lists of %d and %d blocks (equal lengths, "
                    "at least 1, needed)", n, (int)lua_rawlen(L, 2));
  as = (const dl_nd **)lua_newuserdatauv(L, sizeof(dl_nd *) * 2 * (size_t)n,
                                         0);
  bs = as + n;
  luaL_checkstack(L, 2 * n + 2, "matmul: too many blocks");
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    as[i] = to_nd(L, -1);
    lua_rawgeti(L, 2, i + 1);
    bs[i] = to_nd(L, -1);
  }
  r = nd_new(L);
  if ((rc = dl_nd_matmul_sum(r, n, as, bs)) == DL_ND_ESHAPE) {
    char s1[160], s2[160];
    return nd_error(L, "matmul: the block products do not align or differ "
                    "in shape (first pair %s and %s)",
                    shape_s(as[0], s1, sizeof s1),
                    shape_s(bs[0], s2, sizeof s2));
  }
  if (rc != 0) nd_fail(L, rc, "matmul", NULL, NULL);
  return 1;
}

static int l_solve(lua_State *L) {
  dl_nd *a, *b, *r;
  int rc;
  lua_settop(L, 2);
  a = to_nd(L, 1);
  b = to_nd(L, 2);
  r = nd_new(L);
  if ((rc = dl_nd_solve(r, a, b)) != 0) nd_fail(L, rc, "linalg.solve", a, b);
  return 1;
}

static int l_inv(lua_State *L) {
  dl_nd *a = to_nd(L, 1), *r = nd_new(L);
  int rc;
  if ((rc = dl_nd_inv(r, a)) != 0) nd_fail(L, rc, "linalg.inv", a, NULL);
  return 1;
}

static int l_cholesky(lua_State *L) {
  dl_nd *a = to_nd(L, 1), *r = nd_new(L);
  int rc;
  if ((rc = dl_nd_cholesky(r, a)) != 0)
    nd_fail(L, rc, "linalg.cholesky", a, NULL);
  return 1;
}

static int l_qr(lua_State *L) {
  dl_nd *a = to_nd(L, 1), *q = nd_new(L), *r = nd_new(L);
  int rc;
  if ((rc = dl_nd_qr(q, r, a)) != 0) nd_fail(L, rc, "linalg.qr", a, NULL);
  return 2;
}

static int l_svd(lua_State *L) {
  dl_nd *a = to_nd(L, 1), *u = nd_new(L), *s = nd_new(L), *vt = nd_new(L);
  int rc;
  if ((rc = dl_nd_svd(u, s, vt, a)) != 0) nd_fail(L, rc, "linalg.svd", a, NULL);
  return 3;
}

/* nd.linalg.lu_factor(a) -> lu, piv (LAPACK's packed LU and 1-based
   row interchanges, as SciPy's lu_factor). */
static int l_lu_factor(lua_State *L) {
  dl_nd *a = to_nd(L, 1), *lu = nd_new(L), *piv = nd_new(L);
  int rc;
  if ((rc = dl_nd_lu_factor(lu, piv, a)) != 0)
    nd_fail(L, rc, "linalg.lu_factor", a, NULL);
  return 2;
}

/* nd.linalg.lstsq(a, b [, {rcond =}]) -> x, residuals, rank, s (NumPy's;
   rcond defaults to machine precision times max(m, n)). */
static int l_lstsq(lua_State *L) {
  dl_nd *a, *b, *x, *res, *s;
  int64_t rank = 0;
  double rcond;
  int rc;
  lua_settop(L, 3);
  a = to_nd(L, 1);
  b = to_nd(L, 2);
  rcond = 2.220446049250313e-16 *
          (double)(a->ndim == 2 ? (a->shape[0] > a->shape[1] ? a->shape[0]
                                                             : a->shape[1])
                                : 1);
  if (!lua_isnil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    if (lua_getfield(L, 3, "rcond") != LUA_TNIL) {
      if (!lua_isnumber(L, -1))
        return luaL_argerror(L, 3, "option 'rcond' must be a number");
      rcond = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
  }
  x = nd_new(L);
  res = nd_new(L);
  s = nd_new(L);
  if ((rc = dl_nd_lstsq(x, res, s, &rank, a, b, rcond)) != 0)
    nd_fail(L, rc, "linalg.lstsq", a, b);
  lua_pushinteger(L, (lua_Integer)rank);
  lua_insert(L, -2);
  return 4;
}

/* nd.linalg._lu_apply(lu, piv, c): one blocked-LU step on c (dl_nd.h). */
static int l_lu_apply(lua_State *L) {
  dl_nd *lu = nd_check(L, 1), *piv = nd_check(L, 2), *c = to_nd(L, 3);
  dl_nd *r = nd_new(L);
  int rc;
  if ((rc = dl_nd_lu_apply(r, lu, piv, c)) != 0)
    nd_fail(L, rc, "linalg.lu_apply", lu, c);
  return 1;
}

/* nd.linalg.solve_triangular(a, b [, {lower =, unit_diagonal =}]) */
static int l_solve_triangular(lua_State *L) {
  dl_nd *a, *b, *r;
  int rc, lower = 0, unit = 0;
  lua_settop(L, 3);
  a = to_nd(L, 1);
  b = to_nd(L, 2);
  if (!lua_isnil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "lower");
    lower = lua_toboolean(L, -1);
    lua_getfield(L, 3, "unit_diagonal");
    unit = lua_toboolean(L, -1);
    lua_pop(L, 2);
  }
  r = nd_new(L);
  if ((rc = dl_nd_solve_triangular(r, a, b, lower, unit)) != 0)
    nd_fail(L, rc, "linalg.solve_triangular", a, b);
  return 1;
}

/* nd.blas_threads([n]) -> the number before (n sets it). */
static int l_blas_threads(lua_State *L) {
  lua_pushinteger(L, dl_nd_blas_threads((int)luaL_optinteger(L, 1, 0)));
  return 1;
}

/* ------------------------------------------------------------- random */

/* Number field k of the table at i, or def. */
static double opt_num(lua_State *L, int i, const char *k, double def) {
  double v = def;
  lua_getfield(L, i, k);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_argerror(L, i, lua_pushfstring(L, "option '%s' must be a number",
                    k));
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* nd._random_block(kind, seed, gshape, offset, shape, p1, p2): the block
   at 1-based offset of the global array (see dl_nd_random). */
static int l_random_block(lua_State *L) {
  static const char *const kinds[] = {"uniform", "normal", "integers", NULL};
  int kind = luaL_checkoption(L, 1, NULL, kinds), nd, n2, n3, k, rc;
  lua_Integer seed = luaL_checkinteger(L, 2);
  int64_t gshape[DL_ND_MAXDIM], off[DL_ND_MAXDIM], shape[DL_ND_MAXDIM];
  dl_nd *r;
  nd = get_shape(L, 3, gshape);
  n2 = get_shape(L, 4, off);
  n3 = get_shape(L, 5, shape);
  if (nd != n2 || nd != n3) return nd_error(L, "random block: ranks differ");
  for (k = 0; k < nd; k++) off[k] -= 1;
  r = nd_new(L);
  rc = dl_nd_random(r, kind, (uint64_t)seed, nd, gshape, off, shape,
                    luaL_checknumber(L, 6), luaL_checknumber(L, 7));
  if (rc) nd_fail(L, rc, "random", NULL, NULL);
  return 1;
}

static int random_kind(lua_State *L, int kind) {
  int64_t shape[DL_ND_MAXDIM], off[DL_ND_MAXDIM] = {0};
  lua_Integer seed;
  int nd, rc, ok, dt;
  double p1, p2;
  dl_nd *r;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "shape");
  if (lua_isnil(L, -1)) luaL_argerror(L, 1, "option 'shape' is required");
  nd = get_shape(L, lua_gettop(L), shape);
  lua_getfield(L, 1, "seed");
  seed = lua_tointegerx(L, -1, &ok);
  if (!ok) luaL_argerror(L, 1, "option 'seed' (an integer) is required");
  if (kind == DL_RND_UNIFORM) {
    p1 = opt_num(L, 1, "low", 0);
    p2 = opt_num(L, 1, "high", 1);
  } else if (kind == DL_RND_NORMAL) {
    p1 = opt_num(L, 1, "mean", 0);
    p2 = opt_num(L, 1, "sd", 1);
  } else {
    p1 = opt_num(L, 1, "low", 0);
    p2 = opt_num(L, 1, "high", 0);
    if (p1 != floor(p1) || p2 != floor(p2) || p2 < p1)
      luaL_argerror(L, 1, "integers needs integer low <= high (inclusive)");
  }
  dt = opt_dtype(L, 1, kind == DL_RND_INTEGERS ? DL_I64 : DL_F64);
  r = nd_new(L);
  if ((rc = dl_nd_random(r, kind, (uint64_t)seed, nd, shape, off, shape, p1,
                         p2)) != 0)
    nd_fail(L, rc, "random", NULL, NULL);
  if (dt != (int)r->dtype) { /* drawn in float64 (or int64), then converted */
    dl_nd *c = nd_new(L);
    if ((rc = dl_nd_astype(c, r, (dl_dtype)dt)) != 0)
      nd_fail(L, rc, "random", r, NULL);
  }
  return 1;
}

static int l_uniform(lua_State *L) { return random_kind(L, DL_RND_UNIFORM); }
static int l_normal(lua_State *L) { return random_kind(L, DL_RND_NORMAL); }
static int l_integers(lua_State *L) { return random_kind(L, DL_RND_INTEGERS); }

/* ------------------------------------------------------- fused programs */

/* Read a random-block descriptor {kind, seed, gshape, offset, shape, p1,
   p2} (offset 1-based) at i into g.  Returns the block's element count. */
static int64_t get_gen(lua_State *L, int i, dl_nd_gen *g) {
  static const char *const kinds[] = {"uniform", "normal", NULL};
  int64_t off[DL_ND_MAXDIM];
  int n2, n3, k;
  i = lua_absindex(L, i);
  lua_rawgeti(L, i, 1);
  g->kind = luaL_checkoption(L, -1, NULL, kinds);
  lua_rawgeti(L, i, 2);
  g->seed = (uint64_t)luaL_checkinteger(L, -1);
  lua_rawgeti(L, i, 3);
  g->ndim = get_shape(L, lua_gettop(L), g->gshape);
  lua_rawgeti(L, i, 4);
  n2 = get_shape(L, lua_gettop(L), off);
  lua_rawgeti(L, i, 5);
  n3 = get_shape(L, lua_gettop(L), g->shape);
  lua_rawgeti(L, i, 6);
  g->p1 = luaL_checknumber(L, -1);
  lua_rawgeti(L, i, 7);
  g->p2 = luaL_checknumber(L, -1);
  lua_pop(L, 7);
  if (n2 != g->ndim || n3 != g->ndim)
    nd_error(L, "fused: random block ranks differ");
  for (k = 0; k < g->ndim; k++) {
    g->off[k] = off[k] - 1;
    if (g->off[k] < 0 || g->off[k] + g->shape[k] > g->gshape[k])
      nd_error(L, "fused: random block outside its array");
  }
  {
    int64_t n = 1;
    for (k = 0; k < g->ndim; k++) n *= g->shape[k];
    return n;
  }
}

/* nd._fused(prog, consts, reduce, in1, in2, ...): run a fused elementwise
   program (see dl_nd.h) over inputs of one shape: ndarrays (converted to
   contiguous float64) or random-block descriptors {kind, seed, gshape,
   offset, shape, p1, p2}.  prog is a flat list of code, arg pairs; consts
   a list of numbers.  reduce "sum" returns the sum as a number; nil
   returns the float64 array. */
static int l_fused(lua_State *L) {
  dl_fz_ins prog[256];
  double consts[64];
  dl_fz_src ins[32];
  dl_nd_gen *gens;
  int64_t shape[DL_ND_MAXDIM], n = -1;
  int np, nk, nin = lua_gettop(L) - 3, k, rc, ndim = 0;
  int want_sum = !lua_isnil(L, 3);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  np = (int)lua_rawlen(L, 1) / 2;
  nk = (int)lua_rawlen(L, 2);
  if (np > 256 || nk > 64 || nin > 32 || nin < 1)
    return nd_error(L, "fused: program too large");
  for (k = 0; k < np; k++) {
    lua_rawgeti(L, 1, 2 * k + 1);
    lua_rawgeti(L, 1, 2 * k + 2);
    prog[k].code = (int)lua_tointeger(L, -2);
    prog[k].arg = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
    if ((prog[k].code == DL_FZ_IN && (prog[k].arg < 0 || prog[k].arg >= nin)) ||
        (prog[k].code == DL_FZ_K && (prog[k].arg < 0 || prog[k].arg >= nk)))
      return nd_error(L, "fused: bad operand in the program");
  }
  for (k = 0; k < nk; k++) {
    lua_rawgeti(L, 2, k + 1);
    consts[k] = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  gens = (dl_nd_gen *)lua_newuserdatauv(L, sizeof(dl_nd_gen) * (size_t)nin,
                                        0);
  /* every input has the first input's shape */
  for (k = 0; k < nin; k++) {
    int64_t kn;
    int kd;
    const int64_t *ks;
    dl_nd *a = nd_test(L, k + 4);
    if (a) {
      if (a->dtype == DL_F64 && dl_nd_contiguous(a)) {
        ins[k].p = (const double *)a->data;
      } else {
        dl_nd *c = nd_new(L);
        if ((rc = dl_nd_astype(c, a, DL_F64)) != 0)
          nd_fail(L, rc, "fused", a, NULL);
        ins[k].p = (const double *)c->data;
      }
      ins[k].gen = NULL;
      kn = dl_nd_size(a);
      kd = a->ndim;
      ks = a->shape;
    } else {
      luaL_checktype(L, k + 4, LUA_TTABLE);
      kn = get_gen(L, k + 4, &gens[k]);
      ins[k].p = NULL;
      ins[k].gen = &gens[k];
      kd = gens[k].ndim;
      ks = gens[k].shape;
    }
    if (n < 0) {
      n = kn;
      ndim = kd;
      memcpy(shape, ks, sizeof(int64_t) * (size_t)kd);
    } else if (kd != ndim || memcmp(ks, shape, sizeof(int64_t) * (size_t)kd)) {
      char s1[160], s2[160];
      dl_nd_shape_str(ndim, shape, s1, sizeof s1);
      dl_nd_shape_str(kd, ks, s2, sizeof s2);
      return nd_error(L, "fused: inputs of shapes %s and %s", s1, s2);
    }
  }
  if (want_sum) {
    double s;
    if ((rc = dl_nd_fused_sum(&s, n, prog, np, ins, consts)) != 0)
      nd_fail(L, rc, "fused", NULL, NULL);
    lua_pushnumber(L, s);
  } else {
    dl_nd *r = nd_alloc(L, DL_F64, ndim, shape);
    if ((rc = dl_nd_fused((double *)r->data, n, prog, np, ins, consts)) != 0)
      nd_fail(L, rc, "fused", NULL, NULL);
  }
  return 1;
}

/* ------------------------------------------------------------ printing */

typedef struct fmtctx {
  luaL_Buffer *b;
  const dl_nd *a;
  int edge;     /* elements shown at each end of an elided axis; 0: all */
  int width;    /* common field width */
  int prec;     /* fraction digits for floats (max over shown values) */
  int sci;      /* scientific notation */
  int allint;   /* every float shown is integral */
  int col;      /* current column */
  int sprec;    /* mantissa digits scientific notation needs */
} fmtctx;

/* Digits after the point needed to show x to 8 places. */
static int frac_digits(double x) {
  char s[64];
  int n, d;
  snprintf(s, sizeof s, "%.8f", x);
  n = (int)strlen(s);
  d = 8;
  while (d > 0 && s[n - 1] == '0') {
    n--;
    d--;
  }
  return d;
}

static int fmt_one(const fmtctx *c, const char *p, char *out, size_t n) {
  if (c->a->dtype == DL_I64)
    return snprintf(out, n, "%lld", (long long)*(const int64_t *)p);
  if (c->a->dtype == DL_BOOL)
    return snprintf(out, n, "%s", *(const uint8_t *)p ? "true" : "false");
  {
    double x = *(const double *)p;
    if (x != x) return snprintf(out, n, "nan");
    if (isinf(x)) return snprintf(out, n, x > 0 ? "inf" : "-inf");
    if (c->sci && c->prec == 0) { /* NumPy writes "1.e-07" */
      char m[64];
      snprintf(m, sizeof m, "%.0e", x);
      return snprintf(out, n, "%.*s.%s", (int)(strchr(m, 'e') - m), m,
                      strchr(m, 'e'));
    }
    if (c->sci) return snprintf(out, n, "%.*e", c->prec, x);
    if (c->allint) return snprintf(out, n, "%.0f.", x);
    {
      int d = frac_digits(x), len;
      len = snprintf(out, n, "%.*f", d, x);
      if (d == 0 && len + 1 < (int)n) out[len++] = '.', out[len] = '\0';
      while (d < c->prec && len + 1 < (int)n) { /* pad like NumPy */
        out[len++] = ' ';
        out[len] = '\0';
        d++;
      }
      return len;
    }
  }
}

/* Visit the shown elements: fn(c, p) for each. */
static void visit(fmtctx *c, int d, const char *p,
                  void (*fn)(fmtctx *, const char *)) {
  int64_t i, n = c->a->shape[d];
  size_t isz = dl_nd_itemsize(c->a->dtype);
  for (i = 0; i < n; i++) {
    if (c->edge && n > 2 * c->edge && i == c->edge) i = n - c->edge;
    if (d + 1 == c->a->ndim) fn(c, p + i * c->a->strides[d] * (int64_t)isz);
    else visit(c, d + 1, p + i * c->a->strides[d] * (int64_t)isz, fn);
  }
}

static void measure(fmtctx *c, const char *p) {
  if (c->a->dtype == DL_F64) {
    double x = *(const double *)p;
    if (isfinite(x)) {
      int d = frac_digits(x);
      if (x != floor(x)) c->allint = 0;
      if (d > c->prec) c->prec = d;
      if (x != 0 && (fabs(x) >= 1e16 || fabs(x) < 1e-4)) c->sci = 1;
      {
        char s[64], *e;
        int d;
        snprintf(s, sizeof s, "%.8e", x);
        e = strchr(s, 'e');
        for (d = 8; d > 0 && e[-1] == '0'; d--) e--;
        if (d > c->sprec) c->sprec = d;
      }
    }
  }
}

static void widen(fmtctx *c, const char *p) {
  char s[64];
  int n = fmt_one(c, p, s, sizeof s);
  if (n > c->width) c->width = n;
}

static void emit(fmtctx *c, int d, const char *p, int indent) {
  int64_t i, n = c->a->shape[d];
  size_t isz = dl_nd_itemsize(c->a->dtype);
  int k;
  luaL_addchar(c->b, '[');
  c->col++;
  for (i = 0; i < n; i++) {
    const char *q = p + i * c->a->strides[d] * (int64_t)isz;
    if (i > 0) {
      if (d + 1 == c->a->ndim) {
        luaL_addchar(c->b, ',');
        c->col++;
        if (c->col + c->width + 2 > 75) {
          luaL_addchar(c->b, '\n');
          for (k = 0; k < indent + d + 1; k++) luaL_addchar(c->b, ' ');
          c->col = indent + d + 1;
        } else {
          luaL_addchar(c->b, ' ');
          c->col++;
        }
      } else {
        luaL_addchar(c->b, ',');
        for (k = 0; k < c->a->ndim - d - 1; k++) luaL_addchar(c->b, '\n');
        for (k = 0; k < indent + d + 1; k++) luaL_addchar(c->b, ' ');
        c->col = indent + d + 1;
      }
    }
    if (c->edge && n > 2 * c->edge && i == c->edge) {
      luaL_addstring(c->b, "...");
      c->col += 3;
      i = n - c->edge - 1;
      continue;
    }
    if (d + 1 == c->a->ndim) {
      char s[64];
      int len = fmt_one(c, q, s, sizeof s);
      for (k = len; k < c->width; k++) luaL_addchar(c->b, ' ');
      luaL_addstring(c->b, s);
      c->col += c->width > len ? c->width : len;
    } else {
      emit(c, d + 1, q, indent);
    }
  }
  luaL_addchar(c->b, ']');
  c->col++;
}

/* tostring(a): like NumPy's repr, "array([[1., 2.],\n       [3., 4.]])",
   eliding the middle of axes (3 at each end) above 1000 elements. */
static int nd_tostring(lua_State *L) {
  dl_nd *a = nd_check(L, 1);
  luaL_Buffer b;
  fmtctx c;
  int64_t k;
  memset(&c, 0, sizeof c);
  c.a = a;
  c.allint = 1;
  c.edge = dl_nd_size(a) > 1000 ? 3 : 0;
  for (k = 0; k < a->ndim; k++)
    if (a->shape[k] == 0) {
      char s[160];
      lua_pushfstring(L, "array([], shape=%s, dtype=%s)",
                      shape_s(a, s, sizeof s), dl_nd_dtype_name(a->dtype));
      return 1;
    }
  if (a->dtype == DL_F32) { /* printed from float64, dtype named */
    dl_nd *w = nd_new(L);
    const char *s;
    size_t len;
    int rc = dl_nd_astype(w, a, DL_F64);
    if (rc) nd_fail(L, rc, "tostring", a, NULL);
    lua_pushcfunction(L, nd_tostring);
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    s = lua_tolstring(L, -1, &len);
    lua_pushfstring(L, "%s, dtype=float32)", lua_pushlstring(L, s, len - 1));
    return 1;
  }
  if (a->ndim == 0) {
    char s[64];
    measure(&c, a->data);
    fmt_one(&c, a->data, s, sizeof s);
    lua_pushfstring(L, "array(%s)", s);
    return 1;
  }
  visit(&c, 0, a->data, measure);
  if (c.sci) {
    c.prec = c.sprec;
    c.allint = 0;
  }
  if (c.allint) c.prec = 0;
  visit(&c, 0, a->data, widen);
  luaL_buffinit(L, &b);
  c.b = &b;
  luaL_addstring(&b, "array(");
  c.col = 6;
  emit(&c, 0, a->data, 6);
  luaL_addchar(&b, ')');
  luaL_pushresult(&b);
  return 1;
}

/* ---------------------------------------------------------- properties */

static void push_shape(lua_State *L, const dl_nd *a) {
  int k;
  lua_createtable(L, a->ndim, 0);
  for (k = 0; k < a->ndim; k++) {
    lua_pushinteger(L, (lua_Integer)a->shape[k]);
    lua_rawseti(L, -2, k + 1);
  }
}

/* a[i]: element (1-d) or a view of the i-th sub-array; a.shape, a.ndim,
   a.size, a.dtype, a.T; else the methods. */
static int nd_index(lua_State *L) {
  dl_nd *a = nd_check(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    if (a->ndim == 0) return nd_error(L, "cannot index a 0-d array");
    lua_settop(L, 2);
    lua_pushcfunction(L, m_get);
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
  }
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *k = lua_tostring(L, 2);
    if (strcmp(k, "shape") == 0) { push_shape(L, a); return 1; }
    if (strcmp(k, "ndim") == 0) { lua_pushinteger(L, a->ndim); return 1; }
    if (strcmp(k, "size") == 0) {
      lua_pushinteger(L, (lua_Integer)dl_nd_size(a));
      return 1;
    }
    if (strcmp(k, "dtype") == 0) {
      lua_pushstring(L, dl_nd_dtype_name(a->dtype));
      return 1;
    }
    if (strcmp(k, "T") == 0) {
      lua_settop(L, 1);
      lua_pushcfunction(L, m_transpose);
      lua_insert(L, 1);
      lua_call(L, 1, 1);
      return 1;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &meta_key);
    lua_getfield(L, -1, k);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

static int nd_newindex(lua_State *L) {
  nd_check(L, 1);
  if (lua_type(L, 2) != LUA_TNUMBER)
    return nd_error(L, "cannot set field '%s' of an ndarray",
                    luaL_tolstring(L, 2, NULL));
  lua_pushcfunction(L, m_set);
  lua_insert(L, 1);
  lua_call(L, 3, 0);
  return 0;
}

static int nd_len(lua_State *L) {
  dl_nd *a = nd_check(L, 1);
  if (a->ndim == 0) return nd_error(L, "len() of a 0-d array");
  lua_pushinteger(L, (lua_Integer)a->shape[0]);
  return 1;
}

/* ---------------------------------------------------------------- codec */

/* The codec's hooks (dl_nd_encode / dl_nd_decode).  Never raise, except
   for memory in lua_newuserdatauv. */
static int nd_encode(lua_State *L, int idx, dl_buf *out, void *ctx) {
  dl_nd *a = (dl_nd *)lua_touserdata(L, idx);
  (void)ctx;
  if (a == NULL || a->buf == NULL) return -1;
  return dl_nd_encode(out, a) ? -1 : 0;
}

/* With a lender (the worker's inputs), a big body inside the lent bytes
   becomes a read-only view of them instead of a copy. */
static int nd_decode(lua_State *L, const char *p, size_t n, void *ctx) {
  const dl_codec_lender *ln = (const dl_codec_lender *)ctx;
  dl_nd *a;
  int rc;
  a = nd_new(L);
  if (ln && p >= ln->base && n <= ln->len &&
      (size_t)(p - ln->base) <= ln->len - n)
    rc = dl_nd_decode_borrow(a, p, n, ln->hold, ln->drop, ln->owner);
  else
    rc = dl_nd_decode(a, p, n);
  if (rc) {
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* nd.save(path, a): write a NumPy .npy file.  Returns true, or nil and a
   message when the file cannot be written. */
static int l_save(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  dl_nd *a = nd_check(L, 2);
  dl_buf b;
  FILE *f;
  int ok;
  dl_buf_init(&b);
  if (dl_nd_npy_write(&b, a)) {
    dl_buf_free(&b);
    return luaL_error(L, "not enough memory");
  }
  f = fopen(path, "wb");
  ok = f != NULL && fwrite(b.p, 1, b.len, f) == b.len;
  if (f != NULL && fclose(f) != 0) ok = 0;
  dl_buf_free(&b);
  if (!ok) return luaL_fileresult(L, 0, path);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---------------------------------------------------------------- zarr */

static void push_list(lua_State *L, int n, const int64_t *v) {
  int k;
  lua_createtable(L, n, 0);
  for (k = 0; k < n; k++) {
    lua_pushinteger(L, (lua_Integer)v[k]);
    lua_rawseti(L, -2, k + 1);
  }
}

/* nd._zarr_meta(json) -> {shape =, chunks =, dtype =, compressor =
   "zlib" | nil, level =, fill_value =}, or nil and a message. */
static int l_zarr_meta(lua_State *L) {
  size_t n;
  const char *p = luaL_checklstring(L, 1, &n);
  char err[256];
  dl_zarr_meta m;
  if (dl_zarr_meta_parse(&m, p, n, err, sizeof err) != 0) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_createtable(L, 0, 6);
  push_list(L, m.ndim, m.shape);
  lua_setfield(L, -2, "shape");
  push_list(L, m.ndim, m.chunks);
  lua_setfield(L, -2, "chunks");
  lua_pushstring(L, dl_nd_dtype_name(m.dtype));
  lua_setfield(L, -2, "dtype");
  if (m.codec != DL_ZARR_RAW) {
    lua_pushstring(L, m.codec == DL_ZARR_ZLIB ? "zlib" : "blosc");
    lua_setfield(L, -2, "compressor");
    lua_pushinteger(L, m.level);
    lua_setfield(L, -2, "level");
  }
  if (m.codec == DL_ZARR_BLOSC) {
    lua_pushstring(L, m.cname);
    lua_setfield(L, -2, "cname");
    lua_pushinteger(L, m.shuffle);
    lua_setfield(L, -2, "shuffle");
    lua_pushinteger(L, (lua_Integer)m.blocksize);
    lua_setfield(L, -2, "blocksize");
  }
  if (m.has_fill) {
    lua_pushnumber(L, m.fill);
    lua_setfield(L, -2, "fill_value");
  }
  return 1;
}

/* Integer list field k of the table at 1 into v; returns its length. */
static int zget_list(lua_State *L, const char *k, int64_t *v) {
  int n;
  lua_getfield(L, 1, k);
  n = get_shape(L, lua_gettop(L), v);
  lua_pop(L, 1);
  return n;
}

/* nd._zarr_meta_json{shape =, chunks =, dtype =, compressor =, level =,
   cname =, shuffle =, blocksize =, fill_value =} -> the .zarray text
   (the Blosc fields checked by array.lua). */
static int l_zarr_meta_json(lua_State *L) {
  dl_zarr_meta m;
  dl_buf b;
  luaL_checktype(L, 1, LUA_TTABLE);
  memset(&m, 0, sizeof m);
  m.ndim = zget_list(L, "shape", m.shape);
  if (zget_list(L, "chunks", m.chunks) != m.ndim)
    return luaL_argerror(L, 1, "chunks and shape differ in length");
  lua_getfield(L, 1, "dtype");
  m.dtype = (dl_dtype)parse_dtype(L, luaL_checkstring(L, -1), 1);
  lua_getfield(L, 1, "compressor");
  if (lua_isstring(L, -1))
    m.codec = strcmp(lua_tostring(L, -1), "zlib") == 0 ? DL_ZARR_ZLIB
            : strcmp(lua_tostring(L, -1), "blosc") == 0 ? DL_ZARR_BLOSC
            : DL_ZARR_RAW;
  lua_getfield(L, 1, "level");
  m.level = (int)luaL_optinteger(L, -1, -1);
  lua_getfield(L, 1, "cname");
  snprintf(m.cname, sizeof m.cname, "%s", luaL_optstring(L, -1, "lz4"));
  lua_getfield(L, 1, "shuffle");
  m.shuffle = (int)luaL_optinteger(L, -1, 1);
  lua_getfield(L, 1, "blocksize");
  m.blocksize = (int64_t)luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "fill_value");
  m.has_fill = !lua_isnil(L, -1);
  m.fill = lua_isboolean(L, -1) ? lua_toboolean(L, -1) : lua_tonumber(L, -1);
  dl_buf_init(&b);
  dl_zarr_meta_write(&b, &m);
  lua_pushlstring(L, b.p, b.len);
  dl_buf_free(&b);
  return 1;
}

/* Push the JSON value v as Lua (objects and arrays as tables, null as
   nil).  v was checked by dl_zarr_attrs_check (bounded depth). */
static void push_json(lua_State *L, const cJSON *v) {
  const cJSON *c;
  lua_Integer i = 1;
  luaL_checkstack(L, 3, "zarr: attrs too deep");
  if (cJSON_IsBool(v)) lua_pushboolean(L, cJSON_IsTrue(v));
  else if (cJSON_IsNumber(v)) {
    double d = v->valuedouble;
    if (d == floor(d) && fabs(d) < 9007199254740992.0)
      lua_pushinteger(L, (lua_Integer)d);
    else
      lua_pushnumber(L, d);
  } else if (cJSON_IsString(v)) lua_pushstring(L, v->valuestring);
  else if (cJSON_IsArray(v)) {
    lua_createtable(L, cJSON_GetArraySize(v), 0);
    cJSON_ArrayForEach(c, v) {
      push_json(L, c);
      lua_rawseti(L, -2, i++);
    }
  } else if (cJSON_IsObject(v)) {
    lua_createtable(L, 0, cJSON_GetArraySize(v));
    cJSON_ArrayForEach(c, v) {
      push_json(L, c);
      lua_setfield(L, -2, c->string);
    }
  } else lua_pushnil(L);
}

/* nd._zarr_blosc() -> nil when libblosc is loaded, else why not. */
static int l_zarr_blosc(lua_State *L) {
  const char *why = dl_zarr_blosc_error();
  if (why == NULL) lua_pushnil(L);
  else lua_pushstring(L, why);
  return 1;
}

/* nd._zarr_attrs(text) -> the `.zattrs` object as a table, or nil and a
   message. */
static int l_zarr_attrs(lua_State *L) {
  size_t n;
  const char *p = luaL_checklstring(L, 1, &n);
  char err[256];
  cJSON *root;
  if (dl_zarr_attrs_check(p, n, err, sizeof err) != 0) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  root = cJSON_ParseWithLength(p, n);
  if (root == NULL) return luaL_error(L, "not enough memory");
  push_json(L, root); /* raises only for memory: root leaks then */
  cJSON_Delete(root);
  return 1;
}

/* The Lua value at i as a new cJSON item, or NULL with a message in err
   (path names where). */
static cJSON *to_json(lua_State *L, int i, int depth, char *err,
                      size_t errlen, const char *path) {
  int t = lua_type(L, i);
  cJSON *o;
  i = lua_absindex(L, i);
  if (t == LUA_TBOOLEAN) return cJSON_CreateBool(lua_toboolean(L, i));
  if (t == LUA_TSTRING) return cJSON_CreateString(lua_tostring(L, i));
  if (t == LUA_TNUMBER) {
    double d = lua_tonumber(L, i);
    if (!isfinite(d)) {
      snprintf(err, errlen, "%s is %g (JSON has no NaN or infinity)", path,
               d);
      return NULL;
    }
    return cJSON_CreateNumber(d);
  }
  if (t != LUA_TTABLE) {
    snprintf(err, errlen, "%s is a %s (JSON takes tables, strings, "
             "numbers and booleans)", path, luaL_typename(L, i));
    return NULL;
  }
  if (depth >= DL_ZARR_ATTRS_DEPTH) {
    snprintf(err, errlen, "%s is nested more than %d deep", path,
             DL_ZARR_ATTRS_DEPTH);
    return NULL;
  }
  luaL_checkstack(L, 4, "zarr: attrs too deep");
  if (lua_rawlen(L, i) > 0) { /* a list: 1..n */
    lua_Integer k, n = (lua_Integer)lua_rawlen(L, i);
    o = cJSON_CreateArray();
    for (k = 1; o && k <= n; k++) {
      char sub[200];
      cJSON *c;
      snprintf(sub, sizeof sub, "%.150s[%lld]", path, (long long)k);
      lua_rawgeti(L, i, k);
      c = to_json(L, -1, depth + 1, err, errlen, sub);
      lua_pop(L, 1);
      if (c == NULL) {
        cJSON_Delete(o);
        return NULL;
      }
      cJSON_AddItemToArray(o, c);
    }
    return o;
  }
  o = cJSON_CreateObject();
  lua_pushnil(L);
  while (o && lua_next(L, i)) {
    char sub[200];
    cJSON *c;
    if (lua_type(L, -2) != LUA_TSTRING) {
      snprintf(err, errlen, "%s has a key that is not a string (a %s)",
               path, luaL_typename(L, -2));
      lua_pop(L, 2);
      cJSON_Delete(o);
      return NULL;
    }
    snprintf(sub, sizeof sub, "%.100s.%.90s", path, lua_tostring(L, -2));
    c = to_json(L, -1, depth + 1, err, errlen, sub);
    if (c == NULL) {
      lua_pop(L, 2);
      cJSON_Delete(o);
      return NULL;
    }
    cJSON_AddItemToObject(o, lua_tostring(L, -2), c);
    lua_pop(L, 1);
  }
  return o;
}

/* nd._zarr_attrs_json(t) -> the `.zattrs` text of table t, or nil and a
   message naming the value JSON cannot hold. */
static int l_zarr_attrs_json(lua_State *L) {
  char err[300];
  cJSON *o;
  char *text;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_rawlen(L, 1) > 0) {
    luaL_pushfail(L);
    lua_pushliteral(L, "attrs must be a table of names, not a list");
    return 2;
  }
  o = to_json(L, 1, 0, err, sizeof err, "attrs");
  if (o == NULL) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  text = cJSON_Print(o);
  cJSON_Delete(o);
  if (text == NULL) return luaL_error(L, "not enough memory");
  lua_pushstring(L, text);
  cJSON_free(text);
  return 1;
}

static void meta_arg(lua_State *L, int i, dl_zarr_meta *m) {
  size_t n;
  const char *p = luaL_checklstring(L, i, &n);
  char err[256];
  if (dl_zarr_meta_parse(m, p, n, err, sizeof err) != 0)
    nd_error(L, "zarr: .zarray: %s", err);
}

/* nd._zarr_decode(bytes, zarray_json) -> the chunk as an ndarray of the
   chunk shape (an error names what is wrong with the bytes). */
static int l_zarr_decode(lua_State *L) {
  size_t n;
  const char *p = luaL_checklstring(L, 1, &n);
  char err[256];
  dl_zarr_meta m;
  dl_nd *r;
  meta_arg(L, 2, &m);
  r = nd_new(L);
  if (m.codec == DL_ZARR_BLOSC && dl_zarr_blosc_error() != NULL)
    return nd_error(L, "zarr: %s", dl_zarr_blosc_error());
  if (dl_zarr_chunk_decode(r, &m, p, n, err, sizeof err) != 0)
    return nd_error(L, "zarr: %s", err);
  return 1;
}

/* nd._zarr_encode(block, zarray_json) -> the bytes of its chunk file. */
static int l_zarr_encode(lua_State *L) {
  dl_nd *a = nd_check(L, 1);
  dl_zarr_meta m;
  dl_buf b;
  int rc;
  meta_arg(L, 2, &m);
  if (m.codec == DL_ZARR_BLOSC && dl_zarr_blosc_error() != NULL)
    return nd_error(L, "zarr: %s", dl_zarr_blosc_error());
  if (a->dtype != m.dtype) {
    dl_nd *c = nd_new(L);
    if ((rc = dl_nd_astype(c, a, m.dtype)) != 0)
      nd_fail(L, rc, "zarr", a, NULL);
    a = c;
  }
  dl_buf_init(&b);
  if ((rc = dl_zarr_chunk_encode(&b, &m, a)) != 0) {
    dl_buf_free(&b);
    return nd_fail(L, rc, "zarr: chunk", a, NULL);
  }
  lua_pushlstring(L, b.p, b.len);
  dl_buf_free(&b);
  return 1;
}

/* nd.load(path) -> ndarray from a .npy file; nil and a message when the
   file cannot be read; an error naming the problem for a bad file. */
static int l_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char err[300];
  FILE *f = fopen(path, "rb");
  luaL_Buffer lb;
  size_t n;
  const char *p;
  dl_nd *a;
  int rc;
  if (f == NULL) return luaL_fileresult(L, 0, path);
  luaL_buffinit(L, &lb);
  for (;;) {
    char *q = luaL_prepbuffer(&lb);
    size_t got = fread(q, 1, LUAL_BUFFERSIZE, f);
    luaL_addsize(&lb, got);
    if (got < LUAL_BUFFERSIZE) break;
  }
  fclose(f);
  luaL_pushresult(&lb);
  p = lua_tolstring(L, -1, &n);
  a = nd_new(L);
  if ((rc = dl_nd_npy_read(a, p, n, err, sizeof err)) != 0) {
    if (rc == DL_ND_ENOMEM) return luaL_error(L, "not enough memory");
    return nd_error(L, "load: %s: %s", path, err);
  }
  return 1;
}

/* nd.tobytes(a) / nd.frombytes(s): the codec's form, for tests. */
static int l_tobytes(lua_State *L) {
  dl_buf b;
  nd_check(L, 1);
  dl_buf_init(&b);
  if (nd_encode(L, 1, &b, NULL)) {
    dl_buf_free(&b);
    return luaL_error(L, "not enough memory");
  }
  lua_pushlstring(L, b.p, b.len);
  dl_buf_free(&b);
  return 1;
}

static int l_frombytes(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  if (nd_decode(L, s, n, NULL))
    return nd_error(L, "frombytes: not an encoded ndarray (%d bytes)",
                    (int)n);
  return 1;
}

/* ------------------------------------------------------------ tables */

static const luaL_Reg methods[] = {
  {"get", m_get}, {"set", m_set}, {"slice", m_slice},
  {"transpose", m_transpose}, {"reshape", m_reshape}, {"copy", m_copy},
  {"astype", m_astype}, {"assign", m_assign}, {"flatten", m_flatten}, {"totable", m_totable},
  {"item", m_item},
  {"sum", m_sum}, {"prod", m_prod}, {"min", m_min}, {"max", m_max},
  {"mean", m_mean}, {"var", m_var}, {"std", m_std}, {"argmin", m_argmin},
  {"argmax", m_argmax}, {"any", m_any}, {"all", m_all},
  {"cumsum", m_cumsum},
  {"lt", l_lt}, {"le", l_le}, {"gt", l_gt}, {"ge", l_ge}, {"eq", l_eq},
  {"ne", l_ne}, {"matmul", l_matmul}, {"dot", l_matmul},
  {"abs", l_abs}, {"sign", l_sign}, {"floor", nd_floor}, {"ceil", l_ceil},
  {"round", l_round}, {"sqrt", l_sqrt}, {"exp", l_exp}, {"log", l_log},
  {"log10", l_log10}, {"log2", l_log2}, {"sin", l_sin}, {"cos", l_cos},
  {"tan", l_tan}, {"arcsin", l_asin}, {"arccos", l_acos},
  {"arctan", l_atan}, {"sinh", l_sinh}, {"cosh", l_cosh},
  {"tanh", l_tanh}, {"expm1", l_expm1}, {"log1p", l_log1p},
  {"isnan", l_isnan}, {"isinf", l_isinf}, {"isfinite", l_isfinite},
  {"maximum", l_maximum}, {"minimum", l_minimum},
  {NULL, NULL}};

static const luaL_Reg metamethods[] = {
  {"__index", nd_index}, {"__newindex", nd_newindex}, {"__len", nd_len},
  {"__tostring", nd_tostring}, {"__gc", nd_gc},
  {"__add", l_add}, {"__sub", l_sub}, {"__mul", l_mul}, {"__div", l_div},
  {"__idiv", l_idiv}, {"__mod", l_mod}, {"__pow", l_pow}, {"__unm", l_unm},
  {"__band", l_band}, {"__bor", l_bor}, {"__bxor", l_bxor},
  {"__bnot", l_bnot},
  {NULL, NULL}};

static const luaL_Reg funcs[] = {
  {"from_table", l_from_table}, {"array", l_from_table},
  {"zeros", l_zeros}, {"ones", l_ones}, {"full", l_full},
  {"arange", l_arange}, {"linspace", l_linspace}, {"eye", l_eye},
  {"where", l_where}, {"concatenate", l_concatenate}, {"stack", l_stack},
  {"matmul", l_matmul}, {"maximum", l_maximum}, {"minimum", l_minimum},
  {"atan2", l_atan2}, {"add", l_add}, {"sub", l_sub}, {"mul", l_mul},
  {"div", l_div},
  {"abs", l_abs}, {"sign", l_sign}, {"floor", nd_floor}, {"ceil", l_ceil},
  {"round", l_round}, {"sqrt", l_sqrt}, {"exp", l_exp}, {"log", l_log},
  {"log10", l_log10}, {"log2", l_log2}, {"sin", l_sin}, {"cos", l_cos},
  {"tan", l_tan}, {"arcsin", l_asin}, {"arccos", l_acos},
  {"arctan", l_atan}, {"sinh", l_sinh}, {"cosh", l_cosh},
  {"tanh", l_tanh}, {"expm1", l_expm1}, {"log1p", l_log1p},
  {"isnan", l_isnan}, {"isinf", l_isinf}, {"isfinite", l_isfinite},
  {"sum", m_sum}, {"prod", m_prod}, {"min", m_min}, {"max", m_max},
  {"mean", m_mean}, {"var", m_var}, {"std", m_std}, {"argmin", m_argmin},
  {"argmax", m_argmax}, {"any", m_any}, {"all", m_all},
  {"cumsum", m_cumsum}, {"transpose", m_transpose}, {"reshape", m_reshape},
  {"blas_threads", l_blas_threads}, {"_matmul_sum", l_matmul_sum},
  {"tobytes", l_tobytes},
  {"frombytes", l_frombytes}, {"_random_block", l_random_block}, {"_zarr_meta", l_zarr_meta},
  {"_zarr_meta_json", l_zarr_meta_json}, {"_zarr_decode", l_zarr_decode},
  {"_zarr_attrs", l_zarr_attrs}, {"_zarr_attrs_json", l_zarr_attrs_json},
  {"_zarr_blosc", l_zarr_blosc},
  {"_zarr_encode", l_zarr_encode},
  {"save", l_save}, {"load", l_load},
  {"_fused", l_fused},
  {NULL, NULL}};

/* Push the ndarray metatable, creating it (and the methods table) on
   first use in this state.  [-0, +1, m] */
static void push_meta(lua_State *L) {
  if (luaL_newmetatable(L, MT)) {
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &meta_key);
  }
}

/*
** Register the ndarray codec in L, so ndarrays travel as raw bytes between
** client and workers without the module being required first.  [-0, +0, m]
*/
void dl_ndarray_register(lua_State *L) {
  dl_codec_register(L, MT, nd_encode, nd_decode);
}

int luaopen_dlua_ndarray(lua_State *L) {
  push_meta(L);
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_newtable(L);
  lua_pushcfunction(L, l_solve);
  lua_setfield(L, -2, "solve");
  lua_pushcfunction(L, l_inv);
  lua_setfield(L, -2, "inv");
  lua_pushcfunction(L, l_qr);
  lua_setfield(L, -2, "qr");
  lua_pushcfunction(L, l_svd);
  lua_setfield(L, -2, "svd");
  lua_pushcfunction(L, l_cholesky);
  lua_setfield(L, -2, "cholesky");
  lua_pushcfunction(L, l_lstsq);
  lua_setfield(L, -2, "lstsq");
  lua_pushcfunction(L, l_lu_factor);
  lua_setfield(L, -2, "lu_factor");
  lua_pushcfunction(L, l_lu_apply);
  lua_setfield(L, -2, "_lu_apply");
  lua_pushcfunction(L, l_solve_triangular);
  lua_setfield(L, -2, "solve_triangular");
  lua_setfield(L, -2, "linalg");
  lua_newtable(L);
  lua_pushcfunction(L, l_uniform);
  lua_setfield(L, -2, "uniform");
  lua_pushcfunction(L, l_normal);
  lua_setfield(L, -2, "normal");
  lua_pushcfunction(L, l_integers);
  lua_setfield(L, -2, "integers");
  lua_setfield(L, -2, "random");
  lua_pushcfunction(L, l_eq);
  lua_setfield(L, -2, "equal");
  return 1;
}

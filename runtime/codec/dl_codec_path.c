/*
** dl_codec_path.c -- value paths: where in the value being sent a refused
** value sits, e.g. "upvalue 'co' of function <job.lua:12> (argument 2)".
*/
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "dl_codec_int.h"


/* Append s to the fixed buffer d (capacity cap, used *n), truncating. */
static void sapp(char *d, size_t cap, size_t *n, const char *s) {
  size_t l = strlen(s);
  if (*n + 1 >= cap) return;
  if (l > cap - 1 - *n) l = cap - 1 - *n;
  memcpy(d + *n, s, l);
  *n += l;
  d[*n] = '\0';
}

static int is_ident(const char *s, size_t l) {
  size_t i;
  if (l == 0 || l > 40 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (i = 0; i < l; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9')))
      return 0;
  }
  return 1;
}

/* Render the key at stack index k as a path element. */
static void key_elem(lua_State *L, int k, int first, char *t, size_t cap) {
  size_t l;
  const char *s;
  switch (lua_type(L, k)) {
    case LUA_TSTRING:
      s = lua_tolstring(L, k, &l);
      if (is_ident(s, l))
        snprintf(t, cap, "%s%s", first ? "" : ".", s);
      else
        snprintf(t, cap, "[\"%.*s%s\"]", (int)(l > 30 ? 30 : l), s,
                 l > 30 ? "..." : "");
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, k))
        snprintf(t, cap, "[%lld]", (long long)lua_tointeger(L, k));
      else
        snprintf(t, cap, "[%.14g]", (double)lua_tonumber(L, k));
      break;
    case LUA_TBOOLEAN:
      snprintf(t, cap, "[%s]", lua_toboolean(L, k) ? "true" : "false");
      break;
    default:
      snprintf(t, cap, "[%s]", lua_typename(L, lua_type(L, k)));
  }
}

/* Describe path segments [0, n) into d. */
static void describe(enc *e, int n, char *d, size_t cap, size_t *len) {
  lua_State *L = e->L;
  char t[128], owner[512];
  size_t olen = 0;
  int u = -1, i;
  for (i = 0; i < n; i++)
    if (e->path[i].kind == SEG_UPVAL || e->path[i].kind == SEG_GLOBAL) u = i;
  owner[0] = '\0';
  if (u < 0) {
    sapp(owner, sizeof owner, &olen, e->o && e->o->root ? e->o->root : "value");
  } else {
    lua_Debug ar;
    char sub[400];
    size_t slen = 0;
    sub[0] = '\0';
    lua_pushvalue(L, e->path[u].idx);
    lua_getinfo(L, ">S", &ar);
    describe(e, u, sub, sizeof sub, &slen);
    snprintf(owner, sizeof owner, "%s '%s' of function <%s:%d> (%s)",
             e->path[u].kind == SEG_GLOBAL ? "global" : "upvalue",
             e->path[u].name, ar.short_src, ar.linedefined, sub);
    olen = strlen(owner);
  }
  if (u + 1 == n) {
    sapp(d, cap, len, owner);
    return;
  }
  if (u + 2 == n && e->path[u + 1].kind == SEG_KEY &&
      lua_type(L, e->path[u + 1].idx) == LUA_TSTRING) {
    size_t l;
    const char *s = lua_tolstring(L, e->path[u + 1].idx, &l);
    if (is_ident(s, l)) {
      snprintf(t, sizeof t, "field '%s' of ", s);
      sapp(d, cap, len, t);
      sapp(d, cap, len, owner);
      return;
    }
  }
  for (i = u + 1; i < n; i++) {
    if (n - u > 13 && i == u + 5) {
      sapp(d, cap, len, "...");
      i = n - 7;
      continue;
    }
    switch (e->path[i].kind) {
      case SEG_KEY:
        key_elem(L, e->path[i].idx, i == u + 1, t, sizeof t);
        break;
      case SEG_KEYOF:
        key_elem(L, e->path[i].idx, i == u + 1, t, sizeof t);
        sapp(t, sizeof t, &(size_t){strlen(t)}, "(key)");
        break;
      default:
        snprintf(t, sizeof t, "%s(metatable)", i == u + 1 ? "" : ".");
    }
    sapp(d, cap, len, t);
  }
  sapp(d, cap, len, " of ");
  sapp(d, cap, len, owner);
}

/* Refuse the value at idx: what it is, then where it sits. */
int dlc_refuse(enc *e, const char *what, const char *why) {
  char where[600];
  size_t n = 0;
  where[0] = '\0';
  if (!lua_checkstack(e->L, 4)) return DL_ENOMEM;
  describe(e, e->npath, where, sizeof where, &n);
  if (e->err && e->errlen)
    snprintf(e->err, e->errlen, "cannot send %s at %s%s", what, where,
             why ? why : "");
  return DL_EINVAL;
}

int dlc_push_seg(enc *e, int kind, int idx, const char *name) {
  if (e->npath >= MAXPATH) return dlc_refuse(e, "value", " (path too long)");
  e->path[e->npath].kind = kind;
  e->path[e->npath].idx = idx;
  e->path[e->npath].name = name;
  e->npath++;
  return 0;
}


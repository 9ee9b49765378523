/*
** dl_codec_enc.c -- the encoder: Lua values to bytes (format: dl_codec_int.h).
*/
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "dl_codec_int.h"

/*
** Stack slots of the protected call, filled on first use: per-message
** tables (seen value -> ref, upvalue id -> ref*256+n, bytecode -> proto
** index) and the registry tables used by this encode.
*/
static int slot(enc *e, int s) {
  lua_State *L = e->L;
  if (e->have & (1u << s)) return s;
  switch (s) {
    case S_NAMES:
      dlc_get_names(L);
      break;
    case S_CODECS:
      dlc_reg_table(L, &CODECS_KEY, 0);
      break;
    case S_DUMPS:
      dlc_reg_table(L, &DUMPS_KEY, 1);
      break;
    case S_GLOBS:
      dlc_reg_table(L, &GLOBS_KEY, 1);
      break;
    case S_GSENT:
    case S_SENV:
      lua_newtable(L);
      break;
    case S_G:
      lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
      break;
    default:
      if (e->reuse) { /* the reusable table of this slot */
        lua_rawgetp(L, LUA_REGISTRYINDEX, &SCRATCH_KEY);
        lua_rawgeti(L, -1, s);
        lua_remove(L, -2);
        e->used_scratch |= 1u << s;
      } else {
        lua_newtable(L);
      }
  }
  lua_replace(L, s);
  e->have |= 1u << s;
  return s;
}

static void put_ref(enc *e, int idx) {
  lua_State *L = e->L;
  lua_pushvalue(L, idx);
  lua_pushinteger(L, ++e->nrefs);
  lua_rawset(L, slot(e, S_SEEN));
}

/* Write a by-name value if idx has a name; 1 if written, 0 if not. */
static int try_name(enc *e, int idx, int *rc) {
  lua_State *L = e->L;
  size_t l;
  const char *s;
  lua_pushvalue(L, idx);
  if (lua_rawget(L, slot(e, S_NAMES)) != LUA_TSTRING) {
    lua_pop(L, 1);
    return 0;
  }
  s = lua_tolstring(L, -1, &l);
  *rc = dl_buf_u8(e->b, T_NAME) || dl_buf_str(e->b, s, l) ? DL_ENOMEM : 0;
  lua_pop(L, 1);
  return 1;
}

/* Write a fixed-width (9-byte) varint at b->p + pos for v < 2^63. */

/* The body written after the 9 bytes kept at pos gets its length there
   as a varint of the fewest bytes, the body moved back to follow it: a
   future's body is one byte, and 8 bytes of padding each made a sum of 8
   futures 64 bytes longer, kept by the scheduler with the task. */
static void patch_len(dl_buf *b, size_t pos) {
  uint64_t v = b->len - pos - 9;
  size_t n = 1;
  uint64_t x;
  for (x = v; x >= 0x80; x >>= 7) n++;
  if (n < 9)
    memmove(b->p + pos + n, b->p + pos + 9, (size_t)v);
  b->len -= 9 - n;
  for (x = v; x >= 0x80; x >>= 7) b->p[pos++] = (char)((x & 0x7f) | 0x80);
  b->p[pos] = (char)x;
}

static void patch_u32(dl_buf *b, size_t pos, uint32_t v) {
  b->p[pos] = (char)v;
  b->p[pos + 1] = (char)(v >> 8);
  b->p[pos + 2] = (char)(v >> 16);
  b->p[pos + 3] = (char)(v >> 24);
}

/*
** If the value at idx has a metatable whose __name has a registered codec
** (and registry[__name] is that metatable), write it as CUSTOM: returns 1
** with *rc set; 0 if no codec applies.
*/
/* For dl_codec_token, a value that cannot be sent is written as its address:
   equal bytes mean the same values, for a key hash; they never decode. */
static int put_ident(enc *e, int idx) {
  if (dl_buf_u8(e->b, T_IDENT)) return DL_ENOMEM;
  return dl_buf_u64(e->b, (uint64_t)(uintptr_t)lua_topointer(e->L, idx));
}

static int try_custom(enc *e, int idx, int *rc) {
  lua_State *L = e->L;
  int top = lua_gettop(L), t, same;
  size_t tl, pos;
  const char *tname;
  *rc = 0;
  if (!lua_getmetatable(L, idx)) return 0;
  lua_pushliteral(L, "__name");
  if (lua_rawget(L, -2) != LUA_TSTRING) goto none;
  tname = lua_tolstring(L, -1, &tl);
  if (tl == 0) goto none; /* empty: "the same as the last one" */
  lua_pushvalue(L, -1);
  t = lua_rawget(L, slot(e, S_CODECS));
  if (t != LUA_TUSERDATA && t != LUA_TTABLE) goto none;
  lua_getfield(L, LUA_REGISTRYINDEX, tname);
  if (!lua_rawequal(L, -1, top + 1)) goto none;
  lua_pop(L, 1);
  put_ref(e, idx);
  /* The tname of a custom value like the one before it is not repeated:
     a sum of 8 futures wrote "dlua.Future" 8 times.  (tname stays valid:
     the metatable holds it, and so does the value.) */
  same = e->ltn && e->ltl == tl && memcmp(e->ltn, tname, tl) == 0;
  e->ltn = tname;
  e->ltl = tl;
  if (dl_buf_u8(e->b, T_CUSTOM) || dl_buf_str(e->b, tname, same ? 0 : tl) ||
      dl_buf_grow(e->b, 9)) {
    *rc = DL_ENOMEM;
    goto done;
  }
  pos = e->b->len;
  e->b->len += 9;
  if (t == LUA_TUSERDATA) {
    ccodec *c = (ccodec *)lua_touserdata(L, -1);
    if (!c->enc || c->enc(L, idx, e->b, e->o ? e->o->ctx : NULL)) {
      e->b->len = pos;
      *rc = e->identity ? put_ident(e, idx)
                        : dlc_refuse(e, tname, " (its codec failed)");
      goto done;
    }
    lua_settop(L, top + 3);
  } else {
    const char *s;
    size_t sl;
    lua_rawgeti(L, -1, 1);
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    s = lua_tolstring(L, -1, &sl);
    if (s == NULL || lua_type(L, -1) != LUA_TSTRING) {
      e->b->len = pos;
      *rc = e->identity ? put_ident(e, idx)
                        : dlc_refuse(e, tname,
                                     " (its encoder did not return a string)");
      goto done;
    }
    if (dl_buf_put(e->b, s, sl)) {
      *rc = DL_ENOMEM;
      goto done;
    }
  }
  patch_len(e->b, pos);
done:
  lua_settop(L, top);
  return 1;
none:
  lua_settop(L, top);
  return 0;
}

static int enc_value(enc *e, int idx);

static int enter(enc *e) {
  if (++e->depth > MAXDEPTH)
    return dlc_refuse(e, "value", " (nesting deeper than 200 levels)");
  if (!lua_checkstack(e->L, 16)) return DL_ENOMEM;
  return 0;
}

/* Encode the metatable at stack top (popped by the caller). */
static int enc_mt(enc *e, int mt) {
  lua_State *L = e->L;
  int rc;
  lua_pushliteral(L, "__name");
  if (lua_rawget(L, mt) == LUA_TSTRING) {
    size_t l;
    const char *s = lua_tolstring(L, -1, &l);
    lua_getfield(L, LUA_REGISTRYINDEX, s);
    if (lua_rawequal(L, -1, mt)) {
      lua_pop(L, 2);
      return dl_buf_u8(e->b, T_MTNAME) || dl_buf_str(e->b, s, l) ? DL_ENOMEM
                                                                   : 0;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  TRY(dlc_push_seg(e, SEG_MT, 0, NULL));
  rc = enc_value(e, mt);
  e->npath--;
  return rc;
}

/* The metatable part of a table (T_TABLE, T_SENV) at idx: u8 0, or u8 1
   and its metatable. */
static int enc_mt_of(enc *e, int idx) {
  lua_State *L = e->L;
  int rc;
  if (!lua_getmetatable(L, idx)) return dl_buf_u8(e->b, 0);
  TRY(dl_buf_u8(e->b, 1));
  rc = enc_mt(e, lua_gettop(L));
  lua_pop(L, 1);
  return rc;
}

static int enc_table(enc *e, int idx) {
  lua_State *L = e->L;
  uint32_t narr = 0, nhash = 0;
  size_t pos;
  int arr = 1, rc;
  TRY(enter(e));
  put_ref(e, idx);
  if (dl_buf_u8(e->b, T_TABLE) || dl_buf_grow(e->b, 8)) return DL_ENOMEM;
  pos = e->b->len;
  e->b->len += 8;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int v = lua_gettop(L), k = v - 1;
    if (arr && lua_isinteger(L, k) && lua_tointeger(L, k) == (lua_Integer)narr + 1) {
      int t = lua_type(L, v);
      if (t == LUA_TNUMBER && !lua_isinteger(L, v)) {
        /* Fast path for float arrays. */
        lua_Number x = lua_tonumber(L, v);
        uint64_t bits;
        char *q;
        if (e->b->cap - e->b->len < 9 && dl_buf_grow(e->b, 9)) return DL_ENOMEM;
        memcpy(&bits, &x, 8);
        q = e->b->p + e->b->len;
        q[0] = T_FLT;
        q[1] = (char)bits; q[2] = (char)(bits >> 8); q[3] = (char)(bits >> 16);
        q[4] = (char)(bits >> 24); q[5] = (char)(bits >> 32);
        q[6] = (char)(bits >> 40); q[7] = (char)(bits >> 48);
        q[8] = (char)(bits >> 56);
        e->b->len += 9;
      } else {
        TRY(dlc_push_seg(e, SEG_KEY, k, NULL));
        rc = enc_value(e, v);
        e->npath--;
        TRY(rc);
      }
      narr++;
    } else {
      arr = 0;
      TRY(dlc_push_seg(e, SEG_KEYOF, k, NULL));
      rc = enc_value(e, k);
      e->npath--;
      TRY(rc);
      TRY(dlc_push_seg(e, SEG_KEY, k, NULL));
      rc = enc_value(e, v);
      e->npath--;
      TRY(rc);
      nhash++;
    }
    lua_pop(L, 1);
  }
  patch_u32(e->b, pos, narr);
  patch_u32(e->b, pos + 4, nhash);
  TRY(enc_mt_of(e, idx));
  e->depth--;
  return 0;
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  return dl_buf_put((dl_buf *)ud, p, n) ? 1 : 0;
}

/* Push the cached "hash..bytecode" string of the Lua function at idx. */
static int push_dump(enc *e, int idx) {
  lua_State *L = e->L;
  lua_pushvalue(L, idx);
  if (lua_rawget(L, slot(e, S_DUMPS)) == LUA_TSTRING) return 0;
  lua_pop(L, 1);
  e->scratch.len = 0;
  if (dl_buf_grow(&e->scratch, 256)) return DL_ENOMEM;
  e->scratch.len = 16;
  lua_pushvalue(L, idx);
  if (lua_dump(L, dump_writer, &e->scratch, 0)) {
    lua_pop(L, 1);
    return DL_ENOMEM;
  }
  lua_pop(L, 1);
  dlc_hash128(e->scratch.p + 16, e->scratch.len - 16,
          (unsigned char *)e->scratch.p);
  lua_pushlstring(L, e->scratch.p, e->scratch.len);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -2);
  lua_rawset(L, S_DUMPS);
  return 0;
}

/* In fn_globals' list, the length byte of an entry without a name: the
   upvalue is used as a value (GETUPVAL, SETUPVAL), not only by name. */
#define GLOB_VALUE 0xff

/* bc_walk's callback for fn_globals: append (up, name) to the buffer ud
   unless there already. */
static int glob_add(void *ud, int up, const char *name, size_t len) {
  dl_buf *b = (dl_buf *)ud;
  size_t i = 0;
  if (name == NULL) len = GLOB_VALUE;
  while (i + 2 <= b->len) {
    size_t l = (unsigned char)b->p[i + 1];
    if ((unsigned char)b->p[i] == (unsigned)up && l == len &&
        (name == NULL || memcmp(b->p + i + 2, name, len) == 0))
      return 0;
    i += 2 + (l == GLOB_VALUE ? 0 : l);
  }
  if (name == NULL)
    return dl_buf_u8(b, (unsigned)up) || dl_buf_u8(b, GLOB_VALUE) ? DL_ENOMEM
                                                                  : 0;
  if (len >= GLOB_VALUE) return 0; /* never: GETTABUP keys are short */
  return dl_buf_u8(b, (unsigned)up) || dl_buf_u8(b, (unsigned)len) ||
                 dl_buf_put(b, name, len)
             ? DL_ENOMEM
             : 0;
}

/*
** Push the globals the Lua function at idx reads, found in its bytecode
** (nested functions included), as a string of entries [u8 upvalue index
** (0-based)][u8 length][name], and [u8 upvalue index][GLOB_VALUE] for an
** upvalue used as a value; cached per function.
*/
static int fn_globals(enc *e, int idx) {
  lua_State *L = e->L;
  const char *s;
  size_t l;
  lua_pushvalue(L, idx);
  if (lua_rawget(L, slot(e, S_GLOBS)) == LUA_TSTRING) return 0;
  lua_pop(L, 1);
  TRY(push_dump(e, idx));
  s = lua_tolstring(L, -1, &l);
  e->scratch.len = 0;
  if (dlc_bc_walk(s + 16, l - 16, glob_add, &e->scratch))
    return dlc_refuse(e, "function", " (its bytecode cannot be read)");
  lua_pop(L, 1);
  lua_pushlstring(L, e->scratch.p ? e->scratch.p : "", e->scratch.len);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -2);
  lua_rawset(L, S_GLOBS);
  return 0;
}

/* The standard library modules that are globals in every state. */
static const char *const std_modules[] = {
  "_G", "coroutine", "debug", "io", "math", "os", "package", "string",
  "table", "utf8", NULL
};

/*
** Is the value at v, found as the global name, the receiver's own global of
** that name?  True for what the names index calls "_G\0name" (a C
** function registered in the globals: the base library or the host) and for
** a standard module under its own name.
*/
static int std_global(enc *e, const char *name, size_t nl, int v) {
  lua_State *L = e->L;
  int t = lua_type(L, v), r = 0, i;
  size_t l;
  const char *s;
  if (t != LUA_TTABLE && t != LUA_TFUNCTION && t != LUA_TUSERDATA) return 0;
  lua_pushvalue(L, v);
  if (lua_rawget(L, slot(e, S_NAMES)) == LUA_TSTRING) {
    s = lua_tolstring(L, -1, &l);
    if (l == nl + 3 && memcmp(s, "_G\0", 3) == 0 && memcmp(s + 3, name, nl) == 0)
      r = 1;
    else if (l == nl && memcmp(s, name, nl) == 0)
      for (i = 0; std_modules[i]; i++)
        if (strlen(std_modules[i]) == nl &&
            memcmp(std_modules[i], name, nl) == 0)
          r = 1;
  }
  lua_pop(L, 1);
  return r;
}

/*
** The globals section of the function at idx, which has an upvalue holding
** the globals or a sandbox _ENV of this message (S_SENV): each global it
** reads through such an upvalue that this message has not sent yet, whose
** value (a raw get) is not nil, nor, from the globals, the receiver's own
** (std_global), as u8 upvalue number (1-based), name, value; then u8 0.
** The receiver stores them in that upvalue's table (T_ENV, T_SENV).
*/
static int enc_globals(enc *e, int idx) {
  lua_State *L = e->L;
  const char *g;
  size_t gl, i;
  int rc, n, isg, env;
  TRY(fn_globals(e, idx));
  g = lua_tolstring(L, -1, &gl); /* kept on the stack */
  for (i = 0; i + 2 <= gl;) {
    unsigned up = (unsigned char)g[i], nl = (unsigned char)g[i + 1];
    const char *name = g + i + 2;
    if (nl == GLOB_VALUE) {
      i += 2;
      continue;
    }
    i += 2 + nl;
    if (!lua_getupvalue(L, idx, (int)up + 1)) continue;
    env = lua_gettop(L);
    isg = lua_rawequal(L, env, slot(e, S_G));
    if (isg) {
      lua_pushvalue(L, slot(e, S_GSENT)); /* names sent into it */
    } else {
      lua_pushvalue(L, env);
      if (lua_rawget(L, slot(e, S_SENV)) != LUA_TTABLE) {
        lua_pop(L, 2);
        continue;
      }
    }
    lua_pushlstring(L, name, nl);
    n = lua_gettop(L); /* env, sent, name */
    lua_pushvalue(L, n);
    if (lua_rawget(L, env) == LUA_TNIL ||
        (isg && std_global(e, name, nl, n + 1))) {
      lua_settop(L, env - 1);
      continue;
    }
    lua_pushvalue(L, n);
    if (lua_rawget(L, n - 1) != LUA_TNIL) {
      lua_settop(L, env - 1);
      continue;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, n);
    lua_pushboolean(L, 1);
    lua_rawset(L, n - 1);
    if (dl_buf_u8(e->b, up + 1) || dl_buf_str(e->b, name, nl))
      return DL_ENOMEM;
    if (isg) e->envuses++;
    TRY(dlc_push_seg(e, SEG_GLOBAL, idx, lua_tostring(L, n)));
    rc = enc_value(e, n + 1);
    e->npath--;
    TRY(rc);
    lua_settop(L, env - 1);
  }
  lua_pop(L, 1);
  return dl_buf_u8(e->b, 0);
}

/*
** Is upvalue i (1-based, its value at v) of the Lua function at idx a
** sandbox: an _ENV that is a table other than the globals (and no
** module's), which the function reads and sets globals in by name only,
** never using it as a value (no _ENV[k], pairs(_ENV), return _ENV)?  Such a table travels as T_SENV with only
** the globals read from it.  Sets *yes.
*/
static int is_sandbox(enc *e, int idx, int i, const char *name, int v,
                      int *yes) {
  lua_State *L = e->L;
  const char *g;
  size_t gl, j;
  int t;
  *yes = 0;
  if (strcmp(name, "_ENV") != 0 || !lua_istable(L, v)) return 0;
  lua_pushvalue(L, v); /* a module's table goes by name, as a value */
  t = lua_rawget(L, slot(e, S_NAMES));
  lua_pop(L, 1);
  if (t != LUA_TNIL) return 0;
  if (luaL_getmetafield(L, v, "__name") != LUA_TNIL) { /* maybe a codec's */
    lua_pop(L, 1);
    return 0;
  }
  TRY(fn_globals(e, idx));
  g = lua_tolstring(L, -1, &gl);
  *yes = 1;
  for (j = 0; j + 2 <= gl;) {
    unsigned up = (unsigned char)g[j], nl = (unsigned char)g[j + 1];
    if (up == (unsigned)i - 1 && nl == GLOB_VALUE) {
      *yes = 0;
      break;
    }
    j += 2 + (nl == GLOB_VALUE ? 0 : nl);
  }
  lua_pop(L, 1);
  return 0;
}

/* The sandbox _ENV at v, met for the first time: T_SENV, an empty table
   that the globals sections fill, and its metatable. */
static int enc_sandbox(enc *e, int v) {
  lua_State *L = e->L;
  TRY(enter(e));
  put_ref(e, v);
  lua_pushvalue(L, v);
  lua_newtable(L); /* the names sent into it */
  lua_rawset(L, slot(e, S_SENV));
  if (dl_buf_u8(e->b, T_SENV)) return DL_ENOMEM;
  TRY(enc_mt_of(e, v));
  e->depth--;
  return 0;
}

/*
** A Lua function: its prototype, its upvalues, then its globals section.
** Upvalues that hold the sender's globals table become the message's
** globals table (T_ENV, then references to it): on the receiver a fresh
** table that falls back to the receiver's globals, filled with the
** globals the message's functions read (enc_globals).  A sandbox _ENV
** (is_sandbox) travels the same way, as a table of its own (T_SENV).
*/
static int enc_function(enc *e, int idx) {
  lua_State *L = e->L;
  int rc, i, fref, d, hasg = 0, sandbox;
  size_t pos, l;
  const char *s;
  if (e->o && e->o->data_only) return dlc_refuse(e, "function", " (data-only)");
  if (try_name(e, idx, &rc)) return rc;
  if (e->identity) return put_ident(e, idx); /* not reachable by name */
  if (lua_iscfunction(L, idx))
    return dlc_refuse(e, lua_getupvalue(L, idx, 1) ? (lua_pop(L, 1), "C function with upvalues")
                                              : "C function",
                  " (not reachable by name)");
  TRY(enter(e));
  put_ref(e, idx);
  fref = e->nrefs;
  TRY(push_dump(e, idx));
  d = lua_gettop(L);
  s = lua_tolstring(L, d, &l);
  if (dl_buf_u8(e->b, T_FN)) return DL_ENOMEM;
  lua_pushvalue(L, d);
  if (lua_rawget(L, slot(e, S_PROTOS)) == LUA_TNUMBER) {
    if (dl_buf_u8(e->b, P_REF) || dl_buf_uv(e->b, (uint64_t)lua_tointeger(L, -1)))
      return DL_ENOMEM;
  } else {
    const dl_fnsink *k = e->o ? e->o->fns : NULL;
    uint64_t at;
    if (k && k->put_at &&
        k->put_at(k->ud, (const unsigned char *)s, s + 16, l - 16, &at)) {
      if (dl_buf_u8(e->b, P_AT) || dl_buf_uv(e->b, at)) return DL_ENOMEM;
    } else if (k && k->put &&
               k->put(k->ud, (const unsigned char *)s, s + 16, l - 16)) {
      if (dl_buf_u8(e->b, P_HASH) || dl_buf_put(e->b, s, 16)) return DL_ENOMEM;
    } else if (dl_buf_u8(e->b, P_INLINE) || dl_buf_put(e->b, s, 16) ||
               dl_buf_str(e->b, s + 16, l - 16)) {
      return DL_ENOMEM;
    }
    lua_pushvalue(L, d);
    lua_pushinteger(L, ++e->nprotos);
    lua_rawset(L, S_PROTOS);
  }
  lua_settop(L, d - 1);
  if (dl_buf_u8(e->b, 0)) return DL_ENOMEM;
  pos = e->b->len - 1;
  slot(e, S_UVIDS);
  for (i = 1;; i++) {
    const char *name = lua_getupvalue(L, idx, i);
    void *id;
    int isg;
    if (name == NULL) break;
    if (i > 255) return dlc_refuse(e, "function", " (too many upvalues)");
    isg = lua_rawequal(L, -1, slot(e, S_G));
    hasg |= isg;
    id = lua_upvalueid(L, idx, i);
    if (lua_rawgetp(L, S_UVIDS, id) == LUA_TNUMBER) {
      lua_Integer j = lua_tointeger(L, -1);
      if (dl_buf_u8(e->b, 1) || dl_buf_uv(e->b, (uint64_t)(j >> 8)) ||
          dl_buf_u8(e->b, (unsigned)(j & 0xff)))
        return DL_ENOMEM;
      lua_pop(L, 2);
      if (isg) e->envuses++;
      continue;
    }
    lua_pop(L, 1);
    lua_pushinteger(L, (lua_Integer)fref * 256 + i);
    lua_rawsetp(L, S_UVIDS, id);
    if (dl_buf_u8(e->b, 0)) return DL_ENOMEM;
    if (isg) {
      if (e->envref) {
        e->envuses++;
        if (dl_buf_u8(e->b, T_REF) || dl_buf_uv(e->b, (uint64_t)e->envref))
          return DL_ENOMEM;
      } else {
        e->envpos = e->b->len;
        e->envref = ++e->nrefs;
        e->envuses = 1;
        if (dl_buf_u8(e->b, T_ENV)) return DL_ENOMEM;
      }
      lua_pop(L, 1);
      continue;
    }
    TRY(dlc_push_seg(e, SEG_UPVAL, idx, name));
    TRY(is_sandbox(e, idx, i, name, lua_gettop(L), &sandbox));
    if (sandbox) {
      hasg = 1;
      lua_pushvalue(L, -1);
      sandbox = lua_rawget(L, slot(e, S_SEEN)) == LUA_TNIL;
      lua_pop(L, 1);
    }
    rc = sandbox ? enc_sandbox(e, lua_gettop(L)) : enc_value(e, lua_gettop(L));
    e->npath--;
    TRY(rc);
    lua_pop(L, 1);
  }
  e->b->p[pos] = (char)(i - 1);
  if (hasg) TRY(enc_globals(e, idx));
  else TRY(dl_buf_u8(e->b, 0));
  e->depth--;
  return 0;
}

static int enc_value(enc *e, int idx) {
  lua_State *L = e->L;
  int t = lua_type(L, idx), rc;
  switch (t) {
    case LUA_TNIL:
      return dl_buf_u8(e->b, T_NIL);
    case LUA_TBOOLEAN:
      return dl_buf_u8(e->b, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        if (dl_buf_u8(e->b, T_INT)) return DL_ENOMEM;
        return dl_buf_sv(e->b, (int64_t)lua_tointeger(L, idx));
      } else {
        lua_Number x = lua_tonumber(L, idx);
        uint64_t bits;
        memcpy(&bits, &x, 8);
        if (dl_buf_u8(e->b, T_FLT)) return DL_ENOMEM;
        return dl_buf_u64(e->b, bits);
      }
    case LUA_TSTRING: {
      size_t l;
      const char *s = lua_tolstring(L, idx, &l);
      if (e->oob && l >= e->oob->min && l > 0) {
        dl_oob *x = e->oob;
        if (dl_buf_u8(e->b, T_STR) || dl_buf_uv(e->b, l)) return DL_ENOMEM;
        if (x->nsegs == x->cap) {
          size_t nc = x->cap ? x->cap * 2 : 4;
          dl_oob_seg *ns = dl_realloc(x->segs, nc * sizeof *ns);
          if (ns == NULL) return DL_ENOMEM;
          x->segs = ns;
          x->cap = nc;
        }
        x->segs[x->nsegs].at = e->b->len;
        x->segs[x->nsegs].p = s;
        x->segs[x->nsegs].n = l;
        x->nsegs++;
        if (lua_type(L, 3) == LUA_TTABLE) {
          lua_pushvalue(L, idx);
          lua_rawseti(L, 3, (lua_Integer)x->nsegs);
        }
        return 0;
      }
      if (dl_buf_grow(e->b, l + 11)) return DL_ENOMEM;
      dl_buf_u8(e->b, T_STR);
      return dl_buf_str(e->b, s, l);
    }
    default:
      break;
  }
  if (t == LUA_TTABLE || t == LUA_TFUNCTION || t == LUA_TUSERDATA) {
    lua_pushvalue(L, idx);
    if (lua_rawget(L, slot(e, S_SEEN)) == LUA_TNUMBER) {
      lua_Integer r = lua_tointeger(L, -1);
      lua_pop(L, 1);
      if (dl_buf_u8(e->b, T_REF)) return DL_ENOMEM;
      return dl_buf_uv(e->b, (uint64_t)r);
    }
    lua_pop(L, 1);
  }
  switch (t) {
    case LUA_TTABLE:
      lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
      rc = lua_rawequal(L, -1, idx);
      lua_pop(L, 1);
      if (rc) return dl_buf_u8(e->b, T_GLOBALS);
      if (try_custom(e, idx, &rc)) return rc;
      if (try_name(e, idx, &rc)) return rc;
      return enc_table(e, idx);
    case LUA_TFUNCTION:
      return enc_function(e, idx);
    case LUA_TUSERDATA: {
      char what[96];
      if (try_custom(e, idx, &rc)) return rc;
      if (try_name(e, idx, &rc)) return rc;
      if (e->identity) return put_ident(e, idx);
      if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING)
        snprintf(what, sizeof what, "userdata (%.60s)", lua_tostring(L, -1));
      else
        snprintf(what, sizeof what, "userdata");
      return dlc_refuse(e, what, NULL);
    }
    case LUA_TLIGHTUSERDATA:
      if (e->identity) return put_ident(e, idx);
      return dlc_refuse(e, "light userdata", NULL);
    case LUA_TTHREAD:
      if (e->identity) return put_ident(e, idx);
      return dlc_refuse(e, "coroutine", NULL);
    default:
      return dlc_refuse(e, lua_typename(L, t), NULL);
  }
}

const unsigned char dl_codec_header[HEADER_LEN] = {
  'D', 'L', 'C', FORMAT_VERSION, LUA_VERSION_NUM & 0xff,
  LUA_VERSION_NUM >> 8, sizeof(lua_Integer), sizeof(lua_Number), 0};

static int enc_main(lua_State *L) {
  enc *e = (enc *)lua_touserdata(L, 1);
  int rc, i;
  lua_settop(L, S_LAST);
  if (dl_buf_put(e->b, dl_codec_header, sizeof dl_codec_header)) {
    lua_pushinteger(L, DL_ENOMEM);
    return 1;
  }
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &SCRATCH_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, S_PROTOS, 1);
    for (i = S_SEEN; i <= S_PROTOS; i++) {
      lua_newtable(L);
      lua_rawseti(L, -2, i);
    }
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &SCRATCH_KEY);
  }
  if (lua_getfield(L, -1, "busy") == LUA_TNIL) { /* not in a nested encode */
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "busy");
    e->reuse = 1;
  } else {
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  rc = enc_value(e, 2);
  /* A globals table used by one function only, that received nothing, is
     private to that function: the receiver may cache the function. */
  if (rc == 0 && e->envref && e->envuses == 1) e->b->p[e->envpos] = T_ENV0;
  if (e->reuse) { /* empty what was used, and give the tables back */
    for (i = S_SEEN; i <= S_PROTOS; i++) {
      if (!(e->used_scratch & (1u << i))) continue;
      lua_pushnil(L);
      while (lua_next(L, i)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, i);
      }
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &SCRATCH_KEY);
    lua_pushnil(L);
    lua_setfield(L, -2, "busy");
    lua_pop(L, 1);
  }
  lua_pushinteger(L, rc);
  return 1;
}

/*
** Append the encoding of a plain value: nil, a boolean, a number or a
** string.  Returns 0, 1 if the value at idx is of another type (nothing
** written), or DL_ENOMEM.  Never raises.
*/
static int put_plain(lua_State *L, int idx, dl_buf *b) {
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      return dl_buf_u8(b, T_NIL);
    case LUA_TBOOLEAN:
      return dl_buf_u8(b, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        if (dl_buf_u8(b, T_INT)) return DL_ENOMEM;
        return dl_buf_sv(b, (int64_t)lua_tointeger(L, idx));
      } else {
        lua_Number x = lua_tonumber(L, idx);
        uint64_t bits;
        memcpy(&bits, &x, 8);
        if (dl_buf_u8(b, T_FLT)) return DL_ENOMEM;
        return dl_buf_u64(b, bits);
      }
    case LUA_TSTRING: {
      size_t l;
      const char *s = lua_tolstring(L, idx, &l);
      if (dl_buf_grow(b, l + 11)) return DL_ENOMEM;
      dl_buf_u8(b, T_STR);
      return dl_buf_str(b, s, l);
    }
    default:
      return 1;
  }
}

void dlc_set_err(char *err, size_t errlen, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
}

/* Encode the value at idx into out (see dl_codec.h).  [-0, +0, -] */
int dl_codec_encode(lua_State *L, int idx, dl_buf *out, const dl_enc_opts *o,
                    char *err, size_t errlen) {
  return dl_codec_encode_oob(L, idx, out, o, NULL, err, errlen);
}

/* Release the segment array of oob; min and anchor stay.  [-0, +0, -] */
void dl_oob_free(dl_oob *oob) {
  dl_free(oob->segs);
  oob->segs = NULL;
  oob->nsegs = oob->cap = 0;
}

static int encode(lua_State *L, int idx, dl_buf *out, const dl_enc_opts *o,
                  dl_oob *oob, int identity, char *err, size_t errlen);

int dl_codec_encode_oob(lua_State *L, int idx, dl_buf *out,
                        const dl_enc_opts *o, dl_oob *oob, char *err,
                        size_t errlen) {
  return encode(L, idx, out, o, oob, 0, err, errlen);
}

int dl_codec_token(lua_State *L, int idx, dl_buf *out, char *err,
                   size_t errlen) {
  int rc = encode(L, idx, out, NULL, NULL, 0, err, errlen);
  if (rc != DL_EINVAL) return rc;
  /* Refused: again with functions and what cannot be sent by address.
     Not only the refused values: functions are not walked, so this pass
     costs no more than the first (a function may reach a whole program
     through its upvalues and its _ENV). */
  return encode(L, idx, out, NULL, NULL, 1, err, errlen);
}

/*
** Encode the value at idx into out, big strings out of band; runs the
** encoder under lua_pcall.  [-0, +0, -]
*/
static int encode(lua_State *L, int idx, dl_buf *out, const dl_enc_opts *o,
                  dl_oob *oob, int identity, char *err, size_t errlen) {
  enc e;
  size_t nsegs0 = oob ? oob->nsegs : 0;
  int rc, st, t = lua_type(L, idx);
  size_t start = out->len;
  if (t == LUA_TNIL || t == LUA_TBOOLEAN || t == LUA_TNUMBER ||
      (t == LUA_TSTRING && (oob == NULL || lua_rawlen(L, idx) < oob->min ||
                            lua_rawlen(L, idx) == 0))) {
    /* A plain value: nothing to protect, no Lua call needed. */
    if (err && errlen) err[0] = '\0';
    if (dl_buf_put(out, dl_codec_header, sizeof dl_codec_header) ||
        put_plain(L, idx, out)) {
      out->len = start;
      dlc_set_err(err, errlen, "codec: out of memory");
      return DL_ENOMEM;
    }
    return 0;
  }
  if (oob && oob->anchor) oob->anchor = lua_absindex(L, oob->anchor);
  memset(&e, 0, offsetof(enc, path));
  e.L = L;
  e.b = out;
  e.o = o;
  e.err = err;
  e.errlen = errlen;
  e.oob = oob;
  e.identity = identity;
  dl_buf_init(&e.scratch);
  if (err && errlen) err[0] = '\0';
  if (!lua_checkstack(L, 8)) {
    dlc_set_err(err, errlen, "codec: Lua stack overflow");
    return DL_ENOMEM;
  }
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, enc_main);
  lua_pushlightuserdata(L, &e);
  lua_pushvalue(L, idx);
  if (oob && oob->anchor)
    lua_pushvalue(L, oob->anchor);
  else
    lua_pushnil(L);
  st = lua_pcall(L, 3, 1, 0);
  dl_buf_free(&e.scratch);
  if (st != LUA_OK || lua_tointeger(L, -1) != 0) {
    if (oob) oob->nsegs = nsegs0;
  }
  if (st != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    if (err && errlen)
      snprintf(err, errlen, "codec: %s", m ? m : "error while encoding");
    lua_pop(L, 1);
    out->len = start;
    if (e.reuse) { /* it may hold stale entries: start afresh */
      lua_pushnil(L);
      lua_rawsetp(L, LUA_REGISTRYINDEX, &SCRATCH_KEY);
    }
    return st == LUA_ERRMEM ? DL_ENOMEM : DL_EINVAL;
  }
  rc = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (rc) {
    if (rc == DL_ENOMEM && err && errlen && !err[0])
      dlc_set_err(err, errlen, "codec: out of memory");
    out->len = start;
  }
  return rc;
}

/* ---------------------------------------------------------------- rows */

/*
** Append a row: the encoding that dl_codec_encode would give of the table
** encoded in shape (slen bytes, a table with no array part) once the n
** values at stack indices first .. first + n - 1 are added as its [1] ..
** [n].  Plain values (nil, booleans, numbers, strings) are never shared by
** reference, so the rest of the table encodes the same with or without
** them: the shape is reused as it is.  Returns 0; 1 if a value is not plain
** (nothing written: encode the whole table instead); DL_EINVAL if shape is
** not such a table; DL_ENOMEM.  Never raises.  [-0, +0, -]
*/
int dl_codec_encode_row(lua_State *L, const char *shape, size_t slen,
                        int first, int n, dl_buf *out) {
  const size_t counts = HEADER_LEN + 1, fields = counts + 8;
  size_t start = out->len;
  int i;
  if (slen < fields + 1 || memcmp(shape, "DLC", 3) != 0 ||
      (unsigned char)shape[HEADER_LEN] != T_TABLE ||
      memcmp(shape + counts, "\0\0\0\0", 4) != 0 || n < 0)
    return DL_EINVAL;
  for (i = 0; i < n; i++) {
    int t = lua_type(L, first + i);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TNUMBER &&
        t != LUA_TSTRING)
      return 1;
  }
  if (dl_buf_put(out, shape, counts) || dl_buf_u32(out, (uint32_t)n) ||
      dl_buf_put(out, shape + counts + 4, 4))
    goto nomem;
  for (i = 0; i < n; i++)
    if (put_plain(L, first + i, out)) goto nomem;
  if (dl_buf_put(out, shape + fields, slen - fields)) goto nomem;
  return 0;
nomem:
  out->len = start;
  return DL_ENOMEM;
}


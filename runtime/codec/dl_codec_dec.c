/*
** dl_codec_dec.c -- the decoder: bytes to Lua values; never reads outside
** its input (format: dl_codec_int.h).
*/
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "dl_codec_int.h"

/* ------------------------------------------------------------- decoder */

typedef struct proto {
  const char *p;
  size_t n;
  const char *hash; /* 16 bytes, as sent */
  int verified;     /* the hash of p[0, n) is hash */
} proto;

typedef struct dec {
  lua_State *L;
  dl_rd r;
  const char *base;
  const dl_dec_opts *o;
  int refs, nrefs, depth;
  proto *protos;   /* small, or allocated once more are needed */
  int nprotos, capprotos;
  proto small[4];
  /* The sandbox _ENV tables of this message (T_SENV), which its globals
     sections may fill: anchored as references while the decode runs. */
  const void **senvs;
  int nsenvs, capsenvs;
  int rc;
  char *err;
  size_t errlen;
  const char *ltn; /* the last CUSTOM value's tname (ltl bytes), or NULL */
  size_t ltl;
} dec;

static int bad(dec *d, const char *what) {
  if (d->err && d->errlen && !d->err[0])
    snprintf(d->err, d->errlen, "codec: %s at byte %zu", what,
             (size_t)(d->r.p - d->base));
  return DL_EPROTO;
}

#define RD(x)                                         \
  do {                                                \
    if (x) return bad(d, "truncated or corrupt input"); \
  } while (0)

static int dec_value(dec *d);

/* The first references live in stack slots of dec_main, the rest in a
   table made when needed: most messages have a few, and then decoding
   makes no table of its own. */
#define STACK_REFS 8

static void add_ref(dec *d) {
  lua_State *L = d->L;
  if (++d->nrefs <= STACK_REFS) {
    lua_copy(L, -1, d->refs + d->nrefs);
    return;
  }
  if (d->nrefs == STACK_REFS + 1) {
    lua_createtable(L, 16, 0);
    lua_replace(L, d->refs);
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, d->refs, d->nrefs);
}

/* Push the j-th reference (1 <= j <= nrefs). */
static void push_ref(dec *d, lua_Integer j) {
  if (j <= STACK_REFS) lua_pushvalue(d->L, d->refs + (int)j);
  else lua_rawgeti(d->L, d->refs, j);
}

static int dec_enter(dec *d) {
  if (++d->depth > MAXDEPTH) return bad(d, "nesting deeper than 200 levels");
  if (!lua_checkstack(d->L, 16)) return bad(d, "Lua stack overflow");
  return 0;
}

/* The metatable part of the table at t (T_TABLE, T_SENV): u8 0, or u8 1
   and a table, set as its metatable. */
static int dec_mt_of(dec *d, int t) {
  unsigned hasmt;
  RD(dl_rd_u8(&d->r, &hasmt));
  if (hasmt == 1) {
    TRY(dec_value(d));
    if (lua_type(d->L, -1) != LUA_TTABLE)
      return bad(d, "metatable is not a table");
    lua_setmetatable(d->L, t);
  } else if (hasmt != 0) {
    return bad(d, "bad metatable flag");
  }
  return 0;
}

static int dec_table(dec *d) {
  lua_State *L = d->L;
  uint32_t narr, nhash, i;
  int t;
  TRY(dec_enter(d));
  RD(dl_rd_u32(&d->r, &narr) || dl_rd_u32(&d->r, &nhash));
  if (narr > dl_rd_left(&d->r) || nhash > dl_rd_left(&d->r) / 2 ||
      narr > INT_MAX / 2 || nhash > INT_MAX / 2)
    return bad(d, "table size exceeds input");
  lua_createtable(L, (int)narr, (int)nhash);
  t = lua_gettop(L);
  add_ref(d);
  for (i = 1; i <= narr; i++) {
    const char *q = d->r.p;
    if (q < d->r.end && *q == T_FLT && d->r.end - q >= 9) {
      uint64_t bits;
      lua_Number x;
      const unsigned char *u = (const unsigned char *)q + 1;
      bits = (uint64_t)u[0] | (uint64_t)u[1] << 8 | (uint64_t)u[2] << 16 |
             (uint64_t)u[3] << 24 | (uint64_t)u[4] << 32 |
             (uint64_t)u[5] << 40 | (uint64_t)u[6] << 48 |
             (uint64_t)u[7] << 56;
      memcpy(&x, &bits, 8);
      d->r.p += 9;
      lua_pushnumber(L, x);
    } else {
      TRY(dec_value(d));
    }
    lua_rawseti(L, t, (lua_Integer)i);
  }
  for (i = 0; i < nhash; i++) {
    TRY(dec_value(d));
    if (lua_isnil(L, -1)) return bad(d, "nil table key");
    if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1) &&
        isnan(lua_tonumber(L, -1)))
      return bad(d, "NaN table key");
    TRY(dec_value(d));
    lua_rawset(L, t);
  }
  TRY(dec_mt_of(d, t));
  d->depth--;
  return 0;
}

/* Push the value known by name ("mod" or "mod\0field"). */
static int dec_name(dec *d, const char *s, size_t l) {
  lua_State *L = d->L;
  const char *z = memchr(s, '\0', l);
  size_t ml = z ? (size_t)(z - s) : l;
  int data_only = d->o && d->o->data_only;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_type(L, -1) != LUA_TTABLE) return bad(d, "no package.loaded");
  lua_pushlstring(L, s, ml);
  if (lua_rawget(L, -2) == LUA_TNIL) {
    if (data_only) return bad(d, "unknown module in data-only input");
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushlstring(L, s, ml);
    lua_call(L, 1, 1);
  }
  lua_remove(L, -2);
  if (z) {
    if (lua_type(L, -1) != LUA_TTABLE) return bad(d, "named module is not a table");
    lua_pushlstring(L, z + 1, l - ml - 1);
    lua_gettable(L, -2);
    lua_remove(L, -2);
    if (lua_isnil(L, -1)) {
      char m[300];
      lua_pop(L, 1);
      snprintf(m, sizeof m, "cannot resolve '%.*s.%.*s': no such value here "
               "(a host C function? then the workers must run the host "
               "program, which registers it)", (int)(ml > 60 ? 60 : ml),
               s, (int)(l - ml - 1 > 60 ? 60 : l - ml - 1), z + 1);
      return bad(d, m);
    }
  }
  if (data_only && lua_type(L, -1) == LUA_TFUNCTION) {
    lua_pop(L, 1);
    return bad(d, "function in data-only input");
  }
  return 0;
}

static int dec_custom(dec *d) {
  lua_State *L = d->L;
  const char *tn, *p;
  size_t tl, n;
  int top = lua_gettop(L), t;
  RD(dl_rd_str(&d->r, &tn, &tl) || dl_rd_str(&d->r, &p, &n));
  if (tl == 0 && d->ltn) { /* the same as the last one */
    tn = d->ltn;
    tl = d->ltl;
  }
  d->ltn = tn;
  d->ltl = tl;
  dlc_reg_table(L, &CODECS_KEY, 0);
  lua_pushlstring(L, tn, tl);
  t = lua_rawget(L, -2);
  if (t == LUA_TUSERDATA) {
    ccodec *c = (ccodec *)lua_touserdata(L, -1);
    lua_settop(L, top);
    if (!c->dec || c->dec(L, p, n, d->o ? d->o->ctx : NULL) ||
        lua_gettop(L) != top + 1) {
      lua_settop(L, top);
      return bad(d, "registered decoder failed");
    }
  } else if (t == LUA_TTABLE) {
    lua_rawgeti(L, -1, 2);
    lua_pushlstring(L, p, n);
    lua_call(L, 1, 1);
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
  } else {
    lua_settop(L, top);
    return bad(d, "no codec registered for custom value");
  }
  add_ref(d);
  return 0;
}

typedef struct lreader {
  const char *p;
  size_t n;
} lreader;

static const char *load_reader(lua_State *L, void *ud, size_t *sz) {
  lreader *r = (lreader *)ud;
  (void)L;
  *sz = r->n;
  r->n = 0;
  return *sz ? r->p : NULL;
}

/* Push a new globals table for decoded functions: empty, falling back to
   this state's globals.  [-0, +1, m] */
static void push_env(lua_State *L) {
  lua_createtable(L, 0, 4);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ENVMT_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ENVMT_KEY);
  }
  lua_setmetatable(L, -2);
}

/* Is the value at idx a globals table made by push_env?  [-0, +0, -] */
static int is_env(lua_State *L, int idx) {
  int r;
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ENVMT_KEY);
  r = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return r;
}

/* Is the table at idx a sandbox _ENV of this message?  [-0, +0, -] */
static int is_senv(dec *d, int idx) {
  const void *t = lua_topointer(d->L, idx);
  int i;
  for (i = 0; i < d->nsenvs; i++)
    if (d->senvs[i] == t) return 1;
  return 0;
}

/* T_SENV: push a new table, the globals a message's functions read from
   their sandbox _ENV go into, with its metatable. */
static int dec_sandbox(dec *d) {
  lua_State *L = d->L;
  int t;
  if (d->o && d->o->data_only) return bad(d, "globals table in data-only input");
  TRY(dec_enter(d));
  if (d->nsenvs == d->capsenvs) {
    int nc = d->capsenvs ? d->capsenvs * 2 : 4;
    const void **n = dl_realloc(d->senvs, sizeof *n * (size_t)nc);
    if (n == NULL) return bad(d, "out of memory");
    d->senvs = n;
    d->capsenvs = nc;
  }
  lua_createtable(L, 0, 4);
  t = lua_gettop(L);
  add_ref(d);
  d->senvs[d->nsenvs++] = lua_topointer(L, t);
  TRY(dec_mt_of(d, t));
  d->depth--;
  return 0;
}

/* Check the bytecode of prototype pr (its hash, then its structure) and
   load it as a function, pushed.  [-0, +(0|1), m] */
static int load_code(dec *d, proto *pr) {
  lua_State *L = d->L;
  lreader lr;
  if (!pr->verified) {
    unsigned char hash[16];
    dlc_hash128(pr->p, pr->n, hash);
    if (memcmp(hash, pr->hash, 16) != 0)
      return bad(d, "function bytecode does not match its hash (corrupt "
                    "input)");
    pr->verified = 1;
  }
  if (dlc_bc_walk(pr->p, pr->n, NULL, NULL)) return bad(d, "malformed bytecode");
  lr.p = pr->p;
  lr.n = pr->n;
  if (lua_load(L, load_reader, &lr, "=(codec)", "b") != LUA_OK) {
    char m[200];
    snprintf(m, sizeof m, "bad bytecode (%.150s)", lua_tostring(L, -1));
    lua_pop(L, 1);
    return bad(d, m);
  }
  return 0;
}

/* Push the closure cache (weak values).  [-0, +1, m] */
static void push_loaded(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &LOADED_KEY) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_newtable(L); /* weak values: unused closures may go */
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &LOADED_KEY);
}

/*
** A function (see enc_function).  Bytecode is loaded only after its hash
** has been recomputed and found to be the one sent (load_code): corruption
** in transit becomes an error, and the closure cache, filled only by
** loads, maps each hash to the function of the bytes that have it; a hit
** loads nothing, so it needs no check.  (This does not make bytecode safe:
** a full decode runs the sender's code.)
*/
static int dec_function(dec *d) {
  lua_State *L = d->L;
  unsigned kind, nups, i, k, up;
  const char *code = NULL, *h;
  size_t len = 0, skip = 0;
  int f, nact, cached = -1;
  proto *pr;
  if (d->o && d->o->data_only) return bad(d, "function in data-only input");
  TRY(dec_enter(d));
  RD(dl_rd_u8(&d->r, &kind));
  if (kind == P_REF) {
    uint64_t j;
    RD(dl_rd_uv(&d->r, &j));
    if (j < 1 || j > (uint64_t)d->nprotos) return bad(d, "bad prototype reference");
    pr = &d->protos[j - 1];
  } else if (kind == P_INLINE || kind == P_HASH || kind == P_AT) {
    if (kind == P_AT) {
      const dl_fnsource *s = d->o ? d->o->fns : NULL;
      const unsigned char *uh;
      uint64_t at;
      RD(dl_rd_uv(&d->r, &at));
      if (!s || !s->get_at || s->get_at(s->ud, at, &uh, &code, &len))
        return bad(d, "unknown function position");
      h = (const char *)uh;
    } else {
      RD(dl_rd_bytes(&d->r, 16, &h));
    }
    if (kind == P_INLINE) {
      RD(dl_rd_str(&d->r, &code, &len));
    } else if (kind == P_HASH) {
      const dl_fnsource *s = d->o ? d->o->fns : NULL;
      if (!s || !s->get || s->get(s->ud, (const unsigned char *)h, &code, &len))
        return bad(d, "unknown function hash");
    }
    if (d->nprotos == d->capprotos) {
      int nc = d->capprotos * 2;
      proto *np = dl_realloc(d->protos == d->small ? NULL : d->protos,
                             sizeof(proto) * (size_t)nc);
      if (!np) return bad(d, "out of memory");
      if (d->protos == d->small) memcpy(np, d->small, sizeof d->small);
      d->protos = np;
      d->capprotos = nc;
    }
    d->protos[d->nprotos].p = code;
    d->protos[d->nprotos].n = len;
    d->protos[d->nprotos].hash = h;
    d->protos[d->nprotos].verified = 0;
    pr = &d->protos[d->nprotos++];
  } else {
    return bad(d, "bad prototype kind");
  }
  /* A function without upvalues, or whose only upvalue is a private
     globals table that received nothing, is the same whatever message it
     came in: reuse the closure loaded last time. */
  if (dl_rd_left(&d->r) >= 2 && d->r.p[0] == 0 && d->r.p[1] == 0) {
    cached = 0;
    skip = 2;
  } else if (dl_rd_left(&d->r) >= 4 && d->r.p[0] == 1 && d->r.p[1] == 0 &&
             d->r.p[2] == T_ENV0 && d->r.p[3] == 0) {
    cached = 1;
    skip = 4;
  }
  if (cached >= 0) {
    push_loaded(L);
    lua_pushlstring(L, pr->hash, 16);
    if (lua_rawget(L, -2) != LUA_TFUNCTION) {
      lua_pop(L, 1);
      TRY(load_code(d, pr));
      for (nact = 0; lua_getupvalue(L, -1, nact + 1); nact++) lua_pop(L, 1);
      if (nact != cached) return bad(d, "upvalue count mismatch");
      if (cached) {
        push_env(L);
        lua_setupvalue(L, -2, 1);
      }
      lua_pushlstring(L, pr->hash, 16); /* verified: the loaded bytes' */
      lua_pushvalue(L, -2);
      lua_rawset(L, -4);
    }
    lua_remove(L, -2);
    add_ref(d);
    if (cached) { /* the globals table is the message's next reference */
      lua_getupvalue(L, -1, 1);
      add_ref(d);
      lua_pop(L, 1);
    }
    d->r.p += skip;
    d->depth--;
    return 0;
  }
  TRY(load_code(d, pr));
  f = lua_gettop(L);
  add_ref(d);
  RD(dl_rd_u8(&d->r, &nups));
  for (nact = 0; lua_getupvalue(L, f, nact + 1); nact++) lua_pop(L, 1);
  if ((unsigned)nact != nups) return bad(d, "upvalue count mismatch");
  for (i = 1; i <= nups; i++) {
    RD(dl_rd_u8(&d->r, &k));
    if (k == 0) {
      TRY(dec_value(d));
      lua_setupvalue(L, f, (int)i);
    } else if (k == 1) {
      uint64_t j;
      unsigned n;
      RD(dl_rd_uv(&d->r, &j) || dl_rd_u8(&d->r, &n));
      if (j < 1 || j > (uint64_t)d->nrefs) return bad(d, "bad upvalue reference");
      push_ref(d, (lua_Integer)j);
      if (lua_type(L, -1) != LUA_TFUNCTION || lua_iscfunction(L, -1) || n < 1 ||
          !lua_getupvalue(L, -1, (int)n))
        return bad(d, "bad upvalue reference");
      lua_pop(L, 1);
      lua_upvaluejoin(L, f, (int)i, -1, (int)n);
      lua_pop(L, 1);
    } else {
      return bad(d, "bad upvalue kind");
    }
  }
  /* The globals it reads, into its globals table. */
  for (;;) {
    const char *name;
    size_t nl;
    RD(dl_rd_u8(&d->r, &up));
    if (up == 0) break;
    if (up > nups || !lua_getupvalue(L, f, (int)up) ||
        !(is_env(L, -1) || is_senv(d, -1)))
      return bad(d, "global for an upvalue that is no globals table");
    RD(dl_rd_str(&d->r, &name, &nl));
    lua_pushlstring(L, name, nl);
    TRY(dec_value(d));
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  d->depth--;
  return 0;
}

static int dec_value(dec *d) {
  lua_State *L = d->L;
  unsigned tag;
  RD(dl_rd_u8(&d->r, &tag));
  switch (tag) {
    case T_NIL:
      lua_pushnil(L);
      return 0;
    case T_FALSE:
    case T_TRUE:
      lua_pushboolean(L, tag == T_TRUE);
      return 0;
    case T_INT: {
      int64_t v;
      RD(dl_rd_sv(&d->r, &v));
      lua_pushinteger(L, (lua_Integer)v);
      return 0;
    }
    case T_FLT: {
      uint64_t bits;
      lua_Number x;
      RD(dl_rd_u64(&d->r, &bits));
      memcpy(&x, &bits, 8);
      lua_pushnumber(L, x);
      return 0;
    }
    case T_STR: {
      const char *s;
      size_t l;
      RD(dl_rd_str(&d->r, &s, &l));
      lua_pushlstring(L, s, l);
      return 0;
    }
    case T_TABLE:
      return dec_table(d);
    case T_REF: {
      uint64_t j;
      RD(dl_rd_uv(&d->r, &j));
      if (j < 1 || j > (uint64_t)d->nrefs) return bad(d, "bad reference");
      push_ref(d, (lua_Integer)j);
      return 0;
    }
    case T_GLOBALS:
      lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
      return 0;
    case T_ENV:
    case T_ENV0:
      if (d->o && d->o->data_only)
        return bad(d, "globals table in data-only input");
      push_env(L);
      add_ref(d);
      return 0;
    case T_SENV:
      return dec_sandbox(d);
    case T_NAME:
    case T_MTNAME: {
      const char *s;
      size_t l;
      RD(dl_rd_str(&d->r, &s, &l));
      if (tag == T_NAME) return dec_name(d, s, l);
      if (memchr(s, '\0', l)) return bad(d, "bad metatable name");
      lua_pushlstring(L, s, l);
      if (lua_rawget(L, LUA_REGISTRYINDEX) != LUA_TTABLE) {
        lua_pop(L, 1);
        return bad(d, "unknown registered metatable");
      }
      lua_pushliteral(L, "__name");
      lua_rawget(L, -2);
      lua_pushlstring(L, s, l);
      if (!lua_rawequal(L, -1, -2)) return bad(d, "unknown registered metatable");
      lua_pop(L, 2);
      return 0;
    }
    case T_FN:
      return dec_function(d);
    case T_CUSTOM:
      return dec_custom(d);
    default:
      return bad(d, "unknown value tag");
  }
}

static int dec_main(lua_State *L) {
  dec *d = (dec *)lua_touserdata(L, 1);
  const char *h;
  int rc;
  lua_settop(L, 1 + STACK_REFS); /* the table of references, if any, at 1 */
  d->refs = 1;
  if (dl_rd_left(&d->r) < HEADER_LEN || memcmp(d->r.p, "DLC", 3) != 0) {
    rc = bad(d, "not a dlua codec message");
    goto out;
  }
  h = d->r.p;
  if ((unsigned char)h[3] != FORMAT_VERSION) {
    char m[80];
    snprintf(m, sizeof m, "unsupported format version %u (expected %u)",
             (unsigned char)h[3], FORMAT_VERSION);
    rc = bad(d, m);
    goto out;
  }
  if ((unsigned char)h[4] != (LUA_VERSION_NUM & 0xff) ||
      (unsigned char)h[5] != (LUA_VERSION_NUM >> 8) ||
      (unsigned char)h[6] != sizeof(lua_Integer) ||
      (unsigned char)h[7] != sizeof(lua_Number) || h[8] != 0) {
    rc = bad(d, "encoded by another Lua version or number format");
    goto out;
  }
  d->r.p += HEADER_LEN;
  rc = dec_value(d);
  if (rc == 0 && dl_rd_left(&d->r) != 0) rc = bad(d, "trailing bytes");
out:
  d->rc = rc;
  if (rc) {
    lua_settop(L, 0);
    lua_pushboolean(L, 0);
    return 1;
  }
  return 1;
}

/*
** Decode the n bytes at p and push the value; runs the decoder under
** lua_pcall.  [-0, +(0|1), -]
*/
int dl_codec_decode(lua_State *L, const char *p, size_t n,
                    const dl_dec_opts *o, char *err, size_t errlen) {
  dec d;
  int st;
  if (n > HEADER_LEN && memcmp(p, dl_codec_header, HEADER_LEN) == 0 &&
      lua_checkstack(L, 1)) {
    /* A plain value other than a string: nothing can raise, so no pcall. */
    const char *v = p + HEADER_LEN;
    size_t left = n - HEADER_LEN - 1;
    dl_rd r;
    dl_rd_init(&r, v + 1, left);
    switch (*v) {
      case T_NIL:
      case T_FALSE:
      case T_TRUE:
        if (left) break;
        if (*v == T_NIL) lua_pushnil(L);
        else lua_pushboolean(L, *v == T_TRUE);
        if (err && errlen) err[0] = '\0';
        return 0;
      case T_INT: {
        int64_t x;
        if (dl_rd_sv(&r, &x) || dl_rd_left(&r)) break;
        lua_pushinteger(L, (lua_Integer)x);
        if (err && errlen) err[0] = '\0';
        return 0;
      }
      case T_FLT: {
        uint64_t bits;
        lua_Number x;
        if (dl_rd_u64(&r, &bits) || dl_rd_left(&r)) break;
        memcpy(&x, &bits, 8);
        lua_pushnumber(L, x);
        if (err && errlen) err[0] = '\0';
        return 0;
      }
      default:
        break;
    }
  }
  memset(&d, 0, sizeof d);
  d.L = L;
  dl_rd_init(&d.r, p, n);
  d.base = p;
  d.o = o;
  d.err = err;
  d.errlen = errlen;
  d.protos = d.small;
  d.capprotos = (int)(sizeof d.small / sizeof *d.small);
  if (err && errlen) err[0] = '\0';
  if (!lua_checkstack(L, 4)) {
    dlc_set_err(err, errlen, "codec: Lua stack overflow");
    return DL_ENOMEM;
  }
  lua_pushcfunction(L, dec_main);
  lua_pushlightuserdata(L, &d);
  st = lua_pcall(L, 1, 1, 0);
  if (d.protos != d.small) dl_free(d.protos);
  dl_free(d.senvs);
  if (st != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    if (err && errlen)
      snprintf(err, errlen, "codec: %s", m ? m : "error while decoding");
    lua_pop(L, 1);
    return st == LUA_ERRMEM ? DL_ENOMEM : DL_EPROTO;
  }
  if (d.rc) {
    lua_pop(L, 1);
    return d.rc;
  }
  return 0;
}


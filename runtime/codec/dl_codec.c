/*
** dl_codec.c -- Lua values to bytes and back.
**
** Message layout: a 9-byte header ("DLC", format version, LUA_VERSION_NUM as
** two little-endian bytes, sizeof(lua_Integer), sizeof(lua_Number), 0), then
** one value.  A value is a tag byte and its payload:
**
**   NIL FALSE TRUE             no payload
**   INT                        zigzag varint
**   FLT                        8 bytes, IEEE-754 bits, little-endian
**   STR                        varint length, bytes
**   TABLE                      u32 narr, u32 nhash, narr values (keys
**                              1..narr), nhash key/value pairs, then u8 0,
**                              or u8 1 and the metatable (a value)
**   REF                        varint n: the n-th table/function/custom
**                              value of this message (1-based)
**   GLOBALS                    the receiver's globals table
**   NAME                       string "mod" or "mod\0field": resolved in
**                              package.loaded (require'd if absent)
**   MTNAME                     string tname: registry[tname]
**   FN                         prototype (u8 kind: P_INLINE + 16-byte hash
**                              + bytecode string | P_HASH + 16-byte hash |
**                              P_REF + varint proto index), u8 nups, then
**                              per upvalue u8 0 + value, or u8 1 + varint
**                              ref of a function + u8 upvalue number to join;
**                              then its globals: per global u8 upvalue
**                              number (of a globals table), string name,
**                              value; then u8 0
**   CUSTOM                     string tname, string payload
**   ENV                        a new globals table: empty, falling back to
**                              the receiver's globals (one per message)
**   ENV0                       the same, private to one function that
**                              reads no global sent by value
**
** Tables, Lua functions, custom values and globals tables get reference
** numbers in the order they are first met, by the encoder and the decoder
** alike; that keeps shared values shared and cycles cyclic.  The decoder
** recomputes the hash of bytecode before loading it; it must match.  Both
** directions run under lua_pcall so a Lua error (memory, a bad key)
** becomes an error return, never a longjmp into the caller; scratch C
** memory lives in the state structs and is freed after the pcall returns.
*/
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "dl_codec.h"

#define FORMAT_VERSION 2
#define HEADER_LEN 9
#define MAXDEPTH 200
#define MAXPATH (MAXDEPTH * 2 + 16)

enum {
  T_NIL, T_FALSE, T_TRUE, T_INT, T_FLT, T_STR, T_TABLE, T_REF, T_GLOBALS,
  T_NAME, T_MTNAME, T_FN, T_CUSTOM, T_ENV, T_ENV0,
  T_IDENT /* identity mode only: never decoded */
};
enum { P_INLINE, P_HASH, P_REF };

/* Registry slots, keyed by the addresses of these statics. */
static const char NAMES_KEY = 'n';  /* {count, index value -> name} */
static const char CODECS_KEY = 'c'; /* tname -> C codec udata or {enc, dec} */
static const char DUMPS_KEY = 'd';  /* weak: Lua function -> hash..bytecode */
/* {[S_SEEN] = t, [S_UVIDS] = t, [S_PROTOS] = t, busy = bool}: per-message
   tables kept between encodes (and emptied after each) to spare the
   allocator and the collector three tables per message. */
static const char SCRATCH_KEY = 's';
/* weak values: bytecode hash -> closure, for functions without upvalues
   (other than a private globals table) that can be shared between
   decodes. */
static const char LOADED_KEY = 'l';
/* weak keys: Lua function -> the globals it reads (see fn_globals). */
static const char GLOBS_KEY = 'g';
/* the metatable of decoded globals tables: {__index = the globals} */
static const char ENVMT_KEY = 'e';

/* A C codec pair as stored in the registry. */
typedef struct ccodec {
  dl_ud_encoder enc;
  dl_ud_decoder dec;
} ccodec;

/* ---------------------------------------------------------------- hash */

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

/*
** A 128-bit non-cryptographic hash of n bytes at p: two independent 64-bit
** lanes over the same words, finalised and cross-mixed.  Good enough to
** tell bytecode apart; peers sending bytecode are trusted anyway.
*/
static void hash128(const char *p, size_t n, unsigned char out[16]) {
  uint64_t a = P1 ^ (uint64_t)n, b = P2 + (uint64_t)n, w;
  size_t i;
  for (i = 0; i + 8 <= n; i += 8) {
    memcpy(&w, p + i, 8);
    a = rotl64(a ^ (w * P2), 31) * P1;
    b = rotl64(b + (w * P3), 29) * P4 ^ a;
  }
  w = 0;
  if (i < n) memcpy(&w, p + i, n - i);
  a = rotl64(a ^ (w * P2), 31) * P1;
  b = rotl64(b + (w * P3), 29) * P4;
  a = fmix64(a + b);
  b = fmix64(b ^ rotl64(a, 17));
  for (i = 0; i < 8; i++) {
    out[i] = (unsigned char)(a >> (8 * i));
    out[8 + i] = (unsigned char)(b >> (8 * i));
  }
}

/* The hash of function bytecode (see dl_codec.h). */
void dl_codec_hash(const char *p, size_t n, unsigned char out[16]) {
  hash128(p, n, out);
}

/* ------------------------------------------------------------ bytecode */

/*
** A reader of Lua 5.4 binary chunks (lua_dump's format, ldump.c) for two
** jobs.  Before lua_load, the decoder checks that a chunk is whole, that
** every count in it fits in its length (lua_load allocates what they say
** before reading), and that its header's upvalue count is its main
** function's: lua_load trusts it, and the decoder's lua_getupvalue /
** lua_setupvalue on a closure whose counts disagree would read outside it.
** The encoder lists the globals a function reads: GETTABUP with a
** constant string key on an upvalue that leads (through the enclosing
** functions' upvalues) to an upvalue of the function itself.  Neither job
** makes bytecode safe to run: Lua does not verify instructions, so a well
** formed chunk can still crash when called.
*/

#if LUA_VERSION_NUM != 504
#error "the bytecode reader knows the Lua 5.4 chunk format only"
#endif

#define BC_HEADER 31    /* signature, version, format, data, sizes, checks */
#define BC_NEST 200     /* nesting of prototypes, as Lua's parser allows */
#define BC_GETTABUP 11  /* OP_GETTABUP in lopcodes.h (5.4.0 - 5.4.6) */
#define BC_NONE 0xff

/* Called for each GETTABUP found (names may repeat); up is the 0-based
   index of the main function's upvalue it reads.  Non-zero stops the walk
   with an error. */
typedef int (*bc_global_fn)(void *ud, int up, const char *name, size_t len);

typedef struct bcr {
  const unsigned char *p, *end;
  int ok;
  bc_global_fn cb; /* NULL: only check */
  void *ud;
  /* The first 256 constants of the function being scanned (a GETTABUP key
     index has 8 bits); reused by every level, as a function's code is
     scanned before its children are read. */
  const unsigned char *kp[256];
  size_t kl[256];
  unsigned char kstr[256];
} bcr;

static unsigned bc_byte(bcr *r) {
  if (r->p >= r->end) {
    r->ok = 0;
    return 0;
  }
  return *r->p++;
}

/* lundump.c's loadUnsigned: 7-bit groups, most significant first, the last
   marked with 0x80. */
static size_t bc_size(bcr *r, size_t limit) {
  size_t x = 0;
  unsigned b;
  limit >>= 7;
  do {
    if (r->p >= r->end || x >= limit) {
      r->ok = 0;
      return 0;
    }
    b = *r->p++;
    x = (x << 7) | (b & 0x7f);
  } while (!(b & 0x80));
  return x;
}

static const unsigned char *bc_skip(bcr *r, size_t n) {
  const unsigned char *q = r->p;
  if (!r->ok || n > (size_t)(r->end - r->p)) {
    r->ok = 0;
    return NULL;
  }
  r->p += n;
  return q;
}

/* A string: size + 1, then its bytes (0: none).  Sets *len. */
static const unsigned char *bc_string(bcr *r, size_t *len) {
  size_t n = bc_size(r, ~(size_t)0);
  *len = 0;
  if (!r->ok || n == 0) return NULL;
  *len = n - 1;
  return bc_skip(r, n - 1);
}

/*
** Read one function.  pmap maps the parent's upvalues to the main
** function's (BC_NONE: elsewhere); NULL for the main function.  Returns
** its upvalue count.
*/
static size_t bc_function(bcr *r, const unsigned char *pmap, size_t pnups,
                          unsigned pstack, int depth) {
  unsigned char map[256];
  const unsigned char *code;
  size_t ncode, nk, nup, np, n, i, l;
  unsigned maxstack;
  if (depth > BC_NEST) r->ok = 0;
  bc_string(r, &l); /* source */
  bc_size(r, INT_MAX);
  bc_size(r, INT_MAX);
  bc_byte(r);
  bc_byte(r);
  maxstack = bc_byte(r);
  ncode = bc_size(r, INT_MAX);
  if (!r->ok || ncode > (size_t)(r->end - r->p) / 4) {
    r->ok = 0;
    return 0;
  }
  code = bc_skip(r, ncode * 4);
  nk = bc_size(r, INT_MAX);
  for (i = 0; i < nk && r->ok; i++) {
    unsigned t = bc_byte(r);
    const unsigned char *s = NULL;
    l = 0;
    switch (t) {
      case 0: case 1: case 17: /* nil, false, true */
        break;
      case 3: case 19: /* integer, float */
        bc_skip(r, 8);
        break;
      case 4: case 20: /* short, long string */
        s = bc_string(r, &l);
        if (s == NULL) r->ok = 0;
        break;
      default:
        r->ok = 0;
    }
    if (i < 256) {
      r->kp[i] = s;
      r->kl[i] = l;
      r->kstr[i] = s != NULL;
    }
  }
  nup = bc_size(r, INT_MAX);
  if (nup > 255) r->ok = 0;
  for (i = 0; i < nup && r->ok; i++) {
    unsigned instack = bc_byte(r), idx = bc_byte(r);
    bc_byte(r); /* kind */
    if (pmap == NULL) {
      map[i] = (unsigned char)i;
    } else if (instack) {
      if (idx >= pstack) r->ok = 0;
      map[i] = BC_NONE;
    } else {
      if (idx >= pnups) r->ok = 0;
      map[i] = idx < pnups ? pmap[idx] : BC_NONE;
    }
  }
  if (r->ok && r->cb) {
    for (i = 0; i < ncode; i++) {
      uint32_t ins;
      unsigned b, c;
      memcpy(&ins, code + 4 * i, 4);
      if ((ins & 0x7f) != BC_GETTABUP) continue;
      b = (ins >> 16) & 0xff;
      c = (ins >> 24) & 0xff;
      if (b < nup && map[b] != BC_NONE && c < nk && r->kstr[c] &&
          r->cb(r->ud, map[b], (const char *)r->kp[c], r->kl[c]))
        r->ok = 0;
    }
  }
  np = bc_size(r, INT_MAX);
  for (i = 0; i < np && r->ok; i++)
    bc_function(r, map, nup, maxstack, depth + 1);
  n = bc_size(r, INT_MAX); /* line info: none or one byte per instruction */
  if (n != 0 && n != ncode) r->ok = 0;
  bc_skip(r, n);
  n = bc_size(r, INT_MAX);
  for (i = 0; i < n && r->ok; i++) {
    bc_size(r, INT_MAX);
    bc_size(r, INT_MAX);
  }
  n = bc_size(r, INT_MAX);
  for (i = 0; i < n && r->ok; i++) {
    bc_string(r, &l);
    bc_size(r, INT_MAX);
    bc_size(r, INT_MAX);
  }
  n = bc_size(r, INT_MAX); /* upvalue names: none, or one per upvalue */
  if (n != 0 && n != nup) r->ok = 0;
  for (i = 0; i < n && r->ok; i++) bc_string(r, &l);
  return nup;
}

/* The header lua_dump writes in this process (lundump.c checkHeader). */
static void bc_header(unsigned char h[BC_HEADER]) {
  lua_Integer i = 0x5678;
  lua_Number x = 370.5;
  memcpy(h, "\x1bLua\x54\x00\x19\x93\r\n\x1a\n", 12);
  h[12] = 4;
  h[13] = sizeof(lua_Integer);
  h[14] = sizeof(lua_Number);
  memcpy(h + 15, &i, 8);
  memcpy(h + 23, &x, 8);
}

/*
** Check the chunk of n bytes at p (see above) and, if cb is not NULL, call
** it for each global the function reads.  Returns 0, or -1 if the chunk is
** not whole, well formed Lua 5.4 bytecode of this build (or cb failed).
*/
static int bc_walk(const char *p, size_t n, bc_global_fn cb, void *ud) {
  unsigned char hdr[BC_HEADER];
  bcr r;
  size_t nup;
  unsigned hn;
  bc_header(hdr);
  if (n < BC_HEADER + 1 || memcmp(p, hdr, BC_HEADER) != 0) return -1;
  r.p = (const unsigned char *)p + BC_HEADER;
  r.end = (const unsigned char *)p + n;
  r.ok = 1;
  r.cb = cb;
  r.ud = ud;
  hn = bc_byte(&r);
  nup = bc_function(&r, NULL, 0, 0, 0);
  return r.ok && nup == hn && r.p == r.end ? 0 : -1;
}

/* ------------------------------------------------------------- encoder */

/* Stack slots of enc_main: 1 the state, 2 the value, 3 the oob anchor
** table (or nil), then these. */
enum {
  S_SEEN = 4, S_UVIDS, S_PROTOS, S_NAMES, S_CODECS, S_DUMPS, S_GLOBS,
  S_GSENT, S_G
};
#define S_LAST S_G

enum { SEG_KEY, SEG_KEYOF, SEG_UPVAL, SEG_MT, SEG_GLOBAL };

typedef struct seg {
  int kind;
  int idx;          /* stack index: the key (KEY, KEYOF) or function */
  const char *name; /* upvalue or global name (UPVAL, GLOBAL) */
} seg;

typedef struct enc {
  lua_State *L;
  dl_buf *b;
  const dl_enc_opts *o;
  unsigned have; /* which of the S_* stack slots are filled */
  int nrefs, nprotos, depth, npath;
  dl_buf scratch; /* lua_dump output */
  dl_oob *oob;    /* may be NULL */
  /* The message's globals table (T_ENV): its reference number (0: none
     yet), the offset of its tag, and how many times it was used (a use
     is an upvalue, a join or a global sent into it). */
  int envref, envuses;
  size_t envpos;
  int reuse;      /* the registry's scratch tables are ours */
  int identity;   /* dl_codec_token: unsendable values by address */
  unsigned used_scratch;
  char *err;
  size_t errlen;
  seg path[MAXPATH]; /* last: not cleared, only path[0, npath) is used */
} enc;

#define TRY(x)              \
  do {                      \
    int rc_ = (x);          \
    if (rc_) return rc_;    \
  } while (0)

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
static int refuse(enc *e, const char *what, const char *why) {
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

static int push_seg(enc *e, int kind, int idx, const char *name) {
  if (e->npath >= MAXPATH) return refuse(e, "value", " (path too long)");
  e->path[e->npath].kind = kind;
  e->path[e->npath].idx = idx;
  e->path[e->npath].name = name;
  e->npath++;
  return 0;
}


/* Push registry[key] (a table), creating it (optionally weak-keyed). */
static void reg_table(lua_State *L, const void *key, int weak) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    if (weak) {
      lua_createtable(L, 0, 1);
      lua_pushliteral(L, "k");
      lua_setfield(L, -2, "__mode");
      lua_setmetatable(L, -2);
    }
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  }
}

/* Index v under name unless it has one; v at -1, name at -2 (kept). */
static void index_one(lua_State *L, int idx, int vi, int ni) {
  int t = lua_type(L, vi);
  if (t != LUA_TTABLE && t != LUA_TFUNCTION && t != LUA_TUSERDATA) return;
  lua_pushvalue(L, vi);
  if (lua_rawget(L, idx) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, vi);
  lua_pushvalue(L, ni);
  lua_rawset(L, idx);
}

/*
** Build the reverse index value -> name over package.loaded: each module by
** its name first, then the string-keyed fields of module tables as
** "mod\0field".  Of _G only C functions are indexed (the standard library;
** user globals are data).  Pushes the index.
*/
static void build_names(lua_State *L, int loaded) {
  int idx, pass;
  lua_newtable(L);
  idx = lua_gettop(L);
  for (pass = 0; pass < 2; pass++) {
    lua_pushnil(L);
    while (lua_next(L, loaded)) {
      int mod = lua_gettop(L);
      if (lua_type(L, mod - 1) != LUA_TSTRING) {
        lua_pop(L, 1);
        continue;
      }
      if (pass == 0) {
        index_one(L, idx, mod, mod - 1);
      } else if (lua_type(L, mod) == LUA_TTABLE) {
        int isg = strcmp(lua_tostring(L, mod - 1), "_G") == 0;
        lua_pushnil(L);
        while (lua_next(L, mod)) {
          if (lua_type(L, -2) == LUA_TSTRING &&
              (!isg || lua_iscfunction(L, -1))) {
            lua_pushvalue(L, mod - 1);
            lua_pushlstring(L, "\0", 1);
            lua_pushvalue(L, -4);
            lua_concat(L, 3);
            index_one(L, idx, lua_gettop(L) - 1, lua_gettop(L));
            lua_pop(L, 1);
          }
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
    }
  }
}

/* __newindex of package.loaded: store, then drop the name index. */
static int loaded_newindex(lua_State *L) {
  lua_settop(L, 3);
  lua_rawset(L, 1);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_KEY) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_rawseti(L, -2, 2);
  }
  return 0;
}

/*
** Push the name index, rebuilt when package.loaded gains modules.  The
** cache is {count, index, hook}: when package.loaded has no metatable we
** give it one whose __newindex drops the index (require stores new modules
** with a plain assignment); under a foreign metatable we count entries.
*/
static void get_names(enc *e) {
  lua_State *L = e->L;
  lua_Integer n = -1;
  int loaded, cache;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  loaded = lua_gettop(L);
  reg_table(L, &NAMES_KEY, 0);
  cache = loaded + 1;
  if (lua_type(L, loaded) == LUA_TTABLE) {
    if (!lua_getmetatable(L, loaded)) {
      lua_createtable(L, 0, 1);
      lua_pushcfunction(L, loaded_newindex);
      lua_setfield(L, -2, "__newindex");
      lua_pushvalue(L, -1);
      lua_rawseti(L, cache, 3);
      lua_pushvalue(L, -1);
      lua_setmetatable(L, loaded);
      lua_pushnil(L);
      lua_rawseti(L, cache, 2);
    }
    lua_rawgeti(L, cache, 3);
    if (!lua_rawequal(L, -1, -2)) {
      n = 0;
      lua_pushnil(L);
      while (lua_next(L, loaded)) {
        n++;
        lua_pop(L, 1);
      }
    }
    lua_settop(L, cache);
  }
  if (lua_rawgeti(L, cache, 2) == LUA_TTABLE &&
      (n < 0 || (lua_rawgeti(L, cache, 1), lua_tointeger(L, -1) == n))) {
    lua_settop(L, cache + 1);
  } else {
    lua_settop(L, cache);
    if (lua_type(L, loaded) == LUA_TTABLE)
      build_names(L, loaded);
    else
      lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawseti(L, cache, 2);
    lua_pushinteger(L, n);
    lua_rawseti(L, cache, 1);
  }
  lua_replace(L, loaded);
  lua_settop(L, loaded);
}

static void get_names(enc *e);

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
      get_names(e);
      break;
    case S_CODECS:
      reg_table(L, &CODECS_KEY, 0);
      break;
    case S_DUMPS:
      reg_table(L, &DUMPS_KEY, 1);
      break;
    case S_GLOBS:
      reg_table(L, &GLOBS_KEY, 1);
      break;
    case S_GSENT:
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
static void patch_uv9(dl_buf *b, size_t pos, uint64_t v) {
  int i;
  for (i = 0; i < 8; i++) {
    b->p[pos + i] = (char)((v & 0x7f) | 0x80);
    v >>= 7;
  }
  b->p[pos + 8] = (char)(v & 0x7f);
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
  int top = lua_gettop(L), t;
  size_t tl, pos;
  const char *tname;
  *rc = 0;
  if (!lua_getmetatable(L, idx)) return 0;
  lua_pushliteral(L, "__name");
  if (lua_rawget(L, -2) != LUA_TSTRING) goto none;
  tname = lua_tolstring(L, -1, &tl);
  lua_pushvalue(L, -1);
  t = lua_rawget(L, slot(e, S_CODECS));
  if (t != LUA_TUSERDATA && t != LUA_TTABLE) goto none;
  lua_getfield(L, LUA_REGISTRYINDEX, tname);
  if (!lua_rawequal(L, -1, top + 1)) goto none;
  lua_pop(L, 1);
  put_ref(e, idx);
  if (dl_buf_u8(e->b, T_CUSTOM) || dl_buf_str(e->b, tname, tl) ||
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
      *rc = e->identity ? put_ident(e, idx) : refuse(e, tname, " (its codec failed)");
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
      *rc = e->identity ? put_ident(e, idx) : refuse(e, tname, " (its encoder did not return a string)");
      goto done;
    }
    if (dl_buf_put(e->b, s, sl)) {
      *rc = DL_ENOMEM;
      goto done;
    }
  }
  patch_uv9(e->b, pos, e->b->len - pos - 9);
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
    return refuse(e, "value", " (nesting deeper than 200 levels)");
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
  TRY(push_seg(e, SEG_MT, 0, NULL));
  rc = enc_value(e, mt);
  e->npath--;
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
        TRY(push_seg(e, SEG_KEY, k, NULL));
        rc = enc_value(e, v);
        e->npath--;
        TRY(rc);
      }
      narr++;
    } else {
      arr = 0;
      TRY(push_seg(e, SEG_KEYOF, k, NULL));
      rc = enc_value(e, k);
      e->npath--;
      TRY(rc);
      TRY(push_seg(e, SEG_KEY, k, NULL));
      rc = enc_value(e, v);
      e->npath--;
      TRY(rc);
      nhash++;
    }
    lua_pop(L, 1);
  }
  patch_u32(e->b, pos, narr);
  patch_u32(e->b, pos + 4, nhash);
  if (lua_getmetatable(L, idx)) {
    TRY(dl_buf_u8(e->b, 1));
    rc = enc_mt(e, lua_gettop(L));
    lua_pop(L, 1);
    TRY(rc);
  } else {
    TRY(dl_buf_u8(e->b, 0));
  }
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
  hash128(e->scratch.p + 16, e->scratch.len - 16,
          (unsigned char *)e->scratch.p);
  lua_pushlstring(L, e->scratch.p, e->scratch.len);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -2);
  lua_rawset(L, S_DUMPS);
  return 0;
}

/* bc_walk's callback for fn_globals: append (up, name) to the buffer ud
   unless there already. */
static int glob_add(void *ud, int up, const char *name, size_t len) {
  dl_buf *b = (dl_buf *)ud;
  size_t i = 0;
  while (i + 2 <= b->len) {
    size_t l = (unsigned char)b->p[i + 1];
    if ((unsigned char)b->p[i] == (unsigned)up && l == len &&
        memcmp(b->p + i + 2, name, len) == 0)
      return 0;
    i += 2 + l;
  }
  if (len > 255) return 0; /* never: keys of GETTABUP are short strings */
  return dl_buf_u8(b, (unsigned)up) || dl_buf_u8(b, (unsigned)len) ||
                 dl_buf_put(b, name, len)
             ? DL_ENOMEM
             : 0;
}

/*
** Push the globals the Lua function at idx reads, found in its bytecode
** (nested functions included), as a string of entries [u8 upvalue index
** (0-based)][u8 length][name]; cached per function.
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
  if (bc_walk(s + 16, l - 16, glob_add, &e->scratch))
    return refuse(e, "function", " (its bytecode cannot be read)");
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
** the globals: each global it reads that this message has not sent yet,
** whose value is not nil and not the receiver's own (std_global), as
** u8 upvalue number (1-based), name, value; then u8 0.  The receiver
** stores them in the message's globals table (T_ENV).
*/
static int enc_globals(enc *e, int idx) {
  lua_State *L = e->L;
  const char *g;
  size_t gl, i;
  int rc, n;
  TRY(fn_globals(e, idx));
  g = lua_tolstring(L, -1, &gl); /* kept on the stack */
  for (i = 0; i + 2 <= gl;) {
    unsigned up = (unsigned char)g[i], nl = (unsigned char)g[i + 1];
    const char *name = g + i + 2;
    i += 2 + nl;
    if (!lua_getupvalue(L, idx, (int)up + 1)) continue;
    rc = lua_rawequal(L, -1, slot(e, S_G));
    lua_pop(L, 1);
    if (!rc) continue;
    lua_pushlstring(L, name, nl);
    n = lua_gettop(L);
    lua_pushvalue(L, n);
    if (lua_rawget(L, S_G) == LUA_TNIL || std_global(e, name, nl, n + 1)) {
      lua_pop(L, 2);
      continue;
    }
    lua_pushvalue(L, n);
    if (lua_rawget(L, slot(e, S_GSENT)) != LUA_TNIL) {
      lua_pop(L, 3);
      continue;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, n);
    lua_pushboolean(L, 1);
    lua_rawset(L, S_GSENT);
    if (dl_buf_u8(e->b, up + 1) || dl_buf_str(e->b, name, nl))
      return DL_ENOMEM;
    e->envuses++;
    TRY(push_seg(e, SEG_GLOBAL, idx, lua_tostring(L, n)));
    rc = enc_value(e, n + 1);
    e->npath--;
    TRY(rc);
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  return dl_buf_u8(e->b, 0);
}

/*
** A Lua function: its prototype, its upvalues, then its globals section.
** Upvalues that hold the sender's globals table become the message's
** globals table (T_ENV, then references to it): on the receiver a fresh
** table that falls back to the receiver's globals, filled with the
** globals the message's functions read (enc_globals).
*/
static int enc_function(enc *e, int idx) {
  lua_State *L = e->L;
  int rc, i, fref, d, hasg = 0;
  size_t pos, l;
  const char *s;
  if (e->o && e->o->data_only) return refuse(e, "function", " (data-only)");
  if (try_name(e, idx, &rc)) return rc;
  if (lua_iscfunction(L, idx) && e->identity)
    return put_ident(e, idx);
  if (lua_iscfunction(L, idx))
    return refuse(e, lua_getupvalue(L, idx, 1) ? (lua_pop(L, 1), "C function with upvalues")
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
    if (k && k->put && k->put(k->ud, (const unsigned char *)s, s + 16, l - 16)) {
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
    if (i > 255) return refuse(e, "function", " (too many upvalues)");
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
    TRY(push_seg(e, SEG_UPVAL, idx, name));
    rc = enc_value(e, lua_gettop(L));
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
      return refuse(e, what, NULL);
    }
    case LUA_TLIGHTUSERDATA:
      if (e->identity) return put_ident(e, idx);
      return refuse(e, "light userdata", NULL);
    case LUA_TTHREAD:
      if (e->identity) return put_ident(e, idx);
      return refuse(e, "coroutine", NULL);
    default:
      return refuse(e, lua_typename(L, t), NULL);
  }
}

static const unsigned char header[HEADER_LEN] = {
  'D', 'L', 'C', FORMAT_VERSION, LUA_VERSION_NUM & 0xff,
  LUA_VERSION_NUM >> 8, sizeof(lua_Integer), sizeof(lua_Number), 0};

static int enc_main(lua_State *L) {
  enc *e = (enc *)lua_touserdata(L, 1);
  int rc, i;
  lua_settop(L, S_LAST);
  if (dl_buf_put(e->b, header, sizeof header)) {
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

static void set_err(char *err, size_t errlen, const char *msg) {
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
    if (dl_buf_put(out, header, sizeof header) || put_plain(L, idx, out)) {
      out->len = start;
      set_err(err, errlen, "codec: out of memory");
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
    set_err(err, errlen, "codec: Lua stack overflow");
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
      set_err(err, errlen, "codec: out of memory");
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
  int rc;
  char *err;
  size_t errlen;
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

static int dec_table(dec *d) {
  lua_State *L = d->L;
  uint32_t narr, nhash, i;
  unsigned hasmt;
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
  RD(dl_rd_u8(&d->r, &hasmt));
  if (hasmt == 1) {
    TRY(dec_value(d));
    if (lua_type(L, -1) != LUA_TTABLE) return bad(d, "metatable is not a table");
    lua_setmetatable(L, t);
  } else if (hasmt != 0) {
    return bad(d, "bad metatable flag");
  }
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
  reg_table(L, &CODECS_KEY, 0);
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

/* Check the bytecode of prototype pr (its hash, then its structure) and
   load it as a function, pushed.  [-0, +(0|1), m] */
static int load_code(dec *d, proto *pr) {
  lua_State *L = d->L;
  lreader lr;
  if (!pr->verified) {
    unsigned char hash[16];
    hash128(pr->p, pr->n, hash);
    if (memcmp(hash, pr->hash, 16) != 0)
      return bad(d, "function bytecode does not match its hash (corrupt "
                    "input)");
    pr->verified = 1;
  }
  if (bc_walk(pr->p, pr->n, NULL, NULL)) return bad(d, "malformed bytecode");
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
  } else if (kind == P_INLINE || kind == P_HASH) {
    RD(dl_rd_bytes(&d->r, 16, &h));
    if (kind == P_INLINE) {
      RD(dl_rd_str(&d->r, &code, &len));
    } else {
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
    if (up > nups || !lua_getupvalue(L, f, (int)up) || !is_env(L, -1))
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
  if (n > HEADER_LEN && memcmp(p, header, HEADER_LEN) == 0 &&
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
    set_err(err, errlen, "codec: Lua stack overflow");
    return DL_ENOMEM;
  }
  lua_pushcfunction(L, dec_main);
  lua_pushlightuserdata(L, &d);
  st = lua_pcall(L, 1, 1, 0);
  if (d.protos != d.small) dl_free(d.protos);
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

/* ------------------------------------------------------------ register */

/* Register (or with both NULL remove) a C codec for tname.  [-0, +0, m] */
void dl_codec_register(lua_State *L, const char *tname, dl_ud_encoder enc,
                       dl_ud_decoder dec) {
  ccodec *c;
  reg_table(L, &CODECS_KEY, 0);
  if (enc == NULL && dec == NULL) {
    lua_pushnil(L);
    lua_setfield(L, -2, tname);
    lua_pop(L, 1);
    return;
  }
  c = (ccodec *)lua_newuserdatauv(L, sizeof *c, 0);
  c->enc = enc;
  c->dec = dec;
  lua_setfield(L, -2, tname);
  lua_pop(L, 1);
}

/*
** Register Lua functions enc (at stack index ei) and dec (di) as the codec
** for tname.  [-0, +0, m]
*/
void dl_codec_register_lua(lua_State *L, const char *tname, int ei, int di) {
  ei = lua_absindex(L, ei);
  di = lua_absindex(L, di);
  reg_table(L, &CODECS_KEY, 0);
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, ei);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, di);
  lua_rawseti(L, -2, 2);
  lua_setfield(L, -2, tname);
  lua_pop(L, 1);
}

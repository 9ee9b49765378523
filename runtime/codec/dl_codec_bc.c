/*
** dl_codec_bc.c -- the hash bytecode travels under, and the reader of Lua 5.4
** binary chunks (dl_codec_int.h says what it checks and finds).
*/
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "dl_codec_int.h"
#include "dl_map.h"

/* ---------------------------------------------------------------- hash */

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/*
** A 128-bit non-cryptographic hash of n bytes at p: two independent 64-bit
** lanes over the same words, finalised and cross-mixed.  Good enough to
** tell bytecode apart; peers sending bytecode are trusted anyway.
*/
void dlc_hash128(const char *p, size_t n, unsigned char out[16]) {
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
  a = dl_mix64(a + b);
  b = dl_mix64(b ^ rotl64(a, 17));
  for (i = 0; i < 8; i++) {
    out[i] = (unsigned char)(a >> (8 * i));
    out[8 + i] = (unsigned char)(b >> (8 * i));
  }
}

/* The hash of function bytecode (see dl_codec.h). */
void dl_codec_hash(const char *p, size_t n, unsigned char out[16]) {
  dlc_hash128(p, n, out);
}

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
      b = (ins >> 16) & 0xff;
      c = (ins >> 24) & 0xff;
      if ((ins & 0x7f) == BC_GETUPVAL || (ins & 0x7f) == BC_SETUPVAL) {
        if (b < nup && map[b] != BC_NONE && r->cb(r->ud, map[b], NULL, 0))
          r->ok = 0;
        continue;
      }
      if ((ins & 0x7f) != BC_GETTABUP) continue;
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
int dlc_bc_walk(const char *p, size_t n, bc_global_fn cb, void *ud) {
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


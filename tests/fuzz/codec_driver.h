/*
** codec_driver.h -- runs the codec's decoder on fuzzed bytes, for the
** fuzzer (fuzz_codec.c) and the C test that replays its findings.
**
** Two modes per input.  Data-only, as bytes from an unauthenticated peer
** would be decoded.  Full (functions and bytecode allowed), after the
** hash in front of every inline bytecode has been made consistent with
** the bytes behind it (cdrv_rehash): the hash catches corruption in
** transit, so the interesting question is what the decoder does with
** bytecode whose hash is right.  It must fail cleanly or give a value
** that encodes and decodes again; it must never crash.
**
** Decoded functions are never called: Lua does not verify bytecode, and
** running well-hashed garbage may crash by design (README, "Codec").  So
** the full-mode state never runs a finaliser either: its collector is
** stopped, and the state is dropped by freeing every block it allocated
** (cdrv_drop), never with lua_close.
*/
#ifndef codec_driver_h
#define codec_driver_h

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "dl_codec.h"

/* Mirrors of dl_codec_int.h's tags for a function with inline bytecode; a
   self-check in cdrv_full_state notices if the format moves. */
#define CDRV_T_FN 11
#define CDRV_P_INLINE 0

/* A C codec for "fuzz.Pt" userdata holding two integers. */
static int cdrv_pt_enc(lua_State *L, int idx, dl_buf *out, void *ctx) {
  lua_Integer *p = (lua_Integer *)lua_touserdata(L, idx);
  (void)ctx;
  return dl_buf_sv(out, p[0]) || dl_buf_sv(out, p[1]);
}

static int cdrv_pt_dec(lua_State *L, const char *s, size_t n, void *ctx) {
  dl_rd r;
  int64_t a, b;
  lua_Integer *p;
  (void)ctx;
  dl_rd_init(&r, s, n);
  if (dl_rd_sv(&r, &a) || dl_rd_sv(&r, &b) || dl_rd_left(&r)) return -1;
  p = (lua_Integer *)lua_newuserdatauv(L, 2 * sizeof *p, 0);
  p[0] = a;
  p[1] = b;
  luaL_setmetatable(L, "fuzz.Pt");
  return 0;
}

static void cdrv_setup(lua_State *L) {
  luaL_openlibs(L);
  luaL_newmetatable(L, "fuzz.Pt");
  lua_pop(L, 1);
  dl_codec_register(L, "fuzz.Pt", cdrv_pt_enc, cdrv_pt_dec);
}

/* --- an allocator whose blocks can all be freed at once */

typedef union cdrv_blk {
  struct {
    union cdrv_blk *prev, *next;
  } l;
  long double align; /* as malloc aligns */
} cdrv_blk;

static cdrv_blk cdrv_arena = {{&cdrv_arena, &cdrv_arena}};
static size_t cdrv_bytes;

static void cdrv_link(cdrv_blk *b) {
  b->l.prev = &cdrv_arena;
  b->l.next = cdrv_arena.l.next;
  cdrv_arena.l.next->l.prev = b;
  cdrv_arena.l.next = b;
}

static void cdrv_unlink(cdrv_blk *b) {
  b->l.prev->l.next = b->l.next;
  b->l.next->l.prev = b->l.prev;
}

static void *cdrv_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  cdrv_blk *b = ptr ? (cdrv_blk *)ptr - 1 : NULL, *nb;
  (void)ud;
  if (ptr == NULL) osize = 0;
  if (nsize == 0) {
    if (b) {
      cdrv_unlink(b);
      free(b);
      cdrv_bytes -= osize;
    }
    return NULL;
  }
  if (b) cdrv_unlink(b);
  nb = realloc(b, sizeof *nb + nsize);
  if (nb == NULL) {
    if (b) cdrv_link(b);
    return NULL;
  }
  cdrv_link(nb);
  cdrv_bytes += nsize - osize;
  return nb + 1;
}

/* Free every block of the full-mode state, running nothing. */
static void cdrv_drop(void) {
  cdrv_blk *b = cdrv_arena.l.next;
  while (b != &cdrv_arena) {
    cdrv_blk *n = b->l.next;
    free(b);
    b = n;
  }
  cdrv_arena.l.prev = cdrv_arena.l.next = &cdrv_arena;
  cdrv_bytes = 0;
}

/*
** Make the hash of every inline bytecode in p[0..n) the hash of the bytes
** behind it: wherever the bytes look like a function tag, the inline kind,
** 16 bytes and a length that fits.
*/
static void cdrv_rehash(unsigned char *p, size_t n) {
  size_t i;
  for (i = 0; i + 19 <= n; i++) {
    dl_rd r;
    uint64_t len;
    if (p[i] != CDRV_T_FN || p[i + 1] != CDRV_P_INLINE) continue;
    dl_rd_init(&r, p + i + 18, n - i - 18);
    if (dl_rd_uv(&r, &len) || len > dl_rd_left(&r)) continue;
    dl_codec_hash(r.p, (size_t)len, p + i + 2);
  }
}

static lua_State *cdrv_full_state(void) {
  lua_State *L = lua_newstate(cdrv_alloc, NULL);
  dl_buf b;
  char err[256];
  unsigned char *copy;
  if (L == NULL) abort();
  lua_gc(L, LUA_GCSTOP);
  cdrv_setup(L);
  /* require finds only what is loaded already */
  if (luaL_dostring(L, "package.path, package.cpath = '', ''")) abort();
  /* Self-check: a function's encoding has the layout cdrv_rehash knows. */
  dl_buf_init(&b);
  if (luaL_dostring(L, "return function() return 1 end") ||
      dl_codec_encode(L, -1, &b, NULL, err, sizeof err) || b.len < 40 ||
      (unsigned char)b.p[9] != CDRV_T_FN ||
      (unsigned char)b.p[10] != CDRV_P_INLINE) {
    fprintf(stderr, "codec_driver: the codec's function layout changed\n");
    abort();
  }
  copy = malloc(b.len);
  if (copy == NULL) abort();
  memcpy(copy, b.p, b.len);
  cdrv_rehash(copy, b.len);
  if (memcmp(copy, b.p, b.len) != 0) {
    fprintf(stderr, "codec_driver: rehash changed a valid encoding\n");
    abort();
  }
  free(copy);
  dl_buf_free(&b);
  lua_settop(L, 0);
  return L;
}

static lua_State *cdrv_full_L;

/* Drop the full-mode state (at the end of a test). */
static void cdrv_done(void) {
  cdrv_full_L = NULL;
  cdrv_drop();
}

/*
** Full mode on one input (see above).  Aborts if a value that decoded and
** encoded again does not decode.
*/
static void cdrv_full(const unsigned char *data, size_t n) {
  static unsigned long runs;
  lua_State *L;
  dl_dec_opts d = {0, NULL, NULL};
  unsigned char *buf;
  char err[256];
  if (cdrv_full_L == NULL || cdrv_bytes > ((size_t)256 << 20) ||
      ++runs % 2000 == 0) {
    cdrv_done();
    cdrv_full_L = cdrv_full_state();
  }
  L = cdrv_full_L;
  buf = malloc(n ? n : 1);
  if (buf == NULL) abort();
  memcpy(buf, data, n);
  cdrv_rehash(buf, n);
  if (dl_codec_decode(L, (const char *)buf, n, &d, err, sizeof err) == 0) {
    dl_buf b;
    dl_buf_init(&b);
    if (dl_codec_encode(L, -1, &b, NULL, err, sizeof err) == 0) {
      if (dl_codec_decode(L, b.p, b.len, &d, err, sizeof err) != 0) {
        fprintf(stderr, "full re-encoding does not decode: %s\n", err);
        abort();
      }
    }
    dl_buf_free(&b);
  }
  if (lua_gettop(L) > 2) {
    fprintf(stderr, "stack not balanced: %d\n", lua_gettop(L));
    abort();
  }
  lua_settop(L, 0);
  free(buf);
}

#endif

/*
** fuzz_codec.c -- libFuzzer target for the codec's decoder.
**
** Each input is decoded in data-only mode (as bytes from an unauthenticated
** peer would be) into one reused lua_State; whatever decodes is encoded
** again and the re-encoding must decode.  Then in full mode, with its
** inline bytecode hashes made consistent (codec_driver.h).  Built and run
** by scripts/fuzz.
**
** Compiled with -DDL_FUZZ_SEEDGEN instead, this file is a small program
** that writes valid encodings into a corpus directory as seeds.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "codec_driver.h"
#include "dl_codec.h"

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  cdrv_setup(L);
  return L;
}

#ifndef DL_FUZZ_SEEDGEN

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* libFuzzer entry: decode, re-encode, decode again, in both modes.  Never
   fails softly. */
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static lua_State *L;
  static unsigned long runs;
  dl_dec_opts d = {1, NULL, NULL};
  dl_enc_opts e = {1, NULL, NULL, "input"};
  char err[256];
  if (L == NULL) L = new_state();
  if (dl_codec_decode(L, (const char *)data, size, &d, err, sizeof err) == 0) {
    dl_buf b;
    dl_buf_init(&b);
    if (dl_codec_encode(L, -1, &b, &e, err, sizeof err) == 0) {
      if (dl_codec_decode(L, b.p, b.len, &d, err, sizeof err) != 0) {
        fprintf(stderr, "re-encoding does not decode: %s\n", err);
        abort();
      }
      lua_pop(L, 1);
    }
    dl_buf_free(&b);
    lua_pop(L, 1);
  }
  if (lua_gettop(L) != 0) {
    fprintf(stderr, "stack not balanced: %d\n", lua_gettop(L));
    abort();
  }
  if (++runs % 1000 == 0) lua_gc(L, LUA_GCCOLLECT);
  cdrv_full(data, size);
  return 0;
}

#else
#include "seed_save.h"


/* Values to seed the corpus with, as Lua expressions. */
static const char *const seeds[] = {
  "nil", "true", "false", "0", "-1", "math.mininteger", "math.maxinteger",
  "-0.0", "1/0", "0/0", "0.1", "'hello'", "('x'):rep(300)", "'\\0\\1\\255'",
  "{}", "{1, 2, 3}", "{1.5, 2.5, -0.0}", "{x = 1, y = {z = 'w'}}",
  "{1, nil, 3, [10] = 10, [-1] = true, [2.5] = 'f'}",
  "(function() local t = {} t.self = t t[t] = {t} return t end)()",
  "(function() local s = {1} return {s, s, {s}} end)()",
  "setmetatable({}, {__index = {a = 1}})",
  "setmetatable({1}, debug.getregistry()['FILE*'])",
  "{io.stdout, string, math}",
  "(function() local p = debug.getregistry().fuzz_pt return {p, p} end)()",
  "function() return 1 end",
  "function(x) return math.abs(x) + #string.rep('a', x) end",
  ("(function() G_N = 5 G_T = {1, {2}} G_T[3] = G_T "
   "function g_f(x) return G_N + x end "
   "return function(y) return g_f(y), G_T, math.pi end end)()"),
  ("(function() local u = {} local function rec(n) if n > 0 then "
   "return rec(n - 1) end return u end return {rec, u} end)()"),
  ("(function() local a = 1 return {function() return a end, "
   "function() a = a + 1 end} end)()"),
};

/* Write one seed file per entry of seeds[] into the directory argv[1]. */
int main(int argc, char **argv) {
  lua_State *L = new_state();
  lua_Integer *p;
  size_t i;
  if (argc < 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  p = (lua_Integer *)lua_newuserdatauv(L, 2 * sizeof *p, 0);
  p[0] = 3;
  p[1] = -4;
  luaL_setmetatable(L, "fuzz.Pt");
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz_pt");
  for (i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
    char name[32], err[256];
    dl_enc_opts o = {0, NULL, NULL, NULL};
    dl_buf b;
    lua_pushfstring(L, "return %s", seeds[i]);
    if (luaL_loadstring(L, lua_tostring(L, -1)) || lua_pcall(L, 0, 1, 0)) {
      fprintf(stderr, "seed %zu: %s\n", i, lua_tostring(L, -1));
      return 1;
    }
    dl_buf_init(&b);
    if (dl_codec_encode(L, -1, &b, &o, err, sizeof err)) {
      fprintf(stderr, "seed %zu: %s\n", i, err);
      return 1;
    }
    snprintf(name, sizeof name, "seed-%02zu", i);
    if (seed_save(argv[1], name, b.p, b.len)) {
      perror(name);
      return 1;
    }
    dl_buf_free(&b);
    lua_pop(L, 2);
  }
  lua_close(L);
  return 0;
}

#endif

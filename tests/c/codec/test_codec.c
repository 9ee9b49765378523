/*
** test_codec.c -- C API tests of the codec: replay of the fuzzer's saved
** regressions, round trips, C userdata codecs, function sinks and sources.
** Run from the repository root.
*/
#define _GNU_SOURCE /* memmem */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "codec_driver.h"
#include "dl_codec.h"
#include "tap.h"

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  CHECK(L != NULL);
  luaL_openlibs(L);
  return L;
}

/* Evaluate the Lua expression src and leave its value on the stack. */
static void eval(lua_State *L, const char *src) {
  lua_pushfstring(L, "return %s", src);
  CHECK(luaL_loadstring(L, lua_tostring(L, -1)) == LUA_OK);
  lua_remove(L, -2);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "# %s\n", lua_tostring(L, -1));
    CHECK(0);
  }
}

/* Run the Lua chunk src with the value at the top as its argument `v`;
** it must return true. */
static void check_lua(lua_State *L, const char *src) {
  CHECK(luaL_loadstring(L, src) == LUA_OK);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "# %s\n", lua_tostring(L, -1));
    CHECK(0);
  }
  CHECK(lua_toboolean(L, -1));
  lua_pop(L, 1);
}

/* A saved input decodes and re-encodes, or fails with the codec's own
   error. */
static void codec_one(const unsigned char *data, size_t len, void *ud) {
  lua_State *L = ud;
  char err[256];
  dl_dec_opts d = {1, NULL, NULL};
  if (dl_codec_decode(L, (const char *)data, len, &d, err, sizeof err) == 0) {
    dl_buf b;
    dl_enc_opts e = {1, NULL, NULL, NULL};
    dl_buf_init(&b);
    if (dl_codec_encode(L, -1, &b, &e, err, sizeof err) == 0)
      CHECK(dl_codec_decode(L, b.p, b.len, &d, err, sizeof err) == 0);
    dl_buf_free(&b);
  } else {
    CHECK(strncmp(err, "codec: ", 7) == 0);
  }
  lua_settop(L, 0);
}

/* The same input in full mode, as the fuzzer runs it (codec_driver.h). */
static void codec_full_one(const unsigned char *data, size_t len, void *ud) {
  (void)ud;
  cdrv_full(data, len);
}

static void test_regressions(void) {
  lua_State *L = new_state();
  CHECK(tap_replay("tests/fuzz/regressions", codec_one, L) > 0);
  CHECK(tap_replay("tests/fuzz/regressions", codec_full_one, NULL) > 0);
  cdrv_done();
  lua_close(L);
}

static void test_roundtrip(void) {
  lua_State *L = new_state();
  dl_buf b;
  char err[256];
  int top;
  dl_buf_init(&b);
  eval(L, "(function() local t = {1, 2.5, 'x', math.mininteger, -0.0}"
          " t.self = t t.sq = math.sqrt return t end)()");
  top = lua_gettop(L);
  CHECK(dl_codec_encode(L, -1, &b, NULL, err, sizeof err) == 0);
  CHECK(lua_gettop(L) == top);
  CHECK(dl_codec_decode(L, b.p, b.len, NULL, err, sizeof err) == 0);
  CHECK(lua_gettop(L) == top + 1);
  check_lua(L, "local v = ... return v[1] == 1 and v[2] == 2.5 and v[3] == 'x'"
               " and v[4] == math.mininteger and 1/v[5] == -math.huge"
               " and v.self == v and v.sq == math.sqrt");
  /* Every strict prefix fails cleanly and pushes nothing. */
  {
    size_t i;
    for (i = 0; i < b.len; i++) {
      CHECK(dl_codec_decode(L, b.p, i, NULL, err, sizeof err) < 0);
      CHECK(lua_gettop(L) == top);
    }
  }
  dl_buf_free(&b);
  lua_close(L);
}

static void test_refusal(void) {
  lua_State *L = new_state();
  dl_buf b;
  char err[256];
  dl_enc_opts o = {0, NULL, NULL, "argument 3"};
  dl_buf_init(&b);
  eval(L, "{co = coroutine.create(print)}");
  CHECK(dl_codec_encode(L, -1, &b, &o, err, sizeof err) < 0);
  CHECK(strcmp(err, "cannot send coroutine at field 'co' of argument 3") == 0);
  CHECK(b.len == 0);
  CHECK(lua_gettop(L) == 1);
  /* A tiny error buffer truncates but stays terminated. */
  CHECK(dl_codec_encode(L, -1, &b, &o, err, 8) < 0);
  CHECK(strlen(err) == 7);
  CHECK(dl_codec_encode(L, -1, &b, &o, NULL, 0) < 0);
  dl_buf_free(&b);
  lua_close(L);
}

/* ---- a C userdata codec ---- */

typedef struct pt {
  lua_Integer x, y;
} pt;

static int pt_enc(lua_State *L, int idx, dl_buf *out, void *ctx) {
  pt *p = (pt *)luaL_checkudata(L, idx, "test.Pt");
  CHECK(ctx == (void *)&pt_enc);
  return dl_buf_sv(out, p->x) || dl_buf_sv(out, p->y);
}

static int pt_dec(lua_State *L, const char *s, size_t n, void *ctx) {
  dl_rd r;
  int64_t x, y;
  pt *p;
  (void)ctx;
  dl_rd_init(&r, s, n);
  if (dl_rd_sv(&r, &x) || dl_rd_sv(&r, &y) || dl_rd_left(&r)) return -1;
  p = (pt *)lua_newuserdatauv(L, sizeof *p, 0);
  p->x = x;
  p->y = y;
  luaL_setmetatable(L, "test.Pt");
  return 0;
}

static void test_c_codec(void) {
  lua_State *L = new_state();
  dl_buf b;
  char err[256];
  pt *p;
  dl_enc_opts o = {0, NULL, (void *)&pt_enc, NULL};
  dl_buf_init(&b);
  luaL_newmetatable(L, "test.Pt");
  lua_pop(L, 1);
  lua_newtable(L);
  p = (pt *)lua_newuserdatauv(L, sizeof *p, 0);
  p->x = 7;
  p->y = -9;
  luaL_setmetatable(L, "test.Pt");
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, 1);
  lua_rawseti(L, -2, 2);
  /* Without a codec the userdata is refused. */
  CHECK(dl_codec_encode(L, -1, &b, &o, err, sizeof err) < 0);
  CHECK(strcmp(err, "cannot send userdata (test.Pt) at [1] of value") == 0);
  dl_codec_register(L, "test.Pt", pt_enc, pt_dec);
  CHECK(dl_codec_encode(L, -1, &b, &o, err, sizeof err) == 0);
  CHECK(dl_codec_decode(L, b.p, b.len, NULL, err, sizeof err) == 0);
  check_lua(L, "local v = ... return v[1] == v[2] and type(v[1]) == 'userdata'"
               " and getmetatable(v[1]) == debug.getregistry()['test.Pt']");
  lua_rawgeti(L, -1, 1);
  p = (pt *)luaL_checkudata(L, -1, "test.Pt");
  CHECK(p->x == 7 && p->y == -9);
  dl_buf_free(&b);
  lua_close(L);
}

/* ---- a function sink and source: a small store keyed by hash ---- */

typedef struct store {
  unsigned char hash[8][16];
  char *code[8];
  size_t len[8];
  int n, puts;
} store;

static int st_put(void *ud, const unsigned char hash[16], const char *code,
                  size_t len) {
  store *s = (store *)ud;
  int i;
  s->puts++;
  for (i = 0; i < s->n; i++)
    if (memcmp(s->hash[i], hash, 16) == 0) return 1;
  if (s->n == 8) return 0;
  memcpy(s->hash[s->n], hash, 16);
  s->code[s->n] = malloc(len);
  CHECK(s->code[s->n] != NULL);
  memcpy(s->code[s->n], code, len);
  s->len[s->n] = len;
  s->n++;
  return 1;
}

static int st_get(void *ud, const unsigned char hash[16], const char **code,
                  size_t *len) {
  store *s = (store *)ud;
  int i;
  for (i = 0; i < s->n; i++)
    if (memcmp(s->hash[i], hash, 16) == 0) {
      *code = s->code[i];
      *len = s->len[i];
      return 0;
    }
  return -1;
}

static void test_fnsink(void) {
  lua_State *L = new_state();
  lua_State *R = new_state();
  store s;
  dl_fnsink sink = {st_put, &s, NULL};
  dl_fnsource src = {st_get, &s, NULL};
  dl_enc_opts eo = {0, &sink, NULL, NULL};
  dl_dec_opts dop = {0, &src, NULL};
  dl_buf inl, ref;
  char err[256];
  int i;
  memset(&s, 0, sizeof s);
  dl_buf_init(&inl);
  dl_buf_init(&ref);
  eval(L, "(function() local k = 40 local function mk(i) return function()"
          " k = k + 1 return k + i end end return {mk(1), mk(2)} end)()");
  CHECK(dl_codec_encode(L, -1, &inl, NULL, err, sizeof err) == 0);
  CHECK(dl_codec_encode(L, -1, &ref, &eo, err, sizeof err) == 0);
  CHECK(s.n == 1 && s.puts == 1); /* one prototype, offered once */
  CHECK(ref.len + s.len[0] - 40 < inl.len);
  /* The receiver (another state) resolves the hash through the source. */
  CHECK(dl_codec_decode(R, ref.p, ref.len, &dop, err, sizeof err) == 0);
  check_lua(R, "local v = ... return v[1]() == 42 and v[2]() == 44"
               " and debug.upvalueid(v[1], 1) == debug.upvalueid(v[2], 1)");
  /* Without the source, or in data-only mode, it fails cleanly. */
  CHECK(dl_codec_decode(R, ref.p, ref.len, NULL, err, sizeof err) < 0);
  CHECK(strstr(err, "unknown function hash") != NULL);
  dop.data_only = 1;
  CHECK(dl_codec_decode(R, ref.p, ref.len, &dop, err, sizeof err) < 0);
  CHECK(strstr(err, "data-only") != NULL);
  CHECK(lua_gettop(R) == 0);
  /* A second message offers the bytecode again; the sink already has it. */
  dl_buf_free(&ref);
  CHECK(dl_codec_encode(L, -1, &ref, &eo, err, sizeof err) == 0);
  CHECK(s.n == 1 && s.puts == 2);
  /* Bytecode the source holds under a hash it does not have is refused. */
  s.code[0][s.len[0] / 2] ^= 1;
  CHECK(dl_codec_decode(R, ref.p, ref.len, &dop, err, sizeof err) < 0);
  dop.data_only = 0;
  CHECK(dl_codec_decode(R, ref.p, ref.len, &dop, err, sizeof err) < 0);
  CHECK(strstr(err, "does not match its hash") != NULL);
  s.code[0][s.len[0] / 2] ^= 1;
  CHECK(dl_codec_decode(R, ref.p, ref.len, &dop, err, sizeof err) == 0);
  lua_settop(R, 0);
  for (i = 0; i < s.n; i++) free(s.code[i]);
  dl_buf_free(&inl);
  dl_buf_free(&ref);
  lua_close(L);
  lua_close(R);
}

/* The sink by position: the store's slot of the hash. */
static int st_put_at(void *ud, const unsigned char hash[16], const char *code,
                     size_t len, uint64_t *at) {
  store *s = (store *)ud;
  int i;
  if (!st_put(ud, hash, code, len)) return 0;
  for (i = 0; i < s->n; i++)
    if (memcmp(s->hash[i], hash, 16) == 0) *at = (uint64_t)i;
  return 1;
}

static int st_get_at(void *ud, uint64_t at, const unsigned char **hash,
                     const char **code, size_t *len) {
  store *s = (store *)ud;
  if (at >= (uint64_t)s->n) return -1;
  *hash = s->hash[at];
  *code = s->code[at];
  *len = s->len[at];
  return 0;
}

/* A function named by its position in a list beside the message (a
   task's functions): no hash in the bytes, and the same closures back. */
static void test_fnsink_at(void) {
  lua_State *L = new_state();
  lua_State *R = new_state();
  store s;
  dl_fnsink sink = {NULL, &s, st_put_at};
  dl_fnsource src = {NULL, &s, st_get_at};
  dl_fnsource nosrc = {st_get, &s, NULL};
  dl_enc_opts eo = {0, &sink, NULL, NULL};
  dl_dec_opts dop = {0, &src, NULL};
  dl_buf at;
  char err[256];
  int i;
  memset(&s, 0, sizeof s);
  dl_buf_init(&at);
  eval(L, "(function() local k = 40 local function mk(i) return function()"
          " k = k + 1 return k + i end end"
          " return {mk(1), mk(2), function(x) return x * 2 end} end)()");
  CHECK(dl_codec_encode(L, -1, &at, &eo, err, sizeof err) == 0);
  CHECK(s.n == 2);
  for (i = 0; i < s.n; i++)
    CHECK(memmem(at.p, at.len, s.hash[i], 16) == NULL);
  CHECK(dl_codec_decode(R, at.p, at.len, &dop, err, sizeof err) == 0);
  check_lua(R, "local v = ... return v[1]() == 42 and v[2]() == 44"
               " and v[3](4) == 8");
  /* A source without positions, or a position past the list: refused. */
  dop.fns = &nosrc;
  CHECK(dl_codec_decode(R, at.p, at.len, &dop, err, sizeof err) < 0);
  CHECK(strstr(err, "unknown function position") != NULL);
  dop.fns = &src;
  s.n = 1;
  CHECK(dl_codec_decode(R, at.p, at.len, &dop, err, sizeof err) < 0);
  s.n = 2;
  CHECK(lua_gettop(R) == 0);
  for (i = 0; i < s.n; i++) free(s.code[i]);
  dl_buf_free(&at);
  lua_close(L);
  lua_close(R);
}

/*
** A chunk whose hash is right but whose header promises fewer upvalues
** than its function has: lua_load trusts the header, and reading the
** closure's upvalues would go past it.  The decoder checks the chunk.
*/
static void test_malformed_chunk(void) {
  lua_State *L = new_state();
  store s;
  dl_fnsink sink = {st_put, &s, NULL};
  dl_enc_opts eo = {0, &sink, NULL, NULL};
  dl_buf inl, ref;
  char err[256], *h, *code;
  memset(&s, 0, sizeof s);
  dl_buf_init(&inl);
  dl_buf_init(&ref);
  eval(L, "(function() local a, b, c = 1, 2, {} return function()"
          " c[a] = b return a + b end end)()");
  CHECK(dl_codec_encode(L, -1, &inl, NULL, err, sizeof err) == 0);
  CHECK(dl_codec_encode(L, -1, &ref, &eo, err, sizeof err) == 0);
  CHECK(s.n == 1);
  h = memmem(inl.p, inl.len, s.hash[0], 16);
  code = memmem(inl.p, inl.len, s.code[0], s.len[0]);
  CHECK(h != NULL && code != NULL && code[31] == 3);
  code[31] = 0; /* the upvalue count in the chunk's header */
  dl_codec_hash(code, s.len[0], (unsigned char *)h);
  CHECK(dl_codec_decode(L, inl.p, inl.len, NULL, err, sizeof err) < 0);
  CHECK(strstr(err, "malformed bytecode") != NULL);
  code[31] = 3;
  dl_codec_hash(code, s.len[0], (unsigned char *)h);
  CHECK(dl_codec_decode(L, inl.p, inl.len, NULL, err, sizeof err) == 0);
  check_lua(L, "local f = ... return f() == 3");
  free(s.code[0]);
  dl_buf_free(&inl);
  dl_buf_free(&ref);
  lua_close(L);
}

static void test_other_state(void) {
  lua_State *L = new_state();
  lua_State *R = new_state();
  dl_buf b;
  char err[256];
  dl_buf_init(&b);
  eval(L, "(function() local sq = math.sqrt local function f(x)"
          " return sq(x) + #string.rep('a', 3) end return f end)()");
  CHECK(dl_codec_encode(L, -1, &b, NULL, err, sizeof err) == 0);
  CHECK(dl_codec_decode(R, b.p, b.len, NULL, err, sizeof err) == 0);
  check_lua(R, "local f = ... local _, sq = debug.getupvalue(f, 1)"
               " local _, env = debug.getupvalue(f, 2)"
               " return f(16) == 7.0 and sq == math.sqrt and env ~= _G"
               " and getmetatable(env).__index == _G");
  dl_buf_free(&b);
  lua_close(L);
  lua_close(R);
}

static void test_oob(void) {
  lua_State *L = new_state();
  dl_buf b, whole;
  dl_oob oob;
  char err[256];
  size_t i, pos = 0;
  dl_buf_init(&b);
  dl_buf_init(&whole);
  memset(&oob, 0, sizeof oob);
  oob.min = 1000;
  eval(L, "{('x'):rep(5000), 'short', {('y'):rep(2000)}}");
  CHECK(dl_codec_encode_oob(L, -1, &b, NULL, &oob, err, sizeof err) == 0);
  CHECK(oob.nsegs == 2);
  CHECK(oob.segs[0].n == 5000 && oob.segs[1].n == 2000);
  CHECK(oob.segs[0].at < oob.segs[1].at && oob.segs[1].at <= b.len);
  CHECK(b.len < 100); /* the big strings stayed out */
  /* Assemble as a writer with writev would, then decode. */
  for (i = 0; i < oob.nsegs; i++) {
    CHECK(dl_buf_put(&whole, b.p + pos, oob.segs[i].at - pos) == 0);
    CHECK(dl_buf_put(&whole, oob.segs[i].p, oob.segs[i].n) == 0);
    pos = oob.segs[i].at;
  }
  CHECK(dl_buf_put(&whole, b.p + pos, b.len - pos) == 0);
  CHECK(dl_codec_decode(L, whole.p, whole.len, NULL, err, sizeof err) == 0);
  check_lua(L, "local v = ... return v[1] == ('x'):rep(5000) and"
               " v[2] == 'short' and v[3][1] == ('y'):rep(2000)");
  /* The assembled message equals the plain encoding. */
  dl_buf_free(&b);
  CHECK(dl_codec_encode(L, -1, &b, NULL, err, sizeof err) == 0);
  CHECK(b.len == whole.len && memcmp(b.p, whole.p, b.len) == 0);
  dl_oob_free(&oob);
  CHECK(oob.segs == NULL && oob.nsegs == 0);
  dl_buf_free(&b);
  dl_buf_free(&whole);
  lua_close(L);
}

static void test_row(void) {
  lua_State *L = new_state();
  dl_buf shape, row, whole;
  char err[256];
  int top;
  dl_buf_init(&shape);
  dl_buf_init(&row);
  dl_buf_init(&whole);
  /* The shape shares a table between a field and an upvalue. */
  eval(L, "(function() local t = {k = 2} F = function(x) return x * t.k"
          " end T = t return {f = F, n = 3, t = t} end)()");
  CHECK(dl_codec_encode(L, -1, &shape, NULL, err, sizeof err) == 0);
  lua_pushinteger(L, 7);
  lua_pushnumber(L, 2.5);
  lua_pushliteral(L, "s");
  top = lua_gettop(L);
  CHECK(dl_codec_encode_row(L, shape.p, shape.len, top - 2, 3, &row) == 0);
  CHECK(lua_gettop(L) == top);
  CHECK(dl_codec_decode(L, row.p, row.len, NULL, err, sizeof err) == 0);
  check_lua(L, "local v = ... local _, t = debug.getupvalue(v.f, 1)"
               " return v[1] == 7 and v[2] == 2.5 and v[3] == 's' and"
               " v.n == 3 and t == v.t and v.f(v[1]) == 14");
  /* The same bytes as encoding the whole table. */
  eval(L, "{7, 2.5, 's', f = F, n = 3, t = T}");
  CHECK(dl_codec_encode(L, -1, &whole, NULL, err, sizeof err) == 0);
  CHECK(whole.len == row.len && memcmp(whole.p, row.p, row.len) == 0);
  lua_settop(L, top);
  /* nil is a plain value too. */
  row.len = 0;
  lua_pushnil(L);
  CHECK(dl_codec_encode_row(L, shape.p, shape.len, top, 2, &row) == 0);
  CHECK(dl_codec_decode(L, row.p, row.len, NULL, err, sizeof err) == 0);
  check_lua(L, "local v = ... return v[1] == 's' and v[2] == nil");
  lua_settop(L, top);
  /* A table is not: nothing is written. */
  row.len = 0;
  lua_newtable(L);
  CHECK(dl_codec_encode_row(L, shape.p, shape.len, top, 2, &row) == 1);
  CHECK(row.len == 0);
  /* Only a table without array part is a shape. */
  CHECK(dl_codec_encode_row(L, row.p, 0, top, 1, &row) == DL_EINVAL);
  CHECK(dl_codec_encode(L, top - 2, &whole, NULL, err, sizeof err) == 0);
  CHECK(dl_codec_encode_row(L, whole.p, whole.len, top, 1, &row) ==
        DL_EINVAL);
  dl_buf_free(&shape);
  dl_buf_free(&row);
  dl_buf_free(&whole);
  lua_close(L);
}

int main(void) {
  RUN(test_regressions);
  RUN(test_roundtrip);
  RUN(test_refusal);
  RUN(test_c_codec);
  RUN(test_fnsink);
  RUN(test_fnsink_at);
  RUN(test_malformed_chunk);
  RUN(test_other_state);
  RUN(test_oob);
  RUN(test_row);
  return TAP_END();
}

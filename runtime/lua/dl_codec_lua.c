/*
** dl_codec_lua.c -- the "dlua.codec" module: the codec's Lua face.
**
**   codec.encode(v [, opts]) -> string     opts: data_only, root
**   codec.token(v) -> string               bytes for a key hash (dl_codec_token)
**   codec.decode(s [, opts]) -> v          opts: data_only
**   codec.register(tname, enc, dec)        enc(v) -> string, dec(s) -> v
**   codec.register(tname)                  remove tname's codec
**
** encode and decode raise the codec's message on refusal or bad input.
*/
#include <string.h>

#include <lauxlib.h>

#include "dl_codec.h"
#include "dl_runtime.h"

/* Read boolean opts.k from the table at idx (absent -> 0). */
static int opt_flag(lua_State *L, int idx, const char *k) {
  int v;
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  lua_getfield(L, idx, k);
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/*
** Scratch memory for encode lives in a userdata (an upvalue of encode) so a
** raise cannot leak it; it is reused across calls.  A nested encode (from a
** Lua codec's encoder) finds it busy and makes a temporary one.
*/
typedef struct scratch {
  dl_buf b;
  dl_oob oob;
  int busy;
} scratch;

#define OOB_MIN 65536     /* strings this long are concatenated, not copied */
#define KEEP_MAX (1 << 20) /* scratch capacity kept between calls */

static int scratch_gc(lua_State *L) {
  scratch *s = (scratch *)lua_touserdata(L, 1);
  dl_buf_free(&s->b);
  dl_oob_free(&s->oob);
  return 0;
}

/* Push a new scratch userdata.  [-0, +1, m] */
static scratch *new_scratch(lua_State *L) {
  scratch *s = (scratch *)lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  dl_buf_init(&s->b);
  if (luaL_newmetatable(L, "dlua.codec.scratch")) {
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return s;
}

static void scratch_reset(scratch *s) {
  s->b.len = 0;
  s->oob.nsegs = 0;
  if (s->b.cap > KEEP_MAX) dl_buf_free(&s->b);
  if (s->oob.cap > 64) dl_oob_free(&s->oob);
  s->busy = 0;
}

/* codec.encode(v [, opts]) -> string; raises the codec's message. */
static int codec_encode(lua_State *L) {
  dl_enc_opts o;
  scratch *s = (scratch *)lua_touserdata(L, lua_upvalueindex(1));
  char err[512];
  size_t i, pos = 0;
  int rc, n = 0;
  luaL_checkany(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  memset(&o, 0, sizeof o);
  o.data_only = opt_flag(L, 2, "data_only");
  lua_pushnil(L);
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_getfield(L, 2, "root");
    lua_replace(L, 3);
    o.root = lua_tostring(L, 3); /* kept alive at index 3 */
  }
  lua_newtable(L); /* 4: the out-of-band strings */
  if (s->busy) s = new_scratch(L);
  s->busy = 1;
  s->oob.min = OOB_MIN;
  s->oob.anchor = 4;
  rc = dl_codec_encode_oob(L, 1, &s->b, &o, &s->oob, err, sizeof err);
  if (rc) {
    scratch_reset(s);
    return luaL_error(L, "%s", err);
  }
  if (s->oob.nsegs == 0) {
    lua_pushlstring(L, s->b.p, s->b.len);
  } else {
    /* One lua_concat copies every piece once into the result. */
    luaL_checkstack(L, (int)(2 * s->oob.nsegs + 1), "too many strings");
    for (i = 0; i < s->oob.nsegs; i++) {
      lua_pushlstring(L, s->b.p + pos, s->oob.segs[i].at - pos);
      lua_rawgeti(L, 4, (lua_Integer)i + 1);
      pos = s->oob.segs[i].at;
      n += 2;
    }
    lua_pushlstring(L, s->b.p + pos, s->b.len - pos);
    lua_concat(L, n + 1);
  }
  scratch_reset(s);
  return 1;
}

/* codec.token(v) -> string: the bytes for a key hash (dl_codec_token). */
static int codec_token(lua_State *L) {
  scratch *s = (scratch *)lua_touserdata(L, lua_upvalueindex(1));
  char err[512];
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  if (s->busy) s = new_scratch(L);
  s->busy = 1;
  if (dl_codec_token(L, 1, &s->b, err, sizeof err)) {
    scratch_reset(s);
    return luaL_error(L, "%s", err);
  }
  lua_pushlstring(L, s->b.p, s->b.len);
  scratch_reset(s);
  return 1;
}

/* codec.decode(s [, opts]) -> v; raises on bad input. */
static int codec_decode(lua_State *L) {
  dl_dec_opts o;
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char err[512];
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  memset(&o, 0, sizeof o);
  o.data_only = opt_flag(L, 2, "data_only");
  if (dl_codec_decode(L, s, n, &o, err, sizeof err)) return luaL_error(L, "%s", err);
  return 1;
}

/* codec.register(tname, enc, dec); codec.register(tname) removes. */
static int codec_register(lua_State *L) {
  const char *tname = luaL_checkstring(L, 1);
  if (lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3)) {
    dl_codec_register(L, tname, NULL, NULL); /* unregister */
    return 0;
  }
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  dl_codec_register_lua(L, tname, 2, 3);
  return 0;
}

static const luaL_Reg codec_funcs[] = {
  {"encode", codec_encode},
  {"decode", codec_decode},
  {"token", codec_token},
  {"register", codec_register},
  {NULL, NULL}
};

/* Open the dlua.codec module: its functions share one scratch userdata.
** [-0, +1, m] */
int luaopen_dlua_codec(lua_State *L) {
  luaL_newlibtable(L, codec_funcs);
  new_scratch(L);
  luaL_setfuncs(L, codec_funcs, 1);
  return 1;
}

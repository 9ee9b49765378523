/*
** test_luasrc.c -- the embedded Lua modules (build/dl_luasrc.c, written by
** scripts/embed-lua.c): each one's bytecode loads in the liblua this test
** links, and is what compiling its source gives now (same chunk name, same
** debug information, so tracebacks read as from the source); a module
** whose bytecode does not load (another liblua's format), or was written
** by another release of liblua, loads from its source instead.
*/
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "dl_runtime.h"
#include "tap.h"

typedef struct sbuf {
  char *p;
  size_t n;
} sbuf;

static int sbuf_writer(lua_State *L, const void *p, size_t n, void *ud) {
  sbuf *b = ud;
  (void)L;
  b->p = realloc(b->p, b->n + n);
  CHECK(b->p != NULL);
  memcpy(b->p + b->n, p, n);
  b->n += n;
  return 0;
}

static int count_modules(void) {
  int n = 0;
  while (dl_luasrcs[n].name != NULL) n++;
  return n;
}

/* Every module's bytecode loads as bytecode, and equals the dump of its
   source compiled under its chunk name. */
static void test_bytecode_is_the_source(void) {
  lua_State *L = luaL_newstate();
  int i;
  CHECK(L != NULL);
  CHECK(count_modules() > 10);
  for (i = 0; dl_luasrcs[i].name != NULL; i++) {
    const dl_luasrc *m = &dl_luasrcs[i];
    char chunk[128];
    sbuf b = {NULL, 0};
    CHECK(m->bc != NULL && m->bclen > 0);
    CHECK(strlen(m->src) == m->len);
    CHECK(luaL_loadbufferx(L, m->bc, m->bclen, "bc", "b") == LUA_OK);
    lua_pop(L, 1);
    snprintf(chunk, sizeof chunk, DL_LUASRC_CHUNKNAME, m->name);
    CHECK(luaL_loadbufferx(L, m->src, m->len, chunk, "t") == LUA_OK);
    CHECK(lua_dump(L, sbuf_writer, &b, 0) == 0);
    lua_pop(L, 1);
    if (b.n != m->bclen || memcmp(b.p, m->bc, b.n) != 0) {
      fprintf(stderr, "# %s: bytecode differs from its source's\n", m->name);
      CHECK(0);
    }
    free(b.p);
  }
  lua_close(L);
}

/* m loads (leaving its function alone on the stack) and says it comes
   from its chunk name.  [-0, +0, -] */
static void check_loaded(lua_State *L, const dl_luasrc *m) {
  lua_Debug ar;
  char want[128];
  CHECK(lua_gettop(L) == 0);
  CHECK(dl_luasrc_load(L, m) == LUA_OK);
  CHECK(lua_gettop(L) == 1 && lua_isfunction(L, 1));
  CHECK(lua_getinfo(L, ">S", &ar));
  snprintf(want, sizeof want, DL_LUASRC_CHUNKNAME, m->name);
  CHECK(strcmp(ar.source, want) == 0);
  CHECK(strcmp(ar.what, "main") == 0);
}

/* Bytecode of another format (here, another version byte), or none:
   the module loads from its source, and reads the same. */
static void test_falls_back_to_source(void) {
  lua_State *L = luaL_newstate();
  const dl_luasrc *m = &dl_luasrcs[0];
  dl_luasrc bad = *m, none = *m;
  char *bc = malloc(m->bclen);
  CHECK(L != NULL && bc != NULL);
  memcpy(bc, m->bc, m->bclen);
  CHECK(bc[0] == LUA_SIGNATURE[0]);
  bc[4] ^= 0x01; /* LUAC_VERSION, after the 4-byte signature */
  bad.bc = bc;
  CHECK(luaL_loadbufferx(L, bad.bc, bad.bclen, "bad", "b") != LUA_OK);
  lua_pop(L, 1);
  check_loaded(L, m);
  check_loaded(L, &bad); /* the failed try left nothing behind */
  none.bc = NULL;
  none.bclen = 0;
  check_loaded(L, &none);
  free(bc);
  lua_close(L);
}

/* The bytecode is used when this process's liblua is the release that
   wrote it, and only then: given another module's (valid) bytecode, m
   loads as that module when the release matches, as itself from its
   source when it does not. */
static void test_release_check(void) {
  lua_State *L = luaL_newstate();
  const dl_luasrc *m = &dl_luasrcs[0], *o = &dl_luasrcs[1];
  dl_luasrc swapped = *m;
  lua_Debug ar;
  char own[128], other[128];
  CHECK(L != NULL);
  CHECK(m->ident != NULL && strcmp(m->ident, lua_ident) == 0);
  snprintf(own, sizeof own, DL_LUASRC_CHUNKNAME, m->name);
  snprintf(other, sizeof other, DL_LUASRC_CHUNKNAME, o->name);
  swapped.bc = o->bc;
  swapped.bclen = o->bclen;
  CHECK(dl_luasrc_load(L, &swapped) == LUA_OK);
  CHECK(lua_getinfo(L, ">S", &ar) && strcmp(ar.source, other) == 0);
  swapped.ident = "$LuaVersion: Lua 5.4.0 $";
  CHECK(dl_luasrc_load(L, &swapped) == LUA_OK);
  CHECK(lua_getinfo(L, ">S", &ar) && strcmp(ar.source, own) == 0);
  swapped.ident = NULL;
  CHECK(dl_luasrc_load(L, &swapped) == LUA_OK);
  CHECK(lua_getinfo(L, ">S", &ar) && strcmp(ar.source, own) == 0);
  CHECK(lua_gettop(L) == 0);
  lua_close(L);
}

/* dlua.options, run from m: parse_bytes works, and the line it says it is
   defined at.  [-0, +0, -] */
static int options_line(lua_State *L, const dl_luasrc *m) {
  lua_Debug ar;
  CHECK(dl_luasrc_load(L, m) == LUA_OK);
  lua_pushstring(L, m->name);
  CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK);
  CHECK(lua_istable(L, -1));
  lua_getfield(L, -1, "parse_bytes");
  lua_pushvalue(L, -1);
  lua_pushstring(L, "2MB");
  CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK);
  CHECK(lua_tointeger(L, -1) == 2000000);
  lua_pop(L, 1);
  CHECK(lua_getinfo(L, ">S", &ar));
  CHECK(strcmp(ar.source, "@[dlua]/dlua.options.lua") == 0);
  lua_pop(L, 1);
  return ar.linedefined;
}

/* A module loaded from bytecode runs, and its functions say where they
   are defined as when it is loaded from its source. */
static void test_module_runs(void) {
  lua_State *L = luaL_newstate();
  dl_luasrc src;
  int i, line;
  CHECK(L != NULL);
  luaL_openlibs(L);
  for (i = 0; dl_luasrcs[i].name != NULL; i++)
    if (strcmp(dl_luasrcs[i].name, "dlua.options") == 0) break;
  CHECK(dl_luasrcs[i].name != NULL);
  src = dl_luasrcs[i];
  src.bc = NULL;
  line = options_line(L, &dl_luasrcs[i]);
  CHECK(line > 1);
  CHECK(options_line(L, &src) == line);
  lua_close(L);
}

int main(void) {
  RUN(test_bytecode_is_the_source);
  RUN(test_falls_back_to_source);
  RUN(test_release_check);
  RUN(test_module_runs);
  return TAP_END();
}

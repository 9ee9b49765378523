/*
** dl_bag_lua.c -- the "dlua.bagio" module: the file-system services that
** dlua.bag needs and Lua's io library lacks (glob).
*/
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>

#include "dl_buf.h"
#include "dl_runtime.h"
#include "dl_wordcount.h"

/* Push an array of the paths of the glob_t at index 1.  [-0, +1, m] */
static int copy_paths(lua_State *L) {
  glob_t *g = (glob_t *)lua_touserdata(L, 1);
  size_t i;
  lua_createtable(L, (int)g->gl_pathc, 0);
  for (i = 0; i < g->gl_pathc; i++) {
    lua_pushstring(L, g->gl_pathv[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/*
** bagio.glob(pattern) -> sorted array of the paths matching pattern (POSIX
** glob(3), no brace or tilde expansion); an empty array when nothing
** matches; nil and a message when the directory cannot be read.
** [-0, +1|2, m]
*/
static int bagio_glob(lua_State *L) {
  const char *pat = luaL_checkstring(L, 1);
  glob_t g;
  int rc;
  memset(&g, 0, sizeof g);
  rc = glob(pat, 0, NULL, &g);
  if (rc == GLOB_NOMATCH) {
    globfree(&g);
    lua_newtable(L);
    return 1;
  }
  if (rc != 0) {
    globfree(&g);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", pat,
                    rc == GLOB_NOSPACE ? "out of memory" : "cannot read a "
                                                           "directory");
    return 2;
  }
  /* The copy may raise (memory): run it protected, so glob's memory is
     freed on every path before an error propagates. */
  lua_pushcfunction(L, copy_paths);
  lua_pushlightuserdata(L, &g);
  rc = lua_pcall(L, 1, 1, 0);
  globfree(&g);
  if (rc != LUA_OK) return lua_error(L);
  return 1;
}

/* Add the counts of the dl_wordcount at index 1 to the table at index 2.
   [-0, +0, m] */
static int add_counts(lua_State *L) {
  const dl_wordcount *wc = (const dl_wordcount *)lua_touserdata(L, 1);
  const dl_wordcount_slot *s;
  size_t i = 0;
  while ((s = dl_wordcount_next(wc, &i)) != NULL) {
    lua_pushlstring(L, DL_WORDCOUNT_WORD(s), s->len);
    lua_pushvalue(L, -1);
    lua_rawget(L, 2);
    lua_pushinteger(L, (lua_Integer)s->count + (lua_Integer)lua_tointeger(L, -1));
    lua_remove(L, -2);
    lua_rawset(L, 2);
  }
  return 0;
}

/* Push a table sized for n string keys.  [-0, +1, m] */
static int new_counts(lua_State *L) {
  lua_Integer n = lua_tointeger(L, 1);
  lua_createtable(L, 0, n > INT_MAX ? INT_MAX : (int)n);
  return 1;
}

/*
** bagio.count_words(text [, counts]) -> counts: adds to the table counts
** (a new one when absent) how often each word of text occurs, a word being
** a run of bytes that are not white space, as string.gmatch(text, "%S+")
** would give them.  [-0, +1, m]
*/
static int bagio_count_words(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  dl_wordcount wc;
  int rc;
  int fresh = lua_isnoneornil(L, 2);
  if (!fresh) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  dl_wordcount_init(&wc);
  rc = dl_wordcount_add(&wc, text, len);
  if (rc != 0) {
    dl_wordcount_free(&wc);
    return luaL_error(L, rc == DL_ENOMEM ? "count_words: out of memory"
                                         : "count_words: a word of 4 GiB "
                                           "or more");
  }
  /* Filling the Lua table may raise (memory): protected, so the counts'
     table is freed on every path. */
  if (fresh) {
    lua_pushcfunction(L, new_counts);
    lua_pushinteger(L, (lua_Integer)wc.count);
    rc = lua_pcall(L, 1, 1, 0);
    if (rc != LUA_OK) {
      dl_wordcount_free(&wc);
      return lua_error(L);
    }
    lua_replace(L, 2);
  }
  lua_pushcfunction(L, add_counts);
  lua_pushlightuserdata(L, &wc);
  lua_pushvalue(L, 2);
  rc = lua_pcall(L, 2, 0, 0);
  dl_wordcount_free(&wc);
  if (rc != LUA_OK) return lua_error(L);
  lua_settop(L, 2);
  return 1;
}

/*
** bagio.mkdirs(dir) -> true, or nil and a message: make dir and the
** directories above it that are missing (mode 0777 less the umask), as
** `mkdir -p` does.  [-0, +1|2, m]
*/
static int bagio_mkdirs(lua_State *L) {
  size_t len, i;
  const char *dir = luaL_checklstring(L, 1, &len);
  luaL_Buffer b;
  char *p;
  if (len == 0) return luaL_argerror(L, 1, "empty path");
  p = luaL_buffinitsize(L, &b, len + 1);
  memcpy(p, dir, len + 1);
  for (i = 1; i <= len; i++) {
    if (p[i] == '/' || p[i] == '\0') {
      char c = p[i];
      p[i] = '\0';
      if (mkdir(p, 0777) != 0 && errno != EEXIST) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", p, strerror(errno));
        return 2;
      }
      p[i] = c;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg bagio_funcs[] = {
  {"mkdirs", bagio_mkdirs},
  {"count_words", bagio_count_words},
  {"glob", bagio_glob},
  {NULL, NULL}
};

int luaopen_dlua_bagio(lua_State *L) {
  luaL_newlib(L, bagio_funcs);
  return 1;
}

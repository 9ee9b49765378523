/*
** dl_bag_lua.c -- the "dlua.bagio" module: the file-system services that
** dlua.bag needs and Lua's io library lacks (glob, mkdirs), and the C
** kernels of its text input: reading blocks and gzip files in pieces of
** whole lines (dl_textread) and counting words (dl_wordcount).
*/
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>

#include "dl_buf.h"
#include "dl_runtime.h"
#include "dl_textread.h"
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
** bagio.merge_counts(out, t) -> out: adds each count of the table t to
** out's count of the same key (frequencies' combine step; the counts are
** numbers).  [-0, +1, e]
*/
static int bagio_merge_counts(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_pushnil(L);
  while (lua_next(L, 2)) {        /* key, count */
    lua_pushvalue(L, -2);         /* key, count, key */
    if (lua_rawget(L, 1) != LUA_TNIL) { /* key, count, old */
      lua_arith(L, LUA_OPADD);    /* key, sum */
    } else {
      lua_pop(L, 1);              /* key, count */
    }
    lua_pushvalue(L, -2);         /* key, value, key */
    lua_insert(L, -2);            /* key, key, value */
    lua_rawset(L, 1);             /* key */
  }
  lua_settop(L, 1);
  return 1;
}

/*
** bagio.count_pairs(counts) -> array of {key, count} pairs, one per entry
** of the table counts, in its traversal order.  [-0, +1, m]
*/
static int bagio_count_pairs(lua_State *L) {
  lua_Integer n = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_newtable(L);                /* counts, out */
  lua_pushnil(L);
  while (lua_next(L, 1)) {        /* counts, out, key, count */
    lua_createtable(L, 2, 0);     /* ..., key, count, pair */
    lua_insert(L, -2);            /* ..., key, pair, count */
    lua_rawseti(L, -2, 2);        /* ..., key, pair */
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 1);
    lua_rawseti(L, 2, ++n);       /* counts, out, key */
  }
  return 1;
}

/* ------------------------------------------------------------ readers */

#define READER "dlua.bagio.TextReader"

/* A reader and the word counts it may be filling; both freed by close or
   __gc, so an error raised half-way leaks nothing. */
typedef struct text_ud {
  dl_textread *r; /* owned; NULL once closed */
  dl_wordcount wc;
} text_ud;

static text_ud *check_reader(lua_State *L) {
  text_ud *u = (text_ud *)luaL_checkudata(L, 1, READER);
  if (!u->r) luaL_argerror(L, 1, "reader is closed");
  return u;
}

/* Push nil and the reader's error message.  [-0, +2, m] */
static int reader_fail(lua_State *L, text_ud *u) {
  lua_pushnil(L);
  lua_pushstring(L, dl_textread_error(u->r));
  return 2;
}

/*
** bagio.open_text(path, start, stop, gz, max_line) -> reader, or nil and
** a message naming the file: the lines of the block [start, stop) of a
** plain file, or of the whole gzip file when gz is true, with no line
** longer than max_line bytes (see dl_textread.h).  [-0, +1|2, m]
*/
static int bagio_open_text(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer start = luaL_checkinteger(L, 2);
  lua_Integer stop = luaL_checkinteger(L, 3);
  int gz = lua_toboolean(L, 4);
  lua_Integer max_line = luaL_checkinteger(L, 5);
  dl_textread_opts o;
  char err[DL_TEXTREAD_ERRLEN];
  text_ud *u;
  luaL_argcheck(L, start >= 0, 2, "must be >= 0");
  luaL_argcheck(L, max_line > 0, 5, "must be > 0");
  /* the userdata first: opening cannot leak if it raises */
  u = (text_ud *)lua_newuserdatauv(L, sizeof *u, 0);
  u->r = NULL;
  dl_wordcount_init(&u->wc);
  luaL_setmetatable(L, READER);
  memset(&o, 0, sizeof o);
  o.path = path;
  o.start = (int64_t)start;
  o.stop = (int64_t)stop;
  o.gz = gz;
  o.max_line = (size_t)max_line;
  if (dl_textread_open(&u->r, &o, err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

/*
** reader:lines() -> array of the lines of the next piece (each with its
** "\n" but perhaps the input's last), nil at the end, or nil and a
** message.  [-0, +1|2, m]
*/
static int reader_lines(lua_State *L) {
  text_ud *u = check_reader(L);
  const char *p, *end;
  size_t len;
  lua_Integer n = 0;
  int rc = dl_textread_next(u->r, &p, &len);
  if (rc < 0) return reader_fail(L, u);
  if (rc == 0) {
    lua_pushnil(L);
    return 1;
  }
  end = p + len;
  /* about one line per 64 bytes, for a first size */
  lua_createtable(L, len / 64 < INT_MAX ? (int)(len / 64 + 1) : INT_MAX, 0);
  while (p < end) {
    const char *q = memchr(p, '\n', (size_t)(end - p));
    const char *e = q ? q + 1 : end;
    lua_pushlstring(L, p, (size_t)(e - p));
    lua_rawseti(L, -2, ++n);
    p = e;
  }
  return 1;
}

/*
** reader:text() -> the next piece as one string, nil at the end, or nil
** and a message.  [-0, +1|2, m]
*/
static int reader_text(lua_State *L) {
  text_ud *u = check_reader(L);
  const char *p;
  size_t len;
  int rc = dl_textread_next(u->r, &p, &len);
  if (rc < 0) return reader_fail(L, u);
  if (rc == 0) lua_pushnil(L);
  else lua_pushlstring(L, p, len);
  return 1;
}

/*
** reader:count_words([counts]) -> counts, or nil and a message: reads the
** rest of the input and adds to counts (a new table when absent) how often
** each word occurs, a word being as string.gmatch(text, "%S+") gives
** them.  [-0, +1|2, m]
*/
static int reader_count_words(lua_State *L) {
  text_ud *u = check_reader(L);
  const char *p;
  size_t len;
  int rc;
  int fresh = lua_isnoneornil(L, 2);
  if (!fresh) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  while ((rc = dl_textread_next(u->r, &p, &len)) > 0) {
    rc = dl_wordcount_add(&u->wc, p, len);
    if (rc != 0)
      return luaL_error(L, rc == DL_ENOMEM ? "count_words: out of memory"
                                           : "count_words: a word of 4 GiB "
                                             "or more");
  }
  if (rc < 0) return reader_fail(L, u);
  if (fresh) {
    lua_createtable(L, 0, u->wc.count > INT_MAX ? INT_MAX : (int)u->wc.count);
    lua_replace(L, 2);
  }
  lua_pushcfunction(L, add_counts);
  lua_pushlightuserdata(L, &u->wc);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 0);
  dl_wordcount_free(&u->wc);
  lua_settop(L, 2);
  return 1;
}

/* reader:close(): free the reader (again is fine).  [-0, +0, -] */
static int reader_close(lua_State *L) {
  text_ud *u = (text_ud *)luaL_checkudata(L, 1, READER);
  dl_textread_close(u->r);
  u->r = NULL;
  dl_wordcount_free(&u->wc);
  return 0;
}

static const luaL_Reg reader_methods[] = {
  {"lines", reader_lines},
  {"text", reader_text},
  {"count_words", reader_count_words},
  {"close", reader_close},
  {NULL, NULL}
};

static const luaL_Reg reader_meta[] = {
  {"__gc", reader_close},
  {"__close", reader_close},
  {NULL, NULL}
};

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
  {"open_text", bagio_open_text},
  {"merge_counts", bagio_merge_counts},
  {"count_pairs", bagio_count_pairs},
  {NULL, NULL}
};

int luaopen_dlua_bagio(lua_State *L) {
  if (luaL_newmetatable(L, READER)) {
    luaL_setfuncs(L, reader_meta, 0);
    luaL_newlib(L, reader_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, bagio_funcs);
  return 1;
}

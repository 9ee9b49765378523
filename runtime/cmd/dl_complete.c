/*
** dl_complete.c -- tab completion of Lua names for the dlua REPL (see
** dl_complete.h).  Completion reads tables with raw accesses only and
** follows __index only where it is a table, so pressing Tab never runs
** user code (no __index functions, no __pairs, no __tostring).
*/
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "dl_complete.h"
#include "dl_edit.h"

/* How many __index tables are followed from one value (cycles end too). */
#define INDEX_DEPTH 16

/* Where a word ends for completion: "." and ":" are part of a word. */
static const char word_breaks[] = " \t\n\"\\'`><=;+-*/%^~#&|,{}()[]";

static const char *const keywords[] = {
  "and", "break", "do", "else", "elseif", "end", "false", "for",
  "function", "goto", "if", "in", "local", "nil", "not", "or", "repeat",
  "return", "then", "true", "until", "while", NULL
};

static int is_alpha(char c) {
  return c == '_' || ((c | 32) >= 'a' && (c | 32) <= 'z');
}

/* Whether s[0 .. len-1] is a Lua name: an identifier, not a keyword. */
static int is_name(const char *s, size_t len) {
  size_t i;
  if (len == 0 || !is_alpha(s[0]))
    return 0;
  for (i = 1; i < len; i++)
    if (!is_alpha(s[i]) && !(s[i] >= '0' && s[i] <= '9'))
      return 0;
  for (i = 0; keywords[i] != NULL; i++)
    if (strlen(keywords[i]) == len && memcmp(keywords[i], s, len) == 0)
      return 0;
  return 1;
}

/*
** Replace the value on top with the metatable's __index of it when that is
** a table; returns whether it did (otherwise the value is popped).
** [-1, +(0|1), -]
*/
static int to_index_table(lua_State *L) {
  if (lua_getmetatable(L, -1)) {
    lua_pushliteral(L, "__index");
    if (lua_rawget(L, -2) == LUA_TTABLE) {
      lua_replace(L, -3);
      lua_pop(L, 1);
      return 1;
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  return 0;
}

/*
** Replace the value on top with its field name[0 .. len-1], read raw from
** it and from its __index tables; nil when there is none.  [-1, +1, m]
*/
static void get_field(lua_State *L, const char *name, size_t len) {
  int depth;
  for (depth = 0; depth < INDEX_DEPTH; depth++) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushlstring(L, name, len);
      if (lua_rawget(L, -2) != LUA_TNIL) {
        lua_remove(L, -2);
        return;
      }
      lua_pop(L, 1);
    }
    if (!to_index_table(L)) {
      lua_pushnil(L);
      return;
    }
  }
  lua_pop(L, 1);
  lua_pushnil(L);
}

/*
** Add to the set at index set the keys of the value on top, and of its
** __index tables, that are names starting with part[0 .. plen-1]; each
** maps to whether its value is a function.  With methods, only functions
** are added; "_" names only when part starts with "_" or hidden is 0.
** Pops the value.  [-1, +0, m]
*/
static void add_keys(lua_State *L, int set, const char *part, size_t plen,
                     int methods, int hidden) {
  int depth;
  for (depth = 0; depth < INDEX_DEPTH; depth++) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        size_t len;
        const char *k;
        int isfn = lua_type(L, -1) == LUA_TFUNCTION;
        if (lua_type(L, -2) == LUA_TSTRING
            && (k = lua_tolstring(L, -2, &len)) != NULL
            && len >= plen && memcmp(k, part, plen) == 0
            && is_name(k, len) && (!methods || isfn)
            && !(hidden && k[0] == '_' && (plen == 0 || part[0] != '_'))) {
          lua_pushvalue(L, -2);
          if (lua_rawget(L, set) == LUA_TNIL) {
            lua_pushvalue(L, -3);
            lua_pushboolean(L, isfn);
            lua_rawset(L, set);
          }
          lua_pop(L, 1);
        }
        lua_pop(L, 1);
      }
    }
    if (!to_index_table(L))
      return;
  }
  lua_pop(L, 1);
}

static int cmp_strings(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
** Push the set of completions of text: each key the name that completes
** the part after the last "." or ":", mapped to whether its value is a
** function.  Sets *prefix_len to the length of text before that name.
** [-0, +1, m]
*/
static void collect(lua_State *L, const char *text, size_t *prefix_len) {
  const char *sep = NULL, *p, *seg;
  int set, i;
  size_t tlen = strlen(text);
  lua_newtable(L);
  set = lua_gettop(L);
  for (p = text; *p != '\0'; p++)
    if (*p == '.' || *p == ':')
      sep = p;
  *prefix_len = sep == NULL ? 0 : (size_t)(sep - text) + 1;
  if (sep == NULL) {
    lua_pushglobaltable(L);
    add_keys(L, set, text, tlen, 0, 0);
    for (i = 0; keywords[i] != NULL; i++)
      if (strncmp(keywords[i], text, tlen) == 0) {
        lua_pushboolean(L, 0);
        lua_setfield(L, set, keywords[i]);
      }
    return;
  }
  /* Walk the path before sep, name by name, from the globals. */
  lua_pushglobaltable(L);
  for (seg = text;; seg = p + 1) {
    for (p = seg; p < sep && *p != '.' && *p != ':'; p++)
      ;
    /* "a:b.c" and "a..b" name nothing */
    if ((p < sep && *p == ':') || !is_name(seg, (size_t)(p - seg))) {
      lua_pop(L, 1);
      return;
    }
    get_field(L, seg, (size_t)(p - seg));
    if (p == sep)
      break;
  }
  add_keys(L, set, sep + 1, strlen(sep + 1), *sep == ':', 1);
}

void dl_complete_push(lua_State *L, const char *text) {
  size_t prefix_len, n = 0, i;
  int set, out, onefn = 0;
  luaL_Buffer b;
  const char **names;
  collect(L, text, &prefix_len);
  set = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, set)) {
    onefn = lua_toboolean(L, -1);
    lua_pop(L, 1);
    n++;
  }
  /* Sort in a userdata, which the collector frees even if Lua raises. */
  names = (const char **)lua_newuserdatauv(L, (n ? n : 1) * sizeof *names, 0);
  i = 0;
  lua_pushnil(L);
  while (lua_next(L, set)) {
    lua_pop(L, 1);
    names[i++] = lua_tostring(L, -1); /* anchored in the set */
  }
  qsort(names, n, sizeof *names, cmp_strings);
  lua_createtable(L, (int)n, 0);
  out = lua_gettop(L);
  for (i = 0; i < n; i++) {
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, text, prefix_len);
    luaL_addstring(&b, names[i]);
    luaL_pushresult(&b);
    lua_rawseti(L, out, (lua_Integer)i + 1);
  }
  lua_replace(L, set);
  lua_pop(L, 1); /* the names */
  lua_pushboolean(L, n == 1 && onefn);
}

/* The state completed in, and the matches handed to libedit one by one. */
static lua_State *complete_L = NULL;
static char **matches = NULL;
static size_t nmatches = 0, next_match = 0;

/* dl_complete_push under lua_pcall: argument 1 is the text. */
static int push_completions(lua_State *L) {
  dl_complete_push(L, (const char *)lua_touserdata(L, 1));
  return 2;
}

static void free_matches(void) {
  size_t i;
  for (i = 0; i < nmatches; i++)
    free(matches[i]);
  free(matches);
  matches = NULL;
  nmatches = next_match = 0;
}

/* libedit's generator: the next match, which libedit then owns. */
static char *next_completion(const char *text, int state) {
  (void)text;
  if (state == 0)
    next_match = 0;
  if (next_match >= nmatches)
    return NULL;
  return strdup(matches[next_match++]);
}

/* Copy the completions of text from L into matches; 0 on failure. */
static int load_matches(lua_State *L, const char *text, int *onefn) {
  int top = lua_gettop(L);
  size_t n, i;
  lua_pushcfunction(L, push_completions);
  lua_pushlightuserdata(L, (void *)text);
  if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
    lua_settop(L, top);
    return 0;
  }
  *onefn = lua_toboolean(L, -1);
  n = (size_t)lua_rawlen(L, -2);
  matches = n ? (char **)calloc(n, sizeof *matches) : NULL;
  for (i = 0; matches != NULL && i < n; i++) {
    lua_rawgeti(L, -2, (lua_Integer)i + 1);
    matches[i] = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (matches[i] == NULL)
      break;
  }
  nmatches = i;
  lua_settop(L, top);
  return nmatches == n;
}

/* libedit's completion hook: the Lua completions of text, never files. */
static char **attempt_completion(const char *text, int start, int end) {
  char **result = NULL;
  int onefn = 0;
  (void)start;
  (void)end;
  rl_attempted_completion_over = 1;
  free_matches();
  if (complete_L != NULL && load_matches(complete_L, text, &onefn)) {
    rl_completion_append_character = onefn ? '(' : '\0';
    if (nmatches > 0)
      result = rl_completion_matches(text, next_completion);
  }
  free_matches();
  return result;
}

void dl_complete_install(lua_State *L) {
  complete_L = L;
  rl_basic_word_break_characters = word_breaks;
  rl_completer_word_break_characters = (char *)word_breaks;
  rl_attempted_completion_function = attempt_completion;
}

/*
** test_embed.c -- the embedding API (dlua.h): open/close cycles leave no
** process behind, bad arguments give codes and messages, errors (local and
** remote) reach the host, and the host's own C functions, modules and
** codecs work inside tasks because this test program is its own worker
** executable.  Run from the repository root, after make.
*/
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "dlua.h"
#include "tap.h"

/* ------------------------------------------------ host functions */

static int t_triple(lua_State *L) {
  lua_pushinteger(L, 3 * luaL_checkinteger(L, 1));
  return 1;
}

static int t_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

static int t_add(lua_State *L) {
  lua_pushnumber(L, luaL_checknumber(L, 1) + luaL_checknumber(L, 2));
  return 1;
}

static int luaopen_tmod(lua_State *L) {
  static const luaL_Reg f[] = {{"add", t_add}, {NULL, NULL}};
  luaL_newlib(L, f);
  return 1;
}

/* A userdata with a codec: a vector of doubles, metatable "test.vec". */
typedef struct vec {
  lua_Integer n;
  double x[1];
} vec;

static vec *vec_push(lua_State *L, lua_Integer n) {
  vec *v = lua_newuserdatauv(L, sizeof(vec) + sizeof(double) * (size_t)n, 0);
  v->n = n;
  luaL_newmetatable(L, "test.vec");
  lua_setmetatable(L, -2);
  return v;
}

/* vec_new(a, b, ...) -> vec */
static int vec_new(lua_State *L) {
  int i, n = lua_gettop(L);
  vec *v = vec_push(L, n);
  for (i = 0; i < n; i++) v->x[i] = luaL_checknumber(L, i + 1);
  return 1;
}

/* vec_scale(v, k) -> a new vec */
static int vec_scale(lua_State *L) {
  vec *v = luaL_checkudata(L, 1, "test.vec");
  double k = luaL_checknumber(L, 2);
  vec *w = vec_push(L, v->n);
  lua_Integer i;
  for (i = 0; i < v->n; i++) w->x[i] = k * v->x[i];
  return 1;
}

/* vec_get(v, i) -> number */
static int vec_get(lua_State *L) {
  vec *v = luaL_checkudata(L, 1, "test.vec");
  lua_Integer i = luaL_checkinteger(L, 2);
  luaL_argcheck(L, i >= 1 && i <= v->n, 2, "index out of range");
  lua_pushnumber(L, v->x[i - 1]);
  return 1;
}

static int vec_enc(lua_State *L) {
  vec *v = luaL_checkudata(L, 1, "test.vec");
  lua_pushlstring(L, (const char *)v->x, sizeof(double) * (size_t)v->n);
  return 1;
}

static int vec_dec(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  vec *v = vec_push(L, (lua_Integer)(len / sizeof(double)));
  memcpy(v->x, s, len);
  return 1;
}

/* ------------------------------------------------------ helpers */

/* The number of processes whose parent is this one (zombies included). */
static int count_children(void) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  int n = 0;
  pid_t self = getpid();
  CHECK(d != NULL);
  while ((e = readdir(d)) != NULL) {
    char path[300], buf[512], *p;
    FILE *f;
    int ppid;
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    if ((f = fopen(path, "r")) == NULL) continue;
    if (fgets(buf, sizeof buf, f) && (p = strrchr(buf, ')')) != NULL &&
        sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == self)
      n++;
    fclose(f);
  }
  closedir(d);
  return n;
}

static dlua_Runtime *open2(const char *worker_exe, int start) {
  dlua_Options o;
  char err[512];
  dlua_Runtime *rt;
  memset(&o, 0, sizeof o);
  o.n_workers = 2;
  o.worker_exe = worker_exe;
  o.start_cluster = start;
  rt = dlua_open(&o, err, sizeof err);
  if (rt == NULL) fprintf(stderr, "# %s\n", err);
  CHECK(rt != NULL);
  return rt;
}

/* Run src in rt; it must succeed. */
static void ok(dlua_Runtime *rt, const char *src) {
  int rc = dlua_dostring(rt, src, "=test");
  if (rc != DLUA_OK) fprintf(stderr, "# %s\n", dlua_errmsg(rt));
  CHECK(rc == DLUA_OK);
  CHECK(strcmp(dlua_errmsg(rt), "") == 0);
}

/* Global name of rt's state as an integer. */
static lua_Integer global_int(dlua_Runtime *rt, const char *name) {
  lua_State *L = dlua_state(rt);
  lua_Integer v;
  lua_getglobal(L, name);
  v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

/* ------------------------------------------------------- tests */

static void test_version(void) {
  double t0 = dlua_time(), t1;
  CHECK(strcmp(dlua_version(), DLUA_VERSION_STRING) == 0);
  t1 = dlua_time();
  CHECK(t0 > 0 && t1 >= t0);
}

static void test_open_close_100(void) {
  /* Under ASan a worker takes ~0.3 s to start, so 100 rounds came close
     to the 60 s limit of a test on a busy machine; 30 rounds there still
     show a leak (ASan reports it) or a worker left behind. */
  int i, rounds = getenv("DLUA_SANITIZE") ? 30 : 100;
  const char *z = getenv("DLUA_ZYGOTE");
  for (i = 0; i < rounds; i++) {
    dlua_Runtime *rt = open2(NULL, 1);
    /* Its one child is the zygote that forked the 2 workers (2 children
       of its own when the zygote is off). */
    if (i == 0) CHECK(count_children() == (z && strcmp(z, "0") == 0 ? 2 : 1));
    dlua_close(rt);
    CHECK(count_children() == 0);
  }
  CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
}

static void test_open_without_cluster(void) {
  dlua_Runtime *rt = dlua_open(NULL, NULL, 0);
  CHECK(rt != NULL);
  CHECK(count_children() == 0);
  ok(rt, "x = require('dlua').version");
  dlua_close(rt);
}

static void test_bad_options(void) {
  dlua_Options o;
  char err[256];
  memset(&o, 0, sizeof o);
  o.n_workers = -1;
  CHECK(dlua_open(&o, err, sizeof err) == NULL);
  CHECK(strstr(err, "dlua_open: n_workers") != NULL);
  CHECK(strstr(err, "-1") != NULL);
  o.n_workers = 5000;
  CHECK(dlua_open(&o, err, sizeof err) == NULL);
  CHECK(strstr(err, "n_workers") != NULL);
  CHECK(dlua_open(&o, NULL, 0) == NULL); /* no buffer: still no crash */
  CHECK(dlua_open(&o, err, 1) == NULL && err[0] == '\0');
  o.n_workers = 2;
  o.memory_limit = -5;
  CHECK(dlua_open(&o, err, sizeof err) == NULL);
  CHECK(strstr(err, "memory_limit") != NULL);
  o.memory_limit = 0;
  o.worker_exe = "/nonexistent/dlua";
  CHECK(dlua_open(&o, err, sizeof err) == NULL);
  CHECK(strstr(err, "/nonexistent/dlua") != NULL);
  /* An executable that is not a worker: start_cluster fails, no hang. */
  o.worker_exe = "/bin/true";
  o.start_cluster = 1;
  CHECK(dlua_open(&o, err, sizeof err) == NULL);
  fprintf(stderr, "# /bin/true as worker_exe: %.*s\n",
          (int)strcspn(err, "\n"), err);
  CHECK(strncmp(err, "dlua_open: ", 11) == 0);
  CHECK(count_children() == 0);
}

static void test_bad_arguments(void) {
  dlua_Runtime *rt;
  CHECK(dlua_dostring(NULL, "x = 1", "=t") == DLUA_ERRARG);
  CHECK(dlua_dofile(NULL, "x.lua") == DLUA_ERRARG);
  CHECK(strcmp(dlua_errmsg(NULL), "") == 0);
  CHECK(dlua_state(NULL) == NULL);
  dlua_close(NULL);
  CHECK(dlua_preload(NULL, luaopen_tmod) == DLUA_ERRARG);
  CHECK(dlua_preload("", luaopen_tmod) == DLUA_ERRARG);
  CHECK(dlua_preload("m", NULL) == DLUA_ERRARG);
  CHECK(dlua_register(NULL, t_triple) == DLUA_ERRARG);
  CHECK(dlua_register("f", NULL) == DLUA_ERRARG);
  CHECK(dlua_register_codec("test.vec", vec_enc, NULL) == DLUA_ERRARG);
  CHECK(dlua_register_codec(NULL, vec_enc, vec_dec) == DLUA_ERRARG);
  rt = dlua_open(NULL, NULL, 0);
  CHECK(rt != NULL);
  CHECK(dlua_dostring(rt, NULL, "=t") == DLUA_ERRARG);
  CHECK(strstr(dlua_errmsg(rt), "chunk is NULL") != NULL);
  CHECK(dlua_dofile(rt, NULL) == DLUA_ERRARG);
  CHECK(strstr(dlua_errmsg(rt), "path is NULL") != NULL);
  CHECK(dlua_dofile(rt, "/nonexistent/job.lua") == DLUA_ERRFILE);
  CHECK(strstr(dlua_errmsg(rt), "/nonexistent/job.lua") != NULL);
  ok(rt, "x = 1");
  CHECK(dlua_dostring(rt, "x = 2", NULL) == DLUA_OK); /* default name */
  CHECK(global_int(rt, "x") == 2);
  CHECK(lua_gettop(dlua_state(rt)) == 0);
  dlua_close(rt);
}

static void test_errors(void) {
  dlua_Runtime *rt = dlua_open(NULL, NULL, 0);
  CHECK(rt != NULL);
  CHECK(dlua_dostring(rt, "x = = 1", "=host") == DLUA_ERRSYNTAX);
  CHECK(strstr(dlua_errmsg(rt), "host:1:") != NULL);
  CHECK(dlua_dostring(rt, "local function f() error('boom') end f()",
                      "=host") == DLUA_ERRRUN);
  CHECK(strstr(dlua_errmsg(rt), "host:1: boom") != NULL);
  CHECK(strstr(dlua_errmsg(rt), "stack traceback") != NULL);
  CHECK(dlua_dostring(rt, "error({})", "=host") == DLUA_ERRRUN);
  CHECK(strstr(dlua_errmsg(rt), "table value") != NULL);
  CHECK(dlua_dostring(rt, "error(setmetatable({}, {__tostring = function() "
                      "return 'custom' end}))", "=host") == DLUA_ERRRUN);
  CHECK(strcmp(dlua_errmsg(rt), "custom") == 0);
  CHECK(dlua_dostring(rt, "error(string.rep('x', 100000))", "=h") ==
        DLUA_ERRRUN);
  CHECK(strlen(dlua_errmsg(rt)) > 100000); /* never truncated */
  CHECK(lua_gettop(dlua_state(rt)) == 0);
  ok(rt, "y = 1"); /* still usable, message cleared */
  dlua_close(rt);
}

static void test_dofile(void) {
  char path[] = "/tmp/dlua-embed-XXXXXX";
  int fd = mkstemp(path);
  dlua_Runtime *rt;
  CHECK(fd >= 0);
  CHECK(write(fd, "z = 6 * 7\n", 10) == 10);
  close(fd);
  rt = dlua_open(NULL, NULL, 0);
  CHECK(dlua_dofile(rt, path) == DLUA_OK);
  CHECK(global_int(rt, "z") == 42);
  unlink(path);
  dlua_close(rt);
}

static void test_task_error_reaches_host(void) {
  dlua_Runtime *rt = open2(NULL, 0);
  int rc = dlua_dostring(
      rt,
      "local c = require('dlua').Client()\n"
      "local f = c:submit(function() error('remote boom') end)\n"
      "local ok, e = pcall(f.result, f)\n"
      "c:close()\n"
      "error(e, 0)\n",
      "=host");
  CHECK(rc == DLUA_ERRRUN);
  CHECK(strstr(dlua_errmsg(rt), "remote boom") != NULL);
  CHECK(strstr(dlua_errmsg(rt), "remote") != NULL);
  /* Unprotected: the task error propagates straight out of dostring. */
  rc = dlua_dostring(rt,
                     "local c = require('dlua').Client()\n"
                     "c:submit(function() error('again') end):result()\n",
                     "=host");
  CHECK(rc == DLUA_ERRRUN);
  CHECK(strstr(dlua_errmsg(rt), "again") != NULL);
  dlua_close(rt);
  CHECK(count_children() == 0);
}

static void test_host_functions_in_tasks(void) {
  dlua_Runtime *rt = open2(NULL, 1);
  ok(rt,
     "local dlua = require 'dlua'\n"
     "local tmod = require 'tmod'\n"
     "local c = dlua.default_client()\n"
     "local r = c:gather(c:map(t_triple, {1, 2, 3}))\n"
     "assert(r[1] == 3 and r[2] == 6 and r[3] == 9)\n"
     "r = c:gather(c:map(function(a, b) return tmod.add(a, b) end,\n"
     "                   {1, 2}, {10, 20}))\n"
     "assert(r[1] == 11 and r[2] == 22)\n"
     "r = c:submit(function(x) return require('tmod').add(x, t_triple(x))\n"
     "             end, 5):result()\n"
     "assert(r == 20)\n"
     "task_pid = c:submit(t_pid):result()\n"
     "local v = c:submit(vec_scale, vec_new(1, 2, 3), 2):result()\n"
     "assert(getmetatable(v).__name == 'test.vec')\n"
     "assert(vec_get(v, 1) == 2 and vec_get(v, 3) == 6)\n");
  CHECK(global_int(rt, "task_pid") != getpid());
  CHECK(global_int(rt, "task_pid") > 0);
  dlua_close(rt);
  CHECK(count_children() == 0);
}

/* The dlua binary of this build (build/tests/lua/test_embed -> build/dlua). */
static const char *dlua_exe(void) {
  static char path[PATH_MAX];
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  CHECK(n > 0);
  self[n] = '\0';
  snprintf(path, sizeof path, "%s/../../dlua", dirname(self));
  CHECK(access(path, X_OK) == 0);
  return path;
}

/* Run src (which raises) in rt and check the message names what. */
static void fails_naming(dlua_Runtime *rt, const char *src, const char *what) {
  CHECK(dlua_dostring(rt, src, "=host") == DLUA_ERRRUN);
  fprintf(stderr, "# worker_exe=dlua: %.*s\n",
          (int)strcspn(dlua_errmsg(rt), "\n"), dlua_errmsg(rt));
  CHECK(strstr(dlua_errmsg(rt), what) != NULL);
}

static void test_foreign_worker_exe(void) {
  dlua_Runtime *rt = open2(dlua_exe(), 1);
  /* Plain Lua tasks work on a dlua binary worker. */
  ok(rt, "c = require('dlua').default_client()\n"
         "assert(c:submit(function(x) return x + 1 end, 1):result() == 2)\n");
  /* The host's function as the task: the codec cannot resolve it. */
  fails_naming(rt, "c:submit(t_triple, 1):result()", "t_triple");
  /* As an upvalue of a closure: same, at decode. */
  fails_naming(rt, "local f = t_triple\n"
                   "c:submit(function(x) return f(x) end, 1):result()",
               "t_triple");
  /* As a global the closure calls: fails when called. */
  fails_naming(rt, "c:submit(function(x) return t_triple(x) end, 1)"
                   ":result()", "t_triple");
  /* A preloaded module: require fails naming it. */
  fails_naming(rt, "local tmod = require 'tmod'\n"
                   "c:submit(function(x) return tmod.add(x, 1) end, 1)"
                   ":result()", "tmod");
  dlua_close(rt);
  CHECK(count_children() == 0);
}

/* dlua_openlibs on a state the host made itself. */
static int open_own(lua_State *L) {
  dlua_openlibs(L);
  return 0;
}

static void test_openlibs(void) {
  lua_State *L = luaL_newstate();
  CHECK(L != NULL);
  lua_pushcfunction(L, open_own);
  CHECK(lua_pcall(L, 0, 0, 0) == LUA_OK);
  CHECK(luaL_dostring(L, "return require('dlua').version and "
                         "t_triple(2) == 6 and require('tmod').add(1, 2) == 3"
                         ) == LUA_OK);
  CHECK(lua_toboolean(L, -1));
  lua_close(L);
}

int main(int argc, char **argv) {
  int rc;
  /* Registrations first, then the worker entry: this program is also the
     worker executable of the runtimes it opens. */
  CHECK(dlua_register("t_triple", t_triple) == DLUA_OK);
  CHECK(dlua_register("t_pid", t_pid) == DLUA_OK);
  CHECK(dlua_register("vec_new", vec_new) == DLUA_OK);
  CHECK(dlua_register("vec_scale", vec_scale) == DLUA_OK);
  CHECK(dlua_register("vec_get", vec_get) == DLUA_OK);
  CHECK(dlua_preload("tmod", luaopen_tmod) == DLUA_OK);
  CHECK(dlua_register_codec("test.vec", vec_enc, vec_dec) == DLUA_OK);
  rc = dlua_worker_main(argc, argv);
  if (rc >= 0) return rc;
  RUN(test_version);
  RUN(test_bad_arguments);
  RUN(test_bad_options);
  RUN(test_open_without_cluster);
  RUN(test_errors);
  RUN(test_dofile);
  RUN(test_open_close_100);
  RUN(test_task_error_reaches_host);
  RUN(test_host_functions_in_tasks);
  RUN(test_foreign_worker_exe);
  RUN(test_openlibs);
  return TAP_END();
}

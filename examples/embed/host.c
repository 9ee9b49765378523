/*
** host.c -- a C program that embeds dlua and runs its own C kernels as
** tasks on a local cluster of 2 worker processes.
**
** The workers are this very program, re-executed with "--dlua-worker ...":
** main() calls dlua_worker_main first, after registering the kernels, so
** the kernels exist in every worker too.
**
**   ./host                   100 Monte Carlo tasks and 100 dot products,
**                            checked against a serial computation
**   ./host --worker-exe EXE  the same with EXE (e.g. the dlua binary) as
**                            the workers: the kernels are missing there,
**                            and the run fails with an error naming them
**   ./host --bench           start+close of a 2-worker runtime (median of
**                            20 runs), as "embed_start_close_ms N ms"
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include <dlua.h>

#define NTASKS 100
#define NSAMPLES 20000

/* A deterministic xorshift64* generator: the same seed gives the same
** numbers in the host and in every worker. */
static double next_uniform(unsigned long long *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return (double)((*s * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* The numeric kernel: how many of n random points of the unit square,
** drawn from seed, fall inside the quarter circle. */
static long long mc_count(long long seed, long long n) {
  unsigned long long s = (unsigned long long)seed * 0x9E3779B97F4A7C15ULL + 1;
  long long i, hits = 0;
  for (i = 0; i < n; i++) {
    double x = next_uniform(&s), y = next_uniform(&s);
    if (x * x + y * y <= 1.0) hits++;
  }
  return hits;
}

/* Lua: mc_hits(seed [, n]) -> integer.  Registered as a global. */
static int l_mc_hits(lua_State *L) {
  lua_Integer seed = luaL_checkinteger(L, 1);
  lua_Integer n = luaL_optinteger(L, 2, NSAMPLES);
  luaL_argcheck(L, n >= 0, 2, "sample count must be non-negative");
  lua_pushinteger(L, mc_count(seed, n));
  return 1;
}

/* Lua: host_pid() -> the process id of the caller (a worker, in a task). */
static int l_host_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* Lua: kernel.dot(a, b) -> number, for two arrays of numbers. */
static int l_dot(lua_State *L) {
  lua_Integer i, n;
  double sum = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, 1);
  luaL_argcheck(L, (lua_Integer)lua_rawlen(L, 2) == n, 2, "length mismatch");
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    lua_rawgeti(L, 2, i);
    sum += lua_tonumber(L, -2) * lua_tonumber(L, -1);
    lua_pop(L, 2);
  }
  lua_pushnumber(L, sum);
  return 1;
}

/* require "kernel" -> {dot = ...}.  Preloaded as a module. */
static int luaopen_kernel(lua_State *L) {
  static const luaL_Reg funcs[] = {{"dot", l_dot}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}

/* Lua run by the host: 100 tasks of each kernel across the workers.  The
** results come back to the host through the global `results`. */
static const char *script =
    "local dlua = require 'dlua'\n"
    "local kernel = require 'kernel'\n"
    "local client = dlua.Client()\n"
    "local seeds, as, bs = {}, {}, {}\n"
    "for i = 1, 100 do\n"
    "  seeds[i] = i\n"
    "  as[i], bs[i] = {}, {}\n"
    "  for j = 1, 64 do as[i][j], bs[i][j] = i + j, i - j end\n"
    "end\n"
    "-- a host C function as the task itself, and one called from a closure\n"
    "local hits = client:gather(client:map(mc_hits, seeds))\n"
    "local dots = client:gather(client:map(function(a, b)\n"
    "  return kernel.dot(a, b)\n"
    "end, as, bs))\n"
    "local pids, seen, nworkers = client:gather(client:map(host_pid, seeds)),\n"
    "  {}, 0\n"
    "for _, p in ipairs(pids) do\n"
    "  if not seen[p] then seen[p], nworkers = true, nworkers + 1 end\n"
    "end\n"
    "results = {hits = hits, dots = dots, workers = nworkers}\n"
    "client:close()\n";

static int check_results(lua_State *L) {
  long long total = 0, serial = 0;
  double dsum = 0, dserial = 0;
  int i, j, ok = 1, nworkers;
  lua_getglobal(L, "results");
  lua_getfield(L, -1, "workers");
  nworkers = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, -1, "hits");
  lua_getfield(L, -2, "dots");
  for (i = 1; i <= NTASKS; i++) {
    double d = 0;
    lua_rawgeti(L, -2, i);
    total += lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, -1, i);
    dsum += lua_tonumber(L, -1);
    lua_pop(L, 1);
    serial += mc_count(i, NSAMPLES);
    for (j = 1; j <= 64; j++) d += (double)(i + j) * (double)(i - j);
    dserial += d;
  }
  lua_pop(L, 3);
  printf("distinct worker processes that ran tasks: %d\n", nworkers);
  printf("pi ~= %.6f from %d tasks x %d samples\n",
         4.0 * (double)total / ((double)NTASKS * NSAMPLES), NTASKS, NSAMPLES);
  printf("monte carlo: tasks %lld, serial %lld: %s\n", total, serial,
         total == serial ? "match" : "MISMATCH");
  printf("dot products: tasks %.1f, serial %.1f: %s\n", dsum, dserial,
         dsum == dserial ? "match" : "MISMATCH");
  ok = total == serial && dsum == dserial;
  return ok ? 0 : 1;
}

static int bench(void) {
  dlua_Options o;
  double t[20], tmp;
  char err[256];
  int i, j;
  memset(&o, 0, sizeof o);
  o.n_workers = 2;
  o.start_cluster = 1;
  for (i = 0; i < 20; i++) {
    double t0 = dlua_time();
    dlua_Runtime *rt = dlua_open(&o, err, sizeof err);
    if (rt == NULL) {
      fprintf(stderr, "host: %s\n", err);
      return 1;
    }
    dlua_close(rt);
    t[i] = dlua_time() - t0;
  }
  for (i = 1; i < 20; i++) /* insertion sort, then take the median */
    for (j = i; j > 0 && t[j - 1] > t[j]; j--) {
      tmp = t[j];
      t[j] = t[j - 1];
      t[j - 1] = tmp;
    }
  printf("embed_start_close_ms %.2f ms\n", 1e3 * (t[9] + t[10]) / 2);
  return 0;
}

int main(int argc, char **argv) {
  dlua_Options o;
  dlua_Runtime *rt;
  char err[256];
  int rc;
  /* Registrations first: they are process-wide and the workers need them. */
  if (dlua_register("mc_hits", l_mc_hits) != DLUA_OK ||
      dlua_register("host_pid", l_host_pid) != DLUA_OK ||
      dlua_preload("kernel", luaopen_kernel) != DLUA_OK) {
    fprintf(stderr, "host: cannot register kernels\n");
    return 1;
  }
  rc = dlua_worker_main(argc, argv); /* a worker? then that is all */
  if (rc >= 0) return rc;
  if (argc > 1 && strcmp(argv[1], "--bench") == 0) return bench();
  memset(&o, 0, sizeof o);
  o.n_workers = 2;
  if (argc > 2 && strcmp(argv[1], "--worker-exe") == 0)
    o.worker_exe = argv[2];
  rt = dlua_open(&o, err, sizeof err);
  if (rt == NULL) {
    fprintf(stderr, "host: %s\n", err);
    return 1;
  }
  if (dlua_dostring(rt, script, "=host") != DLUA_OK) {
    fprintf(stderr, "host: %s\n", dlua_errmsg(rt));
    dlua_close(rt);
    return 1;
  }
  rc = check_results(dlua_state(rt));
  dlua_close(rt);
  return rc;
}

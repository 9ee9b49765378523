/*
** dlua.h -- the public interface of libdlua, Dask for Lua.
**
** This is the only public header.  A host program embeds dlua like this:
**
**   #include <dlua.h>
**
**   static int luaopen_kernel(lua_State *L) { ... }
**
**   int main(int argc, char **argv) {
**     dlua_preload("kernel", luaopen_kernel);    // process-wide, first
**     int rc = dlua_worker_main(argc, argv);      // a worker? run it
**     if (rc >= 0) return rc;
**     char err[256];
**     dlua_Runtime *rt = dlua_open(NULL, err, sizeof err);
**     if (rt == NULL) { fprintf(stderr, "%s\n", err); return 1; }
**     if (dlua_dostring(rt, "print(require'dlua'.time())", "=host"))
**       fprintf(stderr, "%s\n", dlua_errmsg(rt));
**     dlua_close(rt);
**     return 0;
**   }
**
** Build with `pkg-config --cflags --libs dlua` (add --static for
** libdlua.a).  examples/embed/ is a complete host.
**
** Functions return 0 on success and a non-zero code on failure; nothing
** raises a Lua error into the host and nothing prints unless asked.
*/
#ifndef dlua_h
#define dlua_h

#include <stddef.h>

#include <lua.h>

#define DLUA_VERSION_MAJOR 0
#define DLUA_VERSION_MINOR 1
#define DLUA_VERSION_PATCH 0
#define DLUA_VERSION_HEX \
  ((DLUA_VERSION_MAJOR << 16) | (DLUA_VERSION_MINOR << 8) | DLUA_VERSION_PATCH)
#define DLUA_VERSION_STRING "0.1.0"

/* Error codes returned by dlua_* functions. */
#define DLUA_OK 0
#define DLUA_ERRRUN 2   /* a Lua error while running a chunk */
#define DLUA_ERRSYNTAX 3 /* a chunk did not compile */
#define DLUA_ERRMEM 4    /* out of memory */
#define DLUA_ERRFILE 6   /* a file could not be read */
#define DLUA_ERRARG 7    /* a bad argument to a dlua_* function */

typedef struct dlua_Runtime dlua_Runtime;

/*
** Options for dlua_open.  Zero means "default" for every field, so clear
** the whole struct first (memset, or "dlua_Options o = {0};"): fields added
** in later versions then keep their defaults.
**   n_workers    worker processes the default local cluster starts,
**                1..1024 (0: one per core)
**   memory_limit bytes per worker (0: RAM / workers)
**   worker_exe   program run as a worker (NULL: this executable, which
**                must call dlua_worker_main first thing in main).  A host
**                that cannot be re-executed names the installed `dlua`
**                binary here; its workers then lack the host's
**                registrations, and a task that needs one fails with an
**                error naming it (e.g. "cannot resolve '_G.kernel'").
**   start_cluster  non-zero: start the local cluster in dlua_open and make
**                it dlua's default client, dlua.default_client(); else Lua
**                starts clusters itself, e.g. with dlua.Client()
** Bad values make dlua_open fail with a message; nothing is started then.
**
**   dlua_Options o = {0};
**   o.n_workers = 2;
**   o.start_cluster = 1;
**   dlua_Runtime *rt = dlua_open(&o, err, sizeof err);
*/
typedef struct dlua_Options {
  int n_workers;
  long long memory_limit;
  const char *worker_exe;
  int start_cluster;
} dlua_Options;

/*
** The library version as "MAJOR.MINOR.PATCH" (DLUA_VERSION_STRING of the
** library actually linked, which may differ from this header's).
**
**   printf("dlua %s\n", dlua_version());
*/
const char *dlua_version(void);

/*
** Registrations.  dlua_preload, dlua_register and dlua_register_codec are
** process-wide: they apply to every dlua state opened afterwards in this
** process -- runtimes from dlua_open, states given to dlua_openlibs, and the
** worker state of dlua_worker_main -- so call them first in main, before
** dlua_worker_main and before starting threads (they are not thread-safe).
** name is copied; registering a name again replaces the earlier entry.
** They return DLUA_OK, DLUA_ERRARG (NULL or empty name, NULL function) or
** DLUA_ERRMEM.
*/

/*
** Register a C module under name, so that require(name) works in every
** dlua state of this process, in the client and in every worker (when the
** worker is this program).  Module tables and their functions travel to
** workers by name.
**
**   static int luaopen_kernel(lua_State *L) {
**     static const luaL_Reg f[] = {{"dot", l_dot}, {NULL, NULL}};
**     luaL_newlib(L, f);
**     return 1;
**   }
**   ...
**   dlua_preload("kernel", luaopen_kernel);
**   -- Lua: client:submit(function(a, b) return require"kernel".dot(a, b) end,
**   --                    a, b)
*/
int dlua_preload(const char *name, lua_CFunction luaopen);

/*
** Register a C function as a global named name in every dlua state (client
** and workers).  A task may be the function itself or call it.
**
**   dlua_register("mc_hits", l_mc_hits);
**   -- Lua: client:gather(client:map(mc_hits, {1, 2, 3}))
*/
int dlua_register(const char *name, lua_CFunction f);

/*
** Register a codec for values (full userdata, or tables) whose metatable
** has __name equal to tname (as made by luaL_newmetatable(L, tname)), so
** that they can be task arguments and results.  enc is called as enc(v)
** and must return a string; dec as dec(s) and must return the value (it
** should create the metatable with luaL_newmetatable if it may not exist
** yet).  Errors raised by either are reported as codec errors naming tname.
**
**   static int vec_enc(lua_State *L) {      // vec -> bytes
**     vec *v = luaL_checkudata(L, 1, "host.vec");
**     lua_pushlstring(L, (const char *)v->x, v->n * sizeof(double));
**     return 1;
**   }
**   static int vec_dec(lua_State *L) {      // bytes -> vec
**     size_t len;
**     const char *s = luaL_checklstring(L, 1, &len);
**     vec *v = vec_new(L, len / sizeof(double));  // sets "host.vec"
**     memcpy(v->x, s, len);
**     return 1;
**   }
**   ...
**   dlua_register_codec("host.vec", vec_enc, vec_dec);
*/
int dlua_register_codec(const char *tname, lua_CFunction enc,
                        lua_CFunction dec);

/*
** If argv asks for a worker process ("--dlua-worker ..."), run the worker
** until its scheduler goes away and return its exit status (>= 0; the
** host's main should return it at once); otherwise return -1 at once and
** touch nothing.  Hosts call it first thing in main, right after their
** registrations, so that the program can be its own worker executable.
** Only a worker prints (its own start-up failures, to stderr).
**
**   int rc = dlua_worker_main(argc, argv);
**   if (rc >= 0) return rc;
*/
int dlua_worker_main(int argc, char **argv);

/*
** Stop every local cluster of this process now: each one's workers, and
** what their tasks started, are ended and its private directory removed.
** Waits at most about 3 seconds; returns the number of clusters stopped.
** For a host about to exit on SIGTERM or SIGHUP: call it from a thread
** (never from the signal handler itself), then exit.  The clusters' Lua
** objects stay valid and report their cluster gone.
**
**   // in a thread woken by the handler (e.g. through a pipe):
**   dlua_stop_clusters();
**   signal(sig, SIG_DFL);
**   raise(sig);
*/
int dlua_stop_clusters(void);

/*
** Open the standard Lua libraries and dlua's own in L, make require "dlua"
** work (the Lua modules are compiled into the library) and apply the
** registrations.  For programs that manage their own lua_State; call it in
** protected mode (lua_pcall), it raises on memory errors.  [-0, +0, e]
**
**   lua_State *L = luaL_newstate();
**   lua_pushcfunction(L, open);  // open(L) calls dlua_openlibs(L)
**   if (lua_pcall(L, 0, 0, 0) != LUA_OK) ...
*/
void dlua_openlibs(lua_State *L);

/*
** Create a runtime: a fresh lua_State with dlua_openlibs applied, and
** opt's defaults for the clusters Lua starts in it.  opt may be NULL (all
** defaults).  Returns the runtime, or NULL with a message starting with
** "dlua_open: " in err (errlen bytes; err may be NULL) -- for bad options
** (e.g. a negative n_workers), no memory, or a cluster that could not start
** with start_cluster.  The runtime is used from one thread at a time.
**
**   char err[256];
**   dlua_Runtime *rt = dlua_open(NULL, err, sizeof err);
**   if (rt == NULL) { fprintf(stderr, "%s\n", err); return 1; }
*/
dlua_Runtime *dlua_open(const dlua_Options *opt, char *err, size_t errlen);

/*
** The runtime's state, for the host's own Lua API calls (NULL if rt is
** NULL); borrowed, valid until dlua_close.  Leave its stack as you found it.
**
**   lua_getglobal(dlua_state(rt), "results");
*/
lua_State *dlua_state(dlua_Runtime *rt);

/*
** Run a chunk of Lua source (dlua_dostring) or a file (dlua_dofile) in the
** runtime; results are discarded (leave them in globals).  chunkname is as
** for luaL_loadbuffer (NULL: "=dlua").  Returns DLUA_OK, or DLUA_ERRSYNTAX
** (did not compile), DLUA_ERRRUN (raised; a failed task's message includes
** its remote traceback), DLUA_ERRFILE, DLUA_ERRMEM, or DLUA_ERRARG (rt,
** chunk or path NULL); dlua_errmsg then says what went wrong, with a
** traceback for run-time errors.
**
**   if (dlua_dostring(rt, "x = require'dlua'.time()", "=host") != DLUA_OK)
**     fprintf(stderr, "%s\n", dlua_errmsg(rt));
**   if (dlua_dofile(rt, "job.lua") != DLUA_OK) ...
*/
int dlua_dostring(dlua_Runtime *rt, const char *chunk, const char *chunkname);
int dlua_dofile(dlua_Runtime *rt, const char *path);

/*
** The message of the last dlua_dostring/dlua_dofile on rt ("" after a
** success, or if rt is NULL); borrowed, valid until the next call on rt.
**
**   fprintf(stderr, "lua: %s\n", dlua_errmsg(rt));
*/
const char *dlua_errmsg(dlua_Runtime *rt);

/*
** Close the runtime: shuts down every cluster it started (no worker process
** survives it; their sockets and directories are removed), and the
** process's workers' zygote when no cluster of the process is left (so
** the host has no child process of dlua's afterwards), closes the state
** and frees everything.  rt may be NULL.
**
**   dlua_close(rt);
*/
void dlua_close(dlua_Runtime *rt);

/*
** Interrupt the waits of this process: with on non-zero, the client call
** that is waiting (result, gather, wait, as_completed, progress,
** dlua.sleep), or the next one to wait, raises "interrupted!" at once;
** its futures are left as they are and their tasks go on.  on == 0
** withdraws a request that no wait has taken yet.  Async-signal-safe:
** call it from a SIGINT handler (the dlua command does).
**
**   static void on_sigint(int sig) { (void)sig; dlua_interrupt(1); }
*/
void dlua_interrupt(int on);

/*
** Seconds on a monotonic clock, sub-microsecond resolution; for timing.
**
**   double t0 = dlua_time(); ...; printf("%.3f s\n", dlua_time() - t0);
*/
/*
** dlua's allocator, for lua_newstate or lua_setallocf: the one the runtime
** uses itself (it backs big blocks with huge pages where the system
** allows, which makes moving big strings much cheaper).  It uses the
** process's malloc underneath (the host's own: libdlua brings none), so
** it can replace the allocator of a state made by luaL_newstate at any
** time.  The dlua command runs on mimalloc (unless built with `make
** HEAP_LIBS=`), whose heap it puts on huge pages; a host that links or
** preloads mimalloc gets that in its workers.
**
**   lua_State *L = luaL_newstate();
**   lua_setallocf(L, dlua_alloc, NULL);
*/
void *dlua_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

double dlua_time(void);

/*
** Push msg (may be NULL) followed by a traceback of L1 from level on, as
** luaL_traceback does, without dlua's own frames: those of its embedded
** modules ("[dlua]/...") and the C functions they called (the `error`
** that raised).  What is left is the user's code, and the C functions it
** called itself.  With the environment variable DLUA_TRACEBACK=full it is
** luaL_traceback's.  The dlua command's message handler uses it.
**
**   static int handler(lua_State *L) {
**     dlua_traceback(L, L, lua_tostring(L, 1), 1);
**     return 1;
**   }
*/
void dlua_traceback(lua_State *L, lua_State *L1, const char *msg, int level);

#endif

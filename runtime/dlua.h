/*
** dlua.h -- the public interface of libdlua, Dask for Lua.
**
** This is the only public header.  A host program embeds dlua like this:
**
**   #include <dlua.h>
**
**   static int kernel(lua_State *L) { ... }
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
**   }
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
** Options for dlua_open.  Zero means "default" for every field.
**   n_workers    worker processes the default local cluster starts
**                (default: one per core)
**   memory_limit bytes per worker (default: RAM / workers)
**   worker_exe   program run as a worker (default: this executable,
**                which must call dlua_worker_main first thing in main)
**   start_cluster  non-zero: start a local cluster in dlua_open and make it
**                the default client (else it starts on first use)
*/
typedef struct dlua_Options {
  int n_workers;
  long long memory_limit;
  const char *worker_exe;
  int start_cluster;
} dlua_Options;

/* The library version as "MAJOR.MINOR.PATCH". */
const char *dlua_version(void);

/*
** Register a C module process-wide under name, so that require(name)
** works in every dlua state of this process, in the client and in every
** worker (when the worker is this program).  Call it before dlua_open and
** before dlua_worker_main.  Returns DLUA_OK or DLUA_ERRARG/DLUA_ERRMEM.
**
**   dlua_preload("kernel", luaopen_kernel);
*/
int dlua_preload(const char *name, lua_CFunction luaopen);

/*
** Register a C function process-wide as a global named name in every dlua
** state (client and workers).  Same rules as dlua_preload.
**
**   dlua_register("fast_dot", fast_dot);
*/
int dlua_register(const char *name, lua_CFunction f);

/*
** If argv asks for a worker process ("--dlua-worker ..."), run the worker
** until its scheduler goes away and return its exit status (>= 0);
** otherwise return -1 at once.  Hosts call it first thing in main.
*/
int dlua_worker_main(int argc, char **argv);

/*
** Open the standard Lua libraries and dlua's own in L, and make
** require "dlua" work (the Lua modules are compiled into the library).
** For programs that manage their own lua_State.  [-0, +0, e]
*/
void dlua_openlibs(lua_State *L);

/*
** Create a runtime: a fresh lua_State with dlua_openlibs applied, plus
** what was registered with dlua_preload/dlua_register.  opt may be NULL.
** On failure returns NULL and writes a message into err (errlen bytes).
*/
dlua_Runtime *dlua_open(const dlua_Options *opt, char *err, size_t errlen);

/* The runtime's state; borrowed, valid until dlua_close. */
lua_State *dlua_state(dlua_Runtime *rt);

/*
** Run a chunk of Lua source (dlua_dostring) or a file (dlua_dofile) in the
** runtime.  chunkname is as for luaL_loadbuffer (e.g. "=host").  Returns
** DLUA_OK or an error code; dlua_errmsg then says what went wrong (with a
** traceback for run-time errors).
*/
int dlua_dostring(dlua_Runtime *rt, const char *chunk, const char *chunkname);
int dlua_dofile(dlua_Runtime *rt, const char *path);

/* The message of the last failed call on rt ("" if none); borrowed. */
const char *dlua_errmsg(dlua_Runtime *rt);

/*
** Close the runtime: shuts down any cluster it started (no worker process
** survives), closes the state and frees everything.  rt may be NULL.
*/
void dlua_close(dlua_Runtime *rt);

/* Seconds on a monotonic clock, sub-microsecond resolution. */
double dlua_time(void);

#endif

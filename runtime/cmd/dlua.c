/*
** dlua.c -- the dlua command: Lua 5.4's standalone interpreter, grown.
**
**   dlua [options] [script [args]]
**
** It takes lua's options with lua's meaning and exit codes, so tools that
** drive "lua" (busted --lua=dlua, shebang lines) work with it; it adds
** --help and --version, a REPL with line editing and pretty-printed
** results (dl_repl.c), and require "dlua" without installed files.  The
** same executable is also a dlua worker when started with the worker's
** arguments (dlua_worker_main).
*/
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "dl_kernel.h"
#include "dl_mem.h"
#include "dl_netcmd.h"
#include "dl_repl.h"
#include "dlua.h"

#define PROGNAME "dlua"
#define VERSION_LINE PROGNAME " " DLUA_VERSION_STRING " (" LUA_RELEASE ")"

/* What the command line asks for, as bits. */
#define HAS_ERROR 1   /* a bad option; its index is in *first */
#define HAS_I 2       /* -i */
#define HAS_V 4       /* -v or --version */
#define HAS_E 8       /* -e */
#define HAS_NOENV 16  /* -E */
#define HAS_HELP 32   /* -h or --help */

/* The name messages start with: argv[0], as lua does, else "dlua". */
static const char *progname = PROGNAME;

/* -v: dlua's version, then Lua's line as lua -v prints it. */
static void print_version(void) {
  fputs(PROGNAME " " DLUA_VERSION_STRING " -- " LUA_COPYRIGHT "\n", stdout);
  fflush(stdout);
}

static void print_greeting(void) {
  fputs(VERSION_LINE " -- Dask for Lua. Ctrl-C interrupts, Ctrl-D exits.\n",
        stdout);
  fflush(stdout);
}

static void print_help(void) {
  fputs(
    "usage: " PROGNAME " [options] [script [args]]\n"
    "Run a Lua 5.4 script with dlua (Dask for Lua) available as "
    "require \"dlua\".\n"
    "\n"
    "Options:\n"
    "  -e stat    execute string 'stat'\n"
    "  -i         enter interactive mode after running the script\n"
    "  -l mod     require library 'mod' into global 'mod'\n"
    "  -l g=mod   require library 'mod' into global 'g'\n"
    "  -v         show version information\n"
    "  -E         ignore environment variables (LUA_INIT, LUA_PATH, ...)\n"
    "  -W         turn warnings on\n"
    "  -h, --help show this help and exit\n"
    "  --version  same as -v\n"
    "  --         stop handling options\n"
    "  -          stop handling options and execute stdin\n"
    "\n"
    "       " PROGNAME " kernel install [--user] [--prefix P]\n"
    "Install dlua as a Jupyter kernel (\"dlua (Lua 5.4)\"); Jupyter then\n"
    "runs it as '" PROGNAME " kernel -f CONNECTION_FILE'.  A script named\n"
    "'kernel' runs as '" PROGNAME " ./kernel'.\n"
    "\n"
    "       " PROGNAME " scheduler | worker | run ... (each with --help)\n"
    "A scheduler and workers past one machine (TCP); 'run' is one command\n"
    "for every rank of an mpirun or srun job (rank 0 the scheduler, rank 1\n"
    "the script, the rest workers).\n"
    "\n"
    "With no script and no -e or -v, dlua starts the interactive REPL when\n"
    "stdin is a terminal (line editing, Tab completion, history in\n"
    "~/.dlua_history or $DLUA_HISTORY, expressions printed pretty; Ctrl-C\n"
    "interrupts, Ctrl-D exits), and otherwise runs stdin as a script.\n"
    "Before the options are run, LUA_INIT_5_4 or LUA_INIT is run (as a\n"
    "file if it starts with @).  Scripts that fail print the error with a\n"
    "traceback and exit with status 1.\n",
    stdout);
  fflush(stdout);
}

/* Complain about the bad option arg on one line of stderr. */
static void print_usage_error(const char *arg) {
  if ((arg[1] == 'e' || arg[1] == 'l') && arg[2] == '\0')
    fprintf(stderr, "%s: '%s' needs argument", progname, arg);
  else
    fprintf(stderr, "%s: unrecognized option '%s'", progname, arg);
  fputs(" (try '" PROGNAME " --help')\n", stderr);
  fflush(stderr);
}

/*
** Scan the options in argv.  Sets *first to the index of the first
** argument that is not an option (the script, or argc when there is none),
** or to the bad option's index.  Returns the HAS_* bits.
*/
static int collect_args(int argc, char **argv, int *first) {
  int flags = 0, i;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    *first = i;
    if (a[0] != '-' || a[1] == '\0') /* the script, or "-" for stdin */
      return flags;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
      return flags | HAS_HELP;
    if (strcmp(a, "--version") == 0) {
      flags |= HAS_V;
      continue;
    }
    switch (a[1]) {
      case '-': /* "--": what follows is the script */
        if (a[2] != '\0')
          return HAS_ERROR;
        *first = i + 1;
        return flags;
      case 'E': case 'W': case 'i': case 'v':
        if (a[2] != '\0')
          return HAS_ERROR;
        if (a[1] == 'E')
          flags |= HAS_NOENV;
        else if (a[1] == 'i')
          flags |= HAS_I;
        else if (a[1] == 'v')
          flags |= HAS_V;
        break;
      case 'e': case 'l':
        if (a[1] == 'e')
          flags |= HAS_E;
        if (a[2] == '\0') { /* the argument is the next word */
          i++;
          if (i >= argc || argv[i][0] == '-')
            return HAS_ERROR;
        }
        break;
      default:
        return HAS_ERROR;
    }
  }
  *first = argc;
  return flags;
}

/*
** Set the global "arg": the script name at 0, its arguments at 1, 2, ...,
** and the interpreter and its options at negative indices.  With no script
** the interpreter's name is at 0.  [-0, +0, m]
*/
static void create_arg_table(lua_State *L, int argc, char **argv,
                             int script) {
  int i;
  lua_createtable(L, argc - script - 1 > 0 ? argc - script - 1 : 0,
                  script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* Run the function on top with no arguments and report any error. */
static int run_chunk(lua_State *L, int status) {
  if (status == LUA_OK)
    status = dl_repl_call(L, 0, 0);
  return dl_repl_report(L, progname, status);
}

static int do_string(lua_State *L, const char *s, const char *name) {
  return run_chunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* Run file name, or stdin when name is NULL. */
static int do_file(lua_State *L, const char *name) {
  return run_chunk(L, luaL_loadfile(L, name));
}

/*
** "-l spec": spec is "mod" or "g=mod".  Sets global g (by default the
** module name up to any "-" version suffix, as in lua) to require(mod).
*/
static int do_library(lua_State *L, const char *spec) {
  const char *eq = strchr(spec, '=');
  const char *mod = eq != NULL ? eq + 1 : spec;
  size_t glen;
  int status;
  if (eq != NULL)
    glen = (size_t)(eq - spec);
  else {
    const char *mark = strchr(spec, '-');
    glen = mark != NULL ? (size_t)(mark - spec) : strlen(spec);
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, mod);
  status = dl_repl_call(L, 1, 1);
  if (status == LUA_OK) {
    lua_pushlstring(L, spec, glen);
    lua_insert(L, -2);
    lua_setglobal(L, lua_tostring(L, -2));
    lua_pop(L, 1);
  }
  return dl_repl_report(L, progname, status);
}

/* Run the -e, -l and -W options among argv[1 .. first-1], in order. */
static int run_args(lua_State *L, char **argv, int first) {
  int i;
  for (i = 1; i < first; i++) {
    const char *a = argv[i];
    int opt = a[1];
    if (opt == 'e' || opt == 'l') {
      const char *extra = a + 2;
      int status;
      if (*extra == '\0')
        extra = argv[++i];
      if (opt == 'e')
        status = do_string(L, extra, "=(command line)");
      else
        status = do_library(L, extra);
      if (status != LUA_OK)
        return 0;
    } else if (opt == 'W' && a[2] == '\0') {
      lua_warning(L, "@on", 0);
    }
  }
  return 1;
}

/* Run LUA_INIT_5_4 or LUA_INIT: "@file" or a chunk of Lua. */
static int handle_luainit(lua_State *L) {
  const char *name = "=LUA_INIT_" LUA_VERSION_MAJOR "_" LUA_VERSION_MINOR;
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (init == NULL)
    return LUA_OK;
  if (init[0] == '@')
    return do_file(L, init + 1);
  return do_string(L, init, name);
}

/*
** Run the script at argv[0] ("-" for stdin, unless it came after "--")
** with the script arguments (the positive entries of "arg") as "...".
*/
static int handle_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  int status, n, i;
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0)
    fname = NULL;
  status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    if (lua_getglobal(L, "arg") != LUA_TTABLE)
      luaL_error(L, "'arg' is not a table");
    n = (int)luaL_len(L, -1);
    luaL_checkstack(L, n + 3, "too many arguments to script");
    for (i = 1; i <= n; i++)
      lua_rawgeti(L, -i, i);
    lua_remove(L, -i); /* the table "arg" */
    status = dl_repl_call(L, n, LUA_MULTRET);
  }
  return dl_repl_report(L, progname, status);
}

/*
** The whole command, run in protected mode: argument 1 is argc, 2 is
** argv.  Returns true when everything went well.  The libraries are opened
** here, after the options are known, because -E must be seen by them.
*/
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int first = argc, script, flags;
  luaL_checkversion(L);
  if (argc >= 2 && strcmp(argv[1], "kernel") == 0) { /* dlua kernel ... */
    dlua_openlibs(L);
    lua_gc(L, LUA_GCRESTART);
    lua_gc(L, LUA_GCGEN, 0, 0);
    lua_pushboolean(L, dl_kernel_command(L, argc - 1, argv + 1));
    return 1;
  }
  flags = collect_args(argc, argv, &first);
  if (flags & HAS_ERROR) {
    print_usage_error(argv[first]);
    return 0;
  }
  if (flags & HAS_HELP) {
    print_help();
    lua_pushboolean(L, 1);
    return 1;
  }
  if (flags & HAS_V)
    print_version();
  if (flags & HAS_NOENV) {
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  dlua_openlibs(L);
  script = first < argc ? first : 0;
  create_arg_table(L, argc, argv, script);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (!(flags & HAS_NOENV) && handle_luainit(L) != LUA_OK)
    return 0;
  if (!run_args(L, argv, first))
    return 0;
  if (script > 0 && handle_script(L, argv + script) != LUA_OK)
    return 0;
  if (flags & HAS_I) {
    if (!(flags & HAS_V))
      print_greeting();
    dl_repl_run(L);
  } else if (script == 0 && !(flags & (HAS_E | HAS_V))) {
    if (isatty(STDIN_FILENO)) {
      print_greeting();
      dl_repl_run(L);
    } else if (do_file(L, NULL) != LUA_OK) {
      return 0;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/*
** SIGTERM and SIGHUP end the command as they end lua, but first the
** clusters it runs are closed (workers ended, private directories
** removed).  The handler only writes the signal's number to a pipe; a
** thread reads it, stops the clusters, and lets the signal kill the
** process, so the exit status is the conventional one.  A signal ignored
** when we start (nohup) stays ignored.
*/
static int term_pipe[2] = {-1, -1};

static void on_term(int sig) {
  unsigned char c = (unsigned char)sig;
  ssize_t n = write(term_pipe[1], &c, 1);
  (void)n;
}

static void *term_thread(void *arg) {
  unsigned char c;
  sigset_t set;
  (void)arg;
  while (read(term_pipe[0], &c, 1) != 1)
    if (errno != EINTR) return NULL;
  dlua_stop_clusters();
  signal(c, SIG_DFL);
  sigemptyset(&set);
  sigaddset(&set, c);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  raise(c);
  _exit(128 + c);
}

static void watch_term_signals(void) {
  static const int sigs[2] = {SIGTERM, SIGHUP};
  struct sigaction sa, old;
  pthread_t t;
  int i;
  if (pipe(term_pipe)) return;
  fcntl(term_pipe[0], F_SETFD, FD_CLOEXEC); /* not for our children */
  fcntl(term_pipe[1], F_SETFD, FD_CLOEXEC);
  if (pthread_create(&t, NULL, term_thread, NULL)) {
    close(term_pipe[0]);
    close(term_pipe[1]);
    return;
  }
  pthread_detach(t);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (i = 0; i < 2; i++)
    if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
      sigaction(sigs[i], &sa, NULL);
}

/*
** A worker process if asked for one; otherwise create the state, run
** pmain in protected mode, close the state and exit as lua does: 0 on
** success, 1 on any failure.
*/
int main(int argc, char **argv) {
  int rc, status, ok;
  lua_State *L;
  dl_mem_heap_init(); /* client and workers: the C heap on huge pages */
  rc = dlua_worker_main(argc, argv);
  if (rc >= 0)
    return rc;
  if ((rc = dl_netcmd_main(argc, argv)) >= 0) /* dlua worker ... */
    return rc;
  watch_term_signals();
  if (argv[0] != NULL && argv[0][0] != '\0')
    progname = argv[0];
  L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create state: not enough memory\n",
            progname);
    return EXIT_FAILURE;
  }
  lua_setallocf(L, dlua_alloc, NULL); /* big strings get huge pages */
  lua_gc(L, LUA_GCSTOP); /* no collections while the libraries load */
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  ok = lua_toboolean(L, -1);
  dl_repl_report(L, progname, status);
  lua_close(L); /* closes every cluster the script left open */
  if (!ok && dl_repl_interrupted())
    return 130; /* as a shell reports a command ended by Ctrl-C */
  return (ok && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}

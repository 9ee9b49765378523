/*
** dl_repl.c -- the dlua command's read-eval-print loop, after lua.c's.
**
** An entry is first compiled as "return <line>;" (with no tail call, see
** load_entry) so that expressions print
** their values; if that fails it is compiled as a statement, and while the
** compiler complains about an unexpected <eof> more lines are read with the
** ">> " prompt (or the globals _PROMPT and _PROMPT2, as in lua).  On a
** terminal, lines are read through libedit, with tab completion
** (dl_complete.c), and values are printed with dlua.pretty.  Otherwise the
** loop is lua -i's as Debian builds it, with readline: each line read is
** echoed after its prompt, and values are printed by the global print.
**
** Ctrl-C is handled with two SIGINT handlers.  While a chunk runs, the
** handler only installs a debug hook (lua_sethook is the one call that is
** safe from a signal handler) and the hook raises "interrupted!" inside
** the running code.  While a line is being read, the handler only sets a
** flag; the read fails with EINTR, and the line being typed is dropped.
*/
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "dl_complete.h"
#include "dl_edit.h"
#include "dl_repl.h"
#include "dlua.h"

#define PROMPT "> "
#define PROMPT2 ">> "
#define CHUNKNAME "=stdin"
#define EOFMARK "<eof>"
#define HISTORY_FILE ".dlua_history"
#define HISTORY_MAX 1000

/* Results of reading an entry, beside the lua_load statuses. */
#define ENTRY_EOF (-1)
#define ENTRY_INTERRUPTED (-2)

/* The state that a running chunk may be interrupted in. */
static lua_State *volatile running_L = NULL;

/* Set when Ctrl-C stopped (or tried to stop) the running chunk. */
static volatile sig_atomic_t chunk_interrupted = 0;

/* Set from a Ctrl-C until the hook has raised its error. */
static volatile sig_atomic_t stop_pending = 0;

/* Set when Ctrl-C is pressed while a line is being read. */
static volatile sig_atomic_t prompt_interrupted = 0;

/* The loop's own data; the Lua values it needs live on the stack. */
typedef struct Repl {
  int tty;     /* stdin is a terminal: read through libedit */
  int top;     /* stack top below every entry's values */
  int printer; /* stack index of pretty's print (used on a terminal) */
  int history; /* stack index of the history file name (or nil) */
} Repl;

/* Install handler for SIGINT, saving the previous action in old. */
static void set_sigint(void (*handler)(int), struct sigaction *old) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: a pending read must fail with EINTR */
  sigaction(SIGINT, &sa, old);
}

/* The hook that turns a Ctrl-C into a Lua error in the running code. */
static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  stop_pending = 0;
  dlua_interrupt(0); /* one Ctrl-C, one error: a later wait must not see it */
  lua_pushliteral(L, "interrupted!"); /* no position: it may be dlua's */
  lua_error(L);
}

/*
** SIGINT while a chunk runs: ask the state to stop at the next hook
** event, and a client wait to end now (dlua_interrupt).  A second Ctrl-C
** before the first took effect (code stuck in C) ends the process, as in
** lua.c; once it took effect, the next Ctrl-C interrupts again.
*/
static void stop_chunk(void) {
  int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  stop_pending = 1;
  chunk_interrupted = 1;
  dlua_interrupt(1);
  lua_sethook(running_L, stop_hook, mask, 1);
}

static void on_sigint_running(int sig) {
  if (stop_pending) {
    signal(sig, SIG_DFL);
    raise(sig); /* delivered when this handler returns */
    return;
  }
  stop_chunk();
}

/* SIGINT while a line is read: only note it. */
static void on_sigint_prompt(int sig) {
  (void)sig;
  prompt_interrupted = 1;
}

/*
** The traceback of a Ctrl-C: one line, then only the user's frames (those
** of dlua's own modules, "[dlua]/...", and of C functions are left out).
** [-0, +1, m]
*/
static void interrupt_traceback(lua_State *L) {
  luaL_Buffer b;
  lua_Debug ar;
  int level;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "interrupted!");
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    char line[400];
    lua_getinfo(L, "Sln", &ar);
    if (ar.currentline <= 0 || strncmp(ar.short_src, "[dlua]", 6) == 0)
      continue;
    if (*ar.what == 'm')
      snprintf(line, sizeof line, "\n\t%s:%d: in main chunk", ar.short_src,
               ar.currentline);
    else if (ar.name != NULL && *ar.namewhat != '\0')
      snprintf(line, sizeof line, "\n\t%s:%d: in %s '%s'", ar.short_src,
               ar.currentline,
               strcmp(ar.namewhat, "global") == 0 ? "function" : ar.namewhat,
               ar.name);
    else
      snprintf(line, sizeof line, "\n\t%s:%d: in function <%s:%d>",
               ar.short_src, ar.currentline, ar.short_src, ar.linedefined);
    luaL_addstring(&b, line);
  }
  luaL_pushresult(&b);
}

/* The message handler of dl_repl_call: message plus traceback. */
static int msg_handler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (chunk_interrupted) {
    interrupt_traceback(L);
    return 1;
  }
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1; /* an error object that describes itself */
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  dlua_traceback(L, L, msg, 1); /* the user's frames, not dlua's */
  return 1;
}

/*
** Call like lua_pcall, with a traceback and Ctrl-C support (see
** dl_repl.h).  [-(narg+1), +(nres|1), -]
*/
int dl_repl_call(lua_State *L, int narg, int nres) {
  return dl_repl_call_missed(L, narg, nres, NULL);
}

int dl_repl_call_missed(lua_State *L, int narg, int nres,
                        volatile sig_atomic_t *missed) {
  struct sigaction old;
  int status;
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msg_handler);
  lua_insert(L, base);
  running_L = L;
  chunk_interrupted = 0;
  stop_pending = 0;
  dlua_interrupt(0);
  set_sigint(on_sigint_running, &old);
  if (missed && *missed) {
    /* A SIGINT that came before the handler above: taken now, with SIGINT
       held back so that one arriving meanwhile counts as a second. */
    sigset_t s, was;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    pthread_sigmask(SIG_BLOCK, &s, &was);
    *missed = 0;
    if (!stop_pending) stop_chunk();
    pthread_sigmask(SIG_SETMASK, &was, NULL);
  }
  status = lua_pcall(L, narg, nres, base);
  sigaction(SIGINT, &old, NULL);
  /* A Ctrl-C that came too late to stop the chunk must not stop the next. */
  if (lua_gethook(L) == stop_hook)
    lua_sethook(L, NULL, 0, 0);
  dlua_interrupt(0);
  if (status == LUA_OK)
    chunk_interrupted = 0;
  lua_remove(L, base);
  return status;
}

int dl_repl_interrupted(void) { return chunk_interrupted; }

/*
** Print and pop the error message of a failed status (see dl_repl.h).
** [-(0|1), +0, -]
*/
int dl_repl_report(lua_State *L, const char *progname, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL)
      msg = "(error object is not a string)";
    if (progname != NULL)
      fprintf(stderr, "%s: ", progname);
    fprintf(stderr, "%s\n", msg);
    fflush(stderr);
    lua_pop(L, 1);
  }
  return status;
}

/*
** libedit's character reader: a plain read() that gives up (end of input
** for libedit) when Ctrl-C was pressed, so readline returns at once.
*/
static int repl_getc(FILE *f) {
  unsigned char c;
  for (;;) {
    ssize_t n = read(fileno(f), &c, 1);
    if (n == 1)
      return c;
    if (n == 0)
      return EOF;
    if (errno != EINTR || prompt_interrupted)
      return EOF;
  }
}

/* Prepare libedit and load the history file (a missing one is fine). */
static void editline_open(lua_State *L, const char *history) {
  rl_readline_name = "dlua";
  rl_catch_signals = 0; /* our handlers, not libedit's */
  rl_getc_function = repl_getc;
  dl_complete_install(L);
  using_history();
  stifle_history(HISTORY_MAX);
  if (history != NULL)
    read_history(history);
}

/* tostring(value at 1) under lua_pcall, for push_prompt. */
static int prompt_tostring(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/*
** Push the prompt: the global _PROMPT (first line) or _PROMPT2 (later
** lines) converted as tostring does, or the default.  A value whose
** conversion fails gives the default, after the error is reported, so a
** bad prompt cannot end the session.  [-0, +1, m]
*/
static void push_prompt(lua_State *L, int firstline) {
  const char *dflt = firstline ? PROMPT : PROMPT2;
  lua_pushcfunction(L, prompt_tostring);
  if (lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2") == LUA_TNIL) {
    lua_pop(L, 2);
    lua_pushstring(L, dflt);
  } else if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pushfstring(L, "error in %s (%s)", firstline ? "_PROMPT" : "_PROMPT2",
                    lua_tostring(L, -1));
    lua_remove(L, -2);
    dl_repl_report(L, NULL, LUA_ERRRUN);
    lua_pushstring(L, dflt);
  }
}

/*
** Read a line through libedit after prompt and push it without its
** newline.  Returns 1 when a line was pushed, 0 at end of input,
** ENTRY_INTERRUPTED after a Ctrl-C.  [-0, +(0|1), m]
*/
static int read_tty_line(lua_State *L, const char *prompt) {
  char *line = readline(prompt);
  if (prompt_interrupted) {
    free(line);
    fputs("\n", stdout);
    fflush(stdout);
    return ENTRY_INTERRUPTED;
  }
  if (line == NULL)
    return 0;
  lua_pushstring(L, line);
  free(line);
  return 1;
}

/*
** Read a line from stdin that is not a terminal, as readline does there:
** write the prompt, read up to a newline or the end of input (a last line
** without a newline is a line too), and echo the line, so that the output
** reads as a transcript.  Pushes the line without its newline; returns as
** read_tty_line.  [-0, +(0|1), m]
*/
static int read_plain_line(lua_State *L, const char *prompt) {
  luaL_Buffer b;
  char chunk[256];
  int got = 0;
  size_t len;
  fputs(prompt, stdout);
  fflush(stdout);
  luaL_buffinit(L, &b);
  for (;;) {
    if (fgets(chunk, sizeof chunk, stdin) == NULL) {
      if (prompt_interrupted) {
        clearerr(stdin);
        luaL_pushresult(&b);
        lua_pop(L, 1);
        fputs("\n", stdout);
        fflush(stdout);
        return ENTRY_INTERRUPTED;
      }
      break;
    }
    got = 1;
    len = strlen(chunk);
    if (len > 0 && chunk[len - 1] == '\n') {
      luaL_addlstring(&b, chunk, len - 1);
      break;
    }
    luaL_addlstring(&b, chunk, len);
  }
  luaL_pushresult(&b);
  if (!got) {
    lua_pop(L, 1);
    return 0;
  }
  fwrite(lua_tostring(L, -1), 1, lua_rawlen(L, -1), stdout);
  fputs("\n", stdout);
  fflush(stdout);
  return 1;
}

/*
** Read a line with the prompt for a first or a later line of an entry and
** push it without its newline; a first line may start with "=" for
** "return ", as in lua.  Returns 1 when a line was pushed, 0 at end of
** input, ENTRY_INTERRUPTED after a Ctrl-C.  [-0, +(0|1), e]
*/
static int read_line(lua_State *L, Repl *r, int firstline) {
  int rc;
  const char *line;
  prompt_interrupted = 0;
  push_prompt(L, firstline);
  if (r->tty)
    rc = read_tty_line(L, lua_tostring(L, -1));
  else
    rc = read_plain_line(L, lua_tostring(L, -1));
  lua_remove(L, rc == 1 ? -2 : -1); /* the prompt */
  if (rc != 1 || !firstline)
    return rc;
  line = lua_tostring(L, -1);
  if (line[0] == '=') {
    lua_pushfstring(L, "return %s", line + 1);
    lua_remove(L, -2);
  }
  return 1;
}

/* Add a non-empty entry to the history and save the history file. */
static void save_line(lua_State *L, Repl *r, const char *line) {
  const char *path;
  if (!r->tty || line[0] == '\0')
    return;
  add_history(line);
  path = lua_tostring(L, r->history);
  if (path != NULL)
    write_history(path); /* failing to save history is not an error */
}

/*
** Whether status is a syntax error at the end of the chunk, which more
** lines may complete; if so, pop the message.  [-(0|1), +0, -]
*/
static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t len, mlen = sizeof(EOFMARK) - 1;
    const char *msg = lua_tolstring(L, -1, &len);
    if (msg != NULL && len >= mlen && strcmp(msg + len - mlen, EOFMARK) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/*
** Read and compile one entry.  On LUA_OK the compiled function is pushed;
** on a compile error its message is pushed; ENTRY_EOF and
** ENTRY_INTERRUPTED may leave junk that the caller clears.  [-0, +?, m]
*/
static int load_entry(lua_State *L, Repl *r) {
  const char *line, *retline;
  int status, rc;
  rc = read_line(L, r, 1);
  if (rc <= 0)
    return rc == 0 ? ENTRY_EOF : ENTRY_INTERRUPTED;
  /* An expression? */
  line = lua_tostring(L, -1);
  /* The to-be-closed local (nil: nothing to close) makes Lua compile the
     return as a plain call, not a tail call, so that the entry's own frame
     ("stdin:1:") stays on the stack for an error raised at the caller's
     line by a Lua function it calls. */
  retline = lua_pushfstring(L, "local _dlua_entry <close> = nil; return %s;",
                            line);
  if (luaL_loadbuffer(L, retline, strlen(retline), CHUNKNAME) == LUA_OK) {
    save_line(L, r, line);
    lua_remove(L, -2); /* the "return" line */
    lua_remove(L, -2); /* the line */
    return LUA_OK;
  }
  lua_pop(L, 2); /* the error message and the "return" line */
  /* A statement, maybe spread over several lines. */
  for (;;) {
    size_t len;
    const char *chunk = lua_tolstring(L, -1, &len);
    status = luaL_loadbuffer(L, chunk, len, CHUNKNAME);
    if (!incomplete(L, status))
      break;
    rc = read_line(L, r, 0);
    if (rc < 0)
      return ENTRY_INTERRUPTED;
    if (rc == 0) { /* end of input inside a statement: say why it fails */
      status = luaL_loadbuffer(L, chunk, len, CHUNKNAME);
      break;
    }
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
  save_line(L, r, lua_tostring(L, -2));
  lua_remove(L, -2); /* the source */
  return status;
}

/*
** Print the values from index first to the top, if any, and pop them: on
** a terminal with dlua.pretty's print, otherwise with the global print,
** looked up at each entry as lua does.
*/
static void print_results(lua_State *L, Repl *r, int first) {
  int n = lua_gettop(L) - first + 1;
  if (n > 0) {
    int status;
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    if (r->tty) {
      lua_pushvalue(L, r->printer);
      lua_insert(L, first);
      status = dl_repl_call(L, n, 0);
      if (status != LUA_OK) {
        lua_pushfstring(L, "error printing the result (%s)",
                        lua_tostring(L, -1));
        lua_remove(L, -2);
        dl_repl_report(L, NULL, status);
      }
    } else {
      lua_getglobal(L, "print");
      lua_insert(L, first);
      status = lua_pcall(L, n, 0, 0);
      if (status != LUA_OK) {
        lua_pushfstring(L, "error calling 'print' (%s)", lua_tostring(L, -1));
        lua_remove(L, -2);
        dl_repl_report(L, NULL, status);
      }
    }
  }
  fflush(stdout);
}

/* Push the function that prints results: dlua.pretty's, else print. */
static void push_printer(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "dlua.pretty");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
    lua_getfield(L, -1, "print");
    lua_remove(L, -2);
    if (lua_isfunction(L, -1))
      return;
  }
  lua_pop(L, 1);
  lua_getglobal(L, "print");
}

/* Push the history file name: $DLUA_HISTORY, ~/.dlua_history, or nil. */
static void push_history_path(lua_State *L) {
  const char *path = getenv("DLUA_HISTORY");
  const char *home = getenv("HOME");
  if (path != NULL && path[0] != '\0')
    lua_pushstring(L, path);
  else if (home != NULL && home[0] != '\0')
    lua_pushfstring(L, "%s/%s", home, HISTORY_FILE);
  else
    lua_pushnil(L);
}

/*
** Before each prompt: if dlua is loaded, let it take in results and run
** due done-callbacks (dlua._at_prompt); report what they raise.
** [-0, +0, -]
*/
static void at_prompt(lua_State *L) {
  int top = lua_gettop(L);
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) == LUA_TTABLE &&
      lua_getfield(L, -1, "dlua") == LUA_TTABLE &&
      lua_getfield(L, -1, "_at_prompt") == LUA_TFUNCTION) {
    int status = dl_repl_call(L, 0, 0);
    if (status != LUA_OK)
      dl_repl_report(L, NULL, status);
  }
  lua_settop(L, top);
}

/*
** The read-eval-print loop (see dl_repl.h).  The printer and the history
** file name stay on the stack below each entry's values while it runs.
** [-0, +0, e]
*/
void dl_repl_run(lua_State *L) {
  struct sigaction old;
  Repl r;
  int base = lua_gettop(L);
  r.tty = isatty(STDIN_FILENO);
  push_printer(L);
  r.printer = lua_gettop(L);
  push_history_path(L);
  r.history = lua_gettop(L);
  r.top = lua_gettop(L);
  if (r.tty)
    editline_open(L, lua_tostring(L, r.history));
  set_sigint(on_sigint_prompt, &old);
  for (;;) {
    int status;
    at_prompt(L);
    status = load_entry(L, &r);
    if (status == ENTRY_EOF)
      break;
    if (status == LUA_OK)
      status = dl_repl_call(L, 0, LUA_MULTRET);
    if (status == LUA_OK)
      print_results(L, &r, r.top + 1);
    else if (status != ENTRY_INTERRUPTED)
      dl_repl_report(L, NULL, status);
    lua_settop(L, r.top);
  }
  sigaction(SIGINT, &old, NULL);
  if (r.tty)
    clear_history();
  lua_settop(L, base);
  fputs("\n", stdout);
  fflush(stdout);
}

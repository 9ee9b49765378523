/*
** dl_repl.h -- the dlua command's interactive loop, and the protected
** call with Ctrl-C support that the command uses for every chunk it runs.
** Internal to the dlua command; not part of libdlua.
*/
#ifndef dl_repl_h
#define dl_repl_h

#include <signal.h>
#include <lua.h>

/*
** Call the function below its narg arguments on L's stack like lua_pcall,
** with a message handler that adds a traceback to the error, and with
** SIGINT turned into a Lua error "interrupted!" raised inside the running
** code (through a debug hook; the signal handler touches nothing else).
** The previous SIGINT disposition is restored before returning.  Returns
** the lua_pcall status.  [-(narg+1), +(nres|1), -]
*/
int dl_repl_call(lua_State *L, int narg, int nres);

/*
** dl_repl_call, for a host whose SIGINT may come before the call installs
** its handler (the kernel's interrupt_request, sent by another thread as
** the cell starts): when *missed is set (by the host's own SIGINT handler
** for such a signal), the call clears it and stops the chunk at its first
** instruction, as if the signal had come once the chunk ran.  missed may
** be NULL.  [-(narg+1), +(nres|1), -]
*/
int dl_repl_call_missed(lua_State *L, int narg, int nres,
                        volatile sig_atomic_t *missed);

/*
** Whether the last dl_repl_call that failed was stopped by Ctrl-C (its
** message is then "interrupted!" and the user's own frames only).
*/
int dl_repl_interrupted(void);

/*
** If status is not LUA_OK, write the message on top of L's stack to
** stderr, prefixed with "progname: " when progname is not NULL, and pop
** it.  Returns status.  [-(0|1), +0, -]
*/
int dl_repl_report(lua_State *L, const char *progname, int status);

/*
** Run the read-eval-print loop on stdin until end of input.  With a
** terminal, lines are read through libedit (editing, Tab completion,
** history kept in $DLUA_HISTORY or ~/.dlua_history) and results are
** printed with dlua.pretty; otherwise prompts go to stdout, lines are read
** plainly and echoed, and results are printed with the global print, as
** lua -i does.  The prompts are _PROMPT and _PROMPT2 when set.  Each entry
** is first tried as an expression ("return " .. line).  Errors are
** reported on stderr and the loop goes on; Ctrl-C interrupts a running
** entry or clears the line being typed.  [-0, +0, e]
*/
void dl_repl_run(lua_State *L);

#endif

/*
** dl_worker.h -- one worker process: an I/O thread (libuv: the scheduler
** link, peer transfers) and an executor thread owning the lua_State.
*/
#ifndef dl_worker_h
#define dl_worker_h

#include <lua.h>

/* The metatable name of futures; the worker decodes them as their value. */
#define DL_FUTURE_MT "dlua.Future"

#endif

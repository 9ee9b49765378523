/*
** dl_worker.h -- one worker process: an I/O thread (libuv: the scheduler
** link, peer transfers) and an executor thread owning the lua_State.
*/
#ifndef dl_worker_h
#define dl_worker_h

#include <lua.h>

/* The metatable name of futures; the worker decodes them as their value. */
#define DL_FUTURE_MT "dlua.Future"

/*
** The tasks' client (dlua.get_client inside a task), for the Lua binding.
** All but dl_worker_link_send run on the executor thread only.
*/
#include <stdint.h>

#include "dl_buf.h"

/* What wakes a parked task besides its deadline (dl_worker_park). */
enum { DL_PARK_ANY, DL_PARK_KEY, DL_PARK_REQ, DL_PARK_SLEEP };

/* The worker's decoder of futures in tasks' arguments: their values, from
   the worker's store (a dl_ud_decoder). */
int dl_worker_future_decode(lua_State *L, const char *p, size_t n,
                            void *ctx);

/* Send n bytes of client messages to the scheduler (copied). */
void dl_worker_link_send(const char *p, size_t n);
/* Append the scheduler's messages for the tasks' client that came to out:
   1 if there were some, else 0. */
int dl_worker_link_take(dl_buf *out);
/* Block the executor up to timeout seconds (< 0: until news) for news:
   1 when some came.  For waits that cannot yield. */
int dl_worker_link_block(double timeout);
/* Whether L is the running task's own coroutine and may yield. */
int dl_worker_can_park(lua_State *L);
/*
** Ask the executor to park the running task once it yields (the caller
** yields next): until news of key (DL_PARK_KEY, klen bytes, borrowed for
** the call), of gather reqid (DL_PARK_REQ), any news (DL_PARK_ANY), or
** none (DL_PARK_SLEEP), or timeout seconds (< 0: no limit).
*/
void dl_worker_park(int kind, double timeout, const char *key, size_t klen,
                    uint64_t reqid);
/* After a resume: the error the running task's wait must raise (a wait
   that closes a cycle), or NULL.  Borrowed until the task yields again. */
const char *dl_worker_park_error(void);
/* The key of the running task (*klen its length), or NULL between tasks.
   Borrowed until the task yields or ends. */
const char *dl_worker_task_key(size_t *klen);

#endif

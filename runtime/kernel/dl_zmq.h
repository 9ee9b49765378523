/*
** dl_zmq.h -- ZeroMQ (libzmq5), opened on first use (base/dl_dynlib.h).
**
** Only `dlua kernel` speaks ZeroMQ; loaded by every dlua process, libzmq
** and the C++ and Kerberos libraries behind it were a third of a worker's
** start.  Include this header instead of <zmq.h>: the functions below keep
** their names and prototypes and go through a table that the first call
** fills.  dl_zmq_load reports a missing library; after it failed, any call
** ends the process with the same message.
*/
#ifndef dl_zmq_h
#define dl_zmq_h

#include <zmq.h>

#include "dl_dynlib.h"

#define DL_ZMQ_FUNCS(X)                                                      \
  X(zmq_bind) X(zmq_close) X(zmq_connect) X(zmq_ctx_new)                     \
  X(zmq_ctx_shutdown) X(zmq_ctx_term) X(zmq_getsockopt) X(zmq_msg_close)     \
  X(zmq_msg_data) X(zmq_msg_init) X(zmq_msg_recv) X(zmq_msg_size)            \
  X(zmq_poll) X(zmq_proxy) X(zmq_recv) X(zmq_send) X(zmq_setsockopt)         \
  X(zmq_socket) X(zmq_strerror)

typedef struct dl_zmq_fns {
#define DL_ZMQ_SLOT(n) __typeof__(&n) p_##n;
  DL_ZMQ_FUNCS(DL_ZMQ_SLOT)
#undef DL_ZMQ_SLOT
} dl_zmq_fns;

extern dl_zmq_fns dl_zmq_fn;
extern dl_dynlib dl_zmq_lib;

/* Load libzmq now: 0, or -1 with the reason in err. */
int dl_zmq_load(char *err, size_t errlen);

static inline dl_zmq_fns *dl_zmq_(void) {
  dl_dynlib_need(&dl_zmq_lib);
  return &dl_zmq_fn;
}

#define zmq_bind (dl_zmq_()->p_zmq_bind)
#define zmq_close (dl_zmq_()->p_zmq_close)
#define zmq_connect (dl_zmq_()->p_zmq_connect)
#define zmq_ctx_new (dl_zmq_()->p_zmq_ctx_new)
#define zmq_ctx_shutdown (dl_zmq_()->p_zmq_ctx_shutdown)
#define zmq_ctx_term (dl_zmq_()->p_zmq_ctx_term)
#define zmq_getsockopt (dl_zmq_()->p_zmq_getsockopt)
#define zmq_msg_close (dl_zmq_()->p_zmq_msg_close)
#define zmq_msg_data (dl_zmq_()->p_zmq_msg_data)
#define zmq_msg_init (dl_zmq_()->p_zmq_msg_init)
#define zmq_msg_recv (dl_zmq_()->p_zmq_msg_recv)
#define zmq_msg_size (dl_zmq_()->p_zmq_msg_size)
#define zmq_poll (dl_zmq_()->p_zmq_poll)
#define zmq_proxy (dl_zmq_()->p_zmq_proxy)
#define zmq_recv (dl_zmq_()->p_zmq_recv)
#define zmq_send (dl_zmq_()->p_zmq_send)
#define zmq_setsockopt (dl_zmq_()->p_zmq_setsockopt)
#define zmq_socket (dl_zmq_()->p_zmq_socket)
#define zmq_strerror (dl_zmq_()->p_zmq_strerror)

#endif

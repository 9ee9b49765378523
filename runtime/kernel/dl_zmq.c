/*
** dl_zmq.c -- libzmq's table of functions (see dl_zmq.h).
*/

#include "dl_zmq.h"

dl_zmq_fns dl_zmq_fn;

static const char *const names[] = {
#define DL_ZMQ_NAME(n) #n,
  DL_ZMQ_FUNCS(DL_ZMQ_NAME)
#undef DL_ZMQ_NAME
  NULL};

dl_dynlib dl_zmq_lib = {"libzmq.so.5", "libzmq5", names,
                        (void **)&dl_zmq_fn, 0, ""};

int dl_zmq_load(char *err, size_t errlen) {
  return dl_dynlib_load_err(&dl_zmq_lib, err, errlen);
}

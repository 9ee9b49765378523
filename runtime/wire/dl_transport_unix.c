/*
** dl_transport_unix.c -- the Unix-domain socket transport: addresses are
** file system paths.
*/
#include "dl_conn.h"

static int unix_init(uv_loop_t *loop, dl_handle *h) {
  return uv_pipe_init(loop, &h->pipe, 0);
}

static int unix_connect(dl_handle *h, const char *addr, uv_connect_t *req,
                        uv_connect_cb cb) {
  uv_pipe_connect(req, &h->pipe, addr, cb); /* errors arrive in cb */
  return 0;
}

static int unix_bind(dl_handle *h, const char *addr) {
  return uv_pipe_bind(&h->pipe, addr);
}

const dl_transport dl_transport_unix = {"unix", "", unix_init, unix_connect,
                                        unix_bind};

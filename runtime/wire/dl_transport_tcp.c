/*
** dl_transport_tcp.c -- the TCP transport: addresses are "tcp://host:port",
** and a connection carries frames only after the handshake of dl_auth.h
** (dl_tcp_dial does both).  Listening sides use dl_tcp_listen, which
** authenticates every peer, and adopt its sockets with dl_conn_open_fd.
*/
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dl_conn.h"
#include "dl_tcp.h"

static dl_tcp_opts creds; /* dl_transport_tcp_setup */

void dl_transport_tcp_setup(const dl_tcp_opts *opts) { creds = *opts; }

typedef struct dial {
  dl_handle *h;
  uv_connect_t *req;
  uv_connect_cb cb;
} dial;

static int tcp_init(uv_loop_t *loop, dl_handle *h) {
  return uv_tcp_init(loop, &h->tcp);
}

/* The dial is over: the authenticated socket becomes the handle's. */
static void dialled(int fd, const char *err, void *ud) {
  dial *d = ud;
  int rc = fd;
  if (fd >= 0) {
    rc = uv_is_closing(&d->h->handle) ? UV_ECANCELED
                                       : uv_tcp_open(&d->h->tcp, fd);
    if (rc) close(fd);
  } else if (err) {
    fprintf(stderr, "dlua: %s\n", err);
  }
  d->req->handle = &d->h->stream;
  d->cb(d->req, rc);
  dl_free(d);
}

static int tcp_connect(dl_handle *h, const char *addr, uv_connect_t *req,
                       uv_connect_cb cb) {
  char host[256], err[300];
  int port, rc;
  dial *d;
  if (creds.token == NULL) return UV_EACCES; /* no token: no TCP */
  if (dl_tcp_parse(addr, host, sizeof host, &port, err, sizeof err))
    return UV_EINVAL;
  if ((d = dl_realloc(NULL, sizeof *d)) == NULL) return UV_ENOMEM;
  d->h = h;
  d->req = req;
  d->cb = cb;
  rc = dl_tcp_dial(h->handle.loop, host, port, &creds, 0, dialled, d);
  if (rc) dl_free(d);
  return rc;
}

static int tcp_bind(dl_handle *h, const char *addr) {
  (void)h;
  (void)addr;
  return UV_EPERM; /* unauthenticated listening: see dl_tcp_listen */
}

const dl_transport dl_transport_tcp = {"tcp", "tcp://", tcp_init, tcp_connect,
                                       tcp_bind};

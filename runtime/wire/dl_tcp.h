/*
** dl_tcp.h -- TCP connections (IPv4 and IPv6, libuv) that authenticate
** before anything else: a listener that runs the handshake of dl_auth.h on
** every accepted connection, under a time limit, and a dialer that does
** the same on the connecting side, under its own.
**
** Only an authenticated connection leaves this file, as a plain socket
** descriptor (TCP_NODELAY and keep-alive set) that the owner adopts as a
** frame stream (dl_conn_open_fd or the transport that replaces it); until
** then not one byte of a peer is given to any decoder.  A refused peer gets
** one line in the log (address and reason) and its connection is closed:
** garbage at its first byte, a wrong token, another wire version (both
** versions named), a handshake not finished in time (slow-loris).
** Pure C on libuv: no Lua.
*/
#ifndef dl_tcp_h
#define dl_tcp_h

#include <uv.h>

#include "dl_auth.h"
#include "dl_tls.h"

/* Default time a peer has to finish its handshake, and a dialer to reach
   its server and finish it (milliseconds). */
#define DL_TCP_HANDSHAKE_MS 5000
#define DL_TCP_CONNECT_MS 10000

typedef struct dl_tcp_opts {
  const dl_token *token;  /* borrowed; must outlive every connection */
  const char *version;    /* this dlua's version string; borrowed */
  unsigned handshake_ms;  /* 0: DL_TCP_HANDSHAKE_MS */
  unsigned wire;          /* 0: DL_AUTH_WIRE, or the environment's
                             DLUA_TEST_WIRE (tests speak others) */
  /* One line per refused peer (no newline); NULL: written to stderr as
     "dlua: ...".  Called on the loop's thread. */
  void (*log)(void *ud, const char *line);
  void *log_ud;
  /* TLS (dl_tls.h): NULL for none.  With it, a connection is a TLS
     session, both sides' certificates checked against the CA, and the
     token's handshake runs inside it; the socket the owner gets carries
     the session's records, and the connection that adopts it takes the
     session too (dl_tls_hand, dl_tls_claim).  Borrowed. */
  const dl_tls_ctx *tls;
} dl_tcp_opts;

typedef struct dl_tcp_server dl_tcp_server;

/* An authenticated peer: fd is the caller's to own and close; peer is its
   address ("1.2.3.4:5678" or "[::1]:5678"), borrowed for the call. */
typedef void (*dl_tcp_accept_cb)(dl_tcp_server *s, int fd, const char *peer,
                                 void *data);

/*
** Split "tcp://HOST:PORT", "HOST:PORT" or "tcp://[V6]:PORT" into host
** (hostlen bytes, brackets removed) and port (0..65535).  0, or DL_EINVAL
** with one line in err.
*/
int dl_tcp_parse(const char *addr, char *host, size_t hostlen, int *port,
                 char *err, size_t errlen);

/*
** Listen on host:port (a numeric IPv4 or IPv6 address; "0.0.0.0" or "::"
** for all; port 0 picks a free one) and call cb with each peer that
** authenticates.  opts is copied (what it points to is borrowed).  On
** success *out is the server; else a libuv error code with one line in
** err (a port in use says so).
*/
int dl_tcp_listen(dl_tcp_server **out, uv_loop_t *loop, const char *host,
                  int port, const dl_tcp_opts *opts, dl_tcp_accept_cb cb,
                  void *data, char *err, size_t errlen);
/* The port it listens on (the one picked when asked for 0). */
int dl_tcp_server_port(const dl_tcp_server *s);
/* Handshakes under way (peers connected but not yet authenticated). */
int dl_tcp_server_pending(const dl_tcp_server *s);
/* Stop listening and drop the handshakes under way; the server is freed
   by libuv's close callbacks (run the loop). */
void dl_tcp_server_close(dl_tcp_server *s);

/* The end of a dial: fd >= 0 is an authenticated socket the callee owns;
   else fd is a libuv error code and err one line saying why. */
typedef void (*dl_tcp_dial_cb)(int fd, const char *err, void *ud);

/*
** Connect to host:port (a name or a numeric address; each address of a
** name is tried in turn) and authenticate, all within timeout_ms (0:
** DL_TCP_CONNECT_MS); cb is called exactly once, on the loop's thread,
** never from inside this call.  0, or a libuv error code when the dial
** could not start (cb is not called then).
*/
int dl_tcp_dial(uv_loop_t *loop, const char *host, int port,
                const dl_tcp_opts *opts, unsigned timeout_ms,
                dl_tcp_dial_cb cb, void *ud);
/*
** dl_tcp_dial on a private loop, waiting for the result: *fd is the
** authenticated socket; else a libuv error code and one line in err
** (UV_EACCES: the token was refused; UV_EPROTONOSUPPORT: the other side
** speaks another wire version).
*/
int dl_tcp_dial_sync(const char *host, int port, const dl_tcp_opts *opts,
                     unsigned timeout_ms, int *fd, char *err, size_t errlen);
/*
** The local address of the TCP connection behind fd, a socket from this
** file (with or without TLS, a TCP socket).
** 0, or -1 (ss->ss_family is then AF_UNSPEC).
*/
int dl_tcp_sockname(int fd, struct sockaddr_storage *ss);

#endif

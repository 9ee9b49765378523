/*
** dl_tls.h -- TLS (OpenSSL's libssl, opened on first use) for the TCP
** connections of dl_tcp.h: mutual TLS with the cluster's private CA.
**
** A TLS directory holds ca.pem (the cluster's CA), cert.pem (this side's
** certificate, signed by that CA) and key.pem (its key, mode 0600); `dlua
** tls-gen DIR` makes one.  Both ends present their certificate and check
** the peer's against the CA (TLS 1.3 only), so a certificate from another
** CA, or none, ends the connection before the dlua handshake; that
** handshake (dl_auth.h, the token) still runs, inside the TLS channel.
** No host name is checked: every certificate the private CA signed is a
** member of the cluster.
**
** OpenSSL runs on a BIO of our own (sans-IO, dl_tls below): the transport
** moves the bytes over libuv, OpenSSL never touches a socket.  Once a
** connection is authenticated, dl_tls_hand leaves its session beside its
** socket, and the connection that adopts the socket (dl_conn_open_fd, or
** the TCP transport's dial) takes it (dl_tls_claim): that connection's
** loop decrypts what it reads straight into its frame buffer and
** encrypts what it writes, so the owner's code is the same with or
** without TLS and no byte crosses a thread or an extra socket.  Once the
** handshake is done, a session of TLS_AES_128_GCM_SHA256 seals and opens
** its TLS 1.3 records itself, with the keys OpenSSL derived, straight
** between the caller's buffers and the records (dl_tls.c, "Records of our
** own"); OpenSSL keeps the handshake.  Pure C on libuv: no Lua.
*/
#ifndef dl_tls_h
#define dl_tls_h

#include <stddef.h>

#include "dl_buf.h"

typedef struct dl_tls_ctx dl_tls_ctx;

/* File names inside a TLS directory. */
#define DL_TLS_CA "ca.pem"
#define DL_TLS_CERT "cert.pem"
#define DL_TLS_KEY "key.pem"

/*
** Load the TLS directory dir: CA, certificate and key, checked against one
** another.  *out is the context (shared by every connection of the
** process; free it with dl_tls_ctx_free when none is left).  0, or
** DL_EINVAL with one line in err (which file, and what is wrong with it).
*/
int dl_tls_ctx_load(dl_tls_ctx **out, const char *dir, char *err,
                    size_t errlen);
void dl_tls_ctx_free(dl_tls_ctx *c);
/* The context of dir, loaded on first use and kept for the process's
   life (every connection of a cluster shares it).  NULL with one line in
   err when dl_tls_ctx_load fails (then it is tried again next time). */
const dl_tls_ctx *dl_tls_ctx_shared(const char *dir, char *err,
                                    size_t errlen);
/* The directory it was loaded from. */
const char *dl_tls_ctx_dir(const dl_tls_ctx *c);

/* One TLS session, on a BIO of dl_tls.c's that never touches a socket. */
typedef struct dl_tls {
  void *ssl; /* SSL*; NULL when none */
  void *io;  /* its BIO's buffers: what came from the peer, what goes to it */
} dl_tls;

enum { DL_TLS_FAIL = -1, DL_TLS_MORE = 0, DL_TLS_DONE = 1 };

/* Start a session as the accepting (server != 0) or connecting end.  0,
   or -1 with one line in err. */
int dl_tls_begin(dl_tls *t, const dl_tls_ctx *c, int server, char *err,
                 size_t errlen);
/* Give it n bytes read from the peer.  0, or -1 (out of memory). */
int dl_tls_push(dl_tls *t, const void *p, size_t n);
/* Lend it the n bytes at p, read from the peer, for the dl_tls_read calls
   that follow (no copy); dl_tls_unlend ends the loan, keeping (copying)
   what was not read yet: 0, or -1 (out of memory). */
void dl_tls_lend(dl_tls *t, const void *p, size_t n);
int dl_tls_unlend(dl_tls *t);
/* Append what it has for the peer to out (when out is empty, the buffers
   are swapped: no copy, and out's room is reused).  0, or -1 (out of
   memory). */
int dl_tls_pull(dl_tls *t, dl_buf *out);
/* Go on with the handshake: DL_TLS_DONE, DL_TLS_MORE (push more), or
   DL_TLS_FAIL with one line in err (the certificate's fault named). */
int dl_tls_handshake(dl_tls *t, char *err, size_t errlen);
/* Read up to n clear bytes: how many (> 0), 0 when it needs more from the
   peer, -1 when the session failed or the peer closed it (err says). */
long dl_tls_read(dl_tls *t, void *p, size_t n, char *err, size_t errlen);
/* Encrypt n bytes (pull them after).  0, or -1. */
int dl_tls_write(dl_tls *t, const void *p, size_t n);
/* Whether t's records are sealed and opened by dlua itself (dl_tls.c,
   "Records of our own"), 1, or by OpenSSL, 0. */
int dl_tls_own(const dl_tls *t);
/* 1 (the default): sessions begun from now on take their records over
   from OpenSSL when the handshake is done, where they can; 0: they keep
   OpenSSL's record layer (the tests' other kind of peer). */
extern int dl_tls_records_own;
/* Free the session (when not adopted). */
void dl_tls_end(dl_tls *t);

/*
** Leave the session t of an authenticated TLS connection for whoever
** adopts its TCP socket fd (taken: t->ssl becomes NULL, also on failure).
** 0, or a libuv error code with one line in err.
*/
int dl_tls_hand(int fd, dl_tls *t, char *err, size_t errlen);
/* The session left for the socket fd, now the caller's (free it with
   dl_tls_free), or NULL when fd is not an authenticated TLS connection's
   socket (or was closed and its number reused since). */
dl_tls *dl_tls_claim(int fd);
void dl_tls_free(dl_tls *t);
/* Sessions handed and not yet claimed (tests). */
int dl_tls_waiting(void);

#endif

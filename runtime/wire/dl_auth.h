/*
** dl_auth.h -- the handshake every network connection makes before a single
** byte of its frames is decoded: both ends prove they hold the cluster's
** token (a challenge-response HMAC-SHA256, OpenSSL's libcrypto) and speak
** the same wire version.
**
** The handshake is three fixed-size messages; no varint, no length field,
** nothing that a peer controls decides how much is read:
**
**   S1 server -> client  "DLUAAUTH" wire:u16 flags:u16 version:16 nonce:32
**                        (60 bytes)
**   C1 client -> server  "DLUAAUTH" wire:u16 flags:u16 version:16 nonce:32
**                        mac:32 (92 bytes)
**        mac = HMAC(token, "dlua client" || S1 || C1 without its mac)
**   S2 server -> client  status:u8 mac:32 (33 bytes)
**        status 0: accepted, mac = HMAC(token, "dlua server" || S1 || C1)
**        status 1: wire version refused; 2: wrong token (mac all zero)
**
** wire and flags are little-endian; version is the sender's dlua version
** string, NUL-padded.  The server's nonce makes each C1 good for one
** connection only (no replay); the client's nonce and S2's mac prove the
** server holds the token too, so a client never sends work to an impostor.
** The server judges the magic as soon as 8 bytes arrive, so garbage is
** refused without waiting for a full message.
**
** The state machine does no I/O: the transport feeds it what it reads and
** writes what it is given ("sans-IO"), so the same code runs over TCP, TLS
** or a fuzzer.  dl_auth_want() says how many bytes the handshake still
** needs, so a transport can read exactly that much and never take a frame
** byte into the handshake.  The handshake's time limit is the transport's
** (a timer); this file has no clock.  Pure C: no Lua, no libuv.
*/
#ifndef dl_auth_h
#define dl_auth_h

#include <stddef.h>
#include <stdint.h>

#include "dl_buf.h"

/* The wire version this build speaks; bumped when any message changes.
   4: a future in a task's payload is its position in the task's
   inputs, not its key (dl_w_future_decode), and a function its position
   in the task's functions, which COMPUTE carries (fn_get_at). */
#define DL_AUTH_WIRE 4
/* Environment variable that may hold the token (instead of a file). */
#define DL_TOKEN_ENV "DLUA_TOKEN"
/* A token is 16 to DL_TOKEN_MAX bytes (trailing white space not counted). */
#define DL_TOKEN_MIN 16
#define DL_TOKEN_MAX 1024

/* What a server with TLS (dl_tls.h) sends, in the clear, before its TLS
   handshake: a client without TLS reads it where it expects S1's magic,
   and a client with TLS reads it instead of S1, so each side of a TLS
   mismatch knows at once what is wrong. */
#define DL_AUTH_TLS_HELLO "DLUATLS1"
#define DL_AUTH_TLS_HELLO_LEN 8

#define DL_AUTH_S1_LEN 60
#define DL_AUTH_C1_LEN 92
#define DL_AUTH_S2_LEN 33

/* dl_auth_feed results. */
enum { DL_AUTH_FAIL = -1, DL_AUTH_MORE = 0, DL_AUTH_DONE = 1 };
/* Roles: the accepting end is the server, the connecting end the client. */
enum { DL_AUTH_SERVER = 1, DL_AUTH_CLIENT = 2 };
/* Why a handshake failed (dl_auth.why). */
enum {
  DL_AUTH_OK = 0,
  DL_AUTH_EGARBAGE, /* the peer's bytes are not a dlua handshake */
  DL_AUTH_EVERSION, /* the peer speaks another wire version */
  DL_AUTH_ETOKEN,   /* the peer does not hold the token (or we do not) */
  DL_AUTH_ESYS      /* no randomness or no memory */
};

/* The cluster's shared secret. */
typedef struct dl_token {
  unsigned char k[DL_TOKEN_MAX];
  size_t n;
} dl_token;

typedef struct dl_auth {
  int role;
  int state;
  int why;                      /* DL_AUTH_OK or the failure's kind */
  unsigned wire;                /* the wire version we speak */
  const char *version;          /* ours; borrowed, outlives the handshake */
  const dl_token *token;        /* borrowed, outlives the handshake */
  unsigned char s1[DL_AUTH_S1_LEN];
  unsigned char c1[DL_AUTH_C1_LEN];
  unsigned char s2[DL_AUTH_S2_LEN];
  size_t have;                  /* bytes of the message being read */
  unsigned peer_wire;           /* the peer's, once its hello is read */
  char peer_version[17];
  char err[200];                /* one line, set when why != DL_AUTH_OK */
} dl_auth;

/*
** Load the token from the file at path, which must be a regular file that
** only its owner may read or write (mode 0600 or stricter); trailing white
** space (a final newline) is not part of the token.  0, or DL_EINVAL with
** one line in err (errlen bytes) saying what is wrong and how to fix it.
*/
int dl_token_from_file(dl_token *t, const char *path, char *err,
                       size_t errlen);
/*
** Load the token from path when it is not NULL, else from the environment
** variable DLUA_TOKEN; 0, or DL_EINVAL with one line in err.
*/
int dl_token_load(dl_token *t, const char *path, char *err, size_t errlen);
/*
** Make a new random token (32 bytes, written as 64 hex digits and a
** newline) in a new file at path with mode 0600; an existing file is never
** overwritten.  On success t holds it.  0, or a negative errno-style code
** with one line in err.
*/
int dl_token_create(dl_token *t, const char *path, char *err, size_t errlen);
/* Set the token from n bytes (trailing white space dropped); 0 or
   DL_EINVAL when it is shorter than DL_TOKEN_MIN or longer than the max. */
int dl_token_set(dl_token *t, const void *p, size_t n);

/*
** Start a handshake as role with token (borrowed), speaking wire version
** wire with version string version (borrowed; at most 16 bytes are sent).
** The server appends S1 to out at once; the client appends nothing yet.
** DL_AUTH_MORE, or DL_AUTH_FAIL (no randomness, no memory) with a->err set.
*/
int dl_auth_begin(dl_auth *a, int role, const dl_token *token, unsigned wire,
                  const char *version, dl_buf *out);
/*
** Feed n bytes read from the peer.  *used is set to how many of them
** belonged to the handshake (all n while it wants more); what to send the
** peer is appended to out, also on failure (a refusal the peer may read).  Returns DL_AUTH_MORE (give more bytes),
** DL_AUTH_DONE (authenticated: the bytes after *used are frames) or
** DL_AUTH_FAIL (a->why and a->err say why; close the connection).
** Feeding after DONE or FAIL returns the same result and uses nothing.
*/
int dl_auth_feed(dl_auth *a, const void *p, size_t n, size_t *used,
                 dl_buf *out);
/* How many more bytes the handshake needs now (0 once done or failed). */
size_t dl_auth_want(const dl_auth *a);
/* Forget the nonces and macs (call when done with the state). */
void dl_auth_clear(dl_auth *a);

#endif

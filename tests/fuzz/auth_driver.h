/*
** auth_driver.h -- runs one fuzz input through the handshake (dl_auth.c);
** shared by fuzz_auth.c and test_auth.c, which replays the saved inputs.
**
** Byte 0 picks the role (bit 0: client, else server) and the size of the
** chunks the rest is fed in (bits 1..7, plus one), so every split of the
** messages is tried.  Whatever the bytes, the handshake must not finish
** (no input can forge an HMAC over a fresh nonce), must take every byte
** while it wants more and never more than its messages' length in all,
** must stop taking bytes once it failed, and must give a one-line reason
** when it fails.
*/
#ifndef auth_driver_h
#define auth_driver_h

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_auth.h"

static inline int auth_drive(const unsigned char *data, size_t n) {
  dl_token tok;
  dl_auth a;
  dl_buf out;
  size_t off = 1, chunk, total = 0, most;
  int role, rc = DL_AUTH_MORE;
  if (n == 0) return 0;
  role = (data[0] & 1) ? DL_AUTH_CLIENT : DL_AUTH_SERVER;
  chunk = (size_t)(data[0] >> 1) + 1;
  most = role == DL_AUTH_CLIENT ? DL_AUTH_S1_LEN + DL_AUTH_S2_LEN
                                : DL_AUTH_C1_LEN;
  dl_token_set(&tok, "fuzzing-token-0123456789", 24);
  dl_buf_init(&out);
  if (dl_auth_begin(&a, role, &tok, DL_AUTH_WIRE, "0.1.0", &out) !=
      DL_AUTH_MORE)
    abort();
  if ((role == DL_AUTH_SERVER) != (out.len == DL_AUTH_S1_LEN)) abort();
  while (off < n) {
    size_t k = n - off < chunk ? n - off : chunk, used = 12345;
    int was_fail = rc == DL_AUTH_FAIL;
    rc = dl_auth_feed(&a, data + off, k, &used, &out);
    total += used;
    if (used > k || total > most) abort();
    if (was_fail && (rc != DL_AUTH_FAIL || used != 0)) abort();
    if (rc == DL_AUTH_DONE) {
      fprintf(stderr, "handshake accepted forged bytes\n");
      abort();
    }
    if (rc == DL_AUTH_FAIL) {
      if (a.why == DL_AUTH_OK || a.err[0] == '\0' || strchr(a.err, '\n'))
        abort();
      if (dl_auth_want(&a) != 0) abort();
    } else if (used != k) {
      abort(); /* wanting more, it must have taken all it was given */
    }
    off += k;
  }
  dl_buf_free(&out);
  dl_auth_clear(&a);
  return rc;
}

#endif

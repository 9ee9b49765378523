/*
** tlsrec_driver.h -- runs one fuzz input through the records dlua seals
** and opens itself after a TLS handshake (dl_tls.c, "Records of our
** own"); shared by fuzz_tlsrec.c and test_tls.c, which replays the saved
** inputs.
**
** A client and a server session shake hands in memory (certificates made
** once per process by dl_tlsgen), then the input is a program of steps,
** a byte each and its arguments:
**   0 K     the client seals the next K bytes of the input (its records go
**           on the wire);
**   1 K     K bytes of the input go on the wire as they are (garbage);
**   2 I J   the bit J % 8 of the wire's byte I * 256 + J flips;
**   3 S R   the server reads the whole wire, lent S + 1 bytes at a time
**           and read R + 1 bytes at a time.
** Whatever the steps, no read may fail without a one-line reason or return
** more than it was asked for; a session that failed fails again; and
** while the wire carried only what the client sealed, unaltered, the
** server reads exactly those bytes, in order, and never fails.
*/
#ifndef tlsrec_driver_h
#define tlsrec_driver_h

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dl_tls.h"
#include "dl_tlsgen.h"

/* The context, made on first use; NULL where OpenSSL is missing. */
static const dl_tls_ctx *tlsrec_ctx(void) {
  static const dl_tls_ctx *ctx;
  static int done;
  char err[300], dir[] = "/tmp/dlua-tlsrec-XXXXXX", sub[64];
  if (done) return ctx;
  done = 1;
  if (mkdtemp(dir) == NULL) abort();
  snprintf(sub, sizeof sub, "%s/tls", dir);
  if (dl_tlsgen(sub, err, sizeof err) == 0)
    ctx = dl_tls_ctx_shared(sub, err, sizeof err);
  /* The context holds what it needs: the files may go. */
  {
    static const char *const names[] = {"ca.pem", "cert.pem", "key.pem"};
    size_t i;
    char path[128];
    for (i = 0; i < sizeof names / sizeof *names; i++) {
      snprintf(path, sizeof path, "%s/%s", sub, names[i]);
      unlink(path);
    }
    rmdir(sub);
    rmdir(dir);
  }
  return ctx;
}

static void tlsrec_pump(dl_tls *from, dl_tls *to) {
  dl_buf b;
  dl_buf_init(&b);
  if (dl_tls_pull(from, &b)) abort();
  if (b.len && dl_tls_push(to, b.p, b.len)) abort();
  dl_buf_free(&b);
}

static inline void tlsrec_drive(const unsigned char *data, size_t n) {
  const dl_tls_ctx *ctx = tlsrec_ctx();
  dl_tls c, s;
  dl_buf wire, sent, got;
  char err[300];
  size_t off = 0, woff = 0;
  int i, dc = 0, ds = 0, clean = 1, failed = 0;
  if (ctx == NULL) return; /* no libssl here: nothing to drive */
  if (dl_tls_begin(&c, ctx, 0, err, sizeof err) ||
      dl_tls_begin(&s, ctx, 1, err, sizeof err))
    abort();
  for (i = 0; i < 20 && !(dc && ds); i++) {
    int rc = dc ? DL_TLS_DONE : dl_tls_handshake(&c, err, sizeof err);
    dc = rc == DL_TLS_DONE;
    if (rc == DL_TLS_FAIL) abort();
    tlsrec_pump(&c, &s);
    rc = ds ? DL_TLS_DONE : dl_tls_handshake(&s, err, sizeof err);
    ds = rc == DL_TLS_DONE;
    if (rc == DL_TLS_FAIL) abort();
    tlsrec_pump(&s, &c);
  }
  if (!dc || !ds || !dl_tls_own(&c) || !dl_tls_own(&s)) abort();
  dl_buf_init(&wire);
  dl_buf_init(&sent);
  dl_buf_init(&got);
  while (off < n) {
    unsigned op = data[off++] % 4;
    size_t a = off < n ? data[off++] : 0, b;
    if (op == 0 || op == 1) {
      if (a > n - off) a = n - off;
      if (op == 0) {
        size_t before = wire.len;
        if (dl_tls_write(&c, data + off, a) || dl_tls_pull(&c, &wire))
          abort();
        if (a && wire.len <= before + a) abort(); /* sealed: header, tag */
        dl_buf_put(&sent, (const char *)data + off, a);
      } else {
        dl_buf_put(&wire, (const char *)data + off, a);
        if (a) clean = 0;
      }
      off += a;
      continue;
    }
    b = off < n ? data[off++] : 0;
    if (op == 2) {
      size_t at = a * 256 + b;
      if (at >= wire.len) continue;
      wire.p[at] ^= (char)(1 << (b % 8));
      clean = 0;
      continue;
    }
    while (woff < wire.len) { /* op 3: the server reads the wire */
      size_t w = wire.len - woff < a + 1 ? wire.len - woff : a + 1;
      long k;
      dl_tls_lend(&s, wire.p + woff, w);
      for (;;) {
        if (dl_buf_try_grow(&got, b + 1)) abort();
        err[0] = '\0';
        k = dl_tls_read(&s, got.p + got.len, b + 1, err, sizeof err);
        if (k > (long)(b + 1)) abort();
        if (k < 0) {
          if (err[0] == '\0' || strchr(err, '\n')) abort();
          if (clean) abort(); /* the sealed bytes alone never fail */
          failed = 1;
          break;
        }
        if (k == 0) break;
        if (failed) abort(); /* a failed session stays failed */
        got.len += (size_t)k;
      }
      if (dl_tls_unlend(&s)) abort();
      woff += w;
    }
    if (clean && (got.len != sent.len ||
                  (got.len && memcmp(got.p, sent.p, got.len))))
      abort(); /* every record came whole: every byte is read */
  }
  dl_tls_end(&c);
  dl_tls_end(&s);
  dl_buf_free(&wire);
  dl_buf_free(&sent);
  dl_buf_free(&got);
}

#endif

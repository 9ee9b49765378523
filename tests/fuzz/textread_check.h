/*
** textread_check.h -- the checks of fuzz_textread.c on one input
** (textread_fuzz_one), shared with the C test that replays its saved
** inputs (tests/c/collections/).
**
** Byte 0 picks the mode (low 2 bits) and the bytes read at a time (1..64,
** the high bits: pieces then cross every kind of boundary), byte 1
** max_line (1..256, or unbounded when 0); the rest is the text.
**   mode 0: plain text cut into blocks of byte 2's size (1..256): the
**           blocks read in order give the text back exactly, unless a line
**           is longer than max_line, which must then be the error.
**   mode 1: the rest as gzip bytes from outside: an error with a message,
**           or pieces of whole lines none longer than max_line.
**   mode 2: the rest gzip-compressed here in one or two members (byte 2
**           says where to cut), then read back: the text again.
*/
#ifndef textread_check_h
#define textread_check_h

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "dl_buf.h"
#include "dl_textread.h"

static void tr_check(int ok) {
  if (!ok) abort();
}

/* The longest line of t[0..n), "\n" included. */
static size_t tr_longest(const unsigned char *t, size_t n) {
  size_t best = 0, cur = 0, i;
  for (i = 0; i < n; i++) {
    cur++;
    if (t[i] == '\n') {
      if (cur > best) best = cur;
      cur = 0;
    }
  }
  return cur > best ? cur : best;
}

/* Read everything r gives into out; 0, or -1 after an error (checked to
   have a message naming the input).  Each piece must end in "\n" but the
   input's last, and hold no line longer than max_line. */
static int tr_drain(dl_textread *r, size_t max_line, dl_buf *out) {
  const char *p;
  size_t n;
  int rc, last_open = 0;
  while ((rc = dl_textread_next(r, &p, &n)) > 0) {
    tr_check(n > 0 && !last_open);
    if (p[n - 1] != '\n') last_open = 1;
    tr_check(tr_longest((const unsigned char *)p, n) <= max_line);
    dl_buf_put(out, p, n);
  }
  if (rc < 0) {
    tr_check(strncmp(dl_textread_error(r), "in: ", 4) == 0);
    tr_check(dl_textread_next(r, &p, &n) == -1);
    return -1;
  }
  return 0;
}

/* gzip-compress src[0..n) into out as one member.  */
static void tr_gzip(const unsigned char *src, size_t n, dl_buf *out) {
  z_stream z;
  memset(&z, 0, sizeof z);
  tr_check(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8,
                        Z_DEFAULT_STRATEGY) == Z_OK);
  dl_buf_grow(out, deflateBound(&z, (uLong)n) + 32);
  z.next_in = (unsigned char *)src;
  z.avail_in = (uInt)n;
  z.next_out = (unsigned char *)out->p + out->len;
  z.avail_out = (uInt)(out->cap - out->len);
  tr_check(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out->len = (size_t)((char *)z.next_out - out->p);
  deflateEnd(&z);
}

/* Run one input; 0 when the text came back (or was refused rightly). */
static int textread_fuzz_one(const unsigned char *data, size_t size) {
  dl_textread_opts o;
  dl_textread *r;
  dl_buf out, gz;
  char err[DL_TEXTREAD_ERRLEN];
  const unsigned char *text;
  size_t n, max_line;
  int mode, rc = 0;
  if (size < 3) return -1;
  mode = data[0] & 3;
  max_line = data[1] ? (size_t)data[1] : (size_t)-1;
  text = data + 3;
  n = size - 3;
  memset(&o, 0, sizeof o);
  o.path = "in";
  o.max_line = max_line;
  o.chunk = 1 + (size_t)(data[0] >> 2);
  dl_buf_init(&out);
  dl_buf_init(&gz);
  if (mode == 0 || mode == 3) {
    size_t bs = (size_t)data[2] + 1, s;
    int failed = 0;
    for (s = 0; s < n || s == 0; s += bs) {
      o.start = (int64_t)s;
      o.stop = (int64_t)(s + bs < n ? s + bs : n);
      tr_check(dl_textread_open_mem(&r, text, n, &o, err, sizeof err) == 0);
      if (tr_drain(r, max_line, &out) != 0) failed = 1;
      dl_textread_close(r);
      if (n == 0) break;
    }
    if (failed) {
      tr_check(tr_longest(text, n) > max_line);
      rc = -1;
    } else {
      tr_check(out.len == n && (n == 0 || memcmp(out.p, text, n) == 0));
    }
  } else if (mode == 1) {
    o.gz = 1;
    tr_check(dl_textread_open_mem(&r, text, n, &o, err, sizeof err) == 0);
    rc = tr_drain(r, max_line, &out);
    dl_textread_close(r);
  } else {
    size_t cut = n ? data[2] % (n + 1) : 0;
    tr_gzip(text, cut, &gz);
    if (cut < n) tr_gzip(text + cut, n - cut, &gz);
    o.gz = 1;
    tr_check(dl_textread_open_mem(&r, gz.p, gz.len, &o, err, sizeof err) ==
             0);
    rc = tr_drain(r, max_line, &out);
    dl_textread_close(r);
    if (rc != 0) tr_check(tr_longest(text, n) > max_line);
    else tr_check(out.len == n && (n == 0 || memcmp(out.p, text, n) == 0));
  }
  dl_buf_free(&out);
  dl_buf_free(&gz);
  return rc;
}

#endif

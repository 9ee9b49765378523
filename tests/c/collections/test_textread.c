/*
** test_textread.c -- C tests of dlua.bag's text kernels
** (runtime/collections): the reader's block rule, gzip members,
** truncated and corrupt gzip, the max_line bound, and the replay of the
** text reader fuzzer's saved inputs.  Run from the repository root.
*/
#include <stdio.h>
#include <string.h>

#include "dl_buf.h"
#include "dl_textread.h"
#include "dl_wordcount.h"
#include "tap.h"

#include "textread_check.h"

static void replay_one(const unsigned char *p, size_t n, void *ud) {
  (void)ud;
  textread_fuzz_one(p, n);
}

static void test_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-textread", replay_one, NULL) > 0);
}

/* Read [start, stop) of text (or all of it as gzip) into out; the
   result of the reader (0 or -1), its message in err. */
static int read_all(const char *text, size_t n, int64_t start, int64_t stop,
                    int gz, size_t max_line, dl_buf *out, char *err) {
  dl_textread_opts o;
  dl_textread *r;
  const char *p;
  size_t len;
  int rc;
  memset(&o, 0, sizeof o);
  o.path = "t.txt";
  o.start = start;
  o.stop = stop;
  o.gz = gz;
  o.max_line = max_line;
  CHECK(dl_textread_open_mem(&r, text, n, &o, err, DL_TEXTREAD_ERRLEN) == 0);
  while ((rc = dl_textread_next(r, &p, &len)) > 0) dl_buf_put(out, p, len);
  if (rc < 0) snprintf(err, DL_TEXTREAD_ERRLEN, "%s", dl_textread_error(r));
  dl_textread_close(r);
  return rc;
}

static void test_blocks(void) {
  static const char t[] = "ab\ncdef\n\ng";
  char err[DL_TEXTREAD_ERRLEN];
  dl_buf b;
  dl_buf_init(&b);
  /* a line belongs to the block it starts in, read past stop */
  CHECK(read_all(t, 10, 0, 1, 0, 100, &b, err) == 0);
  CHECK(b.len == 3 && memcmp(b.p, "ab\n", 3) == 0);
  b.len = 0;
  CHECK(read_all(t, 10, 1, 4, 0, 100, &b, err) == 0);
  CHECK(b.len == 5 && memcmp(b.p, "cdef\n", 5) == 0);
  b.len = 0;
  /* no line starts in [4, 8): nothing */
  CHECK(read_all(t, 10, 4, 8, 0, 100, &b, err) == 0);
  CHECK(b.len == 0);
  b.len = 0;
  CHECK(read_all(t, 10, 8, 10, 0, 100, &b, err) == 0);
  CHECK(b.len == 2 && memcmp(b.p, "\ng", 2) == 0);
  b.len = 0;
  /* the bound: "cdef\n" is 5 bytes */
  CHECK(read_all(t, 10, 0, 10, 0, 4, &b, err) == -1);
  CHECK(strstr(err, "t.txt: a line longer than max_line (4 bytes) starts at "
                    "byte 3") != NULL);
  b.len = 0;
  CHECK(read_all(t, 10, 0, 10, 0, 5, &b, err) == 0 && b.len == 10);
  dl_buf_free(&b);
}

static void test_gzip(void) {
  char err[DL_TEXTREAD_ERRLEN];
  dl_buf gz, b;
  dl_buf_init(&gz);
  dl_buf_init(&b);
  tr_gzip((const unsigned char *)"one\ntwo\n", 8, &gz);
  tr_gzip((const unsigned char *)"three", 5, &gz);
  CHECK(read_all(gz.p, gz.len, 0, 0, 1, 100, &b, err) == 0);
  CHECK(b.len == 13 && memcmp(b.p, "one\ntwo\nthree", 13) == 0);
  b.len = 0;
  CHECK(read_all(gz.p, gz.len - 3, 0, 0, 1, 100, &b, err) == -1);
  CHECK(strstr(err, "t.txt: truncated gzip stream") != NULL);
  b.len = 0;
  gz.p[12] ^= 0x55; /* inside the first member's deflate data */
  CHECK(read_all(gz.p, gz.len, 0, 0, 1, 100, &b, err) == -1);
  CHECK(strstr(err, "t.txt: corrupt gzip stream near compressed byte") !=
        NULL);
  b.len = 0;
  CHECK(read_all("not gzip", 8, 0, 0, 1, 100, &b, err) == -1);
  CHECK(strstr(err, "corrupt gzip stream") != NULL);
  b.len = 0;
  CHECK(read_all("", 0, 0, 0, 1, 100, &b, err) == 0 && b.len == 0);
  dl_buf_free(&gz);
  dl_buf_free(&b);
}

/* A gzip bomb of one line: refused after max_line, not inflated whole. */
static void test_gzip_long_line(void) {
  static char zeros[1 << 16];
  char err[DL_TEXTREAD_ERRLEN];
  dl_buf gz, b;
  int i;
  dl_buf_init(&gz);
  dl_buf_init(&b);
  memset(zeros, 'z', sizeof zeros);
  for (i = 0; i < 64; i++)
    tr_gzip((const unsigned char *)zeros, sizeof zeros, &gz);
  CHECK(read_all(gz.p, gz.len, 0, 0, 1, 1 << 20, &b, err) == -1);
  CHECK(strstr(err, "longer than max_line (1048576 bytes) starts at byte 0 "
                    "of the decompressed text") != NULL);
  dl_buf_free(&gz);
  dl_buf_free(&b);
}

static void test_wordcount_pieces(void) {
  dl_wordcount wc;
  const dl_wordcount_slot *s;
  size_t i = 0, n = 0;
  char text[64];
  dl_wordcount_init(&wc);
  /* a long word counted from two texts that no longer exist */
  strcpy(text, "a-word-longer-than-sixteen-bytes b\n");
  CHECK(dl_wordcount_add(&wc, text, strlen(text)) == 0);
  strcpy(text, "a-word-longer-than-sixteen-bytes\n");
  CHECK(dl_wordcount_add(&wc, text, strlen(text)) == 0);
  memset(text, 'x', sizeof text);
  while ((s = dl_wordcount_next(&wc, &i)) != NULL) {
    n++;
    if (s->len > 1) {
      CHECK(s->count == 2);
      CHECK(memcmp(DL_WORDCOUNT_WORD(s), "a-word-longer-than-sixteen-bytes",
                   s->len) == 0);
    }
  }
  CHECK(n == 2);
  dl_wordcount_free(&wc);
}

int main(void) {
  RUN(test_blocks);
  RUN(test_gzip);
  RUN(test_gzip_long_line);
  RUN(test_wordcount_pieces);
  RUN(test_regressions);
  return TAP_END();
}

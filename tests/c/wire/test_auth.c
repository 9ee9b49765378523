/*
** test_auth.c -- C tests of the authentication handshake and tokens
** (runtime/wire/dl_auth.c): a full handshake in every split, a wrong
** token, another wire version (both versions named), garbage, a replayed
** hello, an impostor server, token files and their modes; every input the
** fuzzer saved (tests/fuzz/regressions-auth) is replayed.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth_driver.h"
#include "dl_auth.h"
#include "tap.h"

static dl_token tok_a, tok_b;

static void tokens(void) {
  CHECK(dl_token_set(&tok_a, "token-aaaaaaaaaaaaaaaaaaaa\n", 27) == 0);
  CHECK(tok_a.n == 26);
  CHECK(dl_token_set(&tok_b, "token-bbbbbbbbbbbbbbbbbbbb", 26) == 0);
}

/* Move what one side wrote to the other, chunk bytes at a time, appending
   extra after it (frames that follow the handshake). */
static int pass(dl_auth *to, dl_buf *from, size_t chunk, dl_buf *reply,
                size_t *total_used) {
  size_t off = 0, used;
  int rc = DL_AUTH_MORE;
  *total_used = 0;
  while (off < from->len) {
    size_t k = from->len - off < chunk ? from->len - off : chunk;
    rc = dl_auth_feed(to, from->p + off, k, &used, reply);
    *total_used += used;
    off += k;
    if (rc != DL_AUTH_MORE) break;
  }
  from->len = 0;
  return rc;
}

static void test_handshake_in_every_split(void) {
  size_t chunk;
  tokens();
  for (chunk = 1; chunk <= 100; chunk++) {
    dl_auth s, c;
    dl_buf sb, cb;
    size_t used;
    dl_buf_init(&sb);
    dl_buf_init(&cb);
    CHECK(dl_auth_begin(&s, DL_AUTH_SERVER, &tok_a, DL_AUTH_WIRE, "0.1.0",
                        &sb) == DL_AUTH_MORE);
    CHECK(dl_auth_begin(&c, DL_AUTH_CLIENT, &tok_a, DL_AUTH_WIRE, "0.1.0",
                        &cb) == DL_AUTH_MORE);
    CHECK(sb.len == DL_AUTH_S1_LEN && cb.len == 0);
    CHECK(dl_auth_want(&c) == DL_AUTH_S1_LEN);
    CHECK(pass(&c, &sb, chunk, &cb, &used) == DL_AUTH_MORE);
    CHECK(used == DL_AUTH_S1_LEN && cb.len == DL_AUTH_C1_LEN);
    /* A frame right behind C1 is not the handshake's. */
    CHECK(dl_buf_put(&cb, "FRAME", 5) == 0);
    CHECK(pass(&s, &cb, chunk, &sb, &used) == DL_AUTH_DONE);
    CHECK(used == DL_AUTH_C1_LEN);
    CHECK(sb.len == DL_AUTH_S2_LEN);
    CHECK(dl_auth_want(&s) == 0);
    CHECK(pass(&c, &sb, chunk, &cb, &used) == DL_AUTH_DONE);
    CHECK(used == DL_AUTH_S2_LEN && cb.len == 0);
    CHECK(strcmp(s.peer_version, "0.1.0") == 0 && s.peer_wire == DL_AUTH_WIRE);
    /* Feeding after the end takes nothing. */
    CHECK(dl_auth_feed(&s, "x", 1, &used, &sb) == DL_AUTH_DONE && used == 0);
    dl_buf_free(&sb);
    dl_buf_free(&cb);
  }
}

static void test_wrong_token_is_refused_on_both_ends(void) {
  dl_auth s, c;
  dl_buf sb, cb;
  size_t used;
  tokens();
  dl_buf_init(&sb);
  dl_buf_init(&cb);
  dl_auth_begin(&s, DL_AUTH_SERVER, &tok_a, DL_AUTH_WIRE, "0.1.0", &sb);
  dl_auth_begin(&c, DL_AUTH_CLIENT, &tok_b, DL_AUTH_WIRE, "0.1.0", &cb);
  CHECK(pass(&c, &sb, 1000, &cb, &used) == DL_AUTH_MORE);
  CHECK(pass(&s, &cb, 1000, &sb, &used) == DL_AUTH_FAIL);
  CHECK(s.why == DL_AUTH_ETOKEN);
  CHECK(strcmp(s.err, "wrong token") == 0);
  CHECK(sb.len == DL_AUTH_S2_LEN && sb.p[0] == 2);
  CHECK(pass(&c, &sb, 1000, &cb, &used) == DL_AUTH_FAIL);
  CHECK(c.why == DL_AUTH_ETOKEN && strstr(c.err, "wrong token"));
  dl_buf_free(&sb);
  dl_buf_free(&cb);
}

static void test_other_wire_version_names_both(void) {
  dl_auth s, c;
  dl_buf sb, cb;
  size_t used;
  tokens();
  dl_buf_init(&sb);
  dl_buf_init(&cb);
  dl_auth_begin(&s, DL_AUTH_SERVER, &tok_a, DL_AUTH_WIRE, "0.1.0", &sb);
  dl_auth_begin(&c, DL_AUTH_CLIENT, &tok_a, DL_AUTH_WIRE + 1, "9.9.9", &cb);
  CHECK(pass(&c, &sb, 7, &cb, &used) == DL_AUTH_FAIL);
  CHECK(c.why == DL_AUTH_EVERSION);
  fprintf(stderr, "# client: %s\n", c.err);
  CHECK(strstr(c.err, "dlua 0.1.0") && strstr(c.err, "9.9.9"));
  /* The client still sent its hello, so the server's log names both. */
  CHECK(cb.len == DL_AUTH_C1_LEN);
  CHECK(pass(&s, &cb, 7, &sb, &used) == DL_AUTH_FAIL);
  CHECK(s.why == DL_AUTH_EVERSION);
  fprintf(stderr, "# server: %s\n", s.err);
  {
    char want[64];
    snprintf(want, sizeof want, "wire version %d (dlua 9.9.9)",
             DL_AUTH_WIRE + 1);
    CHECK(strstr(s.err, want));
    snprintf(want, sizeof want, "0.1.0 speaks wire version %d", DL_AUTH_WIRE);
    CHECK(strstr(s.err, want));
  }
  dl_buf_free(&sb);
  dl_buf_free(&cb);
}

static void test_garbage_is_refused_at_its_first_byte(void) {
  static const char *junk[] = {"GET / HTTP/1.1\r\n\r\n", "\x16\x03\x01",
                               "DLUAAUTX", "\0\0\0\0"};
  size_t i;
  tokens();
  for (i = 0; i < sizeof junk / sizeof *junk; i++) {
    dl_auth s;
    dl_buf sb;
    size_t used, n = i == 3 ? 4 : strlen(junk[i]);
    dl_buf_init(&sb);
    dl_auth_begin(&s, DL_AUTH_SERVER, &tok_a, DL_AUTH_WIRE, "0.1.0", &sb);
    CHECK(dl_auth_feed(&s, junk[i], n, &used, &sb) == DL_AUTH_FAIL);
    CHECK(s.why == DL_AUTH_EGARBAGE && strstr(s.err, "garbage"));
    CHECK(sb.len == DL_AUTH_S1_LEN); /* no answer to garbage */
    dl_buf_free(&sb);
  }
}

/* A hello recorded from one connection is worthless on the next: the
   server's nonce is new each time. */
static void test_replayed_hello_is_refused(void) {
  dl_auth s, c, s2;
  dl_buf sb, cb, rec;
  size_t used;
  tokens();
  dl_buf_init(&sb);
  dl_buf_init(&cb);
  dl_buf_init(&rec);
  dl_auth_begin(&s, DL_AUTH_SERVER, &tok_a, DL_AUTH_WIRE, "0.1.0", &sb);
  dl_auth_begin(&c, DL_AUTH_CLIENT, &tok_a, DL_AUTH_WIRE, "0.1.0", &cb);
  pass(&c, &sb, 1000, &cb, &used);
  dl_buf_put(&rec, cb.p, cb.len);
  CHECK(pass(&s, &cb, 1000, &sb, &used) == DL_AUTH_DONE);
  sb.len = 0;
  dl_auth_begin(&s2, DL_AUTH_SERVER, &tok_a, DL_AUTH_WIRE, "0.1.0", &sb);
  CHECK(memcmp(s2.s1, s.s1, DL_AUTH_S1_LEN) != 0);
  CHECK(pass(&s2, &rec, 1000, &sb, &used) == DL_AUTH_FAIL);
  CHECK(s2.why == DL_AUTH_ETOKEN);
  dl_buf_free(&sb);
  dl_buf_free(&cb);
  dl_buf_free(&rec);
}

/* A server that does not hold the token cannot pass for one: it answers
   "accepted" but cannot make the mac. */
static void test_impostor_server_is_refused(void) {
  dl_auth s, c;
  dl_buf sb, cb;
  size_t used;
  unsigned char s2[DL_AUTH_S2_LEN];
  tokens();
  dl_buf_init(&sb);
  dl_buf_init(&cb);
  dl_auth_begin(&s, DL_AUTH_SERVER, &tok_b, DL_AUTH_WIRE, "0.1.0", &sb);
  dl_auth_begin(&c, DL_AUTH_CLIENT, &tok_a, DL_AUTH_WIRE, "0.1.0", &cb);
  pass(&c, &sb, 1000, &cb, &used);
  memset(s2, 0x5a, sizeof s2);
  s2[0] = 0;
  CHECK(dl_auth_feed(&c, s2, sizeof s2, &used, &cb) == DL_AUTH_FAIL);
  CHECK(c.why == DL_AUTH_ETOKEN && strstr(c.err, "could not prove"));
  dl_buf_free(&sb);
  dl_buf_free(&cb);
}

static void write_file(const char *path, const char *text, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0);
  CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
  CHECK(fchmod(fd, mode) == 0);
  close(fd);
}

static void test_token_files(void) {
  char dir[] = "/tmp/dlua-auth-XXXXXX", path[256], made[256], err[256];
  dl_token t, u;
  struct stat st;
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/token", dir);
  snprintf(made, sizeof made, "%s/made", dir);
  write_file(path, "0123456789abcdef0123\n", 0600);
  CHECK(dl_token_from_file(&t, path, err, sizeof err) == 0);
  CHECK(t.n == 20 && memcmp(t.k, "0123456789abcdef0123", 20) == 0);
  /* Readable by others: refused, and the message says how to fix it. */
  write_file(path, "0123456789abcdef0123\n", 0644);
  CHECK(dl_token_from_file(&t, path, err, sizeof err) == DL_EINVAL);
  fprintf(stderr, "# %s\n", err);
  CHECK(strstr(err, "mode 644") && strstr(err, "chmod 600"));
  write_file(path, "short\n", 0600);
  CHECK(dl_token_from_file(&t, path, err, sizeof err) == DL_EINVAL);
  CHECK(strstr(err, "16 to 1024 bytes (it holds 5)"));
  unlink(path);
  CHECK(dl_token_from_file(&t, path, err, sizeof err) == DL_EINVAL);
  CHECK(strstr(err, "cannot open token file"));
  CHECK(dl_token_from_file(&t, dir, err, sizeof err) == DL_EINVAL);
  /* Made by dlua: 0600, random, never overwritten. */
  CHECK(dl_token_create(&t, made, err, sizeof err) == 0);
  CHECK(stat(made, &st) == 0 && (st.st_mode & 0777) == 0600);
  CHECK(dl_token_from_file(&u, made, err, sizeof err) == 0);
  CHECK(u.n == 64 && t.n == 64 && memcmp(t.k, u.k, 64) == 0);
  CHECK(dl_token_create(&u, made, err, sizeof err) == -EEXIST);
  CHECK(strstr(err, "File exists"));
  /* The environment, when no file is named. */
  unsetenv(DL_TOKEN_ENV);
  CHECK(dl_token_load(&t, NULL, err, sizeof err) == DL_EINVAL);
  CHECK(strstr(err, "DLUA_TOKEN"));
  setenv(DL_TOKEN_ENV, "from-the-environment-123", 1);
  CHECK(dl_token_load(&t, NULL, err, sizeof err) == 0);
  CHECK(t.n == 24 && memcmp(t.k, "from-the-environment-123", 24) == 0);
  setenv(DL_TOKEN_ENV, "tiny", 1);
  CHECK(dl_token_load(&t, NULL, err, sizeof err) == DL_EINVAL);
  CHECK(dl_token_load(&t, made, err, sizeof err) == 0 && t.n == 64);
  unlink(made);
  rmdir(dir);
}

static void auth_one(const unsigned char *p, size_t n, void *ud) {
  (void)ud;
  auth_drive(p, n);
}

static void test_replay_fuzz_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-auth", auth_one, NULL) > 0);
}

int main(void) {
  RUN(test_handshake_in_every_split);
  RUN(test_wrong_token_is_refused_on_both_ends);
  RUN(test_other_wire_version_names_both);
  RUN(test_garbage_is_refused_at_its_first_byte);
  RUN(test_replayed_hello_is_refused);
  RUN(test_impostor_server_is_refused);
  RUN(test_token_files);
  RUN(test_replay_fuzz_regressions);
  return TAP_END();
}

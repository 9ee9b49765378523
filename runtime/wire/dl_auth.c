/*
** dl_auth.c -- tokens and the authentication handshake (see dl_auth.h).
** The HMAC, the constant-time compare and the randomness are OpenSSL's.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dl_crypto.h" /* OpenSSL's functions, opened on first use */

#include "dl_auth.h"

#define MAGIC "DLUAAUTH"
#define MAGIC_LEN 8
#define NONCE_LEN 32
#define MAC_LEN 32
#define VER_LEN 16
/* Offsets inside S1 and C1 (the same layout up to the mac). */
#define OFF_WIRE 8
#define OFF_FLAGS 10
#define OFF_VER 12
#define OFF_NONCE 28
#define OFF_MAC 60

/* Which message is being read. */
enum { ST_S1 = 1, ST_C1, ST_S2, ST_DONE, ST_FAIL };

/* ------------------------------------------------------------------ */
/* Tokens                                                              */
/* ------------------------------------------------------------------ */

static size_t trim(const unsigned char *p, size_t n) {
  while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' ' ||
                   p[n - 1] == '\t'))
    n--;
  return n;
}

int dl_token_set(dl_token *t, const void *p, size_t n) {
  n = trim(p, n);
  if (n < DL_TOKEN_MIN || n > DL_TOKEN_MAX) return DL_EINVAL;
  memcpy(t->k, p, n);
  t->n = n;
  return 0;
}

int dl_token_from_file(dl_token *t, const char *path, char *err,
                       size_t errlen) {
  unsigned char buf[DL_TOKEN_MAX + 64];
  struct stat st;
  size_t n = 0;
  ssize_t r;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open token file %s: %s", path,
             strerror(errno));
    return DL_EINVAL;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "token file %s is not a regular file", path);
    goto fail;
  }
  if (st.st_mode & 077) {
    snprintf(err, errlen,
             "token file %s has mode %03o: others may read it "
             "(chmod 600 %s)",
             path, (unsigned)(st.st_mode & 0777), path);
    goto fail;
  }
  while (n < sizeof buf && (r = read(fd, buf + n, sizeof buf - n)) != 0) {
    if (r < 0) {
      if (errno == EINTR) continue;
      snprintf(err, errlen, "cannot read token file %s: %s", path,
               strerror(errno));
      goto fail;
    }
    n += (size_t)r;
  }
  close(fd);
  fd = -1;
  if (dl_token_set(t, buf, n) != 0) {
    snprintf(err, errlen,
             "token file %s must hold %d to %d bytes (it holds %zu)", path,
             DL_TOKEN_MIN, DL_TOKEN_MAX, trim(buf, n));
    OPENSSL_cleanse(buf, sizeof buf);
    return DL_EINVAL;
  }
  OPENSSL_cleanse(buf, sizeof buf);
  return 0;
fail:
  if (fd >= 0) close(fd);
  OPENSSL_cleanse(buf, sizeof buf);
  return DL_EINVAL;
}

int dl_token_load(dl_token *t, const char *path, char *err, size_t errlen) {
  const char *env;
  if (path != NULL) return dl_token_from_file(t, path, err, errlen);
  env = getenv(DL_TOKEN_ENV);
  if (env == NULL || *env == '\0') {
    snprintf(err, errlen,
             "no token: give a token file (mode 0600) or set %s",
             DL_TOKEN_ENV);
    return DL_EINVAL;
  }
  if (dl_token_set(t, env, strlen(env)) != 0) {
    snprintf(err, errlen, "%s must hold %d to %d bytes (it holds %zu)",
             DL_TOKEN_ENV, DL_TOKEN_MIN, DL_TOKEN_MAX,
             trim((const unsigned char *)env, strlen(env)));
    return DL_EINVAL;
  }
  return 0;
}

int dl_token_create(dl_token *t, const char *path, char *err, size_t errlen) {
  static const char hex[] = "0123456789abcdef";
  unsigned char raw[32];
  char text[65 + 1];
  size_t i, off = 0;
  int fd, e;
  if (dl_crypto_load(err, errlen) != 0) return DL_EINVAL;
  if (RAND_bytes(raw, sizeof raw) != 1) {
    snprintf(err, errlen, "cannot make a token: no randomness");
    return DL_EINVAL;
  }
  for (i = 0; i < sizeof raw; i++) {
    text[2 * i] = hex[raw[i] >> 4];
    text[2 * i + 1] = hex[raw[i] & 15];
  }
  text[64] = '\n';
  OPENSSL_cleanse(raw, sizeof raw);
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    e = errno;
    snprintf(err, errlen, "cannot create token file %s: %s", path,
             strerror(e));
    OPENSSL_cleanse(text, sizeof text);
    return -e;
  }
  if (fchmod(fd, 0600) != 0) goto fail;
  while (off < 65) {
    ssize_t w = write(fd, text + off, 65 - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      goto fail;
    }
    off += (size_t)w;
  }
  if (close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  dl_token_set(t, text, 64);
  OPENSSL_cleanse(text, sizeof text);
  return 0;
fail:
  e = errno;
  if (fd >= 0) close(fd);
  unlink(path);
  snprintf(err, errlen, "cannot write token file %s: %s", path, strerror(e));
  OPENSSL_cleanse(text, sizeof text);
  return -e;
}

/* ------------------------------------------------------------------ */
/* The handshake                                                       */
/* ------------------------------------------------------------------ */

static void put16(unsigned char *p, unsigned v) {
  p[0] = (unsigned char)(v & 0xff);
  p[1] = (unsigned char)((v >> 8) & 0xff);
}

static unsigned get16(const unsigned char *p) {
  return (unsigned)p[0] | ((unsigned)p[1] << 8);
}

/* Write the common head of S1 and C1 (magic, wire, flags, version, a new
   nonce); 0 or -1 when there is no randomness. */
static int hello(const dl_auth *a, unsigned char *m) {
  size_t vn = strlen(a->version);
  memcpy(m, MAGIC, MAGIC_LEN);
  put16(m + OFF_WIRE, a->wire);
  put16(m + OFF_FLAGS, 0);
  memset(m + OFF_VER, 0, VER_LEN);
  memcpy(m + OFF_VER, a->version, vn < VER_LEN ? vn : VER_LEN);
  return RAND_bytes(m + OFF_NONCE, NONCE_LEN) == 1 ? 0 : -1;
}

/* mac = HMAC-SHA256(token, label || S1 || the first c1n bytes of C1). */
static int mac(const dl_auth *a, const char *label, size_t c1n,
               unsigned char *out) {
  unsigned char msg[16 + DL_AUTH_S1_LEN + DL_AUTH_C1_LEN];
  size_t ln = strlen(label);
  unsigned int olen = 0;
  memcpy(msg, label, ln);
  memcpy(msg + ln, a->s1, DL_AUTH_S1_LEN);
  memcpy(msg + ln + DL_AUTH_S1_LEN, a->c1, c1n);
  if (HMAC(EVP_sha256(), a->token->k, (int)a->token->n, msg,
           ln + DL_AUTH_S1_LEN + c1n, out, &olen) == NULL ||
      olen != MAC_LEN)
    return -1;
  return 0;
}

/* The peer's version string, printable, from a hello. */
static void peer_hello(dl_auth *a, const unsigned char *m) {
  size_t i;
  a->peer_wire = get16(m + OFF_WIRE);
  for (i = 0; i < VER_LEN && m[OFF_VER + i]; i++)
    a->peer_version[i] =
        (m[OFF_VER + i] >= 0x20 && m[OFF_VER + i] < 0x7f) ? (char)m[OFF_VER + i]
                                                          : '?';
  a->peer_version[i] = '\0';
  if (i == 0) strcpy(a->peer_version, "?");
}

static int fail(dl_auth *a, int why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record why the handshake failed; returns DL_AUTH_FAIL. */
static int fail(dl_auth *a, int why, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->err, sizeof a->err, fmt, ap);
  va_end(ap);
  a->why = why;
  a->state = ST_FAIL;
  return DL_AUTH_FAIL;
}

int dl_auth_begin(dl_auth *a, int role, const dl_token *token, unsigned wire,
                  const char *version, dl_buf *out) {
  memset(a, 0, sizeof *a);
  a->role = role;
  a->token = token;
  a->wire = wire;
  a->version = version;
  if (dl_crypto_load(a->err, sizeof a->err) != 0) {
    a->why = DL_AUTH_ESYS;
    a->state = ST_FAIL;
    return DL_AUTH_FAIL;
  }
  if (role == DL_AUTH_CLIENT) {
    a->state = ST_S1;
    return DL_AUTH_MORE;
  }
  a->state = ST_C1;
  if (hello(a, a->s1) != 0)
    return fail(a, DL_AUTH_ESYS, "no randomness for the handshake");
  if (dl_buf_put(out, a->s1, DL_AUTH_S1_LEN) != 0)
    return fail(a, DL_AUTH_ESYS, "out of memory");
  return DL_AUTH_MORE;
}

size_t dl_auth_want(const dl_auth *a) {
  switch (a->state) {
  case ST_S1: return DL_AUTH_S1_LEN - a->have;
  case ST_C1: return DL_AUTH_C1_LEN - a->have;
  case ST_S2: return DL_AUTH_S2_LEN - a->have;
  default: return 0;
  }
}

/* The server has all of C1. */
static int server_judge(dl_auth *a, dl_buf *out) {
  unsigned char want[MAC_LEN];
  unsigned char s2[DL_AUTH_S2_LEN];
  memset(s2, 0, sizeof s2);
  peer_hello(a, a->c1);
  if (a->peer_wire != a->wire) {
    s2[0] = 1;
    dl_buf_put(out, s2, sizeof s2);
    return fail(a, DL_AUTH_EVERSION,
                "the peer speaks wire version %u (dlua %s), this dlua %s "
                "speaks wire version %u",
                a->peer_wire, a->peer_version, a->version, a->wire);
  }
  if (mac(a, "dlua client", OFF_MAC, want) != 0)
    return fail(a, DL_AUTH_ESYS, "HMAC failed");
  if (CRYPTO_memcmp(want, a->c1 + OFF_MAC, MAC_LEN) != 0) {
    s2[0] = 2;
    dl_buf_put(out, s2, sizeof s2);
    return fail(a, DL_AUTH_ETOKEN, "wrong token");
  }
  if (mac(a, "dlua server", DL_AUTH_C1_LEN, s2 + 1) != 0)
    return fail(a, DL_AUTH_ESYS, "HMAC failed");
  if (dl_buf_put(out, s2, sizeof s2) != 0)
    return fail(a, DL_AUTH_ESYS, "out of memory");
  a->state = ST_DONE;
  return DL_AUTH_DONE;
}

/* The client has all of S1: answer with C1. */
static int client_answer(dl_auth *a, dl_buf *out) {
  peer_hello(a, a->s1);
  if (hello(a, a->c1) != 0)
    return fail(a, DL_AUTH_ESYS, "no randomness for the handshake");
  if (mac(a, "dlua client", OFF_MAC, a->c1 + OFF_MAC) != 0)
    return fail(a, DL_AUTH_ESYS, "HMAC failed");
  /* Sent even to a server of another version, so that its log names our
     version as ours names its. */
  if (dl_buf_put(out, a->c1, DL_AUTH_C1_LEN) != 0)
    return fail(a, DL_AUTH_ESYS, "out of memory");
  if (a->peer_wire != a->wire)
    return fail(a, DL_AUTH_EVERSION,
                "the server speaks wire version %u (dlua %s), this dlua %s "
                "speaks wire version %u",
                a->peer_wire, a->peer_version, a->version, a->wire);
  a->state = ST_S2;
  a->have = 0;
  return DL_AUTH_MORE;
}

/* The client has all of S2. */
static int client_check(dl_auth *a) {
  unsigned char want[MAC_LEN];
  switch (a->s2[0]) {
  case 0:
    if (mac(a, "dlua server", DL_AUTH_C1_LEN, want) != 0)
      return fail(a, DL_AUTH_ESYS, "HMAC failed");
    if (CRYPTO_memcmp(want, a->s2 + 1, MAC_LEN) != 0)
      return fail(a, DL_AUTH_ETOKEN,
                  "the server could not prove it holds the token "
                  "(wrong token, or not a dlua server)");
    a->state = ST_DONE;
    return DL_AUTH_DONE;
  case 1:
    return fail(a, DL_AUTH_EVERSION,
                "the server refused wire version %u (dlua %s)", a->wire,
                a->version);
  case 2:
    return fail(a, DL_AUTH_ETOKEN, "the server refused the token "
                                   "(wrong token)");
  default:
    return fail(a, DL_AUTH_EGARBAGE, "not a dlua server (bad answer %u)",
                a->s2[0]);
  }
}

int dl_auth_feed(dl_auth *a, const void *p, size_t n, size_t *used,
                 dl_buf *out) {
  const unsigned char *in = p;
  *used = 0;
  for (;;) {
    unsigned char *dst;
    size_t need, take;
    switch (a->state) {
    case ST_S1: dst = a->s1; break;
    case ST_C1: dst = a->c1; break;
    case ST_S2: dst = a->s2; break;
    case ST_DONE: return DL_AUTH_DONE;
    default: return DL_AUTH_FAIL;
    }
    need = dl_auth_want(a);
    take = n - *used < need ? n - *used : need;
    if (take == 0) return DL_AUTH_MORE;
    memcpy(dst + a->have, in + *used, take);
    /* Judge the magic on its own, before waiting for the rest. */
    if (a->state != ST_S2 && a->have < MAGIC_LEN) {
      size_t upto = a->have + take < MAGIC_LEN ? a->have + take : MAGIC_LEN;
      if (memcmp(dst + a->have, &MAGIC[a->have], upto - a->have) != 0) {
        *used += take;
        if (a->state == ST_S1 && memcmp(dst, DL_AUTH_TLS_HELLO, upto) == 0)
          return fail(a, DL_AUTH_EGARBAGE,
                      "the scheduler uses TLS: give this side the cluster's "
                      "TLS directory (--tls-dir DIR, or tls_dir = DIR)");
        return fail(a, DL_AUTH_EGARBAGE, "not a dlua handshake (garbage)");
      }
    }
    a->have += take;
    *used += take;
    if (take < need) return DL_AUTH_MORE;
    switch (a->state) {
    case ST_C1: return server_judge(a, out);
    case ST_S1:
      if (client_answer(a, out) != DL_AUTH_MORE) return DL_AUTH_FAIL;
      break;
    default: return client_check(a);
    }
  }
}

void dl_auth_clear(dl_auth *a) {
  if (dl_crypto_load(NULL, 0) == 0) OPENSSL_cleanse(a, sizeof *a);
  else memset(a, 0, sizeof *a); /* never used, so nothing secret in it */
}

/*
** dl_tls.c -- TLS sessions on memory BIOs, and their hand-over from the
** handshake (dl_tcp.c) to the connection that adopts the socket (see
** dl_tls.h; the records themselves are read and written in dl_conn.c).
*/
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "dl_ssl.h"
#include "dl_tls.h"

#define SSLP(t) ((SSL *)(t)->ssl)
#define CHUNK (256u << 10) /* one read, one write block */
#define HIGH (4u << 20)
#define LOW (1u << 20)
#define POOL_MAX 64 /* write blocks kept for reuse (16 MiB) */

struct dl_tls_ctx {
  SSL_CTX *ctx;
  char dir[4096];
};

/* The newest OpenSSL error as text ("" if none); the queue is emptied. */
static void ssl_reason(char *out, size_t n) {
  unsigned long e, last = 0;
  while ((e = ERR_get_error()) != 0) last = e;
  if (last == 0) {
    snprintf(out, n, "no reason given");
    return;
  }
  ERR_error_string_n(last, out, n);
}

static int check_file(const char *dir, const char *name, int secret,
                      char *path, size_t pathlen, char *err, size_t errlen) {
  struct stat st;
  snprintf(path, pathlen, "%s/%s", dir, name);
  if (stat(path, &st) != 0 || access(path, R_OK) != 0) {
    snprintf(err, errlen, "TLS directory %s: cannot read %s: %s (make one "
             "with `dlua tls-gen DIR`)", dir, name, strerror(errno));
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "TLS directory %s: %s is not a regular file", dir,
             name);
    return -1;
  }
  if (secret && (st.st_mode & 077)) {
    snprintf(err, errlen, "TLS directory %s: %s may be read by others "
             "(mode %03o): chmod 600 it", dir, name,
             (unsigned)(st.st_mode & 0777));
    return -1;
  }
  return 0;
}

static void keylog_cb(const SSL *s, const char *line);

int dl_tls_ctx_load(dl_tls_ctx **out, const char *dir, char *err,
                    size_t errlen) {
  char ca[4200], cert[4200], key[4200], why[256];
  struct stat st;
  dl_tls_ctx *c;
  const char *what;
  *out = NULL;
  if (dir == NULL || dir[0] == '\0' || strlen(dir) >= sizeof c->dir) {
    snprintf(err, errlen, "bad TLS directory (an empty or too long path)");
    return DL_EINVAL;
  }
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "TLS directory %s: %s (make one with `dlua "
             "tls-gen DIR`)", dir,
             errno && !S_ISDIR(st.st_mode) ? strerror(errno)
                                            : "not a directory");
    return DL_EINVAL;
  }
  if (check_file(dir, DL_TLS_CA, 0, ca, sizeof ca, err, errlen) ||
      check_file(dir, DL_TLS_CERT, 0, cert, sizeof cert, err, errlen) ||
      check_file(dir, DL_TLS_KEY, 1, key, sizeof key, err, errlen))
    return DL_EINVAL;
  if (dl_ssl_load(err, errlen) != 0) return DL_EINVAL;
  if ((c = dl_realloc(NULL, sizeof *c)) == NULL) {
    snprintf(err, errlen, "out of memory");
    return DL_ENOMEM;
  }
  memset(c, 0, sizeof *c);
  snprintf(c->dir, sizeof c->dir, "%s", dir);
  ERR_clear_error();
  what = "cannot make a TLS context";
  if ((c->ctx = SSL_CTX_new(TLS_method())) == NULL) goto bad;
  what = "cannot require TLS 1.3";
  if (!SSL_CTX_set_min_proto_version(c->ctx, TLS1_3_VERSION)) goto bad;
  /* No resumption: nothing to send, and no record after the handshake's
     that own_start must count. */
  SSL_CTX_set_num_tickets(c->ctx, 0);
  SSL_CTX_set_keylog_callback(c->ctx, keylog_cb);
  /* AES-128-GCM first (OpenSSL's default puts AES-256 first): both ends
     are dlua's, and 128-bit AES does 10 rounds to 256-bit's 14. */
  what = "cannot choose the TLS 1.3 cipher suites";
  if (!SSL_CTX_set_ciphersuites(c->ctx, "TLS_AES_128_GCM_SHA256:"
                                "TLS_AES_256_GCM_SHA384:"
                                "TLS_CHACHA20_POLY1305_SHA256"))
    goto bad;
  what = "bad " DL_TLS_CA;
  if (SSL_CTX_load_verify_locations(c->ctx, ca, NULL) != 1) goto bad;
  what = "bad " DL_TLS_CERT;
  if (SSL_CTX_use_certificate_chain_file(c->ctx, cert) != 1) goto bad;
  what = "bad " DL_TLS_KEY;
  if (SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1)
    goto bad;
  what = DL_TLS_KEY " is not the key of " DL_TLS_CERT;
  if (SSL_CTX_check_private_key(c->ctx) != 1) goto bad;
  SSL_CTX_set_verify(c->ctx,
                     SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  *out = c;
  return 0;
bad:
  ssl_reason(why, sizeof why);
  snprintf(err, errlen, "TLS directory %s: %s (%s)", dir, what, why);
  dl_tls_ctx_free(c);
  return DL_EINVAL;
}

void dl_tls_ctx_free(dl_tls_ctx *c) {
  if (c == NULL) return;
  if (c->ctx) SSL_CTX_free(c->ctx);
  dl_free(c);
}

const char *dl_tls_ctx_dir(const dl_tls_ctx *c) { return c->dir; }

typedef struct shared_ctx {
  dl_tls_ctx *c;
  struct shared_ctx *next;
} shared_ctx;

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static shared_ctx *shared;

const dl_tls_ctx *dl_tls_ctx_shared(const char *dir, char *err,
                                    size_t errlen) {
  shared_ctx *e;
  dl_tls_ctx *c = NULL;
  pthread_mutex_lock(&shared_lock);
  for (e = shared; e; e = e->next)
    if (strcmp(e->c->dir, dir) == 0) break;
  if (e == NULL && dl_tls_ctx_load(&c, dir, err, errlen) == 0) {
    if ((e = dl_realloc(NULL, sizeof *e)) == NULL) {
      snprintf(err, errlen, "out of memory");
      dl_tls_ctx_free(c);
    } else {
      e->c = c;
      e->next = shared;
      shared = e;
    }
  }
  pthread_mutex_unlock(&shared_lock);
  return e ? e->c : NULL;
}

/* ------------------------------------------------------------------ */
/* Sessions on a BIO of our own                                        */
/* ------------------------------------------------------------------ */

/* One direction of the record layer of our own (see "Records of our
   own" below). */
typedef struct rdir {
  EVP_CIPHER_CTX *cx; /* AES-128-GCM, keyed */
  unsigned char iv[12];
  uint64_t seq; /* the next record's sequence number */
} rdir;

/*
** The session's BIO (both directions): OpenSSL reads the peer's bytes
** from `held` (copied in by dl_tls_push) and then from a window lent by
** dl_tls_lend (the connection's read buffer, not copied), and writes its
** records to `out`, which dl_tls_pull hands over whole.  OpenSSL's memory
** BIOs copied every byte once more each way: in with BIO_write, out with
** BIO_read.
*/
typedef struct tbio {
  dl_buf held;
  size_t hoff; /* bytes of held already read */
  const char *win;
  size_t nwin;
  dl_buf out;
  /* The application traffic secrets, from the key log (bit 1 of have:
     the client's, bit 2: the server's), until the records are ours. */
  unsigned char sec[2][32];
  int have;
  int own_ok; /* dl_tls_records_own when the session began */
  int own;    /* the records are ours (rd, wr), OpenSSL's no more */
  rdir rd, wr;
  dl_buf plain; /* a record's clear bytes the reader had no room for */
  size_t poff;  /* bytes of plain already read */
  int dead;     /* a record failed: why says how (every read fails now) */
  char why[160];
} tbio;

#define IO(t) ((tbio *)(t)->io)

static BIO_METHOD *tb_method;
static pthread_once_t tb_once = PTHREAD_ONCE_INIT;

static int tb_read(BIO *b, char *p, int n) {
  tbio *io = BIO_get_data(b);
  size_t k;
  BIO_clear_retry_flags(b);
  if (n <= 0) return 0;
  if (io->held.len > io->hoff) {
    k = io->held.len - io->hoff;
    if (k > (size_t)n) k = (size_t)n;
    memcpy(p, io->held.p + io->hoff, k);
    io->hoff += k;
    if (io->hoff == io->held.len) io->held.len = io->hoff = 0;
    return (int)k;
  }
  if (io->nwin == 0) {
    BIO_set_retry_read(b); /* nothing yet: OpenSSL says WANT_READ */
    return -1;
  }
  k = io->nwin < (size_t)n ? io->nwin : (size_t)n;
  memcpy(p, io->win, k);
  io->win += k;
  io->nwin -= k;
  return (int)k;
}

static int tb_write(BIO *b, const char *p, int n) {
  tbio *io = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (n <= 0) return 0;
  if (dl_buf_try_grow(&io->out, (size_t)n)) return -1;
  memcpy(io->out.p + io->out.len, p, (size_t)n);
  io->out.len += (size_t)n;
  return n;
}

static long tb_ctrl(BIO *b, int cmd, long num, void *ptr) {
  tbio *io = BIO_get_data(b);
  (void)num;
  (void)ptr;
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1; /* records are handed over by dl_tls_pull */
  case BIO_CTRL_PENDING:
    return (long)(io->held.len - io->hoff + io->nwin);
  case BIO_CTRL_WPENDING:
    return (long)io->out.len;
  default:
    return 0;
  }
}

static void tb_init(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                               "dlua session");
  if (m && BIO_meth_set_read(m, tb_read) && BIO_meth_set_write(m, tb_write) &&
      BIO_meth_set_ctrl(m, tb_ctrl))
    tb_method = m;
}

int dl_tls_begin(dl_tls *t, const dl_tls_ctx *c, int server, char *err,
                 size_t errlen) {
  SSL *s;
  BIO *b = NULL;
  tbio *io;
  t->ssl = t->io = NULL;
  ERR_clear_error();
  pthread_once(&tb_once, tb_init);
  s = SSL_new(c->ctx);
  io = dl_realloc(NULL, sizeof *io);
  if (tb_method) b = BIO_new(tb_method);
  if (s == NULL || io == NULL || b == NULL) {
    snprintf(err, errlen, "cannot start a TLS session: out of memory");
    if (s) SSL_free(s);
    if (b) BIO_free(b);
    dl_free(io);
    return -1;
  }
  memset(io, 0, sizeof *io);
  io->own_ok = dl_tls_records_own;
  dl_buf_init(&io->held);
  dl_buf_init(&io->out);
  BIO_set_data(b, io);
  BIO_set_init(b, 1);
  SSL_set_bio(s, b, b); /* s owns b (one reference for both directions) */
  if (server)
    SSL_set_accept_state(s);
  else
    SSL_set_connect_state(s);
  t->ssl = s;
  t->io = io;
  return 0;
}

static int held_put(tbio *io, const void *p, size_t n);

int dl_tls_push(dl_tls *t, const void *p, size_t n) {
  return held_put(IO(t), p, n);
}

void dl_tls_lend(dl_tls *t, const void *p, size_t n) {
  IO(t)->win = p;
  IO(t)->nwin = n;
}

int dl_tls_unlend(dl_tls *t) {
  tbio *io = IO(t);
  const char *p = io->win;
  size_t n = io->nwin;
  io->win = NULL;
  io->nwin = 0;
  return n ? dl_tls_push(t, p, n) : 0;
}

int dl_tls_pull(dl_tls *t, dl_buf *out) {
  tbio *io = IO(t);
  if (io->out.len == 0) return 0;
  if (out->len == 0) { /* swap: out's room becomes the BIO's */
    dl_buf x = *out;
    *out = io->out;
    io->out = x;
    return 0;
  }
  if (dl_buf_try_grow(out, io->out.len)) return -1;
  memcpy(out->p + out->len, io->out.p, io->out.len);
  out->len += io->out.len;
  io->out.len = 0;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Records of our own after the handshake                              */
/* ------------------------------------------------------------------ */

/*
** Once the handshake is done, dlua seals and opens the TLS 1.3 records
** itself (what the kernel's TLS does where it has it), with the keys
** OpenSSL derived: AES-128-GCM straight from the caller's bytes into the
** records to send, and from the records read (in held, or in the window
** lent by the connection) straight into the caller's buffer.  Through
** SSL_read and SSL_write each byte was copied twice more on the way in
** (into OpenSSL's record buffer, then out of it) and once more on the way
** out (from OpenSSL's record buffer to ours).  Measured on bench p (perf
** samples of each worker while 100 MB cross over TLS): the writer's CPU
** time went from 53 to 40-45 ms, the reader's from 56 to 50-55 ms (its
** copies went, but AES-GCM now writes the cold frame buffer itself), next
** to 22 ms of AES-GCM on each.  The records on the wire are TLS 1.3's, so
** a peer that keeps OpenSSL's record layer reads and writes them as ever.
**
** The handshake ends (dl_tls_handshake) before either side sends a byte
** of its own: the token's handshake follows it (dl_tcp.c), and the
** context sends no session tickets.  So both directions are at sequence
** number 0 under the first application traffic secrets, which the key
** log callback gave us; OpenSSL holds nothing read and not yet handed
** over (checked).  Only TLS_AES_128_GCM_SHA256 (which dlua prefers) goes
** this way; another suite stays with OpenSSL, as do sessions whose
** secrets did not come.  A key update is not supported (neither end
** asks for one): it ends the session with an error, as a record that
** does not open (tampered with, or out of order) does.
*/
int dl_tls_records_own = 1;

#define REC_MAX 16384       /* clear bytes in a record (RFC 8446 5.1) */
#define REC_HEAD 5
#define REC_TAG 16
#define REC_CT_MAX (REC_MAX + 256) /* a record's body at most (5.2) */

/* The key log's lines for the first application traffic secrets. */
static void keylog_cb(const SSL *s, const char *line) {
  static const char *const labels[2] = {"CLIENT_TRAFFIC_SECRET_0 ",
                                        "SERVER_TRAFFIC_SECRET_0 "};
  BIO *b = SSL_get_rbio(s);
  tbio *io = b ? BIO_get_data(b) : NULL;
  const char *h;
  unsigned char sec[32];
  int i, j;
  if (io == NULL || !io->own_ok) return;
  for (i = 0; i < 2; i++)
    if (strncmp(line, labels[i], strlen(labels[i])) == 0) break;
  if (i == 2) return;
  h = strchr(line + strlen(labels[i]), ' '); /* past the client random */
  if (h == NULL || strlen(++h) != 2 * sizeof sec) return; /* not SHA-256 */
  for (j = 0; j < (int)sizeof sec; j++) {
    unsigned v;
    if (sscanf(h + 2 * j, "%2x", &v) != 1) break;
    sec[j] = (unsigned char)v;
  }
  if (j < (int)sizeof sec) {
    OPENSSL_cleanse(sec, sizeof sec);
    return;
  }
  memcpy(io->sec[i], sec, sizeof sec);
  OPENSSL_cleanse(sec, sizeof sec);
  io->have |= 1 << i;
}

/* HKDF-Expand-Label(secret, label, "", n) of TLS 1.3 (RFC 8446 7.1) with
   SHA-256, by libcrypto's TLS13-KDF: 0 or -1. */
static int expand_label(const unsigned char sec[32], const char *label,
                        unsigned char *out, size_t n) {
  EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_3_KDF, NULL);
  EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY, ok;
  OSSL_PARAM ps[7];
  ps[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
  ps[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                           (char *)"SHA256", 0);
  ps[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                            (void *)sec, 32);
  ps[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX,
                                            (void *)"tls13 ", 6);
  ps[4] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL,
                                            (void *)label, strlen(label));
  ps[5] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_DATA,
                                            (void *)"", 0);
  ps[6] = OSSL_PARAM_construct_end();
  ok = kc != NULL && EVP_KDF_derive(kc, out, n, ps) == 1;
  EVP_KDF_CTX_free(kc);
  EVP_KDF_free(kdf);
  return ok ? 0 : -1;
}

/* Key one direction with its traffic secret: 0 or -1. */
static int rdir_init(rdir *d, const unsigned char sec[32], int enc) {
  unsigned char key[16];
  int ok;
  d->seq = 0;
  if (expand_label(sec, "key", key, sizeof key) ||
      expand_label(sec, "iv", d->iv, sizeof d->iv) ||
      (d->cx = EVP_CIPHER_CTX_new()) == NULL)
    return -1;
  ok = enc ? EVP_EncryptInit_ex(d->cx, EVP_aes_128_gcm(), NULL, key, NULL)
           : EVP_DecryptInit_ex(d->cx, EVP_aes_128_gcm(), NULL, key, NULL);
  OPENSSL_cleanse(key, sizeof key);
  return ok == 1 ? 0 : -1;
}

static void rdir_free(rdir *d) {
  if (d->cx) EVP_CIPHER_CTX_free(d->cx);
  d->cx = NULL;
  OPENSSL_cleanse(d->iv, sizeof d->iv);
}

/* The nonce of d's next record: its IV xor its sequence number. */
static void nonce(const rdir *d, unsigned char n[12]) {
  int i;
  memcpy(n, d->iv, 12);
  for (i = 0; i < 8; i++) n[11 - i] ^= (unsigned char)(d->seq >> (8 * i));
}

/* Take the records over from OpenSSL, if this session can (see above). */
static void own_start(dl_tls *t) {
  tbio *io = IO(t);
  const SSL_CIPHER *c = SSL_get_current_cipher(SSLP(t));
  int srv = SSL_is_server(SSLP(t));
  if (io->own_ok && io->have == 3 && c && SSL_CIPHER_get_protocol_id(c) == 0x1301 &&
      !SSL_pending(SSLP(t)) && !SSL_has_pending(SSLP(t)) &&
      rdir_init(&io->wr, io->sec[srv], 1) == 0 &&
      rdir_init(&io->rd, io->sec[!srv], 0) == 0)
    io->own = 1;
  else {
    rdir_free(&io->wr);
    rdir_free(&io->rd);
  }
  OPENSSL_cleanse(io->sec, sizeof io->sec);
  io->have = 0;
}

int dl_tls_own(const dl_tls *t) { return t->io && IO(t)->own; }

/* Seal the n (<= REC_MAX) bytes at p as one record at the end of out:
   0 or -1. */
static int seal(tbio *io, const unsigned char *p, size_t n) {
  rdir *d = &io->wr;
  size_t len = n + 1 + REC_TAG;
  unsigned char *r, iv[12], type = 23; /* application_data */
  int k;
  if (dl_buf_try_grow(&io->out, REC_HEAD + len)) return -1;
  r = (unsigned char *)io->out.p + io->out.len;
  r[0] = 23;
  r[1] = r[2] = 3;
  r[3] = (unsigned char)(len >> 8);
  r[4] = (unsigned char)len;
  nonce(d, iv);
  if (EVP_EncryptInit_ex(d->cx, NULL, NULL, NULL, iv) != 1 ||
      EVP_EncryptUpdate(d->cx, NULL, &k, r, REC_HEAD) != 1 ||
      (n && EVP_EncryptUpdate(d->cx, r + REC_HEAD, &k, p, (int)n) != 1) ||
      EVP_EncryptUpdate(d->cx, r + REC_HEAD + n, &k, &type, 1) != 1 ||
      EVP_EncryptFinal_ex(d->cx, r + REC_HEAD + n + 1, &k) != 1 ||
      EVP_CIPHER_CTX_ctrl(d->cx, EVP_CTRL_AEAD_GET_TAG, REC_TAG,
                          r + REC_HEAD + n + 1) != 1)
    return -1;
  d->seq++;
  io->out.len += REC_HEAD + len;
  return 0;
}

static int own_write(tbio *io, const char *p, size_t n) {
  while (n > 0) {
    size_t k = n < REC_MAX ? n : REC_MAX;
    if (seal(io, (const unsigned char *)p, k)) return -1;
    p += k;
    n -= k;
  }
  return 0;
}

/* Append the n bytes at p to held: 0 or -1 (out of memory). */
static int held_put(tbio *io, const void *p, size_t n) {
  if (io->hoff) { /* keep held from growing with bytes already read */
    memmove(io->held.p, io->held.p + io->hoff, io->held.len - io->hoff);
    io->held.len -= io->hoff;
    io->hoff = 0;
  }
  if (dl_buf_try_grow(&io->held, n)) return -1;
  memcpy(io->held.p + io->held.len, p, n);
  io->held.len += n;
  return 0;
}

/* The next whole record, not consumed (*r, *len: its header included):
   1; 0 when it has not all come; -1 when its header is not one of a
   TLS 1.3 record after the handshake, or out of memory.  Held's bytes
   come first; a record split between held and the window is completed in
   held (a copy of one record at most; unlend keeps what the window has
   left). */
static int rec_peek(tbio *io, const unsigned char **r, size_t *len) {
  for (;;) {
    int inheld = io->held.len > io->hoff;
    const unsigned char *h = inheld
                                 ? (const unsigned char *)io->held.p + io->hoff
                                 : (const unsigned char *)io->win;
    size_t have = inheld ? io->held.len - io->hoff : io->nwin;
    size_t need = REC_HEAD, k;
    if (have >= REC_HEAD) {
      need = REC_HEAD + ((size_t)h[3] << 8 | h[4]);
      if (h[0] != 23 || h[1] != 3 || h[2] != 3 ||
          need > REC_HEAD + REC_CT_MAX || need < REC_HEAD + 1 + REC_TAG)
        return -1;
      if (have >= need) {
        *r = h;
        *len = need;
        return 1;
      }
    }
    if (!inheld || io->nwin == 0) return 0;
    k = need - have < io->nwin ? need - have : io->nwin;
    if (held_put(io, io->win, k)) return -1;
    io->win += k;
    io->nwin -= k;
  }
}

/* Consume the record rec_peek gave (len bytes). */
static void rec_drop(tbio *io, size_t len) {
  if (io->held.len > io->hoff) {
    io->hoff += len;
    if (io->hoff == io->held.len) io->held.len = io->hoff = 0;
  } else {
    io->win += len;
    io->nwin -= len;
  }
}

/* Open the record r (len bytes, header included) into dst (room for its
   body less the tag): 0, or -1 when it does not authenticate. */
static int unseal(tbio *io, const unsigned char *r, size_t len,
                  unsigned char *dst) {
  rdir *d = &io->rd;
  size_t clen = len - REC_HEAD - REC_TAG;
  unsigned char iv[12], tag[REC_TAG];
  int k;
  nonce(d, iv);
  memcpy(tag, r + len - REC_TAG, REC_TAG);
  if (EVP_DecryptInit_ex(d->cx, NULL, NULL, NULL, iv) != 1 ||
      EVP_DecryptUpdate(d->cx, NULL, &k, r, REC_HEAD) != 1 ||
      EVP_DecryptUpdate(d->cx, dst, &k, r + REC_HEAD, (int)clen) != 1 ||
      EVP_CIPHER_CTX_ctrl(d->cx, EVP_CTRL_AEAD_SET_TAG, REC_TAG, tag) != 1 ||
      EVP_DecryptFinal_ex(d->cx, dst + clen, &k) != 1)
    return -1;
  d->seq++;
  return 0;
}

/* dl_tls_read on our records: as many clear bytes as the whole records
   held and lent give, up to n, each record opened straight into p when
   it fits (else into plain, handed out over the next calls). */
static long own_read(tbio *io, unsigned char *p, size_t n, char *err,
                     size_t errlen) {
  size_t got = 0;
  if (io->dead) goto dead;
  while (got < n) {
    const unsigned char *r;
    unsigned char *dst;
    size_t len, clen, m;
    int rc, direct;
    if (io->plain.len > io->poff) {
      m = io->plain.len - io->poff;
      if (m > n - got) m = n - got;
      memcpy(p + got, io->plain.p + io->poff, m);
      got += m;
      io->poff += m;
      if (io->poff == io->plain.len) io->plain.len = io->poff = 0;
      continue;
    }
    rc = rec_peek(io, &r, &len);
    if (rc == 0) break;
    if (rc < 0) {
      snprintf(io->why, sizeof io->why,
               "TLS: a record that is not TLS 1.3's (or out of memory)");
      io->dead = 1;
      break;
    }
    clen = len - REC_HEAD - REC_TAG;
    direct = n - got >= clen;
    if (!direct && dl_buf_try_grow(&io->plain, clen)) {
      snprintf(io->why, sizeof io->why, "TLS: out of memory");
      io->dead = 1;
      break;
    }
    dst = direct ? p + got : (unsigned char *)io->plain.p;
    if (unseal(io, r, len, dst)) {
      snprintf(io->why, sizeof io->why, "TLS: a record does not "
               "authenticate (altered, or out of order): bad record mac");
      io->dead = 1;
      break;
    }
    rec_drop(io, len);
    for (m = clen; m > 0 && dst[m - 1] == 0; m--) /* padding */
      ;
    if (m == 0) {
      snprintf(io->why, sizeof io->why, "TLS: a record without a type");
      io->dead = 1;
      break;
    }
    m--;
    if (dst[m] == 23) { /* application data */
      if (direct) got += m;
      else io->plain.len = m;
    } else if (dst[m] == 21 && m >= 2) { /* an alert */
      if (dst[1] == 0)
        snprintf(io->why, sizeof io->why, "the peer closed the TLS session");
      else
        snprintf(io->why, sizeof io->why, "TLS: the peer sent alert %u",
                 (unsigned)dst[1]);
      io->dead = 1;
      break;
    } else if (!(dst[m] == 22 && m >= 1 && dst[0] == 4)) {
      /* anything but a session ticket (none is sent, but one is harmless) */
      snprintf(io->why, sizeof io->why, "TLS: a record of type %u after the "
               "handshake (a key update? dlua makes none)", (unsigned)dst[m]);
      io->dead = 1;
      break;
    }
  }
  if (got > 0) return (long)got; /* the failure, if any, comes next call */
  if (!io->dead) return 0;
dead:
  snprintf(err, errlen, "%s", io->why);
  return -1;
}

/* One line on why the session failed (rc from an SSL call). */
static void why_failed(dl_tls *t, int rc, char *err, size_t errlen) {
  char r[256];
  int e = SSL_get_error(SSLP(t), rc);
  long v = SSL_get_verify_result(SSLP(t));
  if (e == SSL_ERROR_ZERO_RETURN) {
    snprintf(err, errlen, "the peer closed the TLS session");
    ERR_clear_error();
    return;
  }
  ssl_reason(r, sizeof r);
  if (strstr(r, "alert unknown ca"))
    snprintf(err, errlen, "TLS: the peer does not trust this side's "
             "certificate (unknown CA: the TLS directories come from "
             "different `dlua tls-gen` runs)");
  else if (v != X509_V_OK)
    snprintf(err, errlen, "TLS: the peer's certificate is refused: %s (is it "
             "signed by this cluster's CA?)", X509_verify_cert_error_string(v));
  else
    snprintf(err, errlen, "TLS: %s", r);
}

int dl_tls_handshake(dl_tls *t, char *err, size_t errlen) {
  int rc, e;
  if (IO(t)->own) return DL_TLS_DONE;
  ERR_clear_error();
  rc = SSL_do_handshake(SSLP(t));
  if (rc == 1) {
    own_start(t);
    return DL_TLS_DONE;
  }
  e = SSL_get_error(SSLP(t), rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return DL_TLS_MORE;
  why_failed(t, rc, err, errlen);
  return DL_TLS_FAIL;
}

long dl_tls_read(dl_tls *t, void *p, size_t n, char *err, size_t errlen) {
  int rc, e;
  if (n > (1u << 30)) n = 1u << 30;
  if (IO(t)->own) return own_read(IO(t), p, n, err, errlen);
  ERR_clear_error();
  rc = SSL_read(SSLP(t), p, (int)n);
  if (rc > 0) return rc;
  e = SSL_get_error(SSLP(t), rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  why_failed(t, rc, err, errlen);
  return -1;
}

int dl_tls_write(dl_tls *t, const void *p, size_t n) {
  const char *c = p;
  if (IO(t)->own) return own_write(IO(t), p, n);
  ERR_clear_error();
  while (n > 0) {
    int k = SSL_write(SSLP(t), c, n > (1u << 30) ? 1 << 30 : (int)n);
    if (k <= 0) return -1;
    c += k;
    n -= (size_t)k;
  }
  return 0;
}

void dl_tls_end(dl_tls *t) {
  if (t->ssl) SSL_free(SSLP(t)); /* and its BIO */
  if (t->io) {
    tbio *io = IO(t);
    rdir_free(&io->rd);
    rdir_free(&io->wr);
    OPENSSL_cleanse(io->sec, sizeof io->sec);
    dl_buf_free(&io->held);
    dl_buf_free(&io->out);
    dl_buf_free(&io->plain);
    dl_free(t->io);
  }
  t->ssl = t->io = NULL;
}

/* ------------------------------------------------------------------ */
/* Sessions handed to the connection that adopts their socket          */
/* ------------------------------------------------------------------ */

/* A session waiting for its socket's owner, under the socket's number
   and inode: a number closed without being adopted and reused by another
   socket names another inode, so no session ever lands on a stranger. */
typedef struct handed {
  dl_tls t; /* first: a claimed session is freed as its handed */
  int fd;
  dev_t dev;
  ino_t ino;
  struct handed *next;
} handed;

static pthread_mutex_t hand_lock = PTHREAD_MUTEX_INITIALIZER;
static handed *hands;

/* Whether e's socket is gone (closed, or its number reused). */
static int stale(const handed *e) {
  struct stat st;
  return fstat(e->fd, &st) != 0 || st.st_dev != e->dev || st.st_ino != e->ino;
}

int dl_tls_hand(int fd, dl_tls *t, char *err, size_t errlen) {
  struct stat st;
  handed *e, **pp;
  if (fstat(fd, &st) != 0 || (e = dl_realloc(NULL, sizeof *e)) == NULL) {
    snprintf(err, errlen, "cannot hand over a TLS session: %s",
             strerror(errno ? errno : ENOMEM));
    dl_tls_end(t);
    return UV_ENOMEM;
  }
  e->fd = fd;
  e->dev = st.st_dev;
  e->ino = st.st_ino;
  e->t = *t;
  t->ssl = t->io = NULL;
  pthread_mutex_lock(&hand_lock);
  for (pp = &hands; *pp;) { /* drop the sessions of sockets closed since */
    handed *x = *pp;
    if (x->fd == fd || stale(x)) {
      *pp = x->next;
      dl_tls_end(&x->t);
      dl_free(x);
    } else {
      pp = &x->next;
    }
  }
  e->next = hands;
  hands = e;
  pthread_mutex_unlock(&hand_lock);
  return 0;
}

dl_tls *dl_tls_claim(int fd) {
  handed *e, **pp;
  struct stat st;
  pthread_mutex_lock(&hand_lock);
  for (pp = &hands; (e = *pp) != NULL; pp = &e->next)
    if (e->fd == fd) break;
  if (e) *pp = e->next;
  pthread_mutex_unlock(&hand_lock);
  if (e == NULL) return NULL;
  if (fstat(fd, &st) != 0 || st.st_dev != e->dev || st.st_ino != e->ino) {
    dl_tls_end(&e->t); /* its socket closed and the number reused */
    dl_free(e);
    return NULL;
  }
  return &e->t; /* freed with dl_tls_free */
}

void dl_tls_free(dl_tls *t) {
  if (t == NULL) return;
  dl_tls_end(t);
  dl_free((handed *)t);
}

int dl_tls_waiting(void) {
  handed *e;
  int n = 0;
  pthread_mutex_lock(&hand_lock);
  for (e = hands; e; e = e->next) n++;
  pthread_mutex_unlock(&hand_lock);
  return n;
}

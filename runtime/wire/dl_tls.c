/*
** dl_tls.c -- TLS sessions on memory BIOs and the TLS thread (see
** dl_tls.h).
**
** The TLS thread runs a libuv loop of its own.  Each connection it carries
** is a `tpipe`: the TCP socket (`net`, encrypted) and the thread's end of
** a socketpair (`loc`, clear).  Bytes read on one side are decrypted or
** encrypted and written to the other; when a side's writes back up (4 MiB
** queued), reading the other side pauses until they drain, so a fast
** sender never grows memory without bound.  An end of file on either side
** is passed on after the writes before it (uv_shutdown), then both close.
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
  SSL_CTX_set_num_tickets(c->ctx, 0); /* no resumption: nothing to send */
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
/* Sessions on memory BIOs                                             */
/* ------------------------------------------------------------------ */

int dl_tls_begin(dl_tls *t, const dl_tls_ctx *c, int server, char *err,
                 size_t errlen) {
  SSL *s;
  BIO *rb, *wb;
  t->ssl = NULL;
  ERR_clear_error();
  s = SSL_new(c->ctx);
  rb = BIO_new(BIO_s_mem());
  wb = BIO_new(BIO_s_mem());
  if (s == NULL || rb == NULL || wb == NULL) {
    snprintf(err, errlen, "cannot start a TLS session: out of memory");
    if (s) SSL_free(s);
    if (rb) BIO_free(rb);
    if (wb) BIO_free(wb);
    return -1;
  }
  SSL_set_bio(s, rb, wb); /* s owns both */
  if (server)
    SSL_set_accept_state(s);
  else
    SSL_set_connect_state(s);
  t->ssl = s;
  t->rb = rb;
  t->wb = wb;
  return 0;
}

int dl_tls_push(dl_tls *t, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    int k = BIO_write(t->rb, c, n > (1u << 30) ? 1 << 30 : (int)n);
    if (k <= 0) return -1;
    c += k;
    n -= (size_t)k;
  }
  return 0;
}

int dl_tls_pull(dl_tls *t, dl_buf *out) {
  size_t n;
  while ((n = BIO_ctrl_pending(t->wb)) > 0) {
    int k;
    if (dl_buf_try_grow(out, n)) return -1;
    k = BIO_read(t->wb, out->p + out->len, (int)n);
    if (k <= 0) return -1;
    out->len += (size_t)k;
  }
  return 0;
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
  ERR_clear_error();
  rc = SSL_do_handshake(SSLP(t));
  if (rc == 1) return DL_TLS_DONE;
  e = SSL_get_error(SSLP(t), rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return DL_TLS_MORE;
  why_failed(t, rc, err, errlen);
  return DL_TLS_FAIL;
}

long dl_tls_read(dl_tls *t, void *p, size_t n, char *err, size_t errlen) {
  int rc, e;
  if (n > (1u << 30)) n = 1u << 30;
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
  if (t->ssl) SSL_free(SSLP(t)); /* and its BIOs */
  t->ssl = t->rb = t->wb = NULL;
}

/* ------------------------------------------------------------------ */
/* The TLS thread                                                      */
/* ------------------------------------------------------------------ */

typedef struct tpipe tpipe;

struct tpipe {
  uv_tcp_t net;  /* the peer, encrypted */
  uv_pipe_t loc; /* the owner's socketpair, clear */
  dl_tls t;
  int netfd, locfd;
  int clear; /* the owner's end (its number when adopted) */
  struct sockaddr_storage local; /* netfd's local address */
  tpipe *lprev, *lnext; /* every live pipe (under T.lock) */
  int closing, closed;
  int net_paused, loc_paused; /* reading stopped: the other side is full */
  tpipe *next;                /* the adoption queue */
};

/* A write: blocks of CHUNK bytes, reused (a fresh 256 KiB block per
   write made the heap grow and shrink, and every write fault its pages
   in: a tenth of the speed). */
typedef struct tw {
  uv_write_t req;
  tpipe *p;
  struct tw *free_next;
  char d[CHUNK];
} tw;

static uv_once_t once = UV_ONCE_INIT;

static struct {
  int started; /* 1 running, -1 could not start */
  pid_t pid;   /* the process that started it (a fork has no thread) */
  uv_mutex_t lock;
  uv_loop_t loop;
  uv_async_t wake;
  uv_thread_t thread;
  tpipe *queue; /* adopted, not yet opened (under lock) */
  int live;     /* pipes open (under lock) */
  tpipe *all;   /* every live pipe, through lnext (under lock) */
  /* The thread's own (no lock): each read is consumed in its callback,
     so one buffer serves every pipe; spare write blocks. */
  char rbuf[CHUNK];
  tw *pool;
  int npool;
} T;

static void pipe_closed(uv_handle_t *h) {
  tpipe *p = h->data;
  if (++p->closed < 2) return;
  dl_tls_end(&p->t);
  uv_mutex_lock(&T.lock);
  T.live--;
  if (p->lprev) p->lprev->lnext = p->lnext;
  else T.all = p->lnext;
  if (p->lnext) p->lnext->lprev = p->lprev;
  uv_mutex_unlock(&T.lock);
  dl_free(p);
}

static void close_both(tpipe *p) {
  p->closing = 2;
  if (!uv_is_closing((uv_handle_t *)&p->net))
    uv_close((uv_handle_t *)&p->net, pipe_closed);
  if (!uv_is_closing((uv_handle_t *)&p->loc))
    uv_close((uv_handle_t *)&p->loc, pipe_closed);
}

static void shut_cb(uv_shutdown_t *req, int status) {
  tpipe *p = req->data;
  (void)status;
  dl_free(req);
  close_both(p);
}

/* One side ended: stop reading, let the other side's queued writes go
   out and end it too, then close both. */
static void finish(tpipe *p, uv_stream_t *other) {
  uv_shutdown_t *req;
  if (p->closing) return;
  p->closing = 1;
  uv_read_stop((uv_stream_t *)&p->net);
  uv_read_stop((uv_stream_t *)&p->loc);
  req = dl_realloc(NULL, sizeof *req);
  if (req == NULL) {
    close_both(p);
    return;
  }
  req->data = p;
  if (uv_shutdown(req, other, shut_cb) != 0) {
    dl_free(req);
    close_both(p);
  }
}

static void net_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);
static void loc_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);
static void net_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void loc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static tw *tw_new(void) {
  tw *w = T.pool;
  if (w) {
    T.pool = w->free_next;
    T.npool--;
    return w;
  }
  return dl_realloc(NULL, sizeof *w);
}

static void tw_free(tw *w) {
  if (T.npool >= POOL_MAX) {
    dl_free(w);
    return;
  }
  w->free_next = T.pool;
  T.pool = w;
  T.npool++;
}

static void wrote(uv_write_t *req, int status) {
  tw *w = (tw *)req;
  tpipe *p = w->p;
  uv_stream_t *to = req->handle;
  tw_free(w);
  if (status < 0) {
    if (p->closing < 2) close_both(p);
    return;
  }
  if (p->closing) return;
  /* Writes drained: read again from the side that fills this one. */
  if (to == (uv_stream_t *)&p->loc && p->net_paused &&
      p->loc.write_queue_size < LOW) {
    p->net_paused = 0;
    uv_read_start((uv_stream_t *)&p->net, net_alloc, net_read);
  } else if (to == (uv_stream_t *)&p->net && p->loc_paused &&
             p->net.write_queue_size < LOW) {
    p->loc_paused = 0;
    uv_read_start((uv_stream_t *)&p->loc, loc_alloc, loc_read);
  }
}

/* Write w's n bytes to `to`; 0 or -1 (the pipe is being closed). */
static int send_to(tpipe *p, uv_stream_t *to, tw *w, size_t n) {
  uv_buf_t b = uv_buf_init(w->d, (unsigned)n);
  w->p = p;
  if (uv_write(&w->req, to, &b, 1, wrote) != 0) {
    tw_free(w);
    close_both(p);
    return -1;
  }
  return 0;
}

/* Send what the session has for the peer. */
static int flush_net(tpipe *p) {
  size_t n;
  while ((n = BIO_ctrl_pending(p->t.wb)) > 0) {
    tw *w = tw_new();
    int k;
    if (w == NULL) {
      close_both(p);
      return -1;
    }
    k = BIO_read(p->t.wb, w->d, (int)(n < CHUNK ? n : CHUNK));
    if (k <= 0) {
      tw_free(w);
      close_both(p);
      return -1;
    }
    if (send_to(p, (uv_stream_t *)&p->net, w, (size_t)k)) return -1;
  }
  if (p->net.write_queue_size > HIGH && !p->loc_paused) {
    p->loc_paused = 1;
    uv_read_stop((uv_stream_t *)&p->loc);
  }
  return 0;
}

/* Decrypt what the session holds and pass it to the owner. */
static void drain_net(tpipe *p) {
  char err[300];
  for (;;) {
    tw *w = tw_new();
    size_t have = 0;
    long k = 0;
    if (w == NULL) {
      close_both(p);
      return;
    }
    while (have < CHUNK &&
           (k = dl_tls_read(&p->t, w->d + have, CHUNK - have, err,
                            sizeof err)) > 0)
      have += (size_t)k;
    if (have > 0) {
      if (send_to(p, (uv_stream_t *)&p->loc, w, have)) return;
    } else {
      tw_free(w);
    }
    if (flush_net(p)) return; /* a key update's answer, an alert */
    if (k < 0) {
      finish(p, (uv_stream_t *)&p->loc); /* closed or broken: pass it on */
      return;
    }
    if (have < CHUNK) break;
  }
  if (p->loc.write_queue_size > HIGH && !p->net_paused) {
    p->net_paused = 1;
    uv_read_stop((uv_stream_t *)&p->net);
  }
}

static void net_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)h;
  (void)hint;
  *b = uv_buf_init(T.rbuf, sizeof T.rbuf);
}

/* Clear bytes read at once leave room for their records' headers and
   tags (22 bytes per 16 KiB), so they go out as one block, one write. */
static void loc_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)h;
  (void)hint;
  *b = uv_buf_init(T.rbuf, sizeof T.rbuf - 4096);
}

static void net_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  tpipe *p = s->data;
  if (n == 0 || p->closing) return;
  if (n < 0 || dl_tls_push(&p->t, b->base, (size_t)n)) {
    finish(p, (uv_stream_t *)&p->loc);
    return;
  }
  drain_net(p);
}

static void loc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  tpipe *p = s->data;
  if (n == 0 || p->closing) return;
  if (n < 0) { /* the owner closed: say so to the peer, then end */
    SSL_shutdown(SSLP(&p->t));
    if (flush_net(p) == 0) finish(p, (uv_stream_t *)&p->net);
    return;
  }
  if (dl_tls_write(&p->t, b->base, (size_t)n)) {
    close_both(p);
    return;
  }
  flush_net(p);
}

/* Open the adopted pipes on the thread's loop. */
static void on_wake(uv_async_t *a) {
  tpipe *q;
  (void)a;
  uv_mutex_lock(&T.lock);
  q = T.queue;
  T.queue = NULL;
  uv_mutex_unlock(&T.lock);
  while (q) {
    tpipe *p = q;
    q = q->next;
    uv_tcp_init(&T.loop, &p->net);
    uv_pipe_init(&T.loop, &p->loc, 0);
    p->net.data = p->loc.data = p;
    if (uv_tcp_open(&p->net, p->netfd) != 0) {
      close(p->netfd);
      close(p->locfd);
      close_both(p);
      continue;
    }
    if (uv_pipe_open(&p->loc, p->locfd) != 0) { /* net's fd is net's now */
      close(p->locfd);
      close_both(p);
      continue;
    }
    uv_read_start((uv_stream_t *)&p->net, net_alloc, net_read);
    uv_read_start((uv_stream_t *)&p->loc, loc_alloc, loc_read);
    drain_net(p); /* what came with the handshake's last bytes */
  }
}

static void thread_main(void *arg) {
  sigset_t set;
  (void)arg;
  sigfillset(&set); /* signals are the owner's threads' business */
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  uv_run(&T.loop, UV_RUN_DEFAULT);
}

/* A child of fork has no TLS thread: let it start its own. */
static void after_fork(void) {
  if (T.started == 1 && T.pid != getpid()) {
    T.started = 0;
    T.queue = NULL;
    T.all = NULL;
    T.live = 0;
  }
}

static void start_thread(void) {
  if (uv_mutex_init(&T.lock) || uv_loop_init(&T.loop) ||
      uv_async_init(&T.loop, &T.wake, on_wake)) {
    T.started = -1;
    return;
  }
  pthread_atfork(NULL, NULL, after_fork);
  T.pid = getpid();
  if (uv_thread_create(&T.thread, thread_main, NULL) != 0) {
    T.started = -1;
    return;
  }
  T.started = 1;
}

int dl_tls_adopt(int fd, dl_tls *t, int *clear, char *err, size_t errlen) {
  int sv[2], big = 4 << 20;
  tpipe *p;
  *clear = -1;
  uv_once(&once, start_thread);
  if (T.started == 0) start_thread(); /* a forked child's first */
  if (T.started != 1) {
    snprintf(err, errlen, "cannot start the TLS thread");
    close(fd);
    dl_tls_end(t);
    return UV_ENOMEM;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    int e = errno;
    snprintf(err, errlen, "cannot make a socketpair: %s", strerror(e));
    close(fd);
    dl_tls_end(t);
    return uv_translate_sys_error(e);
  }
  if ((p = dl_realloc(NULL, sizeof *p)) == NULL) {
    snprintf(err, errlen, "out of memory");
    close(fd);
    close(sv[0]);
    close(sv[1]);
    dl_tls_end(t);
    return UV_ENOMEM;
  }
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  memset(p, 0, sizeof *p);
  p->t = *t;
  t->ssl = t->rb = t->wb = NULL;
  p->netfd = fd;
  p->locfd = sv[1];
  p->clear = sv[0];
  {
    socklen_t len = sizeof p->local;
    if (getsockname(fd, (struct sockaddr *)&p->local, &len) != 0)
      memset(&p->local, 0, sizeof p->local);
  }
  uv_mutex_lock(&T.lock);
  p->next = T.queue;
  T.queue = p;
  T.live++;
  p->lnext = T.all;
  if (T.all) T.all->lprev = p;
  T.all = p;
  uv_mutex_unlock(&T.lock);
  uv_async_send(&T.wake);
  *clear = sv[0];
  return 0;
}

int dl_tls_sockname(int clear, struct sockaddr_storage *ss) {
  tpipe *p;
  int rc = -1;
  if (T.started != 1) return -1;
  uv_mutex_lock(&T.lock);
  for (p = T.all; p; p = p->lnext)
    if (p->clear == clear && p->local.ss_family != AF_UNSPEC) {
      *ss = p->local;
      rc = 0;
      break;
    }
  uv_mutex_unlock(&T.lock);
  return rc;
}

int dl_tls_live(void) {
  int n;
  if (T.started != 1) return 0;
  uv_mutex_lock(&T.lock);
  n = T.live;
  uv_mutex_unlock(&T.lock);
  return n;
}

/*
** dl_tcp.c -- authenticated TCP connections (see dl_tcp.h).
**
** Each connection being set up is a `tlink`: its TCP handle, a timer that
** bounds the whole setup, and the handshake.  The handshake reads exactly
** the bytes dl_auth_want() asks for, so the first frame byte is never read
** here; once authenticated, the socket is duplicated, handed to the owner
** and the tlink's own handles are closed.  A tlink is freed when its last
** handle is closed and its last request has come back (refs).
*/
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dl_tcp.h"

enum { L_DIAL = 1, L_SHAKE, L_DONE, L_FAIL, L_OVER };
/* Where a TLS link is (tlink.tphase): none (plain TCP), reading the
   server's clear hello (client), the TLS handshake, the token's handshake
   inside TLS. */
enum { TP_NONE = 0, TP_HELLO, TP_SHAKE, TP_AUTH };
#define TLS_READ 16384

typedef struct tlink tlink;

struct dl_tcp_server {
  uv_tcp_t tcp;
  dl_tcp_opts opts;
  dl_tcp_accept_cb cb;
  void *data;
  tlink *pending; /* handshakes under way (a list through tlink.next) */
  int npending;
  int port;
  int refs; /* the listening handle and every tlink; freed at zero */
  int closing;
};

struct tlink {
  uv_tcp_t tcp;
  uv_timer_t timer;
  dl_auth auth;
  unsigned char rbuf[DL_AUTH_C1_LEN]; /* the largest message */
  dl_tcp_opts opts;
  int state;
  int refs;   /* open handles and requests in flight */
  int writes; /* writes in flight */
  int tcp_open, retry, in_list, reported, gai_pending;
  int tphase;    /* TP_*: TLS links only */
  size_t hhave;  /* bytes of the TLS hello read (client) */
  size_t got;    /* bytes read from the peer */
  dl_tls tls;
  char *tbuf;    /* TLS_READ bytes for TLS reads */
  char peer[80];
  /* accepted links */
  dl_tcp_server *srv;
  tlink *prev, *next;
  /* dialled links */
  dl_tcp_dial_cb cb;
  void *ud;
  uv_getaddrinfo_t gai;
  struct addrinfo *res, *ai;
  uv_connect_t creq;
  char host[256];
  int port;
  unsigned timeout_ms;
};

typedef struct wreq {
  uv_write_t req;
  tlink *l;
  size_t n;
  char p[];
} wreq;

static void logf_(const dl_tcp_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* One line to the owner's log, or to stderr. */
static void logf_(const dl_tcp_opts *o, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (o->log)
    o->log(o->log_ud, line);
  else
    fprintf(stderr, "dlua: %s\n", line);
}

/* The wire version spoken: o->wire, else DLUA_TEST_WIRE (for specs that
   play an older or newer dlua with real processes), else DL_AUTH_WIRE. */
static unsigned wire(const dl_tcp_opts *o) {
  const char *e;
  char *end;
  unsigned long v;
  if (o->wire) return o->wire;
  if ((e = getenv("DLUA_TEST_WIRE")) != NULL && *e) {
    v = strtoul(e, &end, 10);
    if (*end == '\0' && v > 0 && v <= 0xFFFF) return (unsigned)v;
  }
  return DL_AUTH_WIRE;
}

static unsigned shake_ms(const dl_tcp_opts *o) {
  return o->handshake_ms ? o->handshake_ms : DL_TCP_HANDSHAKE_MS;
}

/* "1.2.3.4:5" or "[::1]:5" for a socket address. */
static void addr_name(const struct sockaddr *sa, char *out, size_t n) {
  char ip[64] = "?";
  int port = 0;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
    snprintf(out, n, "%s:%d", ip, port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
    snprintf(out, n, "[%s]:%d", ip, port);
  } else {
    snprintf(out, n, "?");
  }
}

/* "tcp://host:port" for messages, with brackets for IPv6. */
static void url(const tlink *l, char *out, size_t n) {
  if (strchr(l->host, ':'))
    snprintf(out, n, "tcp://[%s]:%d", l->host, l->port);
  else
    snprintf(out, n, "tcp://%s:%d", l->host, l->port);
}

/* ------------------------------------------------------------------ */
/* Link lifetime                                                       */
/* ------------------------------------------------------------------ */

static void srv_unref(dl_tcp_server *s) {
  if (--s->refs == 0) dl_free(s);
}

static void unref(tlink *l) {
  if (--l->refs > 0) return;
  if (l->res) uv_freeaddrinfo(l->res);
  if (l->srv) srv_unref(l->srv);
  dl_auth_clear(&l->auth);
  dl_tls_end(&l->tls);
  dl_free(l->tbuf);
  dl_free(l);
}

static void unlist(tlink *l) {
  dl_tcp_server *s = l->srv;
  if (!l->in_list) return;
  if (l->prev)
    l->prev->next = l->next;
  else
    s->pending = l->next;
  if (l->next) l->next->prev = l->prev;
  l->in_list = 0;
  s->npending--;
}

static void start_connect(tlink *l);
static void report(tlink *l, int fd, const char *err);

static void tcp_closed(uv_handle_t *h) {
  tlink *l = h->data;
  l->tcp_open = 0;
  if (l->retry && l->state == L_DIAL) {
    l->retry = 0;
    start_connect(l); /* the next address of the name */
  }
  unref(l);
}

static void timer_closed(uv_handle_t *h) { unref(h->data); }

/* Close everything the tlink holds; it is freed when all came back. */
static void over(tlink *l) {
  if (l->state == L_OVER) return;
  l->state = L_OVER;
  if (l->srv) unlist(l);
  if (l->tcp_open && !uv_is_closing((uv_handle_t *)&l->tcp))
    uv_close((uv_handle_t *)&l->tcp, tcp_closed);
  if (!uv_is_closing((uv_handle_t *)&l->timer))
    uv_close((uv_handle_t *)&l->timer, timer_closed);
  if (l->gai_pending) uv_cancel((uv_req_t *)&l->gai);
}

/* The dialler's one result. */
static void report(tlink *l, int fd, const char *err) {
  if (l->reported || l->cb == NULL) {
    if (fd >= 0) close(fd);
    return;
  }
  l->reported = 1;
  l->cb(fd, err, l->ud);
}

static void fail_dial(tlink *l, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Report a failed dial with one line and close the tlink. */
static void fail_dial(tlink *l, int code, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  report(l, code, msg);
  over(l);
}

/* ------------------------------------------------------------------ */
/* The handshake on a connected tlink                                   */
/* ------------------------------------------------------------------ */

static void progress(tlink *l);

static void write_cb(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  tlink *l = w->l;
  dl_free(w);
  l->writes--;
  if (status < 0 && l->state != L_OVER && l->state != L_FAIL) {
    char u[300];
    if (l->srv) {
      logf_(&l->opts, "connection from %s lost during the handshake (%s)",
            l->peer, uv_strerror(status));
      over(l);
    } else {
      url(l, u, sizeof u);
      fail_dial(l, status, "%s: connection lost during the handshake (%s)",
                u, uv_strerror(status));
    }
    return;
  }
  progress(l);
}

/* Send what the handshake wrote to out (copied); out is emptied. */
static void send_out(tlink *l, dl_buf *out) {
  wreq *w;
  uv_buf_t b;
  if (out->len == 0) return;
  w = dl_realloc(NULL, sizeof *w + out->len);
  if (w == NULL) {
    out->len = 0;
    l->state = L_FAIL;
    return;
  }
  w->l = l;
  w->n = out->len;
  memcpy(w->p, out->p, out->len);
  out->len = 0;
  b = uv_buf_init(w->p, (unsigned)w->n);
  if (uv_write(&w->req, (uv_stream_t *)&l->tcp, &b, 1, write_cb) != 0) {
    dl_free(w);
    l->state = L_FAIL;
    return;
  }
  l->writes++;
}

/* Authenticated: hand a duplicate of the socket to the owner. */
static void handoff(tlink *l) {
  uv_os_fd_t fd0;
  int fd = -1;
  if (uv_fileno((uv_handle_t *)&l->tcp, &fd0) == 0) {
    uv_tcp_nodelay(&l->tcp, 1);
    uv_tcp_keepalive(&l->tcp, 1, 30);
    fd = fcntl(fd0, F_DUPFD_CLOEXEC, 3);
  }
  if (fd >= 0 && l->tls.ssl) { /* the session waits for fd's owner */
    char err[300];
    if (dl_tls_hand(fd, &l->tls, err, sizeof err) != 0) {
      close(fd);
      errno = EIO;
      fd = -1;
    }
  }
  if (l->srv) {
    dl_tcp_server *s = l->srv;
    unlist(l);
    if (fd < 0)
      logf_(&l->opts, "connection from %s dropped: %s", l->peer,
            strerror(errno));
    else if (!s->closing)
      s->cb(s, fd, l->peer, s->data);
    else
      close(fd);
    over(l);
  } else if (fd < 0) {
    fail_dial(l, uv_translate_sys_error(errno), "cannot keep the socket: %s",
              strerror(errno));
  } else {
    report(l, fd, NULL);
    over(l);
  }
}

static void progress(tlink *l) {
  if (l->writes > 0) return;
  if (l->state == L_DONE)
    handoff(l);
  else if (l->state == L_FAIL)
    over(l);
}

static void alloc_exact(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  tlink *l = h->data;
  size_t want = dl_auth_want(&l->auth);
  (void)hint;
  if (want == 0 || want > sizeof l->rbuf) want = 1;
  *buf = uv_buf_init((char *)l->rbuf, (unsigned)want);
}

static void auth_over(tlink *l, int ok);

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  tlink *l = st->data;
  dl_buf out;
  size_t used = 0;
  int rc;
  char u[300];
  if (l->state != L_SHAKE || nread == 0) return;
  if (nread < 0) {
    uv_read_stop(st);
    if (l->srv) {
      logf_(&l->opts, "connection from %s closed before authenticating",
            l->peer);
      over(l);
    } else {
      url(l, u, sizeof u);
      fail_dial(l, UV_ECONNRESET,
                "%s closed the connection during the handshake (not a dlua "
                "scheduler, or it refused this one; see its log)",
                u);
    }
    return;
  }
  dl_buf_init(&out);
  rc = dl_auth_feed(&l->auth, buf->base, (size_t)nread, &used, &out);
  send_out(l, &out);
  dl_buf_free(&out);
  if (rc == DL_AUTH_MORE && l->state == L_SHAKE) return;
  uv_read_stop(st);
  auth_over(l, rc == DL_AUTH_DONE && used == (size_t)nread);
}

/* The token's handshake ended, accepted (ok) or not: say so. */
static void auth_over(tlink *l, int ok) {
  char u[300];
  if (ok && l->state == L_SHAKE) {
    l->state = L_DONE;
  } else {
    /* A refusal that trying again cannot change has a code of its own:
       a wrong token, another wire version (`dlua worker` does not retry
       them, see join_over_tcp). */
    int code = l->auth.why == DL_AUTH_ETOKEN      ? UV_EACCES
               : l->auth.why == DL_AUTH_EVERSION ? UV_EPROTONOSUPPORT
                                                 : UV_EPROTO;
    l->state = L_FAIL;
    if (l->srv) {
      logf_(&l->opts, "refused connection from %s: %s", l->peer,
            l->auth.err[0] ? l->auth.err : "out of memory");
    } else {
      char msg[600];
      url(l, u, sizeof u);
      snprintf(msg, sizeof msg, "%s: %s", u,
               l->auth.err[0] ? l->auth.err : "out of memory");
      report(l, code, msg);
    }
  }
  progress(l);
}

/* ------------------------------------------------------------------ */
/* The same inside TLS (dl_tls.h)                                       */
/* ------------------------------------------------------------------ */

/* A TLS link failed (msg: why, one line). */
static void tls_fail(tlink *l, int code, const char *msg) {
  char u[300];
  uv_read_stop((uv_stream_t *)&l->tcp);
  l->state = L_FAIL;
  if (l->srv) {
    logf_(&l->opts, "refused connection from %s: %s", l->peer, msg);
  } else {
    url(l, u, sizeof u);
    fail_dial(l, code, "%s: %s", u, msg);
    return;
  }
  progress(l);
}

/* Send what the TLS session has for the peer. */
static void tls_send(tlink *l) {
  dl_buf out;
  dl_buf_init(&out);
  if (dl_tls_pull(&l->tls, &out) == 0)
    send_out(l, &out);
  else
    l->state = L_FAIL;
  dl_buf_free(&out);
}

/* Go as far as the bytes the session holds allow: the TLS handshake,
   then the token's, reading exactly what dl_auth wants so that frame
   bytes stay in the session for the connection that takes it. */
static void tls_step(tlink *l) {
  char err[300];
  dl_buf out;
  if (l->tphase == TP_SHAKE) {
    int rc = dl_tls_handshake(&l->tls, err, sizeof err);
    tls_send(l);
    if (rc == DL_TLS_FAIL) {
      tls_fail(l, UV_EPROTO, err);
      return;
    }
    if (rc == DL_TLS_MORE || l->state != L_SHAKE) return;
    l->tphase = TP_AUTH;
    dl_buf_init(&out);
    rc = dl_auth_begin(&l->auth, l->srv ? DL_AUTH_SERVER : DL_AUTH_CLIENT,
                       l->opts.token, wire(&l->opts), l->opts.version, &out);
    if (rc != DL_AUTH_MORE || dl_tls_write(&l->tls, out.p, out.len)) {
      dl_buf_free(&out);
      tls_fail(l, UV_ENOMEM, l->auth.err[0] ? l->auth.err : "out of memory");
      return;
    }
    dl_buf_free(&out);
    tls_send(l);
  }
  while (l->tphase == TP_AUTH && l->state == L_SHAKE) {
    size_t want = dl_auth_want(&l->auth), used = 0;
    long k;
    int rc;
    if (want == 0 || want > sizeof l->rbuf) want = 1;
    k = dl_tls_read(&l->tls, l->rbuf, want, err, sizeof err);
    if (k < 0) {
      tls_send(l); /* an alert */
      tls_fail(l, UV_EPROTO, err);
      return;
    }
    if (k == 0) {
      tls_send(l);
      return;
    }
    dl_buf_init(&out);
    rc = dl_auth_feed(&l->auth, l->rbuf, (size_t)k, &used, &out);
    if (out.len && dl_tls_write(&l->tls, out.p, out.len)) rc = DL_AUTH_FAIL;
    dl_buf_free(&out);
    tls_send(l);
    if (rc == DL_AUTH_MORE) continue;
    uv_read_stop((uv_stream_t *)&l->tcp);
    auth_over(l, rc == DL_AUTH_DONE && used == (size_t)k);
    return;
  }
}

static void alloc_tls(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  tlink *l = h->data;
  (void)hint;
  if (l->tphase == TP_HELLO) /* exactly the hello: no TLS byte yet */
    *buf = uv_buf_init((char *)l->rbuf + l->hhave,
                       (unsigned)(DL_AUTH_TLS_HELLO_LEN - l->hhave));
  else
    *buf = uv_buf_init(l->tbuf, TLS_READ);
}

static void read_tls(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  tlink *l = st->data;
  char err[300], u[300];
  if (l->state != L_SHAKE || nread == 0) return;
  if (nread < 0) {
    if (l->srv && l->tphase == TP_SHAKE) {
      uv_read_stop(st);
      logf_(&l->opts, l->got == 0 ?
            "connection from %s closed before its TLS handshake (a peer "
            "without TLS? this side has --tls-dir)" :
            "connection from %s closed during its TLS handshake (did it "
            "refuse this side's certificate? see its log)", l->peer);
      over(l);
    } else {
      read_cb(st, nread, buf);
    }
    return;
  }
  l->got += (size_t)nread;
  if (l->tphase == TP_HELLO) {
    const char *hello = DL_AUTH_TLS_HELLO;
    size_t upto = l->hhave + (size_t)nread;
    if (memcmp(l->rbuf, hello, upto) != 0) {
      url(l, u, sizeof u);
      tls_fail(l, UV_EPROTO, memcmp(l->rbuf, "DLUAAUTH", upto) == 0 ?
               "the scheduler does not use TLS, but this side has a TLS "
               "directory (drop --tls-dir / tls_dir, or start the scheduler "
               "with --tls-dir)" : "not a dlua TLS server (garbage)");
      return;
    }
    l->hhave = upto;
    if (l->hhave < DL_AUTH_TLS_HELLO_LEN) return;
    if (dl_tls_begin(&l->tls, l->opts.tls, 0, err, sizeof err)) {
      tls_fail(l, UV_ENOMEM, err);
      return;
    }
    l->tphase = TP_SHAKE;
  } else if (dl_tls_push(&l->tls, buf->base, (size_t)nread)) {
    tls_fail(l, UV_ENOMEM, "out of memory");
    return;
  }
  tls_step(l);
  progress(l);
}

/* Start reading a connected link: plain, or the TLS way. */
static int start_reading(tlink *l) {
  if (l->opts.tls == NULL)
    return uv_read_start((uv_stream_t *)&l->tcp, alloc_exact, read_cb);
  if (l->tbuf == NULL && (l->tbuf = dl_realloc(NULL, TLS_READ)) == NULL)
    return UV_ENOMEM;
  return uv_read_start((uv_stream_t *)&l->tcp, alloc_tls, read_tls);
}

static void shake_timeout(uv_timer_t *t) {
  tlink *l = t->data;
  char u[300];
  if (l->state == L_OVER) return;
  if (l->srv) {
    logf_(&l->opts, "refused connection from %s: no handshake within %u ms",
          l->peer, shake_ms(&l->opts));
    over(l);
    return;
  }
  url(l, u, sizeof u);
  if (l->state == L_DIAL)
    fail_dial(l, UV_ETIMEDOUT, "cannot reach %s: no answer within %u ms", u,
              l->timeout_ms);
  else
    fail_dial(l, UV_ETIMEDOUT, "%s: handshake not finished within %u ms", u,
              l->timeout_ms);
}

/* ------------------------------------------------------------------ */
/* The listening side                                                  */
/* ------------------------------------------------------------------ */

static void on_connection(uv_stream_t *ls, int status) {
  dl_tcp_server *s = ls->data;
  struct sockaddr_storage ss;
  int len = sizeof ss;
  dl_buf out;
  tlink *l;
  if (status < 0 || s->closing) return;
  l = dl_realloc(NULL, sizeof *l);
  if (l == NULL) return; /* the peer waits in the backlog */
  memset(l, 0, sizeof *l);
  l->opts = s->opts;
  l->srv = s;
  s->refs++;
  l->refs = 2;
  uv_tcp_init(ls->loop, &l->tcp);
  uv_timer_init(ls->loop, &l->timer);
  l->tcp.data = l->timer.data = l;
  l->tcp_open = 1;
  l->state = L_SHAKE;
  l->next = s->pending;
  if (s->pending) s->pending->prev = l;
  s->pending = l;
  l->in_list = 1;
  s->npending++;
  if (uv_accept(ls, (uv_stream_t *)&l->tcp) != 0) {
    over(l);
    return;
  }
  if (uv_tcp_getpeername(&l->tcp, (struct sockaddr *)&ss, &len) == 0)
    addr_name((struct sockaddr *)&ss, l->peer, sizeof l->peer);
  else
    strcpy(l->peer, "?");
  uv_timer_start(&l->timer, shake_timeout, shake_ms(&l->opts), 0);
  dl_buf_init(&out);
  if (l->opts.tls) { /* the clear hello, then TLS; the token inside */
    char err[300];
    dl_buf_put(&out, DL_AUTH_TLS_HELLO, DL_AUTH_TLS_HELLO_LEN);
    if (dl_tls_begin(&l->tls, l->opts.tls, 1, err, sizeof err)) {
      logf_(&l->opts, "refused connection from %s: %s", l->peer, err);
      dl_buf_free(&out);
      over(l);
      return;
    }
    l->tphase = TP_SHAKE;
  } else if (dl_auth_begin(&l->auth, DL_AUTH_SERVER, l->opts.token,
                           wire(&l->opts), l->opts.version, &out) !=
             DL_AUTH_MORE) {
    logf_(&l->opts, "refused connection from %s: %s", l->peer, l->auth.err);
    dl_buf_free(&out);
    over(l);
    return;
  }
  send_out(l, &out);
  dl_buf_free(&out);
  if (l->state != L_SHAKE || start_reading(l) != 0) over(l);
}

int dl_tcp_parse(const char *addr, char *host, size_t hostlen, int *port,
                 char *err, size_t errlen) {
  const char *h = addr, *colon, *end;
  char *num_end;
  long p;
  size_t hn;
  if (strncmp(h, "tcp://", 6) == 0) h += 6;
  if (*h == '[') {
    end = strchr(h, ']');
    if (end == NULL || end[1] != ':') goto bad;
    colon = end + 1;
    h++;
  } else {
    colon = strrchr(h, ':');
    if (colon == NULL || memchr(h, ':', (size_t)(colon - h))) goto bad;
    end = colon;
  }
  hn = (size_t)(end - h);
  if (hn == 0 || hn >= hostlen || colon[1] == '\0') goto bad;
  errno = 0;
  p = strtol(colon + 1, &num_end, 10);
  if (*num_end != '\0' || errno || p < 0 || p > 65535 || colon[1] == '-' ||
      colon[1] == '+' || colon[1] == ' ')
    goto bad;
  memcpy(host, h, hn);
  host[hn] = '\0';
  *port = (int)p;
  return 0;
bad:
  snprintf(err, errlen,
           "bad address '%s' (expected tcp://HOST:PORT, tcp://[IPV6]:PORT)",
           addr);
  return DL_EINVAL;
}

static void srv_closed(uv_handle_t *h) { srv_unref(h->data); }

int dl_tcp_listen(dl_tcp_server **out, uv_loop_t *loop, const char *host,
                  int port, const dl_tcp_opts *opts, dl_tcp_accept_cb cb,
                  void *data, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  int rc, len = sizeof ss;
  dl_tcp_server *s;
  const char *what = "listen on";
  *out = NULL;
  memset(&ss, 0, sizeof ss);
  if (port < 0 || port > 65535) {
    snprintf(err, errlen, "bad port %d (0 to 65535)", port);
    return UV_EINVAL;
  }
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
    snprintf(err, errlen,
             "cannot listen on '%s': not a numeric IPv4 or IPv6 address",
             host);
    return UV_EINVAL;
  }
  s = dl_realloc(NULL, sizeof *s);
  if (s == NULL) {
    snprintf(err, errlen, "out of memory");
    return UV_ENOMEM;
  }
  memset(s, 0, sizeof *s);
  s->opts = *opts;
  s->cb = cb;
  s->data = data;
  s->refs = 1;
  uv_tcp_init(loop, &s->tcp);
  s->tcp.data = s;
  rc = uv_tcp_bind(&s->tcp, (struct sockaddr *)&ss, 0);
  if (rc == 0) {
    what = "listen on";
    rc = uv_listen((uv_stream_t *)&s->tcp, 4096, on_connection);
  }
  if (rc == 0)
    rc = uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len);
  if (rc != 0) {
    if (rc == UV_EADDRINUSE)
      snprintf(err, errlen, "port %d on %s is in use (another scheduler? "
               "pick another --port)", port, host);
    else
      snprintf(err, errlen, "cannot %s %s:%d: %s", what, host, port,
               uv_strerror(rc));
    s->closing = 1;
    uv_close((uv_handle_t *)&s->tcp, srv_closed);
    return rc;
  }
  s->port = ntohs(ss.ss_family == AF_INET
                      ? ((struct sockaddr_in *)&ss)->sin_port
                      : ((struct sockaddr_in6 *)&ss)->sin6_port);
  *out = s;
  return 0;
}

int dl_tcp_server_port(const dl_tcp_server *s) { return s->port; }

int dl_tcp_server_pending(const dl_tcp_server *s) { return s->npending; }

void dl_tcp_server_close(dl_tcp_server *s) {
  if (s->closing) return;
  s->closing = 1;
  while (s->pending) over(s->pending);
  uv_close((uv_handle_t *)&s->tcp, srv_closed);
}

/* ------------------------------------------------------------------ */
/* The dialling side                                                   */
/* ------------------------------------------------------------------ */

static void connect_cb(uv_connect_t *req, int status) {
  tlink *l = req->data;
  dl_buf out;
  char u[300];
  if (l->state != L_DIAL) return;
  if (status < 0) {
    if (status != UV_ECANCELED && l->ai && l->ai->ai_next) {
      l->ai = l->ai->ai_next;
      l->retry = 1;
      uv_close((uv_handle_t *)&l->tcp, tcp_closed);
      return;
    }
    url(l, u, sizeof u);
    fail_dial(l, status, "cannot reach %s: %s", u, uv_strerror(status));
    return;
  }
  l->state = L_SHAKE;
  if (l->opts.tls) {
    l->tphase = TP_HELLO; /* the server speaks first, in the clear */
  } else {
    dl_buf_init(&out);
    dl_auth_begin(&l->auth, DL_AUTH_CLIENT, l->opts.token, wire(&l->opts),
                  l->opts.version, &out);
    dl_buf_free(&out);
  }
  if (start_reading(l) != 0) {
    url(l, u, sizeof u);
    fail_dial(l, UV_EIO, "cannot read from %s", u);
  }
}

/* Connect to l->ai (re-entered for the next address after a failure). */
static void start_connect(tlink *l) {
  int rc;
  char u[300];
  for (; l->ai; l->ai = l->ai->ai_next) {
    if (l->ai->ai_family != AF_INET && l->ai->ai_family != AF_INET6) continue;
    uv_tcp_init(l->timer.loop, &l->tcp);
    l->tcp.data = l;
    l->tcp_open = 1;
    l->refs++;
    l->creq.data = l;
    rc = uv_tcp_connect(&l->creq, &l->tcp, l->ai->ai_addr, connect_cb);
    if (rc == 0) return;
    if (l->ai->ai_next == NULL) {
      url(l, u, sizeof u);
      fail_dial(l, rc, "cannot reach %s: %s", u, uv_strerror(rc));
      return;
    }
    l->ai = l->ai->ai_next;
    l->retry = 1;
    uv_close((uv_handle_t *)&l->tcp, tcp_closed);
    return;
  }
  url(l, u, sizeof u);
  fail_dial(l, UV_EAI_ADDRFAMILY, "cannot reach %s: no IPv4 or IPv6 address",
            u);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  tlink *l = req->data;
  l->gai_pending = 0;
  l->res = res;
  l->ai = res;
  if (l->state == L_DIAL) {
    if (status < 0)
      fail_dial(l, status, "cannot resolve '%s': %s", l->host,
                uv_strerror(status));
    else
      start_connect(l);
  }
  unref(l);
}

int dl_tcp_dial(uv_loop_t *loop, const char *host, int port,
                const dl_tcp_opts *opts, unsigned timeout_ms,
                dl_tcp_dial_cb cb, void *ud) {
  struct addrinfo hints;
  char ps[16];
  tlink *l;
  int rc;
  if (strlen(host) >= sizeof l->host || port < 0 || port > 65535)
    return UV_EINVAL;
  l = dl_realloc(NULL, sizeof *l);
  if (l == NULL) return UV_ENOMEM;
  memset(l, 0, sizeof *l);
  l->opts = *opts;
  l->cb = cb;
  l->ud = ud;
  strcpy(l->host, host);
  l->port = port;
  l->timeout_ms = timeout_ms ? timeout_ms : DL_TCP_CONNECT_MS;
  l->state = L_DIAL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(ps, sizeof ps, "%d", port);
  l->gai.data = l;
  rc = uv_getaddrinfo(loop, &l->gai, gai_cb, host, ps, &hints);
  if (rc != 0) {
    dl_free(l);
    return rc;
  }
  l->refs = 2; /* the lookup and the timer */
  l->gai_pending = 1;
  uv_timer_init(loop, &l->timer);
  l->timer.data = l;
  uv_timer_start(&l->timer, shake_timeout, l->timeout_ms, 0);
  return 0;
}

typedef struct sync_result {
  int fd;
  char *err;
  size_t errlen;
} sync_result;

static void sync_cb(int fd, const char *err, void *ud) {
  sync_result *r = ud;
  r->fd = fd;
  if (err) snprintf(r->err, r->errlen, "%s", err);
}

int dl_tcp_dial_sync(const char *host, int port, const dl_tcp_opts *opts,
                     unsigned timeout_ms, int *fd, char *err,
                     size_t errlen) {
  uv_loop_t loop;
  sync_result r;
  int rc;
  r.fd = UV_EINVAL;
  r.err = err;
  r.errlen = errlen;
  *fd = -1;
  if ((rc = uv_loop_init(&loop)) != 0) {
    snprintf(err, errlen, "cannot make a loop: %s", uv_strerror(rc));
    return rc;
  }
  rc = dl_tcp_dial(&loop, host, port, opts, timeout_ms, sync_cb, &r);
  if (rc != 0) {
    snprintf(err, errlen, "cannot dial %s:%d: %s", host, port,
             uv_strerror(rc));
    uv_loop_close(&loop);
    return rc;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (r.fd < 0) return r.fd;
  *fd = r.fd;
  return 0;
}

int dl_tcp_sockname(int fd, struct sockaddr_storage *ss) {
  socklen_t len = sizeof *ss;
  memset(ss, 0, sizeof *ss);
  if (getsockname(fd, (struct sockaddr *)ss, &len) == 0 &&
      (ss->ss_family == AF_INET || ss->ss_family == AF_INET6))
    return 0;
  memset(ss, 0, sizeof *ss);
  return -1;
}

/*
** dl_http.c -- a small non-blocking HTTP/1.1 server.  See dl_http.h.
**
** Each connection owns a TCP handle and an idle timer; it is freed when
** both are closed.  Responses are composed whole into the connection's
** pending buffer and written with one uv_write; while a write is in flight
** further (pipelined) responses wait in the pending buffer.  A large body
** is not copied: the connection takes the handler's buffer as the tail
** that follows pending (a megabyte of task stream per viewer's poll).
*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <http_parser.h>
#include <uv.h>

#include "dl_http.h"

typedef struct conn conn;

struct dl_http {
  uv_loop_t *loop;
  uv_tcp_t listener;
  dl_http_handler handler;
  void *ud;
  conn *conns;
  int nconns;
  int closing;
  int listener_open;
  int moved;
  int max_conns;  /* total, from the descriptor limit (DL_HTTP_MAX_CONNS) */
  int port;       /* the port bound */
  int any;        /* bound to every interface (0.0.0.0 or ::) */
  int loopback;   /* bound to 127.x or ::1 */
  struct sockaddr_storage bound; /* the address bound */
  char address[96];
  char *rbuf; /* reads land here (RBUF bytes, made on the first), owned */
};

/* A read is parsed before the next one starts, and a server's
   connections are all on its loop's thread: one buffer serves them. */
#define RBUF 65536

struct conn {
  dl_http *srv;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wr;
  http_parser parser;
  dl_buf url;      /* the request target, as received */
  dl_buf pending;  /* responses not yet handed to libuv */
  dl_buf tail;     /* a body taken whole, written after pending */
  dl_buf sending;  /* the bytes of the write in flight */
  dl_buf sending_tail; /* and its tail */
  size_t head_bytes, body_bytes;
  int handles;     /* open libuv handles; freed at zero */
  int writing;
  int closing;
  int close_after; /* close once everything is written */
  int failed;      /* a status to answer with instead of the handler's */
  int in_value;    /* reading a header's value (else its name) */
  int in_host;     /* the header being read is Host */
  int nhosts;      /* Host headers seen in this request */
  dl_buf field;    /* the name of the header being read */
  dl_buf host;     /* the Host header's value */
  struct sockaddr_storage peer; /* where the connection comes from */
  conn *prev, *next;
};

static int on_message_begin(http_parser *p);
static int on_url(http_parser *p, const char *at, size_t n);
static int on_header_field(http_parser *p, const char *at, size_t n);
static int on_header_value(http_parser *p, const char *at, size_t n);
static int on_headers_complete(http_parser *p);
static int on_body(http_parser *p, const char *at, size_t n);
static int on_message_complete(http_parser *p);

static const http_parser_settings settings = {
  .on_message_begin = on_message_begin,
  .on_url = on_url,
  .on_header_field = on_header_field,
  .on_header_value = on_header_value,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
};

/* ------------------------------------------------------------ helpers */

const char *dl_http_reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 302: return "Found";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

static void server_free(dl_http *s) {
  dl_free(s->rbuf);
  dl_free(s);
}

static void conn_closed(uv_handle_t *h) {
  conn *c = h->data;
  if (--c->handles > 0) return;
  {
    dl_http *s = c->srv;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    dl_buf_free(&c->url);
    dl_buf_free(&c->field);
    dl_buf_free(&c->host);
    dl_buf_free(&c->pending);
    dl_buf_free(&c->sending);
    dl_buf_free(&c->tail);
    dl_buf_free(&c->sending_tail);
    dl_free(c);
    if (s->closing && s->nconns == 0 && !s->listener_open) server_free(s);
  }
}

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
  uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void idle_cb(uv_timer_t *t) { conn_close(t->data); }

static void write_cb(uv_write_t *req, int status);

/* Hand the pending responses to libuv unless a write is in flight. */
static void conn_flush(conn *c) {
  uv_buf_t b[2];
  dl_buf t;
  if (c->closing || c->writing) return;
  if (c->pending.len == 0) { /* the tail always follows some head */
    if (c->close_after) conn_close(c);
    return;
  }
  t = c->sending;
  c->sending = c->pending;
  c->pending = t;
  c->pending.len = 0;
  t = c->sending_tail;
  c->sending_tail = c->tail;
  c->tail = t;
  c->tail.len = 0;
  b[0] = uv_buf_init(c->sending.p, (unsigned)c->sending.len);
  b[1] = uv_buf_init(c->sending_tail.p, (unsigned)c->sending_tail.len);
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, b,
               c->sending_tail.len ? 2 : 1, write_cb)) {
    conn_close(c);
    return;
  }
  c->writing = 1;
}

static void write_cb(uv_write_t *req, int status) {
  conn *c = req->data;
  c->writing = 0;
  c->sending.len = 0;
  c->sending_tail.len = 0;
  if (status < 0) {
    conn_close(c);
    return;
  }
  conn_flush(c);
}

/* Bodies from this size on are taken, not copied. */
#define TAKE_BODY 4096

/* Queue one whole response; the body of resp is consumed. */
static void respond(conn *c, int head, dl_http_resp *r, int keep) {
  char hdr[512];
  int n;
  if (c->tail.len) { /* a pipelined response: it goes after the tail */
    dl_buf_put(&c->pending, c->tail.p, c->tail.len);
    c->tail.len = 0;
  }
  n = snprintf(hdr, sizeof hdr,
               "HTTP/1.1 %d %s\r\n"
               "Content-Length: %zu\r\n"
               "%s%s%s"
               "%s%s%s"
               "Cache-Control: no-store\r\n"
               "X-Content-Type-Options: nosniff\r\n"
               "Connection: %s\r\n\r\n",
               r->status, dl_http_reason(r->status), r->body.len,
               r->type ? "Content-Type: " : "", r->type ? r->type : "",
               r->type ? "\r\n" : "",
               r->location ? "Location: " : "",
               r->location ? r->location : "", r->location ? "\r\n" : "",
               keep ? "keep-alive" : "close");
  if (n < 0 || (size_t)n >= sizeof hdr) {
    c->close_after = 1;
  } else {
    dl_buf_put(&c->pending, hdr, (size_t)n);
    if (!head && r->body.len >= TAKE_BODY) {
      dl_buf t = c->tail; /* empty: its room goes with the old body */
      c->tail = r->body;
      r->body = t;
    } else if (!head) {
      dl_buf_put(&c->pending, r->body.p, r->body.len);
    }
  }
  if (!keep) c->close_after = 1;
  dl_buf_free(&r->body);
}

/* Answer with an error page and close: used when the request cannot be
   read any further. */
static void fail(conn *c, int status) {
  dl_http_resp r;
  char msg[80];
  int n;
  memset(&r, 0, sizeof r);
  r.status = status;
  r.type = "text/plain; charset=utf-8";
  n = snprintf(msg, sizeof msg, "%d %s\n", status, dl_http_reason(status));
  dl_buf_put(&r.body, msg, (size_t)n);
  respond(c, 0, &r, 0);
  conn_flush(c);
}

/* ------------------------------------------------------------ parsing */

static int on_message_begin(http_parser *p) {
  conn *c = p->data;
  /* A request has DL_HTTP_HEAD_MS from its first byte to be read whole,
     however slowly it trickles in (slowloris). */
  uv_timer_start(&c->timer, idle_cb, DL_HTTP_HEAD_MS, 0);
  c->url.len = 0;
  c->head_bytes = c->body_bytes = 0;
  c->failed = 0;
  c->field.len = c->host.len = 0;
  c->in_value = c->in_host = c->nhosts = 0;
  return 0;
}

static int count_head(conn *c, size_t n) {
  c->head_bytes += n + 4; /* separators and line ends */
  if (c->head_bytes > DL_HTTP_MAX_HEAD) {
    c->failed = 431;
    return 1;
  }
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  conn *c = p->data;
  if (count_head(c, n)) return 1;
  if (dl_buf_put(&c->url, at, n)) {
    c->failed = 500;
    return 1;
  }
  return 0;
}

/* A header's name arrives in parts, and so does its value; only Host's
   value is kept (for host_ok). */
static int on_header_field(http_parser *p, const char *at, size_t n) {
  conn *c = p->data;
  if (count_head(c, n)) return 1;
  if (c->in_value) { /* a new header starts */
    c->in_value = c->in_host = 0;
    c->field.len = 0;
  }
  if (c->field.len + n > 8 || dl_buf_put(&c->field, at, n))
    c->field.len = 9; /* longer than "host": not it */
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  conn *c = p->data;
  if (count_head(c, n)) return 1;
  if (!c->in_value) {
    c->in_value = 1;
    c->in_host = c->field.len == 4 && strncasecmp(c->field.p, "host", 4) == 0;
    c->nhosts += c->in_host;
  }
  if (c->in_host && dl_buf_put(&c->host, at, n)) {
    c->failed = 500;
    return 1;
  }
  return 0;
}

/*
** Whether the Host header names this server, so that a page of another
** site that a DNS name was rebound to us cannot read the dashboard: an
** IP literal we listen on (any one when bound to every interface),
** "localhost" when we listen on the loopback, or this machine's name when
** we listen on every interface; the port must be ours.  A request without
** Host (HTTP/1.0 tools) passes: browsers always send one.
*/
static int host_ok(const dl_http *s, const char *h, size_t n) {
  char name[256], mine[256];
  const char *colon = NULL;
  size_t nl;
  long port = 80;
  unsigned char ip[16], want[16];
  if (n == 0) return 1;
  if (n >= sizeof name) return 0;
  if (h[0] == '[') {
    const char *close = memchr(h, ']', n);
    if (close == NULL) return 0;
    nl = (size_t)(close - h - 1);
    memcpy(name, h + 1, nl);
    if (close + 1 < h + n) {
      if (close[1] != ':') return 0;
      colon = close + 1;
    }
  } else {
    colon = memchr(h, ':', n);
    nl = colon ? (size_t)(colon - h) : n;
    memcpy(name, h, nl);
  }
  name[nl] = 0;
  if (colon) {
    char digits[8], *end;
    size_t dn = (size_t)(h + n - colon - 1);
    if (dn == 0 || dn >= sizeof digits) return 0;
    memcpy(digits, colon + 1, dn);
    digits[dn] = 0;
    port = strtol(digits, &end, 10);
    if (*end || !isdigit((unsigned char)digits[0])) return 0;
  }
  if (port != s->port) return 0;
  if (strcasecmp(name, "localhost") == 0) return s->loopback || s->any;
  if (uv_inet_pton(AF_INET, name, ip) == 0) {
    if (s->any) return 1;
    if (s->bound.ss_family != AF_INET) return 0;
    memcpy(want, &((const struct sockaddr_in *)&s->bound)->sin_addr, 4);
    return memcmp(ip, want, 4) == 0;
  }
  if (uv_inet_pton(AF_INET6, name, ip) == 0) {
    if (s->any) return 1;
    if (s->bound.ss_family != AF_INET6) return 0;
    memcpy(want, &((const struct sockaddr_in6 *)&s->bound)->sin6_addr, 16);
    return memcmp(ip, want, 16) == 0;
  }
  return s->any && gethostname(mine, sizeof mine) == 0 &&
         (mine[sizeof mine - 1] = 0, strcasecmp(name, mine) == 0);
}

static int on_headers_complete(http_parser *p) {
  conn *c = p->data;
  if ((p->flags & F_CHUNKED) == 0 && p->content_length != ULLONG_MAX &&
      p->content_length > DL_HTTP_MAX_BODY) {
    c->failed = 413;
    return -1; /* hard error: stop parsing */
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  conn *c = p->data;
  (void)at;
  c->body_bytes += n;
  if (c->body_bytes > DL_HTTP_MAX_BODY) {
    c->failed = 413;
    return 1;
  }
  return 0;
}

/* The request is complete: answer it. */
static int on_message_complete(http_parser *p) {
  conn *c = p->data;
  dl_http *s = c->srv;
  dl_http_resp r;
  dl_http_req q;
  struct http_parser_url u;
  int keep = http_should_keep_alive(p);
  int head = p->method == HTTP_HEAD;
  char path[2048], query[2048];
  if (c->close_after) return 0; /* a final response is already queued */
  memset(&r, 0, sizeof r);
  r.status = 200;
  path[0] = query[0] = 0;
  http_parser_url_init(&u);
  if (c->nhosts > 1 || !host_ok(s, c->host.p, c->host.len)) {
    r.status = 403; /* another site's name: see host_ok */
  } else if (p->method != HTTP_GET && p->method != HTTP_HEAD) {
    r.status = 405;
  } else if (c->url.len == 0 ||
             http_parser_parse_url(c->url.p, c->url.len, 0, &u) ||
             !(u.field_set & (1 << UF_PATH)) ||
             u.field_data[UF_PATH].len >= sizeof path ||
             ((u.field_set & (1 << UF_QUERY)) &&
              u.field_data[UF_QUERY].len >= sizeof query)) {
    r.status = 400;
  } else {
    memcpy(path, c->url.p + u.field_data[UF_PATH].off,
           u.field_data[UF_PATH].len);
    path[u.field_data[UF_PATH].len] = 0;
    if (u.field_set & (1 << UF_QUERY)) {
      memcpy(query, c->url.p + u.field_data[UF_QUERY].off,
             u.field_data[UF_QUERY].len);
      query[u.field_data[UF_QUERY].len] = 0;
    }
    q.head = head;
    q.path = path;
    q.query = query;
    s->handler(s->ud, &q, &r);
  }
  if (r.status >= 400 && r.body.len == 0) {
    char msg[80];
    int n = snprintf(msg, sizeof msg, "%d %s\n", r.status,
                     dl_http_reason(r.status));
    dl_buf_put(&r.body, msg, (size_t)n);
    r.type = "text/plain; charset=utf-8";
  }
  if (r.status == 405 || r.status == 403) {
    keep = 0; /* its body may not have been read in full */
  }
  respond(c, head, &r, keep);
  /* The next request gets a whole period from now: reads do not extend
     it, so a head sent a byte at a time is dropped (slowloris). */
  uv_timer_start(&c->timer, idle_cb, DL_HTTP_IDLE_MS, 0);
  return 0;
}

/* ------------------------------------------------------------ reading */

/* The server's buffer, made on the first read: not a __thread array, whose
   64 KiB every thread of the process (every worker's too) would get and
   zero when it starts.  Without one, libuv reports UV_ENOBUFS to read_cb,
   which closes the connection. */
static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  dl_http *s = ((conn *)h->data)->srv;
  (void)hint;
  if (s->rbuf == NULL) s->rbuf = dl_realloc(NULL, RBUF);
  buf->base = s->rbuf;
  buf->len = s->rbuf ? RBUF : 0;
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn *c = st->data;
  size_t used;
  if (nread == 0) return;
  if (nread < 0) {
    /* EOF or error: write what is pending, then close. */
    uv_read_stop(st);
    c->close_after = 1;
    conn_flush(c);
    return;
  }
  if (c->close_after) return; /* ignore bytes after a final response */
  used = http_parser_execute(&c->parser, &settings, buf->base,
                             (size_t)nread);
  if (c->parser.http_errno != HPE_OK || used != (size_t)nread ||
      c->parser.upgrade) {
    /* Malformed, too large, or a protocol switch we do not speak: answer
       (unless a final response is already queued) and close. */
    uv_read_stop(st);
    if (c->close_after || c->parser.upgrade) {
      c->close_after = 1;
      conn_flush(c);
    } else {
      fail(c, c->failed ? c->failed : 400);
    }
    return;
  }
  conn_flush(c);
}

/* Whether two peers are the same host (the port aside). */
static int same_host(const struct sockaddr_storage *a,
                     const struct sockaddr_storage *b) {
  if (a->ss_family != b->ss_family) return 0;
  if (a->ss_family == AF_INET)
    return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                  &((const struct sockaddr_in *)b)->sin_addr, 4) == 0;
  if (a->ss_family == AF_INET6)
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
  return 0;
}

/* Whether c may stay open: within the total and per-peer caps. */
static int under_caps(dl_http *s, conn *c) {
  int len = sizeof c->peer, same = 0;
  conn *o;
  if (s->nconns > s->max_conns) return 0;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len))
    return 0;
  for (o = s->conns; o; o = o->next)
    if (o != c && !o->closing && same_host(&o->peer, &c->peer)) same++;
  return same < s->max_conns / 2 && same < DL_HTTP_MAX_PER_PEER;
}

static void accept_cb(uv_stream_t *ls, int status) {
  dl_http *s = ls->data;
  conn *c;
  if (status < 0 || s->closing) return;
  c = dl_realloc(NULL, sizeof *c);
  if (c == NULL) return;
  memset(c, 0, sizeof *c);
  c->srv = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c->timer.data = c->wr.data = c->parser.data = c;
  c->handles = 2;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) || !under_caps(s, c)) {
    conn_close(c); /* accepted to be closed: the backlog stays free */
    return;
  }
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  uv_tcp_nodelay(&c->tcp, 1);
  uv_timer_start(&c->timer, idle_cb, DL_HTTP_IDLE_MS, 0);
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb)) conn_close(c);
}

/* ------------------------------------------------------------ starting */

/* Split "host:port" / "[v6]:port" and fill sa; 0 or a libuv error. */
static int parse_address(const char *a, struct sockaddr_storage *sa,
                         int *port) {
  char host[64];
  const char *colon = strrchr(a, ':');
  const char *h = a;
  size_t hl;
  char *end;
  long p;
  if (colon == NULL) return UV_EINVAL;
  hl = (size_t)(colon - a);
  if (hl >= 2 && a[0] == '[' && a[hl - 1] == ']') {
    h = a + 1;
    hl -= 2;
  }
  if (hl == 0 || hl >= sizeof host) return UV_EINVAL;
  memcpy(host, h, hl);
  host[hl] = 0;
  p = strtol(colon + 1, &end, 10);
  if (colon[1] == 0 || *end != 0 || p < 0 || p > 65535) return UV_EINVAL;
  *port = (int)p;
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  if (uv_ip4_addr(host, (int)p, (struct sockaddr_in *)sa) == 0) return 0;
  if (uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)sa) == 0) return 0;
  return UV_EINVAL;
}

static void set_port(struct sockaddr_storage *sa, int port) {
  if (sa->ss_family == AF_INET6)
    ((struct sockaddr_in6 *)sa)->sin6_port = htons((unsigned short)port);
  else
    ((struct sockaddr_in *)sa)->sin_port = htons((unsigned short)port);
}

static void listener_closed(uv_handle_t *h) {
  dl_http *s = h->data;
  s->listener_open = 0;
  if (s->closing && s->nconns == 0) server_free(s);
}

/* Bind and listen; 0 or a libuv error (the handle is left open). */
static int try_listen(dl_http *s, const struct sockaddr_storage *sa) {
  int rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)sa, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 511, accept_cb);
  return rc;
}

dl_http *dl_http_start(uv_loop_t *loop, const char *address, int fallback,
                       dl_http_handler handler, void *ud, char *err,
                       size_t errlen) {
  dl_http *s;
  struct sockaddr_storage sa, bound;
  int port, rc, len = sizeof bound;
  char host[64];
  memset(&sa, 0, sizeof sa);
  if (parse_address(address, &sa, &port)) {
    snprintf(err, errlen, "bad dashboard address '%.100s' (want host:port "
             "with a numeric IP, e.g. 127.0.0.1:8787)", address);
    return NULL;
  }
  s = dl_realloc(NULL, sizeof *s);
  if (s == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  memset(s, 0, sizeof *s);
  s->loop = loop;
  s->handler = handler;
  s->ud = ud;
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  s->listener_open = 1;
  rc = try_listen(s, &sa);
  if (rc == UV_EADDRINUSE && fallback && port != 0) {
    /* Start again on a fresh socket at port 0.  The failed one may be
       bound already: with SO_REUSEADDR, listen rather than bind fails when
       another process takes the port between the two, and binding that
       socket again is EINVAL. */
    char any[96], h[64];
    dl_http *t;
    s->closing = 1;
    uv_close((uv_handle_t *)&s->listener, listener_closed);
    set_port(&sa, 0);
    if (sa.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&sa, h, sizeof h);
      snprintf(any, sizeof any, "[%s]:0", h);
    } else {
      uv_ip4_name((struct sockaddr_in *)&sa, h, sizeof h);
      snprintf(any, sizeof any, "%s:0", h);
    }
    t = dl_http_start(loop, any, 0, handler, ud, err, errlen);
    if (t) t->moved = 1;
    return t;
  }
  if (rc == 0)
    rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
  if (rc) {
    snprintf(err, errlen, "cannot serve the dashboard on %.100s: %s", address,
             uv_strerror(rc));
    s->closing = 1;
    uv_close((uv_handle_t *)&s->listener, listener_closed);
    return NULL; /* s is freed by the close callback */
  }
  s->bound = bound;
  if (bound.ss_family == AF_INET6) {
    const struct in6_addr *a6 = &((struct sockaddr_in6 *)&bound)->sin6_addr;
    s->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    s->any = IN6_IS_ADDR_UNSPECIFIED(a6);
    s->loopback = IN6_IS_ADDR_LOOPBACK(a6);
  } else {
    uint32_t a4 = ntohl(((struct sockaddr_in *)&bound)->sin_addr.s_addr);
    s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    s->any = a4 == 0;
    s->loopback = (a4 >> 24) == 127;
  }
  {
    /* A quarter of our descriptors at most, so that connections cannot
       starve the cluster of them. */
    struct rlimit rl;
    s->max_conns = DL_HTTP_MAX_CONNS;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur / 4 < (rlim_t)s->max_conns)
      s->max_conns = rl.rlim_cur / 4 > 8 ? (int)(rl.rlim_cur / 4) : 8;
  }
  if (bound.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&bound, host, sizeof host);
    snprintf(s->address, sizeof s->address, "[%s]:%d", host,
             ntohs(((struct sockaddr_in6 *)&bound)->sin6_port));
  } else {
    uv_ip4_name((struct sockaddr_in *)&bound, host, sizeof host);
    snprintf(s->address, sizeof s->address, "%s:%d", host,
             ntohs(((struct sockaddr_in *)&bound)->sin_port));
  }
  return s;
}

const char *dl_http_address(const dl_http *h) { return h->address; }

int dl_http_moved(const dl_http *h) { return h->moved; }

void dl_http_close(dl_http *h) {
  conn *c;
  if (h == NULL || h->closing) return;
  h->closing = 1;
  for (c = h->conns; c; c = c->next) conn_close(c);
  uv_close((uv_handle_t *)&h->listener, listener_closed);
}

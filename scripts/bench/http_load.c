/*
** http_load.c -- keep N HTTP connections busy against one URL.
**
**   http_load [-c conns] [-d seconds] [-n requests] [-i ms] [-p path]
**             host:port
**
** Every connection sends GET path, waits for the whole response (parsed
** with http_parser), waits -i ms, and asks again, until -d seconds have
** passed or it has made -n requests.  Prints one line:
**   requests=R ok=K errors=E answered=A conns=C
** (answered: connections that got at least one 200) and exits 0 only if
** every connection was answered and nothing failed.  Used by
** tests/dashboard_spec.lua and scripts/bench/bench_dashboard.lua.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>
#include <uv.h>

typedef struct client {
  uv_tcp_t tcp;
  uv_connect_t conn;
  uv_write_t wr;
  uv_timer_t pause;
  http_parser parser;
  int sent, answered, done;
} client;

static struct sockaddr_in addr;
static char request[512];
static size_t request_len;
static long max_requests;
static int interval_ms;
static uint64_t deadline;
static long requests, ok, errors;
static http_parser_settings settings;
static char space[65536];

static void send_request(client *c);

static void finish(client *c, int failed) {
  if (c->done) return;
  c->done = 1;
  if (failed) errors++;
  uv_close((uv_handle_t *)&c->tcp, NULL);
  uv_close((uv_handle_t *)&c->pause, NULL);
}

static void pause_cb(uv_timer_t *t) { send_request(t->data); }

static int on_complete(http_parser *p) {
  client *c = p->data;
  if (p->status_code == 200) {
    ok++;
    c->answered = 1;
  } else {
    errors++;
  }
  if ((max_requests > 0 && c->sent >= max_requests) ||
      uv_hrtime() >= deadline) {
    finish(c, 0);
  } else if (interval_ms > 0) {
    uv_timer_start(&c->pause, pause_cb, (uint64_t)interval_ms, 0);
  } else {
    send_request(c);
  }
  return 0;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)h;
  (void)hint;
  b->base = space;
  b->len = sizeof space;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  client *c = s->data;
  if (n == 0 || c->done) return;
  if (n < 0) {
    finish(c, 1);
    return;
  }
  http_parser_execute(&c->parser, &settings, b->base, (size_t)n);
  if (!c->done && c->parser.http_errno != HPE_OK) finish(c, 1);
}

static void write_cb(uv_write_t *w, int status) {
  if (status < 0) finish(w->data, 1);
}

static void send_request(client *c) {
  uv_buf_t b = uv_buf_init(request, (unsigned)request_len);
  if (c->done) return;
  c->sent++;
  requests++;
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, write_cb))
    finish(c, 1);
}

static void connect_cb(uv_connect_t *req, int status) {
  client *c = req->data;
  if (status < 0) {
    finish(c, 1);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
  send_request(c);
}

int main(int argc, char **argv) {
  int conns = 200, i, answered = 0;
  double seconds = 5;
  const char *path = "/json/status", *target = NULL;
  char host[64];
  const char *colon;
  client *cs;
  uv_loop_t *loop = uv_default_loop();
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) conns = atoi(argv[++i]);
    else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc) seconds = atof(argv[++i]);
    else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) max_requests = atol(argv[++i]);
    else if (strcmp(argv[i], "-i") == 0 && i + 1 < argc) interval_ms = atoi(argv[++i]);
    else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) path = argv[++i];
    else target = argv[i];
  }
  colon = target ? strrchr(target, ':') : NULL;
  if (colon == NULL || conns < 1 || (size_t)(colon - target) >= sizeof host) {
    fprintf(stderr, "usage: http_load [-c conns] [-d s] [-n reqs] [-i ms] "
                    "[-p path] host:port\n");
    return 2;
  }
  memcpy(host, target, (size_t)(colon - target));
  host[colon - target] = 0;
  if (uv_ip4_addr(host, atoi(colon + 1), &addr)) {
    fprintf(stderr, "http_load: bad address %s\n", target);
    return 2;
  }
  request_len = (size_t)snprintf(request, sizeof request,
                                 "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path,
                                 target);
  settings.on_message_complete = on_complete;
  deadline = uv_hrtime() + (uint64_t)(seconds * 1e9);
  cs = calloc((size_t)conns, sizeof *cs);
  if (cs == NULL) return 2;
  for (i = 0; i < conns; i++) {
    client *c = &cs[i];
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->pause);
    c->tcp.data = c->conn.data = c->wr.data = c->pause.data = c;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    if (uv_tcp_connect(&c->conn, &c->tcp, (const struct sockaddr *)&addr,
                       connect_cb))
      finish(c, 1);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  for (i = 0; i < conns; i++) answered += cs[i].answered;
  printf("requests=%ld ok=%ld errors=%ld answered=%d conns=%d\n", requests,
         ok, errors, answered, conns);
  free(cs);
  uv_loop_close(loop);
  return errors == 0 && answered == conns ? 0 : 1;
}

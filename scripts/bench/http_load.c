/*
** http_load.c -- keep N HTTP connections busy against one URL.
**
**   http_load [-c conns] [-d seconds] [-n requests] [-i ms] [-p path]...
**             host:port
**
** Every connection sends GET path, waits for the whole response (parsed
** with http_parser), waits -i ms, and asks again, until -d seconds have
** passed, it has made -n requests, or SIGINT / SIGTERM come.  With several
** -p (at most 8), each connection asks for them in turn, as a page that
** polls several endpoints does.  Prints one line:
**   requests=R ok=K errors=E answered=A conns=C p50_ms=.. p90_ms=..
**   p99_ms=.. max_ms=..
** (answered: connections that got at least one 200; the latencies, from
** sending a request to its last byte, of up to 4 million answers) and
** exits 0 only if every connection was answered and nothing failed.  Used
** by tests/dashboard_spec.lua and scripts/bench/bench_dashboard.lua.
*/
#include <signal.h>
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
  uint64_t asked; /* uv_hrtime when the request in flight was sent */
} client;

#define MAX_PATHS 8
#define MAX_LAT ((size_t)4 << 20)

static struct sockaddr_in addr;
static char request[MAX_PATHS][512];
static size_t request_len[MAX_PATHS];
static int npaths;
static double *lat; /* seconds, of the answers so far */
static size_t nlat, caplat;
static client *cs;
static int nconns;
static uv_signal_t sigint, sigterm;
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
  if (nlat == caplat && caplat < MAX_LAT) {
    size_t nc = caplat ? caplat * 2 : 4096;
    double *nl = realloc(lat, nc * sizeof *nl);
    if (nl) {
      lat = nl;
      caplat = nc;
    }
  }
  if (nlat < caplat) lat[nlat++] = (double)(uv_hrtime() - c->asked) * 1e-9;
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
  int k = c->sent % npaths;
  uv_buf_t b = uv_buf_init(request[k], (unsigned)request_len[k]);
  if (c->done) return;
  c->asked = uv_hrtime();
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

/* SIGINT, SIGTERM: stop now (requests in flight are not counted). */
static void stop_cb(uv_signal_t *h, int sig) {
  int i;
  (void)h;
  (void)sig;
  for (i = 0; i < nconns; i++) finish(&cs[i], 0);
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The q-quantile of the sorted latencies, in ms. */
static double quantile_ms(double q) {
  size_t i;
  if (nlat == 0) return 0;
  i = (size_t)(q * (double)(nlat - 1) + 0.5);
  return lat[i] * 1e3;
}

int main(int argc, char **argv) {
  int conns = 200, i, answered = 0;
  double seconds = 5;
  const char *paths[MAX_PATHS], *target = NULL;
  char host[64];
  const char *colon;
  uv_loop_t *loop = uv_default_loop();
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) conns = atoi(argv[++i]);
    else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc) seconds = atof(argv[++i]);
    else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) max_requests = atol(argv[++i]);
    else if (strcmp(argv[i], "-i") == 0 && i + 1 < argc) interval_ms = atoi(argv[++i]);
    else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
      if (npaths == MAX_PATHS) {
        fprintf(stderr, "http_load: at most %d paths\n", MAX_PATHS);
        return 2;
      }
      paths[npaths++] = argv[++i];
    } else target = argv[i];
  }
  if (npaths == 0) paths[npaths++] = "/json/status";
  colon = target ? strrchr(target, ':') : NULL;
  if (colon == NULL || conns < 1 || (size_t)(colon - target) >= sizeof host) {
    fprintf(stderr, "usage: http_load [-c conns] [-d s] [-n reqs] [-i ms] "
                    "[-p path]... host:port\n");
    return 2;
  }
  memcpy(host, target, (size_t)(colon - target));
  host[colon - target] = 0;
  if (uv_ip4_addr(host, atoi(colon + 1), &addr)) {
    fprintf(stderr, "http_load: bad address %s\n", target);
    return 2;
  }
  for (i = 0; i < npaths; i++) {
    int n = snprintf(request[i], sizeof request[i],
                     "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", paths[i], target);
    if (n < 0 || (size_t)n >= sizeof request[i]) {
      fprintf(stderr, "http_load: path too long: %s\n", paths[i]);
      return 2;
    }
    request_len[i] = (size_t)n;
  }
  settings.on_message_complete = on_complete;
  deadline = uv_hrtime() + (uint64_t)(seconds * 1e9);
  cs = calloc((size_t)conns, sizeof *cs);
  if (cs == NULL) return 2;
  nconns = conns;
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigint, stop_cb, SIGINT);
  uv_signal_start(&sigterm, stop_cb, SIGTERM);
  uv_unref((uv_handle_t *)&sigint); /* the clients keep the loop alive */
  uv_unref((uv_handle_t *)&sigterm);
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
  qsort(lat, nlat, sizeof *lat, by_value);
  printf("requests=%ld ok=%ld errors=%ld answered=%d conns=%d p50_ms=%.3f "
         "p90_ms=%.3f p99_ms=%.3f max_ms=%.3f\n", requests, ok, errors,
         answered, conns, quantile_ms(0.5), quantile_ms(0.9),
         quantile_ms(0.99), quantile_ms(1));
  fflush(stdout);
  free(cs);
  free(lat);
  uv_loop_close(loop);
  return errors == 0 && answered == conns ? 0 : 1;
}

/*
** tcp_harness.h -- what test_tcp.c and test_tls.c share: a loop with a
** listening dl_tcp server, callbacks that count and keep accepted and
** dialled sockets and the server's log lines, and running the loop until
** counts are reached (or failing after a deadline).
*/
#ifndef tcp_harness_h
#define tcp_harness_h

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dl_tcp.h"
#include "tap.h"

#define MAXLOG 16

typedef struct ctx {
  uv_loop_t loop;
  uv_timer_t tick;
  dl_tcp_server *srv;
  int accepted, dialled, failed;
  int last_code;
  char last_err[512];
  char log[MAXLOG][512];
  int nlog;
  int sfd, cfd; /* the last accepted and dialled sockets */
  int keep;     /* keep the sockets (else close them at once) */
} ctx;

static dl_token tok_a, tok_b;

static inline void on_log(void *ud, const char *line) {
  ctx *c = ud;
  fprintf(stderr, "# log: %s\n", line);
  CHECK(strchr(line, '\n') == NULL);
  if (c->nlog < MAXLOG) snprintf(c->log[c->nlog], 512, "%s", line);
  c->nlog++;
}

static inline void on_accept(dl_tcp_server *s, int fd, const char *peer,
                             void *d) {
  ctx *c = d;
  (void)s;
  CHECK(fd >= 0 && peer[0] != '\0');
  c->accepted++;
  if (c->keep)
    c->sfd = fd;
  else
    close(fd);
}

static inline void on_dial(int fd, const char *err, void *ud) {
  ctx *c = ud;
  if (fd >= 0) {
    CHECK(err == NULL);
    c->dialled++;
    if (c->keep)
      c->cfd = fd;
    else
      close(fd);
  } else {
    CHECK(err != NULL && strchr(err, '\n') == NULL);
    fprintf(stderr, "# dial: %s\n", err);
    c->failed++;
    c->last_code = fd;
    snprintf(c->last_err, sizeof c->last_err, "%s", err);
  }
}

static inline void tick_cb(uv_timer_t *t) { (void)t; }

static inline dl_tcp_opts opts_for(ctx *c, const dl_token *t,
                                   const dl_tls_ctx *tls) {
  dl_tcp_opts o;
  memset(&o, 0, sizeof o);
  o.token = t;
  o.version = "0.1.0";
  o.log = on_log;
  o.log_ud = c;
  o.tls = tls;
  return o;
}

/* A fresh c with a server on host (any port) that holds token a, with
   tls (or none) and a handshake limit of shake_ms (0: the default). */
static inline void setup(ctx *c, const char *host, const dl_tls_ctx *tls,
                         unsigned shake_ms, int keep) {
  dl_tcp_opts o;
  char err[256];
  memset(c, 0, sizeof *c);
  c->sfd = c->cfd = -1;
  c->keep = keep;
  CHECK(dl_token_set(&tok_a, "token-aaaaaaaaaaaaaaaaaaaa", 26) == 0);
  CHECK(dl_token_set(&tok_b, "token-bbbbbbbbbbbbbbbbbbbb", 26) == 0);
  CHECK(uv_loop_init(&c->loop) == 0);
  uv_timer_init(&c->loop, &c->tick);
  uv_timer_start(&c->tick, tick_cb, 10, 10);
  o = opts_for(c, &tok_a, tls);
  o.handshake_ms = shake_ms;
  CHECK(dl_tcp_listen(&c->srv, &c->loop, host, 0, &o, on_accept, c, err,
                      sizeof err) == 0);
  CHECK(dl_tcp_server_port(c->srv) > 0);
}

/* Run the loop until *a >= na and *b >= nb, or fail after ms. */
static inline void run_until(ctx *c, int *a, int na, int *b, int nb,
                             unsigned ms) {
  uint64_t end;
  uv_update_time(&c->loop);
  end = uv_now(&c->loop) + ms;
  while (*a < na || *b < nb) {
    uv_run(&c->loop, UV_RUN_ONCE);
    if (uv_now(&c->loop) > end) {
      fprintf(stderr, "# timed out waiting: %d/%d %d/%d\n", *a, na, *b, nb);
      CHECK(0);
    }
  }
}

static inline void teardown(ctx *c) {
  dl_tcp_server_close(c->srv);
  uv_close((uv_handle_t *)&c->tick, NULL);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&c->loop) == 0);
  if (c->sfd >= 0) close(c->sfd);
  if (c->cfd >= 0) close(c->cfd);
}

static inline void blocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  CHECK(fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0);
}

/* A plain socket connected to the server, that speaks no handshake. */
static inline int raw_connect(const char *host, int port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  CHECK(inet_pton(AF_INET, host, &a.sin_addr) == 1);
  CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
  return fd;
}

#endif

/*
** dl_dashboard_coord.c -- the dashboard's coordination view (/coord and
** /json/coord): the Variables, Queues, Events, Locks and Semaphores in use
** on the scheduler, who waits on each and who holds its leases: the
** client, or a task by its key and worker (issue 18).
*/
#include <stdio.h>
#include <string.h>

#include "dl_coord.h"
#include "dl_dashboard.h"
#include "dl_server.h"

static const char *op_name(int op) {
  switch (op) {
    case DL_CO_VAR_GET: return "get";
    case DL_CO_Q_PUT:
    case DL_CO_Q_PUSH: return "put";
    case DL_CO_Q_GET: return "get";
    case DL_CO_EV_WAIT: return "wait";
    case DL_CO_SEM_ACQ: return "acquire";
    default: return "?";
  }
}

typedef struct walk {
  dl_buf *b;
  int first;
} walk;

static void lit(dl_buf *b, const char *s) { dl_buf_put(b, s, strlen(s)); }

static void putf(dl_buf *b, const char *fmt, long long a, long long c) {
  char x[96];
  int n = snprintf(x, sizeof x, fmt, a, c);
  if (n > 0)
    dl_buf_put(b, x, (size_t)n < sizeof x ? (size_t)n : sizeof x - 1);
}

static void one(void *ud, const dl_coord_info *p, const dl_coord_party *who,
                int n) {
  walk *w = ud;
  dl_buf *b = w->b;
  int i;
  lit(b, w->first ? "{\"kind\":" : ",{\"kind\":");
  w->first = 0;
  dl_json_str(b, p->kind);
  lit(b, ",\"name\":");
  dl_json_str(b, p->name);
  putf(b, ",\"count\":%lld,\"waiters\":%lld,\"who\":[", p->holders,
       p->waiters);
  for (i = 0; i < n; i++) {
    if (i) lit(b, ",");
    putf(b, "{\"from\":%lld,\"lease\":%lld,\"op\":", who[i].from,
         (long long)who[i].lease);
    dl_json_str(b, who[i].holds ? "holds" : op_name(who[i].op));
    lit(b, ",\"task\":"); /* the task's key; null: the client */
    if (who[i].tlen) dl_json_str(b, who[i].task);
    else lit(b, "null");
    lit(b, "}");
  }
  lit(b, "]}");
}

void dl_dashboard_json_coord(struct dl_server *srv, dl_buf *b) {
  walk w;
  w.b = b;
  w.first = 1;
  lit(b, "{\"primitives\":[");
  dl_server_coord_walk(srv, one, &w);
  lit(b, "]}");
}

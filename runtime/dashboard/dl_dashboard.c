/*
** dl_dashboard.c -- the dashboard's routes.  See dl_dashboard.h.
**
** Every JSON document is written here into a dl_buf.  The scheduler's
** figures are copied out under its lock (dl_server_workers and friends)
** and formatted after the lock is released; nothing here writes to a
** socket.  Snapshots that many clients poll are cached for CACHE_MS, so a
** crowd of dashboards costs the scheduler one snapshot per period.
*/
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "dl_dashboard.h"
#include "dl_map.h"
#include "dl_prof.h"
#include "dl_server.h"

#define CACHE_MS 100
#define GRAPH_CACHE_MS 1000 /* the graph walks every task */
#define MAX_EVENTS 5000

enum { C_STATUS, C_WORKERS, C_METRICS, C_GRAPH, C_PROFILE, C_N };

/*
** The system page's figures: once a second at most, while requests come
** (a page open polls twice a second), the scheduler's process and each
** worker's are read from /proc.  SYS_SAMPLES samples of at most SYS_PROCS
** processes are kept (5 minutes; about 530 KiB, allocated at the first).
*/
#define SYS_SAMPLES 300
#define SYS_PROCS 32

typedef struct sysproc {
  int id;            /* 0: the scheduler, else the worker's id */
  int64_t pid;
  double cpu;        /* seconds of CPU used, user + system */
  int64_t rss, fds;  /* -1: could not be read */
  int64_t rchar, wchar; /* bytes through read/write calls (sockets too) */
} sysproc;

typedef struct syssample {
  double t;
  int n;
  sysproc p[SYS_PROCS];
} syssample;

/*
** The task stream, formatted once for every viewer.  Each event's JSON
** object, with a comma before it, is appended to txt the first time any
** viewer asks past it; off[i] is where event number first + i starts in
** txt and off[n] is txt.len, so any run of events is one slice of txt.
** At most 2 * DL_SCHED_EVENTS are held: when full, the older half is
** dropped with one memmove (appending stays O(1) amortised).  At ~200 B
** an event that is about 4 MiB of text and 160 KiB of offsets.
*/
#define EVTEXT_MAX (2 * DL_SCHED_EVENTS)

typedef struct evtext {
  dl_buf txt;
  size_t *off;    /* EVTEXT_MAX + 1 entries, or NULL before the first */
  uint64_t first; /* the number of the first event held */
  int n;          /* events held */
  uint64_t formatted; /* events ever formatted (a /metrics counter) */
} evtext;

struct dl_dashboard {
  dl_server *srv;
  syssample *sys;   /* ring of SYS_SAMPLES, or NULL */
  uint64_t nsys;    /* samples ever taken */
  dl_http *http;     /* serving it, or NULL */
  char req[128];     /* the address asked for */
  int fallback;
  dl_buf cache[C_N];
  uint64_t cached_at[C_N]; /* uv_hrtime of the snapshot, 0: none */
  dl_sched_event *events;  /* scratch: events copied out of the scheduler */
  evtext ev;               /* /json/stream's formatted events */
  long profile_of;         /* the worker of cache[C_PROFILE] (0: all) */
  long profile_secs;       /* and its window (0: all) */
};

static const char *const state_names[6] = {"waiting", "ready", "processing",
                                           "memory", "erred", "released"};

static double now_s(void) { return (double)uv_hrtime() * 1e-9; }

/* ------------------------------------------------------------ writing */

static void put(dl_buf *b, const char *s) { dl_buf_put(b, s, strlen(s)); }

static void putf(dl_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void putf(dl_buf *b, const char *fmt, ...) {
  char t[512];
  int n;
  va_list ap;
  va_start(ap, fmt);
  n = vsnprintf(t, sizeof t, fmt, ap);
  va_end(ap);
  if (n > 0) dl_buf_put(b, t, (size_t)n < sizeof t ? (size_t)n : sizeof t - 1);
}

static void put_num(dl_buf *b, double v) {
  if (!isfinite(v)) v = 0;
  putf(b, "%.6f", v);
}

int dl_json_str(dl_buf *b, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  if (dl_buf_u8(b, '"')) return DL_ENOMEM;
  for (; *p; p++) {
    char esc[8];
    const char *e = NULL;
    switch (*p) {
      case '"': e = "\\\""; break;
      case '\\': e = "\\\\"; break;
      case '\n': e = "\\n"; break;
      case '\r': e = "\\r"; break;
      case '\t': e = "\\t"; break;
      default:
        if (*p < 0x20 || *p == 0x7f) {
          snprintf(esc, sizeof esc, "\\u%04x", *p);
          e = esc;
        }
    }
    if (e ? dl_buf_put(b, e, strlen(e)) : dl_buf_u8(b, *p)) return DL_ENOMEM;
  }
  return dl_buf_u8(b, '"');
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void prom_label(dl_buf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\\' || *s == '"') {
      dl_buf_u8(b, '\\');
      dl_buf_u8(b, (unsigned char)*s);
    } else if (*s == '\n') {
      put(b, "\\n");
    } else {
      dl_buf_u8(b, (unsigned char)*s);
    }
  }
}

/* ------------------------------------------------------------ snapshots */

typedef struct snap {
  dl_sched_winfo *w;
  int nw;
  dl_sched_group *g;
  int ng;
  int64_t counts[6];
} snap;

static int by_id(const void *a, const void *b) {
  return ((const dl_sched_winfo *)a)->id - ((const dl_sched_winfo *)b)->id;
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const dl_sched_group *)a)->name,
                ((const dl_sched_group *)b)->name);
}

/* Copy workers (and groups, if asked) out of the scheduler; 0 or
   DL_ENOMEM.  Each accessor takes the scheduler's lock for its copy. */
static int take_snap(dl_server *srv, snap *s, int groups) {
  int cap = 16;
  memset(s, 0, sizeof *s);
  for (;;) {
    dl_sched_winfo *w = dl_realloc(s->w, sizeof *w * (size_t)cap);
    if (w == NULL) return DL_ENOMEM;
    s->w = w;
    s->nw = dl_server_workers(srv, s->w, cap);
    if (s->nw <= cap) break;
    cap = s->nw + 8;
  }
  qsort(s->w, (size_t)s->nw, sizeof *s->w, by_id);
  dl_server_counts(srv, s->counts);
  if (!groups) return 0;
  cap = 32;
  for (;;) {
    dl_sched_group *g = dl_realloc(s->g, sizeof *g * (size_t)cap);
    if (g == NULL) return DL_ENOMEM;
    s->g = g;
    s->ng = dl_server_groups(srv, s->g, cap);
    if (s->ng <= cap) break;
    cap = s->ng + 16;
  }
  qsort(s->g, (size_t)s->ng, sizeof *s->g, by_name);
  return 0;
}

static void free_snap(snap *s) {
  dl_free(s->w);
  dl_free(s->g);
}

/* -------------------------------------------------------------- JSON */

static void json_counts(dl_buf *b, const int64_t c[6]) {
  int i;
  for (i = 0; i < 6; i++)
    putf(b, "%s\"%s\":%lld", i ? "," : "", state_names[i], (long long)c[i]);
}

static void json_status(dl_dashboard *d, dl_buf *b) {
  snap s;
  int i;
  if (take_snap(d->srv, &s, 1)) {
    free_snap(&s);
    put(b, "{\"error\":\"out of memory\"}");
    return;
  }
  putf(b, "{\"now\":");
  put_num(b, now_s());
  put(b, ",\"counts\":{");
  json_counts(b, s.counts);
  put(b, "},\"groups\":[");
  for (i = 0; i < s.ng; i++) {
    const dl_sched_group *g = &s.g[i];
    put(b, i ? ",{\"name\":" : "{\"name\":");
    dl_json_str(b, g->name);
    put(b, ",");
    json_counts(b, g->counts);
    /* The live partition: done + erred + processing + waiting + ready =
       total; done counts results held (memory) and results computed and
       since let go (released). */
    putf(b, ",\"done\":%lld,\"failed\":%lld,\"total\":%lld,"
         "\"submitted\":%lld,\"colour\":%d}",
         (long long)(g->counts[3] + g->counts[5]), (long long)g->counts[4],
         (long long)(g->counts[0] + g->counts[1] + g->counts[2] +
                     g->counts[3] + g->counts[4] + g->counts[5]),
         (long long)g->total, g->colour);
  }
  put(b, "],\"fractions\":{");
  {
    double f[4];
    dl_server_memory_fractions(d->srv, f);
    putf(b, "\"target\":%g,\"spill\":%g,\"pause\":%g,\"terminate\":%g}",
         f[0], f[1], f[2], f[3]);
  }
  put(b, ",\"workers\":[");
  for (i = 0; i < s.nw; i++) {
    const dl_sched_winfo *w = &s.w[i];
    putf(b, "%s{\"id\":%d,\"managed\":%lld,\"spilled\":%lld,\"rss\":%lld,"
         "\"limit\":%lld,\"executing\":%d,\"processing\":%d,\"stored\":%d,"
         "\"status\":\"%s\"}",
         i ? "," : "", w->id, (long long)w->managed, (long long)w->spilled,
         (long long)w->rss, (long long)w->memory_limit, w->executing,
         w->inflight, w->stored, dl_sched_status_name(w->status));
  }
  put(b, "]}");
  free_snap(&s);
}

static void json_workers(dl_dashboard *d, dl_buf *b) {
  snap s;
  int i;
  double now = now_s();
  char addr[600];
  if (take_snap(d->srv, &s, 0)) {
    free_snap(&s);
    put(b, "{\"error\":\"out of memory\"}");
    return;
  }
  put(b, "{\"workers\":[");
  for (i = 0; i < s.nw; i++) {
    const dl_sched_winfo *w = &s.w[i];
    snprintf(addr, sizeof addr, "%s/w%d.sock", dl_server_dir(d->srv), w->id);
    putf(b, "%s{\"id\":%d,\"address\":", i ? "," : "", w->id);
    dl_json_str(b, addr);
    put(b, ",\"name\":");
    dl_json_str(b, w->name);
    putf(b, ",\"pid\":%lld,\"cores\":%d,\"memory\":{\"rss\":%lld,"
         "\"managed\":%lld,\"spilled\":%lld,\"limit\":%lld},"
         "\"tasks\":{\"running\":%d,\"processing\":%d,\"stored\":%d},"
         "\"uptime\":",
         (long long)w->pid, w->nthreads, (long long)w->rss,
         (long long)w->managed, (long long)w->spilled,
         (long long)w->memory_limit, w->executing, w->inflight, w->stored);
    put_num(b, now - w->started);
    put(b, ",\"status\":");
    dl_json_str(b, dl_sched_status_name(w->status));
    put(b, "}");
  }
  put(b, "],\"dead\":[");
  { /* the last workers that left, and why */
    dl_sched_winfo gone[DL_SCHED_DEPARTED];
    int n = dl_server_departed(d->srv, gone, DL_SCHED_DEPARTED);
    for (i = 0; i < n; i++) {
      putf(b, "%s{\"id\":%d,\"pid\":%lld,\"status\":\"dead\",\"reason\":",
           i ? "," : "", gone[i].id, (long long)gone[i].pid);
      dl_json_str(b, gone[i].reason);
      put(b, ",\"name\":");
      dl_json_str(b, gone[i].name);
      put(b, "}");
    }
  }
  put(b, "]}");
  free_snap(&s);
}

static void json_info(dl_dashboard *d, dl_buf *b) {
  snap s;
  int i, threads = 0;
  int64_t total = 0;
  const char *dash = d->http ? dl_http_address(d->http) : NULL;
  const char *dlua_v, *lua_v;
  dl_server_versions(d->srv, &dlua_v, &lua_v);
  if (take_snap(d->srv, &s, 0)) {
    free_snap(&s);
    put(b, "{\"error\":\"out of memory\"}");
    return;
  }
  put(b, "{\"scheduler\":");
  {
    char a[600];
    snprintf(a, sizeof a, "local://%s", dl_server_dir(d->srv));
    dl_json_str(b, a);
  }
  put(b, ",\"dashboard\":");
  dl_json_str(b, dash ? dash : "");
  put(b, ",\"processes\":true,\"memory_per_worker\":[");
  for (i = 0; i < s.nw; i++) {
    putf(b, "%s{\"id\":%d,\"limit\":%lld}", i ? "," : "", s.w[i].id,
         (long long)s.w[i].memory_limit);
    total += s.w[i].memory_limit;
    threads += s.w[i].nthreads;
  }
  putf(b, "],\"workers\":%d,\"threads\":%d,\"memory_total\":%lld,", s.nw,
       threads, (long long)total);
  put(b, "\"versions\":{\"dlua\":");
  dl_json_str(b, dlua_v);
  put(b, ",\"lua\":");
  dl_json_str(b, lua_v);
  put(b, ",\"libuv\":");
  dl_json_str(b, uv_version_string());
  put(b, "}}");
  free_snap(&s);
}

/*
** The value of "since" in query (a count of events: 1 to 20 digits, at
** most 2^64 - 1), 0 when absent; -1 when it is anything else.
*/
static int parse_since(const char *query, uint64_t *since) {
  const char *q = query;
  *since = 0;
  while (*q) {
    const char *end = strchr(q, '&');
    size_t len = end ? (size_t)(end - q) : strlen(q);
    if (len >= 6 && strncmp(q, "since=", 6) == 0) {
      uint64_t v = 0;
      size_t i;
      if (len == 6 || len > 26) return -1;
      for (i = 6; i < len; i++) {
        unsigned dgt = (unsigned char)q[i] - '0';
        if (dgt > 9 || v > (UINT64_MAX - dgt) / 10) return -1;
        v = v * 10 + dgt;
      }
      *since = v;
    }
    q += len;
    if (*q == '&') q++;
  }
  return 0;
}

/* /json/stream?since=N; the HTTP status (400 for a bad since). */

/* One task-stream event as a JSON object (the stream and the report). */
static void put_event(dl_buf *b, const dl_sched_event *e) {
  put(b, "{\"key\":");
  dl_json_str(b, e->key);
  put(b, ",\"group\":");
  dl_json_str(b, e->group);
  putf(b, ",\"worker\":%d,\"start\":", e->worker);
  put_num(b, e->start);
  put(b, ",\"stop\":");
  put_num(b, e->stop);
  putf(b, ",\"bytes\":%llu,\"ok\":%s", (unsigned long long)e->nbytes,
       e->ok ? "true" : "false");
  if (!e->ok) {
    put(b, ",\"error\":");
    dl_json_str(b, e->err);
  }
  put(b, "}");
}

/* Drop the k oldest events of x. */
static void evtext_drop(evtext *x, int k) {
  size_t cut = x->off[k];
  int i;
  memmove(x->txt.p, x->txt.p + cut, x->txt.len - cut);
  x->txt.len -= cut;
  for (i = k; i <= x->n; i++) x->off[i - k] = x->off[i] - cut;
  x->first += (uint64_t)k;
  x->n -= k;
}

/*
** Format the events the scheduler recorded since the last call into d->ev
** (only those: each event is formatted once, however many viewers ask).
** When the scheduler's ring has dropped events never formatted (nobody
** asked for a while), the text starts again at its oldest.  0 or
** DL_ENOMEM.
*/
static int stream_pull(dl_dashboard *d) {
  evtext *x = &d->ev;
  int n, i;
  if (d->events == NULL &&
      (d->events = dl_realloc(NULL, sizeof *d->events * MAX_EVENTS)) == NULL)
    return DL_ENOMEM;
  if (x->off == NULL) {
    if ((x->off = dl_realloc(NULL, sizeof *x->off * (EVTEXT_MAX + 1))) ==
        NULL)
      return DL_ENOMEM;
    x->off[0] = 0;
  }
  do {
    uint64_t want = x->first + (uint64_t)x->n, next = want;
    n = dl_server_events(d->srv, want, d->events, MAX_EVENTS, &next);
    if (next - (uint64_t)n != want) { /* a gap: start again after it */
      x->txt.len = 0;
      x->first = next - (uint64_t)n;
      x->n = 0;
      x->off[0] = 0;
    }
    for (i = 0; i < n; i++) {
      if (x->n == EVTEXT_MAX) evtext_drop(x, EVTEXT_MAX - DL_SCHED_EVENTS);
      put(&x->txt, ",");
      put_event(&x->txt, &d->events[i]);
      x->off[++x->n] = x->txt.len;
      x->formatted++;
    }
  } while (n == MAX_EVENTS);
  return 0;
}

static int json_stream(dl_dashboard *d, const char *query, dl_buf *b) {
  const evtext *x = &d->ev;
  uint64_t since, end, oldest, stop;
  if (parse_since(query, &since)) {
    put(b, "{\"error\":\"since must be a number of events (0 or more)\"}");
    return 400;
  }
  if (stream_pull(d)) {
    put(b, "{\"error\":\"out of memory\"}");
    return 503;
  }
  /* As the scheduler's ring: at most the last DL_SCHED_EVENTS, and at most
     MAX_EVENTS an answer; a since past the end gets none and itself. */
  end = x->first + (uint64_t)x->n;
  oldest = end > DL_SCHED_EVENTS ? end - DL_SCHED_EVENTS : 0;
  if (oldest < x->first) oldest = x->first;
  if (since < oldest) since = oldest;
  if (since >= end)
    stop = since;
  else
    stop = end - since > MAX_EVENTS ? since + MAX_EVENTS : end;
  put(b, "{\"now\":");
  put_num(b, now_s());
  putf(b, ",\"next\":%llu,\"events\":[", (unsigned long long)stop);
  if (stop > since) {
    size_t a = x->off[since - x->first], z = x->off[stop - x->first];
    dl_buf_put(b, x->txt.p + a + 1, z - a - 1); /* without the first comma */
  }
  put(b, "]}");
  return 200;
}

/* ------------------------------------------------------------- graph */

/* Up to this many tasks the graph shows each one; past it, one node per
   task group with the tasks' states summed, and edges between groups. */
#define GRAPH_MAX 2000

typedef struct gnode {
  const void *id;
  size_t key, group; /* offsets into the walk's strings */
  int state, worker;
} gnode;

typedef struct ggroup {
  char name[DL_SCHED_NAMELEN];
  int64_t counts[6];
  int idx;
} ggroup;

typedef struct gedge {
  int ab[2];   /* group indices: the key of edges */
  int64_t n;
} gedge;

typedef struct gwalk {
  int grouped, oom;
  dl_buf strs;             /* NUL-terminated keys and names */
  gnode *nodes;
  size_t nnodes, capnodes;
  const void **edges;      /* pairs (dependency, dependent) */
  size_t nedges, capedges;
  dl_map groups;           /* name -> ggroup */
  ggroup **glist;
  int ngroups;
  dl_map gedges;           /* ab -> gedge */
} gwalk;

static int grow(void **p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return 0;
  {
    size_t nc = *cap ? *cap * 2 : 256;
    void *np;
    while (nc < need) nc *= 2;
    np = dl_realloc(*p, nc * size);
    if (np == NULL) return DL_ENOMEM;
    *p = np;
    *cap = nc;
  }
  return 0;
}

static ggroup *walk_group(gwalk *w, const char *name) {
  size_t n = strlen(name);
  ggroup *g = dl_map_get(&w->groups, name, n);
  ggroup **gl;
  if (g) return g;
  g = dl_realloc(NULL, sizeof *g);
  gl = dl_realloc(w->glist, sizeof *gl * (size_t)(w->ngroups + 1));
  if (gl) w->glist = gl;
  if (g == NULL || gl == NULL) {
    dl_free(g);
    w->oom = 1;
    return NULL;
  }
  memset(g, 0, sizeof *g);
  snprintf(g->name, sizeof g->name, "%s", name);
  g->idx = w->ngroups;
  if (dl_map_put(&w->groups, g->name, strlen(g->name), g)) {
    dl_free(g);
    w->oom = 1;
    return NULL;
  }
  w->glist[w->ngroups++] = g;
  return g;
}

/* Called under the scheduler's lock: copy what the graph needs. */
static void walk_task(void *ud, const dl_sched_tinfo *t) {
  gwalk *w = ud;
  int i;
  if (w->oom) return;
  if (w->grouped) {
    ggroup *g = walk_group(w, t->group), *d;
    if (g == NULL) return;
    g->counts[t->state]++;
    for (i = 0; i < t->ndeps; i++) {
      gedge *e;
      int ab[2];
      if ((d = walk_group(w, t->dep_group(t, i))) == NULL) return;
      if (d == g) continue;
      ab[0] = d->idx;
      ab[1] = g->idx;
      e = dl_map_get(&w->gedges, (const char *)ab, sizeof ab);
      if (e == NULL) {
        e = dl_realloc(NULL, sizeof *e);
        if (e == NULL) { w->oom = 1; return; }
        memcpy(e->ab, ab, sizeof ab);
        e->n = 0;
        if (dl_map_put(&w->gedges, (const char *)e->ab, sizeof e->ab, e)) {
          dl_free(e);
          w->oom = 1;
          return;
        }
      }
      e->n++;
    }
    return;
  }
  if (w->nnodes >= GRAPH_MAX * 2) return; /* it grew since the count */
  if (grow((void **)&w->nodes, &w->capnodes, w->nnodes + 1, sizeof *w->nodes) ||
      grow((void **)&w->edges, &w->capedges, w->nedges + 2 * (size_t)t->ndeps,
           sizeof *w->edges)) {
    w->oom = 1;
    return;
  }
  {
    gnode *n = &w->nodes[w->nnodes++];
    n->id = t->id;
    n->state = t->state;
    n->worker = t->state == 2 ? t->worker : t->nwho > 0 ? t->who[0] : -1;
    n->key = w->strs.len;
    dl_buf_put(&w->strs, t->key, strlen(t->key) + 1);
    n->group = w->strs.len;
    dl_buf_put(&w->strs, t->group, strlen(t->group) + 1);
  }
  for (i = 0; i < t->ndeps; i++) {
    w->edges[w->nedges++] = t->deps[i];
    w->edges[w->nedges++] = t->id;
  }
}

static void json_graph(dl_dashboard *d, dl_buf *b) {
  gwalk w;
  int64_t c[6], n;
  size_t i;
  memset(&w, 0, sizeof w);
  dl_map_init(&w.groups);
  dl_map_init(&w.gedges);
  dl_server_counts(d->srv, c);
  n = c[0] + c[1] + c[2] + c[3] + c[4] + c[5];
  w.grouped = n > GRAPH_MAX;
  dl_server_each_task(d->srv, walk_task, &w);
  if (w.oom) {
    put(b, "{\"error\":\"out of memory\"}");
    goto done;
  }
  if (w.grouped) {
    size_t k = 0;
    gedge *e;
    int first = 1;
    putf(b, "{\"mode\":\"groups\",\"tasks\":%lld,\"max\":%d,\"nodes\":[",
         (long long)n, GRAPH_MAX);
    for (i = 0; i < (size_t)w.ngroups; i++) {
      const ggroup *g = w.glist[i];
      int64_t sum = 0;
      int s, best = 0;
      for (s = 0; s < 6; s++) {
        sum += g->counts[s];
        if (g->counts[s] > g->counts[best]) best = s;
      }
      put(b, i ? ",{\"k\":" : "{\"k\":");
      dl_json_str(b, g->name);
      put(b, ",\"g\":");
      dl_json_str(b, g->name);
      putf(b, ",\"s\":%d,\"n\":%lld,\"counts\":[%lld,%lld,%lld,%lld,%lld,"
           "%lld]}", best, (long long)sum, (long long)g->counts[0],
           (long long)g->counts[1], (long long)g->counts[2],
           (long long)g->counts[3], (long long)g->counts[4],
           (long long)g->counts[5]);
    }
    put(b, "],\"edges\":[");
    while ((e = dl_map_next(&w.gedges, &k)) != NULL) {
      putf(b, "%s[%d,%d,%lld]", first ? "" : ",", e->ab[0], e->ab[1],
           (long long)e->n);
      first = 0;
    }
    put(b, "]}");
  } else {
    dl_map ids;
    int first = 1;
    dl_map_init(&ids);
    for (i = 0; i < w.nnodes; i++)
      if (dl_map_put(&ids, (const char *)&w.nodes[i].id, sizeof(void *),
                     &w.nodes[i])) {
        dl_map_free(&ids);
        put(b, "{\"error\":\"out of memory\"}");
        goto done;
      }
    putf(b, "{\"mode\":\"tasks\",\"tasks\":%lld,\"max\":%d,\"nodes\":[",
         (long long)w.nnodes, GRAPH_MAX);
    for (i = 0; i < w.nnodes; i++) {
      const gnode *g = &w.nodes[i];
      put(b, i ? ",{\"k\":" : "{\"k\":");
      dl_json_str(b, w.strs.p + g->key);
      put(b, ",\"g\":");
      dl_json_str(b, w.strs.p + g->group);
      putf(b, ",\"s\":%d,\"w\":%d}", g->state, g->worker);
    }
    put(b, "],\"edges\":[");
    for (i = 0; i + 1 < w.nedges; i += 2) {
      gnode *a = dl_map_get(&ids, (const char *)&w.edges[i], sizeof(void *));
      gnode *z = dl_map_get(&ids, (const char *)&w.edges[i + 1],
                            sizeof(void *));
      if (a == NULL || z == NULL) continue;
      putf(b, "%s[%d,%d]", first ? "" : ",", (int)(a - w.nodes),
           (int)(z - w.nodes));
      first = 0;
    }
    put(b, "]}");
    dl_map_free(&ids);
  }
done:
  {
    size_t k = 0;
    void *v;
    while ((v = dl_map_next(&w.gedges, &k)) != NULL) dl_free(v);
    for (i = 0; i < (size_t)w.ngroups; i++) dl_free(w.glist[i]);
  }
  dl_map_free(&w.groups);
  dl_map_free(&w.gedges);
  dl_free(w.glist);
  dl_free(w.nodes);
  dl_free(w.edges);
  dl_buf_free(&w.strs);
}

/* ------------------------------------------------------------ workers */

/* The value of name=N in query (an integer); 0 when absent or bad. */
static int query_int(const char *query, const char *name, long *v) {
  size_t n = strlen(name);
  const char *q = query;
  while (q && *q) {
    if (strncmp(q, name, n) == 0 && q[n] == '=') {
      char *end;
      *v = strtol(q + n + 1, &end, 10);
      return end != q + n + 1 && (*end == '\0' || *end == '&');
    }
    q = strchr(q, '&');
    if (q) q++;
  }
  return 0;
}

#define WORKER_KEYS 50 /* keys listed per kind on a worker's page */
#define WORKER_LOGS 100 /* its last lines of output shown */

typedef struct wkey {
  char key[DL_SCHED_KEYLEN];
  uint64_t nbytes;
} wkey;

typedef struct wwalk {
  int wid;
  int64_t nassigned, nstored;
  uint64_t stored_bytes;
  wkey assigned[WORKER_KEYS];
  wkey stored[WORKER_KEYS]; /* the largest, largest first */
  int nkeep;
} wwalk;

static void walk_worker(void *ud, const dl_sched_tinfo *t) {
  wwalk *w = ud;
  int i, j;
  if (t->state == 2 && t->worker == w->wid) {
    if (w->nassigned < WORKER_KEYS) {
      wkey *k = &w->assigned[w->nassigned];
      snprintf(k->key, sizeof k->key, "%s", t->key);
      k->nbytes = 0;
    }
    w->nassigned++;
  }
  for (i = 0; i < t->nwho; i++)
    if (t->who[i] == w->wid) break;
  if (i == t->nwho) return;
  w->nstored++;
  w->stored_bytes += t->nbytes;
  /* insert into the sorted list of the largest */
  for (j = w->nkeep; j > 0 && w->stored[j - 1].nbytes < t->nbytes; j--)
    ;
  if (j >= WORKER_KEYS) return;
  if (w->nkeep < WORKER_KEYS) w->nkeep++;
  memmove(&w->stored[j + 1], &w->stored[j],
          sizeof w->stored[0] * (size_t)(w->nkeep - 1 - j));
  snprintf(w->stored[j].key, sizeof w->stored[j].key, "%s", t->key);
  w->stored[j].nbytes = t->nbytes;
}

/* /json/worker?id=N: one worker's tasks, largest results and history;
   the HTTP status. */
static int json_worker(dl_dashboard *d, const char *query, dl_buf *b) {
  long id;
  snap s;
  const dl_sched_winfo *w = NULL;
  wwalk *ww;
  dl_sched_sample *h;
  dl_server_log *logs;
  int i, nh, nl;
  if (!query_int(query, "id", &id) || id <= 0 || id > 1000000) {
    put(b, "{\"error\":\"id must name a worker (a number)\"}");
    return 400;
  }
  if (take_snap(d->srv, &s, 0)) {
    free_snap(&s);
    put(b, "{\"error\":\"out of memory\"}");
    return 503;
  }
  for (i = 0; i < s.nw; i++)
    if (s.w[i].id == id) w = &s.w[i];
  if (w == NULL) {
    free_snap(&s);
    putf(b, "{\"error\":\"no worker %ld\"}", id);
    return 404;
  }
  ww = dl_realloc(NULL, sizeof *ww);
  h = dl_realloc(NULL, sizeof *h * DL_SCHED_HISTORY);
  logs = dl_realloc(NULL, sizeof *logs * WORKER_LOGS);
  if (ww == NULL || h == NULL || logs == NULL) {
    dl_free(ww);
    dl_free(h);
    dl_free(logs);
    free_snap(&s);
    put(b, "{\"error\":\"out of memory\"}");
    return 503;
  }
  memset(ww, 0, sizeof *ww);
  ww->wid = (int)id;
  dl_server_each_task(d->srv, walk_worker, ww);
  nh = dl_server_history(d->srv, (int)id, h, DL_SCHED_HISTORY);
  putf(b, "{\"now\":");
  put_num(b, now_s());
  putf(b, ",\"id\":%d,\"pid\":%lld,\"cores\":%d,\"status\":\"%s\","
       "\"memory\":{\"rss\":%lld,\"managed\":%lld,\"spilled\":%lld,"
       "\"limit\":%lld},\"executing\":%d,\"uptime\":",
       w->id, (long long)w->pid, w->nthreads, dl_sched_status_name(w->status),
       (long long)w->rss, (long long)w->managed, (long long)w->spilled,
       (long long)w->memory_limit, w->executing);
  put_num(b, now_s() - w->started);
  putf(b, ",\"name\":");
  dl_json_str(b, w->name);
  putf(b, ",\"spill_error\":");
  dl_json_str(b, w->spill_err);
  putf(b, ",\"io\":{\"spill_out\":%lld,\"spill_in\":%lld,\"xfer_in\":%lld,"
       "\"xfer_out\":%lld}", (long long)w->spill_out, (long long)w->spill_in,
       (long long)w->xfer_in, (long long)w->xfer_out);
  putf(b, ",\"assigned\":{\"count\":%lld,\"keys\":[",
       (long long)ww->nassigned);
  for (i = 0; i < ww->nassigned && i < WORKER_KEYS; i++) {
    if (i) put(b, ",");
    dl_json_str(b, ww->assigned[i].key);
  }
  putf(b, "]},\"stored\":{\"count\":%lld,\"bytes\":%llu,\"largest\":[",
       (long long)ww->nstored, (unsigned long long)ww->stored_bytes);
  for (i = 0; i < ww->nkeep; i++) {
    put(b, i ? ",{\"key\":" : "{\"key\":");
    dl_json_str(b, ww->stored[i].key);
    putf(b, ",\"bytes\":%llu}", (unsigned long long)ww->stored[i].nbytes);
  }
  put(b, "]},\"history\":[");
  for (i = 0; i < nh; i++) {
    putf(b, "%s[", i ? "," : "");
    put_num(b, h[i].t);
    putf(b, ",%lld,%lld,%lld,%d,%d,%lld,%lld,%lld,%lld]",
         (long long)h[i].managed, (long long)h[i].spilled,
         (long long)h[i].rss, h[i].executing, h[i].stored,
         (long long)h[i].spill_out, (long long)h[i].spill_in,
         (long long)h[i].xfer_in, (long long)h[i].xfer_out);
  }
  /* Its last lines of output, oldest first. */
  nl = dl_server_logs(d->srv, (int)id, logs, WORKER_LOGS);
  put(b, "],\"logs\":[");
  for (i = nl - 1; i >= 0; i--) {
    putf(b, "%s[", i < nl - 1 ? "," : "");
    put_num(b, logs[i].t);
    putf(b, ",%d,", logs[i].fd);
    dl_json_str(b, logs[i].text);
    put(b, "]");
  }
  put(b, "]}");
  dl_free(ww);
  dl_free(h);
  dl_free(logs);
  free_snap(&s);
  return 200;
}

/* ------------------------------------------------------------ profile */

#define PROFILE_TOP 25 /* functions listed by their own samples */

typedef struct ptop {
  const char *name; /* borrowed from the tree */
  uint64_t self;
} ptop;

static int by_self(const void *a, const void *b) {
  const ptop *x = a, *y = b;
  return x->self < y->self ? 1 : x->self > y->self ? -1
                                                     : strcmp(x->name, y->name);
}

/*
** /json/profile?worker=N&seconds=S (worker 0 or absent: every worker;
** seconds absent: since the cluster started, else the samples that came
** in the last S seconds): {"now", "worker", "seconds" (0: all),
** "complete" (false when the window reaches past the log the scheduler
** keeps), "samples", "nodes": [[parent, name, self], ...] (node 0 the
** root, each after its parent; the root's children are task groups),
** "top": [{"name", "self"}, ...] (the functions with the most samples
** stopped in them)}.  The HTTP status.
*/
static int json_profile(dl_dashboard *d, long wid, long secs, dl_buf *b) {
  dl_prof *p = dl_prof_new(DL_SCHED_PROF_NODES);
  dl_map byname;
  ptop *top = NULL;
  int i, n, ntop = 0, *depth = NULL, rc = 200, part;
  double now = now_s();
  dl_map_init(&byname);
  if (p == NULL) goto oom;
  part = dl_server_profile(d->srv, (int)wid, secs > 0 ? now - secs : -1, p);
  if (part < 0) {
    putf(b, "{\"error\":\"no worker %ld\"}", wid);
    rc = 404;
    goto done;
  }
  n = dl_prof_size(p);
  depth = dl_realloc(NULL, sizeof *depth * (size_t)n);
  top = dl_realloc(NULL, sizeof *top * (size_t)n);
  if (depth == NULL || top == NULL) goto oom;
  putf(b, "{\"now\":");
  put_num(b, now);
  putf(b, ",\"worker\":%ld,\"seconds\":%ld,\"complete\":%s,"
       "\"samples\":%llu,\"nodes\":[", wid, secs, part ? "false" : "true",
       (unsigned long long)dl_prof_samples(p));
  for (i = 0; i < n; i++) {
    int parent;
    uint64_t self;
    const char *name = dl_prof_node(p, i, &parent, &self);
    depth[i] = parent < 0 ? 0 : depth[parent] + 1;
    putf(b, "%s[%d,", i ? "," : "", parent);
    dl_json_str(b, name);
    putf(b, ",%llu]", (unsigned long long)self);
    if (depth[i] >= 2 && self > 0) { /* a function, not a group */
      ptop *t = dl_map_get(&byname, name, strlen(name));
      if (t == NULL) {
        t = &top[ntop++];
        t->name = name;
        t->self = 0;
        if (dl_map_put(&byname, name, strlen(name), t)) goto oom;
      }
      t->self += self;
    }
  }
  put(b, "],\"top\":[");
  qsort(top, (size_t)ntop, sizeof *top, by_self);
  for (i = 0; i < ntop && i < PROFILE_TOP; i++) {
    put(b, i ? ",{\"name\":" : "{\"name\":");
    dl_json_str(b, top[i].name);
    putf(b, ",\"self\":%llu}", (unsigned long long)top[i].self);
  }
  put(b, "]}");
  goto done;
oom:
  b->len = 0;
  put(b, "{\"error\":\"out of memory\"}");
  rc = 503;
done:
  dl_map_free(&byname);
  dl_free(top);
  dl_free(depth);
  dl_prof_free(p);
  return rc;
}

/* ------------------------------------------------------------- system */

/* Read one process's figures from /proc; 0, or -1 when it is gone. */
static int read_proc(int64_t pid, sysproc *p) {
  char path[64], buf[1024];
  FILE *f;
  size_t n;
  long ticks = sysconf(_SC_CLK_TCK);
  p->pid = pid;
  p->cpu = 0;
  p->rss = p->fds = p->rchar = p->wchar = -1;
  snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
  if ((f = fopen(path, "re")) == NULL) return -1;
  n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  {
    /* after "pid (comm) ": state is field 3; utime, stime are 14, 15;
       rss (pages) is 24 */
    const char *q = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    long long rss = 0;
    if (q && sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                    "%llu %llu %*d %*d %*d %*d %*d %*d %*u %*u %lld",
                    &ut, &st, &rss) == 3) {
      p->cpu = (double)(ut + st) / (double)(ticks > 0 ? ticks : 100);
      p->rss = rss * sysconf(_SC_PAGESIZE);
    }
  }
  snprintf(path, sizeof path, "/proc/%lld/fd", (long long)pid);
  {
    DIR *dir = opendir(path);
    if (dir) {
      struct dirent *e;
      int64_t c = 0;
      while ((e = readdir(dir)) != NULL)
        if (e->d_name[0] != '.') c++;
      closedir(dir);
      p->fds = c;
    }
  }
  snprintf(path, sizeof path, "/proc/%lld/io", (long long)pid);
  if ((f = fopen(path, "re")) != NULL) {
    char line[128];
    while (fgets(line, sizeof line, f)) {
      long long v;
      if (sscanf(line, "rchar: %lld", &v) == 1) p->rchar = v;
      else if (sscanf(line, "wchar: %lld", &v) == 1) p->wchar = v;
    }
    fclose(f);
  }
  return 0;
}

/* Take a system sample if the last is a second old or more. */
static void sample_system(dl_dashboard *d) {
  double now = now_s();
  syssample *x;
  snap s;
  int i;
  if (d->nsys && now - d->sys[(d->nsys - 1) % SYS_SAMPLES].t < 1.0) return;
  if (d->sys == NULL &&
      (d->sys = dl_realloc(NULL, sizeof *d->sys * SYS_SAMPLES)) == NULL)
    return;
  if (take_snap(d->srv, &s, 0)) {
    free_snap(&s);
    return;
  }
  x = &d->sys[d->nsys % SYS_SAMPLES];
  x->t = now;
  x->n = 0;
  if (read_proc((int64_t)getpid(), &x->p[0]) == 0) {
    x->p[0].id = 0;
    x->n = 1;
  }
  for (i = 0; i < s.nw && x->n < SYS_PROCS; i++)
    if (read_proc(s.w[i].pid, &x->p[x->n]) == 0) x->p[x->n++].id = s.w[i].id;
  d->nsys++;
  free_snap(&s);
}

/* /json/system: the samples kept, oldest first. */
static void json_system(dl_dashboard *d, dl_buf *b) {
  uint64_t i, first;
  sample_system(d);
  first = d->nsys > SYS_SAMPLES ? d->nsys - SYS_SAMPLES : 0;
  putf(b, "{\"now\":");
  put_num(b, now_s());
  putf(b, ",\"cores\":%ld,\"samples\":[", sysconf(_SC_NPROCESSORS_ONLN));
  for (i = first; i < d->nsys; i++) {
    const syssample *x = &d->sys[i % SYS_SAMPLES];
    int k;
    put(b, i > first ? ",{\"t\":" : "{\"t\":");
    put_num(b, x->t);
    put(b, ",\"procs\":[");
    for (k = 0; k < x->n; k++) {
      const sysproc *p = &x->p[k];
      putf(b, "%s[%d,%lld,%.3f,%lld,%lld,%lld,%lld]", k ? "," : "", p->id,
           (long long)p->pid, p->cpu, (long long)p->rss, (long long)p->fds,
           (long long)p->rchar, (long long)p->wchar);
    }
    put(b, "]}");
  }
  put(b, "]}");
}

/* ------------------------------------------------------------ metrics */

/* One Prometheus counter with a sample per task group: the int64_t field
   at offset in dl_sched_group. */
static void prom_group_counter(dl_buf *b, const snap *s, const char *name,
                               const char *help, size_t offset) {
  int i;
  putf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
  for (i = 0; i < s->ng; i++) {
    int64_t v;
    memcpy(&v, (const char *)&s->g[i] + offset, sizeof v);
    putf(b, "%s{group=\"", name);
    prom_label(b, s->g[i].name);
    putf(b, "\"} %lld\n", (long long)v);
  }
}

static void metrics(dl_dashboard *d, dl_buf *b) {
  snap s;
  int i, j;
  static const char *const kinds[4] = {"managed", "spilled", "rss", "limit"};
  if (take_snap(d->srv, &s, 1)) {
    free_snap(&s);
    return;
  }
  put(b, "# HELP dlua_tasks Tasks known to the scheduler, by state.\n"
         "# TYPE dlua_tasks gauge\n");
  for (i = 0; i < 6; i++)
    putf(b, "dlua_tasks{state=\"%s\"} %lld\n", state_names[i],
         (long long)s.counts[i]);
  put(b, "# HELP dlua_workers Workers connected to the scheduler.\n"
         "# TYPE dlua_workers gauge\n");
  putf(b, "dlua_workers %d\n", s.nw);
  put(b, "# HELP dlua_worker_memory_bytes Worker memory: managed (stored "
         "results), spilled (on disk), rss (process), limit.\n"
         "# TYPE dlua_worker_memory_bytes gauge\n");
  for (i = 0; i < s.nw; i++) {
    const dl_sched_winfo *w = &s.w[i];
    int64_t v[4] = {w->managed, w->spilled, w->rss, w->memory_limit};
    for (j = 0; j < 4; j++)
      putf(b, "dlua_worker_memory_bytes{worker=\"%d\",kind=\"%s\"} %lld\n",
           w->id, kinds[j], (long long)v[j]);
  }
  put(b, "# HELP dlua_worker_tasks Tasks on a worker: executing, processing "
         "(assigned), stored (results held).\n"
         "# TYPE dlua_worker_tasks gauge\n");
  for (i = 0; i < s.nw; i++) {
    const dl_sched_winfo *w = &s.w[i];
    putf(b, "dlua_worker_tasks{worker=\"%d\",state=\"executing\"} %d\n"
         "dlua_worker_tasks{worker=\"%d\",state=\"processing\"} %d\n"
         "dlua_worker_tasks{worker=\"%d\",state=\"stored\"} %d\n",
         w->id, w->executing, w->id, w->inflight, w->id, w->stored);
  }
  prom_group_counter(b, &s, "dlua_group_tasks_total",
                     "Tasks ever submitted, by group.",
                     offsetof(dl_sched_group, total));
  prom_group_counter(b, &s, "dlua_group_tasks_done_total",
                     "Tasks computed, by group.",
                     offsetof(dl_sched_group, done));
  prom_group_counter(b, &s, "dlua_group_tasks_erred_total",
                     "Tasks failed, by group.",
                     offsetof(dl_sched_group, erred));
  put(b, "# HELP dlua_dashboard_stream_events_formatted_total Task-stream "
         "events formatted as JSON for /json/stream (each once, however "
         "many viewers ask).\n"
         "# TYPE dlua_dashboard_stream_events_formatted_total counter\n");
  putf(b, "dlua_dashboard_stream_events_formatted_total %llu\n",
       (unsigned long long)d->ev.formatted);
  free_snap(&s);
}

/* ------------------------------------------------------------ routing */

static const dl_asset *find_asset(const char *name) {
  const dl_asset *a;
  for (a = dl_assets; a->name; a++)
    if (strcmp(a->name, name) == 0) return a;
  return NULL;
}

/* The profile of worker wid (0: all), rebuilt at most once a second: the
   merge runs under the scheduler's lock.  The HTTP status. */
static int profile(dl_dashboard *d, long wid, long secs, dl_buf *out) {
  uint64_t now = uv_hrtime();
  int rc = 200;
  if (d->cached_at[C_PROFILE] == 0 || d->profile_of != wid ||
      d->profile_secs != secs ||
      now - d->cached_at[C_PROFILE] > GRAPH_CACHE_MS * 1000000ull) {
    d->cache[C_PROFILE].len = 0;
    rc = json_profile(d, wid, secs, &d->cache[C_PROFILE]);
    d->cached_at[C_PROFILE] = rc == 200 ? now : 0;
    d->profile_of = wid;
    d->profile_secs = secs;
  }
  dl_buf_put(out, d->cache[C_PROFILE].p, d->cache[C_PROFILE].len);
  return rc;
}

/* Serve a cached snapshot of kind k, rebuilding it when stale. */
static void cached(dl_dashboard *d, int k, void (*make)(dl_dashboard *,
                                                        dl_buf *),
                   dl_buf *out) {
  uint64_t now = uv_hrtime();
  uint64_t period = (k == C_GRAPH ? GRAPH_CACHE_MS : CACHE_MS) * 1000000ull;
  if (d->cached_at[k] == 0 || now - d->cached_at[k] > period) {
    d->cache[k].len = 0;
    make(d, &d->cache[k]);
    d->cached_at[k] = now;
  }
  dl_buf_put(out, d->cache[k].p, d->cache[k].len);
}

void dl_dashboard_handle(void *ud, const dl_http_req *req,
                         dl_http_resp *resp) {
  dl_dashboard *d = ud;
  const char *p = req->path;
  const dl_asset *a = NULL;
  static const char json[] = "application/json";
  sample_system(d); /* history while pages are open */
  if (strcmp(p, "/") == 0) {
    resp->status = 302;
    resp->location = "/status";
  } else if (strcmp(p, "/status") == 0) {
    a = find_asset("status.html");
  } else if (strcmp(p, "/workers") == 0) {
    a = find_asset("workers.html");
  } else if (strcmp(p, "/info") == 0) {
    a = find_asset("info.html");
  } else if (strcmp(p, "/json/status") == 0) {
    resp->type = json;
    cached(d, C_STATUS, json_status, &resp->body);
  } else if (strcmp(p, "/json/workers") == 0) {
    resp->type = json;
    cached(d, C_WORKERS, json_workers, &resp->body);
  } else if (strcmp(p, "/worker") == 0) {
    a = find_asset("worker.html");
  } else if (strcmp(p, "/json/worker") == 0) {
    resp->type = json;
    resp->status = json_worker(d, req->query, &resp->body);
  } else if (strcmp(p, "/system") == 0) {
    a = find_asset("system.html");
  } else if (strcmp(p, "/json/system") == 0) {
    resp->type = json;
    json_system(d, &resp->body);
  } else if (strcmp(p, "/graph") == 0) {
    a = find_asset("graph.html");
  } else if (strcmp(p, "/json/graph") == 0) {
    resp->type = json;
    cached(d, C_GRAPH, json_graph, &resp->body);
  } else if (strcmp(p, "/coord") == 0) {
    a = find_asset("coord.html");
  } else if (strcmp(p, "/json/coord") == 0) {
    resp->type = json;
    dl_dashboard_json_coord(d->srv, &resp->body);
  } else if (strcmp(p, "/profile") == 0) {
    a = find_asset("profile.html");
  } else if (strcmp(p, "/json/profile") == 0) {
    long wid = 0, secs = 0;
    resp->type = json;
    if (strstr(req->query, "worker=") &&
        (!query_int(req->query, "worker", &wid) || wid < 0 ||
         wid > 1000000)) {
      put(&resp->body, "{\"error\":\"worker must be a worker's id (a "
          "number; 0: all)\"}");
      resp->status = 400;
    } else if (strstr(req->query, "seconds=") &&
               (!query_int(req->query, "seconds", &secs) || secs < 1 ||
                secs > 86400)) {
      put(&resp->body, "{\"error\":\"seconds must be a whole number of "
          "seconds from 1 to 86400 (absent: all)\"}");
      resp->status = 400;
    } else {
      resp->status = profile(d, wid, secs, &resp->body);
    }
  } else if (strcmp(p, "/json/info") == 0) {
    resp->type = json;
    json_info(d, &resp->body);
  } else if (strcmp(p, "/json/stream") == 0) {
    resp->type = json;
    resp->status = json_stream(d, req->query, &resp->body);
  } else if (strcmp(p, "/metrics") == 0) {
    resp->type = "text/plain; version=0.0.4; charset=utf-8";
    cached(d, C_METRICS, metrics, &resp->body);
  } else if (strcmp(p, "/favicon.ico") == 0) {
    resp->status = 204;
  } else if (strncmp(p, "/static/", 8) == 0 && strchr(p + 8, '/') == NULL &&
             strstr(p + 8, ".html") == NULL) {
    a = find_asset(p + 8);
    if (a == NULL) resp->status = 404;
  } else {
    resp->status = 404;
  }
  if (a) {
    resp->type = a->type;
    dl_buf_put(&resp->body, a->data, a->len);
  } else if (resp->status == 200 && resp->body.len == 0 &&
             resp->type == NULL) {
    resp->status = 404;
  }
}

/* ------------------------------------------------------------ report */

/* Append n bytes of text for a <script> element: "</" written "<\/" so
   that nothing in it can close the element. */
static void put_script(dl_buf *b, const char *p, size_t n) {
  size_t i, from = 0;
  for (i = 0; i + 1 < n; i++)
    if (p[i] == '<' && p[i + 1] == '/') {
      dl_buf_put(b, p + from, i + 1 - from);
      dl_buf_u8(b, '\\');
      from = i + 1;
    }
  dl_buf_put(b, p + from, n - from);
}

/* The report's data: {"title", "start", "stop", "status", "workers",
   "events", "truncated", "history": {"id": [[t, managed, spilled, rss,
   executing, stored], ...]}}. */
static int report_data(dl_dashboard *d, double t0, const char *title,
                       dl_buf *b) {
  uint64_t since = 0, next;
  int n, i, truncated = 0, first = 1;
  snap s;
  dl_sched_sample *h;
  put(b, "{\"title\":");
  dl_json_str(b, title ? title : "");
  put(b, ",\"start\":");
  put_num(b, t0);
  put(b, ",\"stop\":");
  put_num(b, now_s());
  put(b, ",\"status\":");
  json_status(d, b);
  put(b, ",\"workers\":");
  json_workers(d, b);
  if (d->events == NULL &&
      (d->events = dl_realloc(NULL, sizeof *d->events * MAX_EVENTS)) == NULL)
    return DL_ENOMEM;
  put(b, ",\"events\":[");
  do {
    n = dl_server_events(d->srv, since, d->events, MAX_EVENTS, &next);
    if (since == 0 && n > 0 && d->events[0].stop >= t0 &&
        next > (uint64_t)n)
      truncated = 1; /* the ring had already dropped some of the period */
    for (i = 0; i < n; i++) {
      const dl_sched_event *e = &d->events[i];
      if (e->stop < t0) continue;
      if (!first) put(b, ",");
      first = 0;
      put_event(b, e);
    }
    since = next;
  } while (n == MAX_EVENTS);
  putf(b, "],\"truncated\":%s,\"history\":{", truncated ? "true" : "false");
  if (take_snap(d->srv, &s, 0)) {
    free_snap(&s);
    return DL_ENOMEM;
  }
  h = dl_realloc(NULL, sizeof *h * DL_SCHED_HISTORY);
  if (h == NULL) {
    free_snap(&s);
    return DL_ENOMEM;
  }
  for (i = 0; i < s.nw; i++) {
    int k, nh = dl_server_history(d->srv, s.w[i].id, h, DL_SCHED_HISTORY);
    putf(b, "%s\"%d\":[", i ? "," : "", s.w[i].id);
    for (k = 0; k < nh; k++) {
      putf(b, "%s[", k ? "," : "");
      put_num(b, h[k].t);
      putf(b, ",%lld,%lld,%lld,%d,%d]", (long long)h[k].managed,
           (long long)h[k].spilled, (long long)h[k].rss, h[k].executing,
           h[k].stored);
    }
    put(b, "]");
  }
  put(b, "}}");
  dl_free(h);
  free_snap(&s);
  return 0;
}

int dl_dashboard_report(struct dl_server *srv, double t0, const char *title,
                        dl_buf *out) {
  dl_dashboard *d = dl_dashboard_new(srv);
  const dl_asset *tpl = find_asset("report.html");
  const dl_asset *css = find_asset("style.css");
  const dl_asset *js = find_asset("dashboard.js");
  dl_buf data;
  const char *p, *end;
  int rc = 0;
  memset(&data, 0, sizeof data);
  if (d == NULL) return DL_ENOMEM;
  if (tpl == NULL || css == NULL || js == NULL) {
    dl_dashboard_free(d);
    return DL_ENOMEM;
  }
  rc = report_data(d, t0, title, &data);
  /* The template's markers each stand alone on a line. */
  for (p = tpl->data, end = tpl->data + tpl->len; rc == 0 && p < end;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
    if (len >= 9 && memcmp(p, "/*STYLE*/", 9) == 0)
      dl_buf_put(out, css->data, css->len);
    else if (len >= 8 && memcmp(p, "/*DATA*/", 8) == 0) {
      put(out, "window.DLUA_REPORT = ");
      put_script(out, data.p, data.len);
      put(out, ";\n");
    } else if (len >= 10 && memcmp(p, "/*SCRIPT*/", 10) == 0)
      put_script(out, js->data, js->len);
    else
      dl_buf_put(out, p, len);
    p += len;
  }
  if (rc == 0 && dl_buf_u8(out, '\n')) rc = DL_ENOMEM;
  dl_buf_free(&data);
  dl_dashboard_free(d);
  return rc;
}

dl_dashboard *dl_dashboard_new(struct dl_server *srv) {
  dl_dashboard *d = dl_realloc(NULL, sizeof *d);
  if (d == NULL) return NULL;
  memset(d, 0, sizeof *d);
  d->srv = srv;
  return d;
}

void dl_dashboard_free(dl_dashboard *d) {
  int i;
  if (d == NULL) return; /* its server closed with the loop's handles */
  for (i = 0; i < C_N; i++) dl_buf_free(&d->cache[i]);
  dl_free(d->events);
  dl_buf_free(&d->ev.txt);
  dl_free(d->ev.off);
  dl_free(d->sys);
  dl_free(d);
}

/* ------------------------------------------------- the loop's service */

static int svc_start(void *ud, uv_loop_t *loop, dl_server *srv, char *err,
                     size_t errlen) {
  dl_dashboard *d = ud;
  d->srv = srv;
  d->http = dl_http_start(loop, d->req, d->fallback, dl_dashboard_handle, d,
                          err, errlen);
  return d->http ? 0 : -1;
}

static const char *svc_address(void *ud) {
  dl_dashboard *d = ud;
  return d->http ? dl_http_address(d->http) : NULL;
}

static void svc_stop(void *ud) {
  dl_dashboard *d = ud;
  dl_http_close(d->http);
  d->http = NULL;
}

static void svc_free(void *ud) { dl_dashboard_free(ud); }

int dl_dashboard_service(dl_service *svc, const char *address, int fallback) {
  dl_dashboard *d;
  if (strlen(address) >= sizeof d->req) return DL_EINVAL;
  d = dl_dashboard_new(NULL);
  if (d == NULL) return DL_ENOMEM;
  snprintf(d->req, sizeof d->req, "%s", address);
  d->fallback = fallback;
  svc->ud = d;
  svc->start = svc_start;
  svc->address = svc_address;
  svc->stop = svc_stop;
  svc->free = svc_free;
  return 0;
}

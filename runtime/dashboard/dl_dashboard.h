/*
** dl_dashboard.h -- the dashboard's routes: HTML pages (compiled in from
** runtime/dashboard/), JSON snapshots of the scheduler, task stream events
** and Prometheus metrics, served by dl_http on the scheduler's loop.
** Pure C: no Lua.
*/
#ifndef dl_dashboard_h
#define dl_dashboard_h

#include <stddef.h>

#include "dl_http.h"
#include "dl_server.h"

/* One file of runtime/dashboard/, embedded by scripts/embed-assets.lua. */
typedef struct dl_asset {
  const char *name; /* "status.html" */
  const char *type; /* its Content-Type */
  const char *data;
  size_t len;
} dl_asset;

/* The embedded files, ended by an entry with a NULL name. */
extern const dl_asset dl_assets[];

typedef struct dl_dashboard dl_dashboard;

/*
** Make svc the dashboard, served over HTTP on address ("host:port"; port
** 0: a free one; with fallback, a port already in use is replaced by a
** free one) once a cluster runs it (dl_server_opts.service).  0, or
** DL_ENOMEM, or DL_EINVAL when address is too long; svc is then untouched.
*/
int dl_dashboard_service(dl_service *svc, const char *address, int fallback);

/* A dashboard for the cluster srv (borrowed: it must outlive the
   dashboard), not serving; NULL on out of memory.  For tests. */
dl_dashboard *dl_dashboard_new(struct dl_server *srv);

/* Free the dashboard (NULL is fine). */
void dl_dashboard_free(dl_dashboard *d);

/*
** The dl_http handler (ud is a dl_dashboard): serves /status, /workers,
** /info, their scripts and styles, /json/status, /json/workers,
** /json/info, /json/stream?since=N and /metrics; 404 for anything else.
** Reads the scheduler under its lock, through dl_server's accessors.
*/
void dl_dashboard_handle(void *ud, const dl_http_req *req,
                         dl_http_resp *resp);

/*
** A performance report: one self-contained HTML page (styles, script and
** data inline; nothing fetched to view it) with the task stream of the
** runs that ended since t0 (monotonic seconds, as dlua_time; at most the
** scheduler's ring of DL_SCHED_EVENTS), each group's progress and every
** worker's memory now, the workers' memory over the period (their
** heartbeat history) and the workers' table.  title is shown at the top.
** Appends to out; 0 or DL_ENOMEM.  Safe from any thread: it reads the
** scheduler through dl_server's accessors.
*/
int dl_dashboard_report(struct dl_server *srv, double t0, const char *title,
                        dl_buf *out);

/* Append s as a JSON string (quoted and escaped) to b; 0 or DL_ENOMEM. */
int dl_json_str(dl_buf *b, const char *s);

/* /json/coord: the coordination primitives in use, their waiters and
   lease holders (dl_dashboard_coord.c). */
void dl_dashboard_json_coord(struct dl_server *srv, dl_buf *b);

#endif

/*
** dl_http.h -- a small HTTP/1.1 server on a libuv loop, for the dashboard.
**
** Requests are parsed by http_parser (libhttp-parser); a handler called on
** the loop thread fills in each response.  The server never blocks: reads
** and writes are libuv's, request heads are bounded (431 beyond
** DL_HTTP_MAX_HEAD bytes, 413 for a body beyond DL_HTTP_MAX_BODY), a
** connection is closed when no request starts within DL_HTTP_IDLE_MS of
** its opening or last answer, or when a request is not read whole within
** DL_HTTP_HEAD_MS of its first byte (however slowly it trickles in),
** connections are capped (DL_HTTP_MAX_CONNS in all, at most a quarter of
** the descriptor limit, DL_HTTP_MAX_PER_PEER and half of that from one
** host), a Host header that does not name the server gets 403 (DNS
** rebinding), and only GET and HEAD are served (405 for the other
** methods, 400 for malformed requests).
** Pure C on libuv: no Lua.
*/
#ifndef dl_http_h
#define dl_http_h

#include <stddef.h>

#include <uv.h>

#include "dl_buf.h"

#define DL_HTTP_MAX_HEAD (16 * 1024)
#define DL_HTTP_MAX_BODY (16 * 1024)
#define DL_HTTP_IDLE_MS 10000
#define DL_HTTP_HEAD_MS 5000
#define DL_HTTP_MAX_CONNS 512
#define DL_HTTP_MAX_PER_PEER 256

typedef struct dl_http dl_http;

/* One request, as the handler sees it; every string is borrowed and valid
   during the handler call only, and NUL-terminated. */
typedef struct dl_http_req {
  int head;          /* HEAD: the body the handler makes is not sent */
  const char *path;  /* "/json/status" */
  const char *query; /* the part after '?', or "" */
} dl_http_req;

/* The response the handler fills: status 200 and an empty body to start. */
typedef struct dl_http_resp {
  int status;
  const char *type;     /* Content-Type (static string), or NULL */
  const char *location; /* a Location header (static string), or NULL */
  dl_buf body;          /* owned by the server: the handler appends */
} dl_http_resp;

typedef void (*dl_http_handler)(void *ud, const dl_http_req *req,
                                dl_http_resp *resp);

/*
** Listen on address "host:port" ("127.0.0.1:8787", "[::1]:0", port 0 for
** a free port) on loop, from the thread that runs it.  With fallback set,
** a port already in use is replaced by a free one.  Returns the server, or
** NULL with a message in err (what was opened closes as the loop runs).
** handler and ud are borrowed until dl_http_close.
*/
dl_http *dl_http_start(uv_loop_t *loop, const char *address, int fallback,
                       dl_http_handler handler, void *ud, char *err,
                       size_t errlen);

/* The address actually bound, "host:port"; borrowed, valid until the
   server is freed. */
const char *dl_http_address(const dl_http *h);

/* Whether the bound port differs from the one asked for (the fallback). */
int dl_http_moved(const dl_http *h);

/*
** Stop listening and close every connection; the server frees itself once
** its handles are closed, during the next turns of the loop.  Call it on
** the loop thread.  h may be NULL.
*/
void dl_http_close(dl_http *h);

/* The reason phrase of an HTTP status code ("Not Found"). */
const char *dl_http_reason(int status);

#endif

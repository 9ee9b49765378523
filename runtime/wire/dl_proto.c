/*
** dl_proto.c -- length-prefixed frames over Unix sockets, batched writes.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dl_proto.h"
#include "dl_tcp.h"

typedef struct wreq {
  uv_write_t req;
  char *p;
} wreq;

static void prep_cb(uv_prepare_t *h) {
  dl_flusher_flush((dl_flusher *)h->data);
}

int dl_flusher_init(dl_flusher *fl, uv_loop_t *loop) {
  int rc;
  fl->dirty = NULL;
  rc = uv_prepare_init(loop, &fl->prep);
  if (rc) return rc;
  fl->prep.data = fl;
  return uv_prepare_start(&fl->prep, prep_cb);
}

void dl_flusher_flush(dl_flusher *fl) {
  while (fl->dirty) {
    dl_conn *c = fl->dirty;
    fl->dirty = c->next_dirty;
    c->next_dirty = NULL;
    c->dirty = 0;
    dl_conn_flush(c);
  }
}

void dl_flusher_close(dl_flusher *fl) {
  uv_prepare_stop(&fl->prep);
  uv_close((uv_handle_t *)&fl->prep, NULL);
}

static void conn_unref(dl_conn *c) {
  if (--c->refs == 0) {
    dl_buf_free(&c->in);
    dl_buf_free(&c->out);
    dl_free(c);
  }
}

static void close_cb(uv_handle_t *h) { conn_unref((dl_conn *)h->data); }

dl_conn *dl_conn_new(uv_loop_t *loop, dl_flusher *fl, dl_frame_cb on_frame,
                     dl_close_cb on_close, void *data) {
  dl_conn *c = dl_realloc(NULL, sizeof *c);
  if (c == NULL) return NULL;
  memset(c, 0, sizeof *c);
  if (uv_pipe_init(loop, &c->pipe, 0)) {
    dl_free(c);
    return NULL;
  }
  c->pipe.data = c;
  c->fl = fl;
  c->on_frame = on_frame;
  c->on_close = on_close;
  c->data = data;
  c->refs = 1;
  return c;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  dl_conn *c = h->data;
  dl_buf *in = &c->in;
  size_t want = 65536;
  (void)hint;
  if (in->len >= 4) {
    uint32_t n;
    dl_rd r;
    dl_rd_init(&r, in->p, 4);
    dl_rd_u32(&r, &n);
    if ((size_t)n + 4 > in->len && (size_t)n + 4 - in->len > want)
      want = (size_t)n + 4 - in->len; /* read a big frame in place */
  }
  if (in->cap - in->len < want && dl_buf_grow(in, want)) {
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  buf->base = in->p + in->len;
  buf->len = in->cap - in->len;
  /* Read a big frame to its end and no further, so it fills the buffer
     alone and can be handed over whole (dl_conn_take_input). */
  if (want > 65536 && buf->len > want) buf->len = want;
}

/* Run on_close once, then close the handle. */
static void conn_shut(dl_conn *c) {
  if (c->closing) return;
  c->closing = 1;
  if (c->dirty && c->fl) { /* unlink from the flusher's list */
    dl_conn **pp = &c->fl->dirty;
    while (*pp && *pp != c) pp = &(*pp)->next_dirty;
    if (*pp) *pp = c->next_dirty;
    c->dirty = 0;
  }
  if (c->on_close) c->on_close(c);
  if (!uv_is_closing((uv_handle_t *)&c->pipe))
    uv_close((uv_handle_t *)&c->pipe, close_cb);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  dl_conn *c = s->data;
  dl_buf *in = &c->in;
  size_t off = 0;
  (void)buf;
  if (nread < 0) {
    conn_shut(c);
    return;
  }
  in->len += (size_t)nread;
  c->refs++; /* on_frame may close the conn */
  while (!c->closing && in->len - off >= 4) {
    uint32_t n;
    dl_rd r;
    dl_rd_init(&r, in->p + off, 4);
    dl_rd_u32(&r, &n);
    if (in->len - off - 4 < n) break;
    c->on_frame(c, in->p + off + 4, n);
    if (c->stolen) { /* the handler owns the bytes now */
      c->stolen = 0;
      off = 0;
      break;
    }
    off += 4 + (size_t)n;
  }
  if (off) {
    memmove(in->p, in->p + off, in->len - off);
    in->len -= off;
    if (in->len == 0 && in->cap > (1u << 20)) dl_buf_free(in);
  }
  conn_unref(c);
}

int dl_conn_start(dl_conn *c) {
  return uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb);
}

int dl_conn_open_fd(dl_conn *c, int fd) {
  int rc = uv_pipe_open(&c->pipe, fd);
  if (rc) return rc;
  return dl_conn_start(c);
}

static void connect_cb(uv_connect_t *req, int status) {
  dl_conn *c = req->data;
  dl_free(req);
  if (status < 0 || dl_conn_start(c)) {
    conn_shut(c);
    return;
  }
  if (c->out.len > 4) dl_conn_flush(c);
  conn_unref(c);
}

int dl_conn_connect(dl_conn *c, const char *path) {
  uv_connect_t *req = dl_realloc(NULL, sizeof *req);
  if (req == NULL) return UV_ENOMEM;
  req->data = c;
  c->refs++;
  c->closing = 0;
  uv_pipe_connect(req, &c->pipe, path, connect_cb);
  return 0;
}

static void dial_cb(int fd, const char *err, void *ud) {
  dl_conn *c = ud;
  if (fd >= 0 && !c->closing && dl_conn_open_fd(c, fd) == 0) {
    if (c->out.len > 4) dl_conn_flush(c);
  } else {
    if (fd >= 0) close(fd);
    if (err) fprintf(stderr, "dlua: %s\n", err);
    conn_shut(c);
  }
  conn_unref(c);
}

int dl_conn_dial(dl_conn *c, const char *addr, const struct dl_tcp_opts *o,
                 unsigned timeout_ms) {
  char host[256], err[300];
  int port, rc;
  if (dl_tcp_parse(addr, host, sizeof host, &port, err, sizeof err))
    return UV_EINVAL;
  rc = dl_tcp_dial(c->pipe.loop, host, port, o, timeout_ms, dial_cb, c);
  if (rc == 0) c->refs++;
  return rc;
}

dl_buf *dl_conn_msg(dl_conn *c) {
  if (c->out.len == 0) dl_buf_u32(&c->out, 0);
  if (!c->dirty && c->fl) {
    c->dirty = 1;
    c->next_dirty = c->fl->dirty;
    c->fl->dirty = c;
  }
  return &c->out;
}

static void write_cb(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  (void)status; /* a failed write shows up as a read error too */
  dl_free(w->p);
  dl_free(w);
}

void dl_conn_flush(dl_conn *c) {
  wreq *w;
  uv_buf_t ub;
  size_t n;
  if (c->out.len <= 4 || c->closing) return;
  if (uv_is_closing((uv_handle_t *)&c->pipe)) return;
  if (!uv_is_writable((uv_stream_t *)&c->pipe)) return; /* not connected */
  w = dl_realloc(NULL, sizeof *w);
  if (w == NULL) return;
  c->out.p[0] = (char)((c->out.len - 4) & 0xff);
  c->out.p[1] = (char)(((c->out.len - 4) >> 8) & 0xff);
  c->out.p[2] = (char)(((c->out.len - 4) >> 16) & 0xff);
  c->out.p[3] = (char)(((c->out.len - 4) >> 24) & 0xff);
  w->p = dl_buf_take(&c->out, &n);
  ub = uv_buf_init(w->p, (unsigned)n);
  if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &ub, 1, write_cb)) {
    dl_free(w->p);
    dl_free(w);
  }
}

char *dl_conn_take_input(dl_conn *c, const char *frame) {
  char *p = c->in.p;
  uint32_t n;
  dl_rd r;
  if (p == NULL || frame != p + 4 || c->in.len < 4) return NULL;
  dl_rd_init(&r, p, 4);
  dl_rd_u32(&r, &n);
  if (c->in.len != 4 + (size_t)n) return NULL;
  dl_buf_init(&c->in);
  c->stolen = 1;
  return p;
}

typedef struct refreq {
  uv_write_t req;
  char *hdr;
  void (*done)(void *);
  void *ud;
} refreq;

static void ref_write_cb(uv_write_t *req, int status) {
  refreq *w = (refreq *)req;
  (void)status;
  dl_free(w->hdr);
  w->done(w->ud);
  dl_free(w);
}

int dl_conn_send_ref(dl_conn *c, const char *hdr, size_t hlen,
                     const char *data, size_t n, void (*done)(void *),
                     void *ud) {
  refreq *w;
  uv_buf_t ub[2];
  size_t total = hlen + n;
  dl_conn_flush(c);
  if (c->closing || uv_is_closing((uv_handle_t *)&c->pipe) ||
      !uv_is_writable((uv_stream_t *)&c->pipe) || total > DL_MAX_FRAME) {
    done(ud);
    return DL_EPROTO;
  }
  w = dl_realloc(NULL, sizeof *w);
  if (w) w->hdr = dl_realloc(NULL, hlen + 4);
  if (w == NULL || w->hdr == NULL) {
    dl_free(w);
    done(ud);
    return DL_ENOMEM;
  }
  w->hdr[0] = (char)(total & 0xff);
  w->hdr[1] = (char)((total >> 8) & 0xff);
  w->hdr[2] = (char)((total >> 16) & 0xff);
  w->hdr[3] = (char)((total >> 24) & 0xff);
  memcpy(w->hdr + 4, hdr, hlen);
  w->done = done;
  w->ud = ud;
  ub[0] = uv_buf_init(w->hdr, (unsigned)(hlen + 4));
  ub[1] = uv_buf_init((char *)data, (unsigned)n);
  if (uv_write(&w->req, (uv_stream_t *)&c->pipe, ub, 2, ref_write_cb)) {
    dl_free(w->hdr);
    dl_free(w);
    done(ud);
    return DL_EPROTO;
  }
  return 0;
}

void dl_conn_close(dl_conn *c) {
  if (c->closing) return;
  dl_conn_flush(c);
  conn_shut(c);
}

int dl_shared_at_write(dl_buf *b, const dl_shared_at *sa) {
  dl_buf f;
  int rc;
  dl_buf_init(&f);
  rc = dl_buf_uv(&f, sa->pid) || dl_buf_uv(&f, sa->ref.fd) ||
       dl_buf_uv(&f, sa->ref.ino) || dl_buf_uv(&f, sa->ref.size) ||
       dl_buf_uv(&f, sa->off) || dl_buf_uv(&f, sa->len) ||
       dl_buf_str(b, f.p, f.len);
  dl_buf_free(&f);
  return rc ? DL_ENOMEM : 0;
}

int dl_shared_at_read(const char *p, size_t n, dl_shared_at *sa) {
  dl_rd r;
  dl_rd_init(&r, p, n);
  if (dl_rd_uv(&r, &sa->pid) || dl_rd_uv(&r, &sa->ref.fd) ||
      dl_rd_uv(&r, &sa->ref.ino) || dl_rd_uv(&r, &sa->ref.size) ||
      dl_rd_uv(&r, &sa->off) || dl_rd_uv(&r, &sa->len) || dl_rd_left(&r))
    return DL_EPROTO;
  if (sa->pid == 0 || sa->pid > INT32_MAX || sa->off > sa->ref.size ||
      sa->len > sa->ref.size - sa->off)
    return DL_EPROTO;
  return 0;
}

const char *dl_shared_at_map(const dl_shared_at *sa) {
  return dl_mem_map((pid_t)sa->pid, &sa->ref);
}

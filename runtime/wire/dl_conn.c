/*
** dl_conn.c -- length-prefixed frames over any transport, batched writes.
*/
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "dl_conn.h"
#include "dl_tls.h"

/* Transports by address prefix; the last one (prefix "") takes the rest. */
static const dl_transport *const transports[] = {&dl_transport_tcp,
                                                  &dl_transport_unix};

const dl_transport *dl_transport_for(const char *addr) {
  size_t i, n = sizeof transports / sizeof *transports;
  for (i = 0; i + 1 < n; i++)
    if (strncmp(addr, transports[i]->prefix,
                strlen(transports[i]->prefix)) == 0)
      return transports[i];
  return transports[n - 1];
}

typedef struct wreq {
  uv_write_t req;
  char *p;
} wreq;

/*
** Big values go through bounce buffers, one per connection and direction
** (DL_BOUNCE bytes, kept while the connection lives): the sender copies a
** chunk of the value into its bounce and writes that; the reader reads a
** big frame's body into its bounce and copies it to its place.  On a
** virtual machine the kernel's first access to each page of a fresh user
** buffer is expensive (measured on this project's VM: a 100 MB send from a
** freshly written value, 0.19 GB/s; through a 1 MiB bounce, 0.8 GB/s,
** as fast as from pages the kernel has seen), and a value sent or received
** is usually fresh.  The copy in user space costs little next to that.
*/
#define DL_BOUNCE ((size_t)1 << 20)

/* A frame made of a copied head and borrowed data (dl_conn_send_ref),
   queued on its connection while an earlier one is still going out. */
struct dl_bigsend {
  dl_bigsend *next;
  char *pre;  /* owned: frames that went before it, then this frame's
                 length and head; handed to a wreq when it starts */
  size_t plen;
  const char *data;
  size_t n, off; /* bytes of data, and copied to the bounce so far */
  void (*done)(void *);
  void *ud;
};

/*
** TLS inside the connection.  A TCP connection whose socket came with a
** TLS session (dl_tls_claim, when it starts reading) reads the peer's
** records into cbuf, decrypts them straight into its frame buffer and
** dispatches its frames as any connection does; what it writes is
** encrypted on the way (tls_send, and each chunk of a big frame straight
** from its value) and the records go out on the same libuv stream, in the
** order they were made.  No thread, no socketpair (dl_tls.c's BIO reads
** the records from cbuf itself and hands its own over whole), and
** backpressure is libuv's write queue, as without TLS.  OpenSSL's
** sessions are not to be used from two threads at once: with a write
** gate, every use of the session (on either thread) holds the gate's
** lock; a read gate is not opened on such a connection.
*/
#define TLS_CBUF ((size_t)256 << 10)
/* A big frame's chunk of clear bytes: its records (22 bytes of header and
   tag per 16 KiB) still fit in DL_BOUNCE. */
#define TLS_CHUNK (DL_BOUNCE - 4096)

typedef struct dl_tlsconn {
  dl_tls *t;
  /* The first drain, from the loop: the records that came with the
     handshake's last bytes are in the session already, and no read will
     announce them. */
  uv_idle_t first;
  int first_open;
  dl_buf bout; /* the records of the big frame's chunk being written */
  char cbuf[TLS_CBUF]; /* records read */
} dl_tlsconn;

static void tls_drain(dl_conn *c);

/* The gate of c, locked, or NULL if it has none. */
static dl_wgate *gate_lock(dl_conn *c) {
  if (c->gate) uv_mutex_lock(&c->gate->lock);
  return c->gate;
}

/* After a write of c's began or ended: record what libuv still holds, and
   unlock the gate g (from gate_lock). */
static void gate_unlock(dl_conn *c, dl_wgate *g) {
  if (g == NULL) return;
  /* A big frame still going out counts as queued even between its chunks. */
  g->queued = c->h.stream.write_queue_size + (c->big != NULL);
  uv_mutex_unlock(&g->lock);
}

int dl_wgate_init(dl_wgate *g) {
  g->fd = -1;
  g->tls = NULL;
  g->queued = 0;
  return uv_mutex_init(&g->lock);
}

void dl_conn_set_gate(dl_conn *c, dl_wgate *g) {
  uv_os_fd_t fd;
  if (c->tr == NULL || uv_fileno(&c->h.handle, &fd)) return;
  c->gate = g;
  uv_mutex_lock(&g->lock);
  g->fd = fd;
  g->tls = c->tls ? c->tls->t : NULL;
  g->queued = c->h.stream.write_queue_size;
  uv_mutex_unlock(&g->lock);
}

/* A frame's records on a TLS connection's gate: encrypted here (the
   gate's lock keeps the session this thread's meanwhile), then written
   by dl_wgate_write, which must write them all once made: the session
   counts them sent. */
static int gate_seal(dl_wgate *g, const char *p, size_t n,
                     const unsigned char hdr[4], dl_buf *rec) {
  char one[4096];
  int rc;
  dl_buf_init(rec);
  if (n + 4 <= sizeof one) { /* a small frame: one record */
    memcpy(one, hdr, 4);
    memcpy(one + 4, p, n);
    rc = dl_tls_write(g->tls, one, n + 4);
  } else {
    rc = dl_tls_write(g->tls, hdr, 4) || dl_tls_write(g->tls, p, n);
  }
  if (rc || dl_tls_pull(g->tls, rec)) {
    dl_buf_free(rec);
    g->fd = -1; /* the session is broken: the loop's thread finds out */
    return UV_EPROTO;
  }
  return 0;
}

int dl_wgate_write(dl_wgate *g, const char *p, size_t n) {
  unsigned char hdr[4];
  struct iovec iov[2];
  struct msghdr mh;
  dl_buf rec;
  int first = 1, rc = 0;
  if (g->fd < 0 || g->queued) return UV_EAGAIN;
  if (n > DL_MAX_FRAME) return UV_E2BIG;
  hdr[0] = (unsigned char)(n & 0xff);
  hdr[1] = (unsigned char)((n >> 8) & 0xff);
  hdr[2] = (unsigned char)((n >> 16) & 0xff);
  hdr[3] = (unsigned char)((n >> 24) & 0xff);
  iov[0].iov_base = hdr;
  iov[0].iov_len = 4;
  iov[1].iov_base = (void *)p;
  iov[1].iov_len = n;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = iov;
  mh.msg_iovlen = 2;
  if (g->tls) {
    struct pollfd pf;
    pf.fd = g->fd;
    pf.events = POLLOUT;
    /* A full socket: nothing is encrypted, the loop's thread sends it
       (once sealed, the records must go, waiting as long as it takes). */
    if (poll(&pf, 1, 0) != 1 || !(pf.revents & POLLOUT)) return UV_EAGAIN;
    if ((rc = gate_seal(g, p, n, hdr, &rec)) != 0) return rc;
    iov[0].iov_base = rec.p;
    iov[0].iov_len = rec.len;
    mh.msg_iovlen = 1;
    first = 0; /* sealed: every record goes, however long it takes */
  }
  while (mh.msg_iovlen > 0) {
    ssize_t w = sendmsg(g->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      struct pollfd pf;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        rc = -errno; /* libuv's codes are negated errnos on Unix */
        g->fd = -1;
        break;
      }
      if (first) return UV_EAGAIN; /* nothing written: the loop sends it */
      pf.fd = g->fd;
      pf.events = POLLOUT;
      (void)poll(&pf, 1, 1000); /* the peer reads: it will take the rest */
      continue;
    }
    first = 0;
    while (mh.msg_iovlen > 0 && (size_t)w >= mh.msg_iov[0].iov_len) {
      w -= (ssize_t)mh.msg_iov[0].iov_len;
      mh.msg_iov++;
      mh.msg_iovlen--;
    }
    if (mh.msg_iovlen > 0) {
      mh.msg_iov[0].iov_base = (char *)mh.msg_iov[0].iov_base + w;
      mh.msg_iov[0].iov_len -= (size_t)w;
    }
  }
  if (g->tls) dl_buf_free(&rec);
  return rc;
}

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
    dl_free(c->sbounce);
    dl_free(c->rbounce);
    if (c->tls) {
      dl_tls_free(c->tls->t);
      dl_buf_free(&c->tls->bout);
      dl_free(c->tls);
    }
    dl_free(c);
  }
}

static void close_cb(uv_handle_t *h) { conn_unref((dl_conn *)h->data); }

dl_conn *dl_conn_new(uv_loop_t *loop, dl_flusher *fl, dl_frame_cb on_frame,
                     dl_close_cb on_close, void *data) {
  dl_conn *c = dl_realloc(NULL, sizeof *c);
  if (c == NULL) return NULL;
  memset(c, 0, sizeof *c);
  c->loop = loop;
  c->fl = fl;
  c->on_frame = on_frame;
  c->on_close = on_close;
  c->data = data;
  c->refs = 1;
  return c;
}

/* The loop's thread takes c's read gate (if any) for a read and the
   frames it completes, and puts what the other thread left in front of
   its input. */
static void rgate_hold(dl_conn *c) {
  dl_rgate *g = c->rgate;
  if (g == NULL || g->held) return;
  uv_mutex_lock(&g->lock);
  g->held = 1;
  if (g->left.len) {
    dl_buf_put(&c->in, g->left.p, g->left.len);
    g->left.len = 0;
    if (g->left.cap > (1u << 20)) dl_buf_free(&g->left);
  }
}

/* Let go of g (c's, or c's before it shut), recording whether the loop's
   thread holds part of a frame.  c is still allocated. */
static void rgate_release(dl_conn *c, dl_rgate *g) {
  if (g == NULL || !g->held) return;
  g->idle = c->in.len == 0 && !c->closing;
  g->held = 0;
  uv_mutex_unlock(&g->lock);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  dl_conn *c = h->data;
  dl_buf *in = &c->in;
  size_t want = 65536;
  (void)hint;
  if (c->tls) { /* records: tls_drain decrypts them into in */
    buf->base = c->tls->cbuf;
    buf->len = TLS_CBUF;
    return;
  }
  /* Held until read_cb, which libuv calls once for each alloc_cb. */
  rgate_hold(c);
  if (in->len >= 4) {
    uint32_t n;
    dl_rd r;
    dl_rd_init(&r, in->p, 4);
    dl_rd_u32(&r, &n);
    if ((size_t)n + 4 > in->len && (size_t)n + 4 - in->len > want)
      want = (size_t)n + 4 - in->len; /* read a big frame in place */
  }
  if (in->cap - in->len < want && dl_buf_try_grow(in, want)) {
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  buf->base = in->p + in->len;
  buf->len = in->cap - in->len;
  if (want > 65536) {
    /* Read a big frame to its end and no further, so it fills the buffer
       alone and can be handed over whole (dl_conn_take_input); through
       the bounce (read_cb copies it to its place). */
    if (buf->len > want) buf->len = want;
    if (c->rbounce == NULL) c->rbounce = dl_realloc(NULL, DL_BOUNCE);
    if (c->rbounce) {
      buf->base = c->rbounce;
      if (buf->len > DL_BOUNCE) buf->len = DL_BOUNCE;
    }
  }
}

/* Make c's handle one of tr's: 0 or a libuv error. */
static int conn_init(dl_conn *c, const dl_transport *tr) {
  int rc;
  if (c->tr) return UV_EINVAL; /* opened already */
  rc = tr->init(c->loop, &c->h);
  if (rc) return rc;
  c->h.handle.data = c;
  c->tr = tr;
  return 0;
}

static int writable(dl_conn *c) {
  return c->tr && !uv_is_closing(&c->h.handle) &&
         uv_is_writable(&c->h.stream);
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
  if (c->gate) { /* before the descriptor closes (and its number is
                     reused): the other thread writes no more */
    uv_mutex_lock(&c->gate->lock);
    c->gate->fd = -1;
    c->gate->tls = NULL;
    uv_mutex_unlock(&c->gate->lock);
    c->gate = NULL;
  }
  if (c->rgate) { /* the same for reads (held here when a frame closes c) */
    dl_rgate *g = c->rgate;
    if (!g->held) uv_mutex_lock(&g->lock);
    g->fd = -1;
    g->idle = 0;
    if (!g->held) uv_mutex_unlock(&g->lock);
    c->rgate = NULL;
  }
  if (c->tls && c->tls->first_open) {
    c->tls->first_open = 0;
    uv_close((uv_handle_t *)&c->tls->first, close_cb);
  }
  if (c->on_close) c->on_close(c);
  if (c->tr == NULL) conn_unref(c); /* never opened: no handle to close */
  else if (!uv_is_closing(&c->h.handle)) uv_close(&c->h.handle, close_cb);
}

/* Hand c's complete frames to on_frame (c is referenced). */
static void dispatch(dl_conn *c) {
  dl_buf *in = &c->in;
  size_t off = 0;
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
}

static int tls_out(dl_conn *c);

/* Decrypt what c's session holds into c->in, handing each frame to
   on_frame as it completes.  Reads of a big frame stop at its end, so it
   fills the buffer alone (dl_conn_take_input), as alloc_cb's do. */
static void tls_drain(dl_conn *c) {
  dl_buf *in = &c->in;
  dl_wgate *g;
  long k;
  char err[300];
  c->refs++; /* on_frame may close the conn */
  while (!c->closing) {
    size_t want = 65536, room;
    int exact = 0;
    if (in->len >= 4) {
      uint32_t n;
      dl_rd r;
      dl_rd_init(&r, in->p, 4);
      dl_rd_u32(&r, &n);
      if ((size_t)n + 4 > in->len && (size_t)n + 4 > 65536) {
        want = (size_t)n + 4 - in->len;
        exact = 1;
      }
    }
    if (in->cap - in->len < want && dl_buf_try_grow(in, want)) {
      conn_shut(c);
      break;
    }
    room = exact ? want : in->cap - in->len;
    g = gate_lock(c); /* the session is shared with the gate's thread */
    k = dl_tls_read(c->tls->t, in->p + in->len, room, err, sizeof err);
    if (g) uv_mutex_unlock(&g->lock);
    if (k == 0) break; /* the rest of a record is still on its way */
    if (k < 0) { /* the peer ended the session, or it broke */
      conn_shut(c);
      break;
    }
    in->len += (size_t)k;
    dispatch(c);
  }
  /* What reading made the session say (an alert, a key update's answer). */
  if (!c->closing) {
    g = gate_lock(c);
    k = tls_out(c);
    gate_unlock(c, g);
    if (k) conn_shut(c);
  }
  conn_unref(c);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  dl_conn *c = s->data;
  dl_rgate *g = c->rgate; /* conn_shut may let go of it */
  dl_buf *in = &c->in;
  if (nread < 0) {
    conn_shut(c);
    rgate_release(c, g);
    return;
  }
  if (c->tls) { /* decrypted from cbuf itself */
    dl_wgate *wg;
    int rc;
    wg = gate_lock(c);
    if (nread > 0) dl_tls_lend(c->tls->t, buf->base, (size_t)nread);
    if (wg) uv_mutex_unlock(&wg->lock);
    tls_drain(c);
    wg = c->closing ? NULL : gate_lock(c); /* shut: the gate is gone */
    rc = dl_tls_unlend(c->tls->t);
    if (wg) uv_mutex_unlock(&wg->lock);
    if (rc) conn_shut(c); /* out of memory */
    return;
  }
  if (nread > 0 && buf->base == c->rbounce) /* a big frame's bytes */
    memcpy(in->p + in->len, buf->base, (size_t)nread);
  in->len += (size_t)nread;
  c->refs++; /* on_frame may close the conn */
  dispatch(c);
  rgate_release(c, g);
  conn_unref(c);
}

void dl_conn_rgate_drain(dl_conn *c) {
  dl_rgate *g = c->rgate;
  if (g == NULL || c->closing) return;
  rgate_hold(c);
  c->refs++;
  dispatch(c);
  rgate_release(c, g);
  conn_unref(c);
}

int dl_rgate_init(dl_rgate *g) {
  g->fd = -1;
  g->idle = 0;
  g->held = 0;
  dl_buf_init(&g->left);
  return uv_mutex_init(&g->lock);
}

void dl_rgate_free(dl_rgate *g) {
  dl_buf_free(&g->left);
  uv_mutex_destroy(&g->lock);
}

void dl_conn_set_rgate(dl_conn *c, dl_rgate *g) {
  uv_os_fd_t fd;
  if (c->tr == NULL || c->rgate || c->tls || uv_fileno(&c->h.handle, &fd))
    return;
  c->rgate = g;
  uv_mutex_lock(&g->lock);
  g->fd = fd;
  g->idle = c->in.len == 0;
  uv_mutex_unlock(&g->lock);
}

int dl_rgate_read(dl_rgate *g, dl_rgate_take take, void *ud) {
  ssize_t n;
  size_t off = 0;
  int left;
  if (uv_mutex_trylock(&g->lock)) return 0; /* the loop's thread reads */
  if (g->fd < 0 || !g->idle || g->left.len) {
    uv_mutex_unlock(&g->lock);
    return 0;
  }
  do
    n = recv(g->fd, g->buf, sizeof g->buf, MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n <= 0) { /* nothing yet; or the end, which the loop's thread sees */
    uv_mutex_unlock(&g->lock);
    return 0;
  }
  while ((size_t)n - off >= 4) {
    uint32_t len;
    dl_rd r;
    dl_rd_init(&r, g->buf + off, 4);
    dl_rd_u32(&r, &len);
    if ((size_t)n - off - 4 < len || !take(ud, g->buf + off + 4, len)) break;
    off += 4 + (size_t)len;
  }
  if ((size_t)n > off) dl_buf_put(&g->left, g->buf + off, (size_t)n - off);
  left = g->left.len > 0;
  uv_mutex_unlock(&g->lock);
  return left;
}

static void first_cb(uv_idle_t *h) {
  dl_conn *c = h->data;
  uv_idle_stop(h);
  if (!c->closing) tls_drain(c);
}

/* Take the TLS session that came with c's socket, if any: 0, or -1 (out
   of memory: the session is dropped and c must not carry frames). */
static int tls_take(dl_conn *c) {
  uv_os_fd_t fd;
  dl_tls *t;
  if (c->tr != &dl_transport_tcp || uv_fileno(&c->h.handle, &fd) ||
      (t = dl_tls_claim(fd)) == NULL)
    return 0;
  if ((c->tls = dl_realloc(NULL, sizeof *c->tls)) == NULL) {
    dl_tls_free(t);
    return -1;
  }
  c->tls->t = t;
  dl_buf_init(&c->tls->bout);
  uv_idle_init(c->loop, &c->tls->first);
  c->tls->first.data = c;
  c->tls->first_open = 1;
  c->refs++; /* the idle handle's, dropped by its close */
  uv_idle_start(&c->tls->first, first_cb);
  return 0;
}

static int conn_start(dl_conn *c) {
  if (c->tls == NULL && tls_take(c)) return UV_ENOMEM;
  return uv_read_start(&c->h.stream, alloc_cb, read_cb);
}

int dl_conn_open_fd(dl_conn *c, int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int tcp = getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
            (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
  int rc = conn_init(c, tcp ? &dl_transport_tcp : &dl_transport_unix);
  if (rc == 0)
    rc = tcp ? uv_tcp_open(&c->h.tcp, fd) : uv_pipe_open(&c->h.pipe, fd);
  if (rc) return rc;
  return conn_start(c);
}

static void connect_cb(uv_connect_t *req, int status) {
  dl_conn *c = req->data;
  dl_free(req);
  if (status < 0 || conn_start(c)) {
    conn_shut(c);
    conn_unref(c); /* the connect's reference; the close drops the other */
    return;
  }
  if (c->out.len > 4) dl_conn_flush(c);
  conn_unref(c);
}

int dl_conn_connect(dl_conn *c, const char *addr) {
  const dl_transport *tr = dl_transport_for(addr);
  uv_connect_t *req;
  int rc = conn_init(c, tr);
  if (rc) return rc;
  req = dl_realloc(NULL, sizeof *req);
  if (req == NULL) return UV_ENOMEM;
  req->data = c;
  c->refs++;
  c->closing = 0;
  rc = tr->connect(&c->h, addr, req, connect_cb);
  if (rc) {
    c->refs--;
    dl_free(req);
  }
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
  dl_conn *c = req->handle->data;
  (void)status; /* a failed write shows up as a read error too */
  gate_unlock(c, gate_lock(c));
  dl_free(w->p);
  dl_free(w);
}

/* Write the n bytes at p (taken) behind c's earlier writes: now if the
   socket takes them all (the common case: no request, no callback, no
   change of what the loop polls for), else the rest through uv_write. */
static void send_owned(dl_conn *c, char *p, size_t n) {
  uv_buf_t ub = uv_buf_init(p, (unsigned)n);
  int sent = uv_try_write(&c->h.stream, &ub, 1);
  wreq *w;
  if (sent < 0) sent = 0; /* queued or failing: uv_write says which */
  if ((size_t)sent == n || (w = dl_realloc(NULL, sizeof *w)) == NULL) {
    dl_free(p);
    return;
  }
  w->p = p;
  ub = uv_buf_init(p + sent, (unsigned)(n - (size_t)sent));
  if (uv_write(&w->req, &c->h.stream, &ub, 1, write_cb)) {
    dl_free(w->p);
    dl_free(w);
  }
}

/* Send the records c's session holds for the peer (c's gate locked, if
   it has one): 0, or -1 (out of memory: the caller shuts c, after
   unlocking the gate). */
static int tls_out(dl_conn *c) {
  dl_buf out;
  char *p;
  size_t n;
  dl_buf_init(&out);
  if (dl_tls_pull(c->tls->t, &out)) {
    dl_buf_free(&out);
    return -1;
  }
  if (out.len == 0) return 0;
  p = dl_buf_take(&out, &n);
  send_owned(c, p, n);
  return 0;
}

/* Encrypt the n bytes at p (taken) and send their records (c's gate
   locked, if it has one): 0, or -1 (the session failed, and the peer
   would see garbage: the caller shuts c, after unlocking the gate). */
static int tls_send(dl_conn *c, char *p, size_t n) {
  int rc = dl_tls_write(c->tls->t, p, n);
  dl_free(p);
  return rc ? -1 : tls_out(c);
}

void dl_conn_flush(dl_conn *c) {
  char *p;
  size_t n;
  dl_wgate *g;
  if (c->out.len <= 4 || c->closing) return;
  if (!writable(c)) return; /* not connected, or closing */
  if (c->big) return; /* after the big frame: chunk_cb flushes */
  c->out.p[0] = (char)((c->out.len - 4) & 0xff);
  c->out.p[1] = (char)(((c->out.len - 4) >> 8) & 0xff);
  c->out.p[2] = (char)(((c->out.len - 4) >> 16) & 0xff);
  c->out.p[3] = (char)(((c->out.len - 4) >> 24) & 0xff);
  p = dl_buf_take(&c->out, &n);
  g = gate_lock(c);
  if (c->tls) {
    int rc = tls_send(c, p, n);
    gate_unlock(c, g);
    if (rc) conn_shut(c);
    return;
  }
  send_owned(c, p, n);
  gate_unlock(c, g);
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

/* Every queued big frame's done runs, and the queue is emptied: the
   connection failed or closed.  On the loop's thread, the gate unlocked
   (done may take other locks). */
static void big_abort(dl_conn *c) {
  while (c->big) {
    dl_bigsend *b = c->big;
    c->big = b->next;
    dl_free(b->pre);
    b->done(b->ud);
    dl_free(b);
  }
  c->big_tail = NULL;
  gate_unlock(c, gate_lock(c));
}

static void chunk_cb(uv_write_t *req, int status);

/* Copy the next chunk of the first big frame to the bounce and write it
   (the gate locked by the caller): 0, or -1 if the write failed. */
static int big_chunk(dl_conn *c) {
  dl_bigsend *b = c->big;
  size_t k = b->n - b->off;
  uv_buf_t ub;
  if (c->tls) { /* encrypted from the value itself: the records are the
                   bounce */
    dl_buf *o = &c->tls->bout;
    if (k > TLS_CHUNK) k = TLS_CHUNK;
    o->len = 0;
    if (dl_tls_write(c->tls->t, b->data + b->off, k) ||
        dl_tls_pull(c->tls->t, o))
      return -1;
    b->off += k;
    ub = uv_buf_init(o->p, (unsigned)o->len);
    c->breq.data = c;
    return uv_write(&c->breq, &c->h.stream, &ub, 1, chunk_cb) ? -1 : 0;
  }
  if (k > DL_BOUNCE) k = DL_BOUNCE;
  memcpy(c->sbounce, b->data + b->off, k);
  b->off += k;
  ub = uv_buf_init(c->sbounce, (unsigned)k);
  c->breq.data = c;
  return uv_write(&c->breq, &c->h.stream, &ub, 1, chunk_cb) ? -1 : 0;
}

/* Start writing the first big frame: what goes before it and its head,
   then its first chunk (the gate locked by the caller): 0 or -1. */
static int big_start(dl_conn *c) {
  dl_bigsend *b = c->big;
  wreq *w;
  uv_buf_t ub;
  if (c->tls) {
    char *pre = b->pre;
    b->pre = NULL;
    if (tls_send(c, pre, b->plen) || c->closing) return -1;
    return big_chunk(c);
  }
  if ((w = dl_realloc(NULL, sizeof *w)) == NULL) return -1;
  w->p = b->pre;
  b->pre = NULL;
  ub = uv_buf_init(w->p, (unsigned)b->plen);
  if (uv_write(&w->req, &c->h.stream, &ub, 1, write_cb)) {
    dl_free(w->p);
    dl_free(w);
    return -1;
  }
  return big_chunk(c);
}

/* A chunk is written: the next one, the next frame, or the messages that
   waited for them. */
static void chunk_cb(uv_write_t *req, int status) {
  dl_conn *c = req->data;
  dl_wgate *g;
  dl_bigsend *b = c->big;
  int rc = 0;
  if (status < 0 || b == NULL) {
    big_abort(c); /* the read side reports the failure to the owner */
    return;
  }
  g = gate_lock(c);
  if (b->off < b->n) {
    rc = big_chunk(c);
    b = NULL;
  } else {
    c->big = b->next; /* b is out */
    if (c->big == NULL) c->big_tail = NULL;
    else rc = big_start(c);
  }
  gate_unlock(c, g);
  if (b) {
    b->done(b->ud);
    dl_free(b);
  }
  if (rc) big_abort(c);
  else if (c->big == NULL) dl_conn_flush(c);
}

int dl_conn_send_ref(dl_conn *c, const char *hdr, size_t hlen,
                     const char *data, size_t n, void (*done)(void *),
                     void *ud) {
  dl_bigsend *b;
  size_t total = hlen + n, sealed = 0;
  dl_wgate *g;
  int rc = 0;
  if (c->big == NULL) dl_conn_flush(c); /* else queued with it, below */
  else if (c->out.len > 4) sealed = c->out.len;
  if (c->closing || !writable(c) || total > DL_MAX_FRAME) {
    done(ud);
    return DL_EPROTO;
  }
  if (c->sbounce == NULL && c->tls == NULL)
    c->sbounce = dl_realloc(NULL, DL_BOUNCE);
  b = dl_realloc(NULL, sizeof *b);
  if (b) b->pre = dl_realloc(NULL, sealed + 4 + hlen);
  if ((c->sbounce == NULL && c->tls == NULL) || b == NULL || b->pre == NULL) {
    if (b) dl_free(b->pre);
    dl_free(b);
    done(ud);
    return DL_ENOMEM;
  }
  if (sealed) { /* messages sent after the frame being written, before b */
    size_t m = sealed - 4;
    c->out.p[0] = (char)(m & 0xff);
    c->out.p[1] = (char)((m >> 8) & 0xff);
    c->out.p[2] = (char)((m >> 16) & 0xff);
    c->out.p[3] = (char)((m >> 24) & 0xff);
    memcpy(b->pre, c->out.p, sealed);
    c->out.len = 0;
  }
  b->pre[sealed + 0] = (char)(total & 0xff);
  b->pre[sealed + 1] = (char)((total >> 8) & 0xff);
  b->pre[sealed + 2] = (char)((total >> 16) & 0xff);
  b->pre[sealed + 3] = (char)((total >> 24) & 0xff);
  memcpy(b->pre + sealed + 4, hdr, hlen);
  b->plen = sealed + 4 + hlen;
  b->next = NULL;
  b->data = data;
  b->n = n;
  b->off = 0;
  b->done = done;
  b->ud = ud;
  g = gate_lock(c);
  if (c->big) {
    c->big_tail->next = b;
    c->big_tail = b;
  } else {
    c->big = c->big_tail = b;
    rc = big_start(c);
  }
  gate_unlock(c, g);
  if (rc) {
    big_abort(c);
    return DL_EPROTO;
  }
  return 0;
}

void dl_conn_close(dl_conn *c) {
  if (c->closing) return;
  dl_conn_flush(c);
  conn_shut(c);
}

size_t dl_conn_write_queue(const dl_conn *c) {
  const dl_bigsend *b;
  size_t n = c->tr ? c->h.stream.write_queue_size : 0;
  for (b = c->big; b; b = b->next) n += b->n - b->off;
  return n;
}

static void listen_cb(uv_stream_t *s, int status) {
  dl_listener *l = s->data;
  if (status == 0) l->on_accept(l);
}

int dl_listener_open(dl_listener *l, uv_loop_t *loop, const char *addr,
                     dl_accept_cb on_accept, void *data) {
  int rc;
  l->tr = dl_transport_for(addr);
  l->on_accept = on_accept;
  l->data = data;
  rc = l->tr->init(loop, &l->h);
  if (rc) return rc;
  l->h.handle.data = l;
  rc = l->tr->bind(&l->h, addr);
  if (rc == 0) rc = uv_listen(&l->h.stream, 128, listen_cb);
  return rc;
}

int dl_listener_accept(dl_listener *l, dl_conn *c) {
  int rc = conn_init(c, l->tr);
  if (rc == 0) rc = uv_accept(&l->h.stream, &c->h.stream);
  if (rc == 0) rc = conn_start(c);
  if (rc) dl_conn_close(c);
  return rc;
}

void dl_listener_close(dl_listener *l) {
  if (!uv_is_closing(&l->h.handle)) uv_close(&l->h.handle, NULL);
}

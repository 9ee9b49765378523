/*
** dl_worker_serve.c -- serving stored values to peers and to the
** scheduler (GET / GETS / GETF in, DATA out), big ones without copies.
*/
#include "dl_worker_int.h"

static void blob_done(void *ud) { dl_w_blob_unref(ud); }

/*
** Answer a GET on c (from a peer or from the scheduler).  With shared_ok
** (a local peer's GETS) a big value is answered with where its block is,
** for the peer to copy out of this process or map; shared_ok 2 (GETF: the
** peer may not read this process) names a memfd, made now for a private
** block; else a big value goes in a frame of its own,
** written from the store a chunk at a time (no copy of the whole value),
** which the reader can take whole.
*/
int dl_w_serve_get(dl_conn *c, dl_rd *r, int shared_ok) {
  dl_msg_get g;
  dl_msg_data m;
  blob *bl;
  dl_mem_ref ref;
  const char *start;
  if (dl_get_get(r, &g)) return DL_EPROTO;
  if (W.remote) shared_ok = 0; /* the asker may be on another host */
  bl = dl_w_store_get(g.key, g.klen);
  if (bl && c != W.sched) /* a peer's fetch, not a gather for a client */
    atomic_fetch_add(&W.xfer_out, bl->len);
  start = bl ? (bl->base ? bl->base : bl->data) : NULL;
  if (bl && shared_ok && bl->len >= DL_MEM_BIG &&
      (shared_ok == 2 ? dl_mem_share_file : dl_mem_share)(
          start, (size_t)(bl->data - start) + bl->len, &ref) == 0) {
    dl_shared_at sa;
    sa.pid = (uint64_t)getpid();
    sa.ref = ref;
    sa.off = (uint64_t)(bl->data - start);
    sa.len = bl->len;
    dl_put_data_shared(dl_conn_msg(c), DL_M_DATA, g.reqid, g.key, g.klen,
                       &sa);
    /* The peer checks the inode or the block's seal: no need to hold it. */
    dl_w_blob_unref(bl);
    return 0;
  }
  if (bl && bl->len > ((size_t)64 << 10)) {
    dl_buf hdr;
    dl_buf_init(&hdr);
    dl_put_data_head(&hdr, DL_M_DATA, g.reqid, g.key, g.klen, 1, bl->len);
    dl_conn_send_ref(c, hdr.p, hdr.len, bl->data, bl->len, blob_done, bl);
    dl_buf_free(&hdr);
    return 0;
  }
  m.reqid = g.reqid;
  m.key = g.key;
  m.klen = g.klen;
  m.found = bl ? 1 : 0;
  m.bytes = bl ? bl->data : "";
  m.blen = bl ? bl->len : 0;
  dl_put_data(dl_conn_msg(c), DL_M_DATA, &m);
  dl_w_blob_unref(bl);
  return 0;
}

void dl_w_on_client_frame(dl_conn *c, const char *p, size_t n) {
  dl_rd r;
  dl_rd_init(&r, p, n);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    if (dl_wire_type(&r, &type) ||
        (type != DL_M_GET && type != DL_M_GETS && type != DL_M_GETF) ||
        dl_w_serve_get(c, &r, type == DL_M_GETF ? 2 : type == DL_M_GETS)) {
      dl_conn_close(c);
      return;
    }
  }
}

void dl_w_on_connection(dl_listener *l) {
  dl_conn *c = dl_conn_new(&W.loop, &W.fl, dl_w_on_client_frame, NULL, NULL);
  if (c) dl_listener_accept(l, c); /* closes c if it fails */
}

/*
** dl_worker_fetch.c -- fetching a task's inputs from the peers that
** hold them (GET / GETS / GETF out, DATA in), a few at a time.
*/
#include "dl_worker_int.h"

void dl_w_wtask_unref(wtask *t) {
  if (--t->refs == 0) dl_w_task_free(t);
}

peer *dl_w_find_peer(int id) {
  int i;
  for (i = 0; i < W.npeers; i++)
    if (W.peers[i].id == id) return &W.peers[i];
  return NULL;
}

static void on_peer_close(dl_conn *c);
static void fetch_next(fetch *f);

/* A connection to peer id (made on first use), or NULL. */
static dl_conn *peer_conn(int id) {
  peer *pr = dl_w_find_peer(id);
  if (pr == NULL || pr->addr[0] == '\0') return NULL;
  if (pr->conn == NULL) {
    pr->conn = dl_conn_new(&W.loop, &W.fl, dl_w_on_peer_frame, on_peer_close,
                           (void *)(intptr_t)id);
    if (pr->conn == NULL) return NULL;
    if (W.connect(pr->conn, pr->addr)) {
      dl_conn_close(pr->conn);
      pr->conn = NULL;
      return NULL;
    }
  }
  return pr->conn;
}

static void fetch_free(fetch *f) {
  dl_map_del(&W.fetches, f->key, f->klen);
  if (f->active) W.nactive--;
  dl_free(f->key);
  dl_free(f->who);
  dl_free(f->waiters);
  dl_free(f);
  /* Give the next waiting fetch its turn. */
  while (W.nactive < MAX_FETCHES && W.fetchq) {
    fetch *n = W.fetchq;
    W.fetchq = n->qnext;
    if (W.fetchq == NULL) W.fetchq_tail = NULL;
    n->active = 1;
    W.nactive++;
    fetch_next(n);
  }
}

/* Start f now if few fetches are out, else queue it. */
void dl_w_fetch_start(fetch *f) {
  if (W.nactive < MAX_FETCHES) {
    f->active = 1;
    W.nactive++;
    fetch_next(f);
    return;
  }
  f->qnext = NULL;
  if (W.fetchq_tail) W.fetchq_tail->qnext = f;
  else W.fetchq = f;
  W.fetchq_tail = f;
}

/* The input of f arrived (or is already local): release its waiters. */
static void fetch_done(fetch *f) {
  int i;
  for (i = 0; i < f->nwaiters; i++) {
    wtask *t = f->waiters[i];
    if (!t->dead && --t->missing == 0) {
      /* No other fetch holds t now: the waiting map's reference passes to
         the executor, which frees t when it is done; ours is dropped
         first, since t may be freed on the executor at any moment after
         dl_w_enqueue. */
      dl_map_del(&W.waiting, t->key, t->klen);
      t->refs--;
      dl_w_enqueue(t);
      continue;
    }
    dl_w_wtask_unref(t);
  }
  fetch_free(f);
}

/* Nobody has the input of f: its waiters go back to the scheduler. */
static void fetch_failed(fetch *f) {
  int i;
  for (i = 0; i < f->nwaiters; i++) {
    wtask *t = f->waiters[i];
    if (!t->dead) {
      dl_buf *b;
      t->dead = 1;
      if (W.sched) {
        dl_msg_missing m;
        m.key = t->key;
        m.klen = t->klen;
        m.dep = f->key;
        m.dlen = f->klen;
        b = dl_conn_msg(W.sched);
        dl_put_missing(b, &m);
      }
      /* A fetch that fails inside dl_w_on_compute, before t is put in the
         waiting map, leaves the task's own reference to dl_w_on_compute. */
      if (dl_map_get(&W.waiting, t->key, t->klen) == t) {
        dl_map_del(&W.waiting, t->key, t->klen);
        dl_w_wtask_unref(t); /* the waiting map's reference */
      }
    }
    dl_w_wtask_unref(t);
  }
  fetch_free(f);
}

static void fetch_next(fetch *f) {
  while (f->tried < f->nwho) {
    int id = f->who[f->tried++];
    dl_conn *c = peer_conn(id);
    if (c) {
      /* Over TCP the peer may be on another host, and with
         DLUA_SHARE_MEMORY=0 nothing of a peer's can be read: bytes, and
         no memfd made for us.  A peer whose memory we may not read is
         asked for a memfd at once. */
      int how = f->plain || W.remote || !dl_mem_sharing() ? 0
                : f->filed || W.read_refused ? 2 : 1;
      f->peer = id;
      dl_put_get(dl_conn_msg(c), how, 0, f->key, f->klen);
      return;
    }
  }
  fetch_failed(f);
}

/* Tell the scheduler this worker now holds a copy of key too, so the copy
   is freed with the original and can serve other peers. */
static void announce_copy(const char *key, size_t klen, size_t nbytes) {
  dl_msg_done m;
  if (W.sched == NULL) return;
  m.key = key;
  m.klen = klen;
  m.nbytes = nbytes;
  m.start_us = m.stop_us = 0; /* not a run */
  m.inl = "";
  m.ilen = 0;
  dl_put_done(dl_conn_msg(W.sched), &m);
}

/* Map a peer's block, or copy it out of the peer, and store the value in
   it: 0, or -1 if it cannot be had so, or 1 if reading the peer's memory
   (a block named by its address) was refused. */
static int take_shared(const dl_shared_at *sa, const char *key, size_t klen) {
  const char *m;
  errno = 0;
  m = W.map_shared(sa);
  if (m == NULL)
    return sa->ref.fd == DL_MEM_NOFD && errno == EPERM ? 1 : -1;
  if (dl_w_store_take(key, klen, (char *)m, (char *)m + sa->off, (size_t)sa->len))
    return -1; /* the mapping was freed with the failure */
  announce_copy(key, klen, (size_t)sa->len);
  return 0;
}

void dl_w_on_peer_frame(dl_conn *c, const char *p, size_t n) {
  dl_rd r;
  dl_rd_init(&r, p, n);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    dl_msg_data m;
    const char *key, *bytes;
    size_t klen, blen;
    uint64_t found;
    fetch *f;
    if (dl_wire_type(&r, &type) || type != DL_M_DATA || dl_get_data(&r, &m))
      return;
    key = m.key;
    klen = m.klen;
    found = m.found;
    bytes = m.bytes;
    blen = m.blen;
    f = dl_map_get(&W.fetches, key, klen);
    /* Only the answer of the peer asked now moves f on: another peer's
       (asked before, or never) would make f skip a peer, or ask the one
       before the first again (who[-1]). */
    if (f == NULL || !f->active || f->tried == 0 ||
        f->peer != (int)(intptr_t)c->data)
      continue;
    if (found == 2) {
      dl_shared_at sa;
      int ok = dl_shared_at_read(bytes, blen, &sa) == 0, rc = -1;
      if (ok) rc = take_shared(&sa, key, klen);
      if (rc == 0) {
        atomic_fetch_add(&W.xfer_in, sa.len);
        fetch_done(f);
        dl_w_io_relieve();
      } else { /* ask the same peer again: for a memfd, else the bytes */
        if (rc == 1) W.read_refused = 1;
        if (ok && sa.ref.fd == DL_MEM_NOFD && !f->filed) f->filed = 1;
        else f->plain = 1;
        f->tried--;
        fetch_next(f);
      }
    } else if (found) {
      char *base = dl_rd_left(&r) == 0 ? dl_conn_take_input(c, p) : NULL;
      int rc = base ? dl_w_store_take(key, klen, base, (char *)bytes, blen)
                    : dl_w_store_put(key, klen, bytes, blen);
      if (rc == 0) {
        atomic_fetch_add(&W.xfer_in, blen);
        announce_copy(key, klen, blen);
        fetch_done(f);
        dl_w_io_relieve(); /* may free p when base took it: it is not read again */
        if (base) return; /* p is ours now, and fully read */
      } else {
        fetch_next(f);
      }
    } else {
      fetch_next(f);
    }
  }
}

static void on_peer_close(dl_conn *c) {
  int id = (int)(intptr_t)c->data;
  peer *pr = dl_w_find_peer(id);
  size_t i = 0;
  fetch *f;
  fetch **retry = NULL;
  size_t nretry = 0;
  if (pr && pr->conn == c) pr->conn = NULL;
  /* Fetches that were waiting on it try the next holder. */
  while ((f = dl_map_next(&W.fetches, &i)) != NULL)
    if (f->peer == id) {
      fetch **nr = dl_realloc(retry, sizeof *nr * (nretry + 1));
      if (nr == NULL) break;
      retry = nr;
      retry[nretry++] = f;
    }
  for (i = 0; i < nretry; i++) {
    retry[i]->peer = -1;
    fetch_next(retry[i]);
  }
  dl_free(retry);
}

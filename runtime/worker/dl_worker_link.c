/*
** dl_worker_link.c -- the link to the scheduler (fd 3): COMPUTE, FUNC,
** FREE, CANCEL, STEAL, STORE and PEER in; DONE, ERR, MISSING, STOLEN and
** HEARTBEAT out.
*/
#include "dl_worker_int.h"

/* ============================================================ I/O side */

static void send_err_now(const char *key, size_t klen, int kind,
                         const char *msg) {
  dl_buf rec, *b;
  if (W.sched == NULL) return;
  dl_buf_init(&rec);
  dl_put_err_rec(&rec, kind, msg, NULL, W.wname, NULL, 0);
  b = dl_conn_msg(W.sched);
  {
    dl_msg_err m;
    m.key = key;
    m.klen = klen;
    m.kind = (uint64_t)kind;
    m.rec = rec.p;
    m.rlen = rec.len;
    dl_put_err_msg(b, DL_M_ERR, &m);
  }
  dl_buf_free(&rec);
}

void dl_w_put_outcome(dl_buf *b, const wtask *t) {
  if (t->type == DL_M_DONE) {
    dl_msg_done m;
    m.key = t->key;
    m.klen = t->klen;
    m.nbytes = t->nbytes;
    m.start_us = t->start_us;
    m.stop_us = t->stop_us;
    /* Small results ride along with the news. */
    m.inl = t->res ? t->res->data : "";
    m.ilen = t->res ? t->res->len : 0;
    dl_put_done(b, &m);
  } else {
    dl_msg_err m;
    m.key = t->key;
    m.klen = t->klen;
    m.kind = (uint64_t)t->kind;
    m.rec = t->rec.p;
    m.rlen = t->rec.len;
    dl_put_err_msg(b, DL_M_ERR, &m);
  }
}

void dl_w_done_cb(uv_async_t *h) {
  wtask *t;
  (void)h;
  uv_mutex_lock(&W.lock);
  t = W.done_head;
  W.done_head = W.done_tail = NULL;
  if (t && W.sched) dl_w_beat_if_spilled(dl_conn_msg(W.sched));
  if (W.lout.len) { /* the tasks' client messages, before their ends */
    if (W.sched) {
      dl_buf_put(dl_conn_msg(W.sched), W.lout.p, W.lout.len);
      /* Handed to the socket under the lock, so that what the executor
         writes itself next cannot overtake them (dl_worker_link_send). */
      dl_conn_flush(W.sched);
    }
    W.lout.len = 0;
  }
  uv_mutex_unlock(&W.lock);
  while (t) {
    wtask *next = t->next;
    if (W.sched) dl_w_put_outcome(dl_conn_msg(W.sched), t);
    dl_w_task_free(t);
    t = next;
  }
  /* Frames the executor read from the link and left (dl_w_exec_take). */
  if (W.sched) dl_conn_rgate_drain(W.sched);
}


int dl_w_on_compute(dl_rd *r) {
  dl_msg_compute m;
  dl_rd *deps = &m.deps;
  uint64_t i, j;
  wtask *t;
  int rc = DL_EPROTO;
  if (dl_get_compute(r, &m)) return DL_EPROTO;
  t = dl_w_task_new(m.key, m.klen, m.payload, m.plen, m.fns, m.nfns,
                    &m.deps, m.ndeps);
  if (t == NULL) return DL_ENOMEM;
  t->timeout_ms = (uint32_t)m.timeout_ms;
  t->prio = m.prio;
  t->seq = ++W.nextseq;
  t->refs = 1;
  for (i = 0; i < m.ndeps; i++) {
    const char *dk;
    size_t dkl;
    uint64_t nwho, id;
    fetch *f;
    if (dl_get_compute_dep(deps, &dk, &dkl, &nwho)) goto fail;
    if (dl_w_store_has(dk, dkl)) {
      for (j = 0; j < nwho; j++)
        if (dl_get_id(deps, &id)) goto fail;
      continue;
    }
    f = dl_map_get(&W.fetches, dk, dkl);
    if (f == NULL) {
      f = dl_realloc(NULL, sizeof *f);
      memset(f, 0, sizeof *f);
      f->key = dupb(dk, dkl);
      f->klen = dkl;
      f->peer = -1;
      f->who = dl_realloc(NULL, sizeof(int) * (nwho + 1));
      for (j = 0; j < nwho; j++) {
        if (dl_get_id(deps, &id)) {
          dl_free(f->key);
          dl_free(f->who);
          dl_free(f);
          goto fail;
        }
        if ((int)id != W.id) f->who[f->nwho++] = (int)id;
      }
      dl_map_put(&W.fetches, f->key, f->klen, f);
      f->waiters = dl_realloc(NULL, sizeof(wtask *));
      f->waiters[f->nwaiters++] = t;
      t->refs++;
      t->missing++;
      dl_w_fetch_start(f); /* may fail at once: then t is dead */
    } else {
      wtask **nw;
      for (j = 0; j < nwho; j++)
        if (dl_get_id(deps, &id)) goto fail;
      nw = dl_realloc(f->waiters, sizeof *nw * (size_t)(f->nwaiters + 1));
      if (nw == NULL) {
        rc = DL_ENOMEM;
        goto fail;
      }
      f->waiters = nw;
      f->waiters[f->nwaiters++] = t;
      t->refs++;
      t->missing++;
    }
  }
  if (t->dead) {
    dl_w_wtask_unref(t);
    return 0;
  }
  if (t->missing == 0) {
    dl_w_enqueue(t); /* the executor owns it now */
  } else {
    /* A task of the same key still waiting is superseded: it dies, and
       the map's reference passes to t (put first: the map still points
       at the old key). */
    wtask *old = dl_map_get(&W.waiting, t->key, t->klen);
    dl_map_put(&W.waiting, t->key, t->klen, t); /* keeps its reference */
    if (old) {
      old->dead = 1;
      dl_w_wtask_unref(old);
    }
  }
  return 0;
fail:
  /* Fetches already started for t hold it too: it dies, and the last of
     them frees it. */
  t->dead = 1;
  dl_w_wtask_unref(t);
  return rc;
}

/* 1 if the COMPUTE message at r (its type read) has every input stored
   here; r is moved past it. */
static int compute_is_local(dl_rd *r) {
  dl_msg_compute m;
  uint64_t i, j, id;
  if (dl_get_compute(r, &m)) return 0;
  for (i = 0; i < m.ndeps; i++) {
    const char *dk;
    size_t dkl;
    uint64_t nwho;
    if (dl_get_compute_dep(&m.deps, &dk, &dkl, &nwho) ||
        !dl_w_store_has(dk, dkl))
      return 0;
    for (j = 0; j < nwho; j++)
      if (dl_get_id(&m.deps, &id)) return 0;
  }
  return 1;
}

/* 1 if the message at r (its type read) is news for the tasks' client,
   well formed; r is moved past it. */
static int read_news(dl_rd *r, unsigned type) {
  switch (type) {
    case DL_M_KEY_DONE: {
      dl_msg_key_done m;
      return dl_get_key_done(r, &m) == 0;
    }
    case DL_M_KEY_ERR: {
      dl_msg_err m;
      return dl_get_err_msg(r, &m) == 0;
    }
    case DL_M_GATHER_REPLY: {
      dl_msg_data m;
      return dl_get_data(r, &m) == 0;
    }
    case DL_M_COORD_REPLY: {
      dl_msg_coord_reply m;
      return dl_get_coord_reply(r, &m) == 0;
    }
  }
  return 0;
}

/* The n bytes at p are a frame of news only (a waiting task's answer):
   hand it to the tasks' client as the I/O thread would (W.cin); 1 if
   taken. */
static int take_news_frame(const char *p, size_t n) {
  dl_rd r;
  int rc;
  dl_rd_init(&r, p, n);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    if (dl_wire_type(&r, &type) || !read_news(&r, type)) return 0;
  }
  uv_mutex_lock(&W.lock);
  rc = dl_buf_put(&W.cin, p, n);
  uv_mutex_unlock(&W.lock);
  if (rc) return 0;
  dl_w_work_came();
  return 1;
}

/*
** The executor's side of the scheduler link's read gate (dl_rgate, see
** dl_w_exec_main's await_task): a frame that is one task whose inputs
** are all stored here (the common case of a round trip) is queued here,
** and a frame of news for the tasks' client (the answer a parked task
** waits for: a Queue's item, a gather's values) goes to W.cin; anything
** else is left to the I/O thread, as is a task that cannot be
** queued for want of memory (which ends the worker there).  Runs under the gate's
** lock, which the I/O thread holds while it handles the link's frames, so
** the two never handle frames at once (the store cannot lose an input in
** between: only a FREE from the link drops values).
*/
int dl_w_exec_take(void *ud, const char *p, size_t n) {
  dl_rd r;
  unsigned type;
  (void)ud;
  dl_rd_init(&r, p, n);
  if (dl_wire_type(&r, &type)) return 0;
  if (type != DL_M_COMPUTE) return take_news_frame(p, n);
  if (!compute_is_local(&r) || dl_rd_left(&r)) return 0;
  dl_rd_init(&r, p, n);
  dl_wire_type(&r, &type);
  /* Fails only before it changes anything (the task's record). */
  return dl_w_on_compute(&r) == 0;
}

/* Take the task named key out of the executor's queue, if it is there. */
static wtask *queue_remove(const char *key, size_t klen) {
  wtask **pp, *t = NULL, *prev = NULL;
  uv_mutex_lock(&W.lock);
  for (pp = &W.qhead; *pp; prev = *pp, pp = &(*pp)->next)
    if ((*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0) {
      t = *pp;
      *pp = t->next;
      if (W.qtail == t) W.qtail = prev;
      break;
    }
  uv_mutex_unlock(&W.lock);
  return t;
}

static void on_cancel(const char *key, size_t klen) {
  wtask *t = queue_remove(key, klen);
  if (t) {
    send_err_now(key, klen, DL_ERR_CANCELLED, "cancelled");
    dl_w_task_free(t);
    return;
  }
  t = dl_map_get(&W.waiting, key, klen);
  if (t) {
    t->dead = 1;
    dl_map_del(&W.waiting, key, klen);
    send_err_now(key, klen, DL_ERR_CANCELLED, "cancelled");
    dl_w_wtask_unref(t);
    return;
  }
  /* A running task is interrupted by the caller (dl_w_on_sched_frame);
     one that waits (parked) is stopped by the executor. */
  uv_mutex_lock(&W.lock);
  dl_buf_str(&W.pcancel, key, klen);
  dl_w_wake_exec();
  uv_mutex_unlock(&W.lock);
}

/* Make the running task raise at its next instruction (W.lock held). */
void dl_w_interrupt_running(int kind) {
  W.cancel_kind = kind;
  lua_sethook(W.L, dl_w_interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT,
              1);
}

void dl_w_on_sched_frame(dl_conn *c, const char *p, size_t n) {
  dl_rd r;
  int news = 0; /* the frame had news for the tasks' client */
  (void)c;
  dl_rd_init(&r, p, n);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    dl_msg_key km;
    const char *key;
    size_t klen;
    int rc = 0;
    dl_wire_type(&r, &type);
    switch (type) {
      case DL_M_COMPUTE: rc = dl_w_on_compute(&r); break;
      case DL_M_FUNC: {
        dl_msg_func m;
        fnent *f;
        if (dl_get_func_msg(&r, &m)) {
          rc = DL_EPROTO;
          break;
        }
        f = dl_realloc(NULL, sizeof *f + m.len);
        if (f == NULL) {
          rc = DL_ENOMEM;
          break;
        }
        memcpy(f->hash, m.hash, 16);
        f->len = m.len;
        memcpy(f->code, m.code, m.len);
        uv_mutex_lock(&W.lock);
        if (dl_map_get(&W.fns, m.hash, 16)) dl_free(f);
        else dl_map_put(&W.fns, (const char *)f->hash, 16, f);
        uv_mutex_unlock(&W.lock);
        break;
      }
      case DL_M_FUNC_FREE: {
        dl_msg_hash m;
        fnent *f;
        if (dl_get_hash_msg(&r, &m)) {
          rc = DL_EPROTO;
          break;
        }
        uv_mutex_lock(&W.lock);
        f = dl_map_del(&W.fns, m.hash, 16);
        if (f) {
          f->next = W.fns_dead;
          W.fns_dead = f;
        }
        uv_mutex_unlock(&W.lock);
        break;
      }
      case DL_M_FREE: {
        blob *b;
        if (dl_get_key_msg(&r, &km)) {
          rc = DL_EPROTO;
          break;
        }
        key = km.key;
        klen = km.klen;
        uv_mutex_lock(&W.lock);
        b = dl_map_del(&W.store, key, klen);
        if (b) {
          dl_w_store_account_drop(b);
          if (b->cached) dl_w_frees_push(key, klen);
        }
        uv_mutex_unlock(&W.lock);
        dl_w_blob_unref(b);
        break;
      }
      case DL_M_STEAL: {
        dl_msg_stolen m;
        wtask *t;
        if (dl_get_key_msg(&r, &km)) {
          rc = DL_EPROTO;
          break;
        }
        t = queue_remove(km.key, km.klen);
        m.key = km.key;
        m.klen = km.klen;
        m.ok = t != NULL;
        if (t) dl_w_task_free(t);
        dl_put_stolen(dl_conn_msg(W.sched), &m);
        break;
      }
      case DL_M_CANCEL:
        if (dl_get_key_msg(&r, &km)) {
          rc = DL_EPROTO;
          break;
        }
        key = km.key;
        klen = km.klen;
        on_cancel(key, klen);
        uv_mutex_lock(&W.lock);
        if (W.running_seq && dl_w_running_klen == klen &&
            memcmp(dl_w_running_key, key, klen) == 0)
          dl_w_interrupt_running(DL_ERR_CANCELLED);
        uv_mutex_unlock(&W.lock);
        break;
      case DL_M_STORE: {
        dl_msg_store m;
        dl_msg_done d;
        if (dl_get_store(&r, &m)) {
          rc = DL_EPROTO;
          break;
        }
        if (dl_w_store_put(m.key, m.klen, m.bytes, m.blen)) {
          send_err_now(m.key, m.klen, DL_ERR_RAISED, "out of memory");
          break;
        }
        d.key = m.key;
        d.klen = m.klen;
        d.nbytes = m.blen;
        d.start_us = d.stop_us = 0; /* not a run */
        d.inl = "";
        d.ilen = 0;
        dl_put_done(dl_conn_msg(W.sched), &d);
        dl_w_io_relieve();
        break;
      }
      case DL_M_PEER: {
        dl_msg_peer m;
        uint64_t id;
        const char *bytes;
        size_t blen;
        peer *pr;
        if (dl_get_peer(&r, &m) || m.alen >= sizeof pr->addr) {
          rc = DL_EPROTO;
          break;
        }
        id = m.id;
        bytes = m.addr;
        blen = m.alen;
        pr = dl_w_find_peer((int)id);
        if (pr == NULL) {
          peer *np = dl_realloc(W.peers, sizeof *np * (size_t)(W.npeers + 1));
          if (np == NULL) break;
          W.peers = np;
          pr = &W.peers[W.npeers++];
          memset(pr, 0, sizeof *pr);
          pr->id = (int)id;
        }
        memcpy(pr->addr, bytes, blen);
        pr->addr[blen] = '\0';
        if (blen == 0 && pr->conn) dl_conn_close(pr->conn);
        break;
      }
      case DL_M_KEY_DONE:
      case DL_M_KEY_ERR:
      case DL_M_GATHER_REPLY:
      case DL_M_COORD_REPLY: { /* news for the tasks' client */
        const char *at = r.p - 1;
        if (!read_news(&r, type)) {
          rc = DL_EPROTO;
          break;
        }
        uv_mutex_lock(&W.lock);
        dl_buf_put(&W.cin, at, (size_t)(r.p - at));
        uv_mutex_unlock(&W.lock);
        news = 1;
        break;
      }
      case DL_M_CYCLE: {
        dl_msg_two m;
        if (dl_get_two_msg(&r, &m)) {
          rc = DL_EPROTO;
          break;
        }
        uv_mutex_lock(&W.lock);
        dl_buf_str(&W.cyc, m.a, m.alen);
        dl_buf_str(&W.cyc, m.b, m.blen);
        dl_w_wake_exec();
        uv_mutex_unlock(&W.lock);
        break;
      }
      case DL_M_GET: rc = dl_w_serve_get(c, &r, 0); break;
      case DL_M_GETS: rc = dl_w_serve_get(c, &r, 1); break;
      case DL_M_GETF: rc = dl_w_serve_get(c, &r, 2); break;
      case DL_M_WELCOME: {
        uint64_t id;
        /* The id given to a worker that joined over TCP: it answers with
           its hello. */
        if (!W.remote || W.id != 0 || dl_get_welcome(&r, &id) || id == 0 ||
            id > INT32_MAX) {
          rc = DL_EPROTO;
          break;
        }
        W.id = (int)id;
        dl_w_send_hello();
        break;
      }
      case DL_M_WREFUSE: {
        const char *why;
        size_t wl;
        if (!W.remote || (rc = dl_get_wrefuse(&r, &why, &wl))) {
          rc = DL_EPROTO;
          break;
        }
        fprintf(stderr, "dlua worker: the scheduler at %s refused this "
                "worker: %.*s\n", W.connect_to, (int)wl, why);
        W.refused = 1;
        W.told_to_stop = 1;
        uv_stop(&W.loop);
        return;
      }
      case DL_M_SHUTDOWN:
        W.told_to_stop = 1;
        uv_stop(&W.loop);
        return;
      default: rc = DL_EPROTO;
    }
    if (rc) {
      fprintf(stderr, "dlua worker %d: malformed message from the "
              "scheduler (type %u); exiting\n", W.id, type);
      uv_stop(&W.loop);
      break;
    }
  }
  /* The executor is woken once per frame, after the lock is let go: a
     signal under the lock wakes it only to wait for the lock (a second
     sleep and wake on every answer a waiting task gets). */
  if (news) {
    dl_w_work_came(); /* a spinning executor sees it now */
    dl_w_wake_exec();
  }
}


/* Append a heartbeat to b, W.lock held. */
static void put_beat(dl_buf *b) {
  dl_msg_heartbeat m;
  int64_t rss;
  /* Measured with managed, under the lock that stores and frees values,
     so one heartbeat's figures agree (stored values are part of rss). */
  dl_w_mem_bytes(&rss);
  m.managed = (uint64_t)W.managed;
  m.spilled = (uint64_t)W.spilled;
  m.rss = (uint64_t)rss;
  m.executing = (uint64_t)(W.running_seq != 0);
  m.stored = (uint64_t)W.store.count;
  m.paused = (uint64_t)W.paused;
  m.spill_err = W.spill_err;
  m.selen = strlen(W.spill_err);
  m.spill_out = atomic_load(&W.spill_out);
  m.spill_in = atomic_load(&W.spill_in);
  m.xfer_in = atomic_load(&W.xfer_in);
  m.xfer_out = atomic_load(&W.xfer_out);
  W.beat_spilled = W.spilled;
  W.beat_spill_out = m.spill_out;
  dl_put_heartbeat(b, &m);
}

void dl_w_beat_if_spilled(dl_buf *b) {
  if (W.id == 0) return; /* no hello yet */
  if (W.spilled != W.beat_spilled ||
      atomic_load(&W.spill_out) != W.beat_spill_out)
    put_beat(b);
}

void dl_w_beat_cb(uv_timer_t *t) {
  (void)t;
  if (W.sched == NULL || W.id == 0) return; /* no hello yet */
  uv_mutex_lock(&W.lock);
  put_beat(dl_conn_msg(W.sched));
  uv_mutex_unlock(&W.lock);
  dl_w_prof_put(dl_conn_msg(W.sched));
}

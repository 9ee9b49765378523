/*
** dl_worker_store.c -- the worker's store: results kept encoded under
** their keys, in memory or spilled to files in the cluster's directory.
*/
#include "dl_worker_int.h"

static void spill_path(char *out, size_t n, uint64_t fid) {
  snprintf(out, n, "%s/w%d-spill-%llu", W.dir, W.id, (unsigned long long)fid);
}

/* A blob record for key with room for an inline value of n bytes (data
   points there), holding one reference; NULL if out of memory. */
blob *dl_w_blob_new(const char *key, size_t klen, size_t n) {
  blob *b = dl_realloc(NULL, sizeof *b + klen + 1 + n);
  if (b == NULL) return NULL;
  memset(b, 0, sizeof *b);
  atomic_init(&b->refs, 1);
  b->key = b->mem;
  b->klen = klen;
  if (klen) memcpy(b->mem, key, klen);
  b->mem[klen] = '\0';
  b->data = b->mem + klen + 1;
  b->len = n;
  b->inl = 1;
  return b;
}

void dl_w_blob_unref(blob *b) {
  if (b && atomic_fetch_sub(&b->refs, 1) == 1) {
    if (b->fid) {
      char path[400];
      spill_path(path, sizeof path, b->fid);
      unlink(path);
    }
    if (!b->inl) dl_free(b->base ? b->base : b->data);
    dl_free(b);
  }
}

/* Forget the bytes of old (removed from the store; W.lock held). */
void dl_w_store_account_drop(blob *old) {
  if (old->data) W.managed -= (int64_t)old->len;
  else W.spilled -= (int64_t)old->len;
}

/* Queue key for removal from the executor's cache (W.lock held). */
void dl_w_frees_push(const char *key, size_t klen) {
  if (W.nfrees == W.capfrees) {
    int nc = W.capfrees ? W.capfrees * 2 : 16;
    char **nf = dl_realloc(W.frees, sizeof *nf * (size_t)nc);
    if (nf == NULL) return;
    W.frees = nf;
    W.capfrees = nc;
  }
  W.frees[W.nfrees] = dupb(key, klen);
  if (W.frees[W.nfrees]) W.nfrees++;
}

/*
** Put b in the store under its key, replacing an older copy, and forget
** the older one's bytes.  Takes ownership of b's reference.  If the older
** copy may have a decoded twin in the executor's cache, *old_cached is set
** to 1, or, with old_cached NULL, the key is queued for the executor to
** drop from its cache.  Returns 0, or DL_ENOMEM (then b is freed).
*/
int dl_w_store_insert(blob *b, int *old_cached) {
  blob *old;
  int err = 0;
  uv_mutex_lock(&W.lock);
  b->lru = ++W.lru_clock;
  old = dl_map_swap(&W.store, b->key, b->klen, b, &err);
  if (err) {
    uv_mutex_unlock(&W.lock);
    dl_w_blob_unref(b);
    return err;
  }
  if (old) {
    dl_w_store_account_drop(old);
    if (old->cached && old_cached) *old_cached = 1;
    else if (old->cached) dl_w_frees_push(b->key, b->klen);
  }
  W.managed += (int64_t)b->len;
  /* A copy fetched or stored while the executor is idle: wake it to spill
     (a running task relieves memory when it ends anyway). */
  if (W.memory_limit > 0 && W.running_seq == 0 && !W.relieve &&
      (double)W.managed > W.frac_target * (double)W.memory_limit) {
    W.relieve = 1;
    dl_w_wake_exec();
  }
  uv_mutex_unlock(&W.lock);
  dl_w_blob_unref(old);
  return 0;
}

/*
** Store the n bytes at data under key.  Takes ownership of base, the
** allocation data lies in (NULL: data itself); it is freed on failure too.
*/
int dl_w_store_take(const char *key, size_t klen, char *base, char *data,
                    size_t n) {
  blob *b = dl_w_blob_new(key, klen, 0);
  char *owned = base ? base : data;
  if (b == NULL || owned == NULL) {
    dl_free(owned);
    dl_free(b);
    return DL_ENOMEM;
  }
  b->inl = 0;
  b->len = n;
  b->data = data;
  b->base = base;
  return dl_w_store_insert(b, NULL);
}

/* Store a copy of the n bytes at p under key. */
int dl_w_store_put(const char *key, size_t klen, const char *p, size_t n) {
  blob *b;
  char *d;
  if (n <= SMALL_MAX) {
    b = dl_w_blob_new(key, klen, n);
    if (b == NULL) return DL_ENOMEM;
    memcpy(b->data, p, n);
    return dl_w_store_insert(b, NULL);
  }
  d = dl_realloc(NULL, n);
  if (d == NULL) return DL_ENOMEM;
  memcpy(d, p, n);
  return dl_w_store_take(key, klen, NULL, d, n);
}

/* Read a spilled value back: a private blob (not in the store), or NULL if
   the file cannot be read whole (then the value counts as lost).  A big
   value is mapped from the file, not copied. */
static blob *unspill(uint64_t fid, size_t len) {
  char path[400];
  blob *b;
  int fd;
  struct stat st;
  spill_path(path, sizeof path, fid);
  b = dl_realloc(NULL, sizeof *b);
  if (b == NULL) return NULL;
  memset(b, 0, sizeof *b);
  atomic_init(&b->refs, 1);
  b->len = len;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0 && (fstat(fd, &st) != 0 || (uint64_t)st.st_size < len)) {
    close(fd);
    fd = -1;
  }
  if (fd >= 0 && len >= DL_MEM_BIG) {
    b->data = (char *)dl_mem_map_fd(fd, len); /* closes fd on failure */
    if (b->data) {
      atomic_fetch_add(&W.spill_in, len);
      return b;
    }
  } else if (fd >= 0) {
    size_t got = 0;
    ssize_t r = 1;
    b->data = dl_realloc(NULL, len ? len : 1);
    while (b->data && got < len &&
           ((r = read(fd, b->data + got, len - got)) > 0 ||
            (r < 0 && errno == EINTR)))
      if (r > 0) got += (size_t)r;
    close(fd);
    if (b->data && got == len) {
      atomic_fetch_add(&W.spill_in, len);
      return b;
    }
    dl_free(b->data);
  }
  fprintf(stderr, "dlua worker %d: cannot read spilled value back from "
          "%s; it will be recomputed\n", W.id, path);
  dl_free(b);
  return NULL;
}

/* A reference to the stored bytes of key (read back from disk if spilled),
   or NULL. */
blob *dl_w_store_get(const char *key, size_t klen) {
  blob *b;
  uint64_t fid = 0;
  size_t len = 0;
  uv_mutex_lock(&W.lock);
  b = dl_map_get(&W.store, key, klen);
  if (b) {
    b->lru = ++W.lru_clock;
    if (b->data) {
      atomic_fetch_add(&b->refs, 1);
    } else {
      fid = b->fid;
      len = b->len;
      b = NULL;
    }
  }
  uv_mutex_unlock(&W.lock);
  if (fid) b = unspill(fid, len);
  return b;
}

/*
** Spill least-recently-used values to disk until managed memory is at most
** goal bytes.  Runs on the executor thread between tasks; file I/O happens
** outside the lock.  A full disk leaves the value in memory, unharmed.
*/
void dl_w_spill_until(int64_t goal) {
  for (;;) {
    blob *victim = NULL, *b, *stub = NULL;
    size_t i = 0;
    char path[400];
    FILE *f;
    int ok, done = 0, err;
    uint64_t fid;
    uv_mutex_lock(&W.lock);
    if (W.managed <= goal || W.leaving ||
        (W.spill_err[0] && now_s() < W.spill_retry)) {
      uv_mutex_unlock(&W.lock);
      return;
    }
    while ((b = dl_map_next(&W.store, &i)) != NULL)
      if (b->data && atomic_load(&b->refs) == 1 &&
          (victim == NULL || b->lru < victim->lru))
        victim = b;
    if (victim == NULL) {
      uv_mutex_unlock(&W.lock);
      return;
    }
    atomic_fetch_add(&victim->refs, 1); /* pinned: nobody frees it */
    fid = ++W.next_fid;
    W.spilling++;
    uv_mutex_unlock(&W.lock);
    spill_path(path, sizeof path, fid);
    errno = 0;
    f = fopen(path, "wbe"); /* e: close-on-exec, tasks' children never
                               see it */
    ok = f != NULL && fwrite(victim->data, 1, victim->len, f) == victim->len;
    err = errno;
    if (f && fclose(f) != 0 && ok) {
      ok = 0;
      err = errno;
    }
    /* An inline value cannot be freed on its own: a record without it
       takes the victim's place. */
    if (ok && victim->inl) {
      stub = dl_w_blob_new(victim->key, victim->klen, 0);
      if (stub == NULL) done = 1; /* no memory now: try after a task */
    }
    uv_mutex_lock(&W.lock);
    if (!ok) {
      /* Keep the values in memory and try again a second later: space
         may be freed meanwhile. */
      if (!W.spill_err[0])
        fprintf(stderr, "dlua worker %d: cannot spill to %s (%s); keeping "
                "values in memory, retrying every second\n", W.id, path,
                strerror(err ? err : EIO));
      snprintf(W.spill_err, sizeof W.spill_err, "%s",
               strerror(err ? err : EIO));
      W.spill_retry = now_s() + 1.0;
      unlink(path);
      done = 1;
    } else if (dl_map_get(&W.store, victim->key, victim->klen) == victim &&
               atomic_load(&victim->refs) == 2 && !done) {
      if (stub) {
        stub->inl = 0;
        stub->data = NULL;
        stub->len = victim->len;
        stub->lru = victim->lru;
        stub->cached = victim->cached;
        stub->fid = fid;
        dl_map_put(&W.store, stub->key, stub->klen, stub);
        atomic_fetch_sub(&victim->refs, 1); /* the store's reference */
        stub = NULL;
      } else {
        dl_free(victim->base ? victim->base : victim->data);
        victim->data = victim->base = NULL;
        victim->fid = fid;
      }
      W.managed -= (int64_t)victim->len;
      W.spilled += (int64_t)victim->len;
      atomic_fetch_add(&W.spill_out, victim->len);
      if (W.spill_err[0])
        fprintf(stderr, "dlua worker %d: spilling works again\n", W.id);
      W.spill_err[0] = '\0';
    } else { /* freed or read meanwhile: keep it as it is */
      unlink(path);
    }
    if (--W.spilling == 0 && W.leaving) uv_cond_broadcast(&W.cond);
    uv_mutex_unlock(&W.lock);
    dl_free(stub);
    dl_w_blob_unref(victim);
    if (done) return;
  }
}

/*
** On the I/O thread, after storing a value that came from elsewhere: past
** the spill fraction the executor may not get to it in time (a burst of
** big values in one frame would restart the worker), so spill here, down
** to the target.
*/
void dl_w_io_relieve(void) {
  int64_t managed;
  uv_mutex_lock(&W.lock);
  managed = W.managed;
  uv_mutex_unlock(&W.lock);
  if (W.memory_limit > 0 &&
      (double)managed > W.frac_spill * (double)W.memory_limit)
    dl_w_spill_until((int64_t)(W.frac_target * (double)W.memory_limit));
}

int dl_w_store_has(const char *key, size_t klen) {
  int has;
  uv_mutex_lock(&W.lock);
  has = dl_map_get(&W.store, key, klen) != NULL;
  uv_mutex_unlock(&W.lock);
  return has;
}

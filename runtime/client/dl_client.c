/*
** dl_client.c -- the client's table of futures (see dl_client.h).
*/
#include <string.h>

#include "dl_client.h"
#include "dl_wire.h"

void dl_client_init(dl_client *c) {
  memset(c, 0, sizeof *c);
  dl_map_init(&c->futs);
}

static void set_data(dl_cfut *f, char *data, size_t dlen) {
  dl_free(f->data);
  f->data = data;
  f->dlen = dlen;
}

/* Free f if no handle points at it and no list holds it. */
static void maybe_free(dl_cfut *f) {
  if (f->holds == 0) {
    dl_free(f->data);
    dl_free(f);
  }
}

void dl_client_close(dl_client *c, dl_buf *out) {
  size_t i = 0, k;
  dl_cfut *f;
  while ((f = dl_map_next(&c->futs, &i)) != NULL) {
    uint32_t r;
    if (out)
      for (r = 0; r < f->refs; r++)
        dl_put_key_msg(out, DL_M_RELEASE, f->key, f->klen);
    f->c = NULL;
    maybe_free(f);
  }
  dl_map_free(&c->futs);
  dl_map_init(&c->futs);
  for (k = 0; k < c->nfired; k++) dl_client_drop(c->fired[k]);
  dl_free(c->fired);
  c->fired = NULL;
  c->nfired = c->capfired = 0;
}

void dl_client_free(dl_client *c) { dl_client_close(c, NULL); }

dl_cfut *dl_client_ref(dl_client *c, const char *key, size_t klen) {
  dl_cfut *f = dl_map_get(&c->futs, key, klen);
  if (f) {
    f->refs++;
    f->holds++;
    return f;
  }
  if (klen > UINT32_MAX) return NULL;
  f = dl_realloc(NULL, offsetof(dl_cfut, key) + klen + 1);
  if (f == NULL) return NULL;
  memset(f, 0, offsetof(dl_cfut, key));
  memcpy(f->key, key, klen);
  f->key[klen] = '\0';
  f->klen = (uint32_t)klen;
  f->c = c;
  f->refs = f->holds = 1;
  if (dl_map_put(&c->futs, f->key, klen, f)) {
    dl_free(f);
    return NULL;
  }
  return f;
}

void dl_client_ref_again(dl_cfut *f) {
  f->refs++;
  f->holds++;
}

dl_cfut *dl_client_get(dl_client *c, const char *key, size_t klen) {
  return dl_map_get(&c->futs, key, klen);
}

void dl_client_unref(dl_cfut *f, dl_buf *out) {
  if (f->refs == 0) return;
  f->refs--;
  if (f->c == NULL) return;
  /* One RELEASE per handle, as the scheduler counted one per handle. */
  if (out) dl_put_key_msg(out, DL_M_RELEASE, f->key, f->klen);
  if (f->refs > 0) return;
  dl_map_del(&f->c->futs, f->key, f->klen);
  f->c = NULL;
}

void dl_client_drop(dl_cfut *f) {
  if (f->holds > 0) f->holds--;
  maybe_free(f);
}

/* f is done: if callbacks wait, put it (with a hold) in the fired list. */
static int fire(dl_client *c, dl_cfut *f) {
  if (!(f->flags & DL_FUT_CALLBACKS)) return 0;
  if (c->nfired == c->capfired) {
    size_t nc = c->capfired ? 2 * c->capfired : 16;
    dl_cfut **n = dl_realloc(c->fired, nc * sizeof *n);
    if (n == NULL) return DL_ENOMEM;
    c->fired = n;
    c->capfired = nc;
  }
  f->flags &= (uint8_t)~DL_FUT_CALLBACKS;
  f->holds++;
  c->fired[c->nfired++] = f;
  return 0;
}

/* The record of key that news may change, or NULL. */
static dl_cfut *newsworthy(dl_client *c, const char *key, size_t klen) {
  dl_cfut *f = dl_map_get(&c->futs, key, klen);
  if (f == NULL || f->status == DL_FUT_FINISHED ||
      f->status == DL_FUT_CANCELLED)
    return NULL;
  return f;
}

static char *dup_bytes(const char *p, size_t n) {
  char *d = dl_realloc(NULL, n ? n : 1);
  if (d && n) memcpy(d, p, n);
  return d;
}

int dl_client_done(dl_client *c, const char *key, size_t klen,
                   const char *bytes, size_t blen) {
  dl_cfut *f = newsworthy(c, key, klen);
  char *data = NULL;
  if (f == NULL) return 0;
  if (blen) {
    data = dup_bytes(bytes, blen);
    if (data == NULL) return DL_ENOMEM;
  }
  set_data(f, data, data ? blen : 0);
  f->status = DL_FUT_FINISHED;
  f->flags = (uint8_t)((f->flags & ~DL_FUT_VALUE) | (data ? DL_FUT_VALUE : 0));
  return fire(c, f);
}

int dl_client_err(dl_client *c, const char *key, size_t klen, int kind,
                  const char *rec, size_t rlen) {
  dl_cfut *f = newsworthy(c, key, klen);
  char *data;
  if (f == NULL) return 0;
  data = dup_bytes(rec, rlen);
  if (data == NULL) return DL_ENOMEM;
  set_data(f, data, rlen);
  f->status = kind == DL_ERR_CANCELLED ? DL_FUT_CANCELLED : DL_FUT_ERROR;
  f->kind = (uint8_t)kind;
  f->flags &= (uint8_t)~DL_FUT_VALUE;
  return fire(c, f);
}

void dl_client_cancel(dl_cfut *f) {
  set_data(f, NULL, 0);
  f->status = DL_FUT_CANCELLED;
  f->kind = DL_ERR_CANCELLED;
  f->flags &= (uint8_t)~DL_FUT_VALUE;
  if (f->c) fire(f->c, f);
}

void dl_client_repend(dl_cfut *f) {
  if (f->status != DL_FUT_FINISHED) return;
  set_data(f, NULL, 0);
  f->status = DL_FUT_PENDING;
  f->flags &= (uint8_t)~DL_FUT_VALUE;
}

dl_cfut **dl_client_take_fired(dl_client *c, size_t *n) {
  dl_cfut **list = c->fired;
  *n = c->nfired;
  if (c->nfired == 0) return NULL;
  c->fired = NULL;
  c->nfired = c->capfired = 0;
  return list;
}

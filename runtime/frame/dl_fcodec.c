/*
** dl_fcodec.c -- a data frame's bytes for the codec (see dl_fcodec.h).
*/
#include <stdlib.h>
#include <string.h>

#include "dl_fcodec.h"

#define VERSION 1

size_t dl_fc_itemsize(int kind) {
  switch (kind) {
    case DL_FC_F64: case DL_FC_I64: return 8;
    case DL_FC_F32: return 4;
    case DL_FC_BOOL: return 1;
    default: return 0;
  }
}

static int bytecmp(const char *a, size_t al, const char *b, size_t bl) {
  int c = memcmp(a, b, al < bl ? al : bl);
  if (c) return c;
  return al < bl ? -1 : al > bl;
}

static int distcmp(const void *x, const void *y) {
  const dl_fcdist *a = *(const dl_fcdist *const *)x;
  const dl_fcdist *b = *(const dl_fcdist *const *)y;
  return bytecmp(a->name, a->namelen, b->name, b->namelen);
}

static int put_name(dl_buf *out, const char *s, size_t n) {
  dl_buf_u32(out, (uint32_t)n);
  return dl_buf_put(out, s, n);
}

/* The frame without version byte; distinct entries when top. */
static int put_frame(dl_buf *out, const dl_fcframe *f, int top) {
  size_t i, j;
  dl_buf_u64(out, (uint64_t)f->nrows);
  dl_buf_u32(out, (uint32_t)f->ncol);
  for (i = 0; i < f->ncol; i++) {
    const dl_fccol *c = &f->cols[i];
    put_name(out, c->name, c->namelen);
    dl_buf_u8(out, (unsigned)c->kind);
    if (c->kind == DL_FC_STR) {
      dl_buf_u64(out, (uint64_t)c->ndict);
      for (j = 0; j < (size_t)c->ndict; j++)
        put_name(out, c->dict[j], c->dictlen[j]);
      dl_buf_put(out, c->data, (size_t)f->nrows * 8);
    } else {
      dl_buf_put(out, c->data, (size_t)f->nrows * dl_fc_itemsize(c->kind));
    }
  }
  if (!top || f->ndist == 0) return dl_buf_u32(out, 0);
  {
    const dl_fcdist **order = (const dl_fcdist **)malloc(f->ndist *
                                                          sizeof *order);
    if (order == NULL) return DL_ENOMEM;
    for (i = 0; i < f->ndist; i++) order[i] = &f->dist[i];
    qsort(order, f->ndist, sizeof *order, distcmp);
    dl_buf_u32(out, (uint32_t)f->ndist);
    for (i = 0; i < f->ndist; i++) {
      int rc;
      put_name(out, order[i]->name, order[i]->namelen);
      rc = put_frame(out, order[i]->frame, 0);
      if (rc) {
        free(order);
        return rc;
      }
    }
    free(order);
  }
  return 0;
}

static int paircmp(const void *x, const void *y) {
  const dl_fcpair *a = *(const dl_fcpair *const *)x;
  const dl_fcpair *b = *(const dl_fcpair *const *)y;
  return bytecmp(a->name, a->namelen, b->name, b->namelen);
}

int dl_fc_encode(dl_buf *out, const dl_fcframe *f) {
  size_t i;
  int rc;
  dl_buf_u8(out, VERSION);
  if ((rc = put_frame(out, f, 1)) != 0) return rc;
  dl_buf_u8(out, (f->has_nerrors ? 1u : 0u) | (f->has_types ? 2u : 0u));
  if (f->has_nerrors) dl_buf_u64(out, (uint64_t)f->nerrors);
  if (f->has_types) {
    const dl_fcpair **order = (const dl_fcpair **)malloc(
        (f->ntypes ? f->ntypes : 1) * sizeof *order);
    if (order == NULL) return DL_ENOMEM;
    for (i = 0; i < f->ntypes; i++) order[i] = &f->types[i];
    qsort(order, f->ntypes, sizeof *order, paircmp);
    dl_buf_u32(out, (uint32_t)f->ntypes);
    for (i = 0; i < f->ntypes; i++) {
      put_name(out, order[i]->name, order[i]->namelen);
      put_name(out, order[i]->val, order[i]->vallen);
    }
    free(order);
  }
  return 0;
}

static int rd_name(dl_rd *r, const char **s, size_t *n) {
  uint32_t l;
  if (dl_rd_u32(r, &l) || dl_rd_bytes(r, l, s)) return DL_EPROTO;
  *n = l;
  return 0;
}

typedef struct nameref { const char *p; size_t n; } nameref;

static int namecmp(const void *x, const void *y) {
  const nameref *a = (const nameref *)x, *b = (const nameref *)y;
  return bytecmp(a->p, a->n, b->p, b->n);
}

/* 0 when the ncol names of f are distinct. */
static int names_unique(const dl_fcframe *f) {
  nameref *v;
  size_t i;
  int rc = 0;
  if (f->ncol < 2) return 0;
  v = (nameref *)malloc(f->ncol * sizeof *v);
  if (v == NULL) return DL_ENOMEM;
  for (i = 0; i < f->ncol; i++) {
    v[i].p = f->cols[i].name;
    v[i].n = f->cols[i].namelen;
  }
  qsort(v, f->ncol, sizeof *v, namecmp);
  for (i = 1; i < f->ncol && rc == 0; i++)
    if (namecmp(&v[i - 1], &v[i]) == 0) rc = DL_EPROTO;
  free(v);
  return rc;
}

static void free_frame(dl_fcframe *f) {
  size_t i;
  if (f->cols) {
    for (i = 0; i < f->ncol; i++) {
      free((void *)f->cols[i].dict);
      free(f->cols[i].dictlen);
    }
  }
  if (f->dist) {
    for (i = 0; i < f->ndist; i++) {
      if (f->dist[i].frame) {
        free_frame(f->dist[i].frame);
        free(f->dist[i].frame);
      }
    }
  }
  free(f->cols);
  free(f->dist);
  free(f->types);
  memset(f, 0, sizeof *f);
}

void dl_fc_free(dl_fcframe *f) { free_frame(f); }

/* One string column's dictionary and codes. */
static int rd_strcol(dl_rd *r, dl_fccol *c, int64_t nrows) {
  uint64_t nd, j;
  int64_t i;
  if (dl_rd_u64(r, &nd) || nd > dl_rd_left(r) / 4) return DL_EPROTO;
  c->ndict = (int64_t)nd;
  c->dict = (const char **)calloc(nd ? nd : 1, sizeof *c->dict);
  c->dictlen = (size_t *)calloc(nd ? nd : 1, sizeof *c->dictlen);
  if (c->dict == NULL || c->dictlen == NULL) return DL_ENOMEM;
  for (j = 0; j < nd; j++)
    if (rd_name(r, &c->dict[j], &c->dictlen[j])) return DL_EPROTO;
  if ((uint64_t)nrows > dl_rd_left(r) / 8 ||
      dl_rd_bytes(r, (size_t)nrows * 8, &c->data))
    return DL_EPROTO;
  for (i = 0; i < nrows; i++) {
    int64_t k;
    memcpy(&k, c->data + (size_t)i * 8, 8);
    if (k < 0 || k > (int64_t)nd) return DL_EPROTO;
  }
  return 0;
}

static int rd_frame(dl_rd *r, dl_fcframe *f, int top) {
  uint64_t nrows;
  uint32_t ncol, ndist, i;
  int rc;
  if (dl_rd_u64(r, &nrows) || nrows > (uint64_t)INT64_MAX / 8 ||
      dl_rd_u32(r, &ncol) || ncol > dl_rd_left(r) / 5)
    return DL_EPROTO;
  f->nrows = (int64_t)nrows;
  f->cols = (dl_fccol *)calloc(ncol ? ncol : 1, sizeof *f->cols);
  if (f->cols == NULL) return DL_ENOMEM;
  f->ncol = ncol;
  for (i = 0; i < ncol; i++) {
    dl_fccol *c = &f->cols[i];
    unsigned kind;
    if (rd_name(r, &c->name, &c->namelen) || dl_rd_u8(r, &kind))
      return DL_EPROTO;
    c->kind = (int)kind;
    if (kind == DL_FC_STR) {
      if ((rc = rd_strcol(r, c, f->nrows)) != 0) return rc;
    } else {
      size_t w = dl_fc_itemsize((int)kind);
      if (w == 0 || nrows > dl_rd_left(r) / w ||
          dl_rd_bytes(r, (size_t)nrows * w, &c->data))
        return DL_EPROTO;
      if (kind == DL_FC_BOOL) {
        uint64_t k;
        for (k = 0; k < nrows; k++)
          if ((unsigned char)c->data[k] > 1) return DL_EPROTO;
      }
    }
  }
  if ((rc = names_unique(f)) != 0) return rc;
  if (dl_rd_u32(r, &ndist)) return DL_EPROTO;
  if (ndist == 0) return 0;
  if (!top || ndist > dl_rd_left(r) / 16) return DL_EPROTO;
  f->dist = (dl_fcdist *)calloc(ndist, sizeof *f->dist);
  if (f->dist == NULL) return DL_ENOMEM;
  f->ndist = ndist;
  for (i = 0; i < ndist; i++) {
    dl_fcdist *d = &f->dist[i];
    if (rd_name(r, &d->name, &d->namelen)) return DL_EPROTO;
    if (i > 0 && bytecmp(f->dist[i - 1].name, f->dist[i - 1].namelen,
                         d->name, d->namelen) >= 0)
      return DL_EPROTO;
    d->frame = (dl_fcframe *)calloc(1, sizeof *d->frame);
    if (d->frame == NULL) return DL_ENOMEM;
    if ((rc = rd_frame(r, d->frame, 0)) != 0) return rc;
  }
  return 0;
}

/* The flags byte and what it announces. */
static int rd_notes(dl_rd *r, dl_fcframe *f) {
  unsigned flags;
  uint32_t nt, i;
  if (dl_rd_u8(r, &flags) || flags > 3) return DL_EPROTO;
  if (flags & 1) {
    uint64_t v;
    if (dl_rd_u64(r, &v)) return DL_EPROTO;
    f->has_nerrors = 1;
    f->nerrors = (int64_t)v;
  }
  if (!(flags & 2)) return 0;
  if (dl_rd_u32(r, &nt) || nt > dl_rd_left(r) / 8) return DL_EPROTO;
  f->has_types = 1;
  f->types = (dl_fcpair *)calloc(nt ? nt : 1, sizeof *f->types);
  if (f->types == NULL) return DL_ENOMEM;
  f->ntypes = nt;
  for (i = 0; i < nt; i++) {
    dl_fcpair *t = &f->types[i];
    if (rd_name(r, &t->name, &t->namelen) || rd_name(r, &t->val, &t->vallen))
      return DL_EPROTO;
    if (i > 0 && bytecmp(f->types[i - 1].name, f->types[i - 1].namelen,
                         t->name, t->namelen) >= 0)
      return DL_EPROTO;
  }
  return 0;
}

int dl_fc_decode(dl_fcframe *f, const char *p, size_t n) {
  dl_rd r;
  unsigned v;
  int rc;
  memset(f, 0, sizeof *f);
  dl_rd_init(&r, p, n);
  if (dl_rd_u8(&r, &v) || v != VERSION) return DL_EPROTO;
  rc = rd_frame(&r, f, 1);
  if (rc == 0) rc = rd_notes(&r, f);
  if (rc == 0 && dl_rd_left(&r) != 0) rc = DL_EPROTO;
  if (rc) free_frame(f);
  return rc;
}

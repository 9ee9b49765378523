/*
** dl_wire.c -- the parts of the protocol that are not inline: the error
** record and the shared-block answer (see dl_wire.h).
*/
#include <string.h>

#include "dl_wire.h"

static void put_cstr(dl_buf *b, const char *s) {
  dl_buf_str(b, s ? s : "", s ? strlen(s) : 0);
}

void dl_put_err_rec(dl_buf *b, int kind, const char *msg, const char *tb,
                    const char *worker, const char *value, size_t vlen) {
  dl_buf_uv(b, (uint64_t)kind);
  put_cstr(b, msg);
  put_cstr(b, tb);
  put_cstr(b, worker);
  if (value) dl_buf_str(b, value, vlen);
}

int dl_get_err_rec(const char *p, size_t n, dl_err_rec *e) {
  dl_rd r;
  dl_rd_init(&r, p, n);
  if (dl_rd_uv(&r, &e->kind) || dl_rd_str(&r, &e->msg, &e->mlen) ||
      dl_rd_str(&r, &e->tb, &e->tblen) || dl_rd_str(&r, &e->worker, &e->wlen))
    return DL_EPROTO;
  e->value = NULL;
  e->vlen = 0;
  if (dl_rd_left(&r) && dl_rd_str(&r, &e->value, &e->vlen)) {
    e->value = NULL; /* a malformed value is dropped, as before */
    e->vlen = 0;
  }
  return 0;
}

void dl_put_shared_at(dl_buf *b, const dl_shared_at *sa) {
  unsigned char t[90]; /* nine varints of at most 10 bytes: never grows */
  dl_buf f;
  f.p = (char *)t;
  f.len = 0;
  f.cap = sizeof t;
  dl_buf_uv(&f, sa->pid);
  dl_buf_uv(&f, sa->ref.fd);
  dl_buf_uv(&f, sa->ref.ino);
  dl_buf_uv(&f, sa->ref.size);
  dl_buf_uv(&f, sa->off);
  dl_buf_uv(&f, sa->len);
  dl_buf_uv(&f, sa->ref.addr);
  dl_buf_uv(&f, sa->ref.seal);
  dl_buf_uv(&f, sa->ref.cookie);
  dl_buf_str(b, f.p, f.len);
}

void dl_put_data_shared(dl_buf *b, unsigned type, uint64_t reqid,
                        const char *key, size_t klen, const dl_shared_at *sa) {
  dl_buf_u8(b, type);
  dl_buf_uv(b, reqid);
  dl_buf_str(b, key, klen);
  dl_buf_uv(b, 2);
  dl_put_shared_at(b, sa);
}

int dl_shared_at_read(const char *p, size_t n, dl_shared_at *sa) {
  dl_rd r;
  dl_rd_init(&r, p, n);
  if (dl_rd_uv(&r, &sa->pid) || dl_rd_uv(&r, &sa->ref.fd) ||
      dl_rd_uv(&r, &sa->ref.ino) || dl_rd_uv(&r, &sa->ref.size) ||
      dl_rd_uv(&r, &sa->off) || dl_rd_uv(&r, &sa->len) ||
      dl_rd_uv(&r, &sa->ref.addr) || dl_rd_uv(&r, &sa->ref.seal) ||
      dl_rd_uv(&r, &sa->ref.cookie) || dl_rd_left(&r))
    return DL_EPROTO;
  if (sa->pid == 0 || sa->pid > INT32_MAX || sa->off > sa->ref.size ||
      sa->len > sa->ref.size - sa->off)
    return DL_EPROTO;
  return 0;
}

const char *dl_shared_at_map(const dl_shared_at *sa) {
  return dl_mem_map((pid_t)sa->pid, &sa->ref);
}

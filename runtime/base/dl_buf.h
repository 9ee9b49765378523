/*
** dl_buf.h -- growable byte buffers and little-endian/varint helpers.
**
** A dl_buf owns its bytes (p, allocated with dl_realloc).  Writers grow the
** buffer as needed and never fail (see below); readers (dl_rd) never
** allocate and never read past their end: every dl_rd_* returns 0 or
** DL_EPROTO.  Pure C: no Lua, no libuv.
**
** Out of memory: the runtime's one policy.
**   - The runtime's own buffers do not fail.  When a dl_buf cannot grow,
**     the process prints "dlua: out of memory growing a buffer to N
**     bytes" to stderr and aborts, as Redis's zmalloc does.  The writers
**     below therefore always return 0 (they keep an int result so that
**     older `if (dl_buf_put(...))` chains still compile; new code does not
**     check it).
**   - Why: a write that fails half-way leaves a message half-written, and
**     checking each of the hundreds of writes and unwinding every caller
**     costs code on every path for a state in which the process cannot do
**     useful work anyway.  A worker that dies is replaced and its tasks
**     recomputed elsewhere, which is the recovery Dask has too.
**   - Lua's allocations still fail softly: dlua_alloc returns NULL, Lua
**     raises "not enough memory" in the task or at the caller's line, and
**     a task that builds a huge table fails alone.  This is the one
**     exception to "a library never aborts on its host's behalf"
**     (STYLE.md): it applies only when the C heap itself is exhausted.
**   - Sizes that come from outside (a frame length a peer announces) are
**     not trusted to this rule: dl_buf_try_grow returns DL_ENOMEM for
**     them, and the caller drops the connection.
**   - Other dl_realloc calls of the runtime return NULL as realloc does;
**     the record they allocate is checked where it is made.
*/
#ifndef dl_buf_h
#define dl_buf_h

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Error codes used across the runtime (negative, libuv style). */
#define DL_ENOMEM (-12)
#define DL_EPROTO (-71)
#define DL_EINVAL (-22)
#define DL_EINTR (-4) /* a wait was interrupted (Ctrl-C) */

typedef struct dl_buf {
  char *p;
  size_t len;
  size_t cap;
} dl_buf;

typedef struct dl_rd {
  const char *p;
  const char *end;
} dl_rd;

/* The runtime's allocator (dl_mem.c): realloc and free semantics; big
   blocks are reused and can be shared with other local processes. */
void *dl_realloc(void *p, size_t n);
void dl_free(void *p);

/* Initialise an empty buffer (no allocation). */
static inline void dl_buf_init(dl_buf *b) { b->p = NULL; b->len = b->cap = 0; }
/* Free the bytes of b and make it empty. */
void dl_buf_free(dl_buf *b);
/* Make room for n more bytes; 0 (aborts when out of memory, see above). */
int dl_buf_grow(dl_buf *b, size_t n);
/* Make room for n more bytes, n being a size from outside: 0, or
   DL_ENOMEM (b unchanged) when the memory cannot be had. */
int dl_buf_try_grow(dl_buf *b, size_t n);
/* Hand the bytes to the caller (who frees them with dl_free); b is empty. */
char *dl_buf_take(dl_buf *b, size_t *len);

/* The writers: append to b; they return 0 (see the policy above). */
static inline int dl_buf_put(dl_buf *b, const void *s, size_t n) {
  if (b->cap - b->len < n) dl_buf_grow(b, n);
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  return 0;
}
static inline int dl_buf_u8(dl_buf *b, unsigned v) {
  if (b->cap == b->len) dl_buf_grow(b, 1);
  b->p[b->len++] = (char)v;
  return 0;
}
/* Unsigned LEB128 varint. */
static inline int dl_buf_uv(dl_buf *b, uint64_t v) {
  unsigned char t[10];
  int n = 0;
  do {
    t[n] = (unsigned char)(v & 0x7f);
    v >>= 7;
    if (v) t[n] |= 0x80;
    n++;
  } while (v);
  return dl_buf_put(b, t, (size_t)n);
}
/* Signed varint (zigzag). */
static inline int dl_buf_sv(dl_buf *b, int64_t v) {
  return dl_buf_uv(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}
static inline int dl_buf_u32(dl_buf *b, uint32_t v) {
  unsigned char t[4] = {(unsigned char)v, (unsigned char)(v >> 8),
                        (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
  return dl_buf_put(b, t, 4);
}
static inline int dl_buf_u64(dl_buf *b, uint64_t v) {
  dl_buf_u32(b, (uint32_t)v);
  return dl_buf_u32(b, (uint32_t)(v >> 32));
}
/* Length-prefixed bytes: varint length, then the bytes. */
static inline int dl_buf_str(dl_buf *b, const void *s, size_t n) {
  dl_buf_uv(b, n);
  return dl_buf_put(b, s, n);
}

static inline void dl_rd_init(dl_rd *r, const void *p, size_t n) {
  r->p = (const char *)p;
  r->end = r->p + n;
}
static inline size_t dl_rd_left(const dl_rd *r) { return (size_t)(r->end - r->p); }
static inline int dl_rd_u8(dl_rd *r, unsigned *v) {
  if (r->p >= r->end) return DL_EPROTO;
  *v = (unsigned char)*r->p++;
  return 0;
}
static inline int dl_rd_uv(dl_rd *r, uint64_t *v) {
  uint64_t x = 0;
  int shift = 0;
  for (;;) {
    unsigned c;
    if (r->p >= r->end || shift > 63) return DL_EPROTO;
    c = (unsigned char)*r->p++;
    x |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) break;
    shift += 7;
  }
  *v = x;
  return 0;
}
static inline int dl_rd_sv(dl_rd *r, int64_t *v) {
  uint64_t u;
  if (dl_rd_uv(r, &u)) return DL_EPROTO;
  *v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
  return 0;
}
static inline int dl_rd_u32(dl_rd *r, uint32_t *v) {
  const unsigned char *s = (const unsigned char *)r->p;
  if (dl_rd_left(r) < 4) return DL_EPROTO;
  *v = s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24;
  r->p += 4;
  return 0;
}
static inline int dl_rd_u64(dl_rd *r, uint64_t *v) {
  uint32_t lo, hi;
  if (dl_rd_u32(r, &lo) || dl_rd_u32(r, &hi)) return DL_EPROTO;
  *v = lo | (uint64_t)hi << 32;
  return 0;
}
/* Borrow n bytes from the reader; *s is valid as long as the input is. */
static inline int dl_rd_bytes(dl_rd *r, size_t n, const char **s) {
  if (dl_rd_left(r) < n) return DL_EPROTO;
  *s = r->p;
  r->p += n;
  return 0;
}
/* Length-prefixed bytes written by dl_buf_str. */
static inline int dl_rd_str(dl_rd *r, const char **s, size_t *n) {
  uint64_t len;
  if (dl_rd_uv(r, &len) || len > dl_rd_left(r)) return DL_EPROTO;
  *n = (size_t)len;
  *s = r->p;
  r->p += len;
  return 0;
}

#endif

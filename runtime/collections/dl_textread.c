/*
** dl_textread.c -- the lines of a plain block or a gzip file, in pieces
** (see dl_textread.h for the rules).
**
** buf[0..len) holds bytes read and not yet handed out, buf[0] being byte
** `off` of the text (the file, or the inflated stream); the last piece
** handed out is buf[0..given), dropped at the next call.
*/
#define _GNU_SOURCE /* memrchr */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "dl_buf.h"
#include "dl_textread.h"

struct dl_textread {
  int fd;                   /* owned; -1 for memory input */
  const unsigned char *mem; /* borrowed, memory input */
  size_t memlen;
  int gz;
  z_stream z;               /* gz: the inflater (zinit when made) */
  int zinit;
  int member_end;           /* gz: a member ended, none started since */
  unsigned char *in;        /* gz: compressed bytes, owned */
  uint64_t in_read;         /* gz: compressed bytes read from the source */
  int in_eof;
  char *buf;                /* owned */
  size_t cap, len, given;
  size_t nonl;              /* buf[0..nonl) holds no "\n" */
  int fits;                 /* plain: the line at buf[0] is known to end
                               within max_line (looked ahead) */
  uint64_t off;             /* offset of buf[0] in the text */
  uint64_t pos;             /* plain: file offset of the next read */
  uint64_t stop;            /* plain: end of the block */
  int src_done;             /* nothing more will be read */
  int failed;
  size_t max_line;
  size_t chunk;             /* bytes read or inflated at a time */
  char *path;               /* owned */
  char err[DL_TEXTREAD_ERRLEN];
};

static int fail(dl_textread *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(dl_textread *r, const char *fmt, ...) {
  va_list ap;
  int n = snprintf(r->err, sizeof r->err, "%s: ", r->path);
  if (n < 0 || (size_t)n >= sizeof r->err) n = 0;
  va_start(ap, fmt);
  vsnprintf(r->err + n, sizeof r->err - (size_t)n, fmt, ap);
  va_end(ap);
  r->failed = 1;
  return -1;
}

/* Read up to n bytes at offset at of the source (plain) or at its current
   position (gz: at is ignored for files, which are read in order).
   Returns the count (0 at the end) or -1. */
static ssize_t src_read(dl_textread *r, void *dst, size_t n, uint64_t at) {
  ssize_t got;
  if (r->fd < 0) {
    if (at >= r->memlen) return 0;
    if (n > r->memlen - at) n = (size_t)(r->memlen - at);
    memcpy(dst, r->mem + at, n);
    return (ssize_t)n;
  }
  do {
    got = pread(r->fd, dst, n, (off_t)at);
  } while (got < 0 && errno == EINTR);
  if (got < 0) fail(r, "%s", strerror(errno));
  return got;
}

/* Make room for n more bytes in buf; 0 or -1. */
static int reserve(dl_textread *r, size_t n) {
  size_t ncap;
  char *nb;
  if (r->cap - r->len >= n) return 0;
  ncap = r->cap ? r->cap : r->chunk;
  while (ncap - r->len < n) {
    if (ncap > SIZE_MAX / 2) return fail(r, "out of memory");
    ncap *= 2;
  }
  nb = dl_realloc(r->buf, ncap);
  if (!nb)
    return fail(r, "out of memory holding a line of %zu bytes", r->len);
  r->buf = nb;
  r->cap = ncap;
  return 0;
}

/* Plain files: find the first line that starts in [start, stop), reading
   only [start - 1, stop - 1).  0 or -1. */
static int seek_first_line(dl_textread *r, uint64_t start) {
  uint64_t p = start - 1;
  if (reserve(r, r->chunk) != 0) return -1;
  while (p < r->stop - 1) {
    uint64_t want = r->stop - 1 - p;
    size_t n = want < r->chunk ? (size_t)want : r->chunk;
    ssize_t got = src_read(r, r->buf, n, p);
    const char *nl;
    if (got < 0) return -1;
    if (got == 0) break; /* the file is shorter than it was */
    nl = memchr(r->buf, '\n', (size_t)got);
    if (nl) {
      size_t skip = (size_t)(nl - r->buf) + 1;
      /* keep the bytes after the newline: the block's text starts there */
      r->len = (size_t)got - skip;
      memmove(r->buf, r->buf + skip, r->len);
      r->off = p + skip;
      r->pos = p + (uint64_t)got;
      /* the text may already run past the block's last line */
      {
        uint64_t last = r->stop - 1; /* the block ends at the first "\n" */
        size_t s = (size_t)(last - r->off); /* at or after byte stop - 1 */
        if (s < r->len) {
          const char *e = memchr(r->buf + s, '\n', r->len - s);
          if (e) {
            r->len = (size_t)(e - r->buf) + 1;
            r->src_done = 1;
          }
        }
      }
      return 0;
    }
    p += (uint64_t)got;
  }
  r->src_done = 1; /* no line starts in this block */
  return 0;
}

/* Plain files: read the next chunk of the block into buf.  0 or -1. */
static int fill_plain(dl_textread *r) {
  size_t old = r->len, s;
  ssize_t got;
  if (reserve(r, r->chunk) != 0) return -1;
  got = src_read(r, r->buf + r->len, r->chunk, r->pos);
  if (got < 0) return -1;
  if (got == 0) {
    r->src_done = 1;
    return 0;
  }
  r->pos += (uint64_t)got;
  r->len += (size_t)got;
  /* the block's text ends with the first "\n" at or after byte stop - 1 */
  s = (size_t)(r->stop - 1 - r->off);
  if (s < old) s = old;
  if (s < r->len) {
    const char *e = memchr(r->buf + s, '\n', r->len - s);
    if (e) {
      r->len = (size_t)(e - r->buf) + 1;
      r->src_done = 1;
    }
  }
  return 0;
}

/* Compressed bytes consumed so far. */
static uint64_t zconsumed(const dl_textread *r) {
  return r->in_read - r->z.avail_in;
}

/* gzip: inflate until some text is in buf or the input ends.  0 or -1. */
static int fill_gz(dl_textread *r) {
  for (;;) {
    size_t before;
    int rc;
    if (r->z.avail_in == 0 && !r->in_eof) {
      ssize_t got = src_read(r, r->in, r->chunk, r->in_read);
      if (got < 0) return -1;
      if (got == 0) {
        r->in_eof = 1;
      } else {
        r->z.next_in = r->in;
        r->z.avail_in = (uInt)got;
        r->in_read += (uint64_t)got;
      }
    }
    if (r->z.avail_in == 0 && r->in_eof) {
      if (r->member_end || r->in_read == 0) { /* the end, or empty file */
        r->src_done = 1;
        return 0;
      }
      return fail(r, "truncated gzip stream (%llu compressed bytes)",
                  (unsigned long long)r->in_read);
    }
    if (r->member_end) { /* another member follows */
      inflateReset(&r->z);
      r->member_end = 0;
    }
    if (reserve(r, r->chunk) != 0) return -1;
    before = r->len;
    r->z.next_out = (unsigned char *)r->buf + r->len;
    r->z.avail_out = (uInt)(r->cap - r->len > r->chunk
                                ? r->chunk
                                : r->cap - r->len);
    rc = inflate(&r->z, Z_NO_FLUSH);
    r->len = (size_t)((char *)r->z.next_out - r->buf);
    if (rc == Z_STREAM_END) {
      r->member_end = 1;
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      return fail(r, "corrupt gzip stream near compressed byte %llu: %s",
                  (unsigned long long)zconsumed(r),
                  r->z.msg ? r->z.msg : zError(rc));
    }
    if (r->len > before) return 0;
  }
}

static int fill(dl_textread *r) {
  return r->gz ? fill_gz(r) : fill_plain(r);
}

/* An error for a line of more than max_line bytes starting at buf[at]. */
static int too_long(dl_textread *r, size_t at) {
  return fail(r, "a line longer than max_line (%zu bytes) starts at byte "
              "%llu%s", r->max_line, (unsigned long long)(r->off + at),
              r->gz ? " of the decompressed text" : "");
}

/*
** Plain files: the line at buf[0] has no "\n" yet and is long.  Before
** holding more of it, look ahead (through r->in, not kept) for its end: a
** line too long is refused without ever being in memory, and one that
** fits is read normally (so a long line is read twice).  0 or -1.
*/
static int look_ahead(dl_textread *r) {
  uint64_t p = r->pos, limit; /* the line's "\n" must come before limit */
  limit = (uint64_t)r->max_line > UINT64_MAX - r->off
              ? UINT64_MAX
              : r->off + (uint64_t)r->max_line;
  if (!r->in && !(r->in = dl_realloc(NULL, r->chunk)))
    return fail(r, "out of memory");
  for (;;) {
    ssize_t got = src_read(r, r->in, r->chunk, p);
    const char *nl;
    if (got < 0) return -1;
    if (got == 0) break; /* the end of the file ends the line: p <= limit */
    nl = memchr(r->in, '\n', (size_t)got);
    if (nl) {
      if (p + (uint64_t)(nl - (char *)r->in) >= limit) return too_long(r, 0);
      break;
    }
    p += (uint64_t)got;
    if (p > limit) return too_long(r, 0);
  }
  r->fits = 1;
  return 0;
}

/* Check that no line of buf[0..n) is longer than max_line.  0 or -1. */
static int check_lines(dl_textread *r, size_t n) {
  const char *p = r->buf, *end = r->buf + n;
  if (n <= r->max_line) return 0;
  while (p < end) {
    const char *q = memchr(p, '\n', (size_t)(end - p));
    const char *e = q ? q + 1 : end;
    if ((size_t)(e - p) > r->max_line) return too_long(r, (size_t)(p - r->buf));
    p = e;
  }
  return 0;
}

static int open_common(dl_textread **out, dl_textread *r,
                       const dl_textread_opts *o, char *err, size_t errlen) {
  size_t plen = strlen(o->path);
  r->path = dl_realloc(NULL, plen + 1);
  if (!r->path) {
    snprintf(err, errlen, "%s: out of memory", o->path);
    dl_textread_close(r);
    return DL_ENOMEM;
  }
  memcpy(r->path, o->path, plen + 1);
  r->gz = o->gz;
  r->max_line = o->max_line ? o->max_line : 1;
  r->chunk = o->chunk ? o->chunk : DL_TEXTREAD_CHUNK;
  if (r->chunk > ((size_t)1 << 30)) r->chunk = (size_t)1 << 30; /* uInt */
  if (r->gz) {
    r->in = dl_realloc(NULL, r->chunk);
    if (!r->in || inflateInit2(&r->z, 16 + MAX_WBITS) != Z_OK) {
      snprintf(err, errlen, "%s: out of memory", o->path);
      dl_textread_close(r);
      return DL_ENOMEM;
    }
    r->zinit = 1;
  } else {
    r->stop = o->stop > 0 ? (uint64_t)o->stop : 0;
    if (o->start >= o->stop) {
      r->src_done = 1;
    } else if (o->start > 0 && seek_first_line(r, (uint64_t)o->start) != 0) {
      snprintf(err, errlen, "%s", r->err);
      dl_textread_close(r);
      return DL_EINVAL;
    }
  }
  *out = r;
  return 0;
}

static dl_textread *new_reader(void) {
  dl_textread *r = dl_realloc(NULL, sizeof *r);
  if (r) {
    memset(r, 0, sizeof *r);
    r->fd = -1;
  }
  return r;
}

int dl_textread_open(dl_textread **out, const dl_textread_opts *o,
                     char *err, size_t errlen) {
  dl_textread *r = new_reader();
  *out = NULL;
  if (!r) {
    snprintf(err, errlen, "%s: out of memory", o->path);
    return DL_ENOMEM;
  }
  do {
    r->fd = open(o->path, O_RDONLY | O_CLOEXEC);
  } while (r->fd < 0 && errno == EINTR);
  if (r->fd < 0) {
    int e = errno;
    snprintf(err, errlen, "%s: %s", o->path, strerror(e));
    dl_textread_close(r);
    return -e;
  }
  return open_common(out, r, o, err, errlen);
}

int dl_textread_open_mem(dl_textread **out, const void *bytes, size_t len,
                         const dl_textread_opts *o, char *err,
                         size_t errlen) {
  dl_textread *r = new_reader();
  *out = NULL;
  if (!r) {
    snprintf(err, errlen, "%s: out of memory", o->path);
    return DL_ENOMEM;
  }
  r->mem = bytes;
  r->memlen = len;
  return open_common(out, r, o, err, errlen);
}

int dl_textread_next(dl_textread *r, const char **data, size_t *len) {
  if (r->failed) return -1;
  if (r->given) { /* what is left has no "\n" (pieces end at the last) */
    r->len -= r->given;
    memmove(r->buf, r->buf + r->given, r->len);
    r->off += r->given;
    r->given = 0;
    r->nonl = r->len;
    r->fits = 0;
  }
  for (;;) {
    if (r->len > 0) {
      size_t n = 0;
      if (r->src_done) {
        n = r->len;
      } else {
        /* only the bytes not yet looked at: a long line costs O(n) */
        const char *nl = memrchr(r->buf + r->nonl, '\n', r->len - r->nonl);
        if (nl) n = (size_t)(nl - r->buf) + 1;
        else if (r->len > r->max_line) return too_long(r, 0);
        else {
          r->nonl = r->len;
          if (!r->gz && !r->fits && r->len >= 4 * r->chunk &&
              look_ahead(r) != 0)
            return -1;
        }
      }
      if (n > 0) {
        if (check_lines(r, n) != 0) return -1;
        r->given = n;
        *data = r->buf;
        *len = n;
        return 1;
      }
    } else if (r->src_done) {
      return 0;
    }
    if (fill(r) != 0) return -1;
  }
}

const char *dl_textread_error(const dl_textread *r) { return r->err; }

void dl_textread_close(dl_textread *r) {
  if (!r) return;
  if (r->fd >= 0) close(r->fd);
  if (r->zinit) inflateEnd(&r->z);
  if (r->in) dl_free(r->in);
  if (r->buf) dl_free(r->buf);
  if (r->path) dl_free(r->path);
  dl_free(r);
}

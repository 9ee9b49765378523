/*
** zyg_driver.h -- runs one fuzz input through the zygote link's decoder
** (dl_zyg_decode, runtime/wire/dl_zyg.h); shared by fuzz_zyg.c and
** test_zyg.c, which replays the saved inputs.
**
** Whatever the bytes: the decoder returns 0 or DL_EPROTO; on 0 the type is
** one of the protocol's, and a spawn request's strings lie inside the input,
** end there in NUL, are as many as its counts say, and encode back to the
** same bytes; the other messages encode back to the same bytes too.
*/
#ifndef zyg_driver_h
#define zyg_driver_h

#include <stdlib.h>
#include <string.h>

#include "dl_buf.h"
#include "dl_zyg.h"

static inline int zyg_inside(const char *s, const char *p, size_t n) {
  return s >= p && s < p + n && memchr(s, '\0', (size_t)(p + n - s)) != NULL;
}

static inline int zyg_drive(const unsigned char *data, size_t n) {
  const char *p = (const char *)data;
  dl_zyg_msg m;
  dl_buf b;
  uint32_t i;
  int rc = dl_zyg_decode(p, n, &m);
  if (rc == DL_EPROTO) return 0;
  if (rc != 0) abort();
  dl_buf_init(&b);
  if (m.type == 'S') {
    for (i = 0; i < m.nargs; i++)
      if (!zyg_inside(m.argv[i], p, n)) abort();
    for (i = 0; i < m.nenv; i++)
      if (!zyg_inside(m.env[i], p, n)) abort();
    if (m.argv[m.nargs] != NULL || m.env[m.nenv] != NULL ||
        !zyg_inside(m.cwd, p, n))
      abort();
    dl_zyg_put_spawn(&b, m.wid, (char *const *)m.argv,
                     (char *const *)m.env, m.cwd);
    dl_zyg_msg_free(&m);
  } else if (strchr("KPFX", m.type) != NULL && m.type != 0) {
    dl_zyg_put(&b, m.type, m.wid, m.val);
  } else {
    abort();
  }
  if (b.len != n || memcmp(b.p, p, n) != 0) abort();
  dl_buf_free(&b);
  return 0;
}

#endif

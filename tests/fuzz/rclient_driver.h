/*
** rclient_driver.h -- runs one fuzz input through every decoder a remote
** client and a scheduler use on a TCP link after the handshake that had
** none of its own fuzzer: the remote client's frame from its scheduler
** (WELCOME, then CINFO through dl_cinfo_read, CREFUSE, or the messages
** dl_client_next reads, whose KEY_ERR records are read back with
** dl_get_err_rec as result() does), and a worker's first frame at the
** scheduler (HELLO; WREFUSE and CREFUSE readers too).  Shared by
** fuzz_rclient.c and test_rclient.c, which replays the saved inputs
** (tests/fuzz/regressions-rclient).
**
** Whatever the bytes: every reader returns 0 or its error code, a CINFO
** read lists at most DL_CINFO_MAX_WORKERS workers and DL_SCHED_DEPARTED
** departed ones, every name and reason is a terminated string, nothing
** leaks (the test build counts blocks) and nothing is read out of bounds
** (the fuzzer's ASan).
*/
#ifndef rclient_driver_h
#define rclient_driver_h

#include <stdlib.h>
#include <string.h>

#include "dl_buf.h"
#include "dl_cinfo.h"
#include "dl_client.h"
#include "dl_mem.h"
#include "dl_wire.h"

static inline void rclient_check_winfo(const dl_sched_winfo *w) {
  if (memchr(w->name, '\0', sizeof w->name) == NULL ||
      memchr(w->reason, '\0', sizeof w->reason) == NULL ||
      strlen(w->name) > DL_WORKER_NAME_MAX)
    abort();
}

/* The remote client's side: one frame from its scheduler. */
static inline void rclient_sched_frame(const char *p, size_t n) {
  dl_rd r;
  unsigned type = 0;
  dl_rd_init(&r, p, n);
  if (dl_wire_type(&r, &type) == 0 && type == DL_M_WELCOME) {
    uint64_t id;
    if (dl_get_welcome(&r, &id) || dl_rd_left(&r) == 0) return;
    dl_rd_init(&r, r.p, dl_rd_left(&r));
    type = 0;
    dl_wire_type(&r, &type);
  }
  if (type == DL_M_CINFO) {
    dl_cinfo ci;
    int rc = dl_cinfo_read(&r, &ci, 0), i;
    if (rc == 0) {
      if (ci.nws < 0 || ci.nws > DL_CINFO_MAX_WORKERS || ci.ndead < 0 ||
          ci.ndead > DL_SCHED_DEPARTED ||
          memchr(ci.dash, '\0', sizeof ci.dash) == NULL)
        abort();
      for (i = 0; i < ci.nws; i++) rclient_check_winfo(&ci.ws[i]);
      for (i = 0; i < ci.ndead; i++) rclient_check_winfo(&ci.dead[i]);
      dl_free(ci.ws);
    } else if (rc != DL_EPROTO || ci.ws != NULL) {
      abort();
    }
    return;
  }
  if (type == DL_M_CREFUSE) {
    const char *why;
    size_t wl;
    if (dl_get_crefuse(&r, &why, &wl) == 0 && wl > n) abort();
    return;
  }
  { /* messages for the client: futures of two keys wait for them */
    static const char *const keys[] = {"a", "k-1"};
    dl_client c;
    dl_cfut *f[2];
    dl_cnews news;
    int count = 0, k, rc;
    dl_client_init(&c);
    for (k = 0; k < 2; k++) f[k] = dl_client_ref(&c, keys[k], strlen(keys[k]));
    dl_rd_init(&r, p, n);
    while ((rc = dl_client_next(&c, &r, &news, &count)) == 1)
      if (news.mapped) abort(); /* this client maps no shared block */
    for (k = 0; k < 2; k++) {
      if (f[k] == NULL) continue;
      char buf[DL_CFUT_BUF];
      if (f[k]->status == DL_FUT_ERROR && dl_cfut_data(f[k], buf)) {
        dl_err_rec e;
        size_t n = dl_cfut_len(f[k]);
        if (dl_get_err_rec(dl_cfut_data(f[k], buf), n, &e) == 0 &&
            (e.mlen > n || e.wlen > n))
          abort();
      }
      dl_client_unref(f[k]);
      dl_client_drop(f[k]);
    }
    dl_client_free(&c);
  }
}

/* The scheduler's side: a worker's first frame over TCP. */
static inline void rclient_worker_hello(const char *p, size_t n) {
  dl_rd r;
  unsigned type = 0;
  dl_msg_hello h;
  const char *why;
  size_t wl;
  dl_rd_init(&r, p, n);
  if (dl_wire_type(&r, &type)) return;
  if (type == DL_M_HELLO) {
    if (dl_get_hello(&r, &h) == 0 &&
        (h.nlen > DL_WORKER_NAME_MAX || h.alen > n))
      abort();
  } else if (type == DL_M_WREFUSE) {
    if (dl_get_wrefuse(&r, &why, &wl) == 0 && wl > n) abort();
  }
}

/* The first byte picks the side; the rest is the frame. */
static inline int rclient_drive(const unsigned char *data, size_t n) {
  if (n == 0) return 0;
  if (data[0] & 1)
    rclient_worker_hello((const char *)data + 1, n - 1);
  else
    rclient_sched_frame((const char *)data + 1, n - 1);
  return 0;
}

#endif

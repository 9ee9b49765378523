/*
** sched_driver.h -- drives a dl_sched from a byte string, for the fuzzer
** (fuzz_sched.c) and the C tests that replay its findings.
**
** The input is a sequence of records: one byte saying where the next
** frame comes from (0: the client, 1..3: worker 1..3; 4: worker (b%3)+1
** dies; 5: it joins again; 6: (length % 8) seconds pass, with a timer
** tick and a check for silent workers, who die; 0xf0..0xf7: a second
** client, DL_SCHED_CLIENT_BASE; 0xf8..0xff: that client leaves, and may
** come back), two bytes of length,
** then that many bytes handed to the scheduler as one frame.  Whatever the
** bytes, the scheduler must neither crash nor leak.
*/
#ifndef sched_driver_h
#define sched_driver_h

#include <string.h>

#include "dl_buf.h"
#include "dl_sched.h"

typedef struct sdrv {
  dl_buf wout[4];
  dl_buf cout;
  dl_buf c2out; /* the second client's (DL_SCHED_CLIENT_BASE) */
  int alive[4];
  int c2gone;
} sdrv;

static dl_buf *sdrv_worker_out(void *ud, int wid) {
  sdrv *d = ud;
  if (wid == DL_SCHED_CLIENT_BASE) {
    if (d->c2gone) return NULL;
    if (d->c2out.len > 65536) d->c2out.len = 0;
    return &d->c2out;
  }
  if (wid < 1 || wid > 3 || !d->alive[wid]) return NULL;
  if (d->wout[wid].len > 65536) d->wout[wid].len = 0;
  return &d->wout[wid];
}

static dl_buf *sdrv_client_out(void *ud) {
  sdrv *d = ud;
  if (d->cout.len > 65536) d->cout.len = 0;
  return &d->cout;
}

/* Run the records in data[0..n) against a fresh scheduler. */
static void sdrv_run(const unsigned char *data, size_t n) {
  sdrv d;
  dl_sched_io io;
  dl_sched *s;
  size_t i = 0;
  int w;
  double now = 1.0;
  memset(&d, 0, sizeof d);
  io.worker_out = sdrv_worker_out;
  io.client_out = sdrv_client_out;
  io.ud = &d;
  s = dl_sched_new(&io);
  if (s == NULL) return;
  dl_sched_set_heartbeat_timeout(s, 3.0);
  for (w = 1; w <= 2; w++) {
    d.alive[w] = 1;
    dl_sched_add_worker(s, w, 100 + w, 1, 1 << 30, now);
  }
  while (i + 3 <= n) {
    unsigned kind = data[i];
    size_t len = (size_t)data[i + 1] | (size_t)data[i + 2] << 8;
    const char *p = (const char *)data + i + 3;
    i += 3;
    if (len > n - i) len = n - i;
    now += 0.01;
    if (kind >= 0xf0) { /* the second client */
      if (kind < 0xf8) {
        d.c2gone = 0;
        dl_sched_requester_frame(s, DL_SCHED_CLIENT_BASE, p, len, now);
      } else {
        if (!d.c2gone) dl_sched_requester_gone(s, DL_SCHED_CLIENT_BASE);
        d.c2gone = 1;
        len = 0;
      }
      i += len;
      continue;
    }
    switch (kind % 7) {
      case 0: dl_sched_client_frame(s, p, len, now); break;
      case 1: case 2: case 3:
        dl_sched_worker_frame(s, (int)(kind % 7), p, len, now);
        break;
      case 4:
        w = (int)(len % 3) + 1;
        if (d.alive[w]) {
          d.alive[w] = 0;
          dl_sched_remove_worker(s, w);
        }
        len = 0;
        break;
      case 5:
        w = (int)(len % 3) + 1;
        if (!d.alive[w]) {
          d.alive[w] = 1;
          dl_sched_add_worker(s, w, 100 + w, 1, 1 << 30, now);
        }
        len = 0;
        break;
      default: { /* time passes: timers, stalls, silent workers */
        int ids[4], k, m;
        now += (double)(len % 8);
        dl_sched_tick(s, now);
        m = dl_sched_silent(s, now, ids, 4);
        for (k = 0; k < m; k++)
          if (ids[k] >= 1 && ids[k] <= 3 && d.alive[ids[k]]) {
            d.alive[ids[k]] = 0;
            dl_sched_remove_worker(s, ids[k]);
          }
        len = 0;
      }
    }
    i += len;
  }
  dl_sched_free(s);
  for (w = 0; w < 4; w++) dl_buf_free(&d.wout[w]);
  dl_buf_free(&d.cout);
  dl_buf_free(&d.c2out);
}

#endif

/*
** bench_events.c -- what the task stream's events cost the scheduler
** (issue 19): for every task run, the scheduler copies an event (its key,
** group, worker, times, size, a failure's first line: sizeof
** (dl_sched_event) bytes) into a ring of DL_SCHED_EVENTS for the dashboard.
**
** Prints, as "metric value unit" lines:
**   events.sched_per_task   the scheduler's whole cost per task (submit,
**                           assign, done, release), driving dl_sched alone
**                           with batches of 1,000 tasks on 2 workers
**   events.copy_per_event   the same copy alone, into a ring of the same
**                           size, keys of the same length
**   events.copy_share       the second as a share of the first
**   build/bench_events [tasks]          (default 200,000)
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "dl_sched.h"
#include "dl_wire.h"
#include "sched_msgs.h"

static dl_buf wout[3], cout;

static dl_buf *worker_out(void *ud, int wid) {
  (void)ud;
  return wid >= 1 && wid <= 2 ? &wout[wid] : NULL;
}
static dl_buf *client_out(void *ud) {
  (void)ud;
  return &cout;
}

#define BATCH 1000

static void key_of(char *k, size_t n, long i) {
  snprintf(k, n, "inc-%016lx", (unsigned long)i * 2654435761ul);
}

/* One batch: submit, run on whichever worker got each task, release. */
static void batch(dl_sched *s, long first) {
  static const sm_submit none = {0};
  dl_buf f, spec;
  char k[64];
  long i;
  int w;
  dl_buf_init(&f);
  dl_buf_init(&spec);
  sm_put_spec(&spec, &none); /* once for the batch, as the client does */
  for (i = first; i < first + BATCH; i++) {
    key_of(k, sizeof k, i);
    dl_put_submit(&f, k, strlen(k), "payload", 7, spec.p, spec.len);
  }
  dl_buf_free(&spec);
  dl_sched_client_frame(s, f.p, f.len, 1.0);
  for (w = 1; w <= 2; w++) {
    dl_rd r;
    dl_buf d;
    dl_buf_init(&d);
    dl_rd_init(&r, wout[w].p, wout[w].len);
    while (dl_rd_left(&r)) {
      unsigned type;
      dl_msg_compute m;
      dl_wire_type(&r, &type);
      if (type != DL_M_COMPUTE || dl_get_compute(&r, &m)) break;
      sm_put_done(&d, m.key, m.klen);
    }
    wout[w].len = 0;
    dl_sched_worker_frame(s, w, d.p, d.len, 1.0);
    dl_buf_free(&d);
  }
  f.len = 0;
  for (i = first; i < first + BATCH; i++) {
    key_of(k, sizeof k, i);
    dl_put_key_msg(&f, DL_M_RELEASE, k, strlen(k));
  }
  dl_sched_client_frame(s, f.p, f.len, 1.0);
  for (w = 1; w <= 2; w++) wout[w].len = 0;
  cout.len = 0;
  dl_buf_free(&f);
}

/* The copy the scheduler makes per run (see record_event in dl_sched.c). */
static void copy_cut(char *dst, size_t cap, const char *src, size_t n) {
  if (n >= cap) n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 200000, i;
  dl_sched_io io = {worker_out, client_out, NULL};
  dl_sched *s = dl_sched_new(&io);
  dl_sched_event *ring = malloc(sizeof *ring * DL_SCHED_EVENTS);
  volatile uint64_t sink = 0;
  uint64_t t0;
  double per_task, per_event;
  if (s == NULL || ring == NULL || n < BATCH) return 1;
  dl_sched_add_worker(s, 1, 101, 1, 1 << 30, 1.0);
  dl_sched_add_worker(s, 2, 102, 1, 1 << 30, 1.0);
  n -= n % BATCH;
  batch(s, 0); /* warm: the ring and maps allocated */
  t0 = uv_hrtime();
  for (i = BATCH; i < n + BATCH; i += BATCH) batch(s, i);
  per_task = (double)(uv_hrtime() - t0) / (double)n;
  memset(ring, 0, sizeof *ring * DL_SCHED_EVENTS);
  t0 = uv_hrtime();
  for (i = 0; i < n; i++) {
    char k[64];
    dl_sched_event *e = &ring[i % DL_SCHED_EVENTS];
    int kl = snprintf(k, sizeof k, "inc-%016lx", (unsigned long)i);
    copy_cut(e->key, sizeof e->key, k, (size_t)kl);
    copy_cut(e->group, sizeof e->group, "inc", 3);
    e->err[0] = '\0';
    e->worker = 1 + (int)(i & 1);
    e->start = (double)i;
    e->stop = (double)i + 1;
    e->nbytes = 8;
    e->ok = 1;
    sink += (uint64_t)e->key[5];
  }
  per_event = (double)(uv_hrtime() - t0) / (double)n;
  t0 = uv_hrtime(); /* the key's formatting alone, to take it out */
  for (i = 0; i < n; i++) {
    char k[64];
    sink += (uint64_t)snprintf(k, sizeof k, "inc-%016lx", (unsigned long)i);
  }
  per_event -= (double)(uv_hrtime() - t0) / (double)n;
  printf("# %ld tasks; sizeof(dl_sched_event) = %zu bytes, ring of %d\n", n,
         sizeof(dl_sched_event), DL_SCHED_EVENTS);
  printf("events.sched_per_task %.3f us\n", per_task / 1000);
  printf("events.copy_per_event %.1f ns\n", per_event);
  printf("events.copy_share %.2f %%\n", 100 * per_event / per_task);
  dl_sched_free(s);
  free(ring);
  (void)sink;
  return 0;
}

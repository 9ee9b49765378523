/*
** test_sched.c -- the scheduler alone, without Lua or sockets: graphs run
** in dependency order, lost results are recomputed from lineage, a task
** that keeps killing workers fails, unknown dependencies are reported, and
** every input the fuzzer saved (tests/fuzz/regressions-sched) is replayed.
** Run from the repository root.
*/
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_conn.h"
#include "dl_wire.h"
#include "sched_driver.h"
#include "sched_msgs.h"
#include "tap.h"

static sdrv D;
static dl_sched *S;

static void start(int nworkers) {
  dl_sched_io io;
  int w;
  memset(&D, 0, sizeof D);
  io.worker_out = sdrv_worker_out;
  io.client_out = sdrv_client_out;
  io.ud = &D;
  S = dl_sched_new(&io);
  CHECK(S != NULL);
  for (w = 1; w <= nworkers; w++) {
    D.alive[w] = 1;
    CHECK(dl_sched_add_worker(S, w, 100 + w, 1, 1 << 30, 1.0) == 0);
  }
}

static void stop(void) {
  int w;
  dl_sched_free(S);
  for (w = 0; w < 4; w++) dl_buf_free(&D.wout[w]);
  dl_buf_free(&D.cout);
  dl_buf_free(&D.c2out);
}

/* Send the client frame f to the scheduler, then empty it. */
static void client_send(dl_buf *f) {
  CHECK(dl_sched_client_frame(S, f->p, f->len, 1.0) == 0);
  dl_buf_free(f);
}

static void submit_prio(const char *key, const char *dep, int prio) {
  sm_submit o = {0};
  dl_buf f;
  dl_buf_init(&f);
  o.prio = prio;
  o.dep = dep;
  sm_put_submit(&f, key, &o);
  client_send(&f);
}

static void submit(const char *key, const char *dep) {
  submit_prio(key, dep, 0);
}

static void key_msg(int type, const char *key) {
  dl_buf f;
  dl_buf_init(&f);
  dl_buf_u8(&f, (unsigned)type);
  dl_buf_str(&f, key, strlen(key));
  CHECK(dl_sched_client_frame(S, f.p, f.len, 1.0) == 0);
  dl_buf_free(&f);
}

/* Worker wid finished key; its small result came along (inl, or none). */
static void done_inline(int wid, const char *key, const char *inl) {
  dl_msg_done m;
  dl_buf f;
  dl_buf_init(&f);
  m.key = key;
  m.klen = strlen(key);
  m.nbytes = 8;
  m.start_us = 1;
  m.stop_us = 2;
  m.inl = inl ? inl : "";
  m.ilen = inl ? strlen(inl) : 0;
  dl_put_done(&f, &m);
  CHECK(dl_sched_worker_frame(S, wid, f.p, f.len, 1.0) == 0);
  dl_buf_free(&f);
}

static void done(int wid, const char *key) { done_inline(wid, key, NULL); }

/* Worker wid finished key after running it for us microseconds; its
   result has nbytes bytes (kept there). */
static void done_sized(int wid, const char *key, uint64_t nbytes,
                       uint64_t us) {
  dl_msg_done m;
  dl_buf f;
  dl_buf_init(&f);
  m.key = key;
  m.klen = strlen(key);
  m.nbytes = nbytes;
  m.start_us = 1;
  m.stop_us = 1 + us;
  m.inl = "";
  m.ilen = 0;
  dl_put_done(&f, &m);
  CHECK(dl_sched_worker_frame(S, wid, f.p, f.len, 1.0) == 0);
  dl_buf_free(&f);
}

/* Read the next message a worker was sent: 1 and the key of a COMPUTE,
   0 for the other messages with a key only, -1 at the end or at any other
   message. */
static int next_compute(dl_rd *r, const char **k, size_t *kl) {
  unsigned type = 0;
  const char *p;
  size_t pl;
  uint64_t v, nf, nd, i, j, nw;
  int64_t sv;
  if (!dl_rd_left(r)) return -1;
  dl_rd_u8(r, &type);
  if (type == DL_M_FREE || type == DL_M_CANCEL || type == DL_M_STEAL) {
    CHECK(dl_rd_str(r, k, kl) == 0);
    return 0;
  }
  if (type != DL_M_COMPUTE) return -1;
  CHECK(dl_rd_str(r, k, kl) == 0 && dl_rd_sv(r, &sv) == 0 &&
        dl_rd_uv(r, &v) == 0 && dl_rd_str(r, &p, &pl) == 0 &&
        dl_rd_uv(r, &nf) == 0 && dl_rd_bytes(r, 16 * nf, &p) == 0 &&
        dl_rd_uv(r, &nd) == 0);
  for (i = 0; i < nd; i++) {
    CHECK(dl_rd_str(r, &p, &pl) == 0 && dl_rd_uv(r, &nw) == 0);
    for (j = 0; j < nw; j++) CHECK(dl_rd_uv(r, &v) == 0);
  }
  return 1;
}

/* The worker a COMPUTE of key was sent to since the last call (0: none);
   clears the workers' buffers. */
static int computed_on(const char *key) {
  int w, found = 0, rc;
  for (w = 1; w <= 3; w++) {
    dl_rd r;
    const char *k;
    size_t kl;
    dl_rd_init(&r, D.wout[w].p, D.wout[w].len);
    while ((rc = next_compute(&r, &k, &kl)) >= 0)
      if (rc == 1 && kl == strlen(key) && memcmp(k, key, kl) == 0) found = w;
    D.wout[w].len = 0;
  }
  return found;
}

/* The keys of the COMPUTEs sent to worker w since the last call, each
   followed by a space, into out; clears that worker's buffer. */
static void computed_keys(int w, char *out, size_t cap) {
  dl_rd r;
  size_t n = 0, kl;
  const char *k;
  int rc;
  out[0] = '\0';
  dl_rd_init(&r, D.wout[w].p, D.wout[w].len);
  while ((rc = next_compute(&r, &k, &kl)) >= 0) {
    if (rc == 0) continue;
    CHECK(n + kl + 2 < cap);
    memcpy(out + n, k, kl);
    n += kl;
    out[n++] = ' ';
    out[n] = '\0';
  }
  CHECK(!dl_rd_left(&r)); /* no message of another kind */
  D.wout[w].len = 0;
}

/* The kind of the client message about key: 'd' done, 'e' erred, 0. */
static int client_news(const char *key, int *errkind) {
  dl_rd r;
  int news = 0;
  dl_rd_init(&r, D.cout.p, D.cout.len);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    const char *k, *b;
    size_t kl, bl;
    uint64_t v;
    dl_rd_u8(&r, &type);
    CHECK(dl_rd_str(&r, &k, &kl) == 0);
    if (type == DL_M_KEY_DONE) {
      CHECK(dl_rd_uv(&r, &v) == 0 && dl_rd_str(&r, &b, &bl) == 0);
      if (kl == strlen(key) && memcmp(k, key, kl) == 0) news = 'd';
    } else if (type == DL_M_KEY_ERR) {
      CHECK(dl_rd_uv(&r, &v) == 0 && dl_rd_str(&r, &b, &bl) == 0);
      if (kl == strlen(key) && memcmp(k, key, kl) == 0) {
        news = 'e';
        if (errkind) *errkind = (int)v;
      }
    } else {
      CHECK(0);
    }
  }
  return news;
}

static void test_chain_runs_in_order(void) {
  int w;
  start(2);
  submit("a-1", NULL);
  submit("b-1", "a-1");
  w = computed_on("a-1");
  CHECK(w != 0);
  CHECK(computed_on("b-1") == 0); /* waits for its input */
  done(w, "a-1");
  CHECK(client_news("a-1", NULL) == 'd');
  w = computed_on("b-1");
  CHECK(w != 0);
  done(w, "b-1");
  CHECK(client_news("b-1", NULL) == 'd');
  stop();
}

/* Two tasks x-1 and x-2 that fill worker 1's window: what is submitted
   next waits in the ready queue until one of them is done. */
static void fill_window(char *got, size_t n) {
  submit("x-1", NULL);
  submit("x-2", NULL);
  computed_keys(1, got, n);
  CHECK(strcmp(got, "x-1 x-2 ") == 0);
}

static void test_ready_tasks_run_by_priority_then_fifo(void) {
  char got[256];
  start(1);
  fill_window(got, sizeof got);
  submit("c-1", NULL);
  submit("c-2", NULL);
  submit_prio("h-1", NULL, 5);
  submit("c-3", NULL);
  submit("c-4", NULL);
  submit_prio("h-2", NULL, 5);
  submit_prio("l-1", NULL, -1);
  submit("c-5", NULL);
  key_msg(DL_M_CCANCEL, "c-3"); /* leaves the queue without running */
  computed_keys(1, got, sizeof got);
  CHECK(got[0] == '\0');
  done(1, "x-1"); /* tiny tasks: the window opens for all the rest */
  computed_keys(1, got, sizeof got);
  CHECK(strcmp(got, "h-1 h-2 c-1 c-2 c-4 c-5 l-1 ") == 0);
  stop();
}

/* Of equal priority and order, a ready task with inputs runs before the
   tasks without any that were queued before it: a map of consumers after
   a map of producers streams (each value consumed while it is in memory)
   instead of waiting for every producer to run first. */
static void test_ready_consumers_run_before_queued_producers(void) {
  char got[256];
  start(1);
  fill_window(got, sizeof got);
  submit("r-1", NULL);
  submit("r-2", NULL);
  submit("r-3", NULL);
  submit("d-1", "x-1");
  submit("d-2", "x-2");
  submit_prio("h-1", NULL, 5);
  submit_prio("l-1", "x-1", -1);
  computed_keys(1, got, sizeof got);
  CHECK(got[0] == '\0');
  done(1, "x-1"); /* tiny tasks: the window opens for all the rest */
  computed_keys(1, got, sizeof got);
  CHECK(strcmp(got, "h-1 d-1 r-1 r-2 r-3 l-1 ") == 0);
  done(1, "x-2");
  computed_keys(1, got, sizeof got);
  CHECK(strcmp(got, "d-2 ") == 0);
  stop();
}

/* A ready task whose big input is on a worker with a full window waits for
   it (its queue drains sooner than the bytes would move) rather than going
   to a busy worker with room; one whose input is small goes there, and an
   idle worker takes even a big one. */
static void test_big_inputs_wait_for_their_busy_holder(void) {
  char got[256];
  start(2);
  submit("a-1", NULL);
  submit("a-2", NULL);
  submit("a-3", NULL);
  submit("a-4", NULL);
  computed_keys(1, got, sizeof got);
  CHECK(strcmp(got, "a-1 a-3 ") == 0);
  computed_keys(2, got, sizeof got);
  CHECK(strcmp(got, "a-2 a-4 ") == 0);
  done_sized(1, "a-1", 20000000, 10000); /* 10 ms tasks: windows of 2 */
  submit("r-1", NULL);
  CHECK(computed_on("r-1") == 1); /* worker 1 is full again */
  done_sized(2, "a-2", 8, 10000);  /* worker 2 has room, and a-4 */
  submit("b-1", "a-1");
  CHECK(computed_on("b-1") == 0); /* 20 MB would take 0.2 s to move */
  done_sized(1, "a-3", 8, 10000);
  CHECK(computed_on("b-1") == 1);
  done_sized(1, "r-1", 8, 10000);
  submit("r-2", NULL);
  CHECK(computed_on("r-2") == 1); /* worker 1 full: b-1 and r-2 */
  submit("s-1", "r-1");
  CHECK(computed_on("s-1") == 2); /* 8 bytes move at once */
  done_sized(2, "a-4", 8, 10000);
  done_sized(2, "s-1", 8, 10000);
  submit("b-2", "a-1");
  CHECK(computed_on("b-2") == 2); /* worker 2 is idle */
  stop();
}

/* Submit key with priority prio and order order. */
static void submit_po(const char *key, int64_t prio, int64_t order) {
  sm_submit o = {0};
  dl_buf f;
  dl_buf_init(&f);
  o.prio = prio;
  o.order = order;
  sm_put_submit(&f, key, &o);
  client_send(&f);
}

/* Priorities and orders that do not fit in 32 bits (kept in task_x) rank
   as the others do: higher priority first, then lower order, then FIFO.
   Each pair would rank the other way if cut to 32 bits. */
static void test_wide_priorities_and_orders_rank_whole(void) {
  char got[256];
  start(1);
  fill_window(got, sizeof got);
  submit_po("one-1", 1, 0);
  submit_po("neg-1", -((int64_t)1 << 40), 0);
  submit_po("ohi-1", 1, (int64_t)1 << 32);   /* order 0 when cut */
  submit_po("mid-1", (int64_t)1 << 31, 0);   /* INT32_MIN when cut */
  submit_po("olo-1", 1, -((int64_t)1 << 33) + 5); /* 5 when cut */
  submit_po("big-1", ((int64_t)1 << 40) + 1, 0); /* 1 when cut */
  submit_po("one-2", 1, 0);
  computed_keys(1, got, sizeof got);
  CHECK(got[0] == '\0');
  done(1, "x-1"); /* tiny tasks: the window opens for all the rest */
  computed_keys(1, got, sizeof got);
  CHECK(strcmp(got, "big-1 mid-1 olo-1 one-1 one-2 ohi-1 neg-1 ") == 0);
  stop();
}

/* Whether worker w was sent a COMPUTE of key whose payload is want
   (its buffer is left as it is). */
static int computes_payload(int w, const char *key, const char *want) {
  dl_rd r;
  dl_rd_init(&r, D.wout[w].p, D.wout[w].len);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    dl_msg_compute m;
    dl_rd_u8(&r, &type);
    if (type != DL_M_COMPUTE) break;
    CHECK(dl_get_compute(&r, &m) == 0);
    if (m.klen == strlen(key) && memcmp(m.key, key, m.klen) == 0)
      return m.plen == strlen(want) && memcmp(m.payload, want, m.plen) == 0;
  }
  return 0;
}

/* Payloads are kept without what they share at their start and end with
   a reference payload (the first, or a later one that shared little with
   the one before); every worker still gets each payload whole. */
static void test_payloads_reach_workers_whole(void) {
  static const char *const keys[] = {"p-1", "p-2", "p-3", "p-4", "p-5",
                                     "p-6", "p-7", "p-8", "p-9"};
  static const char *const pays[] = {
    "123456789-first-end", "123456789", "123456789-second-end",
    "x23456789-other", "1234", "123456789-first-end", "", "enden",
    "1234567890123456789012345678901234567890123456789012345678901234567890"
    "1234567890123456789012345678901234567890123456789012345678901234567890"
    "12345678901234567890123456789012345678901234567890"};
  sm_submit o = {0};
  int i;
  start(1);
  for (i = 0; i < 9; i++) {
    dl_buf f, spec;
    dl_buf_init(&f);
    dl_buf_init(&spec);
    sm_put_spec(&spec, &o);
    dl_put_submit(&f, keys[i], strlen(keys[i]), pays[i], strlen(pays[i]),
                  spec.p, spec.len);
    dl_buf_free(&spec);
    client_send(&f);
    CHECK(computes_payload(1, keys[i], pays[i]));
    D.wout[1].len = 0;
    done(1, keys[i]);
  }
  stop();
}

/* The holders of a result, as dl_sched_each_task shows them. */
static int holders[4], nholders;
static void see_holders(void *ud, const dl_sched_tinfo *t) {
  int i;
  if (strcmp(t->key, (const char *)ud) != 0) return;
  nholders = t->nwho;
  for (i = 0; i < t->nwho && i < 4; i++) holders[i] = t->who[i];
}

/* Copies of a result on three workers: the record keeps two holders in
   place and more in a block; losing them one by one goes back to one. */
static void test_result_held_by_several_workers(void) {
  int w, w2, w3;
  start(3);
  submit("a-1", NULL);
  w = computed_on("a-1");
  CHECK(w != 0);
  w2 = w % 3 + 1;
  w3 = w2 % 3 + 1;
  done(w, "a-1");
  done(w2, "a-1"); /* second and third copies: kept */
  done(w3, "a-1");
  dl_sched_each_task(S, see_holders, "a-1");
  CHECK(nholders == 3);
  CHECK(holders[0] + holders[1] + holders[2] == 6);
  D.alive[w] = 0;
  dl_sched_remove_worker(S, w);
  dl_sched_each_task(S, see_holders, "a-1");
  CHECK(nholders == 2 && holders[0] + holders[1] == w2 + w3);
  D.alive[w2] = 0;
  dl_sched_remove_worker(S, w2);
  dl_sched_each_task(S, see_holders, "a-1");
  CHECK(nholders == 1 && holders[0] == w3);
  done(w3, "a-1"); /* the same worker again: no second entry */
  dl_sched_each_task(S, see_holders, "a-1");
  CHECK(nholders == 1 && holders[0] == w3);
  submit("b-1", "a-1"); /* runs where its input is */
  CHECK(computed_on("b-1") == w3);
  stop();
}

static void test_lost_result_is_recomputed(void) {
  int w, w2;
  start(2);
  submit("a-1", NULL);
  submit("b-1", "a-1");
  w = computed_on("a-1");
  done(w, "a-1");
  w2 = computed_on("b-1");
  CHECK(w2 != 0);
  /* The worker holding a-1 dies before b-1 ran: a-1 comes back. */
  D.alive[w] = 0;
  dl_sched_remove_worker(S, w);
  CHECK(computed_on("a-1") == 3 - w);
  done(3 - w, "a-1");
  if (w2 == w) CHECK(computed_on("b-1") == 3 - w); /* b-1 ran there too */
  stop();
}

/* The bytes of the STORE of key sent to worker w since the last call, in
   out (NUL-terminated); 1 if there was one.  Clears that buffer. */
static int stored_on(int w, const char *key, char *out, size_t cap) {
  dl_rd r;
  int found = 0;
  dl_rd_init(&r, D.wout[w].p, D.wout[w].len);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    const char *k, *b;
    size_t kl, bl;
    dl_rd_u8(&r, &type);
    if (type != DL_M_STORE) break;
    CHECK(dl_rd_str(&r, &k, &kl) == 0 && dl_rd_str(&r, &b, &bl) == 0);
    if (kl == strlen(key) && memcmp(k, key, kl) == 0 && bl < cap) {
      memcpy(out, b, bl);
      out[bl] = '\0';
      found = 1;
    }
  }
  D.wout[w].len = 0;
  return found;
}

static void test_lost_small_result_is_stored_again(void) {
  int w, w2;
  char got[64];
  start(2);
  submit("a-1", NULL);
  submit("b-1", "a-1");
  w = computed_on("a-1");
  done_inline(w, "a-1", "VALUE");
  w2 = computed_on("b-1");
  /* The worker holding a-1 dies: the scheduler kept the small result that
     came inline, so it stores it on the other worker, no rerun. */
  D.alive[w] = 0;
  dl_sched_remove_worker(S, w);
  CHECK(stored_on(3 - w, "a-1", got, sizeof got));
  CHECK(strcmp(got, "VALUE") == 0);
  CHECK(computed_on("a-1") == 0);
  done(3 - w, "a-1"); /* the STORE's answer */
  if (w2 == w) CHECK(computed_on("b-1") == 3 - w); /* b-1 runs again */
  /* That worker dies too: stored again, and still never recomputed. */
  submit("c-1", "a-1");
  D.alive[w] = 1;
  CHECK(dl_sched_add_worker(S, w, 100 + w, 1, 1 << 30, 1.0) == 0);
  computed_on("c-1");
  D.alive[3 - w] = 0;
  dl_sched_remove_worker(S, 3 - w);
  CHECK(stored_on(w, "a-1", got, sizeof got) && strcmp(got, "VALUE") == 0);
  stop();
}

/* Whether worker w was sent a STORE of key with exactly the bytes want
   (its buffer is left as it is). */
static int stores(int w, const char *key, const char *want) {
  dl_rd r;
  dl_rd_init(&r, D.wout[w].p, D.wout[w].len);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    const char *k, *b;
    size_t kl, bl;
    dl_rd_u8(&r, &type);
    if (type != DL_M_STORE) break;
    CHECK(dl_rd_str(&r, &k, &kl) == 0 && dl_rd_str(&r, &b, &bl) == 0);
    if (kl == strlen(key) && memcmp(k, key, kl) == 0)
      return bl == strlen(want) && memcmp(b, want, bl) == 0;
  }
  return 0;
}

/* Kept results that share their first 9 bytes with the first one kept,
   and have at most 8 more, live in the task record: each comes back
   whole, as do those kept apart (longer, or another head). */
static void test_kept_results_in_the_record_come_back_whole(void) {
  static const char *const keys[] = {"a-1", "a-2", "a-3", "a-4", "a-5",
                                     "a-6"};
  static const char *const vals[] = {
    "123456789AB", "123456789", "123456789ABCDEFGH", "123456789ABCDEFGHI",
    "x23456789AB", "1234"};
  int i;
  start(1);
  for (i = 0; i < 6; i++) {
    submit(keys[i], NULL);
    CHECK(computed_on(keys[i]) == 1);
    done_inline(1, keys[i], vals[i]);
  }
  D.alive[2] = 1;
  CHECK(dl_sched_add_worker(S, 2, 102, 1, 1 << 30, 1.0) == 0);
  D.wout[2].len = 0;
  D.alive[1] = 0;
  dl_sched_remove_worker(S, 1);
  for (i = 0; i < 6; i++) CHECK(stores(2, keys[i], vals[i]));
  D.wout[2].len = 0;
  for (i = 0; i < 6; i++) done(2, keys[i]); /* the STOREs' answers */
  CHECK(computed_on("a-1") == 0);
  stop();
}

static void test_killed_worker_after_three_deaths(void) {
  int round, kind = 0;
  start(3);
  submit("bomb-1", NULL);
  for (round = 0; round < 3; round++) {
    int w = computed_on("bomb-1");
    CHECK(w != 0);
    D.alive[w] = 0;
    dl_sched_remove_worker(S, w);
    D.alive[w] = 1;
    CHECK(dl_sched_add_worker(S, w, 200 + w, 1, 1 << 30, 1.0) == 0);
  }
  CHECK(client_news("bomb-1", &kind) == 'e');
  CHECK(kind == DL_ERR_KILLED);
  stop();
}

static void test_unknown_dependency_is_an_error(void) {
  int kind = 0;
  start(1);
  submit("b-1", "nowhere-1");
  CHECK(client_news("b-1", &kind) == 'e');
  CHECK(kind == DL_ERR_LOST);
  CHECK(computed_on("b-1") == 0);
  stop();
}

static void test_malformed_frames_are_refused(void) {
  static const char junk[] = {DL_M_SUBMIT, 5, 'a'};
  start(1);
  CHECK(dl_sched_client_frame(S, junk, sizeof junk, 1.0) != 0);
  CHECK(dl_sched_worker_frame(S, 1, junk, sizeof junk, 1.0) != 0);
  submit("ok-1", NULL); /* still works */
  CHECK(computed_on("ok-1") == 1);
  stop();
}

/* Submit key pinned to worker wid (a preference with allow_other). */
static void submit_pinned(const char *key, int wid, int allow_other) {
  sm_submit o = {0};
  dl_buf f;
  dl_buf_init(&f);
  o.worker = (uint64_t)wid;
  o.allow_other = allow_other;
  sm_put_submit(&f, key, &o);
  client_send(&f);
}

/* A heartbeat of worker wid at now: paused or not, with a spill error. */
static void beat(int wid, int paused, const char *spill_err, double now) {
  dl_msg_heartbeat m;
  dl_buf f;
  dl_buf_init(&f);
  memset(&m, 0, sizeof m);
  m.managed = 50 << 20;
  m.rss = 95 << 20;
  m.stored = 3;
  m.paused = (uint64_t)paused;
  m.spill_err = spill_err;
  m.selen = strlen(spill_err);
  dl_put_heartbeat(&f, &m);
  CHECK(dl_sched_worker_frame(S, wid, f.p, f.len, now) == 0);
  dl_buf_free(&f);
}

/* The message of the error the client was told about key, into out. */
static int client_err_msg(const char *key, char *out, size_t cap) {
  dl_rd r;
  int found = 0;
  dl_rd_init(&r, D.cout.p, D.cout.len);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    const char *k, *b;
    size_t kl, bl;
    uint64_t v;
    dl_rd_u8(&r, &type);
    CHECK(dl_rd_str(&r, &k, &kl) == 0);
    CHECK(dl_rd_uv(&r, &v) == 0 && dl_rd_str(&r, &b, &bl) == 0);
    if (type == DL_M_KEY_ERR && kl == strlen(key) &&
        memcmp(k, key, kl) == 0) {
      dl_rd e;
      const char *m;
      size_t ml;
      dl_rd_init(&e, b, bl);
      CHECK(dl_rd_uv(&e, &v) == 0 && dl_rd_str(&e, &m, &ml) == 0);
      CHECK(ml < cap);
      memcpy(out, m, ml);
      out[ml] = '\0';
      found = 1;
    }
  }
  return found;
}

/* The keys of the STEALs sent to worker w, as computed_keys. */
static void steal_keys(int w, char *out, size_t cap) {
  dl_rd r;
  size_t n = 0;
  out[0] = '\0';
  dl_rd_init(&r, D.wout[w].p, D.wout[w].len);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    const char *k;
    size_t kl;
    dl_rd_u8(&r, &type);
    CHECK(type == DL_M_STEAL);
    CHECK(dl_rd_str(&r, &k, &kl) == 0 && n + kl + 2 < cap);
    memcpy(out + n, k, kl);
    n += kl;
    out[n++] = ' ';
    out[n] = '\0';
  }
  D.wout[w].len = 0;
}

static void stolen_ok(int wid, const char *key, int ok) {
  dl_msg_stolen m;
  dl_buf f;
  dl_buf_init(&f);
  m.key = key;
  m.klen = strlen(key);
  m.ok = (uint64_t)ok;
  dl_put_stolen(&f, &m);
  CHECK(dl_sched_worker_frame(S, wid, f.p, f.len, 1.0) == 0);
  dl_buf_free(&f);
}

static void stolen(int wid, const char *key) { stolen_ok(wid, key, 1); }

static void test_paused_worker_hands_its_queue_over(void) {
  char got[256], want[256];
  start(2);
  submit("x-1", NULL); /* two per worker fill both windows */
  submit("x-2", NULL);
  submit("x-3", NULL);
  submit("x-4", NULL);
  computed_keys(1, got, sizeof got);
  CHECK(strlen(got) == 8);
  computed_keys(2, want, sizeof want);
  CHECK(strlen(want) == 8);
  /* Worker 2 finishes one of its two (busy: it steals nothing); worker
     1 pauses (memory past the pause fraction, a full disk) with two
     queued: worker 2, which has room, is given both. */
  {
    char k1[8], k2[8];
    sscanf(want, "%7s %7s", k1, k2);
    done(2, k1);
    CHECK(computed_on("y-0") == 0); /* clears the buffers */
  }
  beat(1, 0, "", 1.0);
  CHECK(D.wout[1].len == 0); /* running: nothing is taken from it */
  beat(1, 1, "No space left on device", 1.0);
  steal_keys(1, want, sizeof want);
  CHECK(strlen(want) == strlen(got));
  {
    char k1[8], k2[8];
    sscanf(want, "%7s %7s", k1, k2);
    stolen(1, k1);
    stolen_ok(1, k2, 0); /* not queued yet (fetching its inputs) */
    computed_keys(2, got, sizeof got);
    CHECK(strstr(got, k1) && !strstr(got, k2));
    beat(1, 1, "No space left on device", 1.5); /* still paused: again */
    steal_keys(1, want, sizeof want);
    CHECK(strncmp(want, k2, strlen(k2)) == 0 && strlen(want) == 4);
    stolen(1, k2);
    computed_keys(2, got, sizeof got);
    CHECK(strstr(got, k2) != NULL);
  }
  {
    dl_sched_winfo wi[4];
    int i, n = dl_sched_workers(S, wi, 4);
    for (i = 0; i < n; i++)
      if (wi[i].id == 1) {
        CHECK(wi[i].status == DL_WS_PAUSED);
        CHECK(strcmp(wi[i].spill_err, "No space left on device") == 0);
      }
  }
  /* New work goes to the worker that runs, though worker 1 has room. */
  done(2, "x-1");
  done(2, "x-2");
  done(2, "x-3");
  done(2, "x-4");
  submit("z-1", NULL);
  CHECK(computed_on("z-1") == 2);
  stop();
}

static void test_all_paused_fails_pending_work_saying_why(void) {
  char msg[1024];
  int kind = 0;
  start(2);
  dl_sched_set_heartbeat_timeout(S, 2.0);
  submit("a-1", NULL);
  submit("a-2", NULL);
  submit("a-3", "a-1");
  beat(1, 1, "No space left on device", 1.0);
  beat(2, 1, "", 1.0);
  dl_sched_tick(S, 1.5);
  dl_sched_tick(S, 3.0);
  CHECK(client_news("a-1", NULL) == 0); /* not yet: a pause may pass */
  beat(2, 0, "", 3.1); /* it does pass: the clock starts again */
  beat(2, 1, "", 3.2);
  dl_sched_tick(S, 3.3);
  dl_sched_tick(S, 5.2);
  CHECK(client_news("a-1", NULL) == 0);
  dl_sched_tick(S, 5.4);
  CHECK(client_news("a-1", &kind) == 'e' && kind == DL_ERR_LOST);
  CHECK(client_err_msg("a-1", msg, sizeof msg));
  CHECK(strstr(msg, "no worker can make progress: worker ") == msg);
  CHECK(strstr(msg, "paused (memory 9% of 1074 MB, spill disk full: No "
                    "space left on device)") != NULL);
  CHECK(client_news("a-3", &kind) == 'e');
  /* The workers are told to drop what they held queued. */
  {
    dl_rd r;
    const char *k;
    size_t kl;
    int cancels = 0, w;
    for (w = 1; w <= 2; w++) {
      dl_rd_init(&r, D.wout[w].p, D.wout[w].len);
      while (next_compute(&r, &k, &kl) >= 0) cancels++;
    }
    CHECK(cancels >= 2);
  }
  stop();
}

static void test_pinned_to_gone_workers_fails_naming_them(void) {
  char msg[1024];
  int kind = 0;
  start(2);
  D.alive[1] = 0;
  dl_sched_remove_worker(S, 1);
  submit_pinned("p-1", 1, 0);
  CHECK(client_news("p-1", &kind) == 'e' && kind == DL_ERR_LOST);
  CHECK(client_err_msg("p-1", msg, sizeof msg));
  CHECK(strstr(msg, "pinned to worker 1, which is gone") != NULL);
  CHECK(strstr(msg, "allow_other_workers") != NULL);
  D.cout.len = 0;
  submit_pinned("q-1", 1, 1); /* a preference: runs elsewhere */
  CHECK(computed_on("q-1") == 2);
  /* Pinned to a live worker that dies with it: it fails then. */
  submit_pinned("r-1", 2, 0);
  CHECK(computed_on("r-1") == 2);
  D.cout.len = 0;
  D.alive[1] = 1;
  CHECK(dl_sched_add_worker(S, 3, 103, 1, 1 << 30, 1.0) == 0);
  D.alive[2] = 0;
  dl_sched_remove_worker(S, 2);
  CHECK(client_news("r-1", &kind) == 'e');
  CHECK(client_err_msg("r-1", msg, sizeof msg));
  CHECK(strstr(msg, "pinned to worker 2, which is gone") != NULL);
  stop();
}

static void test_silent_worker_is_named_once(void) {
  int ids[4], n;
  double t;
  dl_sched_winfo wi[4], gone[4];
  start(2);
  dl_sched_set_heartbeat_timeout(S, 3.0);
  /* Worker 2 beats every half second; worker 1 stopped after 2.0. */
  beat(1, 0, "", 2.0);
  for (t = 1.5, n = 0; t < 4.1 && n == 0; t += 0.5) {
    beat(2, 0, "", t);
    n = dl_sched_silent(S, t, ids, 4);
    if (t >= 3.5) {
      int i, k = dl_sched_workers(S, wi, 4);
      for (i = 0; i < k; i++)
        CHECK(wi[i].status == (wi[i].id == 1 ? DL_WS_SILENT : DL_WS_RUNNING));
    }
  }
  CHECK(n == 0);
  /* The scheduler itself stopped for 10 s: nobody is blamed for that;
     worker 1 had been quiet 2 s, and is named once quiet past 3 s. */
  CHECK(dl_sched_silent(S, 14.0, ids, 4) == 0);
  for (t = 14.5, n = 0; t < 30 && n == 0; t += 0.5) {
    beat(2, 0, "", t);
    n = dl_sched_silent(S, t, ids, 4);
  }
  CHECK(n == 1 && ids[0] == 1);
  CHECK(t > 15.9 && t < 16.1); /* found at 15.5: quiet 3.5 s */
  CHECK(dl_sched_silent(S, t + 0.5, ids, 4) == 0); /* named once */
  D.alive[1] = 0;
  dl_sched_remove_worker(S, 1);
  CHECK(dl_sched_departed(S, gone, 4) == 1);
  CHECK(gone[0].id == 1 && gone[0].status == DL_WS_DEAD);
  CHECK(strstr(gone[0].reason, "no heartbeat for 3.") == gone[0].reason);
  stop();
}

/* Submit key running the function with hash h (bytecode sent first when
   code is not NULL), as client rid does (-1: the first client). */
static void submit_fn_as(int rid, const char *key, const unsigned char *h,
                         const char *code) {
  sm_submit o = {0};
  dl_buf f;
  dl_buf_init(&f);
  if (code) sm_put_cfunc(&f, h, code);
  o.fn = h;
  sm_put_submit(&f, key, &o);
  if (rid < 0) {
    client_send(&f);
    return;
  }
  CHECK(dl_sched_requester_frame(S, rid, f.p, f.len, 1.0) == 0);
  dl_buf_free(&f);
}

static void submit_fn(const char *key, const unsigned char *h,
                      const char *code) {
  submit_fn_as(-1, key, h, code);
}

/* Call visit(type, key, klen, ud) for each message in b: function
   messages (FUNC, FUNC_FREE, FN_GONE: the key is the 16-byte hash),
   KEY_DONE, COMPUTE and FREE. */
static void each_msg(dl_buf *b,
                     void (*visit)(unsigned, const char *, size_t, void *),
                     void *ud) {
  dl_rd r;
  dl_rd_init(&r, b->p, b->len);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    const char *k, *x;
    size_t kl = 16, xl;
    uint64_t v;
    dl_rd_u8(&r, &type);
    if (type == DL_M_FUNC || type == DL_M_FUNC_FREE ||
        type == DL_M_FN_GONE) {
      CHECK(dl_rd_bytes(&r, 16, &k) == 0);
      if (type == DL_M_FUNC) CHECK(dl_rd_str(&r, &x, &xl) == 0);
    } else if (type == DL_M_KEY_DONE) {
      CHECK(dl_rd_str(&r, &k, &kl) == 0 && dl_rd_uv(&r, &v) == 0 &&
            dl_rd_str(&r, &x, &xl) == 0);
    } else { /* a COMPUTE or a FREE */
      r.p--;
      CHECK(next_compute(&r, &k, &kl) >= 0);
    }
    visit(type, k, kl, ud);
  }
}

typedef struct { unsigned want; int n; } type_count;

static void count_type(unsigned type, const char *k, size_t kl, void *ud) {
  type_count *c = ud;
  (void)k;
  (void)kl;
  c->n += type == c->want;
}

/* How many messages of type (with a 16-byte hash first) are in b. */
static int count_hash_msgs(dl_buf *b, unsigned want) {
  type_count c = {want, 0};
  each_msg(b, count_type, &c);
  return c.n;
}

static void forget(const unsigned char *h) {
  dl_buf f;
  dl_buf_init(&f);
  dl_put_hash_msg(&f, DL_M_FN_FORGET, h);
  CHECK(dl_sched_client_frame(S, f.p, f.len, 1.0) == 0);
  dl_buf_free(&f);
}

static void test_bytecode_dropped_when_no_task_needs_it(void) {
  static const unsigned char h[16] = "0123456789abcdef";
  start(1);
  submit_fn("f-1", h, "CODE");
  CHECK(count_hash_msgs(&D.wout[1], DL_M_FUNC) == 1);
  D.wout[1].len = 0;
  done(1, "f-1");
  D.cout.len = 0;
  key_msg(DL_M_RELEASE, "f-1"); /* the last task naming h is forgotten */
  CHECK(count_hash_msgs(&D.cout, DL_M_FN_GONE) == 1);
  D.cout.len = 0;
  /* Before the client's answer it submits again, by hash only: h stays. */
  submit_fn("f-2", h, NULL);
  forget(h);
  CHECK(count_hash_msgs(&D.wout[1], DL_M_FUNC_FREE) == 0);
  CHECK(count_hash_msgs(&D.wout[1], DL_M_FUNC) == 0); /* it has it */
  D.wout[1].len = 0;
  done(1, "f-2");
  /* Its answer said it forgot h: no client knows h, so when f-2 goes, h
     goes at once, on the worker too, without asking again. */
  key_msg(DL_M_RELEASE, "f-2");
  CHECK(count_hash_msgs(&D.cout, DL_M_FN_GONE) == 0);
  CHECK(count_hash_msgs(&D.wout[1], DL_M_FUNC_FREE) == 1);
  D.wout[1].len = 0;
  /* The client sends it again with the next task: so does the scheduler. */
  submit_fn("f-3", h, "CODE");
  CHECK(count_hash_msgs(&D.wout[1], DL_M_FUNC) == 1);
  stop();
}

/* The function hashes of the COMPUTEs in worker w's buffer, in order, in
   out (16 bytes each, at most max of them); how many.  Clears it. */
static int compute_fns(int w, unsigned char (*out)[16], int max) {
  dl_rd r;
  int n = 0;
  dl_rd_init(&r, D.wout[w].p, D.wout[w].len);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    dl_msg_compute m;
    const char *h, *c;
    size_t cl;
    dl_rd_u8(&r, &type);
    if (type == DL_M_FUNC) {
      CHECK(dl_rd_bytes(&r, 16, &h) == 0 && dl_rd_str(&r, &c, &cl) == 0);
      continue;
    }
    if (type != DL_M_COMPUTE) break;
    CHECK(dl_get_compute(&r, &m) == 0 && m.nfns == 1 && n < max);
    memcpy(out[n++], m.fns, 16);
  }
  D.wout[w].len = 0;
  return n;
}

/* Tasks whose one function is their reference payload's keep no pointer
   to it: each COMPUTE still names it, and it goes with the last of them
   and comes back with a new task, whatever function the others name. */
static void test_tasks_of_one_function_name_it(void) {
  static const unsigned char h[16] = "0123456789abcdef";
  static const unsigned char g[16] = "fedcba9876543210";
  static const char *const keys[] = {"f-1", "f-2", "g-1", "f-3"};
  unsigned char got[8][16];
  int i;
  start(1);
  for (i = 0; i < 4; i++) {
    submit_fn(keys[i], i == 2 ? g : h,
              i == 0 ? "CODE" : i == 2 ? "CODE2" : NULL);
    CHECK(compute_fns(1, got, 8) == 1);
    CHECK(memcmp(got[0], i == 2 ? g : h, 16) == 0);
    done(1, keys[i]);
  }
  D.cout.len = 0;
  key_msg(DL_M_RELEASE, "f-1");
  key_msg(DL_M_RELEASE, "f-2");
  CHECK(count_hash_msgs(&D.cout, DL_M_FN_GONE) == 0); /* f-3 names h */
  key_msg(DL_M_RELEASE, "f-3");
  CHECK(count_hash_msgs(&D.cout, DL_M_FN_GONE) == 1);
  forget(h);
  D.wout[1].len = 0;
  submit_fn("f-4", h, "CODE");
  CHECK(compute_fns(1, got, 8) == 1 && memcmp(got[0], h, 16) == 0);
  stop();
}

typedef struct { const char *key; int found; } key_find;

static void find_key_done(unsigned type, const char *k, size_t kl,
                          void *ud) {
  key_find *f = ud;
  CHECK(type == DL_M_KEY_DONE || type == DL_M_FN_GONE);
  if (type == DL_M_KEY_DONE && kl == strlen(f->key) &&
      memcmp(k, f->key, kl) == 0)
    f->found = 1;
}

/* Whether b holds a KEY_DONE of key (b holds KEY_DONEs and FN_GONEs). */
static int key_done_in(dl_buf *b, const char *key) {
  key_find f = {key, 0};
  each_msg(b, find_key_done, &f);
  return f.found;
}

/* Whether worker w was told to free key since its buffer was cleared. */
static int freed_on(int w, const char *key) {
  dl_rd r;
  const char *k;
  size_t kl;
  int found = 0;
  dl_rd_init(&r, D.wout[w].p, D.wout[w].len);
  while (dl_rd_left(&r)) {
    int free_msg = (unsigned char)*r.p == DL_M_FREE;
    if (next_compute(&r, &k, &kl) < 0) break;
    if (free_msg && kl == strlen(key) && memcmp(k, key, kl) == 0) found = 1;
  }
  return found;
}

/* Worker w runs everything it is sent, until nothing is left; returns how
   many times key was computed. */
static int run_all_on(int w, const char *key) {
  int rounds, times = 0;
  for (rounds = 0; rounds < 10; rounds++) {
    char keys[16][32];
    int nk = 0, i;
    dl_rd r;
    dl_rd_init(&r, D.wout[w].p, D.wout[w].len);
    while (dl_rd_left(&r)) {
      const char *k;
      size_t kl;
      int rc;
      if ((unsigned char)*r.p == DL_M_FUNC) {
        const char *x;
        size_t xl;
        r.p++;
        CHECK(dl_rd_bytes(&r, 16, &k) == 0 && dl_rd_str(&r, &x, &xl) == 0);
        continue;
      }
      rc = next_compute(&r, &k, &kl);
      CHECK(rc >= 0);
      if (rc == 1) {
        CHECK(nk < 16 && kl < 32);
        memcpy(keys[nk], k, kl);
        keys[nk++][kl] = '\0';
      }
    }
    D.wout[w].len = 0;
    if (nk == 0) break;
    for (i = 0; i < nk; i++) {
      times += strcmp(keys[i], key) == 0;
      done(w, keys[i]);
    }
  }
  return times;
}

/* Two clients of one scheduler (a `dlua scheduler` with two scripts):
   each hears of its own keys only, a key both submitted is computed once
   and told to both, and when one goes, only what it alone held is freed;
   a function both sent is asked back from the one left only. */
static void test_two_clients_own_their_keys(void) {
  static const unsigned char h[16] = "fedcba9876543210";
  const int B = DL_SCHED_CLIENT_BASE;
  start(1);
  submit_fn_as(-1, "a-only", h, "CODE");
  submit_fn_as(B, "b-only", h, "CODE");
  submit_fn_as(-1, "shared", h, NULL);
  submit_fn_as(B, "shared", h, NULL);
  CHECK(run_all_on(1, "shared") == 1); /* computed once, for both */
  CHECK(key_done_in(&D.cout, "a-only") && !key_done_in(&D.cout, "b-only"));
  CHECK(key_done_in(&D.c2out, "b-only") && !key_done_in(&D.c2out, "a-only"));
  CHECK(key_done_in(&D.cout, "shared") && key_done_in(&D.c2out, "shared"));
  D.cout.len = D.c2out.len = 0;
  D.wout[1].len = 0;
  /* B goes without a word (its process was killed): its own key is
     freed, the shared one and A's stay. */
  dl_sched_requester_gone(S, B);
  CHECK(freed_on(1, "b-only"));
  CHECK(!freed_on(1, "shared") && !freed_on(1, "a-only"));
  CHECK(count_hash_msgs(&D.wout[1], DL_M_FUNC_FREE) == 0); /* A needs h */
  D.wout[1].len = 0;
  /* A releases its keys: h is asked back from A alone, and goes when A
     has answered. */
  key_msg(DL_M_RELEASE, "a-only");
  key_msg(DL_M_RELEASE, "shared");
  CHECK(freed_on(1, "shared") && freed_on(1, "a-only"));
  CHECK(count_hash_msgs(&D.cout, DL_M_FN_GONE) == 1);
  CHECK(D.c2out.len == 0);
  D.wout[1].len = 0;
  forget(h);
  CHECK(count_hash_msgs(&D.wout[1], DL_M_FUNC_FREE) == 1);
  stop();
}

/* A function two clients sent stays until both have answered that they
   forgot it. */
static void test_function_kept_until_every_client_forgot_it(void) {
  static const unsigned char h[16] = "0011223344556677";
  const int B = DL_SCHED_CLIENT_BASE;
  dl_buf f;
  start(1);
  submit_fn_as(-1, "x-1", h, "CODE");
  submit_fn_as(B, "y-1", h, "CODE");
  run_all_on(1, "");
  D.cout.len = D.c2out.len = 0;
  D.wout[1].len = 0;
  key_msg(DL_M_RELEASE, "x-1");
  dl_buf_init(&f);
  dl_put_key_msg(&f, DL_M_RELEASE, "y-1", 3);
  CHECK(dl_sched_requester_frame(S, B, f.p, f.len, 1.0) == 0);
  CHECK(count_hash_msgs(&D.cout, DL_M_FN_GONE) == 1);
  CHECK(count_hash_msgs(&D.c2out, DL_M_FN_GONE) == 1);
  forget(h); /* A forgot; B may still name h by its hash */
  CHECK(count_hash_msgs(&D.wout[1], DL_M_FUNC_FREE) == 0);
  f.len = 0;
  dl_put_hash_msg(&f, DL_M_FN_FORGET, h);
  CHECK(dl_sched_requester_frame(S, B, f.p, f.len, 1.0) == 0);
  CHECK(count_hash_msgs(&D.wout[1], DL_M_FUNC_FREE) == 1);
  dl_buf_free(&f);
  stop();
}

static void sched_one(const unsigned char *p, size_t n, void *ud) {
  (void)ud;
  sdrv_run(p, n);
}

static void test_replay_fuzz_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-sched", sched_one, NULL) > 0);
}

/* What the dashboard reads: events with keys, sizes and first error
   lines; groups with distinct colours that go with their last task; a
   worker's stored count as soon as it reports a result. */
static void test_dashboard_figures(void) {
  dl_sched_group g[4];
  dl_sched_event ev[4];
  dl_sched_winfo wi[1];
  uint64_t next;
  dl_buf f, rec;
  dl_msg_err em;
  int w, n;
  start(1);
  submit("load-1", NULL);
  submit("bad-1", NULL);
  {
    char keys[64];
    computed_keys(1, keys, sizeof keys);
    CHECK(strstr(keys, "load-1 ") && strstr(keys, "bad-1 "));
  }
  w = 1;
  done(w, "load-1");
  dl_buf_init(&f);
  dl_buf_init(&rec);
  dl_put_err_rec(&rec, DL_ERR_RAISED, "bad row 4\nmore", "", "w1", NULL, 0);
  em.key = "bad-1";
  em.klen = 5;
  em.kind = DL_ERR_RAISED;
  em.rec = rec.p;
  em.rlen = rec.len;
  dl_put_err_msg(&f, DL_M_ERR, &em);
  CHECK(dl_sched_worker_frame(S, w, f.p, f.len, 1.0) == 0);
  dl_buf_free(&f);
  dl_buf_free(&rec);
  n = dl_sched_events(S, 0, ev, 4, &next);
  CHECK(n == 2 && next == 2);
  CHECK(strcmp(ev[0].key, "load-1") == 0 && strcmp(ev[0].group, "load") == 0);
  CHECK(ev[0].ok && ev[0].nbytes == 8 && ev[0].err[0] == '\0');
  CHECK(strcmp(ev[1].key, "bad-1") == 0 && !ev[1].ok);
  CHECK(strcmp(ev[1].err, "bad row 4") == 0);
  CHECK(dl_sched_workers(S, wi, 1) == 1 && wi[0].stored == 1 &&
        wi[0].managed == 8);
  n = dl_sched_groups(S, g, 4);
  CHECK(n == 2 && g[0].colour != g[1].colour);
  CHECK(g[0].colour >= 0 && g[0].colour < DL_SCHED_COLOURS);
  key_msg(DL_M_RELEASE, "load-1");
  n = dl_sched_groups(S, g, 4);
  CHECK(n == 1 && strcmp(g[0].name, "bad") == 0);
  CHECK(dl_sched_workers(S, wi, 1) == 1 && wi[0].stored == 0 &&
        wi[0].managed == 0);
  /* the event outlives its group */
  CHECK(dl_sched_events(S, 0, ev, 4, &next) == 2 &&
        strcmp(ev[0].group, "load") == 0);
  stop();
}

static void count_task(void *ud, const dl_sched_tinfo *t) {
  (void)ud;
  (void)t;
}

/* A task's size and group as dl_sched_each_task shows them. */
static uint64_t seen_nbytes;
static char seen_group[32], seen_dep_group[32];
static void see_task(void *ud, const dl_sched_tinfo *t) {
  if (strcmp(t->key, (const char *)ud) != 0) return;
  seen_nbytes = t->nbytes;
  snprintf(seen_group, sizeof seen_group, "%s", t->group);
  snprintf(seen_dep_group, sizeof seen_dep_group, "%s",
           t->ndeps ? t->dep_group(t, 0) : "");
}

/* A task keeps its result's size in 32 bits, a bigger one in its rare
   fields; it names its group by an index that a gone group leaves to the
   next new one. */
static void test_big_sizes_and_reused_group_slots(void) {
  dl_msg_done m;
  dl_buf f;
  dl_sched_event ev[2];
  dl_sched_winfo wi[1];
  uint64_t next;
  start(1);
  submit("big-1", NULL);
  CHECK(computed_on("big-1") == 1);
  dl_buf_init(&f);
  m.key = "big-1";
  m.klen = 5;
  m.nbytes = (uint64_t)5 << 30;
  m.start_us = 1;
  m.stop_us = 2;
  m.inl = "";
  m.ilen = 0;
  dl_put_done(&f, &m);
  CHECK(dl_sched_worker_frame(S, 1, f.p, f.len, 1.0) == 0);
  dl_buf_free(&f);
  CHECK(dl_sched_events(S, 0, ev, 2, &next) == 1 &&
        ev[0].nbytes == (uint64_t)5 << 30);
  CHECK(dl_sched_workers(S, wi, 1) == 1 &&
        wi[0].managed == (int64_t)5 << 30);
  dl_sched_each_task(S, see_task, "big-1");
  CHECK(seen_nbytes == (uint64_t)5 << 30 && strcmp(seen_group, "big") == 0);
  submit("a-1", NULL);
  key_msg(DL_M_RELEASE, "a-1"); /* group "a" goes: its slot is free */
  {
    dl_sched_group g[4];
    CHECK(dl_sched_groups(S, g, 4) == 1 && strcmp(g[0].name, "big") == 0);
  }
  submit("b-1", "big-1");       /* group "b" takes it */
  dl_sched_each_task(S, see_task, "b-1");
  CHECK(strcmp(seen_group, "b") == 0 && strcmp(seen_dep_group, "big") == 0);
  stop();
}

/* Tasks whose every future is released, the inputs first (a client that
   holds only the keys it asked for): releasing the last forgets them all
   in one walk, and each once.  "twice" names "d" twice (a task that uses
   one input twice, as x.T @ x): d was walked to twice, and read again
   after it was freed. */
static void test_released_inputs_are_forgotten_once(void) {
  sm_submit o = {0};
  dl_buf f;
  int64_t counts[6];
  int i;
  start(1);
  submit("d", NULL);
  dl_buf_init(&f);
  o.dep = "d";
  o.dep2 = "d";
  sm_put_submit(&f, "twice", &o);
  client_send(&f);
  submit("top", "twice");
  key_msg(DL_M_RELEASE, "d");
  key_msg(DL_M_RELEASE, "twice");
  CHECK(run_all_on(1, "top") == 1);
  CHECK(client_news("top", NULL) == 'd' && client_news("d", NULL) == 0);
  key_msg(DL_M_RELEASE, "top");
  CHECK(dl_sched_each_task(S, count_task, NULL) == 0);
  dl_sched_counts(S, counts); /* each forgotten once: none below 0 */
  for (i = 0; i < 6; i++) CHECK(counts[i] == 0);
  stop();
}

/* Keys a task shows (dl_sched_each_task), joined by ' ' (one walk). */
static char shown[4096];
static void show_key(void *ud, const dl_sched_tinfo *t) {
  (void)ud;
  if (strlen(shown) + strlen(t->key) + 2 < sizeof shown) {
    strcat(shown, t->key);
    strcat(shown, " ");
  }
}

/* Keys of one stem and 8 hex digits are kept as their counter (from a
   stem's second key on): every message, walk and group names them whole,
   as it does keys kept as they are (the first, upper-case digits, hashes
   that only look alike); a stem freed with its last task is made again. */
static void test_stemmed_keys_come_back_whole(void) {
  static const char *const keys[] = {
    "inc-0badf00d00000001", "inc-0badf00d00000002", "inc-0badf00dffffffff",
    "inc-0badf00dABCDEF01", "inc-0badf00d0000000a", "x-0123456789abcdef",
    "x-0123456789abcdee", "x-01234567", "01234567"};
  const int n = (int)(sizeof keys / sizeof *keys);
  dl_sched_group g[4];
  sm_submit o = {0};
  dl_buf f;
  int i, round;
  start(1);
  for (round = 0; round < 2; round++) {
    for (i = 0; i < n; i++) {
      submit(keys[i], NULL);
      CHECK(computed_on(keys[i]) == 1);
      done(1, keys[i]);
      CHECK(client_news(keys[i], NULL) == 'd');
      D.cout.len = 0;
    }
    dl_buf_init(&f);
    o.dep = "inc-0badf00d00000002";
    o.dep2 = "inc-0badf00dffffffff";
    sm_put_submit(&f, "sum-0badf00d00000001", &o);
    client_send(&f);
    CHECK(computed_on("sum-0badf00d00000001") == 1);
    done(1, "sum-0badf00d00000001");
    CHECK(client_news("sum-0badf00d00000001", NULL) == 'd');
    D.cout.len = 0;
    shown[0] = '\0';
    CHECK(dl_sched_each_task(S, show_key, NULL) == n + 1);
    for (i = 0; i < n; i++) {
      char want[64];
      snprintf(want, sizeof want, "%s ", keys[i]);
      CHECK(strstr(shown, want) != NULL);
    }
    CHECK(dl_sched_groups(S, g, 4) == 4);
    for (i = 0; i < 4; i++)
      if (strcmp(g[i].name, "inc") == 0) CHECK(g[i].total == 5);
    key_msg(DL_M_RELEASE, "sum-0badf00d00000001");
    for (i = 0; i < n; i++) key_msg(DL_M_RELEASE, keys[i]);
    CHECK(dl_sched_each_task(S, count_task, NULL) == 0);
  }
  stop();
}

int main(void) {
  RUN(test_chain_runs_in_order);
  RUN(test_big_sizes_and_reused_group_slots);
  RUN(test_ready_tasks_run_by_priority_then_fifo);
  RUN(test_ready_consumers_run_before_queued_producers);
  RUN(test_big_inputs_wait_for_their_busy_holder);
  RUN(test_wide_priorities_and_orders_rank_whole);
  RUN(test_payloads_reach_workers_whole);
  RUN(test_tasks_of_one_function_name_it);
  RUN(test_lost_result_is_recomputed);
  RUN(test_result_held_by_several_workers);
  RUN(test_lost_small_result_is_stored_again);
  RUN(test_kept_results_in_the_record_come_back_whole);
  RUN(test_killed_worker_after_three_deaths);
  RUN(test_unknown_dependency_is_an_error);
  RUN(test_malformed_frames_are_refused);
  RUN(test_paused_worker_hands_its_queue_over);
  RUN(test_all_paused_fails_pending_work_saying_why);
  RUN(test_pinned_to_gone_workers_fails_naming_them);
  RUN(test_silent_worker_is_named_once);
  RUN(test_bytecode_dropped_when_no_task_needs_it);
  RUN(test_two_clients_own_their_keys);
  RUN(test_function_kept_until_every_client_forgot_it);
  RUN(test_dashboard_figures);
  RUN(test_released_inputs_are_forgotten_once);
  RUN(test_stemmed_keys_come_back_whole);
  RUN(test_replay_fuzz_regressions);
  return TAP_END();
}

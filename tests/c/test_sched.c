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

#include "dl_proto.h"
#include "sched_driver.h"
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
}

static void submit_prio(const char *key, const char *dep, int prio) {
  dl_buf f;
  dl_buf_init(&f);
  dl_buf_u8(&f, DL_M_SUBMIT);
  dl_buf_str(&f, key, strlen(key));
  dl_buf_str(&f, "payload", 7);
  dl_buf_sv(&f, prio);
  dl_buf_sv(&f, 0);
  dl_buf_uv(&f, 0);
  dl_buf_uv(&f, 0);
  dl_buf_uv(&f, 0);
  dl_buf_uv(&f, dep ? 1 : 0);
  if (dep) dl_buf_str(&f, dep, strlen(dep));
  dl_buf_uv(&f, 0);
  dl_buf_uv(&f, 0);
  CHECK(dl_sched_client_frame(S, f.p, f.len, 1.0) == 0);
  dl_buf_free(&f);
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
  dl_buf f;
  dl_buf_init(&f);
  dl_buf_u8(&f, DL_M_DONE);
  dl_buf_str(&f, key, strlen(key));
  dl_buf_uv(&f, 8);
  dl_buf_uv(&f, 1);
  dl_buf_uv(&f, 2);
  dl_buf_str(&f, inl ? inl : "", inl ? strlen(inl) : 0);
  CHECK(dl_sched_worker_frame(S, wid, f.p, f.len, 1.0) == 0);
  dl_buf_free(&f);
}

static void done(int wid, const char *key) { done_inline(wid, key, NULL); }

/* Read the next message a worker was sent: 1 and the key of a COMPUTE,
   0 for the other messages with a key only, -1 at the end or at any other
   message. */
static int next_compute(dl_rd *r, const char **k, size_t *kl) {
  unsigned type = 0;
  const char *p;
  size_t pl;
  uint64_t v, nd, i, j, nw;
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

static void test_ready_tasks_run_by_priority_then_fifo(void) {
  char got[256];
  start(1);
  submit("x-1", NULL); /* the first two fill the worker's window */
  submit("x-2", NULL);
  computed_keys(1, got, sizeof got);
  CHECK(strcmp(got, "x-1 x-2 ") == 0);
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

static void sched_one(const unsigned char *p, size_t n, void *ud) {
  (void)ud;
  sdrv_run(p, n);
}

static void test_replay_fuzz_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-sched", sched_one, NULL) > 0);
}

int main(void) {
  RUN(test_chain_runs_in_order);
  RUN(test_ready_tasks_run_by_priority_then_fifo);
  RUN(test_lost_result_is_recomputed);
  RUN(test_lost_small_result_is_stored_again);
  RUN(test_killed_worker_after_three_deaths);
  RUN(test_unknown_dependency_is_an_error);
  RUN(test_malformed_frames_are_refused);
  RUN(test_replay_fuzz_regressions);
  return TAP_END();
}

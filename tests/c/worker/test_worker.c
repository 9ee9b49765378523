/*
** test_worker.c -- the worker's I/O side alone, driven the way the fuzzer
** drives it (tests/fuzz/worker_driver.h): a value stored by the scheduler
** is served to peers, an input fetched from a peer lands in the store
** whether it comes as bytes or as a shared block, a block that cannot be
** mapped is asked for again as bytes (one named by its address, as a
** file first), one named by its address is read out of the peer, a
** refused read makes every later input come as a file at once, and
** every input the fuzzers saved
** (tests/fuzz/regressions-worker, and tests/fuzz/regressions-shared for
** dl_shared_at_read) is replayed.  Run from the repository
** root.
*/
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_driver.h"
#include "worker_msgs.h"
#include "shared_at_check.h" /* fuzz_shared_at.c's checks */
#include "tap.h"

static dl_buf F;

/* Hand the messages in F to c as one frame. */
static void send_to(dl_conn *c) {
  wdrv_deliver(c, F.p, F.len);
  F.len = 0;
}

/* COMPUTE key, waiting for dep, which worker who holds. */
static void compute(const char *key, const char *dep, unsigned who) {
  wm_put_compute(&F, key, 1);
  wm_put_dep(&F, dep, &who, 1, 1);
}

/* Peer 2 is known and the task b-1 waits for a-1, which peer 2 holds. */
static void wait_for_a(void) {
  wdrv_init();
  wm_put_peer(&F, 2, "/w2.sock");
  compute("b-1", "a-1", 2);
  send_to(W.sched);
  CHECK(dl_map_get(&W.fetches, "a-1", 3) != NULL);
  CHECK(dl_map_get(&W.waiting, "b-1", 3) != NULL);
  CHECK(wdrv_peer(0) != NULL);
}

/* Peer 2 answers that it has key, with the bytes "value". */
static void answer(const char *key) {
  wm_put_data(&F, key, 1, "value");
  send_to(wdrv_peer(0)->conn);
}

/* The type of the last GET, GETS or GETF queued for peer 2, or 0. */
static unsigned last_get_type(void) {
  dl_conn *c = wdrv_peer(0) ? wdrv_peer(0)->conn : NULL;
  unsigned last = 0;
  dl_rd r;
  if (c == NULL || c->out.len < 4) return 0;
  dl_rd_init(&r, c->out.p + 4, c->out.len - 4); /* past the length's hole */
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    dl_msg_get g;
    if (dl_wire_type(&r, &type) || dl_get_get(&r, &g)) return 0;
    last = type;
  }
  return last;
}

/* Peer 2 answers with where a-1 lies: pid, and off / len in a block of
   size bytes, named by its address (no file) if by_addr. */
static void answer_shared_as(int by_addr, uint64_t pid, uint64_t size,
                             uint64_t off, uint64_t len) {
  dl_shared_at sa;
  memset(&sa, 0, sizeof sa);
  if (by_addr) {
    sa.ref.fd = DL_MEM_NOFD;
    sa.ref.addr = 1 << 21;
    sa.ref.seal = 4096;
    sa.ref.cookie = 1;
  }
  sa.pid = pid;
  sa.ref.size = size;
  sa.off = off;
  sa.len = len;
  dl_put_data_shared(&F, DL_M_DATA, 0, "a-1", 3, &sa);
  send_to(wdrv_peer(0)->conn);
}

static void answer_shared(uint64_t pid, uint64_t size, uint64_t off,
                          uint64_t len) {
  answer_shared_as(0, pid, size, off, len);
}

static void test_stored_value_is_served(void) {
  blob *b;
  wdrv_init();
  dl_put_str2(&F, DL_M_STORE, "a-1", 3, "value", 5);
  send_to(W.sched);
  b = dl_w_store_get("a-1", 3);
  CHECK(b != NULL && b->len == 5 && memcmp(b->data, "value", 5) == 0);
  dl_w_blob_unref(b);
  dl_put_key_msg(&F, DL_M_FREE, "a-1", 3);
  send_to(W.sched);
  CHECK(!dl_w_store_has("a-1", 3));
  wdrv_reset();
}

static void test_fetched_bytes_are_stored(void) {
  blob *b;
  wait_for_a();
  answer("a-1");
  b = dl_w_store_get("a-1", 3);
  CHECK(b != NULL && b->len == 5 && memcmp(b->data, "value", 5) == 0);
  dl_w_blob_unref(b);
  CHECK(dl_map_get(&W.fetches, "a-1", 3) == NULL);
  CHECK(W.qhead != NULL && strcmp(W.qhead->key, "b-1") == 0);
  wdrv_reset();
}

static void test_shared_block_is_mapped(void) {
  blob *b;
  size_t i;
  wait_for_a();
  CHECK(wdrv_have_ref);
  answer_shared(WDRV_PID, 8192, 100, 5000);
  b = dl_w_store_get("a-1", 3);
  CHECK(b != NULL && b->len == 5000);
  for (i = 0; i < 5000; i++) CHECK(b->data[i] == (char)((100 + i) * 7));
  dl_w_blob_unref(b);
  CHECK(W.qhead != NULL);
  wdrv_reset();
}

static void test_unmappable_block_is_asked_as_bytes(void) {
  fetch *f;
  wait_for_a();
  answer_shared(77, 8192, 100, 5000); /* not a pid that can be mapped */
  f = dl_map_get(&W.fetches, "a-1", 3);
  CHECK(f != NULL && f->plain);
  CHECK(!dl_w_store_has("a-1", 3));
  answer_shared(WDRV_PID, 8192, 8000, 5000); /* past the block's end */
  CHECK(!dl_w_store_has("a-1", 3));
  wdrv_reset();
}

/* A block named by its address that cannot be read (a ptrace policy
   refused it) is asked for again as a file (GETF), then as bytes. */
static void test_unreadable_block_is_asked_as_a_file_then_bytes(void) {
  fetch *f;
  wait_for_a();
  answer_shared_as(1, 77, 8192, 100, 5000); /* not a pid that can be read */
  f = dl_map_get(&W.fetches, "a-1", 3);
  CHECK(f != NULL && f->filed && !f->plain);
  CHECK(!W.read_refused); /* not refused: that peer's block was gone */
  CHECK(!dl_w_store_has("a-1", 3));
  answer_shared_as(1, 77, 8192, 100, 5000); /* still no file */
  f = dl_map_get(&W.fetches, "a-1", 3);
  CHECK(f != NULL && f->plain);
  CHECK(!dl_w_store_has("a-1", 3));
  wdrv_reset();
}

/* A block named by its address is copied out of the peer (here this
   process) and stored. */
static void test_block_by_address_is_read(void) {
  blob *b;
  size_t i;
  wait_for_a();
  CHECK(last_get_type() == DL_M_GETS);
  answer_shared_as(1, WDRV_PID, 8192, 100, 5000);
  b = dl_w_store_get("a-1", 3);
  CHECK(b != NULL && b->len == 5000);
  for (i = 0; b && i < 5000; i++) CHECK(b->data[i] == (char)((100 + i) * 7));
  if (b) dl_w_blob_unref(b);
  CHECK(W.qhead != NULL);
  wdrv_reset();
}

/* Where reading a peer's memory was refused (EPERM: a ptrace policy),
   every later input is asked for as a file at once (GETF): no refused
   read and no round trip more per value. */
static void test_refused_read_is_remembered(void) {
  fetch *f;
  wait_for_a();
  CHECK(last_get_type() == DL_M_GETS && !W.read_refused);
  answer_shared_as(1, WDRV_REFUSE_PID, 8192, 100, 5000);
  f = dl_map_get(&W.fetches, "a-1", 3);
  CHECK(f != NULL && f->filed && !f->plain);
  CHECK(W.read_refused);
  CHECK(last_get_type() == DL_M_GETF);
  compute("c-1", "d-1", 2); /* the next input: a file asked for at once */
  send_to(W.sched);
  CHECK(dl_map_get(&W.fetches, "d-1", 3) != NULL);
  CHECK(last_get_type() == DL_M_GETF);
  wdrv_reset();
  CHECK(!W.read_refused); /* a new worker, for the next test */
}

/* An answer for an input that was not asked of that peer (here queued
   behind MAX_FETCHES others) is ignored: before, one that could not be
   mapped made the fetch ask "the same peer" again, who[-1]. */
static void test_unasked_answer_is_ignored(void) {
  static const char *const keys[][2] = {
      {"b-2", "a-2"}, {"b-3", "a-3"}, {"b-4", "a-4"}, {"b-5", "a-5"}};
  dl_shared_at sa;
  fetch *f;
  int i;
  wait_for_a();
  for (i = 0; i < 4; i++) compute(keys[i][0], keys[i][1], 2);
  send_to(W.sched);
  f = dl_map_get(&W.fetches, "a-5", 3);
  CHECK(f != NULL && !f->active && f->tried == 0); /* queued */
  memset(&sa, 0, sizeof sa);
  sa.pid = 77; /* cannot be mapped */
  sa.ref.size = 8192;
  sa.len = 5000;
  dl_put_data_shared(&F, DL_M_DATA, 0, "a-5", 3, &sa);
  send_to(wdrv_peer(0)->conn);
  f = dl_map_get(&W.fetches, "a-5", 3);
  CHECK(f != NULL && !f->active && f->tried == 0 && !f->plain);
  wdrv_reset();
}

/* A dependency that only this worker is said to hold cannot be fetched:
   the task goes back to the scheduler at once, and is freed once. */
static void test_input_nobody_else_holds_goes_back(void) {
  wdrv_init();
  compute("b-1", "a-1", (unsigned)W.id);
  send_to(W.sched);
  CHECK(W.sched->out.len > 4 && W.sched->out.p[4] == DL_M_MISSING);
  CHECK(dl_map_get(&W.waiting, "b-1", 3) == NULL);
  CHECK(dl_map_get(&W.fetches, "a-1", 3) == NULL);
  wdrv_reset();
}

/* A COMPUTE whose second dependency is malformed: the worker stops, and
   the first dependency's fetch was never started (nothing half-done). */
static void test_malformed_compute_leaves_fetches_sound(void) {
  wait_for_a();
  {
    static const unsigned two = 2;
    wm_put_compute(&F, "c-1", 2);
    wm_put_dep(&F, "x-1", &two, 1, 1);
    wm_put_dep(&F, "y-1", NULL, 1000, 0); /* more holders than bytes left */
  }
  send_to(W.sched);
  CHECK(W.loop.stop_flag); /* the worker stops on a malformed message */
  W.loop.stop_flag = 0;
  /* The whole message is checked (dl_get_compute) before anything starts:
     no fetch, no waiting task, nothing queued. */
  CHECK(dl_map_get(&W.fetches, "x-1", 3) == NULL);
  CHECK(dl_map_get(&W.waiting, "c-1", 3) == NULL);
  CHECK(W.qhead == NULL);
  wdrv_reset();
}

/* A second COMPUTE of a key still waiting supersedes the first: only the
   second runs, and neither is lost. */
static void test_second_compute_of_a_key_supersedes(void) {
  wait_for_a();
  compute("b-1", "x-1", 2);
  send_to(W.sched);
  answer("a-1"); /* the first one's input: nothing runs */
  CHECK(W.qhead == NULL);
  answer("x-1");
  CHECK(W.qhead != NULL && strcmp(W.qhead->key, "b-1") == 0);
  CHECK(W.qhead->next == NULL);
  CHECK(dl_map_get(&W.waiting, "b-1", 3) == NULL);
  wdrv_reset();
}

static void worker_one(const unsigned char *p, size_t n, void *ud) {
  (void)ud;
  wdrv_run(p, n);
}

static void test_freed_bytecode_goes_and_can_come_back(void) {
  static const char h[16] = "0123456789abcdef";
  const char *code;
  size_t len;
  wdrv_init();
  dl_put_func_msg(&F, DL_M_FUNC, h, "CODE", 4);
  send_to(W.sched);
  CHECK(dl_w_fn_get(NULL, (const unsigned char *)h, &code, &len) == 0);
  CHECK(len == 4 && memcmp(code, "CODE", 4) == 0);
  dl_put_hash_msg(&F, DL_M_FUNC_FREE, h);
  send_to(W.sched);
  /* Out of the map at once; its memory waits for the executor. */
  CHECK(dl_map_get(&W.fns, h, 16) == NULL);
  CHECK(W.fns_dead != NULL);
  dl_w_fns_reap();
  CHECK(W.fns_dead == NULL);
  CHECK(dl_w_fn_get(NULL, (const unsigned char *)h, &code, &len) != 0);
  /* Sent again with a later task: known again. */
  dl_put_func_msg(&F, DL_M_FUNC, h, "CODE2", 5);
  send_to(W.sched);
  CHECK(dl_w_fn_get(NULL, (const unsigned char *)h, &code, &len) == 0);
  CHECK(len == 5 && memcmp(code, "CODE2", 5) == 0);
  wdrv_reset();
}

static void test_replay_fuzz_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-worker", worker_one, NULL) > 0);
}

static void shared_at_one(const unsigned char *p, size_t n, void *ud) {
  (void)ud;
  shared_at_check(p, n);
}

static void test_replay_shared_at_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-shared", shared_at_one, NULL) > 0);
}

int main(void) {
  RUN(test_stored_value_is_served);
  RUN(test_fetched_bytes_are_stored);
  RUN(test_shared_block_is_mapped);
  RUN(test_unmappable_block_is_asked_as_bytes);
  RUN(test_unreadable_block_is_asked_as_a_file_then_bytes);
  RUN(test_block_by_address_is_read);
  RUN(test_refused_read_is_remembered);
  RUN(test_unasked_answer_is_ignored);
  RUN(test_input_nobody_else_holds_goes_back);
  RUN(test_malformed_compute_leaves_fetches_sound);
  RUN(test_second_compute_of_a_key_supersedes);
  RUN(test_freed_bytecode_goes_and_can_come_back);
  RUN(test_replay_fuzz_regressions);
  RUN(test_replay_shared_at_regressions);
  return TAP_END();
}

/*
** fuzz_sched.c -- libFuzzer target for the scheduler's message decoding
** and state machine: client and worker frames of arbitrary bytes, worker
** deaths and timer ticks in any order (see sched_driver.h).
**
** Built with -DDL_FUZZ_SEEDGEN it writes a few meaningful inputs (a graph
** submitted, run, failed, a worker lost; bytecode dropped and sent again;
** workers paused, silent, pinned to; two clients, one leaving; profiles;
** gathers as bytes, as blocks to read and as memfds, GATHER / GATHERS /
** GATHERF, and the worker's answers) into the directory argv[1].
*/
#include <stdio.h>
#include <stdlib.h>

#include "dl_conn.h"
#include "dl_coord.h"
#include "dl_prof.h"
#include "dl_wire.h"
#include "sched_driver.h"
#include "sched_msgs.h"

#ifdef DL_FUZZ_SEEDGEN
#include "seed_save.h"

static void rec(dl_buf *out, unsigned kind, dl_buf *frame) {
  dl_buf_u8(out, kind);
  dl_buf_u8(out, (unsigned)(frame->len & 0xff));
  dl_buf_u8(out, (unsigned)(frame->len >> 8));
  dl_buf_put(out, frame->p, frame->len);
  frame->len = 0;
}

static void submit(dl_buf *f, const char *key, const char *dep) {
  sm_submit o = {0};
  o.retries = 1;
  o.dep = dep;
  sm_put_submit(f, key, &o);
}

static void done(dl_buf *f, const char *key) {
  sm_put_done(f, key, strlen(key));
}

/* A task running the function with hash h (its bytecode first if code),
   pinned to worker pin (0: anywhere). */
static void submit_fn(dl_buf *f, const char *key, const char *h,
                      const char *code, unsigned pin) {
  sm_submit o = {0};
  if (code) sm_put_cfunc(f, h, code);
  o.fn = h;
  o.worker = pin;
  sm_put_submit(f, key, &o);
}

static void beat(dl_buf *f, unsigned paused) {
  dl_msg_heartbeat m;
  memset(&m, 0, sizeof m);
  m.managed = 1000;
  m.rss = 2000;
  m.stored = 1;
  m.paused = paused;
  m.spill_err = paused ? "No space left on device" : "";
  m.selen = paused ? 23 : 0;
  m.spill_out = 4096;
  m.spill_in = 1024;
  m.xfer_in = 70000;
  dl_put_heartbeat(f, &m);
}

static void save(const char *dir, const char *name, dl_buf *b) {
  seed_save(dir, name, b->p, b->len);
  b->len = 0;
}

int main(int argc, char **argv) {
  dl_buf in, f;
  if (argc < 2) return 2;
  dl_buf_init(&in);
  dl_buf_init(&f);
  submit(&f, "a-1", NULL);
  submit(&f, "b-1", "a-1");
  rec(&in, 0, &f);
  done(&f, "a-1");
  rec(&in, 1, &f);
  done(&f, "b-1");
  rec(&in, 2, &f);
  save(argv[1], "graph", &in);
  submit(&f, "a-1", NULL);
  submit(&f, "b-1", "a-1");
  rec(&in, 0, &f);
  done(&f, "a-1");
  rec(&in, 1, &f);
  rec(&in, 4, &f); /* worker 1 dies: a-1 is recomputed */
  rec(&in, 6, &f);
  save(argv[1], "lost", &in);
  /* Bytecode: run, released, dropped (FN_FORGET), sent again. */
  submit_fn(&f, "f-1", "0123456789abcdef", "CODE", 0);
  rec(&in, 0, &f);
  done(&f, "f-1");
  rec(&in, 1, &f);
  dl_put_key_msg(&f, DL_M_RELEASE, "f-1", 3);
  dl_put_hash_msg(&f, DL_M_FN_FORGET, "0123456789abcdef");
  submit_fn(&f, "f-2", "0123456789abcdef", "CODE", 0);
  rec(&in, 0, &f);
  save(argv[1], "bytecode", &in);
  /* Two clients: both send a function and a shared key, the second goes
     without a word, the first releases and forgets. */
  submit_fn(&f, "s-1", "fedcba9876543210", "CODE", 0);
  submit(&f, "a-only", NULL);
  rec(&in, 0, &f);
  submit_fn(&f, "s-1", "fedcba9876543210", "CODE", 0);
  submit(&f, "b-only", "s-1");
  rec(&in, 0xf0, &f);
  done(&f, "s-1");
  done(&f, "a-only");
  rec(&in, 1, &f);
  rec(&in, 0xf8, &f); /* the second client leaves */
  dl_put_key_msg(&f, DL_M_RELEASE, "s-1", 3);
  dl_put_hash_msg(&f, DL_M_FN_FORGET, "fedcba9876543210");
  rec(&in, 0, &f);
  save(argv[1], "clients", &in);
  /* Pressure: both workers pause, time passes, one goes silent; a task
     pinned to a worker that dies. */
  submit_fn(&f, "p-1", "0123456789abcdef", "CODE", 1);
  submit(&f, "a-1", NULL);
  submit(&f, "a-2", NULL);
  rec(&in, 0, &f);
  beat(&f, 1);
  rec(&in, 1, &f);
  beat(&f, 1);
  rec(&in, 2, &f);
  dl_buf_u8(&in, 6); /* 5 s pass: the length is the parameter */
  dl_buf_u8(&in, 5);
  dl_buf_u8(&in, 0);
  beat(&f, 0);
  rec(&in, 2, &f);
  rec(&in, 6, &f);
  rec(&in, 4, &f);
  save(argv[1], "pressure", &in);
  /* Tasks as clients (issue 18): a task on worker 1 submits a child and
     waits for it (SECEDE), the child waits for its parent (a cycle); a
     Queue, a Semaphore lease held by worker 2, which dies. */
  submit(&f, "p-1", NULL);
  rec(&in, 0, &f);
  submit(&f, "c-1", NULL);
  {
    dl_msg_two w = {"p-1", 3, "c-1", 3};
    dl_put_two_msg(&f, DL_M_SECEDE, &w);
  }
  rec(&in, 1, &f);
  submit(&f, "p-1", NULL);
  {
    dl_msg_two w = {"c-1", 3, "p-1", 3};
    dl_put_two_msg(&f, DL_M_SECEDE, &w);
  }
  rec(&in, 2, &f);
  {
    dl_msg_coord q = {1, DL_CO_Q_PUT, "q", 1, 0, 0, 0, "item", 4};
    dl_msg_coord g = {2, DL_CO_Q_GET, "q", 1, 11, 2, 0, "", 0};
    dl_msg_coord a = {3, DL_CO_SEM_ACQ, "s", 1, 0, 1, 7, "", 0};
    dl_put_coord(&f, &q);
    dl_put_coord(&f, &g);
    rec(&in, 0, &f);
    dl_put_coord(&f, &a);
    rec(&in, 2, &f);
    a.reqid = 4;
    a.lease = 8;
    dl_put_coord(&f, &a);
    rec(&in, 0, &f);
  }
  rec(&in, 6, &f);
  dl_buf_u8(&f, 0); /* a 1-byte frame: worker 2, the holder, dies */
  rec(&in, 4, &f);
  save(argv[1], "coord", &in);
  /* Profiles (issue 19): two workers send samples of a task group's
     stacks, then one of them dies (the cluster's profile keeps them). */
  {
    dl_prof *p = dl_prof_new(16);
    int g = dl_prof_child(p, 0, "work", 4);
    int t = dl_prof_child(p, g, "task (x.lua:3)", 14);
    dl_prof_count(p, dl_prof_child(p, t, "hot (x.lua:1)", 13), 5);
    dl_prof_count(p, t, 1);
    dl_prof_put_news(p, &f);
    rec(&in, 1, &f);
    dl_prof_count(p, dl_prof_child(p, t, "rep [C]", 7), 2);
    dl_prof_put_news(p, &f);
    rec(&in, 2, &f);
    dl_buf_u8(&f, 0);
    rec(&in, 4, &f);
    save(argv[1], "profile", &in);
    dl_prof_free(p);
  }
  /* Gathers: a value asked for as bytes (GATHER), as a block to read
     (GATHERS) and as a memfd to map (GATHERF), passed on to worker 1 as
     GET, GETS and GETF; its answers (bytes, a block named by its address,
     one on a memfd) go back to the client. */
  {
    static const char *const keys[] = {"a-1", "none"};
    dl_msg_data d;
    dl_shared_at sa;
    int how;
    submit(&f, "a-1", NULL);
    rec(&in, 0, &f);
    done(&f, "a-1");
    rec(&in, 1, &f);
    for (how = 0; how < 3; how++) {
      dl_put_gather(&f, how, (uint64_t)how + 1, 2);
      dl_put_key(&f, keys[0], 3);
      dl_put_key(&f, keys[1], 4);
    }
    rec(&in, 0, &f);
    memset(&d, 0, sizeof d);
    d.reqid = 1;
    d.key = "a-1";
    d.klen = 3;
    d.found = 1;
    d.bytes = "value";
    d.blen = 5;
    dl_put_data(&f, DL_M_DATA, &d);
    memset(&sa, 0, sizeof sa);
    sa.pid = 4242;
    sa.ref.fd = DL_MEM_NOFD;
    sa.ref.size = 8192;
    sa.ref.addr = 1ull << 32;
    sa.ref.seal = (1ull << 32) + 16384;
    sa.ref.cookie = 0x9e3779b97f4a7c15ull;
    sa.off = 100;
    sa.len = 5000;
    dl_put_data_shared(&f, DL_M_DATA, 2, "a-1", 3, &sa);
    sa.ref.fd = 7;
    sa.ref.ino = 123456;
    sa.ref.addr = sa.ref.seal = sa.ref.cookie = 0;
    dl_put_data_shared(&f, DL_M_DATA, 3, "a-1", 3, &sa);
    rec(&in, 1, &f);
    save(argv[1], "gather", &in);
  }
  dl_buf_free(&in);
  dl_buf_free(&f);
  return 0;
}
#else
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n) {
  sdrv_run(data, n);
  return 0;
}
#endif

/*
** test_wire.c -- C tests of the wire layer (dl_wire.h, dl_conn.h): every
** message reads back as written, every cut of a message is refused, the
** error record keeps its optional value, and frames cross a real Unix
** socket through the transport interface.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "dl_conn.h"
#include "dl_wire.h"
#include "tap.h"

static dl_buf B;

/* Start a message in B and return a reader over it, type byte read. */
static void reader(dl_rd *r, unsigned want_type) {
  unsigned type;
  dl_rd_init(r, B.p, B.len);
  CHECK(dl_wire_type(r, &type) == 0 && type == want_type);
}

static int same(const char *p, size_t n, const char *s) {
  return n == strlen(s) && memcmp(p, s, n) == 0;
}

/* Every proper prefix of the message in B is refused by get (type byte
   included in B); the whole message is read to its last byte. */
#define CUTS(type, msgtype, getfn)                                       \
  do {                                                                   \
    size_t cut;                                                          \
    for (cut = 1; cut < B.len; cut++) {                                  \
      dl_rd r_;                                                          \
      msgtype m_;                                                        \
      dl_rd_init(&r_, B.p + 1, cut - 1);                                 \
      CHECK(getfn(&r_, &m_) == DL_EPROTO);                               \
    }                                                                    \
    {                                                                    \
      dl_rd r_;                                                          \
      msgtype m_;                                                        \
      dl_rd_init(&r_, B.p, B.len);                                       \
      CHECK((unsigned char)B.p[0] == (type));                            \
      r_.p++;                                                            \
      CHECK(getfn(&r_, &m_) == 0 && dl_rd_left(&r_) == 0);               \
    }                                                                    \
  } while (0)

static void test_worker_messages_read_back(void) {
  dl_rd r;
  {
    dl_msg_hello w = {7, 4242, 1, 1 << 30, "/tmp/w7.sock", "gpu-a", 12, 5},
                 m;
    char big[DL_WORKER_NAME_MAX + 1];
    B.len = 0;
    dl_put_hello(&B, &w);
    reader(&r, DL_M_HELLO);
    CHECK(dl_get_hello(&r, &m) == 0);
    CHECK(m.id == 7 && m.pid == 4242 && m.nthreads == 1 &&
          m.memory_limit == 1 << 30 && same(m.addr, m.alen, "/tmp/w7.sock") &&
          same(m.name, m.nlen, "gpu-a"));
    CUTS(DL_M_HELLO, dl_msg_hello, dl_get_hello);
    /* A name longer than DL_WORKER_NAME_MAX is refused. */
    memset(big, 'n', sizeof big);
    w.name = big;
    w.nlen = sizeof big;
    B.len = 0;
    dl_put_hello(&B, &w);
    reader(&r, DL_M_HELLO);
    CHECK(dl_get_hello(&r, &m) == DL_EPROTO);
  }
  {
    dl_msg_done w = {"k-1", 3, 1000000, 5, 9, "inl", 3}, m;
    B.len = 0;
    dl_put_done(&B, &w);
    reader(&r, DL_M_DONE);
    CHECK(dl_get_done(&r, &m) == 0);
    CHECK(same(m.key, m.klen, "k-1") && m.nbytes == 1000000 &&
          m.start_us == 5 && m.stop_us == 9 && same(m.inl, m.ilen, "inl"));
    CUTS(DL_M_DONE, dl_msg_done, dl_get_done);
  }
  {
    dl_msg_err w = {"k-2", 3, DL_ERR_TIMEOUT, "rec", 3}, m;
    B.len = 0;
    dl_put_err_msg(&B, DL_M_KEY_ERR, &w);
    reader(&r, DL_M_KEY_ERR);
    CHECK(dl_get_err_msg(&r, &m) == 0);
    CHECK(same(m.key, m.klen, "k-2") && m.kind == DL_ERR_TIMEOUT &&
          same(m.rec, m.rlen, "rec"));
    CUTS(DL_M_KEY_ERR, dl_msg_err, dl_get_err_msg);
  }
  {
    dl_msg_missing w = {"t", "dep", 1, 3}, m;
    B.len = 0;
    dl_put_missing(&B, &w);
    reader(&r, DL_M_MISSING);
    CHECK(dl_get_missing(&r, &m) == 0);
    CHECK(same(m.key, m.klen, "t") && same(m.dep, m.dlen, "dep"));
    CUTS(DL_M_MISSING, dl_msg_missing, dl_get_missing);
  }
  {
    dl_msg_heartbeat w = {1, 2, 300000, 1, 5, 1, "disk full", 9,
                          10, 11, 1 << 20, 13}, m;
    B.len = 0;
    dl_put_heartbeat(&B, &w);
    reader(&r, DL_M_HEARTBEAT);
    CHECK(dl_get_heartbeat(&r, &m) == 0);
    CHECK(m.managed == 1 && m.spilled == 2 && m.rss == 300000 &&
          m.executing == 1 && m.stored == 5 && m.paused == 1 &&
          same(m.spill_err, m.selen, "disk full") && m.spill_out == 10 &&
          m.spill_in == 11 && m.xfer_in == 1 << 20 && m.xfer_out == 13);
    CUTS(DL_M_HEARTBEAT, dl_msg_heartbeat, dl_get_heartbeat);
  }
  {
    dl_msg_stolen w = {"s", 1, 1}, m;
    B.len = 0;
    dl_put_stolen(&B, &w);
    reader(&r, DL_M_STOLEN);
    CHECK(dl_get_stolen(&r, &m) == 0 && same(m.key, m.klen, "s") && m.ok);
    CUTS(DL_M_STOLEN, dl_msg_stolen, dl_get_stolen);
  }
}

static void test_compute_lists_its_inputs(void) {
  dl_msg_compute w, m;
  dl_rd r;
  const char *k;
  size_t kl;
  uint64_t nwho, id;
  memset(&w, 0, sizeof w);
  w.key = "c-1", w.klen = 3;
  w.prio = -3;
  w.timeout_ms = 250;
  w.head = "PA", w.hlen = 2; /* the sender's kept head and tail, and */
  w.payload = "YLO", w.plen = 3; /* the bytes between them */
  w.tail = "AD", w.tlen = 2;
  w.fns = "0123456789abcdefFEDCBA9876543210", w.nfns = 2;
  w.ndeps = 2;
  B.len = 0;
  dl_put_compute(&B, &w);
  dl_put_compute_dep(&B, "a", 1, 2);
  dl_put_id(&B, 1);
  dl_put_id(&B, 300);
  dl_put_compute_dep(&B, "bb", 2, 0);
  reader(&r, DL_M_COMPUTE);
  CHECK(dl_get_compute(&r, &m) == 0 && dl_rd_left(&r) == 0);
  CHECK(same(m.key, m.klen, "c-1") && m.prio == -3 && m.timeout_ms == 250 &&
        same(m.payload, m.plen, "PAYLOAD") && m.nfns == 2 &&
        memcmp(m.fns, "0123456789abcdefFEDCBA9876543210", 32) == 0 &&
        m.ndeps == 2);
  CHECK(dl_get_compute_dep(&m.deps, &k, &kl, &nwho) == 0 && same(k, kl, "a") &&
        nwho == 2);
  CHECK(dl_get_id(&m.deps, &id) == 0 && id == 1);
  CHECK(dl_get_id(&m.deps, &id) == 0 && id == 300);
  CHECK(dl_get_compute_dep(&m.deps, &k, &kl, &nwho) == 0 &&
        same(k, kl, "bb") && nwho == 0);
  CHECK(dl_rd_left(&m.deps) == 0);
  CUTS(DL_M_COMPUTE, dl_msg_compute, dl_get_compute);
}

static void test_client_messages_read_back(void) {
  dl_buf opts, fns, deps, place, spec;
  dl_msg_submit m;
  dl_rd r;
  const char *k;
  size_t kl;
  uint64_t id;
  static const char h1[16] = "0123456789abcdef", h2[16] = "fedcba9876543210";
  dl_buf_init(&opts), dl_buf_init(&fns), dl_buf_init(&deps);
  dl_buf_init(&place), dl_buf_init(&spec);
  dl_put_submit_opts(&opts, 5, -1, 3, 100);
  dl_buf_put(&fns, h1, 16);
  dl_buf_put(&fns, h2, 16);
  dl_put_key(&deps, "d-1", 3);
  dl_put_submit_place(&place, 1);
  dl_put_id(&place, 4);
  dl_put_submit_allow(&place, 1);
  dl_put_submit_spec(&spec, &opts, 2, &fns, 1, &deps, &place);
  B.len = 0;
  dl_put_submit(&B, "t-1", 3, "P", 1, spec.p, spec.len);
  reader(&r, DL_M_SUBMIT);
  CHECK(dl_get_submit(&r, &m) == 0 && dl_rd_left(&r) == 0);
  CHECK(same(m.key, m.klen, "t-1") && same(m.payload, m.plen, "P") &&
        m.prio == 5 && m.order == -1 && m.retries == 3 &&
        m.timeout_ms == 100 && m.nfns == 2 &&
        memcmp(m.fns, h1, 16) == 0 && memcmp(m.fns + 16, h2, 16) == 0 &&
        m.ndeps == 1 && m.nworkers == 1 && m.allow_other == 1);
  CHECK(dl_get_key(&m.deps, &k, &kl) == 0 && same(k, kl, "d-1"));
  CHECK(dl_get_id(&m.workers, &id) == 0 && id == 4);
  CUTS(DL_M_SUBMIT, dl_msg_submit, dl_get_submit);
  {
    dl_msg_gather g;
    B.len = 0;
    dl_put_gather(&B, 1, 77, 2);
    dl_put_key(&B, "a", 1);
    dl_put_key(&B, "b", 1);
    reader(&r, DL_M_GATHERS);
    CHECK(dl_get_gather(&r, &g) == 0 && g.reqid == 77 && g.nkeys == 2);
    CHECK(dl_get_key(&g.keys, &k, &kl) == 0 && same(k, kl, "a"));
    CHECK(dl_get_key(&g.keys, &k, &kl) == 0 && same(k, kl, "b"));
    CUTS(DL_M_GATHERS, dl_msg_gather, dl_get_gather);
  }
  {
    dl_msg_scatter s;
    B.len = 0;
    dl_put_scatter(&B, "x", 1, "VAL", 3, 1);
    dl_put_id(&B, 9);
    reader(&r, DL_M_SCATTER);
    CHECK(dl_get_scatter(&r, &s) == 0 && same(s.key, s.klen, "x") &&
          same(s.bytes, s.blen, "VAL") && s.nworkers == 1);
    CHECK(dl_get_id(&s.workers, &id) == 0 && id == 9);
    CUTS(DL_M_SCATTER, dl_msg_scatter, dl_get_scatter);
  }
  dl_buf_free(&opts), dl_buf_free(&fns), dl_buf_free(&deps);
  dl_buf_free(&place), dl_buf_free(&spec);
}

static void test_small_messages_read_back(void) {
  static const char h[16] = "0123456789abcdef";
  dl_rd r;
  {
    dl_msg_key m;
    B.len = 0;
    dl_put_key_msg(&B, DL_M_RELEASE, "r-1", 3);
    reader(&r, DL_M_RELEASE);
    CHECK(dl_get_key_msg(&r, &m) == 0 && same(m.key, m.klen, "r-1"));
    CUTS(DL_M_RELEASE, dl_msg_key, dl_get_key_msg);
  }
  {
    dl_msg_hash m;
    B.len = 0;
    dl_put_hash_msg(&B, DL_M_FN_GONE, h);
    reader(&r, DL_M_FN_GONE);
    CHECK(dl_get_hash_msg(&r, &m) == 0 && memcmp(m.hash, h, 16) == 0);
    CUTS(DL_M_FN_GONE, dl_msg_hash, dl_get_hash_msg);
  }
  {
    dl_msg_func m;
    B.len = 0;
    dl_put_func_msg(&B, DL_M_FUNC, h, "code", 4);
    reader(&r, DL_M_FUNC);
    CHECK(dl_get_func_msg(&r, &m) == 0 && memcmp(m.hash, h, 16) == 0 &&
          same(m.code, m.len, "code"));
    CUTS(DL_M_FUNC, dl_msg_func, dl_get_func_msg);
  }
  {
    dl_msg_store w = {"k", "bytes", 1, 5}, m;
    B.len = 0;
    dl_put_store(&B, &w);
    reader(&r, DL_M_STORE);
    CHECK(dl_get_store(&r, &m) == 0 && same(m.key, m.klen, "k") &&
          same(m.bytes, m.blen, "bytes"));
    CUTS(DL_M_STORE, dl_msg_store, dl_get_store);
  }
  {
    dl_msg_peer w = {3, "", 0}, m;
    B.len = 0;
    dl_put_peer(&B, &w);
    reader(&r, DL_M_PEER);
    CHECK(dl_get_peer(&r, &m) == 0 && m.id == 3 && m.alen == 0);
    CUTS(DL_M_PEER, dl_msg_peer, dl_get_peer);
  }
  {
    dl_msg_get m;
    B.len = 0;
    dl_put_get(&B, 1, 12, "g", 1);
    reader(&r, DL_M_GETS);
    CHECK(dl_get_get(&r, &m) == 0 && m.reqid == 12 && same(m.key, m.klen, "g"));
    CUTS(DL_M_GETS, dl_msg_get, dl_get_get);
  }
  {
    dl_msg_key_done w = {"kd", "v", 2, 1, 99}, m;
    B.len = 0;
    dl_put_key_done(&B, &w);
    reader(&r, DL_M_KEY_DONE);
    CHECK(dl_get_key_done(&r, &m) == 0 && same(m.key, m.klen, "kd") &&
          m.nbytes == 99 && same(m.inl, m.ilen, "v"));
    CUTS(DL_M_KEY_DONE, dl_msg_key_done, dl_get_key_done);
  }
  {
    uint64_t id = 0;
    B.len = 0;
    dl_put_welcome(&B, 300);
    reader(&r, DL_M_WELCOME);
    CHECK(dl_get_welcome(&r, &id) == 0 && id == 300 && dl_rd_left(&r) == 0);
    B.len = 1; /* cut: the id is missing */
    reader(&r, DL_M_WELCOME);
    CHECK(dl_get_welcome(&r, &id) == DL_EPROTO);
  }
  B.len = 0;
  dl_put_shutdown(&B);
  CHECK(B.len == 1 && B.p[0] == DL_M_SHUTDOWN);
}

/* DATA three ways: with its bytes, as a head the bytes follow, and as a
   found = 2 answer pointing into a block. */
static void test_data_answers(void) {
  dl_msg_data w = {5, "key", 3, 1, "value", 5}, m;
  dl_shared_at sa, back;
  dl_rd r;
  size_t whole;
  B.len = 0;
  dl_put_data(&B, DL_M_DATA, &w);
  whole = B.len;
  reader(&r, DL_M_DATA);
  CHECK(dl_get_data(&r, &m) == 0 && m.reqid == 5 && same(m.key, m.klen, "key") &&
        m.found == 1 && same(m.bytes, m.blen, "value"));
  CUTS(DL_M_DATA, dl_msg_data, dl_get_data);
  B.len = 0;
  dl_put_data_head(&B, DL_M_DATA, 5, "key", 3, 1, 5);
  dl_buf_put(&B, "value", 5); /* what dl_conn_send_ref sends after it */
  CHECK(B.len == whole);
  memset(&sa, 0, sizeof sa);
  sa.pid = 4242;
  sa.ref.fd = 9;
  sa.ref.ino = 77;
  sa.ref.size = 8 << 20;
  sa.ref.addr = 0x7f0000200000ull;
  sa.ref.seal = 0x7f0000001008ull;
  sa.ref.cookie = UINT64_MAX - 5;
  sa.off = 4096;
  sa.len = 1 << 20;
  B.len = 0;
  dl_put_data_shared(&B, DL_M_GATHER_REPLY, 6, "k", 1, &sa);
  reader(&r, DL_M_GATHER_REPLY);
  CHECK(dl_get_data(&r, &m) == 0 && m.found == 2 && m.reqid == 6);
  CHECK(dl_shared_at_read(m.bytes, m.blen, &back) == 0);
  CHECK(back.pid == 4242 && back.ref.fd == 9 && back.ref.ino == 77 &&
        back.ref.size == 8 << 20 && back.off == 4096 && back.len == 1 << 20);
  CHECK(back.ref.addr == sa.ref.addr && back.ref.seal == sa.ref.seal &&
        back.ref.cookie == sa.ref.cookie);
  sa.off = sa.ref.size; /* past the block's end: refused */
  sa.len = 1;
  B.len = 0;
  dl_put_shared_at(&B, &sa);
  dl_rd_init(&r, B.p, B.len);
  {
    const char *p;
    size_t n;
    CHECK(dl_rd_str(&r, &p, &n) == 0);
    CHECK(dl_shared_at_read(p, n, &back) == DL_EPROTO);
  }
}

static void test_error_record(void) {
  dl_err_rec e;
  B.len = 0;
  dl_put_err_rec(&B, DL_ERR_RAISED, "boom", "tb", "worker 2", NULL, 0);
  CHECK(dl_get_err_rec(B.p, B.len, &e) == 0);
  CHECK(e.kind == DL_ERR_RAISED && same(e.msg, e.mlen, "boom") &&
        same(e.tb, e.tblen, "tb") && same(e.worker, e.wlen, "worker 2") &&
        e.value == NULL && e.vlen == 0);
  B.len = 0;
  dl_put_err_rec(&B, DL_ERR_LOST, "lost", NULL, NULL, "VALUE", 5);
  CHECK(dl_get_err_rec(B.p, B.len, &e) == 0);
  CHECK(e.kind == DL_ERR_LOST && e.tblen == 0 && e.wlen == 0 &&
        same(e.value, e.vlen, "VALUE"));
  CHECK(dl_get_err_rec(B.p, 3, &e) == DL_EPROTO); /* cut in the message */
}

/* Frames through the transport interface: a listener on a Unix path, a
   connection to it by address, a batch of two messages as one frame. */
static uv_loop_t loop;
static dl_flusher fl;
static int frames, msgs;
static dl_conn *accepted;

static void on_server_frame(dl_conn *c, const char *p, size_t n) {
  dl_rd r;
  unsigned type;
  dl_msg_key m;
  (void)c;
  frames++;
  dl_rd_init(&r, p, n);
  while (dl_rd_left(&r)) {
    CHECK(dl_wire_type(&r, &type) == 0 && type == DL_M_RELEASE);
    CHECK(dl_get_key_msg(&r, &m) == 0);
    msgs++;
  }
  if (msgs == 2) uv_stop(&loop);
}

static void on_accept(dl_listener *l) {
  dl_conn *c = dl_conn_new(&loop, &fl, on_server_frame, NULL, NULL);
  CHECK(c != NULL);
  CHECK(dl_listener_accept(l, c) == 0);
  accepted = c;
}

/* Tasks that wait, and the coordination primitives (issue 18). */
static void test_coord_messages_read_back(void) {
  dl_rd r;
  {
    dl_msg_two w = {"parent", 6, "child", 5}, m;
    B.len = 0;
    dl_put_two_msg(&B, DL_M_SECEDE, &w);
    reader(&r, DL_M_SECEDE);
    CHECK(dl_get_two_msg(&r, &m) == 0);
    CHECK(same(m.a, m.alen, "parent") && same(m.b, m.blen, "child"));
    CUTS(DL_M_SECEDE, dl_msg_two, dl_get_two_msg);
    B.len = 0;
    dl_put_two_msg(&B, DL_M_CYCLE, &w);
    CUTS(DL_M_CYCLE, dl_msg_two, dl_get_two_msg);
  }
  {
    dl_msg_coord w = {300, 5, "q", 1, 1001, 2, 77, "item", 4, "task-1", 6},
                 m;
    B.len = 0;
    dl_put_coord(&B, &w);
    reader(&r, DL_M_COORD);
    CHECK(dl_get_coord(&r, &m) == 0);
    CHECK(m.reqid == 300 && m.op == 5 && same(m.name, m.nlen, "q") &&
          m.timeout_ms == 1001 && m.n == 2 && m.lease == 77 &&
          same(m.bytes, m.blen, "item") && same(m.task, m.tlen, "task-1"));
    CUTS(DL_M_COORD, dl_msg_coord, dl_get_coord);
    /* The client's requests name no task. */
    w.task = NULL;
    w.tlen = 0;
    B.len = 0;
    dl_put_coord(&B, &w);
    reader(&r, DL_M_COORD);
    CHECK(dl_get_coord(&r, &m) == 0 && m.tlen == 0);
  }
  {
    dl_msg_coord_reply w = {300, 1, "v", 1}, m;
    B.len = 0;
    dl_put_coord_reply(&B, &w);
    reader(&r, DL_M_COORD_REPLY);
    CHECK(dl_get_coord_reply(&r, &m) == 0);
    CHECK(m.reqid == 300 && m.status == 1 && same(m.bytes, m.blen, "v"));
    CUTS(DL_M_COORD_REPLY, dl_msg_coord_reply, dl_get_coord_reply);
  }
}

/* The profile's call tree (issue 19): items name their parent by its
   number in the message; a parent that comes later is refused. */
static void test_profile_message(void) {
  dl_rd r;
  dl_msg_profile m;
  uint64_t parent, count;
  const char *f;
  size_t fl;
  B.len = 0;
  dl_put_profile(&B, 2);
  dl_put_profile_item(&B, 0, "work", 4, 0);
  dl_put_profile_item(&B, 1, "hot (x.lua:1)", 13, 7);
  reader(&r, DL_M_PROFILE);
  CHECK(dl_get_profile(&r, &m) == 0 && m.n == 2 && dl_rd_left(&r) == 0);
  CHECK(dl_get_profile_item(&m.items, &parent, &f, &fl, &count) == 0);
  CHECK(parent == 0 && same(f, fl, "work") && count == 0);
  CHECK(dl_get_profile_item(&m.items, &parent, &f, &fl, &count) == 0);
  CHECK(parent == 1 && same(f, fl, "hot (x.lua:1)") && count == 7);
  CUTS(DL_M_PROFILE, dl_msg_profile, dl_get_profile);
  B.len = 0;
  dl_put_profile(&B, 1);
  dl_put_profile_item(&B, 1, "self", 4, 1); /* its own parent */
  reader(&r, DL_M_PROFILE);
  CHECK(dl_get_profile(&r, &m) == DL_EPROTO);
}

/* CINFO: the head, a worker, then the workers that left; a cut anywhere
   in a departed worker is refused. */
static void test_cinfo_lists_departed_workers(void) {
  int64_t counts[6] = {1, 2, 3, 4, 5, 6}, got[6];
  dl_msg_cworker w, w2;
  dl_msg_cdead d, d2;
  const char *dash;
  size_t dlen, cut, mark, mark2;
  uint64_t n, nd;
  dl_rd r;
  memset(&w, 0, sizeof w);
  w.id = 3;
  w.pid = 4242;
  w.status = 2;
  w.name = "gpu-a";
  w.nlen = 5;
  B.len = 0;
  dl_put_cinfo_head(&B, "h:1", counts, 1);
  dl_put_cworker(&B, &w);
  dl_buf_uv(&B, 2);
  mark = B.len;
  d.id = 7;
  d.pid = 99;
  d.reason = "its connection closed";
  d.rlen = strlen(d.reason);
  d.name = "gpu-b";
  d.nlen = 5;
  dl_put_cdead(&B, &d);
  mark2 = B.len;
  d.id = 8;
  d.reason = "";
  d.rlen = 0;
  d.name = "";
  d.nlen = 0;
  dl_put_cdead(&B, &d);
  reader(&r, DL_M_CINFO);
  CHECK(dl_get_cinfo_head(&r, &dash, &dlen, got, &n) == 0 && n == 1);
  CHECK(same(dash, dlen, "h:1") && got[5] == 6);
  CHECK(dl_get_cworker(&r, &w2) == 0 && w2.id == 3 && w2.pid == 4242);
  CHECK(same(w2.name, w2.nlen, "gpu-a"));
  CHECK(dl_rd_uv(&r, &nd) == 0 && nd == 2);
  CHECK(dl_get_cdead(&r, &d2) == 0 && d2.id == 7 && d2.pid == 99);
  CHECK(same(d2.reason, d2.rlen, "its connection closed"));
  CHECK(same(d2.name, d2.nlen, "gpu-b"));
  CHECK(dl_get_cdead(&r, &d2) == 0 && d2.id == 8 && d2.rlen == 0);
  CHECK(dl_rd_left(&r) == 0);
  for (cut = mark; cut < mark2; cut++) { /* inside the first: refused */
    dl_rd_init(&r, B.p + mark, cut - mark);
    CHECK(dl_get_cdead(&r, &d2) == DL_EPROTO);
  }
}

static void test_frames_cross_a_unix_socket(void) {
  char dir[] = "/tmp/dl-wire-XXXXXX", addr[64];
  dl_listener l;
  dl_conn *c;
  CHECK(mkdtemp(dir) != NULL);
  snprintf(addr, sizeof addr, "%s/s.sock", dir);
  CHECK(dl_transport_for(addr) == &dl_transport_unix);
  CHECK(uv_loop_init(&loop) == 0);
  CHECK(dl_flusher_init(&fl, &loop) == 0);
  CHECK(dl_listener_open(&l, &loop, addr, on_accept, NULL) == 0);
  c = dl_conn_new(&loop, &fl, on_server_frame, NULL, NULL);
  CHECK(c != NULL && dl_conn_connect(c, addr) == 0);
  dl_put_key_msg(dl_conn_msg(c), DL_M_RELEASE, "a", 1);
  dl_put_key_msg(dl_conn_msg(c), DL_M_RELEASE, "b", 1);
  uv_run(&loop, UV_RUN_DEFAULT); /* stops at the second message; alarm
                                    ends a hang */
  CHECK(msgs == 2 && frames == 1); /* one loop iteration, one frame */
  /* Everything closes and frees (the sanitizer build checks for leaks). */
  dl_conn_close(c);
  if (accepted) dl_conn_close(accepted);
  dl_listener_close(&l);
  dl_flusher_close(&fl);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  unlink(addr);
  rmdir(dir);
}

int main(void) {
  dl_buf_init(&B);
  RUN(test_worker_messages_read_back);
  RUN(test_compute_lists_its_inputs);
  RUN(test_client_messages_read_back);
  RUN(test_small_messages_read_back);
  RUN(test_data_answers);
  RUN(test_error_record);
  RUN(test_coord_messages_read_back);
  RUN(test_profile_message);
  RUN(test_cinfo_lists_departed_workers);
  RUN(test_frames_cross_a_unix_socket);
  return TAP_END();
}

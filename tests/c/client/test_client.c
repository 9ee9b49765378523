/*
** test_client.c -- C tests of the client's table of futures (dl_client.h):
** counting handles, the RELEASE each live handle queues, the scheduler's
** news, cancel and callbacks, and handles that outlive a closed client.
** Pure C: no cluster, no Lua.
*/
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dl_client.h"
#include "dl_wire.h"
#include "tap.h"

/* The keys of the RELEASE messages in b, joined by ','. */
static void releases(const dl_buf *b, char *out, size_t cap) {
  dl_rd r;
  size_t n = 0;
  out[0] = '\0';
  dl_rd_init(&r, b->p, b->len);
  while (dl_rd_left(&r)) {
    unsigned type = 0;
    dl_msg_key m;
    CHECK(dl_wire_type(&r, &type) == 0 && type == DL_M_RELEASE);
    CHECK(dl_get_key_msg(&r, &m) == 0);
    CHECK(n + m.klen + 2 < cap);
    if (n) out[n++] = ',';
    memcpy(out + n, m.key, m.klen);
    n += m.klen;
    out[n] = '\0';
  }
}

/* A transport that keeps what it is handed, in the dl_buf at ud. */
static int capture(void *ud, const char *p, size_t n, int urgent) {
  (void)urgent;
  return dl_buf_put(ud, p, n);
}

/* One record per key; each live handle queues one RELEASE (the scheduler
   counted one per handle), and the last takes the record out. */
static void test_refs_and_release(void) {
  dl_client c;
  dl_buf out;
  dl_cfut *a, *a2, *b;
  char rel[256];
  dl_client_init(&c);
  dl_buf_init(&out);
  dl_client_transport(&c, capture, &out, 0);
  a = dl_client_ref(&c, "inc-1", 5);
  a2 = dl_client_ref(&c, "inc-1", 5);
  b = dl_client_ref(&c, "inc-2", 5);
  CHECK(a && a == a2 && b && a != b);
  CHECK(a->refs == 2 && a->holds == 2 && a->status == DL_FUT_PENDING);
  CHECK(strcmp(a->key, "inc-1") == 0 && a->klen == 5);
  CHECK(dl_client_get(&c, "inc-1", 5) == a);
  dl_client_unref(a);
  CHECK(c.out.len > 0 && dl_client_get(&c, "inc-1", 5) == a);
  CHECK(out.len == 0); /* queued, not sent: it rides with the next batch */
  CHECK(dl_client_flush(&c, 0) == 0 && c.out.len == 0);
  releases(&out, rel, sizeof rel);
  CHECK(strcmp(rel, "inc-1") == 0);
  out.len = 0;
  dl_client_unref(a);
  dl_client_unref(a); /* a third release of two handles: ignored */
  CHECK(out.len == 0);
  CHECK(dl_client_flush(&c, 0) == 0 && c.out.len == 0);
  releases(&out, rel, sizeof rel);
  CHECK(strcmp(rel, "inc-1") == 0);
  CHECK(dl_client_get(&c, "inc-1", 5) == NULL && dl_cfut_client(a) == NULL);
  dl_client_drop(a);
  dl_client_drop(a); /* the memory goes with the last hold */
  /* A new handle of a released key makes a fresh, pending record. */
  a = dl_client_ref(&c, "inc-1", 5);
  CHECK(a && a->refs == 1 && a->status == DL_FUT_PENDING);
  dl_client_unref(a);
  dl_client_drop(a);
  dl_client_unref(b);
  dl_client_drop(b);
  dl_buf_free(&out);
  dl_client_free(&c);
}

/* News: done with and without an inline value, errors, keys not held,
   and finished or cancelled records left as they are. */
static void test_news(void) {
  dl_client c;
  dl_cfut *a, *b, *x;
  char buf[DL_CFUT_BUF];
  dl_client_init(&c);
  a = dl_client_ref(&c, "a", 1);
  b = dl_client_ref(&c, "b", 1);
  x = dl_client_ref(&c, "x", 1);
  CHECK(dl_client_done(&c, "nobody", 6, "v", 1) == 0);
  CHECK(dl_client_done(&c, "a", 1, "\x01\x02", 2) == 0);
  CHECK(a->status == DL_FUT_FINISHED && (a->flags & DL_FUT_VALUE));
  CHECK(dl_cfut_len(a) == 2 &&
        memcmp(dl_cfut_data(a, buf), "\x01\x02", 2) == 0);
  CHECK(a->flags & DL_FUT_SMALL); /* in the record: no allocation */
  /* a recomputation's news does not change a finished record */
  CHECK(dl_client_err(&c, "a", 1, DL_ERR_RAISED, "rec", 3) == 0);
  CHECK(a->status == DL_FUT_FINISHED && dl_cfut_len(a) == 2);
  /* lost: pending again, then done without an inline value */
  dl_client_repend(a);
  CHECK(a->status == DL_FUT_PENDING && dl_cfut_data(a, buf) == NULL && !a->flags);
  CHECK(dl_client_done(&c, "a", 1, NULL, 0) == 0);
  CHECK(a->status == DL_FUT_FINISHED && !(a->flags & DL_FUT_VALUE));
  CHECK(dl_client_err(&c, "b", 1, DL_ERR_RAISED, "rec", 3) == 0);
  CHECK(b->status == DL_FUT_ERROR && b->kind == DL_ERR_RAISED);
  CHECK(dl_cfut_len(b) == 3 && memcmp(dl_cfut_data(b, buf), "rec", 3) == 0);
  {
    /* Values of 9 to 17 bytes that start as the first such value did
       keep only what follows those 9 bytes, in the record; the others
       come back as they are too. */
    static const char *const vals[] = {"123456789AB", "123456789",
                                       "123456789ABCDEFGH", "x23456789AB",
                                       "123456789ABCDEFGHI"};
    static const int headed[] = {1, 1, 1, 0, 0};
    dl_cfut *v[5];
    int i;
    for (i = 0; i < 5; i++) {
      char k[8];
      snprintf(k, sizeof k, "v-%d", i);
      v[i] = dl_client_ref(&c, k, strlen(k));
      CHECK(dl_client_done(&c, k, strlen(k), vals[i], strlen(vals[i])) == 0);
    }
    for (i = 0; i < 5; i++) {
      CHECK(dl_cfut_len(v[i]) == strlen(vals[i]));
      CHECK(memcmp(dl_cfut_data(v[i], buf), vals[i], dl_cfut_len(v[i])) ==
            0);
      CHECK(!(v[i]->flags & DL_FUT_HEAD) == !headed[i]);
      dl_client_unref(v[i]);
      dl_client_drop(v[i]);
    }
  }
  {
    /* A record too long for the record's own room keeps its length
       with its bytes; the record itself is 28 bytes and the key. */
    char rec[300];
    dl_cfut *e = dl_client_ref(&c, "e", 1);
    memset(rec, 'r', sizeof rec);
    CHECK(offsetof(dl_cfut, key) == 28);
    CHECK(dl_client_err(&c, "e", 1, DL_ERR_TIMEOUT, rec, sizeof rec) == 0);
    CHECK(e->status == DL_FUT_ERROR && e->kind == DL_ERR_TIMEOUT);
    CHECK(dl_cfut_len(e) == sizeof rec && !(e->flags & DL_FUT_SMALL));
    CHECK(memcmp(dl_cfut_data(e, buf), rec, sizeof rec) == 0);
    dl_client_cancel(e);
    CHECK(e->status == DL_FUT_CANCELLED && dl_cfut_len(e) == 0 &&
          dl_cfut_data(e, buf) == NULL);
    dl_client_unref(e);
    dl_client_drop(e);
  }
  CHECK(dl_client_err(&c, "x", 1, DL_ERR_CANCELLED, "c", 1) == 0);
  CHECK(x->status == DL_FUT_CANCELLED);
  CHECK(dl_client_done(&c, "x", 1, "v", 1) == 0); /* stays cancelled */
  CHECK(x->status == DL_FUT_CANCELLED && dl_cfut_len(x) == 1);
  dl_client_free(&c); /* detaches: the handles still hold the records */
  CHECK(dl_cfut_client(a) == NULL && dl_cfut_client(b) == NULL &&
        dl_cfut_client(x) == NULL);
  dl_client_unref(a);
  dl_client_drop(a);
  dl_client_unref(b);
  dl_client_drop(b);
  dl_client_unref(x);
  dl_client_drop(x);
}

/* Task news read between submits stop before the first news for the
   caller (a gather answer), which dl_client_next then hands out. */
static void test_next_tasks(void) {
  dl_client c;
  dl_cfut *a, *b;
  dl_buf m;
  dl_rd r;
  dl_cnews nw;
  dl_msg_key_done d = {"a", "\x05", 1, 1, 1};
  dl_msg_data g = {7, "a", 1, 1, "\x05", 1};
  int count = 0;
  dl_client_init(&c);
  dl_buf_init(&m);
  a = dl_client_ref(&c, "a", 1);
  b = dl_client_ref(&c, "b", 1);
  dl_put_key_done(&m, &d);
  dl_put_data(&m, DL_M_GATHER_REPLY, &g);
  d.key = "b";
  dl_put_key_done(&m, &d);
  dl_rd_init(&r, m.p, m.len);
  CHECK(dl_client_next_tasks(&c, &r, &count) == 0 && count == 1);
  CHECK(a->status == DL_FUT_FINISHED && b->status == DL_FUT_PENDING);
  CHECK(dl_rd_left(&r) > 0);
  CHECK(dl_client_next_tasks(&c, &r, &count) == 0 && count == 1); /* stays */
  CHECK(dl_client_next(&c, &r, &nw, &count) == 1);
  CHECK(nw.type == DL_CNEWS_DATA && nw.reqid == 7 && nw.found);
  CHECK(dl_client_next(&c, &r, &nw, &count) == 0 && count == 3);
  CHECK(b->status == DL_FUT_FINISHED && dl_rd_left(&r) == 0);
  dl_buf_free(&m);
  dl_client_unref(a);
  dl_client_drop(a);
  dl_client_unref(b);
  dl_client_drop(b);
  dl_client_free(&c);
}

/* Records with callbacks fire once when done or cancelled here. */
static void test_fired(void) {
  dl_client c;
  dl_cfut *a, *b, **list;
  size_t n;
  dl_client_init(&c);
  a = dl_client_ref(&c, "a", 1);
  b = dl_client_ref(&c, "b", 1);
  a->flags |= DL_FUT_CALLBACKS;
  b->flags |= DL_FUT_CALLBACKS;
  CHECK(dl_client_take_fired(&c, &n) == NULL && n == 0);
  CHECK(dl_client_done(&c, "a", 1, "v", 1) == 0);
  dl_client_cancel(b);
  CHECK(c.nfired == 2);
  /* released meanwhile: the fired list keeps the record alive */
  dl_client_unref(a);
  dl_client_drop(a);
  list = dl_client_take_fired(&c, &n);
  CHECK(list && n == 2 && list[0] == a && list[1] == b);
  CHECK(strcmp(list[0]->key, "a") == 0 &&
        dl_cfut_client(list[0]) == NULL);
  CHECK(b->status == DL_FUT_CANCELLED && !(b->flags & DL_FUT_CALLBACKS));
  dl_client_drop(list[0]);
  dl_client_drop(list[1]);
  dl_free(list);
  CHECK(dl_client_done(&c, "b", 1, "v", 1) == 0 && c.nfired == 0);
  dl_client_unref(b);
  dl_client_drop(b);
  dl_client_free(&c);
}

/* Closing queues one RELEASE per live handle, then every record says
   closed; the table can be used again. */
static void test_close(void) {
  dl_client c;
  dl_buf out;
  dl_cfut *a, *b;
  char rel[256];
  dl_client_init(&c);
  dl_buf_init(&out);
  dl_client_transport(&c, capture, &out, 0);
  a = dl_client_ref(&c, "a", 1);
  dl_client_ref_again(a);
  b = dl_client_ref(&c, "b", 1);
  CHECK(dl_client_close(&c, 1) == 0); /* queued and flushed */
  releases(&out, rel, sizeof rel);
  CHECK(strlen(rel) == 5); /* a twice and b, in the table's order */
  CHECK(strstr(rel, "b") != NULL && strchr(rel, 'a') != strrchr(rel, 'a'));
  CHECK(dl_cfut_client(a) == NULL && dl_cfut_client(b) == NULL);
  out.len = 0;
  dl_client_unref(a); /* detached: nothing more to send */
  dl_client_unref(a);
  dl_client_unref(b);
  CHECK(out.len == 0 && c.out.len == 0);
  dl_client_drop(a);
  dl_client_drop(a);
  dl_client_drop(b);
  a = dl_client_ref(&c, "a", 1);
  CHECK(a && dl_cfut_client(a) == &c && a->status == DL_FUT_PENDING);
  dl_client_unref(a);
  dl_client_drop(a);
  dl_buf_free(&out);
  dl_client_free(&c);
}

/* Many keys: the table grows, and every record is found again. */
static void test_many(void) {
  dl_client c;
  static dl_cfut *f[20000];
  char key[32];
  int i;
  dl_client_init(&c);
  for (i = 0; i < 20000; i++) {
    int n = snprintf(key, sizeof key, "inc-%08x", i);
    f[i] = dl_client_ref(&c, key, (size_t)n);
    CHECK(f[i] != NULL);
  }
  for (i = 0; i < 20000; i += 2) {
    int n = snprintf(key, sizeof key, "inc-%08x", i);
    CHECK(dl_client_done(&c, key, (size_t)n, "v", 1) == 0);
  }
  for (i = 0; i < 20000; i++) {
    int n = snprintf(key, sizeof key, "inc-%08x", i);
    CHECK(dl_client_get(&c, key, (size_t)n) == f[i]);
    CHECK(f[i]->status == (i % 2 ? DL_FUT_PENDING : DL_FUT_FINISHED));
    dl_client_unref(f[i]);
    dl_client_drop(f[i]);
  }
  CHECK(c.futs.count == 0);
  dl_client_free(&c);
}

/* Keys of the client's stem and 8 lower-case hex digits keep only their
   counter (DL_FUT_STEM), whoever made them, and read back the same;
   other keys, and a stem's keys of more digits, are kept whole; records
   outlive their client and its stem. */
static void test_stem_keys(void) {
  dl_client c;
  dl_buf out;
  dl_cfut *a, *b, *u, *w, *x, *g[3000];
  char buf[DL_CFUT_KEYBUF], rel[256], key[64];
  const char *k;
  size_t klen, n;
  int i;
  dl_client_init(&c);
  dl_buf_init(&out);
  dl_client_transport(&c, capture, &out, 0);
  CHECK(dl_client_key_stem(&c, "inc-0badf00d", 12) == 0);
  k = dl_client_key(&c, 0xabcdef12u, &klen);
  CHECK(k && klen == 20 && memcmp(k, "inc-0badf00dabcdef12", 20) == 0);
  a = dl_client_ref(&c, k, klen);
  CHECK(a && (a->flags & DL_FUT_STEM));
  k = dl_cfut_key(a, buf, &n);
  CHECK(n == 20 && strcmp(k, "inc-0badf00dabcdef12") == 0);
  /* The same key from elsewhere (Lua's keys.fresh) finds the record. */
  CHECK(dl_client_get(&c, "inc-0badf00dabcdef12", 20) == a);
  CHECK(dl_client_ref(&c, "inc-0badf00dabcdef12", 20) == a && a->refs == 2);
  u = dl_client_ref(&c, "inc-0badf00dABCDEF12", 20); /* upper case: whole */
  w = dl_client_ref(&c, "inc-0badf00d1abcdef12", 21); /* 9 digits: whole */
  x = dl_client_ref(&c, "sum-0badf00d00000001", 20); /* another stem */
  CHECK(u && u != a && !(u->flags & DL_FUT_STEM) && u->klen == 20);
  CHECK(w && !(w->flags & DL_FUT_STEM) && x && !(x->flags & DL_FUT_STEM));
  /* Switching stems keeps the old ones' records readable. */
  CHECK(dl_client_key_stem(&c, "sum-0badf00d", 12) == 0);
  b = dl_client_ref(&c, "sum-0badf00d00000002", 20);
  CHECK(b && (b->flags & DL_FUT_STEM));
  CHECK(dl_client_get(&c, "inc-0badf00dabcdef12", 20) == a);
  CHECK(dl_client_done(&c, "inc-0badf00dabcdef12", 20, "v", 1) == 0);
  CHECK(a->status == DL_FUT_FINISHED);
  /* Many keys of one stem: the table grows and finds them all. */
  CHECK(dl_client_key_stem(&c, "f-1", 3) == 0);
  for (i = 0; i < 3000; i++) {
    k = dl_client_key(&c, (uint64_t)i, &klen);
    g[i] = dl_client_ref(&c, k, klen);
    CHECK(g[i] && (g[i]->flags & DL_FUT_STEM));
  }
  for (i = 0; i < 3000; i++) {
    int m = snprintf(key, sizeof key, "f-1%08x", i);
    CHECK(dl_client_get(&c, key, (size_t)m) == g[i]);
    dl_client_unref(g[i]);
    dl_client_drop(g[i]);
  }
  /* Releases name the whole key. */
  dl_client_unref(b);
  CHECK(dl_client_flush(&c, 0) == 0);
  out.len = 0;
  dl_client_unref(a);
  CHECK(dl_client_flush(&c, 0) == 0);
  releases(&out, rel, sizeof rel);
  CHECK(strcmp(rel, "inc-0badf00dabcdef12") == 0);
  /* A held record outlives its client. */
  dl_client_free(&c);
  k = dl_cfut_key(a, buf, &n);
  CHECK(dl_cfut_client(a) == NULL &&
        strcmp(k, "inc-0badf00dabcdef12") == 0);
  dl_client_drop(a);
  dl_client_drop(a);
  dl_client_drop(b);
  dl_client_drop(u);
  dl_client_drop(w);
  dl_client_drop(x);
  dl_buf_free(&out);
}

/* Records name their client by its number in the process's table: two
   clients' records of one key are each their own, a record detached by
   its client's end stays detached when a new client takes the number. */
static void test_client_numbers(void) {
  dl_client c1, c2, c3;
  dl_cfut *a, *b, *d;
  dl_client_init(&c1);
  dl_client_init(&c2);
  CHECK(c1.num != 0 && c2.num != 0 && c1.num != c2.num);
  a = dl_client_ref(&c1, "k", 1);
  b = dl_client_ref(&c2, "k", 1);
  CHECK(a && b && a != b);
  CHECK(dl_cfut_client(a) == &c1 && dl_cfut_client(b) == &c2);
  CHECK(sizeof(dl_cfut) <= 32 && offsetof(dl_cfut, key) == 28);
  dl_client_free(&c1);
  CHECK(dl_cfut_client(a) == NULL && c1.num == 0);
  dl_client_init(&c3);
  CHECK(c3.num != 0 && dl_cfut_client(a) == NULL);
  d = dl_client_ref(&c3, "k", 1);
  CHECK(d && dl_cfut_client(d) == &c3 && d != a);
  dl_client_unref(a); /* detached: nothing to do */
  dl_client_drop(a);
  dl_client_unref(b);
  dl_client_drop(b);
  dl_client_unref(d);
  dl_client_drop(d);
  dl_client_free(&c2);
  dl_client_free(&c3);
}

/* Every number taken: the next client gets 0 (new_handle refuses it with
   a clear error), and can make no record; one freed is given again. */
static void test_client_numbers_full(void) {
  size_t i, n = DL_CLIENT_MAX;
  dl_client *cs = calloc(n + 1, sizeof *cs), *extra;
  CHECK(cs != NULL);
  if (cs == NULL) return;
  for (i = 0; i < n + 1; i++) dl_client_init(&cs[i]);
  /* test_client_numbers freed its clients: all numbers were free */
  for (i = 0; i < n; i++) CHECK(cs[i].num != 0);
  extra = &cs[n];
  CHECK(extra->num == 0);
  CHECK(dl_client_ref(extra, "k", 1) == NULL);
  dl_client_free(extra);
  dl_client_free(&cs[7]);
  dl_client_init(extra);
  CHECK(extra->num != 0);
  for (i = 0; i < n + 1; i++)
    if (i != 7) dl_client_free(&cs[i]);
  free(cs);
}

int main(void) {
  RUN(test_refs_and_release);
  RUN(test_news);
  RUN(test_next_tasks);
  RUN(test_fired);
  RUN(test_close);
  RUN(test_many);
  RUN(test_stem_keys);
  RUN(test_client_numbers);
  RUN(test_client_numbers_full);
  return TAP_END();
}

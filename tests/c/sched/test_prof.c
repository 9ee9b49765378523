/*
** test_prof.c -- C tests of the profile's call tree (sched/dl_prof.h):
** samples counted where they stop, news sent once and merged into another
** tree as the same shape, a full tree that still keeps every sample,
** trees merged into one, and a time window of a tree with a log.
*/
#include <stdio.h>
#include <string.h>

#include "dl_prof.h"
#include "dl_wire.h"
#include "tap.h"

/* The node of p at the path of names (from the root), or -1. */
static int find(const dl_prof *p, const char *const *path, int n) {
  int at = 0, i, k;
  for (k = 0; k < n; k++) {
    int next = -1;
    for (i = 1; i < dl_prof_size(p); i++) {
      int parent;
      const char *name = dl_prof_node(p, i, &parent, NULL);
      if (parent == at && strcmp(name, path[k]) == 0) next = i;
    }
    if (next < 0) return -1;
    at = next;
  }
  return at;
}

static uint64_t self_of(const dl_prof *p, const char *const *path, int n) {
  uint64_t self = 0;
  int i = find(p, path, n);
  if (i >= 0) dl_prof_node(p, i, NULL, &self);
  return i >= 0 ? self : (uint64_t)-1;
}

/* Send p's news into q through a real message. */
static uint64_t send(dl_prof *p, dl_prof *q) {
  dl_buf b;
  dl_rd r;
  unsigned type;
  dl_msg_profile m;
  uint64_t n;
  dl_buf_init(&b);
  n = dl_prof_put_news(p, &b);
  if (b.len) {
    dl_rd_init(&r, b.p, b.len);
    CHECK(dl_wire_type(&r, &type) == 0 && type == DL_M_PROFILE);
    CHECK(dl_get_profile(&r, &m) == 0 && dl_rd_left(&r) == 0);
    CHECK(dl_prof_merge_msg(q, &m) == 0);
  }
  dl_buf_free(&b);
  return n;
}

static void test_news_travel_once(void) {
  static const char *const hot[] = {"work", "task (x.lua:3)", "hot (x.lua:1)"};
  static const char *const rep[] = {"work", "task (x.lua:3)", "rep [C]"};
  dl_prof *p = dl_prof_new(100), *q = dl_prof_new(100);
  int g, t;
  CHECK(p && q);
  g = dl_prof_child(p, 0, "work", 4);
  t = dl_prof_child(p, g, "task (x.lua:3)", 14);
  CHECK(g == 1 && t == 2 && dl_prof_child(p, 0, "work", 4) == g);
  dl_prof_count(p, dl_prof_child(p, t, "hot (x.lua:1)", 13), 5);
  dl_prof_count(p, t, 1);
  CHECK(dl_prof_samples(p) == 6);
  CHECK(send(p, q) == 6);
  CHECK(send(p, q) == 0); /* nothing new: no message */
  CHECK(dl_prof_samples(q) == 6 && self_of(q, hot, 3) == 5 &&
        self_of(q, hot, 2) == 1);
  dl_prof_count(p, dl_prof_child(p, t, "rep [C]", 7), 2);
  dl_prof_count(p, find(p, hot, 3), 1);
  CHECK(send(p, q) == 3);
  CHECK(dl_prof_samples(q) == 9 && self_of(q, hot, 3) == 6 &&
        self_of(q, rep, 3) == 2 && dl_prof_size(q) == 5);
  dl_prof_free(p);
  dl_prof_free(q);
}

static void test_a_full_tree_keeps_every_sample(void) {
  dl_prof *p = dl_prof_new(3), *q = dl_prof_new(2);
  char name[16];
  int i, at = 0, last = 0;
  CHECK(p && q);
  /* A path of 10 frames into a tree of 3 nodes: the sample stops at the
     deepest node that fits. */
  for (i = 0; i < 10; i++) {
    int c;
    snprintf(name, sizeof name, "f%d", i);
    c = dl_prof_child(p, at, name, strlen(name));
    if (c < 0) break;
    last = at = c;
  }
  CHECK(i == 2 && dl_prof_size(p) == 3);
  dl_prof_count(p, last, 4);
  CHECK(send(p, q) == 4);
  CHECK(dl_prof_size(q) == 2 && dl_prof_samples(q) == 4);
  { /* a frame longer than DL_PROF_FRAMELEN is cut, and found again */
    char big[400];
    dl_prof *r = dl_prof_new(10);
    memset(big, 'a', sizeof big);
    CHECK(r && dl_prof_child(r, 0, big, sizeof big) == 1);
    CHECK(dl_prof_child(r, 0, big, sizeof big - 1) == 1);
    CHECK(strlen(dl_prof_node(r, 1, NULL, NULL)) == DL_PROF_FRAMELEN);
    dl_prof_free(r);
  }
  dl_prof_free(p);
  dl_prof_free(q);
}

static void test_trees_merge(void) {
  static const char *const a[] = {"g", "f (x.lua:1)"};
  dl_prof *p = dl_prof_new(10), *q = dl_prof_new(10), *all = dl_prof_new(10);
  CHECK(p && q && all);
  dl_prof_count(p, dl_prof_child(p, dl_prof_child(p, 0, "g", 1),
                                 "f (x.lua:1)", 11), 3);
  dl_prof_count(q, dl_prof_child(q, dl_prof_child(q, 0, "g", 1),
                                 "f (x.lua:1)", 11), 4);
  dl_prof_count(q, dl_prof_child(q, 0, "h", 1), 1);
  dl_prof_merge(all, p);
  dl_prof_merge(all, q);
  CHECK(dl_prof_samples(all) == 8 && self_of(all, a, 2) == 7 &&
        dl_prof_size(all) == 4);
  dl_prof_free(p);
  dl_prof_free(q);
  dl_prof_free(all);
}

/* The window: only the paths with samples at t0 or later, with only those
   samples; and whether the log still reached back that far. */
static void test_a_window_of_time(void) {
  static const char *const f[] = {"g", "f (x.lua:1)"};
  static const char *const h[] = {"g", "h (x.lua:9)"};
  static const char *const old[] = {"old", "o (y.lua:2)"};
  dl_prof *p = dl_prof_new(20), *w;
  int g, nf, nh, no;
  CHECK(p && dl_prof_keep_log(p, 4) == 0);
  g = dl_prof_child(p, 0, "g", 1);
  nf = dl_prof_child(p, g, "f (x.lua:1)", 11);
  nh = dl_prof_child(p, g, "h (x.lua:9)", 11);
  no = dl_prof_child(p, dl_prof_child(p, 0, "old", 3), "o (y.lua:2)", 11);
  dl_prof_at(p, 10);
  dl_prof_count(p, no, 5);
  dl_prof_count(p, nf, 1);
  dl_prof_at(p, 20);
  dl_prof_count(p, nf, 2);
  dl_prof_count(p, nh, 3);
  /* Everything from 20 on: f 2, h 3; "old" is not there at all. */
  w = dl_prof_new(20);
  CHECK(w && dl_prof_merge_since(w, p, 15) == 0);
  CHECK(dl_prof_samples(w) == 5 && self_of(w, f, 2) == 2 &&
        self_of(w, h, 2) == 3 && find(w, old, 1) < 0 &&
        dl_prof_size(w) == 4);
  dl_prof_free(w);
  /* From 0: all 11, and the log (4 counts) still holds them all. */
  w = dl_prof_new(20);
  CHECK(w && dl_prof_merge_since(w, p, 0) == 0);
  CHECK(dl_prof_samples(w) == 11 && self_of(w, old, 2) == 5 &&
        self_of(w, f, 2) == 3);
  dl_prof_free(w);
  /* Past the log: a fifth count drops the oldest (old's 5); a window
     from 0 then has the newest four only, and says it is not complete. */
  dl_prof_at(p, 30);
  dl_prof_count(p, nh, 1);
  w = dl_prof_new(20);
  CHECK(w && dl_prof_merge_since(w, p, 0) == 1);
  CHECK(dl_prof_samples(w) == 7 && find(w, old, 1) < 0 &&
        self_of(w, h, 2) == 4);
  dl_prof_free(w);
  /* A window the log still covers whole is complete again. */
  w = dl_prof_new(20);
  CHECK(w && dl_prof_merge_since(w, p, 25) == 0 &&
        dl_prof_samples(w) == 1);
  dl_prof_free(w);
  /* The tree itself keeps every sample. */
  CHECK(dl_prof_samples(p) == 12 && self_of(p, old, 2) == 5);
  /* A tree without a log has no window. */
  w = dl_prof_new(20);
  {
    dl_prof *nolog = dl_prof_new(20);
    CHECK(nolog && dl_prof_merge_since(w, nolog, 0) == 1 &&
          dl_prof_samples(w) == 0);
    dl_prof_free(nolog);
  }
  dl_prof_free(w);
  dl_prof_free(p);
}

int main(void) {
  RUN(test_news_travel_once);
  RUN(test_a_full_tree_keeps_every_sample);
  RUN(test_trees_merge);
  RUN(test_a_window_of_time);
  return TAP_END();
}

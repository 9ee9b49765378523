/*
** test_map.c -- C tests of the string-keyed map (dl_map.c): growth through
** many rehashes, removal with tombstones and the reset of an emptied map,
** keys that share their hash's low bits, room made at once
** (dl_map_reserve), and the failure paths (a slot
** array that cannot be had, a key too long to store), each of which must
** leave the map as it was.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "dl_buf.h"
#include "dl_map.h"
#include "tap.h"

#define N 200000

/* ASan reserves terabytes of shadow memory: it cannot run under the
   address-space limit that the failure test sets. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static char keys[N][24];
static size_t klens[N];

static void make_keys(void) {
  int i;
  for (i = 0; i < N; i++)
    klens[i] = (size_t)snprintf(keys[i], sizeof keys[i], "inc-%08x%04d", i,
                                i % 7);
}

/* Every key i below n with (i % step == 0 ? absent : present) when
   gone_step > 0, else every key present; values are &keys[i]. */
static int consistent(const dl_map *m, int n, int gone_step) {
  int i;
  for (i = 0; i < n; i++) {
    void *v = dl_map_get(m, keys[i], klens[i]);
    int gone = gone_step > 0 && i % gone_step == 0;
    if (gone ? v != NULL : v != keys[i]) return 0;
  }
  return 1;
}

static void test_growth_keeps_every_key(void) {
  dl_map m;
  int i;
  size_t it = 0, seen = 0;
  make_keys();
  dl_map_init(&m);
  CHECK(dl_map_get(&m, "x", 1) == NULL); /* empty, no slots */
  for (i = 0; i < N; i++) {
    CHECK(dl_map_put(&m, keys[i], klens[i], keys[i]) == 0);
    CHECK(m.count == (size_t)i + 1);
    /* The load factor stays under 3/4, through every rehash. */
    CHECK(m.used * 4 < m.cap * 3);
  }
  CHECK(consistent(&m, N, 0));
  CHECK(dl_map_get(&m, "inc-", 4) == NULL);
  /* Putting a key again replaces its value; the count stays. */
  CHECK(dl_map_swap(&m, keys[5], klens[5], keys[6], NULL) == keys[5]);
  CHECK(m.count == N);
  CHECK(dl_map_get(&m, keys[5], klens[5]) == keys[6]);
  CHECK(dl_map_put(&m, keys[5], klens[5], keys[5]) == 0);
  while (dl_map_next(&m, &it)) seen++;
  CHECK(seen == N);
  dl_map_free(&m);
  CHECK(m.cap == 0 && m.count == 0 && m.slots == NULL);
}

static void test_removal_leaves_probe_chains_whole(void) {
  dl_map m;
  int i;
  size_t cap;
  make_keys();
  dl_map_init(&m);
  for (i = 0; i < N; i++) CHECK(dl_map_put(&m, keys[i], klens[i], keys[i]) == 0);
  for (i = 0; i < N; i += 3)
    CHECK(dl_map_del(&m, keys[i], klens[i]) == keys[i]);
  CHECK(dl_map_del(&m, keys[0], klens[0]) == NULL); /* twice: nothing */
  /* Keys after a tombstone on their probe path are still found. */
  CHECK(consistent(&m, N, 3));
  /* Tombstones count toward the load: churn forces rehashes, never an
     endless probe. */
  for (i = 0; i < N; i += 3) CHECK(dl_map_put(&m, keys[i], klens[i], keys[i]) == 0);
  for (i = 0; i < N; i += 3) CHECK(dl_map_del(&m, keys[i], klens[i]) == keys[i]);
  CHECK(m.used * 4 < m.cap * 3);
  CHECK(consistent(&m, N, 3));
  /* Emptying the map clears its tombstones and keeps its slots. */
  cap = m.cap;
  for (i = 1; i < N; i++)
    if (i % 3) CHECK(dl_map_del(&m, keys[i], klens[i]) == keys[i]);
  CHECK(m.count == 0 && m.used == 0 && m.cap == cap);
  CHECK(dl_map_put(&m, keys[1], klens[1], keys[1]) == 0);
  CHECK(dl_map_get(&m, keys[1], klens[1]) == keys[1]);
  dl_map_free(&m);
}

static void test_same_hash_bits_different_keys(void) {
  /* Keys that differ only in length or in one byte, and the empty key. */
  dl_map m;
  static const char k[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  size_t n;
  dl_map_init(&m);
  for (n = 0; n <= 32; n++) CHECK(dl_map_put(&m, k, n, (void *)(k + n)) == 0);
  for (n = 0; n <= 32; n++) CHECK(dl_map_get(&m, k, n) == k + n);
  CHECK(dl_map_get(&m, "aab", 3) == NULL);
  dl_map_free(&m);
}

static void test_failed_growth_leaves_the_map_unchanged(void) {
  dl_map m;
  struct rlimit rl;
  int i, err = 0;
  size_t count, cap;
  if (UNDER_ASAN) {
    printf("# skipped under ASan (RLIMIT_AS)\n");
    return;
  }
  make_keys();
  dl_map_init(&m);
  /* Fill to just under a rehash, then cap the address space so that the
     next (doubled) slot array cannot be had. */
  for (i = 0; i < N; i++) {
    if ((m.used + 1) * 4 >= m.cap * 3 && m.cap >= ((size_t)1 << 17)) break;
    CHECK(dl_map_put(&m, keys[i], klens[i], keys[i]) == 0);
  }
  CHECK(i < N);
  count = m.count;
  cap = m.cap;
  CHECK(getrlimit(RLIMIT_AS, &rl) == 0);
  {
    /* The address space in use now, plus a little: no room for 2 * cap
       more slots. */
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    CHECK(f != NULL && fscanf(f, "%lu", &pages) == 1);
    fclose(f);
    rl.rlim_cur = pages * 4096 + cap * sizeof(dl_map_slot) / 2;
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
  }
  CHECK(dl_map_swap(&m, keys[i], klens[i], keys[i], &err) == NULL);
  CHECK(err == DL_ENOMEM);
  CHECK(dl_map_put(&m, keys[i], klens[i], keys[i]) == DL_ENOMEM);
  CHECK(m.count == count && m.cap == cap);
  CHECK(dl_map_get(&m, keys[i], klens[i]) == NULL);
  CHECK(consistent(&m, (int)count, 0));
  /* Replacing an existing key needs no room: it still works. */
  CHECK(dl_map_swap(&m, keys[0], klens[0], keys[0], &err) == keys[0]);
}

static void test_a_key_too_long_is_refused(void) {
  dl_map m;
  int err = 0;
  dl_map_init(&m);
  CHECK(dl_map_put(&m, "a", 1, (void *)"a") == 0);
  /* The length alone is refused: no byte past the first is read. */
  CHECK(dl_map_swap(&m, "a", (size_t)UINT32_MAX + 1, (void *)"b", &err) ==
        NULL);
  CHECK(err == DL_ENOMEM);
  CHECK(m.count == 1);
  CHECK(dl_map_get(&m, "a", 1) == (void *)"a");
  dl_map_free(&m);
}

static void test_reserve_then_no_rehash(void) {
  dl_map m;
  int i;
  size_t cap;
  dl_map_slot *slots;
  make_keys();
  dl_map_init(&m);
  CHECK(dl_map_put(&m, keys[0], klens[0], keys[0]) == 0);
  CHECK(dl_map_reserve(&m, N - 1) == 0);
  cap = m.cap;
  slots = m.slots;
  CHECK(dl_map_get(&m, keys[0], klens[0]) == keys[0]); /* kept */
  /* The next N - 1 new keys fit without a rehash (the slot array, big
     enough to be dl_mem_huge's, stays where it is). */
  for (i = 1; i < N; i++) CHECK(dl_map_put(&m, keys[i], klens[i], keys[i]) == 0);
  CHECK(m.cap == cap && m.slots == slots);
  CHECK(cap * sizeof(dl_map_slot) >= ((size_t)512 << 10));
  CHECK(consistent(&m, N, 0));
  /* Reserving what is there already changes nothing; too much fails. */
  CHECK(dl_map_reserve(&m, 0) == 0 && m.cap == cap);
  CHECK(dl_map_reserve(&m, (size_t)-1 / 2) == DL_ENOMEM);
  CHECK(m.cap == cap && m.count == N);
  dl_map_free(&m);
}

/* The intrusive map (dl_imap): each value holds its key at koff. */
typedef struct rec { /* 8-byte aligned, as the map wants its values */
  int64_t id;
  uint32_t klen;
  char key[24];
} rec;
static rec recs[N];

static int iconsistent(const dl_imap *m, int n, int gone_step) {
  int i;
  for (i = 0; i < n; i++) {
    void *v = dl_imap_get(m, keys[i], klens[i]);
    int gone = gone_step > 0 && i % gone_step == 0;
    if (gone ? v != NULL : v != &recs[i]) return 0;
  }
  return 1;
}

static void test_intrusive_map(void) {
  dl_imap m;
  rec again;
  int i;
  size_t it = 0, seen = 0, cap = 0;
  uintptr_t *slots;
  make_keys();
  for (i = 0; i < N; i++) {
    recs[i].id = i;
    recs[i].klen = (uint32_t)klens[i];
    memcpy(recs[i].key, keys[i], klens[i] + 1);
  }
  CHECK(sizeof *m.slots == 8);
  dl_imap_init(&m, offsetof(rec, key), offsetof(rec, klen));
  CHECK(dl_imap_get(&m, keys[0], klens[0]) == NULL);
  for (i = 0; i < N; i++) {
    size_t c;
    CHECK(dl_imap_put(&m, &recs[i]) == 0);
    /* sizes 2^k and 3 * 2^(k-1), at most three quarters full, and a
       third free at least after a growth */
    for (c = m.cap; c % 2 == 0; c /= 2) {}
    CHECK((c == 1 || c == 3) && m.cap >= 16 && m.used * 4 < m.cap * 3);
    if (m.cap != cap) CHECK(m.count * 3 < m.cap * 2);
    cap = m.cap;
  }
  CHECK(m.count == N && iconsistent(&m, N, 0));
  /* a million keys: 1.5 * 2^20 slots, not 2^21 */
  dl_imap_free(&m);
  CHECK(dl_imap_reserve(&m, 1000000) == 0 && m.cap == 3u << 19);
  dl_imap_free(&m);
  for (i = 0; i < N; i++) CHECK(dl_imap_put(&m, &recs[i]) == 0);
  CHECK(m.count == N && iconsistent(&m, N, 0));
  /* A key that is a prefix of a stored one is another key. */
  CHECK(dl_imap_get(&m, keys[5], klens[5] - 1) == NULL);
  while (dl_imap_next(&m, &it)) seen++;
  CHECK(seen == N);
  /* Removal leaves the probe chains whole; a put of a key there replaces
     its value. */
  for (i = 0; i < N; i += 3)
    CHECK(dl_imap_del(&m, keys[i], klens[i]) == &recs[i]);
  CHECK(dl_imap_del(&m, keys[0], klens[0]) == NULL);
  CHECK(iconsistent(&m, N, 3));
  again = recs[1];
  CHECK(dl_imap_put(&m, &again) == 0);
  CHECK(dl_imap_get(&m, keys[1], klens[1]) == &again);
  CHECK(dl_imap_put(&m, &recs[1]) == 0);
  CHECK(m.count == N - (N + 2) / 3);
  CHECK(iconsistent(&m, N, 3));
  /* Emptied: reset; then room made at once means no rehash. */
  for (i = 0; i < N; i++) dl_imap_del(&m, keys[i], klens[i]);
  CHECK(m.count == 0 && m.used == 0);
  dl_imap_free(&m);
  dl_imap_init(&m, offsetof(rec, key), offsetof(rec, klen));
  CHECK(dl_imap_reserve(&m, N) == 0);
  cap = m.cap;
  slots = m.slots;
  for (i = 0; i < N; i++) CHECK(dl_imap_put(&m, &recs[i]) == 0);
  CHECK(m.cap == cap && m.slots == slots && iconsistent(&m, N, 0));
  dl_imap_free(&m);
}

/* A counter's 8 hex digits (keys kept as a stem's): written and read
   back; upper case, other bytes and NUL are no digits. */
static void test_hex8(void) {
  static const uint32_t ns[] = {0, 1, 0x0a, 0xabcdef12u, 0x7fffffffu,
                                0xffffffffu, 0x00100000u};
  char d[9];
  uint32_t n, i;
  for (i = 0; i < sizeof ns / sizeof *ns; i++) {
    char want[9];
    snprintf(want, sizeof want, "%08x", ns[i]);
    dl_hex8(d, ns[i]);
    d[8] = '\0';
    CHECK(strcmp(d, want) == 0);
    CHECK(dl_unhex8(d, &n) == 1 && n == ns[i]);
  }
  CHECK(dl_unhex8("0000000A", &n) == 0);
  CHECK(dl_unhex8("0000000g", &n) == 0);
  CHECK(dl_unhex8("-0000001", &n) == 0);
  CHECK(dl_unhex8("0000\0" "001", &n) == 0);
}

int main(void) {
  RUN(test_growth_keeps_every_key);
  RUN(test_removal_leaves_probe_chains_whole);
  RUN(test_same_hash_bits_different_keys);
  RUN(test_failed_growth_leaves_the_map_unchanged);
  RUN(test_a_key_too_long_is_refused);
  RUN(test_reserve_then_no_rehash);
  RUN(test_intrusive_map);
  RUN(test_hex8);
  return TAP_END();
}

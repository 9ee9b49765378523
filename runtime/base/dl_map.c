/*
** dl_map.c -- string-keyed hash map with linear probing.
*/
#include <string.h>

#include "dl_buf.h"
#include "dl_map.h"
#include "dl_mem.h"

static const char tomb_mark;
/* Slot arrays of at least this many bytes are dl_mem_huge's: a map that
   grows to a million keys in a burst touches its new array 2 MiB at a
   time, not 4 KiB. */
#define HUGE_SLOTS ((size_t)512 << 10)
#define DL_MAP_TOMB (&tomb_mark)

/* Eight bytes at a time: each word is folded in with a multiply and a
   shift, the length with the seed, and the end goes through a full mix. */
uint64_t dl_hash(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)n * 0xff51afd7ed558ccdULL);
  uint64_t w;
  for (; n >= 8; s += 8, n -= 8) {
    memcpy(&w, s, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 31;
  }
  if (n) {
    w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 31;
  }
  return dl_mix64(h);
}

void dl_map_init(dl_map *m) { memset(m, 0, sizeof *m); }

void dl_map_free(dl_map *m) {
  dl_free(m->slots);
  dl_map_init(m);
}

static dl_map_slot *find(const dl_map *m, const char *key, size_t klen,
                         uint64_t h) {
  size_t mask = m->cap - 1, i = (size_t)h & mask;
  for (;;) {
    dl_map_slot *s = &m->slots[i];
    if (s->key == NULL) return NULL;
    if (s->key != DL_MAP_TOMB && s->hash == (uint32_t)h && s->klen == klen &&
        memcmp(s->key, key, klen) == 0)
      return s;
    i = (i + 1) & mask;
  }
}

void *dl_map_get(const dl_map *m, const char *key, size_t klen) {
  dl_map_slot *s;
  if (m->count == 0 || klen > UINT32_MAX) return NULL;
  s = find(m, key, klen, dl_hash(key, klen));
  return s ? s->val : NULL;
}

void dl_map_prefetch(const dl_map *m, uint64_t h) {
  if (m->cap) __builtin_prefetch(&m->slots[(size_t)h & (m->cap - 1)]);
}

void dl_map_prefetch_val(const dl_map *m, uint64_t h) {
  const dl_map_slot *s;
  if (m->cap == 0) return;
  s = &m->slots[(size_t)h & (m->cap - 1)];
  if (s->hash == (uint32_t)h && s->key != NULL && s->key != DL_MAP_TOMB) {
    __builtin_prefetch(s->key);
    __builtin_prefetch(s->val);
  }
}

/* A zero-filled slot array of n bytes: on huge pages when big (the
   slots of a big map are all written soon), from the heap when not. */
static void *slots_new(size_t n) {
  void *p;
  if (n >= HUGE_SLOTS) return dl_mem_huge(n); /* zero-filled */
  if ((p = dl_realloc(NULL, n)) != NULL) memset(p, 0, n);
  return p;
}

static int rehash(dl_map *m, size_t ncap) {
  dl_map_slot *old = m->slots, *ns;
  size_t ocap = m->cap, i;
  /* The stored hash has 32 bits: it places a key in at most 2^32 slots. */
  if (ncap - 1 > UINT32_MAX) return DL_ENOMEM;
  if ((ns = slots_new(ncap * sizeof *ns)) == NULL) return DL_ENOMEM;
  m->slots = ns;
  m->cap = ncap;
  m->used = m->count;
  for (i = 0; i < ocap; i++) {
    dl_map_slot *s = &old[i];
    if (s->key != NULL && s->key != DL_MAP_TOMB) {
      size_t j = (size_t)s->hash & (ncap - 1);
      while (ns[j].key != NULL) j = (j + 1) & (ncap - 1);
      ns[j] = *s;
    }
  }
  dl_free(old);
  return 0;
}

int dl_map_reserve(dl_map *m, size_t n) {
  size_t ncap;
  if (n > SIZE_MAX / 8 - m->count) return DL_ENOMEM;
  if ((m->used + n + 1) * 4 < m->cap * 3) return 0;
  /* The load may reach 3/4 at the end of the burst, as when the map
     grows by itself; a lower aim would double the slots for good. */
  ncap = m->cap ? m->cap : 16;
  while ((m->count + n + 1) * 4 >= ncap * 3) ncap *= 2;
  return rehash(m, ncap);
}

void *dl_map_swap(dl_map *m, const char *key, size_t klen, void *val,
                  int *err) {
  uint64_t h;
  size_t mask, i;
  dl_map_slot *s;
  if (klen > UINT32_MAX) {
    if (err) *err = DL_ENOMEM;
    return NULL;
  }
  h = dl_hash(key, klen);
  if (m->count) {
    s = find(m, key, klen, h);
    if (s) {
      void *old = s->val;
      s->key = key;
      s->val = val;
      return old;
    }
  }
  if ((m->used + 1) * 4 >= m->cap * 3) {
    size_t ncap = m->cap ? m->cap : 16;
    while ((m->count + 1) * 2 >= ncap) ncap *= 2;
    if (rehash(m, ncap)) {
      if (err) *err = DL_ENOMEM;
      return NULL;
    }
  }
  mask = m->cap - 1;
  i = (size_t)h & mask;
  while (m->slots[i].key != NULL && m->slots[i].key != DL_MAP_TOMB)
    i = (i + 1) & mask;
  s = &m->slots[i];
  if (s->key == NULL) m->used++;
  s->key = key;
  s->klen = (uint32_t)klen;
  s->hash = (uint32_t)h;
  s->val = val;
  m->count++;
  return NULL;
}

int dl_map_put(dl_map *m, const char *key, size_t klen, void *val) {
  int err = 0;
  dl_map_swap(m, key, klen, val, &err);
  return err;
}

void *dl_map_del(dl_map *m, const char *key, size_t klen) {
  dl_map_slot *s;
  void *v;
  if (m->count == 0 || klen > UINT32_MAX) return NULL;
  s = find(m, key, klen, dl_hash(key, klen));
  if (s == NULL) return NULL;
  v = s->val;
  s->key = DL_MAP_TOMB;
  s->val = NULL;
  m->count--;
  if (m->count == 0) { /* reset tombstones cheaply */
    memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->used = 0;
  }
  return v;
}

void *dl_map_next(const dl_map *m, size_t *i) {
  while (*i < m->cap) {
    dl_map_slot *s = &m->slots[(*i)++];
    if (s->key != NULL && s->key != DL_MAP_TOMB) return s->val;
  }
  return NULL;
}

/* ------------------------------------------------------ the intrusive map */

/* Deleted: the address of this (8-byte aligned, tag 0). */
static const uint64_t itomb_obj;
#define ITOMB ((uintptr_t)&itomb_obj)
#define TAGS ((uintptr_t)7)

static int ilive(uintptr_t v) { return v != 0 && v != ITOMB; }
static unsigned itag(uint64_t h) { return (unsigned)(h >> 61); }

/*
** Slot arrays grow by halves, not doubling: 16, 24, 32, 48, 64, ...
** (2^k and 3 * 2^(k-1)), so that a map of n keys holds 1.33 to 2 slots a
** key where powers of two give 1.33 to 2.67 (a million keys: 1.5 * 2^20
** slots, 12.6 MB, not 2^21, 16.8 MB).  A key's first slot is the low 32
** bits of its hash scaled to the size (a multiply and a shift, no
** division); the tag is its top 3 bits.
*/
static size_t islot(const dl_imap *m, uint64_t h) {
  return (size_t)(((h & 0xffffffffu) * (uint64_t)m->cap) >> 32);
}

static size_t inext(const dl_imap *m, size_t i) {
  return i + 1 == m->cap ? 0 : i + 1;
}

static size_t igrow(size_t cap) {
  return (cap & (cap - 1)) == 0 ? cap + cap / 2 : cap / 3 * 4;
}
static char *ival(uintptr_t v) { return (char *)(v & ~TAGS); }

static const char *ikey(const dl_imap *m, const char *val) {
  return val + m->koff;
}

static uint32_t ilen(const dl_imap *m, const char *val) {
  uint32_t n;
  memcpy(&n, val + m->loff, sizeof n);
  return n;
}

static uint64_t ihash(const dl_imap *m, const char *val) {
  char buf[DL_IMAP_KEYBUF];
  size_t n;
  const char *k;
  if (m->keyfn == NULL) return dl_hash(ikey(m, val), ilen(m, val));
  k = m->keyfn(m->keyud, val, buf, &n);
  return dl_hash(k, n);
}

/* Is the key of val klen bytes at key? */
static int ieq(const dl_imap *m, const char *val, const char *key,
               size_t klen) {
  if (m->keyfn == NULL)
    return ilen(m, val) == klen && memcmp(ikey(m, val), key, klen) == 0;
  return m->eqfn(m->keyud, val, key, klen);
}

void dl_imap_init(dl_imap *m, size_t koff, size_t loff) {
  memset(m, 0, sizeof *m);
  m->koff = koff;
  m->loff = loff;
}

void dl_imap_set_keyfn(dl_imap *m, dl_imap_keyfn fn, dl_imap_eqfn eq,
                       const void *ud) {
  m->keyfn = fn;
  m->eqfn = eq;
  m->keyud = ud;
}

void dl_imap_free(dl_imap *m) {
  dl_imap_keyfn fn = m->keyfn;
  dl_imap_eqfn eq = m->eqfn;
  const void *ud = m->keyud;
  dl_free(m->slots);
  dl_imap_init(m, m->koff, m->loff);
  dl_imap_set_keyfn(m, fn, eq, ud);
}

static uintptr_t *ifind(const dl_imap *m, const char *key, size_t klen,
                        uint64_t h) {
  size_t i = islot(m, h);
  uintptr_t tag = itag(h);
  for (;;) {
    uintptr_t v = m->slots[i];
    if (v == 0) return NULL;
    if (v != ITOMB && (v & TAGS) == tag) {
      if (ieq(m, ival(v), key, klen)) return &m->slots[i];
    }
    i = inext(m, i);
  }
}

void *dl_imap_get(const dl_imap *m, const char *key, size_t klen) {
  uintptr_t *sl;
  if (m->count == 0 || klen > UINT32_MAX) return NULL;
  sl = ifind(m, key, klen, dl_hash(key, klen));
  return sl ? ival(*sl) : NULL;
}

void dl_imap_prefetch(const dl_imap *m, uint64_t h) {
  if (m->cap) __builtin_prefetch(&m->slots[islot(m, h)]);
}

void dl_imap_prefetch_val(const dl_imap *m, uint64_t h) {
  uintptr_t v;
  if (m->cap == 0) return;
  v = m->slots[islot(m, h)];
  if (ilive(v) && (v & TAGS) == itag(h)) {
    __builtin_prefetch(ival(v));
    if (m->keyfn == NULL) __builtin_prefetch(ikey(m, ival(v)));
  }
}

static int irehash(dl_imap *m, size_t ncap) {
  uintptr_t *old = m->slots, *ns;
  size_t ocap = m->cap, i;
  if (ncap - 1 > UINT32_MAX) return DL_ENOMEM;
  if ((ns = slots_new(ncap * sizeof *ns)) == NULL) return DL_ENOMEM;
  m->slots = ns;
  m->cap = ncap;
  m->used = m->count;
  for (i = 0; i < ocap; i++) {
    size_t j;
    /* The keys are read again: start loading one a few slots ahead. */
    if (i + 8 < ocap && ilive(old[i + 8]))
      __builtin_prefetch(m->keyfn ? ival(old[i + 8])
                                  : ikey(m, ival(old[i + 8])));
    if (!ilive(old[i])) continue;
    j = islot(m, ihash(m, ival(old[i])));
    while (ns[j] != 0) j = inext(m, j);
    ns[j] = old[i];
  }
  dl_free(old);
  return 0;
}

int dl_imap_reserve(dl_imap *m, size_t n) {
  size_t ncap;
  if (n > SIZE_MAX / 8 - m->count) return DL_ENOMEM;
  if ((m->used + n + 1) * 4 < m->cap * 3) return 0;
  ncap = m->cap ? m->cap : 16; /* as dl_map_reserve */
  while ((m->count + n + 1) * 4 >= ncap * 3) ncap = igrow(ncap);
  return irehash(m, ncap);
}

int dl_imap_put(dl_imap *m, void *val) {
  const char *p = val, *key;
  char buf[DL_IMAP_KEYBUF];
  size_t klen;
  if (val == NULL || ((uintptr_t)val & TAGS)) return DL_ENOMEM;
  if (m->keyfn) {
    key = m->keyfn(m->keyud, p, buf, &klen);
  } else {
    key = ikey(m, p);
    klen = ilen(m, p);
  }
  return dl_imap_put_key(m, val, key, klen);
}

int dl_imap_put_key(dl_imap *m, void *val, const char *key, size_t klen) {
  uint64_t h;
  size_t i;
  uintptr_t *sl, tag;
  if (val == NULL || ((uintptr_t)val & TAGS)) return DL_ENOMEM;
  h = dl_hash(key, klen);
  tag = itag(h);
  if (m->count && (sl = ifind(m, key, klen, h)) != NULL) {
    *sl = (uintptr_t)val | tag;
    return 0;
  }
  if ((m->used + 1) * 4 >= m->cap * 3) {
    /* a third free at least after it: one step (1.33 or 1.5 times) from
       three quarters full, none when tombstones made it so full */
    size_t ncap = m->cap ? m->cap : 16;
    while ((m->count + 1) * 3 >= ncap * 2) ncap = igrow(ncap);
    if (irehash(m, ncap)) return DL_ENOMEM;
  }
  i = islot(m, h);
  while (ilive(m->slots[i])) i = inext(m, i);
  if (m->slots[i] == 0) m->used++;
  m->slots[i] = (uintptr_t)val | tag;
  m->count++;
  return 0;
}

void *dl_imap_del(dl_imap *m, const char *key, size_t klen) {
  uintptr_t *sl;
  void *v;
  if (m->count == 0 || klen > UINT32_MAX) return NULL;
  sl = ifind(m, key, klen, dl_hash(key, klen));
  if (sl == NULL) return NULL;
  v = ival(*sl);
  *sl = ITOMB;
  m->count--;
  if (m->count == 0) { /* reset tombstones cheaply */
    memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->used = 0;
  }
  return v;
}

void *dl_imap_next(const dl_imap *m, size_t *i) {
  while (*i < m->cap) {
    uintptr_t v = m->slots[(*i)++];
    if (ilive(v)) return ival(v);
  }
  return NULL;
}

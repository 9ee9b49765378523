/*
** dl_wordcount.c -- word counts in an open-addressing table; words of up
** to DL_WORDCOUNT_INLINE bytes live in their slot, longer ones are copied.
*/
#include <string.h>

#include "dl_buf.h"
#include "dl_map.h"
#include "dl_wordcount.h"

void dl_wordcount_init(dl_wordcount *wc) {
  wc->slots = NULL;
  wc->cap = 0;
  wc->count = 0;
}

void dl_wordcount_free(dl_wordcount *wc) {
  size_t i;
  for (i = 0; i < wc->cap; i++) {
    dl_wordcount_slot *s = &wc->slots[i];
    if (s->len > DL_WORDCOUNT_INLINE) dl_free(s->w.ptr);
  }
  if (wc->slots) dl_free(wc->slots);
  dl_wordcount_init(wc);
}

static int grow(dl_wordcount *wc, size_t hint) {
  size_t ncap = wc->cap ? wc->cap * 2 : 1024, i;
  while (ncap < hint) ncap *= 2;
  dl_wordcount_slot *ns = dl_realloc(NULL, ncap * sizeof *ns);
  if (!ns) return DL_ENOMEM;
  memset(ns, 0, ncap * sizeof *ns);
  for (i = 0; i < wc->cap; i++) {
    const dl_wordcount_slot *s = &wc->slots[i];
    size_t j;
    if (!s->len) continue;
    j = s->hash & (ncap - 1);
    while (ns[j].len) j = (j + 1) & (ncap - 1);
    ns[j] = *s;
  }
  if (wc->slots) dl_free(wc->slots);
  wc->slots = ns;
  wc->cap = ncap;
  return 0;
}

/* Bytes that end a word: Lua's %s in the C locale (space, \t..\r). */
#define SPACE(c) ((c) == ' ' || ((c) >= '\t' && (c) <= '\r'))

/* The n-byte word at w (1 <= n <= DL_WORDCOUNT_INLINE), zero-padded into
   k[0..1].  With 16 bytes readable at w, two loads and a mask (on a
   little-endian machine); else a copy. */
static void load_short(const unsigned char *w, size_t n,
                       const unsigned char *end, uint64_t k[2]) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (end - w >= 16) {
    memcpy(k, w, 16);
    if (n < 8) {
      k[0] &= ((uint64_t)1 << (8 * n)) - 1;
      k[1] = 0;
    } else if (n == 8) {
      k[1] = 0;
    } else if (n < 16) {
      k[1] &= ((uint64_t)1 << (8 * (n - 8))) - 1;
    }
    return;
  }
#endif
  k[0] = k[1] = 0;
  memcpy(k, w, n);
}

/* The hash of a short word from its padded bytes (long words use
   dl_hash: which one a word gets depends only on its length). */
static uint32_t hash_short(const uint64_t k[2], size_t n) {
  uint64_t h = (k[0] ^ ((uint64_t)n << 56)) * 0x9e3779b97f4a7c15ULL;
  h ^= k[1] * 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 29;
  h *= 0x94d049bb133111ebULL;
  return (uint32_t)(h >> 32);
}

int dl_wordcount_add(dl_wordcount *wc, const char *text, size_t len) {
  const unsigned char *p = (const unsigned char *)text;
  const unsigned char *end = p + len;
  /* A first table for about len / 128 distinct words (at most 2^16 slots
     at first), so that growing rarely rehashes. */
  if (wc->cap == 0) {
    size_t hint = len / 128;
    if (hint > ((size_t)1 << 16)) hint = (size_t)1 << 16;
    if (grow(wc, hint) != 0) return DL_ENOMEM;
  }
  for (;;) {
    const unsigned char *w;
    size_t n, j, mask;
    uint32_t h;
    while (p < end && SPACE(*p)) p++;
    if (p == end) return 0;
    w = p;
    while (p < end && !SPACE(*p)) p++;
    n = (size_t)(p - w);
    if (n > UINT32_MAX) return -1;
    if ((wc->count + 1) * 4 > wc->cap * 3 && grow(wc, 0) != 0)
      return DL_ENOMEM;
    mask = wc->cap - 1;
    if (n <= DL_WORDCOUNT_INLINE) {
      uint64_t key[2], have[2];
      load_short(w, n, end, key);
      h = hash_short(key, n);
      for (j = h & mask;; j = (j + 1) & mask) {
        dl_wordcount_slot *s = &wc->slots[j];
        if (!s->len) {
          s->len = (uint32_t)n;
          s->hash = h;
          s->count = 1;
          memcpy(s->w.bytes, key, sizeof key);
          wc->count++;
          break;
        }
        if (s->hash != h || s->len != n) continue;
        memcpy(have, s->w.bytes, sizeof have);
        if (have[0] == key[0] && have[1] == key[1]) {
          s->count++;
          break;
        }
      }
    } else {
      h = (uint32_t)dl_hash(w, n);
      for (j = h & mask;; j = (j + 1) & mask) {
        dl_wordcount_slot *s = &wc->slots[j];
        if (!s->len) {
          char *copy = dl_realloc(NULL, n);
          if (!copy) return DL_ENOMEM;
          memcpy(copy, w, n);
          s->len = (uint32_t)n;
          s->hash = h;
          s->count = 1;
          s->w.ptr = copy;
          wc->count++;
          break;
        }
        if (s->hash == h && s->len == n && memcmp(s->w.ptr, w, n) == 0) {
          s->count++;
          break;
        }
      }
    }
  }
}

const dl_wordcount_slot *dl_wordcount_next(const dl_wordcount *wc,
                                           size_t *i) {
  while (*i < wc->cap) {
    const dl_wordcount_slot *s = &wc->slots[(*i)++];
    if (s->len) return s;
  }
  return NULL;
}

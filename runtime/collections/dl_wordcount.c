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
    h = (uint32_t)dl_hash(w, n);
    mask = wc->cap - 1;
    j = h & mask;
    if (n <= DL_WORDCOUNT_INLINE) {
      char key[DL_WORDCOUNT_INLINE];
      memset(key, 0, sizeof key);
      memcpy(key, w, n);
      for (;;) {
        dl_wordcount_slot *s = &wc->slots[j];
        if (!s->len) {
          s->len = (uint32_t)n;
          s->hash = h;
          s->count = 1;
          memcpy(s->w.bytes, key, sizeof key);
          wc->count++;
          break;
        }
        if (s->hash == h && s->len == n &&
            memcmp(s->w.bytes, key, sizeof key) == 0) {
          s->count++;
          break;
        }
        j = (j + 1) & mask;
      }
    } else {
      for (;;) {
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
        j = (j + 1) & mask;
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

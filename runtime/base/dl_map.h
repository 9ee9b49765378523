/*
** dl_map.h -- an open-addressing hash map from byte-string keys to
** pointers.  The map does not own keys or values: each key must stay valid
** (usually it lives inside the value) until it is removed.  Pure C.
*/
#ifndef dl_map_h
#define dl_map_h

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* 24 bytes: at a million keys the slot array is a good part of the
   map's memory (a slot is 1.3 to 2.7 per key at its load factors). */
typedef struct dl_map_slot {
  const char *key; /* NULL: empty; DL_MAP_TOMB: deleted */
  void *val;
  uint32_t hash; /* the low 32 bits of dl_hash(key) */
  uint32_t klen; /* keys are shorter than 4 GiB (else DL_ENOMEM) */
} dl_map_slot;

typedef struct dl_map {
  dl_map_slot *slots;
  size_t cap;   /* power of two up to 2^32, or 0 */
  size_t count; /* live entries */
  size_t used;  /* live + tombstones */
} dl_map;

/* A 64-bit hash of n bytes (word-wise multiply-shift, then a full mix). */
uint64_t dl_hash(const void *p, size_t n);

/* MurmurHash3's 64-bit finaliser: every input bit moves every output bit.
   The last step of dl_hash and of the codec's bytecode hash. */
static inline uint64_t dl_mix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  return k ^ (k >> 33);
}

/* Write n as 8 lower-case hex digits at out (no NUL): the counters of
   keys kept as a stem's (dl_client.h, the scheduler's tasks), written
   out at each read of such a key: two digits a byte, from a table. */
static inline void dl_hex8(char out[8], uint32_t n) {
  static const char two[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
  memcpy(out, two + 2 * (n >> 24), 2);
  memcpy(out + 2, two + 2 * (n >> 16 & 0xff), 2);
  memcpy(out + 4, two + 2 * (n >> 8 & 0xff), 2);
  memcpy(out + 6, two + 2 * (n & 0xff), 2);
}

/* The counter in 8 lower-case hex digits at p (dl_hex8's): 1 and *n, or
   0 when one is not such a digit.  A digit's value from a table, 16 for
   the other bytes. */
static inline int dl_unhex8(const char p[8], uint32_t *n) {
  static const unsigned char val[256] = {
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 10, 11, 12, 13, 14, 15, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
  };
  unsigned bad = 0, i;
  uint32_t v = 0;
  for (i = 0; i < 8; i++) {
    unsigned d = val[(unsigned char)p[i]];
    bad |= d;
    v = v << 4 | (d & 15);
  }
  *n = v;
  return !(bad & 16);
}

/*
** A key kept as a stem's (the client's records, the scheduler's tasks):
** the stem, the key's bytes before its counter, kept once per many keys
** in a block of dl_stem_size(len) bytes (at least DL_STEM_PAD, so that a
** short one is copied with a fixed-size memcpy), and the counter's 4
** bytes at ctr (unaligned), written out as DL_STEM_DIGITS hex digits.
*/
#define DL_STEM_PAD 32
#define DL_STEM_DIGITS 8

static inline size_t dl_stem_size(size_t slen) {
  return slen < DL_STEM_PAD ? DL_STEM_PAD : slen + 1;
}

/* Write the key out at buf (room for the stem's dl_stem_size and the
   digits), NUL-terminated; its length. */
static inline size_t dl_stemkey(char *buf, const char *stem, size_t slen,
                                const void *ctr) {
  uint32_t n;
  if (slen <= DL_STEM_PAD) memcpy(buf, stem, DL_STEM_PAD); /* fixed size */
  else memcpy(buf, stem, slen);
  memcpy(&n, ctr, sizeof n);
  dl_hex8(buf + slen, n);
  buf[slen + DL_STEM_DIGITS] = '\0';
  return slen + DL_STEM_DIGITS;
}

/* Whether the klen bytes at key are that key, without writing it out. */
static inline int dl_stemkey_eq(const char *key, size_t klen,
                                const char *stem, size_t slen,
                                const void *ctr) {
  uint32_t n;
  char d[DL_STEM_DIGITS];
  if (klen != slen + DL_STEM_DIGITS) return 0;
  memcpy(&n, ctr, sizeof n);
  dl_hex8(d, n);
  return memcmp(key + slen, d, DL_STEM_DIGITS) == 0 &&
         memcmp(key, stem, slen) == 0;
}

void dl_map_init(dl_map *m);
/* Free the slot array (not the keys or values). */
void dl_map_free(dl_map *m);
/* The value under key, or NULL. */
void *dl_map_get(const dl_map *m, const char *key, size_t klen);
/* Set key to val (key is borrowed, see above); 0 or DL_ENOMEM (out of
   memory, or a key of 4 GiB or more: the map is then unchanged). */
int dl_map_put(dl_map *m, const char *key, size_t klen, void *val);
/*
** Set key to val like dl_map_put, with one lookup, and return the value it
** replaced (NULL if key was not there, or if out of memory: then the map
** is unchanged and *err, if err is not NULL, is set to DL_ENOMEM).
*/
void *dl_map_swap(dl_map *m, const char *key, size_t klen, void *val,
                  int *err);
/*
** Make room for n more keys at once, so that the next n puts of new keys
** rehash nothing (a burst of known size: one rehash instead of many).
** 0 or DL_ENOMEM (the map is then unchanged).
*/
int dl_map_reserve(dl_map *m, size_t n);
/* Remove key; returns its value or NULL. */
void *dl_map_del(dl_map *m, const char *key, size_t klen);
/*
** Hints for a lookup soon of the key whose dl_hash is h, to overlap the
** memory waits of many lookups: the first starts loading the key's slot;
** the second, some time after the first, also the key and the value that
** slot holds if it is the key's.  Neither changes the map.
*/
void dl_map_prefetch(const dl_map *m, uint64_t h);
void dl_map_prefetch_val(const dl_map *m, uint64_t h);
/* Iterate: start with *i = 0; returns the next value or NULL at the end. */
void *dl_map_next(const dl_map *m, size_t *i);

/*
** An intrusive map: each value holds its own key, koff bytes from its
** start, and the key's length, a uint32_t loff bytes from its start (a
** record followed by its key, say).  A slot is the value's address and 3
** bits of the key's hash (values are 8-byte aligned): 8 bytes instead of
** dl_map's 24.  At a million keys and half-full slot arrays that is 32 MB
** less per map (the scheduler's tasks, the client's futures).  The price:
** a rehash reads every value to hash its key again, and 1 probe in 8 of
** another key reads that key.  Same probing as dl_map, but slot arrays
** grow by halves (16, 24, 32, 48, ...: 1.5 * 2^20 slots for a million
** keys, 12.6 MB, not 16.8); the key of a value must not change while it
** is in the map.
*/
/*
** A value may keep its key in a form of its own (the client's records of
** keys made from a stem and a counter: 4 bytes, not the 20 of the key):
** the map then reads each key through a dl_imap_keyfn, which writes the
** key into buf when it is not stored as it is (at most DL_IMAP_KEYBUF
** bytes) and returns where it is, with its length in *len.
*/
#define DL_IMAP_KEYBUF 256
typedef const char *(*dl_imap_keyfn)(const void *ud, const void *val,
                                     char buf[DL_IMAP_KEYBUF], size_t *len);
/* Is val's key the klen bytes at key?  (With a keyfn: compares without
   writing the key out.) */
typedef int (*dl_imap_eqfn)(const void *ud, const void *val, const char *key,
                            size_t klen);

typedef struct dl_imap {
  uintptr_t *slots; /* value | 3 bits of its hash; 0 empty, or deleted */
  size_t cap, count, used; /* as dl_map's */
  size_t koff, loff;       /* the key's offset in each value, its length's */
  dl_imap_keyfn keyfn;     /* NULL: koff and loff say where the key is */
  dl_imap_eqfn eqfn;       /* with keyfn */
  const void *keyud;       /* keyfn's and eqfn's first argument */
} dl_imap;

void dl_imap_init(dl_imap *m, size_t koff, size_t loff);
/* Keys are read with fn(ud, ...) and compared with eq(ud, ...), not at
   koff and loff (set them while the map is empty; dl_imap_free keeps
   them). */
void dl_imap_set_keyfn(dl_imap *m, dl_imap_keyfn fn, dl_imap_eqfn eq,
                       const void *ud);
void dl_imap_free(dl_imap *m);
void *dl_imap_get(const dl_imap *m, const char *key, size_t klen);
/* Put val (8-byte aligned), whose key is at koff in it and its length at
   loff; a value with the same key is replaced.  0 or DL_ENOMEM (the map
   is then unchanged). */
int dl_imap_put(dl_imap *m, void *val);
/* dl_imap_put when the caller has val's key at hand (klen bytes at key,
   the very bytes the map would read): not read again from val. */
int dl_imap_put_key(dl_imap *m, void *val, const char *key, size_t klen);
int dl_imap_reserve(dl_imap *m, size_t n);
void *dl_imap_del(dl_imap *m, const char *key, size_t klen);
void dl_imap_prefetch(const dl_imap *m, uint64_t h);
void dl_imap_prefetch_val(const dl_imap *m, uint64_t h);
void *dl_imap_next(const dl_imap *m, size_t *i);

#endif

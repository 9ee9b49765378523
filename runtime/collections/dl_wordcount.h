/*
** dl_wordcount.h -- counting the words of text (the kernel behind
** dlua.bag's read_text(...).str:split():flatten():frequencies()).
** A word is a run of bytes that are not ASCII white space (space, \t, \n,
** \v, \f, \r), as Lua's "%S+" in the C locale.  Pure C.
*/
#ifndef dl_wordcount_h
#define dl_wordcount_h

#include <stddef.h>
#include <stdint.h>

/* Words up to this long are kept in their slot (no allocation, and a
   lookup touches one cache line); longer ones are copied, owned by the
   table. */
#define DL_WORDCOUNT_INLINE 16

typedef struct dl_wordcount_slot {
  uint32_t len;     /* 0: empty slot (words are never empty) */
  uint32_t hash;    /* the word's hash (short and long words differ) */
  uint64_t count;
  union {
    char *ptr; /* len > DL_WORDCOUNT_INLINE: owned copy of the word */
    char bytes[DL_WORDCOUNT_INLINE]; /* the word, zero-padded */
  } w;
} dl_wordcount_slot;

/* The bytes of the word in slot s. */
#define DL_WORDCOUNT_WORD(s) \
  ((s)->len > DL_WORDCOUNT_INLINE ? (s)->w.ptr : (s)->w.bytes)

typedef struct dl_wordcount {
  dl_wordcount_slot *slots; /* owned */
  size_t cap;               /* power of two, or 0 */
  size_t count;             /* distinct words */
} dl_wordcount;

void dl_wordcount_init(dl_wordcount *wc);
/* Free the table and its copies of long words. */
void dl_wordcount_free(dl_wordcount *wc);
/*
** Count the words of text[0..len), which is borrowed for the call only (a
** text may be counted in pieces cut between words).  Words longer than
** UINT32_MAX bytes are an error.  Returns 0, DL_ENOMEM (the counts of this
** text may then be partly added) or -1 for a too long word.
*/
int dl_wordcount_add(dl_wordcount *wc, const char *text, size_t len);
/*
** Iterate: start with *i = 0; returns the next used slot, or NULL at the
** end.
*/
const dl_wordcount_slot *dl_wordcount_next(const dl_wordcount *wc,
                                           size_t *i);

#endif

/*
** dl_slab.h -- a block allocator for many small records of one owner (the
** scheduler's tasks and their small arrays).
**
** Blocks of up to DL_SLAB_MAX bytes are cut from 2 MiB chunks of private
** anonymous memory marked for transparent huge pages (MADV_HUGEPAGE), in
** size classes 8 bytes apart; a freed block goes on its class's free list
** and is the next one handed out.  Against malloc a block saves malloc's
** 8-byte header and its 16-byte rounding, and a burst of new records
** touches fresh memory 2 MiB at a time (one page fault where the system
** gives huge pages) instead of 4 KiB at a time: on a VM a 4 KiB fault
** costs 10 to 50 us, so 10,000 new task records paid several ms.
** The first chunk is 64 KiB of ordinary pages, so that a small user
** never pays for clearing a huge page.  Bigger blocks go to dl_realloc.  The caller gives each block's size back
** when it frees it (records know their size), so blocks carry no header.
** Chunks are kept, with their free blocks, until dl_slab_destroy.
** Not thread-safe: one owner, one thread at a time.  Pure C.
** Under AddressSanitizer every block is dl_realloc's (DL_SLAB_PASSTHROUGH
** is 1, no chunk is made), so that the sanitizer still sees each record's
** lifetime: a use after free or an overflow is reported, not hidden in a
** chunk.
*/
#ifndef dl_slab_h
#define dl_slab_h

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define DL_SLAB_PASSTHROUGH 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DL_SLAB_PASSTHROUGH 1
#endif
#endif
#ifndef DL_SLAB_PASSTHROUGH
#define DL_SLAB_PASSTHROUGH 0
#endif

/* Blocks of more bytes than this come from dl_realloc. */
#define DL_SLAB_MAX ((size_t)1024)
/* The size of a chunk after the first (and its alignment). */
#define DL_SLAB_CHUNK ((size_t)2 << 20)

typedef struct dl_slab {
  void *free[DL_SLAB_MAX / 8]; /* per class (8, 16, ... bytes): free blocks */
  char *bump, *end;            /* the newest chunk's unused tail */
  void *chunks;                /* every chunk, linked through its first word */
  size_t nchunks;
  size_t live; /* bytes in blocks handed out and not freed (rounded) */
} dl_slab;

void dl_slab_init(dl_slab *s);

/* A block of n bytes (n > 0), 8-byte aligned and not zeroed; NULL when out
   of memory. */
void *dl_slab_alloc(dl_slab *s, size_t n);

/* Free the block p of n bytes (n as given to dl_slab_alloc; p may be NULL). */
void dl_slab_free(dl_slab *s, void *p, size_t n);

/* Grow or shrink the block p of n bytes to m bytes, keeping the bytes
   both have; NULL when out of memory (then p is unchanged).  p NULL: an
   alloc of m.  [Both sizes must be what the caller allocated.] */
void *dl_slab_realloc(dl_slab *s, void *p, size_t n, size_t m);

/* Unmap every chunk: every block of s is gone.  s can be initialised
   again.  Blocks bigger than DL_SLAB_MAX must be freed by the caller. */
void dl_slab_destroy(dl_slab *s);

#endif

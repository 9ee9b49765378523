/*
** dl_csvframe.h -- typed CSV blocks into columns (pure C).
** A block of CSV bytes becomes one column per field: float64, int64
** and bool columns as dl_nd arrays, strings as codes into a dictionary
** of the distinct strings (built while reading), each with a validity
** byte per row (0: missing).  Strict: a field that does
** not fit its column's type is an error naming file:line:column and the
** type, unless on_error_null turns it into a missing value (counted).
*/
#ifndef DL_CSVFRAME_H
#define DL_CSVFRAME_H

#include <stddef.h>
#include <stdint.h>

#include "dl_nd.h"

enum { DL_FT_F64, DL_FT_I64, DL_FT_BOOL, DL_FT_STR, DL_FT_AUTO };

typedef struct dl_fcol {
  int type;        /* DL_FT_* (never AUTO once read) */
  char *name;
  int64_t n, cap;  /* rows */
  void *vals;      /* double / int64_t / uint8_t per row; STR: int64_t
                      codes, 1..ndict in order of first appearance, 0 for
                      a missing (empty) field */
  dl_nd nd;        /* what holds vals: a 1-d ndarray of cap elements (its
                      buffer can be handed to a Lua ndarray as is; a
                      missing float64 is already NaN in vals) */
  uint8_t *valid;  /* 1 per row: 1 present, 0 missing */
  int64_t nmissing;
  /* STR: the dictionary, code k being bytes[offs[k-1], offs[k]) */
  int64_t *offs;   /* ndict + 1 offsets (offs[0] = 0) */
  char *bytes;
  size_t blen, bcap;
  int64_t ndict, dcap;
  struct dl_fslot *slots; /* its hash table (hcap slots) */
  size_t hcap;
} dl_fcol;

typedef struct dl_ftable {
  int ncol;
  dl_fcol *cols;
  int64_t nrows;
  int64_t nerrors; /* fields turned missing by on_error_null */
} dl_ftable;

typedef struct dl_csvopts {
  char sep;
  int header;            /* first record holds the names */
  int on_error_null;
  const char *file;      /* for messages */
  int64_t line0;         /* line number of the block's first record */
  int ntypes;            /* types by column name (others inferred) */
  const char *const *type_names;
  const int *type_vals;
  int nnames;            /* names when header == 0 (else "1", "2", ...) */
  const char *const *names;
  int ninfer;            /* rows sampled to infer types (0: 1000) */
  int threads;           /* read rows on up to this many threads (0 or 1:
                            the caller's only); a block is cut only where
                            it has no quotes, in chunks of 1 MiB or more */
} dl_csvopts;

/* Parse n bytes at p into *t (zeroed first).  0, or -1 with a message in
   err (errn bytes) and *t freed. */
int dl_csv_frame(const char *p, size_t n, const dl_csvopts *o, dl_ftable *t,
                 char *err, size_t errn);
void dl_ftable_free(dl_ftable *t);
/* Parse the n bytes at s (no NUL needed) as a float64, exactly as strtod
   in the C locale would (the whole field, no leading blanks); a fast
   path handles plain decimals.  1 when it parses. */
int dl_csv_parse_f64(const char *s, size_t n, double *v);
/* Read the block [start, stop) of the file at path (stop < 0: to the
   end) as dataframe.read_csv cuts files: the lines that start inside it
   (a block that starts inside a line begins after it; its last line runs
   past stop to its newline).  *out is malloc'd (the caller frees it),
   *outn bytes.  0, or -1 with a message naming path in err. */
int dl_csv_read_block(const char *path, int64_t start, int64_t stop,
                      char **out, size_t *outn, char *err, size_t errn);
/* A block of a file as dl_csv_map_block gives it: p[0 .. n) are the
   block's lines, mapped from the file (map) or read into owned. */
typedef struct dl_csvblock {
  const char *p;
  size_t n;
  void *map;      /* the mapping (munmap'd by dl_csv_block_free) or NULL */
  size_t maplen;
  char *owned;    /* malloc'd bytes when the file could not be mapped */
} dl_csvblock;
/* The lines of the block [start, stop) of the file at path, as
   dl_csv_read_block cuts it, mapped read-only from the page cache (no copy;
   the pages are read ahead): the file must not shrink while b is in use.
   Falls back to dl_csv_read_block for files that cannot be mapped.  0, or
   -1 with a message naming path in err (nothing to free). */
int dl_csv_map_block(const char *path, int64_t start, int64_t stop,
                     dl_csvblock *b, char *err, size_t errn);
/* Release what dl_csv_map_block holds in b. */
void dl_csv_block_free(dl_csvblock *b);
const char *dl_ft_name(int type);
/* Map the pages of p[0, n) (n of 1 MiB or more; smaller: nothing) for
   writing now, in one call, before they are written: on this kind of VM a
   page fault per 4 KiB of fresh memory costs several times more than the
   kernel populating them in one go.  A hint: failures are ignored. */
void dl_fprefault(void *p, size_t n);

#endif

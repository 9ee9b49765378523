/*
** dl_textread.h -- the lines of a text file for dlua.bag's read_text: a
** block [start, stop) of a plain file split at line boundaries, or a whole
** gzip file (several members too), handed out in pieces of whole lines,
** with a bound on the length of one line.  Pure C (zlib for gzip).
**
** Blocks follow Dask's rule: a line belongs to the block in which it
** starts (a line starts at byte 0 or after a "\n"), and the last line of a
** block is read to its end, past stop.  So the blocks of a file, read one
** by one, give each of its lines exactly once, and a block in which no
** line starts gives nothing.  Finding the first line of a block reads at
** most stop - start bytes, however long the line around start is.
**
** The bound: a line of more than max_line bytes (its "\n" included) is an
** error that names the file, the limit and where the line starts, found
** after reading at most max_line + chunk bytes of it: a 2 GB
** line (or a gzip bomb of one) never reaches memory.
*/
#ifndef dl_textread_h
#define dl_textread_h

#include <stddef.h>
#include <stdint.h>

/* Bytes read (or inflated) at a time unless told. */
#define DL_TEXTREAD_CHUNK ((size_t)1 << 20)
/* The longest message of dl_textread_error, its '\0' included. */
#define DL_TEXTREAD_ERRLEN 512

typedef struct dl_textread dl_textread;

typedef struct dl_textread_opts {
  const char *path;  /* the file; copied (for messages) */
  int64_t start;     /* plain files: the block [start, stop); ignored for */
  int64_t stop;      /*   gzip, which is read whole */
  int gz;            /* 1: a gzip file (RFC 1952), members concatenated */
  size_t max_line;   /* longest line accepted, "\n" included; > 0 */
  size_t chunk;      /* bytes read at a time; 0: DL_TEXTREAD_CHUNK */
} dl_textread_opts;

/*
** Open o->path for reading.  Returns 0 and *out (owned by the caller, freed
** with dl_textread_close), or a negative code with a message in err
** (errlen bytes, DL_TEXTREAD_ERRLEN is enough) naming the file.
*/
int dl_textread_open(dl_textread **out, const dl_textread_opts *o,
                     char *err, size_t errlen);
/*
** The same over the bytes [bytes, bytes + len) instead of a file (o->path
** only names it in messages): for the fuzzer and the C tests.  bytes are
** borrowed until dl_textread_close.
*/
int dl_textread_open_mem(dl_textread **out, const void *bytes, size_t len,
                         const dl_textread_opts *o, char *err,
                         size_t errlen);
/*
** The next piece: one or more whole lines, each ending in "\n" except the
** last line of the input when it has none.  Returns 1 with *data and *len
** (borrowed until the next call or close), 0 at the end, or -1 on error
** (dl_textread_error says which; every later call returns -1 again).
*/
int dl_textread_next(dl_textread *r, const char **data, size_t *len);
/* The message of the last error: "<path>: ...". */
const char *dl_textread_error(const dl_textread *r);
/* Close the file and free r (NULL is fine). */
void dl_textread_close(dl_textread *r);

#endif

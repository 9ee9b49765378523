/*
** dl_zarr.h -- Zarr v2 arrays: the `.zarray` metadata and the bytes of one
** chunk (uncompressed or zlib), for dlua.array's to_zarr / from_zarr.
** Pure C; the metadata is read with cJSON.  The readers take bytes from
** outside: they check every field and length (fuzzed by
** tests/fuzz/fuzz_zarr.c).
*/
#ifndef DL_ZARR_H
#define DL_ZARR_H

#include <stddef.h>
#include <stdint.h>

#include "dl_buf.h"
#include "dl_nd.h"

enum { DL_ZARR_RAW = 0, DL_ZARR_ZLIB = 1, DL_ZARR_BLOSC = 2 };

/* What a `.zarray` says (the parts dlua reads). */
typedef struct dl_zarr_meta {
  int ndim;
  int64_t shape[DL_ND_MAXDIM];
  int64_t chunks[DL_ND_MAXDIM]; /* every chunk's shape (edges padded) */
  dl_dtype dtype;               /* from "<f8", "<f4", "<i8", "|b1" */
  int codec;                    /* DL_ZARR_RAW (compressor null), _ZLIB,
                                   _BLOSC */
  int level;                    /* zlib level or Blosc clevel, 0..9 (-1:
                                   not given: zlib 1, Blosc 5) */
  char cname[16];               /* Blosc: "lz4", "zstd", "blosclz", ... */
  int shuffle;                  /* Blosc: 0 none, 1 bytes, 2 bits, -1 auto
                                   (bits for 1-byte items, else bytes) */
  int64_t blocksize;            /* Blosc: 0 automatic */
  int has_fill;                 /* 0: fill_value null */
  double fill;                  /* fill_value (NaN and infinities too) */
} dl_zarr_meta;

/* Read the `.zarray` JSON text p[n] into *m.  Returns 0, or a negative
   code with a message in err[errlen] naming the field (zarr_format 2,
   C order, no filters and "." separators only).  Never reads past n. */
int dl_zarr_meta_parse(dl_zarr_meta *m, const char *p, size_t n, char *err,
                       size_t errlen);

/* The `.zarray` JSON of m into out (appended). */
int dl_zarr_meta_write(dl_buf *out, const dl_zarr_meta *m);

/* Bytes of one chunk, as in its file, into a new array of m's chunk
   shape.  Returns 0, or a negative code with a message in err (corrupt
   zlib or Blosc data, a wrong length, a bool byte that is not 0 or 1,
   libblosc missing). */
int dl_zarr_chunk_decode(dl_nd *out, const dl_zarr_meta *m, const char *p,
                         size_t n, char *err, size_t errlen);

/* The file bytes of one chunk holding block (its shape at most m's chunk
   shape; an edge block is padded with the fill value), appended to out.
   DL_ND_ENOBLAS when m says Blosc and libblosc cannot be loaded (see
   dl_zarr_blosc_error). */
int dl_zarr_chunk_encode(dl_buf *out, const dl_zarr_meta *m,
                         const dl_nd *block);

/* Check the `.zattrs` text p[n]: a JSON object nested at most
   DL_ZARR_ATTRS_DEPTH deep.  Returns 0, or a negative code with a message
   in err.  Never reads past n. */
#define DL_ZARR_ATTRS_DEPTH 32
int dl_zarr_attrs_check(const char *p, size_t n, char *err, size_t errlen);

/* NULL when libblosc.so.1 is loaded (it is loaded now if it was not),
   else why it cannot be, naming the package. */
const char *dl_zarr_blosc_error(void);

#endif

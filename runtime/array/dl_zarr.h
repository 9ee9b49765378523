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

/* What a `.zarray` says (the parts dlua reads). */
typedef struct dl_zarr_meta {
  int ndim;
  int64_t shape[DL_ND_MAXDIM];
  int64_t chunks[DL_ND_MAXDIM]; /* every chunk's shape (edges padded) */
  dl_dtype dtype;               /* from "<f8", "<f4", "<i8", "|b1" */
  int zlib;                     /* 1: compressor {"id": "zlib"}, 0: null */
  int level;                    /* zlib level, 0..9 (-1: zlib's default) */
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
   zlib data, a wrong length, a bool byte that is not 0 or 1). */
int dl_zarr_chunk_decode(dl_nd *out, const dl_zarr_meta *m, const char *p,
                         size_t n, char *err, size_t errlen);

/* The file bytes of one chunk holding block (its shape at most m's chunk
   shape; an edge block is padded with the fill value), appended to out. */
int dl_zarr_chunk_encode(dl_buf *out, const dl_zarr_meta *m,
                         const dl_nd *block);

#endif

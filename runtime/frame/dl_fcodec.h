/*
** dl_fcodec.h -- a data frame's bytes, for the codec (pure C).  A frame
** passed to a task or returned by one travels in this form inside the
** codec's CUSTOM value "dlua.frame" (runtime/lua/dl_frame_lua.c makes the
** view from Lua values and back).
**
** Layout (integers little-endian; one form per frame, so decoding and
** encoding again gives the same bytes):
**   u8 version (1), u64 nrows, u32 ncol, then per column:
**     u32 name length, name bytes, u8 kind, then
**       kind F64, I64, F32 (8, 8, 4 bytes), BOOL (1 byte, 0 or 1):
**         nrows elements, bit for bit (NaN payloads kept);
**       kind STR: u64 ndict, ndict times (u32 length, bytes), then nrows
**         int64 codes, each 0 (missing) or 1..ndict;
**   u32 ndistinct, then per entry (names in strictly increasing byte
**   order): u32 name length, name bytes, a frame in this layout without
**   the version byte and with ndistinct 0 (a partial aggregation's
**   distinct rows, see frame.lua's nunique); then u8 flags (bit 0: int64
**   nerrors follows, bit 1: u32 ntypes follows, then ntypes times (u32
**   name length, name, u32 type length, type), names strictly increasing:
**   what read_csv noted, its errors turned missing and the types read).
** Column names are unique within a frame; dictionary entries are taken
** as they come (a frame's dictionaries never repeat an entry).
*/
#ifndef DL_FCODEC_H
#define DL_FCODEC_H

#include <stddef.h>
#include <stdint.h>

#include "dl_buf.h"

/* Column kinds: the first four are dl_dtype's values. */
enum { DL_FC_F64 = 0, DL_FC_I64 = 1, DL_FC_BOOL = 2, DL_FC_F32 = 3,
       DL_FC_STR = 4 };

/* One column.  Every pointer is borrowed: from the caller's values when
   encoding, into the decoded bytes when decoding (data is then not
   aligned: copy it out with memcpy). */
typedef struct dl_fccol {
  const char *name;
  size_t namelen;
  int kind;
  const char *data;      /* nrows elements; the int64 codes for STR */
  int64_t ndict;         /* STR: entries in the dictionary */
  const char **dict;     /* STR: entry j at dict[j], dictlen[j] bytes */
  size_t *dictlen;
} dl_fccol;

typedef struct dl_fcframe dl_fcframe;

/* A named frame of distinct rows carried with a partial aggregation. */
typedef struct dl_fcdist {
  const char *name;
  size_t namelen;
  dl_fcframe *frame;
} dl_fcdist;

/* A name and a string value (read_csv's type of a column). */
typedef struct dl_fcpair {
  const char *name;
  size_t namelen;
  const char *val;
  size_t vallen;
} dl_fcpair;

struct dl_fcframe {
  int64_t nrows;
  size_t ncol;
  dl_fccol *cols;
  size_t ndist;
  dl_fcdist *dist;    /* sorted by name when decoded; any order to encode */
  /* the outer frame only: */
  int has_nerrors;
  int64_t nerrors;
  int has_types;
  size_t ntypes;
  dl_fcpair *types;   /* sorted by name when decoded; any order to encode */
};

/* Bytes per element of a non-string kind (0 for STR or a bad kind). */
size_t dl_fc_itemsize(int kind);

/*
** Append f's bytes to out.  The caller guarantees what the decoder checks
** (unique names, codes in 0..ndict, bools 0 or 1); distinct entries are
** written in name order.  Returns 0 or DL_ENOMEM.
*/
int dl_fc_encode(dl_buf *out, const dl_fcframe *f);

/*
** Read the n bytes at p into *f, whose pointers then point into p (p must
** outlive f).  Returns 0, or DL_EPROTO (nothing to free) for bytes that
** are not exactly one frame in the layout above, DL_ENOMEM.  Release a
** decoded frame with dl_fc_free.
*/
int dl_fc_decode(dl_fcframe *f, const char *p, size_t n);

/* Free what dl_fc_decode allocated in f (not the bytes it points into). */
void dl_fc_free(dl_fcframe *f);

#endif

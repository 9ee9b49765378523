/*
** dl_codec_int.h -- the codec's private header: the byte format, and what
** its parts share.  The parts, as Lua splits ldump.c and lundump.c:
**   dl_codec_bc.c     bytecode: the hash it travels under, the chunk reader
**   dl_codec_enc.c    encoder (dl_codec_encode, _oob, _row, _token)
**   dl_codec_path.c   value paths: where a refused value sits
**   dl_codec_names.c  the by-name registry (values reachable by name) and
**                     the registered custom codecs
**   dl_codec_dec.c    decoder (dl_codec_decode)
**
** Message layout: a 9-byte header ("DLC", format version, LUA_VERSION_NUM as
** two little-endian bytes, sizeof(lua_Integer), sizeof(lua_Number), 0), then
** one value.  A value is a tag byte and its payload:
**
**   NIL FALSE TRUE             no payload
**   INT                        zigzag varint
**   FLT                        8 bytes, IEEE-754 bits, little-endian
**   STR                        varint length, bytes
**   TABLE                      u32 narr, u32 nhash, narr values (keys
**                              1..narr), nhash key/value pairs, then u8 0,
**                              or u8 1 and the metatable (a value)
**   REF                        varint n: the n-th table/function/custom
**                              value of this message (1-based)
**   GLOBALS                    the receiver's globals table
**   NAME                       string "mod" or "mod\0field": resolved in
**                              package.loaded (require'd if absent)
**   MTNAME                     string tname: registry[tname]
**   FN                         prototype (u8 kind: P_INLINE + 16-byte hash
**                              + bytecode string | P_HASH + 16-byte hash |
**                              P_REF + varint proto index | P_AT +
**                              varint position in the functions that
**                              travel beside the message: a task's,
**                              dl_fnsink.put_at), u8 nups, then
**                              per upvalue u8 0 + value, or u8 1 + varint
**                              ref of a function + u8 upvalue number to join;
**                              then its globals: per global u8 upvalue
**                              number (of a globals table), string name,
**                              value; then u8 0
**   CUSTOM                     string tname (empty: the tname of the
**                              CUSTOM before it in the message), string
**                              payload
**   ENV                        a new globals table: empty, falling back to
**                              the receiver's globals (one per message)
**   ENV0                       the same, private to one function that
**                              reads no global sent by value
**   SENV                       a function's own _ENV that is not the
**                              sender's globals (a sandbox): a new table
**                              holding only the globals the message's
**                              functions read from it (their globals
**                              sections fill it, as for ENV), then u8 0,
**                              or u8 1 and its metatable (a value)
**
** Tables, Lua functions, custom values and globals tables get reference
** numbers in the order they are first met, by the encoder and the decoder
** alike; that keeps shared values shared and cycles cyclic.  The decoder
** recomputes the hash of bytecode before loading it; it must match.  Both
** directions run under lua_pcall so a Lua error (memory, a bad key)
** becomes an error return, never a longjmp into the caller; scratch C
** memory lives in the state structs and is freed after the pcall returns.
*/
#ifndef dl_codec_int_h
#define dl_codec_int_h

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "dl_codec.h"

#define FORMAT_VERSION 2
#define HEADER_LEN 9
#define MAXDEPTH 200
#define MAXPATH (MAXDEPTH * 2 + 16)

enum {
  T_NIL, T_FALSE, T_TRUE, T_INT, T_FLT, T_STR, T_TABLE, T_REF, T_GLOBALS,
  T_NAME, T_MTNAME, T_FN, T_CUSTOM, T_ENV, T_ENV0,
  T_IDENT, /* identity mode only: never decoded */
  T_SENV
};
enum { P_INLINE, P_HASH, P_REF, P_AT };

/* Registry slots, keyed by the addresses of these bytes (dl_codec_names.c). */
extern const char dl_codec_keys[7];
#define NAMES_KEY (dl_codec_keys[0]) /* {count, index value -> name} */
#define CODECS_KEY (dl_codec_keys[1]) /* tname -> C codec or {enc, dec} */
#define DUMPS_KEY (dl_codec_keys[2]) /* weak: Lua function -> hash..code */
/* {[S_SEEN] = t, [S_UVIDS] = t, [S_PROTOS] = t, busy = bool}: per-message
   tables kept between encodes (and emptied after each) to spare the
   allocator and the collector three tables per message. */
#define SCRATCH_KEY (dl_codec_keys[3])
/* weak values: bytecode hash -> closure, for functions without upvalues
   (other than a private globals table) that can be shared between
   decodes. */
#define LOADED_KEY (dl_codec_keys[4])
/* weak keys: Lua function -> the globals it reads (see fn_globals). */
#define GLOBS_KEY (dl_codec_keys[5])
/* the metatable of decoded globals tables: {__index = the globals} */
#define ENVMT_KEY (dl_codec_keys[6])

/* A C codec pair as stored in the registry. */
typedef struct ccodec {
  dl_ud_encoder enc;
  dl_ud_decoder dec;
} ccodec;


/* The 9-byte header every message starts with (dl_codec_enc.c). */
extern const unsigned char dl_codec_header[HEADER_LEN];

/* ---------------------------------------------------------- bytecode */
/* ------------------------------------------------------------ bytecode */

/*
** A reader of Lua 5.4 binary chunks (lua_dump's format, ldump.c) for two
** jobs.  Before lua_load, the decoder checks that a chunk is whole, that
** every count in it fits in its length (lua_load allocates what they say
** before reading), and that its header's upvalue count is its main
** function's: lua_load trusts it, and the decoder's lua_getupvalue /
** lua_setupvalue on a closure whose counts disagree would read outside it.
** The encoder lists the globals a function reads: GETTABUP with a
** constant string key on an upvalue that leads (through the enclosing
** functions' upvalues) to an upvalue of the function itself.  Neither job
** makes bytecode safe to run: Lua does not verify instructions, so a well
** formed chunk can still crash when called.
*/

#if LUA_VERSION_NUM != 504
#error "the bytecode reader knows the Lua 5.4 chunk format only"
#endif

#define BC_HEADER 31    /* signature, version, format, data, sizes, checks */
#define BC_NEST 200     /* nesting of prototypes, as Lua's parser allows */
#define BC_GETUPVAL 9   /* OP_GETUPVAL, OP_SETUPVAL, OP_GETTABUP in */
#define BC_SETUPVAL 10  /* lopcodes.h (5.4.0 - 5.4.6) */
#define BC_GETTABUP 11
#define BC_NONE 0xff

/* Called for each GETTABUP found (names may repeat); up is the 0-based
   index of the main function's upvalue it reads.  Called with name NULL
   for each GETUPVAL or SETUPVAL of such an upvalue: the table is used as
   a value, not only read by name.  Non-zero stops the walk with an
   error. */
typedef int (*bc_global_fn)(void *ud, int up, const char *name, size_t len);

typedef struct bcr {
  const unsigned char *p, *end;
  int ok;
  bc_global_fn cb; /* NULL: only check */
  void *ud;
  /* The first 256 constants of the function being scanned (a GETTABUP key
     index has 8 bits); reused by every level, as a function's code is
     scanned before its children are read. */
  const unsigned char *kp[256];
  size_t kl[256];
  unsigned char kstr[256];
} bcr;


/* The 128-bit hash bytecode travels under (dl_codec_hash's). */
void dlc_hash128(const char *p, size_t n, unsigned char out[16]);

/*
** Walk the chunk of n bytes at p: 0 if it is whole and consistent (see
** above), calling cb (when not NULL) for each global read.
*/
int dlc_bc_walk(const char *p, size_t n, bc_global_fn cb, void *ud);

/* ----------------------------------------------------------- encoder */
/* ------------------------------------------------------------- encoder */

/* Stack slots of enc_main: 1 the state, 2 the value, 3 the oob anchor
** table (or nil), then these. */
enum {
  S_SEEN = 4, S_UVIDS, S_PROTOS, S_NAMES, S_CODECS, S_DUMPS, S_GLOBS,
  S_GSENT, S_G, S_SENV
};
#define S_LAST S_SENV

enum { SEG_KEY, SEG_KEYOF, SEG_UPVAL, SEG_MT, SEG_GLOBAL };

typedef struct seg {
  int kind;
  int idx;          /* stack index: the key (KEY, KEYOF) or function */
  const char *name; /* upvalue or global name (UPVAL, GLOBAL) */
} seg;

typedef struct enc {
  lua_State *L;
  dl_buf *b;
  const dl_enc_opts *o;
  unsigned have; /* which of the S_* stack slots are filled */
  int nrefs, nprotos, depth, npath;
  dl_buf scratch; /* lua_dump output */
  dl_oob *oob;    /* may be NULL */
  /* The message's globals table (T_ENV): its reference number (0: none
     yet), the offset of its tag, and how many times it was used (a use
     is an upvalue, a join or a global sent into it). */
  int envref, envuses;
  size_t envpos;
  int reuse;      /* the registry's scratch tables are ours */
  int identity;   /* dl_codec_token's second pass: functions and
                     unsendable values by address */
  unsigned used_scratch;
  char *err;
  size_t errlen;
  const char *ltn; /* the last CUSTOM value's tname (ltl bytes), or NULL */
  size_t ltl;
  seg path[MAXPATH]; /* last: not cleared, only path[0, npath) is used */
} enc;

#define TRY(x)              \
  do {                      \
    int rc_ = (x);          \
    if (rc_) return rc_;    \
  } while (0)

/* Value paths (dl_codec_path.c): push a step, and refuse a value naming
   where it sits; refuse returns DL_EINVAL. */
int dlc_push_seg(enc *e, int kind, int idx, const char *name);
int dlc_refuse(enc *e, const char *what, const char *why);

/* Write msg into err (errlen bytes), when err is not NULL. */
void dlc_set_err(char *err, size_t errlen, const char *msg);

/* The by-name registry (dl_codec_names.c). */
/* Push registry[key] (a table), creating it (optionally weak-keyed). */
void dlc_reg_table(lua_State *L, const void *key, int weak);
/* Push the index value -> name, rebuilt when package.loaded changes. */
void dlc_get_names(lua_State *L);

#endif

/*
** dl_codec.h -- Lua values to bytes and back (the only code that knows the
** byte format).  See README "Codec" for what travels and how.
**
** An encoded value starts with a versioned header; decoding checks it and
** never reads outside the input.  Functions travel as bytecode plus their
** upvalues; standard-library values and loaded modules travel by name.
**
** By name: the globals table; every value of package.loaded and the
** string-keyed fields of module tables (of _G only C functions: user
** globals are data); a metatable registered as registry[mt.__name].  The
** reverse index is cached in the registry; to notice new modules cheaply
** the codec gives package.loaded (if it has no metatable) a metatable whose
** __newindex stores the module and drops the index.  The receiver resolves
** a name in its package.loaded, calling require if absent (never in
** data_only mode, which also refuses functions, by name or as bytecode).
** Refusals name the value's path, e.g. "cannot send coroutine at upvalue
** 'co' of function <job.lua:12> (argument 2)".  Nesting is limited to 200
** levels both ways.
**
** Globals: an upvalue holding the sender's globals table (a function's
** _ENV) becomes one globals table per message on the receiver, falling
** back to the receiver's globals; the globals the message's functions read
** (GETTABUP in their bytecode, nested functions included) travel into it
** by value, unless nil or the receiver's own standard value (the base
** library's and host's C functions under their names, the standard
** modules).  Assignments in the receiver stay in that table.  A sandbox
** _ENV (a table other than the globals, used by name only) travels the
** same way: a new table with its metatable, holding only the globals read
** from it.
**
** A full decode loads bytecode, which Lua does not verify: it is as
** powerful as running the sender's code.  Before loading bytecode the
** decoder recomputes its hash and checks the chunk's structure, which
** catches corruption, not malice; decode untrusted bytes with data_only.
*/
#ifndef dl_codec_h
#define dl_codec_h

#include <lua.h>

#include "dl_buf.h"

/*
** A sink for function bytecode.  When an encoder has one, each distinct
** function prototype of a message is offered to put(); if put returns 1 the
** encoder writes only the 16-byte hash (the sink keeps the bytecode, e.g. to
** send it once per worker); 0 means inline the bytecode as usual.
*/
typedef struct dl_fnsink {
  int (*put)(void *ud, const unsigned char hash[16], const char *code,
             size_t len);
  void *ud;
  /* Optional (NULL: put is used): as put, and where it returns 1 it sets
     *at to the function's position in a list that travels beside the
     message (a task's functions); the encoder then writes that position
     instead of the 16-byte hash, and the decoder needs get_at. */
  int (*put_at)(void *ud, const unsigned char hash[16], const char *code,
                size_t len, uint64_t *at);
} dl_fnsink;

/*
** The matching source on the decoding side: get() sets *code and *len to the
** bytecode known under hash (borrowed, valid during the decode) and returns
** 0, or returns non-zero if unknown (the decode then fails cleanly).
*/
typedef struct dl_fnsource {
  int (*get)(void *ud, const unsigned char hash[16], const char **code,
             size_t *len);
  void *ud;
  /* Optional: the function at position at of the list that came beside
     the message (see dl_fnsink.put_at): *hash (16 bytes), *code and *len,
     borrowed as get's; 0, or non-zero if there is none. */
  int (*get_at)(void *ud, uint64_t at, const unsigned char **hash,
                const char **code, size_t *len);
} dl_fnsource;

typedef struct dl_enc_opts {
  int data_only;         /* refuse functions and bytecode */
  const dl_fnsink *fns;  /* may be NULL: bytecode is inlined */
  void *ctx;             /* passed to registered userdata encoders */
  const char *root;      /* name of the value for error paths, e.g.
                            "argument 2"; may be NULL */
} dl_enc_opts;

typedef struct dl_dec_opts {
  int data_only;              /* refuse functions and bytecode */
  const dl_fnsource *fns;     /* may be NULL */
  void *ctx;                  /* passed to registered userdata decoders:
                                 NULL or a dl_codec_lender */
} dl_dec_opts;

/*
** The bytes being decoded, lent: a userdata decoder may keep a view of
** its part of [base, base + len) instead of copying it, after calling
** hold(owner) once; it calls drop(owner) when the view is gone.  The
** bytes are read-only.  (The worker lends its stored inputs, so a big
** ndarray is decoded in place.)
*/
typedef struct dl_codec_lender {
  const char *base;
  size_t len;
  void (*hold)(void *owner);
  void (*drop)(void *owner);
  void *owner;
} dl_codec_lender;

/*
** Custom codecs for userdata (or tables) whose metatable is the one
** registered as tname in the registry (luaL_newmetatable).  The encoder
** appends the value's bytes to out; the decoder pushes exactly one value
** made from the n bytes at p.  Both return 0, or non-zero after writing
** nothing (the codec then reports a clear error naming tname).
*/
typedef int (*dl_ud_encoder)(lua_State *L, int idx, dl_buf *out, void *ctx);
typedef int (*dl_ud_decoder)(lua_State *L, const char *p, size_t n,
                             void *ctx);

/*
** Register a C codec pair for tname in L, replacing any earlier one; enc
** and dec both NULL removes the codec.  [-0, +0, m]
*/
void dl_codec_register(lua_State *L, const char *tname, dl_ud_encoder enc,
                       dl_ud_decoder dec);

/*
** Register Lua functions as the codec for tname: enc (at stack index ei)
** is called as enc(v) and returns a string; dec (at di) as dec(s) and
** returns the value.  [-0, +0, m]
*/
void dl_codec_register_lua(lua_State *L, const char *tname, int ei, int di);

/*
** Append the encoding of the value at idx to out.  Returns 0, or a negative
** code with a message in err (errlen bytes) that names where the offending
** value sits.  Never raises; out may hold a partial message on failure.
** [-0, +0, -]
*/
int dl_codec_encode(lua_State *L, int idx, dl_buf *out, const dl_enc_opts *o,
                    char *err, size_t errlen);

/*
** Append the bytes that stand for the content of the value at idx, for a
** key hash (lua/dlua/keys.lua): its encoding when it can be sent; else
** (something in it cannot be sent: a coroutine, a userdata without codec)
** the encoding with every function not reachable by name and every value
** that cannot be sent written as its address, so they count by identity
** and tables by content.  These bytes do not decode.  Fails as
** dl_codec_encode only for nesting too deep or out of memory.  [-0, +0, -]
*/
int dl_codec_token(lua_State *L, int idx, dl_buf *out, char *err,
                   size_t errlen);

/*
** Decode the n bytes at p and push the value.  Returns 0 (one value pushed)
** or a negative code with a message in err (nothing pushed).  Never raises,
** never reads outside [p, p+n).  [-0, +(0|1), -]
*/
int dl_codec_decode(lua_State *L, const char *p, size_t n,
                    const dl_dec_opts *o, char *err, size_t errlen);

/*
** Out-of-band strings.  dl_codec_encode_oob encodes like dl_codec_encode,
** except that strings of at least oob->min bytes are not copied into out:
** the encoder writes their tag and length into out and appends a segment
** {at, p, n} to oob->segs.  The message is out's bytes with each segment's
** n bytes at p inserted at offset at (segments come in increasing at), so a
** writer can send it with writev and no copy.  p is borrowed from the Lua
** string: valid while that string is alive (keep the encoded value reachable
** until the message is written).  If oob->anchor is the stack index of a
** table, the i-th segment's string is also stored at anchor[i] (1-based).
** The decoder takes the assembled, contiguous message as usual.  Initialise
** with min and anchor set and the rest zero; segs is allocated with
** dl_realloc and released by dl_oob_free; a later encode appends.
*/
typedef struct dl_oob_seg {
  size_t at;     /* offset in out where the bytes belong */
  const char *p; /* borrowed */
  size_t n;
} dl_oob_seg;

typedef struct dl_oob {
  size_t min;       /* strings of at least this many bytes go out of band */
  int anchor;       /* stack index of a table for the strings, or 0 */
  dl_oob_seg *segs; /* owned */
  size_t nsegs, cap;
} dl_oob;

/* As dl_codec_encode, with out-of-band strings (see above).  [-0, +0, -] */
int dl_codec_encode_oob(lua_State *L, int idx, dl_buf *out,
                        const dl_enc_opts *o, dl_oob *oob, char *err,
                        size_t errlen);

/*
** Rows: many tables that differ only in an array of plain values, such as
** the task payloads {f = fn, n = 1, x} of one map call.  Encode the common
** part once, as a table with no array part, with dl_codec_encode (the
** shape); dl_codec_encode_row then appends what dl_codec_encode would give
** of that table with the n values at stack indices first .. first + n - 1
** as its [1] .. [n].  Returns 0; 1 if one of the values is not nil, a
** boolean, a number or a string (nothing written: encode the whole table
** instead); DL_EINVAL if shape is not a table without array part;
** DL_ENOMEM.  Never raises.  [-0, +0, -]
*/
int dl_codec_encode_row(lua_State *L, const char *shape, size_t slen,
                        int first, int n, dl_buf *out);

/*
** The 16-byte hash under which function bytecode travels (non-
** cryptographic: it tells bytecode apart and catches corruption in
** transit, it does not authenticate).  The decoder recomputes it for all
** bytecode it loads and refuses a mismatch.
*/
void dl_codec_hash(const char *p, size_t n, unsigned char out[16]);

/* Free the segments of oob and empty it (min and anchor are kept). */
void dl_oob_free(dl_oob *oob);

#endif

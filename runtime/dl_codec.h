/*
** dl_codec.h -- Lua values to bytes and back (the only code that knows the
** byte format).  See README "Codec" for what travels and how.
**
** An encoded value starts with a versioned header; decoding checks it and
** never reads outside the input.  Functions travel as bytecode plus their
** upvalues; standard-library values and loaded modules travel by name.
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
} dl_fnsink;

/*
** The matching source on the decoding side: get() sets *code/*len to the
** bytecode known under hash (borrowed, valid during the decode) and returns
** 0, or returns non-zero if unknown (the decode then fails cleanly).
*/
typedef struct dl_fnsource {
  int (*get)(void *ud, const unsigned char hash[16], const char **code,
             size_t *len);
  void *ud;
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
  void *ctx;                  /* passed to registered userdata decoders */
} dl_dec_opts;

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

/* Register a C codec pair for tname in L.  [-0, +0, m] */
void dl_codec_register(lua_State *L, const char *tname, dl_ud_encoder enc,
                       dl_ud_decoder dec);

/*
** Append the encoding of the value at idx to out.  Returns 0, or a negative
** code with a message in err (errlen bytes) that names where the offending
** value sits.  Never raises; out may hold a partial message on failure.
** [-0, +0, -]
*/
int dl_codec_encode(lua_State *L, int idx, dl_buf *out, const dl_enc_opts *o,
                    char *err, size_t errlen);

/*
** Decode the n bytes at p and push the value.  Returns 0 (one value pushed)
** or a negative code with a message in err (nothing pushed).  Never raises,
** never reads outside [p, p+n).  [-0, +(0|1), -]
*/
int dl_codec_decode(lua_State *L, const char *p, size_t n,
                    const dl_dec_opts *o, char *err, size_t errlen);

#endif

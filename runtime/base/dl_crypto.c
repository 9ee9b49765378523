/*
** dl_crypto.c -- libcrypto's table of functions (see dl_crypto.h).
*/

#include "dl_crypto.h"

dl_crypto_fns dl_crypto_fn;

static const char *const names[] = {
#define DL_CRYPTO_NAME(n) #n,
  DL_CRYPTO_FUNCS(DL_CRYPTO_NAME)
#undef DL_CRYPTO_NAME
  NULL};

dl_dynlib dl_crypto_lib = {"libcrypto.so.3", "libssl3", names,
                           (void **)&dl_crypto_fn, 0, ""};

int dl_crypto_load(char *err, size_t errlen) {
  return dl_dynlib_load_err(&dl_crypto_lib, err, errlen);
}

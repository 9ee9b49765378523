/*
** dl_crypto.h -- OpenSSL's libcrypto, opened on first use (dl_dynlib.h).
**
** Only the TCP handshake (wire/dl_auth.c) and the Jupyter kernel's message
** signatures (kernel/dl_jmsg.c) need it, so a local cluster's processes
** never load it.  Include this header instead of OpenSSL's: the functions
** below keep their names and prototypes, and each call goes through a
** pointer that the first call fills (a process without libcrypto ends
** there with a message naming the package).  Code that wants to report
** the failure itself calls dl_crypto_load first.
*/
#ifndef dl_crypto_h
#define dl_crypto_h

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "dl_dynlib.h"

/* Every libcrypto function dlua calls. */
#define DL_CRYPTO_FUNCS(X)                                                   \
  X(RAND_bytes) X(HMAC) X(EVP_sha256) X(CRYPTO_memcmp) X(OPENSSL_cleanse)    \
  X(EVP_MAC_fetch) X(EVP_MAC_CTX_new) X(EVP_MAC_CTX_free) X(EVP_MAC_init)    \
  X(EVP_MAC_update) X(EVP_MAC_final) X(OSSL_PARAM_construct_utf8_string)     \
  X(OSSL_PARAM_construct_end)

typedef struct dl_crypto_fns {
#define DL_CRYPTO_SLOT(n) __typeof__(&n) p_##n;
  DL_CRYPTO_FUNCS(DL_CRYPTO_SLOT)
#undef DL_CRYPTO_SLOT
} dl_crypto_fns;

extern dl_crypto_fns dl_crypto_fn;
extern dl_dynlib dl_crypto_lib;

/* Load libcrypto now: 0, or -1 with the reason in err. */
int dl_crypto_load(char *err, size_t errlen);

static inline dl_crypto_fns *dl_crypto_(void) {
  dl_dynlib_need(&dl_crypto_lib);
  return &dl_crypto_fn;
}

#define RAND_bytes (dl_crypto_()->p_RAND_bytes)
#define HMAC (dl_crypto_()->p_HMAC)
#define EVP_sha256 (dl_crypto_()->p_EVP_sha256)
#define CRYPTO_memcmp (dl_crypto_()->p_CRYPTO_memcmp)
#define OPENSSL_cleanse (dl_crypto_()->p_OPENSSL_cleanse)
#define EVP_MAC_fetch (dl_crypto_()->p_EVP_MAC_fetch)
#define EVP_MAC_CTX_new (dl_crypto_()->p_EVP_MAC_CTX_new)
#define EVP_MAC_CTX_free (dl_crypto_()->p_EVP_MAC_CTX_free)
#define EVP_MAC_init (dl_crypto_()->p_EVP_MAC_init)
#define EVP_MAC_update (dl_crypto_()->p_EVP_MAC_update)
#define EVP_MAC_final (dl_crypto_()->p_EVP_MAC_final)
#define OSSL_PARAM_construct_utf8_string \
  (dl_crypto_()->p_OSSL_PARAM_construct_utf8_string)
#define OSSL_PARAM_construct_end (dl_crypto_()->p_OSSL_PARAM_construct_end)

#endif

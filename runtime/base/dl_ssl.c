/*
** dl_ssl.c -- libssl's table of functions and libcrypto's extra one (see
** dl_ssl.h).
*/

#include "dl_ssl.h"

dl_ssl_fns dl_ssl_fn;
dl_x509_fns dl_x509_fn;

static const char *const ssl_names[] = {
#define DL_SSL_NAME(n) #n,
  DL_SSL_FUNCS(DL_SSL_NAME)
#undef DL_SSL_NAME
  NULL};

static const char *const x509_names[] = {
#define DL_X509_NAME(n) #n,
  DL_X509_FUNCS(DL_X509_NAME)
#undef DL_X509_NAME
  NULL};

dl_dynlib dl_ssl_lib = {"libssl.so.3", "libssl3", ssl_names,
                        (void **)&dl_ssl_fn, 0, ""};
dl_dynlib dl_x509_lib = {"libcrypto.so.3", "libssl3", x509_names,
                         (void **)&dl_x509_fn, 0, ""};

int dl_ssl_load(char *err, size_t errlen) {
  if (dl_dynlib_load_err(&dl_x509_lib, err, errlen) != 0 ||
      dl_dynlib_load_err(&dl_ssl_lib, err, errlen) != 0)
    return -1;
  return dl_crypto_load(err, errlen);
}

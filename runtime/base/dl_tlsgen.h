/*
** dl_tlsgen.h -- a private CA and a certificate for a cluster's TLS, as
** `dlua tls-gen DIR` makes them (see dl_tlsgen.c).  Pure C.
*/
#ifndef dl_tlsgen_h
#define dl_tlsgen_h

#include <stddef.h>

/* Make DIR (mode 0700 when new) with ca.pem, cert.pem and key.pem (mode
   0600); existing files are never overwritten.  0, or -1 with one line in
   err. */
int dl_tlsgen(const char *dir, char *err, size_t errlen);

#endif

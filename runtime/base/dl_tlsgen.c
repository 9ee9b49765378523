/*
** dl_tlsgen.c -- what `dlua tls-gen DIR` makes: a private CA and one certificate it
** signed, for a cluster's mutual TLS (wire/dl_tls.h), made with OpenSSL's
** C API (EVP for the keys, X509 for the certificates; no `openssl`
** command run).
**
** DIR gets ca.pem (the CA's certificate), cert.pem (the certificate every
** scheduler, worker and client of the cluster presents) and key.pem (its
** key, mode 0600).  The CA's key is not kept: nobody can sign another
** certificate the cluster would accept, so copying DIR is how a machine
** joins.  Keys are EC P-256; the certificates are good for 5 years.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dl_ssl.h"
#include "dl_tlsgen.h"

#define YEARS5 (5L * 365 * 24 * 3600)

static void why(char *out, size_t n) {
  unsigned long e, last = 0;
  while ((e = ERR_get_error()) != 0) last = e;
  if (last) ERR_error_string_n(last, out, n);
  else snprintf(out, n, "no reason given");
}

/* One X509v3 extension on x, issued by ca (x itself for the CA). */
static int add_ext(X509 *x, X509 *ca, int nid, const char *value) {
  X509V3_CTX ctx;
  X509_EXTENSION *e;
  int ok;
  X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
  if ((e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL) return 0;
  ok = X509_add_ext(x, e, -1);
  X509_EXTENSION_free(e);
  return ok;
}

/* A certificate for key, named cn, signed by ca_key (as ca, or itself
   when ca is NULL). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *ca,
                       EVP_PKEY *ca_key) {
  X509 *x = X509_new();
  unsigned char r[4];
  long serial;
  X509_NAME *name;
  if (x == NULL || getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) goto bad;
  serial = (long)(((unsigned long)r[0] << 24 | (unsigned long)r[1] << 16 |
                   (unsigned long)r[2] << 8 | r[3]) & 0x7fffffff) | 1;
  name = X509_get_subject_name(x);
  if (!X509_set_version(x, 2) ||
      !ASN1_INTEGER_set(X509_get_serialNumber(x), serial) ||
      !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
      !X509_gmtime_adj(X509_getm_notAfter(x), YEARS5) ||
      !X509_set_pubkey(x, key) ||
      !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                  (const unsigned char *)"dlua", -1, -1, 0) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                  (const unsigned char *)cn, -1, -1, 0) ||
      !X509_set_issuer_name(x, X509_get_subject_name(ca ? ca : x)))
    goto bad;
  if (ca == NULL) {
    if (!add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") ||
        !add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !add_ext(x, x, NID_subject_key_identifier, "hash"))
      goto bad;
  } else {
    if (!add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(x, ca, NID_key_usage, "critical,digitalSignature") ||
        !add_ext(x, ca, NID_ext_key_usage, "serverAuth,clientAuth") ||
        !add_ext(x, ca, NID_authority_key_identifier, "keyid"))
      goto bad;
  }
  if (X509_sign(x, ca_key, EVP_sha256()) <= 0) goto bad;
  return x;
bad:
  if (x) X509_free(x);
  return NULL;
}

/* Write a new file dir/name with mode (never over an existing one). */
static FILE *new_file(const char *dir, const char *name, int mode,
                      char *path, size_t n) {
  int fd;
  FILE *f;
  snprintf(path, n, "%s/%s", dir, name);
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return NULL;
  fchmod(fd, (mode_t)mode);
  if ((f = fdopen(fd, "w")) == NULL) close(fd);
  return f;
}

int dl_tlsgen(const char *dir, char *err, size_t errlen) {
  static const char *const names[] = {"ca.pem", "cert.pem", "key.pem"};
  char path[3][4200], reason[256];
  EVP_PKEY *ca_key = NULL, *key = NULL;
  X509 *ca = NULL, *cert = NULL;
  FILE *f[3] = {NULL, NULL, NULL};
  struct stat st;
  int i, rc = -1, made = 0;
  if (dl_ssl_load(err, errlen) != 0) return -1;
  if (strlen(dir) > 4000) {
    snprintf(err, errlen, "directory name too long");
    return -1;
  }
  if (stat(dir, &st) != 0) {
    if (mkdir(dir, 0700) != 0) {
      snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
      return -1;
    }
  } else if (!S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s exists and is not a directory", dir);
    return -1;
  }
  for (i = 0; i < 3; i++) {
    snprintf(path[i], sizeof path[i], "%s/%s", dir, names[i]);
    if (access(path[i], F_OK) == 0) {
      snprintf(err, errlen, "%s already exists (tls-gen never overwrites; "
               "remove it or pick another directory)", path[i]);
      return -1;
    }
  }
  ERR_clear_error();
  ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  if (ca_key == NULL || key == NULL) {
    why(reason, sizeof reason);
    snprintf(err, errlen, "cannot make a key: %s", reason);
    goto out;
  }
  if ((ca = make_cert(ca_key, "dlua cluster CA", NULL, ca_key)) == NULL ||
      (cert = make_cert(key, "dlua cluster member", ca, ca_key)) == NULL) {
    why(reason, sizeof reason);
    snprintf(err, errlen, "cannot make a certificate: %s", reason);
    goto out;
  }
  for (i = 0; i < 3; i++) {
    f[i] = new_file(dir, names[i], i == 2 ? 0600 : 0644, path[i],
                    sizeof path[i]);
    if (f[i] == NULL) {
      snprintf(err, errlen, "cannot create %s: %s", path[i], strerror(errno));
      goto out;
    }
    made = i + 1;
  }
  if (!PEM_write_X509(f[0], ca) || !PEM_write_X509(f[1], cert) ||
      !PEM_write_PrivateKey(f[2], key, NULL, NULL, 0, NULL, NULL)) {
    why(reason, sizeof reason);
    snprintf(err, errlen, "cannot write the files: %s", reason);
    goto out;
  }
  rc = 0;
out:
  for (i = 0; i < 3; i++)
    if (f[i] && fclose(f[i]) != 0 && rc == 0) {
      snprintf(err, errlen, "cannot write %s: %s", path[i], strerror(errno));
      rc = -1;
    }
  if (rc != 0)
    for (i = 0; i < made; i++) unlink(path[i]);
  if (ca) X509_free(ca);
  if (cert) X509_free(cert);
  if (ca_key) EVP_PKEY_free(ca_key);
  if (key) EVP_PKEY_free(key);
  return rc;
}

/*
** dl_ssl.h -- OpenSSL's libssl (TLS) and the parts of libcrypto that TLS
** and certificate making use (BIO, ERR, X509, PEM), opened on first use
** like dl_crypto.h: only a TCP cluster with --tls-dir and `dlua tls-gen`
** load them.  Include this header instead of OpenSSL's; the functions keep
** their names and prototypes, and each call goes through a pointer that
** the first call fills.  Code that wants to report a missing library
** itself calls dl_ssl_load first.
*/
#ifndef dl_ssl_h
#define dl_ssl_h

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "dl_crypto.h"
#include "dl_dynlib.h"

/* The libssl functions dlua calls. */
#define DL_SSL_FUNCS(X)                                                      \
  X(TLS_method) X(SSL_CTX_new) X(SSL_CTX_free)                               \
  X(SSL_CTX_use_certificate_chain_file) X(SSL_CTX_use_PrivateKey_file)       \
  X(SSL_CTX_check_private_key) X(SSL_CTX_load_verify_locations)              \
  X(SSL_CTX_set_verify) X(SSL_CTX_ctrl) X(SSL_CTX_set_num_tickets)           \
  X(SSL_new) X(SSL_free) X(SSL_set_bio) X(SSL_set_accept_state)              \
  X(SSL_set_connect_state) X(SSL_do_handshake) X(SSL_read) X(SSL_write)      \
  X(SSL_get_error) X(SSL_get_verify_result) X(SSL_shutdown)             \
  X(SSL_CTX_set_ciphersuites) X(SSL_pending) X(SSL_has_pending)           \
  X(SSL_CTX_set_keylog_callback) X(SSL_get_rbio) X(SSL_is_server)          \
  X(SSL_get_current_cipher) X(SSL_CIPHER_get_protocol_id)

/* The libcrypto functions beyond dl_crypto.h's that TLS and tls-gen use. */
#define DL_X509_FUNCS(X)                                                     \
  X(BIO_new) X(BIO_free) X(BIO_s_mem) X(BIO_read) X(BIO_write) X(BIO_ctrl)               \
  X(BIO_ctrl_pending) X(BIO_meth_new) X(BIO_meth_set_write)                  \
  X(BIO_meth_set_read) X(BIO_meth_set_ctrl) X(BIO_get_new_index)            \
  X(BIO_set_data) X(BIO_get_data) X(BIO_set_init) X(BIO_set_flags)           \
  X(BIO_clear_flags) X(ERR_get_error) X(ERR_error_string_n)                 \
  X(ERR_clear_error) X(X509_verify_cert_error_string) X(EVP_PKEY_Q_keygen)   \
  X(EVP_PKEY_free) X(X509_new) X(X509_free) X(X509_set_version)              \
  X(X509_get_serialNumber) X(ASN1_INTEGER_set) X(X509_gmtime_adj)            \
  X(X509_getm_notBefore) X(X509_getm_notAfter) X(X509_set_pubkey)            \
  X(X509_get_subject_name) X(X509_NAME_add_entry_by_txt)                     \
  X(X509_set_issuer_name) X(X509_sign) X(X509V3_set_ctx)                     \
  X(X509V3_EXT_conf_nid) X(X509_add_ext) X(X509_EXTENSION_free)              \
  X(PEM_write_X509) X(PEM_write_PrivateKey) X(EVP_aes_128_gcm)              \
  X(EVP_CIPHER_CTX_new) X(EVP_CIPHER_CTX_free) X(EVP_CIPHER_CTX_ctrl)        \
  X(EVP_EncryptInit_ex) X(EVP_EncryptUpdate) X(EVP_EncryptFinal_ex)          \
  X(EVP_DecryptInit_ex) X(EVP_DecryptUpdate) X(EVP_DecryptFinal_ex)          \
  X(EVP_KDF_fetch) X(EVP_KDF_free) X(EVP_KDF_CTX_new) X(EVP_KDF_CTX_free)    \
  X(EVP_KDF_derive) X(OSSL_PARAM_construct_int)                              \
  X(OSSL_PARAM_construct_octet_string)

typedef struct dl_ssl_fns {
#define DL_SSL_SLOT(n) __typeof__(&n) p_##n;
  DL_SSL_FUNCS(DL_SSL_SLOT)
#undef DL_SSL_SLOT
} dl_ssl_fns;

typedef struct dl_x509_fns {
#define DL_X509_SLOT(n) __typeof__(&n) p_##n;
  DL_X509_FUNCS(DL_X509_SLOT)
#undef DL_X509_SLOT
} dl_x509_fns;

extern dl_ssl_fns dl_ssl_fn;
extern dl_x509_fns dl_x509_fn;
extern dl_dynlib dl_ssl_lib, dl_x509_lib;

/* Load libssl and libcrypto now: 0, or -1 with the reason in err. */
int dl_ssl_load(char *err, size_t errlen);

static inline dl_ssl_fns *dl_ssl_(void) {
  dl_dynlib_need(&dl_ssl_lib);
  return &dl_ssl_fn;
}

static inline dl_x509_fns *dl_x509_(void) {
  dl_dynlib_need(&dl_x509_lib);
  return &dl_x509_fn;
}

#define TLS_method (dl_ssl_()->p_TLS_method)
#define SSL_CTX_new (dl_ssl_()->p_SSL_CTX_new)
#define SSL_CTX_free (dl_ssl_()->p_SSL_CTX_free)
#define SSL_CTX_use_certificate_chain_file \
  (dl_ssl_()->p_SSL_CTX_use_certificate_chain_file)
#define SSL_CTX_use_PrivateKey_file (dl_ssl_()->p_SSL_CTX_use_PrivateKey_file)
#define SSL_CTX_check_private_key (dl_ssl_()->p_SSL_CTX_check_private_key)
#define SSL_CTX_load_verify_locations \
  (dl_ssl_()->p_SSL_CTX_load_verify_locations)
#define SSL_CTX_set_verify (dl_ssl_()->p_SSL_CTX_set_verify)
#define SSL_CTX_ctrl (dl_ssl_()->p_SSL_CTX_ctrl)
#define SSL_CTX_set_num_tickets (dl_ssl_()->p_SSL_CTX_set_num_tickets)
#define SSL_new (dl_ssl_()->p_SSL_new)
#define SSL_free (dl_ssl_()->p_SSL_free)
#define SSL_set_bio (dl_ssl_()->p_SSL_set_bio)
#define SSL_set_accept_state (dl_ssl_()->p_SSL_set_accept_state)
#define SSL_set_connect_state (dl_ssl_()->p_SSL_set_connect_state)
#define SSL_do_handshake (dl_ssl_()->p_SSL_do_handshake)
#define SSL_read (dl_ssl_()->p_SSL_read)
#define SSL_write (dl_ssl_()->p_SSL_write)
#define SSL_get_error (dl_ssl_()->p_SSL_get_error)
#define SSL_get_verify_result (dl_ssl_()->p_SSL_get_verify_result)
#define SSL_shutdown (dl_ssl_()->p_SSL_shutdown)
#define SSL_CTX_set_ciphersuites (dl_ssl_()->p_SSL_CTX_set_ciphersuites)
#define SSL_pending (dl_ssl_()->p_SSL_pending)
#define SSL_has_pending (dl_ssl_()->p_SSL_has_pending)
#define SSL_CTX_set_keylog_callback (dl_ssl_()->p_SSL_CTX_set_keylog_callback)
#define SSL_get_rbio (dl_ssl_()->p_SSL_get_rbio)
#define SSL_is_server (dl_ssl_()->p_SSL_is_server)
#define SSL_get_current_cipher (dl_ssl_()->p_SSL_get_current_cipher)
#define SSL_CIPHER_get_protocol_id (dl_ssl_()->p_SSL_CIPHER_get_protocol_id)

#define BIO_new (dl_x509_()->p_BIO_new)
#define BIO_free (dl_x509_()->p_BIO_free)
#define BIO_s_mem (dl_x509_()->p_BIO_s_mem)
#define BIO_read (dl_x509_()->p_BIO_read)
#define BIO_write (dl_x509_()->p_BIO_write)
#define BIO_ctrl (dl_x509_()->p_BIO_ctrl)
#define BIO_ctrl_pending (dl_x509_()->p_BIO_ctrl_pending)
#define BIO_meth_new (dl_x509_()->p_BIO_meth_new)
#define BIO_meth_set_write (dl_x509_()->p_BIO_meth_set_write)
#define BIO_meth_set_read (dl_x509_()->p_BIO_meth_set_read)
#define BIO_meth_set_ctrl (dl_x509_()->p_BIO_meth_set_ctrl)
#define BIO_get_new_index (dl_x509_()->p_BIO_get_new_index)
#define BIO_set_data (dl_x509_()->p_BIO_set_data)
#define BIO_get_data (dl_x509_()->p_BIO_get_data)
#define BIO_set_init (dl_x509_()->p_BIO_set_init)
#define BIO_set_flags (dl_x509_()->p_BIO_set_flags)
#define BIO_clear_flags (dl_x509_()->p_BIO_clear_flags)
#define ERR_get_error (dl_x509_()->p_ERR_get_error)
#define ERR_error_string_n (dl_x509_()->p_ERR_error_string_n)
#define ERR_clear_error (dl_x509_()->p_ERR_clear_error)
#define X509_verify_cert_error_string \
  (dl_x509_()->p_X509_verify_cert_error_string)
#define EVP_PKEY_Q_keygen (dl_x509_()->p_EVP_PKEY_Q_keygen)
#define EVP_PKEY_free (dl_x509_()->p_EVP_PKEY_free)
#define X509_new (dl_x509_()->p_X509_new)
#define X509_free (dl_x509_()->p_X509_free)
#define X509_set_version (dl_x509_()->p_X509_set_version)
#define X509_get_serialNumber (dl_x509_()->p_X509_get_serialNumber)
#define ASN1_INTEGER_set (dl_x509_()->p_ASN1_INTEGER_set)
#define X509_gmtime_adj (dl_x509_()->p_X509_gmtime_adj)
#define X509_getm_notBefore (dl_x509_()->p_X509_getm_notBefore)
#define X509_getm_notAfter (dl_x509_()->p_X509_getm_notAfter)
#define X509_set_pubkey (dl_x509_()->p_X509_set_pubkey)
#define X509_get_subject_name (dl_x509_()->p_X509_get_subject_name)
#define X509_NAME_add_entry_by_txt (dl_x509_()->p_X509_NAME_add_entry_by_txt)
#define X509_set_issuer_name (dl_x509_()->p_X509_set_issuer_name)
#define X509_sign (dl_x509_()->p_X509_sign)
#define X509V3_set_ctx (dl_x509_()->p_X509V3_set_ctx)
#define X509V3_EXT_conf_nid (dl_x509_()->p_X509V3_EXT_conf_nid)
#define X509_add_ext (dl_x509_()->p_X509_add_ext)
#define X509_EXTENSION_free (dl_x509_()->p_X509_EXTENSION_free)
#define PEM_write_X509 (dl_x509_()->p_PEM_write_X509)
#define PEM_write_PrivateKey (dl_x509_()->p_PEM_write_PrivateKey)
#define EVP_aes_128_gcm (dl_x509_()->p_EVP_aes_128_gcm)
#define EVP_CIPHER_CTX_new (dl_x509_()->p_EVP_CIPHER_CTX_new)
#define EVP_CIPHER_CTX_free (dl_x509_()->p_EVP_CIPHER_CTX_free)
#define EVP_CIPHER_CTX_ctrl (dl_x509_()->p_EVP_CIPHER_CTX_ctrl)
#define EVP_EncryptInit_ex (dl_x509_()->p_EVP_EncryptInit_ex)
#define EVP_EncryptUpdate (dl_x509_()->p_EVP_EncryptUpdate)
#define EVP_EncryptFinal_ex (dl_x509_()->p_EVP_EncryptFinal_ex)
#define EVP_DecryptInit_ex (dl_x509_()->p_EVP_DecryptInit_ex)
#define EVP_DecryptUpdate (dl_x509_()->p_EVP_DecryptUpdate)
#define EVP_DecryptFinal_ex (dl_x509_()->p_EVP_DecryptFinal_ex)
#define EVP_KDF_fetch (dl_x509_()->p_EVP_KDF_fetch)
#define EVP_KDF_free (dl_x509_()->p_EVP_KDF_free)
#define EVP_KDF_CTX_new (dl_x509_()->p_EVP_KDF_CTX_new)
#define EVP_KDF_CTX_free (dl_x509_()->p_EVP_KDF_CTX_free)
#define EVP_KDF_derive (dl_x509_()->p_EVP_KDF_derive)
#define OSSL_PARAM_construct_int (dl_x509_()->p_OSSL_PARAM_construct_int)
#define OSSL_PARAM_construct_octet_string \
  (dl_x509_()->p_OSSL_PARAM_construct_octet_string)

#endif

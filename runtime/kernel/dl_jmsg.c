/*
** dl_jmsg.c -- Jupyter messages and connection files (see dl_jmsg.h).
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <openssl/core_names.h>

#include "dl_crypto.h" /* OpenSSL's functions, opened on first use */

#include "dl_jmsg.h"

#define DELIM "<IDS|MSG>"

static int fail(char *err, size_t errlen, int code, const char *msg) {
  if (errlen > 0)
    snprintf(err, errlen, "%s", msg);
  return code;
}

/* Parse a frame as a JSON object, or return NULL. */
static cJSON *parse_object(const dl_jframe *f) {
  cJSON *j = cJSON_ParseWithLength(f->data, f->len);
  if (j != NULL && !cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return NULL;
  }
  return j;
}

/* HMAC, fetched once for the process (never freed: it lives as long). */
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;
static EVP_MAC *hmac = NULL;

static void hmac_fetch(void) { hmac = EVP_MAC_fetch(NULL, "HMAC", NULL); }

void dl_jmsg_sign(const char *key, size_t keylen, const dl_jframe parts[4],
                  char hex[65]) {
  static const char digits[] = "0123456789abcdef";
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int maclen = 0, i;
  hex[0] = '\0';
  if (keylen == 0)
    return;
  /* OpenSSL 3's EVP_MAC: the parts are fed one by one, not copied.  The
     algorithm is looked up once (a lookup costs more than a short MAC). */
  pthread_once(&hmac_once, hmac_fetch);
  {
    EVP_MAC_CTX *c = hmac != NULL ? EVP_MAC_CTX_new(hmac) : NULL;
    OSSL_PARAM params[2];
    size_t outl = 0;
    int ok = c != NULL;
    params[0] = OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    ok = ok && EVP_MAC_init(c, (const unsigned char *)key, keylen, params);
    for (i = 0; ok && i < 4; i++)
      ok = EVP_MAC_update(c, (const unsigned char *)parts[i].data,
                          parts[i].len);
    ok = ok && EVP_MAC_final(c, mac, &outl, sizeof mac);
    EVP_MAC_CTX_free(c);
    if (!ok)
      return; /* an empty signature never matches a real one */
    maclen = (unsigned int)outl;
  }
  for (i = 0; i < maclen && i < 32; i++) {
    hex[2 * i] = digits[mac[i] >> 4];
    hex[2 * i + 1] = digits[mac[i] & 15];
  }
  hex[2 * i] = '\0';
}

int dl_jmsg_decode(dl_jmsg *m, const dl_jframe *f, int n, const char *key,
                   size_t keylen, char *err, size_t errlen) {
  int d;
  memset(m, 0, sizeof *m);
  for (d = 0; d < n; d++)
    if (f[d].len == sizeof DELIM - 1 &&
        memcmp(f[d].data, DELIM, sizeof DELIM - 1) == 0)
      break;
  if (d == n)
    return fail(err, errlen, DL_JMSG_EMALFORMED, "no <IDS|MSG> delimiter");
  if (n - d - 1 < 5)
    return fail(err, errlen, DL_JMSG_EMALFORMED,
                "fewer than 5 frames after <IDS|MSG>");
  if (keylen > 0) {
    char hex[65];
    dl_jmsg_sign(key, keylen, f + d + 2, hex);
    if (hex[0] == '\0' || f[d + 1].len != 64 ||
        CRYPTO_memcmp(hex, f[d + 1].data, 64) != 0)
      return fail(err, errlen, DL_JMSG_ESIGNATURE, "bad signature");
  }
  m->ids = f;
  m->nids = d;
  m->header_raw = f[d + 2];
  m->header = parse_object(&f[d + 2]);
  m->parent = parse_object(&f[d + 3]);
  m->metadata = parse_object(&f[d + 4]);
  m->content = parse_object(&f[d + 5]);
  if (m->header == NULL || m->parent == NULL || m->metadata == NULL ||
      m->content == NULL) {
    dl_jmsg_free(m);
    return fail(err, errlen, DL_JMSG_EMALFORMED,
                "header, parent, metadata or content is not a JSON object");
  }
  {
    cJSON *t = cJSON_GetObjectItemCaseSensitive(m->header, "msg_type");
    cJSON *id = cJSON_GetObjectItemCaseSensitive(m->header, "msg_id");
    if (!cJSON_IsString(t) || !cJSON_IsString(id)) {
      dl_jmsg_free(m);
      return fail(err, errlen, DL_JMSG_EMALFORMED,
                  "header without a string msg_type and msg_id");
    }
    m->msg_type = t->valuestring;
  }
  return 0;
}

void dl_jmsg_free(dl_jmsg *m) {
  cJSON_Delete(m->header);
  cJSON_Delete(m->parent);
  cJSON_Delete(m->metadata);
  cJSON_Delete(m->content);
  memset(m, 0, sizeof *m);
}

void dl_jmsg_uuid(char out[37]) {
  unsigned char b[16];
  struct timespec ts;
  int i;
  if (RAND_bytes(b, sizeof b) != 1) { /* never expected; stay unique */
    clock_gettime(CLOCK_REALTIME, &ts);
    for (i = 0; i < 16; i++)
      b[i] = (unsigned char)((ts.tv_nsec >> (i % 4 * 8)) ^ rand());
  }
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  snprintf(out, 37,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
           "%02x%02x%02x%02x%02x%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
           b[10], b[11], b[12], b[13], b[14], b[15]);
}

char *dl_jmsg_header(const char *session, const char *msg_type) {
  static unsigned long counter = 0; /* shared by threads: atomic below */
  char id[80], date[48];
  struct timeval tv;
  struct tm tm;
  cJSON *h = cJSON_CreateObject();
  char *text;
  if (h == NULL)
    return NULL;
  /* As ipykernel: the session (a random UUID), then a count, unique. */
  snprintf(id, sizeof id, "%.40s_%lu", session,
           __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  snprintf(date, sizeof date, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec, (long)tv.tv_usec);
  if (cJSON_AddStringToObject(h, "msg_id", id) == NULL ||
      cJSON_AddStringToObject(h, "session", session) == NULL ||
      cJSON_AddStringToObject(h, "username", "kernel") == NULL ||
      cJSON_AddStringToObject(h, "date", date) == NULL ||
      cJSON_AddStringToObject(h, "msg_type", msg_type) == NULL ||
      cJSON_AddStringToObject(h, "version", "5.3") == NULL) {
    cJSON_Delete(h);
    return NULL;
  }
  text = cJSON_PrintUnformatted(h);
  cJSON_Delete(h);
  return text;
}

static const char *const port_names[5] = {"shell_port", "iopub_port",
                                          "stdin_port", "control_port",
                                          "hb_port"};

int dl_jconn_parse(const char *text, size_t len, dl_jconn *c, char *err,
                   size_t errlen) {
  cJSON *j = cJSON_ParseWithLength(text, len);
  cJSON *v;
  char msg[160];
  int i, rc = DL_JMSG_EMALFORMED;
  memset(c, 0, sizeof *c);
  if (j == NULL || !cJSON_IsObject(j)) {
    snprintf(msg, sizeof msg, "not a JSON object");
    goto fail;
  }
  v = cJSON_GetObjectItemCaseSensitive(j, "transport");
  snprintf(c->transport, sizeof c->transport, "%s",
           cJSON_IsString(v) ? v->valuestring : "tcp");
  if (strcmp(c->transport, "tcp") != 0 && strcmp(c->transport, "ipc") != 0) {
    snprintf(msg, sizeof msg, "unknown transport (tcp or ipc)");
    goto fail;
  }
  v = cJSON_GetObjectItemCaseSensitive(j, "ip");
  if (!cJSON_IsString(v) || v->valuestring[0] == '\0' ||
      strlen(v->valuestring) >= sizeof c->ip) {
    snprintf(msg, sizeof msg, "'ip' missing, empty or too long");
    goto fail;
  }
  strcpy(c->ip, v->valuestring);
  for (i = 0; i < 5; i++) {
    v = cJSON_GetObjectItemCaseSensitive(j, port_names[i]);
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 ||
        v->valuedouble > 65535 || v->valuedouble != (int)v->valuedouble) {
      snprintf(msg, sizeof msg, "'%s' missing or not a port number",
               port_names[i]);
      goto fail;
    }
    c->ports[i] = (int)v->valuedouble;
  }
  v = cJSON_GetObjectItemCaseSensitive(j, "key");
  if (v != NULL && !cJSON_IsString(v)) {
    snprintf(msg, sizeof msg, "'key' is not a string");
    goto fail;
  }
  if (v != NULL) {
    c->keylen = strlen(v->valuestring);
    if (c->keylen >= sizeof c->key) {
      snprintf(msg, sizeof msg, "'key' too long");
      goto fail;
    }
    memcpy(c->key, v->valuestring, c->keylen + 1);
  }
  v = cJSON_GetObjectItemCaseSensitive(j, "signature_scheme");
  if (c->keylen > 0 && v != NULL &&
      (!cJSON_IsString(v) || strcmp(v->valuestring, "hmac-sha256") != 0)) {
    snprintf(msg, sizeof msg, "unknown signature_scheme (hmac-sha256 only)");
    goto fail;
  }
  rc = 0;
fail:
  cJSON_Delete(j);
  if (rc != 0)
    fail(err, errlen, rc, msg);
  return rc;
}

int dl_jconn_endpoint(const dl_jconn *c, int ch, char *out, size_t outlen) {
  int n;
  if (ch < 0 || ch > 4)
    return -1;
  if (strcmp(c->transport, "ipc") == 0)
    n = snprintf(out, outlen, "ipc://%s-%d", c->ip, c->ports[ch]);
  else
    n = snprintf(out, outlen, "tcp://%s:%d", c->ip, c->ports[ch]);
  return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/*
** jmsg_driver.h -- one input for the Jupyter message decoder (dl_jmsg.c),
** shared by the libFuzzer target (fuzz_jmsg.c) and the replay of its saved
** inputs in tests/c/test_kernel.c.
**
** Input: the first byte picks what is decoded.  Odd: the rest is a
** connection file (dl_jconn_parse).  Even: the rest is a list of frames,
** each a length byte and that many bytes, decoded as a message with the
** key JMSG_KEY and again unsigned.  Whatever is accepted must hold
** together (a JSON object in each part, a msg_type, a signature that
** signing reproduces); anything else must be refused without a crash.
*/
#ifndef jmsg_driver_h
#define jmsg_driver_h

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dl_jmsg.h"

#define JMSG_KEY "fuzz-key-0123"
#define JMSG_MAXFRAMES 64

#define JMSG_REQUIRE(c) do { if (!(c)) abort(); } while (0)

static void jmsg_check(const dl_jmsg *m, const dl_jframe *f, int n,
                       int keyed) {
  JMSG_REQUIRE(m->msg_type != NULL);
  JMSG_REQUIRE(cJSON_IsObject(m->header) && cJSON_IsObject(m->parent) &&
               cJSON_IsObject(m->metadata) && cJSON_IsObject(m->content));
  JMSG_REQUIRE(m->nids >= 0 && m->nids + 6 <= n);
  JMSG_REQUIRE(m->header_raw.data == f[m->nids + 2].data);
  if (keyed) {
    char hex[65];
    dl_jmsg_sign(JMSG_KEY, strlen(JMSG_KEY), f + m->nids + 2, hex);
    JMSG_REQUIRE(f[m->nids + 1].len == 64 &&
                 memcmp(hex, f[m->nids + 1].data, 64) == 0);
  }
}

static inline void jmsg_one(const unsigned char *data, size_t len,
                            void *ud) {
  dl_jframe f[JMSG_MAXFRAMES];
  dl_jmsg m;
  char err[160];
  size_t i;
  int n = 0, rc;
  (void)ud;
  if (len == 0)
    return;
  if (data[0] & 1) {
    dl_jconn c;
    if (dl_jconn_parse((const char *)data + 1, len - 1, &c, err,
                       sizeof err) == 0) {
      char ep[300];
      int ch;
      for (ch = 0; ch < 5; ch++) {
        JMSG_REQUIRE(c.ports[ch] >= 1 && c.ports[ch] <= 65535);
        JMSG_REQUIRE(dl_jconn_endpoint(&c, ch, ep, sizeof ep) == 0);
      }
      JMSG_REQUIRE(c.keylen == strlen(c.key));
    } else {
      JMSG_REQUIRE(err[0] != '\0');
    }
    return;
  }
  for (i = 1; i < len && n < JMSG_MAXFRAMES;) {
    size_t fl = data[i++];
    if (fl > len - i)
      fl = len - i;
    f[n].data = (const char *)data + i;
    f[n].len = fl;
    n++;
    i += fl;
  }
  rc = dl_jmsg_decode(&m, f, n, JMSG_KEY, strlen(JMSG_KEY), err, sizeof err);
  if (rc == 0) {
    jmsg_check(&m, f, n, 1);
    dl_jmsg_free(&m);
  } else {
    JMSG_REQUIRE(rc == DL_JMSG_EMALFORMED || rc == DL_JMSG_ESIGNATURE);
    JMSG_REQUIRE(err[0] != '\0');
  }
  rc = dl_jmsg_decode(&m, f, n, NULL, 0, err, sizeof err);
  if (rc == 0) {
    jmsg_check(&m, f, n, 0);
    dl_jmsg_free(&m);
  } else {
    JMSG_REQUIRE(rc == DL_JMSG_EMALFORMED);
  }
}

#endif

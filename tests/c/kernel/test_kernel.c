/*
** test_kernel.c -- the Jupyter kernel's wire format (runtime/kernel/
** dl_jmsg.c): signatures as Jupyter computes them, messages accepted and
** refused, connection files; then every input the fuzzer saved
** (tests/fuzz/regressions-jmsg) is replayed.
*/
#include <stdio.h>
#include <string.h>

#include "dl_jmsg.h"
#include "jmsg_driver.h"
#include "tap.h"

#define KEY "key"

/* Seven frames: identity, delimiter, signature, the four parts. */
typedef struct Msg {
  dl_jframe f[7];
  char sig[65];
} Msg;

static void make(Msg *m, const char *header, const char *content) {
  m->f[0].data = "id";
  m->f[0].len = 2;
  m->f[1].data = "<IDS|MSG>";
  m->f[1].len = 9;
  m->f[3].data = header;
  m->f[3].len = strlen(header);
  m->f[4].data = "{}";
  m->f[4].len = 2;
  m->f[5].data = "{}";
  m->f[5].len = 2;
  m->f[6].data = content;
  m->f[6].len = strlen(content);
  dl_jmsg_sign(KEY, 3, m->f + 3, m->sig);
  m->f[2].data = m->sig;
  m->f[2].len = strlen(m->sig);
}

#define HDR "{\"msg_id\":\"1\",\"msg_type\":\"execute_request\"}"

static void test_sign_as_jupyter(void) {
  /* Python: hmac.new(b"key", b'{"a":1}{}{}{"b":2}', sha256).hexdigest() */
  dl_jframe p[4] = {{"{\"a\":1}", 7}, {"{}", 2}, {"{}", 2}, {"{\"b\":2}", 7}};
  char hex[65];
  dl_jmsg_sign(KEY, 3, p, hex);
  CHECK(strcmp(hex, "0206f42f4ae2a48f6054ab91271f90c1"
                    "00f7022f55fb1f23de6377624d533752") == 0);
  dl_jmsg_sign("", 0, p, hex);
  CHECK(hex[0] == '\0');
}

static void test_decode_good(void) {
  Msg m;
  dl_jmsg d;
  char err[100];
  make(&m, HDR, "{\"code\":\"1+1\"}");
  CHECK(dl_jmsg_decode(&d, m.f, 7, KEY, 3, err, sizeof err) == 0);
  CHECK(strcmp(d.msg_type, "execute_request") == 0);
  CHECK(d.nids == 1 && d.ids[0].len == 2);
  CHECK(d.header_raw.data == m.f[3].data);
  CHECK(strcmp(cJSON_GetObjectItem(d.content, "code")->valuestring, "1+1")
        == 0);
  dl_jmsg_free(&d);
  /* A trailing buffer frame is allowed. */
  {
    dl_jframe f[8];
    memcpy(f, m.f, sizeof m.f);
    f[7].data = "buf";
    f[7].len = 3;
    CHECK(dl_jmsg_decode(&d, f, 8, KEY, 3, err, sizeof err) == 0);
    dl_jmsg_free(&d);
  }
}

static void test_decode_bad_signature(void) {
  Msg m;
  dl_jmsg d;
  char err[100], content[] = "{\"code\":\"1+1\"}";
  make(&m, HDR, content);
  content[9] = '2'; /* changed after signing */
  CHECK(dl_jmsg_decode(&d, m.f, 7, KEY, 3, err, sizeof err) ==
        DL_JMSG_ESIGNATURE);
  CHECK(strcmp(err, "bad signature") == 0);
  CHECK(dl_jmsg_decode(&d, m.f, 7, "other", 5, err, sizeof err) ==
        DL_JMSG_ESIGNATURE);
  m.f[2].len = 10; /* a short signature */
  CHECK(dl_jmsg_decode(&d, m.f, 7, KEY, 3, err, sizeof err) ==
        DL_JMSG_ESIGNATURE);
}

static void test_decode_malformed(void) {
  Msg m;
  dl_jmsg d;
  char err[100];
  make(&m, HDR, "{}");
  CHECK(dl_jmsg_decode(&d, m.f + 2, 5, KEY, 3, err, sizeof err) ==
        DL_JMSG_EMALFORMED);
  CHECK(strstr(err, "<IDS|MSG>") != NULL);
  CHECK(dl_jmsg_decode(&d, m.f, 6, KEY, 3, err, sizeof err) ==
        DL_JMSG_EMALFORMED);
  make(&m, HDR, "[1]");
  CHECK(dl_jmsg_decode(&d, m.f, 7, KEY, 3, err, sizeof err) ==
        DL_JMSG_EMALFORMED);
  CHECK(strstr(err, "JSON object") != NULL);
  make(&m, "{\"msg_id\":\"1\"}", "{}");
  CHECK(dl_jmsg_decode(&d, m.f, 7, KEY, 3, err, sizeof err) ==
        DL_JMSG_EMALFORMED);
  CHECK(strstr(err, "msg_type") != NULL);
  make(&m, "{\"msg_id\":\"1\",\"msg_type\":3}", "{}");
  CHECK(dl_jmsg_decode(&d, m.f, 7, KEY, 3, err, sizeof err) ==
        DL_JMSG_EMALFORMED);
}

static void test_header(void) {
  char *h = dl_jmsg_header("sess", "status");
  cJSON *j = cJSON_Parse(h);
  char u1[37], u2[37];
  CHECK(j != NULL);
  CHECK(strcmp(cJSON_GetObjectItem(j, "msg_type")->valuestring, "status")
        == 0);
  CHECK(strcmp(cJSON_GetObjectItem(j, "version")->valuestring, "5.3") == 0);
  CHECK(strncmp(cJSON_GetObjectItem(j, "msg_id")->valuestring, "sess_", 5)
        == 0);
  CHECK(strlen(cJSON_GetObjectItem(j, "date")->valuestring) == 27);
  {
    char *h2 = dl_jmsg_header("sess", "status");
    cJSON *j2 = cJSON_Parse(h2);
    CHECK(strcmp(cJSON_GetObjectItem(j, "msg_id")->valuestring,
                 cJSON_GetObjectItem(j2, "msg_id")->valuestring) != 0);
    cJSON_Delete(j2);
    cJSON_free(h2);
  }
  cJSON_Delete(j);
  cJSON_free(h);
  dl_jmsg_uuid(u1);
  dl_jmsg_uuid(u2);
  CHECK(strcmp(u1, u2) != 0 && u1[14] == '4');
}

static void test_conn(void) {
  static const char good[] =
    "{\"shell_port\":1,\"iopub_port\":2,\"stdin_port\":3,\"control_port\":4,"
    "\"hb_port\":5,\"ip\":\"127.0.0.1\",\"key\":\"k\",\"transport\":\"tcp\","
    "\"signature_scheme\":\"hmac-sha256\"}";
  static const char ipc[] =
    "{\"ip\":\"x\",\"transport\":\"ipc\",\"shell_port\":1,\"iopub_port\":2,"
    "\"stdin_port\":3,\"control_port\":4,\"hb_port\":5}";
  dl_jconn c;
  char err[160], ep[300];
  CHECK(dl_jconn_parse(good, strlen(good), &c, err, sizeof err) == 0);
  CHECK(c.ports[DL_JCHAN_HB] == 5 && c.keylen == 1);
  CHECK(dl_jconn_endpoint(&c, DL_JCHAN_STDIN, ep, sizeof ep) == 0);
  CHECK(strcmp(ep, "tcp://127.0.0.1:3") == 0);
  CHECK(dl_jconn_endpoint(&c, 5, ep, sizeof ep) == -1);
  CHECK(dl_jconn_endpoint(&c, 0, ep, 8) == -1);
  CHECK(dl_jconn_parse(ipc, strlen(ipc), &c, err, sizeof err) == 0);
  CHECK(dl_jconn_endpoint(&c, DL_JCHAN_SHELL, ep, sizeof ep) == 0);
  CHECK(strcmp(ep, "ipc://x-1") == 0 && c.keylen == 0);
  CHECK(dl_jconn_parse("nope", 4, &c, err, sizeof err) ==
        DL_JMSG_EMALFORMED);
  CHECK(strcmp(err, "not a JSON object") == 0);
  CHECK(dl_jconn_parse("{\"ip\":\"x\",\"shell_port\":1.5}", 27, &c, err,
                       sizeof err) == DL_JMSG_EMALFORMED);
  CHECK(strstr(err, "shell_port") != NULL);
}

static void test_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-jmsg", jmsg_one, NULL) > 0);
}

int main(void) {
  printf("1..7\n");
  RUN(test_sign_as_jupyter);
  RUN(test_decode_good);
  RUN(test_decode_bad_signature);
  RUN(test_decode_malformed);
  RUN(test_header);
  RUN(test_conn);
  RUN(test_regressions);
  return tap_failed != 0;
}

/*
** fuzz_jmsg.c -- libFuzzer target for the Jupyter kernel's decoders of
** outside bytes: messages (frames, signature, JSON) and connection files
** (see jmsg_driver.h for the input format and what is checked).
**
** Built with -DDL_FUZZ_SEEDGEN it writes valid inputs into the directory
** argv[1]: signed messages and connection files.
*/
#include <stdio.h>

#include "jmsg_driver.h"

#ifdef DL_FUZZ_SEEDGEN
#include "seed_save.h"

/* A signed message of msg_type with content: identity, delimiter,
   signature, header, parent, metadata, content. */
static void save_msg(const char *dir, const char *name, const char *type,
                     const char *content) {
  unsigned char buf[2048];
  char *header = dl_jmsg_header("fuzz-session", type);
  dl_jframe parts[4];
  const char *frames[7];
  char sig[65];
  size_t n = 0;
  int i;
  parts[0].data = header;
  parts[0].len = strlen(header);
  parts[1].data = "{}";
  parts[1].len = 2;
  parts[2].data = "{}";
  parts[2].len = 2;
  parts[3].data = content;
  parts[3].len = strlen(content);
  dl_jmsg_sign(JMSG_KEY, strlen(JMSG_KEY), parts, sig);
  frames[0] = "client-identity";
  frames[1] = "<IDS|MSG>";
  frames[2] = sig;
  frames[3] = header;
  frames[4] = "{}";
  frames[5] = "{}";
  frames[6] = content;
  buf[n++] = 0;
  for (i = 0; i < 7; i++) {
    size_t l = strlen(frames[i]);
    buf[n++] = (unsigned char)l;
    memcpy(buf + n, frames[i], l);
    n += l;
  }
  seed_save(dir, name, buf, n);
  cJSON_free(header);
}

int main(int argc, char **argv) {
  static const char conn[] =
    "\x01{\"shell_port\": 50001, \"iopub_port\": 50002, \"stdin_port\": "
    "50003, \"control_port\": 50004, \"hb_port\": 50005, \"ip\": "
    "\"127.0.0.1\", \"key\": \"abc\", \"transport\": \"tcp\", "
    "\"signature_scheme\": \"hmac-sha256\", \"kernel_name\": \"dlua\"}";
  static const char ipc[] =
    "\x03{\"shell_port\": 1, \"iopub_port\": 2, \"stdin_port\": 3, "
    "\"control_port\": 4, \"hb_port\": 5, \"ip\": \"/tmp/k\", \"key\": "
    "\"\", \"transport\": \"ipc\"}";
  if (argc < 2)
    return 2;
  save_msg(argv[1], "execute", "execute_request",
           "{\"code\":\"1+1\",\"silent\":false,\"allow_stdin\":true}");
  save_msg(argv[1], "complete", "complete_request",
           "{\"code\":\"string.fo\",\"cursor_pos\":9}");
  save_msg(argv[1], "input_reply", "input_reply", "{\"value\":\"hello\"}");
  seed_save(argv[1], "conn-tcp", (const unsigned char *)conn,
            sizeof conn - 1);
  seed_save(argv[1], "conn-ipc", (const unsigned char *)ipc, sizeof ipc - 1);
  return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  jmsg_one(data, size, NULL);
  return 0;
}
#endif

/*
** fuzz_auth.c -- libFuzzer target for the authentication handshake, the
** first code to see a network peer's bytes (tests/fuzz/auth_driver.h says
** what is checked).
**
** Built with -DDL_FUZZ_SEEDGEN it writes a few inputs into the directory
** argv[1]: real hellos (with macs that cannot match), garbage, an HTTP
** request, hellos of another wire version.
*/
#include "auth_driver.h"

#ifdef DL_FUZZ_SEEDGEN
#include "seed_save.h"

static void save(const char *dir, const char *name, unsigned char head,
                 const unsigned char *p, size_t n) {
  seed_save_head(dir, name, &head, 1, p, n);
}

/* A real C1 (as a client of another token would send) and a real S1. */
int main(int argc, char **argv) {
  dl_token tok;
  dl_auth c, s;
  dl_buf cb, sb;
  size_t used;
  unsigned char s2[DL_AUTH_S2_LEN] = {0};
  if (argc < 2) return 2;
  dl_token_set(&tok, "another-token-abcdefghij", 24);
  dl_buf_init(&cb);
  dl_buf_init(&sb);
  dl_auth_begin(&s, DL_AUTH_SERVER, &tok, DL_AUTH_WIRE, "0.1.0", &sb);
  dl_auth_begin(&c, DL_AUTH_CLIENT, &tok, DL_AUTH_WIRE, "0.1.0", &cb);
  dl_auth_feed(&c, sb.p, sb.len, &used, &cb);
  save(argv[1], "c1-whole", 0xfe, (unsigned char *)cb.p, cb.len);
  save(argv[1], "c1-bytes", 0x00, (unsigned char *)cb.p, cb.len);
  save(argv[1], "s1-whole", 0xff, (unsigned char *)sb.p, sb.len);
  s2[0] = 0;
  {
    unsigned char both[DL_AUTH_S1_LEN + DL_AUTH_S2_LEN];
    memcpy(both, sb.p, DL_AUTH_S1_LEN);
    memcpy(both + DL_AUTH_S1_LEN, s2, sizeof s2);
    save(argv[1], "s1-s2-zero", 0x11, both, sizeof both);
    both[DL_AUTH_S1_LEN] = 2;
    save(argv[1], "s1-s2-refused", 0x21, both, sizeof both);
    both[8] = 9; /* wire version 9 */
    save(argv[1], "s1-other-wire", 0x01, both, sizeof both);
  }
  save(argv[1], "http", 0x10, (const unsigned char *)"GET / HTTP/1.1\r\n\r\n",
       18);
  save(argv[1], "magic-only", 0x02, (const unsigned char *)"DLUAAUTH", 8);
  dl_buf_free(&cb);
  dl_buf_free(&sb);
  return 0;
}
#else
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n) {
  auth_drive(data, n);
  return 0;
}
#endif

/*
** test_dynlib.c -- C tests of libraries opened on first use (dl_dynlib.h):
** a loaded table calls the library, a missing file or symbol is an error
** that names the package and leaves the table unused, and the dlua binary
** itself no longer names ZeroMQ or libcrypto (its workers' start).
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_crypto.h"
#include "dl_dynlib.h"
#include "tap.h"

typedef struct { __typeof__(&cos) p_cos; __typeof__(&sqrt) p_sqrt; } mfns;

/* A real library: the functions come from it, and a second load is a
   no-op that keeps them. */
static void test_load_and_call(void) {
  static const char *const names[] = {"cos", "sqrt", NULL};
  mfns f;
  dl_dynlib lib = {"libm.so.6", "libc6", names, (void **)&f, 0, ""};
  memset(&f, 0, sizeof f);
  CHECK(dl_dynlib_load(&lib) == 0);
  CHECK(f.p_cos(0.0) == 1.0 && f.p_sqrt(16.0) == 4.0);
  CHECK(dl_dynlib_load(&lib) == 0 && lib.state == 1);
}

/* A missing file: the message names the file and the package; the state
   stays failed, so a later call does not retry half-way. */
static void test_missing_file(void) {
  static const char *const names[] = {"cos", NULL};
  mfns f;
  dl_dynlib lib = {"libdlua-no-such.so.7", "libdlua-no-such7", names,
                   (void **)&f, 0, ""};
  CHECK(dl_dynlib_load(&lib) == -1);
  CHECK(strstr(lib.err, "libdlua-no-such.so.7") != NULL);
  CHECK(strstr(lib.err, "install the Debian package libdlua-no-such7"));
  CHECK(dl_dynlib_load(&lib) == -1 && lib.state == -1);
}

/* A missing symbol fails the whole load (no half-filled table). */
static void test_missing_symbol(void) {
  static const char *const names[] = {"cos", "dlua_no_such_function", NULL};
  mfns f;
  dl_dynlib lib = {"libm.so.6", "libc6", names, (void **)&f, 0, ""};
  CHECK(dl_dynlib_load(&lib) == -1);
  CHECK(strstr(lib.err, "has no function dlua_no_such_function") != NULL);
}

/* libcrypto through its table: an HMAC-SHA256 of RFC 4231's test case 2. */
static void test_crypto_table(void) {
  static const char want[] =
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
  unsigned char mac[32];
  unsigned int n = 0, i;
  char hex[65];
  char err[300];
  CHECK(dl_crypto_load(err, sizeof err) == 0);
  CHECK(HMAC(EVP_sha256(), "Jefe", 4,
             (const unsigned char *)"what do ya want for nothing?", 28, mac,
             &n) != NULL);
  CHECK(n == 32);
  for (i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", mac[i]);
  CHECK(strcmp(hex, want) == 0);
}

/* The dlua binary (its path in $DLUA, set by scripts/run-tests) does not
   name ZeroMQ or libcrypto: every worker process would load them. */
static void test_binary_does_not_link_them(void) {
  const char *exe = getenv("DLUA");
  char cmd[600], line[400];
  FILE *p;
  int needed = 0;
  if (exe == NULL) exe = "build/dlua";
  snprintf(cmd, sizeof cmd, "readelf -d '%s'", exe);
  p = popen(cmd, "r");
  CHECK(p != NULL);
  while (fgets(line, sizeof line, p) != NULL) {
    if (strstr(line, "(NEEDED)") == NULL) continue;
    needed++;
    CHECK(strstr(line, "libzmq") == NULL);
    CHECK(strstr(line, "libcrypto") == NULL);
  }
  CHECK(pclose(p) == 0);
  CHECK(needed > 0); /* readelf did read it */
}

int main(void) {
  RUN(test_load_and_call);
  RUN(test_missing_file);
  RUN(test_missing_symbol);
  RUN(test_crypto_table);
  RUN(test_binary_does_not_link_them);
  return TAP_END();
}

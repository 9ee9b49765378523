/*
** fuzz_textread.c -- libFuzzer target for dlua.bag's text reader
** (runtime/collections/dl_textread.c): plain blocks split at line
** boundaries, gzip bytes from outside, and gzip round trips, each with a
** bound on the length of a line.  textread_check.h says what is checked.
*/
#include <stddef.h>

#include "textread_check.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  textread_fuzz_one(data, size);
  return 0;
}

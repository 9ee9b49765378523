/*
** fuzz_zyg.c -- libFuzzer target for the zygote link's decoder
** (runtime/wire/dl_zyg.c), which reads the packets a cluster and its
** process's zygote send each other (tests/fuzz/zyg_driver.h says what is
** checked).
*/
#include "zyg_driver.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n) {
  return zyg_drive(data, n);
}

/*
** fuzz_schedfile.c -- libFuzzer target for the scheduler file's parser
** (runtime/cluster/dl_schedfile.c), which reads a file anyone with write
** access to a shared directory could have written (tests/fuzz/
** schedfile_driver.h says what is checked).
*/
#include "schedfile_driver.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n) {
  return schedfile_drive(data, n);
}

/*
** fuzz_tlsrec.c -- libFuzzer target for the TLS records dlua opens itself
** after the handshake (tests/fuzz/tlsrec_driver.h says what is checked).
**
** Built with -DDL_FUZZ_SEEDGEN it writes a few programs into the
** directory argv[1]: records read whole, a byte at a time and in odd
** splits; a record altered; garbage after good records.
*/
#include "tlsrec_driver.h"

#ifdef DL_FUZZ_SEEDGEN
#include "seed_save.h"

int main(int argc, char **argv) {
  static const unsigned char whole[] = {0, 5, 'h', 'e', 'l', 'l', 'o',
                                        0, 3, 'a', 'b', 'c', 3, 255, 255};
  static const unsigned char bytes[] = {0, 4, 'w', 'x', 'y', 'z',
                                        0, 2, 'q', 'r', 3, 0, 0};
  static const unsigned char split[] = {0, 6, '1', '2', '3', '4', '5', '6',
                                        0, 6, '7', '8', '9', '0', '-', '=',
                                        3, 30, 2};
  static const unsigned char flip[] = {0, 4, 'f', 'l', 'i', 'p',
                                       2, 0, 9, 3, 255, 255};
  static const unsigned char junk[] = {0, 3, 'o', 'k', '!', 1, 8, 23, 3, 3,
                                       0, 40, 'x', 'y', 'z', 3, 7, 7};
  if (argc < 2) return 2;
  seed_save(argv[1], "whole", whole, sizeof whole);
  seed_save(argv[1], "bytes", bytes, sizeof bytes);
  seed_save(argv[1], "split", split, sizeof split);
  seed_save(argv[1], "flip", flip, sizeof flip);
  seed_save(argv[1], "junk", junk, sizeof junk);
  return 0;
}
#else
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n) {
  tlsrec_drive(data, n);
  return 0;
}
#endif

/*
** fuzz_csvframe.c -- libFuzzer target for the typed CSV reader of data
** frames (runtime/frame/dl_csvframe.c, its own tokenizer).
**
** Byte 0 picks the options (separator, header, on_error = "null", one
** column forced to each type); the rest is the CSV text.  The reader must
** fail with a message or give columns that all have nrows rows, with
** string offsets rising inside their bytes.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_csvframe.h"

#include "csvframe_check.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  csvframe_fuzz_one(data, size);
  return 0;
}

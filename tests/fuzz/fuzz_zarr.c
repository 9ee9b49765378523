/*
** fuzz_zarr.c -- libFuzzer target for the Zarr readers of outside bytes:
** the `.zarray` metadata (dl_zarr_meta_parse) and chunk files
** (dl_zarr_chunk_decode).  The checks are in zarr_check.h.
*/
#include "zarr_check.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  zarr_fuzz_one(data, size);
  return 0;
}

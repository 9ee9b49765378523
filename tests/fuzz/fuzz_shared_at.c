/*
** fuzz_shared_at.c -- libFuzzer target for dl_shared_at_read, the decoder
** of where a value lies in another process's block (found = 2 answers and
** the gather replies that pass them on).
**
** Whatever it accepts must name a span inside the block and a plausible
** pid, and must read back the same after dl_put_shared_at: all nine
** fields, a memfd's (fd, inode) and a block's address, seal and cookie.
**
** Built with -DDL_FUZZ_SEEDGEN it writes a few valid descriptions into the
** directory argv[1], of blocks on memfds and of blocks named by address.
*/
#include <stdio.h>
#include <stdlib.h>

#include "shared_at_check.h"

#ifdef DL_FUZZ_SEEDGEN
#include "seed_save.h"

/* A description of a block on a memfd, or with addr set, of one named by
   its address (no file, a seal and its cookie). */
static void save(const char *dir, const char *name, uint64_t pid,
                 uint64_t size, uint64_t off, uint64_t len, uint64_t addr) {
  dl_shared_at sa;
  dl_buf b;
  dl_rd r;
  const char *p;
  size_t n;
  memset(&sa, 0, sizeof sa);
  sa.pid = pid;
  sa.ref.fd = addr ? DL_MEM_NOFD : 7;
  sa.ref.ino = addr ? 0 : 123456;
  sa.ref.addr = addr;
  sa.ref.seal = addr ? 0x7f0000001000ull : 0;
  sa.ref.cookie = addr ? 0x9e3779b97f4a7c15ull : 0;
  sa.ref.size = size;
  sa.off = off;
  sa.len = len;
  dl_buf_init(&b);
  dl_put_shared_at(&b, &sa);
  dl_rd_init(&r, b.p, b.len);
  dl_rd_str(&r, &p, &n); /* the fields, without the length prefix */
  seed_save(dir, name, p, n);
  dl_buf_free(&b);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  save(argv[1], "middle", 4242, 8 << 20, 4096, 5 << 20, 0);
  save(argv[1], "whole", 1, 4 << 20, 0, 4 << 20, 0);
  save(argv[1], "empty-at-end", 99999, 4096, 4096, 0, 0);
  save(argv[1], "by-address", 4242, 8 << 20, 4096, 5 << 20,
       0x7f3a00000000ull);
  save(argv[1], "by-address-whole", 1, 4 << 20, 0, 4 << 20, 1ull << 21);
  return 0;
}
#else
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n) {
  return shared_at_check(data, n);
}
#endif

/*
** fuzz_rclient.c -- libFuzzer target for the decoders of a TCP link after
** its handshake that had no fuzzer of their own: a remote client's frames
** from its scheduler (CINFO, CREFUSE, WELCOME, task news and their error
** records) and a worker's HELLO at the scheduler (tests/fuzz/
** rclient_driver.h says what is checked).
**
** Built with -DDL_FUZZ_SEEDGEN it writes a few valid inputs (a CINFO with
** named and departed workers, task news, a HELLO, refusals) into the
** directory argv[1].
*/
#include <stdio.h>
#include <stdlib.h>

#include "rclient_driver.h"

#ifdef DL_FUZZ_SEEDGEN
#include "seed_save.h"

static void save(const char *dir, const char *name, unsigned side,
                 const dl_buf *b) {
  unsigned char head = (unsigned char)side;
  if (seed_save_head(dir, name, &head, 1, b->p, b->len)) exit(1);
}

int main(int argc, char **argv) {
  int64_t counts[6] = {1, 2, 3, 4, 5, 6};
  dl_msg_cworker w;
  dl_msg_cdead d;
  dl_msg_hello h;
  dl_msg_err e;
  dl_buf b, rec;
  if (argc != 2) return 2;
  dl_buf_init(&b);
  dl_buf_init(&rec);
  memset(&w, 0, sizeof w);
  w.id = 3;
  w.pid = 4242;
  w.nthreads = 1;
  w.memory_limit = 1 << 30;
  w.name = "gpu-a";
  w.nlen = 5;
  dl_put_welcome(&b, 1);
  dl_put_cinfo_head(&b, "10.0.0.1:8787", counts, 2);
  dl_put_cworker(&b, &w);
  w.id = 4;
  w.name = "";
  w.nlen = 0;
  dl_put_cworker(&b, &w);
  dl_buf_uv(&b, 1);
  d.id = 2;
  d.pid = 99;
  d.reason = "its connection closed";
  d.rlen = strlen(d.reason);
  d.name = "gpu-b";
  d.nlen = 5;
  dl_put_cdead(&b, &d);
  save(argv[1], "cinfo", 0, &b);
  b.len = 0;
  {
    dl_msg_key_done k;
    k.key = "a";
    k.klen = 1;
    k.nbytes = 13;
    k.inl = "\x03\x2a";
    k.ilen = 2;
    dl_put_key_done(&b, &k);
  }
  dl_put_err_rec(&rec, DL_ERR_RAISED, "boom", "stack", "worker 3 (gpu-a)",
                 NULL, 0);
  e.key = "k-1";
  e.klen = 3;
  e.kind = DL_ERR_RAISED;
  e.rec = rec.p;
  e.rlen = rec.len;
  dl_put_err_msg(&b, DL_M_KEY_ERR, &e);
  save(argv[1], "news", 0, &b);
  b.len = 0;
  dl_put_crefuse(&b, "the scheduler is out of memory", 30);
  save(argv[1], "crefuse", 0, &b);
  b.len = 0;
  memset(&h, 0, sizeof h);
  h.id = 3;
  h.pid = 4242;
  h.nthreads = 1;
  h.addr = "tcp://10.0.0.7:40311";
  h.alen = strlen(h.addr);
  h.name = "gpu-a";
  h.nlen = 5;
  dl_put_hello(&b, &h);
  save(argv[1], "hello", 1, &b);
  b.len = 0;
  dl_put_wrefuse(&b, "the name 'gpu-a' is taken", 25);
  save(argv[1], "wrefuse", 1, &b);
  dl_buf_free(&b);
  dl_buf_free(&rec);
  return 0;
}
#else
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n) {
  return rclient_drive(data, n);
}
#endif

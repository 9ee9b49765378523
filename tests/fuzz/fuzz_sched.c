/*
** fuzz_sched.c -- libFuzzer target for the scheduler's message decoding
** and state machine: client and worker frames of arbitrary bytes, worker
** deaths and timer ticks in any order (see sched_driver.h).
**
** Built with -DDL_FUZZ_SEEDGEN it writes a few meaningful inputs (a graph
** submitted, run, failed, a worker lost) into the directory argv[1].
*/
#include <stdio.h>
#include <stdlib.h>

#include "dl_proto.h"
#include "sched_driver.h"

#ifdef DL_FUZZ_SEEDGEN
static void rec(dl_buf *out, unsigned kind, dl_buf *frame) {
  dl_buf_u8(out, kind);
  dl_buf_u8(out, (unsigned)(frame->len & 0xff));
  dl_buf_u8(out, (unsigned)(frame->len >> 8));
  dl_buf_put(out, frame->p, frame->len);
  frame->len = 0;
}

static void submit(dl_buf *f, const char *key, const char *dep) {
  dl_buf_u8(f, DL_M_SUBMIT);
  dl_buf_str(f, key, strlen(key));
  dl_buf_str(f, "payload", 7);
  dl_buf_sv(f, 0);
  dl_buf_sv(f, 0);
  dl_buf_uv(f, 1); /* retries */
  dl_buf_uv(f, 0);
  dl_buf_uv(f, 0); /* no functions */
  dl_buf_uv(f, dep ? 1 : 0);
  if (dep) dl_buf_str(f, dep, strlen(dep));
  dl_buf_uv(f, 0);
  dl_buf_uv(f, 0);
}

static void done(dl_buf *f, const char *key) {
  dl_buf_u8(f, DL_M_DONE);
  dl_buf_str(f, key, strlen(key));
  dl_buf_uv(f, 8);
  dl_buf_uv(f, 1);
  dl_buf_uv(f, 2);
  dl_buf_str(f, "", 0);
}

static void save(const char *dir, const char *name, dl_buf *b) {
  char path[512];
  FILE *fp;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  fp = fopen(path, "wb");
  if (fp) {
    fwrite(b->p, 1, b->len, fp);
    fclose(fp);
  }
  b->len = 0;
}

int main(int argc, char **argv) {
  dl_buf in, f;
  if (argc < 2) return 2;
  dl_buf_init(&in);
  dl_buf_init(&f);
  submit(&f, "a-1", NULL);
  submit(&f, "b-1", "a-1");
  rec(&in, 0, &f);
  done(&f, "a-1");
  rec(&in, 1, &f);
  done(&f, "b-1");
  rec(&in, 2, &f);
  save(argv[1], "graph", &in);
  submit(&f, "a-1", NULL);
  submit(&f, "b-1", "a-1");
  rec(&in, 0, &f);
  done(&f, "a-1");
  rec(&in, 1, &f);
  rec(&in, 4, &f); /* worker 1 dies: a-1 is recomputed */
  rec(&in, 6, &f);
  save(argv[1], "lost", &in);
  dl_buf_free(&in);
  dl_buf_free(&f);
  return 0;
}
#else
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n) {
  sdrv_run(data, n);
  return 0;
}
#endif

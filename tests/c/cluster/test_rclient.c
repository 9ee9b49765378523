/*
** test_rclient.c -- replays every input the fuzzer saved for the decoders
** of a TCP link after its handshake (tests/fuzz/regressions-rclient,
** through tests/fuzz/rclient_driver.h), and checks that dl_cinfo_read
** reads a CINFO with named and departed workers back and refuses every
** cut of it.
*/
#include <stdio.h>
#include <string.h>

#include "rclient_driver.h"
#include "tap.h"

static void one(const unsigned char *p, size_t n, void *ud) {
  (void)ud;
  rclient_drive(p, n);
}

static void test_replay_fuzz_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-rclient", one, NULL) > 0);
}

static void test_cinfo_read_back_and_cut(void) {
  int64_t counts[6] = {1, 2, 3, 4, 5, 6};
  dl_msg_cworker w;
  dl_msg_cdead d;
  dl_cinfo ci;
  dl_buf b;
  dl_rd r;
  size_t cut;
  dl_buf_init(&b);
  memset(&w, 0, sizeof w);
  w.id = 3;
  w.pid = 4242;
  w.status = 1;
  w.processing = 2;
  w.uptime_ms = 1500;
  w.silent_ms = 250;
  w.spill_out = 10;
  w.xfer_out = 11;
  w.name = "gpu-a";
  w.nlen = 5;
  w.spill_err = "disk full";
  w.selen = 9;
  dl_put_cinfo_head(&b, "h:1", counts, 1);
  dl_put_cworker(&b, &w);
  dl_buf_uv(&b, 1);
  d.id = 7;
  d.pid = 99;
  d.reason = "gone";
  d.rlen = 4;
  d.name = "gpu-b";
  d.nlen = 5;
  dl_put_cdead(&b, &d);
  dl_rd_init(&r, b.p + 1, b.len - 1);
  CHECK(dl_cinfo_read(&r, &ci, 100) == 0);
  CHECK(ci.nws == 1 && ci.ws[0].id == 3 && ci.ws[0].pid == 4242);
  /* ages on the reader's clock */
  CHECK(ci.ws[0].started == 98.5 && ci.ws[0].last_seen == 99.75);
  CHECK(ci.ws[0].inflight == 2 && ci.ws[0].spill_out == 10);
  CHECK(ci.ws[0].xfer_out == 11 && ci.ws[0].xfer_in == 0);
  CHECK(strcmp(ci.ws[0].spill_err, "disk full") == 0);
  CHECK(strcmp(ci.ws[0].name, "gpu-a") == 0 && strcmp(ci.dash, "h:1") == 0);
  CHECK(ci.ndead == 1 && ci.dead[0].id == 7);
  CHECK(strcmp(ci.dead[0].name, "gpu-b") == 0);
  CHECK(strcmp(ci.dead[0].reason, "gone") == 0 && ci.counts[5] == 6);
  dl_free(ci.ws);
  for (cut = 1; cut < b.len; cut++) {
    dl_rd_init(&r, b.p + 1, cut - 1);
    CHECK(dl_cinfo_read(&r, &ci, 0) == DL_EPROTO && ci.ws == NULL);
  }
  dl_buf_free(&b);
}

int main(void) {
  RUN(test_cinfo_read_back_and_cut);
  RUN(test_replay_fuzz_regressions);
  return TAP_END();
}

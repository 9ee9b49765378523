/*
** fuzz_worker.c -- libFuzzer target for the worker's frame decoders:
** messages from the scheduler (dl_w_on_sched_frame), DATA answers from peers
** including found = 2 ones (dl_w_on_peer_frame, dl_shared_at_read: blocks
** named by a file or by their address, reads refused), and GET / GETS /
** GETF from peers (dl_w_on_client_frame) and the scheduler, in any order,
** with peer connections closing and the loop turning in between (see
** worker_driver.h).
**
** Built with -DDL_FUZZ_SEEDGEN it writes a few meaningful inputs (a value
** stored and served, an input fetched from a peer in bytes or as a shared
** block, by a file or by its address, one whose read is refused and asked
** for as a file, a fetch that fails over to another peer, a task
** cancelled and stolen) into the directory argv[1].
*/
#include <stdio.h>
#include <stdlib.h>

#include "worker_driver.h"
#include "worker_msgs.h"

/* The worker's Lua state is never made here (no executor runs); these
   stand in for dl_runtime.c, which dlua_worker_main's set-up calls. */
void dlua_openlibs(lua_State *L) { (void)L; }

void *dlua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    dl_free(ptr);
    return NULL;
  }
  return dl_realloc(ptr, nsize);
}

#ifdef DL_FUZZ_SEEDGEN
#include "seed_save.h"

/* Append the messages in frame to out as one record of kind. */
static void rec(dl_buf *out, unsigned kind, dl_buf *frame) {
  dl_buf_u8(out, kind);
  dl_buf_u8(out, (unsigned)(frame->len & 0xff));
  dl_buf_u8(out, (unsigned)(frame->len >> 8));
  dl_buf_put(out, frame->p, frame->len);
  frame->len = 0;
}

static void peer_msg(dl_buf *f, unsigned id, const char *addr) {
  wm_put_peer(f, id, addr);
}

/* COMPUTE key with one dependency dep held by the workers in who. */
static void compute(dl_buf *f, const char *key, const char *dep,
                    const unsigned *who, unsigned nwho) {
  wm_put_compute(f, key, dep ? 1 : 0);
  if (dep) wm_put_dep(f, dep, who, nwho, nwho);
}

static void key_msg(dl_buf *f, unsigned type, const char *key) {
  dl_put_key_msg(f, type, key, strlen(key));
}

static void data(dl_buf *f, const char *key, unsigned found,
                 const char *bytes) {
  wm_put_data(f, key, found, bytes);
}

static void get(dl_buf *f, unsigned type, unsigned reqid, const char *key) {
  dl_put_get(f, type == DL_M_GETF ? 2 : type == DL_M_GETS, reqid, key,
             strlen(key));
}

static void save(const char *dir, const char *name, dl_buf *b) {
  seed_save(dir, name, b->p, b->len);
  b->len = 0;
}

int main(int argc, char **argv) {
  dl_buf in, f;
  unsigned two[2] = {2, 3};
  dl_shared_at sa;
  (void)wdrv_run; /* the fuzzer's entry point, not the seed maker's */
  if (argc < 2) return 2;
  dl_buf_init(&in);
  dl_buf_init(&f);

  /* A value is stored, served to a peer and the scheduler, then freed. */
  dl_put_str2(&f, DL_M_STORE, "a-1", 3, "value bytes", 11);
  dl_put_func_msg(&f, DL_M_FUNC, "0123456789abcdef", "code", 4);
  rec(&in, 0, &f);
  get(&f, DL_M_GET, 1, "a-1");
  get(&f, DL_M_GETS, 2, "a-1");
  get(&f, DL_M_GETF, 3, "a-1");
  get(&f, DL_M_GET, 4, "nope");
  rec(&in, 2, &f);
  get(&f, DL_M_GET, 5, "a-1");
  get(&f, DL_M_GETF, 6, "a-1");
  key_msg(&f, DL_M_FREE, "a-1");
  rec(&in, 0, &f);
  rec(&in, 4, &f);
  save(argv[1], "store", &in);

  /* An input is fetched from peer 2 and arrives as bytes. */
  peer_msg(&f, 2, "/w2.sock");
  compute(&f, "b-1", "a-1", two, 1);
  rec(&in, 0, &f);
  data(&f, "a-1", 1, "value bytes");
  rec(&in, 1, &f);
  get(&f, DL_M_GETS, 1, "a-1");
  rec(&in, 2, &f);
  rec(&in, 4, &f);
  save(argv[1], "fetch", &in);

  /* It arrives as a block of the peer's to map. */
  peer_msg(&f, 2, "/w2.sock");
  compute(&f, "b-1", "a-1", two, 1);
  rec(&in, 0, &f);
  memset(&sa, 0, sizeof sa);
  sa.pid = WDRV_PID;
  sa.ref.size = 8192;
  sa.off = 100;
  sa.len = 5000;
  dl_put_data_shared(&f, DL_M_DATA, 0, "a-1", 3, &sa);
  rec(&in, 1, &f);
  get(&f, DL_M_GETS, 1, "a-1");
  rec(&in, 2, &f);
  save(argv[1], "fetch-shared", &in);

  /* The block cannot be mapped (another pid): the bytes are asked for. */
  peer_msg(&f, 2, "/w2.sock");
  compute(&f, "b-1", "a-1", two, 1);
  rec(&in, 0, &f);
  sa.pid = 77;
  dl_put_data_shared(&f, DL_M_DATA, 0, "a-1", 3, &sa);
  rec(&in, 1, &f);
  data(&f, "a-1", 1, "value bytes");
  rec(&in, 1, &f);
  save(argv[1], "fetch-plain", &in);

  /* It is named by its address in the peer's memory, and read. */
  peer_msg(&f, 2, "/w2.sock");
  compute(&f, "b-1", "a-1", two, 1);
  rec(&in, 0, &f);
  memset(&sa, 0, sizeof sa);
  sa.pid = WDRV_PID;
  sa.ref.fd = DL_MEM_NOFD;
  sa.ref.size = 8192;
  sa.ref.addr = (uint64_t)1 << 32;
  sa.ref.seal = ((uint64_t)1 << 32) + 8192 * 2;
  sa.ref.cookie = 0x9e3779b97f4a7c15ull;
  sa.off = 100;
  sa.len = 5000;
  dl_put_data_shared(&f, DL_M_DATA, 0, "a-1", 3, &sa);
  rec(&in, 1, &f);
  save(argv[1], "fetch-by-address", &in);

  /* Reading the peer is refused: a-1 is asked for as a file (GETF), which
     comes; the next input, asked for as a file at once, cannot be mapped
     and comes as bytes. */
  peer_msg(&f, 2, "/w2.sock");
  compute(&f, "b-1", "a-1", two, 1);
  rec(&in, 0, &f);
  sa.pid = WDRV_REFUSE_PID;
  dl_put_data_shared(&f, DL_M_DATA, 0, "a-1", 3, &sa);
  rec(&in, 1, &f);
  sa.pid = WDRV_PID;
  sa.ref.fd = 0; /* a file: the driver's memfd block */
  sa.ref.addr = sa.ref.seal = sa.ref.cookie = 0;
  dl_put_data_shared(&f, DL_M_DATA, 0, "a-1", 3, &sa);
  rec(&in, 1, &f);
  compute(&f, "c-1", "d-1", two, 1);
  rec(&in, 0, &f);
  sa.pid = 77;
  dl_put_data_shared(&f, DL_M_DATA, 0, "d-1", 3, &sa);
  rec(&in, 1, &f);
  data(&f, "d-1", 1, "value bytes");
  rec(&in, 1, &f);
  rec(&in, 4, &f);
  save(argv[1], "fetch-refused", &in);

  /* Peer 2 has lost it and peer 3 goes away: the task goes back. */
  peer_msg(&f, 2, "/w2.sock");
  peer_msg(&f, 3, "/w3.sock");
  compute(&f, "b-1", "a-1", two, 2);
  compute(&f, "c-1", "a-1", two, 2);
  rec(&in, 0, &f);
  data(&f, "a-1", 0, "");
  rec(&in, 1, &f);
  rec(&in, 3, &f);
  rec(&in, 4, &f);
  save(argv[1], "fetch-fail", &in);

  /* Tasks are queued, stolen, cancelled; a peer is forgotten. */
  peer_msg(&f, 2, "/w2.sock");
  compute(&f, "d-1", NULL, NULL, 0);
  compute(&f, "e-1", NULL, NULL, 0);
  compute(&f, "f-1", "a-1", two, 1);
  key_msg(&f, DL_M_STEAL, "d-1");
  key_msg(&f, DL_M_CANCEL, "e-1");
  key_msg(&f, DL_M_CANCEL, "f-1");
  peer_msg(&f, 2, "");
  rec(&in, 0, &f);
  dl_put_shutdown(&f);
  rec(&in, 0, &f);
  save(argv[1], "cancel", &in);

  dl_buf_free(&in);
  dl_buf_free(&f);
  return 0;
}
#else
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n) {
  wdrv_run(data, n);
  return 0;
}
#endif

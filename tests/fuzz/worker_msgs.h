/*
** worker_msgs.h -- the messages a worker is sent, written through the
** wire layer's own writers (dl_wire.h), for the worker's C test and its
** fuzzer's seed maker: neither lays out a frame by hand.
*/
#ifndef worker_msgs_h
#define worker_msgs_h

#include <string.h>

#include "dl_wire.h"

/* PEER: worker id serves at addr ("" when it is gone). */
static inline void wm_put_peer(dl_buf *f, unsigned id, const char *addr) {
  dl_msg_peer m;
  m.id = id;
  m.addr = addr;
  m.alen = strlen(addr);
  dl_put_peer(f, &m);
}

/* COMPUTE key (payload "payload") with ndeps dependencies; each follows
   as wm_put_dep. */
static inline void wm_put_compute(dl_buf *f, const char *key,
                                  unsigned ndeps) {
  dl_msg_compute m;
  memset(&m, 0, sizeof m);
  m.key = key;
  m.klen = strlen(key);
  m.payload = "payload";
  m.plen = 7;
  m.ndeps = ndeps;
  dl_put_compute(f, &m);
}

/* A dependency of COMPUTE: dep, held by the nwho workers in who (who may
   be shorter than nwho, to make a malformed message). */
static inline void wm_put_dep(dl_buf *f, const char *dep,
                              const unsigned *who, unsigned nwho,
                              unsigned nlisted) {
  unsigned i;
  dl_put_compute_dep(f, dep, strlen(dep), nwho);
  for (i = 0; i < nlisted; i++) dl_put_id(f, who[i]);
}

/* DATA for key (request 0): found 0 or 1 with bytes. */
static inline void wm_put_data(dl_buf *f, const char *key, unsigned found,
                               const char *bytes) {
  dl_msg_data m;
  m.reqid = 0;
  m.key = key;
  m.klen = strlen(key);
  m.found = found;
  m.bytes = bytes;
  m.blen = strlen(bytes);
  dl_put_data(f, DL_M_DATA, &m);
}

#endif

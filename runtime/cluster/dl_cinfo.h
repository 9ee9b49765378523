/*
** dl_cinfo.h -- reading CINFO, the cluster's figures that a remote
** client's scheduler sends it (layout in dl_wire.h).  The bytes come from
** another host (after the handshake), so the reader trusts no count or
** length in them: every list is bounded, every string cut to its field.
** Pure C: no Lua, no libuv.
*/
#ifndef dl_cinfo_h
#define dl_cinfo_h

#include <stdint.h>

#include "dl_buf.h"
#include "dl_sched.h"

/* The most workers a CINFO may list. */
#define DL_CINFO_MAX_WORKERS 4096

typedef struct dl_cinfo {
  char dash[128];     /* the dashboard's "host:port", "" for none */
  int64_t counts[6];  /* task counts, as dl_sched_counts */
  dl_sched_winfo *ws; /* owned (dl_free); nws entries */
  int nws;
  dl_sched_winfo dead[DL_SCHED_DEPARTED]; /* the workers that left */
  int ndead;
} dl_cinfo;

/*
** Read a CINFO from r (past its type byte) into out; now is this
** process's clock (seconds), on which the workers' ages (uptime, time
** since their last message) become the winfo's started and last_seen.
** Returns 0 (free out->ws with dl_free), DL_EPROTO (malformed or
** truncated; out->ws is NULL) or DL_ENOMEM.
*/
int dl_cinfo_read(dl_rd *r, dl_cinfo *out, double now);

#endif

/*
** dl_cinfo.c -- reading CINFO (see dl_cinfo.h).
*/
#include <stdio.h>
#include <string.h>

#include "dl_cinfo.h"
#include "dl_mem.h"
#include "dl_wire.h"

int dl_cinfo_read(dl_rd *r, dl_cinfo *out, double now) {
  const char *dash;
  size_t dlen;
  uint64_t n, i, nd;
  memset(out, 0, sizeof *out);
  if (dl_get_cinfo_head(r, &dash, &dlen, out->counts, &n) ||
      n > DL_CINFO_MAX_WORKERS)
    return DL_EPROTO;
  snprintf(out->dash, sizeof out->dash, "%.*s", (int)dlen, dash);
  out->ws = dl_realloc(NULL, (size_t)(n ? n : 1) * sizeof *out->ws);
  if (out->ws == NULL) return DL_ENOMEM;
  memset(out->ws, 0, (size_t)(n ? n : 1) * sizeof *out->ws);
  for (i = 0; i < n; i++) {
    dl_sched_winfo *w = &out->ws[i];
    dl_msg_cworker m;
    if (dl_get_cworker(r, &m)) goto bad;
    w->id = (int)m.id;
    w->pid = (int64_t)m.pid;
    w->nthreads = (int)m.nthreads;
    w->memory_limit = (int64_t)m.memory_limit;
    w->managed = (int64_t)m.managed;
    w->spilled = (int64_t)m.spilled;
    w->rss = (int64_t)m.rss;
    w->executing = (int)m.executing;
    w->stored = (int)m.stored;
    w->status = m.status <= DL_WS_DEAD ? (int)m.status : -1; /* "?" */
    w->inflight = (int)m.processing;
    /* on this process's clock: ages as the scheduler saw them */
    w->started = now - (double)m.uptime_ms * 1e-3;
    w->last_seen = now - (double)m.silent_ms * 1e-3;
    w->spill_out = (int64_t)m.spill_out;
    w->spill_in = (int64_t)m.spill_in;
    w->xfer_in = (int64_t)m.xfer_in;
    w->xfer_out = (int64_t)m.xfer_out;
    snprintf(w->name, sizeof w->name, "%.*s", (int)m.nlen, m.name);
    snprintf(w->spill_err, sizeof w->spill_err, "%.*s", (int)m.selen,
             m.spill_err);
  }
  out->nws = (int)n;
  if (dl_rd_uv(r, &nd) || nd > DL_SCHED_DEPARTED) goto bad;
  for (i = 0; i < nd; i++) {
    dl_sched_winfo *d = &out->dead[i];
    dl_msg_cdead m;
    if (dl_get_cdead(r, &m)) goto bad;
    d->id = (int)m.id;
    d->pid = (int64_t)m.pid;
    d->status = DL_WS_DEAD;
    snprintf(d->reason, sizeof d->reason, "%.*s", (int)m.rlen, m.reason);
    snprintf(d->name, sizeof d->name, "%.*s", (int)m.nlen, m.name);
  }
  out->ndead = (int)nd;
  return 0;
bad:
  dl_free(out->ws);
  out->ws = NULL;
  out->nws = 0;
  return DL_EPROTO;
}

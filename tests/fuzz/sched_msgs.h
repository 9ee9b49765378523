/*
** sched_msgs.h -- one SUBMIT message, written through the wire layer's own
** writers (dl_wire.h), for the scheduler's C test, its fuzzer's seeds and
** bench_events: none of them lays out a frame by hand, so a change of the
** SUBMIT layout is made once, in dl_wire.h.
*/
#ifndef sched_msgs_h
#define sched_msgs_h

#include <string.h>

#include "dl_wire.h"

/* What a test's task asks for; zero fields mean "none" / "anywhere". */
typedef struct sm_submit {
  int64_t prio;
  int64_t order;
  uint64_t retries;
  const void *fn;  /* a 16-byte function hash, or NULL */
  const char *dep; /* one dependency key, or NULL */
  const char *dep2; /* with dep: a second one, or NULL */
  uint64_t worker; /* a worker to place it on, or 0 */
  int allow_other; /* with worker: may run elsewhere */
} sm_submit;

/* Write the spec part of SUBMIT (everything after key and payload) for
   the options in o into spec, as the client does once for many tasks. */
static inline void sm_put_spec(dl_buf *spec, const sm_submit *o) {
  dl_buf opts, fns, deps, place;
  dl_buf_init(&opts);
  dl_buf_init(&fns);
  dl_buf_init(&deps);
  dl_buf_init(&place);
  dl_put_submit_opts(&opts, o->prio, o->order, o->retries, 0);
  if (o->fn) dl_buf_put(&fns, o->fn, 16);
  if (o->dep) dl_put_key(&deps, o->dep, strlen(o->dep));
  if (o->dep && o->dep2) dl_put_key(&deps, o->dep2, strlen(o->dep2));
  dl_put_submit_place(&place, o->worker ? 1 : 0);
  if (o->worker) dl_put_id(&place, o->worker);
  dl_put_submit_allow(&place, o->allow_other);
  dl_put_submit_spec(spec, &opts, o->fn ? 1 : 0, &fns,
                     o->dep ? (o->dep2 ? 2 : 1) : 0, &deps, &place);
  dl_buf_free(&opts);
  dl_buf_free(&fns);
  dl_buf_free(&deps);
  dl_buf_free(&place);
}

/* Append SUBMIT of key (payload "payload") with the options in o. */
static inline void sm_put_submit(dl_buf *f, const char *key,
                                 const sm_submit *o) {
  dl_buf spec;
  dl_buf_init(&spec);
  sm_put_spec(&spec, o);
  dl_put_submit(f, key, strlen(key), "payload", 7, spec.p, spec.len);
  dl_buf_free(&spec);
}

/* Append CFUNC (the function's bytecode, sent once before its first
   SUBMIT) for hash h. */
static inline void sm_put_cfunc(dl_buf *f, const void *h, const char *code) {
  dl_put_func_msg(f, DL_M_CFUNC, h, code, strlen(code));
}

/* Append DONE of key as a worker says it: 8 bytes, run from 1 to 2 µs,
   no inline value. */
static inline void sm_put_done(dl_buf *f, const char *key, size_t klen) {
  dl_msg_done m;
  m.key = key;
  m.klen = klen;
  m.nbytes = 8;
  m.start_us = 1;
  m.stop_us = 2;
  m.inl = "";
  m.ilen = 0;
  dl_put_done(f, &m);
}

#endif

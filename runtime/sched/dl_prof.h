/*
** dl_prof.h -- a statistical profile: a call tree of named frames, each
** with the number of samples that stopped in it.  Workers sample the Lua
** stacks of their running tasks into one (the root's children are task
** groups, their descendants the functions called, outermost first) and
** send what is new with their heartbeats (DL_M_PROFILE, dl_wire.h); the
** scheduler merges those into a tree per worker and one for the cluster,
** which the dashboard's /profile draws.  Pure C.
**
** Bounded: a tree holds at most the max_nodes given to dl_prof_new (each
** node about 100 bytes).  A sample whose path does not fit is counted in
** the deepest node of it that does, so totals stay true.
*/
#ifndef dl_prof_h
#define dl_prof_h

#include <stddef.h>
#include <stdint.h>

#include "dl_buf.h"

typedef struct dl_prof dl_prof;

/* Frames longer than this are cut to it. */
#define DL_PROF_FRAMELEN 160

/* A new tree holding only its root (node 0, named ""); NULL on out of
   memory. */
dl_prof *dl_prof_new(int max_nodes);
void dl_prof_free(dl_prof *p); /* NULL is fine */

/*
** The child of node parent named frame (len bytes), made if need be:
** its index, or -1 when the tree is full or out of memory.
*/
int dl_prof_child(dl_prof *p, int parent, const char *frame, size_t len);

/* Count n samples that stopped in node i (also as news for
   dl_prof_put_news). */
void dl_prof_count(dl_prof *p, int i, uint64_t n);

/*
** Write the samples counted since the last call as one DL_M_PROFILE
** message to out (nothing when there were none) and forget them as news.
** Returns the number of samples written.
*/
uint64_t dl_prof_put_news(dl_prof *p, dl_buf *out);

/*
** Add the samples of a DL_M_PROFILE message (as checked by
** dl_get_profile) to p; 0 or DL_EPROTO.
*/
struct dl_msg_profile;
int dl_prof_merge_msg(dl_prof *p, const struct dl_msg_profile *m);

/* Add every sample of from to p (both trees keep their shapes). */
void dl_prof_merge(dl_prof *p, const dl_prof *from);

/*
** A time window: with a log, the tree also remembers its last max counts
** (dl_prof_count calls: which node, how many samples, when; 16 bytes
** each), stamped with the time last given to dl_prof_at (any clock, in
** seconds; 0 before the first call).  0, or DL_ENOMEM (no log then).
*/
int dl_prof_keep_log(dl_prof *p, int max);
void dl_prof_at(dl_prof *p, double t);

/*
** Add to p the samples of from counted at time t0 or later, as far as
** from's log reaches (p gets only the paths that have such samples).
** Returns 0 when the log covered all of them, 1 when it had already
** dropped some counts of the window (or from keeps no log: then nothing
** is added).
*/
int dl_prof_merge_since(dl_prof *p, const dl_prof *from, double t0);

/* Walking a tree: nodes are numbered 0 (the root) to dl_prof_size - 1,
   each after its parent.  dl_prof_node gives a node's name (borrowed,
   NUL-terminated; valid until the tree changes), parent (-1 for the root)
   and self count (samples that stopped in it). */
int dl_prof_size(const dl_prof *p);
const char *dl_prof_node(const dl_prof *p, int i, int *parent,
                         uint64_t *self);
/* Samples in the tree. */
uint64_t dl_prof_samples(const dl_prof *p);

#endif

/*
** dl_prof.c -- a statistical profile's call tree.  See dl_prof.h.
**
** Nodes live in one array, each after its parent.  A map from (parent
** index, frame) to the node's index finds children; each node's key block
** (4 bytes of parent index, then the frame and a NUL) is owned by the node
** and is the map's key.
*/
#include <stdint.h>
#include <string.h>

#include "dl_map.h"
#include "dl_prof.h"
#include "dl_wire.h"

typedef struct pnode {
  char *key;         /* owned: parent index (4 bytes), frame, NUL */
  int parent;        /* -1: the root */
  int first, next;   /* first child, next sibling; -1: none */
  int dirty;         /* it or a descendant has news */
  int out;           /* its item number in the message being written */
  uint64_t self, news;
} pnode;

/* One count, for the time window (dl_prof_keep_log). */
typedef struct plog {
  double t;
  int32_t node;
  uint32_t n;
} plog;

struct dl_prof {
  pnode *n;
  int nn, cap, max;
  dl_map idx; /* key -> (void *)(index + 1) */
  uint64_t samples;
  plog *log;      /* ring of logmax counts, or NULL */
  int logmax;
  uint64_t nlog;  /* counts ever logged */
  double now;     /* the time of the counts being made */
};

static char *make_key(int parent, const char *frame, size_t len,
                      size_t *klen) {
  char *k;
  int32_t pp = parent;
  if (len > DL_PROF_FRAMELEN) len = DL_PROF_FRAMELEN;
  k = dl_realloc(NULL, sizeof pp + len + 1);
  if (k == NULL) return NULL;
  memcpy(k, &pp, sizeof pp);
  memcpy(k + sizeof pp, frame, len);
  k[sizeof pp + len] = '\0';
  *klen = sizeof pp + len;
  return k;
}

dl_prof *dl_prof_new(int max_nodes) {
  dl_prof *p = dl_realloc(NULL, sizeof *p);
  if (p == NULL) return NULL;
  memset(p, 0, sizeof *p);
  dl_map_init(&p->idx);
  p->max = max_nodes > 1 ? max_nodes : 2;
  p->cap = 64;
  p->n = dl_realloc(NULL, sizeof *p->n * (size_t)p->cap);
  if (p->n == NULL) {
    dl_free(p);
    return NULL;
  }
  memset(&p->n[0], 0, sizeof p->n[0]);
  p->n[0].parent = p->n[0].first = p->n[0].next = -1;
  p->n[0].key = make_key(-1, "", 0, &(size_t){0});
  if (p->n[0].key == NULL) {
    dl_free(p->n);
    dl_free(p);
    return NULL;
  }
  p->nn = 1;
  return p;
}

void dl_prof_free(dl_prof *p) {
  int i;
  if (p == NULL) return;
  for (i = 0; i < p->nn; i++) dl_free(p->n[i].key);
  dl_free(p->n);
  dl_free(p->log);
  dl_map_free(&p->idx);
  dl_free(p);
}

int dl_prof_child(dl_prof *p, int parent, const char *frame, size_t len) {
  size_t klen;
  char *k;
  void *v;
  pnode *c;
  if (parent < 0 || parent >= p->nn) return -1;
  if (len > DL_PROF_FRAMELEN) len = DL_PROF_FRAMELEN;
  {
    char probe[sizeof(int32_t) + DL_PROF_FRAMELEN];
    int32_t pp = parent;
    memcpy(probe, &pp, sizeof pp);
    memcpy(probe + sizeof pp, frame, len);
    v = dl_map_get(&p->idx, probe, sizeof pp + len);
    if (v) return (int)((intptr_t)v - 1);
  }
  if (p->nn >= p->max) return -1;
  if (p->nn == p->cap) {
    int nc = p->cap * 2 < p->max ? p->cap * 2 : p->max;
    pnode *nn = dl_realloc(p->n, sizeof *nn * (size_t)nc);
    if (nn == NULL) return -1;
    p->n = nn;
    p->cap = nc;
  }
  k = make_key(parent, frame, len, &klen);
  if (k == NULL) return -1;
  if (dl_map_put(&p->idx, k, klen, (void *)(intptr_t)(p->nn + 1))) {
    dl_free(k);
    return -1;
  }
  c = &p->n[p->nn];
  memset(c, 0, sizeof *c);
  c->key = k;
  c->parent = parent;
  c->first = -1;
  c->next = p->n[parent].first;
  p->n[parent].first = p->nn;
  return p->nn++;
}

void dl_prof_count(dl_prof *p, int i, uint64_t n) {
  if (i < 0 || i >= p->nn || n == 0) return;
  p->n[i].self += n;
  p->n[i].news += n;
  p->samples += n;
  if (p->log) {
    plog *e = &p->log[p->nlog++ % (uint64_t)p->logmax];
    e->t = p->now;
    e->node = i;
    e->n = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
  }
  for (; i >= 0 && !p->n[i].dirty; i = p->n[i].parent) p->n[i].dirty = 1;
}

uint64_t dl_prof_put_news(dl_prof *p, dl_buf *out) {
  dl_buf items;
  uint64_t nitems = 0, total = 0;
  int *stack, sp = 0, i;
  if (!p->n[0].dirty) return 0;
  stack = dl_realloc(NULL, sizeof *stack * (size_t)p->nn);
  if (stack == NULL) return 0; /* kept as news for the next time */
  dl_buf_init(&items);
  /* Depth first from the root's children: a parent's item comes first. */
  for (i = p->n[0].first; i >= 0; i = p->n[i].next)
    if (p->n[i].dirty) stack[sp++] = i;
  while (sp > 0) {
    pnode *x = &p->n[stack[--sp]];
    int par = x->parent;
    x->out = (int)++nitems;
    dl_put_profile_item(&items, par == 0 ? 0 : (uint64_t)p->n[par].out,
                        x->key + sizeof(int32_t),
                        strlen(x->key + sizeof(int32_t)), x->news);
    total += x->news;
    x->news = 0;
    x->dirty = 0;
    for (i = x->first; i >= 0; i = p->n[i].next)
      if (p->n[i].dirty) stack[sp++] = i;
  }
  p->n[0].dirty = 0;
  p->n[0].news = 0;
  dl_put_profile(out, nitems);
  dl_buf_put(out, items.p, items.len);
  dl_buf_free(&items);
  dl_free(stack);
  return total;
}

int dl_prof_merge_msg(dl_prof *p, const dl_msg_profile *m) {
  dl_rd r = m->items;
  int *at;
  uint64_t i;
  if (m->n == 0) return 0;
  at = dl_realloc(NULL, sizeof *at * (size_t)(m->n + 1));
  if (at == NULL) return 0; /* these samples are lost, nothing else */
  at[0] = 0;
  for (i = 0; i < m->n; i++) {
    uint64_t parent, count;
    const char *f;
    size_t fl;
    int c;
    if (dl_get_profile_item(&r, &parent, &f, &fl, &count) || parent > i) {
      dl_free(at);
      return DL_EPROTO;
    }
    c = dl_prof_child(p, at[parent], f, fl);
    at[i + 1] = c < 0 ? at[parent] : c;
    dl_prof_count(p, at[i + 1], count);
  }
  dl_free(at);
  return 0;
}

void dl_prof_merge(dl_prof *p, const dl_prof *from) {
  int *at = dl_realloc(NULL, sizeof *at * (size_t)from->nn), i;
  if (at == NULL) return;
  at[0] = 0;
  dl_prof_count(p, 0, from->n[0].self);
  for (i = 1; i < from->nn; i++) {
    const char *k = from->n[i].key + sizeof(int32_t);
    int par = at[from->n[i].parent];
    int c = dl_prof_child(p, par, k, strlen(k));
    at[i] = c < 0 ? par : c;
    dl_prof_count(p, at[i], from->n[i].self);
  }
  dl_free(at);
}

int dl_prof_size(const dl_prof *p) { return p->nn; }

const char *dl_prof_node(const dl_prof *p, int i, int *parent,
                         uint64_t *self) {
  if (i < 0 || i >= p->nn) return NULL;
  if (parent) *parent = p->n[i].parent;
  if (self) *self = p->n[i].self;
  return p->n[i].key + sizeof(int32_t);
}

uint64_t dl_prof_samples(const dl_prof *p) { return p->samples; }

int dl_prof_keep_log(dl_prof *p, int max) {
  plog *l = dl_realloc(NULL, sizeof *l * (size_t)(max > 1 ? max : 1));
  if (l == NULL) return DL_ENOMEM;
  dl_free(p->log);
  p->log = l;
  p->logmax = max > 1 ? max : 1;
  p->nlog = 0;
  return 0;
}

void dl_prof_at(dl_prof *p, double t) { p->now = t; }

int dl_prof_merge_since(dl_prof *p, const dl_prof *from, double t0) {
  size_t nn = (size_t)from->nn;
  uint64_t *self, *sub, k, first;
  int *at, i, partial = 1;
  if (from->log == NULL) return 1;
  self = dl_realloc(NULL, sizeof *self * nn);
  sub = dl_realloc(NULL, sizeof *sub * nn);
  at = dl_realloc(NULL, sizeof *at * nn);
  if (self == NULL || sub == NULL || at == NULL) goto done;
  memset(self, 0, sizeof *self * nn);
  /* The window's counts, newest first, into each node's own samples. */
  first = from->nlog > (uint64_t)from->logmax
              ? from->nlog - (uint64_t)from->logmax : 0;
  if (first == 0) partial = 0; /* nothing was ever dropped */
  for (k = from->nlog; k > first; k--) {
    const plog *e = &from->log[(k - 1) % (uint64_t)from->logmax];
    if (e->t < t0) {
      partial = 0;
      break;
    }
    self[e->node] += e->n;
  }
  /* With its descendants' (children come after their parents), so that
     paths with no samples in the window are left out. */
  memcpy(sub, self, sizeof *sub * nn);
  for (i = from->nn - 1; i > 0; i--) sub[from->n[i].parent] += sub[i];
  dl_prof_count(p, 0, self[0]);
  at[0] = 0;
  for (i = 1; i < from->nn; i++) {
    const char *key = from->n[i].key + sizeof(int32_t);
    int par = at[from->n[i].parent], c;
    if (sub[i] == 0 || par < 0) {
      at[i] = -1;
      continue;
    }
    c = dl_prof_child(p, par, key, strlen(key));
    at[i] = c < 0 ? par : c;
    dl_prof_count(p, at[i], self[i]);
  }
done:
  dl_free(self);
  dl_free(sub);
  dl_free(at);
  return partial;
}

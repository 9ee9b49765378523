/*
** test_client_proto.c -- the pure-C client (dl_client.h) driven against a
** peer process that plays the scheduler over a socketpair, speaking only
** the wire layer (dl_wire.h): submits with their functions sent once,
** batches handed over as they fill, task news, gathers (inline, missing,
** a shared block mapped from the peer's memory, one that cannot be
** mapped and is asked for again, and one named by its address whose read
** is refused: asked for as a file, then files at once), FN_GONE, cancel,
** releases and close.
** No Lua, no libuv, no scheduler: every byte the client sends or reads
** crosses a real socket between two processes.
*/
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dl_client.h"
#include "dl_mem.h"
#include "dl_wire.h"
#include "tap.h"

/* ----------------------------------------------- frames on the socket */

/* Write (wr) or read all n bytes at p: 0, or -1. */
static int io_all(int fd, void *p, size_t n, int wr) {
  char *s = p;
  while (n) {
    ssize_t k = wr ? write(fd, s, n) : read(fd, s, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    s += k;
    n -= (size_t)k;
  }
  return 0;
}

/* A frame: u32 length, then the bytes (a batch of messages). */
static int send_frame(int fd, const char *p, size_t n) {
  uint32_t len = (uint32_t)n;
  if (io_all(fd, &len, sizeof len, 1)) return -1;
  return n ? io_all(fd, (void *)p, n, 1) : 0;
}

/* Append the next frame's bytes to b; its length, or -1. */
static long recv_frame(int fd, dl_buf *b) {
  uint32_t len;
  if (io_all(fd, &len, sizeof len, 0)) return -1;
  if (dl_buf_try_grow(b, len)) return -1;
  if (len && io_all(fd, b->p + b->len, len, 0)) return -1;
  b->len += len;
  return (long)len;
}

/* ------------------------------------------------------------ the peer */

/* The peer's log of what it read: one word per message, "|" per batch. */
static dl_buf plog;
static char known[8][16]; /* function hashes the peer holds */
static int nknown;

static void logf_(const char *s, const char *k, size_t kl) {
  dl_buf_put(&plog, s, strlen(s));
  if (k) dl_buf_put(&plog, k, kl);
  dl_buf_put(&plog, " ", 1);
}

static int is_known(const char *h) {
  int i;
  for (i = 0; i < nknown; i++)
    if (memcmp(known[i], h, 16) == 0) return 1;
  return 0;
}

static const char big_value[] = "a value in the peer's shared block";

/* Answer one GATHER key. */
static void gather_key(dl_buf *out, int shared, uint64_t reqid,
                       const char *k, size_t kl) {
  dl_msg_data d;
  memset(&d, 0, sizeof d);
  d.reqid = reqid;
  d.key = k;
  d.klen = kl;
  if (kl == 4 && memcmp(k, "none", 4) == 0) {
    d.found = 0;
    d.bytes = "";
  } else if (shared && kl == 3 && memcmp(k, "big", 3) == 0) {
    dl_shared_at sa;
    char *blk = dl_realloc(NULL, (size_t)4 << 20); /* kept till exit */
    memcpy(blk + 100, big_value, sizeof big_value);
    if (blk == NULL || dl_mem_share(blk, 4096, &sa.ref)) exit(3);
    sa.pid = (uint64_t)getpid();
    sa.off = 100;
    sa.len = sizeof big_value;
    dl_put_data_shared(out, DL_M_GATHER_REPLY, reqid, k, kl, &sa);
    return;
  } else if (shared && kl == 4 && memcmp(k, "addr", 4) == 0) {
    /* A private block: named by its address (GATHERS), or by a memfd
       copy made now (GATHERF). */
    static char *blk;
    dl_shared_at sa;
    if (blk == NULL) {
      dl_mem_private(1);
      blk = dl_realloc(NULL, (size_t)4 << 20); /* kept till exit */
      dl_mem_private(0);
      if (blk == NULL) exit(3);
      memcpy(blk + 100, big_value, sizeof big_value);
    }
    if ((shared == 2 ? dl_mem_share_file : dl_mem_share)(blk, 4096, &sa.ref))
      exit(3);
    if ((sa.ref.fd == DL_MEM_NOFD) != (shared == 1)) exit(3);
    sa.pid = (uint64_t)getpid();
    sa.off = 100;
    sa.len = sizeof big_value;
    dl_put_data_shared(out, DL_M_GATHER_REPLY, reqid, k, kl, &sa);
    return;
  } else if (kl == 5 && memcmp(k, "rogue", 5) == 0) {
    dl_shared_at sa; /* by reference, whatever was asked: malformed */
    memset(&sa, 0, sizeof sa);
    sa.pid = (uint64_t)getpid();
    sa.ref.fd = DL_MEM_NOFD;
    sa.ref.size = 4096;
    sa.len = 8;
    dl_put_data_shared(out, DL_M_GATHER_REPLY, reqid, k, kl, &sa);
    return;
  } else if (shared && kl == 3 && memcmp(k, "bad", 3) == 0) {
    dl_shared_at sa; /* a block no process holds */
    memset(&sa, 0, sizeof sa);
    sa.pid = (uint64_t)getpid();
    sa.ref.fd = 999;
    sa.ref.size = 4096;
    sa.len = 8;
    dl_put_data_shared(out, DL_M_GATHER_REPLY, reqid, k, kl, &sa);
    return;
  } else {
    d.found = 1;
    d.bytes = k; /* the value of key k is k, for the test */
    d.blen = kl;
  }
  dl_put_data(out, DL_M_GATHER_REPLY, &d);
}

/* Read one batch, log it, answer it. */
static int peer_batch(dl_rd *r, dl_buf *out) {
  logf_("|", NULL, 0);
  while (dl_rd_left(r)) {
    unsigned type = 0;
    if (dl_wire_type(r, &type)) return -1;
    if (type == DL_M_CFUNC) {
      dl_msg_func m;
      if (dl_get_func_msg(r, &m) || nknown == 8) return -1;
      memcpy(known[nknown++], m.hash, 16);
      logf_("F", NULL, 0);
    } else if (type == DL_M_SUBMIT) {
      dl_msg_submit m;
      uint64_t i;
      if (dl_get_submit(r, &m)) return -1;
      for (i = 0; i < m.nfns; i++)
        if (!is_known(m.fns + 16 * i)) logf_("!nofn:", m.key, m.klen);
      logf_("S:", m.key, m.klen);
      if (m.klen > 3 && memcmp(m.key, "err", 3) == 0) {
        dl_msg_err e;
        dl_buf rec;
        dl_buf_init(&rec);
        dl_put_err_rec(&rec, DL_ERR_RAISED, "it failed", "tb", "w1", NULL, 0);
        e.key = m.key;
        e.klen = m.klen;
        e.kind = DL_ERR_RAISED;
        e.rec = rec.p;
        e.rlen = rec.len;
        dl_put_err_msg(out, DL_M_KEY_ERR, &e);
        dl_buf_free(&rec);
      } else if (m.klen == 5 && memcmp(m.key, "inc-1", 5) == 0) {
        dl_msg_key_done d;
        d.key = m.key;
        d.klen = m.klen;
        d.inl = m.payload; /* the result is the payload, for the test */
        d.ilen = m.plen;
        d.nbytes = m.plen;
        dl_put_key_done(out, &d);
      }
    } else if (type == DL_M_RELEASE || type == DL_M_CCANCEL) {
      dl_msg_key m;
      if (dl_get_key_msg(r, &m)) return -1;
      logf_(type == DL_M_RELEASE ? "R:" : "C:", m.key, m.klen);
    } else if (type == DL_M_GATHER || type == DL_M_GATHERS ||
               type == DL_M_GATHERF) {
      int shared = type == DL_M_GATHERF ? 2 : type == DL_M_GATHERS;
      dl_msg_gather m;
      const char *k;
      size_t kl;
      if (dl_get_gather(r, &m)) return -1;
      while (dl_rd_left(&m.keys)) {
        if (dl_get_key(&m.keys, &k, &kl)) return -1;
        logf_(shared == 2 ? "GF:" : shared ? "GS:" : "G:", k, kl);
        gather_key(out, shared, m.reqid, k, kl);
      }
    } else if (type == DL_M_SCATTER) {
      dl_msg_scatter m;
      uint64_t id;
      if (dl_get_scatter(r, &m) || m.nworkers != 2) return -1;
      if (dl_get_id(&m.workers, &id) || id != 3) return -1;
      logf_("T:", m.key, m.klen);
    } else if (type == DL_M_FN_FORGET) {
      dl_msg_hash m;
      if (dl_get_hash_msg(r, &m) || !is_known(m.hash)) return -1;
      nknown = 0; /* the test holds one function: forget it */
      logf_("X", NULL, 0);
    } else if (type == DL_M_COORD) {
      dl_msg_coord m;
      if (dl_get_coord(r, &m)) return -1;
      if (m.op == 1) { /* "drop a function": tell the client */
        dl_put_hash_msg(out, DL_M_FN_GONE, known[0]);
      } else {
        dl_msg_coord_reply rp;
        rp.reqid = m.reqid;
        rp.status = 0;
        rp.bytes = plog.p;
        rp.blen = plog.len;
        dl_put_coord_reply(out, &rp);
      }
    } else {
      return -1;
    }
  }
  return 0;
}

/* The peer: a batch in, an answer out (maybe empty), until a 0 frame. */
static void peer_main(int fd) {
  dl_buf in, out;
  dl_buf_init(&in);
  dl_buf_init(&out);
  for (;;) {
    dl_rd r;
    in.len = out.len = 0;
    if (recv_frame(fd, &in) <= 0) break;
    dl_rd_init(&r, in.p, in.len);
    if (peer_batch(&r, &out)) exit(2);
    if (send_frame(fd, out.p, out.len)) exit(2);
  }
  exit(0);
}

/* ---------------------------------------------------------- the client */

typedef struct plink {
  int fd;
  int batches;  /* handed over */
  int urgent;   /* of which urgent */
  dl_buf news;  /* the peer's answers, not yet read */
} plink;

/* The transport: a frame to the peer, and its answer kept for later. */
static int to_peer(void *ud, const char *p, size_t n, int urgent) {
  plink *l = ud;
  l->batches++;
  l->urgent += urgent != 0;
  if (send_frame(l->fd, p, n)) return DL_EINVAL;
  return recv_frame(l->fd, &l->news) < 0 ? DL_EINVAL : 0;
}

#define MAXNEWS 16
typedef struct seen {
  int n, count;
  dl_cnews ev[MAXNEWS];
  char bytes[MAXNEWS][64]; /* a copy: news borrow the batch */
} seen;

/* Read every answer the peer gave so far. */
static void drain(dl_client *c, plink *l, seen *s) {
  dl_rd r;
  dl_cnews nw;
  int rc;
  static dl_buf keep; /* the news' keys borrow it until the next drain */
  dl_buf_free(&keep);
  keep = l->news;
  dl_buf_init(&l->news);
  s->n = s->count = 0;
  dl_rd_init(&r, keep.p, keep.len);
  while ((rc = dl_client_next(c, &r, &nw, &s->count)) == 1) {
    size_t n = nw.blen < 63 ? nw.blen : 63; /* the log is longer */
    CHECK(s->n < MAXNEWS);
    memcpy(s->bytes[s->n], nw.bytes, n);
    s->bytes[s->n][n] = '\0';
    dl_free(nw.mapped);
    nw.mapped = (char *)s->bytes[s->n]; /* mark: it was mapped */
    if (nw.bytes == NULL) nw.mapped = NULL;
    s->ev[s->n++] = nw;
  }
  CHECK(rc == 0);
}

static int key_is(const dl_cnews *n, const char *k) {
  return n->klen == strlen(k) && memcmp(n->key, k, n->klen) == 0;
}

static const unsigned char hash1[16] = "fn-one-hash-1234";

/* Start one task of fn hash1 with the options o. */
static void submit(dl_client *c, const char *key, const char *payload) {
  dl_client_task_reset(c);
  CHECK(dl_client_task_fn(c, hash1, "code", 4) == 1);
  CHECK(dl_client_task_fn(c, hash1, "code", 4) == 1); /* once per task */
  dl_client_task_submit(c, key, strlen(key), payload, strlen(payload));
}

static void test_against_peer(void) {
  int sv[2], status;
  pid_t pid;
  plink l;
  dl_client c;
  seen s;
  dl_task_opts o;
  uint64_t workers[2] = {3, 4};
  dl_cfut *inc1, *err1, *row0;
  dl_msg_coord q;
  const char *plogp;
  char *logstr;
  int i, before;
  size_t kl;
  const char *k;

  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(sv[0]);
    dl_buf_init(&plog);
    peer_main(sv[1]);
  }
  close(sv[1]);
  memset(&l, 0, sizeof l);
  l.fd = sv[0];
  dl_client_init(&c);
  dl_client_transport(&c, to_peer, &l, DL_CLIENT_SHARED);

  /* A submit: its function goes first, once; the news update records. */
  memset(&o, 0, sizeof o);
  o.priority = 2;
  o.workers = workers;
  o.nworkers = 2;
  dl_client_task_opts(&c, &o);
  inc1 = dl_client_ref(&c, "inc-1", 5);
  err1 = dl_client_ref(&c, "err-1", 5);
  submit(&c, "inc-1", "payload-1 of the first task");
  submit(&c, "err-1", "payload-2");
  CHECK(l.batches == 0); /* queued until a flush */
  CHECK(dl_client_flush(&c, 0) == 0 && l.batches == 1 && l.urgent == 0);
  drain(&c, &l, &s);
  CHECK(s.n == 0 && s.count == 2);
  CHECK(inc1->status == DL_FUT_FINISHED && (inc1->flags & DL_FUT_VALUE));
  CHECK(dl_cfut_len(inc1) == 27 &&
        memcmp(dl_cfut_data(inc1, NULL), "payload-1 of the first task", 27) == 0);
  CHECK(!(inc1->flags & DL_FUT_SMALL)); /* 27 bytes: an allocation */
  CHECK(err1->status == DL_FUT_ERROR && err1->kind == DL_ERR_RAISED);

  /* A map of 3,000 rows: keys made from a stem, the spec shared, the
     batch handed over as it fills. */
  CHECK(dl_client_key_stem(&c, "row-", 4) == 0);
  k = dl_client_key(&c, 0x2a, &kl);
  CHECK(k && kl == 12 && memcmp(k, "row-0000002a", 12) == 0);
  k = dl_client_key(&c, 0x123456789ull, &kl);
  CHECK(k && kl == 13 && memcmp(k, "row-123456789", 13) == 0);
  dl_client_task_reset(&c);
  CHECK(dl_client_task_fn(&c, hash1, "code", 4) == 1); /* sent already */
  dl_client_task_share(&c);
  row0 = dl_client_ref(&c, "row-00000000", 12);
  before = l.batches;
  for (i = 0; i < 3000; i++) {
    k = dl_client_key(&c, (uint64_t)i, &kl);
    dl_client_submit_row(&c, k, kl, "a row's payload", 15);
  }
  CHECK(l.batches - before >= 2); /* 3,000 rows are more than one batch */
  CHECK(dl_client_flush(&c, 0) == 0);
  drain(&c, &l, &s);
  CHECK(s.n == 0 && row0->status == DL_FUT_PENDING);

  /* Gather: inline, missing, a block mapped from the peer, and a block
     that cannot be mapped, asked for again as bytes. */
  dl_client_gather(&c, 7, 4);
  dl_client_gather_key(&c, "inc-1", 5);
  dl_client_gather_key(&c, "none", 4);
  dl_client_gather_key(&c, "big", 3);
  dl_client_gather_key(&c, "bad", 3);
  CHECK(dl_client_flush(&c, 1) == 0 && l.urgent == 1);
  drain(&c, &l, &s);
  CHECK(s.n == 3 && s.count == 3);
  CHECK(s.ev[0].type == DL_CNEWS_DATA && s.ev[0].reqid == 7);
  CHECK(key_is(&s.ev[0], "inc-1") && s.ev[0].found);
  CHECK(strcmp(s.bytes[0], "inc-1") == 0);
  CHECK(key_is(&s.ev[1], "none") && !s.ev[1].found && s.ev[1].blen == 0);
  CHECK(key_is(&s.ev[2], "big") && s.ev[2].found);
  CHECK(strcmp(s.bytes[2], big_value) == 0);
  CHECK(c.out.len > 0); /* "bad" is asked for again, as bytes */
  CHECK(dl_client_flush(&c, 1) == 0);
  drain(&c, &l, &s);
  CHECK(s.n == 1 && key_is(&s.ev[0], "bad") && s.ev[0].found);
  CHECK(strcmp(s.bytes[0], "bad") == 0);

  /* A block named by its address, where reading the peer is refused
     (DLUA_SHARE_MEMORY=map, set in main): asked for again as a file
     (GATHERF), and from then on every gather asks for files at once. */
  for (i = 0; i < 2; i++) {
    dl_client_gather(&c, 8, 1);
    dl_client_gather_key(&c, "addr", 4);
    CHECK(dl_client_flush(&c, 1) == 0);
    drain(&c, &l, &s);
    if (i == 0) {
      CHECK(s.n == 0 && c.out.len > 0 && c.read_refused);
      CHECK(dl_client_flush(&c, 1) == 0);
      drain(&c, &l, &s);
    }
    CHECK(s.n == 1 && key_is(&s.ev[0], "addr") && s.ev[0].found);
    CHECK(s.ev[0].mapped != NULL && strcmp(s.bytes[0], big_value) == 0);
  }

  /* A client that never asks for shared blocks (a remote one) given a
     block by reference: a malformed answer, never mapped. */
  c.flags &= ~(unsigned)DL_CLIENT_SHARED;
  dl_client_gather(&c, 9, 1);
  dl_client_gather_key(&c, "rogue", 5);
  CHECK(dl_client_flush(&c, 1) == 0);
  drain(&c, &l, &s);
  CHECK(s.n == 1 && key_is(&s.ev[0], "rogue") && s.ev[0].bad != NULL);
  CHECK(c.out.len == 0); /* not asked for again */
  c.flags |= DL_CLIENT_SHARED;

  /* FN_GONE: the client forgets the function and says so; the next task
     of it carries it again. */
  memset(&q, 0, sizeof q);
  q.op = 1;
  q.name = "x";
  q.nlen = 1;
  dl_client_coord(&c, &q);
  drain(&c, &l, &s);
  CHECK(s.n == 0 && s.count == 0 && c.out.len > 0); /* FN_FORGET queued */
  submit(&c, "inc-2", "payload-3");

  /* Scatter, cancel (sent at once), and a release riding along. */
  dl_client_scatter(&c, "sc-1", 4, "bytes", 5, workers, 2);
  dl_client_unref(err1);
  dl_client_drop(err1);
  before = l.batches;
  dl_client_cancel_key(&c, "row-00000001", 12);
  CHECK(l.batches == before + 1);
  drain(&c, &l, &s);

  /* The peer's log, through a coord request. */
  q.op = 0;
  q.reqid = 99;
  dl_client_coord(&c, &q);
  drain(&c, &l, &s);
  CHECK(s.n == 1 && s.ev[0].type == DL_CNEWS_COORD && s.ev[0].reqid == 99);
  /* The log is longer than seen's copy: read it from the news batch. */
  {
    dl_rd r;
    dl_cnews nw;
    int cnt = 0;
    dl_buf b;
    dl_buf_init(&b);
    q.reqid = 100;
    dl_client_coord(&c, &q);
    b = l.news;
    dl_buf_init(&l.news);
    dl_rd_init(&r, b.p, b.len);
    CHECK(dl_client_next(&c, &r, &nw, &cnt) == 1);
    logstr = dl_realloc(NULL, nw.blen + 1);
    CHECK(logstr != NULL);
    memcpy(logstr, nw.bytes, nw.blen);
    logstr[nw.blen] = '\0';
    dl_buf_free(&b);
  }
  plogp = logstr;
  /* One function sent, then both tasks, in one batch. */
  CHECK(strncmp(plogp, "| F S:inc-1 S:err-1 |", 21) == 0);
  CHECK(strstr(plogp, "!nofn") == NULL);
  /* Gather as GATHERS, then "bad" again as a plain GATHER. */
  CHECK(strstr(plogp, "| GS:inc-1 GS:none GS:big GS:bad | G:bad |") != NULL);
  CHECK(strstr(plogp, "| GS:addr | GF:addr | GF:addr |") != NULL);
  /* Forgotten, then sent again with the next task. */
  CHECK(strstr(plogp, "| X F S:inc-2 T:sc-1 R:err-1 C:row-00000001 |") !=
        NULL);
  CHECK(strstr(plogp, "S:row-00000bb7 ") != NULL);
  dl_free(logstr);

  /* Close: one RELEASE per live handle, flushed. */
  CHECK(dl_client_close(&c, 1) == 0);
  drain(&c, &l, &s);
  CHECK(dl_cfut_client(inc1) == NULL && dl_cfut_client(row0) == NULL);
  dl_client_drop(inc1);
  dl_client_drop(row0);
  dl_client_free(&c);
  dl_buf_free(&l.news);
  drain(&c, &l, &s); /* frees drain's kept batch */
  CHECK(send_frame(l.fd, NULL, 0) == 0);
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(l.fd);
}

int main(void) {
  /* Reads of the peer's memory by address fail as a ptrace policy makes
     them (EPERM); blocks that come as files are still mapped. */
  setenv("DLUA_SHARE_MEMORY", "map", 1);
  signal(SIGPIPE, SIG_IGN);
  alarm(60); /* a peer that stops answering fails the test, not the suite */
  RUN(test_against_peer);
  return TAP_END();
}

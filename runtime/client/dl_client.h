/*
** dl_client.h -- the client side of the protocol, in pure C (no Lua, no
** libuv): the table of futures, the one owner of what the client knows
** about each key it holds (status, the result that came inline, the error
** record, whether done-callbacks wait); the batch of outgoing messages and
** its hand-over through a transport callback; the set of function hashes
** the scheduler already holds; and the reading of the scheduler's answers
** (task news, gather replies, shared blocks to map or ask for again).
** The Lua binding (runtime/lua/dl_cluster_lua.c) only converts: it encodes
** Lua values into payloads, keeps one small userdata per Lua future that
** points at its record here, and turns the news this module hands out
** into Lua values.
**
** A record (dl_cfut) is made by the first handle of its key and counts
** two things: refs, the live handles, and holds, every handle that still
** points at the record, released or not (the memory goes with the last
** hold).  The scheduler counts a client's handles of a key one by one
** (each SUBMIT, SCATTER or primitive's answer that names the key is one),
** so each live handle given back, by release, garbage collection or the
** client's close, queues one DL_M_RELEASE; the task's result lives while
** any is out.  A record is in the table while refs > 0;
** closing the client detaches every record (client becomes 0), so that
** handles that outlive their client see "closed" and free their memory
** when they go.
**
** Messages: every call that makes a message appends it to the client's
** batch (c->out); dl_client_flush hands the batch to the transport.  Task
** submits flush by themselves once the batch holds DL_CLIENT_FLUSH_AT
** bytes, so a long map lets the cluster start on its first tasks; calls
** whose answer the caller is about to wait for (cancel, gather, coord)
** flush at once, marked urgent.
**
** Memory: one record is 28 bytes plus the key and a NUL, rounded up to 8
** (stored once, here, in a block of the process's record slab; the map
** points into it), or 35 and 4 for a key made from the client's stem
** (dl_client_key_stem) and a counter of 8 hex digits, which keeps the
** counter and names the stem by its number in the process's table of
** stems (DL_FUT_STEM: 32 bytes, not 56, for a 20-byte key; the record
** names its client by a number too); a result of up to 8 bytes, or of up to 8 after the
** head that every value starts with (DL_FUT_HEAD), lives in the record,
** a bigger one in an allocation of its own, its length first; a map slot
** is 8 bytes (the map reads each key in its record: dl_imap).  The record
** keeps 4 bytes for its user (owner): the Lua binding writes there the
** client of the record's first future, so that a future of that client
** need not carry its own (a 40-byte userdata, not 48).
*/
#ifndef dl_client_h
#define dl_client_h

#include <stddef.h>
#include <stdint.h>

#include "dl_buf.h"
#include "dl_map.h"
#include "dl_wire.h"

enum {
  DL_FUT_PENDING = 0,
  DL_FUT_FINISHED = 1,
  DL_FUT_ERROR = 2,
  DL_FUT_CANCELLED = 3
};

/* Record flags. */
#define DL_FUT_VALUE 1u     /* data holds the encoded result (FINISHED) */
#define DL_FUT_CALLBACKS 2u /* done-callbacks wait: fire when done */
#define DL_FUT_SMALL 4u     /* the bytes are in data.small, not data.p */
#define DL_FUT_HEAD 8u      /* with SMALL: data.small holds the bytes after
                               the process's head (dl_cfut_data) */
#define DL_FUT_STEM 16u     /* the key is a stem's and a counter: klen is
                               the stem's number, key the counter's 4
                               bytes (read it with dl_cfut_key) */

/* The head of small values (see dl_cfut_data), and the room a reader
   gives dl_cfut_data. */
#define DL_CFUT_HEAD 9
#define DL_CFUT_BUF (DL_CFUT_HEAD + 8)

typedef struct dl_client dl_client;
typedef struct dl_cfut dl_cfut;

struct dl_cfut {
  union {        /* encoded value (VALUE) or error record (ERROR): */
    char *p;     /* owned, its length (uint32_t) then the bytes; NULL when
                    there are none; a value or record of 4 GiB or more is
                    not kept */
    char small[8]; /* DL_FUT_SMALL: up to 8 bytes, here, or with
                      DL_FUT_HEAD up to 8 after the head (an integer's
                      encoding is 11 to 13 bytes, 9 of them the head) */
  } data;        /* read it with dl_cfut_data and dl_cfut_len */
  uint32_t refs;  /* live handles */
  uint32_t holds; /* handles pointing here, released or not */
  uint32_t klen;  /* or, with DL_FUT_STEM, the stem's number */
  uint32_t owner; /* the user's (0 when made): never read here */
  uint32_t slen : 5;   /* DL_FUT_SMALL: the length (head included, at most
                          DL_CFUT_BUF), else 0 */
  uint32_t flags : 5;  /* DL_FUT_VALUE | DL_FUT_CALLBACKS | DL_FUT_SMALL
                          ... */
  uint32_t status : 2; /* DL_FUT_* */
  uint32_t kind : 6;   /* error kind (DL_ERR_*), ERROR and CANCELLED */
  uint32_t client : 14; /* its client's number in the process's table
                           (dl_cfut_client); 0 once detached (released for
                           good, or closed): 2 bytes, not a pointer's 8 */
  char key[1];    /* klen bytes and a NUL, at byte 28: a 20-byte key
                     makes a 56-byte record; with DL_FUT_STEM the
                     counter (4 bytes): 32 bytes */
};

/* The most clients a process has at once (the records' 14 bits; a
   client past them makes no record: dl_client_ref says out of memory). */
#define DL_CLIENT_MAX ((1u << 14) - 1)

/* f's client, or NULL once f is detached. */
dl_client *dl_cfut_client(const dl_cfut *f);

/* The room a reader gives dl_cfut_key. */
#define DL_CFUT_KEYBUF 256

/* f's key, NUL-terminated, and its length in *len: f's own, or put
   together in buf (DL_FUT_STEM), valid while buf is. */
const char *dl_cfut_key(const dl_cfut *f, char buf[DL_CFUT_KEYBUF],
                        size_t *len);

/*
** The transport: hand over n bytes of messages (a batch; the callee copies
** what it keeps).  urgent: the caller is about to wait for an answer.
** Returns 0, or a negative code when the peer is gone.
*/
typedef int (*dl_client_send_fn)(void *ud, const char *p, size_t n,
                                  int urgent);

/* Transport flags (dl_client_transport). */
#define DL_CLIENT_SHARED 1u /* gathers may answer with blocks to map */
#define DL_CLIENT_EAGER 2u  /* every release goes at once, and every task
                               carries its functions (a task's client on a
                               worker: nothing may wait for a next call) */

/* A batch is handed over once it holds this many bytes. */
#define DL_CLIENT_FLUSH_AT ((size_t)16 * 1024)

/* The bytes of f's value or error record (dl_cfut_len of them), or NULL:
   f's own, or (DL_FUT_HEAD) put together in buf, valid while buf is. */
const char *dl_cfut_data(const dl_cfut *f, char buf[DL_CFUT_BUF]);

/* The length of f's value or error record (0 when it has none). */
size_t dl_cfut_len(const dl_cfut *f);

struct dl_client {
  dl_imap futs;    /* key -> dl_cfut, the records with refs > 0 (the key is
                     in the record: an 8-byte slot) */
  dl_cfut **fired; /* done with callbacks waiting, each with a hold */
  size_t nfired, capfired;
  dl_buf out;      /* messages not yet handed over */
  dl_map fns_sent; /* hash (16 bytes, owned) -> itself: the scheduler has
                      the function */
  dl_client_send_fn send; /* NULL: nothing is sent (no transport, closed) */
  void *ud;
  unsigned flags; /* DL_CLIENT_* */
  int read_refused; /* reading a worker's block by its address was refused
                       (EPERM: a ptrace policy, the same for every worker):
                       gathers ask for memfds (GATHERF) from then on */
  /* The task being built (dl_client_task_*): */
  dl_buf opts;     /* its options before the function hashes */
  dl_buf place;    /* its options after the dependencies */
  dl_buf fns;      /* function hashes, 16 bytes each */
  dl_buf deps;     /* dependency keys (dl_put_key) */
  uint64_t nfns, ndeps;
  dl_buf spec;     /* dl_client_task_share: the joined spec of a row */
  dl_buf tail;     /* dl_client_task_share_tail: a row's spec after its
                      options */
  dl_buf key;      /* dl_client_key: the key being made (len: the stem's) */
  uint32_t stem;   /* the stem's number in the process's table, plus 1; 0
                      when it has none (records then keep whole keys) */
  uint32_t num;    /* its number in the process's table of clients (its
                      records' client), 0 when the table was full */
};

void dl_client_init(dl_client *c);

/* Messages go through send(ud, ...) from now on, with flags DL_CLIENT_*.
   send NULL: none are sent any more (the queue is dropped at each flush). */
void dl_client_transport(dl_client *c, dl_client_send_fn send, void *ud,
                         unsigned flags);

/* Detach every record (handles then see a closed client), free what no
   handle holds and every buffer.  c can be initialised again.  */
void dl_client_free(dl_client *c);

/*
** Close: with send, queue one DL_M_RELEASE for every live handle of every
** key and flush; then detach every record as dl_client_free does (the
** transport stays).  Returns the flush's code (0 without send).
*/
int dl_client_close(dl_client *c, int send);

/*
** Hand the batch to the transport now (urgent: see dl_client_send_fn) and
** empty it, sent or not.  0, or the transport's code.
*/
int dl_client_flush(dl_client *c, int urgent);

/*
** A new handle of key: the record of key (made PENDING if there was none)
** with refs and holds counted.  NULL when out of memory.
*/
dl_cfut *dl_client_ref(dl_client *c, const char *key, size_t klen);

/* Room for n new keys in the table, made at once (before a map of n
   tasks).  0 or DL_ENOMEM; an optimisation only: refs work either way. */
int dl_client_reserve(dl_client *c, size_t n);

/* Another handle of the live record f (refs and holds counted). */
void dl_client_ref_again(dl_cfut *f);

/* The live record of key, or NULL.  Borrowed. */
dl_cfut *dl_client_get(dl_client *c, const char *key, size_t klen);

/*
** A handle of f is released (explicitly, or by garbage collection): each
** live handle of an attached record queues one DL_M_RELEASE (the scheduler
** counted one per handle; sent at once with DL_CLIENT_EAGER), and the last
** removes the record from the table.  The hold stays: drop it with
** dl_client_drop.
*/
void dl_client_unref(dl_cfut *f);

/* A handle no longer points at f: the last one frees it.  f must have no
   live handle left from this caller (call dl_client_unref first). */
void dl_client_drop(dl_cfut *f);

/*
** The scheduler's news.  done: key is in memory, with its encoded value
** when it came inline (blen > 0); err: it failed with error kind and the
** error record rec.  A record that is finished or cancelled already stays
** as it is (a recomputation's news, or a cancel here in flight).  A record
** with callbacks lands in the fired list.  Keys the client does not hold
** are ignored.  0, or DL_ENOMEM (the record is then left pending).
*/
int dl_client_done(dl_client *c, const char *key, size_t klen,
                   const char *bytes, size_t blen);
int dl_client_err(dl_client *c, const char *key, size_t klen, int kind,
                  const char *rec, size_t rlen);

/* Cancelled here: status CANCELLED, data dropped; fires callbacks. */
void dl_client_cancel(dl_cfut *f);

/* A finished result was lost (its worker died): pending again. */
void dl_client_repend(dl_cfut *f);

/*
** Take the fired list: *n records, each carrying a hold that the caller
** drops with dl_client_drop.  The array is the caller's to free with
** dl_free.  Returns NULL when none fired.
*/
dl_cfut **dl_client_take_fired(dl_client *c, size_t *n);

/* ------------------------------------------------------ outgoing work */

/* A task's options (see DL_M_SUBMIT in dl_wire.h). */
typedef struct dl_task_opts {
  int64_t priority, order;
  uint64_t retries, timeout_ms;
  const uint64_t *workers; /* borrowed: nworkers worker ids, or NULL */
  size_t nworkers;
  int allow_other;
} dl_task_opts;

/*
** Building a task: dl_client_task_opts sets the options of the tasks that
** follow; dl_client_task_reset starts one (no functions, no dependencies);
** the encoder of its payload calls dl_client_task_fn for each function it
** meets and dl_client_task_dep for each future; dl_client_task_submit
** queues the SUBMIT.  A function the scheduler may lack (the first time,
** or every time with DL_CLIENT_EAGER) is queued as a CFUNC first.
** dl_client_task_fn returns 1, or 0 when out of memory (the fn sink's
** convention, dl_codec.h); dl_client_task_fn_at also sets *at to the
** function's position among the task's (dl_fnsink.put_at: the payload
** names it by that position, and the scheduler sends the hashes with the
** task).
*/
void dl_client_task_opts(dl_client *c, const dl_task_opts *o);
void dl_client_task_reset(dl_client *c);
int dl_client_task_fn(dl_client *c, const unsigned char hash[16],
                      const char *code, size_t len);
int dl_client_task_fn_at(dl_client *c, const unsigned char hash[16],
                         const char *code, size_t len, uint64_t *at);
void dl_client_task_dep(dl_client *c, const char *key, size_t klen);
void dl_client_task_submit(dl_client *c, const char *key, size_t klen,
                           const char *payload, size_t plen);

/*
** Rows of a map: dl_client_task_share keeps the spec of the task built so
** far (options, functions, dependencies) and dl_client_submit_row queues
** a SUBMIT of key with payload and that spec.
*/
void dl_client_task_share(dl_client *c);
void dl_client_submit_row(dl_client *c, const char *key, size_t klen,
                          const char *payload, size_t plen);

/*
** Rows whose options differ (a delayed graph: each task has its order):
** dl_client_task_share_tail keeps the spec of the task built so far less
** its options (functions, dependencies, placement), and
** dl_client_submit_tail queues a SUBMIT of key with payload, the options
** of the last dl_client_task_opts and that kept part.
*/
void dl_client_task_share_tail(dl_client *c);
void dl_client_submit_tail(dl_client *c, const char *key, size_t klen,
                           const char *payload, size_t plen);

/*
** Keys made from a stem: dl_client_key_stem sets it, dl_client_key returns
** the stem followed by n in lower-case hex, 8 digits at least (the format
** of lua/dlua/keys.lua), in c's buffer: borrowed, valid until the next
** call.  *klen gets its length.  dl_client_key_stem: 0 or DL_ENOMEM;
** dl_client_key: NULL when out of memory.  The records of keys made so
** (or of the same form: the stem and 8 lower-case hex digits) keep the
** counter only (DL_FUT_STEM); a stem of more than DL_CLIENT_STEM_MAX
** bytes, or one past the process's first DL_CLIENT_STEMS, is not kept
** (its keys are kept whole): stems stay for the process's life.
*/
#define DL_CLIENT_STEM_MAX 200
#define DL_CLIENT_STEMS 65536
int dl_client_key_stem(dl_client *c, const char *stem, size_t len);
const char *dl_client_key(dl_client *c, uint64_t n, size_t *klen);

/* Cancel the task of key (sent at once). */
void dl_client_cancel_key(dl_client *c, const char *key, size_t klen);

/*
** Ask for the values of nkeys keys under reqid: dl_client_gather, then
** nkeys dl_client_gather_key, then dl_client_flush(c, 1).  The answers
** come as DL_CNEWS_DATA news, one per key.
*/
void dl_client_gather(dl_client *c, uint64_t reqid, uint64_t nkeys);
void dl_client_gather_key(dl_client *c, const char *key, size_t klen);

/* Keep bytes (a codec value) under key on a worker: one of the nworkers
   ids (none: the worker with the least data). */
void dl_client_scatter(dl_client *c, const char *key, size_t klen,
                       const char *bytes, size_t blen,
                       const uint64_t *workers, size_t nworkers);

/* A Variable / Queue / Event / Semaphore request (sent at once). */
void dl_client_coord(dl_client *c, const dl_msg_coord *m);

/* ---------------------------------------------------------- the news */

enum { DL_CNEWS_DATA = 1, DL_CNEWS_COORD = 2 };

/*
** News for the caller.  DATA: the answer of a gather for key: found 0
** (no such value: bytes empty) or 1 (bytes are the codec value).  COORD:
** a coord answer with status and bytes.  bytes borrow the batch being
** read, or a mapped block (mapped, not NULL) that the caller frees with
** dl_free once done with bytes.
*/
typedef struct dl_cnews {
  int type;
  uint64_t reqid, status;
  const char *key, *bytes;
  size_t klen, blen;
  int found;
  char *mapped;
  const char *bad; /* data news: why the answer is malformed, or NULL */
} dl_cnews;

/*
** Read the scheduler's messages in r up to the next news for the caller:
** task news update the future table (dl_client_done, dl_client_err), a
** FN_GONE forgets its hash and queues the FN_FORGET, a shared block that
** cannot be mapped is asked for again as bytes (its new answer comes
** later).  *count grows by one per message handled (task news, data and
** coord answers).  Returns 1 with *news filled, 0 at the end of r or at a
** malformed or unknown message (the rest is dropped), DL_ENOMEM.
*/
int dl_client_next(dl_client *c, dl_rd *r, dl_cnews *news, int *count);

/*
** As dl_client_next, for the task news only (and FN_GONE): stops before
** the first message that is news for the caller (a gather or coord
** answer), leaving r there, or at the end of r.  A client reads these
** between submits; the rest waits for its next dl_client_next.  Returns
** 0, or DL_ENOMEM (r is then at the message that could not be handled).
*/
int dl_client_next_tasks(dl_client *c, dl_rd *r, int *count);

#endif

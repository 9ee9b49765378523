/*
** dl_proto.h -- framing and connections between the scheduler, workers and
** peers.
**
** A frame is a 4-byte little-endian length followed by that many bytes of
** messages; each message is a type byte and fields written with dl_buf's
** varints and length-prefixed strings.  A connection collects messages
** during one loop iteration and sends them as one frame before the loop
** sleeps ("batch everything on the wire").  Pure C on libuv: no Lua.
*/
#ifndef dl_proto_h
#define dl_proto_h

#include <uv.h>

#include "dl_buf.h"
#include "dl_mem.h"

/* Largest frame accepted from a peer (bytes). */
#define DL_MAX_FRAME ((size_t)0xFFFFFFF0u)

/* Message types.  Direction in the comment; fields in order. */
enum {
  /* worker -> scheduler */
  DL_M_HELLO = 1,   /* id, pid, nthreads, memory_limit, peer address */
  DL_M_DONE,        /* key, nbytes, start_us, stop_us, inline value or "" */
  DL_M_ERR,         /* key, kind, errbytes (codec-encoded error table) */
  DL_M_MISSING,     /* key, depkey: a dependency could not be fetched */
  DL_M_HEARTBEAT,   /* managed, spilled, rss, executing, stored, paused,
                       spill error ("" when spilling works) */
  DL_M_FREED,       /* key: a value was dropped (e.g. memory restart) */
  DL_M_STOLEN,      /* key, ok: a queued task was (ok=1) handed back */
  DL_M_SECEDE,      /* key, waited key or "": the running task waits (for
                       that task); it no longer counts as occupying a slot */
  /* A worker's tasks also send client messages (dlua.get_client in a
     task): SUBMIT, CFUNC, RELEASE, GATHER, SCATTER, CCANCEL; the answers
     (KEY_DONE, KEY_ERR, GATHER_REPLY) come back on the worker's link. */
  /* scheduler -> worker */
  DL_M_COMPUTE = 20, /* key, prio, timeout_ms, payload, ndeps,
                        {depkey, nwho, {worker id}} */
  DL_M_FUNC,         /* hash16, bytecode */
  DL_M_FREE,         /* key */
  DL_M_CANCEL,       /* key */
  DL_M_STORE,        /* key, bytes */
  DL_M_PEER,         /* worker id, address ("" = gone) */
  DL_M_SHUTDOWN,     /* (none) */
  DL_M_STEAL,        /* key: give the task back if it has not started */
  DL_M_FUNC_FREE,    /* hash16: no task needs this bytecode any more */
  DL_M_CYCLE,        /* key, message: the task's wait closes a cycle */
  /* peer <-> peer (and the scheduler fetching for its client) */
  DL_M_GET = 40,    /* reqid, key */
  DL_M_DATA,        /* reqid, key, found (0/1), bytes; or found = 2 and
                       bytes holding pid, fd, inode, size, offset, length:
                       the value lies in a block of the sender's to map
                       (dl_mem_map) */
  DL_M_GETS,        /* reqid, key: a GET that takes a found = 2 answer */
  /* client -> scheduler */
  DL_M_SUBMIT = 60, /* key, payload, prio, order, retries, timeout_ms,
                       nfn {hash16}, ndeps {key}, nworkers {id}, allow_other */
  DL_M_CFUNC,       /* hash16, bytecode */
  DL_M_RELEASE,     /* key */
  DL_M_GATHER,      /* reqid, nkeys {key} */
  DL_M_SCATTER,     /* key, bytes, nworkers {id} */
  DL_M_CCANCEL,     /* key */
  DL_M_INFO,        /* reqid */
  DL_M_SCALE,       /* n */
  DL_M_WANT,        /* key: the client holds one more future of key */
  DL_M_GATHERS,     /* as GATHER, and big values may come as found = 2 */
  DL_M_FN_FORGET,   /* hash16: the client forgot it sent this bytecode
                       (the answer to DL_M_FN_GONE) */
  DL_M_COORD,       /* reqid, op, name, timeout_ms (0: none, else 1 + ms),
                       n, lease, bytes: a Variable / Queue / Event /
                       Semaphore request (dl_coord.h); tasks send it too */
  /* scheduler -> client */
  DL_M_KEY_DONE = 80, /* key, nbytes, inline value or "" */
  DL_M_KEY_ERR,       /* key, kind, errbytes */
  DL_M_GATHER_REPLY,  /* reqid, nkeys {key, status, bytes} */
  DL_M_INFO_REPLY,    /* reqid, text-encoded info (codec data) */
  DL_M_KEY_LOST,      /* key: no longer known (released elsewhere) */
  DL_M_FN_GONE,       /* hash16: no task needs this bytecode: send it
                         again with the next task that does, and answer
                         DL_M_FN_FORGET */
  DL_M_COORD_REPLY    /* reqid, status (DL_CO_*), bytes */
};

/* Error kinds carried by DL_M_ERR / DL_M_KEY_ERR. */
enum {
  DL_ERR_RAISED = 1, /* the task raised */
  DL_ERR_CANCELLED,  /* cancelled by the client */
  DL_ERR_TIMEOUT,    /* exceeded its per-task timeout */
  DL_ERR_KILLED,     /* killed too many workers */
  DL_ERR_DEP,        /* a dependency failed */
  DL_ERR_LOST        /* could not be computed (no worker can run it) */
};

typedef struct dl_conn dl_conn;
typedef struct dl_flusher dl_flusher;

/* Called once per complete frame; p/n are borrowed for the call only. */
typedef void (*dl_frame_cb)(dl_conn *c, const char *p, size_t n);
/* Called once when the connection is gone (EOF, error or dl_conn_close). */
typedef void (*dl_close_cb)(dl_conn *c);

struct dl_conn {
  uv_pipe_t pipe;
  dl_buf in;
  dl_buf out; /* next frame: 4-byte hole, then messages */
  dl_frame_cb on_frame;
  dl_close_cb on_close;
  dl_flusher *fl;
  dl_conn *next_dirty;
  void *data; /* owner's */
  int dirty;
  int closing;
  int stolen; /* the frame being handled took the input buffer */
  int refs; /* the conn is freed when this drops to zero */
};

/* Per-loop list of connections with pending messages. */
struct dl_flusher {
  uv_prepare_t prep;
  dl_conn *dirty;
};

/* Start flushing dirty connections of loop before each poll. */
int dl_flusher_init(dl_flusher *fl, uv_loop_t *loop);
/* Flush every dirty connection now. */
void dl_flusher_flush(dl_flusher *fl);
void dl_flusher_close(dl_flusher *fl);

/*
** Allocate a connection on loop.  The caller then opens it (dl_conn_open_fd
** or dl_conn_connect) and it reads frames until closed.  The conn is freed
** by libuv's close callback after on_close has run.
*/
dl_conn *dl_conn_new(uv_loop_t *loop, dl_flusher *fl, dl_frame_cb on_frame,
                     dl_close_cb on_close, void *data);
/* Adopt an open socket fd and start reading; 0 or a libuv error. */
int dl_conn_open_fd(dl_conn *c, int fd);
/* Connect to a Unix socket path; reading starts when connected. */
int dl_conn_connect(dl_conn *c, const char *path);
/* Start reading on an accepted stream (after uv_accept into c->pipe). */
int dl_conn_start(dl_conn *c);
/*
** The buffer to append the next message to; it is sent with the others of
** this loop iteration.  Borrowed; valid until the next flush.
*/
dl_buf *dl_conn_msg(dl_conn *c);
/* Send what is pending now (normally the flusher does it). */
void dl_conn_flush(dl_conn *c);
/*
** Send one frame made of hdr (copied) followed by the n bytes at data,
** without copying data: it must stay valid until done(ud) is called
** (after the write, or at once if the write could not start).  Pending
** messages are flushed first so order is kept.
*/
int dl_conn_send_ref(dl_conn *c, const char *hdr, size_t hlen,
                     const char *data, size_t n, void (*done)(void *),
                     void *ud);

/*
** Called from on_frame: take ownership of the input buffer when the frame
** being handled is the only thing in it (big values arrive that way).
** Returns the buffer (free it with dl_free; the frame's bytes are inside
** it where on_frame was told) or NULL, in which case nothing changes.
*/
char *dl_conn_take_input(dl_conn *c, const char *frame);

/* Close: pending output is flushed first; on_close runs once. */
void dl_conn_close(dl_conn *c);

/* Message field helpers: write a string / read a string or varint. */
#define DL_PUT_KEY(b, s, n) dl_buf_str((b), (s), (n))

/*
** Where a value lies in another local process's block: the bytes of a
** found = 2 answer (DL_M_DATA) and of the gather reply that passes it on.
*/
typedef struct dl_shared_at {
  uint64_t pid;   /* the process holding the block */
  dl_mem_ref ref; /* the block, as dl_mem_share described it */
  uint64_t off;   /* where the value starts in the block */
  uint64_t len;   /* its length */
} dl_shared_at;

/* Append sa to b as one length-prefixed string; 0 or DL_ENOMEM. */
int dl_shared_at_write(dl_buf *b, const dl_shared_at *sa);

/* Read sa from the n bytes at p (a string written by dl_shared_at_write);
   0, or DL_EPROTO if they are malformed or describe an impossible span. */
int dl_shared_at_read(const char *p, size_t n, dl_shared_at *sa);

/* Map the block sa names (dl_mem_map): its start, to free with dl_free;
   the value is at start + sa->off.  NULL if it cannot be mapped. */
const char *dl_shared_at_map(const dl_shared_at *sa);

#endif

/*
** dl_conn.h -- connections that move frames, over pluggable transports.
**
** A frame is a 4-byte little-endian length followed by that many bytes of
** messages (their layouts: dl_wire.h).  A connection collects messages
** during one loop iteration and sends them as one frame before the loop
** sleeps ("batch everything on the wire").  Pure C on libuv: no Lua.
**
** Transports.  Reading and writing frames is the same on every libuv
** stream; what differs between Unix sockets and TCP is how a handle is
** made, connected and bound.  That part is a dl_transport (a small table
** of functions); the connection and listener code below is shared.
**
** Adding a transport (e.g. TCP):
**   1. write runtime/wire/dl_transport_<name>.c defining a const
**      dl_transport with init / connect / bind for its handle type (the
**      dl_handle union already has room for a uv_tcp_t);
**   2. give it an address prefix ("tcp://") and add it to the table in
**      dl_transport_for (dl_conn.c): an address selects its transport, so
**      the scheduler and the worker, which pass addresses around as
**      strings, need no change;
**   3. anything the transport must do before frames flow (a handshake,
**      authentication) belongs in its connect / accept path, before the
**      connection starts reading (conn_start in dl_conn.c); add a test
**      in tests/c/wire/.
*/
#ifndef dl_conn_h
#define dl_conn_h

#include <uv.h>

#include "dl_buf.h"
#include "dl_wire.h"

/* A libuv stream handle of any transport. */
typedef union dl_handle {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_pipe_t pipe;
  uv_tcp_t tcp;
} dl_handle;

/*
** A transport: how to make, connect and bind its kind of stream.  Each
** function returns 0 or a libuv error code.
*/
typedef struct dl_transport {
  const char *name;   /* "unix" */
  const char *prefix; /* address prefix that selects it ("" = any other) */
  /* Initialise h as this transport's handle on loop. */
  int (*init)(uv_loop_t *loop, dl_handle *h);
  /* Start connecting h to addr (prefix included); cb runs when done. */
  int (*connect)(dl_handle *h, const char *addr, uv_connect_t *req,
                 uv_connect_cb cb);
  /* Bind h to addr, for a listener. */
  int (*bind)(dl_handle *h, const char *addr);
} dl_transport;

/* Unix-domain sockets: an address is a file system path. */
extern const dl_transport dl_transport_unix;
/* TCP with authentication (dl_tcp.h): an address is "tcp://host:port".
   Connecting dials and runs the handshake with the credentials given to
   dl_transport_tcp_setup; binding is refused (listen with dl_tcp_listen,
   which authenticates each peer, and adopt its sockets with
   dl_conn_open_fd). */
extern const dl_transport dl_transport_tcp;
struct dl_tcp_opts;
/* The token and version this process's TCP connections present; opts is
   copied, what it points to is borrowed for the process's life. */
void dl_transport_tcp_setup(const struct dl_tcp_opts *opts);

/* The transport an address names (by its prefix); never NULL. */
const dl_transport *dl_transport_for(const char *addr);

typedef struct dl_conn dl_conn;
typedef struct dl_flusher dl_flusher;
typedef struct dl_wgate dl_wgate;
typedef struct dl_rgate dl_rgate;
typedef struct dl_bigsend dl_bigsend;

/* Called once per complete frame; p/n are borrowed for the call only. */
typedef void (*dl_frame_cb)(dl_conn *c, const char *p, size_t n);
/* Called once when the connection is gone (EOF, error or dl_conn_close). */
typedef void (*dl_close_cb)(dl_conn *c);

struct dl_conn {
  dl_handle h; /* initialised when opened (open_fd, connect, accept) */
  const dl_transport *tr; /* NULL until opened */
  uv_loop_t *loop;
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
  dl_wgate *gate; /* borrowed, or NULL: see dl_wgate */
  dl_rgate *rgate; /* borrowed, or NULL: see dl_rgate */
  /* Frames of dl_conn_send_ref still to write, oldest first; while there
     are any, other messages wait in out. */
  dl_bigsend *big, *big_tail;
  uv_write_t breq;        /* the chunk being written */
  char *sbounce, *rbounce; /* bounce buffers (dl_conn.c), or NULL */
  /* The TLS session that came with the socket, and its buffers
     (dl_conn.c), or NULL: see dl_tls.h. */
  struct dl_tlsconn *tls;
};

/*
** A write gate lets one other thread write whole frames on a connection's
** socket itself, without waking the loop's thread: a worker's executor
** sends its tasks' requests to the scheduler that way (one thread
** hand-off less per request).  The gate outlives its connection and is
** owned by whoever made it.  The loop's thread takes the gate's lock
** around each of its writes and records the bytes libuv still holds; the
** other thread writes only while libuv holds none, so frames never
** interleave and never overtake one another.  When the connection shuts,
** the gate closes before its descriptor does.
*/
struct dl_wgate {
  uv_mutex_t lock;
  int fd;        /* the socket; -1 while closed (under lock) */
  /* A TLS connection's session (dl_tls *), or NULL: the other thread
     encrypts its frames, and the loop's thread uses the session only with
     the lock held (under lock). */
  void *tls;
  size_t queued; /* bytes handed to libuv and not yet written, or more;
                    never less (under lock) */
};

/* Initialise g, closed.  0 or a libuv error. */
int dl_wgate_init(dl_wgate *g);
/* Open g on c's socket (c open): c's writes go through it from now on.
   On a TLS connection the other thread encrypts its frames itself, the
   session shared under g's lock. */
void dl_conn_set_gate(dl_conn *c, dl_wgate *g);
/*
** From any thread but c's loop's, with g's lock held (uv_mutex_lock on
** g->lock): write one frame of the n bytes of messages at p to g's
** socket now.  Returns 0 when written; UV_EAGAIN, with nothing written,
** when the loop's thread has bytes on their way (the caller hands the
** messages to that thread instead), or when g is closed; another libuv
** error when the socket failed (the connection is going: the messages
** are lost with it, and g is closed).  A frame the socket takes only in part is finished here, waiting
** for the socket as long as it takes.
*/
int dl_wgate_write(dl_wgate *g, const char *p, size_t n);

/*
** A read gate lets one other thread read a connection's socket itself
** and handle the frames it can, without waking the loop's thread: a
** worker's executor that waits for its next task takes it from the
** scheduler's link that way (two thread wake-ups less per task).  The
** gate outlives its connection and is owned by whoever made it.  The
** loop's thread holds the gate's lock from before each read of libuv's to
** the end of the frames it handles (alloc and read callbacks); the other
** thread reads only while the loop's thread holds no part of a frame and
** nothing is left over for it, and whatever it does not handle is left
** to the loop's thread, in order, ahead of the socket's next bytes.  So
** frames are handled one at a time and in the order they came.  When the
** connection shuts, the gate closes before its descriptor does.
*/
struct dl_rgate {
  uv_mutex_t lock;
  int fd;      /* the socket; -1 while closed (under lock) */
  int idle;    /* the loop's thread holds no part of a frame (under lock) */
  dl_buf left; /* bytes the other thread read and did not handle, for the
                  loop's thread (under lock) */
  int held;    /* the loop's thread holds lock (that thread only) */
  char buf[16384]; /* the other thread's reads (under lock) */
};

/* Initialise g, closed.  0 or a libuv error. */
int dl_rgate_init(dl_rgate *g);
/* Open g on c's socket (c open): c's reads go through it from now on.
   Not on a TLS connection (a read there would decrypt under the write
   gate's lock): g stays closed. */
void dl_conn_set_rgate(dl_conn *c, dl_rgate *g);
/*
** Handle one frame (n bytes of messages at p, borrowed for the call) on
** the thread that reads through a gate: return 1 if it was handled, or 0
** to leave it, and every frame after it, to the loop's thread.  Called
** with the gate's lock held: it must not call back into the connection.
*/
typedef int (*dl_rgate_take)(void *ud, const char *p, size_t n);
/*
** From any thread but c's loop's: read what the socket holds now, without
** waiting, and offer each whole frame to take.  Returns 1 when bytes were
** left for the loop's thread (the caller wakes it to run
** dl_conn_rgate_drain), else 0: nothing read (the gate is closed or busy,
** the socket empty, ended or failed: the loop's thread sees that too), or
** every frame read was taken.
*/
int dl_rgate_read(dl_rgate *g, dl_rgate_take take, void *ud);
/* On c's loop's thread: handle the frames the other thread left. */
void dl_conn_rgate_drain(dl_conn *c);
/* Free what g holds; it must be closed (its connection gone). */
void dl_rgate_free(dl_rgate *g);

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
** Allocate a connection on loop.  The caller then opens it (dl_conn_open_fd,
** dl_conn_connect or dl_listener_accept) and it reads frames until closed.
** The conn is freed by libuv's close callback after on_close has run.
*/
dl_conn *dl_conn_new(uv_loop_t *loop, dl_flusher *fl, dl_frame_cb on_frame,
                     dl_close_cb on_close, void *data);
/* Adopt an open socket fd and start reading: one end of a socketpair, or
   a TCP socket that passed the handshake (dl_tcp).  0 or a libuv error. */
int dl_conn_open_fd(dl_conn *c, int fd);
/* Connect to addr over the transport it names; reading starts when
   connected.  0 or a libuv error. */
int dl_conn_connect(dl_conn *c, const char *addr);
/*
** The buffer to append the next message to; it is sent with the others of
** this loop iteration.  Borrowed; valid until the next flush.
*/
dl_buf *dl_conn_msg(dl_conn *c);
/* Send what is pending now (normally the flusher does it). */
void dl_conn_flush(dl_conn *c);
/*
** Send one frame made of hdr (copied) followed by the n bytes at data,
** read a chunk at a time as the socket takes them (through a reused
** buffer, see DL_BOUNCE in dl_conn.c): data must stay valid until
** done(ud) is called (after the write, or at once if the write could not
** start).  Messages sent before it go before it, and those sent after it
** wait until it is written, so order is kept.
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
/* Bytes handed to the transport and not yet written. */
size_t dl_conn_write_queue(const dl_conn *c);

/* A listening socket of some transport. */
typedef struct dl_listener dl_listener;
/* Called for each incoming connection: accept it with dl_listener_accept. */
typedef void (*dl_accept_cb)(dl_listener *l);

struct dl_listener {
  dl_handle h;
  const dl_transport *tr;
  dl_accept_cb on_accept;
  void *data; /* owner's */
};

/* Bind l to addr (the transport it names) on loop and listen; on_accept
   runs for each connection.  0 or a libuv error. */
int dl_listener_open(dl_listener *l, uv_loop_t *loop, const char *addr,
                     dl_accept_cb on_accept, void *data);
/* Accept the pending connection into c (from dl_conn_new) and start
   reading; on failure c is closed.  0 or a libuv error. */
int dl_listener_accept(dl_listener *l, dl_conn *c);
/* Stop listening; the listener's memory is free after the loop ran once. */
void dl_listener_close(dl_listener *l);

#endif

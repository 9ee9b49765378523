/*
** dl_jchan.h -- a Jupyter kernel's five ZeroMQ sockets: bound from a
** connection file, messages received as frames and sent signed.  Pure C.
**
** Threads: the heartbeat socket is echoed by a thread of its own.  IOPub
** may be sent on from any thread (sends are serialised by a lock); every
** other socket belongs to one thread at a time.
*/
#ifndef dl_jchan_h
#define dl_jchan_h

#include <pthread.h>

#include "dl_zmq.h" /* ZeroMQ, opened on first use */

#include "dl_jmsg.h"

#define DL_JCHAN_MAXFRAMES 64

typedef struct dl_jchan {
  void *ctx;
  void *sock[5];             /* by DL_JCHAN_* */
  pthread_mutex_t iopub_lock;
  pthread_t hb_thread;
  int hb_running;
  char key[512];
  size_t keylen;
  char session[37];          /* this kernel's session id */
} dl_jchan;

/* One received message's frames (owned; free with dl_jchan_recv_free). */
typedef struct dl_jrecv {
  zmq_msg_t msg[DL_JCHAN_MAXFRAMES];
  dl_jframe frame[DL_JCHAN_MAXFRAMES];
  int n;
  int truncated; /* more frames came than fit: the rest were dropped */
} dl_jrecv;

/*
** Create the context, bind the five sockets of c, start the heartbeat.
** Returns 0, or -1 with the reason (an endpoint and zmq's message, e.g.
** "Address already in use") in err; nothing is left open on error.
*/
int dl_jchan_open(dl_jchan *k, const dl_jconn *c, char *err, size_t errlen);

/* Close the sockets, stop the heartbeat thread, end the context. */
void dl_jchan_close(dl_jchan *k);

/*
** Receive one whole message from sock into r (flags as zmq_msg_recv:
** ZMQ_DONTWAIT).  Returns the number of frames, or -1 with errno
** (EAGAIN, EINTR, ...).  On success, free r with dl_jchan_recv_free.
*/
int dl_jchan_recv(void *sock, dl_jrecv *r, int flags);
void dl_jchan_recv_free(dl_jrecv *r);

/*
** Send a message of msg_type on channel ch: identities ids[0..nids-1]
** (for IOPub, NULL gives the msg_type as the topic), the parent header's
** JSON text (NULL for "{}"), content (borrowed, NULL for "{}") and
** metadata (borrowed, NULL for "{}"), signed with the key.  Returns 0 or
** -1 (out of memory, socket error).
*/
int dl_jchan_send(dl_jchan *k, int ch, const dl_jframe *ids, int nids,
                  const char *msg_type, const dl_jframe *parent,
                  const cJSON *content, const cJSON *metadata);

#endif

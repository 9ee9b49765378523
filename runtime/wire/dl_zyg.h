/*
** dl_zyg.h -- the protocol between a cluster and its process's zygote:
** the pre-started worker process that forks ready workers on request
** (runtime/worker/dl_worker_zygote.c serves it, runtime/cluster/
** dl_zygote.c starts it, dl_server.c asks it).  Pure C: no Lua, no libuv.
**
** A link is a SOCK_SEQPACKET Unix socket: one message a packet, each a
** type byte then fixed little-endian fields, and strings ending in NUL.
**   cluster -> zygote
**     'S' u32 wid, u32 nargs, u32 nenv, then nargs + nenv + 1 strings
**         (the worker's argv, its environment, its working directory),
**         with three descriptors (SCM_RIGHTS): the worker's scheduler
**         link (its fd 3), its stdout and its stderr.
**     'K' u32 wid: kill that worker (SIGKILL) if it still runs.
**   zygote -> cluster
**     'P' u32 wid, i32 pid: the worker was forked.
**     'F' u32 wid, i32 errno: it could not be.
**     'X' u32 wid, i32 status: it ended (a waitpid status); the process
**         group it led was killed and it was reaped first.
** Workers are named by the cluster's worker id, so the cluster never
** signals a pid that may have been reaped and reused.
*/
#ifndef dl_zyg_h
#define dl_zyg_h

#include <stddef.h>
#include <stdint.h>

#include "dl_buf.h"

/* The longest packet either side sends or accepts. */
#define DL_ZYG_MAX (192 * 1024)

typedef struct dl_zyg_msg {
  int type;       /* 'S', 'K', 'P', 'F', 'X' */
  uint32_t wid;
  int32_t val;    /* 'P': pid, 'F': errno, 'X': status */
  /* 'S' only: borrowed from the packet decoded; argv and env end in
     NULL and are allocated by dl_zyg_decode (dl_zyg_msg_free). */
  uint32_t nargs, nenv;
  const char **argv, **env;
  const char *cwd;
} dl_zyg_msg;

/*
** Decode the packet of n bytes at p into m: 0, DL_EPROTO (malformed:
** m holds nothing to free) or DL_ENOMEM.  Never reads past p + n.
*/
int dl_zyg_decode(const char *p, size_t n, dl_zyg_msg *m);
void dl_zyg_msg_free(dl_zyg_msg *m);

/* Encode a spawn request into b (appended); 0 or DL_ENOMEM. */
int dl_zyg_put_spawn(dl_buf *b, uint32_t wid, char *const argv[],
                     char *const env[], const char *cwd);
/* Encode a 'K', 'P', 'F' or 'X' message into b (appended). */
int dl_zyg_put(dl_buf *b, int type, uint32_t wid, int32_t val);

/*
** Send packet b on fd with the nfd descriptors in fds (0..3; borrowed,
** the caller closes its copies).  Blocks while the socket is full.
** 0, or a negative errno (-EPIPE: the other side is gone).
*/
int dl_zyg_send(int fd, const dl_buf *b, const int *fds, int nfd);

/*
** Receive one packet from fd into buf (cap bytes; DL_ZYG_MAX fits every
** one) without blocking, and up to 3 descriptors into fds (close-on-exec;
** *nfd says how many, the caller owns them).  Returns the packet's length
** (> 0), 0 when none is waiting, or a negative errno; -EPIPE when the
** other side closed the link.
*/
long dl_zyg_recv(int fd, char *buf, size_t cap, int fds[3], int *nfd);

#endif

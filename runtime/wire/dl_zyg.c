/*
** dl_zyg.c -- the zygote link's messages and their transport.  See
** dl_zyg.h.
*/
#define _GNU_SOURCE /* pipe2, accept4, SO_PEERCRED, POSIX_SPAWN_SETSID */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dl_zyg.h"

int dl_zyg_put(dl_buf *b, int type, uint32_t wid, int32_t val) {
  dl_buf_u8(b, (unsigned)type);
  dl_buf_u32(b, wid);
  if (type != 'K') dl_buf_u32(b, (uint32_t)val);
  return 0;
}

static uint32_t count(char *const v[]) {
  uint32_t n = 0;
  while (v && v[n]) n++;
  return n;
}

int dl_zyg_put_spawn(dl_buf *b, uint32_t wid, char *const argv[],
                     char *const env[], const char *cwd) {
  uint32_t na = count(argv), ne = count(env), i;
  dl_buf_u8(b, 'S');
  dl_buf_u32(b, wid);
  dl_buf_u32(b, na);
  dl_buf_u32(b, ne);
  for (i = 0; i < na; i++) dl_buf_put(b, argv[i], strlen(argv[i]) + 1);
  for (i = 0; i < ne; i++) dl_buf_put(b, env[i], strlen(env[i]) + 1);
  dl_buf_put(b, cwd, strlen(cwd) + 1);
  return 0;
}

void dl_zyg_msg_free(dl_zyg_msg *m) {
  dl_free((void *)m->argv);
  m->argv = m->env = NULL;
}

int dl_zyg_decode(const char *p, size_t n, dl_zyg_msg *m) {
  dl_rd r;
  uint32_t u, i;
  unsigned char t;
  const char **v;
  memset(m, 0, sizeof *m);
  dl_rd_init(&r, p, n);
  if (dl_rd_left(&r) < 1) return DL_EPROTO;
  t = (unsigned char)*r.p++;
  if (dl_rd_u32(&r, &m->wid)) return DL_EPROTO;
  m->type = t;
  switch (t) {
  case 'K':
    return dl_rd_left(&r) == 0 ? 0 : DL_EPROTO;
  case 'P': case 'F': case 'X':
    if (dl_rd_u32(&r, &u) || dl_rd_left(&r) != 0) return DL_EPROTO;
    m->val = (int32_t)u;
    return 0;
  case 'S':
    break;
  default:
    return DL_EPROTO;
  }
  if (dl_rd_u32(&r, &m->nargs) || dl_rd_u32(&r, &m->nenv)) return DL_EPROTO;
  /* Every string takes at least its NUL: more than the bytes left is a
     lie, and checking it first bounds the allocation. */
  if (m->nargs == 0 || (uint64_t)m->nargs + m->nenv + 1 > dl_rd_left(&r))
    return DL_EPROTO;
  v = dl_realloc(NULL, ((size_t)m->nargs + m->nenv + 2) * sizeof *v);
  if (v == NULL) return DL_ENOMEM;
  for (i = 0; i < m->nargs + m->nenv + 1; i++) {
    const char *z = memchr(r.p, '\0', dl_rd_left(&r));
    if (z == NULL) {
      dl_free((void *)v);
      return DL_EPROTO;
    }
    /* argv[0..nargs-1], NULL, env[0..nenv-1], NULL; then the cwd. */
    if (i < m->nargs) v[i] = r.p;
    else if (i < m->nargs + m->nenv) v[i + 1] = r.p;
    else m->cwd = r.p;
    r.p = z + 1;
  }
  if (dl_rd_left(&r) != 0) {
    dl_free((void *)v);
    return DL_EPROTO;
  }
  v[m->nargs] = NULL;
  v[m->nargs + m->nenv + 1] = NULL;
  m->argv = v;
  m->env = v + m->nargs + 1;
  return 0;
}

int dl_zyg_send(int fd, const dl_buf *b, const int *fds, int nfd) {
  struct msghdr mh;
  struct iovec iov;
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(3 * sizeof(int))];
  } cm;
  ssize_t rc;
  if (b->len == 0 || b->len > DL_ZYG_MAX || nfd < 0 || nfd > 3)
    return -EINVAL;
  memset(&mh, 0, sizeof mh);
  iov.iov_base = b->p;
  iov.iov_len = b->len;
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (nfd > 0) {
    struct cmsghdr *c;
    memset(&cm, 0, sizeof cm);
    mh.msg_control = cm.space;
    mh.msg_controllen = CMSG_SPACE((size_t)nfd * sizeof(int));
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)nfd * sizeof(int));
    memcpy(CMSG_DATA(c), fds, (size_t)nfd * sizeof(int));
  }
  for (;;) {
    struct pollfd pf;
    rc = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (rc >= 0 || (errno != EINTR && errno != EAGAIN)) break;
    pf.fd = fd; /* a non-blocking socket that is full: wait for room */
    pf.events = POLLOUT;
    if (errno == EAGAIN) poll(&pf, 1, 1000);
  }
  if (rc < 0) return errno == ECONNRESET ? -EPIPE : -errno;
  return rc == (ssize_t)b->len ? 0 : -EPROTO;
}

long dl_zyg_recv(int fd, char *buf, size_t cap, int fds[3], int *nfd) {
  struct msghdr mh;
  struct iovec iov;
  struct cmsghdr *c;
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(3 * sizeof(int))];
  } cm;
  ssize_t rc;
  *nfd = 0;
  memset(&mh, 0, sizeof mh);
  iov.iov_base = buf;
  iov.iov_len = cap;
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cm.space;
  mh.msg_controllen = sizeof cm.space;
  do rc = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return errno == ECONNRESET ? -EPIPE : -errno;
  }
  for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    size_t k, nf;
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    nf = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (k = 0; k < nf; k++) {
      int f;
      memcpy(&f, CMSG_DATA(c) + k * sizeof(int), sizeof f);
      if (*nfd < 3) fds[(*nfd)++] = f;
      else close(f);
    }
  }
  if (rc == 0) { /* end of the link: SEQPACKET never sends empty packets */
    while (*nfd > 0) close(fds[--*nfd]);
    return -EPIPE;
  }
  if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
    while (*nfd > 0) close(fds[--*nfd]);
    return -EMSGSIZE;
  }
  return (long)rc;
}

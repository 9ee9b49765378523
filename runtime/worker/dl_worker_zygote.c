/*
** dl_worker_zygote.c -- the zygote: a worker process that never works.
** It is exec'd once per client process (runtime/cluster/dl_zygote.c),
** loads what every worker loads, makes the Lua state a worker starts with
** (dl_w_new_state), and then, single-threaded, forks ready workers for
** the clusters of that process on request (protocol: dl_zyg.h).  A forked
** child gets its descriptors, session, environment and working directory
** as a spawned worker would, and runs dl_w_forked_main with the state.
**
** To take the fork and the child's first page faults off a cluster's
** start, the zygote keeps SPARES children forked ahead, each waiting on a
** link of its own with its loop and its executor thread made (a thread
** costs a worker about 34 first-touch page faults: its stack, its TLS and
** its malloc arena); a request goes to a spare when there is one (to a
** fresh fork when not), and the zygote forks the next spare when it has
** nothing else to do.
**
** The zygote reaps its children: it kills what a child's tasks left in
** its process group while the dead child still holds the group's id, then
** reaps it and tells the child's cluster.  It leaves when its client
** process ends (a pidfd), and its children then get their parent-death
** signal (SIGTERM) and leave as when a client dies.
*/
#define _GNU_SOURCE /* pipe2, accept4, SO_PEERCRED, POSIX_SPAWN_SETSID */
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "dl_worker_int.h"
#include "dl_zyg.h"

typedef struct kid {
  pid_t pid;
  uint32_t wid;
  int conn; /* the link of the cluster that asked for it, -1: closed */
} kid;

/* Spares kept forked ahead (enough for the default cluster's workers). */
#define SPARES 2

typedef struct spare {
  pid_t pid;
  int fd; /* the zygote's end of its link */
} spare;

static spare spares[SPARES];
static int nspares;
static kid *kids;
static int nkids, capkids;
static int conns[256], nconns;
static int lfd = -1, sfd = -1, pfd = -1;
static pid_t client;
static char pkt[DL_ZYG_MAX];

static void reply(int conn, int type, uint32_t wid, int32_t val) {
  dl_buf b;
  if (conn < 0) return;
  dl_buf_init(&b);
  dl_zyg_put(&b, type, wid, val);
  dl_zyg_send(conn, &b, NULL, 0); /* a cluster that left: nothing to say */
  dl_buf_free(&b);
}

/* In a child: close what is the zygote's, and take its signals back. */
static void drop_zygote(void) {
  sigset_t none;
  int i;
  sigemptyset(&none);
  signal(SIGCHLD, SIG_DFL);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (lfd >= 0) close(lfd);
  if (sfd >= 0) close(sfd);
  if (pfd >= 0) close(pfd);
  for (i = 0; i < nconns; i++) close(conns[i]);
  for (i = 0; i < nspares; i++) close(spares[i].fd);
  lfd = sfd = pfd = -1;
  nconns = nspares = 0;
}

/* In a child: become the worker m asks for.  Does not return. */
static void become_worker(dl_zyg_msg *m, const int fds[3]) {
  int h[3], i;
  drop_zygote();
  /* Its link becomes fd 3, the pipes its stdout and stderr; copies above
     them first, as the fds given may be 1 to 3 themselves. */
  for (i = 0; i < 3; i++) h[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 10);
  for (i = 0; i < 3; i++) close(fds[i]);
  if (h[0] < 0 || h[1] < 0 || h[2] < 0 || dup2(h[1], 1) < 0 ||
      dup2(h[2], 2) < 0 || dup2(h[0], 3) < 0)
    _exit(1);
  for (i = 0; i < 3; i++) close(h[i]);
  /* Its own process group, so what its tasks start is ended with it; not
     its own session.  Linux gives each new session an autogroup of its
     own (sched_autogroup_enabled, on by default), and the CPU is shared
     between groups before threads: a thread that yields (dl_os_relax)
     then gives its CPU to no thread of another group, so the worker's
     executor that watches for its next task held the CPU from the
     client's and scheduler's threads that bring it, for its whole watch
     (bench b's slow state, 40-70 us round trips where 20 us was the
     rule).  In the client's session, and autogroup, a cluster's threads
     yield to one another, and the cluster shares the CPU with other
     sessions as one job, as make's compilers do.  Not the foreground
     group: the terminal's Ctrl-C is the client's alone. */
  setpgid(0, 0);
  clearenv();
  for (i = 0; m->env[i]; i++) putenv((char *)m->env[i]);
  setenv("DLUA_WORKER", "1", 1); /* as setup_process said */
  if (m->cwd[0] && chdir(m->cwd) != 0)
    fprintf(stderr, "dlua worker: cannot enter %s: %s\n", m->cwd,
            strerror(errno));
  dl_w_forked_main((int)m->nargs, (char **)m->argv, W.L);
}

/* In a spare: wait on link fd for the request that makes it a worker;
   leave when the zygote is gone.  Does not return. */
static void spare_main(int fd) {
  int fds[3], nfd;
  dl_zyg_msg m;
  long n;
  drop_zygote();
  dl_w_loop_init(); /* a failure shows, and is tried again, in the worker */
  dl_w_exec_premake(); /* the same */
  for (;;) {
    struct pollfd pf;
    pf.fd = fd;
    pf.events = POLLIN;
    if (poll(&pf, 1, -1) < 0 && errno != EINTR) _exit(1);
    n = dl_zyg_recv(fd, pkt, sizeof pkt, fds, &nfd);
    if (n == 0) continue;
    if (n < 0 || dl_zyg_decode(pkt, (size_t)n, &m) != 0 || m.type != 'S' ||
        nfd != 3)
      _exit(1);
    close(fd);
    become_worker(&m, fds);
  }
}

/* Fork a spare (when the zygote has nothing else to do). */
static void make_spare(void) {
  int sp[2];
  pid_t pid;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp)) return;
  pid = fork();
  if (pid == 0) {
    close(sp[0]);
    spare_main(sp[1]);
  }
  close(sp[1]);
  if (pid < 0) {
    close(sp[0]);
    return;
  }
  spares[nspares].pid = pid;
  spares[nspares].fd = sp[0];
  nspares++;
}

/* Hand request p (n bytes) and its fds to a spare: its pid, or 0 when
   none took it. */
static pid_t use_spare(const char *p, size_t n, const int fds[3]) {
  while (nspares > 0) {
    spare sp = spares[--nspares];
    dl_buf b;
    int rc;
    b.p = (char *)p;
    b.len = b.cap = n;
    rc = dl_zyg_send(sp.fd, &b, fds, 3);
    close(sp.fd);
    if (rc == 0) return sp.pid;
    kill(sp.pid, SIGKILL); /* reaped with the others */
  }
  return 0;
}

static void spawn(int conn, dl_zyg_msg *m, const char *p, size_t n,
                  int fds[3], int nfd) {
  pid_t pid;
  int i;
  if (nfd != 3) {
    for (i = 0; i < nfd; i++) close(fds[i]);
    reply(conn, 'F', m->wid, EINVAL);
    return;
  }
  if (nkids == capkids) {
    int n = capkids ? 2 * capkids : 16;
    kid *k = dl_realloc(kids, (size_t)n * sizeof *k);
    if (k == NULL) {
      for (i = 0; i < 3; i++) close(fds[i]);
      reply(conn, 'F', m->wid, ENOMEM);
      return;
    }
    kids = k;
    capkids = n;
  }
  if ((pid = use_spare(p, n, fds)) == 0) {
    pid = fork();
    if (pid == 0) become_worker(m, fds);
  }
  for (i = 0; i < 3; i++) close(fds[i]);
  if (pid < 0) {
    reply(conn, 'F', m->wid, errno);
    return;
  }
  kids[nkids].pid = pid;
  kids[nkids].wid = m->wid;
  kids[nkids].conn = conn;
  nkids++;
  reply(conn, 'P', m->wid, (int32_t)pid);
}

/* Reap every child that ended, each after its process group. */
static void reap(void) {
  struct signalfd_siginfo ss;
  while (read(sfd, &ss, sizeof ss) == (ssize_t)sizeof ss) continue;
  for (;;) {
    siginfo_t si;
    int st = 0, i;
    memset(&si, 0, sizeof si);
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 ||
        si.si_pid == 0)
      return;
    /* Its zombie holds the group's id: no other group can have it. */
    kill(-si.si_pid, SIGKILL);
    if (waitpid(si.si_pid, &st, 0) < 0) return;
    for (i = 0; i < nkids; i++)
      if (kids[i].pid == si.si_pid) {
        reply(kids[i].conn, 'X', kids[i].wid, st);
        kids[i] = kids[--nkids];
        break;
      }
    for (i = 0; i < nspares; i++)
      if (spares[i].pid == si.si_pid) {
        close(spares[i].fd);
        spares[i] = spares[--nspares];
        break;
      }
  }
}

static void drop_conn(int k) {
  int c = conns[k], i;
  /* Its workers are not killed here: their own links to the cluster end
     with it (or with the client), and they leave by themselves, removing
     their files -- a client that is being killed closes this link before
     it counts as gone, and a kill now would leave its files behind. */
  for (i = 0; i < nkids; i++)
    if (kids[i].conn == c) kids[i].conn = -1;
  close(c);
  conns[k] = conns[--nconns];
}

/* One packet from cluster link k; 0, or -1 when the link ended. */
static int serve(int k) {
  int fds[3], nfd, i;
  dl_zyg_msg m;
  long n = dl_zyg_recv(conns[k], pkt, sizeof pkt, fds, &nfd);
  if (n == 0) return 0;
  if (n < 0 || dl_zyg_decode(pkt, (size_t)n, &m) != 0 ||
      (m.type != 'S' && m.type != 'K')) {
    for (i = 0; i < nfd; i++) close(fds[i]);
    drop_conn(k);
    return -1;
  }
  if (m.type == 'S') {
    spawn(conns[k], &m, pkt, (size_t)n, fds, nfd);
    dl_zyg_msg_free(&m);
    return 0;
  }
  for (i = 0; i < nfd; i++) close(fds[i]);
  for (i = 0; i < nkids; i++)
    if (kids[i].conn == conns[k] && kids[i].wid == m.wid)
      kill(kids[i].pid, SIGKILL);
  return 0;
}

static void accept_conn(void) {
  struct ucred cr;
  socklen_t cl = sizeof cr;
  int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0) return;
  /* Only the client process that started us: no one else may fork
     workers from us or hand us descriptors. */
  if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0 ||
      cr.pid != client || nconns == (int)(sizeof conns / sizeof *conns)) {
    close(c);
    return;
  }
  conns[nconns++] = c;
}

int dl_w_zygote_main(const char *name, const char *ppid) {
  struct sockaddr_un a;
  sigset_t chld;
  size_t nlen = strlen(name);
  client = dl_w_client_pid = (pid_t)atol(ppid);
  if (client <= 1 || getppid() != client || nlen == 0 ||
      nlen + 1 >= sizeof a.sun_path)
    return 2;
  /* Nothing of the client's but stdin, stdout, stderr and the ready pipe
     (fd 3), before anything here opens a descriptor of its own. */
  if (syscall(SYS_close_range, 4u, ~0u, 0u) != 0) {
    int f, max = (int)sysconf(_SC_OPEN_MAX);
    for (f = 4; f < max && f < 65536; f++) close(f);
  }
  pfd = (int)syscall(SYS_pidfd_open, client, 0u);
  if (pfd >= 0) fcntl(pfd, F_SETFD, FD_CLOEXEC);
  if ((W.L = dl_w_new_state()) == NULL) return 1;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path + 1, name, nlen);
  if (sfd < 0 || lfd < 0 ||
      bind(lfd, (struct sockaddr *)&a,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + nlen)) ||
      listen(lfd, 64)) {
    fprintf(stderr, "dlua zygote: cannot listen: %s\n", strerror(errno));
    return 1;
  }
  if (write(3, "R", 1) != 1) return 1;
  { /* fd 3 stays taken (by /dev/null), so no descriptor a child makes
       before it becomes a worker (a spare's loop) takes the number its
       link moves to. */
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul < 0 || dup2(nul, 3) < 0) return 1;
    close(nul);
  }
  for (;;) {
    struct pollfd pf[3 + 256];
    int n = 0, i, base;
    pf[n].fd = pfd; /* negative: ignored, and getppid is checked below */
    pf[n++].events = POLLIN;
    pf[n].fd = sfd;
    pf[n++].events = POLLIN;
    pf[n].fd = lfd;
    pf[n++].events = POLLIN;
    base = n;
    for (i = 0; i < nconns; i++) {
      pf[n].fd = conns[i];
      pf[n++].events = POLLIN;
    }
    /* Nothing to do and a spare missing: fork it now. */
    i = poll(pf, (nfds_t)n, nspares < SPARES ? 0 : pfd >= 0 ? -1 : 500);
    if (i < 0) {
      if (errno == EINTR) continue;
      _exit(1);
    }
    if (i == 0 && nspares < SPARES) {
      if (getppid() != client) _exit(0);
      make_spare();
      continue;
    }
    /* Children that ended are reaped first, each after its process
       group, also when the client is gone: then leave; the children left
       follow (their parent-death signal) and clean up as a dead client's
       workers do. */
    if (pf[1].revents) reap();
    if ((pf[0].revents & POLLIN) || getppid() != client) _exit(0);
    /* From the last link down, as dropping one moves the last into its
       place. */
    for (i = n - 1; i >= base; i--)
      if (pf[i].revents) serve(i - base);
    if (pf[2].revents & POLLIN) accept_conn();
  }
}

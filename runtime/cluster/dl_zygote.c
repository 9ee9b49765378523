/*
** dl_zygote.c -- start this process's zygote and connect clusters to it.
** See dl_zygote.h.
*/
#define _GNU_SOURCE /* pipe2, accept4, SO_PEERCRED, POSIX_SPAWN_SETSID */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dl_zygote.h"

extern char **environ;

/* How long a new zygote may take to say it is ready. */
#define READY_MS 10000

static pthread_mutex_t zlock = PTHREAD_MUTEX_INITIALIZER;
static pid_t zpid;       /* (zlock) the zygote, 0: none */
static pid_t zowner;     /* (zlock) the process that started it */
static char zexe[4096];  /* (zlock) the program it runs */
static char zname[64];   /* (zlock) its abstract socket name, without NUL */
static int zbroken;      /* (zlock) zexe cannot run a zygote: never again */
static int zready = -1;  /* (zlock) its ready pipe, until it said it is */

int dl_zygote_pid(void) {
  int p;
  pthread_mutex_lock(&zlock);
  p = zowner == getpid() ? (int)zpid : 0;
  pthread_mutex_unlock(&zlock);
  return p;
}

static socklen_t zaddr(struct sockaddr_un *a) {
  size_t n = strlen(zname);
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  memcpy(a->sun_path + 1, zname, n); /* abstract: sun_path[0] is NUL */
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

/* Connect to the running zygote (zlock held): 0 with *fd, or -errno. */
static int zconnect(int *fd) {
  struct sockaddr_un a;
  struct ucred cr;
  socklen_t len = zaddr(&a), cl = sizeof cr;
  int f = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (f < 0) return -errno;
  if (connect(f, (struct sockaddr *)&a, len) != 0) {
    int e = errno;
    close(f);
    return -e;
  }
  /* Only our own zygote may serve us: a squatter on the name is refused. */
  if (getsockopt(f, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0 ||
      cr.pid != zpid) {
    close(f);
    return -ECONNREFUSED;
  }
  *fd = f;
  return 0;
}

/* Start a zygote running exe (zlock held), without waiting for it: 0
   (zpid and zready set), 1 (exe cannot: give up on it), or -errno (try
   again later). */
static int zlaunch(const char *exe, const char *argv0) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none;
  char ppid[32], rnd[8];
  char *args[6];
  int p[2], rc;
  pid_t pid;
  if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) return -EAGAIN;
  snprintf(zname, sizeof zname, "dlua-zygote-%ld-%02x%02x%02x%02x%02x%02x"
           "%02x%02x", (long)getpid(), rnd[0] & 255, rnd[1] & 255,
           rnd[2] & 255, rnd[3] & 255, rnd[4] & 255, rnd[5] & 255,
           rnd[6] & 255, rnd[7] & 255);
  snprintf(ppid, sizeof ppid, "%ld", (long)getpid());
  args[0] = (char *)argv0;
  args[1] = "--dlua-worker";
  args[2] = "--zygote";
  args[3] = zname;
  args[4] = ppid;
  args[5] = NULL;
  if (pipe2(p, O_CLOEXEC)) return -errno;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  /* stdin and stdout go nowhere; stderr stays ours (the zygote says
     nothing unless it cannot start).  Its ready pipe is its fd 3. */
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, p[1], 3);
  /* A process group of its own, not in the foreground: Ctrl-C and the
     terminal's signals are ours.  Not a session of its own: its workers
     stay in our session, and our autogroup (see become_worker in
     dl_worker_zygote.c). */
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setpgroup(&at, 0);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
  rc = posix_spawn(&pid, exe, &fa, &at, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(p[1]);
  if (rc) {
    close(p[0]);
    return rc == EMFILE || rc == ENFILE || rc == ENOMEM || rc == EAGAIN
               ? -rc : 1;
  }
  zpid = pid;
  zready = p[0];
  zowner = getpid();
  snprintf(zexe, sizeof zexe, "%s", exe);
  return 0;
}

/* Wait for the spawned zygote's one byte, after which it listens (zlock
   held, zready open): 0, or 1 when it died or hangs (then this program
   cannot be a zygote; zpid is 0 again). */
static int zawait(void) {
  struct pollfd pf;
  char c;
  int ready = 0, st = 0;
  pf.fd = zready;
  pf.events = POLLIN;
  for (;;) {
    int n = poll(&pf, 1, READY_MS);
    if (n < 0 && errno == EINTR) continue;
    if (n == 1 && read(zready, &c, 1) == 1 && c == 'R') ready = 1;
    break;
  }
  close(zready);
  zready = -1;
  if (ready) return 0;
  kill(zpid, SIGKILL);
  waitpid(zpid, &st, 0);
  zpid = 0;
  fprintf(stderr, "dlua: %s did not start as the workers' zygote (%s %d); "
          "each worker is started on its own\n", zexe,
          WIFEXITED(st) ? "exit status" : "signal",
          WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
  return 1;
}

/* A fork of the process that started the zygote has none (zlock held). */
static void zforked(void) {
  if (zowner == getpid()) return;
  if (zready >= 0) close(zready); /* close-on-exec: open in a fork */
  zready = -1;
  zpid = 0;
  zbroken = 0;
}

void dl_zygote_prestart(const char *exe, const char *argv0) {
  const char *off = getenv("DLUA_ZYGOTE");
  if (off && strcmp(off, "0") == 0) return;
  pthread_mutex_lock(&zlock);
  zforked();
  if (zpid == 0 && !(zbroken && strcmp(zexe, exe) == 0) &&
      zlaunch(exe, argv0) == 1) {
    zbroken = 1;
    snprintf(zexe, sizeof zexe, "%s", exe);
  }
  pthread_mutex_unlock(&zlock);
}

void dl_zygote_stop(void) {
  pthread_mutex_lock(&zlock);
  zforked();
  if (zpid) {
    kill(zpid, SIGKILL);
    waitpid(zpid, NULL, 0);
  }
  if (zready >= 0) close(zready);
  zready = -1;
  zpid = 0;
  pthread_mutex_unlock(&zlock);
}

int dl_zygote_connect(const char *exe, const char *argv0, int *fd) {
  const char *off = getenv("DLUA_ZYGOTE");
  int rc;
  if (off && strcmp(off, "0") == 0) return 1;
  pthread_mutex_lock(&zlock);
  zforked();
  if (zpid && strcmp(zexe, exe) != 0) { /* one zygote a process */
    pthread_mutex_unlock(&zlock);
    return 1;
  }
  if (zpid && zready >= 0 && zawait() != 0) { /* started, not yet waited */
    zbroken = 1;
    pthread_mutex_unlock(&zlock);
    return 1;
  }
  if (zpid) {
    rc = zconnect(fd);
    if (rc == 0 || rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM ||
        rc == -ENOBUFS) {
      pthread_mutex_unlock(&zlock);
      return rc;
    }
    /* It is gone (killed?): reap it, and start another below. */
    kill(zpid, SIGKILL);
    waitpid(zpid, NULL, 0);
    zpid = 0;
  }
  if (zbroken && strcmp(zexe, exe) == 0) {
    pthread_mutex_unlock(&zlock);
    return 1;
  }
  rc = zlaunch(exe, argv0);
  if (rc == 0 && zawait() != 0) rc = 1;
  if (rc == 1) {
    zbroken = 1;
    snprintf(zexe, sizeof zexe, "%s", exe);
  }
  if (rc == 0) {
    rc = zconnect(fd);
    if (rc != 0 && rc != -EMFILE && rc != -ENFILE) rc = 1;
  }
  pthread_mutex_unlock(&zlock);
  return rc;
}

/*
** dl_netcmd.c -- `dlua worker`: start worker processes that join a
** scheduler over authenticated TCP (see README, "Past one machine").
**
**   dlua worker tcp://HOST:PORT [--nworkers N] [--memory-limit SIZE]
**               [--token-file FILE] [--listen-address IP]
**
** Each worker is this executable in worker mode (dlua_worker_main with
** --connect); with --nworkers N the command starts N of them, passes
** SIGINT/SIGTERM on, and exits when they all have.  A worker exits when
** its scheduler goes.
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dl_netcmd.h"
#include "dlua.h"

static const char worker_usage[] =
    "usage: dlua worker tcp://HOST:PORT [--nworkers N] [--memory-limit SIZE]\n"
    "                   [--token-file FILE] [--listen-address IP]\n"
    "The token comes from --token-file (mode 0600) or DLUA_TOKEN.\n";

/* "4GB", "512MiB", "1e9", "2000000": bytes, or -1 when malformed. */
static long long parse_size(const char *s) {
  static const struct { const char *u; double m; } units[] = {
      {"", 1},          {"b", 1},           {"kb", 1e3},
      {"mb", 1e6},      {"gb", 1e9},        {"tb", 1e12},
      {"kib", 1024.0},  {"mib", 1048576.0}, {"gib", 1073741824.0},
      {"tib", 1099511627776.0}};
  char *end;
  double v;
  size_t i;
  errno = 0;
  v = strtod(s, &end);
  if (end == s || errno || !(v > 0)) return -1;
  while (*end == ' ') end++;
  for (i = 0; i < sizeof units / sizeof *units; i++)
    if (strcasecmp(end, units[i].u) == 0) {
      v *= units[i].m;
      return v < 9e18 ? (long long)v : -1;
    }
  return -1;
}

static volatile sig_atomic_t got_sig;
static void on_sig(int sig) { got_sig = sig; }

static int bad(const char *fmt, const char *arg) {
  fprintf(stderr, "dlua worker: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", worker_usage);
  return 2;
}

static int worker_cmd(int argc, char **argv) {
  const char *addr = NULL, *token_file = NULL, *listen = NULL;
  long long mem = 0;
  long n = 1;
  char membuf[32];
  char *wargv[12];
  int i, wargc = 0, left, status = 0;
  pid_t *kids;
  struct sigaction sa;
  for (i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(worker_usage, stdout);
      return 0;
    }
    if (a[0] != '-') {
      if (addr) return bad("more than one address ('%s')", a);
      addr = a;
      continue;
    }
    if (v == NULL) return bad("%s needs a value", a);
    i++;
    if (strcmp(a, "--nworkers") == 0) {
      char *end;
      n = strtol(v, &end, 10);
      if (*end || n < 1 || n > 1024)
        return bad("--nworkers must be 1 to 1024, got '%s'", v);
    } else if (strcmp(a, "--memory-limit") == 0) {
      if ((mem = parse_size(v)) < 16 * 1024 * 1024)
        return bad("--memory-limit must be a size of at least 16MiB "
                   "(e.g. 4GB), got '%s'", v);
    } else if (strcmp(a, "--token-file") == 0) {
      token_file = v;
    } else if (strcmp(a, "--listen-address") == 0) {
      listen = v;
    } else {
      return bad("unknown option '%s'", a);
    }
  }
  if (addr == NULL) return bad("%s", "no scheduler address");
  if (strncmp(addr, "tcp://", 6) != 0)
    return bad("the address must be tcp://HOST:PORT, got '%s'", addr);
  wargv[wargc++] = argv[0];
  wargv[wargc++] = "--dlua-worker";
  wargv[wargc++] = "--connect";
  wargv[wargc++] = (char *)addr;
  if (mem > 0) {
    snprintf(membuf, sizeof membuf, "%lld", mem);
    wargv[wargc++] = "--memory-limit";
    wargv[wargc++] = membuf;
  }
  if (token_file) {
    wargv[wargc++] = "--token-file";
    wargv[wargc++] = (char *)token_file;
  }
  if (listen) {
    wargv[wargc++] = "--listen";
    wargv[wargc++] = (char *)listen;
  }
  wargv[wargc] = NULL;
  if (n == 1) return dlua_worker_main(wargc, wargv);
  kids = calloc((size_t)n, sizeof *kids);
  if (kids == NULL) return 1;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sig;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  for (i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      prctl(PR_SET_PDEATHSIG, SIGTERM); /* they go with this command */
      _exit(dlua_worker_main(wargc, wargv));
    }
    if (pid < 0) {
      perror("dlua worker: fork");
      break;
    }
    kids[i] = pid;
  }
  for (left = i; left > 0;) {
    int st;
    pid_t p = waitpid(-1, &st, 0);
    if (p < 0) {
      if (errno != EINTR) break;
      if (got_sig) {
        int k;
        for (k = 0; k < n; k++)
          if (kids[k] > 0) kill(kids[k], SIGTERM);
        got_sig = 0;
      }
      continue;
    }
    left--;
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) status = 1;
  }
  free(kids);
  return status;
}

int dl_netcmd_main(int argc, char **argv) {
  if (argc < 2) return -1;
  if (strcmp(argv[1], "worker") == 0) return worker_cmd(argc, argv);
  return -1;
}

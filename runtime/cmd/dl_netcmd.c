/*
** dl_netcmd.c -- the dlua command's subcommands past one machine (see
** README, "Past one machine"):
**
**   dlua worker tcp://HOST:PORT | --scheduler-file F [--nworkers N] ...
**   dlua scheduler [--host IP] [--port P] [--scheduler-file F] ...
**   dlua run [options] script.lua [args]     (every rank of mpirun/srun)
**
** `worker` starts worker processes that join a scheduler over
** authenticated TCP: each is this executable in worker mode
** (dlua_worker_main with --connect); with --nworkers N the command starts
** N of them, passes SIGINT/SIGTERM on, and exits when they all have.  A
** worker exits when its scheduler goes.  `scheduler` runs a listening
** cluster with no workers of its own.  `run` reads the rank from the
** launcher's environment and becomes the scheduler (rank 0), the script
** with its client (rank 1, in a child process; then it shuts the cluster
** down), or a worker (the others), meeting through a scheduler file.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "dl_netcmd.h"
#include "dl_tlsgen.h"
#include "dlua.h"

static const char worker_usage[] =
    "usage: dlua worker tcp://HOST:PORT | --scheduler-file FILE\n"
    "                   [--nworkers N] [--memory-limit SIZE]\n"
    "                   [--token-file FILE] [--listen-address IP]\n"
    "                   [--reconnect-timeout SECONDS] [--tls-dir DIR]\n"
    "                   [--name NAME]\n"
    "--name gives the worker a name, unique in the cluster (a second worker\n"
    "of the same name is refused); with --nworkers N they are NAME-0 ...\n"
    "NAME-(N-1).\n"
    "With --scheduler-file, waits up to 60 s for the file to appear.\n"
    "With --reconnect-timeout, a worker whose scheduler goes is started\n"
    "again (backoff 0.1 s to 2 s) until it joins or that long has passed;\n"
    "without, workers exit with their scheduler.  Exit status: 3, the\n"
    "scheduler was lost; 4, refused (wrong token, another dlua version, a\n"
    "name taken), which --reconnect-timeout does not retry.\n"
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

static int address_from_file(const char *path, double timeout, char *out,
                             size_t n, char *tls, size_t tlsn);

static volatile sig_atomic_t got_sig;
static void on_sig(int sig) { got_sig = sig; }

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Fork one worker process; its pid, or -1. */
static pid_t start_worker(int wargc, char **wargv) {
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* they go with this command */
    _exit(dlua_worker_main(wargc, wargv));
  }
  if (pid < 0) perror("dlua worker: fork");
  return pid;
}

static int bad(const char *fmt, const char *arg) {
  fprintf(stderr, "dlua worker: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", worker_usage);
  return 2;
}

static int worker_cmd(int argc, char **argv) {
  const char *addr = NULL, *token_file = NULL, *listen = NULL, *sfile = NULL;
  const char *tls_dir = NULL, *name = NULL;
  char abuf[300], tbuf[1024], namebuf[80];
  long long mem = 0;
  long n = 1;
  double reconnect = 0;
  char membuf[32];
  char *wargv[16];
  int i, wargc = 0, left, status = 0;
  pid_t *kids;
  double *lost, *delay; /* per slot: when its worker lost the scheduler */
  int stopping = 0;
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
    } else if (strcmp(a, "--tls-dir") == 0) {
      tls_dir = v;
    } else if (strcmp(a, "--listen-address") == 0) {
      listen = v;
    } else if (strcmp(a, "--name") == 0) {
      const char *c;
      for (c = v; *c && (unsigned char)*c >= 0x20 && *c != 0x7f; c++) {}
      if (*v == '\0' || *c || strlen(v) > 56)
        return bad("--name must be 1 to 56 printable characters, got '%s'",
                   v);
      name = v;
    } else if (strcmp(a, "--scheduler-file") == 0) {
      sfile = v;
    } else if (strcmp(a, "--reconnect-timeout") == 0) {
      char *end;
      reconnect = strtod(v, &end);
      if (*end || !(reconnect > 0 && reconnect <= 86400))
        return bad("--reconnect-timeout must be seconds in (0, 86400], got "
                   "'%s'", v);
    } else {
      return bad("unknown option '%s'", a);
    }
  }
  if (sfile && addr) return bad("%s", "give an address or --scheduler-file, "
                                "not both");
  if (sfile) {
    /* Read it, then start afresh with the address: the Lua state that
       read the file leaves process-wide state a worker must not inherit. */
    char **nargv = calloc((size_t)argc + 3, sizeof *nargv);
    int k, j = 0;
    if (nargv == NULL || address_from_file(sfile, 60, abuf, sizeof abuf,
                                           tbuf, sizeof tbuf))
      return 1;
    for (k = 0; k < argc; k++) {
      if (strcmp(argv[k], "--scheduler-file") == 0) {
        nargv[j++] = abuf;
        k++;
      } else {
        nargv[j++] = argv[k];
      }
    }
    if (tbuf[0] && tls_dir == NULL) { /* the scheduler's TLS directory */
      nargv[j++] = "--tls-dir";
      nargv[j++] = tbuf;
    }
    nargv[j] = NULL;
    {
      char self[4096];
      ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
      if (sl > 0) {
        self[sl] = '\0';
        execv(self, nargv); /* its real name: ps and pgrep show "dlua" */
      }
    }
    execv("/proc/self/exe", nargv);
    perror("dlua worker: exec");
    return 1;
  }
  if (addr == NULL) return bad("%s", "no scheduler address");
  if (strncmp(addr, "tcp://", 6) != 0)
    return bad("the address must be tcp://HOST:PORT, got '%s'", addr);
  if (mem == 0) { /* as Dask: the host's memory, shared by the workers */
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psize > 0) mem = (long long)pages * psize / n;
    if (mem < 16 * 1024 * 1024) mem = 0;
  }
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
  if (tls_dir) {
    wargv[wargc++] = "--tls-dir";
    wargv[wargc++] = (char *)tls_dir;
  }
  if (name) { /* one name each: NAME alone, or NAME-0 ... NAME-(n-1) */
    snprintf(namebuf, sizeof namebuf, "%s", name);
    wargv[wargc++] = "--name";
    wargv[wargc++] = namebuf;
  }
  wargv[wargc] = NULL;
  if (n == 1 && reconnect == 0) return dlua_worker_main(wargc, wargv);
  kids = calloc((size_t)n, sizeof *kids);
  if (kids == NULL) return 1;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sig;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  lost = calloc((size_t)n, sizeof *lost);
  delay = calloc((size_t)n, sizeof *delay);
  if (lost == NULL || delay == NULL) {
    free(kids);
    free(lost);
    free(delay);
    return 1;
  }
  for (i = 0; i < n; i++) {
    if (name && n > 1) snprintf(namebuf, sizeof namebuf, "%s-%d", name, i);
    if ((kids[i] = start_worker(wargc, wargv)) < 0) break;
  }
  for (left = i; left > 0;) {
    int st, k, code;
    pid_t p;
    if (got_sig) { /* passed on; no worker is started again */
      for (k = 0; k < n; k++)
        if (kids[k] > 0) kill(kids[k], SIGTERM);
      stopping = 1;
      got_sig = 0;
    }
    if ((p = waitpid(-1, &st, 0)) < 0) {
      if (errno != EINTR) break;
      continue;
    }
    for (k = 0; k < n && kids[k] != p; k++) {}
    if (k == n) continue;
    code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    /* Status 3: it lost its scheduler; 1: it could not join. */
    if (reconnect > 0 && !stopping && (code == 3 || code == 1)) {
      double t = mono_s();
      if (code == 3 || lost[k] == 0) {
        if (code == 3)
          fprintf(stderr, "dlua worker: lost the scheduler at %s; trying to "
                  "join again for %g s\n", addr, reconnect);
        lost[k] = t;
        delay[k] = 0.1;
      }
      if (t - lost[k] < reconnect) {
        struct timespec ts;
        ts.tv_sec = (time_t)delay[k];
        ts.tv_nsec = (long)((delay[k] - (double)ts.tv_sec) * 1e9);
        nanosleep(&ts, NULL); /* a signal ends it early */
        delay[k] = delay[k] * 2 > 2 ? 2 : delay[k] * 2;
        if (name && n > 1)
          snprintf(namebuf, sizeof namebuf, "%s-%d", name, k);
        if (!got_sig && (kids[k] = start_worker(wargc, wargv)) > 0) continue;
        stopping = 1;
      } else {
        fprintf(stderr, "dlua worker: the scheduler at %s did not come back "
                "within %g s; exiting\n", addr, reconnect);
      }
    }
    kids[k] = 0;
    left--;
    if (code != 0) status = 1;
  }
  free(lost);
  free(delay);
  free(kids);
  return status;
}

/* ------------------------------------------------------------ scheduler */

static const char sched_usage[] =
    "usage: dlua scheduler [--host IP] [--port P] [--listen tcp://IP:PORT]\n"
    "                      [--dashboard-address [IP]:PORT | none]\n"
    "                      [--scheduler-file FILE] [--token-file FILE]\n"
    "                      [--tls-dir DIR]\n"
    "Runs a scheduler that workers (dlua worker ADDRESS) and clients\n"
    "(dlua.Client(\"tcp://host:port\")) join over TCP, until SIGINT, SIGTERM\n"
    "or client:shutdown().  Defaults: 0.0.0.0:8786, dashboard :8787.\n"
    "The token comes from --token-file (mode 0600; made if missing) or\n"
    "DLUA_TOKEN.  --tls-dir DIR (ca.pem, cert.pem, key.pem: dlua tls-gen\n"
    "DIR) puts every connection in mutual TLS; workers and clients need the\n"
    "same CA.\n";

/* The scheduler process, in Lua: start a listening cluster with no local
   workers, write the scheduler file, wait for a signal or a shutdown, and
   remove the file again. */
static const char sched_chunk[] =
    "local o = ...\n"
    "local dlua = require 'dlua'\n"
    "local cl = require 'dlua.cluster'\n"
    "local function fail(msg)\n"
    "  msg = tostring(msg):gsub('^.-LocalCluster: ', '')\n"
    "  io.stderr:write('dlua scheduler: ', msg, '\\n')\n"
    "  return 1\n"
    "end\n"
    "if o.file then\n"
    "  local t = cl.read_scheduler_file(o.file)\n"
    "  local st = t and t.pid > 0 and io.open('/proc/' .. t.pid .. '/stat')\n"
    "  local alive = st and not st:read('a'):match('^%d+ %b() [ZX]')\n"
    "  if st then st:close() end\n"
    "  if alive then\n"
    "    return fail(('the scheduler file %s names a running scheduler '\n"
    "      .. '(pid %d at %s): stop it or use another file')\n"
    "      :format(o.file, t.pid, t.address))\n"
    "  end\n"
    "end\n"
    "local ok, c = pcall(dlua.LocalCluster, {listen = o.listen, n_workers = 0,\n"
    "  token_file = o.token_file, tls_dir = o.tls_dir,\n"
    "  dashboard_address = o.dashboard or false})\n"
    "if not ok then return fail(c) end\n"
    "local function public(a)\n"
    "  return (a:gsub('^(%a*:?/*)0%.0%.0%.0:', '%1' .. o.contact .. ':')\n"
    "           :gsub('^(%a*:?/*)%[::%]:', '%1' .. o.contact .. ':'))\n"
    "end\n"
    "local addr = public(c.address)\n"
    "local dash = c.dashboard_link and public(c.dashboard_link) or ''\n"
    "local id = ('Scheduler-%08x%08x'):format(math.random(0, 0xffffffff),\n"
    "                                         math.random(0, 0xffffffff))\n"
    "if o.file then\n"
    "  local w, err = cl.write_scheduler_file(o.file, {address = addr,\n"
    "    dashboard = dash, id = id, pid = cl.pid(), tls_dir = o.tls_dir})\n"
    "  if not w then c:close() return fail(err) end\n"
    "end\n"
    "io.stderr:write('dlua scheduler: listening at ', addr, '\\n')\n"
    "if dash ~= '' then\n"
    "  io.stderr:write('dlua scheduler: dashboard at ', dash, '\\n')\n"
    "end\n"
    "io.stderr:flush()\n"
    "local h = c.handle\n"
    "while not h:ended() do\n"
    "  if cl.idle(cl.wake_seq(), 0.5) == nil then break end\n"
    "end\n"
    "io.stderr:write('dlua scheduler: stopping\\n')\n"
    "if o.file then\n"
    "  local t = cl.read_scheduler_file(o.file)\n"
    "  if t and t.id == id then os.remove(o.file) end\n"
    "end\n"
    "c:close()\n"
    "return 0\n";

static void on_sched_sig(int sig) {
  (void)sig;
  dlua_interrupt(1);
}

/* The first address of an interface that is up and not the loopback, for
   a scheduler that listens on all of them; "127.0.0.1" if there is none. */
static void contact_host(char *out, size_t n, int v6) {
  struct ifaddrs *ifs, *i;
  snprintf(out, n, v6 ? "[::1]" : "127.0.0.1");
  if (getifaddrs(&ifs)) return;
  for (i = ifs; i; i = i->ifa_next) {
    char a[INET6_ADDRSTRLEN];
    if (!i->ifa_addr || !(i->ifa_flags & IFF_UP) ||
        (i->ifa_flags & IFF_LOOPBACK))
      continue;
    if (!v6 && i->ifa_addr->sa_family == AF_INET &&
        inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, a,
                  sizeof a)) {
      snprintf(out, n, "%s", a);
      break;
    }
  }
  freeifaddrs(ifs);
}

/* Make a new token file at path (mode 0600, 32 random bytes as hex) if
   there is none; 0, or -1 with a message on stderr. */
static int make_token_file(const char *path, int quiet) {
  unsigned char r[32];
  char hex[66];
  int fd, i;
  if (access(path, F_OK) == 0) return 0;
  if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
    perror("dlua scheduler: getrandom");
    return -1;
  }
  for (i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", r[i]);
  hex[64] = '\n';
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, hex, 65) != 65 || close(fd) != 0) {
    fprintf(stderr, "dlua scheduler: cannot create the token file %s: %s\n",
            path, strerror(errno));
    if (fd >= 0) unlink(path);
    return -1;
  }
  if (!quiet)
    fprintf(stderr, "dlua scheduler: created the token file %s (mode 0600); "
            "give a copy to the workers and clients\n", path);
  return 0;
}

static int sbad(const char *fmt, const char *arg) {
  fprintf(stderr, "dlua scheduler: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", sched_usage);
  return 2;
}

static int scheduler_cmd(int argc, char **argv) {
  const char *host = "0.0.0.0", *port = "8786", *listen = NULL;
  const char *dash = "0.0.0.0:8787", *file = NULL, *token_file = NULL;
  const char *tls_dir = NULL;
  char lbuf[300], dbuf[300], contact[64], tls_abs[4096];
  struct sigaction sa;
  lua_State *L;
  int i, rc;
  for (i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(sched_usage, stdout);
      return 0;
    }
    if (a[0] != '-') return sbad("unexpected argument '%s'", a);
    if (v == NULL) return sbad("%s needs a value", a);
    i++;
    if (strcmp(a, "--host") == 0) host = v;
    else if (strcmp(a, "--port") == 0) port = v;
    else if (strcmp(a, "--listen") == 0) listen = v;
    else if (strcmp(a, "--dashboard-address") == 0) dash = v;
    else if (strcmp(a, "--scheduler-file") == 0) file = v;
    else if (strcmp(a, "--token-file") == 0) token_file = v;
    else if (strcmp(a, "--tls-dir") == 0) tls_dir = v;
    else return sbad("unknown option '%s'", a);
  }
  if (listen == NULL) {
    snprintf(lbuf, sizeof lbuf, strchr(host, ':') ? "tcp://[%s]:%s"
                                                  : "tcp://%s:%s", host, port);
    listen = lbuf;
  }
  if (strcmp(dash, "none") == 0 || dash[0] == '\0') {
    dash = NULL;
  } else if (dash[0] == ':') {
    snprintf(dbuf, sizeof dbuf, "0.0.0.0%s", dash);
    dash = dbuf;
  }
  if (token_file && make_token_file(token_file, 0)) return 1;
  if (tls_dir) { /* the scheduler file names it for others: absolute */
    if (realpath(tls_dir, tls_abs) == NULL) {
      fprintf(stderr, "dlua scheduler: TLS directory %s: %s (make one with "
              "`dlua tls-gen DIR`)\n", tls_dir, strerror(errno));
      return 1;
    }
    tls_dir = tls_abs;
  }
  contact_host(contact, sizeof contact, 0);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sched_sig;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  if ((L = luaL_newstate()) == NULL) return 1;
  dlua_openlibs(L);
  if (luaL_loadbuffer(L, sched_chunk, sizeof sched_chunk - 1,
                      "=dlua scheduler") != LUA_OK) {
    fprintf(stderr, "dlua scheduler: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  lua_createtable(L, 0, 6);
  lua_pushstring(L, listen);
  lua_setfield(L, -2, "listen");
  if (dash) lua_pushstring(L, dash), lua_setfield(L, -2, "dashboard");
  if (file) lua_pushstring(L, file), lua_setfield(L, -2, "file");
  if (token_file) lua_pushstring(L, token_file),
                  lua_setfield(L, -2, "token_file");
  if (tls_dir) lua_pushstring(L, tls_dir), lua_setfield(L, -2, "tls_dir");
  lua_pushstring(L, contact);
  lua_setfield(L, -2, "contact");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "dlua scheduler: %s\n", lua_tostring(L, -1));
    rc = 1;
  } else {
    rc = (int)lua_tointeger(L, -1);
  }
  lua_close(L);
  return rc;
}

/* The address in the scheduler file at path, waiting up to timeout
   seconds for the file to appear (the scheduler may start after us).  The
   scheduler writes it whole and renames it into place, so a read that
   fails is final only when the file was there before the read began: one
   that fails first and then sees the file has raced the rename. */
static int address_from_file(const char *path, double timeout, char *out,
                             size_t n, char *tls, size_t tlsn) {
  lua_State *L = luaL_newstate();
  int tries = (int)(timeout * 50), ok = 0, was_there;
  if (L == NULL) return -1;
  dlua_openlibs(L);
  for (;;) {
    was_there = access(path, F_OK) == 0;
    lua_settop(L, 0);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "dlua.cluster");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) break;
    lua_getfield(L, -1, "read_scheduler_file");
    lua_pushstring(L, path);
    lua_call(L, 1, 2);
    if (lua_istable(L, -2)) {
      lua_getfield(L, -2, "address");
      snprintf(out, n, "%s", lua_tostring(L, -1));
      lua_getfield(L, -3, "tls_dir");
      if (tls) snprintf(tls, tlsn, "%s", luaL_optstring(L, -1, ""));
      ok = 1;
      break;
    }
    if (was_there || tries-- <= 0) {
      fprintf(stderr, "dlua worker: %s\n", lua_tostring(L, -1));
      break;
    }
    usleep(20 * 1000); /* a new job: the scheduler starts meanwhile */
  }
  lua_close(L);
  return ok ? 0 : -1;
}

/* ---------------------------------------------------------------- run */

static const char run_usage[] =
    "usage: mpirun -n N dlua run [options] script.lua [args]\n"
    "       srun -n N dlua run [options] script.lua [args]\n"
    "Options: [--scheduler-file FILE] [--token-file FILE] [--host IP]\n"
    "         [--dashboard-address [IP]:PORT | none] [--nworkers N]\n"
    "         [--memory-limit SIZE] [--tls-dir DIR]\n"
    "One command for every rank of a job (at least 3): rank 0 runs the\n"
    "scheduler, rank 1 the script, whose dlua.Client() joins it, and the\n"
    "others are workers (--nworkers processes each).  The rank comes from\n"
    "OMPI_COMM_WORLD_RANK, PMI_RANK or SLURM_PROCID.  The scheduler file\n"
    "(default dlua-run-JOBID.json in the current directory) must be on a\n"
    "directory every rank sees; the token file (default FILE.token) is made\n"
    "by rank 0 when missing.  When the script ends, the scheduler and the\n"
    "workers are shut down and every rank exits; the job's status is the\n"
    "script's.  --tls-dir DIR puts the job in mutual TLS; rank 0 makes DIR\n"
    "(dlua tls-gen) when it has no ca.pem, and then removes it at the end.\n";

static int rbad(const char *fmt, const char *arg) {
  fprintf(stderr, "dlua run: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", run_usage);
  return 2;
}

/* This rank and the job's size from the launcher's environment: 0, or -1
   when no launcher set them. */
static int job_rank(long *rank, long *size) {
  static const char *const vars[][2] = {
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
      {"PMI_RANK", "PMI_SIZE"},
      {"SLURM_PROCID", "SLURM_NTASKS"}};
  size_t i;
  for (i = 0; i < sizeof vars / sizeof *vars; i++) {
    const char *r = getenv(vars[i][0]), *n = getenv(vars[i][1]);
    char *e1, *e2;
    if (r == NULL || n == NULL) continue;
    *rank = strtol(r, &e1, 10);
    *size = strtol(n, &e2, 10);
    if (*e1 || *e2 || *rank < 0 || *size < 1 || *rank >= *size) continue;
    return 0;
  }
  return -1;
}

/* How many of the job's ranks run on this node, from the launcher's
   environment, or 0 when it does not say.  Slurm's list reads like
   "2(x3),1": 2 tasks on each of nodes 0-2, 1 on node 3. */
static long node_ranks(void) {
  const char *v = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const char *list = getenv("SLURM_STEP_TASKS_PER_NODE");
  const char *id = getenv("SLURM_NODEID");
  long node = 0;
  char *e;
  if (v == NULL) v = getenv("MPI_LOCALNRANKS");
  if (v) {
    long n = strtol(v, &e, 10);
    return *e == '\0' && n > 0 ? n : 0;
  }
  if (list == NULL) list = getenv("SLURM_TASKS_PER_NODE");
  if (list == NULL) return 0;
  if (id) {
    node = strtol(id, &e, 10);
    if (*e || node < 0) return 0;
  }
  while (*list) {
    long n = strtol(list, &e, 10), times = 1;
    if (e == list || n < 1) return 0;
    list = e;
    if (list[0] == '(' && list[1] == 'x') {
      times = strtol(list + 2, &e, 10);
      if (e == list + 2 || *e != ')' || times < 1) return 0;
      list = e + 1;
    }
    if (node < times) return n;
    node -= times;
    if (*list == ',') list++;
    else if (*list) return 0;
  }
  return 0;
}

/* The default scheduler file: one name per job, so a file left by an
   earlier job is never read for this one. */
static int default_sched_file(char *out, size_t n) {
  const char *job = getenv("SLURM_JOB_ID"), *step = getenv("SLURM_STEP_ID");
  if (getenv("OMPI_COMM_WORLD_RANK") && getenv("OMPI_MCA_ess_base_jobid")) {
    snprintf(out, n, "dlua-run-%s.json", getenv("OMPI_MCA_ess_base_jobid"));
    return 0;
  }
  if (job) {
    snprintf(out, n, "dlua-run-%s.%s.json", job, step ? step : "0");
    return 0;
  }
  return -1;
}

/* The script's end: stop the scheduler and its workers (unless the script
   did), so that every rank exits. */
static const char run_stop_chunk[] =
    "local o = ...\n"
    "local dlua = require 'dlua'\n"
    "local cl = require 'dlua.cluster'\n"
    "if not cl.read_scheduler_file(o.file) then return 0 end\n"
    "local ok, c = pcall(dlua.Client, {scheduler_file = o.file,\n"
    "                                   token_file = o.token_file})\n"
    "if not ok then\n"
    "  io.stderr:write('dlua run: cannot stop the scheduler: ', tostring(c),\n"
    "                  '\\n')\n"
    "  return 1\n"
    "end\n"
    "c:shutdown()\n"
    "return 0\n";

static int run_stop(const char *file, const char *token_file) {
  lua_State *L = luaL_newstate();
  int rc = 1;
  if (L == NULL) return 1;
  dlua_openlibs(L);
  if (luaL_loadbuffer(L, run_stop_chunk, sizeof run_stop_chunk - 1,
                      "=dlua run") == LUA_OK) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, file);
    lua_setfield(L, -2, "file");
    lua_pushstring(L, token_file);
    lua_setfield(L, -2, "token_file");
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) rc = (int)lua_tointeger(L, -1);
  }
  if (rc && lua_isstring(L, -1))
    fprintf(stderr, "dlua run: %s\n", lua_tostring(L, -1));
  lua_close(L);
  return rc;
}

static pid_t run_child;
static void on_run_sig(int sig) {
  if (run_child > 0) kill(run_child, sig);
}

/* Rank 1: run the script in a child process whose dlua.Client() joins
   the job's scheduler, then shut the cluster down. */
static int run_client(char **argv, int first, const char *file,
                      const char *token_file) {
  char abuf[300];
  struct sigaction sa;
  int st, rc;
  pid_t p;
  if (address_from_file(file, 60, abuf, sizeof abuf, NULL, 0)) return 1;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_run_sig;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  p = fork();
  if (p < 0) {
    perror("dlua run: fork");
    return 1;
  }
  if (p == 0) {
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    setenv("DLUA_SCHEDULER_FILE", file, 1);
    setenv("DLUA_TOKEN_FILE", token_file, 1);
    argv[first - 1] = argv[0]; /* dlua script.lua args... */
    if (sl > 0) {
      self[sl] = '\0';
      execv(self, argv + first - 1);
    }
    execv("/proc/self/exe", argv + first - 1);
    perror("dlua run: exec");
    _exit(127);
  }
  run_child = p;
  while (waitpid(p, &st, 0) < 0)
    if (errno != EINTR) {
      st = 1 << 8;
      break;
    }
  run_child = 0;
  rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  if (run_stop(file, token_file) && rc == 0) rc = 1;
  return rc;
}

static int run_cmd(int argc, char **argv) {
  const char *file = NULL, *token_file = NULL, *host = "0.0.0.0";
  const char *dash = "0.0.0.0:0", *nworkers = NULL, *mem = NULL;
  const char *tls_dir = NULL;
  char fbuf[300], tbuf[320];
  long rank, size;
  int i, first = 0;
  for (i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(run_usage, stdout);
      return 0;
    }
    if (strcmp(a, "--") == 0) {
      first = i + 1;
      break;
    }
    if (a[0] != '-') {
      first = i;
      break;
    }
    if (v == NULL) return rbad("%s needs a value", a);
    i++;
    if (strcmp(a, "--scheduler-file") == 0) file = v;
    else if (strcmp(a, "--token-file") == 0) token_file = v;
    else if (strcmp(a, "--host") == 0) host = v;
    else if (strcmp(a, "--dashboard-address") == 0) dash = v;
    else if (strcmp(a, "--nworkers") == 0) nworkers = v;
    else if (strcmp(a, "--memory-limit") == 0) mem = v;
    else if (strcmp(a, "--tls-dir") == 0) tls_dir = v;
    else return rbad("unknown option '%s'", a);
  }
  if (first == 0 || first >= argc) return rbad("%s", "no script to run");
  if (job_rank(&rank, &size))
    return rbad("%s", "no rank in the environment (OMPI_COMM_WORLD_RANK, "
                "PMI_RANK or SLURM_PROCID with its size): start it with "
                "mpirun -n N or srun -n N");
  if (size < 3) {
    char n[32];
    snprintf(n, sizeof n, "%ld", size);
    return rbad("the job has %s ranks; it needs at least 3 (the scheduler, "
                "the script and a worker)", n);
  }
  if (file == NULL) {
    if (default_sched_file(fbuf, sizeof fbuf))
      return rbad("%s", "no job id in the environment to name the "
                  "scheduler file: give --scheduler-file on a directory "
                  "every rank sees");
    file = fbuf;
  }
  if (token_file == NULL) {
    snprintf(tbuf, sizeof tbuf, "%s.token", file);
    token_file = tbuf;
  }
  if (rank == 0) {
    char *sargv[16], ca[4200];
    int n = 0, rc, made = access(token_file, F_OK) != 0, made_tls = 0;
    /* The job's own token: made here, quietly; the others read it once
       the scheduler file is there. */
    if (made && make_token_file(token_file, 1)) return 1;
    if (tls_dir) { /* the job's own CA too, when there is none */
      char err[300];
      snprintf(ca, sizeof ca, "%s/ca.pem", tls_dir);
      made_tls = access(ca, F_OK) != 0;
      if (made_tls && dl_tlsgen(tls_dir, err, sizeof err) != 0) {
        fprintf(stderr, "dlua run: %s\n", err);
        if (made) unlink(token_file);
        return 1;
      }
    }
    sargv[n++] = argv[0];
    sargv[n++] = "scheduler";
    sargv[n++] = "--host";
    sargv[n++] = (char *)host;
    sargv[n++] = "--port";
    sargv[n++] = "0";
    sargv[n++] = "--dashboard-address";
    sargv[n++] = (char *)dash;
    sargv[n++] = "--scheduler-file";
    sargv[n++] = (char *)file;
    sargv[n++] = "--token-file";
    sargv[n++] = (char *)token_file;
    if (tls_dir) sargv[n++] = "--tls-dir", sargv[n++] = (char *)tls_dir;
    sargv[n] = NULL;
    rc = scheduler_cmd(n, sargv);
    if (made) unlink(token_file); /* this job's, made for it */
    if (made_tls) { /* likewise */
      static const char *const f[] = {"ca.pem", "cert.pem", "key.pem"};
      size_t i;
      for (i = 0; i < 3; i++) {
        snprintf(ca, sizeof ca, "%s/%s", tls_dir, f[i]);
        unlink(ca);
      }
      rmdir(tls_dir); /* only if nothing else is in it */
    }
    return rc;
  }
  if (rank == 1) return run_client(argv, first, file, token_file);
  {
    char *wargv[12], membuf[32];
    int n = 0;
    long local = node_ranks(), nw = nworkers ? atol(nworkers) : 1;
    /* Every rank on this node shares its memory, the scheduler's and the
       script's included: a worker rank alone would take the whole host. */
    if (mem == NULL && local > 1 && nw > 0) {
      long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
      long long share = (long long)pages * psize / local / nw;
      if (pages > 0 && psize > 0 && share >= 16LL * 1024 * 1024) {
        snprintf(membuf, sizeof membuf, "%lld", share);
        mem = membuf;
      }
    }
    wargv[n++] = argv[0];
    wargv[n++] = "worker";
    wargv[n++] = "--scheduler-file";
    wargv[n++] = (char *)file;
    wargv[n++] = "--token-file";
    wargv[n++] = (char *)token_file;
    if (nworkers) wargv[n++] = "--nworkers", wargv[n++] = (char *)nworkers;
    if (mem) wargv[n++] = "--memory-limit", wargv[n++] = (char *)mem;
    wargv[n] = NULL;
    return worker_cmd(n, wargv);
  }
}

/* ------------------------------------------------------------ tls-gen */

static const char tlsgen_usage[] =
    "usage: dlua tls-gen DIR\n"
    "Makes a private CA and one certificate it signed, for a cluster's\n"
    "mutual TLS: DIR/ca.pem, DIR/cert.pem and DIR/key.pem (the key mode 0600).\n"
    "Give DIR (a copy of it) to the scheduler, the workers and the clients\n"
    "(--tls-dir DIR, tls_dir = DIR).  Existing files are never overwritten.\n";

static int tlsgen_cmd(int argc, char **argv) {
  char err[600];
  if (argc == 3 && (strcmp(argv[2], "--help") == 0 ||
                    strcmp(argv[2], "-h") == 0)) {
    fputs(tlsgen_usage, stdout);
    return 0;
  }
  if (argc != 3 || argv[2][0] == '-' || argv[2][0] == '\0') {
    fprintf(stderr, "dlua tls-gen: %s\n%s",
            argc < 3 ? "no directory given" : "give exactly one directory",
            tlsgen_usage);
    return 2;
  }
  if (dl_tlsgen(argv[2], err, sizeof err) != 0) {
    fprintf(stderr, "dlua tls-gen: %s\n", err);
    return 1;
  }
  fprintf(stderr, "dlua tls-gen: made %s/ca.pem, %s/cert.pem and "
          "%s/key.pem (the key mode 0600)\n", argv[2], argv[2], argv[2]);
  return 0;
}

int dl_netcmd_main(int argc, char **argv) {
  if (argc < 2) return -1;
  if (strcmp(argv[1], "worker") == 0) return worker_cmd(argc, argv);
  if (strcmp(argv[1], "scheduler") == 0) return scheduler_cmd(argc, argv);
  if (strcmp(argv[1], "run") == 0) return run_cmd(argc, argv);
  if (strcmp(argv[1], "tls-gen") == 0) return tlsgen_cmd(argc, argv);
  return -1;
}

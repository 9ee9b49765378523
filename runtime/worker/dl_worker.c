/*
** dl_worker.c -- a worker process: dlua_worker_main sets up the state,
** the loop, the listener and the executor, then runs until the link ends.
** The parts are listed in dl_worker_int.h.
*/
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>

#include "dl_worker_int.h"

worker dl_worker_state;

/* Set when the worker goes because its cluster is gone (the link closed
   unasked, or SIGTERM), not because it was told to shut down. */
static int lost_link;
static uv_pid_t parent_pid; /* the client that started us, or its zygote */
pid_t dl_w_client_pid;     /* the zygote's client, 0: not forked by one */
static int client_pfd = -1; /* a pidfd of dl_w_client_pid */
static uv_signal_t term_sig;

void dl_w_on_sched_close(dl_conn *c) {
  (void)c;
  W.sched = NULL;
  if (!W.told_to_stop) lost_link = 1;
  uv_stop(&W.loop); /* the scheduler is gone: so are we */
}

/* SIGTERM (sent by the kernel when the client dies, see PR_SET_PDEATHSIG,
   or by anyone): leave as if the link were lost. */
static void term_cb(uv_signal_t *h, int sig) {
  (void)h;
  (void)sig;
  lost_link = 1;
  uv_stop(&W.loop);
}

/*
** The cluster is gone without shutting us down (its client was killed):
** remove this worker's spill files, and the private directory itself once
** the client is gone for good and every worker has removed its files, so
** that a killed client leaves nothing behind.  A cluster that is alive
** removes the directory itself.
*/
static void leave_files(void) {
  uv_fs_t req;
  uv_dirent_t ent;
  char prefix[48], path[600];
  int plen, i;
  double until = now_s() + 2.0;
  uv_mutex_lock(&W.lock);
  W.leaving = 1; /* no new spill file; wait for those being written */
  while (W.spilling > 0 && now_s() < until)
    uv_cond_timedwait(&W.cond, &W.lock, 20 * 1000 * 1000);
  uv_mutex_unlock(&W.lock);
  plen = snprintf(prefix, sizeof prefix, "w%d-spill-", W.id);
  if (uv_fs_scandir(NULL, &req, W.dir, 0, NULL) >= 0) {
    while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
      if (strncmp(ent.name, prefix, (size_t)plen) != 0) continue;
      snprintf(path, sizeof path, "%s/%s", W.dir, ent.name);
      unlink(path);
    }
  }
  uv_fs_req_cleanup(&req);
  /* The link closes before the kernel hands us to a new parent: give it a
     moment, then remove the directory if the client is gone (rmdir fails
     while other workers' files are still there; the last one succeeds). */
  if (client_pfd >= 0) { /* forked by the zygote: the client is not our
                            parent, and the zygote may die without it */
    struct pollfd pf;
    pf.fd = client_pfd;
    pf.events = POLLIN;
    if (poll(&pf, 1, 1000) == 1) rmdir(W.dir);
    return;
  }
  for (i = 0; i < 100 && getppid() == parent_pid; i++) uv_sleep(10);
  if (getppid() != parent_pid) rmdir(W.dir);
}

/*
** The process's memory as the limit counts it: resident pages less the
** file-backed ones (shared libraries' code, spilled values mapped back
** from disk), which the kernel drops by itself when memory is short.
** *rss, when not NULL, gets every resident page, as `ps` shows it.
*/
int64_t dl_w_mem_bytes(int64_t *rss) {
  FILE *f = fopen("/proc/self/status", "re");
  char line[128];
  long long total = 0, file = 0, v;
  if (f == NULL) return 0;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "VmRSS: %lld", &v) == 1) total = v;
    else if (sscanf(line, "RssFile: %lld", &v) == 1) file = v;
  }
  fclose(f);
  if (rss) *rss = (int64_t)total * 1024;
  return (int64_t)(total > file ? total - file : 0) * 1024;
}

/* Memory checks a restart waits for the collection it asked for (Lua
   code reaches the hook at once; a task in a long C call does not): 0.2 s.
   Past GC_WAIT_MAX times the limit it waits no more. */
#define GC_WAIT_CHECKS 4
#define GC_WAIT_MAX 1.5

/*
** Past the terminate fraction: whether the restart waits, for a full
** collection of the running task's state (dl_w_gc_hook) asked now or
** earlier and not yet done.  Once done, the memory it left decides.
** I/O thread, W.lock held.
*/
static int gc_first(double over, int64_t mem) {
  if ((double)mem > GC_WAIT_MAX * (double)W.memory_limit) return 0;
  if (!W.gc_asked) {
    if (!W.running_seq || W.cancel_kind) return 0;
    W.gc_asked = 1;
    W.gc_checks = 0;
    W.gc_after = -1;
    lua_sethook(W.L, dl_w_gc_hook,
                LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    return 1;
  }
  if (W.gc_after < 0) return ++W.gc_checks <= GC_WAIT_CHECKS;
  if ((double)W.gc_after <= over) {
    W.gc_asked = 0; /* it helped: the next time asks again */
    return 1;
  }
  return 0;
}

static void watchdog_cb(uv_timer_t *t) {
  static int ticks;
  (void)t;
  if (++ticks % 5 == 0 && W.memory_limit > 0) {
    double limit = (double)W.memory_limit;
    int64_t rss, mem = dl_w_mem_bytes(&rss);
    if (mem > W.frac_spill * limit && dl_mem_cached()) {
      dl_mem_trim(); /* freed blocks kept for reuse go first */
      mem = dl_w_mem_bytes(&rss);
    }
    if (mem > W.frac_terminate * limit) {
      /* Last resort before a restart: spill every value not in use, here
         on the I/O thread (the executor may be inside a long task). */
      dl_w_spill_until(0);
      dl_mem_trim();
      mem = dl_w_mem_bytes(&rss);
    }
    uv_mutex_lock(&W.lock);
    W.rss = rss;
    W.mem = mem;
    if (W.paused && mem < W.frac_pause * limit)
      dl_w_wake_exec();
    /* Spilling failed and values wait in memory: when its retry is due,
       wake the executor to try again (space may have been freed). */
    if (W.spill_err[0] && now_s() >= W.spill_retry && !W.relieve &&
        W.managed > W.frac_target * limit) {
      W.relieve = 1;
      dl_w_wake_exec();
    }
    if (mem <= W.frac_terminate * limit && W.gc_after >= 0)
      W.gc_asked = 0;
    if (mem > W.frac_terminate * limit &&
        !gc_first(W.frac_terminate * limit, mem)) {
      int64_t held = W.managed;
      int collected = W.gc_asked && W.gc_after >= 0;
      uv_mutex_unlock(&W.lock);
      fprintf(stderr, "dlua worker %d: process memory %lld bytes (%lld of "
              "them stored values that could not be spilled) is past %.0f%% "
              "of its limit %lld%s; restarting the worker (its tasks are "
              "recomputed elsewhere)\n", W.id, (long long)mem,
              (long long)held, W.frac_terminate * 100,
              (long long)W.memory_limit,
              collected ? ", after a full collection" : "");
      fflush(stderr);
      _exit(3);
    }
    uv_mutex_unlock(&W.lock);
  }
  uv_mutex_lock(&W.lock);
  if (W.running_seq && W.deadline > 0 && now_s() > W.deadline &&
      W.cancel_kind == 0)
    dl_w_interrupt_running(DL_ERR_TIMEOUT);
  dl_w_prof_tick();
  uv_mutex_unlock(&W.lock);
  dl_w_done_cb(NULL); /* what a running task's client queued in a burst */
}

static int parse_args(int argc, char **argv) {
  int i;
  W.id = 0;
  W.frac_target = 0.6;
  W.frac_spill = 0.7;
  W.frac_pause = 0.8;
  W.frac_terminate = 0.95;
  for (i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--id") == 0) W.id = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--dir") == 0)
      snprintf(W.dir, sizeof W.dir, "%s", argv[i + 1]);
    else if (strcmp(argv[i], "--memory-limit") == 0)
      W.memory_limit = strtoll(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--connect") == 0)
      snprintf(W.connect_to, sizeof W.connect_to, "%s", argv[i + 1]);
    else if (strcmp(argv[i], "--listen") == 0)
      snprintf(W.listen_host, sizeof W.listen_host, "%s", argv[i + 1]);
    else if (strcmp(argv[i], "--token-file") == 0)
      W.token_file = argv[i + 1];
    else if (strcmp(argv[i], "--tls-dir") == 0)
      W.tls_dir = argv[i + 1];
    else if (strcmp(argv[i], "--name") == 0) {
      if (strlen(argv[i + 1]) > DL_WORKER_NAME_MAX) return -1;
      snprintf(W.name, sizeof W.name, "%s", argv[i + 1]);
    }
    else if (strcmp(argv[i], "--memory-fractions") == 0) {
      if (sscanf(argv[i + 1], "%lf,%lf,%lf,%lf", &W.frac_target,
                 &W.frac_spill, &W.frac_pause, &W.frac_terminate) != 4)
        return -1;
    }
    else return -1;
  }
  if (W.connect_to[0]) return W.id == 0 && W.dir[0] == '\0' ? 0 : -1;
  return W.id > 0 && W.dir[0] ? 0 : -1;
}

/* A peer that proved it holds the token: it asks for values. */
static void on_peer_accept(dl_tcp_server *ts, int fd, const char *peer,
                           void *data) {
  dl_conn *c = dl_conn_new(&W.loop, &W.fl, dl_w_on_client_frame, NULL, NULL);
  (void)ts;
  (void)peer;
  (void)data;
  if (c == NULL) {
    close(fd);
  } else if (dl_conn_open_fd(c, fd) != 0) {
    close(fd);
    dl_conn_close(c);
  }
}

/* The descriptor of the scheduler link: 3 for a spawned or forked
   worker, where it was given to us; over TCP, where the dial left it. */
static int link_fd = 3;

/*
** Join the scheduler at W.connect_to over authenticated TCP: its link is
** where the dial left it (link_fd), not moved to fd 3 as a spawned
** worker's: with TLS, the session waits for the descriptor it was
** handed with (dl_tls_claim), and fd 3 may be another of ours (a dup2
** there once closed one under its user: a worker in twenty left at once,
** silently).  The files go to a new
** private directory.  0, or a message on stderr and the exit status.
*/
static int join_over_tcp(void) {
  char host[256], err[400];
  const char *tmp = getenv("TMPDIR");
  int port, fd, rc;
  if (dl_tcp_parse(W.connect_to, host, sizeof host, &port, err, sizeof err) ||
      dl_token_load(&W.token, W.token_file, err, sizeof err)) {
    fprintf(stderr, "dlua worker: %s\n", err);
    return 2;
  }
  W.remote = 1;
  W.topts.token = &W.token;
  W.topts.version = DLUA_VERSION_STRING;
  if (W.tls_dir &&
      (W.topts.tls = dl_tls_ctx_shared(W.tls_dir, err, sizeof err)) == NULL) {
    fprintf(stderr, "dlua worker: %s\n", err);
    return 2;
  }
  dl_transport_tcp_setup(&W.topts); /* for dialling peers */
  if ((rc = dl_tcp_dial_sync(host, port, &W.topts, DL_TCP_CONNECT_MS, &fd,
                             err, sizeof err)) != 0) {
    fprintf(stderr, "dlua worker: %s\n", err);
    /* Refused for its token or its version: status 4, which
       --reconnect-timeout does not retry (nothing changes by trying
       again); 1 (retried) when the scheduler could not be reached. */
    return rc == UV_EACCES || rc == UV_EPROTONOSUPPORT ? 4 : 1;
  }
  dl_tcp_sockname(fd, &W.via);
  link_fd = fd;
  if (tmp == NULL || *tmp == '\0') tmp = "/tmp";
  snprintf(W.dir, sizeof W.dir, "%s/dlua-worker-XXXXXX", tmp);
  if (mkdtemp(W.dir) == NULL) {
    fprintf(stderr, "dlua worker: cannot create a directory in %s: %s\n",
            tmp, strerror(errno));
    return 1;
  }
  return 0;
}

/* Listen where peers reach this worker over TCP; W.addr says where. */
static int listen_over_tcp(void) {
  char err[400], host[128];
  struct sockaddr_storage ss = W.via;
  if (W.listen_host[0]) {
    snprintf(host, sizeof host, "%s", W.listen_host);
  } else if ((ss.ss_family == AF_INET || ss.ss_family == AF_INET6) &&
             (ss.ss_family == AF_INET
                  ? uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host)
                  : uv_ip6_name((struct sockaddr_in6 *)&ss, host,
                                sizeof host)) == 0) {
    /* the address its scheduler link leaves from */
  } else {
    snprintf(host, sizeof host, "0.0.0.0");
  }
  if (dl_tcp_listen(&W.tcpl, &W.loop, host, 0, &W.topts, on_peer_accept, NULL,
                    err, sizeof err) != 0) {
    fprintf(stderr, "dlua worker: %s\n", err);
    return 1;
  }
  snprintf(W.addr, sizeof W.addr,
           strchr(host, ':') ? "tcp://[%s]:%d" : "tcp://%s:%d", host,
           dl_tcp_server_port(W.tcpl));
  return 0;
}

void dl_w_set_wname(void) {
  if (W.name[0])
    snprintf(W.wname, sizeof W.wname, "worker %d (%s)", W.id, W.name);
  else
    snprintf(W.wname, sizeof W.wname, "worker %d", W.id);
}

void dl_w_send_hello(void) {
  dl_msg_hello m;
  m.id = (uint64_t)W.id;
  m.pid = (uint64_t)getpid();
  m.nthreads = 1;
  m.memory_limit = (uint64_t)W.memory_limit;
  m.addr = W.addr;
  m.alen = strlen(W.addr);
  m.name = W.name;
  m.nlen = strlen(W.name);
  dl_w_set_wname();
  dl_put_hello(dl_conn_msg(W.sched), &m);
  /* The memory figures go with the hello, so that a cluster printed or
     asked for scheduler_info() right after it starts shows each worker's
     real memory, not 0 B.  That costs one read of /proc/self/status
     (about 0.1 ms) on the start path; the next beat is a full period
     later (the loop's first turn used to measure a second time before the
     hello had even left). */
  dl_w_beat_cb(NULL);
  uv_timer_start(&W.beat, dl_w_beat_cb, 500, 500);
}

/* The lock, condition and maps of W (the fuzz harness shares this). */
void dl_w_state_init(void) {
  uv_mutex_init(&W.lock);
  uv_cond_init(&W.cond);
  dl_map_init(&W.store);
  dl_map_init(&W.fns);
  dl_map_init(&W.fetches);
  dl_map_init(&W.waiting);
  W.connect = dl_conn_connect;
  W.map_shared = dl_shared_at_map;
}

/* What every worker process sets up before it knows its cluster (the
   zygote does it once for all the workers it forks). */
static void setup_process(void) {
  dl_mem_heap_init(); /* the heap on huge pages where it is mimalloc */
  dl_mem_heap_eager(1); /* freed pages leave at once: the memory limit
                           reads resident memory */
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, SIG_IGN); /* Ctrl-C is the client's to handle */
  setenv("DLUA_WORKER", "1", 1); /* dlua.ndarray: one BLAS thread */
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* Big values get their own mappings, so freeing one returns it to the
     system at once and process memory tracks live data. */
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  { /* Big blocks hold descriptors (dl_mem.c): take all we may have. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  dl_w_state_init();
}

lua_State *dl_w_new_state(void) {
  lua_State *L = lua_newstate(dlua_alloc, NULL);
  if (L == NULL) return NULL;
  lua_pushcfunction(L, dl_w_setup_state);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    fprintf(stderr, "dlua worker: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  /* A full collection now: the state's start (its modules) leaves about
     half its heap as garbage, so the collector's first cycle would come
     within a few dozen small tasks, and inside one, at about four times
     the cost of a later one (over 100 us, not 25).  Here, in the zygote,
     it is done once before the forks: a collection in each worker would
     write every page of a heap it shares with the zygote (a copy each),
     0.3 ms more on a cluster's start (bench a). */
  lua_gc(L, LUA_GCCOLLECT);
  return L;
}

/* Leave with the process that started us (the client, or the zygote that
   leaves with it), even if it is SIGKILLed: SIGTERM lets us remove our
   files first (term_cb).  0, or -1 when it is gone already. */
static int watch_parent(void) {
  parent_pid = getppid();
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  return getppid() == 1 || getppid() != parent_pid ? -1 : 0;
}

static int loop_ready; /* dl_w_loop_init ran */
static int exec_ready; /* dl_w_exec_premake ran: the thread waits on go */
static uv_sem_t exec_go;

/* The executor thread made ahead of time: its creation and stack are
   paid here, then it waits for run_worker to say go.  (Its malloc arena
   is not made ahead: a free(malloc(n)) here is removed by the compiler,
   and a real one cleared a 2 MiB page in every worker, not only in those
   that run a task: slower starts, measured in start11.) */
static void exec_premade(void *arg) {
  (void)arg;
  uv_sem_wait(&exec_go);
  dl_w_exec_main(W.L);
}

int dl_w_exec_premake(void) {
  int rc = uv_sem_init(&exec_go, 0);
  if (rc) return rc;
  if ((rc = uv_thread_create(&W.exec, exec_premade, NULL)) != 0) {
    uv_sem_destroy(&exec_go);
    return rc;
  }
  exec_ready = 1;
  return 0;
}

int dl_w_loop_init(void) {
  int rc = uv_loop_init(&W.loop);
  if (rc == 0) rc = dl_flusher_init(&W.fl, &W.loop);
  if (rc == 0) rc = uv_async_init(&W.loop, &W.done_async, dl_w_done_cb);
  loop_ready = rc == 0;
  return rc;
}

/* The worker once it has its state L: its loop, listener, link and
   executor, until the link ends.  Does not return. */
static void run_worker(lua_State *L) {
  /* Freed big blocks kept for reuse fit between the target and spill
     fractions, so keeping them never makes the worker spill. */
  if (W.memory_limit > 0) {
    double room = (W.frac_spill - W.frac_target) * (double)W.memory_limit;
    if (room < (double)(256u << 20))
      dl_mem_set_cache_max(room > 0 ? (size_t)room : 0);
  }
  if (dl_w_prof_init()) _exit(1);
  W.L = L;
  {
    int rc = loop_ready ? 0 : dl_w_loop_init();
    if (rc) {
      fprintf(stderr, "dlua worker %d: cannot create its event loop: %s\n",
              W.id, uv_strerror(rc));
      _exit(1);
    }
  }
  uv_update_time(&W.loop); /* a spare's loop may be old */
  uv_timer_init(&W.loop, &W.beat);
  uv_timer_start(&W.beat, dl_w_beat_cb, 0, 500);
  uv_timer_init(&W.loop, &W.watchdog);
  uv_timer_start(&W.watchdog, watchdog_cb, 10, 10);
  if (W.remote) {
    if (listen_over_tcp()) _exit(1);
  } else {
    int rc;
    snprintf(W.addr, sizeof W.addr, "%s/w%d.sock", W.dir, W.id);
    rc = dl_listener_open(&W.listener, &W.loop, W.addr, dl_w_on_connection,
                          NULL);
    if (rc) {
      fprintf(stderr, "dlua worker %d: cannot listen on %s: %s\n", W.id,
              W.addr, uv_strerror(rc));
      _exit(1);
    }
  }
  uv_signal_init(&W.loop, &term_sig);
  uv_signal_start(&term_sig, term_cb, SIGTERM);
  /* Tasks' children inherit stdin, stdout and stderr only: the link is
     close-on-exec like every descriptor the worker opens itself. */
  fcntl(link_fd, F_SETFD, FD_CLOEXEC);
  W.sched = dl_conn_new(&W.loop, &W.fl, dl_w_on_sched_frame, dl_w_on_sched_close, NULL);
  if (W.sched == NULL || dl_conn_open_fd(W.sched, link_fd) ||
      dl_wgate_init(&W.gate) || dl_rgate_init(&W.rgate)) {
    fprintf(stderr, "dlua worker %d: no scheduler link on fd %d\n", W.id,
            link_fd);
    _exit(1);
  }
  dl_conn_set_gate(W.sched, &W.gate);
  dl_conn_set_rgate(W.sched, &W.rgate);
  if (!W.remote) dl_w_send_hello(); /* over TCP: once welcomed */
  { /* made here, in this worker's own process (spares fork) */
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    W.efd = efd > 0 ? efd : 0; /* none: the executor waits on W.cond */
  }
  if (exec_ready) uv_sem_post(&exec_go);
  else if (uv_thread_create(&W.exec, dl_w_exec_main, L)) _exit(1);
  uv_run(&W.loop, UV_RUN_DEFAULT);
  if (!W.remote) unlink(W.addr);
  if (lost_link || W.remote) leave_files();
  fflush(stdout);
  fflush(stderr);
  /* Nobody is left to end what our tasks started (processes in our group,
     the session we lead): end it with us. */
  if (lost_link && getpgrp() == getpid()) kill(0, SIGKILL);
  /* A task may still be running on the executor: leave without waiting.
     A worker that joined over TCP and lost its scheduler (not told to
     stop) says so with status 3, for `dlua worker --reconnect-timeout`;
     one the scheduler refused (its name is taken) with status 4, which
     that loop does not retry. */
  _exit(W.refused ? 4 : lost_link && W.remote ? 3 : 0);
}

static void usage(void) {
  fprintf(stderr, "dlua: worker mode takes --id N --dir DIR "
          "[--memory-limit BYTES], or --connect tcp://HOST:PORT "
          "[--token-file FILE] [--listen HOST] [--memory-limit BYTES]\n");
}

void dl_w_forked_main(int argc, char **argv, lua_State *L) {
  if (parse_args(argc, argv) || W.connect_to[0]) {
    usage();
    _exit(2);
  }
  if (watch_parent()) _exit(1);
  if (dl_w_client_pid > 0) {
    client_pfd = (int)syscall(SYS_pidfd_open, dl_w_client_pid, 0u);
    if (client_pfd >= 0) fcntl(client_pfd, F_SETFD, FD_CLOEXEC);
  }
  run_worker(L);
}

int dlua_worker_main(int argc, char **argv) {
  lua_State *L;
  if (argc < 2 || strcmp(argv[1], "--dlua-worker") != 0) return -1;
  if (argc == 5 && strcmp(argv[2], "--zygote") == 0) {
    setup_process();
    return dl_w_zygote_main(argv[3], argv[4]);
  }
  if (parse_args(argc, argv)) {
    usage();
    return 2;
  }
  if (W.connect_to[0]) {
    int rc = join_over_tcp();
    if (rc) return rc;
    parent_pid = -1; /* started by hand: it leaves when its link does */
  } else if (watch_parent()) {
    return 1;
  }
  setup_process();
  L = dl_w_new_state();
  if (L == NULL) return 1;
  run_worker(L);
  return 0;
}

/*
** dl_zygote.h -- this process's zygote: one worker process, started once
** (exec'd, libraries loaded, its Lua state made, no threads), that forks
** ready workers for every cluster of the process, so a second Client, a
** replaced worker and scale() pay a fork, not an exec and the dynamic
** loader.  The protocol is dl_zyg.h; the zygote's side is
** runtime/worker/dl_worker_zygote.c.  Pure C: no Lua, no libuv.
**
** The zygote is a child of this process in a process group of its own
** (in this process's session, so its workers share our autogroup); it ends
** when this process does (it watches it through a pidfd), and its
** workers, whose parent it is, with it (their parent-death signal).  It
** listens on an abstract Unix socket with a random name and serves only
** connections from this process (SO_PEERCRED), so no descriptor is held
** between clusters.  DLUA_ZYGOTE=0 in the environment turns it off: each
** worker is then a fork and exec of its own.
*/
#ifndef dl_zygote_h
#define dl_zygote_h

/*
** A new link to the zygote that runs exe (started with argv0 as its
** argv[0] on the first call, or again when it died), for one cluster.
** Returns 0 with the link's descriptor (close-on-exec, blocking) in *fd;
** 1 when no zygote serves exe (turned off, another exe's zygote runs, or
** exe could not start one): spawn the worker directly; or a negative
** libuv-style error (out of descriptors, say).  Thread-safe.
*/
int dl_zygote_connect(const char *exe, const char *argv0, int *fd);

/*
** Start the zygote that runs exe now, if none runs, without waiting for it
** to be ready: the first dl_zygote_connect waits, so the zygote's exec
** and loading overlap what the caller does in between (a cluster's
** scheduler made, its thread started).  Errors are left for
** dl_zygote_connect to meet and report.  Thread-safe.
*/
void dl_zygote_prestart(const char *exe, const char *argv0);

/* The zygote's pid, or 0 when none runs (for tests). */
int dl_zygote_pid(void);

/* End this process's zygote, if it started one, and reap it (its spare
   workers leave with it; workers it forked get SIGTERM).  The next
   dl_zygote_connect starts a new one.  Thread-safe. */
void dl_zygote_stop(void);

#endif

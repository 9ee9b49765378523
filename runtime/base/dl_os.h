/*
** dl_os.h -- operating-system helpers shared by every layer.  Pure C: no
** Lua, no libuv.
*/
#ifndef dl_os_h
#define dl_os_h

/*
** The path of the running executable, for re-exec as a worker; borrowed
** (a static buffer, filled on the first call).  When the file was replaced
** or removed since the process started, "/proc/self/exe", which still
** opens the binary that runs.  NULL when /proc cannot tell.
*/
const char *dl_os_self_exe(void);

/*
** One step of a short, bounded spin (a thread that expects news within
** microseconds and checks for it between steps): hands the CPU to any
** thread that is ready to run on it, which may be the very thread the
** spinner waits for when the machine has fewer CPUs than busy threads;
** with none, it returns at once.  Spinning without it can hold the
** news back for a whole time slice.
*/
void dl_os_relax(void);

/* A spin step that took longer than this (seconds) lost its CPU to
   another thread: the machine is busy, and sleeping serves better. */
#define DL_SPIN_LOST 15e-6

/*
** A short, bounded spin: looks at ready(ud) until it is true or limit
** seconds pass, with dl_os_relax between looks.  Returns 1 when ready, 0
** when the time ran out, -1 when a step lost the CPU for DL_SPIN_LOST (a
** busy machine: the caller should sleep, and spin less next time).
** ready may do a little work of its own (take news it finds).
*/
int dl_os_spin(double limit, int (*ready)(void *), void *ud);

#endif

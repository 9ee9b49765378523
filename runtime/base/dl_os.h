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

#endif

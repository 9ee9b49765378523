/*
** dl_kernel.h -- `dlua kernel`: the dlua command as a Jupyter kernel, and
** `dlua kernel install`, which writes its kernelspec.  Internal to the
** dlua command; not part of libdlua.
*/
#ifndef dl_kernel_h
#define dl_kernel_h

#include <lua.h>

/*
** Run "dlua kernel ARGS..." (argv[0] is "kernel"): with "-f FILE" serve
** Jupyter on the connection file FILE until a shutdown request; with
** "install [--user] [--prefix P]" write the kernelspec.  L has dlua's
** libraries open.  Errors are reported on stderr.  Returns 1 on success,
** 0 on failure.  [-0, +0, -]
*/
int dl_kernel_command(lua_State *L, int argc, char **argv);

#endif

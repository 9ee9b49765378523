/*
** dl_dynlib.h -- shared libraries opened on first use, not linked.
**
** Every dlua process (each worker too) pays at start for the libraries
** the binary names: the kernel's ZeroMQ (with C++ and Kerberos behind it)
** and libcrypto were two thirds of the start of `dlua -e ''`.  A library
** that only some commands need is opened with dlopen the first time one
** of them runs: its functions sit in a table of pointers, filled from the
** library's symbol names in one go (a missing symbol fails the load, so a
** half-filled table is never used).  The prototypes stay the library's
** own: the tables are declared with __typeof__ over its header.
**
** Pure C; thread-safe (a load happens once; every caller sees its result).
*/
#ifndef dl_dynlib_h
#define dl_dynlib_h

#include <stddef.h>

typedef struct dl_dynlib {
  const char *soname;        /* the file to open, e.g. "libzmq.so.5" */
  const char *package;       /* the Debian package that has it */
  const char *const *names;  /* symbol names, NULL-terminated */
  void **slots;              /* one function pointer per name */
  int state;                 /* 0 not tried, 1 loaded, -1 failed */
  char err[300];             /* why it failed */
} dl_dynlib;

/*
** Open lib and fill its slots, once.  Returns 0, or -1 with lib->err
** saying which file or symbol is missing and which package provides it.
*/
int dl_dynlib_load(dl_dynlib *lib);

/*
** dl_dynlib_load, with the reason of a failure also copied into err (of
** errlen bytes; err may be NULL): the body of each table's own
** dl_<lib>_load(err, errlen).
*/
int dl_dynlib_load_err(dl_dynlib *lib, char *err, size_t errlen);

/*
** The same, but a failure ends the process with lib->err on stderr (exit
** status 1).  For the pointer tables' accessors: a function called before
** its library loaded would otherwise jump through a null pointer.
*/
void dl_dynlib_need(dl_dynlib *lib);

#endif

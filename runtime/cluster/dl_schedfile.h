/*
** dl_schedfile.h -- the scheduler file of `dlua scheduler --scheduler-file
** F`: where a client or a worker finds the scheduler, as Dask's is.  JSON:
**
**   {"type": "Scheduler", "address": "tcp://10.0.0.1:8786",
**    "dashboard": "http://10.0.0.1:8787/status", "id": "Scheduler-…",
**    "pid": 1234, "version": "0.1.0", "tls_dir": "/shared/tls"}
**
** tls_dir is there only for a scheduler with TLS (--tls-dir): a client or
** worker that finds the scheduler by the file uses that directory.
**
** Written atomically (a temporary file in the same directory, renamed) with
** mode 0600.  Read with cJSON; anything but an object with a string
** "address" is refused with one line naming the file.  Pure C: no Lua.
*/
#ifndef dl_schedfile_h
#define dl_schedfile_h

#include <stddef.h>

typedef struct dl_schedfile {
  char address[300];   /* "tcp://host:port" */
  char dashboard[300]; /* "http://host:port/status" or "" */
  char id[64];         /* "" when absent */
  long long pid;       /* 0 when absent */
  char tls_dir[1024];  /* the TLS directory (dl_tls.h) its clients and
                          workers use; "" for none */
} dl_schedfile;

/* Write f to path (atomically, mode 0600); 0, or a negative errno-style
   code with one line in err. */
int dl_schedfile_write(const char *path, const dl_schedfile *f,
                       const char *version, char *err, size_t errlen);

/* Parse the n bytes at text (named path in errors) into f; 0, or DL_EINVAL
   with one line in err.  The decoder of outside bytes (see its fuzzer). */
int dl_schedfile_parse(const char *path, const char *text, size_t n,
                       dl_schedfile *f, char *err, size_t errlen);

/* Read and parse the file at path; 0, or a negative code with one line in
   err (a missing file says so). */
int dl_schedfile_read(const char *path, dl_schedfile *f, char *err,
                      size_t errlen);

#endif

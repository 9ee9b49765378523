/*
** schedfile_driver.h -- runs one fuzz input through the scheduler file's
** parser (dl_schedfile_parse); shared by fuzz_schedfile.c and
** test_schedfile.c, which replays the saved inputs.
**
** Whatever the bytes: the parser returns 0 or DL_EINVAL; on 0 the address
** starts with "tcp://" and every field is a terminated string within its
** buffer; on DL_EINVAL the reason is one line naming the file.
*/
#ifndef schedfile_driver_h
#define schedfile_driver_h

#include <stdlib.h>
#include <string.h>

#include "dl_buf.h"
#include "dl_schedfile.h"

static inline int schedfile_drive(const unsigned char *data, size_t n) {
  dl_schedfile f;
  char err[600];
  int rc;
  err[0] = '\0';
  rc = dl_schedfile_parse("fuzz.json", (const char *)data, n, &f, err,
                          sizeof err);
  if (rc == 0) {
    if (strncmp(f.address, "tcp://", 6) != 0 ||
        memchr(f.address, '\0', sizeof f.address) == NULL ||
        memchr(f.dashboard, '\0', sizeof f.dashboard) == NULL ||
        memchr(f.id, '\0', sizeof f.id) == NULL || f.pid < 0)
      abort();
  } else if (rc != DL_EINVAL || strstr(err, "fuzz.json") == NULL ||
             strchr(err, '\n') != NULL) {
    abort();
  }
  return 0;
}

#endif

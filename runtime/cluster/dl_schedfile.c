/*
** dl_schedfile.c -- the scheduler file.  See dl_schedfile.h.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "dl_buf.h"
#include "dl_mem.h"
#include "dl_schedfile.h"

/* Files past this size are not scheduler files. */
#define MAX_FILE (64 * 1024)

int dl_schedfile_write(const char *path, const dl_schedfile *f,
                       const char *version, char *err, size_t errlen) {
  char tmp[4200];
  cJSON *o = cJSON_CreateObject();
  char *text = NULL;
  int fd = -1, rc = 0;
  size_t len, off = 0;
  if (o == NULL) goto nomem;
  if (!cJSON_AddStringToObject(o, "type", "Scheduler") ||
      !cJSON_AddStringToObject(o, "address", f->address) ||
      !cJSON_AddStringToObject(o, "dashboard", f->dashboard) ||
      !cJSON_AddStringToObject(o, "id", f->id) ||
      !cJSON_AddNumberToObject(o, "pid", (double)f->pid) ||
      !cJSON_AddStringToObject(o, "version", version ? version : "") ||
      (f->tls_dir[0] &&
       !cJSON_AddStringToObject(o, "tls_dir", f->tls_dir)))
    goto nomem;
  if ((text = cJSON_Print(o)) == NULL) goto nomem;
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid())
      >= sizeof tmp) {
    snprintf(err, errlen, "scheduler file path too long: %s", path);
    rc = DL_EINVAL;
    goto done;
  }
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) goto sys;
  len = strlen(text);
  while (off < len) {
    ssize_t w = write(fd, text + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) goto sys;
    off += (size_t)w;
  }
  if (write(fd, "\n", 1) != 1 || fsync(fd) || close(fd)) {
    fd = -1;
    goto sys;
  }
  fd = -1;
  if (rename(tmp, path)) goto sys;
  goto done;
sys:
  rc = -errno;
  snprintf(err, errlen, "cannot write the scheduler file %s: %s", path,
           strerror(errno));
  if (fd >= 0) close(fd);
  unlink(tmp);
  goto done;
nomem:
  rc = DL_ENOMEM;
  snprintf(err, errlen, "out of memory");
done:
  if (text) cJSON_free(text);
  cJSON_Delete(o);
  return rc;
}

/* Copy the string member name of o into out (n bytes): 0, 1 when absent,
   or DL_EINVAL when it is not a string or does not fit. */
static int get_str(const cJSON *o, const char *name, char *out, size_t n) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  out[0] = '\0';
  if (v == NULL || cJSON_IsNull(v)) return 1;
  if (!cJSON_IsString(v) || v->valuestring == NULL ||
      strlen(v->valuestring) >= n)
    return DL_EINVAL;
  memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
  return 0;
}

int dl_schedfile_parse(const char *path, const char *text, size_t n,
                       dl_schedfile *f, char *err, size_t errlen) {
  cJSON *o;
  const cJSON *pid;
  int rc;
  memset(f, 0, sizeof *f);
  o = cJSON_ParseWithLength(text, n);
  if (o == NULL || !cJSON_IsObject(o)) {
    snprintf(err, errlen, "the scheduler file %s is not a JSON object "
             "(expected {\"address\": \"tcp://host:port\", ...})", path);
    cJSON_Delete(o);
    return DL_EINVAL;
  }
  rc = get_str(o, "address", f->address, sizeof f->address);
  if (rc != 0 || strncmp(f->address, "tcp://", 6) != 0) {
    snprintf(err, errlen, "the scheduler file %s has no \"address\" of the "
             "form \"tcp://host:port\"", path);
    cJSON_Delete(o);
    return DL_EINVAL;
  }
  if (get_str(o, "dashboard", f->dashboard, sizeof f->dashboard) < 0 ||
      get_str(o, "id", f->id, sizeof f->id) < 0 ||
      get_str(o, "tls_dir", f->tls_dir, sizeof f->tls_dir) < 0) {
    snprintf(err, errlen, "the scheduler file %s: \"dashboard\", \"id\" "
             "and \"tls_dir\" must be short strings", path);
    cJSON_Delete(o);
    return DL_EINVAL;
  }
  pid = cJSON_GetObjectItemCaseSensitive(o, "pid");
  if (cJSON_IsNumber(pid) && pid->valuedouble > 0 && pid->valuedouble < 4e9)
    f->pid = (long long)pid->valuedouble;
  cJSON_Delete(o);
  return 0;
}

int dl_schedfile_read(const char *path, dl_schedfile *f, char *err,
                      size_t errlen) {
  char *buf;
  FILE *fp = fopen(path, "rb");
  size_t n;
  int rc;
  if (fp == NULL) {
    rc = -errno;
    snprintf(err, errlen, "cannot read the scheduler file %s: %s", path,
             strerror(errno));
    return rc;
  }
  buf = dl_realloc(NULL, MAX_FILE + 1);
  if (buf == NULL) {
    fclose(fp);
    snprintf(err, errlen, "out of memory");
    return DL_ENOMEM;
  }
  n = fread(buf, 1, MAX_FILE + 1, fp);
  fclose(fp);
  if (n > MAX_FILE) {
    snprintf(err, errlen, "the scheduler file %s is too big to be one (over "
             "%d bytes)", path, MAX_FILE);
    dl_free(buf);
    return DL_EINVAL;
  }
  rc = dl_schedfile_parse(path, buf, n, f, err, errlen);
  dl_free(buf);
  return rc;
}

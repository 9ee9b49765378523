/*
** test_schedfile.c -- C tests of the scheduler file
** (runtime/cluster/dl_schedfile.c): written atomically with mode 0600 and
** read back, a missing file, malformed ones refused with the file named;
** every input the fuzzer saved (tests/fuzz/regressions-schedfile) is
** replayed.
*/
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dl_schedfile.h"
#include "schedfile_driver.h"
#include "tap.h"

static char dir[64];

static void make_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/dlua-sf-XXXXXX");
  CHECK(mkdtemp(dir) != NULL);
}

static void test_write_then_read(void) {
  dl_schedfile f, g;
  char path[128], err[600];
  struct stat st;
  DIR *dp;
  struct dirent *e;
  int n = 0;
  make_dir();
  snprintf(path, sizeof path, "%s/scheduler.json", dir);
  memset(&f, 0, sizeof f);
  snprintf(f.address, sizeof f.address, "tcp://10.0.0.1:8786");
  snprintf(f.dashboard, sizeof f.dashboard, "http://10.0.0.1:8787/status");
  snprintf(f.id, sizeof f.id, "Scheduler-abc");
  f.pid = 4321;
  CHECK(dl_schedfile_write(path, &f, "0.1.0", err, sizeof err) == 0);
  CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
  CHECK(dl_schedfile_read(path, &g, err, sizeof err) == 0);
  CHECK(strcmp(g.address, f.address) == 0);
  CHECK(strcmp(g.dashboard, f.dashboard) == 0);
  CHECK(strcmp(g.id, f.id) == 0 && g.pid == 4321);
  /* Written again over the old one; no temporary file is left behind. */
  snprintf(f.address, sizeof f.address, "tcp://[::1]:9999");
  CHECK(dl_schedfile_write(path, &f, "0.1.0", err, sizeof err) == 0);
  CHECK(dl_schedfile_read(path, &g, err, sizeof err) == 0);
  CHECK(strcmp(g.address, "tcp://[::1]:9999") == 0);
  CHECK((dp = opendir(dir)) != NULL);
  while ((e = readdir(dp)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(dp);
  CHECK(n == 1);
  unlink(path);
  rmdir(dir);
}

static void test_bad_files(void) {
  dl_schedfile f;
  char err[600];
  CHECK(dl_schedfile_read("/nonexistent/sf.json", &f, err, sizeof err) < 0);
  CHECK(strstr(err, "/nonexistent/sf.json") && strstr(err, "No such file"));
  CHECK(dl_schedfile_parse("x.json", "{oops", 5, &f, err, sizeof err) ==
        DL_EINVAL);
  CHECK(strstr(err, "x.json is not a JSON object"));
  CHECK(dl_schedfile_parse("x.json", "{\"address\": \"10.0.0.1:1\"}", 25, &f,
                           err, sizeof err) == DL_EINVAL);
  CHECK(strstr(err, "no \"address\" of the form"));
  CHECK(dl_schedfile_parse("x.json", "{\"address\": \"tcp://a:1\", \"id\": 5}",
                           33, &f, err, sizeof err) == DL_EINVAL);
  CHECK(dl_schedfile_write("/nonexistent/sf.json", &f, "0.1.0", err,
                           sizeof err) < 0);
  CHECK(strstr(err, "cannot write the scheduler file"));
}

static void one(const unsigned char *p, size_t n, void *ud) {
  (void)ud;
  schedfile_drive(p, n);
}

static void test_replay_fuzz_regressions(void) {
  CHECK(tap_replay("tests/fuzz/regressions-schedfile", one, NULL) > 0);
}

int main(void) {
  RUN(test_write_then_read);
  RUN(test_bad_files);
  RUN(test_replay_fuzz_regressions);
  return TAP_END();
}

/*
** test_mem.c -- C tests of the runtime's allocator (dl_mem.c): realloc
** semantics across the big-block threshold, reuse of freed big blocks, and
** sharing a block with another process (a memfd mapped, or a private
** block read by its address).
*/
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dl_buf.h"
#include "dl_mem.h"
#include "tap.h"

#define MB ((size_t)1 << 20)

static void fill(char *p, size_t n, unsigned seed) {
  size_t i;
  for (i = 0; i < n; i += 4093) p[i] = (char)(seed + i / 4093);
  if (n) p[n - 1] = (char)(seed ^ 0x5a);
}

static int same(const char *p, size_t n, unsigned seed) {
  size_t i;
  for (i = 0; i < n; i += 4093)
    if (p[i] != (char)(seed + i / 4093)) return 0;
  return n == 0 || p[n - 1] == (char)(seed ^ 0x5a);
}

/* The bytes fill wrote below n, but not its last-byte mark. */
static int same_prefix(const char *p, size_t n, unsigned seed) {
  size_t i;
  for (i = 0; i + 1 < n; i += 4093)
    if (p[i] != (char)(seed + i / 4093)) return 0;
  return 1;
}

static void test_realloc_keeps_bytes_across_the_threshold(void) {
  size_t sizes[] = {100, 3 * MB, 5 * MB, 40 * MB, 9 * MB, 2 * MB, 64, 6 * MB};
  size_t i, n = 100;
  char *p = dl_realloc(NULL, n);
  CHECK(p != NULL);
  fill(p, n, 7);
  for (i = 1; i < sizeof sizes / sizeof *sizes; i++) {
    size_t keep = sizes[i] < n ? sizes[i] : n;
    p = dl_realloc(p, sizes[i]);
    CHECK(p != NULL);
    /* The bytes both sizes share survive every move. */
    CHECK(same_prefix(p, keep, 7));
    fill(p, sizes[i], 7);
    n = sizes[i];
  }
  CHECK(dl_realloc(p, 0) == NULL);
}

static void test_big_blocks_are_aligned_and_reused(void) {
  char *a, *b;
  dl_mem_trim();
  CHECK(dl_mem_cached() == 0);
  a = dl_realloc(NULL, 20 * MB);
  CHECK(a != NULL);
  CHECK(((uintptr_t)a & (2 * MB - 1)) == 0);
  memset(a, 1, 20 * MB);
  dl_free(a);
  CHECK(dl_mem_cached() >= 20 * MB);
  /* A block of about the same size comes back from the cache. */
  b = dl_realloc(NULL, 19 * MB);
  CHECK(b == a);
  CHECK(dl_mem_cached() == 0);
  dl_free(b);
  dl_mem_trim();
  CHECK(dl_mem_cached() == 0);
}

static void test_cache_respects_its_budget(void) {
  char *p[4];
  int i;
  dl_mem_trim();
  dl_mem_set_cache_max(30 * MB);
  for (i = 0; i < 4; i++) CHECK((p[i] = dl_realloc(NULL, 12 * MB)) != NULL);
  for (i = 0; i < 4; i++) dl_free(p[i]);
  CHECK(dl_mem_cached() <= 30 * MB);
  CHECK(dl_mem_cached() > 0);
  dl_mem_set_cache_max(0);
  CHECK(dl_mem_cached() == 0);
  dl_mem_set_cache_max(256 * MB);
}

static void test_small_aligned_frees_are_not_confused(void) {
  /* malloc may hand out a 2 MiB-aligned block; dl_free must pass it on. */
  void *p = NULL;
  CHECK(posix_memalign(&p, 2 * MB, 64) == 0);
  dl_free(p);
  CHECK((p = dl_realloc(NULL, 32)) != NULL);
  dl_free(p);
}

static void test_another_process_maps_a_shared_block(void) {
  size_t n = 10 * MB + 123;
  char *p = dl_realloc(NULL, n);
  dl_mem_ref ref;
  int fds[2], st = 0;
  pid_t pid;
  CHECK(p != NULL);
  fill(p, n, 3);
  CHECK(dl_mem_share(p, n, &ref) == 0);
  CHECK(ref.size >= n && ref.size < n + 4096);
  CHECK(pipe(fds) == 0);
  pid = fork();
  if (pid == 0) {
    /* A stranger process (exec'd, not forked memory) behaves the same;
       what matters is that it reads the parent's pages. */
    const char *m = dl_mem_map(getppid(), &ref);
    dl_mem_ref wrong = ref;
    char ok = m != NULL && same(m, n, 3);
    wrong.ino ^= 1;
    if (dl_mem_map(getppid(), &wrong) != NULL) ok = 0; /* other inode */
    wrong = ref;
    wrong.size = ref.size * 4;
    if (dl_mem_map(getppid(), &wrong) != NULL) ok = 0; /* file too short */
    if (write(fds[1], &ok, 1) != 1) _exit(2);
    dl_free((void *)m);
    _exit(ok ? 0 : 1);
  }
  {
    char ok = 0;
    CHECK(read(fds[0], &ok, 1) == 1);
    CHECK(ok == 1);
  }
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  /* A shared block is never reused: freeing it does not fill the cache. */
  dl_mem_trim();
  dl_free(p);
  CHECK(dl_mem_cached() == 0);
  close(fds[0]);
  close(fds[1]);
}

/* Whether the mapping that holds p is a memfd's (per /proc/self/maps). */
static int on_memfd(const void *p) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  int r = -1;
  while (f && r < 0 && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)p >= lo &&
        (uintptr_t)p < hi)
      r = strstr(line, "memfd:") != NULL;
  }
  if (f) fclose(f);
  return r;
}

static void test_private_blocks_are_shared_as_files_through_a_copy(void) {
  size_t n = 6 * MB + 77;
  char *p, *q;
  dl_mem_ref ref;
  int st = 0;
  pid_t pid;
  dl_mem_trim();
  dl_mem_private(1);
  p = dl_realloc(NULL, n);
  CHECK(p != NULL);
  CHECK(on_memfd(p) == 0); /* anonymous memory (huge pages if allowed) */
  fill(p, n, 9);
  /* grown in place or moved, it stays private with its bytes */
  CHECK((p = dl_realloc(p, n + 3 * MB)) != NULL);
  CHECK(on_memfd(p) == 0 && same_prefix(p, n, 9));
  fill(p, n, 9);
  CHECK(dl_mem_share_file(p, n, &ref) == 0);
  CHECK(ref.size >= n && ref.size < n + 4096 && ref.fd != DL_MEM_NOFD);
  pid = fork();
  if (pid == 0) {
    const char *m = dl_mem_map(getppid(), &ref);
    _exit(m != NULL && same(m, n, 9) && on_memfd(m) == 1 ? 0 : 1);
  }
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  dl_free(p); /* shared: never reused */
  CHECK(dl_mem_cached() == 0);
  /* A freed private block is reused by private asks only: a shareable
     ask must get a memfd. */
  CHECK((p = dl_realloc(NULL, 5 * MB)) != NULL);
  dl_free(p);
  CHECK(dl_mem_cached() >= 5 * MB);
  dl_mem_private(0);
  CHECK((q = dl_realloc(NULL, 5 * MB)) != NULL);
  CHECK(q != p && on_memfd(q) == 1);
  CHECK(dl_mem_cached() >= 5 * MB);
  dl_free(q);
  dl_mem_trim();
}

/* A child's private block, shared by its address: the child writes its
   ref on to, frees the block when told on from (and makes another block
   of the same bytes, likely at the same address), says so, and waits. */
static void share_then_free(int to, int from, size_t n) {
  dl_mem_ref ref;
  char c = 0, *p, *q;
  dl_mem_private(1);
  p = dl_realloc(NULL, n);
  if (p == NULL) _exit(2);
  fill(p, n, 11);
  if (dl_mem_share(p, n, &ref) != 0) _exit(3);
  if (write(to, &ref, sizeof ref) != (ssize_t)sizeof ref) _exit(4);
  if (read(from, &c, 1) != 1) _exit(5);
  dl_free(p);
  q = dl_realloc(NULL, n);
  if (q == NULL) _exit(6);
  fill(q, n, 11);
  if (write(to, &c, 1) != 1) _exit(7);
  if (read(from, &c, 1) != 1) _exit(8);
  dl_free(q);
  _exit(0);
}

static void test_private_blocks_are_read_by_their_address(void) {
  size_t n = 9 * MB + 501;
  int up[2], down[2], st = 0;
  dl_mem_ref ref, wrong;
  const char *m;
  char c = 'x';
  pid_t pid;
  CHECK(pipe(up) == 0 && pipe(down) == 0);
  /* The child shares and this process reads (a ptrace policy such as
     Yama's lets a process read its descendants only). */
  pid = fork();
  if (pid == 0) share_then_free(up[1], down[0], n);
  CHECK(read(up[0], &ref, sizeof ref) == (ssize_t)sizeof ref);
  /* No memfd copy was made: the ref names the block's address. */
  CHECK(ref.fd == DL_MEM_NOFD && ref.addr != 0 && ref.cookie != 0);
  CHECK(ref.size >= n && ref.size < n + 4096);
  m = dl_mem_map(pid, &ref);
  CHECK(m != NULL && same(m, n, 11));
  CHECK(on_memfd(m) == 0); /* a copy of this process's own */
  dl_free((void *)m);
  wrong = ref;
  wrong.cookie ^= 1;
  CHECK(dl_mem_map(pid, &wrong) == NULL); /* the seal does not match */
  CHECK(errno == ESTALE); /* not a refusal: the next block may be read */
  /* Freed, the block cannot be read, even where the same bytes lie at
     the same address again. */
  CHECK(write(down[1], &c, 1) == 1);
  CHECK(read(up[0], &c, 1) == 1);
  CHECK(dl_mem_map(pid, &ref) == NULL);
  CHECK(errno == ESTALE);
  CHECK(write(down[1], &c, 1) == 1);
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK(dl_mem_map(pid, &ref) == NULL); /* nor once its process is gone */
  CHECK(errno == ESTALE);
  close(up[0]);
  close(up[1]);
  close(down[0]);
  close(down[1]);
}

/* A read of another process's memory that the system refuses fails
   with errno EPERM (which the callers remember: every later read would be
   refused alike).  The reader is a child that may not read this process:
   one of another user where this runs as root (CAP_SYS_PTRACE would let
   root read a non-dumpable process), else this process made non-dumpable
   for the child's read. */
static void test_a_refused_read_says_eperm(void) {
  size_t n = 5 * MB;
  char *p;
  dl_mem_ref ref;
  pid_t pid, me = getpid();
  int st = 0, root = geteuid() == 0;
  dl_mem_private(1);
  p = dl_realloc(NULL, n);
  dl_mem_private(0);
  CHECK(p != NULL);
  memset(p, 'r', n);
  CHECK(dl_mem_share(p, n, &ref) == 0 && ref.fd == DL_MEM_NOFD);
  if (!root) CHECK(prctl(PR_SET_DUMPABLE, 0) == 0);
  pid = fork();
  if (pid == 0) {
    const char *m;
    if (root && setuid(65534) != 0) _exit(77);
    errno = 0;
    m = dl_mem_map(me, &ref);
    _exit(m == NULL && errno == EPERM ? 0 : 1);
  }
  waitpid(pid, &st, 0);
  if (!root) prctl(PR_SET_DUMPABLE, 1);
  CHECK(WIFEXITED(st));
  if (WEXITSTATUS(st) == 77) /* no other user to be here: nothing shown */
    printf("# a refused read: no other user to read as\n");
  else
    CHECK(WEXITSTATUS(st) == 0);
  dl_free(p);
}

static void test_a_gone_process_cannot_be_mapped(void) {
  dl_mem_ref ref;
  pid_t pid = fork();
  int st = 0;
  if (pid == 0) _exit(0);
  waitpid(pid, &st, 0);
  ref.fd = 3;
  ref.ino = 1;
  ref.size = 4096;
  CHECK(dl_mem_map(pid, &ref) == NULL);
  ref.size = 0;
  CHECK(dl_mem_map(getpid(), &ref) == NULL);
  /* Only big blocks can be shared. */
  {
    char *small = dl_realloc(NULL, 1000);
    CHECK(dl_mem_share(small, 1000, &ref) == -1);
    dl_free(small);
  }
}

static void test_big_blocks_leave_descriptors_for_the_program(void) {
  struct rlimit rl = {200, 200};
  char *p[100];
  int i, shareable = 0, files[60];
  dl_mem_ref ref;
  CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
  for (i = 0; i < 100; i++) {
    CHECK((p[i] = dl_realloc(NULL, 4 * MB)) != NULL);
    p[i][4 * MB - 1] = (char)i;
    shareable += dl_mem_share_file(p[i], 4 * MB, &ref) == 0;
  }
  /* Past its budget a block is plain memory: usable, not shareable as a
     file, and the program can still open files. */
  CHECK(shareable > 0 && shareable <= 64);
  for (i = 0; i < 60; i++) CHECK((files[i] = open("/dev/null", O_RDONLY)) >= 0);
  for (i = 0; i < 60; i++) close(files[i]);
  for (i = 0; i < 100; i++) {
    CHECK(p[i][4 * MB - 1] == (char)i);
    dl_free(p[i]);
  }
}

static void test_huge_blocks_are_zeroed_and_not_cached(void) {
  size_t n = 3 * MB + 5, i;
  char *p = dl_mem_huge(n), *q;
  CHECK(p != NULL);
  CHECK(((uintptr_t)p & (2 * MB - 1)) == 0);
  for (i = 0; i < n; i += 4096) CHECK(p[i] == 0);
  CHECK(p[n - 1] == 0);
  fill(p, n, 3);
  /* dl_realloc keeps its bytes, growing past DL_MEM_BIG or moving to
     malloc below it. */
  q = dl_realloc(p, 9 * MB);
  CHECK(q != NULL && same_prefix(q, n, 3));
  q = dl_realloc(q, 100);
  CHECK(q != NULL && same_prefix(q, 100, 3));
  dl_free(q);
  /* Freed, it is unmapped, not cached for reuse. */
  dl_mem_trim();
  p = dl_mem_huge(MB);
  CHECK(p != NULL);
  dl_free(p);
  CHECK(dl_mem_cached() == 0);
  CHECK(dl_mem_huge(0) == NULL);
}

/* This process's resident bytes. */
static size_t rss(void) {
  unsigned long pages = 0, res = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  CHECK(f != NULL);
  CHECK(fscanf(f, "%lu %lu", &pages, &res) == 2);
  fclose(f);
  return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

/* Bytes of anonymous memory on transparent huge pages in this process. */
static size_t anon_huge(void) {
  char line[256];
  unsigned long kb = 0;
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  CHECK(f != NULL);
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "AnonHugePages: %lu kB", &kb) == 1) break;
  fclose(f);
  return (size_t)kb << 10;
}

/* Whether the system gives huge pages to memory marked MADV_HUGEPAGE. */
static int thp_on(void) {
  char s[128] = "";
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (f == NULL) return 0;
  if (fgets(s, sizeof s, f) == NULL) s[0] = '\0';
  fclose(f);
  return strstr(s, "[never]") == NULL;
}

/* In a thread of its own (a fresh heap: the main thread's first segment
   was made before dl_mem_heap_init, when the harness printed), 40 MB of
   small blocks land on huge pages, and dl_mem_trim gives their pages back
   once they are freed. */
static void *small_blocks(void *arg) {
  enum { NSMALL = 400000 };
  static char *small[NSMALL];
  size_t before = anon_huge(), i;
  (void)arg;
  for (i = 0; i < NSMALL; i++) {
    small[i] = malloc(100);
    CHECK(small[i] != NULL);
    memset(small[i], (int)i, 100);
  }
  if (thp_on()) CHECK(anon_huge() >= before + 32 * MB);
  before = rss();
  for (i = 0; i < NSMALL; i++) free(small[i]);
  dl_mem_trim();
  CHECK(rss() + 24 * MB <= before);
  return NULL;
}

static void test_heap_on_huge_pages(void) {
  size_t before;
  pthread_t t;
  char *mid;
  /* The test build links mimalloc as the dlua command does; the
     sanitizers' builds keep their own malloc, and then this is a no-op. */
  int on = dl_mem_heap_init();
#ifdef DL_TEST_HEAP_LIBS
  CHECK(on == (getenv("DLUA_SANITIZE") == NULL));
#else
  CHECK(on == 0); /* built without mimalloc: glibc's heap, untouched */
#endif
  CHECK(dl_mem_heap_init() == on); /* once only */
  if (!on) return;
  CHECK(pthread_create(&t, NULL, small_blocks, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  /* A block of 1 to 4 MiB is mapped alone: freeing it gives it back at
     once, and realloc keeps its bytes in and out of that range. */
  mid = dl_realloc(NULL, 2 * MB + 123);
  CHECK(mid != NULL);
  CHECK(((uintptr_t)mid & (2 * MB - 1)) == 0);
  fill(mid, 2 * MB + 123, 3);
  mid = dl_realloc(mid, 3 * MB + 5);
  CHECK(mid != NULL && same_prefix(mid, 2 * MB + 123, 3));
  fill(mid, 3 * MB + 5, 4);
  mid = dl_realloc(mid, 5 * MB);
  CHECK(mid != NULL && same_prefix(mid, 3 * MB + 5, 4));
  mid = dl_realloc(mid, 1 * MB + 1);
  CHECK(mid != NULL && same_prefix(mid, 1 * MB + 1, 4));
  mid = dl_realloc(mid, 4000);
  CHECK(mid != NULL && same_prefix(mid, 4000, 4));
  mid = dl_realloc(mid, 2 * MB);
  CHECK(mid != NULL && same_prefix(mid, 4000, 4));
  fill(mid, 2 * MB, 5);
  before = rss();
  dl_free(mid);
  CHECK(rss() + MB + MB / 2 <= before);
}

int main(void) {
  RUN(test_realloc_keeps_bytes_across_the_threshold);
  RUN(test_big_blocks_are_aligned_and_reused);
  RUN(test_cache_respects_its_budget);
  RUN(test_small_aligned_frees_are_not_confused);
  RUN(test_another_process_maps_a_shared_block);
  RUN(test_private_blocks_are_shared_as_files_through_a_copy);
  RUN(test_private_blocks_are_read_by_their_address);
  RUN(test_a_refused_read_says_eperm);
  RUN(test_a_gone_process_cannot_be_mapped);
  RUN(test_big_blocks_leave_descriptors_for_the_program);
  RUN(test_huge_blocks_are_zeroed_and_not_cached);
  RUN(test_heap_on_huge_pages);
  return TAP_END();
}

/*
** dl_mem.c -- the runtime's one allocator.  See dl_mem.h.
**
** Big blocks start on 2 MiB boundaries, so dl_free tells them from malloc's
** blocks with one test of the address; only a 2 MiB-aligned address (rare
** for malloc, always for ours) is looked up in the table of big blocks.
** The table, the cache of freed blocks and their counters are guarded by
** one mutex: big blocks are few and each one is megabytes of work.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <mimalloc.h>

#include "dl_buf.h"
#include "dl_mem.h"

/* mimalloc's API, bound only where the process runs on it: the dlua
   command links libmimalloc (which then serves malloc itself); libdlua
   does not, so an embedder keeps its own malloc. */
#pragma weak mi_manage_os_memory
#pragma weak mi_option_set
#pragma weak mi_collect

#define ALIGN ((size_t)2 << 20)
#define PAGE ((size_t)4096)
#define NCACHE 16

enum {
  SHARED = 1, /* another process may see these pages */
  PRIVATE = 2 /* dl_mem_huge's: anonymous, never cached */
};

typedef struct big {
  char *p;       /* start, ALIGN-aligned; NULL marks a free table slot */
  size_t map;    /* bytes mapped: a multiple of PAGE, and the file size */
  size_t len;    /* bytes asked for (what realloc must keep) */
  int fd;        /* the memfd, or -1 for an anonymous mapping */
  int flags;     /* SHARED: another process may see these pages */
  int readonly;  /* a mapping of another process's block */
  int seal;      /* 1 + the index of its seal, or 0 */
} big;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static big *tab;       /* open addressing on p */
static size_t tabcap;  /* a power of two, or 0 */
static size_t tabn;
static big cache[NCACHE]; /* freed blocks kept for reuse, oldest first */
static int ncache;
static size_t cached;
static size_t cache_max = (size_t)256 << 20;
/* Descriptors held by big blocks, and how many they may hold: a quarter of
   the process's limit, so a program with many big strings never runs out
   of descriptors for its files and sockets because of us. */
static int nfds, fd_budget = -1;
/* dl_mem_private: this thread's new big blocks are anonymous memory. */
static __thread int private_hint;
/* Blocks from mid_min bytes up to DL_MEM_BIG get private anonymous
   mappings of their own, unmapped when freed (0: malloc keeps them).  Set
   by dl_mem_heap_init: glibc's malloc does so itself (a worker sets its
   mmap threshold), mimalloc keeps such blocks in its segments. */
static size_t mid_min;

/* Seals: one word per private block shared by its address, which holds
   the block's cookie while the block lives and 0 once it is freed.  A
   reader copies the block out of this process, then its seal: a seal
   still right after the bytes were read means they were the block's (it
   is cleared before the block is unmapped).  The words are mapped once
   and never move; past NSEALS shared blocks, blocks are shared through
   memfd copies again. */
#define NSEALS 16384
static uint64_t *seals;
static int seal_next;          /* where the search for a free seal starts */
static uint64_t seal_key;      /* random, per process */
static pid_t seal_pid;         /* the process seal_key was drawn for */
static uint64_t seal_count;

/* Whether a block of n bytes gets a mapping of its own. */
static int mapped(size_t n) {
  return n >= DL_MEM_BIG || (mid_min != 0 && n >= mid_min);
}

static size_t slot_of(const void *p) {
  uint64_t h = ((uint64_t)(uintptr_t)p >> 21) * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 32) & (tabcap - 1);
}

/* The table slot of the big block at p, or NULL (mu held). */
static big *tab_find(const void *p) {
  size_t i;
  if (tabcap == 0) return NULL;
  for (i = slot_of(p); tab[i].p; i = (i + 1) & (tabcap - 1))
    if (tab[i].p == p) return &tab[i];
  return NULL;
}

static int tab_put(const big *b) {
  size_t i;
  if ((tabn + 1) * 2 > tabcap) {
    size_t oc = tabcap, nc = oc ? oc * 2 : 64, k;
    big *old = tab, *nt = calloc(nc, sizeof *nt);
    if (nt == NULL) return -1;
    tab = nt;
    tabcap = nc;
    for (k = 0; k < oc; k++)
      if (old[k].p) {
        for (i = slot_of(old[k].p); tab[i].p; i = (i + 1) & (tabcap - 1)) {
        }
        tab[i] = old[k];
      }
    free(old);
  }
  for (i = slot_of(b->p); tab[i].p; i = (i + 1) & (tabcap - 1)) {
  }
  tab[i] = *b;
  tabn++;
  return 0;
}

/* Remove the entry at slot e, keeping every probe chain unbroken. */
static void tab_del(big *e) {
  size_t i = (size_t)(e - tab), j = i;
  tab[i].p = NULL;
  tabn--;
  for (;;) {
    size_t k;
    j = (j + 1) & (tabcap - 1);
    if (tab[j].p == NULL) return;
    k = slot_of(tab[j].p);
    /* Move j back to i unless its home slot k lies cyclically in (i, j]. */
    if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j)) continue;
    tab[i] = tab[j];
    tab[j].p = NULL;
    i = j;
  }
}

static size_t round_up(size_t n, size_t to) {
  return n > SIZE_MAX - to ? 0 : (n + to - 1) & ~(to - 1);
}

/* Reserve size bytes of address space on an ALIGN boundary, or NULL. */
static char *reserve(size_t size) {
  size_t span = size + ALIGN;
  char *r = mmap(NULL, span, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  char *a;
  if (r == MAP_FAILED) return NULL;
  a = (char *)(((uintptr_t)r + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
  if (a > r) munmap(r, (size_t)(a - r));
  if (a + size < r + span) munmap(a + size, (size_t)(r + span - (a + size)));
  return a;
}

static void release(big *b) {
  if (b->seal) /* before the unmap: see seals */
    __atomic_store_n(&seals[b->seal - 1], 0, __ATOMIC_RELEASE);
  munmap(b->p, b->map);
  if (b->fd >= 0) {
    close(b->fd);
    nfds--;
  }
}

/* Whether one more block may keep a descriptor (mu held). */
static int fd_allowed(void) {
  if (fd_budget < 0) {
    struct rlimit rl;
    rlim_t q = 64; /* limit unknown: a modest guess */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
      q = rl.rlim_cur == RLIM_INFINITY ? 65536 : rl.rlim_cur / 4;
    fd_budget = q > 65536 ? 65536 : (int)q;
  }
  return nfds < fd_budget;
}

/* Map a fresh block of map bytes into *b, anonymous memory if anon;
   0 or -1. */
static int fresh(big *b, size_t map, int anon) {
  char *a = reserve(map);
  if (a == NULL) return -1;
  memset(b, 0, sizeof *b);
  b->fd = !anon && fd_allowed() ? memfd_create("dlua", MFD_CLOEXEC) : -1;
  if (b->fd >= 0) nfds++;
  if (b->fd >= 0 && ftruncate(b->fd, (off_t)map) == 0 &&
      mmap(a, map, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, b->fd,
           0) == a) {
    b->p = a;
    b->map = map;
    return 0;
  }
  /* No memfd (descriptors used up, or dl_mem_private): anonymous memory,
     huge pages where the system allows them.  Such a block cannot be
     shared. */
  if (b->fd >= 0) {
    close(b->fd);
    nfds--;
  }
  b->fd = -1;
  if (mmap(a, map, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != a) {
    munmap(a, map);
    return -1;
  }
#ifdef MADV_HUGEPAGE
  madvise(a, map, MADV_HUGEPAGE);
#endif
  b->p = a;
  b->map = map;
  return 0;
}

/* Resize the private block b to map bytes; its bytes stay; 0 or -1. */
static int resize(big *b, size_t map) {
  char *to;
  if (map == b->map) return 0;
  if (map < b->map) {
    if (mremap(b->p, b->map, map, 0) != b->p) return -1;
    if (b->fd >= 0 && ftruncate(b->fd, (off_t)map) != 0) {
      /* The tail stays in the file; harmless, it is never mapped. */
    }
    b->map = map;
    return 0;
  }
  if (b->fd >= 0 && ftruncate(b->fd, (off_t)map) != 0) return -1;
  if (mremap(b->p, b->map, map, 0) == b->p) {
    b->map = map;
    return 0;
  }
  to = reserve(map);
  if (to == NULL) return -1;
  if (mremap(b->p, b->map, map, MREMAP_MAYMOVE | MREMAP_FIXED, to) != to) {
    munmap(to, map);
    return -1;
  }
  b->p = to;
  b->map = map;
  return 0;
}

/* Whether a block of have bytes wastes too much to hold need bytes. */
static int too_big(size_t have, size_t need) {
  return have > need + need / 4 + ALIGN;
}

/* A big block of at least n bytes, from the cache if it has one (mu held). */
static int take_block(big *b, size_t n) {
  size_t map = round_up(n, PAGE);
  int i, fit = -1, under = -1;
  if (map == 0) return -1;
  if (n < DL_MEM_BIG) { /* a mid block: never cached, never a memfd */
    if (fresh(b, map, 1)) return -1;
    b->flags = PRIVATE;
    b->len = n;
    return 0;
  }
  /* The smallest cached block that holds n, else the biggest one: its
     pages are already faulted in, whatever it must grow by. */
  for (i = 0; i < ncache; i++) {
    if (cache[i].fd < 0 && !private_hint) continue; /* keep it shareable */
    if (cache[i].map >= map) {
      if (fit < 0 || cache[i].map < cache[fit].map) fit = i;
    } else if (under < 0 || cache[i].map > cache[under].map) {
      under = i;
    }
  }
  if (fit < 0) fit = under;
  if (fit >= 0) {
    big c = cache[fit];
    memmove(&cache[fit], &cache[fit + 1],
            sizeof *cache * (size_t)(ncache - fit - 1));
    ncache--;
    cached -= c.map;
    if ((c.map < map || too_big(c.map, map)) && resize(&c, map)) {
      release(&c);
    } else {
      *b = c;
      b->len = n;
      return 0;
    }
  }
  if (fresh(b, map, private_hint)) return -1;
  b->len = n;
  return 0;
}

/* Hand a block back: to the cache if it may be reused, else unmapped.
   Called with mu held; b is a copy, no longer in the table. */
static void drop_block(big *b) {
  if (b->flags & (SHARED | PRIVATE) || b->readonly || b->map > cache_max) {
    release(b);
    return;
  }
  while (ncache > 0 && (ncache == NCACHE || cached + b->map > cache_max)) {
    release(&cache[0]);
    cached -= cache[0].map;
    memmove(&cache[0], &cache[1], sizeof *cache * (size_t)(ncache - 1));
    ncache--;
  }
  cache[ncache++] = *b;
  cached += b->map;
}

static void *big_alloc(size_t n) {
  big b;
  void *p = NULL;
  pthread_mutex_lock(&mu);
  if (take_block(&b, n) == 0) {
    if (tab_put(&b) == 0) p = b.p;
    else release(&b);
  }
  pthread_mutex_unlock(&mu);
  return p;
}

/* realloc of the big block e (mu held; unlocks it). */
static void *big_realloc(big *e, size_t n) {
  big b = *e;
  void *q;
  if (mapped(n) && !(b.flags & SHARED) && !b.readonly) {
    size_t map = round_up(n, PAGE);
    int ok = map != 0;
    if (ok && (map > b.map || too_big(b.map, map))) ok = resize(&b, map) == 0;
    if (ok) {
      b.len = n;
      if (b.p == e->p) {
        *e = b;
      } else { /* moved: one entry out, one in, so the table cannot grow */
        tab_del(e);
        tab_put(&b);
      }
      pthread_mutex_unlock(&mu);
      return b.p;
    }
  }
  pthread_mutex_unlock(&mu);
  /* Moving is the only way: to malloc, or out of a shared block. */
  q = mapped(n) ? big_alloc(n) : malloc(n);
  if (q == NULL) return NULL;
  memcpy(q, b.p, n < b.len ? n : b.len);
  pthread_mutex_lock(&mu);
  e = tab_find(b.p);
  if (e) {
    b = *e;
    tab_del(e);
    drop_block(&b);
  }
  pthread_mutex_unlock(&mu);
  return q;
}

/* If p is a big block, lock mu and return its entry; else NULL, unlocked. */
static big *lookup(const void *p) {
  big *e;
  if (p == NULL || ((uintptr_t)p & (ALIGN - 1)) != 0) return NULL;
  pthread_mutex_lock(&mu);
  e = tab_find(p);
  if (e == NULL) pthread_mutex_unlock(&mu);
  return e;
}

void *dl_realloc(void *p, size_t n) {
  big *e = lookup(p);
  void *q;
  if (e) {
    if (n == 0) {
      big b = *e;
      tab_del(e);
      drop_block(&b);
      pthread_mutex_unlock(&mu);
      return NULL;
    }
    return big_realloc(e, n);
  }
  if (n == 0) {
    free(p);
    return NULL;
  }
  if (!mapped(n)) return realloc(p, n);
  q = big_alloc(n);
  if (q && p) {
    size_t old = malloc_usable_size(p);
    memcpy(q, p, old < n ? old : n);
    free(p);
  }
  return q;
}

void dl_free(void *p) {
  big *e = lookup(p);
  if (e) {
    big b = *e;
    tab_del(e);
    drop_block(&b);
    pthread_mutex_unlock(&mu);
    return;
  }
  free(p);
}

/* A memfd holding a copy of the first used bytes of the private block e,
   its size rounded up to a page, or -1 (mu held).  write() fills it
   without faulting pages into this process.  Named apart from the
   memfds that hold blocks, so that /proc/PID/fd tells the copies (each
   a value asked for as a file) from the rest. */
static int copy_to_memfd(const big *e, size_t used) {
  size_t size = round_up(used, PAGE), put = 0;
  int fd;
  if (size == 0 || size > e->map || !fd_allowed()) return -1;
  fd = memfd_create("dlua-copy", MFD_CLOEXEC);
  if (fd < 0) return -1;
  if (ftruncate(fd, (off_t)size) != 0) put = (size_t)-1;
  while (put < used) {
    ssize_t w = pwrite(fd, e->p + put, used - put, (off_t)put);
    if (w > 0) put += (size_t)w;
    else if (w < 0 && errno == EINTR) continue;
    else { put = (size_t)-1; break; }
  }
  if (put != used) {
    close(fd);
    return -1;
  }
  nfds++;
  return fd;
}

/* A cookie no other block of this process, nor (but by a 2^-64 chance)
   of another process, has had (mu held). */
static uint64_t new_cookie(void) {
  uint64_t z;
  if (seal_pid != getpid()) { /* first use, or a forked child: new draws */
    if (getrandom(&seal_key, sizeof seal_key, GRND_NONBLOCK) !=
        (ssize_t)sizeof seal_key)
      seal_key = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull;
    seal_key ^= (uint64_t)getpid() << 32;
    seal_pid = getpid();
    seal_count = 0;
  }
  z = seal_key + ++seal_count * 0x9E3779B97F4A7C15ull; /* splitmix64 */
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z ? z : 1;
}

/* Give the block e a seal if it has none: 0, or -1 when none is free
   (mu held). */
static int seal_take(big *e) {
  int i, k;
  if (e->seal) return 0;
  if (seals == NULL) {
    void *m = mmap(NULL, NSEALS * sizeof *seals, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return -1;
    seals = m;
  }
  for (k = 0; k < NSEALS; k++) {
    i = (seal_next + k) % NSEALS;
    if (seals[i] == 0) {
      __atomic_store_n(&seals[i], new_cookie(), __ATOMIC_RELEASE);
      e->seal = i + 1;
      seal_next = (i + 1) % NSEALS;
      return 0;
    }
  }
  return -1;
}

/* dl_mem_share, through a memfd copy of a private block if file. */
static int share(const void *p, size_t used, dl_mem_ref *ref, int file) {
  big *e = lookup(p);
  struct stat st;
  int rc = -1;
  if (e == NULL) return -1;
  memset(ref, 0, sizeof *ref);
  ref->fd = DL_MEM_NOFD;
  /* A private block is read by its address, or shared through a copy:
     either way it is never written again, so the reader gets its bytes. */
  if (e->fd < 0 && !e->readonly && (file || seal_take(e) != 0))
    e->fd = copy_to_memfd(e, used);
  if (e->fd >= 0 && fstat(e->fd, &st) == 0) {
    ref->fd = (uint64_t)e->fd;
    ref->ino = (uint64_t)st.st_ino;
    rc = 0;
  }
  if (e->seal && !file) { /* a file asked for: a file or nothing */
    ref->addr = (uint64_t)(uintptr_t)e->p;
    ref->seal = (uint64_t)(uintptr_t)&seals[e->seal - 1];
    ref->cookie = seals[e->seal - 1];
    rc = 0;
  }
  if (rc == 0) {
    e->flags |= SHARED;
    ref->size = used < e->map ? round_up(used, PAGE) : e->map;
  }
  pthread_mutex_unlock(&mu);
  return rc;
}

int dl_mem_share(const void *p, size_t used, dl_mem_ref *ref) {
  return share(p, used, ref, 0);
}

int dl_mem_share_file(const void *p, size_t used, dl_mem_ref *ref) {
  return share(p, used, ref, 1);
}

const char *dl_mem_map_fd(int fd, size_t size) {
  big b;
  char *a;
  int ok;
  memset(&b, 0, sizeof b);
  b.map = round_up(size, PAGE);
  b.len = size;
  b.fd = fd; /* kept: the mapping can be shared on in its turn */
  b.flags = SHARED;
  b.readonly = 1;
  a = b.map ? reserve(b.map) : NULL;
  ok = a != NULL && mmap(a, b.map, PROT_READ,
                         MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, 0) == a;
  if (!ok) {
    if (a) munmap(a, b.map);
    close(fd);
    return NULL;
  }
  b.p = a;
  pthread_mutex_lock(&mu);
  if (fd_allowed()) {
    nfds++;
  } else { /* the mapping stands alone; it cannot be shared on */
    close(fd);
    b.fd = -1;
  }
  ok = tab_put(&b) == 0;
  if (!ok) release(&b);
  pthread_mutex_unlock(&mu);
  return ok ? a : NULL;
}

/* DLUA_SHARE_MEMORY, read once (racing first readers agree): "0" turns
   reading other processes' blocks off (where /proc/PID/fd is closed to
   us, say: then peers send bytes); "map" reads only blocks that come as
   files: a read by address fails as if the system refused it (EPERM, as
   Yama's ptrace_scope does between sibling processes), so that the
   callers' handling of a refusal can be tested on any host. */
enum { SHARE_ALL, SHARE_MAP, SHARE_OFF };
static int share_mode(void) {
  static int mode = -1;
  if (mode < 0) {
    const char *e = getenv("DLUA_SHARE_MEMORY");
    mode = e == NULL ? SHARE_ALL
           : strcmp(e, "0") == 0 ? SHARE_OFF
           : strcmp(e, "map") == 0 ? SHARE_MAP : SHARE_ALL;
  }
  return mode;
}

int dl_mem_sharing(void) { return share_mode() != SHARE_OFF; }

/* Map the memfd that process pid holds as ref describes, or NULL. */
static const char *map_file(pid_t pid, const dl_mem_ref *ref) {
  char path[64];
  struct stat st;
  int fd;
  if (ref->fd > INT32_MAX) return NULL;
  snprintf(path, sizeof path, "/proc/%ld/fd/%llu", (long)pid,
           (unsigned long long)ref->fd);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      (uint64_t)st.st_ino != ref->ino || (uint64_t)st.st_size < ref->size) {
    close(fd);
    return NULL;
  }
  return dl_mem_map_fd(fd, (size_t)ref->size);
}

/* process_vm_readv moves at most about 2 GiB a call. */
#define READ_STEP ((size_t)1 << 30)

/* Copy the block that process pid described in ref into a new private
   block (huge pages, or a cached block whose pages are in place), then
   its seal: NULL if a read fails or comes short, or if the seal is not
   the block's cookie any more (the block was freed, or pid is now
   another process).  errno is then EPERM if the system refused the read
   (a ptrace policy, a seccomp filter, a kernel without the call: the
   same for every later read), else ESTALE. */
static const char *read_block(pid_t pid, const dl_mem_ref *ref) {
  size_t n = (size_t)ref->size, at = 0;
  int was = private_hint, refused = 0;
  uint64_t seal = 0;
  char *p;
  errno = ESTALE;
  if (ref->seal == 0 || ref->cookie == 0) return NULL;
  private_hint = 1;
  p = big_alloc(n);
  private_hint = was;
  if (p == NULL) return NULL;
  for (;;) {
    size_t step = n - at < READ_STEP ? n - at : READ_STEP;
    int last = at + step == n;
    struct iovec loc[2], rem[2];
    ssize_t want = (ssize_t)step + (last ? (ssize_t)sizeof seal : 0), got;
    loc[0].iov_base = p + at;
    loc[0].iov_len = step;
    rem[0].iov_base = (void *)(uintptr_t)(ref->addr + at);
    rem[0].iov_len = step;
    loc[1].iov_base = &seal; /* read after the bytes: see seals */
    loc[1].iov_len = sizeof seal;
    rem[1].iov_base = (void *)(uintptr_t)ref->seal;
    rem[1].iov_len = sizeof seal;
    got = process_vm_readv(pid, loc, last ? 2 : 1, rem, last ? 2 : 1, 0);
    if (got != want) {
      refused = got < 0 && (errno == EPERM || errno == ENOSYS);
      break;
    }
    at += step;
    if (last) break;
  }
  if (at != n || seal != ref->cookie) {
    dl_free(p);
    errno = refused ? EPERM : ESTALE; /* after dl_free, which may set it */
    return NULL;
  }
  return p;
}

const char *dl_mem_map(pid_t pid, const dl_mem_ref *ref) {
  int mode = share_mode();
  if (mode == SHARE_OFF || ref->size == 0 || ref->size > SIZE_MAX / 2)
    return NULL;
  if (ref->fd != DL_MEM_NOFD) return map_file(pid, ref);
  if (mode == SHARE_MAP) { /* the test hook: see share_mode */
    errno = EPERM;
    return NULL;
  }
  if (ref->addr == 0) {
    errno = ESTALE;
    return NULL;
  }
  return read_block(pid, ref);
}

void *dl_mem_huge(size_t n) {
  size_t map = round_up(n, ALIGN);
  char *a;
  big b;
  int ok;
  if (n == 0 || map == 0) return NULL;
  a = reserve(map);
  if (a == NULL) return NULL;
  if (mmap(a, map, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != a) {
    munmap(a, map);
    return NULL;
  }
#ifdef MADV_HUGEPAGE
  madvise(a, map, MADV_HUGEPAGE);
#endif
  memset(&b, 0, sizeof b);
  b.p = a;
  b.map = map;
  b.len = n;
  b.fd = -1;
  b.flags = PRIVATE;
  pthread_mutex_lock(&mu);
  ok = tab_put(&b) == 0;
  if (!ok) release(&b);
  pthread_mutex_unlock(&mu);
  return ok ? a : NULL;
}

void dl_mem_private(int on) { private_hint = on; }

/* mimalloc 2's segment size: its segments, and so the region it is given
   to carve them from, start on multiples of it. */
#define MI_SEGMENT ((size_t)32 << 20)
/* How long mimalloc keeps freed heap pages before it gives them back to
   the system (its default is 25 ms; segments 500 ms): a page given back
   and written again costs a fault per 4 KiB, and the garbage collector
   frees and the program remakes objects all the time.  At 25 ms bench d
   took 2.5k faults, at 100 ms 1.45k (glibc's malloc: 6.9k); a longer delay
   gained nothing and left a worker's memory measure high for longer. */
#define HEAP_DECOMMIT_MS 100

int dl_mem_heap_init(void) {
  static int done, on;
  const char *e = getenv("DLUA_HUGE_HEAP");
  long pages = sysconf(_SC_PHYS_PAGES);
  size_t size;
  char *r, *a;
  if (done) return on;
  done = 1;
  if (mi_manage_os_memory == NULL || mi_option_set == NULL) return 0;
  if (e != NULL && strcmp(e, "0") == 0) return 0;
  /* As much address space as the machine has memory (never more can be
     resident), reserved but not committed; past it mimalloc asks the
     system for 4 KiB pages as usual. */
  size = round_up(pages > 0 ? (size_t)pages * PAGE : (size_t)1 << 32,
                  MI_SEGMENT);
  if (size == 0) return 0;
  r = mmap(NULL, size + MI_SEGMENT, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) return 0;
  a = (char *)round_up((size_t)(uintptr_t)r, MI_SEGMENT);
  if (a > r) munmap(r, (size_t)(a - r));
  munmap(a + size, (size_t)(r + MI_SEGMENT - a));
#ifdef MADV_HUGEPAGE
  madvise(a, size, MADV_HUGEPAGE);
#endif
  /* Not committed, not large: mimalloc may still give freed pages back
     (MADV_DONTNEED), so a process's memory follows its live data. */
  if (!mi_manage_os_memory(a, size, false, false, true, -1)) {
    munmap(a, size);
    return 0;
  }
#if MI_MALLOC_VERSION >= 210
  mi_option_set(mi_option_purge_delay, HEAP_DECOMMIT_MS);
#else
  mi_option_set(mi_option_decommit_delay, HEAP_DECOMMIT_MS);
  mi_option_set(mi_option_segment_decommit_delay, 5 * HEAP_DECOMMIT_MS);
#endif
  /* Blocks of a MiB or more are mapped alone, as glibc's malloc does for a
     worker, so freeing a big value gives its memory back at once. */
  mid_min = (size_t)1 << 20;
  on = 1;
  return 1;
}

/* The heap's delay before freed pages go back to the system. */
static void heap_delay(long ms) {
#if MI_MALLOC_VERSION >= 210
  mi_option_set(mi_option_purge_delay, ms);
#else
  mi_option_set(mi_option_decommit_delay, ms);
  mi_option_set(mi_option_segment_decommit_delay, 5 * ms);
#endif
}

void dl_mem_heap_eager(int on) {
  if (mi_option_set == NULL) return;
  heap_delay(on ? 0 : HEAP_DECOMMIT_MS);
  if (on && mi_collect != NULL) mi_collect(true);
}

#define NHOOKS 8
static void (*trim_hooks[NHOOKS])(void);
static int nhooks;

int dl_mem_on_trim(void (*fn)(void)) {
  int i, rc = -1;
  pthread_mutex_lock(&mu);
  for (i = 0; i < nhooks; i++)
    if (trim_hooks[i] == fn) rc = 0;
  if (rc && nhooks < NHOOKS) {
    trim_hooks[nhooks++] = fn;
    rc = 0;
  }
  pthread_mutex_unlock(&mu);
  return rc;
}

void dl_mem_trim(void) {
  void (*hooks[NHOOKS])(void);
  int i, n;
  pthread_mutex_lock(&mu);
  for (i = 0; i < ncache; i++) release(&cache[i]);
  ncache = 0;
  cached = 0;
  n = nhooks;
  memcpy(hooks, trim_hooks, sizeof hooks);
  pthread_mutex_unlock(&mu);
  for (i = 0; i < n; i++) hooks[i](); /* outside mu: they may free */
  if (mi_collect != NULL) mi_collect(true); /* freed heap pages, now */
  else
    malloc_trim(0); /* glibc: free pages inside its heaps, every arena's */
}

size_t dl_mem_cache_max(void) {
  size_t n;
  pthread_mutex_lock(&mu);
  n = cache_max;
  pthread_mutex_unlock(&mu);
  return n;
}

size_t dl_mem_cached(void) {
  size_t n;
  pthread_mutex_lock(&mu);
  n = cached;
  pthread_mutex_unlock(&mu);
  return n;
}

void dl_mem_set_cache_max(size_t bytes) {
  pthread_mutex_lock(&mu);
  cache_max = bytes;
  while (ncache > 0 && cached > cache_max) {
    release(&cache[0]);
    cached -= cache[0].map;
    memmove(&cache[0], &cache[1], sizeof *cache * (size_t)(ncache - 1));
    ncache--;
  }
  pthread_mutex_unlock(&mu);
}

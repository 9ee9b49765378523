/*
** dl_mem.h -- the runtime's one allocator, with a layer for big blocks.
**
** dl_realloc and dl_free (declared in dl_buf.h) serve every part of the
** runtime and every Lua state.  Small blocks come from malloc.  A block of
** DL_MEM_BIG bytes or more is a mapping of its own, backed by a memfd where
** the system allows it (unless dl_mem_private), so that
**   - a freed big block is kept mapped and reused (up to a byte budget):
**     the next big value is written into pages that are already there,
**     instead of paying a page fault per 4 KiB of fresh memory;
**   - growing or shrinking one is mremap, never a copy;
**   - another process of the same user can map the very same pages, or
**     copy a private block's bytes straight out of this process
**     (dl_mem_share, then dl_mem_map there): a big value moves between
**     local workers without passing through a socket.
** A block that another process may see is never written again by the
** runtime, never shrunk and never reused.  Pure C: no Lua, no libuv.
*/
#ifndef dl_mem_h
#define dl_mem_h

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Blocks at least this big get mappings of their own. */
#define DL_MEM_BIG ((size_t)4 << 20)

/* What another local process needs to read a shared block: the memfd
   that holds it (mapped by the reader), or where it lies in the owner's
   memory (copied by the reader with process_vm_readv), or both. */
typedef struct dl_mem_ref {
  uint64_t fd;     /* descriptor number in the owner process, or DL_MEM_NOFD */
  uint64_t ino;    /* inode of the memfd, checked by the mapper */
  uint64_t size;   /* bytes to read from the start of the block */
  uint64_t addr;   /* the block's address in the owner, or 0 */
  uint64_t seal;   /* the address of the block's seal in the owner */
  uint64_t cookie; /* what the seal holds while the block lives */
} dl_mem_ref;

#define DL_MEM_NOFD UINT64_MAX

/*
** Mark the big block that starts at p as shared and describe its first
** used bytes in *ref, for a process that will call dl_mem_map (it reads no
** more than that).  A block on a memfd is described by its file, for the
** reader to map.  A private block (dl_mem_private) is described by its
** address, no copy made: the reader copies the bytes straight out of this
** process (one copy, onto its own huge pages), and the block's seal tells
** it whether the block was freed meanwhile.  With file set, a private
** block gets a memfd copy of those bytes now (for a reader that may not
** read this process's memory).  From now on the block is never reused or
** shrunk.  Returns 0, or -1 if p is not a big block or no memfd can be
** made (then send the bytes instead).
*/
int dl_mem_share(const void *p, size_t used, dl_mem_ref *ref);
int dl_mem_share_file(const void *p, size_t used, dl_mem_ref *ref);

/*
** The block that process pid described in *ref, in this process: a
** read-only mapping of its memfd where ref names one, else a copy of its
** bytes read from pid's memory into a private block of this process's
** (huge pages where the system gives them).  Returns its start (free it
** with dl_free), or NULL: the process is gone, the descriptor now names
** another file, the file is shorter than ref->size, the block was freed
** (its seal is off), reading pid's memory is refused (a ptrace policy such
** as Yama's: then ask for the block as a file, dl_mem_share_file), or the
** environment variable DLUA_SHARE_MEMORY is "0".  With DLUA_SHARE_MEMORY
** "map", a ref with no file is refused too (as where reading is not
** allowed).  The pages are in place before this returns, so reading them
** costs no page faults.  Where a ref with no file fails because reading
** pid's memory was refused (or "map" says so), errno is EPERM: every
** later read of a peer of the same kind would be refused too, so the
** caller asks for files from then on (else errno is ESTALE).
*/
const char *dl_mem_map(pid_t pid, const dl_mem_ref *ref);

/*
** 0 if DLUA_SHARE_MEMORY is "0": dl_mem_map maps and reads nothing, so a
** process asks its peers for bytes at once (no block shared for it).
*/
int dl_mem_sharing(void);

/*
** Map, read-only, the first size bytes of the file open on fd (taking
** ownership of fd; it is closed with the mapping, or now on failure).
** Returns the start (free it with dl_free), or NULL.  Like dl_mem_map,
** the pages are mapped before this returns; the file must not shrink
** while mapped.
*/
const char *dl_mem_map_fd(int fd, size_t size);

/*
** A block of n bytes (n > 0) of private anonymous memory, zero-filled, on
** a 2 MiB boundary and rounded up to whole 2 MiB, marked for transparent
** huge pages (MADV_HUGEPAGE): first writes fault 2 MiB at a time where
** the system gives huge pages, instead of 4 KiB (10 to 50 us each on a
** VM).  For big arrays the runtime fills soon (the hash maps' slots).
** dl_realloc and dl_free take it like any block; it is never kept for
** reuse once freed (dl_mem_share shares it as any private block).  NULL when out of memory.
*/
void *dl_mem_huge(size_t n);

/*
** With on set, the big blocks this thread makes from now on are private:
** anonymous memory on transparent huge pages where the system allows
** them, which a VM can hand out tens of times faster than 4 KiB pages
** of a memfd.  dl_mem_share shares such a block by its address (the
** reader copies it out of this process), or dl_mem_share_file through a
** memfd copy made then.  A worker's executor makes all its blocks so.
** Off by default.
*/
void dl_mem_private(int on);

/*
** Put the C heap on transparent huge pages where the process runs on
** mimalloc (the dlua command links it; a program that embeds libdlua may
** link or preload it too): mimalloc's segments come from one reserved
** region marked MADV_HUGEPAGE, so the Lua heap and the runtime's small
** blocks fault 2 MiB at a time instead of 4 KiB.  Call it first thing in
** main, before threads start.  A no-op on glibc's malloc (under the
** sanitizers, say) or when DLUA_HUGE_HEAP is "0".  Returns 1 if the heap is
** now on huge pages, else 0.
*/
int dl_mem_heap_init(void);

/*
** Under mimalloc, have freed heap pages go back to the system at once (on)
** or after the heap's delay (100 ms, fewer faults for a process that frees
** and remakes objects all the time).  A worker turns it on: its memory
** limit reads its resident memory, and pages nothing uses must not hold it
** over the limit (a shuffle past memory paused every worker without it).
** Turning it on also gives back the calling thread's freed pages now.  A
** no-op on glibc's malloc.
**
**   dl_mem_heap_eager(1);
*/
void dl_mem_heap_eager(int on);

/* Release every cached (freed, kept for reuse) big block now, and what
   the C heap holds free: mimalloc's freed pages, or glibc's free pages
   inside its heaps (malloc_trim; its own trimming only gives back the
   top of a heap, and a worker at its limit was restarted for memory
   that nothing used). */
void dl_mem_trim(void);

/* Bytes held in cached big blocks. */
size_t dl_mem_cached(void);

/* Keep at most bytes of freed big blocks for reuse (default 256 MiB). */
void dl_mem_set_cache_max(size_t bytes);

/* That bound: other caches of freed memory (dl_nd's buffers) keep to it
   too, so a worker's limit bounds every cache, not only dl_mem's. */
size_t dl_mem_cache_max(void);

/* Have dl_mem_trim also call fn (at most 8 hooks; a hook already there is
   not added twice): another cache of freed memory is emptied whenever a
   worker trims its own.  Returns 0, or -1 when the hooks are full. */
int dl_mem_on_trim(void (*fn)(void));

#endif

/*
** dl_client.h -- the client's table of futures: the one owner of what the
** client knows about each key it holds (status, the result that came
** inline, the error record, whether done-callbacks wait).  Pure C: no Lua,
** no libuv.  The Lua binding (runtime/lua/dl_cluster_lua.c) keeps one
** small userdata per Lua future that points at its record here, and feeds
** the scheduler's answers (DL_M_KEY_DONE, DL_M_KEY_ERR) in.
**
** A record (dl_cfut) is made by the first handle of its key and counts
** two things: refs, the live handles, and holds, every handle that still
** points at the record, released or not (the memory goes with the last
** hold).  The scheduler counts a client's handles of a key one by one
** (each SUBMIT, SCATTER or primitive's answer that names the key is one),
** so each live handle given back, by release, garbage collection or the
** client's close, queues one DL_M_RELEASE; the task's result lives while
** any is out.  A record is in the table while refs > 0;
** closing the client detaches every record (c becomes NULL), so that
** handles that outlive their client see "closed" and free their memory
** when they go.
**
** Memory: one record is 40 bytes plus the key (stored once, here; the map
** points into it) plus the inline result bytes; a map slot is 32 bytes.
*/
#ifndef dl_client_h
#define dl_client_h

#include <stddef.h>
#include <stdint.h>

#include "dl_buf.h"
#include "dl_map.h"

enum {
  DL_FUT_PENDING = 0,
  DL_FUT_FINISHED = 1,
  DL_FUT_ERROR = 2,
  DL_FUT_CANCELLED = 3
};

/* Record flags. */
#define DL_FUT_VALUE 1u     /* data holds the encoded result (FINISHED) */
#define DL_FUT_CALLBACKS 2u /* done-callbacks wait: fire when done */

typedef struct dl_client dl_client;
typedef struct dl_cfut dl_cfut;

struct dl_cfut {
  dl_client *c;   /* NULL once detached (released for good, or closed) */
  uint32_t refs;  /* live handles */
  uint32_t holds; /* handles pointing here, released or not */
  uint8_t status; /* DL_FUT_* */
  uint8_t flags;  /* DL_FUT_VALUE | DL_FUT_CALLBACKS */
  uint8_t kind;   /* error kind (DL_ERR_*), ERROR and CANCELLED */
  uint32_t klen;
  char *data;     /* owned: encoded value (VALUE) or error record (ERROR) */
  size_t dlen;
  char key[1];    /* klen bytes and a NUL */
};

struct dl_client {
  dl_map futs;     /* key -> dl_cfut, the records with refs > 0 */
  dl_cfut **fired; /* done with callbacks waiting, each with a hold */
  size_t nfired, capfired;
};

void dl_client_init(dl_client *c);

/* Detach every record (handles then see a closed client) and free what
   no handle holds.  c can be initialised again.  */
void dl_client_free(dl_client *c);

/*
** Close: queue into out (if not NULL) one DL_M_RELEASE for every live
** handle of every key, then detach every record as dl_client_free does.
*/
void dl_client_close(dl_client *c, dl_buf *out);

/*
** A new handle of key: the record of key (made PENDING if there was none)
** with refs and holds counted.  NULL when out of memory.
*/
dl_cfut *dl_client_ref(dl_client *c, const char *key, size_t klen);

/* Another handle of the live record f (refs and holds counted). */
void dl_client_ref_again(dl_cfut *f);

/* The live record of key, or NULL.  Borrowed. */
dl_cfut *dl_client_get(dl_client *c, const char *key, size_t klen);

/*
** A handle of f is released (explicitly, or by garbage collection): each
** live handle of an attached record queues one DL_M_RELEASE into out
** (when out is not NULL), and the last removes the record from the
** table.  The hold stays: drop it with dl_client_drop.
*/
void dl_client_unref(dl_cfut *f, dl_buf *out);

/* A handle no longer points at f: the last one frees it.  f must have no
   live handle left from this caller (call dl_client_unref first). */
void dl_client_drop(dl_cfut *f);

/*
** The scheduler's news.  done: key is in memory, with its encoded value
** when it came inline (blen > 0); err: it failed with error kind and the
** error record rec.  A record that is finished or cancelled already stays
** as it is (a recomputation's news, or a cancel here in flight).  A record
** with callbacks lands in the fired list.  Keys the client does not hold
** are ignored.  0, or DL_ENOMEM (the record is then left pending).
*/
int dl_client_done(dl_client *c, const char *key, size_t klen,
                   const char *bytes, size_t blen);
int dl_client_err(dl_client *c, const char *key, size_t klen, int kind,
                  const char *rec, size_t rlen);

/* Cancelled here: status CANCELLED, data dropped; fires callbacks. */
void dl_client_cancel(dl_cfut *f);

/* A finished result was lost (its worker died): pending again. */
void dl_client_repend(dl_cfut *f);

/*
** Take the fired list: *n records, each carrying a hold that the caller
** drops with dl_client_drop.  The array is the caller's to free with
** dl_free.  Returns NULL when none fired.
*/
dl_cfut **dl_client_take_fired(dl_client *c, size_t *n);

#endif

/*
** dl_worker_prof.c -- the worker's statistical profiler: where its tasks'
** Lua code spends its time.
**
** Every DLUA_PROFILE_INTERVAL milliseconds (default 10; 0 turns the
** profiler off) while a task runs, the I/O thread's watchdog sets a count
** hook on the running task's thread (W.L), as the interrupt of a timeout
** does.  At the task's next Lua instruction the hook (on the executor)
** clears itself and walks the task's stack into W.prof: the task's group,
** then each function from the outermost to the one running, named
** "name (file:line)" by where it is defined ("name [C]" for C functions).
** Nothing runs between samples, so a profiled task runs at full speed.
** What W.prof gained goes to the scheduler with each heartbeat
** (DL_M_PROFILE, see dl_prof.h).
**
** A task blocked in a C function is seen when it comes back to Lua, and
** its time is counted in the Lua function that called it; coroutines a
** task makes are not sampled (the hook is on the task's own thread).
*/
#include "dl_prof.h"
#include "dl_worker_int.h"

/* Frames kept per sample, from the outermost; deeper ones are left out. */
#define PROF_DEPTH 48
/* Nodes in the worker's tree (see dl_prof.h). */
#define PROF_NODES 5000

static double interval; /* seconds between samples; 0: off */
static double last;     /* when the last hook was set (I/O thread) */

int dl_w_prof_init(void) {
  const char *e = getenv("DLUA_PROFILE_INTERVAL");
  double ms = 10;
  if (e && *e) {
    char *end;
    ms = strtod(e, &end);
    if (*end || !(ms >= 0 && ms <= 60000)) {
      fprintf(stderr, "dlua worker: DLUA_PROFILE_INTERVAL must be a number "
              "of milliseconds from 0 (off) to 60000, got '%s'\n", e);
      return -1;
    }
  }
  interval = ms / 1000;
  if (interval > 0 && (W.prof = dl_prof_new(PROF_NODES)) == NULL)
    interval = 0;
  return 0;
}

/* The name of frame ar (lua_getinfo "Sn" done) into out; outermost: it
   is the task's function. */
static size_t frame_name(const lua_Debug *ar, int outermost, char *out,
                         size_t n) {
  const char *name = ar->name;
  int len;
  if (name == NULL)
    name = *ar->what == 'm' ? "main chunk" : outermost ? "task" : "?";
  if (*ar->what == 'C')
    len = snprintf(out, n, "%s [C]", name);
  else
    len = snprintf(out, n, "%s (%s:%d)", name, ar->short_src,
                   ar->linedefined);
  return len < 0 ? 0 : (size_t)len < n ? (size_t)len : n - 1;
}

/* The hook: one sample of the running task's stack.  Executor thread. */
static void prof_hook(lua_State *L, lua_Debug *ar) {
  lua_Debug st[PROF_DEPTH];
  char names[PROF_DEPTH][DL_PROF_FRAMELEN];
  size_t lens[PROF_DEPTH], glen;
  int n = 0, i, node;
  uv_mutex_lock(&W.lock);
  if (W.cancel_kind) { /* an interrupt came after this hook was set */
    uv_mutex_unlock(&W.lock);
    dl_w_interrupt_hook(L, ar);
    return;
  }
  lua_sethook(L, NULL, 0, 0);
  uv_mutex_unlock(&W.lock);
  while (n < PROF_DEPTH && lua_getstack(L, n, &st[n])) n++;
  for (i = 0; i < n; i++) {
    lua_getinfo(L, "Sn", &st[i]);
    lens[i] = frame_name(&st[i], i == n - 1, names[i], sizeof names[i]);
  }
  /* The group: the running key's prefix, as the scheduler names it. */
  glen = dl_w_running_klen;
  while (glen > 0 && dl_w_running_key[glen - 1] != '-') glen--;
  glen = glen > 1 ? glen - 1 : dl_w_running_klen;
  uv_mutex_lock(&W.lock);
  node = dl_prof_child(W.prof, 0, dl_w_running_key, glen);
  for (i = n - 1; i >= 0 && node >= 0; i--) {
    int c = dl_prof_child(W.prof, node, names[i], lens[i]);
    if (c < 0) break; /* the tree is full: count it where it stops */
    node = c;
  }
  dl_prof_count(W.prof, node, 1);
  uv_mutex_unlock(&W.lock);
}

void dl_w_prof_tick(void) {
  double now;
  if (interval <= 0 || !W.running_seq || W.cancel_kind) return;
  if (W.gc_asked && W.gc_after < 0) return; /* dl_w_gc_hook's turn */
  now = now_s();
  if (now - last < interval) return;
  last = now;
  lua_sethook(W.L, prof_hook, LUA_MASKCOUNT, 1);
}

void dl_w_prof_put(dl_buf *out) {
  if (W.prof == NULL) return;
  uv_mutex_lock(&W.lock);
  dl_prof_put_news(W.prof, out);
  uv_mutex_unlock(&W.lock);
}

/*
** dl_kernel.c -- `dlua kernel`: a Jupyter kernel that runs cells in the
** dlua command's own lua_State, as the REPL runs entries.
**
** Threads.  The main thread owns the Lua state and the shell and stdin
** sockets: it takes shell requests one at a time (ZeroMQ queues the rest,
** so execute requests run in the order they came).  A control thread
** answers the control channel while a cell runs: interrupt_request stops
** the cell through the REPL's Ctrl-C path (a SIGINT sent to the main
** thread, see dl_repl.c), shutdown_request stops the cell and then the
** loop.  An output thread reads the pipes that stand in for fds 1 and 2,
** so that what print, io.write, C code and the cluster's worker processes
** (which inherit them) write reaches the cell as IOPub stream messages.
** The heartbeat is echoed by dl_jchan's thread.  IOPub is shared, its
** sends serialised by dl_jchan.
**
** Ordering.  Before the kernel sends a result, an error, display data or
** the execute reply, it flushes stdio and waits until the output thread
** has published every byte already in the pipes (the thread reads and
** publishes under one lock, so "pipes empty" under that lock means
** "published"), so output appears in the order it was written.
*/
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "dl_complete.h"
#include "dl_crypto.h"
#include "dl_jchan.h"
#include "dl_jmsg.h"
#include "dl_kernel.h"
#include "dl_repl.h"
#include "dlua.h"

#define WAKE_ENDPOINT "inproc://dlua-kernel-wake"

/* The kernel's state; one per process (signal handlers and the Lua
   functions below reach it through K). */
typedef struct Kernel {
  dl_jchan ch;
  lua_State *L;
  int count;            /* execution_count of the last execute */
  pthread_t main_thread;
  pthread_t control_thread;
  int control_running;
  void *wake_main;      /* inproc PAIR, main end: "shutdown" arrives */
  void *wake_control;   /* inproc PAIR, the control thread's end */
  volatile sig_atomic_t busy;  /* a shell request is being handled */
  volatile sig_atomic_t stop;  /* leave the loop after this request */
  /* The shell request being handled (main thread only). */
  dl_jmsg req;
  int allow_stdin;
  /* The parent header of output published by the output thread: a copy
     of the current request's header, under parent_lock. */
  pthread_mutex_t parent_lock;
  char *parent;
  size_t parent_len;
  /* Output capture. */
  pthread_mutex_t out_lock;     /* held while reading + publishing */
  int out_pipe[2], err_pipe[2]; /* read ends in [0]; [1] is fd 1 / fd 2 */
  int quit_pipe[2];             /* a byte here ends the output thread */
  pthread_t out_thread;
  int out_running;
  char carry[2][4];             /* an incomplete UTF-8 tail per pipe */
  int ncarry[2];
  int log_fd;                   /* the original stderr: the kernel's log */
} Kernel;

static Kernel *K = NULL;

/* A SIGINT that came while a request was handled but no cell's call held
   SIGINT (on_sigint_idle): the next cell's call takes it. */
static volatile sig_atomic_t missed_sigint;

/* Write a line to the kernel's log (Jupyter's terminal). */
static void klog(const char *fmt, const char *a, const char *b) {
  char line[600];
  int n = snprintf(line, sizeof line, "dlua kernel: ");
  n += snprintf(line + n, sizeof line - (size_t)n, fmt, a, b);
  if (n > (int)sizeof line - 2)
    n = (int)sizeof line - 2;
  line[n++] = '\n';
  if (K != NULL && K->log_fd >= 0) {
    ssize_t w = write(K->log_fd, line, (size_t)n);
    (void)w;
  } else {
    fwrite(line, 1, (size_t)n, stderr);
  }
}

/* ------------------------------------------------------------- UTF-8 */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static int utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  int len, i;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else
    return 0;
  if ((size_t)len > n)
    return 0;
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return len;
}

/* How many of the last bytes of s (n bytes) are the start of a UTF-8
   sequence that more bytes may complete (0 to 3). */
static size_t utf8_tail(const unsigned char *s, size_t n) {
  size_t k;
  for (k = 1; k <= 3 && k <= n; k++) {
    unsigned char c = s[n - k];
    if (c >= 0xc0) {
      int want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
      return (size_t)want > k ? k : 0;
    }
    if (c < 0x80)
      return 0;
  }
  return 0;
}

/* A cJSON string of the bytes s (n), with each invalid UTF-8 byte and each
   NUL replaced by U+FFFD, so that the message is valid JSON text. */
static cJSON *json_bytes(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0, o = 0;
  char *buf = malloc(n * 3 + 1);
  cJSON *j;
  if (buf == NULL)
    return NULL;
  while (i < n) {
    int len = u[i] == 0 ? 0 : utf8_seq(u + i, n - i);
    if (len == 0) {
      memcpy(buf + o, "\xef\xbf\xbd", 3);
      o += 3;
      i++;
    } else {
      memcpy(buf + o, u + i, (size_t)len);
      o += (size_t)len;
      i += (size_t)len;
    }
  }
  buf[o] = '\0';
  j = cJSON_CreateString(buf);
  free(buf);
  return j;
}

/* Code points <-> byte offsets in UTF-8 text (Jupyter counts code points). */
static size_t cp_to_byte(const char *s, size_t len, long cp) {
  size_t b = 0;
  while (b < len && cp > 0) {
    b++;
    while (b < len && ((unsigned char)s[b] & 0xc0) == 0x80)
      b++;
    cp--;
  }
  return b;
}

static long byte_to_cp(const char *s, size_t b) {
  long cp = 0;
  size_t i;
  for (i = 0; i < b; i++)
    if (((unsigned char)s[i] & 0xc0) != 0x80)
      cp++;
  return cp;
}

/* ------------------------------------------------------------ sending */

static const dl_jframe *cur_parent(dl_jframe *f) {
  *f = K->req.header_raw;
  return f;
}

/* Publish on IOPub with the current request as parent. */
static void publish(const char *type, const cJSON *content) {
  dl_jframe p;
  dl_jchan_send(&K->ch, DL_JCHAN_IOPUB, NULL, 0, type, cur_parent(&p),
                content, NULL);
}

static void publish_status(const char *state, const dl_jframe *parent) {
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "execution_state", state);
  dl_jchan_send(&K->ch, DL_JCHAN_IOPUB, NULL, 0, "status", parent, c, NULL);
  cJSON_Delete(c);
}

/* Reply on channel ch to the message m; takes ownership of content. */
static void reply(int ch, const dl_jmsg *m, const char *type,
                  cJSON *content) {
  dl_jchan_send(&K->ch, ch, m->ids, m->nids, type, &m->header_raw, content,
                NULL);
  cJSON_Delete(content);
}

/* Set the parent header of captured output (a copy of the request's). */
static void set_output_parent(const dl_jframe *h) {
  char *copy = malloc(h->len + 1);
  if (copy != NULL)
    memcpy(copy, h->data, h->len);
  pthread_mutex_lock(&K->parent_lock);
  free(K->parent);
  K->parent = copy;
  K->parent_len = copy != NULL ? h->len : 0;
  pthread_mutex_unlock(&K->parent_lock);
}

/* ------------------------------------------------------ output capture */

/* Publish n bytes read from pipe i (0 stdout, 1 stderr), keeping an
   incomplete UTF-8 tail for the next read.  Called under out_lock. */
static void publish_stream(int i, const char *data, size_t n) {
  char buf[65536 + 4];
  size_t len, tail;
  cJSON *c;
  dl_jframe p;
  memcpy(buf, K->carry[i], (size_t)K->ncarry[i]);
  memcpy(buf + K->ncarry[i], data, n);
  len = (size_t)K->ncarry[i] + n;
  tail = utf8_tail((unsigned char *)buf, len);
  memcpy(K->carry[i], buf + len - tail, tail);
  K->ncarry[i] = (int)tail;
  len -= tail;
  if (len == 0)
    return;
  c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "name", i == 0 ? "stdout" : "stderr");
  cJSON_AddItemToObject(c, "text", json_bytes(buf, len));
  pthread_mutex_lock(&K->parent_lock);
  p.data = K->parent;
  p.len = K->parent_len;
  dl_jchan_send(&K->ch, DL_JCHAN_IOPUB, NULL, 0, "stream", &p, c, NULL);
  pthread_mutex_unlock(&K->parent_lock);
  cJSON_Delete(c);
}

static void *output_main(void *arg) {
  struct pollfd fds[3];
  char buf[65536];
  (void)arg;
  fds[0].fd = K->out_pipe[0];
  fds[1].fd = K->err_pipe[0];
  fds[2].fd = K->quit_pipe[0];
  for (;;) {
    int i;
    fds[0].events = fds[1].events = fds[2].events = POLLIN;
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR)
        continue;
      return NULL;
    }
    if (fds[2].revents != 0)
      return NULL;
    for (i = 0; i < 2; i++) {
      ssize_t n;
      if (fds[i].revents == 0)
        continue;
      pthread_mutex_lock(&K->out_lock);
      n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0)
        publish_stream(i, buf, (size_t)n);
      pthread_mutex_unlock(&K->out_lock);
    }
  }
}

/* Flush stdio and wait until the output thread has published everything
   already written to fds 1 and 2. */
static void drain_output(void) {
  fflush(stdout);
  fflush(stderr);
  if (!K->out_running)
    return;
  for (;;) {
    int a = 0, b = 0;
    pthread_mutex_lock(&K->out_lock);
    ioctl(K->out_pipe[0], FIONREAD, &a);
    ioctl(K->err_pipe[0], FIONREAD, &b);
    pthread_mutex_unlock(&K->out_lock);
    if (a == 0 && b == 0)
      return;
    {
      struct timespec ts = {0, 50000};
      nanosleep(&ts, NULL);
    }
  }
}

/* Replace fds 1 and 2 by pipes read by the output thread; the original
   stderr is kept as the kernel's log.  Returns 0 or -1. */
static int capture_output(void) {
  int fd;
  K->log_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  if (pipe(K->out_pipe) || pipe(K->err_pipe) || pipe(K->quit_pipe))
    return -1;
  fcntl(K->out_pipe[0], F_SETFD, FD_CLOEXEC);
  fcntl(K->err_pipe[0], F_SETFD, FD_CLOEXEC);
  fcntl(K->quit_pipe[0], F_SETFD, FD_CLOEXEC);
  fcntl(K->quit_pipe[1], F_SETFD, FD_CLOEXEC);
  fflush(stdout);
  fflush(stderr);
  if (dup2(K->out_pipe[1], STDOUT_FILENO) < 0 ||
      dup2(K->err_pipe[1], STDERR_FILENO) < 0)
    return -1;
  close(K->out_pipe[1]);
  close(K->err_pipe[1]);
  K->out_pipe[1] = STDOUT_FILENO;
  K->err_pipe[1] = STDERR_FILENO;
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* Nothing reads the terminal: io.read goes through the stdin channel. */
  fd = open("/dev/null", O_RDONLY);
  if (fd >= 0) {
    dup2(fd, STDIN_FILENO);
    close(fd);
  }
  if (pthread_create(&K->out_thread, NULL, output_main, NULL) != 0)
    return -1;
  K->out_running = 1;
  return 0;
}

/* Stop capturing: fds 1 and 2 write to the log again. */
static void end_capture(void) {
  if (!K->out_running)
    return;
  drain_output();
  {
    ssize_t w = write(K->quit_pipe[1], "q", 1);
    (void)w;
  }
  pthread_join(K->out_thread, NULL);
  K->out_running = 0;
  dup2(K->log_fd, STDOUT_FILENO);
  dup2(K->log_fd, STDERR_FILENO);
}

/* ---------------------------------------------------------- kernel_info */

static cJSON *kernel_info(void) {
  cJSON *c = cJSON_CreateObject(), *li;
  cJSON_AddStringToObject(c, "status", "ok");
  cJSON_AddStringToObject(c, "protocol_version", "5.3");
  cJSON_AddStringToObject(c, "implementation", "dlua");
  cJSON_AddStringToObject(c, "implementation_version", DLUA_VERSION_STRING);
  li = cJSON_AddObjectToObject(c, "language_info");
  cJSON_AddStringToObject(li, "name", "lua");
  cJSON_AddStringToObject(li, "version", LUA_VERSION_MAJOR "."
                                         LUA_VERSION_MINOR);
  cJSON_AddStringToObject(li, "mimetype", "text/x-lua");
  cJSON_AddStringToObject(li, "file_extension", ".lua");
  cJSON_AddStringToObject(li, "pygments_lexer", "lua");
  cJSON_AddStringToObject(li, "codemirror_mode", "lua");
  cJSON_AddStringToObject(c, "banner", "dlua " DLUA_VERSION_STRING " ("
                          LUA_RELEASE ") -- Dask for Lua");
  cJSON_AddArrayToObject(c, "help_links");
  return c;
}

/* -------------------------------------------------------- control thread */

/* Interrupt the running cell as Ctrl-C does in the REPL. */
static void interrupt_main(void) {
  if (K->busy)
    pthread_kill(K->main_thread, SIGINT);
}

static void control_one(dl_jrecv *r) {
  dl_jmsg m;
  char err[120];
  int rc = dl_jmsg_decode(&m, r->frame, r->n, K->ch.key, K->ch.keylen, err,
                          sizeof err);
  if (rc != 0) {
    klog("control: dropped a message: %s%s", err, "");
    return;
  }
  publish_status("busy", &m.header_raw);
  if (strcmp(m.msg_type, "kernel_info_request") == 0) {
    reply(DL_JCHAN_CONTROL, &m, "kernel_info_reply", kernel_info());
  } else if (strcmp(m.msg_type, "interrupt_request") == 0) {
    cJSON *c = cJSON_CreateObject();
    interrupt_main();
    cJSON_AddStringToObject(c, "status", "ok");
    reply(DL_JCHAN_CONTROL, &m, "interrupt_reply", c);
  } else if (strcmp(m.msg_type, "shutdown_request") == 0) {
    cJSON *c = cJSON_CreateObject();
    cJSON *restart = cJSON_GetObjectItemCaseSensitive(m.content, "restart");
    cJSON_AddStringToObject(c, "status", "ok");
    cJSON_AddBoolToObject(c, "restart", cJSON_IsTrue(restart));
    reply(DL_JCHAN_CONTROL, &m, "shutdown_reply", c);
    zmq_send(K->wake_control, "shutdown", 8, 0);
    interrupt_main();
  } else {
    klog("control: ignored a '%s' message%s", m.msg_type, "");
  }
  publish_status("idle", &m.header_raw);
  dl_jmsg_free(&m);
}

static void *control_main(void *arg) {
  dl_jrecv *r = malloc(sizeof *r);
  sigset_t set;
  (void)arg;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* SIGINT is the main thread's */
  if (r == NULL)
    return NULL;
  for (;;) {
    if (dl_jchan_recv(K->ch.sock[DL_JCHAN_CONTROL], r, 0) < 0) {
      if (errno == EINTR)
        continue;
      break; /* ETERM: the kernel is closing */
    }
    control_one(r);
    dl_jchan_recv_free(r);
  }
  zmq_close(K->wake_control);
  free(r);
  return NULL;
}

/* ------------------------------------------------------- Lua functions */

/* The value of the string field k of the request's content, or NULL. */
static const char *content_str(const char *k, size_t *len) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(K->req.content, k);
  if (!cJSON_IsString(v))
    return NULL;
  if (len != NULL)
    *len = strlen(v->valuestring);
  return v->valuestring;
}

static long content_int(const char *k, long dflt) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(K->req.content, k);
  return cJSON_IsNumber(v) ? (long)v->valuedouble : dflt;
}

/* Push require("dlua.display")[name]. [-0, +1, e] */
static void push_display_fn(lua_State *L, const char *name) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "dlua.display");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

/* A cJSON object of the string values of the table at idx (a MIME
   bundle); values that are not strings are left out. [-0, +0, -] */
static cJSON *bundle_json(lua_State *L, int idx) {
  cJSON *data = cJSON_CreateObject();
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
      size_t n;
      const char *s = lua_tolstring(L, -1, &n);
      cJSON_AddItemToObject(data, lua_tostring(L, -2), json_bytes(s, n));
    }
    lua_pop(L, 1);
  }
  return data;
}

/*
** display._kernel.publish(bundle [, display_id [, update]]): send
** display_data (or update_display_data) with the MIME bundle, a table of
** strings by MIME type.  [-0, +0, v]
*/
static int k_publish(lua_State *L) {
  cJSON *c, *tr;
  const char *id = luaL_optstring(L, 2, NULL);
  int update = lua_toboolean(L, 3);
  luaL_checktype(L, 1, LUA_TTABLE);
  drain_output();
  c = cJSON_CreateObject();
  cJSON_AddItemToObject(c, "data", bundle_json(L, 1));
  cJSON_AddObjectToObject(c, "metadata");
  tr = cJSON_AddObjectToObject(c, "transient");
  if (id != NULL)
    cJSON_AddStringToObject(tr, "display_id", id);
  publish(update ? "update_display_data" : "display_data", c);
  cJSON_Delete(c);
  return 0;
}

/* display._kernel.clear_output([wait]) [-0, +0, -] */
static int k_clear_output(lua_State *L) {
  cJSON *c = cJSON_CreateObject();
  drain_output();
  cJSON_AddBoolToObject(c, "wait", lua_toboolean(L, 1));
  publish("clear_output", c);
  cJSON_Delete(c);
  return 0;
}

/*
** Ask the notebook for a line through the stdin channel (input_request,
** then wait for input_reply) and push it.  Raises when the request does
** not allow stdin, or "interrupted!" when the cell is interrupted while
** waiting.  [-0, +1, e]
*/
static void read_input(lua_State *L, const char *prompt) {
  void *sock = K->ch.sock[DL_JCHAN_STDIN];
  dl_jrecv *r;
  cJSON *c;
  dl_jframe p;
  if (!K->allow_stdin)
    luaL_error(L, "io.read: this request does not allow input "
                  "(allow_stdin is false)");
  drain_output();
  c = cJSON_CreateObject();
  cJSON_AddItemToObject(c, "prompt", json_bytes(prompt, strlen(prompt)));
  cJSON_AddBoolToObject(c, "password", 0);
  dl_jchan_send(&K->ch, DL_JCHAN_STDIN, K->req.ids, K->req.nids,
                "input_request", cur_parent(&p), c, NULL);
  cJSON_Delete(c);
  r = lua_newuserdatauv(L, sizeof *r, 0); /* freed by Lua if we raise */
  for (;;) {
    dl_jmsg m;
    char err[120];
    cJSON *v;
    if (dl_jchan_recv(sock, r, 0) < 0) {
      if (errno == EINTR)
        luaL_error(L, "interrupted!");
      luaL_error(L, "io.read: the stdin channel failed: %s",
                 zmq_strerror(errno));
    }
    if (dl_jmsg_decode(&m, r->frame, r->n, K->ch.key, K->ch.keylen, err,
                       sizeof err) != 0) {
      klog("stdin: dropped a message: %s%s", err, "");
      dl_jchan_recv_free(r);
      continue;
    }
    v = cJSON_GetObjectItemCaseSensitive(m.content, "value");
    if (strcmp(m.msg_type, "input_reply") != 0 || !cJSON_IsString(v)) {
      klog("stdin: ignored a '%s' message%s", m.msg_type, "");
      dl_jmsg_free(&m);
      dl_jchan_recv_free(r);
      continue;
    }
    lua_pushstring(L, v->valuestring);
    dl_jmsg_free(&m);
    dl_jchan_recv_free(r);
    lua_remove(L, -2); /* the userdata */
    return;
  }
}

/*
** io.read(...) in the kernel: each format reads from the notebook's input
** box: "l" (default) a line, "L" a line with "\n", "n" a number (nil when
** the line is not one), "a" a line, an integer n at most n bytes of a
** line.  [-?, +?, e]
*/
static int k_read(lua_State *L) {
  int n = lua_gettop(L), i;
  if (n == 0) {
    lua_pushliteral(L, "l");
    n = 1;
  }
  for (i = 1; i <= n; i++) {
    if (lua_type(L, i) == LUA_TNUMBER) {
      lua_Integer len = luaL_checkinteger(L, i);
      read_input(L, "");
      if ((lua_Integer)lua_rawlen(L, -1) > len) {
        lua_pushlstring(L, lua_tostring(L, -1), (size_t)(len < 0 ? 0 : len));
        lua_remove(L, -2);
      }
    } else {
      const char *f = luaL_checkstring(L, i);
      if (*f == '*')
        f++;
      switch (*f) {
        case 'l': case 'a':
          read_input(L, "");
          break;
        case 'L':
          read_input(L, "");
          lua_pushliteral(L, "\n");
          lua_concat(L, 2);
          break;
        case 'n': {
          read_input(L, "");
          if (lua_stringtonumber(L, lua_tostring(L, -1)) == 0)
            lua_pushnil(L);
          lua_remove(L, -2);
          break;
        }
        default:
          return luaL_argerror(L, i, "invalid format");
      }
    }
  }
  return n;
}

/* Install io.read and display's kernel functions. [-0, +0, e] */
static int setup_lua(lua_State *L) {
  lua_getglobal(L, "io");
  lua_pushcfunction(L, k_read);
  lua_setfield(L, -2, "read");
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "dlua.display");
  lua_call(L, 1, 1);
  lua_newtable(L);
  lua_pushcfunction(L, k_publish);
  lua_setfield(L, -2, "publish");
  lua_pushcfunction(L, k_clear_output);
  lua_setfield(L, -2, "clear_output");
  lua_setfield(L, -2, "_kernel");
  lua_pop(L, 1);
  return 0;
}

/* ------------------------------------------------------------- execute */

/*
** The text that shows the value of the expression expr (len bytes): it is
** passed through a local function rather than returned, so that a call in
** it is not a tail call and keeps its frame (errors raised at level 2 then
** point at the cell's line).  The newline lets expr end in a comment.
** [-0, +1, m]
*/
static void push_shown(lua_State *L, const char *expr, size_t len) {
  lua_pushliteral(L, "local function dlua_shown(...) return ... end "
                     "return dlua_shown(");
  lua_pushlstring(L, expr, len);
  lua_pushliteral(L, "\n)");
  lua_concat(L, 3);
}

/*
** Compile the cell's code (first as an expression whose values are shown,
** then as statements whose last line, if it is an expression, shows its
** values, then as it is) and push the function or the error message.
** Returns the lua_load status.  [-0, +1, -]
*/
static int load_cell(lua_State *L, const char *code, size_t len,
                     const char *name) {
  const char *last;
  size_t end = len;
  int status;
  push_shown(L, code, len);
  status = luaL_loadbuffer(L, lua_tostring(L, -1), lua_rawlen(L, -1), name);
  lua_remove(L, -2);
  if (status == LUA_OK)
    return status;
  lua_pop(L, 1);
  /* The last non-blank line, as an expression after the rest. */
  while (end > 0 && strchr(" \t\r\n", code[end - 1]) != NULL)
    end--;
  last = code + end;
  while (last > code && last[-1] != '\n')
    last--;
  if (last > code) {
    lua_pushlstring(L, code, (size_t)(last - code));
    push_shown(L, last, (size_t)(code + end - last));
    lua_concat(L, 2);
    status = luaL_loadbuffer(L, lua_tostring(L, -1), lua_rawlen(L, -1),
                             name);
    lua_remove(L, -2);
    if (status == LUA_OK)
      return status;
    lua_pop(L, 1);
  }
  return luaL_loadbuffer(L, code, len, name);
}

/* Split msg into lines, as a cJSON array. */
static cJSON *lines_json(const char *msg) {
  cJSON *a = cJSON_CreateArray();
  const char *p = msg;
  for (;;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
    cJSON_AddItemToArray(a, json_bytes(p, n));
    if (nl == NULL)
      break;
    p = nl + 1;
  }
  return a;
}

/* Fill c with an error's ename, evalue and traceback from the message (a
   traceback) msg. */
static void add_error(cJSON *c, const char *msg, int interrupted) {
  const char *nl = strchr(msg, '\n');
  cJSON_AddStringToObject(c, "ename", interrupted ? "Interrupted"
                                                  : "LuaError");
  cJSON_AddItemToObject(c, "evalue", json_bytes(msg, nl != NULL
                                                ? (size_t)(nl - msg)
                                                : strlen(msg)));
  cJSON_AddItemToObject(c, "traceback", lines_json(msg));
}

/* Call dlua._at_prompt if dlua is loaded (results in, callbacks run). */
static void at_prompt(lua_State *L) {
  int top = lua_gettop(L);
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) == LUA_TTABLE &&
      lua_getfield(L, -1, "dlua") == LUA_TTABLE &&
      lua_getfield(L, -1, "_at_prompt") == LUA_TFUNCTION) {
    if (dl_repl_call(L, 0, 0) != LUA_OK)
      fprintf(stderr, "%s\n", lua_tostring(L, -1));
  }
  lua_settop(L, top);
}

/* Make the MIME bundle of the values above base (display.result) and
   publish it as execute_result.  [-0, +0, -] */
static void publish_result(lua_State *L, int base) {
  int n = lua_gettop(L) - base, status;
  cJSON *c;
  /* Nothing, or one nil (a call like dlua.display(v) that returns
     nothing useful), shows nothing, as None shows nothing in IPython. */
  if (n == 0 || (n == 1 && lua_isnil(L, -1))) {
    lua_settop(L, base);
    return;
  }
  luaL_checkstack(L, LUA_MINSTACK, NULL);
  push_display_fn(L, "result");
  lua_insert(L, base + 1);
  status = dl_repl_call(L, n, 1);
  drain_output();
  if (status != LUA_OK || !lua_istable(L, -1)) {
    fprintf(stderr, "error showing the result (%s)\n",
            status != LUA_OK ? lua_tostring(L, -1) : "not a table");
    drain_output();
    lua_settop(L, base);
    return;
  }
  c = cJSON_CreateObject();
  cJSON_AddNumberToObject(c, "execution_count", K->count);
  cJSON_AddItemToObject(c, "data", bundle_json(L, -1));
  cJSON_AddObjectToObject(c, "metadata");
  publish("execute_result", c);
  cJSON_Delete(c);
  lua_settop(L, base);
}

static void do_execute(lua_State *L) {
  size_t len = 0;
  const char *code = content_str("code", &len);
  cJSON *silent_j = cJSON_GetObjectItemCaseSensitive(K->req.content,
                                                     "silent");
  cJSON *store_j = cJSON_GetObjectItemCaseSensitive(K->req.content,
                                                    "store_history");
  cJSON *stdin_j = cJSON_GetObjectItemCaseSensitive(K->req.content,
                                                    "allow_stdin");
  int silent = cJSON_IsTrue(silent_j);
  int store = !silent && (store_j == NULL || cJSON_IsTrue(store_j));
  int base = lua_gettop(L), status;
  char name[48];
  cJSON *c, *r;
  K->allow_stdin = stdin_j == NULL || cJSON_IsTrue(stdin_j);
  if (code == NULL)
    code = "";
  if (store)
    K->count++;
  if (!silent) {
    c = cJSON_CreateObject();
    cJSON_AddItemToObject(c, "code", json_bytes(code, len));
    cJSON_AddNumberToObject(c, "execution_count", K->count);
    publish("execute_input", c);
    cJSON_Delete(c);
  }
  at_prompt(L);
  snprintf(name, sizeof name, "=In[%d]", K->count);
  status = load_cell(L, code, len, name);
  if (status == LUA_OK) {
    /* Keep the cell's text, so that inspect can show its functions' doc
       comments. */
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, -1, "dlua.display") == LUA_TTABLE &&
        lua_getfield(L, -1, "_cells") == LUA_TTABLE) {
      lua_pushlstring(L, code, len);
      lua_setfield(L, -2, name + 1);
    }
    lua_settop(L, base + 1);
    status = dl_repl_call_missed(L, 0, LUA_MULTRET, &missed_sigint);
  }
  drain_output();
  r = cJSON_CreateObject();
  if (status == LUA_OK) {
    if (!silent)
      publish_result(L, base);
    cJSON_AddStringToObject(r, "status", "ok");
    cJSON_AddNumberToObject(r, "execution_count", K->count);
    cJSON_AddObjectToObject(r, "user_expressions");
    cJSON_AddArrayToObject(r, "payload");
  } else {
    const char *msg = lua_tostring(L, -1);
    int interrupted = dl_repl_interrupted();
    if (msg == NULL)
      msg = "(error object is not a string)";
    c = cJSON_CreateObject();
    add_error(c, msg, interrupted);
    if (!silent)
      publish("error", c);
    cJSON_Delete(c);
    cJSON_AddStringToObject(r, "status", "error");
    cJSON_AddNumberToObject(r, "execution_count", K->count);
    add_error(r, msg, interrupted);
  }
  lua_settop(L, base);
  drain_output();
  reply(DL_JCHAN_SHELL, &K->req, "execute_reply", r);
}

/* ------------------------------------------- complete, inspect, is_complete */

/* The bounds [*s, *e) of the name (letters, digits, "_", ".", ":") around
   byte offset at in code. */
static void name_at(const char *code, size_t len, size_t at, size_t *s,
                    size_t *e, int forward) {
  size_t a = at, b = at;
  while (a > 0 && (isalnum((unsigned char)code[a - 1]) || code[a - 1] == '_'
                   || code[a - 1] == '.' || code[a - 1] == ':'))
    a--;
  if (forward)
    while (b < len && (isalnum((unsigned char)code[b]) || code[b] == '_'))
      b++;
  *s = a;
  *e = b;
}

/* dl_complete_push under lua_pcall: arg 1 the text. */
static int complete_call(lua_State *L) {
  dl_complete_push(L, luaL_checkstring(L, 1));
  lua_pop(L, 1);
  return 1;
}

static void do_complete(lua_State *L) {
  size_t len = 0, at, s, e;
  const char *code = content_str("code", &len);
  long pos = content_int("cursor_pos", -1);
  cJSON *c = cJSON_CreateObject(), *matches;
  int top = lua_gettop(L);
  if (code == NULL)
    code = "";
  at = pos < 0 ? len : cp_to_byte(code, len, pos);
  name_at(code, len, at, &s, &e, 0);
  matches = cJSON_AddArrayToObject(c, "matches");
  lua_pushcfunction(L, complete_call);
  lua_pushlstring(L, code + s, e - s);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
    lua_Integer i, n = luaL_len(L, -1);
    for (i = 1; i <= n; i++) {
      size_t wl;
      const char *w;
      lua_rawgeti(L, -1, i);
      w = lua_tolstring(L, -1, &wl);
      if (w != NULL)
        cJSON_AddItemToArray(matches, json_bytes(w, wl));
      lua_pop(L, 1);
    }
  }
  lua_settop(L, top);
  cJSON_AddNumberToObject(c, "cursor_start", (double)byte_to_cp(code, s));
  cJSON_AddNumberToObject(c, "cursor_end", (double)byte_to_cp(code, e));
  cJSON_AddObjectToObject(c, "metadata");
  cJSON_AddStringToObject(c, "status", "ok");
  reply(DL_JCHAN_SHELL, &K->req, "complete_reply", c);
}

static void do_inspect(lua_State *L) {
  size_t len = 0, at, s, e;
  const char *code = content_str("code", &len);
  long pos = content_int("cursor_pos", -1);
  cJSON *c = cJSON_CreateObject(), *data;
  int top = lua_gettop(L), found = 0;
  if (code == NULL)
    code = "";
  at = pos < 0 ? len : cp_to_byte(code, len, pos);
  name_at(code, len, at, &s, &e, 1);
  data = cJSON_AddObjectToObject(c, "data");
  if (e > s) {
    push_display_fn(L, "inspect"); /* may raise only out of memory */
    lua_pushlstring(L, code + s, e - s);
    if (dl_repl_call(L, 1, 1) == LUA_OK && lua_isstring(L, -1)) {
      size_t n;
      const char *t = lua_tolstring(L, -1, &n);
      cJSON_AddItemToObject(data, "text/plain", json_bytes(t, n));
      found = 1;
    }
  }
  lua_settop(L, top);
  cJSON_AddStringToObject(c, "status", "ok");
  cJSON_AddBoolToObject(c, "found", found);
  cJSON_AddObjectToObject(c, "metadata");
  reply(DL_JCHAN_SHELL, &K->req, "inspect_reply", c);
}

/* The REPL's continuation rule: code is incomplete when the compiler
   stops at its end ("<eof>"). */
static const char *completeness(lua_State *L, const char *code, size_t len) {
  const char *state = "complete";
  int top = lua_gettop(L);
  lua_pushfstring(L, "return %s;", code);
  if (luaL_loadbuffer(L, lua_tostring(L, -1), lua_rawlen(L, -1), "=cell")
      != LUA_OK) {
    int st = luaL_loadbuffer(L, code, len, "=cell");
    if (st == LUA_ERRSYNTAX) {
      size_t ml;
      const char *msg = lua_tolstring(L, -1, &ml);
      state = (ml >= 5 && strcmp(msg + ml - 5, "<eof>") == 0)
        ? "incomplete" : "invalid";
    } else if (st != LUA_OK) {
      state = "unknown";
    }
  }
  lua_settop(L, top);
  return state;
}

static void do_is_complete(lua_State *L) {
  size_t len = 0;
  const char *code = content_str("code", &len);
  cJSON *c = cJSON_CreateObject();
  const char *state = completeness(L, code != NULL ? code : "", len);
  cJSON_AddStringToObject(c, "status", state);
  if (strcmp(state, "incomplete") == 0)
    cJSON_AddStringToObject(c, "indent", "  ");
  reply(DL_JCHAN_SHELL, &K->req, "is_complete_reply", c);
}

/* --------------------------------------------------------------- shell */

static void shell_one(lua_State *L, dl_jrecv *r) {
  char err[120];
  const char *t;
  int rc = dl_jmsg_decode(&K->req, r->frame, r->n, K->ch.key, K->ch.keylen,
                          err, sizeof err);
  if (rc != 0) {
    klog("shell: dropped a message: %s%s", err, "");
    return;
  }
  t = K->req.msg_type;
  missed_sigint = 0;
  K->busy = 1;
  set_output_parent(&K->req.header_raw);
  publish_status("busy", &K->req.header_raw);
  if (strcmp(t, "execute_request") == 0) {
    do_execute(L);
  } else if (strcmp(t, "kernel_info_request") == 0) {
    reply(DL_JCHAN_SHELL, &K->req, "kernel_info_reply", kernel_info());
  } else if (strcmp(t, "complete_request") == 0) {
    do_complete(L);
  } else if (strcmp(t, "inspect_request") == 0) {
    do_inspect(L);
  } else if (strcmp(t, "is_complete_request") == 0) {
    do_is_complete(L);
  } else if (strcmp(t, "history_request") == 0) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "status", "ok");
    cJSON_AddArrayToObject(c, "history");
    reply(DL_JCHAN_SHELL, &K->req, "history_reply", c);
  } else if (strcmp(t, "comm_info_request") == 0) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "status", "ok");
    cJSON_AddObjectToObject(c, "comms");
    reply(DL_JCHAN_SHELL, &K->req, "comm_info_reply", c);
  } else if (strcmp(t, "shutdown_request") == 0) {
    cJSON *c = cJSON_CreateObject();
    cJSON *restart = cJSON_GetObjectItemCaseSensitive(K->req.content,
                                                      "restart");
    cJSON_AddStringToObject(c, "status", "ok");
    cJSON_AddBoolToObject(c, "restart", cJSON_IsTrue(restart));
    reply(DL_JCHAN_SHELL, &K->req, "shutdown_reply", c);
    K->stop = 1;
  } else {
    klog("shell: ignored a '%s' message%s", t, "");
  }
  drain_output();
  publish_status("idle", &K->req.header_raw);
  K->busy = 0;
  dl_jmsg_free(&K->req);
}

/* SIGINT while no cell runs: nothing to stop (it only wakes zmq_poll),
   unless a request is being handled: then it is an interrupt_request that
   came before the cell's call took over SIGINT (the cell was about to
   run, as its execute_input said), and the cell's call takes it. */
static void on_sigint_idle(int sig) {
  (void)sig;
  if (K->busy) missed_sigint = 1;
}

/* The main loop: shell requests until a shutdown. */
static void serve(lua_State *L) {
  dl_jrecv *r = malloc(sizeof *r);
  zmq_pollitem_t items[2];
  if (r == NULL)
    return;
  memset(items, 0, sizeof items);
  items[0].socket = K->ch.sock[DL_JCHAN_SHELL];
  items[0].events = ZMQ_POLLIN;
  items[1].socket = K->wake_main;
  items[1].events = ZMQ_POLLIN;
  publish_status("starting", NULL);
  while (!K->stop) {
    if (zmq_poll(items, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      klog("zmq_poll: %s%s", zmq_strerror(errno), "");
      break;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      char buf[16];
      zmq_recv(K->wake_main, buf, sizeof buf, ZMQ_DONTWAIT);
      break; /* shutdown_request on the control channel */
    }
    if (items[0].revents & ZMQ_POLLIN) {
      if (dl_jchan_recv(items[0].socket, r, ZMQ_DONTWAIT) < 0)
        continue;
      shell_one(L, r);
      dl_jchan_recv_free(r);
      /* A shutdown that came on control while this request ran. */
      if (zmq_recv(K->wake_main, NULL, 0, ZMQ_DONTWAIT) >= 0)
        break;
    }
  }
  free(r);
}

/* Read the whole connection file. Returns a malloc'd text or NULL. */
static char *read_file(const char *path, size_t *len, char *err,
                       size_t errlen) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t cap = 0, n = 0;
  if (f == NULL) {
    snprintf(err, errlen, "cannot open connection file '%s': %s", path,
             strerror(errno));
    return NULL;
  }
  for (;;) {
    size_t got;
    if (n + 4096 > cap) {
      char *nb = realloc(buf, cap = cap * 2 + 4096);
      if (nb == NULL) {
        free(buf);
        fclose(f);
        snprintf(err, errlen, "out of memory");
        return NULL;
      }
      buf = nb;
    }
    got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0)
      break;
  }
  fclose(f);
  *len = n;
  return buf;
}

/* Serve Jupyter on the connection file path.  Returns 1 or 0. */
static int run_kernel(lua_State *L, const char *path) {
  static Kernel kernel;
  dl_jconn conn;
  char err[400];
  size_t len = 0;
  char *text = read_file(path, &len, err, sizeof err);
  struct sigaction sa, old;
  int ok = 0, linger = 0;
  if (text == NULL) {
    fprintf(stderr, "dlua kernel: %s\n", err);
    return 0;
  }
  if (dl_zmq_load(err, sizeof err) != 0 || dl_crypto_load(err, sizeof err)) {
    fprintf(stderr, "dlua kernel: %s\n", err);
    free(text);
    return 0;
  }
  if (dl_jconn_parse(text, len, &conn, err, sizeof err) != 0) {
    free(text);
    fprintf(stderr, "dlua kernel: bad connection file '%s': %s\n", path,
            err);
    return 0;
  }
  free(text);
  /* A kernel whose Jupyter is gone ends (SIGTERM: its clusters are
     closed first, see dlua.c), as ipykernel does with its parent poller.
     Jupyter names itself in JPY_PARENT_PID: if it is no longer our parent
     it died before prctl took effect. */
  {
    const char *jpy = getenv("JPY_PARENT_PID");
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (jpy != NULL && atol(jpy) > 0 && (pid_t)atol(jpy) != getppid())
      raise(SIGTERM);
  }
  memset(&kernel, 0, sizeof kernel);
  K = &kernel;
  K->L = L;
  K->log_fd = -1;
  K->main_thread = pthread_self();
  pthread_mutex_init(&K->parent_lock, NULL);
  pthread_mutex_init(&K->out_lock, NULL);
  if (dl_jchan_open(&K->ch, &conn, err, sizeof err) != 0) {
    fprintf(stderr, "dlua kernel: %s\n", err);
    K = NULL;
    return 0;
  }
  K->wake_main = zmq_socket(K->ch.ctx, ZMQ_PAIR);
  K->wake_control = zmq_socket(K->ch.ctx, ZMQ_PAIR);
  zmq_setsockopt(K->wake_main, ZMQ_LINGER, &linger, sizeof linger);
  zmq_setsockopt(K->wake_control, ZMQ_LINGER, &linger, sizeof linger);
  if (zmq_bind(K->wake_main, WAKE_ENDPOINT) != 0 ||
      zmq_connect(K->wake_control, WAKE_ENDPOINT) != 0) {
    fprintf(stderr, "dlua kernel: %s\n", zmq_strerror(errno));
    goto done;
  }
  lua_pushcfunction(L, setup_lua);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    fprintf(stderr, "dlua kernel: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    goto done;
  }
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint_idle;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old);
  if (capture_output() != 0) {
    fprintf(stderr, "dlua kernel: cannot capture output: %s\n",
            strerror(errno));
    goto restore;
  }
  if (pthread_create(&K->control_thread, NULL, control_main, NULL) != 0) {
    klog("cannot start the control thread%s%s", "", "");
    goto restore;
  }
  K->control_running = 1;
  serve(L);
  ok = 1;
restore:
  end_capture();
  sigaction(SIGINT, &old, NULL);
done:
  /* The context's end wakes the control thread (ETERM); it closes its
     end of the wake pair itself. */
  zmq_ctx_shutdown(K->ch.ctx);
  if (K->control_running)
    pthread_join(K->control_thread, NULL);
  else
    zmq_close(K->wake_control);
  zmq_close(K->wake_main);
  dl_jchan_close(&K->ch);
  free(K->parent);
  if (K->log_fd >= 0)
    close(K->log_fd);
  K = NULL;
  return ok;
}

/* ------------------------------------------------------------- install */

/* The logo, compiled in (build/dl_kernel_logo.c, from runtime/kernel/). */
typedef struct dl_kernel_file {
  const char *name;
  const unsigned char *data;
  size_t len;
} dl_kernel_file;
extern const dl_kernel_file dl_kernel_logos[];
extern const int dl_kernel_nlogos;

/* mkdir -p path (modified in place and restored). Returns 0 or -1. */
static int make_dirs(char *path) {
  char *p;
  for (p = path + 1; *p != '\0'; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
      *p = '/';
      return -1;
    }
    *p = '/';
  }
  return mkdir(path, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int write_file(const char *dir, const char *name, const void *data,
                      size_t len) {
  char path[PATH_MAX + 64];
  FILE *f;
  int ok;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  f = fopen(path, "wb");
  if (f == NULL) {
    fprintf(stderr, "dlua kernel install: cannot write '%s': %s\n", path,
            strerror(errno));
    return 0;
  }
  ok = fwrite(data, 1, len, f) == len;
  ok = fclose(f) == 0 && ok;
  if (!ok)
    fprintf(stderr, "dlua kernel install: cannot write '%s': %s\n", path,
            strerror(errno));
  return ok;
}

static const char install_usage[] =
  "usage: dlua kernel install [--user] [--prefix P]\n"
  "Write dlua's Jupyter kernelspec (kernel.json and logos) into\n"
  "  P/share/jupyter/kernels/dlua                     with --prefix P\n"
  "  $JUPYTER_DATA_DIR (else ~/.local/share/jupyter)/kernels/dlua  with "
  "--user\n"
  "  /usr/local/share/jupyter/kernels/dlua            otherwise\n";

static int install(int argc, char **argv) {
  const char *prefix = NULL;
  int user = 0, i, ok = 1;
  char dir[PATH_MAX], exe[PATH_MAX];
  ssize_t n;
  cJSON *spec, *av, *meta;
  char *json;
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--user") == 0)
      user = 1;
    else if (strcmp(argv[i], "--prefix") == 0 && i + 1 < argc &&
             argv[i + 1][0] != '\0')
      prefix = argv[++i];
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(install_usage, stdout);
      return 1;
    } else {
      fprintf(stderr, "dlua kernel install: %s '%s'\n%s",
              strcmp(argv[i], "--prefix") == 0 ? "missing directory after"
                                               : "unknown argument",
              argv[i], install_usage);
      return 0;
    }
  }
  if (user && prefix != NULL) {
    fprintf(stderr, "dlua kernel install: --user and --prefix exclude each "
                    "other\n");
    return 0;
  }
  if (prefix != NULL)
    snprintf(dir, sizeof dir, "%s/share/jupyter/kernels/dlua", prefix);
  else if (user) {
    const char *d = getenv("JUPYTER_DATA_DIR"), *x = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    if (d != NULL && d[0] != '\0')
      snprintf(dir, sizeof dir, "%s/kernels/dlua", d);
    else if (x != NULL && x[0] != '\0')
      snprintf(dir, sizeof dir, "%s/jupyter/kernels/dlua", x);
    else if (home != NULL && home[0] != '\0')
      snprintf(dir, sizeof dir, "%s/.local/share/jupyter/kernels/dlua",
               home);
    else {
      fprintf(stderr, "dlua kernel install: --user needs $HOME\n");
      return 0;
    }
  } else
    snprintf(dir, sizeof dir, "/usr/local/share/jupyter/kernels/dlua");
  n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) {
    fprintf(stderr, "dlua kernel install: cannot find the dlua command: "
                    "%s\n", strerror(errno));
    return 0;
  }
  exe[n] = '\0';
  if (make_dirs(dir) != 0) {
    fprintf(stderr, "dlua kernel install: cannot create '%s': %s\n", dir,
            strerror(errno));
    return 0;
  }
  spec = cJSON_CreateObject();
  av = cJSON_AddArrayToObject(spec, "argv");
  cJSON_AddItemToArray(av, cJSON_CreateString(exe));
  cJSON_AddItemToArray(av, cJSON_CreateString("kernel"));
  cJSON_AddItemToArray(av, cJSON_CreateString("-f"));
  cJSON_AddItemToArray(av, cJSON_CreateString("{connection_file}"));
  cJSON_AddStringToObject(spec, "display_name",
                          "dlua (Lua " LUA_VERSION_MAJOR "." LUA_VERSION_MINOR
                          ")");
  cJSON_AddStringToObject(spec, "language", "lua");
  cJSON_AddStringToObject(spec, "interrupt_mode", "message");
  meta = cJSON_AddObjectToObject(spec, "metadata");
  cJSON_AddStringToObject(meta, "dlua_version", DLUA_VERSION_STRING);
  json = cJSON_Print(spec);
  cJSON_Delete(spec);
  ok = json != NULL && write_file(dir, "kernel.json", json, strlen(json));
  cJSON_free(json);
  for (i = 0; ok && i < dl_kernel_nlogos; i++)
    ok = write_file(dir, dl_kernel_logos[i].name, dl_kernel_logos[i].data,
                    dl_kernel_logos[i].len);
  if (ok)
    printf("dlua kernel install: wrote %s (kernel \"dlua (Lua %s.%s)\")\n",
           dir, LUA_VERSION_MAJOR, LUA_VERSION_MINOR);
  return ok;
}

static const char kernel_usage[] =
  "usage: dlua kernel -f CONNECTION_FILE   serve Jupyter (Jupyter runs "
  "this)\n"
  "       dlua kernel install [--user] [--prefix P]   write the "
  "kernelspec\n";

int dl_kernel_command(lua_State *L, int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "install") == 0)
    return install(argc - 1, argv + 1);
  if (argc == 3 && (strcmp(argv[1], "-f") == 0 ||
                    strcmp(argv[1], "--connection-file") == 0))
    return run_kernel(L, argv[2]);
  if (argc == 2 && strncmp(argv[1], "--connection-file=", 18) == 0)
    return run_kernel(L, argv[1] + 18);
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 ||
                    strcmp(argv[1], "-h") == 0)) {
    fputs(kernel_usage, stdout);
    return 1;
  }
  fprintf(stderr, "dlua kernel: %s\n%s",
          argc < 2 ? "no connection file (Jupyter starts the kernel with "
                     "-f FILE; run 'dlua kernel install' first)"
                   : "bad arguments",
          kernel_usage);
  return 0;
}

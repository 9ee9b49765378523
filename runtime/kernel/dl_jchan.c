/*
** dl_jchan.c -- the kernel's ZeroMQ sockets (see dl_jchan.h).
*/
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dl_jchan.h"

static const int sock_types[5] = {ZMQ_ROUTER, ZMQ_PUB, ZMQ_ROUTER,
                                  ZMQ_ROUTER, ZMQ_REP};

/* The heartbeat: every ping comes straight back (zmq_proxy on one REP
   socket echoes), until the context ends. */
static void *hb_main(void *arg) {
  dl_jchan *k = arg;
  zmq_proxy(k->sock[DL_JCHAN_HB], k->sock[DL_JCHAN_HB], NULL);
  return NULL;
}

int dl_jchan_open(dl_jchan *k, const dl_jconn *c, char *err, size_t errlen) {
  int i, linger = 1000;
  memset(k, 0, sizeof *k);
  memcpy(k->key, c->key, c->keylen);
  k->keylen = c->keylen;
  dl_jmsg_uuid(k->session);
  k->ctx = zmq_ctx_new();
  if (k->ctx == NULL) {
    snprintf(err, errlen, "zmq_ctx_new: %s", zmq_strerror(errno));
    return -1;
  }
  for (i = 0; i < 5; i++) {
    char ep[300];
    if (dl_jconn_endpoint(c, i, ep, sizeof ep) != 0) {
      snprintf(err, errlen, "endpoint too long");
      goto fail;
    }
    k->sock[i] = zmq_socket(k->ctx, sock_types[i]);
    if (k->sock[i] == NULL) {
      snprintf(err, errlen, "zmq_socket: %s", zmq_strerror(errno));
      goto fail;
    }
    zmq_setsockopt(k->sock[i], ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(k->sock[i], ep) != 0) {
      snprintf(err, errlen, "cannot bind %s: %s", ep, zmq_strerror(errno));
      goto fail;
    }
  }
  pthread_mutex_init(&k->iopub_lock, NULL);
  if (pthread_create(&k->hb_thread, NULL, hb_main, k) != 0) {
    snprintf(err, errlen, "cannot start the heartbeat thread");
    pthread_mutex_destroy(&k->iopub_lock);
    goto fail;
  }
  k->hb_running = 1;
  return 0;
fail:
  for (i = 0; i < 5; i++)
    if (k->sock[i] != NULL)
      zmq_close(k->sock[i]);
  zmq_ctx_term(k->ctx);
  k->ctx = NULL;
  return -1;
}

void dl_jchan_close(dl_jchan *k) {
  int i;
  if (k->ctx == NULL)
    return;
  /* zmq_ctx_shutdown ends the proxy's blocking calls with ETERM; the
     heartbeat thread then returns and its socket may be closed. */
  zmq_ctx_shutdown(k->ctx);
  if (k->hb_running)
    pthread_join(k->hb_thread, NULL);
  for (i = 0; i < 5; i++)
    zmq_close(k->sock[i]);
  zmq_ctx_term(k->ctx);
  pthread_mutex_destroy(&k->iopub_lock);
  k->ctx = NULL;
}

int dl_jchan_recv(void *sock, dl_jrecv *r, int flags) {
  int more = 1;
  r->n = 0;
  r->truncated = 0;
  while (more) {
    zmq_msg_t scratch, *m;
    int rc;
    size_t sz = sizeof more;
    m = r->n < DL_JCHAN_MAXFRAMES ? &r->msg[r->n] : &scratch;
    zmq_msg_init(m);
    rc = zmq_msg_recv(m, sock, r->n == 0 ? flags : 0);
    if (rc < 0) {
      int e = errno;
      zmq_msg_close(m);
      if (r->n == 0) {
        errno = e;
        return -1;
      }
      /* ended inside a message (context ending): drop what we have */
      dl_jchan_recv_free(r);
      errno = e;
      return -1;
    }
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
    if (m == &scratch) {
      zmq_msg_close(m);
      r->truncated = 1;
      continue;
    }
    r->frame[r->n].data = zmq_msg_data(m);
    r->frame[r->n].len = zmq_msg_size(m);
    r->n++;
  }
  return r->n;
}

void dl_jchan_recv_free(dl_jrecv *r) {
  int i;
  for (i = 0; i < r->n; i++)
    zmq_msg_close(&r->msg[i]);
  r->n = 0;
}

static int send_frame(void *sock, const void *data, size_t len, int more) {
  return zmq_send(sock, data, len, more ? ZMQ_SNDMORE : 0) < 0 ? -1 : 0;
}

int dl_jchan_send(dl_jchan *k, int ch, const dl_jframe *ids, int nids,
                  const char *msg_type, const dl_jframe *parent,
                  const cJSON *content, const cJSON *metadata) {
  char *header = dl_jmsg_header(k->session, msg_type);
  char *ctext = content != NULL ? cJSON_PrintUnformatted(content) : NULL;
  char *mtext = metadata != NULL ? cJSON_PrintUnformatted(metadata) : NULL;
  void *sock = k->sock[ch];
  dl_jframe parts[4];
  char sig[65];
  int i, rc = -1;
  if (header == NULL || (content != NULL && ctext == NULL) ||
      (metadata != NULL && mtext == NULL))
    goto done;
  parts[0].data = header;
  parts[0].len = strlen(header);
  if (parent != NULL && parent->len > 0)
    parts[1] = *parent;
  else {
    parts[1].data = "{}";
    parts[1].len = 2;
  }
  parts[2].data = mtext != NULL ? mtext : "{}";
  parts[2].len = strlen(parts[2].data);
  parts[3].data = ctext != NULL ? ctext : "{}";
  parts[3].len = strlen(parts[3].data);
  dl_jmsg_sign(k->key, k->keylen, parts, sig);
  if (ch == DL_JCHAN_IOPUB)
    pthread_mutex_lock(&k->iopub_lock);
  rc = 0;
  if (ch == DL_JCHAN_IOPUB && nids == 0)
    rc = send_frame(sock, msg_type, strlen(msg_type), 1);
  for (i = 0; rc == 0 && i < nids; i++)
    rc = send_frame(sock, ids[i].data, ids[i].len, 1);
  if (rc == 0)
    rc = send_frame(sock, "<IDS|MSG>", 9, 1);
  if (rc == 0)
    rc = send_frame(sock, sig, strlen(sig), 1);
  for (i = 0; rc == 0 && i < 4; i++)
    rc = send_frame(sock, parts[i].data, parts[i].len, i < 3);
  if (ch == DL_JCHAN_IOPUB)
    pthread_mutex_unlock(&k->iopub_lock);
done:
  cJSON_free(header);
  cJSON_free(ctext);
  cJSON_free(mtext);
  return rc;
}

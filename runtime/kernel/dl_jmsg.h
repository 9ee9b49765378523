/*
** dl_jmsg.h -- the Jupyter messaging protocol's wire format (version 5.3),
** without sockets: a message's frames decoded and their HMAC-SHA256
** signature checked, a new message's header and signature made, and a
** kernel's connection file read.  Pure C (cJSON, libcrypto); every byte it
** decodes comes from outside the process, so it is fuzzed
** (tests/fuzz/fuzz_jmsg.c).
**
** A message on the wire is a list of frames:
**   identities..., "<IDS|MSG>", signature, header, parent_header,
**   metadata, content, buffers...
** The signature is the lowercase hex HMAC-SHA256, under the connection's
** key, of the four JSON frames that follow it; with an empty key messages
** are not signed (the signature frame is empty).
*/
#ifndef dl_jmsg_h
#define dl_jmsg_h

#include <stddef.h>

#include <cJSON.h>

/* Borrowed bytes: one frame of a message. */
typedef struct dl_jframe {
  const char *data;
  size_t len;
} dl_jframe;

/* Errors of dl_jmsg_decode (negative, as everywhere in dlua). */
#define DL_JMSG_EMALFORMED (-1) /* frames or JSON not a Jupyter message */
#define DL_JMSG_ESIGNATURE (-2) /* the signature does not match */

/* A decoded message.  ids and header_raw are borrowed from the frames
** given to dl_jmsg_decode and valid as long as they are; the cJSON trees
** are owned and freed by dl_jmsg_free. */
typedef struct dl_jmsg {
  const dl_jframe *ids;  /* the routing identities before "<IDS|MSG>" */
  int nids;
  dl_jframe header_raw;  /* the header's JSON text, echoed as parent */
  cJSON *header;         /* an object, with string msg_type and msg_id */
  cJSON *parent;         /* an object (maybe empty) */
  cJSON *metadata;       /* an object (maybe empty) */
  cJSON *content;        /* an object */
  const char *msg_type;  /* borrowed from header */
} dl_jmsg;

/*
** Decode the n frames f into m, checking the signature under key (keylen
** bytes; 0 means unsigned).  Returns 0, DL_JMSG_EMALFORMED or
** DL_JMSG_ESIGNATURE with a one-line reason in err (errlen bytes).  On
** error m holds nothing to free; on success free it with dl_jmsg_free.
*/
int dl_jmsg_decode(dl_jmsg *m, const dl_jframe *f, int n, const char *key,
                   size_t keylen, char *err, size_t errlen);

/* Free the trees of a decoded message (a zeroed m is fine too). */
void dl_jmsg_free(dl_jmsg *m);

/*
** Write into hex (65 bytes) the lowercase hex HMAC-SHA256 of the four
** parts (header, parent, metadata, content) under key, or "" when keylen
** is 0.
*/
void dl_jmsg_sign(const char *key, size_t keylen, const dl_jframe parts[4],
                  char hex[65]);

/*
** Return a new message header as JSON text (owned by the caller, free it
** with cJSON_free): a msg_id unique in the process ("<session>_<n>"),
** session, username "kernel", the
** current UTC date, msg_type and version "5.3".  NULL when out of memory.
*/
char *dl_jmsg_header(const char *session, const char *msg_type);

/* A random version-4 UUID as text, into out (37 bytes). */
void dl_jmsg_uuid(char out[37]);

/* A kernel's connection file, as Jupyter writes it. */
typedef struct dl_jconn {
  char transport[8];   /* "tcp" or "ipc" */
  char ip[256];        /* an address for tcp, a path prefix for ipc */
  int ports[5];        /* shell, iopub, stdin, control, hb (DL_JCHAN_*) */
  char key[512];       /* the signing key ("" for none) */
  size_t keylen;
} dl_jconn;

/* The channels, in the order of dl_jconn's ports. */
enum { DL_JCHAN_SHELL, DL_JCHAN_IOPUB, DL_JCHAN_STDIN, DL_JCHAN_CONTROL,
       DL_JCHAN_HB };

/*
** Read the connection file's JSON text (len bytes) into c.  Returns 0, or
** DL_JMSG_EMALFORMED with the reason in err: not JSON, a port missing or
** out of range, an unknown transport or signature scheme (only
** "hmac-sha256" is known), a key or address too long.
*/
int dl_jconn_parse(const char *text, size_t len, dl_jconn *c, char *err,
                   size_t errlen);

/*
** Write into out (outlen bytes) the ZeroMQ endpoint of channel ch:
** "tcp://ip:port" or "ipc://ip-port".  Returns 0, or -1 when it does not
** fit.
*/
int dl_jconn_endpoint(const dl_jconn *c, int ch, char *out, size_t outlen);

#endif

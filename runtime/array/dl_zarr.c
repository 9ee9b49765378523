/*
** dl_zarr.c -- Zarr v2 metadata and chunk bytes.  See dl_zarr.h.
*/
#include "dl_zarr.h"

#include <blosc.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "dl_dynlib.h"

/* Chunks above this many bytes are refused (a guard against metadata
   that asks for absurd allocations). */
#define ZARR_MAX_CHUNK ((uint64_t)1 << 32)

/* libblosc, opened on first use (dl_dynlib.h); the prototypes are its
   header's. */
static const char *const blosc_names[] = {
  "blosc_cbuffer_validate", "blosc_decompress_ctx", "blosc_compress_ctx",
  NULL};
static struct {
  __typeof__(&blosc_cbuffer_validate) validate;
  __typeof__(&blosc_decompress_ctx) decompress;
  __typeof__(&blosc_compress_ctx) compress;
} bl;
static void *bl_slots[3];
static dl_dynlib blosc_lib = {"libblosc.so.1", "libblosc1", blosc_names,
                              bl_slots, 0, ""};

const char *dl_zarr_blosc_error(void) {
  if (dl_dynlib_load(&blosc_lib) != 0) return blosc_lib.err;
  *(void **)&bl.validate = bl_slots[0];
  *(void **)&bl.decompress = bl_slots[1];
  *(void **)&bl.compress = bl_slots[2];
  return NULL;
}

/* Blosc's compressors, as numcodecs names them. */
static const char *const blosc_cnames[] = {"blosclz", "lz4", "lz4hc",
                                           "zlib", "zstd", "snappy", NULL};

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return rc;
}

/* A JSON number that is a whole number in [lo, 2^53]. */
static int whole(const cJSON *v, double lo, int64_t *out) {
  double d;
  if (!cJSON_IsNumber(v)) return 0;
  d = v->valuedouble;
  if (!(d >= lo && d <= 9007199254740992.0) || d != floor(d)) return 0;
  *out = (int64_t)d;
  return 1;
}

/* Read the integer list field name (ndim entries, or set *ndim). */
static int int_list(const cJSON *root, const char *name, int64_t *out,
                    int *ndim, double lo, char *err, size_t errlen) {
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, name), *v;
  int n = 0;
  if (!cJSON_IsArray(a))
    return fail(err, errlen, DL_ND_ESHAPE, "'%s' must be a list of "
                "integers", name);
  if (cJSON_GetArraySize(a) > DL_ND_MAXDIM)
    return fail(err, errlen, DL_ND_ESHAPE, "'%s' has more than %d axes",
                name, DL_ND_MAXDIM);
  cJSON_ArrayForEach(v, a) {
    if (!whole(v, lo, &out[n]))
      return fail(err, errlen, DL_ND_ESHAPE, "'%s'[%d] must be an integer "
                  ">= %.0f", name, n, lo);
    n++;
  }
  if (*ndim >= 0 && n != *ndim)
    return fail(err, errlen, DL_ND_ESHAPE, "'%s' has %d entries, 'shape' "
                "%d", name, n, *ndim);
  *ndim = n;
  return 0;
}

static int parse_dtype(dl_zarr_meta *m, const cJSON *v, char *err,
                       size_t errlen) {
  const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
  if (!s)
    return fail(err, errlen, DL_ND_EDTYPE, "'dtype' must be a string like "
                "\"<f8\"");
  if (strcmp(s, "<f8") == 0) m->dtype = DL_F64;
  else if (strcmp(s, "<f4") == 0) m->dtype = DL_F32;
  else if (strcmp(s, "<i8") == 0) m->dtype = DL_I64;
  else if (strcmp(s, "|b1") == 0) m->dtype = DL_BOOL;
  else
    return fail(err, errlen, DL_ND_EDTYPE, "unsupported dtype '%.40s' "
                "(\"<f8\", \"<f4\", \"<i8\" and \"|b1\" are)", s);
  return 0;
}

/* Blosc's fields: {"id": "blosc", "cname": "lz4", "clevel": 5,
   "shuffle": 1, "blocksize": 0} (numcodecs' defaults where absent). */
static int parse_blosc(dl_zarr_meta *m, const cJSON *c, char *err,
                       size_t errlen) {
  const cJSON *v;
  int64_t x;
  int k;
  m->codec = DL_ZARR_BLOSC;
  snprintf(m->cname, sizeof m->cname, "lz4");
  m->shuffle = 1;
  v = cJSON_GetObjectItemCaseSensitive(c, "cname");
  if (v != NULL && !cJSON_IsNull(v)) {
    if (!cJSON_IsString(v))
      return fail(err, errlen, DL_ND_EDTYPE, "Blosc 'cname' must be a "
                  "string");
    for (k = 0; blosc_cnames[k]; k++)
      if (strcmp(v->valuestring, blosc_cnames[k]) == 0) break;
    if (blosc_cnames[k] == NULL)
      return fail(err, errlen, DL_ND_EDTYPE, "unsupported Blosc cname "
                  "'%.40s' (blosclz, lz4, lz4hc, zlib, zstd, snappy are)",
                  v->valuestring);
    snprintf(m->cname, sizeof m->cname, "%s", blosc_cnames[k]);
  }
  v = cJSON_GetObjectItemCaseSensitive(c, "clevel");
  if (v != NULL && !cJSON_IsNull(v)) {
    if (!whole(v, 0, &x) || x > 9)
      return fail(err, errlen, DL_ND_EDTYPE, "Blosc 'clevel' must be 0..9");
    m->level = (int)x;
  }
  v = cJSON_GetObjectItemCaseSensitive(c, "shuffle");
  if (v != NULL && !cJSON_IsNull(v)) {
    if (!whole(v, -1, &x) || x > 2)
      return fail(err, errlen, DL_ND_EDTYPE, "Blosc 'shuffle' must be -1, "
                  "0, 1 or 2");
    m->shuffle = (int)x;
  }
  v = cJSON_GetObjectItemCaseSensitive(c, "blocksize");
  if (v != NULL && !cJSON_IsNull(v)) {
    if (!whole(v, 0, &x) || x > INT32_MAX)
      return fail(err, errlen, DL_ND_EDTYPE, "Blosc 'blocksize' must be an "
                  "integer >= 0");
    m->blocksize = x;
  }
  return 0;
}

static int parse_compressor(dl_zarr_meta *m, const cJSON *c, char *err,
                            size_t errlen) {
  const cJSON *id, *lv;
  int64_t level;
  m->codec = DL_ZARR_RAW;
  m->level = -1;
  if (c == NULL || cJSON_IsNull(c)) return 0;
  id = cJSON_IsObject(c) ? cJSON_GetObjectItemCaseSensitive(c, "id") : NULL;
  if (!cJSON_IsString(id))
    return fail(err, errlen, DL_ND_EDTYPE, "'compressor' must be null or "
                "{\"id\": ...}");
  if (strcmp(id->valuestring, "blosc") == 0) return parse_blosc(m, c, err,
                                                                errlen);
  if (strcmp(id->valuestring, "zlib") != 0)
    return fail(err, errlen, DL_ND_EDTYPE, "unsupported compressor "
                "'%.40s' (null, zlib and blosc are)", id->valuestring);
  m->codec = DL_ZARR_ZLIB;
  lv = cJSON_GetObjectItemCaseSensitive(c, "level");
  if (lv != NULL && !cJSON_IsNull(lv)) {
    if (!whole(lv, 0, &level) || level > 9)
      return fail(err, errlen, DL_ND_EDTYPE, "zlib 'level' must be 0..9");
    m->level = (int)level;
  }
  return 0;
}

static int parse_fill(dl_zarr_meta *m, const cJSON *f, char *err,
                      size_t errlen) {
  m->has_fill = 1;
  m->fill = 0;
  if (f == NULL || cJSON_IsNull(f)) m->has_fill = 0;
  else if (cJSON_IsNumber(f)) m->fill = f->valuedouble;
  else if (cJSON_IsBool(f)) m->fill = cJSON_IsTrue(f);
  else if (cJSON_IsString(f) && strcmp(f->valuestring, "NaN") == 0)
    m->fill = NAN;
  else if (cJSON_IsString(f) && strcmp(f->valuestring, "Infinity") == 0)
    m->fill = INFINITY;
  else if (cJSON_IsString(f) && strcmp(f->valuestring, "-Infinity") == 0)
    m->fill = -INFINITY;
  else
    return fail(err, errlen, DL_ND_EDTYPE, "'fill_value' must be a number, "
                "a boolean, null, \"NaN\" or \"Infinity\"");
  if (m->dtype == DL_BOOL) m->fill = m->fill != 0; /* as stored */
  if (m->has_fill && m->dtype == DL_I64 &&
      !(m->fill == floor(m->fill) && fabs(m->fill) < 9.2e18))
    return fail(err, errlen, DL_ND_EDTYPE, "'fill_value' of an int64 array "
                "must be an integer");
  return 0;
}

/* Bytes of one chunk, or 0 when above ZARR_MAX_CHUNK. */
static uint64_t chunk_bytes(const dl_zarr_meta *m) {
  uint64_t b = dl_nd_itemsize(m->dtype);
  int k;
  for (k = 0; k < m->ndim; k++) {
    if ((uint64_t)m->chunks[k] > ZARR_MAX_CHUNK / b) return 0;
    b *= (uint64_t)m->chunks[k];
  }
  return b;
}

int dl_zarr_meta_parse(dl_zarr_meta *m, const char *p, size_t n, char *err,
                       size_t errlen) {
  cJSON *root = cJSON_ParseWithLength(p, n);
  const cJSON *v;
  int rc, ndim = -1;
  memset(m, 0, sizeof *m);
  if (err && errlen) err[0] = '\0';
  if (!cJSON_IsObject(root)) {
    rc = fail(err, errlen, DL_ND_ESHAPE, "not a JSON object");
    goto done;
  }
  v = cJSON_GetObjectItemCaseSensitive(root, "zarr_format");
  if (!cJSON_IsNumber(v) || v->valuedouble != 2) {
    rc = fail(err, errlen, DL_ND_ESHAPE, "'zarr_format' must be 2");
    goto done;
  }
  if ((rc = int_list(root, "shape", m->shape, &ndim, 0, err, errlen)) ||
      (rc = int_list(root, "chunks", m->chunks, &ndim, 1, err, errlen)))
    goto done;
  m->ndim = ndim;
  if ((rc = parse_dtype(m, cJSON_GetObjectItemCaseSensitive(root, "dtype"),
                        err, errlen)) ||
      (rc = parse_compressor(m, cJSON_GetObjectItemCaseSensitive(
                                    root, "compressor"), err, errlen)) ||
      (rc = parse_fill(m, cJSON_GetObjectItemCaseSensitive(root,
                                                           "fill_value"),
                       err, errlen)))
    goto done;
  v = cJSON_GetObjectItemCaseSensitive(root, "order");
  if (v != NULL && !(cJSON_IsString(v) && strcmp(v->valuestring, "C") == 0)) {
    rc = fail(err, errlen, DL_ND_ESHAPE, "unsupported 'order' (\"C\" is)");
    goto done;
  }
  v = cJSON_GetObjectItemCaseSensitive(root, "filters");
  if (v != NULL && !cJSON_IsNull(v) &&
      !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0)) {
    rc = fail(err, errlen, DL_ND_EDTYPE, "'filters' are not supported");
    goto done;
  }
  v = cJSON_GetObjectItemCaseSensitive(root, "dimension_separator");
  if (v != NULL && !(cJSON_IsString(v) && strcmp(v->valuestring, ".") == 0)) {
    rc = fail(err, errlen, DL_ND_ESHAPE, "unsupported "
              "'dimension_separator' (\".\" is)");
    goto done;
  }
  if (chunk_bytes(m) == 0)
    rc = fail(err, errlen, DL_ND_ENOMEM, "a chunk of more than %llu bytes",
              (unsigned long long)ZARR_MAX_CHUNK);
done:
  cJSON_Delete(root);
  return rc;
}

/* A fill value as JSON (NaN and infinities as Zarr writes them). */
static void put_fill(dl_buf *out, const dl_zarr_meta *m) {
  char s[64];
  if (!m->has_fill) snprintf(s, sizeof s, "null");
  else if (m->dtype == DL_BOOL) snprintf(s, sizeof s, m->fill ? "true" : "false");
  else if (isnan(m->fill)) snprintf(s, sizeof s, "\"NaN\"");
  else if (isinf(m->fill))
    snprintf(s, sizeof s, m->fill > 0 ? "\"Infinity\"" : "\"-Infinity\"");
  else if (m->dtype == DL_I64) snprintf(s, sizeof s, "%.0f", m->fill);
  else snprintf(s, sizeof s, "%.17g", m->fill);
  dl_buf_put(out, s, strlen(s));
}

static void puts_(dl_buf *out, const char *s) {
  dl_buf_put(out, s, strlen(s));
}

static void put_list(dl_buf *out, int n, const int64_t *v) {
  char s[32];
  int k;
  puts_(out, "[");
  for (k = 0; k < n; k++) {
    snprintf(s, sizeof s, k ? ", %lld" : "%lld", (long long)v[k]);
    dl_buf_put(out, s, strlen(s));
  }
  puts_(out, "]");
}

int dl_zarr_meta_write(dl_buf *out, const dl_zarr_meta *m) {
  static const char *const dt[DL_NDTYPES] = {"<f8", "<i8", "|b1", "<f4"};
  char s[192];
  puts_(out, "{\n  \"zarr_format\": 2,\n  \"shape\": ");
  put_list(out, m->ndim, m->shape);
  puts_(out, ",\n  \"chunks\": ");
  put_list(out, m->ndim, m->chunks);
  snprintf(s, sizeof s, ",\n  \"dtype\": \"%s\",\n  \"compressor\": ",
           dt[m->dtype]);
  dl_buf_put(out, s, strlen(s));
  if (m->codec == DL_ZARR_ZLIB)
    snprintf(s, sizeof s, "{\"id\": \"zlib\", \"level\": %d}",
             m->level < 0 ? 1 : m->level);
  else if (m->codec == DL_ZARR_BLOSC)
    snprintf(s, sizeof s, "{\"id\": \"blosc\", \"cname\": \"%s\", "
             "\"clevel\": %d, \"shuffle\": %d, \"blocksize\": %lld}",
             m->cname[0] ? m->cname : "lz4", m->level < 0 ? 5 : m->level,
             m->shuffle, (long long)m->blocksize);
  else
    snprintf(s, sizeof s, "null");
  dl_buf_put(out, s, strlen(s));
  puts_(out, ",\n  \"fill_value\": ");
  put_fill(out, m);
  snprintf(s, sizeof s, ",\n  \"order\": \"C\",\n  \"filters\": null\n}\n");
  dl_buf_put(out, s, strlen(s));
  return 0;
}

int dl_zarr_chunk_decode(dl_nd *out, const dl_zarr_meta *m, const char *p,
                         size_t n, char *err, size_t errlen) {
  uint64_t bytes = chunk_bytes(m);
  dl_nd r;
  int rc;
  if (bytes == 0)
    return fail(err, errlen, DL_ND_ENOMEM, "chunk too big");
  if (m->codec == DL_ZARR_RAW && n != bytes)
    return fail(err, errlen, DL_ND_ESHAPE, "chunk holds %zu bytes, expected "
                "%llu", n, (unsigned long long)bytes);
  if ((rc = dl_nd_alloc_uninit(&r, m->dtype, m->ndim, m->chunks)) != 0)
    return fail(err, errlen, rc, "out of memory");
  if (m->codec == DL_ZARR_BLOSC) {
    const char *why = dl_zarr_blosc_error();
    size_t nb = 0;
    if (why != NULL) {
      dl_nd_release(&r);
      return fail(err, errlen, DL_ND_ENOBLAS, "%s", why);
    }
    /* validate: the header's sizes fit n, so decompressing is safe */
    if (n < BLOSC_MIN_HEADER_LENGTH || bl.validate(p, n, &nb) != 0 ||
        nb != bytes ||
        bl.decompress(p, r.data, (size_t)bytes, 1) != (int)bytes) {
      dl_nd_release(&r);
      return fail(err, errlen, DL_ND_ESHAPE, "chunk is not Blosc data of "
                  "%llu bytes (%s)", (unsigned long long)bytes,
                  n < BLOSC_MIN_HEADER_LENGTH ? "shorter than its header"
                  : nb == 0 ? "bad header" : nb != bytes ? "another size"
                  : "corrupt");
    }
  } else if (m->codec == DL_ZARR_ZLIB) {
    uLongf len = (uLongf)bytes;
    int zr = uncompress((Bytef *)r.data, &len, (const Bytef *)p, (uLong)n);
    if (zr != Z_OK || len != bytes) {
      dl_nd_release(&r);
      return fail(err, errlen, DL_ND_ESHAPE, "chunk is not zlib data of "
                  "%llu bytes (%s)", (unsigned long long)bytes,
                  zr == Z_OK ? "too short" : zr == Z_BUF_ERROR
                  ? "too long or truncated" : "corrupt");
    }
  } else {
    memcpy(r.data, p, n);
  }
  if (m->dtype == DL_BOOL) {
    uint64_t k;
    for (k = 0; k < bytes; k++)
      if ((unsigned char)r.data[k] > 1) {
        unsigned byte = (unsigned char)r.data[k];
        dl_nd_release(&r);
        return fail(err, errlen, DL_ND_EDTYPE, "bool chunk holds byte %u",
                    byte);
      }
  }
  *out = r;
  return 0;
}

int dl_zarr_chunk_encode(dl_buf *out, const dl_zarr_meta *m,
                         const dl_nd *block) {
  uint64_t bytes = chunk_bytes(m), k, cnt;
  size_t isz = dl_nd_itemsize(m->dtype);
  dl_nd full, v;
  int rc, d;
  if (bytes == 0 || block->ndim != m->ndim) return DL_ND_ESHAPE;
  for (d = 0; d < m->ndim; d++)
    if (block->shape[d] > m->chunks[d]) return DL_ND_ESHAPE;
  if ((rc = dl_nd_alloc_uninit(&full, m->dtype, m->ndim, m->chunks)) != 0)
    return rc;
  cnt = bytes / isz;
  for (k = 0; k < cnt; k++) { /* the fill value, for edge chunks */
    double f = m->has_fill ? m->fill : 0;
    char *e = full.data + k * isz;
    if (m->dtype == DL_F64) *(double *)e = f;
    else if (m->dtype == DL_F32) *(float *)e = (float)f;
    else if (m->dtype == DL_I64) *(int64_t *)e = (int64_t)f;
    else *(uint8_t *)e = f != 0;
  }
  dl_nd_view(&v, &full);
  for (d = 0; d < m->ndim; d++) v.shape[d] = block->shape[d];
  rc = dl_nd_assign(&v, block);
  dl_nd_release(&v);
  if (rc == 0 && m->codec == DL_ZARR_BLOSC) {
    size_t cap = (size_t)bytes + BLOSC_MAX_OVERHEAD;
    int shuffle = m->shuffle >= 0 ? m->shuffle : isz == 1 ? 2 : 1, got;
    if (dl_zarr_blosc_error() != NULL) {
      rc = DL_ND_ENOBLAS;
    } else {
      dl_buf_grow(out, cap);
      got = bl.compress(m->level < 0 ? 5 : m->level, shuffle, isz,
                        (size_t)bytes, full.data, out->p + out->len, cap,
                        m->cname[0] ? m->cname : "lz4",
                        (size_t)m->blocksize, 1);
      if (got <= 0) rc = DL_ND_ENOMEM;
      else out->len += (size_t)got;
    }
  } else if (rc == 0 && m->codec == DL_ZARR_ZLIB) {
    uLongf cap = compressBound((uLong)bytes);
    dl_buf_grow(out, (size_t)cap);
    if (compress2((Bytef *)out->p + out->len, &cap, (const Bytef *)full.data,
                  (uLong)bytes, m->level < 0 ? 1 : m->level) != Z_OK)
      rc = DL_ND_ENOMEM;
    else
      out->len += (size_t)cap;
  } else if (rc == 0) {
    dl_buf_put(out, full.data, (size_t)bytes);
  }
  dl_nd_release(&full);
  return rc;
}

/* Depth of the deepest array or object in v (v itself counts 1). */
static int json_depth(const cJSON *v, int limit) {
  const cJSON *c;
  int d = 0;
  if (!cJSON_IsArray(v) && !cJSON_IsObject(v)) return 0;
  if (limit <= 0) return 1;
  cJSON_ArrayForEach(c, v) {
    int k = json_depth(c, limit - 1);
    if (k > d) d = k;
  }
  return d + 1;
}

int dl_zarr_attrs_check(const char *p, size_t n, char *err, size_t errlen) {
  cJSON *root = cJSON_ParseWithLength(p, n);
  int rc = 0;
  if (err && errlen) err[0] = '\0';
  if (!cJSON_IsObject(root))
    rc = fail(err, errlen, DL_ND_ESHAPE, "not a JSON object");
  else if (json_depth(root, DL_ZARR_ATTRS_DEPTH) > DL_ZARR_ATTRS_DEPTH)
    rc = fail(err, errlen, DL_ND_ESHAPE, "nested more than %d deep",
              DL_ZARR_ATTRS_DEPTH);
  cJSON_Delete(root);
  return rc;
}

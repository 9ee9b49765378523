/*
** dl_nd_random.c -- counter-based random arrays (Philox4x32-10, Random123).
**
** Element g of a global array (g its flat 0-based index) is a pure function
** of (seed, g).  Every draw is one Philox4x32-10 call with key (seed low 32
** bits, seed high 32 bits) and counter (c low, c high, stream, 0); its four
** output words v0..v3 make two 64-bit words a = v0:v1 and b = v2:v3 (v0
** and v2 high).  A 64-bit word x gives the uniform (x >> 11) * 2^-53.
**
**   uniform  (stream 0): elements go in blocks of 32; element g is in
**            block q = g / 32 at r = g % 32, and takes word a (r < 16) or
**            b (r >= 16) of the call c = 16 q + r % 16.  So one call
**            serves two elements, and 16 neighbouring calls fill a block
**            with no shuffling: the SIMD kernels below run 16 (AVX-512) or
**            8 (AVX2) calls side by side and store their results as they
**            lie.  Scaled as p1 + (p2 - p1) * u.
**   normal   (stream 1): call c = g; Box-Muller on u1 = 1 - u(a) and
**            u2 = u(b).
**   integers (stream 2): call c = g / 2, word a for even g, b for odd,
**            scaled to the range by a 64x64 -> 128-bit product (a bias
**            below range / 2^64).
**
** The SIMD kernels compute exactly the integers and doubles the portable
** code does (u is exact in both: v0 * 2^-32 + (v1 >> 11) * 2^-53 has 53
** bits), so a value never depends on the machine that drew it.
*/
#include "dl_nd.h"

#include <math.h>
#include <string.h>
#include <Random123/philox.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define DL_ND_X86 1
#endif

/* ------------------------------------------------------ instruction sets */

/* -1: not probed yet.  Read and written with relaxed atomics: every
   thread that probes finds the same value. */
static int simd_level = -1;

/*
** What the CPU has and the system saves on a switch, asked with cpuid and
** xgetbv here, on first use.  Not __builtin_cpu_supports: it links in
** libgcc's constructor that probes every feature at the start of every
** process (about 30 us of a dlua start on a VM, where cpuid traps), used
** or not.
*/
static int simd_best(void) {
#ifdef DL_ND_X86
  unsigned a, b, c, d, lo, hi;
  /* OSXSAVE (the system saves extended state) and AVX */
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_AVX))
    return DL_ND_SIMD_NONE;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  (void)hi;
  if ((lo & 0x6) != 0x6) return DL_ND_SIMD_NONE; /* XMM and YMM state */
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return DL_ND_SIMD_NONE;
  /* AVX-512 also needs the opmask and ZMM state (XCR0 bits 5 to 7) */
  if ((b & bit_AVX512F) && (lo & 0xe6) == 0xe6) return DL_ND_SIMD_AVX512;
  if (b & bit_AVX2) return DL_ND_SIMD_AVX2;
#endif
  return DL_ND_SIMD_NONE;
}

int dl_nd_simd_now(void) {
  int level = __atomic_load_n(&simd_level, __ATOMIC_RELAXED);
  if (level < 0) {
    level = simd_best();
    __atomic_store_n(&simd_level, level, __ATOMIC_RELAXED);
  }
  return level;
}

int dl_nd_simd(int level) {
  int best = simd_best(), old = dl_nd_simd_now();
  if (level >= 0)
    __atomic_store_n(&simd_level, level < best ? level : best,
                     __ATOMIC_RELAXED);
  return old;
}

/* ------------------------------------------------------- portable Philox */

static philox4x32_ctr_t draw(uint64_t seed, uint64_t c, uint32_t stream) {
  philox4x32_ctr_t ctr = {{(uint32_t)c, (uint32_t)(c >> 32), stream, 0}};
  philox4x32_key_t key = {{(uint32_t)seed, (uint32_t)(seed >> 32)}};
  return philox4x32(ctr, key);
}

/* The uniform [0, 1) of the 64-bit word hi:lo (hi the high half). */
static double u53(uint32_t hi, uint32_t lo) {
  return (double)hi * 0x1p-32 + (double)(lo >> 11) * 0x1p-53;
}

/* Uniform blocks q0 .. q0 + nb - 1 (32 values each) into o, unscaled. */
static void unif_blocks_c(double *o, uint64_t seed, uint64_t q0, int64_t nb) {
  int64_t b;
  int j;
  for (b = 0; b < nb; b++, o += 32)
    for (j = 0; j < 16; j++) {
      philox4x32_ctr_t v = draw(seed, (q0 + (uint64_t)b) * 16 + (uint64_t)j,
                                0);
      o[j] = u53(v.v[0], v.v[1]);
      o[16 + j] = u53(v.v[2], v.v[3]);
    }
}

/* --------------------------------------------------------- SIMD Philox */

#ifdef DL_ND_X86
#define PH_M0 0xD2511F53u
#define PH_M1 0xCD9E8D57u
#define PH_W0 0x9E3779B9u
#define PH_W1 0xBB67AE85u

/* Products of 16 lanes of x with m: the low and high 32-bit halves. */
__attribute__((target("avx512f"), always_inline)) static inline void
mul16(__m512i x, __m512i m, __m512i *lo, __m512i *hi) {
  __m512i e = _mm512_mul_epu32(x, m);
  __m512i o = _mm512_mul_epu32(_mm512_srli_epi64(x, 32), m);
  *lo = _mm512_mask_blend_epi32(0xAAAA, e, _mm512_slli_epi64(o, 32));
  *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(e, 32), o);
}

/* 16 lanes of u53(hi, lo) into o[0..16). */
__attribute__((target("avx512f"), always_inline)) static inline void
u53x16(double *o, __m512i hi, __m512i lo) {
  const __m512d s32 = _mm512_set1_pd(0x1p-32), s53 = _mm512_set1_pd(0x1p-53);
  __m512i l = _mm512_srli_epi32(lo, 11);
  __m512d a0 = _mm512_cvtepu32_pd(_mm512_castsi512_si256(hi));
  __m512d a1 = _mm512_cvtepu32_pd(_mm512_extracti64x4_epi64(hi, 1));
  __m512d b0 = _mm512_cvtepu32_pd(_mm512_castsi512_si256(l));
  __m512d b1 = _mm512_cvtepu32_pd(_mm512_extracti64x4_epi64(l, 1));
  _mm512_storeu_pd(o, _mm512_add_pd(_mm512_mul_pd(a0, s32),
                                    _mm512_mul_pd(b0, s53)));
  _mm512_storeu_pd(o + 8, _mm512_add_pd(_mm512_mul_pd(a1, s32),
                                        _mm512_mul_pd(b1, s53)));
}

/* G blocks at once (their latencies overlap), one 16-lane vector each. */
#define UNIF512(G)                                                        \
  __attribute__((target("avx512f"))) static void unif512_##G(              \
      double *o, uint64_t seed, uint64_t q0) {                             \
    const __m512i m0 = _mm512_set1_epi32((int)PH_M0);                      \
    const __m512i m1 = _mm512_set1_epi32((int)PH_M1);                      \
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9,  \
                                           10, 11, 12, 13, 14, 15);        \
    __m512i x0[G], x1[G], x2[G], x3[G];                                    \
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);             \
    int g, r;                                                              \
    for (g = 0; g < G; g++) {                                              \
      uint64_t c = (q0 + (uint64_t)g) * 16;                                \
      x0[g] = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)c), lane); \
      x1[g] = _mm512_set1_epi32((int)(uint32_t)(c >> 32));                 \
      x2[g] = _mm512_setzero_si512();                                      \
      x3[g] = x2[g];                                                       \
    }                                                                      \
    for (r = 0; r < 10; r++) {                                             \
      __m512i kk0 = _mm512_set1_epi32((int)k0);                            \
      __m512i kk1 = _mm512_set1_epi32((int)k1);                            \
      for (g = 0; g < G; g++) {                                            \
        __m512i lo0, hi0, lo1, hi1;                                        \
        mul16(x0[g], m0, &lo0, &hi0);                                      \
        mul16(x2[g], m1, &lo1, &hi1);                                      \
        x0[g] = _mm512_ternarylogic_epi32(hi1, x1[g], kk0, 0x96);          \
        x1[g] = lo1;                                                       \
        x2[g] = _mm512_ternarylogic_epi32(hi0, x3[g], kk1, 0x96);          \
        x3[g] = lo0;                                                       \
      }                                                                    \
      k0 += PH_W0;                                                         \
      k1 += PH_W1;                                                         \
    }                                                                      \
    for (g = 0; g < G; g++) {                                              \
      u53x16(o + 32 * g, x0[g], x1[g]);                                    \
      u53x16(o + 32 * g + 16, x2[g], x3[g]);                               \
    }                                                                      \
  }
UNIF512(1)
UNIF512(4)

static void unif_blocks_512(double *o, uint64_t seed, uint64_t q0,
                            int64_t nb) {
  int64_t b = 0;
  for (; b + 4 <= nb; b += 4) unif512_4(o + 32 * b, seed, q0 + (uint64_t)b);
  for (; b < nb; b++) unif512_1(o + 32 * b, seed, q0 + (uint64_t)b);
}

__attribute__((target("avx2"), always_inline)) static inline void
mul8(__m256i x, __m256i m, __m256i *lo, __m256i *hi) {
  __m256i e = _mm256_mul_epu32(x, m);
  __m256i o = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), m);
  *lo = _mm256_blend_epi32(e, _mm256_slli_epi64(o, 32), 0xAA);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(e, 32), o, 0xAA);
}

/* 4 unsigned 32-bit lanes to doubles (AVX2 converts signed ones). */
__attribute__((target("avx2"), always_inline)) static inline __m256d
cvtu4(__m128i x) {
  __m128i s = _mm_xor_si128(x, _mm_set1_epi32((int)0x80000000u));
  return _mm256_add_pd(_mm256_cvtepi32_pd(s), _mm256_set1_pd(0x1p31));
}

/* 8 lanes of u53(hi, lo) into o[0..8). */
__attribute__((target("avx2"), always_inline)) static inline void
u53x8(double *o, __m256i hi, __m256i lo) {
  const __m256d s32 = _mm256_set1_pd(0x1p-32), s53 = _mm256_set1_pd(0x1p-53);
  __m256i l = _mm256_srli_epi32(lo, 11);
  __m256d a0 = cvtu4(_mm256_castsi256_si128(hi));
  __m256d a1 = cvtu4(_mm256_extracti128_si256(hi, 1));
  __m256d b0 = cvtu4(_mm256_castsi256_si128(l));
  __m256d b1 = cvtu4(_mm256_extracti128_si256(l, 1));
  _mm256_storeu_pd(o, _mm256_add_pd(_mm256_mul_pd(a0, s32),
                                    _mm256_mul_pd(b0, s53)));
  _mm256_storeu_pd(o + 4, _mm256_add_pd(_mm256_mul_pd(a1, s32),
                                        _mm256_mul_pd(b1, s53)));
}

/* One block of 32: two 8-lane vectors (calls 0..7 and 8..15), and two
   blocks at a time so that four chains overlap. */
__attribute__((target("avx2"))) static void unif256(double *o, uint64_t seed,
                                                    uint64_t q0, int nb) {
  const __m256i m0 = _mm256_set1_epi32((int)PH_M0);
  const __m256i m1 = _mm256_set1_epi32((int)PH_M1);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i x0[4], x1[4], x2[4], x3[4];
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  int g, r, nv = 2 * nb; /* nb is 1 or 2 */
  for (g = 0; g < 4; g++) {
    uint64_t c = q0 * 16 + (uint64_t)(8 * g);
    x0[g] = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)c), lane);
    x1[g] = _mm256_set1_epi32((int)(uint32_t)(c >> 32));
    x2[g] = _mm256_setzero_si256();
    x3[g] = x2[g];
  }
  for (r = 0; r < 10; r++) {
    __m256i kk0 = _mm256_set1_epi32((int)k0), kk1 = _mm256_set1_epi32((int)k1);
    for (g = 0; g < 4; g++) {
      __m256i lo0, hi0, lo1, hi1;
      mul8(x0[g], m0, &lo0, &hi0);
      mul8(x2[g], m1, &lo1, &hi1);
      x0[g] = _mm256_xor_si256(_mm256_xor_si256(hi1, x1[g]), kk0);
      x1[g] = lo1;
      x2[g] = _mm256_xor_si256(_mm256_xor_si256(hi0, x3[g]), kk1);
      x3[g] = lo0;
    }
    k0 += PH_W0;
    k1 += PH_W1;
  }
  for (g = 0; g < nv; g++) { /* vector g: calls 8g.. of block g / 2 */
    double *b = o + 32 * (g / 2) + 8 * (g % 2);
    u53x8(b, x0[g], x1[g]);
    u53x8(b + 16, x2[g], x3[g]);
  }
}

static void unif_blocks_256(double *o, uint64_t seed, uint64_t q0,
                            int64_t nb) {
  int64_t b = 0;
  for (; b < nb; b += 2)
    unif256(o + 32 * b, seed, q0 + (uint64_t)b, nb - b >= 2 ? 2 : 1);
}
#endif

static void unif_blocks(double *o, uint64_t seed, uint64_t q0, int64_t nb) {
#ifdef DL_ND_X86
  int level = dl_nd_simd_now();
  if (level >= DL_ND_SIMD_AVX512) {
    unif_blocks_512(o, seed, q0, nb);
    return;
  }
  if (level >= DL_ND_SIMD_AVX2) {
    unif_blocks_256(o, seed, q0, nb);
    return;
  }
#endif
  unif_blocks_c(o, seed, q0, nb);
}

/* Uniforms of global indices g, g + 1, ... into d[0..n), scaled. */
static void fill_uniform(double *d, uint64_t seed, uint64_t g, int64_t n,
                         double p1, double p2) {
  double w = p2 - p1, tmp[32];
  int64_t j, done = 0;
  while (done < n) {
    int64_t r = (int64_t)(g & 31), m;
    if (r == 0 && n - done >= 32) {
      m = (n - done) / 32 * 32;
      unif_blocks(d + done, seed, g / 32, m / 32);
    } else {
      m = 32 - r < n - done ? 32 - r : n - done;
      unif_blocks(tmp, seed, g / 32, 1);
      memcpy(d + done, tmp + r, sizeof(double) * (size_t)m);
    }
    if (p1 != 0.0 || w != 1.0)
      for (j = done; j < done + m; j++) d[j] = p1 + w * d[j];
    done += m;
    g += (uint64_t)m;
  }
}

/* Fill n values of global indices g0, g0 + 1, ... into o. */
static void fill_run(int kind, uint64_t seed, uint64_t g0, int64_t n,
                     char *o, double p1, double p2) {
  int64_t j;
  uint64_t g = g0;
  if (kind == DL_RND_UNIFORM) {
    fill_uniform((double *)o, seed, g0, n, p1, p2);
  } else if (kind == DL_RND_NORMAL) {
    double *d = (double *)o;
    for (j = 0; j < n; j++, g++) {
      philox4x32_ctr_t r = draw(seed, g, 1);
      double u1 = 1.0 - u53(r.v[0], r.v[1]), u2 = u53(r.v[2], r.v[3]);
      d[j] = p1 + p2 * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    }
  } else {
    int64_t *d = (int64_t *)o;
    uint64_t range = (uint64_t)((int64_t)p2 - (int64_t)p1) + 1;
    for (j = 0; j < n; j++, g++) {
      philox4x32_ctr_t r = draw(seed, g >> 1, 2);
      int h = (int)(g & 1) * 2;
      uint64_t x = (uint64_t)r.v[h] << 32 | r.v[h + 1];
      d[j] = (int64_t)p1 +
        (int64_t)(range ? (uint64_t)(((unsigned __int128)x * range) >> 64)
                        : x);
    }
  }
}

int dl_nd_random(dl_nd *out, int kind, uint64_t seed, int ndim,
                 const int64_t *gshape, const int64_t *off,
                 const int64_t *shape, double p1, double p2) {
  int64_t gstr[DL_ND_MAXDIM], idx[DL_ND_MAXDIM] = {0}, n, rows, k, s = 1;
  size_t isz;
  dl_nd r;
  int i, rc;
  for (i = ndim - 1; i >= 0; i--) {
    if (off[i] < 0 || shape[i] < 0 || off[i] + shape[i] > gshape[i])
      return DL_ND_ESHAPE;
    gstr[i] = s;
    s *= gshape[i];
  }
  rc = dl_nd_alloc_uninit(&r, kind == DL_RND_INTEGERS ? DL_I64 : DL_F64,
                          ndim, shape);
  if (rc) return rc;
  isz = dl_nd_itemsize(r.dtype);
  n = ndim ? shape[ndim - 1] : 1;
  rows = n ? dl_nd_size(&r) / n : 0;
  for (k = 0; k < rows; k++) {
    uint64_t g = 0;
    for (i = 0; i < ndim; i++) g += (uint64_t)((off[i] + idx[i]) * gstr[i]);
    fill_run(kind, seed, g, n, r.data + (size_t)(k * n) * isz, p1, p2);
    for (i = ndim - 2; i >= 0; i--) {
      if (++idx[i] < shape[i]) break;
      idx[i] = 0;
    }
  }
  *out = r;
  return 0;
}

void dl_nd_random_range(double *out, const dl_nd_gen *g, int64_t at,
                        int64_t m) {
  int64_t idx[DL_ND_MAXDIM], gstr[DL_ND_MAXDIM], s = 1, rest = at, inner;
  int i;
  for (i = g->ndim - 1; i >= 0; i--) {
    gstr[i] = s;
    s *= g->gshape[i];
    idx[i] = g->shape[i] ? rest % g->shape[i] : 0;
    rest = g->shape[i] ? rest / g->shape[i] : 0;
  }
  inner = g->ndim ? g->shape[g->ndim - 1] : 1;
  while (m > 0) {
    uint64_t gi = 0;
    int64_t run = g->ndim ? inner - idx[g->ndim - 1] : 1;
    if (run > m) run = m;
    for (i = 0; i < g->ndim; i++)
      gi += (uint64_t)((g->off[i] + idx[i]) * gstr[i]);
    fill_run(g->kind, g->seed, gi, run, (char *)out, g->p1, g->p2);
    out += run;
    m -= run;
    if (g->ndim == 0) break;
    idx[g->ndim - 1] += run;
    for (i = g->ndim - 1; i > 0 && idx[i] >= g->shape[i]; i--) {
      idx[i] = 0;
      idx[i - 1]++;
    }
  }
}

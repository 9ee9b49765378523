/*
** dl_nd.h -- the n-dimensional array core of dlua.ndarray (pure C, no Lua).
**
** An array is a view: dtype, shape and strides (in elements, may be zero or
** negative) over a reference-counted buffer.  Views share the buffer; every
** function that makes a new array allocates a fresh C-contiguous one.
** Functions return 0 or a negative DL_ND_E* code and leave their output
** untouched on failure (nothing to release).  Shapes are int64_t; at most
** DL_ND_MAXDIM dimensions.  Indices and axes here are 0-based; the Lua
** binding (runtime/lua/dl_ndarray_lua.c) is what makes them 1-based.
*/
#ifndef dl_nd_h
#define dl_nd_h

#include <stddef.h>
#include <stdint.h>

#define DL_ND_MAXDIM 16

/* The codes are part of the codec's byte form: never renumber. */
typedef enum { DL_F64 = 0, DL_I64 = 1, DL_BOOL = 2, DL_F32 = 3 } dl_dtype;
#define DL_NDTYPES 4

enum {
  DL_ND_ENOMEM = -1,    /* out of memory */
  DL_ND_EBCAST = -2,    /* shapes cannot be broadcast together */
  DL_ND_ESHAPE = -3,    /* shapes do not fit the operation */
  DL_ND_ENAN = -4,      /* NaN or infinity converted to an integer */
  DL_ND_ESINGULAR = -5, /* singular matrix */
  DL_ND_ENOTPD = -6,    /* not positive definite */
  DL_ND_ELAPACK = -7,   /* LAPACK failed otherwise */
  DL_ND_EDTYPE = -8,    /* operation not defined for the dtype */
  DL_ND_EZERODIV = -9,  /* integer division or modulo by zero */
  DL_ND_EDOMAIN = -10,  /* integer to a negative power */
  DL_ND_EEMPTY = -11,   /* min/max/argmin/argmax of nothing */
  DL_ND_ENOBLAS = -12,  /* OpenBLAS or LAPACKE cannot be loaded */
  DL_ND_EREADONLY = -13 /* write into a read-only (borrowed) buffer */
};

/* A buffer shared by views.  refs counts the arrays that point into it.
   A borrowed buffer (dl_nd_decode_borrow) has no data of its own: its
   arrays point into bytes someone else owns, read-only, and drop(owner)
   is called when the last of them lets go. */
typedef struct dl_ndbuf {
  size_t refs;
  size_t cap;                /* bytes of data (a reused buffer may be
                                bigger); 0 when borrowed */
  void (*drop)(void *owner); /* NULL unless borrowed */
  void *owner;
  int ro;                    /* elements may not be written */
  double data[]; /* aligned for any element type */
} dl_ndbuf;

typedef struct dl_nd {
  dl_dtype dtype;
  int ndim;
  int64_t shape[DL_ND_MAXDIM];
  int64_t strides[DL_ND_MAXDIM]; /* in elements */
  dl_ndbuf *buf;                 /* owned reference (NULL: empty slot) */
  char *data;                    /* element 0, inside buf */
} dl_nd;

/* Operators of dl_nd_binop. */
enum {
  DL_OP_ADD, DL_OP_SUB, DL_OP_MUL, DL_OP_DIV, DL_OP_FDIV, DL_OP_MOD,
  DL_OP_POW, DL_OP_LT, DL_OP_LE, DL_OP_GT, DL_OP_GE, DL_OP_EQ, DL_OP_NE,
  DL_OP_AND, DL_OP_OR, DL_OP_XOR, DL_OP_MIN, DL_OP_MAX, DL_OP_ATAN2,
  DL_OP_NBIN
};

/* Functions of dl_nd_unop. */
enum {
  DL_UN_NEG, DL_UN_ABS, DL_UN_SIGN, DL_UN_NOT, DL_UN_FLOOR, DL_UN_CEIL,
  DL_UN_ROUND, DL_UN_SQRT, DL_UN_EXP, DL_UN_LOG, DL_UN_LOG10, DL_UN_LOG2,
  DL_UN_SIN, DL_UN_COS, DL_UN_TAN, DL_UN_ASIN, DL_UN_ACOS, DL_UN_ATAN,
  DL_UN_SINH, DL_UN_COSH, DL_UN_TANH, DL_UN_EXPM1, DL_UN_LOG1P,
  DL_UN_ISNAN, DL_UN_ISINF, DL_UN_ISFINITE, DL_UN_N
};

/* Reductions of dl_nd_reduce. */
enum {
  DL_RED_SUM, DL_RED_PROD, DL_RED_MIN, DL_RED_MAX, DL_RED_MEAN,
  DL_RED_VAR, DL_RED_STD, DL_RED_ARGMIN, DL_RED_ARGMAX, DL_RED_ANY,
  DL_RED_ALL, DL_RED_N
};

/* Random distributions of dl_nd_random. */
enum { DL_RND_UNIFORM, DL_RND_NORMAL, DL_RND_INTEGERS };

/* Bytes per element of dtype t. */
size_t dl_nd_itemsize(dl_dtype t);
/* "float64", "int64", "bool", "float32". */
const char *dl_nd_dtype_name(dl_dtype t);
/* Number of elements (1 for a 0-d array). */
int64_t dl_nd_size(const dl_nd *a);
/* Non-zero when a is C-contiguous. */
int dl_nd_contiguous(const dl_nd *a);
/* A message for a DL_ND_E* code. */
const char *dl_nd_strerror(int code);
/* Format a shape as "(2, 3)" into out (n bytes). */
void dl_nd_shape_str(int ndim, const int64_t *shape, char *out, size_t n);

/* New C-contiguous, zero-filled array in *a (a is overwritten). */
int dl_nd_alloc(dl_nd *a, dl_dtype t, int ndim, const int64_t *shape);
/* The same, for callers that write every element: not zero-filled. */
int dl_nd_alloc_uninit(dl_nd *a, dl_dtype t, int ndim,
                       const int64_t *shape);
/* Bytes of array buffers allocated since the last call (for a garbage
   collector that should know about them); resets the count. */
size_t dl_nd_allocated(void);
/* Free the buffers kept for reuse.  Buffers of 64 KiB and more are kept
   when released (up to 256 MiB in all) and reused by the next arrays of
   a size they fit, which spares the page faults of fresh memory. */
void dl_nd_trim(void);
/* Drop a's reference to its buffer; a becomes an empty slot. */
void dl_nd_release(dl_nd *a);
/* Make *dst a view of src (one more reference to src's buffer). */
void dl_nd_view(dl_nd *dst, const dl_nd *src);
/* Address of the element at 0-based index idx[ndim]. */
char *dl_nd_at(const dl_nd *a, const int64_t *idx);

/* New contiguous copy of a converted to t (ENAN for NaN/inf to int64). */
int dl_nd_astype(dl_nd *out, const dl_nd *a, dl_dtype t);
/* Copy src into the view dst, broadcasting src to dst's shape and
   converting to dst's dtype. */
int dl_nd_assign(dl_nd *dst, const dl_nd *src);
/* The broadcast shape of a and b into out (EBCAST when impossible). */
int dl_nd_broadcast_shape(int na, const int64_t *sa, int nb,
                          const int64_t *sb, int *nout, int64_t *out);

/* Elementwise a op b with broadcasting.  Result dtypes: arithmetic
   promotes bool < int64 < float64 (bool with bool gives int64), DIV and
   ATAN2 give float64, comparisons give bool, AND/OR/XOR need bool or int64
   operands of one kind.

   float32 (here and in every operation below): computed in float64, each
   float32 operand widened once, and the float result stored as float32
   when every operand is float32, bool or 0-d (a number: "weak", as in
   NumPy 2); a float32 with an int64 or float64 array gives float64. */
int dl_nd_binop(dl_nd *out, int op, const dl_nd *a, const dl_nd *b);
/* Elementwise function.  NEG/ABS/SIGN/FLOOR/CEIL/ROUND keep int64; NOT
   needs bool (logical) or int64 (bitwise); ISNAN..ISFINITE give bool; the
   rest give float64. */
int dl_nd_unop(dl_nd *out, int op, const dl_nd *a);
/* cond ? a : b, elementwise with broadcasting of all three. */
int dl_nd_where(dl_nd *out, const dl_nd *cond, const dl_nd *a,
                const dl_nd *b);
/* Reduce over axis (0-based), or over everything when axis < 0 (then out
   is 0-d).  ddof is for VAR/STD.  ARGMIN/ARGMAX give 0-based int64 indices
   (flat indices when axis < 0). */
int dl_nd_reduce(dl_nd *out, int op, const dl_nd *a, int axis, int ddof);
/* Running sum along axis (0-based; < 0: over the flattened array). */
int dl_nd_cumsum(dl_nd *out, const dl_nd *a, int axis);
/* Join arrays along an existing axis. */
int dl_nd_concat(dl_nd *out, int n, const dl_nd *const *arrs, int axis);

/* Matrix product through cblas_dgemm (1-d operands as in NumPy). */
int dl_nd_matmul(dl_nd *out, const dl_nd *a, const dl_nd *b);
/* The sum of the n products a[i] b[i] (all of one shape), accumulated in
   one output by dgemm (no temporaries). */
int dl_nd_matmul_sum(dl_nd *out, int n, const dl_nd *const *a,
                     const dl_nd *const *b);
/* LAPACKE: x with a x = b; inverse; reduced QR; reduced SVD (s is 1-d);
   lower Cholesky factor. */
int dl_nd_solve(dl_nd *out, const dl_nd *a, const dl_nd *b);
int dl_nd_inv(dl_nd *out, const dl_nd *a);
int dl_nd_qr(dl_nd *q, dl_nd *r, const dl_nd *a);
int dl_nd_svd(dl_nd *u, dl_nd *s, dl_nd *vt, const dl_nd *a);
int dl_nd_cholesky(dl_nd *out, const dl_nd *a);
/* LU with partial pivoting of an m x n array (LAPACKE dgetrf): *lu holds
   L (unit diagonal, below) and U packed, *piv (int64, min(m, n)) the
   1-based row interchanges in order.  ESINGULAR when U has a zero on its
   diagonal. */
int dl_nd_lu_factor(dl_nd *lu, dl_nd *piv, const dl_nd *a);
/* One step of a blocked LU: with lu and piv the factors of an m x n panel
   (m >= n), take c (m rows, 1-d or 2-d), interchange its rows as piv
   says, then solve its top n rows by L's top (unit lower) and subtract
   L's bottom times them from the rest.  *out is the new c. */
int dl_nd_lu_apply(dl_nd *out, const dl_nd *lu, const dl_nd *piv,
                   const dl_nd *c);
/* Least squares (LAPACKE dgelsd, SVD based): x (n, or n x k as b) that
   minimises |a x - b| with the smallest norm, res the sums of squared
   residuals per column (NumPy's: none, shape (0,), unless a has full
   column rank and more rows than columns), s the singular values of a
   (min(m, n), descending) and *rank the number above rcond times the
   largest (rcond < 0: machine precision). */
int dl_nd_lstsq(dl_nd *x, dl_nd *res, dl_nd *s, int64_t *rank,
                const dl_nd *a, const dl_nd *b, double rcond);
/* x with a x = b for a triangular a (its lower or upper triangle; unit:
   ones on the diagonal assumed).  ESINGULAR for a zero on the diagonal. */
int dl_nd_solve_triangular(dl_nd *out, const dl_nd *a, const dl_nd *b,
                           int lower, int unit);
/* Number of BLAS threads (OpenBLAS); n <= 0 leaves it.  Returns the old
   number (0 when OpenBLAS cannot be loaded).  The BLAS and LAPACKE
   functions load libopenblas.so.0 and liblapacke.so.3 on first use. */
int dl_nd_blas_threads(int n);

/*
** Counter-based random numbers (Philox4x32-10 from Random123; the layout of
** draws is described in dl_nd_random.c).  Fill a new array of shape
** shape[ndim] that is the block at offset off[ndim] of a global array of
** shape gshape[ndim]: element g (its flat, 0-based index in the global
** array) depends only on (seed, g), so any chunking gives the same values,
** on any machine.  UNIFORM: [p1, p2); NORMAL: mean p1, sd p2 (Box-Muller);
** INTEGERS: int64 in [p1, p2] (p1 <= p2).
*/
int dl_nd_random(dl_nd *out, int kind, uint64_t seed, int ndim,
                 const int64_t *gshape, const int64_t *off,
                 const int64_t *shape, double p1, double p2);

/* Vector instruction sets of the kernels (random draws, fused programs).
   Every level gives the same bits; they differ only in speed. */
enum { DL_ND_SIMD_NONE = 0, DL_ND_SIMD_AVX2 = 1, DL_ND_SIMD_AVX512 = 2 };
/* The level in use: the best this CPU has, unless dl_nd_simd lowered it. */
int dl_nd_simd_now(void);
/* Use at most level (capped at what the CPU has; < 0 leaves it), for
   tests that compare the levels.  Returns the level in use before. */
int dl_nd_simd(int level);

/* A random block described, not made: the block at off[ndim] (0-based)
   of shape shape[ndim] of a global random array of shape gshape. */
typedef struct dl_nd_gen {
  int kind, ndim;
  uint64_t seed;
  double p1, p2;
  int64_t gshape[DL_ND_MAXDIM], off[DL_ND_MAXDIM], shape[DL_ND_MAXDIM];
} dl_nd_gen;

/* Elements [at, at + m) (C order) of the block g into out (float64
   kinds only: UNIFORM, NORMAL).  The same values dl_nd_random gives. */
void dl_nd_random_range(double *out, const dl_nd_gen *g, int64_t at,
                        int64_t m);

/*
** Fused elementwise programs: a small stack machine run over tiles of a
** thousand elements, so a chain of operators costs one pass over its
** inputs and no whole-array temporaries.  Each input is a C-contiguous
** float64 array of n elements (p) or a random block drawn tile by tile
** (gen; p NULL).  Codes: IN i (push input i), K k (push consts[k]), BIN op
** (an arithmetic, minimum/maximum/atan2 or comparison DL_OP_*; comparisons
** give 1.0 or 0.0), UN op (DL_UN_NEG .. DL_UN_LOG1P).  Results are float64.
** Returns 0, DL_ND_EDTYPE for an op the machine lacks, or DL_ND_ESHAPE for
** a malformed program.
*/
enum { DL_FZ_IN, DL_FZ_K, DL_FZ_BIN, DL_FZ_UN };
typedef struct dl_fz_ins { int code, arg; } dl_fz_ins;
typedef struct dl_fz_src {
  const double *p;
  const dl_nd_gen *gen;
} dl_fz_src;
int dl_nd_fused(double *out, int64_t n, const dl_fz_ins *prog, int nprog,
                const dl_fz_src *ins, const double *consts);
/* The sum of the program's values, without storing them. */
int dl_nd_fused_sum(double *sum, int64_t n, const dl_fz_ins *prog,
                    int nprog, const dl_fz_src *ins, const double *consts);

/*
** Bytes.  dl_nd_encode appends the compact form the codec carries (u8
** dtype, u8 ndim, ndim u64 shape, elements in C order; for a body of
** DL_ND_BORROW_MIN bytes or more the dtype byte has 0x80 added and is
** followed by u8 pad and pad (0..7) zero bytes that put the elements at a
** multiple of 8 from the start of out, so a decoder can borrow them in
** place); dl_nd_decode makes
** a new array from exactly those bytes (DL_ND_ESHAPE for anything else).
** dl_nd_npy_write appends a NumPy .npy file (version 1.0, C order);
** dl_nd_npy_read makes an array from a whole .npy file's bytes ('<f8',
** '<i8', '|b1'; Fortran order gives a transposed view), or fails with a
** message in err (unsupported dtype, truncated body, ...).  The readers
** never read outside [p, p + n).
*/
struct dl_buf;
int dl_nd_encode(struct dl_buf *out, const dl_nd *a);
int dl_nd_decode(dl_nd *out, const char *p, size_t n);
/* As dl_nd_decode, but when the body is big (DL_ND_BORROW_MIN bytes or
   more) and aligned, the array is a read-only view of it instead of a
   copy: hold(owner) is called once and drop(owner) when the last view
   lets go, so the bytes must stay valid until then.  The array is
   read-only either way (a copy too, so that writing into a task's input
   fails alike for every size): writes into it (dl_nd_assign, a:set) fail
   with DL_ND_EREADONLY. */
#define DL_ND_BORROW_MIN ((size_t)64 << 10)
int dl_nd_decode_borrow(dl_nd *out, const char *p, size_t n,
                        void (*hold)(void *), void (*drop)(void *),
                        void *owner);
/* A read-only C-contiguous array over the bytes at p, which someone else
   owns (see dl_nd_decode_borrow for hold and drop). */
int dl_nd_borrow(dl_nd *a, dl_dtype t, int ndim, const int64_t *shape,
                 const char *p, void (*hold)(void *), void (*drop)(void *),
                 void *owner);
/* Non-zero when a's elements may not be written. */
int dl_nd_readonly(const dl_nd *a);
int dl_nd_npy_write(struct dl_buf *out, const dl_nd *a);
int dl_nd_npy_read(dl_nd *out, const char *p, size_t n, char *err,
                   size_t errlen);

#endif

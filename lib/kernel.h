/* The micro-kernel contract: the only thing kernels/<isa>/ and the scalar table
 * implement, and the only way the driver reaches them. Private to fattn.
 *
 * Data the driver hands a table (all f32):
 *   Q block   m rows of d, contiguous (ldq = d), already multiplied by `scale`.
 *   K panel   keys in slabs of NR: slab s holds keys [s·NR, s·NR+NR) as d rows of
 *             NR floats (element (p, j) at p·NR + j); a partial last slab is padded
 *             with zeros. Keys [j0, ...) with j0 % NR == 0 start at panel + j0·d.
 *   S, P      m×n scores / probabilities, row stride lds (>= n, multiple of NR).
 *   V         n rows of dv, row stride ldv, contiguous within a row.
 *   O         m×dv unnormalised output accumulator, row stride ldo.
 * Rows of a block may belong to different query heads of one GQA group: the
 * kernels neither know nor care.
 *
 * Every function handles any m <= the block rows, any n <= the block keys, any d
 * and dv (tails inside the kernel), reads no byte outside its operands (the K
 * panel's padding is inside the panel), allocates nothing and reads no global
 * state. Masks are applied by the driver to S between qk and softmax. */
#ifndef FATTN_KERNEL_H
#define FATTN_KERNEL_H

#include <stdint.h>

#include "fattn.h"

typedef struct fattn__kernel_table {
  const char *name;      /* "avx512", "avx2", "neon", "scalar" */
  fattn_backend backend; /* FATTN_BACKEND_AVX512, ... */
  int mr;                /* register-tile query rows */
  int nr;                /* register-tile keys = K panel slab width */

  /* Pack keys [0, n) of one kv head (key j, element p at k[j·ldk + p·sk]) into
   * the panel layout above; writes round_up(n, nr)·d floats. */
  void (*pack_k)(int64_t n, int64_t d, const float *k, int64_t ldk, int64_t sk, float *panel);

  /* S[m×n] = Q[m×d] · Kpanelᵀ. May also write columns [n, round_up(n, nr)) of
   * S (scratch: lds leaves room for them); the other functions ignore them. */
  void (*qk)(int64_t m, int64_t n, int64_t d, const float *q, const float *panel, float *s,
             int64_t lds);

  /* Online-softmax step on rows of S (masked entries are -inf):
   *   m_new = max(mrow, max_j S);  alpha = exp(mrow - m_new);
   *   S <- P = exp(S - m_new);     lrow = alpha·lrow + Σ_j P;  mrow <- m_new.
   * A row whose m_new is -inf stays empty: P = 0, alpha = 1. */
  void (*softmax)(int64_t m, int64_t n, float *s, int64_t lds, float *mrow, float *lrow,
                  float *alpha);

  /* O[m×dv] = alpha ⊙ O + P[m×n] · V[n×dv]. */
  void (*pv)(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp, const float *v,
             int64_t ldv, const float *alpha, float *o, int64_t ldo);
} fattn__kernel_table;

/* Tables compiled into this build (NULL where an ISA is not built). Each may
 * only be called once fattn__cpu_supports() says so. */
extern const fattn__kernel_table fattn__table_scalar;
#if defined(FATTN_HAVE_AVX2_TABLE)
extern const fattn__kernel_table fattn__table_avx2;
#endif
#if defined(FATTN_HAVE_AVX512_TABLE)
extern const fattn__kernel_table fattn__table_avx512;
#endif
#if defined(FATTN_HAVE_NEON_TABLE)
extern const fattn__kernel_table fattn__table_neon;
#endif

#endif /* FATTN_KERNEL_H */

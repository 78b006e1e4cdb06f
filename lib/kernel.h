/* The micro-kernel contract: the only thing kernels/<isa>/ and the scalar table
 * implement, and the only way the driver reaches them. Private to fattn.
 *
 * Query rows live in vector lanes. A work unit has `rows` query rows (a
 * multiple of the table's `rw`; the driver pads with zero rows), and every
 * per-row quantity is stored row-contiguous so a vector holds rw rows:
 *
 *   Qt   d × rows     Qt[p·rows + r] = scale·log2(e) · q_r[p]   (packed by the
 *                     driver: scores are in log2 units, so softmax uses 2^x)
 *   K    n keys       key j, element p at k[j·ldk + p·sk]   (the caller's memory,
 *                     any strides: read by scalar broadcast, never packed)
 *   St   n × lds      St[j·lds + r] = score of row r, key j (lds >= rows,
 *                     a multiple of rw); softmax overwrites it with P
 *   V    n keys       key j, element c at v[j·ldv + c·sv] (caller's memory)
 *   Ot   dv × ldo     Ot[c·ldo + r]: unnormalised output of row r (ldo >= rows)
 *   m, l, alpha       rows floats each: running max, running sum, rescale
 *
 * So the online softmax is vertical (lane-wise max, exp and sum; no horizontal
 * reductions), and the rescale of O is a lane-wise multiply. Rows of a unit may
 * belong to different query heads of one GQA group: the kernels do not care.
 *
 * Every function handles any n >= 1, d >= 1, dv >= 1 (tails in the kernel),
 * reads no byte outside its operands, allocates nothing and reads no global
 * state. The driver applies masks to St between qk and softmax. */
#ifndef FATTN_KERNEL_H
#define FATTN_KERNEL_H

#include <stdint.h>

#include "fattn.h"

typedef struct fattn__kernel_table {
  const char *name;      /* "avx512", "avx2", "neon", "scalar" */
  fattn_backend backend; /* FATTN_BACKEND_AVX512, ... */
  int rw;                /* rows per vector: `rows` and `lds` are multiples of it */
  int mr;                /* rows of the qk / pv register tiles (a multiple of rw) */
  int nr;                /* keys of the qk register tile */

  /* St[j][r] = Σ_p Qt[p][r] · K[j][p] for j < n, r < rows. */
  void (*qk)(int64_t rows, int64_t n, int64_t d, const float *qt, const float *k, int64_t ldk,
             int64_t sk, float *st, int64_t lds);

  /* Online-softmax step on St (log2 units; masked entries are -inf), per row r:
   *   m_new = max(m[r], max_j St[j][r]);  alpha[r] = 2^(m[r] - m_new);
   *   St[j][r] <- 2^(St[j][r] - m_new);   l[r] = alpha[r]·l[r] + Σ_j St[j][r];
   *   m[r] <- m_new.
   * A row with m_new = -inf stays empty: P = 0, alpha = 1. */
  void (*softmax)(int64_t rows, int64_t n, float *st, int64_t lds, float *m, float *l,
                  float *alpha);

  /* Ot[c][r] = alpha[r] · Ot[c][r] + Σ_j V[j][c] · P[j][r] for c < dv. The
   * rescale is skipped when every alpha is 1 (the max did not move). */
  void (*pv)(int64_t rows, int64_t n, int64_t dv, const float *pt, int64_t lds, const float *v,
             int64_t ldv, int64_t sv, const float *alpha, float *ot, int64_t ldo);

  /* Qt[p·ldq + r] = scale · src[r·lds + p] for r < m, p < d (src rows
   * contiguous). The driver packs each query head's rows with it; qt need not
   * be vector-aligned (a head's rows may start mid-vector). */
  void (*pack_q)(int64_t m, int64_t d, const float *src, int64_t lds, float scale, float *qt,
                 int64_t ldq);

  /* dst[r·ldd + c] = Ot[c·ldo + r] · inv[r] for r < m, c < dv (dst rows
   * contiguous): the final O / l, back in row-major order. */
  void (*store_o)(int64_t m, int64_t dv, const float *ot, int64_t ldo, const float *inv, float *dst,
                  int64_t ldd);

  /* Units with at most `small_rows` rows (decode: the G query heads of one
   * position) use the row-major functions below instead, when K and V rows are
   * contiguous: vectors then run along head_dim, not over rows, so no lane
   * idles. 0: the table has none. Layouts (m <= small_rows):
   *   Q  m × d row-major (ld d), scaled like Qt;  S / P  m × lds row-major;
   *   O  m × ldo row-major;  K and V rows at k + j·ldk, v + j·ldv, contiguous. */
  int small_rows;
  /* S[r][j] = Σ_p Q[r][p] · K[j][p]. */
  void (*qk_rows)(int64_t m, int64_t n, int64_t d, const float *q, const float *k, int64_t ldk,
                  float *s, int64_t lds);
  /* The online-softmax step of `softmax`, on row-major S. Every table has
   * it, for any m: the tile family's units run their softmax on it. */
  void (*softmax_rows)(int64_t m, int64_t n, float *s, int64_t lds, float *mrow, float *lrow,
                       float *alpha);
  /* O[r][c] = alpha[r] · O[r][c] + Σ_j P[r][j] · V[j][c]. */
  void (*pv_rows)(int64_t m, int64_t n, int64_t dv, const float *p, int64_t lds, const float *v,
                  int64_t ldv, const float *alpha, float *o, int64_t ldo);

  /* dst[j·ldd + p] = src[j·lds + p] as f32 for j < n, p < d: F16 or BF16
   * rows (lds in elements), converted exactly. Half K / V go through it once
   * per unit and key block. */
  void (*cvt_rows)(int64_t n, int64_t d, const void *src, int64_t lds, fattn_dtype dt, float *dst,
                   int64_t ldd);

  /* dst[j·ldd + p] = src[j·lds + p] rounded to F16 or BF16 (nearest even; NaN
   * stays NaN, overflow gives inf) for j < n, p < d: a half `out`. */
  void (*cvt_from_f32)(int64_t n, int64_t d, const float *src, int64_t lds, fattn_dtype dt,
                       void *dst, int64_t ldd);

  /* qk_rows / pv_rows reading F16 or BF16 K / V rows (contiguous, ldk / ldv
   * in elements) and converting on load: decode streams a half KV cache
   * once, with no copy. NULL: the driver converts blocks with cvt_rows. */
  void (*qk_rows_half)(int64_t m, int64_t n, int64_t d, const float *q, const void *k, int64_t ldk,
                       fattn_dtype dt, float *s, int64_t lds);
  void (*pv_rows_half)(int64_t m, int64_t n, int64_t dv, const float *p, int64_t lds, const void *v,
                       int64_t ldv, fattn_dtype dt, const float *alpha, float *o, int64_t ldo);

  /* qk_rows / pv_rows on 8-bit quantized K / V rows (contiguous; dt I8,
   * F8_E4M3 or F8_E5M2) with a scale per key: key j's row at k + j·ldk (bytes)
   * times scale[j·ldsc], dequantised on load. NULL: the driver dequantises
   * blocks into f32 first. */
  void (*qk_rows_q8)(int64_t m, int64_t n, int64_t d, const float *q, const void *k, int64_t ldk,
                     fattn_dtype dt, const float *scale, int64_t ldsc, float *s, int64_t lds);
  void (*pv_rows_q8)(int64_t m, int64_t n, int64_t dv, const float *p, int64_t lds, const void *v,
                     int64_t ldv, fattn_dtype dt, const float *scale, int64_t ldsc,
                     const float *alpha, float *o, int64_t ldo);

  /* qk_rows / pv_rows with key j's row at k[j] / v[j] (a paged cache: one
   * call spans many blocks): F32, F16, BF16, I8 or F8 rows, contiguous; for
   * I8 / F8 times scale[j]. NULL: the driver calls the kernels above page by page. */
  void (*qk_rows_gather)(int64_t m, int64_t n, int64_t d, const float *q, const void *const *k,
                         fattn_dtype dt, const float *scale, float *s, int64_t lds);
  void (*pv_rows_gather)(int64_t m, int64_t n, int64_t dv, const float *p, int64_t lds,
                         const void *const *v, fattn_dtype dt, const float *scale,
                         const float *alpha, float *o, int64_t ldo);

  /* y[i] = 2^x[i] with this table's vector exp2 (for its error test). */
  void (*exp2)(int64_t n, const float *x, float *y);

  /* The backward pass's tile step (lib/core/backward.c), for j < n, r < rows:
   *   St[j][r] <- P = 2^(St[j][r] - lse2[r]);   dP[j][r] <- P · (dP[j][r] - drow[r])
   * (St in log2 units, masked entries -inf: P = 0; lse2 = lse · log2 e,
   * +inf for rows with no key). dP on entry is dO·Vᵀ; on return dS. */
  void (*bw_ds)(int64_t rows, int64_t n, float *st, float *dp, int64_t lds, const float *lse2,
                const float *drow);
} fattn__kernel_table;

/* An optional companion of a row-vector table: Q·Kᵀ on BF16 pairs with a
 * dot-product instruction (vdpbf16ps: two exact BF16 products added into an
 * f32 lane), for BF16 K whose elements are contiguous. Same rows, St and lds
 * as the table's qk; only Q's packing differs:
 *
 *   Qp   ceil(d/2) pairs × ldq   Qp[t·2·ldq + 2·r + e] = bf16(q_r[2t + e]),
 *                                  unscaled (so a BF16 q is used exactly);
 *                                  element d of an odd d is +0
 *
 * The driver uses it when the CPU has the instruction and K is BF16 (see
 * FATTN_BF16_DOT); the rest of the unit runs on the table. */
typedef struct fattn__bf16_dot_table {
  const char *name;
  fattn_backend backend; /* the table it pairs with */
  int rw;                /* rows per vector: the paired table's */
  /* Qp as above for r < m, from q rows src + r·lds (elements) of type dt
   * (F32 and F16 rounded to nearest even). */
  void (*pack_q)(int64_t m, int64_t d, const void *src, int64_t lds, fattn_dtype dt, uint16_t *qp,
                 int64_t ldq);
  /* St[j][r] = scale · Σ_p Q[r][p] · K[j][p] for j < n, r < rows (ldq = rows),
   * K rows at k + j·ldk (BF16 elements, contiguous). */
  void (*qk)(int64_t rows, int64_t n, int64_t d, const uint16_t *qp, const uint16_t *k, int64_t ldk,
             float scale, float *st, int64_t lds);
} fattn__bf16_dot_table;

/* The tile family (matrix engines: Intel AMX): Q·Kᵀ and P·V on bf16 tiles
 * with f32 accumulation, on operands packed into the engine's layouts
 * (kernels/bf16-tile-template.h says how). Sizes m, n, d, dv are logical;
 * the kernels pad them to whole tiles (rows and output columns to 16, the
 * reduction to 32), and the packers write that padding as zeros, so:
 *   qa / pa   ceil16(m) × ceil32(d or n) bf16, row-major (lda)     pack_a, pack_p
 *   kb        ceil16(n) keys × ceil32(d), 16-key groups of pairs   pack_k
 *   vb        ceil32(n) keys × ceil16(dv), 16-column groups        pack_v
 *   s         ceil16(m) × ceil16(n) f32 written (lds)              qk
 *   o         ceil16(m) × ceil16(dv) f32 accumulated (ldo)         pv
 * Packing is done once per (kv head, key block) for K and V and reused by
 * every query block; the online softmax stays on the vector table's f32 code
 * between qk and pack_p. The kernels load their tile configuration; the
 * caller calls release() on every thread that ran them, before it returns.
 * Sources for the packers: F32, F16 (rounded to bf16) or BF16. */
typedef struct fattn__tile_table {
  const char *name; /* "amx", "model" */
  void (*pack_a)(int64_t m, int64_t d, const void *src, int64_t ld, fattn_dtype dt, uint16_t *qa,
                 int64_t lda);
  void (*pack_k)(int64_t n, int64_t d, const void *k, int64_t ldk, fattn_dtype dt, uint16_t *kb);
  void (*pack_v)(int64_t n, int64_t dv, const void *v, int64_t ldv, fattn_dtype dt, uint16_t *vb);
  /* s[r·lds + j] = scale · Σ_p Q[r][p]·K[j][p] */
  void (*qk)(int64_t m, int64_t n, int64_t d, const uint16_t *qa, int64_t lda, const uint16_t *kb,
             float scale, float *s, int64_t lds);
  /* pa = bf16(P), P f32 row-major m × n (lds) */
  void (*pack_p)(int64_t m, int64_t n, const float *p, int64_t lds, uint16_t *pa, int64_t lda);
  /* o[r·ldo + c] = alpha[r]·o[r·ldo + c] + Σ_j P[r][j]·V[j][c] (alpha on rows
   * r < m; NULL: no rescale) */
  void (*pv)(int64_t m, int64_t n, int64_t dv, const uint16_t *pa, int64_t lda, const uint16_t *vb,
             const float *alpha, float *o, int64_t ldo);
  void (*release)(void);
} fattn__tile_table;

/* The portable model of the tile operations (lib/backends/tile_model.c): the
 * tile kernels on any CPU, for tests. */
extern const fattn__tile_table fattn__tile_model;
#if defined(FATTN_HAVE_AMX_TILES)
extern const fattn__tile_table fattn__tile_amx;
#endif

/* Tables compiled into this build. Each may only be called once
 * fattn__cpu_features() says the CPU runs it. */
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
#if defined(FATTN_HAVE_AVX512BF16_DOT)
extern const fattn__bf16_dot_table fattn__bf16_dot_avx512bf16;
#endif

#endif /* FATTN_KERNEL_H */

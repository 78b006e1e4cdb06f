/* f32 attention micro-kernels, written once for every vector ISA.
 *
 * This file is a template: kernels/avx512/f32-attn-avx512.c,
 * kernels/avx2/f32-attn-avx2.c and kernels/neon/f32-attn-neon.c include it
 * after defining the vector type and operations below, the register-tile
 * sizes and the table's name. The tables differ only in vector width, tile
 * sizes, the exp and the transposes, so one source generates all three (the
 * layout and contract are in lib/kernel.h: query rows in vector lanes, K and V
 * read in place by scalar broadcast).
 *
 * Required definitions:
 *   FA_W                 floats per vector
 *   fa_vec               the vector type
 *   fa_zero() fa_load(p) fa_store(p, x)   (aligned to a vector: every workspace
 *                                          operand is), fa_loadu(p) fa_storeu(p, x)
 *   fa_bcast(p) fa_set1(f)
 *   fa_fma(a, b, c) = a·b + c   fa_mul fa_add fa_sub fa_max
 *   fa_exp2(x)           the ISA's vector 2^x (softmax works in log2 units)
 *   fa_all_one(x)        nonzero when every lane of x is 1.0f
 *   fa_sel_neginf(c, x, y)  y in the lanes where c is -inf, x elsewhere
 *   fa_hsum(x) fa_hmax(x)   horizontal sum / max of a vector, as a float
 *   FA_QK_RV, FA_QK_NJ   qk register tile: row vectors × keys
 *   FA_PV_RV, FA_PV_CM   pv register tile: row vectors × output columns
 *   FA_TW, fa_tvec, fa_tloadu(p), fa_tstoreu(p, x), fa_tmul, fa_tset1(f),
 *   fa_transpose(x)      an FA_TW × FA_TW in-register transpose of x[0..FA_TW)
 *                        (pack_q / store_o; x86 uses 8×8 AVX for both widths)
 *   fa_cvt_f16(p) fa_cvt_bf16(p)  FA_W halves (unaligned) from p to a vector of f32
 *   fa_store_f16(p, x) fa_store_bf16(p, x)  x rounded to nearest even into FA_W halves
 *   FA_SUFFIX            e.g. avx512 (function and table names)
 *   FA_BACKEND           FATTN_BACKEND_...
 */
#include <math.h>
#include <string.h>

#include "half.h"
#include "kernel.h"

#define FA_CAT2(a, b) a##b
#define FA_CAT(a, b) FA_CAT2(a, b)
#define FA_FN(name) FA_CAT(FA_CAT(fattn_f32_, name), FA_CAT(_ukernel__, FA_SUFFIX))
#define FA_INLINE static inline __attribute__((always_inline))

/* ---- the register tile shared by qk and pv -------------------------------------------
 * acc[a][rv] += X[t][rv] · Y[t][a] for t < count: per step, RV row vectors of X
 * are loaded (x advances by ldx) and each of the NA elements of Y (y advances
 * by ldy, element a at y + a·sa) is broadcast once. qk runs it with X = Qt,
 * Y = K (t over head_dim, a over keys); pv with X = P, Y = V (t over keys, a
 * over output columns). The array is sized for the larger of the two tiles;
 * after unrolling only constant indices reach it, so it lives in registers. */
#define FA_ACC_A (FA_QK_NJ > FA_PV_CM ? FA_QK_NJ : FA_PV_CM)
#define FA_ACC_RV (FA_QK_RV > FA_PV_RV ? FA_QK_RV : FA_PV_RV)

FA_INLINE void outer_acc(const int RV, const int NA, int64_t count, const float *x, int64_t ldx,
                         const float *y, int64_t ldy, int64_t sa, fa_vec acc[FA_ACC_A][FA_ACC_RV]) {
  for (int64_t t = 0; t < count; t++, x += ldx, y += ldy) {
    fa_vec xv[FA_ACC_RV];
#pragma GCC unroll 8
    for (int rv = 0; rv < RV; rv++)
      xv[rv] = fa_load(x + rv * FA_W);
#pragma GCC unroll 16
    for (int a = 0; a < NA; a++) {
      const fa_vec yb = fa_bcast(y + a * sa);
#pragma GCC unroll 8
      for (int rv = 0; rv < RV; rv++)
        acc[a][rv] = fa_fma(xv[rv], yb, acc[a][rv]);
    }
  }
}

/* ---- qk: St[j][r] = Σ_p Qt[p][r] · K[j][p] ------------------------------------ */

/* One register tile: RV row vectors × NJ keys, the whole reduction over d. */
FA_INLINE void qk_tile(const int RV, const int NJ, int64_t d, const float *qt, int64_t rows,
                       const float *k, int64_t ldk, int64_t sk, float *st, int64_t lds) {
  fa_vec acc[FA_ACC_A][FA_ACC_RV];
#pragma GCC unroll 16
  for (int jj = 0; jj < NJ; jj++)
#pragma GCC unroll 8
    for (int rv = 0; rv < RV; rv++)
      acc[jj][rv] = fa_zero();
  outer_acc(RV, NJ, d, qt, rows, k, sk, ldk, acc);
#pragma GCC unroll 16
  for (int jj = 0; jj < NJ; jj++)
#pragma GCC unroll 8
    for (int rv = 0; rv < RV; rv++)
      fa_store(st + jj * lds + rv * FA_W, acc[jj][rv]);
}

/* RV row vectors × all n keys: full tiles, then the last n % NJ keys one by one. */
FA_INLINE void qk_rows(const int RV, int64_t n, int64_t d, const float *qt, int64_t rows,
                       const float *k, int64_t ldk, int64_t sk, float *st, int64_t lds) {
  int64_t j = 0;
  for (; j + FA_QK_NJ <= n; j += FA_QK_NJ)
    qk_tile(RV, FA_QK_NJ, d, qt, rows, k + j * ldk, ldk, sk, st + j * lds, lds);
  for (; j < n; j++)
    qk_tile(RV, 1, d, qt, rows, k + j * ldk, ldk, sk, st + j * lds, lds);
}

static void FA_FN(qk)(int64_t rows, int64_t n, int64_t d, const float *qt, const float *k,
                      int64_t ldk, int64_t sk, float *st, int64_t lds) {
  const int64_t nv = rows / FA_W;
  for (int64_t v0 = 0; v0 < nv; v0 += FA_QK_RV) {
    const float *q = qt + v0 * FA_W;
    float *s = st + v0 * FA_W;
    switch (nv - v0 < FA_QK_RV ? nv - v0 : FA_QK_RV) {
    case FA_QK_RV: qk_rows(FA_QK_RV, n, d, q, rows, k, ldk, sk, s, lds); break;
#if FA_QK_RV > 3
    case 3: qk_rows(3, n, d, q, rows, k, ldk, sk, s, lds); break;
#endif
#if FA_QK_RV > 2
    case 2: qk_rows(2, n, d, q, rows, k, ldk, sk, s, lds); break;
#endif
    default: qk_rows(1, n, d, q, rows, k, ldk, sk, s, lds); break;
    }
  }
}

/* ---- softmax: vertical online update, one row vector at a time ----------------- */

static void FA_FN(softmax)(int64_t rows, int64_t n, float *st, int64_t lds, float *m, float *l,
                           float *alpha) {
  const fa_vec ninf = fa_set1(-INFINITY), one = fa_set1(1.0f);
  for (int64_t r = 0; r < rows; r += FA_W) {
    const fa_vec mo = fa_load(m + r);
    /* four independent max chains */
    fa_vec x0 = mo, x1 = ninf, x2 = ninf, x3 = ninf;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      x0 = fa_max(x0, fa_load(st + (j + 0) * lds + r));
      x1 = fa_max(x1, fa_load(st + (j + 1) * lds + r));
      x2 = fa_max(x2, fa_load(st + (j + 2) * lds + r));
      x3 = fa_max(x3, fa_load(st + (j + 3) * lds + r));
    }
    for (; j < n; j++)
      x0 = fa_max(x0, fa_load(st + j * lds + r));
    const fa_vec mx = fa_max(fa_max(x0, x1), fa_max(x2, x3));
    /* rows with nothing to attend yet: base 0 makes P = exp(-inf) = 0, alpha 1 */
    const fa_vec base = fa_sel_neginf(mx, mx, fa_zero());
    const fa_vec a = fa_sel_neginf(mx, fa_exp2(fa_sub(mo, base)), one);
    fa_vec s0 = fa_zero(), s1 = fa_zero();
    j = 0;
    for (; j + 2 <= n; j += 2) {
      const fa_vec p0 = fa_exp2(fa_sub(fa_load(st + j * lds + r), base));
      const fa_vec p1 = fa_exp2(fa_sub(fa_load(st + (j + 1) * lds + r), base));
      fa_store(st + j * lds + r, p0);
      fa_store(st + (j + 1) * lds + r, p1);
      s0 = fa_add(s0, p0);
      s1 = fa_add(s1, p1);
    }
    for (; j < n; j++) {
      const fa_vec p0 = fa_exp2(fa_sub(fa_load(st + j * lds + r), base));
      fa_store(st + j * lds + r, p0);
      s0 = fa_add(s0, p0);
    }
    fa_store(l + r, fa_fma(fa_load(l + r), a, fa_add(s0, s1)));
    fa_store(m + r, mx);
    fa_store(alpha + r, a);
  }
}

/* ---- pv: Ot[c][r] = alpha[r]·Ot[c][r] + Σ_j V[j][c] · P[j][r] ----------------------- */

FA_INLINE void pv_tile(const int RV, const int CM, int64_t n, const float *pt, int64_t lds,
                       const float *v, int64_t ldv, int64_t sv, const float *alpha, int moved,
                       float *ot, int64_t ldo) {
  fa_vec acc[FA_ACC_A][FA_ACC_RV];
#pragma GCC unroll 16
  for (int cc = 0; cc < CM; cc++)
#pragma GCC unroll 8
    for (int rv = 0; rv < RV; rv++) {
      acc[cc][rv] = fa_load(ot + cc * ldo + rv * FA_W);
      if (moved) acc[cc][rv] = fa_mul(acc[cc][rv], fa_load(alpha + rv * FA_W));
    }
  outer_acc(RV, CM, n, pt, lds, v, ldv, sv, acc);
#pragma GCC unroll 16
  for (int cc = 0; cc < CM; cc++)
#pragma GCC unroll 8
    for (int rv = 0; rv < RV; rv++)
      fa_store(ot + cc * ldo + rv * FA_W, acc[cc][rv]);
}

FA_INLINE void pv_rows(const int RV, int64_t n, int64_t dv, const float *pt, int64_t lds,
                       const float *v, int64_t ldv, int64_t sv, const float *alpha, float *ot,
                       int64_t ldo) {
  int moved = 0;
  for (int rv = 0; rv < RV; rv++)
    moved |= !fa_all_one(fa_load(alpha + rv * FA_W));
  int64_t c = 0;
  for (; c + FA_PV_CM <= dv; c += FA_PV_CM)
    pv_tile(RV, FA_PV_CM, n, pt, lds, v + c * sv, ldv, sv, alpha, moved, ot + c * ldo, ldo);
  for (; c < dv; c++)
    pv_tile(RV, 1, n, pt, lds, v + c * sv, ldv, sv, alpha, moved, ot + c * ldo, ldo);
}

static void FA_FN(pv)(int64_t rows, int64_t n, int64_t dv, const float *pt, int64_t lds,
                      const float *v, int64_t ldv, int64_t sv, const float *alpha, float *ot,
                      int64_t ldo) {
  const int64_t nv = rows / FA_W;
  for (int64_t v0 = 0; v0 < nv; v0 += FA_PV_RV) {
    const float *p = pt + v0 * FA_W, *a = alpha + v0 * FA_W;
    float *o = ot + v0 * FA_W;
    switch (nv - v0 < FA_PV_RV ? nv - v0 : FA_PV_RV) {
    case FA_PV_RV: pv_rows(FA_PV_RV, n, dv, p, lds, v, ldv, sv, a, o, ldo); break;
#if FA_PV_RV > 3
    case 3: pv_rows(3, n, dv, p, lds, v, ldv, sv, a, o, ldo); break;
#endif
#if FA_PV_RV > 2
    case 2: pv_rows(2, n, dv, p, lds, v, ldv, sv, a, o, ldo); break;
#endif
    default: pv_rows(1, n, dv, p, lds, v, ldv, sv, a, o, ldo); break;
    }
  }
}

/* ---- small units (decode): rows row-major, vectors along head_dim ---------------------
 * m <= FA_SMALL_ROWS rows; K / V rows contiguous. Element tails (d, dv not a
 * multiple of the vector) are finished in scalar code: no masked access. */

#define FA_SMALL_ROWS 4
#define FA_SMALL_KEYS 4
#define FA_PF 16 /* keys ahead to prefetch in the small kernels */

/* K / V elements of the small kernels: DT & 7 is the type, 0 = f32, 1 = f16,
 * 2 = bf16, 3 = i8, 4 = fp8 e4m3, 5 = fp8 e5m2 (3-5 unscaled: the kernels
 * apply the per-key scale); DT & 8: rows through a table of row pointers (a
 * paged cache) instead of a row stride. A compile-time constant after
 * inlining; converted on load. */
FA_INLINE fa_vec ld_vec(const int DT, const void *p, int64_t i) {
  return (DT & 7) == 0   ? fa_loadu((const float *)p + i)
         : (DT & 7) == 1 ? fa_cvt_f16((const uint16_t *)p + i)
         : (DT & 7) == 2 ? fa_cvt_bf16((const uint16_t *)p + i)
         : (DT & 7) == 3 ? fa_cvt_i8((const int8_t *)p + i)
         : (DT & 7) == 4 ? fa_cvt_e4m3((const uint8_t *)p + i)
                         : fa_cvt_e5m2((const uint8_t *)p + i);
}
FA_INLINE float ld_one(const int DT, const void *p, int64_t i) {
  return (DT & 7) == 0   ? ((const float *)p)[i]
         : (DT & 7) == 1 ? fattn__f16_to_f32(((const uint16_t *)p)[i])
         : (DT & 7) == 2 ? fattn__bf16_to_f32(((const uint16_t *)p)[i])
         : (DT & 7) == 3 ? (float)((const int8_t *)p)[i]
         : (DT & 7) == 4 ? fattn__e4m3_to_f32(((const uint8_t *)p)[i])
                         : fattn__e5m2_to_f32(((const uint8_t *)p)[i]);
}
static const float fa_unit_scale[1] = {1.0f}; /* the scale of unscaled types */
FA_INLINE int scaled(const int DT) { return (DT & 7) >= 3; }
FA_INLINE int64_t el_size(const int DT) {
  return (DT & 7) == 0 ? 4 : (DT & 7) == 1 || (DT & 7) == 2 ? 2 : 1;
}
FA_INLINE const void *el(const int DT, const void *p, int64_t i) {
  return (const char *)p + i * el_size(DT);
}
/* Row j of an operand: k + j·ldk, or the j-th row pointer. */
FA_INLINE const void *krow(const int DT, const void *k, int64_t ldk, int64_t j) {
  return DT & 8 ? ((const void *const *)k)[j] : el(DT, k, j * ldk);
}
/* The operand from row j on. */
FA_INLINE const void *kfrom(const int DT, const void *k, int64_t ldk, int64_t j) {
  return DT & 8 ? (const void *)((const void *const *)k + j) : el(DT, k, j * ldk);
}

/* Up to 4 rows × 4 keys of dot products along d. */
FA_INLINE void qk_rows_tile(const int M, const int NK, const int DT, int64_t d, const float *q,
                            const void *k, int64_t ldk, const float *sc, int64_t ldsc, float *s,
                            int64_t lds) {
  fa_vec acc[FA_SMALL_ROWS][FA_SMALL_KEYS];
#pragma GCC unroll 4
  for (int r = 0; r < M; r++)
#pragma GCC unroll 4
    for (int jj = 0; jj < NK; jj++)
      acc[r][jj] = fa_zero();
  int64_t p = 0;
  for (; p + FA_W <= d; p += FA_W) {
    fa_vec kv[FA_SMALL_KEYS];
#pragma GCC unroll 4
    for (int jj = 0; jj < NK; jj++)
      kv[jj] = ld_vec(DT, krow(DT, k, ldk, jj), p);
#pragma GCC unroll 4
    for (int r = 0; r < M; r++) {
      const fa_vec qv = fa_loadu(q + r * d + p);
#pragma GCC unroll 4
      for (int jj = 0; jj < NK; jj++)
        acc[r][jj] = fa_fma(qv, kv[jj], acc[r][jj]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < M; r++)
#pragma GCC unroll 4
    for (int jj = 0; jj < NK; jj++) {
      float x = fa_hsum(acc[r][jj]);
      for (int64_t t = p; t < d; t++)
        x += q[r * d + t] * ld_one(DT, krow(DT, k, ldk, jj), t);
      s[r * lds + jj] = scaled(DT) ? x * sc[jj * ldsc] : x;
    }
}

FA_INLINE void qk_rows_m(const int M, const int DT, int64_t n, int64_t d, const float *q,
                         const void *k, int64_t ldk, const float *sc, int64_t ldsc, float *s,
                         int64_t lds) {
  const int64_t pf = FA_PF * (4 / el_size(DT)); /* the same bytes ahead for narrower types */
  int64_t j = 0;
  for (; j + FA_SMALL_KEYS <= n; j += FA_SMALL_KEYS) {
    /* decode streams K once from memory: ask for the rows FA_PF keys ahead
     * (within the operand) while these are computed. Measured on P5, 1 thread:
     * 16.2 -> 11.6 ms with the V prefetch below. */
    if (j + pf + FA_SMALL_KEYS <= n)
      for (int jj = 0; jj < FA_SMALL_KEYS; jj++)
        for (int64_t off = 0; off < d; off += 64 / el_size(DT))
          __builtin_prefetch(el(DT, krow(DT, k, ldk, j + pf + jj), off));
    qk_rows_tile(M, FA_SMALL_KEYS, DT, d, q, kfrom(DT, k, ldk, j), ldk, sc + j * ldsc, ldsc, s + j,
                 lds);
  }
  for (; j < n; j++)
    qk_rows_tile(M, 1, DT, d, q, kfrom(DT, k, ldk, j), ldk, sc + j * ldsc, ldsc, s + j, lds);
}

FA_INLINE void qk_rows_dt(const int DT, int64_t m, int64_t n, int64_t d, const float *q,
                          const void *k, int64_t ldk, const float *sc, int64_t ldsc, float *s,
                          int64_t lds) {
  switch (m) {
  case 4: qk_rows_m(4, DT, n, d, q, k, ldk, sc, ldsc, s, lds); break;
  case 3: qk_rows_m(3, DT, n, d, q, k, ldk, sc, ldsc, s, lds); break;
  case 2: qk_rows_m(2, DT, n, d, q, k, ldk, sc, ldsc, s, lds); break;
  default: qk_rows_m(1, DT, n, d, q, k, ldk, sc, ldsc, s, lds); break;
  }
}

static void FA_FN(qk_rows)(int64_t m, int64_t n, int64_t d, const float *q, const float *k,
                           int64_t ldk, float *s, int64_t lds) {
  qk_rows_dt(0, m, n, d, q, k, ldk, fa_unit_scale, 0, s, lds);
}

static void FA_FN(qk_rows_half)(int64_t m, int64_t n, int64_t d, const float *q, const void *k,
                                int64_t ldk, fattn_dtype dt, float *s, int64_t lds) {
  if (dt == FATTN_BF16)
    qk_rows_dt(2, m, n, d, q, k, ldk, fa_unit_scale, 0, s, lds);
  else
    qk_rows_dt(1, m, n, d, q, k, ldk, fa_unit_scale, 0, s, lds);
}

/* DT of an 8-bit quantized type (I8, F8_E4M3, F8_E5M2), plus `gather`. */
static int q8_dt(fattn_dtype dt) { return dt == FATTN_I8 ? 3 : dt == FATTN_F8_E4M3 ? 4 : 5; }

static void FA_FN(qk_rows_q8)(int64_t m, int64_t n, int64_t d, const float *q, const void *k,
                              int64_t ldk, fattn_dtype dt, const float *scale, int64_t ldsc,
                              float *s, int64_t lds) {
  switch (q8_dt(dt)) {
  case 3: qk_rows_dt(3, m, n, d, q, k, ldk, scale, ldsc, s, lds); break;
  case 4: qk_rows_dt(4, m, n, d, q, k, ldk, scale, ldsc, s, lds); break;
  default: qk_rows_dt(5, m, n, d, q, k, ldk, scale, ldsc, s, lds); break;
  }
}

static void FA_FN(softmax_rows)(int64_t m, int64_t n, float *s, int64_t lds, float *mrow,
                                float *lrow, float *alpha) {
  for (int64_t r = 0; r < m; r++) {
    float *sr = s + r * lds;
    fa_vec mx = fa_set1(-INFINITY);
    int64_t j = 0;
    for (; j + FA_W <= n; j += FA_W)
      mx = fa_max(mx, fa_loadu(sr + j));
    float mnew = fa_hmax(mx);
    for (; j < n; j++)
      mnew = sr[j] > mnew ? sr[j] : mnew;
    if (mrow[r] > mnew) mnew = mrow[r];
    /* rows with nothing to attend yet: base 0 makes P = 2^-inf = 0, alpha 1 */
    const float base = mnew == -INFINITY ? 0.0f : mnew;
    const fa_vec bv = fa_set1(base);
    fa_vec sum = fa_zero();
    for (j = 0; j + FA_W <= n; j += FA_W) {
      const fa_vec pv = fa_exp2(fa_sub(fa_loadu(sr + j), bv));
      fa_storeu(sr + j, pv);
      sum = fa_add(sum, pv);
    }
    float tail = 0.0f;
    if (j < n) { /* the tail through a local buffer, with the same exp2 */
      float buf[FA_W];
      for (int64_t t = 0; t < FA_W; t++)
        buf[t] = j + t < n ? sr[j + t] : -INFINITY;
      fa_storeu(buf, fa_exp2(fa_sub(fa_loadu(buf), bv)));
      for (int64_t t = 0; j + t < n; t++)
        sr[j + t] = buf[t], tail += buf[t];
    }
    float a = 1.0f;
    if (mnew != -INFINITY) {
      float buf[FA_W];
      for (int t = 0; t < FA_W; t++)
        buf[t] = mrow[r] - mnew;
      fa_storeu(buf, fa_exp2(fa_loadu(buf)));
      a = buf[0];
    }
    alpha[r] = a;
    lrow[r] = lrow[r] * a + fa_hsum(sum) + tail;
    mrow[r] = mnew;
  }
}

/* Up to 4 rows × FA_SMALL_CV vectors of O along dv. */
#define FA_SMALL_CV 4
FA_INLINE void pv_rows_tile(const int M, const int CV, const int DT, int64_t n, const float *p,
                            int64_t lds, const void *v, int64_t ldv, int64_t c0, const float *sc,
                            int64_t ldsc, const float *alpha, float *o, int64_t ldo) {
  fa_vec acc[FA_SMALL_ROWS][FA_SMALL_CV];
#pragma GCC unroll 4
  for (int r = 0; r < M; r++)
#pragma GCC unroll 4
    for (int cv = 0; cv < CV; cv++)
      acc[r][cv] = fa_mul(fa_loadu(o + r * ldo + cv * FA_W), fa_set1(alpha[r]));
  const int64_t es = el_size(DT), step = FA_W * es >= 64 ? 1 : 64 / (FA_W * es);
  const int64_t pf = FA_PF * (4 / es); /* the same bytes ahead for narrower types */
  for (int64_t j = 0; j < n; j++) {
    if (j + pf < n) /* V streams from memory too: this tile's part of a row ahead */
      for (int cv = 0; cv < CV; cv += step)
        __builtin_prefetch(el(DT, krow(DT, v, ldv, j + pf), c0 + cv * FA_W));
    fa_vec vv[FA_SMALL_CV];
#pragma GCC unroll 4
    for (int cv = 0; cv < CV; cv++)
      vv[cv] = ld_vec(DT, krow(DT, v, ldv, j), c0 + cv * FA_W);
#pragma GCC unroll 4
    for (int r = 0; r < M; r++) {
      const fa_vec pb =
          scaled(DT) ? fa_set1(p[r * lds + j] * sc[j * ldsc]) : fa_bcast(p + r * lds + j);
#pragma GCC unroll 4
      for (int cv = 0; cv < CV; cv++)
        acc[r][cv] = fa_fma(pb, vv[cv], acc[r][cv]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < M; r++)
#pragma GCC unroll 4
    for (int cv = 0; cv < CV; cv++)
      fa_storeu(o + r * ldo + cv * FA_W, acc[r][cv]);
}

FA_INLINE void pv_rows_m(const int M, const int DT, int64_t n, int64_t dv, const float *p,
                         int64_t lds, const void *v, int64_t ldv, const float *sc, int64_t ldsc,
                         const float *alpha, float *o, int64_t ldo) {
  int64_t c = 0;
  for (; c + FA_SMALL_CV * FA_W <= dv; c += FA_SMALL_CV * FA_W)
    pv_rows_tile(M, FA_SMALL_CV, DT, n, p, lds, v, ldv, c, sc, ldsc, alpha, o + c, ldo);
  for (; c + FA_W <= dv; c += FA_W)
    pv_rows_tile(M, 1, DT, n, p, lds, v, ldv, c, sc, ldsc, alpha, o + c, ldo);
  for (; c < dv; c++) /* element tail */
    for (int r = 0; r < M; r++) {
      float acc = alpha[r] * o[r * ldo + c];
      for (int64_t j = 0; j < n; j++)
        acc += p[r * lds + j] * (scaled(DT) ? sc[j * ldsc] : 1.0f) *
               ld_one(DT, krow(DT, v, ldv, j), c);
      o[r * ldo + c] = acc;
    }
}

FA_INLINE void pv_rows_dt(const int DT, int64_t m, int64_t n, int64_t dv, const float *p,
                          int64_t lds, const void *v, int64_t ldv, const float *sc, int64_t ldsc,
                          const float *alpha, float *o, int64_t ldo) {
  switch (m) {
  case 4: pv_rows_m(4, DT, n, dv, p, lds, v, ldv, sc, ldsc, alpha, o, ldo); break;
  case 3: pv_rows_m(3, DT, n, dv, p, lds, v, ldv, sc, ldsc, alpha, o, ldo); break;
  case 2: pv_rows_m(2, DT, n, dv, p, lds, v, ldv, sc, ldsc, alpha, o, ldo); break;
  default: pv_rows_m(1, DT, n, dv, p, lds, v, ldv, sc, ldsc, alpha, o, ldo); break;
  }
}

static void FA_FN(pv_rows)(int64_t m, int64_t n, int64_t dv, const float *p, int64_t lds,
                           const float *v, int64_t ldv, const float *alpha, float *o, int64_t ldo) {
  pv_rows_dt(0, m, n, dv, p, lds, v, ldv, fa_unit_scale, 0, alpha, o, ldo);
}

static void FA_FN(pv_rows_q8)(int64_t m, int64_t n, int64_t dv, const float *p, int64_t lds,
                              const void *v, int64_t ldv, fattn_dtype dt, const float *scale,
                              int64_t ldsc, const float *alpha, float *o, int64_t ldo) {
  switch (q8_dt(dt)) {
  case 3: pv_rows_dt(3, m, n, dv, p, lds, v, ldv, scale, ldsc, alpha, o, ldo); break;
  case 4: pv_rows_dt(4, m, n, dv, p, lds, v, ldv, scale, ldsc, alpha, o, ldo); break;
  default: pv_rows_dt(5, m, n, dv, p, lds, v, ldv, scale, ldsc, alpha, o, ldo); break;
  }
}

/* The small kernels through row pointers (a paged cache): F32, F16, BF16,
 * I8 or F8 rows (scale[j] per key for I8 / F8, else unused). */
static void FA_FN(qk_rows_gather)(int64_t m, int64_t n, int64_t d, const float *q,
                                  const void *const *k, fattn_dtype dt, const float *scale,
                                  float *s, int64_t lds) {
  switch (dt) {
  case FATTN_F16: qk_rows_dt(9, m, n, d, q, k, 0, fa_unit_scale, 0, s, lds); break;
  case FATTN_BF16: qk_rows_dt(10, m, n, d, q, k, 0, fa_unit_scale, 0, s, lds); break;
  case FATTN_I8: qk_rows_dt(11, m, n, d, q, k, 0, scale, 1, s, lds); break;
  case FATTN_F8_E4M3: qk_rows_dt(12, m, n, d, q, k, 0, scale, 1, s, lds); break;
  case FATTN_F8_E5M2: qk_rows_dt(13, m, n, d, q, k, 0, scale, 1, s, lds); break;
  default: qk_rows_dt(8, m, n, d, q, k, 0, fa_unit_scale, 0, s, lds); break;
  }
}

static void FA_FN(pv_rows_gather)(int64_t m, int64_t n, int64_t dv, const float *p, int64_t lds,
                                  const void *const *v, fattn_dtype dt, const float *scale,
                                  const float *alpha, float *o, int64_t ldo) {
  switch (dt) {
  case FATTN_F16: pv_rows_dt(9, m, n, dv, p, lds, v, 0, fa_unit_scale, 0, alpha, o, ldo); break;
  case FATTN_BF16: pv_rows_dt(10, m, n, dv, p, lds, v, 0, fa_unit_scale, 0, alpha, o, ldo); break;
  case FATTN_I8: pv_rows_dt(11, m, n, dv, p, lds, v, 0, scale, 1, alpha, o, ldo); break;
  case FATTN_F8_E4M3: pv_rows_dt(12, m, n, dv, p, lds, v, 0, scale, 1, alpha, o, ldo); break;
  case FATTN_F8_E5M2: pv_rows_dt(13, m, n, dv, p, lds, v, 0, scale, 1, alpha, o, ldo); break;
  default: pv_rows_dt(8, m, n, dv, p, lds, v, 0, fa_unit_scale, 0, alpha, o, ldo); break;
  }
}

static void FA_FN(pv_rows_half)(int64_t m, int64_t n, int64_t dv, const float *p, int64_t lds,
                                const void *v, int64_t ldv, fattn_dtype dt, const float *alpha,
                                float *o, int64_t ldo) {
  if (dt == FATTN_BF16)
    pv_rows_dt(2, m, n, dv, p, lds, v, ldv, fa_unit_scale, 0, alpha, o, ldo);
  else
    pv_rows_dt(1, m, n, dv, p, lds, v, ldv, fa_unit_scale, 0, alpha, o, ldo);
}

/* ---- pack_q / store_o: FA_TW × FA_TW transposes ---------------------------------- */

static void FA_FN(pack_q)(int64_t m, int64_t d, const float *src, int64_t lds, float scale,
                          float *qt, int64_t ldq) {
  const fa_tvec sc = fa_tset1(scale);
  int64_t r = 0;
  for (; r + FA_TW <= m; r += FA_TW) {
    int64_t p = 0;
    for (; p + FA_TW <= d; p += FA_TW) {
      fa_tvec x[FA_TW];
      for (int i = 0; i < FA_TW; i++)
        x[i] = fa_tloadu(src + (r + i) * lds + p);
      fa_transpose(x);
      for (int i = 0; i < FA_TW; i++)
        fa_tstoreu(qt + (p + i) * ldq + r, fa_tmul(x[i], sc));
    }
    for (; p < d; p++)
      for (int i = 0; i < FA_TW; i++)
        qt[p * ldq + r + i] = scale * src[(r + i) * lds + p];
  }
  for (; r < m; r++)
    for (int64_t p = 0; p < d; p++)
      qt[p * ldq + r] = scale * src[r * lds + p];
}

static void FA_FN(store_o)(int64_t m, int64_t dv, const float *ot, int64_t ldo, const float *inv,
                           float *dst, int64_t ldd) {
  int64_t r = 0;
  for (; r + FA_TW <= m; r += FA_TW) {
    int64_t c = 0;
    for (; c + FA_TW <= dv; c += FA_TW) {
      fa_tvec x[FA_TW];
      for (int i = 0; i < FA_TW; i++)
        x[i] = fa_tloadu(ot + (c + i) * ldo + r);
      fa_transpose(x);
      for (int i = 0; i < FA_TW; i++)
        fa_tstoreu(dst + (r + i) * ldd + c, fa_tmul(x[i], fa_tset1(inv[r + i])));
    }
    for (; c < dv; c++)
      for (int i = 0; i < FA_TW; i++)
        dst[(r + i) * ldd + c] = ot[c * ldo + r + i] * inv[r + i];
  }
  for (; r < m; r++)
    for (int64_t c = 0; c < dv; c++)
      dst[r * ldd + c] = ot[c * ldo + r] * inv[r];
}

/* ---- half rows to f32 (half K / V) -------------------------------------------------- */

static void FA_FN(cvt_rows)(int64_t n, int64_t d, const void *src, int64_t lds, fattn_dtype dt,
                            float *dst, int64_t ldd) {
  const uint16_t *h = src;
  for (int64_t j = 0; j < n; j++) {
    const uint16_t *hr = h + j * lds;
    float *dr = dst + j * ldd;
    if (j + FA_PF < n) /* half K / V stream from memory: rows FA_PF ahead */
      for (int64_t off = 0; off < d; off += 32)
        __builtin_prefetch(hr + FA_PF * lds + off);
    int64_t p = 0;
    if (dt == FATTN_BF16) {
      for (; p + FA_W <= d; p += FA_W)
        fa_storeu(dr + p, fa_cvt_bf16(hr + p));
      for (; p < d; p++)
        dr[p] = fattn__bf16_to_f32(hr[p]);
    } else {
      for (; p + FA_W <= d; p += FA_W)
        fa_storeu(dr + p, fa_cvt_f16(hr + p));
      for (; p < d; p++)
        dr[p] = fattn__f16_to_f32(hr[p]);
    }
  }
}

static void FA_FN(cvt_from_f32)(int64_t n, int64_t d, const float *src, int64_t lds, fattn_dtype dt,
                                void *dst, int64_t ldd) {
  uint16_t *h = dst;
  for (int64_t j = 0; j < n; j++) {
    const float *sr = src + j * lds;
    uint16_t *hr = h + j * ldd;
    int64_t p = 0;
    if (dt == FATTN_BF16) {
      for (; p + FA_W <= d; p += FA_W)
        fa_store_bf16(hr + p, fa_loadu(sr + p));
      for (; p < d; p++)
        hr[p] = fattn__f32_to_bf16(sr[p]);
    } else {
      for (; p + FA_W <= d; p += FA_W)
        fa_store_f16(hr + p, fa_loadu(sr + p));
      for (; p < d; p++)
        hr[p] = fattn__f32_to_f16(sr[p]);
    }
  }
}

/* ---- 2^x over an array (for the error test) --------------------------------------- */

static void FA_FN(exp2)(int64_t n, const float *x, float *y) {
  int64_t i = 0;
  for (; i + FA_W <= n; i += FA_W)
    fa_storeu(y + i, fa_exp2(fa_loadu(x + i)));
  if (i < n) { /* the tail through a local buffer: no access past x[n-1] or y[n-1] */
    float buf[FA_W] = {0};
    memcpy(buf, x + i, (size_t)(n - i) * sizeof(float));
    fa_storeu(buf, fa_exp2(fa_loadu(buf)));
    memcpy(y + i, buf, (size_t)(n - i) * sizeof(float));
  }
}

/* ---- the backward pass's tile step: P = 2^(St - lse2), dS = P·(dP - drow) ---------- */

static void FA_FN(bw_ds)(int64_t rows, int64_t n, float *st, float *dp, int64_t lds,
                         const float *lse2, const float *drow) {
  for (int64_t r = 0; r < rows; r += FA_W) {
    const fa_vec l = fa_load(lse2 + r), d = fa_load(drow + r);
    for (int64_t j = 0; j < n; j++) {
      const fa_vec p = fa_exp2(fa_sub(fa_load(st + j * lds + r), l));
      fa_store(st + j * lds + r, p);
      fa_store(dp + j * lds + r, fa_mul(p, fa_sub(fa_load(dp + j * lds + r), d)));
    }
  }
}

#define FA_TABLE FA_CAT(fattn__table_, FA_SUFFIX)
#define FA_STR2(x) #x
#define FA_STR(x) FA_STR2(x)

const fattn__kernel_table FA_TABLE = {
    .name = FA_STR(FA_SUFFIX),
    .backend = FA_BACKEND,
    .rw = FA_W,
    .mr = FA_QK_RV * FA_W,
    .nr = FA_QK_NJ,
    .qk = FA_FN(qk),
    .softmax = FA_FN(softmax),
    .pv = FA_FN(pv),
    .small_rows = FA_SMALL_ROWS,
    .qk_rows = FA_FN(qk_rows),
    .softmax_rows = FA_FN(softmax_rows),
    .pv_rows = FA_FN(pv_rows),
    .qk_rows_half = FA_FN(qk_rows_half),
    .pv_rows_half = FA_FN(pv_rows_half),
    .qk_rows_q8 = FA_FN(qk_rows_q8),
    .pv_rows_q8 = FA_FN(pv_rows_q8),
    .qk_rows_gather = FA_FN(qk_rows_gather),
    .pv_rows_gather = FA_FN(pv_rows_gather),
    .pack_q = FA_FN(pack_q),
    .store_o = FA_FN(store_o),
    .cvt_rows = FA_FN(cvt_rows),
    .cvt_from_f32 = FA_FN(cvt_from_f32),
    .exp2 = FA_FN(exp2),
    .bw_ds = FA_FN(bw_ds),
};

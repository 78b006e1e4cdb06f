/* Q·Kᵀ with AVX512_BF16's vdpbf16ps, for BF16 K: a companion of the AVX-512
 * table (same 16-row vectors, same St layout; contract in lib/kernel.h).
 *
 * vdpbf16ps multiplies BF16 pairs exactly (8-bit significands: the product
 * fits f32) and adds both products into f32 lanes, so one instruction does the
 * work of two FMAs: Q is packed as pairs along head_dim, 16 rows × 2 elements
 * in a zmm, and each key contributes a broadcast 32-bit pair read straight
 * from the caller's BF16 row. The register tile is the f32 one's, 64 rows × 6
 * keys (24 accumulators, 4 Q loads + 6 broadcasts per 24 vdpbf16ps), over
 * half as many steps. The scale is applied to the f32 sums on store, so a BF16
 * q is used exactly; an F32 / F16 q is rounded to BF16 (the accuracy cost
 * measured in README's "Half precision"). Like the f32 kernels under fattn's
 * FTZ/DAZ mode, vdpbf16ps treats denormals as zero. */
#include <stdint.h>
#include <string.h>
#include <immintrin.h>

#include "half.h"
#include "kernel.h"

#define BF_W 16 /* rows per vector */
#define BF_RV 4 /* row vectors per tile */
#define BF_NJ 6 /* keys per tile */
#define BF_INLINE static inline __attribute__((always_inline))

static inline uint32_t load_pair(const uint16_t *p) {
  uint32_t u;
  memcpy(&u, p, sizeof u);
  return u;
}

/* Qp[t·2·ldq + 2·r + e] = bf16(src_r[2t + e]); the odd element past d is 0. */
static void fattn_bf16_pack_q_ukernel__avx512bf16(int64_t m, int64_t d, const void *src,
                                                  int64_t lds, fattn_dtype dt, uint16_t *qp,
                                                  int64_t ldq) {
  const int64_t np = (d + 1) / 2;
  for (int64_t r = 0; r < m; r++) {
    uint16_t *dst = qp + 2 * r;
    if (dt == FATTN_BF16) {
      const uint16_t *s = (const uint16_t *)src + r * lds;
      for (int64_t t = 0; t < d / 2; t++)
        memcpy(dst + t * 2 * ldq, s + 2 * t, 4);
      if (d & 1) dst[(np - 1) * 2 * ldq] = s[d - 1], dst[(np - 1) * 2 * ldq + 1] = 0;
    } else if (dt == FATTN_F16) {
      const uint16_t *s = (const uint16_t *)src + r * lds;
      for (int64_t p = 0; p < 2 * np; p++)
        dst[(p / 2) * 2 * ldq + (p & 1)] = p < d ? fattn__f32_to_bf16(fattn__f16_to_f32(s[p])) : 0;
    } else {
      const float *s = (const float *)src + r * lds;
      int64_t t = 0;
      for (; 2 * t + 32 <= d; t += 16) { /* 32 floats -> 16 pairs, rounded by vcvtne2ps2bf16 */
        const __m512bh pr =
            _mm512_cvtne2ps_pbh(_mm512_loadu_ps(s + 2 * t + 16), _mm512_loadu_ps(s + 2 * t));
        uint32_t w[16];
        _mm512_storeu_si512(w, (__m512i)pr);
        for (int i = 0; i < 16; i++)
          memcpy(dst + (t + i) * 2 * ldq, &w[i], 4);
      }
      for (int64_t p = 2 * t; p < 2 * np; p++)
        dst[(p / 2) * 2 * ldq + (p & 1)] = p < d ? fattn__f32_to_bf16(s[p]) : 0;
    }
  }
}

BF_INLINE void tile(const int RV, const int NJ, int64_t d, const uint16_t *qp, int64_t rows,
                    const uint16_t *k, int64_t ldk, float scale, float *st, int64_t lds) {
  __m512 acc[BF_NJ][BF_RV];
#pragma GCC unroll 8
  for (int jj = 0; jj < NJ; jj++)
#pragma GCC unroll 4
    for (int rv = 0; rv < RV; rv++)
      acc[jj][rv] = _mm512_setzero_ps();
  const int64_t np = d / 2;
  for (int64_t t = 0; t < np; t++) {
    __m512bh qv[BF_RV];
#pragma GCC unroll 4
    for (int rv = 0; rv < RV; rv++)
      qv[rv] = (__m512bh)_mm512_load_si512(qp + t * 2 * rows + rv * 2 * BF_W);
#pragma GCC unroll 8
    for (int jj = 0; jj < NJ; jj++) {
      const __m512bh kb = (__m512bh)_mm512_set1_epi32((int)load_pair(k + jj * ldk + 2 * t));
#pragma GCC unroll 4
      for (int rv = 0; rv < RV; rv++)
        acc[jj][rv] = _mm512_dpbf16_ps(acc[jj][rv], qv[rv], kb);
    }
  }
  if (d & 1) { /* the last element alone: its pair's high half is +0 in Qp and here */
    __m512bh qv[BF_RV];
#pragma GCC unroll 4
    for (int rv = 0; rv < RV; rv++)
      qv[rv] = (__m512bh)_mm512_load_si512(qp + np * 2 * rows + rv * 2 * BF_W);
#pragma GCC unroll 8
    for (int jj = 0; jj < NJ; jj++) {
      const __m512bh kb = (__m512bh)_mm512_set1_epi32((int)k[jj * ldk + d - 1]);
#pragma GCC unroll 4
      for (int rv = 0; rv < RV; rv++)
        acc[jj][rv] = _mm512_dpbf16_ps(acc[jj][rv], qv[rv], kb);
    }
  }
  const __m512 sc = _mm512_set1_ps(scale);
#pragma GCC unroll 8
  for (int jj = 0; jj < NJ; jj++)
#pragma GCC unroll 4
    for (int rv = 0; rv < RV; rv++)
      _mm512_store_ps(st + jj * lds + rv * BF_W, _mm512_mul_ps(acc[jj][rv], sc));
}

BF_INLINE void keys(const int RV, int64_t n, int64_t d, const uint16_t *qp, int64_t rows,
                    const uint16_t *k, int64_t ldk, float scale, float *st, int64_t lds) {
  int64_t j = 0;
  for (; j + BF_NJ <= n; j += BF_NJ)
    tile(RV, BF_NJ, d, qp, rows, k + j * ldk, ldk, scale, st + j * lds, lds);
  for (; j < n; j++)
    tile(RV, 1, d, qp, rows, k + j * ldk, ldk, scale, st + j * lds, lds);
}

static void fattn_bf16_qk_ukernel__avx512bf16(int64_t rows, int64_t n, int64_t d,
                                              const uint16_t *qp, const uint16_t *k, int64_t ldk,
                                              float scale, float *st, int64_t lds) {
  const int64_t nv = rows / BF_W;
  for (int64_t v0 = 0; v0 < nv; v0 += BF_RV) {
    const uint16_t *q = qp + v0 * 2 * BF_W;
    float *s = st + v0 * BF_W;
    switch (nv - v0 < BF_RV ? nv - v0 : BF_RV) {
    case 4: keys(4, n, d, q, rows, k, ldk, scale, s, lds); break;
    case 3: keys(3, n, d, q, rows, k, ldk, scale, s, lds); break;
    case 2: keys(2, n, d, q, rows, k, ldk, scale, s, lds); break;
    default: keys(1, n, d, q, rows, k, ldk, scale, s, lds); break;
    }
  }
}

const fattn__bf16_dot_table fattn__bf16_dot_avx512bf16 = {
    .name = "avx512bf16",
    .backend = FATTN_BACKEND_AVX512,
    .rw = BF_W,
    .pack_q = fattn_bf16_pack_q_ukernel__avx512bf16,
    .qk = fattn_bf16_qk_ukernel__avx512bf16,
};

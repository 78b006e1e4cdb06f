/* Vector 2^x for the AVX-512 kernels (static inline: no copy of it can leak
 * into generic code). The softmax works in log2 units (the driver folds
 * log2(e) into Q's scale), so this is its only transcendental: x = k + r with
 * k = round(x), r = x - k in [-1/2, 1/2] exactly, 2^r by its degree-7 Taylor
 * polynomial in r·ln2 (truncation < 5e-9), then 2^k by vscalefps.
 *
 * Measured error (tests/test_kernels.c: every 2^-12 in [-126, 127] plus 2^20
 * random points, against double exp2): see the figure the test prints; the
 * test asserts <= 2e-7 relative. Below -126 (2^-126 = FLT_MIN) it returns
 * exactly 0 (|error| < FLT_MIN): softmax never produces a denormal, so P·V
 * never takes a denormal-operand slow path. 2^-inf = 0, 2^NaN = NaN; above 128
 * the result is +inf. */
#ifndef FATTN_EXP2_AVX512_H
#define FATTN_EXP2_AVX512_H

#include <immintrin.h>

#include "../exp2-coeffs.h"

static inline __m512 fattn__exp2_avx512(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-126.0f);
  const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_max_ps(lo, x); /* NaN passes through (second operand) */
  const __m512 k = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(x, k);
  __m512 p = _mm512_set1_ps(FATTN__EXP2_C7);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FATTN__EXP2_C6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FATTN__EXP2_C5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FATTN__EXP2_C4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FATTN__EXP2_C3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FATTN__EXP2_C2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FATTN__EXP2_C1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FATTN__EXP2_C0));
  return _mm512_maskz_scalef_ps(~under, p, k);
}

#endif

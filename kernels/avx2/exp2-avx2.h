/* Vector 2^x for the AVX2 kernels (static inline: no copy of it can leak into
 * generic code). The softmax works in log2 units, so this is its only
 * transcendental: x = k + r with k = round(x), r = x - k in [-1/2, 1/2]
 * exactly, 2^r by its degree-7 Taylor polynomial in r·ln2 (truncation
 * < 5e-9), then 2^k built in the exponent field.
 *
 * Measured error (tests/test_kernels.c, same sampling as the AVX-512 one): see
 * the figure the test prints; the test asserts <= 2e-7 relative. Below -126 it
 * returns exactly 0 (|error| < FLT_MIN), so softmax never produces a
 * denormal. 2^-inf = 0, 2^NaN = NaN; arguments above 127 are clamped to 127. */
#ifndef FATTN_EXP2_AVX2_H
#define FATTN_EXP2_AVX2_H

#include <immintrin.h>

#include "../exp2-coeffs.h"

static inline __m256 fattn__exp2_avx2(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-126.0f), hi = _mm256_set1_ps(127.0f);
  const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_NLT_UQ); /* x >= -126, or NaN */
  x = _mm256_min_ps(hi, _mm256_max_ps(lo, x));           /* NaN passes through */
  const __m256 k = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 r = _mm256_sub_ps(x, k);
  __m256 p = _mm256_set1_ps(FATTN__EXP2_C7);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FATTN__EXP2_C6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FATTN__EXP2_C5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FATTN__EXP2_C4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FATTN__EXP2_C3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FATTN__EXP2_C2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FATTN__EXP2_C1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FATTN__EXP2_C0));
  /* 2^k for k in [-126, 127]: (k + 127) << 23 in the exponent field. */
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

#endif

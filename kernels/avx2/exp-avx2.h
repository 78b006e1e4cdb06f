/* Vector exp for the AVX2 kernels (static inline: no copy of it can leak into
 * generic code). Cody-Waite reduction x = k·ln2 + r, |r| <= ln2/2, a degree-5
 * polynomial for e^r (Cephes' expf coefficients), then 2^k built in the
 * exponent field.
 *
 * Measured error (tests/test_kernels.c: every 2^-12 in [-87.33, 88.3] plus
 * 2^20 random points, against double exp): max relative error 1.18e-7
 * (0.99 ulp) for x >= ln(FLT_MIN) = -87.3365; the test asserts <= 2e-7.
 * Below ln(FLT_MIN), exp returns exactly 0 (|error| < FLT_MIN), so softmax
 * never produces a denormal. exp(-inf) = 0, exp(NaN) = NaN. Arguments above
 * 88.3 are clamped. */
#ifndef FATTN_EXP_AVX2_H
#define FATTN_EXP_AVX2_H

#include <immintrin.h>

static inline __m256 fattn__exp_avx2(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.33654475f), hi = _mm256_set1_ps(88.3f);
  const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_NLT_UQ); /* x >= lo, or NaN */
  x = _mm256_min_ps(hi, _mm256_max_ps(lo, x));           /* NaN passes through */
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  /* 2^k for k in [-126, 127]: (k + 127) << 23 in the exponent field. */
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

#endif

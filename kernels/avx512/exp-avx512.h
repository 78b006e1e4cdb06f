/* Vector exp for the AVX-512 kernels (static inline: no copy of it can leak
 * into generic code). Cody-Waite reduction x = k·ln2 + r, |r| <= ln2/2, a
 * degree-5 polynomial for e^r (Cephes' expf coefficients), then 2^k by
 * vscalefps.
 *
 * Measured error (tests/test_kernels.c: every 2^-12 in [-87.33, 88.3] plus
 * 2^20 random points, against double exp): max relative error 1.18e-7
 * (0.99 ulp) for x >= ln(FLT_MIN) = -87.3365; the test asserts <= 2e-7.
 * Below ln(FLT_MIN), exp returns exactly 0 (|error| < FLT_MIN): softmax never
 * produces a denormal, so P·V never takes a denormal-operand slow path.
 * exp(-inf) = 0, exp(NaN) = NaN. Arguments above 88.3 are clamped (softmax
 * never passes any above 0). */
#ifndef FATTN_EXP_AVX512_H
#define FATTN_EXP_AVX512_H

#include <immintrin.h>

static inline __m512 fattn__exp_avx512(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.33654475f), hi = _mm512_set1_ps(88.3f);
  const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_min_ps(hi, _mm512_max_ps(lo, x)); /* NaN passes through (second operand) */
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_scalef_ps(~under, p, k);
}

#endif

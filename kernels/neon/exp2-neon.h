/* Vector 2^x for the NEON kernels (static inline). Same method and polynomial
 * as the x86 ones (kernels/exp2-coeffs.h): x = k + r with k = round(x),
 * r = x - k in [-1/2, 1/2] exactly, 2^r by the degree-7 Taylor polynomial in
 * r·ln2, 2^k built in the exponent field. Error: the test in
 * tests/test_kernels.c prints it and asserts <= 2e-7 relative. Below -126 it
 * returns exactly 0 (softmax never produces a denormal). 2^-inf = 0,
 * 2^NaN = NaN; arguments above 127 are clamped to 127. */
#ifndef FATTN_EXP2_NEON_H
#define FATTN_EXP2_NEON_H

#include <arm_neon.h>

#include "../exp2-coeffs.h"

static inline float32x4_t fattn__exp2_neon(float32x4_t x) {
  const float32x4_t lo = vdupq_n_f32(-126.0f), hi = vdupq_n_f32(127.0f);
  /* keep: x >= -126, or NaN (x != x) */
  const uint32x4_t keep = vorrq_u32(vcgeq_f32(x, lo), vmvnq_u32(vceqq_f32(x, x)));
  x = vminq_f32(hi, vmaxq_f32(lo, x)); /* FMIN / FMAX: NaN passes through */
  const float32x4_t k = vrndnq_f32(x);
  const float32x4_t r = vsubq_f32(x, k);
  float32x4_t p = vdupq_n_f32(FATTN__EXP2_C7);
  p = vfmaq_f32(vdupq_n_f32(FATTN__EXP2_C6), p, r);
  p = vfmaq_f32(vdupq_n_f32(FATTN__EXP2_C5), p, r);
  p = vfmaq_f32(vdupq_n_f32(FATTN__EXP2_C4), p, r);
  p = vfmaq_f32(vdupq_n_f32(FATTN__EXP2_C3), p, r);
  p = vfmaq_f32(vdupq_n_f32(FATTN__EXP2_C2), p, r);
  p = vfmaq_f32(vdupq_n_f32(FATTN__EXP2_C1), p, r);
  p = vfmaq_f32(vdupq_n_f32(FATTN__EXP2_C0), p, r);
  /* 2^k for k in [-126, 127]: (k + 127) << 23 (a NaN lane converts to 0; its
   * p is NaN, so the product stays NaN) */
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(k), vdupq_n_s32(127)), 23);
  const float32x4_t y = vmulq_f32(p, vreinterpretq_f32_s32(e));
  return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(y), keep));
}

#endif

/* Portable, exact conversions between f32 and the two half formats (bf16 and
 * IEEE binary16). Half -> f32 is exact; f32 -> half rounds to nearest, ties
 * to even, with overflow to infinity and NaN kept NaN. Used by the framework
 * (reference, driver edges) and by the kernels' scalar tails. */
#ifndef FATTN_HALF_H
#define FATTN_HALF_H

#include <stdint.h>
#include <string.h>

static inline float fattn__bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint32_t fattn__f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static inline float fattn__bf16_to_f32(uint16_t h) { return fattn__bits_f32((uint32_t)h << 16); }

static inline float fattn__f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0x1f) return fattn__bits_f32(sign | 0x7f800000u | (m << 13)); /* inf, NaN */
  if (e != 0) return fattn__bits_f32(sign | ((e + 112) << 23) | (m << 13));
  /* zero or subnormal: m · 2^-24, exact in f32 */
  const float x = (float)m * 5.9604644775390625e-8f;
  return sign ? -x : x;
}

static inline uint16_t fattn__f32_to_bf16(float f) {
  const uint32_t u = fattn__f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static inline uint16_t fattn__f32_to_f16(float f) {
  const uint32_t u = fattn__f32_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ff)); /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: rounds to inf */
  if (a < 0x38800000u) {                        /* below 2^-14: subnormal half, m · 2^-24 */
    if (a < 0x33000000u) return (uint16_t)sign; /* below 2^-25: rounds to 0 */
    const uint32_t e = a >> 23, mant = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e; /* 14..24: value = mant · 2^(e - 150) */
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return (uint16_t)(sign | q);
  }
  /* normal: rebias the exponent (127 -> 15), round 13 mantissa bits away */
  const uint32_t r = a - 0x38000000u;
  const uint32_t q = (r + 0xfffu + ((r >> 13) & 1)) >> 13;
  return (uint16_t)(sign | q);
}

/* FP8 (OCP 8-bit floats) to f32, exact. E5M2 is the top byte of an F16;
 * E4M3 ("fn") has no infinities: S.1111.111 is NaN, the largest is 448. */
static inline float fattn__e5m2_to_f32(uint8_t b) { return fattn__f16_to_f32((uint16_t)(b << 8)); }

static inline float fattn__e4m3_to_f32(uint8_t b) {
  const uint32_t sign = (uint32_t)(b & 0x80u) << 24, e = (b >> 3) & 0xf, m = b & 7;
  if (e == 0xf && m == 7) return fattn__bits_f32(sign | 0x7fc00000u); /* NaN */
  if (e != 0) return fattn__bits_f32(sign | ((e + 120) << 23) | (m << 20));
  const float x = (float)m * 0.001953125f; /* subnormal: m · 2^-9 */
  return sign ? -x : x;
}

#endif

/* Element access through validated views (offsets cannot overflow: validate.c
 * checked the extent of every tensor). Portable helpers for lib/ only. */
#ifndef FATTN_ACCESS_H
#define FATTN_ACCESS_H

#include <math.h>
#include <stdint.h>

#include "half.h"
#include "internal.h"

/* Address of element (a, b, c, d) of any dtype. */
static inline const void *fattn__eptr(const fattn__view *v, int64_t a, int64_t b, int64_t c,
                                      int64_t d) {
  return v->base + v->es * (a * v->s[0] + b * v->s[1] + c * v->s[2] + d * v->s[3]);
}

/* The same for an F32 view. */
static inline const float *fattn__ptr(const fattn__view *v, int64_t a, int64_t b, int64_t c,
                                      int64_t d) {
  return (const float *)fattn__eptr(v, a, b, c, d);
}

/* Element `i` (in elements) from `p`, of dtype `dt` (F32, F16 or BF16), as f32: exact. */
static inline float fattn__load(const void *p, int64_t i, fattn_dtype dt) {
  if (dt == FATTN_F32) return ((const float *)p)[i];
  const uint16_t h = ((const uint16_t *)p)[i];
  return dt == FATTN_BF16 ? fattn__bf16_to_f32(h) : fattn__f16_to_f32(h);
}

/* Stores f32 `x` as element `i` of dtype `dt`, rounding to nearest even. */
static inline void fattn__store(void *p, int64_t i, fattn_dtype dt, float x) {
  if (dt == FATTN_F32)
    ((float *)p)[i] = x;
  else
    ((uint16_t *)p)[i] = dt == FATTN_BF16 ? fattn__f32_to_bf16(x) : fattn__f32_to_f16(x);
}

static inline float fattn__at(const fattn__view *v, int64_t a, int64_t b, int64_t c, int64_t d) {
  return fattn__load(fattn__eptr(v, a, b, c, d), 0, v->dtype);
}

/* Element offset of mask[b, h, i, 0]; entries of the row are j·mask.s[3] further. */
static inline int64_t fattn__mask_row(const fattn__problem *pb, int64_t b, int64_t h, int64_t i) {
  return b * pb->mask.s[0] + h * pb->mask.s[1] + i * pb->mask.s[2];
}

/* The additive value of the mask at (b, h, i, j): F32 as given, U8 0 -> -inf. */
static inline double fattn__mask_at(const fattn__problem *pb, int64_t b, int64_t h, int64_t i,
                                    int64_t j) {
  const int64_t off = fattn__mask_row(pb, b, h, i) + j * pb->mask.s[3];
  if (pb->mask_dtype == FATTN_U8) return ((const uint8_t *)pb->mask.base)[off] ? 0.0 : -INFINITY;
  return (double)((const float *)pb->mask.base)[off];
}

/* out[b, h, i, 0] (F32 out only: see fattn__out_erow for any dtype). */
static inline float *fattn__out_row(const fattn__problem *pb, int64_t b, int64_t h, int64_t i) {
  return (float *)fattn__ptr(&pb->out, b, h, i, 0);
}

static inline void *fattn__out_erow(const fattn__problem *pb, int64_t b, int64_t h, int64_t i) {
  return (void *)fattn__eptr(&pb->out, b, h, i, 0);
}

static inline float *fattn__lse_at(const fattn__problem *pb, int64_t b, int64_t h, int64_t i) {
  return (float *)fattn__ptr(&pb->lse, b, h, i, 0);
}

#endif /* FATTN_ACCESS_H */

/* Element access through validated views (offsets cannot overflow: validate.c
 * checked the extent of every tensor). Portable helpers for lib/ only. */
#ifndef FATTN_ACCESS_H
#define FATTN_ACCESS_H

#include <math.h>
#include <stdint.h>

#include "internal.h"

static inline const float *fattn__ptr(const fattn__view *v, int64_t a, int64_t b, int64_t c,
                                      int64_t d) {
  return (const float *)(v->base + 4 * (a * v->s[0] + b * v->s[1] + c * v->s[2] + d * v->s[3]));
}

static inline float fattn__at(const fattn__view *v, int64_t a, int64_t b, int64_t c, int64_t d) {
  return *fattn__ptr(v, a, b, c, d);
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

static inline float *fattn__out_row(const fattn__problem *pb, int64_t b, int64_t h, int64_t i) {
  return (float *)fattn__ptr(&pb->out, b, h, i, 0);
}

static inline float *fattn__lse_at(const fattn__problem *pb, int64_t b, int64_t h, int64_t i) {
  return (float *)fattn__ptr(&pb->lse, b, h, i, 0);
}

#endif /* FATTN_ACCESS_H */

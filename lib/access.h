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
  if (dt == FATTN_I8) return (float)((const int8_t *)p)[i]; /* unscaled: see fattn__kv_at */
  if (dt == FATTN_F8_E4M3) return fattn__e4m3_to_f32(((const uint8_t *)p)[i]);
  if (dt == FATTN_F8_E5M2) return fattn__e5m2_to_f32(((const uint8_t *)p)[i]);
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

/* Row of key j of sequence b, kv head hk, in K (v = 0) or V (v = 1): its
 * first element, and in *scale the dequantisation scale (1 unless I8 / F8). */
static inline const void *fattn__kv_row(const fattn__problem *pb, int v, int64_t b, int64_t hk,
                                        int64_t j, float *scale) {
  const fattn__view *vw = v ? &pb->v : &pb->k;
  int64_t d0, d2, run;
  fattn__k_index(pb, b, j, &d0, &d2, &run);
  if (scale) {
    *scale = 1.0f;
    if (v ? pb->v_scaled : pb->k_scaled)
      *scale = *fattn__ptr(v ? &pb->v_scale : &pb->k_scale, d0, hk, d2, 0);
  }
  return fattn__eptr(vw, d0, hk, d2, 0);
}

/* Element p of that row as f32, dequantised. */
static inline float fattn__kv_at(const fattn__problem *pb, int v, int64_t b, int64_t hk, int64_t j,
                                 int64_t p) {
  float sc;
  const void *row = fattn__kv_row(pb, v, b, hk, j, &sc);
  const fattn__view *vw = v ? &pb->v : &pb->k;
  return fattn__load(row, p * vw->s[3], vw->dtype) * sc;
}

/* Row i of sequence b, head h of q / out / lse. */
static inline const void *fattn__q_row(const fattn__problem *pb, int64_t b, int64_t h, int64_t i) {
  int64_t d0, d2;
  fattn__q_index(pb, b, i, &d0, &d2);
  return fattn__eptr(&pb->q, d0, h, d2, 0);
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
  int64_t d0, d2;
  fattn__q_index(pb, b, i, &d0, &d2);
  return (float *)fattn__ptr(&pb->out, d0, h, d2, 0);
}

static inline void *fattn__out_erow(const fattn__problem *pb, int64_t b, int64_t h, int64_t i) {
  int64_t d0, d2;
  fattn__q_index(pb, b, i, &d0, &d2);
  return (void *)fattn__eptr(&pb->out, d0, h, d2, 0);
}

static inline float *fattn__lse_at(const fattn__problem *pb, int64_t b, int64_t h, int64_t i) {
  int64_t d0, d2;
  fattn__q_index(pb, b, i, &d0, &d2);
  return (float *)fattn__ptr(&pb->lse, d0, h, d2, 0);
}

/* The score modifiers in natural units, on a scaled score x of row i (head h,
 * sequence b), key j: softcap, then ALiBi. */
static inline double fattn__modify_score(const fattn__problem *pb, int64_t b, int64_t h, int64_t i,
                                         int64_t j, double x) {
  if (pb->softcap != 0.0f) x = (double)pb->softcap * tanh(x / (double)pb->softcap);
  if (pb->alibi) {
    const int64_t dist = i + fattn__diag(pb, b) - j;
    x -= (double)pb->alibi[h] * (double)(dist < 0 ? -dist : dist);
  }
  return x;
}

#endif /* FATTN_ACCESS_H */

/* A portable C model of the matrix engine's tile operations (Intel AMX's
 * TILELOADD, TILESTORED, TILEZERO, TDPBF16PS), so the tile kernels of
 * kernels/bf16-tile-template.h run, and are tested, on every CPU: CI machines
 * without AMX and aarch64 under qemu. Compiled with no ISA flags.
 *
 * Eight registers of 16 rows × 64 bytes per thread. TDPBF16PS as Intel
 * defines it: for each row m, column j and pair t in order, c += a0·b0 then
 * c += a1·b1 in f32 (each bf16 product is exact in f32), with denormal
 * inputs read as zero and denormal results flushed to zero, as fattn's
 * kernels run anyway. The real engine's bits may differ in the last place;
 * tests compare both against a double-precision reference, not each other. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "half.h"
#include "kernel.h"

typedef struct ft_reg {
  unsigned char b[16][64];
} ft_reg;

static _Thread_local ft_reg ft_t[8];
static _Thread_local int ft_configured;

/* A tile instruction before LDTILECFG faults on the real engine (#UD): the
 * model traps too, so a kernel that forgets its configuration fails here. */
static void ft_need_config(void) {
  if (!ft_configured) __builtin_trap();
}

static void ft_config(void) { ft_configured = 1; }

static void ft_zero(int t) {
  ft_need_config();
  memset(&ft_t[t], 0, sizeof ft_t[t]);
}

static void ft_load(int t, const void *p, int64_t stride) {
  ft_need_config();
  for (int r = 0; r < 16; r++)
    memcpy(ft_t[t].b[r], (const unsigned char *)p + r * stride, 64);
}

static void ft_store(int t, void *p, int64_t stride) {
  ft_need_config();
  for (int r = 0; r < 16; r++)
    memcpy((unsigned char *)p + r * stride, ft_t[t].b[r], 64);
}

static float ft_daz(float x) { return fpclassify(x) == FP_SUBNORMAL ? copysignf(0.0f, x) : x; }

static float ft_bf16(const unsigned char *row, int i) {
  uint16_t h;
  memcpy(&h, row + 2 * i, 2);
  return ft_daz(fattn__bf16_to_f32(h));
}

static void ft_dp(int c, int a, int b) {
  ft_need_config();
  for (int m = 0; m < 16; m++)
    for (int j = 0; j < 16; j++) {
      float acc;
      memcpy(&acc, ft_t[c].b[m] + 4 * j, 4);
      for (int t = 0; t < 16; t++) {
        acc = ft_daz(acc + ft_bf16(ft_t[a].b[m], 2 * t) * ft_bf16(ft_t[b].b[t], 2 * j));
        acc = ft_daz(acc + ft_bf16(ft_t[a].b[m], 2 * t + 1) * ft_bf16(ft_t[b].b[t], 2 * j + 1));
      }
      memcpy(ft_t[c].b[m] + 4 * j, &acc, 4);
    }
}

static void ft_release(void) {
  memset(ft_t, 0, sizeof ft_t);
  ft_configured = 0;
}

#define FT_SUFFIX model
#define FT_NAME fattn__tile_model
#define FT_STR "model"
#define FT_CONFIG() ft_config()
#define FT_ZERO(t) ft_zero(t)
#define FT_LOAD(t, p, stride) ft_load(t, p, stride)
#define FT_STORE(t, p, stride) ft_store(t, p, stride)
#define FT_DP(c, a, b) ft_dp(c, a, b)
#define FT_RELEASE() ft_release()

#include "bf16-tile-template.h"

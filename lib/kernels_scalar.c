/* The portable kernel table: plain C, compiled with no ISA flags, the fallback
 * on any CPU and the model the SIMD tables follow. Loops are written so that
 * the compiler can vectorise them with the baseline ISA (SSE2 on x86-64). */
#include <math.h>

#include "kernel.h"

#define SCALAR_MR 4
#define SCALAR_NR 8

static void pack_k_scalar(int64_t n, int64_t d, const float *k, int64_t ldk, int64_t sk,
                          float *panel) {
  for (int64_t j0 = 0; j0 < n; j0 += SCALAR_NR) {
    float *slab = panel + j0 * d;
    const int64_t nn = n - j0 < SCALAR_NR ? n - j0 : SCALAR_NR;
    for (int64_t p = 0; p < d; p++) {
      for (int64_t jj = 0; jj < nn; jj++)
        slab[p * SCALAR_NR + jj] = k[(j0 + jj) * ldk + p * sk];
      for (int64_t jj = nn; jj < SCALAR_NR; jj++)
        slab[p * SCALAR_NR + jj] = 0.0f;
    }
  }
}

static void qk_scalar(int64_t m, int64_t n, int64_t d, const float *q, const float *panel, float *s,
                      int64_t lds) {
  for (int64_t j0 = 0; j0 < n; j0 += SCALAR_NR) {
    const float *slab = panel + j0 * d;
    const int64_t nn = n - j0 < SCALAR_NR ? n - j0 : SCALAR_NR;
    for (int64_t r = 0; r < m; r++) {
      float acc[SCALAR_NR] = {0};
      const float *qr = q + r * d;
      for (int64_t p = 0; p < d; p++)
        for (int jj = 0; jj < SCALAR_NR; jj++)
          acc[jj] += qr[p] * slab[p * SCALAR_NR + jj];
      for (int64_t jj = 0; jj < nn; jj++)
        s[r * lds + j0 + jj] = acc[jj];
    }
  }
}

static void softmax_scalar(int64_t m, int64_t n, float *s, int64_t lds, float *mrow, float *lrow,
                           float *alpha) {
  for (int64_t r = 0; r < m; r++) {
    float *sr = s + r * lds;
    float mx = mrow[r];
    for (int64_t j = 0; j < n; j++)
      mx = sr[j] > mx ? sr[j] : mx;
    if (mx == -INFINITY) { /* nothing to attend yet */
      for (int64_t j = 0; j < n; j++)
        sr[j] = 0.0f;
      alpha[r] = 1.0f;
      continue;
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
      sr[j] = expf(sr[j] - mx);
      sum += sr[j];
    }
    alpha[r] = expf(mrow[r] - mx); /* exp(-inf) = 0 on the first block */
    lrow[r] = alpha[r] * lrow[r] + sum;
    mrow[r] = mx;
  }
}

static void pv_scalar(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp, const float *v,
                      int64_t ldv, const float *alpha, float *o, int64_t ldo) {
  for (int64_t r = 0; r < m; r++) {
    float *orow = o + r * ldo;
    const float a = alpha[r];
    if (a != 1.0f)
      for (int64_t c = 0; c < dv; c++)
        orow[c] *= a;
    const float *pr = p + r * ldp;
    for (int64_t j = 0; j < n; j++) {
      const float w = pr[j];
      const float *vr = v + j * ldv;
      for (int64_t c = 0; c < dv; c++)
        orow[c] += w * vr[c];
    }
  }
}

const fattn__kernel_table fattn__table_scalar = {
    .name = "scalar",
    .backend = FATTN_BACKEND_SCALAR,
    .mr = SCALAR_MR,
    .nr = SCALAR_NR,
    .pack_k = pack_k_scalar,
    .qk = qk_scalar,
    .softmax = softmax_scalar,
    .pv = pv_scalar,
};

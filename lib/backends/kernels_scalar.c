/* The portable kernel table: plain C, compiled with no ISA flags, the fallback
 * on any CPU and the model the SIMD tables follow (contract: kernel.h). The
 * innermost loops run over rows, contiguous in every operand, so the compiler
 * vectorises them with the baseline ISA (SSE2 on x86-64). */
#include <math.h>

#include "half.h"
#include "kernel.h"

#define SCALAR_RW 4

static void qk_scalar(int64_t rows, int64_t n, int64_t d, const float *qt, const float *k,
                      int64_t ldk, int64_t sk, float *st, int64_t lds) {
  for (int64_t j = 0; j < n; j++) {
    float *s = st + j * lds;
    const float *kj = k + j * ldk;
    for (int64_t r = 0; r < rows; r++)
      s[r] = 0.0f;
    for (int64_t p = 0; p < d; p++) {
      const float kv = kj[p * sk];
      const float *q = qt + p * rows;
      for (int64_t r = 0; r < rows; r++)
        s[r] += q[r] * kv;
    }
  }
}

static void softmax_scalar(int64_t rows, int64_t n, float *st, int64_t lds, float *m, float *l,
                           float *alpha) {
  for (int64_t r = 0; r < rows; r++)
    alpha[r] = m[r]; /* alpha holds m_new for now */
  for (int64_t j = 0; j < n; j++)
    for (int64_t r = 0; r < rows; r++)
      alpha[r] = st[j * lds + r] > alpha[r] ? st[j * lds + r] : alpha[r];
  for (int64_t r = 0; r < rows; r++) {
    const float mnew = alpha[r];
    alpha[r] = mnew == -INFINITY ? 1.0f : exp2f(m[r] - mnew); /* 2^-inf = 0 at the start */
    l[r] *= alpha[r];
    m[r] = mnew;
  }
  for (int64_t j = 0; j < n; j++)
    for (int64_t r = 0; r < rows; r++) {
      const float base = m[r] == -INFINITY ? 0.0f : m[r]; /* empty row: P = 2^-inf = 0 */
      const float p = exp2f(st[j * lds + r] - base);
      st[j * lds + r] = p;
      l[r] += p;
    }
}

/* The same step on row-major S (row r's keys at s + r·lds): each row is a
 * one-row St with unit stride. The tile family's units use it (this table has
 * no row-major decode kernels: small_rows is 0). */
static void softmax_rows_scalar(int64_t m, int64_t n, float *s, int64_t lds, float *mrow,
                                float *lrow, float *alpha) {
  for (int64_t r = 0; r < m; r++)
    softmax_scalar(1, n, s + r * lds, 1, mrow + r, lrow + r, alpha + r);
}

static void pv_scalar(int64_t rows, int64_t n, int64_t dv, const float *pt, int64_t lds,
                      const float *v, int64_t ldv, int64_t sv, const float *alpha, float *ot,
                      int64_t ldo) {
  int moved = 0;
  for (int64_t r = 0; r < rows; r++)
    moved |= alpha[r] != 1.0f;
  if (moved)
    for (int64_t c = 0; c < dv; c++)
      for (int64_t r = 0; r < rows; r++)
        ot[c * ldo + r] *= alpha[r];
  for (int64_t j = 0; j < n; j++) {
    const float *p = pt + j * lds;
    for (int64_t c = 0; c < dv; c++) {
      const float vv = v[j * ldv + c * sv];
      float *o = ot + c * ldo;
      for (int64_t r = 0; r < rows; r++)
        o[r] += vv * p[r];
    }
  }
}

static void pack_q_scalar(int64_t m, int64_t d, const float *src, int64_t lds, float scale,
                          float *qt, int64_t ldq) {
  for (int64_t r = 0; r < m; r++)
    for (int64_t p = 0; p < d; p++)
      qt[p * ldq + r] = scale * src[r * lds + p];
}

static void store_o_scalar(int64_t m, int64_t dv, const float *ot, int64_t ldo, const float *inv,
                           float *dst, int64_t ldd) {
  for (int64_t r = 0; r < m; r++)
    for (int64_t c = 0; c < dv; c++)
      dst[r * ldd + c] = ot[c * ldo + r] * inv[r];
}

static void cvt_rows_scalar(int64_t n, int64_t d, const void *src, int64_t lds, fattn_dtype dt,
                            float *dst, int64_t ldd) {
  const uint16_t *h = src;
  for (int64_t j = 0; j < n; j++)
    for (int64_t p = 0; p < d; p++)
      dst[j * ldd + p] =
          dt == FATTN_BF16 ? fattn__bf16_to_f32(h[j * lds + p]) : fattn__f16_to_f32(h[j * lds + p]);
}

static void cvt_from_f32_scalar(int64_t n, int64_t d, const float *src, int64_t lds, fattn_dtype dt,
                                void *dst, int64_t ldd) {
  uint16_t *h = dst;
  for (int64_t j = 0; j < n; j++)
    for (int64_t p = 0; p < d; p++)
      h[j * ldd + p] = dt == FATTN_BF16 ? fattn__f32_to_bf16(src[j * lds + p])
                                        : fattn__f32_to_f16(src[j * lds + p]);
}

static void bw_ds_scalar(int64_t rows, int64_t n, float *st, float *dp, int64_t lds,
                         const float *lse2, const float *drow) {
  for (int64_t j = 0; j < n; j++)
    for (int64_t r = 0; r < rows; r++) {
      const float p = exp2f(st[j * lds + r] - lse2[r]);
      st[j * lds + r] = p;
      dp[j * lds + r] = p * (dp[j * lds + r] - drow[r]);
    }
}

static void exp2_scalar(int64_t n, const float *x, float *y) {
  for (int64_t i = 0; i < n; i++)
    y[i] = exp2f(x[i]);
}

const fattn__kernel_table fattn__table_scalar = {
    .name = "scalar",
    .backend = FATTN_BACKEND_SCALAR,
    .rw = SCALAR_RW,
    .mr = SCALAR_RW,
    .nr = 1,
    .qk = qk_scalar,
    .softmax = softmax_scalar,
    .softmax_rows = softmax_rows_scalar,
    .pv = pv_scalar,
    .pack_q = pack_q_scalar,
    .store_o = store_o_scalar,
    .cvt_rows = cvt_rows_scalar,
    .cvt_from_f32 = cvt_from_f32_scalar,
    .exp2 = exp2_scalar,
    .bw_ds = bw_ds_scalar,
};

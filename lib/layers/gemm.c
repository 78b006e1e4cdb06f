/* The layers' linear projections, Y = X·Wᵀ + bias, on the fused kernel
 * tables: X·Wᵀ has the shape of Q·Kᵀ, so a block of X's rows is packed like
 * Qt (pack_q, scale 1), W's rows are read in place like K (qk broadcasts them),
 * and the key-major tile St is exactly O transposed, which store_o writes back
 * row major (with 1 / l = 1). So every ISA's GEMM is its attention kernels,
 * and a new table brings its GEMM with it.
 *
 * Work items are (block of table->mr rows, chunk of columns), in parallel
 * over the context's threads; each packs its rows once and keeps them in L2
 * (K·mr floats) while W streams by. Chunks are as wide as the thread count
 * allows (all N when there are 4 row blocks per thread): the packing is then
 * done once per row block. Measured on BERT's QKV projection (2048 × 2304 ×
 * 768, 1 thread): 192-column chunks 206 GFLOP/s, 576 213, all 2304 221.
 * When columns must be split (fewer than 4 row blocks per thread: short
 * inputs), the row blocks are packed once into a shared Qt first. */
#include <string.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "internal.h"

#define GEMM__NB 48 /* columns per qk call: St is NB × rows */
#define GEMM__KP 64 /* reduction rows per packing task when Qt is shared */

static int gemm_threads(const fattn_context *c) {
#if defined(_OPENMP)
  if (omp_in_parallel()) return 1;
#endif
  return c->num_threads;
}

/* Rows k0 .. k1 of the Qt of A's rows [r0, r0 + mb) (fewer at the end),
 * padding rows zero. A stored transposed (x_t) is already Qt's layout: a
 * copy of row segments. */
static void pack_rows(const fattn__kernel_table *t, int64_t M, int64_t k0, int64_t k1,
                      const float *X, int64_t ldx, int x_t, int64_t r0, float *qt) {
  const int64_t m = M - r0 < t->mr ? M - r0 : t->mr, rp = fattn__round_up(m, t->rw);
  if (x_t)
    for (int64_t p = k0; p < k1; p++)
      memcpy(qt + p * rp, X + p * ldx + r0, (size_t)m * sizeof(float));
  else
    t->pack_q(m, k1 - k0, X + r0 * ldx + k0, ldx, 1.0f, qt + k0 * rp, rp);
  for (int64_t p = k0; p < k1; p++)
    for (int64_t r = m; r < rp; r++)
      qt[p * rp + r] = 0.0f;
}

/* How a GEMM of this shape is cut on this context: the work items and the
 * workspace they need. */
typedef struct {
  int64_t mb, nrb, ncb, chunk, items, qtb, per, sharedb;
  int shared, nth;
} gemm_layout;

static gemm_layout gemm_plan(const fattn_context *c, int64_t M, int64_t N, int64_t K) {
  gemm_layout g;
  g.mb = c->table->mr;
  g.nrb = (M + g.mb - 1) / g.mb;
  const int64_t nnb = (N + GEMM__NB - 1) / GEMM__NB;
  g.nth = gemm_threads(c);
  /* column chunks: enough for 4 items per thread, whole NB blocks */
  g.ncb = (4 * (int64_t)g.nth + g.nrb - 1) / g.nrb;
  if (g.ncb > nnb) g.ncb = nnb;
  g.chunk = (nnb + g.ncb - 1) / g.ncb * GEMM__NB;
  g.ncb = (N + g.chunk - 1) / g.chunk;
  /* Columns split (few row blocks): every row block is packed once, up front,
   * into a shared Qt, instead of once per item. Else each item packs its own. */
  g.shared = g.ncb > 1;
  g.qtb = fattn__ws_piece_bytes(K * g.mb);
  /* per thread: Qt (K × mb; not when shared), St (NB × mb), ones (mb), and
   * the tile in rows (mb × NB) that an accumulating form adds to Y */
  g.per = (g.shared ? 0 : g.qtb) + 2 * fattn__ws_piece_bytes(GEMM__NB * g.mb) +
          fattn__ws_piece_bytes(g.mb);
  g.items = g.nrb * g.ncb;
  g.sharedb = g.shared ? g.nrb * g.qtb : 0;
  if (g.items < g.nth) g.nth = (int)g.items;
  return g;
}

int64_t fattn__gemm_workspace_bytes(const fattn_context *c, int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || N <= 0) return 0;
  const gemm_layout g = gemm_plan(c, M, N, K);
  return g.sharedb + g.per * g.nth;
}

fattn_status fattn__gemm(fattn_context *c, int64_t M, int64_t N, int64_t K, const float *X,
                         int64_t ldx, const float *W, int64_t ldw, const float *bias, float *Y,
                         int64_t ldy) {
  return fattn__gemm_ws(c, M, N, K, X, ldx, W, ldw, bias, Y, ldy, NULL);
}

fattn_status fattn__gemm_ws(fattn_context *c, int64_t M, int64_t N, int64_t K, const float *X,
                            int64_t ldx, const float *W, int64_t ldw, const float *bias, float *Y,
                            int64_t ldy, void *ws) {
  const fattn__gemm_form plain = {0, 0, 0};
  return fattn__gemm_ex(c, M, N, K, X, ldx, W, ldw, bias, Y, ldy, plain, ws);
}

fattn_status fattn__gemm_ex(fattn_context *c, int64_t M, int64_t N, int64_t K, const float *X,
                            int64_t ldx, const float *W, int64_t ldw, const float *bias, float *Y,
                            int64_t ldy, fattn__gemm_form form, void *ws) {
  if (M <= 0 || N <= 0) return FATTN_SUCCESS;
  /* B's rows as qk reads K: row j at W + j·bstep, its elements sk apart */
  const int64_t bstep = form.w_t ? 1 : ldw, sk = form.w_t ? ldw : 1;
  const fattn__kernel_table *t = c->table;
  const gemm_layout g = gemm_plan(c, M, N, K);
  const int64_t mb = g.mb, nrb = g.nrb, ncb = g.ncb, chunk = g.chunk, items = g.items;
  const int64_t qtb = g.qtb, per = g.per, sharedb = g.sharedb;
  const int shared = g.shared, nth = g.nth;
  int slot = -1;
  void *mem = ws;
  if (!ws) {
    fattn_status st = fattn__workspace_acquire(c, (size_t)(sharedb + per * nth), &slot, &mem);
    if (st != FATTN_SUCCESS) return st;
  }
#pragma omp parallel num_threads(nth) if (nth > 1)
  {
    int tid = 0;
#if defined(_OPENMP)
    tid = omp_get_thread_num();
#endif
    const unsigned fp = fattn__fp_enter();
    char *base = (char *)mem + sharedb + (int64_t)tid * per;
    float *own = (float *)base;
    float *s = (float *)(base + (shared ? 0 : qtb));
    float *ones = (float *)((char *)s + fattn__ws_piece_bytes(GEMM__NB * mb));
    float *rows = (float *)((char *)ones + fattn__ws_piece_bytes(mb));
    for (int64_t r = 0; r < mb; r++)
      ones[r] = 1.0f;
    if (shared) { /* slices of GEMM__KP along K, so that every thread packs */
      const int64_t nks = (K + GEMM__KP - 1) / GEMM__KP;
#pragma omp for schedule(static)
      for (int64_t x = 0; x < nrb * nks; x++) {
        const int64_t k0 = x % nks * GEMM__KP, k1 = k0 + GEMM__KP < K ? k0 + GEMM__KP : K;
        pack_rows(t, M, k0, k1, X, ldx, form.x_t, x / nks * mb,
                  (float *)((char *)mem + x / nks * qtb));
      }
    } /* (the loop's barrier: every block packed before any is read) */
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; it++) {
      const int64_t r0 = it / ncb * mb, c0 = it % ncb * chunk;
      const int64_t m = M - r0 < mb ? M - r0 : mb, rp = fattn__round_up(m, t->rw);
      const int64_t cend = N - c0 < chunk ? N : c0 + chunk;
      float *qt = shared ? (float *)((char *)mem + it / ncb * qtb) : own;
      if (!shared) pack_rows(t, M, 0, K, X, ldx, form.x_t, r0, qt);
      for (int64_t j0 = c0; j0 < cend; j0 += GEMM__NB) {
        const int64_t n = cend - j0 < GEMM__NB ? cend - j0 : GEMM__NB;
        t->qk(rp, n, K, qt, W + j0 * bstep, bstep, sk, s, rp);
        float *y = Y + r0 * ldy + j0;
        if (form.acc) {
          t->store_o(m, n, s, rp, ones, rows, GEMM__NB);
          for (int64_t r = 0; r < m; r++)
            for (int64_t j = 0; j < n; j++)
              y[r * ldy + j] += rows[r * GEMM__NB + j];
        } else {
          t->store_o(m, n, s, rp, ones, y, ldy);
        }
        if (bias)
          for (int64_t r = 0; r < m; r++)
            for (int64_t j = 0; j < n; j++)
              y[r * ldy + j] += bias[j0 + j];
      }
    }
    fattn__fp_leave(fp);
  }
  if (!ws) fattn__workspace_done(c, slot, mem);
  return FATTN_SUCCESS;
}

void fattn__col_sums(int64_t rows, int64_t n, const float *x, int64_t ld, float *dst, int acc) {
  for (int64_t j = 0; j < n; j++) {
    double s = 0;
    for (int64_t r = 0; r < rows; r++)
      s += x[r * ld + j];
    dst[j] = (float)(acc ? dst[j] + s : s);
  }
}

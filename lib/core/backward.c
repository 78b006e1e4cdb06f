/* The backward pass of fused attention (fattn_sdpa_backward): FlashAttention-2's
 * recomputation on one kernel table's micro-kernels, no Lq×Lk buffer.
 *
 * A work item is (sequence b, kv head hk), one thread's from start to end, so
 * the bits do not depend on the thread count and dK, dV need no atomics. Its
 * rows are, as in the forward, the G query heads of the group × a block of
 * positions; per query block and key block (all in log2 units as the
 * forward's St, with lse2 = lse · log2 e):
 *
 *   St  = qk(Qt, K)                  scores, masked like the forward (mask_tile)
 *   P   = 2^(St - lse2)              the forward's softmax, recomputed
 *   dPt = qk(dOt, V)                 dP = dO · Vᵀ (dOt packed like Qt, unscaled)
 *   dS  = P ∘ (dP - Drow)            Drow = rowsum(dO ∘ O), once per block
 *                                     (softcap: times 1 - tanh² of the raw score)
 *   dQt += pv(dS, K)                 over the key blocks, stored once per query block
 *   dVt[:, keys] += pv(Pᵀ, dO)       per head: rows = keys, contraction over
 *   dKt[:, keys] += pv(dSᵀ, Q)       the head's query rows (Pᵀ, dSᵀ transposed tiles)
 *
 * five matrix products per tile, the forward's two plus three; dQ = scale·dQt,
 * dK = scale·dKt (the scores were scale·q·k), dV = dVt. dKt and dVt hold one
 * kv head's keys (Lk · (D + Dv) floats per thread) and are written once at
 * the end of the item; half K and V are converted once per item into f32
 * copies of the same size. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "access.h"
#include "internal.h"

#define BW_LOG2E 1.44269504088896341f

typedef struct bw_plan {
  int64_t bm, bn, rp,
      lkp; /* positions per block, keys per block (a multiple of rw), padded rows, Lk */
  int64_t per_thread_bytes;
  int nthreads;
  fattn_pin_policy pin;
  /* the BF16 dot-product companion for S = Q·Kᵀ (the forward's rule, so S
   * has the forward's bits) and for dP = dO·Vᵀ (BF16 dO and V); NULL: f32 */
  const fattn__bf16_dot_table *dot_s, *dot_dp;
} bw_plan;

typedef struct bw_ws {
  float *qt, *dot, *qr, *dor, *st, *dp, *sf, *pT, *dsT, *dqt, *drow, *lse2, *ones, *scl;
  float *kc, *vc, *stage, *dkt, *dvt;
} bw_ws;

/* One thread's pieces, in this order (bw_bytes sizes them the same way). */
static int64_t bw_layout(const fattn__problem *pb, const bw_plan *pl, char *base, bw_ws *w) {
  const int64_t D = pb->D, Dv = pb->Dv, rp = pl->rp, bn = pl->bn;
  const int64_t rows = pb->G * pl->bm, dmax = D > Dv ? D : Dv;
  char *p = base;
  bw_ws x;
  x.qt = fattn__ws_carve(&p, D * rp);
  x.dot = fattn__ws_carve(&p, Dv * rp);
  x.qr = fattn__ws_carve(&p, rows * D);
  x.dor = fattn__ws_carve(&p, rows * Dv);
  x.st = fattn__ws_carve(&p, bn * rp);
  x.dp = fattn__ws_carve(&p, bn * rp);
  x.sf = fattn__ws_carve(&p, pb->softcap != 0.0f ? bn * rp : 0);
  x.pT = fattn__ws_carve(&p, rp * bn);
  x.dsT = fattn__ws_carve(&p, rp * bn);
  x.dqt = fattn__ws_carve(&p, D * rp);
  x.drow = fattn__ws_carve(&p, rp);
  x.lse2 = fattn__ws_carve(&p, rp);
  x.ones = fattn__ws_carve(&p, rp > bn ? rp : bn);
  x.scl = fattn__ws_carve(&p, rp > bn ? rp : bn);
  x.kc = fattn__ws_carve(&p, pb->k.dtype != FATTN_F32 ? pb->Lk * D : 0);
  x.vc = fattn__ws_carve(&p, pb->v.dtype != FATTN_F32 && !pl->dot_dp ? pb->Lk * Dv : 0);
  x.stage = fattn__ws_carve(&p, bn * dmax > pl->bm * dmax ? bn * dmax : pl->bm * dmax);
  x.dkt = fattn__ws_carve(&p, D * pl->lkp);
  x.dvt = fattn__ws_carve(&p, Dv * pl->lkp);
  if (w) *w = x;
  return (int64_t)(p - base);
}

/* m rows of a [.., rows, d] tensor row r0.. (head h or kv head, sequence b)
 * as contiguous f32 rows into dst (ld d). */
static void load_rows(const fattn__kernel_table *t, const fattn__view *vw, int64_t b, int64_t h,
                      int64_t r0, int64_t m, int64_t d, float *dst) {
  const void *src = fattn__eptr(vw, b, h, r0, 0);
  if (vw->dtype == FATTN_F32 && vw->s[3] <= 1) {
    for (int64_t r = 0; r < m; r++)
      memcpy(dst + r * d, (const float *)src + r * vw->s[2], (size_t)d * sizeof(float));
  } else if (vw->s[3] <= 1) {
    t->cvt_rows(m, d, src, vw->s[2], vw->dtype, dst, d);
  } else {
    for (int64_t r = 0; r < m; r++)
      for (int64_t p = 0; p < d; p++)
        dst[r * d + p] = fattn__load(src, r * vw->s[2] + p * vw->s[3], vw->dtype);
  }
}

/* Rows of f32 `src` (ld d) into m rows of a tensor (any dtype and strides). */
static void store_rows(const fattn__kernel_table *t, const fattn__view *vw, int64_t b, int64_t h,
                       int64_t r0, int64_t m, int64_t d, const float *src) {
  void *dst = (void *)fattn__eptr(vw, b, h, r0, 0);
  if (vw->dtype == FATTN_F32 && vw->s[3] <= 1) {
    for (int64_t r = 0; r < m; r++)
      memcpy((float *)dst + r * vw->s[2], src + r * d, (size_t)d * sizeof(float));
  } else if (vw->s[3] <= 1) {
    t->cvt_from_f32(m, d, src, d, vw->dtype, dst, vw->s[2]);
  } else {
    for (int64_t r = 0; r < m; r++)
      for (int64_t p = 0; p < d; p++)
        fattn__store(dst, r * vw->s[2] + p * vw->s[3], vw->dtype, src[r * d + p]);
  }
}

/* Keys from j0 of K or V: the caller's f32 rows in place, else the item's
 * f32 copy (converted once per (sequence, kv head): every query block
 * reads it). *ld, *sd: the strides the kernels read with. */
static const float *kv_block(const fattn__view *vw, int64_t b, int64_t hk, int64_t j0, int64_t d,
                             const float *conv, int64_t *ld, int64_t *sd) {
  if (vw->dtype == FATTN_F32) {
    *ld = vw->s[2], *sd = vw->s[3];
    return fattn__ptr(vw, b, hk, j0, 0);
  }
  *ld = d, *sd = 1;
  return conv + j0 * d;
}

/* One query block (positions [i0, i0 + bq) of every head of the group)
 * against its keys: dQ of its rows written, dK / dV accumulated. */
static void bw_block(const fattn__problem *pb, const fattn__grads *gr, const fattn__kernel_table *t,
                     const bw_plan *pl, const bw_ws *w, int64_t b, int64_t hk, int64_t i0,
                     int64_t bq) {
  const int64_t G = pb->G, D = pb->D, Dv = pb->Dv, rp = pl->rp, bn = pl->bn;
  const int64_t rows = G * bq;
  const float qscale = pb->scale * BW_LOG2E;
  for (int64_t g = 0; g < G; g++) {
    const int64_t h = hk * G + g;
    float *qr = w->qr + g * bq * D, *dor = w->dor + g * bq * Dv;
    load_rows(t, &pb->q, b, h, i0, bq, D, qr);
    load_rows(t, &gr->dout, b, h, i0, bq, Dv, dor);
    if (pl->dot_s) /* BF16 pairs, unscaled, in qt's space (the scale goes on the sums) */
      pl->dot_s->pack_q(bq, D, fattn__eptr(&pb->q, b, h, i0, 0), pb->q.s[2], pb->q.dtype,
                        (uint16_t *)w->qt + 2 * g * bq, rp);
    else
      t->pack_q(bq, D, qr, D, qscale, w->qt + g * bq, rp);
    if (pl->dot_dp)
      pl->dot_dp->pack_q(bq, Dv, fattn__eptr(&gr->dout, b, h, i0, 0), gr->dout.s[2], gr->dout.dtype,
                         (uint16_t *)w->dot + 2 * g * bq, rp);
    else
      t->pack_q(bq, Dv, dor, Dv, 1.0f, w->dot + g * bq, rp);
    /* Drow = rowsum(dO ∘ O) with the forward's out; lse2 in log2 units (a
     * row with no key, lse -inf, gets +inf: P = 0 everywhere) */
    for (int64_t r = 0; r < bq; r++) {
      const void *orow = fattn__eptr(&pb->out, b, h, i0 + r, 0);
      float s = 0.0f;
      for (int64_t c = 0; c < Dv; c++)
        s += dor[r * Dv + c] * fattn__load(orow, c * pb->out.s[3], pb->out.dtype);
      w->drow[g * bq + r] = s;
      const float l = *fattn__ptr(&pb->lse, b, h, i0 + r, 0);
      w->lse2[g * bq + r] = l == -INFINITY ? INFINITY : l * BW_LOG2E;
    }
  }
  /* padding rows: Q = dO = 0 (in the pair layouts too: the float at
   * t·rp + r holds row r's pair t), P = 0 */
  for (int64_t r = rows; r < rp; r++) {
    for (int64_t p = 0; p < D; p++)
      w->qt[p * rp + r] = 0.0f;
    for (int64_t c = 0; c < Dv; c++)
      w->dot[c * rp + r] = 0.0f;
    w->drow[r] = 0.0f;
    w->lse2[r] = INFINITY;
  }
  memset(w->dqt, 0, (size_t)(D * rp) * sizeof(float));

  const int64_t ulo = fattn__row_start(pb, b, i0);
  int64_t uhi = fattn__row_limit(pb, b, i0 + bq - 1);
  if (uhi < ulo) uhi = ulo;
  const int64_t jlo_all = fattn__row_limit(pb, b, i0),
                lo_last = fattn__row_start(pb, b, i0 + bq - 1);
  const int modify = pb->softcap != 0.0f || pb->alibi;
  const float to_nat = pb->softcap != 0.0f ? 1.0f / (BW_LOG2E * pb->softcap) : 0.0f;
  /* blocks from ulo rounded down to the vector width (keys before a row's
   * start are masked on the tile, as in a straddling block) */
  for (int64_t j0 = ulo / t->rw * t->rw; j0 < uhi; j0 += bn) {
    const int64_t n = uhi - j0 < bn ? uhi - j0 : bn;
    int64_t ldk, sk, ldv, sv;
    const float *kb = kv_block(&pb->k, b, hk, j0, D, w->kc, &ldk, &sk);
    ldv = sv = 0;
    const float *vb = pl->dot_dp ? NULL : kv_block(&pb->v, b, hk, j0, Dv, w->vc, &ldv, &sv);
    if (pl->dot_s)
      pl->dot_s->qk(rp, n, D, (const uint16_t *)w->qt,
                    (const uint16_t *)fattn__eptr(&pb->k, b, hk, j0, 0), pb->k.s[2], qscale, w->st,
                    rp);
    else
      t->qk(rp, n, D, w->qt, kb, ldk, sk, w->st, rp);
    if (pb->softcap != 0.0f) /* 1 - tanh² of the raw score, before the cap */
      for (int64_t x = 0; x < n * rp; x++) {
        const float th = tanhf(w->st[x] * to_nat);
        w->sf[x] = 1.0f - th * th;
      }
    const int straddles = j0 + n > jlo_all || j0 < lo_last || j0 < ulo;
    if (pb->has_mask || straddles || modify)
      fattn__mask_tile(pb, b, hk, i0, bq, j0, n, straddles, w->st, 1, rp);
    if (pl->dot_dp)
      pl->dot_dp->qk(rp, n, Dv, (const uint16_t *)w->dot,
                     (const uint16_t *)fattn__eptr(&pb->v, b, hk, j0, 0), pb->v.s[2], 1.0f, w->dp,
                     rp);
    else
      t->qk(rp, n, Dv, w->dot, vb, ldv, sv, w->dp, rp);
    /* P = 2^(St - lse2) (masked and padding rows: 0), dS = P ∘ (dP - Drow) */
    t->bw_ds(rp, n, w->st, w->dp, rp, w->lse2, w->drow);
    if (pb->softcap != 0.0f)
      for (int64_t x = 0; x < n * rp; x++)
        w->dp[x] *= w->sf[x];
    t->pv(rp, n, D, w->dp, rp, kb, ldk, sk, w->ones, w->dqt, rp);
    /* Pᵀ and dSᵀ: rows of the block by keys, transposed by the table's
     * store_o (scale 1); the padding keys of a short last block are 0 */
    t->store_o(rows, n, w->st, rp, w->ones, w->pT, bn);
    t->store_o(rows, n, w->dp, rp, w->ones, w->dsT, bn);
    if (n < bn)
      for (int64_t r = 0; r < rows; r++)
        for (int64_t j = n; j < bn; j++)
          w->pT[r * bn + j] = w->dsT[r * bn + j] = 0.0f;
    /* the group's heads share K and V: one product over all the block's
     * rows (dO and Q rows lie head after head, as Pᵀ's) */
    const int64_t np = fattn__round_up(n, t->rw);
    t->pv(np, rows, Dv, w->pT, bn, w->dor, Dv, 1, w->ones, w->dvt + j0, pl->lkp);
    t->pv(np, rows, D, w->dsT, bn, w->qr, D, 1, w->ones, w->dkt + j0, pl->lkp);
  }
  /* dQ = scale · dQt, row-major */
  for (int64_t g = 0; g < G; g++) {
    t->store_o(bq, D, w->dqt + g * bq, rp, w->scl, w->stage, D);
    store_rows(t, &gr->dq, b, hk * G + g, i0, bq, D, w->stage);
  }
}

static void bw_item(const fattn__problem *pb, const fattn__grads *gr, const fattn__kernel_table *t,
                    const bw_plan *pl, const bw_ws *w, int64_t b, int64_t hk) {
  const int64_t D = pb->D, Dv = pb->Dv, Lk = pb->Lk, bn = pl->bn;
  if (pb->k.dtype != FATTN_F32) load_rows(t, &pb->k, b, hk, 0, Lk, D, w->kc);
  if (pb->v.dtype != FATTN_F32 && !pl->dot_dp) load_rows(t, &pb->v, b, hk, 0, Lk, Dv, w->vc);
  memset(w->dkt, 0, (size_t)(D * pl->lkp) * sizeof(float));
  memset(w->dvt, 0, (size_t)(Dv * pl->lkp) * sizeof(float));
  for (int64_t i0 = 0; i0 < pb->Lq; i0 += pl->bm)
    bw_block(pb, gr, t, pl, w, b, hk, i0, pb->Lq - i0 < pl->bm ? pb->Lq - i0 : pl->bm);
  /* dK = scale · dKt, dV = dVt, back to rows, a key block at a time */
  for (int64_t j0 = 0; j0 < Lk; j0 += bn) {
    const int64_t m = Lk - j0 < bn ? Lk - j0 : bn;
    t->store_o(m, D, w->dkt + j0, pl->lkp, w->scl, w->stage, D);
    store_rows(t, &gr->dk, b, hk, j0, m, D, w->stage);
    t->store_o(m, Dv, w->dvt + j0, pl->lkp, w->ones, w->stage, Dv);
    store_rows(t, &gr->dv, b, hk, j0, m, Dv, w->stage);
  }
}

fattn_status fattn_sdpa_backward(fattn_context *ctx, const fattn_tensor *q, const fattn_tensor *k,
                                 const fattn_tensor *v, const fattn_tensor *out,
                                 const fattn_tensor *dout, const fattn_tensor *lse,
                                 const fattn_tensor *dq, const fattn_tensor *dk,
                                 const fattn_tensor *dv, const fattn_sdpa_params *params) {
  fattn__problem pb;
  fattn__grads gr;
  fattn_status st = fattn__validate_backward(q, k, v, out, dout, lse, dq, dk, dv, params, &pb, &gr);
  if (st != FATTN_SUCCESS) return st;
  fattn_context *c;
  if ((st = fattn__context_resolve(ctx, &c)) != FATTN_SUCCESS) return st;
  if (params->backend == FATTN_BACKEND_REFERENCE) return fattn__reference_backward(&pb, &gr);
  const fattn__kernel_table *t = c->table;
  if (params->backend != FATTN_BACKEND_AUTO && !(t = fattn__table_for(params->backend, &st)))
    return st;
  /* the forward's blocks (cache-derived, never the thread count) */
  fattn__plan fp;
  if ((st = fattn__make_plan(&pb, t, NULL, 1, c->block_keys, c->block_queries,
                             fattn__topology_get(), &fp)) != FATTN_SUCCESS)
    return st;
  bw_plan pl;
  pl.bm = fp.bm;
  /* key blocks start at multiples of the vector width: the pv kernels
   * accumulate dK, dV at dKt + j0 with aligned loads */
  pl.bn = fattn__round_up(fp.bn, t->rw);
  pl.rp = fp.rows_pad;
  pl.lkp = fattn__round_up(pb.Lk, pl.bn) + pl.bn;
  const int64_t items = pb.B * pb.Hkv;
  const int nt = fattn__threads_for_call(c);
  pl.nthreads = (int64_t)nt > items ? (int)items : nt;
  /* the bf16 dot where the forward takes it (api.c's rule), and for dP
   * where dO and V are BF16 (FATTN_BF16_DOT=on: any dO, rounded) */
  const int dot_on = c->bf16_dot == FATTN__BF16_DOT_ON,
            dot_auto = c->bf16_dot == FATTN__BF16_DOT_AUTO &&
                       (fattn__cpu_features() & FATTN__CPU_BF16DOT_FAST);
  const fattn__bf16_dot_table *bd = fattn__bf16_dot_for(t);
  pl.dot_s = bd && pb.k.dtype == FATTN_BF16 && pb.k.s[3] <= 1 && pb.q.s[3] <= 1 &&
                     (dot_on || (dot_auto && pb.q.dtype == FATTN_BF16))
                 ? bd
                 : NULL;
  pl.dot_dp = bd && pb.v.dtype == FATTN_BF16 && pb.v.s[3] <= 1 && gr.dout.s[3] <= 1 &&
                      (dot_on || (dot_auto && gr.dout.dtype == FATTN_BF16))
                  ? bd
                  : NULL;
  pl.pin = pl.nthreads > 1 ? c->pin : FATTN_PIN_NONE;
  int64_t per, total;
  per = bw_layout(&pb, &pl, NULL, NULL);
  if (!fattn__mul_ok(per, pl.nthreads, &total) || total > PTRDIFF_MAX / 2)
    return fattn__error(FATTN_ERROR_OVERFLOW, "backward workspace of %lld bytes per thread",
                        (long long)per);
  pl.per_thread_bytes = per;
  int slot;
  void *ws;
  if ((st = fattn__workspace_acquire(c, (size_t)total, &slot, &ws)) != FATTN_SUCCESS) return st;
  const int caller_slot = pl.pin != FATTN_PIN_NONE ? fattn__caller_slot(pl.pin) : -1;
#pragma omp parallel num_threads(pl.nthreads) if (pl.nthreads > 1)
  {
    int tid = 0;
#if defined(_OPENMP)
    tid = omp_get_thread_num();
#endif
    if (pl.pin != FATTN_PIN_NONE && tid > 0) fattn__pin_worker(pl.pin, tid, caller_slot);
    const unsigned fpm = fattn__fp_enter();
    bw_ws w;
    bw_layout(&pb, &pl, (char *)ws + (int64_t)tid * per, &w);
    const int64_t no = pl.rp > pl.bn ? pl.rp : pl.bn;
    for (int64_t r = 0; r < no; r++)
      w.ones[r] = 1.0f, w.scl[r] = pb.scale;
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; it++)
      bw_item(&pb, &gr, t, &pl, &w, it / pb.Hkv, it % pb.Hkv);
    fattn__fp_leave(fpm);
  }
  fattn__workspace_done(c, slot, ws);
  return FATTN_SUCCESS;
}

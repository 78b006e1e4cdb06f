/* The fused driver: FlashAttention-2 order over one kernel table.
 *
 * For each work unit (b, kv head hk, query positions [i0, i0+bq)) the rows are
 * (g, i) for the G query heads of hk's group, so every K and V element read
 * serves all heads of the group. Q is packed transposed (rows in vector lanes,
 * see kernel.h) once per unit; K and V are read in place. Keys stream in
 * blocks of bn:
 *   S = Q·Kᵀ  ->  mask / causal / kv_len on the tile  ->  online softmax  ->  O += P·V,
 * and O / l is written once at the end with lse = m + log l. Key blocks past
 * every row's limit are never touched (causal work is about half); the limit
 * is applied element-wise only in blocks that straddle it. Each row is computed
 * by one thread in a fixed order, so results do not depend on the thread count.
 *
 * Split-KV: when the plan splits the keys into chunks (few units: decode,
 * short query blocks over long caches), a work item is (unit, chunk). It
 * leaves O / l, m and l of its rows in a slot of the workspace, and after a
 * barrier each unit's chunks are merged in chunk order with the log-sum-exp
 * rule. The chunking comes from the problem, never the thread count, so the
 * bits do not depend on it either. */
#include <math.h>
#include <string.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "access.h"

#define FATTN__LOG2E 1.44269504088896341f
#define FATTN__LN2 0.693147180559945309f
#include "internal.h"

/* 1 / l for the final O / l; a row that attended no key (l = 0, m stayed
 * -inf) gets zeros. */
static inline float row_inv(float l) { return l == 0.0f ? 0.0f : 1.0f / l; }

/* lse = ln(Σ e^s) = ln2 · (m + log2 l), with m in log2 units; -inf for a row
 * that attended no key. */
static inline float row_lse(float m, float l) {
  return l == 0.0f ? -INFINITY : FATTN__LN2 * (m + log2f(l));
}

/* Where a unit's result goes: out / lse (o == NULL), or a partial slot of
 * the split-KV path: O / l row-major (rows × Dv), then m and l per row. */
typedef struct sink {
  float *o, *m, *l;
} sink;

static sink slot_at(const fattn__problem *pb, const fattn__plan *plan, char *partials,
                    int64_t item) {
  sink s;
  s.o = (float *)(partials + item * plan->slot_bytes);
  s.m = s.o + plan->rows_pad * pb->Dv;
  s.l = s.m + plan->rows_pad;
  return s;
}

/* A chunk with no key for any row of its unit: every row is empty. */
static void sink_empty(const sink *sk, int64_t rows) {
  for (int64_t r = 0; r < rows; r++) {
    sk->m[r] = -INFINITY;
    sk->l[r] = 0.0f;
  }
}

typedef struct unit_ws {
  float *qt, *st, *ot, *m, *l, *alpha;
  float *kc, *vc; /* a key block of K / V converted to f32 (half K / V only) */
  float *qc;      /* one head's query rows converted to f32 (half q only) */
  float *oc;      /* one head's output rows in f32 before rounding (half out only) */
} unit_ws;

static float *carve(char **p, int64_t floats) {
  float *r = (float *)*p;
  *p += fattn__ws_piece_bytes(floats);
  return r;
}

static unit_ws layout(const fattn__problem *pb, const fattn__plan *plan, char *base) {
  const int64_t rp = plan->rows_pad;
  unit_ws w;
  char *p = base; /* same order as fattn__make_plan's pieces */
  w.qt = carve(&p, pb->D * rp);
  w.st = carve(&p, plan->bn * rp);
  w.ot = carve(&p, pb->Dv * rp);
  w.m = carve(&p, rp);
  w.l = carve(&p, rp);
  w.alpha = carve(&p, rp);
  w.kc = carve(&p, pb->k.dtype != FATTN_F32 ? plan->bn * pb->D : 0);
  w.vc = carve(&p, pb->v.dtype != FATTN_F32 ? plan->bn * pb->Dv : 0);
  w.qc = carve(&p, pb->q.dtype != FATTN_F32 ? plan->bm * pb->D : 0);
  w.oc = carve(&p, pb->out.dtype != FATTN_F32 ? plan->bm * pb->Dv : 0);
  return w;
}

/* Keys [j0, j0 + n) of K or V (kv head hk of batch b) as f32 rows: the
 * caller's memory when F32 (row stride *ld, element stride *sd), else
 * converted into buf (row stride d, contiguous). Half K / V are converted
 * once per unit and key block: each element then serves all the unit's rows. */
static const float *kv_block(const fattn__kernel_table *t, const fattn__view *vw, int64_t b,
                             int64_t hk, int64_t j0, int64_t n, int64_t d, float *buf, int64_t *ld,
                             int64_t *sd) {
  if (vw->dtype == FATTN_F32) {
    *ld = vw->s[2];
    *sd = vw->s[3];
    return fattn__ptr(vw, b, hk, j0, 0);
  }
  const void *src = fattn__eptr(vw, b, hk, j0, 0);
  if (vw->s[3] <= 1) {
    t->cvt_rows(n, d, src, vw->s[2], vw->dtype, buf, d);
  } else {
    for (int64_t j = 0; j < n; j++)
      for (int64_t p = 0; p < d; p++)
        buf[j * d + p] = fattn__load(src, j * vw->s[2] + p * vw->s[3], vw->dtype);
  }
  *ld = d;
  *sd = 1;
  return buf;
}

/* Adds the user's mask and the per-row key limit to the score tile: element
 * (row r, key j) at st[r·srow + j·lds] (srow = 1 for the key-major St of the
 * row-vector kernels, the row stride for the row-major S of the small ones).
 * Row r of the unit is query head hk·G + r / bq, position i0 + r % bq. A
 * masked entry (U8 0, additive -inf, past the limit) becomes -inf whatever
 * the score was, NaN included: a masked key is not attended (as in the
 * reference). Returns nonzero if any entry was masked. */
static int mask_tile(const fattn__problem *pb, int64_t b, int64_t hk, int64_t i0, int64_t bq,
                     int64_t j0, int64_t n, int limits, float *st, int64_t srow, int64_t lds) {
  const int64_t rows = pb->G * bq;
  int masked = 0;
  for (int64_t r = 0; r < rows; r++) {
    const int64_t g = r / bq, i = i0 + r % bq, h = hk * pb->G + g;
    float *sr = st + r * srow;
    if (pb->has_mask) {
      const int64_t off = fattn__mask_row(pb, b, h, i) + j0 * pb->mask.s[3], ms = pb->mask.s[3];
      if (pb->mask_dtype == FATTN_U8) {
        const uint8_t *mk = (const uint8_t *)pb->mask.base + off;
        for (int64_t j = 0; j < n; j++)
          if (!mk[j * ms]) sr[j * lds] = -INFINITY, masked = 1;
      } else {
        const float *mk = (const float *)pb->mask.base + off;
        for (int64_t j = 0; j < n; j++) {
          const float x = mk[j * ms];
          if (x == -INFINITY)
            sr[j * lds] = -INFINITY, masked = 1;
          else
            sr[j * lds] += x * FATTN__LOG2E; /* scores are in log2 units */
        }
      }
    }
    if (limits) {
      const int64_t lim = fattn__row_limit(pb, b, i) - j0;
      for (int64_t j = lim < 0 ? 0 : lim; j < n; j++)
        sr[j * lds] = -INFINITY, masked = 1;
    }
  }
  return masked;
}

/* Nonzero if a V row among keys [0, n) holds a NaN or an infinity (exponent
 * all ones; integer test, so it vectorises without fast-math). Asked only
 * for tiles with masked entries: there P = 0 must not meet such a value, since
 * 0 · NaN would carry it into a row that does not attend the key. */
static int v_nonfinite(const float *v, int64_t ldv, int64_t sv, int64_t n, int64_t dv) {
  uint32_t bad = 0;
  for (int64_t j = 0; j < n; j++)
    for (int64_t c = 0; c < dv; c++) {
      uint32_t u;
      memcpy(&u, v + j * ldv + c * sv, 4);
      bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
  return bad != 0;
}

/* pv for a tile with masked entries and non-finite values in V (rare): as
 * the kernel, but a term with P = 0 is skipped (masked, or a weight below
 * 2^-126 of the row's largest). Element (row r, key j) of P at
 * p[r·prow + j·lds]; O element (r, c) at o[r·orow + c·ldo]. */
static void pv_skip_zero(int64_t rows, int64_t n, int64_t dv, const float *p, int64_t prow,
                         int64_t lds, const float *v, int64_t ldv, int64_t sv, const float *alpha,
                         float *o, int64_t orow, int64_t ldo) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < dv; c++) {
      float acc = alpha[r] * o[r * orow + c * ldo];
      for (int64_t j = 0; j < n; j++) {
        const float pj = p[r * prow + j * lds];
        if (pj != 0.0f) acc += pj * v[j * ldv + c * sv];
      }
      o[r * orow + c * ldo] = acc;
    }
}

/* A unit of at most t->small_rows rows (decode: the G heads of one query
 * position) with contiguous K / V rows: rows row-major, vectors along
 * head_dim (kernel.h), so no lane of a row vector idles. */
static void run_unit_small(const fattn__problem *pb, const fattn__kernel_table *t,
                           const fattn__plan *plan, const unit_ws *w, int64_t b, int64_t hk,
                           int64_t i0, int64_t bq, int64_t ja, int64_t jhi, const sink *sk) {
  const int64_t G = pb->G, D = pb->D, Dv = pb->Dv, bn = plan->bn, rows = G * bq;
  const int64_t jlo_all = fattn__row_limit(pb, b, i0);
  const float qscale = pb->scale * FATTN__LOG2E;
  for (int64_t r = 0; r < rows; r++) {
    const void *src = fattn__eptr(&pb->q, b, hk * G + r / bq, i0 + r % bq, 0);
    for (int64_t p = 0; p < D; p++)
      w->qt[r * D + p] = fattn__load(src, p * pb->q.s[3], pb->q.dtype) * qscale;
    w->m[r] = -INFINITY;
    w->l[r] = 0.0f;
  }
  memset(w->ot, 0, (size_t)(rows * Dv) * sizeof(float));
  for (int64_t j0 = ja; j0 < jhi; j0 += bn) {
    const int64_t n = jhi - j0 < bn ? jhi - j0 : bn;
    int64_t ldk, ldv, sd;
    if (pb->k.dtype != FATTN_F32 && pb->k.s[3] <= 1 && t->qk_rows_half) { /* convert on load */
      t->qk_rows_half(rows, n, D, w->qt, fattn__eptr(&pb->k, b, hk, j0, 0), pb->k.s[2], pb->k.dtype,
                      w->st, bn);
    } else {
      const float *kb = kv_block(t, &pb->k, b, hk, j0, n, D, w->kc, &ldk, &sd);
      t->qk_rows(rows, n, D, w->qt, kb, ldk, w->st, bn);
    }
    const int straddles = j0 + n > jlo_all;
    const int masked =
        (pb->has_mask || straddles) && mask_tile(pb, b, hk, i0, bq, j0, n, straddles, w->st, bn, 1);
    t->softmax_rows(rows, n, w->st, bn, w->m, w->l, w->alpha);
    if (pb->v.dtype != FATTN_F32 && pb->v.s[3] <= 1 && t->pv_rows_half && !masked) {
      t->pv_rows_half(rows, n, Dv, w->st, bn, fattn__eptr(&pb->v, b, hk, j0, 0), pb->v.s[2],
                      pb->v.dtype, w->alpha, w->ot, Dv);
      continue;
    }
    const float *vb = kv_block(t, &pb->v, b, hk, j0, n, Dv, w->vc, &ldv, &sd);
    if (masked && v_nonfinite(vb, ldv, 1, n, Dv))
      pv_skip_zero(rows, n, Dv, w->st, bn, 1, vb, ldv, 1, w->alpha, w->ot, Dv, 1);
    else
      t->pv_rows(rows, n, Dv, w->st, bn, vb, ldv, w->alpha, w->ot, Dv);
  }
  if (sk->o) {
    for (int64_t r = 0; r < rows; r++) {
      const float inv = row_inv(w->l[r]);
      for (int64_t c = 0; c < Dv; c++)
        sk->o[r * Dv + c] = w->ot[r * Dv + c] * inv;
      sk->m[r] = w->m[r];
      sk->l[r] = w->l[r];
    }
    return;
  }
  for (int64_t r = 0; r < rows; r++) {
    const int64_t h = hk * G + r / bq, i = i0 + r % bq;
    const float inv = row_inv(w->l[r]);
    void *orow = fattn__out_erow(pb, b, h, i);
    for (int64_t c = 0; c < Dv; c++)
      fattn__store(orow, c * pb->out.s[3], pb->out.dtype, w->ot[r * Dv + c] * inv);
    if (pb->has_lse) *fattn__lse_at(pb, b, h, i) = row_lse(w->m[r], w->l[r]);
  }
}

/* Unit (b, hk, positions from i0) over keys [ja, jb): the whole row range
 * when sk->o is NULL, one split-KV chunk otherwise. */
static void run_unit(const fattn__problem *pb, const fattn__kernel_table *t,
                     const fattn__plan *plan, const unit_ws *w, int64_t b, int64_t hk, int64_t i0,
                     int64_t ja, int64_t jb, const sink *sk) {
  const int64_t G = pb->G, D = pb->D, Dv = pb->Dv, bn = plan->bn, rp = plan->rows_pad;
  const int64_t bq = pb->Lq - i0 < plan->bm ? pb->Lq - i0 : plan->bm;
  const int64_t rows = G * bq;
  /* Row limits grow with i: the last row bounds the keys of the whole unit. */
  int64_t jhi = fattn__row_limit(pb, b, i0 + bq - 1);
  if (jhi > jb) jhi = jb;
  if (sk->o && ja >= jhi) {
    sink_empty(sk, rows);
    return;
  }
  /* the small kernels want contiguous K / V rows: F32 ones in place, or the
   * converted copy of half ones */
  if (rows <= t->small_rows && (pb->k.dtype != FATTN_F32 || pb->k.s[3] <= 1) &&
      (pb->v.dtype != FATTN_F32 || pb->v.s[3] <= 1)) {
    run_unit_small(pb, t, plan, w, b, hk, i0, bq, ja, jhi, sk);
    return;
  }
  const int64_t jlo_all = fattn__row_limit(pb, b, i0); /* keys below this: no row masked */

  /* Qt[p][r] = scale·log2(e) · q[r][p], head by head (scores in log2 units, so
   * the softmax needs 2^x only); padding rows are zero. */
  const float qscale = pb->scale * FATTN__LOG2E;
  const fattn__bf16_dot_table *bd = plan->bf16_dot;
  if (bd) { /* BF16 pairs, unscaled (the scale goes on the sums); Qp in qt's space */
    uint16_t *qp = (uint16_t *)w->qt;
    const int64_t np = (D + 1) / 2;
    for (int64_t g = 0; g < G; g++)
      bd->pack_q(bq, D, fattn__eptr(&pb->q, b, hk * G + g, i0, 0), pb->q.s[2], pb->q.dtype,
                 qp + 2 * g * bq, rp);
    for (int64_t t2 = 0; t2 < np; t2++)
      memset(qp + 2 * (t2 * rp + rows), 0, (size_t)(rp - rows) * 4);
  }
  for (int64_t g = 0; g < G && !bd; g++) {
    if (pb->q.dtype == FATTN_F32 && pb->q.s[3] <= 1) {
      t->pack_q(bq, D, fattn__ptr(&pb->q, b, hk * G + g, i0, 0), pb->q.s[2], qscale, w->qt + g * bq,
                rp);
    } else if (pb->q.s[3] <= 1) { /* half q: rows to f32 (vectorised), then packed */
      t->cvt_rows(bq, D, fattn__eptr(&pb->q, b, hk * G + g, i0, 0), pb->q.s[2], pb->q.dtype, w->qc,
                  D);
      t->pack_q(bq, D, w->qc, D, qscale, w->qt + g * bq, rp);
    } else { /* strided q: element by element (rows · D per unit) */
      const void *src = fattn__eptr(&pb->q, b, hk * G + g, i0, 0);
      for (int64_t r = 0; r < bq; r++)
        for (int64_t p = 0; p < D; p++)
          w->qt[p * rp + g * bq + r] =
              fattn__load(src, r * pb->q.s[2] + p * pb->q.s[3], pb->q.dtype) * qscale;
    }
  }
  for (int64_t p = 0; p < D && !bd; p++)
    for (int64_t r = rows; r < rp; r++)
      w->qt[p * rp + r] = 0.0f;
  for (int64_t r = 0; r < rp; r++) {
    w->m[r] = -INFINITY;
    w->l[r] = 0.0f;
  }
  memset(w->ot, 0, (size_t)(Dv * rp) * sizeof(float));

  for (int64_t j0 = ja; j0 < jhi; j0 += bn) {
    const int64_t n = jhi - j0 < bn ? jhi - j0 : bn;
    int64_t ldk, sdk, ldv, sdv;
    if (bd) {
      bd->qk(rp, n, D, (const uint16_t *)w->qt, fattn__eptr(&pb->k, b, hk, j0, 0), pb->k.s[2],
             qscale, w->st, rp);
    } else {
      const float *kb = kv_block(t, &pb->k, b, hk, j0, n, D, w->kc, &ldk, &sdk);
      t->qk(rp, n, D, w->qt, kb, ldk, sdk, w->st, rp);
    }
    const int straddles = j0 + n > jlo_all;
    const int masked =
        (pb->has_mask || straddles) && mask_tile(pb, b, hk, i0, bq, j0, n, straddles, w->st, 1, rp);
    t->softmax(rp, n, w->st, rp, w->m, w->l, w->alpha);
    const float *vb = kv_block(t, &pb->v, b, hk, j0, n, Dv, w->vc, &ldv, &sdv);
    if (masked && v_nonfinite(vb, ldv, sdv, n, Dv))
      pv_skip_zero(rows, n, Dv, w->st, 1, rp, vb, ldv, sdv, w->alpha, w->ot, 1, rp);
    else
      t->pv(rp, n, Dv, w->st, rp, vb, ldv, sdv, w->alpha, w->ot, rp);
  }

  /* O / l back to row-major `out` (alpha is free now: it holds 1 / l). */
  float *inv = w->alpha;
  for (int64_t r = 0; r < rows; r++)
    inv[r] = row_inv(w->l[r]);
  if (sk->o) {
    for (int64_t g = 0; g < G; g++)
      t->store_o(bq, Dv, w->ot + g * bq, rp, inv + g * bq, sk->o + g * bq * Dv, Dv);
    memcpy(sk->m, w->m, (size_t)rows * sizeof(float));
    memcpy(sk->l, w->l, (size_t)rows * sizeof(float));
    return;
  }
  for (int64_t g = 0; g < G; g++) {
    const int64_t h = hk * G + g;
    if (pb->out.dtype == FATTN_F32 && pb->out.s[3] <= 1) {
      t->store_o(bq, Dv, w->ot + g * bq, rp, inv + g * bq, fattn__out_row(pb, b, h, i0),
                 pb->out.s[2]);
    } else if (pb->out.s[3] <= 1) { /* half out: f32 rows, then rounded (vectorised) */
      t->store_o(bq, Dv, w->ot + g * bq, rp, inv + g * bq, w->oc, Dv);
      t->cvt_from_f32(bq, Dv, w->oc, Dv, pb->out.dtype, fattn__out_erow(pb, b, h, i0),
                      pb->out.s[2]);
    } else { /* strided out: element by element, rounded to nearest even */
      void *dst = fattn__out_erow(pb, b, h, i0);
      for (int64_t r = 0; r < bq; r++)
        for (int64_t c = 0; c < Dv; c++)
          fattn__store(dst, r * pb->out.s[2] + c * pb->out.s[3], pb->out.dtype,
                       w->ot[c * rp + g * bq + r] * inv[g * bq + r]);
    }
    if (pb->has_lse)
      for (int64_t r = 0; r < bq; r++)
        *fattn__lse_at(pb, b, h, i0 + r) = row_lse(w->m[g * bq + r], w->l[g * bq + r]);
  }
}

/* out / lse of unit u from its chunks' partials, in chunk order: with
 * M = max m_c over non-empty chunks and w_c = l_c · 2^(m_c - M),
 * O = Σ w_c · (O / l)_c / Σ w_c and lse = ln 2 · (M + log2 Σ w_c). */
static void merge_unit(const fattn__problem *pb, const fattn__plan *plan, char *partials, int64_t u,
                       int64_t b, int64_t hk, int64_t i0, float *acc /* Dv floats */) {
  const int64_t bq = pb->Lq - i0 < plan->bm ? pb->Lq - i0 : plan->bm;
  const int64_t rows = pb->G * bq, Dv = pb->Dv, so = pb->out.s[3], nc = plan->nchunks;
  for (int64_t r = 0; r < rows; r++) {
    const int64_t h = hk * pb->G + r / bq, i = i0 + r % bq;
    /* an empty chunk has l = 0; a NaN in m or l must reach the row */
    float M = -INFINITY, L = 0.0f;
    for (int64_t c = 0; c < nc; c++) {
      const sink s = slot_at(pb, plan, partials, u * nc + c);
      if (s.l[r] != 0.0f && (s.m[r] > M || isnan(s.m[r]) || isnan(s.l[r])))
        M = isnan(s.l[r]) ? NAN : s.m[r];
      if (isnan(M)) break;
    }
    for (int64_t x = 0; x < Dv; x++)
      acc[x] = 0.0f;
    for (int64_t c = 0; c < nc; c++) {
      const sink s = slot_at(pb, plan, partials, u * nc + c);
      if (s.l[r] == 0.0f) continue;
      const float wc = s.l[r] * exp2f(s.m[r] - M);
      L += wc;
      for (int64_t x = 0; x < Dv; x++)
        acc[x] += wc * s.o[r * Dv + x];
    }
    const float inv = row_inv(L);
    void *orow = fattn__out_erow(pb, b, h, i);
    for (int64_t x = 0; x < Dv; x++)
      fattn__store(orow, x * so, pb->out.dtype, acc[x] * inv);
    if (pb->has_lse) *fattn__lse_at(pb, b, h, i) = row_lse(M, L);
  }
}

void fattn__driver_run(const fattn__problem *pb, const fattn__kernel_table *t,
                       const fattn__plan *plan, void *workspace) {
  const int64_t nqb = (pb->Lq + plan->bm - 1) / plan->bm;
  const int64_t units = pb->B * pb->Hkv * nqb, nc = plan->nchunks;
  char *partials = (char *)workspace + plan->per_thread_bytes * plan->nthreads;
  /* Units go head by head (consecutive units share K and V, which stay hot in
   * L2/L3: measured 62% -> 79% of peak on a causal 32-head, 2048-token shape
   * against interleaving heads). Causal units get more work the later their
   * query block, so within a head the heavy blocks go first: each next unit
   * reads a prefix of the keys just read, and the schedule ends on light units. */
  const int heavy_first = pb->causal != FATTN_CAUSAL_NONE;
  /* Pinning: workers go to the cores the caller is not confined to. */
  const int caller_slot = plan->pin != FATTN_PIN_NONE ? fattn__caller_slot(plan->pin) : -1;
#pragma omp parallel num_threads(plan->nthreads) if (plan->nthreads > 1)
  {
    int tid = 0;
#if defined(_OPENMP)
    tid = omp_get_thread_num();
#endif
    if (plan->pin != FATTN_PIN_NONE && tid > 0) fattn__pin_worker(plan->pin, tid, caller_slot);
    const unsigned fp = fattn__fp_enter(); /* denormals flushed, round to nearest */
    const unit_ws w = layout(pb, plan, (char *)workspace + (int64_t)tid * plan->per_thread_bytes);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < plan->items; it++) {
      const int64_t u = it / nc, c = it % nc;
      const int64_t qb = heavy_first ? nqb - 1 - u % nqb : u % nqb;
      const int64_t bh = u / nqb;
      const sink sk = nc > 1 ? slot_at(pb, plan, partials, it) : (sink){NULL, NULL, NULL};
      run_unit(pb, t, plan, &w, bh / pb->Hkv, bh % pb->Hkv, qb * plan->bm, c * plan->chunk,
               c + 1 == nc ? pb->Lk : (c + 1) * plan->chunk, &sk);
    }
    if (nc > 1) { /* after the loop's barrier: every chunk is done */
#pragma omp for schedule(static)
      for (int64_t u = 0; u < units; u++) {
        const int64_t qb = heavy_first ? nqb - 1 - u % nqb : u % nqb;
        const int64_t bh = u / nqb;
        merge_unit(pb, plan, partials, u, bh / pb->Hkv, bh % pb->Hkv, qb * plan->bm, w.ot);
      }
    }
    fattn__fp_leave(fp);
  }
}

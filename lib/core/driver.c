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

/* A chunk with no key for any row of its unit: every row is empty, except
 * that the first chunk carries the sinks (m = sink, l = 1, O = 0). */
static void sink_empty(const fattn__problem *pb, const sink *sk, int64_t hk, int64_t bq,
                       int64_t rows, int first) {
  for (int64_t r = 0; r < rows; r++) {
    const int s = first && pb->sinks;
    sk->m[r] = s ? pb->sinks[hk * pb->G + r / bq] * FATTN__LOG2E : -INFINITY;
    sk->l[r] = s ? 1.0f : 0.0f;
  }
  if (first && pb->sinks) memset(sk->o, 0, (size_t)(rows * pb->Dv) * sizeof(float));
}

/* Running max and sum at the start of a unit's keys: empty, or the sink (a
 * logit with no value, in log2 units) when this is the first chunk. */
static void init_rows(const fattn__problem *pb, int64_t hk, int64_t bq, int64_t rows,
                      int64_t rows_pad, int first, float *m, float *l) {
  for (int64_t r = 0; r < rows_pad; r++) {
    const int s = first && pb->sinks && r < rows;
    m[r] = s ? pb->sinks[hk * pb->G + r / bq] * FATTN__LOG2E : -INFINITY;
    l[r] = s ? 1.0f : 0.0f;
  }
}

typedef struct unit_ws {
  float *qt, *st, *ot, *m, *l, *alpha;
  float *ones;           /* rows_pad ones: the alpha of the second and later pages of a key block */
  const void **kp, **vp; /* paged K / V: a key block's row pointers (gather kernels) */
  float *ks, *vs;        /* and their scales */
  float *kc, *vc;        /* a key block of K / V converted to f32 (half or quantized K / V only) */
  float *qc;             /* one head's query rows converted to f32 (half q only) */
  float *oc;             /* one head's output rows in f32 before rounding (half out only) */
  /* tile units (plan->tile): Q packed, S, P packed, O; strided q / K / V in f32 */
  uint16_t *tq, *tp;
  float *ts, *to, *tqc, *tkv;
} unit_ws;

static unit_ws layout(const fattn__problem *pb, const fattn__plan *plan, char *base) {
  const int64_t rp = plan->rows_pad;
  unit_ws w;
  char *p = base; /* same order as fattn__make_plan's pieces */
  w.qt = fattn__ws_carve(&p, pb->D * rp);
  w.st = fattn__ws_carve(&p, plan->bn * rp);
  w.ot = fattn__ws_carve(&p, pb->Dv * rp);
  w.m = fattn__ws_carve(&p, rp);
  w.l = fattn__ws_carve(&p, rp);
  w.alpha = fattn__ws_carve(&p, rp);
  w.ones = fattn__ws_carve(&p, rp);
  const int64_t gb = pb->block_table ? plan->bn : 0;
  w.kp = (const void **)(void *)fattn__ws_carve(&p, gb * (int64_t)(sizeof(void *) / sizeof(float)));
  w.vp = (const void **)(void *)fattn__ws_carve(&p, gb * (int64_t)(sizeof(void *) / sizeof(float)));
  w.ks = fattn__ws_carve(&p, gb);
  w.vs = fattn__ws_carve(&p, gb);
  w.kc = fattn__ws_carve(&p, pb->k.dtype != FATTN_F32 ? plan->bn * pb->D : 0);
  w.vc = fattn__ws_carve(&p, pb->v.dtype != FATTN_F32 ? plan->bn * pb->Dv : 0);
  w.qc = fattn__ws_carve(&p, pb->q.dtype != FATTN_F32 ? plan->bm * pb->D : 0);
  w.oc = fattn__ws_carve(&p, pb->out.dtype != FATTN_F32 ? plan->bm * pb->Dv : 0);
  const int tl = plan->tile != NULL;
  const int64_t bn = plan->bn;
  w.tq = (uint16_t *)(void *)fattn__ws_carve(&p, tl ? rp * fattn__round_up(pb->D, 32) / 2 : 0);
  w.ts = fattn__ws_carve(&p, tl ? rp * fattn__round_up(bn, 16) : 0);
  w.tp = (uint16_t *)(void *)fattn__ws_carve(&p, tl ? rp * fattn__round_up(bn, 32) / 2 : 0);
  w.to = fattn__ws_carve(&p, tl ? rp * fattn__round_up(pb->Dv, 16) : 0);
  w.tqc = fattn__ws_carve(&p, tl && pb->q.s[3] > 1 ? plan->bm * pb->D : 0);
  w.tkv = fattn__ws_carve(
      &p, tl && (pb->k.s[3] > 1 || pb->v.s[3] > 1) ? bn * (pb->D > pb->Dv ? pb->D : pb->Dv) : 0);
  for (int64_t r = 0; r < rp; r++)
    w.ones[r] = 1.0f;
  return w;
}

/* A run of keys [j, j + *n) of K (v = 0) or V (v = 1), sequence b, kv head
 * hk, that share one row stride: all of them when the cache is dense, the
 * rest of the page when it is paged (*n is clipped to it). Row stride *ld and
 * element stride *sd in elements; the scale of key j + t at
 * scale[t·*lds] (quantized K / V; NULL otherwise). */
typedef struct kv_run {
  const char *p;
  int64_t ld, sd;
  const float *scale;
  int64_t lds;
} kv_run;

static kv_run kv_seg(const fattn__problem *pb, int v, int64_t b, int64_t hk, int64_t j,
                     int64_t *n) {
  const fattn__view *vw = v ? &pb->v : &pb->k;
  int64_t d0, d2, run;
  fattn__k_index(pb, b, j, &d0, &d2, &run);
  if (*n > run) *n = run;
  kv_run r;
  r.p = (const char *)fattn__eptr(vw, d0, hk, d2, 0);
  r.ld = vw->s[2];
  r.sd = vw->s[3];
  r.scale = NULL;
  r.lds = 0;
  if (v ? pb->v_scaled : pb->k_scaled) {
    const fattn__view *sc = v ? &pb->v_scale : &pb->k_scale;
    r.scale = fattn__ptr(sc, d0, hk, d2, 0);
    r.lds = sc->s[2];
  }
  return r;
}

/* Row pointers (and, for I8, scales) of keys [j0, j0 + n) of K or V, page
 * by page: the gather kernels then run one call over a whole key block. */
static void fill_rows(const fattn__problem *pb, int v, int64_t b, int64_t hk, int64_t j0, int64_t n,
                      const void **ptr, float *scale) {
  const int64_t es = (v ? &pb->v : &pb->k)->es;
  for (int64_t off = 0; off < n;) {
    int64_t len = n - off;
    const kv_run r = kv_seg(pb, v, b, hk, j0 + off, &len);
    for (int64_t x = 0; x < len; x++) {
      ptr[off + x] = r.p + x * r.ld * es;
      scale[off + x] = r.scale ? r.scale[x * r.lds] : 1.0f;
    }
    off += len;
  }
}

/* F32 from OCP FP8, all 256 codes: built once. */
static float fattn__e4m3_lut[256], fattn__e5m2_lut[256];
static pthread_once_t fattn__fp8_once = PTHREAD_ONCE_INIT;
static void fp8_init(void) {
  for (int c = 0; c < 256; c++) {
    fattn__e4m3_lut[c] = fattn__e4m3_to_f32((uint8_t)c);
    fattn__e5m2_lut[c] = fattn__e5m2_to_f32((uint8_t)c);
  }
}

/* n rows of d quantized elements (I8 or F8) to f32, each row times its scale. */
static void dequant_rows(int64_t n, int64_t d, const kv_run *r, fattn_dtype dt, float *dst,
                         int64_t ldd) {
  if (dt == FATTN_I8) {
    for (int64_t j = 0; j < n; j++) {
      const int8_t *src = (const int8_t *)r->p + j * r->ld;
      const float sc = r->scale[j * r->lds];
      float *o = dst + j * ldd;
      if (r->sd <= 1)
        for (int64_t p = 0; p < d; p++)
          o[p] = (float)src[p] * sc;
      else
        for (int64_t p = 0; p < d; p++)
          o[p] = (float)src[p * r->sd] * sc;
    }
    return;
  }
  pthread_once(&fattn__fp8_once, fp8_init);
  const float *lut = dt == FATTN_F8_E4M3 ? fattn__e4m3_lut : fattn__e5m2_lut;
  for (int64_t j = 0; j < n; j++) {
    const uint8_t *src = (const uint8_t *)r->p + j * r->ld;
    const float sc = r->scale[j * r->lds];
    float *o = dst + j * ldd;
    for (int64_t p = 0; p < d; p++)
      o[p] = lut[src[p * r->sd]] * sc;
  }
}

/* Keys [j0, j0 + n) of K or V as f32 rows into buf (row stride d), page by
 * page: half ones converted exactly, quantized ones dequantised. Used for
 * anything not F32: each element then serves all the unit's rows. */
static void kv_convert(const fattn__kernel_table *t, const fattn__problem *pb, int v, int64_t b,
                       int64_t hk, int64_t j0, int64_t n, int64_t d, float *buf) {
  const fattn_dtype dt = v ? pb->v.dtype : pb->k.dtype;
  for (int64_t off = 0; off < n;) {
    int64_t len = n - off;
    const kv_run r = kv_seg(pb, v, b, hk, j0 + off, &len);
    float *dst = buf + off * d;
    if (r.scale)
      dequant_rows(len, d, &r, dt, dst, d);
    else if (r.sd <= 1)
      t->cvt_rows(len, d, r.p, r.ld, dt, dst, d);
    else
      for (int64_t j = 0; j < len; j++)
        for (int64_t p = 0; p < d; p++)
          dst[j * d + p] = fattn__load(r.p, j * r.ld + p * r.sd, dt);
    off += len;
  }
}

/* Scores of the unit's rows against keys [j0, j0 + n) are in the tile:
 * element (row r, key j) at st[r·srow + j·lds] (srow = 1 for the key-major
 * St of the row-vector kernels, the row stride for the row-major S of the
 * small ones). Row r of the unit is query head hk·G + r / bq, position
 * i0 + r % bq. Applies, in this order: the softcap and ALiBi (when asked),
 * the user's mask and, with `limits`, each row's key range [start, limit).
 * A masked entry (U8 0, additive -inf, outside the range) becomes -inf
 * whatever the score was, NaN included: a masked key is not attended (as in
 * the reference). Returns nonzero if any entry was masked. */
int fattn__mask_tile(const fattn__problem *pb, int64_t b, int64_t hk, int64_t i0, int64_t bq,
                     int64_t j0, int64_t n, int limits, float *st, int64_t srow, int64_t lds) {
  const int64_t rows = pb->G * bq, diag = fattn__diag(pb, b);
  int masked = 0;
  for (int64_t r = 0; r < rows; r++) {
    const int64_t g = r / bq, i = i0 + r % bq, h = hk * pb->G + g;
    float *sr = st + r * srow;
    if (pb->softcap != 0.0f) { /* in natural units: cap · tanh(x / cap) */
      const float to_nat = 1.0f / (FATTN__LOG2E * pb->softcap), back = pb->softcap * FATTN__LOG2E;
      for (int64_t j = 0; j < n; j++)
        sr[j * lds] = back * tanhf(sr[j * lds] * to_nat);
    }
    if (pb->alibi) { /* - slope · |diag(i) - j|, in log2 units */
      const float sl = pb->alibi[h] * FATTN__LOG2E;
      for (int64_t j = 0; j < n; j++) {
        const int64_t dist = i + diag - (j0 + j);
        sr[j * lds] -= sl * (float)(dist < 0 ? -dist : dist);
      }
    }
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
      const int64_t lo = fattn__row_start(pb, b, i) - j0, lim = fattn__row_limit(pb, b, i) - j0;
      for (int64_t j = 0; j < n && j < lo; j++)
        sr[j * lds] = -INFINITY, masked = 1;
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

/* The key range [*ja, *jb) of chunk c of nc of a unit whose rows attend
 * keys within [ulo, uhi): chunks of plan->chunk keys from ulo, the last to uhi. */
static void chunk_range(const fattn__plan *plan, int64_t ulo, int64_t uhi, int64_t c, int64_t nc,
                        int64_t *ja, int64_t *jb) {
  *ja = nc > 1 ? ulo + c * plan->chunk : ulo;
  *jb = nc > 1 && c + 1 < nc ? ulo + (c + 1) * plan->chunk : uhi;
  if (*jb > uhi) *jb = uhi;
  if (*ja < ulo) *ja = ulo;
}

/* A unit of at most t->small_rows rows (decode: the G heads of one query
 * position) with contiguous K / V rows: rows row-major, vectors along
 * head_dim (kernel.h), so no lane of a row vector idles. Keys [ja, jhi). */
static void run_unit_small(const fattn__problem *pb, const fattn__kernel_table *t,
                           const fattn__plan *plan, const unit_ws *w, int64_t b, int64_t hk,
                           int64_t i0, int64_t bq, int64_t ja, int64_t jhi, int first,
                           const sink *sk) {
  const int64_t G = pb->G, D = pb->D, Dv = pb->Dv, bn = plan->bn, rows = G * bq;
  const int64_t jlo_all = fattn__row_limit(pb, b, i0),
                lo_last = fattn__row_start(pb, b, i0 + bq - 1);
  const int modify = pb->softcap != 0.0f || pb->alibi;
  const float qscale = pb->scale * FATTN__LOG2E;
  const int k_half = (pb->k.dtype == FATTN_F16 || pb->k.dtype == FATTN_BF16) && pb->k.s[3] <= 1;
  const int v_half = (pb->v.dtype == FATTN_F16 || pb->v.dtype == FATTN_BF16) && pb->v.s[3] <= 1;
  /* I8 / F8 K / V dequantised on load by the kernels (decode streams the cache once) */
  const int k_q8 = pb->k_scaled && pb->k.s[3] <= 1 && t->qk_rows_q8;
  const int v_q8 = pb->v_scaled && pb->v.s[3] <= 1 && t->pv_rows_q8;
  /* a paged cache through row pointers: one kernel call per key block */
  const int k_gather = pb->block_table && t->qk_rows_gather && pb->k.s[3] <= 1 &&
                       (pb->k.dtype == FATTN_F32 || k_half || k_q8);
  const int v_gather = pb->block_table && t->pv_rows_gather && pb->v.s[3] <= 1 &&
                       (pb->v.dtype == FATTN_F32 || v_half || v_q8);
  for (int64_t r = 0; r < rows; r++) {
    const void *src = fattn__q_row(pb, b, hk * G + r / bq, i0 + r % bq);
    for (int64_t p = 0; p < D; p++)
      w->qt[r * D + p] = fattn__load(src, p * pb->q.s[3], pb->q.dtype) * qscale;
  }
  init_rows(pb, hk, bq, rows, rows, first, w->m, w->l);
  memset(w->ot, 0, (size_t)(rows * Dv) * sizeof(float));
  for (int64_t j0 = ja; j0 < jhi; j0 += bn) {
    const int64_t n = jhi - j0 < bn ? jhi - j0 : bn;
    if (k_gather) {
      fill_rows(pb, 0, b, hk, j0, n, w->kp, w->ks);
      t->qk_rows_gather(rows, n, D, w->qt, w->kp, pb->k.dtype, w->ks, w->st, bn);
    } else if (pb->k.dtype == FATTN_F32 || (k_half && t->qk_rows_half) || k_q8) { /* by page */
      for (int64_t off = 0; off < n;) {
        int64_t len = n - off;
        const kv_run r = kv_seg(pb, 0, b, hk, j0 + off, &len);
        if (pb->k.dtype == FATTN_F32)
          t->qk_rows(rows, len, D, w->qt, (const float *)r.p, r.ld, w->st + off, bn);
        else if (k_q8)
          t->qk_rows_q8(rows, len, D, w->qt, r.p, r.ld, pb->k.dtype, r.scale, r.lds, w->st + off,
                        bn);
        else /* convert on load */
          t->qk_rows_half(rows, len, D, w->qt, r.p, r.ld, pb->k.dtype, w->st + off, bn);
        off += len;
      }
    } else {
      kv_convert(t, pb, 0, b, hk, j0, n, D, w->kc);
      t->qk_rows(rows, n, D, w->qt, w->kc, D, w->st, bn);
    }
    const int straddles = j0 + n > jlo_all || j0 < lo_last;
    const int masked = (pb->has_mask || straddles || modify) &&
                       fattn__mask_tile(pb, b, hk, i0, bq, j0, n, straddles, w->st, bn, 1);
    t->softmax_rows(rows, n, w->st, bn, w->m, w->l, w->alpha);
    if (v_gather && !masked) {
      fill_rows(pb, 1, b, hk, j0, n, w->vp, w->vs);
      t->pv_rows_gather(rows, n, Dv, w->st, bn, w->vp, pb->v.dtype, w->vs, w->alpha, w->ot, Dv);
      continue;
    }
    if (pb->v.dtype == FATTN_F32 || (((v_half && t->pv_rows_half) || v_q8) && !masked)) {
      for (int64_t off = 0; off < n;) {
        int64_t len = n - off;
        const kv_run r = kv_seg(pb, 1, b, hk, j0 + off, &len);
        const float *al = off ? w->ones : w->alpha;
        if (v_q8)
          t->pv_rows_q8(rows, len, Dv, w->st + off, bn, r.p, r.ld, pb->v.dtype, r.scale, r.lds, al,
                        w->ot, Dv);
        else if (pb->v.dtype != FATTN_F32)
          t->pv_rows_half(rows, len, Dv, w->st + off, bn, r.p, r.ld, pb->v.dtype, al, w->ot, Dv);
        else if (masked && v_nonfinite((const float *)r.p, r.ld, 1, len, Dv))
          pv_skip_zero(rows, len, Dv, w->st + off, bn, 1, (const float *)r.p, r.ld, 1, al, w->ot,
                       Dv, 1);
        else
          t->pv_rows(rows, len, Dv, w->st + off, bn, (const float *)r.p, r.ld, al, w->ot, Dv);
        off += len;
      }
      continue;
    }
    kv_convert(t, pb, 1, b, hk, j0, n, Dv, w->vc);
    if (masked && v_nonfinite(w->vc, Dv, 1, n, Dv))
      pv_skip_zero(rows, n, Dv, w->st, bn, 1, w->vc, Dv, 1, w->alpha, w->ot, Dv, 1);
    else
      t->pv_rows(rows, n, Dv, w->st, bn, w->vc, Dv, w->alpha, w->ot, Dv);
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

/* ---- the tile family ---------------------------------------------------------------- */

/* Packed key block kb of (sequence b, kv head hk): K (kb_elems bf16), then V
 * (vb_elems); its non-finite-V byte in *bad. */
static uint16_t *pack_block(const fattn__plan *plan, char *pack, const fattn__problem *pb,
                            int64_t b, int64_t hk, int64_t kb, uint8_t **bad) {
  const int64_t idx = (b * pb->Hkv + hk) * plan->nkb + kb;
  const int64_t blocks = pb->B * pb->Hkv * plan->nkb;
  *bad = (uint8_t *)pack + blocks * (plan->kb_elems + plan->vb_elems) * 2 + idx;
  return (uint16_t *)(void *)pack + idx * (plan->kb_elems + plan->vb_elems);
}

/* Keys [lo, hi) of sequence b that some row may attend: the first row's
 * start to the last row's limit (both grow with the row). */
static void seq_keys(const fattn__problem *pb, int64_t b, int64_t *lo, int64_t *hi) {
  const int64_t lq = fattn__seq_lq(pb, b), lk = fattn__seq_lk(pb, b);
  *lo = lq > 0 ? fattn__row_start(pb, b, 0) : 0;
  *hi = lq > 0 ? fattn__row_limit(pb, b, lq - 1) : 0;
  if (*hi > lk) *hi = lk;
  if (*lo > *hi) *lo = *hi;
}

/* Nonzero if sequence b has a unit that runs on tiles (not the row kernels). */
static int seq_tiles(const fattn__problem *pb, const fattn__kernel_table *t,
                     const fattn__plan *plan, int64_t b) {
  const int64_t lq = fattn__seq_lq(pb, b);
  return lq > 0 && !fattn__unit_small(pb, t, pb->G * (lq < plan->bm ? lq : plan->bm));
}

/* Packs key block kb (keys [kb·bn, min((kb+1)·bn, hi))) of K and V of
 * (b, hk) into the engine's B layouts: in place from contiguous rows, through
 * f32 (tkv) from strided ones. Flags a NaN or infinity in the packed V. */
static void pack_kv_block(const fattn__problem *pb, const fattn__kernel_table *t,
                          const fattn__plan *plan, const unit_ws *w, char *pack, int64_t b,
                          int64_t hk, int64_t kb, int64_t hi) {
  const fattn__tile_table *tt = plan->tile;
  const int64_t j0 = kb * plan->bn, n = hi - j0 < plan->bn ? hi - j0 : plan->bn;
  uint8_t *bad;
  uint16_t *kp = pack_block(plan, pack, pb, b, hk, kb, &bad), *vp = kp + plan->kb_elems;
  for (int v = 0; v < 2; v++) {
    const fattn__view *vw = v ? &pb->v : &pb->k;
    const int64_t d = v ? pb->Dv : pb->D;
    int64_t len = n;
    const kv_run r = kv_seg(pb, v, b, hk, j0, &len); /* dense: one run */
    const void *src = r.p;
    int64_t ld = r.ld;
    fattn_dtype dt = vw->dtype;
    if (r.sd > 1) {
      kv_convert(t, pb, v, b, hk, j0, n, d, w->tkv);
      src = w->tkv, ld = d, dt = FATTN_F32;
    }
    if (v)
      tt->pack_v(n, d, src, ld, dt, vp);
    else
      tt->pack_k(n, d, src, ld, dt, kp);
  }
  uint16_t acc = 0; /* over what pack_v wrote: ceil32(n) keys × ceil16(Dv) */
  const int64_t written = fattn__round_up(n, 32) * fattn__round_up(pb->Dv, 16);
  for (int64_t e = 0; e < written; e++)
    acc |= (uint16_t)((vp[e] & 0x7f80u) == 0x7f80u);
  *bad = (uint8_t)acc;
}

/* A unit on the tile engine (plan->tile): Q packed as bf16 once, then per
 * key block (aligned at multiples of bn, packed by the pre-pass) S = Q·Kᵀ on
 * tiles, the masks on S, the table's row-major online softmax, P rounded to
 * bf16 once, and O = alpha·O + P·V on tiles, all f32 accumulation. Keys of a
 * block outside [ja, jhi) are masked like any other. Keys [ja, jhi). */
static void run_unit_tile(const fattn__problem *pb, const fattn__kernel_table *t,
                          const fattn__plan *plan, const unit_ws *w, int64_t b, int64_t hk,
                          int64_t i0, int64_t bq, int64_t ja, int64_t jhi, int first,
                          const sink *sk, char *pack) {
  const fattn__tile_table *tt = plan->tile;
  const int64_t G = pb->G, D = pb->D, Dv = pb->Dv, bn = plan->bn, rp = plan->rows_pad;
  const int64_t rows = G * bq, r16 = fattn__round_up(rows, 16);
  const int64_t lda = fattn__round_up(D, 32), lds = fattn__round_up(bn, 16),
                ldp = fattn__round_up(bn, 32), ldo = fattn__round_up(Dv, 16);
  const int64_t jlo_all = fattn__row_limit(pb, b, i0),
                lo_last = fattn__row_start(pb, b, i0 + bq - 1);
  const int modify = pb->softcap != 0.0f || pb->alibi;
  int64_t klo, khi;
  seq_keys(pb, b, &klo, &khi);
  for (int64_t g = 0; g < G; g++) { /* head g's rows from g·bq: whole tiles, padding zero */
    const void *src = fattn__q_row(pb, b, hk * G + g, i0);
    if (pb->q.s[3] <= 1) {
      tt->pack_a(bq, D, src, pb->q.s[2], pb->q.dtype, w->tq + g * bq * lda, lda);
    } else {
      for (int64_t r = 0; r < bq; r++)
        for (int64_t p = 0; p < D; p++)
          w->tqc[r * D + p] = fattn__load(src, r * pb->q.s[2] + p * pb->q.s[3], pb->q.dtype);
      tt->pack_a(bq, D, w->tqc, D, FATTN_F32, w->tq + g * bq * lda, lda);
    }
  }
  memset(w->tq + rows * lda, 0, (size_t)((r16 - rows) * lda) * 2);
  init_rows(pb, hk, bq, rows, rp, first, w->m, w->l);
  memset(w->to, 0, (size_t)(r16 * ldo) * sizeof(float));
  const float qscale = pb->scale * FATTN__LOG2E;
  for (int64_t kb = ja / bn; kb * bn < jhi; kb++) {
    const int64_t j0 = kb * bn, n = khi - j0 < bn ? khi - j0 : bn;
    uint8_t *bad;
    const uint16_t *kp = pack_block(plan, pack, pb, b, hk, kb, &bad), *vp = kp + plan->kb_elems;
    tt->qk(rows, n, D, w->tq, lda, kp, qscale, w->ts, lds);
    const int straddles = j0 + n > jlo_all || j0 < lo_last;
    int masked = (pb->has_mask || straddles || modify) &&
                 fattn__mask_tile(pb, b, hk, i0, bq, j0, n, straddles, w->ts, lds, 1);
    /* the block's keys outside this unit's (or chunk's) range */
    const int64_t clo = ja > j0 ? ja - j0 : 0, chi = jhi - j0 < n ? jhi - j0 : n;
    if (clo > 0 || chi < n) {
      for (int64_t r = 0; r < rows; r++) {
        float *sr = w->ts + r * lds;
        for (int64_t j = 0; j < clo; j++)
          sr[j] = -INFINITY;
        for (int64_t j = chi; j < n; j++)
          sr[j] = -INFINITY;
      }
      masked = 1;
    }
    t->softmax_rows(rows, n, w->ts, lds, w->m, w->l, w->alpha);
    if (masked && *bad) { /* P = 0 must not meet a NaN or inf of V: f32 terms, zeros skipped */
      if (pb->v.dtype == FATTN_F32) {
        int64_t len = n;
        const kv_run r = kv_seg(pb, 1, b, hk, j0, &len);
        pv_skip_zero(rows, n, Dv, w->ts, lds, 1, (const float *)r.p, r.ld, r.sd, w->alpha, w->to,
                     ldo, 1);
      } else {
        kv_convert(t, pb, 1, b, hk, j0, n, Dv, w->vc);
        pv_skip_zero(rows, n, Dv, w->ts, lds, 1, w->vc, Dv, 1, w->alpha, w->to, ldo, 1);
      }
      continue;
    }
    tt->pack_p(rows, n, w->ts, lds, w->tp, ldp);
    tt->pv(rows, n, Dv, w->tp, ldp, vp, w->alpha, w->to, ldo);
  }

  float *inv = w->alpha;
  for (int64_t r = 0; r < rows; r++)
    inv[r] = row_inv(w->l[r]);
  if (sk->o) {
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t c = 0; c < Dv; c++)
        sk->o[r * Dv + c] = w->to[r * ldo + c] * inv[r];
      sk->m[r] = w->m[r];
      sk->l[r] = w->l[r];
    }
    return;
  }
  for (int64_t r = 0; r < rows; r++) { /* O / l in place */
    float *orow = w->to + r * ldo;
    for (int64_t c = 0; c < Dv; c++)
      orow[c] *= inv[r];
  }
  for (int64_t g = 0; g < G; g++) {
    const int64_t h = hk * G + g;
    const float *og = w->to + g * bq * ldo;
    if (pb->out.dtype == FATTN_F32 && pb->out.s[3] <= 1) {
      float *dst = fattn__out_row(pb, b, h, i0);
      for (int64_t r = 0; r < bq; r++)
        memcpy(dst + r * pb->out.s[2], og + r * ldo, (size_t)Dv * sizeof(float));
    } else if (pb->out.s[3] <= 1) { /* half out: rounded (vectorised) */
      t->cvt_from_f32(bq, Dv, og, ldo, pb->out.dtype, fattn__out_erow(pb, b, h, i0), pb->out.s[2]);
    } else {
      void *dst = fattn__out_erow(pb, b, h, i0);
      for (int64_t r = 0; r < bq; r++)
        for (int64_t c = 0; c < Dv; c++)
          fattn__store(dst, r * pb->out.s[2] + c * pb->out.s[3], pb->out.dtype, og[r * ldo + c]);
    }
    if (pb->has_lse)
      for (int64_t r = 0; r < bq; r++)
        *fattn__lse_at(pb, b, h, i0 + r) = row_lse(w->m[g * bq + r], w->l[g * bq + r]);
  }
}

/* Unit (sequence b, kv head hk, positions from i0), chunk c of nc: the
 * whole key range when sk->o is NULL, one split-KV chunk otherwise. */
static void run_unit(const fattn__problem *pb, const fattn__kernel_table *t,
                     const fattn__plan *plan, const unit_ws *w, int64_t b, int64_t hk, int64_t i0,
                     int64_t c, int64_t nc, const sink *sk, char *pack) {
  const int64_t G = pb->G, D = pb->D, Dv = pb->Dv, bn = plan->bn, rp = plan->rows_pad;
  const int64_t lq = fattn__seq_lq(pb, b);
  const int64_t bq = lq - i0 < plan->bm ? lq - i0 : plan->bm;
  const int64_t rows = G * bq;
  /* Row ranges grow with i: the first row's start and the last row's limit
   * bound the keys of the whole unit. */
  const int64_t ulo = fattn__row_start(pb, b, i0);
  int64_t uhi = fattn__row_limit(pb, b, i0 + bq - 1), ja, jhi;
  if (uhi < ulo) uhi = ulo;
  chunk_range(plan, ulo, uhi, c, nc, &ja, &jhi);
  const int first = c == 0;
  if (sk->o && ja >= jhi) {
    sink_empty(pb, sk, hk, bq, rows, first);
    return;
  }
  /* the small kernels want contiguous K / V rows: F32 ones in place, or the
   * converted copy of others */
  if (fattn__unit_small(pb, t, rows)) {
    run_unit_small(pb, t, plan, w, b, hk, i0, bq, ja, jhi, first, sk);
    return;
  }
  if (plan->tile) {
    run_unit_tile(pb, t, plan, w, b, hk, i0, bq, ja, jhi, first, sk, pack);
    return;
  }
  /* keys below jlo_all: no row past its limit; at or above lo_last: none before its start */
  const int64_t jlo_all = fattn__row_limit(pb, b, i0),
                lo_last = fattn__row_start(pb, b, i0 + bq - 1);
  const int modify = pb->softcap != 0.0f || pb->alibi;

  /* Qt[p][r] = scale·log2(e) · q[r][p], head by head (scores in log2 units, so
   * the softmax needs 2^x only); padding rows are zero. */
  const float qscale = pb->scale * FATTN__LOG2E;
  const fattn__bf16_dot_table *bd = plan->bf16_dot;
  if (bd) { /* BF16 pairs, unscaled (the scale goes on the sums); Qp in qt's space */
    uint16_t *qp = (uint16_t *)w->qt;
    const int64_t np = (D + 1) / 2;
    for (int64_t g = 0; g < G; g++)
      bd->pack_q(bq, D, fattn__q_row(pb, b, hk * G + g, i0), pb->q.s[2], pb->q.dtype,
                 qp + 2 * g * bq, rp);
    for (int64_t t2 = 0; t2 < np; t2++)
      memset(qp + 2 * (t2 * rp + rows), 0, (size_t)(rp - rows) * 4);
  }
  for (int64_t g = 0; g < G && !bd; g++) {
    const void *src = fattn__q_row(pb, b, hk * G + g, i0);
    if (pb->q.dtype == FATTN_F32 && pb->q.s[3] <= 1) {
      t->pack_q(bq, D, (const float *)src, pb->q.s[2], qscale, w->qt + g * bq, rp);
    } else if (pb->q.s[3] <= 1) { /* half q: rows to f32 (vectorised), then packed */
      t->cvt_rows(bq, D, src, pb->q.s[2], pb->q.dtype, w->qc, D);
      t->pack_q(bq, D, w->qc, D, qscale, w->qt + g * bq, rp);
    } else { /* strided q: element by element (rows · D per unit) */
      for (int64_t r = 0; r < bq; r++)
        for (int64_t p = 0; p < D; p++)
          w->qt[p * rp + g * bq + r] =
              fattn__load(src, r * pb->q.s[2] + p * pb->q.s[3], pb->q.dtype) * qscale;
    }
  }
  for (int64_t p = 0; p < D && !bd; p++)
    for (int64_t r = rows; r < rp; r++)
      w->qt[p * rp + r] = 0.0f;
  init_rows(pb, hk, bq, rows, rp, first, w->m, w->l);
  memset(w->ot, 0, (size_t)(Dv * rp) * sizeof(float));

  for (int64_t j0 = ja; j0 < jhi; j0 += bn) {
    const int64_t n = jhi - j0 < bn ? jhi - j0 : bn;
    if (bd || pb->k.dtype == FATTN_F32) { /* K in place, page by page */
      for (int64_t off = 0; off < n;) {
        int64_t len = n - off;
        const kv_run r = kv_seg(pb, 0, b, hk, j0 + off, &len);
        if (bd)
          bd->qk(rp, len, D, (const uint16_t *)w->qt, (const uint16_t *)r.p, r.ld, qscale,
                 w->st + off * rp, rp);
        else
          t->qk(rp, len, D, w->qt, (const float *)r.p, r.ld, r.sd, w->st + off * rp, rp);
        off += len;
      }
    } else {
      kv_convert(t, pb, 0, b, hk, j0, n, D, w->kc);
      t->qk(rp, n, D, w->qt, w->kc, D, 1, w->st, rp);
    }
    const int straddles = j0 + n > jlo_all || j0 < lo_last;
    const int masked = (pb->has_mask || straddles || modify) &&
                       fattn__mask_tile(pb, b, hk, i0, bq, j0, n, straddles, w->st, 1, rp);
    t->softmax(rp, n, w->st, rp, w->m, w->l, w->alpha);
    if (pb->v.dtype == FATTN_F32) {
      for (int64_t off = 0; off < n;) {
        int64_t len = n - off;
        const kv_run r = kv_seg(pb, 1, b, hk, j0 + off, &len);
        const float *vb = (const float *)r.p, *al = off ? w->ones : w->alpha;
        if (masked && v_nonfinite(vb, r.ld, r.sd, len, Dv))
          pv_skip_zero(rows, len, Dv, w->st + off * rp, 1, rp, vb, r.ld, r.sd, al, w->ot, 1, rp);
        else
          t->pv(rp, len, Dv, w->st + off * rp, rp, vb, r.ld, r.sd, al, w->ot, rp);
        off += len;
      }
    } else {
      kv_convert(t, pb, 1, b, hk, j0, n, Dv, w->vc);
      if (masked && v_nonfinite(w->vc, Dv, 1, n, Dv))
        pv_skip_zero(rows, n, Dv, w->st, 1, rp, w->vc, Dv, 1, w->alpha, w->ot, 1, rp);
      else
        t->pv(rp, n, Dv, w->st, rp, w->vc, Dv, 1, w->alpha, w->ot, rp);
    }
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
        for (int64_t c2 = 0; c2 < Dv; c2++)
          fattn__store(dst, r * pb->out.s[2] + c2 * pb->out.s[3], pb->out.dtype,
                       w->ot[c2 * rp + g * bq + r] * inv[g * bq + r]);
    }
    if (pb->has_lse)
      for (int64_t r = 0; r < bq; r++)
        *fattn__lse_at(pb, b, h, i0 + r) = row_lse(w->m[g * bq + r], w->l[g * bq + r]);
  }
}

/* out / lse of a unit from its nc chunks' partials (slots first .. first +
 * nc - 1), in chunk order: with M = max m_c over non-empty chunks and
 * w_c = l_c · 2^(m_c - M), O = Σ w_c · (O / l)_c / Σ w_c and
 * lse = ln 2 · (M + log2 Σ w_c). */
static void merge_unit(const fattn__problem *pb, const fattn__plan *plan, char *partials,
                       int64_t first, int64_t nc, int64_t b, int64_t hk, int64_t i0,
                       float *acc /* Dv floats */) {
  const int64_t lq = fattn__seq_lq(pb, b);
  const int64_t bq = lq - i0 < plan->bm ? lq - i0 : plan->bm;
  const int64_t rows = pb->G * bq, Dv = pb->Dv, so = pb->out.s[3];
  for (int64_t r = 0; r < rows; r++) {
    const int64_t h = hk * pb->G + r / bq, i = i0 + r % bq;
    /* an empty chunk has l = 0; a NaN in m or l must reach the row */
    float M = -INFINITY, L = 0.0f;
    for (int64_t c = 0; c < nc; c++) {
      const sink s = slot_at(pb, plan, partials, first + c);
      if (s.l[r] != 0.0f && (s.m[r] > M || isnan(s.m[r]) || isnan(s.l[r])))
        M = isnan(s.l[r]) ? NAN : s.m[r];
      if (isnan(M)) break;
    }
    for (int64_t x = 0; x < Dv; x++)
      acc[x] = 0.0f;
    for (int64_t c = 0; c < nc; c++) {
      const sink s = slot_at(pb, plan, partials, first + c);
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

/* The schedule, in the workspace after the partials: sequences in order of
 * decreasing work (ties by index), the first item of each in that order, and
 * each sequence's query blocks and chunks. */
typedef struct sched {
  int64_t *order, *first, *nqb, *nc;
} sched;

typedef struct seq_key {
  int64_t work, b;
} seq_key;

static int cmp_work(const void *a, const void *b) {
  const seq_key *x = a, *y = b;
  if (x->work != y->work) return x->work > y->work ? -1 : 1;
  return x->b < y->b ? -1 : x->b > y->b;
}

static sched make_sched(const fattn__problem *pb, const fattn__plan *plan, char *mem) {
  const int64_t B = pb->B;
  sched s;
  s.order = (int64_t *)mem;
  s.first = s.order + B;
  s.nqb = s.first + B + 1;
  s.nc = s.nqb + B;
  /* the sort keys borrow first[] and nqb[] (2B int64 = B seq_keys) */
  seq_key *keys = (seq_key *)s.first;
  int sorted = 1;
  for (int64_t b = 0; b < B; b++) {
    int64_t nqb, nc, span;
    fattn__seq_work(pb, plan->bm, plan->chunk, b, &nqb, &nc, &span);
    keys[b].work = fattn__seq_lq(pb, b) * span;
    keys[b].b = b;
    if (b && cmp_work(&keys[b - 1], &keys[b]) > 0) sorted = 0;
  }
  if (!sorted) qsort(keys, (size_t)B, sizeof *keys, cmp_work);
  for (int64_t k = 0; k < B; k++)
    s.order[k] = keys[k].b;
  int64_t at = 0;
  for (int64_t k = 0; k < B; k++) {
    const int64_t b = s.order[k];
    int64_t nqb, nc, span;
    fattn__seq_work(pb, plan->bm, plan->chunk, b, &nqb, &nc, &span);
    s.first[k] = at;
    s.nqb[b] = nqb;
    s.nc[b] = nc;
    at += pb->Hkv * nqb * nc;
  }
  s.first[B] = at;
  return s;
}

/* The position k in order of the sequence item `it` belongs to. */
static int64_t find_seq(const sched *s, int64_t B, int64_t it) {
  int64_t lo = 0, hi = B - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (s->first[mid] <= it)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

void fattn__driver_run(const fattn__problem *pb, const fattn__kernel_table *t,
                       const fattn__plan *plan, void *workspace) {
  char *partials = (char *)workspace + plan->per_thread_bytes * plan->nthreads;
  const sched sc = make_sched(pb, plan, partials + plan->partial_bytes);
  const int64_t total = sc.first[pb->B];
  const int split = plan->nchunks > 1;
  /* Units go head by head (consecutive units share K and V, which stay hot in
   * L2/L3: measured 62% -> 79% of peak on a causal 32-head, 2048-token shape
   * against interleaving heads). Causal units get more work the later their
   * query block, so within a head the heavy blocks go first: each next unit
   * reads a prefix of the keys just read, and the schedule ends on light units.
   * Sequences of a varlen batch go heaviest first, for the same reason. */
  const int heavy_first = pb->causal != FATTN_CAUSAL_NONE;
  /* Pinning: workers go to the cores the caller is not confined to. */
  const int caller_slot = plan->pin != FATTN_PIN_NONE ? fattn__caller_slot(plan->pin) : -1;
  /* the tile family's packed K and V: the workspace's last piece */
  char *pack = plan->tile ? (char *)workspace + plan->total_bytes - plan->pack_bytes : NULL;
  const int64_t npack = plan->tile ? pb->B * pb->Hkv * plan->nkb : 0;
#pragma omp parallel num_threads(plan->nthreads) if (plan->nthreads > 1)
  {
    int tid = 0;
#if defined(_OPENMP)
    tid = omp_get_thread_num();
#endif
    if (plan->pin != FATTN_PIN_NONE && tid > 0) fattn__pin_worker(plan->pin, tid, caller_slot);
    const unsigned fp = fattn__fp_enter(); /* denormals flushed, round to nearest */
    const unit_ws w = layout(pb, plan, (char *)workspace + (int64_t)tid * plan->per_thread_bytes);
    if (npack) { /* every key block some tile unit reads, once; the loop ends on a barrier */
#pragma omp for schedule(dynamic, 1)
      for (int64_t x = 0; x < npack; x++) {
        const int64_t b = x / (pb->Hkv * plan->nkb), hk = x / plan->nkb % pb->Hkv,
                      kb = x % plan->nkb;
        int64_t lo, hi;
        seq_keys(pb, b, &lo, &hi);
        if (seq_tiles(pb, t, plan, b) && kb * plan->bn < hi && (kb + 1) * plan->bn > lo)
          pack_kv_block(pb, t, plan, &w, pack, b, hk, kb, hi);
      }
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < total; it++) {
      const int64_t k = find_seq(&sc, pb->B, it), b = sc.order[k];
      const int64_t nqb = sc.nqb[b], nc = sc.nc[b], local = it - sc.first[k];
      const int64_t hk = local / (nqb * nc), u = local % (nqb * nc) / nc, c = local % nc;
      const int64_t qb = heavy_first ? nqb - 1 - u : u;
      const sink sk = nc > 1 ? slot_at(pb, plan, partials, it) : (sink){NULL, NULL, NULL};
      run_unit(pb, t, plan, &w, b, hk, qb * plan->bm, c, nc, &sk, pack);
    }
    if (plan->tile) plan->tile->release(); /* this thread's tile state back to init */
    if (split) {                           /* after the loop's barrier: every chunk is done */
#pragma omp for schedule(static)
      for (int64_t it = 0; it < total; it++) {
        const int64_t k = find_seq(&sc, pb->B, it), b = sc.order[k];
        const int64_t nqb = sc.nqb[b], nc = sc.nc[b], local = it - sc.first[k];
        if (nc == 1 || local % nc != 0) continue; /* unit heads of split units only */
        const int64_t hk = local / (nqb * nc), u = local % (nqb * nc) / nc;
        const int64_t qb = heavy_first ? nqb - 1 - u : u;
        merge_unit(pb, plan, partials, it, nc, b, hk, qb * plan->bm, w.ot);
      }
    }
    fattn__fp_leave(fp);
  }
}

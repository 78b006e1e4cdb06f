/* Test harness: builds cases, runs backends, compares with the reference.
 *
 * Tolerance (per output row i, from FLT_EPSILON = u and the reduction lengths,
 * not a loose constant):
 *   δ_i  bound on the absolute error of any score of row i in f32:
 *        (D + 2)·u·max_j |scale|·Σ_p |q_ip·k_jp|  (a dot product of D terms,
 *        plus the pre-scaling of q by scale·log2(e): the fused kernels work in
 *        log2 units) + 2u·max_j (|s_ij| + |mask_ij|) with an additive mask (the
 *        rounding of the addition). DATA_LARGE* uses integer data and
 *        scale = fl(ln 2), whose log2-unit scale fl(scale·log2 e) is exactly 1:
 *        every product and partial sum is exact, and only the difference
 *        between that 1 and the true scale·log2 e (< u) is left:
 *        2u·max_j |scale|·Σ_p |q_ip·k_jp|.
 *   Perturbing each softmax weight by a relative η = δ_i + 4u (exp's own error
 *   is within 4 ulp) moves a convex combination of values by at most 2η·vmax;
 *   summing n_i attended terms in f32 (plus one rescale per key block) adds at
 *   most (2·n_i + 16)·u·vmax to numerator and denominator together. So
 *        |out − ref| ≤ vmax·(2.5·δ_i + (4·n_i + 16)·u) + u·|ref|
 *        |lse − ref| ≤ 1.5·δ_i + (2·n_i + 16)·u + 2u·|ref|
 * A bug (a missed rescale, a wrong key, a dropped tile) is an O(1)·vmax error,
 * hundreds of times these bounds at the sizes tested. */
#include "harness.h"

#include "half.h" /* lib/: exact half <-> f32 conversions */

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int g_failures = 0;

uint64_t rng_next(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
double rng_uniform(uint64_t *s) { return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }
int64_t rng_int(uint64_t *s, int64_t lo, int64_t hi) {
  return lo + (int64_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

void tcase_init(tcase *c, int64_t B, int64_t H, int64_t Hkv, int64_t Lq, int64_t Lk, int64_t D) {
  memset(c, 0, sizeof *c);
  c->B = B;
  c->H = H;
  c->Hkv = Hkv;
  c->Lq = Lq;
  c->Lk = Lk;
  c->D = D;
  c->Dv = D;
  c->seed = 1;
}

void tcase_describe(const tcase *c, char *buf, size_t n) {
  static const char *causal[] = {"none", "top_left", "bottom_right"};
  static const char *mask[] = {"none", "additive", "u8"};
  static const char *data[] = {"uniform", "large", "large_inc"};
  static const char *dt[] = {"f32", "f16", "bf16", "u8"};
  snprintf(buf, n,
           "B=%lld H=%lld Hkv=%lld Lq=%lld Lk=%lld D=%lld Dv=%lld causal=%s mask=%s%s%s kv_lens=%d "
           "lse=%d layout=%s inner=%lld data=%s%s%s dtypes(q/kv/out)=%s/%s/%s seed=%llu",
           (long long)c->B, (long long)c->H, (long long)c->Hkv, (long long)c->Lq, (long long)c->Lk,
           (long long)c->D, (long long)c->Dv, causal[c->causal], mask[c->mask],
           c->mask_broadcast ? "(broadcast)" : "", c->mask_empty_rows ? "(empty rows)" : "",
           c->kv_lens, c->lse, c->layout == LAYOUT_BHSD ? "BHSD" : "BSHD",
           (long long)(c->inner > 1 ? c->inner : 1), data[c->data],
           c->self_attention ? " self-attention(q=k=v)" : "",
           c->overlap_rows ? " overlapping-rows" : "", dt[c->dq & 3], dt[c->dkv & 3],
           dt[c->dout & 3], (unsigned long long)c->seed);
}

/* A strided buffer with guard bands on both sides. */
typedef struct buf {
  fattn_tensor t;
  char *alloc;
  size_t bytes, guard, esize;
} buf;

#define GUARD_BYTES 256
static const unsigned char SENTINEL = 0xA5;

/* dims [d0, d1, d2, d3] in layout BHSD, or stored as [d0, d2, d1, d3] (BSHD) with
 * `pad` spare elements after each innermost row (pad < 0: rows overlap). */
static int buf_make(buf *b, fattn_dtype dt, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                    tcase_layout layout, int64_t pad, int64_t inner) {
  b->esize = dt == FATTN_U8 ? 1 : dt == FATTN_F32 ? 4 : 2;
  fattn_tensor *t = &b->t;
  t->dtype = dt;
  t->dims[0] = d0;
  t->dims[1] = d1;
  t->dims[2] = d2;
  t->dims[3] = d3;
  if (inner < 1) inner = 1;
  int64_t row = d3 * inner + pad;
  if (row < 1) row = 1;
  t->strides[3] = inner;
  if (layout == LAYOUT_BHSD) {
    t->strides[2] = row;
    t->strides[1] = d2 * row;
  } else {
    t->strides[1] = row;
    t->strides[2] = d1 * row;
  }
  t->strides[0] = d1 * d2 * row;
  /* d0·d1·d2·row, or up to the last element when rows overlap */
  const int64_t last = (d0 - 1) * t->strides[0] + (d1 - 1) * t->strides[1] +
                       (d2 - 1) * t->strides[2] + (d3 - 1) * inner;
  const size_t elems = (size_t)(d0 * d1 * d2 * row > last + 1 ? d0 * d1 * d2 * row : last + 1);
  b->guard = GUARD_BYTES;
  b->bytes = elems * b->esize;
  b->alloc = malloc(b->bytes + 2 * b->guard);
  if (!b->alloc) return -1;
  memset(b->alloc, SENTINEL, b->bytes + 2 * b->guard);
  t->data = b->alloc + b->guard;
  return 0;
}

static void buf_free(buf *b) { free(b->alloc); }

static void *buf_at(const buf *b, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
  const fattn_tensor *t = &b->t;
  return (char *)t->data +
         (i0 * t->strides[0] + i1 * t->strides[1] + i2 * t->strides[2] + i3 * t->strides[3]) *
             (int64_t)b->esize;
}
/* Element as f32 (F16 / BF16 converted exactly). */
static float fget(const buf *b, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
  const void *e = buf_at(b, i0, i1, i2, i3);
  if (b->t.dtype == FATTN_BF16) return fattn__bf16_to_f32(*(const uint16_t *)e);
  if (b->t.dtype == FATTN_F16) return fattn__f16_to_f32(*(const uint16_t *)e);
  return *(const float *)e;
}

/* Stores x in the buffer's dtype (rounded to nearest even for halves). */
static void fset(const buf *b, int64_t i0, int64_t i1, int64_t i2, int64_t i3, float x) {
  void *e = buf_at(b, i0, i1, i2, i3);
  if (b->t.dtype == FATTN_BF16)
    *(uint16_t *)e = fattn__f32_to_bf16(x);
  else if (b->t.dtype == FATTN_F16)
    *(uint16_t *)e = fattn__f32_to_f16(x);
  else
    *(float *)e = x;
}

/* Everything outside the view's elements must still hold the sentinel. */
static int64_t buf_untouched_outside(const buf *b, const buf *shape) {
  unsigned char *mark = calloc(b->bytes, 1);
  if (!mark) return -1;
  const fattn_tensor *t = &shape->t;
  for (int64_t a = 0; a < t->dims[0]; a++)
    for (int64_t h = 0; h < t->dims[1]; h++)
      for (int64_t i = 0; i < t->dims[2]; i++)
        for (int64_t d = 0; d < t->dims[3]; d++)
          memset(mark + ((char *)buf_at(b, a, h, i, d) - (char *)b->t.data), 1, b->esize);
  int64_t bad = 0;
  for (size_t i = 0; i < b->guard; i++) {
    bad += (unsigned char)b->alloc[i] != SENTINEL;
    bad += (unsigned char)b->alloc[b->guard + b->bytes + i] != SENTINEL;
  }
  for (size_t i = 0; i < b->bytes; i++)
    bad += !mark[i] && (unsigned char)((char *)b->t.data)[i] != SENTINEL;
  free(mark);
  return bad;
}

typedef struct problem {
  buf q, k, v, mask;
  int32_t *kv_lens;
  float scale; /* 0 = default */
  double scale_eff;
} problem;

static int problem_make(problem *p, const tcase *c) {
  memset(p, 0, sizeof *p);
  uint64_t s = c->seed * 0x2545F4914F6CDD1Dull + 7;
  int64_t pad = c->layout == LAYOUT_BSHD ? 3 : 0;
  if (c->overlap_rows) pad = -(c->D * (c->inner > 1 ? c->inner : 1)) / 2;
  if (c->self_attention) { /* one buffer X seen as q, k and v */
    if (buf_make(&p->q, c->dq, c->B, c->H, c->Lq, c->D, c->layout, pad, c->inner)) return -1;
    for (int64_t b = 0; b < c->B; b++)
      for (int64_t h = 0; h < c->H; h++)
        for (int64_t i = 0; i < c->Lq; i++)
          for (int64_t d = 0; d < c->D; d++)
            fset(&p->q, b, h, i, d, (float)(2 * rng_uniform(&s) - 1));
    p->k = p->q;
    p->v = p->q;
    p->k.alloc = p->v.alloc = NULL; /* owned by q */
    p->scale_eff = 1.0 / sqrt((double)c->D);
    return 0;
  }
  if (buf_make(&p->q, c->dq, c->B, c->H, c->Lq, c->D, c->layout, pad, c->inner) ||
      buf_make(&p->k, c->dkv, c->B, c->Hkv, c->Lk, c->D, c->layout, pad, c->inner) ||
      buf_make(&p->v, c->dkv, c->B, c->Hkv, c->Lk, c->Dv, c->layout, pad, c->inner))
    return -1;
  const int large = c->data != DATA_UNIFORM;
  /* Large data: scale = fl(ln 2), so that the fused kernels' log2-unit scale
   * fl(scale·log2 e) is exactly 1 and every score stays an exact integer. */
  p->scale = large ? 0.693147180559945309f : 0.0f;
  p->scale_eff = large ? (double)0.693147180559945309f : 1.0 / sqrt((double)c->D);
  int64_t *u = malloc((size_t)c->D * sizeof *u);
  if (!u) return -1;
  for (int64_t d = 0; d < c->D; d++)
    u[d] = rng_int(&s, -3, 3);
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t h = 0; h < c->H; h++)
      for (int64_t i = 0; i < c->Lq; i++)
        for (int64_t d = 0; d < c->D; d++)
          fset(&p->q, b, h, i, d,
               large ? (float)(u[d] + rng_int(&s, -1, 1)) : (float)(2 * rng_uniform(&s) - 1));
  /* Logit scale for large data: |q·u| ~ 4·D, aim at |S| ~ 1e4 / ln 2. */
  const int64_t cmax = large ? (int64_t)(1e4 / (4.0 * (double)c->D) + 1) : 0;
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t h = 0; h < c->Hkv; h++)
      for (int64_t j = 0; j < c->Lk; j++) {
        int64_t cj = 0;
        if (c->data == DATA_LARGE) cj = rng_int(&s, -cmax, cmax);
        if (c->data == DATA_LARGE_INC) cj = -cmax + (2 * cmax * j) / (c->Lk > 1 ? c->Lk - 1 : 1);
        for (int64_t d = 0; d < c->D; d++)
          fset(&p->k, b, h, j, d, large ? (float)(cj * u[d]) : (float)(2 * rng_uniform(&s) - 1));
        for (int64_t d = 0; d < c->Dv; d++)
          fset(&p->v, b, h, j, d, (float)(2 * rng_uniform(&s) - 1));
      }
  free(u);
  if (c->mask != MASK_NONE) {
    const int64_t mb = c->mask_broadcast ? 1 : c->B, mh = c->mask_broadcast ? 1 : c->H;
    if (buf_make(&p->mask, c->mask == MASK_U8 ? FATTN_U8 : FATTN_F32, mb, mh, c->Lq, c->Lk,
                 LAYOUT_BHSD, c->overlap_rows ? -(c->Lk / 2) : 0, 1))
      return -1;
    for (int64_t b = 0; b < mb; b++)
      for (int64_t h = 0; h < mh; h++)
        for (int64_t i = 0; i < c->Lq; i++) {
          const int empty = c->mask_empty_rows && i % 7 == 3;
          for (int64_t j = 0; j < c->Lk; j++) {
            void *e = buf_at(&p->mask, b, h, i, j);
            const int drop = empty || rng_uniform(&s) < 0.15;
            if (c->mask == MASK_U8)
              *(uint8_t *)e = drop ? 0 : (uint8_t)rng_int(&s, 1, 255);
            else
              *(float *)e = drop ? -INFINITY : (float)(4 * rng_uniform(&s) - 2);
          }
        }
    if (c->mask_broadcast) p->mask.t.strides[0] = p->mask.t.strides[1] = 0;
  }
  if (c->kv_lens) {
    p->kv_lens = malloc((size_t)c->B * sizeof *p->kv_lens);
    if (!p->kv_lens) return -1;
    for (int64_t b = 0; b < c->B; b++)
      p->kv_lens[b] = b == 0 ? (int32_t)c->Lk : (int32_t)rng_int(&s, 0, c->Lk);
  }
  return 0;
}

static void problem_free(problem *p) {
  buf_free(&p->q);
  buf_free(&p->k);
  buf_free(&p->v);
  buf_free(&p->mask);
  free(p->kv_lens);
}

static fattn_status run_backend(const tcase *c, const problem *p, fattn_backend be,
                                fattn_context *ctx, buf *out, buf *lse) {
  const int64_t pad = c->layout == LAYOUT_BSHD ? 5 : 0;
  if (buf_make(out, c->dout, c->B, c->H, c->Lq, c->Dv, c->layout, pad, c->inner) ||
      buf_make(lse, FATTN_F32, c->B, c->H, c->Lq, 1, LAYOUT_BHSD, 0, 1))
    return FATTN_ERROR_OUT_OF_MEMORY;
  /* Poison every element: one the backend forgets to write stays NaN. */
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t h = 0; h < c->H; h++)
      for (int64_t i = 0; i < c->Lq; i++) {
        for (int64_t d = 0; d < c->Dv; d++)
          fset(out, b, h, i, d, NAN);
        *(float *)buf_at(lse, b, h, i, 0) = NAN;
      }
  fattn_sdpa_params prm;
  fattn_sdpa_params_init(&prm);
  prm.scale = p->scale;
  prm.causal = c->causal;
  prm.attn_mask = c->mask != MASK_NONE ? &p->mask.t : NULL;
  prm.kv_lens = p->kv_lens;
  prm.lse = c->lse ? &lse->t : NULL;
  prm.backend = be;
  return fattn_sdpa(ctx, &p->q.t, &p->k.t, &p->v.t, &out->t, &prm);
}

static double mask_value(const tcase *c, const problem *p, int64_t b, int64_t h, int64_t i,
                         int64_t j) {
  if (c->mask == MASK_NONE) return 0.0;
  const int64_t mb = c->mask_broadcast ? 0 : b, mh = c->mask_broadcast ? 0 : h;
  void *e = buf_at(&p->mask, mb, mh, i, j);
  if (c->mask == MASK_U8) return *(uint8_t *)e ? 0.0 : -INFINITY;
  return *(float *)e;
}

static int64_t row_limit(const tcase *c, const problem *p, int64_t b, int64_t i) {
  int64_t hi = p->kv_lens ? p->kv_lens[b] : c->Lk, lim = c->Lk;
  if (c->causal == FATTN_CAUSAL_TOP_LEFT) lim = i + 1;
  if (c->causal == FATTN_CAUSAL_BOTTOM_RIGHT) lim = i + 1 + c->Lk - c->Lq;
  return lim < hi ? lim : hi;
}

/* Compares `out`/`lse` from backend `be` with the reference's. */
int tiles_for_call(fattn_context *ctx, fattn_backend be, fattn_dtype q, fattn_dtype kv) {
  if (be == FATTN_BACKEND_REFERENCE || be == FATTN_BACKEND_ONEDNN) return 0;
  const int plain = (q == FATTN_F32 || q == FATTN_F16 || q == FATTN_BF16) &&
                    (kv == FATTN_F32 || kv == FATTN_F16 || kv == FATTN_BF16);
  fattn_runtime_info info;
  if (!plain || fattn_get_runtime_info(ctx, &info) != FATTN_SUCCESS || !info.tile_engine[0])
    return 0;
  const int all_bf16 = q == FATTN_BF16 && kv == FATTN_BF16;
  if (info.tiles == FATTN_TILES_BF16) return all_bf16 ? 1 : 2;
  return info.tiles == FATTN_TILES_AUTO && all_bf16;
}

static int compare(const tcase *c, const problem *p, fattn_backend be, int tiles, const buf *out,
                   const buf *lse, const buf *rout, const buf *rlse, double *worst) {
  const double u = FLT_EPSILON;
  char desc[512];
  tcase_describe(c, desc, sizeof desc);
  int64_t outside = buf_untouched_outside(out, out);
  if (outside != 0) {
    fprintf(stderr, "FAIL [%s] %s: %lld bytes written outside out's elements\n",
            fattn_backend_name(be), desc, (long long)outside);
    return 1;
  }
  if (c->lse && buf_untouched_outside(lse, lse) != 0) {
    fprintf(stderr, "FAIL [%s] %s: bytes written outside lse\n", fattn_backend_name(be), desc);
    return 1;
  }
  double ref_max = 0.0, out_max = 0.0;
  const char *bd = getenv("FATTN_BF16_DOT");
  const int bf16_dot_on = bd && strcmp(bd, "on") == 0;
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t h = 0; h < c->H; h++) {
      const int64_t hk = h / (c->H / c->Hkv);
      double vmax = 0.0;
      for (int64_t j = 0; j < c->Lk; j++)
        for (int64_t d = 0; d < c->Dv; d++)
          vmax = fmax(vmax, fabs(fget(&p->v, b, hk, j, d)));
      for (int64_t i = 0; i < c->Lq; i++) {
        const int64_t lim = row_limit(c, p, b, i);
        double dotmax = 0.0, addmax = 0.0; /* max Σ|q·k|·scale; max |score + mask| */
        int64_t n = 0;
        for (int64_t j = 0; j < lim; j++) {
          const double mv = mask_value(c, p, b, h, i, j);
          if (mv == -INFINITY) continue;
          n++;
          double a = 0.0, sc = 0.0;
          for (int64_t d = 0; d < c->D; d++) {
            const double t = (double)fget(&p->q, b, h, i, d) * fget(&p->k, b, hk, j, d);
            a += fabs(t);
            sc += t;
          }
          dotmax = fmax(dotmax, a * p->scale_eff);
          if (c->mask == MASK_ADDITIVE) addmax = fmax(addmax, fabs(sc * p->scale_eff) + fabs(mv));
        }
        /* Integer data (DATA_LARGE*) make the dot products exact; scaling to
         * log2 units and adding an F32 mask still round. */
        double delta = (c->data == DATA_UNIFORM ? (double)(c->D + 2) : 2.0) * u * dotmax;
        delta += 2 * u * addmax;
        /* FATTN_BF16_DOT=on: an F32 / F16 q meeting BF16 K is rounded to BF16
         * (unit roundoff 2^-8) for the dot-product instruction */
        if (bf16_dot_on && c->dkv == FATTN_BF16 && c->dq != FATTN_BF16) delta += 0x1p-8 * dotmax;
        /* tiles: P rounded to BF16 (2^-9 relative, each weight); F32 / F16 q,
         * K and V rounded to BF16 too under FATTN_TILES_BF16 */
        if (tiles == 2) delta += 0x1p-7 * dotmax;
        const double tol = vmax * (2.5 * delta + (4.0 * (double)n + 16) * u +
                                   (tiles ? 0x1p-8 : 0.0) + (tiles == 2 ? 0x1p-8 : 0.0));
        for (int64_t d = 0; d < c->Dv; d++) {
          const double o = fget(out, b, h, i, d), r = fget(rout, b, h, i, d);
          ref_max = fmax(ref_max, fabs(r));
          out_max = fmax(out_max, fabs(o));
          /* half out: both sides rounded once more, at most an ulp apart */
          const double uo = c->dout == FATTN_BF16 ? 0x1p-8 : c->dout == FATTN_F16 ? 0x1p-11 : 0.0;
          const double err = fabs(o - r),
                       lim_err = tol + u * fabs(r) + 2 * uo * fmax(fabs(o), fabs(r));
          if (n == 0 ? o != 0.0 : !(err <= lim_err)) { /* !(<=) also catches NaN */
            fprintf(stderr,
                    "FAIL [%s] %s: out[%lld,%lld,%lld,%lld] = %.9g, reference %.9g, |err| %.3g > "
                    "tol %.3g (row attends %lld keys)\n",
                    fattn_backend_name(be), desc, (long long)b, (long long)h, (long long)i,
                    (long long)d, o, r, err, lim_err, (long long)n);
            return 1;
          }
          if (lim_err > 0 && err / lim_err > *worst) *worst = err / lim_err;
        }
        if (c->lse) {
          const double o = fget(lse, b, h, i, 0), r = fget(rlse, b, h, i, 0);
          const double tl = 1.5 * delta + (2.0 * (double)n + 16) * u + 2 * u * fabs(r);
          const int ok = n == 0 ? (o == -INFINITY && r == -INFINITY) : fabs(o - r) <= tl;
          if (!ok) {
            fprintf(stderr, "FAIL [%s] %s: lse[%lld,%lld,%lld] = %.9g, reference %.9g, tol %.3g\n",
                    fattn_backend_name(be), desc, (long long)b, (long long)h, (long long)i, o, r,
                    tl);
            return 1;
          }
        }
      }
    }
  if (ref_max > 0 && out_max == 0) {
    fprintf(stderr, "FAIL [%s] %s: output is all zeros, reference is not\n", fattn_backend_name(be),
            desc);
    return 1;
  }
  return 0;
}

int tcase_check(const tcase *c, fattn_backend be, fattn_context *const *ctxs, int nctx,
                double *worst) {
  problem p;
  buf rout = {0}, rlse = {0};
  double w = 0.0;
  int rc = 0;
  char desc[512];
  tcase_describe(c, desc, sizeof desc);
  if (problem_make(&p, c)) {
    fprintf(stderr, "out of memory building a case\n");
    problem_free(&p);
    return 1;
  }
  fattn_status st = run_backend(c, &p, FATTN_BACKEND_REFERENCE, NULL, &rout, &rlse);
  if (st != FATTN_SUCCESS) {
    fprintf(stderr, "FAIL [reference] %s: %s\n", desc, fattn_last_error());
    rc = 1;
  }
  for (int x = 0; x < nctx && rc == 0; x++) {
    buf out = {0}, lse = {0};
    st = run_backend(c, &p, be, ctxs[x], &out, &lse);
    if (st == FATTN_ERROR_UNSUPPORTED) {
      rc = 2;
    } else if (st != FATTN_SUCCESS) {
      fprintf(stderr, "FAIL [%s] %s: %s\n", fattn_backend_name(be), desc, fattn_last_error());
      rc = 1;
    } else if ((rc = compare(c, &p, be, tiles_for_call(ctxs[x], be, c->dq, c->dkv), &out, &lse,
                             &rout, &rlse, &w)) != 0) {
      fprintf(stderr, "  (with context #%d of this run)\n", x);
    }
    buf_free(&out);
    buf_free(&lse);
  }
  if (worst && w > *worst) *worst = w;
  buf_free(&rout);
  buf_free(&rlse);
  problem_free(&p);
  return rc;
}

int available_backends(fattn_backend *out) {
  static const fattn_backend all[] = {FATTN_BACKEND_SCALAR, FATTN_BACKEND_AVX2,
                                      FATTN_BACKEND_AVX512, FATTN_BACKEND_NEON,
                                      FATTN_BACKEND_ONEDNN};
  int n = 0;
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    /* Probe with a 1×1×1×1 problem: UNSUPPORTED means not here. */
    float q = 1, k = 1, v = 1, o = 0;
    fattn_tensor tq = fattn_tensor_contiguous(&q, FATTN_F32, 1, 1, 1, 1);
    fattn_tensor tk = fattn_tensor_contiguous(&k, FATTN_F32, 1, 1, 1, 1);
    fattn_tensor tv = fattn_tensor_contiguous(&v, FATTN_F32, 1, 1, 1, 1);
    fattn_tensor to = fattn_tensor_contiguous(&o, FATTN_F32, 1, 1, 1, 1);
    fattn_sdpa_params prm;
    fattn_sdpa_params_init(&prm);
    prm.backend = all[i];
    if (fattn_sdpa(NULL, &tq, &tk, &tv, &to, &prm) == FATTN_SUCCESS) out[n++] = all[i];
  }
  return n;
}

/* The inference-engine features (sliding window, ALiBi, softcap, sinks,
 * varlen batches, paged KV cache, int8 / fp8 KV) held against an oracle
 * written here, from the documented conventions and the logical (unpaged,
 * unpacked, dequantised) data, on every backend: the reference first, then
 * each fused table, across tile edges (head_dim tails, 77-row blocks, pages
 * of 1, 3 and 16 keys, small key blocks) and in combination. Bad inputs get a
 * status and a message with nothing written. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

typedef enum kv_mode { KV_DENSE, KV_VARLEN, KV_PAGED } kv_mode;

typedef struct fcase {
  int64_t nseq, H, Hkv, D, Dv;
  int64_t lq[8], lk[8];
  fattn_causal causal;
  int64_t wl, wr;
  int64_t shift; /* params.diag_shift */
  int alibi, sinks;
  float softcap;
  int varlen_q; /* q packed with cu_seqlens_q (else dense: every lq equal) */
  kv_mode kv;
  int64_t page;     /* KV_PAGED: keys per block */
  fattn_dtype kvdt; /* F32, F16, BF16, I8, F8_E4M3, F8_E5M2 */
  fattn_dtype qdt;  /* F32 or BF16 */
  uint64_t seed;
} fcase;

static const char *dt_name(fattn_dtype t) {
  static const char *n[] = {"f32", "f16", "bf16", "u8", "i8", "e4m3", "e5m2"};
  return (unsigned)t < 7 ? n[t] : "?";
}

static void describe(const fcase *c, char *buf, size_t n) {
  int o = snprintf(buf, n, "nseq=%lld H=%lld Hkv=%lld D=%lld Dv=%lld lq/lk=", (long long)c->nseq,
                   (long long)c->H, (long long)c->Hkv, (long long)c->D, (long long)c->Dv);
  for (int64_t b = 0; b < c->nseq && o > 0 && (size_t)o < n; b++)
    o += snprintf(buf + o, n - (size_t)o, "%lld/%lld,", (long long)c->lq[b], (long long)c->lk[b]);
  if (o > 0 && (size_t)o < n)
    snprintf(buf + o, n - (size_t)o,
             " causal=%d shift=%lld win=(%lld,%lld) alibi=%d softcap=%g sinks=%d varlen_q=%d kv=%s "
             "page=%lld "
             "kv=%s q=%s",
             (int)c->causal, (long long)c->shift, (long long)c->wl, (long long)c->wr, c->alibi,
             (double)c->softcap, c->sinks, c->varlen_q,
             c->kv == KV_DENSE    ? "dense"
             : c->kv == KV_VARLEN ? "varlen"
                                  : "paged",
             (long long)c->page, dt_name(c->kvdt), dt_name(c->qdt));
}

/* ---- quantisation of the test data (the library only dequantises) ---- */

static float e4m3_value(int code) {
  const int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
  if (e == 15 && m == 7) return NAN;
  const float v = e ? ldexpf(1.0f + m / 8.0f, e - 7) : ldexpf(m / 8.0f, -6);
  return s ? -v : v;
}
static float e5m2_value(int code) {
  const int s = code >> 7, e = (code >> 2) & 31, m = code & 3;
  if (e == 31) return m ? NAN : (s ? -INFINITY : INFINITY);
  const float v = e ? ldexpf(1.0f + m / 4.0f, e - 15) : ldexpf(m / 4.0f, -14);
  return s ? -v : v;
}
/* Nearest code (ties to the first found): exhaustive, fine for tests. */
static uint8_t to_fp8(float x, int e4m3) {
  int best = 0;
  float bd = INFINITY;
  for (int c = 0; c < 256; c++) {
    const float v = e4m3 ? e4m3_value(c) : e5m2_value(c);
    if (!isfinite(v)) continue;
    const float d = fabsf(v - x);
    if (d < bd) bd = d, best = c;
  }
  return (uint8_t)best;
}
static uint16_t to_bf16(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}
static float from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float x;
  memcpy(&x, &u, 4);
  return x;
}
/* IEEE half (test data is in [-2, 2]: no overflow). */
static uint16_t to_f16(float x) {
  if (fabsf(x) < 6.103515625e-05f) /* below 2^-14: subnormal, m · 2^-24 */
    return (uint16_t)((x < 0 ? 0x8000 : 0) | lrintf(fabsf(x) * 16777216.0f));
  int e;
  const float m = frexpf(fabsf(x), &e); /* x = m · 2^e, m in [0.5, 1) */
  int exp = e - 1 + 15;
  long mant = lrintf((m * 2.0f - 1.0f) * 1024.0f);
  if (mant == 1024) mant = 0, exp++;
  return (uint16_t)((x < 0 ? 0x8000 : 0) | (exp << 10) | mant);
}
static float from_f16(uint16_t h) {
  const int e = (h >> 10) & 31, m = h & 1023;
  const float v = e ? ldexpf(1.0f + m / 1024.0f, e - 15) : ldexpf(m / 1024.0f, -14);
  return h & 0x8000 ? -v : v;
}

/* ---- a built problem ---- */

typedef struct built {
  /* logical data, f32 after any rounding / quantisation: [b][h][i][p] packed by sequence */
  float *q, *k, *v; /* q: Σlq × H × D; k: Σlk × Hkv × D; v: Σlk × Hkv × Dv (seq-major) */
  int64_t qoff[9], koff[9]; /* row offsets per sequence */
  float slopes[64], sinkv[64];
  /* what the library is given */
  void *qbuf, *kbuf, *vbuf;
  float *ksc, *vsc;
  fattn_tensor tq, tk, tv, tks, tvs;
  int32_t cu_q[9], cu_k[9], used[8], *bt;
  int64_t bt_stride, nblocks, total_q, total_k;
  float *out, *lse;
  fattn_tensor to, tl;
  fattn_sdpa_params p;
} built;

static size_t esize(fattn_dtype t) {
  return t == FATTN_F32 ? 4 : t == FATTN_F16 || t == FATTN_BF16 ? 2 : 1;
}

/* Stores the f32 value x as dtype t at element e of buf; returns the value stored (rounded). */
static float put(void *buf, int64_t e, fattn_dtype t, float x, float scale) {
  switch (t) {
  case FATTN_F32: ((float *)buf)[e] = x; return x;
  case FATTN_BF16: ((uint16_t *)buf)[e] = to_bf16(x); return from_bf16(to_bf16(x));
  case FATTN_F16: ((uint16_t *)buf)[e] = to_f16(x); return from_f16(to_f16(x));
  case FATTN_I8: {
    long r = lrintf(x / scale);
    if (r > 127) r = 127;
    if (r < -127) r = -127;
    ((int8_t *)buf)[e] = (int8_t)r;
    return (float)r * scale;
  }
  case FATTN_F8_E4M3:
  case FATTN_F8_E5M2: {
    const int e4 = t == FATTN_F8_E4M3;
    const uint8_t c = to_fp8(x / scale, e4);
    ((uint8_t *)buf)[e] = c;
    return (e4 ? e4m3_value(c) : e5m2_value(c)) * scale;
  }
  default: return NAN;
  }
}

static void build(const fcase *c, built *w) {
  memset(w, 0, sizeof *w);
  uint64_t s = c->seed;
  const int64_t H = c->H, Hkv = c->Hkv, D = c->D, Dv = c->Dv, B = c->nseq;
  w->qoff[0] = w->koff[0] = 0;
  for (int64_t b = 0; b < B; b++) {
    w->qoff[b + 1] = w->qoff[b] + c->lq[b];
    w->koff[b + 1] = w->koff[b] + c->lk[b];
  }
  const int64_t tq = w->qoff[B], tk = w->koff[B];
  w->q = calloc((size_t)(tq * H * D + 1), 4);
  w->k = calloc((size_t)(tk * Hkv * D + 1), 4);
  w->v = calloc((size_t)(tk * Hkv * Dv + 1), 4);
  for (int64_t h = 0; h < H; h++) {
    w->slopes[h] = (float)(0.05 + 0.5 * rng_uniform(&s));
    w->sinkv[h] = (float)(4.0 * rng_uniform(&s) - 2.0);
  }
  /* q: dense [B, H, Lq, D] or packed [total_q, H, D] */
  const size_t qe = esize(c->qdt);
  if (c->varlen_q) {
    w->qbuf = calloc((size_t)(tq * H * D), qe);
    w->total_q = tq;
    w->tq = (fattn_tensor){w->qbuf, c->qdt, {1, H, tq, D}, {0, D, H * D, 1}};
  } else {
    w->qbuf = calloc((size_t)(B * H * c->lq[0] * D), qe);
    w->tq = fattn_tensor_contiguous(w->qbuf, c->qdt, B, H, c->lq[0], D);
  }
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < c->lq[b]; i++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t p = 0; p < D; p++) {
          const float x = (float)(2.0 * rng_uniform(&s) - 1.0);
          const int64_t e = c->varlen_q ? ((w->qoff[b] + i) * H + h) * D + p
                                        : ((b * H + h) * c->lq[0] + i) * D + p;
          w->q[((w->qoff[b] + i) * H + h) * D + p] = put(w->qbuf, e, c->qdt, x, 1.0f);
        }
  /* k, v: dense [B, Hkv, Lk, D], packed [total_k, Hkv, D], or a paged pool
   * [nblocks, page, Hkv, D] with the blocks shuffled */
  const size_t ke = esize(c->kvdt);
  const int quant = c->kvdt == FATTN_I8 || c->kvdt == FATTN_F8_E4M3 || c->kvdt == FATTN_F8_E5M2;
  const int per_token = c->kvdt == FATTN_I8;
  int64_t rows_k; /* key rows in the buffer (per kv head) */
  int64_t kd0, kd2;
  if (c->kv == KV_PAGED) {
    w->bt_stride = 1;
    for (int64_t b = 0; b < B; b++) {
      const int64_t nb = (c->lk[b] + c->page - 1) / c->page + 1; /* a spare entry */
      if (nb > w->bt_stride) w->bt_stride = nb;
    }
    w->nblocks = B * w->bt_stride + 3; /* spare blocks nobody uses */
    w->bt = malloc((size_t)(B * w->bt_stride) * sizeof(int32_t));
    int64_t *perm = malloc((size_t)w->nblocks * sizeof *perm);
    for (int64_t x = 0; x < w->nblocks; x++)
      perm[x] = x;
    for (int64_t x = w->nblocks - 1; x > 0; x--) {
      const int64_t y = rng_int(&s, 0, x), t = perm[x];
      perm[x] = perm[y], perm[y] = t;
    }
    for (int64_t x = 0; x < B * w->bt_stride; x++)
      w->bt[x] = (int32_t)perm[x];
    for (int64_t b = 0; b < B; b++) /* entries past the used ones: garbage, never read */
      for (int64_t e = (c->lk[b] + c->page - 1) / c->page; e < w->bt_stride; e++)
        w->bt[b * w->bt_stride + e] = -1000 - (int32_t)e;
    free(perm);
    rows_k = w->nblocks * c->page;
    kd0 = w->nblocks;
    kd2 = c->page;
    w->tk = (fattn_tensor){NULL, c->kvdt, {kd0, Hkv, kd2, D}, {c->page * Hkv * D, D, Hkv * D, 1}};
    w->tv =
        (fattn_tensor){NULL, c->kvdt, {kd0, Hkv, kd2, Dv}, {c->page * Hkv * Dv, Dv, Hkv * Dv, 1}};
  } else if (c->kv == KV_VARLEN) {
    rows_k = tk;
    kd0 = 1;
    kd2 = tk;
    w->total_k = tk;
    w->tk = (fattn_tensor){NULL, c->kvdt, {1, Hkv, tk, D}, {0, D, Hkv * D, 1}};
    w->tv = (fattn_tensor){NULL, c->kvdt, {1, Hkv, tk, Dv}, {0, Dv, Hkv * Dv, 1}};
  } else {
    rows_k = B * c->lk[0];
    kd0 = B;
    kd2 = c->lk[0];
    w->tk = fattn_tensor_contiguous(NULL, c->kvdt, B, Hkv, kd2, D);
    w->tv = fattn_tensor_contiguous(NULL, c->kvdt, B, Hkv, kd2, Dv);
  }
  w->kbuf = calloc((size_t)(rows_k * Hkv * D), ke);
  w->vbuf = calloc((size_t)(rows_k * Hkv * Dv), ke);
  w->tk.data = w->kbuf;
  w->tv.data = w->vbuf;
  if (quant) {
    /* scales: per (position, kv head) for I8 (dims [kd0, Hkv, kd2, 1]), per kv head for F8 */
    const int64_t n = per_token ? kd0 * Hkv * kd2 : Hkv;
    w->ksc = malloc((size_t)n * 4);
    w->vsc = malloc((size_t)n * 4);
    for (int64_t x = 0; x < n; x++) {
      w->ksc[x] = (float)(per_token ? (0.5 + rng_uniform(&s)) / 127.0 : 0.5 + rng_uniform(&s));
      w->vsc[x] = (float)(per_token ? (0.5 + rng_uniform(&s)) / 127.0 : 0.5 + rng_uniform(&s));
    }
    if (per_token) {
      w->tks = (fattn_tensor){w->ksc, FATTN_F32, {kd0, Hkv, kd2, 1}, {Hkv * kd2, kd2, 1, 1}};
      w->tvs = w->tks;
      w->tvs.data = w->vsc;
    } else {
      w->tks = (fattn_tensor){w->ksc, FATTN_F32, {1, Hkv, 1, 1}, {0, 1, 0, 1}};
      w->tvs = w->tks;
      w->tvs.data = w->vsc;
    }
  }
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < c->lk[b]; j++) {
      int64_t d0, d2; /* view position of key j */
      if (c->kv == KV_PAGED)
        d0 = w->bt[b * w->bt_stride + j / c->page], d2 = j % c->page;
      else if (c->kv == KV_VARLEN)
        d0 = 0, d2 = w->koff[b] + j;
      else
        d0 = b, d2 = j;
      for (int64_t hk = 0; hk < Hkv; hk++) {
        const float ks = quant ? (per_token ? w->ksc[(d0 * Hkv + hk) * kd2 + d2] : w->ksc[hk]) : 1;
        const float vs = quant ? (per_token ? w->vsc[(d0 * Hkv + hk) * kd2 + d2] : w->vsc[hk]) : 1;
        for (int64_t p = 0; p < D; p++) {
          const int64_t e =
              d0 * w->tk.strides[0] + hk * w->tk.strides[1] + d2 * w->tk.strides[2] + p;
          const float x = (float)(2.0 * rng_uniform(&s) - 1.0);
          w->k[((w->koff[b] + j) * Hkv + hk) * D + p] = put(w->kbuf, e, c->kvdt, x, ks);
        }
        for (int64_t p = 0; p < Dv; p++) {
          const int64_t e =
              d0 * w->tv.strides[0] + hk * w->tv.strides[1] + d2 * w->tv.strides[2] + p;
          const float x = (float)(2.0 * rng_uniform(&s) - 1.0);
          w->v[((w->koff[b] + j) * Hkv + hk) * Dv + p] = put(w->vbuf, e, c->kvdt, x, vs);
        }
      }
    }
  /* outputs, shaped like q */
  const int64_t orows = c->varlen_q ? tq : B * c->lq[0];
  w->out = malloc((size_t)(orows * H * Dv + 1) * 4);
  w->lse = malloc((size_t)(orows * H + 1) * 4);
  if (c->varlen_q) {
    w->to = (fattn_tensor){w->out, FATTN_F32, {1, H, tq, Dv}, {0, Dv, H * Dv, 1}};
    w->tl = (fattn_tensor){w->lse, FATTN_F32, {1, H, tq, 1}, {0, 1, H, 1}};
  } else {
    w->to = fattn_tensor_contiguous(w->out, FATTN_F32, B, H, c->lq[0], Dv);
    w->tl = fattn_tensor_contiguous(w->lse, FATTN_F32, B, H, c->lq[0], 1);
  }
  for (int64_t b = 0; b <= B; b++) {
    w->cu_q[b] = (int32_t)w->qoff[b];
    w->cu_k[b] = (int32_t)w->koff[b];
  }
  for (int64_t b = 0; b < B; b++)
    w->used[b] = (int32_t)c->lk[b];
  fattn_sdpa_params *p = &w->p;
  fattn_sdpa_params_init(p);
  p->causal = c->causal;
  p->window_left = c->wl;
  p->diag_shift = c->shift;
  p->window_right = c->wr;
  p->alibi_slopes = c->alibi ? w->slopes : NULL;
  p->softcap = c->softcap;
  p->sinks = c->sinks ? w->sinkv : NULL;
  p->lse = &w->tl;
  if (c->varlen_q) {
    p->num_seqs = B;
    p->cu_seqlens_q = w->cu_q;
  }
  if (c->kv == KV_VARLEN) p->cu_seqlens_k = w->cu_k;
  if (c->kv == KV_PAGED) {
    p->block_table = w->bt;
    p->block_table_stride = w->bt_stride;
    p->seqused_k = w->used;
  }
  if (quant) {
    p->k_scale = &w->tks;
    p->v_scale = &w->tvs;
  }
}

static void unbuild(built *w) {
  free(w->q), free(w->k), free(w->v), free(w->qbuf), free(w->kbuf), free(w->vbuf);
  free(w->ksc), free(w->vsc), free(w->bt), free(w->out), free(w->lse);
}

/* The oracle, from the conventions in fattn.h, in double. */
static void expect_row(const fcase *c, const built *w, int64_t b, int64_t h, int64_t i, double *o,
                       double *lse) {
  const int64_t G = c->H / c->Hkv, hk = h / G, lq = c->lq[b], lk = c->lk[b];
  const int64_t diag = c->shift + (c->causal == FATTN_CAUSAL_TOP_LEFT ? 0 : lk - lq);
  const double scale = 1.0 / sqrt((double)c->D);
  double *s = malloc((size_t)(lk + 1) * sizeof *s);
  double mx = c->sinks ? w->sinkv[h] : -INFINITY;
  for (int64_t j = 0; j < lk; j++) {
    int ok = 1;
    if (c->causal == FATTN_CAUSAL_TOP_LEFT && j > i + c->shift) ok = 0;
    if (c->causal == FATTN_CAUSAL_BOTTOM_RIGHT && j > i + lk - lq + c->shift) ok = 0;
    if (c->wl >= 0 && j < i + diag - c->wl) ok = 0;
    if (c->wr >= 0 && j > i + diag + c->wr) ok = 0;
    s[j] = -INFINITY;
    if (!ok) continue;
    double dot = 0;
    for (int64_t p = 0; p < c->D; p++)
      dot += (double)w->q[((w->qoff[b] + i) * c->H + h) * c->D + p] *
             (double)w->k[((w->koff[b] + j) * c->Hkv + hk) * c->D + p];
    double x = dot * scale;
    if (c->softcap > 0) x = c->softcap * tanh(x / c->softcap);
    if (c->alibi) x -= w->slopes[h] * fabs((double)(i + diag - j));
    s[j] = x;
    if (x > mx) mx = x;
  }
  for (int64_t p = 0; p < c->Dv; p++)
    o[p] = 0;
  if (mx == -INFINITY) {
    *lse = -INFINITY;
    free(s);
    return;
  }
  double l = c->sinks ? exp(w->sinkv[h] - mx) : 0;
  for (int64_t j = 0; j < lk; j++) {
    if (s[j] == -INFINITY) continue;
    const double e = exp(s[j] - mx);
    l += e;
    for (int64_t p = 0; p < c->Dv; p++)
      o[p] += e * (double)w->v[((w->koff[b] + j) * c->Hkv + hk) * c->Dv + p];
  }
  for (int64_t p = 0; p < c->Dv; p++)
    o[p] /= l;
  *lse = mx + log(l);
  free(s);
}

/* Runs `be` on ctx and compares every row with the oracle. */
static int check(const fcase *c, fattn_backend be, fattn_context *ctx, const char *what) {
  built w;
  build(c, &w);
  w.p.backend = be;
  const int64_t orows = c->varlen_q ? w.qoff[c->nseq] : c->nseq * c->lq[0];
  for (int64_t x = 0; x < orows * c->H * c->Dv; x++)
    w.out[x] = NAN;
  for (int64_t x = 0; x < orows * c->H; x++)
    w.lse[x] = NAN;
  char desc[600];
  describe(c, desc, sizeof desc);
  fattn_status st = fattn_sdpa(ctx, &w.tq, &w.tk, &w.tv, &w.to, &w.p);
  if (be == FATTN_BACKEND_ONEDNN) {
    EXPECT(st == FATTN_ERROR_UNSUPPORTED, "onednn on features: %s", fattn_status_string(st));
    unbuild(&w);
    return 0;
  }
  if (st != FATTN_SUCCESS) {
    EXPECT(0, "%s %s: %s [%s]", what, fattn_backend_name(be), fattn_last_error(), desc);
    unbuild(&w);
    return 1;
  }
  /* tolerance: f32 arithmetic over at most a few hundred terms of size ~1;
   * on the tile engine P is rounded to bf16 (2^-9 relative), and under
   * FATTN_TILES=bf16 F32 / F16 q, K and V too (scores of size ~3 then move by
   * ~2^-8 · 3) */
  const int tiles = tiles_for_call(ctx, be, c->qdt, c->kvdt);
  const double tol = tiles == 2 ? 2.5e-2 : c->qdt == FATTN_BF16 ? (tiles ? 4e-3 : 2e-3) : 2e-4;
  double *o = malloc((size_t)c->Dv * sizeof *o), worst = 0;
  int bad = 0;
  for (int64_t b = 0; b < c->nseq && !bad; b++)
    for (int64_t h = 0; h < c->H && !bad; h++)
      for (int64_t i = 0; i < c->lq[b] && !bad; i++) {
        double lse;
        expect_row(c, &w, b, h, i, o, &lse);
        const int64_t row =
            c->varlen_q ? (w.qoff[b] + i) * c->H + h : (b * c->H + h) * c->lq[0] + i;
        for (int64_t p = 0; p < c->Dv; p++) {
          const double e = fabs(w.out[row * c->Dv + p] - o[p]);
          if (!(e <= tol * (1 + fabs(o[p])))) bad = 1;
          if (e > worst) worst = e;
        }
        const double gl = w.lse[row];
        if (!(gl == lse || fabs(gl - lse) <= tol * (1 + fabs(lse)))) bad = 1;
        if (bad)
          fprintf(stderr, "  row b=%lld h=%lld i=%lld: out[0] %g want %g, lse %g want %g\n",
                  (long long)b, (long long)h, (long long)i, (double)w.out[row * c->Dv], o[0], gl,
                  lse);
      }
  EXPECT(!bad, "%s %s: wrong result (worst |err| %g) [%s]", what, fattn_backend_name(be), worst,
         desc);
  free(o);
  unbuild(&w);
  return bad;
}

/* ---- the cases ---- */

static fattn_backend g_be[8];
static int g_nbe;
static fattn_context *g_ctx[3]; /* default blocks; small blocks (16 keys, 8 queries); 2 threads */

static int g_emulated; /* under qemu: the portable backends are checked natively */

static void run_case(const fcase *c, const char *what) {
  if (!g_emulated) check(c, FATTN_BACKEND_REFERENCE, NULL, what);
  for (int x = 0; x < g_nbe; x++)
    for (int k = 0; k < 3; k++) {
      if (g_be[x] == FATTN_BACKEND_ONEDNN && k) continue;
      if (g_emulated && g_be[x] == FATTN_BACKEND_SCALAR) continue;
      check(c, g_be[x], g_ctx[k], what);
    }
}

static fcase base(int64_t nseq, int64_t H, int64_t Hkv, int64_t D, int64_t lq, int64_t lk,
                  uint64_t seed) {
  fcase c;
  memset(&c, 0, sizeof c);
  c.nseq = nseq, c.H = H, c.Hkv = Hkv, c.D = D, c.Dv = D;
  for (int b = 0; b < 8; b++)
    c.lq[b] = lq, c.lk[b] = lk;
  c.wl = c.wr = -1;
  c.kvdt = c.qdt = FATTN_F32;
  c.seed = seed;
  return c;
}

static void cases_modifiers(void) {
  const fattn_causal cs[] = {FATTN_CAUSAL_NONE, FATTN_CAUSAL_TOP_LEFT, FATTN_CAUSAL_BOTTOM_RIGHT};
  for (int ci = 0; ci < 3; ci++) {
    /* windows: left only, right only, both, 0 */
    const int64_t wins[][2] = {{5, -1}, {-1, 3}, {7, 2}, {0, 0}, {40, -1}};
    for (int wi = 0; wi < 5; wi++) {
      fcase c = base(2, 4, 2, 19, 23, 61, 100 + 10 * ci + wi);
      c.causal = cs[ci];
      c.wl = wins[wi][0], c.wr = wins[wi][1];
      run_case(&c, "window");
    }
    fcase c = base(1, 4, 1, 16, 77, 90, 200 + ci);
    c.causal = cs[ci];
    c.alibi = 1;
    run_case(&c, "alibi");
    c.alibi = 0, c.softcap = 0.7f;
    run_case(&c, "softcap");
    c.softcap = 0, c.sinks = 1;
    run_case(&c, "sinks");
    c.alibi = 1, c.softcap = 1.5f, c.wl = 17;
    run_case(&c, "all modifiers");
  }
  /* decode rows (small kernels): one query, GQA 8, long keys, split-KV */
  fcase d = base(2, 16, 2, 64, 1, 1500, 300);
  d.causal = FATTN_CAUSAL_BOTTOM_RIGHT;
  d.sinks = 1, d.alibi = 1;
  run_case(&d, "decode sinks+alibi");
  d.sinks = 0, d.alibi = 0, d.wl = 300;
  run_case(&d, "decode window");
  /* diagonal shifts (blocks of a longer sequence: context parallelism):
   * diagonals left of, inside and right of the block, each causal kind, with
   * a window, ALiBi and sinks; rows that attend nothing among them */
  const int64_t shifts[] = {-30, -7, 5, 40, 200};
  for (int ci = 0; ci < 3; ci++)
    for (int si = 0; si < 5; si++) {
      fcase c = base(2, 4, 2, 19, 37, 29, 400 + 10 * ci + si);
      c.causal = cs[ci];
      c.shift = shifts[si];
      run_case(&c, "diag_shift");
      c.wl = 6, c.alibi = 1, c.sinks = 1;
      run_case(&c, "diag_shift + window, alibi, sinks");
    }
  fcase ds = base(1, 8, 2, 64, 1, 700, 450); /* decode rows, split-KV */
  ds.causal = FATTN_CAUSAL_BOTTOM_RIGHT, ds.shift = -300;
  run_case(&ds, "decode diag_shift");
  /* sinks on rows that attend nothing (window right of every key) */
  fcase e = base(1, 2, 2, 8, 9, 4, 310);
  e.causal = FATTN_CAUSAL_TOP_LEFT, e.sinks = 1;
  run_case(&e, "sinks, short keys");
}

static void cases_varlen_paged(void) {
  /* lengths spread over tile edges: empty, 1, 77, ... */
  const int64_t lq[] = {3, 0, 77, 1, 16, 5}, lk[] = {40, 9, 77, 300, 16, 0};
  const int64_t pages[] = {1, 3, 16};
  for (int mode = 0; mode < 4; mode++) {
    for (int pi = 0; pi < (mode >= 2 ? 3 : 1); pi++) {
      fcase c = base(6, 6, 3, 24, 1, 1, 400 + 10 * mode + pi);
      for (int b = 0; b < 6; b++)
        c.lq[b] = lq[b], c.lk[b] = lk[b] < lq[b] ? lq[b] : lk[b];
      c.lk[5] = 0;
      c.lq[5] = 0;
      c.varlen_q = 1;
      c.kv = mode == 0 ? KV_VARLEN : mode == 1 ? KV_VARLEN : KV_PAGED;
      c.page = pages[pi];
      c.causal = mode == 1 || mode == 3 ? FATTN_CAUSAL_BOTTOM_RIGHT : FATTN_CAUSAL_NONE;
      if (mode == 3) c.wl = 20, c.sinks = 1;
      run_case(&c, mode < 2 ? "varlen" : "paged varlen");
    }
  }
  /* paged decode with dense q (flash_attn_with_kvcache), Dv != D */
  fcase c = base(3, 8, 2, 32, 1, 1, 500);
  c.Dv = 20;
  c.lk[0] = 1000, c.lk[1] = 17, c.lk[2] = 256;
  c.kv = KV_PAGED;
  c.page = 16;
  c.causal = FATTN_CAUSAL_BOTTOM_RIGHT;
  run_case(&c, "paged decode");
  /* chunked prefill: 40 new queries over a cache of 130 (paged, dense q) */
  c = base(2, 4, 4, 80, 40, 130, 510);
  c.kv = KV_PAGED, c.page = 32, c.causal = FATTN_CAUSAL_BOTTOM_RIGHT;
  run_case(&c, "paged chunked prefill");
}

static void cases_quant(void) {
  const fattn_dtype dts[] = {FATTN_I8, FATTN_F8_E4M3, FATTN_F8_E5M2, FATTN_F16, FATTN_BF16};
  for (int x = 0; x < 5; x++) {
    fcase c = base(2, 8, 2, 40, 1, 700, 600 + x); /* decode */
    c.kvdt = dts[x];
    c.causal = FATTN_CAUSAL_BOTTOM_RIGHT;
    run_case(&c, "quantized decode");
    c = base(1, 4, 2, 33, 77, 150, 610 + x); /* prefill */
    c.kvdt = dts[x];
    c.causal = FATTN_CAUSAL_TOP_LEFT;
    c.softcap = 2.0f;
    run_case(&c, "quantized prefill");
    c.varlen_q = 1;
    c.kv = KV_PAGED, c.page = 16; /* paged + quantized + varlen */
    c.nseq = 3, c.lq[1] = 1, c.lk[1] = 260, c.lq[2] = 5, c.lk[2] = 9;
    c.wl = 50;
    run_case(&c, "quantized paged varlen");
  }
  fcase c = base(1, 2, 1, 16, 10, 50, 650);
  c.qdt = FATTN_BF16, c.kvdt = FATTN_I8;
  run_case(&c, "bf16 q, i8 kv");
}

/* Every code of each 8-bit type through the decode kernels, exactly: 256
 * sequences of one query and one key each (varlen, or paged), V's row b all
 * code b, K zero: out[b] = scale · value(b), NaN for the NaN codes, ±inf for
 * e5m2's infinities. */
static void codes_exact(void) {
  enum { NS = 256, D = 24 };
  static const fattn_dtype dts[] = {FATTN_I8, FATTN_F8_E4M3, FATTN_F8_E5M2};
  static uint8_t kb[NS * D], vb[NS * D];
  static float q[NS * D], out[NS * D];
  static int32_t cu[NS + 1], used[NS], bt[NS];
  float ksc = 1.0f, vsc = 0.75f;
  for (int b = 0; b <= NS; b++)
    cu[b] = b;
  for (int b = 0; b < NS; b++)
    used[b] = 1, bt[b] = NS - 1 - b; /* block b of the pool holds sequence NS-1-b */
  for (int x = 0; x < NS * D; x++)
    q[x] = 0.5f, kb[x] = 0;
  for (int di = 0; di < 3; di++)
    for (int paged = 0; paged < 2; paged++)
      for (int x = 0; x < g_nbe + 1; x++) {
        const fattn_backend be = x == g_nbe ? FATTN_BACKEND_REFERENCE : g_be[x];
        if (be == FATTN_BACKEND_ONEDNN) continue;
        const fattn_dtype dt = dts[di];
        for (int b = 0; b < NS; b++) /* sequence b's key sits at row b, or in block NS-1-b */
          for (int c = 0; c < D; c++)
            vb[(paged ? NS - 1 - b : b) * D + c] = (uint8_t)b;
        fattn_tensor tq = {q, FATTN_F32, {1, 1, NS, D}, {0, D, D, 1}};
        fattn_tensor to = {out, FATTN_F32, {1, 1, NS, D}, {0, D, D, 1}};
        fattn_tensor tk = {kb, dt, {1, 1, NS, D}, {0, D, D, 1}};
        if (paged) tk = (fattn_tensor){kb, dt, {NS, 1, 1, D}, {D, D, D, 1}};
        fattn_tensor tv = tk;
        tv.data = vb;
        fattn_tensor sk = {&ksc, FATTN_F32, {1, 1, 1, 1}, {0, 0, 0, 1}}, sv = sk;
        sv.data = &vsc;
        fattn_sdpa_params p;
        fattn_sdpa_params_init(&p);
        p.num_seqs = NS;
        p.cu_seqlens_q = cu;
        if (paged)
          p.block_table = bt, p.block_table_stride = 1, p.seqused_k = used;
        else
          p.cu_seqlens_k = cu;
        p.k_scale = &sk, p.v_scale = &sv;
        p.backend = be;
        const fattn_status st = fattn_sdpa(g_ctx[0], &tq, &tk, &tv, &to, &p);
        EXPECT(st == FATTN_SUCCESS, "codes %s: %s", dt_name(dt), fattn_last_error());
        int bad = 0;
        for (int b = 0; b < NS && st == FATTN_SUCCESS; b++) {
          const float want = (dt == FATTN_I8        ? (float)(int8_t)b
                              : dt == FATTN_F8_E4M3 ? e4m3_value(b)
                                                    : e5m2_value(b)) *
                             vsc;
          for (int c = 0; c < D; c++) {
            const float got = out[b * D + c];
            if (!(got == want || (isnan(got) && isnan(want)))) {
              if (!bad)
                fprintf(stderr, "  code %d of %s (paged %d) on %s: got %g, want %g\n", b,
                        dt_name(dt), paged, fattn_backend_name(be), (double)got, (double)want);
              bad = 1;
            }
          }
        }
        EXPECT(!bad, "codes of %s through %s", dt_name(dt), fattn_backend_name(be));
      }
}

/* Results do not depend on the thread count (bits), varlen and paged included. */
static void determinism(void) {
  fcase c = base(5, 8, 2, 48, 1, 1, 700);
  const int64_t lq[] = {200, 1, 33, 1, 64}, lk[] = {200, 3000, 500, 40, 900};
  for (int b = 0; b < 5; b++)
    c.lq[b] = lq[b], c.lk[b] = lk[b];
  c.varlen_q = 1, c.kv = KV_PAGED, c.page = 16, c.causal = FATTN_CAUSAL_BOTTOM_RIGHT, c.sinks = 1;
  built w1, w2;
  build(&c, &w1);
  build(&c, &w2);
  fattn_context_options o;
  fattn_context_options_init(&o);
  o.num_threads = 1;
  fattn_context *c1 = NULL;
  EXPECT(fattn_context_create(&o, &c1) == FATTN_SUCCESS, "%s", fattn_last_error());
  EXPECT(fattn_sdpa(c1, &w1.tq, &w1.tk, &w1.tv, &w1.to, &w1.p) == FATTN_SUCCESS, "%s",
         fattn_last_error());
  EXPECT(fattn_sdpa(g_ctx[2], &w2.tq, &w2.tk, &w2.tv, &w2.to, &w2.p) == FATTN_SUCCESS, "%s",
         fattn_last_error());
  const int64_t n = w1.qoff[5] * c.H;
  EXPECT(memcmp(w1.out, w2.out, (size_t)(n * c.Dv) * 4) == 0,
         "out differs between 1 and 2 threads");
  EXPECT(memcmp(w1.lse, w2.lse, (size_t)n * 4) == 0, "lse differs between 1 and 2 threads");
  fattn_context_destroy(c1);
  unbuild(&w1);
  unbuild(&w2);
}

/* Bad input: a status, a message, and out / lse untouched. */
static void bad_inputs(void) {
  fcase c = base(3, 4, 2, 8, 1, 1, 800);
  c.lq[0] = 2, c.lq[1] = 3, c.lq[2] = 1;
  c.lk[0] = 20, c.lk[1] = 5, c.lk[2] = 33;
  c.varlen_q = 1, c.kv = KV_PAGED, c.page = 4, c.kvdt = FATTN_I8;
  built w;
#define BAD(want, what, mutate, restore)                                                           \
  do {                                                                                             \
    build(&c, &w);                                                                                 \
    const int64_t n_ = w.qoff[3] * c.H;                                                            \
    for (int64_t x_ = 0; x_ < n_ * c.Dv; x_++)                                                     \
      w.out[x_] = 12345.0f;                                                                        \
    mutate;                                                                                        \
    fattn_status st_ = fattn_sdpa(NULL, &w.tq, &w.tk, &w.tv, &w.to, &w.p);                         \
    EXPECT(st_ == (want), "%s: got %s (%s)", what, fattn_status_string(st_), fattn_last_error());  \
    EXPECT(strlen(fattn_last_error()) > 20, "%s: no message", what);                               \
    int clean_ = 1;                                                                                \
    for (int64_t x_ = 0; x_ < n_ * c.Dv; x_++)                                                     \
      clean_ &= w.out[x_] == 12345.0f;                                                             \
    EXPECT(clean_, "%s: out was written", what);                                                   \
    restore;                                                                                       \
    unbuild(&w);                                                                                   \
  } while (0)
  const fattn_status INV = FATTN_ERROR_INVALID_ARGUMENT, SHP = FATTN_ERROR_SHAPE_MISMATCH,
                     UNS = FATTN_ERROR_UNSUPPORTED;
  /* sanity: the unmutated case runs */
  build(&c, &w);
  EXPECT(fattn_sdpa(NULL, &w.tq, &w.tk, &w.tv, &w.to, &w.p) == FATTN_SUCCESS, "good case: %s",
         fattn_last_error());
  unbuild(&w);
  BAD(INV, "block table entry past the pool", w.bt[1] = (int32_t)w.nblocks, (void)0);
  BAD(INV, "negative block table entry", w.bt[w.bt_stride] = -1, (void)0);
  BAD(INV, "cached length past the table", w.used[2] = (int32_t)(w.bt_stride * 4 + 1), (void)0);
  BAD(INV, "negative cached length", w.used[0] = -1, (void)0);
  BAD(INV, "no seqused_k with block_table", w.p.seqused_k = NULL, (void)0);
  BAD(INV, "cu_seqlens_q decreasing", (w.cu_q[1] = 4, w.cu_q[2] = 3), (void)0);
  BAD(INV, "cu_seqlens_q[0] != 0", w.cu_q[0] = 1, (void)0);
  BAD(SHP, "cu_seqlens_q total != q rows", w.cu_q[3] = 5, (void)0);
  BAD(INV, "num_seqs 0 with cu_seqlens_q", w.p.num_seqs = 0, (void)0);
  BAD(INV, "window < -1", w.p.window_left = -2, (void)0);
  BAD(INV, "window right < -1", w.p.window_right = -5, (void)0);
  BAD(INV, "diag_shift beyond 2^40", w.p.diag_shift = (INT64_C(1) << 40) + 1, (void)0);
  BAD(INV, "NaN slope", (w.p.alibi_slopes = w.slopes, w.slopes[1] = NAN), (void)0);
  BAD(INV, "inf softcap", w.p.softcap = INFINITY, (void)0);
  BAD(INV, "negative softcap", w.p.softcap = -1.0f, (void)0);
  BAD(INV, "NaN sink", (w.p.sinks = w.sinkv, w.sinkv[3] = NAN), (void)0);
  BAD(INV, "zero k scale", w.ksc[w.bt[0] * c.Hkv * c.page] = 0.0f, (void)0);
  BAD(INV, "NaN v scale", w.vsc[w.bt[0] * c.Hkv * c.page + 1] = NAN, (void)0);
  BAD(INV, "missing k_scale", w.p.k_scale = NULL, (void)0);
  BAD(SHP, "scale dims", w.tks.dims[1] = 1, (void)0);
  BAD(INV, "k dtype i8 as q", w.tq.dtype = FATTN_I8, (void)0);
  BAD(INV, "cu_seqlens_k with block_table", w.p.cu_seqlens_k = w.cu_k, (void)0);
  BAD(UNS, "kv_lens with varlen", w.p.kv_lens = w.used, (void)0);
  BAD(INV, "block_table_stride 0", w.p.block_table_stride = 0, (void)0);
  /* a dense problem with seqused_k */
  c = base(2, 2, 2, 8, 3, 5, 810);
  BAD(INV, "seqused_k on dense K", w.p.seqused_k = w.used, (void)0);
  c.kv = KV_VARLEN;
  c.varlen_q = 1;
  BAD(SHP, "cu_seqlens_k total != k rows", w.cu_k[2] = 9, (void)0);
  BAD(INV, "seqused_k past cu_seqlens_k", (w.p.seqused_k = w.used, w.used[1] = 6), (void)0);
#undef BAD
}

int main(int argc, char **argv) {
  g_emulated = argc > 1 && !strcmp(argv[1], "emulated");
  g_nbe = available_backends(g_be);
  fattn_context_options o;
  fattn_context_options_init(&o);
  o.num_threads = 1;
  EXPECT(fattn_context_create(&o, &g_ctx[0]) == FATTN_SUCCESS, "%s", fattn_last_error());
  o.block_keys = 16;
  o.block_queries = 8;
  EXPECT(fattn_context_create(&o, &g_ctx[1]) == FATTN_SUCCESS, "%s", fattn_last_error());
  fattn_context_options_init(&o);
  o.num_threads = 2;
  EXPECT(fattn_context_create(&o, &g_ctx[2]) == FATTN_SUCCESS, "%s", fattn_last_error());
  cases_modifiers();
  cases_varlen_paged();
  cases_quant();
  codes_exact();
  determinism();
  bad_inputs();
  for (int k = 0; k < 3; k++)
    fattn_context_destroy(g_ctx[k]);
  if (g_failures) {
    fprintf(stderr, "test_features: %d failure(s)\n", g_failures);
    return 1;
  }
  printf("test_features: all passed (%d backends)\n", g_nbe);
  return 0;
}

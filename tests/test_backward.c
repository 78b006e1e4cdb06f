/* fattn_sdpa_backward: every fused table against the double-precision
 * reference backward across tile edges and features (both causal kinds,
 * F32 / U8 masks, kv_lens, windows, ALiBi, softcap, sinks, diag_shift, GQA,
 * Dv != D, strided BSHD tensors, half inputs and gradients), bitwise
 * identical for 1, 2 and 3 threads; the reference itself against central
 * finite differences of a forward written here from the definition, in
 * double; bad arguments give a status and a message with dq, dk, dv
 * untouched. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "harness.h"

void fattn__fault_inject(long n); /* lib/runtime/alloc.c: tests only */
long fattn__fault_pending(void);

typedef struct bcase {
  int64_t B, H, Hkv, Lq, Lk, D, Dv;
  fattn_causal causal;
  int mask;   /* 0 none, 1 F32 additive (some -inf) [B, 1, Lq, Lk], 2 U8 [1, H, Lq, Lk] */
  int kvl;    /* kv_lens {Lk - 3, Lk / 2, ...} */
  int64_t wl; /* window_left (-1: none) */
  int alibi, sinks;
  float softcap;
  int64_t shift;
  fattn_dtype dt;  /* q, k, v, out, dout */
  fattn_dtype gdt; /* dq, dk, dv */
  int bshd;        /* q, out, dout, dq as [B, L, H, D] buffers */
  uint64_t seed;
} bcase;

static int esz(fattn_dtype t) { return t == FATTN_F32 ? 4 : t == FATTN_U8 ? 1 : 2; }

static void put(void *buf, int64_t e, fattn_dtype t, float x) {
  if (t == FATTN_F32)
    ((float *)buf)[e] = x;
  else
    ((uint16_t *)buf)[e] = t == FATTN_BF16 ? fattn__f32_to_bf16(x) : fattn__f32_to_f16(x);
}

static float get(const void *buf, int64_t e, fattn_dtype t) {
  if (t == FATTN_F32) return ((const float *)buf)[e];
  const uint16_t h = ((const uint16_t *)buf)[e];
  return t == FATTN_BF16 ? fattn__bf16_to_f32(h) : fattn__f16_to_f32(h);
}

typedef struct bprob {
  void *q, *k, *v, *out, *dout, *mask;
  float *lse;
  int32_t kvl[8];
  float slopes[16], sinkv[16];
  fattn_tensor tq, tk, tv, to, tdo, tl, tm;
  fattn_sdpa_params p;
} bprob;

/* [B, X, L, d] in BHSD or BSHD strides */
static fattn_tensor view(void *data, fattn_dtype dt, int64_t B, int64_t X, int64_t L, int64_t d,
                         int bshd) {
  if (!bshd) return fattn_tensor_contiguous(data, dt, B, X, L, d);
  return (fattn_tensor){data, dt, {B, X, L, d}, {L * X * d, d, X * d, 1}};
}

static int build(const bcase *c, bprob *w) {
  memset(w, 0, sizeof *w);
  uint64_t s = c->seed;
  const int64_t B = c->B, H = c->H, Hkv = c->Hkv, Lq = c->Lq, Lk = c->Lk;
  const int e = esz(c->dt);
  w->q = malloc((size_t)(B * H * Lq * c->D * e));
  w->k = malloc((size_t)(B * Hkv * Lk * c->D * e));
  w->v = malloc((size_t)(B * Hkv * Lk * c->Dv * e));
  w->out = malloc((size_t)(B * H * Lq * c->Dv * e));
  w->dout = malloc((size_t)(B * H * Lq * c->Dv * e));
  w->lse = malloc((size_t)(B * H * Lq) * sizeof(float));
  for (int64_t x = 0; x < B * H * Lq * c->D; x++)
    put(w->q, x, c->dt, (float)(2 * rng_uniform(&s) - 1));
  for (int64_t x = 0; x < B * Hkv * Lk * c->D; x++)
    put(w->k, x, c->dt, (float)(2 * rng_uniform(&s) - 1));
  for (int64_t x = 0; x < B * Hkv * Lk * c->Dv; x++)
    put(w->v, x, c->dt, (float)(2 * rng_uniform(&s) - 1));
  for (int64_t x = 0; x < B * H * Lq * c->Dv; x++)
    put(w->dout, x, c->dt, (float)(2 * rng_uniform(&s) - 1));
  for (int h = 0; h < 16; h++)
    w->slopes[h] = (float)(0.05 + 0.3 * rng_uniform(&s)),
    w->sinkv[h] = (float)(2 * rng_uniform(&s) - 1);
  for (int b = 0; b < 8; b++)
    w->kvl[b] = (int32_t)(b % 2 ? Lk / 2 : Lk - 3);
  w->tq = view(w->q, c->dt, B, H, Lq, c->D, c->bshd);
  w->tk = view(w->k, c->dt, B, Hkv, Lk, c->D, 0);
  w->tv = view(w->v, c->dt, B, Hkv, Lk, c->Dv, 0);
  w->to = view(w->out, c->dt, B, H, Lq, c->Dv, c->bshd);
  w->tdo = view(w->dout, c->dt, B, H, Lq, c->Dv, c->bshd);
  w->tl = fattn_tensor_contiguous(w->lse, FATTN_F32, B, H, Lq, 1);
  fattn_sdpa_params_init(&w->p);
  w->p.causal = c->causal;
  w->p.lse = &w->tl;
  if (c->mask) {
    const int64_t m0 = c->mask == 1 ? B : 1, m1 = c->mask == 2 ? H : 1;
    w->mask = malloc((size_t)(m0 * m1 * Lq * Lk * (c->mask == 1 ? 4 : 1)));
    for (int64_t x = 0; x < m0 * m1 * Lq * Lk; x++) {
      const double u = rng_uniform(&s);
      if (c->mask == 1)
        ((float *)w->mask)[x] = u < 0.1 ? -INFINITY : (float)(u - 0.5);
      else
        ((uint8_t *)w->mask)[x] = u >= 0.15;
    }
    w->tm = fattn_tensor_contiguous(w->mask, c->mask == 1 ? FATTN_F32 : FATTN_U8, m0, m1, Lq, Lk);
    w->p.attn_mask = &w->tm;
  }
  if (c->kvl) w->p.kv_lens = w->kvl;
  w->p.window_left = c->wl;
  if (c->alibi) w->p.alibi_slopes = w->slopes;
  if (c->sinks) w->p.sinks = w->sinkv;
  w->p.softcap = c->softcap;
  w->p.diag_shift = c->shift;
  /* the forward: out and lse */
  return fattn_sdpa(NULL, &w->tq, &w->tk, &w->tv, &w->to, &w->p) == FATTN_SUCCESS;
}

static void unbuild(bprob *w) {
  free(w->q), free(w->k), free(w->v), free(w->out), free(w->dout), free(w->lse), free(w->mask);
}

typedef struct grads {
  void *dq, *dk, *dv;
  fattn_tensor tdq, tdk, tdv;
  int64_t nq, nk, nv;
} grads;

static void grads_make(const bcase *c, fattn_dtype dt, int bshd, grads *g) {
  g->nq = c->B * c->H * c->Lq * c->D;
  g->nk = c->B * c->Hkv * c->Lk * c->D;
  g->nv = c->B * c->Hkv * c->Lk * c->Dv;
  g->dq = malloc((size_t)(g->nq * esz(dt)));
  g->dk = malloc((size_t)(g->nk * esz(dt)));
  g->dv = malloc((size_t)(g->nv * esz(dt)));
  for (int64_t x = 0; x < g->nq; x++)
    put(g->dq, x, dt, 777.0f);
  for (int64_t x = 0; x < g->nk; x++)
    put(g->dk, x, dt, 777.0f);
  for (int64_t x = 0; x < g->nv; x++)
    put(g->dv, x, dt, 777.0f);
  g->tdq = view(g->dq, dt, c->B, c->H, c->Lq, c->D, bshd);
  g->tdk = view(g->dk, dt, c->B, c->Hkv, c->Lk, c->D, 0);
  g->tdv = view(g->dv, dt, c->B, c->Hkv, c->Lk, c->Dv, 0);
}

static void grads_free(grads *g) { free(g->dq), free(g->dk), free(g->dv); }

static fattn_status backward(fattn_context *ctx, bprob *w, grads *g, fattn_backend be) {
  fattn_sdpa_params p = w->p;
  p.backend = be;
  p.lse = NULL; /* not read by the backward pass */
  return fattn_sdpa_backward(ctx, &w->tq, &w->tk, &w->tv, &w->to, &w->tdo, &w->tl, &g->tdq, &g->tdk,
                             &g->tdv, &p);
}

/* |got - want| <= tol · (max|want| over the tensor + |want| + 1e-3): the
 * floor for gradients that vanish exactly (one attended key: dS = 0), where
 * the fused pass leaves f32 rounding of dP - D (~1e-8) */
static double cmp(const void *got, fattn_dtype gdt, const void *want, int64_t n, double *worst) {
  double mx = 0, bad = 0;
  for (int64_t x = 0; x < n; x++)
    mx = fmax(mx, fabs(get(want, x, FATTN_F32)));
  for (int64_t x = 0; x < n; x++) {
    const double a = get(got, x, gdt), b = get(want, x, FATTN_F32);
    const double e = fabs(a - b) / (mx + fabs(b) + 1e-3);
    if (!(e <= *worst)) *worst = e; /* NaN sticks */
    if (!(e <= bad)) bad = e;
  }
  return bad;
}

static void describe(const bcase *c, char *buf, size_t n) {
  snprintf(buf, n,
           "B%lld H%lld/%lld Lq%lld Lk%lld D%lld Dv%lld causal %d mask %d kvl %d wl %lld alibi %d "
           "sinks %d softcap %g shift %lld dt %d gdt %d bshd %d",
           (long long)c->B, (long long)c->H, (long long)c->Hkv, (long long)c->Lq, (long long)c->Lk,
           (long long)c->D, (long long)c->Dv, (int)c->causal, c->mask, c->kvl, (long long)c->wl,
           c->alibi, c->sinks, (double)c->softcap, (long long)c->shift, (int)c->dt, (int)c->gdt,
           c->bshd);
}

static fattn_backend g_be[8];
static int g_nbe;
static fattn_context *g_ctx[3]; /* 1, 2, 3 threads */
static fattn_context *g_small;  /* small blocks: many tiles */
static double g_worst;

static void run_case(const bcase *c) {
  char desc[400];
  describe(c, desc, sizeof desc);
  bprob w;
  if (!build(c, &w)) {
    EXPECT(0, "forward failed: %s [%s]", fattn_last_error(), desc);
    unbuild(&w);
    return;
  }
  grads ref;
  grads_make(c, FATTN_F32, 0, &ref);
  fattn_status st = backward(NULL, &w, &ref, FATTN_BACKEND_REFERENCE);
  EXPECT(st == FATTN_SUCCESS, "reference backward: %s [%s]", fattn_last_error(), desc);
  const int half = c->dt != FATTN_F32 || c->gdt != FATTN_F32;
  const double tol = half ? 3e-2 : 2e-5 * sqrt((double)(c->Lk + c->Lq));
  for (int x = 0; x < g_nbe; x++) {
    if (g_be[x] == FATTN_BACKEND_ONEDNN) continue;
    grads g0;
    grads_make(c, c->gdt, c->bshd, &g0);
    for (int t = 0; t < 4; t++) {
      fattn_context *ctx = t < 3 ? g_ctx[t] : g_small;
      grads g;
      grads_make(c, c->gdt, c->bshd, &g);
      st = backward(ctx, &w, &g, g_be[x]);
      EXPECT(st == FATTN_SUCCESS, "%s backward: %s [%s]", fattn_backend_name(g_be[x]),
             fattn_last_error(), desc);
      double worst = 0, eq = 0, ek = 0, ev = 0;
      float *tmp = malloc(
          (size_t)(g.nq > g.nk ? (g.nq > g.nv ? g.nq : g.nv) : (g.nk > g.nv ? g.nk : g.nv)) * 4);
      /* dq may be BSHD: to BHSD f32 first */
      for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->H; h++)
          for (int64_t i = 0; i < c->Lq; i++)
            for (int64_t p = 0; p < c->D; p++)
              tmp[((b * c->H + h) * c->Lq + i) * c->D + p] =
                  get(g.dq, b * g.tdq.strides[0] + h * g.tdq.strides[1] + i * g.tdq.strides[2] + p,
                      c->gdt);
      eq = cmp(tmp, FATTN_F32, ref.dq, g.nq, &worst);
      ek = cmp(g.dk, c->gdt, ref.dk, g.nk, &worst);
      ev = cmp(g.dv, c->gdt, ref.dv, g.nv, &worst);
      free(tmp);
      EXPECT(eq <= tol && ek <= tol && ev <= tol,
             "%s (context %d): dq %.3g, dk %.3g, dv %.3g of the reference (tolerance %.3g) [%s]",
             fattn_backend_name(g_be[x]), t, eq, ek, ev, tol, desc);
      if (worst / tol > g_worst) g_worst = worst / tol;
      if (t == 0) {
        memcpy(g0.dq, g.dq, (size_t)(g.nq * esz(c->gdt)));
        memcpy(g0.dk, g.dk, (size_t)(g.nk * esz(c->gdt)));
        memcpy(g0.dv, g.dv, (size_t)(g.nv * esz(c->gdt)));
      } else if (t < 3) {
        EXPECT(!memcmp(g0.dq, g.dq, (size_t)(g.nq * esz(c->gdt))) &&
                   !memcmp(g0.dk, g.dk, (size_t)(g.nk * esz(c->gdt))) &&
                   !memcmp(g0.dv, g.dv, (size_t)(g.nv * esz(c->gdt))),
               "%s: %d threads differ from 1 thread [%s]", fattn_backend_name(g_be[x]), t + 1,
               desc);
      }
      grads_free(&g);
    }
    grads_free(&g0);
  }
  grads_free(&ref);
  unbuild(&w);
}

static bcase base(int64_t B, int64_t H, int64_t Hkv, int64_t Lq, int64_t Lk, int64_t D,
                  uint64_t seed) {
  bcase c;
  memset(&c, 0, sizeof c);
  c.B = B, c.H = H, c.Hkv = Hkv, c.Lq = Lq, c.Lk = Lk, c.D = c.Dv = D;
  c.wl = -1;
  c.dt = c.gdt = FATTN_F32;
  c.seed = seed;
  return c;
}

/* ---- the reference against finite differences of a double forward ---- */

typedef struct dprob {
  const bcase *c;
  double *q, *k, *v, *dout, *maskv; /* maskv: additive, -inf masked; NULL none */
  const int32_t *kvl;
  const float *slopes, *sinks;
} dprob;

/* L = Σ dout ∘ out, out from the definition (the documented conventions). */
static double loss(const dprob *d) {
  const bcase *c = d->c;
  const int64_t G = c->H / c->Hkv;
  const double scale = 1.0 / sqrt((double)c->D);
  double L = 0;
  double *s = malloc((size_t)c->Lk * sizeof *s);
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t h = 0; h < c->H; h++)
      for (int64_t i = 0; i < c->Lq; i++) {
        const int64_t hk = h / G;
        const int64_t diag = c->shift + (c->causal == FATTN_CAUSAL_TOP_LEFT ? 0 : c->Lk - c->Lq);
        double mx = d->sinks ? d->sinks[h] : -INFINITY;
        for (int64_t j = 0; j < c->Lk; j++) {
          int ok = 1;
          if (c->causal != FATTN_CAUSAL_NONE && j > i + diag) ok = 0;
          if (c->wl >= 0 && j < i + diag - c->wl) ok = 0;
          if (d->kvl && j >= d->kvl[b]) ok = 0;
          double m = d->maskv ? d->maskv[((b * c->H + h) * c->Lq + i) * c->Lk + j] : 0;
          if (m == -INFINITY) ok = 0;
          s[j] = -INFINITY;
          if (!ok) continue;
          double dot = 0;
          for (int64_t p = 0; p < c->D; p++)
            dot += d->q[((b * c->H + h) * c->Lq + i) * c->D + p] *
                   d->k[((b * c->Hkv + hk) * c->Lk + j) * c->D + p];
          double x = dot * scale;
          if (c->softcap > 0) x = c->softcap * tanh(x / c->softcap);
          if (c->alibi) x -= d->slopes[h] * fabs((double)(i + diag - j));
          s[j] = x + m;
          if (s[j] > mx) mx = s[j];
        }
        if (mx == -INFINITY) continue;
        double l = d->sinks ? exp(d->sinks[h] - mx) : 0;
        for (int64_t j = 0; j < c->Lk; j++)
          if (s[j] != -INFINITY) l += exp(s[j] - mx);
        for (int64_t j = 0; j < c->Lk; j++) {
          if (s[j] == -INFINITY) continue;
          const double pj = exp(s[j] - mx) / l;
          for (int64_t x = 0; x < c->Dv; x++)
            L += pj * d->v[((b * c->Hkv + hk) * c->Lk + j) * c->Dv + x] *
                 d->dout[((b * c->H + h) * c->Lq + i) * c->Dv + x];
        }
      }
  free(s);
  return L;
}

static double *to_double(const void *src, int64_t n) {
  double *d = malloc((size_t)n * sizeof *d);
  for (int64_t x = 0; x < n; x++)
    d[x] = ((const float *)src)[x];
  return d;
}

static void finite_differences(const bcase *c) {
  char desc[400];
  describe(c, desc, sizeof desc);
  bprob w;
  EXPECT(build(c, &w), "forward: %s", fattn_last_error());
  grads ref;
  grads_make(c, FATTN_F32, 0, &ref);
  EXPECT(backward(NULL, &w, &ref, FATTN_BACKEND_REFERENCE) == FATTN_SUCCESS, "reference: %s",
         fattn_last_error());
  dprob d = {c, NULL, NULL, NULL, NULL, NULL, w.p.kv_lens, w.p.alibi_slopes, w.p.sinks};
  const int64_t nq = c->B * c->H * c->Lq * c->D, nk = c->B * c->Hkv * c->Lk * c->D,
                nv = c->B * c->Hkv * c->Lk * c->Dv;
  d.q = to_double(w.q, nq), d.k = to_double(w.k, nk), d.v = to_double(w.v, nv);
  d.dout = to_double(w.dout, c->B * c->H * c->Lq * c->Dv);
  if (c->mask == 1) { /* F32 [B, 1, Lq, Lk] broadcast over heads */
    d.maskv = malloc((size_t)(c->B * c->H * c->Lq * c->Lk) * sizeof(double));
    for (int64_t b = 0; b < c->B; b++)
      for (int64_t h = 0; h < c->H; h++)
        for (int64_t x = 0; x < c->Lq * c->Lk; x++)
          d.maskv[(b * c->H + h) * c->Lq * c->Lk + x] = ((float *)w.mask)[b * c->Lq * c->Lk + x];
  }
  double worst = 0;
  double *arrs[3] = {d.q, d.k, d.v};
  const float *gs[3] = {ref.dq, ref.dk, ref.dv};
  const int64_t ns[3] = {nq, nk, nv};
  for (int a = 0; a < 3; a++)
    for (int64_t x = 0; x < ns[a]; x++) {
      const double x0 = arrs[a][x], hstep = 1e-5;
      arrs[a][x] = x0 + hstep;
      const double lp = loss(&d);
      arrs[a][x] = x0 - hstep;
      const double lm = loss(&d);
      arrs[a][x] = x0;
      const double fd = (lp - lm) / (2 * hstep), g = gs[a][x];
      const double e = fabs(fd - g) / (1e-3 + fabs(fd));
      if (!(e <= worst)) worst = e;
    }
  EXPECT(worst <= 1e-4, "reference backward vs finite differences: worst relative error %.3g [%s]",
         worst, desc);
  printf("  finite differences: %-70.70s worst %.2e\n", desc, worst);
  free(d.q), free(d.k), free(d.v), free(d.dout), free(d.maskv);
  grads_free(&ref);
  unbuild(&w);
}

/* ---- PyTorch's autograd (tests/data/make_backward_vectors.py) ---- */

typedef struct vtensor {
  char name[48];
  int64_t dims[4], n;
  float *data;
} vtensor;

static int load_vec(const char *name, vtensor *t, int *count) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s.fvec", FATTN_TEST_DATA_DIR, name);
  FILE *fp = fopen(path, "rb");
  char magic[4];
  uint32_t hdr[2];
  int ok = fp && fread(magic, 1, 4, fp) == 4 && !memcmp(magic, "FVEC", 4) &&
           fread(hdr, 4, 2, fp) == 2 && hdr[0] == 1 && hdr[1] <= 32;
  *count = ok ? (int)hdr[1] : 0;
  for (int i = 0; ok && i < *count; i++) {
    uint32_t dt[2];
    ok = fread(t[i].name, 1, 48, fp) == 48 && fread(dt, 4, 2, fp) == 2 && dt[0] == 0 &&
         fread(t[i].dims, 8, 4, fp) == 4;
    t[i].name[47] = 0;
    t[i].n = t[i].dims[0] * t[i].dims[1] * t[i].dims[2] * t[i].dims[3];
    t[i].data = ok ? malloc((size_t)t[i].n * 4) : NULL;
    ok = ok && t[i].data && fread(t[i].data, 4, (size_t)t[i].n, fp) == (size_t)t[i].n;
  }
  if (fp) fclose(fp);
  EXPECT(ok, "%s: missing or unreadable", path);
  return ok;
}

static float *vget(vtensor *t, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(t[i].name, name)) return t[i].data;
  return NULL;
}

static void torch_vectors(const char *name) {
  vtensor t[32];
  int n = 0;
  if (!load_vec(name, t, &n)) return;
  const int64_t B = (int64_t)*vget(t, n, "cfg_B"), H = (int64_t)*vget(t, n, "cfg_H"),
                Hkv = (int64_t)*vget(t, n, "cfg_Hkv"), Lq = (int64_t)*vget(t, n, "cfg_Lq"),
                Lk = (int64_t)*vget(t, n, "cfg_Lk"), D = (int64_t)*vget(t, n, "cfg_D"),
                Dv = (int64_t)*vget(t, n, "cfg_Dv");
  const int causal = (int)*vget(t, n, "cfg_causal");
  fattn_tensor tq = fattn_tensor_contiguous(vget(t, n, "q"), FATTN_F32, B, H, Lq, D);
  fattn_tensor tk = fattn_tensor_contiguous(vget(t, n, "k"), FATTN_F32, B, Hkv, Lk, D);
  fattn_tensor tv = fattn_tensor_contiguous(vget(t, n, "v"), FATTN_F32, B, Hkv, Lk, Dv);
  fattn_tensor tdo = fattn_tensor_contiguous(vget(t, n, "dout"), FATTN_F32, B, H, Lq, Dv);
  fattn_tensor tm;
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.causal = causal == 1   ? FATTN_CAUSAL_TOP_LEFT
             : causal == 2 ? FATTN_CAUSAL_BOTTOM_RIGHT
                           : FATTN_CAUSAL_NONE;
  float *m = vget(t, n, "attn_mask");
  if (m) {
    tm = fattn_tensor_contiguous(m, FATTN_F32, B, 1, Lq, Lk);
    p.attn_mask = &tm;
  }
  /* fattn's forward, checked against PyTorch's, gives the out and lse the
   * backward reads */
  float *o = malloc((size_t)(B * H * Lq * Dv) * 4), *l = malloc((size_t)(B * H * Lq) * 4);
  fattn_tensor to = fattn_tensor_contiguous(o, FATTN_F32, B, H, Lq, Dv);
  fattn_tensor tl = fattn_tensor_contiguous(l, FATTN_F32, B, H, Lq, 1);
  p.lse = &tl;
  EXPECT(fattn_sdpa(NULL, &tq, &tk, &tv, &to, &p) == FATTN_SUCCESS, "%s forward: %s", name,
         fattn_last_error());
  double w = 0;
  const double eo = cmp(o, FATTN_F32, vget(t, n, "out"), B * H * Lq * Dv, &w);
  const double el = cmp(l, FATTN_F32, vget(t, n, "lse"), B * H * Lq, &w);
  EXPECT(eo < 1e-5 && el < 1e-5, "%s: forward vs PyTorch: out %.3g, lse %.3g", name, eo, el);
  for (int x = 0; x < g_nbe + 1; x++) {
    const fattn_backend be = x < g_nbe ? g_be[x] : FATTN_BACKEND_REFERENCE;
    if (be == FATTN_BACKEND_ONEDNN) continue;
    float *dq = malloc((size_t)(B * H * Lq * D) * 4), *dk = malloc((size_t)(B * Hkv * Lk * D) * 4),
          *dv = malloc((size_t)(B * Hkv * Lk * Dv) * 4);
    fattn_tensor tdq = fattn_tensor_contiguous(dq, FATTN_F32, B, H, Lq, D);
    fattn_tensor tdk = fattn_tensor_contiguous(dk, FATTN_F32, B, Hkv, Lk, D);
    fattn_tensor tdv = fattn_tensor_contiguous(dv, FATTN_F32, B, Hkv, Lk, Dv);
    fattn_sdpa_params pb = p;
    pb.backend = be;
    const fattn_status st =
        fattn_sdpa_backward(g_ctx[1], &tq, &tk, &tv, &to, &tdo, &tl, &tdq, &tdk, &tdv, &pb);
    double worst = 0;
    const double a = cmp(dq, FATTN_F32, vget(t, n, "dq"), B * H * Lq * D, &worst);
    const double b = cmp(dk, FATTN_F32, vget(t, n, "dk"), B * Hkv * Lk * D, &worst);
    const double c = cmp(dv, FATTN_F32, vget(t, n, "dv"), B * Hkv * Lk * Dv, &worst);
    EXPECT(st == FATTN_SUCCESS && a < 1e-5 && b < 1e-5 && c < 1e-5,
           "%s, %s: against PyTorch's autograd: dq %.3g, dk %.3g, dv %.3g (%s)", name,
           fattn_backend_name(be), a, b, c, fattn_last_error());
    if (x == 0)
      printf("  PyTorch autograd %-26s dq %.2e dk %.2e dv %.2e (%s)\n", name, a, b, c,
             fattn_backend_name(be));
    free(dq), free(dk), free(dv);
  }
  free(o), free(l);
  for (int i = 0; i < n; i++)
    free(t[i].data);
}

/* ---- every allocation failing in turn (fresh contexts: the workspace is
 * allocated each time): OUT_OF_MEMORY with nothing written, the next call
 * right; fused and reference ---- */

static void faults(void) {
  bcase c = base(1, 4, 2, 33, 40, 16, 88);
  c.dt = FATTN_BF16; /* the f32 copies of K and V too */
  bprob w;
  EXPECT(build(&c, &w), "forward: %s", fattn_last_error());
  for (int ref = 0; ref < 2; ref++) {
    grads want;
    grads_make(&c, FATTN_F32, 0, &want);
    EXPECT(backward(NULL, &w, &want, ref ? FATTN_BACKEND_REFERENCE : FATTN_BACKEND_AUTO) ==
               FATTN_SUCCESS,
           "%s", fattn_last_error());
    int n = 1, nfaults = 0;
    for (; n <= 32; n++) {
      fattn_context *ctx;
      EXPECT(fattn_context_create(NULL, &ctx) == FATTN_SUCCESS, "%s", fattn_last_error());
      grads g;
      grads_make(&c, FATTN_F32, 0, &g);
      fattn__fault_inject(n);
      const fattn_status st =
          backward(ctx, &w, &g, ref ? FATTN_BACKEND_REFERENCE : FATTN_BACKEND_AUTO);
      const long pending = fattn__fault_pending();
      fattn__fault_inject(0);
      int untouched = 1;
      for (int64_t e = 0; e < g.nq; e++)
        untouched &= ((float *)g.dq)[e] == 777.0f;
      for (int64_t e = 0; e < g.nk; e++)
        untouched &= ((float *)g.dk)[e] == 777.0f;
      if (st == FATTN_SUCCESS && pending > 0) { /* fewer than n allocations: done */
        EXPECT(!memcmp(g.dq, want.dq, (size_t)g.nq * 4), "fault sweep: result differs");
        fattn_context_destroy(ctx);
        grads_free(&g);
        break;
      }
      nfaults++;
      EXPECT(st == FATTN_ERROR_OUT_OF_MEMORY && untouched,
             "fault %d (%s): %s, gradients untouched %d", n, ref ? "reference" : "fused",
             fattn_status_string(st), untouched);
      EXPECT(backward(ctx, &w, &g, ref ? FATTN_BACKEND_REFERENCE : FATTN_BACKEND_AUTO) ==
                     FATTN_SUCCESS &&
                 !memcmp(g.dq, want.dq, (size_t)g.nq * 4),
             "the call after fault %d failed or differs", n);
      fattn_context_destroy(ctx);
      grads_free(&g);
    }
    printf("  faults (%s): %d allocations failed in turn: OUT_OF_MEMORY, nothing written\n",
           ref ? "reference" : "fused", nfaults);
    grads_free(&want);
  }
  unbuild(&w);
}

/* ---- bad arguments ---- */

static void bad_inputs(void) {
  bcase c = base(1, 4, 2, 9, 11, 8, 77);
  bprob w;
  EXPECT(build(&c, &w), "forward: %s", fattn_last_error());
  grads g;
  grads_make(&c, FATTN_F32, 0, &g);
  fattn_sdpa_params p = w.p;
  struct {
    const char *what;
    fattn_status want;
  } cases[] = {
      {"lse NULL", FATTN_ERROR_INVALID_ARGUMENT},
      {"dq dims", FATTN_ERROR_SHAPE_MISMATCH},
      {"dout dims", FATTN_ERROR_SHAPE_MISMATCH},
      {"dk overlaps k", FATTN_ERROR_INVALID_ARGUMENT},
      {"dk overlaps dv", FATTN_ERROR_INVALID_ARGUMENT},
      {"dv stride 0", FATTN_ERROR_INVALID_ARGUMENT},
      {"varlen", FATTN_ERROR_UNSUPPORTED},
      {"onednn", FATTN_ERROR_UNSUPPORTED},
      {"dq dtype U8", FATTN_ERROR_INVALID_ARGUMENT},
      {"params NULL", FATTN_ERROR_INVALID_ARGUMENT},
  };
  for (size_t x = 0; x < sizeof cases / sizeof cases[0]; x++) {
    fattn_tensor tdq = g.tdq, tdk = g.tdk, tdv = g.tdv, tdo = w.tdo;
    fattn_sdpa_params pp = p;
    const fattn_tensor *lse = &w.tl;
    const fattn_sdpa_params *pr = &pp;
    int32_t cu[2] = {0, 9};
    switch (x) {
    case 0: lse = NULL; break;
    case 1: tdq.dims[2] = 8; break;
    case 2: tdo.dims[3] = 7; break;
    case 3: tdk.data = w.k; break;
    case 4: tdk.data = g.dv; break;
    case 5: tdv.strides[2] = 0; break;
    case 6: pp.cu_seqlens_q = cu, pp.num_seqs = 1; break;
    case 7: pp.backend = FATTN_BACKEND_ONEDNN; break;
    case 8: tdq.dtype = FATTN_U8; break;
    case 9: pr = NULL; break;
    }
    const fattn_status st =
        fattn_sdpa_backward(NULL, &w.tq, &w.tk, &w.tv, &w.to, &tdo, lse, &tdq, &tdk, &tdv, pr);
    int untouched = 1;
    for (int64_t e = 0; e < g.nq; e++)
      untouched &= ((float *)g.dq)[e] == 777.0f;
    for (int64_t e = 0; e < g.nk; e++)
      untouched &= ((float *)g.dk)[e] == 777.0f;
    for (int64_t e = 0; e < g.nv; e++)
      untouched &= ((float *)g.dv)[e] == 777.0f;
    EXPECT(st == cases[x].want && untouched && fattn_last_error()[0],
           "%s: got %s (%s), want %s; gradients untouched %d", cases[x].what,
           fattn_status_string(st), fattn_last_error(), fattn_status_string(cases[x].want),
           untouched);
  }
  grads_free(&g);
  unbuild(&w);
}

int main(void) {
  g_nbe = available_backends(g_be);
  for (int t = 0; t < 3; t++) {
    fattn_context_options o;
    fattn_context_options_init(&o);
    o.num_threads = t + 1;
    fattn_context_create(&o, &g_ctx[t]);
  }
  {
    fattn_context_options o;
    fattn_context_options_init(&o);
    o.num_threads = 2;
    o.block_keys = 16, o.block_queries = 8;
    fattn_context_create(&o, &g_small);
  }
  const fattn_causal cs[] = {FATTN_CAUSAL_NONE, FATTN_CAUSAL_TOP_LEFT, FATTN_CAUSAL_BOTTOM_RIGHT};

  /* the reference itself */
  for (int ci = 0; ci < 3; ci++) {
    bcase c = base(1, 2, 1, 5, 7, 3, 10 + ci);
    c.Dv = 4;
    c.causal = cs[ci];
    finite_differences(&c);
    c.mask = 1, c.softcap = 1.5f, c.alibi = 1, c.sinks = 1;
    finite_differences(&c);
  }

  /* tile edges and features, every table */
  const int64_t dims[][4] = {{1, 1, 1, 1},     {17, 33, 16, 16},  {77, 90, 64, 64},
                             {64, 64, 80, 80}, {33, 128, 24, 40}, {1, 300, 128, 128},
                             {130, 65, 5, 7}};
  for (size_t x = 0; x < sizeof dims / sizeof dims[0]; x++)
    for (int ci = 0; ci < 3; ci++) {
      bcase c = base(2, 4, 2, dims[x][0], dims[x][1], dims[x][2], 100 + 10 * x + ci);
      c.Dv = dims[x][3];
      c.causal = cs[ci];
      run_case(&c);
    }
  for (int ci = 0; ci < 3; ci++) {
    bcase c = base(2, 8, 2, 45, 70, 32, 300 + ci);
    c.causal = cs[ci];
    c.mask = 1 + ci % 2;
    run_case(&c);
    c.mask = 0, c.kvl = 1;
    run_case(&c);
    c.kvl = 0, c.wl = 9, c.alibi = 1;
    run_case(&c);
    c.wl = -1, c.alibi = 0, c.softcap = 2.0f, c.sinks = 1;
    run_case(&c);
    c.softcap = 0, c.sinks = 0, c.shift = ci == 2 ? -20 : 7;
    run_case(&c);
  }
  {
    bcase c = base(2, 4, 1, 40, 50, 64, 400); /* MQA, strided BSHD, half */
    c.causal = FATTN_CAUSAL_TOP_LEFT, c.bshd = 1;
    run_case(&c);
    c.dt = FATTN_BF16;
    run_case(&c);
    c.dt = FATTN_F16, c.gdt = FATTN_BF16;
    run_case(&c);
    c.dt = FATTN_F32, c.gdt = FATTN_F16;
    run_case(&c);
  }
  torch_vectors("backward_mha");
  torch_vectors("backward_causal_gqa");
  torch_vectors("backward_bottom_right_dv");
  torch_vectors("backward_mask");
  bad_inputs();
  faults();
  printf("test_backward: worst error %.3f of the tolerance; %d failures\n", g_worst, g_failures);
  for (int t = 0; t < 3; t++)
    fattn_context_destroy(g_ctx[t]);
  fattn_context_destroy(g_small);
  return g_failures ? 1 : 0;
}

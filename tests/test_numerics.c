/* Numerical edge cases, every backend against the reference:
 *  - a NaN or an infinity in q, k or v reaches exactly the output rows (and
 *    lse entries) that attend it, as in the reference: not the rows that a
 *    causal limit, kv_lens, a U8 mask or an additive -inf mask keep from it.
 *    Checked on plain, causal, masked, GQA-decode and split-KV shapes, with
 *    the value at the first, a middle and the last key;
 *  - +inf and -inf in an additive mask;
 *  - logits of +-1e30 (no overflow: the row's largest wins);
 *  - denormal inputs (results within tolerance);
 *  - head_dim 1 and 512;
 *  - a million keys with bounded workspace;
 *  - the caller's floating-point environment: a call made under
 *    round-toward-zero gives the same bits as one under round-to-nearest (the
 *    driver sets its own mode on every thread) and leaves the mode as it was. */
#include <fenv.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

typedef struct shape {
  const char *name;
  int64_t B, H, Hkv, Lq, Lk, D;
  fattn_causal causal;
  int mask; /* 0 none, 1 U8, 2 additive with -inf entries */
  int kv_lens;
} shape;

typedef struct buf {
  float *q, *k, *v, *o, *l, *ro, *rl, *maskf;
  uint8_t *masku;
  int32_t kvl[4];
  size_t nq, nk, no, nl, nm;
} buf;

static void alloc_buf(const shape *s, buf *b, uint64_t seed) {
  memset(b, 0, sizeof *b);
  b->nq = (size_t)(s->B * s->H * s->Lq * s->D);
  b->nk = (size_t)(s->B * s->Hkv * s->Lk * s->D);
  b->no = b->nq;
  b->nl = (size_t)(s->B * s->H * s->Lq);
  b->nm = (size_t)(s->Lq * s->Lk);
  b->q = malloc(b->nq * 4), b->k = malloc(b->nk * 4), b->v = malloc(b->nk * 4);
  b->o = malloc(b->no * 4), b->ro = malloc(b->no * 4);
  b->l = malloc(b->nl * 4), b->rl = malloc(b->nl * 4);
  b->maskf = malloc(b->nm * 4), b->masku = malloc(b->nm);
  uint64_t r = seed;
  for (size_t i = 0; i < b->nq; i++)
    b->q[i] = (float)(2 * rng_uniform(&r) - 1);
  for (size_t i = 0; i < b->nk; i++)
    b->k[i] = (float)(2 * rng_uniform(&r) - 1), b->v[i] = (float)(2 * rng_uniform(&r) - 1);
  for (size_t i = 0; i < b->nm; i++) {
    const int keep = rng_uniform(&r) < 0.7;
    b->masku[i] = (uint8_t)keep;
    b->maskf[i] = keep ? (float)(rng_uniform(&r) - 0.5) : -INFINITY;
  }
  for (int i = 0; i < 4; i++)
    b->kvl[i] = (int32_t)(s->Lk - i * (s->Lk / 5));
}

static void free_buf(buf *b) {
  free(b->q), free(b->k), free(b->v), free(b->o), free(b->ro), free(b->l), free(b->rl);
  free(b->maskf), free(b->masku);
}

static fattn_status run(fattn_context *ctx, fattn_backend be, const shape *s, buf *b, float *o,
                        float *l) {
  fattn_tensor q = fattn_tensor_contiguous(b->q, FATTN_F32, s->B, s->H, s->Lq, s->D);
  fattn_tensor k = fattn_tensor_contiguous(b->k, FATTN_F32, s->B, s->Hkv, s->Lk, s->D);
  fattn_tensor v = fattn_tensor_contiguous(b->v, FATTN_F32, s->B, s->Hkv, s->Lk, s->D);
  fattn_tensor ot = fattn_tensor_contiguous(o, FATTN_F32, s->B, s->H, s->Lq, s->D);
  fattn_tensor lt = fattn_tensor_contiguous(l, FATTN_F32, s->B, s->H, s->Lq, 1);
  fattn_tensor m;
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.causal = s->causal;
  p.backend = be;
  if (be != FATTN_BACKEND_ONEDNN) p.lse = &lt;
  if (s->mask) { /* [1, 1, Lq, Lk], broadcast */
    m = fattn_tensor_contiguous(s->mask == 1 ? (void *)b->masku : (void *)b->maskf,
                                s->mask == 1 ? FATTN_U8 : FATTN_F32, 1, 1, s->Lq, s->Lk);
    m.strides[0] = m.strides[1] = 0;
    p.attn_mask = &m;
  }
  if (s->kv_lens) p.kv_lens = b->kvl;
  return fattn_sdpa(ctx, &q, &k, &v, &ot, &p);
}

static int row_nonfinite(const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return 1;
  return 0;
}

/* Plants `val` at one element of q, k or v; the set of output rows with a
 * non-finite value must equal the reference's, and the finite rows must be
 * close to it. */
static void check_planted(fattn_context *ctx, fattn_backend be, const shape *s, buf *b, int which,
                          int64_t key, float val, int *checks) {
  float *t = which == 0 ? b->q : which == 1 ? b->k : b->v;
  /* element 3 of (b 0, head 0, position key) */
  const size_t at = (size_t)(key * s->D + (s->D > 3 ? 3 : 0));
  const float saved = t[at];
  t[at] = val;
  const int lse = be != FATTN_BACKEND_ONEDNN;
  fattn_status st = run(NULL, FATTN_BACKEND_REFERENCE, s, b, b->ro, b->rl);
  EXPECT(st == FATTN_SUCCESS, "reference: %s", fattn_last_error());
  st = run(ctx, be, s, b, b->o, b->l);
  EXPECT(st == FATTN_SUCCESS, "%s: %s", fattn_backend_name(be), fattn_last_error());
  int64_t reached = 0, wrong = 0, far = 0;
  for (int64_t r = 0; r < (int64_t)b->nl; r++) {
    const int want = row_nonfinite(b->ro + r * s->D, s->D) ||
                     (lse && !isfinite(b->rl[r]) && !(b->rl[r] == -INFINITY));
    const int got = row_nonfinite(b->o + r * s->D, s->D) ||
                    (lse && !isfinite(b->l[r]) && !(b->l[r] == -INFINITY));
    reached += want;
    wrong += want != got;
    if (!want && !got)
      for (int64_t c = 0; c < s->D; c++)
        if (fabsf(b->o[r * s->D + c] - b->ro[r * s->D + c]) > 1e-4f) far++;
  }
  EXPECT(wrong == 0 && far == 0,
         "%s %s: %s planted in %s at key %lld: %lld rows differ in finiteness from the reference "
         "(%lld reached), %lld values off",
         fattn_backend_name(be), s->name, isnan(val) ? "NaN" : "inf",
         which == 0   ? "q"
         : which == 1 ? "k"
                      : "v",
         (long long)key, (long long)wrong, (long long)reached, (long long)far);
  (*checks)++;
  t[at] = saved;
}

static void nonfinite_checks(fattn_context *ctx, fattn_backend be, int *checks) {
  static const shape S[] = {
      {"plain", 1, 2, 2, 33, 70, 16, FATTN_CAUSAL_NONE, 0, 0},
      {"causal", 1, 2, 1, 70, 70, 16, FATTN_CAUSAL_TOP_LEFT, 0, 0},
      {"u8 mask", 1, 2, 2, 20, 50, 8, FATTN_CAUSAL_NONE, 1, 0},
      {"-inf mask", 1, 2, 2, 20, 50, 8, FATTN_CAUSAL_NONE, 2, 0},
      {"kv_lens", 2, 2, 2, 5, 60, 8, FATTN_CAUSAL_NONE, 0, 1},
      {"decode GQA", 1, 4, 1, 1, 90, 32, FATTN_CAUSAL_NONE, 0, 0},
      {"split-KV", 1, 2, 1, 3, 2000, 16, FATTN_CAUSAL_BOTTOM_RIGHT, 0, 0},
  };
  for (size_t si = 0; si < sizeof S / sizeof S[0]; si++) {
    const shape *s = &S[si];
    buf b;
    alloc_buf(s, &b, 3 + si);
    const int64_t keys[3] = {0, s->Lk / 2, s->Lk - 1};
    for (int which = 0; which < 3; which++)
      for (int ki = 0; ki < 3; ki++) {
        const int64_t pos = which == 0 ? (keys[ki] < s->Lq ? keys[ki] : s->Lq - 1) : keys[ki];
        check_planted(ctx, be, s, &b, which, pos, NAN, checks);
        check_planted(ctx, be, s, &b, which, pos, INFINITY, checks);
      }
    free_buf(&b);
  }
}

/* out and lse against the reference within `tol` (absolute on out,
 * relative on lse); returns the worst error. */
static double compare(const shape *s, buf *b, int lse) {
  double worst = 0;
  for (size_t i = 0; i < b->no; i++) {
    const double e = fabs((double)b->o[i] - (double)b->ro[i]);
    if (!(e <= worst)) worst = e; /* NaN too */
  }
  if (lse)
    for (size_t i = 0; i < b->nl; i++) {
      if (b->rl[i] == -INFINITY && b->l[i] == -INFINITY) continue;
      const double e = fabs((double)b->l[i] - (double)b->rl[i]) / (1 + fabs((double)b->rl[i]));
      if (!(e <= worst)) worst = e;
    }
  (void)s;
  return worst;
}

static void fpenv_check(fattn_context *ctx, fattn_backend be, int *checks) {
  shape s = {"fpenv", 1, 4, 2, 40, 300, 32, FATTN_CAUSAL_TOP_LEFT, 0, 0};
  buf b;
  alloc_buf(&s, &b, 26);
  EXPECT(run(ctx, be, &s, &b, b.ro, b.rl) == FATTN_SUCCESS, "%s", fattn_last_error());
  fesetround(FE_TOWARDZERO);
  const fattn_status st = run(ctx, be, &s, &b, b.o, b.l);
  const int mode = fegetround();
  fesetround(FE_TONEAREST);
  EXPECT(st == FATTN_SUCCESS && mode == FE_TOWARDZERO && !memcmp(b.o, b.ro, b.no * 4) &&
             !memcmp(b.l, b.rl, b.nl * 4),
         "%s: a call under round-toward-zero differs or changed the mode", fattn_backend_name(be));
  (*checks)++;
  free_buf(&b);
}

static void value_checks(fattn_context *ctx, fattn_backend be, int *checks) {
  const int lse = be != FATTN_BACKEND_ONEDNN;
  /* additive mask with +inf: the row's scores become +inf: NaN, as in the reference */
  {
    shape s = {"+inf mask", 1, 1, 1, 4, 40, 8, FATTN_CAUSAL_NONE, 2, 0};
    buf b;
    alloc_buf(&s, &b, 21);
    b.maskf[1 * s.Lk + 7] = INFINITY; /* row 1, key 7 */
    run(NULL, FATTN_BACKEND_REFERENCE, &s, &b, b.ro, b.rl);
    EXPECT(run(ctx, be, &s, &b, b.o, b.l) == FATTN_SUCCESS, "%s", fattn_last_error());
    for (int64_t r = 0; r < s.Lq; r++)
      EXPECT(row_nonfinite(b.o + r * s.D, s.D) == row_nonfinite(b.ro + r * s.D, s.D),
             "%s +inf mask: row %lld", fattn_backend_name(be), (long long)r);
    (*checks)++;
    free_buf(&b);
  }
  /* logits +-1e30: q·k = ±1e30 at one key per row; that key wins (or loses) */
  {
    shape s = {"1e30 logits", 1, 2, 2, 9, 64, 4, FATTN_CAUSAL_NONE, 0, 0};
    buf b;
    alloc_buf(&s, &b, 22);
    for (int64_t i = 0; i < s.Lq * s.H; i++)
      b.q[i * s.D] = 1e15f;
    b.k[5 * s.D] = 1e15f * ((b.k[5 * s.D] > 0) ? 1 : -1); /* head 0, key 5: ±1e30 */
    b.k[(s.Lk + 9) * s.D] = 1e15f;                        /* head 1, key 9: +1e30 */
    run(NULL, FATTN_BACKEND_REFERENCE, &s, &b, b.ro, b.rl);
    EXPECT(run(ctx, be, &s, &b, b.o, b.l) == FATTN_SUCCESS, "%s", fattn_last_error());
    const double w = compare(&s, &b, lse);
    EXPECT(w <= 1e-5, "%s 1e30 logits: worst error %g", fattn_backend_name(be), w);
    (*checks)++;
    free_buf(&b);
  }
  /* denormal q, k, v (and some zero rows): within a tight absolute bound */
  {
    shape s = {"denormals", 1, 2, 2, 17, 100, 16, FATTN_CAUSAL_NONE, 0, 0};
    buf b;
    alloc_buf(&s, &b, 23);
    for (size_t i = 0; i < b.nq; i += 2)
      b.q[i] *= 1e-39f;
    for (size_t i = 0; i < b.nk; i += 3)
      b.k[i] *= 1e-40f, b.v[i] *= 1e-41f;
    run(NULL, FATTN_BACKEND_REFERENCE, &s, &b, b.ro, b.rl);
    EXPECT(run(ctx, be, &s, &b, b.o, b.l) == FATTN_SUCCESS, "%s", fattn_last_error());
    const double w = compare(&s, &b, lse);
    EXPECT(w <= 1e-5, "%s denormals: worst error %g", fattn_backend_name(be), w);
    (*checks)++;
    free_buf(&b);
  }
  /* head_dim 1 and 512 */
  for (int64_t D = 1; D <= 512; D += 511) {
    shape s = {"head_dim", 2, 2, 1, 37, 45, D, FATTN_CAUSAL_TOP_LEFT, 0, 0};
    buf b;
    alloc_buf(&s, &b, 24);
    run(NULL, FATTN_BACKEND_REFERENCE, &s, &b, b.ro, b.rl);
    EXPECT(run(ctx, be, &s, &b, b.o, b.l) == FATTN_SUCCESS, "%s", fattn_last_error());
    const double w = compare(&s, &b, lse);
    EXPECT(w <= 2e-5, "%s head_dim %lld: worst error %g", fattn_backend_name(be), (long long)D, w);
    (*checks)++;
    free_buf(&b);
  }
}

int main(void) {
  fattn_backend be[8];
  const int nbe = available_backends(be);
  int checks = 0;
  for (int i = 0; i < nbe; i++) {
    if (be[i] == FATTN_BACKEND_ONEDNN) continue; /* unfused: 0·NaN reaches masked rows */
    fattn_context *ctx;
    fattn_context_options o;
    fattn_context_options_init(&o);
    o.num_threads = 2;
    EXPECT(fattn_context_create(&o, &ctx) == FATTN_SUCCESS, "%s", fattn_last_error());
    const int before = g_failures;
    nonfinite_checks(ctx, be[i], &checks);
    value_checks(ctx, be[i], &checks);
    fpenv_check(ctx, be[i], &checks);
    printf("%-8s non-finite q/k/v reach exactly the rows that attend them (7 shapes x 18 plants); "
           "+inf mask, 1e30 logits, denormals, head_dim 1 and 512, caller's rounding mode: %s\n",
           fattn_backend_name(be[i]), g_failures == before ? "ok" : "FAILED");
    fattn_context_destroy(ctx);
  }
  /* a million keys (decode, fused AUTO): right answer, workspace independent of Lk */
  {
    shape s = {"1M keys", 1, 2, 1, 1, 1 << 20, 8, FATTN_CAUSAL_NONE, 0, 0};
    buf b;
    alloc_buf(&s, &b, 25);
    free(b.maskf), free(b.masku), b.maskf = NULL, b.masku = NULL;
    run(NULL, FATTN_BACKEND_REFERENCE, &s, &b, b.ro, b.rl);
    EXPECT(run(NULL, FATTN_BACKEND_AUTO, &s, &b, b.o, b.l) == FATTN_SUCCESS, "%s",
           fattn_last_error());
    const double w = compare(&s, &b, 1);
    size_t ws_big = 0, ws_small = 0;
    fattn_tensor q = fattn_tensor_contiguous(b.q, FATTN_F32, 1, 2, 1, 8);
    fattn_tensor k = fattn_tensor_contiguous(b.k, FATTN_F32, 1, 1, 1 << 20, 8);
    fattn_tensor ks = fattn_tensor_contiguous(b.k, FATTN_F32, 1, 1, 1 << 16, 8);
    fattn_tensor o = fattn_tensor_contiguous(b.o, FATTN_F32, 1, 2, 1, 8);
    fattn_sdpa_params p;
    fattn_sdpa_params_init(&p);
    fattn_sdpa_workspace_size(NULL, &q, &k, &k, &o, &p, &ws_big);
    fattn_sdpa_workspace_size(NULL, &q, &ks, &ks, &o, &p, &ws_small);
    EXPECT(w <= 1e-5 && ws_big == ws_small && ws_big < (4u << 20),
           "1M keys: worst error %g, workspace %zu bytes (%zu at 64K keys)", w, ws_big, ws_small);
    printf("1M keys: worst error %.2g, workspace %zu bytes (the same at 64K keys)\n", w, ws_big);
    checks++;
    free_buf(&b);
  }
  printf("%d passed, %d failed\n", checks - g_failures, g_failures);
  return g_failures != 0;
}

/* The tile family's kernels (lib/kernel.h, fattn__tile_table) against double
 * precision, swept around every tile edge: rows m and keys n below / at /
 * above 16 and 32 and their multiples, head_dim d and dv with tails (1, 31,
 * 33, 80, 130, ...), sources of every dtype with row strides past the row.
 * Runs the portable model of the tile operations on every CPU, and the AMX
 * table as well where the CPU has it and the OS grants the tile state. Guard
 * values around and between the rows of every output catch writes outside
 * the padded tiles; the padding itself must hold exactly what the contract
 * says (zeros in s, o unchanged). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "harness.h"
#include "internal.h"

static const float POISON = 12345.0f;
enum { GUARD = 32 };

static int64_t up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* n floats, 64-byte aligned (the tile loads need no alignment; the real
 * engine is fastest with it), with GUARD poisoned floats on each side */
static float *guarded(int64_t n) {
  float *p = aligned_alloc(64, (size_t)up((n + 2 * GUARD) * 4, 64));
  for (int64_t i = 0; i < n + 2 * GUARD; i++)
    p[i] = POISON;
  return p + GUARD;
}

static int guards_intact(const float *p, int64_t n) {
  for (int64_t i = 1; i <= GUARD; i++)
    if (p[-i] != POISON || p[n + i - 1] != POISON) return 0;
  return 1;
}

static uint16_t *u16(int64_t n) { return aligned_alloc(64, (size_t)up(n * 2 + 64, 64)); }

/* a source matrix of rows × cols (ld elements per row) of dtype dt, random in
 * [lo, hi); its values as bf16 (what the packers must produce) into exact */
static void *source(int64_t rows, int64_t cols, int64_t ld, fattn_dtype dt, double lo, double hi,
                    uint64_t *s, double *exact) {
  const size_t es = dt == FATTN_F32 ? 4 : 2;
  unsigned char *p = malloc((size_t)(rows * ld) * es + 1);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < ld; c++) {
      const float x = (float)(lo + (hi - lo) * rng_uniform(s));
      uint16_t h;
      float b;
      if (dt == FATTN_F32) {
        memcpy(p + (size_t)(r * ld + c) * 4, &x, 4);
        b = fattn__bf16_to_f32(fattn__f32_to_bf16(x));
      } else if (dt == FATTN_F16) {
        h = fattn__f32_to_f16(x);
        memcpy(p + (size_t)(r * ld + c) * 2, &h, 2);
        b = fattn__bf16_to_f32(fattn__f32_to_bf16(fattn__f16_to_f32(h)));
      } else {
        h = fattn__f32_to_bf16(x);
        memcpy(p + (size_t)(r * ld + c) * 2, &h, 2);
        b = fattn__bf16_to_f32(h);
      }
      if (c < cols) exact[r * cols + c] = b;
    }
  return p;
}

static const fattn_dtype dts[] = {FATTN_BF16, FATTN_F32, FATTN_F16};
static const char *dtn(fattn_dtype d) {
  return d == FATTN_BF16 ? "bf16" : d == FATTN_F32 ? "f32" : "f16";
}

/* qk then pv on one case; returns the largest |err| / tolerance */
static double check_case(const fattn__tile_table *t, int64_t m, int64_t n, int64_t d, int64_t dv,
                         fattn_dtype dt, uint64_t *seed) {
  const int64_t mp = up(m, 16), nq = up(n, 16), np = up(n, 32), dp = up(d, 32), dvp = up(dv, 16);
  const int64_t ldq = d + 3, ldk = d + 5, ldv = dv + 7, lda = dp + 16, lds = nq + 3, ldo = dvp + 5,
                ldp = n + 2;
  double *qx = malloc((size_t)(m * d) * 8), *kx = malloc((size_t)(n * d) * 8),
         *vx = malloc((size_t)(n * dv) * 8), *px = malloc((size_t)(m * n) * 8);
  void *q = source(m, d, ldq, dt, -1, 1, seed, qx), *k = source(n, d, ldk, dt, -1, 1, seed, kx);
  void *v = source(n, dv, ldv, dt, -1, 1, seed, vx);
  uint16_t *qa = u16(mp * lda), *kb = u16(nq * dp), *vb = u16(np * dvp), *pa = u16(mp * (np + 16));
  float *s = guarded(mp * lds), *o = guarded(mp * ldo), *o0 = malloc((size_t)(mp * ldo) * 4);
  float *p = malloc((size_t)(m * ldp) * 4);
  const float scale = 0.37f;
  double worst = 0;

  t->pack_a(m, d, q, ldq, dt, qa, lda);
  t->pack_k(n, d, k, ldk, dt, kb);
  for (int64_t r = 0; r < mp; r++) /* the gaps between rows stay poisoned */
    for (int64_t j = 0; j < nq; j++)
      s[r * lds + j] = -7.0f;
  t->qk(m, n, d, qa, lda, kb, scale, s, lds);
  for (int64_t r = 0; r < mp; r++)
    for (int64_t j = 0; j < lds; j++) {
      const float got = s[r * lds + j];
      if (j >= nq) {
        EXPECT(got == POISON, "%s qk m%lld n%lld d%lld: wrote s[%lld][%lld] past the tiles",
               t->name, (long long)m, (long long)n, (long long)d, (long long)r, (long long)j);
        continue;
      }
      if (r >= m || j >= n) {
        EXPECT(got == 0.0f, "%s qk m%lld n%lld d%lld: padding s[%lld][%lld] = %g, not 0", t->name,
               (long long)m, (long long)n, (long long)d, (long long)r, (long long)j, got);
        continue;
      }
      double ref = 0, mag = 0;
      for (int64_t e = 0; e < d; e++) {
        ref += qx[r * d + e] * kx[j * d + e];
        mag += fabs(qx[r * d + e] * kx[j * d + e]);
      }
      ref *= scale;
      const double tol = (double)(d + 2) * FLT_EPSILON * mag * scale + 1e-30;
      const double err = fabs(got - ref);
      if (err / tol > worst) worst = err / tol;
      EXPECT(err <= tol, "%s qk m%lld n%lld d%lld %s: s[%lld][%lld] = %.9g, ref %.9g (tol %.3g)",
             t->name, (long long)m, (long long)n, (long long)d, dtn(dt), (long long)r, (long long)j,
             got, ref, tol);
    }
  EXPECT(guards_intact(s, mp * lds), "%s qk: wrote outside s", t->name);

  /* P in [0, 1) (softmax's output), rounded to bf16 by pack_p */
  for (int64_t r = 0; r < m; r++)
    for (int64_t j = 0; j < ldp; j++) {
      p[r * ldp + j] = (float)rng_uniform(seed);
      if (j < n) px[r * n + j] = fattn__bf16_to_f32(fattn__f32_to_bf16(p[r * ldp + j]));
    }
  t->pack_p(m, n, p, ldp, pa, np + 16);
  t->pack_v(n, dv, v, ldv, dt, vb);
  for (int64_t r = 0; r < mp; r++)
    for (int64_t c = 0; c < dvp; c++)
      o[r * ldo + c] = (float)(2 * rng_uniform(seed) - 1);
  memcpy(o0, o, (size_t)(mp * ldo) * 4);
  /* the online softmax's rescale of O on every other case (alpha in (0, 1], some exactly 1) */
  float alpha[128]; /* m <= 70 below */
  const int rescale = (n + dv) % 2 == 0;
  for (int64_t r = 0; r < m; r++)
    alpha[r] = r % 3 == 0 ? 1.0f : (float)(0.25 + 0.75 * rng_uniform(seed));
  t->pv(m, n, dv, pa, np + 16, vb, rescale ? alpha : NULL, o, ldo);
  for (int64_t r = 0; r < mp; r++)
    for (int64_t c = 0; c < ldo; c++) {
      const float got = o[r * ldo + c];
      if (c >= dvp || r >= m || c >= dv) {
        EXPECT(got == o0[r * ldo + c], "%s pv m%lld n%lld dv%lld: o[%lld][%lld] %s changed",
               t->name, (long long)m, (long long)n, (long long)dv, (long long)r, (long long)c,
               c >= dvp ? "past the tiles" : "in the padding");
        continue;
      }
      double ref = (rescale ? (double)alpha[r] : 1.0) * o0[r * ldo + c], mag = fabs(ref);
      for (int64_t j = 0; j < n; j++) {
        ref += px[r * n + j] * vx[j * dv + c];
        mag += fabs(px[r * n + j] * vx[j * dv + c]);
      }
      const double tol = (double)(n + 2) * FLT_EPSILON * mag + 1e-30;
      const double err = fabs(got - ref);
      if (err / tol > worst) worst = err / tol;
      EXPECT(err <= tol, "%s pv m%lld n%lld dv%lld %s: o[%lld][%lld] = %.9g, ref %.9g (tol %.3g)",
             t->name, (long long)m, (long long)n, (long long)dv, dtn(dt), (long long)r,
             (long long)c, got, ref, tol);
    }
  EXPECT(guards_intact(o, mp * ldo), "%s pv: wrote outside o", t->name);

  free(qx), free(kx), free(vx), free(px), free(q), free(k), free(v);
  free(qa), free(kb), free(vb), free(pa), free(s - GUARD), free(o - GUARD), free(o0), free(p);
  return worst;
}

/* The model's TDPBF16PS on hand-made tiles: the pair order and the columns
 * as Intel's definition has them (a wrong transpose in a packer would still
 * pass if the model had the same one). */
static void check_model_semantics(void) {
  uint16_t a[16 * 32], b[16 * 32];
  float c[16 * 16];
  memset(a, 0, sizeof a), memset(b, 0, sizeof b);
  a[0 * 32 + 0] = fattn__f32_to_bf16(2.0f);          /* A[0][0] pairs with B[0][0] */
  a[0 * 32 + 1] = fattn__f32_to_bf16(3.0f);          /* A[0][1] pairs with B[0][1] */
  a[1 * 32 + 5] = fattn__f32_to_bf16(1.0f);          /* A[1][5]: pair 2, second element */
  b[0 * 32 + 2 * 3 + 0] = fattn__f32_to_bf16(5.0f);  /* column 3 of pair row 0, element 0 */
  b[0 * 32 + 2 * 3 + 1] = fattn__f32_to_bf16(7.0f);  /* element 1 */
  b[2 * 32 + 2 * 9 + 1] = fattn__f32_to_bf16(11.0f); /* column 9 of pair row 2, element 1 */
  /* one qk of 2 rows × 16 keys, d 32, through the model: s = A · B as packed */
  fattn__tile_model.qk(2, 16, 32, a, 32, b, 1.0f, c, 16);
  EXPECT(c[0 * 16 + 3] == 2.0f * 5.0f + 3.0f * 7.0f, "model: c[0][3] = %g, want 31", c[3]);
  EXPECT(c[1 * 16 + 9] == 11.0f, "model: c[1][9] = %g, want 11", c[16 + 9]);
  float sum = 0;
  for (int i = 0; i < 32; i++)
    sum += fabsf(c[i]);
  EXPECT(sum == 31.0f + 11.0f, "model: other entries are not 0 (sum %g)", sum);
  fattn__tile_model.release();
}

static void sweep(const fattn__tile_table *t, int quick) {
  static const int64_t ms[] = {1, 15, 16, 17, 31, 32, 33, 48, 64, 70};
  static const int64_t ns[] = {1, 15, 16, 17, 31, 32, 33, 48, 63, 65};
  static const int64_t ds[] = {1, 31, 32, 33, 64, 80, 96, 128, 130};
  static const int64_t dvs[] = {1, 15, 16, 17, 48, 80};
  uint64_t seed = 42;
  int cases = 0;
  double worst = 0;
  for (int i = 0; i < 10; i++)
    for (int j = 0; j < 10; j++) {
      if (quick && (i + j) % 3) continue;
      const int64_t d = ds[(3 * i + j) % 9], dv = dvs[(i + 5 * j) % 6];
      const double w = check_case(t, ms[i], ns[j], d, dv, dts[(i + j) % 3], &seed);
      if (w > worst) worst = w;
      cases++;
    }
  t->release();
  printf("tile %s: %d cases (m, n around 16 / 32, d 1..130, dv 1..80), worst error %.3f of "
         "the bound\n",
         t->name, cases, worst);
  EXPECT(worst > 0, "%s: no error at all: suspicious (all zeros?)", t->name);
}

int main(int argc, char **argv) {
  /* under an emulator the scalar model is slow: a third of the cases */
  const int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
  check_model_semantics();
  sweep(&fattn__tile_model, quick);
  const char *why = "";
  const fattn__tile_table *amx = fattn__tile_for(&why);
  if (amx)
    sweep(amx, 0);
  else
    printf("tile amx: skipped (%s)\n", why);
  printf("%d failures\n", g_failures);
  return g_failures ? 1 : 0;
}

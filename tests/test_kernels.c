/* Kernel-level tests, XNNPACK style: every function of every kernel table this
 * CPU runs, swept around each tile edge (rows below / at / above the register
 * tile in whole vectors, keys and columns 1 .. 2·tile + 1, head_dim with
 * tails), with prime strides and non-unit inner strides, against double
 * precision; guard bands around every output catch writes outside it. Tables
 * the CPU lacks are skipped. Plus the vector exp's error bound, and the
 * workspace bound (no O(Lq·Lk) buffer). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "harness.h"
#include "internal.h"

#define GUARD 64
static const float POISON = 12345.0f;

/* A float buffer with GUARD poisoned floats on both sides, 64-byte aligned. */
/* aligned_alloc wants a size that is a multiple of the alignment */
static void *alloc64(int64_t floats) {
  return aligned_alloc(64, (size_t)(floats * 4 + 63) / 64 * 64);
}

static float *guarded(int64_t n) {
  float *p = alloc64(n + 2 * GUARD);
  for (int64_t i = 0; i < n + 2 * GUARD; i++)
    p[i] = POISON;
  return p + GUARD;
}
static int guards_intact(const float *p, int64_t n) {
  for (int64_t i = 1; i <= GUARD; i++)
    if (p[-i] != POISON || p[n + i - 1] != POISON) return 0;
  return 1;
}
static void unguard(float *p) { free(p - GUARD); }

static uint64_t seed = 42;
static float rnd(void) { return (float)(2 * rng_uniform(&seed) - 1); }

static int checks;

static void test_qk(const fattn__kernel_table *t) {
  const int64_t rw = t->rw;
  static const int64_t ds[] = {1, 2, 7, 16, 17, 65};
  for (int64_t rows = rw; rows <= rw * ((t->mr / rw) + 1) + rw; rows += rw)
    for (int64_t n = 1; n <= 2 * t->nr + 1; n++)
      for (size_t di = 0; di < sizeof ds / sizeof ds[0]; di++)
        for (int64_t sk = 1; sk <= 2; sk++) {
          const int64_t d = ds[di], ldk = d * sk + 3, lds = rows + rw; /* gaps in St too */
          float *qt = alloc64(d * rows);
          float *k = guarded(n * ldk), *st = guarded(n * lds);
          for (int64_t i = 0; i < d * rows; i++)
            qt[i] = rnd();
          for (int64_t i = 0; i < n * ldk; i++)
            k[i] = rnd();
          t->qk(rows, n, d, qt, k, ldk, sk, st, lds);
          double worst = 0;
          int gaps_ok = 1;
          for (int64_t j = 0; j < n; j++) {
            for (int64_t r = 0; r < rows; r++) {
              double ref = 0, mag = 0;
              for (int64_t p = 0; p < d; p++) {
                ref += (double)qt[p * rows + r] * k[j * ldk + p * sk];
                mag += fabs((double)qt[p * rows + r] * k[j * ldk + p * sk]);
              }
              const double e =
                  fabs(st[j * lds + r] - ref) / ((double)(d + 1) * FLT_EPSILON * mag + 1e-30);
              worst = e > worst ? e : worst;
            }
            for (int64_t r = rows; r < lds; r++)
              gaps_ok &= st[j * lds + r] == POISON;
          }
          EXPECT(worst <= 1.0 && gaps_ok && guards_intact(st, n * lds) && guards_intact(k, n * ldk),
                 "%s qk rows=%lld n=%lld d=%lld sk=%lld: err/bound %.3g, gaps %d", t->name,
                 (long long)rows, (long long)n, (long long)d, (long long)sk, worst, gaps_ok);
          checks++;
          free(qt);
          unguard(k);
          unguard(st);
        }
}

static void test_softmax(const fattn__kernel_table *t) {
  const int64_t rw = t->rw;
  for (int64_t rows = rw; rows <= 3 * rw; rows += rw)
    for (int64_t n = 1; n <= 19; n++)
      for (int start = 0; start < 2; start++) { /* first block (m = -inf) or a later one */
        const int64_t lds = rows + rw;
        float *st = guarded(n * lds), *m = guarded(rows), *l = guarded(rows), *a = guarded(rows);
        float *s0 = malloc((size_t)(n * lds) * sizeof(float));
        float m0[64], l0[64];
        for (int64_t r = 0; r < rows; r++) {
          m0[r] = m[r] = start ? rnd() * 3 : -INFINITY;
          l0[r] = l[r] = start ? 1 + rnd() * 0.5f : 0.0f;
        }
        for (int64_t j = 0; j < n; j++)
          for (int64_t r = 0; r < lds; r++) {
            float x = r < rows ? rnd() * 8 : POISON;
            if (r < rows && (r % 5 == 2 || (j + r) % 7 == 0)) x = -INFINITY; /* masked */
            st[j * lds + r] = s0[j * lds + r] = x;
          }
        t->softmax(rows, n, st, lds, m, l, a);
        int ok = 1;
        for (int64_t r = 0; r < rows; r++) {
          double mx = m0[r];
          for (int64_t j = 0; j < n; j++)
            mx = fmax(mx, s0[j * lds + r]);
          const int empty = mx == -INFINITY;
          const double base = empty ? 0 : mx;
          const double alpha = empty ? 1 : exp2(m0[r] - mx);
          double sum = 0;
          /* exp's own error (< 1 ulp, test_exp) plus the rounding of its f32
           * argument, u·|argument| relative. */
          for (int64_t j = 0; j < n; j++) {
            const double arg = s0[j * lds + r] - base, p = exp2(arg);
            sum += p;
            ok &= p == 0.0 ? st[j * lds + r] == 0.0f /* masked key: exactly 0 */
                           : fabs(st[j * lds + r] - p) <= (4 + fabs(arg)) * FLT_EPSILON * p;
          }
          const int okm = m[r] == (float)mx || (empty && m[r] == -INFINITY);
          const int oka = empty ? a[r] == 1.0f
                          : alpha == 0.0
                              ? a[r] == 0.0f /* first block: m0 = -inf */
                              : fabs(a[r] - alpha) <= (4 + fabs(m0[r] - mx)) * FLT_EPSILON * alpha;
          const int okl = fabs(l[r] - (alpha * l0[r] + sum)) <=
                          (n + 8 + 20) * FLT_EPSILON * (alpha * l0[r] + sum);
          ok &= okm && oka && okl;
          for (int64_t r2 = rows; r2 < lds; r2++)
            for (int64_t j = 0; j < n; j++)
              ok &= st[j * lds + r2] == POISON;
        }
        ok &= guards_intact(st, n * lds) && guards_intact(m, rows) && guards_intact(l, rows) &&
              guards_intact(a, rows);
        EXPECT(ok, "%s softmax rows=%lld n=%lld start=%d", t->name, (long long)rows, (long long)n,
               start);
        checks++;
        unguard(st), unguard(m), unguard(l), unguard(a);
        free(s0);
      }
}

/* The backward's tile step: P = 2^(St - lse2) (masked -inf: exactly 0; a row
 * with lse2 = +inf: 0), dS = P·(dP - drow); padding lanes untouched. */
static void test_bw_ds(const fattn__kernel_table *t) {
  const int64_t rw = t->rw;
  for (int64_t rows = rw; rows <= 3 * rw; rows += rw)
    for (int64_t n = 1; n <= 19; n++) {
      const int64_t lds = rows + rw;
      float *st = guarded(n * lds), *dp = guarded(n * lds), *l2 = guarded(rows),
            *dr = guarded(rows);
      float *s0 = malloc((size_t)(n * lds) * sizeof(float)),
            *d0 = malloc((size_t)(n * lds) * sizeof(float));
      for (int64_t r = 0; r < rows; r++) {
        l2[r] = r % 9 == 4 ? INFINITY : 4 + rnd() * 2; /* >= every score, as a real lse */
        dr[r] = rnd();
      }
      for (int64_t j = 0; j < n; j++)
        for (int64_t r = 0; r < lds; r++) {
          float x = r < rows ? rnd() * 4 - 2 : POISON;
          if (r < rows && (j + r) % 7 == 0) x = -INFINITY;
          st[j * lds + r] = s0[j * lds + r] = x;
          dp[j * lds + r] = d0[j * lds + r] = r < rows ? rnd() : POISON;
        }
      t->bw_ds(rows, n, st, dp, lds, l2, dr);
      int ok = 1;
      for (int64_t j = 0; j < n; j++)
        for (int64_t r = 0; r < lds; r++) {
          const int64_t x = j * lds + r;
          if (r >= rows) {
            ok &= st[x] == POISON && dp[x] == POISON;
            continue;
          }
          const double arg = (double)s0[x] - l2[r], p = exp2(arg);
          const double ds = p * ((double)d0[x] - dr[r]);
          ok &= p == 0.0 ? st[x] == 0.0f && dp[x] == 0.0f
                         : fabs(st[x] - p) <= (4 + fabs(arg)) * FLT_EPSILON * p &&
                               fabs(dp[x] - ds) <= (8 + fabs(arg)) * FLT_EPSILON *
                                                       (p * (fabs(d0[x]) + fabs(dr[r])));
        }
      ok &= guards_intact(st, n * lds) && guards_intact(dp, n * lds) && guards_intact(l2, rows) &&
            guards_intact(dr, rows);
      EXPECT(ok, "%s bw_ds rows=%lld n=%lld", t->name, (long long)rows, (long long)n);
      checks++;
      unguard(st), unguard(dp), unguard(l2), unguard(dr);
      free(s0), free(d0);
    }
}

static void test_pv(const fattn__kernel_table *t) {
  const int64_t rw = t->rw;
  for (int64_t rows = rw; rows <= 5 * rw; rows += rw)
    for (int64_t n = 1; n <= 13; n += 3)
      for (int64_t dv = 1; dv <= 19; dv++)
        for (int64_t sv = 1; sv <= 3; sv += 2)
          for (int moved = 0; moved < 2; moved++) {
            const int64_t lds = rows + rw, ldv = dv * sv + 5, ldo = rows + 2 * rw;
            float *pt = alloc64(n * lds);
            float *v = guarded(n * ldv), *ot = guarded(dv * ldo);
            float *alpha = alloc64(rows);
            double *ref = malloc((size_t)(dv * rows) * sizeof(double));
            for (int64_t i = 0; i < n * lds; i++)
              pt[i] = fabsf(rnd());
            for (int64_t i = 0; i < n * ldv; i++)
              v[i] = rnd();
            for (int64_t r = 0; r < rows; r++)
              alpha[r] = moved && r % 3 ? fabsf(rnd()) : 1.0f;
            for (int64_t c = 0; c < dv; c++)
              for (int64_t r = 0; r < ldo; r++)
                ot[c * ldo + r] = r < rows ? rnd() : POISON;
            for (int64_t c = 0; c < dv; c++)
              for (int64_t r = 0; r < rows; r++) {
                double acc = (double)alpha[r] * ot[c * ldo + r];
                for (int64_t j = 0; j < n; j++)
                  acc += (double)v[j * ldv + c * sv] * pt[j * lds + r];
                ref[c * rows + r] = acc;
              }
            t->pv(rows, n, dv, pt, lds, v, ldv, sv, alpha, ot, ldo);
            int ok = guards_intact(ot, dv * ldo) && guards_intact(v, n * ldv);
            for (int64_t c = 0; c < dv; c++)
              for (int64_t r = 0; r < ldo; r++)
                ok &= r < rows ? fabs(ot[c * ldo + r] - ref[c * rows + r]) <=
                                     (n + 4) * FLT_EPSILON * (fabs(ref[c * rows + r]) + n + 1)
                               : ot[c * ldo + r] == POISON;
            EXPECT(ok, "%s pv rows=%lld n=%lld dv=%lld sv=%lld moved=%d", t->name, (long long)rows,
                   (long long)n, (long long)dv, (long long)sv, moved);
            checks++;
            free(pt), free(alpha), free(ref);
            unguard(v), unguard(ot);
          }
}

/* The small-unit (row-major) functions: m = 1..small_rows, keys and columns
 * around their tiles (4 keys, 4 vectors of dv) and the vector width, head_dim
 * with element tails; prime row strides; guard bands. */
static void test_rows(const fattn__kernel_table *t) {
  if (!t->small_rows) return;
  static const int64_t dims[] = {1, 3, 15, 16, 17, 33, 64, 65, 130};
  for (int64_t m = 1; m <= t->small_rows; m++)
    for (int64_t n = 1; n <= 21; n += 4)
      for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        const int64_t d = dims[di], ldk = d + 3, lds = n + 5, ldo = d + 7;
        float *q = guarded(m * d), *k = guarded(n * ldk), *s = guarded(m * lds);
        float *o = guarded(m * ldo), *mr = guarded(m), *lr = guarded(m), *al = guarded(m);
        double *ref = malloc((size_t)(m * n) * sizeof(double));
        for (int64_t i = 0; i < m * d; i++)
          q[i] = rnd();
        for (int64_t i = 0; i < n * ldk; i++)
          k[i] = rnd();
        for (int64_t i = 0; i < m * lds; i++)
          s[i] = POISON;
        t->qk_rows(m, n, d, q, k, ldk, s, lds);
        int ok = guards_intact(s, m * lds) && guards_intact(q, m * d) && guards_intact(k, n * ldk);
        for (int64_t r = 0; r < m; r++)
          for (int64_t j = 0; j < lds; j++) {
            if (j >= n) {
              ok &= s[r * lds + j] == POISON;
              continue;
            }
            double acc = 0, mag = 0;
            for (int64_t p = 0; p < d; p++) {
              acc += (double)q[r * d + p] * k[j * ldk + p];
              mag += fabs((double)q[r * d + p] * k[j * ldk + p]);
            }
            ref[r * n + j] = acc;
            ok &= fabs(s[r * lds + j] - acc) <= (double)(d + 1) * FLT_EPSILON * mag + 1e-30;
          }
        EXPECT(ok, "%s qk_rows m=%lld n=%lld d=%lld", t->name, (long long)m, (long long)n,
               (long long)d);
        /* softmax_rows from a later block (finite m) with a masked key */
        float m0[8], l0[8];
        for (int64_t r = 0; r < m; r++) {
          m0[r] = mr[r] = r == 0 ? -INFINITY : (float)rnd();
          l0[r] = lr[r] = r == 0 ? 0.0f : 1.0f;
          s[r * lds + (r % n)] = -INFINITY;
        }
        float *s0 = malloc((size_t)(m * lds) * sizeof(float));
        memcpy(s0, s, (size_t)(m * lds) * sizeof(float));
        t->softmax_rows(m, n, s, lds, mr, lr, al);
        int oks = guards_intact(s, m * lds) && guards_intact(mr, m) && guards_intact(lr, m);
        for (int64_t r = 0; r < m; r++) {
          double mx = m0[r], sum = 0;
          for (int64_t j = 0; j < n; j++)
            mx = fmax(mx, s0[r * lds + j]);
          const double base = mx == -INFINITY ? 0 : mx;
          for (int64_t j = 0; j < n; j++) {
            const double arg = s0[r * lds + j] - base, p = exp2(arg);
            sum += p;
            oks &= p == 0.0 ? s[r * lds + j] == 0.0f
                            : fabs(s[r * lds + j] - p) <= (4 + fabs(arg)) * FLT_EPSILON * p;
          }
          const double alpha = mx == -INFINITY ? 1 : m0[r] == -INFINITY ? 0 : exp2(m0[r] - mx);
          oks &= mr[r] == (float)mx;
          oks &= mx == -INFINITY ? al[r] == 1.0f /* still empty */
                 : alpha == 0    ? al[r] == 0.0f /* first keys: m0 = -inf */
                              : fabs(al[r] - alpha) <= (4 + fabs(m0[r] - mx)) * FLT_EPSILON * alpha;
          oks &=
              fabs(lr[r] - (alpha * l0[r] + sum)) <= (n + 28) * FLT_EPSILON * (alpha * l0[r] + sum);
        }
        EXPECT(oks, "%s softmax_rows m=%lld n=%lld", t->name, (long long)m, (long long)n);
        /* pv_rows with dv = d: O = alpha·O + P·V, V = K's rows */
        for (int64_t r = 0; r < m; r++)
          for (int64_t c = 0; c < ldo; c++)
            o[r * ldo + c] = c < d ? rnd() : POISON;
        double *oref = malloc((size_t)(m * d) * sizeof(double));
        for (int64_t r = 0; r < m; r++)
          for (int64_t c = 0; c < d; c++) {
            double acc = (double)al[r] * o[r * ldo + c];
            for (int64_t j = 0; j < n; j++)
              acc += (double)s[r * lds + j] * k[j * ldk + c];
            oref[r * d + c] = acc;
          }
        t->pv_rows(m, n, d, s, lds, k, ldk, al, o, ldo);
        int okp = guards_intact(o, m * ldo);
        for (int64_t r = 0; r < m; r++)
          for (int64_t c = 0; c < ldo; c++)
            okp &= c < d ? fabs(o[r * ldo + c] - oref[r * d + c]) <=
                               (n + 4) * FLT_EPSILON * (fabs(oref[r * d + c]) + n + 1)
                         : o[r * ldo + c] == POISON;
        EXPECT(okp, "%s pv_rows m=%lld n=%lld dv=%lld", t->name, (long long)m, (long long)n,
               (long long)d);
        checks += 3;
        free(ref), free(s0), free(oref);
        unguard(q), unguard(k), unguard(s), unguard(o), unguard(mr), unguard(lr), unguard(al);
      }
}

static void test_transposes(const fattn__kernel_table *t) {
  for (int64_t m = 1; m <= 19; m++)
    for (int64_t d = 1; d <= 19; d++) {
      const int64_t lds = d + 3, ldq = m + 5;
      float *src = guarded(m * lds), *qt = guarded(d * ldq), *dst = guarded(m * lds);
      float inv[32];
      for (int64_t i = 0; i < m * lds; i++)
        src[i] = rnd();
      for (int64_t r = 0; r < m; r++)
        inv[r] = rnd();
      t->pack_q(m, d, src, lds, 0.5f, qt, ldq);
      int ok = guards_intact(qt, d * ldq);
      for (int64_t p = 0; p < d; p++)
        for (int64_t r = 0; r < ldq; r++)
          ok &= r < m ? qt[p * ldq + r] == 0.5f * src[r * lds + p] : qt[p * ldq + r] == POISON;
      t->store_o(m, d, qt, ldq, inv, dst, lds);
      ok &= guards_intact(dst, m * lds);
      for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < lds; c++)
          ok &= c < d ? dst[r * lds + c] == qt[c * ldq + r] * inv[r] : dst[r * lds + c] == POISON;
      EXPECT(ok, "%s pack_q/store_o m=%lld d=%lld", t->name, (long long)m, (long long)d);
      checks++;
      unguard(src), unguard(qt), unguard(dst);
    }
}

/* The exp2: max relative error over [-126, 127], exact 0 below -126, and the
 * special values. The bound asserted is the one written in the ISA's exp2
 * header. */
static void test_exp2(const fattn__kernel_table *t) {
  const int64_t n = (int64_t)(253 * 4096) + (1 << 20);
  float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
  int64_t i = 0;
  for (double v = -126; v <= 127 && i < n; v += 1.0 / 4096)
    x[i++] = (float)v;
  while (i < n)
    x[i++] = (float)(-126 + rng_uniform(&seed) * 253);
  t->exp2(n, x, y);
  double worst = 0, at = 0;
  for (i = 0; i < n; i++) {
    const double ref = exp2((double)x[i]), e = fabs(y[i] - ref) / ref;
    if (e > worst) worst = e, at = x[i];
  }
  const float specials[] = {-INFINITY, -1e30f, -150.0f, -127.0f, -126.5f, NAN, 0.0f, -0.0f};
  float sy[8];
  t->exp2(8, specials, sy);
  const int special_ok = sy[0] == 0 && sy[1] == 0 && sy[2] == 0 && sy[3] == 0 && sy[4] == 0 &&
                         isnan(sy[5]) && sy[6] == 1.0f && sy[7] == 1.0f;
  printf("%-7s exp2: max relative error %.3g (%.2f ulp) at x = %.6g over %lld points; "
         "specials %s\n",
         t->name, worst, worst / FLT_EPSILON, at, (long long)n, special_ok ? "ok" : "WRONG");
  EXPECT(worst <= 2.0e-7, "%s exp2 max relative error %.3g > 2.0e-7", t->name, worst);
  /* the scalar table uses libm's exp2f, which keeps denormals: accuracy only */
  if (t->backend != FATTN_BACKEND_SCALAR)
    EXPECT(special_ok, "%s exp2 specials: %g %g %g %g %g %g %g %g", t->name, sy[0], sy[1], sy[2],
           sy[3], sy[4], sy[5], sy[6], sy[7]);
  checks += 2;
  free(x), free(y);
}

/* Workspace does not grow with Lq·Lk: the size query for P6 (8192²) and for a
 * 16× longer sequence are equal, and P6's stays far under 64 MiB. */
/* cvt_rows: every F16 and BF16 bit pattern against the portable exact
 * conversion (NaN for NaN: hardware may quiet a signalling one), then row
 * tails d = 1..2·rw+3 with a row stride, checking the guard bands. */
static void test_cvt(const fattn__kernel_table *t) {
  static const fattn_dtype dts[] = {FATTN_F16, FATTN_BF16};
  uint16_t *all = malloc(65536 * sizeof *all);
  float *out = guarded(65536);
  for (int i = 0; i < 65536; i++)
    all[i] = (uint16_t)i;
  for (int k = 0; k < 2; k++) {
    t->cvt_rows(1, 65536, all, 65536, dts[k], out, 65536);
    int64_t bad = 0;
    for (int i = 0; i < 65536; i++) {
      const float want =
          dts[k] == FATTN_F16 ? fattn__f16_to_f32(all[i]) : fattn__bf16_to_f32(all[i]);
      if (isnan(want) ? !isnan(out[i]) : memcmp(&want, &out[i], 4) != 0) bad++;
    }
    EXPECT(bad == 0 && guards_intact(out, 65536), "%s cvt_rows %s: %lld of 65536 values wrong",
           t->name, k ? "bf16" : "f16", (long long)bad);
    checks++;
    for (int64_t d = 1; d <= 2 * t->rw + 3; d++) {
      const int64_t n = 3, lds = d + 3, ldd = d + 1;
      float *dst = guarded(n * ldd);
      t->cvt_rows(n, d, all + 1000, lds, dts[k], dst, ldd);
      int ok = guards_intact(dst, n * ldd);
      for (int64_t j = 0; j < n; j++)
        for (int64_t p = 0; p < d; p++) {
          const uint16_t h = all[1000 + j * lds + p];
          const float want = dts[k] == FATTN_F16 ? fattn__f16_to_f32(h) : fattn__bf16_to_f32(h);
          ok &= memcmp(&want, &dst[j * ldd + p], 4) == 0;
        }
      EXPECT(ok, "%s cvt_rows %s d=%lld", t->name, k ? "bf16" : "f16", (long long)d);
      checks++;
      unguard(dst);
    }
  }
  unguard(out);
  free(all);
  /* f32 -> half: a spread of bit patterns (every exponent, both signs, NaN,
   * inf, ties) against the portable rounding; row tails and strides */
  const int64_t nf = 70000;
  float *f = guarded(nf);
  for (int64_t i = 0; i < nf; i++) {
    uint32_t u = (uint32_t)(i * 61357u) ^ (uint32_t)(i << 20);
    if (i % 7 == 0) u = (u & 0xffff0000u) | 0x8000u;  /* bf16 ties */
    if (i % 11 == 0) u = (u & 0xffffe000u) | 0x1000u; /* f16 ties */
    memcpy(&f[i], &u, 4);
  }
  for (int k = 0; k < 2; k++) {
    uint16_t *h = malloc((size_t)nf * 2 + 64);
    t->cvt_from_f32(1, nf, f, nf, dts[k], h, nf);
    int64_t bad = 0;
    for (int64_t i = 0; i < nf; i++) {
      const uint16_t want =
          dts[k] == FATTN_F16 ? fattn__f32_to_f16(f[i]) : fattn__f32_to_bf16(f[i]);
      const int nan_w = dts[k] == FATTN_F16 ? (want & 0x7c00) == 0x7c00 && (want & 0x3ff)
                                            : (want & 0x7f80) == 0x7f80 && (want & 0x7f);
      const int nan_g = dts[k] == FATTN_F16 ? (h[i] & 0x7c00) == 0x7c00 && (h[i] & 0x3ff)
                                            : (h[i] & 0x7f80) == 0x7f80 && (h[i] & 0x7f);
      if (nan_w ? !nan_g : h[i] != want) bad++;
    }
    EXPECT(bad == 0, "%s cvt_from_f32 %s: %lld of %lld values wrong", t->name, k ? "bf16" : "f16",
           (long long)bad, (long long)nf);
    checks++;
    for (int64_t d = 1; d <= 2 * t->rw + 3; d++) {
      const int64_t n = 3, ldd = d + 2;
      uint16_t *o = malloc((size_t)(n * ldd + 8) * 2);
      for (int64_t i = 0; i < n * ldd + 8; i++)
        o[i] = 0xA5A5;
      t->cvt_from_f32(n, d, f + 100, d + 3, dts[k], o, ldd);
      int ok = 1;
      for (int64_t j = 0; j < n; j++)
        for (int64_t p = 0; p < ldd; p++) {
          const float x = f[100 + j * (d + 3) + p];
          const uint16_t want = p >= d                ? 0xA5A5
                                : dts[k] == FATTN_F16 ? fattn__f32_to_f16(x)
                                                      : fattn__f32_to_bf16(x);
          ok &= o[j * ldd + p] == want || (p < d && x != x);
        }
      EXPECT(ok && o[n * ldd] == 0xA5A5, "%s cvt_from_f32 %s d=%lld", t->name, k ? "bf16" : "f16",
             (long long)d);
      checks++;
      free(o);
    }
    free(h);
  }
  unguard(f);
}

/* qk_rows_half / pv_rows_half: bitwise the f32 functions on the converted
 * rows (conversion is exact and the arithmetic the same), every m, tails of
 * n, d and dv, a row stride, guard bands. */
static void test_rows_half(const fattn__kernel_table *t) {
  if (!t->qk_rows_half) return;
  static const int64_t ns[] = {1, 3, 4, 5, 17, 40}, ds[] = {1, 7, 16, 17, 33, 64, 130};
  static const fattn_dtype dts[] = {FATTN_F16, FATTN_BF16};
  for (int k = 0; k < 2; k++)
    for (int64_t m = 1; m <= t->small_rows; m++)
      for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
        for (size_t di = 0; di < sizeof ds / sizeof ds[0]; di++) {
          const int64_t n = ns[ni], d = ds[di], ld = d + 5, lds = n + 3;
          uint16_t *h = malloc((size_t)(n * ld) * sizeof *h);
          float *f = guarded(n * ld), *q = guarded(m * d), *p = guarded(m * lds);
          float *s1 = guarded(m * lds), *s2 = guarded(m * lds);
          float *o1 = guarded(m * d), *o2 = guarded(m * d), alpha[4];
          for (int64_t i = 0; i < n * ld; i++) {
            h[i] = dts[k] == FATTN_F16 ? fattn__f32_to_f16(rnd()) : fattn__f32_to_bf16(rnd());
            f[i] = dts[k] == FATTN_F16 ? fattn__f16_to_f32(h[i]) : fattn__bf16_to_f32(h[i]);
          }
          for (int64_t i = 0; i < m * d; i++)
            q[i] = rnd(), o1[i] = o2[i] = rnd();
          for (int64_t i = 0; i < m * lds; i++)
            p[i] = fabsf(rnd()), s1[i] = s2[i] = 0.0f;
          for (int64_t r = 0; r < m; r++)
            alpha[r] = 0.5f + 0.1f * (float)r;
          t->qk_rows(m, n, d, q, f, ld, s1, lds);
          t->qk_rows_half(m, n, d, q, h, ld, dts[k], s2, lds);
          t->pv_rows(m, n, d, p, lds, f, ld, alpha, o1, d);
          t->pv_rows_half(m, n, d, p, lds, h, ld, dts[k], alpha, o2, d);
          EXPECT(!memcmp(s1, s2, (size_t)(m * lds) * 4) && !memcmp(o1, o2, (size_t)(m * d) * 4) &&
                     guards_intact(s2, m * lds) && guards_intact(o2, m * d),
                 "%s rows_half %s m=%lld n=%lld d=%lld", t->name, k ? "bf16" : "f16", (long long)m,
                 (long long)n, (long long)d);
          checks++;
          free(h);
          unguard(f), unguard(q), unguard(p), unguard(s1), unguard(s2), unguard(o1), unguard(o2);
        }
}

/* The BF16 dot companion (vdpbf16ps), where this CPU has it: pack_q from
 * BF16 (exact), F32 and F16 (rounded to BF16) rows, then qk against the
 * double dot product of the BF16 values; odd d, every row / key tail, K rows
 * with and without gaps (an exact-size K buffer: the odd tail must not read
 * past the last row; ASan checks it). */
static void test_bf16_dot(const fattn__kernel_table *t) {
  const fattn__bf16_dot_table *bd = fattn__bf16_dot_for(t);
  if (!bd) return;
  EXPECT(bd->rw == t->rw && bd->backend == t->backend, "%s pairs with %s", bd->name, t->name);
  static const int64_t ds[] = {1, 2, 7, 16, 17, 33, 65};
  static const fattn_dtype dts[] = {FATTN_BF16, FATTN_F32, FATTN_F16};
  const float scale = 0.37f;
  for (int64_t rows = t->rw; rows <= t->mr + 2 * t->rw; rows += t->rw)
    for (int64_t n = 1; n <= 2 * t->nr + 1; n++)
      for (size_t di = 0; di < sizeof ds / sizeof ds[0]; di++)
        for (int x = 0; x < 6; x++) {
          const int64_t d = ds[di], ldk = x & 1 ? d + 3 : d, lds = rows + t->rw;
          const int64_t m = rows > t->rw ? rows - 5 : rows, ldq_src = d + 2, np = (d + 1) / 2;
          const fattn_dtype dq = dts[x / 2];
          float *qf = malloc((size_t)(m * ldq_src) * sizeof *qf);
          uint16_t *qh = malloc((size_t)(m * ldq_src) * sizeof *qh);
          uint16_t *k = malloc((size_t)(n * ldk) * sizeof *k);
          uint16_t *qp = alloc64(np * rows); /* np pairs × rows, 4 bytes each */
          float *st = guarded(n * lds);
          for (int64_t i = 0; i < m * ldq_src; i++) {
            qf[i] = rnd();
            qh[i] = dq == FATTN_F16 ? fattn__f32_to_f16(qf[i]) : fattn__f32_to_bf16(qf[i]);
          }
          for (int64_t i = 0; i < n * ldk; i++)
            k[i] = fattn__f32_to_bf16(rnd());
          memset(qp, 0, (size_t)(np * rows) * 4); /* pad rows: zero, as the driver does */
          bd->pack_q(m, d, dq == FATTN_F32 ? (const void *)qf : qh, ldq_src, dq, qp, rows);
          bd->qk(rows, n, d, qp, k, ldk, scale, st, lds);
          double worst = 0;
          int gaps_ok = 1, pack_ok = 1;
          for (int64_t r = 0; r < m; r++)
            for (int64_t p = 0; p < 2 * np; p++) {
              const uint16_t want = p >= d            ? 0
                                    : dq == FATTN_F32 ? fattn__f32_to_bf16(qf[r * ldq_src + p])
                                    : dq == FATTN_F16
                                        ? fattn__f32_to_bf16(fattn__f16_to_f32(qh[r * ldq_src + p]))
                                        : qh[r * ldq_src + p];
              pack_ok &= qp[(p / 2) * 2 * rows + 2 * r + (p & 1)] == want;
            }
          for (int64_t j = 0; j < n; j++) {
            for (int64_t r = 0; r < rows; r++) {
              double ref = 0, mag = 0;
              for (int64_t p = 0; p < d && r < m; p++) {
                const double a = fattn__bf16_to_f32(qp[(p / 2) * 2 * rows + 2 * r + (p & 1)]) *
                                 (double)fattn__bf16_to_f32(k[j * ldk + p]);
                ref += a;
                mag += fabs(a);
              }
              ref *= scale, mag *= scale;
              const double e =
                  fabs(st[j * lds + r] - ref) / ((double)(d + 2) * FLT_EPSILON * mag + 1e-30);
              worst = e > worst ? e : worst;
            }
            for (int64_t r = rows; r < lds; r++)
              gaps_ok &= st[j * lds + r] == POISON;
          }
          EXPECT(pack_ok && worst <= 1.0 && gaps_ok && guards_intact(st, n * lds),
                 "%s rows=%lld n=%lld d=%lld ldk=%lld q %s: packed %d, err/bound %.3g, gaps %d",
                 bd->name, (long long)rows, (long long)n, (long long)d, (long long)ldk,
                 dq == FATTN_F32   ? "f32"
                 : dq == FATTN_F16 ? "f16"
                                   : "bf16",
                 pack_ok, worst, gaps_ok);
          checks++;
          free(qf);
          free(qh);
          free(k);
          free(qp);
          unguard(st);
        }
}

static void test_workspace_bound(void) {
  fattn_context_options o;
  fattn_context_options_init(&o);
  o.num_threads = 4;
  fattn_context *ctx;
  EXPECT(fattn_context_create(&o, &ctx) == FATTN_SUCCESS, "%s", fattn_last_error());
  size_t sz[2] = {0, 0};
  for (int i = 0; i < 2; i++) {
    const int64_t L = i == 0 ? 8192 : 131072;
    /* never dereferenced: only sizes are computed */
    fattn_tensor q = fattn_tensor_contiguous((void *)((uintptr_t)1 << 40), FATTN_F32, 1, 8, L, 64);
    fattn_tensor k = fattn_tensor_contiguous((void *)((uintptr_t)2 << 40), FATTN_F32, 1, 8, L, 64);
    fattn_tensor v = fattn_tensor_contiguous((void *)((uintptr_t)3 << 40), FATTN_F32, 1, 8, L, 64);
    fattn_tensor out =
        fattn_tensor_contiguous((void *)((uintptr_t)4 << 40), FATTN_F32, 1, 8, L, 64);
    fattn_sdpa_params p;
    fattn_sdpa_params_init(&p);
    EXPECT(fattn_sdpa_workspace_size(ctx, &q, &k, &v, &out, &p, &sz[i]) == FATTN_SUCCESS, "%s",
           fattn_last_error());
  }
  printf("workspace: P6 (Lq = Lk = 8192) %zu bytes, Lq = Lk = 131072 %zu bytes (4 threads)\n",
         sz[0], sz[1]);
  EXPECT(sz[0] == sz[1] && sz[0] > 0 && sz[0] < ((size_t)64 << 20), "workspace %zu vs %zu", sz[0],
         sz[1]);
  checks++;
  fattn_context_destroy(ctx);
}

int main(void) {
  static const fattn_backend tables[] = {FATTN_BACKEND_SCALAR, FATTN_BACKEND_AVX2,
                                         FATTN_BACKEND_AVX512, FATTN_BACKEND_NEON};
  for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
    fattn_status st;
    const fattn__kernel_table *t = fattn__table_for(tables[i], &st);
    if (!t) {
      printf("%-7s skipped: %s\n", fattn_backend_name(tables[i]), fattn_last_error());
      continue;
    }
    const int before = checks, fails = g_failures;
    test_qk(t);
    test_softmax(t);
    test_bw_ds(t);
    test_pv(t);
    test_rows(t);
    test_transposes(t);
    test_exp2(t);
    test_cvt(t);
    test_rows_half(t);
    test_bf16_dot(t);
    printf("%-7s %d kernel checks, %d failed\n", t->name, checks - before, g_failures - fails);
  }
  test_workspace_bound();
  printf("%d passed, %d failed\n", checks - g_failures, g_failures);
  return g_failures != 0;
}

/* The oracle held against closed forms (so the reference is not only trusted
 * because it is simple), and every fused backend against the same forms. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "harness.h"

enum { B = 1, H = 2, LQ = 5, LK = 6, D = 4 };
static float q[B][H][LQ][D], k[B][H][LK][D], v[B][H][LK][D], out[B][H][LQ][D], lse[B][H][LQ];

/* Every backend but the oneDNN baseline computes lse. */
static int has_lse(fattn_backend be) { return be != FATTN_BACKEND_ONEDNN; }

static fattn_status run(fattn_backend be, fattn_sdpa_params *p, int64_t lq, int64_t lk) {
  fattn_tensor tq = fattn_tensor_contiguous(q, FATTN_F32, B, H, LQ, D);
  fattn_tensor tk = fattn_tensor_contiguous(k, FATTN_F32, B, H, LK, D);
  fattn_tensor tv = fattn_tensor_contiguous(v, FATTN_F32, B, H, LK, D);
  fattn_tensor to = fattn_tensor_contiguous(out, FATTN_F32, B, H, LQ, D);
  fattn_tensor tl = fattn_tensor_contiguous(lse, FATTN_F32, B, H, LQ, 1);
  tq.dims[2] = to.dims[2] = tl.dims[2] = lq;
  tk.dims[2] = tv.dims[2] = lk;
  p->lse = has_lse(be) ? &tl : NULL;
  p->backend = be;
  fattn_status st = fattn_sdpa(NULL, &tq, &tk, &tv, &to, p);
  p->lse = NULL;
  return st;
}

static void fill(void) {
  for (int h = 0; h < H; h++) {
    for (int i = 0; i < LQ; i++)
      for (int d = 0; d < D; d++)
        q[0][h][i][d] = 0.25f * (float)(i + d - h);
    for (int j = 0; j < LK; j++)
      for (int d = 0; d < D; d++) {
        k[0][h][j][d] = 0.5f * (float)(d - 1);
        v[0][h][j][d] = (float)(10 * j + d + h);
      }
  }
}

#define TOL (64 * FLT_EPSILON * 60) /* values up to ~60, a handful of terms */

static void check_backend(fattn_backend be) {
  const char *name = fattn_backend_name(be);
  fattn_sdpa_params p;

  /* 1. identical keys: uniform weights, out = mean of the attended values. */
  fill();
  fattn_sdpa_params_init(&p);
  EXPECT(run(be, &p, LQ, LK) == FATTN_SUCCESS, "%s: %s", name, fattn_last_error());
  for (int h = 0; h < H; h++)
    for (int d = 0; d < D; d++) {
      double mean = 0;
      for (int j = 0; j < LK; j++)
        mean += v[0][h][j][d];
      mean /= LK;
      EXPECT(fabs(out[0][h][2][d] - mean) <= TOL, "%s identical keys: out %g, mean %g", name,
             out[0][h][2][d], mean);
    }
  /* lse = s + log(Lk) where s is the common score. */
  {
    double s = 0;
    for (int d = 0; d < D; d++)
      s += q[0][1][3][d] * k[0][1][0][d];
    s *= 0.5; /* 1/sqrt(4) */
    if (has_lse(be))
      EXPECT(fabs(lse[0][1][3] - (s + log((double)LK))) <= 1e-5, "%s lse %g, expected %g", name,
             lse[0][1][3], s + log((double)LK));
  }

  /* 2. causal top-left: row i averages v[0..i]. */
  fattn_sdpa_params_init(&p);
  p.causal = FATTN_CAUSAL_TOP_LEFT;
  EXPECT(run(be, &p, LQ, LK) == FATTN_SUCCESS, "%s", fattn_last_error());
  for (int i = 0; i < LQ; i++) {
    double mean = 0;
    for (int j = 0; j <= i; j++)
      mean += v[0][0][j][1];
    mean /= i + 1;
    EXPECT(fabs(out[0][0][i][1] - mean) <= TOL, "%s causal row %d: %g vs %g", name, i,
           out[0][0][i][1], mean);
  }

  /* 3. bottom-right with Lq > Lk: rows i < Lq - Lk see nothing. Lq = 5, Lk = 3:
   *    row 0 and 1 empty (zeros, lse -inf), row 2 sees key 0, row 4 keys 0..2. */
  fattn_sdpa_params_init(&p);
  p.causal = FATTN_CAUSAL_BOTTOM_RIGHT;
  EXPECT(run(be, &p, LQ, 3) == FATTN_SUCCESS, "%s", fattn_last_error());
  for (int d = 0; d < D; d++) {
    EXPECT(out[0][0][0][d] == 0.0f && out[0][0][1][d] == 0.0f, "%s empty rows not zero", name);
    EXPECT(fabs(out[0][0][2][d] - v[0][0][0][d]) <= TOL, "%s row 2 sees key 0 only", name);
    EXPECT(fabs(out[0][0][4][d] - (v[0][0][0][d] + v[0][0][1][d] + v[0][0][2][d]) / 3) <= TOL,
           "%s row 4 sees keys 0..2", name);
  }
  if (has_lse(be))
    EXPECT(lse[0][0][0] == -INFINITY && lse[0][0][1] == -INFINITY, "%s empty rows lse", name);

  /* 4. two keys with known scores: weights are a logistic function. */
  fill();
  for (int d = 0; d < D; d++) {
    q[0][0][0][d] = d == 0 ? 2.0f : 0.0f;
    k[0][0][0][d] = d == 0 ? 1.0f : 0.0f;  /* score 2 · 1 · 0.5 = 1 */
    k[0][0][1][d] = d == 0 ? -1.0f : 0.0f; /* score -1 */
  }
  fattn_sdpa_params_init(&p);
  EXPECT(run(be, &p, 1, 2) == FATTN_SUCCESS, "%s", fattn_last_error());
  {
    const double w0 = 1.0 / (1.0 + exp(-2.0));
    for (int d = 0; d < D; d++) {
      const double want = w0 * v[0][0][0][d] + (1 - w0) * v[0][0][1][d];
      EXPECT(fabs(out[0][0][0][d] - want) <= TOL, "%s two keys: %g vs %g", name, out[0][0][0][d],
             want);
    }
    if (has_lse(be))
      EXPECT(fabs(lse[0][0][0] - (1.0 + log(1.0 + exp(-2.0)))) <= 1e-6, "%s two-key lse", name);
  }

  /* 5. a U8 mask that keeps one key, and kv_lens = 0 for a batch. */
  fill();
  uint8_t m[LQ][LK];
  memset(m, 0, sizeof m);
  for (int i = 0; i < LQ; i++)
    m[i][(i * 2) % LK] = 1;
  fattn_tensor tm = fattn_tensor_contiguous(m, FATTN_U8, 1, 1, LQ, LK);
  tm.strides[0] = tm.strides[1] = 0;
  fattn_sdpa_params_init(&p);
  p.attn_mask = &tm;
  EXPECT(run(be, &p, LQ, LK) == FATTN_SUCCESS, "%s", fattn_last_error());
  for (int i = 0; i < LQ; i++)
    EXPECT(fabs(out[0][1][i][3] - v[0][1][(i * 2) % LK][3]) <= TOL, "%s one-key mask row %d", name,
           i);
  const int32_t zero = 0;
  fattn_sdpa_params_init(&p);
  p.kv_lens = &zero;
  EXPECT(run(be, &p, LQ, LK) == FATTN_SUCCESS, "%s", fattn_last_error());
  for (int h = 0; h < H; h++)
    for (int i = 0; i < LQ; i++) {
      if (has_lse(be))
        EXPECT(lse[0][h][i] == -INFINITY, "%s kv_lens 0: lse %g", name, lse[0][h][i]);
      for (int d = 0; d < D; d++)
        EXPECT(out[0][h][i][d] == 0.0f, "%s kv_lens 0: out", name);
    }
  printf("%-10s closed forms checked\n", name);
}

int main(void) {
  fattn_backend be[8];
  const int n = available_backends(be);
  check_backend(FATTN_BACKEND_REFERENCE);
  for (int i = 0; i < n; i++)
    check_backend(be[i]);
  printf("%d passed, %d failed\n", g_failures ? 0 : n + 1, g_failures ? 1 : 0);
  return g_failures != 0;
}

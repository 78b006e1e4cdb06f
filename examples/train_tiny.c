/* A training loop through fattn: a one-layer causal attention model learns
 * to answer, at every position of a sequence of random tokens, which token
 * the sequence began with (its attention must find position 0).
 *
 *   x = E[token] + P[position];  q, k, v = x·Wq, x·Wk, x·Wv  (H heads of D)
 *   a = fattn_sdpa(q, k, v, causal)   o = a·Wo;  logits = o·Wc
 *   loss = mean cross-entropy of logits against the first token
 *
 * The backward pass: plain C for the projections and the embeddings,
 * fattn_sdpa_backward for the attention (it needs the forward's lse); Adam.
 * Prints the loss as it falls and exits nonzero if it did not fall below a
 * quarter of its start (chance is log 8 = 2.08). */
#include <fattn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { V = 8, L = 12, B = 32, H = 2, D = 8, E = H * D, STEPS = 400 };

typedef struct param {
  float *w, *g, *m, *v;
  int n;
} param;

static unsigned g_seed = 12345;
static float frand(void) { /* uniform [-1, 1) */
  g_seed = g_seed * 1664525u + 1013904223u;
  return (float)(g_seed >> 8) / (float)(1u << 23) - 1.0f;
}

static param make(int n, float scale) {
  param p = {calloc(n, 4), calloc(n, 4), calloc(n, 4), calloc(n, 4), n};
  for (int i = 0; i < n; i++)
    p.w[i] = scale * frand();
  return p;
}

static void adam(param *p, int t, float lr) {
  const float b1 = 0.9f, b2 = 0.999f;
  for (int i = 0; i < p->n; i++) {
    p->m[i] = b1 * p->m[i] + (1 - b1) * p->g[i];
    p->v[i] = b2 * p->v[i] + (1 - b2) * p->g[i] * p->g[i];
    const float mh = p->m[i] / (1 - powf(b1, (float)t)), vh = p->v[i] / (1 - powf(b2, (float)t));
    p->w[i] -= lr * mh / (sqrtf(vh) + 1e-8f);
    p->g[i] = 0;
  }
}

/* y[r][j] = Σ_i x[r][i] w[i][j]  (rows r < n) */
static void matmul(const float *x, const float *w, float *y, int n, int in, int out) {
  for (int r = 0; r < n; r++)
    for (int j = 0; j < out; j++) {
      float s = 0;
      for (int i = 0; i < in; i++)
        s += x[r * in + i] * w[i * out + j];
      y[r * out + j] = s;
    }
}

/* dx += dy·wᵀ, dw += xᵀ·dy */
static void matmul_back(const float *x, const float *w, const float *dy, float *dx, float *dw,
                        int n, int in, int out) {
  for (int r = 0; r < n; r++)
    for (int i = 0; i < in; i++)
      for (int j = 0; j < out; j++) {
        if (dx) dx[r * in + i] += dy[r * out + j] * w[i * out + j];
        dw[i * out + j] += x[r * in + i] * dy[r * out + j];
      }
}

int main(void) {
  param Em = make(V * E, 0.5f), Pm = make(L * E, 0.5f), Wq = make(E * E, 0.3f),
        Wk = make(E * E, 0.3f), Wv = make(E * E, 0.3f), Wo = make(E * E, 0.3f),
        Wc = make(E * V, 0.3f);
  const int N = B * L;
  float *x = malloc(sizeof(float) * N * E), *q = malloc(sizeof(float) * N * E),
        *k = malloc(sizeof(float) * N * E), *vv = malloc(sizeof(float) * N * E),
        *a = malloc(sizeof(float) * N * E), *o = malloc(sizeof(float) * N * E),
        *lg = malloc(sizeof(float) * N * V), *lse = malloc(sizeof(float) * B * H * L);
  float *dx = malloc(sizeof(float) * N * E), *dq = malloc(sizeof(float) * N * E),
        *dk = malloc(sizeof(float) * N * E), *dv = malloc(sizeof(float) * N * E),
        *da = malloc(sizeof(float) * N * E), *dob = malloc(sizeof(float) * N * E),
        *dlg = malloc(sizeof(float) * N * V);
  int *tok = malloc(sizeof(int) * N);
  /* the (B, L, E) activations are [B, H, L, D] views for fattn: strides
   * {L·E, D, E, 1}, no transposes */
  const int64_t st[4] = {L * E, D, E, 1};
#define VIEW(p) ((fattn_tensor){(p), FATTN_F32, {B, H, L, D}, {st[0], st[1], st[2], st[3]}})
  fattn_tensor tq = VIEW(q), tk = VIEW(k), tv = VIEW(vv), ta = VIEW(a), tdq = VIEW(dq),
               tdk = VIEW(dk), tdv = VIEW(dv), tda = VIEW(da);
  fattn_tensor tl = fattn_tensor_contiguous(lse, FATTN_F32, B, H, L, 1);
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.causal = FATTN_CAUSAL_TOP_LEFT;
  p.lse = &tl;
  float first = 0, last = 0;
  for (int step = 1; step <= STEPS; step++) {
    for (int i = 0; i < N; i++)
      tok[i] = (int)((frand() + 1) * 0.5f * V) % V;
    /* forward */
    for (int r = 0; r < N; r++)
      for (int e = 0; e < E; e++)
        x[r * E + e] = Em.w[tok[r] * E + e] + Pm.w[(r % L) * E + e];
    matmul(x, Wq.w, q, N, E, E);
    matmul(x, Wk.w, k, N, E, E);
    matmul(x, Wv.w, vv, N, E, E);
    if (fattn_sdpa(NULL, &tq, &tk, &tv, &ta, &p) != FATTN_SUCCESS) {
      fprintf(stderr, "fattn_sdpa: %s\n", fattn_last_error());
      return 1;
    }
    matmul(a, Wo.w, o, N, E, E);
    matmul(o, Wc.w, lg, N, E, V);
    float loss = 0;
    for (int r = 0; r < N; r++) { /* softmax cross-entropy against the first token */
      const int want = tok[r / L * L];
      float mx = lg[r * V];
      for (int c = 1; c < V; c++)
        mx = fmaxf(mx, lg[r * V + c]);
      float s = 0;
      for (int c = 0; c < V; c++)
        s += expf(lg[r * V + c] - mx);
      loss += (logf(s) + mx - lg[r * V + want]) / N;
      for (int c = 0; c < V; c++)
        dlg[r * V + c] = (expf(lg[r * V + c] - mx) / s - (c == want)) / N;
    }
    if (step == 1) first = loss;
    last = loss;
    if (step == 1 || step % 50 == 0) printf("step %3d  loss %.4f\n", step, loss);
    /* backward */
    memset(dob, 0, sizeof(float) * N * E);
    memset(da, 0, sizeof(float) * N * E);
    memset(dx, 0, sizeof(float) * N * E);
    matmul_back(o, Wc.w, dlg, dob, Wc.g, N, E, V);
    matmul_back(a, Wo.w, dob, da, Wo.g, N, E, E);
    if (fattn_sdpa_backward(NULL, &tq, &tk, &tv, &ta, &tda, &tl, &tdq, &tdk, &tdv, &p) !=
        FATTN_SUCCESS) {
      fprintf(stderr, "fattn_sdpa_backward: %s\n", fattn_last_error());
      return 1;
    }
    matmul_back(x, Wq.w, dq, dx, Wq.g, N, E, E);
    matmul_back(x, Wk.w, dk, dx, Wk.g, N, E, E);
    matmul_back(x, Wv.w, dv, dx, Wv.g, N, E, E);
    for (int r = 0; r < N; r++)
      for (int e = 0; e < E; e++) {
        Em.g[tok[r] * E + e] += dx[r * E + e];
        Pm.g[(r % L) * E + e] += dx[r * E + e];
      }
    param *all[] = {&Em, &Pm, &Wq, &Wk, &Wv, &Wo, &Wc};
    for (int i = 0; i < 7; i++)
      adam(all[i], step, 0.01f);
  }
  printf("loss %.4f -> %.4f (chance %.4f)\n", first, last, logf((float)V));
  param *all[] = {&Em, &Pm, &Wq, &Wk, &Wv, &Wo, &Wc};
  for (int i = 0; i < 7; i++)
    free(all[i]->w), free(all[i]->g), free(all[i]->m), free(all[i]->v);
  free(x), free(q), free(k), free(vv), free(a), free(o), free(lg), free(lse);
  free(dx), free(dq), free(dk), free(dv), free(da), free(dob), free(dlg), free(tok);
  return last < 0.25f * first ? 0 : 1;
}

/* The multi-head attention pipeline, stage by stage, on 64 tokens of 512
 * features with 8 heads of 64 (self-attention):
 *
 *   X [64, 512] -> Q, K, V = X·Wᵀ + b [64, 512] each -> split into 8 heads
 *   [8, 64, 64] (strided views, no copies) -> softmax(Q·Kᵀ/√64)·V per head
 *   -> concatenated [64, 512] -> output projection [64, 512]
 *
 * The projections are written out here; the attention is fattn_sdpa. Then the
 * same layer through fattn_mha_forward, which must give the same numbers, and
 * its attention weights (averaged over the heads).
 * Build: cc mha_pipeline.c $(pkg-config --cflags --libs fattn) -lm */
#include <fattn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { L = 64, E = 512, H = 8, HD = E / H };

static float frand(unsigned *s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)(*s >> 8) / 16777216.0f - 0.5f;
}

/* y[i][o] = b[o] + Σ_e x[i][e] · w[o][e] */
static void linear(const float *x, const float *w, const float *b, float *y, int rows, int in,
                   int out) {
  for (int i = 0; i < rows; i++)
    for (int o = 0; o < out; o++) {
      float s = b[o];
      for (int e = 0; e < in; e++)
        s += x[i * in + e] * w[o * in + e];
      y[i * out + o] = s;
    }
}

#define CHECK(call)                                                                                \
  do {                                                                                             \
    if ((call) != FATTN_SUCCESS) {                                                                 \
      fprintf(stderr, "%s: %s\n", #call, fattn_last_error());                                      \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

int main(void) {
  unsigned seed = 1;
  float *x = malloc(sizeof(float) * L * E), *w_in = malloc(sizeof(float) * 3 * E * E);
  float *b_in = malloc(sizeof(float) * 3 * E), *w_out = malloc(sizeof(float) * E * E);
  float *b_out = malloc(sizeof(float) * E), *qkv = malloc(sizeof(float) * L * 3 * E);
  float *heads = malloc(sizeof(float) * L * E), *y = malloc(sizeof(float) * L * E);
  float *y2 = malloc(sizeof(float) * L * E), *wts = malloc(sizeof(float) * L * L);
  if (!x || !w_in || !b_in || !w_out || !b_out || !qkv || !heads || !y || !y2 || !wts) return 1;
  for (int i = 0; i < L * E; i++)
    x[i] = frand(&seed);
  for (int i = 0; i < 3 * E * E; i++)
    w_in[i] = frand(&seed) * 0.6f;
  for (int i = 0; i < E * E; i++)
    w_out[i] = frand(&seed) * 0.1f;
  for (int i = 0; i < 3 * E; i++)
    b_in[i] = frand(&seed) * 0.1f;
  for (int i = 0; i < E; i++)
    b_out[i] = frand(&seed) * 0.1f;

  printf("input X                      [%d tokens, %d features]\n", L, E);
  /* 1. projections: one GEMM with PyTorch's stacked in_proj_weight [3E, E] */
  linear(x, w_in, b_in, qkv, L, E, 3 * E);
  printf("Q, K, V = X·Wᵀ + b           3 × [%d, %d] (columns 0, %d, %d of one [%d, %d] buffer)\n",
         L, E, E, 2 * E, L, 3 * E);
  /* 2. heads: [1, H, L, HD] views of the buffer: head h is columns h·HD.. of Q */
  fattn_tensor q = {qkv, FATTN_F32, {1, H, L, HD}, {L * 3 * E, HD, 3 * E, 1}};
  fattn_tensor k = q, v = q;
  k.data = qkv + E, v.data = qkv + 2 * E;
  fattn_tensor o = {heads, FATTN_F32, {1, H, L, HD}, {L * E, HD, E, 1}};
  printf("split into heads             [%d heads, %d tokens, %d] (strided views)\n", H, L, HD);
  /* 3. attention per head, written straight into the concatenated layout */
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  CHECK(fattn_sdpa(NULL, &q, &k, &v, &o, &p));
  printf("softmax(Q·Kᵀ/√%d)·V per head [%d heads, %d tokens, %d]\n", HD, H, L, HD);
  printf("heads concatenated           [%d, %d]\n", L, E);
  /* 4. output projection */
  linear(heads, w_out, b_out, y, L, E, E);
  printf("output = concat·W_outᵀ + b   [%d, %d]\n", L, E);

  /* The same layer in one call. */
  fattn_mha_config cfg;
  fattn_mha_config_init(&cfg, E, H);
  cfg.batch_first = 1;
  fattn_mha_weights w = {w_in, b_in, NULL, NULL, NULL, w_out, b_out};
  fattn_mha *mha;
  CHECK(fattn_mha_create(&cfg, &w, &mha));
  fattn_mha_args a;
  fattn_mha_args_init(&a);
  a.query = a.key = a.value = x;
  a.batch = 1, a.q_len = a.kv_len = L;
  a.out = y2;
  a.attn_weights = wts; /* [1, L, L], averaged over heads */
  CHECK(fattn_mha_forward(NULL, mha, &a));
  double diff = 0;
  for (int i = 0; i < L * E; i++)
    diff = fmax(diff, fabs((double)y[i] - y2[i]));
  printf("fattn_mha_forward            [%d, %d], max |difference| from the stages: %.2g\n", L, E,
         diff);
  printf("attention weights (averaged over heads), first 4 tokens × first 6 keys:\n");
  for (int i = 0; i < 4; i++) {
    double row = 0;
    for (int j = 0; j < L; j++)
      row += wts[i * L + j];
    printf("  token %d:", i);
    for (int j = 0; j < 6; j++)
      printf(" %.4f", wts[i * L + j]);
    printf("  ... (row sums to %.4f)\n", row);
  }
  fattn_mha_destroy(mha);
  free(x), free(w_in), free(b_in), free(w_out), free(b_out), free(qkv), free(heads), free(y),
      free(y2), free(wts);
  return diff < 1e-3 ? 0 : 1;
}

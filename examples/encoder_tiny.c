/* A 2-layer transformer encoder small enough to read every number: 3 tokens
 * of 4 features, 2 heads of 2, feed-forward of 8, post-norm (PyTorch's
 * nn.TransformerEncoderLayer defaults: ReLU, LayerNorm eps 1e-5, no dropout).
 * Prints the input, the output of layer 1 (a 1-layer encoder), and the output
 * of the 2-layer stack, whose first layer is the same.
 * Build: cc encoder_tiny.c $(pkg-config --cflags --libs fattn) -lm */
#include <fattn.h>
#include <stdio.h>

enum { L = 3, E = 4, H = 2, F = 8, NL = 2 };

static void fill(float *p, int n, unsigned seed, float scale) {
  for (int i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    p[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * scale;
  }
}

static void print(const char *title, const float *x) {
  printf("%s [%d tokens, %d features]:\n", title, L, E);
  for (int i = 0; i < L; i++) {
    printf("  token %d:", i);
    for (int e = 0; e < E; e++)
      printf(" %8.4f", x[i * E + e]);
    printf("\n");
  }
}

int main(void) {
  static float w_in[NL][3 * E * E], b_in[NL][3 * E], w_o[NL][E * E], b_o[NL][E];
  static float w1[NL][F * E], b1[NL][F], w2[NL][E * F], b2[NL][E];
  static float g[NL][2][E], beta[NL][2][E];
  float x[L * E], y1[L * E], y2[L * E];
  fattn_encoder_layer_weights lw[NL];
  for (int l = 0; l < NL; l++) {
    const unsigned s = 10u * (unsigned)l;
    fill(w_in[l], 3 * E * E, s + 1, 1.0f), fill(b_in[l], 3 * E, s + 2, 0.2f);
    fill(w_o[l], E * E, s + 3, 1.0f), fill(b_o[l], E, s + 4, 0.2f);
    fill(w1[l], F * E, s + 5, 1.0f), fill(b1[l], F, s + 6, 0.2f);
    fill(w2[l], E * F, s + 7, 1.0f), fill(b2[l], E, s + 8, 0.2f);
    for (int e = 0; e < E; e++)
      g[l][0][e] = g[l][1][e] = 1.0f, beta[l][0][e] = beta[l][1][e] = 0.0f;
    fattn_encoder_layer_weights w = {{w_in[l], b_in[l], NULL, NULL, NULL, w_o[l], b_o[l]},
                                     w1[l],
                                     b1[l],
                                     w2[l],
                                     b2[l],
                                     g[l][0],
                                     beta[l][0],
                                     g[l][1],
                                     beta[l][1]};
    lw[l] = w;
  }
  fill(x, L * E, 99, 2.0f);
  print("input", x);

  fattn_encoder_config cfg;
  fattn_encoder_config_init(&cfg, E, H);
  cfg.dim_feedforward = F;
  cfg.batch_first = 1;
  fattn_encoder *one, *two;
  cfg.num_layers = 1;
  if (fattn_encoder_create(&cfg, lw, &one) != FATTN_SUCCESS) goto fail;
  cfg.num_layers = NL;
  if (fattn_encoder_create(&cfg, lw, &two) != FATTN_SUCCESS) goto fail;
  fattn_encoder_args a;
  fattn_encoder_args_init(&a);
  a.src = x, a.batch = 1, a.seq_len = L;
  a.out = y1;
  if (fattn_encoder_forward(NULL, one, &a) != FATTN_SUCCESS) goto fail;
  print("after layer 1: LN(x + SelfAttn(x)), then LN(x + FFN(x))", y1);
  a.out = y2;
  if (fattn_encoder_forward(NULL, two, &a) != FATTN_SUCCESS) goto fail;
  print("after layer 2 (the 2-layer stack)", y2);
  printf(
      "each row of a post-norm output has mean 0 and variance 1 (LayerNorm, weight 1, bias 0)\n");
  fattn_encoder_destroy(one);
  fattn_encoder_destroy(two);
  return 0;
fail:
  fprintf(stderr, "fattn: %s\n", fattn_last_error());
  return 1;
}

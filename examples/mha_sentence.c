/* "The cat sat on the mat": 6 tokens × 64 features, 4 heads of 16, through
 * fattn_mha three ways, printing the shapes and the attention weights:
 *   self-attention (every token sees every token), per head;
 *   masked self-attention, as in a decoder (is_causal: token i sees 0..i);
 *   cross-attention: these tokens query a 4-token "encoder memory" of 32
 *   features (kdim = vdim = 32 ≠ embed_dim, separate projection weights).
 * The embeddings and weights are fixed pseudo-random numbers, so the weights
 * show the mechanics (rows sum to 1, the causal triangle), not meaning.
 * Build: cc mha_sentence.c $(pkg-config --cflags --libs fattn) -lm */
#include <fattn.h>
#include <stdio.h>
#include <stdlib.h>

enum { T = 6, E = 64, H = 4, M = 4, KD = 32 };
static const char *words[T] = {"The", "cat", "sat", "on", "the", "mat"};

static void fill(float *p, int n, unsigned seed, float scale) {
  for (int i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    p[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * scale;
  }
}

static void show(const char *title, const float *w, int heads, int rows, int cols,
                 const char **colnames) {
  for (int h = 0; h < heads; h++) {
    printf("%s, head %d [%d × %d]:\n        ", title, h, rows, cols);
    for (int j = 0; j < cols; j++)
      printf(" %6s", colnames ? colnames[j] : "");
    printf("\n");
    for (int i = 0; i < rows; i++) {
      printf("  %-5s", words[i]);
      for (int j = 0; j < cols; j++)
        printf(" %6.3f", w[(h * rows + i) * cols + j]);
      printf("\n");
    }
  }
}

static int fail(const char *what) {
  fprintf(stderr, "%s: %s\n", what, fattn_last_error());
  return 1;
}

int main(void) {
  static float x[T * E], mem[M * KD], out[T * E], w[H * T * T], wx[H * T * M];
  static float w_in[3 * E * E], b_in[3 * E], w_out[E * E], b_out[E];
  static float wq[E * E], wk[E * KD], wv[E * KD];
  const char *mem_names[M] = {"m0", "m1", "m2", "m3"};
  fill(x, T * E, 1, 2.0f); /* "embeddings" of the six tokens */
  fill(mem, M * KD, 2, 2.0f);
  fill(w_in, 3 * E * E, 3, 0.5f), fill(b_in, 3 * E, 4, 0.1f);
  fill(w_out, E * E, 5, 0.3f), fill(b_out, E, 6, 0.1f);
  fill(wq, E * E, 7, 0.5f), fill(wk, E * KD, 8, 0.5f), fill(wv, E * KD, 9, 0.5f);
  printf("tokens: %d × %d features (batch_first, batch 1), %d heads of %d\n", T, E, H, E / H);

  fattn_mha_config cfg;
  fattn_mha_config_init(&cfg, E, H);
  cfg.batch_first = 1;
  fattn_mha_weights wts = {w_in, b_in, NULL, NULL, NULL, w_out, b_out};
  fattn_mha *self;
  if (fattn_mha_create(&cfg, &wts, &self) != FATTN_SUCCESS) return fail("create");
  fattn_mha_args a;
  fattn_mha_args_init(&a);
  a.query = a.key = a.value = x;
  a.batch = 1, a.q_len = a.kv_len = T;
  a.out = out;
  a.attn_weights = w;
  a.average_attn_weights = 0; /* [1, H, T, T] */
  if (fattn_mha_forward(NULL, self, &a) != FATTN_SUCCESS) return fail("self-attention");
  printf("\nself-attention: out [%d, %d], weights [1, %d, %d, %d]\n", T, E, H, T, T);
  show("self-attention", w, 2, T, T, words);

  a.is_causal = 1;
  if (fattn_mha_forward(NULL, self, &a) != FATTN_SUCCESS) return fail("masked self-attention");
  printf("\nmasked (causal) self-attention: token i attends tokens 0..i\n");
  show("causal", w, 1, T, T, words);

  cfg.kdim = cfg.vdim = KD;
  fattn_mha_weights xw = {NULL, b_in, wq, wk, wv, w_out, b_out};
  fattn_mha *cross;
  if (fattn_mha_create(&cfg, &xw, &cross) != FATTN_SUCCESS) return fail("create cross");
  fattn_mha_args c;
  fattn_mha_args_init(&c);
  c.query = x, c.key = c.value = mem;
  c.batch = 1, c.q_len = T, c.kv_len = M;
  c.out = out;
  c.attn_weights = wx;
  c.average_attn_weights = 0;
  if (fattn_mha_forward(NULL, cross, &c) != FATTN_SUCCESS) return fail("cross-attention");
  printf("\ncross-attention: queries [%d, %d], memory [%d, %d] -> out [%d, %d]\n", T, E, M, KD, T,
         E);
  show("cross-attention", wx, 1, T, M, mem_names);
  fattn_mha_destroy(self);
  fattn_mha_destroy(cross);
  return 0;
}

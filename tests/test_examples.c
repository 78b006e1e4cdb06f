/* The examples of the design documents fattn came from, as tests: self-attention
 * over one activation buffer X [tokens, features] whose features are split into
 * heads (a BSHD view: q = k = v = X, no copies), on every backend here. */
#include "harness.h"

typedef struct example {
  const char *what;
  int64_t tokens, features, heads;
} example;

int main(void) {
  static const example ex[] = {
      {"64 tokens x 512 features in 8 heads of 64", 64, 512, 8},
      {"6-token sentence, 64 features in 4 heads of 16", 6, 64, 4},
      {"4 features in 2 heads of 2 (3 tokens)", 3, 4, 2},
  };
  fattn_backend be[8];
  const int nbe = available_backends(be);
  int checks = 0;
  for (size_t e = 0; e < sizeof ex / sizeof ex[0]; e++)
    for (int causal = 0; causal < 2; causal++)
      for (int i = 0; i < nbe; i++) {
        tcase c;
        const int64_t d = ex[e].features / ex[e].heads;
        tcase_init(&c, 1, ex[e].heads, ex[e].heads, ex[e].tokens, ex[e].tokens, d);
        c.layout = LAYOUT_BSHD;
        c.self_attention = 1;
        c.causal = causal ? FATTN_CAUSAL_TOP_LEFT : FATTN_CAUSAL_NONE;
        c.lse = be[i] != FATTN_BACKEND_ONEDNN; /* the oneDNN baseline computes no lse */
        c.seed = 100 + e;
        fattn_context *none = NULL;
        const int rc = tcase_check(&c, be[i], &none, 1, NULL);
        EXPECT(rc == 0, "%s, %s, %s", ex[e].what, causal ? "causal" : "full",
               fattn_backend_name(be[i]));
        printf("%-48s %-6s %-8s %s\n", ex[e].what, causal ? "causal" : "full",
               fattn_backend_name(be[i]), rc == 0 ? "ok" : "FAILED");
        checks++;
      }
  printf("%d passed, %d failed\n", checks - g_failures, g_failures);
  return g_failures != 0;
}

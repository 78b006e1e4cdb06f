/* A complete fattn program: grouped-query causal attention over BHSD tensors,
 * checked against fattn's double-precision reference backend.
 * Build: cc sdpa_basic.c $(pkg-config --cflags --libs fattn) -o sdpa_basic */
#include <fattn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  enum { B = 2, H = 8, HKV = 2, L = 128, D = 64 };
  float *q = malloc(sizeof(float) * B * H * L * D);
  float *k = malloc(sizeof(float) * B * HKV * L * D);
  float *v = malloc(sizeof(float) * B * HKV * L * D);
  float *out = malloc(sizeof(float) * B * H * L * D);
  float *ref = malloc(sizeof(float) * B * H * L * D);
  if (!q || !k || !v || !out || !ref) return 1;
  for (int i = 0; i < B * H * L * D; i++)
    q[i] = sinf(0.01f * (float)i);
  for (int i = 0; i < B * HKV * L * D; i++)
    k[i] = cosf(0.02f * (float)i), v[i] = sinf(0.03f * (float)i);

  /* Dense [batch, heads, seq, head_dim] views; any other layout is a choice of strides. */
  fattn_tensor tq = fattn_tensor_contiguous(q, FATTN_F32, B, H, L, D);
  fattn_tensor tk = fattn_tensor_contiguous(k, FATTN_F32, B, HKV, L, D);
  fattn_tensor tv = fattn_tensor_contiguous(v, FATTN_F32, B, HKV, L, D);
  fattn_tensor to = fattn_tensor_contiguous(out, FATTN_F32, B, H, L, D);
  fattn_tensor tr = fattn_tensor_contiguous(ref, FATTN_F32, B, H, L, D);

  fattn_context *ctx;
  if (fattn_context_create(NULL, &ctx) != FATTN_SUCCESS) {
    fprintf(stderr, "fattn: %s\n", fattn_last_error());
    return 1;
  }
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p); /* scale 1/sqrt(D), AUTO backend */
  p.causal = FATTN_CAUSAL_TOP_LEFT;
  if (fattn_sdpa(ctx, &tq, &tk, &tv, &to, &p) != FATTN_SUCCESS) {
    fprintf(stderr, "fattn: %s\n", fattn_last_error());
    return 1;
  }
  p.backend = FATTN_BACKEND_REFERENCE;
  if (fattn_sdpa(ctx, &tq, &tk, &tv, &tr, &p) != FATTN_SUCCESS) return 1;

  float err = 0;
  for (int i = 0; i < B * H * L * D; i++)
    err = fmaxf(err, fabsf(out[i] - ref[i]));
  fattn_runtime_info info;
  fattn_get_runtime_info(ctx, &info);
  printf("fattn %s, kernel table %s, %d threads: max |out - reference| = %.2e\n", fattn_version(),
         fattn_backend_name(info.isa_selected), info.num_threads, err);
  fattn_context_destroy(ctx);
  free(q), free(k), free(v), free(out), free(ref);
  return err < 1e-4f ? 0 : 1;
}

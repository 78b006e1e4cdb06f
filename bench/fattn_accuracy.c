/* fattn_accuracy: the error each way of running BF16 K costs, against the
 * reference backend (double accumulation of the same stored inputs), on the
 * avx512 table. Prints, per mode and logit spread, the largest and the RMS
 * error of out relative to the RMS of the reference output. The modes:
 *
 *   f32 q · f32 K        fattn's f32 path (the floor)
 *   f32 q · bf16 K, off  K converted to f32, FMA         (FATTN_BF16_DOT=off)
 *   f32 q · bf16 K, on   q rounded to BF16, vdpbf16ps    (FATTN_BF16_DOT=on)
 *   bf16 q · bf16 K, off K and q converted to f32, FMA
 *   bf16 q · bf16 K, auto  exact BF16 products, vdpbf16ps (the default)
 *
 * Inputs: q, k, v normal(0, 1); q scaled by `spread` so the logits' standard
 * deviation is about `spread` (1: flat softmax; 8: peaked). The errors of the
 * K rounding itself are not counted: the reference reads the same BF16 K.
 * Usage: fattn_accuracy [Lq=Lk] [D]. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fattn.h"

static uint64_t rng = 88172645463325252ull;
static double gauss(void) {
  double u[2];
  for (int i = 0; i < 2; i++) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    u[i] = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
  }
  return sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

static uint16_t to_bf16(float f) { /* nearest even; inputs are finite */
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

int main(int argc, char **argv) {
  const int64_t B = 1, H = 8, L = argc > 1 ? atoll(argv[1]) : 1024,
                D = argc > 2 ? atoll(argv[2]) : 128;
  const int64_t nq = B * H * L * D;
  float *qf = malloc((size_t)nq * 4), *kf = malloc((size_t)nq * 4), *vf = malloc((size_t)nq * 4);
  uint16_t *qh = malloc((size_t)nq * 2), *kh = malloc((size_t)nq * 2);
  float *out = malloc((size_t)nq * 4), *ref = malloc((size_t)nq * 4);
  static const double spreads[] = {1, 4, 8};
  static const struct {
    const char *name, *env;
    fattn_dtype dq, dk;
  } modes[] = {{"f32 q, f32 K", "off", FATTN_F32, FATTN_F32},
               {"f32 q, bf16 K, off (FMA)", "off", FATTN_F32, FATTN_BF16},
               {"f32 q, bf16 K, on (q rounded, vdpbf16ps)", "on", FATTN_F32, FATTN_BF16},
               {"bf16 q, bf16 K, off (FMA)", "off", FATTN_BF16, FATTN_BF16},
               {"bf16 q, bf16 K, auto (vdpbf16ps)", "auto", FATTN_BF16, FATTN_BF16}};
  printf("B=%lld H=%lld Lq=Lk=%lld D=%lld, avx512 table; error of out / RMS(out)\n", (long long)B,
         (long long)H, (long long)L, (long long)D);
  printf("%-44s %7s %12s %12s\n", "mode", "spread", "max", "rms");
  for (size_t si = 0; si < sizeof spreads / sizeof spreads[0]; si++) {
    /* scores = q·k / sqrt(D): std(q) = spread gives logits of std ~ spread */
    for (int64_t i = 0; i < nq; i++) {
      qf[i] = (float)(spreads[si] * gauss()), kf[i] = (float)gauss(), vf[i] = (float)gauss();
      qh[i] = to_bf16(qf[i]), kh[i] = to_bf16(kf[i]);
    }
    for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++) {
      setenv("FATTN_BF16_DOT", modes[mi].env, 1);
      fattn_context_options o;
      fattn_context_options_init(&o);
      o.isa_cap = FATTN_BACKEND_AVX512;
      fattn_context *ctx;
      if (fattn_context_create(&o, &ctx) != FATTN_SUCCESS) {
        fprintf(stderr, "fattn: %s\n", fattn_last_error());
        return 77;
      }
      void *qd = modes[mi].dq == FATTN_F32 ? (void *)qf : qh;
      void *kd = modes[mi].dk == FATTN_F32 ? (void *)kf : kh;
      fattn_tensor q = fattn_tensor_contiguous(qd, modes[mi].dq, B, H, L, D);
      fattn_tensor k = fattn_tensor_contiguous(kd, modes[mi].dk, B, H, L, D);
      fattn_tensor v = fattn_tensor_contiguous(vf, FATTN_F32, B, H, L, D);
      fattn_tensor o1 = fattn_tensor_contiguous(out, FATTN_F32, B, H, L, D);
      fattn_tensor o2 = fattn_tensor_contiguous(ref, FATTN_F32, B, H, L, D);
      fattn_sdpa_params p;
      fattn_sdpa_params_init(&p);
      if (fattn_sdpa(ctx, &q, &k, &v, &o1, &p) != FATTN_SUCCESS) {
        fprintf(stderr, "fattn: %s\n", fattn_last_error());
        return 1;
      }
      p.backend = FATTN_BACKEND_REFERENCE;
      if (fattn_sdpa(ctx, &q, &k, &v, &o2, &p) != FATTN_SUCCESS) {
        fprintf(stderr, "fattn: %s\n", fattn_last_error());
        return 1;
      }
      double emax = 0, e2 = 0, r2 = 0;
      for (int64_t i = 0; i < nq; i++) {
        const double e = fabs((double)out[i] - ref[i]);
        emax = e > emax ? e : emax;
        e2 += e * e, r2 += (double)ref[i] * ref[i];
      }
      const double rms = sqrt(r2 / (double)nq);
      printf("%-44s %7.0f %12.3g %12.3g\n", modes[mi].name, spreads[si], emax / rms,
             sqrt(e2 / (double)nq) / rms);
      fattn_context_destroy(ctx);
    }
  }
  free(qf), free(kf), free(vf), free(qh), free(kh), free(out), free(ref);
  return 0;
}

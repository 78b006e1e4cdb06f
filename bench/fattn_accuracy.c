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
 * and, where the default context has a tile engine (AMX; or the portable
 * model under FATTN_TILE_ENGINE=model, slow), the tile family's (all other
 * modes run with tiles off):
 *   bf16 q, K, V, tiles off / auto   P rounded to bf16 on the tiles
 *   f32 q, K, V, tiles bf16          q, K, V and P rounded to bf16 (opt-in)
 *
 * Inputs: q, k, v normal(0, 1); q scaled by `spread` so the logits' standard
 * deviation is about `spread` (1: flat softmax; 8: peaked). The errors of the
 * K rounding itself are not counted: the reference reads the same BF16 K.
 *
 * First, on the table AUTO picks (any CPU): the KV cache formats, each
 * against the reference on the f32 K and V before they were stored (so the
 * storage rounding counts): bf16; int8 with a scale per (token, kv head),
 * max|row| / 127 (vLLM's symmetric cache); fp8 e4m3 and e5m2 with a scale
 * per kv head, max|head| / 448 and / 57344.
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

/* One row of a table: the largest and the RMS error of out against ref,
 * each relative to the RMS of ref. */
static void print_error(const char *name, double spread, const float *out, const float *ref,
                        int64_t n) {
  double emax = 0, e2 = 0, r2 = 0;
  for (int64_t i = 0; i < n; i++) {
    const double e = fabs((double)out[i] - ref[i]);
    emax = e > emax ? e : emax;
    e2 += e * e, r2 += (double)ref[i] * ref[i];
  }
  const double rms = sqrt(r2 / (double)n);
  printf("%-44s %7.0f %12.3g %12.3g\n", name, spread, emax / rms, sqrt(e2 / (double)n) / rms);
}

/* f32 to an OCP fp8 code (mb mantissa bits, exponent bias, largest finite
 * value), nearest; |x| beyond the largest saturates. */
static uint8_t to_fp8(float x, int mb, int bias, float maxv) {
  const uint8_t sign = x < 0 ? 0x80 : 0;
  float a = fabsf(x);
  if (a > maxv) a = maxv;
  if (a == 0.0f) return sign;
  int e;
  (void)frexpf(a, &e);
  const int E = e - 1; /* a = 1.f · 2^E */
  if (E + bias < 1) {  /* subnormal: m · 2^(1 - bias - mb); m = 2^mb is the first normal */
    return (uint8_t)(sign | lrintf(a / ldexpf(1.0f, 1 - bias - mb)));
  }
  long m = lrintf((a / ldexpf(1.0f, E) - 1.0f) * (float)(1 << mb));
  int eb = E + bias;
  if (m == (1L << mb)) m = 0, eb++;
  const float back = ldexpf(1.0f + (float)m / (float)(1 << mb), eb - bias);
  if (back > maxv) return (uint8_t)(sign | (to_fp8(maxv, mb, bias, maxv) & 0x7f));
  return (uint8_t)(sign | (eb << mb) | m);
}

/* The KV cache formats against the f32 reference (see the top). */
static void kv_formats(int64_t B, int64_t H, int64_t L, int64_t D) {
  const int64_t n = B * H * L * D, rows = B * H * L;
  float *q = malloc((size_t)n * 4), *k = malloc((size_t)n * 4), *v = malloc((size_t)n * 4);
  float *out = malloc((size_t)n * 4), *ref = malloc((size_t)n * 4);
  uint16_t *kh = malloc((size_t)n * 2), *vh = malloc((size_t)n * 2);
  uint8_t *k8 = malloc((size_t)n), *v8 = malloc((size_t)n);
  float *ks = malloc((size_t)rows * 4), *vs = malloc((size_t)rows * 4);
  static const double spreads[] = {1, 4, 8};
  static const char *names[] = {"bf16 K / V", "int8 K / V, scale per token", "fp8 e4m3 K / V",
                                "fp8 e5m2 K / V"};
  printf("KV cache formats, table %s: error of out / RMS(out) against the f32 reference\n", "AUTO");
  printf("%-44s %7s %12s %12s\n", "format", "spread", "max", "rms");
  for (size_t si = 0; si < sizeof spreads / sizeof spreads[0]; si++) {
    for (int64_t i = 0; i < n; i++)
      q[i] = (float)(spreads[si] * gauss()), k[i] = (float)gauss(), v[i] = (float)gauss();
    fattn_tensor tq = fattn_tensor_contiguous(q, FATTN_F32, B, H, L, D);
    fattn_tensor to = fattn_tensor_contiguous(out, FATTN_F32, B, H, L, D);
    fattn_tensor tr = fattn_tensor_contiguous(ref, FATTN_F32, B, H, L, D);
    fattn_tensor tk = fattn_tensor_contiguous(k, FATTN_F32, B, H, L, D);
    fattn_tensor tv = fattn_tensor_contiguous(v, FATTN_F32, B, H, L, D);
    fattn_sdpa_params p;
    fattn_sdpa_params_init(&p);
    p.backend = FATTN_BACKEND_REFERENCE;
    if (fattn_sdpa(NULL, &tq, &tk, &tv, &tr, &p) != FATTN_SUCCESS) {
      fprintf(stderr, "fattn: %s\n", fattn_last_error());
      exit(1);
    }
    p.backend = FATTN_BACKEND_AUTO;
    for (int f = 0; f < 4; f++) {
      fattn_tensor qk = tk, qv = tv, sk, sv;
      if (f == 0) {
        for (int64_t i = 0; i < n; i++)
          kh[i] = to_bf16(k[i]), vh[i] = to_bf16(v[i]);
        qk.data = kh, qv.data = vh, qk.dtype = qv.dtype = FATTN_BF16;
      } else if (f == 1) { /* a scale per (token, head) row */
        for (int64_t r = 0; r < rows; r++) {
          float mk = 0, mv = 0;
          for (int64_t c = 0; c < D; c++) {
            mk = fmaxf(mk, fabsf(k[r * D + c]));
            mv = fmaxf(mv, fabsf(v[r * D + c]));
          }
          ks[r] = mk > 0 ? mk / 127 : 1, vs[r] = mv > 0 ? mv / 127 : 1;
          for (int64_t c = 0; c < D; c++) {
            k8[r * D + c] = (uint8_t)(int8_t)lrintf(k[r * D + c] / ks[r]);
            v8[r * D + c] = (uint8_t)(int8_t)lrintf(v[r * D + c] / vs[r]);
          }
        }
        qk.data = k8, qv.data = v8, qk.dtype = qv.dtype = FATTN_I8;
        sk = fattn_tensor_contiguous(ks, FATTN_F32, B, H, L, 1);
        sv = fattn_tensor_contiguous(vs, FATTN_F32, B, H, L, 1);
        p.k_scale = &sk, p.v_scale = &sv;
      } else { /* a scale per kv head */
        const int e4 = f == 2;
        const float maxv = e4 ? 448.0f : 57344.0f;
        for (int64_t h = 0; h < B * H; h++) {
          float mk = 0, mv = 0;
          for (int64_t i = 0; i < L * D; i++) {
            mk = fmaxf(mk, fabsf(k[h * L * D + i]));
            mv = fmaxf(mv, fabsf(v[h * L * D + i]));
          }
          ks[h] = mk > 0 ? mk / maxv : 1, vs[h] = mv > 0 ? mv / maxv : 1;
          for (int64_t i = 0; i < L * D; i++) {
            k8[h * L * D + i] = to_fp8(k[h * L * D + i] / ks[h], e4 ? 3 : 2, e4 ? 7 : 15, maxv);
            v8[h * L * D + i] = to_fp8(v[h * L * D + i] / vs[h], e4 ? 3 : 2, e4 ? 7 : 15, maxv);
          }
        }
        qk.data = k8, qv.data = v8, qk.dtype = qv.dtype = e4 ? FATTN_F8_E4M3 : FATTN_F8_E5M2;
        sk = (fattn_tensor){ks, FATTN_F32, {1, H, 1, 1}, {0, 1, 0, 1}}; /* B = 1 */
        sv = sk;
        sv.data = vs;
        p.k_scale = &sk, p.v_scale = &sv;
      }
      if (fattn_sdpa(NULL, &tq, &qk, &qv, &to, &p) != FATTN_SUCCESS) {
        fprintf(stderr, "fattn: %s\n", fattn_last_error());
        exit(1);
      }
      print_error(names[f], spreads[si], out, ref, n);
    }
  }
  printf("\n");
  free(q), free(k), free(v), free(out), free(ref), free(kh), free(vh), free(k8), free(v8);
  free(ks), free(vs);
}

int main(int argc, char **argv) {
  const int64_t B = 1, H = 8, L = argc > 1 ? atoll(argv[1]) : 1024,
                D = argc > 2 ? atoll(argv[2]) : 128;
  const int64_t nq = B * H * L * D;
  kv_formats(B, H, L, D);
  float *qf = malloc((size_t)nq * 4), *kf = malloc((size_t)nq * 4), *vf = malloc((size_t)nq * 4);
  uint16_t *qh = malloc((size_t)nq * 2), *kh = malloc((size_t)nq * 2), *vh = malloc((size_t)nq * 2);
  float *out = malloc((size_t)nq * 4), *ref = malloc((size_t)nq * 4);
  static const double spreads[] = {1, 4, 8};
  static const struct {
    const char *name, *env;
    fattn_dtype dq, dk, dv;
    fattn_tile_policy tiles;
  } modes[] = {
      {"f32 q, f32 K", "off", FATTN_F32, FATTN_F32, FATTN_F32, FATTN_TILES_OFF},
      {"f32 q, bf16 K, off (FMA)", "off", FATTN_F32, FATTN_BF16, FATTN_F32, FATTN_TILES_OFF},
      {"f32 q, bf16 K, on (q rounded, vdpbf16ps)", "on", FATTN_F32, FATTN_BF16, FATTN_F32,
       FATTN_TILES_OFF},
      {"bf16 q, bf16 K, off (FMA)", "off", FATTN_BF16, FATTN_BF16, FATTN_F32, FATTN_TILES_OFF},
      {"bf16 q, bf16 K, auto (vdpbf16ps)", "auto", FATTN_BF16, FATTN_BF16, FATTN_F32,
       FATTN_TILES_OFF},
      {"bf16 q, K, V, tiles off (vector)", "auto", FATTN_BF16, FATTN_BF16, FATTN_BF16,
       FATTN_TILES_OFF},
      {"bf16 q, K, V, tiles auto (P in bf16)", "auto", FATTN_BF16, FATTN_BF16, FATTN_BF16,
       FATTN_TILES_AUTO},
      {"f32 q, K, V, tiles bf16 (all rounded)", "auto", FATTN_F32, FATTN_F32, FATTN_F32,
       FATTN_TILES_BF16}};
  fattn_runtime_info info;
  const int tiles = fattn_get_runtime_info(NULL, &info) == FATTN_SUCCESS && info.tile_engine[0];
  printf("B=%lld H=%lld Lq=Lk=%lld D=%lld, avx512 table; error of out / RMS(out); tile engine: "
         "%s\n",
         (long long)B, (long long)H, (long long)L, (long long)D,
         tiles ? info.tile_engine : "none (tile modes skipped)");
  printf("%-44s %7s %12s %12s\n", "mode", "spread", "max", "rms");
  for (size_t si = 0; si < sizeof spreads / sizeof spreads[0]; si++) {
    /* scores = q·k / sqrt(D): std(q) = spread gives logits of std ~ spread */
    for (int64_t i = 0; i < nq; i++) {
      qf[i] = (float)(spreads[si] * gauss()), kf[i] = (float)gauss(), vf[i] = (float)gauss();
      qh[i] = to_bf16(qf[i]), kh[i] = to_bf16(kf[i]), vh[i] = to_bf16(vf[i]);
    }
    for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++) {
      if (modes[mi].tiles != FATTN_TILES_OFF && !tiles) continue;
      setenv("FATTN_BF16_DOT", modes[mi].env, 1);
      fattn_context_options o;
      fattn_context_options_init(&o);
      o.isa_cap = FATTN_BACKEND_AVX512;
      o.tiles = modes[mi].tiles;
      fattn_context *ctx;
      if (fattn_context_create(&o, &ctx) != FATTN_SUCCESS) {
        fprintf(stderr, "fattn: %s\n", fattn_last_error());
        return 77;
      }
      void *qd = modes[mi].dq == FATTN_F32 ? (void *)qf : qh;
      void *kd = modes[mi].dk == FATTN_F32 ? (void *)kf : kh;
      fattn_tensor q = fattn_tensor_contiguous(qd, modes[mi].dq, B, H, L, D);
      fattn_tensor k = fattn_tensor_contiguous(kd, modes[mi].dk, B, H, L, D);
      fattn_tensor v = fattn_tensor_contiguous(modes[mi].dv == FATTN_F32 ? (void *)vf : vh,
                                               modes[mi].dv, B, H, L, D);
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
      print_error(modes[mi].name, spreads[si], out, ref, nq);
      fattn_context_destroy(ctx);
    }
  }
  free(qf), free(kf), free(vf), free(qh), free(kh), free(vh), free(out), free(ref);
  return 0;
}

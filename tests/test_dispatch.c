#define _POSIX_C_SOURCE 200809L
/* Runtime dispatch: FATTN_ISA and isa_cap pick exactly the table named when
 * this build and CPU have it, and fail with UNSUPPORTED (never SIGILL) when
 * not. What the CPU has is checked independently of fattn's own probe. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* Does this CPU run the ISA? Independent of lib/core/cpu_features.c: gcc's own
 * probe (which also checks that the OS enabled the register state). */
static int cpu_has(fattn_backend b) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (b == FATTN_BACKEND_AVX2)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (b == FATTN_BACKEND_AVX512)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return b == FATTN_BACKEND_SCALAR;
#elif defined(__aarch64__)
  return b == FATTN_BACKEND_NEON || b == FATTN_BACKEND_SCALAR;
#else
  return b == FATTN_BACKEND_SCALAR;
#endif
}

/* Which tables this build compiled (passed in by CMake). */
static int built(fattn_backend b) {
  const char *list = FATTN_TEST_BUILT_TABLES; /* e.g. "scalar;avx512;avx2" */
  const char *name = fattn_backend_name(b);
  const size_t n = strlen(name);
  for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
    if ((p == list || p[-1] == ';') && (p[n] == ';' || p[n] == '\0')) return 1;
  return 0;
}

#if defined(FATTN_TEST_BF16_DOT_BUILT) && (defined(__x86_64__) || defined(__i386__))
/* out of one all-bf16-K problem (q of type dq) on the avx512 table, in a
 * context created under FATTN_BF16_DOT=mode */
static void run_bf16k(const char *mode, fattn_dtype dq, float *out) {
  enum { H = 2, L = 100, D = 40 };
  static float qf[H * L * D], v[H * L * D];
  static uint16_t qh[H * L * D], k[H * L * D];
  uint64_t s = 7;
  for (int i = 0; i < H * L * D; i++) {
    qf[i] = (float)(2 * rng_uniform(&s) - 1);
    qh[i] = (uint16_t)(rng_next(&s) & 0x3f7f); /* finite bf16 of magnitude < 1 */
    k[i] = (uint16_t)(rng_next(&s) & 0xbf7f);
    v[i] = (float)rng_uniform(&s);
  }
  setenv("FATTN_BF16_DOT", mode, 1);
  fattn_context_options o;
  fattn_context_options_init(&o);
  o.isa_cap = FATTN_BACKEND_AVX512;
  fattn_context *ctx = NULL;
  EXPECT(fattn_context_create(&o, &ctx) == FATTN_SUCCESS, "FATTN_BF16_DOT=%s: %s", mode,
         fattn_last_error());
  unsetenv("FATTN_BF16_DOT");
  fattn_tensor tq = fattn_tensor_contiguous(dq == FATTN_F32 ? (void *)qf : qh, dq, 1, H, L, D);
  fattn_tensor tk = fattn_tensor_contiguous(k, FATTN_BF16, 1, H, L, D);
  fattn_tensor tv = fattn_tensor_contiguous(v, FATTN_F32, 1, H, L, D);
  fattn_tensor to = fattn_tensor_contiguous(out, FATTN_F32, 1, H, L, D);
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  EXPECT(ctx && fattn_sdpa(ctx, &tq, &tk, &tv, &to, &p) == FATTN_SUCCESS, "sdpa: %s",
         fattn_last_error());
  fattn_context_destroy(ctx);
}
#endif

/* FATTN_BF16_DOT: the vdpbf16ps Q·Kᵀ is taken exactly when the rule says
 * (bf16 q under auto, any q under on, never under off), seen as a change of
 * the result's bits (different arithmetic: exact pairs vs FMA); and a bad
 * value fails context creation. */
static int test_bf16_dot_rule(void) {
  int checks = 0;
  setenv("FATTN_BF16_DOT", "sideways", 1);
  fattn_context *ctx = NULL;
  EXPECT(fattn_context_create(NULL, &ctx) == FATTN_ERROR_INVALID_ARGUMENT,
         "FATTN_BF16_DOT=sideways");
  printf("FATTN_BF16_DOT=sideways -> %s\n", fattn_last_error());
  unsetenv("FATTN_BF16_DOT");
  checks++;
#if defined(FATTN_TEST_BF16_DOT_BUILT) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  if (!cpu_has(FATTN_BACKEND_AVX512) || !__builtin_cpu_supports("avx512bf16")) {
    printf("bf16 dot rule: skipped (no AVX512_BF16 here)\n");
    return checks;
  }
  enum { N = 2 * 100 * 40 };
  static float o[6][N];
  /* auto takes it only where vdpbf16ps outruns the FMA: AMD's cores (Zen 4 / 5),
   * not Intel's (lib/internal.h, FATTN__CPU_BF16DOT_FAST) */
  const int pays = __builtin_cpu_is("amd");
  run_bf16k("off", FATTN_BF16, o[0]);
  run_bf16k("auto", FATTN_BF16, o[1]);
  run_bf16k("on", FATTN_BF16, o[2]);
  run_bf16k("off", FATTN_F32, o[3]);
  run_bf16k("auto", FATTN_F32, o[4]);
  run_bf16k("on", FATTN_F32, o[5]);
  EXPECT(memcmp(o[0], o[2], sizeof o[0]) != 0, "bf16 q: on gave the bits of off");
  if (pays) {
    EXPECT(memcmp(o[0], o[1], sizeof o[0]) != 0, "bf16 q, AMD: auto gave the bits of off");
    EXPECT(memcmp(o[1], o[2], sizeof o[0]) == 0, "bf16 q, AMD: on and auto differ");
  } else {
    EXPECT(memcmp(o[0], o[1], sizeof o[0]) == 0, "bf16 q, not AMD: auto differs from off");
  }
  EXPECT(memcmp(o[3], o[4], sizeof o[0]) == 0, "f32 q: auto did not give the bits of off");
  EXPECT(memcmp(o[4], o[5], sizeof o[0]) != 0, "f32 q: on gave the bits of auto");
  checks += 4 + pays;
  fattn_runtime_info in;
  EXPECT(fattn_get_runtime_info(NULL, &in) == FATTN_SUCCESS &&
             strstr(in.notes, pays ? "bf16 dot: on for bf16 q" : "bf16 dot: off (slower"),
         "runtime info does not say the bf16 dot rule: %s", in.notes);
  checks++;
  printf("bf16 dot rule: auto uses vdpbf16ps for bf16 q %s, on for f32 q too\n",
         pays ? "(AMD: it pays)" : "never (not AMD: slower than FMA)");
#endif
  return checks;
}

/* out of one problem (q, K, V of type dt; Lq query rows, 2 heads, 100 keys,
 * head_dim 40) on a context with tiles = policy, created under
 * FATTN_TILE_ENGINE=engine (NULL: unset); the context's runtime info in *in */
static void run_tiles(fattn_tile_policy policy, const char *engine, fattn_dtype dt, int64_t lq,
                      float *out, fattn_runtime_info *in) {
  enum { H = 2, L = 100, D = 40 };
  static float f[3][H * L * D];
  static uint16_t h[3][H * L * D];
  uint64_t s = 11;
  for (int t = 0; t < 3; t++)
    for (int i = 0; i < H * L * D; i++) {
      f[t][i] = (float)(2 * rng_uniform(&s) - 1);
      h[t][i] = (uint16_t)(rng_next(&s) & 0xbf7f); /* finite bf16 of magnitude < 2 */
    }
  if (engine) setenv("FATTN_TILE_ENGINE", engine, 1);
  fattn_context_options o;
  fattn_context_options_init(&o);
  o.tiles = policy;
  fattn_context *ctx = NULL;
  EXPECT(fattn_context_create(&o, &ctx) == FATTN_SUCCESS, "tiles %d: %s", (int)policy,
         fattn_last_error());
  unsetenv("FATTN_TILE_ENGINE");
  if (!ctx) return;
  EXPECT(fattn_get_runtime_info(ctx, in) == FATTN_SUCCESS, "%s", fattn_last_error());
  void *b[3];
  for (int t = 0; t < 3; t++)
    b[t] = dt == FATTN_F32 ? (void *)f[t] : (void *)h[t];
  fattn_tensor tq = fattn_tensor_contiguous(b[0], dt, 1, H, lq, D);
  fattn_tensor tk = fattn_tensor_contiguous(b[1], dt, 1, H, L, D);
  fattn_tensor tv = fattn_tensor_contiguous(b[2], dt, 1, H, L, D);
  fattn_tensor to = fattn_tensor_contiguous(out, FATTN_F32, 1, H, lq, D);
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  EXPECT(fattn_sdpa(ctx, &tq, &tk, &tv, &to, &p) == FATTN_SUCCESS, "sdpa: %s", fattn_last_error());
  fattn_context_destroy(ctx);
}

/* The tile policy (fattn_context_options.tiles, FATTN_TILES) and the engine
 * (FATTN_TILE_ENGINE): bad values fail context creation; on the portable model
 * the tiles are taken exactly when the rule says (all-bf16 under AUTO, any
 * F32 / F16 / BF16 under BF16, never under OFF, never for decode-sized
 * units), seen as a change of the result's bits (P rounded to bf16), and the
 * option overrides the env var. */
static int test_tile_rule(void) {
  int checks = 0;
  fattn_context *ctx = NULL;
  setenv("FATTN_TILES", "sideways", 1);
  EXPECT(fattn_context_create(NULL, &ctx) == FATTN_ERROR_INVALID_ARGUMENT, "FATTN_TILES=sideways");
  printf("FATTN_TILES=sideways -> %s\n", fattn_last_error());
  unsetenv("FATTN_TILES");
  setenv("FATTN_TILE_ENGINE", "gpu", 1);
  EXPECT(fattn_context_create(NULL, &ctx) == FATTN_ERROR_INVALID_ARGUMENT, "FATTN_TILE_ENGINE=gpu");
  printf("FATTN_TILE_ENGINE=gpu -> %s\n", fattn_last_error());
  unsetenv("FATTN_TILE_ENGINE");
  fattn_context_options o;
  fattn_context_options_init(&o);
  o.tiles = (fattn_tile_policy)9;
  EXPECT(fattn_context_create(&o, &ctx) == FATTN_ERROR_INVALID_ARGUMENT, "tiles = 9");
  checks += 3;

  enum { N = 2 * 100 * 40 };
  static float o_off[N], o_on[N], o_x[N];
  fattn_runtime_info in;
  /* this CPU's own engine, if any, is named; without one the notes say why
   * where the CPU has AMX at all */
  run_tiles(FATTN_TILES_AUTO, NULL, FATTN_BF16, 100, o_x, &in);
  printf("tiles here: engine '%s' (%s)\n", in.tile_engine, in.notes);
  EXPECT(in.tiles == FATTN_TILES_AUTO, "policy AUTO reported as %d", (int)in.tiles);
  /* on the model */
  run_tiles(FATTN_TILES_OFF, "model", FATTN_BF16, 100, o_off, &in);
  EXPECT(!in.tile_engine[0] && in.tiles == FATTN_TILES_OFF, "OFF: engine '%s'", in.tile_engine);
  run_tiles(FATTN_TILES_AUTO, "model", FATTN_BF16, 100, o_on, &in);
  EXPECT(!strcmp(in.tile_engine, "model") && strstr(in.notes, "tiles: "),
         "model: engine '%s', notes %s", in.tile_engine, in.notes);
  EXPECT(memcmp(o_off, o_on, sizeof o_on) != 0, "all-bf16 under AUTO: the bits of OFF");
  run_tiles(FATTN_TILES_OFF, "model", FATTN_F32, 100, o_off, &in);
  run_tiles(FATTN_TILES_AUTO, "model", FATTN_F32, 100, o_x, &in);
  EXPECT(memcmp(o_off, o_x, sizeof o_x) == 0, "f32 under AUTO: not the bits of OFF");
  run_tiles(FATTN_TILES_BF16, "model", FATTN_F32, 100, o_x, &in);
  EXPECT(in.tiles == FATTN_TILES_BF16 && memcmp(o_off, o_x, sizeof o_x) != 0,
         "f32 under BF16: the bits of OFF");
  /* decode (one query row per head, no GQA): the row kernels, whatever the policy */
  run_tiles(FATTN_TILES_OFF, "model", FATTN_BF16, 1, o_off, &in);
  run_tiles(FATTN_TILES_BF16, "model", FATTN_BF16, 1, o_x, &in);
  EXPECT(memcmp(o_off, o_x, 2 * 40 * sizeof(float)) == 0, "decode went to the tiles");
  /* the option over the env var */
  setenv("FATTN_TILES", "off", 1);
  run_tiles(FATTN_TILES_DEFAULT, "model", FATTN_BF16, 100, o_x, &in);
  EXPECT(in.tiles == FATTN_TILES_OFF && !in.tile_engine[0], "FATTN_TILES=off not applied");
  run_tiles(FATTN_TILES_AUTO, "model", FATTN_BF16, 100, o_x, &in);
  EXPECT(in.tiles == FATTN_TILES_AUTO && memcmp(o_on, o_x, sizeof o_x) == 0,
         "option AUTO under FATTN_TILES=off: not the bits of AUTO");
  unsetenv("FATTN_TILES");
  checks += 9;
  printf("tile rule: all-bf16 on tiles under auto, f32 only under bf16, decode never, the "
         "option over FATTN_TILES\n");
  return checks;
}

int main(void) {
  static const fattn_backend isas[] = {FATTN_BACKEND_SCALAR, FATTN_BACKEND_AVX2,
                                       FATTN_BACKEND_AVX512, FATTN_BACKEND_NEON};
  int checks = 0;
  fattn_runtime_info info;
  EXPECT(fattn_get_runtime_info(NULL, &info) == FATTN_SUCCESS, "%s", fattn_last_error());
  printf("detected: %s; best table: %s; threads %d; cores %d; L1d %lld L2 %lld L3 %lld; %s\n",
         info.isa_detected, fattn_backend_name(info.isa_best), info.num_threads,
         info.physical_cores, (long long)info.l1d_bytes, (long long)info.l2_bytes,
         (long long)info.l3_bytes, info.notes);
  fattn_backend best = FATTN_BACKEND_SCALAR;
  static const fattn_backend rank[] = {FATTN_BACKEND_AVX512, FATTN_BACKEND_AVX2, FATTN_BACKEND_NEON,
                                       FATTN_BACKEND_SCALAR};
  for (int i = 0; i < 4; i++)
    if (built(rank[i]) && cpu_has(rank[i])) {
      best = rank[i];
      break;
    }
  EXPECT(info.isa_best == best, "best table %s, expected %s", fattn_backend_name(info.isa_best),
         fattn_backend_name(best));
  checks++;

  for (int i = 0; i < 4; i++) {
    const fattn_backend b = isas[i];
    const int ok = built(b) && cpu_has(b);
    /* through the environment */
    setenv("FATTN_ISA", fattn_backend_name(b), 1);
    fattn_context *ctx = NULL;
    fattn_status st = fattn_context_create(NULL, &ctx);
    EXPECT(ok ? st == FATTN_SUCCESS : st == FATTN_ERROR_UNSUPPORTED,
           "FATTN_ISA=%s: %s (%s); built %d, cpu %d", fattn_backend_name(b),
           fattn_status_string(st), fattn_last_error(), built(b), cpu_has(b));
    if (st == FATTN_SUCCESS) {
      fattn_get_runtime_info(ctx, &info);
      EXPECT(info.isa_selected == b, "FATTN_ISA=%s selected %s", fattn_backend_name(b),
             fattn_backend_name(info.isa_selected));
      /* and it computes: AUTO on this context against the reference */
      tcase c;
      tcase_init(&c, 1, 4, 2, 33, 70, 24);
      c.causal = FATTN_CAUSAL_BOTTOM_RIGHT;
      EXPECT(tcase_check(&c, FATTN_BACKEND_AUTO, &ctx, 1, NULL) == 0, "AUTO under FATTN_ISA=%s",
             fattn_backend_name(b));
    } else {
      EXPECT(ctx == NULL && strstr(fattn_last_error(), fattn_backend_name(b)) != NULL,
             "message names the table: %s", fattn_last_error());
    }
    printf("FATTN_ISA=%-7s -> %s %s\n", fattn_backend_name(b), fattn_status_string(st),
           st ? fattn_last_error() : "");
    fattn_context_destroy(ctx);
    unsetenv("FATTN_ISA");
    /* through the options, and as an explicit backend */
    fattn_context_options o;
    fattn_context_options_init(&o);
    o.isa_cap = b;
    ctx = NULL;
    st = fattn_context_create(&o, &ctx);
    EXPECT(ok ? st == FATTN_SUCCESS : st == FATTN_ERROR_UNSUPPORTED, "isa_cap=%s: %s",
           fattn_backend_name(b), fattn_status_string(st));
    fattn_context_destroy(ctx);
    /* an explicit backend: runs (and matches) or says UNSUPPORTED */
    tcase c;
    tcase_init(&c, 1, 1, 1, 5, 5, 8);
    fattn_context *dflt = NULL;
    const int rc = tcase_check(&c, b, &dflt, 1, NULL);
    EXPECT(ok ? rc == 0 : rc == 2, "backend=%s: rc %d", fattn_backend_name(b), rc);
    checks += 3;
  }
  setenv("FATTN_ISA", "sse9", 1);
  fattn_context *ctx = NULL;
  EXPECT(fattn_context_create(NULL, &ctx) == FATTN_ERROR_INVALID_ARGUMENT, "FATTN_ISA=sse9");
  printf("FATTN_ISA=sse9    -> %s\n", fattn_last_error());
  unsetenv("FATTN_ISA");
  checks++;
  checks += test_bf16_dot_rule();
  checks += test_tile_rule();
  printf("%d passed, %d failed\n", checks - g_failures, g_failures);
  return g_failures != 0;
}

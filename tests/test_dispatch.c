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
  printf("%d passed, %d failed\n", checks - g_failures, g_failures);
  return g_failures != 0;
}

#define _POSIX_C_SOURCE 200809L
/* Runtime dispatch: FATTN_ISA and isa_cap pick exactly the table named when
 * this build and CPU have it, and fail with UNSUPPORTED (never SIGILL) when
 * not. What the CPU has is checked independently of fattn's own probe. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* Does this CPU run the ISA? Independent of lib/cpu_features.c: gcc's own
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
  printf("%d passed, %d failed\n", checks - g_failures, g_failures);
  return g_failures != 0;
}

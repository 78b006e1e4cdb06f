/* CPU feature probe. Compiled with no ISA flags (and never with LTO): it must
 * run on any CPU of the architecture and never execute what it is testing for.
 * On x86 a feature counts only when CPUID reports it AND XGETBV shows that the
 * OS saves the register state it needs (YMM for AVX2, opmask/ZMM for AVX-512). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void) {
  uint32_t lo, hi;
  /* xgetbv with ecx = 0, spelled as bytes so no -mxsave is needed. */
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

static unsigned probe(void) {
  unsigned a, b, c, d, f = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
  if (!osxsave || !avx) return 0;
  const uint64_t xcr0 = read_xcr0();
  const int ymm_ok = (xcr0 & 0x6) == 0x6;   /* SSE + AVX state */
  const int zmm_ok = (xcr0 & 0xe6) == 0xe6; /* + opmask, ZMM_Hi256, Hi16_ZMM */
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  const int avx2 = (b >> 5) & 1;
  const int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
            avx512vl = (b >> 31) & 1, avx512vnni = (c >> 11) & 1;
  if (ymm_ok && avx2 && fma && f16c) f |= FATTN__CPU_AVX2;
  if (zmm_ok && (f & FATTN__CPU_AVX2) && avx512f && avx512dq && avx512bw && avx512vl) {
    f |= FATTN__CPU_AVX512;
    if (avx512vnni) f |= FATTN__CPU_AVX512VNNI;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 5) & 1)) f |= FATTN__CPU_AVX512BF16;
  }
  /* vendor "AuthenticAMD" (ebx, edx, ecx of leaf 0) */
  if ((f & FATTN__CPU_AVX512BF16) && __get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541u &&
      d == 0x69746e65u && c == 0x444d4163u)
    f |= FATTN__CPU_BF16DOT_FAST;
  return f;
}

#elif defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDHP
#define HWCAP_ASIMDHP (1 << 10)
#endif

static unsigned probe(void) {
  unsigned long hw = getauxval(AT_HWCAP);
  unsigned f = 0;
  if (hw & HWCAP_ASIMD) f |= FATTN__CPU_NEON;
  if (hw & HWCAP_ASIMDHP) f |= FATTN__CPU_ASIMDHP;
  return f;
}

#else
static unsigned probe(void) { return 0; }
#endif

static pthread_once_t fattn__cpu_once = PTHREAD_ONCE_INIT;
static unsigned fattn__cpu_flags;

static void cpu_init(void) { fattn__cpu_flags = probe(); }

unsigned fattn__cpu_features(void) {
  pthread_once(&fattn__cpu_once, cpu_init);
  return fattn__cpu_flags;
}

void fattn__cpu_feature_string(unsigned f, char *buf, size_t n) {
  static const struct {
    unsigned bit;
    const char *name;
  } names[] = {{FATTN__CPU_AVX2, "avx2+fma+f16c"},
               {FATTN__CPU_AVX512, "avx512f/bw/dq/vl"},
               {FATTN__CPU_AVX512VNNI, "avx512vnni"},
               {FATTN__CPU_AVX512BF16, "avx512bf16"},
               {FATTN__CPU_NEON, "neon"},
               {FATTN__CPU_ASIMDHP, "asimdhp"}};
  if (n == 0) return;
  buf[0] = '\0';
  size_t used = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (!(f & names[i].bit)) continue;
    int w = snprintf(buf + used, n - used, "%s%s", used ? " " : "", names[i].name);
    if (w < 0 || (size_t)w >= n - used) break;
    used += (size_t)w;
  }
  if (used == 0) snprintf(buf, n, "baseline");
}

/* CPU feature probe. Compiled with no ISA flags (and never with LTO): it must
 * run on any CPU of the architecture and never execute what it is testing for.
 * On x86 a feature counts only when CPUID reports it AND XGETBV shows that the
 * OS saves the register state it needs (YMM for AVX2, opmask/ZMM for AVX-512). */
#if defined(__linux__)
#define _DEFAULT_SOURCE /* syscall() */
#endif
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

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
  /* AMX: CPUID.7.0:EDX AMX-BF16 (22), AMX-TILE (24); XCR0 XTILECFG (17) and
   * XTILEDATA (18); CPUID.7.1:EAX AMX-FP16 (21) */
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && ((d >> 22) & 1) && ((d >> 24) & 1) &&
      (xcr0 & 0x60000) == 0x60000) {
    f |= FATTN__CPU_AMX_BF16;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 21) & 1)) f |= FATTN__CPU_AMX_FP16;
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

/* The tile data state is off for a Linux process until it asks (5.16+); the
 * answer holds for the whole process, every thread included, so it is asked
 * once. */
static pthread_once_t fattn__amx_once = PTHREAD_ONCE_INIT;
static const char *fattn__amx_why = "the CPU has no AMX-TILE / AMX-BF16, or the OS does not "
                                    "enable the tile state (XCR0)";
static int fattn__amx_ok;

static void amx_init(void) {
  if (!(fattn__cpu_features() & FATTN__CPU_AMX_BF16)) return;
#if defined(__linux__) && defined(__x86_64__)
  /* ARCH_REQ_XCOMP_PERM (0x1023) for XFEATURE_XTILEDATA (18) */
  if (syscall(SYS_arch_prctl, 0x1023, 18) == 0) {
    fattn__amx_ok = 1;
    fattn__amx_why = "";
  } else {
    fattn__amx_why = "the kernel refused the tile state (arch_prctl ARCH_REQ_XCOMP_PERM)";
  }
#else
  fattn__amx_why = "fattn asks for the tile state on Linux only";
#endif
}

int fattn__amx_permit(const char **why) {
  pthread_once(&fattn__amx_once, amx_init);
  if (why) *why = fattn__amx_why;
  return fattn__amx_ok;
}

void fattn__cpu_feature_string(unsigned f, char *buf, size_t n) {
  static const struct {
    unsigned bit;
    const char *name;
  } names[] = {{FATTN__CPU_AVX2, "avx2+fma+f16c"},
               {FATTN__CPU_AVX512, "avx512f/bw/dq/vl"},
               {FATTN__CPU_AVX512VNNI, "avx512vnni"},
               {FATTN__CPU_AVX512BF16, "avx512bf16"},
               {FATTN__CPU_AMX_BF16, "amx-bf16"},
               {FATTN__CPU_AMX_FP16, "amx-fp16"},
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

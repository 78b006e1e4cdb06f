/* The floating-point environment of a call: each thread of the driver's
 * region runs with round-to-nearest and denormals flushed to zero (inputs and
 * results: FTZ + DAZ on x86, FPCR.FZ on AArch64), and gets its own
 * environment back at the end. So no denormal operand or result ever takes a
 * slow path, and the caller's rounding mode cannot change fattn's bits.
 * x86-64 always has SSE's MXCSR: no ISA flag needed here. */
#include "internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>

/* all exceptions masked (0x1f80), round to nearest, FTZ (bit 15), DAZ (bit 6) */
#define FATTN__MXCSR (0x1f80u | 0x8000u | 0x0040u)

unsigned fattn__fp_enter(void) {
  const unsigned saved = _mm_getcsr();
  _mm_setcsr(FATTN__MXCSR);
  return saved;
}

void fattn__fp_leave(unsigned saved) { _mm_setcsr(saved); }

#elif defined(__aarch64__)

/* FPCR: RMode (bits 22-23) = 0, round to nearest; FZ (bit 24) = 1. */
unsigned fattn__fp_enter(void) {
  uint64_t saved;
  __asm__ volatile("mrs %0, fpcr" : "=r"(saved));
  const uint64_t mode = (saved & ~((uint64_t)3 << 22)) | ((uint64_t)1 << 24);
  __asm__ volatile("msr fpcr, %0" ::"r"(mode));
  return (unsigned)saved;
}

void fattn__fp_leave(unsigned saved) {
  const uint64_t v = saved;
  __asm__ volatile("msr fpcr, %0" ::"r"(v));
}

#else
unsigned fattn__fp_enter(void) { return 0; }
void fattn__fp_leave(unsigned saved) { (void)saved; }
#endif

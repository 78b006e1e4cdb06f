/* The vdpbf16ps throughput loop (AVX512_BF16): the peak of the BF16
 * dot-product Q·Kᵀ. 20 independent accumulators, no loads; each instruction
 * is 16 lanes × 2 products × 2 FLOPs. */
#include <immintrin.h>
#include <stdint.h>

#include "peak.h"

double fattn_bench_dpbf16_avx512(int64_t iters) {
  enum { NACC = 20 };
  __m512 acc[NACC];
  for (int i = 0; i < NACC; i++)
    acc[i] = _mm512_set1_ps(1.0f + (float)i * 1e-3f);
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.999f), _mm512_set1_ps(0.998f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-7f), _mm512_set1_ps(2e-7f));
  for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 32
    for (int i = 0; i < NACC; i++)
      acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  }
  float sink = 0;
  for (int i = 0; i < NACC; i++)
    sink += _mm512_cvtss_f32(acc[i]);
  __asm__ volatile("" ::"x"(sink));
  return (double)iters * NACC * 16 * 4.0;
}

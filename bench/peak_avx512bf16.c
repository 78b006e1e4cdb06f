/* The vdpbf16ps throughput loop (AVX512_BF16): the peak of the BF16
 * dot-product Q·Kᵀ. Each instruction is 16 lanes × 2 products × 2 FLOPs. */
#include <immintrin.h>
#include <stdint.h>

#include "peak.h"

#define PK_NAME fattn_bench_dpbf16_avx512
#define PK_VEC __m512
#define PK_W 16
#define PK_NACC 20
#define PK_SET1 _mm512_set1_ps
#define PK_OPERAND __m512bh
#define PK_OPERAND_SET1(f) _mm512_cvtne2ps_pbh(_mm512_set1_ps(f), _mm512_set1_ps(f))
#define PK_FMA _mm512_dpbf16_ps
#define PK_LANE_FLOPS 4.0
#define PK_FIRST _mm512_cvtss_f32
#include "peak_fma.h"

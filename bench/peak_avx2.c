#include <immintrin.h>
#include <stdint.h>

#include "peak.h"

#define PK_NAME fattn_bench_fma_avx2
#define PK_VEC __m256
#define PK_W 8
#define PK_NACC 12
#define PK_SET1 _mm256_set1_ps
#define PK_FMA _mm256_fmadd_ps
#define PK_FIRST _mm256_cvtss_f32
#include "peak_fma.h"

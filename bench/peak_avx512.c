#include <immintrin.h>
#include <stdint.h>

#include "peak.h"

#define PK_NAME fattn_bench_fma_avx512
#define PK_VEC __m512
#define PK_W 16
#define PK_NACC 20
#define PK_SET1 _mm512_set1_ps
#define PK_FMA _mm512_fmadd_ps
#define PK_FIRST _mm512_cvtss_f32
#include "peak_fma.h"

/* The FMA throughput loop, written once for every vector width: NACC
 * independent accumulators (more than FMA latency × FMA ports, so the loop is
 * throughput-bound), no loads. Included by peak_<isa>.c with PK_* defined;
 * optional: PK_OPERAND / PK_OPERAND_SET1 (the multiplicands' type, default
 * PK_VEC / PK_SET1) and PK_LANE_FLOPS (FLOPs per lane per PK_FMA, default 2),
 * for dot-product instructions such as vdpbf16ps. */
#ifndef PK_OPERAND
#define PK_OPERAND PK_VEC
#define PK_OPERAND_SET1 PK_SET1
#endif
#ifndef PK_LANE_FLOPS
#define PK_LANE_FLOPS 2.0
#endif
double PK_NAME(int64_t iters) {
  PK_VEC acc[PK_NACC];
  for (int i = 0; i < PK_NACC; i++)
    acc[i] = PK_SET1(1.0f + (float)i * 1e-3f);
  const PK_OPERAND a = PK_OPERAND_SET1(0.999999f), b = PK_OPERAND_SET1(1e-7f);
  for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 32
    for (int i = 0; i < PK_NACC; i++)
      acc[i] = PK_FMA(acc[i], a, b);
  }
  float sink = 0;
  for (int i = 0; i < PK_NACC; i++)
    sink += PK_FIRST(acc[i]);
  __asm__ volatile("" ::"x"(sink));
  return (double)iters * PK_NACC * PK_W * PK_LANE_FLOPS;
}

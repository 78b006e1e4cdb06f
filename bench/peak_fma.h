/* The FMA throughput loop, written once for every vector width: NACC
 * independent accumulators (more than FMA latency × FMA ports, so the loop is
 * throughput-bound), no loads. Included by peak_<isa>.c with PK_* defined. */
double PK_NAME(int64_t iters) {
  PK_VEC acc[PK_NACC];
  for (int i = 0; i < PK_NACC; i++)
    acc[i] = PK_SET1(1.0f + (float)i * 1e-3f);
  const PK_VEC a = PK_SET1(0.999999f), b = PK_SET1(1e-7f);
  for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 32
    for (int i = 0; i < PK_NACC; i++)
      acc[i] = PK_FMA(acc[i], a, b);
  }
  float sink = 0;
  for (int i = 0; i < PK_NACC; i++)
    sink += PK_FIRST(acc[i]);
  __asm__ volatile("" ::"x"(sink));
  return (double)iters * PK_NACC * PK_W * 2.0;
}

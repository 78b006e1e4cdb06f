/* Machine limits measured by the benchmark itself: FMA throughput per ISA and
 * read bandwidth. Each probe runs `threads` threads at once (pthreads) and
 * returns the aggregate rate. */
#ifndef FATTN_BENCH_PEAK_H
#define FATTN_BENCH_PEAK_H

#include <stdint.h>

/* GFLOP/s of a loop of independent FMAs (2 FLOPs per lane): 0 when the CPU
 * or the build lacks the ISA. isa: "avx512", "avx2", "neon", "scalar", or
 * "avx512bf16" (vdpbf16ps: 2 products per lane), "amx" (TDPBF16PS). */
double peak_fma_gflops(const char *isa, int threads);
/* GB/s of reading a buffer much larger than the last-level cache. */
double peak_read_gbps(int threads, int64_t llc_bytes);

/* One thread's FMA loop (in peak_<isa>.c, compiled with that ISA's flags):
 * runs `iters` iterations and returns the FLOPs done. */
double fattn_bench_fma_avx512(int64_t iters);
double fattn_bench_fma_avx2(int64_t iters);
/* vdpbf16ps instead of FMA ("avx512bf16"; 4 FLOPs per lane). */
double fattn_bench_dpbf16_avx512(int64_t iters);
/* TDPBF16PS on tiles ("amx"; 16·16·32·2 FLOPs each); 0 when the OS refuses
 * the tile state. */
double fattn_bench_tdpbf16_amx(int64_t iters);

#endif

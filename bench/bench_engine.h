/* Inference-engine benchmarks of fattn_bench (--engine): paged and
 * quantized decode, varlen batches, sliding window. */
#ifndef FATTN_BENCH_ENGINE_H
#define FATTN_BENCH_ENGINE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Registers the engine benchmarks at these thread counts. */
void register_engine(const int *threads, int nthreads, int64_t llc_bytes);
/* Prints the targets' ratios of the benchmarks that ran. */
void print_engine_summary(void);

#ifdef __cplusplus
}
#endif
#endif

/* The backward-pass benchmarks of fattn_bench (--backward). */
#ifndef FATTN_BENCH_BACKWARD_H
#define FATTN_BENCH_BACKWARD_H

#include <stdint.h>

#include "fattn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Registers forward and backward of P2, P3, L1 at these thread counts, for
 * the dtypes named in `dtypes` ("f32", "bf16", both when NULL). */
void register_backward(const int *threads, int nthreads, const char *dtypes);
/* Prints backward / forward per shape, dtype and thread count. */
void print_backward_summary(void);

/* From bench_sdpa.c: a monotonic clock in seconds, and n random values in
 * [-1, 1) of dtype dt (malloc'ed; NULL when out of memory). */
double bench_now(void);
void *random_buffer(int64_t n, unsigned seed, fattn_dtype dt);

#ifdef __cplusplus
}
#endif
#endif

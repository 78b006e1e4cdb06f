/* The backward-pass benchmarks of fattn_bench (--backward). */
#ifndef FATTN_BENCH_BACKWARD_H
#define FATTN_BENCH_BACKWARD_H

#ifdef __cplusplus
extern "C" {
#endif

/* Registers forward and backward of P2, P3, L1 at these thread counts, for
 * the dtypes named in `dtypes` ("f32", "bf16", both when NULL). */
void register_backward(const int *threads, int nthreads, const char *dtypes);
/* Prints backward / forward per shape, dtype and thread count. */
void print_backward_summary(void);

#ifdef __cplusplus
}
#endif
#endif

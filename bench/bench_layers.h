#ifndef FATTN_BENCH_LAYERS_H
#define FATTN_BENCH_LAYERS_H
#include "fattn.h"
/* Registers gemm/..., mha/... and encoder/... (bench_layers.c) for these
 * thread counts, on kernel table `isa`. */
void register_layers(const int *threads, int nthreads, fattn_backend isa);
#endif

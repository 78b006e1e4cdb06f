#ifndef FATTN_BENCH_UKERNEL_H
#define FATTN_BENCH_UKERNEL_H
#include "fattn.h"
/* Registers ukernel/<isa>/{qk,softmax,pv} for every table this CPU runs;
 * peak_of gives the 1-thread FMA peak (GFLOP/s) used for pct_peak. */
void register_ukernels(double (*peak_of)(const char *isa));
#endif

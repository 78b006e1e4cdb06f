/* Kernel-level benchmarks for tuning: ukernel/<isa>/<kernel> runs one
 * micro-kernel of a table on data that stays in L1 (rows = the table's
 * register-tile rows, 32 keys, head_dim 64: about 32 KiB in all), and reports
 * GFLOP/s and % of the ISA's measured FMA peak (softmax: Gelem/s). Uses the
 * private kernel contract (lib/kernel.h), like tests/test_kernels.c. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_ukernel.h"
#include "gbench_shim.h"
#include "internal.h"

enum { UK_QK, UK_SOFTMAX, UK_PV, UK_QK_BF16 };

typedef struct ukernel {
  const fattn__kernel_table *t;
  const fattn__bf16_dot_table *bd; /* UK_QK_BF16 */
  int which;
  double peak;
  char name[64];
} ukernel;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void run_ukernel(gb_state *st, void *arg) {
  const ukernel *u = arg;
  const fattn__kernel_table *t = u->t;
  const int64_t rows = t->mr, n = 32, d = 64;
  float *qt = aligned_alloc(64, (size_t)(rows * d) * 4),
        *k = aligned_alloc(64, (size_t)(n * d) * 4);
  float *s = aligned_alloc(64, (size_t)(n * rows) * 4),
        *o = aligned_alloc(64, (size_t)(d * rows) * 4);
  float *m = aligned_alloc(64, (size_t)rows * 4), *l = aligned_alloc(64, (size_t)rows * 4);
  float *a = aligned_alloc(64, (size_t)rows * 4);
  for (int64_t i = 0; i < rows * d; i++)
    qt[i] = (float)(i % 13) * 0.01f, o[i] = 0;
  for (int64_t i = 0; i < n * d; i++)
    k[i] = (float)(i % 7) * 0.01f;
  for (int64_t i = 0; i < n * rows; i++)
    s[i] = (float)(i % 5) * 0.1f;
  for (int64_t r = 0; r < rows; r++)
    m[r] = 0, l[r] = 1, a[r] = 0.5f;
  /* the BF16 dot's operands: Qt's values as pairs, K rounded to BF16 */
  uint16_t *qp = aligned_alloc(64, (size_t)(rows * d) * 2), *kh = malloc((size_t)(n * d) * 2);
  for (int64_t i = 0; i < n * d; i++)
    kh[i] = (uint16_t)(k[i] == 0 ? 0 : 0x3c23); /* any finite BF16 will do */
  if (u->bd) u->bd->pack_q(rows, d, qt, d, FATTN_F32, qp, rows);
  int64_t iters = 0;
  const double t0 = now();
  while (gb_keep_running(st)) {
    switch (u->which) {
    case UK_QK: t->qk(rows, n, d, qt, k, d, 1, s, rows); break;
    case UK_SOFTMAX: /* keep the scores bounded: re-centre m each time */
      for (int64_t r = 0; r < rows; r++)
        m[r] = 0;
      t->softmax(rows, n, s, rows, m, l, a);
      break;
    case UK_QK_BF16: u->bd->qk(rows, n, d, qp, kh, d, 1.0f, s, rows); break;
    default: t->pv(rows, n, d, s, rows, k, d, 1, a, o, rows); break;
    }
    iters++;
  }
  const double secs = now() - t0;
  if (iters > 0 && secs > 0) {
    if (u->which == UK_SOFTMAX) {
      gb_counter(st, "Gelem_per_s", (double)(rows * n) * (double)iters / secs / 1e9, 0);
    } else {
      const double gflops = 2.0 * (double)(rows * n * d) * (double)iters / secs / 1e9;
      gb_counter(st, "GFLOPS", gflops, 0);
      if (u->peak > 0) gb_counter(st, "pct_peak", 100.0 * gflops / u->peak, 0);
    }
  }
  free(qt), free(k), free(s), free(o), free(m), free(l), free(a), free(qp), free(kh);
}

void register_ukernels(double (*peak_of)(const char *isa)) {
  static const fattn_backend tables[] = {FATTN_BACKEND_AVX512, FATTN_BACKEND_AVX2,
                                         FATTN_BACKEND_NEON, FATTN_BACKEND_SCALAR};
  static const char *kinds[] = {"qk", "softmax", "pv"};
  static ukernel uk[13];
  int n = 0;
  for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
    fattn_status st;
    const fattn__kernel_table *t = fattn__table_for(tables[i], &st);
    if (!t) continue;
    for (int w = 0; w < 3 && n < 12; w++) {
      ukernel *u = &uk[n++];
      u->t = t;
      u->which = w;
      u->peak = peak_of(t->name);
      snprintf(u->name, sizeof u->name, "ukernel/%s/%s", t->name, kinds[w]);
      gb_register(u->name, run_ukernel, u);
    }
    const fattn__bf16_dot_table *bd = fattn__bf16_dot_for(t);
    if (bd && n < 13) { /* % of the vdpbf16ps peak */
      ukernel *u = &uk[n++];
      u->t = t;
      u->bd = bd;
      u->which = UK_QK_BF16;
      u->peak = peak_of(bd->name);
      snprintf(u->name, sizeof u->name, "ukernel/%s/qk", bd->name);
      gb_register(u->name, run_ukernel, u);
    }
  }
}

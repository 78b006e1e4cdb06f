/* Peak probes: run the ISA's FMA loop (or a streaming read) on `threads`
 * threads at once, timed by the wall clock, best of 5 (the limit is the best
 * the machine does; noise only ever slows it down). */
#define _POSIX_C_SOURCE 200809L
#include "peak.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fattn.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct job {
  double (*fma)(int64_t);
  int64_t iters;
  const float *buf;
  int64_t n;
  double work;
  pthread_barrier_t *bar;
} job;

static void *fma_thread(void *arg) {
  job *j = arg;
  pthread_barrier_wait(j->bar);
  j->work = j->fma(j->iters);
  return NULL;
}

static void *read_thread(void *arg) {
  job *j = arg;
  pthread_barrier_wait(j->bar);
  /* 8 independent sums: bound by loads, not by the add latency */
  float s[8] = {0};
  for (int64_t i = 0; i + 8 <= j->n; i += 8)
    for (int k = 0; k < 8; k++)
      s[k] += j->buf[i + k];
  float t = 0;
  for (int k = 0; k < 8; k++)
    t += s[k];
  __asm__ volatile("" ::"x"(t));
  j->work = (double)j->n * sizeof(float);
  return NULL;
}

static double run_threads(int threads, void *(*fn)(void *), job *proto, const float **bufs) {
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    pthread_t th[256];
    job jobs[256];
    pthread_barrier_t bar;
    if (threads > 256) threads = 256;
    pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
    for (int t = 0; t < threads; t++) {
      jobs[t] = *proto;
      jobs[t].bar = &bar;
      if (bufs) jobs[t].buf = bufs[t];
      pthread_create(&th[t], NULL, fn, &jobs[t]);
    }
    pthread_barrier_wait(&bar);
    const double t0 = now();
    double work = 0;
    for (int t = 0; t < threads; t++) {
      pthread_join(th[t], NULL);
      work += jobs[t].work;
    }
    const double rate = work / (now() - t0) / 1e9;
    pthread_barrier_destroy(&bar);
    if (rate > best) best = rate;
  }
  return best;
}

static int cpu_has(const char *isa) {
  fattn_runtime_info info;
  if (fattn_get_runtime_info(NULL, &info) != FATTN_SUCCESS) return 0;
  if (!strcmp(isa, "avx512")) return strstr(info.isa_detected, "avx512f") != NULL;
  if (!strcmp(isa, "avx2")) return strstr(info.isa_detected, "avx2") != NULL;
  if (!strcmp(isa, "avx512bf16")) return strstr(info.isa_detected, "avx512bf16") != NULL;
  if (!strcmp(isa, "amx")) return strstr(info.isa_detected, "amx-bf16") != NULL;
  return 0;
}

double peak_fma_gflops(const char *isa, int threads) {
  job proto = {0};
  proto.iters = 20 * 1000 * 1000;
#if defined(__x86_64__)
  if (!strcmp(isa, "avx512") && cpu_has(isa)) proto.fma = fattn_bench_fma_avx512;
  if (!strcmp(isa, "avx2") && cpu_has(isa)) proto.fma = fattn_bench_fma_avx2;
#if defined(FATTN_BENCH_HAVE_DPBF16)
  if (!strcmp(isa, "avx512bf16") && cpu_has(isa)) proto.fma = fattn_bench_dpbf16_avx512;
#endif
#if defined(FATTN_BENCH_HAVE_AMX)
  if (!strcmp(isa, "amx") && cpu_has(isa)) {
    proto.fma = fattn_bench_tdpbf16_amx;
    proto.iters = 2 * 1000 * 1000; /* 65536 FLOPs an iteration */
  }
#endif
#endif
  if (!proto.fma) return 0;
  return run_threads(threads, fma_thread, &proto, NULL);
}

double peak_read_gbps(int threads, int64_t llc_bytes) {
  const int64_t bytes = 4 * llc_bytes > ((int64_t)256 << 20) ? 4 * llc_bytes : (int64_t)256 << 20;
  const int64_t n = bytes / (int64_t)sizeof(float) / threads;
  const float **bufs = calloc((size_t)threads, sizeof *bufs);
  double r = 0;
  int ok = bufs != NULL;
  for (int t = 0; ok && t < threads; t++) {
    float *b = malloc((size_t)n * sizeof(float));
    if (!b)
      ok = 0;
    else
      for (int64_t i = 0; i < n; i++)
        b[i] = (float)(i & 7);
    bufs[t] = b;
  }
  if (ok) {
    job proto = {0};
    proto.n = n;
    r = run_threads(threads, read_thread, &proto, bufs);
  }
  for (int t = 0; bufs && t < threads; t++)
    free((void *)bufs[t]);
  free(bufs);
  return r;
}

/* fattn's benchmark: sdpa/<backend>/<shape>/threads:<n> over the named shapes
 * P1..P6 (and any --shape), for every backend this machine runs.
 *
 * Our flags (the rest go to Google Benchmark, e.g. --benchmark_format=json,
 * --benchmark_out=FILE, --benchmark_filter=REGEX, --benchmark_repetitions=N):
 *   --shape B:H:Hkv:Lq:Lk:D[:causal]   add a shape (custom0, custom1, ...)
 *   --backend NAME[,NAME]              only these backends (scalar, avx2, avx512,
 *                                      neon, onednn, reference)
 *   --threads N[,N]                    only these thread counts (default 1 and
 *                                      all physical cores)
 *   --engine                           only the inference-engine benchmarks (paged,
 *                                      quantized KV, varlen, window) and their ratios
 *   --all                              also run the scalar backend on the large
 *                                      shapes (slow: minutes per benchmark)
 *   --block-keys N, --block-queries N  override the plan's block sizes (tuning)
 *   --dtypes Q,KV,OUT                  element types (f32, bf16, f16) of q, of k and v,
 *                                      and of out (default f32,f32,f32); names get a
 *                                      /dt:Q-KV-OUT suffix when not all f32
 * Counters: GFLOPS = useful FLOPs / s / 1e9 (4·B·H·Lq·Lk·D for non-causal shapes;
 * causal shapes count only the (q, k) pairs that are not masked); GBps = bytes of
 * q, k, v and out, each once, per second. All shapes run with warm caches. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fattn.h"
#include "half.h"
#include "gbench_shim.h"
#include "bench_ukernel.h"
#include "bench_layers.h"
#include "bench_backward.h"
#include "bench_engine.h"
#include "peak.h"

#ifndef FATTN_GIT_COMMIT
#define FATTN_GIT_COMMIT "unknown"
#endif

typedef struct shape {
  char name[24];
  int64_t B, H, Hkv, Lq, Lk, D;
  int causal;
} shape;

typedef struct bench {
  shape s;
  fattn_backend be;
  int threads;
  double peak; /* GFLOP/s the pct_peak counter divides by (0: none) */
  char name[128];
  /* filled by each repetition of the benchmark; the summary shows the median */
  int done;
  double ms, gflops, pct;
  int nrep;
  double rep_ms[32];
} bench;

#define MAX_SHAPES 32
#define MAX_BENCHES 512
static shape shapes[MAX_SHAPES] = {
    {"P1", 1, 8, 8, 64, 64, 64, 0},        {"P2", 4, 12, 12, 512, 512, 64, 0},
    {"P3", 1, 32, 32, 2048, 2048, 128, 1}, {"P4", 1, 32, 8, 4096, 4096, 128, 1},
    {"P5", 8, 32, 8, 1, 4096, 128, 0},     {"P6", 1, 8, 8, 8192, 8192, 64, 0},
};
static int nshapes = 6;
static bench benches[MAX_BENCHES];
static int nbenches;
/* 1-thread peaks (for the ukernel benchmarks): avx512 and avx2 FMA, avx512bf16 vdpbf16ps */
static double g_peak1[3];

static double peak_of(const char *isa) {
  return !strcmp(isa, "avx512")       ? g_peak1[0]
         : !strcmp(isa, "avx2")       ? g_peak1[1]
         : !strcmp(isa, "avx512bf16") ? g_peak1[2]
                                      : 0;
}

static int64_t g_block_keys, g_block_queries; /* --block-keys / --block-queries, 0 = plan's */
static fattn_dtype g_dt[3] = {FATTN_F32, FATTN_F32, FATTN_F32}; /* --dtypes: q, k/v, out */

/* Whether fattn runs Q·Kᵀ of this benchmark with vdpbf16ps (the rule of
 * lib/core/api.c: the avx512 table, BF16 K, BF16 q or FATTN_BF16_DOT=on, unless
 * FATTN_BF16_DOT=off; the CPU has AVX512_BF16 when its probe ran), and not
 * on the decode path (Lq = 1 per unit). Its pct_peak then divides by the
 * peak of the mix: Q·Kᵀ at the vdpbf16ps rate, P·V at the FMA rate. */
static int bf16_dot_used(fattn_backend be, const shape *s, double dot_peak) {
  const char *m = getenv("FATTN_BF16_DOT");
  if (be != FATTN_BACKEND_AVX512 || dot_peak <= 0 || g_dt[1] != FATTN_BF16 || s->Lq <= 1 ||
      (m && !strcmp(m, "off")))
    return 0;
  if (m && !strcmp(m, "on")) return 1;
  /* auto: bf16 q, where the library says the instruction pays on this CPU */
  fattn_runtime_info in;
  return g_dt[0] == FATTN_BF16 && fattn_get_runtime_info(NULL, &in) == FATTN_SUCCESS &&
         strstr(in.notes, "bf16 dot: on for bf16 q") != NULL;
}

/* Whether fattn runs this benchmark's Q·Kᵀ and P·V on a matrix engine (the
 * rule of lib/core/api.c and plan.c: the context's tile engine, all-BF16 q,
 * K and V, or any F32 / F16 / BF16 under FATTN_TILES=bf16; not decode, whose
 * units of G·Lq <= 4 rows stay on the row kernels). Its pct_peak then divides
 * by the engine's probe (peak/amx). */
static int tiles_used(fattn_backend be, const shape *s) {
  if (be == FATTN_BACKEND_ONEDNN || be == FATTN_BACKEND_REFERENCE) return 0;
  fattn_runtime_info in;
  if (fattn_get_runtime_info(NULL, &in) != FATTN_SUCCESS || !in.tile_engine[0]) return 0;
  const int bf16 = g_dt[0] == FATTN_BF16 && g_dt[1] == FATTN_BF16;
  return (bf16 || in.tiles == FATTN_TILES_BF16) && (s->H / s->Hkv) * s->Lq > 4;
}

static double esize(fattn_dtype t) { return t == FATTN_F32 ? 4.0 : 2.0; }
static const char *dt_name(fattn_dtype t) {
  return t == FATTN_F32 ? "f32" : t == FATTN_BF16 ? "bf16" : "f16";
}

double bench_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double useful_flops(const shape *s) {
  double pairs = 0;
  if (!s->causal) {
    pairs = (double)s->Lq * (double)s->Lk;
  } else { /* top-left causal: row i attends min(i + 1, Lk) keys */
    for (int64_t i = 0; i < s->Lq; i++)
      pairs += (double)(i + 1 < s->Lk ? i + 1 : s->Lk);
  }
  return 4.0 * (double)(s->B * s->H) * pairs * (double)s->D;
}

static double bytes_moved(const shape *s) {
  return (esize(g_dt[0]) + esize(g_dt[2])) * (double)(s->B * s->H * s->Lq * s->D) +
         esize(g_dt[1]) * (double)(2 * s->B * s->Hkv * s->Lk * s->D);
}

/* n random values in [-1, 1) of dtype dt. */
void *random_buffer(int64_t n, unsigned seed, fattn_dtype dt) {
  char *p = malloc((size_t)n * (size_t)esize(dt));
  if (!p) return NULL;
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    const float x = (float)(seed >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
    if (dt == FATTN_F32)
      ((float *)p)[i] = x;
    else
      ((uint16_t *)p)[i] = dt == FATTN_BF16 ? fattn__f32_to_bf16(x) : fattn__f32_to_f16(x);
  }
  return p;
}

/* Decode-like shapes (Lq <= 16) are measured with cold K and V, as an
 * engine sees them: the KV cache of the next request or layer is not in
 * cache. Their K/V are rotated across copies that together exceed 4× the
 * last-level cache (one copy when K and V alone already do, as for P5).
 * Every other shape runs warm: each iteration reuses the same inputs. */
static int64_t g_llc_bytes = 32 << 20;

static int kv_copies(const shape *s) {
  if (s->Lq > 16) return 1;
  const double kv = 2.0 * esize(g_dt[1]) * (double)(s->B * s->Hkv * s->Lk * s->D);
  int n = (int)(4.0 * (double)g_llc_bytes / kv) + 1;
  return n < 1 ? 1 : n > 64 ? 64 : n;
}

static void run_sdpa(gb_state *st, void *arg) {
  const bench *b = arg;
  const shape *s = &b->s;
  const int copies = kv_copies(s);
  const int64_t kvn = s->B * s->Hkv * s->Lk * s->D;
  char *q = random_buffer(s->B * s->H * s->Lq * s->D, 1, g_dt[0]);
  char *k = random_buffer(kvn * copies, 2, g_dt[1]);
  char *v = random_buffer(kvn * copies, 3, g_dt[1]);
  char *o = malloc((size_t)(s->B * s->H * s->Lq * s->D) * (size_t)esize(g_dt[2]));
  const int64_t kvbytes = kvn * (int64_t)esize(g_dt[1]);
  fattn_context *ctx = NULL;
  fattn_context_options opt;
  fattn_context_options_init(&opt);
  opt.num_threads = b->threads;
  opt.block_keys = g_block_keys;
  opt.block_queries = g_block_queries;
  if (!q || !k || !v || !o || fattn_context_create(&opt, &ctx) != FATTN_SUCCESS) {
    gb_skip(st, "out of memory or no context");
    goto done;
  }
  fattn_tensor tq = fattn_tensor_contiguous(q, g_dt[0], s->B, s->H, s->Lq, s->D);
  fattn_tensor tk = fattn_tensor_contiguous(k, g_dt[1], s->B, s->Hkv, s->Lk, s->D);
  fattn_tensor tv = fattn_tensor_contiguous(v, g_dt[1], s->B, s->Hkv, s->Lk, s->D);
  fattn_tensor to = fattn_tensor_contiguous(o, g_dt[2], s->B, s->H, s->Lq, s->D);
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.causal = s->causal ? FATTN_CAUSAL_TOP_LEFT : FATTN_CAUSAL_NONE;
  p.backend = b->be;
  if (fattn_sdpa(ctx, &tq, &tk, &tv, &to, &p) != FATTN_SUCCESS) { /* warm-up; workspace */
    gb_skip(st, fattn_last_error());
    goto done;
  }
  /* Timed here as well as by Google Benchmark, so that the counters are plain
   * numbers (GFLOPS, GBps, pct_peak) rather than per-second rates. */
  int64_t iters = 0;
  const double t0 = bench_now();
  while (gb_keep_running(st)) {
    const int64_t c = iters % copies;
    tk.data = k + c * kvbytes;
    tv.data = v + c * kvbytes;
    fattn_sdpa(ctx, &tq, &tk, &tv, &to, &p);
    iters++;
  }
  const double secs = bench_now() - t0;
  if (iters > 0 && secs > 0) {
    const double gflops = useful_flops(s) * (double)iters / secs / 1e9;
    gb_counter(st, "GFLOPS", gflops, 0);
    gb_counter(st, "GBps", bytes_moved(s) * (double)iters / secs / 1e9, 0);
    if (b->peak > 0) gb_counter(st, "pct_peak", 100.0 * gflops / b->peak, 0);
    bench *rec = (bench *)b;
    rec->done = 1;
    if (rec->nrep < 32) rec->rep_ms[rec->nrep++] = 1e3 * secs / (double)iters;
    /* median of the repetitions so far (insertion sort: few values) */
    double sorted[32];
    memcpy(sorted, rec->rep_ms, sizeof sorted);
    for (int i = 1; i < rec->nrep; i++)
      for (int j = i; j > 0 && sorted[j] < sorted[j - 1]; j--) {
        const double tmp = sorted[j];
        sorted[j] = sorted[j - 1];
        sorted[j - 1] = tmp;
      }
    rec->ms = sorted[rec->nrep / 2];
    rec->gflops = useful_flops(s) / (rec->ms * 1e-3) / 1e9;
    rec->pct = b->peak > 0 ? 100.0 * rec->gflops / b->peak : 0;
  }
done:
  fattn_context_destroy(ctx);
  free(q), free(k), free(v), free(o);
}

typedef struct probe {
  const char *isa; /* NULL: read bandwidth */
  int threads;
  int64_t llc;
  char name[64];
} probe;

static void run_probe(gb_state *st, void *arg) {
  const probe *p = arg;
  double rate = 0;
  while (gb_keep_running(st))
    rate = p->isa ? peak_fma_gflops(p->isa, p->threads) : peak_read_gbps(p->threads, p->llc);
  gb_counter(st, p->isa ? "GFLOPS" : "GBps", rate, 0);
}

/* The closing table: per shape and thread count, each backend's time, rate,
 * % of peak and speed-up over the oneDNN and scalar backends (when they ran).
 * Figures are the median over the benchmark's repetitions. */
static const bench *find(const bench *like, fattn_backend be) {
  for (int i = 0; i < nbenches; i++)
    if (benches[i].done && benches[i].be == be && benches[i].threads == like->threads &&
        !strcmp(benches[i].s.name, like->s.name))
      return &benches[i];
  return NULL;
}

static void print_row(const bench *b);

static void print_summary(void) {
  int any = 0;
  for (int i = 0; i < nbenches; i++)
    any |= benches[i].done;
  if (!any) return;
  printf("\n%-9s %-7s %-9s %10s %9s %7s %10s %10s\n", "shape", "threads", "backend", "ms",
         "GFLOP/s", "%peak", "x oneDNN", "x scalar");
  /* grouped by shape, then thread count, in the order they were registered */
  for (int i = 0; i < nbenches; i++)
    for (int j = 0; j < nbenches; j++) {
      const bench *a = &benches[i], *b = &benches[j];
      if (!b->done || strcmp(a->s.name, b->s.name) || a->threads != b->threads) continue;
      int first = 1; /* print each (shape, threads) group once, at its first member */
      for (int k = 0; k < i; k++)
        if (!strcmp(benches[k].s.name, a->s.name) && benches[k].threads == a->threads) first = 0;
      if (!first) continue;
      print_row(b);
    }
}

static void print_row(const bench *b) {
  {
    const bench *dn = find(b, FATTN_BACKEND_ONEDNN), *sc = find(b, FATTN_BACKEND_SCALAR);
    char xd[16] = "-", xs[16] = "-";
    if (dn && dn != b) snprintf(xd, sizeof xd, "%.2f", dn->ms / b->ms);
    if (sc && sc != b) snprintf(xs, sizeof xs, "%.1f", sc->ms / b->ms);
    printf("%-9s %-7d %-9s %10.3f %9.1f %7.1f %10s %10s\n", b->s.name, b->threads,
           fattn_backend_name(b->be), b->ms, b->gflops, b->pct, xd, xs);
  }
}

/* "model name" from /proc/cpuinfo (Linux), else "unknown". */
static void cpu_model(char *buf, size_t n) {
  snprintf(buf, n, "unknown");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) != 0) continue;
    const char *c = strchr(line, ':');
    if (!c) continue;
    c++;
    while (*c == ' ')
      c++;
    snprintf(buf, n, "%s", c);
    buf[strcspn(buf, "\n")] = '\0';
    break;
  }
  fclose(f);
}

static int in_list(const char *list, const char *item) {
  if (!list) return 1;
  const size_t n = strlen(item);
  for (const char *p = list; (p = strstr(p, item)) != NULL; p += n)
    if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
  return 0;
}

static int backend_runs(fattn_backend be) {
  float x = 1, y = 0;
  fattn_tensor t = fattn_tensor_contiguous(&x, FATTN_F32, 1, 1, 1, 1);
  fattn_tensor o = fattn_tensor_contiguous(&y, FATTN_F32, 1, 1, 1, 1);
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.backend = be;
  return fattn_sdpa(NULL, &t, &t, &t, &o, &p) == FATTN_SUCCESS;
}

int main(int argc, char **argv) {
  const char *backend_list = NULL, *thread_list = NULL;
  int all = 0, engine = 0, backward = 0, ncustom = 0, gargc = 0;
  const char *bw_dtypes = NULL;
  char **gargv = calloc((size_t)argc + 1, sizeof *gargv);
  if (!gargv) return 1;
  for (int i = 0; i < argc; i++) {
    if (i > 0 && !strcmp(argv[i], "--engine")) {
      engine = 1;
    } else if (i > 0 && !strcmp(argv[i], "--backward")) {
      backward = 1;
    } else if (i > 0 && i + 1 < argc && !strcmp(argv[i], "--backward-dtypes")) {
      bw_dtypes = argv[++i];
    } else if (i > 0 && !strcmp(argv[i], "--all")) {
      all = 1;
    } else if (i > 0 && i + 1 < argc && !strcmp(argv[i], "--backend")) {
      backend_list = argv[++i];
    } else if (i > 0 && i + 1 < argc && !strcmp(argv[i], "--block-keys")) {
      g_block_keys = atoll(argv[++i]);
    } else if (i > 0 && i + 1 < argc && !strcmp(argv[i], "--block-queries")) {
      g_block_queries = atoll(argv[++i]);
    } else if (i > 0 && i + 1 < argc && !strcmp(argv[i], "--dtypes")) {
      char a[3][8] = {{0}};
      const char *arg = argv[++i];
      if (sscanf(arg, "%7[^,],%7[^,],%7s", a[0], a[1], a[2]) != 3) {
        fprintf(stderr, "--dtypes wants Q,KV,OUT from f32, bf16, f16; got %s\n", arg);
        return 2;
      }
      for (int x = 0; x < 3; x++) {
        if (!strcmp(a[x], "f32") || !strcmp(a[x], "bf16") || !strcmp(a[x], "f16")) {
          g_dt[x] = !strcmp(a[x], "f32")    ? FATTN_F32
                    : !strcmp(a[x], "bf16") ? FATTN_BF16
                                            : FATTN_F16;
        } else {
          fprintf(stderr, "--dtypes: unknown type %s (f32, bf16, f16)\n", a[x]);
          return 2;
        }
      }
    } else if (i > 0 && i + 1 < argc && !strcmp(argv[i], "--threads")) {
      thread_list = argv[++i];
    } else if (i > 0 && i + 1 < argc && !strcmp(argv[i], "--shape")) {
      shape s = {{0}, 0, 0, 0, 0, 0, 0, 0};
      long long v[7] = {0};
      int n = sscanf(argv[++i], "%lld:%lld:%lld:%lld:%lld:%lld:%lld", &v[0], &v[1], &v[2], &v[3],
                     &v[4], &v[5], &v[6]);
      if (n < 6 || nshapes == MAX_SHAPES || v[0] < 1 || v[1] < 1 || v[2] < 1 || v[3] < 1 ||
          v[4] < 1 || v[5] < 1 || v[1] % v[2]) {
        fprintf(stderr, "--shape wants B:H:Hkv:Lq:Lk:D[:causal] with Hkv dividing H, got %s\n",
                argv[i]);
        return 2;
      }
      snprintf(s.name, sizeof s.name, "custom%d", ncustom++ % 1000);
      s.B = v[0], s.H = v[1], s.Hkv = v[2], s.Lq = v[3], s.Lk = v[4], s.D = v[5];
      s.causal = n == 7 && v[6] != 0;
      shapes[nshapes++] = s;
    } else {
      gargv[gargc++] = argv[i];
    }
  }

  fattn_runtime_info info;
  if (fattn_get_runtime_info(NULL, &info) != FATTN_SUCCESS) {
    fprintf(stderr, "fattn: %s\n", fattn_last_error());
    return 1;
  }
  char buf[256];
  cpu_model(buf, sizeof buf);
  gb_context("cpu_model", buf);
  gb_context("fattn_version", fattn_version());
  gb_context("fattn_commit", FATTN_GIT_COMMIT);
  gb_context("isa_detected", info.isa_detected);
  gb_context("isa_best", fattn_backend_name(info.isa_best));
  snprintf(buf, sizeof buf, "%d physical cores, %d logical CPUs, %d NUMA nodes",
           info.physical_cores, info.logical_cpus, info.numa_nodes);
  gb_context("cores", buf);
  snprintf(buf, sizeof buf, "L1d %lld KiB, L2 %lld KiB, L3 %lld KiB",
           (long long)info.l1d_bytes >> 10, (long long)info.l2_bytes >> 10,
           (long long)info.l3_bytes >> 10);
  gb_context("caches", buf);
  gb_context("pinning", info.notes);
  gb_context("binding", info.binding);
  gb_context("onednn", info.has_onednn ? info.onednn_version : "not built");
  {
    const char *tn = strstr(info.notes, "tiles: ");
    snprintf(buf, sizeof buf, "%s", tn ? tn + 7 : "none");
    gb_context("tiles", buf);
  }
  if (info.physical_cores > 1)
    snprintf(buf, sizeof buf, "1 and %d (all physical cores)", info.physical_cores);
  else
    snprintf(buf, sizeof buf, "1 (all physical cores)");
  gb_context("threads", thread_list ? thread_list : buf);
  gb_context("cold_inputs", "decode shapes (Lq <= 16): K/V rotated over >= 4x LLC; others warm");
  g_llc_bytes = info.l3_bytes > 0 ? info.l3_bytes : g_llc_bytes;

  static const fattn_backend order[] = {FATTN_BACKEND_AVX512, FATTN_BACKEND_AVX2,
                                        FATTN_BACKEND_NEON,   FATTN_BACKEND_ONEDNN,
                                        FATTN_BACKEND_SCALAR, FATTN_BACKEND_REFERENCE};
  /* Thread counts: --threads, else 1 and all physical cores. */
  int threads[16], nthreads = 0;
  if (thread_list) {
    for (const char *p = thread_list; p && *p && nthreads < 16;
         p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
      if (atoi(p) > 0) threads[nthreads++] = atoi(p);
  } else {
    threads[nthreads++] = 1;
    if (info.physical_cores > 1) threads[nthreads++] = info.physical_cores;
  }
  if (backward) { /* the backward pass alone */
    register_backward(threads, nthreads, bw_dtypes);
    const int rc = gb_run(gargc, gargv);
    free(gargv);
    print_backward_summary();
    return rc;
  }
  if (engine) { /* the engine benchmarks alone */
    register_engine(threads, nthreads, info.l3_bytes);
    const int rc = gb_run(gargc, gargv);
    free(gargv);
    print_engine_summary();
    return rc;
  }
  /* The machine's limits, measured now: the FMA peak of each ISA here at each
   * thread count (pct_peak divides by the one of the table that ran; the
   * scalar and oneDNN backends by the best ISA's), and read bandwidth. */
  static const char *isas[] = {"avx512", "avx2", "avx512bf16", "amx"};
  static probe probes[24];
  int nprobes = 0;
  double peaks[4][16] = {{0}};
  for (int ti = 0; ti < nthreads; ti++) {
    for (int ii = 0; ii < 4; ii++) {
      peaks[ii][ti] = peak_fma_gflops(isas[ii], threads[ti]);
      if (peaks[ii][ti] > 0 && nprobes < 24) {
        probe *p = &probes[nprobes++];
        p->isa = isas[ii];
        p->threads = threads[ti];
        snprintf(p->name, sizeof p->name, "peak/%s/threads:%d", isas[ii], threads[ti]);
        gb_register(p->name, run_probe, p);
      }
    }
    if (nprobes < 24) {
      probe *p = &probes[nprobes++];
      p->isa = NULL;
      p->threads = threads[ti];
      p->llc = info.l3_bytes;
      snprintf(p->name, sizeof p->name, "stream/threads:%d", threads[ti]);
      gb_register(p->name, run_probe, p);
    }
  }
  g_peak1[0] = peak_fma_gflops("avx512", 1);
  g_peak1[1] = peak_fma_gflops("avx2", 1);
  g_peak1[2] = peak_fma_gflops("avx512bf16", 1);
  if (!backend_list) register_ukernels(peak_of);
  /* the layers (and their GEMMs against oneDNN's matmul): by default, or with --backend layers */
  if (!backend_list || in_list(backend_list, "layers"))
    register_layers(threads, nthreads, info.isa_selected);
  for (int si = 0; si < nshapes; si++)
    for (size_t bi = 0; bi < sizeof order / sizeof order[0]; bi++) {
      const fattn_backend be = order[bi];
      const char *bn = fattn_backend_name(be);
      if (!in_list(backend_list, bn) || !backend_runs(be)) continue;
      /* The slow baselines only on the small shapes unless asked for by name. */
      const int slow = be == FATTN_BACKEND_SCALAR || be == FATTN_BACKEND_REFERENCE;
      if (!backend_list &&
          (be == FATTN_BACKEND_REFERENCE || (slow && !all && useful_flops(&shapes[si]) > 2e10)))
        continue;
      for (int ti = 0; ti < nthreads && nbenches < MAX_BENCHES; ti++) {
        bench *b = &benches[nbenches++];
        b->s = shapes[si];
        b->be = be;
        b->threads = threads[ti];
        b->peak = be == FATTN_BACKEND_AVX2 ? peaks[1][ti]
                  : peaks[0][ti] > 0       ? peaks[0][ti]
                                           : peaks[1][ti];
        if (bf16_dot_used(be, &shapes[si], peaks[2][ti])) /* harmonic: D = Dv */
          b->peak = 2.0 / (1.0 / peaks[0][ti] + 1.0 / peaks[2][ti]);
        const int tl = tiles_used(be, &shapes[si]);
        if (tl && peaks[3][ti] > 0) b->peak = peaks[3][ti];
        char dts[40] = "";
        if (g_dt[0] != FATTN_F32 || g_dt[1] != FATTN_F32 || g_dt[2] != FATTN_F32)
          snprintf(dts, sizeof dts, "/dt:%s-%s-%s", dt_name(g_dt[0]), dt_name(g_dt[1]),
                   dt_name(g_dt[2]));
        const int w = snprintf(b->name, sizeof b->name, "sdpa/%s%s/%s%s/threads:%d", bn,
                               tl ? "+tiles" : "", shapes[si].name, dts, threads[ti]);
        if (w < 0 || w >= (int)sizeof b->name) continue;
        gb_register(b->name, run_sdpa, b);
      }
    }
  const int rc = gb_run(gargc, gargv);
  free(gargv);
  print_summary();
  return rc;
}

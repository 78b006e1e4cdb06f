/* fattn_bench_mpi: fattn_sdpa_context_parallel timed under mpirun.
 *
 *   mpirun -np P fattn_bench_mpi [--shape B:H:Hkv:L:D] [--causal none|top-left]
 *       [--layout zigzag|contiguous|kv] [--dtype f32|bf16] [--kv f32|bf16|f16]
 *       [--threads T] [--reps N] [--warmup N] [--json]
 *
 * Self-attention prefill over L positions (decode with --layout kv: Lq = 1,
 * L keys sharded). Every rank builds its shard (random data), then each
 * repetition is: barrier, the call, and the slowest rank's time. Printed:
 * median / min / max over repetitions, GFLOP/s of the attended entries (the
 * causal half only), and per rank the compute and wait seconds of the median
 * repetition and the bytes it sent to the next rank. One process (-np 1) is
 * fattn_sdpa itself: the baseline of the scaling model (docs/context-parallel.md).
 * With several ranks on one machine, bind each to its own cores (Open MPI
 * binds ranks to cores by default for np <= 2; for -np 1 with 2 threads pass
 * --bind-to none). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fattn_mpi.h"
#include "half.h"

static int cmp_d(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static fattn_dtype parse_dt(const char *s) {
  if (!strcmp(s, "bf16")) return FATTN_BF16;
  if (!strcmp(s, "f16")) return FATTN_F16;
  return FATTN_F32;
}

static const char *dt_name(fattn_dtype t) {
  return t == FATTN_BF16 ? "bf16" : t == FATTN_F16 ? "f16" : "f32";
}

static void *fill(int64_t n, fattn_dtype t, uint64_t seed) {
  const int es = t == FATTN_F32 ? 4 : 2;
  void *p = malloc((size_t)n * (size_t)es);
  if (!p) return NULL;
  uint64_t s = seed;
  for (int64_t i = 0; i < n; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const float x = (float)((double)(s >> 11) / 9007199254740992.0 * 2 - 1);
    if (t == FATTN_F32)
      ((float *)p)[i] = x;
    else
      ((uint16_t *)p)[i] = t == FATTN_BF16 ? fattn__f32_to_bf16(x) : fattn__f32_to_f16(x);
  }
  return p;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int P, r;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  long long B = 1, H = 32, Hkv = 8, L = 4096, D = 128;
  fattn_causal causal = FATTN_CAUSAL_TOP_LEFT;
  fattn_cp_layout layout = FATTN_CP_ZIGZAG;
  fattn_dtype qdt = FATTN_BF16, kvdt = FATTN_BF16;
  int threads = 1, reps = 5, warmup = 1, json = 0;
  for (int a = 1; a < argc; a++) {
    const char *s = argv[a], *nx = a + 1 < argc ? argv[a + 1] : "";
    if (!strcmp(s, "--shape") && a + 1 < argc) {
      if (sscanf(nx, "%lld:%lld:%lld:%lld:%lld", &B, &H, &Hkv, &L, &D) != 5) goto usage;
      a++;
    } else if (!strcmp(s, "--causal") && a + 1 < argc) {
      causal = !strcmp(nx, "none") ? FATTN_CAUSAL_NONE : FATTN_CAUSAL_TOP_LEFT;
      a++;
    } else if (!strcmp(s, "--layout") && a + 1 < argc) {
      layout = !strcmp(nx, "contiguous") ? FATTN_CP_CONTIGUOUS
               : !strcmp(nx, "kv")       ? FATTN_CP_KV_SHARDED
                                         : FATTN_CP_ZIGZAG;
      a++;
    } else if (!strcmp(s, "--dtype") && a + 1 < argc) {
      qdt = parse_dt(nx), a++;
    } else if (!strcmp(s, "--kv") && a + 1 < argc) {
      kvdt = parse_dt(nx), a++;
    } else if (!strcmp(s, "--threads") && a + 1 < argc) {
      threads = atoi(nx), a++;
    } else if (!strcmp(s, "--reps") && a + 1 < argc) {
      reps = atoi(nx), a++;
    } else if (!strcmp(s, "--warmup") && a + 1 < argc) {
      warmup = atoi(nx), a++;
    } else if (!strcmp(s, "--json")) {
      json = 1;
    } else {
      goto usage;
    }
  }
  if (reps < 1 || threads < 1) goto usage;

  /* this rank's shard */
  const int dec = layout == FATTN_CP_KV_SHARDED;
  int64_t qst[2], qln[2], kst[2], kln[2];
  if (fattn_cp_shard(dec ? FATTN_CP_CONTIGUOUS : layout, L, P, r, kst, kln) != FATTN_SUCCESS) {
    if (r == 0) fprintf(stderr, "fattn_bench_mpi: %s\n", fattn_last_error());
    MPI_Finalize();
    return 2;
  }
  if (dec) {
    qst[0] = L - 1, qln[0] = 1, qln[1] = 0, qst[1] = 0;
  } else {
    fattn_cp_shard(layout, L, P, r, qst, qln);
  }
  const int64_t nq = qln[0] + qln[1], nk = kln[0] + kln[1];
  void *q = fill(B * H * nq * D, qdt, 11 + (uint64_t)r);
  void *k = fill(B * Hkv * nk * D, kvdt, 101 + (uint64_t)r);
  void *v = fill(B * Hkv * nk * D, kvdt, 1001 + (uint64_t)r);
  void *o = calloc((size_t)(B * H * nq * D), qdt == FATTN_F32 ? 4 : 2);
  if (!q || !k || !v || !o) {
    fprintf(stderr, "rank %d: out of memory\n", r);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  fattn_tensor tq = fattn_tensor_contiguous(q, qdt, B, H, nq, D);
  fattn_tensor tk = fattn_tensor_contiguous(k, kvdt, B, Hkv, nk, D);
  fattn_tensor tv = fattn_tensor_contiguous(v, kvdt, B, Hkv, nk, D);
  fattn_tensor to = fattn_tensor_contiguous(o, qdt, B, H, nq, D);
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  /* decode: the query is the last position; bottom-right sees every key */
  p.causal = dec ? FATTN_CAUSAL_BOTTOM_RIGHT : causal;
  fattn_context_options co;
  fattn_context_options_init(&co);
  co.num_threads = threads;
  fattn_context *ctx;
  if (fattn_context_create(&co, &ctx) != FATTN_SUCCESS) {
    fprintf(stderr, "rank %d: %s\n", r, fattn_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  fattn_runtime_info info;
  fattn_get_runtime_info(ctx, &info);

  double *t = malloc(sizeof(double) * (size_t)reps);
  fattn_cp_stats *sts = malloc(sizeof(fattn_cp_stats) * (size_t)reps);
  for (int x = -warmup; x < reps; x++) {
    fattn_cp_stats st;
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    const fattn_status s =
        fattn_sdpa_context_parallel(ctx, MPI_COMM_WORLD, layout, &tq, &tk, &tv, &to, &p, &st);
    double dt = MPI_Wtime() - t0, mx;
    if (s != FATTN_SUCCESS) {
      fprintf(stderr, "rank %d: %s\n", r, fattn_last_error());
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Allreduce(&dt, &mx, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (x >= 0) t[x] = mx, sts[x] = st;
  }
  double *sorted = malloc(sizeof(double) * (size_t)reps);
  memcpy(sorted, t, sizeof(double) * (size_t)reps);
  qsort(sorted, (size_t)reps, sizeof(double), cmp_d);
  const double med = sorted[reps / 2];
  int mi = 0;
  for (int x = 0; x < reps; x++)
    if (t[x] == med) mi = x;
  /* attended entries: causal top-left L(L+1)/2 per head, else L·L; decode L */
  const double ent = dec                           ? (double)L
                     : causal == FATTN_CAUSAL_NONE ? (double)L * (double)L
                                                   : (double)L * (double)(L + 1) / 2;
  const double flop = 4.0 * (double)B * (double)H * (double)D * ent;
  double mine[5] = {sts[mi].compute_seconds, sts[mi].wait_seconds, (double)sts[mi].bytes_sent,
                    (double)sts[mi].pieces_computed, sts[mi].merge_seconds};
  double *all = r == 0 ? malloc(sizeof(double) * 5 * (size_t)P) : NULL;
  MPI_Gather(mine, 5, MPI_DOUBLE, all, 5, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (r == 0) {
    const char *lay = dec ? "kv" : layout == FATTN_CP_ZIGZAG ? "zigzag" : "contiguous";
    if (json) {
      printf("{\"ranks\": %d, \"threads\": %d, \"shape\": \"%lld:%lld:%lld:%lld:%lld\", "
             "\"layout\": \"%s\", \"causal\": \"%s\", \"q\": \"%s\", \"kv\": \"%s\", "
             "\"median_s\": %.6g, \"min_s\": %.6g, \"max_s\": %.6g, \"gflops\": %.4g, "
             "\"ranks_detail\": [",
             P, threads, B, H, Hkv, L, D, lay, causal == FATTN_CAUSAL_NONE ? "none" : "top-left",
             dt_name(qdt), dt_name(kvdt), med, sorted[0], sorted[reps - 1], flop / med * 1e-9);
      for (int x = 0; x < P; x++)
        printf("%s{\"compute_s\": %.6g, \"merge_s\": %.6g, \"wait_s\": %.6g, \"bytes_sent\": "
               "%.0f, \"pieces\": %.0f}",
               x ? ", " : "", all[5 * x], all[5 * x + 4], all[5 * x + 1], all[5 * x + 2],
               all[5 * x + 3]);
      printf("]}\n");
    } else {
      printf("fattn_bench_mpi: fattn %s, %d ranks x %d threads (rank 0: %s; isa %s)\n",
             fattn_version(), P, threads, info.binding, info.isa_detected);
      printf("  shape B:H:Hkv:L:D %lld:%lld:%lld:%lld:%lld, %s, layout %s, q %s, K/V %s\n", B, H,
             Hkv, L, D,
             dec                           ? "decode (1 query)"
             : causal == FATTN_CAUSAL_NONE ? "no mask"
                                           : "causal",
             lay, dt_name(qdt), dt_name(kvdt));
      printf("  time: median %.4f s (min %.4f, max %.4f, %d reps): %.1f GFLOP/s\n", med, sorted[0],
             sorted[reps - 1], reps, flop / med * 1e-9);
      for (int x = 0; x < P; x++)
        printf("  rank %d: compute %.4f s (merge %.4f), wait %.4f s, sent %.1f MiB, %d fattn_sdpa "
               "calls\n",
               x, all[5 * x], all[5 * x + 4], all[5 * x + 1], all[5 * x + 2] / 1048576.0,
               (int)all[5 * x + 3]);
    }
  }
  free(all), free(t), free(sts), free(sorted);
  free(q), free(k), free(v), free(o);
  fattn_context_destroy(ctx);
  MPI_Finalize();
  return 0;
usage:
  if (r == 0)
    fprintf(stderr, "usage: mpirun -np P fattn_bench_mpi [--shape B:H:Hkv:L:D] [--causal "
                    "none|top-left] [--layout zigzag|contiguous|kv] [--dtype f32|bf16] [--kv "
                    "f32|bf16|f16] [--threads T] [--reps N] [--warmup N] [--json]\n");
  MPI_Finalize();
  return 2;
}

/* The backward pass (fattn_bench --backward): fattn_sdpa_backward against
 * fattn_sdpa on the same shape, dtype and threads. Names
 * "backward/<fwd|bwd>/<shape>/dt:<f32|bf16>/threads:N"; the summary gives
 * each shape's backward / forward time (target <= 2.5) and GFLOP/s of the
 * backward's five products (2.5x the forward's useful FLOPs). PyTorch's
 * backward on the same shapes: bench/backward_peers.py, which runs this. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_backward.h"
#include "fattn.h"
#include "gbench_shim.h"

typedef struct bw_shape {
  const char *name;
  int64_t B, H, Hkv, L, D;
  int causal;
} bw_shape;

/* P2, P3, L1 of the forward's list (self-attention, Lq = Lk) */
static const bw_shape g_shapes[] = {
    {"P2", 4, 12, 12, 512, 64, 0},
    {"P3", 1, 32, 32, 2048, 128, 1},
    {"L1", 1, 32, 8, 1024, 128, 1},
};
#define NSH (int)(sizeof g_shapes / sizeof g_shapes[0])

typedef struct bw_bench {
  const bw_shape *s;
  fattn_dtype dt;
  int threads, backward;
  char name[96];
  double ms[32];
  int nrep;
} bw_bench;

static bw_bench g_b[NSH * 2 * 2 * 16];
static int g_nb;

static double fwd_flops(const bw_shape *s) {
  const double pairs =
      s->causal ? (double)s->L * (double)(s->L + 1) / 2 : (double)s->L * (double)s->L;
  return 4.0 * (double)(s->B * s->H) * pairs * (double)s->D;
}

static void run(gb_state *st, void *arg) {
  bw_bench *b = arg;
  const bw_shape *s = b->s;
  const int64_t nq = s->B * s->H * s->L * s->D, nk = s->B * s->Hkv * s->L * s->D;
  void *q = random_buffer(nq, 1, b->dt), *k = random_buffer(nk, 2, b->dt),
       *v = random_buffer(nk, 3, b->dt);
  void *o = random_buffer(nq, 4, b->dt), *dout = random_buffer(nq, 5, b->dt),
       *dq = random_buffer(nq, 6, b->dt);
  void *dk = random_buffer(nk, 7, b->dt), *dv = random_buffer(nk, 8, b->dt);
  float *lse = malloc((size_t)(s->B * s->H * s->L) * sizeof(float));
  fattn_context *ctx = NULL;
  fattn_context_options opt;
  fattn_context_options_init(&opt);
  opt.num_threads = b->threads;
  if (!q || !k || !v || !o || !dout || !dq || !dk || !dv || !lse ||
      fattn_context_create(&opt, &ctx) != FATTN_SUCCESS) {
    gb_skip(st, "out of memory or no context");
    goto done;
  }
  fattn_tensor tq = fattn_tensor_contiguous(q, b->dt, s->B, s->H, s->L, s->D);
  fattn_tensor tk = fattn_tensor_contiguous(k, b->dt, s->B, s->Hkv, s->L, s->D);
  fattn_tensor tv = fattn_tensor_contiguous(v, b->dt, s->B, s->Hkv, s->L, s->D);
  fattn_tensor to = fattn_tensor_contiguous(o, b->dt, s->B, s->H, s->L, s->D);
  fattn_tensor tdo = fattn_tensor_contiguous(dout, b->dt, s->B, s->H, s->L, s->D);
  fattn_tensor tdq = fattn_tensor_contiguous(dq, b->dt, s->B, s->H, s->L, s->D);
  fattn_tensor tdk = fattn_tensor_contiguous(dk, b->dt, s->B, s->Hkv, s->L, s->D);
  fattn_tensor tdv = fattn_tensor_contiguous(dv, b->dt, s->B, s->Hkv, s->L, s->D);
  fattn_tensor tl = fattn_tensor_contiguous(lse, FATTN_F32, s->B, s->H, s->L, 1);
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.causal = s->causal ? FATTN_CAUSAL_TOP_LEFT : FATTN_CAUSAL_NONE;
  p.lse = &tl;
  if (fattn_sdpa(ctx, &tq, &tk, &tv, &to, &p) != FATTN_SUCCESS ||
      fattn_sdpa_backward(ctx, &tq, &tk, &tv, &to, &tdo, &tl, &tdq, &tdk, &tdv, &p) !=
          FATTN_SUCCESS) {
    gb_skip(st, fattn_last_error());
    goto done;
  }
  int64_t iters = 0;
  const double t0 = bench_now();
  while (gb_keep_running(st)) {
    if (b->backward)
      fattn_sdpa_backward(ctx, &tq, &tk, &tv, &to, &tdo, &tl, &tdq, &tdk, &tdv, &p);
    else
      fattn_sdpa(ctx, &tq, &tk, &tv, &to, &p);
    iters++;
  }
  const double secs = bench_now() - t0;
  if (iters > 0 && secs > 0) {
    const double ms = 1e3 * secs / (double)iters;
    const double fl = fwd_flops(s) * (b->backward ? 2.5 : 1.0);
    gb_counter(st, "GFLOPS", fl / (ms * 1e-3) / 1e9, 0);
    if (b->nrep < 32) b->ms[b->nrep++] = ms;
  }
done:
  fattn_context_destroy(ctx);
  free(q), free(k), free(v), free(o), free(dout), free(dq), free(dk), free(dv), free(lse);
}

void register_backward(const int *threads, int nthreads, const char *dtypes) {
  for (int si = 0; si < NSH; si++)
    for (int di = 0; di < 2; di++) {
      const fattn_dtype dt = di ? FATTN_BF16 : FATTN_F32;
      if (dtypes && !strstr(dtypes, di ? "bf16" : "f32")) continue;
      for (int ti = 0; ti < nthreads; ti++)
        for (int bw = 0; bw < 2; bw++) {
          bw_bench *b = &g_b[g_nb++];
          b->s = &g_shapes[si];
          b->dt = dt;
          b->threads = threads[ti];
          b->backward = bw;
          snprintf(b->name, sizeof b->name, "backward/%s/%s/dt:%s/threads:%d", bw ? "bwd" : "fwd",
                   g_shapes[si].name, di ? "bf16" : "f32", threads[ti]);
          gb_register(b->name, run, b);
        }
    }
}

static double median(const bw_bench *b) {
  double s[32];
  memcpy(s, b->ms, sizeof s);
  for (int i = 1; i < b->nrep; i++)
    for (int j = i; j > 0 && s[j] < s[j - 1]; j--) {
      const double t = s[j];
      s[j] = s[j - 1], s[j - 1] = t;
    }
  return b->nrep ? s[b->nrep / 2] : 0;
}

void print_backward_summary(void) {
  printf("\nbackward pass (median of repetitions; target: backward <= 2.5x forward)\n");
  printf("  %-4s %-5s %7s %12s %12s %8s %12s\n", "shape", "dtype", "threads", "forward ms",
         "backward ms", "bwd/fwd", "bwd GFLOP/s");
  for (int x = 0; x + 1 < g_nb; x += 2) {
    const bw_bench *f = &g_b[x], *b = &g_b[x + 1];
    if (!f->nrep || !b->nrep) continue;
    const double mf = median(f), mb = median(b);
    printf("  %-5s %-5s %7d %12.3f %12.3f %8.2f %12.1f\n", f->s->name,
           f->dt == FATTN_F32 ? "f32" : "bf16", f->threads, mf, mb, mb / mf,
           2.5 * fwd_flops(f->s) / (mb * 1e-3) / 1e9);
  }
}

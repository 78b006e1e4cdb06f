/* Layer benchmarks:
 *   gemm/<impl>/<shape>/threads:<n>     the layers' projections Y = X·Wᵀ + b:
 *                                       impl fattn (lib/layers/gemm.c on the best table) or
 *                                       onednn (dnnl matmul, weights reordered once to
 *                                       the layout it prefers, like fattn packs once)
 *   mha/<table>/<shape>/threads:<n>     fattn_mha_forward, projections included
 *   encoder/<table>/<shape>/threads:<n> one fattn_encoder layer (post-norm, ReLU)
 * GFLOPS counts the GEMMs' 2·M·N·K and attention's 4·B·H·Lq·Lk·hd. Shapes are
 * BERT-base's (E 768, 12 heads, F 3072, L 512, B 4: M = 2048 rows) and the
 * design's 64 tokens × 512 features, 8 heads. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(FATTN_HAVE_ONEDNN)
#include <oneapi/dnnl/dnnl.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "bench_layers.h"
#include "gbench_shim.h"
#include "internal.h"

typedef struct gemm_shape {
  const char *name;
  int64_t M, N, K;
} gemm_shape;

static const gemm_shape GEMMS[] = {{"BERT-qkv", 2048, 2304, 768},  {"BERT-out", 2048, 768, 768},
                                   {"BERT-ffn1", 2048, 3072, 768}, {"BERT-ffn2", 2048, 768, 3072},
                                   {"S64-qkv", 64, 1536, 512},     {"S64-out", 64, 512, 512},
                                   {"S64-ffn1", 64, 2048, 512},    {"S64-ffn2", 64, 512, 2048}};
#define NGEMM (int)(sizeof GEMMS / sizeof GEMMS[0])

typedef struct layer_shape {
  const char *name;
  int64_t B, L, E, H, F;
} layer_shape;

static const layer_shape LAYERS[] = {{"BERT", 4, 512, 768, 12, 3072}, {"S64", 1, 64, 512, 8, 2048}};
#define NLAYER (int)(sizeof LAYERS / sizeof LAYERS[0])

typedef struct job {
  char name[96];
  int kind; /* 0 gemm fattn, 1 gemm onednn, 2 mha, 3 encoder */
  int threads;
  fattn_backend isa;
  const gemm_shape *g;
  const layer_shape *l;
} job;

static job jobs[64];
static int njobs;

static float *rnd(int64_t n, uint64_t seed) {
  float *p = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; p && i < n; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    p[i] = (float)((double)(seed >> 40) / (double)(1ull << 24) - 0.5) * 0.1f;
  }
  return p;
}

static fattn_context *make_ctx(const job *j) {
  fattn_context_options o;
  fattn_context_options_init(&o);
  o.num_threads = j->threads;
  o.isa_cap = j->isa;
  fattn_context *c = NULL;
  return fattn_context_create(&o, &c) == FATTN_SUCCESS ? c : NULL;
}

static double layer_flops(const layer_shape *s, int encoder) {
  const double M = (double)(s->B * s->L), E = (double)s->E;
  double f =
      2 * M * E * 3 * E + 2 * M * E * E + 4.0 * (double)s->B * (double)s->L * (double)s->L * E;
  if (encoder) f += 2 * 2 * M * E * (double)s->F;
  return f;
}

#if defined(FATTN_HAVE_ONEDNN)
/* Y = X·Wᵀ + b with oneDNN's matmul: W [N, K] described as a [K, N] view
 * (strides 1, K) and reordered once into the layout the primitive asks for. */
static void run_onednn(gb_state *st, const job *j, const float *X, const float *W,
                       const float *bias, float *Y) {
  const int64_t M = j->g->M, N = j->g->N, K = j->g->K;
  dnnl_engine_t eng = NULL;
  dnnl_stream_t strm = NULL;
  dnnl_primitive_t mm = NULL, ro = NULL;
  dnnl_memory_desc_t xmd, wmd, wany, bmd, ymd, wprim;
  dnnl_memory_t xm = NULL, wm = NULL, wpm = NULL, bm = NULL, ym = NULL;
  dnnl_primitive_desc_t pd = NULL, rpd = NULL;
  const dnnl_dims_t xd = {M, K}, wd = {K, N}, bd = {1, N}, yd = {M, N};
  const dnnl_dims_t ws = {1, K};
  int ok = dnnl_engine_create(&eng, dnnl_cpu, 0) == dnnl_success &&
           dnnl_stream_create(&strm, eng, dnnl_stream_default_flags) == dnnl_success;
  ok = ok && dnnl_memory_desc_init_by_tag(&xmd, 2, xd, dnnl_f32, dnnl_ab) == dnnl_success &&
       dnnl_memory_desc_init_by_strides(&wmd, 2, wd, dnnl_f32, ws) == dnnl_success &&
       dnnl_memory_desc_init_by_tag(&wany, 2, wd, dnnl_f32, dnnl_format_tag_any) == dnnl_success &&
       dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab) == dnnl_success &&
       dnnl_memory_desc_init_by_tag(&ymd, 2, yd, dnnl_f32, dnnl_ab) == dnnl_success;
  dnnl_matmul_desc_t md;
  ok = ok && dnnl_matmul_desc_init(&md, &xmd, &wany, &bmd, &ymd) == dnnl_success &&
       dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL) == dnnl_success &&
       dnnl_primitive_create(&mm, pd) == dnnl_success;
  if (ok) wprim = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  ok = ok && dnnl_memory_create(&xm, &xmd, eng, (void *)X) == dnnl_success &&
       dnnl_memory_create(&wm, &wmd, eng, (void *)W) == dnnl_success &&
       dnnl_memory_create(&wpm, &wprim, eng, DNNL_MEMORY_ALLOCATE) == dnnl_success &&
       dnnl_memory_create(&bm, &bmd, eng, (void *)bias) == dnnl_success &&
       dnnl_memory_create(&ym, &ymd, eng, Y) == dnnl_success;
  ok = ok &&
       dnnl_reorder_primitive_desc_create(&rpd, &wmd, eng, &wprim, eng, NULL) == dnnl_success &&
       dnnl_primitive_create(&ro, rpd) == dnnl_success;
  if (ok) {
    dnnl_exec_arg_t ra[] = {{DNNL_ARG_FROM, wm}, {DNNL_ARG_TO, wpm}};
    ok = dnnl_primitive_execute(ro, strm, 2, ra) == dnnl_success &&
         dnnl_stream_wait(strm) == dnnl_success;
  }
  if (!ok) {
    gb_skip(st, "oneDNN matmul setup failed");
  } else {
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wpm}, {DNNL_ARG_BIAS, bm}, {DNNL_ARG_DST, ym}};
#if defined(_OPENMP)
    omp_set_num_threads(j->threads);
#endif
    int64_t iters = 0;
    while (gb_keep_running(st)) {
      dnnl_primitive_execute(mm, strm, 4, args);
      dnnl_stream_wait(strm);
      iters++;
    }
    (void)iters;
    static int said;
    if (impl && !said++) fprintf(stderr, "oneDNN matmul implementation: %s\n", impl);
  }
  if (mm) dnnl_primitive_destroy(mm);
  if (ro) dnnl_primitive_destroy(ro);
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (rpd) dnnl_primitive_desc_destroy(rpd);
  dnnl_memory_t mems[] = {xm, wm, wpm, bm, ym};
  for (int i = 0; i < 5; i++)
    if (mems[i]) dnnl_memory_destroy(mems[i]);
  if (strm) dnnl_stream_destroy(strm);
  if (eng) dnnl_engine_destroy(eng);
}
#endif

static void run_gemm(gb_state *st, void *arg) {
  const job *j = arg;
  const int64_t M = j->g->M, N = j->g->N, K = j->g->K;
  float *X = rnd(M * K, 1), *W = rnd(N * K, 2), *b = rnd(N, 3), *Y = malloc((size_t)(M * N) * 4);
  if (!X || !W || !b || !Y) {
    gb_skip(st, "out of memory");
  } else if (j->kind == 1) {
#if defined(FATTN_HAVE_ONEDNN)
    run_onednn(st, j, X, W, b, Y);
#endif
  } else {
    fattn_context *c = make_ctx(j);
    if (!c) {
      gb_skip(st, "no context");
    } else {
      while (gb_keep_running(st))
        fattn__gemm(c, M, N, K, X, K, W, K, b, Y, N);
      fattn_context_destroy(c);
    }
  }
  gb_counter(st, "GFLOPS", 2.0 * (double)M * (double)N * (double)K / 1e9, 1);
  free(X), free(W), free(b), free(Y);
}

static void run_layer(gb_state *st, void *arg) {
  const job *j = arg;
  const layer_shape *s = j->l;
  const int64_t E = s->E, F = s->F, rows = s->B * s->L;
  float *x = rnd(rows * E, 4), *out = malloc((size_t)(rows * E) * 4);
  float *win = rnd(3 * E * E, 5), *bin = rnd(3 * E, 6), *wo = rnd(E * E, 7), *bo = rnd(E, 8);
  float *w1 = rnd(F * E, 9), *b1 = rnd(F, 10), *w2 = rnd(E * F, 11), *b2 = rnd(E, 12);
  float *ones = malloc((size_t)E * 4), *zeros = calloc((size_t)E, 4);
  for (int64_t i = 0; ones && i < E; i++)
    ones[i] = 1.0f;
  fattn_context *c = make_ctx(j);
  fattn_mha_weights mw = {win, bin, NULL, NULL, NULL, wo, bo};
  fattn_mha *m = NULL;
  fattn_encoder *enc = NULL;
  fattn_status stt;
  if (j->kind == 2) {
    fattn_mha_config mc;
    fattn_mha_config_init(&mc, E, s->H);
    mc.batch_first = 1;
    stt = fattn_mha_create(&mc, &mw, &m);
  } else {
    fattn_encoder_config ec;
    fattn_encoder_config_init(&ec, E, s->H);
    ec.dim_feedforward = F;
    ec.batch_first = 1;
    fattn_encoder_layer_weights lw = {mw, w1, b1, w2, b2, ones, zeros, ones, zeros};
    stt = fattn_encoder_create(&ec, &lw, &enc);
  }
  if (!c || stt != FATTN_SUCCESS || !x || !out || !w1 || !w2) {
    gb_skip(st, "setup failed");
  } else if (j->kind == 2) {
    fattn_mha_args a;
    fattn_mha_args_init(&a);
    a.query = a.key = a.value = x;
    a.batch = s->B, a.q_len = a.kv_len = s->L, a.out = out;
    while (gb_keep_running(st))
      fattn_mha_forward(c, m, &a);
  } else {
    fattn_encoder_args a;
    fattn_encoder_args_init(&a);
    a.src = x, a.batch = s->B, a.seq_len = s->L, a.out = out;
    while (gb_keep_running(st))
      fattn_encoder_forward(c, enc, &a);
  }
  gb_counter(st, "GFLOPS", layer_flops(s, j->kind == 3) / 1e9, 1);
  fattn_mha_destroy(m);
  fattn_encoder_destroy(enc);
  fattn_context_destroy(c);
  free(x), free(out), free(win), free(bin), free(wo), free(bo), free(w1), free(b1), free(w2),
      free(b2), free(ones), free(zeros);
}

void register_layers(const int *threads, int nthreads, fattn_backend isa) {
  const char *tn = fattn_backend_name(isa);
  for (int t = 0; t < nthreads; t++) {
    for (int g = 0; g < NGEMM; g++)
      for (int impl = 0; impl < 2 && njobs < 64; impl++) {
#if !defined(FATTN_HAVE_ONEDNN)
        if (impl == 1) continue;
#endif
        job *j = &jobs[njobs++];
        j->kind = impl, j->threads = threads[t], j->isa = isa, j->g = &GEMMS[g];
        snprintf(j->name, sizeof j->name, "gemm/%s/%s/threads:%d", impl ? "onednn" : tn,
                 GEMMS[g].name, threads[t]);
        gb_register(j->name, run_gemm, j);
      }
    for (int l = 0; l < NLAYER; l++)
      for (int kind = 2; kind <= 3 && njobs < 64; kind++) {
        job *j = &jobs[njobs++];
        j->kind = kind, j->threads = threads[t], j->isa = isa, j->l = &LAYERS[l];
        snprintf(j->name, sizeof j->name, "%s/%s/%s/threads:%d", kind == 2 ? "mha" : "encoder", tn,
                 LAYERS[l].name, threads[t]);
        gb_register(j->name, run_layer, j);
      }
  }
}

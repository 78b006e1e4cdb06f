/* Threads: output and lse are bitwise identical for 1, 2, 3 and 4 threads on
 * prefill and decode shapes, with and without split-KV (the last two shapes
 * have fewer units than the plan's split threshold, so their keys are cut into
 * chunks merged by log-sum-exp); 8 concurrent callers cycling through every
 * shape on a shared context, the default one and contexts of their own get
 * the single-threaded bits; a call from inside the
 * caller's own OpenMP parallel region works (runs on that thread).
 *
 * Pinning: runtime info reports the policy and binding applied; the calling
 * thread's CPU set is never changed; the OpenMP worker threads
 * sit on one core each afterwards; pinned and unpinned calls give the same
 * bits; OMP_PROC_BIND in the environment switches fattn's pinning off. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "harness.h"

typedef struct shape {
  const char *name;
  int64_t B, H, Hkv, Lq, Lk, D;
  fattn_causal causal;
} shape;

static const shape SHAPES[] = {
    {"prefill causal", 2, 4, 2, 130, 130, 64, FATTN_CAUSAL_TOP_LEFT},
    {"decode GQA", 3, 8, 2, 1, 1000, 64, FATTN_CAUSAL_NONE},
    {"chunked prefill", 1, 6, 3, 17, 300, 40, FATTN_CAUSAL_BOTTOM_RIGHT},
    {"decode split-KV", 1, 8, 2, 1, 3000, 64, FATTN_CAUSAL_NONE},
    {"prefill split-KV", 1, 2, 1, 40, 2100, 32, FATTN_CAUSAL_BOTTOM_RIGHT},
};
#define NSHAPES (int)(sizeof SHAPES / sizeof SHAPES[0])

typedef struct data {
  float *q, *k, *v;
  size_t nout, nlse;
} data;

static data make(const shape *s) {
  data d;
  uint64_t r = 7;
  size_t nq = (size_t)(s->B * s->H * s->Lq * s->D), nk = (size_t)(s->B * s->Hkv * s->Lk * s->D);
  d.q = malloc(nq * 4);
  d.k = malloc(nk * 4);
  d.v = malloc(nk * 4);
  for (size_t i = 0; i < nq; i++)
    d.q[i] = (float)(2 * rng_uniform(&r) - 1);
  for (size_t i = 0; i < nk; i++)
    d.k[i] = (float)(2 * rng_uniform(&r) - 1);
  for (size_t i = 0; i < nk; i++)
    d.v[i] = (float)(2 * rng_uniform(&r) - 1);
  d.nout = (size_t)(s->B * s->H * s->Lq * s->D);
  d.nlse = (size_t)(s->B * s->H * s->Lq);
  return d;
}

static fattn_status run(fattn_context *ctx, fattn_backend be, const shape *s, const data *d,
                        float *out, float *lse) {
  fattn_tensor q = fattn_tensor_contiguous(d->q, FATTN_F32, s->B, s->H, s->Lq, s->D);
  fattn_tensor k = fattn_tensor_contiguous(d->k, FATTN_F32, s->B, s->Hkv, s->Lk, s->D);
  fattn_tensor v = fattn_tensor_contiguous(d->v, FATTN_F32, s->B, s->Hkv, s->Lk, s->D);
  fattn_tensor o = fattn_tensor_contiguous(out, FATTN_F32, s->B, s->H, s->Lq, s->D);
  fattn_tensor l = fattn_tensor_contiguous(lse, FATTN_F32, s->B, s->H, s->Lq, 1);
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.causal = s->causal;
  p.lse = &l;
  p.backend = be;
  return fattn_sdpa(ctx, &q, &k, &v, &o, &p);
}

typedef struct job {
  fattn_context *ctx;
  fattn_backend be;
  int shape, reps, bad;
  const data *d;                /* all shapes */
  const float *const *want_out; /* per shape */
  const float *const *want_lse;
} job;

/* reps calls, shape after shape starting at j->shape */
static void *worker(void *arg) {
  job *j = arg;
  for (int r = 0; r < j->reps; r++) {
    const int si = (j->shape + r) % NSHAPES;
    const data *d = &j->d[si];
    float *out = malloc(d->nout * 4), *lse = malloc(d->nlse * 4);
    if (run(j->ctx, j->be, &SHAPES[si], d, out, lse) != FATTN_SUCCESS ||
        memcmp(out, j->want_out[si], d->nout * 4) || memcmp(lse, j->want_lse[si], d->nlse * 4))
      j->bad++;
    free(out);
    free(lse);
  }
  return NULL;
}

static cpu_set_t g_initial; /* the main thread's CPU set before any call */

/* Pinning checks on shape 0 (want: its 1-thread bits). */
static int check_pinning(const data *d, const float *want_out, const float *want_lse) {
  int checks = 0;
  fattn_runtime_info info;
  fattn_context_options o;
  fattn_context *ctx;
  float *out = malloc(d->nout * 4), *lse = malloc(d->nlse * 4);

  /* pin = NONE: reported so, and the same bits */
  fattn_context_options_init(&o);
  o.num_threads = 2;
  o.pin = FATTN_PIN_NONE;
  EXPECT(fattn_context_create(&o, &ctx) == FATTN_SUCCESS, "%s", fattn_last_error());
  EXPECT(fattn_get_runtime_info(ctx, &info) == FATTN_SUCCESS, "%s", fattn_last_error());
  EXPECT(info.pin == FATTN_PIN_NONE && !strcmp(info.binding, "unpinned"), "pin none: %d %s",
         (int)info.pin, info.binding);
  EXPECT(run(ctx, FATTN_BACKEND_AUTO, &SHAPES[0], d, out, lse) == FATTN_SUCCESS &&
             !memcmp(out, want_out, d->nout * 4) && !memcmp(lse, want_lse, d->nlse * 4),
         "unpinned 2-thread call differs");
  fattn_context_destroy(ctx);
  checks += 2;

  /* default policy: cores with hwloc (when nothing in the environment binds) */
  const char *bind = getenv("OMP_PROC_BIND"), *places = getenv("OMP_PLACES");
  const int env_binds = (bind && *bind && strcmp(bind, "false")) || (places && *places) ||
                        getenv("GOMP_CPU_AFFINITY") || getenv("FATTN_PIN");
  o.pin = FATTN_PIN_CORES;
  EXPECT(fattn_context_create(&o, &ctx) == FATTN_SUCCESS, "%s", fattn_last_error());
  EXPECT(fattn_get_runtime_info(ctx, &info) == FATTN_SUCCESS, "%s", fattn_last_error());
  printf("pinning: %s; binding %s\n", info.notes, info.binding);
  if (!info.has_hwloc || !info.has_openmp || env_binds) {
    EXPECT(info.pin == FATTN_PIN_NONE,
           "without hwloc or OpenMP, or with OMP binding, nothing is pinned");
    printf("pinning checks skipped: %s\n", !info.has_hwloc    ? "built without hwloc"
                                           : !info.has_openmp ? "built without OpenMP"
                                                              : "the environment binds threads");
    fattn_context_destroy(ctx);
    free(out);
    free(lse);
    return checks + 1;
  }
  EXPECT(info.pin == FATTN_PIN_CORES && !strncmp(info.binding, "t0:caller t1:cpu", 16),
         "pin cores: %d %s", (int)info.pin, info.binding);
  checks++;

  /* the caller's CPU set survives pinned calls (this one and all before) */
  cpu_set_t after;
  EXPECT(run(ctx, FATTN_BACKEND_AUTO, &SHAPES[0], d, out, lse) == FATTN_SUCCESS &&
             !memcmp(out, want_out, d->nout * 4) && !memcmp(lse, want_lse, d->nlse * 4),
         "pinned 2-thread call differs");
  pthread_getaffinity_np(pthread_self(), sizeof after, &after);
  EXPECT(CPU_EQUAL(&g_initial, &after), "the caller's CPU set changed (%d CPUs -> %d)",
         CPU_COUNT(&g_initial), CPU_COUNT(&after));
  checks += 2;
#if defined(_OPENMP)
  /* OpenMP's worker thread 1 now runs on one core: its PUs, fewer than all
   * when there are at least 2 cores */
  if (info.physical_cores >= 2) {
    int n1 = 0;
    const int per_core = info.logical_cpus / info.physical_cores;
#pragma omp parallel num_threads(2)
    if (omp_get_thread_num() == 1) {
      cpu_set_t w;
      pthread_getaffinity_np(pthread_self(), sizeof w, &w);
      n1 = CPU_COUNT(&w);
    }
    EXPECT(n1 >= 1 && n1 <= per_core, "worker thread 1 runs on %d CPUs, not one core's %d", n1,
           per_core);
    /* a caller the application confined to its last CPU: worker 1 avoids it */
    int last = -1, clash = -1;
    for (int i = 0; i < CPU_SETSIZE; i++)
      if (CPU_ISSET(i, &g_initial)) last = i;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(last, &one);
    pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    EXPECT(run(ctx, FATTN_BACKEND_AUTO, &SHAPES[0], d, out, lse) == FATTN_SUCCESS &&
               !memcmp(out, want_out, d->nout * 4),
           "call from a confined caller differs");
#pragma omp parallel num_threads(2)
    if (omp_get_thread_num() == 1) {
      cpu_set_t w;
      pthread_getaffinity_np(pthread_self(), sizeof w, &w);
      clash = CPU_ISSET(last, &w);
    }
    pthread_setaffinity_np(pthread_self(), sizeof g_initial, &g_initial);
    EXPECT(clash == 0, "caller confined to cpu %d, worker 1 pinned onto it too", last);
    checks += 3;
  }
#endif
  fattn_context_destroy(ctx);

  /* OMP_PROC_BIND set: fattn leaves binding to the OpenMP runtime */
  setenv("OMP_PROC_BIND", "close", 1);
  EXPECT(fattn_context_create(&o, &ctx) == FATTN_SUCCESS, "%s", fattn_last_error());
  EXPECT(fattn_get_runtime_info(ctx, &info) == FATTN_SUCCESS, "%s", fattn_last_error());
  EXPECT(info.pin == FATTN_PIN_NONE && strstr(info.notes, "OMP_PROC_BIND"),
         "OMP_PROC_BIND=close not respected: %s", info.notes);
  fattn_context_destroy(ctx);
  unsetenv("OMP_PROC_BIND");
  checks++;

  /* FATTN_PIN chooses the default policy; a bad value is an error */
  o.pin = FATTN_PIN_DEFAULT;
  setenv("FATTN_PIN", "numa", 1);
  EXPECT(fattn_context_create(&o, &ctx) == FATTN_SUCCESS, "%s", fattn_last_error());
  EXPECT(fattn_get_runtime_info(ctx, &info) == FATTN_SUCCESS && info.pin == FATTN_PIN_NUMA,
         "FATTN_PIN=numa gave %d", (int)info.pin);
  fattn_context_destroy(ctx);
  setenv("FATTN_PIN", "sideways", 1);
  EXPECT(fattn_context_create(&o, &ctx) == FATTN_ERROR_INVALID_ARGUMENT && !ctx,
         "FATTN_PIN=sideways accepted");
  unsetenv("FATTN_PIN");
  checks += 2;
  printf("pinning: caller untouched, workers on one core each, OMP_PROC_BIND and FATTN_PIN "
         "honoured\n");
  free(out);
  free(lse);
  return checks;
}

int main(void) {
  pthread_getaffinity_np(pthread_self(), sizeof g_initial, &g_initial);
  fattn_backend be[8];
  const int nbe = available_backends(be);
  int checks = 0;
  for (int b = 0; b < nbe; b++) {
    if (be[b] == FATTN_BACKEND_ONEDNN) continue; /* oneDNN promises no bitwise determinism */
    data d[NSHAPES];
    float *want_out[NSHAPES], *want_lse[NSHAPES];
    for (int si = 0; si < NSHAPES; si++) {
      const shape *s = &SHAPES[si];
      d[si] = make(s);
      want_out[si] = malloc(d[si].nout * 4);
      want_lse[si] = malloc(d[si].nlse * 4);
      for (int t = 1; t <= 4; t++) {
        fattn_context_options o;
        fattn_context_options_init(&o);
        o.num_threads = t;
        fattn_context *ctx;
        EXPECT(fattn_context_create(&o, &ctx) == FATTN_SUCCESS, "%s", fattn_last_error());
        float *out = t == 1 ? want_out[si] : malloc(d[si].nout * 4);
        float *lse = t == 1 ? want_lse[si] : malloc(d[si].nlse * 4);
        EXPECT(run(ctx, be[b], s, &d[si], out, lse) == FATTN_SUCCESS, "%s", fattn_last_error());
        if (t > 1) {
          EXPECT(memcmp(out, want_out[si], d[si].nout * 4) == 0 &&
                     memcmp(lse, want_lse[si], d[si].nlse * 4) == 0,
                 "%s %s: %d threads differ from 1 thread", fattn_backend_name(be[b]), s->name, t);
          free(out);
          free(lse);
        }
        fattn_context_destroy(ctx);
        checks++;
      }
      printf("%-8s %-16s bitwise identical for 1..4 threads\n", fattn_backend_name(be[b]), s->name);
    }
    /* 8 threads at once, each cycling through every shape for 12 calls: on one
     * shared context, on the default one, and on a context of their own */
    fattn_context *shared, *own[8] = {0};
    EXPECT(fattn_context_create(NULL, &shared) == FATTN_SUCCESS, "%s", fattn_last_error());
    pthread_t th[8];
    job jobs[8];
    for (int i = 0; i < 8; i++) {
      if (i % 3 == 2)
        EXPECT(fattn_context_create(NULL, &own[i]) == FATTN_SUCCESS, "%s", fattn_last_error());
      jobs[i] = (job){i % 3 == 0   ? NULL
                      : i % 3 == 1 ? shared
                                   : own[i],
                      be[b],
                      i % NSHAPES,
                      12,
                      0,
                      d,
                      (const float *const *)want_out,
                      (const float *const *)want_lse};
      pthread_create(&th[i], NULL, worker, &jobs[i]);
    }
    for (int i = 0; i < 8; i++) {
      pthread_join(th[i], NULL);
      EXPECT(jobs[i].bad == 0, "%s: concurrent caller %d got %d wrong results",
             fattn_backend_name(be[b]), i, jobs[i].bad);
      fattn_context_destroy(own[i]);
      checks++;
    }
    fattn_context_destroy(shared);
    printf("%-8s 8 concurrent callers x 12 calls over %d shapes (shared, default and own "
           "contexts): same bits\n",
           fattn_backend_name(be[b]), NSHAPES);
#if defined(_OPENMP)
    int bad = 0;
#pragma omp parallel num_threads(2) reduction(+ : bad)
    {
      job j = {
          NULL, be[b], 2, 3, 0, d, (const float *const *)want_out, (const float *const *)want_lse};
      worker(&j);
      bad += j.bad;
    }
    EXPECT(bad == 0, "%s: calls from inside an OpenMP parallel region", fattn_backend_name(be[b]));
    printf("%-8s calls from inside an OpenMP parallel region: same bits\n",
           fattn_backend_name(be[b]));
    checks++;
#endif
    for (int si = 0; si < NSHAPES; si++) {
      free(d[si].q);
      free(d[si].k);
      free(d[si].v);
      free(want_out[si]);
      free(want_lse[si]);
    }
  }
  {
    const shape *s0 = &SHAPES[0];
    data d0 = make(s0);
    float *o1 = malloc(d0.nout * 4), *l1 = malloc(d0.nlse * 4);
    fattn_context_options o;
    fattn_context_options_init(&o);
    o.num_threads = 1;
    fattn_context *c1;
    EXPECT(fattn_context_create(&o, &c1) == FATTN_SUCCESS, "%s", fattn_last_error());
    EXPECT(run(c1, FATTN_BACKEND_AUTO, s0, &d0, o1, l1) == FATTN_SUCCESS, "%s", fattn_last_error());
    fattn_context_destroy(c1);
    checks += check_pinning(&d0, o1, l1);
    free(o1);
    free(l1);
    free(d0.q);
    free(d0.k);
    free(d0.v);
  }
  printf("%d passed, %d failed\n", checks - g_failures, g_failures);
  return g_failures != 0;
}

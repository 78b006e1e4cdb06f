/* Threads: output and lse are bitwise identical for 1, 2, 3 and 4 threads on
 * prefill and decode shapes, with and without split-KV (the last two shapes
 * have fewer units than the plan's split threshold, so their keys are cut into
 * chunks merged by log-sum-exp); concurrent calls on one context and on the
 * default context give the single-threaded bits; a call from inside the
 * caller's own OpenMP parallel region works (runs on that thread). */
#include <pthread.h>
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
  const data *d;
  const float *want_out, *want_lse;
} job;

static void *worker(void *arg) {
  job *j = arg;
  const shape *s = &SHAPES[j->shape];
  float *out = malloc(j->d->nout * 4), *lse = malloc(j->d->nlse * 4);
  for (int r = 0; r < j->reps; r++) {
    if (run(j->ctx, j->be, s, j->d, out, lse) != FATTN_SUCCESS ||
        memcmp(out, j->want_out, j->d->nout * 4) || memcmp(lse, j->want_lse, j->d->nlse * 4))
      j->bad++;
  }
  free(out);
  free(lse);
  return NULL;
}

int main(void) {
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
    /* 6 threads at once: two per shape, on one shared context and on the default one */
    fattn_context *shared;
    EXPECT(fattn_context_create(NULL, &shared) == FATTN_SUCCESS, "%s", fattn_last_error());
    pthread_t th[6];
    job jobs[6];
    for (int i = 0; i < 6; i++) {
      jobs[i] = (job){
          i % 2 ? shared : NULL, be[b], i % NSHAPES, 10, 0, &d[i % NSHAPES], want_out[i % NSHAPES],
          want_lse[i % NSHAPES]};
      pthread_create(&th[i], NULL, worker, &jobs[i]);
    }
    for (int i = 0; i < 6; i++) {
      pthread_join(th[i], NULL);
      EXPECT(jobs[i].bad == 0, "%s: concurrent caller %d got %d wrong results",
             fattn_backend_name(be[b]), i, jobs[i].bad);
      checks++;
    }
    fattn_context_destroy(shared);
    printf("%-8s 6 concurrent callers x 10 calls: same bits\n", fattn_backend_name(be[b]));
#if defined(_OPENMP)
    int bad = 0;
#pragma omp parallel num_threads(2) reduction(+ : bad)
    {
      job j = {NULL, be[b], 2, 3, 0, &d[2], want_out[2], want_lse[2]};
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
  printf("%d passed, %d failed\n", checks - g_failures, g_failures);
  return g_failures != 0;
}

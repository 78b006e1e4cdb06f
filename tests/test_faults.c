/* Fault injection: every allocation fattn makes goes through lib/runtime/alloc.c,
 * whose private hook makes the n-th next one fail. For each entry point and
 * each n up to the number of allocations the call makes, the call must
 * return FATTN_ERROR_OUT_OF_MEMORY with a message, leave out and lse
 * untouched, and the next call must succeed with the right bits. Run under
 * ASan (scripts/run test --sanitize=address) LeakSanitizer also checks that
 * the failed paths leak nothing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* lib/internal.h: private, tests only */
void fattn__fault_inject(long n);
long fattn__fault_pending(void);

typedef struct prob {
  float *q, *k, *v, *out, *lse;
  size_t nq, nk, no, nl;
  int64_t B, H, Hkv, Lq, Lk, D;
  fattn_causal causal;
} prob;

static prob make(int64_t B, int64_t H, int64_t Hkv, int64_t Lq, int64_t Lk, int64_t D,
                 fattn_causal causal) {
  prob p = {0};
  p.B = B, p.H = H, p.Hkv = Hkv, p.Lq = Lq, p.Lk = Lk, p.D = D, p.causal = causal;
  p.nq = (size_t)(B * H * Lq * D), p.nk = (size_t)(B * Hkv * Lk * D);
  p.no = p.nq, p.nl = (size_t)(B * H * Lq);
  p.q = malloc(p.nq * 4), p.k = malloc(p.nk * 4), p.v = malloc(p.nk * 4);
  p.out = malloc(p.no * 4), p.lse = malloc(p.nl * 4);
  uint64_t r = 11;
  for (size_t i = 0; i < p.nq; i++)
    p.q[i] = (float)(2 * rng_uniform(&r) - 1);
  for (size_t i = 0; i < p.nk; i++)
    p.k[i] = (float)(2 * rng_uniform(&r) - 1), p.v[i] = (float)(2 * rng_uniform(&r) - 1);
  return p;
}

static void drop(prob *p) { free(p->q), free(p->k), free(p->v), free(p->out), free(p->lse); }

static fattn_status call(fattn_context *ctx, fattn_backend be, prob *p, int with_lse) {
  fattn_tensor q = fattn_tensor_contiguous(p->q, FATTN_F32, p->B, p->H, p->Lq, p->D);
  fattn_tensor k = fattn_tensor_contiguous(p->k, FATTN_F32, p->B, p->Hkv, p->Lk, p->D);
  fattn_tensor v = fattn_tensor_contiguous(p->v, FATTN_F32, p->B, p->Hkv, p->Lk, p->D);
  fattn_tensor o = fattn_tensor_contiguous(p->out, FATTN_F32, p->B, p->H, p->Lq, p->D);
  fattn_tensor l = fattn_tensor_contiguous(p->lse, FATTN_F32, p->B, p->H, p->Lq, 1);
  fattn_sdpa_params prm;
  fattn_sdpa_params_init(&prm);
  prm.causal = p->causal;
  prm.backend = be;
  if (with_lse) prm.lse = &l;
  return fattn_sdpa(ctx, &q, &k, &v, &o, &prm);
}

static int all_poison(const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &x[i], 4);
    if (u != 0x7fc0dead) return 0;
  }
  return 1;
}

static void poison(float *x, size_t n) {
  const uint32_t u = 0x7fc0dead;
  for (size_t i = 0; i < n; i++)
    memcpy(&x[i], &u, 4);
}

/* Fails allocation 1, 2, ... of `be` on p (on a fresh context each time, or
 * on ctx) until the call makes fewer allocations than that. A failed
 * allocation the library works around (the oneDNN primitive cache falls back
 * to a one-off entry) must still give the right result. Returns the faults
 * injected. */
static int sweep(const char *what, fattn_context *ctx, int fresh_ctx, fattn_backend be, prob *p,
                 const float *want) {
  const int with_lse = be != FATTN_BACKEND_ONEDNN; /* oneDNN has no lse */
  int faults = 0, absorbed = 0;
  for (long n = 1; n <= 64; n++) {
    fattn_context *c = ctx;
    if (fresh_ctx)
      EXPECT(fattn_context_create(NULL, &c) == FATTN_SUCCESS, "%s", fattn_last_error());
    poison(p->out, p->no);
    poison(p->lse, p->nl);
    fattn__fault_inject(n);
    const fattn_status st = call(c, be, p, with_lse);
    const long pending = fattn__fault_pending();
    fattn__fault_inject(0);
    if (st == FATTN_SUCCESS) {
      EXPECT(memcmp(p->out, want, p->no * 4) == 0, "%s: result differs", what);
      if (fresh_ctx) fattn_context_destroy(c);
      if (pending == 0) { /* the failure was worked around */
        faults++, absorbed++;
        continue;
      }
      /* the call makes fewer than n allocations: done */
      printf("%-40s %2d faults: %d OUT_OF_MEMORY with nothing written and the next call fine, %d "
             "worked around\n",
             what, faults, faults - absorbed, absorbed);
      return faults;
    }
    faults++;
    EXPECT(st == FATTN_ERROR_OUT_OF_MEMORY && fattn_last_error()[0], "%s: fault %ld gave %s (%s)",
           what, n, fattn_status_string(st), fattn_last_error());
    EXPECT(all_poison(p->out, p->no) && all_poison(p->lse, p->nl),
           "%s: fault %ld: out or lse written", what, n);
    /* the next call on the same context succeeds */
    EXPECT(call(c, be, p, with_lse) == FATTN_SUCCESS && memcmp(p->out, want, p->no * 4) == 0,
           "%s: the call after fault %ld failed or differs: %s", what, n, fattn_last_error());
    if (fresh_ctx) fattn_context_destroy(c);
  }
  EXPECT(0, "%s: still failing after 64 injected faults", what);
  return faults;
}

int main(void) {
  int faults = 0;
  /* context creation */
  fattn_context *c = (fattn_context *)&c;
  fattn__fault_inject(1);
  EXPECT(fattn_context_create(NULL, &c) == FATTN_ERROR_OUT_OF_MEMORY && c == NULL,
         "context_create under an allocation failure");
  fattn__fault_inject(0);
  faults++;
  printf("%-34s  1 allocation failure injected: OUT_OF_MEMORY, ctx NULL\n", "fattn_context_create");

  prob big = make(2, 4, 2, 150, 300, 64, FATTN_CAUSAL_NONE);
  { /* the default context's first workspace (before anything else uses it) */
    float *want = malloc(big.no * 4);
    fattn_context *ref;
    EXPECT(fattn_context_create(NULL, &ref) == FATTN_SUCCESS, "%s", fattn_last_error());
    EXPECT(call(ref, FATTN_BACKEND_AUTO, &big, 1) == FATTN_SUCCESS, "%s", fattn_last_error());
    fattn_context_destroy(ref);
    memcpy(want, big.out, big.no * 4);
    faults += sweep("default context", NULL, 0, FATTN_BACKEND_AUTO, &big, want);
    free(want);
  }

  fattn_backend be[8];
  const int nbe = available_backends(be);
  prob small = make(1, 4, 2, 37, 37, 32, FATTN_CAUSAL_TOP_LEFT);
  prob dec = make(1, 8, 2, 1, 3000, 64, FATTN_CAUSAL_NONE); /* split-KV: partial slots */
  prob *probs[] = {&small, &big, &dec};
  const char *names[] = {"small causal", "larger", "decode split-KV"};
  fattn_backend all[10];
  int nall = 0;
  for (int b = 0; b < nbe; b++)
    all[nall++] = be[b];
  all[nall++] = FATTN_BACKEND_REFERENCE;
  for (int b = 0; b < nall; b++) {
    fattn_context *shared;
    EXPECT(fattn_context_create(NULL, &shared) == FATTN_SUCCESS, "%s", fattn_last_error());
    for (int pi = 0; pi < 3; pi++) {
      prob *p = probs[pi];
      const int with_lse = all[b] != FATTN_BACKEND_ONEDNN;
      float *want = malloc(p->no * 4);
      fattn_context *ref;
      EXPECT(fattn_context_create(NULL, &ref) == FATTN_SUCCESS, "%s", fattn_last_error());
      EXPECT(call(ref, all[b], p, with_lse) == FATTN_SUCCESS, "%s", fattn_last_error());
      memcpy(want, p->out, p->no * 4);
      fattn_context_destroy(ref);
      char what[96];
      snprintf(what, sizeof what, "%s %s, new context", fattn_backend_name(all[b]), names[pi]);
      faults += sweep(what, NULL, 1, all[b], p, want);
      /* a context that already ran the smaller problems: its workspace grows */
      snprintf(what, sizeof what, "%s %s, growing", fattn_backend_name(all[b]), names[pi]);
      faults += sweep(what, shared, 0, all[b], p, want);
      free(want);
    }
    fattn_context_destroy(shared);
  }
  drop(&small), drop(&big), drop(&dec);
  printf("%d allocation failures injected, %d checks failed\n", faults, g_failures);
  return g_failures != 0;
}

/* fattn_sdpa_context_parallel under mpirun -np 1, 2, 3, 4 (one machine):
 * every rank builds the same global problem, takes its shard in the layout's
 * order, and holds its rows of the result against one fattn_sdpa over the
 * global tensors (within tolerance), and against itself: bitwise for 1 and
 * 2 threads per rank and from run to run; with one rank bitwise equal to
 * fattn_sdpa. Causal both kinds, masks (F32, U8, broadcast), kv_lens, GQA,
 * Dv != D, half K/V and outputs, window + ALiBi + softcap + sinks, odd
 * lengths not divisible by the rank count, strided shards, the decode layout.
 * Bad arguments on one rank fail on every rank with the same status and a
 * message naming it, with out and lse untouched everywhere. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fattn_mpi.h"
#include "half.h"

static int g_fail, g_rank, g_size, g_checks;

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    g_checks++;                                                                                    \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "[rank %d of %d] %s:%d: FAILED: %s: ", g_rank, g_size, __FILE__, __LINE__,   \
              #cond);                                                                              \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fprintf(stderr, "\n");                                                                       \
      g_fail++;                                                                                    \
    }                                                                                              \
  } while (0)

typedef struct cpcase {
  const char *name;
  fattn_cp_layout layout;
  int64_t B, H, Hkv, D, Dv, LqT, LkT;
  fattn_causal causal;
  int mask;      /* 0 none, 1 F32 [B, 1, ., .] with -inf, 2 U8 [1, H, ., .] */
  int kv_lens;   /* kv_lens = {LkT - 5, LkT / 2, ...} */
  int modifiers; /* window_left 11, ALiBi, softcap 2, sinks */
  int uneven;    /* CONTIGUOUS: shard lengths differ (else fattn_cp_shard) */
  int bshd;      /* the local q / out are [B, L, H, D] buffers (strides) */
  fattn_dtype qdt, kvdt, odt;
  uint64_t seed;
} cpcase;

static double uni(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(*s >> 11) / 9007199254740992.0;
}

static int esz(fattn_dtype t) { return t == FATTN_F32 ? 4 : t == FATTN_U8 ? 1 : 2; }

static void put(void *buf, int64_t e, fattn_dtype t, float x) {
  if (t == FATTN_F32) {
    ((float *)buf)[e] = x;
  } else {
    ((uint16_t *)buf)[e] = t == FATTN_BF16 ? fattn__f32_to_bf16(x) : fattn__f32_to_f16(x);
  }
}

static float get(const void *buf, int64_t e, fattn_dtype t) {
  if (t == FATTN_F32) return ((const float *)buf)[e];
  const uint16_t h = ((const uint16_t *)buf)[e];
  return t == FATTN_BF16 ? fattn__bf16_to_f32(h) : fattn__f16_to_f32(h);
}

/* Rank r's positions of a length-`total` axis, in its local order. */
static int64_t positions(const cpcase *c, int64_t total, int is_q, int r, int P, int64_t *pos) {
  fattn_cp_layout lay = c->layout;
  if (lay == FATTN_CP_KV_SHARDED && is_q) { /* every rank: all queries */
    for (int64_t i = 0; i < total; i++)
      pos[i] = i;
    return total;
  }
  if (lay == FATTN_CP_CONTIGUOUS && c->uneven && P > 1) {
    /* lengths growing with the rank: 1, 1 + 2u, ... summing to total */
    int64_t w = 0, start = 0, len = 0;
    for (int x = 0; x < P; x++)
      w += x + 1;
    for (int x = 0; x <= r; x++) {
      start += len;
      len = x + 1 < P ? total * (x + 1) / w : total - start;
    }
    for (int64_t i = 0; i < len; i++)
      pos[i] = start + i;
    return len;
  }
  int64_t st[2], ln[2];
  if (fattn_cp_shard(lay == FATTN_CP_KV_SHARDED ? FATTN_CP_CONTIGUOUS : lay, total, P, r, st, ln) !=
      FATTN_SUCCESS)
    return -1;
  int64_t n = 0;
  for (int p = 0; p < 2; p++)
    for (int64_t i = 0; i < ln[p]; i++)
      pos[n++] = st[p] + i;
  return n;
}

typedef struct problem {
  /* global, as the dtype's values in f32 buffers of the dtype */
  void *q, *k, *v;
  void *mask;
  int32_t kvl[4];
  float slopes[16], sinks[16];
  /* this rank's shard */
  int64_t nq, nk, qpos[4096], kpos[4096];
  void *lq, *lk, *lv, *lmask, *lout, *llse;
  fattn_tensor tq, tk, tv, to, tm, tl;
  fattn_sdpa_params p;
} problem;

static void build(const cpcase *c, int r, int P, problem *w) {
  memset(w, 0, sizeof *w);
  uint64_t s = c->seed;
  const int64_t B = c->B, H = c->H, Hkv = c->Hkv, D = c->D, Dv = c->Dv, Lq = c->LqT, Lk = c->LkT;
  w->q = calloc((size_t)(B * H * Lq * D), 4);
  w->k = calloc((size_t)(B * Hkv * Lk * D), 4);
  w->v = calloc((size_t)(B * Hkv * Lk * Dv), 4);
  for (int64_t e = 0; e < B * H * Lq * D; e++)
    put(w->q, e, c->qdt, (float)(2 * uni(&s) - 1));
  for (int64_t e = 0; e < B * Hkv * Lk * D; e++)
    put(w->k, e, c->kvdt, (float)(2 * uni(&s) - 1));
  for (int64_t e = 0; e < B * Hkv * Lk * Dv; e++)
    put(w->v, e, c->kvdt, (float)(2 * uni(&s) - 1));
  for (int h = 0; h < 16; h++)
    w->slopes[h] = (float)(0.02 + 0.2 * uni(&s)), w->sinks[h] = (float)(2 * uni(&s) - 1);
  for (int b = 0; b < 4; b++)
    w->kvl[b] = (int32_t)(b % 2 ? Lk / 2 : Lk - 5);
  const int64_t md0 = c->mask == 1 ? B : 1, md1 = c->mask == 2 ? H : 1;
  if (c->mask) {
    w->mask = calloc((size_t)(md0 * md1 * Lq * Lk), 4);
    for (int64_t e = 0; e < md0 * md1 * Lq * Lk; e++) {
      const double u = uni(&s);
      if (c->mask == 1)
        ((float *)w->mask)[e] = u < 0.15 ? -INFINITY : (float)(u - 0.5);
      else
        ((uint8_t *)w->mask)[e] = u >= 0.2;
    }
  }
  /* the shard, in local order */
  w->nq = positions(c, Lq, 1, r, P, w->qpos);
  w->nk = positions(c, Lk, 0, r, P, w->kpos);
  const int64_t nq = w->nq, nk = w->nk;
  const int qe = esz(c->qdt), ke = esz(c->kvdt), oe = esz(c->odt);
  w->lq = calloc((size_t)(B * H * nq * D), (size_t)qe);
  w->lk = calloc((size_t)(B * Hkv * nk * D), (size_t)ke);
  w->lv = calloc((size_t)(B * Hkv * nk * Dv), (size_t)ke);
  w->lout = calloc((size_t)(B * H * nq * Dv), (size_t)oe);
  w->llse = calloc((size_t)(B * H * nq), 4);
  /* q / out: BHSD or BSHD; k / v: BHSD */
  const int64_t qs[4] = {H * nq * D, c->bshd ? D : nq * D, c->bshd ? H * D : D, 1};
  const int64_t os[4] = {H * nq * Dv, c->bshd ? Dv : nq * Dv, c->bshd ? H * Dv : Dv, 1};
  w->tq = (fattn_tensor){w->lq, c->qdt, {B, H, nq, D}, {qs[0], qs[1], qs[2], qs[3]}};
  w->to = (fattn_tensor){w->lout, c->odt, {B, H, nq, Dv}, {os[0], os[1], os[2], os[3]}};
  w->tk = fattn_tensor_contiguous(w->lk, c->kvdt, B, Hkv, nk, D);
  w->tv = fattn_tensor_contiguous(w->lv, c->kvdt, B, Hkv, nk, Dv);
  w->tl = fattn_tensor_contiguous(w->llse, FATTN_F32, B, H, nq, 1);
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < nq; i++)
        for (int64_t x = 0; x < D; x++) {
          const float val = get(w->q, ((b * H + h) * Lq + w->qpos[i]) * D + x, c->qdt);
          put(w->lq, b * qs[0] + h * qs[1] + i * qs[2] + x, c->qdt, val);
        }
    for (int64_t h = 0; h < Hkv; h++)
      for (int64_t j = 0; j < nk; j++) {
        for (int64_t x = 0; x < D; x++)
          put(w->lk, ((b * Hkv + h) * nk + j) * D + x, c->kvdt,
              get(w->k, ((b * Hkv + h) * Lk + w->kpos[j]) * D + x, c->kvdt));
        for (int64_t x = 0; x < Dv; x++)
          put(w->lv, ((b * Hkv + h) * nk + j) * Dv + x, c->kvdt,
              get(w->v, ((b * Hkv + h) * Lk + w->kpos[j]) * Dv + x, c->kvdt));
      }
  }
  for (int64_t e = 0; e < B * H * nq * Dv; e++)
    put(w->lout, e, c->odt, 12345.0f); /* a sentinel: what a failed call must leave */
  for (int64_t e = 0; e < B * H * nq; e++)
    ((float *)w->llse)[e] = 777.0f;
  fattn_sdpa_params_init(&w->p);
  w->p.causal = c->causal;
  w->p.lse = &w->tl;
  if (c->mask) {
    const fattn_dtype mt = c->mask == 1 ? FATTN_F32 : FATTN_U8;
    const int me = esz(mt);
    w->lmask = calloc((size_t)(md0 * md1 * nq * Lk), (size_t)me);
    for (int64_t a = 0; a < md0 * md1; a++)
      for (int64_t i = 0; i < nq; i++)
        memcpy((char *)w->lmask + ((a * nq + i) * Lk) * me,
               (char *)w->mask + ((a * Lq + w->qpos[i]) * Lk) * me, (size_t)(Lk * me));
    w->tm = fattn_tensor_contiguous(w->lmask, mt, md0, md1, nq, Lk);
    w->p.attn_mask = &w->tm;
  }
  if (c->kv_lens) w->p.kv_lens = w->kvl;
  if (c->modifiers) {
    w->p.window_left = 11;
    w->p.alibi_slopes = w->slopes;
    w->p.softcap = 2.0f;
    w->p.sinks = w->sinks;
  }
}

static void unbuild(problem *w) {
  free(w->q), free(w->k), free(w->v), free(w->mask);
  free(w->lq), free(w->lk), free(w->lv), free(w->lmask), free(w->lout), free(w->llse);
}

/* One fattn_sdpa over the global tensors (same dtypes, masks, parameters):
 * out as f32 [B, H, LqT, Dv] rounded to out's dtype, lse [B, H, LqT]. */
static int global_sdpa(const cpcase *c, const problem *w, fattn_context *ctx, float *o, float *l) {
  const int64_t B = c->B, H = c->H, Lq = c->LqT, Lk = c->LkT;
  void *ob = calloc((size_t)(B * H * Lq * c->Dv), (size_t)esz(c->odt));
  fattn_tensor tq = fattn_tensor_contiguous(w->q, c->qdt, B, H, Lq, c->D);
  fattn_tensor tk = fattn_tensor_contiguous(w->k, c->kvdt, B, c->Hkv, Lk, c->D);
  fattn_tensor tv = fattn_tensor_contiguous(w->v, c->kvdt, B, c->Hkv, Lk, c->Dv);
  fattn_tensor to = fattn_tensor_contiguous(ob, c->odt, B, H, Lq, c->Dv);
  fattn_tensor tl = fattn_tensor_contiguous(l, FATTN_F32, B, H, Lq, 1);
  fattn_tensor tm;
  fattn_sdpa_params p = w->p;
  p.lse = &tl;
  if (c->mask) {
    tm = fattn_tensor_contiguous(w->mask, w->tm.dtype, w->tm.dims[0], w->tm.dims[1], Lq, Lk);
    p.attn_mask = &tm;
  }
  const fattn_status st = fattn_sdpa(ctx, &tq, &tk, &tv, &to, &p);
  for (int64_t e = 0; e < B * H * Lq * c->Dv; e++)
    o[e] = get(ob, e, c->odt);
  free(ob);
  return st == FATTN_SUCCESS;
}

static void run_case(const cpcase *c, fattn_context *ctx1, fattn_context *ctx2) {
  problem w;
  build(c, g_rank, g_size, &w);
  CHECK(w.nq > 0 && w.nk > 0, "%s: shard of %lld queries, %lld keys", c->name, (long long)w.nq,
        (long long)w.nk);
  const int64_t B = c->B, H = c->H, Dv = c->Dv, nq = w.nq;
  const size_t obytes = (size_t)(B * H * nq * Dv * esz(c->odt)), lbytes = (size_t)(B * H * nq * 4);
  fattn_cp_stats stt;
  fattn_status st = fattn_sdpa_context_parallel(ctx1, MPI_COMM_WORLD, c->layout, &w.tq, &w.tk,
                                                &w.tv, &w.to, &w.p, &stt);
  CHECK(st == FATTN_SUCCESS, "%s: %s", c->name, fattn_last_error());
  if (st != FATTN_SUCCESS) {
    unbuild(&w);
    return;
  }
  void *o1 = malloc(obytes), *l1 = malloc(lbytes);
  memcpy(o1, w.lout, obytes);
  memcpy(l1, w.llse, lbytes);
  /* bitwise: 2 threads per rank (same blocks), and again 1 thread */
  st = fattn_sdpa_context_parallel(ctx2, MPI_COMM_WORLD, c->layout, &w.tq, &w.tk, &w.tv, &w.to,
                                   &w.p, NULL);
  CHECK(st == FATTN_SUCCESS && !memcmp(o1, w.lout, obytes) && !memcmp(l1, w.llse, lbytes),
        "%s: 2 threads per rank differ from 1 (%s)", c->name, fattn_status_string(st));
  st = fattn_sdpa_context_parallel(ctx1, MPI_COMM_WORLD, c->layout, &w.tq, &w.tk, &w.tv, &w.to,
                                   &w.p, NULL);
  CHECK(st == FATTN_SUCCESS && !memcmp(o1, w.lout, obytes) && !memcmp(l1, w.llse, lbytes),
        "%s: a second run differs", c->name);

  /* against one fattn_sdpa over the gathered tensors */
  float *go = malloc((size_t)(B * H * c->LqT * Dv) * 4), *gl = malloc((size_t)(B * H * c->LqT) * 4);
  CHECK(global_sdpa(c, &w, ctx1, go, gl), "%s: global fattn_sdpa: %s", c->name, fattn_last_error());
  /* f32 out: the merge's rounding (a few ulps per shard); half out: one ulp
   * of the format either side of the boundary */
  const double tol = c->odt == FATTN_F32 ? 2e-5 : c->odt == FATTN_F16 ? 2e-3 : 1.6e-2;
  double worst = 0, worst_l = 0;
  int bitwise = 1;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < nq; i++) {
        const int64_t gi = w.qpos[i];
        for (int64_t x = 0; x < Dv; x++) {
          const int64_t le = b * w.to.strides[0] + h * w.to.strides[1] + i * w.to.strides[2] + x;
          const float got = get(o1, le, c->odt), want = go[((b * H + h) * c->LqT + gi) * Dv + x];
          const double e = fabs((double)got - want) / (1 + fabs((double)want));
          if (!(e <= worst)) worst = e; /* NaN sticks */
          if (memcmp(&got, &want, 4)) bitwise = 0;
        }
        const float gotl = ((float *)l1)[(b * H + h) * nq + i],
                    wantl = gl[(b * H + h) * c->LqT + gi];
        const double el = gotl == wantl ? 0 : fabs((double)gotl - wantl) / (1 + fabs(wantl));
        if (!(el <= worst_l)) worst_l = el;
        if (memcmp(&gotl, &wantl, 4)) bitwise = 0;
      }
  CHECK(worst <= tol && worst_l <= 2e-5,
        "%s: out differs from fattn_sdpa on the gathered tensors by %.3g (tolerance %.3g), lse by "
        "%.3g",
        c->name, worst, tol, worst_l);
  if (g_size == 1) CHECK(bitwise, "%s: one rank is not fattn_sdpa bit for bit", c->name);
  if (g_rank == 0)
    printf("  %-34s P=%d: worst rel err %.2e (out), %.2e (lse); %d pieces computed, %d skipped%s\n",
           c->name, g_size, worst, worst_l, stt.pieces_computed, stt.pieces_skipped,
           g_size == 1 ? ", bitwise = fattn_sdpa" : "");
  free(go), free(gl), free(o1), free(l1);
  unbuild(&w);
}

/* A bad argument on one rank (the last): every rank fails alike, nothing written. */
typedef void (*spoil_fn)(problem *w);
static void spoil_d(problem *w) { w->tq.dims[3] -= 1, w->tk.dims[3] -= 1; }
static void spoil_causal(problem *w) { w->p.causal = FATTN_CAUSAL_BOTTOM_RIGHT; }
static void spoil_scale(problem *w) { w->p.scale = 0.3f; }
static void spoil_null(problem *w) { w->p.attn_mask = NULL, w->tv.data = NULL; }
static void spoil_len(problem *w) { w->tq.dims[2] -= 1, w->to.dims[2] -= 1, w->tl.dims[2] -= 1; }
static void spoil_mask(problem *w) { w->tm.dims[3] -= 1; }
static void spoil_stride(problem *w) { w->to.strides[2] = 0; }
static void spoil_kvl(problem *w) { w->kvl[0] = 1000000; }
static void spoil_backend(problem *w) { w->p.backend = FATTN_BACKEND_ONEDNN; }

/* The message names the spoiled rank (rank 0 when all are), or holds `tag`. */
static void bad_case_tag(const char *what, fattn_cp_layout layout, int mask, spoil_fn f,
                         fattn_status want, int all_ranks, const char *tag) {
  cpcase c = {what, layout, 2, 4, 2, 16,        16,        37,        41, FATTN_CAUSAL_TOP_LEFT,
              mask, 1,      0, 0, 0, FATTN_F32, FATTN_F32, FATTN_F32, 99};
  problem w;
  build(&c, g_rank, g_size, &w);
  if (all_ranks || g_rank == g_size - 1) f(&w);
  const int64_t nout = c.B * c.H * w.nq * c.Dv;
  const fattn_status st = fattn_sdpa_context_parallel(NULL, MPI_COMM_WORLD, layout, &w.tq, &w.tk,
                                                      &w.tv, &w.to, &w.p, NULL);
  int untouched = 1;
  for (int64_t e = 0; e < nout; e++)
    if (((float *)w.lout)[e] != 12345.0f) untouched = 0;
  for (int64_t e = 0; e < c.B * c.H * w.nq; e++)
    if (((float *)w.llse)[e] != 777.0f) untouched = 0;
  const char *msg = fattn_last_error();
  char rank_tag[32];
  snprintf(rank_tag, sizeof rank_tag, "%s", tag ? tag : "rank ");
  if (!tag) snprintf(rank_tag, sizeof rank_tag, "rank %d", all_ranks ? 0 : g_size - 1);
  CHECK(st == want, "%s: status %s, want %s (%s)", what, fattn_status_string(st),
        fattn_status_string(want), msg);
  CHECK(untouched, "%s: out or lse written on a failed call", what);
  CHECK(g_size == 1 || strstr(msg, rank_tag), "%s: message \"%s\" does not name %s", what, msg,
        rank_tag);
  if (g_rank == 0 && g_size > 1) printf("  bad %-30s -> %s\n", what, msg);
  unbuild(&w);
}

static void bad_case(const char *what, fattn_cp_layout layout, int mask, spoil_fn f,
                     fattn_status want, int all_ranks) {
  bad_case_tag(what, layout, mask, f, want, all_ranks, NULL);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  fattn_context_options o;
  fattn_context *ctx1, *ctx2, *ctxs, *ctxs2;
  fattn_context_options_init(&o);
  o.num_threads = 1;
  o.pin = FATTN_PIN_NONE; /* several ranks share the machine's cores */
  fattn_context_create(&o, &ctx1);
  o.num_threads = 2;
  fattn_context_create(&o, &ctx2);
  o.num_threads = 1;
  o.block_keys = 16, o.block_queries = 8; /* small blocks: many tiles per piece */
  fattn_context_create(&o, &ctxs);
  o.num_threads = 2;
  fattn_context_create(&o, &ctxs2);

  const fattn_cp_layout C = FATTN_CP_CONTIGUOUS, Z = FATTN_CP_ZIGZAG, K = FATTN_CP_KV_SHARDED;
  const fattn_causal N = FATTN_CAUSAL_NONE, TL = FATTN_CAUSAL_TOP_LEFT,
                     BR = FATTN_CAUSAL_BOTTOM_RIGHT;
  const fattn_dtype F = FATTN_F32, BF = FATTN_BF16, H = FATTN_F16;
  const cpcase cases[] = {
      {"contiguous, no mask", C, 2, 4, 2, 32, 32, 53, 53, N, 0, 0, 0, 0, 0, F, F, F, 1},
      {"contiguous uneven, top-left", C, 2, 4, 2, 32, 32, 53, 53, TL, 0, 0, 0, 1, 0, F, F, F, 2},
      {"contiguous, bottom-right prefix", C, 1, 4, 4, 24, 40, 30, 91, BR, 0, 0, 0, 0, 1, F, F, F,
       3},
      {"zigzag, top-left", Z, 2, 4, 2, 32, 32, 61, 61, TL, 0, 0, 0, 0, 0, F, F, F, 4},
      {"zigzag, bottom-right Lq != Lk", Z, 1, 8, 2, 16, 16, 40, 70, BR, 0, 0, 0, 0, 1, F, F, F, 5},
      {"zigzag, F32 mask + kv_lens", Z, 2, 4, 2, 16, 16, 45, 45, TL, 1, 1, 0, 0, 0, F, F, F, 6},
      {"contiguous, U8 mask per head", C, 2, 4, 1, 16, 16, 29, 50, N, 2, 0, 0, 1, 0, F, F, F, 7},
      {"zigzag, bf16 K/V, GQA 4", Z, 1, 8, 2, 64, 64, 77, 77, TL, 0, 0, 0, 0, 0, F, BF, F, 8},
      {"zigzag, all bf16", Z, 1, 4, 2, 64, 64, 64, 64, TL, 0, 0, 0, 0, 1, BF, BF, BF, 9},
      {"contiguous, f16 K/V, f16 out", C, 1, 4, 2, 32, 32, 33, 47, BR, 0, 1, 0, 1, 0, F, H, H, 10},
      {"zigzag, window+alibi+softcap+sinks", Z, 1, 4, 2, 16, 16, 50, 50, TL, 0, 0, 1, 0, 0, F, F, F,
       11},
      {"contiguous, modifiers, no causal", C, 1, 4, 2, 16, 16, 23, 31, N, 0, 0, 1, 0, 0, F, F, F,
       12},
      {"decode, kv sharded, sinks", K, 3, 8, 2, 64, 64, 1, 300, BR, 0, 0, 1, 1, 0, F, BF, F, 13},
      {"decode, kv sharded, mask", K, 2, 4, 4, 32, 32, 3, 130, N, 1, 1, 0, 0, 0, F, F, F, 14},
  };
  if (g_rank == 0)
    printf("test_mpi: %d ranks, fattn %s, %zu cases\n", g_size, fattn_version(),
           sizeof cases / sizeof cases[0]);
  for (size_t x = 0; x < sizeof cases / sizeof cases[0]; x++) {
    run_case(&cases[x], ctx1, ctx2);
    if (x % 3 == 0) run_case(&cases[x], ctxs, ctxs2); /* small blocks */
  }

  if (g_size > 1) {
    bad_case("a rank with another head_dim", C, 0, spoil_d, FATTN_ERROR_SHAPE_MISMATCH, 0);
    bad_case("a rank with another causal", Z, 0, spoil_causal, FATTN_ERROR_INVALID_ARGUMENT, 0);
    bad_case("a rank with another scale", C, 0, spoil_scale, FATTN_ERROR_INVALID_ARGUMENT, 0);
  }
  bad_case("a rank with a NULL v", C, 0, spoil_null, FATTN_ERROR_INVALID_ARGUMENT, 0);
  bad_case("a rank with a stride-0 out", C, 0, spoil_stride, FATTN_ERROR_INVALID_ARGUMENT, 0);
  if (g_size > 1) {
    /* the culprit cannot be told: its length moved the sum */
    bad_case_tag("zigzag with a rank short of a row", Z, 0, spoil_len, FATTN_ERROR_SHAPE_MISMATCH,
                 0, "do not fit the zigzag layout");
  }
  bad_case("mask not over every key", C, 1, spoil_mask, FATTN_ERROR_SHAPE_MISMATCH, 0);
  bad_case("kv_lens beyond the keys (all ranks)", Z, 0, spoil_kvl, FATTN_ERROR_INVALID_ARGUMENT, 1);
  bad_case("the oneDNN backend (all ranks)", C, 0, spoil_backend, FATTN_ERROR_UNSUPPORTED, 1);

  /* a communicator of its own: its cached buffers go with MPI_Comm_free */
  MPI_Comm dup;
  MPI_Comm_dup(MPI_COMM_WORLD, &dup);
  {
    problem w;
    build(&cases[3], g_rank, g_size, &w);
    for (int x = 0; x < 2; x++)
      CHECK(fattn_sdpa_context_parallel(ctx2, dup, cases[3].layout, &w.tq, &w.tk, &w.tv, &w.to,
                                        &w.p, NULL) == FATTN_SUCCESS,
            "on a duplicated communicator: %s", fattn_last_error());
    unbuild(&w);
  }
  MPI_Comm_free(&dup);
  fattn_cp_release(MPI_COMM_WORLD);
  fattn_cp_release(MPI_COMM_WORLD); /* again: nothing left, nothing happens */

  fattn_context_destroy(ctx1);
  fattn_context_destroy(ctx2);
  fattn_context_destroy(ctxs);
  fattn_context_destroy(ctxs2);
  int fails = 0, checks = 0;
  MPI_Allreduce(&g_fail, &fails, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(&g_checks, &checks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (g_rank == 0) printf("test_mpi: %d ranks, %d checks, %d failed\n", g_size, checks, fails);
  MPI_Finalize();
  return fails ? 1 : 0;
}

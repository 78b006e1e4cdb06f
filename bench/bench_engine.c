/* The inference-engine benchmarks (fattn_bench --engine): each target of
 * the paged / quantized / varlen / window features is a pair (or group) of
 * benchmarks run in one process, and the closing table prints their ratios.
 *
 *   engine/decode/<shape>/<kv>/threads:N   decode (Lq = 1, bottom-right causal) over a
 *        cold KV cache (rotated over > 4x LLC): kv = f32, bf16, i8 (per-token scales),
 *        e4m3 (per-head scale), dense or paged:16 / paged:128 (shuffled blocks)
 *   engine/varlen/threads:N                one varlen call: 8 causal prefills of 16..4096
 *   engine/separate/threads:N              the same 8 as separate dense calls, each with
 *                                          the faster of 1 and all threads
 *   engine/window/threads:N                64 queries at the end of 32768 keys, window 1024
 *   engine/window_dense/threads:N          the same queries over a dense 1024 + 64 keys */
#define _POSIX_C_SOURCE 200809L
#include "bench_engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fattn.h"
#include "gbench_shim.h"
#include "half.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fill(void *p, int64_t n, fattn_dtype dt, unsigned seed) {
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    const float x = (float)(seed >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
    switch (dt) {
    case FATTN_F32: ((float *)p)[i] = x; break;
    case FATTN_BF16: ((uint16_t *)p)[i] = fattn__f32_to_bf16(x); break;
    case FATTN_F16: ((uint16_t *)p)[i] = fattn__f32_to_f16(x); break;
    default: ((int8_t *)p)[i] = (int8_t)(seed >> 25); break; /* I8 / F8: any code but NaN */
    }
    uint8_t *c = (uint8_t *)p + i; /* no NaN or infinity codes */
    if (dt == FATTN_F8_E4M3 && (*c & 0x7f) == 0x7f) *c = 0x30;
    if (dt == FATTN_F8_E5M2 && (*c & 0x7c) == 0x7c) *c = 0x30;
  }
}

static size_t esz(fattn_dtype t) {
  return t == FATTN_F32 ? 4 : t == FATTN_F16 || t == FATTN_BF16 ? 2 : 1;
}

typedef struct ebench {
  char name[96];
  int kind; /* 0 decode, 1 varlen, 2 separate, 3 window, 4 window dense */
  int64_t B, H, Hkv, Lk, D;
  fattn_dtype kv;
  int64_t page; /* 0 dense */
  int hnd;      /* paged pool [num_blocks, Hkv, block_size, D] (else vLLM's NHD) */
  int threads, all_threads;
  double ms; /* median */
  double rep[32];
  int nrep;
} ebench;

#define MAX_E 64
static ebench g_e[MAX_E];
static int g_ne;
static int64_t g_llc = 32 << 20;

static void record(ebench *e, double ms) {
  if (e->nrep < 32) e->rep[e->nrep++] = ms;
  double s[32];
  memcpy(s, e->rep, sizeof s);
  for (int i = 1; i < e->nrep; i++)
    for (int j = i; j > 0 && s[j] < s[j - 1]; j--) {
      const double t = s[j];
      s[j] = s[j - 1], s[j - 1] = t;
    }
  e->ms = s[e->nrep / 2];
}

static fattn_context *make_ctx(int threads) {
  fattn_context_options o;
  fattn_context_options_init(&o);
  o.num_threads = threads;
  fattn_context *c = NULL;
  return fattn_context_create(&o, &c) == FATTN_SUCCESS ? c : NULL;
}

/* Decode over a KV cache, dense or paged, of any element type; K / V
 * rotated over copies that exceed 4x the last-level cache. */
static void run_decode(gb_state *st, void *arg) {
  ebench *e = arg;
  const int64_t B = e->B, H = e->H, Hkv = e->Hkv, Lk = e->Lk, D = e->D;
  const size_t es = esz(e->kv);
  const int64_t page = e->page ? e->page : Lk, per_seq = (Lk + page - 1) / page;
  const int64_t blocks = B * per_seq, kvn = blocks * page * Hkv * D;
  int copies = (int)(4.0 * (double)g_llc / (2.0 * (double)kvn * (double)es)) + 1;
  if (copies > 64) copies = 64;
  float *q = malloc((size_t)(B * H * D) * 4), *o = malloc((size_t)(B * H * D) * 4);
  char *k = malloc((size_t)kvn * es * (size_t)copies),
       *v = malloc((size_t)kvn * es * (size_t)copies);
  float *ks = malloc((size_t)(blocks * page * Hkv) * 4),
        *vs = malloc((size_t)(blocks * page * Hkv) * 4);
  int32_t *bt = malloc((size_t)blocks * 4), *used = malloc((size_t)B * 4);
  fattn_context *ctx = make_ctx(e->threads);
  if (!q || !o || !k || !v || !ks || !vs || !bt || !used || !ctx) {
    gb_skip(st, "out of memory");
    goto done;
  }
  fill(q, B * H * D, FATTN_F32, 1);
  fill(k, kvn * copies, e->kv, 2);
  fill(v, kvn * copies, e->kv, 3);
  for (int64_t x = 0; x < blocks * page * Hkv; x++)
    ks[x] = vs[x] = 1.0f / 127.0f;
  /* blocks in a shuffled order, as a long-running engine's pool ends up */
  unsigned seed = 7;
  for (int64_t x = 0; x < blocks; x++)
    bt[x] = (int32_t)x;
  for (int64_t x = blocks - 1; x > 0; x--) {
    seed = seed * 1664525u + 1013904223u;
    const int64_t y = (int64_t)(seed >> 8) % (x + 1);
    const int32_t t = bt[x];
    bt[x] = bt[y], bt[y] = t;
  }
  for (int64_t b = 0; b < B; b++)
    used[b] = (int32_t)Lk;
  fattn_tensor tq = fattn_tensor_contiguous(q, FATTN_F32, B, H, 1, D);
  fattn_tensor to = fattn_tensor_contiguous(o, FATTN_F32, B, H, 1, D);
  fattn_tensor tk, tv, tks, tvs;
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.causal = FATTN_CAUSAL_BOTTOM_RIGHT;
  if (e->page) { /* vLLM's [num_blocks, block_size, Hkv, D], or [num_blocks, Hkv, block_size, D] */
    tk = (fattn_tensor){k, e->kv, {blocks, Hkv, page, D}, {page * Hkv * D, D, Hkv * D, 1}};
    if (e->hnd) tk = fattn_tensor_contiguous(k, e->kv, blocks, Hkv, page, D);
    tks = (fattn_tensor){ks, FATTN_F32, {blocks, Hkv, page, 1}, {page * Hkv, 1, Hkv, 1}};
    p.block_table = bt;
    p.block_table_stride = per_seq;
    p.seqused_k = used;
  } else if (e->hnd == 2) { /* dense BSHD [B, Lk, Hkv, D]: the layout of vLLM's pool */
    tk = (fattn_tensor){k, e->kv, {B, Hkv, Lk, D}, {Lk * Hkv * D, D, Hkv * D, 1}};
    tks = fattn_tensor_contiguous(ks, FATTN_F32, B, Hkv, Lk, 1);
  } else {
    tk = fattn_tensor_contiguous(k, e->kv, B, Hkv, Lk, D);
    tks = fattn_tensor_contiguous(ks, FATTN_F32, B, Hkv, Lk, 1);
  }
  if (e->kv == FATTN_F8_E4M3 || e->kv == FATTN_F8_E5M2) /* per kv head */
    tks = (fattn_tensor){ks, FATTN_F32, {1, Hkv, 1, 1}, {0, 1, 0, 1}};
  tv = tk, tvs = tks;
  tv.data = v, tvs.data = vs;
  if (e->kv != FATTN_F32 && e->kv != FATTN_BF16 && e->kv != FATTN_F16) {
    p.k_scale = &tks;
    p.v_scale = &tvs;
  }
  if (fattn_sdpa(ctx, &tq, &tk, &tv, &to, &p) != FATTN_SUCCESS) {
    gb_skip(st, fattn_last_error());
    goto done;
  }
  int64_t it = 0;
  const double t0 = now();
  while (gb_keep_running(st)) {
    const int64_t c = it % copies;
    tk.data = k + (size_t)(c * kvn) * es;
    tv.data = v + (size_t)(c * kvn) * es;
    fattn_sdpa(ctx, &tq, &tk, &tv, &to, &p);
    it++;
  }
  const double secs = now() - t0;
  if (it > 0) {
    record(e, 1e3 * secs / (double)it);
    gb_counter(st, "GBps", 2.0 * (double)(B * Hkv * Lk * D) * (double)es * (double)it / secs / 1e9,
               0);
  }
done:
  fattn_context_destroy(ctx);
  free(q), free(o), free(k), free(v), free(ks), free(vs), free(bt), free(used);
}

/* 8 causal prefills of very different lengths: one varlen call, or 8 calls. */
static const int64_t g_lens[8] = {16, 48, 128, 300, 700, 1500, 2800, 4096};
enum { VL_H = 8, VL_HKV = 2, VL_D = 128 };

static void run_varlen(gb_state *st, void *arg) {
  ebench *e = arg;
  int64_t total = 0;
  int32_t cu[9] = {0};
  for (int b = 0; b < 8; b++)
    cu[b + 1] = cu[b] + (int32_t)g_lens[b], total += g_lens[b];
  float *q = malloc((size_t)(total * VL_H * VL_D) * 4),
        *o = malloc((size_t)(total * VL_H * VL_D) * 4);
  float *k = malloc((size_t)(total * VL_HKV * VL_D) * 4),
        *v = malloc((size_t)(total * VL_HKV * VL_D) * 4);
  fattn_context *c1 = make_ctx(1), *cn = make_ctx(e->all_threads), *ctx = make_ctx(e->threads);
  if (!q || !o || !k || !v || !c1 || !cn || !ctx) {
    gb_skip(st, "out of memory");
    goto done;
  }
  fill(q, total * VL_H * VL_D, FATTN_F32, 1);
  fill(k, total * VL_HKV * VL_D, FATTN_F32, 2);
  fill(v, total * VL_HKV * VL_D, FATTN_F32, 3);
  /* packed [total, H, D]: the separate calls use the same memory, one sequence each */
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.causal = FATTN_CAUSAL_BOTTOM_RIGHT;
  fattn_tensor tq = {q, FATTN_F32, {1, VL_H, total, VL_D}, {0, VL_D, VL_H * VL_D, 1}};
  fattn_tensor to = tq;
  to.data = o;
  fattn_tensor tk = {k, FATTN_F32, {1, VL_HKV, total, VL_D}, {0, VL_D, VL_HKV * VL_D, 1}};
  fattn_tensor tv = tk;
  tv.data = v;
  fattn_context *pick[8];
  if (e->kind == 1) {
    p.num_seqs = 8;
    p.cu_seqlens_q = p.cu_seqlens_k = cu;
    if (fattn_sdpa(ctx, &tq, &tk, &tv, &to, &p) != FATTN_SUCCESS) {
      gb_skip(st, fattn_last_error());
      goto done;
    }
  } else { /* each sequence: the faster of 1 and all threads (3 tries each) */
    for (int b = 0; b < 8; b++) {
      fattn_tensor sq = tq, so = to, sk = tk, sv = tv;
      sq.data = q + cu[b] * VL_H * VL_D, so.data = o + cu[b] * VL_H * VL_D;
      sk.data = k + cu[b] * VL_HKV * VL_D, sv.data = v + cu[b] * VL_HKV * VL_D;
      sq.dims[2] = so.dims[2] = sk.dims[2] = sv.dims[2] = g_lens[b];
      double best[2] = {1e30, 1e30};
      for (int r = 0; r < 3; r++)
        for (int x = 0; x < 2; x++) {
          const double t0 = now();
          fattn_sdpa(x ? cn : c1, &sq, &sk, &sv, &so, &p);
          const double t = now() - t0;
          if (t < best[x]) best[x] = t;
        }
      pick[b] = best[1] < best[0] ? cn : c1;
    }
  }
  int64_t it = 0;
  const double t0 = now();
  while (gb_keep_running(st)) {
    if (e->kind == 1) {
      fattn_sdpa(ctx, &tq, &tk, &tv, &to, &p);
    } else {
      for (int b = 0; b < 8; b++) {
        fattn_tensor sq = tq, so = to, sk = tk, sv = tv;
        sq.data = q + cu[b] * VL_H * VL_D, so.data = o + cu[b] * VL_H * VL_D;
        sk.data = k + cu[b] * VL_HKV * VL_D, sv.data = v + cu[b] * VL_HKV * VL_D;
        sq.dims[2] = so.dims[2] = sk.dims[2] = sv.dims[2] = g_lens[b];
        fattn_sdpa(pick[b], &sq, &sk, &sv, &so, &p);
      }
    }
    it++;
  }
  const double secs = now() - t0;
  if (it > 0) record(e, 1e3 * secs / (double)it);
done:
  fattn_context_destroy(c1);
  fattn_context_destroy(cn);
  fattn_context_destroy(ctx);
  free(q), free(o), free(k), free(v);
}

/* 64 queries at the end of a long cache: window 1024 over 32768 keys, or a
 * dense call over the 1024 + 64 keys the window covers. */
enum { W_H = 32, W_HKV = 8, W_D = 128, W_LQ = 64, W_LK = 32768, W_WIN = 1024 };

static void run_window(gb_state *st, void *arg) {
  ebench *e = arg;
  const int64_t lk = e->kind == 3 ? W_LK : W_WIN + W_LQ;
  float *q = malloc((size_t)(W_H * W_LQ * W_D) * 4), *o = malloc((size_t)(W_H * W_LQ * W_D) * 4);
  float *k = malloc((size_t)(W_HKV * lk * W_D) * 4), *v = malloc((size_t)(W_HKV * lk * W_D) * 4);
  fattn_context *ctx = make_ctx(e->threads);
  if (!q || !o || !k || !v || !ctx) {
    gb_skip(st, "out of memory");
    goto done;
  }
  fill(q, W_H * W_LQ * W_D, FATTN_F32, 1);
  fill(k, W_HKV * lk * W_D, FATTN_F32, 2);
  fill(v, W_HKV * lk * W_D, FATTN_F32, 3);
  fattn_tensor tq = fattn_tensor_contiguous(q, FATTN_F32, 1, W_H, W_LQ, W_D);
  fattn_tensor to = fattn_tensor_contiguous(o, FATTN_F32, 1, W_H, W_LQ, W_D);
  fattn_tensor tk = fattn_tensor_contiguous(k, FATTN_F32, 1, W_HKV, lk, W_D);
  fattn_tensor tv = fattn_tensor_contiguous(v, FATTN_F32, 1, W_HKV, lk, W_D);
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.causal = FATTN_CAUSAL_BOTTOM_RIGHT;
  if (e->kind == 3) p.window_left = W_WIN;
  if (fattn_sdpa(ctx, &tq, &tk, &tv, &to, &p) != FATTN_SUCCESS) {
    gb_skip(st, fattn_last_error());
    goto done;
  }
  int64_t it = 0;
  const double t0 = now();
  while (gb_keep_running(st)) {
    fattn_sdpa(ctx, &tq, &tk, &tv, &to, &p);
    it++;
  }
  const double secs = now() - t0;
  if (it > 0) record(e, 1e3 * secs / (double)it);
done:
  fattn_context_destroy(ctx);
  free(q), free(o), free(k), free(v);
}

static const char *kv_name(fattn_dtype t) {
  switch (t) {
  case FATTN_F32: return "f32";
  case FATTN_BF16: return "bf16";
  case FATTN_F16: return "f16";
  case FATTN_I8: return "i8";
  case FATTN_F8_E4M3: return "e4m3";
  default: return "e5m2";
  }
}

static ebench *add(int kind, int threads) {
  if (g_ne >= MAX_E) return NULL;
  ebench *e = &g_e[g_ne++];
  memset(e, 0, sizeof *e);
  e->kind = kind;
  e->threads = threads;
  return e;
}

void register_engine(const int *threads, int nthreads, int64_t llc_bytes) {
  if (llc_bytes > 0) g_llc = llc_bytes;
  int all = 1;
  for (int t = 0; t < nthreads; t++)
    if (threads[t] > all) all = threads[t];
  /* L2 (16×32×8×1×2048×128) and P5 (8×32×8×1×4096×128) decodes */
  static const int64_t shp[2][3] = {{16, 2048, 2}, {8, 4096, 5}};
  static const fattn_dtype kvs[] = {FATTN_F32, FATTN_BF16, FATTN_I8, FATTN_F8_E4M3};
  for (int t = 0; t < nthreads; t++)
    for (int s = 0; s < 2; s++)
      for (int x = 0; x < 4; x++)
        for (int pg = 0; pg < 5; pg++) {
          const int64_t page = pg == 0 || pg == 4 ? 0 : pg == 2 ? 128 : 16;
          if (page && (s == 1 || (kvs[x] != FATTN_F32 && kvs[x] != FATTN_I8))) continue;
          if (pg >= 3 && (kvs[x] != FATTN_F32 || s == 1)) continue;
          ebench *e = add(0, threads[t]);
          if (!e) return;
          e->B = shp[s][0], e->H = 32, e->Hkv = 8, e->Lk = shp[s][1], e->D = 128;
          e->kv = kvs[x];
          e->page = page;
          e->hnd = pg == 3 ? 1 : pg == 4 ? 2 : 0;
          snprintf(e->name, sizeof e->name, "engine/decode/%s/%s/%s/threads:%d", s ? "P5" : "L2",
                   kv_name(kvs[x]),
                   pg == 0   ? "dense"
                   : pg == 1 ? "paged:16"
                   : pg == 2 ? "paged:128"
                   : pg == 3 ? "paged:16:hnd"
                             : "dense:bshd",
                   threads[t]);
          gb_register(e->name, run_decode, e);
        }
  for (int t = 0; t < nthreads; t++) {
    ebench *e = add(1, threads[t]);
    if (!e) return;
    snprintf(e->name, sizeof e->name, "engine/varlen/threads:%d", threads[t]);
    gb_register(e->name, run_varlen, e);
  }
  ebench *e = add(2, all);
  if (!e) return;
  e->all_threads = all;
  snprintf(e->name, sizeof e->name, "engine/separate/best_threads");
  gb_register(e->name, run_varlen, e);
  for (int t = 0; t < nthreads; t++)
    for (int kind = 3; kind <= 4; kind++) {
      ebench *w = add(kind, threads[t]);
      if (!w) return;
      snprintf(w->name, sizeof w->name, "engine/%s/threads:%d",
               kind == 3 ? "window" : "window_dense", threads[t]);
      gb_register(w->name, run_window, w);
    }
}

static const ebench *find_e(const char *prefix, int threads) {
  const size_t n = strlen(prefix);
  for (int i = 0; i < g_ne; i++)
    if (g_e[i].nrep && g_e[i].threads == threads && !strncmp(g_e[i].name, prefix, n) &&
        !strncmp(g_e[i].name + n, "/threads:", 9))
      return &g_e[i];
  return NULL;
}

static void ratio(const char *what, const ebench *a, const ebench *b, const char *target) {
  if (!a || !b) return;
  printf("  %-58s %8.3f / %8.3f ms = %5.2fx   (target %s)\n", what, a->ms, b->ms, b->ms / a->ms,
         target);
}

void print_engine_summary(void) {
  int any = 0;
  for (int i = 0; i < g_ne; i++)
    any |= g_e[i].nrep > 0;
  if (!any) return;
  printf("\nengine targets: speed of the first over the second (medians, one run)\n");
  int seen[16], ns = 0;
  for (int i = 0; i < g_ne; i++) {
    int t = g_e[i].threads, dup = 0;
    for (int j = 0; j < ns; j++)
      dup |= seen[j] == t;
    if (dup || ns >= 16) continue;
    seen[ns++] = t;
    printf(" threads %d\n", t);
    char a[96], b[96];
    for (int s = 0; s < 2; s++) {
      const char *sh = s ? "P5" : "L2";
      /* like for like: vLLM's pool (NHD) against a dense BSHD cache, a
       * head-major pool (HND) against dense BHSD; and each against BHSD */
      static const char *pgs[] = {"paged:16", "paged:128", "paged:16", "paged:128", "paged:16:hnd",
                                  "dense:bshd"};
      static const char *dns[] = {"dense:bshd", "dense:bshd", "dense", "dense", "dense", "dense"};
      for (int pg = 0; pg < 6; pg++) {
        snprintf(a, sizeof a, "engine/decode/%s/f32/%s", sh, pgs[pg]);
        snprintf(b, sizeof b, "engine/decode/%s/f32/%s", sh, dns[pg]);
        char w[96];
        snprintf(w, sizeof w, "%s f32 %s vs %s", sh, pgs[pg], dns[pg]);
        ratio(w, find_e(a, t), find_e(b, t), pg < 2 || pg == 4 ? ">= 0.9" : "-");
      }
      snprintf(a, sizeof a, "engine/decode/%s/i8/dense", sh);
      snprintf(b, sizeof b, "engine/decode/%s/bf16/dense", sh);
      char w[96];
      snprintf(w, sizeof w, "%s i8 KV vs bf16 KV", sh);
      ratio(w, find_e(a, t), find_e(b, t), ">= 1.7");
      snprintf(b, sizeof b, "engine/decode/%s/f32/dense", sh);
      snprintf(w, sizeof w, "%s i8 KV vs f32 KV", sh);
      ratio(w, find_e(a, t), find_e(b, t), ">= 3");
      snprintf(b, sizeof b, "engine/decode/%s/bf16/dense", sh);
      snprintf(a, sizeof a, "engine/decode/%s/e4m3/dense", sh);
      snprintf(w, sizeof w, "%s e4m3 KV vs bf16 KV", sh);
      ratio(w, find_e(a, t), find_e(b, t), "-");
    }
    const ebench *sep = NULL;
    for (int i2 = 0; i2 < g_ne; i2++)
      if (g_e[i2].kind == 2 && g_e[i2].nrep) sep = &g_e[i2];
    int most = 0;
    for (int i2 = 0; i2 < g_ne; i2++)
      most = g_e[i2].threads > most ? g_e[i2].threads : most;
    ratio("varlen batch vs separate calls (best threads each)", find_e("engine/varlen", t), sep,
          t == most ? ">= 0.9" : "- (at all threads)");
    ratio("window 1024 over 32768: its cost / dense 1088's", find_e("engine/window_dense", t),
          find_e("engine/window", t), "<= 1.2");
  }
}

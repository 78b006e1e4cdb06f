/* libFuzzer target: random bytes -> one layer, fattn_mha_* or fattn_encoder_*
 * (create, forward, destroy), held against the same layer whose attention runs
 * on the reference backend.
 *
 * The bytes choose the configuration (embed_dim, heads, kv heads, kdim / vdim,
 * bias, batch_first; for the encoder dim_feedforward, activation, eps,
 * norm_first, num_layers), valid and invalid (0, negative, not dividing, huge
 * enough to overflow, an unknown activation, eps 0 / NaN / inf), which weights
 * are given (the stacked or the separate form, one left NULL), and the forward
 * arguments (batch and lengths, self-attention through one pointer, key
 * padding and attention masks of either dtype or a wrong one, per-head masks,
 * causal, a head mask, averaged or per-head attention weights, NULL tensors,
 * for the encoder out = src). Buffers are exactly as large as the shapes say,
 * so ASan sees any access outside them. Then:
 *   - create fails: a message is set and the layer pointer is NULL;
 *   - forward fails: a message is set and out and attn_weights still hold
 *     their poison (with out = src, src is unchanged);
 *   - forward succeeds: out and attn_weights are within tolerance of the same
 *     layer on a context whose attention runs on the reference backend (and
 *     whose GEMMs run on the scalar table), and the input was valid.
 * Anything else aborts (a finding). Built by `scripts/run fuzz`. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fattn.h"
#include "fuzz_common.h"
#include "internal.h" /* lib/: the oracle context's layer_backend */

/* 1..max mostly; sometimes 0, negative or huge (then *bad is set) */
static int64_t pick(bytes *b, int64_t max, int *bad, int *huge) {
  const unsigned c = take(b);
  switch (c % 24) {
  case 0: *bad = 1; return 0;
  case 1: *bad = 1; return -1 - (int64_t)(c / 24);
  case 2: *bad = *huge = 1; return ((int64_t)1 << 61) + c; /* any byte size overflows */
  default: return 1 + (int64_t)(c / 24 + take(b)) % max;
  }
}

static float *poisoned(int64_t n) {
  float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  fill_poison(x, (size_t)(n > 0 ? n : 0));
  return x;
}

/* Small exact values from the input (then a fixed pattern), times `s`. */
static float *filled(bytes *b, int64_t n, float s) {
  float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  uint32_t h = 2166136261u;
  for (int64_t i = 0; i < n; i++) {
    h = (h ^ take(b)) * 16777619u;
    x[i] = (float)((int)(h >> 24) - 128) / 128.0f * s;
  }
  return x;
}

static fattn_context *g_ctx[3], *g_ref;
static long g_calls[2], g_created[2], g_compared[2], g_status[16];

static void report(void) {
  fprintf(stderr,
          "fuzz_layers: mha %ld calls (%ld created, %ld forwards compared), encoder %ld calls (%ld "
          "created, %ld compared)\n",
          g_calls[0], g_created[0], g_compared[0], g_calls[1], g_created[1], g_compared[1]);
  for (int i = 0; i < 16; i++)
    if (g_status[i])
      fprintf(stderr, "  %-34s %ld\n", fattn_status_string((fattn_status)i), g_status[i]);
}

static void check(int cond, const char *what, fattn_status st) {
  if (cond) return;
  fprintf(stderr, "fuzz finding: %s (status %s: %s)\n", what, fattn_status_string(st),
          fattn_last_error());
  abort();
}

static void count(fattn_status st) { g_status[(unsigned)st < 16 ? (unsigned)st : 15]++; }

/* out against the oracle's: |a - r| <= tol · (1 + |r|) */
static void compare(const float *a, const float *r, int64_t n, double tol, const char *what) {
  for (int64_t i = 0; i < n; i++)
    check(fabs((double)a[i] - (double)r[i]) <= tol * (1.0 + fabs((double)r[i])), what,
          FATTN_SUCCESS);
}

/* The masks of a forward: key padding [B, Lk] and attention [Lq, Lk] or
 * [B·H, Lq, Lk], each U8 (nonzero = not allowed) or F32, or a wrong dtype. */
typedef struct masks {
  void *kp, *am;
  fattn_dtype kp_dt, am_dt;
  int per_head, bad;
} masks;

static void make_masks(bytes *b, unsigned sel, int64_t B, int64_t H, int64_t Lq, int64_t Lk,
                       masks *m) {
  memset(m, 0, sizeof *m);
  m->kp_dt = m->am_dt = FATTN_U8;
  if (sel & 1) {
    m->kp_dt = sel & 2 ? FATTN_F32 : sel % 37 == 1 ? FATTN_F16 : FATTN_U8;
    m->kp = calloc((size_t)(B * Lk), 4);
    for (int64_t i = 0; i < B * Lk; i++) {
      const unsigned c = take(b);
      if (m->kp_dt == FATTN_U8)
        ((uint8_t *)m->kp)[i] = c % 5 == 0;
      else if (m->kp_dt == FATTN_F32)
        ((float *)m->kp)[i] = c % 7 == 0 ? -INFINITY : (float)((int)(c % 8) - 4) * 0.25f;
    }
    m->bad |= m->kp_dt == FATTN_F16;
  }
  if (sel & 4) {
    m->am_dt = sel & 8 ? FATTN_F32 : sel % 41 == 4 ? (fattn_dtype)9 : FATTN_U8;
    m->per_head = (sel & 16) != 0;
    const int64_t n = (m->per_head ? B * H : 1) * Lq * Lk;
    m->am = calloc((size_t)n, 4);
    for (int64_t i = 0; i < n; i++) {
      const unsigned c = take(b);
      if (m->am_dt == FATTN_U8)
        ((uint8_t *)m->am)[i] = c % 4 == 0;
      else if (m->am_dt == FATTN_F32)
        ((float *)m->am)[i] = c % 9 == 0 ? -INFINITY : (float)((int)(c % 8) - 4) * 0.25f;
    }
    m->bad |= m->am_dt != FATTN_U8 && m->am_dt != FATTN_F32;
  }
}

static void fuzz_mha(bytes *b, fattn_context *ctx) {
  int bad = 0, huge = 0;
  const int64_t H = pick(b, 4, &bad, &huge);
  const unsigned hsel = take(b), ksel = take(b), flags = take(b);
  const int64_t hd = 1 + hsel % 8;
  int64_t E = huge ? H : H * hd;       /* a huge H: E overflows in the library, not here */
  if (hsel % 19 == 3) E += 1, bad = 1; /* H does not divide E */
  int64_t Hkv = ksel % 3 == 0 ? 0 : ksel % 3 == 1 ? H : 1; /* MHA, MHA, MQA */
  if (ksel % 23 == 5) Hkv = H + 1, bad = 1;                /* does not divide H */
  if (ksel % 29 == 7) Hkv = -1, bad = 1;
  fattn_mha_config cfg;
  fattn_mha_config_init(&cfg, E, H);
  cfg.num_kv_heads = Hkv;
  cfg.bias = flags & 1;
  cfg.batch_first = (flags & 2) != 0;
  const int sep = (flags & 4) != 0; /* q/k/v_proj_weight instead of in_proj_weight */
  if (flags & 8) { /* kdim / vdim of their own (valid only with the separate form) */
    cfg.kdim = pick(b, 12, &bad, &huge);
    cfg.vdim = pick(b, 12, &bad, &huge);
  }
  const int64_t Ekv = bad || huge ? 1 : (Hkv ? Hkv : H) * hd;
  const int64_t kdim = cfg.kdim > 0 ? cfg.kdim : E, vdim = cfg.vdim > 0 ? cfg.vdim : E;
  if (!sep && (kdim != E || vdim != E)) bad = 1;
  const unsigned wnull = take(b) % 16; /* 1..4: a required weight missing */
  /* the forward's scalars before any data, so that short inputs reach it */
  int fbad = 0, fhuge = 0;
  const int64_t B = pick(b, 3, &fbad, &fhuge), Lq = pick(b, 20, &fbad, &fhuge);
  int lbad = 0, lhuge = 0; /* Lk's: not used for self-attention (Lk = Lq) */
  const int64_t Lk0 = pick(b, 24, &lbad, &lhuge);
  const unsigned fsel = take(b), msel = take(b), asel = take(b), hsel2 = take(b);
  float *wi = NULL, *bi = NULL, *wq = NULL, *wk = NULL, *wv = NULL, *wo = NULL, *bo = NULL;
  if (!bad && !huge) {
    const float s = 1.0f / (float)E;
    wi = filled(b, (E + 2 * Ekv) * E, s), bi = filled(b, E + 2 * Ekv, 0.5f);
    wq = filled(b, E * E, s), wk = filled(b, Ekv * kdim, 1.0f / (float)kdim);
    wv = filled(b, Ekv * vdim, 1.0f / (float)vdim);
    wo = filled(b, E * E, s), bo = filled(b, E, 0.5f);
  }
  fattn_mha_weights w = {
      sep ? NULL : wi, bi, sep ? wq : NULL, sep ? wk : NULL, sep ? wv : NULL, wo, bo};
  if (wnull == 1) w.out_proj_weight = NULL, bad = 1;
  if (wnull == 2 && cfg.bias) w.in_proj_bias = NULL, bad = 1;
  if (wnull == 3) sep ? (w.k_proj_weight = NULL) : (w.in_proj_weight = NULL), bad = 1;
  if (wnull == 4 && cfg.bias) w.out_proj_bias = NULL, bad = 1;

  fattn_mha *m = (fattn_mha *)&g_calls; /* not NULL: create must set it */
  fattn_status st = fattn_mha_create(&cfg, &w, &m);
  g_calls[0]++;
  count(st);
  if (st != FATTN_SUCCESS) {
    check(fattn_last_error()[0] != '\0', "mha_create failed without a message", st);
    check(m == NULL, "mha_create failed but left the layer pointer set", st);
  } else {
    g_created[0]++;
    check(!bad && !huge, "mha_create accepted an invalid configuration", st);
    fattn_mha *ref = NULL;
    check(fattn_mha_create(&cfg, &w, &ref) == FATTN_SUCCESS, "second mha_create failed", st);
    /* forward */
    const int self = (fsel & 1) && kdim == E && vdim == E;
    const int64_t Lk = self ? Lq : Lk0;
    if (!self) fbad |= lbad, fhuge |= lhuge;
    const int ok = !fbad && !fhuge && B * Lq * Lk * H <= 20000;
    if (!fbad && !fhuge && !ok) goto done; /* valid but too slow: keep executions quick */
    const int64_t nq = ok ? B * Lq * E : 1, nk = ok ? B * Lk * kdim : 1,
                  nv = ok ? B * Lk * vdim : 1;
    float *q = filled(b, nq, 1.0f), *k = self ? q : filled(b, nk, 1.0f);
    float *v = self ? q : filled(b, nv, 1.0f);
    masks mk;
    make_masks(b, ok ? msel : 0, B, H, Lq, Lk, &mk);
    uint8_t hm[4];
    for (int i = 0; i < 4; i++)
      hm[i] = (hsel2 >> (2 * i) & 3) != 0;
    const int weights = (asel & 3) != 0, avg = (asel & 3) == 1;
    const int64_t no = ok ? B * Lq * E : 1, nw = ok && weights ? B * (avg ? 1 : H) * Lq * Lk : 1;
    float *out = poisoned(no), *aw = poisoned(nw), *out2 = poisoned(no), *aw2 = poisoned(nw);
    fattn_mha_args a;
    fattn_mha_args_init(&a);
    a.query = asel % 53 == 4 ? NULL : q, a.key = k, a.value = v;
    a.batch = B, a.q_len = Lq, a.kv_len = Lk;
    a.key_padding_mask = mk.kp, a.key_padding_mask_dtype = mk.kp_dt;
    a.attn_mask = mk.am, a.attn_mask_dtype = mk.am_dt, a.attn_mask_per_head = mk.per_head;
    a.is_causal = (asel & 4) != 0;
    a.head_mask = (asel & 8) && H <= 4 ? hm : NULL;
    a.out = asel % 59 == 6 ? NULL : out;
    a.attn_weights = weights ? aw : NULL;
    a.average_attn_weights = avg;
    const int abad = fbad || fhuge || mk.bad || !a.query || !a.out;
    st = fattn_mha_forward(ctx, m, &a);
    count(st);
    if (st != FATTN_SUCCESS) {
      check(fattn_last_error()[0] != '\0', "mha_forward failed without a message", st);
      check(is_poison(out, (size_t)no) && is_poison(aw, (size_t)nw),
            "a failed mha_forward wrote its outputs", st);
    } else {
      check(!abad, "mha_forward accepted invalid arguments", st);
      a.out = out2, a.attn_weights = weights ? aw2 : NULL;
      check(fattn_mha_forward(g_ref, ref, &a) == FATTN_SUCCESS, "the oracle failed", st);
      g_compared[0]++;
      compare(out, out2, no, 1e-4, "mha out differs from the oracle");
      if (weights) compare(aw, aw2, nw, 1e-4, "mha attn_weights differ from the oracle");
    }
    free(q);
    if (!self) free(k), free(v);
    free(mk.kp), free(mk.am), free(out), free(aw), free(out2), free(aw2);
  done:
    fattn_mha_destroy(ref);
    fattn_mha_destroy(m);
  }
  free(wi), free(bi), free(wq), free(wk), free(wv), free(wo), free(bo);
}

static void fuzz_encoder(bytes *b, fattn_context *ctx) {
  int bad = 0, huge = 0;
  const int64_t H = pick(b, 4, &bad, &huge);
  const unsigned hsel = take(b), flags = take(b), esel = take(b);
  const int64_t hd = 1 + hsel % 6;
  int64_t E = huge ? H : H * hd;
  if (hsel % 19 == 3) E += 1, bad = 1;
  fattn_encoder_config cfg;
  fattn_encoder_config_init(&cfg, E, H);
  cfg.dim_feedforward = pick(b, 24, &bad, &huge);
  cfg.activation = esel % 31 == 9 ? (fattn_activation)7 : (fattn_activation)(esel & 1);
  bad |= esel % 31 == 9;
  static const float eps[] = {1e-5f, 1e-5f, 1e-6f, 1e-3f, 0.0f, -1e-5f, NAN, INFINITY};
  cfg.layer_norm_eps = eps[esel / 2 % 8];
  bad |= esel / 2 % 8 >= 4;
  cfg.norm_first = (flags & 1) != 0;
  cfg.batch_first = (flags & 2) != 0;
  cfg.bias = (flags & 4) != 0;
  cfg.num_layers = flags / 8 % 11 == 3 ? 0 : 1 + flags / 8 % 2;
  bad |= cfg.num_layers == 0;
  const int64_t F = cfg.dim_feedforward, NL = cfg.num_layers;
  const unsigned wnull = take(b) % 24; /* 1..5: a required weight missing */
  int fbad = 0, fhuge = 0;             /* the forward's scalars before any data */
  const int64_t B = pick(b, 3, &fbad, &fhuge), L = pick(b, 20, &fbad, &fhuge);
  const unsigned asel = take(b), msel = take(b);
  fattn_encoder_layer_weights lw[2];
  memset(lw, 0, sizeof lw);
  float *mem[2][12];
  memset(mem, 0, sizeof mem);
  if (!bad && !huge) {
    for (int64_t l = 0; l < NL; l++) {
      float **p = mem[l];
      p[0] = filled(b, 3 * E * E, 1.0f / (float)E), p[1] = filled(b, 3 * E, 0.5f);
      p[2] = filled(b, E * E, 1.0f / (float)E), p[3] = filled(b, E, 0.5f);
      p[4] = filled(b, F * E, 1.0f / (float)E), p[5] = filled(b, F, 0.5f);
      p[6] = filled(b, E * F, 1.0f / (float)F), p[7] = filled(b, E, 0.5f);
      for (int i = 8; i < 12; i++)
        p[i] = filled(b, E, i % 2 ? 0.5f : 1.0f);
      fattn_encoder_layer_weights *x = &lw[l];
      x->self_attn.in_proj_weight = p[0], x->self_attn.in_proj_bias = p[1];
      x->self_attn.out_proj_weight = p[2], x->self_attn.out_proj_bias = p[3];
      x->linear1_weight = p[4], x->linear1_bias = p[5], x->linear2_weight = p[6];
      x->linear2_bias = p[7], x->norm1_weight = p[8], x->norm1_bias = p[9];
      x->norm2_weight = p[10], x->norm2_bias = p[11];
    }
  }
  fattn_encoder_layer_weights *last = &lw[NL > 1 ? 1 : 0];
  if (wnull == 1) last->linear2_weight = NULL, bad = 1;
  if (wnull == 2) last->norm1_weight = NULL, bad = 1;
  if (wnull == 3) last->self_attn.in_proj_weight = NULL, bad = 1;
  if (wnull == 4 && cfg.bias) last->linear1_bias = NULL, bad = 1;
  if (wnull == 5 && cfg.bias) last->norm2_bias = NULL, bad = 1;

  fattn_encoder *enc = (fattn_encoder *)&g_calls;
  fattn_status st = fattn_encoder_create(&cfg, lw, &enc);
  g_calls[1]++;
  count(st);
  if (st != FATTN_SUCCESS) {
    check(fattn_last_error()[0] != '\0', "encoder_create failed without a message", st);
    check(enc == NULL, "encoder_create failed but left the encoder pointer set", st);
  } else {
    g_created[1]++;
    check(!bad && !huge, "encoder_create accepted an invalid configuration", st);
    const int ok = !fbad && !fhuge && B * L * L * H * NL <= 20000;
    if (!fbad && !fhuge && !ok) goto done;
    const int64_t n = ok ? B * L * E : 1;
    float *src = filled(b, n, 1.0f), *copy = malloc((size_t)n * sizeof(float));
    memcpy(copy, src, (size_t)n * sizeof(float));
    masks mk;
    make_masks(b, ok ? msel & ~16u : 0, B, H, L, L, &mk);
    const int inplace = (asel & 1) != 0;
    float *out = inplace ? src : poisoned(n), *out2 = poisoned(n);
    fattn_encoder_args a;
    fattn_encoder_args_init(&a);
    a.src = asel % 53 == 4 ? NULL : src;
    a.batch = B, a.seq_len = L;
    a.src_key_padding_mask = mk.kp, a.src_key_padding_mask_dtype = mk.kp_dt;
    a.mask = mk.am, a.mask_dtype = mk.am_dt;
    a.is_causal = (asel & 2) != 0;
    a.out = asel % 59 == 6 ? NULL : out;
    const int abad = fbad || fhuge || mk.bad || !a.src || !a.out;
    fattn_encoder *ref = NULL;
    check(fattn_encoder_create(&cfg, lw, &ref) == FATTN_SUCCESS, "second encoder_create failed",
          st);
    st = fattn_encoder_forward(ctx, enc, &a);
    count(st);
    if (st != FATTN_SUCCESS) {
      check(fattn_last_error()[0] != '\0', "encoder_forward failed without a message", st);
      check(inplace ? !memcmp(src, copy, (size_t)n * sizeof(float)) : is_poison(out, (size_t)n),
            "a failed encoder_forward wrote its output", st);
    } else {
      check(!abad, "encoder_forward accepted invalid arguments", st);
      a.src = copy, a.out = out2;
      check(fattn_encoder_forward(g_ref, ref, &a) == FATTN_SUCCESS, "the oracle failed", st);
      g_compared[1]++;
      /* LayerNorm divides by the row's spread: a row of near-equal values
       * amplifies rounding, so the bound is looser than the mha's */
      compare(out, out2, n, 2e-3, "encoder out differs from the oracle");
    }
    fattn_encoder_destroy(ref);
    free(src), free(copy), free(mk.kp), free(mk.am), free(out2);
    if (!inplace) free(out);
  done:
    fattn_encoder_destroy(enc);
  }
  for (int l = 0; l < 2; l++)
    for (int i = 0; i < 12; i++)
      free(mem[l][i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g_ref) {
    atexit(report);
    for (int t = 0; t < 3; t++) {
      fattn_context_options o;
      fattn_context_options_init(&o);
      o.num_threads = t == 0 ? 1 : 2;
      o.block_keys = t == 2 ? 7 : 0; /* small blocks: many key blocks and split-KV chunks */
      o.block_queries = t == 2 ? 3 : 0;
      if (fattn_context_create(&o, &g_ctx[t]) != FATTN_SUCCESS) abort();
    }
    fattn_context_options o;
    fattn_context_options_init(&o);
    o.num_threads = 1;
    o.isa_cap = FATTN_BACKEND_SCALAR;
    if (fattn_context_create(&o, &g_ref) != FATTN_SUCCESS) abort();
    g_ref->layer_backend = FATTN_BACKEND_REFERENCE;
  }
  bytes b = {data, size};
  const unsigned sel = take(&b);
  fattn_context *ctx = sel / 2 % 4 == 3 ? NULL : g_ctx[sel / 2 % 4];
  if (sel & 1)
    fuzz_encoder(&b, ctx);
  else
    fuzz_mha(&b, ctx);
  return 0;
}

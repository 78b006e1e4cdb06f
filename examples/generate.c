/* A small decoder-only transformer generating text with fattn as an
 * inference engine would: continuous batching over a paged KV cache.
 *
 *   model: token embedding, L layers of (RMSNorm, q/k/v projections with GQA,
 *          RoPE, attention, output projection, RMSNorm, SwiGLU MLP), final
 *          RMSNorm, LM head; random weights from a fixed seed (no downloads).
 *   engine: requests of different prompt lengths join a running batch when a
 *          slot frees up; each step packs every running sequence's new tokens
 *          (a prefill chunk of up to CHUNK tokens, or one decode token) into
 *          one varlen batch; K and V of the new tokens are written into a
 *          shared pool of fixed-size blocks (f32, or int8 with a scale per
 *          token and kv head), and one fattn_sdpa call per layer attends
 *          through the block table (bottom-right causal). Sequences leave when
 *          done and their blocks return to the pool for the next ones.
 *
 * --check (the default) replays every sequence alone with dense per-sequence
 * K / V buffers on fattn's double-precision reference backend, on the same
 * tokens, and compares the logits of every generated token:
 *   f32 cache: max |diff| <= 1e-5 · max |logit|      (f32 rounding only)
 *   int8 cache: max |diff| <= 1e-2 · max |logit|     (int8 rounding of K / V)
 * --bench: a larger model; prefill and decode tokens per second, no replay.
 * --int8: the int8 cache.   --threads N: fattn's threads.
 *
 * Build: cc generate.c $(pkg-config --cflags --libs fattn) -lm -o generate */
#define _POSIX_C_SOURCE 200809L
#include <fattn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct config {
  int vocab, embed, layers, heads, kv_heads, head_dim, ffn;
  int block, nblocks;    /* KV pool: keys per block, blocks */
  int slots, chunk;      /* sequences running at once; prefill tokens per step */
  int nreq, gen;         /* requests; tokens generated per request */
  const int *prompt_len; /* nreq */
} config;

typedef struct layer_w {
  float *wq, *wk, *wv, *wo, *w1, *w3, *w2, *n1, *n2;
} layer_w;

typedef struct model {
  config c;
  float *emb, *head, *nf;
  layer_w *l;
} model;

static uint64_t g_seed = 12345;
static float frand(void) { /* [-1, 1) */
  g_seed = g_seed * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((g_seed >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
static float *rnd(size_t n, float scale) {
  float *p = malloc(n * sizeof *p);
  if (!p) exit(2);
  for (size_t i = 0; i < n; i++)
    p[i] = scale * frand();
  return p;
}

static model make_model(const config *c) {
  model m;
  m.c = *c;
  const size_t E = (size_t)c->embed, Q = (size_t)(c->heads * c->head_dim),
               KV = (size_t)(c->kv_heads * c->head_dim), F = (size_t)c->ffn;
  m.emb = rnd((size_t)c->vocab * E, 1.0f);
  m.head = rnd((size_t)c->vocab * E, 1.0f / sqrtf((float)E));
  m.nf = rnd(E, 0.1f);
  m.l = malloc((size_t)c->layers * sizeof *m.l);
  for (int i = 0; i < c->layers; i++) {
    layer_w *w = &m.l[i];
    w->wq = rnd(Q * E, 1.0f / sqrtf((float)E));
    w->wk = rnd(KV * E, 1.0f / sqrtf((float)E));
    w->wv = rnd(KV * E, 1.0f / sqrtf((float)E));
    w->wo = rnd(E * Q, 1.0f / sqrtf((float)Q));
    w->w1 = rnd(F * E, 1.0f / sqrtf((float)E));
    w->w3 = rnd(F * E, 1.0f / sqrtf((float)E));
    w->w2 = rnd(E * F, 1.0f / sqrtf((float)F));
    w->n1 = rnd(E, 0.1f);
    w->n2 = rnd(E, 0.1f);
    for (size_t e = 0; e < E; e++)
      w->n1[e] += 1.0f, w->n2[e] += 1.0f;
  }
  for (size_t e = 0; e < E; e++)
    m.nf[e] += 1.0f;
  return m;
}

static void free_model(model *m) {
  for (int i = 0; i < m->c.layers; i++) {
    layer_w *w = &m->l[i];
    free(w->wq), free(w->wk), free(w->wv), free(w->wo), free(w->w1), free(w->w3), free(w->w2);
    free(w->n1), free(w->n2);
  }
  free(m->l), free(m->emb), free(m->head), free(m->nf);
}

/* y[t][o] = Σ_i x[t][i] · w[o][i] */
static void linear(int T, int in, int out, const float *x, const float *w, float *y) {
  for (int t = 0; t < T; t++)
    for (int o = 0; o < out; o++) {
      float s = 0;
      const float *xr = x + (size_t)t * in, *wr = w + (size_t)o * in;
      for (int i = 0; i < in; i++)
        s += xr[i] * wr[i];
      y[(size_t)t * out + o] = s;
    }
}

static void rmsnorm(int T, int E, const float *x, const float *g, float *y) {
  for (int t = 0; t < T; t++) {
    double ss = 0;
    for (int e = 0; e < E; e++)
      ss += (double)x[t * E + e] * x[t * E + e];
    const float r = (float)(1.0 / sqrt(ss / E + 1e-6));
    for (int e = 0; e < E; e++)
      y[t * E + e] = x[t * E + e] * r * g[e];
  }
}

/* RoPE (rotate-half, base 10000) on `heads` heads of row x at position pos. */
static void rope(float *x, int heads, int D, int pos) {
  for (int h = 0; h < heads; h++)
    for (int i = 0; i < D / 2; i++) {
      const double f = pow(10000.0, -2.0 * i / D), a = pos * f;
      const float c = (float)cos(a), s = (float)sin(a);
      float *p = x + h * D;
      const float x0 = p[i], x1 = p[i + D / 2];
      p[i] = x0 * c - x1 * s;
      p[i + D / 2] = x0 * s + x1 * c;
    }
}

/* Everything of one forward over T packed tokens except attention, which
 * `attend` does per layer: tokens -> logits of the rows in `want`. */
typedef struct scratch {
  float *x, *h, *q, *k, *v, *a, *o, *f1, *f3;
} scratch;

static scratch make_scratch(const config *c, int T) {
  scratch s;
  const size_t E = (size_t)c->embed, Q = (size_t)(c->heads * c->head_dim),
               KV = (size_t)(c->kv_heads * c->head_dim), F = (size_t)c->ffn;
  s.x = malloc(T * E * 4), s.h = malloc(T * E * 4), s.q = malloc(T * Q * 4);
  s.k = malloc(T * KV * 4), s.v = malloc(T * KV * 4), s.a = malloc(T * Q * 4);
  s.o = malloc(T * E * 4), s.f1 = malloc(T * F * 4), s.f3 = malloc(T * F * 4);
  if (!s.x || !s.h || !s.q || !s.k || !s.v || !s.a || !s.o || !s.f1 || !s.f3) exit(2);
  return s;
}
static void free_scratch(scratch *s) {
  free(s->x), free(s->h), free(s->q), free(s->k), free(s->v), free(s->a), free(s->o);
  free(s->f1), free(s->f3);
}

/* Writes K and V of the new tokens and computes s->a from s->q (the attention
 * of layer `layer`); returns nonzero on failure. */
typedef int (*attend_fn)(void *state, int layer, int T, scratch *s);

static int forward(const model *m, int T, const int *tokens, const int *pos, scratch *s,
                   attend_fn attend, void *state, int nwant, const int *want, float *logits) {
  const config *c = &m->c;
  const int E = c->embed, Q = c->heads * c->head_dim, KV = c->kv_heads * c->head_dim, F = c->ffn;
  for (int t = 0; t < T; t++)
    memcpy(s->x + (size_t)t * E, m->emb + (size_t)tokens[t] * E, (size_t)E * 4);
  for (int l = 0; l < c->layers; l++) {
    const layer_w *w = &m->l[l];
    rmsnorm(T, E, s->x, w->n1, s->h);
    linear(T, E, Q, s->h, w->wq, s->q);
    linear(T, E, KV, s->h, w->wk, s->k);
    linear(T, E, KV, s->h, w->wv, s->v);
    for (int t = 0; t < T; t++) {
      rope(s->q + (size_t)t * Q, c->heads, c->head_dim, pos[t]);
      rope(s->k + (size_t)t * KV, c->kv_heads, c->head_dim, pos[t]);
    }
    if (attend(state, l, T, s)) return 1;
    linear(T, Q, E, s->a, w->wo, s->o);
    for (int i = 0; i < T * E; i++)
      s->x[i] += s->o[i];
    rmsnorm(T, E, s->x, w->n2, s->h);
    linear(T, E, F, s->h, w->w1, s->f1);
    linear(T, E, F, s->h, w->w3, s->f3);
    for (int i = 0; i < T * F; i++) /* SwiGLU: silu(x W1) * (x W3) */
      s->f1[i] = s->f1[i] / (1.0f + expf(-s->f1[i])) * s->f3[i];
    linear(T, F, E, s->f1, w->w2, s->o);
    for (int i = 0; i < T * E; i++)
      s->x[i] += s->o[i];
  }
  for (int r = 0; r < nwant; r++) {
    rmsnorm(1, E, s->x + (size_t)want[r] * E, m->nf, s->h);
    linear(1, E, c->vocab, s->h, m->head, logits + (size_t)r * c->vocab);
  }
  return 0;
}

static int argmax(const float *x, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[b]) b = i;
  return b;
}

/* ---- the engine: paged KV cache, continuous batching ---- */

typedef struct seq {
  int id, len; /* tokens in the cache */
  int nprompt, ngen;
  int *tokens;    /* prompt then generated: nprompt + gen */
  int32_t *table; /* block table row */
  int nblocks;
} seq;

typedef struct engine {
  const model *m;
  fattn_context *ctx;
  int int8;
  /* pools per layer: [nblocks, block, Hkv, D], int8 or f32; scales [nblocks, block, Hkv] */
  void **kpool, **vpool;
  float **kscale, **vscale;
  int *free_blocks, nfree;
  int32_t *bt;   /* [slots, max_blocks] */
  double attn_s; /* seconds in fattn_sdpa this step */
  int max_blocks;
  /* this step's batch */
  int nrun;
  seq *run[64];
  int32_t cu[65], used[64];
  int *slot_of_tok, *pos_of_tok;
} engine;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int take_block(engine *e) { return e->nfree ? e->free_blocks[--e->nfree] : -1; }

/* Quantizes a row of n values symmetrically to int8; returns the scale. */
static float quant_row(const float *x, int n, int8_t *q) {
  float mx = 0;
  for (int i = 0; i < n; i++)
    mx = fabsf(x[i]) > mx ? fabsf(x[i]) : mx;
  const float s = mx > 0 ? mx / 127.0f : 1.0f;
  for (int i = 0; i < n; i++)
    q[i] = (int8_t)lrintf(x[i] / s);
  return s;
}

static int engine_attend(void *state, int layer, int T, scratch *s) {
  engine *e = state;
  const config *c = &e->m->c;
  const int Hkv = c->kv_heads, D = c->head_dim, H = c->heads, bs = c->block;
  /* append the new tokens' K and V to the pool, through each sequence's table */
  for (int t = 0; t < T; t++) {
    const seq *sq = e->run[e->slot_of_tok[t]];
    const int p = e->pos_of_tok[t], blk = sq->table[p / bs], row = p % bs;
    for (int hk = 0; hk < Hkv; hk++) {
      const size_t off = (((size_t)blk * bs + row) * Hkv + hk) * D;
      const float *kr = s->k + ((size_t)t * Hkv + hk) * D, *vr = s->v + ((size_t)t * Hkv + hk) * D;
      if (e->int8) {
        e->kscale[layer][((size_t)blk * bs + row) * Hkv + hk] =
            quant_row(kr, D, (int8_t *)e->kpool[layer] + off);
        e->vscale[layer][((size_t)blk * bs + row) * Hkv + hk] =
            quant_row(vr, D, (int8_t *)e->vpool[layer] + off);
      } else {
        memcpy((float *)e->kpool[layer] + off, kr, (size_t)D * 4);
        memcpy((float *)e->vpool[layer] + off, vr, (size_t)D * 4);
      }
    }
  }
  const fattn_dtype dt = e->int8 ? FATTN_I8 : FATTN_F32;
  /* q and out packed [T, H, D]; pools vLLM-style [nblocks, block, Hkv, D] */
  fattn_tensor tq = {s->q, FATTN_F32, {1, H, T, D}, {0, D, (int64_t)H * D, 1}};
  fattn_tensor to = {s->a, FATTN_F32, {1, H, T, D}, {0, D, (int64_t)H * D, 1}};
  fattn_tensor tk = {e->kpool[layer],
                     dt,
                     {c->nblocks, Hkv, bs, D},
                     {(int64_t)bs * Hkv * D, D, (int64_t)Hkv * D, 1}};
  fattn_tensor tv = tk;
  tv.data = e->vpool[layer];
  fattn_tensor tks = {
      e->kscale[layer], FATTN_F32, {c->nblocks, Hkv, bs, 1}, {(int64_t)bs * Hkv, 1, Hkv, 1}};
  fattn_tensor tvs = tks;
  tvs.data = e->vscale[layer];
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.causal = FATTN_CAUSAL_BOTTOM_RIGHT;
  p.num_seqs = e->nrun;
  p.cu_seqlens_q = e->cu;
  p.seqused_k = e->used;
  p.block_table = e->bt;
  p.block_table_stride = e->max_blocks;
  if (e->int8) p.k_scale = &tks, p.v_scale = &tvs;
  const double t0 = now();
  const fattn_status st = fattn_sdpa(e->ctx, &tq, &tk, &tv, &to, &p);
  e->attn_s += now() - t0;
  if (st != FATTN_SUCCESS) fprintf(stderr, "fattn_sdpa: %s\n", fattn_last_error());
  return st != FATTN_SUCCESS;
}

typedef struct run_stats {
  double prefill_s, decode_s, prefill_attn_s, decode_attn_s;
  long prefill_tok, decode_tok;
  int steps;
} run_stats;

/* Runs every request to completion; the logits of every generated token go
 * to logits[req][g] (vocab each). */
static int engine_generate(const model *m, int int8, int threads, seq *seqs, float *logits,
                           run_stats *rs) {
  const config *c = &m->c;
  engine e;
  memset(&e, 0, sizeof e);
  e.m = m;
  e.int8 = int8;
  fattn_context_options o;
  fattn_context_options_init(&o);
  o.num_threads = threads;
  if (fattn_context_create(&o, &e.ctx) != FATTN_SUCCESS) return 1;
  const size_t es = int8 ? 1 : 4, pool = (size_t)c->nblocks * c->block * c->kv_heads * c->head_dim;
  e.kpool = malloc(c->layers * sizeof(void *)), e.vpool = malloc(c->layers * sizeof(void *));
  e.kscale = malloc(c->layers * sizeof(float *)), e.vscale = malloc(c->layers * sizeof(float *));
  for (int l = 0; l < c->layers; l++) {
    e.kpool[l] = calloc(pool, es), e.vpool[l] = calloc(pool, es);
    e.kscale[l] = calloc((size_t)c->nblocks * c->block * c->kv_heads, 4);
    e.vscale[l] = calloc((size_t)c->nblocks * c->block * c->kv_heads, 4);
  }
  /* the free list hands blocks out in a scrambled order, as a long-running pool does */
  e.free_blocks = malloc((size_t)c->nblocks * sizeof(int));
  for (int b = 0; b < c->nblocks; b++)
    e.free_blocks[b] = (b * 7919) % c->nblocks;
  e.nfree = c->nblocks;
  int maxlen = 0;
  for (int r = 0; r < c->nreq; r++)
    maxlen = c->prompt_len[r] + c->gen > maxlen ? c->prompt_len[r] + c->gen : maxlen;
  e.max_blocks = (maxlen + c->block - 1) / c->block;
  e.bt = malloc((size_t)c->slots * e.max_blocks * sizeof(int32_t));
  const int Tmax = c->slots * c->chunk;
  e.slot_of_tok = malloc(Tmax * sizeof(int)), e.pos_of_tok = malloc(Tmax * sizeof(int));
  int *tok = malloc(Tmax * sizeof(int)), want[64];
  float *lg = malloc((size_t)c->slots * c->vocab * 4);
  scratch s = make_scratch(c, Tmax);
  seq *running[64] = {0};
  int next = 0, done = 0, rc = 0;
  while (done < c->nreq && !rc) {
    /* join: free slots take the next requests, if the pool has room for them */
    for (int k = 0; k < c->slots && next < c->nreq; k++) {
      if (running[k]) continue;
      seq *sq = &seqs[next];
      const int need = (sq->nprompt + c->gen + c->block - 1) / c->block;
      if (need > e.nfree) break;
      sq->table = e.bt + (size_t)k * e.max_blocks;
      for (int b = 0; b < e.max_blocks; b++)
        sq->table[b] = b < need ? take_block(&e) : -1;
      sq->nblocks = need;
      sq->len = 0;
      running[k] = sq;
      next++;
    }
    /* one step: a prefill chunk or one decode token per running sequence */
    int T = 0, nwant = 0, prefill_toks = 0;
    e.nrun = 0;
    e.cu[0] = 0;
    for (int k = 0; k < c->slots; k++) {
      seq *sq = running[k];
      if (!sq) continue;
      /* the table rows are per slot: the call's rows are the running ones, in slot order */
      const int avail = sq->nprompt + sq->ngen; /* tokens known */
      int n = avail - sq->len;
      if (n > c->chunk) n = c->chunk;
      const int slot = e.nrun++;
      e.run[slot] = sq;
      for (int i = 0; i < n; i++) {
        tok[T] = sq->tokens[sq->len + i];
        e.slot_of_tok[T] = slot;
        e.pos_of_tok[T] = sq->len + i;
        T++;
      }
      if (sq->len < sq->nprompt) prefill_toks += n;
      sq->len += n;
      e.cu[slot + 1] = T;
      e.used[slot] = sq->len;
      if (sq->len == avail) want[nwant++] = T - 1; /* a new token comes from this row */
    }
    /* the block table rows of this call, in the order of the running sequences */
    int32_t *rows = malloc((size_t)e.nrun * e.max_blocks * sizeof(int32_t));
    for (int r = 0; r < e.nrun; r++)
      memcpy(rows + (size_t)r * e.max_blocks, e.run[r]->table, e.max_blocks * sizeof(int32_t));
    int32_t *keep = e.bt;
    e.bt = rows;
    e.attn_s = 0;
    const double t0 = now();
    rc = forward(m, T, tok, e.pos_of_tok, &s, engine_attend, &e, nwant, want, lg);
    const double dt = now() - t0;
    e.bt = keep;
    free(rows);
    rs->steps++;
    if (prefill_toks)
      rs->prefill_s += dt, rs->prefill_attn_s += e.attn_s, rs->prefill_tok += prefill_toks;
    else
      rs->decode_s += dt, rs->decode_attn_s += e.attn_s, rs->decode_tok += T;
    /* sample (greedy) and retire */
    int w = 0;
    for (int r = 0; r < e.nrun; r++) {
      seq *sq = e.run[r];
      if (sq->len != sq->nprompt + sq->ngen) continue;
      const float *l = lg + (size_t)w++ * c->vocab;
      memcpy(logits + ((size_t)sq->id * c->gen + sq->ngen) * c->vocab, l, (size_t)c->vocab * 4);
      sq->tokens[sq->nprompt + sq->ngen] = argmax(l, c->vocab);
      sq->ngen++;
      if (sq->ngen == c->gen) { /* leave: blocks back to the pool */
        for (int b = 0; b < sq->nblocks; b++)
          e.free_blocks[e.nfree++] = sq->table[b];
        for (int k = 0; k < c->slots; k++)
          if (running[k] == sq) running[k] = NULL;
        done++;
      }
    }
  }
  free_scratch(&s);
  free(tok), free(lg), free(e.slot_of_tok), free(e.pos_of_tok), free(e.bt), free(e.free_blocks);
  for (int l = 0; l < c->layers; l++)
    free(e.kpool[l]), free(e.vpool[l]), free(e.kscale[l]), free(e.vscale[l]);
  free(e.kpool), free(e.vpool), free(e.kscale), free(e.vscale);
  fattn_context_destroy(e.ctx);
  return rc;
}

/* ---- the replay: one sequence alone, dense K / V, reference backend ---- */

typedef struct dense {
  const model *m;
  float **k, **v; /* per layer [1, Hkv, cap, D] */
  int cap, len, T;
} dense;

static int dense_attend(void *state, int layer, int T, scratch *s) {
  dense *d = state;
  const config *c = &d->m->c;
  const int Hkv = c->kv_heads, D = c->head_dim, H = c->heads;
  for (int t = 0; t < T; t++)
    for (int hk = 0; hk < Hkv; hk++) {
      memcpy(d->k[layer] + ((size_t)hk * d->cap + d->len + t) * D,
             s->k + ((size_t)t * Hkv + hk) * D, (size_t)D * 4);
      memcpy(d->v[layer] + ((size_t)hk * d->cap + d->len + t) * D,
             s->v + ((size_t)t * Hkv + hk) * D, (size_t)D * 4);
    }
  /* q [1, H, T, D] from the packed rows; keys: the first len + T of the buffer */
  fattn_tensor tq = {s->q, FATTN_F32, {1, H, T, D}, {0, D, (int64_t)H * D, 1}};
  fattn_tensor to = {s->a, FATTN_F32, {1, H, T, D}, {0, D, (int64_t)H * D, 1}};
  fattn_tensor tk = fattn_tensor_contiguous(d->k[layer], FATTN_F32, 1, Hkv, d->cap, D);
  fattn_tensor tv = fattn_tensor_contiguous(d->v[layer], FATTN_F32, 1, Hkv, d->cap, D);
  tk.dims[2] = tv.dims[2] = d->len + T;
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.causal = FATTN_CAUSAL_BOTTOM_RIGHT;
  p.backend = FATTN_BACKEND_REFERENCE;
  const fattn_status st = fattn_sdpa(NULL, &tq, &tk, &tv, &to, &p);
  if (st != FATTN_SUCCESS) fprintf(stderr, "reference: %s\n", fattn_last_error());
  return st != FATTN_SUCCESS;
}

/* Max over the sequence's generated tokens of max|diff| / max|ref logit|. */
static double replay(const model *m, const seq *sq, const float *logits) {
  const config *c = &m->c;
  dense d = {m, NULL, NULL, sq->nprompt + c->gen, 0, 0};
  d.k = malloc(c->layers * sizeof(float *)), d.v = malloc(c->layers * sizeof(float *));
  for (int l = 0; l < c->layers; l++) {
    d.k[l] = calloc((size_t)c->kv_heads * d.cap * c->head_dim, 4);
    d.v[l] = calloc((size_t)c->kv_heads * d.cap * c->head_dim, 4);
  }
  scratch s = make_scratch(c, sq->nprompt);
  float *ref = malloc((size_t)c->vocab * 4);
  int *pos = malloc((size_t)sq->nprompt * sizeof(int));
  double worst = 0;
  for (int g = 0; g < c->gen; g++) {
    /* step 0: the whole prompt at once; then one generated token at a time */
    const int T = g == 0 ? sq->nprompt : 1, first = g == 0 ? 0 : sq->nprompt + g - 1;
    for (int t = 0; t < T; t++)
      pos[t] = first + t;
    const int last = T - 1;
    if (forward(m, T, sq->tokens + first, pos, &s, dense_attend, &d, 1, &last, ref)) {
      worst = INFINITY;
      break;
    }
    d.len += T;
    double mx = 0, diff = 0;
    const float *got = logits + ((size_t)sq->id * c->gen + g) * c->vocab;
    for (int i = 0; i < c->vocab; i++) {
      mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
      diff = fabs(ref[i] - got[i]) > diff ? fabs(ref[i] - got[i]) : diff;
    }
    if (diff / mx > worst) worst = diff / mx;
  }
  for (int l = 0; l < c->layers; l++)
    free(d.k[l]), free(d.v[l]);
  free(d.k), free(d.v), free(ref), free(pos);
  free_scratch(&s);
  return worst;
}

int main(int argc, char **argv) {
  int bench = 0, int8 = 0, threads = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--bench"))
      bench = 1;
    else if (!strcmp(argv[i], "--check"))
      bench = 0;
    else if (!strcmp(argv[i], "--int8"))
      int8 = 1;
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--check | --bench] [--int8] [--threads N]\n", argv[0]);
      return 2;
    }
  }
  static const int small_prompts[] = {5, 23, 1, 40, 9, 17, 2};
  static const int big_prompts[] = {512, 64, 300, 1024, 128, 700, 33, 256};
  config c;
  if (!bench)
    c = (config){.vocab = 97,
                 .embed = 64,
                 .layers = 2,
                 .heads = 4,
                 .kv_heads = 2,
                 .head_dim = 16,
                 .ffn = 96,
                 .block = 4,
                 .nblocks = 64,
                 .slots = 3,
                 .chunk = 8,
                 .nreq = 7,
                 .gen = 6,
                 .prompt_len = small_prompts};
  else
    c = (config){.vocab = 1024,
                 .embed = 512,
                 .layers = 4,
                 .heads = 8,
                 .kv_heads = 2,
                 .head_dim = 64,
                 .ffn = 1024,
                 .block = 16,
                 .nblocks = 1024,
                 .slots = 8,
                 .chunk = 128,
                 .nreq = 8,
                 .gen = 32,
                 .prompt_len = big_prompts};
  model m = make_model(&c);
  seq *seqs = calloc((size_t)c.nreq, sizeof *seqs);
  for (int r = 0; r < c.nreq; r++) {
    seqs[r].id = r;
    seqs[r].nprompt = c.prompt_len[r];
    seqs[r].tokens = malloc((size_t)(c.prompt_len[r] + c.gen) * sizeof(int));
    for (int t = 0; t < c.prompt_len[r]; t++)
      seqs[r].tokens[t] = (int)((r * 131 + t * 31 + 7) % c.vocab);
  }
  float *logits = malloc((size_t)c.nreq * c.gen * c.vocab * 4);
  run_stats rs = {0};
  if (engine_generate(&m, int8, threads, seqs, logits, &rs)) return 1;
  printf("%d requests, %d tokens each, %s KV cache in blocks of %d, %d steps\n", c.nreq, c.gen,
         int8 ? "int8" : "f32", c.block, rs.steps);
  /* steps with any prompt tokens count as prefill; the model's matmuls are
   * plain C loops, so the attention's share is printed too */
  printf("prefill: %ld tokens, %.1f tokens/s (attention %.1f of %.1f ms); decode: %ld tokens, "
         "%.1f tokens/s (attention %.1f of %.1f ms)\n",
         rs.prefill_tok, rs.prefill_tok / (rs.prefill_s > 0 ? rs.prefill_s : 1),
         1e3 * rs.prefill_attn_s, 1e3 * rs.prefill_s, rs.decode_tok,
         rs.decode_tok / (rs.decode_s > 0 ? rs.decode_s : 1), 1e3 * rs.decode_attn_s,
         1e3 * rs.decode_s);
  int fails = 0;
  if (!bench) {
    const double tol = int8 ? 1e-2 : 1e-5;
    for (int r = 0; r < c.nreq; r++) {
      const double w = replay(&m, &seqs[r], logits);
      printf("request %d (prompt %d): tokens", r, seqs[r].nprompt);
      for (int g = 0; g < c.gen; g++)
        printf(" %d", seqs[r].tokens[seqs[r].nprompt + g]);
      printf("; logits vs dense reference: max rel diff %.2e (tolerance %.0e)%s\n", w, tol,
             w <= tol ? "" : "  FAIL");
      fails += !(w <= tol);
    }
  }
  for (int r = 0; r < c.nreq; r++)
    free(seqs[r].tokens);
  free(seqs), free(logits);
  free_model(&m);
  return fails ? 1 : 0;
}

/* fattn_encoder: nn.TransformerEncoder(Layer) for inference, from fattn_mha,
 * fattn__gemm and two row-wise passes (residual + LayerNorm, activation).
 * The running activations live in `out` (rows in the caller's order, as for
 * fattn_mha); scratch comes from the context's workspace pool. */
#include <math.h>
#include <string.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "internal.h"

/* Threads for the row-wise passes: the context's, unless inside the caller's
 * own parallel region, and one for small passes. */
static int row_threads(const fattn_context *c, int64_t elems) {
#if defined(_OPENMP)
  if (omp_in_parallel()) return 1;
#endif
  return elems < 65536 ? 1 : c->num_threads;
}

typedef struct enc_layer {
  fattn_mha *attn;
  float *w1, *b1, *w2, *b2, *n1w, *n1b, *n2w, *n2b; /* in `mem` */
  float *mem;
} enc_layer;

struct fattn_encoder {
  fattn_encoder_config cfg;
  enc_layer *layers;
};

void fattn_encoder_config_init(fattn_encoder_config *c, int64_t embed_dim, int64_t num_heads) {
  if (!c) return;
  memset(c, 0, sizeof *c);
  c->embed_dim = embed_dim;
  c->num_heads = num_heads;
  c->dim_feedforward = 2048;
  c->activation = FATTN_RELU;
  c->layer_norm_eps = 1e-5f;
  c->bias = 1;
  c->num_layers = 1;
}

void fattn_encoder_args_init(fattn_encoder_args *a) {
  if (!a) return;
  memset(a, 0, sizeof *a);
  a->src_key_padding_mask_dtype = FATTN_U8;
  a->mask_dtype = FATTN_U8;
}

void fattn_encoder_destroy(fattn_encoder *enc) {
  if (!enc) return;
  for (int64_t i = 0; enc->layers && i < enc->cfg.num_layers; i++) {
    fattn_mha_destroy(enc->layers[i].attn);
    free(enc->layers[i].mem);
  }
  free(enc->layers);
  free(enc);
}

fattn_status fattn_encoder_create(const fattn_encoder_config *cfg,
                                  const fattn_encoder_layer_weights *layers, fattn_encoder **enc) {
  if (!enc) return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "enc is NULL");
  *enc = NULL;
  if (!cfg || !layers) return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "cfg or layers is NULL");
  const int64_t E = cfg->embed_dim, F = cfg->dim_feedforward;
  if (cfg->num_layers <= 0 || cfg->num_layers > 100000)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "num_layers %lld is not in [1, 100000]",
                        (long long)cfg->num_layers);
  if (F <= 0)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "dim_feedforward %lld must be positive",
                        (long long)F);
  if (cfg->activation != FATTN_RELU && cfg->activation != FATTN_GELU)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "activation %d is not RELU or GELU",
                        (int)cfg->activation);
  if (!(cfg->layer_norm_eps > 0.0f) || isinf(cfg->layer_norm_eps))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "layer_norm_eps must be positive and finite");
  fattn_mha_config mc;
  fattn_mha_config_init(&mc, E, cfg->num_heads);
  mc.bias = cfg->bias;
  mc.batch_first = cfg->batch_first;
  int64_t nw;
  if (!fattn__mul_ok(E, F, &nw) || nw > INT64_MAX / 16)
    return fattn__error(FATTN_ERROR_OVERFLOW, "embed_dim · dim_feedforward overflows");
  for (int64_t i = 0; i < cfg->num_layers; i++) {
    const fattn_encoder_layer_weights *w = &layers[i];
    if (!w->linear1_weight || !w->linear2_weight || !w->norm1_weight || !w->norm2_weight ||
        (cfg->bias && (!w->linear1_bias || !w->linear2_bias || !w->norm1_bias || !w->norm2_bias)))
      return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                          "layer %lld: linear1/2 and norm1/2 weights (and biases, bias on) are "
                          "required",
                          (long long)i);
  }
  struct fattn_encoder *r = fattn__calloc(1, sizeof *r);
  if (r) r->layers = fattn__calloc((size_t)cfg->num_layers, sizeof *r->layers);
  if (!r || !r->layers) {
    free(r);
    return fattn__error(FATTN_ERROR_OUT_OF_MEMORY, "encoder");
  }
  r->cfg = *cfg;
  for (int64_t i = 0; i < cfg->num_layers; i++) {
    const fattn_encoder_layer_weights *w = &layers[i];
    enc_layer *l = &r->layers[i];
    fattn_status st = fattn_mha_create(&mc, &w->self_attn, &l->attn);
    if (st != FATTN_SUCCESS) {
      fattn_encoder_destroy(r);
      return st;
    }
    const int64_t total = 2 * nw + F + 5 * E;
    l->mem = fattn__aligned_alloc(64, (size_t)total * sizeof(float));
    if (!l->mem) {
      fattn_encoder_destroy(r);
      return fattn__error(FATTN_ERROR_OUT_OF_MEMORY, "encoder layer %lld", (long long)i);
    }
    l->w1 = l->mem, l->w2 = l->w1 + nw, l->b1 = l->w2 + nw, l->b2 = l->b1 + F;
    l->n1w = l->b2 + E, l->n1b = l->n1w + E, l->n2w = l->n1b + E, l->n2b = l->n2w + E;
    memcpy(l->w1, w->linear1_weight, (size_t)nw * sizeof(float));
    memcpy(l->w2, w->linear2_weight, (size_t)nw * sizeof(float));
    memcpy(l->n1w, w->norm1_weight, (size_t)E * sizeof(float));
    memcpy(l->n2w, w->norm2_weight, (size_t)E * sizeof(float));
    if (cfg->bias) {
      memcpy(l->b1, w->linear1_bias, (size_t)F * sizeof(float));
      memcpy(l->b2, w->linear2_bias, (size_t)E * sizeof(float));
      memcpy(l->n1b, w->norm1_bias, (size_t)E * sizeof(float));
      memcpy(l->n2b, w->norm2_bias, (size_t)E * sizeof(float));
    } else {
      memset(l->b1, 0, (size_t)(F + E) * sizeof(float)); /* b1 and b2 */
      memset(l->n1b, 0, (size_t)E * sizeof(float));
      memset(l->n2b, 0, (size_t)E * sizeof(float));
    }
  }
  *enc = r;
  return FATTN_SUCCESS;
}

/* A row's mean and 1 / sqrt(var + eps), two passes in double. */
static double row_stats(const float *xr, int64_t E, float eps, double *mean) {
  double m = 0, var = 0;
  for (int64_t e = 0; e < E; e++)
    m += xr[e];
  m /= (double)E;
  for (int64_t e = 0; e < E; e++)
    var += ((double)xr[e] - m) * ((double)xr[e] - m);
  *mean = m;
  return 1.0 / sqrt(var / (double)E + (double)eps);
}

/* y = LayerNorm(x (+ r)) row by row (two passes, in double); y may be x. */
static void add_norm(int nth, int64_t rows, int64_t E, float *x, const float *r, const float *w,
                     const float *b, float eps, float *y) {
  (void)nth; /* without OpenMP */
#pragma omp parallel for num_threads(nth) if (nth > 1) schedule(static)
  for (int64_t i = 0; i < rows; i++) {
    float *xr = x + i * E, *yr = y + i * E;
    if (r)
      for (int64_t e = 0; e < E; e++)
        xr[e] += r[i * E + e];
    double mean;
    const double inv = row_stats(xr, E, eps, &mean);
    for (int64_t e = 0; e < E; e++)
      yr[e] = (float)(((double)xr[e] - mean) * inv) * w[e] + b[e];
  }
}

static void activate(int nth, int64_t n, float *x, fattn_activation act) {
  (void)nth;
  if (act == FATTN_RELU) {
#pragma omp parallel for num_threads(nth) if (nth > 1) schedule(static)
    for (int64_t i = 0; i < n; i++)
      x[i] = x[i] > 0.0f ? x[i] : 0.0f;
  } else { /* exact GELU: x · Φ(x) */
#pragma omp parallel for num_threads(nth) if (nth > 1) schedule(static)
    for (int64_t i = 0; i < n; i++)
      x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
  }
}

/* The arguments of a forward (need_out) or backward; rows = batch · seq_len.
 * Every workspace piece is at most `pieces` × rows × max(E, F) floats. */
static fattn_status check_enc_args(const fattn_encoder *enc, const fattn_encoder_args *a,
                                   int need_out, int64_t pieces, int64_t *rows) {
  if (!enc || !a) return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "enc or args is NULL");
  if (!a->src || (need_out && !a->out))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        need_out ? "src and out are required" : "src is required");
  const fattn_encoder_config *cfg = &enc->cfg;
  const int64_t E = cfg->embed_dim, F = cfg->dim_feedforward;
  int64_t hid;
  if (a->batch <= 0 || a->seq_len <= 0)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "batch and seq_len must be positive");
  if (!fattn__mul_ok(a->batch, a->seq_len, rows) || !fattn__mul_ok(*rows, F > E ? F : E, &hid) ||
      !fattn__mul_ok(hid, pieces, &hid) || hid > INT64_MAX / 16) /* bytes stay in int64 */
    return fattn__error(FATTN_ERROR_OVERFLOW, "batch %lld × seq_len %lld overflows",
                        (long long)a->batch, (long long)a->seq_len);
  if ((a->src_key_padding_mask && a->src_key_padding_mask_dtype != FATTN_U8 &&
       a->src_key_padding_mask_dtype != FATTN_F32) ||
      (a->mask && a->mask_dtype != FATTN_U8 && a->mask_dtype != FATTN_F32))
    return fattn__error(FATTN_ERROR_UNSUPPORTED, "masks are U8 (bool) or F32");
  return FATTN_SUCCESS;
}

/* The self-attention arguments of a layer (query / key / value set per layer). */
static void sa_args(const fattn_encoder_args *a, fattn_mha_args *ma, float *out) {
  fattn_mha_args_init(ma);
  ma->batch = a->batch, ma->q_len = ma->kv_len = a->seq_len;
  ma->key_padding_mask = a->src_key_padding_mask;
  ma->key_padding_mask_dtype = a->src_key_padding_mask_dtype;
  ma->attn_mask = a->mask;
  ma->attn_mask_dtype = a->mask_dtype;
  ma->is_causal = a->is_causal;
  ma->out = out;
}

fattn_status fattn_encoder_forward(fattn_context *ctx, const fattn_encoder *enc,
                                   const fattn_encoder_args *a) {
  int64_t rows = 0;
  fattn_status st = check_enc_args(enc, a, 1, 4, &rows);
  if (st != FATTN_SUCCESS) return st;
  const fattn_encoder_config *cfg = &enc->cfg;
  const int64_t E = cfg->embed_dim, F = cfg->dim_feedforward;
  fattn_context *c;
  if ((st = fattn__context_resolve(ctx, &c)) != FATTN_SUCCESS) return st;
  /* x: the running activations (rows × E), y: a normalised copy (pre-norm),
   * t: a sublayer's output, h: the FFN's hidden rows (rows × F) */
  const int64_t bytes = 3 * fattn__ws_piece_bytes(rows * E) + fattn__ws_piece_bytes(rows * F);
  int slot;
  void *mem;
  if ((st = fattn__workspace_acquire(c, (size_t)bytes, &slot, &mem)) != FATTN_SUCCESS) return st;
  float *x = mem, *y = (float *)((char *)mem + fattn__ws_piece_bytes(rows * E));
  float *t = (float *)((char *)y + fattn__ws_piece_bytes(rows * E));
  float *h = (float *)((char *)t + fattn__ws_piece_bytes(rows * E));
  memcpy(x, a->src, (size_t)(rows * E) * sizeof(float));
  const int nth_e = row_threads(c, rows * E);
  fattn_mha_args ma;
  sa_args(a, &ma, t);
  for (int64_t i = 0; st == FATTN_SUCCESS && i < cfg->num_layers; i++) {
    const enc_layer *l = &enc->layers[i];
    const float *sa_in = x;
    if (cfg->norm_first) { /* x = x + SA(LN1(x)) */
      add_norm(nth_e, rows, E, x, NULL, l->n1w, l->n1b, cfg->layer_norm_eps, y);
      sa_in = y;
    }
    ma.query = ma.key = ma.value = sa_in;
    if ((st = fattn_mha_forward(c, l->attn, &ma)) != FATTN_SUCCESS) break;
    const float *ff_in = x;
    if (cfg->norm_first) {
#pragma omp parallel for num_threads(nth_e) if (nth_e > 1) schedule(static)
      for (int64_t e = 0; e < rows * E; e++)
        x[e] += t[e];
      add_norm(nth_e, rows, E, x, NULL, l->n2w, l->n2b, cfg->layer_norm_eps, y);
      ff_in = y;
    } else { /* x = LN1(x + SA(x)) */
      add_norm(nth_e, rows, E, x, t, l->n1w, l->n1b, cfg->layer_norm_eps, x);
    }
    if ((st = fattn__gemm(c, rows, F, E, ff_in, E, l->w1, E, l->b1, h, F)) != FATTN_SUCCESS) break;
    activate(row_threads(c, rows * F), rows * F, h, cfg->activation);
    if ((st = fattn__gemm(c, rows, E, F, h, F, l->w2, F, l->b2, t, E)) != FATTN_SUCCESS) break;
    if (cfg->norm_first)
#pragma omp parallel for num_threads(nth_e) if (nth_e > 1) schedule(static)
      for (int64_t e = 0; e < rows * E; e++)
        x[e] += t[e];
    else /* x = LN2(x + FF(x)) */
      add_norm(nth_e, rows, E, x, t, l->n2w, l->n2b, cfg->layer_norm_eps, x);
  }
  if (st == FATTN_SUCCESS) memcpy(a->out, x, (size_t)(rows * E) * sizeof(float));
  fattn__workspace_done(c, slot, mem);
  return st;
}

/* ---- backward ------------------------------------------------------------------- */

void fattn_encoder_grads_init(fattn_encoder_grads *g) {
  if (g) memset(g, 0, sizeof *g);
}

static void put(float *dst, double v, int acc) { *dst = (float)(acc ? *dst + v : v); }

/* LayerNorm's backward, x the norm's input (rows × E): dx = inv · (g − mean(g)
 * − x̂ · mean(g · x̂)) with g = dy · w; dw (+)= Σ_rows dy · x̂, db (+)= Σ dy
 * (rows in order, in double: sums[2E] is scratch). dx may be dy. */
static void norm_backward(int nth, int64_t rows, int64_t E, const float *x, const float *w,
                          float eps, const float *dy, float *dx, float *dw, float *db, int acc,
                          double *sums) {
  (void)nth;
  if (dw || db) {
    for (int64_t e = 0; e < 2 * E; e++)
      sums[e] = 0;
    for (int64_t i = 0; i < rows; i++) { /* serial: a fixed order of the sums */
      const float *xr = x + i * E, *gr = dy + i * E;
      double mean;
      const double inv = row_stats(xr, E, eps, &mean);
      for (int64_t e = 0; e < E; e++) {
        sums[e] += (double)gr[e] * (((double)xr[e] - mean) * inv);
        sums[E + e] += gr[e];
      }
    }
    for (int64_t e = 0; dw && e < E; e++)
      put(&dw[e], sums[e], acc);
    for (int64_t e = 0; db && e < E; e++)
      put(&db[e], sums[E + e], acc);
  }
#pragma omp parallel for num_threads(nth) if (nth > 1) schedule(static)
  for (int64_t i = 0; i < rows; i++) {
    const float *xr = x + i * E, *gr = dy + i * E;
    float *dr = dx + i * E;
    double mean, sg = 0, sgx = 0;
    const double inv = row_stats(xr, E, eps, &mean);
    for (int64_t e = 0; e < E; e++) {
      const double g = (double)gr[e] * w[e];
      sg += g, sgx += g * ((double)xr[e] - mean) * inv;
    }
    sg /= (double)E, sgx /= (double)E;
    for (int64_t e = 0; e < E; e++) {
      const double g = (double)gr[e] * w[e], xh = ((double)xr[e] - mean) * inv;
      dr[e] = (float)(inv * (g - sg - xh * sgx));
    }
  }
}

/* dh ∘= act'(hpre) */
static void activation_backward(int nth, int64_t n, const float *hpre, float *dh,
                                fattn_activation act) {
  (void)nth;
  if (act == FATTN_RELU) {
#pragma omp parallel for num_threads(nth) if (nth > 1) schedule(static)
    for (int64_t i = 0; i < n; i++)
      dh[i] = hpre[i] > 0.0f ? dh[i] : 0.0f;
  } else { /* d/dx x·Φ(x) = Φ(x) + x·φ(x) */
#pragma omp parallel for num_threads(nth) if (nth > 1) schedule(static)
    for (int64_t i = 0; i < n; i++) {
      const float x = hpre[i];
      const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
      const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
      dh[i] *= cdf + x * pdf;
    }
  }
}

static int has_bias_grad(const fattn_encoder_layer_grads *g) {
  return g->self_attn.in_proj_bias || g->self_attn.out_proj_bias || g->linear1_bias ||
         g->linear2_bias || g->norm1_bias || g->norm2_bias;
}

fattn_status fattn_encoder_backward(fattn_context *ctx, const fattn_encoder *enc,
                                    const fattn_encoder_args *a, const fattn_encoder_grads *g) {
  int64_t rows = 0;
  const int64_t nl = enc ? enc->cfg.num_layers : 0;
  fattn_status st = check_enc_args(enc, a, 0, nl + 10, &rows);
  if (st != FATTN_SUCCESS) return st;
  if (!g || !g->dout)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "grads and grads->dout are required");
  const fattn_encoder_config *cfg = &enc->cfg;
  const int64_t E = cfg->embed_dim, F = cfg->dim_feedforward;
  for (int64_t i = 0; g->layers && i < nl; i++) {
    const fattn_encoder_layer_grads *lg = &g->layers[i];
    if (!cfg->bias && has_bias_grad(lg))
      return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                          "layer %lld: the encoder has no biases to differentiate", (long long)i);
    if (lg->self_attn.in_proj_weight &&
        (lg->self_attn.q_proj_weight || lg->self_attn.k_proj_weight || lg->self_attn.v_proj_weight))
      return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                          "layer %lld: give the gradient of in_proj_weight or those of "
                          "q/k/v_proj_weight, not both",
                          (long long)i);
  }
  fattn_context *c;
  if ((st = fattn__context_resolve(ctx, &c)) != FATTN_SUCCESS) return st;
  const int64_t n = rows * E, nf = rows * F;
  /* workspace: the layers' inputs (nl · n), then per layer u / y1, s, x1, v
   * (n each), hpre, h (nf), the gradients gx, g1, g2 (n), gh (nf), the norms'
   * sums (2E doubles) and the GEMMs' */
  int64_t gb = 0;
  const int64_t shapes[][3] = {{rows, F, E}, {rows, E, F}, {E, F, rows}, {F, E, rows}};
  for (int i = 0; i < 4; i++) {
    const int64_t b = fattn__gemm_workspace_bytes(c, shapes[i][0], shapes[i][1], shapes[i][2]);
    if (b > gb) gb = b;
  }
  const int64_t pn = fattn__ws_piece_bytes(n), pf = fattn__ws_piece_bytes(nf);
  const int64_t bytes =
      (nl + 7) * pn + 3 * pf + fattn__ws_piece_bytes(4 * E) + fattn__ws_piece_bytes(gb / 4 + 1);
  int slot;
  void *mem;
  if ((st = fattn__workspace_acquire(c, (size_t)bytes, &slot, &mem)) != FATTN_SUCCESS) return st;
  char *p = mem;
  float *xs = (float *)p; /* layer i's input at xs + i · (pn / 4) */
  p += nl * pn;
  float *U = fattn__ws_carve(&p, n), *S = fattn__ws_carve(&p, n), *X1 = fattn__ws_carve(&p, n);
  float *V = fattn__ws_carve(&p, n), *GX = fattn__ws_carve(&p, n), *G1 = fattn__ws_carve(&p, n);
  float *G2 = fattn__ws_carve(&p, n);
  float *HP = fattn__ws_carve(&p, nf), *Hh = fattn__ws_carve(&p, nf), *GH = fattn__ws_carve(&p, nf);
  double *sums = (double *)(void *)fattn__ws_carve(&p, 4 * E);
  void *gws = p;
  const int nth_e = row_threads(c, n), nth_f = row_threads(c, nf);
  const float eps = cfg->layer_norm_eps;
  const int acc = g->accumulate != 0;
  const fattn__gemm_form plain = {0, 0, 0}, dx_form = {0, 1, 0};
  const fattn__gemm_form dw_form = {1, 1, acc};
  fattn_mha_args ma;

  /* the forward, keeping each layer's input */
  memcpy(xs, a->src, (size_t)n * sizeof(float));
  for (int64_t i = 0; st == FATTN_SUCCESS && i + 1 < nl; i++) {
    fattn_encoder_args one = *a;
    one.src = xs + i * (pn / 4);
    one.out = xs + (i + 1) * (pn / 4);
    fattn_encoder e1 = *enc;
    e1.cfg.num_layers = 1;
    e1.layers = enc->layers + i;
    st = fattn_encoder_forward(c, &e1, &one);
  }
  if (g->dout && st == FATTN_SUCCESS) memcpy(GX, g->dout, (size_t)n * sizeof(float));

  for (int64_t i = nl - 1; st == FATTN_SUCCESS && i >= 0; i--) {
    const enc_layer *l = &enc->layers[i];
    const fattn_encoder_layer_grads *lg = g->layers ? &g->layers[i] : NULL;
    const float *x = xs + i * (pn / 4);
    /* recompute the layer */
    const float *sa_in = x, *ff_in;
    if (cfg->norm_first) {
      add_norm(nth_e, rows, E, (float *)x, NULL, l->n1w, l->n1b, eps, U); /* y1 (x unchanged) */
      sa_in = U;
    }
    sa_args(a, &ma, S);
    ma.query = ma.key = ma.value = sa_in;
    if ((st = fattn_mha_forward(c, l->attn, &ma)) != FATTN_SUCCESS) break;
    for (int64_t e = 0; e < n; e++)
      X1[e] = x[e] + S[e]; /* post: u (normed below), pre: x1 */
    if (cfg->norm_first) {
      add_norm(nth_e, rows, E, X1, NULL, l->n2w, l->n2b, eps, V); /* y2 */
      ff_in = V;
    } else {
      memcpy(V, X1, (size_t)n * sizeof(float)); /* V: u, the norm's input */
      add_norm(nth_e, rows, E, X1, NULL, l->n1w, l->n1b, eps, X1);
      ff_in = X1;
    }
    fattn__gemm_ex(c, rows, F, E, ff_in, E, l->w1, E, l->b1, HP, F, plain, gws);
    memcpy(Hh, HP, (size_t)nf * sizeof(float));
    activate(nth_f, nf, Hh, cfg->activation);
    float *dff = GX;        /* the gradient reaching FF's output */
    if (!cfg->norm_first) { /* out = LN2(x1 + f): the norm's input, x1 + f, into S */
      fattn__gemm_ex(c, rows, E, F, Hh, F, l->w2, F, l->b2, S, E, plain, gws);
      for (int64_t e = 0; e < n; e++)
        S[e] += X1[e];
      norm_backward(nth_e, rows, E, S, l->n2w, eps, GX, G1, lg ? lg->norm2_weight : NULL,
                    lg ? lg->norm2_bias : NULL, acc, sums);
      dff = G1;
    }
    /* FF's backward: dW2, db2, dh; act'; dW1, db1; d(ff_in) into G2 */
    if (lg && lg->linear2_weight)
      fattn__gemm_ex(c, E, F, rows, dff, E, Hh, F, NULL, lg->linear2_weight, F, dw_form, gws);
    if (lg && lg->linear2_bias) fattn__col_sums(rows, E, dff, E, lg->linear2_bias, acc);
    fattn__gemm_ex(c, rows, F, E, dff, E, l->w2, F, NULL, GH, F, dx_form, gws);
    activation_backward(nth_f, nf, HP, GH, cfg->activation);
    if (lg && lg->linear1_weight)
      fattn__gemm_ex(c, F, E, rows, GH, F, ff_in, E, NULL, lg->linear1_weight, E, dw_form, gws);
    if (lg && lg->linear1_bias) fattn__col_sums(rows, F, GH, F, lg->linear1_bias, acc);
    fattn__gemm_ex(c, rows, E, F, GH, F, l->w1, E, NULL, G2, E, dx_form, gws);
    float *dsa;            /* the gradient reaching SA's output */
    if (cfg->norm_first) { /* out = x1 + f, f = FF(LN2(x1)): d(x1) = g + LN2'(d y2) */
      norm_backward(nth_e, rows, E, X1, l->n2w, eps, G2, G2, lg ? lg->norm2_weight : NULL,
                    lg ? lg->norm2_bias : NULL, acc, sums);
      for (int64_t e = 0; e < n; e++)
        G2[e] += GX[e];
      dsa = G2; /* and the residual's part of d(x) */
    } else {    /* x1 = LN1(u): d(x1) = dv + d(ff_in); du = LN1'(d x1) */
      for (int64_t e = 0; e < n; e++)
        G2[e] += G1[e];
      norm_backward(nth_e, rows, E, V, l->n1w, eps, G2, G2, lg ? lg->norm1_weight : NULL,
                    lg ? lg->norm1_bias : NULL, acc, sums);
      dsa = G2; /* du: both the residual's and SA's output gradient */
    }
    /* SA's backward: d(sa_in) into G1 */
    fattn_mha_grads mg;
    fattn_mha_grads_init(&mg);
    mg.dout = dsa;
    mg.dquery = G1;
    if (lg) mg.params = lg->self_attn;
    mg.accumulate = acc; /* for the parameters: d(sa_in) is added to a zero G1 */
    if (acc) memset(G1, 0, (size_t)n * sizeof(float));
    if ((st = fattn_mha_backward(c, l->attn, &ma, &mg)) != FATTN_SUCCESS) break;
    if (cfg->norm_first) /* d(y1) → LN1'(d y1), the norm's share of d(x) */
      norm_backward(nth_e, rows, E, x, l->n1w, eps, G1, G1, lg ? lg->norm1_weight : NULL,
                    lg ? lg->norm1_bias : NULL, acc, sums);
    for (int64_t e = 0; e < n; e++) /* d(x) = the residual's share + the sublayer's */
      GX[e] = G2[e] + G1[e];
  }
  if (st == FATTN_SUCCESS && g->dsrc)
    for (int64_t e = 0; e < n; e++)
      put(&g->dsrc[e], GX[e], acc);
  fattn__workspace_done(c, slot, mem);
  return st;
}

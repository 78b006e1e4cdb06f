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
    double mean = 0, var = 0;
    for (int64_t e = 0; e < E; e++)
      mean += xr[e];
    mean /= (double)E;
    for (int64_t e = 0; e < E; e++)
      var += ((double)xr[e] - mean) * ((double)xr[e] - mean);
    const double inv = 1.0 / sqrt(var / (double)E + (double)eps);
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

fattn_status fattn_encoder_forward(fattn_context *ctx, const fattn_encoder *enc,
                                   const fattn_encoder_args *a) {
  if (!enc || !a) return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "enc or args is NULL");
  if (!a->src || !a->out)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "src and out are required");
  const fattn_encoder_config *cfg = &enc->cfg;
  const int64_t E = cfg->embed_dim, F = cfg->dim_feedforward;
  int64_t rows, hid;
  if (a->batch <= 0 || a->seq_len <= 0)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "batch and seq_len must be positive");
  if (!fattn__mul_ok(a->batch, a->seq_len, &rows) || !fattn__mul_ok(rows, F > E ? F : E, &hid) ||
      hid > INT64_MAX / 64) /* four pieces of at most hid floats: bytes stay in int64 */
    return fattn__error(FATTN_ERROR_OVERFLOW, "batch %lld × seq_len %lld overflows",
                        (long long)a->batch, (long long)a->seq_len);
  if ((a->src_key_padding_mask && a->src_key_padding_mask_dtype != FATTN_U8 &&
       a->src_key_padding_mask_dtype != FATTN_F32) ||
      (a->mask && a->mask_dtype != FATTN_U8 && a->mask_dtype != FATTN_F32))
    return fattn__error(FATTN_ERROR_UNSUPPORTED, "masks are U8 (bool) or F32");
  fattn_context *c;
  fattn_status st = fattn__context_resolve(ctx, &c);
  if (st != FATTN_SUCCESS) return st;
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
  fattn_mha_args_init(&ma);
  ma.batch = a->batch, ma.q_len = ma.kv_len = a->seq_len;
  ma.key_padding_mask = a->src_key_padding_mask;
  ma.key_padding_mask_dtype = a->src_key_padding_mask_dtype;
  ma.attn_mask = a->mask;
  ma.attn_mask_dtype = a->mask_dtype;
  ma.is_causal = a->is_causal;
  ma.out = t;
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

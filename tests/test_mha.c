/* The layers against PyTorch: fattn_mha and fattn_encoder on the reference
 * vectors in tests/data (written by tests/data/make_mha_vectors.py from
 * nn.MultiheadAttention / nn.TransformerEncoder, PyTorch 1.13, f32), plus the
 * properties PyTorch has no layer for (head pruning) and every bad
 * configuration.
 *
 * Tolerance: |fattn − torch| <= TOL_ABS + TOL_REL·|torch| per element, both
 * sides f32 with sums of at most ~100 products of magnitude ~1 in a different
 * order (a few 1e-6 expected); the encoder's LayerNorms divide by the rows'
 * standard deviation, so its bound is looser. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

#define TOL_ABS 2e-5
#define TOL_REL 2e-5
#define ENC_TOL_ABS 1e-4
#define ENC_TOL_REL 1e-4

typedef struct tensor {
  char name[48];
  uint32_t dtype, ndim;
  int64_t dims[4], n;
  void *data;
} tensor;

typedef struct vecfile {
  char name[64];
  tensor t[64];
  int count;
} vecfile;

static int checks;

static int load(const char *name, vecfile *f) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s.fvec", FATTN_TEST_DATA_DIR, name);
  snprintf(f->name, sizeof f->name, "%s", name);
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    fprintf(stderr, "FAIL cannot open %s\n", path);
    return 0;
  }
  char magic[4];
  uint32_t hdr[2];
  int ok = fread(magic, 1, 4, fp) == 4 && memcmp(magic, "FVEC", 4) == 0 &&
           fread(hdr, 4, 2, fp) == 2 && hdr[0] == 1 && hdr[1] <= 64;
  f->count = ok ? (int)hdr[1] : 0;
  for (int i = 0; ok && i < f->count; i++) {
    tensor *t = &f->t[i];
    uint32_t dt[2];
    ok = fread(t->name, 1, 48, fp) == 48 && fread(dt, 4, 2, fp) == 2 &&
         fread(t->dims, 8, 4, fp) == 4;
    t->name[47] = 0;
    t->dtype = dt[0], t->ndim = dt[1];
    t->n = t->dims[0] * t->dims[1] * t->dims[2] * t->dims[3];
    const size_t es = t->dtype == 1 ? 1 : 4;
    t->data = ok ? malloc((size_t)t->n * es) : NULL;
    ok = ok && t->data && fread(t->data, es, (size_t)t->n, fp) == (size_t)t->n;
  }
  fclose(fp);
  EXPECT(ok, "%s: unreadable", path);
  return ok;
}

static void unload(vecfile *f) {
  for (int i = 0; i < f->count; i++)
    free(f->t[i].data);
}

static tensor *get(vecfile *f, const char *name) {
  for (int i = 0; i < f->count; i++)
    if (!strcmp(f->t[i].name, name)) return &f->t[i];
  return NULL;
}
static const float *getf(vecfile *f, const char *name) {
  tensor *t = get(f, name);
  return t ? t->data : NULL;
}
static int64_t cfg(vecfile *f, const char *name) {
  char key[64];
  snprintf(key, sizeof key, "cfg_%s", name);
  const float *v = getf(f, key);
  return v ? (int64_t)v[0] : -1;
}

/* max over elements of |a − r| / (abs + rel·|r|): <= 1 passes */
static double compare(const float *a, const float *r, int64_t n, double abs_tol, double rel_tol) {
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    const double e = fabs((double)a[i] - r[i]) / (abs_tol + rel_tol * fabs(r[i]));
    if (!(e <= worst)) worst = e; /* NaN sticks */
  }
  return worst;
}

static fattn_status create_mha(vecfile *f, fattn_mha **m) {
  fattn_mha_config c;
  fattn_mha_config_init(&c, cfg(f, "embed_dim"), cfg(f, "num_heads"));
  c.num_kv_heads = cfg(f, "num_kv_heads");
  c.kdim = cfg(f, "kdim");
  c.vdim = cfg(f, "vdim");
  c.bias = (int)cfg(f, "bias");
  c.batch_first = (int)cfg(f, "batch_first");
  fattn_mha_weights w = {0};
  w.in_proj_weight = getf(f, "in_proj_weight");
  w.q_proj_weight = getf(f, "q_proj_weight");
  w.k_proj_weight = getf(f, "k_proj_weight");
  w.v_proj_weight = getf(f, "v_proj_weight");
  w.in_proj_bias = getf(f, "in_proj_bias");
  w.out_proj_weight = getf(f, "out_proj.weight");
  w.out_proj_bias = getf(f, "out_proj.bias");
  *m = NULL;
  return fattn_mha_create(&c, &w, m);
}

static fattn_mha *make_mha(vecfile *f) {
  fattn_mha *m;
  EXPECT(create_mha(f, &m) == FATTN_SUCCESS, "%s: create: %s", f->name, fattn_last_error());
  return m;
}

static void mha_args(vecfile *f, fattn_mha_args *a, float *out, float *weights) {
  fattn_mha_args_init(a);
  a->query = getf(f, "query");
  /* self-attention: the same buffer, as PyTorch callers pass it */
  a->key = cfg(f, "self_attn") ? a->query : getf(f, "key");
  a->value = cfg(f, "self_attn") ? a->query : getf(f, "value");
  a->batch = cfg(f, "batch");
  a->q_len = cfg(f, "q_len");
  a->kv_len = cfg(f, "kv_len");
  tensor *kp = get(f, "key_padding_mask"), *am = get(f, "attn_mask");
  if (kp)
    a->key_padding_mask = kp->data, a->key_padding_mask_dtype = kp->dtype ? FATTN_U8 : FATTN_F32;
  if (am) {
    a->attn_mask = am->data;
    a->attn_mask_dtype = am->dtype ? FATTN_U8 : FATTN_F32;
    a->attn_mask_per_head = am->ndim == 3;
  }
  a->is_causal = (int)cfg(f, "is_causal");
  a->out = out;
  a->attn_weights = weights;
  a->average_attn_weights = (int)cfg(f, "average");
}

/* Creates the file's layer, runs it into out / w, destroys it. */
static fattn_status run_mha(vecfile *f, fattn_context *ctx, float *out, float *w) {
  fattn_mha *m;
  fattn_status st = create_mha(f, &m);
  if (st != FATTN_SUCCESS) return st;
  fattn_mha_args a;
  mha_args(f, &a, out, w);
  st = fattn_mha_forward(ctx, m, &a);
  fattn_mha_destroy(m);
  return st;
}

static void test_mha_file(const char *name, fattn_context *ctx) {
  vecfile f;
  if (!load(name, &f)) return;
  tensor *ro = get(&f, "out"), *rw = get(&f, "attn_weights");
  float *out = calloc((size_t)ro->n, sizeof(float));
  float *w = rw ? calloc((size_t)rw->n, sizeof(float)) : NULL;
  EXPECT(run_mha(&f, ctx, out, w) == FATTN_SUCCESS, "%s: %s", name, fattn_last_error());
  const double eo = compare(out, ro->data, ro->n, TOL_ABS, TOL_REL);
  const double ew = rw ? compare(w, rw->data, rw->n, TOL_ABS, TOL_REL) : 0;
  EXPECT(eo <= 1 && ew <= 1, "%s: out err/tol %.3g, weights err/tol %.3g", name, eo, ew);
  printf("%-36s out err/tol %.3f%s", name, eo, rw ? "" : "\n");
  if (rw) printf("  weights (%s) err/tol %.3f\n", cfg(&f, "average") ? "avg" : "per head", ew);
  checks++;
  free(out);
  free(w);
  unload(&f);
}

/* ---- the layer's backward against autograd ---- */

/* The gradients a file holds (grad_*), in the order of `names`; bufs[i]
 * NULL where the file has none. */
static const char *const bw_names[] = {
    "grad_in_proj_weight", "grad_q_proj_weight", "grad_k_proj_weight",
    "grad_v_proj_weight",  "grad_in_proj_bias",  "grad_out_proj.weight",
    "grad_out_proj.bias",  "grad_query",         "grad_key",
    "grad_value"};
enum { BW_N = 10 };

static void bw_grads(vecfile *f, float *const *bufs, fattn_mha_grads *g) {
  fattn_mha_grads_init(g);
  g->dout = getf(f, "dout");
  float **dst[BW_N] = {&g->params.in_proj_weight,
                       &g->params.q_proj_weight,
                       &g->params.k_proj_weight,
                       &g->params.v_proj_weight,
                       &g->params.in_proj_bias,
                       &g->params.out_proj_weight,
                       &g->params.out_proj_bias,
                       &g->dquery,
                       &g->dkey,
                       &g->dvalue};
  for (int i = 0; i < BW_N; i++)
    *dst[i] = bufs[i];
}

/* Runs the file's backward into bufs (accumulate as given). */
static fattn_status run_mha_backward(vecfile *f, fattn_context *ctx, float *const *bufs, int acc,
                                     const uint8_t *keep) {
  fattn_mha *m;
  fattn_status st = create_mha(f, &m);
  if (st != FATTN_SUCCESS) return st;
  fattn_mha_args a;
  mha_args(f, &a, NULL, NULL);
  a.head_mask = keep;
  fattn_mha_grads g;
  bw_grads(f, bufs, &g);
  g.accumulate = acc;
  st = fattn_mha_backward(ctx, m, &a, &g);
  fattn_mha_destroy(m);
  return st;
}

/* Every gradient against autograd's; then accumulate (a second call adds:
 * twice autograd's), and bitwise the same on a 3-thread context. */
static void test_mha_backward_file(const char *name, fattn_context *ctx, int threads_check) {
  vecfile f;
  if (!load(name, &f)) return;
  float *bufs[BW_N], *again[BW_N];
  tensor *ref[BW_N];
  for (int i = 0; i < BW_N; i++) {
    ref[i] = get(&f, bw_names[i]);
    bufs[i] = ref[i] ? malloc((size_t)ref[i]->n * 4) : NULL;
    again[i] = ref[i] ? malloc((size_t)ref[i]->n * 4) : NULL;
    for (int64_t x = 0; ref[i] && x < ref[i]->n; x++)
      bufs[i][x] = 555.0f; /* overwritten, not added to */
  }
  fattn_status st = run_mha_backward(&f, ctx, bufs, 0, NULL);
  EXPECT(st == FATTN_SUCCESS, "%s backward: %s", name, fattn_last_error());
  double worst = 0, worst_acc = 0;
  for (int i = 0; i < BW_N; i++)
    if (ref[i]) {
      const double e = compare(bufs[i], ref[i]->data, ref[i]->n, TOL_ABS, TOL_REL);
      EXPECT(e <= 1, "%s: %s err/tol %.3g", name, bw_names[i], e);
      if (!(e <= worst)) worst = e;
    }
  st = run_mha_backward(&f, ctx, bufs, 1, NULL);
  EXPECT(st == FATTN_SUCCESS, "%s backward (accumulate): %s", name, fattn_last_error());
  for (int i = 0; i < BW_N; i++)
    if (ref[i]) {
      float *twice = malloc((size_t)ref[i]->n * 4);
      for (int64_t x = 0; x < ref[i]->n; x++)
        twice[x] = 2.0f * ((const float *)ref[i]->data)[x];
      const double e = compare(bufs[i], twice, ref[i]->n, 2 * TOL_ABS, TOL_REL);
      EXPECT(e <= 1, "%s: accumulated %s err/tol %.3g", name, bw_names[i], e);
      if (!(e <= worst_acc)) worst_acc = e;
      free(twice);
    }
  int same = 1;
  if (threads_check) {
    fattn_context_options o;
    fattn_context_options_init(&o);
    o.num_threads = 3;
    fattn_context *c3 = NULL;
    EXPECT(fattn_context_create(&o, &c3) == FATTN_SUCCESS, "context");
    fattn_context_options_init(&o);
    o.num_threads = 1;
    fattn_context *c1 = NULL;
    EXPECT(fattn_context_create(&o, &c1) == FATTN_SUCCESS, "context");
    EXPECT(run_mha_backward(&f, c1, bufs, 0, NULL) == FATTN_SUCCESS, "1 thread");
    EXPECT(run_mha_backward(&f, c3, again, 0, NULL) == FATTN_SUCCESS, "3 threads");
    for (int i = 0; i < BW_N; i++)
      if (ref[i]) same &= memcmp(bufs[i], again[i], (size_t)ref[i]->n * 4) == 0;
    EXPECT(same, "%s backward: 1 and 3 threads differ", name);
    fattn_context_destroy(c1);
    fattn_context_destroy(c3);
  }
  printf("%-36s backward err/tol %.3f, accumulated %.3f%s\n", name, worst, worst_acc,
         threads_check ? (same ? ", 1 = 3 threads bitwise" : ", THREADS DIFFER") : "");
  checks++;
  for (int i = 0; i < BW_N; i++)
    free(bufs[i]), free(again[i]);
  unload(&f);
}

/* A pruned head gives zeros to its q rows of in_proj_weight / bias and its
 * out_proj columns, and the gradients are those of the layer whose
 * out_proj columns of that head are zero (the forward's property). */
static void test_backward_head_mask(fattn_context *ctx, const char *name, const uint8_t *keep) {
  vecfile f;
  if (!load(name, &f)) return;
  const int64_t E = cfg(&f, "embed_dim"), H = cfg(&f, "num_heads"), hd = E / H;
  float *b1[BW_N], *b2[BW_N];
  tensor *ref[BW_N];
  for (int i = 0; i < BW_N; i++) {
    ref[i] = get(&f, bw_names[i]);
    b1[i] = ref[i] ? calloc((size_t)ref[i]->n, 4) : NULL;
    b2[i] = ref[i] ? calloc((size_t)ref[i]->n, 4) : NULL;
  }
  EXPECT(run_mha_backward(&f, ctx, b1, 0, keep) == FATTN_SUCCESS, "pruned: %s", fattn_last_error());
  float *wo = (float *)getf(&f, "out_proj.weight");
  for (int64_t r = 0; r < E; r++)
    for (int64_t h = 0; h < H; h++)
      if (!keep[h]) memset(wo + r * E + h * hd, 0, (size_t)hd * 4);
  EXPECT(run_mha_backward(&f, ctx, b2, 0, NULL) == FATTN_SUCCESS, "zeroed: %s", fattn_last_error());
  int ok = 1;
  for (int i = 0; i < BW_N; i++) {
    if (!ref[i] || i == 5) continue; /* out_proj's gradient: below */
    for (int64_t x = 0; x < ref[i]->n; x++)
      ok &= fabsf(b1[i][x] - b2[i][x]) <= 1e-5f * (1.0f + fabsf(b2[i][x]));
  }
  int zeros = 1;
  for (int64_t r = 0; r < E; r++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t c = 0; c < hd; c++) {
        if (keep[h]) continue;
        zeros &= b1[5][r * E + h * hd + c] == 0.0f;              /* out_proj column */
        if (b1[0]) zeros &= b1[0][(h * hd + c) * E + r] == 0.0f; /* q rows of in_proj */
      }
  EXPECT(ok && zeros, "%s backward head_mask: same as zeroed out_proj %d, zeros %d", name, ok,
         zeros);
  printf("head_mask %-26s backward: = zeroed out_proj columns, pruned rows 0\n", name);
  checks++;
  for (int i = 0; i < BW_N; i++)
    free(b1[i]), free(b2[i]);
  unload(&f);
}

/* The file's encoder and its forward arguments (out as given). */
static fattn_status make_encoder(vecfile *f, fattn_encoder **enc, fattn_encoder_args *a,
                                 float *out) {
  fattn_encoder_config c;
  fattn_encoder_config_init(&c, cfg(f, "embed_dim"), cfg(f, "num_heads"));
  c.dim_feedforward = cfg(f, "dim_feedforward");
  c.num_layers = cfg(f, "layers");
  c.norm_first = (int)cfg(f, "norm_first");
  c.activation = cfg(f, "gelu") ? FATTN_GELU : FATTN_RELU;
  c.batch_first = (int)cfg(f, "batch_first");
  fattn_encoder_layer_weights lw[4];
  memset(lw, 0, sizeof lw);
  for (int64_t i = 0; i < c.num_layers && i < 4; i++) {
    char k[96];
#define W(field, suffix)                                                                           \
  (snprintf(k, sizeof k, "layers.%lld.%s", (long long)i, suffix), lw[i].field = getf(f, k))
    W(self_attn.in_proj_weight, "self_attn.in_proj_weight");
    W(self_attn.in_proj_bias, "self_attn.in_proj_bias");
    W(self_attn.out_proj_weight, "self_attn.out_proj.weight");
    W(self_attn.out_proj_bias, "self_attn.out_proj.bias");
    W(linear1_weight, "linear1.weight");
    W(linear1_bias, "linear1.bias");
    W(linear2_weight, "linear2.weight");
    W(linear2_bias, "linear2.bias");
    W(norm1_weight, "norm1.weight");
    W(norm1_bias, "norm1.bias");
    W(norm2_weight, "norm2.weight");
    W(norm2_bias, "norm2.bias");
#undef W
  }
  *enc = NULL;
  fattn_status st = fattn_encoder_create(&c, lw, enc);
  if (st != FATTN_SUCCESS) return st;
  tensor *kp = get(f, "src_key_padding_mask");
  fattn_encoder_args_init(a);
  a->src = getf(f, "src");
  a->batch = cfg(f, "batch");
  a->seq_len = cfg(f, "seq_len");
  if (kp) a->src_key_padding_mask = kp->data;
  a->is_causal = (int)cfg(f, "is_causal");
  a->out = out;
  return FATTN_SUCCESS;
}

/* Creates the file's encoder, runs it into out, destroys it. */
static fattn_status run_encoder(vecfile *f, fattn_context *ctx, float *out, float *unused) {
  (void)unused;
  fattn_encoder *enc;
  fattn_encoder_args a;
  fattn_status st = make_encoder(f, &enc, &a, out);
  if (st != FATTN_SUCCESS) return st;
  st = fattn_encoder_forward(ctx, enc, &a);
  fattn_encoder_destroy(enc);
  return st;
}

/* The encoder's backward against autograd: every parameter's gradient and
 * src's; accumulate; 1 and 3 threads bitwise (threads_check). */
enum { ENC_BW = 12, ENC_MAXL = 4 };
static const char *const enc_bw_names[ENC_BW] = {"self_attn.in_proj_weight",
                                                 "self_attn.in_proj_bias",
                                                 "self_attn.out_proj.weight",
                                                 "self_attn.out_proj.bias",
                                                 "linear1.weight",
                                                 "linear1.bias",
                                                 "linear2.weight",
                                                 "linear2.bias",
                                                 "norm1.weight",
                                                 "norm1.bias",
                                                 "norm2.weight",
                                                 "norm2.bias"};

static fattn_status run_encoder_backward(vecfile *f, fattn_context *ctx, float *bufs[][ENC_BW],
                                         float *dsrc, int acc) {
  fattn_encoder *enc;
  fattn_encoder_args a;
  fattn_status st = make_encoder(f, &enc, &a, NULL);
  if (st != FATTN_SUCCESS) return st;
  fattn_encoder_layer_grads lg[ENC_MAXL];
  memset(lg, 0, sizeof lg);
  for (int64_t i = 0; i < cfg(f, "layers") && i < ENC_MAXL; i++) {
    float **dst[ENC_BW] = {&lg[i].self_attn.in_proj_weight,
                           &lg[i].self_attn.in_proj_bias,
                           &lg[i].self_attn.out_proj_weight,
                           &lg[i].self_attn.out_proj_bias,
                           &lg[i].linear1_weight,
                           &lg[i].linear1_bias,
                           &lg[i].linear2_weight,
                           &lg[i].linear2_bias,
                           &lg[i].norm1_weight,
                           &lg[i].norm1_bias,
                           &lg[i].norm2_weight,
                           &lg[i].norm2_bias};
    for (int k = 0; k < ENC_BW; k++)
      *dst[k] = bufs[i][k];
  }
  fattn_encoder_grads g;
  fattn_encoder_grads_init(&g);
  g.dout = getf(f, "dout");
  g.dsrc = dsrc;
  g.layers = lg;
  g.accumulate = acc;
  st = fattn_encoder_backward(ctx, enc, &a, &g);
  fattn_encoder_destroy(enc);
  return st;
}

static void test_encoder_backward_file(const char *name, fattn_context *ctx, int threads_check) {
  vecfile f;
  if (!load(name, &f)) return;
  const int64_t nl = cfg(&f, "layers");
  float *bufs[ENC_MAXL][ENC_BW] = {{0}}, *again[ENC_MAXL][ENC_BW] = {{0}};
  tensor *ref[ENC_MAXL][ENC_BW] = {{0}}, *rsrc = get(&f, "grad_src");
  for (int64_t i = 0; i < nl && i < ENC_MAXL; i++)
    for (int k = 0; k < ENC_BW; k++) {
      char key[96];
      snprintf(key, sizeof key, "grad_layers.%lld.%s", (long long)i, enc_bw_names[k]);
      ref[i][k] = get(&f, key);
      EXPECT(ref[i][k] != NULL, "%s: no %s", name, key);
      if (!ref[i][k]) continue;
      bufs[i][k] = malloc((size_t)ref[i][k]->n * 4);
      again[i][k] = malloc((size_t)ref[i][k]->n * 4);
      for (int64_t x = 0; x < ref[i][k]->n; x++)
        bufs[i][k][x] = 555.0f;
    }
  float *dsrc = malloc((size_t)rsrc->n * 4), *dsrc2 = malloc((size_t)rsrc->n * 4);
  double worst = 0, worst_acc = 0;
  for (int pass = 0; pass < 2; pass++) { /* overwrite, then accumulate: twice autograd's */
    EXPECT(run_encoder_backward(&f, ctx, bufs, dsrc, pass) == FATTN_SUCCESS, "%s backward: %s",
           name, fattn_last_error());
    double *w = pass ? &worst_acc : &worst;
    for (int64_t i = 0; i <= nl && i < ENC_MAXL; i++)
      for (int k = 0; k < ENC_BW; k++) {
        const tensor *r = i == nl ? (k ? NULL : rsrc) : ref[i][k];
        const float *got = i == nl ? dsrc : bufs[i][k];
        if (!r) continue;
        float *want = malloc((size_t)r->n * 4);
        for (int64_t x = 0; x < r->n; x++) /* dsrc is overwritten by the second pass too */
          want[x] = (pass && i < nl ? 2.0f : 1.0f) * ((const float *)r->data)[x];
        if (pass && i == nl) { /* dsrc accumulated: its first value + autograd's */
          for (int64_t x = 0; x < r->n; x++)
            want[x] *= 2.0f;
        }
        const double e = compare(got, want, r->n, ENC_TOL_ABS, ENC_TOL_REL);
        EXPECT(e <= 1, "%s: %s %s err/tol %.3g", name, i == nl ? "src" : enc_bw_names[k],
               pass ? "accumulated" : "", e);
        if (!(e <= *w)) *w = e;
        free(want);
      }
  }
  int same = 1;
  if (threads_check) {
    fattn_context_options o;
    fattn_context_options_init(&o);
    o.num_threads = 3;
    fattn_context *c3 = NULL, *c1 = NULL;
    EXPECT(fattn_context_create(&o, &c3) == FATTN_SUCCESS, "context");
    o.num_threads = 1;
    EXPECT(fattn_context_create(&o, &c1) == FATTN_SUCCESS, "context");
    EXPECT(run_encoder_backward(&f, c1, bufs, dsrc, 0) == FATTN_SUCCESS, "1 thread");
    EXPECT(run_encoder_backward(&f, c3, again, dsrc2, 0) == FATTN_SUCCESS, "3 threads");
    same = memcmp(dsrc, dsrc2, (size_t)rsrc->n * 4) == 0;
    for (int64_t i = 0; i < nl && i < ENC_MAXL; i++)
      for (int k = 0; k < ENC_BW; k++)
        if (ref[i][k]) same &= memcmp(bufs[i][k], again[i][k], (size_t)ref[i][k]->n * 4) == 0;
    EXPECT(same, "%s backward: 1 and 3 threads differ", name);
    fattn_context_destroy(c1);
    fattn_context_destroy(c3);
  }
  printf("%-36s backward err/tol %.3f, accumulated %.3f%s\n", name, worst, worst_acc,
         threads_check ? (same ? ", 1 = 3 threads bitwise" : ", THREADS DIFFER") : "");
  checks++;
  for (int64_t i = 0; i < ENC_MAXL; i++)
    for (int k = 0; k < ENC_BW; k++)
      free(bufs[i][k]), free(again[i][k]);
  free(dsrc), free(dsrc2);
  unload(&f);
}

static void test_encoder_file(const char *name, fattn_context *ctx) {
  vecfile f;
  if (!load(name, &f)) return;
  tensor *ro = get(&f, "out");
  float *out = calloc((size_t)ro->n, sizeof(float));
  EXPECT(run_encoder(&f, ctx, out, NULL) == FATTN_SUCCESS, "%s: %s", name, fattn_last_error());
  const double e = compare(out, ro->data, ro->n, ENC_TOL_ABS, ENC_TOL_REL);
  EXPECT(e <= 1, "%s: out err/tol %.3g", name, e);
  printf("%-36s out err/tol %.3f\n", name, e);
  checks++;
  free(out);
  unload(&f);
}

/* A pruned head contributes zeros: the same bits as zeroing its columns of
 * out_proj.weight; its per-head weights are 0 and the others unchanged. */
static void test_head_mask(fattn_context *ctx, const char *name, const uint8_t *keep) {
  vecfile f;
  if (!load(name, &f)) return;
  const int64_t E = cfg(&f, "embed_dim"), H = cfg(&f, "num_heads"), hd = E / H;
  tensor *ro = get(&f, "out"), *rw = get(&f, "attn_weights");
  float *o1 = calloc((size_t)ro->n, 4), *o2 = calloc((size_t)ro->n, 4);
  float *w1 = calloc((size_t)rw->n, 4), *w2 = calloc((size_t)rw->n, 4);
  fattn_mha *m = make_mha(&f);
  fattn_mha_args a;
  mha_args(&f, &a, o1, w1);
  a.head_mask = keep;
  EXPECT(m && fattn_mha_forward(ctx, m, &a) == FATTN_SUCCESS, "pruned: %s", fattn_last_error());
  float *wo = (float *)getf(&f, "out_proj.weight");
  for (int64_t r = 0; r < E; r++)
    for (int64_t h = 0; h < H; h++)
      if (!keep[h]) memset(wo + r * E + h * hd, 0, (size_t)hd * 4);
  fattn_mha *m0 = make_mha(&f);
  mha_args(&f, &a, o2, w2);
  EXPECT(m0 && fattn_mha_forward(ctx, m0, &a) == FATTN_SUCCESS, "zeroed: %s", fattn_last_error());
  EXPECT(memcmp(o1, o2, (size_t)ro->n * 4) == 0, "%s: pruned heads != zeroed out_proj columns",
         name);
  const int64_t B = cfg(&f, "batch"), per = rw->n / (B * H);
  int wok = 1;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t x = 0; x < per; x++) {
        const int64_t i = (b * H + h) * per + x;
        wok &= !keep[h] ? w1[i] == 0.0f : w1[i] == w2[i];
      }
  EXPECT(wok, "pruned head's weights are not 0, or others changed");
  checks += 2;
  printf("head_mask %-26s pruned heads == zeroed out_proj columns (bitwise), weights 0\n", name);
  free(o1), free(o2), free(w1), free(w2);
  fattn_mha_destroy(m);
  fattn_mha_destroy(m0);
  unload(&f);
}

/* The projections' GEMM (lib/layers/gemm.c) against double precision across its
 * edges: rows around the table's row block, columns around the 48-column
 * block and the chunks the thread count makes, reductions of 1 to 129, with
 * and without bias, row strides wider than the rows; every form of
 * fattn__gemm_ex (X and / or W stored transposed, Y overwritten or added
 * to: the backward's products); guard values around Y. */
static void test_gemm(fattn_context *ctx, const char *name) {
  static const int64_t Ms[] = {1, 17, 63, 65, 130}, Ns[] = {1, 47, 49, 200}, Ks[] = {1, 5, 129};
  uint64_t s = 3;
  double worst = 0;
  int n = 0, guards = 1;
  for (size_t a = 0; a < 5; a++)
    for (size_t b = 0; b < 4; b++)
      for (size_t k = 0; k < 3; k++)
        for (int form = 0; form < 8; form++) {
          const fattn__gemm_form fm = {form & 1, (form >> 1) & 1, (form >> 2) & 1};
          if (form && (a + b + k + (size_t)form) % 3) continue; /* a third of the other forms */
          const int64_t M = Ms[a], N = Ns[b], K = Ks[k], ldy = N + 2;
          const int64_t ldx = fm.x_t ? M + 3 : K + 3, ldw = fm.w_t ? N + 1 : K + 1;
          const int64_t nx = (fm.x_t ? K : M) * ldx, nw = (fm.w_t ? K : N) * ldw;
          float *X = malloc((size_t)nx * 4), *W = malloc((size_t)nw * 4);
          float *bias = malloc((size_t)N * 4), *Y = malloc((size_t)(M * ldy + 2) * 4);
          float *Y0 = malloc((size_t)(M * ldy + 2) * 4);
          for (int64_t i = 0; i < nx; i++)
            X[i] = (float)(2 * rng_uniform(&s) - 1);
          for (int64_t i = 0; i < nw; i++)
            W[i] = (float)(2 * rng_uniform(&s) - 1);
          for (int64_t i = 0; i < N; i++)
            bias[i] = (float)(2 * rng_uniform(&s) - 1);
          for (int64_t i = 0; i < M * ldy + 2; i++)
            Y[i] = Y0[i] = 555.0f;
          for (int64_t r = 0; fm.acc && r < M; r++)
            for (int64_t j = 0; j < N; j++)
              Y[1 + r * ldy + j] = Y0[1 + r * ldy + j] = (float)(2 * rng_uniform(&s) - 1);
          const float *bp = (a + b + k) % 2 ? bias : NULL;
          fattn_status st =
              form ? fattn__gemm_ex(ctx, M, N, K, X, ldx, W, ldw, bp, Y + 1, ldy, fm, NULL)
                   : fattn__gemm(ctx, M, N, K, X, ldx, W, ldw, bp, Y + 1, ldy);
          EXPECT(st == FATTN_SUCCESS, "gemm");
          for (int64_t r = 0; r < M; r++)
            for (int64_t j = 0; j < ldy; j++) {
              const float y = Y[1 + r * ldy + j];
              if (j >= N) {
                guards &= y == 555.0f;
                continue;
              }
              double ref = bp ? bp[j] : 0, mag = bp ? fabs(bp[j]) : 0;
              if (fm.acc) ref += Y0[1 + r * ldy + j], mag += fabs(Y0[1 + r * ldy + j]);
              for (int64_t p = 0; p < K; p++) {
                const double xa = fm.x_t ? X[p * ldx + r] : X[r * ldx + p];
                const double wb = fm.w_t ? W[p * ldw + j] : W[j * ldw + p];
                ref += xa * wb, mag += fabs(xa * wb);
              }
              const double e = fabs(y - ref) / ((double)(K + 3) * 1.2e-7 * mag + 1e-30);
              if (!(e <= worst)) worst = e;
            }
          guards &= Y[0] == 555.0f && Y[1 + M * ldy] == 555.0f;
          free(X), free(W), free(bias), free(Y), free(Y0);
          n++;
        }
  EXPECT(worst <= 1 && guards, "%s gemm: err/bound %.3g, guards %d", name, worst, guards);
  printf("gemm: %d shapes and forms, err/bound %.3f, guards intact %d\n", n, worst, guards);
  checks++;
}

/* Allocation failures (lib/runtime/alloc.c's hook): the n-th allocation of create +
 * the call on a fresh context fails, for n = 1, 2, ... until none is left.
 * Each must give OUT_OF_MEMORY with a message and leave every output (the
 * file's tensors named in outs, where it has them) untouched; afterwards the
 * same call matches PyTorch within (tol_abs, tol_rel).
 * busy_pool: every slot of the context's workspace pool is held (as by other
 * callers sharing the context), so each workspace the call needs is a
 * one-off allocation, late ones included. */
typedef fattn_status (*fault_run)(vecfile *, fattn_context *, float *const *outs);

static void fault_sweep(const char *name, fault_run run, const char *const *outs, int nout,
                        double tol_abs, double tol_rel, int busy_pool) {
  vecfile f;
  if (!load(name, &f)) return;
  float *bufs[BW_N] = {0};
  tensor *ref[BW_N] = {0};
  for (int i = 0; i < nout && i < BW_N; i++) {
    ref[i] = get(&f, outs[i]);
    bufs[i] = ref[i] ? malloc((size_t)ref[i]->n * 4) : NULL;
  }
  int faults = 0, bad = 0;
  for (long n = 1; n < 200; n++) {
    fattn_context_options o;
    fattn_context_options_init(&o);
    o.num_threads = 1;
    fattn_context *ctx = NULL;
    if (fattn_context_create(&o, &ctx) != FATTN_SUCCESS) break;
    int held[FATTN__MAX_WORKSPACES];
    void *held_mem[FATTN__MAX_WORKSPACES];
    for (int i = 0; i < FATTN__MAX_WORKSPACES; i++)
      if (!busy_pool || fattn__workspace_acquire(ctx, 64, &held[i], &held_mem[i]) != FATTN_SUCCESS)
        held_mem[i] = NULL;
    for (int i = 0; i < nout; i++)
      for (int64_t x = 0; ref[i] && x < ref[i]->n; x++)
        bufs[i][x] = 777.0f;
    fattn__fault_inject(n);
    const fattn_status st = run(&f, ctx, bufs);
    const int injected = fattn__fault_pending() == 0;
    fattn__fault_inject(0);
    for (int i = 0; i < FATTN__MAX_WORKSPACES; i++)
      if (held_mem[i]) fattn__workspace_done(ctx, held[i], held_mem[i]);
    fattn_context_destroy(ctx);
    if (!injected) { /* every allocation succeeded: the sweep is over */
      int ok = st == FATTN_SUCCESS;
      for (int i = 0; i < nout; i++)
        if (ref[i]) ok &= compare(bufs[i], ref[i]->data, ref[i]->n, tol_abs, tol_rel) <= 1;
      EXPECT(ok, "%s after %d faults: %s", name, faults, fattn_last_error());
      break;
    }
    faults++;
    int untouched = 1;
    for (int i = 0; i < nout; i++)
      for (int64_t x = 0; ref[i] && x < ref[i]->n; x++)
        untouched &= bufs[i][x] == 777.0f;
    if (st != FATTN_ERROR_OUT_OF_MEMORY || !untouched || !fattn_last_error()[0]) bad++;
    EXPECT(st == FATTN_ERROR_OUT_OF_MEMORY && untouched, "%s fault %ld: %s, outputs untouched %d",
           name, n, fattn_status_string(st), untouched);
  }
  printf("faults: %-32s %s: %d allocations failed in turn%s, %d mishandled\n", name, outs[0],
         faults, busy_pool ? " (pool busy)" : "", bad);
  EXPECT(faults >= 3, "%s: only %d allocations seen", name, faults);
  checks++;
  for (int i = 0; i < BW_N; i++)
    free(bufs[i]);
  unload(&f);
}

static const char *const fwd_outs[] = {"out", "attn_weights"};
static fattn_status fault_mha(vecfile *f, fattn_context *c, float *const *o) {
  return run_mha(f, c, o[0], o[1]);
}
static fattn_status fault_encoder(vecfile *f, fattn_context *c, float *const *o) {
  return run_encoder(f, c, o[0], NULL);
}
static fattn_status fault_mha_backward(vecfile *f, fattn_context *c, float *const *o) {
  return run_mha_backward(f, c, o, 0, NULL);
}

/* Every bad configuration and argument: a status, a message, out untouched. */
static void test_bad(fattn_context *ctx) {
  float wbuf[3 * 16 * 16] = {0}, bbuf[3 * 16] = {0};
  fattn_mha_weights w = {0};
  w.in_proj_weight = wbuf, w.in_proj_bias = bbuf, w.out_proj_weight = wbuf, w.out_proj_bias = bbuf;
  fattn_mha_config c;
  fattn_mha *m = NULL;
  struct {
    int64_t E, H, Hkv, kdim;
    int bias_missing;
    fattn_status want;
    const char *what;
  } bad[] = {{10, 3, 0, 0, 0, FATTN_ERROR_INVALID_ARGUMENT, "embed_dim not divisible"},
             {0, 1, 0, 0, 0, FATTN_ERROR_INVALID_ARGUMENT, "embed_dim 0"},
             {16, -2, 0, 0, 0, FATTN_ERROR_INVALID_ARGUMENT, "num_heads negative"},
             {16, 4, 3, 0, 0, FATTN_ERROR_INVALID_ARGUMENT, "num_kv_heads not dividing"},
             {16, 4, 0, 7, 0, FATTN_ERROR_INVALID_ARGUMENT, "in_proj with kdim != E"},
             {16, 4, 0, 0, 1, FATTN_ERROR_INVALID_ARGUMENT, "bias on, no bias given"},
             {(int64_t)1 << 40, 1, 0, 0, 0, FATTN_ERROR_OVERFLOW, "huge embed_dim"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    fattn_mha_config_init(&c, bad[i].E, bad[i].H);
    c.num_kv_heads = bad[i].Hkv;
    c.kdim = bad[i].kdim;
    fattn_mha_weights wi = w;
    if (bad[i].bias_missing) wi.out_proj_bias = NULL;
    const fattn_status st = fattn_mha_create(&c, &wi, &m);
    EXPECT(st == bad[i].want && m == NULL && fattn_last_error()[0], "%s: %s", bad[i].what,
           fattn_status_string(st));
    printf("bad config %-28s -> %s\n", bad[i].what, fattn_last_error());
    checks++;
  }
  fattn_mha_config_init(&c, 16, 4);
  EXPECT(fattn_mha_create(&c, NULL, &m) == FATTN_ERROR_INVALID_ARGUMENT, "NULL weights");
  fattn_mha_weights none = {0};
  EXPECT(fattn_mha_create(&c, &none, &m) == FATTN_ERROR_INVALID_ARGUMENT, "no weights");
  EXPECT(fattn_mha_create(&c, &w, &m) == FATTN_SUCCESS, "good config: %s", fattn_last_error());
  checks += 3;
  /* forward: bad arguments leave out alone */
  float x[2 * 3 * 16], out[2 * 3 * 16];
  for (int i = 0; i < 2 * 3 * 16; i++)
    x[i] = 0.1f * (float)i, out[i] = 777.0f;
  fattn_mha_args a;
  struct {
    int what;
    fattn_status want;
    const char *name;
  } fb[] = {{0, FATTN_ERROR_INVALID_ARGUMENT, "batch 0"},
            {1, FATTN_ERROR_INVALID_ARGUMENT, "NULL key"},
            {2, FATTN_ERROR_UNSUPPORTED, "F16 mask"},
            {3, FATTN_ERROR_OVERFLOW, "huge q_len"}};
  for (size_t i = 0; i < sizeof fb / sizeof fb[0]; i++) {
    fattn_mha_args_init(&a);
    a.query = a.key = a.value = x, a.out = out, a.batch = 2, a.q_len = a.kv_len = 3;
    if (fb[i].what == 0) a.batch = 0;
    if (fb[i].what == 1) a.key = NULL;
    if (fb[i].what == 2) a.attn_mask = x, a.attn_mask_dtype = FATTN_F16;
    if (fb[i].what == 3) a.q_len = a.kv_len = (int64_t)1 << 60;
    const fattn_status st = fattn_mha_forward(ctx, m, &a);
    int untouched = 1;
    for (int k = 0; k < 2 * 3 * 16; k++)
      untouched &= out[k] == 777.0f;
    EXPECT(st == fb[i].want && untouched, "forward %s: %s, out untouched %d", fb[i].name,
           fattn_status_string(st), untouched);
    printf("bad forward %-27s -> %s\n", fb[i].name, fattn_last_error());
    checks++;
  }
  /* backward: bad arguments leave every gradient alone */
  float dx[2 * 3 * 16], dk[2 * 3 * 16], dw[3 * 16 * 16], dq[16 * 16];
  for (int i = 0; i < 2 * 3 * 16; i++)
    dx[i] = dk[i] = 777.0f;
  for (int i = 0; i < 3 * 16 * 16; i++)
    dw[i] = 777.0f;
  for (int i = 0; i < 16 * 16; i++)
    dq[i] = 777.0f;
  static const struct {
    int what;
    fattn_status want;
    const char *name;
  } bb[] = {{0, FATTN_ERROR_INVALID_ARGUMENT, "NULL dout"},
            {1, FATTN_ERROR_INVALID_ARGUMENT, "dkey for key == query"},
            {2, FATTN_ERROR_INVALID_ARGUMENT, "both weight forms"},
            {3, FATTN_ERROR_INVALID_ARGUMENT, "key == query, other shape"},
            {4, FATTN_ERROR_INVALID_ARGUMENT, "batch 0"},
            {5, FATTN_ERROR_INVALID_ARGUMENT, "NULL grads"}};
  for (size_t i = 0; i < sizeof bb / sizeof bb[0]; i++) {
    fattn_mha_args_init(&a);
    a.query = a.key = a.value = x, a.batch = 2, a.q_len = a.kv_len = 3;
    fattn_mha_grads g;
    fattn_mha_grads_init(&g);
    g.dout = x, g.dquery = dx, g.params.in_proj_weight = dw;
    if (bb[i].what == 0) g.dout = NULL;
    if (bb[i].what == 1) g.dkey = dk;
    if (bb[i].what == 2) g.params.q_proj_weight = dq;
    if (bb[i].what == 3) a.kv_len = 2;
    if (bb[i].what == 4) a.batch = 0;
    const fattn_status st = fattn_mha_backward(ctx, m, &a, bb[i].what == 5 ? NULL : &g);
    int untouched = 1;
    for (int k = 0; k < 2 * 3 * 16; k++)
      untouched &= dx[k] == 777.0f && dk[k] == 777.0f;
    for (int k = 0; k < 3 * 16 * 16; k++)
      untouched &= dw[k] == 777.0f;
    for (int k = 0; k < 16 * 16; k++)
      untouched &= dq[k] == 777.0f;
    EXPECT(st == bb[i].want && untouched && fattn_last_error()[0],
           "backward %s: %s, gradients untouched %d", bb[i].name, fattn_status_string(st),
           untouched);
    printf("bad backward %-26s -> %s\n", bb[i].name, fattn_last_error());
    checks++;
  }
  fattn_mha_destroy(m);
  /* a layer without biases has no bias gradient to give */
  c.bias = 0;
  EXPECT(fattn_mha_create(&c, &w, &m) == FATTN_SUCCESS, "no-bias layer");
  {
    fattn_mha_args_init(&a);
    a.query = a.key = a.value = x, a.batch = 2, a.q_len = a.kv_len = 3;
    fattn_mha_grads g;
    fattn_mha_grads_init(&g);
    g.dout = x, g.params.out_proj_bias = dq;
    EXPECT(fattn_mha_backward(ctx, m, &a, &g) == FATTN_ERROR_INVALID_ARGUMENT && dq[0] == 777.0f,
           "bias gradient of a layer without biases");
    printf("bad backward %-26s -> %s\n", "bias grad, no biases", fattn_last_error());
    checks++;
  }
  fattn_mha_destroy(m);
  fattn_encoder_config ec;
  fattn_encoder_config_init(&ec, 16, 4);
  ec.dim_feedforward = 0;
  fattn_encoder *enc = NULL;
  fattn_encoder_layer_weights lw = {0};
  EXPECT(fattn_encoder_create(&ec, &lw, &enc) == FATTN_ERROR_INVALID_ARGUMENT && !enc,
         "dim_feedforward 0");
  fattn_encoder_config_init(&ec, 16, 4);
  EXPECT(fattn_encoder_create(&ec, &lw, &enc) == FATTN_ERROR_INVALID_ARGUMENT && !enc,
         "missing encoder weights");
  printf("bad encoder -> %s\n", fattn_last_error());
  checks += 2;
  /* encoder backward: bad arguments leave the gradients alone */
  {
    vecfile f;
    if (!load("encoder_bw_stack2_pre_relu", &f)) return;
    fattn_encoder_args ea;
    EXPECT(make_encoder(&f, &enc, &ea, NULL) == FATTN_SUCCESS, "encoder");
    float gsrc[2 * 4 * 8], gw[8];
    for (int i = 0; i < 2 * 4 * 8; i++)
      gsrc[i] = 777.0f;
    for (int i = 0; i < 8; i++)
      gw[i] = 777.0f;
    fattn_encoder_layer_grads lg[2];
    memset(lg, 0, sizeof lg);
    lg[1].norm1_weight = gw;
    lg[1].self_attn.in_proj_weight = gw, lg[1].self_attn.q_proj_weight = gw;
    fattn_encoder_grads eg;
    fattn_encoder_grads_init(&eg);
    eg.dout = getf(&f, "dout"), eg.dsrc = gsrc, eg.layers = lg;
    const fattn_status s1 = fattn_encoder_backward(ctx, enc, &ea, &eg); /* both forms */
    printf("bad encoder backward -> %s\n", fattn_last_error());
    eg.layers = NULL, eg.dout = NULL;
    const fattn_status s2 = fattn_encoder_backward(ctx, enc, &ea, &eg);
    printf("bad encoder backward -> %s\n", fattn_last_error());
    eg.dout = getf(&f, "dout"), ea.batch = 0;
    const fattn_status s3 = fattn_encoder_backward(ctx, enc, &ea, &eg);
    int untouched = gw[0] == 777.0f;
    for (int i = 0; i < 2 * 4 * 8; i++)
      untouched &= gsrc[i] == 777.0f;
    EXPECT(s1 == FATTN_ERROR_INVALID_ARGUMENT && s2 == FATTN_ERROR_INVALID_ARGUMENT &&
               s3 == FATTN_ERROR_INVALID_ARGUMENT && untouched,
           "encoder backward bad arguments: %d %d %d, untouched %d", (int)s1, (int)s2, (int)s3,
           untouched);
    checks++;
    fattn_encoder_destroy(enc);
    unload(&f);
  }
}

int main(void) {
  static const char *mha_files[] = {"mha_self",
                                    "mha_self_seqfirst_perhead",
                                    "mha_causal",
                                    "mha_cross_kdim_vdim",
                                    "mha_cross_kdim_vdim_seqfirst",
                                    "mha_key_padding_bool",
                                    "mha_key_padding_float",
                                    "mha_attn_mask_float",
                                    "mha_attn_mask_bool_and_padding",
                                    "mha_attn_mask_3d_float",
                                    "mha_nobias_seqfirst",
                                    "mha_no_weights",
                                    "mha_gqa"};
  static const char *bw_files[] = {
      "mha_bw_self",         "mha_bw_causal_seqfirst",  "mha_bw_cross_kdim_vdim",
      "mha_bw_masks_nobias", "mha_bw_cross_float_mask", "mha_bw_gqa"};
  static const char *enc_bw_files[] = {"encoder_bw_post_relu",
                                       "encoder_bw_pre_gelu_seqfirst_causal",
                                       "encoder_bw_stack2_post_gelu", "encoder_bw_stack2_pre_relu"};
  static const char *enc_files[] = {"encoder_post_relu", "encoder_pre_gelu_seqfirst_causal",
                                    "encoder_stack2_post", "encoder_stack2_pre"};
  /* every table this machine runs, each on 1 and 2 threads */
  static const fattn_backend isas[] = {FATTN_BACKEND_SCALAR, FATTN_BACKEND_AVX2,
                                       FATTN_BACKEND_AVX512, FATTN_BACKEND_NEON};
  for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++)
    for (int nt = 1; nt <= 2; nt++) {
      fattn_context_options o;
      fattn_context_options_init(&o);
      o.isa_cap = isas[k];
      o.num_threads = nt;
      fattn_context *ctx = NULL;
      if (fattn_context_create(&o, &ctx) != FATTN_SUCCESS) continue;
      printf("== %s, %d thread%s\n", fattn_backend_name(isas[k]), nt, nt > 1 ? "s" : "");
      for (size_t i = 0; i < sizeof mha_files / sizeof mha_files[0]; i++)
        test_mha_file(mha_files[i], ctx);
      for (size_t i = 0; i < sizeof enc_files / sizeof enc_files[0]; i++)
        test_encoder_file(enc_files[i], ctx);
      static const uint8_t keep1[] = {1, 0, 1, 1}, keep_gqa[] = {1, 0, 0, 0}, keep3[] = {0, 1, 0};
      test_head_mask(ctx, "mha_self_seqfirst_perhead", keep1); /* one QKV GEMM per run */
      test_head_mask(ctx, "mha_gqa", keep_gqa); /* GQA: kv head 1 not needed at all */
      test_head_mask(ctx, "mha_cross_kdim_vdim_seqfirst", keep3); /* separate projections */
      for (size_t i = 0; i < sizeof bw_files / sizeof bw_files[0]; i++)
        test_mha_backward_file(bw_files[i], ctx, nt == 1);
      for (size_t i = 0; i < sizeof enc_bw_files / sizeof enc_bw_files[0]; i++)
        test_encoder_backward_file(enc_bw_files[i], ctx, nt == 1);
      static const uint8_t keep_bw[] = {0, 1, 1, 0};
      test_backward_head_mask(ctx, "mha_bw_self", keep_bw);
      test_backward_head_mask(ctx, "mha_bw_gqa", keep_gqa);
      test_gemm(ctx, fattn_backend_name(isas[k]));
      if (k == 0 && nt == 1) {
        test_bad(ctx);
        /* averaged weights, then per-head ones */
        fault_sweep("mha_attn_mask_bool_and_padding", fault_mha, fwd_outs, 2, ENC_TOL_ABS,
                    ENC_TOL_REL, 0);
        fault_sweep("mha_attn_mask_bool_and_padding", fault_mha, fwd_outs, 2, ENC_TOL_ABS,
                    ENC_TOL_REL, 1);
        fault_sweep("mha_self_seqfirst_perhead", fault_mha, fwd_outs, 2, ENC_TOL_ABS, ENC_TOL_REL,
                    1);
        fault_sweep("mha_bw_masks_nobias", fault_mha_backward, bw_names, BW_N, TOL_ABS, TOL_REL, 0);
        fault_sweep("mha_bw_self", fault_mha_backward, bw_names, BW_N, TOL_ABS, TOL_REL, 1);
        fault_sweep("encoder_stack2_pre", fault_encoder, fwd_outs, 1, ENC_TOL_ABS, ENC_TOL_REL, 0);
        fault_sweep("encoder_stack2_pre", fault_encoder, fwd_outs, 1, ENC_TOL_ABS, ENC_TOL_REL, 1);
      }
      fattn_context_destroy(ctx);
    }
  printf("%d passed, %d failed\n", checks - g_failures, g_failures);
  return g_failures != 0;
}

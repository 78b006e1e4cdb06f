/* fattn_mha: nn.MultiheadAttention on fattn's kernels. Portable framework
 * code: the projections are fattn__gemm (the kernel tables' qk tile, see
 * gemm.c) and the attention core is fattn_sdpa on strided views of the
 * projected buffers, so no head is ever transposed or copied:
 *
 *   rows of the inputs, in the caller's order: (b, l) with batch_first, (l, b)
 *   without; a projected buffer keeps that order, row stride ld, and head h is
 *   the column range [h·hd, (h + 1)·hd). As a [B, H, L, hd] view its strides
 *   are (L·ld, hd, ld, 1) with batch_first, (ld, hd, B·ld, 1) without.
 *
 * Scratch comes from the context's workspace pool: after the first call with
 * a shape, a forward allocates nothing. */
#include <math.h>
#include <string.h>

#include "internal.h"

struct fattn_mha {
  int64_t E, H, Hkv, G, hd, Ekv, kdim, vdim;
  int batch_first;
  /* one block: Wq [E, E] | Wk [Ekv, kdim] | Wv [Ekv, vdim] (with kdim = vdim = E, exactly
   * PyTorch's in_proj_weight), then Wo [E, E], then (bias on) bq | bk | bv and bo */
  float *wq, *wk, *wv, *wo, *bq, *bk, *bv, *bo;
  float *mem;
};

void fattn_mha_config_init(fattn_mha_config *c, int64_t embed_dim, int64_t num_heads) {
  if (!c) return;
  memset(c, 0, sizeof *c);
  c->embed_dim = embed_dim;
  c->num_heads = num_heads;
  c->bias = 1;
}

void fattn_mha_args_init(fattn_mha_args *a) {
  if (!a) return;
  memset(a, 0, sizeof *a);
  a->key_padding_mask_dtype = FATTN_U8;
  a->attn_mask_dtype = FATTN_U8;
  a->average_attn_weights = 1;
}

/* Checks a configuration; fills the derived sizes of m. */
static fattn_status check_config(const fattn_mha_config *cfg, struct fattn_mha *m) {
  if (cfg->embed_dim <= 0 || cfg->num_heads <= 0)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "embed_dim (%lld) and num_heads (%lld) must be positive",
                        (long long)cfg->embed_dim, (long long)cfg->num_heads);
  if (cfg->embed_dim % cfg->num_heads != 0)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "embed_dim %lld is not divisible by num_heads %lld",
                        (long long)cfg->embed_dim, (long long)cfg->num_heads);
  const int64_t hkv = cfg->num_kv_heads == 0 ? cfg->num_heads : cfg->num_kv_heads;
  if (hkv < 0 || cfg->num_heads % hkv != 0)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "num_kv_heads %lld must divide num_heads %lld",
                        (long long)cfg->num_kv_heads, (long long)cfg->num_heads);
  if (cfg->kdim < 0 || cfg->vdim < 0)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "kdim (%lld) and vdim (%lld) must be >= 0",
                        (long long)cfg->kdim, (long long)cfg->vdim);
  m->E = cfg->embed_dim;
  m->H = cfg->num_heads;
  m->Hkv = hkv;
  m->G = m->H / hkv;
  m->hd = m->E / m->H;
  m->Ekv = m->hd * hkv;
  m->kdim = cfg->kdim ? cfg->kdim : m->E;
  m->vdim = cfg->vdim ? cfg->vdim : m->E;
  m->batch_first = cfg->batch_first != 0;
  /* every weight and activation row below is at most E + 2·Ekv or kdim / vdim long; a
   * weight block of (E + 2·Ekv) · max(E, kdim, vdim) + E·E floats must fit */
  int64_t a, b, t;
  const int64_t wide =
      m->E > m->kdim ? (m->E > m->vdim ? m->E : m->vdim) : (m->kdim > m->vdim ? m->kdim : m->vdim);
  if (!fattn__add_ok(m->E, 2 * m->Ekv, &a) || !fattn__mul_ok(a, wide, &b) ||
      !fattn__mul_ok(m->E, m->E, &t) || !fattn__add_ok(b, t + 2 * a, &t) || t > INT64_MAX / 8 / 4)
    return fattn__error(FATTN_ERROR_OVERFLOW,
                        "the weights of embed_dim %lld, kdim %lld, vdim "
                        "%lld overflow",
                        (long long)m->E, (long long)m->kdim, (long long)m->vdim);
  return FATTN_SUCCESS;
}

fattn_status fattn_mha_create(const fattn_mha_config *cfg, const fattn_mha_weights *w,
                              fattn_mha **mha) {
  if (!mha) return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "mha is NULL");
  *mha = NULL;
  if (!cfg || !w) return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "cfg or weights is NULL");
  struct fattn_mha m;
  memset(&m, 0, sizeof m);
  fattn_status st = check_config(cfg, &m);
  if (st != FATTN_SUCCESS) return st;
  const int packed = w->in_proj_weight != NULL;
  if (packed && (m.kdim != m.E || m.vdim != m.E))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "in_proj_weight needs kdim = vdim = embed_dim (%lld); got kdim %lld, "
                        "vdim %lld: give q_proj_weight, k_proj_weight and v_proj_weight",
                        (long long)m.E, (long long)m.kdim, (long long)m.vdim);
  if (!packed && (!w->q_proj_weight || !w->k_proj_weight || !w->v_proj_weight))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "give in_proj_weight, or all of q_proj_weight, k_proj_weight and "
                        "v_proj_weight");
  if (!w->out_proj_weight)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "out_proj_weight is NULL");
  if (cfg->bias && (!w->in_proj_bias || !w->out_proj_bias))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "bias is on: in_proj_bias and out_proj_bias are required");
  const int64_t nq = m.E * m.E, nk = m.Ekv * m.kdim, nv = m.Ekv * m.vdim;
  const int64_t nb = cfg->bias ? m.E + 2 * m.Ekv + m.E : 0;
  const int64_t total = nq + nk + nv + nq + nb;
  struct fattn_mha *r = fattn__malloc(sizeof *r);
  float *mem = fattn__aligned_alloc(64, (size_t)total * sizeof(float));
  if (!r || !mem) {
    free(r);
    free(mem);
    return fattn__error(FATTN_ERROR_OUT_OF_MEMORY, "multi-head attention weights (%lld floats)",
                        (long long)total);
  }
  *r = m;
  r->mem = mem;
  r->wq = mem;
  r->wk = r->wq + nq;
  r->wv = r->wk + nk;
  r->wo = r->wv + nv;
  if (packed) { /* already stacked q | k | v */
    memcpy(r->wq, w->in_proj_weight, (size_t)(nq + nk + nv) * sizeof(float));
  } else {
    memcpy(r->wq, w->q_proj_weight, (size_t)nq * sizeof(float));
    memcpy(r->wk, w->k_proj_weight, (size_t)nk * sizeof(float));
    memcpy(r->wv, w->v_proj_weight, (size_t)nv * sizeof(float));
  }
  memcpy(r->wo, w->out_proj_weight, (size_t)nq * sizeof(float));
  if (cfg->bias) {
    r->bq = r->wo + nq;
    r->bk = r->bq + m.E;
    r->bv = r->bk + m.Ekv;
    r->bo = r->bv + m.Ekv;
    memcpy(r->bq, w->in_proj_bias, (size_t)(m.E + 2 * m.Ekv) * sizeof(float));
    memcpy(r->bo, w->out_proj_bias, (size_t)m.E * sizeof(float));
  }
  *mha = r;
  return FATTN_SUCCESS;
}

void fattn_mha_destroy(fattn_mha *mha) {
  if (!mha) return;
  free(mha->mem);
  free(mha);
}

/* [B, heads, L, hd] view of a projected buffer (row stride ld), first head h0 */
static fattn_tensor head_view(const fattn_mha *m, float *base, int64_t ld, int64_t B, int64_t L,
                              int64_t heads, int64_t h0) {
  fattn_tensor t;
  t.data = base + h0 * m->hd;
  t.dtype = FATTN_F32;
  t.dims[0] = B, t.dims[1] = heads, t.dims[2] = L, t.dims[3] = m->hd;
  t.strides[0] = m->batch_first ? L * ld : ld;
  t.strides[1] = m->hd;
  t.strides[2] = m->batch_first ? ld : B * ld;
  t.strides[3] = 1;
  return t;
}

/* Element (b, h, i, j) of a mask view as an additive value: -inf when masked. */
static float mask_at(const fattn_tensor *mk, int64_t b, int64_t h, int64_t i, int64_t j) {
  const int64_t off = (mk->dims[0] > 1 ? b : 0) * mk->strides[0] +
                      (mk->dims[1] > 1 ? h : 0) * mk->strides[1] + i * mk->strides[2] +
                      j * mk->strides[3];
  if (mk->dtype == FATTN_U8) return ((const uint8_t *)mk->data)[off] ? 0.0f : -INFINITY;
  return ((const float *)mk->data)[off];
}

/* The mask fattn_sdpa gets (PyTorch's conventions turned into fattn's):
 * kind 0: none; 1: a view of the caller's F32 mask; 2: built in `buf`. */
typedef struct mask_plan {
  int kind;
  int64_t bytes; /* of buf */
  fattn_tensor t;
} mask_plan;

static mask_plan plan_mask(const fattn_mha *m, const fattn_mha_args *a) {
  const int64_t B = a->batch, Lq = a->q_len, Lk = a->kv_len;
  mask_plan p;
  memset(&p, 0, sizeof p);
  const int kp = a->key_padding_mask != NULL, am = a->attn_mask != NULL;
  if (!kp && !am) return p;
  p.t.dims[2] = Lq, p.t.dims[3] = Lk, p.t.strides[3] = 1;
  if (kp && am) { /* both: one F32 sum [B, H or 1, Lq, Lk] */
    const int64_t hm = a->attn_mask_per_head ? m->H : 1;
    p.kind = 2;
    p.t.dtype = FATTN_F32;
    p.t.dims[0] = B, p.t.dims[1] = hm;
    p.t.strides[2] = Lk, p.t.strides[1] = Lq * Lk, p.t.strides[0] = hm * Lq * Lk;
    p.bytes = B * hm * Lq * Lk * 4;
  } else if (kp) { /* [B, 1, Lq (stride 0), Lk] */
    p.kind = a->key_padding_mask_dtype == FATTN_F32 ? 1 : 2;
    p.t.dtype = a->key_padding_mask_dtype;
    p.t.data = (void *)(uintptr_t)a->key_padding_mask;
    p.t.dims[0] = B, p.t.dims[1] = 1;
    p.t.strides[0] = Lk, p.t.strides[1] = 0, p.t.strides[2] = 0;
    p.bytes = p.kind == 2 ? B * Lk : 0;
  } else if (a->attn_mask_per_head) { /* [B, H, Lq, Lk] */
    p.kind = a->attn_mask_dtype == FATTN_F32 ? 1 : 2;
    p.t.dtype = a->attn_mask_dtype;
    p.t.data = (void *)(uintptr_t)a->attn_mask;
    p.t.dims[0] = B, p.t.dims[1] = m->H;
    p.t.strides[2] = Lk, p.t.strides[1] = Lq * Lk, p.t.strides[0] = m->H * Lq * Lk;
    p.bytes = p.kind == 2 ? B * m->H * Lq * Lk : 0;
  } else { /* [1, 1, Lq, Lk] */
    p.kind = a->attn_mask_dtype == FATTN_F32 ? 1 : 2;
    p.t.dtype = a->attn_mask_dtype;
    p.t.data = (void *)(uintptr_t)a->attn_mask;
    p.t.dims[0] = 1, p.t.dims[1] = 1;
    p.t.strides[2] = Lk, p.t.strides[1] = 0, p.t.strides[0] = 0;
    p.bytes = p.kind == 2 ? Lq * Lk : 0;
  }
  return p;
}

/* Fills a built mask (kind 2) in buf: U8 masks inverted (PyTorch's True = not
 * allowed becomes fattn's keep 0), or the F32 sum of both masks. */
static void build_mask(const fattn_mha *m, const fattn_mha_args *a, mask_plan *p, void *buf) {
  const int64_t B = a->batch, Lq = a->q_len, Lk = a->kv_len;
  const int kp = a->key_padding_mask != NULL, am = a->attn_mask != NULL;
  if (kp && am) {
    float *o = buf;
    const int64_t hm = p->t.dims[1];
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < hm; h++)
        for (int64_t i = 0; i < Lq; i++)
          for (int64_t j = 0; j < Lk; j++) {
            const int64_t ai = ((a->attn_mask_per_head ? b * m->H + h : 0) * Lq + i) * Lk + j;
            const float av = a->attn_mask_dtype == FATTN_U8
                                 ? (((const uint8_t *)a->attn_mask)[ai] ? -INFINITY : 0.0f)
                                 : ((const float *)a->attn_mask)[ai];
            const float kv =
                a->key_padding_mask_dtype == FATTN_U8
                    ? (((const uint8_t *)a->key_padding_mask)[b * Lk + j] ? -INFINITY : 0.0f)
                    : ((const float *)a->key_padding_mask)[b * Lk + j];
            o[((b * hm + h) * Lq + i) * Lk + j] = av + kv;
          }
  } else {
    const uint8_t *src = p->t.data;
    uint8_t *o = buf;
    for (int64_t x = 0; x < p->bytes; x++)
      o[x] = src[x] == 0;
  }
  p->t.data = buf;
}

/* need_out: a forward (out is written); the backward reads the inputs only */
static fattn_status check_args(const fattn_mha *m, const fattn_mha_args *a, int need_out) {
  if (!m || !a) return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "mha or args is NULL");
  if (!a->query || !a->key || !a->value || (need_out && !a->out))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, need_out
                                                          ? "query, key, value and out are required"
                                                          : "query, key and value are required");
  if (a->batch <= 0 || a->q_len <= 0 || a->kv_len <= 0)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "batch (%lld), q_len (%lld) and kv_len (%lld) must be positive",
                        (long long)a->batch, (long long)a->q_len, (long long)a->kv_len);
  if ((a->key_padding_mask && a->key_padding_mask_dtype != FATTN_U8 &&
       a->key_padding_mask_dtype != FATTN_F32) ||
      (a->attn_mask && a->attn_mask_dtype != FATTN_U8 && a->attn_mask_dtype != FATTN_F32))
    return fattn__error(FATTN_ERROR_UNSUPPORTED, "masks are U8 (bool) or F32");
  /* The workspace is at most three pieces of rows·wide floats, the GEMMs'
   * (about rows·E floats plus a few tiles per thread) and three of B·H·Lq·Lk:
   * bounding each by 2^63 / 64 keeps its byte total in int64.
   * (B·H <= rows·wide, so once x is checked B·H cannot overflow.) */
  int64_t rows, x, y;
  const int64_t wide = m->E + 2 * m->Ekv + m->kdim + m->vdim;
  if (!fattn__mul_ok(a->batch, a->q_len > a->kv_len ? a->q_len : a->kv_len, &rows) ||
      !fattn__mul_ok(rows, wide, &x) || x > INT64_MAX / 64 ||
      !fattn__mul_ok(a->batch * m->H, a->q_len, &y) || !fattn__mul_ok(y, a->kv_len, &y) ||
      y > INT64_MAX / 64)
    return fattn__error(FATTN_ERROR_OVERFLOW, "batch %lld, q_len %lld, kv_len %lld overflow",
                        (long long)a->batch, (long long)a->q_len, (long long)a->kv_len);
  return FATTN_SUCCESS;
}

/* fattn_sdpa over query heads [h0, h0 + nh) (nh a multiple of G, h0 too, or nh
 * = 1): out head columns of A, lse when asked. */
static fattn_status attend(fattn_context *c, const fattn_mha *m, const fattn_mha_args *a, float *Q,
                           int64_t ldq, float *K, int64_t ldk, float *V, int64_t ldv, float *A,
                           const mask_plan *mp, float *lse, int64_t h0, int64_t nh) {
  const int64_t B = a->batch, Lq = a->q_len, Lk = a->kv_len;
  const int64_t nkv = nh >= m->G ? nh / m->G : 1, k0 = h0 / m->G;
  fattn_tensor q = head_view(m, Q, ldq, B, Lq, nh, h0);
  fattn_tensor k = head_view(m, K, ldk, B, Lk, nkv, k0);
  fattn_tensor v = head_view(m, V, ldv, B, Lk, nkv, k0);
  fattn_tensor o = head_view(m, A, m->E, B, Lq, nh, h0);
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.causal = a->is_causal ? FATTN_CAUSAL_TOP_LEFT : FATTN_CAUSAL_NONE;
  p.backend = c->layer_backend;
  fattn_tensor mk, lt;
  if (mp->kind) {
    mk = mp->t;
    if (mk.dims[1] > 1) {
      mk.data = (char *)mk.data + h0 * mk.strides[1] * (mk.dtype == FATTN_U8 ? 1 : 4);
      mk.dims[1] = nh;
    }
    p.attn_mask = &mk;
  }
  if (lse) {
    lt = fattn_tensor_contiguous(lse + h0 * Lq, FATTN_F32, B, nh, Lq, 1);
    lt.strides[0] = m->H * Lq;
    p.lse = &lt;
  }
  return fattn_sdpa(c, &q, &k, &v, &o, &p);
}

/* The softmax of head h (all batches) from the projected Q and K and the lse
 * fattn_sdpa gave: w = exp(scale·q·k + mask − lse), 0 where masked; into dst
 * ([Lq, Lk] per batch, batch stride bstride), or added into it times `acc`.
 * gws: the Q·Kᵀ GEMM's workspace, held by the caller (nothing here can fail). */
static fattn_status head_weights(fattn_context *c, const fattn_mha *m, const fattn_mha_args *a,
                                 const float *Q, int64_t ldq, const float *K, int64_t ldk,
                                 const mask_plan *mp, const float *lse, int64_t h, float *dst,
                                 int64_t bstride, float *tmp, float acc, void *gws) {
  const int64_t B = a->batch, Lq = a->q_len, Lk = a->kv_len;
  const float scale = 1.0f / sqrtf((float)m->hd);
  for (int64_t b = 0; b < B; b++) {
    const int64_t qb = m->batch_first ? b * Lq * ldq : b * ldq, sq = m->batch_first ? ldq : B * ldq;
    const int64_t kb = m->batch_first ? b * Lk * ldk : b * ldk, sk = m->batch_first ? ldk : B * ldk;
    float *s = acc != 0.0f ? tmp : dst + b * bstride;
    fattn_status st = fattn__gemm_ws(c, Lq, Lk, m->hd, Q + qb + h * m->hd, sq,
                                     K + kb + (h / m->G) * m->hd, sk, NULL, s, Lk, gws);
    if (st != FATTN_SUCCESS) return st;
    for (int64_t i = 0; i < Lq; i++) {
      const float l = lse[(b * m->H + h) * Lq + i];
      for (int64_t j = 0; j < Lk; j++) {
        float add = mp->kind ? mask_at(&mp->t, b, h, i, j) : 0.0f;
        if (a->is_causal && j > i) add = -INFINITY;
        const float wv =
            add == -INFINITY || l == -INFINITY ? 0.0f : expf(scale * s[i * Lk + j] + add - l);
        if (acc != 0.0f)
          dst[b * bstride + i * Lk + j] += acc * wv;
        else
          s[i * Lk + j] = wv;
      }
    }
  }
  return FATTN_SUCCESS;
}

/* Y's head columns = X·Wᵀ + b for every head (head_dim columns each) of a
 * projection: query heads (G = 1) or kv heads (G = the group size: a kv head
 * is needed while any query head of its group is kept). keep NULL: all, one
 * GEMM; else one GEMM per run of needed heads. */
static fattn_status project(fattn_context *c, const fattn_mha *m, int64_t rows, int64_t K,
                            const float *X, const float *W, const float *b, float *Y, int64_t ldy,
                            const uint8_t *keep, int64_t G) {
  const int64_t n = m->H / G, hd = m->hd;
  if (!keep) return fattn__gemm(c, rows, n * hd, K, X, K, W, K, b, Y, ldy);
  fattn_status st = FATTN_SUCCESS;
  for (int64_t h0 = 0; st == FATTN_SUCCESS && h0 < n;) {
    int64_t h1 = h0;
    for (;; h1++) { /* [h0, h1): a run of needed heads */
      int need = 0;
      for (int64_t g = 0; h1 < n && g < G; g++)
        need |= keep[h1 * G + g] != 0;
      if (!need) break;
    }
    if (h1 > h0)
      st = fattn__gemm(c, rows, (h1 - h0) * hd, K, X, K, W + h0 * hd * K, K, b ? b + h0 * hd : NULL,
                       Y + h0 * hd, ldy);
    h0 = h1 + 1;
  }
  return st;
}

/* One workspace of these pieces (floats each, every one 64-byte aligned, to
 * be carved in order with fattn__ws_carve). */
static fattn_status acquire_pieces(fattn_context *c, const int64_t *pieces, size_t n, int *slot,
                                   void **mem) {
  int64_t bytes = 0;
  for (size_t i = 0; i < n; i++)
    bytes += fattn__ws_piece_bytes(pieces[i]);
  return fattn__workspace_acquire(c, (size_t)bytes, slot, mem);
}

/* Where the projections live in one buffer: self-attention on the stacked
 * weights (fused: one GEMM, rows of q | k | v), key = value (kv_fused: K | V
 * per row), or three blocks. Offsets in floats from the buffer's start. */
typedef struct proj_layout {
  int fused, kv_fused;
  int64_t qo, ko, vo, ldq, ldk, ldv, floats;
} proj_layout;

static proj_layout proj_plan(const fattn_mha *m, const fattn_mha_args *a) {
  const int64_t rq = a->batch * a->q_len, rk = a->batch * a->kv_len, E = m->E, Ekv = m->Ekv;
  proj_layout L;
  L.fused = a->query == a->key && a->key == a->value && a->q_len == a->kv_len && m->kdim == E &&
            m->vdim == E;
  L.kv_fused = !L.fused && a->key == a->value && m->kdim == m->vdim;
  if (L.fused) {
    L.ldq = L.ldk = L.ldv = E + 2 * Ekv;
    L.qo = 0, L.ko = E, L.vo = E + Ekv;
    L.floats = rq * (E + 2 * Ekv);
  } else {
    L.ldq = E, L.qo = 0, L.ko = rq * E;
    if (L.kv_fused)
      L.ldk = L.ldv = 2 * Ekv, L.vo = L.ko + Ekv;
    else
      L.ldk = L.ldv = Ekv, L.vo = L.ko + rk * Ekv;
    L.floats = rq * E + rk * 2 * Ekv;
  }
  return L;
}

/* The projections into P (laid out as L): the fewest GEMMs the inputs allow;
 * with pruned heads (hm), one per run of kept heads (a pruned head's columns
 * are never computed). */
static fattn_status project_inputs(fattn_context *c, const fattn_mha *m, const fattn_mha_args *a,
                                   const proj_layout *L, float *P, const uint8_t *hm) {
  const int64_t rq = a->batch * a->q_len, rk = a->batch * a->kv_len, E = m->E, Ekv = m->Ekv;
  float *Q = P + L->qo, *K = P + L->ko, *V = P + L->vo;
  fattn_status st;
  if (L->fused && !hm)
    return fattn__gemm(c, rq, E + 2 * Ekv, E, a->query, E, m->wq, E, m->bq, P, L->ldq);
  if (L->kv_fused && !hm) { /* Wk | Wv adjacent, rows of kdim */
    st = project(c, m, rq, E, a->query, m->wq, m->bq, Q, L->ldq, NULL, 1);
    if (st == FATTN_SUCCESS)
      st = fattn__gemm(c, rk, 2 * Ekv, m->kdim, a->key, m->kdim, m->wk, m->kdim, m->bk, K, L->ldk);
    return st;
  }
  st = project(c, m, rq, E, a->query, m->wq, m->bq, Q, L->ldq, hm, 1);
  if (st == FATTN_SUCCESS)
    st = project(c, m, rk, m->kdim, a->key, m->wk, m->bk, K, L->ldk, hm, m->G);
  if (st == FATTN_SUCCESS)
    st = project(c, m, rk, m->vdim, a->value, m->wv, m->bv, V, L->ldv, hm, m->G);
  return st;
}

fattn_status fattn_mha_forward(fattn_context *ctx, const fattn_mha *m, const fattn_mha_args *a) {
  fattn_status st = check_args(m, a, 1);
  if (st != FATTN_SUCCESS) return st;
  fattn_context *c;
  if ((st = fattn__context_resolve(ctx, &c)) != FATTN_SUCCESS) return st;
  const int64_t B = a->batch, Lq = a->q_len, Lk = a->kv_len, E = m->E;
  const int64_t rq = B * Lq;
  const proj_layout L = proj_plan(m, a);
  mask_plan mp = plan_mask(m, a);
  const int weights = a->attn_weights != NULL;
  /* workspace: projections, attention output A, the built mask, lse, one
   * head's scores, and the GEMMs that write the caller's outputs (the weights'
   * Q·Kᵀ, one at a time, and the output projection): all of it is had before
   * anything is written, so a forward that fails leaves out and attn_weights
   * untouched. (The projections and the attention, which write only this
   * workspace, get theirs from the pool as they go.) */
  int64_t gemm_bytes = fattn__gemm_workspace_bytes(c, rq, E, E);
  if (weights) {
    const int64_t wb = fattn__gemm_workspace_bytes(c, Lq, Lk, m->hd);
    if (wb > gemm_bytes) gemm_bytes = wb;
  }
  const int64_t pieces[] = {L.floats,
                            rq * E,
                            (mp.kind == 2 ? mp.bytes : 0) / 4 + 1,
                            weights ? B * m->H * Lq : 0,
                            weights && a->average_attn_weights ? Lq * Lk : 0,
                            gemm_bytes / 4 + 1};
  int slot;
  void *mem;
  if ((st = acquire_pieces(c, pieces, sizeof pieces / sizeof pieces[0], &slot, &mem)) !=
      FATTN_SUCCESS)
    return st;
  char *p = mem;
  float *P = fattn__ws_carve(&p, pieces[0]), *A = fattn__ws_carve(&p, pieces[1]);
  void *mbuf = fattn__ws_carve(&p, pieces[2]);
  float *lse = fattn__ws_carve(&p, pieces[3]), *tmp = fattn__ws_carve(&p, pieces[4]);
  void *gws = p;
  float *Q = P + L.qo, *K = P + L.ko, *V = P + L.vo;
  const int64_t ldq = L.ldq, ldk = L.ldk, ldv = L.ldv;
  st = project_inputs(c, m, a, &L, P, a->head_mask);
  if (mp.kind == 2) build_mask(m, a, &mp, mbuf);

  /* attention: all heads at once, or runs of kept heads (pruned ones: zeros) */
  for (int64_t h0 = 0; st == FATTN_SUCCESS && h0 < m->H;) {
    if (a->head_mask && !a->head_mask[h0]) {
      for (int64_t r = 0; r < rq; r++)
        memset(A + r * E + h0 * m->hd, 0, (size_t)m->hd * sizeof(float));
      h0++;
      continue;
    }
    int64_t nh = 1;
    if (!a->head_mask)
      nh = m->H;
    else if (m->G == 1)
      while (h0 + nh < m->H && a->head_mask[h0 + nh])
        nh++;
    st = attend(c, m, a, Q, ldq, K, ldk, V, ldv, A, &mp, weights ? lse : NULL, h0, nh);
    h0 += nh;
  }

  /* attention weights, only when asked */
  if (st == FATTN_SUCCESS && weights) {
    const int avg = a->average_attn_weights != 0;
    if (avg) memset(a->attn_weights, 0, (size_t)(B * Lq * Lk) * sizeof(float));
    for (int64_t h = 0; st == FATTN_SUCCESS && h < m->H; h++) {
      float *dst = avg ? a->attn_weights : a->attn_weights + h * Lq * Lk;
      const int64_t bstride = avg ? Lq * Lk : m->H * Lq * Lk;
      if (a->head_mask && !a->head_mask[h]) {
        if (!avg)
          for (int64_t b = 0; b < B; b++)
            memset(dst + b * bstride, 0, (size_t)(Lq * Lk) * sizeof(float));
        continue;
      }
      st = head_weights(c, m, a, Q, ldq, K, ldk, &mp, lse, h, dst, bstride, tmp,
                        avg ? 1.0f / (float)m->H : 0.0f, gws);
    }
  }

  /* output projection, rows in the caller's order */
  if (st == FATTN_SUCCESS) st = fattn__gemm_ws(c, rq, E, E, A, E, m->wo, E, m->bo, a->out, E, gws);
  fattn__workspace_done(c, slot, mem);
  return st;
}

/* ---- backward ------------------------------------------------------------------- */

void fattn_mha_grads_init(fattn_mha_grads *g) {
  if (g) memset(g, 0, sizeof *g);
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

fattn_status fattn_mha_backward(fattn_context *ctx, const fattn_mha *m, const fattn_mha_args *a,
                                const fattn_mha_grads *g) {
  fattn_status st = check_args(m, a, 0);
  if (st != FATTN_SUCCESS) return st;
  if (!g || !g->dout)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "grads and grads->dout are required");
  const int64_t B = a->batch, Lq = a->q_len, Lk = a->kv_len, E = m->E, Ekv = m->Ekv;
  const int64_t rq = B * Lq, rk = B * Lk;
  const fattn_mha_param_grads *pg = &g->params;
  const int in_proj = pg->in_proj_weight != NULL;
  if (in_proj && (pg->q_proj_weight || pg->k_proj_weight || pg->v_proj_weight))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "give the gradient of in_proj_weight or those of q/k/v_proj_weight, "
                        "not both");
  if (in_proj && (m->kdim != E || m->vdim != E))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "an in_proj_weight gradient needs kdim = vdim = embed_dim (%lld)",
                        (long long)E);
  if (!m->bq && (pg->in_proj_bias || pg->out_proj_bias))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "the layer has no biases to differentiate");
  /* the three inputs, their gradients and where each one's goes */
  const float *in[3] = {a->query, a->key, a->value};
  float *dx[3] = {g->dquery, g->dkey, g->dvalue};
  const int64_t rows[3] = {rq, rk, rk}, feats[3] = {E, m->kdim, m->vdim};
  int to[3];
  for (int i = 0; i < 3; i++) {
    to[i] = i;
    for (int j = 0; j < i && to[i] == i; j++)
      if (in[j] == in[i]) to[i] = j;
    if (to[i] == i) continue;
    static const char *const nm[3] = {"query", "key", "value"};
    if (dx[i])
      return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                          "%s is the same buffer as %s: its gradient goes to d%s; d%s must be NULL",
                          nm[i], nm[to[i]], nm[to[i]], nm[i]);
    if (rows[i] != rows[to[i]] || feats[i] != feats[to[i]])
      return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                          "%s is the same buffer as %s but of another shape", nm[i], nm[to[i]]);
  }
  fattn_context *c;
  if ((st = fattn__context_resolve(ctx, &c)) != FATTN_SUCCESS) return st;

  const proj_layout L = proj_plan(m, a);
  mask_plan mp = plan_mask(m, a);
  const int64_t nproj[3] = {E, Ekv, Ekv};
  int64_t gb =
      max64(fattn__gemm_workspace_bytes(c, rq, E, E), fattn__gemm_workspace_bytes(c, E, E, rq));
  for (int i = 0; i < 3; i++) {
    gb = max64(gb, fattn__gemm_workspace_bytes(c, rows[i], feats[i], nproj[i]));
    gb = max64(gb, fattn__gemm_workspace_bytes(c, nproj[i], feats[i], rows[i]));
  }
  /* workspace: projections P, their gradients dP (three blocks dQ | dK | dV,
   * whatever P's layout: fattn_sdpa_backward's outputs may not interleave),
   * the attention output A and its gradient dA, the built mask, lse, the
   * GEMMs' */
  const int64_t pieces[] = {
      L.floats,      L.floats,  rq * E, rq * E, (mp.kind == 2 ? mp.bytes : 0) / 4 + 1,
      B * m->H * Lq, gb / 4 + 1};
  int slot;
  void *mem;
  if ((st = acquire_pieces(c, pieces, sizeof pieces / sizeof pieces[0], &slot, &mem)) !=
      FATTN_SUCCESS)
    return st;
  char *p = mem;
  float *P = fattn__ws_carve(&p, pieces[0]), *dP = fattn__ws_carve(&p, pieces[1]);
  float *A = fattn__ws_carve(&p, pieces[2]), *dA = fattn__ws_carve(&p, pieces[3]);
  void *mbuf = fattn__ws_carve(&p, pieces[4]);
  float *lse = fattn__ws_carve(&p, pieces[5]);
  void *gws = p;
  const int64_t off[3] = {0, rq * E, rq * E + rk * Ekv}, ld[3] = {E, Ekv, Ekv};
  float *Q = P + L.qo, *K = P + L.ko, *V = P + L.vo;

  /* the forward, recomputed: every head (a pruned one's output is then zeroed,
   * and so is its output gradient: it gives nothing to any gradient) */
  st = project_inputs(c, m, a, &L, P, NULL);
  if (mp.kind == 2) build_mask(m, a, &mp, mbuf);
  if (st == FATTN_SUCCESS) st = attend(c, m, a, Q, L.ldq, K, L.ldk, V, L.ldv, A, &mp, lse, 0, m->H);
  const fattn__gemm_form dx_form = {0, 1, 0}; /* dX = dY·W: W read transposed */
  if (st == FATTN_SUCCESS)
    st = fattn__gemm_ex(c, rq, E, E, g->dout, E, m->wo, E, NULL, dA, E, dx_form, gws);
  for (int64_t h = 0; st == FATTN_SUCCESS && a->head_mask && h < m->H; h++)
    if (!a->head_mask[h])
      for (int64_t r = 0; r < rq; r++) {
        memset(A + r * E + h * m->hd, 0, (size_t)m->hd * sizeof(float));
        memset(dA + r * E + h * m->hd, 0, (size_t)m->hd * sizeof(float));
      }
  if (st == FATTN_SUCCESS) { /* the attention's backward: dQ, dK, dV into dP */
    fattn_tensor q = head_view(m, Q, L.ldq, B, Lq, m->H, 0);
    fattn_tensor k = head_view(m, K, L.ldk, B, Lk, m->Hkv, 0);
    fattn_tensor v = head_view(m, V, L.ldv, B, Lk, m->Hkv, 0);
    fattn_tensor o = head_view(m, A, E, B, Lq, m->H, 0);
    fattn_tensor dout = head_view(m, dA, E, B, Lq, m->H, 0);
    fattn_tensor dq = head_view(m, dP + off[0], ld[0], B, Lq, m->H, 0);
    fattn_tensor dk = head_view(m, dP + off[1], ld[1], B, Lk, m->Hkv, 0);
    fattn_tensor dv = head_view(m, dP + off[2], ld[2], B, Lk, m->Hkv, 0);
    fattn_tensor lt = fattn_tensor_contiguous(lse, FATTN_F32, B, m->H, Lq, 1);
    fattn_sdpa_params sp;
    fattn_sdpa_params_init(&sp);
    sp.causal = a->is_causal ? FATTN_CAUSAL_TOP_LEFT : FATTN_CAUSAL_NONE;
    sp.backend = c->layer_backend;
    if (mp.kind) sp.attn_mask = &mp.t;
    st = fattn_sdpa_backward(c, &q, &k, &v, &o, &dout, &lt, &dq, &dk, &dv, &sp);
  }
  if (st != FATTN_SUCCESS) {
    fattn__workspace_done(c, slot, mem);
    return st;
  }

  /* Only now the caller's buffers (nothing below can fail). */
  const int acc = g->accumulate != 0;
  const fattn__gemm_form dw_form = {1, 1, acc}; /* dW = dYᵀ·X: both read transposed */
  if (pg->out_proj_weight)
    fattn__gemm_ex(c, E, E, rq, g->dout, E, A, E, NULL, pg->out_proj_weight, E, dw_form, gws);
  if (pg->out_proj_bias) fattn__col_sums(rq, E, g->dout, E, pg->out_proj_bias, acc);
  float *dw[3] = {pg->q_proj_weight, pg->k_proj_weight, pg->v_proj_weight};
  if (in_proj) dw[0] = pg->in_proj_weight, dw[1] = dw[0] + E * E, dw[2] = dw[1] + Ekv * E;
  for (int i = 0; i < 3; i++) {
    if (dw[i])
      fattn__gemm_ex(c, nproj[i], feats[i], rows[i], dP + off[i], ld[i], in[i], feats[i], NULL,
                     dw[i], feats[i], dw_form, gws);
    if (pg->in_proj_bias)
      fattn__col_sums(rows[i], nproj[i], dP + off[i], ld[i],
                      pg->in_proj_bias + (i ? E + (i - 1) * Ekv : 0), acc);
  }
  /* dX = dQ·Wq (+ dK·Wk + dV·Wv where key / value are the same buffer) */
  const float *w[3] = {m->wq, m->wk, m->wv};
  int written[3] = {0, 0, 0};
  for (int i = 0; i < 3; i++) {
    float *d = dx[to[i]];
    if (!d) continue;
    fattn__gemm_form f = {0, 1, acc || written[to[i]]};
    fattn__gemm_ex(c, rows[i], feats[i], nproj[i], dP + off[i], ld[i], w[i], feats[i], NULL, d,
                   feats[i], f, gws);
    written[to[i]] = 1;
  }
  fattn__workspace_done(c, slot, mem);
  return FATTN_SUCCESS;
}

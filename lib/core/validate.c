/* Argument checks for fattn_sdpa: turns the public tensors into a problem
 * descriptor, or returns a status with a message. Writes nothing else. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

static size_t dtype_size(fattn_dtype t) {
  switch (t) {
  case FATTN_F32: return 4;
  case FATTN_F16:
  case FATTN_BF16: return 2;
  case FATTN_U8:
  case FATTN_I8:
  case FATTN_F8_E4M3:
  case FATTN_F8_E5M2: return 1;
  }
  return 0;
}

static const char *dtype_name(fattn_dtype t) {
  switch (t) {
  case FATTN_F32: return "F32";
  case FATTN_F16: return "F16";
  case FATTN_BF16: return "BF16";
  case FATTN_U8: return "U8";
  case FATTN_I8: return "I8";
  case FATTN_F8_E4M3: return "F8_E4M3";
  case FATTN_F8_E5M2: return "F8_E5M2";
  }
  return "invalid";
}

typedef struct span {
  uintptr_t lo, hi; /* bytes [lo, hi) */
} span;

/* Structural checks of one tensor: pointer, dtype enum, dims, strides, and the
 * byte span it covers (overflow-checked). */
static fattn_status check_tensor(const char *name, const fattn_tensor *t, int may_broadcast,
                                 span *sp) {
  if (!t) return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "%s is NULL", name);
  if (!t->data) return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "%s->data is NULL", name);
  size_t es = dtype_size(t->dtype);
  if (es == 0)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "%s->dtype has invalid value %d", name,
                        (int)t->dtype);
  int64_t last = 0; /* offset of the last element, in elements */
  for (int i = 0; i < 4; i++) {
    if (t->dims[i] <= 0)
      return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "%s->dims[%d] = %lld must be positive",
                          name, i, (long long)t->dims[i]);
    if (t->strides[i] < 0)
      return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "%s->strides[%d] = %lld is negative", name,
                          i, (long long)t->strides[i]);
    if (t->strides[i] == 0 && t->dims[i] > 1 && !may_broadcast)
      return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                          "%s->strides[%d] is 0 with dims[%d] = %lld: broadcast is allowed for "
                          "attn_mask only",
                          name, i, i, (long long)t->dims[i]);
    int64_t off;
    if (!fattn__mul_ok(t->dims[i] - 1, t->strides[i], &off) || !fattn__add_ok(last, off, &last))
      return fattn__error(FATTN_ERROR_OVERFLOW,
                          "%s: element offset of dims %lld×%lld×%lld×%lld "
                          "overflows int64",
                          name, (long long)t->dims[0], (long long)t->dims[1], (long long)t->dims[2],
                          (long long)t->dims[3]);
  }
  int64_t bytes;
  if (!fattn__add_ok(last, 1, &bytes) || !fattn__mul_ok(bytes, (int64_t)es, &bytes) ||
      bytes > PTRDIFF_MAX)
    return fattn__error(FATTN_ERROR_OVERFLOW, "%s: byte extent overflows", name);
  uintptr_t lo = (uintptr_t)t->data;
  if (lo > UINTPTR_MAX - (uintptr_t)bytes)
    return fattn__error(FATTN_ERROR_OVERFLOW, "%s: data + %lld bytes wraps the address space", name,
                        (long long)bytes);
  sp->lo = lo;
  sp->hi = lo + (uintptr_t)bytes;
  return FATTN_SUCCESS;
}

int fattn__view_aliases(const int64_t dims[4], const int64_t strides[4], int *which) {
  int idx[4], n = 0;
  for (int i = 0; i < 4; i++)
    if (dims[i] > 1 && strides[i] != 0) idx[n++] = i;
  for (int a = 1; a < n; a++) /* insertion sort by stride */
    for (int b = a; b > 0 && strides[idx[b]] < strides[idx[b - 1]]; b--) {
      int tmp = idx[b];
      idx[b] = idx[b - 1];
      idx[b - 1] = tmp;
    }
  int64_t covered = 0; /* max offset reachable with the dims so far */
  for (int a = 0; a < n; a++) {
    const int i = idx[a];
    if (strides[i] <= covered) {
      if (which) *which = i;
      return 1;
    }
    covered += (dims[i] - 1) * strides[i];
  }
  return 0;
}

/* An output must not write one address twice (nor be broadcast: a zero
 * stride on a dim longer than 1). */
static fattn_status check_no_self_overlap(const char *name, const fattn_tensor *t) {
  int i = -1;
  for (int d = 0; d < 4; d++)
    if (t->dims[d] > 1 && t->strides[d] == 0) i = d;
  if (i >= 0 || fattn__view_aliases(t->dims, t->strides, &i))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "%s->strides make elements alias (strides[%d] = %lld): an output must "
                        "not overlap itself",
                        name, i, (long long)t->strides[i]);
  return FATTN_SUCCESS;
}

static int spans_overlap(span a, span b) { return a.lo < b.hi && b.lo < a.hi; }

static int is_quant(fattn_dtype t) {
  return t == FATTN_I8 || t == FATTN_F8_E4M3 || t == FATTN_F8_E5M2;
}

/* q, k, v and out: F32, F16 or BF16, in any combination; k and v also I8 / F8. */
static fattn_status need_float(const char *name, const fattn_tensor *t, int kv) {
  if (t->dtype == FATTN_F32 || t->dtype == FATTN_F16 || t->dtype == FATTN_BF16 ||
      (kv && is_quant(t->dtype)))
    return FATTN_SUCCESS;
  return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                      "%s->dtype %s is not valid here (q, out: F32, F16, BF16; k, v also I8, "
                      "F8_E4M3, F8_E5M2; U8 only for attn_mask)",
                      name, dtype_name(t->dtype));
}

static fattn_status dim_eq(const char *what, int64_t a, int64_t b) {
  if (a == b) return FATTN_SUCCESS;
  return fattn__error(FATTN_ERROR_SHAPE_MISMATCH, "%s: %lld != %lld", what, (long long)a,
                      (long long)b);
}

static void set_view(fattn__view *vw, const fattn_tensor *t) {
  vw->base = (const char *)t->data;
  vw->dtype = t->dtype;
  vw->es = (int)dtype_size(t->dtype);
  for (int i = 0; i < 4; i++)
    vw->s[i] = t->dims[i] == 1 ? 0 : t->strides[i];
}

#define TRY(x)                                                                                     \
  do {                                                                                             \
    fattn_status st_ = (x);                                                                        \
    if (st_ != FATTN_SUCCESS) return st_;                                                          \
  } while (0)

/* cu_seqlens: n + 1 entries from 0, non-decreasing, ending at `total`
 * (the packed dim of the tensors); *max: the longest sequence. */
static fattn_status check_cu(const char *name, const int32_t *cu, int64_t n, int64_t total,
                             const char *tname, int64_t *max) {
  if (cu[0] != 0)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "%s[0] = %d must be 0", name, (int)cu[0]);
  *max = 0;
  for (int64_t b = 0; b < n; b++) {
    if (cu[b + 1] < cu[b])
      return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                          "%s is not non-decreasing: [%lld] = %d > [%lld] = %d", name, (long long)b,
                          (int)cu[b], (long long)b + 1, (int)cu[b + 1]);
    if (cu[b + 1] - cu[b] > *max) *max = cu[b + 1] - cu[b];
  }
  if (cu[n] != total)
    return fattn__error(FATTN_ERROR_SHAPE_MISMATCH, "%s[%lld] = %d must equal %s (%lld)", name,
                        (long long)n, (int)cu[n], tname, (long long)total);
  return FATTN_SUCCESS;
}

/* A quantized K / V's scales: F32, dims [k0 or 1, Hkv, k2 or 1, 1]; the
 * scale of every key a sequence uses finite and > 0 (only those are read:
 * a paged pool's unused blocks are not). */
static fattn_status check_scale(const char *name, const fattn_tensor *sc, const fattn_tensor *kv,
                                const fattn__problem *pb, const int64_t *lk, span *sp) {
  TRY(check_tensor(name, sc, 1, sp));
  if (sc->dtype != FATTN_F32)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "%s->dtype must be F32, got %s", name,
                        dtype_name(sc->dtype));
  if ((sc->dims[0] != 1 && sc->dims[0] != kv->dims[0]) || sc->dims[1] != kv->dims[1] ||
      (sc->dims[2] != 1 && sc->dims[2] != kv->dims[2]) || sc->dims[3] != 1)
    return fattn__error(
        FATTN_ERROR_SHAPE_MISMATCH,
        "%s->dims = [%lld, %lld, %lld, %lld] must be [%lld or 1, %lld, %lld or 1, 1]", name,
        (long long)sc->dims[0], (long long)sc->dims[1], (long long)sc->dims[2],
        (long long)sc->dims[3], (long long)kv->dims[0], (long long)kv->dims[1],
        (long long)kv->dims[2]);
  int64_t st[4];
  for (int d = 0; d < 4; d++)
    st[d] = sc->dims[d] == 1 ? 0 : sc->strides[d];
  const float *base = (const float *)sc->data;
  for (int64_t b = 0; b < pb->B; b++)
    for (int64_t j = 0; j < lk[b]; j++) {
      int64_t d0, d2, run;
      fattn__k_index(pb, b, j, &d0, &d2, &run);
      for (int64_t hk = 0; hk < kv->dims[1]; hk++) {
        const float x = base[d0 * st[0] + hk * st[1] + d2 * st[2]];
        if (!(x > 0.0f) || !isfinite(x))
          return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                              "%s of sequence %lld, kv head %lld, key %lld is %g: scales must be "
                              "finite and > 0",
                              name, (long long)b, (long long)hk, (long long)j, (double)x);
      }
    }
  return FATTN_SUCCESS;
}

static fattn_status check_per_head(const char *name, const float *x, int64_t H) {
  for (int64_t h = 0; h < H; h++)
    if (!isfinite(x[h]))
      return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "%s[%lld] = %g must be finite", name,
                          (long long)h, (double)x[h]);
  return FATTN_SUCCESS;
}

fattn_status fattn__validate(const fattn_tensor *q, const fattn_tensor *k, const fattn_tensor *v,
                             const fattn_tensor *out, const fattn_sdpa_params *prm,
                             fattn__problem *pb) {
  if (!prm) return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "params is NULL");
  if ((unsigned)prm->causal > (unsigned)FATTN_CAUSAL_BOTTOM_RIGHT)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "params->causal has invalid value %d",
                        (int)prm->causal);
  if ((unsigned)prm->backend > (unsigned)FATTN_BACKEND_ONEDNN)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "params->backend has invalid value %d",
                        (int)prm->backend);
  if (!isfinite(prm->scale))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "params->scale must be finite");

  span sq = {0, 0}, sk = {0, 0}, sv = {0, 0}, so = {0, 0}, sm = {0, 0}, sl = {0, 0};
  TRY(check_tensor("q", q, 0, &sq));
  TRY(check_tensor("k", k, 0, &sk));
  TRY(check_tensor("v", v, 0, &sv));
  TRY(check_tensor("out", out, 0, &so));
  const fattn_tensor *mask = prm->attn_mask, *lse = prm->lse;
  if (mask) TRY(check_tensor("attn_mask", mask, 1, &sm));
  if (lse) TRY(check_tensor("lse", lse, 0, &sl));

  TRY(need_float("q", q, 0));
  TRY(need_float("k", k, 1));
  TRY(need_float("v", v, 1));
  TRY(need_float("out", out, 0));
  if (lse && lse->dtype != FATTN_F32)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "lse->dtype must be F32, got %s",
                        dtype_name(lse->dtype));
  if (mask && mask->dtype != FATTN_F32 && mask->dtype != FATTN_U8)
    return fattn__error(FATTN_ERROR_UNSUPPORTED,
                        "attn_mask->dtype %s is not supported (F32 additive or U8 keep-mask)",
                        dtype_name(mask->dtype));

  const int64_t H = q->dims[1], D = q->dims[3];
  const int64_t Hkv = k->dims[1], Dv = v->dims[3];
  const int varlen_q = prm->cu_seqlens_q != NULL, varlen_k = prm->cu_seqlens_k != NULL;
  const int paged = prm->block_table != NULL;
  /* Sequences: the batch dim, or num_seqs with cu_seqlens_q. */
  int64_t B = q->dims[0];
  if (varlen_q) {
    if (prm->num_seqs <= 0 || prm->num_seqs > INT32_MAX)
      return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                          "params->num_seqs = %lld must be in [1, 2^31) with cu_seqlens_q",
                          (long long)prm->num_seqs);
    B = prm->num_seqs;
    TRY(dim_eq("q->dims[0] with cu_seqlens_q (packed queries)", q->dims[0], 1));
  } else if (prm->num_seqs != 0 && prm->num_seqs != B) {
    return fattn__error(FATTN_ERROR_SHAPE_MISMATCH,
                        "params->num_seqs = %lld must be 0 or q->dims[0] = %lld without "
                        "cu_seqlens_q",
                        (long long)prm->num_seqs, (long long)B);
  }
  if ((varlen_q || varlen_k || paged) && (mask || prm->kv_lens))
    return fattn__error(FATTN_ERROR_UNSUPPORTED,
                        "attn_mask and kv_lens are not available with cu_seqlens or block_table "
                        "(use seqused_k, causal and the window)");
  if (varlen_k && paged)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "cu_seqlens_k and block_table exclude each other (paged keys have "
                        "seqused_k)");
  if (prm->seqused_k && !varlen_k && !paged)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "seqused_k needs cu_seqlens_k or block_table (dense K: kv_lens)");
  if (paged && !prm->seqused_k)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "block_table needs seqused_k (each sequence's cached length)");

  int64_t Lq = q->dims[2], Lk = k->dims[2];
  TRY(dim_eq("out->dims[0] vs q->dims[0]", out->dims[0], q->dims[0]));
  TRY(dim_eq("out->dims[1] (heads) vs q->dims[1]", out->dims[1], H));
  TRY(dim_eq("out->dims[2] vs q->dims[2]", out->dims[2], q->dims[2]));
  TRY(dim_eq("v->dims[0] vs k->dims[0]", v->dims[0], k->dims[0]));
  TRY(dim_eq("v->dims[1] (kv heads) vs k->dims[1]", v->dims[1], Hkv));
  TRY(dim_eq("v->dims[2] vs k->dims[2]", v->dims[2], k->dims[2]));
  TRY(dim_eq("k->dims[3] (head_dim) vs q->dims[3]", k->dims[3], D));
  TRY(dim_eq("out->dims[3] (v head_dim) vs v->dims[3]", out->dims[3], Dv));
  if (H % Hkv != 0)
    return fattn__error(FATTN_ERROR_SHAPE_MISMATCH,
                        "kv heads (%lld) must divide query heads (%lld)", (long long)Hkv,
                        (long long)H);
  if (varlen_q) TRY(check_cu("cu_seqlens_q", prm->cu_seqlens_q, B, q->dims[2], "q->dims[2]", &Lq));
  if (varlen_k) {
    TRY(dim_eq("k->dims[0] with cu_seqlens_k (packed keys)", k->dims[0], 1));
    TRY(check_cu("cu_seqlens_k", prm->cu_seqlens_k, B, k->dims[2], "k->dims[2]", &Lk));
  } else if (!paged) {
    TRY(dim_eq("k->dims[0] (batch) vs the number of sequences", k->dims[0], B));
  }
  if (paged) {
    if (prm->block_table_stride <= 0 || prm->block_table_stride > INT32_MAX)
      return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                          "block_table_stride = %lld must be in [1, 2^31)",
                          (long long)prm->block_table_stride);
    const int64_t cap = prm->block_table_stride * k->dims[2]; /* < 2^31 · dims: no overflow */
    Lk = 0;
    for (int64_t b = 0; b < B; b++) {
      const int64_t n = prm->seqused_k[b];
      if (n < 0 || n > cap)
        return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                            "seqused_k[%lld] = %lld is outside [0, %lld] (block_table_stride %lld "
                            "× block_size %lld)",
                            (long long)b, (long long)n, (long long)cap,
                            (long long)prm->block_table_stride, (long long)k->dims[2]);
      if (n > Lk) Lk = n;
      for (int64_t e = 0; e < (n + k->dims[2] - 1) / k->dims[2]; e++) {
        const int32_t blk = prm->block_table[b * prm->block_table_stride + e];
        if (blk < 0 || blk >= k->dims[0])
          return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                              "block_table[%lld][%lld] = %d is outside the pool [0, %lld)",
                              (long long)b, (long long)e, (int)blk, (long long)k->dims[0]);
      }
    }
  } else if (prm->seqused_k) { /* with cu_seqlens_k */
    Lk = 0;
    for (int64_t b = 0; b < B; b++) {
      const int64_t n = prm->seqused_k[b], cap = prm->cu_seqlens_k[b + 1] - prm->cu_seqlens_k[b];
      if (n < 0 || n > cap)
        return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                            "seqused_k[%lld] = %lld is outside [0, %lld] (its cu_seqlens_k length)",
                            (long long)b, (long long)n, (long long)cap);
      if (n > Lk) Lk = n;
    }
  }
  if (Lq < 1) Lq = 1; /* maxima for block sizes: every sequence may be empty */
  if (Lk < 1) Lk = 1;
  if (mask) {
    if (mask->dims[0] != B && mask->dims[0] != 1)
      return fattn__error(FATTN_ERROR_SHAPE_MISMATCH, "attn_mask->dims[0] = %lld must be %lld or 1",
                          (long long)mask->dims[0], (long long)B);
    if (mask->dims[1] != H && mask->dims[1] != 1)
      return fattn__error(FATTN_ERROR_SHAPE_MISMATCH, "attn_mask->dims[1] = %lld must be %lld or 1",
                          (long long)mask->dims[1], (long long)H);
    TRY(dim_eq("attn_mask->dims[2] vs Lq", mask->dims[2], Lq));
    TRY(dim_eq("attn_mask->dims[3] vs Lk", mask->dims[3], Lk));
  }
  if (lse) {
    TRY(dim_eq("lse->dims[0] vs q->dims[0]", lse->dims[0], q->dims[0]));
    TRY(dim_eq("lse->dims[1] vs heads", lse->dims[1], H));
    TRY(dim_eq("lse->dims[2] vs q->dims[2]", lse->dims[2], q->dims[2]));
    TRY(dim_eq("lse->dims[3]", lse->dims[3], 1));
  }
  if (prm->kv_lens) {
    for (int64_t b = 0; b < B; b++)
      if (prm->kv_lens[b] < 0 || prm->kv_lens[b] > Lk)
        return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "kv_lens[%lld] = %d is outside [0, %lld]",
                            (long long)b, (int)prm->kv_lens[b], (long long)Lk);
  }
  if (prm->window_left < -1 || prm->window_right < -1)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "window_left = %lld, window_right = %lld: each must be >= 0, or -1 "
                        "(unbounded)",
                        (long long)prm->window_left, (long long)prm->window_right);
  if (prm->diag_shift < -(INT64_C(1) << 40) || prm->diag_shift > (INT64_C(1) << 40))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "params->diag_shift = %lld is outside [-2^40, 2^40]",
                        (long long)prm->diag_shift);
  if (!isfinite(prm->softcap) || prm->softcap < 0.0f)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "params->softcap = %g must be finite and > 0 (or 0: off)",
                        (double)prm->softcap);
  if (prm->alibi_slopes) TRY(check_per_head("alibi_slopes", prm->alibi_slopes, H));
  if (prm->sinks) TRY(check_per_head("sinks", prm->sinks, H));

  /* Work sizes used later: B·H·Lq·Lk and Lk·D must fit comfortably. */
  int64_t t;
  if (!fattn__mul_ok(B, H, &t) || !fattn__mul_ok(t, Lq, &t) || !fattn__mul_ok(t, Lk, &t) ||
      !fattn__mul_ok(t, D + Dv, &t) || !fattn__mul_ok(t, 4, &t))
    return fattn__error(FATTN_ERROR_OVERFLOW, "B·H·Lq·Lk·(D+Dv) FLOP count overflows int64");

  pb->B = B;
  pb->H = H;
  pb->Hkv = Hkv;
  pb->G = H / Hkv;
  pb->Lq = Lq;
  pb->Lk = Lk;
  pb->D = D;
  pb->Dv = Dv;
  pb->scale = prm->scale != 0.0f ? prm->scale : (float)(1.0 / sqrt((double)D));
  pb->causal = prm->causal;
  set_view(&pb->q, q);
  set_view(&pb->k, k);
  set_view(&pb->v, v);
  set_view(&pb->out, out);
  pb->has_mask = mask != NULL;
  pb->mask_dtype = mask ? mask->dtype : FATTN_F32;
  if (mask) set_view(&pb->mask, mask);
  pb->kv_lens = prm->kv_lens;
  pb->has_lse = lse != NULL;
  if (lse) set_view(&pb->lse, lse);
  /* windows wider than any sequence (and the shift) are unbounded */
  pb->diag_shift = prm->diag_shift;
  const int64_t wide = Lk + Lq + (prm->diag_shift < 0 ? -prm->diag_shift : prm->diag_shift);
  pb->win_left = prm->window_left >= wide ? -1 : prm->window_left;
  pb->win_right = prm->window_right >= wide ? -1 : prm->window_right;
  pb->alibi = prm->alibi_slopes;
  pb->softcap = prm->softcap;
  pb->sinks = prm->sinks;
  pb->cu_q = prm->cu_seqlens_q;
  pb->cu_k = prm->cu_seqlens_k;
  pb->seqused_k = prm->seqused_k;
  pb->block_table = prm->block_table;
  pb->bt_stride = paged ? prm->block_table_stride : 0;
  pb->page = paged ? k->dims[2] : 0;
  pb->page_shift = -1;
  for (int sh = 0; sh < 62 && paged; sh++)
    if ((INT64_C(1) << sh) == pb->page) pb->page_shift = sh;

  /* Quantized K / V: their scales, checked for the keys each sequence uses. */
  span sks = {0, 0}, svs = {0, 0};
  pb->k_scaled = is_quant(k->dtype);
  pb->v_scaled = is_quant(v->dtype);
  if (pb->k_scaled || pb->v_scaled) {
    int64_t lk_stack[64], *lk = lk_stack;
    if (B > 64 && !(lk = fattn__malloc((size_t)B * sizeof *lk)))
      return fattn__error(FATTN_ERROR_OUT_OF_MEMORY, "%lld sequence lengths", (long long)B);
    for (int64_t b = 0; b < B; b++)
      lk[b] = fattn__seq_lk(pb, b);
    fattn_status st = FATTN_SUCCESS;
    if (pb->k_scaled && !prm->k_scale)
      st = fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "k is %s: params->k_scale is required",
                        dtype_name(k->dtype));
    else if (pb->v_scaled && !prm->v_scale)
      st = fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "v is %s: params->v_scale is required",
                        dtype_name(v->dtype));
    if (st == FATTN_SUCCESS && pb->k_scaled)
      st = check_scale("k_scale", prm->k_scale, k, pb, lk, &sks);
    if (st == FATTN_SUCCESS && pb->v_scaled)
      st = check_scale("v_scale", prm->v_scale, v, pb, lk, &svs);
    if (lk != lk_stack) free(lk);
    if (st != FATTN_SUCCESS) return st;
    if (pb->k_scaled) set_view(&pb->k_scale, prm->k_scale);
    if (pb->v_scaled) set_view(&pb->v_scale, prm->v_scale);
  }
  pb->features = pb->win_left >= 0 || pb->win_right >= 0 || pb->alibi || pb->softcap != 0.0f ||
                 pb->sinks || pb->diag_shift != 0 || varlen_q || varlen_k || paged ||
                 pb->k_scaled || pb->v_scaled;

  TRY(check_no_self_overlap("out", out));
  if (lse) TRY(check_no_self_overlap("lse", lse));
  if (spans_overlap(so, sq) || spans_overlap(so, sk) || spans_overlap(so, sv) ||
      (mask && spans_overlap(so, sm)) || spans_overlap(so, sks) || spans_overlap(so, svs))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "out overlaps an input (q, k, v, attn_mask or a scale): in-place is not "
                        "supported");
  if (lse && (spans_overlap(sl, sq) || spans_overlap(sl, sk) || spans_overlap(sl, sv) ||
              spans_overlap(sl, so) || (mask && spans_overlap(sl, sm)) || spans_overlap(sl, sks) ||
              spans_overlap(sl, svs)))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "lse overlaps an input or out");
  return FATTN_SUCCESS;
}

/* A gradient: a float tensor with the dims of the input it belongs to,
 * written (no self-overlap). */
static fattn_status check_grad(const char *name, const fattn_tensor *g, const char *of,
                               const fattn_tensor *x, span *sp) {
  TRY(check_tensor(name, g, 0, sp));
  if (g->dtype != FATTN_F32 && g->dtype != FATTN_F16 && g->dtype != FATTN_BF16)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "%s->dtype must be F32, F16 or BF16, got %s",
                        name, dtype_name(g->dtype));
  for (int d = 0; d < 4; d++)
    if (g->dims[d] != x->dims[d])
      return fattn__error(FATTN_ERROR_SHAPE_MISMATCH, "%s->dims[%d] = %lld must be %s's (%lld)",
                          name, d, (long long)g->dims[d], of, (long long)x->dims[d]);
  return check_no_self_overlap(name, g);
}

fattn_status fattn__validate_backward(const fattn_tensor *q, const fattn_tensor *k,
                                      const fattn_tensor *v, const fattn_tensor *out,
                                      const fattn_tensor *dout, const fattn_tensor *lse,
                                      const fattn_tensor *dq, const fattn_tensor *dk,
                                      const fattn_tensor *dv, const fattn_sdpa_params *prm,
                                      fattn__problem *pb, fattn__grads *gr) {
  if (!prm) return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "params is NULL");
  if (!lse)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "lse is NULL: the backward pass needs the forward's lse");
  if (prm->cu_seqlens_q || prm->cu_seqlens_k || prm->seqused_k || prm->block_table)
    return fattn__error(FATTN_ERROR_UNSUPPORTED,
                        "varlen and paged inputs are not available in the backward pass");
  if (prm->backend == FATTN_BACKEND_ONEDNN)
    return fattn__error(FATTN_ERROR_UNSUPPORTED, "the oneDNN baseline has no backward pass");
  if (k && v && (is_quant(k->dtype) || is_quant(v->dtype)))
    return fattn__error(FATTN_ERROR_UNSUPPORTED,
                        "I8 / F8 K or V are not available in the backward pass");
  fattn_sdpa_params p = *prm;
  p.lse = lse;
  TRY(fattn__validate(q, k, v, out, &p, pb));
  span sq = {0, 0}, sk = {0, 0}, sv = {0, 0}, so = {0, 0}, sl = {0, 0}, sdo = {0, 0}, sdq = {0, 0},
       sdk = {0, 0}, sdv = {0, 0}, sm = {0, 0};
  TRY(check_tensor("q", q, 0, &sq));
  TRY(check_tensor("k", k, 0, &sk));
  TRY(check_tensor("v", v, 0, &sv));
  TRY(check_tensor("out", out, 0, &so));
  TRY(check_tensor("lse", lse, 0, &sl));
  if (prm->attn_mask) TRY(check_tensor("attn_mask", prm->attn_mask, 1, &sm));
  TRY(check_tensor("dout", dout, 0, &sdo));
  TRY(need_float("dout", dout, 0));
  for (int d = 0; d < 4; d++)
    TRY(dim_eq("dout->dims vs out->dims", dout->dims[d], out->dims[d]));
  TRY(check_grad("dq", dq, "q", q, &sdq));
  TRY(check_grad("dk", dk, "k", k, &sdk));
  TRY(check_grad("dv", dv, "v", v, &sdv));
  const span in[] = {sq, sk, sv, so, sl, sdo, sm};
  const span g[] = {sdq, sdk, sdv};
  static const char *const gname[] = {"dq", "dk", "dv"};
  for (int a = 0; a < 3; a++) {
    for (size_t x = 0; x < sizeof in / sizeof in[0]; x++)
      if (spans_overlap(g[a], in[x]))
        return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                            "%s overlaps an input (q, k, v, out, dout, lse or attn_mask)",
                            gname[a]);
    for (int b = a + 1; b < 3; b++)
      if (spans_overlap(g[a], g[b]))
        return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "%s and %s overlap", gname[a], gname[b]);
  }
  set_view(&gr->dout, dout);
  set_view(&gr->dq, dq);
  set_view(&gr->dk, dk);
  set_view(&gr->dv, dv);
  return FATTN_SUCCESS;
}

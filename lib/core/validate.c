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
  case FATTN_U8: return 1;
  }
  return 0;
}

static const char *dtype_name(fattn_dtype t) {
  switch (t) {
  case FATTN_F32: return "F32";
  case FATTN_F16: return "F16";
  case FATTN_BF16: return "BF16";
  case FATTN_U8: return "U8";
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

/* q, k, v and out: F32, F16 or BF16, in any combination. */
static fattn_status need_float(const char *name, const fattn_tensor *t) {
  if (t->dtype == FATTN_F32 || t->dtype == FATTN_F16 || t->dtype == FATTN_BF16)
    return FATTN_SUCCESS;
  return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                      "%s->dtype U8 is only valid for attn_mask (q, k, v, out: F32, F16, BF16)",
                      name);
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

  span sq, sk, sv, so, sm = {0, 0}, sl = {0, 0};
  TRY(check_tensor("q", q, 0, &sq));
  TRY(check_tensor("k", k, 0, &sk));
  TRY(check_tensor("v", v, 0, &sv));
  TRY(check_tensor("out", out, 0, &so));
  const fattn_tensor *mask = prm->attn_mask, *lse = prm->lse;
  if (mask) TRY(check_tensor("attn_mask", mask, 1, &sm));
  if (lse) TRY(check_tensor("lse", lse, 0, &sl));

  TRY(need_float("q", q));
  TRY(need_float("k", k));
  TRY(need_float("v", v));
  TRY(need_float("out", out));
  if (lse && lse->dtype != FATTN_F32)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "lse->dtype must be F32, got %s",
                        dtype_name(lse->dtype));
  if (mask && mask->dtype != FATTN_F32 && mask->dtype != FATTN_U8)
    return fattn__error(FATTN_ERROR_UNSUPPORTED,
                        "attn_mask->dtype %s is not supported (F32 additive or U8 keep-mask)",
                        dtype_name(mask->dtype));

  const int64_t B = q->dims[0], H = q->dims[1], Lq = q->dims[2], D = q->dims[3];
  const int64_t Hkv = k->dims[1], Lk = k->dims[2], Dv = v->dims[3];
  TRY(dim_eq("k->dims[0] (batch) vs q->dims[0]", k->dims[0], B));
  TRY(dim_eq("v->dims[0] (batch) vs q->dims[0]", v->dims[0], B));
  TRY(dim_eq("out->dims[0] (batch) vs q->dims[0]", out->dims[0], B));
  TRY(dim_eq("out->dims[1] (heads) vs q->dims[1]", out->dims[1], H));
  TRY(dim_eq("v->dims[1] (kv heads) vs k->dims[1]", v->dims[1], Hkv));
  if (H % Hkv != 0)
    return fattn__error(FATTN_ERROR_SHAPE_MISMATCH,
                        "kv heads (%lld) must divide query heads (%lld)", (long long)Hkv,
                        (long long)H);
  TRY(dim_eq("out->dims[2] (Lq) vs q->dims[2]", out->dims[2], Lq));
  TRY(dim_eq("v->dims[2] (Lk) vs k->dims[2]", v->dims[2], Lk));
  TRY(dim_eq("k->dims[3] (head_dim) vs q->dims[3]", k->dims[3], D));
  TRY(dim_eq("out->dims[3] (v head_dim) vs v->dims[3]", out->dims[3], Dv));
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
    TRY(dim_eq("lse->dims[0] vs batch", lse->dims[0], B));
    TRY(dim_eq("lse->dims[1] vs heads", lse->dims[1], H));
    TRY(dim_eq("lse->dims[2] vs Lq", lse->dims[2], Lq));
    TRY(dim_eq("lse->dims[3]", lse->dims[3], 1));
  }
  if (prm->kv_lens) {
    for (int64_t b = 0; b < B; b++)
      if (prm->kv_lens[b] < 0 || prm->kv_lens[b] > Lk)
        return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "kv_lens[%lld] = %d is outside [0, %lld]",
                            (long long)b, (int)prm->kv_lens[b], (long long)Lk);
  }

  /* Work sizes used later: B·H·Lq·Lk and Lk·D must fit comfortably. */
  int64_t t;
  if (!fattn__mul_ok(B, H, &t) || !fattn__mul_ok(t, Lq, &t) || !fattn__mul_ok(t, Lk, &t) ||
      !fattn__mul_ok(t, D + Dv, &t) || !fattn__mul_ok(t, 4, &t))
    return fattn__error(FATTN_ERROR_OVERFLOW, "B·H·Lq·Lk·(D+Dv) FLOP count overflows int64");

  TRY(check_no_self_overlap("out", out));
  if (lse) TRY(check_no_self_overlap("lse", lse));
  if (spans_overlap(so, sq) || spans_overlap(so, sk) || spans_overlap(so, sv) ||
      (mask && spans_overlap(so, sm)))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "out overlaps an input (q, k, v or attn_mask): in-place is not supported");
  if (lse && (spans_overlap(sl, sq) || spans_overlap(sl, sk) || spans_overlap(sl, sv) ||
              spans_overlap(sl, so) || (mask && spans_overlap(sl, sm))))
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "lse overlaps q, k, v, attn_mask or out");

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
  return FATTN_SUCCESS;
}

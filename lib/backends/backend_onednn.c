/* The oneDNN baseline: unfused attention as a competent oneDNN 2.x user builds
 * it, so that fattn's figures are compared with something honest.
 *
 *   S = scale · Q·Kᵀ      one batched matmul; K is a transposed strided view
 *                         (no copy), the scale is the primitive's output scale
 *   S += mask             a separate in-place binary add; only when there is a
 *                         mask. FATTN_ONEDNN_MASK=postop adds it as a binary
 *                         post-op on the matmul instead. Measured here (1 thread,
 *                         CPU 1): post-op 1.3-1.45x slower on P3, and 450x slower
 *                         on a causal [4,12,512,512,64] shape, where the matmul
 *                         fell back to ref:any (ONEDNN_VERBOSE=1)
 *   P = softmax(S)        in place
 *   out = P·V             one batched matmul writing through out's strides
 *
 * GQA without copies: when q's heads and positions can be merged into one
 * stride (BHSD), the G query heads of a kv head are one taller matrix
 * [B, Hkv, G·Lq, D]; otherwise the same primitives run once per head of the
 * group on offset views. The mask (user mask, causal, kv_lens: an additive
 * [B or 1, H or 1, Lq, Lk] tensor) is the user's F32 tensor itself when that
 * is all there is, a causal mask built once and cached with the primitives
 * when that is all there is, and otherwise built per call in the workspace.
 * Rows with no key to attend (softmax gives NaN there) are set to zero
 * afterwards. Primitives are created once per distinct problem and cached on
 * the context; scratchpads are user-managed (in the context's workspace).
 * Not supported: lse (FATTN_ERROR_UNSUPPORTED). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <oneapi/dnnl/dnnl.h>

#include "access.h"
#include "internal.h"

#define FATTN__DNNL_CACHE 16

typedef struct key {
  int64_t B, H, Hkv, Lq, Lk, D, Dv;
  int64_t qs[4], ks[4], vs[4], os[4], ms[4], md[4];
  float scale;
  int causal, mask, kv_lens, tall, postop;
} key;

/* A primitive with the memory descriptors it reports for its arguments (the
 * ones execution memories must be created with: oneDNN may canonicalise
 * what it was given, e.g. the stride of a dimension of size 1). */
typedef struct prim {
  dnnl_primitive_t p;
  dnnl_memory_desc_t src, src1, dst, scratch; /* src1: weights or the second input */
  dnnl_memory_desc_t post_src1;               /* the mask, when added as a post-op */
} prim;

typedef struct entry {
  key k;
  int used, busy;
  prim qk, add, softmax, pv;
  dnnl_memory_desc_t q_md, k_md, s_md, v_md, o_md, m_md;
  size_t scratch;     /* the largest scratchpad of the four */
  float *causal_mask; /* [Lq, Lk], when the causal mask is all the mask there is */
} entry;

/* The hooks this backend registers (backends/registry.c), defined at the end. */
extern const fattn__backend_ops fattn__onednn_ops;

/* Per context (its backend state slot): primitives per problem. */
struct fattn__onednn_cache {
  entry e[FATTN__DNNL_CACHE];
  unsigned long tick;
};

static dnnl_engine_t fattn__engine;
static dnnl_status_t fattn__engine_status = dnnl_success;
static pthread_once_t fattn__engine_once = PTHREAD_ONCE_INIT;
static void engine_init(void) {
  fattn__engine_status = dnnl_engine_create(&fattn__engine, dnnl_cpu, 0);
}

#define DNNL_TRY(call)                                                                             \
  do {                                                                                             \
    dnnl_status_t s_ = (call);                                                                     \
    if (s_ != dnnl_success)                                                                        \
      return fattn__error(FATTN_ERROR_BACKEND, "oneDNN: %s failed with status %d", #call,          \
                          (int)s_);                                                                \
  } while (0)

static void entry_free(entry *e) {
  if (e->qk.p) dnnl_primitive_destroy(e->qk.p);
  if (e->add.p) dnnl_primitive_destroy(e->add.p);
  if (e->softmax.p) dnnl_primitive_destroy(e->softmax.p);
  if (e->pv.p) dnnl_primitive_destroy(e->pv.p);
  free(e->causal_mask);
  memset(e, 0, sizeof *e);
}

static const char *onednn_version(void) {
  static char v[32];
  const dnnl_version_t *d = dnnl_version();
  snprintf(v, sizeof v, "%d.%d.%d", d->major, d->minor, d->patch);
  return v;
}

static void cache_free(void *state) {
  struct fattn__onednn_cache *c = state;
  if (!c) return;
  for (int i = 0; i < FATTN__DNNL_CACHE; i++)
    if (c->e[i].used) entry_free(&c->e[i]);
  free(c);
}

/* Mask kinds (key.mask). */
enum { MASK_NONE, MASK_USER_F32, MASK_CAUSAL_ONLY, MASK_BUILT };

static int mask_kind(const fattn__problem *pb) {
  const int causal = pb->causal != FATTN_CAUSAL_NONE;
  if (!pb->has_mask && !causal && !pb->kv_lens) return MASK_NONE;
  if (pb->has_mask && pb->mask_dtype == FATTN_F32 && !causal && !pb->kv_lens) return MASK_USER_F32;
  if (!pb->has_mask && causal && !pb->kv_lens) return MASK_CAUSAL_ONLY;
  return MASK_BUILT;
}

static key make_key(const fattn__problem *pb) {
  key k;
  memset(&k, 0, sizeof k);
  k.B = pb->B, k.H = pb->H, k.Hkv = pb->Hkv, k.Lq = pb->Lq, k.Lk = pb->Lk, k.D = pb->D,
  k.Dv = pb->Dv;
  memcpy(k.qs, pb->q.s, sizeof k.qs);
  memcpy(k.ks, pb->k.s, sizeof k.ks);
  memcpy(k.vs, pb->v.s, sizeof k.vs);
  memcpy(k.os, pb->out.s, sizeof k.os);
  k.mask = mask_kind(pb);
  if (k.mask == MASK_USER_F32) memcpy(k.ms, pb->mask.s, sizeof k.ms);
  k.scale = pb->scale;
  k.causal = (int)pb->causal;
  k.kv_lens = pb->kv_lens != NULL;
  /* How the mask is added: a separate in-place binary primitive (default,
   * measured faster here), or FATTN_ONEDNN_MASK=postop for a binary post-op on
   * the Q·Kᵀ matmul (kept so that the two can be compared). */
  const char *mode = getenv("FATTN_ONEDNN_MASK");
  k.postop = k.mask != MASK_NONE && mode && !strcmp(mode, "postop");
  /* Taller query matrix: heads of a group and positions merge into one stride. */
  k.tall =
      pb->G == 1 || (pb->q.s[1] == pb->Lq * pb->q.s[2] && pb->out.s[1] == pb->Lq * pb->out.s[2]);
  /* The user's F32 mask is used in place: over a tall view it must merge the
   * same way (per head, heads and positions in one stride). */
  if (k.mask == MASK_USER_F32 && pb->G > 1 &&
      (pb->mask.s[1] == 0 || pb->mask.s[1] != pb->Lq * pb->mask.s[2]))
    k.tall = 0;
  return k;
}

static void query_md(const_dnnl_primitive_desc_t pd, dnnl_query_t what, int index,
                     dnnl_memory_desc_t *out) {
  const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, index);
  if (md)
    *out = *md;
  else
    memset(out, 0, sizeof *out);
}

static fattn_status create_primitive(prim *p, const_dnnl_op_desc_t desc,
                                     const_dnnl_primitive_attr_t attr, dnnl_query_t second,
                                     size_t *scratch) {
  dnnl_primitive_desc_t pd;
  DNNL_TRY(dnnl_primitive_desc_create(&pd, desc, attr, fattn__engine, NULL));
  query_md(pd, dnnl_query_src_md, 0, &p->src);
  query_md(pd, second, second == dnnl_query_src_md ? 1 : 0, &p->src1);
  query_md(pd, dnnl_query_dst_md, 0, &p->dst);
  query_md(pd, dnnl_query_scratchpad_md, 0, &p->scratch);
  query_md(pd, dnnl_query_exec_arg_md, DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1,
           &p->post_src1);
  const size_t sz = dnnl_memory_desc_get_size(&p->scratch);
  if (sz > *scratch) *scratch = sz;
  dnnl_status_t s = dnnl_primitive_create(&p->p, pd);
  dnnl_primitive_desc_destroy(pd);
  if (s != dnnl_success)
    return fattn__error(FATTN_ERROR_BACKEND, "oneDNN: dnnl_primitive_create failed with status %d",
                        (int)s);
  return FATTN_SUCCESS;
}

static void fix_unit_strides(const dnnl_dims_t d, dnnl_dims_t s) {
  for (int i = 3; i >= 0; i--)
    if (d[i] == 1 || s[i] == 0) {
      int64_t inner = 1; /* the largest extent of the dims inside it */
      for (int j = 0; j < 4; j++)
        if (j != i && d[j] > 1 && s[j] * d[j] > inner) inner = s[j] * d[j];
      s[i] = inner;
    }
}

static fattn_status build(entry *e, const fattn__problem *pb) {
  const key *k = &e->k;
  /* Rows per kv head: G·Lq when tall, else Lq (run once per group head). */
  const int64_t rows = k->tall ? pb->G * pb->Lq : pb->Lq;
  dnnl_dims_t qd = {pb->B, pb->Hkv, rows, pb->D},
              qs = {pb->q.s[0], pb->G * pb->q.s[1], pb->q.s[2], pb->q.s[3]};
  dnnl_dims_t kd = {pb->B, pb->Hkv, pb->D, pb->Lk},
              ks = {pb->k.s[0], pb->k.s[1], pb->k.s[3], pb->k.s[2]};
  dnnl_dims_t sd = {pb->B, pb->Hkv, rows, pb->Lk};
  /* S is dense over the dims it is described with: B·Hkv·rows·Lk floats */
  dnnl_dims_t ss = {pb->Hkv * rows * pb->Lk, rows * pb->Lk, pb->Lk, 1};
  dnnl_dims_t vd = {pb->B, pb->Hkv, pb->Lk, pb->Dv},
              vs = {pb->v.s[0], pb->v.s[1], pb->v.s[2], pb->v.s[3]};
  dnnl_dims_t od = {pb->B, pb->Hkv, rows, pb->Dv},
              os = {pb->out.s[0], pb->G * pb->out.s[1], pb->out.s[2], pb->out.s[3]};
  /* Dims of 1 carry stride 0 in the views; oneDNN wants the stride such a dim
   * would have in a dense layout (a stride of 1 beside the innermost one is
   * rejected when it writes the output). */
  fix_unit_strides(qd, qs);
  fix_unit_strides(kd, ks);
  fix_unit_strides(vd, vs);
  fix_unit_strides(od, os);
  DNNL_TRY(dnnl_memory_desc_init_by_strides(&e->q_md, 4, qd, dnnl_f32, qs));
  DNNL_TRY(dnnl_memory_desc_init_by_strides(&e->k_md, 4, kd, dnnl_f32, ks));
  DNNL_TRY(dnnl_memory_desc_init_by_strides(&e->s_md, 4, sd, dnnl_f32, ss));
  DNNL_TRY(dnnl_memory_desc_init_by_strides(&e->v_md, 4, vd, dnnl_f32, vs));
  DNNL_TRY(dnnl_memory_desc_init_by_strides(&e->o_md, 4, od, dnnl_f32, os));

  if (k->mask != MASK_NONE) {
    /* The mask as [B or 1, Hkv or 1, G·Lq or Lq, Lk] over S. */
    dnnl_dims_t md, ms;
    if (k->mask == MASK_USER_F32) {
      const int64_t mb = pb->mask.s[0] ? pb->B : 1, mh = pb->mask.s[1] ? pb->H : 1;
      md[0] = mb, md[1] = mh == 1 ? 1 : pb->Hkv, md[2] = rows, md[3] = pb->Lk;
      ms[0] = pb->mask.s[0] ? pb->mask.s[0] : 1;
      ms[1] = mh == 1 ? 1 : pb->G * pb->mask.s[1];
      ms[2] = pb->mask.s[2] ? pb->mask.s[2] : 1;
      ms[3] = pb->mask.s[3] ? pb->mask.s[3] : 1;
    } else if (k->mask == MASK_CAUSAL_ONLY) {
      md[0] = 1, md[1] = 1, md[2] = rows, md[3] = pb->Lk; /* [G·Lq or Lq, Lk], built once */
      ms[0] = rows * pb->Lk, ms[1] = rows * pb->Lk, ms[2] = pb->Lk, ms[3] = 1;
    } else { /* built per call: dense like S */
      md[0] = pb->B, md[1] = pb->Hkv, md[2] = rows, md[3] = pb->Lk;
      memcpy(ms, ss, sizeof ms);
    }
    /* no fix_unit_strides here: a mask laid out like S (same strides, size-1
     * dims included) is what the in-place binary add computes correctly; a
     * reordered size-1 stride gave wrong sums for Lq = 1 in the sweep */
    DNNL_TRY(dnnl_memory_desc_init_by_strides(&e->m_md, 4, md, dnnl_f32, ms));
  }

  fattn_status st;
  dnnl_primitive_attr_t attr;
  DNNL_TRY(dnnl_primitive_attr_create(&attr));
  dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
  dnnl_matmul_desc_t mm;
  dnnl_status_t ds = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &pb->scale);
  if (ds == dnnl_success && k->postop) {
    dnnl_post_ops_t po;
    ds = dnnl_post_ops_create(&po);
    if (ds == dnnl_success) {
      ds = dnnl_post_ops_append_binary(po, dnnl_binary_add, &e->m_md);
      if (ds == dnnl_success) ds = dnnl_primitive_attr_set_post_ops(attr, po);
      dnnl_post_ops_destroy(po);
    }
  }
  if (ds == dnnl_success) ds = dnnl_matmul_desc_init(&mm, &e->q_md, &e->k_md, NULL, &e->s_md);
  if (ds != dnnl_success) {
    dnnl_primitive_attr_destroy(attr);
    return fattn__error(FATTN_ERROR_BACKEND, "oneDNN: Q·Kᵀ matmul description failed (%d)",
                        (int)ds);
  }
  st = create_primitive(&e->qk, &mm, attr, dnnl_query_weights_md, &e->scratch);
  dnnl_primitive_attr_destroy(attr);
  if (st != FATTN_SUCCESS) return st;

  DNNL_TRY(dnnl_primitive_attr_create(&attr));
  dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
  if (k->mask != MASK_NONE && !k->postop) {
    dnnl_binary_desc_t bd;
    ds = dnnl_binary_desc_init(&bd, dnnl_binary_add, &e->s_md, &e->m_md, &e->s_md);
    if (ds != dnnl_success) {
      dnnl_primitive_attr_destroy(attr);
      return fattn__error(FATTN_ERROR_BACKEND, "oneDNN: mask binary description failed (%d)",
                          (int)ds);
    }
    st = create_primitive(&e->add, &bd, attr, dnnl_query_src_md, &e->scratch);
    if (st != FATTN_SUCCESS) {
      dnnl_primitive_attr_destroy(attr);
      return st;
    }
  }
  dnnl_softmax_desc_t smd;
  ds = dnnl_softmax_forward_desc_init(&smd, dnnl_forward_inference, &e->s_md, 3);
  if (ds == dnnl_success)
    st = create_primitive(&e->softmax, &smd, attr, dnnl_query_src_md, &e->scratch);
  if (ds == dnnl_success && st == FATTN_SUCCESS) {
    ds = dnnl_matmul_desc_init(&mm, &e->s_md, &e->v_md, NULL, &e->o_md);
    if (ds == dnnl_success)
      st = create_primitive(&e->pv, &mm, attr, dnnl_query_weights_md, &e->scratch);
  }
  dnnl_primitive_attr_destroy(attr);
  if (ds != dnnl_success)
    return fattn__error(FATTN_ERROR_BACKEND, "oneDNN: softmax / P·V description failed (%d)",
                        (int)ds);
  if (st != FATTN_SUCCESS) return st;

  if (k->mask == MASK_CAUSAL_ONLY) {
    e->causal_mask = fattn__malloc((size_t)(rows * pb->Lk) * sizeof(float));
    if (!e->causal_mask) return fattn__error(FATTN_ERROR_OUT_OF_MEMORY, "oneDNN causal mask");
    for (int64_t r = 0; r < rows; r++) {
      const int64_t lim = fattn__row_limit(pb, 0, r % pb->Lq);
      for (int64_t j = 0; j < pb->Lk; j++)
        e->causal_mask[r * pb->Lk + j] = j < lim ? 0.0f : -INFINITY;
    }
  }
  return FATTN_SUCCESS;
}

/* Finds or builds the cache entry for this problem and marks it busy. */
static fattn_status lookup(fattn_context *ctx, const fattn__problem *pb, entry **out, int *temp) {
  const key k = make_key(pb);
  *temp = 0;
  pthread_mutex_lock(&ctx->lock);
  void **state = fattn__backend_state(ctx, &fattn__onednn_ops);
  if (!*state) *state = fattn__calloc(1, sizeof(struct fattn__onednn_cache));
  struct fattn__onednn_cache *c = *state;
  entry *hit = NULL, *slot = NULL;
  for (int i = 0; c && i < FATTN__DNNL_CACHE; i++) {
    entry *e = &c->e[i];
    if (e->used && !memcmp(&e->k, &k, sizeof k)) {
      hit = e;
      break;
    }
    if (!e->busy && (!slot || !e->used || (slot->used && e->used < slot->used))) slot = e;
  }
  if (hit) {
    hit->busy++;
    hit->used = (int)++c->tick;
  } else if (slot) {
    if (slot->used) entry_free(slot);
    slot->busy = 1; /* reserved while it is built outside the lock */
  }
  pthread_mutex_unlock(&ctx->lock);
  if (hit) {
    *out = hit;
    return FATTN_SUCCESS;
  }
  entry *e = slot;
  if (!e) { /* every slot busy (or no cache memory): a one-off entry */
    e = fattn__calloc(1, sizeof *e);
    if (!e) return fattn__error(FATTN_ERROR_OUT_OF_MEMORY, "oneDNN primitive cache");
    *temp = 1;
  }
  e->k = k;
  fattn_status st = build(e, pb);
  pthread_mutex_lock(&ctx->lock);
  if (st != FATTN_SUCCESS) {
    entry_free(e);
  } else if (!*temp) {
    e->used = (int)++c->tick;
  }
  pthread_mutex_unlock(&ctx->lock);
  if (st != FATTN_SUCCESS) {
    if (*temp) free(e);
    return st;
  }
  *out = e;
  return FATTN_SUCCESS;
}

static void release(fattn_context *ctx, entry *e, int temp) {
  if (temp) {
    entry_free(e);
    free(e);
    return;
  }
  pthread_mutex_lock(&ctx->lock);
  e->busy--;
  pthread_mutex_unlock(&ctx->lock);
}

typedef struct mem_arg {
  int arg;
  const dnnl_memory_desc_t *md;
  void *ptr;
} mem_arg;

static fattn_status exec(const char *what, dnnl_primitive_t p, dnnl_stream_t stream,
                         const mem_arg *a, int n) {
  dnnl_exec_arg_t args[6];
  dnnl_memory_t mem[6];
  int made = 0;
  fattn_status st = FATTN_SUCCESS;
  for (int i = 0; i < n; i++) {
    if (a[i].arg == DNNL_ARG_SCRATCHPAD && dnnl_memory_desc_get_size(a[i].md) == 0) continue;
    dnnl_status_t s = dnnl_memory_create(&mem[made], a[i].md, fattn__engine, a[i].ptr);
    if (s != dnnl_success) {
      st = fattn__error(FATTN_ERROR_BACKEND, "oneDNN: dnnl_memory_create failed (%d)", (int)s);
      break;
    }
    args[made].arg = a[i].arg;
    args[made].memory = mem[made];
    made++;
  }
  if (st == FATTN_SUCCESS) {
    dnnl_status_t s = dnnl_primitive_execute(p, stream, made, args);
    if (s == dnnl_success) s = dnnl_stream_wait(stream);
    if (s != dnnl_success)
      st = fattn__error(FATTN_ERROR_BACKEND, "oneDNN: executing %s failed (status %d)", what,
                        (int)s);
  }
  for (int i = 0; i < made; i++)
    dnnl_memory_destroy(mem[i]);
  return st;
}

/* Builds the additive mask [B, Hkv, rows, Lk] (dense, like S) for query head
 * `g` of each group (all of them when tall). */
static void build_mask(const fattn__problem *pb, int tall, int64_t g, float *m) {
  const int64_t groups = tall ? pb->G : 1, rows = groups * pb->Lq;
  for (int64_t b = 0; b < pb->B; b++)
    for (int64_t hk = 0; hk < pb->Hkv; hk++)
      for (int64_t r = 0; r < rows; r++) {
        const int64_t i = r % pb->Lq, h = hk * pb->G + (tall ? r / pb->Lq : g);
        const int64_t lim = fattn__row_limit(pb, b, i);
        float *row = m + ((b * pb->Hkv + hk) * rows + r) * pb->Lk;
        for (int64_t j = 0; j < pb->Lk; j++) {
          float x = j < lim ? 0.0f : -INFINITY;
          if (x == 0.0f && pb->has_mask) x = (float)fattn__mask_at(pb, b, h, i, j);
          row[j] = x;
        }
      }
}

/* Rows that attend no key: softmax leaves NaN there; the API wants zeros. */
static int row_empty(const fattn__problem *pb, int64_t b, int64_t h, int64_t i) {
  const int64_t lim = fattn__row_limit(pb, b, i);
  if (lim <= 0) return 1;
  if (!pb->has_mask) return 0;
  for (int64_t j = 0; j < lim; j++)
    if (fattn__mask_at(pb, b, h, i, j) != -INFINITY) return 0;
  return 1;
}

/* Copies an F32 view with dims d into dense memory (row major over d; dims of
 * stride 0, a broadcast mask's, stay broadcast with extent 1) and points the
 * view there. Returns the floats used. */
static int64_t densify(fattn__view *v, const int64_t d[4], float *dst) {
  int64_t e[4], ds[4], n = 1;
  for (int i = 3; i >= 0; i--) {
    e[i] = v->s[i] == 0 ? 1 : d[i];
    ds[i] = v->s[i] == 0 ? 0 : n;
    n *= e[i];
  }
  const float *src = (const float *)v->base;
  for (int64_t a = 0; a < e[0]; a++)
    for (int64_t b = 0; b < e[1]; b++)
      for (int64_t c = 0; c < e[2]; c++)
        for (int64_t x = 0; x < e[3]; x++)
          dst[a * ds[0] + b * ds[1] + c * ds[2] + x * ds[3]] =
              src[a * v->s[0] + b * v->s[1] + c * v->s[2] + x * v->s[3]];
  v->base = (const char *)dst;
  memcpy(v->s, ds, sizeof ds);
  return n;
}

static fattn_status run(fattn_context *ctx, const fattn__problem *pb);

/* oneDNN's memory descriptors cannot describe a view whose elements alias
 * (rows that overlap, e.g. a row stride smaller than the row: a valid input of
 * fattn_sdpa that every other backend reads as it is). Such q, k, v or F32
 * mask is copied dense into the workspace first, so that the baseline
 * computes what the other backends do; the copy counts in its time. */
static fattn_status onednn_run(fattn_context *ctx, const fattn__problem *pb) {
  if (pb->features)
    return fattn__error(FATTN_ERROR_UNSUPPORTED,
                        "the oneDNN baseline runs dense attention only (no window, ALiBi, softcap, "
                        "sinks, varlen, paged or quantized K / V)");
  fattn__problem p = *pb;
  fattn__view *views[4] = {&p.q, &p.k, &p.v, &p.mask};
  const int64_t dims[4][4] = {{p.B, p.H, p.Lq, p.D},
                              {p.B, p.Hkv, p.Lk, p.D},
                              {p.B, p.Hkv, p.Lk, p.Dv},
                              {p.B, p.H, p.Lq, p.Lk}};
  int alias[4] = {0, 0, 0, 0}, any = 0;
  int64_t floats = 0;
  for (int t = 0; t < 4; t++) {
    if (t == 3 && !(p.has_mask && p.mask_dtype == FATTN_F32)) continue;
    if (views[t]->dtype != FATTN_F32) continue; /* refused below: F32 only */
    alias[t] = fattn__view_aliases(dims[t], views[t]->s, NULL);
    if (!alias[t]) continue;
    /* the dense copy may be far larger than the aliasing view */
    int64_t n = 16;
    for (int i = 0; i < 4; i++)
      if (!fattn__mul_ok(n, views[t]->s[i] == 0 ? 1 : dims[t][i], &n))
        return fattn__error(FATTN_ERROR_OVERFLOW, "oneDNN baseline: a dense copy overflows");
    if (!fattn__add_ok(floats, n / 16 + 16, &floats) || floats > INT64_MAX / 8)
      return fattn__error(FATTN_ERROR_OVERFLOW, "oneDNN baseline: a dense copy overflows");
    any = 1;
  }
  if (!any) return run(ctx, pb);
  int slot;
  void *mem;
  fattn_status st = fattn__workspace_acquire(ctx, (size_t)floats * sizeof(float), &slot, &mem);
  if (st != FATTN_SUCCESS) return st;
  float *dst = mem;
  for (int t = 0; t < 4; t++)
    if (alias[t]) dst += fattn__round_up(densify(views[t], dims[t], dst), 16);
  st = run(ctx, &p);
  fattn__workspace_done(ctx, slot, mem);
  return st;
}

static fattn_status run(fattn_context *ctx, const fattn__problem *pb) {
  if (pb->has_lse)
    return fattn__error(FATTN_ERROR_UNSUPPORTED, "the oneDNN baseline does not compute lse");
  if (pb->q.dtype != FATTN_F32 || pb->k.dtype != FATTN_F32 || pb->v.dtype != FATTN_F32 ||
      pb->out.dtype != FATTN_F32)
    return fattn__error(FATTN_ERROR_UNSUPPORTED,
                        "the oneDNN baseline runs F32 q, k, v and out only (oneDNN 2.6's bf16 "
                        "matmul is not wired in)");
  pthread_once(&fattn__engine_once, engine_init);
  if (fattn__engine_status != dnnl_success)
    return fattn__error(FATTN_ERROR_BACKEND, "oneDNN: dnnl_engine_create failed (%d)",
                        (int)fattn__engine_status);
  entry *e = NULL;
  int temp = 0;
  fattn_status st = lookup(ctx, pb, &e, &temp);
  if (st != FATTN_SUCCESS) return st;

  const int tall = e->k.tall;
  const int64_t groups = tall ? 1 : pb->G; /* executions per call */
  int64_t s_elems, bytes;
  /* S (and a built mask) are B·H·Lq·Lk floats: the unfused baseline's cost */
  if (!fattn__mul_ok(pb->B * pb->Hkv, (tall ? pb->G : 1) * pb->Lq, &s_elems) ||
      !fattn__mul_ok(s_elems, pb->Lk, &s_elems) ||
      !fattn__mul_ok(s_elems, e->k.mask == MASK_BUILT ? 8 : 4, &bytes) ||
      !fattn__add_ok(bytes, (int64_t)e->scratch + 128, &bytes)) {
    release(ctx, e, temp);
    return fattn__error(FATTN_ERROR_OVERFLOW, "oneDNN baseline: the score matrix overflows");
  }
  int slot;
  void *ws;
  if ((st = fattn__workspace_acquire(ctx, (size_t)bytes, &slot, &ws)) != FATTN_SUCCESS) {
    release(ctx, e, temp);
    return st;
  }
  float *S = ws;
  float *M = e->k.mask == MASK_BUILT ? S + s_elems : NULL;
  char *scratch = (char *)ws + fattn__round_up((e->k.mask == MASK_BUILT ? 2 : 1) * s_elems * 4, 64);
  float *mask_ptr = e->k.mask == MASK_BUILT         ? M
                    : e->k.mask == MASK_CAUSAL_ONLY ? e->causal_mask
                    : e->k.mask == MASK_USER_F32    ? (float *)pb->mask.base
                                                    : NULL;

  dnnl_stream_t stream = NULL;
  dnnl_status_t ds = dnnl_stream_create(&stream, fattn__engine, dnnl_stream_default_flags);
  if (ds != dnnl_success) st = fattn__error(FATTN_ERROR_BACKEND, "oneDNN: stream (%d)", (int)ds);
#if defined(_OPENMP)
  const int prev_threads = omp_get_max_threads();
  omp_set_num_threads(omp_in_parallel() ? 1 : ctx->num_threads);
#endif
  for (int64_t g = 0; g < groups && st == FATTN_SUCCESS; g++) {
    /* Without the tall view, query head g of every group: offset q and out by g heads. */
    float *q = (float *)(pb->q.base) + g * pb->q.s[1];
    float *o = (float *)(pb->out.base) + g * pb->out.s[1];
    /* rebuilt for another group head only when a per-head user mask makes it
     * differ (causal and kv_lens do not depend on the head) */
    if (M && (g == 0 || (pb->has_mask && pb->mask.s[1] != 0))) build_mask(pb, tall, g, M);
    /* per-head masks without the tall view: offset by this group head */
    float *mp = mask_ptr;
    if (mp && !tall && e->k.mask == MASK_USER_F32 && pb->mask.s[1]) mp += g * pb->mask.s[1];
    const mem_arg a[] = {
        {DNNL_ARG_SRC, &e->qk.src, q},
        {DNNL_ARG_WEIGHTS, &e->qk.src1, (void *)pb->k.base},
        {DNNL_ARG_DST, &e->qk.dst, S},
        {DNNL_ARG_SCRATCHPAD, &e->qk.scratch, scratch},
        {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, &e->qk.post_src1, mp}};
    st = exec("Q·Kᵀ matmul", e->qk.p, stream, a, e->k.postop ? 5 : 4);
    if (st == FATTN_SUCCESS && e->add.p) {
      const mem_arg b[] = {{DNNL_ARG_SRC_0, &e->add.src, S},
                           {DNNL_ARG_SRC_1, &e->add.src1, mp},
                           {DNNL_ARG_DST, &e->add.dst, S},
                           {DNNL_ARG_SCRATCHPAD, &e->add.scratch, scratch}};
      st = exec("mask add", e->add.p, stream, b, 4);
    }
    if (st == FATTN_SUCCESS) {
      const mem_arg c[] = {{DNNL_ARG_SRC, &e->softmax.src, S},
                           {DNNL_ARG_DST, &e->softmax.dst, S},
                           {DNNL_ARG_SCRATCHPAD, &e->softmax.scratch, scratch}};
      st = exec("softmax", e->softmax.p, stream, c, 3);
    }
    if (st == FATTN_SUCCESS) {
      const mem_arg d[] = {{DNNL_ARG_SRC, &e->pv.src, S},
                           {DNNL_ARG_WEIGHTS, &e->pv.src1, (void *)pb->v.base},
                           {DNNL_ARG_DST, &e->pv.dst, o},
                           {DNNL_ARG_SCRATCHPAD, &e->pv.scratch, scratch}};
      st = exec("P·V matmul", e->pv.p, stream, d, 4);
    }
  }
#if defined(_OPENMP)
  omp_set_num_threads(prev_threads);
#endif
  if (stream) dnnl_stream_destroy(stream);
  if (st == FATTN_SUCCESS && e->k.mask != MASK_NONE)
    for (int64_t b = 0; b < pb->B; b++)
      for (int64_t h = 0; h < pb->H; h++)
        for (int64_t i = 0; i < pb->Lq; i++)
          if (row_empty(pb, b, h, i)) {
            float *row = fattn__out_row(pb, b, h, i);
            for (int64_t c = 0; c < pb->Dv; c++)
              row[c * pb->out.s[3]] = 0.0f;
          }
  if (slot < 0)
    free(ws);
  else
    fattn__workspace_release(ctx, slot);
  release(ctx, e, temp);
  return st;
}

const fattn__backend_ops fattn__onednn_ops = {FATTN_BACKEND_ONEDNN, onednn_run, cache_free,
                                              onednn_version};

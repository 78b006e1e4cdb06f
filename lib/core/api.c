/* fattn_sdpa: validate -> pick the backend -> plan -> workspace -> run. */
#if defined(_OPENMP)
#include <omp.h>
#endif

#include <stdlib.h>

#include "internal.h"

int fattn__threads_for_call(const fattn_context *c) {
#if defined(_OPENMP)
  /* Inside the caller's own parallel region: run on this thread alone. */
  if (omp_in_parallel()) return 1;
#endif
  return c->num_threads;
}

static int tile_dtype(fattn_dtype d) { return d == FATTN_F32 || d == FATTN_F16 || d == FATTN_BF16; }

/* The tile engine a call may run on: the context's, for all-BF16 q, K and V
 * (FATTN_TILES_AUTO) or any F32 / F16 / BF16 ones (FATTN_TILES_BF16), with a
 * dense cache (paged and I8 / F8 ones stay on the vector tables). */
static const fattn__tile_table *tile_for_call(const fattn_context *c, const fattn__problem *pb) {
  if (!c->tile || pb->block_table || pb->k_scaled || pb->v_scaled) return NULL;
  if (c->tiles == FATTN_TILES_BF16)
    return tile_dtype(pb->q.dtype) && tile_dtype(pb->k.dtype) && tile_dtype(pb->v.dtype) ? c->tile
                                                                                         : NULL;
  return pb->q.dtype == FATTN_BF16 && pb->k.dtype == FATTN_BF16 && pb->v.dtype == FATTN_BF16
             ? c->tile
             : NULL;
}

/* Validates, resolves the context and picks the fused table (NULL with
 * SUCCESS for the reference and oneDNN backends), then plans. */
static fattn_status prepare(fattn_context *ctx, const fattn_tensor *q, const fattn_tensor *k,
                            const fattn_tensor *v, const fattn_tensor *out,
                            const fattn_sdpa_params *params, fattn__problem *pb, fattn_context **c,
                            const fattn__kernel_table **t, fattn__plan *plan) {
  fattn_status st = fattn__validate(q, k, v, out, params, pb);
  if (st != FATTN_SUCCESS) return st;
  if ((st = fattn__context_resolve(ctx, c)) != FATTN_SUCCESS) return st;
  *t = NULL;
  switch (params->backend) {
  case FATTN_BACKEND_REFERENCE:
  case FATTN_BACKEND_ONEDNN: return FATTN_SUCCESS;
  case FATTN_BACKEND_AUTO: *t = (*c)->table; break;
  case FATTN_BACKEND_SCALAR:
  case FATTN_BACKEND_AVX2:
  case FATTN_BACKEND_AVX512:
  case FATTN_BACKEND_NEON:
    if (!(*t = fattn__table_for(params->backend, &st))) return st;
    break;
  }
  if ((st = fattn__make_plan(pb, *t, tile_for_call(*c, pb), fattn__threads_for_call(*c),
                             (*c)->block_keys, (*c)->block_queries, fattn__topology_get(), plan)) !=
      FATTN_SUCCESS)
    return st;
  plan->pin = plan->nthreads > 1 ? (*c)->pin : FATTN_PIN_NONE; /* one thread: left where it is */
  /* BF16 K with contiguous rows (and q rows, which are packed in pairs) */
  plan->bf16_dot = NULL;
  if (pb->k.dtype == FATTN_BF16 && pb->k.s[3] <= 1 && pb->q.s[3] <= 1 &&
      ((*c)->bf16_dot == FATTN__BF16_DOT_ON ||
       ((*c)->bf16_dot == FATTN__BF16_DOT_AUTO && pb->q.dtype == FATTN_BF16 &&
        (fattn__cpu_features() & FATTN__CPU_BF16DOT_FAST))))
    plan->bf16_dot = fattn__bf16_dot_for(*t);
  return FATTN_SUCCESS;
}

fattn_status fattn_sdpa_workspace_size(fattn_context *ctx, const fattn_tensor *q,
                                       const fattn_tensor *k, const fattn_tensor *v,
                                       const fattn_tensor *out, const fattn_sdpa_params *params,
                                       size_t *bytes) {
  if (!bytes) return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "bytes is NULL");
  fattn__problem pb;
  fattn_context *c;
  const fattn__kernel_table *t;
  fattn__plan plan;
  fattn_status st = prepare(ctx, q, k, v, out, params, &pb, &c, &t, &plan);
  if (st != FATTN_SUCCESS) return st;
  *bytes = t ? (size_t)plan.total_bytes : 0;
  return FATTN_SUCCESS;
}

fattn_status fattn_sdpa(fattn_context *ctx, const fattn_tensor *q, const fattn_tensor *k,
                        const fattn_tensor *v, const fattn_tensor *out,
                        const fattn_sdpa_params *params) {
  fattn__problem pb;
  fattn_context *c;
  const fattn__kernel_table *t;
  fattn__plan plan;
  fattn_status st = prepare(ctx, q, k, v, out, params, &pb, &c, &t, &plan);
  if (st != FATTN_SUCCESS) return st;
  if (params->backend == FATTN_BACKEND_REFERENCE) return fattn__reference_run(&pb);
  const char *why = NULL;
  const fattn__backend_ops *ops = fattn__backend_find(params->backend, &why);
  if (ops) return ops->run(c, &pb);
  if (why) return fattn__error(FATTN_ERROR_UNSUPPORTED, "%s", why);
  int slot;
  void *ws;
  const size_t bytes = (size_t)plan.total_bytes;
  if ((st = fattn__workspace_acquire(c, bytes, &slot, &ws)) != FATTN_SUCCESS) return st;
  fattn__driver_run(&pb, t, &plan, ws);
  if (slot < 0)
    free(ws);
  else
    fattn__workspace_release(c, slot);
  return FATTN_SUCCESS;
}

/* Status strings, the thread-local last error, version and small public helpers. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

#define FATTN__STR2(x) #x
#define FATTN__STR(x) FATTN__STR2(x)

const char *fattn_version(void) {
  return FATTN__STR(FATTN_VERSION_MAJOR) "." FATTN__STR(FATTN_VERSION_MINOR) "." FATTN__STR(
      FATTN_VERSION_PATCH);
}

const char *fattn_status_string(fattn_status s) {
  switch (s) {
  case FATTN_SUCCESS: return "FATTN_SUCCESS";
  case FATTN_ERROR_INVALID_ARGUMENT: return "FATTN_ERROR_INVALID_ARGUMENT";
  case FATTN_ERROR_SHAPE_MISMATCH: return "FATTN_ERROR_SHAPE_MISMATCH";
  case FATTN_ERROR_UNSUPPORTED: return "FATTN_ERROR_UNSUPPORTED";
  case FATTN_ERROR_OUT_OF_MEMORY: return "FATTN_ERROR_OUT_OF_MEMORY";
  case FATTN_ERROR_OVERFLOW: return "FATTN_ERROR_OVERFLOW";
  case FATTN_ERROR_BACKEND: return "FATTN_ERROR_BACKEND";
  }
  return "FATTN_ERROR_UNKNOWN_STATUS";
}

const char *fattn_backend_name(fattn_backend b) {
  switch (b) {
  case FATTN_BACKEND_AUTO: return "auto";
  case FATTN_BACKEND_REFERENCE: return "reference";
  case FATTN_BACKEND_SCALAR: return "scalar";
  case FATTN_BACKEND_AVX2: return "avx2";
  case FATTN_BACKEND_AVX512: return "avx512";
  case FATTN_BACKEND_NEON: return "neon";
  case FATTN_BACKEND_ONEDNN: return "onednn";
  }
  return "invalid";
}

static _Thread_local char fattn__last_error[512];

const char *fattn_last_error(void) { return fattn__last_error; }

fattn_status fattn__error(fattn_status s, const char *fmt, ...) {
  int n = snprintf(fattn__last_error, sizeof fattn__last_error, "%s: ", fattn_status_string(s));
  if (n < 0 || (size_t)n >= sizeof fattn__last_error) return s;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(fattn__last_error + n, sizeof fattn__last_error - (size_t)n, fmt, ap);
  va_end(ap);
  return s;
}

fattn_status fattn_set_last_error(fattn_status s, const char *message) {
  return fattn__error(s, "%s", message ? message : "");
}

void fattn_sdpa_params_init(fattn_sdpa_params *p) {
  if (!p) return;
  p->scale = 0.0f;
  p->causal = FATTN_CAUSAL_NONE;
  p->attn_mask = NULL;
  p->kv_lens = NULL;
  p->lse = NULL;
  p->backend = FATTN_BACKEND_AUTO;
  p->window_left = p->window_right = -1;
  p->alibi_slopes = NULL;
  p->softcap = 0.0f;
  p->sinks = NULL;
  p->diag_shift = 0;
  p->num_seqs = 0;
  p->cu_seqlens_q = p->cu_seqlens_k = p->seqused_k = NULL;
  p->block_table = NULL;
  p->block_table_stride = 0;
  p->k_scale = p->v_scale = NULL;
}

void fattn_context_options_init(fattn_context_options *o) {
  if (!o) return;
  o->num_threads = 0;
  o->isa_cap = FATTN_BACKEND_AUTO;
  o->pin = FATTN_PIN_DEFAULT;
  o->block_keys = 0;
  o->block_queries = 0;
  o->tiles = FATTN_TILES_DEFAULT;
}

fattn_tensor fattn_tensor_contiguous(void *data, fattn_dtype dtype, int64_t d0, int64_t d1,
                                     int64_t d2, int64_t d3) {
  fattn_tensor t;
  t.data = data;
  t.dtype = dtype;
  t.dims[0] = d0;
  t.dims[1] = d1;
  t.dims[2] = d2;
  t.dims[3] = d3;
  /* A product that overflows becomes stride -1, which fattn_sdpa rejects. */
  t.strides[3] = 1;
  t.strides[2] = d3;
  if (!fattn__mul_ok(d2, d3, &t.strides[1])) t.strides[1] = -1;
  if (t.strides[1] < 0 || !fattn__mul_ok(d1, t.strides[1], &t.strides[0])) t.strides[0] = -1;
  return t;
}

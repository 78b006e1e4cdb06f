/* fattn — fused multi-head scaled-dot-product attention for CPUs.
 *
 *   out = softmax(scale · Q·Kᵀ + mask) · V        per (batch, head)
 *
 * computed tile by tile with an online softmax; the Lq×Lk score matrix is never
 * materialised. This header is the whole public API. Every entry point returns a
 * fattn_status (FATTN_SUCCESS is 0); on failure fattn_last_error() says why, and
 * nothing has been written to the output tensors. */
#ifndef FATTN_H
#define FATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FATTN_VERSION_MAJOR 0
#define FATTN_VERSION_MINOR 7
#define FATTN_VERSION_PATCH 0

#if defined(_WIN32) && defined(FATTN_SHARED_BUILD)
#define FATTN_API __declspec(dllexport)
#elif defined(__GNUC__)
#define FATTN_API __attribute__((visibility("default")))
#else
#define FATTN_API
#endif

/* "MAJOR.MINOR.PATCH", the version of the library actually linked. */
FATTN_API const char *fattn_version(void);

typedef enum fattn_status {
  FATTN_SUCCESS = 0,
  FATTN_ERROR_INVALID_ARGUMENT, /* null pointer, bad enum value, non-positive dim, bad stride */
  FATTN_ERROR_SHAPE_MISMATCH,   /* dims of q/k/v/out/mask/lse disagree */
  FATTN_ERROR_UNSUPPORTED,      /* backend, ISA, dtype or feature not available here */
  FATTN_ERROR_OUT_OF_MEMORY,
  FATTN_ERROR_OVERFLOW, /* a size or byte offset would overflow */
  FATTN_ERROR_BACKEND   /* a backend library (oneDNN) failed */
} fattn_status;

/* A fixed, human-readable name for a status ("FATTN_ERROR_SHAPE_MISMATCH"). */
FATTN_API const char *fattn_status_string(fattn_status s);

/* Thread-local: the message of this thread's most recent failed call ("" if none
 * failed yet). A successful call leaves it as it was, like errno. */
FATTN_API const char *fattn_last_error(void);

/* For libraries layered on fattn (fattn_mpi): records "<status name>: message"
 * as this thread's fattn_last_error() and returns s. */
FATTN_API fattn_status fattn_set_last_error(fattn_status s, const char *message);

/* q, k, v and out: F32, F16 (IEEE binary16) or BF16, each independently;
 * computation is in f32 (half inputs converted exactly, out rounded to nearest
 * even). Masks: F32 (additive) or U8 (keep-mask). lse: F32.
 * k and v may also be a quantized KV cache: I8 (symmetric, value = scale · int8),
 * F8_E4M3 (OCP e4m3fn: no infinities, 0x7f / 0xff are NaN, max 448) or
 * F8_E5M2 (IEEE-like, max 57344), each with its F32 scales (k_scale /
 * v_scale in fattn_sdpa_params); they are dequantised on load, in f32. */
typedef enum fattn_dtype {
  FATTN_F32,
  FATTN_F16,
  FATTN_BF16,
  FATTN_U8,
  FATTN_I8,      /* k / v only */
  FATTN_F8_E4M3, /* k / v only */
  FATTN_F8_E5M2  /* k / v only */
} fattn_dtype;

/* A strided 4-D view. Logical order [batch, heads, seq, head_dim]; masks
 * [batch, heads, q, k]. Strides are in elements and must be >= 0. Any layout
 * (BHSD, BSHD, a packed QKV buffer, a KV cache with spare capacity) is a choice
 * of strides. A stride of 0 on a dimension longer than 1 broadcasts; it is
 * allowed for masks only. */
typedef struct fattn_tensor {
  void *data;
  fattn_dtype dtype;
  int64_t dims[4];
  int64_t strides[4];
} fattn_tensor;

/* Fills a dense row-major (last dimension contiguous) view of `data`. */
FATTN_API fattn_tensor fattn_tensor_contiguous(void *data, fattn_dtype dtype, int64_t d0,
                                               int64_t d1, int64_t d2, int64_t d3);

typedef enum fattn_causal {
  FATTN_CAUSAL_NONE,
  FATTN_CAUSAL_TOP_LEFT,    /* query i attends keys j <= i (PyTorch's is_causal) */
  FATTN_CAUSAL_BOTTOM_RIGHT /* query i attends keys j <= i + (Lk - Lq) (KV cache, chunked prefill)
                             */
} fattn_causal;

typedef enum fattn_backend {
  FATTN_BACKEND_AUTO,      /* the best available (fused SIMD table, else scalar) */
  FATTN_BACKEND_REFERENCE, /* naive double-precision oracle: slow, O(Lk) memory per row */
  FATTN_BACKEND_SCALAR,    /* portable fused kernel, any CPU */
  FATTN_BACKEND_AVX2,
  FATTN_BACKEND_AVX512,
  FATTN_BACKEND_NEON,
  FATTN_BACKEND_ONEDNN /* unfused oneDNN baseline */
} fattn_backend;

/* Fixed lower-case name of a backend ("avx512"), or "invalid". */
FATTN_API const char *fattn_backend_name(fattn_backend b);

typedef struct fattn_sdpa_params {
  float scale; /* 0 -> 1/sqrt(head_dim of q); must be finite */
  fattn_causal causal;
  const fattn_tensor *attn_mask; /* optional: F32 additive, or U8 keep-mask (nonzero = may attend);
                                    dims [B or 1, H or 1, Lq, Lk] */
  const int32_t *kv_lens;  /* optional, one per batch in [0, Lk]: keys j >= kv_lens[b] are masked */
  const fattn_tensor *lse; /* optional output, F32 dims [B, H, Lq, 1]: log of the softmax
                              denominator, natural log, of the scaled+masked scores */
  fattn_backend backend;   /* AUTO picks the best available */

  /* ---- inference-engine features (0.4). Every one is optional and composes
   * with the others and with the fields above, on every fused table and the
   * reference; the oneDNN baseline returns UNSUPPORTED for them. Conventions
   * are FlashAttention's (flash_attn_varlen_func, flash_attn_with_kvcache).
   *
   * Sequence lengths. Without cu_seqlens_q every sequence has Lq = q->dims[2]
   * queries; without cu_seqlens_k / block_table it has Lk = k->dims[2] keys.
   * "The diagonal" of sequence b is j = i + (Lk_b - Lq_b) (bottom-right, as
   * in FlashAttention), except with FATTN_CAUSAL_TOP_LEFT: j = i. */

  /* Sliding window: query i attends keys j with
   *   diag(i) - window_left <= j <= diag(i) + window_right;
   * -1 = unbounded on that side (the default; FlashAttention's window_size =
   * (-1, -1)). Causal masks still apply (so causal + window_left = W is
   * Mistral's window of W + 1 keys). Key blocks outside every row's window are
   * never read: the cost grows with the window, not with Lk. */
  int64_t window_left, window_right;
  /* ALiBi: optional [H] F32 slopes; score(i, j) += -slope_h · |diag(i) - j|
   * (FlashAttention's alibi_slopes; with a causal mask it equals
   * slope_h · (j - i) up to a per-row constant, which softmax ignores). */
  const float *alibi_slopes;
  /* Logit softcap (Gemma 2): s <- softcap · tanh(s / softcap) on the scaled
   * score, before ALiBi and masks. 0 = off; else finite and > 0. */
  float softcap;
  /* Attention sinks (gpt-oss): optional [H] F32 logits, one per query head,
   * that join each row's softmax denominator with no value:
   *   out = Σ_j e^(s_j) v_j / (e^(sink_h) + Σ_j e^(s_j)),  lse includes it.
   * The sink is not multiplied by `scale`. A row with no key gets zeros. */
  const float *sinks;
  /* Diagonal shift (blockwise and context-parallel attention): added to the
   * diagonal of every sequence, so query i's diagonal key is
   * j = i + (Lk_b - Lq_b) + diag_shift (TOP_LEFT: j = i + diag_shift); the
   * causal masks, the window and ALiBi follow it. For queries that are
   * positions q0 .. of a longer sequence and keys that are its positions
   * k0 .., TOP_LEFT with diag_shift = q0 - k0 is that sequence's top-left
   * mask on the block; its bottom-right mask (full lengths Lq_all, Lk_all) is
   * TOP_LEFT with diag_shift = q0 - k0 + Lk_all - Lq_all. A row left with no
   * key gets zeros and lse -inf, as always. 0 = none (the default);
   * |diag_shift| <= 2^40. The oneDNN baseline returns UNSUPPORTED for it. */
  int64_t diag_shift;

  /* Variable-length packed batch (FlashAttention's varlen API). With
   * cu_seqlens_q ([num_seqs + 1], non-decreasing, from 0): q, out (and lse)
   * hold the sequences' queries packed along dims[2]: q dims [1, H, total_q,
   * D] with total_q = cu_seqlens_q[num_seqs] (a [total_q, H, D] buffer is
   * strides {0, D, H·D, 1}); sequence b is rows cu_seqlens_q[b] ..
   * cu_seqlens_q[b+1] - 1. With cu_seqlens_k likewise for k and v (dims [1,
   * Hkv, total_k, D]). Without cu_seqlens_q, num_seqs = q->dims[0]. */
  int64_t num_seqs; /* required with cu_seqlens_q; else 0 or q->dims[0] */
  const int32_t *cu_seqlens_q;
  const int32_t *cu_seqlens_k;
  /* Keys actually used per sequence ([num_seqs], FlashAttention's seqused_k /
   * cache_seqlens): with cu_seqlens_k, at most the packed length; required
   * with block_table. */
  const int32_t *seqused_k;

  /* Paged KV cache (vLLM, flash_attn_with_kvcache): k and v are pools of
   * blocks, dims [num_blocks, Hkv, block_size, D] in fattn's order (vLLM's
   * [num_blocks, block_size, Hkv, D] buffer is strides {block_size·Hkv·D, D,
   * Hkv·D, 1}); key j of sequence b is row j % block_size of block
   * block_table[b · block_table_stride + j / block_size]. Only the entries
   * below ceil(seqused_k[b] / block_size) are read, and each must be in
   * [0, num_blocks). New tokens are written into the cache by the caller
   * first (chunked prefill: the queries are the last Lq_b keys, bottom-right
   * causal). attn_mask and kv_lens are not available with varlen or paged
   * inputs (UNSUPPORTED). */
  const int32_t *block_table;
  int64_t block_table_stride; /* entries per sequence (max_blocks_per_seq) */

  /* Quantized K / V scales (required for I8 / F8 k or v, ignored otherwise):
   * F32 tensors with dims [k0 or 1, Hkv, k2 or 1, 1] for k's dims k0, k2
   * (for a paged pool: [num_blocks or 1, Hkv, block_size or 1, 1]); a dim of
   * 1 or stride 0 broadcasts. Per (token, kv head) for I8 (vLLM's symmetric
   * int8 cache), per kv head ({1, Hkv, 1, 1}) for F8. Each scale finite > 0. */
  const fattn_tensor *k_scale, *v_scale;
} fattn_sdpa_params;

/* scale 0 (default), no causal mask, no mask, no kv_lens, no lse, AUTO
 * backend; no window (-1, -1), no ALiBi, softcap or sinks, dense (not varlen,
 * not paged), no scales. */
FATTN_API void fattn_sdpa_params_init(fattn_sdpa_params *p);

/* Where the library's OpenMP threads run during a call. The calling thread is
 * never moved: the workers take the other cores (all but the first when the
 * caller floats, all but the caller's when the application confined it to one
 * core). The OpenMP pool's worker threads stay on their cores afterwards (as
 * with OMP_PROC_BIND=close).
 * When OMP_PROC_BIND (other than false), OMP_PLACES or GOMP_CPU_AFFINITY is
 * set, the OpenMP runtime's binding is respected and fattn pins nothing. */
typedef enum fattn_pin_policy {
  FATTN_PIN_DEFAULT, /* the FATTN_PIN env var (none|cores|numa), else `cores` with hwloc */
  FATTN_PIN_NONE,    /* leave threads where the OS puts them */
  FATTN_PIN_CORES,   /* thread t on allowed physical core t, node by node (compact) */
  FATTN_PIN_NUMA     /* threads spread round-robin over NUMA nodes, one per core */
} fattn_pin_policy;

/* Which calls run on the CPU's matrix engine (Intel AMX: Q·Kᵀ and P·V on bf16
 * tiles with f32 accumulation, P rounded to bf16 once), where the CPU has one
 * and the OS grants it; on a CPU without one this changes nothing.
 * Decode (a unit of a few rows), paged and I8 / F8 caches stay on the vector
 * tables. The bits of a result depend only on the CPU's features and this
 * choice, never on timing or the thread count. */
typedef enum fattn_tile_policy {
  FATTN_TILES_DEFAULT, /* the FATTN_TILES env var (auto|off|bf16), else AUTO */
  FATTN_TILES_AUTO,    /* BF16 q with BF16 K and V: exact inputs, f32 sums */
  FATTN_TILES_OFF,     /* never */
  FATTN_TILES_BF16     /* also F32 / F16 q, K and V, each rounded to BF16 once
                          (opt-in: bf16 accuracy, about 2^-9 relative per input) */
} fattn_tile_policy;

/* Context options. Initialise with fattn_context_options_init, then set fields. */
typedef struct fattn_context_options {
  int num_threads;         /* 0 -> FATTN_NUM_THREADS, else the OpenMP default */
  fattn_backend isa_cap;   /* AUTO -> the FATTN_ISA env var, else the best table. Else
                              the fused table AUTO uses: SCALAR, AVX2, AVX512 or NEON;
                              one this build or CPU lacks fails with UNSUPPORTED */
  fattn_pin_policy pin;    /* thread pinning; see fattn_pin_policy */
  int64_t block_keys;      /* 0 -> from the cache sizes; else keys per block (rounded up to
                              the kernel's NR). A tuning knob; results stay within tolerance */
  int64_t block_queries;   /* 0 -> from the cache sizes; else query positions per work unit */
  fattn_tile_policy tiles; /* the matrix engine; see fattn_tile_policy (0.6) */
} fattn_context_options;

FATTN_API void fattn_context_options_init(fattn_context_options *o);

/* A context holds the thread settings, the chosen kernel table and a reusable
 * workspace. After the first call with a given shape, calls on it allocate
 * nothing. A context may be used by several threads at once. */
typedef struct fattn_context fattn_context;

FATTN_API fattn_status fattn_context_create(const fattn_context_options *opts /* NULL = defaults */,
                                            fattn_context **ctx);
FATTN_API void fattn_context_destroy(fattn_context *ctx);

/* q [B, H, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv], out [B, H, Lq, Dv].
 * Hkv must divide H; query head h uses kv head h / (H / Hkv). A query row that
 * is left with no key to attend gets zeros in out and -inf in lse.
 * ctx NULL uses a process-wide default context. */
FATTN_API fattn_status fattn_sdpa(fattn_context *ctx, const fattn_tensor *q, const fattn_tensor *k,
                                  const fattn_tensor *v, const fattn_tensor *out,
                                  const fattn_sdpa_params *params);

/* Bytes of workspace fattn_sdpa would use for these arguments on this
 * context (all threads together; the arguments are validated as by fattn_sdpa
 * but no data is read). Independent of Lq·Lk: it grows with head_dim and the
 * block sizes only. 0 for the reference and oneDNN backends. */
FATTN_API fattn_status fattn_sdpa_workspace_size(fattn_context *ctx, const fattn_tensor *q,
                                                 const fattn_tensor *k, const fattn_tensor *v,
                                                 const fattn_tensor *out,
                                                 const fattn_sdpa_params *params, size_t *bytes);

/* ---- Training: the backward pass ------------------------------------------------
 *
 * Given the forward call's inputs and results — q, k, v, out and lse (a
 * fattn_sdpa with params.lse set) — and dout = dL/d(out), writes
 *   dq = dL/dq [B, H, Lq, D],  dk = dL/dk [B, Hkv, Lk, D],  dv = dL/dv [B, Hkv, Lk, Dv]
 * (FlashAttention-2's backward: P is recomputed tile by tile from q·kᵀ and
 * lse, D = rowsum(dout ∘ out), dS = P ∘ (dP - D); no Lq×Lk buffer). dk and dv
 * sum over the query heads of each kv head's group (GQA), without races.
 * params must be the forward's (scale, both causal kinds, attn_mask F32 or
 * U8, kv_lens, window, ALiBi, softcap, sinks, diag_shift, backend);
 * params->lse is not read (the lse argument is). Any strides and dtypes F32,
 * F16, BF16 for every tensor (lse F32), computed in f32. Not available
 * (UNSUPPORTED): varlen and paged inputs, I8 / F8 K/V, the oneDNN backend;
 * the mask, the slopes and the sinks get no gradient. Bitwise identical for
 * any thread count: each (batch, kv head) is one thread's, in a fixed order.
 * Memory: the tiles of the forward, plus per thread an f32 accumulator of
 * one kv head's dK and dV (Lk · (D + Dv) floats). A row that attended no key
 * (lse -inf) gets dq = 0 and gives nothing to dk, dv. Unlike the forward, a
 * NaN or inf in the k of a masked key inside a tile the row's block reads
 * may reach that row's dq (0 · NaN in dS · K). On failure nothing is
 * written to dq, dk or dv. */
FATTN_API fattn_status fattn_sdpa_backward(fattn_context *ctx, const fattn_tensor *q,
                                           const fattn_tensor *k, const fattn_tensor *v,
                                           const fattn_tensor *out, const fattn_tensor *dout,
                                           const fattn_tensor *lse, const fattn_tensor *dq,
                                           const fattn_tensor *dk, const fattn_tensor *dv,
                                           const fattn_sdpa_params *params);

/* ---- Layers with PyTorch semantics -------------------------------------------
 *
 * fattn_mha: nn.MultiheadAttention (inference: no dropout). Linear projections
 * of query, key and value, split into heads, fattn_sdpa per head, heads
 * concatenated, output projection. All tensors F32, row major: with
 * batch_first (B, L, features), else (L, B, features); both layouts are read
 * and written in place, no transposes. Weights are copied at create time, so
 * the caller's may be freed. A layer is immutable: any number of threads may
 * run forward on it at once (each call takes its scratch from the context's
 * workspace pool). */
typedef struct fattn_mha fattn_mha;

typedef struct fattn_mha_config {
  int64_t embed_dim;    /* E: query features and output features */
  int64_t num_heads;    /* H: divides E; head_dim = E / H */
  int64_t num_kv_heads; /* 0 -> num_heads; else divides it (grouped-query attention): the
                           key / value projections have num_kv_heads · head_dim rows */
  int64_t kdim, vdim;   /* features of the key / value inputs; 0 -> embed_dim */
  int bias;             /* nonzero: in_proj_bias and out_proj.bias (PyTorch's default) */
  int batch_first;      /* nonzero: (B, L, features); zero: (L, B, features) */
} fattn_mha_config;

/* embed_dim, num_heads; num_kv_heads = num_heads, kdim = vdim = embed_dim, bias
 * on, batch_first off (PyTorch's defaults). */
FATTN_API void fattn_mha_config_init(fattn_mha_config *c, int64_t embed_dim, int64_t num_heads);

/* Weights in PyTorch's layouts (F32, row major). With Ekv = num_kv_heads · head_dim:
 * either in_proj_weight [E + 2·Ekv, E] (q, k, v rows stacked; needs kdim = vdim = E),
 * or q_proj_weight [E, E], k_proj_weight [Ekv, kdim], v_proj_weight [Ekv, vdim] (the one
 * to use when kdim or vdim differ from E). in_proj_bias [E + 2·Ekv], out_proj_weight
 * [E, E], out_proj_bias [E]; the biases are required when bias is on, ignored when off. */
typedef struct fattn_mha_weights {
  const float *in_proj_weight, *in_proj_bias;
  const float *q_proj_weight, *k_proj_weight, *v_proj_weight;
  const float *out_proj_weight, *out_proj_bias;
} fattn_mha_weights;

FATTN_API fattn_status fattn_mha_create(const fattn_mha_config *cfg, const fattn_mha_weights *w,
                                        fattn_mha **mha);
FATTN_API void fattn_mha_destroy(fattn_mha *mha);

/* One forward call. Masks follow nn.MultiheadAttention: U8 is PyTorch's bool,
 * nonzero = NOT allowed (the opposite of fattn_sdpa's U8 keep-mask); F32 is
 * added to the scaled scores. */
typedef struct fattn_mha_args {
  const float *query; /* (B, Lq, E) or (Lq, B, E) */
  const float *key;   /* (B, Lk, kdim) or (Lk, B, kdim); the same pointer as query (and
                         value) for self-attention: projected once */
  const float *value; /* (B, Lk, vdim) or (Lk, B, vdim) */
  int64_t batch, q_len, kv_len;
  const void *key_padding_mask;       /* optional [B, Lk] */
  fattn_dtype key_padding_mask_dtype; /* U8 or F32 */
  const void *attn_mask;              /* optional [Lq, Lk], or [B·H, Lq, Lk] */
  fattn_dtype attn_mask_dtype;        /* U8 or F32 */
  int attn_mask_per_head;             /* nonzero: attn_mask is [B·H, Lq, Lk] */
  int is_causal;                      /* query i attends keys j <= i (with the masks) */
  const uint8_t *head_mask;           /* optional [H]: 0 prunes the head: its projection columns and
                                         attention are skipped, it contributes zeros to the
                                         concatenation and the weights */
  float *out;                         /* (B, Lq, E) or (Lq, B, E) */
  float *attn_weights;                /* optional: the softmax, computed only when given (no Lq·Lk
                                         buffer otherwise); [B, Lq, Lk] averaged over the H heads,
                                         or [B, H, Lq, Lk] per head */
  int average_attn_weights;           /* nonzero: averaged (PyTorch's default) */
} fattn_mha_args;

/* All zero: no masks, no weights (U8 mask dtypes). */
FATTN_API void fattn_mha_args_init(fattn_mha_args *a);

/* A query row left with no key to attend gives zeros before the output
 * projection (so out_proj.bias in out) and zero weights; PyTorch gives NaN. */
FATTN_API fattn_status fattn_mha_forward(fattn_context *ctx /* NULL = default */,
                                         const fattn_mha *mha, const fattn_mha_args *args);

/* The layer's backward pass (0.7): the gradients autograd gives for
 * nn.MultiheadAttention (f32) — of the inputs and of the parameters, in the
 * forward's layouts — for the arguments of a forward call (the inputs, masks,
 * is_causal and head_mask; out, attn_weights and average_attn_weights are not
 * read). The forward's projections and attention are recomputed (nothing is
 * kept between calls, so a layer stays immutable and thread-safe); the
 * attention's own backward is fattn_sdpa_backward's. Bitwise identical for
 * any thread count. The masks get no gradient; a pruned head (head_mask)
 * gives zeros to its weights' rows. Any gradient pointer may be NULL: not
 * computed. */
typedef struct fattn_mha_param_grads {
  /* PyTorch's names and layouts, as fattn_mha_weights: in_proj_weight [E + 2·Ekv, E]
   * (kdim = vdim = E), or q_proj_weight [E, E], k_proj_weight [Ekv, kdim], v_proj_weight
   * [Ekv, vdim] (not both forms); in_proj_bias [E + 2·Ekv], out_proj_weight [E, E],
   * out_proj_bias [E] (biases: only when the layer has them) */
  float *in_proj_weight, *in_proj_bias;
  float *q_proj_weight, *k_proj_weight, *v_proj_weight;
  float *out_proj_weight, *out_proj_bias;
} fattn_mha_param_grads;

typedef struct fattn_mha_grads {
  const float *dout; /* dL/d(out), out's layout (required) */
  /* dL/d(query), dL/d(key), dL/d(value), the inputs' layouts. An input buffer
   * given as several of query, key and value (self-attention) has one
   * gradient, the sum: in the first of dquery, dkey, dvalue that names it,
   * the others NULL (e.g. self-attention: dquery, with dkey = dvalue = NULL) */
  float *dquery, *dkey, *dvalue;
  fattn_mha_param_grads params;
  int accumulate; /* nonzero: add into every gradient buffer (PyTorch's .grad);
                     zero: overwrite */
} fattn_mha_grads;

/* All NULL, overwrite. */
FATTN_API void fattn_mha_grads_init(fattn_mha_grads *g);

/* On failure nothing is written to the gradients. */
FATTN_API fattn_status fattn_mha_backward(fattn_context *ctx /* NULL = default */,
                                          const fattn_mha *mha, const fattn_mha_args *args,
                                          const fattn_mha_grads *grads);

/* fattn_encoder: nn.TransformerEncoder of nn.TransformerEncoderLayer
 * (inference: dropout is the identity). Per layer, post-norm (default):
 *   x = LN1(x + SA(x));  x = LN2(x + FF(x))
 * norm_first: x = x + SA(LN1(x));  x = x + FF(LN2(x))
 * with SA the layer's multi-head self-attention and FF linear2(act(linear1)). */
typedef enum fattn_activation { FATTN_RELU, FATTN_GELU /* exact, erf */ } fattn_activation;

typedef struct fattn_encoder_config {
  int64_t embed_dim, num_heads;
  int64_t dim_feedforward;     /* 2048 */
  fattn_activation activation; /* FATTN_RELU */
  float layer_norm_eps;        /* 1e-5 */
  int norm_first;              /* 0 */
  int batch_first;             /* 0 */
  int bias;                    /* 1: every linear and layer norm has its bias */
  int64_t num_layers;          /* 1 */
} fattn_encoder_config;

/* PyTorch's defaults for the others. */
FATTN_API void fattn_encoder_config_init(fattn_encoder_config *c, int64_t embed_dim,
                                         int64_t num_heads);

/* One layer's weights (F32, PyTorch's names and layouts): self_attn as
 * fattn_mha_weights (in_proj_weight form), linear1 [F, E] + [F], linear2 [E, F] + [E],
 * norm1 / norm2 weight and bias [E]. */
typedef struct fattn_encoder_layer_weights {
  fattn_mha_weights self_attn;
  const float *linear1_weight, *linear1_bias, *linear2_weight, *linear2_bias;
  const float *norm1_weight, *norm1_bias, *norm2_weight, *norm2_bias;
} fattn_encoder_layer_weights;

typedef struct fattn_encoder fattn_encoder;

/* layers: num_layers entries. */
FATTN_API fattn_status fattn_encoder_create(const fattn_encoder_config *cfg,
                                            const fattn_encoder_layer_weights *layers,
                                            fattn_encoder **enc);
FATTN_API void fattn_encoder_destroy(fattn_encoder *enc);

/* src, out: (B, L, E) or (L, B, E); they may be the same buffer. Masks as in
 * fattn_mha_args (src_key_padding_mask [B, L]; mask [L, L]). */
typedef struct fattn_encoder_args {
  const float *src;
  int64_t batch, seq_len;
  const void *src_key_padding_mask;
  fattn_dtype src_key_padding_mask_dtype;
  const void *mask;
  fattn_dtype mask_dtype;
  int is_causal;
  float *out;
} fattn_encoder_args;

FATTN_API void fattn_encoder_args_init(fattn_encoder_args *a);
FATTN_API fattn_status fattn_encoder_forward(fattn_context *ctx, const fattn_encoder *enc,
                                             const fattn_encoder_args *args);

/* The encoder's backward pass (0.7): autograd's gradients of
 * nn.TransformerEncoder (f32, eval: no dropout) for the arguments of a
 * forward call (args->out is not read). The forward is recomputed, keeping
 * each layer's input (num_layers · B · L · E floats of workspace), then the
 * layers are differentiated last to first: LayerNorm, the FFN (ReLU, or
 * exact GELU), fattn_mha_backward for the self-attention. Bitwise identical
 * for any thread count. Any gradient pointer may be NULL: not computed. */
typedef struct fattn_encoder_layer_grads { /* one layer's, as fattn_encoder_layer_weights */
  fattn_mha_param_grads self_attn;
  float *linear1_weight, *linear1_bias, *linear2_weight, *linear2_bias;
  float *norm1_weight, *norm1_bias, *norm2_weight, *norm2_bias;
} fattn_encoder_layer_grads;

typedef struct fattn_encoder_grads {
  const float *dout;                       /* dL/d(out), out's layout (required) */
  float *dsrc;                             /* dL/d(src) */
  const fattn_encoder_layer_grads *layers; /* num_layers entries, or NULL: no parameter
                                              gradients (biases: only with cfg.bias) */
  int accumulate; /* nonzero: add into every gradient buffer; zero: overwrite */
} fattn_encoder_grads;

/* All NULL, overwrite. */
FATTN_API void fattn_encoder_grads_init(fattn_encoder_grads *g);

/* Bad arguments are found before anything is written. The gradients are
 * written layer by layer: a failure to get memory partway (OUT_OF_MEMORY)
 * may leave the parameter gradients of the layers after the failing one
 * written, dsrc never. */
FATTN_API fattn_status fattn_encoder_backward(fattn_context *ctx /* NULL = default */,
                                              const fattn_encoder *enc,
                                              const fattn_encoder_args *args,
                                              const fattn_encoder_grads *grads);

#define FATTN_ISA_STRING_MAX 64

typedef struct fattn_runtime_info {
  char
      isa_detected[FATTN_ISA_STRING_MAX]; /* CPU features found, e.g. "avx2 fma f16c avx512f ..." */
  fattn_backend isa_best;                 /* best fused table this CPU and build can run */
  fattn_backend isa_selected; /* what AUTO uses on this context (after FATTN_ISA / isa_cap) */
  int num_threads;            /* threads a call on this context uses */
  int physical_cores;         /* physical cores in the process's allowed set */
  int logical_cpus;
  int numa_nodes;
  int64_t l1d_bytes, l2_bytes, l3_bytes; /* per core (L1, L2) and total (L3); 0 = unknown */
  fattn_pin_policy pin;                  /* the policy applied: NONE, CORES or NUMA */
  char binding[256]; /* where threads run, e.g. "t0:caller t1:cpu1", or "unpinned" */
  int has_openmp, has_hwloc, has_onednn; /* compiled in */
  char onednn_version[32];               /* "2.6.3" when the oneDNN baseline is built */
  char notes[256];                       /* e.g. why threads are not pinned */
  /* The matrix engine this context's eligible calls run on (0.6): "amx",
   * "model" (FATTN_TILE_ENGINE=model: the portable C model of the tile
   * operations, slow, for tests on CPUs without one) or "" (none: see notes) */
  char tile_engine[16];
  fattn_tile_policy tiles; /* the policy applied: AUTO, OFF or BF16 */
} fattn_runtime_info;

FATTN_API fattn_status fattn_get_runtime_info(fattn_context *ctx /* NULL = default */,
                                              fattn_runtime_info *info);

#ifdef __cplusplus
}
#endif
#endif /* FATTN_H */

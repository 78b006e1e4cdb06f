/* Private framework declarations shared by the files of lib/. */
#ifndef FATTN_INTERNAL_H
#define FATTN_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fattn.h"
#include "kernel.h"

/* ---- errors ---------------------------------------------------------------- */

/* Records a printf-style message for fattn_last_error() and returns `s`. */
fattn_status fattn__error(fattn_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- the validated problem --------------------------------------------------- */

typedef struct fattn__view {
  const char *base; /* data as bytes */
  int64_t s[4];     /* strides in elements */
  fattn_dtype dtype;
  int es; /* bytes per element */
} fattn__view;

typedef struct fattn__problem {
  int64_t B, H, Hkv, G, Lq, Lk, D, Dv; /* G = H / Hkv */
  float scale;
  fattn_causal causal;
  fattn__view q, k, v, out;
  int has_mask;
  fattn_dtype mask_dtype;
  fattn__view mask; /* strides 0 on broadcast dims */
  const int32_t *kv_lens;
  int has_lse;
  fattn__view lse;
  /* Inference-engine features (fattn_sdpa_params). Sequence b has
   * fattn__seq_lq / fattn__seq_lk queries / keys; Lq and Lk above are their
   * maxima (the dense dims when not varlen). */
  int64_t win_left, win_right; /* -1: unbounded */
  const float *alibi;          /* [H] or NULL */
  float softcap;               /* 0: off */
  const float *sinks;          /* [H] or NULL */
  int64_t diag_shift;          /* added to every sequence's diagonal */
  const int32_t *cu_q, *cu_k, *seqused_k;
  const int32_t *block_table; /* paged K / V: k, v views are the pools */
  int64_t bt_stride, page;    /* entries per sequence; keys per block */
  int page_shift;             /* log2(page) when a power of two, else -1 */
  int k_scaled, v_scaled;     /* I8 / F8 K / V: scales in k_scale / v_scale */
  fattn__view k_scale, v_scale;
  int features; /* nonzero when any of the above is used (not the oneDNN baseline's) */
} fattn__problem;

/* Queries and keys of sequence b. */
static inline int64_t fattn__seq_lq(const fattn__problem *pb, int64_t b) {
  return pb->cu_q ? (int64_t)pb->cu_q[b + 1] - pb->cu_q[b] : pb->Lq;
}
static inline int64_t fattn__seq_lk(const fattn__problem *pb, int64_t b) {
  if (pb->seqused_k) return pb->seqused_k[b];
  return pb->cu_k ? (int64_t)pb->cu_k[b + 1] - pb->cu_k[b] : pb->Lk;
}
/* The (dim 0, dim 2) index of query row i of sequence b in q / out / lse. */
static inline void fattn__q_index(const fattn__problem *pb, int64_t b, int64_t i, int64_t *d0,
                                  int64_t *d2) {
  *d0 = pb->cu_q ? 0 : b;
  *d2 = pb->cu_q ? pb->cu_q[b] + i : i;
}
/* The (dim 0, dim 2) index of key j of sequence b in k / v (and their
 * scales), and how many keys from j on are rows of that one view position
 * with a common row stride (the rest of a page; unbounded when not paged). */
static inline void fattn__k_index(const fattn__problem *pb, int64_t b, int64_t j, int64_t *d0,
                                  int64_t *d2, int64_t *run) {
  if (pb->block_table) {
    /* a shift, not a division, for the usual power-of-two block sizes: this
     * runs once per page of each kernel call */
    const int64_t e = pb->page_shift >= 0 ? j >> pb->page_shift : j / pb->page;
    *d0 = pb->block_table[b * pb->bt_stride + e];
    *d2 = j - e * pb->page;
    *run = pb->page - *d2;
  } else {
    *d0 = pb->cu_k ? 0 : b;
    *d2 = pb->cu_k ? pb->cu_k[b] + j : j;
    *run = INT64_MAX;
  }
}
/* Offset of the diagonal of sequence b: row i's is key i + it. */
static inline int64_t fattn__diag(const fattn__problem *pb, int64_t b) {
  return pb->diag_shift +
         (pb->causal == FATTN_CAUSAL_TOP_LEFT ? 0 : fattn__seq_lk(pb, b) - fattn__seq_lq(pb, b));
}

/* The backward pass's extra tensors (fattn_sdpa_backward): dout, read like
 * out; dq, dk, dv written like q, k, v. */
typedef struct fattn__grads {
  fattn__view dout, dq, dk, dv;
} fattn__grads;

/* Checks every argument of fattn_sdpa_backward: the forward's through
 * fattn__validate (with lse as params->lse), then dout and the gradients
 * (dims, dtypes, no self-overlap, no overlap with an input or each other). */
fattn_status fattn__validate_backward(const fattn_tensor *q, const fattn_tensor *k,
                                      const fattn_tensor *v, const fattn_tensor *out,
                                      const fattn_tensor *dout, const fattn_tensor *lse,
                                      const fattn_tensor *dq, const fattn_tensor *dk,
                                      const fattn_tensor *dv, const fattn_sdpa_params *params,
                                      fattn__problem *pb, fattn__grads *gr);

/* Checks every argument of fattn_sdpa and fills `pb`; writes nothing else. */
fattn_status fattn__validate(const fattn_tensor *q, const fattn_tensor *k, const fattn_tensor *v,
                             const fattn_tensor *out, const fattn_sdpa_params *params,
                             fattn__problem *pb);

/* Nonzero when two index tuples of a view reach one element: with its dims
 * longer than 1 and of nonzero stride sorted by stride, some stride does not
 * exceed the span of the smaller ones (*which: that dim). Zero strides
 * (broadcast) are left out. */
int fattn__view_aliases(const int64_t dims[4], const int64_t strides[4], int *which);

/* Keys row i of sequence b may attend are [fattn__row_start, fattn__row_limit)
 * (an empty range when start >= limit). Both grow with i. */
static inline int64_t fattn__row_limit(const fattn__problem *pb, int64_t b, int64_t i) {
  const int64_t lk = fattn__seq_lk(pb, b);
  int64_t hi = pb->kv_lens ? (int64_t)pb->kv_lens[b] : lk;
  int64_t c = lk;
  if (pb->causal != FATTN_CAUSAL_NONE) c = i + 1 + fattn__diag(pb, b);
  if (pb->win_right >= 0) {
    const int64_t w = i + fattn__diag(pb, b) + pb->win_right + 1;
    if (w < c) c = w;
  }
  return c < hi ? c : hi;
}
static inline int64_t fattn__row_start(const fattn__problem *pb, int64_t b, int64_t i) {
  if (pb->win_left < 0) return 0;
  const int64_t s = i + fattn__diag(pb, b) - pb->win_left;
  return s > 0 ? s : 0;
}

/* ---- CPU features and dispatch ------------------------------------------------ */

enum {
  FATTN__CPU_AVX2 = 1u << 0,   /* AVX2 + FMA + F16C, OS saves YMM state */
  FATTN__CPU_AVX512 = 1u << 1, /* AVX-512 F/BW/DQ/VL, OS saves ZMM/opmask state */
  FATTN__CPU_NEON = 1u << 2,   /* aarch64 Advanced SIMD */
  FATTN__CPU_AVX512BF16 = 1u << 3,
  FATTN__CPU_AVX512VNNI = 1u << 4,
  FATTN__CPU_ASIMDHP = 1u << 5,
  /* Not an instruction set: AVX512_BF16's vdpbf16ps runs at twice the FMA's
   * FLOP rate on this core, so FATTN_BF16_DOT=auto uses it: AMD's (measured
   * on Zen 5: 508 against 254 GFLOP/s; Zen 4 runs both on the same pipes and
   * is taken to be alike, unmeasured).
   * On Intel's it runs at half the FMA rate (measured on Emerald Rapids;
   * other Intel cores unmeasured, treated alike) (bench's peak/avx512bf16: 86 against peak/avx512's
   * 176 GFLOP/s on an Emerald Rapids core) and all-bf16 prefill is 1.24-1.31x faster without it.
   * From the CPU's identity, never from a timing, so the bits of a result depend on the CPU alone.
   */
  FATTN__CPU_BF16DOT_FAST = 1u << 6,
  /* AMX-TILE + AMX-BF16, and XCR0 says the OS supports the tile state (it
   * must still grant it to the process: fattn__amx_permit) */
  FATTN__CPU_AMX_BF16 = 1u << 7,
  FATTN__CPU_AMX_FP16 = 1u << 8 /* AMX-FP16 (Granite Rapids), with the above */
};

/* Detected once (pthread_once); never executes an instruction the CPU lacks. */
unsigned fattn__cpu_features(void);
/* Whether this process may use the AMX tiles: the CPU has them and the OS
 * granted the tile data state (Linux: arch_prctl(ARCH_REQ_XCOMP_PERM), asked
 * once per process). 0 with *why saying what is missing. */
int fattn__amx_permit(const char **why);
/* The tile kernels this build and process may use (the AMX table), or NULL
 * with *why. */
const fattn__tile_table *fattn__tile_for(const char **why);
/* The matrix-engine policy of a context (the option, else FATTN_TILES) and
 * its engine: the AMX table where this process may use it, the portable model
 * under FATTN_TILE_ENGINE=model, else NULL with *why. INVALID_ARGUMENT for a
 * bad option or env value. */
fattn_status fattn__tiles_resolve(fattn_tile_policy asked, fattn_tile_policy *policy,
                                  const fattn__tile_table **engine, const char **why);
/* Space-separated feature names for runtime info. */
void fattn__cpu_feature_string(unsigned f, char *buf, size_t n);

/* The table for a fused backend if this build has it and this CPU runs it, else
 * NULL with a message recorded. `b` is SCALAR, AVX2, AVX512 or NEON. */
const fattn__kernel_table *fattn__table_for(fattn_backend b, fattn_status *st);
/* Best fused table this build and CPU run. Never NULL. */
const fattn__kernel_table *fattn__best_table(void);
/* Parses FATTN_ISA; AUTO when unset. Invalid values give INVALID_ARGUMENT. */
fattn_status fattn__isa_from_env(fattn_backend *cap);

/* When the BF16 dot-product Q·Kᵀ is used (FATTN_BF16_DOT): */
typedef enum fattn__bf16_dot_mode {
  FATTN__BF16_DOT_AUTO, /* BF16 q and K, where FATTN__CPU_BF16DOT_FAST: exact products,
                           no rounding added (default) */
  FATTN__BF16_DOT_OFF,  /* never: K converted to f32 like F16 */
  FATTN__BF16_DOT_ON    /* any q with BF16 K: an F32 / F16 q is rounded to BF16 */
} fattn__bf16_dot_mode;
/* Parses FATTN_BF16_DOT (auto, off, on); AUTO when unset. */
fattn_status fattn__bf16_dot_from_env(fattn__bf16_dot_mode *mode);
/* The BF16 dot companion of table t if this build has one and this CPU runs
 * it, else NULL. */
const fattn__bf16_dot_table *fattn__bf16_dot_for(const fattn__kernel_table *t);

/* ---- topology ------------------------------------------------------------------ */

/* A set of CPUs by OS index (up to FATTN__MAX_CPUS). */
#define FATTN__MAX_CPUS 1024
typedef struct fattn__cpumask {
  uint64_t w[FATTN__MAX_CPUS / 64];
} fattn__cpumask;

/* Places threads are pinned to: the physical cores of the process's allowed
 * CPU set (cgroups and taskset), each with its allowed PUs (SMT siblings
 * together: one thread per core). */
#define FATTN__MAX_PLACES 512
typedef struct fattn__topology {
  int physical_cores, logical_cpus, numa_nodes; /* allowed ones */
  int64_t l1d, l2, l3;
  int from_hwloc;
  int nplaces;                             /* 0 without hwloc: no pinning */
  fattn__cpumask place[FATTN__MAX_PLACES]; /* in topology order (node by node) */
  int place_node[FATTN__MAX_PLACES];       /* NUMA node (logical index) of each place */
  int spread[FATTN__MAX_PLACES];           /* place indices round-robin over NUMA nodes */
} fattn__topology;

/* Discovered once; cached. */
const fattn__topology *fattn__topology_get(void);

/* ---- pinning (affinity.c) ---------------------------------------------------------- */

/* Slot k of a policy's order (k < nplaces): CORES takes places in order,
 * NUMA round-robin over the nodes. Returns a place index. */
int fattn__place_of(const fattn__topology *t, fattn_pin_policy policy, int slot);
/* The calling thread's CPU set; 0 if it cannot be read. */
int fattn__affinity_get(fattn__cpumask *m);
/* Binds the calling thread to `m`; 0 on failure (then it runs unpinned). */
int fattn__affinity_set(const fattn__cpumask *m);
/* The slot whose place holds the calling thread's whole CPU set (the
 * application confined it to one core), else -1 (it floats). */
int fattn__caller_slot(fattn_pin_policy policy);
/* The slot of worker `tid` >= 1 of a region whose caller is in `caller_slot`. */
int fattn__worker_slot(const fattn__topology *t, int tid, int caller_slot);
/* Binds worker `tid` >= 1 of a region to its place (thread 0, the caller, is
 * never moved), skipping the system call when this thread is already there
 * from an earlier call (OpenMP reuses its pool threads). */
void fattn__pin_worker(fattn_pin_policy policy, int tid, int caller_slot);
/* Resolves a context's policy: FATTN_PIN, OpenMP's binding variables and what
 * the build and machine allow. Writes why into `note` (n bytes). */
fattn_status fattn__pin_resolve(fattn_pin_policy asked, fattn_pin_policy *applied, char *note,
                                size_t n);

/* ---- plan and workspace --------------------------------------------------------- */

typedef struct fattn__plan {
  int64_t bm;       /* query positions per unit (rows = G·bm) */
  int64_t bn;       /* keys per block */
  int64_t rows_pad; /* G·bm rounded up to the table's rw */
  int64_t per_thread_bytes;
  int64_t nchunks;       /* most key chunks of a unit (split-KV); 1 = no split */
  int64_t chunk;         /* keys per chunk, a multiple of bn; 0 = no split */
  int64_t items;         /* Σ units × their chunks: the parallel loop's trip count */
  int64_t slot_bytes;    /* one partial result (nchunks > 1), after the per-thread pieces */
  int64_t partial_bytes; /* slot_bytes × items; the schedule (4B + 1 int64) follows */
  int64_t total_bytes;   /* the whole workspace: per_thread_bytes × nthreads + partials */
  int nthreads;
  fattn_pin_policy pin;                  /* NONE, CORES or NUMA: set by the caller of the driver */
  const fattn__bf16_dot_table *bf16_dot; /* Q·Kᵀ of row-vector units; NULL: the table's qk */
  /* The tile family (driver.c, run_unit_tile): units of more than the table's
   * small_rows rows run Q·Kᵀ and P·V on it; NULL: none. K and V are packed
   * once per (sequence, kv head, key block of bn) into the shared area after
   * the per-thread pieces (pack_bytes), blocks aligned at multiples of bn,
   * each kb_elems + vb_elems bf16, nkb blocks per (sequence, kv head); then a
   * byte per block: whether its V holds a NaN or an infinity. */
  const fattn__tile_table *tile;
  int64_t nkb, kb_elems, vb_elems, pack_bytes;
} fattn__plan;

/* Bytes one workspace piece of `floats` floats takes: every piece starts on a
 * 64-byte boundary. plan.c sizes the workspace and driver.c carves it with
 * this one rule. */
static inline int64_t fattn__ws_piece_bytes(int64_t floats) { return (floats * 4 + 63) / 64 * 64; }
/* The next piece of `floats` floats at *p, which moves past it. */
static inline float *fattn__ws_carve(char **p, int64_t floats) {
  float *r = (float *)*p;
  *p += fattn__ws_piece_bytes(floats);
  return r;
}

/* Sequence b's work with query blocks of bm and key chunks of `chunk` (0:
 * none): *nqb query blocks, *nc chunks per unit, *span the most keys one
 * unit may attend (from its first row's range start to its last row's limit). */
void fattn__seq_work(const fattn__problem *pb, int64_t bm, int64_t chunk, int64_t b, int64_t *nqb,
                     int64_t *nc, int64_t *span);

/* Whether a unit of `rows` rows runs on table t's row-major (decode) kernels. */
int fattn__unit_small(const fattn__problem *pb, const fattn__kernel_table *t, int64_t rows);
/* block_keys / block_queries: 0 = derive from the caches (see plan.c). `tile`:
 * the tile engine the call may use (NULL: none); the plan keeps it only where
 * some unit is too big for the row-major kernels. */
fattn_status fattn__make_plan(const fattn__problem *pb, const fattn__kernel_table *t,
                              const fattn__tile_table *tile, int nthreads, int64_t block_keys,
                              int64_t block_queries, const fattn__topology *topo,
                              fattn__plan *plan);

/* ---- context ------------------------------------------------------------------- */

typedef struct fattn__workspace {
  void *mem;
  size_t bytes;
  int busy;
} fattn__workspace;

#define FATTN__MAX_WORKSPACES 64

#define FATTN__MAX_BACKENDS 4 /* registered backends (backends/registry.c) */

struct fattn_context {
  int num_threads;
  fattn_pin_policy pin; /* applied: NONE, CORES or NUMA */
  char pin_note[160];
  fattn_backend isa_cap;
  int64_t block_keys, block_queries;
  const fattn__kernel_table *table; /* what AUTO uses */
  fattn__bf16_dot_mode bf16_dot;    /* FATTN_BF16_DOT */
  fattn_tile_policy tiles;          /* AUTO, OFF or BF16 (option, else FATTN_TILES) */
  const fattn__tile_table *tile;    /* the engine eligible calls run on; NULL: none */
  const char *tile_why;             /* why `tile` is what it is (static text) */
  pthread_mutex_t lock;             /* guards the workspace pool */
  fattn__workspace ws[FATTN__MAX_WORKSPACES];
  int nws;
  void *backend_state[FATTN__MAX_BACKENDS]; /* the registered backends', under `lock` */
  fattn_backend layer_backend; /* the layers' fattn_sdpa calls: AUTO (the fuzzer's oracle
                                  sets REFERENCE on a context of its own) */
};

/* Resolves NULL to the default context (created once); NULL on failure. */
fattn_status fattn__context_resolve(fattn_context *ctx, fattn_context **out);
/* Threads a call on c uses: 1 inside the caller's own OpenMP region. */
int fattn__threads_for_call(const fattn_context *c);
/* Checks out a workspace of at least `bytes` (allocating only if none is free
 * and big enough); returns its index. */
fattn_status fattn__workspace_acquire(fattn_context *ctx, size_t bytes, int *slot, void **mem);
void fattn__workspace_release(fattn_context *ctx, int slot);
/* Gives back what fattn__workspace_acquire returned (frees a one-off buffer). */
static inline void fattn__workspace_done(fattn_context *ctx, int slot, void *mem) {
  if (slot < 0)
    free(mem);
  else
    fattn__workspace_release(ctx, slot);
}

/* ---- layers (gemm.c, mha.c) -------------------------------------------------------- */

/* Y[r·ldy + j] = bias[j] + Σ_p X[r·ldx + p] · W[j·ldw + p] for r < M, j < N,
 * p < K (bias may be NULL), on the context's kernel table and threads. */
fattn_status fattn__gemm(fattn_context *c, int64_t M, int64_t N, int64_t K, const float *X,
                         int64_t ldx, const float *W, int64_t ldw, const float *bias, float *Y,
                         int64_t ldy);
/* The same in a workspace the caller already holds (ws, at least
 * fattn__gemm_workspace_bytes of this shape, 64-byte aligned; NULL: one from
 * the pool): a GEMM that writes the caller's output then cannot fail. */
fattn_status fattn__gemm_ws(fattn_context *c, int64_t M, int64_t N, int64_t K, const float *X,
                            int64_t ldx, const float *W, int64_t ldw, const float *bias, float *Y,
                            int64_t ldy, void *ws);
int64_t fattn__gemm_workspace_bytes(const fattn_context *c, int64_t M, int64_t N, int64_t K);

/* The general form, for the layers' backward (the products of a linear's
 * gradients: dX = dY·W, dW = dYᵀ·X): Y (+)= bias + A·Bᵀ with
 *   A[r][p] = X[r·ldx + p], or X[p·ldx + r] when x_t (X stored transposed),
 *   B[j][p] = W[j·ldw + p], or W[p·ldw + j] when w_t,
 * Y overwritten, or added to when acc. Same workspace rule as fattn__gemm_ws
 * (fattn__gemm_workspace_bytes covers every form). */
/* dst[j] = Σ_r x[r·ld + j] for j < n (added to dst[j] when acc): in double,
 * rows in order (a bias's gradient, the same bits for any thread count). */
void fattn__col_sums(int64_t rows, int64_t n, const float *x, int64_t ld, float *dst, int acc);

typedef struct fattn__gemm_form {
  int x_t, w_t, acc;
} fattn__gemm_form;
fattn_status fattn__gemm_ex(fattn_context *c, int64_t M, int64_t N, int64_t K, const float *X,
                            int64_t ldx, const float *W, int64_t ldw, const float *bias, float *Y,
                            int64_t ldy, fattn__gemm_form form, void *ws);

/* ---- floating-point environment (fpmode.c) -------------------------------------- */

/* Sets round-to-nearest with denormals flushed to zero on the calling thread;
 * returns what to give fattn__fp_leave to restore the caller's environment. */
unsigned fattn__fp_enter(void);
void fattn__fp_leave(unsigned saved);

/* ---- compute ---------------------------------------------------------------- */

/* Fused tiled online-softmax driver over one kernel table. Never fails once the
 * plan and workspace exist. */
void fattn__driver_run(const fattn__problem *pb, const fattn__kernel_table *t,
                       const fattn__plan *plan, void *workspace);

/* Double-precision three-pass oracle. Allocates O(Lk) per row; may fail with
 * OUT_OF_MEMORY before writing anything. */
fattn_status fattn__reference_run(const fattn__problem *pb);
/* The backward pass straight from the definition, in double (recomputes
 * the softmax; ignores the given lse and out). O(Lk · (D + Dv)) doubles. */
fattn_status fattn__reference_backward(const fattn__problem *pb, const fattn__grads *gr);

/* The driver's score-tile step (driver.c), shared with the backward pass:
 * softcap and ALiBi, the user's mask and, with `limits`, each row's key
 * range, on the scores of rows (hk's group, positions i0 .. i0 + bq) against
 * keys [j0, j0 + n): element (r, j) at st[r·srow + j·lds]. Nonzero if any
 * entry was masked. */
int fattn__mask_tile(const fattn__problem *pb, int64_t b, int64_t hk, int64_t i0, int64_t bq,
                     int64_t j0, int64_t n, int limits, float *st, int64_t srow, int64_t lds);

/* ---- backends beyond the kernel tables (backends/registry.c) ---------------------
 *
 * A backend that is not a kernel table (the oneDNN baseline, built with
 * FATTN_HAVE_ONEDNN) registers these hooks in backends/registry.c; the rest of
 * the framework reaches it only through them, never by name. Per context it
 * may keep state (the oneDNN primitive cache) in the slot
 * fattn__backend_state gives, created under ctx->lock and freed by its
 * state_free when the context is destroyed. */
typedef struct fattn__backend_ops {
  fattn_backend id;
  fattn_status (*run)(fattn_context *ctx, const fattn__problem *pb);
  void (*state_free)(void *state); /* NULL: keeps no per-context state */
  const char *(*version)(void);    /* the library's version, for runtime info */
} fattn__backend_ops;

/* The registered backend for `id`, or NULL (then *why, when given, says how
 * to build it in, for a backend this build could have had). */
const fattn__backend_ops *fattn__backend_find(fattn_backend id, const char **why);
/* The i-th registered backend (i < FATTN__MAX_BACKENDS), or NULL past the last. */
const fattn__backend_ops *fattn__backend_at(int i);
/* The context's state slot of a registered backend (read and written under
 * ctx->lock). */
void **fattn__backend_state(fattn_context *ctx, const fattn__backend_ops *ops);

/* ---- allocation (alloc.c): one place, with fault injection for the tests ----------- */

void *fattn__malloc(size_t bytes);
void *fattn__calloc(size_t n, size_t size);
void *fattn__aligned_alloc(size_t align, size_t bytes); /* bytes rounded up to align */
/* Makes the n-th allocation from now fail (n > 0), or none (n = 0). Tests only. */
void fattn__fault_inject(long n);
/* What is left of the countdown: > 0 when fewer allocations were made. */
long fattn__fault_pending(void);

/* ---- helpers -------------------------------------------------------------------- */

static inline int fattn__mul_ok(int64_t a, int64_t b, int64_t *r) {
  return !__builtin_mul_overflow(a, b, r);
}
static inline int fattn__add_ok(int64_t a, int64_t b, int64_t *r) {
  return !__builtin_add_overflow(a, b, r);
}
static inline int64_t fattn__round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

#endif /* FATTN_INTERNAL_H */

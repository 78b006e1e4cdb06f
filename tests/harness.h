/* Test harness shared by fattn's CTest suites: builds a problem in any layout,
 * runs a backend, and holds its output against the reference. */
#ifndef FATTN_TEST_HARNESS_H
#define FATTN_TEST_HARNESS_H

#include <stdint.h>
#include <stdio.h>

#include "fattn.h"

typedef enum tcase_mask { MASK_NONE, MASK_ADDITIVE, MASK_U8 } tcase_mask;
typedef enum tcase_layout { LAYOUT_BHSD, LAYOUT_BSHD } tcase_layout;
typedef enum tcase_data {
  DATA_UNIFORM,  /* uniform in [-1, 1] */
  DATA_LARGE,    /* integer-valued, scale 1: logits up to ~1e4, scores exact in f32 */
  DATA_LARGE_INC /* as DATA_LARGE, logits growing with the key: the max moves every block */
} tcase_data;

typedef struct tcase {
  int64_t B, H, Hkv, Lq, Lk, D, Dv;
  fattn_causal causal;
  tcase_mask mask;
  int mask_broadcast; /* mask dims [1, 1, Lq, Lk] */
  int kv_lens;        /* random kv_lens per batch (some 0, some Lk) */
  int lse;
  int mask_empty_rows; /* additive/U8 mask leaves some rows with no key */
  tcase_layout layout;
  tcase_data data;
  int self_attention;        /* k and v are views of q's buffer (needs H = Hkv, Lq = Lk, D = Dv) */
  int64_t inner;             /* innermost stride of q, k, v and out (0 or 1 = contiguous rows) */
  int overlap_rows;          /* q, k, v and mask rows overlap (row stride about half a row) */
  fattn_dtype dq, dkv, dout; /* F32 (default), F16 or BF16: q; k and v; out */
  uint64_t seed;
} tcase;

/* Fills a case with defaults (BHSD, uniform data, nothing optional). */
void tcase_init(tcase *c, int64_t B, int64_t H, int64_t Hkv, int64_t Lq, int64_t Lk, int64_t D);
/* One line describing the case, for failure messages. */
void tcase_describe(const tcase *c, char *buf, size_t n);

/* Runs the reference once, then `backend` on each of the `nctx` contexts (an
 * entry may be NULL: the default context), and compares. Returns 0 if all
 * pass, 1 if one fails (and prints why), 2 if the backend reported
 * UNSUPPORTED (skipped). `max_err_ratio` (optional) gets the largest
 * |err| / tolerance seen. */
int tcase_check(const tcase *c, fattn_backend backend, fattn_context *const *ctxs, int nctx,
                double *max_err_ratio);

/* The fused backends this build and CPU can run, plus ONEDNN when available;
 * returns how many were written to `out` (at most 8). */
int available_backends(fattn_backend *out);
/* Whether a call on ctx with backend be and these q and K / V dtypes runs on
 * the context's tile engine (fattn_runtime_info's tile_engine and tiles, the
 * library's rule by dtype): 0 no, 1 with exact BF16 inputs, 2 with F32 / F16
 * ones rounded to BF16 (FATTN_TILES_BF16). Decode-sized calls stay on the
 * vector tables; counting them too only loosens their bound. */
int tiles_for_call(fattn_context *ctx, fattn_backend be, fattn_dtype q, fattn_dtype kv);

/* Deterministic generator. */
uint64_t rng_next(uint64_t *s);
double rng_uniform(uint64_t *s);                      /* [0, 1) */
int64_t rng_int(uint64_t *s, int64_t lo, int64_t hi); /* [lo, hi] */

#define EXPECT(cond, ...)                                                                          \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: FAILED: %s: ", __FILE__, __LINE__, #cond);                           \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fprintf(stderr, "\n");                                                                       \
      g_failures++;                                                                                \
    }                                                                                              \
  } while (0)

extern int g_failures;

#endif

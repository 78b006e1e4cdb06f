/* bf16 tile micro-kernels (Q·Kᵀ and P·V on a matrix engine), written once
 * against a thin layer of tile operations.
 *
 * This file is a template: kernels/amx/bf16-tile-amx.c includes it with the
 * layer mapped to Intel AMX's instructions, lib/backends/tile_model.c with a
 * portable C model of them, so the kernels' logic (packing, padding, tails,
 * the scale) runs and is tested on every machine and the real instructions
 * where the CPU has them (contract: lib/kernel.h, fattn__tile_table).
 *
 * The engine: 8 tile registers of 16 rows × 64 bytes; FT_DP(c, a, b) is
 * TDPBF16PS, c[m][j] += Σ_t a[m][2t]·b[t][2j] + a[m][2t+1]·b[t][2j+1] over
 * t < 16 (a: 16 rows × 32 bf16; b: 16 pair rows × 16 columns × 2 bf16; c: 16
 * × 16 f32). Tile numbers are constants (the instructions encode them), so
 * every use below names its tile: C tiles 0-3, A tiles 4-5, B tiles 6-7.
 *
 * Required definitions:
 *   FT_SUFFIX, FT_NAME           function-name suffix and table name
 *   FT_CONFIG()                  every tile 16 rows × 64 bytes (palette 1)
 *   FT_ZERO(t) FT_LOAD(t, p, stride) FT_STORE(t, p, stride) FT_DP(c, a, b)
 *   FT_RELEASE()                 the thread's tile state back to init
 */
#include <stdint.h>
#include <string.h>

#include "half.h"
#include "kernel.h"

#define FT_CAT2(a, b) a##b
#define FT_CAT(a, b) FT_CAT2(a, b)
#define FT_FN(name) FT_CAT(FT_CAT(fattn_bf16_tile_, name), FT_CAT(_ukernel__, FT_SUFFIX))
#define FT_INLINE static inline __attribute__((always_inline))

#define FT_ROWS 16 /* rows of an A or C tile, pair rows of a B tile */
#define FT_COLS 16 /* f32 columns of a C tile, column pairs of a B tile */
#define FT_K 32    /* bf16 elements of an A row: the reduction of one FT_DP */

static inline int64_t ft_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* element p of row r of src (F32, F16 or BF16, rows ld elements apart) as bf16 */
static inline uint16_t ft_get(const void *src, fattn_dtype dt, int64_t r, int64_t ld, int64_t p) {
  if (dt == FATTN_BF16) return ((const uint16_t *)src)[r * ld + p];
  if (dt == FATTN_F16)
    return fattn__f32_to_bf16(fattn__f16_to_f32(((const uint16_t *)src)[r * ld + p]));
  return fattn__f32_to_bf16(((const float *)src)[r * ld + p]);
}

/* ---- packing (plain C: no tile operations) ------------------------------------------ */

/* A layout: qa[r·lda + p] = bf16(q_r[p]) for r < ceil16(m), p < ceil32(d),
 * zero outside m × d. lda >= ceil32(d). */
static void FT_FN(pack_a)(int64_t m, int64_t d, const void *src, int64_t ld, fattn_dtype dt,
                          uint16_t *qa, int64_t lda) {
  const int64_t mp = ft_up(m, FT_ROWS), dp = ft_up(d, FT_K);
  for (int64_t r = 0; r < mp; r++) {
    uint16_t *row = qa + r * lda;
    int64_t p = 0;
    if (r < m) {
      if (dt == FATTN_BF16) {
        memcpy(row, (const uint16_t *)src + r * ld, (size_t)d * 2);
        p = d;
      } else {
        for (; p < d; p++)
          row[p] = ft_get(src, dt, r, ld, p);
      }
    }
    for (; p < dp; p++)
      row[p] = 0;
  }
}

/* A B operand: element (i, c) of a red × cols matrix, i the reduction index,
 * at pair row i / 2 of column group c / 16:
 *   b[((c / 16)·(ceil32(red)/2) + i / 2)·32 + 2·(c % 16) + i % 2],
 * zero past red and cols. Element (i, c) is src[c][i] when `transposed`
 * (K: the reduction runs along a key's row), src[i][c] otherwise (V). */
static void ft_pack_b(int64_t red, int64_t cols, const void *src, int64_t ld, fattn_dtype dt,
                      int transposed, uint16_t *b) {
  const int64_t pairs = ft_up(red, FT_K) / 2, groups = ft_up(cols, FT_COLS) / FT_COLS;
  for (int64_t g = 0; g < groups; g++)
    for (int64_t t = 0; t < pairs; t++) {
      uint16_t *row = b + (g * pairs + t) * 2 * FT_COLS;
      for (int64_t j = 0; j < FT_COLS; j++) {
        const int64_t c = g * FT_COLS + j;
        for (int e = 0; e < 2; e++) {
          const int64_t i = 2 * t + e;
          row[2 * j + e] = i >= red || c >= cols ? 0
                           : transposed          ? ft_get(src, dt, c, ld, i)
                                                 : ft_get(src, dt, i, ld, c);
        }
      }
    }
}

/* K as B (a 32-bit transpose of each 16-key group): kb[(g·(dp/2) + t)·32 +
 * 2j + e] = bf16(K[16g + j][2t + e]), dp = ceil32(d). */
static void FT_FN(pack_k)(int64_t n, int64_t d, const void *k, int64_t ldk, fattn_dtype dt,
                          uint16_t *kb) {
  ft_pack_b(d, n, k, ldk, dt, 1, kb);
}

/* V as B (rows 2t and 2t+1 interleaved): vb[(h·(np/2) + t)·32 + 2c + e] =
 * bf16(V[2t + e][16h + c]), np = ceil32(n). */
static void FT_FN(pack_v)(int64_t n, int64_t dv, const void *v, int64_t ldv, fattn_dtype dt,
                          uint16_t *vb) {
  ft_pack_b(n, dv, v, ldv, dt, 0, vb);
}

/* ---- the tile grid shared by qk and pv ----------------------------------------------- */

/* RT row tiles (1 or 2) × CT column tiles (1 or 2) of C += A · B over `steps`
 * reductions of 32: A tiles 4 (+5) from a (rows lda elements apart), B tiles
 * 6 (+7) from b (the second column tile bstride elements on; each step's B
 * tile the next 16 pair rows), C tiles 0, 1 (row tile 0) and 2, 3 (row tile
 * 1) zeroed (qk) or loaded from c (pv), then stored back. */
FT_INLINE void tile_block(const int RT, const int CT, int load, int64_t steps, const uint16_t *a,
                          int64_t lda, const uint16_t *b, int64_t bstride, float *c, int64_t ldc) {
  if (load) {
    FT_LOAD(0, c, ldc * 4);
    if (CT > 1) FT_LOAD(1, c + FT_COLS, ldc * 4);
    if (RT > 1) FT_LOAD(2, c + FT_ROWS * ldc, ldc * 4);
    if (RT > 1 && CT > 1) FT_LOAD(3, c + FT_ROWS * ldc + FT_COLS, ldc * 4);
  } else {
    FT_ZERO(0);
    if (CT > 1) FT_ZERO(1);
    if (RT > 1) FT_ZERO(2);
    if (RT > 1 && CT > 1) FT_ZERO(3);
  }
  for (int64_t k = 0; k < steps; k++) {
    const uint16_t *bk = b + k * FT_ROWS * 2 * FT_COLS;
    FT_LOAD(4, a + k * FT_K, lda * 2);
    FT_LOAD(6, bk, 4 * FT_COLS);
    if (CT > 1) FT_LOAD(7, bk + bstride, 4 * FT_COLS);
    if (RT > 1) FT_LOAD(5, a + FT_ROWS * lda + k * FT_K, lda * 2);
    FT_DP(0, 4, 6);
    if (CT > 1) FT_DP(1, 4, 7);
    if (RT > 1) FT_DP(2, 5, 6);
    if (RT > 1 && CT > 1) FT_DP(3, 5, 7);
  }
  FT_STORE(0, c, ldc * 4);
  if (CT > 1) FT_STORE(1, c + FT_COLS, ldc * 4);
  if (RT > 1) FT_STORE(2, c + FT_ROWS * ldc, ldc * 4);
  if (RT > 1 && CT > 1) FT_STORE(3, c + FT_ROWS * ldc + FT_COLS, ldc * 4);
}

/* Row tiles i, i+1 of C (rt of them) × all ct column tiles, two at a time. */
static void tile_rows(int rt, int64_t ct, int load, int64_t steps, const uint16_t *a, int64_t lda,
                      const uint16_t *b, int64_t bstride, float *c, int64_t ldc) {
  int64_t g = 0;
  for (; g + 2 <= ct; g += 2) {
    if (rt == 2)
      tile_block(2, 2, load, steps, a, lda, b + g * bstride, bstride, c + g * FT_COLS, ldc);
    else
      tile_block(1, 2, load, steps, a, lda, b + g * bstride, bstride, c + g * FT_COLS, ldc);
  }
  if (g < ct) {
    if (rt == 2)
      tile_block(2, 1, load, steps, a, lda, b + g * bstride, bstride, c + g * FT_COLS, ldc);
    else
      tile_block(1, 1, load, steps, a, lda, b + g * bstride, bstride, c + g * FT_COLS, ldc);
  }
}

/* ---- Q·Kᵀ: s[r·lds + j] = scale · Σ_p Q[r][p]·K[j][p] --------------------------------- */

/* qa: pack_a of m rows (lda), kb: pack_k of n keys, both of head_dim d. Writes
 * ceil16(m) rows × ceil16(n) columns of s (the padding is 0 before the scale). */
static void FT_FN(qk)(int64_t m, int64_t n, int64_t d, const uint16_t *qa, int64_t lda,
                      const uint16_t *kb, float scale, float *s, int64_t lds) {
  const int64_t mt = ft_up(m, FT_ROWS) / FT_ROWS, nt = ft_up(n, FT_COLS) / FT_COLS;
  const int64_t dp = ft_up(d, FT_K), gstride = dp / 2 * 2 * FT_COLS; /* one key group of kb */
  FT_CONFIG();
  for (int64_t i = 0; i < mt; i += 2) {
    const int rt = mt - i >= 2 ? 2 : 1;
    float *srow = s + i * FT_ROWS * lds;
    tile_rows(rt, nt, 0, dp / FT_K, qa + i * FT_ROWS * lda, lda, kb, gstride, srow, lds);
    /* the scale on the f32 sums, while they are in cache: a bf16 q is used exactly */
    for (int64_t r = 0; r < rt * FT_ROWS; r++)
      for (int64_t j = 0; j < nt * FT_COLS; j++)
        srow[r * lds + j] *= scale;
  }
}

/* ---- P rounded to bf16 once, and P·V ----------------------------------------------- */

/* pa[r·lda + j] = bf16(p[r·lds + j]) for r < ceil16(m), j < ceil32(n), zero
 * outside m × n (lda >= ceil32(n)). */
static void FT_FN(pack_p)(int64_t m, int64_t n, const float *p, int64_t lds, uint16_t *pa,
                          int64_t lda) {
  const int64_t mp = ft_up(m, FT_ROWS), np = ft_up(n, FT_K);
  for (int64_t r = 0; r < mp; r++) {
    uint16_t *row = pa + r * lda;
    int64_t j = 0;
    if (r < m) { /* fattn__f32_to_bf16 without its branch, so the loop vectorises */
      const float *pr = p + r * lds;
      for (; j < n; j++) {
        uint32_t u;
        memcpy(&u, pr + j, 4);
        const uint32_t rne = (u + 0x7fffu + ((u >> 16) & 1)) >> 16, qnan = (u >> 16) | 0x40;
        row[j] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? qnan : rne);
      }
    }
    for (; j < np; j++)
      row[j] = 0;
  }
}

/* o[r·ldo + c] = alpha[r]·o[r·ldo + c] + Σ_j P[r][j]·V[j][c] for r < ceil16(m),
 * c < ceil16(dv), with the rescale on r < m, c < dv only and none when alpha
 * is NULL (the online softmax's correction, done here while the rows are about
 * to be loaded): pa from pack_p (lda), vb from pack_v of the same n keys. */
static void FT_FN(pv)(int64_t m, int64_t n, int64_t dv, const uint16_t *pa, int64_t lda,
                      const uint16_t *vb, const float *alpha, float *o, int64_t ldo) {
  const int64_t mt = ft_up(m, FT_ROWS) / FT_ROWS, ht = ft_up(dv, FT_COLS) / FT_COLS;
  const int64_t np = ft_up(n, FT_K), hstride = np / 2 * 2 * FT_COLS; /* one column group */
  for (int64_t r = 0; alpha && r < m; r++) {
    const float a = alpha[r];
    if (a == 1.0f) continue;
    float *orow = o + r * ldo;
    for (int64_t c = 0; c < dv; c++)
      orow[c] *= a;
  }
  FT_CONFIG();
  for (int64_t i = 0; i < mt; i += 2)
    tile_rows(mt - i >= 2 ? 2 : 1, ht, 1, np / FT_K, pa + i * FT_ROWS * lda, lda, vb, hstride,
              o + i * FT_ROWS * ldo, ldo);
}

static void FT_FN(release)(void) { FT_RELEASE(); }

const fattn__tile_table FT_NAME = {
    .name = FT_STR,
    .pack_a = FT_FN(pack_a),
    .pack_k = FT_FN(pack_k),
    .pack_v = FT_FN(pack_v),
    .qk = FT_FN(qk),
    .pack_p = FT_FN(pack_p),
    .pv = FT_FN(pv),
    .release = FT_FN(release),
};

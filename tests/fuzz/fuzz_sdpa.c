/* libFuzzer target: random bytes -> one fattn_sdpa call, held against the
 * double-precision reference.
 *
 * The bytes choose the dims (0, 1, small, or huge enough that a size
 * overflows), the layout (BHSD, BSHD, padded rows, inner stride 2, rows that
 * overlap, a broadcast stride where none is allowed), dtypes (valid,
 * unsupported, out of range), the mask (none, additive with -inf entries, U8,
 * broadcast, wrong dtype), kv_lens (in range, negative, > Lk), the causal kind
 * (valid or not), the scale (default, finite, inf, NaN), lse, the backend and
 * the thread count, with F16 / BF16 q, k and v among the valid dtypes. Buffers are allocated to
 * exactly what the layout covers, so ASan sees any read or write outside them. Then:
 *   - a status other than SUCCESS: a message is set and out / lse still hold
 *     their poison;
 *   - SUCCESS: every output is within tolerance of the reference.
 * Anything else aborts (a finding). Built by `scripts/run fuzz`. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fattn.h"
#include "fuzz_common.h"
#include "half.h" /* lib/: exact conversions, to fill half inputs */

static int64_t pick_dim(bytes *b, int64_t small_max, int *huge) {
  const unsigned c = take(b);
  switch (c % 16) {
  case 0: return 0; /* invalid */
  case 1: return 1;
  case 2: *huge = 1; return ((int64_t)1 << 61) + c; /* any byte extent overflows */
  case 3: return -(int64_t)(c / 16);                /* invalid */
  default: return 1 + (int64_t)((c / 16) * 256 + take(b)) % small_max;
  }
}

/* A [d0, d1, d2, d3] view in one of several layouts; the buffer covers exactly
 * the elements the view reaches. `kind` % 6: 0 BHSD, 1 BSHD, 2 padded rows,
 * 3 inner stride 2, 4 rows overlapping (stride d3 / 2: inputs only), 5 a
 * zero stride on a dim > 1 (invalid outside masks). */
static size_t make_view(fattn_tensor *t, fattn_dtype dt, const int64_t d[4], unsigned kind,
                        int huge) {
  memset(t, 0, sizeof *t);
  t->dtype = dt;
  for (int i = 0; i < 4; i++)
    t->dims[i] = d[i];
  /* unsigned: huge dims wrap here (validation then sees a bad view) */
  uint64_t s3 = 1, rowlen = d[3] > 0 ? (uint64_t)d[3] : 1;
  switch (kind % 6) {
  case 3: s3 = 2, rowlen = 2 * rowlen; break;
  case 2: rowlen += 3; break;
  case 4: rowlen = rowlen / 2 > 0 ? rowlen / 2 : 1; break;
  default: break;
  }
  const uint64_t n1 = d[1] > 0 ? (uint64_t)d[1] : 1, n2 = d[2] > 0 ? (uint64_t)d[2] : 1;
  uint64_t st[4];
  if (kind % 6 == 1) { /* BSHD */
    st[3] = s3, st[1] = rowlen, st[2] = rowlen * n1, st[0] = rowlen * n1 * n2;
  } else {
    st[3] = s3, st[2] = rowlen, st[1] = rowlen * n2, st[0] = rowlen * n2 * n1;
  }
  for (int i = 0; i < 4; i++)
    t->strides[i] = (int64_t)st[i];
  if (kind % 6 == 5) t->strides[kind / 6 % 4] = 0;
  if (huge) return 0; /* never dereferenced: validation must reject it */
  /* elements covered: offset of the last element + 1 */
  int64_t last = 0;
  for (int i = 0; i < 4; i++)
    last += (d[i] - 1) * t->strides[i];
  const size_t es = dt == FATTN_U8 ? 1 : (dt == FATTN_F16 || dt == FATTN_BF16) ? 2 : 4;
  return (size_t)(last + 1) * es;
}

typedef struct problem {
  fattn_tensor q, k, v, out, mask, lse;
  void *bq, *bk, *bv, *bo, *bm, *bl, *bo2, *bl2;
  size_t nq, nk, nv, no, nm, nl;
  int32_t kv_lens[8];
  float slopes[64], sinks[64];
  fattn_sdpa_params p;
} problem;

static fattn_context *g_ctx[5];

/* What the run tried, printed at exit: statuses returned, and the calls that
 * carried each kind of bad input (a call may carry several). */
enum {
  BAD_DIM,
  BAD_HUGE,
  BAD_DTYPE,
  BAD_SCALE,
  BAD_CAUSAL,
  BAD_KVLEN,
  BAD_ZERO_STRIDE,
  BAD_OVERLAP_OUT,
  BAD_HEADS,
  BAD_BACKEND,
  BAD_FEATURE,
  BAD_KINDS
};
static const char *const bad_names[BAD_KINDS] = {"dim <= 0",
                                                 "huge dim (size overflow)",
                                                 "U8 / invalid dtype",
                                                 "scale inf / NaN",
                                                 "invalid causal kind",
                                                 "kv_lens < 0 or > Lk",
                                                 "zero stride outside a mask",
                                                 "overlapping output rows",
                                                 "H not a multiple of Hkv",
                                                 "invalid backend enum",
                                                 "window < -1, NaN slope, bad softcap or sink"};
static long g_bad[BAD_KINDS], g_status[16], g_calls, g_compared;

static void report(void) {
  fprintf(stderr, "fuzz_sdpa: %ld calls, %ld successes compared with the reference\n", g_calls,
          g_compared);
  for (int i = 0; i < 16; i++)
    if (g_status[i])
      fprintf(stderr, "  %-34s %ld\n", fattn_status_string((fattn_status)i), g_status[i]);
  for (int i = 0; i < BAD_KINDS; i++)
    fprintf(stderr, "  bad input: %-30s %ld calls\n", bad_names[i], g_bad[i]);
}

static void check(int cond, const char *what, const problem *pr, fattn_status st) {
  if (cond) return;
  fprintf(stderr, "fuzz finding: %s (status %s: %s), q dims %lld %lld %lld %lld\n", what,
          fattn_status_string(st), fattn_last_error(), (long long)pr->q.dims[0],
          (long long)pr->q.dims[1], (long long)pr->q.dims[2], (long long)pr->q.dims[3]);
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g_ctx[0]) {
    atexit(report);
    for (int t = 0; t < 5; t++) {
      fattn_context_options o;
      fattn_context_options_init(&o);
      o.num_threads = t == 0 ? 1 : t;
      o.block_keys = t == 4 ? 7 : 0; /* small blocks: many key blocks and split-KV chunks */
      o.block_queries = t == 4 ? 3 : 0;
      if (fattn_context_create(&o, &g_ctx[t]) != FATTN_SUCCESS) abort();
    }
  }
  bytes b = {data, size};
  int huge = 0;
  const int64_t B = pick_dim(&b, 3, &huge), Hkv = pick_dim(&b, 3, &huge);
  const unsigned gsel = take(&b);
  const int64_t G = 1 + gsel % 4;
  /* wrapping arithmetic: a huge Hkv must not make the harness overflow */
  const int64_t H = (int64_t)(gsel % 23 == 7 ? (uint64_t)Hkv + 1 /* not a multiple */
                                             : (uint64_t)Hkv * (uint64_t)G);
  const int64_t Lq = pick_dim(&b, 40, &huge), Lk = pick_dim(&b, 1200, &huge);
  const int64_t D = pick_dim(&b, 70, &huge);
  const unsigned dvsel = take(&b);
  const int64_t Dv = dvsel % 4 == 0 ? pick_dim(&b, 70, &huge) : D;
  const unsigned layout = take(&b), dts = take(&b), msel = take(&b), misc = take(&b);
  const unsigned bsel = take(&b), ssel = take(&b);
  /* keep each run cheap (~1 ms): more executions per second */
  const double work = fabs((double)B * (double)H * (double)Lq * (double)Lk * (double)(D + Dv));
  if (!huge && work > 4e6) return 0;

  problem pr;
  memset(&pr, 0, sizeof pr);
  const fattn_dtype dts_tab[] = {FATTN_F32, FATTN_F32, FATTN_F32,  FATTN_F32, FATTN_F32,
                                 FATTN_F32, FATTN_F16, FATTN_BF16, FATTN_U8,  (fattn_dtype)9};
  const fattn_dtype dq = dts % 7 == 0 ? dts_tab[dts / 7 % 10] : FATTN_F32;
  const fattn_dtype dk = dts % 11 == 0 ? dts_tab[dts / 11 % 10] : FATTN_F32;
  const int64_t qd[4] = {B, H, Lq, D}, kd[4] = {B, Hkv, Lk, D}, vd[4] = {B, Hkv, Lk, Dv};
  const int64_t od[4] = {B, H, Lq, Dv}, ld[4] = {B, H, Lq, 1};
  const int any_bad = B <= 0 || Hkv <= 0 || Lq <= 0 || Lk <= 0 || D <= 0 || Dv <= 0 || H <= 0;
  /* outputs: a valid layout (0..3) except sometimes overlapping rows (4) */
  const unsigned olay = layout % 9 == 8 ? 4 : layout % 4;
  pr.nq = make_view(&pr.q, dq, qd, layout, huge || any_bad);
  pr.nk = make_view(&pr.k, dk, kd, layout / 6, huge || any_bad);
  const fattn_dtype dv = dk == FATTN_F16 || dk == FATTN_BF16 ? dk : FATTN_F32;
  pr.nv = make_view(&pr.v, dv, vd, layout / 36, huge || any_bad);
  pr.no = make_view(&pr.out, FATTN_F32, od, olay, huge || any_bad);
  pr.nl = make_view(&pr.lse, FATTN_F32, ld, 0, huge || any_bad);
  const size_t alloc_min = 64;
  pr.bq = calloc(1, pr.nq > alloc_min ? pr.nq : alloc_min);
  pr.bk = calloc(1, pr.nk > alloc_min ? pr.nk : alloc_min);
  pr.bv = calloc(1, pr.nv > alloc_min ? pr.nv : alloc_min);
  pr.bo = malloc(pr.no > alloc_min ? pr.no : alloc_min);
  pr.bl = malloc(pr.nl > alloc_min ? pr.nl : alloc_min);
  pr.bo2 = malloc(pr.no > alloc_min ? pr.no : alloc_min);
  pr.bl2 = malloc(pr.nl > alloc_min ? pr.nl : alloc_min);
  pr.q.data = pr.bq, pr.k.data = pr.bk, pr.v.data = pr.bv, pr.out.data = pr.bo;
  pr.lse.data = pr.bl;
  /* data: small values from the input (then a fixed pattern), exact in f32,
   * bf16 and f16 alike (k/128 with |k| <= 128) */
  if (!huge && !any_bad) {
    void *bs[3] = {pr.bq, pr.bk, pr.bv};
    const fattn_dtype ts[3] = {dq, dk, dv};
    const size_t nb[3] = {pr.nq, pr.nk, pr.nv};
    uint32_t x = 2166136261u;
    for (int t = 0; t < 3; t++) {
      if (ts[t] != FATTN_F32 && ts[t] != FATTN_F16 && ts[t] != FATTN_BF16) continue;
      const size_t es = ts[t] == FATTN_F32 ? 4 : 2;
      for (size_t i = 0; i < nb[t] / es; i++) {
        x = (x ^ take(&b)) * 16777619u;
        const float f = (float)((int)(x >> 24) - 128) / 128.0f;
        if (ts[t] == FATTN_F32)
          ((float *)bs[t])[i] = f;
        else
          ((uint16_t *)bs[t])[i] =
              ts[t] == FATTN_BF16 ? fattn__f32_to_bf16(f) : fattn__f32_to_f16(f);
      }
    }
  }
  fill_poison(pr.bo, pr.no / 4), fill_poison(pr.bl, pr.nl / 4);

  fattn_sdpa_params_init(&pr.p);
  pr.p.causal = (fattn_causal)(misc % 7 == 6 ? 3 + misc / 64 : misc % 3);
  pr.p.lse = misc & 8 ? &pr.lse : NULL;
  const float scales[] = {0.0f, 0.5f, 0.125f, 1.0f, INFINITY, NAN, -0.25f, 0.0f};
  pr.p.scale = scales[ssel % 8];
  if ((misc & 16) && !any_bad && !huge && B <= 8) {
    for (int64_t i = 0; i < B; i++) {
      const unsigned c = take(&b);
      pr.kv_lens[i] = c % 13 == 0 ? -1 : c % 17 == 0 ? (int32_t)Lk + 1 : (int32_t)(c % (Lk + 1));
    }
    pr.p.kv_lens = pr.kv_lens;
  }
  if (msel & 1) { /* a mask: additive or U8, maybe broadcast over B and H */
    const fattn_dtype mdt = msel & 2 ? FATTN_U8 : msel % 29 == 1 ? FATTN_F16 : FATTN_F32;
    const int bc = msel & 4;
    const int64_t md[4] = {bc ? 1 : B, bc ? 1 : H, Lq, Lk};
    pr.nm = make_view(&pr.mask, mdt, md, 0, huge || any_bad);
    pr.bm = calloc(1, pr.nm > alloc_min ? pr.nm : alloc_min);
    pr.mask.data = pr.bm;
    if (bc && (msel & 8)) pr.mask.strides[0] = pr.mask.strides[1] = 0; /* broadcast by stride */
    if (!huge && !any_bad) {
      for (size_t i = 0; i < pr.nm / (mdt == FATTN_U8 ? 1 : mdt == FATTN_F32 ? 4 : 2); i++) {
        const unsigned c = take(&b);
        if (mdt == FATTN_U8)
          ((uint8_t *)pr.bm)[i] = c % 5 != 0;
        else if (mdt == FATTN_F32)
          ((float *)pr.bm)[i] = c % 7 == 0 ? -INFINITY : (float)((int)(c % 16) - 8) * 0.25f;
      }
    }
    pr.p.attn_mask = &pr.mask;
  }
  /* the inference-engine score features: window, ALiBi, softcap, sinks,
   * sometimes with a bad value */
  const unsigned fsel = take(&b);
  int bad_feature = 0;
  if (fsel & 1) {
    const unsigned w = take(&b);
    pr.p.window_left = w % 11 == 0 ? -2 : (int64_t)(w % 40) - 1;
    pr.p.window_right = fsel & 2 ? (int64_t)(w / 40 % 8) - 1 : -1;
    bad_feature |= pr.p.window_left < -1;
  }
  if ((fsel & 4) && H > 0 && H <= 64) {
    for (int64_t h = 0; h < H; h++) {
      const unsigned c = take(&b);
      pr.slopes[h] = c % 31 == 0 ? NAN : (float)(c % 16) * 0.0625f;
      bad_feature |= isnan(pr.slopes[h]);
    }
    pr.p.alibi_slopes = pr.slopes;
  }
  if (fsel & 8) {
    const float caps[] = {0.5f, 2.0f, 30.0f, 1.0f, -1.0f, INFINITY, 0.0f, 5.0f};
    pr.p.softcap = caps[fsel / 8 % 8];
    bad_feature |= !(pr.p.softcap >= 0.0f) || isinf(pr.p.softcap);
  }
  if ((fsel & 128) && H > 0 && H <= 64) {
    for (int64_t h = 0; h < H; h++) {
      const unsigned c = take(&b);
      pr.sinks[h] = c % 37 == 0 ? INFINITY : (float)((int)(c % 32) - 16) * 0.25f;
      bad_feature |= isinf(pr.sinks[h]);
    }
    pr.p.sinks = pr.sinks;
  }
  const fattn_backend backs[] = {FATTN_BACKEND_AUTO,   FATTN_BACKEND_SCALAR, FATTN_BACKEND_AVX2,
                                 FATTN_BACKEND_AVX512, FATTN_BACKEND_NEON,   FATTN_BACKEND_ONEDNN,
                                 FATTN_BACKEND_AUTO,   (fattn_backend)77};
  pr.p.backend = backs[bsel % 8];
  fattn_context *ctx = bsel / 8 % 6 == 5 ? NULL : g_ctx[bsel / 8 % 6 % 5];

  const fattn_status st = fattn_sdpa(ctx, &pr.q, &pr.k, &pr.v, &pr.out, &pr.p);
  g_calls++;
  if (st == FATTN_ERROR_BACKEND && g_status[FATTN_ERROR_BACKEND] == 0) /* the first: say which */
    fprintf(stderr, "fuzz_sdpa: first FATTN_ERROR_BACKEND: %s\n", fattn_last_error());
  g_status[(unsigned)st < 16 ? (unsigned)st : 15]++;
  g_bad[BAD_DIM] += any_bad;
  g_bad[BAD_HUGE] += huge;
  g_bad[BAD_DTYPE] +=
      dq == FATTN_U8 || dk == FATTN_U8 || (unsigned)dq > FATTN_U8 || (unsigned)dk > FATTN_U8;
  g_bad[BAD_SCALE] += !isfinite(pr.p.scale);
  g_bad[BAD_CAUSAL] += (unsigned)pr.p.causal > 2;
  if (pr.p.kv_lens)
    for (int64_t i = 0; i < B; i++)
      if (pr.kv_lens[i] < 0 || pr.kv_lens[i] > Lk) {
        g_bad[BAD_KVLEN]++;
        break;
      }
  g_bad[BAD_ZERO_STRIDE] += layout % 6 == 5 || (layout / 6) % 6 == 5 || (layout / 36) % 6 == 5;
  g_bad[BAD_OVERLAP_OUT] += olay == 4 && Dv > 1;
  g_bad[BAD_HEADS] += gsel % 23 == 7;
  g_bad[BAD_BACKEND] += bsel % 8 == 7;
  g_bad[BAD_FEATURE] += bad_feature;
  if (st != FATTN_SUCCESS) {
    check(fattn_last_error()[0] != '\0', "a failure without a message", &pr, st);
    check(is_poison(pr.bo, pr.no / 4) && is_poison(pr.bl, pr.nl / 4),
          "a failed call wrote out or lse", &pr, st);
  } else {
    check(!huge && !any_bad && !bad_feature && dq != FATTN_U8 && dk != FATTN_U8 &&
              (unsigned)dq <= FATTN_BF16 && (unsigned)dk <= FATTN_BF16,
          "an invalid problem accepted", &pr, st);
    /* the reference, into fresh buffers with the same layout */
    problem ref = pr;
    ref.out.data = pr.bo2, ref.lse.data = pr.bl2;
    ref.p.lse = pr.p.lse ? &ref.lse : NULL;
    ref.p.backend = FATTN_BACKEND_REFERENCE;
    const fattn_status rs = fattn_sdpa(NULL, &ref.q, &ref.k, &ref.v, &ref.out, &ref.p);
    g_compared++;
    check(rs == FATTN_SUCCESS, "the reference failed where the backend succeeded", &pr, rs);
    /* |q|, |k|, |v| <= 1, |mask| <= 2, scale <= 1: scores within D + 2, so
     * the f32 error is far below this bound (tests/harness.c derives the
     * exact one; the fuzzer looks for gross errors and memory faults). */
    const float *o = pr.bo, *o2 = pr.bo2;
    const double tol = 1e-4 * (double)(D + Dv + 8);
    for (int64_t bi = 0; bi < B; bi++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < Lq; i++) {
          for (int64_t c = 0; c < Dv; c++) {
            const int64_t off = bi * pr.out.strides[0] + h * pr.out.strides[1] +
                                i * pr.out.strides[2] + c * pr.out.strides[3];
            check(fabs((double)o[off] - (double)o2[off]) <= tol, "output differs from reference",
                  &pr, st);
          }
          if (pr.p.lse) {
            const int64_t off =
                bi * pr.lse.strides[0] + h * pr.lse.strides[1] + i * pr.lse.strides[2];
            const float a = ((float *)pr.bl)[off], r = ((float *)pr.bl2)[off];
            check((isinf(a) && a == r) || fabs((double)a - (double)r) <= tol * (1 + fabs(r)),
                  "lse differs from reference", &pr, st);
          }
        }
  }
  free(pr.bq), free(pr.bk), free(pr.bv), free(pr.bo), free(pr.bl), free(pr.bo2), free(pr.bl2);
  free(pr.bm);
  return 0;
}

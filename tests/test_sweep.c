/* The sweep: one backend against the reference over every tile edge and every
 * feature. Usage: test_sweep BACKEND [quick] [part=K/N] [tiles]. Exits 77
 * (skipped) when the backend is not available in this build or on this CPU,
 * and with `tiles` when the default context has no tile engine (the AMX
 * tables, or the portable model under FATTN_TILE_ENGINE=model), so that a
 * sweep meant for the tile family never passes without running it.
 *
 * quick caps the lengths at 200 and samples fewer feature and dtype cases;
 * part=K/N (0 <= K < N <= 64) runs only the cases dealt to part K, so N runs
 * with K = 0..N-1 make up exactly the whole sweep: every case is drawn as in a
 * whole run, then dealt to the part with the least work so far (work: the
 * multiply-adds of the case, plus a constant), so the parts take about equal
 * time. That is how the tests under a slow emulator (qemu) keep the full sweep
 * in pieces that fit their timeout. (Dealing by index modulo N put every
 * 1000 × 1000 edge case into two of six parts: 550 s against 80 s.)
 *
 * Five parts, each a deterministic sample of the cross product:
 *  1. edges:    every head_dim × every length (Lq = Lk), GQA 2, no mask;
 *  2. pairs:    every (Lq, Lk) pair, head_dim and causal kind rotating;
 *  3. features: random cases over causal kinds × mask kinds (incl. broadcast
 *               and fully masked rows) × kv_lens × GQA 1/2/4/8 × BHSD/BSHD ×
 *               Dv != D × lse × large logits (±1e4, max moving every block) ×
 *               innermost stride 1 or 2;
 *  4. dtypes:   the features of part 3 with half inputs and outputs: fp32 q
 *               with bf16 or f16 K/V, all-bf16, all-f16, f32 in with half
 *               out, mixed;
 *  5. overlap:  q, k, v and masks whose rows overlap (row stride about half a
 *               row), which the oneDNN baseline copies dense first. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const int64_t DIMS[] = {1, 8, 16, 40, 63, 64, 80, 96, 128, 256};
static const int64_t LENS[] = {1, 2, 3, 15, 16, 17, 31, 63, 64, 65, 100, 127, 128, 129, 1000};
#define NDIMS (int)(sizeof DIMS / sizeof DIMS[0])
#define NLENS (int)(sizeof LENS / sizeof LENS[0])

static fattn_backend parse_backend(const char *s) {
  for (int b = FATTN_BACKEND_AUTO; b <= FATTN_BACKEND_ONEDNN; b++)
    if (strcmp(s, fattn_backend_name((fattn_backend)b)) == 0) return (fattn_backend)b;
  fprintf(stderr, "unknown backend '%s'\n", s);
  exit(2);
}

static int cases, failed;
static double worst;
static fattn_context *ctxs[2];
static long part_k = 0, part_n = 1, drawn;
static double part_work[64];

static void run(const tcase *c0, fattn_backend be) {
  drawn++;
  if (part_n > 1) {
    long least = 0;
    for (long i = 1; i < part_n; i++)
      if (part_work[i] < part_work[least]) least = i;
    part_work[least] +=
        (double)c0->B * (double)c0->H * (double)c0->Lq * (double)c0->Lk * (double)(c0->D + c0->Dv) +
        1e5;
    if (least != part_k) return;
  }
  tcase c1 = *c0, *c = &c1;
  if (be == FATTN_BACKEND_ONEDNN) c1.lse = 0; /* the oneDNN baseline does not compute lse */
  int rc = tcase_check(c, be, ctxs, 2, &worst);
  if (rc == 2) {
    printf("SKIP: %s is not available here: %s\n", fattn_backend_name(be), fattn_last_error());
    exit(77);
  }
  cases++;
  failed += rc != 0;
}

int main(int argc, char **argv) {
  const char *usage = "usage: %s BACKEND [quick] [part=K/N] [tiles]\n";
  if (argc < 2) {
    fprintf(stderr, usage, argv[0]);
    return 2;
  }
  const fattn_backend be = parse_backend(argv[1]);
  int quick = 0;
  for (int i = 2; i < argc; i++) {
    char end;
    if (strcmp(argv[i], "quick") == 0) {
      quick = 1;
    } else if (strcmp(argv[i], "tiles") == 0) {
      fattn_runtime_info info;
      if (fattn_get_runtime_info(NULL, &info) != FATTN_SUCCESS || !info.tile_engine[0]) {
        printf("skipped: no tile engine (%s)\n", info.notes);
        return 77;
      }
      printf("tile engine: %s\n", info.tile_engine);
    } else if (sscanf(argv[i], "part=%ld/%ld%c", &part_k, &part_n, &end) != 2 || part_n < 1 ||
               part_n > 64 || part_k < 0 || part_k >= part_n) {
      fprintf(stderr, usage, argv[0]);
      return 2;
    }
  }
  const int64_t len_cap = quick ? 200 : 1000;
  uint64_t seed = 12345;
  /* Every case runs twice: with the blocks the plan picks (the default
   * context), and with the smallest blocks (one NR-key block at a time, 3 query
   * positions per unit), so that even short sequences cross many key blocks
   * (rescale path, straddling causal blocks) and many work units. */
  fattn_context_options o;
  fattn_context_options_init(&o);
  o.block_keys = 1;
  o.block_queries = 3;
  if (fattn_context_create(&o, &ctxs[1]) != FATTN_SUCCESS) {
    fprintf(stderr, "context: %s\n", fattn_last_error());
    return 1;
  }

  /* 1. edges */
  for (int di = 0; di < NDIMS; di++)
    for (int li = 0; li < NLENS; li++) {
      if (LENS[li] > len_cap) continue;
      tcase c;
      tcase_init(&c, 1, 2, 1, LENS[li], LENS[li], DIMS[di]);
      c.seed = seed++;
      run(&c, be);
    }
  printf("edges:    %d cases\n", cases);

  /* 2. pairs */
  int before = cases;
  for (int qi = 0; qi < NLENS; qi++)
    for (int ki = 0; ki < NLENS; ki++) {
      if (LENS[qi] > len_cap || LENS[ki] > len_cap) continue;
      tcase c;
      tcase_init(&c, 1, 2, 2, LENS[qi], LENS[ki], DIMS[(qi + ki) % NDIMS]);
      c.causal = (fattn_causal)((qi + 2 * ki) % 3);
      c.lse = 1;
      c.seed = seed++;
      run(&c, be);
    }
  printf("pairs:    %d cases\n", cases - before);

  /* 3. features */
  before = cases;
  uint64_t r = 99;
  static const int64_t groups[] = {1, 2, 4, 8};
  const int nfeat = quick ? 120 : 400;
  for (int n = 0; n < nfeat; n++) {
    tcase c;
    int64_t Lq, Lk, D;
    do { /* keep each case under ~3e7 multiply-adds so the sweep stays quick */
      Lq = LENS[rng_int(&r, 0, NLENS - 1)];
      Lk = LENS[rng_int(&r, 0, NLENS - 1)];
      D = DIMS[rng_int(&r, 0, NDIMS - 1)];
    } while (Lq * Lk * D > 30000000 || Lq > len_cap || Lk > len_cap);
    const int64_t G = groups[n % 4], Hkv = rng_int(&r, 1, 2), B = rng_int(&r, 1, 3);
    tcase_init(&c, B, Hkv * G, Hkv, Lq, Lk, D);
    if (Lq * Lk * D * B * Hkv * G > 60000000) c.B = 1, c.H = G, c.Hkv = 1;
    c.causal = (fattn_causal)rng_int(&r, 0, 2);
    c.mask = (tcase_mask)rng_int(&r, 0, 2);
    c.mask_broadcast = c.mask != MASK_NONE && rng_int(&r, 0, 2) == 0;
    c.mask_empty_rows = c.mask != MASK_NONE && rng_int(&r, 0, 3) == 0;
    c.kv_lens = rng_int(&r, 0, 2) == 0;
    c.lse = rng_int(&r, 0, 1);
    c.layout = (tcase_layout)rng_int(&r, 0, 1);
    /* a sixth of the cases: every tensor with innermost stride 2 (the
     * driver's strided Q / out paths, the kernels' strided K / V reads) */
    c.inner = rng_int(&r, 0, 5) == 0 ? 2 : 1;
    if (rng_int(&r, 0, 1)) c.Dv = DIMS[rng_int(&r, 0, NDIMS - 1)];
    const int64_t d = rng_int(&r, 0, 9);
    c.data = d < 7 ? DATA_UNIFORM : d < 8 ? DATA_LARGE : DATA_LARGE_INC;
    c.seed = seed++;
    run(&c, be);
  }
  printf("features: %d cases\n", cases - before);

  /* 4. dtypes (the oneDNN baseline runs F32 only: UNSUPPORTED, not a skip) */
  before = cases;
  static const fattn_dtype combos[][3] = {
      {FATTN_F32, FATTN_BF16, FATTN_F32},   {FATTN_F32, FATTN_F16, FATTN_F32},
      {FATTN_BF16, FATTN_BF16, FATTN_BF16}, {FATTN_F16, FATTN_F16, FATTN_F16},
      {FATTN_F32, FATTN_F32, FATTN_BF16},   {FATTN_BF16, FATTN_F16, FATTN_F32}};
  const int ncombo = (int)(sizeof combos / sizeof combos[0]);
  const int ndt = be == FATTN_BACKEND_ONEDNN ? 0 : quick ? 60 : 180;
  for (int n = 0; n < ndt; n++) {
    tcase c;
    int64_t Lq, Lk, D;
    do {
      Lq = LENS[rng_int(&r, 0, NLENS - 1)];
      Lk = LENS[rng_int(&r, 0, NLENS - 1)];
      D = DIMS[rng_int(&r, 0, NDIMS - 1)];
    } while (Lq * Lk * D > 20000000 || Lq > len_cap || Lk > len_cap);
    const int64_t G = groups[n % 4];
    tcase_init(&c, rng_int(&r, 1, 2), G, 1, Lq, Lk, D);
    c.causal = (fattn_causal)rng_int(&r, 0, 2);
    c.mask = (tcase_mask)rng_int(&r, 0, 2);
    c.kv_lens = rng_int(&r, 0, 2) == 0;
    c.lse = rng_int(&r, 0, 1);
    c.layout = (tcase_layout)rng_int(&r, 0, 1);
    c.inner = rng_int(&r, 0, 5) == 0 ? 2 : 1;
    if (rng_int(&r, 0, 2) == 0) c.Dv = DIMS[rng_int(&r, 0, NDIMS - 1)];
    c.data = rng_int(&r, 0, 4) == 0 ? DATA_LARGE_INC : DATA_UNIFORM;
    c.dq = combos[n % ncombo][0], c.dkv = combos[n % ncombo][1], c.dout = combos[n % ncombo][2];
    c.seed = seed++;
    run(&c, be);
  }
  printf("dtypes:   %d cases\n", cases - before);

  /* 5. overlapping input rows: q, k, v and the mask with a row stride of
   * about half a row (valid: elements may alias in inputs, never in outputs) */
  before = cases;
  for (int n = 0; n < (quick ? 8 : 24); n++) {
    tcase c;
    tcase_init(&c, rng_int(&r, 1, 2), 2, rng_int(&r, 1, 2), LENS[rng_int(&r, 0, 12)],
               LENS[rng_int(&r, 0, 12)], DIMS[rng_int(&r, 2, NDIMS - 1)]);
    c.overlap_rows = 1;
    c.causal = (fattn_causal)rng_int(&r, 0, 2);
    c.mask = (tcase_mask)rng_int(&r, 0, 2);
    c.kv_lens = rng_int(&r, 0, 2) == 0;
    c.inner = rng_int(&r, 0, 3) == 0 ? 2 : 1;
    c.seed = seed++;
    run(&c, be);
  }
  printf("overlap:  %d cases\n", cases - before);
  if (part_n > 1) printf("part %ld/%ld of %ld cases drawn\n", part_k, part_n, drawn);
  printf("%s: %d cases, worst |err|/tol = %.3f\n", fattn_backend_name(be), cases, worst);
  printf("%d passed, %d failed\n", cases - failed, failed);
  fattn_context_destroy(ctxs[1]);
  return failed ? 1 : 0;
}

/* Block sizes and the per-thread workspace layout of the fused driver.
 *
 * A work unit is (batch, kv head, block of query positions). Its rows are the
 * G query heads of the kv head's group times `bq` positions, so each K and V
 * element read serves all heads of a GQA group (decode with G = 8 gets 8 rows,
 * not 1). Keys stream in blocks of `bn`; the unit's working set per key block
 * (K and V blocks, the scores, Qt and Ot of its rows) is sized to half of L2.
 * Defaults when nothing reports cache sizes: topology.c (L2 1 MiB). */
#include "internal.h"

/* Target rows (G·bq) of one unit: each K/V element loaded is used by this
 * many rows (register tiles of 16-32 rows), while the causal waste on the
 * diagonal (about bq/2 keys per row) stays small. */
#define FATTN__TARGET_ROWS 64
#define FATTN__MAX_BN 512
#define FATTN__BN_STEP 16
#define FATTN__MAX_USER_BN 8192
/* Split-KV (flash-decoding): a problem with fewer units than this splits its
 * keys into chunks so that units × chunks reaches it, with chunks of at least
 * max(bn, FATTN__MIN_CHUNK) keys. Both depend on the problem and the caches,
 * never on the thread count, so the results do not either. 64 work items keep
 * up to 32 cores busy with at least two items each. */
#define FATTN__SPLIT_ITEMS 64
#define FATTN__MIN_CHUNK 256

void fattn__seq_work(const fattn__problem *pb, int64_t bm, int64_t chunk, int64_t b, int64_t *nqb,
                     int64_t *nc, int64_t *span) {
  const int64_t lq = fattn__seq_lq(pb, b);
  *nqb = (lq + bm - 1) / bm;
  int64_t sp = 0;
  if (lq > 0 && pb->win_left < 0) { /* ranges start at 0 and grow with the last row */
    sp = fattn__row_limit(pb, b, lq - 1);
  } else {
    for (int64_t qb = 0; qb < *nqb; qb++) {
      const int64_t i0 = qb * bm, last = i0 + bm < lq ? i0 + bm - 1 : lq - 1;
      const int64_t s = fattn__row_limit(pb, b, last) - fattn__row_start(pb, b, i0);
      if (s > sp) sp = s;
    }
  }
  const int64_t lk = fattn__seq_lk(pb, b);
  if (sp > lk) sp = lk;
  if (sp < 0) sp = 0;
  *span = sp;
  *nc = chunk > 0 && sp > chunk ? (sp + chunk - 1) / chunk : 1;
}

int fattn__unit_small(const fattn__problem *pb, const fattn__kernel_table *t, int64_t rows) {
  return rows <= t->small_rows && (pb->k.dtype != FATTN_F32 || pb->k.s[3] <= 1) &&
         (pb->v.dtype != FATTN_F32 || pb->v.s[3] <= 1);
}

fattn_status fattn__make_plan(const fattn__problem *pb, const fattn__kernel_table *t,
                              const fattn__tile_table *tile, int nthreads, int64_t block_keys,
                              int64_t block_queries, const fattn__topology *topo,
                              fattn__plan *plan) {
  const int64_t dd = pb->D + pb->Dv;
  int64_t bq = block_queries > 0 ? block_queries : FATTN__TARGET_ROWS / pb->G;
  if (bq < 1) bq = 1;
  /* One block and a short rest (Lq < 1.5 blocks, e.g. 77 = 64 + 13 rows): the
   * rest would stream all of K and V again for a few rows, so it joins the
   * block. X2 (1×12×12×77×1024×64), AVX2 table, 1 thread, AMD EPYC Zen 3:
   * 26.0 -> 35.7 GFLOP/s (blocks of 39 rows: 31.8). */
  if (block_queries <= 0 && pb->Lq > bq && 2 * pb->Lq < 3 * bq) bq = pb->Lq;
  if (bq > pb->Lq) bq = pb->Lq;
  /* The tile family only where some unit is not a row-kernel one (decode
   * stays on the vector tables). */
  if (tile && fattn__unit_small(pb, t, pb->G * bq)) tile = NULL;
  /* Tile units: whole 16-row tiles, and 16 more, since each head's rows are
   * packed as whole tiles (pack_a pads the last head's rows past G·bq). */
  const int64_t rows =
      tile ? fattn__round_up(pb->G * bq, 16) + 16 : fattn__round_up(pb->G * bq, t->rw);

  /* bn: K and V blocks (read in place) plus the scores, (d + dv + rows)·bn·4,
   * and the unit's Qt and Ot, rows·(d + dv)·4, within half of L2. */
  const int64_t budget = topo->l2 / 2 - rows * dd * 4;
  int64_t bn = budget > 0 ? budget / ((rows + dd) * 4) : FATTN__BN_STEP;
  if (bn > FATTN__MAX_BN) bn = FATTN__MAX_BN;
  bn = bn / FATTN__BN_STEP * FATTN__BN_STEP;
  if (block_keys > 0) /* the user's choice, bounded so the workspace stays small */
    bn = block_keys < FATTN__MAX_USER_BN ? block_keys : FATTN__MAX_USER_BN;
  if (bn < 1) bn = FATTN__BN_STEP;
  if (tile) bn = fattn__round_up(bn, 32); /* P·V's reduction steps: 32 keys */
  if (bn > pb->Lk) bn = pb->Lk;

  plan->bm = bq;
  plan->bn = bn;
  plan->rows_pad = rows;
  /* Each piece is bounded by rows, bn, D and Dv, which validation checked
   * against int64 (B·H·Lq·Lk·(D+Dv)·4 fits); the sum is checked here. */
  /* + row pointers and scales of a key block of a paged K and V (the gather
   * kernels), a key block of K and of V converted to f32 when they are half, and one
   * head's query rows when q is, and its output rows when out is */
  const int64_t pieces[] = {
      rows * pb->D, rows * bn, rows * pb->Dv, rows, rows, rows, rows,
      pb->block_table ? bn * (int64_t)(sizeof(void *) / sizeof(float)) : 0,
      pb->block_table ? bn * (int64_t)(sizeof(void *) / sizeof(float)) : 0,
      pb->block_table ? bn : 0, pb->block_table ? bn : 0, pb->k.dtype != FATTN_F32 ? bn * pb->D : 0,
      pb->v.dtype != FATTN_F32 ? bn * pb->Dv : 0, pb->q.dtype != FATTN_F32 ? bq * pb->D : 0,
      pb->out.dtype != FATTN_F32 ? bq * pb->Dv : 0,
      /* tile units (bf16 pieces as half as many floats): Q packed
       * (rows × ceil32(D)), S (rows × ceil16(bn)), P packed
       * (rows × ceil32(bn)), O (rows × ceil16(Dv)); one head's
       * strided q rows, and a key block of strided K / V, in f32 */
      tile ? rows * fattn__round_up(pb->D, 32) / 2 : 0, tile ? rows * fattn__round_up(bn, 16) : 0,
      tile ? rows * fattn__round_up(bn, 32) / 2 : 0, tile ? rows * fattn__round_up(pb->Dv, 16) : 0,
      tile && pb->q.s[3] > 1 ? bq * pb->D : 0,
      tile && (pb->k.s[3] > 1 || pb->v.s[3] > 1) ? bn * (pb->D > pb->Dv ? pb->D : pb->Dv) : 0};
  int64_t bytes = 0;
  for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
    if (pieces[i] > INT64_MAX / 8 ||
        !fattn__add_ok(bytes, fattn__ws_piece_bytes(pieces[i]), &bytes))
      return fattn__error(FATTN_ERROR_OVERFLOW, "workspace size overflows (D = %lld, Dv = %lld)",
                          (long long)pb->D, (long long)pb->Dv);
  /* Whole pages per thread: each thread first-touches its own pieces, so with
   * pinning they land on its NUMA node, and no two threads share a line. */
  bytes = fattn__round_up(bytes, 4096);
  plan->per_thread_bytes = bytes;

  /* Few units (decode, short query blocks over long keys): split each unit's
   * key range into chunks. The range of a unit is what its rows may attend
   * (all keys, the causal prefix, or the window), so a window of 1024 keys
   * over a long cache splits into chunks of those 1024. */
  int64_t units = 0, maxspan = 0;
  for (int64_t b = 0; b < pb->B; b++) {
    int64_t nqb, nc, span;
    fattn__seq_work(pb, bq, 0, b, &nqb, &nc, &span);
    units += pb->Hkv * nqb; /* <= B·H·Lq: fits */
    if (span > maxspan) maxspan = span;
  }
  const int64_t min_chunk = bn > FATTN__MIN_CHUNK ? bn : FATTN__MIN_CHUNK;
  int64_t chunk = 0, items = units, most_nc = 1;
  if (units > 0 && units < FATTN__SPLIT_ITEMS && maxspan >= 2 * min_chunk) {
    const int64_t want = (FATTN__SPLIT_ITEMS + units - 1) / units, most = maxspan / min_chunk;
    const int64_t n = want < most ? want : most;
    chunk = fattn__round_up((maxspan + n - 1) / n, bn); /* whole key blocks */
    items = 0;
    for (int64_t b = 0; b < pb->B; b++) {
      int64_t nqb, nc, span;
      fattn__seq_work(pb, bq, chunk, b, &nqb, &nc, &span);
      items += pb->Hkv * nqb * nc; /* units < 64, nc <= n: small */
      if (nc > most_nc) most_nc = nc;
    }
  }
  if (items < 1) items = 1; /* every sequence empty: one idle item */
  plan->nchunks = most_nc;
  plan->chunk = chunk;
  plan->items = items;
  /* Partial results, one slot per item of a split unit: O / l (rows × Dv), m and l. */
  plan->slot_bytes = most_nc > 1 ? fattn__ws_piece_bytes(rows * (pb->Dv + 2)) : 0;
  int64_t partial = 0;
  if (!fattn__mul_ok(plan->slot_bytes, plan->items, &partial))
    return fattn__error(FATTN_ERROR_OVERFLOW, "workspace size overflows");
  plan->partial_bytes = partial; /* slot_bytes is a multiple of 64 */
  /* The schedule: sequence order, item offsets and chunks per sequence. */
  int64_t sched;
  if (!fattn__mul_ok(pb->B, 4 * 8, &sched) || !fattn__add_ok(sched, 64 + 8, &sched) ||
      !fattn__add_ok(partial, sched, &partial))
    return fattn__error(FATTN_ERROR_OVERFLOW, "workspace size overflows");

  /* The tile family's packed K and V: every (sequence, kv head, key block),
   * blocks aligned at multiples of bn, then a byte per block. */
  plan->tile = tile;
  plan->nkb = plan->kb_elems = plan->vb_elems = plan->pack_bytes = 0;
  if (tile) {
    plan->nkb = (pb->Lk + bn - 1) / bn;
    plan->kb_elems = fattn__round_up(bn, 16) * fattn__round_up(pb->D, 32);
    plan->vb_elems = fattn__round_up(bn, 32) * fattn__round_up(pb->Dv, 16);
    int64_t blocks, per, pack;
    if (!fattn__mul_ok(pb->B * pb->Hkv, plan->nkb, &blocks) ||
        !fattn__mul_ok(plan->kb_elems + plan->vb_elems, 2, &per) ||
        !fattn__mul_ok(blocks, per, &pack) || !fattn__add_ok(pack, blocks + 64, &pack))
      return fattn__error(FATTN_ERROR_OVERFLOW, "workspace size overflows (packed K / V)");
    plan->pack_bytes = fattn__round_up(pack, 64);
    if (!fattn__add_ok(partial, plan->pack_bytes, &partial))
      return fattn__error(FATTN_ERROR_OVERFLOW, "workspace size overflows (packed K / V)");
  }

  plan->nthreads = nthreads < 1 ? 1 : nthreads;
  if (plan->items < plan->nthreads) plan->nthreads = (int)plan->items;
  int64_t total;
  if (!fattn__mul_ok(bytes, plan->nthreads, &total) || !fattn__add_ok(total, partial, &total))
    return fattn__error(FATTN_ERROR_OVERFLOW, "workspace size overflows");
  plan->total_bytes = total;
  return FATTN_SUCCESS;
}

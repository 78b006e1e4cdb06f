/* Context parallelism over MPI: fattn_sdpa_context_parallel (fattn_mpi.h).
 *
 * A layer above the core: it uses fattn's public API only (fattn_sdpa with
 * lse and diag_shift per piece, fattn_sdpa_workspace_size to validate) and
 * lib/half.h's inline conversions, and is built into its own library, so
 * libfattn never links MPI.
 *
 *   check     one MPI_Allgather of a record per rank (shapes, dtypes, the
 *             parameters, hashes of kv_lens / alibi / sinks, the rank's own
 *             verdict), judged alike on every rank; then each rank validates
 *             its first piece with fattn_sdpa_workspace_size and the verdicts
 *             are agreed (a second, tiny MPI_Allgather).
 *   ring      step s = 0 .. P-1: this rank holds the packed K/V shard of rank
 *             (r - s) mod P; it posts the receive of the next shard from
 *             r - 1 and the send of this one to r + 1, computes its query
 *             pieces against the shard's key pieces (one fattn_sdpa each, f32
 *             partial out + lse), merges each partial into the accumulator
 *             (running max M, sum S, f32 sum of weighted outputs), polling
 *             the transfers between pieces, then waits for them.
 *   finish    the verdicts are agreed once more (a piece may have failed:
 *             out of memory), and only then out = acc / S, lse = M + log S
 *             are written, in out's dtype and strides.
 * KV_SHARDED (decode) computes its one partial and merges all ranks'
 * partials, gathered with one MPI_Allgather, in rank order. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fattn_mpi.h"
#include "half.h"

#define CP_MSG 240
#define CP_CHUNK ((int64_t)1 << 30) /* bytes per MPI message: counts are int */

typedef struct cp_facts { /* one rank's record for the collective check */
  int32_t verdict;        /* its own checks: FATTN_SUCCESS or the status */
  int32_t layout, causal, backend, qdt, kdt, vdt, odt, mask, mask_dt, lse, kvl, alibi, sinks;
  int64_t B, H, Hkv, D, Dv, Lq, Lk, mask_d0, mask_d1, mask_d3, wl, wr, shift;
  float scale, softcap;
  uint64_t h_kvl, h_alibi, h_sinks;
  char msg[CP_MSG];
} cp_facts;

typedef struct cp_verdict {
  int32_t status;
  char msg[CP_MSG];
} cp_verdict;

static uint64_t fnv(const void *p, size_t n) {
  const unsigned char *c = p;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ c[i]) * 1099511628211ull;
  return h;
}

static int es_of(fattn_dtype t) {
  return t == FATTN_F32 ? 4 : t == FATTN_F16 || t == FATTN_BF16 ? 2 : 1;
}

static fattn_status verdict_set(cp_verdict *v, fattn_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static fattn_status verdict_set(cp_verdict *v, fattn_status s, const char *fmt, ...) {
  if (v->status != FATTN_SUCCESS) return (fattn_status)v->status; /* the first one counts */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->msg, sizeof v->msg, fmt, ap);
  va_end(ap);
  v->status = s;
  return s;
}

/* This rank's own checks, before anything is exchanged: what needs no other
 * rank's shard. Never reads through a NULL. */
static void local_facts(fattn_cp_layout layout, const fattn_tensor *q, const fattn_tensor *k,
                        const fattn_tensor *v, const fattn_tensor *out, const fattn_sdpa_params *p,
                        cp_facts *f) {
  memset(f, 0, sizeof *f);
  cp_verdict vd = {0, ""};
  f->layout = (int32_t)layout;
  if ((unsigned)layout > (unsigned)FATTN_CP_KV_SHARDED)
    verdict_set(&vd, FATTN_ERROR_INVALID_ARGUMENT, "layout has invalid value %d", (int)layout);
  if (!q || !k || !v || !out || !p) {
    verdict_set(&vd, FATTN_ERROR_INVALID_ARGUMENT, "q, k, v, out and params must not be NULL");
  } else {
    f->B = q->dims[0], f->H = q->dims[1], f->Lq = q->dims[2], f->D = q->dims[3];
    f->Hkv = k->dims[1], f->Lk = k->dims[2], f->Dv = v->dims[3];
    f->qdt = q->dtype, f->kdt = k->dtype, f->vdt = v->dtype, f->odt = out->dtype;
    f->causal = p->causal, f->backend = p->backend;
    f->scale = p->scale, f->softcap = p->softcap;
    f->wl = p->window_left, f->wr = p->window_right, f->shift = p->diag_shift;
    f->lse = p->lse != NULL, f->kvl = p->kv_lens != NULL;
    f->alibi = p->alibi_slopes != NULL, f->sinks = p->sinks != NULL;
    for (int d = 0; d < 4; d++)
      if (q->dims[d] < 1 || k->dims[d] < 1 || v->dims[d] < 1)
        verdict_set(&vd, FATTN_ERROR_INVALID_ARGUMENT, "q, k and v need dims >= 1");
    if (p->cu_seqlens_q || p->cu_seqlens_k || p->seqused_k || p->block_table)
      verdict_set(&vd, FATTN_ERROR_UNSUPPORTED,
                  "varlen and paged inputs are not available with context parallelism");
    for (int t = 0; t < 2; t++) {
      const fattn_dtype dt = t ? v->dtype : k->dtype;
      if (dt != FATTN_F32 && dt != FATTN_F16 && dt != FATTN_BF16)
        verdict_set(&vd, FATTN_ERROR_UNSUPPORTED,
                    "%s: only F32, F16 and BF16 K/V travel the ring (got dtype %d)", t ? "v" : "k",
                    (int)dt);
    }
    if (p->backend == FATTN_BACKEND_ONEDNN)
      verdict_set(&vd, FATTN_ERROR_UNSUPPORTED,
                  "the oneDNN baseline has no diag_shift: not available here");
    if (p->attn_mask) {
      const fattn_tensor *m = p->attn_mask;
      f->mask = 1, f->mask_dt = m->dtype;
      f->mask_d0 = m->dims[0], f->mask_d1 = m->dims[1], f->mask_d3 = m->dims[3];
      if (m->dims[2] != q->dims[2])
        verdict_set(&vd, FATTN_ERROR_SHAPE_MISMATCH,
                    "attn_mask->dims[2] = %lld must be this rank's queries (%lld)",
                    (long long)m->dims[2], (long long)q->dims[2]);
    }
    if (q->dims[0] >= 1 && q->dims[1] >= 1 && q->dims[0] < (1 << 24) && q->dims[1] < (1 << 24)) {
      if (p->kv_lens) f->h_kvl = fnv(p->kv_lens, (size_t)q->dims[0] * sizeof(int32_t));
      if (p->alibi_slopes) f->h_alibi = fnv(p->alibi_slopes, (size_t)q->dims[1] * sizeof(float));
      if (p->sinks) f->h_sinks = fnv(p->sinks, (size_t)q->dims[1] * sizeof(float));
    }
  }
  f->verdict = vd.status;
  memcpy(f->msg, vd.msg, sizeof f->msg);
}

/* Piece `piece` (0 or 1) of rank r under layout: [*start, *start + *len). */
static void piece_of(fattn_cp_layout layout, const int64_t *lens, int P, int r, int piece,
                     int64_t total, int64_t *start, int64_t *len) {
  if (layout == FATTN_CP_ZIGZAG) {
    const int64_t c = piece ? 2 * (int64_t)P - 1 - r : r, n = 2 * (int64_t)P;
    *start = c * total / n;
    *len = (c + 1) * total / n - *start;
    return;
  }
  *start = 0;
  for (int x = 0; x < r; x++)
    *start += lens[x];
  *len = piece ? 0 : lens[r];
}

fattn_status fattn_cp_shard(fattn_cp_layout layout, int64_t total, int nranks, int rank,
                            int64_t start[2], int64_t len[2]) {
  char m[CP_MSG];
  if (!start || !len || nranks < 1 || rank < 0 || rank >= nranks ||
      (unsigned)layout > (unsigned)FATTN_CP_KV_SHARDED ||
      total < (layout == FATTN_CP_ZIGZAG ? 2 * (int64_t)nranks : nranks) ||
      total > ((int64_t)1 << 40)) {
    snprintf(m, sizeof m,
             "fattn_cp_shard: layout %d, total %lld, rank %d of %d: need rank in [0, nranks), "
             "total in [%s, 2^40], non-NULL start and len",
             (int)layout, (long long)total, rank, nranks,
             layout == FATTN_CP_ZIGZAG ? "2·nranks" : "nranks");
    return fattn_set_last_error(FATTN_ERROR_INVALID_ARGUMENT, m);
  }
  for (int piece = 0; piece < 2; piece++) {
    if (layout == FATTN_CP_ZIGZAG) {
      piece_of(layout, NULL, nranks, rank, piece, total, &start[piece], &len[piece]);
    } else if (piece == 0) {
      start[0] = (int64_t)rank * total / nranks;
      len[0] = (int64_t)(rank + 1) * total / nranks - start[0];
    } else {
      start[1] = start[0] + len[0], len[1] = 0;
    }
  }
  return FATTN_SUCCESS;
}

/* The verdict every rank reaches from the records: the first rank (in rank
 * order) that failed its own checks, else the first disagreement with rank 0,
 * else the lengths against the layout. Sets *LqT / *LkT. */
static void judge(const cp_facts *f, int P, int64_t *LqT, int64_t *LkT, cp_verdict *vd) {
  for (int r = 0; r < P; r++)
    if (f[r].verdict != FATTN_SUCCESS) {
      verdict_set(vd, (fattn_status)f[r].verdict, "rank %d: %.200s", r, f[r].msg);
      return;
    }
  const cp_facts *a = &f[0];
  for (int r = 1; r < P; r++) {
    const cp_facts *b = &f[r];
#define CP_SAME(field, st, what)                                                                   \
  if (a->field != b->field) {                                                                      \
    verdict_set(vd, st, "rank %d passes %s = %lld, rank 0 %lld: every rank must pass the same", r, \
                what, (long long)b->field, (long long)a->field);                                   \
    return;                                                                                        \
  }
    CP_SAME(layout, FATTN_ERROR_INVALID_ARGUMENT, "layout");
    CP_SAME(B, FATTN_ERROR_SHAPE_MISMATCH, "batch (q->dims[0])");
    CP_SAME(H, FATTN_ERROR_SHAPE_MISMATCH, "heads (q->dims[1])");
    CP_SAME(Hkv, FATTN_ERROR_SHAPE_MISMATCH, "kv heads (k->dims[1])");
    CP_SAME(D, FATTN_ERROR_SHAPE_MISMATCH, "head_dim (q->dims[3])");
    CP_SAME(Dv, FATTN_ERROR_SHAPE_MISMATCH, "v head_dim (v->dims[3])");
    CP_SAME(qdt, FATTN_ERROR_INVALID_ARGUMENT, "q->dtype");
    CP_SAME(kdt, FATTN_ERROR_INVALID_ARGUMENT, "k->dtype");
    CP_SAME(vdt, FATTN_ERROR_INVALID_ARGUMENT, "v->dtype");
    CP_SAME(odt, FATTN_ERROR_INVALID_ARGUMENT, "out->dtype");
    CP_SAME(causal, FATTN_ERROR_INVALID_ARGUMENT, "params->causal");
    CP_SAME(backend, FATTN_ERROR_INVALID_ARGUMENT, "params->backend");
    CP_SAME(wl, FATTN_ERROR_INVALID_ARGUMENT, "params->window_left");
    CP_SAME(wr, FATTN_ERROR_INVALID_ARGUMENT, "params->window_right");
    CP_SAME(shift, FATTN_ERROR_INVALID_ARGUMENT, "params->diag_shift");
    CP_SAME(lse, FATTN_ERROR_INVALID_ARGUMENT, "an lse (0/1)");
    CP_SAME(kvl, FATTN_ERROR_INVALID_ARGUMENT, "kv_lens (0/1)");
    CP_SAME(h_kvl, FATTN_ERROR_INVALID_ARGUMENT, "kv_lens (hash)");
    CP_SAME(alibi, FATTN_ERROR_INVALID_ARGUMENT, "alibi_slopes (0/1)");
    CP_SAME(h_alibi, FATTN_ERROR_INVALID_ARGUMENT, "alibi_slopes (hash)");
    CP_SAME(sinks, FATTN_ERROR_INVALID_ARGUMENT, "sinks (0/1)");
    CP_SAME(h_sinks, FATTN_ERROR_INVALID_ARGUMENT, "sinks (hash)");
    CP_SAME(mask, FATTN_ERROR_INVALID_ARGUMENT, "an attn_mask (0/1)");
    CP_SAME(mask_dt, FATTN_ERROR_INVALID_ARGUMENT, "attn_mask->dtype");
    CP_SAME(mask_d0, FATTN_ERROR_SHAPE_MISMATCH, "attn_mask->dims[0]");
    CP_SAME(mask_d1, FATTN_ERROR_SHAPE_MISMATCH, "attn_mask->dims[1]");
    CP_SAME(mask_d3, FATTN_ERROR_SHAPE_MISMATCH, "attn_mask->dims[3]");
    if (a->layout == FATTN_CP_KV_SHARDED) CP_SAME(Lq, FATTN_ERROR_SHAPE_MISMATCH, "queries");
#undef CP_SAME
    if (memcmp(&a->scale, &b->scale, sizeof a->scale) ||
        memcmp(&a->softcap, &b->softcap, sizeof a->softcap)) {
      verdict_set(vd, FATTN_ERROR_INVALID_ARGUMENT,
                  "rank %d passes scale %g, softcap %g; rank 0 %g, %g: every rank must pass the "
                  "same",
                  r, (double)b->scale, (double)b->softcap, (double)a->scale, (double)a->softcap);
      return;
    }
  }
  int64_t lq = 0, lk = 0;
  for (int r = 0; r < P; r++)
    lq += f[r].Lq, lk += f[r].Lk;
  if (a->layout == FATTN_CP_KV_SHARDED) lq = a->Lq;
  *LqT = lq, *LkT = lk;
  if (a->layout == FATTN_CP_ZIGZAG) {
    if (lq < 2 * (int64_t)P || lk < 2 * (int64_t)P) {
      verdict_set(vd, FATTN_ERROR_SHAPE_MISMATCH,
                  "the zigzag layout needs >= 2·P = %d queries and keys (got %lld and %lld)", 2 * P,
                  (long long)lq, (long long)lk);
      return;
    }
    /* which rank is wrong cannot be told (its length moved the sum):
     * every rank that does not fit is named */
    for (int t = 0; t < 2; t++) {
      const int64_t tot = t ? lk : lq;
      char list[CP_MSG] = "";
      int n = 0, bad = 0;
      for (int r = 0; r < P; r++) {
        const int64_t have = t ? f[r].Lk : f[r].Lq;
        int64_t s0, n0, s1, n1;
        piece_of(FATTN_CP_ZIGZAG, NULL, P, r, 0, tot, &s0, &n0);
        piece_of(FATTN_CP_ZIGZAG, NULL, P, r, 1, tot, &s1, &n1);
        if (have != n0 + n1 && n >= 0 && (size_t)n < sizeof list) {
          n += snprintf(list + n, sizeof list - (size_t)n, "%srank %d holds %lld (wants %lld)",
                        bad ? ", " : "", r, (long long)have, (long long)(n0 + n1));
          bad = 1;
        }
      }
      if (bad) {
        verdict_set(vd, FATTN_ERROR_SHAPE_MISMATCH,
                    "%s per rank do not fit the zigzag layout of their sum %lld over %d ranks "
                    "(fattn_cp_shard): %.150s",
                    t ? "keys" : "queries", (long long)tot, P, list);
        return;
      }
    }
  }
  if (a->mask && a->mask_d3 != lk) {
    verdict_set(vd, FATTN_ERROR_SHAPE_MISMATCH,
                "attn_mask->dims[3] = %lld must be every key of every rank (%lld)",
                (long long)a->mask_d3, (long long)lk);
    return;
  }
  if (lk > ((int64_t)1 << 38) || lq > ((int64_t)1 << 38))
    verdict_set(vd, FATTN_ERROR_OVERFLOW, "%lld queries, %lld keys in all: beyond 2^38",
                (long long)lq, (long long)lk);
}

/* Every rank's verdict to all; the first failure in rank order wins. */
static int agree(MPI_Comm comm, int P, cp_verdict *mine, cp_verdict *all) {
  if (MPI_Allgather(mine, (int)sizeof *mine, MPI_BYTE, all, (int)sizeof *mine, MPI_BYTE, comm) !=
      MPI_SUCCESS)
    return -1;
  for (int r = 0; r < P; r++)
    if (all[r].status != FATTN_SUCCESS) {
      cp_verdict w = {all[r].status, ""};
      snprintf(w.msg, sizeof w.msg, "rank %d: %.200s", r, all[r].msg);
      *mine = w;
      return 1;
    }
  return 0;
}

static int mul_ok(int64_t a, int64_t b, int64_t *r) {
  if (a < 0 || b < 0 || (a != 0 && b > INT64_MAX / a)) return 0;
  *r = a * b;
  return 1;
}

typedef struct cp_run {
  MPI_Comm comm;
  int P, r;
  fattn_cp_layout layout;
  const fattn_tensor *q, *k, *v, *out;
  const fattn_sdpa_params *p;
  fattn_context *ctx;
  int64_t B, H, Hkv, D, Dv, Lq, LqT, LkT, Dg; /* Dg: the global diagonal of query i is i + Dg */
  int64_t *lq, *lk;                           /* every rank's lengths */
  int kes, ves;
  float *acc, *M, *S; /* [B, H, Lq, Dv], [B, H, Lq] */
  float *po, *pl;     /* one piece's partial out and lse */
  int32_t *kvl;       /* one piece's kv_lens */
  int max_kvl;
  int nthreads; /* the context's, for the merge */
  cp_verdict vd;
  fattn_cp_stats st;
} cp_run;

/* Bytes of rank src's packed shard: K [B, Hkv, Lk_src, D] then V. */
static int64_t shard_bytes(const cp_run *c, int src) {
  return c->B * c->Hkv * c->lk[src] * (c->D * c->kes + c->Dv * c->ves);
}

static void pack_one(const fattn_tensor *t, int es, int64_t L, char *dst) {
  const int64_t d = t->dims[3];
  for (int64_t b = 0; b < t->dims[0]; b++)
    for (int64_t h = 0; h < t->dims[1]; h++)
      for (int64_t j = 0; j < L; j++) {
        const char *src = (const char *)t->data +
                          (b * t->strides[0] + h * t->strides[1] + j * t->strides[2]) * es;
        char *o = dst + (((b * t->dims[1] + h) * L + j) * d) * es;
        if (t->strides[3] == 1) {
          memcpy(o, src, (size_t)(d * es));
        } else {
          for (int64_t x = 0; x < d; x++)
            memcpy(o + x * es, src + x * t->strides[3] * es, (size_t)es);
        }
      }
}

/* Whether keys [ks, ks + kl) are hidden from every query of [qs, qs + ql)
 * by the causal mask, the window or kv_lens (for every sequence). */
static int hidden(const cp_run *c, int64_t qs, int64_t ql, int64_t ks, int64_t kl) {
  const fattn_sdpa_params *p = c->p;
  const int64_t qe = qs + ql - 1, ke = ks + kl - 1;
  if (p->causal != FATTN_CAUSAL_NONE && ks > qe + c->Dg) return 1;
  if (p->window_right >= 0 && ks > qe + c->Dg + p->window_right) return 1;
  if (p->window_left >= 0 && ke < qs + c->Dg - p->window_left) return 1;
  if (p->kv_lens && ks >= c->max_kvl) return 1;
  return 0;
}

/* One fattn_sdpa: local query rows [lqo, lqo + ql) (global positions from
 * qs) against keys [kjo, kjo + kl) of a shard's K / V (global positions
 * from ks); the partial lands in po / pl. */
/* Rows [j0, j0 + n) of a [., ., L, .] view. */
static fattn_tensor rows_of(const fattn_tensor *t, int64_t j0, int64_t n) {
  fattn_tensor r = *t;
  r.data = (char *)t->data + j0 * t->strides[2] * es_of(t->dtype);
  r.dims[2] = n;
  return r;
}

/* The K and V views of rank src's shard: packed in a ring buffer (K
 * [B, Hkv, Ls, D] then V), or the caller's own tensors. */
static void shard_views(const cp_run *c, int src, const char *kv, fattn_tensor *tk,
                        fattn_tensor *tv) {
  if (!kv) {
    *tk = *c->k, *tv = *c->v;
    return;
  }
  const int64_t Ls = c->lk[src], kb = c->B * c->Hkv * Ls * c->D * c->kes;
  *tk = (fattn_tensor){
      (void *)kv, c->k->dtype, {c->B, c->Hkv, Ls, c->D}, {c->Hkv * Ls * c->D, Ls * c->D, c->D, 1}};
  *tv = (fattn_tensor){(void *)(kv + kb),
                       c->v->dtype,
                       {c->B, c->Hkv, Ls, c->Dv},
                       {c->Hkv * Ls * c->Dv, Ls * c->Dv, c->Dv, 1}};
}

static fattn_status piece(cp_run *c, int64_t lqo, int64_t qs, int64_t ql, const fattn_tensor *K,
                          const fattn_tensor *V, int64_t kjo, int64_t ks, int64_t kl) {
  const fattn_sdpa_params *p = c->p;
  fattn_tensor tq = rows_of(c->q, lqo, ql), tk = rows_of(K, kjo, kl), tv = rows_of(V, kjo, kl);
  fattn_tensor to = fattn_tensor_contiguous(c->po, FATTN_F32, c->B, c->H, ql, c->Dv);
  fattn_tensor tl = fattn_tensor_contiguous(c->pl, FATTN_F32, c->B, c->H, ql, 1);
  fattn_tensor tm;
  fattn_sdpa_params lp = *p;
  lp.lse = &tl;
  lp.sinks = NULL; /* joined once, in the merge */
  if (p->causal != FATTN_CAUSAL_NONE) {
    lp.causal = FATTN_CAUSAL_TOP_LEFT;
    lp.diag_shift = qs - ks + c->Dg;
  } else { /* the window's and ALiBi's diagonal: bottom-right in the piece */
    lp.diag_shift = qs - ks + c->Dg - (kl - ql);
  }
  if (p->attn_mask) {
    tm = *p->attn_mask;
    const int mes = es_of(tm.dtype);
    tm.data = (char *)tm.data + (lqo * tm.strides[2] + ks * tm.strides[3]) * mes;
    tm.dims[2] = ql, tm.dims[3] = kl;
    lp.attn_mask = &tm;
  }
  if (p->kv_lens) {
    for (int64_t b = 0; b < c->B; b++) {
      const int64_t n = (int64_t)p->kv_lens[b] - ks;
      c->kvl[b] = (int32_t)(n < 0 ? 0 : n > kl ? kl : n);
    }
    lp.kv_lens = c->kvl;
  }
  return fattn_sdpa(c->ctx, &tq, &tk, &tv, &to, &lp);
}

/* Merges the partial of local rows [lqo, lqo + ql) into the accumulator
 * (log-sum-exp rule, natural units). */
static void merge(cp_run *c, const float *po, const float *pl, int64_t lqo, int64_t ql) {
  const double t0 = MPI_Wtime();
  const int64_t Dv = c->Dv, nbh = c->B * c->H;
  /* rows are independent: any thread count gives the same bits */
#pragma omp parallel for num_threads(c->nthreads) schedule(static) if (nbh * ql * Dv >= 65536)
  for (int64_t bh = 0; bh < nbh; bh++)
    for (int64_t i = 0; i < ql; i++) {
      const float l = pl[bh * ql + i];
      if (l == -INFINITY) continue; /* no key of this piece: nothing to add */
      const int64_t row = bh * c->Lq + lqo + i;
      const float m0 = c->M[row], m1 = l > m0 ? l : m0;
      /* a NaN lse gives NaN weights, and the row stays NaN */
      const float a = m0 == -INFINITY ? 0.0f : expf(m0 - m1), w = expf(l - m1);
      float *o = c->acc + row * Dv;
      const float *x = po + (bh * ql + i) * Dv;
      for (int64_t t = 0; t < Dv; t++)
        o[t] = o[t] * a + x[t] * w;
      c->S[row] = c->S[row] * a + w;
      c->M[row] = m1;
    }
  c->st.merge_seconds += MPI_Wtime() - t0;
}

/* Every row empty, or holding its sink (a logit with no value). */
static void acc_init(cp_run *c, int with_sinks) {
  const float *sk = with_sinks ? c->p->sinks : NULL;
  const int64_t nbh = c->B * c->H;
  /* the context's threads touch the pages they later merge into */
#pragma omp parallel for num_threads(c->nthreads) schedule(static) if (nbh * c->Lq * c->Dv >= 65536)
  for (int64_t bh = 0; bh < nbh; bh++)
    for (int64_t i = 0; i < c->Lq; i++) {
      const int64_t row = bh * c->Lq + i;
      c->M[row] = sk ? sk[bh % c->H] : -INFINITY;
      c->S[row] = sk ? 1.0f : 0.0f;
      for (int64_t t = 0; t < c->Dv; t++)
        c->acc[row * c->Dv + t] = 0.0f;
    }
}

/* ---- buffers cached on the communicator (an MPI attribute), freed with it
 * or by fattn_cp_release. Calls on one communicator are ordered (MPI's rule
 * for collectives), so its cache needs no lock. ---- */
enum { CB_KV0, CB_KV1, CB_ACC, CB_M, CB_S, CB_PO, CB_PL, CB_KVL, CB_RQ, CB_GATHER, CB_N };
typedef struct cp_cache {
  void *p[CB_N];
  size_t n[CB_N];
} cp_cache;

static int cp_keyval = MPI_KEYVAL_INVALID;
static pthread_once_t cp_once = PTHREAD_ONCE_INIT;

static int cache_delete(MPI_Comm comm, int keyval, void *attr, void *extra) {
  (void)comm, (void)keyval, (void)extra;
  cp_cache *cc = attr;
  for (int x = 0; x < CB_N; x++)
    free(cc->p[x]);
  free(cc);
  return MPI_SUCCESS;
}

static void make_keyval(void) {
  if (MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, cache_delete, &cp_keyval, NULL) != MPI_SUCCESS)
    cp_keyval = MPI_KEYVAL_INVALID;
}

/* comm's cache, made on first use; NULL when MPI cannot keep one. */
static cp_cache *cache_of(MPI_Comm comm) {
  pthread_once(&cp_once, make_keyval);
  if (cp_keyval == MPI_KEYVAL_INVALID) return NULL;
  void *a = NULL;
  int flag = 0;
  if (MPI_Comm_get_attr(comm, cp_keyval, &a, &flag) == MPI_SUCCESS && flag) return a;
  cp_cache *cc = calloc(1, sizeof *cc);
  if (cc && MPI_Comm_set_attr(comm, cp_keyval, cc) != MPI_SUCCESS) free(cc), cc = NULL;
  return cc;
}

/* At least `bytes` in slot x of the cache (grown when short), or without a
 * cache a buffer of this call (own[x], freed at its end). */
static void *cache_get(cp_cache *cc, int x, size_t bytes, void **own) {
  if (bytes == 0) bytes = 1;
  if (!cc) return own[x] = malloc(bytes);
  if (cc->n[x] < bytes) {
    free(cc->p[x]);
    cc->p[x] = malloc(bytes);
    cc->n[x] = cc->p[x] ? bytes : 0;
  }
  return cc->p[x];
}

void fattn_cp_release(MPI_Comm comm) {
  if (comm == MPI_COMM_NULL || cp_keyval == MPI_KEYVAL_INVALID) return;
  void *a = NULL;
  int flag = 0;
  if (MPI_Comm_get_attr(comm, cp_keyval, &a, &flag) == MPI_SUCCESS && flag)
    MPI_Comm_delete_attr(comm, cp_keyval);
}

static void poll(MPI_Request *rq, int n) {
  int done;
  if (n > 0) MPI_Testall(n, rq, &done, MPI_STATUSES_IGNORE);
}

/* This rank's query pieces against the key pieces of rank src's shard. */
static void compute_shard(cp_run *c, int src, const char *kv, MPI_Request *rq, int nrq) {
  const double t0 = MPI_Wtime();
  fattn_tensor K, V;
  shard_views(c, src, kv, &K, &V);
  for (int qp = 0; qp < 2; qp++) {
    int64_t qs, ql, lqo = 0;
    if (c->layout == FATTN_CP_KV_SHARDED) {
      if (qp) break;
      qs = 0, ql = c->Lq;
    } else {
      piece_of(c->layout, c->lq, c->P, c->r, qp, c->LqT, &qs, &ql);
      if (qp) piece_of(c->layout, c->lq, c->P, c->r, 0, c->LqT, &(int64_t){0}, &lqo);
    }
    if (ql == 0) continue;
    int64_t kjo = 0;
    for (int kp = 0; kp < 2; kp++) {
      int64_t ks, kl;
      piece_of(c->layout == FATTN_CP_KV_SHARDED ? FATTN_CP_CONTIGUOUS : c->layout, c->lk, c->P, src,
               kp, c->LkT, &ks, &kl);
      if (kl == 0) continue;
      if (hidden(c, qs, ql, ks, kl)) {
        c->st.pieces_skipped++;
      } else if (c->vd.status == FATTN_SUCCESS) {
        const fattn_status s = piece(c, lqo, qs, ql, &K, &V, kjo, ks, kl);
        c->st.pieces_computed++;
        if (s != FATTN_SUCCESS)
          verdict_set(&c->vd, s, "fattn_sdpa on the keys of rank %d: %s", src, fattn_last_error());
        else
          merge(c, c->po, c->pl, lqo, ql);
      }
      kjo += kl;
      poll(rq, nrq);
    }
  }
  c->st.compute_seconds += MPI_Wtime() - t0;
}

/* Posts the transfer of `bytes` in messages of at most CP_CHUNK. */
static int post(int send, char *buf, int64_t bytes, int peer, MPI_Comm comm, MPI_Request *rq) {
  int n = 0;
  for (int64_t o = 0; o < bytes; o += CP_CHUNK, n++) {
    const int cnt = (int)(bytes - o < CP_CHUNK ? bytes - o : CP_CHUNK);
    if (send)
      MPI_Isend(buf + o, cnt, MPI_BYTE, peer, 7100 + n, comm, &rq[n]);
    else
      MPI_Irecv(buf + o, cnt, MPI_BYTE, peer, 7100 + n, comm, &rq[n]);
  }
  return n;
}

static void write_out(cp_run *c) {
  const fattn_tensor *o = c->out;
  const fattn_tensor *ls = c->p->lse;
  const int oes = es_of(o->dtype);
  const int64_t nbh = c->B * c->H;
#pragma omp parallel for num_threads(c->nthreads) schedule(static) if (nbh * c->Lq * c->Dv >= 65536)
  for (int64_t bh = 0; bh < nbh; bh++)
    for (int64_t i = 0; i < c->Lq; i++) {
      const int64_t b = bh / c->H, h = bh % c->H;
      {
        const int64_t row = bh * c->Lq + i;
        const float s = c->S[row], inv = s > 0.0f ? 1.0f / s : 0.0f;
        char *dst =
            (char *)o->data + (b * o->strides[0] + h * o->strides[1] + i * o->strides[2]) * oes;
        for (int64_t t = 0; t < c->Dv; t++) {
          /* s = 0: no key at all (zeros, as fattn_sdpa); s NaN: NaN */
          const float x = s == 0.0f ? 0.0f : c->acc[row * c->Dv + t] * inv;
          char *e = dst + t * o->strides[3] * oes;
          if (o->dtype == FATTN_F32) {
            memcpy(e, &x, 4);
          } else {
            const uint16_t hv =
                o->dtype == FATTN_BF16 ? fattn__f32_to_bf16(x) : fattn__f32_to_f16(x);
            memcpy(e, &hv, 2);
          }
        }
        if (ls) {
          float *l =
              (float *)ls->data + b * ls->strides[0] + h * ls->strides[1] + i * ls->strides[2];
          *l = s == 0.0f ? -INFINITY : c->M[row] + logf(s);
        }
      }
    }
}

static fattn_status fail(cp_verdict *vd) {
  return fattn_set_last_error((fattn_status)vd->status, vd->msg);
}

fattn_status fattn_sdpa_context_parallel(fattn_context *ctx, MPI_Comm comm, fattn_cp_layout layout,
                                         const fattn_tensor *q, const fattn_tensor *k,
                                         const fattn_tensor *v, const fattn_tensor *out,
                                         const fattn_sdpa_params *params, fattn_cp_stats *stats) {
  const double t_start = MPI_Wtime();
  int P = 0, r = 0, inter = 0;
  if (comm == MPI_COMM_NULL)
    return fattn_set_last_error(FATTN_ERROR_INVALID_ARGUMENT, "comm is MPI_COMM_NULL");
  if (MPI_Comm_test_inter(comm, &inter) != MPI_SUCCESS || inter)
    return fattn_set_last_error(FATTN_ERROR_INVALID_ARGUMENT, "comm must be an intra-communicator");
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &r);

  cp_run c;
  memset(&c, 0, sizeof c);
  c.comm = comm, c.P = P, c.r = r, c.layout = layout, c.ctx = ctx;
  c.q = q, c.k = k, c.v = v, c.out = out, c.p = params;
  c.st.steps = layout == FATTN_CP_KV_SHARDED ? 1 : P;

  /* ---- check: one record per rank, judged alike everywhere ---- */
  cp_facts *facts = calloc((size_t)P, sizeof *facts);
  cp_verdict *all = calloc((size_t)P, sizeof *all);
  c.lq = calloc((size_t)P, sizeof *c.lq);
  c.lk = calloc((size_t)P, sizeof *c.lk);
  cp_facts mine;
  local_facts(layout, q, k, v, out, params, &mine);
  fattn_status ret = FATTN_SUCCESS;
  /* records for every rank: a rank that could not allocate them tells the
   * others first (one integer), so no rank waits in a gather it cannot join */
  int nomem = !facts || !all || !c.lq || !c.lk, any_nomem = 0;
  if (MPI_Allreduce(&nomem, &any_nomem, 1, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS) {
    ret = fattn_set_last_error(FATTN_ERROR_BACKEND, "MPI_Allreduce failed (the check)");
    goto done;
  }
  if (any_nomem) {
    ret = fattn_set_last_error(FATTN_ERROR_OUT_OF_MEMORY,
                               "a rank could not allocate the check's records");
    goto done;
  }
  if (MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, facts, (int)sizeof mine, MPI_BYTE, comm) !=
      MPI_SUCCESS) {
    ret = fattn_set_last_error(FATTN_ERROR_BACKEND, "MPI_Allgather failed (the check)");
    goto done;
  }
  judge(facts, P, &c.LqT, &c.LkT, &c.vd);
  if (c.vd.status != FATTN_SUCCESS) {
    ret = fail(&c.vd);
    goto done;
  }
  /* ---- one rank: fattn_sdpa itself (bit for bit) ---- */
  if (P == 1) {
    ret = fattn_sdpa(ctx, q, k, v, out, params);
    c.st.pieces_computed = 1;
    c.st.compute_seconds = MPI_Wtime() - t_start;
    goto done;
  }
  for (int x = 0; x < P; x++)
    c.lq[x] = facts[x].Lq, c.lk[x] = facts[x].Lk;
  c.B = mine.B, c.H = mine.H, c.Hkv = mine.Hkv, c.D = mine.D, c.Dv = mine.Dv, c.Lq = mine.Lq;
  c.kes = es_of(k->dtype), c.ves = es_of(v->dtype);
  {
    fattn_runtime_info info;
    c.nthreads = fattn_get_runtime_info(ctx, &info) == FATTN_SUCCESS && info.num_threads > 0
                     ? info.num_threads
                     : 1;
  }
  c.Dg = params->diag_shift + (params->causal == FATTN_CAUSAL_TOP_LEFT ? 0 : c.LkT - c.LqT);

  /* ---- this rank's buffers and its own first piece, validated; agreed ---- */
  int64_t maxlk = 0, maxq = 0, t;
  for (int x = 0; x < P; x++)
    if (c.lk[x] > maxlk) maxlk = c.lk[x];
  for (int qp = 0; qp < 2; qp++) {
    int64_t s, n;
    if (layout == FATTN_CP_KV_SHARDED) {
      s = 0, n = qp ? 0 : c.Lq;
    } else {
      piece_of(layout, c.lq, P, r, qp, c.LqT, &s, &n);
    }
    if (n > maxq) maxq = n;
  }
  int64_t rows, kvbytes = 0;
  char *kvb[2] = {NULL, NULL};
  float *gather = NULL;
  MPI_Request *rq = NULL;
  cp_cache *cache = NULL;
  void *own[CB_N] = {NULL}; /* buffers of this call alone (no cache) */
  int nrq_max = 2 * (int)(((int64_t)1 << 36) / CP_CHUNK) + 2;
  if (!mul_ok(c.B * c.H, c.Lq, &rows) || !mul_ok(rows, c.Dv, &t) ||
      !mul_ok(c.B * c.Hkv, maxlk, &t) || !mul_ok(t, c.D * c.kes + c.Dv * c.ves, &kvbytes) ||
      (layout != FATTN_CP_KV_SHARDED && kvbytes > ((int64_t)1 << 36))) {
    verdict_set(&c.vd, FATTN_ERROR_OVERFLOW, "a K/V shard of %lld keys: beyond 64 GiB",
                (long long)maxlk);
  } else {
    /* from the communicator's cache: a repeated call faults in no page */
    cache = cache_of(comm);
    c.acc = cache_get(cache, CB_ACC, (size_t)(rows * c.Dv) * sizeof(float), own);
    c.M = cache_get(cache, CB_M, (size_t)rows * sizeof(float), own);
    c.S = cache_get(cache, CB_S, (size_t)rows * sizeof(float), own);
    c.po = cache_get(cache, CB_PO, (size_t)(c.B * c.H * maxq * c.Dv) * sizeof(float), own);
    c.pl = cache_get(cache, CB_PL, (size_t)(c.B * c.H * maxq) * sizeof(float), own);
    c.kvl = cache_get(cache, CB_KVL, (size_t)c.B * sizeof(int32_t), own);
    rq = cache_get(cache, CB_RQ, (size_t)nrq_max * sizeof *rq, own);
    if (layout == FATTN_CP_KV_SHARDED) { /* no K/V travels: the caller's are read in place */
      gather = cache_get(cache, CB_GATHER, (size_t)(P * rows * (c.Dv + 1)) * sizeof(float), own);
    } else {
      kvb[0] = cache_get(cache, CB_KV0, (size_t)kvbytes, own);
      kvb[1] = cache_get(cache, CB_KV1, (size_t)kvbytes, own);
    }
    if (!c.acc || !c.M || !c.S || !c.po || !c.pl || !c.kvl || !rq ||
        (layout == FATTN_CP_KV_SHARDED ? !gather : !kvb[0] || !kvb[1]))
      verdict_set(&c.vd, FATTN_ERROR_OUT_OF_MEMORY,
                  "buffers for %lld output rows and two K/V shards of %lld bytes", (long long)rows,
                  (long long)kvbytes);
  }
  if (c.vd.status == FATTN_SUCCESS && params->kv_lens) {
    for (int64_t b = 0; b < c.B; b++) {
      if (params->kv_lens[b] < 0 || params->kv_lens[b] > c.LkT) {
        verdict_set(&c.vd, FATTN_ERROR_INVALID_ARGUMENT, "kv_lens[%lld] = %d is outside [0, %lld]",
                    (long long)b, (int)params->kv_lens[b], (long long)c.LkT);
        break;
      }
      if (params->kv_lens[b] > c.max_kvl) c.max_kvl = params->kv_lens[b];
    }
  }
  if (c.vd.status == FATTN_SUCCESS) {
    /* the first piece of this rank against its own keys: every argument of
     * every later call is one of these, with other lengths */
    size_t ws;
    int64_t ks, kl, qs, ql;
    piece_of(layout == FATTN_CP_KV_SHARDED ? FATTN_CP_CONTIGUOUS : layout, c.lk, P, r, 0, c.LkT,
             &ks, &kl);
    if (layout == FATTN_CP_KV_SHARDED)
      qs = 0, ql = c.Lq;
    else
      piece_of(layout, c.lq, P, r, 0, c.LqT, &qs, &ql);
    fattn_tensor tq = *q, tk = *k, tv = *v, to = *out, tm, tl;
    tq.dims[2] = to.dims[2] = ql;
    tk.dims[2] = tv.dims[2] = kl;
    fattn_sdpa_params lp = *params;
    lp.diag_shift = 0;
    if (params->attn_mask) {
      tm = *params->attn_mask;
      tm.data = (char *)tm.data + ks * tm.strides[3] * es_of(tm.dtype);
      tm.dims[2] = ql, tm.dims[3] = kl;
      lp.attn_mask = &tm;
    }
    if (params->lse) {
      tl = *params->lse;
      tl.dims[2] = ql;
      lp.lse = &tl;
    }
    lp.kv_lens = NULL;
    const fattn_status s = fattn_sdpa_workspace_size(ctx, &tq, &tk, &tv, &to, &lp, &ws);
    if (s != FATTN_SUCCESS) verdict_set(&c.vd, s, "%s", fattn_last_error());
    /* the whole local tensors too (strides over all rows, out or lse
     * overlapping an input) */
    if (c.vd.status == FATTN_SUCCESS) {
      fattn_sdpa_params fp;
      fattn_sdpa_params_init(&fp);
      fp.lse = params->lse;
      fp.backend = params->backend;
      const fattn_status s2 = fattn_sdpa_workspace_size(ctx, q, k, v, out, &fp, &ws);
      if (s2 != FATTN_SUCCESS) verdict_set(&c.vd, s2, "%s", fattn_last_error());
    }
  }
  {
    const int a = agree(comm, P, &c.vd, all);
    if (a != 0) {
      ret = a < 0 ? fattn_set_last_error(FATTN_ERROR_BACKEND, "MPI_Allgather failed (agreement)")
                  : fail(&c.vd);
      goto release;
    }
  }

  /* ---- the accumulator: sinks join every row once ---- */
  acc_init(&c, layout != FATTN_CP_KV_SHARDED);

  if (layout == FATTN_CP_KV_SHARDED) {
    /* ---- decode: this rank's partial, every rank's gathered, merged in rank order ---- */
    float *mine_o = gather + (int64_t)r * rows * (c.Dv + 1);
    /* this shard's partial, as (out, lse) like fattn_sdpa's */
    compute_shard(&c, r, NULL, NULL, 0);
    for (int64_t x = 0; x < rows; x++) {
      const float s = c.S[x];
      /* out of this shard alone (weights e^{lse}): acc / S and lse M + log S */
      for (int64_t tt = 0; tt < c.Dv; tt++)
        mine_o[x * c.Dv + tt] = s > 0.0f ? c.acc[x * c.Dv + tt] / s : 0.0f;
      mine_o[rows * c.Dv + x] = s > 0.0f ? c.M[x] + logf(s) : -INFINITY;
    }
    const double t1 = MPI_Wtime();
    const int64_t cnt = rows * (c.Dv + 1);
    if (cnt > INT32_MAX) {
      verdict_set(&c.vd, FATTN_ERROR_OVERFLOW, "a decode partial of %lld floats", (long long)cnt);
    } else if (MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, gather, (int)cnt, MPI_FLOAT,
                             comm) != MPI_SUCCESS) {
      verdict_set(&c.vd, FATTN_ERROR_BACKEND, "MPI_Allgather of the partials failed");
    }
    c.st.wait_seconds += MPI_Wtime() - t1;
    c.st.bytes_sent = cnt * 4;
    if (c.vd.status == FATTN_SUCCESS) { /* the partials hold no sink: it joins here, once */
      const double t2 = MPI_Wtime();
      acc_init(&c, 1);
      for (int src = 0; src < P; src++) {
        const float *g = gather + (int64_t)src * cnt;
        merge(&c, g, g + rows * c.Dv, 0, c.Lq);
      }
      c.st.compute_seconds += MPI_Wtime() - t2;
    }
  } else {
    /* ---- the ring ---- */
    const int right = (r + 1) % P, left = (r + P - 1) % P;
    pack_one(k, c.kes, c.lk[r], kvb[0]);
    pack_one(v, c.ves, c.lk[r], kvb[0] + c.B * c.Hkv * c.lk[r] * c.D * c.kes);
    for (int s = 0; s < P; s++) {
      const int src = (r - s + P) % P, nxt = (r - s - 1 + 2 * P) % P;
      int n = 0;
      if (s + 1 < P) {
        n += post(0, kvb[(s + 1) & 1], shard_bytes(&c, nxt), left, comm, rq + n);
        n += post(1, kvb[s & 1], shard_bytes(&c, src), right, comm, rq + n);
        c.st.bytes_sent += shard_bytes(&c, src);
      }
      compute_shard(&c, src, kvb[s & 1], rq, n);
      const double t1 = MPI_Wtime();
      if (n > 0 && MPI_Waitall(n, rq, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
        verdict_set(&c.vd, FATTN_ERROR_BACKEND, "MPI transfer of a K/V shard failed");
      c.st.wait_seconds += MPI_Wtime() - t1;
    }
  }
  {
    const int a = agree(comm, P, &c.vd, all);
    if (a != 0) {
      ret = a < 0 ? fattn_set_last_error(FATTN_ERROR_BACKEND, "MPI_Allgather failed (agreement)")
                  : fail(&c.vd);
      goto release;
    }
  }
  write_out(&c);
release:
  for (int x = 0; x < CB_N; x++)
    free(own[x]);
done:
  free(facts);
  free(all);
  free(c.lq);
  free(c.lk);
  c.st.seconds = MPI_Wtime() - t_start;
  if (stats) *stats = c.st;
  return ret;
}

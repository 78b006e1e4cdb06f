/* fattn_mpi — context parallelism: attention over a sequence sharded across
 * the ranks of an MPI communicator (ring attention).
 *
 * An optional library beside libfattn (CMake target fattn::fattn_mpi,
 * pkg-config fattn-mpi); libfattn itself never depends on MPI. Every rank
 * calls fattn_sdpa_context_parallel with its shard; each gets the attention
 * of its own queries over the keys of all ranks, the result one fattn_sdpa
 * over the gathered tensors gives (to the rounding of one merge per shard).
 *
 * How: K/V shards travel around the ring with non-blocking point-to-point
 * calls (MPI_Isend / MPI_Irecv), posted before the local attention on the
 * shard in hand and completed after it; each rank computes one fattn_sdpa per
 * (its query piece, the shard's key piece) with lse and merges the partial
 * (O, lse) into an f32 accumulator with the log-sum-exp rule. Pieces that the
 * causal mask or the window hide entirely are skipped, not computed.
 *
 * Determinism: the merge order is the ring order, fixed by the rank and the
 * communicator size, so the result is bitwise the same for any number of
 * threads per rank and from run to run, whatever the timing of the network;
 * with one rank it is fattn_sdpa's own result, bit for bit. Between runs with
 * different rank counts or layouts the bits differ (other key pieces, other
 * merges) within the merge's rounding (a few f32 ulps per shard).
 *
 * MPI: the caller initialises MPI (any thread level: fattn_mpi makes its MPI
 * calls from the calling thread only) and passes an intra-communicator; all
 * of its ranks must call with the same parameters (checked, see below), on
 * homogeneous machines (one binary layout for the check's records). */
#ifndef FATTN_MPI_H
#define FATTN_MPI_H

#include <mpi.h>

#include "fattn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How the sequence positions are split over the P ranks. Every sequence of
 * the batch is split alike; queries and keys each by their own full length
 * (Lq_all = Σ ranks' q->dims[2], Lk_all likewise). */
typedef enum fattn_cp_layout {
  /* Rank r holds the r-th contiguous run of positions, of any length >= 1
   * (its q->dims[2] queries, k->dims[2] keys), in rank order. With causal
   * masks the last rank does most of the work. */
  FATTN_CP_CONTIGUOUS,
  /* Causal load balance: the sequence is cut into 2P near-equal pieces
   * (fattn_cp_shard says which positions) and rank r holds piece r followed
   * by piece 2P-1-r, concatenated along dims[2] of q, k, v, out, lse and the
   * mask's rows. Needs Lq_all, Lk_all >= 2P. */
  FATTN_CP_ZIGZAG,
  /* Decode: every rank holds the same queries (all of them; Lq small, e.g. 1
   * per sequence) and a contiguous run of the keys as in CONTIGUOUS; every
   * rank gets the whole out (and lse). The partial results are merged with
   * one MPI_Allgather, in rank order, instead of a ring. */
  FATTN_CP_KV_SHARDED
} fattn_cp_layout;

/* The positions rank `rank` of `nranks` holds of a sequence of `total`
 * positions under `layout`: piece 0 is [start[0], start[0] + len[0]),
 * piece 1 (ZIGZAG only; else len[1] = 0) follows it in the rank's tensors.
 * CONTIGUOUS gives the near-equal split fattn's tests use (any other split is
 * accepted too); KV_SHARDED gives it for the keys. INVALID_ARGUMENT when
 * nranks < 1, rank is outside [0, nranks) or total < 2·nranks (ZIGZAG),
 * total < nranks (the others). */
FATTN_API fattn_status fattn_cp_shard(fattn_cp_layout layout, int64_t total, int nranks, int rank,
                                      int64_t start[2], int64_t len[2]);

/* What one call did on this rank (optional output). */
typedef struct fattn_cp_stats {
  double seconds;         /* the whole call, on this rank */
  double compute_seconds; /* in fattn_sdpa and the merge */
  double merge_seconds;   /* of which the merge (on the context's threads) */
  double wait_seconds;    /* waiting for the ring's (or the allgather's) transfers */
  int64_t bytes_sent;     /* to the next rank (or into the allgather) */
  int steps;              /* ring steps (P), 1 for KV_SHARDED */
  int pieces_computed;    /* fattn_sdpa calls made */
  int pieces_skipped;     /* (query piece, key piece) pairs fully masked, not computed */
} fattn_cp_stats;

/* Buffers: the call keeps its scratch (two K/V shards in transit, the f32
 * accumulator of this rank's rows, one partial) attached to comm (an MPI
 * attribute) for the next call, so repeated calls allocate nothing; they are
 * freed with the communicator (MPI_Comm_free) or by fattn_cp_release. */
FATTN_API void fattn_cp_release(MPI_Comm comm);

/* q [B, H, Lq_r, D], k [B, Hkv, Lk_r, D], v [B, Hkv, Lk_r, Dv] and out
 * [B, H, Lq_r, Dv]: this rank's shard, in any layout fattn_sdpa accepts
 * (strides), F32 / F16 / BF16 each (half K/V travel as half). params as for
 * fattn_sdpa, with global positions:
 *  - causal (both kinds), the window, ALiBi and diag_shift refer to positions
 *    in the whole sequence (BOTTOM_RIGHT: Lk_all - Lq_all);
 *  - attn_mask is [B or 1, H or 1, Lq_r, Lk_all]: this rank's query rows (in
 *    its local order) over every key, in global key order;
 *  - kv_lens[b] in [0, Lk_all] counts global keys; lse is [B, H, Lq_r, 1];
 *  - sinks join every row once.
 * Not available (UNSUPPORTED): varlen and paged inputs (cu_seqlens_*,
 * seqused_k, block_table), I8 / F8 K/V, the oneDNN backend.
 *
 * The arguments are checked collectively (one MPI_Allgather of a small record
 * per rank and one MPI_Allreduce): a shard whose shapes or dtypes disagree
 * with the others', lengths that do not fit the layout, or ranks that pass
 * different parameters make the call fail on every rank with the same status
 * and a message naming the rank (fattn_last_error()), before any transfer;
 * a failure during the ring (out of memory) is agreed on the same way at the
 * end. On failure nothing is written to out or lse, on any rank.
 * Collective: every rank of comm must call it. ctx NULL: the default. */
FATTN_API fattn_status fattn_sdpa_context_parallel(fattn_context *ctx, MPI_Comm comm,
                                                   fattn_cp_layout layout, const fattn_tensor *q,
                                                   const fattn_tensor *k, const fattn_tensor *v,
                                                   const fattn_tensor *out,
                                                   const fattn_sdpa_params *params,
                                                   fattn_cp_stats *stats /* optional */);

#ifdef __cplusplus
}
#endif
#endif /* FATTN_MPI_H */

/* Context parallelism: a causal prefill whose sequence is split over the
 * ranks of MPI_COMM_WORLD, each holding its zigzag shard of q, k and v.
 *
 *   mpirun -np 4 ./ring_attention
 *
 * Every rank builds the same (small) sequence only to check itself: rank r
 * keeps its two pieces (fattn_cp_shard), calls fattn_sdpa_context_parallel,
 * and compares its rows with one fattn_sdpa over the whole sequence. */
#include <fattn_mpi.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { H = 8, HKV = 2, L = 1000, D = 64 };

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int P, r;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  MPI_Comm_rank(MPI_COMM_WORLD, &r);

  /* the whole sequence (a real application holds only its shard) */
  float *q = malloc(sizeof(float) * H * L * D), *k = malloc(sizeof(float) * HKV * L * D),
        *v = malloc(sizeof(float) * HKV * L * D);
  for (int i = 0; i < H * L * D; i++)
    q[i] = sinf(0.37f * (float)i);
  for (int i = 0; i < HKV * L * D; i++)
    k[i] = cosf(0.11f * (float)i), v[i] = sinf(0.05f * (float)i);

  /* this rank's positions: piece 0 then piece 1, concatenated */
  int64_t start[2], len[2];
  if (fattn_cp_shard(FATTN_CP_ZIGZAG, L, P, r, start, len) != FATTN_SUCCESS) {
    fprintf(stderr, "rank %d: %s\n", r, fattn_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  const int64_t n = len[0] + len[1];
  float *lq = malloc(sizeof(float) * H * n * D), *lk = malloc(sizeof(float) * HKV * n * D),
        *lv = malloc(sizeof(float) * HKV * n * D), *lo = malloc(sizeof(float) * H * n * D);
  for (int64_t i = 0, row = 0; i < 2; i++)
    for (int64_t j = 0; j < len[i]; j++, row++) {
      const int64_t pos = start[i] + j;
      for (int h = 0; h < H; h++)
        for (int d = 0; d < D; d++)
          lq[(h * n + row) * D + d] = q[(h * L + pos) * D + d];
      for (int h = 0; h < HKV; h++)
        for (int d = 0; d < D; d++) {
          lk[(h * n + row) * D + d] = k[(h * L + pos) * D + d];
          lv[(h * n + row) * D + d] = v[(h * L + pos) * D + d];
        }
    }

  fattn_tensor tq = fattn_tensor_contiguous(lq, FATTN_F32, 1, H, n, D);
  fattn_tensor tk = fattn_tensor_contiguous(lk, FATTN_F32, 1, HKV, n, D);
  fattn_tensor tv = fattn_tensor_contiguous(lv, FATTN_F32, 1, HKV, n, D);
  fattn_tensor to = fattn_tensor_contiguous(lo, FATTN_F32, 1, H, n, D);
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.causal = FATTN_CAUSAL_TOP_LEFT; /* over global positions */
  fattn_cp_stats st;
  if (fattn_sdpa_context_parallel(NULL, MPI_COMM_WORLD, FATTN_CP_ZIGZAG, &tq, &tk, &tv, &to, &p,
                                  &st) != FATTN_SUCCESS) {
    fprintf(stderr, "rank %d: %s\n", r, fattn_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

  /* the check: one process over the whole sequence */
  float *full = malloc(sizeof(float) * H * L * D);
  fattn_tensor fq = fattn_tensor_contiguous(q, FATTN_F32, 1, H, L, D);
  fattn_tensor fk = fattn_tensor_contiguous(k, FATTN_F32, 1, HKV, L, D);
  fattn_tensor fv = fattn_tensor_contiguous(v, FATTN_F32, 1, HKV, L, D);
  fattn_tensor fo = fattn_tensor_contiguous(full, FATTN_F32, 1, H, L, D);
  fattn_sdpa(NULL, &fq, &fk, &fv, &fo, &p);
  double err = 0;
  for (int64_t i = 0, row = 0; i < 2; i++)
    for (int64_t j = 0; j < len[i]; j++, row++)
      for (int h = 0; h < H; h++)
        for (int d = 0; d < D; d++)
          err = fmax(err, fabs(lo[(h * n + row) * D + d] - full[(h * L + start[i] + j) * D + d]));
  double worst;
  MPI_Allreduce(&err, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  printf("rank %d of %d: positions [%lld, %lld) + [%lld, %lld), %d pieces computed, %d skipped\n",
         r, P, (long long)start[0], (long long)(start[0] + len[0]), (long long)start[1],
         (long long)(start[1] + len[1]), st.pieces_computed, st.pieces_skipped);
  if (r == 0) printf("largest difference from one fattn_sdpa: %.3g\n", worst);
  free(q), free(k), free(v), free(lq), free(lk), free(lv), free(lo), free(full);
  fattn_cp_release(MPI_COMM_WORLD); /* fattn_mpi's buffers, kept on the communicator */
  MPI_Finalize();
  return worst < 1e-5 ? 0 : 1;
}

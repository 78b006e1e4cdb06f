/* The oracle: naive three-pass softmax in double precision, one query row at a
 * time, straight from the definition. Obviously correct rather than fast. */
#include <math.h>
#include <stdlib.h>

#include "internal.h"
#include "access.h"

fattn_status fattn__reference_run(const fattn__problem *pb) {
  double *s = fattn__malloc((size_t)pb->Lk * sizeof *s);
  double *acc = fattn__malloc((size_t)pb->Dv * sizeof *acc);
  if (!s || !acc) {
    free(s);
    free(acc);
    return fattn__error(FATTN_ERROR_OUT_OF_MEMORY, "reference: %lld doubles of scratch",
                        (long long)(pb->Lk + pb->Dv));
  }
  const double scale = (double)pb->scale;
  for (int64_t b = 0; b < pb->B; b++)
    for (int64_t h = 0; h < pb->H; h++) {
      const int64_t hk = h / pb->G, lq = fattn__seq_lq(pb, b), lk = fattn__seq_lk(pb, b);
      for (int64_t i = 0; i < lq; i++) {
        const int64_t lo = fattn__row_start(pb, b, i), lim = fattn__row_limit(pb, b, i);
        const void *qrow = fattn__q_row(pb, b, h, i);
        /* pass 1: scores and their maximum; a sink is one more logit */
        double mx = pb->sinks ? (double)pb->sinks[h] : -INFINITY;
        int has_nan = 0;
        for (int64_t j = 0; j < lk; j++) {
          /* A masked key (outside the row's range, U8 0, additive -inf) is
           * not attended at all: nothing of its k or v reaches the row, not
           * even a NaN. */
          double x = -INFINITY;
          const double mk = pb->has_mask ? fattn__mask_at(pb, b, h, i, j) : 0.0;
          if (j >= lo && j < lim && mk != -INFINITY) {
            double dot = 0.0;
            for (int64_t p = 0; p < pb->D; p++)
              dot += (double)fattn__load(qrow, p * pb->q.s[3], pb->q.dtype) *
                     (double)fattn__kv_at(pb, 0, b, hk, j, p);
            x = fattn__modify_score(pb, b, h, i, j, dot * scale) + mk;
          }
          s[j] = x;
          if (x > mx) mx = x;
          if (isnan(x)) has_nan = 1;
        }
        void *o_row = fattn__out_erow(pb, b, h, i);
        const fattn_dtype odt = pb->out.dtype;
        if (has_nan) { /* a NaN score among the attended keys: the whole row is NaN */
          for (int64_t c = 0; c < pb->Dv; c++)
            fattn__store(o_row, c * pb->out.s[3], odt, NAN);
          if (pb->has_lse) *fattn__lse_at(pb, b, h, i) = NAN;
          continue;
        }
        if (mx == -INFINITY) { /* no key to attend: zeros, lse = -inf */
          for (int64_t c = 0; c < pb->Dv; c++)
            fattn__store(o_row, c * pb->out.s[3], odt, 0.0f);
          if (pb->has_lse) *fattn__lse_at(pb, b, h, i) = -INFINITY;
          continue;
        }
        /* pass 2: denominator; pass 3: weighted sum of values */
        double l = pb->sinks ? exp((double)pb->sinks[h] - mx) : 0.0;
        for (int64_t j = 0; j < lk; j++)
          l += exp(s[j] - mx);
        for (int64_t c = 0; c < pb->Dv; c++)
          acc[c] = 0.0;
        for (int64_t j = 0; j < lk; j++) {
          if (s[j] == -INFINITY) continue; /* a masked key's value never reaches the row */
          const double w = exp(s[j] - mx);
          for (int64_t c = 0; c < pb->Dv; c++)
            acc[c] += w * (double)fattn__kv_at(pb, 1, b, hk, j, c);
        }
        for (int64_t c = 0; c < pb->Dv; c++)
          fattn__store(o_row, c * pb->out.s[3], odt, (float)(acc[c] / l));
        if (pb->has_lse) *fattn__lse_at(pb, b, h, i) = (float)(mx + log(l));
      }
    }
  free(s);
  free(acc);
  return FATTN_SUCCESS;
}

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

/* dq, dk, dv from the definition, in double. Per (sequence, kv head): for
 * each query head g of the group and row i, s_j = the modified scaled score
 * (masked: -inf), p = softmax(s) with the sink in the denominator,
 * dp_j = dout_i · v_j, D = Σ_j p_j dp_j, ds_j = p_j (dp_j - D), times
 * d(softcap)/dx = 1 - tanh²; dq_i = scale Σ_j ds_j k_j, and over the group's
 * rows dk_j = scale Σ ds_j q_i, dv_j = Σ p_j dout_i. */
fattn_status fattn__reference_backward(const fattn__problem *pb, const fattn__grads *gr) {
  const int64_t Lk = pb->Lk, D = pb->D, Dv = pb->Dv;
  double *s = fattn__malloc((size_t)Lk * sizeof *s), *dp = fattn__malloc((size_t)Lk * sizeof *dp);
  double *dk = fattn__malloc((size_t)(Lk * D) * sizeof *dk);
  double *dv = fattn__malloc((size_t)(Lk * Dv) * sizeof *dv);
  double *dq = fattn__malloc((size_t)D * sizeof *dq), *qd = fattn__malloc((size_t)D * sizeof *qd);
  double *dod = fattn__malloc((size_t)Dv * sizeof *dod);
  if (!s || !dp || !dk || !dv || !dq || !qd || !dod) {
    free(s), free(dp), free(dk), free(dv), free(dq), free(qd), free(dod);
    return fattn__error(FATTN_ERROR_OUT_OF_MEMORY, "reference backward: %lld doubles of scratch",
                        (long long)(Lk * (2 + D + Dv)));
  }
  const double scale = (double)pb->scale, cap = (double)pb->softcap;
  for (int64_t b = 0; b < pb->B; b++)
    for (int64_t hk = 0; hk < pb->Hkv; hk++) {
      for (int64_t x = 0; x < Lk * D; x++)
        dk[x] = 0.0;
      for (int64_t x = 0; x < Lk * Dv; x++)
        dv[x] = 0.0;
      for (int64_t g = 0; g < pb->G; g++) {
        const int64_t h = hk * pb->G + g;
        for (int64_t i = 0; i < pb->Lq; i++) {
          const int64_t lo = fattn__row_start(pb, b, i), lim = fattn__row_limit(pb, b, i);
          const void *qrow = fattn__q_row(pb, b, h, i);
          const void *dorow = fattn__eptr(&gr->dout, b, h, i, 0);
          for (int64_t p = 0; p < D; p++)
            qd[p] = (double)fattn__load(qrow, p * pb->q.s[3], pb->q.dtype);
          for (int64_t c = 0; c < Dv; c++)
            dod[c] = (double)fattn__load(dorow, c * gr->dout.s[3], gr->dout.dtype);
          double mx = pb->sinks ? (double)pb->sinks[h] : -INFINITY;
          for (int64_t j = 0; j < Lk; j++) {
            double x = -INFINITY;
            const double mk = pb->has_mask ? fattn__mask_at(pb, b, h, i, j) : 0.0;
            if (j >= lo && j < lim && mk != -INFINITY) {
              double dot = 0.0;
              for (int64_t p = 0; p < D; p++)
                dot += qd[p] * (double)fattn__kv_at(pb, 0, b, hk, j, p);
              x = fattn__modify_score(pb, b, h, i, j, dot * scale) + mk;
            }
            s[j] = x;
            if (x > mx) mx = x;
          }
          for (int64_t p = 0; p < D; p++)
            dq[p] = 0.0;
          void *dqrow = (void *)fattn__eptr(&gr->dq, b, h, i, 0);
          if (mx == -INFINITY) { /* no key: no gradient */
            for (int64_t p = 0; p < D; p++)
              fattn__store(dqrow, p * gr->dq.s[3], gr->dq.dtype, 0.0f);
            continue;
          }
          double l = pb->sinks ? exp((double)pb->sinks[h] - mx) : 0.0;
          for (int64_t j = 0; j < Lk; j++)
            if (s[j] != -INFINITY) l += exp(s[j] - mx);
          /* s_j <- p_j, dp_j = dout · v_j, D = Σ p_j dp_j (masked keys stay -inf) */
          double Drow = 0.0;
          for (int64_t j = 0; j < Lk; j++) {
            if (s[j] == -INFINITY) continue;
            double d = 0.0;
            for (int64_t c = 0; c < Dv; c++)
              d += dod[c] * (double)fattn__kv_at(pb, 1, b, hk, j, c);
            s[j] = exp(s[j] - mx) / l;
            dp[j] = d;
            Drow += s[j] * d;
          }
          for (int64_t j = 0; j < Lk; j++) {
            if (s[j] == -INFINITY) continue;
            double fac = 1.0; /* softcap: d(cap · tanh(x / cap))/dx = 1 - tanh² */
            if (cap != 0.0) {
              double dot = 0.0;
              for (int64_t p = 0; p < D; p++)
                dot += qd[p] * (double)fattn__kv_at(pb, 0, b, hk, j, p);
              const double t = tanh(dot * scale / cap);
              fac = 1.0 - t * t;
            }
            const double ds = s[j] * (dp[j] - Drow) * fac;
            for (int64_t p = 0; p < D; p++) {
              dq[p] += scale * ds * (double)fattn__kv_at(pb, 0, b, hk, j, p);
              dk[j * D + p] += scale * ds * qd[p];
            }
            for (int64_t c = 0; c < Dv; c++)
              dv[j * Dv + c] += s[j] * dod[c];
          }
          for (int64_t p = 0; p < D; p++)
            fattn__store(dqrow, p * gr->dq.s[3], gr->dq.dtype, (float)dq[p]);
        }
      }
      for (int64_t j = 0; j < Lk; j++) {
        void *dkrow = (void *)fattn__eptr(&gr->dk, b, hk, j, 0);
        void *dvrow = (void *)fattn__eptr(&gr->dv, b, hk, j, 0);
        for (int64_t p = 0; p < D; p++)
          fattn__store(dkrow, p * gr->dk.s[3], gr->dk.dtype, (float)dk[j * D + p]);
        for (int64_t c = 0; c < Dv; c++)
          fattn__store(dvrow, c * gr->dv.s[3], gr->dv.dtype, (float)dv[j * Dv + c]);
      }
    }
  free(s), free(dp), free(dk), free(dv), free(dq), free(qd), free(dod);
  return FATTN_SUCCESS;
}

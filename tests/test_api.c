/* The API's contract for bad input: every rejected call returns the right
 * status, says why in fattn_last_error(), and leaves `out` (and lse) exactly
 * as they were. Plus the small public helpers. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum { B = 2, H = 4, HKV = 2, LQ = 5, LK = 7, D = 8, DV = 6 };
static float qb[B * H * LQ * D], kb[B * HKV * LK * D], vb[B * HKV * LK * DV];
static float ob[B * H * LQ * DV + 64], lb[B * H * LQ + 16], maskb[B * H * LQ * LK];
static float big[1 << 12];

typedef struct setup {
  fattn_tensor q, k, v, out, lse, mask;
  fattn_sdpa_params p;
  int32_t kv_lens[B];
} setup;

static void make(setup *s) {
  s->q = fattn_tensor_contiguous(qb, FATTN_F32, B, H, LQ, D);
  s->k = fattn_tensor_contiguous(kb, FATTN_F32, B, HKV, LK, D);
  s->v = fattn_tensor_contiguous(vb, FATTN_F32, B, HKV, LK, DV);
  s->out = fattn_tensor_contiguous(ob, FATTN_F32, B, H, LQ, DV);
  s->lse = fattn_tensor_contiguous(lb, FATTN_F32, B, H, LQ, 1);
  s->mask = fattn_tensor_contiguous(maskb, FATTN_F32, B, H, LQ, LK);
  fattn_sdpa_params_init(&s->p);
  s->p.lse = &s->lse;
  s->kv_lens[0] = LK;
  s->kv_lens[1] = 3;
}

static int checked;

/* Calls fattn_sdpa on the setup and expects `want`, a message, and untouched
 * outputs. */
static void expect_rejected(const char *what, setup *s, fattn_status want, const fattn_tensor *q,
                            const fattn_tensor *k, const fattn_tensor *v, const fattn_tensor *out,
                            const fattn_sdpa_params *p) {
  memset(ob, 0x5A, sizeof ob);
  memset(lb, 0x5A, sizeof lb);
  unsigned char before_o[sizeof ob], before_l[sizeof lb];
  memcpy(before_o, ob, sizeof ob);
  memcpy(before_l, lb, sizeof lb);
  fattn_status st = fattn_sdpa(NULL, q, k, v, out, p);
  EXPECT(st == want, "%s: got %s, want %s (%s)", what, fattn_status_string(st),
         fattn_status_string(want), fattn_last_error());
  EXPECT(strlen(fattn_last_error()) > 0, "%s: empty message", what);
  EXPECT(memcmp(before_o, ob, sizeof ob) == 0, "%s: out was written", what);
  EXPECT(memcmp(before_l, lb, sizeof lb) == 0, "%s: lse was written", what);
  printf("%-58s -> %s: %s\n", what, fattn_status_string(st), fattn_last_error());
  (void)s;
  checked++;
}

#define REJECT(what, want, mutate)                                                                 \
  do {                                                                                             \
    setup s;                                                                                       \
    make(&s);                                                                                      \
    mutate;                                                                                        \
    expect_rejected(what, &s, want, &s.q, &s.k, &s.v, &s.out, &s.p);                               \
  } while (0)

int main(void) {
  for (size_t i = 0; i < sizeof qb / sizeof qb[0]; i++)
    qb[i] = (float)(i % 7) * 0.1f;
  for (size_t i = 0; i < sizeof kb / sizeof kb[0]; i++)
    kb[i] = (float)(i % 5) * 0.1f;
  for (size_t i = 0; i < sizeof vb / sizeof vb[0]; i++)
    vb[i] = (float)(i % 3);

  /* The valid call succeeds (so the rejections below are about the mutation). */
  {
    setup s;
    make(&s);
    EXPECT(fattn_sdpa(NULL, &s.q, &s.k, &s.v, &s.out, &s.p) == FATTN_SUCCESS, "valid call: %s",
           fattn_last_error());
  }
  const fattn_status INV = FATTN_ERROR_INVALID_ARGUMENT, SHP = FATTN_ERROR_SHAPE_MISMATCH,
                     UNS = FATTN_ERROR_UNSUPPORTED, OVF = FATTN_ERROR_OVERFLOW;
  /* null pointers */
  {
    setup s;
    make(&s);
    expect_rejected("q NULL", &s, INV, NULL, &s.k, &s.v, &s.out, &s.p);
    expect_rejected("k NULL", &s, INV, &s.q, NULL, &s.v, &s.out, &s.p);
    expect_rejected("v NULL", &s, INV, &s.q, &s.k, NULL, &s.out, &s.p);
    expect_rejected("out NULL", &s, INV, &s.q, &s.k, &s.v, NULL, &s.p);
    expect_rejected("params NULL", &s, INV, &s.q, &s.k, &s.v, &s.out, NULL);
  }
  REJECT("q->data NULL", INV, s.q.data = NULL);
  REJECT("out->data NULL", INV, s.out.data = NULL);
  /* enums */
  REJECT("q->dtype out of range", INV, s.q.dtype = (fattn_dtype)42);
  REJECT("causal out of range", INV, s.p.causal = (fattn_causal)7);
  REJECT("backend out of range", INV, s.p.backend = (fattn_backend)-1);
  /* dtypes */
  REJECT("q F16 on the oneDNN baseline", UNS,
         (s.q.dtype = FATTN_F16, s.p.backend = FATTN_BACKEND_ONEDNN, s.p.lse = NULL));
  REJECT("v BF16 on the oneDNN baseline", UNS,
         (s.v.dtype = FATTN_BF16, s.p.backend = FATTN_BACKEND_ONEDNN, s.p.lse = NULL));
  REJECT("lse BF16", INV, s.lse.dtype = FATTN_BF16);
  REJECT("q dtype out of range", INV, s.q.dtype = (fattn_dtype)7);
  REJECT("k U8", INV, s.k.dtype = FATTN_U8);
  REJECT("lse U8", INV, s.lse.dtype = FATTN_U8);
  REJECT("mask BF16", UNS, (s.mask.dtype = FATTN_BF16, s.p.attn_mask = &s.mask));
  /* dims and strides */
  REJECT("q dims[2] = 0", INV, s.q.dims[2] = 0);
  REJECT("v dims[3] negative", INV, s.v.dims[3] = -4);
  REJECT("k stride negative", INV, s.k.strides[2] = -8);
  REJECT("q stride 0 on a dim > 1", INV, s.q.strides[2] = 0);
  REJECT("out stride 0 on a dim > 1", INV, s.out.strides[1] = 0);
  REJECT("out elements alias (strides[2] = 1)", INV, s.out.strides[2] = 1);
  /* shapes */
  REJECT("Hkv does not divide H", SHP, (s.k.dims[1] = 3, s.v.dims[1] = 3));
  REJECT("batch of k differs", SHP, s.k.dims[0] = 1);
  REJECT("head_dim of k differs", SHP, s.k.dims[3] = 4);
  REJECT("Lk of v differs", SHP, s.v.dims[2] = 6);
  REJECT("Dv of out differs", SHP, s.out.dims[3] = 5);
  REJECT("Lq of out differs", SHP, s.out.dims[2] = 4);
  REJECT("heads of out differ", SHP, s.out.dims[1] = 2);
  REJECT("kv heads of v differ", SHP, s.v.dims[1] = 1);
  REJECT("mask Lk differs", SHP, (s.mask.dims[3] = 6, s.p.attn_mask = &s.mask));
  REJECT("mask batch neither B nor 1", SHP, (s.mask.dims[0] = 3, s.p.attn_mask = &s.mask));
  REJECT("lse dims[3] != 1", SHP, s.lse.dims[3] = 2);
  REJECT("lse Lq differs", SHP, s.lse.dims[2] = 3);
  /* values */
  REJECT("scale NaN", INV, s.p.scale = NAN);
  REJECT("scale inf", INV, s.p.scale = INFINITY);
  REJECT("kv_lens negative", INV, (s.kv_lens[1] = -1, s.p.kv_lens = s.kv_lens));
  REJECT("kv_lens > Lk", INV, (s.kv_lens[1] = LK + 1, s.p.kv_lens = s.kv_lens));
  /* overlap */
  REJECT("out overlaps q", INV, s.out.data = qb);
  REJECT("out overlaps v (partially)", INV, s.out.data = vb + 10);
  REJECT("lse overlaps out", INV, s.lse.data = ob + 3);
  REJECT("out overlaps mask", INV, (s.p.attn_mask = &s.mask, s.out.data = maskb));
  /* overflow */
  REJECT("q dims overflow int64", OVF,
         (s.q.dims[2] = INT64_MAX / 2, s.q.strides[2] = 4, s.out.dims[2] = INT64_MAX / 2));
  REJECT("k stride overflows", OVF, s.k.strides[0] = INT64_MAX / 2);
  REJECT("byte extent wraps the address space", OVF, s.v.data = (void *)(UINTPTR_MAX - 64));
  { /* every extent fits, but the work B·H·Lq·Lk·(D+Dv) does not (never dereferenced) */
    setup s;
    make(&s);
    const int64_t L = (int64_t)1 << 31;
    s.q = fattn_tensor_contiguous(big, FATTN_F32, 1, 1, L, D);
    s.k = fattn_tensor_contiguous(big, FATTN_F32, 1, 1, L, D);
    s.v = fattn_tensor_contiguous(big, FATTN_F32, 1, 1, L, DV);
    s.out = fattn_tensor_contiguous(ob, FATTN_F32, 1, 1, L, DV);
    s.p.lse = NULL;
    expect_rejected("B·H·Lq·Lk·(D+Dv) overflows int64", &s, OVF, &s.q, &s.k, &s.v, &s.out, &s.p);
  }
  /* backends */
#if defined(__x86_64__) || defined(__i386__)
  REJECT("NEON backend on x86", UNS, s.p.backend = FATTN_BACKEND_NEON);
#else
  REJECT("AVX-512 backend on Arm", UNS, s.p.backend = FATTN_BACKEND_AVX512);
#endif

  /* the oneDNN baseline does not compute lse: UNSUPPORTED, nothing written
   * (UNSUPPORTED too where it is not built) */
  REJECT("lse with the oneDNN backend", UNS, s.p.backend = FATTN_BACKEND_ONEDNN);

  /* contexts */
  {
    fattn_context_options o;
    fattn_context_options_init(&o);
    fattn_context *c = (fattn_context *)&o;
    o.num_threads = -1;
    EXPECT(fattn_context_create(&o, &c) == INV && c == NULL, "negative threads");
    fattn_context_options_init(&o);
    o.isa_cap = FATTN_BACKEND_ONEDNN;
    EXPECT(fattn_context_create(&o, &c) == INV && c == NULL, "isa_cap onednn");
    fattn_context_options_init(&o);
    o.block_keys = -3;
    EXPECT(fattn_context_create(&o, &c) == INV, "negative block_keys");
    EXPECT(fattn_context_create(NULL, NULL) == INV, "ctx NULL");
    EXPECT(fattn_get_runtime_info(NULL, NULL) == INV, "info NULL");
    fattn_context_destroy(NULL); /* allowed, does nothing */
    checked += 5;
  }
  /* helpers */
  EXPECT(strcmp(fattn_status_string(FATTN_SUCCESS), "FATTN_SUCCESS") == 0, "status string");
  EXPECT(strcmp(fattn_status_string((fattn_status)99), "FATTN_ERROR_UNKNOWN_STATUS") == 0, "bad");
  EXPECT(strcmp(fattn_backend_name((fattn_backend)99), "invalid") == 0, "backend name");
  {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", FATTN_VERSION_MAJOR, FATTN_VERSION_MINOR,
             FATTN_VERSION_PATCH);
    EXPECT(strcmp(fattn_version(), want) == 0, "version %s vs %s", fattn_version(), want);
  }
  fattn_tensor ov = fattn_tensor_contiguous(qb, FATTN_F32, 2, INT64_MAX / 4, 8, 8);
  EXPECT(ov.strides[0] == -1, "contiguous() marks an overflowing stride");
  checked += 5;
  printf("%d passed, %d failed\n", checked - g_failures, g_failures);
  return g_failures != 0;
}

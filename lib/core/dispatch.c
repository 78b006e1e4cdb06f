/* Kernel-table dispatch: which fused tables this build has, which this CPU
 * runs, best first. Portable: no ISA flags here, only table pointers. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct entry {
  fattn_backend backend;
  const fattn__kernel_table *table; /* NULL: not in this build */
  unsigned needs;                   /* FATTN__CPU_* bits */
} entry;

/* Best first; the scalar table ends the list and runs everywhere. */
static const entry fattn__tables[] = {
#if defined(FATTN_HAVE_AVX512_TABLE)
    {FATTN_BACKEND_AVX512, &fattn__table_avx512, FATTN__CPU_AVX512},
#else
    {FATTN_BACKEND_AVX512, NULL, FATTN__CPU_AVX512},
#endif
#if defined(FATTN_HAVE_AVX2_TABLE)
    {FATTN_BACKEND_AVX2, &fattn__table_avx2, FATTN__CPU_AVX2},
#else
    {FATTN_BACKEND_AVX2, NULL, FATTN__CPU_AVX2},
#endif
#if defined(FATTN_HAVE_NEON_TABLE)
    {FATTN_BACKEND_NEON, &fattn__table_neon, FATTN__CPU_NEON},
#else
    {FATTN_BACKEND_NEON, NULL, FATTN__CPU_NEON},
#endif
    {FATTN_BACKEND_SCALAR, &fattn__table_scalar, 0},
};
#define NTABLES (sizeof fattn__tables / sizeof fattn__tables[0])

const fattn__kernel_table *fattn__table_for(fattn_backend b, fattn_status *st) {
  for (size_t i = 0; i < NTABLES; i++) {
    const entry *e = &fattn__tables[i];
    if (e->backend != b) continue;
    if (!e->table) {
      *st = fattn__error(FATTN_ERROR_UNSUPPORTED, "the %s kernel table is not in this build",
                         fattn_backend_name(b));
      return NULL;
    }
    if ((fattn__cpu_features() & e->needs) != e->needs) {
      *st = fattn__error(FATTN_ERROR_UNSUPPORTED,
                         "this CPU (or its OS) does not support the %s kernel table",
                         fattn_backend_name(b));
      return NULL;
    }
    *st = FATTN_SUCCESS;
    return e->table;
  }
  *st = fattn__error(FATTN_ERROR_UNSUPPORTED, "%s is not a fused kernel table",
                     fattn_backend_name(b));
  return NULL;
}

const fattn__kernel_table *fattn__best_table(void) {
  for (size_t i = 0; i < NTABLES; i++) {
    const entry *e = &fattn__tables[i];
    if (e->table && (fattn__cpu_features() & e->needs) == e->needs) return e->table;
  }
  return &fattn__table_scalar;
}

const fattn__bf16_dot_table *fattn__bf16_dot_for(const fattn__kernel_table *t) {
#if defined(FATTN_HAVE_AVX512BF16_DOT)
  const unsigned need = FATTN__CPU_AVX512 | FATTN__CPU_AVX512BF16;
  if (t && t->backend == fattn__bf16_dot_avx512bf16.backend &&
      (fattn__cpu_features() & need) == need)
    return &fattn__bf16_dot_avx512bf16;
#else
  (void)t;
#endif
  return NULL;
}

const fattn__tile_table *fattn__tile_for(const char **why) {
#if defined(FATTN_HAVE_AMX_TILES)
  if (fattn__amx_permit(why)) return &fattn__tile_amx;
#else
  if (why) *why = "this build has no AMX kernels (the compiler lacks -mamx-bf16)";
#endif
  return NULL;
}

fattn_status fattn__tiles_resolve(fattn_tile_policy asked, fattn_tile_policy *policy,
                                  const fattn__tile_table **engine, const char **why) {
  if ((unsigned)asked > (unsigned)FATTN_TILES_BF16)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "tiles has invalid value %d", (int)asked);
  *policy = asked;
  if (asked == FATTN_TILES_DEFAULT) {
    const char *s = getenv("FATTN_TILES");
    *policy = FATTN_TILES_AUTO;
    if (s && *s && strcmp(s, "auto") != 0) {
      if (strcmp(s, "off") == 0)
        *policy = FATTN_TILES_OFF;
      else if (strcmp(s, "bf16") == 0)
        *policy = FATTN_TILES_BF16;
      else
        return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                            "FATTN_TILES=%s is not one of auto, off, bf16", s);
    }
  }
  const char *e = getenv("FATTN_TILE_ENGINE");
  int model = 0;
  if (e && *e && strcmp(e, "auto") != 0) {
    if (strcmp(e, "model") != 0)
      return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                          "FATTN_TILE_ENGINE=%s is not one of auto, model", e);
    model = 1;
  }
  *engine = NULL;
  *why = "";
  if (*policy == FATTN_TILES_OFF) {
    *why = "off";
    return FATTN_SUCCESS;
  }
  if (model) {
    *engine = &fattn__tile_model;
    *why = "the portable model (FATTN_TILE_ENGINE=model)";
    return FATTN_SUCCESS;
  }
  *engine = fattn__tile_for(why);
  return FATTN_SUCCESS;
}

fattn_status fattn__bf16_dot_from_env(fattn__bf16_dot_mode *mode) {
  const char *s = getenv("FATTN_BF16_DOT");
  *mode = FATTN__BF16_DOT_AUTO;
  if (!s || !*s || strcmp(s, "auto") == 0) return FATTN_SUCCESS;
  if (strcmp(s, "off") == 0) {
    *mode = FATTN__BF16_DOT_OFF;
    return FATTN_SUCCESS;
  }
  if (strcmp(s, "on") == 0) {
    *mode = FATTN__BF16_DOT_ON;
    return FATTN_SUCCESS;
  }
  return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "FATTN_BF16_DOT=%s is not one of auto, off, on",
                      s);
}

fattn_status fattn__isa_from_env(fattn_backend *cap) {
  const char *s = getenv("FATTN_ISA");
  *cap = FATTN_BACKEND_AUTO;
  if (!s || !*s) return FATTN_SUCCESS;
  static const fattn_backend names[] = {FATTN_BACKEND_SCALAR, FATTN_BACKEND_AVX2,
                                        FATTN_BACKEND_AVX512, FATTN_BACKEND_NEON};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(s, fattn_backend_name(names[i])) == 0) {
      *cap = names[i];
      return FATTN_SUCCESS;
    }
  return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                      "FATTN_ISA=%s is not one of scalar, avx2, avx512, neon", s);
}

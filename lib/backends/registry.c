/* The backends that are not kernel tables, as this build has them: the one
 * place that names them. The framework reaches each through its hooks
 * (fattn__backend_ops, internal.h); a backend reaches the framework through
 * internal.h like any other part, so nothing here depends back on it. */
#include <stddef.h>

#include "internal.h"

#if defined(FATTN_HAVE_ONEDNN)
extern const fattn__backend_ops fattn__onednn_ops; /* backend_onednn.c */
#endif

static const fattn__backend_ops *const registered[] = {
#if defined(FATTN_HAVE_ONEDNN)
    &fattn__onednn_ops,
#endif
    NULL};

_Static_assert(sizeof registered / sizeof registered[0] <= FATTN__MAX_BACKENDS + 1,
               "raise FATTN__MAX_BACKENDS");

const fattn__backend_ops *fattn__backend_at(int i) {
  return i >= 0 && i < (int)(sizeof registered / sizeof registered[0]) ? registered[i] : NULL;
}

const fattn__backend_ops *fattn__backend_find(fattn_backend id, const char **why) {
  for (int i = 0; registered[i]; i++)
    if (registered[i]->id == id) return registered[i];
  if (why)
    *why = id == FATTN_BACKEND_ONEDNN ? "the oneDNN baseline is not in this build (configure "
                                        "with oneDNN: apt-get install libdnnl-dev, "
                                        "FATTN_WITH_ONEDNN=ON)"
                                      : NULL;
  return NULL;
}

void **fattn__backend_state(fattn_context *ctx, const fattn__backend_ops *ops) {
  for (int i = 0; registered[i]; i++)
    if (registered[i] == ops) return &ctx->backend_state[i];
  return NULL; /* not registered: never happens for a backend's own hooks */
}

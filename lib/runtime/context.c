/* Contexts: thread settings, the kernel table AUTO uses, and a pool of
 * reusable workspaces so that concurrent calls on one context never share
 * scratch memory and repeated calls allocate nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "internal.h"

static fattn_status threads_from_env(int *n) {
  const char *s = getenv("FATTN_NUM_THREADS");
  *n = 0;
  if (!s || !*s) return FATTN_SUCCESS;
  char *end;
  long v = strtol(s, &end, 10);
  if (*end != '\0' || v < 1 || v > 4096)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "FATTN_NUM_THREADS=%s is not a thread count in [1, 4096]", s);
  *n = (int)v;
  return FATTN_SUCCESS;
}

static fattn_status context_init(const fattn_context_options *opts, fattn_context *c) {
  fattn_context_options o;
  fattn_context_options_init(&o);
  if (opts) o = *opts;
  if (o.num_threads < 0)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "num_threads = %d is negative",
                        o.num_threads);
  if (o.block_keys < 0 || o.block_queries < 0)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "block_keys and block_queries must be >= 0");
  if ((unsigned)o.pin > (unsigned)FATTN_PIN_NUMA)
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "pin has invalid value %d", (int)o.pin);
  fattn_status st;
  fattn_pin_policy pin;
  char pin_note[sizeof c->pin_note];
  if ((st = fattn__pin_resolve(o.pin, &pin, pin_note, sizeof pin_note)) != FATTN_SUCCESS) return st;
  int n = o.num_threads;
  if (n == 0 && (st = threads_from_env(&n)) != FATTN_SUCCESS) return st;
  if (n == 0) n = fattn__topology_get()->physical_cores;
#if !defined(_OPENMP)
  n = 1;
#endif
  fattn__bf16_dot_mode bf16_dot;
  if ((st = fattn__bf16_dot_from_env(&bf16_dot)) != FATTN_SUCCESS) return st;
  fattn_tile_policy tiles;
  const fattn__tile_table *tile;
  const char *tile_why;
  if ((st = fattn__tiles_resolve(o.tiles, &tiles, &tile, &tile_why)) != FATTN_SUCCESS) return st;
  fattn_backend cap = o.isa_cap;
  if (cap == FATTN_BACKEND_AUTO && (st = fattn__isa_from_env(&cap)) != FATTN_SUCCESS) return st;
  const fattn__kernel_table *t;
  if (cap == FATTN_BACKEND_AUTO) {
    t = fattn__best_table();
  } else if (cap == FATTN_BACKEND_SCALAR || cap == FATTN_BACKEND_AVX2 ||
             cap == FATTN_BACKEND_AVX512 || cap == FATTN_BACKEND_NEON) {
    if (!(t = fattn__table_for(cap, &st))) return st;
  } else {
    return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                        "isa_cap must be AUTO, SCALAR, AVX2, AVX512 or NEON, got %d", (int)cap);
  }
  memset(c, 0, sizeof *c);
  c->num_threads = n;
  c->pin = pin;
  memcpy(c->pin_note, pin_note, sizeof pin_note);
  c->isa_cap = cap;
  c->block_keys = o.block_keys;
  c->block_queries = o.block_queries;
  c->table = t;
  c->bf16_dot = bf16_dot;
  c->tiles = tiles;
  c->tile = tile;
  c->tile_why = tile_why;
  c->layer_backend = FATTN_BACKEND_AUTO;
  if (pthread_mutex_init(&c->lock, NULL) != 0)
    return fattn__error(FATTN_ERROR_OUT_OF_MEMORY, "pthread_mutex_init failed");
  return FATTN_SUCCESS;
}

fattn_status fattn_context_create(const fattn_context_options *opts, fattn_context **ctx) {
  if (!ctx) return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "ctx is NULL");
  *ctx = NULL;
  fattn_context *c = fattn__malloc(sizeof *c);
  if (!c) return fattn__error(FATTN_ERROR_OUT_OF_MEMORY, "context");
  fattn_status st = context_init(opts, c);
  if (st != FATTN_SUCCESS) {
    free(c);
    return st;
  }
  *ctx = c;
  return FATTN_SUCCESS;
}

void fattn_context_destroy(fattn_context *ctx) {
  if (!ctx) return;
  for (int i = 0; i < ctx->nws; i++)
    free(ctx->ws[i].mem);
  for (int i = 0; fattn__backend_at(i); i++)
    if (ctx->backend_state[i] && fattn__backend_at(i)->state_free)
      fattn__backend_at(i)->state_free(ctx->backend_state[i]);
  pthread_mutex_destroy(&ctx->lock);
  free(ctx);
}

/* The default context lives for the whole process. Its creation is retried
 * on later calls if it failed (for example on a bad FATTN_ISA). */
static fattn_context fattn__default_ctx;
static int fattn__default_ready;
static pthread_mutex_t fattn__default_lock = PTHREAD_MUTEX_INITIALIZER;

fattn_status fattn__context_resolve(fattn_context *ctx, fattn_context **out) {
  if (ctx) {
    *out = ctx;
    return FATTN_SUCCESS;
  }
  fattn_status st = FATTN_SUCCESS;
  pthread_mutex_lock(&fattn__default_lock);
  if (!fattn__default_ready) {
    st = context_init(NULL, &fattn__default_ctx);
    fattn__default_ready = st == FATTN_SUCCESS;
  }
  pthread_mutex_unlock(&fattn__default_lock);
  *out = st == FATTN_SUCCESS ? &fattn__default_ctx : NULL;
  return st;
}

fattn_status fattn__workspace_acquire(fattn_context *ctx, size_t bytes, int *slot, void **mem) {
  bytes = (bytes + 63) & ~(size_t)63;
  if (bytes == 0) bytes = 64;
  pthread_mutex_lock(&ctx->lock);
  int pick = -1;
  for (int i = 0; i < ctx->nws; i++) { /* a free one big enough, else any free one */
    if (ctx->ws[i].busy) continue;
    if (ctx->ws[i].bytes >= bytes) {
      pick = i;
      break;
    }
    if (pick < 0) pick = i;
  }
  if (pick < 0 && ctx->nws < FATTN__MAX_WORKSPACES) pick = ctx->nws++;
  if (pick >= 0) ctx->ws[pick].busy = 1;
  pthread_mutex_unlock(&ctx->lock);

  if (pick < 0) { /* more concurrent callers than slots: a one-off buffer */
    void *p = fattn__aligned_alloc(64, bytes);
    if (!p) return fattn__error(FATTN_ERROR_OUT_OF_MEMORY, "workspace of %zu bytes", bytes);
    *slot = -1;
    *mem = p;
    return FATTN_SUCCESS;
  }
  fattn__workspace *w = &ctx->ws[pick];
  if (w->bytes < bytes) {
    free(w->mem);
    w->mem = fattn__aligned_alloc(64, bytes);
    w->bytes = w->mem ? bytes : 0;
    if (!w->mem) {
      fattn__workspace_release(ctx, pick);
      return fattn__error(FATTN_ERROR_OUT_OF_MEMORY, "workspace of %zu bytes", bytes);
    }
  }
  *slot = pick;
  *mem = w->mem;
  return FATTN_SUCCESS;
}

void fattn__workspace_release(fattn_context *ctx, int slot) {
  if (slot < 0) return; /* one-off buffers are freed by the caller */
  pthread_mutex_lock(&ctx->lock);
  ctx->ws[slot].busy = 0;
  pthread_mutex_unlock(&ctx->lock);
}

/* "t0:caller t1:cpu1 t2:cpu2,66 ..." (a worker's place: its allowed PUs) for
 * a call from a thread that floats, or "unpinned". */
static void binding_string(const fattn_context *c, const fattn__topology *t, char *buf, size_t n) {
  if (c->pin == FATTN_PIN_NONE) {
    snprintf(buf, n, "unpinned");
    return;
  }
  int used = snprintf(buf, n, "t0:caller");
  for (int tid = 1; tid < c->num_threads; tid++) {
    const fattn__cpumask *m = &t->place[fattn__place_of(t, c->pin, fattn__worker_slot(t, tid, -1))];
    char item[64];
    int len = snprintf(item, sizeof item, " t%d:cpu", tid);
    for (int i = 0, first = 1; i < FATTN__MAX_CPUS && len < (int)sizeof item - 8; i++)
      if (m->w[i / 64] >> (i % 64) & 1) {
        len += snprintf(item + len, sizeof item - (size_t)len, "%s%d", first ? "" : ",", i);
        first = 0;
      }
    if ((size_t)(used + len + 5) >= n) {
      snprintf(buf + used, n - (size_t)used, " ...");
      return;
    }
    memcpy(buf + used, item, (size_t)len + 1);
    used += len;
  }
}

fattn_status fattn_get_runtime_info(fattn_context *ctx, fattn_runtime_info *info) {
  if (!info) return fattn__error(FATTN_ERROR_INVALID_ARGUMENT, "info is NULL");
  fattn_context *c;
  fattn_status st = fattn__context_resolve(ctx, &c);
  if (st != FATTN_SUCCESS) return st;
  const fattn__topology *t = fattn__topology_get();
  memset(info, 0, sizeof *info);
  fattn__cpu_feature_string(fattn__cpu_features(), info->isa_detected, sizeof info->isa_detected);
  info->isa_best = fattn__best_table()->backend;
  info->isa_selected = c->table->backend;
  info->num_threads = c->num_threads;
  info->physical_cores = t->physical_cores;
  info->logical_cpus = t->logical_cpus;
  info->numa_nodes = t->numa_nodes;
  info->l1d_bytes = t->l1d;
  info->l2_bytes = t->l2;
  info->l3_bytes = t->l3;
  info->pin = c->pin;
#if defined(_OPENMP)
  info->has_openmp = 1;
#endif
#if defined(FATTN_HAVE_HWLOC)
  info->has_hwloc = 1;
#endif
  const fattn__backend_ops *onednn = fattn__backend_find(FATTN_BACKEND_ONEDNN, NULL);
  if (onednn) {
    info->has_onednn = 1;
    snprintf(info->onednn_version, sizeof info->onednn_version, "%s", onednn->version());
  }
  /* where the CPU has the bf16 dot, whether all-bf16 calls take it */
  const char *bd = "";
  if (fattn__bf16_dot_for(c->table))
    bd = c->bf16_dot == FATTN__BF16_DOT_ON    ? "; bf16 dot: on (FATTN_BF16_DOT=on)"
         : c->bf16_dot == FATTN__BF16_DOT_OFF ? "; bf16 dot: off (FATTN_BF16_DOT=off)"
         : (fattn__cpu_features() & FATTN__CPU_BF16DOT_FAST)
             ? "; bf16 dot: on for bf16 q"
             : "; bf16 dot: off (slower than FMA on this CPU)";
  /* the matrix engine: which one runs the eligible calls, or why none does */
  char amx[128] = "";
  info->tiles = c->tiles;
  if (c->tile) {
    snprintf(info->tile_engine, sizeof info->tile_engine, "%s", c->tile->name);
    snprintf(amx, sizeof amx, "; tiles: %s for %s", c->tile_why[0] ? c->tile_why : c->tile->name,
             c->tiles == FATTN_TILES_BF16 ? "f32 / f16 / bf16 (rounded to bf16)" : "all-bf16");
  } else if (c->tiles == FATTN_TILES_OFF) {
    snprintf(amx, sizeof amx, "; tiles: off");
  } else if (!(fattn__cpu_features() & FATTN__CPU_AMX_BF16)) {
    snprintf(amx, sizeof amx, "; tiles: none (no AMX)");
  } else {
    snprintf(amx, sizeof amx, "; tiles: none (%s)", c->tile_why);
  }
  snprintf(info->notes, sizeof info->notes, "topology from %s; %s%s%s",
           t->from_hwloc ? "hwloc" : "sysconf (no hwloc)", c->pin_note, bd, amx);
  binding_string(c, t, info->binding, sizeof info->binding);
  return FATTN_SUCCESS;
}

/* Thread pinning: which place a thread of a call's OpenMP region runs on, the
 * system calls that bind it, and the policy a context applies.
 *
 * Places come from topology.c (hwloc): one per allowed physical core, taken
 * in node-by-node order (CORES) or round-robin over NUMA nodes (NUMA). The
 * calling thread (thread 0) is never moved: binding it per call and giving
 * its set back cost 12 µs on a 30 µs call here (the migrations). So the
 * workers 1..n-1 take the places after the first, leaving the first for the
 * caller to float onto; when the application confined the caller to one core,
 * the workers take the other places instead. Workers wrap around when there
 * are more threads than cores. OpenMP's pool threads stay bound, and a
 * thread-local record spares them the system call on the next call. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#if defined(__linux__)
#include <pthread.h>
#define FATTN__HAVE_AFFINITY 1
#endif

int fattn__place_of(const fattn__topology *t, fattn_pin_policy policy, int slot) {
  return policy == FATTN_PIN_NUMA ? t->spread[slot] : slot;
}

#if defined(FATTN__HAVE_AFFINITY)
int fattn__affinity_get(fattn__cpumask *m) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) != 0) return 0;
  memset(m, 0, sizeof *m);
  for (int i = 0; i < FATTN__MAX_CPUS && i < CPU_SETSIZE; i++)
    if (CPU_ISSET(i, &set)) m->w[i / 64] |= (uint64_t)1 << (i % 64);
  return 1;
}

int fattn__affinity_set(const fattn__cpumask *m) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int i = 0; i < FATTN__MAX_CPUS && i < CPU_SETSIZE; i++)
    if (m->w[i / 64] >> (i % 64) & 1) CPU_SET(i, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}
#else
int fattn__affinity_get(fattn__cpumask *m) {
  (void)m;
  return 0;
}
int fattn__affinity_set(const fattn__cpumask *m) {
  (void)m;
  return 0;
}
#endif

static int subset(const fattn__cpumask *a, const fattn__cpumask *b) {
  for (int i = 0; i < FATTN__MAX_CPUS / 64; i++)
    if (a->w[i] & ~b->w[i]) return 0;
  return 1;
}

int fattn__caller_slot(fattn_pin_policy policy) {
  const fattn__topology *t = fattn__topology_get();
  fattn__cpumask m;
  if (t->nplaces == 0 || !fattn__affinity_get(&m)) return -1;
  for (int k = 0; k < t->nplaces; k++)
    if (subset(&m, &t->place[fattn__place_of(t, policy, k)])) return k;
  return -1;
}

int fattn__worker_slot(const fattn__topology *t, int tid, int caller_slot) {
  if (t->nplaces == 1) return 0;
  if (caller_slot < 0) return tid % t->nplaces; /* slot 0 left to the caller */
  const int k = (tid - 1) % (t->nplaces - 1);   /* the slots other than the caller's */
  return k < caller_slot ? k : k + 1;
}

/* The place this thread was bound to by an earlier call, +1 (0: none). */
static _Thread_local int fattn__bound_place;

void fattn__pin_worker(fattn_pin_policy policy, int tid, int caller_slot) {
  const fattn__topology *t = fattn__topology_get();
  if (t->nplaces == 0 || tid == 0) return;
  const int p = fattn__place_of(t, policy, fattn__worker_slot(t, tid, caller_slot));
  if (fattn__bound_place == p + 1) return;
  fattn__bound_place = fattn__affinity_set(&t->place[p]) ? p + 1 : 0;
}

/* The OpenMP variable that binds threads, if the environment sets one. */
static const char *omp_binding_var(char *buf, size_t n) {
  static const char *const vars[] = {"OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY",
                                     "KMP_AFFINITY"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (!v || !*v) continue;
    if (i == 0 && strcasecmp(v, "false") == 0) continue;
    if (i == 3 && (strstr(v, "disabled") || strstr(v, "none"))) continue;
    snprintf(buf, n, "%s=%s", vars[i], v);
    return buf;
  }
  return NULL;
}

fattn_status fattn__pin_resolve(fattn_pin_policy asked, fattn_pin_policy *applied, char *note,
                                size_t n) {
  if (asked == FATTN_PIN_DEFAULT) {
    const char *s = getenv("FATTN_PIN");
    if (!s || !*s)
      asked = FATTN_PIN_DEFAULT;
    else if (!strcmp(s, "none"))
      asked = FATTN_PIN_NONE;
    else if (!strcmp(s, "cores"))
      asked = FATTN_PIN_CORES;
    else if (!strcmp(s, "numa"))
      asked = FATTN_PIN_NUMA;
    else
      return fattn__error(FATTN_ERROR_INVALID_ARGUMENT,
                          "FATTN_PIN=%s is not one of none, cores, numa", s);
  }
  const fattn__topology *t = fattn__topology_get();
  char var[96];
  *applied = FATTN_PIN_NONE;
  if (asked == FATTN_PIN_NONE) {
    snprintf(note, n, "threads are not pinned (asked: none)");
#if !defined(_OPENMP)
  } else if (1) {
    snprintf(note, n, "threads are not pinned: built without OpenMP (one thread per call)");
#endif
  } else if (omp_binding_var(var, sizeof var)) {
    snprintf(note, n, "threads are not pinned by fattn: %s binds them (respected)", var);
  } else if (!t->from_hwloc || t->nplaces == 0) {
#if defined(FATTN__HAVE_AFFINITY)
    snprintf(note, n, "threads are not pinned: %s",
             t->from_hwloc ? "hwloc found no usable core" : "built without hwloc");
#else
    snprintf(note, n, "threads are not pinned: no thread affinity on this OS");
#endif
  } else {
#if defined(FATTN__HAVE_AFFINITY)
    *applied = asked == FATTN_PIN_NUMA ? FATTN_PIN_NUMA : FATTN_PIN_CORES;
    snprintf(note, n, "one thread per physical core (%s), %d cores on %d NUMA node(s)",
             *applied == FATTN_PIN_NUMA ? "spread over NUMA nodes" : "compact", t->nplaces,
             t->numa_nodes);
#else
    snprintf(note, n, "threads are not pinned: no thread affinity on this OS");
#endif
  }
  return FATTN_SUCCESS;
}

/* Machine topology: cores, NUMA nodes and cache sizes, from hwloc when the
 * build has it (honouring the process's allowed CPU set), else from the
 * affinity mask and sysconf. Discovered once. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "internal.h"

#if defined(FATTN_HAVE_HWLOC)
#include <hwloc.h>
#endif

/* Used when nothing reports a size: typical of current server cores. */
#define FATTN__DEFAULT_L1D (32 << 10)
#define FATTN__DEFAULT_L2 (1 << 20)
#define FATTN__DEFAULT_L3 (8 << 20)

static fattn__topology fattn__topo;
static pthread_once_t fattn__topo_once = PTHREAD_ONCE_INIT;

static int allowed_cpus(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

static void from_sysconf(fattn__topology *t) {
  t->logical_cpus = allowed_cpus();
  t->physical_cores = t->logical_cpus; /* SMT siblings cannot be told apart without hwloc */
  t->numa_nodes = 1;
#if defined(_SC_LEVEL1_DCACHE_SIZE)
  long v;
  if ((v = sysconf(_SC_LEVEL1_DCACHE_SIZE)) > 0) t->l1d = v;
  if ((v = sysconf(_SC_LEVEL2_CACHE_SIZE)) > 0) t->l2 = v;
  if ((v = sysconf(_SC_LEVEL3_CACHE_SIZE)) > 0) t->l3 = v;
#endif
}

#if defined(FATTN_HAVE_HWLOC)
static int64_t cache_size(hwloc_topology_t topo, hwloc_obj_type_t type) {
  hwloc_obj_t o = hwloc_get_obj_by_type(topo, type, 0);
  return o && o->attr ? (int64_t)o->attr->cache.size : 0;
}

static int from_hwloc(fattn__topology *t) {
  hwloc_topology_t topo;
  if (hwloc_topology_init(&topo) != 0) return 0;
  if (hwloc_topology_load(topo) != 0) {
    hwloc_topology_destroy(topo);
    return 0;
  }
  int cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
  int pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
  int numa = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
  t->physical_cores = cores > 0 ? cores : (pus > 0 ? pus : 1);
  t->logical_cpus = pus > 0 ? pus : t->physical_cores;
  t->numa_nodes = numa > 0 ? numa : 1;
  int64_t v;
  if ((v = cache_size(topo, HWLOC_OBJ_L1CACHE)) > 0) t->l1d = v;
  if ((v = cache_size(topo, HWLOC_OBJ_L2CACHE)) > 0) t->l2 = v;
  if ((v = cache_size(topo, HWLOC_OBJ_L3CACHE)) > 0) t->l3 = v;
  hwloc_topology_destroy(topo);
  t->from_hwloc = 1;
  return 1;
}
#endif

static void topo_init(void) {
  fattn__topology *t = &fattn__topo;
  int ok = 0;
#if defined(FATTN_HAVE_HWLOC)
  ok = from_hwloc(t);
#endif
  if (!ok) from_sysconf(t);
  if (t->l1d <= 0) t->l1d = FATTN__DEFAULT_L1D;
  if (t->l2 <= 0) t->l2 = FATTN__DEFAULT_L2;
  if (t->l3 <= 0) t->l3 = FATTN__DEFAULT_L3;
}

const fattn__topology *fattn__topology_get(void) {
  pthread_once(&fattn__topo_once, topo_init);
  return &fattn__topo;
}

/* Machine topology: cores, NUMA nodes and cache sizes, from hwloc when the
 * build has it (honouring the process's allowed CPU set), else from the
 * affinity mask and sysconf. Discovered once. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <string.h>
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

static void mask_from_bitmap(hwloc_const_bitmap_t b, fattn__cpumask *m) {
  memset(m, 0, sizeof *m);
  unsigned i;
  hwloc_bitmap_foreach_begin(i, b) {
    if (i < FATTN__MAX_CPUS) m->w[i / 64] |= (uint64_t)1 << (i % 64);
  }
  hwloc_bitmap_foreach_end();
}

/* Places: the cores with at least one PU the process may run on (hwloc
 * already drops what cgroups forbid; the process's binding adds taskset).
 * Cores go in hwloc's logical order, which keeps NUMA nodes together; the
 * spread order deals them round-robin over the nodes. */
static void find_places(hwloc_topology_t topo, fattn__topology *t) {
  hwloc_bitmap_t allowed = hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(topo));
  hwloc_bitmap_t bound = hwloc_bitmap_alloc(), pus = hwloc_bitmap_alloc();
  if (!allowed || !bound || !pus) goto done;
  if (hwloc_get_cpubind(topo, bound, HWLOC_CPUBIND_PROCESS) == 0 && !hwloc_bitmap_iszero(bound))
    hwloc_bitmap_and(allowed, allowed, bound);
  const int ncores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
  const int nnodes = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
  for (int c = 0; c < ncores && t->nplaces < FATTN__MAX_PLACES; c++) {
    hwloc_obj_t core = hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE, (unsigned)c);
    hwloc_bitmap_and(pus, core->cpuset, allowed);
    if (hwloc_bitmap_iszero(pus) || hwloc_bitmap_last(pus) >= FATTN__MAX_CPUS) continue;
    int node = 0;
    for (int n = 0; n < nnodes; n++)
      if (hwloc_bitmap_intersects(
              hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, (unsigned)n)->cpuset, pus))
        node = n;
    mask_from_bitmap(pus, &t->place[t->nplaces]);
    t->place_node[t->nplaces++] = node;
  }
  /* Round r takes the r-th place of every node, in node order. */
  int nodes_with = 0;
  for (int n = 0; n < nnodes; n++)
    for (int p = 0; p < t->nplaces; p++)
      if (t->place_node[p] == n) {
        nodes_with++;
        break;
      }
  for (int round = 0, k = 0; k < t->nplaces; round++)
    for (int n = 0; n < (nnodes > 0 ? nnodes : 1); n++)
      for (int p = 0, seen = 0; p < t->nplaces; p++)
        if (t->place_node[p] == n && seen++ == round) {
          t->spread[k++] = p;
          break;
        }
  t->numa_nodes = nodes_with > 0 ? nodes_with : 1;
  t->logical_cpus = hwloc_bitmap_weight(allowed);
done:
  hwloc_bitmap_free(allowed);
  hwloc_bitmap_free(bound);
  hwloc_bitmap_free(pus);
}

static int from_hwloc(fattn__topology *t) {
  hwloc_topology_t topo;
  if (hwloc_topology_init(&topo) != 0) return 0;
  if (hwloc_topology_load(topo) != 0) {
    hwloc_topology_destroy(topo);
    return 0;
  }
  find_places(topo, t);
  if (t->nplaces == 0) { /* nothing usable found: count what hwloc sees */
    int cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    int pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    t->logical_cpus = pus > 0 ? pus : 1;
    t->physical_cores = cores > 0 ? cores : t->logical_cpus;
    t->numa_nodes = 1;
  } else {
    t->physical_cores = t->nplaces;
  }
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

/* Every allocation the framework makes goes through here, so that tests can
 * make the n-th next one fail (fault injection, tests/test_faults.c) and
 * check that each entry point then returns FATTN_ERROR_OUT_OF_MEMORY, leaks
 * nothing and works on the next call. oneDNN's own allocations are not
 * covered. */
#include <stdatomic.h>
#include <stdlib.h>

#include "internal.h"

/* 0: off. n > 0: the n-th allocation from now fails (then off again). */
static atomic_long fattn__fail_countdown;

void fattn__fault_inject(long n) { atomic_store(&fattn__fail_countdown, n); }

long fattn__fault_pending(void) { return atomic_load(&fattn__fail_countdown); }

static int fail_now(void) {
  long c = atomic_load(&fattn__fail_countdown);
  while (c > 0) {
    if (atomic_compare_exchange_weak(&fattn__fail_countdown, &c, c - 1)) return c == 1;
  }
  return 0;
}

void *fattn__malloc(size_t bytes) { return fail_now() ? NULL : malloc(bytes); }

void *fattn__calloc(size_t n, size_t size) { return fail_now() ? NULL : calloc(n, size); }

/* `bytes` is rounded up to a multiple of `align` (a power of two) here. */
void *fattn__aligned_alloc(size_t align, size_t bytes) {
  if (fail_now()) return NULL;
  const size_t rounded = (bytes + align - 1) & ~(align - 1);
  return rounded < bytes ? NULL : aligned_alloc(align, rounded);
}

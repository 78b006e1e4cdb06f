/* What the fuzz targets share: reading the input byte by byte, and the poison
 * that marks an output the library must not write. */
#ifndef FATTN_FUZZ_COMMON_H
#define FATTN_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct bytes {
  const uint8_t *p;
  size_t n;
} bytes;

static inline unsigned take(bytes *b) { /* 0 once the input is used up */
  if (!b->n) return 0;
  b->n--;
  return *b->p++;
}

#define POISON 0x7fc0deadu

static inline void fill_poison(float *x, size_t n) {
  const uint32_t u = POISON;
  for (size_t i = 0; i < n; i++)
    memcpy(&x[i], &u, 4);
}

static inline int is_poison(const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &x[i], 4);
    if (u != POISON) return 0;
  }
  return 1;
}

#endif

/* The tile kernels on Intel AMX (AMX-TILE + AMX-BF16): the template
 * kernels/bf16-tile-template.h with its tile operations mapped to the
 * instructions. Built with -mamx-tile -mamx-bf16; called only once
 * fattn__cpu_features() reports FATTN__CPU_AMX_BF16 and the OS granted the
 * tile state (fattn__amx_permit). */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* LDTILECFG's 64-byte operand: palette 1, every tile 16 rows × 64 bytes. */
typedef struct ft_cfg {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} ft_cfg;

static void ft_config(void) {
  ft_cfg c;
  memset(&c, 0, sizeof c);
  c.palette = 1;
  for (int t = 0; t < 8; t++) {
    c.colsb[t] = 64;
    c.rows[t] = 16;
  }
  _tile_loadconfig(&c);
}

#define FT_SUFFIX amx
#define FT_NAME fattn__tile_amx
#define FT_STR "amx"
#define FT_CONFIG() ft_config()
#define FT_ZERO(t) _tile_zero(t)
#define FT_LOAD(t, p, stride) _tile_loadd(t, p, stride)
#define FT_STORE(t, p, stride) _tile_stored(t, p, stride)
#define FT_DP(c, a, b) _tile_dpbf16ps(c, a, b)
#define FT_RELEASE() _tile_release()

#include "bf16-tile-template.h"

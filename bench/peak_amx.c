/* The TDPBF16PS throughput loop (AMX-TILE + AMX-BF16): the peak of the tile
 * family. Four independent C tiles fed by two A and two B tiles; each
 * instruction is 16 × 16 outputs × 32 products × 2 FLOPs. The process asks
 * Linux for the tile data state first (arch_prctl ARCH_REQ_XCOMP_PERM);
 * a refusal returns 0 (no probe). */
#define _DEFAULT_SOURCE /* syscall() */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "peak.h"

double fattn_bench_tdpbf16_amx(int64_t iters) {
  if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) return 0;
  struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
  } cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; t++)
    cfg.colsb[t] = 64, cfg.rows[t] = 16;
  static const uint16_t zeros[16 * 32]; /* bf16 zeros: the values do not matter */
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, zeros, 64);
  _tile_loadd(5, zeros, 64);
  _tile_loadd(6, zeros, 64);
  _tile_loadd(7, zeros, 64);
  for (int64_t i = 0; i < iters; i++) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  float out[16 * 16];
  _tile_stored(0, out, 64); /* keeps the loop */
  _tile_release();
  return (double)iters * 4 * 16 * 16 * 32 * 2 + out[0];
}

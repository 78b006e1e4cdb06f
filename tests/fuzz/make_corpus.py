#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora: tests/fuzz/corpus/ for fuzz_sdpa and
tests/fuzz/corpus_layers/ for fuzz_layers, each a few hand-made problems (valid
small ones of each feature, and each kind of bad input) plus deterministic
random ones. Byte meanings: tests/fuzz/fuzz_sdpa.c, tests/fuzz/fuzz_layers.c."""
import os, random

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(here, exist_ok=True)

def dim(n):  # pick_dim: c % 16 >= 4 then a byte v gives 1 + ((c // 16) * 256 + v) % max
    return [4, n - 1]

# B, Hkv, gsel, Lq, Lk, D, dvsel, layout, dts, msel, misc, bsel, ssel, data...
seeds = {
    "plain": [dim(1), dim(2), 1, dim(5), dim(9), dim(8), 1, 0, 1, 0, 8, 0, 0],
    "gqa_causal_lse": [dim(2), dim(2), 3, dim(7), dim(7), dim(16), 1, 0, 1, 0, 8 | 1, 8, 1],
    "bshd_mask_u8": [dim(1), dim(1), 0, dim(4), dim(12), dim(3), 1, 1, 1, 3, 0, 16, 2],
    "padded_additive_bcast": [dim(2), dim(1), 1, dim(3), dim(10), dim(5), 1, 2, 1, 5, 2, 24, 3],
    "inner2_kvlens": [dim(2), dim(1), 0, dim(2), dim(11), dim(4), 0, 3, 1, 0, 16 | 8, 32, 0],
    "decode_split": [dim(1), dim(1), 3, dim(1), [4 + 16 * 3, 240], dim(8), 1, 0, 1, 0, 8, 32, 0],
    "zero_dim": [0, dim(1), 0, dim(1), dim(1), dim(1), 1, 0, 1, 0, 0, 0, 0],
    "huge_dim": [2, dim(1), 0, dim(2), dim(2), dim(2), 1, 0, 1, 0, 0, 0, 0],
    "bad_dtype": [dim(1), dim(1), 0, dim(2), dim(2), dim(2), 1, 0, 7 * 6, 0, 0, 0, 0],
    "bad_scale": [dim(1), dim(1), 0, dim(2), dim(2), dim(2), 1, 0, 1, 0, 0, 0, 5],
    "bad_causal": [dim(1), dim(1), 0, dim(2), dim(2), dim(2), 1, 0, 1, 0, 6, 0, 0],
    "overlap_out": [dim(1), dim(1), 0, dim(3), dim(3), dim(8), 1, 8, 1, 0, 0, 0, 0],
    "zero_stride_q": [dim(1), dim(2), 0, dim(3), dim(3), dim(4), 1, 5 + 6, 1, 0, 0, 0, 0],
    "h_not_multiple": [dim(1), dim(2), 7, dim(2), dim(2), dim(2), 1, 0, 1, 0, 0, 0, 0],
    "onednn": [dim(1), dim(2), 1, dim(6), dim(6), dim(8), 1, 0, 1, 1, 1, 5, 0],
}
rng = random.Random(1234)
def flat(xs):
    return [y for x in xs for y in (x if isinstance(x, list) else [x])]

for name, head in seeds.items():
    data = bytes(flat(head)) + bytes(rng.randrange(256) for _ in range(512))
    open(os.path.join(here, name), "wb").write(data)
for i in range(16):
    n = rng.choice([16, 64, 256, 1024])
    open(os.path.join(here, "random%02d" % i), "wb").write(bytes(rng.randrange(256) for _ in range(n)))

# fuzz_layers: pick() reads c, then (when c % 24 >= 3) a byte v: 1 + (c // 24 + v) % max
layers = os.path.join(os.path.dirname(here), "corpus_layers")
os.makedirs(layers, exist_ok=True)
def ld(n):
    return [3, n - 1]

# mha: sel(even), H, hsel, ksel, flags, [kdim, vdim if flags & 8], wnull,
#      B, Lq, Lk, fsel, msel, asel, head-mask bits, data...
# encoder: sel(odd), H, hsel, flags, esel, F, wnull, B, L, asel, msel, data...
layer_seeds = {
    "mha_self_avg_weights": [0, ld(2), 3, 1, 1, 0, ld(2), ld(5), ld(5), 1, 0, 1, 0xFF],
    "mha_cross_kdim_vdim_mqa": [2, ld(2), 3, 2, 1 | 4 | 8, ld(6), ld(7), 0, ld(2), ld(4), ld(9),
                                0, 1 | 4, 2, 0xFF],
    "mha_masks_f32_perhead_causal_headmask": [4, ld(4), 1, 0, 1 | 2, 0, ld(2), ld(6), ld(7), 0,
                                              1 | 2 | 4 | 8 | 16, 2 | 4 | 8, 0b11001111],
    "mha_small_blocks_nobias": [4, ld(2), 7, 1, 2, 0, ld(3), ld(17), ld(19), 0, 1 | 4, 1, 0xFF],
    "mha_bad_e_not_divisible": [0, ld(2), 22, 1, 1, 0, ld(1), ld(2), ld(2), 1, 0, 0, 0xFF],
    "mha_bad_kv_heads": [0, ld(2), 3, 5, 1, 0, ld(1), ld(2), ld(2), 1, 0, 0, 0xFF],
    "mha_bad_null_out_weight": [0, ld(2), 3, 1, 1, 1, ld(1), ld(2), ld(2), 1, 0, 0, 0xFF],
    "mha_bad_forward_zero_batch": [0, ld(2), 3, 1, 1, 0, 0, ld(2), ld(2), 1, 0, 0, 0xFF],
    "mha_bad_mask_dtype": [0, ld(2), 3, 1, 1, 0, ld(1), ld(3), ld(3), 1, 4 + 41 * 2, 0, 0xFF],
    "enc_post_relu": [1, ld(2), 3, 4, 0, ld(16), 0, ld(2), ld(5), 0, 0],
    "enc_pre_gelu_2layers_inplace": [3, ld(2), 3, 1 | 4 | 8, 1, ld(12), 0, ld(2), ld(6), 1 | 2,
                                     1 | 4 | 8],
    "enc_bad_eps_nan": [1, ld(2), 3, 4, 12, ld(8), 0, ld(1), ld(3), 0, 0],
    "enc_bad_activation": [1, ld(2), 3, 4, 9, ld(8), 0, ld(1), ld(3), 0, 0],
    "enc_bad_missing_linear2": [1, ld(2), 3, 4, 0, ld(8), 1, ld(1), ld(3), 0, 0],
}
for name, head in layer_seeds.items():
    data = bytes(flat(head)) + bytes(rng.randrange(256) for _ in range(1024))
    open(os.path.join(layers, name), "wb").write(data)
for i in range(16):
    n = rng.choice([32, 256, 1024, 2048])
    open(os.path.join(layers, "random%02d" % i), "wb").write(
        bytes([i % 8]) + bytes(rng.randrange(256) for _ in range(n)))

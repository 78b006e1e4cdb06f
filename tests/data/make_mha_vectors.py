#!/usr/bin/python3
"""Reference vectors for fattn's multi-head attention and encoder layers,
from PyTorch's nn.MultiheadAttention / nn.TransformerEncoderLayer (Debian's
python3-torch, 1.13). Run from anywhere: writes tests/data/*.fvec beside this
script. The vectors are committed; the tests only read them.

File format (little endian): b"FVEC", u32 version (1), u32 count, then per
tensor: name (48 bytes, NUL padded), u32 dtype (0 f32, 1 u8), u32 ndim,
i64 dims[4] (unused dims 1), the data, row major.

Each file holds the layer's configuration as tensors too (cfg_*: int64 values
stored as f32, all small), its weights under PyTorch's own names, the inputs,
and the expected outputs (out, and attn_weights when asked for)."""
import os
import struct

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, tensors):
    with open(os.path.join(HERE, name + ".fvec"), "wb") as f:
        f.write(b"FVEC" + struct.pack("<II", 1, len(tensors)))
        for key, t in tensors:
            t = t.detach().contiguous()
            if t.dtype == torch.bool:
                t, dt = t.to(torch.uint8), 1
            else:
                t, dt = t.to(torch.float32), 0
            dims = list(t.shape) + [1] * (4 - t.dim())
            assert t.dim() <= 4 and len(key) < 48
            f.write(key.encode().ljust(48, b"\0"))
            f.write(struct.pack("<II4q", dt, t.dim(), *dims))
            f.write(t.numpy().tobytes())
    print(name, ", ".join(k for k, _ in tensors))


def cfg(**kw):
    return [("cfg_" + k, torch.tensor([float(v)])) for k, v in kw.items()]


def mha_case(name, E, H, B, Lq, Lk, kdim=None, vdim=None, bias=True, batch_first=True,
             self_attn=False, kpm=None, attn_mask=None, causal=False, need_weights=True,
             average=True, backward=False, seed=0):
    torch.manual_seed(seed)
    m = nn.MultiheadAttention(E, H, bias=bias, batch_first=batch_first, kdim=kdim, vdim=vdim)
    with torch.no_grad():  # biases are zero by default: make them count
        for p in m.parameters():
            p.uniform_(-0.5, 0.5)
    m.eval()
    kd, vd = kdim or E, vdim or E
    shp = (lambda L, F: (B, L, F)) if batch_first else (lambda L, F: (L, B, F))
    q = torch.randn(*shp(Lq, E)).requires_grad_(backward)
    k = q if self_attn else torch.randn(*shp(Lk, kd)).requires_grad_(backward)
    v = q if self_attn else torch.randn(*shp(Lk, vd)).requires_grad_(backward)
    mask = attn_mask
    if causal:  # PyTorch 1.13's MHA has no is_causal: the float mask it stands for
        mask = torch.triu(torch.full((Lq, Lk), float("-inf")), diagonal=1)
    out, w = m(q, k, v, key_padding_mask=kpm, attn_mask=mask, need_weights=need_weights,
               average_attn_weights=average)
    t = cfg(embed_dim=E, num_heads=H, num_kv_heads=H, kdim=kd, vdim=vd, bias=int(bias),
            batch_first=int(batch_first), batch=B, q_len=Lq, kv_len=Lk, self_attn=int(self_attn),
            is_causal=int(causal), need_weights=int(need_weights), average=int(average))
    for pn, p in m.named_parameters():
        t.append((pn, p))
    t += [("query", q), ("key", k), ("value", v)]
    if kpm is not None:
        t.append(("key_padding_mask", kpm))
    if attn_mask is not None:
        t.append(("attn_mask", attn_mask))
    t.append(("out", out))
    if need_weights:
        t.append(("attn_weights", w))
    if backward:
        t += backward_tensors(out, m.named_parameters(), [("query", q), ("key", k), ("value", v)])
    write(name, t)


def backward_tensors(out, params, inputs):
    """dout (seeded), and autograd's gradients: grad_<parameter name> and
    grad_<input> (an input given twice, as in self-attention, once)."""
    dout = torch.randn(out.shape)
    params = list(params)
    out.backward(dout)
    t = [("dout", dout)]
    t += [("grad_" + pn, p.grad) for pn, p in params]
    seen = []
    for n, x in inputs:
        if not any(x is y for y in seen):
            seen.append(x)
            t.append(("grad_" + n, x.grad))
    return t


def gqa_case(name, E, H, Hkv, B, L, backward=False, seed=0):
    """Grouped-query attention: PyTorch has no GQA layer, so the reference is
    written out: projections, K/V heads repeat_interleave'd to H, softmax."""
    torch.manual_seed(seed)
    hd, Ekv = E // H, (E // H) * Hkv
    W = torch.rand(E + 2 * Ekv, E) - 0.5
    bvec = torch.rand(E + 2 * Ekv) - 0.5
    Wo, bo = torch.rand(E, E) - 0.5, torch.rand(E) - 0.5
    x = torch.randn(B, L, E)
    for p in (W, bvec, Wo, bo, x):
        p.requires_grad_(backward)
    qkv = x @ W.T + bvec
    q, k, v = qkv.split([E, Ekv, Ekv], dim=-1)
    q = q.view(B, L, H, hd).transpose(1, 2)
    k = k.view(B, L, Hkv, hd).transpose(1, 2).repeat_interleave(H // Hkv, dim=1)
    v = v.view(B, L, Hkv, hd).transpose(1, 2).repeat_interleave(H // Hkv, dim=1)
    s = q @ k.transpose(-1, -2) / hd ** 0.5
    s = s + torch.triu(torch.full((L, L), float("-inf")), diagonal=1)
    w = s.softmax(-1)
    o = (w @ v).transpose(1, 2).reshape(B, L, E) @ Wo.T + bo
    t = cfg(embed_dim=E, num_heads=H, num_kv_heads=Hkv, kdim=E, vdim=E, bias=1, batch_first=1,
            batch=B, q_len=L, kv_len=L, self_attn=1, is_causal=1, need_weights=1, average=0)
    t += [("in_proj_weight", W), ("in_proj_bias", bvec), ("out_proj.weight", Wo),
          ("out_proj.bias", bo), ("query", x), ("key", x), ("value", x), ("out", o),
          ("attn_weights", w)]
    if backward:
        t += backward_tensors(o, [("in_proj_weight", W), ("in_proj_bias", bvec),
                                  ("out_proj.weight", Wo), ("out_proj.bias", bo)],
                              [("query", x)])
    write(name, t)


def encoder_case(name, E, H, F, B, L, layers=1, norm_first=False, activation="relu",
                 batch_first=True, kpm=None, causal=False, backward=False, seed=0):
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(E, H, dim_feedforward=F, dropout=0.0,
                                       activation=activation, batch_first=batch_first,
                                       norm_first=norm_first)
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(-0.5, 0.5)
    # grad stays enabled: PyTorch's inference fast path (nested tensors, which
    # zero padded positions) is then not taken
    enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    enc.eval()
    x = (torch.randn(B, L, E) if batch_first else torch.randn(L, B, E)).requires_grad_(backward)
    mask = torch.triu(torch.full((L, L), float("-inf")), diagonal=1) if causal else None
    out = enc(x, mask=mask, src_key_padding_mask=kpm)
    t = cfg(embed_dim=E, num_heads=H, dim_feedforward=F, layers=layers,
            norm_first=int(norm_first), gelu=int(activation == "gelu"),
            batch_first=int(batch_first), batch=B, seq_len=L, is_causal=int(causal))
    for pn, p in enc.named_parameters():
        t.append((pn, p))
    t.append(("src", x))
    if kpm is not None:
        t.append(("src_key_padding_mask", kpm))
    t.append(("out", out))
    if backward:
        t += backward_tensors(out, enc.named_parameters(), [("src", x)])
    write(name, t)


def main():
    torch.set_num_threads(1)
    kpm = torch.tensor([[False] * 5 + [True] * 1, [False] * 4 + [True] * 2])  # B 2, Lk 6
    mha_case("mha_self", E=16, H=4, B=2, Lq=5, Lk=5, self_attn=True, seed=1)
    mha_case("mha_self_seqfirst_perhead", E=16, H=4, B=2, Lq=5, Lk=5, self_attn=True,
             batch_first=False, average=False, seed=2)
    mha_case("mha_causal", E=16, H=2, B=2, Lq=7, Lk=7, self_attn=True, causal=True,
             average=False, seed=3)
    mha_case("mha_cross_kdim_vdim", E=12, H=3, B=2, Lq=4, Lk=6, kdim=7, vdim=5, seed=4)
    mha_case("mha_cross_kdim_vdim_seqfirst", E=12, H=3, B=2, Lq=4, Lk=6, kdim=7, vdim=5,
             batch_first=False, average=False, seed=5)
    mha_case("mha_key_padding_bool", E=16, H=4, B=2, Lq=3, Lk=6, kpm=kpm, seed=6)
    mha_case("mha_key_padding_float", E=16, H=4, B=2, Lq=3, Lk=6,
             kpm=torch.where(kpm, -1e4, 0.0) + 0.25 * torch.randn(2, 6), seed=7)
    mha_case("mha_attn_mask_float", E=16, H=4, B=2, Lq=3, Lk=6,
             attn_mask=torch.randn(3, 6), seed=8)
    amb = torch.tensor([[False, True, False, False, True, False],
                        [True, False, False, False, False, False],
                        [False, False, True, True, False, False]])
    mha_case("mha_attn_mask_bool_and_padding", E=16, H=4, B=2, Lq=3, Lk=6, attn_mask=amb,
             kpm=kpm, average=False, seed=9)
    mha_case("mha_attn_mask_3d_float", E=16, H=4, B=2, Lq=3, Lk=6,
             attn_mask=torch.randn(2 * 4, 3, 6), kpm=kpm, seed=10)
    mha_case("mha_nobias_seqfirst", E=8, H=2, B=3, Lq=4, Lk=4, bias=False, batch_first=False,
             seed=11)
    mha_case("mha_no_weights", E=16, H=4, B=1, Lq=9, Lk=9, self_attn=True, need_weights=False,
             seed=12)
    gqa_case("mha_gqa", E=16, H=4, Hkv=2, B=2, L=6, seed=13)
    # the backward (dout, then autograd's gradients of the parameters and inputs)
    mha_case("mha_bw_self", E=16, H=4, B=2, Lq=5, Lk=5, self_attn=True, need_weights=False,
             backward=True, seed=31)
    mha_case("mha_bw_causal_seqfirst", E=16, H=2, B=2, Lq=7, Lk=7, self_attn=True, causal=True,
             batch_first=False, need_weights=False, backward=True, seed=32)
    mha_case("mha_bw_cross_kdim_vdim", E=12, H=3, B=2, Lq=4, Lk=6, kdim=7, vdim=5,
             need_weights=False, backward=True, seed=33)
    mha_case("mha_bw_masks_nobias", E=16, H=4, B=2, Lq=3, Lk=6, attn_mask=amb, kpm=kpm,
             bias=False, need_weights=False, backward=True, seed=34)
    mha_case("mha_bw_cross_float_mask", E=16, H=4, B=2, Lq=3, Lk=6,
             attn_mask=torch.randn(2 * 4, 3, 6), need_weights=False, backward=True, seed=35)
    gqa_case("mha_bw_gqa", E=16, H=4, Hkv=2, B=2, L=6, backward=True, seed=36)
    encoder_case("encoder_post_relu", E=16, H=4, F=32, B=2, L=6,
                 kpm=torch.tensor([[False] * 6, [False] * 4 + [True] * 2]), seed=20)
    encoder_case("encoder_pre_gelu_seqfirst_causal", E=16, H=2, F=24, B=2, L=5,
                 norm_first=True, activation="gelu", batch_first=False, causal=True, seed=21)
    encoder_case("encoder_stack2_post", E=8, H=2, F=16, B=2, L=4, layers=2, seed=22)
    encoder_case("encoder_stack2_pre", E=8, H=2, F=16, B=2, L=4, layers=2, norm_first=True,
                 activation="gelu", causal=True, seed=23)
    encoder_case("encoder_bw_post_relu", E=16, H=4, F=32, B=2, L=6,
                 kpm=torch.tensor([[False] * 6, [False] * 4 + [True] * 2]), backward=True,
                 seed=40)
    encoder_case("encoder_bw_pre_gelu_seqfirst_causal", E=16, H=2, F=24, B=2, L=5,
                 norm_first=True, activation="gelu", batch_first=False, causal=True,
                 backward=True, seed=41)
    encoder_case("encoder_bw_stack2_post_gelu", E=8, H=2, F=16, B=2, L=4, layers=2,
                 activation="gelu", backward=True, seed=42)
    encoder_case("encoder_bw_stack2_pre_relu", E=8, H=2, F=16, B=2, L=4, layers=2,
                 norm_first=True, causal=True, backward=True, seed=43)


if __name__ == "__main__":
    main()

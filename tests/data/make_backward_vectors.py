#!/usr/bin/python3
"""Reference gradients for fattn_sdpa_backward from PyTorch's autograd
(Debian's python3-torch, 1.13, whose CPU has no fused SDPA: the attention is
written out, softmax(scale · q·kᵀ + mask) · v, in float64, and
torch.autograd.grad gives dq, dk, dv for a given dout). GQA repeats k and v
over the group with repeat_interleave, so autograd sums dk and dv over it.
Writes tests/data/backward_*.fvec (the format of make_mha_vectors.py); the
vectors are committed and the tests only read them.

Each file: cfg_* (B, H, Hkv, Lq, Lk, D, Dv, causal: 0 none, 1 top-left,
2 bottom-right), q, k, v, dout, optionally attn_mask (additive, [B, 1, Lq,
Lk]), and the expected out, lse, dq, dk, dv."""
import os
import struct

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, tensors):
    with open(os.path.join(HERE, name + ".fvec"), "wb") as f:
        f.write(b"FVEC" + struct.pack("<II", 1, len(tensors)))
        for key, t in tensors:
            t = t.detach().contiguous().to(torch.float32)
            dims = list(t.shape) + [1] * (4 - t.dim())
            assert t.dim() <= 4 and len(key) < 48
            f.write(key.encode().ljust(48, b"\0"))
            f.write(struct.pack("<II4q", 0, t.dim(), *dims))
            f.write(t.numpy().tobytes())
    print(name, ", ".join(k for k, _ in tensors))


def case(name, B, H, Hkv, Lq, Lk, D, Dv, causal=0, mask=False, seed=0):
    torch.manual_seed(seed)
    # float32 values, computed in float64
    q = torch.randn(B, H, Lq, D).float().double().requires_grad_()
    k = torch.randn(B, Hkv, Lk, D).float().double().requires_grad_()
    v = torch.randn(B, Hkv, Lk, Dv).float().double().requires_grad_()
    dout = torch.randn(B, H, Lq, Dv).float().double()
    m = torch.zeros(B, 1, Lq, Lk, dtype=torch.float64)
    if mask:
        m = (torch.rand(B, 1, Lq, Lk) - 0.5).float().double()
        m[torch.rand(B, 1, Lq, Lk) < 0.1] = float("-inf")
    if causal:
        diag = 0 if causal == 1 else Lk - Lq
        i = torch.arange(Lq).view(-1, 1)
        j = torch.arange(Lk).view(1, -1)
        m = m.masked_fill(j > i + diag, float("-inf"))
    G = H // Hkv
    kk, vv = k.repeat_interleave(G, dim=1), v.repeat_interleave(G, dim=1)
    s = q @ kk.transpose(-1, -2) / D ** 0.5 + m
    lse = torch.logsumexp(s, dim=-1, keepdim=True)
    out = torch.softmax(s, dim=-1) @ vv
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), dout)
    t = [("cfg_" + n, torch.tensor([float(x)])) for n, x in
         [("B", B), ("H", H), ("Hkv", Hkv), ("Lq", Lq), ("Lk", Lk), ("D", D), ("Dv", Dv),
          ("causal", causal)]]
    t += [("q", q), ("k", k), ("v", v), ("dout", dout)]
    if mask:
        t.append(("attn_mask", m if not causal else m))
    t += [("out", out), ("lse", lse), ("dq", dq), ("dk", dk), ("dv", dv)]
    write(name, t)


case("backward_mha", 2, 4, 4, 23, 31, 16, 16, seed=1)
case("backward_causal_gqa", 1, 8, 2, 40, 40, 32, 32, causal=1, seed=2)
case("backward_bottom_right_dv", 2, 4, 2, 9, 37, 24, 40, causal=2, seed=3)
case("backward_mask", 1, 2, 1, 17, 19, 8, 8, mask=True, seed=4)

"""The float64 NumPy reference the Python tests compare fattn with, written
straight from the definition (PyTorch's scaled_dot_product_attention, plus
fattn's causal kinds and kv_lens)."""

import numpy as np


def to64(x):
    """float64 copy of a NumPy array or torch tensor (bf16 included)."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float64)
    return x.detach().double().numpy()


def attention(q, k, v, mask=None, causal=None, scale=None, kv_lens=None):
    """q (..., Hq, L, E), k (..., Hkv, S, E), v (..., Hkv, S, Ev) float64; mask
    bool (True = takes part) or float, broadcastable to (..., L, S). Returns
    (out, lse); a row with no key gives zeros and lse = -inf."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    if q.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        g = q.shape[-3] // k.shape[-3]
        k, v = np.repeat(k, g, axis=-3), np.repeat(v, g, axis=-3)
    L, S, E = q.shape[-2], k.shape[-2], q.shape[-1]
    s = (q @ np.swapaxes(k, -1, -2)) * (1.0 / np.sqrt(E) if scale is None else scale)
    allowed = np.ones(s.shape, dtype=bool)
    if causal == "top_left":
        allowed &= np.tril(np.ones((L, S), dtype=bool))
    elif causal == "bottom_right":
        allowed &= np.tril(np.ones((L, S), dtype=bool), k=S - L)
    if mask is not None:
        if mask.dtype == np.bool_:
            allowed &= np.broadcast_to(mask, s.shape)
        else:
            s = s + np.asarray(mask, dtype=np.float64)
    if kv_lens is not None:
        lens = np.asarray(kv_lens).reshape(-1)
        for b, n in enumerate(lens):
            allowed[b, ..., n:] = False
    s = np.where(allowed & (s > -np.inf), s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    empty = m == -np.inf
    p = np.exp(s - np.where(empty, 0.0, m))
    l = p.sum(axis=-1, keepdims=True)
    out = np.where(empty, 0.0, (p @ v) / np.where(empty, 1.0, l))
    lse = np.where(empty, -np.inf, m + np.log(np.where(empty, 1.0, l)))[..., 0]
    return out, lse


def tolerance(dtype_name):
    """Absolute tolerance on outputs of magnitude ~1 for inputs rounded to the
    dtype (the reference sees the rounded inputs): the output's own rounding
    plus the f32 accumulation."""
    return {"float32": 2e-5, "float16": 2e-3, "bfloat16": 1.6e-2}[dtype_name]

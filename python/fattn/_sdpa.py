"""fattn.scaled_dot_product_attention: PyTorch's signature over libfattn.

Inputs are read in place: a torch tensor or NumPy array becomes a view (data
pointer, dtype, shape, strides in elements) and the C library walks its
strides; nothing is copied to contiguous. Only two small things may be
converted: a floating attn_mask that is not float32 (to float32, as fattn's
additive masks are F32) and kv_lens (to int32).
"""

import math
import sys

import numpy as np

from . import _C

__all__ = ["scaled_dot_product_attention", "Context", "runtime_info"]

Context = _C.Context

_F32, _F16, _BF16, _U8 = 0, 1, 2, 3
_ITEMSIZE = {_F32: 4, _F16: 2, _BF16: 2, _U8: 1}
_CAUSAL = {None: 0, "none": 0, "top_left": 1, "bottom_right": 2}
_BACKENDS = {"auto": 0, "reference": 1, "scalar": 2, "avx2": 3, "avx512": 4, "neon": 5, "onednn": 6}

_NP_CODES = {np.dtype(np.float32): _F32, np.dtype(np.float16): _F16, np.dtype(np.bool_): _U8}
try:  # bfloat16 arrays come from ml_dtypes, when it is installed
    import ml_dtypes

    _NP_CODES[np.dtype(ml_dtypes.bfloat16)] = _BF16
except ImportError:  # pragma: no cover - depends on the environment
    ml_dtypes = None

_torch_codes = None  # {torch.dtype: code}, filled when the first tensor arrives
_contexts = {}  # num_threads -> Context, for the num_threads= keyword


def runtime_info(context=None):
    """A dict describing what fattn runs on: version, ISA detected / selected,
    threads, cores, caches, pinning, what was compiled in."""
    return _C.runtime_info() if context is None else context.runtime_info()


def _torch_code(dtype):
    global _torch_codes
    if _torch_codes is None:
        torch = sys.modules["torch"]
        _torch_codes = {torch.float32: _F32, torch.float16: _F16, torch.bfloat16: _BF16,
                        torch.bool: _U8}
    return _torch_codes.get(dtype)


def _is_numpy(x):
    return isinstance(x, np.ndarray)


def _describe(x, name):
    """(kind, ptr, code, shape, strides) of a torch tensor or NumPy array,
    strides in elements. Raises TypeError for anything else."""
    if isinstance(x, np.ndarray):
        code = _NP_CODES.get(x.dtype)
        if code is None:
            raise TypeError(f"{name}: dtype {x.dtype} is not supported (float32, float16"
                            f"{', bfloat16' if ml_dtypes else ''}; bool for masks)")
        size = x.itemsize
        strides = x.strides
        if any(s % size for s in strides):
            raise ValueError(f"{name}: byte strides {strides} are not multiples of the "
                             f"element size {size}")
        return ("numpy", x.__array_interface__["data"][0], code, x.shape,
                tuple(s // size for s in strides))
    if hasattr(x, "data_ptr") and "torch" in sys.modules:
        code = _torch_code(x.dtype)
        if code is None:
            raise TypeError(f"{name}: dtype {x.dtype} is not supported (float32, bfloat16, "
                            f"float16; bool for masks)")
        if x.device.type != "cpu":
            raise ValueError(f"{name} is on {x.device}: fattn runs on CPU tensors")
        if x.is_sparse or getattr(x, "is_nested", False):
            raise ValueError(f"{name}: sparse and nested tensors are not supported")
        return ("torch", x.data_ptr(), code, tuple(x.shape), x.stride())
    raise TypeError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def _to4(shape, strides):
    """fattn's 4-D [batch, heads, seq, dim] dims and strides for an (N, ..., L, E)
    view, or None when the leading dims cannot be merged into one stride."""
    n = len(shape)
    if n == 4:
        return tuple(shape), tuple(strides)
    if n == 3:  # (N, L, E): one head
        return (shape[0], 1, shape[1], shape[2]), (strides[0], 0, strides[1], strides[2])
    if n == 2:
        return (1, 1, shape[0], shape[1]), (0, 0, strides[0], strides[1])
    b, bs = 1, 0
    for d, s in zip(shape[:-3], strides[:-3]):  # merge (N, G, ...) into one batch dim
        if d == 1:
            continue
        if b > 1 and bs != s * d:
            return None
        b, bs = b * d, s
    return (b,) + tuple(shape[-3:]), (bs,) + tuple(strides[-3:])


def _broadcast(shape, strides, target, name):
    """A view of `shape` broadcast to `target` (stride 0 on broadcast dims)."""
    if len(shape) > len(target):
        raise ValueError(f"{name} of shape {tuple(shape)} has more dims than {tuple(target)}")
    pad = len(target) - len(shape)
    out = [0] * pad
    for i, (d, s) in enumerate(zip(shape, strides)):
        t = target[pad + i]
        if d == t:
            out.append(s if d > 1 else 0)
        elif d == 1:
            out.append(0)
        else:
            raise ValueError(f"{name} of shape {tuple(shape)} does not broadcast to "
                             f"{tuple(target)}")
    return tuple(target), tuple(out)


def _run(views, kv_lens, scale, causal, backend, ctx):
    """Calls fattn on views (ptr, code, shape, strides) of q, k, v, out, mask,
    lse; when leading dims do not merge into one stride, once per index of the
    first dim (still without copies)."""
    q = views[0]
    fours = [None if w is None else _to4(w[2], w[3]) for w in views]
    if all(f is not None for w, f in zip(views, fours) if w is not None):
        args = [None if w is None else (w[0], w[1]) + f[0] + f[1] for w, f in zip(views, fours)]
        _C.sdpa(args[0], args[1], args[2], args[3], args[4], args[5],
                0 if kv_lens is None else kv_lens.__array_interface__["data"][0],
                scale, causal, backend, ctx)
        return
    n0 = q[2][0]
    per = None if kv_lens is None else kv_lens.size // n0
    for i in range(n0):
        sub = [None if w is None else
               (w[0] + i * w[3][0] * _ITEMSIZE[w[1]], w[1], w[2][1:], w[3][1:]) for w in views]
        _run(sub, None if kv_lens is None else kv_lens[i * per:(i + 1) * per],
             scale, causal, backend, ctx)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False, *,
                                 causal=None, kv_lens=None, return_lse=False, num_threads=None,
                                 context=None, backend="auto", out=None):
    """Attention with torch.nn.functional.scaled_dot_product_attention's semantics.

    query (N, ..., L, E), key (N, ..., S, E), value (N, ..., S, Ev): torch CPU
    tensors (float32, bfloat16, float16) or NumPy arrays (float32, float16,
    ml_dtypes.bfloat16), any strides, read in place. Returns (N, ..., L, Ev)
    of the query's kind and dtype (or fills ``out``).

    attn_mask: bool (True = takes part) or float (added to the scores),
    broadcastable to (N, ..., L, S). is_causal: top-left causal mask (not with
    attn_mask, as in PyTorch). scale: default 1/sqrt(E). enable_gqa: query head
    h uses kv head h // (Hq / Hkv). A row with no key to attend gives zeros.
    dropout_p must be 0 (inference only).

    fattn's extras (keyword only): causal="top_left" | "bottom_right" (may be
    combined with attn_mask); kv_lens: int per batch element N (keys j >=
    kv_lens[n] are masked); return_lse: also return the natural-log softmax
    denominator (N, ..., L) float32; num_threads or context (a fattn.Context);
    backend: "auto", "reference", "scalar", "avx2", "avx512", "neon", "onednn";
    out: an array / tensor to write the result into (nothing is written on
    error).
    """
    if dropout_p != 0.0:
        raise ValueError("fattn computes inference attention: dropout_p must be 0")
    if is_causal and attn_mask is not None:
        raise ValueError("attn_mask and is_causal=True cannot be combined (PyTorch's rule); "
                         "use causal='top_left' with attn_mask to apply both")
    if causal not in _CAUSAL:
        raise ValueError(f"causal must be 'top_left', 'bottom_right' or None, not {causal!r}")
    kind = _CAUSAL[causal]
    if is_causal:
        if kind == 2:
            raise ValueError("is_causal=True is top-left; it conflicts with causal='bottom_right'")
        kind = 1
    if scale is None:
        scale = 0.0  # fattn's default: 1/sqrt(E)
    else:
        scale = float(scale)
        if scale == 0.0 or not math.isfinite(scale):
            raise ValueError(f"scale must be finite and non-zero (got {scale})")
    b = _BACKENDS.get(backend)
    if b is None:
        raise ValueError(f"unknown backend {backend!r} (one of {', '.join(_BACKENDS)})")
    if context is not None and num_threads is not None:
        raise ValueError("give num_threads or context, not both")
    if num_threads is not None:
        context = _contexts.get(num_threads)
        if context is None:
            context = _contexts.setdefault(num_threads, Context(num_threads=num_threads))
    elif context is not None and not isinstance(context, Context):
        raise TypeError("context must be a fattn.Context")

    qv, kv, vv = (_describe(query, "query"), _describe(key, "key"), _describe(value, "value"))
    if not (qv[0] == kv[0] == vv[0]):
        raise TypeError("query, key and value must all be torch tensors or all NumPy arrays")
    if qv[2] == _U8 or kv[2] == _U8 or vv[2] == _U8:
        raise TypeError("query, key and value must be floating point")
    qs, ks, vs = qv[3], kv[3], vv[3]
    nd = len(qs)
    if nd < 2 or len(ks) != nd or len(vs) != nd:
        raise ValueError(f"query, key and value must have the same number of dims (>= 2): "
                         f"{qs}, {ks}, {vs}")
    if qs[-1] != ks[-1]:
        raise ValueError(f"query's E ({qs[-1]}) differs from key's ({ks[-1]})")
    if ks[-2] != vs[-2]:
        raise ValueError(f"key's S ({ks[-2]}) differs from value's ({vs[-2]})")
    if ks[:-2] != vs[:-2]:
        raise ValueError(f"key {ks} and value {vs} differ in their leading dims")
    if nd >= 4:
        hq, hk = qs[-3], ks[-3]
        if qs[:-3] != ks[:-3]:
            raise ValueError(f"query {qs} and key {ks} differ in their batch dims")
        if hq != hk and (hq % hk or not (enable_gqa or hk == 1)):
            raise ValueError(f"query has {hq} heads and key / value {hk}: "
                             + ("Hq must be a multiple of Hkv" if enable_gqa else
                                "pass enable_gqa=True for grouped-query attention"))
    elif qs[:-2] != ks[:-2]:
        raise ValueError(f"query {qs} and key {ks} differ in their batch dims")

    batch = qs[:-2]
    out_shape = batch + (qs[-2], vs[-1])
    numpy_kind = qv[0] == "numpy"
    if out is None:
        out = (np.empty(out_shape, dtype=query.dtype) if numpy_kind
               else sys.modules["torch"].empty(out_shape, dtype=query.dtype))
    else:
        if numpy_kind and not out.flags.writeable:
            raise ValueError("out is read-only")
        if tuple(out.shape) != out_shape:
            raise ValueError(f"out has shape {tuple(out.shape)}, expected {out_shape}")
    ov = _describe(out, "out")
    if ov[2] == _U8:
        raise TypeError("out must be floating point")

    mv = None
    keep = None  # a converted mask, alive during the call
    if attn_mask is not None:
        mask = attn_mask
        if _is_numpy(mask) != numpy_kind:
            raise TypeError("attn_mask must be of the same kind (torch / NumPy) as query")
        if numpy_kind:
            if mask.dtype != np.bool_ and mask.dtype != np.float32:
                if mask.dtype.kind != "f" and mask.dtype.name != "bfloat16":
                    raise TypeError(f"attn_mask must be bool or floating, not {mask.dtype}")
                keep = mask = mask.astype(np.float32)
        else:
            torch = sys.modules["torch"]
            if mask.dtype != torch.bool and mask.dtype != torch.float32:
                if not mask.is_floating_point():
                    raise TypeError(f"attn_mask must be bool or floating, not {mask.dtype}")
                keep = mask = mask.float()
        m = _describe(mask, "attn_mask")
        dims, strides = _broadcast(m[3], m[4], batch + (qs[-2], ks[-2]), "attn_mask")
        mv = (m[1], m[2], dims, strides)

    lse = lv = None
    if return_lse:
        lse_shape = batch + (qs[-2],)
        lse = (np.empty(lse_shape, dtype=np.float32) if numpy_kind
               else sys.modules["torch"].empty(lse_shape, dtype=sys.modules["torch"].float32))
        l = _describe(lse, "lse")
        lv = (l[1], l[2], l[3] + (1,), l[4] + (1,))

    lens = None
    if kv_lens is not None:
        if hasattr(kv_lens, "cpu") and hasattr(kv_lens, "numpy"):
            kv_lens = kv_lens.cpu().numpy()
        lens = np.ascontiguousarray(kv_lens, dtype=np.int32).ravel()
        want = math.prod(qs[:-3]) if nd >= 4 else (qs[0] if nd == 3 else 1)
        if lens.size != want:
            raise ValueError(f"kv_lens has {lens.size} entries; expected one per batch "
                             f"element ({want})")

    views = [qv[1:], kv[1:], vv[1:], ov[1:], mv, lv]
    _run(views, lens, scale, kind, b, context)
    del keep
    return (out, lse) if return_lse else out

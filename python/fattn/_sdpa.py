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
_torch_view = _C.torch_view
_sdpa_torch4 = _C._sdpa_torch4

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

_contexts = {}  # num_threads -> Context, for the num_threads= keyword
_tensor_type = None  # torch.Tensor once torch is imported
_torch_codes = {}  # {torch.dtype: code}
_strided = None  # torch.strided


def runtime_info(context=None):
    """A dict describing what fattn runs on: version, ISA detected / selected,
    threads, cores, caches, pinning, what was compiled in."""
    return _C.runtime_info() if context is None else context.runtime_info()


def _see_torch():
    """Binds the torch names once torch has been imported (by anyone)."""
    global _tensor_type, _strided
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "Tensor"):
        return False
    _torch_codes.update({torch.float32: _F32, torch.float16: _F16, torch.bfloat16: _BF16,
                         torch.bool: _U8})
    _strided = torch.strided
    _tensor_type = torch.Tensor
    _C._set_torch(torch.float32, torch.float16, torch.bfloat16, torch.bool, torch.strided,
                  torch.empty)
    return True


def _describe(x, name):
    """(ptr, code, shape, strides) of a torch tensor or NumPy array, strides in
    elements: the view _C.sdpa takes (2 to 4 dims). Raises TypeError for
    anything else."""
    if _tensor_type is not None and isinstance(x, _tensor_type):
        v = _torch_view(x)
        if v is not None:
            return v
        code = _torch_codes.get(x.dtype)
        if code is None:
            raise TypeError(f"{name}: dtype {x.dtype} is not supported (float32, bfloat16, "
                            f"float16; bool for masks)")
        if not x.is_cpu:
            raise ValueError(f"{name} is on {x.device}: fattn runs on CPU tensors")
        if x.layout is not _strided or x.is_nested:
            raise ValueError(f"{name}: sparse and nested tensors are not supported")
        raise ValueError(f"{name}: fattn cannot read this tensor")  # pragma: no cover
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
        return (x.__array_interface__["data"][0], code, x.shape, tuple(s // size for s in strides))
    if _tensor_type is None and _see_torch():
        return _describe(x, name)
    raise TypeError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def _merged(w):
    """A view of more than 4 dims as fattn's 4-D [batch, heads, seq, dim] one,
    its leading dims merged into one stride; None when they do not merge."""
    ptr, code, shape, strides = w
    b, bs = 1, 0
    for d, s in zip(shape[:-3], strides[:-3]):
        if d == 1:
            continue
        if b > 1 and bs != s * d:
            return None
        b, bs = b * d, s
    return (ptr, code, (b, *shape[-3:]), (bs, *strides[-3:]))


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


def _run(views, nd, kv_lens, scale, causal, backend, ctx):
    """Calls fattn on views (ptr, code, shape, strides) of q, k, v, out, mask,
    lse, all of nd dims. Up to 4 dims the C side maps them to fattn's 4-D
    views ((L, E) and (N, L, E) get one head); beyond, the leading dims are
    merged, or when they do not merge into one stride, fattn is called once
    per index of the first dim (still without copies)."""
    lens = 0 if kv_lens is None else kv_lens.__array_interface__["data"][0]
    if nd <= 4:
        _C.sdpa(*views, lens, scale, causal, backend, ctx)
        return
    merged = [None if w is None else _merged(w) for w in views]
    if all(m is not None for m, w in zip(merged, views) if w is not None):
        _C.sdpa(*merged, lens, scale, causal, backend, ctx)
        return
    n0 = views[0][2][0]
    per = None if kv_lens is None else kv_lens.size // n0
    for i in range(n0):
        sub = [None if w is None else
               (w[0] + i * w[3][0] * _ITEMSIZE[w[1]], w[1], w[2][1:], w[3][1:]) for w in views]
        _run(sub, nd - 1, None if kv_lens is None else kv_lens[i * per:(i + 1) * per],
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
    if (attn_mask is None and causal is None and kv_lens is None and num_threads is None
            and not return_lse and backend == "auto" and dropout_p == 0.0):
        # The common call (4-D torch tensors, no mask) in one C step;
        # NotImplemented for anything else, which the code below takes.
        r = _sdpa_torch4(query, key, value, is_causal, scale, enable_gqa, context, out)
        if r is not NotImplemented:
            return r
    if dropout_p != 0.0:
        raise ValueError("fattn computes inference attention: dropout_p must be 0")
    if is_causal and attn_mask is not None:
        raise ValueError("attn_mask and is_causal=True cannot be combined (PyTorch's rule); "
                         "use causal='top_left' with attn_mask to apply both")
    kind = 0
    if causal is not None:
        kind = _CAUSAL.get(causal, -1) if isinstance(causal, str) else -1
        if kind < 0:
            raise ValueError(f"causal must be 'top_left', 'bottom_right' or None, not {causal!r}")
    if is_causal:
        if kind == 2:
            raise ValueError("is_causal=True is top-left; it conflicts with causal='bottom_right'")
        kind = 1
    if scale is None:
        scale = 0.0  # fattn's default: 1/sqrt(E)
    else:
        scale = float(scale)
        with np.errstate(over="ignore"):
            s32 = float(np.float32(scale))  # what fattn gets: zero would mean its default
        if s32 == 0.0 or not math.isfinite(s32):
            raise ValueError(f"scale must be finite and non-zero in float32 (got {scale})")
    b = 0 if backend == "auto" else _BACKENDS.get(backend)
    if b is None:
        raise ValueError(f"unknown backend {backend!r} (one of {', '.join(_BACKENDS)})")
    if num_threads is not None:
        if context is not None:
            raise ValueError("give num_threads or context, not both")
        context = _contexts.get(num_threads)
        if context is None:
            context = _contexts.setdefault(num_threads, Context(num_threads=num_threads))
    elif context is not None and not isinstance(context, Context):
        raise TypeError("context must be a fattn.Context")

    numpy_kind = isinstance(query, np.ndarray)
    qv, kv, vv = _describe(query, "query"), _describe(key, "key"), _describe(value, "value")
    if isinstance(key, np.ndarray) != numpy_kind or isinstance(value, np.ndarray) != numpy_kind:
        raise TypeError("query, key and value must all be torch tensors or all NumPy arrays")
    if qv[1] == _U8 or kv[1] == _U8 or vv[1] == _U8:
        raise TypeError("query, key and value must be floating point")
    qs, ks, vs = tuple(qv[2]), tuple(kv[2]), tuple(vv[2])
    nd = len(qs)
    if nd < 2 or len(ks) != nd or len(vs) != nd:
        raise ValueError(f"query, key and value must have the same number of dims (>= 2): "
                         f"{qs}, {ks}, {vs}")
    if qs[-1] != ks[-1]:
        raise ValueError(f"query's E ({qs[-1]}) differs from key's ({ks[-1]})")
    batch = qs[:-2]
    if ks[:-1] != vs[:-1]:
        raise ValueError(f"key {ks} and value {vs} differ in their leading dims or S")
    if nd >= 4:
        hq, hk = qs[-3], ks[-3]
        if qs[:-3] != ks[:-3]:
            raise ValueError(f"query {qs} and key {ks} differ in their batch dims")
        if hq != hk and (hq % hk or not (enable_gqa or hk == 1)):
            raise ValueError(f"query has {hq} heads and key / value {hk}: "
                             + ("Hq must be a multiple of Hkv" if enable_gqa else
                                "pass enable_gqa=True for grouped-query attention"))
    elif batch != ks[:-2]:
        raise ValueError(f"query {qs} and key {ks} differ in their batch dims")

    L, S = qs[-2], ks[-2]
    if out is None:
        out = (np.empty((*batch, L, vs[-1]), dtype=query.dtype) if numpy_kind
               else _torch_empty(*batch, L, vs[-1], dtype=query.dtype))
    else:
        if numpy_kind and not out.flags.writeable:
            raise ValueError("out is read-only")
        if tuple(out.shape) != (*batch, L, vs[-1]):
            raise ValueError(f"out has shape {tuple(out.shape)}, expected {(*batch, L, vs[-1])}")
    ov = _describe(out, "out")
    if ov[1] == _U8:
        raise TypeError("out must be floating point")

    mv = None
    keep = None  # a converted mask, alive during the call
    if attn_mask is not None:
        mask = attn_mask
        if isinstance(mask, np.ndarray) != numpy_kind:
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
        dims, strides = _broadcast(m[2], m[3], (*batch, L, S), "attn_mask")
        mv = (m[0], m[1], dims, strides)

    lse = lv = None
    if return_lse:
        lse = (np.empty((*batch, L), dtype=np.float32) if numpy_kind
               else _torch_empty(*batch, L, dtype=sys.modules["torch"].float32))
        l = _describe(lse, "lse")
        lv = (l[0], l[1], (*l[2], 1), (*l[3], 1))

    lens = None
    if kv_lens is not None:
        if hasattr(kv_lens, "cpu") and hasattr(kv_lens, "numpy"):
            kv_lens = kv_lens.cpu().numpy()
        lens = np.ascontiguousarray(kv_lens, dtype=np.int32).ravel()
        want = math.prod(qs[:-3]) if nd >= 4 else (qs[0] if nd == 3 else 1)
        if lens.size != want:
            raise ValueError(f"kv_lens has {lens.size} entries; expected one per batch "
                             f"element ({want})")

    _run((qv, kv, vv, ov, mv, lv), nd, lens, scale, kind, b, context)
    del keep
    return (out, lse) if return_lse else out


def _torch_empty(*shape, dtype):
    return sys.modules["torch"].empty(*shape, dtype=dtype)


def _call_args(query, key, value, out, is_causal=False, context=None):
    """The arguments of _C.sdpa / _C._time_sdpa for inputs of up to 4 dims (the
    benchmark's C side: the same call as scaled_dot_product_attention makes)."""
    views = [_describe(x, n) for x, n in ((query, "query"), (key, "key"), (value, "value"),
                                          (out, "out"))]
    return (*views, None, None, 0, 0.0, 1 if is_causal else 0, 0, context)


_see_torch()  # when torch was imported before fattn

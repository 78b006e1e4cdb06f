"""PyTorch integration: the custom op torch.ops.fattn.sdpa (torch >= 2.4) and
a mode that sends torch.nn.functional.scaled_dot_product_attention to fattn.

Imported by fattn only when torch is importable."""

import contextlib
import inspect
from typing import Optional

import torch

from ._sdpa import scaled_dot_product_attention as _sdpa

__all__ = ["HAVE_CUSTOM_OP", "sdpa_op", "use_fattn"]

_F = torch.nn.functional
_TORCH_SDPA = getattr(_F, "scaled_dot_product_attention", None)
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

HAVE_CUSTOM_OP = hasattr(torch, "library") and hasattr(torch.library, "custom_op")

if HAVE_CUSTOM_OP:

    @torch.library.custom_op("fattn::sdpa", mutates_args=(), device_types="cpu")
    def sdpa_op(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False,
                scale: Optional[float] = None, enable_gqa: bool = False,
                causal: str = "none", num_threads: int = 0) -> torch.Tensor:
        """torch.ops.fattn.sdpa: fattn.scaled_dot_product_attention as a custom op
        (opaque to torch.compile; its fake implementation gives the shape).
        causal: "none", "top_left" or "bottom_right"; num_threads 0 = default."""
        return _sdpa(query, key, value, attn_mask, 0.0, is_causal, scale, enable_gqa,
                     causal=None if causal == "none" else causal,
                     num_threads=num_threads if num_threads > 0 else None)

    @sdpa_op.register_fake
    def _sdpa_fake(query, key, value, attn_mask=None, is_causal=False, scale=None,
                   enable_gqa=False, causal="none", num_threads=0):
        return query.new_empty(tuple(query.shape[:-1]) + (value.shape[-1],))

else:  # torch < 2.4: no torch.library.custom_op
    sdpa_op = None


def _eligible(q, k, v, mask, dropout_p):
    """Whether a torch SDPA call can go to fattn with the same result: CPU
    tensors of fattn's dtypes, no dropout, no gradient needed."""
    ts = (q, k, v) if mask is None else (q, k, v, mask)
    if not all(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in ts):
        return False
    if q.dtype not in _DTYPES or k.dtype != q.dtype or v.dtype != q.dtype or dropout_p != 0.0:
        return False
    if mask is not None and mask.dtype != torch.bool and mask.dtype != q.dtype:
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in ts):
        return False  # fattn has no backward: autograd stays with PyTorch
    if any(t.is_sparse or getattr(t, "is_nested", False) for t in ts):
        return False
    if q.dim() < 2 or q.shape[:-3] != k.shape[:-3] or q.shape[-1] != k.shape[-1]:
        return False  # batch broadcasting between query and key stays with PyTorch
    return True


class _Mode(torch.overrides.TorchFunctionMode if hasattr(torch.overrides, "TorchFunctionMode")
            else object):
    def __init__(self, num_threads=0):
        super().__init__()
        self.num_threads = num_threads
        self.calls = 0  # calls that went to fattn
        self.fallbacks = 0  # calls left to PyTorch (see _eligible)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _TORCH_SDPA:
            a = _SIGNATURE.bind(*args, **kwargs)
            a.apply_defaults()
            p = a.arguments
            if _eligible(p["query"], p["key"], p["value"], p["attn_mask"], p["dropout_p"]):
                self.calls += 1
                if sdpa_op is not None:
                    return sdpa_op(p["query"], p["key"], p["value"], p["attn_mask"],
                                   bool(p["is_causal"]), p["scale"], bool(p["enable_gqa"]),
                                   "none", self.num_threads)
                return _sdpa(p["query"], p["key"], p["value"], p["attn_mask"], 0.0,
                             bool(p["is_causal"]), p["scale"], bool(p["enable_gqa"]),
                             num_threads=self.num_threads or None)
            self.fallbacks += 1
        return func(*args, **kwargs)


def _torch_sdpa_signature(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                          scale=None, enable_gqa=False):
    pass


_SIGNATURE = inspect.signature(_torch_sdpa_signature)


@contextlib.contextmanager
def use_fattn(num_threads=0):
    """Within this block, torch.nn.functional.scaled_dot_product_attention runs
    on fattn for CPU tensors (float32, bfloat16, float16) when no gradient is
    needed and dropout_p is 0; every other call goes to PyTorch unchanged.

        with fattn.use_fattn():
            y = model(x)

    Yields the mode: .calls (sent to fattn) and .fallbacks (left to PyTorch)."""
    if _TORCH_SDPA is None or not hasattr(torch.overrides, "TorchFunctionMode"):
        raise RuntimeError(f"torch {torch.__version__} has no "
                           "torch.nn.functional.scaled_dot_product_attention to redirect")
    with _Mode(num_threads) as mode:
        yield mode

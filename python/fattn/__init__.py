"""fattn: fused multi-head scaled-dot-product attention for CPUs.

    import fattn
    out = fattn.scaled_dot_product_attention(q, k, v, is_causal=True)

q, k, v: torch CPU tensors or NumPy arrays of any strides, read in place.
With PyTorch: torch.ops.fattn.sdpa (torch >= 2.4), fattn.use_fattn() to send
torch.nn.functional.scaled_dot_product_attention calls to fattn, and
fattn.register_transformers() for attn_implementation="fattn"."""

from ._C import __version__
from ._sdpa import Context, runtime_info, scaled_dot_product_attention

__all__ = ["__version__", "Context", "runtime_info", "scaled_dot_product_attention", "use_fattn",
           "register_transformers"]


def use_fattn(num_threads=0):
    """Context manager: torch.nn.functional.scaled_dot_product_attention calls
    on CPU tensors go to fattn inside it (see fattn._torch.use_fattn)."""
    from ._torch import use_fattn as _use

    return _use(num_threads)


def register_transformers(name="fattn"):
    """Registers attn_implementation="fattn" with Hugging Face transformers."""
    from ._transformers import register_transformers as _reg

    return _reg(name)


def _register_torch_op():
    """torch.ops.fattn.sdpa exists as soon as fattn is imported, when torch is."""
    import importlib.util
    import sys

    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        try:
            from . import _torch  # noqa: F401
        except ImportError:  # a broken torch install must not break NumPy users
            pass


_register_torch_op()

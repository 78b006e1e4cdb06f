"""Hugging Face transformers integration: attn_implementation="fattn".

    import fattn
    fattn.register_transformers()
    model = AutoModel.from_pretrained(path, attn_implementation="fattn")

The attention function follows transformers' own sdpa_attention_forward
(same mask, same causal rule), with two differences: grouped-query heads are
handled by fattn without repeating K / V, and the result is written straight
into the (batch, seq, heads, dim) layout the model reshapes next, without the
transpose copy. What fattn cannot compute (dropout while training, position
bias, softcap, gradients) goes to transformers' sdpa implementation."""

import torch

from ._sdpa import scaled_dot_product_attention as _sdpa

__all__ = ["register_transformers", "attention_forward", "stats"]

stats = {"fattn": 0, "fallback": 0}  # calls computed by fattn / handed to transformers' sdpa


def attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                      is_causal=None, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (query, key, value, attention_mask))
    if (dropout != 0.0 or needs_grad or kwargs.get("position_bias") is not None
            or kwargs.get("softcap") is not None or query.device.type != "cpu"
            or query.dtype not in (torch.float32, torch.bfloat16, torch.float16)):
        stats["fallback"] += 1
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    stats["fattn"] += 1
    b, h, lq, _ = query.shape
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    is_causal = bool(lq > 1 and attention_mask is None and is_causal)
    out = torch.empty((b, lq, h, value.shape[-1]), dtype=query.dtype).transpose(1, 2)
    _sdpa(query, key, value, attention_mask, 0.0, is_causal, scaling,
          enable_gqa=key.shape[1] != h, out=out)
    return out.transpose(1, 2), None


def register_transformers(name="fattn"):
    """Registers fattn as attn_implementation=name with transformers'
    AttentionInterface (and sdpa's boolean masks under the same name)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(name, attention_forward)
    AttentionMaskInterface.register(name, sdpa_mask)
    return name

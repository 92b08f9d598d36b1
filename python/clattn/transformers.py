# SPDX-License-Identifier: Apache-2.0
"""Hugging Face transformers models on clattn: register() adds an attention function named "clattn" to
transformers.AttentionInterface (and the SDPA-style boolean masks to AttentionMaskInterface), so that
AutoModel.from_pretrained(path, attn_implementation="clattn") runs every attention of the model here. What a model
asks for that clattn cannot compute is an error naming the feature, never a silent fallback to another backend.

Masks go to C as the model builds them: every shape that broadcasts to [B, H, Lq, Lk], the [B, 1, 1, Lk] padding
mask of BERT-style models included, is read with stride 0 over its size-1 dimensions; nothing is widened or copied."""
from __future__ import annotations

from typing import Any, Optional, Tuple

from .errors import UnsupportedError

_context: Any = None


def _ctx() -> Any:
    from . import default_context
    return _context if _context is not None and not _context.closed else default_context()


def _unsupported(feature: str) -> UnsupportedError:
    return UnsupportedError(f"the model uses {feature}, which clattn cannot compute yet; load it with another "
                            "attn_implementation (\"sdpa\" or \"eager\") for now", -3021)


def clattn_attention_forward(module: Any, query: Any, key: Any, value: Any, attention_mask: Optional[Any],
                             dropout: float = 0.0, scaling: Optional[float] = None, is_causal: Optional[bool] = None,
                             position_bias: Optional[Any] = None, **kwargs: Any) -> Tuple[Any, Optional[Any]]:
    """The attention of one layer, as transformers calls it: query [B, H, Lq, D], key and value [B, Hkv, Lk, D];
    returns (output [B, Lq, H, Dv], the attention weights when the model asks for them, else None)."""
    import torch

    if dropout and getattr(module, "training", False):
        raise _unsupported(f"attention dropout in training (dropout={dropout}); clattn is for inference: call "
                           "model.eval()")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value)):
        raise _unsupported("gradients through attention (clattn computes none): run under torch.no_grad() or "
                           "torch.inference_mode()")
    if kwargs.get("head_mask") is not None:
        raise _unsupported("a head mask (head_mask)")
    # gpt-oss hands its per-head sink logits as s_aux; Gemma 2 its logit softcap as softcap: both computed here.
    sinks = kwargs.get("s_aux") if kwargs.get("s_aux") is not None else kwargs.get("sinks")
    if sinks is not None:
        sinks = sinks.detach().to(torch.float32).cpu().numpy().reshape(-1)
    softcap = kwargs.get("softcap")
    if kwargs.get("alibi") is not None:
        raise _unsupported("ALiBi given as a bias tensor (alibi); clattn takes per-head slopes (alibi_slopes)")
    if kwargs.get("cu_seq_lens_q") is not None or kwargs.get("cu_seq_lens_k") is not None:
        raise _unsupported("packed variable-length sequences (cu_seq_lens_q / cu_seq_lens_k)")

    lq, lk = query.shape[2], key.shape[2]
    mask = attention_mask
    if mask is not None:
        if mask.dim() != 4:
            raise _unsupported(f"an attention mask of {mask.dim()} dimensions {tuple(mask.shape)} (clattn takes "
                               "the 4-dimensional masks transformers builds)")
        mask = mask[:, :, :, :lk]  # [B, 1, 1, Lk] padding masks go to clattn as they are: it broadcasts them
        causal = False
    else:
        causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", True)) and lq > 1
        sliding = kwargs.get("sliding_window")
        if sliding and lk > int(sliding):
            # transformers drops the mask only where a window would not matter; anything else is not understood.
            raise _unsupported(f"a sliding window of {sliding} keys without a mask over {lk} keys")
    if position_bias is not None:
        # A relative position bias (T5-style) is added to the scores: with the mask it makes one additive mask.
        bias = position_bias[:, :, :, :lk].to(torch.float32)
        if mask is None:
            mask = bias
        elif mask.dtype == torch.bool:
            mask = bias.masked_fill(~mask, float("-inf"))
        else:
            mask = bias + mask
    # Without a mask, the causal flag is PyTorch's (top-left), as transformers' own SDPA path relies on; with one,
    # the mask says everything.
    result = _ctx().scaled_dot_product_attention(
        query, key, value, attn_mask=mask, is_causal=causal, causal_alignment="top_left", scale=scaling,
        enable_gqa=key.shape[1] != query.shape[1], softcap=softcap or None, sinks=sinks,
        alibi_slopes=kwargs.get("alibi_slopes"), return_weights=bool(kwargs.get("output_attentions")))
    out, weights = (result if isinstance(result, tuple) else (result, None))
    return out.transpose(1, 2).contiguous(), weights


def register(name: str = "clattn", context: Any = None) -> None:
    """Registers clattn with transformers under `name`: afterwards from_pretrained(..., attn_implementation=name)
    (or model.set_attn_implementation(name)) runs the model's attention on `context` (default:
    clattn.default_context())."""
    global _context
    try:
        from transformers import AttentionInterface
    except ImportError as e:
        raise ImportError("clattn.transformers.register needs transformers with AttentionInterface "
                          "(pip install 'transformers>=4.48')") from e
    _context = context
    AttentionInterface.register(name, clattn_attention_forward)
    try:  # Masks in the form SDPA takes (boolean, True keeps a key), which is clattn's convention too.
        from transformers import AttentionMaskInterface
        from transformers.masking_utils import sdpa_mask
        AttentionMaskInterface.register(name, sdpa_mask)
    except ImportError:
        pass

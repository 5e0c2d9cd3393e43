"""``patch_hf_swin``: run the attention of Hugging Face transformers Swin layers on the fused op, in place.

Each patchable layer changes class to a subclass of its transformers class (``_hf_layers.py``) whose forward reads
the parameters of the layer's own attention module: the modules, parameter objects and state-dict keys are the
stock ones, so checkpoints load and optimizers built before the patch keep working.
"""
from __future__ import annotations

import logging

from torch import nn

from .. import _checks

logger = logging.getLogger("semask_kernels")


def _unsupported(layer, fused: type, stock: type) -> str | None:
    """Why ``layer`` cannot be patched faithfully, or None."""
    from ._hf_layers import bypassed

    if isinstance(layer, fused):
        return "already patched"
    if type(layer) is not stock:
        return f"layer is {type(layer).__name__}, a subclass of {stock.__name__} that may change its forward"
    if stock.__name__ == "SwinLayer":
        attn = layer.attention
        needed = ("q_proj", "k_proj", "v_proj", "o_proj", "relative_position_bias", "scaling")
        if not all(hasattr(attn, name) for name in needed):
            return f"its attention {type(attn).__name__} lacks {needed} (a transformers layout this patch predates)"
    reason = bypassed(layer)
    if reason is not None:
        return reason
    if stock.__name__ == "SwinLayer":
        dropout = attn.attention_dropout
        heads, table = attn.num_attention_heads, attn.relative_position_bias.relative_position_bias_table
        window, dim = attn.relative_position_bias.window_size, attn.q_proj.out_features
    else:
        attn = layer.attention.self
        dropout = attn.dropout.p
        heads, table, window, dim = attn.num_attention_heads, attn.relative_position_bias_table, attn.window_size, \
            attn.all_head_size
    if dropout > 0:
        return f"attention dropout {dropout} > 0 is not supported by the fused ops"
    if tuple(window) != (layer.window_size, layer.window_size):
        return f"attention window {tuple(window)} differs from the layer's {layer.window_size}"
    if not 0 <= layer.shift_size < layer.window_size:
        return f"shift {layer.shift_size} is not in [0, window {layer.window_size})"
    if table.shape[1] != heads or dim % heads:
        return f"{dim} channels and a table of {table.shape[1]} heads do not split into {heads} heads"
    return None


def patch_hf_swin(model: nn.Module, *, backend: str = "auto", strict: bool = False) -> nn.Module:
    """Run the window attention of every transformers Swin layer in ``model`` as one fused op.

    Args:
        model: a transformers ``SwinModel``, ``SwinForImageClassification``, ``SwinBackbone``, or a model that
            embeds them (``UperNetForSemanticSegmentation``, ``Mask2FormerForUniversalSegmentation`` with a Swin
            backbone, ``MaskFormerForInstanceSegmentation`` with its ``MaskFormerSwinBackbone``). Changed in place.
        backend: the op's backend ("auto", "reference", "torch", "triton", "cuda").
        strict: raise (instead of warning) when ``model`` holds no transformers Swin layer at all (a SwinV2, a
            ViT, a plain Linear).

    Returns:
        ``model``, with the same modules, parameters and state-dict keys. Each patched ``SwinLayer`` /
        ``MaskFormerSwinLayer`` pads, rolls, partitions, attends, reverses, rolls back and crops in one
        ``shifted_window_attention`` op (``pad_order="pad_then_roll"``, as transformers does), with q, k, v still
        three Linears (``qkv_linear``: no concatenation copy). Layers with attention dropout > 0, subclasses and
        unknown layouts are left alone and the reason is logged at warning level, and so are layers whose q, k, v
        Linears are wrapped (a peft LoRA adapter), subclassed or hooked; a patched layer whose modules get wrapped
        or hooked later runs its stock forward (logged once). Asking for attention weights
        (``output_attentions``) runs the stock forward of the layers.

    Example:
        >>> import semask_kernels as sk
        >>> from transformers import SwinConfig, SwinModel
        >>> model = sk.patch_hf_swin(SwinModel(SwinConfig(embed_dim=32, depths=[2, 2], num_heads=[2, 4])))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"patch_hf_swin: model must be a torch.nn.Module, got {type(model).__name__}"
                        + (" (load the model first, e.g. SwinModel.from_pretrained(name))" if isinstance(model, str)
                           else ""))
    backend = _checks.backend("backend", backend)
    try:
        from ._hf_layers import FusedMaskFormerSwinLayer, FusedSwinLayer, MaskFormerSwinLayer, SwinLayer
    except ImportError as e:
        raise ImportError("patch_hf_swin needs transformers: pip install 'transformers>=5.24'") from e
    kinds = ((SwinLayer, FusedSwinLayer), (MaskFormerSwinLayer, FusedMaskFormerSwinLayer))
    patched = skipped = 0
    for name, module in model.named_modules():
        for stock, fused in kinds:
            if not isinstance(module, stock):
                continue
            reason = _unsupported(module, fused, stock)
            if reason is not None:
                logger.warning("patch_hf_swin: leaving %s alone: %s", name or "<model>", reason)
                skipped += 1
                break
            module.__class__ = fused
            module.semask_backend = backend
            patched += 1
    if patched + skipped == 0:
        message = (f"patch_hf_swin: {type(model).__name__} holds no transformers SwinLayer or MaskFormerSwinLayer; "
                   f"nothing was patched (SwinV2, ViT and other models are not covered)")
        if strict:
            raise ValueError(message)
        logger.warning(message)
    logger.info("patch_hf_swin: patched %d layers, left %d alone", patched, skipped)
    return model

"""``patch_timm_swin``: swap the attention of a stock timm Swin model for the fused ops, in place.

The parameters are *shared* with the original modules (the same ``nn.Parameter`` objects under the same names),
so the state dict is unchanged and optimizers built before the patch keep working.
"""
from __future__ import annotations

import logging

from torch import nn

from ..nn import ShiftedWindowAttention, WindowAttention

logger = logging.getLogger("semask_kernels")
LEVELS = ("attention", "block")
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _unsupported(block, level: str) -> str | None:
    """Why ``block`` cannot be patched faithfully, or None."""
    from timm.models.swin_transformer import SwinTransformerBlock
    from timm.models.swin_transformer import WindowAttention as TimmWindowAttention

    attn = block.attn
    if isinstance(attn, (WindowAttention, ShiftedWindowAttention)):
        return "already patched"
    if level == "block" and type(block) is not SwinTransformerBlock:
        return (f"block is {type(block).__name__}, a subclass of timm's SwinTransformerBlock that may change its "
                f"attention path (level='attention' patches only its WindowAttention)")
    if type(attn) is not TimmWindowAttention:
        return f"attention is {type(attn).__name__}, not timm's WindowAttention"
    for what in ("", "softmax", "attn_drop"):  # the modules the fused ops replace (qkv, proj are kept and called)
        mod = attn.get_submodule(what) if not what or hasattr(attn, what) else None
        if mod is not None and any(getattr(mod, h) for h in _HOOKS):
            return (f"attention{'.' + what if what else ''} has hooks, which the fused ops (a new attention "
                    f"module) would not call")
    if attn.attn_drop.p > 0:
        return f"attention dropout {attn.attn_drop.p} > 0 is not supported by the fused ops"
    if tuple(attn.window_size) != tuple(block.window_size):
        return f"attention window {attn.window_size} differs from the block's {block.window_size}"
    if any(s >= w for s, w in zip(block.shift_size, block.window_size)):
        return f"shift {block.shift_size} is not smaller than the window {block.window_size}"
    return None


def _share(new: nn.Module, attn: nn.Module) -> nn.Module:
    """Give ``new`` the parameters, index buffer and train/eval mode of timm's ``attn``."""
    new.qkv = attn.qkv
    new.proj = attn.proj
    new.proj_drop = attn.proj_drop
    new.relative_position_bias_table = attn.relative_position_bias_table
    new.register_buffer("relative_position_index", attn.relative_position_index, persistent=False)
    new.train(attn.training)
    return new


def _heads_and_dim(attn) -> tuple[int, int, int]:
    attn_dim = attn.proj.in_features
    return attn.num_heads, attn_dim // attn.num_heads, attn.qkv.in_features


def _patch_block(block, level: str, backend: str) -> None:
    attn = block.attn
    heads, head_dim, dim = _heads_and_dim(attn)
    common = dict(num_heads=heads, head_dim=head_dim, window_size=tuple(attn.window_size),
                  qkv_bias=attn.qkv.bias is not None, backend=backend, device="meta")
    if level == "attention":
        new = WindowAttention(dim, **common)
    else:
        new = ShiftedWindowAttention(dim, shift_size=tuple(block.shift_size), pad_order="roll_then_pad", **common)
    block.attn = _share(new, attn)
    if level == "block":
        from ._timm_block import FusedSwinTransformerBlock

        block.__class__ = FusedSwinTransformerBlock  # its _attn is the one fused op; nothing else changes


def patch_timm_swin(model: nn.Module, *, level: str = "block", backend: str = "auto",
                    strict: bool = False) -> nn.Module:
    """Replace the window attention of every timm ``SwinTransformerBlock`` in ``model`` by the fused ops.

    Args:
        model: any timm Swin (``swin_{tiny,small,base,large}_*``, ``swin_s3_*`` with per-stage windows, or a
            module that contains such blocks). Changed in place.
        level: "block" replaces the whole attention path of a block (roll, pad, partition, attention, reverse,
            crop, roll back) by ``shifted_window_attention``; "attention" replaces only timm's ``WindowAttention``
            by ``window_attention`` and keeps timm's roll/pad/partition around it.
        backend: the ops' backend ("auto", "reference", "torch", "triton", "cuda").
        strict: raise (instead of warning) when ``model`` holds no timm Swin block at all.

    Returns:
        ``model``, with the state-dict keys unchanged. Blocks that cannot be patched faithfully (attention dropout,
        a non-timm attention) are left alone and the reason is logged at warning level. At level "block" each
        patched block becomes a ``FusedSwinTransformerBlock`` (a subclass of timm's block), so the model scripts
        with ``torch.jit.script``, traces with ``torch.fx`` / timm's FX feature extraction and exports with
        ``torch.export`` like the stock one.

    Example:
        >>> import timm, semask_kernels as sk
        >>> model = sk.patch_timm_swin(timm.create_model("swin_tiny_patch4_window7_224"))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"patch_timm_swin: model must be a torch.nn.Module, got {type(model).__name__}")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    try:
        from timm.models.swin_transformer import SwinTransformerBlock
    except ImportError as e:
        raise ImportError("patch_timm_swin needs timm: pip install 'timm>=1.0.15'") from e
    patched = skipped = 0
    for name, module in model.named_modules():
        if not isinstance(module, SwinTransformerBlock):
            continue
        reason = _unsupported(module, level)
        if reason is not None:
            logger.warning("patch_timm_swin: leaving %s alone: %s", name or "<model>", reason)
            skipped += 1
            continue
        _patch_block(module, level, backend)
        patched += 1
    if patched + skipped == 0:
        message = (f"patch_timm_swin: {type(model).__name__} holds no timm SwinTransformerBlock; nothing was "
                   f"patched (SwinV2 and other Swin implementations are not covered)")
        if strict:
            raise ValueError(message)
        logger.warning(message)
    logger.info("patch_timm_swin: patched %d blocks at level %r, left %d alone", patched, level, skipped)
    return model

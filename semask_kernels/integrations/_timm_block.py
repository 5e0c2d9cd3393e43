"""The class a timm Swin block takes when ``patch_timm_swin`` patches it at level "block".

A subclass, not a per-instance ``_attn`` attribute, so that TorchScript compiles the fused path (it cannot compile
a callable stored on an instance), pickles find the class by name, and ``isinstance(block, SwinTransformerBlock)``
still holds. Importing this module imports timm.
"""
from __future__ import annotations

import torch
from timm.models.swin_transformer import SwinTransformerBlock


class FusedSwinTransformerBlock(SwinTransformerBlock):
    """timm's ``SwinTransformerBlock`` whose attention path (roll, pad, partition, attention, reverse, crop, roll
    back) is the one ``shifted_window_attention`` op of its ``attn`` (a ``semask_kernels.nn.ShiftedWindowAttention``
    sharing timm's parameters). Everything else (MLP, norms, drop path, ``set_input_size``) is timm's."""

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, self.shift_size)

"""The class a timm Swin block takes when ``patch_timm_swin`` patches it at level "block".

A subclass, not a per-instance ``_attn`` attribute, so that TorchScript compiles the fused path (it cannot compile
a callable stored on an instance), pickles find the class by name, and ``isinstance(block, SwinTransformerBlock)``
still holds. Importing this module imports timm.
"""
from __future__ import annotations

import torch
from timm.models.swin_transformer import SwinTransformerBlock

from ..nn.mlp_residual import mlp_branch_runs_ops, mlp_residual


class FusedSwinTransformerBlock(SwinTransformerBlock):
    """timm's ``SwinTransformerBlock`` whose attention path (roll, pad, partition, attention, reverse, crop, roll
    back) is the one ``shifted_window_attention`` op of its ``attn`` (a ``semask_kernels.nn.ShiftedWindowAttention``
    sharing timm's parameters), and whose MLP branch (fc1 + GELU, fc2 + drop path + residual) is ``linear_gelu``
    then ``linear_residual`` on timm's own ``mlp`` parameters (``semask_kernels.nn.mlp_residual``). The norms and
    ``set_input_size`` are timm's; under TorchScript and FX the MLP branch is timm's code."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = x + self.drop_path1(self._attn(self.norm1(x)))
        x = x.reshape(B, -1, C)
        if torch.jit.is_scripting():
            x = x + self.drop_path2(self.mlp(self.norm2(x)))
        else:
            x = self._mlp_branch(x)
        return x.reshape(B, H, W, C)

    @torch.jit.unused
    def _mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        if mlp_branch_runs_ops(x, self.mlp, self.drop_path2, self.training):
            return mlp_residual(x, self.norm2, self.mlp, self.drop_path2, self.training, self.attn.backend)
        return x + self.drop_path2(self.mlp(self.norm2(x)))

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, self.shift_size)

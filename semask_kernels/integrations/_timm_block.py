"""The class a timm Swin block takes when ``patch_timm_swin`` patches it at level "block".

A subclass, not a per-instance ``_attn`` attribute, so that TorchScript compiles the fused path (it cannot compile
a callable stored on an instance), pickles find the class by name, and ``isinstance(block, SwinTransformerBlock)``
still holds. Importing this module imports timm.
"""
from __future__ import annotations

import torch
from timm.models.swin_transformer import SwinTransformerBlock

from ..nn.block_fusion import add_norm_mlp_residual, mlp_branch_runs_ops, norm_runs_op


class FusedSwinTransformerBlock(SwinTransformerBlock):
    """timm's ``SwinTransformerBlock`` whose attention path (roll, pad, partition, attention, reverse, crop, roll
    back) is the one ``shifted_window_attention`` op of its ``attn`` (a ``semask_kernels.nn.ShiftedWindowAttention``
    sharing timm's parameters), and whose residual stream after it (add + norm2, fc1 + GELU, fc2 + drop path +
    residual) is ``add_layer_norm``, ``linear_gelu`` and ``linear_residual`` on timm's own parameters
    (``semask_kernels.nn.block_fusion``). norm1 and ``set_input_size`` are timm's; under TorchScript, FX and
    autocast the part after the attention is timm's code."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        if torch.jit.is_scripting():
            x = x + self.drop_path1(self._attn(self.norm1(x)))
            x = x.reshape(B, -1, C)
            x = x + self.drop_path2(self.mlp(self.norm2(x)))
            return x.reshape(B, H, W, C)
        return self._fused_forward(x)

    @torch.jit.unused
    def _fused_forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        branch = self.drop_path1(self._attn(self.norm1(x)))
        if mlp_branch_runs_ops(x, self.mlp, self.drop_path2, self.training) and norm_runs_op(x, self.norm2):
            return add_norm_mlp_residual(x, branch, self.norm2, self.mlp, self.drop_path2, self.training,
                                         self.attn.backend)
        x = (x + branch).reshape(B, -1, C)
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x.reshape(B, H, W, C)

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, self.shift_size)

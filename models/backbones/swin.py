"""Swin Transformer backbone for segmentation, with optional SeMask semantic layers.

Official Swin-segmentation / SeMask-FPN semantics (``background/semask-official.md`` §1, §5): NHWC blocks with
``pad_then_roll`` shifted windows (shift = window // 2 on odd blocks, no clipping of window or shift to small
maps, -100 mask), patch merging at the *end* of a stage, an output LayerNorm ``norm{i}`` per stage, features at
strides 4/8/16/32. Module names follow the official code, so official checkpoints load without renaming.
The attention runs through ``semask_kernels`` (reference on a CPU, fused kernels on a GPU).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.layers import DropPath
from torch import Tensor, nn

import semask_kernels as sk
from semask_kernels.nn.block_fusion import add_norm_mlp_residual, mlp_branch_runs_ops, norm_runs_op

from .semantic_layer import SemanticLayer


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """x + DropPath(W-MSA/SW-MSA(LN(x))), then x + DropPath(MLP(LN(x))), on (B, H, W, C)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float,
                 qkv_bias: bool, drop_path: float, backend: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = sk.nn.ShiftedWindowAttention(dim, num_heads, window_size=window_size, shift_size=shift_size,
                                                 qkv_bias=qkv_bias, pad_order="pad_then_roll", backend=backend)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        branch = self.drop_path(self.attn(self.norm1(x)))
        if mlp_branch_runs_ops(x, self.mlp, self.drop_path, self.training) and norm_runs_op(x, self.norm2):
            # add + norm2, fc1 + GELU, fc2 + drop path + residual: three fused ops (torch path where none runs)
            return add_norm_mlp_residual(x, branch, self.norm2, self.mlp, self.drop_path, self.training,
                                         self.attn.backend)
        x = x + branch
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """4×4 stride-4 conv + LayerNorm; the image is zero-padded at the bottom/right to a multiple of 4."""

    def __init__(self, embed_dim: int, patch_size: int = 4, in_chans: int = 3):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, img: Tensor) -> Tensor:
        h, w = img.shape[-2:]
        p = self.patch_size
        img = F.pad(img, (0, (-w) % p, 0, (-h) % p))
        return self.norm(self.proj(img).permute(0, 2, 3, 1))  # B, H/4, W/4, C


class PatchMerging(nn.Module):
    """Concatenate 2×2 neighbours in the order (0,0), (1,0), (0,1), (1,1), LN(4C), Linear 4C→2C without bias;
    odd sizes are zero-padded first."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    """One stage: Swin blocks, then the semantic layer (SeMask), then patch merging (except the last stage)."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float, qkv_bias: bool,
                 drop_paths: Sequence[float], downsample: bool, num_classes: Optional[int],
                 sem_window_size: Optional[int], use_checkpoint: bool, backend: str, sem_depth: int = 1):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList([
            SwinBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio, qkv_bias,
                      drop_paths[i], backend)
            for i in range(depth)])
        self.semantic_layer = (SemanticLayer(dim, num_classes, sem_window_size, backend, depth=sem_depth)
                               if num_classes is not None else None)
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """(stage output (B, H, W, C), prior map (B, H, W, K) or None, next stage input or None)."""
        for block in self.blocks:
            if self.use_checkpoint and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        prior = None
        if self.semantic_layer is not None:
            prior, x = self.semantic_layer(x)
        return x, prior, (self.downsample(x) if self.downsample is not None else None)


class SwinBackbone(nn.Module):
    """Swin (or SeMask-Swin when ``num_classes`` is set) backbone.

    Args:
        embed_dim, depths, num_heads, window_size, mlp_ratio, qkv_bias, drop_path_rate: the Swin variant.
        num_classes: K of the semantic layers; None builds a plain Swin backbone.
        sem_window_size: window of the windowed semantic attention (the Swin window in the official configs).
        global_stages: stages whose semantic attention is global instead of windowed.
        sem_depths: SemanticAttention blocks per stage (N_S, official ``num_sem_blocks``; 1 in every official config).
        use_checkpoint: gradient checkpointing of every Swin block. backend: backend of the ops.

    ``forward(img (B, 3, H, W))`` returns ``(features, priors)``: four (B, C_i, H_i, W_i) maps after ``norm{i}``
    and, with semantic layers, the four prior maps (B, K, H_i, W_i) (otherwise an empty list).
    """

    def __init__(self, embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 7, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_path_rate: float = 0.3, num_classes: Optional[int] = None,
                 sem_window_size: Optional[int] = None, global_stages: Sequence[int] = (),
                 use_checkpoint: bool = False, backend: str = "auto", sem_depths: Optional[Sequence[int]] = None):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {tuple(depths)} and num_heads {tuple(num_heads)} must have one entry per stage")
        sem_depths = tuple(sem_depths) if sem_depths is not None else (1,) * len(depths)
        if len(sem_depths) != len(depths):
            raise ValueError(f"sem_depths {sem_depths} must have one entry per stage of depths {tuple(depths)}")
        self.num_stages = len(depths)
        self.num_features = [embed_dim * 2 ** i for i in range(self.num_stages)]
        self.patch_embed = PatchEmbed(embed_dim)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # over the Swin blocks only
        sem_window = sem_window_size or window_size
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.layers.append(BasicLayer(
                self.num_features[i], depth, num_heads[i], window_size, mlp_ratio, qkv_bias,
                rates[start:start + depth], downsample=i < self.num_stages - 1, num_classes=num_classes,
                sem_window_size=None if i in global_stages else sem_window, use_checkpoint=use_checkpoint,
                backend=backend, sem_depth=sem_depths[i]))
        for i, dim in enumerate(self.num_features):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))
        self.apply(init_weights)

    def forward(self, img: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        x = self.patch_embed(img)
        features, priors = [], []
        for i, layer in enumerate(self.layers):
            out, prior, x = layer(x)
            features.append(getattr(self, f"norm{i}")(out).permute(0, 3, 1, 2).contiguous())
            if prior is not None:
                priors.append(prior.permute(0, 3, 1, 2).contiguous())
        return features, priors


def init_weights(module: nn.Module) -> None:
    """mmseg's Swin init, applied to the whole backbone: trunc-normal(0.02) Linear weights, zero biases, unit
    LayerNorms. As in mmseg it also overwrites the semantic layers' constructor init; only gamma = 0 survives."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

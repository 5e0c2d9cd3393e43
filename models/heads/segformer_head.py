"""SegFormer's All-MLP decode head (official ``SegFormerHead``), with the official key names."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .common import ConvModule, resize


class LinearEmbed(nn.Module):
    """The official ``MLP``: a per-pixel ``proj`` Linear C_i → E on a (B, C_i, H, W) map, back to (B, E, H, W)."""

    def __init__(self, in_channels: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_channels, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SegFormerHead(nn.Module):
    """Per stage a linear C_i → ``channels`` (``linear_c{i}``, 256 for B0/B1, 768 for B2-B5), bilinear upsampling
    to the stride-4 map, concatenation in the order c4, c3, c2, c1, a 1×1 conv + BN + ReLU fuse (``linear_fuse``),
    Dropout2d(0.1) and a 1×1 classifier ``linear_pred``. ``forward(features)`` returns (B, K, H/4, W/4) logits.

    The official checkpoints also hold ``decode_head.conv_seg`` (mmseg ``BaseDecodeHead``'s classifier), which
    ``SegFormerHead`` never calls; it has no place here (:mod:`semask_models.checkpoints.mit` drops it by name).
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 256, dropout: float = 0.1,
                 align_corners: bool = False):
        super().__init__()
        self.align_corners = align_corners
        self.num_stages = len(in_channels)
        for i, c in enumerate(in_channels):
            self.add_module(f"linear_c{i + 1}", LinearEmbed(c, channels))
        self.linear_fuse = ConvModule(self.num_stages * channels, channels, 1)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.linear_pred = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        size = features[0].shape[2:]
        outs = []
        for i in range(self.num_stages, 0, -1):  # c4 first, as officially
            x = getattr(self, f"linear_c{i}")(features[i - 1])
            outs.append(x if i == 1 else resize(x, size, self.align_corners))
        return self.linear_pred(self.dropout(self.linear_fuse(torch.cat(outs, dim=1))))

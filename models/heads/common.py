"""Pieces shared by the decode heads: mmseg's ConvModule (conv + BN + ReLU) and the bilinear resize."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ConvModule(nn.Module):
    """Conv2d without bias + BatchNorm2d + ReLU, with mmseg's names ``conv`` / ``bn`` (checkpoint keys)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.bn(self.conv(x)))


def resize(x: Tensor, size, align_corners: bool) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


class ClassifierMixin:
    """mmseg ``BaseDecodeHead.cls_seg``: Dropout2d(0.1) then a 1×1 conv ``conv_seg`` to K classes."""

    def _init_classifier(self, channels: int, num_classes: int, dropout: float) -> None:
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def cls_seg(self, x: Tensor) -> Tensor:
        return self.conv_seg(self.dropout(x))

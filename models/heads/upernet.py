"""UperNet head (PPM + FPN, mmseg ``UPerHead``), as in the Swin segmentation baselines."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .common import ClassifierMixin, ConvModule, resize


class UPerHead(ClassifierMixin, nn.Module):
    """Pyramid pooling (scales 1, 2, 3, 6) on the last stage, a top-down FPN with 1×1 lateral and 3×3 output
    convs, the levels concatenated at stride 4 and fused by a 3×3 ConvModule, then Dropout2d(0.1) + 1×1 conv."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 512,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1, align_corners: bool = False):
        super().__init__()
        self.align_corners = align_corners
        self.psp_modules = nn.ModuleList([
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvModule(in_channels[-1], channels, 1))
            for scale in pool_scales])
        self.bottleneck = ConvModule(in_channels[-1] + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList([ConvModule(c, channels, 1) for c in in_channels[:-1]])
        self.fpn_convs = nn.ModuleList([ConvModule(channels, channels, 3) for _ in in_channels[:-1]])
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3)
        self._init_classifier(channels, num_classes, dropout)

    def _psp(self, x: Tensor) -> Tensor:
        outs = [x] + [resize(m(x), x.shape[2:], self.align_corners) for m in self.psp_modules]
        return self.bottleneck(torch.cat(outs, dim=1))

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, features)] + [self._psp(features[-1])]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:], self.align_corners)
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[2:]
        outs = [outs[0]] + [resize(x, size, self.align_corners) for x in outs[1:]]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))

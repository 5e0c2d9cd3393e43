"""Semantic-FPN head of SeMask-FPN / Swin-FPN (mmseg ``FPNHead`` / ``BranchFPNHead`` main branch), no FPN neck."""
from __future__ import annotations

import math
from typing import Sequence

from torch import Tensor, nn

from .common import ClassifierMixin, ConvModule, resize


class FPNHead(ClassifierMixin, nn.Module):
    """Per stage, max(1, log2(stride/4)) ConvModules (3×3, ``channels``), each followed by a ×2 bilinear upsampling
    for strides > 4; the stages are summed at stride 4, then Dropout2d(0.1) and a 1×1 conv to K.

    ``scale_heads.{i}.{j}`` holds the ConvModules at even j and the (weightless) upsamplings at odd j, as mmseg.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 256,
                 feature_strides: Sequence[int] = (4, 8, 16, 32), dropout: float = 0.1, align_corners: bool = False):
        super().__init__()
        self.align_corners = align_corners
        self.scale_heads = nn.ModuleList()
        for i, stride in enumerate(feature_strides):
            length = max(1, int(math.log2(stride) - math.log2(feature_strides[0])))
            layers = []
            for k in range(length):
                layers.append(ConvModule(in_channels[i] if k == 0 else channels, channels, 3))
                if stride != feature_strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=align_corners))
            self.scale_heads.append(nn.Sequential(*layers))
        self._init_classifier(channels, num_classes, dropout)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        out = self.scale_heads[0](features[0])
        for head, x in zip(self.scale_heads[1:], features[1:]):
            out = out + resize(head(x), out.shape[2:], self.align_corners)
        return self.cls_seg(out)

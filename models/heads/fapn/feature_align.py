"""FaPN's feature alignment (official ``FeatureAlign`` without the selection module) and the DCNv2 layer it uses
(official ``DCN`` with ``extra_offset_mask=True``), on ``torchvision.ops.deform_conv2d``."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..maskformer.layers import Conv2dNorm, c2_xavier_fill


class ModulatedDeformConv(nn.Module):
    """DCNv2 whose offsets and masks come from a separate map: ``conv_offset_mask`` (k×k conv, zero-initialized,
    ``deformable_groups``·3·k² channels) reads ``offset_input``; its output splits into thirds o1, o2, m; the
    offsets are cat(o1, o2) and the modulation sigmoid(m), as the official DCNv2 ``DCN``. The offset channel layout
    (per group and kernel tap: dy, dx) is the one DCNv2 and ``torchvision.ops.deform_conv2d`` share.

    ``forward(x (B, C_in, H, W), offset_input (B, C_in, H, W))`` returns (B, C_out, H, W) (stride 1).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1,
                 deformable_groups: int = 8):
        super().__init__()
        self.padding = padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)  # DCNv2's reset_parameters
        nn.init.uniform_(self.weight, -bound, bound)
        self.conv_offset_mask = nn.Conv2d(in_channels, deformable_groups * 3 * kernel_size * kernel_size,
                                          kernel_size, padding=padding)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x: Tensor, offset_input: Tensor) -> Tensor:
        from torchvision.ops import deform_conv2d
        o1, o2, mask = torch.chunk(self.conv_offset_mask(offset_input), 3, dim=1)
        return deform_conv2d(x, torch.cat((o1, o2), dim=1), self.weight, self.bias, padding=self.padding,
                             mask=mask.sigmoid())


class FeatureAlign(nn.Module):
    """Align the upsampled coarse map to the lateral one: offsets from ``offset`` (1×1 conv of
    [lateral, 2·coarse], no bias, with ``norm``), then relu(DCNv2(coarse)) + lateral.

    ``norm`` is the GroupNorm *shared* with the level's output conv in the official decoders (one module under two
    names, so both checkpoint keys exist and the parameters count once).
    ``forward(feat_l (B, C, H, W), feat_s (B, C, h, w))``: feat_s is bilinearly resized to (H, W) when it differs.
    """

    def __init__(self, channels: int, norm: nn.Module, deformable_groups: int = 8):
        super().__init__()
        self.offset = Conv2dNorm(2 * channels, channels, kernel_size=1, bias=False, norm=norm)
        c2_xavier_fill(self.offset)
        self.dcpack_L2 = ModulatedDeformConv(channels, channels, 3, padding=1, deformable_groups=deformable_groups)

    def forward(self, feat_l: Tensor, feat_s: Tensor) -> Tensor:
        if feat_s.shape[-2:] != feat_l.shape[-2:]:
            feat_s = F.interpolate(feat_s, size=feat_l.shape[-2:], mode="bilinear", align_corners=False)
        offset = self.offset(torch.cat([feat_l, feat_s * 2], dim=1))
        return F.relu(self.dcpack_L2(feat_s, offset)) + feat_l

"""The two FaPN pixel decoders of SeMask-FAPN: ``PixelFANDecoder`` (FaPN: an FPN whose every top-down merge is
feature-aligned) and ``MSDeformAttnPixelFANDecoder`` (MSFaPN: Mask2Former's deformable pixel decoder with the
stride-4 merge feature-aligned). Both return ``(mask_features, multi_scale_features)`` as Mask2Former's decoder."""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..mask2former.pixel_decoder import MSDeformAttnPixelDecoder, _check_features
from ..maskformer.layers import Conv2dNorm, c2_xavier_fill, group_norm
from .feature_align import FeatureAlign


class PixelFANDecoder(nn.Module):
    """FaPN pixel decoder (official ``PixelFANDecoder``): ``layer_4`` (3×3 conv, GN, ReLU) on the stride-32 map; at
    strides 16, 8, 4: y = layer_i(align_i(adapter_i(c_i), adapter_i(c_i) + nearest_up(y))) with ``adapter_i`` a
    1×1 conv + GN and ``align_i`` a :class:`FeatureAlign` sharing ``layer_i``'s GroupNorm (as officially).
    ``mask_features``: 3×3 conv with bias. Returns the stride-4 mask features (B, mask_dim, H/4, W/4) and the first
    three y's (strides 32, 16, 8; conv_dim channels) for the transformer decoder.
    """

    num_levels = 3

    def __init__(self, in_channels: Sequence[int], conv_dim: int = 256, mask_dim: int = 256,
                 deformable_groups: int = 8):
        super().__init__()
        self.in_channels = list(in_channels)
        n = len(self.in_channels)
        for idx, channels in enumerate(self.in_channels):
            last = idx == n - 1
            norm = group_norm(conv_dim)
            layer = Conv2dNorm(channels if last else conv_dim, conv_dim, kernel_size=3, padding=1, bias=False,
                               norm=norm, activation=F.relu)
            c2_xavier_fill(layer)
            if not last:
                adapter = Conv2dNorm(channels, conv_dim, kernel_size=1, bias=False, norm=group_norm(conv_dim))
                c2_xavier_fill(adapter)
                self.add_module(f"adapter_{idx + 1}", adapter)
                self.add_module(f"align_{idx + 1}", FeatureAlign(conv_dim, norm, deformable_groups))
            self.add_module(f"layer_{idx + 1}", layer)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=3, padding=1)
        c2_xavier_fill(self.mask_features)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        _check_features(features, self.in_channels)
        n = len(self.in_channels)
        y = getattr(self, f"layer_{n}")(features[-1])
        multi_scale = [y]
        for idx in range(n - 2, -1, -1):
            lateral = getattr(self, f"adapter_{idx + 1}")(features[idx])
            y = lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest")
            y = getattr(self, f"layer_{idx + 1}")(getattr(self, f"align_{idx + 1}")(lateral, y))
            multi_scale.append(y)
        return self.mask_features(y), multi_scale[: self.num_levels]


class MSDeformAttnPixelFANDecoder(MSDeformAttnPixelDecoder):
    """MSFaPN pixel decoder (official ``MSDeformAttnPixelFANDecoder``): Mask2Former's deformable pixel decoder whose
    stride-4 merge is y = layer_1(align_1(adapter_1(c_1), adapter_1(c_1) + bilinear_up(y))), ``align_1`` sharing
    ``layer_1``'s GroupNorm. Same arguments and outputs as :class:`MSDeformAttnPixelDecoder`."""

    def __init__(self, in_channels: Sequence[int], *, deformable_groups: int = 8, **kwargs):
        super().__init__(in_channels, **kwargs)
        for idx in range(self.num_fpn_levels):
            layer = getattr(self, f"layer_{idx + 1}")
            self.add_module(f"align_{idx + 1}", FeatureAlign(layer.out_channels, layer.norm, deformable_groups))
        self.align_names = [f"align_{idx + 1}" for idx in range(self.num_fpn_levels)][::-1]

    def _merge(self, idx: int, lateral: Tensor, coarser: Tensor) -> Tensor:
        """Mask2Former's FPN step, then FaPN's feature alignment of the lateral map to it."""
        return getattr(self, self.align_names[idx])(lateral, super()._merge(idx, lateral, coarser))

"""MaskFormer's per-pixel decoder (``BasePixelDecoder``): a top-down FPN over the four backbone stages with
GroupNorm, producing the stride-4 per-pixel embeddings the masks are read from."""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Conv2dNorm, c2_xavier_fill, group_norm


class BasePixelDecoder(nn.Module):
    """FPN pixel decoder of MaskFormer.

    Per stage i (1-based, stride 4·2^(i-1)): ``adapter_i`` (1×1 conv, no bias, GN) for stages 1-3 and ``layer_i``
    (3×3 conv, no bias, GN, ReLU); ``layer_4`` reads the last stage directly. Top-down: y = layer_4(c4), then
    y = layer_i(adapter_i(c_i) + nearest_upsample(y)); ``mask_features`` (3×3 conv with bias) maps y to
    ``mask_dim`` channels. Names and init (c2_xavier_fill) are the official ones.

    ``forward(features)``: four NCHW maps (strides 4, 8, 16, 32), returns the (B, mask_dim, H/4, W/4) mask
    features (dtype of the input).
    """

    def __init__(self, in_channels: Sequence[int], conv_dim: int = 256, mask_dim: int = 256):
        super().__init__()
        if len(in_channels) < 2:
            raise ValueError(f"in_channels must list at least 2 stages, got {list(in_channels)}")
        self.num_levels = len(in_channels)
        for idx, channels in enumerate(in_channels):
            last = idx == self.num_levels - 1
            if not last:
                adapter = Conv2dNorm(channels, conv_dim, kernel_size=1, bias=False, norm=group_norm(conv_dim))
                c2_xavier_fill(adapter)
                self.add_module(f"adapter_{idx + 1}", adapter)
            layer = Conv2dNorm(channels if last else conv_dim, conv_dim, kernel_size=3, padding=1, bias=False,
                               norm=group_norm(conv_dim), activation=F.relu)
            c2_xavier_fill(layer)
            self.add_module(f"layer_{idx + 1}", layer)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=3, padding=1)
        c2_xavier_fill(self.mask_features)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        if len(features) != self.num_levels:
            raise ValueError(f"features must hold {self.num_levels} maps (one per stage), got {len(features)}")
        y = getattr(self, f"layer_{self.num_levels}")(features[-1])
        for idx in range(self.num_levels - 2, -1, -1):
            lateral = getattr(self, f"adapter_{idx + 1}")(features[idx])
            # nearest upsampling, following FPN (and the official code)
            y = lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest")
            y = getattr(self, f"layer_{idx + 1}")(y)
        return self.mask_features(y)

"""The sine position encoding of DETR / Mask2Former, over the pixels of a feature map."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PositionEmbeddingSine(nn.Module):
    """(B, 2·num_pos_feats, H, W) sine/cosine codes of the pixel coordinates (y codes first, then x).

    Per axis the 1-based coordinate c (divided by the axis length and multiplied by ``scale`` = 2π when
    ``normalize``, as Mask2Former's DETR-style code: no −0.5 offset) is divided by temperature^(2⌊i/2⌋/num_pos_feats)
    and interleaved as sin (even i), cos (odd i). Computed in float32, returned in ``x``'s dtype and device; no
    parameters. ``forward(x)`` reads only x's shape (B, C, H, W).
    """

    def __init__(self, num_pos_feats: int = 64, temperature: float = 10000.0, normalize: bool = False,
                 scale: float = 2 * math.pi):
        super().__init__()
        if isinstance(num_pos_feats, bool) or not isinstance(num_pos_feats, int) or num_pos_feats < 2 \
                or num_pos_feats % 2:
            raise ValueError(f"num_pos_feats must be an even int >= 2 (sin/cos pairs), got {num_pos_feats!r}")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"x must be a feature map (B, C, H, W), got shape {tuple(x.shape)}")
        b, _, h, w = x.shape
        y_embed = torch.arange(1, h + 1, dtype=torch.float32, device=x.device)[:, None].expand(h, w)
        x_embed = torch.arange(1, w + 1, dtype=torch.float32, device=x.device)[None, :].expand(h, w)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (h + eps) * self.scale
            x_embed = x_embed / (w + eps) * self.scale
        i = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x_embed[..., None] / dim_t
        pos_y = y_embed[..., None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=3).flatten(2)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=3).flatten(2)
        pos = torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)
        return pos[None].expand(b, -1, -1, -1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"num_pos_feats={self.num_pos_feats}, temperature={self.temperature:g}, normalize={self.normalize}"

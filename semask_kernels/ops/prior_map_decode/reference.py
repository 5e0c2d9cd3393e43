"""Reference prior-map decoder of SeMask-FPN: maps[0] + Σ_{i≥1} up_i(maps[i]).

up_i is i successive ×2 bilinear upsamplings (``nn.Upsample(scale_factor=2)`` semantics), then a bilinear
resize to maps[0]'s size when the sizes differ, exactly as the official ``BranchFPNHead`` composes them.
maps[i]: (B, K, h_i, w_i). Returns (B, K, h_0, w_0).

The semantics in full, edge cases included: docs/ops.md, section ``prior_map_decode``.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .._autograd import recompute_grads


def upsample_level(x: Tensor, level: int, size: tuple[int, int], align_corners: bool) -> Tensor:
    for _ in range(level):
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=align_corners)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
    return x


def prior_map_decode(maps: list[Tensor], align_corners: bool) -> Tensor:
    size = tuple(maps[0].shape[-2:])
    out = maps[0].clone()
    for level, x in enumerate(maps[1:], start=1):
        out = out + upsample_level(x, level, size, align_corners)
    return out


def forward(maps, align_corners):
    return prior_map_decode(list(maps), align_corners)


def backward(grad, sizes, align_corners):
    """One gradient per map; ``sizes`` are the (h_i, w_i) of the maps. The decoder is linear, so its gradient
    does not depend on the maps' values: autograd runs through zero maps of the right shapes."""
    b, k = grad.shape[:2]
    maps = [grad.new_zeros(b, k, h, w) for h, w in sizes]
    return recompute_grads(lambda *m: prior_map_decode(list(m), align_corners), maps, grad)

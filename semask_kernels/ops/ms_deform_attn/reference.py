"""Reference multi-scale deformable attention (Deformable DETR, Mask2Former's pixel decoder): the plain
``F.grid_sample`` formulation that every repository ships as its CPU fallback.

value (B, S, nH, d) holds nL levels one after the other, level l of size ``shapes[l] = (H_l, W_l)`` (row-major,
``H_l·W_l`` tokens). sampling_locations (B, Lq, nH, nL, nP, 2) are (x, y) in [0, 1] over each level's map;
attention_weights (B, Lq, nH, nL, nP). Each (b, q, h) output is

    out[b, q, h·d:(h+1)·d] = Σ_l Σ_p w[b, q, h, l, p] · bilinear(value_l[b, :, h, :], loc[b, q, h, l, p])

with ``bilinear`` = ``F.grid_sample(mode="bilinear")`` on the grid 2·loc − 1 (so loc = 0 and 1 are the outer
edges of the map when align_corners is False, the centres of the corner pixels when it is True) and
``padding_mode`` outside the map (zeros: Deformable DETR). Returns (B, Lq, nH·d) in value's dtype.

Non-finite inputs (the rule every backend follows, see op.py): a sample whose location has a NaN or ±inf
coordinate is dropped (it adds nothing and its location and weight get zero gradients, whatever its weight);
every other sample adds w · bilinear(...), the tap formed first, so a weight of ±inf gives ±inf·tap (NaN where the
tap is 0) and a NaN weight gives NaN.

The semantics in full, edge cases included: docs/ops.md, section ``ms_deform_attn``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._autograd import recompute_grads
from .levels import level_shapes


def ms_deform_attn(value: Tensor, shapes: Sequence[tuple[int, int]], sampling_locations: Tensor,
                   attention_weights: Tensor, align_corners: bool = False, padding_mode: str = "zeros") -> Tensor:
    """``shapes``: the (H_l, W_l) of the levels as ints; the levels fill value's dim 1 in order."""
    b, _, heads, d = value.shape
    _, lq, _, levels, points, _ = sampling_locations.shape
    per_level = value.split([h * w for h, w in shapes], dim=1)
    # the NaN rule (op.py): a sample at a non-finite location is dropped whatever its weight, in every padding
    # mode (no output, zero gradients): it samples a finite stand-in with weight 0
    taken = torch.isfinite(sampling_locations).all(-1)
    sampling_locations = torch.where(taken[..., None], sampling_locations, 0.0)
    attention_weights = torch.where(taken, attention_weights, 0.0)
    grids = 2 * sampling_locations - 1
    sampled = []
    for level, (h, w) in enumerate(shapes):
        # (B, H·W, nH, d) -> (B·nH, d, H, W): one image per (batch, head)
        image = per_level[level].flatten(2).transpose(1, 2).reshape(b * heads, d, h, w)
        # (B, Lq, nH, nP, 2) -> (B·nH, Lq, nP, 2)
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode,
                                     align_corners=align_corners))  # (B·nH, d, Lq, nP)
    weights = attention_weights.transpose(1, 2).reshape(b * heads, 1, lq, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)  # (B·nH, d, Lq)
    return out.view(b, heads * d, lq).transpose(1, 2).contiguous()


def forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, align_corners,
            padding_mode):
    """The backend's forward: the level table as tensors, checked here (see levels.py)."""
    shapes = level_shapes(spatial_shapes, level_start_index, value.shape[1])
    return ms_deform_attn(value, shapes, sampling_locations, attention_weights, align_corners, padding_mode)


def backward(grad, value, spatial_shapes, level_start_index, sampling_locations, attention_weights, align_corners,
             padding_mode):
    """(d value, d sampling_locations, d attention_weights): autograd of the reference forward."""
    shapes = level_shapes(spatial_shapes, level_start_index, value.shape[1])
    return recompute_grads(lambda v, s, a: ms_deform_attn(v, shapes, s, a, align_corners, padding_mode),
                           [value, sampling_locations, attention_weights], grad)

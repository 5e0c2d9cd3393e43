"""The level table of multi-scale deformable attention, read on the host and checked against value's length.

``spatial_shapes`` (nL, 2) holds (H_l, W_l) per level and ``level_start_index`` (nL,) where each level starts in
value's dim 1. The kernels trust these numbers to index value, so they are checked (one device-to-host copy)
before any kernel runs: a wrong table is an error naming the argument, never an out-of-bounds read.
"""
from __future__ import annotations

import torch
from torch import Tensor


def level_shapes(spatial_shapes: Tensor, level_start_index: Tensor, num_tokens: int) -> list[tuple[int, int]]:
    """[(H_l, W_l)] of the levels, after checking every H_l, W_l >= 1, Σ H_l·W_l == ``num_tokens`` (value's S)
    and level_start_index == the running sum of the level sizes (starting at 0)."""
    table = torch.cat([spatial_shapes.reshape(-1), level_start_index.reshape(-1)]).tolist()  # one host copy
    levels = spatial_shapes.shape[0]
    shapes = [(int(table[2 * i]), int(table[2 * i + 1])) for i in range(levels)]
    starts = [int(s) for s in table[2 * levels:]]
    if any(h < 1 or w < 1 for h, w in shapes):
        raise ValueError(f"spatial_shapes must hold (H, W) >= 1 for every level, got {shapes}")
    expected, total = [], 0
    for h, w in shapes:
        expected.append(total)
        total += h * w
    if total != num_tokens:
        raise ValueError(f"spatial_shapes {shapes} cover Σ H·W = {total} tokens, but value has S = {num_tokens} "
                         f"(value must be (B, S, nH, d) with S the sum of the level sizes)")
    if starts != expected:
        raise ValueError(f"level_start_index must be the start of each level in value's dim 1, {expected} for "
                         f"spatial_shapes {shapes}, got {starts}")
    return shapes

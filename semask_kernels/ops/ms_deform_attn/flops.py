"""FLOP and byte counts of multi-scale deformable attention, from shapes (the op's spec and its flop_counter
registration both read these, so the benchmarks and ``torch.utils.flop_counter`` cannot drift apart).

Per sample (b, q, h, l, p) and channel: the bilinear tap is 4 multiply-adds, its attention weight one more
(10 FLOPs). Backward: the tap again and its dot with the output gradient for d attention_weights (10), the four
corner products for d value (8), the two corner differences per axis and their dots with the gradient for
d sampling_locations (12): 30 FLOPs.
"""
from __future__ import annotations

FLOPS_PER_SAMPLE_CHANNEL = 10
BWD_FLOPS_PER_SAMPLE_CHANNEL = 30


def _samples_channels(value_shape, locations_shape) -> int:
    b, lq, heads, levels, points, _ = locations_shape
    return b * lq * heads * levels * points * value_shape[-1]


def flops(value_shape, spatial_shapes_shape, level_start_index_shape, locations_shape, *args) -> int:
    """Forward FLOPs from the backend arguments' shapes (value (B, S, nH, d), sampling_locations
    (B, Lq, nH, nL, nP, 2), ...), as ``register_flop_formula`` passes them."""
    return FLOPS_PER_SAMPLE_CHANNEL * _samples_channels(value_shape, locations_shape)


def backward_flops(value_shape, spatial_shapes_shape, level_start_index_shape, locations_shape, *args) -> int:
    return BWD_FLOPS_PER_SAMPLE_CHANNEL * _samples_channels(value_shape, locations_shape)


def gathered_bytes(value_shape, locations_shape, element_size: int) -> int:
    """Bytes of value rows the forward gathers (four corner rows of d channels per sample, before caches): with
    the minimal traffic (every tensor once) it brackets what a kernel moves."""
    return 4 * _samples_channels(value_shape, locations_shape) * element_size

"""``ms_deform_attn``'s spec: backends, dtypes, sample inputs at Mask2Former's pixel-decoder shapes, FLOPs and
bytes, the benchmark workloads and the awkward test cases."""
from __future__ import annotations

import torch

from .._spec import ALL_FLOATS, FP32, LOW, Call, Case, OpSpec, Size
from . import flops as counts

# Level (H, W) sizes: Mask2Former-like halves, odd sizes, a 1×1 level, one level, five levels.
LEVELS = {
    "halves": [(8, 8), (4, 4), (2, 2)],
    "odd": [(7, 5), (3, 4), (1, 3)],
    "1x1": [(5, 6), (1, 1)],
    "one-level": [(9, 7)],
    "five-levels": [(6, 5), (4, 3), (3, 2), (2, 1), (1, 1)],
}

# Mask2Former's pixel decoder (the benchmark): 3 levels at strides 8/16/32 of a 512² or 640² image,
# 8 heads of d = 32 (C = 256), 4 points, batch 16; every token of the levels is a query (encoder self-attention).
BENCHMARKS = {
    "m2f_pixel_decoder_512": Size("m2f_pixel_decoder_512", batch=16, height=64, width=64, channels=256, heads=8),
    "m2f_pixel_decoder_640": Size("m2f_pixel_decoder_640", batch=16, height=80, width=80, channels=256, heads=8),
}
LEVELS_PER_SIZE = 3
POINTS = 4


def inputs(b: int, lq: int, heads: int, d: int, shapes, points: int, *, margin: float = 0.15,
           dtype=torch.float32, device="cpu", **options) -> Call:
    """value (B, S, nH, d) and attention weights of unit scale, sampling locations uniform in [−margin, 1+margin]
    (some outside the maps), the level table as int64 tensors; value, locations and weights take gradients."""
    s = sum(h * w for h, w in shapes)
    levels = len(shapes)
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)
    to = dict(dtype=dtype, device=device)
    return Call({"value": torch.randn(b, s, heads, d, device=device).to(dtype),
                 "spatial_shapes": torch.tensor(shapes, dtype=torch.int64, device=device),
                 "level_start_index": torch.tensor(starts, dtype=torch.int64, device=device),
                 "sampling_locations": (torch.rand(b, lq, heads, levels, points, 2, device=device)
                                        * (1 + 2 * margin) - margin).to(**to),
                 "attention_weights": torch.rand(b, lq, heads, levels, points, device=device).to(dtype),
                 **options}, ("value", "sampling_locations", "attention_weights"))


def level_sizes(size: Size) -> list[tuple[int, int]]:
    """The pixel decoder's levels for a workload: size.height × size.width (stride 8), then halves (ceil)."""
    return [(-(-size.height // 2 ** i), -(-size.width // 2 ** i)) for i in range(LEVELS_PER_SIZE)]


def sample(size: Size, dtype, device) -> Call:
    """Mask2Former's pixel-decoder encoder attention at a workload: 3 levels from the (height, width) map down,
    size.heads heads of size.channels / size.heads, 4 points, every token a query, locations near the maps."""
    shapes = level_sizes(size)
    lq = sum(h * w for h, w in shapes)
    return inputs(size.batch, lq, size.heads, size.channels // size.heads, shapes, POINTS, margin=0.05,
                  dtype=dtype, device=device)


def io_bytes_backward(call: Call) -> int:
    """Minimal backward traffic: the forward's inputs and the output gradient read once, the three gradients
    written once (the value gradient's sort keys and permutation not counted)."""
    value, loc, weights = (call.kwargs[k] for k in ("value", "sampling_locations", "attention_weights"))
    lq_d = loc.shape[0] * loc.shape[1] * value.shape[2] * value.shape[3]  # the output gradient (B, Lq, nH·d)
    return 2 * sum(t.numel() * t.element_size() for t in (value, loc, weights)) + lq_d * value.element_size()


def _far_outside() -> Call:
    """Points far outside (±1e4), exactly on the edges and on the maps' centres."""
    call = inputs(2, 12, 2, 6, LEVELS["odd"], 3)
    loc = call.kwargs["sampling_locations"]
    loc[:, 0] = 1e4
    loc[:, 1] = -1e4
    loc[:, 2, :, :, :, 0] = 0.0
    loc[:, 3, :, :, :, 1] = 1.0
    loc[:, 4] = 0.5
    return call


def _crowded() -> Call:
    """Locations snapped to a 3×3 lattice: each value row's gradient sums dozens of corners (their order is what
    determinism is about)."""
    call = inputs(2, 40, 2, 6, LEVELS["odd"], 4)
    loc = call.kwargs["sampling_locations"]
    return call.with_(sampling_locations=(loc.clamp(0, 1) * 2).round() / 2 * 0.9 + 0.05)


def _non_contiguous() -> Call:
    """value and weights as strided views, locations with their batch and query dims transposed in memory."""
    call = inputs(2, 11, 3, 5, LEVELS["odd"], 3)
    value, loc, weights = (call.kwargs[k] for k in ("value", "sampling_locations", "attention_weights"))
    return call.with_(value=torch.stack([value, value], -1)[..., 0],
                      sampling_locations=loc.transpose(0, 1).contiguous().transpose(0, 1),
                      attention_weights=torch.stack([weights, weights], -1)[..., 1])


CASES = (
    Case("odd-d5-p3", lambda: inputs(2, 11, 3, 5, LEVELS["odd"], 3), dtypes=FP32 + LOW,
         note="odd level sizes, d and nP not powers of two, Lq=11 not a multiple of the query block"),
    Case("halves-d16-p4", lambda: inputs(1, 9, 2, 16, LEVELS["halves"], 4)),
    Case("1x1-level-d7-p1", lambda: inputs(2, 6, 1, 7, LEVELS["1x1"], 1), note="a 1×1 level, one point"),
    Case("one-level-d8-p5", lambda: inputs(1, 13, 2, 8, LEVELS["one-level"], 5)),
    Case("five-levels-d3-p2", lambda: inputs(1, 7, 2, 3, LEVELS["five-levels"], 2)),
    Case("d100-lq37", lambda: inputs(1, 37, 2, 100, LEVELS["odd"], 2),
         note="d=100: BLOCK_Q 16, so Lq=37 spans three query blocks with a tail"),
    Case("align-corners", lambda: inputs(2, 11, 3, 5, LEVELS["odd"], 3, align_corners=True), dtypes=FP32 + LOW),
    Case("far-outside-and-edges", _far_outside, note="locations at ±1e4, on the edges, at the centre"),
    Case("crowded-rows", _crowded, note="many corners per value row: the value gradient's long segments"),
    Case("non-contiguous", _non_contiguous, note="strided value and weights, transposed locations"),
    Case("border-padding", lambda: inputs(1, 9, 2, 4, LEVELS["odd"], 3, margin=0.4, padding_mode="border"),
         note="grid_sample's border padding: the Triton backend declines it (zeros only)"),
)

SPEC = OpSpec(
    name="ms_deform_attn",
    preference=("triton", "torch", "reference"),
    dtypes={"reference": ALL_FLOATS, "torch": ALL_FLOATS, "triton": FP32 + LOW},
    sample=sample,
    flops=counts.flops,
    backward_flops=counts.backward_flops,
    cases=CASES,
    summary="multi-scale deformable attention (Deformable DETR, the pixel decoder of Mask2Former)",
    extra={"benchmarks": BENCHMARKS, "io_bytes_backward": io_bytes_backward,
           "gathered_bytes": counts.gathered_bytes},
)

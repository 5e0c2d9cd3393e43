"""``prior_map_decode``'s spec: backends, dtypes, sample inputs, FLOPs and the awkward test cases."""
from __future__ import annotations

import torch

from .._flops import BILINEAR_FLOPS
from .._spec import ALL_FLOATS, FP32, LOW, Call, Case, OpSpec, Size

# maps[0] size and level sizes: exact halves, odd sizes (ceil), a 1×1 level, two levels, one map, a level whose
# composite overshoots maps[0] (the final resize shrinks), and six maps (more levels than one launch holds).
LEVELS = {
    "halves-4-levels": [(16, 16), (8, 8), (4, 4), (2, 2)],
    "odd-4-levels": [(13, 9), (7, 5), (4, 3), (2, 2)],
    "1x1-level": [(10, 7), (5, 4), (3, 2), (1, 1)],
    "2-levels": [(6, 6), (3, 3)],
    "1-map": [(5, 5)],
    "overshoot": [(6, 7), (5, 7), (3, 2)],
    "6-maps": [(9, 11), (5, 6), (3, 3), (2, 2), (1, 1), (1, 1)],
}


def inputs(sizes, b: int = 1, k: int = 2, align_corners: bool = False, dtype=torch.float32, device="cpu") -> Call:
    """maps (B, K, h_i, w_i) of unit scale at ``sizes``; every map takes a gradient."""
    maps = [torch.randn(b, k, h, w, device=device).to(dtype) for h, w in sizes]
    return Call({"maps": maps, "align_corners": align_corners}, ("maps",))


def sample(size: Size, dtype, device) -> Call:
    """The four stage maps of SeMask-FPN: maps[0] at the 1/4-scale map, each next level half the side."""
    sizes = [(-(-size.height // 2 ** i), -(-size.width // 2 ** i)) for i in range(4)]
    return inputs(sizes, size.batch, size.classes, dtype=dtype, device=device)


def flops(map_shapes, *args) -> int:
    """7 FLOPs per bilinearly resized element at every ×2 step (and the final resize when sizes differ), plus one
    add per output element and level for the sum. The backward does the transposed work, the same count."""
    b, k, h0, w0 = map_shapes[0]
    total = 0
    for level, (_, _, h, w) in enumerate(map_shapes[1:], start=1):
        for _ in range(level):
            h, w = 2 * h, 2 * w
            total += BILINEAR_FLOPS * b * k * h * w
        if (h, w) != (h0, w0):
            total += BILINEAR_FLOPS * b * k * h0 * w0
        total += b * k * h0 * w0
    return total


def _cases():
    for name, sizes in LEVELS.items():
        for align_corners in (False, True):
            yield Case(f"{name}-align{int(align_corners)}", lambda s=sizes, a=align_corners: inputs(s, align_corners=a))
    yield Case("odd-4-levels-B2-K3", lambda: inputs(LEVELS["odd-4-levels"], b=2, k=3), dtypes=FP32 + LOW)


def _non_contiguous() -> Call:
    """Maps with a W stride of 2, and channels-last maps."""
    call = inputs(LEVELS["odd-4-levels"])
    maps = call.kwargs["maps"]
    strided = [torch.stack([m, m], dim=-1).flatten(-2)[..., ::2] for m in maps[:2]]
    return call.with_(maps=strided + [m.to(memory_format=torch.channels_last) for m in maps[2:]])


SPEC = OpSpec(
    name="prior_map_decode",
    preference=("cuda", "triton", "torch", "reference"),
    dtypes={"reference": ALL_FLOATS, "torch": ALL_FLOATS, "triton": FP32 + LOW, "cuda": ALL_FLOATS},
    sample=sample,
    flops=flops,
    backward_flops=flops,
    cases=(*_cases(), Case("non-contiguous", _non_contiguous, note="W stride 2 and channels-last maps")),
    summary="the parameter-free semantic decoder of SeMask-FPN",
)

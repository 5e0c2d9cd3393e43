"""``linear_residual``'s spec: backends, dtypes, sample inputs, FLOPs and the awkward test cases."""
from __future__ import annotations

import torch

from .._flops import linear_flops
from .._spec import ALL_FLOATS, FP32, LOW, Call, Case, OpSpec, Size


def inputs(rows, k: int, n: int, bias: bool = True, scale: bool = False, dtype=torch.float32, device="cpu") -> Call:
    """x (*rows, K) of unit scale, an nn.Linear-like weight (N, K) scaled 1/√K, a bias of scale 0.5, a unit
    residual and, with ``scale``, drop path's factor (keep probability 0.8, some samples dropped)."""
    rows = tuple(rows) if isinstance(rows, (tuple, list)) else (rows,)
    x = torch.randn(*rows, k, device=device).to(dtype)
    weight = (torch.randn(n, k, device=device) * max(k, 1) ** -0.5).to(dtype)
    b = (0.5 * torch.randn(n, device=device)).to(dtype) if bias else None
    residual = torch.randn(*rows, n, device=device).to(dtype)
    s = None
    if scale:
        keep = torch.ones(rows[0], device=device)
        keep[::3] = 0.0
        s = (keep / 0.8).to(dtype)
    grads = ("x", "weight") + (("bias",) if bias else ()) + ("residual",)
    return Call({"x": x, "weight": weight, "bias": b, "residual": residual, "scale": s}, grads)


def sample(size: Size, dtype, device) -> Call:
    """fc2 of one Swin stage's Mlp: B·H·W tokens of 4C channels back to C, added to the stream."""
    return inputs((size.batch, size.height * size.width), 4 * size.channels, size.channels, dtype=dtype,
                  device=device)


flops = linear_flops  # 2·M·N·K


def _views() -> Call:
    """x and the residual non-contiguous slices, the weight a transposed view."""
    x = torch.randn(3, 7, 40)[..., 4:36]
    weight = (torch.randn(32, 24) * 32 ** -0.5).t()
    residual = torch.randn(3, 24, 7).transpose(1, 2)
    return Call({"x": x, "weight": weight, "bias": 0.5 * torch.randn(24), "residual": residual,
                 "scale": torch.tensor([1.25, 0.0, 1.25])}, ("x", "weight", "bias", "residual"))


CASES = (
    Case("swin-fc2", lambda: inputs((2, 49), 128, 32), dtypes=FP32 + LOW, note="fc2 of a 7x7 window, C=32"),
    Case("drop-path", lambda: inputs((5, 3, 4), 24, 20, scale=True), dtypes=FP32 + LOW,
         note="per-sample scale over 12 rows a sample, some samples dropped"),
    Case("odd-sizes", lambda: inputs((3, 17), 20, 44)),
    Case("nobias", lambda: inputs((4, 9), 24, 40, bias=False, scale=True)),
    Case("k-wide", lambda: inputs((2, 5), 100, 24), note="K over several tiles"),
    Case("views", _views, note="non-contiguous x, weight and residual"),
)

SPEC = OpSpec(
    name="linear_residual",
    preference=("triton", "torch", "reference"),
    dtypes={"reference": ALL_FLOATS, "torch": ALL_FLOATS, "triton": FP32 + LOW},
    sample=sample,
    flops=flops,
    cases=CASES,
    magnitude_scaled=("d weight", "d bias"),  # sums over rows
    summary="proj/fc2 + bias + drop path + residual add as one GEMM with its epilogue",
)

"""``linear_gelu``'s spec: backends, dtypes, sample inputs, FLOPs and the awkward test cases."""
from __future__ import annotations

import torch

from .._flops import linear_flops
from .._spec import ALL_FLOATS, FP32, LOW, Call, Case, OpSpec, Size


def inputs(rows, k: int, n: int, bias: bool = True, dtype=torch.float32, device="cpu") -> Call:
    """x (*rows, K) of unit scale, an nn.Linear-like weight (N, K) scaled 1/√K, a bias of scale 0.5."""
    rows = tuple(rows) if isinstance(rows, (tuple, list)) else (rows,)
    x = torch.randn(*rows, k, device=device).to(dtype)
    weight = (torch.randn(n, k, device=device) * max(k, 1) ** -0.5).to(dtype)
    b = (0.5 * torch.randn(n, device=device)).to(dtype) if bias else None
    return Call({"x": x, "weight": weight, "bias": b}, ("x", "weight") + (("bias",) if bias else ()))


def sample(size: Size, dtype, device) -> Call:
    """fc1 of one Swin stage's Mlp: B·H·W tokens of C channels to 4C."""
    return inputs((size.batch, size.height * size.width), size.channels, 4 * size.channels, dtype=dtype,
                  device=device)


flops = linear_flops  # 2·M·N·K


def _views() -> Call:
    """x a channels-last slice of a wider tensor, the weight a transposed view."""
    x = torch.randn(2, 9, 40)[..., 4:36]
    weight = (torch.randn(32, 48) * 32 ** -0.5).t()
    return Call({"x": x, "weight": weight, "bias": 0.5 * torch.randn(48)}, ("x", "weight", "bias"))


CASES = (
    Case("swin-mlp", lambda: inputs((2, 49), 32, 128), dtypes=FP32 + LOW, note="fc1 of a 7x7 window, C=32"),
    Case("odd-sizes", lambda: inputs((3, 17), 20, 44), note="M, N, K not multiples of any tile"),
    Case("nobias", lambda: inputs(33, 24, 40, bias=False)),
    Case("k-wide", lambda: inputs(10, 100, 24), note="K over several tiles, N < 32"),
    Case("one-row", lambda: inputs((1,), 16, 16), note="M = 1"),
    Case("views", _views, note="non-contiguous x and weight"),
)

SPEC = OpSpec(
    name="linear_gelu",
    preference=("triton", "torch", "reference"),
    dtypes={"reference": ALL_FLOATS, "torch": ALL_FLOATS, "triton": FP32 + LOW},
    sample=sample,
    flops=flops,
    cases=CASES,
    backward_flops=lambda *args: 2 * flops(*args) + flops(*args),  # dx, dW and the recomputed pre-activation
    magnitude_scaled=("d weight", "d bias"),  # sums over rows
    summary="fc1 + bias + exact GELU as one GEMM with its epilogue (timm Mlp's first half)",
)

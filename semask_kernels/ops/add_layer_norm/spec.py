"""``add_layer_norm``'s spec: backends, dtypes, sample inputs, FLOPs and the awkward test cases."""
from __future__ import annotations

import torch

from .._spec import ALL_FLOATS, FP32, LOW, Call, Case, OpSpec, Size


def inputs(rows, c: int, bias: bool = True, dtype=torch.float32, device="cpu") -> Call:
    """x (a branch's output) and the residual stream (*rows, C), shifted and scaled per channel so the mean and
    variance matter; LayerNorm weight around 1 and bias of scale 0.5."""
    rows = tuple(rows) if isinstance(rows, (tuple, list)) else (rows,)
    x = torch.randn(*rows, c, device=device).to(dtype)
    residual = (2.0 * torch.randn(*rows, c, device=device) + torch.randn(c, device=device)).to(dtype)
    weight = (1.0 + 0.5 * torch.randn(c, device=device)).to(dtype)
    b = (0.5 * torch.randn(c, device=device)).to(dtype) if bias else None
    grads = ("x", "residual", "weight") + (("bias",) if bias else ())
    return Call({"x": x, "residual": residual, "weight": weight, "bias": b, "eps": 1e-5}, grads)


def sample(size: Size, dtype, device) -> Call:
    """norm2 of one Swin stage: B·H·W tokens of C channels."""
    return inputs((size.batch, size.height * size.width), size.channels, dtype=dtype, device=device)


def flops(x_shape, *args) -> int:
    """An add, the mean and variance sums, the normalisation and the affine: about 8 FLOPs an element."""
    n = 1
    for s in x_shape:
        n *= s
    return 8 * n


def _views() -> Call:
    """x a channel slice, the residual a transposed view."""
    x = torch.randn(3, 5, 40)[..., 4:28]
    residual = torch.randn(3, 24, 5).transpose(1, 2)
    return Call({"x": x, "residual": residual, "weight": 1.0 + torch.randn(24), "bias": torch.randn(24), "eps": 1e-6},
                ("x", "residual", "weight", "bias"))


CASES = (
    Case("swin-c32", lambda: inputs((2, 49), 32), dtypes=FP32 + LOW, note="a 7x7 window's tokens, C=32"),
    Case("odd-c", lambda: inputs((3, 7), 20), note="C not a power of two: masked columns"),
    Case("nobias", lambda: inputs(40, 48, bias=False), note="rows over several row blocks"),
    Case("wide-c", lambda: inputs(3, 384), dtypes=FP32 + LOW, note="C=384, one row a block"),
    Case("one-row", lambda: inputs((1,), 16), note="M = 1"),
    Case("views", _views, note="non-contiguous x and residual, eps 1e-6"),
)

SPEC = OpSpec(
    name="add_layer_norm",
    preference=("triton", "torch", "reference"),
    dtypes={"reference": ALL_FLOATS, "torch": ALL_FLOATS, "triton": FP32 + LOW},
    sample=sample,
    flops=flops,
    cases=CASES,
    magnitude_scaled=("d weight", "d bias"),  # sums over rows
    summary="residual add + LayerNorm in one pass (the new stream and its norm), forward and backward",
)

"""Triton backend of ``linear_residual``: one GEMM whose epilogue adds the bias, scales the tile's rows by their
sample's drop-path factor and adds the residual (``semask_kernels/kernels/linear_epilogue.py``): the branch's
output never reaches memory. The backward is two vendor GEMMs on dh = grad · scale (the residual's gradient is
the incoming one)."""
from __future__ import annotations

from typing import Optional

from ... import _triton_utils as tu
from ...kernels import linear_epilogue as le

# the files whose GPU evidence this backend rests on (semask_kernels/evidence.py); this file is implied
SOURCES = ("semask_kernels/kernels/linear_epilogue.py",)


def _rows(t):
    return t.reshape(-1, t.shape[-1])


def forward(x, weight, bias, residual, scale):
    """residual + scale[b] · (x @ weightᵀ + bias), residual's shape, x's dtype."""
    x2 = _rows(x)
    out = x2.new_empty((x2.shape[0], weight.shape[0]))
    per = x2.shape[0] // x.shape[0] if x.dim() > 1 and x.shape[0] else 1
    le.linear_epilogue(x2, weight, bias, "residual", out, aux=_rows(residual), scale=scale, rows_per_sample=per)
    return out.reshape(residual.shape)


def backward(grad, x, weight, bias, residual, scale):
    """(dx, dweight, dbias or None, dresidual); fixed-order reductions, bitwise repeatable."""
    dh = grad if scale is None else grad * scale.reshape(scale.shape[0], *([1] * (grad.dim() - 1)))
    dh2, x2 = _rows(dh), _rows(x)
    dx = (dh2 @ weight).reshape(x.shape)
    dweight = dh2.t() @ x2
    dbias = dh2.sum(0) if bias is not None else None
    return dx, dweight, dbias, grad.clone()


def available() -> Optional[str]:
    return tu.triton_available()


def supports(x, weight, bias, residual, scale) -> Optional[str]:
    return le.check(x)  # weight, bias, residual and scale: x's device and dtype (arguments())

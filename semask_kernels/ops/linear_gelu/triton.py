"""Triton backend of ``linear_gelu``: one GEMM whose epilogue adds the bias and applies the erf GELU
(``semask_kernels/kernels/linear_epilogue.py``); the backward recomputes the pre-activation in the same GEMM and
writes only dh = grad · gelu'(h), then dx = dh·W, dW = dhᵀ·x and db = Σ dh run on the vendor GEMMs."""
from __future__ import annotations

from typing import Optional

from ... import _triton_utils as tu
from ...kernels import linear_epilogue as le

# the files whose GPU evidence this backend rests on (semask_kernels/evidence.py); this file is implied
SOURCES = ("semask_kernels/kernels/linear_epilogue.py",)


def _rows(x):
    return x.reshape(-1, x.shape[-1])


def forward(x, weight, bias):
    """gelu(x @ weightᵀ + bias), (..., N) in x's dtype."""
    x2 = _rows(x)
    out = x2.new_empty((x2.shape[0], weight.shape[0]))
    le.linear_epilogue(x2, weight, bias, "gelu", out)
    return out.reshape(*x.shape[:-1], weight.shape[0])


def backward(grad, x, weight, bias):
    """(dx, dweight, dbias or None); fixed-order reductions, bitwise repeatable."""
    x2 = _rows(x)
    dh = x2.new_empty((x2.shape[0], weight.shape[0]))
    le.linear_epilogue(x2, weight, bias, "gelu_grad", dh, aux=_rows(grad))
    dx = (dh @ weight).reshape(x.shape)
    dweight = dh.t() @ x2
    dbias = dh.sum(0) if bias is not None else None
    return dx, dweight, dbias


def available() -> Optional[str]:
    return tu.triton_available()


def supports(x, weight, bias) -> Optional[str]:
    return le.check(x)  # weight and bias: x's device and dtype (arguments())

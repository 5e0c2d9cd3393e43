"""Reference ``linear_gelu``: timm ``Mlp``'s first half, fc1 then the exact (erf) GELU, step by step.

x (..., K), weight (N, K), bias (N,) or None. out = gelu(x @ weightᵀ + bias) with gelu(h) = h · Φ(h),
Φ(h) = (1 + erf(h / √2)) / 2, shape (..., N).

The semantics in full, edge cases included: docs/ops.md, section ``linear_gelu``.
"""
from __future__ import annotations

import math

import torch

from .._autograd import recompute_grads


def linear_gelu(x, weight, bias):
    h = torch.matmul(x, weight.t())
    if bias is not None:
        h = h + bias
    return h * 0.5 * (1.0 + torch.erf(h / math.sqrt(2.0)))


def forward(x, weight, bias):
    return linear_gelu(x, weight, bias)


def backward(grad, x, weight, bias):
    """(dx, dweight, dbias or None)."""
    return tuple(recompute_grads(linear_gelu, (x, weight, bias), grad))

"""Reference ``linear_residual``: the end of a Swin block's branch, ``proj`` or ``fc2`` then drop path then the
residual add (timm ``SwinTransformerBlock``: ``x = shortcut + drop_path(attn_or_mlp(x))``), step by step.

x (B, ..., K), weight (N, K), bias (N,) or None, residual (B, ..., N), scale (B,) or None (drop path's per-sample
factor, mask / keep_prob; it gets no gradient). out = residual + scale[b] · (x @ weightᵀ + bias).

The semantics in full, edge cases included: docs/ops.md, section ``linear_residual``.
"""
from __future__ import annotations

import torch

from .._autograd import recompute_grads


def per_sample(scale, like):
    """``scale`` (B,) shaped to broadcast over ``like`` (B, ...)."""
    return scale.reshape(scale.shape[0], *([1] * (like.dim() - 1)))


def linear_residual(x, weight, bias, residual, scale):
    h = torch.matmul(x, weight.t())
    if bias is not None:
        h = h + bias
    if scale is not None:
        h = h * per_sample(scale, h)
    return residual + h


def forward(x, weight, bias, residual, scale):
    return linear_residual(x, weight, bias, residual, scale).contiguous()


def backward(grad, x, weight, bias, residual, scale):
    """(dx, dweight, dbias or None, dresidual)."""
    dx, dweight, dbias, dresidual = recompute_grads(
        lambda x_, w_, b_, r_: linear_residual(x_, w_, b_, r_, scale), (x, weight, bias, residual), grad)
    return dx, dweight, dbias, dresidual

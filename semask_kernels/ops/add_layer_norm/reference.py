"""Reference ``add_layer_norm``: the residual stream's add and the LayerNorm that reads it, step by step (timm
``SwinTransformerBlock``: ``x = x + drop_path1(attn)``, then ``norm2(x)``).

x, residual (..., C); weight (C,), bias (C,) or None. s = x + residual; y = (s - mean(s)) / √(var(s) + eps) ·
weight + bias over the last dim (biased variance). Returns (s, y), both of x's shape.

The semantics in full, edge cases included: docs/ops.md, section ``add_layer_norm``.
"""
from __future__ import annotations

import torch

from .._autograd import recompute_grads


def add_layer_norm(x, residual, weight, bias, eps):
    s = x + residual
    mean = s.mean(-1, keepdim=True)
    var = (s - mean).square().mean(-1, keepdim=True)
    y = (s - mean) * torch.rsqrt(var + eps) * weight
    if bias is not None:
        y = y + bias
    return s, y


def forward(x, residual, weight, bias, eps):
    return add_layer_norm(x, residual, weight, bias, eps)


def backward(grad_sum, grad_normed, x, residual, weight, bias, eps):
    """(dx, dresidual, dweight, dbias or None)."""
    def both(x_, r_, w_, b_):
        s, y = add_layer_norm(x_, r_, w_, b_, eps)
        return torch.cat([s.reshape(-1), y.reshape(-1)])
    grad = torch.cat([grad_sum.reshape(-1), grad_normed.reshape(-1)])
    return tuple(recompute_grads(both, (x, residual, weight, bias), grad))

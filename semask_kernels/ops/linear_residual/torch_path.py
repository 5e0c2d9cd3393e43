"""The plain-PyTorch path of ``linear_residual``: ``residual + F.linear(x, weight, bias)`` (times the per-sample
scale when one is given), the calls of stock timm's block, so a model on this path gives stock timm's bits."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._autograd import recompute_grads
from .reference import per_sample


def available():
    return None


def supports(*args):
    return None


def plain(x, weight, bias, residual, scale):
    h = F.linear(x, weight, bias)
    if scale is not None:
        h = h * per_sample(scale, h)
    return residual + h


def forward(x, weight, bias, residual, scale):
    with torch.no_grad():
        return plain(x, weight, bias, residual, scale).contiguous()


def backward(grad, x, weight, bias, residual, scale):
    """(dx, dweight, dbias or None, dresidual)."""
    return tuple(recompute_grads(lambda x_, w_, b_, r_: plain(x_, w_, b_, r_, scale),
                                 (x, weight, bias, residual), grad))

"""The plain-PyTorch path of ``linear_gelu``: ``F.gelu(F.linear(x, weight, bias))``, the very calls of timm's
``Mlp`` (fc1, then ``nn.GELU()``), so a model on this path gives stock timm's bits; ``torch.compile`` fuses the
GELU into the GEMM's consumer as it does for stock timm."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._autograd import recompute_grads


def available():
    return None


def supports(*args):
    return None


def plain(x, weight, bias):
    return F.gelu(F.linear(x, weight, bias))


def forward(x, weight, bias):
    with torch.no_grad():
        return plain(x, weight, bias).contiguous()


def backward(grad, x, weight, bias):
    """(dx, dweight, dbias or None)."""
    return tuple(recompute_grads(plain, (x, weight, bias), grad))

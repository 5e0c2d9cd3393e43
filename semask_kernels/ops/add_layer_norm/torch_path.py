"""The plain-PyTorch path of ``add_layer_norm``: ``s = x + residual`` then ``F.layer_norm(s)``, the calls of stock
timm's block (the same bits); ``torch.compile`` fuses the two as it does for stock timm. Half types on the CPU
run the LayerNorm in float32 (see ``plain``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._autograd import recompute_grads


def available():
    return None


def supports(*args):
    return None


def plain(x, residual, weight, bias, eps):
    s = x + residual
    if s.device.type == "cpu" and s.dtype in (torch.float16, torch.bfloat16):
        # the CPU LayerNorm backward sums dweight/dbias in the half type; on a GPU it sums in float32
        y = F.layer_norm(s.float(), (s.shape[-1],), weight.float(), None if bias is None else bias.float(), eps)
        return s, y.to(s.dtype)
    return s, F.layer_norm(s, (s.shape[-1],), weight, bias, eps)


def forward(x, residual, weight, bias, eps):
    with torch.no_grad():
        s, y = plain(x, residual, weight, bias, eps)
        return s.contiguous(), y.contiguous()


def backward(grad_sum, grad_normed, x, residual, weight, bias, eps):
    """(dx, dresidual, dweight, dbias or None)."""
    def both(x_, r_, w_, b_):
        s, y = plain(x_, r_, w_, b_, eps)
        return torch.cat([s.reshape(-1), y.reshape(-1)])
    grad = torch.cat([grad_sum.reshape(-1), grad_normed.reshape(-1)])
    return tuple(recompute_grads(both, (x, residual, weight, bias), grad))

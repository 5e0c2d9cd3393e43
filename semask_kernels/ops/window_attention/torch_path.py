"""The fast plain-PyTorch path of window attention: what ``auto`` runs where no fused backend can.

On CUDA tensors, ``F.scaled_dot_product_attention`` with the relative-position bias (+ mask) as its additive
mask (its fused kernels never write the (B_, nH, N, N) scores); elsewhere timm's own matmul + softmax + matmul,
which beats SDPA's CPU kernels at Swin's small windows. Autograd runs straight through (no recomputed forward).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .._autograd import recompute_grads
from .._windows import relative_position_bias
from .reference import window_attention as _matmul_softmax


def available():
    return None


def supports(*args):
    return None


def plain(q: Tensor, k: Tensor, v: Tensor, bias_table: Optional[Tensor], window_size, mask: Optional[Tensor],
          scale: float) -> Tensor:
    window = tuple(window_size)
    if not q.is_cuda:
        return _matmul_softmax(q, k, v, bias_table, window, mask, scale)
    b_, heads, n, _ = q.shape
    nw = mask.shape[0] if mask is not None else 1
    bias = q.new_zeros(1, 1, n, n) if bias_table is None else relative_position_bias(bias_table, window)[None]
    if mask is not None:
        bias = bias + mask.to(bias.dtype)[:, None]  # (nW, nH, N, N)
    split = (b_ // nw, nw, heads, n)
    out = F.scaled_dot_product_attention(q.reshape(*split, -1), k.reshape(*split, -1), v.reshape(*split, -1),
                                         attn_mask=bias.to(q.dtype), scale=scale)
    return out.reshape(b_, heads, n, -1)


def forward(q, k, v, bias_table, window_size, mask, scale):
    with torch.no_grad():
        return plain(q, k, v, bias_table, window_size, mask, scale).contiguous()


def backward(grad, q, k, v, bias_table, window_size, mask, scale):
    """(dq, dk, dv, dbias_table or None)."""
    return tuple(recompute_grads(lambda q_, k_, v_, t_: plain(q_, k_, v_, t_, window_size, mask, scale),
                                 (q, k, v, bias_table), grad))

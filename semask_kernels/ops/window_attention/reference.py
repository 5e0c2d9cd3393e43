"""Reference window attention: timm ``WindowAttention``'s inner math, step by step, in plain PyTorch.

q, k, v: (B_, nH, N, d). out = softmax(scale * q @ kᵀ + bias + mask[b mod nW]) @ v, shape (B_, nH, N, d).
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from .._autograd import recompute_grads
from .._windows import relative_position_bias


def window_attention(q: Tensor, k: Tensor, v: Tensor, bias_table: Optional[Tensor], window_size: tuple[int, int],
                     mask: Optional[Tensor], scale: float) -> Tensor:
    b_, heads, n, _ = q.shape
    attn = (q * scale) @ k.transpose(-2, -1)  # timm scales q before the product
    if bias_table is not None:
        attn = attn + relative_position_bias(bias_table, window_size).unsqueeze(0)
    if mask is not None:
        nw = mask.shape[0]
        attn = attn.view(b_ // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(b_, heads, n, n)
    attn = attn.softmax(dim=-1)
    return attn @ v


def forward(q, k, v, bias_table, window_size, mask, scale):
    return window_attention(q, k, v, bias_table, tuple(window_size), mask, scale)


def backward(grad, q, k, v, bias_table, window_size, mask, scale):
    """(dq, dk, dv, dbias_table or None)."""
    dq, dk, dv, dtable = recompute_grads(
        lambda q_, k_, v_, t_: window_attention(q_, k_, v_, t_, tuple(window_size), mask, scale),
        (q, k, v, bias_table), grad)
    return dq, dk, dv, dtable

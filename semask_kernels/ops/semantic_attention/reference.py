"""Reference semantic attention (SeMask's ``SemanticAttention`` core): one head, no scaling, no bias.

s, k: (B, H, W, K); v: (B, H, W, C). out = softmax(s @ kᵀ) @ v over all H·W tokens (``window_size=None``) or
inside non-shifted windows of the zero-padded normed map, where padded tokens carry the Linear biases
``pad_k`` (K,) / ``pad_v`` (C,) (zeros if None). Returns (B, H, W, C).

The semantics in full, edge cases included: docs/ops.md, section ``semantic_attention``.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from .._autograd import recompute_grads
from .._windows import pad_with, padded_size, window_partition, window_reverse


def _attend(s: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Token sets (B', N, ·) -> (B', N, C)."""
    return (s @ k.transpose(-2, -1)).softmax(dim=-1) @ v


def semantic_attention(s: Tensor, k: Tensor, v: Tensor, window_size: Optional[tuple[int, int]],
                       pad_k: Optional[Tensor], pad_v: Optional[Tensor]) -> Tensor:
    b, h, w, _ = s.shape
    c = v.shape[-1]
    if window_size is None:
        out = _attend(s.reshape(b, h * w, -1), k.reshape(b, h * w, -1), v.reshape(b, h * w, c))
        return out.view(b, h, w, c)
    hp, wp = padded_size(h, window_size[0]), padded_size(w, window_size[1])
    s = pad_with(s, hp, wp, None)  # padded queries are cropped away: their value does not matter
    k = pad_with(k, hp, wp, pad_k)
    v = pad_with(v, hp, wp, pad_v)
    out = _attend(window_partition(s, window_size), window_partition(k, window_size),
                  window_partition(v, window_size))
    return window_reverse(out, window_size, hp, wp)[:, :h, :w, :]


def _window(window_size):
    return tuple(window_size) if len(window_size) else None


def forward(s, k, v, window_size, pad_k, pad_v):
    return semantic_attention(s, k, v, _window(window_size), pad_k, pad_v).contiguous()


def backward(grad, s, k, v, window_size, pad_k, pad_v):
    """(ds, dk, dv, dpad_k or None, dpad_v or None)."""
    return tuple(recompute_grads(
        lambda s_, k_, v_, pk, pv: semantic_attention(s_, k_, v_, _window(window_size), pk, pv),
        (s, k, v, pad_k, pad_v), grad))

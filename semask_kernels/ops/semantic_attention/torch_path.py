"""The fast plain-PyTorch path of semantic attention: what ``auto`` runs where no fused backend can.

The reference's layout (pad with the Linear biases, partition, reverse, crop), with the attention itself as
``F.scaled_dot_product_attention`` (scale 1): global attention over all H·W tokens then never holds the
(B, N, N) scores where PyTorch has a fused kernel. Autograd runs straight through (no recomputed forward).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .._autograd import recompute_grads
from .._windows import pad_with, padded_size, window_partition, window_reverse


def available():
    return None


def supports(*args):
    return None


def _attend(s: Tensor, k: Tensor, v: Tensor) -> Tensor:
    return F.scaled_dot_product_attention(s, k, v, scale=1.0)


def plain(s: Tensor, k: Tensor, v: Tensor, window_size, pad_k: Optional[Tensor], pad_v: Optional[Tensor]) -> Tensor:
    b, h, w, _ = s.shape
    c = v.shape[-1]
    if not window_size:
        return _attend(s.reshape(b, h * w, -1), k.reshape(b, h * w, -1), v.reshape(b, h * w, c)).view(b, h, w, c)
    window = tuple(window_size)
    hp, wp = padded_size(h, window[0]), padded_size(w, window[1])
    out = _attend(window_partition(pad_with(s, hp, wp, None), window),
                  window_partition(pad_with(k, hp, wp, pad_k), window),
                  window_partition(pad_with(v, hp, wp, pad_v), window))
    return window_reverse(out, window, hp, wp)[:, :h, :w, :]


def forward(s, k, v, window_size, pad_k, pad_v):
    with torch.no_grad():
        return plain(s, k, v, window_size, pad_k, pad_v).contiguous()


def backward(grad, s, k, v, window_size, pad_k, pad_v):
    """(ds, dk, dv, dpad_k or None, dpad_v or None)."""
    return tuple(recompute_grads(lambda s_, k_, v_, pk, pv: plain(s_, k_, v_, window_size, pk, pv),
                                 (s, k, v, pad_k, pad_v), grad))

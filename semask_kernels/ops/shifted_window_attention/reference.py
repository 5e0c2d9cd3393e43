"""Reference shifted-window attention: exactly what timm / the official Swin code do, step by step.

qkv: (B, H, W, 3C) with the last dim laid out [3][nH][d]; returns (B, H, W, C), the input of ``proj``.

- ``roll_then_pad`` (timm): roll by (-sh, -sw), pad bottom/right to multiples of the window, partition,
  attend, reverse, crop, roll by (+sh, +sw).
- ``pad_then_roll`` (official Swin segmentation, mmseg, SeMask): pad, roll over the padded grid, partition,
  attend, reverse, roll back, crop.

Padded tokens are the padded *input* of the qkv Linear, so their q, k, v equal ``qkv_bias`` (zeros if None),
and they are not masked. The shift mask (any shift > 0) puts ``mask_value`` between tokens of different regions
of the padded grid.

The semantics in full, edge cases included: docs/ops.md, section ``shifted_window_attention``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._autograd import recompute_grads
from .._windows import attention_in_windows as window_attention
from .._windows import pad_with, padded_size, shift_mask, window_partition, window_reverse


def _attend_padded(x: Tensor, bias_table: Tensor, num_heads: int, window: tuple[int, int],
                   shift: tuple[int, int], scale: float, mask_value: float) -> Tensor:
    """Attention over the windows of an already padded (and rolled) (B, Hp, Wp, 3C) grid -> (B, Hp, Wp, C)."""
    b, hp, wp, c3 = x.shape
    c = c3 // 3
    windows = window_partition(x, window)  # B*nW, N, 3C
    b_, n, _ = windows.shape
    q, k, v = windows.view(b_, n, 3, num_heads, c // num_heads).permute(2, 0, 3, 1, 4).unbind(0)
    mask = None
    if any(shift):
        mask = shift_mask(hp, wp, window, shift, mask_value, dtype=x.dtype, device=x.device)
    out = window_attention(q, k, v, bias_table, window, mask, scale)  # B_, nH, N, d
    out = out.transpose(1, 2).reshape(b_, n, c)
    return window_reverse(out, window, hp, wp)


def shifted_window_attention(qkv: Tensor, bias_table: Tensor, qkv_bias: Optional[Tensor], num_heads: int,
                             window_size: tuple[int, int], shift_size: tuple[int, int], scale: float,
                             pad_order: str, mask_value: float) -> Tensor:
    _, h, w, _ = qkv.shape
    wh, ww = window_size
    sh, sw = shift_size
    hp, wp = padded_size(h, wh), padded_size(w, ww)
    shifted = any(shift_size)
    if pad_order == "roll_then_pad":
        x = torch.roll(qkv, shifts=(-sh, -sw), dims=(1, 2)) if shifted else qkv
        x = pad_with(x, hp, wp, qkv_bias)
        x = _attend_padded(x, bias_table, num_heads, window_size, shift_size, scale, mask_value)
        x = x[:, :h, :w, :]
        return torch.roll(x, shifts=(sh, sw), dims=(1, 2)) if shifted else x
    if pad_order == "pad_then_roll":
        x = pad_with(qkv, hp, wp, qkv_bias)
        x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2)) if shifted else x
        x = _attend_padded(x, bias_table, num_heads, window_size, shift_size, scale, mask_value)
        x = torch.roll(x, shifts=(sh, sw), dims=(1, 2)) if shifted else x
        return x[:, :h, :w, :]
    raise ValueError(f"pad_order must be 'roll_then_pad' or 'pad_then_roll', got {pad_order!r}")


def forward(qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value):
    return shifted_window_attention(qkv, bias_table, qkv_bias, num_heads, tuple(window_size), tuple(shift_size),
                                    scale, pad_order, mask_value).contiguous()


def backward(grad, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value):
    """(dqkv, dbias_table, dqkv_bias or None)."""
    return tuple(recompute_grads(
        lambda x, t, b: shifted_window_attention(x, t, b, num_heads, tuple(window_size), tuple(shift_size),
                                                 scale, pad_order, mask_value),
        (qkv, bias_table, qkv_bias), grad))

"""Baselines for the attention part of a Swin block (from qkv (B, H, W, 3C) to the input of ``proj``), each
doing what the ops do, the way others do it:

- ``timm_eager``: timm's default path (roll, pad, partition, q·kᵀ, + bias, + mask, softmax, ·v, reverse, crop,
  roll), as the reference implementation transcribes it (tested against timm's block);
- ``sdpa``: the same layout work, then ``F.scaled_dot_product_attention`` with the bias and mask materialized
  as one dense (B·nW, nH, N, N) additive mask (timm's experimental fused path);
- ``flex``: the same layout work, then FlexAttention with a ``score_mod`` adding the bias and the mask by lookup
  (compiled on a GPU; its eager fallback on a CPU).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from semask_kernels.ops._windows import (pad_with, padded_size, relative_position_bias, shift_mask,
                                         window_partition, window_reverse)
from semask_kernels.ops.shifted_window_attention.reference import shifted_window_attention as timm_path


def timm_eager(qkv, table, qkv_bias, heads, window, shift, scale):
    return timm_path(qkv, table, qkv_bias, heads, window, shift, scale, "roll_then_pad", -100.0)


def _windows(qkv: Tensor, qkv_bias, heads: int, window, shift):
    """roll, pad, partition -> q, k, v (B·nW, nH, N, d), and what reversing needs."""
    _, h, w, c3 = qkv.shape
    hp, wp = padded_size(h, window[0]), padded_size(w, window[1])
    x = torch.roll(qkv, (-shift[0], -shift[1]), (1, 2)) if any(shift) else qkv
    x = window_partition(pad_with(x, hp, wp, qkv_bias), window)
    b_, n, _ = x.shape
    q, k, v = x.view(b_, n, 3, heads, c3 // 3 // heads).permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v, (h, w, hp, wp)


def _unwindows(out: Tensor, window, shift, sizes):
    h, w, hp, wp = sizes
    b_, heads, n, d = out.shape
    x = window_reverse(out.transpose(1, 2).reshape(b_, n, heads * d), window, hp, wp)[:, :h, :w]
    return torch.roll(x, shift, (1, 2)) if any(shift) else x


def sdpa(qkv, table, qkv_bias, heads, window, shift, scale):
    q, k, v, sizes = _windows(qkv, qkv_bias, heads, window, shift)
    bias = relative_position_bias(table, window).unsqueeze(0)  # 1, nH, N, N
    if any(shift):
        mask = shift_mask(sizes[2], sizes[3], window, shift, -100.0, dtype=qkv.dtype, device=qkv.device)
        nw = mask.shape[0]
        bias = (bias.unsqueeze(1) + mask.unsqueeze(1).unsqueeze(0)).expand(q.shape[0] // nw, -1, -1, -1, -1)
        bias = bias.reshape(q.shape[0], heads, *mask.shape[1:])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale)
    return _unwindows(out, window, shift, sizes)


@functools.lru_cache(maxsize=None)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention
    return torch.compile(flex_attention, dynamic=False)


def flex(qkv, table, qkv_bias, heads, window, shift, scale):
    from torch.nn.attention.flex_attention import flex_attention
    q, k, v, sizes = _windows(qkv, qkv_bias, heads, window, shift)
    bias = relative_position_bias(table, window)  # nH, N, N (gathered once per call, as the kernels do per tile)
    nw = (sizes[2] // window[0]) * (sizes[3] // window[1])
    mask = (shift_mask(sizes[2], sizes[3], window, shift, -100.0, dtype=qkv.dtype, device=qkv.device)
            if any(shift) else None)

    def score_mod(score, b, h, qi, ki):
        score = score + bias[h, qi, ki]
        return score + mask[b % nw, qi, ki] if mask is not None else score

    fn = _compiled_flex() if qkv.is_cuda else flex_attention
    out = fn(q, k, v, score_mod=score_mod, scale=scale)
    return _unwindows(out, window, shift, sizes)


BASELINES = {"timm_eager": timm_eager, "sdpa": sdpa, "flex": flex}

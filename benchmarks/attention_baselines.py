"""Baselines for the attention path of a Swin block, from the normed map x (B, H, W, C) to the output of ``proj``
(qkv Linear, shifted-window attention, proj), each the way others do it:

- ``timm_eager``: what timm's ``SwinTransformerBlock._attn`` does: roll, pad and partition *x* (C channels),
  the qkv Linear on the windows, q·kᵀ + bias + mask, softmax, ·v, proj, reverse, crop, roll back;
- ``sdpa``: the same layout work, then ``F.scaled_dot_product_attention`` with the bias and mask materialized
  as one dense (B·nW, nH, N, N) additive mask (timm's experimental fused path);
- ``flex``: the same layout work, then FlexAttention with a ``score_mod`` adding the bias and the mask by lookup
  (compiled on a GPU; its eager fallback on a CPU).

The op candidates run the qkv Linear on the map, the op, then proj: every candidate does the same work.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from semask_kernels.ops._windows import padded_size, relative_position_bias, shift_mask, window_partition, \
    window_reverse


def _windows(x: Tensor, weight: Tensor, qkv_bias, heads: int, window, shift):
    """timm's layout on x: roll, zero-pad, partition, then the qkv Linear -> q, k, v (B·nW, nH, N, d)."""
    _, h, w, c = x.shape
    hp, wp = padded_size(h, window[0]), padded_size(w, window[1])
    x = torch.roll(x, (-shift[0], -shift[1]), (1, 2)) if any(shift) else x
    x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
    qkv = F.linear(window_partition(x, window), weight, qkv_bias)
    b_, n, _ = qkv.shape
    q, k, v = qkv.view(b_, n, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v, (h, w, hp, wp)


def _unwindows(out: Tensor, proj_w, proj_b, window, shift, sizes):
    """proj on the windows, reverse, crop, roll back (timm)."""
    h, w, hp, wp = sizes
    b_, heads, n, d = out.shape
    out = F.linear(out.transpose(1, 2).reshape(b_, n, heads * d), proj_w, proj_b)
    x = window_reverse(out, window, hp, wp)[:, :h, :w]
    return torch.roll(x, shift, (1, 2)) if any(shift) else x


def _mask(sizes, window, shift, dtype, device):
    return shift_mask(sizes[2], sizes[3], window, shift, -100.0, dtype=dtype, device=device) if any(shift) else None


def timm_eager(x, weight, qkv_bias, table, proj_w, proj_b, heads, window, shift, scale):
    q, k, v, sizes = _windows(x, weight, qkv_bias, heads, window, shift)
    b_, _, n, _ = q.shape
    attn = (q * scale) @ k.transpose(-2, -1) + relative_position_bias(table, window).unsqueeze(0)
    mask = _mask(sizes, window, shift, x.dtype, x.device)
    if mask is not None:
        nw = mask.shape[0]
        attn = (attn.view(-1, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(-1, heads, n, n)
    return _unwindows(attn.softmax(-1) @ v, proj_w, proj_b, window, shift, sizes)


def sdpa(x, weight, qkv_bias, table, proj_w, proj_b, heads, window, shift, scale):
    q, k, v, sizes = _windows(x, weight, qkv_bias, heads, window, shift)
    bias = relative_position_bias(table, window).unsqueeze(0)  # 1, nH, N, N
    mask = _mask(sizes, window, shift, x.dtype, x.device)
    if mask is not None:
        nw = mask.shape[0]
        bias = (bias.unsqueeze(1) + mask.unsqueeze(1).unsqueeze(0)).expand(q.shape[0] // nw, -1, -1, -1, -1)
        bias = bias.reshape(q.shape[0], heads, *mask.shape[1:])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale)
    return _unwindows(out, proj_w, proj_b, window, shift, sizes)


@functools.lru_cache(maxsize=None)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention
    return torch.compile(flex_attention, dynamic=False)


def flex(x, weight, qkv_bias, table, proj_w, proj_b, heads, window, shift, scale):
    from torch.nn.attention.flex_attention import flex_attention
    q, k, v, sizes = _windows(x, weight, qkv_bias, heads, window, shift)
    bias = relative_position_bias(table, window)  # nH, N, N (gathered once per call, as the kernels do per tile)
    nw = (sizes[2] // window[0]) * (sizes[3] // window[1])
    mask = _mask(sizes, window, shift, x.dtype, x.device)

    def score_mod(score, b, h, qi, ki):
        score = score + bias[h, qi, ki]
        return score + mask[b % nw, qi, ki] if mask is not None else score

    fn = _compiled_flex() if x.is_cuda else flex_attention
    out = fn(q, k, v, score_mod=score_mod, scale=scale)
    return _unwindows(out, proj_w, proj_b, window, shift, sizes)


BASELINES = {"timm_eager": timm_eager, "sdpa": sdpa, "flex": flex}

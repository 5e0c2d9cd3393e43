"""Window bookkeeping shared by the reference implementations and the nn modules (plain PyTorch), and the
attention inside windows that the window_attention and shifted_window_attention references both run."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def padded_size(size: int, window: int) -> int:
    """Smallest multiple of ``window`` that is >= ``size``."""
    return -(-size // window) * window


def pad_with(x: Tensor, hp: int, wp: int, fill: Optional[Tensor]) -> Tensor:
    """Pad (B, H, W, C) at the bottom/right to (B, hp, wp, C) with the vector ``fill`` (C,) (zeros if None).

    Built with ``torch.cat`` so that the gradient reaches ``fill``.
    """
    b, h, w, c = x.shape
    if fill is None:
        fill = x.new_zeros(c)
    fill = fill.to(x.dtype)
    if hp > h:
        x = torch.cat([x, fill.expand(b, hp - h, w, c)], dim=1)
    if wp > w:
        x = torch.cat([x, fill.expand(b, hp, wp - w, c)], dim=2)
    return x


def window_partition(x: Tensor, window: tuple[int, int]) -> Tensor:
    """(B, H, W, C) -> (B * nW, wh * ww, C), windows in row-major order (as timm)."""
    b, h, w, c = x.shape
    wh, ww = window
    x = x.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, c)


def window_reverse(windows: Tensor, window: tuple[int, int], h: int, w: int) -> Tensor:
    """(B * nW, wh * ww, C) -> (B, H, W, C), the inverse of ``window_partition``."""
    wh, ww = window
    c = windows.shape[-1]
    x = windows.view(-1, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_position_index(window: tuple[int, int], device=None) -> Tensor:
    """(N, N) long: idx(i, j) = (hi - hj + wh - 1) * (2 ww - 1) + (wi - wj + ww - 1), N = wh * ww."""
    wh, ww = window
    hi, wi = torch.meshgrid(torch.arange(wh, device=device), torch.arange(ww, device=device), indexing="ij")
    hi, wi = hi.flatten(), wi.flatten()
    dh = hi[:, None] - hi[None, :] + wh - 1
    dw = wi[:, None] - wi[None, :] + ww - 1
    return dh * (2 * ww - 1) + dw


def relative_position_bias(bias_table: Tensor, window: tuple[int, int]) -> Tensor:
    """Gather the (nH, N, N) bias from a ((2wh-1)(2ww-1), nH) table."""
    n = window[0] * window[1]
    index = relative_position_index(window, device=bias_table.device)
    return bias_table[index.view(-1)].view(n, n, -1).permute(2, 0, 1)


def _region_ids(length: int, window: int, shift: int, device) -> Tensor:
    """Region of each coordinate along one padded axis: [0, P-win), [P-win, P-shift), [P-shift, P).

    With ``shift == 0`` along an axis there is one region (as timm, whose slice ``-0:`` covers the axis).
    """
    coords = torch.arange(length, device=device)
    if shift == 0:
        return torch.zeros_like(coords)
    return (coords >= length - window).long() + (coords >= length - shift).long()


def shift_mask(hp: int, wp: int, window: tuple[int, int], shift: tuple[int, int], value: float,
               dtype=torch.float32, device=None) -> Tensor:
    """The (nW, N, N) additive mask of shifted windows on an (hp, wp) padded grid: 0 inside a region, ``value``
    between tokens of different regions."""
    rows = _region_ids(hp, window[0], shift[0], device)
    cols = _region_ids(wp, window[1], shift[1], device)
    region = (rows[:, None] * 3 + cols[None, :]).view(1, hp, wp, 1)
    region = window_partition(region, window).squeeze(-1)  # nW, N
    different = region[:, :, None] != region[:, None, :]
    mask = torch.zeros(different.shape, dtype=dtype, device=device)
    return mask.masked_fill(different, value)


def attention_in_windows(q: Tensor, k: Tensor, v: Tensor, bias_table: Optional[Tensor],
                         window_size: tuple[int, int], mask: Optional[Tensor], scale: float) -> Tensor:
    """timm ``WindowAttention``'s inner math, step by step: softmax(scale·q·kᵀ + bias + mask[b mod nW])·v with q, k,
    v (B_, nH, N, d), the bias gathered from ``bias_table`` by the window coordinates (window_attention's
    reference, and the attention of shifted_window_attention's reference)."""
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

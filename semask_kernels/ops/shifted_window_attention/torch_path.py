"""The fast plain-PyTorch path of shifted-window attention: what ``auto`` runs where no fused backend can.

Same function as the reference (``reference.py``), computed with fewer passes over memory:

- roll + pad + partition is one gather of qkv rows by a precomputed index (padding slots then get
  ``qkv_bias``); crop + roll back + reverse is one gather of the output rows by the inverse index; each one's
  gradient is the other gather (no scatter-add into zeros);
- the index tensors and the shift mask depend only on (H, W, window, shift, pad order, device): cached, never
  per parameter value; the (nH, N, N) relative-position bias is gathered once per call, like timm;
- attention is ``F.scaled_dot_product_attention`` with the bias (+ mask) as its additive mask where PyTorch has a
  fused kernel for it, else matmul + softmax + matmul; autograd runs straight through these ops (no recomputed
  forward), and ``torch.compile`` sees plain ops to fuse (the caches are bypassed while compiling);
- ``from_input`` starts one step earlier, from the block's normed input, and gathers its C channels before the
  qkv Linear (as timm partitions x, not qkv): what ``nn.ShiftedWindowAttention`` runs when this path is chosen.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .._autograd import recompute_grads
from .._windows import padded_size, relative_position_index, shift_mask


class Layout(NamedTuple):
    gather: Tensor      # (nW·N,) long: the token each window slot reads (padding slots: 0, then overwritten)
    scatter: Tensor     # (H·W,) long: the window slot of each token
    pad_slots: Tensor   # (P,) long: the padding slots (P = 0 without padding)
    mask: Optional[Tensor]  # (nW, 1, N, N) float32 shift mask, or None without shift
    rel_index: Tensor   # (N·N,) long: bias-table row of each (query, key) pair


def _rows(x: Tensor, index: Tensor) -> Tensor:
    """x[:, index] for x (B, L, C), as one gather over the flattened batch: on the CPU ``index_select`` along
    dim 0 of contiguous rows runs 1.5-2.7x faster than along dim 1 (measured at Swin-T's stage shapes)."""
    b, length, c = x.shape
    flat = (torch.arange(b, device=x.device) * length)[:, None] + index[None]
    return x.reshape(b * length, c).index_select(0, flat.reshape(-1)).view(b, index.numel(), c)


class _Partition(torch.autograd.Function):
    """roll + pad + partition as one gather: (B, H·W, C) rows and the padding vector (C,) -> (B, nW·N, C).
    Its gradient is the inverse gather (every token sits in one slot) plus the sum over padding slots, instead
    of autograd's scatter-add into zeros."""

    @staticmethod
    def forward(ctx, rows, fill, lay):
        out = _rows(rows, lay.gather)
        if lay.pad_slots.numel():
            out.index_copy_(1, lay.pad_slots, fill.to(rows.dtype).expand(rows.shape[0], lay.pad_slots.numel(), -1))
        ctx.lay = lay
        return out

    @staticmethod
    def backward(ctx, grad):
        lay = ctx.lay
        d_rows = _rows(grad, lay.scatter)
        d_fill = None
        if ctx.needs_input_grad[1] and lay.pad_slots.numel():
            d_fill = grad.index_select(1, lay.pad_slots).sum((0, 1))
        return d_rows, d_fill, None


class _Reverse(torch.autograd.Function):
    """reverse + crop + roll back as one gather: (B, nW·N, C) -> (B, H·W, C); gradient: the forward gather with
    zeros in the padding slots."""

    @staticmethod
    def forward(ctx, windows, lay):
        ctx.lay = lay
        return _rows(windows, lay.scatter)

    @staticmethod
    def backward(ctx, grad):
        lay = ctx.lay
        d_windows = _rows(grad, lay.gather)
        if lay.pad_slots.numel():
            d_windows.index_fill_(1, lay.pad_slots, 0)
        return d_windows, None


_CACHE: dict = {}
_CACHE_LIMIT = 64


def _build(h: int, w: int, window: tuple[int, int], shift: tuple[int, int], pad_order: str, mask_value: float,
           device) -> Layout:
    wh, ww = window
    sh, sw = shift
    hp, wp = padded_size(h, wh), padded_size(w, ww)
    y = torch.arange(hp, device=device)[:, None].expand(hp, wp)
    x = torch.arange(wp, device=device)[None, :].expand(hp, wp)
    # (y, x) on the rolled, padded grid -> the original token there, or padding
    if pad_order == "roll_then_pad":
        real = (y < h) & (x < w)
        sy, sx = (y + sh) % h, (x + sw) % w
    else:  # pad_then_roll: roll over the padded grid
        sy, sx = (y + sh) % hp, (x + sw) % wp
        real = (sy < h) & (sx < w)
    source = torch.where(real, sy * w + sx, torch.full_like(sy, h * w))
    # partition: slot order (window row, window col, row in window, col in window)
    source = source.view(hp // wh, wh, wp // ww, ww).permute(0, 2, 1, 3).reshape(-1)
    # the inverse: every token sits in exactly one slot (only padding repeats); no data-dependent shapes
    slots = torch.arange(source.numel(), device=device)
    scatter = torch.zeros(h * w + 1, dtype=torch.long, device=device).scatter(0, source, slots)[: h * w]
    pad_count = hp * wp - h * w
    pad_slots = torch.sort(torch.where(source == h * w, slots, slots.numel())).values[:pad_count]
    gather = torch.where(source == h * w, 0, source)
    mask = None
    if any(shift):
        mask = shift_mask(hp, wp, window, shift, mask_value, dtype=torch.float32, device=device).unsqueeze(1)
    rel_index = relative_position_index(window, device=device).view(-1)
    return Layout(gather, scatter, pad_slots, mask, rel_index)


def layout(h, w, window, shift, pad_order, mask_value, device) -> Layout:
    """The cached index tensors of one geometry (rebuilt, uncached, while ``torch.compile`` traces)."""
    key = (h, w, tuple(window), tuple(shift), pad_order, float(mask_value), str(device))
    if torch.compiler.is_compiling():
        return _build(h, w, tuple(window), tuple(shift), pad_order, mask_value, device)
    found = _CACHE.get(key)
    if found is None:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.pop(next(iter(_CACHE)))
        # normal tensors even when first built under inference_mode: a later training step reuses them
        with torch.inference_mode(False):
            found = _CACHE[key] = _build(h, w, tuple(window), tuple(shift), pad_order, mask_value, device)
    return found


def _attend(windows: Tensor, bias_table: Tensor, num_heads: int, n: int, scale: float, lay: Layout) -> Tensor:
    """Attention inside each window: (B, nW·N, 3C) windowed qkv rows -> (B, nW·N, C) windowed outputs."""
    b, slots, c3 = windows.shape
    c = c3 // 3
    d = c // num_heads
    nw = slots // n
    q, k, v = windows.view(b * nw, n, 3, num_heads, d).permute(2, 0, 3, 1, 4).unbind(0)  # (B·nW, nH, N, d)
    bias = bias_table[lay.rel_index].view(n, n, num_heads).permute(2, 0, 1).unsqueeze(0)  # (1, nH, N, N)
    if lay.mask is not None:
        bias = bias + lay.mask.to(bias.dtype)  # (nW, nH, N, N)
    if q.is_cuda:  # fused SDPA pays on CUDA; on the CPU its kernels lose to matmul + softmax at these windows
        q5, k5, v5 = (t.view(b, nw, num_heads, n, d) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q5, k5, v5, attn_mask=bias.to(q.dtype), scale=scale)
    else:
        attn = (q * scale) @ k.transpose(-2, -1)
        attn = attn.view(b, nw, num_heads, n, n) + bias
        out = attn.softmax(dim=-1).view(b * nw, num_heads, n, n) @ v
    return out.reshape(b, nw, num_heads, n, d).permute(0, 1, 3, 2, 4).reshape(b, slots, c)


def shifted_window_attention(qkv: Tensor, bias_table: Tensor, qkv_bias: Optional[Tensor], num_heads: int,
                             window_size, shift_size, scale: float, pad_order: str, mask_value: float) -> Tensor:
    """(B, H, W, 3C) -> (B, H, W, C); arguments as ``reference.shifted_window_attention``, already validated."""
    b, h, w, c3 = qkv.shape
    lay = layout(h, w, window_size, shift_size, pad_order, mask_value, qkv.device)
    fill = qkv_bias if qkv_bias is not None else qkv.new_zeros(c3)
    windows = _Partition.apply(qkv.reshape(b, h * w, c3), fill, lay)  # (B, nW·N, 3C)
    out = _attend(windows, bias_table, num_heads, window_size[0] * window_size[1], scale, lay)
    return _Reverse.apply(out, lay).view(b, h, w, c3 // 3)


def from_input(x: Tensor, qkv: Callable[[Tensor], Tensor], bias_table: Tensor, num_heads: int, window_size,
               shift_size, scale: float, pad_order: str, mask_value: float) -> Tensor:
    """The same attention from the block's normed input: x (B, H, W, C) -> (B, H, W, C') before ``proj``.

    ``qkv`` (the block's qkv Linear, or any token-wise module) runs on the windowed rows of x, as in timm, so the
    gathers move C channels instead of 3C; padding slots hold zero inputs, hence ``qkv(0)`` (its bias) as q, k, v,
    which is the op's padding rule. ``window_size``/``shift_size`` are (h, w) pairs, ``scale`` a float.
    """
    b, h, w, c = x.shape
    lay = layout(h, w, window_size, shift_size, pad_order, mask_value, x.device)
    windows = qkv(_Partition.apply(x.reshape(b, h * w, c), x.new_zeros(()).expand(c), lay))  # (B, nW·N, 3C')
    out = _attend(windows, bias_table.to(windows.dtype), num_heads, window_size[0] * window_size[1], scale, lay)
    return _Reverse.apply(out, lay).view(b, h, w, out.shape[-1])


# ---------------------------------------------------------------------------------------------- backend contract

def available():
    return None  # plain PyTorch: anywhere


def supports(*args):
    return None  # any device, any floating dtype the reference takes


def plain(qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value):
    """What the public op calls directly (autograd through plain ops)."""
    return shifted_window_attention(qkv, bias_table, qkv_bias, num_heads, tuple(window_size), tuple(shift_size),
                                    scale, pad_order, mask_value)


def forward(*args):
    """Through the custom op (``torch.ops.semask_kernels.shifted_window_attention(..., "torch")``)."""
    with torch.no_grad():
        return plain(*args).contiguous()


def backward(grad, qkv, bias_table, qkv_bias, *config):
    """(dqkv, dbias_table, dqkv_bias or None), by autograd through the plain ops."""
    return tuple(recompute_grads(lambda x, t, b: plain(x, t, b, *config), (qkv, bias_table, qkv_bias), grad))

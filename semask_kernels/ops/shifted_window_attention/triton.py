"""Triton backend of ``shifted_window_attention``: the window-attention kernel family
(``semask_kernels/kernels/window_attention.py``) in its shifted geometry, reading q, k, v straight from qkv.

qkv (B, H, W, 3C), last dim [3][nH][d]: q, k, v are its three column slices, addressed by qkv's own strides
(non-contiguous input is read in place). Token t of window w of image b sits at padded-grid cell
(ph, pw) = (row of w · Wh + t // Ww, col of w · Ww + t % Ww), and reads

- ``roll_then_pad``: padding iff ph >= H or pw >= W; else qkv[b, (ph + sh) mod H, (pw + sw) mod W]
  (the map is rolled by (-sh, -sw) first, then padded at the bottom/right of the rolled map);
- ``pad_then_roll``: (y, x) = ((ph + sh) mod Hp, (pw + sw) mod Wp) over the padded grid; padding iff y >= H or
  x >= W, else qkv[b, y, x].

Padding tokens load ``qkv_bias`` (zeros if None). Each output token is the query at its own source position,
so the output (B, H, W, C) is written at (y, x) and padding rows are dropped (the reference's crop and roll
back). The shift mask puts ``mask_value`` between grid cells of different regions ([0, P-win), [P-win, P-shift),
[P-shift, P) per axis with shift > 0), computed from (ph, pw) in registers.

Backward: dqkv in the (B, H, W, 3C) layout (each element written once); padding tokens' dk, dv sum into
d qkv_bias through per-program partials (padding queries are cropped: their dq is exactly zero); d bias_table
through the deterministic partial-buffer reduction. No atomics: gradients are bitwise repeatable.
"""
from __future__ import annotations

from typing import Optional

import torch

from ... import _triton_utils as tu
from ...kernels import window_attention as wa
from .._windows import padded_size

# the files this backend is made of besides this one: its GPU evidence is tied to their SHA-256
# (semask_kernels/evidence.py)
SOURCES = ("semask_kernels/kernels/window_attention.py",
           "semask_kernels/kernels/window_attention_tiles.py")


def _problem(qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value):
    b, h, w, c3 = qkv.shape
    c = c3 // 3
    wh, ww = int(window_size[0]), int(window_size[1])
    sh, sw = int(shift_size[0]), int(shift_size[1])
    hp, wp = padded_size(h, wh), padded_size(w, ww)
    shift = wa.Shift(nwin=(hp // wh) * (wp // ww), nwc=wp // ww, h=h, w=w, hp=hp, wp=wp, sh=sh, sw=sw,
                     pad_then_roll=pad_order == "pad_then_roll", mask_value=float(mask_value))
    return wa.Problem(q=qkv[..., :c], k=qkv[..., c:2 * c], v=qkv[..., 2 * c:], n_windows=b * shift.nwin,
                      heads=num_heads, window=(wh, ww), d=c // num_heads, dv=c // num_heads, table=bias_table,
                      mask=None, scale=float(scale), shift=shift,
                      qkv_bias=qkv_bias.contiguous() if qkv_bias is not None else None)


def forward(qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value):
    """(B, H, W, C), contiguous; same arguments as reference.forward."""
    p = _problem(qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value)
    return wa.attention_forward(p, qkv.new_empty((*qkv.shape[:-1], qkv.shape[-1] // 3)))


def backward(grad, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value):
    """(dqkv, d bias_table, d qkv_bias or None), bitwise repeatable."""
    p = _problem(qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value)
    c = qkv.shape[-1] // 3
    dqkv = torch.empty_like(qkv)
    dtable, dbias = wa.attention_backward(p, grad, dqkv[..., :c], dqkv[..., c:2 * c], dqkv[..., 2 * c:])
    return dqkv, dtable, dbias


def available() -> Optional[str]:
    return tu.triton_available()


def supports(qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order,
             mask_value) -> Optional[str]:
    d = qkv.shape[-1] // 3 // num_heads
    return wa.check(qkv, "qkv", int(window_size[0]) * int(window_size[1]), d, d)

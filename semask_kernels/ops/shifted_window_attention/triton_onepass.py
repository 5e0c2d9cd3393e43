"""The ``triton.onepass`` variant of ``shifted_window_attention``
(``semask_kernels/kernels/window_attention_onepass.py``): the forward with all heads of a window in one program, and the backward in one pass without a statistics pass,
for windows of up to 64 tokens (every 7x7 window); larger windows run the verified ``triton`` kernels. Registered
unverified beside ``triton``: selectable by name (``backend="triton.onepass"`` or ``SEMASK_BACKEND``), never by
``auto`` until a GPU run has passed its tests."""
from __future__ import annotations

from typing import Optional

import torch

from ...kernels import window_attention_onepass as onepass
from . import triton

# the files this variant is made of besides this one (its GPU evidence is tied to their SHA-256,
# semask_kernels/evidence.py): its kernels and tile table, the verified family it imports and falls back to, and
# the problem setup of triton.py
SOURCES = ("semask_kernels/kernels/window_attention_onepass.py",
           "semask_kernels/kernels/window_attention_onepass.json",
           "semask_kernels/kernels/window_attention.py",
           "semask_kernels/kernels/window_attention_tiles.py",
           "semask_kernels/ops/shifted_window_attention/triton.py")


def forward(qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value):
    """(B, H, W, C), contiguous; same arguments as reference.forward."""
    p = triton._problem(qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order,
                        mask_value)
    return onepass.forward(p, qkv, qkv.new_empty((*qkv.shape[:-1], qkv.shape[-1] // 3)))


def backward(grad, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value):
    """(dqkv, d bias_table, d qkv_bias or None), bitwise repeatable."""
    p = triton._problem(qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order,
                        mask_value)
    dqkv = torch.empty_like(qkv)
    dtable, dbias = onepass.backward(p, qkv, grad, dqkv)
    return dqkv, dtable, dbias


def available() -> Optional[str]:
    return triton.available()


def supports(*args) -> Optional[str]:
    return triton.supports(*args)

"""Triton backend of ``window_attention``: q, k, v (B_, nH, N, d) with any strides, an optional (nW, N, N) mask,
on the shared window-attention kernel family (``semask_kernels/kernels/window_attention.py``)."""
from __future__ import annotations

from typing import Optional

import torch

from ... import _triton_utils as tu
from ...kernels import window_attention as wa

# the files this backend is made of besides this one: its GPU evidence is tied to their SHA-256
# (semask_kernels/evidence.py)
SOURCES = ("semask_kernels/kernels/window_attention.py",
           "semask_kernels/kernels/window_attention_tiles.py")


def _problem(q, k, v, bias_table, window_size, mask, scale) -> wa.Problem:
    b_, heads, n, d = q.shape
    window = (int(window_size[0]), int(window_size[1])) if bias_table is not None else (n, 1)
    return wa.Problem(q=q, k=k, v=v, n_windows=b_, heads=heads, window=window, d=d, dv=v.shape[-1],
                      table=bias_table, mask=mask, scale=float(scale))


def forward(q, k, v, bias_table, window_size, mask, scale):
    """(B_, nH, N, dv) = softmax(scale·q·kᵀ + bias + mask[b mod nW])·v; same arguments as reference.forward."""
    p = _problem(q, k, v, bias_table, window_size, mask, scale)
    return wa.attention_forward(p, q.new_empty((*q.shape[:-1], v.shape[-1])))


def backward(grad, q, k, v, bias_table, window_size, mask, scale):
    """(dq, dk, dv, d bias_table or None); the mask gets no gradient. Bitwise repeatable."""
    p = _problem(q, k, v, bias_table, window_size, mask, scale)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dtable, _ = wa.attention_backward(p, grad, dq, dk, dv)
    return dq, dk, dv, dtable


def available() -> Optional[str]:
    return tu.triton_available()


def supports(q, k, v, bias_table, window_size, mask, scale) -> Optional[str]:
    return wa.check(q, "q", q.shape[2], q.shape[3], v.shape[3])

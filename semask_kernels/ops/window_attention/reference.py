"""Reference window attention: timm ``WindowAttention``'s inner math, step by step, in plain PyTorch.

q, k, v: (B_, nH, N, d). out = softmax(scale * q @ kᵀ + bias + mask[b mod nW]) @ v, shape (B_, nH, N, d).

The semantics in full, edge cases included: docs/ops.md, section ``window_attention``.
"""
from __future__ import annotations

from .._autograd import recompute_grads
# the math itself sits with the window bookkeeping: the shifted-window reference attends its windows with it too
from .._windows import attention_in_windows as window_attention


def forward(q, k, v, bias_table, window_size, mask, scale):
    return window_attention(q, k, v, bias_table, tuple(window_size), mask, scale)


def backward(grad, q, k, v, bias_table, window_size, mask, scale):
    """(dq, dk, dv, dbias_table or None)."""
    dq, dk, dv, dtable = recompute_grads(
        lambda q_, k_, v_, t_: window_attention(q_, k_, v_, t_, tuple(window_size), mask, scale),
        (q, k, v, bias_table), grad)
    return dq, dk, dv, dtable

"""The ``triton.onepass`` variant of ``shifted_window_attention``. Windows of up to 64 tokens (every 7x7 window,
``semask_kernels/kernels/window_attention_onepass.py``): the forward with all heads of a window in one program,
the backward in one pass that recomputes the row statistics in registers. Larger windows (12x12, 14x14,
``kernels/window_attention_lse.py``): the forward saves the row log-sum-exp when a gradient is needed
(``forward_saving_stats``, the op's second output), and the backward starts from it and the saved output
(``backward_from_stats``: delta = rowsum(dO·O) in its first pass), with no recomputed forward. Registered
unverified beside ``triton``: selectable by name (``backend="triton.onepass"`` or ``SEMASK_BACKEND``), never by
``auto`` until a GPU run has passed its tests."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ...kernels import window_attention_lse as lse_kernels
from ...kernels import window_attention_onepass as onepass
from . import triton

# the files this variant is made of besides this one (its GPU evidence is tied to their SHA-256,
# semask_kernels/evidence.py): its kernels and tile table, the verified family whose dK/dV kernel and helpers it
# launches, and the problem setup of triton.py
SOURCES = ("semask_kernels/kernels/window_attention_onepass.py",
           "semask_kernels/kernels/window_attention_onepass.json",
           "semask_kernels/kernels/window_attention_lse.py",
           "semask_kernels/kernels/window_attention.py",
           "semask_kernels/kernels/window_attention_tiles.py",
           "semask_kernels/ops/shifted_window_attention/triton.py")


def _problem(args):
    return triton._problem(*args)


def _empty_out(qkv: Tensor) -> Tensor:
    return qkv.new_empty((*qkv.shape[:-1], qkv.shape[-1] // 3))


def forward_saving_stats(*args) -> tuple[Tensor, Tensor]:
    """(output (B, H, W, C) contiguous, lse): lse (windows, heads, N) fp32, log2 units, where the windows do not
    fit one tile; empty where they do (the one-pass backward recomputes the statistics in registers)."""
    qkv = args[0]
    p = _problem(args)
    if onepass.fits_one_tile(p.n):
        return onepass.forward(p, qkv, _empty_out(qkv)), lse_kernels.empty_lse(qkv)
    return lse_kernels.forward(p, qkv, _empty_out(qkv), save_lse=True)


def forward(*args) -> Tensor:
    """(B, H, W, C), contiguous; same arguments as reference.forward."""
    qkv = args[0]
    p = _problem(args)
    if onepass.fits_one_tile(p.n):
        return onepass.forward(p, qkv, _empty_out(qkv))
    return lse_kernels.forward(p, qkv, _empty_out(qkv), save_lse=False)[0]


def backward_from_stats(grad: Tensor, out: Optional[Tensor], lse: Optional[Tensor], *args
                        ) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """(dqkv, d bias_table, d qkv_bias or None), bitwise repeatable, from the forward's output and saved lse
    (``forward_saving_stats``); without them (None or empty) as ``backward``."""
    qkv = args[0]
    p = _problem(args)
    dqkv = torch.empty_like(qkv)
    if onepass.fits_one_tile(p.n):
        dtable, dbias = onepass.backward(p, qkv, grad, dqkv)
        return dqkv, dtable, dbias
    if p.n_windows == 0 or grad.numel() == 0:
        dqkv.zero_()
        return dqkv, torch.zeros_like(p.table), (torch.zeros_like(p.qkv_bias) if p.qkv_bias is not None else None)
    if lse is None or lse.numel() == 0 or out is None:  # nothing saved: recompute the output and its lse
        out, lse = lse_kernels.forward(p, qkv, _empty_out(qkv), save_lse=True)
    expected = (p.n_windows, p.heads, p.n)
    if tuple(lse.shape) != expected or lse.dtype != torch.float32 or out.shape != grad.shape:
        raise ValueError(f"lse must be float32 of shape {expected} and out of shape {tuple(grad.shape)}, got "
                         f"lse {lse.dtype} {tuple(lse.shape)}, out {tuple(out.shape)}")
    dtable, dbias = lse_kernels.backward(p, qkv, out, lse.contiguous(), grad, dqkv)
    return dqkv, dtable, dbias


def backward(grad, *args) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """(dqkv, d bias_table, d qkv_bias or None), bitwise repeatable; windows over one tile recompute the output
    and its lse first (what ``backward_from_stats`` saves)."""
    return backward_from_stats(grad, None, None, *args)


def available() -> Optional[str]:
    return triton.available()


def supports(*args) -> Optional[str]:
    return triton.supports(*args)


def saves_lse(qkv, bias_table, qkv_bias, num_heads, window_size, *rest) -> bool:
    """Whether ``forward_saving_stats`` saves a log-sum-exp for these arguments: windows over one tile."""
    return not onepass.fits_one_tile(int(window_size[0]) * int(window_size[1]))

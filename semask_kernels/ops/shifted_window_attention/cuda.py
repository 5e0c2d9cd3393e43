"""CUDA backend of ``shifted_window_attention``: a thin wrapper over
``torch.ops.semask_kernels.shifted_window_attention_{forward,backward}`` (csrc/shifted_window_attention/).

The kernels compute every roll / pad / partition / region / bias index from coordinates (nothing of size (N, N)
is formed). Forward, two kernels (``kernel=``): "tensor_core" for fp16/bf16 on sm_80+ (several windows of a head
per CTA, whole windows in shared memory, WMMA 16x16x16 tiles, fp32 scores and softmax), and "cuda_core" (fp32
FMAs, one CTA per (window, head, 32 queries), online softmax over 32-key chunks), which "auto" uses for fp32 and
where the tensor-core plan does not fit in shared memory. Backward (recomputes the forward; only the inputs are
saved), the same two choices: "tensor_core" for fp16/bf16 (one whole window at a time in shared memory: S, P,
dV, dP, dS, dQ, dK as WMMA tiles; on an H100 windows 7x7 at every d and 12x12 at d <= 64), "cuda_core"
otherwise (a row kernel: lse, D = rowsum(P·dP), dq; a column kernel: dk, dv). Both write per-CTA partial
d bias_table and d qkv_bias, then fixed-order sums: bitwise repeatable, no atomics. ``emulated_forward`` /
``emulated_backward`` run the tensor-core kernels' own code on the CPU, for tests. Registration: ``op.py``.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import Tensor

from ... import _ext
from ...backends import reasons

# the files this backend is made of besides this one: its GPU evidence is tied to their SHA-256
# (semask_kernels/evidence.py)
SOURCES = ("csrc/shifted_window_attention/",
           "csrc/common/")

OP = "shifted_window_attention"
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
logger = logging.getLogger("semask_kernels")


KERNELS = ("auto", "tensor_core", "cuda_core")


def _log_kernel(step: str, qkv: Tensor, kernel: str) -> None:
    """Say at debug level which C++ kernel the call asks for and the extension's own rule for "auto"."""
    if logger.isEnabledFor(logging.DEBUG) and not torch.compiler.is_compiling():
        rule = (_ext.build_info() or {}).get("kernels", {}).get(OP, "unknown (rebuild the extension)")
        logger.debug("%s %s: CUDA kernel=%r on %s (auto: %s)", OP, step, kernel, qkv.dtype, rule)


def forward(qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value,
            kernel: str = "auto") -> Tensor:
    """(B, H, W, C), contiguous; same arguments as reference.forward, and the forward kernel (``KERNELS``)."""
    _ext.require()  # loads the library that registers the op
    _log_kernel("forward", qkv, kernel)
    return torch.ops.semask_kernels.shifted_window_attention_forward(
        qkv, bias_table, qkv_bias, int(num_heads), [int(s) for s in window_size], [int(s) for s in shift_size],
        float(scale), str(pad_order), float(mask_value), str(kernel))


def emulated_forward(qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value,
                     group: int = 0) -> Tensor:
    """The tensor-core forward kernel's code run on the CPU (CPU fp16/bf16 tensors; ``group`` windows per CTA, 0
    for the kernel's own choice on an H100): its tiling and indexing, tested without a GPU. Slow."""
    _ext.require()
    return torch.ops.semask_kernels.shifted_window_attention_emulated_forward(
        qkv, bias_table, qkv_bias, int(num_heads), [int(s) for s in window_size], [int(s) for s in shift_size],
        float(scale), str(pad_order), float(mask_value), int(group))


def backward(grad, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value,
             kernel: str = "auto"):
    """(d qkv, d bias_table, d qkv_bias or None), bitwise repeatable; ``kernel`` as in ``forward``."""
    _ext.require()
    _log_kernel("backward", qkv, kernel)
    dqkv, dtable, dbias = torch.ops.semask_kernels.shifted_window_attention_backward(
        grad, qkv, bias_table, qkv_bias, int(num_heads), [int(s) for s in window_size],
        [int(s) for s in shift_size], float(scale), str(pad_order), float(mask_value), str(kernel))
    return dqkv, dtable, (dbias if qkv_bias is not None else None)


def emulated_backward(grad, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order,
                      mask_value, group: int = 0):
    """The tensor-core backward kernel's code run on the CPU, as ``emulated_forward``: (d qkv, d bias_table,
    d qkv_bias or None)."""
    _ext.require()
    dqkv, dtable, dbias = torch.ops.semask_kernels.shifted_window_attention_emulated_backward(
        grad, qkv, bias_table, qkv_bias, int(num_heads), [int(s) for s in window_size],
        [int(s) for s in shift_size], float(scale), str(pad_order), float(mask_value), int(group))
    return dqkv, dtable, (dbias if qkv_bias is not None else None)


available = _ext.unavailable_reason  # extension built and a GPU visible


def supports(qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order,
             mask_value) -> Optional[str]:
    """Every reason the CUDA backend cannot run these arguments, or None when it can."""
    found = []
    for name, t in (("qkv", qkv), ("bias_table", bias_table), ("qkv_bias", qkv_bias)):
        if t is not None:
            found += [t.device.type != "cuda" and f"{name} is on {t.device}, the CUDA backend needs CUDA tensors",
                      t.dtype not in SUPPORTED_DTYPES and f"{name} has dtype {t.dtype}, the CUDA backend supports "
                                                          f"{SUPPORTED_DTYPES}"]
    d = qkv.shape[-1] // 3 // int(num_heads)
    n = int(window_size[0]) * int(window_size[1])
    b, h, w, _ = qkv.shape
    nwin = -(-h // int(window_size[0])) * -(-w // int(window_size[1]))
    lim = _ext.limits(OP)  # the extension's own numbers (None: not built, and available() says so)
    head_dims, max_tokens = (lim["head_dims"], lim["max_tokens"]) if lim else ([d], n)
    return reasons(*found,
                   d not in head_dims and f"head dim d = {d} is not one of the CUDA kernels' head dims {head_dims}",
                   n > max_tokens and f"windows of N = {n} tokens exceed the CUDA kernels' limit of {max_tokens}",
                   h * w > 2 ** 31 - 1 and f"a {h}x{w} map is too large for the CUDA kernels (H·W must fit in int32)",
                   b * nwin > 2 ** 31 - 1 and f"B x windows = {b * nwin} exceeds the CUDA grid limit",
                   int(num_heads) > 65535 and f"num_heads = {num_heads} exceeds the CUDA grid limit of 65535")

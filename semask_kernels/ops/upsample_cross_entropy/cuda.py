"""CUDA backend of ``upsample_cross_entropy``: a thin wrapper over
``torch.ops.semask_kernels.upsample_cross_entropy_{forward,backward}`` (csrc/upsample_cross_entropy/).

Forward: one thread per label pixel interpolates the K logits from their 4 low-res taps (torch's bilinear source
rule, fp32), online log-sum-exp, NLL, ignore_index; per-block partial sums and one fixed-order final sum
(deterministic). Backward: a gather, one thread per element of d logits, over the label pixels whose taps touch
it; the op saves only (logits, target), so the backward first reruns the forward kernel for the per-pixel
log-sum-exp (B, H, W) fp32 and the denominator. Nothing of size (B, K, H, W) is ever allocated.
Registration happens in ``op.py``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ... import _ext
from ...backends import reasons

# the files this backend is made of besides this one: its GPU evidence is tied to their SHA-256
# (semask_kernels/evidence.py)
SOURCES = ("csrc/upsample_cross_entropy/",
           "csrc/common/")

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
OP = "upsample_cross_entropy"


def _labels(target: Tensor) -> Tensor:
    # The kernels read int64 or int32 labels; other integer dtypes (e.g. uint8 masks) are widened.
    return target if target.dtype in (torch.int64, torch.int32) else target.long()


def forward(logits: Tensor, target: Tensor, ignore_index: int, avg_non_ignore: bool, align_corners: bool) -> Tensor:
    """0-dim loss in the logits' dtype; same arguments as reference.forward."""
    _ext.require()  # loads the library that registers the op
    loss, _, _ = torch.ops.semask_kernels.upsample_cross_entropy_forward(
        logits, _labels(target), int(ignore_index), bool(avg_non_ignore), bool(align_corners))
    return loss


def backward(grad: Tensor, logits: Tensor, target: Tensor, ignore_index: int, avg_non_ignore: bool,
             align_corners: bool) -> Tensor:
    """d logits (B, K, h, w) in the logits' dtype, contiguous, bitwise repeatable."""
    _ext.require()
    labels = _labels(target)
    _, lse, denominator = torch.ops.semask_kernels.upsample_cross_entropy_forward(
        logits, labels, int(ignore_index), bool(avg_non_ignore), bool(align_corners))
    return torch.ops.semask_kernels.upsample_cross_entropy_backward(
        grad, logits, labels, lse, denominator, int(ignore_index), bool(align_corners))


available = _ext.unavailable_reason  # extension built and a GPU visible


def supports(logits: Tensor, target: Tensor, ignore_index: int, avg_non_ignore: bool,
             align_corners: bool) -> Optional[str]:
    """Every reason the CUDA backend cannot run these arguments, or None when it can."""
    lim = _ext.limits(OP)  # the extension's own numbers (None: not built, and available() says so)
    max_side = lim["max_side"] if lim else float("inf")
    return reasons(*(t.device.type != "cuda" and f"{name} is on {t.device}, the CUDA backend needs CUDA tensors"
                     for name, t in (("logits", logits), ("target", target))),
                   logits.dtype not in SUPPORTED_DTYPES and f"logits has dtype {logits.dtype}, the CUDA backend "
                                                            f"supports {SUPPORTED_DTYPES}",
                   max(logits.shape[-2:] + target.shape[-2:]) > max_side and f"a spatial side exceeds the CUDA "
                                                                             f"kernels' limit of {max_side}",
                   logits.shape[1] > 2 ** 31 - 1 and f"K = {logits.shape[1]} classes exceed the CUDA kernels' limit",
                   not -2 ** 63 <= ignore_index < 2 ** 63 and f"ignore_index {ignore_index} does not fit in int64")

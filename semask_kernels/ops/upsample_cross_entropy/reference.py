"""Reference upsampled cross-entropy: bilinear resize of logits (B, K, h, w) to the target's (H, W), then
cross-entropy with ``ignore_index``.

``avg_non_ignore=True`` divides the summed loss by the number of non-ignored pixels (torch's default mean),
``False`` by all B·H·W pixels (mmseg 0.11, the official SeMask-FPN recipe). When every pixel is ignored the
loss is 0 (with zero gradient), not NaN as ``F.cross_entropy(reduction="mean")`` would give.
The resize, the log-softmax and the sum run in fp32 (fp64 for fp64 logits), whatever the logits' dtype (as the fused backends
accumulate); returns a 0-dim tensor of the logits' dtype.

The semantics in full, edge cases included: docs/ops.md, section ``upsample_cross_entropy``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._autograd import recompute_grads


def upsample_cross_entropy(logits: Tensor, target: Tensor, ignore_index: int, avg_non_ignore: bool,
                           align_corners: bool) -> Tensor:
    target = target.long()
    # at least fp32 from the start: a half-precision sum overflows (65504) on any real label map
    wide = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    full = F.interpolate(wide, size=tuple(target.shape[-2:]), mode="bilinear", align_corners=align_corners)
    total = F.cross_entropy(full, target, ignore_index=ignore_index, reduction="sum")
    if avg_non_ignore:
        count = (target != ignore_index).sum().clamp(min=1)
    else:
        count = target.numel()
    return (total / count).to(logits.dtype)


def forward(logits, target, ignore_index, avg_non_ignore, align_corners):
    return upsample_cross_entropy(logits, target, ignore_index, avg_non_ignore, align_corners)


def backward(grad, logits, target, ignore_index, avg_non_ignore, align_corners):
    """d logits (B, K, h, w)."""
    (dlogits,) = recompute_grads(
        lambda x: upsample_cross_entropy(x, target, ignore_index, avg_non_ignore, align_corners), (logits,), grad)
    return dlogits

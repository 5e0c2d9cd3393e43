"""Losses of the segmentors: the fused upsampled cross-entropy, and mmseg's OHEM variant for the main head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import semask_kernels as sk
from semask_kernels._checks import labels as check_labels  # the op's own label check


def segmentation_loss(logits: Tensor, target: Tensor, *, ignore_index: int = 255, avg_non_ignore: bool = False,
                      align_corners: bool = False, backend: str = "auto") -> Tensor:
    """Cross-entropy of low-resolution logits against the full-resolution labels (``sk.upsample_cross_entropy``;
    ``avg_non_ignore=False`` divides by all pixels, as mmseg 0.11 and the official SeMask-FPN recipe)."""
    return sk.upsample_cross_entropy(logits, target, ignore_index=ignore_index, avg_non_ignore=avg_non_ignore,
                                     align_corners=align_corners, backend=backend)


def ohem_loss(logits: Tensor, target: Tensor, *, min_kept: int, ignore_index: int = 255,
              align_corners: bool = False) -> Tensor:
    """mmseg's ``OHEMPixelSampler(thresh=None, min_kept)`` + CE: keep the ``min_kept × B`` valid pixels with the
    largest loss (weight 1, others 0), then average over *all* pixels (mmseg 0.11). It needs per-pixel losses,
    so it resizes the logits to full resolution (the plain PyTorch path)."""
    if target.dim() != 3 or target.shape[0] != logits.shape[0]:
        raise ValueError(f"target must be (B, H, W) with B = {logits.shape[0]} (logits {tuple(logits.shape)}), got "
                         f"shape {tuple(target.shape)}")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(f"target must have an integer dtype (class indices), got {target.dtype}")
    if isinstance(min_kept, bool) or not isinstance(min_kept, int) or min_kept < 1:
        raise ValueError(f"min_kept must be an int >= 1 (pixels kept per image), got {min_kept!r}")
    check_labels(target, logits.shape[1], ignore_index)
    full = F.interpolate(logits, size=tuple(target.shape[-2:]), mode="bilinear", align_corners=align_corners)
    target = target.long()
    losses = F.cross_entropy(full, target, ignore_index=ignore_index, reduction="none")
    with torch.no_grad():
        valid = target != ignore_index
        weight = torch.zeros_like(losses)
        valid_weight = weight[valid]
        order = losses.detach()[valid].argsort(descending=True)
        valid_weight[order[: min_kept * target.shape[0]]] = 1.0
        weight[valid] = valid_weight
    return (losses * weight).mean()

"""Per-image targets of mask classification: one binary mask and one class per segment."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from semask_kernels._checks import labels as check_labels


def semantic_targets(target: Tensor, num_classes: int, ignore_index: int = 255) -> list[dict[str, Tensor]]:
    """Split a batch of label maps (B, H, W) into mask-classification targets, as Mask2Former's semantic dataset
    mapper: per image, one target per class present (ascending), ``labels`` (n,) int64 and ``masks`` (n, H, W)
    bool. Pixels of ``ignore_index`` belong to no mask (every mask is 0 there)."""
    if not isinstance(target, Tensor) or target.dim() != 3:
        got = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"target must be (B, H, W) class indices, got {got}")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(f"target must have an integer dtype (class indices), got {target.dtype}")
    check_labels(target, num_classes, ignore_index)
    out = []
    for t in target:
        classes = t.unique()
        classes = classes[classes != ignore_index].long()
        out.append({"labels": classes, "masks": t[None] == classes[:, None, None]})
    return out


def check_targets(targets: Sequence[dict], batch: int, num_classes: int) -> tuple[int, int]:
    """Targets are ``batch`` dicts with ``labels`` (n,) in [0, num_classes) and ``masks`` (n, H, W), one H, W for
    the whole batch; returns (H, W) (or (0, 0) if no image has a mask shape to tell). Errors name what is off."""
    if not isinstance(targets, (list, tuple)) or len(targets) != batch:
        got = f"{type(targets).__name__} of length {len(targets)}" if hasattr(targets, "__len__") else \
            type(targets).__name__
        raise ValueError(f"targets must be a list of {batch} dicts (one per image), got {got}")
    size = None
    for i, t in enumerate(targets):
        if not isinstance(t, dict) or "labels" not in t or "masks" not in t:
            raise ValueError(f"targets[{i}] must be a dict with 'labels' and 'masks', got "
                             f"{sorted(t) if isinstance(t, dict) else type(t).__name__}")
        labels, masks = t["labels"], t["masks"]
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype.is_floating_point:
            raise ValueError(f"targets[{i}]['labels'] must be an (n,) integer tensor, got "
                             f"{tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__}")
        if not isinstance(masks, Tensor) or masks.dim() != 3 or masks.shape[0] != labels.shape[0]:
            raise ValueError(f"targets[{i}]['masks'] must be (n, H, W) with n = {labels.shape[0]} labels, got "
                             f"{tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"targets[{i}]['labels'] must be in [0, {num_classes}), got values "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        if size is not None and tuple(masks.shape[1:]) != size:
            raise ValueError(f"targets[{i}]['masks'] is {tuple(masks.shape[1:])} pixels, targets[0]'s {size}: pad "
                             "the batch's label maps to one size")
        size = tuple(masks.shape[1:])
    return size or (0, 0)

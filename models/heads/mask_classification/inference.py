"""Semantic segmentation from mask-classification outputs."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def semantic_inference(pred_logits: Tensor, pred_masks: Tensor, size: Optional[Sequence[int]] = None,
                       align_corners: bool = False) -> Tensor:
    """Per-class scores Σ_q softmax(pred_logits)[q, c] · sigmoid(pred_masks)[q] for c < K (no-object dropped),
    as Mask2Former's ``semantic_inference``.

    ``pred_logits`` (B, Q, K+1), ``pred_masks`` (B, Q, h, w) mask logits; ``size`` (H, W): the masks are first
    resized there (bilinear, ``align_corners``), as the official code does before combining. Returns (B, K, H, W)
    (or (B, K, h, w)) in float32: scores in [0, Q], argmax over K gives the labels.
    """
    if pred_logits.dim() != 3 or pred_logits.shape[-1] < 2:
        raise ValueError(f"pred_logits must be (B, Q, K+1) with K >= 1, got shape {tuple(pred_logits.shape)}")
    if pred_masks.dim() != 4 or tuple(pred_masks.shape[:2]) != tuple(pred_logits.shape[:2]):
        raise ValueError(f"pred_masks must be (B, Q, h, w) with (B, Q) = {tuple(pred_logits.shape[:2])} "
                         f"(pred_logits), got shape {tuple(pred_masks.shape)}")
    masks = pred_masks.float()
    if size is not None:
        masks = F.interpolate(masks, size=tuple(size), mode="bilinear", align_corners=align_corners)
    cls = pred_logits.float().softmax(-1)[..., :-1]
    return torch.einsum("bqc,bqhw->bchw", cls, masks.sigmoid())

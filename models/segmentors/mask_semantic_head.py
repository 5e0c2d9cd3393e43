"""SeMask's semantic head of the detectron2 models (official ``SemanticHead`` + ``SeMaskSetCriterion.loss_cate``):
the backbone's prior maps summed at stride 4 with align_corners=True, upsampled ×4 to the (padded) input, and a
cross-entropy against the labels. Training-only: inference reads the mask-classification outputs."""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

import semask_kernels as sk


def semantic_prediction(priors: Sequence[Tensor], backend: str = "auto") -> Tensor:
    """The official ``SemanticHead(...)["pred"]``: ``sk.prior_map_decode(priors, align_corners=True)`` (stage i
    upsampled by i successive ×2 bilinear steps), then ×4 bilinear with align_corners=True.

    priors: (B, K, H/4/2^i, W/4/2^i) for i = 0..3. Returns (B, K, 4·h_0, 4·w_0), the priors' dtype. The full-size
    map is what the official code builds; :func:`semantic_loss` computes the same loss without it.
    """
    decoded = sk.prior_map_decode(list(priors), align_corners=True, backend=backend)
    h, w = decoded.shape[-2:]
    return F.interpolate(decoded, size=(4 * h, 4 * w), mode="bilinear", align_corners=True)


def semantic_loss(priors: Sequence[Tensor], target: Tensor, *, ignore_index: int = 255,
                  backend: str = "auto") -> Tensor:
    """``F.cross_entropy(semantic_prediction(priors), target, ignore_index)`` (the mean over non-ignored pixels),
    with the ×4 upsampling fused into ``sk.upsample_cross_entropy`` (a resize to (4·h_0, 4·w_0) with
    align_corners=True is exactly the official ×4 scale factor), so the (B, K, H, W) map is never formed.

    target: (B, H, W) class indices with H ≤ 4·h_0, W ≤ 4·w_0 (the backbone pads the input to a multiple of 4 and
    odd stage sizes up): it is padded with ``ignore_index`` at the bottom/right to (4·h_0, 4·w_0), as the
    official mapper pads the labels of a padded image. Returns a 0-dim tensor.
    """
    decoded = sk.prior_map_decode(list(priors), align_corners=True, backend=backend)
    h, w = decoded.shape[-2:]
    H, W = target.shape[-2:]
    if H > 4 * h or W > 4 * w:
        raise ValueError(f"target of size {(H, W)} is larger than 4× the stride-4 prior maps {(4 * h, 4 * w)}: "
                         "the priors do not come from this image size")
    target = F.pad(target, (0, 4 * w - W, 0, 4 * h - H), value=ignore_index)
    return sk.upsample_cross_entropy(decoded, target, ignore_index=ignore_index, avg_non_ignore=True,
                                     align_corners=True, backend=backend)

"""Point sampling of mask logits (PointRend): bilinear reads at normalized points, and the uncertainty-based
importance sampling that Mask2Former trains its mask losses on."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def point_sample(masks: Tensor, points: Tensor, align_corners: bool = False) -> Tensor:
    """Bilinear values of ``masks`` (N, C, H, W) at ``points`` (N, P, 2), given as (x, y) in [0, 1] over the whole
    map (``F.grid_sample`` on 2·p − 1, zero outside). Returns (N, C, P), in ``masks``' dtype."""
    if masks.dim() != 4:
        raise ValueError(f"masks must be (N, C, H, W), got shape {tuple(masks.shape)}")
    if points.dim() != 3 or points.shape[-1] != 2 or points.shape[0] != masks.shape[0]:
        raise ValueError(f"points must be (N, P, 2) with N = {masks.shape[0]} (masks {tuple(masks.shape)}), "
                         f"got shape {tuple(points.shape)}")
    grid = (2.0 * points - 1.0).unsqueeze(2).to(masks.dtype)
    return F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners).squeeze(3)


def uncertainty(logits: Tensor) -> Tensor:
    """−|logit|: largest for the points whose mask prediction is the least sure (logit near 0)."""
    return -logits.abs()


def sample_uncertain_points(logits: Tensor, num_points: int, oversample_ratio: float = 3.0,
                            importance_sample_ratio: float = 0.75) -> Tensor:
    """Mask2Former's training points for ``logits`` (N, 1, H, W): draw ``int(num_points × oversample_ratio)``
    uniform points, keep the ``int(importance_sample_ratio × num_points)`` most uncertain of them (per mask), and
    fill up to ``num_points`` with fresh uniform points. Returns (N, num_points, 2) (x, y) in [0, 1], float32,
    no gradient. Uses the global torch RNG on ``logits``' device."""
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"logits must be (N, 1, H, W), got shape {tuple(logits.shape)}")
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise ValueError(f"num_points must be an int >= 1, got {num_points!r}")
    if not oversample_ratio >= 1:
        raise ValueError(f"oversample_ratio must be >= 1 (candidates per kept point), got {oversample_ratio!r}")
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio!r}")
    n = logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    with torch.no_grad():
        candidates = torch.rand(n, num_sampled, 2, device=logits.device)
        scores = uncertainty(point_sample(logits.detach().float(), candidates))[:, 0]
        idx = scores.topk(num_uncertain, dim=1).indices
        points = torch.gather(candidates, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
        if num_points > num_uncertain:
            points = torch.cat([points, torch.rand(n, num_points - num_uncertain, 2, device=logits.device)], dim=1)
    return points

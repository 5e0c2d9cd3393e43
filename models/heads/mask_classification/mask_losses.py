"""The mask losses of mask classification, per matched pair (criterion) and for all pairs at once (matcher cost).

Every function takes mask logits and {0, 1} targets already flattened to points or pixels, in float32:
``inputs`` (N, P) and ``targets`` (N, P) for the pair losses, which return the sum over the N masks of the
per-mask loss divided by ``num_masks``; ``inputs`` (Q, P) and ``targets`` (M, P) for the ``pairwise_*`` costs,
which return the (Q, M) matrix of per-mask losses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sigmoid_ce_loss(inputs: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Binary cross-entropy with logits, averaged over the points of each mask, summed over masks / num_masks."""
    loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(inputs: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """1 − (2·Σ p·t + 1) / (Σ p + Σ t + 1) per mask with p = sigmoid(inputs), summed over masks / num_masks."""
    p = inputs.sigmoid()
    numerator = 2 * (p * targets).sum(-1)
    denominator = p.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def sigmoid_focal_loss(inputs: Tensor, targets: Tensor, num_masks: float, alpha: float = 0.25,
                       gamma: float = 2.0) -> Tensor:
    """Focal loss (RetinaNet; MaskFormer's mask loss): α_t (1 − p_t)^γ BCE, averaged over the points of each mask,
    summed over masks / num_masks. ``alpha < 0`` drops the α_t weighting."""
    p = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_masks


def pairwise_sigmoid_ce(inputs: Tensor, targets: Tensor) -> Tensor:
    """(Q, M): the mean BCE of prediction q against target m (as if every pair were matched)."""
    pos = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    neg = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / inputs.shape[1]


def pairwise_dice(inputs: Tensor, targets: Tensor) -> Tensor:
    """(Q, M): the dice loss of prediction q against target m."""
    p = inputs.sigmoid()
    numerator = 2 * (p @ targets.T)
    denominator = p.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def pairwise_sigmoid_focal(inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """(Q, M): the mean focal loss of prediction q against target m."""
    p = inputs.sigmoid()
    focal_pos = (1 - p) ** gamma * F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs),
                                                                      reduction="none")
    focal_neg = p ** gamma * F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    if alpha >= 0:
        focal_pos = focal_pos * alpha
        focal_neg = focal_neg * (1 - alpha)
    return (focal_pos @ targets.T + focal_neg @ (1 - targets).T) / inputs.shape[1]

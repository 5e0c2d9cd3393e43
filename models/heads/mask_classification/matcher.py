"""Hungarian matching of predicted masks to target segments (scipy's ``linear_sum_assignment``)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mask_losses import pairwise_dice, pairwise_sigmoid_ce, pairwise_sigmoid_focal
from .point_sampling import point_sample

MASK_COSTS = ("bce", "focal")


class HungarianMatcher(nn.Module):
    """The one-to-one assignment of queries to target segments with the least total cost
    ``cost_class·(−p(class)) + cost_mask·mask_loss + cost_dice·dice``, per image, without gradient.

    Args:
        cost_class, cost_mask, cost_dice: weights of the three costs (defaults: Mask2Former's 2, 5, 5;
            MaskFormer uses 1, 20, 1).
        num_points: the mask costs are computed on this many uniform random points (one draw per image, shared by
            all queries and targets, global torch RNG), as Mask2Former (12544); ``None``: on every pixel of the
            predictions, the targets resized to them (nearest), as MaskFormer.
        mask_cost: ``"bce"`` (Mask2Former) or ``"focal"`` (MaskFormer, with ``focal_alpha``, ``focal_gamma``).

    ``forward(outputs, targets)`` takes ``outputs["pred_logits"]`` (B, Q, K+1) and ``outputs["pred_masks"]``
    (B, Q, h, w) and B targets ``{"labels": (n,), "masks": (n, H, W)}``; returns B pairs ``(query_idx, target_idx)``
    of int64 CPU tensors of length min(Q, n), query indices ascending.
    """

    def __init__(self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0, *,
                 num_points: Optional[int] = 12544, mask_cost: str = "bce", focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0):
        super().__init__()
        for name, value in (("cost_class", cost_class), ("cost_mask", cost_mask), ("cost_dice", cost_dice)):
            if not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("cost_class, cost_mask and cost_dice are all 0: nothing to match on")
        if num_points is not None and (isinstance(num_points, bool) or not isinstance(num_points, int)
                                       or num_points < 1):
            raise ValueError(f"num_points must be an int >= 1 or None (every pixel), got {num_points!r}")
        if mask_cost not in MASK_COSTS:
            raise ValueError(f"mask_cost must be one of {MASK_COSTS}, got {mask_cost!r}")
        self.cost_class, self.cost_mask, self.cost_dice = float(cost_class), float(cost_mask), float(cost_dice)
        self.num_points = num_points
        self.mask_cost = mask_cost
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma

    @torch.no_grad()
    def cost_matrices(self, outputs: dict, targets: Sequence[dict]) -> list[Tensor]:
        """Per image, the (Q, n) float32 cost matrix on the predictions' device."""
        logits, masks = _check_outputs(outputs)
        costs = []
        for b, target in enumerate(targets):
            labels = target["labels"].to(logits.device).long()
            if labels.numel() == 0:  # nothing to match (resizing an empty mask stack would raise)
                costs.append(logits.new_zeros(logits.shape[1], 0, dtype=torch.float32))
                continue
            prob = logits[b].float().softmax(-1)
            cost = -self.cost_class * prob[:, labels]
            out_mask = masks[b].float()
            tgt_mask = target["masks"].to(device=out_mask.device, dtype=torch.float32)
            if self.num_points is not None:
                points = torch.rand(1, self.num_points, 2, device=out_mask.device)
                out_mask = point_sample(out_mask[None], points)[0]  # (Q, P): queries are channels, one draw
                tgt_mask = point_sample(tgt_mask[None], points)[0]
            else:
                tgt_mask = F.interpolate(tgt_mask[None], size=out_mask.shape[-2:], mode="nearest")[0].flatten(1)
                out_mask = out_mask.flatten(1)
            if self.mask_cost == "bce":
                cost = cost + self.cost_mask * pairwise_sigmoid_ce(out_mask, tgt_mask)
            else:
                cost = cost + self.cost_mask * pairwise_sigmoid_focal(out_mask, tgt_mask, self.focal_alpha,
                                                                      self.focal_gamma)
            costs.append(cost + self.cost_dice * pairwise_dice(out_mask, tgt_mask))
        return costs

    @torch.no_grad()
    def forward(self, outputs: dict, targets: Sequence[dict]) -> list[tuple[Tensor, Tensor]]:
        if len(targets) != outputs["pred_logits"].shape[0]:
            raise ValueError(f"targets must hold one dict per image ({outputs['pred_logits'].shape[0]}), got "
                             f"{len(targets)}")
        try:
            from scipy.optimize import linear_sum_assignment  # only training matches: inference needs no scipy
        except ImportError as e:
            raise ImportError("HungarianMatcher needs scipy (scipy.optimize.linear_sum_assignment): pip install "
                              "scipy, or install this package with its [train] extra") from e
        indices = []
        for b, cost in enumerate(self.cost_matrices(outputs, targets)):
            cost = cost.cpu()
            if not bool(torch.isfinite(cost).all()):
                raise ValueError(f"the matching cost of image {b} is not finite (NaN/inf in outputs['pred_logits'] "
                                 "or outputs['pred_masks']?)")
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices

    def extra_repr(self) -> str:
        return (f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, cost_dice={self.cost_dice}, "
                f"num_points={self.num_points}, mask_cost={self.mask_cost!r}")


def _check_outputs(outputs: dict) -> tuple[Tensor, Tensor]:
    if not isinstance(outputs, dict) or "pred_logits" not in outputs or "pred_masks" not in outputs:
        raise ValueError("outputs must be a dict with 'pred_logits' (B, Q, K+1) and 'pred_masks' (B, Q, h, w), got "
                         f"{sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__}")
    logits, masks = outputs["pred_logits"], outputs["pred_masks"]
    if logits.dim() != 3 or logits.shape[-1] < 2:
        raise ValueError(f"outputs['pred_logits'] must be (B, Q, K+1) with K >= 1, got {tuple(logits.shape)}")
    if masks.dim() != 4 or tuple(masks.shape[:2]) != tuple(logits.shape[:2]):
        raise ValueError(f"outputs['pred_masks'] must be (B, Q, h, w) with (B, Q) = {tuple(logits.shape[:2])}, got "
                         f"{tuple(masks.shape)}")
    return logits, masks

"""The set criterion of mask classification (MaskFormer / Mask2Former): match, then class + mask losses."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .mask_losses import dice_loss, sigmoid_ce_loss, sigmoid_focal_loss
from .matcher import MASK_COSTS, HungarianMatcher, _check_outputs
from .point_sampling import point_sample, sample_uncertain_points
from .targets import check_targets


class SetCriterion(nn.Module):
    """Hungarian-matched losses of a mask-classification head, with deep supervision.

    Per output (the final one and each of ``outputs["aux_outputs"]``, matched separately):
      - ``loss_ce``: cross-entropy of all Q class logits (K+1 way), unmatched queries target the no-object class
        K, weighted per class (``no_object_weight`` for no-object, 1 otherwise) and divided by the weight sum;
      - ``loss_mask``: the matched masks' BCE (``mask_loss="bce"``) or sigmoid focal loss (``"focal"``);
      - ``loss_dice``: their dice loss;
    both mask losses summed over masks and divided by the number of target masks in the batch (averaged over
    processes under torch.distributed, at least 1). The mask losses are computed on ``num_points`` points per
    mask, chosen by uncertainty (``oversample_ratio``, ``importance_sample_ratio``; Mask2Former), or with
    ``num_points=None`` on every target pixel after a bilinear upsampling of the prediction (MaskFormer).

    ``forward(outputs, targets)`` takes the head's outputs (see the package docstring) and B target dicts
    ``{"labels": (n,) int64, "masks": (n, H, W) bool}`` (``semantic_targets``); returns a dict of losses already
    multiplied by their weights (``class_weight``, ``mask_weight``, ``dice_weight``): ``loss_ce``,
    ``loss_mask``, ``loss_dice`` and, per aux output i, ``loss_ce_{i}`` ...; their sum is the training loss.
    ``matcher`` defaults to a ``HungarianMatcher`` with the loss weights as costs, the same mask loss and points.
    The presets ``SetCriterion.mask2former(K)`` and ``SetCriterion.maskformer(K)`` hold the official values.

    Example:
        >>> import torch
        >>> from semask_models.heads.mask_classification import SetCriterion, semantic_targets
        >>> outputs = {"pred_logits": torch.randn(2, 10, 5), "pred_masks": torch.randn(2, 10, 16, 16),
        ...            "aux_outputs": [{"pred_logits": torch.randn(2, 10, 5), "pred_masks": torch.randn(2, 10, 16, 16)}]}
        >>> labels = torch.randint(0, 4, (2, 64, 64))
        >>> losses = SetCriterion.mask2former(4)(outputs, semantic_targets(labels, 4))
        >>> sorted(losses)
        ['loss_ce', 'loss_ce_0', 'loss_dice', 'loss_dice_0', 'loss_mask', 'loss_mask_0']
    """

    def __init__(self, num_classes: int, matcher: Optional[HungarianMatcher] = None, *, class_weight: float = 2.0,
                 mask_weight: float = 5.0, dice_weight: float = 5.0, no_object_weight: float = 0.1,
                 mask_loss: str = "bce", num_points: Optional[int] = 12544, oversample_ratio: float = 3.0,
                 importance_sample_ratio: float = 0.75, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 deep_supervision: bool = True):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        for name, value in (("class_weight", class_weight), ("mask_weight", mask_weight),
                            ("dice_weight", dice_weight), ("no_object_weight", no_object_weight)):
            if not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if mask_loss not in MASK_COSTS:
            raise ValueError(f"mask_loss must be one of {MASK_COSTS}, got {mask_loss!r}")
        if num_points is not None and (isinstance(num_points, bool) or not isinstance(num_points, int)
                                       or num_points < 1):
            raise ValueError(f"num_points must be an int >= 1 or None (every pixel), got {num_points!r}")
        if not oversample_ratio >= 1:
            raise ValueError(f"oversample_ratio must be >= 1 (candidates per kept point), got {oversample_ratio!r}")
        if not 0 <= importance_sample_ratio <= 1:
            raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio!r}")
        self.num_classes = num_classes
        self.matcher = matcher if matcher is not None else HungarianMatcher(
            class_weight, mask_weight, dice_weight, num_points=num_points, mask_cost=mask_loss,
            focal_alpha=focal_alpha, focal_gamma=focal_gamma)
        self.weight_dict = {"loss_ce": float(class_weight), "loss_mask": float(mask_weight),
                            "loss_dice": float(dice_weight)}
        self.mask_loss = mask_loss
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.deep_supervision = deep_supervision
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = no_object_weight
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    @classmethod
    def mask2former(cls, num_classes: int, **overrides) -> "SetCriterion":
        """Mask2Former: CE 2 (no-object 0.1), BCE 5 and dice 5 on 12544 points (×3 oversampled, 0.75 by
        uncertainty), matcher costs 2 / 5 / 5 on 12544 uniform points."""
        return cls(num_classes, **{**dict(class_weight=2.0, mask_weight=5.0, dice_weight=5.0, no_object_weight=0.1,
                                          mask_loss="bce", num_points=12544), **overrides})

    @classmethod
    def maskformer(cls, num_classes: int, **overrides) -> "SetCriterion":
        """MaskFormer: CE 1 (no-object 0.1), focal 20 (α 0.25, γ 2) and dice 1 on full masks, matcher costs
        1 / 20 / 1 on full masks."""
        return cls(num_classes, **{**dict(class_weight=1.0, mask_weight=20.0, dice_weight=1.0, no_object_weight=0.1,
                                          mask_loss="focal", num_points=None), **overrides})

    def forward(self, outputs: dict, targets: Sequence[dict]) -> dict[str, Tensor]:
        logits, _ = _check_outputs(outputs)
        if logits.shape[-1] != self.num_classes + 1:
            raise ValueError(f"outputs['pred_logits'] must have K+1 = {self.num_classes + 1} classes (K = "
                             f"num_classes), got {tuple(logits.shape)}")
        check_targets(targets, logits.shape[0], self.num_classes)
        num_masks = self._num_masks(targets, logits.device)
        levels = [("", outputs)]
        if self.deep_supervision:
            levels += [(f"_{i}", aux) for i, aux in enumerate(outputs.get("aux_outputs", ()))]
        losses = {}
        for suffix, out in levels:
            _check_outputs(out)
            indices = self.matcher(out, targets)
            terms = {"loss_ce": self.loss_labels(out["pred_logits"], targets, indices),
                     **self.loss_masks(out["pred_masks"], targets, indices, num_masks)}
            losses.update({name + suffix: self.weight_dict[name] * value for name, value in terms.items()})
        return losses

    def loss_labels(self, logits: Tensor, targets: Sequence[dict], indices) -> Tensor:
        """Weighted (K+1)-way CE of every query; unmatched queries target no-object."""
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        for b, (src, tgt) in enumerate(indices):
            target_classes[b, src.to(logits.device)] = targets[b]["labels"].to(logits.device).long()[tgt.to(
                logits.device)]
        return F.cross_entropy(logits.float().transpose(1, 2), target_classes,
                               weight=self.empty_weight.to(logits.device))

    def loss_masks(self, pred_masks: Tensor, targets: Sequence[dict], indices, num_masks: float) -> dict:
        """The mask and dice losses of the matched (prediction, target) pairs."""
        src = torch.cat([pred_masks[b, s.to(pred_masks.device)] for b, (s, _) in enumerate(indices)])
        tgt = torch.cat([targets[b]["masks"].to(pred_masks.device)[t.to(pred_masks.device)]
                         for b, (_, t) in enumerate(indices)]).float()
        if src.shape[0] == 0:  # no target masks in the batch: zero losses that keep the graph
            zero = pred_masks.sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero}
        src = src[:, None].float()
        if self.num_points is not None:
            points = sample_uncertain_points(src, self.num_points, self.oversample_ratio, self.importance_sample_ratio)
            tgt = point_sample(tgt[:, None], points)[:, 0]
            src = point_sample(src, points)[:, 0]
        else:
            src = F.interpolate(src, size=tgt.shape[-2:], mode="bilinear", align_corners=False).flatten(1)
            tgt = tgt.flatten(1)
        if self.mask_loss == "bce":
            mask = sigmoid_ce_loss(src, tgt, num_masks)
        else:
            mask = sigmoid_focal_loss(src, tgt, num_masks, self.focal_alpha, self.focal_gamma)
        return {"loss_mask": mask, "loss_dice": dice_loss(src, tgt, num_masks)}

    @staticmethod
    def _num_masks(targets: Sequence[dict], device: torch.device) -> float:
        n = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(n)  # every process divides by the batch-wide mean count, as the official trainer
            n = n / dist.get_world_size()
        return max(float(n), 1.0)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, weights={self.weight_dict}, no_object_weight="
                f"{float(self.empty_weight[-1])}, mask_loss={self.mask_loss!r}, num_points={self.num_points}, "
                f"deep_supervision={self.deep_supervision}")

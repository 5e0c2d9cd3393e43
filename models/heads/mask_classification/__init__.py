"""Mask classification (MaskFormer, Mask2Former): the output contract of the heads, the Hungarian matcher, the
set criterion and semantic inference.

Output contract of every mask-classification head (``Mask2FormerHead``, ``MaskFormerHead``):

    head(features) -> {"pred_logits": (B, Q, K+1), "pred_masks": (B, Q, H/4, W/4),
                       "aux_outputs": [{"pred_logits": ..., "pred_masks": ...}, ...]}

- ``features``: the backbone's multi-scale maps, a list (or tuple) of 4 NCHW tensors at strides 4, 8, 16, 32 of the
  input (H, W), with the channel counts given to the head's constructor (``in_channels``), any float dtype.
- ``pred_logits``: class logits of the Q queries over K classes + 1 last "no object" class.
- ``pred_masks``: mask logits (before the sigmoid) of the Q queries at stride 4, the size of ``features[0]``.
- ``aux_outputs``: the same two keys for each intermediate prediction, first to last (deep supervision; Mask2Former:
  9 = the prediction before the first decoder layer and after layers 1..8; MaskFormer: 5), not including the
  final one. Present (possibly empty) in train and eval mode.

Training: ``SetCriterion(K)(outputs, semantic_targets(labels, K))`` gives the weighted losses (sum = total);
inference: ``semantic_inference(pred_logits, pred_masks, size=(H, W))`` gives (B, K, H, W) scores.
"""
from .criterion import SetCriterion
from .inference import semantic_inference
from .mask_losses import (dice_loss, pairwise_dice, pairwise_sigmoid_ce, pairwise_sigmoid_focal, sigmoid_ce_loss,
                          sigmoid_focal_loss)
from .matcher import HungarianMatcher
from .point_sampling import point_sample, sample_uncertain_points, uncertainty
from .targets import check_targets, semantic_targets

__all__ = ["SetCriterion", "HungarianMatcher", "semantic_inference", "semantic_targets", "check_targets",
           "point_sample", "sample_uncertain_points", "uncertainty", "sigmoid_ce_loss", "dice_loss",
           "sigmoid_focal_loss", "pairwise_sigmoid_ce", "pairwise_dice", "pairwise_sigmoid_focal"]

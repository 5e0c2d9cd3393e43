"""The segmentor of the mask-classification models (SeMask-MaskFormer / SeMask-Mask2Former and their plain-Swin
baselines): backbone → head (pixel decoder + transformer decoder) → set criterion, plus SeMask's semantic head.

Official ``SeMaskMaskFormer`` semantics: the normalized image is zero-padded at the bottom/right to a multiple of
``size_divisibility`` (32) and the labels with ``ignore_index``; inference upsamples the stride-4 mask logits
bilinearly to the padded size, combines them with the class probabilities (``semantic_inference``) and crops the
padding away. Module names follow the official model (``backbone``, ``sem_seg_head.pixel_decoder``,
``sem_seg_head.predictor``, ``criterion``), so official checkpoints load without renaming
(:mod:`semask_models.checkpoints.detectron2`).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..heads.mask_classification import semantic_inference, semantic_targets
from .mask_semantic_head import semantic_loss
from .segmentor import Segmentor
from ..sgr import SGR, sgr_loss


class MaskSegmentor(Segmentor):
    """``backbone`` → ``sem_seg_head`` → ``criterion``, with SeMask's semantic head when the backbone has
    semantic layers.

    ``forward(img (B, 3, H, W) normalized float)`` returns the class scores (B, K, H, W) in float32
    (Σ_q softmax(class)·sigmoid(mask), in [0, Q]; their argmax is the prediction).
    ``forward(img, target (B, H, W))`` returns the losses: the criterion's weighted terms (``loss_ce``,
    ``loss_mask``, ``loss_dice`` and their ``_{i}`` deep-supervision copies), with semantic layers
    ``loss_cate`` = ``prior_weight`` × CE of the semantic head (and, with ``prior_aux``, a ``loss_cate_{i}`` per aux
    output: the official weight dict lists them, the official code makes them 0, the issue asks for them computed;
    the semantic head does not depend on the decoder layer, so each equals ``loss_cate``), with ``sgr``
    ``loss_sgr``, and their sum ``loss``.
    """

    returns_scores = True  # forward gives probabilities-like scores, not logits (semask-eval reads this)

    def __init__(self, backbone: nn.Module, sem_seg_head: nn.Module, criterion: nn.Module, *,
                 prior_weight: float = 0.4, prior_aux: bool = True, ignore_index: int = 255,
                 size_divisibility: int = 32, backend: str = "auto", sgr: Optional[SGR] = None,
                 sgr_loss_args: Optional[dict] = None, sgr_connectivity: int = 8):
        super().__init__(backbone, sem_seg_head, prior_weight=prior_weight, ignore_index=ignore_index,
                         align_corners=False, backend=backend, sgr=sgr, sgr_loss_args=sgr_loss_args,
                         sgr_connectivity=sgr_connectivity)
        del self.decode_head  # the official name of the head is sem_seg_head (checkpoint keys)
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.num_classes = sem_seg_head.num_classes
        self.prior_aux = prior_aux
        if isinstance(size_divisibility, bool) or not isinstance(size_divisibility, int) or size_divisibility < 1:
            raise ValueError(f"size_divisibility must be an int >= 1, got {size_divisibility!r}")
        self.size_divisibility = size_divisibility

    def forward(self, img: Tensor, target: Optional[Tensor] = None, components: Optional[Tensor] = None):
        self._check_input(img, target)
        try:
            return self._forward(img, target, components)
        except ValueError as e:  # torch's GroupNorm check, deep in the pixel decoder: say what it means here
            if self.training and "more than 1 value per channel" in str(e):
                raise ValueError(
                    f"batch size {img.shape[0]} in train mode at input size {tuple(img.shape[-2:])}: a GroupNorm "
                    "of the pixel decoder sees a single value per group (one channel per group on a 1×1 stride-32 "
                    "map), so its statistics are undefined; train with larger images, 2 or more images per process "
                    "or a head_channels of 64 or more, or call model.eval() to predict") from e
            raise

    def _pad(self, img: Tensor, target: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
        d = self.size_divisibility
        H, W = img.shape[-2:]
        ph, pw = (-H) % d, (-W) % d
        if ph or pw:
            img = F.pad(img, (0, pw, 0, ph))
            if target is not None:
                target = F.pad(target, (0, pw, 0, ph), value=self.ignore_index)
        return img, target

    def _forward(self, img: Tensor, target: Optional[Tensor], components: Optional[Tensor]):
        H, W = img.shape[-2:]
        padded, padded_target = self._pad(img, target)
        features, priors = self.backbone(padded)
        assignment = None
        if self.sgr is not None:
            last, assignment = self.sgr(features[-1])
            features = [*features[:-1], last]
        outputs = self.sem_seg_head(features)
        if target is None:
            scores = semantic_inference(outputs["pred_logits"], outputs["pred_masks"], size=padded.shape[-2:])
            return scores[..., :H, :W]
        losses = self.criterion(outputs, semantic_targets(padded_target, self.num_classes, self.ignore_index))
        if priors:
            cate = self.prior_weight * semantic_loss(priors, padded_target, ignore_index=self.ignore_index,
                                                     backend=self.backend)
            losses["loss_cate"] = cate
            if self.prior_aux:
                for i in range(len(outputs.get("aux_outputs", ()))):
                    losses[f"loss_cate_{i}"] = cate
        if assignment is not None:
            if components is None:
                components = self.components(target)
            # the assignment covers the padded image: padding is ignored (component id 0)
            ph, pw = padded.shape[-2] - H, padded.shape[-1] - W
            components = F.pad(components, (0, pw, 0, ph), value=0)
            losses["loss_sgr"] = sgr_loss(assignment, components, **self.sgr_loss_args)
        losses["loss"] = sum(losses.values())
        return losses

    @torch.no_grad()
    def predict(self, img: Tensor) -> Tensor:
        """The predicted labels (B, H, W) int64 of normalized images (B, 3, H, W)."""
        return self(img).argmax(1)

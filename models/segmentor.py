"""The segmentor: backbone + decode head, the SeMask prior branch in training, and the loss."""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

import semask_kernels as sk

from .heads.common import resize
from .losses import ohem_loss, segmentation_loss


class Segmentor(nn.Module):
    """``backbone`` → ``decode_head`` (mmseg's ``EncoderDecoder`` with the SeMask branch).

    ``forward(img)`` returns the logits resized to the input size (B, K, H, W); the prior branch is not computed.
    ``forward(img, target)`` returns a dict of losses: ``loss_ce`` (main head; OHEM when ``ohem_min_kept``),
    ``loss_cate`` (``prior_weight`` × CE of ``sk.prior_map_decode`` of the backbone's prior maps, SeMask only)
    and their sum ``loss``; both CEs resize to the label size, ignore ``ignore_index``.
    """

    def __init__(self, backbone: nn.Module, decode_head: nn.Module, *, prior_weight: float = 0.4,
                 ignore_index: int = 255, avg_non_ignore: bool = False, ohem_min_kept: Optional[int] = None,
                 align_corners: bool = False, backend: str = "auto"):
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.prior_weight = prior_weight
        self.ignore_index = ignore_index
        self.avg_non_ignore = avg_non_ignore
        self.ohem_min_kept = ohem_min_kept
        self.align_corners = align_corners
        self.backend = backend

    def forward(self, img: Tensor, target: Optional[Tensor] = None):
        features, priors = self.backbone(img)
        logits = self.decode_head(features)
        if target is None:
            return resize(logits, img.shape[-2:], self.align_corners)
        return self.losses(logits, priors, target)

    def losses(self, logits: Tensor, priors: list[Tensor], target: Tensor) -> dict[str, Tensor]:
        if self.ohem_min_kept:
            loss_ce = ohem_loss(logits, target, min_kept=self.ohem_min_kept, ignore_index=self.ignore_index,
                                align_corners=self.align_corners)
        else:
            loss_ce = segmentation_loss(logits, target, ignore_index=self.ignore_index,
                                        avg_non_ignore=self.avg_non_ignore, align_corners=self.align_corners,
                                        backend=self.backend)
        out = {"loss_ce": loss_ce}
        if priors:
            prior = sk.prior_map_decode(priors, align_corners=self.align_corners, backend=self.backend)
            out["loss_cate"] = self.prior_weight * segmentation_loss(
                prior, target, ignore_index=self.ignore_index, avg_non_ignore=self.avg_non_ignore,
                align_corners=self.align_corners, backend=self.backend)
        out["loss"] = sum(out.values())
        return out

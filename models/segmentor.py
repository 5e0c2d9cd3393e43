"""The segmentor: backbone + decode head, the SeMask prior branch in training, and the loss."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

import semask_kernels as sk

from .heads.common import resize
from .losses import ohem_loss, segmentation_loss
from .sgr import SGR, connected_components, sgr_loss


class Segmentor(nn.Module):
    """``backbone`` → ``decode_head`` (mmseg's ``EncoderDecoder`` with the SeMask branch).

    ``forward(img)`` returns the logits resized to the input size (B, K, H, W); the prior branch is not computed.
    ``forward(img, target)`` returns a dict of losses: ``loss_ce`` (main head; OHEM when ``ohem_min_kept``),
    ``loss_cate`` (``prior_weight`` × CE of ``sk.prior_map_decode`` of the backbone's prior maps, SeMask only)
    and their sum ``loss``; both CEs resize to the label size, ignore ``ignore_index``.
    With ``sgr`` (an ``SGR`` module), the last backbone feature goes through it first, and training adds
    ``loss_sgr`` (the matched token-mask loss against the connected components of the labels; pass
    ``components`` from the data workers, or they are computed here from ``target`` on the CPU).
    """

    def __init__(self, backbone: nn.Module, decode_head: nn.Module, *, prior_weight: float = 0.4,
                 ignore_index: int = 255, avg_non_ignore: bool = False, ohem_min_kept: Optional[int] = None,
                 align_corners: bool = False, backend: str = "auto", sgr: Optional[SGR] = None,
                 sgr_loss_args: Optional[dict] = None, sgr_connectivity: int = 8):
        super().__init__()
        self.backbone = backbone
        self.sgr = sgr
        self.sgr_loss_args = dict(sgr_loss_args or {})
        self.sgr_connectivity = sgr_connectivity
        self.decode_head = decode_head
        self.prior_weight = prior_weight
        self.ignore_index = ignore_index
        self.avg_non_ignore = avg_non_ignore
        self.ohem_min_kept = ohem_min_kept
        self.align_corners = align_corners
        self.backend = backend

    def forward(self, img: Tensor, target: Optional[Tensor] = None, components: Optional[Tensor] = None):
        features, priors = self.backbone(img)
        assignment = None
        if self.sgr is not None:
            last, assignment = self.sgr(features[-1])
            features = [*features[:-1], last]
        logits = self.decode_head(features)
        if target is None:
            return resize(logits, img.shape[-2:], self.align_corners)
        losses = self.losses(logits, priors, target)
        if assignment is not None:
            if components is None:
                components = self.components(target)
            losses["loss_sgr"] = sgr_loss(assignment, components, **self.sgr_loss_args)
            losses["loss"] = losses["loss"] + losses["loss_sgr"]
        return losses

    def components(self, target: Tensor) -> Tensor:
        """Connected-component ids of each label map (B, H, W), computed on the CPU."""
        ids = [torch.from_numpy(connected_components(t.cpu().numpy(), ignore_index=self.ignore_index,
                                                     connectivity=self.sgr_connectivity)[0]) for t in target]
        return torch.stack(ids).to(target.device)

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

"""The segmentor: backbone + decode head, the SeMask prior branch in training, and the loss."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

import semask_kernels as sk

from ..heads.common import resize
from .losses import ohem_loss, segmentation_loss
from ..sgr import SGR, connected_components, sgr_loss


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
        self._check_input(img, target)
        try:
            return self._forward(img, target, components)
        except ValueError as e:  # torch's BatchNorm check, deep in the head: say what it means here
            if self.training and img.shape[0] == 1 and "more than 1 value per channel" in str(e):
                raise ValueError(
                    f"batch size 1 in train mode at input size {tuple(img.shape[-2:])}: a BatchNorm layer of the "
                    "model would see a single value per channel (a 1×1 map), so its batch statistics are undefined; "
                    "train with 2 or more images per process (or larger images), or call model.eval() to "
                    "predict") from e
            raise

    def _check_input(self, img, target) -> None:
        if not isinstance(img, Tensor):
            raise TypeError(f"img must be a torch.Tensor (B, C, H, W), got {type(img).__name__}")
        embed = getattr(getattr(self.backbone, "patch_embed", None), "proj", None)
        channels = getattr(embed, "in_channels", None)  # None: a backbone of another kind, any channel count
        if img.dim() != 4 or (channels is not None and img.shape[1] != channels):
            hint = " (a single image? add the batch dimension: img[None])" if img.dim() == 3 else ""
            want = f"(B, {channels}, H, W) of {channels}-channel images" if channels else "(B, C, H, W)"
            raise ValueError(f"img must be a batch {want}, got shape {tuple(img.shape)}{hint}")
        if not img.is_floating_point():
            raise TypeError(f"img must be a normalized floating-point tensor, got {img.dtype}")
        weight = getattr(embed, "weight", None)
        if (weight is not None and img.dtype != weight.dtype and not (
                torch.amp.is_autocast_available(img.device.type) and torch.is_autocast_enabled(img.device.type))):
            raise TypeError(f"img has dtype {img.dtype}, the model's weights {weight.dtype}: convert the batch "
                            f"(img.to({weight.dtype})) or the model, or run under torch.autocast")
        if img.numel() == 0:
            raise ValueError(f"img must be non-empty, got shape {tuple(img.shape)}")
        if target is not None and (not isinstance(target, Tensor) or target.dim() != 3
                                   or target.shape[0] != img.shape[0]):
            got = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
            raise ValueError(f"target must be (B, H, W) class indices with B = {img.shape[0]}, got {got}")

    def _forward(self, img: Tensor, target: Optional[Tensor], components: Optional[Tensor]):
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

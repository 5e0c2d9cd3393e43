"""The MaskFormer head: pixel decoder + transformer predictor (official ``MaskFormerHead`` with
``BasePixelDecoder`` and the transformer on ``res5``)."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from .pixel_decoder import BasePixelDecoder
from .transformer import TransformerPredictor


class MaskFormerHead(nn.Module):
    """``pixel_decoder`` (FPN, conv_dim, GN) and ``predictor`` (DETR decoder on the last stage).

    ``forward(features)`` with four NCHW backbone maps (strides 4-32) returns the mask-classification outputs
    ``{"pred_logits": (B, Q, K+1), "pred_masks": (B, Q, H/4, W/4), "aux_outputs": [...]}`` (the contract of the
    Mask2Former head, so both share the criterion and the inference).

    Example:
        >>> import torch
        >>> head = MaskFormerHead([32, 64, 128, 256], num_classes=5, conv_dim=32, mask_dim=32, hidden_dim=32,
        ...                       num_queries=4, nheads=2, dim_feedforward=64, dec_layers=2)
        >>> feats = [torch.randn(1, c, 16 // 2 ** i, 16 // 2 ** i) for i, c in enumerate([32, 64, 128, 256])]
        >>> out = head(feats)
        >>> tuple(out["pred_logits"].shape), tuple(out["pred_masks"].shape), len(out["aux_outputs"])
        ((1, 4, 6), (1, 4, 16, 16), 1)
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, conv_dim: int = 256, mask_dim: int = 256,
                 hidden_dim: int = 256, num_queries: int = 100, nheads: int = 8, dropout: float = 0.1,
                 dim_feedforward: int = 2048, dec_layers: int = 6, deep_supervision: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.pixel_decoder = BasePixelDecoder(in_channels, conv_dim=conv_dim, mask_dim=mask_dim)
        self.predictor = TransformerPredictor(
            in_channels[-1], num_classes, hidden_dim=hidden_dim, num_queries=num_queries, nheads=nheads,
            dropout=dropout, dim_feedforward=dim_feedforward, dec_layers=dec_layers, mask_dim=mask_dim,
            deep_supervision=deep_supervision)

    def forward(self, features: Sequence[Tensor]) -> dict:
        mask_features = self.pixel_decoder(features)
        return self.predictor(features[-1], mask_features)

"""SeMask-Mask2Former FaPN / MSFaPN head: a FaPN pixel decoder and Mask2Former's masked-attention decoder."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ..mask2former.transformer_decoder import MultiScaleMaskedTransformerDecoder
from .pixel_decoder import MSDeformAttnPixelFANDecoder, PixelFANDecoder


class Mask2FormerFaPNHead(nn.Module):
    """``pixel_decoder`` (``"fapn"``: :class:`PixelFANDecoder`; ``"msfapn"``: :class:`MSDeformAttnPixelFANDecoder`)
    then ``predictor`` (Mask2Former's decoder, ``dec_layers`` = official DEC_LAYERS = layers + 1). Output contract of
    :mod:`semask_models.heads.mask_classification`."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, pixel_decoder: str = "fapn",
                 conv_dim: int = 256, mask_dim: int = 256, enc_layers: int = 6, hidden_dim: int = 256,
                 num_queries: int = 100, nheads: int = 8, dim_feedforward: int = 2048, dec_layers: int = 10,
                 dropout: float = 0.0, backend: str = "auto"):
        super().__init__()
        self.num_classes = num_classes
        if pixel_decoder == "fapn":
            self.pixel_decoder: nn.Module = PixelFANDecoder(in_channels, conv_dim=conv_dim, mask_dim=mask_dim)
        elif pixel_decoder == "msfapn":
            self.pixel_decoder = MSDeformAttnPixelFANDecoder(in_channels, conv_dim=conv_dim, mask_dim=mask_dim,
                                                             transformer_enc_layers=enc_layers, backend=backend)
        else:
            raise ValueError(f"pixel_decoder must be 'fapn' or 'msfapn', got {pixel_decoder!r}")
        self.predictor = MultiScaleMaskedTransformerDecoder(
            conv_dim, num_classes, hidden_dim=hidden_dim, num_queries=num_queries, nheads=nheads,
            dim_feedforward=dim_feedforward, dec_layers=dec_layers, mask_dim=mask_dim, dropout=dropout)

    def forward(self, features: Sequence[Tensor]) -> dict:
        mask_features, multi_scale_features = self.pixel_decoder(features)
        return self.predictor(multi_scale_features, mask_features)

"""Mask2Former's semantic-segmentation head: pixel decoder + masked-attention transformer decoder."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from .pixel_decoder import MSDeformAttnPixelDecoder
from .transformer_decoder import MultiScaleMaskedTransformerDecoder


class Mask2FormerHead(nn.Module):
    """The official ``MaskFormerHead`` of Mask2Former (``sem_seg_head``): ``pixel_decoder`` then ``predictor``.

    Args:
        in_channels: the backbone's 4 channel counts at strides 4, 8, 16, 32 (Swin-L: 192, 384, 768, 1536).
        num_classes: K.
        conv_dim, mask_dim, norm_groups, enc_layers, enc_nheads, enc_dim_feedforward, enc_n_points, enc_dropout:
            the pixel decoder (official: 256, 256, 32, 6, 8, 1024, 4, 0.0).
        hidden_dim, num_queries, nheads, dim_feedforward, dec_layers, dropout, pre_norm: the transformer decoder
            (official: 256, 100, 8, 2048, 10 = 9 layers + the initial prediction, 0.0, False).
        backend: the ``ms_deform_attn`` backend.

    ``forward(features)``: 4 maps (B, in_channels[i], H/s, W/s) → ``{"pred_logits": (B, Q, K+1), "pred_masks":
    (B, Q, H/4, W/4), "aux_outputs": [dec_layers − 1 dicts]}`` (the mask-classification contract).

    Example:
        >>> import torch
        >>> from semask_models.heads.mask2former import Mask2FormerHead
        >>> head = Mask2FormerHead([96, 192, 384, 768], num_classes=150)
        >>> features = [torch.randn(1, c, 64 // s, 64 // s) for c, s in zip([96, 192, 384, 768], [1, 2, 4, 8])]
        >>> out = head(features)
        >>> out["pred_logits"].shape, out["pred_masks"].shape, len(out["aux_outputs"])
        (torch.Size([1, 100, 151]), torch.Size([1, 100, 64, 64]), 9)
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, conv_dim: int = 256, mask_dim: int = 256,
                 norm_groups: int = 32, enc_layers: int = 6, enc_nheads: int = 8, enc_dim_feedforward: int = 1024,
                 enc_n_points: int = 4, enc_dropout: float = 0.0, hidden_dim: int = 256, num_queries: int = 100,
                 nheads: int = 8, dim_feedforward: int = 2048, dec_layers: int = 10, dropout: float = 0.0,
                 pre_norm: bool = False, backend: str = "auto"):
        super().__init__()
        self.num_classes = num_classes
        self.pixel_decoder = MSDeformAttnPixelDecoder(
            in_channels, conv_dim=conv_dim, mask_dim=mask_dim, norm_groups=norm_groups,
            transformer_dropout=enc_dropout, transformer_nheads=enc_nheads,
            transformer_dim_feedforward=enc_dim_feedforward, transformer_enc_layers=enc_layers, n_points=enc_n_points,
            backend=backend)
        self.predictor = MultiScaleMaskedTransformerDecoder(
            conv_dim, num_classes, hidden_dim=hidden_dim, num_queries=num_queries, nheads=nheads,
            dim_feedforward=dim_feedforward, dec_layers=dec_layers, mask_dim=mask_dim, dropout=dropout,
            pre_norm=pre_norm)

    def forward(self, features: Sequence[Tensor]) -> dict:
        mask_features, multi_scale_features = self.pixel_decoder(features)
        return self.predictor(multi_scale_features, mask_features)

"""Mask2Former's semantic-segmentation head: the multi-scale deformable-attention pixel decoder, the masked-attention
transformer decoder, and the head that ties them (output contract: ``..mask_classification``)."""
from .head import Mask2FormerHead
from .pixel_decoder import MSDeformAttnPixelDecoder
from .position_encoding import PositionEmbeddingSine
from .transformer_decoder import MultiScaleMaskedTransformerDecoder

__all__ = ["Mask2FormerHead", "MSDeformAttnPixelDecoder", "MultiScaleMaskedTransformerDecoder",
           "PositionEmbeddingSine"]

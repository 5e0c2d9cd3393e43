"""MaskFormer head (Cheng et al. 2021) as in SeMask-MaskFormer: a per-pixel FPN pixel decoder and a 6-layer
DETR-style transformer decoder on the stride-32 features."""
from .head import MaskFormerHead
from .pixel_decoder import BasePixelDecoder
from .transformer import TransformerPredictor

__all__ = ["BasePixelDecoder", "MaskFormerHead", "TransformerPredictor"]

"""What a segmentation model is: the segmentors (backbone + head + losses, training and inference), the
mask-classification segmentor's semantic head and the per-pixel losses."""
from .mask_segmentor import MaskSegmentor
from .segmentor import Segmentor

__all__ = ["MaskSegmentor", "Segmentor"]

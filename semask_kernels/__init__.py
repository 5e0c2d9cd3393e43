"""semask-kernels: fused Swin shifted-window attention and SeMask ops for PyTorch.

Public API (see README.md and DESIGN §3):

    sk.window_attention, sk.shifted_window_attention, sk.semantic_attention, sk.prior_map_decode,
    sk.upsample_cross_entropy, sk.ms_deform_attn, sk.patch_timm_swin, sk.patch_hf_swin, sk.available_backends, sk.nn.*
"""
from . import nn
from .backends import available_backends
from .integrations import patch_hf_swin, patch_timm_swin
from .ops import ms_deform_attn
from .ops import (prior_map_decode, semantic_attention, shifted_window_attention, upsample_cross_entropy,
                  window_attention)

__version__ = "0.1.0"
__all__ = ["available_backends", "nn", "patch_hf_swin", "patch_timm_swin", "prior_map_decode",
           "semantic_attention", "shifted_window_attention", "upsample_cross_entropy", "window_attention",
           "ms_deform_attn"]

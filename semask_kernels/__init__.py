"""semask-kernels: fused Swin shifted-window attention and SeMask ops for PyTorch.

Public API (see README.md; what each op computes, edge cases included: docs/ops.md):

    sk.window_attention, sk.shifted_window_attention, sk.semantic_attention, sk.prior_map_decode,
    sk.upsample_cross_entropy, sk.patch_timm_swin, sk.patch_hf_swin, sk.available_backends, sk.nn.*
"""
from . import nn
from .backends import available_backends
from .integrations import patch_hf_swin, patch_timm_swin
from .ops import *  # noqa: F401,F403 - every op's public function (ops.__all__: one per op folder)
from .ops import __all__ as _ops

__version__ = "0.1.0"
__all__ = sorted(["available_backends", "nn", "patch_hf_swin", "patch_timm_swin", *_ops])

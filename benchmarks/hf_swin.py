"""Stock Hugging Face transformers Swin classifiers for ``compare-swin --library hf`` (random weights, configs of
the official Swin-T/S/B/L, window 7), and the patch that goes with them."""
from __future__ import annotations

import torch

import semask_kernels as sk

CONFIGS = {  # embed_dim, depths, num_heads: the official Swin-T/S/B/L (as microsoft/swin-*-patch4-window7-224)
    "T": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "S": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "B": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "L": (192, (2, 2, 18, 2), (6, 12, 24, 48)),
}
NAMES = {"T": "hf-swin_tiny_patch4_window7", "S": "hf-swin_small_patch4_window7",
         "B": "hf-swin_base_patch4_window7", "L": "hf-swin_large_patch4_window7"}


def create(variant: str, img_size: int) -> torch.nn.Module:
    """A transformers ``SwinForImageClassification`` of ``variant`` for ``img_size`` inputs (1000 classes)."""
    try:
        from transformers import SwinConfig, SwinForImageClassification
    except ImportError as e:
        raise ImportError("compare-swin --library hf needs transformers: pip install 'transformers>=5.24'") from e
    embed_dim, depths, heads = CONFIGS[variant]
    config = SwinConfig(image_size=img_size, embed_dim=embed_dim, depths=list(depths), num_heads=list(heads),
                        window_size=7, drop_path_rate=0.0, num_labels=1000)
    return SwinForImageClassification(config)


def patch(model: torch.nn.Module, backend: str) -> torch.nn.Module:
    return sk.patch_hf_swin(model, backend=backend)

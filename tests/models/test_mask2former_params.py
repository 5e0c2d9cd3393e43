"""Parameter counts of the Mask2Former head at the official sizes (K = 150, conv/mask/hidden 256, 6 encoder layers,
9 decoder layers, 100 queries), pinned and checked against HF transformers' modules at the same config."""
from __future__ import annotations

import pytest
import torch

from semask_models.heads.mask2former import Mask2FormerHead

m2f = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")

# Swin-T and Swin-S share the channels; with a Swin backbone (27.5 / 48.8 / 86.9 / 195.2 M) the totals are
# 47.4 / 68.8 / 106.9 / 215.5 M, the Mask2Former paper's 47 / 69 / 107 / 215 M for ADE20K.
OFFICIAL = {(96, 192, 384, 768): 19_918_935, (128, 256, 512, 1024): 20_041_815,
            (192, 384, 768, 1536): 20_287_575}
PREDICTOR = 14_497_431  # the transformer decoder does not depend on the backbone


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("channels, expected", list(OFFICIAL.items()))
def test_official_parameter_counts(channels, expected):
    with torch.device("meta"):
        head = Mask2FormerHead(list(channels), 150)
        config = m2f.Mask2FormerConfig(num_labels=150)  # HF's defaults are the official semantic config
        hf_pixel = m2f.Mask2FormerPixelDecoder(config, feature_channels=list(channels))
        hf_decoder = m2f.Mask2FormerTransformerModule(in_features=256, config=config)
        hf_classifier = torch.nn.Linear(config.hidden_dim, 151)  # HF keeps it in the top model
    assert _count(head) == expected
    assert _count(head.predictor) == PREDICTOR
    assert _count(head.pixel_decoder) == _count(hf_pixel)
    assert _count(head.predictor) == _count(hf_decoder) + _count(hf_classifier)
